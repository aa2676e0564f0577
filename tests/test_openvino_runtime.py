"""refdet.runtimes.openvino against OpenVINO's CPU plugin (graphs built with the opset-9 Python API):
NonMaxSuppression-9, PriorBox, PriorBoxClustered, FakeQuantize; golden cases, bad input and the
conformance checks of refdet.testing.conformance_runtimes."""
import numpy as np
import pytest
from hypothesis import given

from refdet.runtimes import openvino as V
from refdet.testing import conformance_runtimes as cr

pytest.importorskip("hypothesis")
from refdet.testing import strategies_runtimes as srt  # noqa: E402


def _ov():
    pytest.importorskip("openvino")
    from refdet.runtimes import adapters
    return adapters


# ---------------------------------------------------------------------------------------------------
# NonMaxSuppression-9
# ---------------------------------------------------------------------------------------------------

@given(srt.openvino_nms_cases())
def test_nms_equals_openvino_cpu(case):
    ad = _ov()
    res = V.non_max_suppression(**case)
    ind, sc, valid = ad.openvino_nms(**case)
    np.testing.assert_array_equal(res.selected_indices, ind)
    # OpenVINO bug: when min(max_output_boxes_per_class, N) == 0 the CPU plugin returns before writing
    # valid_outputs (an uninitialised int, e.g. -106713488, found by hypothesis); refdet says 0
    no_room = min(case["max_output_boxes_per_class"], case["boxes"].shape[1]) == 0
    assert res.valid_outputs == valid or (no_room and len(ind) == 0)
    np.testing.assert_array_equal(res.selected_scores[:, :2], sc[:, :2])
    if case["soft_nms_sigma"] == 0:
        np.testing.assert_array_equal(res.selected_scores, sc)        # input scores, bit for bit
    else:
        np.testing.assert_allclose(res.selected_scores[:, 2], sc[:, 2], rtol=4 * np.finfo(np.float32).eps)


def _one(boxes, scores, **kw):
    args = dict(max_output_boxes_per_class=10, iou_threshold=0.5, score_threshold=0.0, soft_nms_sigma=0.0)
    args.update(kw)
    return V.non_max_suppression(np.asarray(boxes, np.float32)[None], np.asarray(scores, np.float32)[None, None],
                                 **args)


def test_nms_inclusive_threshold_and_threshold_zero():
    sq = [[0, 0, 10, 10], [0, 0, 5, 10], [20, 20, 30, 30]]
    # IoU 50 / 100 = 0.5 >= 0.5: suppressed (onnxruntime keeps it: '>')
    np.testing.assert_array_equal(_one(sq, [0.9, 0.8, 0.7]).selected_indices[:, 2], [0, 2])
    # threshold 0: the disjoint box has IoU 0 >= 0 and goes too
    np.testing.assert_array_equal(_one(sq, [0.9, 0.8, 0.7], iou_threshold=0.0).selected_indices[:, 2], [0])


def test_nms_openvino_profile_matches_for_positive_thresholds():
    from refdet.nms import nms
    rng = np.random.default_rng(3)
    for _ in range(30):
        b = np.sort(rng.integers(0, 12, (20, 2, 2)), axis=1).reshape(20, 4)[:, [0, 2, 1, 3]].astype(np.float32)
        b[:, 2:] += 1                                          # positive areas
        s = rng.choice([0.2, 0.5, 0.7], 20).astype(np.float32)
        t = float(rng.choice([0.25, 0.5, 1 / 3]))
        np.testing.assert_array_equal(_one(b, s, max_output_boxes_per_class=100, iou_threshold=t,
                                           score_threshold=-1.0).selected_indices[:, 2],
                                      nms(b, s, t, convention="openvino"))


def test_nms_zero_area_boxes():
    z = [[3, 3, 3, 3], [3, 3, 3, 3], [0, 0, 2, 2]]
    # CPU kernel: the two zero-area boxes have IoU 0/0 = NaN (kept); box 2 has IoU 0/4 = 0 >= 0 (dropped)
    np.testing.assert_array_equal(_one(z, [0.9, 0.8, 0.7], iou_threshold=0.0).selected_indices[:, 2], [0, 1])
    # the reference guard gives IoU 0 for both pairs: 0 >= 0 drops boxes 1 and 2
    np.testing.assert_array_equal(_one(z, [0.9, 0.8, 0.7], iou_threshold=0.0,
                                       degenerate="reference").selected_indices[:, 2], [0])
    # Soft-NMS: the NaN weight becomes +inf on the CPU plugin: box 1 is returned first with score +inf
    soft = _one(z, [0.9, 0.8, 0.7], soft_nms_sigma=0.5)
    assert soft.selected_indices[0, 2] == 1 and soft.selected_scores[0, 2] == np.inf


def test_nms_soft_weight_is_half_over_sigma():
    # IoU 0.5, sigma 0.5: 0.8 * exp(-0.5 * 0.25 / 0.5) = 0.8 * exp(-0.25)
    r = _one([[0, 0, 10, 10], [0, 0, 5, 10]], [0.9, 0.8], soft_nms_sigma=0.5)
    assert r.selected_scores[1, 2] == np.float32(0.8) * np.float32(np.exp(np.float32(-0.25)))


def test_nms_sort_result_descending_orders_ties_by_batch_class_box():
    b = np.array([[[0, 0, 1, 1], [5, 5, 6, 6]]] * 2, np.float32)
    s = np.array([[[0.5, 0.9], [0.5, 0.4]], [[0.9, 0.5], [0.5, 0.5]]], np.float32)
    r = V.non_max_suppression(b, s, 10, 0.5, 0.0, sort_result_descending=True)
    assert r.selected_indices.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 1], [1, 1, 0],
                                           [1, 1, 1], [0, 1, 1]]
    r = V.non_max_suppression(b, s, 10, 0.5, 0.0, sort_result_descending=False)
    assert r.selected_indices[:, :2].tolist() == [[0, 0], [0, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 1], [1, 1]]


def test_nms_padding_to_the_spec_shape():
    r = _one([[0, 0, 10, 10], [0, 0, 5, 10]], [0.9, 0.8], max_output_boxes_per_class=5)
    p = V.pad_nms_result(r, 1, 1, 2, 5)
    assert p.selected_indices.shape == (2, 3) and p.valid_outputs == 1
    assert p.selected_indices[1].tolist() == [-1, -1, -1] and p.selected_scores[1].tolist() == [-1, -1, -1]


def test_nms_bad_input():
    b = np.zeros((1, 2, 4), np.float32)
    s = np.zeros((1, 1, 2), np.float32)
    with pytest.raises(ValueError, match="soft_nms_sigma.*OpenVINO"):
        V.non_max_suppression(b, s, 1, 0.5, 0.0, -1.0)
    with pytest.raises(ValueError, match="boxes"):
        V.non_max_suppression(np.zeros((2, 4)), s, 1)
    with pytest.raises(ValueError, match="scores"):
        V.non_max_suppression(b, np.zeros((1, 1, 3)), 1)
    with pytest.raises(ValueError, match="box_encoding"):
        V.non_max_suppression(b, s, 1, box_encoding="xyxy")
    with pytest.raises(ValueError, match="max_output_boxes_per_class"):
        V.non_max_suppression(b, s, -1)


def test_nms_conformance_passes_for_openvino_and_names_the_onnx_rule():
    ad = _ov()
    assert cr.check_openvino_nms(ad.openvino_nms, n_cases=40).ok

    def onnx_like(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold, soft_nms_sigma,
                  box_encoding, sort_result_descending):
        from refdet.nms import onnx_non_max_suppression
        sel = onnx_non_max_suppression(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold,
                                       center_point_box=int(box_encoding == "center"))
        return sel, np.zeros((len(sel), 3), np.float32)
    rep = cr.check_openvino_nms(onnx_like, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "IoU > threshold" in rep.first_mismatch


# ---------------------------------------------------------------------------------------------------
# PriorBox, PriorBoxClustered
# ---------------------------------------------------------------------------------------------------

@given(srt.openvino_prior_box_cases())
def test_prior_box_equals_openvino_bit_for_bit(case):
    ad = _ov()
    got = V.prior_box(case["layer_shape"], case["image_shape"], **case["attrs"])
    want = ad.openvino_prior_box(case["layer_shape"], case["image_shape"], case["attrs"])
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@given(srt.openvino_prior_box_clustered_cases())
def test_prior_box_clustered_equals_openvino_bit_for_bit(case):
    ad = _ov()
    got = V.prior_box_clustered(case["layer_shape"], case["image_shape"], **case["attrs"])
    want = ad.openvino_prior_box(case["layer_shape"], case["image_shape"], case["attrs"], clustered=True)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_prior_box_order_and_ratios():
    # min 20, max 60, ar 2 on a 100 x 100 image: squares 20 and sqrt(1200) = 34.64, then 20 sqrt2 x 20 / sqrt2
    pb = V.prior_box((1, 1), (100, 100), min_size=[20], max_size=[60], aspect_ratio=[2, 2.0000001, 1.0], flip=True)
    boxes = pb[0].reshape(-1, 4)
    w = (boxes[:, 2] - boxes[:, 0]) * 100
    np.testing.assert_allclose(w, [20, np.sqrt(1200), 20 * np.sqrt(2), 20 / np.sqrt(2)], rtol=1e-5)
    caffe = V.prior_box((1, 1), (100, 100), min_size=[20], max_size=[60], aspect_ratio=[2], flip=True,
                        min_max_aspect_ratios_order=False)[0].reshape(-1, 4)
    np.testing.assert_array_equal(caffe[[0, 3, 1, 2]], boxes)       # the sqrt(min * max) square comes last
    np.testing.assert_array_equal(pb[1], np.full(16, np.float32(0.1)))


def test_prior_box_step_zero_ignores_offset():
    # step 0: centres (w + 0.5) * IW / W whatever the offset
    a = V.prior_box((2, 2), (64, 64), min_size=[8], offset=0.0)
    b = V.prior_box((2, 2), (64, 64), min_size=[8], offset=0.5)
    np.testing.assert_array_equal(a, b)
    c = V.prior_box((2, 2), (64, 64), min_size=[8], offset=0.0, step=32)
    assert c[0, 0] == np.float32(-4 / 64)                       # centre 0 with offset 0


def test_prior_box_clustered_single_step_leaves_other_axis_at_zero():
    pbc = V.prior_box_clustered((2, 2), (32, 32), widths=[4], heights=[4], step_widths=8, clip=False)
    ymins = pbc[0].reshape(-1, 4)[:, 1]
    np.testing.assert_array_equal(ymins, np.float32(-2 / 32))      # every centre at y = 0.5 * 0


def test_prior_box_bad_combinations_name_openvino():
    with pytest.raises(ValueError, match="OpenVINO PriorBox"):
        V.prior_box((2, 2), (64, 64), min_size=[8], max_size=[16, 32])
    with pytest.raises(ValueError, match="density.*OpenVINO"):
        V.prior_box((2, 2), (64, 64), fixed_size=[8, 16], density=[1])
    with pytest.raises(ValueError, match="widths.*heights.*OpenVINO"):
        V.prior_box_clustered((2, 2), (64, 64), widths=[8, 9], heights=[8])
    with pytest.raises(ValueError, match="variance"):
        V.prior_box_clustered((2, 2), (64, 64), widths=[8], heights=[8], variance=[0.1, 0.2])
    with pytest.raises(ValueError, match="layer_shape"):
        V.prior_box((0, 2), (64, 64), min_size=[8])


def test_prior_box_conformance_names_the_order():
    def wrong(ls, im, attrs):
        a = dict(attrs)
        a["min_max_aspect_ratios_order"] = not a.get("min_max_aspect_ratios_order", True)
        return V.prior_box(ls, im, **a)
    rep = cr.check_openvino_prior_box(wrong, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "min_max_aspect_ratios_order reversed" in rep.first_mismatch
    ad = _ov()
    assert cr.check_openvino_prior_box(ad.openvino_prior_box, n_cases=30).ok
    assert cr.check_openvino_prior_box_clustered(
        lambda ls, im, a: ad.openvino_prior_box(ls, im, a, clustered=True), n_cases=30).ok


# ---------------------------------------------------------------------------------------------------
# FakeQuantize
# ---------------------------------------------------------------------------------------------------

@given(srt.openvino_fake_quantize_cases())
def test_fake_quantize_equals_openvino_within_its_rounding(case):
    ad = _ov()
    got = V.fake_quantize(**case)
    want = ad.openvino_fake_quantize(**case)
    tol = cr.fake_quantize_tolerance(case, got)
    assert np.all(np.abs(got.astype(np.float64) - want) <= tol)


def test_fake_quantize_golden():
    # 4 levels on [0, 3] -> [-1, 1]: index round((x - 0) / 3 * 3); 1.5 -> tie -> even index 2 -> 1/3
    y = V.fake_quantize(np.array([-5, 0, 1.4, 1.5, 2.5, 3, 9], np.float32), 0, 3, -1, 1, 4)
    np.testing.assert_allclose(y, [-1, -1, -1 / 3, 1 / 3, 1 / 3, 1, 1], rtol=0, atol=1e-6)
    # float64 in, float64 out
    assert V.fake_quantize(np.array([0.3]), 0, 1, 0, 1, 11).dtype == np.float64


def test_fake_quantize_ties_differ_from_quantize_linear_with_odd_zero_point():
    from refdet.quant.fake_quant import fake_quant_forward
    s, z = np.float32(0.1), 3
    x = np.array([0.05, 0.15, 0.25], np.float32)
    onnx_like = fake_quant_forward(x, s, z, qmin=0, qmax=255)[0]
    ov_like = V.fake_quantize(x, (0 - z) * s, (255 - z) * s, (0 - z) * s, (255 - z) * s, 256)
    np.testing.assert_allclose(onnx_like, [0.0, 0.2, 0.2], atol=1e-6)
    np.testing.assert_allclose(ov_like, [0.1, 0.1, 0.3], atol=1e-6)
    # an even zero point (or symmetric int8) gives the same ties
    ev = V.fake_quantize(x, (0 - 4) * s, (255 - 4) * s, (0 - 4) * s, (255 - 4) * s, 256)
    np.testing.assert_allclose(ev, fake_quant_forward(x, s, 4, qmin=0, qmax=255)[0], atol=1e-6)
    pytest.importorskip("openvino")
    np.testing.assert_allclose(_ov().openvino_fake_quantize(x, (0 - z) * s, (255 - z) * s, (0 - z) * s,
                                                            (255 - z) * s, 256), ov_like, atol=1e-6)


def test_fake_quantize_bad_input():
    with pytest.raises(ValueError, match="levels.*OpenVINO"):
        V.fake_quantize(np.zeros(3, np.float32), 0, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="broadcast.*OpenVINO"):
        V.fake_quantize(np.zeros((2, 3), np.float32), np.zeros(2), 1, 0, 1, 4)
    with pytest.raises(TypeError, match="x"):
        V.fake_quantize(np.zeros(3, np.int32), 0, 1, 0, 1, 4)


def test_fake_quantize_conformance_names_truncation():
    def trunc(x, input_low, input_high, output_low, output_high, levels):
        t = (x - input_low) / (input_high - input_low) * (levels - 1)
        y = np.trunc(t) / (levels - 1) * (output_high - output_low) + output_low
        return np.where(x <= input_low, output_low, np.where(x > input_high, output_high, y)).astype(np.float32)
    rep = cr.check_openvino_fake_quantize(trunc, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "truncated" in rep.first_mismatch
    assert cr.check_openvino_fake_quantize(_ov().openvino_fake_quantize, n_cases=30).ok


# ---------------------------------------------------------------------------------------------------
# ROIAlign
# ---------------------------------------------------------------------------------------------------

@given(srt.openvino_roi_align_cases())
def test_roi_align_equals_openvino(case):
    ad = _ov()
    got = V.roi_align(**case)
    want = ad.openvino_roi_align(**case)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    tol = 1e-5 * max(1.0, float(np.nanmax(np.abs(want), initial=1.0)))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=0, atol=tol)


def test_roi_align_modes_map_to_torchvision_and_tf():
    from refdet.roi.align import roi_align as tv
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    rois = np.array([[1.0, 1.5, 6.0, 5.0]], np.float32)
    boxes = np.concatenate([[[0.0]], rois], 1).astype(np.float32)
    np.testing.assert_array_equal(V.roi_align(x, rois, [0], 2, 2, 2, 0.5, "avg", "asymmetric"),
                                  tv(x, boxes, (2, 2), 0.5, 2, False))
    np.testing.assert_array_equal(V.roi_align(x, rois, [0], 2, 2, 2, 0.5, "avg", "half_pixel_for_nn"),
                                  tv(x, boxes, (2, 2), 0.5, 2, True))
    # half_pixel: (x + 0.5) * scale - 0.5, so at scale 1 the RoI is not shifted at all
    shifted = boxes.copy()
    shifted[:, 1:] += 0.5
    np.testing.assert_array_equal(V.roi_align(x, rois, [0], 2, 2, 2, 1.0, "avg", "half_pixel"),
                                  tv(x, shifted, (2, 2), 1.0, 2, True))


def test_roi_align_max_starts_at_zero():
    x = -np.ones((1, 1, 4, 4), np.float32)                      # every sample is -1
    out = V.roi_align(x, np.array([[0, 0, 3, 3]], np.float32), [0], 1, 1, 2, 1.0, "max", "asymmetric")
    assert out.ravel().tolist() == [0.0]
    assert V.roi_align(x, np.array([[0, 0, 3, 3]], np.float32), [0], 1, 1, 2, 1.0, "avg",
                       "asymmetric").ravel().tolist() == [-1.0]


def test_roi_align_zero_size_roi_is_nan_with_adaptive_grid():
    x = np.ones((1, 1, 4, 4), np.float32)
    out = V.roi_align(x, np.array([[2, 2, 2, 2]], np.float32), [0], 1, 1, 0, 1.0, "avg", "half_pixel_for_nn")
    assert np.isnan(out).all()
    out = V.roi_align(x, np.array([[2, 2, 2, 2]], np.float32), [0], 1, 1, 0, 1.0, "avg", "asymmetric")
    assert out.ravel().tolist() == [1.0]                         # asymmetric: size at least 1


def test_roi_align_bad_input():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="aligned_mode"):
        V.roi_align(x, np.zeros((1, 4)), [0], 1, 1, aligned_mode="aligned")
    with pytest.raises(ValueError, match="rois"):
        V.roi_align(x, np.zeros((1, 5)), [0], 1, 1)
    with pytest.raises(ValueError, match="pooled_h"):
        V.roi_align(x, np.zeros((1, 4)), [0], 0, 1)


def test_roi_align_conformance_names_half_pixel_confusion():
    def tv_half_pixel(features, rois, batch_indices, pooled_h, pooled_w, sampling_ratio, spatial_scale, mode,
                      aligned_mode):
        if aligned_mode == "half_pixel":
            aligned_mode = "half_pixel_for_nn"
        return V.roi_align(features, rois, batch_indices, pooled_h, pooled_w, sampling_ratio, spatial_scale, mode,
                           aligned_mode)
    rep = cr.check_openvino_roi_align(tv_half_pixel, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "half_pixel read as torchvision" in rep.first_mismatch
    assert cr.check_openvino_roi_align(_ov().openvino_roi_align, n_cases=30).ok


# ---------------------------------------------------------------------------------------------------
# ROIPooling
# ---------------------------------------------------------------------------------------------------

@given(srt.openvino_roi_pooling_cases())
def test_roi_pooling_equals_openvino(case):
    ad = _ov()
    got = V.roi_pooling(**case)
    want = ad.openvino_roi_pooling(**case)
    if case["method"] == "max":
        np.testing.assert_array_equal(got, want)                     # bit for bit
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max(initial=1.0))))


def test_roi_pooling_bilinear_is_crop_and_resize_on_normalised_boxes():
    f = np.zeros((1, 2, 8, 10), np.float32)
    f[0, 0] = np.arange(10)[None, :]                               # channel 0 = x, channel 1 = y
    f[0, 1] = np.arange(8)[:, None]
    out = V.roi_pooling(f, np.array([[0, 0.1, 0.2, 0.8, 0.6]], np.float32), (3, 2), 1.0, "bilinear")
    # x = 0.1 * 9 and 0.8 * 9; y = 0.2 * 7 + i * 0.4 * 7 / 2
    np.testing.assert_allclose(out[0, 0], [[0.9, 7.2]] * 3, atol=1e-5)
    np.testing.assert_allclose(out[0, 1, :, 0], [1.4, 2.8, 4.2], atol=1e-5)


def test_roi_pooling_bad_input():
    with pytest.raises(ValueError, match="rois"):
        V.roi_pooling(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 4)), (2, 2))
    with pytest.raises(ValueError, match="method"):
        V.roi_pooling(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 5)), (2, 2), method="avg")
    with pytest.raises(ValueError, match="batch"):
        V.roi_pooling(np.zeros((1, 1, 4, 4), np.float32), np.array([[0.5, 0, 0, 1, 1]]), (2, 2), method="bilinear")


def test_roi_pooling_conformance_names_swapped_axes():
    def swapped(features, rois, output_size, spatial_scale, method):
        return V.roi_pooling(features, rois[:, [0, 2, 1, 4, 3]], output_size, spatial_scale, method)
    rep = cr.check_openvino_roi_pooling(swapped, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "x and y swapped" in rep.first_mismatch
    assert cr.check_openvino_roi_pooling(_ov().openvino_roi_pooling, n_cases=30).ok


# ---------------------------------------------------------------------------------------------------
# Interpolate
# ---------------------------------------------------------------------------------------------------

@given(srt.openvino_interpolate_cases())
def test_interpolate_equals_openvino(case):
    ad = _ov()
    kw = {k: v for k, v in case.items() if k != "x"}
    got = V.interpolate(case["x"], **kw)
    want = ad.openvino_interpolate(case["x"], **kw)
    if case["mode"] in ("nearest", "bilinear_pillow", "bicubic_pillow"):
        np.testing.assert_array_equal(got, want)                     # bit for bit
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max(initial=1.0))))


def test_interpolate_nearest_float32_scale_tie_differs_from_onnxruntime():
    from refdet.onnx_ops.resize import resize
    col = np.arange(7, dtype=np.float32).reshape(1, 1, 7, 1)
    # asymmetric: 1 / float32(2 / 7) = 3.4999998 -> row 3 (the exact 3.5 rounds up to row 4)
    ov_rows = V.interpolate(col, sizes=[2, 1], axes=[2, 3], coordinate_transformation_mode="asymmetric",
                            nearest_mode="round_prefer_ceil").ravel()
    ort_rows = resize(col, sizes=np.array([2, 1]), axes=[2, 3], mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_ceil",
                      runtime="onnxruntime").ravel()
    assert ov_rows.tolist() == [0.0, 3.0] and ort_rows.tolist() == [0.0, 4.0]


def test_interpolate_bad_input():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="exactly one of `sizes` and `scales`"):
        V.interpolate(x, axes=[2, 3])
    with pytest.raises(ValueError, match="mode"):
        V.interpolate(x, sizes=[2, 2], axes=[2, 3], mode="bilinear")
    with pytest.raises(ValueError, match="sizes"):
        V.interpolate(x, sizes=[2], axes=[2, 3])


def test_interpolate_conformance_names_onnxruntime_rounding():
    from refdet.onnx_ops.resize import resize

    def ort_like(x, sizes, axes, mode, coordinate_transformation_mode, nearest_mode):
        if mode != "nearest" or nearest_mode == "simple":
            return V.interpolate(x, sizes=sizes, axes=axes, mode=mode,
                                 coordinate_transformation_mode=coordinate_transformation_mode, nearest_mode=nearest_mode)
        return resize(x, sizes=np.array(sizes), axes=axes, mode="nearest",
                      coordinate_transformation_mode=coordinate_transformation_mode, nearest_mode=nearest_mode,
                      runtime="onnxruntime")
    rep = cr.check_openvino_interpolate(ort_like, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "onnxruntime's nearest coordinates" in rep.first_mismatch
    assert cr.check_openvino_interpolate(_ov().openvino_interpolate, n_cases=30).ok


# ---------------------------------------------------------------------------------------------------
# refdet verify openvino / opencv
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, extra", [("openvino", "openvino"), ("opencv", "opencv")])
def test_verify_missing_runtime_is_one_line_naming_the_extra(capsys, monkeypatch, target, extra):
    from refdet import verify as vmod
    from refdet.cli import main
    monkeypatch.setattr(vmod, "_installed", lambda mods: False)
    assert main(["verify", target, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"pip install 'refdet[{extra}]'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_verify_openvino_target_runs_every_op():
    _ov()
    from refdet.verify import run_target
    rows = run_target("openvino", n_cases=5)
    assert {r["op"] for r in rows} == {"openvino_nms", "openvino_prior_box", "openvino_prior_box_clustered",
                                        "openvino_fake_quantize", "openvino_roi_align", "openvino_roi_pooling",
                                        "openvino_interpolate", "openvino_detection_output",
                                        "openvino_proposal", "openvino_prior_grid_generator",
                                        "openvino_generate_proposals_single_image",
                                        "openvino_detectron_detection_output",
                                        "openvino_detectron_roi_feature_extractor"}
    assert all(r["ok"] for r in rows), [r["first_mismatch"] for r in rows if not r["ok"]]
