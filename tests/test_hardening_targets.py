"""Hardening of refdet.targets: invalid geometry is a caller error; sizes that cannot be served refused."""
import numpy as np
import pytest

import refdet

ANCHORS = np.array([[0, 0, 16, 16], [8, 8, 24, 24], [16, 0, 32, 16], [0, 16, 16, 32.0]])
GT = np.array([[2, 2, 14, 15.0], [17, 1, 30, 14.0]])
LABELS = np.array([0, 1])


def _calls(anchors, gt):
    return {
        "rpn": lambda: refdet.rpn_targets(anchors, gt, (32, 32), rng=0),
        "retinanet": lambda: refdet.retinanet_targets(anchors, gt, LABELS, 2),
        "ssd": lambda: refdet.ssd_targets(anchors, gt, LABELS + 1),
    }


@pytest.mark.parametrize("recipe", ["rpn", "retinanet", "ssd"])
@pytest.mark.parametrize("bad,msg", [([14, 2, 2, 15.0], "width -12.0"), ([2, 15, 14, 2.0], "height -13.0")])
def test_flipped_ground_truth_is_refused_with_row(recipe, bad, msg):
    gt = GT.copy()
    gt[1] = bad
    with pytest.raises(ValueError, match=rf"`gt_boxes` row 1 has {msg}|`gt_boxes` row 1 has width .* and {msg}"):
        _calls(ANCHORS, gt)[recipe]()


@pytest.mark.parametrize("recipe,name", [("rpn", "anchors"), ("retinanet", "anchors"), ("ssd", "default_boxes")])
@pytest.mark.parametrize("bad", [[32, 0, 16, 16.0], [16, 0, 16, 16.0]])
def test_flipped_or_zero_width_anchor_is_refused_with_row(recipe, name, bad):
    a = ANCHORS.copy()
    a[2] = bad
    with pytest.raises(ValueError, match=rf"`{name}` row 2 has width (-16.0|0.0)"):
        _calls(a, GT)[recipe]()


def test_zero_size_ground_truth_is_the_frameworks_answer():
    # a point gt overlaps nothing: torchvision's low-quality step still gives it its best anchors,
    # and their code is log(0 / pw) = -inf, exactly torchvision's encode_boxes (no NaN)
    gt = np.array([[8.0, 8.0, 8.0, 8.0]])
    t = refdet.rpn_targets(ANCHORS, gt, (32, 32), sample=False)
    assert not np.isnan(t.deltas).any() and np.isneginf(t.deltas[:, 2:]).any()


@pytest.mark.parametrize("recipe", ["rpn", "retinanet", "ssd"])
def test_valid_geometry_answers_without_nan(recipe):
    t = _calls(ANCHORS, GT)[recipe]()
    assert np.isfinite(t.deltas).all()


def test_caffe_plus_one_makes_zero_width_boxes_valid():
    gt = GT.copy()
    gt[1] = [20, 2, 20, 12]          # one pixel wide under +1
    t = refdet.rpn_targets(ANCHORS, gt, (32, 32), convention="caffe", sample=False)
    assert np.isfinite(t.deltas).all()


def test_retinanet_huge_num_classes_refused_before_allocating():
    with pytest.raises(ValueError, match=r"`num_classes` asks for 4,000,000,000 elements"):
        refdet.retinanet_targets(ANCHORS, GT, LABELS, 10 ** 9)
    with pytest.raises(ValueError, match="`num_classes` asks for"):
        refdet.retinanet_targets(ANCHORS, GT, LABELS, 2, max_elements=7)


def test_one_dimensional_gt_boxes_refused():
    d = refdet.ssd_default_boxes((300, 300), [3], aspect_ratios=[[2]], scales=[0.2, 0.9])
    with pytest.raises(ValueError, match=r"`gt_boxes` must have shape \(N, 4\)"):
        refdet.ssd_targets(d, np.zeros(0), np.zeros(0, np.int64))
    assert refdet.ssd_targets(d, np.zeros((0, 4)), np.zeros(0, np.int64)).labels.shape == (len(d),)
