"""refdet.quant.fixed_point at its exact boundaries (issue 19: the mutants the SPEC vectors and the
hypothesis comparisons with the scalar references leave alive).

Every expected value is worked by hand from gemmlowp / TFLite's integer formulas (the derivation is in
each test) or is the exact rational answer; none is read back from refdet.
"""
import numpy as np
import pytest

from refdet import quant as Q


# ---------------------------------------------------------------------------------------------------
# quantize_multiplier
# ---------------------------------------------------------------------------------------------------

def test_quantize_multiplier_scalar_gives_python_ints_array_gives_arrays():
    qm = Q.quantize_multiplier(0.25)
    assert type(qm.multiplier) is int and type(qm.shift) is int
    assert tuple(qm) == (2 ** 30, -1)
    qa = Q.quantize_multiplier(np.array([0.25]))
    assert isinstance(qa.multiplier, np.ndarray) and qa.multiplier.dtype == np.int64
    assert qa.multiplier.tolist() == [2 ** 30] and qa.shift.tolist() == [-1]


def test_quantize_multiplier_computes_in_double_whatever_the_input_dtype():
    # f * 2**31 overflows float16 (max 65504): the multiplier must be formed in double
    assert tuple(Q.quantize_multiplier(np.float16(0.25))) == (2 ** 30, -1)
    assert tuple(Q.quantize_multiplier(np.float16(0.75))) == (3 * 2 ** 29, 0)


def test_quantize_multiplier_names_m():
    with pytest.raises(TypeError, match="`m` must be an array of numbers"):
        Q.quantize_multiplier("0.5")
    with pytest.raises(ValueError, match="`m` must be >= 0; got -0.5"):
        Q.quantize_multiplier(np.array([0.0, -0.5, -0.25]))


def test_quantize_multiplier_single_rounding_clamps_shifts_above_30_only():
    # frexp(2**29) = (0.5, 30): shift 30 is kept; frexp(2**30) = (0.5, 31): clamped to (2**31 - 1, 30)
    assert tuple(Q.quantize_multiplier(2.0 ** 29, single_rounding=True)) == (2 ** 30, 30)
    assert tuple(Q.quantize_multiplier(2.0 ** 30, single_rounding=True)) == (2 ** 31 - 1, 30)
    assert tuple(Q.quantize_multiplier(2.0 ** 30)) == (2 ** 30, 31)
    q, sh = Q.quantize_multiplier(np.array([2.0 ** 29, 2.0 ** 30, 2.0 ** 31]), single_rounding=True)
    assert q.tolist() == [2 ** 30, 2 ** 31 - 1, 2 ** 31 - 1] and sh.tolist() == [30, 30, 30]


# ---------------------------------------------------------------------------------------------------
# SaturatingRoundingDoublingHighMul
# ---------------------------------------------------------------------------------------------------

def test_srdhm_negative_side_just_past_a_half():
    # a * b = -(2**30 + 1): a * b / 2**31 = -0.5 - 2**-31, nearest integer -1.
    # gemmlowp: nudge = 1 - 2**30, s = -2**31, trunc(s / 2**31) = -1 (a nudge of 2 - 2**30 would give 0)
    assert Q.saturating_rounding_doubling_high_mul(-(2 ** 30 + 1), 1).tolist() == -1
    # exactly -0.5 goes to 0 (the negative nudge is one short of a half), +0.5 goes to 1
    assert Q.saturating_rounding_doubling_high_mul(-(2 ** 30), 1).tolist() == 0
    assert Q.saturating_rounding_doubling_high_mul(2 ** 30, 1).tolist() == 1


def test_srdhm_integer_division_not_float_division():
    # a = 2**30 + 1, b = 2**31 - 1: a * b = 2**61 + 2**30 - 1, s = 2**61 + 2**31 - 1, s // 2**31 = 2**30;
    # s / 2**31 in float64 is 2**30 + 1 - 2**-31, which rounds to 2**30 + 1
    out = Q.saturating_rounding_doubling_high_mul(np.array([2 ** 30 + 1]), np.array([2 ** 31 - 1]))
    assert out.dtype == np.int64 and out.tolist() == [2 ** 30]


def test_srdhm_names_its_arguments():
    with pytest.raises(ValueError, match="`a` must fit in int32"):
        Q.saturating_rounding_doubling_high_mul(2 ** 31, 1)
    with pytest.raises(ValueError, match="`b` must fit in int32"):
        Q.saturating_rounding_doubling_high_mul(1, -(2 ** 31) - 1)


# ---------------------------------------------------------------------------------------------------
# RoundingDivideByPOT
# ---------------------------------------------------------------------------------------------------

def test_rounding_divide_by_pot_exponent_bounds_and_names():
    # exponent 31 is allowed: x / 2**31 for |x| < 2**31 rounds to 0 or +-1 (half away)
    assert Q.rounding_divide_by_pot(np.array([2 ** 30, -(2 ** 30), 2 ** 30 - 1]), 31).tolist() == [1, -1, 0]
    with pytest.raises(ValueError, match=r"`exponent` must lie in \[0, 31\]; got 32..32"):
        Q.rounding_divide_by_pot(1, 32)
    with pytest.raises(ValueError, match=r"`exponent` must lie in \[0, 31\]; got -1..-1"):
        Q.rounding_divide_by_pot(1, -1)
    with pytest.raises(ValueError, match=r"`exponent` must lie in \[0, 31\]; got -1..32"):
        Q.rounding_divide_by_pot(np.array([1, 1]), np.array([-1, 32]))
    with pytest.raises(TypeError, match="`exponent` must be an integer array"):
        Q.rounding_divide_by_pot(1, 1.0)
    with pytest.raises(ValueError, match="`x` must fit in int32"):
        Q.rounding_divide_by_pot(2 ** 31, 1)


def test_rounding_divide_by_pot_accepts_any_integer_exponent_dtype():
    # 5 / 2 = 2.5 -> 3, -5 / 2 -> -3 (half away from zero); a uint64 exponent must not promote to float
    for dt in (np.uint64, np.uint8, np.int32):
        out = Q.rounding_divide_by_pot(np.array([5, -5, 6]), np.array(1, dtype=dt))
        assert out.dtype == np.int64 and out.tolist() == [3, -3, 3]


# ---------------------------------------------------------------------------------------------------
# requantize's output dtype
# ---------------------------------------------------------------------------------------------------

def test_requantize_default_dtype_beyond_int32_is_int64():
    y = Q.requantize(np.array([4, -4]), 0.5, 0, mode="float_rne", qmin=-(2 ** 40), qmax=2 ** 40)
    assert y.dtype == np.int64 and y.tolist() == [2, -2]
    assert Q.requantize(np.array([4]), 0.5, 0, qmin=0, qmax=2 ** 16 - 1).dtype == np.uint16
    assert Q.requantize(np.array([4]), 0.5, 0, qmin=-(2 ** 15), qmax=2 ** 15 - 1).dtype == np.int16


def test_requantize_out_dtype_must_be_integer():
    with pytest.raises(TypeError, match=r"`out_dtype` must be an integer dtype; got float64$"):
        Q.requantize(np.array([4]), 0.5, 0, out_dtype=np.float64)
    with pytest.raises(TypeError, match=r"`out_dtype` must be an integer dtype; got bool$"):
        Q.requantize(np.array([4]), 0.5, 0, out_dtype=bool)
    with pytest.raises(TypeError, match=r"`out_dtype` must be an integer dtype; got str 'bogus'"):
        Q.requantize(np.array([4]), 0.5, 0, out_dtype="bogus")
    assert Q.requantize(np.array([4]), 0.5, 0, qmin=0, qmax=255, out_dtype=np.uint8).dtype == np.uint8


# ---------------------------------------------------------------------------------------------------
# requantize: argument checks, each naming its argument
# ---------------------------------------------------------------------------------------------------

def test_requantize_names_each_argument():
    acc = np.arange(6).reshape(2, 3)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        Q.requantize(acc, 0.5, 0, mode="tflite_double")
    with pytest.raises(TypeError, match="`acc` must be an integer array"):
        Q.requantize(acc.astype(np.float64), 0.5, 0)
    with pytest.raises(TypeError, match="`qmin` must be an int"):
        Q.requantize(acc, 0.5, 0, qmin=-128.0)
    with pytest.raises(TypeError, match="`qmax` must be an int"):
        Q.requantize(acc, 0.5, 0, qmax=127.0)
    with pytest.raises(ValueError, match=r"`qmin` must be <= `qmax`; got \[3, 2\]"):
        Q.requantize(acc, 0.5, 0, qmin=3, qmax=2)
    with pytest.raises(ValueError, match=r"`out_zero_point` must lie in \[-128, 127\] \(\[`qmin`, `qmax`\]\)"):
        Q.requantize(acc, 0.5, 200)
    with pytest.raises(ValueError, match=r"`out_zero_point` must have one value per channel along `axis` 1 "
                                         r"\(3\); got length 2"):
        Q.requantize(acc, 0.5, np.array([1, 2]), axis=1)
    with pytest.raises(ValueError, match=r"`acc` must fit in int32"):
        Q.requantize(np.array([2 ** 31]), 0.5, 0, mode="tflite")
    with pytest.raises(ValueError, match=r"`multiplier\[0\]` must fit in int32"):
        Q.requantize(acc, (2 ** 31, 0), 0, mode="tflite")
    with pytest.raises(TypeError, match=r"`multiplier\[1\]` must be an integer array"):
        Q.requantize(acc, (2 ** 30, 0.5), 0, mode="tflite")
    for mode in ("tflite", "float_rne"):
        with pytest.raises(TypeError, match="`multiplier` must be an array of numbers"):
            Q.requantize(acc, "0.5", 0, mode=mode)
        with pytest.raises(ValueError, match="^`multiplier` must be >= 0$"):
            Q.requantize(acc, -0.5, 0, mode=mode)
    with pytest.raises(TypeError, match=r"`multiplier\[0\]` must be an integer array"):
        Q.requantize(acc, (0.5, 0), 0, mode="float_rne")
    with pytest.raises(TypeError, match=r"`multiplier\[1\]` must be an integer array"):
        Q.requantize(acc, (2 ** 30, 0.5), 0, mode="float_rne")
    with pytest.raises(ValueError, match="^`multiplier` must be >= 0$"):
        Q.requantize(acc, (-(2 ** 30), 0), 0, mode="float_rne")


def test_requantize_uint64_accumulator_above_int64_is_refused_not_wrapped():
    # 2**64 - 1 used to be cast to int64 -1 and requantized as -1 (giving 0 at M = 0.5)
    for mode in ("tflite", "float_rne", "onnxruntime"):
        with pytest.raises(ValueError, match="`acc` must fit in int"):
            Q.requantize(np.array([2 ** 64 - 1], dtype=np.uint64), 0.5, 0, mode=mode)
    with pytest.raises(ValueError, match="`a` must fit in int32"):
        Q.saturating_rounding_doubling_high_mul(np.array([2 ** 64 - 1], dtype=np.uint64), 1)
    # in range, a uint64 accumulator is an ordinary one
    assert Q.requantize(np.array([5, 7], dtype=np.uint64), 0.5, 0, mode="float_rne").tolist() == [2, 4]


def test_requantize_axis_is_checked_against_acc_ndim():
    acc = np.array([4, 8])
    assert Q.requantize(acc, np.array([0.5, 0.25]), 0, axis=0).tolist() == [2, 2]
    with pytest.raises(ValueError, match=r"`axis` must lie in \[-1, 1\) for a 1-D input; got 1"):
        Q.requantize(acc, 0.5, 0, axis=1)


def test_requantize_per_channel_multipliers_and_their_lengths():
    acc = np.arange(6).reshape(2, 3) * 4
    # a length-1 multiplier without axis is a scalar: it broadcasts over the last axis of length 3
    assert Q.requantize(acc, np.array([0.25]), 0).tolist() == Q.requantize(acc, 0.25, 0).tolist()
    with pytest.raises(ValueError, match=r"`multiplier` has 2 values \(per-channel\) but `axis` is None"):
        Q.requantize(acc, np.array([0.25, 0.5]), 0)
    # a length-3 multiplier without axis runs along the last axis (it broadcasts)
    y = Q.requantize(acc, np.array([0.25, 0.5, 1.0]), 0)
    assert y.tolist() == [[0, 2, 8], [3, 8, 20]]
    with pytest.raises(ValueError, match=r"`multiplier` must have one value per channel along `axis` 1 "
                                         r"\(3\); got length 2$"):
        Q.requantize(acc, np.array([0.25, 0.5]), 0, axis=1)
    # the shift of a (q, shift) pair is checked too, under the name `multiplier`
    with pytest.raises(ValueError, match=r"`multiplier` must have one value per channel along `axis` 1 "
                                         r"\(3\); got length 2$"):
        Q.requantize(acc, (2 ** 30, np.array([-1, -2])), 0, mode="tflite", axis=1)


@pytest.mark.parametrize("mode", ["tflite", "tflite_single", "tflite_fc", "onnxruntime", "onnx_reference",
                                  "float_rne"])
def test_requantize_pair_means_q_times_two_to_the_shift_minus_31(mode):
    # (2**30, -1) is exactly 0.25, (3 * 2**29, 1) exactly 1.5: every mode agrees away from ties
    acc = np.array([-8, -4, 0, 4, 8, 40])
    assert Q.requantize(acc, (2 ** 30, -1), 1, mode=mode).tolist() == [-1, 0, 1, 2, 3, 11]
    assert Q.requantize(acc, (np.int32(3 * 2 ** 29), np.int8(1)), 0, mode=mode).tolist() == [
        -12, -6, 0, 6, 12, 60]
    assert Q.requantize(acc, (3 * 2 ** 29, 1), 0, mode=mode).tolist() == [-12, -6, 0, 6, 12, 60]


def test_requantize_zero_multiplier_gives_the_zero_point():
    for mode in ("tflite", "tflite_single", "float_rne"):
        assert Q.requantize(np.array([-1000, 0, 1000]), 0.0, 7, mode=mode).tolist() == [7, 7, 7]


def test_requantize_single_rounding_clamps_a_huge_multiplier():
    # M = 2**31: frexp gives shift 32 > 30, which TFLITE_SINGLE_ROUNDING clamps to (2**31 - 1, 30):
    # acc 1 -> ((2**31 - 1) + 2**0) >> 1 = 2**30; the double-rounding (q, shift) = (2**30, 32) is refused
    y = Q.requantize(np.array([0, 1]), 2.0 ** 31, 0, mode="tflite_single", qmin=-(2 ** 31), qmax=2 ** 31 - 1)
    assert y.tolist() == [0, 2 ** 30]


def test_requantize_float_modes_round_the_multiplier_to_double():
    # M = 1/2 + 2**-60 held in long double: "float_rne" is rint(float64(acc) * float64(M)), and
    # float64(M) = 1/2, so acc 1 gives rint(0.5) = 0 (1 in long double arithmetic)
    m = np.longdouble(0.5) + np.longdouble(2.0) ** -60
    if float(m) == m:
        pytest.skip("long double is double on this platform")
    assert Q.requantize(np.array([1, 3]), m, 0, mode="float_rne").tolist() == [0, 2]
    assert Q.requantize(np.array([1, 3]), m, 0, mode="tflite_fc").tolist() == [1, 2]


def test_requantize_pair_shift_is_widened_before_subtracting_31():
    # an int8 shift of -98: shift - 31 = -129 must not wrap in int8 (to +127): M = 2**30 * 2**-129 = 2**-99
    acc = np.array([-(2 ** 40), 2 ** 40])
    assert Q.requantize(acc, (2 ** 30, np.int8(-98)), 3, mode="float_rne").tolist() == [3, 3]
    assert Q.requantize(acc, (np.uint8(128), np.int8(-98)), 3, mode="float_rne").tolist() == [3, 3]


@pytest.mark.parametrize("mode", ["tflite", "tflite_single", "tflite_fc", "onnxruntime", "onnx_reference",
                                  "float_rne"])
def test_requantize_saturates_exactly_with_extreme_zero_points(mode):
    # int8: zero point 127, acc * M = -255 lands on -128 exactly, -256 and below saturate there;
    # zero point -128, acc * M = 255 lands on 127, beyond saturates
    acc = np.array([-2 ** 20, -256, -255, -254, 0])
    assert Q.requantize(acc, 1.0, 127, mode=mode).tolist() == [-128, -128, -128, -127, 127]
    assert Q.requantize(-acc, 1.0, -128, mode=mode).tolist() == [127, 127, 127, 126, -128]
    # uint8 (qmin 0): zero point 255, acc * M = -255 lands on 0
    assert Q.requantize(acc, 1.0, 255, mode=mode, qmin=0, qmax=255).tolist() == [0, 0, 0, 1, 255]
    assert Q.requantize(-acc, 1.0, 0, mode=mode, qmin=0, qmax=255).tolist() == [255, 255, 255, 254, 0]


# ---------------------------------------------------------------------------------------------------
# MultiplyByQuantizedMultiplier: its argument checks and shift ranges
# ---------------------------------------------------------------------------------------------------

def test_multiply_by_quantized_multiplier_names_each_argument():
    f = Q.multiply_by_quantized_multiplier
    with pytest.raises(ValueError, match="`x` must fit in int32"):
        f(2 ** 31, 2 ** 30, 0)
    with pytest.raises(ValueError, match="`multiplier` must fit in int32"):
        f(1, 2 ** 31, 0)
    with pytest.raises(TypeError, match="`shift` must be an integer array"):
        f(1, 2 ** 30, 0.5)
    with pytest.raises(TypeError, match="`single_rounding` must be a bool"):
        f(1, 2 ** 30, 0, single_rounding=1)
    with pytest.raises(ValueError, match=r"^`multiplier` must be >= 0; got minimum -1$"):
        f(1, np.array([2 ** 30, -1]), 0)


@pytest.mark.parametrize("single", [False, True])
def test_multiply_by_quantized_multiplier_shift_range_edges(single):
    f = Q.multiply_by_quantized_multiplier
    top = 30 if single else 31
    rng = r"\[-31, 30\] for single rounding" if single else r"\[-31, 31\]"
    # x * 2**30 * 2**(shift - 31): shift -31 gives x / 2**32 (0 for small x), shift 30 gives x * 2**29
    assert f(np.array([3]), 2 ** 30, -31, single_rounding=single).tolist() == [0]
    # (2**31 - 1) / 2**32 just under a half: single rounding gives 0, double rounding 1 (SRDHM rounds
    # (2**31 - 1) / 2 up to 2**30 first, then 2**30 / 2**31 = 1/2 goes away from zero)
    assert f(np.array([2 ** 31 - 1]), 2 ** 30, -31, single_rounding=single).tolist() == [0 if single else 1]
    assert f(np.array([-(2 ** 31)]), 2 ** 30, -31, single_rounding=single).tolist() == [0 if single else -1]
    # the top shift: -1 * 2**(top - 1) (x = 1 would wrap at shift 31: 1 << 31 is INT32_MIN in int32)
    assert f(np.array([-1]), 2 ** 30, top, single_rounding=single).tolist() == [-(2 ** (top - 1))]
    with pytest.raises(ValueError, match=rf"^`shift` must lie in {rng}; got -32..-32$"):
        f(1, 2 ** 30, -32, single_rounding=single)
    with pytest.raises(ValueError, match=rf"^`shift` must lie in {rng}; got {top + 1}..{top + 1}$"):
        f(1, 2 ** 30, top + 1, single_rounding=single)
    with pytest.raises(ValueError, match=rf"`shift` must lie in {rng}; got -32..{top + 1}$"):
        f(np.array([1, 1]), 2 ** 30, np.array([-32, top + 1]), single_rounding=single)


@pytest.mark.parametrize("single", [False, True])
def test_multiply_by_quantized_multiplier_any_integer_shift_dtype(single):
    # q = 2**30 is 1/2: shift 1 is x * 1; shift -1 is x / 4: single rounding (half up) 5/4 -> 1,
    # -6/4 -> -1, 7/4 -> 2; double rounding SRDHM(x, 2**30) = x/2 (ties up: 3, -3, 4) then /2 half away
    # from zero: 2, -2, 2
    x = np.array([5, -6, 7])
    for dt in (np.uint64, np.uint8, np.int8, np.int64):
        assert f_mbqm(x, 2 ** 30, np.array(1, dtype=dt), single).tolist() == [5, -6, 7]
    for dt in (np.int8, np.int16):
        want = [1, -1, 2] if single else [2, -2, 2]
        assert f_mbqm(x, 2 ** 30, np.array(-1, dtype=dt), single).tolist() == want


def f_mbqm(x, q, shift, single):
    out = Q.multiply_by_quantized_multiplier(x, q, shift, single_rounding=single)
    assert out.dtype == np.int64
    return out


def test_integer_arguments_named_when_not_integers():
    with pytest.raises(TypeError, match="`a` must be an integer array"):
        Q.saturating_rounding_doubling_high_mul(0.5, 1)
    with pytest.raises(TypeError, match="`x` must be an integer array"):
        Q.rounding_divide_by_pot(0.5, 1)
    with pytest.raises(TypeError, match=r"`multiplier\[0\]` must be an integer array"):
        Q.requantize(np.array([1]), (0.5, 1), 0, mode="tflite")


def test_requantize_uint64_accumulator_at_int64_max_is_accepted():
    acc = np.array([2 ** 63 - 1, 0], dtype=np.uint64)
    assert Q.requantize(acc, 0.0, 5, mode="float_rne").tolist() == [5, 5]
    assert Q.requantize(acc, 1.0, 5, mode="tflite_fc").tolist() == [127, 5]


@pytest.mark.parametrize("mode", ["tflite_fc", "onnxruntime", "onnx_reference", "float_rne"])
def test_requantize_float_mode_per_channel_length_names_multiplier(mode):
    acc = np.arange(6).reshape(2, 3)
    with pytest.raises(ValueError, match=r"`multiplier` must have one value per channel along `axis` 1 "
                                         r"\(3\); got length 2$"):
        Q.requantize(acc, np.array([0.25, 0.5]), 0, axis=1, mode=mode)
    y = Q.requantize(acc * 4, np.array([0.25, 0.5, 1.0]), 0, axis=1, mode=mode)
    assert y.tolist() == [[0, 2, 8], [3, 8, 20]]


def test_double_rounding_left_shift_wraps_like_int32():
    # x << left is an int32 multiply in TFLite: 1 << 31 wraps to INT32_MIN, 3 << 30 to -2**30
    f = Q.multiply_by_quantized_multiplier
    assert f(np.array([1, -1, 3, 2 ** 31 - 1]), 2 ** 30, 31).tolist() == [-(2 ** 30)] * 4
    assert f(np.array([1, 3]), 2 ** 30, 30).tolist() == [2 ** 29, -(2 ** 29)]


def test_shift_range_is_checked_on_every_element_not_only_the_extremes_of_one_side():
    # a per-channel shift array with one value out of range on the low side and the others in range:
    # the check must read its minimum (a check of the maximum alone lets -32 through). Found by the
    # random-sample cross-check (python -m mutation sample, seed 683258643: min -> max survived).
    from refdet.quant.fixed_point import multiply_by_quantized_multiplier

    x = np.array([5, 5], dtype=np.int32)
    with pytest.raises(ValueError, match=r"`shift` must lie in \[-31, 31\]; got -32\.\.0"):
        multiply_by_quantized_multiplier(x, 1 << 30, np.array([-32, 0]))
    with pytest.raises(ValueError, match=r"`shift` must lie in \[-31, 30\] for single rounding; got -32\.\.0"):
        multiply_by_quantized_multiplier(x, 1 << 30, np.array([-32, 0]), single_rounding=True)
    with pytest.raises(ValueError, match=r"`shift` must lie in \[-31, 31\]; got 0\.\.32"):
        multiply_by_quantized_multiplier(x, 1 << 30, np.array([0, 32]))
