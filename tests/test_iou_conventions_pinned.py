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
    paired = {distance_box_iou: distance_box_iou_paired, complete_box_iou: complete_box_iou_paired}[fn]
    np.testing.assert_allclose(paired(FLIP1, FLIP2, convention="torchvision", clamp_enclosing=clamp)[0],
                               0.0 - 8.0 / c2, rtol=1e-12)


def test_ciou_onnx_sorts_corners():
    # onnx: any diagonal is a box: [10, 10, 0, 0] is [0, 0, 10, 10]: CIoU of a box with itself, 1.
    # As given its width is -10: I = 0, IoU 0, and the CIoU is 0 under the onnx guard.
    flipped, box = np.array([[10.0, 10.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 10.0, 10.0]])
    for fn in (complete_box_iou, distance_box_iou):
        assert fn(flipped, box, convention="onnx")[0, 0] == 1.0
        assert fn(flipped, box, convention="onnx", sort_corners=False)[0, 0] == 0.0
    for fn in (complete_box_iou_paired, distance_box_iou_paired):
        assert fn(flipped, box, convention="onnx")[0] == 1.0
        assert fn(flipped, box, convention="onnx", sort_corners=False)[0] == 0.0


def _mmdet_diou32_eps0(p, t):
    """mmdet v3 ciou_loss's IoU - rho^2 / c^2 in float32 with eps = 0 (torch's order of operations;
    its alpha is 0 here: IoU <= 0.5)."""
    f = np.float32
    wh = np.maximum(np.minimum(p[:, 2:], t[:, 2:]) - np.maximum(p[:, :2], t[:, :2]), f(0))
    overlap = wh[:, 0] * wh[:, 1]
    union = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) + (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]) - overlap
    ious = overlap / union
    ewh = np.maximum(np.maximum(p[:, 2:], t[:, 2:]) - np.minimum(p[:, :2], t[:, :2]), f(0))
    c2 = ewh[:, 0] ** 2 + ewh[:, 1] ** 2
    left = ((t[:, 0] + t[:, 2]) - (p[:, 0] + p[:, 2])) ** 2 / f(4)
    right = ((t[:, 1] + t[:, 3]) - (p[:, 1] + p[:, 3])) ** 2 / f(4)
    return ious - (left + right) / c2


def test_ciou_mmdet_centre_distance_from_sums():
    # Halving is exact, so 'halves' and 'sums' agree until the squares are subnormal: this float32
    # pair (~1e-18, from test_iou_pinned.py) tells them apart; mmdet's CIoU (IoU < 0.5: alpha 0) is
    # its DIoU, coordinate sums.
    a = np.array([[6.9131377e-19, 2.6071495e-19, 9.4467976e-19, 7.3843809e-19]], np.float32)
    b = np.array([[5.8464996e-19, 3.9783347e-19, 1.0275518e-18, 4.0783347e-19]], np.float32)
    want = _mmdet_diou32_eps0(a, b)
    for fn, pick in ((complete_box_iou, lambda y: y[0]), (complete_box_iou_paired, lambda y: y)):
        sums = pick(fn(a, b, convention="mmdet", eps=0.0))
        halves = pick(fn(a, b, convention="mmdet", eps=0.0, centre_distance="halves"))
        assert sums.dtype == np.float32
        np.testing.assert_array_equal(sums.view(np.uint32), want.view(np.uint32))
        assert halves[0] != want[0]


def test_ciou_torchvision_centre_distance_from_halves():
    # torchvision's complete_box_iou measures rho^2 from halves: on this subnormal float32 pair its
    # bits are refdet's halves, 2 ulp away from the sums
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    p = np.array([[8.7965116e-19, 6.4214438e-20, 1.3254947e-18, 3.4366359e-19]], np.float32)
    t = np.array([[1.0642739e-18, -9.3081982e-20, 1.1845407e-18, 2.1053065e-19]], np.float32)
    tv = ops.complete_box_iou(torch.from_numpy(p), torch.from_numpy(t), eps=0.0).numpy()
    np.testing.assert_array_equal(complete_box_iou(p, t, eps=0.0).view(np.uint32), tv.view(np.uint32))
    np.testing.assert_array_equal(complete_box_iou_paired(p, t, eps=0.0).view(np.uint32), tv[0].view(np.uint32))
    assert complete_box_iou(p, t, eps=0.0, centre_distance="sums")[0, 0] != tv[0, 0]


def test_giou_onnx_sorts_corners():
    # sorted, [10, 10, 0, 0] is [0, 0, 10, 10]; against [5, 0, 15, 10]: I = 50, U = 150, C = 150:
    # GIoU = 1/3. As given: I = 0, U = 100 + 100, enclosing max(0, 15) - min(10, 5) = 10 by
    # max(0, 10) - min(10, 0) = 10: C = 100, GIoU = 0 - (100 - 200) / 100 = 1.
    from refdet.iou import generalized_box_iou, generalized_box_iou_paired

    flipped, box = np.array([[10.0, 10.0, 0.0, 0.0]]), np.array([[5.0, 0.0, 15.0, 10.0]])
    np.testing.assert_allclose(generalized_box_iou(flipped, box, convention="onnx")[0, 0], 1 / 3, rtol=1e-15)
    np.testing.assert_allclose(generalized_box_iou_paired(flipped, box, convention="onnx")[0], 1 / 3, rtol=1e-15)
    assert generalized_box_iou(flipped, box, convention="onnx", sort_corners=False)[0, 0] == 1.0


@pytest.mark.parametrize("half", [True, False])
def test_giou_half_wh(half):
    # torchvision's generalized_box_iou keeps float16: I = 1000.5 (rounded), U = 1023.9375, C = 1024 * 1:
    # GIoU = 1000.5 / 1023.9375 - 0.0625 / 1024. Without the rounding: I = 1000.4375, U = C = 1024.
    from refdet.iou import generalized_box_iou, generalized_box_iou_paired

    want = 1000.5 / 1023.9375 - 0.0625 / 1024 if half else 1000.4375 / 1024
    np.testing.assert_allclose(generalized_box_iou(H1, H2, half_wh=half)[0, 0], want, rtol=2e-7)
    np.testing.assert_allclose(generalized_box_iou_paired(H1, H2, half_wh=half)[0], want, rtol=2e-7)
    assert abs((1000.5 / 1023.9375 - 0.0625 / 1024) - 1000.4375 / 1024) > 5e-5


def test_giou_paper_eps_is_0():
    # the paper profile's eps is 0: under the 'plus_eps' guard a box with itself is I / (U + 0) = 1
    # exactly (1e-7 would give 100 / (100 + 1e-7) < 1)
    from refdet.iou import generalized_box_iou, generalized_box_iou_paired

    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert generalized_box_iou(box, box, convention="paper", guard="plus_eps")[0, 0] == 1.0
    assert generalized_box_iou_paired(box, box, convention="paper", guard="plus_eps")[0] == 1.0
    assert generalized_box_iou(box, box, convention="paper", guard="plus_eps", eps=1e-7)[0, 0] < 1.0
