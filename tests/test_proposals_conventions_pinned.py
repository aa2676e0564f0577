"""Pins of ``filter_proposals``' top-n counts (mutation/convention_coverage.md): they show only with more
boxes than the count, which the other tests do not use.

2500 disjoint 18 x 18 boxes on a 50 x 50 grid of stride 20 (no NMS suppression, none below any
profile's minimum size), one level, distinct scores.
"""
import numpy as np
import pytest

from refdet.proposals import filter_proposals

_G = np.arange(50) * 20.0
_X, _Y = np.meshgrid(_G, _G)
BOXES = np.stack([_X.ravel() + 1, _Y.ravel() + 1, _X.ravel() + 19, _Y.ravel() + 19], axis=1)
SCORES = np.linspace(0.9, 0.1, len(BOXES))  # probabilities (caffe) and logits alike: distinct, decreasing
BIG = (5000, 5000)


def _count(conv, training, **kw):
    obj = SCORES if conv == "caffe" else np.log(SCORES / (1 - SCORES))
    out = filter_proposals(BOXES, obj, (1000, 1000), [len(BOXES)], training=training, convention=conv, **kw)
    return len(out.boxes[0])


@pytest.mark.parametrize("conv, train, test", [
    ("torchvision", 2000, 1000), ("detectron2", 1000, 1000), ("mmdet", 1000, 1000), ("caffe", 2000, 300)])
def test_post_nms_top_n(conv, train, test):
    # pre_nms_top_n opened to 5000: the post-NMS count decides (train, test) per profile
    assert _count(conv, True, pre_nms_top_n=BIG) == train
    assert _count(conv, False, pre_nms_top_n=BIG) == test


@pytest.mark.parametrize("conv, train, test", [("torchvision", 2000, 1000), ("caffe", 2500, 2500)])
def test_pre_nms_top_n(conv, train, test):
    # post_nms_top_n opened to 5000: torchvision keeps its (2000, 1000) best before NMS; py-faster-rcnn's
    # (12000, 6000) keeps all 2500
    assert _count(conv, True, post_nms_top_n=BIG) == train
    assert _count(conv, False, post_nms_top_n=BIG) == test


def _tiny(conv, **kw):
    boxes = np.array([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 50.5, 50.5], [70.0, 70.0, 90.0, 90.0]])
    obj = np.array([2.0, 1.0, -1.0])
    out = filter_proposals(boxes, obj, (100, 100), [3], convention=conv, **kw)
    return sorted(out.boxes[0][:, 0].tolist())


def test_torchvision_small_box_rule_is_inclusive():
    # torchvision remove_small_boxes: keep w >= min_size; the 0.5 x 0.5 box at min_size 0.5 stays;
    # strict (w > min_size, detectron2's nonempty) drops it
    assert _tiny("torchvision", min_size=0.5) == [10.0, 50.0, 70.0]
    assert _tiny("torchvision", min_size=0.5, small_box_rule="strict") == [10.0, 70.0]
    assert _tiny("detectron2", min_size=0.5) == [10.0, 70.0]


def test_torchvision_score_thresh_0_on_logits():
    # torchvision keeps scores >= 0.0: every sigmoid probability (all three); on logits (score="logit")
    # it drops the negative one (-1); without a threshold (None, detectron2's) all three stay
    assert _tiny("torchvision") == [10.0, 50.0, 70.0]
    assert _tiny("torchvision", score="logit") == [10.0, 50.0]
    assert _tiny("detectron2") == [10.0, 50.0, 70.0]
