"""Pins of refdet.quant's convention values that no other test resolved (mutation/convention_coverage.md).

Golden values on exact halves, where the three roundings part: v = -2.5, -1.5, 0.5, 2.5 gives
half_even -2, -2, 0, 2; half_away -3, -2, 1, 3; half_up (floor(v + 0.5), TF) -2, -1, 1, 3.
"""
import numpy as np
import pytest

from refdet.quant.affine import qparams_from_minmax, quantize_bias, quantize_weights
from refdet.quant.fake_quant import fake_quant_forward

HALVES = np.array([-2.5, -1.5, 0.5, 2.5])
ROUNDED = {"half_even": [-2, -2, 0, 2], "half_away": [-3, -2, 1, 3], "half_up": [-2, -1, 1, 3]}


@pytest.mark.parametrize("rounding", sorted(ROUNDED))
def test_quantize_bias_rounding_on_halves(rounding):
    # bias scale 1 * 1 = 1: q = round(b / 1)
    got = quantize_bias(HALVES, 1.0, np.ones(4, np.float32), convention="onnx", rounding=rounding)
    assert got.q.dtype == np.int32
    assert got.q.tolist() == ROUNDED[rounding]


@pytest.mark.parametrize("rounding", sorted(ROUNDED))
def test_quantize_weights_rounding_on_halves(rounding):
    # onnx: symmetric int8 in [-127, 127], scale = 2 max|w| / 254 = 127 / 127 = 1 exactly, zero point 0
    w = np.array([127.0, *HALVES], np.float32)
    got = quantize_weights(w, axis=None, convention="onnx", rounding=rounding)
    assert float(got.scale) == 1.0 and int(got.zero_point) == 0
    assert got.q.tolist() == [127, *ROUNDED[rounding]]


def test_fake_quant_tf_rounds_half_up():
    # TF FakeQuantWithMinMaxVars: floor(x / s + 0.5) with s = 1, z = 0; y = q * s
    y, _ = fake_quant_forward(HALVES.astype(np.float32), 1.0, 0, qmin=-128, qmax=127, convention="tf")
    assert y.tolist() == ROUNDED["half_up"]
    y, _ = fake_quant_forward(HALVES.astype(np.float32), 1.0, 0, qmin=-128, qmax=127, convention="torchvision")
    assert y.tolist() == ROUNDED["half_even"]


@pytest.mark.parametrize("narrow, scale, zp, qmin", [(True, 2 / 254, 0, -127), (False, 2 / 255, -1, -128),
                                                      ("symmetric", 2 / 255, -1, -128)])
def test_qparams_narrow_range(narrow, scale, zp, qmin):
    # affine (symmetric=False) int8 range [-1, 1]: narrow_range=True drops -128: scale = 2 / (127 + 127);
    # False, and "symmetric" on an affine range, keep it: 2 / 255. torch's zero point
    # qmin - nearbyint(-1 / scale) in float32: float32(2/254) = 0.0078740157..., -1 / s = -126.99999...
    # -> -127: z = -127 + 127 = 0; float32(2/255) = 0.0078431377... (rounded up), -1 / s = -127.4999...
    # -> -127: z = -128 + 127 = -1.
    qp = qparams_from_minmax(-1.0, 1.0, dtype="int8", narrow_range=narrow, convention="torchvision")
    np.testing.assert_allclose(float(qp.scale), scale, rtol=1e-7)
    assert int(qp.zero_point) == zp
    # the range reached: -1 quantizes to qmin
    from refdet.quant.affine import quantize

    assert int(quantize(np.float32(-1.0), qp.scale, qp.zero_point, dtype="int8", qmin=qmin)) == qmin


@pytest.mark.parametrize("rounding", sorted(ROUNDED))
def test_fake_quant_rounding_on_halves(rounding):
    y, _ = fake_quant_forward(HALVES.astype(np.float32), 1.0, 0, qmin=-128, qmax=127, rounding=rounding)
    assert y.tolist() == ROUNDED[rounding]


@pytest.mark.parametrize("op, q", [("div", -111), ("mul_inv", -112)])
def test_fake_quant_op_reciprocal_or_division(op, q):
    # float32 x = -11.15, s = 0.1: x / s = -111.49999 (rounds to -111); x * float32(1 / s) = -111.5
    # exactly (half to even: -112). y = q * s in float32.
    x = np.array([-11.15], np.float32)
    s = np.float32(0.1)
    assert x / s != x * (np.float32(1) / s)
    y, _ = fake_quant_forward(x, 0.1, 0, qmin=-128, qmax=127, op=op)
    assert y.dtype == np.float32 and y.tolist() == [float(np.float32(q) * s)]



@pytest.mark.parametrize("op, q", [("div", 1), ("mul_inv", 0)])
def test_quantize_bias_division_or_reciprocal(op, q):
    # bias scale float32(1 * float32(0.1)) = 0.100000001490116...; b = 0.05000000074505807 (float64):
    # b / s = 0.5000000000000001 -> rint 1 (onnxruntime divides); b * (1 / s) = 0.5 -> rint 0 (TF's
    # reciprocal, half even here)
    b = np.array([0.05000000074505807])
    got = quantize_bias(b, 1.0, np.array([0.1], np.float32), convention="onnx", op=op)
    assert got.q.tolist() == [q]


def test_remove_small_boxes_strict():
    # a 0.5 x 0.5 box at min_size 0.5: torchvision keeps w >= min_size; detectron2's nonempty
    # (w > threshold) drops it
    from refdet.boxes import remove_small_boxes

    b = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 2.0, 2.0]])
    assert remove_small_boxes(b, 0.5).tolist() == [0, 1]
    assert remove_small_boxes(b, 0.5, convention="detectron2").tolist() == [1]
    assert remove_small_boxes(b, 0.5, convention="mmdet").tolist() == [1]
    assert remove_small_boxes(b, 0.5, strict=True).tolist() == [1]


@pytest.mark.parametrize("rule, wide, narrow", [("torch", 0, 1), ("onnx", 0, 0), ("tf", -1, 1)])
def test_zero_point_rules_on_a_half(rule, wide, narrow):
    # int8 [-128, 127], range [-127.5, 127.5]: scale 255 / 255 = 1, rmin / s = -127.5.
    #   torch qmin - rint(rmin / s) = -128 + 128 = 0; onnx rint(qmin - rmin / s) = rint(-0.5) = 0;
    #   tf std::round(-0.5) = -1 (half away from zero).
    # narrow [-127, 127], range [-127.5, 126.5]: scale 254 / 254 = 1; qmin - rmin / s = 0.5:
    #   torch -127 + 128 = 1; onnx rint(0.5) = 0; tf round(0.5) = 1.
    qp = qparams_from_minmax(-127.5, 127.5, dtype="int8", zero_point_rule=rule, convention="torchvision")
    assert float(qp.scale) == 1.0 and int(qp.zero_point) == wide
    qp = qparams_from_minmax(-127.5, 126.5, dtype="int8", zero_point_rule=rule, narrow_range=True,
                             convention="torchvision")
    assert float(qp.scale) == 1.0 and int(qp.zero_point) == narrow
