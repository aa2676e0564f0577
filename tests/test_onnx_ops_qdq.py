"""Tests of refdet.quant.onnx_qdq: ONNX QuantizeLinear / DequantizeLinear in every element type and
layout, against onnxruntime (its output bytes) and onnx.reference on hypothesis inputs with exact .5
ties, saturation edges, odd lengths for the packed types, and the places where the runtimes differ."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.quant import dequantize_linear, quantize_linear
from refdet.quant import types as T

INT_TYPES = ("int8", "uint8", "int16", "uint16", "int4", "uint4", "int2", "uint2")
FLOAT8 = ("float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz")
_ML = {"float8e4m3fn": "float8_e4m3fn", "float8e4m3fnuz": "float8_e4m3fnuz", "float8e5m2": "float8_e5m2",
       "float8e5m2fnuz": "float8_e5m2fnuz", "float4e2m1": "float4_e2m1fn"}


def test_tv_q1_ties_half_to_even():
    # SPEC TV-Q1 (y_scale = 1): rint(x) half to even, then + zero point, then clip
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 254.5, 255.5, -128.5, 127.5, 1000, -1000], np.float32)
    s = np.float32(1.0)
    np.testing.assert_array_equal(quantize_linear(x, s, np.uint8(128)),
                                  [126, 126, 128, 128, 130, 130, 132, 255, 255, 0, 255, 255, 0])
    np.testing.assert_array_equal(quantize_linear(x, s, np.int8(0)), [-2, -2, 0, 0, 2, 2, 4, 127, 127, -128, 127, 127, -128])
    np.testing.assert_array_equal(quantize_linear(x, s, np.int8(-1)), [-3, -3, -1, -1, 1, 1, 3, 127, 127, -128, 127, 127,
                                                                       -128])
    np.testing.assert_array_equal(quantize_linear(x, s), [0, 0, 0, 0, 2, 2, 4, 254, 255, 0, 128, 255, 0])   # uint8 default
    # int4: -2.5 -> -2, 7.5 -> 8 -> clip 7; uint2: 1.5 -> 2, 2.5 -> 2, 3.5 -> 4 -> 3
    np.testing.assert_array_equal(quantize_linear(np.array([-2.5, 7.5, -8.5], np.float32), s, output_dtype="int4"),
                                  [-2, 7, -8])
    np.testing.assert_array_equal(quantize_linear(np.array([1.5, 2.5, 3.5], np.float32), s, output_dtype="uint2"),
                                  [2, 2, 3])


def test_runtime_differences_nan_and_int32_overflow():
    # onnx.reference casts rint(x / s) to int32 (x86-64: NaN and out-of-range give INT32_MIN), then adds the zero
    # point in int32 (wrapping), then clips; onnxruntime saturates (NaN -> qmin)
    x = np.array([np.nan, np.inf, 1e10, -1e10, 2.0 ** 31 - 128], np.float32)
    np.testing.assert_array_equal(quantize_linear(x, np.float32(1), np.int8(0)), [-128, 127, 127, -128, 127])
    # (2^31 - 128 still fits an int32: clipped to 127 as usual)
    np.testing.assert_array_equal(quantize_linear(x, np.float32(1), np.int8(0), runtime="onnx_reference"),
                                  [-128, -128, -128, -128, 127])
    # INT32_MIN + (-1) wraps to INT32_MAX -> 127; 2^31 - 128 + 128 wraps in uint8's zero-point addition -> 0
    np.testing.assert_array_equal(quantize_linear(x, np.float32(1), np.int8(-1), runtime="onnx_reference"),
                                  [127, 127, 127, 127, 127])
    np.testing.assert_array_equal(quantize_linear(x[4:], np.float32(1), np.uint8(128), runtime="onnx_reference"), [0])


def _onnx():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ml = pytest.importorskip("ml_dtypes")
    from onnx import TensorProto, helper

    import tests._onnx_ops_runtime as R
    return ml, TensorProto, helper, R


def _zp_array(ml, name, values):
    if name in ("int4", "uint4", "int2", "uint2"):
        return np.asarray(values).astype(getattr(ml, name))
    if name in _ML:
        return np.zeros(np.shape(values), getattr(ml, _ML[name]))
    return np.asarray(values).astype(name)


def _layout(draw, shape_hint=None):
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=rank, max_size=rank)))
    kind = draw(st.sampled_from(["tensor", "axis", "blocked"]))
    axis = draw(st.integers(-rank, rank - 1))
    a = axis % rank
    if kind == "tensor":
        return shape, (), axis, 0
    if kind == "axis":
        return shape, (shape[a],), axis, 0
    bs = draw(st.integers(1, max(1, shape[a])))
    sshape = list(shape)
    sshape[a] = -(-shape[a] // bs)
    if int(np.prod(sshape)) == 1:            # a one-element scale is per-tensor (onnxruntime refuses block_size)
        return shape, (), axis, 0
    return shape, tuple(sshape), axis, bs


@st.composite
def qdq_case(draw, names):
    name = draw(st.sampled_from(names))
    shape, sshape, axis, bs = _layout(draw)
    t = T.element_type(name)
    # scales are powers of two so x = (k + 0.5) * s is an exact tie in float32
    e = draw(st.lists(st.integers(-3, 3), min_size=int(np.prod(sshape, dtype=int)),
                      max_size=int(np.prod(sshape, dtype=int))))
    scale = (2.0 ** np.array(e, np.float64)).reshape(sshape).astype(np.float32)
    if t.kind == "int":
        zp = np.array(draw(st.lists(st.integers(int(t.qmin), int(t.qmax)), min_size=scale.size, max_size=scale.size)),
                      np.int64).reshape(sshape)
    else:
        zp = np.zeros(sshape)
    n = int(np.prod(shape))
    ks = draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
    half = draw(st.lists(st.sampled_from([0.0, 0.5, 0.25, -0.5]), min_size=n, max_size=n))
    k = np.array(ks, np.float64).reshape(shape) + np.array(half).reshape(shape)
    # the per-element scale (broadcast of the layout), so that x / s is the drawn tie exactly
    if bs:
        es = np.repeat(scale, bs, axis=axis % len(shape)).take(np.arange(shape[axis % len(shape)]),
                                                               axis=axis % len(shape))
    elif sshape:
        es = scale.reshape([-1 if i == axis % len(shape) else 1 for i in range(len(shape))])
    else:
        es = scale
    x = (k * es).astype(np.float32)
    return name, x, scale, zp, axis, bs


def _ort_q(ml, TensorProto, helper, R, name, x, scale, zp, axis, bs, saturate=1):
    zpa = _zp_array(ml, name, zp)
    tp = helper.np_dtype_to_tensor_dtype(zpa.dtype)
    attrs = {"axis": axis, "saturate": saturate}
    if bs:
        attrs["block_size"] = bs
    m = R.make_model("QuantizeLinear", [("x", x, False), ("s", scale, True), ("z", zpa, True)], [("y", tp)],
                     attrs=attrs, opset=25)
    raw, shape, _ = R.run_ort_bytes(m, {"x": x})[0]
    ref = R.run_reference(m, {"x": x})[0]
    return raw, ref


@given(case=qdq_case(INT_TYPES))
def test_quantize_integer_types_match_both_runtimes(case):
    ml, TensorProto, helper, R = _onnx()
    name, x, scale, zp, axis, bs = case
    raw, ref = _ort_q(ml, TensorProto, helper, R, name, x, scale, zp, axis, bs)
    for rt in ("onnxruntime", "onnx_reference"):
        got = quantize_linear(x, scale, zp, axis=axis, block_size=bs, output_dtype=name, runtime=rt)
        assert got.shape == x.shape
        if name in T.PACKED_TYPES:
            # the packed bytes, padding nibbles included, equal onnxruntime's buffer
            np.testing.assert_array_equal(T.pack(got, name), raw)
            np.testing.assert_array_equal(got, T.from_ml_dtypes(ref)[0])
        else:
            np.testing.assert_array_equal(got, raw.view(got.dtype).reshape(x.shape))
            np.testing.assert_array_equal(got, ref)
            assert got.dtype == ref.dtype


@given(case=qdq_case(FLOAT8), saturate=st.booleans(), big=st.sampled_from([1.0, 300.0, 1e5]))
def test_quantize_float8_matches_both_runtimes(case, saturate, big):
    ml, TensorProto, helper, R = _onnx()
    name, x, scale, zp, axis, bs = case
    x = (x * np.float32(big)).astype(np.float32)                    # reach the saturation edges
    raw, ref = _ort_q(ml, TensorProto, helper, R, name, x, scale, zp, axis, bs, saturate=int(saturate))
    got = quantize_linear(x, scale, None, axis=axis, block_size=bs, output_dtype=name, saturate=saturate)
    np.testing.assert_array_equal(got, raw.reshape(x.shape))
    got = quantize_linear(x, scale, None, axis=axis, block_size=bs, output_dtype=name, saturate=saturate,
                          runtime="onnx_reference")
    np.testing.assert_array_equal(got, ref.view(np.uint8))


@given(case=qdq_case(INT_TYPES + FLOAT8))
def test_dequantize_matches_both_runtimes(case):
    ml, TensorProto, helper, R = _onnx()
    name, x, scale, zp, axis, bs = case
    q = quantize_linear(x, scale, zp if T.element_type(name).kind == "int" else None, axis=axis, block_size=bs,
                        output_dtype=name)
    qa = T.as_ml_dtypes(q, name)
    attrs = {"axis": axis}
    if bs:
        attrs["block_size"] = bs
    inputs = [("x", qa, True), ("s", scale, True)]
    if T.element_type(name).kind == "int":
        inputs.append(("z", _zp_array(ml, name, zp), True))
    m = R.make_model("DequantizeLinear", inputs, [("y", TensorProto.FLOAT)], attrs=attrs, opset=25)
    ort_y = R.run_ort(m, {})[0]
    ref_y = R.run_reference(m, {})[0]
    z = zp if T.element_type(name).kind == "int" else None
    for rt, truth in (("onnxruntime", ort_y), ("onnx_reference", ref_y)):
        got = dequantize_linear(q, scale, z, dtype=name, axis=axis, block_size=bs, runtime=rt)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, truth)        # bit-exact (NaN == NaN)


def test_float16_division_differs_between_runtimes():
    # onnxruntime converts float16 x and scale to float and divides in float32; onnx.reference divides in float16
    ml, TensorProto, helper, R = _onnx()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4000) * 50).astype(np.float16)
    s = np.array(0.37, np.float16)
    m = R.make_model("QuantizeLinear", [("x", x, False), ("s", s, True), ("z", np.array(3, np.int8), True)],
                     [("y", TensorProto.INT8)], opset=21)
    ort_y, ref_y = R.run_ort(m, {"x": x})[0], R.run_reference(m, {"x": x})[0]
    assert (ort_y != ref_y).any()                                   # the difference is real
    np.testing.assert_array_equal(quantize_linear(x, s, np.int8(3)), ort_y)
    np.testing.assert_array_equal(quantize_linear(x, s, np.int8(3), runtime="onnx_reference"), ref_y)
    # DequantizeLinear with a float16 scale: float32 product, then float16, in both
    q = rng.integers(-128, 128, 500).astype(np.int8)
    m = R.make_model("DequantizeLinear", [("x", q, False), ("s", s, True), ("z", np.array(3, np.int8), True)],
                     [("y", TensorProto.FLOAT16)], opset=21)
    np.testing.assert_array_equal(dequantize_linear(q, s, np.int8(3)), R.run_ort(m, {"x": q})[0])


def test_nan_and_overflow_match_both_runtimes():
    ml, TensorProto, helper, R = _onnx()
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 1e10, -1e10, 3e9, 2.5, -2.5, 2.0 ** 31, 2.0 ** 31 - 128], np.float32)
    for dt, zv in ((np.int8, 0), (np.int8, -1), (np.uint8, 128), (np.int16, 5), (np.uint16, 0)):
        m = R.make_model("QuantizeLinear", [("x", x, False), ("s", np.array(1.0, np.float32), True),
                                            ("z", np.array(zv, dt), True)],
                         [("y", helper.np_dtype_to_tensor_dtype(np.dtype(dt)))], opset=21)
        np.testing.assert_array_equal(quantize_linear(x, np.float32(1), dt(zv)), R.run_ort(m, {"x": x})[0])
        np.testing.assert_array_equal(quantize_linear(x, np.float32(1), dt(zv), runtime="onnx_reference"),
                                      R.run_reference(m, {"x": x})[0])


def test_float4e2m1_matches_onnx_reference():
    ml, TensorProto, helper, R = _onnx()
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(61) * 5, [-0.0, 0.0, np.inf, -np.inf, 5.0, 0.25]]).astype(np.float32)
    s = np.array(1.5, np.float32)
    zp = np.zeros((), ml.float4_e2m1fn)
    m = R.make_model("QuantizeLinear", [("x", x, False), ("s", s, True), ("z", zp, True)],
                     [("y", TensorProto.FLOAT4E2M1)], opset=23)
    ref = R.run_reference(m, {"x": x})[0].view(np.uint8)
    got = quantize_linear(x, s, 0.0, output_dtype="float4e2m1", runtime="onnx_reference")
    np.testing.assert_array_equal(got, ref)
    assert got[61] == 0x0                        # -0.0 + 0.0 (the zero point is added) = +0.0
    m = R.make_model("DequantizeLinear", [("x", T.as_ml_dtypes(got, "float4e2m1"), True), ("s", s, True)],
                     [("y", TensorProto.FLOAT)], opset=23)
    np.testing.assert_array_equal(dequantize_linear(got, s, dtype="float4e2m1", runtime="onnx_reference"),
                                  R.run_reference(m, {})[0])
    with pytest.raises(ValueError, match=r"`output_dtype` float4e2m1: onnxruntime 1\.32 has no CPU QuantizeLinear"):
        quantize_linear(x, s, output_dtype="float4e2m1")


def test_bad_inputs_name_the_attribute_and_runtime():
    x = np.ones((2, 6), np.float32)
    with pytest.raises(ValueError, match=r"`opset` 19: the `output_dtype` attribute needs opset >= 21"):
        quantize_linear(x, np.float32(1), output_dtype="int4", opset=19)
    with pytest.raises(ValueError, match=r"`opset` 19: element type int16 needs opset >= 21"):
        quantize_linear(x, np.float32(1), np.int16(0), opset=19)
    with pytest.raises(ValueError, match=r"`opset` 23: element type int2 needs opset >= 25"):
        quantize_linear(x, np.float32(1), output_dtype="int2", opset=23)
    with pytest.raises(ValueError, match=r"`block_size` 2: onnxruntime requires `y_scale`\.shape\[1\] == ceil\(6 / 2\)"):
        quantize_linear(x, np.ones((2, 2), np.float32), axis=1, block_size=2)
    # the reference accepts extra (unused) blocks but not too few
    q = quantize_linear(x, np.ones((2, 4), np.float32), axis=1, block_size=2, runtime="onnx_reference")
    assert q.shape == (2, 6)
    with pytest.raises(ValueError, match=r"`block_size` 2 is too small"):
        quantize_linear(x, np.ones((2, 2), np.float32), axis=1, block_size=2, runtime="onnx_reference")
    with pytest.raises(ValueError, match=r"`block_size` 2 with a one-element `y_scale`: onnxruntime"):
        quantize_linear(np.ones((1, 2), np.float32), np.ones((1, 1), np.float32), axis=1, block_size=2)
    with pytest.raises(ValueError, match=r"`y_zero_point` must be 0 for float8e4m3fn"):
        quantize_linear(x, np.float32(1), 1.0, output_dtype="float8e4m3fn")
    with pytest.raises(ValueError, match=r"`y_zero_point` of dtype int64 does not name an ONNX quantized type"):
        quantize_linear(x, np.float32(1), np.int64(3))
    with pytest.raises(ValueError, match=r"`y_scale` of dtype float16 with `x` of dtype float32: onnxruntime"):
        quantize_linear(x, np.float16(1))
    with pytest.raises(ValueError, match=r"`x` must lie in \[-8, 7\] for int4"):
        dequantize_linear(np.array([9], np.int8), np.float32(1), dtype="int4")
    with pytest.raises(ValueError, match=r"`x_zero_point` must be 0 for int32"):
        dequantize_linear(np.array([9], np.int32), np.float32(1), np.int32(2))
    with pytest.raises(ValueError, match=r"`x` of dtype uint8 does not name|dtype"):
        dequantize_linear(np.array([1.5]), np.float32(1))
    with pytest.raises(ValueError, match=r"`runtime` must be one of"):
        quantize_linear(x, np.float32(1), runtime="tflite")
    # per-axis scale of the wrong length
    with pytest.raises(ValueError, match=r"`y_scale` must have one value per index of `axis` = 1 \(6\)"):
        quantize_linear(x, np.ones(4, np.float32), axis=1)


def test_layout_invariance_and_readonly():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((5, 8)) * 10).astype(np.float32)
    s = np.abs(rng.standard_normal((5, 3))).astype(np.float32) + 0.1
    ref = quantize_linear(x, s, axis=1, block_size=3, output_dtype="int4")
    for v in (np.asfortranarray(x), x[::-1][::-1]):
        v = v.copy(order="K")
        v.setflags(write=False)
        np.testing.assert_array_equal(quantize_linear(v, s, axis=1, block_size=3, output_dtype="int4"), ref)
    # float64 in: the oracle, computed in float64 (no runtime takes float64 x)
    x64 = np.array([0.5000000001, 2.5], np.float64)
    np.testing.assert_array_equal(quantize_linear(x64, 1.0, np.int8(0)), [1, 2])
