"""Pins of refdet.iou's convention values that no other test resolves (mutation/convention_coverage.md).

``half_wh=True`` on DIoU/CIoU (every profile sets False there: torchvision upcasts before DIoU/CIoU,
so it is reachable only as an override) and ``clamp_enclosing=False`` on the pairwise DIoU/CIoU.
Golden values worked by hand below.
"""
import math

import numpy as np
import pytest

from refdet.iou import complete_box_iou, complete_box_iou_paired, distance_box_iou, distance_box_iou_paired

# float16 pair (as in test_iou_pinned.py): the intersection width min(x2) - max(x1) = 1000.5 - 0.0625
# = 1000.4375 is not a float16 (spacing 0.5 in [512, 1024)): rounded, it is 1000.5.
H1 = np.array([[0.0625, 0, 1000.5, 1]], dtype=np.float16)
H2 = np.array([[0, 0, 1024, 1]], dtype=np.float16)
EPS = 1e-7  # the torchvision profile's eps


def _diou_golden(half):
    # I: 1000.5 (rounded) or 1000.4375; areas 1000.4375 and 1024 (not rounded); U = a1 + a2 - I
    inter = 1000.5 if half else 1000.4375
    iou = inter / (1000.4375 + 1024 - inter)
    # centres x: (0.0625 + 1000.5) / 2 = 500.28125 and 512, y: 0.5 both; enclosing 1024 x 1
    rho2 = (500.28125 - 512.0) ** 2
    c2 = 1024.0 ** 2 + 1.0 + EPS
    return iou, iou - rho2 / c2


def _ciou_golden(half):
    iou, diou = _diou_golden(half)
    # aspect term on the unrounded widths: w / h = 1000.4375 / 1 and 1024 / 1
    v = 4 / math.pi ** 2 * (math.atan(1024.0) - math.atan(1000.4375)) ** 2
    alpha = v / (1 - iou + v + EPS)
    return diou - alpha * v


@pytest.mark.parametrize("half", [True, False])
def test_diou_half_wh_rounds_the_float16_intersection(half):
    want = _diou_golden(half)[1]
    full = distance_box_iou(H1, H2, half_wh=half)
    paired = distance_box_iou_paired(H1, H2, half_wh=half)
    np.testing.assert_allclose(full[0, 0], want, rtol=2e-7)
    np.testing.assert_allclose(paired[0], want, rtol=2e-7)
    # the two goldens differ by ~1.2e-4: far outside float32 rounding
    assert abs(_diou_golden(True)[1] - _diou_golden(False)[1]) > 1e-4


@pytest.mark.parametrize("half", [True, False])
def test_ciou_half_wh_rounds_the_float16_intersection(half):
    want = _ciou_golden(half)
    np.testing.assert_allclose(complete_box_iou(H1, H2, half_wh=half)[0, 0], want, rtol=2e-7)
    np.testing.assert_allclose(complete_box_iou_paired(H1, H2, half_wh=half)[0], want, rtol=2e-7)


# Two flipped boxes (x2 < x1): the enclosing "box" max(x2) - min(x1) = 2 - 10 = -8 on each side.
FLIP1 = np.array([[10.0, 10.0, 0.0, 0.0]])
FLIP2 = np.array([[12.0, 12.0, 2.0, 2.0]])


@pytest.mark.parametrize("fn", [distance_box_iou, complete_box_iou])
@pytest.mark.parametrize("clamp", [True, False])
def test_clamp_enclosing_on_flipped_boxes(fn, clamp):
    # I = max(0, min(0, 2) - max(10, 12)) ... = 0; areas (-10)(-10) = 100 each; U = 200; IoU = 0.
    # centres (5, 5) and (7, 7): rho^2 = 8. c^2 = (-8)^2 + (-8)^2 + eps = 128 + eps unclamped,
    # 0 + 0 + eps clamped. CIoU: both aspect ratios -10 / -10 = 1, v = 0, CIoU = DIoU.
    c2 = EPS if clamp else 128.0 + EPS
    got = fn(FLIP1, FLIP2, convention="torchvision", clamp_enclosing=clamp)[0, 0]
    np.testing.assert_allclose(got, 0.0 - 8.0 / c2, rtol=1e-12)
