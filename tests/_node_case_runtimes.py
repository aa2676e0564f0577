"""Run one ONNX node test case (``onnx.backend.test`` one-node model) in OpenVINO or OpenCV dnn.

Used by ``tests/test_onnx_node_cases_runtimes.py``. ``outcome(case, runtime, expected)`` returns
``(status, detail)``:

* ``"agree"``: the runtime's outputs equal the case's expected outputs (integers and bit codes
  exactly, floats within ``2e-6 * max(1, max|expected|)``, as in ``tests/test_onnx_ops_node_cases.py``);
* ``"differs"``: it ran, and an output differs (detail: which output and how);
* ``"load"``: the runtime refuses the model (its ONNX frontend / importer raised);
* ``"run"``: it loaded but refused to run, or its Python API cannot feed the inputs (OpenCV's binding
  has no float8 / int4 arrays).

OpenVINO: ``Core().read_model(bytes)`` (the ONNX frontend), compiled for "CPU" with f32 inference
precision; float8 / 4-bit inputs are written as raw bytes into ``ov.Tensor`` of the matching element
type (4-bit values packed two per byte, the first in the low nibble, as ONNX packs them) and outputs of
those types read back the same way. OpenCV: ``cv2.dnn.readNetFromONNX`` on the serialized model.
"""
import numpy as np

_OV_TYPES = {"float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2", "int4": "i4", "uint4": "u4",
             "float4_e2m1fn": "f4e2m1"}
_NIBBLE = ("i4", "u4", "f4e2m1")


def _inputs(case):
    import onnx
    from onnx import numpy_helper

    out = []
    for v in case.data_sets[0][0]:
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        out.append(np.asarray(v))
    return out


def _ov_feed(ov, a):
    t = _OV_TYPES.get(a.dtype.name)
    if t is None:                                        # (an ov.Tensor of a 0-d array would have shape (1,))
        tensor = ov.Tensor(ov.Type(a.dtype), ov.Shape(list(a.shape)))
        tensor.data[...] = a
        return tensor
    tensor = ov.Tensor(getattr(ov.Type, t), ov.Shape(list(a.shape)))
    codes = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
    if t in _NIBBLE:
        codes = codes & 0xF
        if codes.size % 2:
            codes = np.append(codes, np.uint8(0))
        codes = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)   # first element in the low nibble
    tensor.data.view(np.uint8)[...] = codes.reshape(tensor.data.shape)
    return tensor


def _ov_read(tensor):
    """An output tensor in refdet's representation (int4 as int8, minifloats as uint8 bit codes)."""
    name = tensor.element_type.get_type_name()
    shape = tuple(tensor.shape)
    if name not in _OV_TYPES.values():
        return np.array(tensor.data, copy=True)
    raw = np.asarray(tensor.data).view(np.uint8).reshape(-1)
    if name in _NIBBLE:
        codes = np.empty(raw.size * 2, np.uint8)
        codes[0::2], codes[1::2] = raw & 0xF, raw >> 4
        codes = codes[:int(np.prod(shape, dtype=np.int64))]
        if name == "i4":
            return np.where(codes > 7, codes.astype(np.int16) - 16, codes).astype(np.int8).reshape(shape)
        return codes.reshape(shape)
    return raw.copy().reshape(shape)


def run_openvino(case):
    """``(status, outputs or message)`` with status "ok", "load" or "run"."""
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(case.model.SerializeToString(), b"")
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception as exc:                             # the frontend's refusal, reported as data
        return "load", _first_line(exc)
    try:
        req = compiled.create_infer_request()
        names = {n for port in compiled.inputs for n in port.get_names()}
        for inp, a in zip(case.model.graph.input, _inputs(case)):
            if inp.name in names:                        # the frontend may fold an input it treats as constant
                req.set_tensor(inp.name, _ov_feed(ov, a))
        req.infer()
        return "ok", [_ov_read(req.get_output_tensor(i)) for i in range(len(compiled.outputs))]
    except Exception as exc:
        return "run", _first_line(exc)


def run_opencv(case):
    """``(status, outputs or message)`` with status "ok", "load" or "run"."""
    import cv2

    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(case.model.SerializeToString(), np.uint8))
    except Exception as exc:
        return "load", _first_line(exc)
    ins = _inputs(case)
    if any(a.dtype.name in _OV_TYPES for a in ins):
        return "run", "cv2's Python binding cannot feed " + ", ".join(sorted({a.dtype.name for a in ins
                                                                            if a.dtype.name in _OV_TYPES}))
    try:
        for i, a in zip(case.model.graph.input, ins):
            net.setInput(np.ascontiguousarray(a), i.name)
        outs = net.forward([o.name for o in case.model.graph.output])
        return "ok", [np.asarray(o) for o in outs]
    except Exception as exc:
        return "run", _first_line(exc)


def _first_line(exc):
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if "error:" in ln or "Conversion" in ln or "Unsupported" in ln
              or "not supported" in ln.lower()]
    return f"{type(exc).__name__}: {(useful or lines or [''])[-1][:160]}"


def compare(got, want, close):
    """None when ``got`` (runtime outputs) equals ``want`` (expected) by ``close``, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {k}: shape {g.shape}, expected {w.shape}"
        if g.dtype != w.dtype and (g.dtype.kind in "iub" or w.dtype.kind in "iub"):
            g = g.astype(w.dtype) if g.dtype.kind in "iub" and w.dtype.kind in "iub" else g
        if not close(g, w):
            if g.dtype.kind in "iub" and w.dtype.kind in "iub":
                return f"output {k}: {int(np.sum(g != w))} of {w.size} values differ"
            d = np.abs(g.astype(np.float64) - w.astype(np.float64))
            return f"output {k}: max |difference| {float(np.nanmax(d)) if d.size else 0.0:.3g}"
    return None


def outcome(case, runtime, want, close):
    """``(status, detail)``: "agree", "differs", "load" or "run" (see the module docstring)."""
    status, res = (run_openvino if runtime == "openvino" else run_opencv)(case)
    if status != "ok":
        return status, res
    diff = compare(res, want, close)
    return ("agree", None) if diff is None else ("differs", diff)
