"""Pins of refdet.targets' convention values that no other test resolved (mutation/convention_coverage.md):
``empty_gt`` "raise" / "all_ignore" of the RetinaNet, RPN and SSD targets, RetinaNet's
``positive_strict=True``, and SSD's box-coder ``center="half_width"``.
"""
import numpy as np
import pytest

from refdet.box_coder import encode_boxes
from refdet.targets import retinanet_targets, rpn_targets, ssd_targets

ANCHORS = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [30.0, 30.0, 40.0, 40.0]])
NO_GT = np.zeros((0, 4))
NO_LABELS = np.zeros(0, np.int64)


def test_retinanet_empty_gt_raise_and_all_ignore():
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        retinanet_targets(ANCHORS, NO_GT, NO_LABELS, 3, empty_gt="raise")
    t = retinanet_targets(ANCHORS, NO_GT, NO_LABELS, 3, empty_gt="all_ignore")
    assert t.matched.tolist() == [-2, -2, -2] and t.labels.tolist() == [-1, -1, -1]
    assert not t.cls_targets.any()
    t = retinanet_targets(ANCHORS, NO_GT, NO_LABELS, 3, empty_gt="all_negative")
    assert t.matched.tolist() == [-1, -1, -1] and t.labels.tolist() == [3, 3, 3]  # background = num_classes


def test_retinanet_positive_strict_at_the_threshold():
    # gt = anchor 0 (IoU 1); anchor 1 = [0, 0, 10, 20]: I = 100, U = 200, IoU = 0.5 = high exactly.
    # IoU >= 0.5 (torchvision's Matcher) makes it positive; IoU > 0.5 leaves it between the thresholds
    # (0.4 <= 0.5 < 0.5 fails): ignored (-2). The low-quality step promotes only the gt's best anchor 0.
    gt, lab = ANCHORS[:1], np.array([1])
    loose = retinanet_targets(ANCHORS, gt, lab, 3, positive_strict=False)
    strict = retinanet_targets(ANCHORS, gt, lab, 3, positive_strict=True)
    assert loose.matched.tolist() == [0, 0, -1] and loose.labels.tolist() == [1, 1, 3]
    assert strict.matched.tolist() == [0, -2, -1] and strict.labels.tolist() == [1, -1, 3]


def test_rpn_empty_gt_all_ignore():
    t = rpn_targets(ANCHORS, NO_GT, (50, 50), empty_gt="all_ignore", sample=False)
    assert t.labels.tolist() == [-1, -1, -1]
    t = rpn_targets(ANCHORS, NO_GT, (50, 50), empty_gt="all_negative", sample=False)
    assert t.labels.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        rpn_targets(ANCHORS, NO_GT, (50, 50), empty_gt="raise", sample=False)


def test_ssd_empty_gt_raise():
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        ssd_targets(ANCHORS, NO_GT, NO_LABELS, empty_gt="raise")
    t = ssd_targets(ANCHORS, NO_GT, NO_LABELS, empty_gt="all_negative")
    assert t.labels.tolist() == [0, 0, 0]


# float32 boxes where the two centre formulas round apart: x1 + w / 2 vs (x1 + x2) / 2 (the y delta
# differs in its last bits: 0.13465846 vs 0.13465807)
A32 = np.array([[0.25722128, 0.01007567, 0.9188966, 0.7526967]], np.float32)
G32 = np.array([[0.26722127, 0.02007567, 0.9288966, 0.7626967]], np.float32)


@pytest.mark.parametrize("center", ["half_width", "midpoint"])
def test_ssd_center_reaches_the_box_coder(center):
    want = encode_boxes(G32, A32, weights=(10.0, 10.0, 5.0, 5.0), center=center)
    other = encode_boxes(G32, A32, weights=(10.0, 10.0, 5.0, 5.0),
                         center="midpoint" if center == "half_width" else "half_width")
    assert not np.array_equal(want, other)  # the input tells the two formulas apart
    t = ssd_targets(A32, G32, np.array([1]), convention="torchvision", center=center)
    assert t.labels.tolist() == [1]
    assert np.array_equal(t.deltas, want)


@pytest.mark.parametrize("kw, labels", [
    # gt [0, 0, 10, 10]; anchor 0 = [0, 0, 10, 30]: IoU 100 / 300 = 1/3 < low 0.4 (negative), but it is
    # the gt's best anchor: the low-quality step makes it positive (class 1); anchor 2 is far: background (3)
    ({}, [1, 3, 3]),
    ({"allow_low_quality_matches": False}, [3, 3, 3]),
    # Detectron1 writes the background after the positives: the promoted anchor is background again
    ({"background_after": True}, [3, 3, 3]),
    ({"convention": "caffe"}, [3, 3, 3]),
])
def test_retinanet_low_quality_and_background_after(kw, labels):
    anchors = np.array([[0.0, 0.0, 10.0, 30.0], [0.0, 40.0, 10.0, 50.0], [30.0, 30.0, 40.0, 40.0]])
    t = retinanet_targets(anchors, np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([1]), 3, **kw)
    assert t.labels.tolist() == labels


@pytest.mark.parametrize("mode, label_b", [("filter_before_match", 1), ("ignore_after_match", -1)])
def test_rpn_border_mode(mode, label_b):
    # image 50 x 50, allowed_border 0 (caffe). Anchor A = [-1, 0, 10, 10] crosses the border (IoU with
    # the gt [0, 0, 10, 10] = 100 / 110); B = [0, 0, 10, 20] inside (IoU 0.5: between 0.3 and 0.7).
    # py-faster-rcnn drops A before matching: B is the gt's best anchor, promoted (1). detectron2 matches
    # all, then ignores A: the gt's best was A, B stays between the thresholds (-1).
    anchors = np.array([[-1.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [30.0, 30.0, 40.0, 40.0]])
    t = rpn_targets(anchors, np.array([[0.0, 0.0, 10.0, 10.0]]), (50, 50), convention="caffe", border_mode=mode,
                    sample=False)
    assert t.labels.tolist() == [-1, label_b, 0]
