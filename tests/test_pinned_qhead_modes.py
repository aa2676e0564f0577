"""Pins of ``run_quantized_head``'s ``mode`` values (issue 19 item 2, mutation/convention_coverage.md):
each runtime's requantization rounding, on a hand-built head whose products ``acc * M`` sit exactly on
ties, where the five runtimes give five different answers.

The head: one input channel, two output channels, a 3 x 3 kernel that is 1 at its centre (so the
accumulator is the quantized input itself), input scale 1 and zero point 0 (integer features quantize
exactly under either rounding), output zero point 1 (odd: onnx.reference adds it before rounding).
Channel 0: M = 0.5 (float32, as the ONNX runtimes hold it), 0.5 + 2**-40 (double, TFLite's
``multiplier_double``; float_rne uses it as given), Q31 (2**30, shift 0). Channel 1: M = 0.25,
0.25 + 2**-40, Q31 (2**30, shift -1). Accumulators 1, -1, 3, -3, 5, -5.
"""
import numpy as np
import pytest

from refdet.quant import head as QH

F = np.float32
ACC = [1, -1, 3, -3, 5, -5]

# channel 0: acc * M = 0.5, -0.5, 1.5, -1.5, 2.5, -2.5 (+ 1 zero point)
#   onnxruntime   rint(float32(acc) * 0.5f) + 1           0, -0, 2, -2, 2, -2        -> 1, 1, 3, -1, 3, -1
#   onnx_reference np.round(acc * 0.5 + 1)                1.5, 0.5, 2.5, -0.5, 3.5, -1.5 -> 2, 0, 2, 0, 4, -2
#   tflite        SRDHM(acc, 2**30): (ab + nudge) / 2**31, nudge 2**30 (ab >= 0) or 1 - 2**30, truncated:
#                 1, 0, 2, -1, 3, -2 (no shift)           -> 2, 1, 3, 0, 4, -1
#   tflite_single (acc * 2**30 + 2**30) >> 31 = floor((acc + 1) / 2)                  -> 2, 1, 3, 0, 4, -1
#   float_rne     rint(acc * (0.5 + 2**-40)): the ties tip away from zero             -> 2, 0, 3, -1, 4, -2
# channel 1: acc * M = 0.25, -0.25, 0.75, -0.75, 1.25, -1.25
#   onnxruntime   rint: 0, 0, 1, -1, 1, -1                                            -> 1, 1, 2, 0, 2, 0
#   onnx_reference round(p + 1): 1.25, 0.75, 1.75, 0.25, 2.25, -0.25                  -> 1, 1, 2, 0, 2, 0
#   tflite        SRDHM: 1, 0, 2, -1, 3, -2; RoundingDivideByPOT(., 1), half away: 1, 0, 1, -1, 2, -1
#                                                                                     -> 2, 1, 2, 0, 3, 0
#   tflite_single floor(acc / 4 + 1 / 2): 0, 0, 1, -1, 1, -1                          -> 1, 1, 2, 0, 2, 0
#   float_rne     rint(acc * (0.25 + 2**-40)): 0, 0, 1, -1, 1, -1                     -> 1, 1, 2, 0, 2, 0
WANT = {
    "onnxruntime": [[1, 1, 3, -1, 3, -1], [1, 1, 2, 0, 2, 0]],
    "onnx_reference": [[2, 0, 2, 0, 4, -2], [1, 1, 2, 0, 2, 0]],
    "tflite": [[2, 1, 3, 0, 4, -1], [2, 1, 2, 0, 3, 0]],
    "tflite_single": [[2, 1, 3, 0, 4, -1], [1, 1, 2, 0, 2, 0]],
    "float_rne": [[2, 0, 3, -1, 4, -2], [1, 1, 2, 0, 2, 0]],
}


def _layer(name):
    w = np.zeros((2, 1, 3, 3), np.int8)
    w[:, 0, 1, 1] = 1
    return QH.QuantizedConv(
        name=name, weight=w, w_scale=np.array([1.0, 0.5], F), bias=np.zeros(2, np.int32),
        bias_scale=np.array([1.0, 0.5], F), x_scale=F(1), x_zero_point=0, y_scale=F(2), y_zero_point=1,
        relu=False, qmin=-128, qmax=127, multiplier=np.array([0.5, 0.25], F),
        multiplier_double=np.array([0.5 + 2 ** -40, 0.25 + 2 ** -40]),
        q31=np.array([2 ** 30, 2 ** 30], np.int64), shift=np.array([0, -1], np.int64))


def _head():
    return QH.QuantizedHead(scheme="onnx", activation_dtype="int8", input_scale=F(1), input_zero_point=0,
                            cls_layers=(_layer("classification_head.cls_logits"),),
                            box_layers=(_layer("regression_head.bbox_reg"),), num_anchors=1, num_classes=2,
                            observer="minmax")


X = np.array(ACC, F).reshape(1, 1, 1, 6)


def test_the_five_answers_differ_pairwise():
    vals = list(WANT.values())
    assert all(vals[i] != vals[j] for i in range(5) for j in range(i + 1, 5))


@pytest.mark.parametrize("mode", list(WANT))
def test_each_mode_rounds_the_ties_as_its_runtime(mode):
    out = QH.run_quantized_head(_head(), X, mode=mode)
    for q, f in ((out.cls_q, out.cls_logits), (out.bbox_q, out.bbox_deltas)):
        assert q[0, :, 0].tolist() == WANT[mode]
        # dequantized: (q - 1) * 2 in float32
        np.testing.assert_array_equal(f, (q.astype(F) - F(1)) * F(2))


@pytest.mark.parametrize("conv, mode", [("onnx", "onnxruntime"), ("tf", "tflite")])
def test_the_convention_picks_the_mode(conv, mode):
    out = QH.run_quantized_head(_head(), X, convention=conv)
    assert out.cls_q[0, :, 0].tolist() == WANT[mode]


def _qlinearconv_model():
    from onnx import TensorProto, helper

    w = _layer("l").weight
    inits = [helper.make_tensor("xs", TensorProto.FLOAT, [], [1.0]), helper.make_tensor("xz", TensorProto.INT8, [], [0]),
             helper.make_tensor("w", TensorProto.INT8, list(w.shape), w.ravel().tolist()),
             helper.make_tensor("ws", TensorProto.FLOAT, [2], [1.0, 0.5]),
             helper.make_tensor("wz", TensorProto.INT8, [2], [0, 0]),
             helper.make_tensor("ys", TensorProto.FLOAT, [], [2.0]), helper.make_tensor("yz", TensorProto.INT8, [], [1]),
             helper.make_tensor("b", TensorProto.INT32, [2], [0, 0])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                              pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 2, 1, 6])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_operatorsetid("", 19)])
    m.ir_version = 9
    return m


def test_onnxruntime_and_onnx_reference_goldens_are_the_runtimes():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx.reference import ReferenceEvaluator

    m = _qlinearconv_model()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": X})[0][0, :, 0].tolist() == WANT["onnxruntime"]
    assert ReferenceEvaluator(m).run(None, {"x": X})[0][0, :, 0].tolist() == WANT["onnx_reference"]
