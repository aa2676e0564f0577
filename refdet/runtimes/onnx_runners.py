"""ONNX models run by OpenVINO (its ONNX frontend, CPU plugin) and by OpenCV dnn (its ONNX importer), for
``refdet verify-export`` (:func:`refdet.exchange.onnx.verify_onnx` with ``runtimes=(..., "openvino",
"opencv")``).

Each runner takes the serialized model and the input arrays and returns ``{output name: array}``. A
runtime that is not installed raises ``ImportError`` (the report lists it as skipped, naming the
extra); a runtime that cannot load or run the model (an operator it does not implement, a shape it
cannot infer) raises :class:`RuntimeCannotRun`, which the report lists as skipped with the runtime's
own message instead of counting it as a disagreement.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RuntimeCannotRun", "RUNNERS", "run_openvino", "run_opencv"]


class RuntimeCannotRun(ValueError):
    """The runtime refused the model (load or inference failure), as opposed to computing other numbers."""


def _check_args(model_bytes, feeds, names):
    """The runners' arguments: bytes, a dict of name -> array, a list of output names."""
    if not isinstance(model_bytes, (bytes, bytearray)):
        raise TypeError(f"`model_bytes` must be the serialized ONNX model (bytes); got {type(model_bytes).__name__}")
    if not isinstance(feeds, dict) or not all(isinstance(k, str) for k in feeds):
        raise TypeError(f"`feeds` must be a dict of input name -> array; got {type(feeds).__name__}")
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)) or \
            not all(isinstance(n, str) for n in names):
        raise TypeError(f"`names` must be a list of output names (str); got {names!r}")
    return list(names)


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def run_openvino(model_bytes: bytes, feeds: dict, names) -> dict:
    """``openvino.Core().read_model`` on the ONNX bytes, compiled for "CPU" with f32 inference precision.

    The CPU plugin's default ``INFERENCE_PRECISION_HINT`` is bf16 on CPUs with native bf16 support
    (AVX512-BF16, AMX): a float model then differs from refdet by bf16 rounding (about 1e-2 relative),
    which would be reported as a disagreement of the *settings*, not of the conversion; refdet asks for
    f32, which is what the ONNX model says.
    """
    names = _check_args(model_bytes, feeds, names)
    try:
        import openvino as ov
    except ImportError as exc:
        raise ImportError(f"openvino is not installed: pip install 'refdet[openvino]' ({exc})") from None
    core = ov.Core()
    try:
        model = core.read_model(model=bytes(model_bytes), weights=b"")
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception as exc:
        raise RuntimeCannotRun(f"openvino cannot load the model (`model_bytes`): {_one_line(exc)}") from None
    missing = [p.get_any_name() for p in compiled.inputs if p.get_any_name() not in feeds]
    if missing:
        raise ValueError(f"`feeds` has no array for the model's input {missing[0]!r} (it has {sorted(feeds)})")
    try:
        ports = {}
        for i, port in enumerate(compiled.inputs):
            ports[port] = np.ascontiguousarray(feeds[port.get_any_name()])
        res = compiled(ports)
    except Exception as exc:
        raise RuntimeCannotRun(f"openvino cannot run the model on `feeds`: {_one_line(exc)}") from None
    out = {}
    for port in compiled.outputs:
        for n in port.get_names():
            out[n] = np.asarray(res[port])
    missing = [n for n in names if n not in out]
    if missing:
        raise RuntimeCannotRun(f"`names`: openvino's model has no output named {missing[0]!r} (it has "
                               f"{sorted(out)})")
    return {n: out[n] for n in names}


def run_opencv(model_bytes: bytes, feeds: dict, names) -> dict:
    """``cv2.dnn.readNetFromONNX`` on the ONNX bytes, default backend and target (CPU)."""
    names = _check_args(model_bytes, feeds, names)
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(f"cv2 is not installed: pip install 'refdet[opencv]' ({exc})") from None
    # OpenCV logs its importer's warnings to stderr ("[ WARN:0@...] ... the model cannot be loaded by the DNN
    # engine", after which it falls back to its classic importer): silence them while it runs, so that a
    # refdet command keeps its one-line stderr; a real failure still raises and is reported
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        try:
            net = cv2.dnn.readNetFromONNX(np.frombuffer(bytes(model_bytes), np.uint8))
        except Exception as exc:
            raise RuntimeCannotRun(f"opencv cannot load the model (`model_bytes`): {_one_line(exc)}") from None
        try:
            for k, v in feeds.items():
                net.setInput(np.ascontiguousarray(v), k)
            res = net.forward(list(names))
        except Exception as exc:
            raise RuntimeCannotRun(f"opencv cannot run the model on `feeds` for the outputs `names`: "
                                   f"{_one_line(exc)}") from None
    finally:
        if log is not None:
            log.setLogLevel(old)
    return {n: np.asarray(r) for n, r in zip(names, res)}


#: runtime name (as in verify_onnx's ``runtimes``) -> runner
RUNNERS = {"openvino": run_openvino, "opencv": run_opencv}
