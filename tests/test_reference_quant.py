"""refdet.reference.quant (exact rational arithmetic) against the fast paths of refdet.quant.

* the reference's IEEE rounding (round_to_float) equals NumPy's float32/float64 arithmetic;
* its rational restatements of gemmlowp's SRDHM and RoundingDivideByPOT equal the source's literal
  nudge/mask formulas;
* fast == reference, bit for bit, for quantize (every rounding mode, division or reciprocal, zero
  point before or after, float32 and float64), QuantizeMultiplier, the fixed-point primitives and
  requantize in every mode, on hypothesis inputs that include exact ties (acc * M exactly at .5 LSB,
  x exactly at (k + 1/2) * s), int32 extremes, negative values and saturation.

Every comparison is exact (integers).
"""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refdet import quant as Q
from refdet.reference import quant as R
from refdet.testing import strategies as rst
from tests.conftest import readonly

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
INT32_EDGES = [INT32_MIN, INT32_MIN + 1, -(2 ** 24) - 1, -(2 ** 24), -1, 0, 1, 2 ** 24, 2 ** 24 + 1,
               2 ** 30, INT32_MAX - 1, INT32_MAX]
MODES = list(R.REQUANTIZE)

int32s = st.one_of(st.integers(INT32_MIN, INT32_MAX), st.sampled_from(INT32_EDGES), st.integers(-1000, 1000))


# ---------------------------------------------------------------------------------------------------
# the reference's own building blocks
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_round_to_float_is_numpy_arithmetic(dtype, data):
    width = 32 if dtype == np.float32 else 64
    f = st.floats(allow_nan=False, allow_infinity=False, width=width)
    a, b = dtype(data.draw(f)), dtype(data.draw(f))
    name = np.dtype(dtype).name
    with np.errstate(all="ignore"):
        ops = [(a * b, Fraction(float(a)) * Fraction(float(b))), (a + b, Fraction(float(a)) + Fraction(float(b)))]
        if b != 0:
            ops.append((a / b, Fraction(float(a)) / Fraction(float(b))))
    for fast, exact in ops:
        got = R.round_to_float(exact, name)
        assert float(got) == float(fast), (a, b, fast, got)


def test_round_to_float_ties_subnormals_and_overflow():
    # 1 + 2**-24 is halfway between float32 1 and 1 + 2**-23: ties to the even significand (1)
    assert R.round_to_float(1 + Fraction(1, 2 ** 24), "float32") == 1
    assert R.round_to_float(1 + Fraction(3, 2 ** 24), "float32") == 1 + Fraction(1, 2 ** 22)
    # the smallest float32 subnormal is 2**-149; half of it rounds to 0 (even), 3/4 of it up
    assert R.round_to_float(Fraction(1, 2 ** 150), "float32") == 0
    assert R.round_to_float(Fraction(3, 2 ** 151), "float32") == Fraction(1, 2 ** 149)
    big = Fraction(float(np.finfo(np.float32).max))
    assert R.round_to_float(big + big * Fraction(1, 2 ** 25), "float32") == big        # below the half: stays
    assert R.round_to_float(big + big * Fraction(1, 2 ** 24), "float32") == float("inf")  # the half: to inf


@pytest.mark.parametrize("name", ["half_even", "half_away", "half_up"])
@given(k=st.integers(-10 ** 6, 10 ** 6), num=st.sampled_from([0, 1, 2, 3]))
def test_reference_rounding_equals_fast_helpers(name, k, num):
    v = k + num / 4                                   # quarters: exact ties at num == 2
    fast = {"half_even": Q.round_half_even, "half_away": Q.round_half_away, "half_up": Q.round_half_up}[name]
    assert R.ROUNDINGS[name](Fraction(v)) == int(fast(np.float64(v)))


def _srdhm_source(a, b):
    """gemmlowp fixedpoint.h, literally: a nudge, then C++ division (truncation toward zero)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = 2 ** 30 if ab >= 0 else 1 - 2 ** 30
    s = ab + nudge
    return s // 2 ** 31 if s >= 0 else -((-s) // 2 ** 31)


def _rdbpot_source(x, e):
    """gemmlowp RoundingDivideByPOT, literally: mask, remainder, threshold, arithmetic shift."""
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


@given(a=int32s, b=st.one_of(int32s, st.sampled_from([2 ** 30, 3 * 2 ** 29, 2 ** 31 - 1])))
def test_reference_srdhm_is_the_source_formula(a, b):
    # the rational restatement floor(a * b / 2**31 + 1/2) is what the nudge-and-truncate code computes
    assert R.saturating_rounding_doubling_high_mul(a, b) == _srdhm_source(a, b)


@given(x=int32s, e=st.integers(0, 31))
def test_reference_rdbpot_is_the_source_formula(x, e):
    assert R.rounding_divide_by_pot(x, e) == _rdbpot_source(x, e)


# ---------------------------------------------------------------------------------------------------
# fast == reference: fixed point
# ---------------------------------------------------------------------------------------------------

@given(data=st.data())
def test_fixed_point_primitives_fast_equals_reference(data):
    n = data.draw(st.integers(0, 20))
    x = np.array(data.draw(st.lists(int32s, min_size=n, max_size=n)), dtype=np.int64)
    q = data.draw(st.one_of(st.integers(0, INT32_MAX), st.sampled_from([0, 2 ** 30, INT32_MAX])))
    shift = data.draw(st.integers(-31, 31))
    e = data.draw(st.integers(0, 31))
    b = data.draw(int32s)
    assert Q.saturating_rounding_doubling_high_mul(readonly(x), b).tolist() == \
        [R.saturating_rounding_doubling_high_mul(int(v), b) for v in x]
    assert Q.rounding_divide_by_pot(readonly(x), e).tolist() == [R.rounding_divide_by_pot(int(v), e) for v in x]
    assert Q.multiply_by_quantized_multiplier(readonly(x), q, shift).tolist() == \
        [R.multiply_by_quantized_multiplier(int(v), q, shift) for v in x]
    if shift <= 30:
        assert Q.multiply_by_quantized_multiplier(x, q, shift, single_rounding=True).tolist() == \
            [R.multiply_by_quantized_multiplier(int(v), q, shift, single_rounding=True) for v in x]


@given(data=st.data())
def test_fixed_point_exact_ties(data):
    # SRDHM at a tie: a * 2**30 / 2**31 = a / 2 with a odd -> toward +inf, (a + 1) / 2, in both
    a = 2 * data.draw(st.integers(-(2 ** 30), 2 ** 30 - 1)) + 1
    assert int(Q.saturating_rounding_doubling_high_mul(a, 2 ** 30)) == \
        R.saturating_rounding_doubling_high_mul(a, 2 ** 30) == (a + 1) // 2
    # RoundingDivideByPOT at a tie: x = (2j + 1) * 2**(e - 1) -> j + 1 for x > 0, j for x < 0 (half away)
    e = data.draw(st.integers(1, 31))
    j = data.draw(st.integers(-(2 ** (31 - e)), 2 ** (31 - e) - 1))
    x = (2 * j + 1) * 2 ** (e - 1)
    assert int(Q.rounding_divide_by_pot(x, e)) == R.rounding_divide_by_pot(x, e) == (j + 1 if x > 0 else j)


@pytest.mark.parametrize("single", [False, True])
@given(m=st.one_of(st.floats(0, 2.0 ** 40, allow_nan=False), st.sampled_from(
    [0.0, 2.0 ** -32, 2.0 ** -33, 1 - 2.0 ** -40, 0.5, 2.0 ** 31, 2.0 ** 31 - 2.0 ** -22, 5e-324])))
def test_quantize_multiplier_fast_equals_reference(single, m):
    q, s = Q.quantize_multiplier(m, single_rounding=single)
    assert (q, s) == R.quantize_multiplier(m, single_rounding=single)
    qa, sa = Q.quantize_multiplier(np.array([m, m]), single_rounding=single)
    assert [(int(a), int(b)) for a, b in zip(qa, sa)] == [(q, s)] * 2


# ---------------------------------------------------------------------------------------------------
# fast == reference: requantize, every mode
# ---------------------------------------------------------------------------------------------------

_RANGES = [(-128, 127), (0, 255), (-32768, 32767), (INT32_MIN, INT32_MAX)]


@st.composite
def requant_cases(draw):
    """(acc, M, zero_point, qmin, qmax): random, extreme, or acc * M exactly at a half (ties)."""
    qmin, qmax = draw(st.sampled_from(_RANGES))
    zp = draw(st.integers(max(qmin, -300), min(qmax, 300)))
    n = draw(st.integers(0, 16))
    kind = draw(st.sampled_from(["random", "tie", "tie", "made_tie", "made_tie", "small"]))
    if kind == "made_tie":
        # acc * M within a float32 (or float64) half-ulp of T = k + 1/2 but not T: the runtime's float
        # product rounds onto the tie, the exact one does not. M is fl(T / acc) or a neighbour.
        k = draw(st.integers(-130, 129))
        t, sign = abs(k + 0.5), (1 if k >= 0 else -1)
        f32 = draw(st.booleans())
        big = st.integers(3, 2 ** 24 - 1) if f32 else st.one_of(st.integers(3, 2 ** 24 - 1), st.integers(3, INT32_MAX))
        a0 = draw(big) | 1
        ft = np.float32 if f32 else np.float64
        m0 = ft(t / a0)
        made = [float(v) for v in (m0, np.nextafter(m0, ft(np.inf)), np.nextafter(m0, ft(0)))
                if ft(a0) * v == t and Fraction(a0) * Fraction(float(v)) != Fraction(t)]
        m = draw(st.sampled_from(made)) if made else float(m0)
        acc = [sign * (a0 if draw(st.booleans()) else min(a0 + draw(st.integers(-2, 2)), INT32_MAX))
               for _ in range(n)]
        return np.array(acc, dtype=np.int64), m, zp, qmin, qmax
    if kind == "tie":
        # M = m_odd / 2**t (exact in float32), acc = a_odd * 2**(t - 1): acc * M = a_odd * m_odd / 2
        t = draw(st.integers(1, 24))
        m_odd = 2 * draw(st.one_of(st.integers(0, 7), st.integers(0, 2 ** 15))) + 1
        m = m_odd / 2.0 ** t
        lim = (2 ** 31 - 1) // 2 ** (t - 1) // 2
        a_half = st.one_of(st.integers(-100, 99), st.integers(-lim, lim - 1))   # small: ties inside int8
        acc = [(2 * draw(a_half) + 1) * 2 ** (t - 1) for _ in range(n)]
    else:
        m = draw(st.one_of(st.floats(2.0 ** -24, 2.0 ** 10, allow_nan=False),
                           st.floats(0, 1, allow_nan=False, allow_subnormal=True),
                           st.integers(-30, 8).map(lambda e: 2.0 ** e)))
        elems = int32s if kind == "random" else st.integers(-5000, 5000)
        acc = draw(st.lists(elems, min_size=n, max_size=n))
    return np.array(acc, dtype=np.int64), float(m), zp, qmin, qmax


@pytest.mark.parametrize("mode", MODES)
@given(case=requant_cases())
def test_requantize_fast_equals_reference(mode, case):
    acc, m, zp, qmin, qmax = case
    got = Q.requantize(readonly(acc), m, zp, mode=mode, qmin=qmin, qmax=qmax)
    want = [R.REQUANTIZE[mode](int(a), m, zp, qmin, qmax) for a in acc]
    assert got.tolist() == want


@pytest.mark.parametrize("single", [False, True])
@given(case=requant_cases())
def test_requantize_q31_pair_fast_equals_reference(single, case):
    acc, m, zp, qmin, qmax = case
    q, shift = R.quantize_multiplier(m, single_rounding=single)
    got = Q.requantize(acc, (q, shift), zp, mode="tflite_single" if single else "tflite", qmin=qmin, qmax=qmax)
    want = [min(max(R.multiply_by_quantized_multiplier(int(a), q, shift, single_rounding=single) + zp, qmin), qmax)
            for a in acc]
    assert got.tolist() == want


# TV-R1: M = 0.25, acc * M = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25, 0.75, -0.25, -0.75] (exact ties first)
TV_R1_ACC = [2, 6, 10, -2, -6, -10, 1, 3, -1, -3]


@pytest.mark.parametrize("mode,expected", [
    ("tflite", [1, 2, 3, -1, -2, -3, 1, 1, 0, -1]),          # SRDHM exact, RDBPOT half away; acc=1: 0.25 -> 1
    ("tflite_single", [1, 2, 3, 0, -1, -2, 0, 1, 0, -1]),    # half up
    ("tflite_fc", [1, 2, 3, -1, -2, -3, 0, 1, 0, -1]),       # std::round: half away
    ("onnxruntime", [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]),      # RNE
    ("onnx_reference", [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]),
    ("float_rne", [0, 2, 2, 0, -2, -2, 0, 1, 0, -1]),
])
def test_reference_tv_r1_ties_by_hand(mode, expected):
    assert [R.REQUANTIZE[mode](a, 0.25, 0, -128, 127) for a in TV_R1_ACC] == expected
    assert Q.requantize(np.array(TV_R1_ACC), 0.25, 0, mode=mode).tolist() == expected


def test_reference_onnxruntime_float32_product_rounding_matters():
    # acc = 2**24 + 1 is not a float32: onnxruntime sees 2**24, so with M = 1 it answers 2**24 (the exact
    # answer is 2**24 + 1)
    acc, wide = 2 ** 24 + 1, (INT32_MIN, INT32_MAX)
    assert R.requantize_onnxruntime(acc, 1.0, 0, *wide) == 2 ** 24
    assert R.requantize_exact(acc, 1.0, 0, *wide) == 2 ** 24 + 1
    assert int(Q.requantize(np.array([acc]), 1.0, 0, mode="onnxruntime", qmin=wide[0], qmax=wide[1])[0]) == 2 ** 24


@given(acc=st.integers(-(2 ** 20), 2 ** 20), m=st.floats(2.0 ** -20, 16.0, width=32), zp=st.integers(-9, 9))
def test_float_rne_is_exact_where_the_float64_product_is(acc, m, zp):
    # |acc| < 2**21 and a float32 M (24 bits): acc * M has at most 45 significant bits, exact in float64
    assert R.requantize_float_rne(acc, m, zp, INT32_MIN, INT32_MAX) == R.requantize_exact(acc, m, zp, INT32_MIN,
                                                                                           INT32_MAX)


# ---------------------------------------------------------------------------------------------------
# fast == reference: quantize
# ---------------------------------------------------------------------------------------------------

@st.composite
def quantize_cases(draw):
    wd = draw(st.sampled_from([np.float32, np.float64]))
    dtype = draw(st.sampled_from(["int8", "uint8", "int16", "int32"]))
    lo, hi = Q.QUANT_DTYPES[dtype]
    scale = draw(rst.quant_scales())
    x = draw(rst.quant_tie_values(scale, n_max=24, dtype=wd))
    extra = draw(st.lists(st.sampled_from([np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3e38, 1e-40]), max_size=3))
    x = np.concatenate([x, np.array(extra, dtype=wd)])
    zp = draw(st.one_of(st.integers(max(lo, -300), min(hi, 300)), st.sampled_from([lo, hi])))
    return x, np.float32(scale), zp, dtype


@pytest.mark.parametrize("rounding", ["half_even", "half_away", "half_up"])
@pytest.mark.parametrize("op", ["div", "mul_inv"])
@pytest.mark.parametrize("add_zero_point", ["after", "before"])
@given(case=quantize_cases())
def test_quantize_fast_equals_reference(rounding, op, add_zero_point, case):
    x, scale, zp, dtype = case
    lo, hi = Q.QUANT_DTYPES[dtype]
    got = Q.quantize(readonly(x), scale, zp, dtype=dtype, rounding=rounding, op=op, add_zero_point=add_zero_point)
    want = [R.quantize(v, float(scale), zp, qmin=lo, qmax=hi, rounding=rounding, op=op,
                       add_zero_point=add_zero_point, dtype=x.dtype.name) for v in x]
    assert got.tolist() == want


def test_reference_quantize_ties_by_hand():
    # x = 0.25 * (k + 1/2) with scale 0.25: exact ties 0.5, 1.5, 2.5 and -0.5, -1.5
    xs = [0.125, 0.375, 0.625, -0.125, -0.375]
    kw = dict(qmin=-128, qmax=127, op="div", dtype="float32")
    assert [R.quantize(x, 0.25, 0, rounding="half_even", **kw) for x in xs] == [0, 2, 2, 0, -2]
    assert [R.quantize(x, 0.25, 0, rounding="half_away", **kw) for x in xs] == [1, 2, 3, -1, -2]
    assert [R.quantize(x, 0.25, 0, rounding="half_up", **kw) for x in xs] == [1, 2, 3, 0, -1]
    # zero point 1 before rounding under RNE: 2.5 + 1 = 3.5 -> 4, but rint(2.5) + 1 = 3
    assert R.quantize(0.625, 0.25, 1, add_zero_point="before", **{**kw, "rounding": "half_even"}) == 4
    assert R.quantize(0.625, 0.25, 1, add_zero_point="after", **{**kw, "rounding": "half_even"}) == 3
    assert R.quantize(float("inf"), 0.25, 0, rounding="half_even", **kw) == 127


# ---------------------------------------------------------------------------------------------------
# fast == reference: integer convolution
# ---------------------------------------------------------------------------------------------------

@given(data=st.data())
def test_conv2d_int_fast_equals_reference(data):
    groups = data.draw(st.sampled_from([1, 2]))
    cg, fg = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    dil = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    pads = tuple(data.draw(st.integers(0, 2)) for _ in range(4))       # (top, bottom, left, right)
    h, w_ = data.draw(st.integers(dil[0] * (kh - 1) + 1, 6)), data.draw(st.integers(dil[1] * (kw - 1) + 1, 6))
    x = data.draw(hnp.arrays(np.uint8, (data.draw(st.integers(0, 2)), cg * groups, h, w_)))
    w = data.draw(hnp.arrays(np.int8, (fg * groups, cg, kh, kw)))
    xzp = data.draw(st.integers(0, 255))
    wzp = data.draw(hnp.arrays(np.int64, fg * groups, elements=st.integers(-128, 127)))
    want = R.conv2d_int(x, w, xzp, wzp.tolist(), stride, pads, dil, groups)
    for method in ("auto", "float32", "float64", "int64"):
        got = Q.conv2d_int(readonly(x), readonly(w), x_zero_point=xzp, w_zero_point=readonly(wzp), stride=stride,
                           padding=pads, dilation=dil, groups=groups, method=method)
        assert got.dtype == np.int64 and np.array_equal(got, want), method
