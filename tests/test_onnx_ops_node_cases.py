"""ONNX's own node test cases (``onnx.backend.test.case.node``) for every operator refdet.onnx_ops and
refdet.quant.onnx_qdq implement, run through refdet with the node's attributes, in both runtimes.

The cases are collected with ``onnx.backend.test.loader.load_model_tests(kind="node")`` (the onnx wheel
ships the generators, not the ``data/node`` folders); every one-node model whose op_type is one of
ours is a case. Outputs are compared exactly when they are integers or bit codes (TopK indices,
QuantizeLinear in every type, packed types compared as values) and, when they are floats, within
``2e-6 * max(1, max|expected|)`` (the expected data are computed in float64 by the generators; both
runtimes round in float32, and for cubic Resize both round the Keys coefficients to float32 -- the
ReferenceEvaluator hands ``cubic_coeff_a`` to ``_cubic_coeffs`` as a ``np.float32`` while the case
generator passes a Python float -- which moves the cubic cases by up to 7e-7 of their range).

Two cases are *documented differences*, not failures: onnxruntime itself does not reproduce them
(``test_resize_downsample_scales_{linear,cubic}_align_corners``: the generator, like onnx.reference,
divides by the unrounded output width ``scale * n - 1`` where onnxruntime divides by ``L - 1``);
refdet's onnxruntime runtime is checked against onnxruntime's actual output there. The float4e2m1
cases are refused by the onnxruntime runtime (no CPU kernel), as onnxruntime refuses them.
"""
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import helper, numpy_helper  # noqa: E402

import refdet.onnx_ops as O  # noqa: E402
from refdet.quant import dequantize_linear, quantize_linear  # noqa: E402
from refdet.quant import types as T  # noqa: E402

OPS = ("Softmax", "LogSoftmax", "LeakyRelu", "ConvTranspose", "Resize", "TopK", "QuantizeLinear", "DequantizeLinear")
RUNTIMES = ("onnxruntime", "onnx_reference")

#: (case, runtime) -> why refdet's answer differs from the case's expected output (and what it equals instead)
KNOWN_DIFFERENCES = {
    ("test_resize_downsample_scales_linear_align_corners", "onnxruntime"):
        "onnxruntime divides by L - 1 = 1, the generator by scale * n - 1 = 1.4 (refdet equals onnxruntime)",
    ("test_resize_downsample_scales_cubic_align_corners", "onnxruntime"):
        "onnxruntime divides by L - 1 = 2, the generator by scale * n - 1 = 2.2 (refdet equals onnxruntime)",
}
#: (case, runtime) -> the runtime has no kernel: refdet refuses with a ValueError naming it
REFUSED = {
    ("test_quantizelinear_float4e2m1", "onnxruntime"): r"float4e2m1: onnxruntime 1\.32 has no CPU QuantizeLinear",
    ("test_dequantizelinear_float4e2m1", "onnxruntime"): r"float4e2m1: onnxruntime 1\.32 has no CPU DequantizeLinear",
}


def _collect():
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    return [c for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS]


CASES = _collect()


def _value(v):
    """A case's input/output as (array, element type or None): ml_dtypes types become refdet's representation."""
    if isinstance(v, onnx.TensorProto):
        v = numpy_helper.to_array(v)
    v = np.asarray(v)
    name = T._ALIASES.get(v.dtype.name, v.dtype.name)
    if name in T.ELEMENT_TYPES and (T.ELEMENT_TYPES[name].kind == "float" or name in T.PACKED_TYPES):
        return T.from_ml_dtypes(v)
    return v, None


def run_case(case, runtime):
    """refdet's outputs for one node case: a list of arrays (bit codes / values for quantized types)."""
    node = case.model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    opset = case.model.opset_import[0].version
    ins = iter([_value(v) for v in case.data_sets[0][0]])
    args = [next(ins) if name else (None, None) for name in node.input]
    op = node.op_type
    if op in ("Softmax", "LogSoftmax"):
        f = O.softmax if op == "Softmax" else O.log_softmax
        return [f(args[0][0], axis=attrs.get("axis"), opset=opset, runtime=runtime)]
    if op == "LeakyRelu":
        return [O.leaky_relu(args[0][0], alpha=attrs.get("alpha", 0.01))]
    if op == "ConvTranspose":
        b = args[2][0] if len(args) > 2 else None
        return [O.conv_transpose(args[0][0], args[1][0], b, runtime=runtime, **attrs)]
    if op == "Resize":
        a = [v for v, _ in args] + [None] * (4 - len(args))
        return [O.resize(a[0], a[1], a[2], a[3], runtime=runtime, **attrs)]
    if op == "TopK":
        return list(O.topk(args[0][0], args[1][0], axis=attrs.get("axis", -1), largest=bool(attrs.get("largest", 1)),
                           sorted=bool(attrs.get("sorted", 1))))
    kw = dict(axis=attrs.get("axis", 1), block_size=attrs.get("block_size", 0), opset=25)
    zp = None
    if len(args) > 2:
        zv, zt = args[2]
        zp = zv if zt is None or T.ELEMENT_TYPES[zt].kind == "int" else T.decode_float(zv, zt)
    if op == "QuantizeLinear":
        if len(args) > 2 and args[2][1] is not None:
            kw["output_dtype"] = args[2][1]
        if "output_dtype" in attrs:
            kw["output_dtype"] = attrs["output_dtype"]
        return [quantize_linear(args[0][0], args[1][0], zp, saturate=bool(attrs.get("saturate", 1)), runtime=runtime,
                                **kw)]
    return [dequantize_linear(args[0][0], args[1][0], zp, dtype=args[0][1], runtime=runtime, **kw)]


def _expected(case):
    return [_value(o)[0] for o in case.data_sets[0][1]]


def _close(got, want):
    if got.shape != want.shape:
        return False
    if want.dtype.kind in "iub" or got.dtype.kind in "iub":
        return np.array_equal(got, want)
    return _float_ok(got, want)


def _float_ok(got, want):
    g, w = got.astype(np.float64), want.astype(np.float64)
    tol = 2e-6 * max(1.0, float(np.nanmax(np.abs(w))) if w.size else 1.0)
    return bool(np.all((np.abs(g - w) <= tol) | (np.isnan(g) & np.isnan(w))))


def test_the_cases_cover_every_operator():
    ops = {c.model.graph.node[0].op_type for c in CASES}
    assert ops == set(OPS), ops
    # onnx 1.23: 101 one-node cases of these eight operators (Resize 39, Softmax 7, LogSoftmax 7, LeakyRelu 3,
    # ConvTranspose 11, TopK 7, QuantizeLinear 14, DequantizeLinear 13)
    assert len(CASES) >= 101


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_case(case, runtime):
    key = (case.name, runtime)
    if key in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[key]):
            run_case(case, runtime)
        return
    got = run_case(case, runtime)
    want = _expected(case)
    assert len(got) == len(want)
    agree = all(_close(g, w) for g, w in zip(got, want))
    if key in KNOWN_DIFFERENCES:
        assert not agree, f"{case.name}: documented as differing ({KNOWN_DIFFERENCES[key]}) but agrees"
        pytest.importorskip("onnxruntime")
        import onnxruntime as ort
        sess = ort.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
        ort_out = sess.run(None, {i.name: v for i, v in zip(sess.get_inputs(), case.data_sets[0][0])})
        for g, o in zip(got, ort_out):
            np.testing.assert_array_equal(g, o)            # bit-exact with what onnxruntime computes
        return
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype.kind in "iub":
            np.testing.assert_array_equal(g, w)
        else:
            assert _float_ok(g, w), f"max |diff| {np.max(np.abs(g.astype(np.float64) - w)):.3g}" 
