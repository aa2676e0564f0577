"""Hardening of refdet.iou: a point box's CIoU is torchvision's NaN or, under a guard, finite."""
import numpy as np
import pytest

import refdet

P = np.array([[5.0, 5, 5, 5], [1, 1, 1, 1]])        # points: no aspect ratio (atan(0 / 0))
B = np.array([[0.0, 0, 10, 10], [1, 1, 1, 1]])


@pytest.mark.parametrize("conv", ["torchvision", "paper"])
def test_point_box_ciou_is_torchvisions_nan(conv):
    # the documented answer: torchvision's complete_box_iou computes atan(0/0) = NaN (SPEC TV10)
    assert np.isnan(refdet.complete_box_iou(P, P, convention=conv)).all()


@pytest.mark.parametrize("conv", ["detectron2", "tf", "onnx", "mmdet", "caffe"])
def test_point_box_ciou_is_finite_under_a_guard(conv):
    c = refdet.complete_box_iou(P, P, convention=conv)
    assert np.isfinite(c).all()
    if conv != "caffe":   # v = 0 for a point: CIoU equals DIoU
        np.testing.assert_array_equal(c, refdet.distance_box_iou(P, P, convention=conv))


@pytest.mark.parametrize("kind", ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"])
@pytest.mark.parametrize("conv", ["detectron2", "tf", "mmdet"])
def test_guarded_backward_has_no_nan_at_points(kind, conv):
    v, cache = getattr(refdet, kind + "_paired_forward")(P, B, convention=conv)
    g = getattr(refdet, kind + "_paired_backward")(np.ones(2), cache)
    assert np.isfinite(v).all()
    assert np.isfinite(g.dboxes1).all() and np.isfinite(g.dboxes2).all()


def test_atan_must_be_callable():
    with pytest.raises(TypeError, match="`atan` must be a callable"):
        refdet.complete_box_iou(B, B, atan="arctan")
    with pytest.raises(TypeError, match="`atan` must be a callable"):
        refdet.ciou_loss_forward(B, B, atan=1.0)
