"""Pin of ``quantize_weights``' ``op='div'`` (onnxruntime's quantizer; issue 19 item 2,
mutation/convention_coverage.md): ``rint(w / s)`` against TFLite's ``w * (1 / s)``, which rounds the
reciprocal first. They part where ``w / s`` is exactly a half.
"""
import numpy as np
import pytest

from refdet.quant import quantize_weights

F = np.float32
# one channel [1.0, v]: symmetric int8 [-127, 127], s = float32(1 / 127) = 0.007874015718698502.
# v = float32(5.5 * s): v / s = 5.5 exactly in float32 (a tie: RNE gives 6); v * float32(1 / s)
# = 5.4999995 (5)
W = np.array([[1.0, 0.04330708459019661]], F)


@pytest.mark.parametrize("kw, q", [({}, 6), ({"op": "div"}, 6), ({"op": "mul_inv"}, 5)])
def test_onnx_divides_by_the_scale(kw, q):
    r = quantize_weights(W, convention="onnx", **kw)
    assert float(np.asarray(r.scale).ravel()[0]) == float(F(1) / F(127))
    assert r.q.tolist() == [[127, q]]


def test_tf_multiplies_by_the_reciprocal():
    # TFLite SymmetricPerChannelQuantizeValues: TfLiteRound(w * scaling_factor_inv): 5.4999995 -> 5
    assert quantize_weights(W, convention="tf").q.tolist() == [[127, 5]]
    assert quantize_weights(W, convention="tf", op="div").q.tolist() == [[127, 6]]   # half away from 5.5


def test_onnxruntime_quantizer_rounds_the_quotient():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_nparray

    s = np.array(F(1) / F(127), F)
    assert quantize_nparray(TensorProto.INT8, W[0], s, np.array(0, np.int8)).tolist() == [127, 6]
