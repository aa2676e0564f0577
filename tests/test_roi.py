"""Tests of refdet.roi: golden vectors, the loop references, gradient checks, bad input, and differential
tests against torchvision (roi_align, roi_pool, MultiScaleRoIAlign, LevelMapper), onnxruntime and
onnx.reference (RoiAlign in every mode and opset)."""
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import conventions
from refdet.reference.roi import (crop_and_resize_reference, roi_align_backward_reference, roi_align_reference,
                                  roi_level_reference, roi_pool_backward_reference, roi_pool_reference)
from refdet.roi import (assign_roi_levels, crop_and_resize, crop_and_resize_backward, crop_and_resize_forward,
                        infer_level_scales, multiscale_roi_align, multiscale_roi_align_backward,
                        multiscale_roi_align_forward, onnx_roi_align, roi_align, roi_align_backward,
                        roi_align_forward, roi_pool, roi_pool_backward, roi_pool_forward,
                        tf_crop_and_pool_backward, tf_crop_and_pool_forward, tf_normalized_boxes)
from refdet.roi.pool import c_round
from refdet.testing import check_gradients
from refdet.testing import strategies_roi as rsr
from tests._torchutil import _bits_equal, _torch_ops
from tests.conftest import readonly


def _examples(n):
    """``n`` examples, or the thorough profile's 1000 (HYPOTHESIS_PROFILE=thorough)."""
    return 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else n


def _ramp(H=4, W=4, C=1, B=1, dtype=np.float64):
    """x[b, c, y, x] = 10 y + x (+ 100 c + 1000 b): bilinear interpolation of it is exact, 10 y + x."""
    y, x = np.mgrid[0:H, 0:W]
    base = (10.0 * y + x)[None, None]
    return (base + 100.0 * np.arange(C)[None, :, None, None] + 1000.0 * np.arange(B)[:, None, None, None]
            ).astype(dtype)


# --------------------------------------------------------------------------------------------------
# RoIAlign: golden vectors
# --------------------------------------------------------------------------------------------------

def test_roi_align_golden_unaligned():
    # RoI (0, 0)-(4, 4) on a 4x4 ramp, 2x2 bins of size 2, sampling 2: samples at 0.5, 1.5 | 2.5, 3.5.
    # 3.5 is past W - 1 = 3 (but <= W): clamped to 3. Mean sample position per bin: 1.0 and
    # (2.5 + 3) / 2 = 2.75, so the bins are 10*1 + 1 = 11, 10*1 + 2.75 = 12.75, 27.5 + 1, 27.5 + 2.75.
    out = roi_align(_ramp(), np.array([[0, 0, 0, 4, 4.0]]), 2, 1.0, 2, False)
    np.testing.assert_array_equal(out[0, 0], [[11.0, 12.75], [28.5, 30.25]])


def test_roi_align_golden_aligned_half_pixel():
    # aligned=True shifts the box by -0.5: start -0.5, samples at 0, 1 | 2, 3 (pixel centres):
    # bins 10*0.5 + 0.5 = 5.5, 5 + 2.5 = 7.5, 25 + 0.5 = 25.5, 25 + 2.5 = 27.5.
    out = roi_align(_ramp(), np.array([[0, 0, 0, 4, 4.0]]), 2, 1.0, 2, True)
    np.testing.assert_array_equal(out[0, 0], [[5.5, 7.5], [25.5, 27.5]])
    # detectron2's ROIAlignV2 and ONNX half_pixel are this setting
    np.testing.assert_array_equal(roi_align(_ramp(), np.array([[0, 0, 0, 4, 4.0]]), 2, 1.0, 2,
                                            convention="detectron2"), out)


def test_roi_align_golden_adaptive_grid():
    # output 1x1: bin size 4, adaptive grid ceil(4 / 1) = 4: samples 0.5, 1.5, 2.5, 3.5 -> 3 (clamped),
    # mean (0.5 + 1.5 + 2.5 + 3) / 4 = 1.875 per axis: 18.75 + 1.875 = 20.625. sampling_ratio 0 is the
    # same (ONNX/detectron2 spelling); sampling_ratio 1 samples the bin centre 2: 22.
    boxes = np.array([[0, 0, 0, 4, 4.0]])
    assert roi_align(_ramp(), boxes, 1, 1.0, -1, False)[0, 0, 0, 0] == 20.625
    assert roi_align(_ramp(), boxes, 1, 1.0, 0, False)[0, 0, 0, 0] == 20.625
    assert roi_align(_ramp(), boxes, 1, 1.0, 1, False)[0, 0, 0, 0] == 22.0


def test_roi_align_golden_zero_size_and_outside():
    x = _ramp()
    # a point box at (1, 1): aligned=False forces it to 1x1: samples 1.25, 1.75 per axis, mean 1.5
    # -> 15 + 1.5 = 16.5; aligned=True keeps size 0: adaptive grid ceil(0) = 0 samples -> 0.
    pt = np.array([[0, 1, 1, 1, 1.0]])
    assert roi_align(x, pt, 1, 1.0, -1, False)[0, 0, 0, 0] == 16.5
    assert roi_align(x, pt, 1, 1.0, -1, True)[0, 0, 0, 0] == 0.0
    # with a fixed grid an aligned point box samples one point 4 times: (0.5, 0.5) -> 5.5
    assert roi_align(x, pt, 1, 1.0, 2, True)[0, 0, 0, 0] == 5.5
    # entirely right of the map (x > W = 4): every sample is empty -> 0
    assert roi_align(x, np.array([[0, 10, 0, 12, 2.0]]), 2, 1.0, 2)[0, 0].tolist() == [[0, 0], [0, 0]]
    # x in [-1, 0] is clamped to 0, x < -1 is empty but still counted: box x in [-3, -1], 1 bin,
    # sampling 2: x samples -2.5 (empty) and -1.5 (empty) -> 0; box [-2, 0]: -1.5 (empty), -0.5 -> 0,
    # y samples 0.5, 1.5 (box y in [0, 2]): mean (0 + (10*1 + 0)) / 4 * 2 ... = (0 + 0 + 5 + 15) / 4 = 5
    assert roi_align(x, np.array([[0, -3, 0, -1, 2.0]]), 1, 1.0, 2)[0, 0, 0, 0] == 0.0
    assert roi_align(x, np.array([[0, -2, 0, 0, 2.0]]), 1, 1.0, 2)[0, 0, 0, 0] == 5.0


def test_roi_align_spatial_scale_and_list_boxes():
    # boxes in image pixels, map at stride 2: (0, 0)-(8, 8) * 0.5 = (0, 0)-(4, 4), the first golden case
    x = _ramp(B=2)
    out = roi_align(x, [np.zeros((0, 4)), np.array([[0, 0, 8, 8.0]])], 2, 0.5, 2)
    np.testing.assert_array_equal(out[0, 0], np.array([[11.0, 12.75], [28.5, 30.25]]) + 1000)
    # the (K, 5) spelling gives the same
    np.testing.assert_array_equal(out, roi_align(x, np.array([[1, 0, 0, 8, 8.0]]), 2, 0.5, 2))


def test_roi_align_empty_and_channels():
    x = _ramp(C=3, B=2)
    y, cache = roi_align_forward(x, np.zeros((0, 5)), (2, 3))
    assert y.shape == (0, 3, 2, 3)
    assert roi_align_backward(y, cache).dfeatures.shape == x.shape
    assert not roi_align_backward(y, cache).dfeatures.any()
    out = roi_align(x, np.array([[1, 0, 0, 4, 4.0]]), 2, 1.0, 2)
    for c in range(3):   # channel c is the ramp + 100 c + 1000: pooled the same way
        np.testing.assert_array_equal(out[0, c], np.array([[11.0, 12.75], [28.5, 30.25]]) + 1000 + 100 * c)


def test_roi_align_max_mode_golden():
    # ONNX max mode takes, per sample, the largest *weighted corner* w_i * v_i, not the interpolated value.
    # 1x2 map [0, 4]; RoI (0,0)-(1,1), 1 bin, sampling 1: sample (0.5, 0.5): y = 0.5 -> y_low 0 = H - 1,
    # so y is clamped to 0; x = 0.5: weights hx = 0.5 on x=0 and lx = 0.5 on x=1 -> corners 0.5*0, 0.5*4
    # (and the two y_high copies, same values): max = 2.0, while the interpolated value is also 2.0;
    # sampling 2: samples x = 0.25 (0.75*0, 0.25*4 = 1.0) and 0.75 (0.25*0, 0.75*4 = 3.0): max 3.0, mean 2.0.
    x = np.array([[[[0.0, 4.0]]]])
    b = np.array([[0, 0, 0, 1, 1.0]])
    assert roi_align(x, b, 1, 1.0, 1, mode="max")[0, 0, 0, 0] == 2.0
    assert roi_align(x, b, 1, 1.0, 2, mode="max")[0, 0, 0, 0] == 3.0
    assert roi_align(x, b, 1, 1.0, 2, mode="avg")[0, 0, 0, 0] == 2.0


def test_roi_align_convention_table():
    t = conventions.describe("roi_align")
    assert t["torchvision"] == {"aligned": False, "sampling_ratio": -1}
    assert t["detectron2"]["aligned"] and t["onnx"]["aligned"] and not t["caffe"]["aligned"]
    with pytest.raises(ValueError, match="crop_and_resize"):
        roi_align(_ramp(), np.zeros((0, 5)), 2, convention="tf")
    assert "Conventions" in roi_align_forward.__doc__


# --------------------------------------------------------------------------------------------------
# RoIAlign: reference loops, layout, gradients
# --------------------------------------------------------------------------------------------------

@settings(max_examples=_examples(40))
@given(case=rsr.roi_align_inputs(max_n=6, max_output=3), mode=st.sampled_from(("avg", "max")))
def test_roi_align_matches_loop_reference(case, mode):
    args = (case["features"], case["rois"], case["output_size"], case["spatial_scale"], case["sampling_ratio"],
            case["aligned"])
    y, cache = roi_align_forward(*args, mode=mode)
    ref = roi_align_reference(*args, mode=mode)
    _bits_equal(y, ref)
    if mode == "avg":
        g = np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)
        _bits_equal(roi_align_backward(g, cache).dfeatures,
                    roi_align_backward_reference(g, case["features"].shape, *args[1:]))


def test_roi_align_layout_and_readonly_inputs_give_identical_bits(rng):
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    rois = np.array([[0, 1.5, 2.25, 20.0, 12.5], [1, -3, -2, 5, 40], [1, 4, 4, 4, 4]], dtype=np.float32)
    y, cache = roi_align_forward(x, rois, (3, 2), 0.5, -1)
    g = rng.standard_normal(y.shape).astype(np.float32)
    d = roi_align_backward(g, cache).dfeatures
    for xv, rv, gv in ((np.asfortranarray(x), np.asfortranarray(rois), np.asfortranarray(g)),
                       (np.repeat(x, 2, axis=3)[..., ::2], rois, g[:, :, ::-1][:, :, ::-1]),
                       readonly(x, rois, g)):
        y2, c2 = roi_align_forward(xv, rv, (3, 2), 0.5, -1)
        _bits_equal(y2, y)
        _bits_equal(roi_align_backward(gv, c2).dfeatures, d)
    assert x.flags.writeable and rois[0, 1] == 1.5


@settings(max_examples=_examples(30))
@given(case=rsr.roi_align_inputs(max_n=6, max_output=3), mode=st.sampled_from(("avg", "max")))
def test_roi_align_compact_and_dense_gathers_agree(case, mode):
    # the kernel gathers from a compact copy of the touched pixels when they are few, else from the
    # whole map transposed: both paths must give the same bits, forward and backward
    from refdet.roi import align
    args = (case["features"], case["rois"], case["output_size"], case["spatial_scale"], case["sampling_ratio"],
            case["aligned"])
    outs = []
    saved = align.COMPACT_FRACTION
    try:
        for frac in (-1.0, 2.0):            # never compact, always compact
            align.COMPACT_FRACTION = frac
            y, c = roi_align_forward(*args, mode=mode)
            g = np.ones_like(y)
            outs.append((y, roi_align_backward(g, c).dfeatures))
    finally:
        align.COMPACT_FRACTION = saved
    _bits_equal(outs[0][0], outs[1][0])
    _bits_equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2, 3])
def test_roi_align_gradcheck(aligned, sampling_ratio):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 6, 7))
    # coordinates off the 1/6 grid keep samples away from integer pixel positions (the kinks)
    rois = np.array([[0, 0.37, 1.13, 5.71, 4.29], [1, -1.41, 2.07, 3.53, 9.9], [1, 2.2, 0.3, 2.6, 0.7]])
    check_gradients(roi_align_forward, roi_align_backward, (x, rois, (2, 3)),
                    kwargs=dict(spatial_scale=0.9, sampling_ratio=sampling_ratio, aligned=aligned),
                    rng=0, wrt=["features"])


def test_roi_align_max_mode_gradcheck():
    rng = np.random.default_rng(2)
    x = rng.permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) * 0.1 + 1.0     # distinct, positive: no ties
    rois = np.array([[0, 0.37, 1.13, 5.71, 4.29], [1, 1.41, 2.07, 3.53, 5.9]])
    check_gradients(roi_align_forward, roi_align_backward, (x, rois, (2, 2)),
                    kwargs=dict(sampling_ratio=2, mode="max"), rng=0, wrt=["features"])


def test_roi_align_float16_is_computed_in_float32():
    x = _ramp(dtype=np.float16)
    out = roi_align(x, np.array([[0, 0, 0, 4, 4]], dtype=np.float16), 2, 1.0, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], [[11.0, 12.75], [28.5, 30.25]])


# --------------------------------------------------------------------------------------------------
# RoIAlign: bad input
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("boxes,match", [
    (np.array([[0, np.nan, 0, 1, 1]]), r"`boxes`.*NaN"),
    (np.array([[0, 0, 0, np.inf, 1]]), r"`boxes`.*inf"),
    (np.array([[2, 0, 0, 1, 1.0]]), r"batch index.*\[0, 2\).*got 2"),
    (np.array([[-1, 0, 0, 1, 1.0]]), r"batch index.*got -1"),
    (np.array([[0.5, 0, 0, 1, 1.0]]), r"batch index.*integers.*0.5"),
    (np.array([[0, 0, 1, 1.0]]), r"`boxes` must have shape \(K, 5\).*prepend the batch index"),
    ([np.zeros((1, 4))] * 3, r"list of 3 per-image box arrays.*2 images"),
])
def test_roi_align_bad_boxes(boxes, match):
    with pytest.raises(ValueError, match=match):
        roi_align(np.zeros((2, 1, 3, 3)), boxes, 2)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(output_size=0), ValueError, r"`output_size` must be >= 1"),
    (dict(output_size=(2, -1)), ValueError, r"`output_size\[1\]` must be >= 1"),
    (dict(spatial_scale=0.0), ValueError, r"`spatial_scale` must be > 0"),
    (dict(spatial_scale=-0.5), ValueError, r"`spatial_scale` must be > 0"),
    (dict(spatial_scale=float("nan")), ValueError, r"`spatial_scale` must be finite"),
    (dict(sampling_ratio=-2), ValueError, r"`sampling_ratio` must be an integer >= -1"),
    (dict(sampling_ratio=1.5), TypeError, r"`sampling_ratio` must be an int"),
    (dict(aligned=1), TypeError, r"`aligned` must be a bool"),
    (dict(mode="mean"), ValueError, r"`mode` must be one of 'avg', 'max'"),
    (dict(convention="keras"), ValueError, r"`convention` must be one of"),
])
def test_roi_align_bad_arguments(kwargs, err, match):
    args = dict(output_size=2, spatial_scale=1.0)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        roi_align(np.zeros((1, 1, 3, 3)), np.array([[0, 0, 0, 1, 1.0]]), **args)


def test_roi_align_bad_features_and_cache():
    with pytest.raises(ValueError, match=r"`features` must be 4-D"):
        roi_align(np.zeros((3, 3)), np.zeros((0, 5)), 2)
    with pytest.raises(ValueError, match=r"`features`.*NaN"):
        roi_align(np.full((1, 1, 2, 2), np.nan), np.zeros((0, 5)), 2)
    with pytest.raises(TypeError, match=r"`cache` must be the RoIAlignCache"):
        roi_align_backward(np.zeros((0, 1, 2, 2)), None)
    _, c = roi_align_forward(np.zeros((1, 1, 3, 3)), np.array([[0, 0, 0, 1, 1.0]]), 2)
    with pytest.raises(ValueError, match=r"`dout` must have the forward output's shape \(1, 1, 2, 2\)"):
        roi_align_backward(np.zeros((1, 1, 3, 3)), c)


# --------------------------------------------------------------------------------------------------
# RoIAlign against torchvision (forward and autograd, bit for bit)
# --------------------------------------------------------------------------------------------------

@settings(max_examples=_examples(60))
@given(case=rsr.roi_align_inputs(max_n=8))
def test_roi_align_matches_torchvision_bitwise(case):
    torch, ops = _torch_ops()
    x, rois = case["features"], case["rois"]
    xt = torch.from_numpy(x.copy()).requires_grad_()
    try:
        yt = ops.roi_align(xt, torch.from_numpy(rois.copy()), case["output_size"], case["spatial_scale"],
                           case["sampling_ratio"], case["aligned"])
    except (RuntimeError, ValueError) as exc:
        # torchvision's CPU kernel sizes a std::vector by grid_h * grid_w: negative for an aligned,
        # adaptive RoI with one negative side -> "cannot create std::vector larger than max_size()"
        assert "vector" in str(exc)
        _, cache = roi_align_forward(x, rois, case["output_size"], case["spatial_scale"],
                                     case["sampling_ratio"], case["aligned"])
        geo = _geometry_of(cache)
        assert case["aligned"] and case["sampling_ratio"] <= 0 and (geo.grid_h * geo.grid_w < 0).any()
        return
    y, cache = roi_align_forward(x, rois, case["output_size"], case["spatial_scale"], case["sampling_ratio"],
                                 case["aligned"])
    _bits_equal(y, yt.detach().numpy())
    g = np.random.default_rng(len(rois)).standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(g))
    _bits_equal(roi_align_backward(g, cache).dfeatures, xt.grad.numpy())


def test_roi_align_matches_torchvision_list_boxes_and_detectron2_v2(rng):
    torch, ops = _torch_ops()
    x = rng.standard_normal((2, 3, 11, 13)).astype(np.float32)
    boxes = [(rng.uniform(0, 80, (5, 4)) * [1, 1, 0, 0] + [0, 0, 1, 1] * rng.uniform(0, 80, (5, 4))
              ).astype(np.float32) for _ in range(2)]
    boxes = [np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1) for b in boxes]
    ref = ops.roi_align(torch.from_numpy(x), [torch.from_numpy(b) for b in boxes], 7, 1 / 8, 0, True).numpy()
    _bits_equal(roi_align(x, boxes, 7, 1 / 8, convention="detectron2"), ref)


# --------------------------------------------------------------------------------------------------
# ONNX RoiAlign: onnxruntime and onnx.reference, every mode and opset
# --------------------------------------------------------------------------------------------------

def _geometry_of(cache):
    from refdet.roi.align import _geometry
    return _geometry(cache.rois, cache.output_size, cache.spatial_scale, cache.sampling_ratio, cache.aligned)


def _onnx_model(opset, dtype, **attrs):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    tp = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inputs = [helper.make_tensor_value_info("X", tp, None), helper.make_tensor_value_info("rois", tp, None),
              helper.make_tensor_value_info("batch_indices", TensorProto.INT64, None)]
    node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], **attrs)
    graph = helper.make_graph([node], "roi_align", inputs, [helper.make_tensor_value_info("Y", tp, None)])
    return onnx, helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run_onnx(model, feed, evaluator):
    if evaluator == "onnxruntime":
        ort = pytest.importorskip("onnxruntime")
        so = ort.SessionOptions()
        so.log_severity_level = 3       # max mode warns that its summation "is incorrect"
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
            None, feed)[0]
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, feed)[0]


@settings(max_examples=_examples(60))
@given(case=rsr.roi_align_inputs(max_n=8, sampling_ratios=(0, 1, 2, 3)), mode=st.sampled_from(("avg", "max")),
       opset=st.sampled_from((10, 16, 19, 21)), ctm=st.sampled_from((None, "half_pixel", "output_half_pixel")),
       evaluator=st.sampled_from(("onnxruntime", "onnx_reference")))
def test_onnx_roi_align_matches_both_evaluators_bitwise(case, mode, opset, ctm, evaluator):
    if opset < 16:
        ctm = None
    attrs = dict(mode=mode, output_height=case["output_size"][0], output_width=case["output_size"][1],
                 sampling_ratio=case["sampling_ratio"], spatial_scale=case["spatial_scale"])
    if ctm is not None:
        attrs["coordinate_transformation_mode"] = ctm
    _, model = _onnx_model(opset, case["features"].dtype, **attrs)
    rois = case["rois"]
    feed = {"X": case["features"], "rois": np.ascontiguousarray(rois[:, 1:]),
            "batch_indices": rois[:, 0].astype(np.int64)}
    try:
        got = _run_onnx(model, feed, evaluator)
    except Exception as exc:  # noqa: BLE001
        # onnxruntime sizes its sample table by grid_h * grid_w * PH * PW with SafeInt: an aligned
        # (half_pixel), adaptive RoI with one negative side overflows ("Integer overflow")
        assert evaluator == "onnxruntime" and "overflow" in str(exc)
        from refdet.roi.align import _geometry
        geo = _geometry(rois, case["output_size"], np.float32(case["spatial_scale"]), 0, True)
        assert case["sampling_ratio"] == 0 and (geo.grid_h * geo.grid_w < 0).any()
        return
    mine = onnx_roi_align(feed["X"], feed["rois"], feed["batch_indices"], opset=opset, evaluator=evaluator,
                          **attrs)
    _bits_equal(mine, got)


def test_onnx_evaluators_differ_at_opset_10_and_in_float32_clamped_rois():
    # opset 10 has no half-pixel shift (onnxruntime = the spec); onnx.reference applies the opset-16 default
    x = _ramp()
    rois, bi = np.array([[0, 0, 4, 4.0]]), np.array([0])
    ort_like = onnx_roi_align(x, rois, bi, output_height=2, output_width=2, sampling_ratio=2, opset=10)
    ref_like = onnx_roi_align(x, rois, bi, output_height=2, output_width=2, sampling_ratio=2, opset=10,
                              evaluator="onnx_reference")
    np.testing.assert_array_equal(ort_like[0, 0], [[11.0, 12.75], [28.5, 30.25]])    # output_half_pixel
    np.testing.assert_array_equal(ref_like[0, 0], [[5.5, 7.5], [25.5, 27.5]])        # half_pixel
    # float32, output_half_pixel, a RoI clamped to 1x1 with PW = 7: onnx.reference's bin size is the Python
    # float 1/7 (float64), onnxruntime's float32(1)/7; some sample positions then differ by an ulp
    x32 = np.random.default_rng(0).standard_normal((1, 1, 10, 12)).astype(np.float32)
    r32 = np.array([[1.3, 2.7, 1.9, 3.1]], dtype=np.float32)
    kw = dict(output_height=3, output_width=7, sampling_ratio=2, spatial_scale=0.7,
              coordinate_transformation_mode="output_half_pixel")
    a = onnx_roi_align(x32, r32, bi, **kw)
    b = onnx_roi_align(x32, r32, bi, evaluator="onnx_reference", **kw)
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(x32).max())


def test_onnx_roi_align_bad_input():
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"`coordinate_transformation_mode` exists from opset 16"):
        onnx_roi_align(x, np.zeros((0, 4)), np.zeros(0, np.int64), coordinate_transformation_mode="half_pixel",
                       opset=10)
    with pytest.raises(ValueError, match=r"`batch_indices` must lie in \[0, 1\)"):
        onnx_roi_align(x, np.zeros((1, 4)), np.array([1]))
    with pytest.raises(ValueError, match=r"`evaluator`"):
        onnx_roi_align(x, np.zeros((0, 4)), np.zeros(0, np.int64), evaluator="tensorrt")
    with pytest.raises(ValueError, match=r"`sampling_ratio` must be >= 0"):
        onnx_roi_align(x, np.zeros((0, 4)), np.zeros(0, np.int64), sampling_ratio=-1)


# --------------------------------------------------------------------------------------------------
# RoI pooling
# --------------------------------------------------------------------------------------------------

def test_c_round_halves_away_from_zero():
    v = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, 2.4999998, -1.2])
    np.testing.assert_array_equal(c_round(v), [1, 2, 3, -1, -3, 0, 2, -1])
    assert np.round(2.5) == 2.0            # NumPy rounds halves to even; C round() does not


def test_roi_pool_golden():
    # ramp 10 y + x on 4x4, RoI (0.4, 0.6)-(2.5, 2.5), scale 1: C round gives x1 = 0, y1 = 1, x2 = 3
    # (2.5 away from zero; np.round would give 2), y2 = 3 -> w = 3 - 0 + 1 = 4, h = 3 - 1 + 1 = 3.
    # 2x2 bins: bin_h = 1.5: rows [floor(0), ceil(1.5)) + 1 = {1, 2} and [floor(1.5), ceil(3)) + 1 = {2, 3}
    # (they overlap in row 2); bin_w = 2: cols {0, 1}, {2, 3}. Maxima: 21, 23, 31, 33.
    y, cache = roi_pool_forward(_ramp(), np.array([[0, 0.4, 0.6, 2.5, 2.5]]), 2)
    np.testing.assert_array_equal(y[0, 0], [[21.0, 23.0], [31.0, 33.0]])
    np.testing.assert_array_equal(cache.argmax[0, 0], [[2 * 4 + 1, 2 * 4 + 3], [3 * 4 + 1, 3 * 4 + 3]])
    # a RoI outside the map: every bin clipped to nothing -> 0 and argmax -1
    y2, c2 = roi_pool_forward(_ramp(), np.array([[0, 10, 10, 12, 12.0]]), 2)
    assert not y2.any() and (c2.argmax == -1).all()
    # ties: a constant map -> the first element of each bin (row-major) is the argmax
    y3, c3 = roi_pool_forward(np.ones((1, 1, 4, 4)), np.array([[0, 0, 0, 3, 3.0]]), 2)
    np.testing.assert_array_equal(c3.argmax[0, 0], [[0, 2], [8, 10]])


def test_roi_pool_float64_values_below_minus_flt_max_are_never_selected():
    # the kernel starts from -FLT_MAX even for double: a bin holding only -1e300 outputs -FLT_MAX, argmax -1
    x = np.full((1, 1, 2, 2), -1e300)
    y, c = roi_pool_forward(x, np.array([[0, 0, 0, 1, 1.0]]), 1)
    assert y[0, 0, 0, 0] == -np.finfo(np.float32).max and c.argmax[0, 0, 0, 0] == -1


@settings(max_examples=_examples(40))
@given(case=rsr.roi_pool_inputs(max_n=6, max_output=3))
def test_roi_pool_matches_loop_reference(case):
    y, cache = roi_pool_forward(case["features"], case["rois"], case["output_size"], case["spatial_scale"])
    ref, arg = roi_pool_reference(case["features"], case["rois"], case["output_size"], case["spatial_scale"])
    _bits_equal(y, ref)
    np.testing.assert_array_equal(cache.argmax, arg)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
    _bits_equal(roi_pool_backward(g, cache).dfeatures,
                roi_pool_backward_reference(g, case["features"].shape, case["rois"], arg))


@settings(max_examples=_examples(60))
@given(case=rsr.roi_pool_inputs(max_n=8))
def test_roi_pool_matches_torchvision_bitwise(case):
    torch, ops = _torch_ops()
    xt = torch.from_numpy(case["features"].copy()).requires_grad_()
    yt = ops.roi_pool(xt, torch.from_numpy(case["rois"].copy()), case["output_size"], case["spatial_scale"])
    y, cache = roi_pool_forward(case["features"], case["rois"], case["output_size"], case["spatial_scale"])
    _bits_equal(y, yt.detach().numpy())
    g = np.random.default_rng(2).standard_normal(y.shape).astype(y.dtype)
    yt.backward(torch.from_numpy(g))
    _bits_equal(roi_pool_backward(g, cache).dfeatures, xt.grad.numpy())


def test_roi_pool_gradcheck():
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) * 0.01      # distinct values: no ties
    rois = np.array([[0, 0.3, 1.2, 4.6, 5.1], [1, 2, 0, 5, 6.0], [1, 9, 9, 12, 12.0]])
    check_gradients(roi_pool_forward, roi_pool_backward, (x, rois, (2, 3)), rng=0, wrt=["features"])


def test_roi_pool_bad_input():
    with pytest.raises(ValueError, match=r"`boxes`.*NaN"):
        roi_pool(np.zeros((1, 1, 3, 3)), np.array([[0, np.nan, 0, 1, 1]]), 2)
    with pytest.raises(ValueError, match=r"`spatial_scale` must be > 0"):
        roi_pool(np.zeros((1, 1, 3, 3)), np.zeros((0, 5)), 2, 0.0)
    with pytest.raises(ValueError, match=r"`output_size` must be >= 1"):
        roi_pool(np.zeros((1, 1, 3, 3)), np.zeros((0, 5)), -1)
    with pytest.raises(TypeError, match=r"`cache` must be the RoIPoolCache"):
        roi_pool_backward(np.zeros((0, 1, 1, 1)), object())


# --------------------------------------------------------------------------------------------------
# TF crop_and_resize and the TF OD API crop-then-max-pool (golden vectors: TF is not a refdet extra)
# --------------------------------------------------------------------------------------------------

def test_crop_and_resize_golden():
    img = _ramp(3, 3)                          # 3x3 ramp: in_y/in_x map box corners onto pixel centres
    # [0, 0, 1, 1] with crop 3x3: in_y = 0 + y * (1 * 2 / 2) = y -> the image itself
    np.testing.assert_array_equal(crop_and_resize(img, [[0, 0, 1, 1.0]], [0], 3)[0], img[0])
    # [0.25, 0.5, 0.75, 1.0], crop 2x2: in_y = 0.25 * 2 + y * 0.5 * 2 / 1 = 0.5, 1.5; in_x = 1, 2
    # -> 10 * 0.5 + 1 = 6, 7; 16, 17
    np.testing.assert_array_equal(crop_and_resize(img, [[0.25, 0.5, 0.75, 1.0]], [0], 2)[0, 0], [[6, 7], [16, 17]])
    # crop 1x1 samples the box centre: in_y = 0.5 * (0.25 + 0.75) * 2 = 1, in_x = 0.5 * 1.5 * 2 = 1.5 -> 11.5
    assert crop_and_resize(img, [[0.25, 0.5, 0.75, 1.0]], [0], 1)[0, 0, 0, 0] == 11.5
    # beyond the image: in_y = 1.2 * 2 = 2.4 > H - 1 -> extrapolation_value for the whole row
    out = crop_and_resize(img, [[1.2, 0, 1.4, 1.0]], [0], (1, 2), extrapolation_value=-7)
    np.testing.assert_array_equal(out[0, 0], [[-7, -7]])
    # nearest: in_x = 1.5 rounds away from zero to 2, in_y = 1: pixel (1, 2) = 12
    assert crop_and_resize(img, [[0.25, 0.5, 0.75, 1.0]], [0], 1, method="nearest")[0, 0, 0, 0] == 12
    # a flipped box flips the crop
    np.testing.assert_array_equal(crop_and_resize(img, [[1, 1, 0, 0.0]], [0], 3)[0, 0], img[0, 0, ::-1, ::-1])


def test_crop_and_resize_nhwc_and_normalized_boxes():
    img = _ramp(5, 6, C=2)
    b = np.array([[0.1, 0.2, 0.7, 0.9]])
    nchw = crop_and_resize(img, b, [0], (3, 4))
    nhwc = crop_and_resize(img.transpose(0, 2, 3, 1), b, [0], (3, 4), data_format="NHWC")
    _bits_equal(nhwc, np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)))
    # TF OD API normalisation multiplies by 1 / height and 1 / width: x (10, 20)-(30, 60) in a 100x200 image
    np.testing.assert_allclose(tf_normalized_boxes([[20, 10, 60, 30.0]], (100, 200)), [[0.1, 0.1, 0.3, 0.3]])
    r = tf_normalized_boxes(np.array([[3, 5, 7, 11]], np.float32), (7, 3))
    assert r.dtype == np.float32 and r[0, 0] == np.float32(5) * (np.float32(1) / np.float32(7))


@settings(max_examples=_examples(40))
@given(boxes=rsr.crop_boxes(grid=1 / 16), method=st.sampled_from(("bilinear", "nearest")),
       size=st.tuples(st.integers(1, 4), st.integers(1, 4)), dtype=st.sampled_from((np.float32, np.float64)))
def test_crop_and_resize_matches_loop_reference(boxes, method, size, dtype):
    img = np.random.default_rng(len(boxes)).standard_normal((2, 2, 5, 6)).astype(dtype)
    bi = np.arange(len(boxes)) % 2
    out = crop_and_resize(img, boxes, bi, size, method=method, extrapolation_value=0.25)
    _bits_equal(out, crop_and_resize_reference(img, boxes.astype(dtype), bi, size, method, 0.25))


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("crop_size", [(3, 4), (1, 1), (2, 1)])
def test_crop_and_resize_gradcheck(method, crop_size):
    img = np.random.default_rng(4).standard_normal((2, 2, 5, 6))
    # corners chosen so that no in_y / in_x is an integer (where floor and ceil meet: a kink)
    boxes = np.array([[0.13, 0.21, 0.77, 0.93], [-0.2, 0.11, 0.57, 1.3], [0.91, 0.83, 0.07, 0.29]])
    bi = np.array([0, 1, 1])
    # nearest: the image gradient is exact; the boxes get TF's bilinear approximation (not the derivative)
    wrt = ["image", "boxes"] if method == "bilinear" else ["image"]
    check_gradients(crop_and_resize_forward, crop_and_resize_backward, (img, boxes, bi, crop_size),
                    kwargs=dict(method=method, extrapolation_value=0.5), rng=0, wrt=wrt)


def test_crop_and_resize_nearest_box_gradient_is_the_bilinear_one():
    img = np.random.default_rng(5).standard_normal((1, 2, 5, 6))
    boxes = np.array([[0.13, 0.21, 0.77, 0.93]])
    g = np.random.default_rng(6).standard_normal((1, 2, 3, 4))
    _, cb = crop_and_resize_forward(img, boxes, [0], (3, 4))
    _, cn = crop_and_resize_forward(img, boxes, [0], (3, 4), method="nearest")
    _bits_equal(crop_and_resize_backward(g, cn).dboxes, crop_and_resize_backward(g, cb).dboxes)


def test_tf_crop_and_pool_golden_and_gradcheck():
    # 14x14 crop of a ramp over a 28x28 map with box [0, 0, 1, 1]: in_y = y * (1 * 27 / 13); the 2x2 max
    # pool keeps the larger (odd) row and column of each pair: out[i, j] = 10 * in_y(2i+1) + in_x(2j+1).
    # Except the last one: in float64 13 * (27 / 13) = 27.000000000000004 > H - 1 = 27, so crop row and
    # column 13 are extrapolated (0) and the pool keeps row / column 12; in float32 13 * float32(27 / 13)
    # = 27.0000007 rounds to 27.0 exactly and stays inside.
    pos = (2 * np.arange(7) + 1) * 27 / 13
    pos64 = pos.copy()
    pos64[-1] = 12 * 27 / 13
    y, _ = tf_crop_and_pool_forward(_ramp(28, 28), np.array([[0, 0, 1, 1.0]]), [0])
    assert y.shape == (1, 1, 7, 7)
    np.testing.assert_allclose(y[0, 0], 10 * pos64[:, None] + pos64[None, :], rtol=1e-13)
    y32, _ = tf_crop_and_pool_forward(_ramp(28, 28, dtype=np.float32), np.array([[0, 0, 1, 1]], np.float32), [0])
    np.testing.assert_allclose(y32[0, 0], 10 * pos[:, None] + pos[None, :], rtol=1e-6)
    img = np.random.default_rng(7).standard_normal((2, 2, 6, 5))
    boxes = np.array([[0.13, 0.21, 0.77, 0.93], [0.05, 0.11, 0.57, 0.83]])
    check_gradients(tf_crop_and_pool_forward, tf_crop_and_pool_backward, (img, boxes, [0, 1]),
                    kwargs=dict(crop_size=6), rng=0)


def test_crop_and_resize_bad_input():
    img = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"`boxes`.*NaN"):
        crop_and_resize(img, [[0, np.nan, 1, 1]], [0], 2)
    with pytest.raises(ValueError, match=r"`box_indices` must lie in \[0, 1\)"):
        crop_and_resize(img, [[0, 0, 1, 1.0]], [3], 2)
    with pytest.raises(TypeError, match=r"`box_indices` must be an integer array"):
        crop_and_resize(img, [[0, 0, 1, 1.0]], [0.5], 2)
    with pytest.raises(ValueError, match=r"`crop_size` must be >= 1"):
        crop_and_resize(img, [[0, 0, 1, 1.0]], [0], 0)
    with pytest.raises(ValueError, match=r"`method` must be one of 'bilinear', 'nearest'"):
        crop_and_resize(img, [[0, 0, 1, 1.0]], [0], 2, method="bicubic")


# --------------------------------------------------------------------------------------------------
# FPN level assignment and multi-scale RoIAlign
# --------------------------------------------------------------------------------------------------

def _square(side, dtype=np.float32):
    return np.array([[0, 0, side, side]], dtype=dtype)


def test_assign_roi_levels_golden():
    # torchvision: floor(4 + log2(s / 224) + 1e-6): 112 -> 3, 224 -> 4, 448 -> 5, clamped to [2, 5],
    # returned counted from min_level 2; 223 -> 4 + log2(0.9955) = 3.9936 -> 3
    sides = [10, 111, 112, 223, 224, 447, 448, 5000]
    b = np.concatenate([_square(s) for s in sides])
    assert assign_roi_levels(b).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # mmdet: floor(log2(s / 56 + 1e-6)) from the finest level: the same boundaries 112, 224, 448
    assert assign_roi_levels(b, convention="mmdet").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # the +1 pixel convention (Detectron1): a 111-pixel box is 112 wide -> level 3
    assert assign_roi_levels(_square(111), convention="caffe").tolist() == [1]
    # zero area -> log2(0) = -inf -> the finest level; a reversed box (NaN size) -> no level
    assert assign_roi_levels(np.array([[5, 5, 5, 9.0], [9, 0, 5, 4.0]])).tolist() == [0, -1]


def test_assign_roi_levels_eps_placement_decides_boundary_boxes():
    # two float32 steps below 224: s = 223.99997, log2(s / 224) = -1.7e-7, 4 - 1.7e-7 = 3.9999998 in
    # float32: torchvision's +1e-6 after the log lifts it to 4.000001 -> level 4; the paper's formula (no
    # eps) and detectron2's 1e-8 inside the log (below float32 resolution near 1) keep it at level 3.
    # (One step below, 4 - 8.6e-8 already rounds to 4.0: every rule says level 4.)
    s = np.nextafter(np.nextafter(np.float32(224), np.float32(0)), np.float32(0))
    b = np.array([[0, 0, s, s]], dtype=np.float32)
    assert assign_roi_levels(b).tolist() == [2]
    assert assign_roi_levels(b, convention="paper").tolist() == [1]
    assert assign_roi_levels(b, convention="detectron2").tolist() == [1]
    assert assign_roi_levels(b, convention="paper", eps_outside=1e-6).tolist() == [2]


@settings(max_examples=_examples(60))
@given(boxes=rsr.level_boxes(), dtype=st.sampled_from((np.float32, np.float64)))
def test_assign_roi_levels_matches_reference_and_torchvision(boxes, dtype):
    torch, _ = _torch_ops()
    from torchvision.ops.poolers import LevelMapper
    boxes = boxes.astype(dtype)
    for conv, kw in (("torchvision", dict(eps_outside=1e-6)), ("detectron2", dict(eps_inside=1e-8)),
                     ("mmdet", dict(canonical_scale=56.0, canonical_level=None, eps_inside=1e-6)),
                     ("caffe", dict(eps_inside=1e-6, plus_one=True)), ("paper", {})):
        got = assign_roi_levels(boxes, convention=conv)
        assert got.tolist() == [roi_level_reference(b, **kw) for b in boxes], conv
    tb = torch.from_numpy(boxes)
    tv = LevelMapper(2, 5)([tb]).numpy()
    got = assign_roi_levels(boxes)
    ok = got >= 0
    np.testing.assert_array_equal(got[ok], tv[ok])     # NaN sizes: torch casts NaN to an arbitrary int64
    # detectron2's assign_boxes_to_levels and mmdet's map_roi_levels, written out in torch
    sizes = torch.sqrt((tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1]))
    d2 = torch.clamp(torch.floor(4 + torch.log2(sizes / 224 + 1e-8)), min=2, max=5) - 2
    mm = torch.clamp(torch.floor(torch.log2(sizes / 56 + 1e-6)), min=0, max=3)
    np.testing.assert_array_equal(assign_roi_levels(boxes, convention="detectron2")[ok], d2.numpy()[ok])
    np.testing.assert_array_equal(assign_roi_levels(boxes, convention="mmdet")[ok], mm.numpy()[ok])


def test_infer_level_scales_matches_torchvision():
    torch, ops = _torch_ops()
    from torchvision.ops.poolers import _setup_scales
    for feats, imgs in (([(200, 304), (100, 152), (50, 76), (25, 38)], [(800, 1216), (760, 1100)]),
                        ([(13, 13), (7, 7)], [(100, 100)]), ([(34, 50)], [(100, 150), (99, 149)])):
        tfeats = [torch.zeros(1, 1, h, w) for h, w in feats]
        scales, mapper = _setup_scales(tfeats, imgs, 224, 4)
        assert infer_level_scales(feats, imgs) == (scales, mapper.k_min, mapper.k_max)
    with pytest.raises(ValueError, match=r"`image_sizes` must be a non-empty list"):
        infer_level_scales([(8, 8)], [])


@settings(max_examples=_examples(30))
@given(boxes=rsr.level_boxes(max_n=12), dtype=st.sampled_from((np.float32, np.float64)),
       seed=st.integers(0, 2 ** 16))
def test_multiscale_roi_align_matches_torchvision_bitwise(boxes, dtype, seed):
    torch, ops = _torch_ops()
    from collections import OrderedDict
    rng = np.random.default_rng(seed)
    img = [(320, 480), (300, 470)]
    feats = [rng.standard_normal((2, 3, 320 // s, 480 // s)).astype(dtype) for s in (4, 8, 16, 32)]
    boxes = (boxes % 400).astype(dtype)
    per_image = [boxes[: len(boxes) // 2], boxes[len(boxes) // 2:]]
    m = ops.MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)
    xt = [torch.from_numpy(f).requires_grad_() for f in feats]
    yt = m(OrderedDict(zip(["p2", "p3", "p4", "p5"], xt)), [torch.from_numpy(b) for b in per_image], img)
    y, cache = multiscale_roi_align_forward(feats, per_image, 7, image_sizes=img)
    nan = cache.levels < 0                            # torchvision's level is garbage there; ours is 0 output
    _bits_equal(y[~nan], yt.detach().numpy()[~nan])
    assert not y[nan].any()
    g = rng.standard_normal(y.shape).astype(dtype)
    g[nan] = 0
    yt.backward(torch.from_numpy(g))
    for d, t in zip(multiscale_roi_align_backward(g, cache).dfeatures, xt):
        _bits_equal(d, t.grad.numpy())


def test_multiscale_roi_align_conventions_and_gradcheck(rng):
    feats = [rng.standard_normal((1, 2, 16 // s, 16 // s)) for s in (1, 2)]
    boxes = [np.array([[1.3, 2.1, 5.7, 4.9], [0.7, 0.9, 14.2, 13.6]])]
    y, cache = multiscale_roi_align_forward(feats, boxes, 2, scales=[1.0, 0.5], min_level=3,
                                            canonical_scale=8.0, canonical_level=4)
    # sizes sqrt(4.4 * 2.8) = 3.5 -> floor(4 + log2(3.5 / 8)) = 2 -> clamped to 3 (index 0); 13.1 -> 4
    assert cache.levels.tolist() == [0, 1]
    np.testing.assert_array_equal(y[:1], roi_align(feats[0], np.c_[[0], boxes[0][:1]], 2, 1.0, 2))
    np.testing.assert_array_equal(y[1:], roi_align(feats[1], np.c_[[0], boxes[0][1:]], 2, 0.5, 2))
    check_gradients(lambda f0, f1: multiscale_roi_align_forward([f0, f1], boxes, 2, scales=[1.0, 0.5],
                                                                min_level=3, canonical_scale=8.0,
                                                                canonical_level=4),
                    lambda d, c: tuple(multiscale_roi_align_backward(d, c).dfeatures), tuple(feats), rng=0)
    # detectron2: aligned RoIAlign with the adaptive grid on the same levels
    y2, _ = multiscale_roi_align_forward(feats, boxes, 2, scales=[1.0, 0.5], convention="detectron2",
                                         min_level=3, canonical_scale=8.0)
    np.testing.assert_array_equal(y2[:1], roi_align(feats[0], np.c_[[0], boxes[0][:1]], 2, 1.0, 0, True))
    with pytest.raises(ValueError, match=r"pass `scales`"):
        multiscale_roi_align(feats, boxes)
    with pytest.raises(ValueError, match=r"`scales` must give one spatial_scale per feature level"):
        multiscale_roi_align(feats, boxes, scales=[1.0])
    with pytest.raises(TypeError, match=r"`features` must be a list"):
        multiscale_roi_align(feats[0], boxes, scales=[1.0])


def test_roi_levels_bad_input():
    with pytest.raises(ValueError, match=r"`boxes`.*NaN"):
        assign_roi_levels(np.array([[0, 0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"`max_level` must be >= `min_level`"):
        assign_roi_levels(np.zeros((1, 4)), min_level=5, max_level=2)
    with pytest.raises(ValueError, match=r"'tf'"):
        assign_roi_levels(np.zeros((1, 4)), convention="tf")
    with pytest.raises(ValueError, match=r"`canonical_scale` must be"):
        assign_roi_levels(np.zeros((1, 4)), canonical_scale=-1.0)


def test_hypothesis_strategy_covers_the_edge_kinds():
    # every kind of RoI the strategies promise actually occurs
    seen = set()

    @settings(max_examples=80, derandomize=True)
    @given(rsr.roi_boxes(max_n=6, map_size=(6, 6), spatial_scale=0.5))
    def collect(r):
        w, h = r[:, 3] - r[:, 1], r[:, 4] - r[:, 2]
        for kind, hit in (("zero", (w == 0) | (h == 0)), ("reversed", w < 0),
                          ("sub_pixel", (w > 0) & (w < 2) & (h > 0) & (h < 2)),   # < 1 map pixel at scale 1/2
                          ("outside", (r[:, 1] > 12) | (r[:, 3] < 0))):
            if hit.any():
                seen.add(kind)
    collect()
    assert seen == {"zero", "reversed", "sub_pixel", "outside"}


def test_no_warnings_for_degenerate_rois():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roi_align(_ramp(), np.array([[0, 5, 5, 1, 1.0], [0, 1, 1, 1, 1.0]]), 2, 1.0, -1, True)
        assign_roi_levels(np.array([[5, 5, 1, 9.0], [1, 1, 1, 1.0]]))
        roi_pool(_ramp(), np.array([[0, 5, 5, 1, 1.0]]), 2)
