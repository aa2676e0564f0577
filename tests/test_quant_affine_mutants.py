"""refdet.quant.affine at its exact boundaries (issue 19: the mutants the SPEC vectors TV-Q1..TV-Q6 and
the onnxruntime / torch differential tests in tests/test_quant.py leave alive).

Every expected value is worked by hand (scales that are powers of two or whose quotients are exact);
none is read back from refdet.
"""
import numpy as np
import pytest

from refdet import quant as Q


# ---------------------------------------------------------------------------------------------------
# a 0-d input is one channel
# ---------------------------------------------------------------------------------------------------

def test_zero_d_input_with_an_axis_is_one_channel():
    # before issue 19's tests this raised IndexError in _along (no axis 0 to reshape along)
    q = Q.quantize(np.float64(1.25), np.array([0.5]), np.array([1]), axis=0)
    assert q.shape == () and q.dtype == np.int8 and q.tolist() == 3   # rint(2.5) = 2 (even), + 1
    d = Q.dequantize(np.int8(3), np.array([0.5]), np.array([1]), axis=0)
    assert d.shape == () and d.tolist() == 1.0
    with pytest.raises(ValueError, match=r"`scale` must have one value per channel along `axis` 0 \(1\); "
                                         r"got length 2"):
        Q.quantize(np.float64(1.25), np.array([0.5, 1.0]), np.array([1, 1]), axis=0)
    with pytest.raises(ValueError, match=r"`zero_point` must have one value per channel along `axis` 0 \(1\); "
                                         r"got length 2"):
        Q.dequantize(np.int8(3), np.array([0.5]), np.array([1, 1]), axis=0)


# ---------------------------------------------------------------------------------------------------
# rounding
# ---------------------------------------------------------------------------------------------------

def test_rounding_keeps_the_float_dtype_and_infinities_silently():
    import warnings
    for fn in (Q.round_half_even, Q.round_half_away, Q.round_half_up):
        for dt in (np.float16, np.float32, np.float64):
            v = np.array([-2.5, -0.5, 0.5, 2.5], dt)
            assert fn(v).dtype == dt, (fn.__name__, dt)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert fn(np.array([np.inf, -np.inf])).tolist() == [np.inf, -np.inf]
    assert Q.round_half_away(np.array([-2.5, -0.5, 0.5, 2.5], np.float32)).tolist() == [-3, -1, 1, 3]
    assert Q.round_half_up(np.array([-2.5, -0.5, 0.5, 2.5], np.float32)).tolist() == [-2, 0, 1, 3]
    # the fraction exactly 0.5 below and above 0: -0.5 is a tie (-1 away, 0 up), -0.4999 is not
    assert Q.round_half_away(np.array([-0.5, -0.4999, 0.4999, 1.5])).tolist() == [-1, 0, 0, 2]
    assert Q.round_half_up(np.array([-0.5, -0.5001, 0.4999, 1.5])).tolist() == [0, -1, 0, 2]


# ---------------------------------------------------------------------------------------------------
# qparams_from_minmax: arguments and ranges
# ---------------------------------------------------------------------------------------------------

def test_qparams_names_its_arguments():
    with pytest.raises(TypeError, match="`symmetric` must be a bool; got 1"):
        Q.qparams_from_minmax(-1.0, 1.0, symmetric=1)
    with pytest.raises(ValueError, match=r"`rmin` and `rmax` must be scalars or 1-D \(per channel\); got shapes "
                                         r"\(1, 2\) and \(\)"):
        Q.qparams_from_minmax(np.zeros((1, 2)), 1.0)
    with pytest.raises(ValueError, match=r"`rmin` and `rmax` must be scalars or 1-D \(per channel\); got shapes "
                                         r"\(\) and \(2, 1\)"):
        Q.qparams_from_minmax(0.0, np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"per-channel ranges \(shapes \(2,\), \(\)\) need `axis`"):
        Q.qparams_from_minmax(np.array([-1.0, -2.0]), 1.0)
    with pytest.raises(ValueError, match=r"per-channel ranges \(shapes \(\), \(2,\)\) need `axis`"):
        Q.qparams_from_minmax(-1.0, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"`rmin` and `rmax` must have the same length; got \(2,\) and \(3,\)"):
        Q.qparams_from_minmax(np.array([-1.0, -2.0]), np.array([1.0, 2.0, 3.0]), axis=0)
    with pytest.raises(ValueError, match=r"`rmin` must be <= `rmax`; got rmin=\[1.0, -1.0\], rmax=\[0.5, 1.0\]"):
        Q.qparams_from_minmax(np.array([1.0, -1.0]), np.array([0.5, 1.0]), axis=0)
    with pytest.raises(ValueError, match=r"`rmin` must be <= `rmax`; got rmin=2.0, rmax=1.0"):
        Q.qparams_from_minmax(2.0, 1.0)
    with pytest.raises(TypeError, match="`axis` must be an integer"):
        Q.qparams_from_minmax(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), axis=0.5)
    with pytest.raises(TypeError, match="`rmin` must be an array of numbers"):
        Q.qparams_from_minmax("a", 1.0)
    with pytest.raises(TypeError, match="`rmax` must be an array of numbers"):
        Q.qparams_from_minmax(0.0, "b")


def test_qparams_one_channel_without_axis_and_equal_ends():
    # a (1,) range without axis is per tensor: shape ()
    qp = Q.qparams_from_minmax(np.array([-1.0]), np.array([3.0]), dtype="uint8", convention="onnx")
    assert qp.scale.shape == () and qp.zero_point.shape == () and qp.zero_point.tolist() == 64
    # rmin == rmax is allowed (a constant tensor): [2, 2] widens to [0, 2]: s = 2 / 255, z = 0
    qp = Q.qparams_from_minmax(2.0, 2.0, dtype="uint8", convention="onnx")
    assert qp.scale.tolist() == np.float32(2.0 / 255) and qp.zero_point.tolist() == 0
    # per channel with an axis keeps (C,)
    qp = Q.qparams_from_minmax(np.array([-1.0, 0.0]), np.array([1.0, 2.55]), dtype="uint8", axis=1,
                               convention="onnx")
    assert qp.scale.shape == (2,) and qp.zero_point.tolist() == [128, 0]


def test_qparams_custom_integer_range_is_checked():
    with pytest.raises(ValueError, match=r"`qmin` must be >= -128; got -129"):
        Q.qparams_from_minmax(-1.0, 1.0, qmin=-129)
    with pytest.raises(ValueError, match=r"`qmax` must be <= 127; got 128"):
        Q.qparams_from_minmax(-1.0, 1.0, qmax=128)
    with pytest.raises(ValueError, match=r"`qmin` must be <= 127; got 128"):
        Q.qparams_from_minmax(-1.0, 1.0, qmin=128)
    with pytest.raises(ValueError, match=r"`qmax` must be >= -128; got -129"):
        Q.qparams_from_minmax(-1.0, 1.0, qmax=-129)
    with pytest.raises(ValueError, match=r"must contain 0 \(so that 0.0 is exact\); got \[1, 100\]"):
        Q.qparams_from_minmax(0.0, 1.0, dtype="uint8", qmin=1, qmax=100)
    with pytest.raises(ValueError, match=r"must contain 0 \(so that 0.0 is exact\); got \[-100, -1\]"):
        Q.qparams_from_minmax(-1.0, 0.0, qmin=-100, qmax=-1)
    with pytest.raises(ValueError, match=r"`qmin` must be < `qmax`; got \[0, 0\]"):
        Q.qparams_from_minmax(0.0, 1.0, qmin=0, qmax=0)
    # the extremes of the type and a range touching 0 at either end are fine
    assert Q.qparams_from_minmax(0.0, 2.55, dtype="uint8", qmin=0, qmax=255, convention="onnx").zero_point == 0
    qp = Q.qparams_from_minmax(-1.27, 0.0, qmin=-127, qmax=0, convention="onnx")
    assert qp.scale.tolist() == np.float32(0.01) and qp.zero_point.tolist() == 0
    qp = Q.qparams_from_minmax(0.0, 1.27, qmin=0, qmax=127, convention="onnx")
    assert qp.scale.tolist() == np.float32(0.01) and qp.zero_point.tolist() == 0


def test_qparams_narrow_range_only_for_symmetric_signed_types():
    # onnx: narrow_range "symmetric": int8 symmetric -> [-127, 127], s = 1.27 / 127 = 0.01; uint8 symmetric
    # stays [0, 255] (s = 1.27 / 127.5), asymmetric int8 stays [-128, 127]
    qp = Q.qparams_from_minmax(-1.27, 1.0, symmetric=True, convention="onnx")
    assert qp.scale.tolist() == np.float32(0.01) and qp.zero_point.tolist() == 0
    qp = Q.qparams_from_minmax(0.0, 1.275, dtype="uint8", symmetric=True, convention="onnx")
    assert qp.scale.tolist() == np.float32(1.275 / 127.5) and qp.zero_point.tolist() == 128
    qp = Q.qparams_from_minmax(-1.28, 1.27, convention="onnx")
    assert qp.scale.tolist() == np.float32(2.55 / 255) and qp.zero_point.tolist() == 0
    # narrow_range=True narrows uint8 too, to [1, 255], which cannot hold 0.0
    with pytest.raises(ValueError, match=r"must contain 0 \(so that 0.0 is exact\); got \[1, 255\]"):
        Q.qparams_from_minmax(0.0, 2.54, dtype="uint8", narrow_range=True, convention="onnx")
    # and int8 asymmetric to [-127, 127]: [-1.27, 1.27] gives s = 2.54 / 254 = 0.01, z = rint(-127 + 127) = 0
    qp = Q.qparams_from_minmax(-1.27, 1.27, narrow_range=True, convention="onnx")
    assert qp.scale.tolist() == np.float32(np.float64(np.float32(1.27)) * 2 / 254) and qp.zero_point.tolist() == 0


# ---------------------------------------------------------------------------------------------------
# qparams_from_minmax: zero-point rules at their edges
# ---------------------------------------------------------------------------------------------------

def test_qparams_torch_symmetric_zero_points():
    # signed: 0; uint8 full range: 128 ((255 + 1) // 2); a custom unsigned range [0, 100]: (0 + 100) // 2 = 50
    assert Q.qparams_from_minmax(-1.0, 1.0, symmetric=True).zero_point.tolist() == 0
    assert Q.qparams_from_minmax(-1.0, 1.0, dtype="uint8", symmetric=True).zero_point.tolist() == 128
    assert Q.qparams_from_minmax(-1.0, 1.0, dtype="uint8", symmetric=True, qmin=0, qmax=100).zero_point == 50
    assert Q.qparams_from_minmax(-1.0, 1.0, dtype="uint8", symmetric=True, qmin=0, qmax=101).zero_point == 50
    # torch symmetric scale: absmax / ((qmax - qmin) / 2) = 1.0 / 127.5 (int8 keeps [-128, 127])
    assert Q.qparams_from_minmax(-1.0, 0.5, symmetric=True).scale.tolist() == np.float32(1.0 / 127.5)


def test_qparams_all_zero_range_per_convention():
    # torch: scale floored at float32 eps, z = qmin - rint(0 / eps) = -128 for int8 asymmetric, 0 symmetric
    qp = Q.qparams_from_minmax(0.0, 0.0)
    assert qp.scale.tolist() == np.float32(np.finfo(np.float32).eps) and qp.zero_point.tolist() == -128
    # onnx and tf: (1.0, 0)
    for conv in ("onnx", "tf"):
        qp = Q.qparams_from_minmax(0.0, 0.0, convention=conv)
        assert qp.scale.tolist() == 1.0 and qp.zero_point.tolist() == 0, conv
        qp = Q.qparams_from_minmax(0.0, 0.0, dtype="uint8", convention=conv)
        assert qp.scale.tolist() == 1.0 and qp.zero_point.tolist() == 0, conv
    # a range just above float32 tiny * 255 is not degenerate under "one": s = tiny exactly
    tiny = float(np.finfo(np.float32).tiny)
    qp = Q.qparams_from_minmax(0.0, tiny * 255, dtype="uint8", convention="onnx", scale_dtype="float64")
    assert qp.scale.tolist() == np.float32(tiny) and qp.zero_point.tolist() == 0
    # per channel: only the degenerate channel gets (1.0, 0)
    qp = Q.qparams_from_minmax(np.array([0.0, -1.0]), np.array([0.0, 3.0]), dtype="uint8", axis=0,
                               convention="tf")
    assert qp.scale.tolist() == [1.0, np.float32(4.0 / 255)] and qp.zero_point.tolist() == [0, 64]


def test_qparams_tf_zero_point_is_clamped_then_rounded_half_away():
    # tf rule: zp_from_min = qmin - rmin / s, clamped to [qmin, qmax], std::round (half away).
    # [-0.5, 2.0] as uint8: s = 2.5 / 255, -rmin / s = 51 exactly -> 51; int8: -128 + 51 = -77
    qp = Q.qparams_from_minmax(-0.5, 2.0, dtype="uint8", convention="tf")
    assert qp.zero_point.tolist() == 51
    # a tie: s = 1.0 (range [-127.5, 127.5] over 255 steps), zp_from_min = 0 + 127.5 -> 128 (half away; RNE also 128)
    # and [-126.5, 128.5]: zp_from_min = 126.5 -> 127 (half away) where RNE gives 126
    qp = Q.qparams_from_minmax(-126.5, 128.5, dtype="uint8", convention="tf")
    assert qp.scale.tolist() == 1.0 and qp.zero_point.tolist() == 127
    qp = Q.qparams_from_minmax(-126.5, 128.5, dtype="uint8", convention="onnx", scale_dtype="float32")
    assert qp.zero_point.tolist() == 126
    # torch: qmin - rint(rmin / s) = 0 - rint(-126.5) = 126 (RNE)
    assert Q.qparams_from_minmax(-126.5, 128.5, dtype="uint8").zero_point.tolist() == 126


def test_qparams_scale_dtype_float64_vs_float32():
    # (0.3 - (-0.1)) / 255 in float64 then stored as float32, vs the same in float32 arithmetic
    a, b = np.float32(-0.1), np.float32(0.3)
    s64 = np.float32((np.float64(b) - np.float64(a)) / 255.0)
    s32 = np.float32((b - a) / np.float32(255))
    qp64 = Q.qparams_from_minmax(a, b, dtype="uint8", convention="onnx", scale_dtype="float64")
    qp32 = Q.qparams_from_minmax(a, b, dtype="uint8", convention="onnx", scale_dtype="float32")
    assert qp64.scale.tolist() == s64 and qp32.scale.tolist() == s32
    assert qp64.scale.dtype == np.float32 and qp32.scale.dtype == np.float32
    assert qp64.zero_point.dtype == np.int64


# ---------------------------------------------------------------------------------------------------
# quantize / dequantize
# ---------------------------------------------------------------------------------------------------

def test_quantize_names_its_arguments():
    with pytest.raises(ValueError, match="`add_zero_point` must be one of"):
        Q.quantize([1.0], 1.0, 0, add_zero_point="middle")
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        Q.quantize([1.0], 1.0, 0, dtype="int4x")
    with pytest.raises(TypeError, match="`x` must be an array of numbers"):
        Q.quantize("x", 1.0, 0)
    with pytest.raises(ValueError, match="`x` must not contain NaN"):
        Q.quantize([np.nan], 1.0, 0)
    with pytest.raises(ValueError, match=r"`zero_point` must lie in \[-128, 127\] \(the quantized type's range\)"):
        Q.quantize([1.0], 1.0, 128)
    with pytest.raises(ValueError, match=r"`zero_point` must lie in \[0, 255\]"):
        Q.quantize([1.0], 1.0, -1, dtype="uint8")
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        Q.quantize([1.0], 0.0, 0)
    with pytest.raises(ValueError, match=r"`scale` must have one value per channel along `axis` 1 \(2\); got length 3"):
        Q.quantize(np.zeros((3, 2)), np.ones(3), np.zeros(3, np.int64), axis=1)
    with pytest.raises(ValueError, match=r"`axis` must lie in \[-1, 1\) for a 1-D input; got 1"):
        Q.quantize(np.zeros(3), np.ones(3), np.zeros(3, np.int64), axis=1)


def test_quantize_custom_range_and_saturation():
    x = np.array([-300.0, -1.0, 0.0, 1.0, 300.0, np.inf, -np.inf])
    # qmin/qmax narrow the clamp only: int8 [-100, 50]
    assert Q.quantize(x, 1.0, 0, qmin=-100, qmax=50).tolist() == [-100, -1, 0, 1, 50, 50, -100]
    assert Q.quantize(x, 1.0, 0, qmin=-100).tolist() == [-100, -1, 0, 1, 127, 127, -100]
    assert Q.quantize(x, 1.0, 0, qmax=50).tolist() == [-128, -1, 0, 1, 50, 50, -128]
    # the zero point may lie outside a custom range (it is checked against the type's range)
    assert Q.quantize(x, 1.0, 100, qmin=-100, qmax=50).tolist() == [-100, 50, 50, 50, 50, 50, -100]
    # infinities saturate with any zero point, per channel too
    q = Q.quantize(np.array([[np.inf, -np.inf], [np.inf, -np.inf]]), np.ones(2), np.array([127, -128]), axis=0)
    assert q.tolist() == [[127, -128], [127, -128]]
    q = Q.quantize(np.array([np.inf, -np.inf, 1e300, -1e300]), 1.0, 0, dtype="int32")
    assert q.tolist() == [2 ** 31 - 1, -(2 ** 31), 2 ** 31 - 1, -(2 ** 31)]
    q = Q.quantize(np.array([np.inf, -np.inf]), 1.0, 3, add_zero_point="before", dtype="uint8")
    assert q.tolist() == [255, 0]


def test_quantize_add_zero_point_before_rounding():
    # "before": round(x / s + z). x / s = 2.5, z = 1: RNE(3.5) = 4 (after: RNE(2.5) + 1 = 3)
    assert Q.quantize([2.5], 1.0, 1, add_zero_point="before").tolist() == [4]
    assert Q.quantize([2.5], 1.0, 1, add_zero_point="after").tolist() == [3]
    # per channel "before": z = [1, 2] along axis 0: 2.5 + 1 = 3.5 -> 4; 2.5 + 2 = 4.5 -> 4
    q = Q.quantize(np.array([[2.5], [2.5]]), np.ones(2), np.array([1, 2]), axis=0, add_zero_point="before")
    assert q.tolist() == [[4], [4]]
    # float32 "before": the zero point is added in float32: 2**24 + 1 would round to 2**24 (exact in int32 after)
    q = Q.quantize(np.array([2.0 ** 24], np.float32), np.float32(1.0), 1, dtype="int32", add_zero_point="before")
    assert q.tolist() == [2 ** 24]
    q = Q.quantize(np.array([2.0 ** 24], np.float32), np.float32(1.0), 1, dtype="int32", add_zero_point="after")
    assert q.tolist() == [2 ** 24 + 1]


def test_quantize_reciprocal_is_in_the_working_dtype():
    # s = 0.3f, x = 2.25f: x / s = 7.4999995 in float32 (RNE -> 7), but x * (1 / s) = 2.25 * 3.3333333f = 7.5
    # exactly in float32 (RNE -> 8): PyTorch's reciprocal multiply, ONNX's division
    x = np.array([2.25], np.float32)
    s = np.float32(0.3)
    assert Q.quantize(x, s, 0, op="mul_inv").tolist() == [8]
    assert Q.quantize(x, s, 0, op="div").tolist() == [7]
    assert Q.quantize(x, s, 0, convention="torchvision").tolist() == [8]
    assert Q.quantize(x, s, 0, convention="onnx").tolist() == [7]
    # in float64 both are 7.499999888241291... (s = 0.3f widened) -> 7
    assert Q.quantize(x.astype(np.float64), s, 0, op="mul_inv").tolist() == [7]


def test_dequantize_names_and_dtypes():
    with pytest.raises(ValueError, match="`out_dtype` must be one of"):
        Q.dequantize([1], 1.0, 0, out_dtype="float16")
    with pytest.raises(TypeError, match="`q` must be an integer array"):
        Q.dequantize([1.5], 1.0, 0)
    with pytest.raises(ValueError, match=r"`zero_point` must lie in \[-4611686018427387904, 4611686018427387904\]"):
        Q.dequantize([1], 1.0, 2 ** 62 + 1)
    # zero points far outside any 8-bit range are fine: (q - z) in int64
    assert Q.dequantize(np.array([0], np.int64), 0.5, -(2 ** 62)).tolist() == [2.0 ** 61]
    d = Q.dequantize(np.array([[1, 2], [3, 4]], np.int8), np.array([0.5, 0.25]), np.array([1, 0]), axis=1,
                     out_dtype="float64")
    assert d.dtype == np.float64 and d.tolist() == [[0.0, 0.5], [1.0, 1.0]]
    d = Q.dequantize(np.array([3], np.uint8), np.float32(0.1), 1)
    assert d.dtype == np.float32 and d.tolist() == [np.float32(2) * np.float32(0.1)]


# ---------------------------------------------------------------------------------------------------
# quantize_weights / quantize_bias
# ---------------------------------------------------------------------------------------------------

def test_quantize_weights_per_tensor_and_per_channel_by_hand():
    w = np.array([[-1.0, 0.5], [0.25, 2.0]], np.float32)
    # per tensor (axis None), onnx: absmax 2.0 / 127; -1.0 / s = -63.5 -> RNE -64, 0.5 -> 31.75 -> 32, 0.25 -> 15.875 -> 16
    qt = Q.quantize_weights(w, axis=None, convention="onnx")
    assert qt.axis is None and qt.scale.shape == () and qt.q.tolist() == [[-64, 32], [16, 127]]
    # per channel along axis 1: columns [-1, 0.25] (s = 1/127) and [0.5, 2.0] (s = 2/127)
    qt = Q.quantize_weights(w, axis=1, convention="onnx")
    assert qt.axis == 1 and qt.scale.shape == (2,)
    assert qt.q.tolist() == [[-127, 32], [32, 127]]   # 0.25 * 127 = 31.75 -> 32; 0.5 / (2/127) = 31.75 -> 32
    # a 0-d weight is per tensor whatever the axis
    qt = Q.quantize_weights(np.float32(0.5), axis=0, convention="onnx")
    assert qt.axis is None and qt.q.tolist() == 127
    # knobs reach qparams_from_minmax: qmax=63 halves the range
    qt = Q.quantize_weights(w, axis=None, convention="onnx", qmin=-63, qmax=63)
    assert qt.q.max() == 63 and qt.scale.tolist() == np.float32(2.0 / 63)
    # asymmetric per channel: each column's own zero point
    qt = Q.quantize_weights(np.array([[0.0, -2.0], [2.55, 0.0]]), axis=1, dtype="uint8", symmetric=False,
                            convention="onnx")
    assert qt.zero_point.tolist() == [0, 255]


def test_quantize_weights_empty_inputs():
    qt = Q.quantize_weights(np.zeros((0, 3)), axis=None, convention="onnx")
    assert qt.q.shape == (0, 3) and qt.scale.tolist() == 1.0 and qt.zero_point.tolist() == 0
    qt = Q.quantize_weights(np.zeros((2, 0)), axis=0, convention="onnx")
    assert qt.q.shape == (2, 0) and qt.scale.tolist() == [1.0, 1.0]
    qt = Q.quantize_weights(np.zeros((0, 2)), axis=0, convention="onnx")
    assert qt.q.shape == (0, 2) and qt.scale.shape == (0,)


def test_quantize_bias_names_and_float32_scale():
    with pytest.raises(ValueError, match="`b` must be 1-D"):
        Q.quantize_bias(np.zeros((2, 1)), 0.5, 0.5)
    with pytest.raises(ValueError, match="`x_scale` must be > 0"):
        Q.quantize_bias([1.0], 0.0, 0.5)
    with pytest.raises(ValueError, match=r"`w_scale` must have one value per channel along `axis` 0 \(2\); "
                                         r"got length 3"):
        Q.quantize_bias([1.0, 2.0], 0.5, np.ones(3))
    # bias_scale = float32(float32(0.1) * float32(1.1)) = 0.11000001 (the float64 product rounds to 0.11)
    qb = Q.quantize_bias([1.0], 0.1, 1.1)
    assert qb.scale.dtype == np.float32 and qb.scale.tolist() == np.float32(np.float32(0.1) * np.float32(1.1))
    assert qb.scale.tolist() != np.float32(0.1 * float(np.float32(1.1)))
    # saturation to int32 and the rounding of b / bias_scale in float64: 2.5 / 1 -> 2 (RNE), tf: 3
    qb = Q.quantize_bias([2.5, 1e12, -1e12], 1.0, 1.0)
    assert qb.q.dtype == np.int32 and qb.q.tolist() == [2, 2 ** 31 - 1, -(2 ** 31)]
    assert Q.quantize_bias([2.5], 1.0, 1.0, convention="tf").q.tolist() == [3]
    # per channel scales: [0.5, 0.25] -> 1.0 / 0.5 = 2, 1.0 / 0.25 = 4
    qb = Q.quantize_bias([1.0, 1.0], 1.0, np.array([0.5, 0.25]))
    assert qb.q.tolist() == [2, 4] and qb.scale.tolist() == [0.5, 0.25]


def test_quantize_bias_divides_and_takes_the_reciprocal_in_double():
    # tf: TfLiteRound(b * (1.0 / double(bias_scale))). bias_scale = 0.3f: 1 / 0.3f in double is
    # 3.33333320..., in float32 3.33333325...; b = 2.250000055 gives 7.4999998853 (-> 7) in double and
    # 7.5000000045 (-> 8) with the float32 reciprocal
    assert Q.quantize_bias([2.250000055], 1.0, np.float32(0.3), convention="tf").q.tolist() == [7]
    # onnx: float64(b) / float64(bias_scale), a float32 b included: 8.25f / 1.1f = 7.4999998 (-> 7);
    # in float32 the quotient would be 7.5 (-> 8 under RNE)
    assert Q.quantize_bias(np.array([8.25], np.float32), 1.0, np.float32(1.1)).q.tolist() == [7]


def test_quantize_weights_rounding_and_op_overrides_reach_the_values():
    # onnx symmetric int8: s = absmax / 127. w = [127, 2.5]: s = 1, 2.5 -> RNE 2, half away 3
    w = np.array([127.0, 2.5])
    assert Q.quantize_weights(w, axis=None, convention="onnx").q.tolist() == [127, 2]
    assert Q.quantize_weights(w, axis=None, convention="onnx", rounding="half_away").q.tolist() == [127, 3]
    # absmax 0.3f * 127 = 38.100002f gives s = 0.3f; 2.25f / 0.3f = 7.4999995 (float32) but
    # 2.25f * (1 / 0.3f) = 7.5: tf (reciprocal, half away) 8; op="div" 7; onnx (division, RNE) 7, mul_inv 8
    w = np.array([-np.float32(0.3) * np.float32(127), 2.25], np.float32)
    assert Q.quantize_weights(w, axis=None, convention="tf").scale.tolist() == np.float32(0.3)
    assert Q.quantize_weights(w, axis=None, convention="tf").q.tolist() == [-127, 8]
    assert Q.quantize_weights(w, axis=None, convention="tf", op="div").q.tolist() == [-127, 7]
    assert Q.quantize_weights(w, axis=None, convention="onnx").q.tolist() == [-127, 7]
    assert Q.quantize_weights(w, axis=None, convention="onnx", op="mul_inv").q.tolist() == [-127, 8]


def test_quantize_weights_axis_and_names():
    with pytest.raises(TypeError, match="`w` must be an array of numbers"):
        Q.quantize_weights("w")
    with pytest.raises(ValueError, match=r"`axis` must lie in \[-1, 1\) for a 1-D input; got 1"):
        Q.quantize_weights(np.array([1.0, -0.5]), axis=1)
    # a 1-D weight along axis 0 is per channel: each value its own scale (onnx: |w| / 127 -> q = +-127)
    qt = Q.quantize_weights(np.array([1.0, -0.5]), axis=0, convention="onnx")
    assert qt.axis == 0 and qt.scale.shape == (2,) and qt.q.tolist() == [127, -127]
    # negative axes are normalised
    qt = Q.quantize_weights(np.array([[1.0, -0.5], [0.25, 0.125]]), axis=-1, convention="onnx")
    assert qt.axis == 1 and qt.q.tolist() == [[127, -127], [32, 32]]   # 0.25 * 127 = 31.75, 0.125 * 254 = 31.75


def test_qparams_knob_overrides_reach_the_result():
    # a NumPy bool narrow_range is a bool: [-1.27, 1.27] narrowed to [-127, 127] gives z = 0, s = 2.54 / 254
    a = Q.qparams_from_minmax(-1.27, 1.27, narrow_range=np.True_, convention="onnx")
    b = Q.qparams_from_minmax(-1.27, 1.27, narrow_range=True, convention="onnx")
    c = Q.qparams_from_minmax(-1.27, 1.27, narrow_range=False, convention="onnx")
    assert a.scale.tolist() == b.scale.tolist() != c.scale.tolist()
    assert Q.qparams_from_minmax(-1.27, 1.27, symmetric=True, narrow_range=np.False_,
                                 convention="onnx").scale.tolist() == np.float32(np.float32(1.27) / 127.5)
    # tiny_range="one" under torchvision: an all-zero range gets scale 1.0 instead of eps; torch's zero-point
    # rule then gives qmin - rint(0 / 1) = -128 (0.0 still maps to q = z exactly)
    qp = Q.qparams_from_minmax(0.0, 0.0, tiny_range="one")
    assert qp.scale.tolist() == 1.0 and qp.zero_point.tolist() == -128
    # zero_point_rule="tf" under torchvision (tie at 126.5: half away -> 127, torch's rule gives 126)
    assert Q.qparams_from_minmax(-126.5, 128.5, dtype="uint8", zero_point_rule="tf").zero_point.tolist() == 127
    # scale_dtype="float64" under tf: the float64 quotient stored as float32
    a, b = np.float32(-0.1), np.float32(0.3)
    qp = Q.qparams_from_minmax(a, b, dtype="uint8", convention="tf", scale_dtype="float64")
    assert qp.scale.tolist() == np.float32((np.float64(b) - np.float64(a)) / 255.0)


def test_quantize_overflow_is_silent_and_saturates():
    import warnings
    # 3e38 / 1e-3 overflows float32 to inf: saturates at qmax, without a RuntimeWarning
    x = np.array([3e38, -3e38, 1.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for op in ("div", "mul_inv"):
            assert Q.quantize(x, np.float32(1e-3), 0, op=op).tolist() == [127, -128, 127]
            assert Q.quantize(x, np.float32(1e-3), -3, op=op, dtype="int32").tolist() == [2 ** 31 - 1, -(2 ** 31),
                                                                                        997]
    # a per-channel quantization of no channels
    assert Q.quantize(np.zeros((0, 2)), np.ones(0), np.zeros(0, np.int64), axis=0).shape == (0, 2)


def test_qparams_zero_point_rules_under_eps_scales_and_int_outputs():
    # onnx and tf zero-point rules with the eps floor (no degenerate flag): [-1, 3] uint8 -> 64
    for rule in ("onnx", "tf"):
        qp = Q.qparams_from_minmax(-1.0, 3.0, dtype="uint8", convention="onnx", tiny_range="eps", zero_point_rule=rule)
        assert qp.zero_point.tolist() == 64 and qp.zero_point.dtype == np.int64, rule
    # the tf rule at the top of the range: [-2.55, 0] uint8: zp_from_min = 0 + 2.55 / 0.01 = 255 -> 255
    qp = Q.qparams_from_minmax(-2.55, 0.0, dtype="uint8", convention="tf")
    assert qp.zero_point.tolist() == 255
