"""Pins of the IoU losses' ``formula`` values the coverage run's tests did not catch
(mutation/convention_coverage.md): torchvision's DIoU loss does not clamp the enclosing box, mmdet's does.
"""
import numpy as np
import pytest

from refdet.losses.box import diou_loss_forward

# Two flipped boxes (x2 < x1): enclosing extent max(x2) - min(x1) = 2 - 10 = -8 on each side; I = 0,
# union 100 + 100 = 200, IoU 0; centres (5, 5) and (7, 7): rho^2 = 8.
P = np.array([[10.0, 10.0, 0.0, 0.0]])
T = np.array([[12.0, 12.0, 2.0, 2.0]])


@pytest.mark.parametrize("conv, formula, want", [
    # torchvision: 1 - IoU + rho^2 / (cw^2 + ch^2 + eps) = 1 + 8 / (128 + 1e-7) (no clamp)
    ("torchvision", None, 1 + 8 / (128 + 1e-7)),
    # mmdet: cw, ch clamped to 0: c^2 = eps = 1e-6: 1 - (0 - 8 / 1e-6) = 8000001
    ("mmdet", None, 1 + 8 / 1e-6),
    ("torchvision", "mmdet", 1 + 8 / 1e-7),
    ("mmdet", "torchvision", 1 + 8 / (128 + 1e-6)),
])
def test_diou_loss_formula_on_flipped_boxes(conv, formula, want):
    loss, _ = diou_loss_forward(P, T, convention=conv, formula=formula)
    np.testing.assert_allclose(loss, [want], rtol=1e-12)


def test_diou_loss_torchvision_matches_torchvision():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    want = ops.distance_box_iou_loss(torch.tensor(P), torch.tensor(T)).numpy()
    np.testing.assert_allclose(diou_loss_forward(P, T)[0], want, rtol=1e-15)


@pytest.mark.parametrize("conv, formula, want", [
    # torchvision: enclosing -8 x -8 = 64 unclamped: 1 - (0 - (64 - 200) / (64 + 1e-7))
    ("torchvision", None, 1 - 136 / (64 + 1e-7)),
    # mmdet bbox_overlaps: enclosing clamped to 0, C = max(0, 1e-6): 1 - (0 - (1e-6 - 200) / 1e-6)
    ("mmdet", None, 1 + (1e-6 - 200) / 1e-6),
    ("torchvision", "mmdet", 1 + (1e-7 - 200) / 1e-7),
])
def test_giou_loss_formula_on_flipped_boxes(conv, formula, want):
    from refdet.losses.box import giou_loss_forward

    loss, _ = giou_loss_forward(P, T, convention=conv, formula=formula)
    np.testing.assert_allclose(loss, [want], rtol=1e-9)


def test_giou_loss_torchvision_matches_torchvision():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    from refdet.losses.box import giou_loss_forward

    want = ops.generalized_box_iou_loss(torch.tensor(P), torch.tensor(T)).numpy()
    np.testing.assert_allclose(giou_loss_forward(P, T)[0], want, rtol=1e-15)
