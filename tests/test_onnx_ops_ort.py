"""Differential tests of refdet.onnx_ops against onnxruntime (CPU) and onnx.reference, on hypothesis
inputs: ties for TopK, every coordinate mode / nearest mode / aspect policy / axes for Resize, every
ConvTranspose attribute, both Softmax semantics.

Tolerances: Resize, LeakyRelu, TopK and onnx.reference's Softmax are compared bit for bit (refdet
reproduces their order of operations); onnxruntime's Softmax has its own vectorised ``exp`` (MLAS),
so float32 results agree within 4 ulp of 1 (``rtol=5e-7`` on probabilities, ``atol=2e-6`` on
log-probabilities); ConvTranspose sums in GEMM order: within ``1e-5`` of the sum of absolute terms.
Where a runtime refuses an input, refdet must refuse it too (ValueError naming the attribute).
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto  # noqa: E402

import refdet.onnx_ops as O  # noqa: E402
from tests._onnx_ops_runtime import make_model, run_ort, run_reference  # noqa: E402

f32 = np.float32


def _both(model, feeds):
    out = {}
    for name, fn in (("onnxruntime", run_ort), ("onnx_reference", run_reference)):
        try:
            out[name] = fn(model, feeds)
        except Exception as exc:  # noqa: BLE001 -- a runtime's refusal is data here
            out[name] = exc
    return out


# ---------------------------------------------------------------------------------------------------
# Softmax / LogSoftmax
# ---------------------------------------------------------------------------------------------------

@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
                    elements=st.floats(-30, 30, width=32) | st.sampled_from([f32(0), f32(1e4), f32(-1e4)])),
       data=st.data(), opset=st.sampled_from([11, 13]), log=st.booleans())
def test_softmax_both_semantics(x, data, opset, log):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    op = "LogSoftmax" if log else "Softmax"
    m = make_model(op, [("x", x, False)], [("y", TensorProto.FLOAT)], attrs={"axis": axis}, opset=opset)
    res = _both(m, {"x": x})
    f = O.log_softmax if log else O.softmax
    got = f(x, axis=axis, opset=opset)
    if log:
        np.testing.assert_allclose(got, res["onnxruntime"][0], rtol=1e-6, atol=2e-6)
    else:
        np.testing.assert_allclose(got, res["onnxruntime"][0], rtol=5e-7, atol=1e-7)
    # onnx.reference: the same NumPy operations, bit for bit (it ignores the opset < 13 coercion)
    np.testing.assert_array_equal(f(x, axis=axis, opset=opset, runtime="onnx_reference"), res["onnx_reference"][0])


def test_softmax_opset11_coerces_to_2d_and_reference_does_not():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    m = make_model("Softmax", [("x", x, False)], [("y", TensorProto.FLOAT)], attrs={"axis": 1}, opset=11)
    ort, ref = run_ort(m, {"x": x})[0], run_reference(m, {"x": x})[0]
    y = O.softmax(x, axis=1, opset=11)
    np.testing.assert_allclose(y.reshape(2, 12).sum(1), 1, rtol=1e-6)          # one distribution per image
    np.testing.assert_allclose(y, ort, rtol=5e-7, atol=1e-7)
    np.testing.assert_allclose(ref.sum(1), 1, rtol=1e-6)                        # per (image, column) instead
    np.testing.assert_array_equal(O.softmax(x, axis=1, opset=11, runtime="onnx_reference"), ref)


def test_log_softmax_underflow_differs():
    # x - max = -200 < log(smallest float32 subnormal) = -103.3: exp underflows to 0 in both runtimes, but only
    # onnx.reference takes log(0) = -inf
    x = np.array([[0.0, -200.0, -50.0]], np.float32)
    m = make_model("LogSoftmax", [("x", x, False)], [("y", TensorProto.FLOAT)], opset=13)
    ort, ref = run_ort(m, {"x": x})[0], run_reference(m, {"x": x})[0]
    assert np.isfinite(ort).all() and ref[0, 1] == -np.inf
    np.testing.assert_allclose(O.log_softmax(x), ort, atol=1e-6)
    np.testing.assert_array_equal(O.log_softmax(x, runtime="onnx_reference"), ref)


# ---------------------------------------------------------------------------------------------------
# LeakyRelu
# ---------------------------------------------------------------------------------------------------

@given(x=hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6),
                    elements=st.floats(width=32, allow_nan=True, allow_infinity=True) | st.just(f32(-0.0))),
       alpha=st.floats(-2, 2, width=32))
def test_leaky_relu_bit_exact(x, alpha):
    m = make_model("LeakyRelu", [("x", x, False)], [("y", TensorProto.FLOAT)], attrs={"alpha": float(alpha)}, opset=16)
    res = _both(m, {"x": x})
    for name in ("onnxruntime", "onnx_reference"):
        got = O.leaky_relu(x, alpha=float(alpha), runtime=name)
        np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(got)],
                                      res[name][0].view(np.uint32)[~np.isnan(got)])       # -0.0 included
        np.testing.assert_array_equal(np.isnan(got), np.isnan(res[name][0]))


def test_leaky_relu_alpha_is_a_float32_attribute():
    # float64 tensor: the ONNX attribute alpha = 0.01 is stored as float32 (0.009999999776...)
    x = np.array([-1.0, 2.0])
    assert O.leaky_relu(x)[0] == -float(np.float32(0.01))
    assert O.leaky_relu(x, convention="torchvision")[0] == -0.01


# ---------------------------------------------------------------------------------------------------
# TopK
# ---------------------------------------------------------------------------------------------------

@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                    elements=st.integers(-3, 3).map(f32) | st.just(f32(-0.0))),           # many ties
       data=st.data(), largest=st.booleans(), sorted_=st.booleans())
def test_topk_ties_lower_index_first(x, data, largest, sorted_):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    k = data.draw(st.integers(0, x.shape[axis]))
    m = make_model("TopK", [("x", x, False), ("k", np.array([k], np.int64), True)],
                   [("v", TensorProto.FLOAT), ("i", TensorProto.INT64)],
                   attrs={"axis": axis, "largest": int(largest), "sorted": int(sorted_)}, opset=11)
    res = _both(m, {"x": x})
    v, i = O.topk(x, k, axis=axis, largest=largest, sorted=sorted_)
    np.testing.assert_array_equal(i, res["onnx_reference"][1])
    np.testing.assert_array_equal(v, res["onnx_reference"][0])
    ov, oi = res["onnxruntime"]
    if sorted_:
        np.testing.assert_array_equal(i, oi)
        np.testing.assert_array_equal(v, ov)
    else:
        # sorted=0: onnxruntime leaves its heap / nth_element order; the same (value, index) pairs
        np.testing.assert_array_equal(np.sort(i, axis=axis), np.sort(oi, axis=axis))


@given(x=hnp.arrays(np.float32, st.integers(1, 12), elements=st.floats(width=32, allow_nan=True)),
       largest=st.booleans(), data=st.data())
def test_topk_nan(x, largest, data):
    k = data.draw(st.integers(1, x.shape[0]))
    m = make_model("TopK", [("x", x, False), ("k", np.array([k], np.int64), True)],
                   [("v", TensorProto.FLOAT), ("i", TensorProto.INT64)], attrs={"largest": int(largest)}, opset=11)
    res = _both(m, {"x": x})
    # NaN above +inf, NaNs by index: both runtimes
    _, idx = O.topk(x, k, largest=largest)
    np.testing.assert_array_equal(idx, res["onnx_reference"][1])
    np.testing.assert_array_equal(idx, res["onnxruntime"][1])


# ---------------------------------------------------------------------------------------------------
# ConvTranspose
# ---------------------------------------------------------------------------------------------------

@st.composite
def conv_transpose_case(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    group = draw(st.integers(1, 2))
    cg, fg = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    sp = draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    ks = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    st_ = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    dl = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    attrs = {"group": group, "strides": st_, "dilations": dl}
    mode = draw(st.sampled_from(["pads", "auto", "output_shape"]))
    op = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(st_, dl)]
    if draw(st.booleans()):
        attrs["output_padding"] = op
    if mode == "pads":
        attrs["pads"] = draw(st.lists(st.integers(0, 2), min_size=2 * nd, max_size=2 * nd))
    elif mode == "auto":
        attrs["auto_pad"] = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"]))
    else:
        full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(sp, st_, dl, ks)]
        attrs["output_shape"] = [max(1, f + draw(st.integers(-2, 1))) for f in full]
        if draw(st.booleans()):
            attrs["auto_pad"] = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
    x = draw(hnp.arrays(np.float32, (draw(st.integers(1, 2)), group * cg) + tuple(sp), elements=st.floats(-2, 2, width=32)))
    w = draw(hnp.arrays(np.float32, (group * cg, fg) + tuple(ks), elements=st.floats(-2, 2, width=32)))
    b = draw(st.none() | hnp.arrays(np.float32, (group * fg,), elements=st.floats(-2, 2, width=32)))
    return x, w, b, attrs


@given(case=conv_transpose_case())
def test_conv_transpose_matches_runtimes(case):
    x, w, b, attrs = case
    ins = [("x", x, False), ("w", w, True)] + ([("b", b, True)] if b is not None else [])
    m = make_model("ConvTranspose", ins, [("y", TensorProto.FLOAT)], attrs=attrs, opset=22)
    res = _both(m, {"x": x})
    for rt in ("onnxruntime", "onnx_reference"):
        truth = res[rt]
        try:
            got = O.conv_transpose(x, w, b, runtime=rt, **attrs)
        except ValueError:
            # refdet refuses exactly where the runtime fails -- or where onnx.reference is wrong without failing
            # (grouped weights other than depthwise: refused by refdet, checked against onnxruntime below)
            if isinstance(truth, Exception):
                continue
            assert rt == "onnx_reference" and attrs["group"] > 1, (rt, attrs, "refdet refused, runtime did not")
            continue
        assert not isinstance(truth, Exception), (rt, attrs, f"runtime failed: {truth}; refdet returned {got.shape}")
        assert got.shape == truth[0].shape, (rt, attrs, got.shape, truth[0].shape)
        # GEMM summation order: within 1e-5 of the sum of |terms| (bounded by 4 * |x|max * |w|max * taps)
        bound = 1e-5 * (1 + np.abs(x).max() * np.abs(w).max() * w[0, 0].size * x.shape[1])
        np.testing.assert_allclose(got, truth[0], rtol=0, atol=bound)


# ---------------------------------------------------------------------------------------------------
# Resize
# ---------------------------------------------------------------------------------------------------

CTMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_half_pixel_for_nn", "tf_crop_and_resize")


@st.composite
def resize_case(draw):
    mode = draw(st.sampled_from(["nearest", "linear", "cubic"]))
    ctm = draw(st.sampled_from(CTMS))
    rank = draw(st.sampled_from([2, 4] if mode != "linear" else [2, 3, 4, 5]))
    shape = draw(st.lists(st.integers(1, 7), min_size=rank, max_size=rank))
    lead = 2 if rank >= 4 else 0
    nhwc = rank == 4 and mode == "linear" and draw(st.booleans())
    fixed = {0, 3} if nhwc else set(range(lead))
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = draw(st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    if mode == "cubic":
        attrs["cubic_coeff_a"] = draw(st.sampled_from([-0.75, -0.5]))
        attrs["exclude_outside"] = draw(st.integers(0, 1))
    if mode != "nearest" and rank in (2, 4) and not nhwc and ctm != "tf_crop_and_resize" and draw(st.booleans()):
        attrs["antialias"] = 1
        attrs["exclude_outside"] = draw(st.integers(0, 1))
    axes = None
    if draw(st.booleans()):
        sizes = [s if i in fixed else draw(st.integers(1, 13)) for i, s in enumerate(shape)]
        if rank == 4 and not nhwc and draw(st.booleans()):
            attrs["keep_aspect_ratio_policy"] = draw(st.sampled_from(["not_larger", "not_smaller"]))
            axes = [2, 3]
        kw = {"sizes": np.array(sizes if axes is None else sizes[2:], np.int64)}
    else:
        scale = st.sampled_from([0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0]) | st.floats(0.3, 3.0)
        kw = {"scales": np.array([1.0 if i in fixed else draw(scale) for i in range(rank)], np.float32)}
    if axes is not None:
        attrs["axes"] = axes
    roi = None
    if ctm == "tf_crop_and_resize":
        k = rank if axes is None else len(axes)
        start = np.array(draw(st.lists(st.floats(-0.3, 0.6), min_size=k, max_size=k)))
        end = start + np.array(draw(st.lists(st.floats(0.1, 1.0), min_size=k, max_size=k)))
        roi = np.concatenate([start, end]).astype(np.float32)
        attrs["extrapolation_value"] = draw(st.sampled_from([0.0, -1.5]))
    x = draw(hnp.arrays(np.float32, tuple(shape), elements=st.floats(-10, 10, width=32)))
    return x, roi, kw, attrs


@given(case=resize_case())
def test_resize_bit_exact_with_both_runtimes(case):
    x, roi, kw, attrs = case
    ins = [("x", x, False), ("roi", roi, True), ("scales", kw.get("scales"), True), ("sizes", kw.get("sizes"), True)]
    m = make_model("Resize", ins, [("y", TensorProto.FLOAT)], attrs=attrs, opset=19)
    res = _both(m, {"x": x})
    for rt in ("onnxruntime", "onnx_reference"):
        truth = res[rt]
        try:
            got = O.resize(x, roi, kw.get("scales"), kw.get("sizes"), runtime=rt, **attrs)
        except ValueError as exc:
            assert isinstance(truth, Exception) or "tf_half_pixel_for_nn" in str(exc), (rt, attrs, str(exc))
            continue
        assume(not isinstance(truth, Exception) or rt == "onnxruntime")
        assert not isinstance(truth, Exception), (rt, attrs, f"the runtime failed: {truth}")
        np.testing.assert_array_equal(got, truth[0], err_msg=f"{rt} {attrs} {kw}")


def test_resize_known_runtime_differences():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    # align_corners with scales: onnxruntime divides by L - 1, onnx.reference by scale * n - 1
    kw = dict(scales=np.array([1, 1, 0.6, 0.6], np.float32), mode="linear", coordinate_transformation_mode="align_corners")
    a, r = O.resize(x, **kw), O.resize(x, runtime="onnx_reference", **kw)
    np.testing.assert_array_equal(a[0, 0], [[0, 3], [12, 15]])                  # corners: i * 3 / (2 - 1)
    assert not np.array_equal(a, r)
    # onnxruntime rounds nearest ties with a 1e-6 tolerance: 14 -> 19, half_pixel, output 9: (9.5) * 14/19 - 0.5 =
    # 6.5 exactly, computed in float32 as 6.5000005: onnxruntime treats it as the tie and prefers the floor (6)
    row = np.arange(14, dtype=np.float32)[None, :]
    y = O.resize(row, sizes=[1, 19], mode="nearest")
    assert y[0, 9] == 6
    m = make_model("Resize", [("x", row, False), ("roi", None, True), ("scales", None, True),
                              ("sizes", np.array([1, 19], np.int64), True)], [("y", TensorProto.FLOAT)],
                   attrs={"mode": "nearest"}, opset=19)
    np.testing.assert_array_equal(y, run_ort(m, {"x": row})[0])
    # onnxruntime's kernels do not take 1-D linear or 3-D cubic: refused, naming the mode and onnxruntime
    with pytest.raises(ValueError, match=r"`mode` 'linear' on a 1-D input .*onnxruntime"):
        O.resize(np.arange(4.0, dtype=np.float32), scales=[2.0], mode="linear")
    with pytest.raises(ValueError, match=r"onnxruntime refuses it"):
        O.resize(x, scales=[1, 1, 2, 2], mode="linear", exclude_outside=1)
    # (onnx.reference takes it: x = i * (4 - 1) / (8 - 1) on a ramp)
    np.testing.assert_allclose(O.resize(np.arange(4.0, dtype=np.float32), scales=[2.0], mode="linear",
                                        coordinate_transformation_mode="align_corners", runtime="onnx_reference"),
                               np.arange(8) * 3 / 7, rtol=1e-7)
