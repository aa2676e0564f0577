"""Pins of refdet.roi_heads' convention values that no other test resolved (mutation/convention_coverage.md):
``sample_rois(append_gt=False)`` and the caffe / mmdet settings of ``fastrcnn_postprocess`` (caffe's
NMS threshold 0.3, mmdet's box stds and its unconditional coordinate trick).
"""
import numpy as np
import pytest

from refdet.box_coder import decode_boxes
from refdet.roi_heads import fastrcnn_postprocess, sample_rois


@pytest.mark.parametrize("append_gt", [True, False])
def test_sample_rois_append_gt(append_gt):
    # one proposal far from the one gt: without the gt appended there is no foreground at all
    props = [np.array([[50.0, 50.0, 60.0, 60.0]])]
    gt, lab = [np.array([[0.0, 0.0, 10.0, 10.0]])], [np.array([1])]
    out = sample_rois(props, gt, lab, num_classes=3, rng=np.random.default_rng(0), append_gt=append_gt)
    rois, labels = out.rois[0], out.labels[0]
    if append_gt:
        assert len(rois) == 2 and sorted(labels.tolist()) == [0, 1]
        assert any(np.array_equal(r, gt[0][0]) for r in rois)
    else:
        assert rois.tolist() == props[0].tolist() and labels.tolist() == [0]


def _one_class(logits, boxes, size=(100, 100)):
    """C = 2 (background first or last as the profile says), class-agnostic zero deltas."""
    z = np.asarray(logits, float)
    return z, np.zeros((len(boxes), 4)), [np.asarray(boxes, float)], [size]


@pytest.mark.parametrize("nms_thresh, kept", [(None, [0]), (0.5, [0, 1])])
def test_caffe_nms_threshold_is_0_3(nms_thresh, kept):
    # py-faster-rcnn TEST.NMS = 0.3 with +1 widths: [0, 0, 9, 9] and [0, 5, 9, 14] are 10 x 10 each,
    # I = 10 x (9 - 5 + 1) = 50, U = 150, IoU = 1/3: >= 0.3 suppresses, < 0.5 does not.
    z, d, props, sizes = _one_class([[0.0, 3.0], [0.0, 2.0]], [[0, 0, 9, 9], [0, 5, 9, 14]])
    out = fastrcnn_postprocess(z, d, props, sizes, convention="caffe", nms_thresh=nms_thresh)
    assert out.rois[0].tolist() == kept


def test_mmdet_box_stds():
    # mmdet decodes with stds (0.1, 0.1, 0.2, 0.2) (deltas * std): the detection is decode_boxes under
    # mmdet's coder with those stds, not with torchvision's weights (10, 10, 5, 5) or caffe's ones.
    rois = np.array([[20.0, 20.0, 60.0, 60.0]])
    z = np.array([[3.0, 0.0]])  # mmdet: background last, class 0 is the object
    d = np.array([[0.5, -0.5, 0.5, 0.25]])
    out = fastrcnn_postprocess(z, d, [rois], [(100, 100)], convention="mmdet")
    want = decode_boxes(d, rois, weights=(0.1, 0.1, 0.2, 0.2), convention="mmdet")
    np.testing.assert_array_equal(out.boxes[0], want)
    for other in ((10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)):
        assert not np.allclose(want, decode_boxes(d, rois, weights=other, convention="mmdet"))


def test_mmdet_coordinate_trick_always():
    # mmcv's batched_nms offsets each class by (max coordinate + 1) whatever the candidate count
    # (below 10000); torchvision only up to 1000 candidates. Class-1 boxes A = [0, 0, 1, 1] and
    # B = [0, 0, 2 - 2^-48, 1]: exact IoU = 1 / (2 - 2^-48) > 0.5 suppresses B. With the image's
    # max coordinate 1000 (box C), the trick shifts class 1 by 1001: 1003 - 2^-48 rounds to 1003 in
    # float64, IoU = 1/2 exactly, not > 0.5: B is kept. 600 filler RoIs (1200 candidates, > 1000)
    # keep torchvision's rule from using the trick.
    eps = 2.0 ** -48
    boxes = [[0, 0, 1, 1], [0, 0, 2 - eps, 1], [900, 900, 1000, 1000]] + [[500, 500, 510, 510]] * 600
    z = np.zeros((len(boxes), 3))
    z[0] = [0.0, 4.0, -9.0]   # A: class 1 (background last: index 2)
    z[1] = [0.0, 3.0, -9.0]   # B: class 1, lower score
    z[2] = [4.0, 0.0, -9.0]   # C: class 0
    d = np.zeros((len(boxes), 4))
    props = [np.array(boxes, float)]
    kw = dict(detections_per_img=0)
    trick = fastrcnn_postprocess(z, d, props, [(1000, 1000)], convention="mmdet", **kw)
    exact = fastrcnn_postprocess(z, d, props, [(1000, 1000)], convention="mmdet", coordinate_trick=False, **kw)
    tv = fastrcnn_postprocess(z, d, props, [(1000, 1000)], convention="mmdet", coordinate_trick="torchvision", **kw)
    b_kept = [1 in out.rois[0][out.labels[0] == 1].tolist() for out in (trick, exact, tv)]
    assert b_kept == [True, False, False]


def test_caffe_box_weights_are_ones():
    # py-faster-rcnn's test deltas are de-normalised: weights 1. RoI [0, 0, 9, 19] with +1 widths:
    # w 10, h 20, centre (0 + 5, 0 + 10); deltas (0.1, 0.2, 0, 0): centre (5 + 1, 10 + 4) = (6, 14);
    # py-faster-rcnn bbox_transform_inv: x1 = 6 - 5 = 1, y1 = 14 - 10 = 4, x2 = 6 + 5 = 11, y2 = 14 + 10 = 24
    # (caffe multiplies by its stds: with (10, 10, 5, 5) the centre would be (15, 50), with
    # (0.1, 0.1, 0.2, 0.2) (5.1, 10.4))
    z = np.array([[0.0, 3.0]])
    d = np.array([[0.1, 0.2, 0.0, 0.0]])
    out = fastrcnn_postprocess(z, d, [np.array([[0.0, 0.0, 9.0, 19.0]])], [(100, 100)], convention="caffe")
    np.testing.assert_allclose(out.boxes[0], [[1.0, 4.0, 11.0, 24.0]], rtol=1e-12)


@pytest.mark.parametrize("min_size, kept", [(None, [0, 1]), (0.01, [0])])
def test_detectron2_keeps_tiny_boxes(min_size, kept):
    # detectron2 / mmdet / caffe do not drop small detections (min_size None); torchvision drops sides
    # below 1e-2: the 0.005 x 0.005 box
    d = np.zeros((2, 4))  # detectron2: background last (index 1 of the two classes)
    boxes = np.array([[10.0, 10.0, 20.0, 20.0], [50.0, 50.0, 50.005, 50.005]])
    out = fastrcnn_postprocess(np.array([[3.0, 0.0], [3.0, 0.0]]), d, [boxes], [(100, 100)],
                               convention="detectron2", min_size=min_size)
    assert sorted(out.rois[0].tolist()) == kept


@pytest.mark.parametrize("conv, rule, n", [("torchvision", None, 1), ("torchvision", "score_at_k", 2),
                                          ("caffe", None, 2), ("caffe", "first", 1)])
def test_top_k_rule_on_tied_scores(conv, rule, n):
    # two far-apart boxes with the same score and detections_per_img = 1: torchvision takes the first;
    # py-faster-rcnn keeps every detection scoring >= the k-th best score: both
    z = np.array([[0.0, 3.0], [0.0, 3.0]])
    d = np.zeros((2, 4))
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    out = fastrcnn_postprocess(z, d, [boxes], [(100, 100)], convention=conv, detections_per_img=1, top_k_rule=rule)
    assert len(out.rois[0]) == n


@pytest.mark.parametrize("order, labels", [(None, [1, 2]), ("score", [2, 1])])
def test_caffe_orders_by_class(order, labels):
    # py-faster-rcnn fills all_boxes[class][image]: class 1's detection before class 2's, although
    # class 2's scores higher (0.7 vs 0.2); torchvision orders by score
    z = np.log(np.array([[0.1, 0.2, 0.7]]))
    d = np.zeros((1, 4))
    out = fastrcnn_postprocess(z, d, [np.array([[0.0, 0.0, 10.0, 10.0]])], [(100, 100)], convention="caffe",
                               order=order)
    assert out.labels[0].tolist() == labels


def test_torchvision_trick_below_1000_candidates():
    # torchvision's batched_nms uses the coordinate trick at <= 1000 candidates (here 6): class-2
    # boxes A = [0, 0, 1, 1], B = [0, 0, 2 - 2^-48, 1]: exact IoU 1 / (2 - 2^-48) > 0.5 suppresses B;
    # shifted by 2 * (1000 + 1) = 2002 (C reaches 1000), 2004 - 2^-48 rounds to 2004 (float64
    # spacing 2^-41 there): IoU 0.5, not > 0.5: B kept. coordinate_trick=False: the exact answer.
    eps = 2.0 ** -48
    boxes = np.array([[0, 0, 1, 1], [0, 0, 2 - eps, 1], [900, 900, 1000, 1000]], float)
    z = np.array([[-9.0, 0.0, 4.0], [-9.0, 0.0, 3.0], [-9.0, 4.0, 0.0]])  # torchvision: background 0
    d = np.zeros((3, 4))
    kept = []
    for trick in (None, "torchvision", False):
        out = fastrcnn_postprocess(z, d, [boxes], [(1000, 1000)], coordinate_trick=trick)
        kept.append(1 in out.rois[0][out.labels[0] == 2].tolist())
    assert kept == [True, True, False]
