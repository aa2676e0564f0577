"""SSD's PriorBox and DetectionOutput as OpenCV dnn runs them (refdet.runtimes.opencv_ssd).

Golden values by hand run without cv2; the differential tests build the layers in cv2 through its ONNX
importer (OpenCV 5 has no Caffe importer; a node whose op_type is a registered layer name becomes that
layer, its attributes the prototxt fields) and demand bit-equal float32 output.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet.runtimes import opencv_ssd as S
from tests._layouts import check_layout_independent

f32 = np.float32
V4 = [0.1, 0.1, 0.2, 0.2]


def _cv():
    pytest.importorskip("cv2")
    pytest.importorskip("onnx")
    from refdet.runtimes.adapters import opencv_layer
    return opencv_layer


def _cv_prior_box(layer_shape, image_shape, **attrs):
    run = _cv()
    return run("PriorBox", [np.zeros((1, 1, *layer_shape), f32), np.zeros((1, 1, *image_shape), f32)], attrs)[0]


def _cv_detection_output(loc, conf, priors, **attrs):
    return _cv()("DetectionOutput", [loc, conf, priors], attrs)[0, 0]


def _bits(a, b):
    return a.shape == b.shape and np.array_equal(np.asarray(a, f32).view(np.uint32), np.asarray(b, f32).view(np.uint32))


# ---------------------------------------------------------------------------------------------------
# PriorBox: golden values by hand
# ---------------------------------------------------------------------------------------------------

def test_prior_box_one_cell_by_hand():
    # 1 x 1 map on 100 x 100: step 100, centre (50, 50); squares 20 and sqrt(20 * 60) = 34.641, then
    # 20 * sqrt(2) x 20 / sqrt(2) = 28.284 x 14.142 and the flipped 14.142 x 28.284
    pb = S.prior_box((1, 1), (100, 100), min_size=[20], max_size=[60], aspect_ratio=[2], variance=V4)
    assert pb.dtype == np.float32 and pb.shape == (2, 16)
    s = math.sqrt(1200) / 2
    a, b = 10 * math.sqrt(2), 10 / math.sqrt(2)
    want = np.array([[40, 40, 60, 60], [50 - s, 50 - s, 50 + s, 50 + s], [50 - a, 50 - b, 50 + a, 50 + b],
                     [50 - b, 50 - a, 50 + b, 50 + a]]) / 100
    np.testing.assert_allclose(pb[0].reshape(-1, 4), want, atol=1e-7)
    np.testing.assert_array_equal(pb[1], np.tile(np.float32(V4), 4))


def test_prior_box_ratio_list_is_deduplicated():
    # ratios 2, 1, 2, 0.5 with flip: 1 dropped (the square is there), 2 and its flip 0.5 added once
    pb = S.prior_box((1, 1), (10, 10), min_size=[4], aspect_ratio=[2.0, 1.0, 2.0, 0.5], variance=[0.1])
    assert pb.shape == (2, 3 * 4)
    # without flip: 2 and 0.5 are two different ratios
    pb = S.prior_box((1, 1), (10, 10), min_size=[4], aspect_ratio=[2.0, 1.0, 2.0, 0.5], flip=False, variance=[0.1])
    assert pb.shape == (2, 3 * 4)
    w = pb[0].reshape(-1, 4)
    np.testing.assert_allclose(w[1, 2] - w[1, 0], 0.4 * math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(w[2, 2] - w[2, 0], 0.4 * math.sqrt(0.5), rtol=1e-6)


def test_prior_box_clip_defaults_to_true_unlike_caffe():
    # a 30-pixel box centred at (10, 10) of a 40 x 40 image reaches -5 / 40 < 0
    clipped = S.prior_box((2, 2), (40, 40), min_size=[30], variance=[0.1])
    raw = S.prior_box((2, 2), (40, 40), min_size=[30], variance=[0.1], clip=False)
    assert raw[0, 0] == f32(-5) / f32(40) and clipped[0, 0] == 0.0
    np.testing.assert_array_equal(clipped[0], np.clip(raw[0], 0, 1))


def test_prior_box_pixel_corners_have_the_legacy_minus_one():
    # cx = 16, w = 16: xmin = 8, xmax = 16 + 8 - 1 = 23
    pb = S.prior_box((1, 2), (32, 64), min_size=[16], normalized_bbox=False, clip=False, variance=[0.1])
    np.testing.assert_array_equal(pb[0].reshape(-1, 4), [[8, 8, 23, 23], [40, 8, 55, 23]])


def test_prior_box_two_offsets_repeat_each_box():
    # order (h, w, box, offset): each box at (w + 0, h + 0.5) * step, then at (w + 0.5, h + 0) * step
    pb = S.prior_box((1, 1), (10, 10), min_size=[2], offset_h=[0.5, 0.0], offset_w=[0.0, 0.5], clip=False,
                     variance=[0.1], step=10)
    np.testing.assert_allclose(pb[0].reshape(-1, 4), [[-0.1, 0.4, 0.1, 0.6], [0.4, -0.1, 0.6, 0.1]], atol=1e-7)


def test_prior_box_explicit_sizes_and_steps():
    pb = S.prior_box((1, 1), (100, 200), width=[20, 40], height=[10, 10], step_h=50, step_w=80, offset=0.25,
                     clip=False, variance=[0.1])
    # centre (0.25 * 80, 0.25 * 50) = (20, 12.5)
    np.testing.assert_allclose(pb[0].reshape(-1, 4), [[10 / 200, 7.5 / 100, 30 / 200, 17.5 / 100],
                                                      [0, 7.5 / 100, 40 / 200, 17.5 / 100]], atol=1e-7)


def test_prior_box_default_step_is_float_image_over_layer():
    # 100 / 3 = 33.333...: centres (j + 0.5) * 33.33 in float32
    pb = S.prior_box((1, 3), (10, 100), min_size=[2], clip=False, variance=[0.1])
    cx = (pb[0].reshape(-1, 4)[:, 0] + pb[0].reshape(-1, 4)[:, 2]) / 2 * 100
    np.testing.assert_allclose(cx, (np.arange(3) + 0.5) * 100 / 3, rtol=1e-6)


def test_prior_box_matches_refdet_caffe_default_boxes_to_a_few_ulps():
    from refdet.anchors import ssd_default_boxes

    rng = np.random.default_rng(0)
    for _ in range(60):
        f = int(rng.integers(1, 12))
        img = int(rng.integers(f, 400))
        mn = float(rng.uniform(5, 150))
        mx = mn + float(rng.uniform(1, 150))
        ars = [float(a) for a in rng.choice([2.0, 3.0], int(rng.integers(0, 3)), replace=False)]
        step = float(rng.uniform(1, 64))
        clip = bool(rng.random() < 0.5)
        ref = ssd_default_boxes((img, img), [f], aspect_ratios=[ars], min_sizes=[mn], max_sizes=[mx], steps=[step],
                                convention="caffe", normalized=True, clip=clip, dtype=np.float32)
        cv = S.prior_box((f, f), (img, img), min_size=[mn], max_size=[mx], aspect_ratio=ars, step=step, clip=clip,
                         variance=[0.1])[0].reshape(-1, 4)
        assert cv.shape == ref.shape
        np.testing.assert_allclose(cv, ref, rtol=0, atol=1e-6)


def test_prior_box_layout_independent_and_does_not_write_inputs():
    mins = np.array([8.0, 20.0])
    ars = np.array([2.0, 3.0])
    check_layout_independent(lambda m, a: S.prior_box((2, 3), (40, 60), min_size=m, aspect_ratio=a,
                                                      variance=[0.1]), (mins, ars), {})
    mins.setflags(write=False)
    S.prior_box((2, 3), (40, 60), min_size=mins, variance=[0.1])


@pytest.mark.parametrize("kwargs, attr", [
    (dict(min_size=[10], variance=[0.1, 0.2]), "variance"),
    (dict(min_size=[10], variance=[0.0]), "variance"),
    (dict(min_size=[10], max_size=[5], variance=[0.1]), "max_size"),
    (dict(min_size=[10, 20], max_size=[30], variance=[0.1]), "max_size"),
    (dict(variance=[0.1]), "min_size"),
    (dict(min_size=[-1], variance=[0.1]), "min_size"),
    (dict(width=[10], height=[10, 20], variance=[0.1]), "width"),
    (dict(width=[10], height=[10], min_size=[4], variance=[0.1]), "width"),
    (dict(min_size=[10], step=8, step_h=8, step_w=8, variance=[0.1]), "step"),
    (dict(min_size=[10], step_h=8, variance=[0.1]), "step_w"),
    (dict(min_size=[10], offset=0.5, offset_h=[0.5], offset_w=[0.5], variance=[0.1]), "offset"),
    (dict(min_size=[10], offset_h=[0.5, 0.1], offset_w=[0.5], variance=[0.1]), "offset_h"),
    (dict(min_size=[10], offset_h=[0, 0.5, 1], offset_w=[0, 0.5, 1], variance=[0.1]), "offset_h"),
])
def test_prior_box_refuses_what_opencv_refuses(kwargs, attr):
    with pytest.raises(ValueError, match=f"`{attr}`.*OpenCV"):
        S.prior_box((2, 2), (20, 20), **kwargs)


def test_prior_box_bad_types_and_sizes():
    with pytest.raises(TypeError, match="layer_shape"):
        S.prior_box(3, (20, 20), min_size=[1], variance=[0.1])
    with pytest.raises(ValueError, match="image_shape"):
        S.prior_box((2, 2), (0, 20), min_size=[1], variance=[0.1])
    with pytest.raises(TypeError, match="flip"):
        S.prior_box((2, 2), (20, 20), min_size=[1], variance=[0.1], flip=1)
    with pytest.raises(ValueError, match="min_size"):
        S.prior_box((2, 2), (20, 20), min_size=[np.nan], variance=[0.1])
    with pytest.raises(ValueError, match="layer_shape.*elements"):
        S.prior_box((100000, 100000), (20, 20), min_size=[1], variance=[0.1])


# ---------------------------------------------------------------------------------------------------
# DetectionOutput: golden values by hand
# ---------------------------------------------------------------------------------------------------

PRI = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], [0.0, 0.0, 0.5, 0.25]], f32)
PR = np.stack([PRI.ravel(), np.tile(np.float32(V4), 3)])[None]
ZERO = np.zeros((1, 12), f32)


def test_detection_output_iou_at_the_threshold_is_kept():
    # IoU(prior 0, prior 2) = 0.125 / 0.25 = 0.5; IoU(prior 0, prior 1) = 0.125 / 0.375 = 1/3
    conf = np.array([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7]], f32)
    r = S.detection_output(ZERO, conf, PR, num_classes=2, keep_top_k=5, nms_threshold=0.5)
    assert r.count == 3 and r.detections.shape == (5, 7)
    np.testing.assert_array_equal(r.detections[:3, 1], [1, 1, 1])
    np.testing.assert_array_equal(r.detections[:3, 2], f32([0.9, 0.8, 0.7]))
    np.testing.assert_array_equal(r.detections[3:], 0)
    r = S.detection_output(ZERO, conf, PR, num_classes=2, keep_top_k=5, nms_threshold=0.45)
    assert r.count == 2 and r.detections[:2, 2].tolist() == f32([0.9, 0.8]).tolist()


def test_detection_output_confidence_threshold_is_strict():
    conf = np.array([[0.5, 0.5, 0.2, 0.8, 0.3, 0.25]], f32)
    r = S.detection_output(ZERO, conf, PR, num_classes=2, keep_top_k=5, nms_threshold=0.99,
                           confidence_threshold=0.5)
    assert r.count == 1 and r.detections[0, 2] == f32(0.8)


def test_detection_output_ties_lower_prior_first_and_class_order():
    conf = np.array([[0.1, 0.6, 0.1, 0.6, 0.1, 0.6]], f32)
    r = S.detection_output(ZERO, conf, PR, num_classes=2, keep_top_k=5, nms_threshold=0.99)
    np.testing.assert_array_equal(r.detections[:3, 3:], PRI)              # prior 0, 1, 2
    # three classes: sorted by score over classes; grouped: class 1 then class 2 (Caffe's order)
    conf3 = np.array([[0.0, 0.9, 0.8], [0.0, 0.7, 0.6], [0.0, 0.5, 0.95]], f32).reshape(1, 9)
    r = S.detection_output(ZERO, conf3, PR, num_classes=3, keep_top_k=6, nms_threshold=0.99)
    np.testing.assert_array_equal(r.detections[:6, 2], f32([0.95, 0.9, 0.8, 0.7, 0.6, 0.5]))
    g = S.detection_output(ZERO, conf3, PR, num_classes=3, keep_top_k=6, nms_threshold=0.99, group_by_classes=True)
    np.testing.assert_array_equal(g.detections[:6, 1], [1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(g.detections[:6, 2], f32([0.9, 0.7, 0.5, 0.95, 0.8, 0.6]))
    # keep_top_k = 4 over both classes: 0.95, 0.9, 0.8, 0.7 survive
    k = S.detection_output(ZERO, conf3, PR, num_classes=3, keep_top_k=4, nms_threshold=0.99)
    assert k.count == 4
    np.testing.assert_array_equal(k.detections[:, 2], f32([0.95, 0.9, 0.8, 0.7]))


def test_detection_output_center_size_decode_by_hand():
    # prior [0, 0, .5, .5]: width .5, centre .25; loc (.5, -.5, 1, -1) * variances (.1, .1, .2, .2):
    # cx = .05 * .5 + .25 = .275, cy = -.05 * .5 + .25 = .225, w = e^.2 * .5, h = e^-.2 * .5
    loc = np.array([[0.5, -0.5, 1.0, -1.0]], f32)
    pr = np.array([[[0, 0, 0.5, 0.5], V4]], f32).reshape(1, 2, 4)
    r = S.detection_output(loc, np.array([[0.0, 1.0]], f32), pr, num_classes=2, keep_top_k=1, nms_threshold=0.5,
                           code_type="CENTER_SIZE")
    w, h = math.exp(0.2) * 0.5, math.exp(-0.2) * 0.5
    np.testing.assert_allclose(r.detections[0, 3:], [0.275 - w / 2, 0.225 - h / 2, 0.275 + w / 2, 0.225 + h / 2],
                               atol=1e-7)
    # CORNER: each corner + variance * loc
    r = S.detection_output(loc, np.array([[0.0, 1.0]], f32), pr, num_classes=2, keep_top_k=1, nms_threshold=0.5)
    np.testing.assert_allclose(r.detections[0, 3:], [0.05, -0.05, 0.7, 0.3], atol=1e-7)
    # clip: corners clamped to [0, 1]
    r = S.detection_output(loc, np.array([[0.0, 1.0]], f32), pr, num_classes=2, keep_top_k=1, nms_threshold=0.5,
                           clip=True)
    np.testing.assert_allclose(r.detections[0, 3:], [0.05, 0.0, 0.7, 0.3], atol=1e-7)


def test_detection_output_pixel_boxes_use_plus_one_sizes():
    # pixel priors [0, 0, 9, 9] and [5, 0, 14, 9]: sizes 10 * 10, intersection 5 * 10 -> IoU 50 / 150 = 1/3;
    # without the +1 it would be 36 / 126 = 0.286 < 0.3
    pri = np.array([[0, 0, 9, 9], [5, 0, 14, 9]], f32)
    pr = np.stack([pri.ravel(), np.tile(np.float32(V4), 2)])[None]
    conf = np.array([[0, 0.9, 0, 0.8]], f32)
    r = S.detection_output(np.zeros((1, 8), f32), conf, pr, num_classes=2, keep_top_k=2, nms_threshold=0.3,
                           normalized_bbox=False)
    assert r.count == 1
    r = S.detection_output(np.zeros((1, 8), f32), conf, pr, num_classes=2, keep_top_k=2, nms_threshold=0.34,
                           normalized_bbox=False)
    assert r.count == 2


def test_detection_output_batch_rows_follow_each_other_and_empty():
    conf = np.array([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7], [0.9, 0.0, 0.9, 0.0, 0.9, 0.6]], f32)
    r = S.detection_output(np.zeros((2, 12), f32), conf, PR, num_classes=2, keep_top_k=3, nms_threshold=0.45)
    assert r.detections.shape == (6, 7) and r.count == 3
    np.testing.assert_array_equal(r.detections[:3, 0], [0, 0, 1])
    none = S.detection_output(np.zeros((1, 12), f32), np.zeros((1, 6), f32), PR, num_classes=2, keep_top_k=3,
                              nms_threshold=0.45)
    assert none.count == 0 and not none.detections.any()
    empty = S.detection_output(np.zeros((0, 12), f32), np.zeros((0, 6), f32), PR, num_classes=2, keep_top_k=3,
                               nms_threshold=0.45)
    assert empty.count == 0 and empty.detections.shape == (0, 7)


def test_detection_output_layout_independent():
    rng = np.random.default_rng(0)
    loc = rng.standard_normal((2, 12)).astype(f32) * 0.3
    conf = rng.random((2, 6)).astype(f32)
    check_layout_independent(lambda l, c, p: S.detection_output(l, c, p, num_classes=2, keep_top_k=4,
                                                                 nms_threshold=0.45, code_type="CENTER_SIZE"),
                             (loc, conf, PR[0]), {})


@pytest.mark.parametrize("kwargs, attr", [
    (dict(keep_top_k=0), "keep_top_k"),
    (dict(keep_top_k=-1), "keep_top_k"),
    (dict(nms_threshold=0.0), "nms_threshold"),
    (dict(background_label_id=-1), "background_label_id"),
    (dict(clip=True, normalized_bbox=False), "image_shape"),
    (dict(num_classes=3), "conf"),
    (dict(share_location=False), "loc"),
    (dict(variance_encoded_in_target=True), "priors"),
])
def test_detection_output_refuses_what_opencv_mishandles(kwargs, attr):
    a = dict(num_classes=2, keep_top_k=3, nms_threshold=0.45)
    a.update(kwargs)
    with pytest.raises(ValueError, match=f"`{attr}`.*OpenCV"):
        S.detection_output(ZERO, np.zeros((1, 6), f32), PR, **a)


def test_detection_output_bad_values():
    a = dict(num_classes=2, keep_top_k=3, nms_threshold=0.45)
    with pytest.raises(ValueError, match="code_type"):
        S.detection_output(ZERO, np.zeros((1, 6), f32), PR, code_type="center", **a)
    with pytest.raises(ValueError, match="loc.*NaN"):
        S.detection_output(np.full((1, 12), np.nan), np.zeros((1, 6), f32), PR, **a)
    with pytest.raises(ValueError, match="conf.*batch"):
        S.detection_output(ZERO, np.zeros((2, 6), f32), PR, **a)
    with pytest.raises(TypeError, match="share_location"):
        S.detection_output(ZERO, np.zeros((1, 6), f32), PR, share_location=1, **a)
    with pytest.raises(TypeError, match="priors"):
        S.detection_output(ZERO, np.zeros((1, 6), f32), "x", **a)


# ---------------------------------------------------------------------------------------------------
# differential tests against cv2
# ---------------------------------------------------------------------------------------------------

def test_cv2_prior_box_goldens_and_random_cases_bit_exact():
    _cv()
    from refdet.runtimes.adapters import opencv_adapters
    from refdet.testing import conformance_runtimes as cr

    rep = cr.check_opencv_prior_box(opencv_adapters()["opencv_prior_box"]["fn"], n_cases=150)
    assert rep.ok and rep.agreeing == rep.cases >= 150


def test_cv2_detection_output_goldens_and_random_cases_bit_exact():
    _cv()
    from refdet.runtimes.adapters import opencv_adapters
    from refdet.testing import conformance_runtimes as cr

    rep = cr.check_opencv_detection_output(opencv_adapters()["opencv_detection_output"]["fn"], n_cases=150)
    assert rep.ok and rep.agreeing == rep.cases >= 150


@settings(deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), grid=st.sampled_from([4, 8]), ktk=st.integers(1, 12),
       share=st.booleans(), code=st.sampled_from(["CORNER", "CENTER_SIZE"]))
def test_cv2_detection_output_with_ties_where_the_order_is_defined(seed, grid, ktk, share, code):
    _cv()
    from refdet.testing.conformance_opencv_ssd import detection_output_order_defined

    rng = np.random.default_rng(seed)
    P, C = int(rng.integers(1, 8)), int(rng.integers(2, 4))
    pri = np.round(np.sort(rng.random((P, 2, 2)), axis=1).reshape(P, 4)[:, [0, 2, 1, 3]] * grid) / grid
    pr = np.stack([pri.ravel(), np.tile(V4, P)])[None].astype(f32)
    loc = (np.round(rng.standard_normal((1, P * (1 if share else C) * 4)) * grid) / grid * 0.5).astype(f32)
    conf = (np.round(rng.random((1, P * C)) * 4) / 4).astype(f32)           # many equal scores, 0.25 / 0.5 hit
    attrs = dict(num_classes=C, share_location=share, background_label_id=0, nms_threshold=0.5, keep_top_k=ktk,
                 code_type=code, confidence_threshold=0.25)
    if not detection_output_order_defined(loc, conf, pr, attrs):
        return
    got = _cv_detection_output(loc, conf, pr, **attrs)
    assert _bits(got, S.detection_output(loc, conf, pr, **attrs).detections)


def test_cv2_prior_box_ignores_caffe_img_size_and_defaults_clip_on():
    # img_size is Caffe's (it replaces the image blob's size there); OpenCV reads the second input
    got = _cv_prior_box((2, 2), (40, 40), min_size=[30.0], variance=[0.1], img_size=300)
    assert _bits(got, S.prior_box((2, 2), (40, 40), min_size=[30.0], variance=[0.1]))
    assert got.min() == 0.0                                                  # clipped without asking


def test_cv2_pixel_detection_output_clip_uses_the_image_input():
    rng = np.random.default_rng(3)
    pri = np.sort(rng.random((4, 2, 2)) * 40, axis=1).reshape(4, 4)[:, [0, 2, 1, 3]]
    pr = np.stack([pri.ravel(), np.tile(V4, 4)])[None].astype(f32)
    loc = (rng.standard_normal((1, 16)) * 3).astype(f32)
    conf = rng.random((1, 8)).astype(f32)
    attrs = dict(num_classes=2, share_location=True, background_label_id=0, nms_threshold=0.45, keep_top_k=4,
                 normalized_bbox=False, clip=True, code_type="CENTER_SIZE")
    run = _cv()
    got = run("DetectionOutput", [loc, conf, pr, np.zeros((1, 1, 30, 20), f32)], attrs)[0, 0]
    assert _bits(got, S.detection_output(loc, conf, pr, image_shape=(30, 20), **attrs).detections)


def test_conformance_check_names_the_caffe_clip_default():
    from refdet.testing import conformance_runtimes as cr

    def caffe_priors(ls, im, attrs):                       # Caffe: clip false unless asked
        return S.prior_box(ls, im, **dict({"clip": False}, **attrs))
    rep = cr.check_opencv_prior_box(caffe_priors, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "Caffe's PriorBoxParameter.clip defaults to false" in rep.first_mismatch


def test_conformance_check_names_caffe_output_order_and_centre():
    from refdet.testing import conformance_runtimes as cr
    from refdet.testing.conformance_opencv_ssd import _do_kwargs

    def grouped(loc, conf, pri, attrs):
        a = _do_kwargs(attrs)
        a["group_by_classes"] = not a.get("group_by_classes", False)
        return S.detection_output(loc, conf, pri, **a).detections
    rep = cr.check_opencv_detection_output(grouped, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "class by class" in rep.first_mismatch

    def caffe_centre(loc, conf, pri, attrs):
        full = dict(share_location=True, background_label_id=0, top_k=-1, code_type="CORNER",
                    variance_encoded_in_target=False, confidence_threshold=0.0, normalized_bbox=True, clip=False,
                    image_shape=None, loc_pred_transposed=False, group_by_classes=False)
        full.update(_do_kwargs(attrs))
        return S._detection_output(loc, conf, pri, center="caffe", **full).detections
    rep = cr.check_opencv_detection_output(caffe_centre, n_cases=60, raise_on_failure=False)
    assert not rep.ok and "(xmin + xmax) / 2" in rep.first_mismatch


# ---------------------------------------------------------------------------------------------------
# exp: OpenCV's CENTER_SIZE decoding calls expf (glibc's, not correctly rounded)
# ---------------------------------------------------------------------------------------------------

def test_expf_golden_and_limits():
    e = S._expf(np.float32([0.0, 1.0, -1.0, 88.8, -104.0, 10.0]))
    assert e[0] == 1.0 and e[1] == np.float32(math.e) and e[2] == np.float32(1 / math.e)
    assert e[3] == np.inf and e[4] == 0.0
    assert abs(float(e[5]) - math.exp(10.0)) <= float(np.spacing(np.float32(math.exp(10.0))))


def test_expf_equals_the_c_library_expf():
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"):
        pytest.skip("the reproduced expf is glibc's")
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(50000).astype(f32) * 5, rng.uniform(-110, 95, 50000).astype(f32)])
    ref = np.array([libm.expf(float(v)) for v in x], f32)
    assert _bits(S._expf(x), ref)
    # and it is not the correctly rounded float32(exp(double)): they differ somewhere in these 10^5
    with np.errstate(over="ignore"):
        assert (np.exp(x.astype(np.float64)).astype(f32) != ref).any()


def test_cv2_center_size_decoding_of_many_priors_bit_exact():
    rng = np.random.default_rng(1)
    P = 2000
    pri = np.sort(rng.random((P, 2, 2)) * 40, axis=1).reshape(P, 4)[:, [0, 2, 1, 3]].astype(f32)
    pr = np.stack([pri.ravel(), np.tile(np.float32(V4), P)])[None].astype(f32)
    loc = (rng.standard_normal((1, P * 4)) * 3).astype(f32)
    conf = np.zeros((1, P * 2), f32)
    conf[0, 1::2] = np.linspace(0.9, 0.1, P, dtype=f32)                 # distinct scores: output in prior order
    for normalized in (False, True):
        p = pr if not normalized else (pr / f32(40)).astype(f32)
        attrs = dict(num_classes=2, share_location=True, background_label_id=0, nms_threshold=1.0, keep_top_k=P,
                     code_type="CENTER_SIZE", normalized_bbox=normalized)
        got = _cv_detection_output(loc, conf, p, **attrs)
        assert _bits(got, S.detection_output(loc, conf, p, **attrs).detections)
