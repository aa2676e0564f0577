"""Goldens worked by hand that pin what the rest of the targets tests leave open (issue 19: the
mutants of refdet/targets.py that survived tests/test_targets*.py): every keyword of the three
recipes reaches the matcher / box coder / IoU it names, the M = 0 and border encodings, the dtypes
of the outputs, and the argument checks (each error names its argument).

The scenes are tiny (one or two gts, a handful of anchors) and every expected value is worked out
in the comment above it; a knob is only tested on a scene where it changes the answer (the default
answer is asserted too)."""
import numpy as np
import pytest

from refdet import encode_boxes, retinanet_targets, rpn_targets, ssd_targets

# gt [0, 0, 10, 10] against
#   0 [0, 0, 10, 10]   IoU 1
#   1 [0, 0, 10, 20]   IoU 100 / 200 = 0.5
#   2 [0, 0, 20, 20]   IoU 0.25
#   3 [30, 30, 40, 40] IoU 0
#   4 [-5, 0, 5, 10]   IoU 50 / 150 = 1/3, crosses x = 0
ANCHORS = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 20, 20], [30, 30, 40, 40], [-5, 0, 5, 10]], float)
GT = np.array([[0, 0, 10, 10]], float)
# anchor 1 (centre (5, 10), 10 x 20) onto the gt (centre (5, 5), 10 x 10), weights 1:
# (dx, dy, dw, dh) = (0, -0.25, 0, log 0.5)
D1 = np.array([0.0, -0.25, 0.0, np.log(0.5)])

# Only a weak anchor: gt [0, 0, 10, 10] against [0, 0, 20, 20] (IoU 0.25) and [30, 30, 40, 40] (IoU 0).
# torchvision's RPN promotes anchor 0 (the gt's best, although 0.25 < 0.3).
WEAK = np.array([[0, 0, 20, 20], [30, 30, 40, 40]], float)


def _rpn(anchors=ANCHORS, gt=GT, **kw):
    return rpn_targets(anchors, gt, (50, 50), sample=False, **kw)


# --------------------------------------------------------------------------------------------------
# rpn_targets: the matcher keywords, weights, the sample flag, M = 0 with the border rule
# --------------------------------------------------------------------------------------------------

def test_rpn_matcher_keywords_reach_the_matcher():
    assert _rpn(WEAK).assigned.tolist() == [1, 0]
    # no low-quality step: 0.25 < 0.3 is a negative
    assert _rpn(WEAK, low_quality="off").assigned.tolist() == [0, 0]
    # mmdet's gate: the gt's best IoU 0.25 < 0.3 promotes nothing
    assert _rpn(WEAK, min_pos_iou=0.3).assigned.tolist() == [0, 0]
    # Detectron1 / RPN_CLOBBER_POSITIVES: IoU < low written after the positives
    assert _rpn(WEAK, background_after=True).assigned.tolist() == [0, 0]
    # IoU exactly 0.7 ([0, 0, 10, 7] vs [0, 0, 10, 10]: 70 / 100) is positive with >=, ignored with >
    a = np.array([[0, 0, 10, 7], [0, 0, 10, 10]], float)
    assert _rpn(a, allow_low_quality_matches=False).assigned.tolist() == [1, 1]
    assert _rpn(a, allow_low_quality_matches=False, positive_strict=True).assigned.tolist() == [-1, 1]


def test_rpn_weights_keyword_scales_the_deltas():
    t = _rpn(weights=(2, 3, 4, 5))
    np.testing.assert_allclose(t.deltas[1], D1 * [2, 3, 4, 5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(_rpn().deltas[1], D1, rtol=0, atol=1e-15)


def test_rpn_sample_must_be_a_bool():
    with pytest.raises(TypeError, match="`sample` must be a bool"):
        rpn_targets(ANCHORS, GT, (50, 50), sample=1)


def test_rpn_empty_gt_outside_anchor_is_ignored_with_code_minus_2():
    # allowed_border 0: anchor 4 (x1 = -5) is outside; without gt every other anchor is negative (-1)
    t = rpn_targets(ANCHORS, np.zeros((0, 4)), (50, 50), allowed_border=0, sample=False)
    assert t.matched.tolist() == [-1, -1, -1, -1, -2]
    assert t.assigned.tolist() == [0, 0, 0, 0, -1]


# --------------------------------------------------------------------------------------------------
# retinanet_targets
# --------------------------------------------------------------------------------------------------

# gt 1 is a point: its best IoU is 0, tied by every anchor. torchvision promotes all of them (to the
# argmax gt, gt 0 for each: anchor 3 has IoU 0 with both and takes the first).
DEGENERATE = np.array([[0, 0, 10, 10], [45, 45, 45, 45]], float)


def test_retinanet_matcher_keywords_reach_the_matcher():
    lab = np.array([0, 1])
    assert retinanet_targets(ANCHORS, DEGENERATE, lab, 2).matched.tolist() == [0, 0, 0, 0, 0]
    # gate 0.3: gt 0 (best 1) still promotes its anchor; gt 1 (best 0) promotes none
    assert retinanet_targets(ANCHORS, DEGENERATE, lab, 2, min_pos_iou=0.3).matched.tolist() == [0, 0, -1, -1, -1]
    assert retinanet_targets(ANCHORS, DEGENERATE, lab, 2, low_quality="off").matched.tolist() == [0, 0, -1, -1, -1]


def test_retinanet_weights_and_encode_kw_reach_the_coder():
    lab = np.array([1])
    t = retinanet_targets(ANCHORS, GT, lab, 2, weights=(2, 3, 4, 5))
    assert t.foreground.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(t.deltas[1], D1 * [2, 3, 4, 5], rtol=0, atol=1e-15)
    # another coder convention through encode_kw: TF codes (dy, dx, dh, dw)
    tf = retinanet_targets(ANCHORS, GT, lab, 2, encode_kw={"convention": "tf"})
    want = encode_boxes(GT[[0, 0]], ANCHORS[:2], convention="tf")
    np.testing.assert_array_equal(tf.deltas[:2], want)
    np.testing.assert_allclose(tf.deltas[1], D1[[1, 0, 3, 2]], rtol=0, atol=1e-6)


def test_retinanet_iou_takes_the_conventions_plus_one():
    # gt [0, 0, 9, 9], anchor [0, 0, 9, 19]: continuous IoU 81 / 171 = 0.474 (ignored, in [0.4, 0.5));
    # py-faster-rcnn's +1 pixels (convention "caffe"): 100 / 200 = 0.5 (foreground). Anchor 0 is the gt.
    a = np.array([[0, 0, 9, 9], [0, 0, 9, 19], [30, 30, 40, 40]], float)
    g = np.array([[0, 0, 9, 9]], float)
    assert retinanet_targets(a, g, np.array([0]), 1).matched.tolist() == [0, -2, -1]
    assert retinanet_targets(a, g, np.array([0]), 1, convention="caffe").matched.tolist() == [0, 0, -1]


def test_retinanet_valid_labels_levels_and_dtypes():
    # anchors 0, 1 foreground (IoU 1, 0.5), 2 and 3 background, anchor 4 (1/3)... also background (< 0.4).
    # A second gt makes an ignored anchor: [0, 0, 10, 10] vs anchor [0, 0, 10, 22] IoU 100 / 220 = 0.4545.
    a = np.vstack([ANCHORS, [[0, 0, 10, 22]]]).astype(np.float32)
    level = np.array([0, 0, 1, 1, 2, 2])
    t = retinanet_targets(a, GT.astype(np.float32), np.array([1]), 3, level=level)
    assert t.matched.tolist() == [0, 0, -1, -1, -1, -2]
    assert t.valid.tolist() == [True, True, True, True, True, False]
    assert t.labels.tolist() == [1, 1, 3, 3, 3, -1] and t.labels.dtype == np.int64
    assert t.level.tolist() == [0, 0, -1, -1, -1, -1]
    assert t.cls_targets.dtype == np.float32 and t.deltas.dtype == np.float32
    np.testing.assert_array_equal(t.cls_targets[:2], [[0, 1, 0], [0, 1, 0]])
    e = retinanet_targets(a, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 3, level=level)
    assert e.labels.tolist() == [3] * 6 and e.labels.dtype == np.int64
    assert e.level.tolist() == [-1] * 6


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_retinanet_overflowing_iou_is_nan_not_an_error():
    # float32 boxes 1e20 wide: the areas overflow to inf and the IoU of the big gt with the big anchor is
    # inf / inf = NaN, as torchvision's box_iou gives; the matcher takes it (allow_nan) as torchvision's
    # Matcher(0.5, 0.4, True) does: [0, -1] (NaN is the gt's best by argmax; the small anchor IoU 0).
    a = np.array([[0, 0, 1e20, 1e20], [0, 0, 10, 10]], np.float32)
    t = retinanet_targets(a, a[:1], np.array([0]), 1)
    assert t.matched.tolist() == [0, -1]


def test_retinanet_argument_checks_name_the_argument():
    lab = np.array([0])
    with pytest.raises(ValueError, match="`num_classes` must be >= 1; got 0"):
        retinanet_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, np.int64), 0)
    with pytest.raises(TypeError, match="`num_classes` must be an integer"):
        retinanet_targets(ANCHORS, GT, lab, 2.5)
    # 5 anchors x 3 classes = 15 elements: refused under a cap of 14, named after num_classes
    with pytest.raises(ValueError, match=r"`num_classes` asks for 15 elements \(one-hot targets of 5 anchors "
                                         r"x 3 classes"):
        retinanet_targets(ANCHORS, GT, lab, 3, max_elements=14)
    assert retinanet_targets(ANCHORS, GT, lab, 3, max_elements=15).cls_targets.shape == (5, 3)
    with pytest.raises(ValueError, match="`gt_labels` values must be <= 2; got maximum 3"):
        retinanet_targets(ANCHORS, GT, np.array([3]), 3)
    with pytest.raises(ValueError, match="`gt_labels` values must be >= 0; got minimum -1"):
        retinanet_targets(ANCHORS, GT, np.array([-1]), 3)
    with pytest.raises(ValueError, match="`gt_labels` must have length 1; got length 2"):
        retinanet_targets(ANCHORS, GT, np.array([0, 1]), 3)
    with pytest.raises(TypeError, match="`gt_labels` must be an integer array"):
        retinanet_targets(ANCHORS, GT, np.array([0.0]), 3)


# --------------------------------------------------------------------------------------------------
# ssd_targets
# --------------------------------------------------------------------------------------------------

# Two gts with the same best default box (box 0): gt 0 = box 0 (IoU 1), gt 1 = [1, 1, 11, 11]
# (IoU 81 / 119 = 0.68 with box 0). torchvision's SSDMatcher lets the last gt keep box 0; TF's
# ArgMaxMatcher the first.
SHARED_BOXES = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], float)
SHARED_GTS = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], float)


def test_ssd_prematch_keyword_and_convention_reach_the_matcher():
    lab = np.array([1, 2])
    t = ssd_targets(SHARED_BOXES, SHARED_GTS, lab)
    assert t.matched.tolist() == [1, -1] and t.labels.tolist() == [2, 0]
    assert ssd_targets(SHARED_BOXES, SHARED_GTS, lab, prematch="first_wins").matched.tolist() == [0, -1]
    assert ssd_targets(SHARED_BOXES, SHARED_GTS, lab, convention="tf").matched.tolist() == [0, -1]


def test_ssd_threshold_strict_and_candidate_eps_keywords():
    # box 1 [0, 0, 10, 20] has IoU exactly 0.5 with the gt; box 2 [0, 0, 20, 20] 0.25
    boxes = ANCHORS[:3]
    lab = np.array([4])
    assert ssd_targets(boxes, GT, lab).matched.tolist() == [0, 0, -1]
    assert ssd_targets(boxes, GT, lab, positive_strict=True).matched.tolist() == [0, -1, -1]
    assert ssd_targets(boxes, GT, lab, candidate_eps=0.5).matched.tolist() == [0, -1, -1]
    assert ssd_targets(boxes, GT, lab, threshold=0.25).matched.tolist() == [0, 0, 0]
    assert ssd_targets(boxes, GT, lab, threshold=0.6).matched.tolist() == [0, -1, -1]


def test_ssd_plus_one_reaches_the_iou():
    # gt [0, 0, 9, 9] vs box [0, 0, 9, 19]: 81 / 171 = 0.47 continuous, 100 / 200 = 0.5 with +1 pixels
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 19]], float)
    g = np.array([[0, 0, 9, 9]], float)
    assert ssd_targets(boxes, g, np.array([1])).matched.tolist() == [0, -1]
    assert ssd_targets(boxes, g, np.array([1]), plus_one=True).matched.tolist() == [0, 0]


def test_ssd_weights_keyword_labels_dtype_and_label_zero():
    t = ssd_targets(ANCHORS, GT, np.array([0]), weights=(2, 3, 4, 5))
    # a gt labelled 0 is accepted (torchvision's SSD reads labels[matched] unchecked): its boxes
    # regress, their class target is the background id
    assert t.matched.tolist() == [0, 0, -1, -1, -1] and t.labels.tolist() == [0] * 5
    assert t.labels.dtype == np.int64
    np.testing.assert_allclose(t.deltas[1], D1 * [2, 3, 4, 5], rtol=0, atol=1e-15)
    e = ssd_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, np.int64))
    assert e.labels.dtype == np.int64 and e.matched.dtype == np.int64


def test_ssd_gt_labels_checked_with_their_name():
    with pytest.raises(ValueError, match="`gt_labels` values must be >= 0; got minimum -1"):
        ssd_targets(ANCHORS, GT, np.array([-1]))
    with pytest.raises(ValueError, match="`gt_labels` must have length 1; got length 0"):
        ssd_targets(ANCHORS, GT, np.zeros(0, np.int64))
    with pytest.raises(TypeError, match="`gt_labels` must be an integer array"):
        ssd_targets(ANCHORS, GT, np.array([1.0]))


def test_ssd_threshold_checked_without_gt():
    with pytest.raises(ValueError, match="`threshold` must lie in"):
        ssd_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, np.int64), threshold=1.5)


def test_thresholds_checked_without_gt():
    # found by mutation testing: retinanet_targets checked high / low only when a gt was there (the
    # matcher's check), so an image without gt accepted high < low; rpn_targets always checked them.
    empty, lab = np.zeros((0, 4)), np.zeros(0, np.int64)
    for f, kw in ((retinanet_targets, dict(gt_labels=lab, num_classes=2)), (rpn_targets, dict(image_size=(50, 50)))):
        with pytest.raises(ValueError, match="low"):
            f(ANCHORS, empty, high=0.3, low=0.5, **kw)


def test_weights_knob_is_checked_and_normalised():
    from refdet import conventions
    for op in ("rpn_targets", "retinanet_targets", "ssd_targets"):
        w = conventions.resolve(op, "torchvision", weights=np.array([2, 3, 4, 5])).weights
        assert w == (2.0, 3.0, 4.0, 5.0) and all(type(v) is float for v in w)
    with pytest.raises(ValueError, match="`weights` must be 4 numbers; got shape"):
        rpn_targets(ANCHORS, GT, (50, 50), weights=(1, 1, 1))
    with pytest.raises(ValueError, match="`weights` must be positive"):
        ssd_targets(ANCHORS, GT, np.array([1]), weights=(1, 1, 0, 1))


def test_rpn_thresholds_and_low_quality_flag_reach_the_matcher():
    # high 0.5 / low 0.2: anchor 1 (0.5) positive, anchor 2 (0.25) ignored, anchor 4 (1/3) ignored
    assert _rpn().assigned.tolist() == [1, -1, 0, 0, -1]
    assert _rpn(high=0.5, low=0.2).assigned.tolist() == [1, 1, -1, 0, -1]
    assert _rpn(WEAK, allow_low_quality_matches=False).assigned.tolist() == [0, 0]
    # the same through the ignore_after_match path (detectron2)
    assert _rpn(high=0.5, low=0.2, convention="detectron2").assigned.tolist() == [1, 1, -1, 0, -1]
    assert _rpn(WEAK, convention="detectron2").assigned.tolist() == [1, 0]
    assert _rpn(WEAK, convention="detectron2", allow_low_quality_matches=False).assigned.tolist() == [0, 0]


def test_rpn_iou_takes_the_conventions_plus_one_in_both_border_modes():
    # gt [0, 0, 9, 9] vs anchor [0, 0, 9, 12]: continuous 81 / 108 = 0.75 (positive); with py-faster-rcnn's
    # +1 pixels 100 / 130 = 0.769. And [0, 0, 9, 13]: 81 / 117 = 0.692 (ignored) vs 100 / 140 = 0.714.
    a = np.array([[0, 0, 9, 9], [0, 0, 9, 13], [30, 30, 40, 40]], float)
    g = np.array([[0, 0, 9, 9]], float)
    for mode in ("filter_before_match", "ignore_after_match"):
        kw = dict(border_mode=mode, allowed_border=-1)
        assert _rpn(a, g, **kw).assigned.tolist() == [1, -1, 0]
        assert _rpn(a, g, convention="caffe", **kw).assigned.tolist() == [1, 1, 0]


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("mode", ["filter_before_match", "ignore_after_match"])
def test_rpn_overflowing_iou_is_nan_not_an_error(mode):
    # as in test_retinanet_overflowing_iou_is_nan_not_an_error: torchvision's Matcher takes the NaN
    a = np.array([[0, 0, 1e20, 1e20], [0, 0, 10, 10]], np.float32)
    t = rpn_targets(a, a[:1], (50, 50), border_mode=mode, sample=False)
    assert t.matched.tolist() == [0, -1]


def test_rpn_outside_anchors_are_coded_minus_2_in_both_border_modes():
    for mode in ("filter_before_match", "ignore_after_match"):
        t = _rpn(allowed_border=0, border_mode=mode)
        assert t.matched.tolist() == [0, -2, -1, -1, -2]
        assert t.matched.dtype == np.int64 and t.assigned.dtype == np.int64 and t.labels.dtype == np.int64
    # every anchor outside (image 5 x 5): none is matched
    t = rpn_targets(ANCHORS[1:4], GT, (5, 5), allowed_border=0, sample=False)
    assert t.matched.tolist() == [-2, -2, -2] and t.matched.dtype == np.int64


def test_rpn_empty_gt_arrays_have_the_anchors_shape_and_dtype():
    t = rpn_targets(ANCHORS.astype(np.float32), np.zeros((0, 4), np.float32), (50, 50), sample=False)
    for arr in (t.deltas, t.matched_boxes):
        assert arr.shape == (5, 4) and arr.dtype == np.float32 and not arr.any()
    assert t.assigned.dtype == np.int64


def test_rpn_sample_uses_the_callers_rng():
    from refdet import sample_balanced
    g = np.random.default_rng(0)
    c = g.uniform(0, 100, size=(300, 2))
    anchors = np.concatenate([c - 8, c + 8], axis=1)
    gts = np.array([[10, 10, 26, 26], [50, 50, 66, 66], [70, 20, 86, 36]], float)
    t = rpn_targets(anchors, gts, (100, 100), batch_size_per_image=32, rng=7)
    pos, neg = sample_balanced(t.assigned, 32, 0.5, rng=7)
    assert (t.assigned == 0).sum() > 100
    np.testing.assert_array_equal(t.pos_mask, pos)
    np.testing.assert_array_equal(t.neg_mask, neg)


def test_rpn_sample_takes_positive_fraction_and_labels_are_int64():
    from refdet import sample_balanced
    g = np.random.default_rng(1)
    c = g.uniform(0, 100, size=(300, 2))
    anchors = np.concatenate([c - 8, c + 8], axis=1)
    gts = np.array([[x, y, x + 16, y + 16] for x in (10, 40, 70) for y in (10, 40, 70)], float)
    t = rpn_targets(anchors, gts, (100, 100), batch_size_per_image=32, positive_fraction=0.25, rng=3)
    assert (t.assigned == 1).sum() > 8                     # more positives than the 8 the fraction allows
    pos, neg = sample_balanced(t.assigned, 32, 0.25, rng=3)
    assert pos.sum() == 8 and neg.sum() == 24
    np.testing.assert_array_equal(t.pos_mask, pos)
    np.testing.assert_array_equal(t.neg_mask, neg)
    assert t.labels.dtype == np.int64
    np.testing.assert_array_equal(t.labels, np.where(pos, 1, np.where(neg, 0, -1)))


def test_rpn_without_sampling_masks_are_the_assignment():
    t = _rpn()
    assert t.assigned.tolist() == [1, -1, 0, 0, -1]
    assert t.pos_mask.tolist() == [True, False, False, False, False]
    assert t.neg_mask.tolist() == [False, False, True, True, False]
    assert t.labels.tolist() == t.assigned.tolist()


def test_level_checked_with_its_name():
    with pytest.raises(ValueError, match="`level` must have length 5; got length 4"):
        _rpn(level=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="`level` values must be >= 0; got minimum -1"):
        ssd_targets(ANCHORS, GT, np.array([1]), level=np.array([0, 0, 0, 0, -1]))
    with pytest.raises(TypeError, match="`level` must be an integer array"):
        retinanet_targets(ANCHORS, GT, np.array([0]), 1, level=np.zeros(5))
    t = _rpn(level=np.array([0, 1, 2, 3, 4]))
    assert t.level.tolist() == [0, -1, -1, -1, -1] and t.level.dtype == np.int64
    assert _rpn().level.tolist() == [-1] * 5 and _rpn().level.dtype == np.int64


def test_encode_kw_errors_are_exact():
    with pytest.raises(TypeError, match=r"^`encode_kw` must be a dict of encode_boxes keywords; got list$"):
        _rpn(encode_kw=[("center", "midpoint")])
    with pytest.raises(TypeError, match=r"^`encode_kw` must not hold 'weights': pass `weights=` to the targets "
                                        r"function$"):
        ssd_targets(ANCHORS, GT, np.array([1]), encode_kw={"weights": (1, 1, 1, 1)})


def test_geometry_check_of_boxes_wider_than_the_dtype_warns_nothing():
    # x2 - x1 overflows to inf (float32 6e38, float64 3.4e308): a valid (huge) box, checked silently under
    # every coder formula (mmdet's midpoint (x1 + x2) / 2 overflows too)
    import warnings
    from refdet import conventions, targets
    boxes = [np.array([[-3e38, -3e38, 3e38, 3e38], [3e38, 3e38, 3.4e38, 3.4e38]], np.float32),
             np.array([[-1.7e308, 0, 1.7e308, 1]])]
    for conv in ("torchvision", "mmdet", "caffe", "tf"):
        coder = targets._coder(conventions.resolve("rpn_targets", conv), None)
        for b in boxes:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                targets._check_geometry(b, "anchors", coder)


def test_tf_eps_makes_zero_size_anchors_valid():
    # TF's FasterRcnnBoxCoder adds EPSILON = 1e-8 to the anchor's width and height: a zero width or
    # height is then a valid (tiny) reference box; without eps it is refused, naming the row
    a = np.array([[0, 0, 0, 10], [0, 0, 10, 0], [0, 0, 10, 10]], float)
    assert _rpn(a, convention="tf").assigned.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="`anchors` row 0 has width 0.0 and height 10.0"):
        _rpn(a)
    with pytest.raises(ValueError, match="`anchors` row 0 has width 10.0 and height 0.0"):
        _rpn(a[1:])


def test_mixed_dtypes_compute_in_float64_whichever_input_is_float32():
    for a, g in ((ANCHORS.astype(np.float32), GT), (ANCHORS, GT.astype(np.float32))):
        t = _rpn(a, g)
        assert t.deltas.dtype == np.float64 and t.matched_boxes.dtype == np.float64
        np.testing.assert_allclose(t.deltas[1], D1, rtol=0, atol=1e-15)
        assert ssd_targets(a, g, np.array([1])).deltas.dtype == np.float64
        assert retinanet_targets(a, g, np.array([0]), 1).cls_targets.dtype == np.float64


def test_box_arrays_checked_with_their_names():
    with pytest.raises(ValueError, match="`anchors`"):
        _rpn(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`default_boxes`"):
        ssd_targets(np.zeros((2, 3)), GT, np.array([1]))
    with pytest.raises(ValueError, match="`gt_boxes`"):
        retinanet_targets(ANCHORS, np.zeros((1, 5)), np.array([0]), 1)


def test_encode_kw_wins_over_the_recipes_pixel_knobs():
    # Caffe SSD's recipe sets the coder's plus_one False and centre midpoint; the caller's encode_kw
    # plus_one=True wins over the recipe (the recipe's centre stays): py-faster-rcnn's +1 widths
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    g = np.array([[0, 0, 9, 9]], float)
    stds = (0.1, 0.1, 0.2, 0.2)
    t = ssd_targets(a, g, np.array([1]), convention="caffe", encode_kw={"plus_one": True})
    want = encode_boxes(g, a[:1], weights=stds, convention="caffe", plus_one=True, center="midpoint")
    np.testing.assert_array_equal(t.deltas[:1], want)
    # the recipe alone: continuous widths (gt 9 wide on a 10-wide box: dw = log(0.9) / 0.2)
    t0 = ssd_targets(a, g, np.array([1]), convention="caffe")
    np.testing.assert_allclose(t0.deltas[0, 2], np.log(0.9) / 0.2, rtol=1e-14)
    np.testing.assert_allclose(t.deltas[0, 2], np.log(10 / 11) / 0.2, rtol=1e-14)
