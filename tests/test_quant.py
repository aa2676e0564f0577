"""Tests of refdet.quant: SPEC vectors (TV-Q*, TV-R*, TV-F1, QuantizeMultiplier), properties, and
differential tests exact to the integer against onnxruntime, onnx.reference and torch.

Tolerances: every integer result is compared exactly. Float results of quantization are compared
exactly (bit for bit) where the framework's order of float32 operations is reproduced; the PyTorch
learnable-scale gradient is a float32 sum in PyTorch and a float64 sum in refdet, compared to float32
precision relative to the sum of magnitudes.
"""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refdet import quant as Q
from refdet.reference import quant as R
from tests.conftest import readonly


# ---------------------------------------------------------------------------------------------------
# Slow scalar references written from the SPEC's formulas (Python ints, no NumPy)
# ---------------------------------------------------------------------------------------------------

def _srdhm_ref(a, b):
    if a == b == -(2 ** 31):
        return 2 ** 31 - 1
    ab = a * b
    nudge = 2 ** 30 if ab >= 0 else 1 - 2 ** 30
    s = ab + nudge
    return s // 2 ** 31 if s >= 0 else -((-s) // 2 ** 31)  # C++ division truncates toward zero


def _rdbpot_ref(x, e):
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def _wrap32(v):
    return ((v + 2 ** 31) % 2 ** 32) - 2 ** 31


def _mbqm_ref(x, q, shift):
    left, right = max(shift, 0), max(-shift, 0)
    return _rdbpot_ref(_srdhm_ref(_wrap32(x * (1 << left)), q), right)


def _mbqm_single_ref(x, q, shift):
    total = 31 - shift
    return (x * q + (1 << (total - 1))) >> total


def _qm_ref(m):
    if m == 0:
        return 0, 0
    f, shift = math.frexp(m)
    v = f * 2 ** 31
    q = int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))  # exact: v is a multiple of 2**-22
    if q == 2 ** 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


# ---------------------------------------------------------------------------------------------------
# Rounding helpers
# ---------------------------------------------------------------------------------------------------

def test_rounding_modes_on_ties():
    v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.49, 0.51])
    assert np.array_equal(Q.round_half_even(v), [-2, -2, -0, 0, 2, 2, -0, 1])
    assert np.array_equal(Q.round_half_away(v), [-3, -2, -1, 1, 2, 3, -0, 1])
    assert np.array_equal(Q.round_half_up(v), [-2, -1, 0, 1, 2, 3, 0, 1])


def test_round_half_away_is_exact_below_one_half_in_float32():
    # floor(|v| + 0.5) would give 1: 0.49999997f + 0.5f = 1 - 2**-25 rounds (ties-to-even) to 1.0f
    v = np.nextafter(np.float32(0.5), np.float32(0))
    assert Q.round_half_away(np.array([v, -v])).tolist() == [0.0, 0.0]
    assert Q.round_half_up(np.array([v])).tolist() == [0.0]
    assert Q.round_half_away(np.array([v])).dtype == np.float32


@given(hnp.arrays(np.float64, 20, elements=st.integers(-4000, 4000).map(lambda k: k / 4)))
def test_rounding_helpers_agree_with_exact_rational_rounding(v):
    for x, e, a, u in zip(v, Q.round_half_even(v), Q.round_half_away(v), Q.round_half_up(v)):
        fr = Fraction(x)
        fl = math.floor(fr)
        d = fr - fl
        up = fl + 1
        assert u == (up if d >= Fraction(1, 2) else fl)
        if d != Fraction(1, 2):
            assert e == a == (up if d > Fraction(1, 2) else fl)
        else:
            assert e == (fl if fl % 2 == 0 else up)
            assert a == (up if x > 0 else fl)


# ---------------------------------------------------------------------------------------------------
# TV-Q1 .. TV-Q6
# ---------------------------------------------------------------------------------------------------

TV_Q1_X = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 254.5, 255.5, -128.5, 127.5, 1000, -1000], np.float32)


@pytest.mark.parametrize("dtype,zp,expected", [
    ("uint8", 128, [126, 126, 128, 128, 130, 130, 132, 255, 255, 0, 255, 255, 0]),
    ("int8", 0, [-2, -2, 0, 0, 2, 2, 4, 127, 127, -128, 127, 127, -128]),
    ("int8", -1, [-3, -3, -1, -1, 1, 1, 3, 127, 127, -128, 127, 127, -128]),
    ("uint8", 0, [0, 0, 0, 0, 2, 2, 4, 254, 255, 0, 128, 255, 0]),
])
def test_tv_q1_onnx_quantize_linear_ties(dtype, zp, expected):
    # RNE of x / 1, then + zp, then saturate: -2.5 -> -2 (+128 = 126), 254.5 -> 254, 127.5 -> 128
    q = Q.quantize(readonly(TV_Q1_X), np.float32(1.0), zp, dtype=dtype, convention="onnx")
    assert q.dtype == np.dtype(dtype)
    assert q.tolist() == expected


@pytest.mark.parametrize("zp,expected", [
    # TV-Q3 (held back in the SPEC, derived): TfLiteRound = half away from zero on x / 1:
    # -2.5 -> -3, -1.5 -> -2, -0.5 -> -1, 0.5 -> 1, 2.5 -> 3, 3.5 -> 4, 254.5 -> 255 -> 127,
    # -128.5 -> -129 -> -128 (clamp), 127.5 -> 128 -> 127.
    (0, [-3, -2, -1, 1, 2, 3, 4, 127, 127, -128, 127, 127, -128]),
    # zp -1 is added after rounding: -3 - 1 = -4, ..., 0.5 -> 1 - 1 = 0, -128.5 -> -129 - 1 -> -128
    (-1, [-4, -3, -2, 0, 1, 2, 3, 127, 127, -128, 127, 127, -128]),
])
def test_tv_q3_tflite_reference_quantize(zp, expected):
    assert Q.quantize(TV_Q1_X, 1.0, zp, dtype="int8", convention="tf").tolist() == expected


def test_tv_q2_division_makes_exact_float32_ties():
    x = np.array([0.05, 0.15, 0.25, 0.35, 0.45], np.float32)
    s = np.float32(0.1)
    assert (x / s).tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]  # float32 division lands exactly on .5
    assert Q.quantize(x, s, 0, dtype="uint8", convention="onnx").tolist() == [0, 2, 2, 4, 4]
    # TFLite reference QUANTIZE: half away
    assert Q.quantize(x[:4], s, 0, dtype="int8", convention="tf").tolist() == [1, 2, 3, 4]
    # XNNPACK: division + RNE
    assert Q.quantize(x[:4], s, 0, dtype="int8", rounding="half_even", op="div").tolist() == [0, 2, 2, 4]


def test_tv_q4_per_channel_symmetric_weights():
    w = np.array([[0.5, -1, 0.25, 0], [0.02, -0.01, 0.03, -0.015]], np.float32)
    q_expected = [[64, -127, 32, 0], [85, -42, 127, -64]]
    for conv, scales in [("onnx", [0.007874016, 0.00023622047]), ("tf", [0.007874016, 0.00023622047]),
                         ("torchvision", [0.007843138, 0.00023529411])]:
        qp = Q.qparams_from_minmax(w.min(1), w.max(1), symmetric=True, axis=0, convention=conv)
        assert qp.scale.dtype == np.float32
        np.testing.assert_allclose(qp.scale, scales, rtol=1e-7)  # /127 vs /127.5
        assert qp.zero_point.tolist() == [0, 0]
        q = Q.quantize(w, qp.scale, qp.zero_point, axis=0, convention=conv)
        assert q.tolist() == q_expected
    # torch /127.5: -0.01 / 0.00023529411 = -42.5 exactly in the reals; RNE gives -42 (the float32
    # quotient is -42.499996), half-away on the exact value would give -43.
    qp = Q.qparams_from_minmax(w.min(1), w.max(1), symmetric=True, axis=0, convention="torchvision")
    assert float(np.float64(-0.01) / np.float64(qp.scale[1])) == pytest.approx(-42.5, abs=1e-4)


@pytest.mark.parametrize("rng_,conv,u8,i8", [
    ((-1.0, 3.0), "onnx", (0.0156862754, 64), -64),
    ((-1.0, 3.0), "torchvision", (0.0156862754, 64), -64),
    ((0.0, 6.0), "onnx", (0.0235294122, 0), -128),
    ((0.0, 6.0), "torchvision", (0.0235294122, 0), -128),
    # [-0.3, 0.7]: the SPEC's "float32 math" values (76, -52) are PyTorch's; onnxruntime computes in
    # float64 where 0.3f / (1.0000000119 / 255) = 76.50000... > 76.5 and rounds to 77 (and -51):
    # checked against onnxruntime's compute_scale_zp below.
    ((-0.3, 0.7), "torchvision", (0.00392156886, 76), -52),
    ((-0.3, 0.7), "onnx", (0.00392156886, 77), -51),
])
def test_tv_q5_asymmetric_ranges(rng_, conv, u8, i8):
    qp = Q.qparams_from_minmax(*rng_, dtype="uint8", convention=conv)
    np.testing.assert_allclose(qp.scale, u8[0], rtol=1e-7)
    assert int(qp.zero_point) == u8[1]
    assert int(Q.qparams_from_minmax(*rng_, dtype="int8", convention=conv).zero_point) == i8


def test_tv_q6_dynamic_quantize_linear():
    # DynamicQuantizeLinear = uint8 qparams of [min(0, min x), max(0, max x)] (onnx), then QuantizeLinear
    x = np.array([0, 2, -3, -2.5, 1.34, 0.5], np.float32)
    qp = Q.qparams_from_minmax(x.min(), x.max(), dtype="uint8", convention="onnx")
    assert qp.scale == np.float32(0.019607844)  # 5 / 255
    assert int(qp.zero_point) == 153  # rint(0 + 3 / s)
    assert Q.quantize(x, qp.scale, qp.zero_point, dtype="uint8", convention="onnx").tolist() == \
        [153, 255, 0, 26, 221, 179]


def test_qparams_symmetric_zero_points_and_ranges():
    # torch symmetric uint8: 128; onnx: rint(127.5) = 128; int8: 0 everywhere
    for conv in ("torchvision", "onnx", "tf"):
        assert int(Q.qparams_from_minmax(-1, 2, dtype="int8", symmetric=True, convention=conv).zero_point) == 0
    for conv in ("torchvision", "onnx"):
        assert int(Q.qparams_from_minmax(-1, 2, dtype="uint8", symmetric=True, convention=conv).zero_point) == 128
    # tf nudges from the min in float32: s = float32(4 / 255) = 0.015686275 is 5.9e-8 relatively too
    # large, so 0 - (-2) / s = 127.49999 (not 127.5) and rounds to 127
    assert int(Q.qparams_from_minmax(-1, 2, dtype="uint8", symmetric=True, convention="tf").zero_point) == 127
    # narrow_range=False under tf: zp_from_min = -128 + 127.5 = -0.5 -> std::round -> -1
    assert int(Q.qparams_from_minmax(-1, 2, dtype="int8", symmetric=True, convention="tf",
                                     narrow_range=False).zero_point) == -1
    # all-zero range: onnx (1.0, 0), torch scale = float32 eps and zp = qmin - 0
    qp = Q.qparams_from_minmax(0.0, 0.0, dtype="uint8", convention="onnx")
    assert (float(qp.scale), int(qp.zero_point)) == (1.0, 0)
    qp = Q.qparams_from_minmax(0.0, 0.0, dtype="int8", convention="torch")
    assert (float(qp.scale), int(qp.zero_point)) == (float(np.finfo(np.float32).eps), -128)
    # the range is widened to contain 0
    assert int(Q.qparams_from_minmax(2.0, 5.0, dtype="uint8", convention="onnx").zero_point) == 0
    assert int(Q.qparams_from_minmax(-5.0, -2.0, dtype="uint8", convention="onnx").zero_point) == 255


def test_add_zero_point_before_or_after_rounding():
    # SPEC 9.4: x/s = 2.5 with z = 1 gives 3 (round first, ONNX) but 4 (z first, torch learnable)
    x = np.array([2.5, -0.5])
    assert Q.quantize(x, 1.0, 1, convention="onnx").tolist() == [3, 1]
    assert Q.quantize(x, 1.0, 1, convention="onnx", add_zero_point="before").tolist() == [4, 0]
    # half away: round(-0.5) + 1 = 0 but round(0.5) = 1
    assert Q.quantize(np.array([-0.5]), 1.0, 1, convention="tf").tolist() == [0]
    assert Q.quantize(np.array([-0.5]), 1.0, 1, convention="tf", add_zero_point="before").tolist() == [1]


def test_dequantize_per_axis_and_dtype():
    q = np.array([[0, 128, 255], [10, 20, 30]], np.uint8)
    y = Q.dequantize(readonly(q), np.array([0.5, 0.25], np.float32), np.array([128, 10]), axis=0)
    assert y.dtype == np.float32
    assert y.tolist() == [[-64.0, 0.0, 63.5], [0.0, 2.5, 5.0]]
    assert Q.dequantize(q, 0.1, 0, out_dtype="float64").dtype == np.float64
    assert Q.dequantize(np.zeros((0, 3), np.int8), 0.1, 0).shape == (0, 3)


@given(st.sampled_from(["torchvision", "onnx", "tf"]), st.sampled_from(["int8", "uint8"]),
       st.floats(1e-3, 10), st.integers(-128, 255), st.data())
def test_dequantize_quantize_round_trip_within_half_step(conv, dtype, scale, zp, data):
    lo, hi = Q.QUANT_DTYPES[dtype]
    zp = min(max(zp, lo), hi)
    x = data.draw(hnp.arrays(np.float64, 30, elements=st.floats((lo - zp) * scale, (hi - zp) * scale)))
    q = Q.quantize(x, scale, zp, dtype=dtype, convention=conv)
    err = np.abs(Q.dequantize(q, scale, zp, out_dtype="float64") - x)
    assert np.all(err <= scale / 2 * (1 + 1e-12))


def test_quantize_empty_inf_and_dtype_policy():
    assert Q.quantize(np.zeros((0, 4), np.float32), 0.1, 0).shape == (0, 4)
    assert Q.quantize(np.array([np.inf, -np.inf]), 0.1, 3).tolist() == [127, -128]
    # float64 x is divided in float64: 0.3 / 0.1 = 2.9999999999999996 -> 3 either way, but
    # float32(0.35) / float32(0.1) = 3.5 exactly (tie) while 0.35 / 0.1 = 3.4999999999999996 in float64
    assert Q.quantize(np.array([0.35], np.float32), 0.1, 0, convention="onnx").tolist() == [4]
    assert Q.quantize(np.array([0.35]), 0.1, 0, convention="onnx").tolist() == [3]


# ---------------------------------------------------------------------------------------------------
# quantize_multiplier, SRDHM, RoundingDivideByPOT, requantize (TV-R1, TV-R2)
# ---------------------------------------------------------------------------------------------------

QM_TABLE = [
    (0.25, (1073741824, -1)),
    (0.5, (1073741824, 0)),
    (0.002, (1099511628, -8)),
    (0.0123, (1690499128, -6)),
    (1.5, (1610612736, 1)),
    (1 - 2 ** -40, (1073741824, 1)),   # frexp mantissa rounds to 2**31: carry into the shift
    (2 ** -32, (1073741824, -31)),
    (2 ** -33, (0, 0)),                # shift -32 < -31: the multiplier underflows to 0
    (0.0, (0, 0)),
    # float32 scales widened to double: 0.02f * 0.005f / 0.05f
    (float(np.float64(np.float32(0.02)) * np.float64(np.float32(0.005)) / np.float64(np.float32(0.05))),
     (1099511562, -8)),
]


@pytest.mark.parametrize("m,expected", QM_TABLE)
def test_quantize_multiplier_table(m, expected):
    assert tuple(Q.quantize_multiplier(m)) == expected
    assert _qm_ref(m) == expected


def test_quantize_multiplier_vectorised_and_single_rounding():
    ms = np.array([m for m, _ in QM_TABLE])
    q, s = Q.quantize_multiplier(readonly(ms))
    assert [(int(a), int(b)) for a, b in zip(q, s)] == [e for _, e in QM_TABLE]
    # single-rounding builds clamp shift > 30 to (2**31 - 1, 30)
    assert tuple(Q.quantize_multiplier(2.0 ** 31)) == (1073741824, 32)
    assert tuple(Q.quantize_multiplier(2.0 ** 31, single_rounding=True)) == (2 ** 31 - 1, 30)


@given(st.floats(0, 8, allow_subnormal=False))
def test_quantize_multiplier_matches_scalar_reference_and_approximates_m(m):
    q, s = Q.quantize_multiplier(m)
    assert (q, s) == _qm_ref(m)
    if q:
        assert 2 ** 30 <= q < 2 ** 31
        assert abs(q * 2.0 ** (s - 31) - m) <= 2.0 ** (s - 32) * (1 + 1e-12)


TV_R1_ACC = np.array([2, 6, 10, -2, -6, -10, 1, 3, -1, -3])


@pytest.mark.parametrize("mode,expected", [
    ("tflite", [1, 2, 3, -1, -2, -3, 1, 1, 0, -1]),          # double rounding; acc=1 -> 0.25 -> 1 (!)
    ("tflite_single", [1, 2, 3, 0, -1, -2, 0, 1, 0, -1]),    # half up
    ("onnxruntime", [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]),      # RNE
    ("onnx_reference", [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]),
    ("float_rne", [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]),
])
def test_tv_r1_requantize_quarter(mode, expected):
    # M = 0.5 * 0.5 / 1 = 0.25; exact acc * M = [0.5, 1.5, 2.5, -0.5, ...]
    assert Q.requantize(readonly(TV_R1_ACC), 0.25, 0, mode=mode).tolist() == expected
    if mode.startswith("tflite"):  # the same through (q, shift)
        assert Q.requantize(TV_R1_ACC, (1073741824, -1), 0, mode=mode).tolist() == expected


def test_tv_r1_acc_one_double_rounding_by_hand():
    # SRDHM(1, 2**30) = (2**30 + 2**30) / 2**31 = 1; RoundingDivideByPOT(1, 1): rem 1 > thr 0 -> 0 + 1 = 1
    assert int(Q.saturating_rounding_doubling_high_mul(1, 2 ** 30)) == 1
    assert int(Q.rounding_divide_by_pot(1, 1)) == 1


def test_tv_r2_realistic_scales():
    # TV-R2 (held back in the SPEC; derived from the formulas, LiteRT is not installed here):
    # in_s = 0.02, w_s = 0.005, out_s = 0.05, out_zp = -5 -> M = 0.001999999880790713 = (1099511562, -8).
    # acc = 250: 250 * 1099511562 / 2**31 = 127.99999 -> SRDHM 128; 128 / 2**8 = 0.5 -> RDBPOT half away -> 1;
    #   +zp -> -4 (exact 250 * M = 0.49999997: float RNE gives 0 -> -5).
    # acc = 750: SRDHM(750 * 1099511562) = 383.99998 -> 384; 384 / 256 = 1.5 -> 2 -> -3 (exact 1.49999991 -> 1 -> -4).
    # acc = -250: SRDHM = -128 (ab < 0: trunc((-127.99999 * 2**31 + 1 - 2**30) / 2**31) = -128);
    #   RDBPOT(-128, 8): rem 128, thr 127 + 1 = 128, not greater -> -1 -> -6.
    # acc = 64000: 64000 * M = 127.99999 -> 128 - 5 = 123; acc = 100000: 199.99998 -> 200 - 5 = 195 -> clamp 127.
    acc = np.array([250, 750, -250, 64000, 100000, -70000, 0])
    m = QM_TABLE[-1][0]
    expected = [-4, -3, -6, 123, 127, -128, -5]
    assert Q.requantize(acc, m, -5, mode="tflite").tolist() == expected
    assert [min(max(_mbqm_ref(int(a), 1099511562, -8) - 5, -128), 127) for a in acc] == expected
    assert Q.requantize(acc, m, -5, mode="float_rne").tolist() == [-5, -4, -5, 123, 127, -128, -5]


@given(hnp.arrays(np.int64, 40, elements=st.integers(-(2 ** 31), 2 ** 31 - 1)),
       st.integers(0, 2 ** 31 - 1), st.integers(-31, 8))
def test_fixed_point_primitives_match_scalar_reference(x, q, shift):
    assert Q.saturating_rounding_doubling_high_mul(x, q).tolist() == [_srdhm_ref(int(v), q) for v in x]
    e = max(-shift, 0)
    assert Q.rounding_divide_by_pot(x, e).tolist() == [_rdbpot_ref(int(v), e) for v in x]
    assert Q.multiply_by_quantized_multiplier(x, q, shift).tolist() == [_mbqm_ref(int(v), q, shift) for v in x]
    if shift <= 30:
        assert Q.multiply_by_quantized_multiplier(x, q, shift, single_rounding=True).tolist() == \
            [_mbqm_single_ref(int(v), q, shift) for v in x]


def test_srdhm_saturation_case():
    assert int(Q.saturating_rounding_doubling_high_mul(-(2 ** 31), -(2 ** 31))) == 2 ** 31 - 1


@given(hnp.arrays(np.int64, 30, elements=st.integers(-(2 ** 24), 2 ** 24)),
       st.floats(1e-6, 0.999, allow_subnormal=False), st.integers(-20, 20))
def test_tflite_requantize_within_one_lsb_of_exact(acc, m, zp):
    q = Q.requantize(acc, m, zp, mode="tflite", qmin=-(2 ** 31), qmax=2 ** 31 - 1).astype(np.int64)
    qm, sh = Q.quantize_multiplier(m)
    for a, v in zip(acc.tolist(), q.tolist()):
        exact = Fraction(a) * Fraction(m) + zp
        assert abs(v - exact) <= 1
        # and against the multiplier TFLite actually uses, within 1/2 + 2**-31 scaled: still 1 LSB
        assert abs(v - (Fraction(a * qm, 2 ** (31 - sh)) + zp)) <= 1


@given(hnp.arrays(np.int64, 30, elements=st.integers(-(2 ** 24), 2 ** 24)), st.floats(1e-6, 4.0),
       st.integers(-128, 127))
def test_float_modes_match_their_formulas(acc, m, zp):
    m32 = np.float32(m)
    ort = Q.requantize(acc, m, zp, mode="onnxruntime")
    expect = np.clip(np.rint(acc.astype(np.float32) * m32).astype(np.int64) + zp, -128, 127)
    assert ort.tolist() == expect.tolist()
    ref = Q.requantize(acc, m, zp, mode="onnx_reference")
    expect = np.round(np.clip(acc.astype(np.float64) * np.float64(m32) + zp, -128, 127)).astype(np.int64)
    assert ref.tolist() == expect.tolist()


def test_requantize_per_channel_axis_and_output_dtype():
    acc = np.arange(-12, 12).reshape(1, 2, 3, 4)
    m = np.array([0.25, 0.5])
    y = Q.requantize(acc, m, np.array([1, -1]), mode="tflite", axis=1)
    assert y.dtype == np.int8
    assert y[0, 0].tolist() == Q.requantize(acc[0, 0], 0.25, 1, mode="tflite").tolist()
    assert y[0, 1].tolist() == Q.requantize(acc[0, 1], 0.5, -1, mode="tflite").tolist()
    assert Q.requantize(acc, 0.5, 0, qmin=0, qmax=255).dtype == np.uint8


# ---------------------------------------------------------------------------------------------------
# Integer convolution
# ---------------------------------------------------------------------------------------------------

@settings(max_examples=30)
@given(st.integers(1, 2), st.sampled_from([1, 2]), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.tuples(*[st.integers(0, 2)] * 4), st.integers(0, 2 ** 32 - 1))
def test_conv2d_int_matches_loop_and_all_methods_agree(n, groups, cg, fg, stride, dil, pads, seed):
    # pads is refdet's (top, bottom, left, right); the loop is refdet.reference.quant.conv2d_int
    r = np.random.default_rng(seed)
    x = r.integers(0, 256, size=(n, cg * groups, 6, 7)).astype(np.uint8)
    w = r.integers(-128, 128, size=(fg * groups, cg, 3, 2)).astype(np.int8)
    xzp = int(r.integers(0, 256))
    wzp = r.integers(-128, 128, size=fg * groups)
    ref = R.conv2d_int(x, w, xzp, wzp.tolist(), (stride, stride), pads, (dil, dil), groups)
    for method in ("auto", "float32", "float64", "int64"):
        got = Q.conv2d_int(readonly(x), readonly(w), x_zero_point=xzp, w_zero_point=readonly(wzp), stride=stride,
                           padding=pads, dilation=dil, groups=groups, method=method)
        assert got.dtype == np.int64
        assert np.array_equal(got, ref), method
    # accumulator bound: |acc| <= K * max|x - x_zp| * max|w - w_zp|
    K = cg * 3 * 2
    bound = K * np.abs(x.astype(np.int64) - xzp).max() * np.abs(w.astype(np.int64) - wzp[:, None, None, None]).max()
    assert np.abs(ref).max(initial=0) <= bound


def test_conv2d_int_equals_float_conv_of_dequantized_operands():
    r = np.random.default_rng(3)
    x = r.integers(0, 256, size=(1, 4, 9, 9)).astype(np.uint8)
    w = r.integers(-127, 128, size=(5, 4, 3, 3)).astype(np.int8)
    sx, sw = 0.0625, np.array([0.5, 0.25, 0.125, 1.0, 2.0])  # powers of two: every product is exact
    acc = Q.conv2d_int(x, w, x_zero_point=128, padding=1)
    xf = Q.dequantize(x, sx, 128, out_dtype="float64")
    wf = Q.dequantize(w, sw, 0, axis=0, out_dtype="float64")
    # float64 direct correlation of the dequantized operands
    xp = np.pad(xf, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (1, 4, 9, 9, 3, 3)
    ref = np.einsum("nchwij,fcij->nfhw", win, wf)
    assert np.array_equal(acc * sx * sw.reshape(1, -1, 1, 1), ref)


@pytest.mark.parametrize("padding", [(1, 2, 0, 1), ((2, 0), (1, 3)), (2, 1), 1, "same", "same_lower", "valid"])
def test_conv2d_int_reads_padding_as_layers_does(padding):
    """One padding grammar: conv2d_int and layers.conv2d_forward read every spelling alike (a flat
    4-tuple is (top, bottom, left, right)); integer operands are exact in float64 on both sides."""
    from refdet.layers import conv2d_forward
    r = np.random.default_rng(21)
    x = r.integers(0, 256, size=(2, 3, 7, 6)).astype(np.uint8)
    w = r.integers(-127, 128, size=(4, 3, 3, 2)).astype(np.int8)
    acc = Q.conv2d_int(x, w, x_zero_point=0, padding=padding, stride=(1, 1) if "same" in str(padding) else (2, 1))
    y, _ = conv2d_forward(x.astype(np.float64), w.astype(np.float64), padding=padding,
                          stride=(1, 1) if "same" in str(padding) else (2, 1))
    assert acc.shape == y.shape and np.array_equal(acc, y)


def test_qlinear_conv_onnx_pads_keyword():
    r = np.random.default_rng(22)
    x = r.integers(0, 256, size=(1, 2, 5, 6)).astype(np.uint8)
    w = r.integers(-127, 128, size=(3, 2, 3, 3)).astype(np.int8)
    args = (x, np.float32(0.02), np.uint8(128), w, np.full(3, 0.01, np.float32), np.zeros(3, np.int8),
            np.float32(0.05), np.uint8(120))
    # ONNX pads (top, left, bottom, right) = (1, 0, 2, 1) are refdet's (top, bottom, left, right) = (1, 2, 0, 1)
    a = Q.qlinear_conv(*args, pads=[1, 0, 2, 1])
    b = Q.qlinear_conv(*args, padding=(1, 2, 0, 1))
    assert a.shape == (1, 3, 6, 5) and np.array_equal(a, b)
    # the same four numbers read as refdet's order pad H by (1, 0) and W by (2, 1): another output shape
    assert Q.qlinear_conv(*args, padding=(1, 0, 2, 1)).shape == (1, 3, 4, 7)
    with pytest.raises(ValueError, match="not both"):
        Q.qlinear_conv(*args, padding=1, pads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="`pads`"):
        Q.qlinear_conv(*args, pads=[1, 1])


def test_tflite_conv_explicit_padding_is_refdet_grammar():
    r = np.random.default_rng(23)
    x = r.integers(-128, 128, size=(1, 5, 6, 2)).astype(np.int8)                 # NHWC
    w = r.integers(-127, 128, size=(3, 3, 3, 2)).astype(np.int8)                 # OHWI
    args = (x, 0.05, 1, w, np.full(3, 0.01, np.float32), None, 0.1, -2)
    same = Q.tflite_conv2d_int8(*args, padding="SAME", stride=2)
    # SAME at stride 2: H 5 -> 3 outputs, total pad 2 = (1, 1); W 6 -> 3, total 1 = (0, 1): the odd pixel after
    assert np.array_equal(same, Q.tflite_conv2d_int8(*args, padding=(1, 1, 0, 1), stride=2))
    assert np.array_equal(Q.tflite_conv2d_int8(*args, padding="VALID"), Q.tflite_conv2d_int8(*args, padding=0))


def test_conv2d_int_int32_overflow_is_an_error_and_int64_is_exact():
    x = np.full((1, 1, 1, 4), 2 ** 20, np.int64)
    w = np.full((1, 1, 1, 4), 2 ** 10, np.int64)
    assert int(Q.conv2d_int(x, w)[0, 0, 0, 0]) == 2 ** 32
    with pytest.raises(ValueError, match="int32 accumulator overflows"):
        Q.conv2d_int(x, w, accumulator="int32")
    with pytest.raises(ValueError, match="cannot be exact"):
        Q.conv2d_int(x, w, method="float32")


def test_conv2d_int_empty_batch():
    out = Q.conv2d_int(np.zeros((0, 2, 5, 5), np.uint8), np.ones((3, 2, 3, 3), np.int8), x_zero_point=3)
    assert out.shape == (0, 3, 3, 3)


# ---------------------------------------------------------------------------------------------------
# TFLite CONV_2D (reference-kernel model)
# ---------------------------------------------------------------------------------------------------

def test_tflite_activation_ranges():
    # RELU6 with scale 0.05, zp -10: quantize(6) = -10 + round(6 / 0.05f) = -10 + 120 = 110
    assert Q.tflite_activation_range("NONE", 0.05, -10) == (-128, 127)
    assert Q.tflite_activation_range("RELU", 0.05, -10) == (-10, 127)
    assert Q.tflite_activation_range("RELU6", 0.05, -10) == (-10, 110)
    assert Q.tflite_activation_range("RELU_N1_TO_1", 0.05, -10) == (-30, 10)


def test_tv_r1_through_tflite_conv():
    # 1x1 conv, in_s = w_s = 0.5, out_s = 1 (M = 0.25), w = 1, x = 0 with zp 0: acc = bias
    bias = TV_R1_ACC.astype(np.int32)
    x = np.zeros((1, 1, 1, 1), np.int8)
    w = np.ones((len(bias), 1, 1, 1), np.int8)
    y = Q.tflite_conv2d_int8(x, 0.5, 0, w, np.full(len(bias), 0.5, np.float32), bias, 1.0, 0)
    assert y.shape == (1, 1, 1, len(bias))
    assert y[0, 0, 0].tolist() == [1, 2, 3, -1, -2, -3, 1, 1, 0, -1]
    y = Q.tflite_conv2d_int8(x, 0.5, 0, w, 0.5, bias, 1.0, 0, mode="float_rne")  # XNNPACK-like
    assert y[0, 0, 0].tolist() == [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]


@settings(max_examples=20)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from(["SAME", "VALID"]), st.integers(1, 2),
       st.sampled_from(["NONE", "RELU", "RELU6"]))
def test_tflite_conv_matches_per_pixel_scalar_model(seed, padding, stride, act):
    r = np.random.default_rng(seed)
    x = r.integers(-128, 128, size=(1, 5, 6, 3)).astype(np.int8)
    w = r.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    bias = r.integers(-2000, 2000, size=4).astype(np.int32)
    xs, ys, xz, yz = np.float32(0.02), np.float32(0.05), int(r.integers(-128, 128)), int(r.integers(-128, 128))
    ws = (r.uniform(0.001, 0.01, size=4)).astype(np.float32)
    y = Q.tflite_conv2d_int8(readonly(x), xs, xz, readonly(w), readonly(ws), readonly(bias), ys, yz,
                             padding=padding, stride=stride, activation=act)
    lo, hi = Q.tflite_activation_range(act, ys, yz)
    # scalar model: explicit padding taps skipped, Python-int requantization
    H, W = 5, 6
    if padding == "SAME":
        oh, ow = -(-H // stride), -(-W // stride)
        pt = max((oh - 1) * stride + 3 - H, 0) // 2
        pl = max((ow - 1) * stride + 3 - W, 0) // 2
    else:
        oh, ow, pt, pl = (H - 3) // stride + 1, (W - 3) // stride + 1, 0, 0
    assert y.shape == (1, oh, ow, 4)
    for o in range(4):
        qm, sh = _qm_ref(float(xs) * float(ws[o]) / float(ys))
        for i in range(oh):
            for j in range(ow):
                acc = 0
                for u in range(3):
                    for v in range(3):
                        yy, xx = i * stride + u - pt, j * stride + v - pl
                        if 0 <= yy < H and 0 <= xx < W:
                            acc += sum(int(w[o, u, v, c]) * (int(x[0, yy, xx, c]) - xz) for c in range(3))
                acc += int(bias[o])
                expect = min(max(_mbqm_ref(acc, qm, sh) + yz, lo), hi)
                assert int(y[0, i, j, o]) == expect


# ---------------------------------------------------------------------------------------------------
# Differential: LiteRT's reference kernels (SPEC-quant-exchange §0 item 2, §3, §9.3). One-op int8
# models are written with nnef-tools' TFLite flatbuffer writer (tests/_tflite_models.py; no TensorFlow)
# and run with OpResolverType.BUILTIN_REF. Every output integer is compared exactly. XNNPACK (the
# default resolver) and the optimized builtin kernels round differently by design and are not used.
# ---------------------------------------------------------------------------------------------------

def _litert():
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("nnef_tools")
    from tests import _tflite_models
    return _tflite_models


def _assert_same_ints(got, ref, what):
    """Zero mismatching integers; on failure, say how many and show the first few (index, refdet, LiteRT)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, ref.shape, got.dtype, ref.dtype)
    bad = np.argwhere(got != ref)
    assert bad.size == 0, (f"{what}: {len(bad)} of {got.size} integers differ from LiteRT BUILTIN_REF; first: "
                           f"{[(tuple(i), int(got[tuple(i)]), int(ref[tuple(i)])) for i in bad[:5]]}")


def _litert_conv(T, x, xs, xz, w, ws, b, ys, yz, **kw):
    """(refdet, LiteRT BUILTIN_REF) outputs of one int8 CONV_2D; kw: stride/dilation pairs, padding, activation."""
    ref = T.run_reference(T.conv2d_int8_model(x.shape, xs, xz, w, ws, b, ys, yz, **kw), x)
    got = Q.tflite_conv2d_int8(readonly(x), xs, xz, readonly(w), readonly(ws), readonly(b), ys, yz, **kw)
    return got, ref


def _log_uniform(r, lo, hi, size=None):
    return np.exp(r.uniform(np.log(lo), np.log(hi), size)).astype(np.float32)


@settings(max_examples=60)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from(["SAME", "VALID"]),
       st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]),
       st.tuples(st.integers(1, 3), st.integers(1, 3)), st.tuples(st.integers(1, 2), st.integers(1, 2)),
       st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 3, 5])))
def test_tflite_conv_random_models_bit_exact_with_litert_reference(seed, padding, activation, stride, dilation,
                                                                     kernel):
    T = _litert()
    r = np.random.default_rng(seed)
    kh, kw = kernel
    n, c, o = int(r.integers(1, 3)), int(r.integers(1, 9)), int(r.integers(1, 7))
    h = int(r.integers(dilation[0] * (kh - 1) + 1, 11))     # at least one VALID output row/column
    wd = int(r.integers(dilation[1] * (kw - 1) + 1, 11))
    x = r.integers(-128, 128, size=(n, h, wd, c)).astype(np.int8)
    w = r.integers(-127, 128, size=(o, kh, kw, c)).astype(np.int8)
    w[0].flat[0] = r.choice([-127, 127])                     # the int8 weight range's ends
    xz = int(r.choice([-128, 127, int(r.integers(-128, 128))]))
    yz = int(r.choice([-128, 127, int(r.integers(-128, 128))]))
    xs, ys = _log_uniform(r, 1e-3, 0.5), _log_uniform(r, 1e-3, 2.0)
    ws = _log_uniform(r, 1e-5, 0.05, o)                      # M from ~1e-8 to ~25 (left shifts too)
    m = np.float64(xs) * ws.astype(np.float64) / np.float64(ys)
    # bias puts the typical output inside [-128, 127] (|t| <= 150 so both clamps are also hit)
    b = np.clip(np.round(r.uniform(-150, 150, o) / m), -2 ** 24, 2 ** 24).astype(np.int32)
    got, ref = _litert_conv(T, x, xs, xz, w, ws, b, ys, yz, stride=stride, padding=padding, dilation=dilation,
                            activation=activation)
    _assert_same_ints(got, ref, f"CONV_2D {padding} {activation} stride={stride} dilation={dilation} k={kernel}")


def _near_tie_accs(m, lo, hi, k, out_range, r):
    """``k`` accumulators in [lo, hi] whose TFLite requantization is nearest a rounding tie.

    With ``(q, shift) = quantize_multiplier(m)``, ``left = max(shift, 0)``, ``right = max(-shift, 0)``, the
    fixed-point value is ``acc * q * 2**left / 2**(31 + right)``: it is a tie when the remainder of the
    numerator mod ``D = 2**(31 + right)`` is ``D / 2``. Candidates are ranked by ``|rem - D/2|`` (0 = exact
    tie; < 2**31 = the first rounding, SRDHM at 2**-31, can carry it across). Only accumulators whose
    exact value ``acc * m`` lies in ``out_range`` are used (a clamped output says nothing about rounding).
    """
    q, shift = Q.quantize_multiplier(m)
    left, right = max(shift, 0), max(-shift, 0)
    acc = np.arange(lo, hi + 1, dtype=np.int64)
    r.shuffle(acc)                                            # ties of equal rank: random signs/positions
    d = 1 << (31 + right)
    dist = np.abs((acc * (q << left)) % d - d // 2)
    ok = (acc * m > out_range[0]) & (acc * m < out_range[1])
    order = np.argsort(np.where(ok, dist, np.iinfo(np.int64).max), kind="stable")
    return acc[order[:k]], dist[order[:k]]


# (x_scale, per-channel w_scale, y_scale) families of the constructed near-tie models
_TIE_FAMILIES = [
    (0.5, [2.0 ** -1, 2.0 ** -2, 2.0 ** -3, 2.0 ** -5, 2.0 ** -9, 2.0 ** -14, 2.0 ** -21], 1.0),  # M = 2**-p
    (0.5, [3.0, 5.0, 1.0, 2.0 ** -1 * 3], 1.0),                   # M = 1.5, 2.5, 0.5, 0.75 (left shifts)
    (0.02, [0.005, 0.005 * 3, 0.0005, 0.05], 0.05),               # TV-R2 scales and relatives
    (0.0123, [0.00173, 0.000311, 0.0271, 0.00499], 0.0917),       # arbitrary float32 scales
    (0.0039215689, [0.0078125, 0.00392157, 0.0011, 0.0203], 0.0235294),   # 1/255-style activations
]


@pytest.mark.parametrize("family", range(len(_TIE_FAMILIES)))
@pytest.mark.parametrize("activation", ["NONE", "RELU"])
def test_tflite_conv_near_ties_bit_exact_with_litert_reference(family, activation):
    # A 1x1 conv over 2 input channels with weights [1, 127] reaches every accumulator in a window of
    # ~32k around each channel's bias: x0 + 127 * x1 = acc - bias + 128 * x_zp (x0 in [-63, 63]). Channel
    # o reads row o of the image, whose pixels are chosen to land its requantization at (or nearest) a tie.
    T = _litert()
    r = np.random.default_rng(1000 * family + len(activation))
    xs, ws_list, ys = _TIE_FAMILIES[family]
    xs, ys, ws = np.float32(xs), np.float32(ys), np.array(ws_list, np.float32)
    o, k = len(ws), 24
    xz, yz = int(r.integers(-20, 21)), int(r.integers(-30, 31))
    m = np.float64(xs) * ws.astype(np.float64) / np.float64(ys)          # what LiteRT computes
    # unclamped outputs only: RELU clamps below y_zp, so its exact values are kept >= 0
    lo_out, t = (-0.5, r.uniform(5, 90, o)) if activation == "RELU" else (-126 - yz, r.uniform(-90, 90, o))
    b = np.round((np.round(t) + 0.5) / m).astype(np.int32)                  # window centred on a tie
    x = np.zeros((1, o, k, 2), np.int8)
    n_exact = 0
    for c in range(o):
        base = int(b[c]) - 128 * xz
        acc, dist = _near_tie_accs(float(m[c]), base - 16000, base + 16000, k, (lo_out, 125 - yz), r)
        n_exact += int(np.sum(dist == 0))
        s = acc - b[c] + 128 * xz                                            # = x0 + 127 * x1
        x1 = np.floor_divide(s + 63, 127)
        x[0, c, :, 0], x[0, c, :, 1] = s - 127 * x1, x1
        assert np.array_equal((x[0, c, :, 0].astype(np.int64) - xz) + 127 * (x[0, c, :, 1].astype(np.int64) - xz)
                              + b[c], acc)
    w = np.zeros((o, 1, 1, 2), np.int8)
    w[:, 0, 0] = [1, 127]
    got, ref = _litert_conv(T, x, xs, xz, w, ws, b, ys, yz, activation=activation)
    _assert_same_ints(got, ref, f"near-tie family {family} ({activation})")
    # the cases really are ties: at least one other rounding rule would give different integers
    other = [Q.tflite_conv2d_int8(x, xs, xz, w, ws, b, ys, yz, activation=activation, mode=md)
             for md in ("tflite_single", "float_rne")]
    assert any(int(np.sum(v != ref)) for v in other)
    if family == 0:
        assert n_exact >= 3 * k                                  # power-of-two multipliers: exact ties
        assert all(int(np.sum(v != ref)) > 10 for v in other)


def test_tv_r1_tv_r2_through_litert_reference_conv():
    # A 1x1 conv with x = x_zp (or 0), w = 1: acc = bias. TV-R1 (M = 0.25) and TV-R2 (0.02, 0.005, 0.05,
    # zp -5) run on the real reference kernel give the values derived by hand in the tests above.
    T = _litert()
    for xs, ws, ys, yz, acc, expected in [
            (0.5, 0.5, 1.0, 0, TV_R1_ACC, [1, 2, 3, -1, -2, -3, 1, 1, 0, -1]),
            (0.02, 0.005, 0.05, -5, [250, 750, -250, 64000, 100000, -70000, 0], [-4, -3, -6, 123, 127, -128, -5])]:
        b = np.asarray(acc, np.int32)
        x = np.zeros((1, 1, 1, 1), np.int8)
        w = np.ones((len(b), 1, 1, 1), np.int8)
        got, ref = _litert_conv(T, x, xs, 0, w, np.full(len(b), ws, np.float32), b, ys, yz)
        assert ref[0, 0, 0].tolist() == expected
        _assert_same_ints(got, ref, "TV-R1/TV-R2")


# (x_scale, w_scale, y_scale, acc) where FC's float requantization and any Q31 fixed-point one disagree:
# acc * M (M in double) lies within ~2e-8 of a half, on the other side of it from acc * q * 2**(shift - 31)
_FC_Q31_SPLITS = [
    (0.074880450963974, 0.0003466918133199215, 0.44581878185272217, -1416773),    # -82.5000000082 -> -83
    (0.004960443824529648, 0.017068244516849518, 1.374250888824463, -1128084),    # -69.5000000026 -> -70
    (0.0074456073343753815, 0.0004637191887013614, 0.035309549421072006, -905066),  # -88.5000000204 -> -89
    (0.006129315588623285, 0.0024429429322481155, 0.057320911437273026, -438322),   # -114.4999999924 -> -114
    (0.005864746868610382, 0.0012997393496334553, 0.1142459437251091, -1596191),    # -106.4999999831 -> -106
]


def test_litert_fully_connected_requantizes_in_double_unlike_conv():
    # Found while building these tests (LiteRT 2.3.0, BUILTIN_REF): int8 FULLY_CONNECTED does not use the
    # gemmlowp fixed-point requantization of CONV_2D. It computes std::round(acc * M) in double, with
    # M = double(x_scale) * double(w_scale) / double(y_scale) (half away from zero; per-tensor and
    # per-channel alike), as LiteRT's "make the fully_connected ref kernel do requant in float" change
    # describes (google-ai-edge/LiteRT issue 8567). On TV-R1 (M = 0.25) the ops differ at acc = 1: exact
    # 0.25 -> FC 0, CONV_2D 1 (SRDHM(1, 2**30) = 1, then RoundingDivideByPOT(1, 1) = 1). refdet's
    # requantize(mode="tflite_fc") is this rule; mode="tflite" is CONV_2D's.
    T = _litert()

    def fc(xs, ws, ys, acc):
        ws = np.asarray(ws, np.float32)
        x, w = np.zeros((1, 1), np.int8), np.ones((len(acc), 1), np.int8)
        return T.run_reference(T.fully_connected_int8_model((1, 1), xs, 0, w, ws, np.asarray(acc, np.int32),
                                                            ys, 0), x)[0]

    def float_model(acc, xs, ws, ys):
        m = np.float64(np.float32(xs)) * np.float64(np.float32(ws)) / np.float64(np.float32(ys))
        return np.clip(Q.round_half_away(np.asarray(acc, np.float64) * m), -128, 127).astype(np.int64).tolist()

    assert fc(0.5, [0.5], 1.0, TV_R1_ACC).tolist() == [1, 2, 3, -1, -2, -3, 0, 1, 0, -1]
    assert float_model(TV_R1_ACC, 0.5, 0.5, 1.0) == [1, 2, 3, -1, -2, -3, 0, 1, 0, -1]
    assert Q.requantize(TV_R1_ACC, 0.25, 0, mode="tflite_fc").tolist() == [1, 2, 3, -1, -2, -3, 0, 1, 0, -1]
    assert Q.requantize(TV_R1_ACC, 0.25, 0, mode="tflite").tolist() == [1, 2, 3, -1, -2, -3, 1, 1, 0, -1]

    r = np.random.default_rng(7)
    for per_channel in (False, True):
        for _ in range(6):
            xs, ws, ys = _log_uniform(r, 1e-3, 0.5), _log_uniform(r, 1e-5, 0.05), _log_uniform(r, 1e-3, 2.0)
            m = float(np.float64(xs) * np.float64(ws) / np.float64(ys))
            lim = int(min(130 / m, 2 ** 30))
            acc = r.integers(-lim, lim, 16)
            ref = fc(xs, np.full(16 if per_channel else 1, ws, np.float32), ys, acc)
            assert ref.tolist() == float_model(acc, xs, ws, ys)
            m64 = np.float64(np.float32(xs)) * np.float64(np.float32(ws)) / np.float64(np.float32(ys))
            assert ref.tolist() == Q.requantize(acc, m64, 0, mode="tflite_fc").tolist()
    for xs, ws, ys, acc in _FC_Q31_SPLITS:
        m = float(np.float64(np.float32(xs)) * np.float64(np.float32(ws)) / np.float64(np.float32(ys)))
        q, shift = _qm_ref(m)
        v = Fraction(acc * q, 2 ** (31 - shift))                       # the exact Q31 product
        q31_once = -int(-v + Fraction(1, 2)) if v < 0 else int(v + Fraction(1, 2))
        got = fc(xs, [ws], ys, [acc]).tolist()
        assert got == float_model([acc], xs, ws, ys)
        assert got == Q.requantize([acc], m, 0, mode="tflite_fc").tolist()
        assert got != [q31_once]   # not the Q31 product rounded once (TV-R1's acc = 1 rules out twice)


@pytest.mark.parametrize("scale,zp", [(0.5, 0), (0.25, 3), (2.0 ** -7, -7), (0.1, 0), (0.037, 11),
                                      (0.02, -128), (1.7, 127), (0.0039215689, 1)])
def test_tflite_quantize_op_bit_exact_with_litert_reference(scale, zp):
    # TFLite reference QUANTIZE (float32 -> int8): q = clamp(TfLiteRound(x / scale) + zp), with x / scale a
    # float32 division and TfLiteRound = std::round (half away from zero); zp added after rounding.
    T = _litert()
    r = np.random.default_rng(int(zp) + 1000)
    s = np.float32(scale)
    k = np.arange(-140, 141)
    ties = (k + 0.5).astype(np.float32) * s                  # x / s == k + 0.5 exactly (kept only if so)
    ties = ties[ties / s == (k + 0.5).astype(np.float32)]
    x = np.concatenate([
        ties, -ties,
        (r.uniform(-300, 300, 400) * s).astype(np.float32),   # includes saturation at both ends
        np.float32([0.0, -0.0, 1e-30, -1e-30, -0.5 * s, 0.5 * s, 127.5 * s, -128.5 * s, 1e6, -1e6])])
    assert ties.size >= 100
    ref = T.run_reference(T.quantize_model(x.shape, s, zp), x)
    _assert_same_ints(Q.quantize(readonly(x), s, zp, rounding="half_away", op="div"), ref, "QUANTIZE half_away")
    _assert_same_ints(Q.quantize(x, s, zp, convention="tf"), ref, "QUANTIZE convention='tf'")
    assert int(np.sum(Q.quantize(x, s, zp, convention="onnx") != ref)) >= ties.size // 4   # RNE differs on ties


# ---------------------------------------------------------------------------------------------------
# Fake quantization (TV-F1) and its gradients
# ---------------------------------------------------------------------------------------------------

def test_tv_f1_masks_and_straight_through_gradient():
    # s = 0.1, z = 0, int8 [-128, 127]: (qmax - z) s = 12.7. x = 12.74 -> x*10 = 127.4 -> q = 127: inside
    # both masks? torch: q = 127 in range -> passes; tf: 12.74 > 12.7 -> blocked.
    # x = 12.76 -> 127.6 -> q = 128 > 127: blocked by both. x = -12.84 -> -128.4 -> -128: torch passes, tf blocks.
    x = np.array([0.0, 0.05, 12.74, 12.76, -12.84, -12.86, 3.33])
    y, c = Q.fake_quant_forward(readonly(x), 0.1, 0, qmin=-128, qmax=127)
    assert c.mask.tolist() == [True, True, True, False, True, False, True]
    np.testing.assert_allclose(y, [0.0, 0.0, 12.7, 12.7, -12.8, -12.8, 3.3], rtol=0, atol=1e-12)
    # 0.05 / 0.1 computed as 0.05 * 10.0 = 0.5 exactly -> RNE -> 0
    _, ctf = Q.fake_quant_forward(x, 0.1, 0, qmin=-128, qmax=127, mask="tf")
    assert ctf.mask.tolist() == [True, True, False, False, False, False, True]
    dy = np.arange(1.0, 8.0)
    g = Q.fake_quant_backward(readonly(dy), c)
    assert g.dx.tolist() == [1, 2, 3, 0, 5, 0, 7]
    assert g.dscale is None and g.dzero_point is None


def test_tv_f1_learnable_gradients_by_hand():
    # s = 1, z = 1.0 (forward zp rint(1) = 1, backward zp (int)(1.5) = 1), qmin -128, qmax 127, grad_factor 1
    # x = 2.5: backward xq = rint(1 + 2.5) = 4 (z added before rounding), x_hat = (4 - 1) * 1 = 3:
    #   dscale = (3 - 2.5) / 1 = 0.5; forward y = (1 + rint(2.5) - 1) = 2.
    # x = 200: xq = 201 > 127: dscale = 127 - 1 = 126, dzp = -1, dx = 0. x = -300: dscale = -128 - 1 = -129.
    x = np.array([2.5, 200.0, -300.0], np.float32)
    y, c = Q.fake_quant_forward(x, np.float32(1.0), np.float32(1.0), qmin=-128, qmax=127, learnable=True)
    assert y.tolist() == [2.0, 126.0, -129.0]
    g = Q.fake_quant_backward(np.ones(3, np.float32), c)
    assert g.dx.tolist() == [1, 0, 0]
    assert g.dscale.tolist() == [0.5 + 126 - 129]
    assert g.dzero_point.tolist() == [-2.0]
    # z = 0.5: forward rint(0.5) = 0 but backward (int)(0.5 + 0.5) = 1: the quirk of SPEC 2.2
    y, c = Q.fake_quant_forward(x, np.float32(1.0), np.float32(0.5), qmin=-128, qmax=127, learnable=True,
                                grad_factor=0.5)
    assert y.tolist() == [2.0, 127.0, -128.0]
    g = Q.fake_quant_backward(np.ones(3, np.float32), c)
    assert g.dscale.tolist() == [(0.5 + 126 - 129) * 0.5]
    assert g.dzero_point.tolist() == [-1.0]


def test_fake_quant_backward_shape_and_empty():
    y, c = Q.fake_quant_forward(np.zeros((0, 3)), 0.1, 0, qmin=0, qmax=255)
    assert y.shape == (0, 3)
    assert Q.fake_quant_backward(np.zeros((0, 3)), c).dx.shape == (0, 3)
    with pytest.raises(ValueError, match="`dy` must have the shape"):
        Q.fake_quant_backward(np.zeros(4), c)


@given(hnp.arrays(np.float64, 25, elements=st.floats(-20, 20)), st.floats(0.01, 0.5))
def test_fake_quant_gradient_away_from_rounding_points_is_identity_inside(x, s):
    # Central differences see slope 0 (a staircase); STE passes 1 inside: check the analytic STE
    # against the definition: dx == dy exactly where qmin <= rint(x/s) + z <= qmax.
    y, c = Q.fake_quant_forward(x, s, 3, qmin=-128, qmax=127, op="div")
    q = np.rint(x / s) + 3
    assert np.array_equal(c.mask, (q >= -128) & (q <= 127))
    assert np.array_equal(Q.fake_quant_backward(np.ones_like(x), c).dx, c.mask.astype(float))
    # and the forward is the dequantized quantization
    np.testing.assert_array_equal(y, Q.dequantize(Q.quantize(x, s, 3, convention="onnx"), s, 3, out_dtype="float64"))


def test_learnable_scale_gradient_matches_finite_differences_away_from_steps():
    # Inside the range d(x_hat)/ds = round(x/s) - x/s is the derivative of (round(x/s)) * s with the
    # rounded value held fixed: check it by central differences on a staircase-free perturbation.
    r = np.random.default_rng(0)
    x = r.uniform(-3, 3, size=50)
    s, eps = 0.05, 1e-7
    y, c = Q.fake_quant_forward(x, s, 0.0, qmin=-128, qmax=127, learnable=True)
    dy = r.standard_normal(50)
    g = Q.fake_quant_backward(dy, c)
    yp, _ = Q.fake_quant_forward(x, s + eps, 0.0, qmin=-128, qmax=127, learnable=True)
    ym, _ = Q.fake_quant_forward(x, s - eps, 0.0, qmin=-128, qmax=127, learnable=True)
    # the LSQ gradient differs from d(fake_quant)/ds by the -x/s term of round(x/s) (held fixed here)
    fd = ((yp - ym) / (2 * eps) * dy).sum()
    lsq_minus_fd = (dy * (-x / s) * c.mask).sum()
    assert abs(g.dscale[0] - (fd + lsq_minus_fd)) < 1e-5 * max(1, abs(fd))


# ---------------------------------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------------------------------

OBSERVERS = [
    lambda: Q.MinMaxObserver(dtype="uint8"),
    lambda: Q.MovingAverageMinMaxObserver(dtype="uint8"),
    lambda: Q.PerChannelMinMaxObserver(ch_axis=1, symmetric=True),
    lambda: Q.PercentileObserver(num_bins=128),
    lambda: Q.HistogramObserver(bins=256, dtype="uint8"),
    lambda: Q.MSEObserver(num_grid=20),
]


@pytest.mark.parametrize("make", OBSERVERS, ids=lambda m: type(m()).__name__)
def test_observer_contract(make):
    obs = make()
    with pytest.raises(ValueError, match="no data observed"):
        obs.qparams()
    r = np.random.default_rng(0)
    a = readonly(r.standard_normal((4, 3, 5)).astype(np.float32))
    b = readonly(r.standard_normal((4, 3, 5)).astype(np.float32) * 3)
    assert obs.update(a) is obs
    obs.update(b)
    obs.update(np.zeros((0, 3, 5), np.float32))  # empty batches are ignored
    qp = obs.qparams()
    assert qp.scale.dtype == np.float32 and qp.zero_point.dtype == np.int64
    assert np.all(qp.scale > 0)
    with pytest.raises(ValueError, match="`x`.*NaN"):
        obs.update(np.array([[[np.nan]]]))
    with pytest.raises(TypeError, match="`x`"):
        obs.update("data")


def test_observer_bad_construction():
    with pytest.raises(ValueError, match="`averaging_constant`"):
        Q.MovingAverageMinMaxObserver(averaging_constant=2.0)
    with pytest.raises(ValueError, match="`convention`"):
        Q.MinMaxObserver(convention="caffe")
    with pytest.raises(ValueError, match="`dtype`"):
        Q.HistogramObserver(dtype="int4")
    obs = Q.PerChannelMinMaxObserver(ch_axis=0).update(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="channels"):
        obs.update(np.zeros((4, 2)))


def test_mse_observer_clips_heavy_tails_and_breaks_ties_to_larger_range():
    x = np.random.default_rng(0).laplace(size=20000)
    obs = Q.MSEObserver(num_grid=100, dtype="int8", symmetric=True, convention="onnx").update(x)
    lo, hi = obs.search_range()
    assert 0 < hi < np.abs(x).max() and lo == -hi
    # the chosen k minimises the error (checked against the error table)
    err = obs.errors()
    assert err[int(round(hi / np.abs(x).max() * 100)) - 1] == err.min()
    # ties: the larger range wins
    obs = Q.MSEObserver(num_grid=4, dtype="int8").update(np.array([-1.0, 2.0]))
    obs.errors = lambda: np.array([1.0, 0.5, 0.5, 2.0])
    assert obs.search_range() == (-0.75, 1.5)


# ---------------------------------------------------------------------------------------------------
# Differential: onnxruntime and onnx.reference
# ---------------------------------------------------------------------------------------------------

def _onnx():
    """``onnx.helper``, once onnx and onnxruntime import; the test is skipped otherwise (core install)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper
    return helper


def _ort_session(nodes, inputs, outputs, initializers=(), opset=19, optimize=True):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model) if all(o.type.tensor_type.HasField("shape") for o in outputs) else None
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return model, sess


def _vi(name, dtype, shape):
    from onnx import helper, TensorProto
    t = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}[np.dtype(dtype)]
    return helper.make_tensor_value_info(name, t, shape)


def _const(name, arr):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.asarray(arr), name)


def _reference_run(model, feeds):
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, feeds)


def _tie_inputs(r, n, scale):
    """Random values plus values placed exactly on .5 steps of ``scale`` (float32 ties)."""
    k = r.integers(-300, 300, size=n)
    ties = ((k + 0.5) * np.float64(scale)).astype(np.float32)
    rand = r.uniform(-3, 3, size=n).astype(np.float32)
    return np.concatenate([ties, rand])


@pytest.mark.parametrize("dtype,per_axis", [(np.uint8, False), (np.int8, False), (np.int8, True), (np.uint8, True)])
def test_quantize_linear_matches_onnxruntime_and_reference(dtype, per_axis):
    helper = _onnx()
    r = np.random.default_rng(1)
    if per_axis:
        x = np.stack([_tie_inputs(r, 100, s) for s in (0.5, 0.25, 0.02)]).astype(np.float32)  # (3, 200)
        scale = np.array([0.5, 0.25, 0.02], np.float32)
        zp = np.array([3, 128, 1] if dtype == np.uint8 else [-1, 0, 7], dtype)
        node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    else:
        x = _tie_inputs(r, 400, 0.0625)
        x = np.concatenate([x, np.array([0.05, 0.15, 0.25, 0.35], np.float32)])
        scale = np.array(0.0625, np.float32)
        zp = np.array(129 if dtype == np.uint8 else -3, dtype)
        node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    model, sess = _ort_session([node], [_vi("x", np.float32, list(x.shape))], [_vi("y", dtype, list(x.shape))],
                               [_const("s", scale), _const("z", zp)])
    got = Q.quantize(x, scale, zp, dtype=np.dtype(dtype).name, axis=0 if per_axis else None, convention="onnx")
    assert np.array_equal(got, sess.run(None, {"x": x})[0])
    assert np.array_equal(got, _reference_run(model, {"x": x})[0])


def test_dequantize_linear_matches_onnxruntime():
    helper = _onnx()
    r = np.random.default_rng(2)
    q = r.integers(-128, 128, size=(3, 50)).astype(np.int8)
    scale = np.array([0.1, 0.037, 3.3], np.float32)
    zp = np.array([0, -5, 17], np.int8)
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=0)
    model, sess = _ort_session([node], [_vi("q", np.int8, [3, 50])], [_vi("y", np.float32, [3, 50])],
                               [_const("s", scale), _const("z", zp)])
    got = Q.dequantize(q, scale, zp, axis=0)
    assert np.array_equal(got, sess.run(None, {"q": q})[0])  # bit for bit in float32


@pytest.mark.parametrize("wdtype", [np.uint8, np.int8])
def test_conv_integer_matches_onnxruntime(wdtype):
    helper = _onnx()
    r = np.random.default_rng(4)
    x = r.integers(0, 256, size=(2, 4, 7, 8)).astype(np.uint8)
    lo, hi = np.iinfo(wdtype).min, np.iinfo(wdtype).max
    w = r.integers(lo, hi + 1, size=(6, 2, 3, 3)).astype(wdtype)
    xzp, wzp = np.array(131, np.uint8), np.array(3, wdtype)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1],
                            dilations=[1, 2], group=2)
    model, sess = _ort_session([node], [_vi("x", np.uint8, list(x.shape))], [_vi("y", np.int32, None)],
                               [_const("w", w), _const("xz", xzp), _const("wz", wzp)])
    # ONNX pads [1, 0, 2, 1] = (top, left, bottom, right) are refdet's (top, bottom, left, right) = (1, 2, 0, 1)
    got = Q.conv2d_int(x, w, x_zero_point=xzp, w_zero_point=wzp, padding=(1, 2, 0, 1), stride=(2, 1),
                       dilation=(1, 2), groups=2, accumulator="int32")
    ort_out = sess.run(None, {"x": x})[0]
    assert ort_out.shape == got.shape
    assert np.array_equal(got, ort_out)
    assert np.array_equal(got, _reference_run(model, {"x": x})[0])


def _qlinear_model(x_shape, w, x_s, x_z, w_s, w_z, y_s, y_z, B, **attrs):
    helper = _onnx()
    inputs = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"] + (["B"] if B is not None else [])
    node = helper.make_node("QLinearConv", inputs, ["y"], **attrs)
    inits = [_const("xs", np.float32(x_s)), _const("xz", x_z), _const("w", w), _const("ws", w_s),
             _const("wz", w_z), _const("ys", np.float32(y_s)), _const("yz", y_z)]
    if B is not None:
        inits.append(_const("B", B))
    return _ort_session([node], [_vi("x", x_z.dtype, list(x_shape))], [_vi("y", y_z.dtype, None)], inits)


@pytest.mark.parametrize("seed,groups,dil,xdt", [(0, 1, 1, np.uint8), (1, 1, 2, np.uint8), (2, 3, 1, np.uint8),
                                                  (3, 1, 1, np.int8), (4, 3, 2, np.int8)])
def test_qlinear_conv_random_matches_onnxruntime_and_reference(seed, groups, dil, xdt):
    r = np.random.default_rng(seed)
    lo, hi = np.iinfo(xdt).min, np.iinfo(xdt).max
    x = r.integers(lo, hi + 1, size=(2, 6, 9, 9)).astype(xdt)
    w = r.integers(-127, 128, size=(6, 6 // groups, 3, 3)).astype(np.int8)
    x_s, y_s = np.float32(r.uniform(0.005, 0.05)), np.float32(r.uniform(0.02, 0.2))
    w_s = r.uniform(0.001, 0.02, size=6).astype(np.float32)
    x_z, y_z, w_z = xdt(r.integers(lo, hi + 1)), xdt(r.integers(lo, hi + 1)), np.zeros(6, np.int8)
    B = r.integers(-3000, 3000, size=6).astype(np.int32)
    model, sess = _qlinear_model(x.shape, w, x_s, np.array(x_z), w_s, w_z, y_s, np.array(y_z), B, pads=[1, 0, 2, 1],
                                 strides=[2, 1], dilations=[dil, dil], group=groups)
    kw = dict(pads=[1, 0, 2, 1], stride=(2, 1), dilation=dil, groups=groups)   # the node's ONNX-order pads
    got = Q.qlinear_conv(x, x_s, x_z, w, w_s, w_z, y_s, y_z, B, **kw)
    assert got.dtype == xdt
    assert np.array_equal(got, sess.run(None, {"x": x})[0])
    ref = Q.qlinear_conv(x, x_s, x_z, w, w_s, w_z, y_s, y_z, B, mode="onnx_reference", **kw)
    assert np.array_equal(ref, _reference_run(model, {"x": x})[0])


def _tie_acc(m32, y_z):
    """Accumulators whose requantized value sits at a rounding tie that splits the two runtimes:
    ``rint(float32(acc) * M32) + y_z`` (onnxruntime) != ``np.round(acc * float64(M32) + y_z)``
    (onnx.reference), with the result inside (-128, 127)."""
    reach = int(min(130 / float(m32), 2 ** 24))
    accs = np.arange(-reach, reach + 1, dtype=np.int64)
    p32 = np.rint(accs.astype(np.float32) * m32).astype(np.int64) + y_z
    p64 = np.round(accs.astype(np.float64) * np.float64(m32) + y_z).astype(np.int64)
    return accs[(p32 != p64) & (p32 > -128) & (p32 < 127)]


def _m32(x_s, w_s, y_s):
    return np.float32(np.float32(np.float32(x_s) * np.float32(w_s)) / np.float32(y_s))


@pytest.mark.parametrize("x_s,y_s,y_z,exact", [
    (0.5, 1.0, 1, True),             # w_s = 0.5: M = 0.25 exactly; acc = 2 mod 4 is an exact .5 tie and
                                     # the odd y_z splits "round, then + zp" from "+ zp, then round"
    (0.02, 0.05, -5, False),         # TV-R2 scales: float32 product lands on .5, float64 does not
    (0.0123, 0.0917, 3, False),
    (0.3, 2.9, -1, False),
])
def test_qlinear_conv_near_ties_exact_against_each_runtime(x_s, y_s, y_z, exact):
    """Per output channel c, w_s[c] is searched so that some accumulator acc_c is a tie; a 1x1 conv
    with x = every int8 value, w = 1 and bias B_c = acc_c - x0_c puts acc_c at the pixel holding x0_c."""
    r = np.random.default_rng(0)
    F = 6
    w_s, accs = [], []
    while len(w_s) < F:
        ws = np.float32(0.5) if exact else np.float32(r.uniform(0.001, 0.02))
        ties = _tie_acc(_m32(x_s, ws, y_s), y_z)
        if ties.size:
            w_s.append(ws)
            accs.append(int(r.choice(ties)))
    w_sv = np.array(w_s, np.float32)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 16, 16)
    x0 = r.integers(-128, 128, size=F)
    B = (np.array(accs) - x0).astype(np.int32)
    w = np.ones((F, 1, 1, 1), np.int8)
    y_zv = np.array(y_z, np.int8)
    wz = np.zeros(F, np.int8)
    model, sess = _qlinear_model(x.shape, w, x_s, np.array(0, np.int8), w_sv, wz, y_s, y_zv, B)
    ort_out = sess.run(None, {"x": x})[0]
    ref_out = _reference_run(model, {"x": x})[0]
    ours_ort = Q.qlinear_conv(x, x_s, np.int8(0), w, w_sv, wz, y_s, y_zv, B)
    ours_ref = Q.qlinear_conv(x, x_s, np.int8(0), w, w_sv, wz, y_s, y_zv, B, mode="onnx_reference")
    assert np.array_equal(ours_ort, ort_out)
    assert np.array_equal(ours_ref, ref_out)
    # at the constructed pixels the two runtimes really disagree (by one step)
    idx = x0 + 128
    a = ort_out[0, np.arange(F), idx // 16, idx % 16].astype(int)
    b = ref_out[0, np.arange(F), idx // 16, idx % 16].astype(int)
    assert np.all(np.abs(a - b) == 1)


def test_qdq_conv_matches_onnxruntime():
    helper = _onnx()
    r = np.random.default_rng(7)
    x = r.uniform(-1, 2, size=(1, 3, 8, 8)).astype(np.float32)
    wf = r.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2
    bf = r.standard_normal(4).astype(np.float32) * 0.1
    xq = Q.qparams_from_minmax(x.min(), x.max(), dtype="uint8", convention="onnx")
    wq = Q.qparams_from_minmax(wf.reshape(4, -1).min(1), wf.reshape(4, -1).max(1), symmetric=True, axis=0,
                               convention="onnx")
    w_int = Q.quantize(wf, wq.scale, wq.zero_point, axis=0, convention="onnx")
    b_scale = (xq.scale * wq.scale).astype(np.float32)
    b_int = Q.quantize(bf, b_scale, 0, dtype="int32", axis=0, convention="onnx")
    y_s, y_z = np.float32(0.03), np.uint8(100)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["yf"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"]),
    ]
    inits = [_const("xs", xq.scale), _const("xz", np.array(xq.zero_point, np.uint8)), _const("w", w_int),
             _const("ws", wq.scale), _const("wz", np.zeros(4, np.int8)), _const("b", b_int),
             _const("bs", b_scale), _const("bz", np.zeros(4, np.int32)), _const("ys", y_s),
             _const("yz", np.array(y_z))]
    model, sess = _ort_session(nodes, [_vi("x", np.float32, list(x.shape))], [_vi("y", np.uint8, None)], inits)
    x_int = Q.quantize(x, xq.scale, xq.zero_point, dtype="uint8", convention="onnx")
    ours = Q.qlinear_conv(x_int, xq.scale, np.uint8(xq.zero_point), w_int, wq.scale, np.zeros(4, np.int8), y_s,
                          y_z, b_int, padding=1)
    assert np.array_equal(ours, sess.run(None, {"x": x})[0])  # fused to QLinearConv by ORT


@given(st.floats(-50, 0), st.floats(0, 50), st.booleans(), st.sampled_from(["int8", "uint8"]))
def test_qparams_onnx_matches_onnxruntime_compute_scale_zp(rmin, rmax, symmetric, dtype):
    qu = pytest.importorskip("onnxruntime.quantization.quant_utils")
    from onnx import TensorProto
    qtype = TensorProto.INT8 if dtype == "int8" else TensorProto.UINT8
    qmin, qmax = qu.get_qmin_qmax_for_qType(qtype, symmetric=symmetric)
    zp, scale = qu.compute_scale_zp(np.array(rmin, np.float32), np.array(rmax, np.float32), qmin, qmax,
                                    symmetric=symmetric)
    got = Q.qparams_from_minmax(np.float32(rmin), np.float32(rmax), dtype=dtype, symmetric=symmetric,
                                convention="onnx")
    assert got.scale == scale and got.scale.dtype == scale.dtype
    assert int(got.zero_point) == int(zp)


def test_percentile_observer_matches_onnxruntime_histogram_collector(capsys):
    calib = pytest.importorskip("onnxruntime.quantization.calibrate")
    r = np.random.default_rng(5)
    batches = [r.standard_normal(3000).astype(np.float32) * s for s in (1.0, 2.5, 0.5)]
    batches[1][0] = 40.0  # an outlier that the percentile cuts
    for symmetric in (False, True):
        col = calib.HistogramCollector("percentile", symmetric, 512, 128, 99.9, None)
        obs = Q.PercentileObserver(99.9, 512, symmetric=symmetric)
        for b in batches:
            col.collect({"t": b})
            obs.update(readonly(b))
        lo, hi = col.compute_percentile()["t"][:2]
        assert obs.thresholds() == (lo, hi)
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------------
# Differential: torch
# ---------------------------------------------------------------------------------------------------

@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    t.set_num_threads(1)
    return t


def test_torch_quantize_per_tensor_and_per_channel(torch):
    r = np.random.default_rng(8)
    x = np.concatenate([_tie_inputs(r, 200, 0.1), np.array([0.05, 0.15, 0.25, 0.35], np.float32)])
    for dt, tdt in (("uint8", torch.quint8), ("int8", torch.qint8)):
        zp = 7 if dt == "int8" else 131
        tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.1, zp, tdt).int_repr().numpy()
        assert np.array_equal(Q.quantize(x, np.float32(0.1), zp, dtype=dt, convention="torch"), tq)
    xc = np.stack([_tie_inputs(r, 50, s) for s in (0.5, 0.03, 0.1)])
    sc = np.array([0.5, 0.03, 0.1], np.float32)
    zc = np.array([0, 3, -9])
    tq = torch.quantize_per_channel(torch.from_numpy(xc), torch.from_numpy(sc.astype(np.float64)),
                                    torch.from_numpy(zc), 0, torch.qint8).int_repr().numpy()
    assert np.array_equal(Q.quantize(xc, sc, zc, axis=0, convention="torch"), tq)


@pytest.mark.parametrize("per_channel", [False, True])
def test_torch_fake_quantize_forward_and_gradient(torch, per_channel):
    r = np.random.default_rng(9)
    if per_channel:
        sc = np.array([0.1, 0.0625, 0.3], np.float32)
        zc = np.array([3, 0, -7], np.int32)
        x = np.stack([_tie_inputs(r, 150, s) * 3 for s in sc])  # reaches beyond the range too
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.fake_quantize_per_channel_affine(xt, torch.from_numpy(sc), torch.from_numpy(zc), 0, -128, 127)
        y, c = Q.fake_quant_forward(x, sc, zc, qmin=-128, qmax=127, axis=0)
    else:
        x = _tie_inputs(r, 300, 0.1) * 5
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.fake_quantize_per_tensor_affine(xt, 0.1, 3, -128, 127)
        y, c = Q.fake_quant_forward(x, np.float32(0.1), 3, qmin=-128, qmax=127)
    dy = r.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    assert np.array_equal(y, yt.detach().numpy())  # bit for bit
    assert np.array_equal(Q.fake_quant_backward(dy, c).dx, xt.grad.numpy())


@pytest.mark.parametrize("z", [0.0, 1.0, 0.5, 1.6, -0.5, 2.5, 3.0])
def test_torch_learnable_fake_quantize_forward_and_gradients(torch, z):
    r = np.random.default_rng(10)
    s = np.float32(0.0625)
    x = np.concatenate([_tie_inputs(r, 200, s) * 2, np.array([200.0, -300.0], np.float32)])
    xt = torch.from_numpy(x).requires_grad_(True)
    st_ = torch.tensor([s], requires_grad=True)
    zt = torch.tensor([z], dtype=torch.float32, requires_grad=True)
    yt = torch._fake_quantize_learnable_per_tensor_affine(xt, st_, zt, -128, 127, 0.37)
    dy = r.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    y, c = Q.fake_quant_forward(x, s, np.float32(z), qmin=-128, qmax=127, learnable=True, grad_factor=0.37)
    g = Q.fake_quant_backward(dy, c)
    assert np.array_equal(y, yt.detach().numpy())
    assert np.array_equal(g.dx, xt.grad.numpy())
    # float32 sums in torch, float64 in refdet: relative to the sum of |terms|
    for mine, theirs, scale in ((g.dscale, st_.grad, 300 * 127), (g.dzero_point, zt.grad, 300 * float(s))):
        assert abs(float(mine[0]) - float(theirs[0])) <= 1e-5 * scale


def test_torch_minmax_observers(torch):
    from torch.ao.quantization import observer as tob
    r = np.random.default_rng(11)
    batches = [(r.standard_normal((4, 3, 5)) * s + o).astype(np.float32) for s, o in ((1, 0.2), (3, -1), (0.5, 2))]
    cases = [
        (tob.MinMaxObserver(dtype=torch.quint8), Q.MinMaxObserver(dtype="uint8")),
        (tob.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
         Q.MinMaxObserver(dtype="int8", symmetric=True)),
        (tob.MovingAverageMinMaxObserver(dtype=torch.quint8), Q.MovingAverageMinMaxObserver(dtype="uint8")),
        (tob.PerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
         Q.PerChannelMinMaxObserver(ch_axis=1, dtype="int8", symmetric=True)),
        (tob.PerChannelMinMaxObserver(ch_axis=2, dtype=torch.quint8),
         Q.PerChannelMinMaxObserver(ch_axis=2, dtype="uint8")),
    ]
    for tobs, obs in cases:
        for b in batches:
            tobs(torch.from_numpy(b))
            obs.update(b)
        ts, tz = tobs.calculate_qparams()
        qp = obs.qparams()
        assert np.array_equal(qp.scale, ts.numpy().reshape(qp.scale.shape)), type(obs).__name__
        assert np.array_equal(qp.zero_point, tz.numpy().reshape(qp.zero_point.shape))


def test_torch_histogram_observer(torch):
    from torch.ao.quantization import observer as tob
    r = np.random.default_rng(12)
    batches = [r.standard_normal(4000).astype(np.float32), (r.standard_normal(4000) * 2 + 1).astype(np.float32)]
    batches[0][:3] = [15.0, -9.0, 12.0]
    for n_batches in (1, 2):
        tobs = tob.HistogramObserver(bins=256, dtype=torch.quint8)
        obs = Q.HistogramObserver(bins=256, dtype="uint8")
        for b in batches[:n_batches]:
            tobs(torch.from_numpy(b))
            obs.update(b)
        np.testing.assert_allclose(obs.histogram, tobs.histogram.numpy(), rtol=1e-5, atol=1e-3)
        ts, tz = tobs.calculate_qparams()
        qp = obs.qparams()
        bin_w = (float(obs.max_val) - float(obs.min_val)) / 256
        # within one histogram bin of the range (float32 vs float64 error sums may break a near tie)
        assert abs(float(qp.scale) - float(ts[0])) * 255 <= bin_w + 1e-6
        if n_batches == 1:
            assert float(qp.scale) == float(ts[0]) and int(qp.zero_point) == int(tz[0])


# ---------------------------------------------------------------------------------------------------
# Hypothesis-driven differentials (ties drawn by refdet.testing.strategies.quant_tie_values)
# ---------------------------------------------------------------------------------------------------

_SESSIONS = {}


def _quantize_linear_session(dtype):
    """One ORT QuantizeLinear session per dtype with x, scale and zero point all as graph inputs."""
    if dtype not in _SESSIONS:
        helper = _onnx()
        node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
        _SESSIONS[dtype] = _ort_session([node], [_vi("x", np.float32, ["N"]), _vi("s", np.float32, []),
                                                 _vi("z", dtype, [])], [_vi("y", dtype, ["N"])])
    return _SESSIONS[dtype]


@given(st.data(), st.sampled_from([np.uint8, np.int8]))
def test_hypothesis_quantize_linear_vs_onnxruntime(data, dtype):
    from refdet.testing import strategies as rst
    scale = data.draw(rst.quant_scales())
    x = data.draw(rst.quant_tie_values(scale))
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    zp = np.array(data.draw(st.integers(lo, hi)), dtype)
    model, sess = _quantize_linear_session(dtype)
    expected = sess.run(None, {"x": x, "s": np.array(scale, np.float32), "z": zp})[0]
    got = Q.quantize(x, np.float32(scale), zp, dtype=np.dtype(dtype).name, convention="onnx")
    assert np.array_equal(got, expected)


@given(st.data())
def test_hypothesis_fake_quantize_vs_torch(data):
    torch = pytest.importorskip("torch")
    from refdet.testing import strategies as rst
    scale = data.draw(rst.quant_scales())
    x = data.draw(rst.quant_tie_values(scale))
    zp = data.draw(st.integers(-128, 127))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.fake_quantize_per_tensor_affine(xt, float(scale), zp, -128, 127)
    dy = np.linspace(-1, 1, len(x)).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    y, c = Q.fake_quant_forward(x, np.float32(scale), zp, qmin=-128, qmax=127)
    assert np.array_equal(y, yt.detach().numpy())
    assert np.array_equal(Q.fake_quant_backward(dy, c).dx, xt.grad.numpy())


# ---------------------------------------------------------------------------------------------------
# quantize_weights / quantize_bias (building blocks of a quantized head)
# ---------------------------------------------------------------------------------------------------

def test_quantize_bias_ties_per_convention():
    # bias_scale = 0.5 * 0.5 = 0.25; b / 0.25 = [0.5, 1.5, -0.5, 2.5]
    b = np.array([0.125, 0.375, -0.125, 0.625])
    qb = Q.quantize_bias(readonly(b), 0.5, 0.5)
    assert qb.q.dtype == np.int32 and qb.scale == np.float32(0.25)
    assert qb.q.tolist() == [0, 2, 0, 2]                                      # onnxruntime: RNE
    assert Q.quantize_bias(b, 0.5, 0.5, convention="tf").q.tolist() == [1, 2, -1, 3]   # TFLite: half away
    # per-channel scale and int32 saturation
    qb = Q.quantize_bias(np.array([1.0, 1e12]), 0.5, np.array([0.5, 0.5], np.float32))
    assert qb.q.tolist() == [4, 2 ** 31 - 1] and qb.scale.shape == (2,)


def test_quantize_weights_matches_onnxruntime_quantizer():
    qu = pytest.importorskip("onnxruntime.quantization.quant_utils")
    from onnx import TensorProto
    r = np.random.default_rng(13)
    w = (r.standard_normal((6, 3, 3, 3)) * 0.2).astype(np.float32)
    w[2, 0, 0, 0] = 0.9  # a channel whose range ends on a value that maps to exactly 127
    got = Q.quantize_weights(readonly(w), convention="onnx")
    for c in range(6):
        zp, scale, q = qu.quantize_data(w[c].ravel(), TensorProto.INT8, symmetric=True)
        assert got.scale[c] == scale and int(got.zero_point[c]) == int(zp)
        assert np.array_equal(got.q[c].ravel(), q)
    got_u8 = Q.quantize_weights(w, axis=None, dtype="uint8", symmetric=False, convention="onnx")
    zp, scale, q = qu.quantize_data(w.ravel(), TensorProto.UINT8, symmetric=False)
    assert got_u8.scale == scale and int(got_u8.zero_point) == int(zp)
    assert np.array_equal(got_u8.q.ravel(), q)


def test_quantize_weights_matches_torch_per_channel_symmetric(torch):
    from torch.ao.quantization import observer as tob
    r = np.random.default_rng(14)
    w = (r.standard_normal((5, 4, 3, 3)) * 0.1).astype(np.float32)
    obs = tob.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    wt = torch.from_numpy(w)
    obs(wt)
    ts, tz = obs.calculate_qparams()
    tq = torch.quantize_per_channel(wt, ts, tz, 0, torch.qint8).int_repr().numpy()
    got = Q.quantize_weights(w, convention="torch")
    assert np.array_equal(got.scale, ts.numpy().astype(np.float32))
    assert np.array_equal(got.q, tq)


def test_dynamic_quantize_linear_is_onnx_rule_in_float32():
    """onnxruntime's DynamicQuantizeLinear computes scale and zero point in float32, unlike the
    quantization tooling's compute_scale_zp (float64): scale_dtype="float32" reproduces it exactly, the
    float64 default differs on a good fraction of random arrays (scale ulp or zero point)."""
    helper = _onnx()
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    model, sess = _ort_session([node], [_vi("x", np.float32, ["N"])],
                               [_vi("y", np.uint8, ["N"]), _vi("s", np.float32, []), _vi("z", np.uint8, [])])
    r = np.random.default_rng(15)
    differs_f64 = 0
    for _ in range(300):
        x = (r.standard_normal(40) * r.uniform(0.01, 10) + r.uniform(-3, 3)).astype(np.float32)
        y, s, z = sess.run(None, {"x": x})
        qp = Q.qparams_from_minmax(x.min(), x.max(), dtype="uint8", convention="onnx", scale_dtype="float32")
        assert qp.scale == s and int(qp.zero_point) == int(z)
        assert np.array_equal(Q.quantize(x, qp.scale, qp.zero_point, dtype="uint8", convention="onnx"), y)
        qp64 = Q.qparams_from_minmax(x.min(), x.max(), dtype="uint8", convention="onnx")
        differs_f64 += int(qp64.scale != s or int(qp64.zero_point) != int(z))
    assert differs_f64 > 0


def test_srdhm_ties_go_toward_plus_infinity():
    # a * 2**30 / 2**31 = a / 2: the SPEC calls SRDHM "half away from zero", but the negative nudge
    # 1 - 2**30 is one short of a half: -0.5 -> trunc((-2**30 + 1 - 2**30) / 2**31) = trunc(-0.99999) = 0
    a = np.array([-3, -1, 1, 3])
    assert Q.saturating_rounding_doubling_high_mul(a, 2 ** 30).tolist() == [-1, 0, 1, 2]
    assert [_srdhm_ref(int(v), 2 ** 30) for v in a] == [-1, 0, 1, 2]
    # RoundingDivideByPOT is half away: -3 / 2 = -1.5 -> -2, 3 / 2 -> 2, -1 / 2 -> -1
    assert Q.rounding_divide_by_pot(np.array([-3, -1, 1, 3]), 1).tolist() == [-2, -1, 1, 2]
