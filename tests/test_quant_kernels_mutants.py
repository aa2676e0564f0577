"""refdet.quant.kernels at its exact boundaries (issue 19: the mutants the ONNX / LiteRT differential
tests in tests/test_quant.py leave alive): every argument named in its error, the zero points and
biases of QLinearConv / TFLite CONV_2D worked by hand, the int32 accumulator's limits, and the
precision of TFLite's per-channel multiplier.

Expected values are worked by hand (small integers) or by the gemmlowp formulas in Python ints; none
is read back from refdet.
"""
import math

import numpy as np
import pytest

from refdet import quant as Q


def _q8(shape, value, dtype):
    return np.full(shape, value, dtype)


# ---------------------------------------------------------------------------------------------------
# qlinear_conv
# ---------------------------------------------------------------------------------------------------

def _ql_args(**over):
    args = dict(x=_q8((1, 2, 3, 3), 10, np.uint8), x_scale=0.5, x_zero_point=2, w=_q8((3, 2, 1, 1), 5, np.uint8),
                w_scale=np.full(3, 0.25, np.float32), w_zero_point=np.array([3, 3, 3], np.uint8), y_scale=0.125,
                y_zero_point=5)
    args.update(over)
    return args


def _ql(**over):
    a = _ql_args(**over)
    B = a.pop("B", None)
    extra = {k: a.pop(k) for k in ("pads", "padding") if k in a}
    return Q.qlinear_conv(a["x"], a["x_scale"], a["x_zero_point"], a["w"], a["w_scale"], a["w_zero_point"],
                          a["y_scale"], a["y_zero_point"], B, **extra)


def test_qlinear_conv_weight_zero_point_and_bias_by_hand():
    # (x - x_zp) = 8, (w - w_zp) = 2, two input channels: acc = 2 * 16 = 32; B = [4, -8, 0] -> 36, 24, 32;
    # M = 0.5 * 0.25 / 0.125 = 1: y = acc + y_zp(5) = 41, 29, 37 at every pixel
    y = _ql(B=np.array([4, -8, 0], np.int32))
    assert y.dtype == np.uint8 and y.shape == (1, 3, 3, 3)
    assert y[0, :, 0, 0].tolist() == [41, 29, 37] and np.all(y == y[:, :, :1, :1])
    # per-channel weight zero points: w_zp = [3, 5, 7] -> (w - w_zp) = [2, 0, -2]: acc = 32, 0, -32
    y = _ql(w_zero_point=np.array([3, 5, 7], np.uint8), y_zero_point=np.uint8(100))
    assert y[0, :, 0, 0].tolist() == [132, 100, 68]


def test_qlinear_conv_output_type_is_the_y_zero_point_type():
    # uint8 x, int8 y_zero_point: an int8 output (ONNX T3), saturating at -128: acc 32 - 180 = -148
    y = _ql(y_zero_point=np.int8(-20), B=np.full(3, -180, np.int32))
    assert y.dtype == np.int8 and y[0, :, 0, 0].tolist() == [-128, -128, -128]
    # a plain int y_zero_point: x's type, so -20 is out of uint8's range
    with pytest.raises(ValueError, match=r"`y_zero_point` must lie in \[0, 255\]"):
        _ql(y_zero_point=-20)
    with pytest.raises(ValueError, match=r"`y_zero_point` must lie in \[-128, 127\]"):
        _ql(x=_q8((1, 2, 3, 3), 10, np.int8), x_zero_point=2, y_zero_point=200)


def test_qlinear_conv_zero_points_take_the_operand_types_range():
    with pytest.raises(ValueError, match=r"`x_zero_point` must lie in \[0, 255\]"):
        _ql(x_zero_point=-1)
    # an int8 x: its zero point lies in [-128, 127] even when given as a uint8 value (ONNX: same type as x)
    with pytest.raises(ValueError, match=r"`x_zero_point` must lie in \[-128, 127\]"):
        _ql(x=_q8((1, 2, 3, 3), 10, np.int8), x_zero_point=np.uint8(200))
    with pytest.raises(ValueError, match=r"`w_zero_point` must lie in \[-128, 127\]"):
        _ql(w=_q8((3, 2, 1, 1), 5, np.int8), w_zero_point=np.array([0, 200, 0]))
    with pytest.raises(TypeError, match="`x_zero_point` must be an integer"):
        _ql(x_zero_point=1.5)
    with pytest.raises(ValueError, match=r"`w_zero_point` must have one value per channel along `axis` 0 \(3\); "
                                         r"got length 2"):
        _ql(w_zero_point=np.array([3, 3], np.uint8))


def test_qlinear_conv_names_its_operands_and_scales():
    with pytest.raises(TypeError, match=r"`x` must be int8 or uint8 \(ONNX QLinearConv types\); got dtype int16"):
        _ql(x=_q8((1, 2, 3, 3), 10, np.int16))
    with pytest.raises(TypeError, match=r"`w` must be int8 or uint8 \(ONNX QLinearConv types\); got dtype int32"):
        _ql(w=_q8((3, 2, 1, 1), 5, np.int32))
    with pytest.raises(TypeError, match="`x` must be an integer array"):
        _ql(x=np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="`x` must be 4-D"):
        _ql(x=_q8((2, 3, 3), 10, np.uint8))
    with pytest.raises(ValueError, match="`w` must be 4-D"):
        _ql(w=_q8((3, 2, 1), 5, np.uint8))
    with pytest.raises(ValueError, match="`x_scale` must be > 0"):
        _ql(x_scale=0.0)
    with pytest.raises(ValueError, match="`y_scale` must be > 0"):
        _ql(y_scale=-1.0)
    with pytest.raises(ValueError, match=r"`w_scale` must have one value per channel along `axis` 0 \(3\); "
                                         r"got length 2"):
        _ql(w_scale=np.full(2, 0.25, np.float32))


def test_qlinear_conv_pads_are_checked():
    with pytest.raises(ValueError, match=r"`pads` must be the 4 ONNX pads \(top, left, bottom, right\); got 'abcd'"):
        _ql(pads="abcd")
    with pytest.raises(ValueError, match="`pads` must be >= 0; got -1"):
        _ql(pads=[0, -1, 0, 0])
    with pytest.raises(TypeError, match="`pads` must be an integer"):
        _ql(pads=[0, 1.5, 0, 0])


def test_qlinear_conv_bias_is_checked():
    with pytest.raises(ValueError, match=r"`B` must have one value per output channel \(3\); got length 2"):
        _ql(B=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="`B` must be 1-D"):
        _ql(B=np.zeros((3, 1), np.int32))
    with pytest.raises(TypeError, match="`B` must be an integer array"):
        _ql(B=np.zeros(3))
    with pytest.raises(ValueError, match=r"`B` must fit in int32 \(the kernels' accumulator type\)"):
        _ql(B=np.array([0, 2 ** 31, 0], np.int64))


def test_qlinear_conv_int32_accumulator_limits():
    # 1x1 conv over C = 33100 channels: (255 - 0) * (0 - 255) each, acc = -65025 * 33100 = -2152327500 < -2**31
    x = np.full((1, 33100, 1, 1), 255, np.uint8)
    w = np.zeros((1, 33100, 1, 1), np.uint8)
    with pytest.raises(ValueError, match=r"conv2d_int: the int32 accumulator overflows: value -2152327500"):
        Q.qlinear_conv(x, 1.0, 0, w, 1.0, np.uint8(255), 1.0, 0)
    # acc = 8 * 2 * 2 = 32, + B = 2**31 - 1 - 31 fits, + (2**31 - 1 - 31) + 1 does not
    y = _ql(B=np.full(3, 2 ** 31 - 1 - 32, np.int32), y_scale=2.0 ** 30)   # M = 2**-33: y = y_zp + rint(~0.25)
    assert y[0, :, 0, 0].tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match=r"qlinear_conv \(accumulator \+ B\): the int32 accumulator overflows: "
                                         r"value 2147483648"):
        _ql(B=np.full(3, 2 ** 31 - 32, np.int32), y_scale=2.0 ** 30)


# ---------------------------------------------------------------------------------------------------
# tflite_conv2d_int8
# ---------------------------------------------------------------------------------------------------

def _tfl(**over):
    a = dict(x=np.zeros((1, 2, 3, 2), np.int8), x_scale=0.5, x_zero_point=0, w=np.ones((3, 1, 1, 2), np.int8),
             w_scale=np.full(3, 0.5, np.float32), bias=None, y_scale=1.0, y_zero_point=0)
    a.update(over)
    kw = {k: a.pop(k) for k in ("stride", "padding", "dilation", "activation", "mode") if k in a}
    return Q.tflite_conv2d_int8(a["x"], a["x_scale"], a["x_zero_point"], a["w"], a["w_scale"], a["bias"],
                                a["y_scale"], a["y_zero_point"], **kw)


def test_tflite_conv_names_its_operands():
    with pytest.raises(ValueError, match="`x` must be 4-D"):
        _tfl(x=np.zeros((2, 3, 2), np.int8))
    with pytest.raises(ValueError, match="`w` must be 4-D"):
        _tfl(w=np.ones((3, 1, 2), np.int8))
    with pytest.raises(TypeError, match="`x` must be an integer array"):
        _tfl(x=np.zeros((1, 2, 3, 2)))
    with pytest.raises(TypeError, match="`w` must be an integer array"):
        _tfl(w=np.ones((3, 1, 1, 2)))
    with pytest.raises(TypeError, match=r"`x` and `w` must be int8 \(TFLite int8 CONV_2D\); got int8 and uint8"):
        _tfl(w=np.ones((3, 1, 1, 2), np.uint8))
    with pytest.raises(TypeError, match=r"`x` and `w` must be int8 \(TFLite int8 CONV_2D\); got uint8 and int8"):
        _tfl(x=np.zeros((1, 2, 3, 2), np.uint8))
    with pytest.raises(ValueError, match=r"`x` has 2 channels \(NHWC\) but `w` \(OHWI\) expects 3"):
        _tfl(w=np.ones((3, 1, 1, 3), np.int8))
    with pytest.raises(ValueError, match="`mode` must be one of"):
        _tfl(mode="onnxruntime")


def test_tflite_conv_names_scales_zero_points_and_geometry():
    with pytest.raises(ValueError, match="`x_scale` must be > 0"):
        _tfl(x_scale=0.0)
    with pytest.raises(ValueError, match="`y_scale` must be > 0"):
        _tfl(y_scale=0.0)
    with pytest.raises(ValueError, match=r"`w_scale` must have one value per channel along `axis` 0 \(3\); "
                                         r"got length 2"):
        _tfl(w_scale=np.full(2, 0.5, np.float32))
    for name in ("x_zero_point", "y_zero_point"):
        for bad in (128, -129):
            with pytest.raises(ValueError, match=rf"`{name}` must lie in \[-128, 127\]"):
                _tfl(**{name: bad})
    with pytest.raises(ValueError, match="`stride` must be >= 1"):
        _tfl(stride=0)
    with pytest.raises(ValueError, match="`dilation` must be >= 1"):
        _tfl(dilation=0)
    with pytest.raises(ValueError, match=r"`padding` must be one of 'VALID', 'SAME'"):
        _tfl(padding="same")   # TFLite's two spellings only
    # the extreme zero points are accepted
    assert _tfl(x_zero_point=-128, y_zero_point=127).shape == (1, 2, 3, 3)


def test_tflite_conv_same_padding_reads_height_and_width():
    # x (1, 2, 3, 1) NHWC, 3x3 kernel of ones, SAME, stride 1: H pads (1, 1), W pads (1, 1); x = 1 (zp 0)
    # out[i, j] = number of in-image taps: H = 2 rows -> each output row sees both rows; W = 3: 2, 3, 2
    x = np.ones((1, 2, 3, 1), np.int8)
    w = np.ones((1, 3, 3, 1), np.int8)
    y = Q.tflite_conv2d_int8(x, 1.0, 0, w, np.float32(1.0), None, 1.0, 0, padding="SAME")
    assert y.shape == (1, 2, 3, 1)
    assert y[0, :, :, 0].tolist() == [[4, 6, 4], [4, 6, 4]]


def test_tflite_conv_bias_is_checked():
    with pytest.raises(ValueError, match=r"`bias` must have one value per output channel \(3\); got length 2"):
        _tfl(bias=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="`bias` must be 1-D"):
        _tfl(bias=np.zeros((3, 1), np.int32))
    with pytest.raises(ValueError, match=r"`bias` must fit in int32"):
        _tfl(bias=np.array([0, -(2 ** 31) - 1, 0], np.int64))
    with pytest.raises(ValueError, match=r"tflite_conv2d_int8 \(accumulator \+ bias\): the int32 accumulator "
                                         r"overflows: value -2147483649"):
        # acc = (x - x_zp) * w = (-128 - 127) * ... : x = -128, zp 127 -> -255 per tap, 2 taps: -510
        _tfl(x=np.full((1, 2, 3, 2), -128, np.int8), x_zero_point=127, bias=np.full(3, -(2 ** 31) + 509, np.int64))


def _srdhm(a, b):   # gemmlowp SaturatingRoundingDoublingHighMul, Python ints (no saturation case here)
    ab = a * b
    nudge = 2 ** 30 if ab >= 0 else 1 - 2 ** 30
    s = ab + nudge
    return s // 2 ** 31 if s >= 0 else -((-s) // 2 ** 31)


def _rdbpot(x, e):  # gemmlowp RoundingDivideByPOT
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def test_tflite_conv_multiplier_is_the_float32_scales_widened_to_double():
    # w_scale given as the float64 0.1: TFLite holds it as float32(0.1) = 13421773 / 2**27, and forms
    # M = double(x_s) * double(w_s) / double(y_s) = float32(0.1) / (3 * 2**20) in double. QuantizeMultiplier:
    # frexp -> (q, shift) with q = round(frac * 2**31). Near the output tie 10.5 the two accumulators below
    # straddle it for this M, but not for 0.1 / (3 * 2**20) (w_scale left in double: both give 10) nor for
    # the float32 M (both give 11).
    m = float(np.float32(0.1)) / (3 * 2 ** 20)
    frac, shift = math.frexp(m)
    q = round(frac * 2 ** 31)
    acc = [330301434, 330301435]
    expected = [_rdbpot(_srdhm(a, q), -shift) for a in acc]
    assert expected == [10, 11]   # the premise of the test, from the formulas alone
    x = np.zeros((1, 1, 1, 1), np.int8)
    w = np.ones((2, 1, 1, 1), np.int8)
    y = Q.tflite_conv2d_int8(x, 1.0, 0, w, 0.1, np.array(acc, np.int32), 3.0 * 2 ** 20, 0)
    assert y[0, 0, 0].tolist() == expected
    # the same through a per-channel float64 scale vector
    y = Q.tflite_conv2d_int8(x, 1.0, 0, w, np.array([0.1, 0.1]), np.array(acc, np.int32), 3.0 * 2 ** 20, 0)
    assert y[0, 0, 0].tolist() == expected


def test_tflite_activation_is_named_and_the_output_stays_int8():
    with pytest.raises(ValueError, match="`activation` must be one of"):
        Q.tflite_activation_range("relu", 0.5, 0)
    with pytest.raises(ValueError, match="`activation` must be one of"):
        _tfl(activation="RELU1")
    # RELU with y_zero_point 0 clamps to [0, 127], a range uint8 also holds: the output is still int8
    y = _tfl(x=np.ones((1, 2, 3, 2), np.int8), activation="RELU")
    assert y.dtype == np.int8 and y[0, 0, 0].tolist() == [1, 1, 1]   # (1 * 1) * 2 taps * 0.5 * 0.5 / 1 = 0.5 -> 1


def test_activation_range_names_scale_and_zero_point():
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        Q.tflite_activation_range("RELU6", 0.0, 0)
    with pytest.raises(ValueError, match=r"`zero_point` must lie in \[-128, 127\]"):
        Q.tflite_activation_range("RELU", 0.5, 128)
    with pytest.raises(ValueError, match=r"`zero_point` must lie in \[0, 255\]"):
        Q.tflite_activation_range("RELU", 0.5, -1, dtype="uint8")


# ---------------------------------------------------------------------------------------------------
# the int32 accumulator check at its exact limits
# ---------------------------------------------------------------------------------------------------

def test_int32_accumulator_limits_are_inclusive_and_the_first_overflow_is_named():
    # qlinear_conv: acc = 32 per output (see above); B puts channel 0 at 2**31 - 1 exactly (allowed) and
    # channel 1 one past it: the error names channel 1, not the exact limit before it
    y_scale = 2.0 ** 30
    _ql(B=np.array([2 ** 31 - 1 - 32, 0, 0], np.int64), y_scale=y_scale)
    with pytest.raises(ValueError, match=r"value 2147483648 at index \(0, 1, 0, 0\)"):
        _ql(B=np.array([2 ** 31 - 1 - 32, 2 ** 31 - 32, 0], np.int64), y_scale=y_scale)
    # tflite_conv2d_int8: acc = (-128 - 127) * 1 * 2 taps = -510; bias puts channel 0 at -2**31 exactly
    x = np.full((1, 2, 3, 2), -128, np.int8)
    y = _tfl(x=x, x_zero_point=127, bias=np.array([-(2 ** 31) + 510, 0, 0], np.int64), y_scale=2.0 ** 30)
    assert y[0, 0, 0].tolist() == [-1, 0, 0]   # -2**31 * 0.5 * 0.5 / 2**30 = -0.5 -> away from zero: -1
    with pytest.raises(ValueError, match=r"value -2147483649 at index \(0, 1, 0, 0\)"):
        _tfl(x=x, x_zero_point=127, bias=np.array([-(2 ** 31) + 510, -(2 ** 31) + 509, 0], np.int64))


# ---------------------------------------------------------------------------------------------------
# conv2d_int
# ---------------------------------------------------------------------------------------------------

def test_conv2d_int_names_its_arguments():
    x = np.zeros((1, 3, 4, 4), np.int16)
    with pytest.raises(ValueError, match=r"`xq` has 3 channels but `wq` expects 2 x `groups` \(1\) = 2$"):
        Q.conv2d_int(x, np.zeros((2, 2, 1, 1), np.int8))
    with pytest.raises(ValueError, match=r"`wq` has 3 filters, not divisible by groups \(2\)"):
        Q.conv2d_int(np.zeros((1, 4, 4, 4), np.int16), np.zeros((3, 2, 1, 1), np.int8), groups=2)
    with pytest.raises(ValueError, match="`xq` must be 4-D"):
        Q.conv2d_int(np.zeros((3, 4, 4), np.int16), np.zeros((2, 3, 1, 1), np.int8))
    with pytest.raises(ValueError, match="`wq` must be 4-D"):
        Q.conv2d_int(x, np.zeros((2, 3, 1), np.int8))
    with pytest.raises(ValueError, match="`accumulator` must be one of"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), accumulator="int16")
    with pytest.raises(ValueError, match="`method` must be one of"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), method="float16")
    with pytest.raises(ValueError, match="`groups` must be >= 1"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), groups=0)
    with pytest.raises(ValueError, match="`stride` must be >= 1"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), stride=0)
    with pytest.raises(ValueError, match="`dilation` must be >= 1"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), dilation=0)
    with pytest.raises(TypeError, match="`x_zero_point` must be an integer"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), x_zero_point=0.5)
    with pytest.raises(ValueError, match=r"`w_zero_point` must have one value per channel along `axis` 0 \(2\); "
                                         r"got length 3"):
        Q.conv2d_int(x, np.zeros((2, 3, 1, 1), np.int8), w_zero_point=[0, 0, 0])


def test_conv2d_int_float32_partial_sums_stay_exact():
    # max|x| * max|w| = 4095 * 4097 = 2**24 - 1: float32 is allowed, one product per chunk.
    # acc = 4095 * 4097 + 4094 * 4097 = 4097 * 8189 = 33550333, odd and above 2**24 (not a float32):
    # summing two products in float32 would round it
    x = np.array([[[[4095, 4094]]]], np.int16)
    w = np.array([[[[4097, 4097]]]], np.int16)
    for method in ("auto", "float32", "float64", "int64"):
        assert Q.conv2d_int(x, w, method=method).tolist() == [[[[33550333]]]], method


def test_conv2d_int_float32_chunks_over_a_long_reduction():
    # products up to 2**11 * 2**11 = 2**22: chunks of (2**24 - 1) // 2**22 = 3 products over K = 27
    from refdet.reference import quant as R
    r = np.random.default_rng(5)
    x = r.integers(-2048, 2049, size=(1, 3, 4, 4)).astype(np.int16)
    w = r.integers(-2048, 2049, size=(2, 3, 3, 3)).astype(np.int16)
    x[0, 0, 0, 0], w[0, 0, 0, 0] = -2048, 2048
    ref = R.conv2d_int(x, w, 0, [0, 0])
    for method in ("float32", "auto", "int64"):
        assert np.array_equal(Q.conv2d_int(x, w, method=method), ref), method


def test_conv2d_int_explicit_methods_refuse_at_their_exact_limits():
    one = np.ones((1, 1, 1, 1), np.int64)
    # float32: a product of 2**24 is refused (the bound is one product < 2**24)
    with pytest.raises(ValueError, match=r"`method` 'float32' cannot be exact: .* can reach 16777216 >= 2\*\*24"):
        Q.conv2d_int(one * 4096, one * 4096, method="float32")
    assert Q.conv2d_int(one * 4095, one * 4097, method="float32").tolist() == [[[[2 ** 24 - 1]]]]
    # float64: K * product = 2 * 2**52 = 2**53 is refused, 2**52 is fine
    two = np.ones((1, 2, 1, 1), np.int64)
    with pytest.raises(ValueError, match=r"`method` 'float64' cannot be exact: .* can reach 9007199254740992 "
                                         r">= 2\*\*53"):
        Q.conv2d_int(two * 2 ** 26, two * 2 ** 26, method="float64")
    assert Q.conv2d_int(one * 2 ** 26, one * 2 ** 26, method="float64").tolist() == [[[[2 ** 52]]]]
    # int64: K * product = 2 * 2**62 = 2**63 is refused whatever the method; 2**62 is exact
    with pytest.raises(ValueError, match=r"over 2 terms can reach 9223372036854775808, beyond int64"):
        Q.conv2d_int(two * 2 ** 31, two * 2 ** 31)
    assert Q.conv2d_int(one * 2 ** 31, one * 2 ** 31).tolist() == [[[[2 ** 62]]]]
    assert Q.conv2d_int(one * 2 ** 31, one * 2 ** 31, method="int64").tolist() == [[[[2 ** 62]]]]


def test_conv2d_int_zero_length_reductions_and_zero_products():
    # no input channels: every output is the empty sum 0
    out = Q.conv2d_int(np.zeros((1, 0, 3, 3), np.int8), np.zeros((2, 0, 1, 1), np.int8))
    assert out.shape == (1, 2, 3, 3) and not out.any() and out.dtype == np.int64
    # x equal to its zero point everywhere: every product is 0 (auto picks a float path)
    out = Q.conv2d_int(np.full((1, 2, 3, 3), 7, np.uint8), np.full((1, 2, 2, 2), 9, np.uint8), x_zero_point=7)
    assert out.tolist() == [[[[0, 0], [0, 0]]]]
    # the weights' zero point too: w - w_zp = 0
    out = Q.conv2d_int(np.full((1, 2, 3, 3), 3, np.uint8), np.full((1, 2, 2, 2), 9, np.uint8), w_zero_point=9)
    assert out.tolist() == [[[[0, 0], [0, 0]]]]
    # both shifted: (3 - 1) * (9 - 4) * 8 taps = 80
    out = Q.conv2d_int(np.full((1, 2, 3, 3), 3, np.uint8), np.full((1, 2, 2, 2), 9, np.uint8), x_zero_point=1,
                       w_zero_point=[4])
    assert out.tolist() == [[[[80, 80], [80, 80]]]]


def test_tflite_conv_int32_accumulator_overflow_without_bias():
    # (x - x_zp) = -128 - 127 = -255, w = -128: 32640 per tap over 65800 input channels = 2147712000 > 2**31 - 1
    x = np.full((1, 1, 1, 65800), -128, np.int8)
    w = np.full((1, 1, 1, 65800), -128, np.int8)
    with pytest.raises(ValueError, match=r"conv2d_int: the int32 accumulator overflows: value 2147712000"):
        Q.tflite_conv2d_int8(x, 1.0, 127, w, np.float32(1.0), None, 1.0, 0)
