"""Pins of refdet.yolo's SimOTA convention values that no other test resolved (mutation/convention_coverage.md):
mmdet's ``inf_cost=1e8`` and ``iou_eps=1e-7`` (YOLOX: 1e6 and 1e-8; the paper profile 1e5).
"""
import math

import numpy as np
import pytest

from refdet.yolo.assign import simota_assign


def test_mmdet_inf_cost_absorbs_the_cost_in_float32():
    # Thin gt [45, 0, 55, 100] (centre (50, 50)); points (60, 50) and (62, 50) are near the centre
    # (|dx| < 2.5 * 8 = 20) but outside the box: candidates outside the prior, both paying inf_cost.
    # p = 1 (class cost 0); IoUs 0.5 and 0.6: costs 3 * -log(0.5 + eps) = 2.08 and 3 * -log(0.6) = 1.53.
    # k = max(1, int(0.5 + 0.6)) = 1. In float32, 1e8 + 2.08 and 1e8 + 1.53 both round to 1e8 (spacing
    # 8 there): a tie, the lower index (point 0) wins. With 1e6 or 1e5 (spacing 0.0625, 0.0078) the
    # costs stay apart and point 1 (the cheaper) wins. mmdet sums its costs in float32 as well.
    f = np.float32
    gt = np.array([[45, 0, 55, 100]], f)
    pts = np.array([[60, 50], [62, 50]], f)
    pred = np.array([[45, 0, 55, 50], [45, 0, 55, 60]], f)
    scores = np.ones((2, 1), f)
    strides = np.full(2, 8, f)
    for inf_cost, winner in ((None, 0), (1e8, 0), (1e6, 1), (1e5, 1)):
        a = simota_assign(scores, pred, pts, strides, np.array([0]), gt, convention="mmdet", inf_cost=inf_cost)
        fg = (a.gt_index >= 0).nonzero()[0].tolist()
        assert fg == [winner], (inf_cost, a.gt_index)


def test_mmdet_iou_eps_prices_a_zero_iou():
    # gt [0, 0, 100, 100]; points (45, 50) and (55, 50) inside the box and near its centre (prior).
    # point 0: p = 1 (class cost 0), IoU 0: cost 3 * -log(0 + iou_eps) = 48.35 (1e-7) or 55.26 (1e-8).
    # point 1: p = e^-100, class cost -log(sqrt p) = 50; IoU 0.5: cost 50 + 3 * log 2 = 52.08.
    # k = max(1, int(0.5)) = 1: mmdet's eps (1e-7) picks point 0, YOLOX's (1e-8) point 1.
    assert 3 * -math.log(1e-7) < 50 + 3 * math.log(2) < 3 * -math.log(1e-8)
    gt = np.array([[0.0, 0.0, 100.0, 100.0]])
    pts = np.array([[45.0, 50.0], [55.0, 50.0]])
    pred = np.array([[200.0, 200.0, 210.0, 210.0], [0.0, 0.0, 100.0, 50.0]])
    scores = np.array([[1.0], [math.exp(-100.0)]])
    strides = np.full(2, 8.0)
    for iou_eps, winner in ((None, 0), (1e-7, 0), (1e-8, 1)):
        a = simota_assign(scores, pred, pts, strides, np.array([0]), gt, convention="mmdet", iou_eps=iou_eps)
        fg = (a.gt_index >= 0).nonzero()[0].tolist()
        assert fg == [winner], (iou_eps, a.gt_index)


@pytest.mark.parametrize("conv, rule", [("ultralytics", None), ("mmdet", None),
                                        ("ultralytics", "target_minus_left"), ("mmdet", "one_minus_left")])
def test_dfl_right_weight_rounding(conv, rule):
    # DFL with 4 equal logits: log p = -log 4 for both bins; y = 0.15086177 (float32): tl = 0, tr = 1,
    # w_l = 1 - y. ultralytics: w_r = 1 - w_l; mmdet: w_r = y - tl. In exact arithmetic both are y;
    # in float32 they round apart, and so do the losses -(lp w_l + lp w_r) (1.3862944 vs 1.3862945).
    from refdet.yolo.losses import distribution_focal_loss_forward

    f = np.float32
    y = np.array([0.15086177], f)
    z = np.zeros((1, 4), f)
    loss = distribution_focal_loss_forward(z, y, convention=conv, right_weight=rule)[0]
    lp = (z - z.max()) - np.log(np.exp(z - z.max()).sum(axis=-1, keepdims=True))  # the log-softmax
    wl = f(1) - y
    rule = rule or {"ultralytics": "one_minus_left", "mmdet": "target_minus_left"}[conv]
    wr = f(1) - wl if rule == "one_minus_left" else y - f(0)
    want = -(lp[:, 0] * wl + lp[:, 1] * wr)
    assert loss.dtype == f
    np.testing.assert_array_equal(loss.view(np.uint32), want.view(np.uint32))
    assert (f(1) - wl) != (y - f(0))  # the two weights differ here
