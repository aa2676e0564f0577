"""Run one ONNX node in onnxruntime (CPU) and onnx.reference, for the differential tests of
refdet.onnx_ops and refdet.quant.onnx_qdq. Import only after ``pytest.importorskip("onnx")`` /
``("onnxruntime")``.

``run_ort_bytes`` reads an output's raw bytes through ``OrtValue.data_ptr``: onnxruntime's Python API
cannot hand back int4/int2/float8 tensors as NumPy arrays, and the bit patterns are what is compared.
"""
import ctypes

import numpy as np


def make_model(op, inputs, outputs, attrs=None, opset=21):
    """A one-node model. ``inputs``: list of ``(name, array or None, is_constant)`` (None: an omitted
    optional input); constants become initializers. ``outputs``: list of ``(name, TensorProto type)``."""
    from onnx import helper, numpy_helper

    ins, inits, names = [], [], []
    for name, arr, const in inputs:
        if arr is None:
            names.append("")
            continue
        names.append(name)
        if const:
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
        else:
            ins.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, [o for o, _ in outputs], **(attrs or {}))
    outs = [helper.make_tensor_value_info(o, t, None) for o, t in outputs]
    graph = helper.make_graph([node], "g", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_ort(model, feeds):
    """Outputs of onnxruntime as NumPy arrays."""
    return _session(model).run(None, feeds)


def run_ort_bytes(model, feeds):
    """Each output as ``(uint8 array of its raw bytes, shape, type string)``."""
    import onnxruntime as ort

    s = _session(model)
    vals = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()}
    outs = s.run_with_ort_values([o.name for o in s.get_outputs()], vals)
    res = []
    for o in outs:
        n = o.tensor_size_in_bytes()
        raw = np.frombuffer(ctypes.string_at(o.data_ptr(), n), dtype=np.uint8).copy() if n else np.zeros(0, np.uint8)
        res.append((raw, tuple(o.shape()), o.data_type()))
    return res


def run_reference(model, feeds):
    """Outputs of onnx.reference.ReferenceEvaluator."""
    import warnings

    from onnx.reference import ReferenceEvaluator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceEvaluator(model).run(None, feeds)
