"""ONNX operators on a detector's path: refdet.onnx_ops.resize and conv_transpose against onnxruntime
(one CPU thread, graph optimisations off), and the transposed-convolution layer pair against torch.

Shapes are an FPN-sized map: Resize 1 x 256 x 50 x 50 -> 100 x 100 (linear, half_pixel; and cubic on
64 channels), ConvTranspose 256 -> 256, kernel 2, stride 2 on 1 x 256 x 25 x 25 (Mask R-CNN's mask-head
upsampler). There is no target ratio: refdet reproduces onnxruntime's float32 order of operations
(which costs vectorisation), the numbers say what that costs.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none


def _ort():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from tests._onnx_ops_runtime import _session, make_model
    return _session, make_model


def _resize_setup(mode, channels):
    def setup():
        rng = np.random.default_rng(0)
        s = {"x": rng.standard_normal((1, channels, 50, 50)).astype(np.float32),
             "sizes": np.array([1, channels, 100, 100], np.int64)}
        ort = _ort()
        if ort is not None:
            from onnx import TensorProto
            session, make_model = ort
            m = make_model("Resize", [("x", s["x"], False), ("roi", None, True), ("scales", None, True),
                                      ("sizes", s["sizes"], True)], [("y", TensorProto.FLOAT)],
                           attrs={"mode": mode}, opset=19)
            s["sess"] = session(m)
        return s
    return setup


def _resize_refdet(mode):
    import refdet.onnx_ops as O

    def run(s):
        return O.resize(s["x"], sizes=s["sizes"], mode=mode)
    return run


def _ort_run(s):
    return s["sess"].run(None, {"x": s["x"]})


def _ct_setup():
    rng = np.random.default_rng(0)
    s = {"x": rng.standard_normal((1, 256, 25, 25)).astype(np.float32),
         "w": (rng.standard_normal((256, 256, 2, 2)) * 0.05).astype(np.float32),
         "b": rng.standard_normal(256).astype(np.float32)}
    s["dy"] = rng.standard_normal((1, 256, 50, 50)).astype(np.float32)
    ort = _ort()
    if ort is not None:
        from onnx import TensorProto
        session, make_model = ort
        m = make_model("ConvTranspose", [("x", s["x"], False), ("w", s["w"], True), ("b", s["b"], True)],
                       [("y", TensorProto.FLOAT)], attrs={"strides": [2, 2]}, opset=22)
        s["sess"] = session(m)
    torch = torch_or_none()
    if torch is not None:
        s["tx"] = torch.tensor(s["x"], requires_grad=True)
        s["tw"] = torch.tensor(s["w"], requires_grad=True)
        s["tb"] = torch.tensor(s["b"], requires_grad=True)
        s["tdy"] = torch.tensor(s["dy"])
    return s


def _ct_refdet(s):
    import refdet.onnx_ops as O
    return O.conv_transpose(s["x"], s["w"], s["b"], strides=[2, 2])


def _ct_pair(s):
    import refdet.onnx_ops as O
    y, cache = O.conv_transpose2d_forward(s["x"], s["w"], s["b"], stride=2)
    return O.conv_transpose2d_backward(s["dy"], cache)


def _ct_torch_pair(s):
    import torch
    s["tx"].grad = s["tw"].grad = s["tb"].grad = None
    y = torch.nn.functional.conv_transpose2d(s["tx"], s["tw"], s["tb"], stride=2)
    y.backward(s["tdy"])
    return s["tx"].grad


_have_ort = _ort() is not None
_have_torch = torch_or_none() is not None

BENCHMARKS = [
    Bench("Resize linear 1x256x50x50 -> 100x100 float32", _resize_setup("linear", 256), _resize_refdet("linear"),
          other=_ort_run if _have_ort else None, other_name="onnxruntime Resize (1 thread)", repeat=5),
    Bench("Resize cubic 1x64x50x50 -> 100x100 float32", _resize_setup("cubic", 64), _resize_refdet("cubic"),
          other=_ort_run if _have_ort else None, other_name="onnxruntime Resize (1 thread)", repeat=5),
    Bench("ConvTranspose 256->256 k2 s2 1x256x25x25 float32", _ct_setup, _ct_refdet,
          other=_ort_run if _have_ort else None, other_name="onnxruntime ConvTranspose (1 thread)", repeat=5),
    Bench("conv_transpose2d fwd+bwd 256->256 k2 s2 1x256x25x25 float32", _ct_setup, _ct_pair,
          other=_ct_torch_pair if _have_torch else None, other_name="torch conv_transpose2d + autograd", repeat=5),
]
