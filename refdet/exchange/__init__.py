"""Exchange formats: ONNX and NNEF export of refdet heads/FPN/post-processing, reading them back, and
checking runtimes (onnxruntime, onnx.reference, nnef.Session) against refdet.

Optional: ``onnx``, ``onnxruntime`` and ``nnef`` are imported only when a function needs them, so
``import refdet`` and ``import refdet.exchange`` work without them. The NNEF reader and writer of
``.dat`` files and the ``.npz`` parameter reader are refdet's own (NumPy only).
"""
import importlib as _importlib

__all__ = ["export_onnx", "load_onnx_params", "load_quantized_head", "verify_onnx", "export_nnef", "load_nnef",
           "verify_nnef",
           "read_nnef_tensor", "write_nnef_tensor", "load_params_npz"]

_WHERE = {"export_onnx": "onnx", "load_onnx_params": "onnx", "load_quantized_head": "onnx", "verify_onnx": "onnx",
          "export_nnef": "nnef", "load_nnef": "nnef", "verify_nnef": "nnef",
          "read_nnef_tensor": "nnef", "write_nnef_tensor": "nnef", "load_params_npz": "files"}


def __getattr__(name):
    if name in _WHERE:
        return getattr(_importlib.import_module(f"refdet.exchange.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'refdet.exchange' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
