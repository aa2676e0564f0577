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
