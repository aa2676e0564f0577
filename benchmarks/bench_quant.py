"""Quantization benchmarks: the exact integer convolution against refdet's float convolution.

Target (issue 6): ``conv2d_int`` on a 3x3, 256 -> 256 channel layer at 50 x 50 (uint8 activations with
a zero point, per-channel int8 weights, padding 1: a RetinaNet head conv) within 3x the time of
refdet's float32 ``conv2d_forward`` on the same shapes, both on 1 thread, both through refdet's one
im2col (``refdet._conv.Im2col``). ``conv2d_int`` stays exact by summing K-chunks of at most
``(2**24 - 1) // (max|x - x_zp| * max|w|)`` products (1032 here) in float32 BLAS (every partial sum is
an integer below 2**24) and the chunks in float64. The floor is float32 GEMM throughput for the
2 * N * F * C * 9 flops.

A second line times the full ``qlinear_conv`` (accumulate + bias + onnxruntime-mode requantization),
against onnxruntime's own QLinearConv when it is installed (informational, no target).
"""
import numpy as np

from benchmarks._harness import Bench
from refdet import quant

_C, _F, _H, _W = 256, 256, 50, 50


def _setup():
    rng = np.random.default_rng(0)
    xq = rng.integers(0, 256, size=(1, _C, _H, _W)).astype(np.uint8)
    wq = rng.integers(-127, 128, size=(_F, _C, 3, 3)).astype(np.int8)
    state = {"xq": xq, "wq": wq, "x": (xq.astype(np.float32) - 128) * np.float32(0.02),
             "w": wq.astype(np.float32) * np.float32(0.003), "b": np.zeros(_F, np.float32),
             "B": rng.integers(-5000, 5000, size=_F).astype(np.int32),
             "ws": np.full(_F, 0.003, np.float32)}
    try:
        from refdet import layers
        state["layers"] = layers if hasattr(layers, "conv2d_forward") else None
    except ImportError:
        state["layers"] = None
    return state


def _int(s):
    return quant.conv2d_int(s["xq"], s["wq"], x_zero_point=128, padding=1)


def _float(s):
    return s["layers"].conv2d_forward(s["x"], s["w"], s["b"], padding=1)[0]


def _float_or_none():
    try:
        from refdet import layers
        return _float if hasattr(layers, "conv2d_forward") else None
    except ImportError:
        return None


def _flops(s):
    return 2 * _H * _W * _F * _C * 9, np.float32


def _qlinear(s):
    return quant.qlinear_conv(s["xq"], np.float32(0.02), np.uint8(128), s["wq"], s["ws"], np.zeros(_F, np.int8),
                              np.float32(0.05), np.uint8(120), s["B"], padding=1)


def _ort_setup():
    s = _setup()
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        s["sess"] = None
        return s
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in (
        ("xs", np.float32(0.02)), ("xz", np.uint8(128)), ("w", s["wq"]), ("ws", s["ws"]),
        ("wz", np.zeros(_F, np.int8)), ("ys", np.float32(0.05)), ("yz", np.uint8(120)), ("B", s["B"]))]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "B"], ["y"],
                            pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, _C, _H, _W])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, _F, _H, _W])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_operatorsetid("", 19)])
    m.ir_version = 9
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s["sess"] = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s


def _ort(s):
    return s["sess"].run(None, {"x": s["xq"]})[0]


def _ort_or_none():
    try:
        import onnxruntime  # noqa: F401
        return _ort
    except ImportError:
        return None


BENCHMARKS = [
    Bench("conv2d_int 3x3 256->256 50x50 (exact)", _setup, _int, other=_float_or_none(),
          other_name="refdet.layers.conv2d_forward float32", target=3.0, floor_flops=_flops),
    Bench("qlinear_conv 3x3 256->256 50x50 (onnxruntime mode)", _ort_setup, _qlinear, other=_ort_or_none(),
          other_name="onnxruntime QLinearConv (1 thread)", floor_flops=_flops),
]
