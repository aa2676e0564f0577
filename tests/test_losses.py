"""Tests of refdet.losses: golden values (arithmetic in comments), gradient checks (float64 central
differences via refdet.testing.check_gradients), properties, and differential tests against torch /
torchvision with gradients compared to autograd.

Tolerances: float64 closed forms 1e-12 relative; gradient checks |a - n| <= 1e-6 + 1e-5 |n|;
float64 against torch float64 1e-12 (same formulas, same order, only libm rounding differs); float32
against torch float32 a few ulp of the value's magnitude (exp/log1p/atan differ in the last place),
except the IoU losses, which equal torchvision's bits in float32 and float64 (CIoU given torch's
arctangent). Every public function also gives the same bits for every memory layout of its inputs.
"""
import math
import types

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refdet import losses as L
from refdet.testing import check_gradients
from refdet.testing import strategies as rst
from tests.conftest import readonly

LN2 = math.log(2.0)
LN3 = math.log(3.0)


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _tv():
    _torch()
    return pytest.importorskip("torchvision")


def _close(a, b, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


# =================================================================================================
# Golden values (TV13, float64), derived by hand
# =================================================================================================

def test_cross_entropy_background_at_p08_costs_0223():
    # The seed's example: an anchor whose softmax gives background p = 0.8 (and 0.2 to the object
    # class) costs -ln 0.8 = 0.22314355 when its label is background. Logits ln 0.8 and ln 0.2
    # give exactly these probabilities: softmax = 0.8 / (0.8 + 0.2), 0.2 / 1.0.
    z = np.log([[0.8, 0.2]])
    loss, cache = L.softmax_cross_entropy_forward(z, np.array([0]))
    assert abs(float(loss) - 0.2231435513142097) < 1e-12
    assert round(float(loss), 2) == 0.22
    # gradient = softmax - onehot = [0.8 - 1, 0.2] = [-0.2, 0.2]
    _close(L.softmax_cross_entropy_backward(1.0, cache).dlogits, [[-0.2, 0.2]])


def test_cross_entropy_ignore_index_mean_over_kept_rows():
    # rows: label 0 with uniform logits over 3 classes -> ln 3 = 1.0986123; label -1 ignored; label 2
    # with logits (0, 0, ln 2): softmax(2) = 2 / (1 + 1 + 2) = 0.5 -> ln 2 = 0.6931472.
    # mean over the two kept rows = (ln 3 + ln 2) / 2 = 0.8958797 (torch semantics, not / 3)
    z = np.array([[0.0, 0.0, 0.0], [5.0, -1.0, 2.0], [0.0, 0.0, LN2]])
    y = np.array([0, -1, 2])
    loss, c = L.softmax_cross_entropy_forward(z, y)
    _close(loss, (LN3 + LN2) / 2)
    none, _ = L.softmax_cross_entropy_forward(z, y, reduction="none")
    _close(none, [LN3, 0.0, LN2])
    g = L.softmax_cross_entropy_backward(1.0, c).dlogits
    _close(g[1], [0, 0, 0])                                   # ignored row: no gradient
    _close(g[2], np.array([0.25, 0.25, 0.5 - 1]) / 2)         # (softmax - onehot) / 2 kept rows
    # all rows ignored: 0 / 0 = NaN, like torch
    assert np.isnan(L.softmax_cross_entropy_forward(z, np.array([-1, -1, -1]))[0])


def test_bce_golden():
    # x = 0, t = 1: -log sigmoid(0) = ln 2 = 0.6931472
    # x = 2, t = 0: -log(1 - sigmoid(2)) = 2 + log1p(e^-2) = 2.1269280
    # mean = 1.4100376; gradients sigmoid(x) - t = (0.5 - 1, 0.8807971 - 0) / 2
    x, t = np.array([0.0, 2.0]), np.array([1.0, 0.0])
    loss, c = L.bce_with_logits_forward(x, t)
    _close(loss, (LN2 + 2.1269280110429727) / 2)
    _close(L.bce_with_logits_backward(1.0, c).dlogits, [-0.25, 0.8807970779778823 / 2])
    # extreme logits do not overflow: x = 800, t = 0 costs 800 (+ log1p(e^-800) = 0)
    big, _ = L.bce_with_logits_forward(np.array([800.0, -800.0]), np.array([0.0, 1.0]), reduction="none")
    _close(big, [800.0, 800.0])


def test_sigmoid_focal_golden_tv13():
    # alpha = 0.25, gamma = 2.
    # x = 0, t = 1: p = p_t = 0.5, ce = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
    #   FL = 0.25 * 0.25 * 0.6931472 = 0.0433217
    #   dFL/dx = alpha (1-p)^g (g p ln p + p - 1) = 0.0625 * (2 * 0.5 * -0.6931472 - 0.5) = -0.0745717
    # x = 2, t = 0: p = sigmoid(2) = 0.8807971, p_t = 0.1192029, ce = -ln(1 - p) = 2.1269280,
    #   (1 - p_t)^2 = p^2 = 0.7758034, alpha_t = 0.75
    #   FL = 0.75 * 0.7758034 * 2.1269280 = 1.2375586
    #   dFL/dx = (1-alpha) p^g (p - g (1-p) ln(1-p)) = 0.75 * 0.7758034 * (0.8807971 + 2 * 0.1192029
    #            * 2.1269280) = 0.8075353
    x, t = np.array([0.0, 2.0]), np.array([1.0, 0.0])
    loss, c = L.sigmoid_focal_loss_forward(x, t)
    _close(loss, [0.04332169878499658, 1.2375586345660556])
    _close(L.sigmoid_focal_loss_backward(np.ones(2), c).dlogits, [-0.07457169878499659, 0.8075352978363612])
    # the paper's closed forms, written out, on a grid of logits (t = 1 and t = 0)
    a, g = 0.25, 2.0
    xs = np.linspace(-8, 8, 33)
    p = 1 / (1 + np.exp(-xs))
    for tv, closed in ((1.0, a * (1 - p) ** g * (g * p * np.log(p) + p - 1)),
                       (0.0, (1 - a) * p ** g * (p - g * (1 - p) * np.log(1 - p)))):
        _, c = L.sigmoid_focal_loss_forward(xs, np.full_like(xs, tv), alpha=a, gamma=g)
        _close(L.sigmoid_focal_loss_backward(np.ones_like(xs), c).dlogits, closed, rtol=1e-10)


def test_focal_limits():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40) * 5
    t = (rng.random(40) < 0.5).astype(float)
    # gamma = 0 reduces to alpha-weighted BCE, value and gradient
    fl, c = L.sigmoid_focal_loss_forward(x, t, alpha=0.25, gamma=0.0)
    bce, cb = L.bce_with_logits_forward(x, t, reduction="none")
    w = 0.25 * t + 0.75 * (1 - t)
    _close(fl, w * bce)
    _close(L.sigmoid_focal_loss_backward(np.ones(40), c).dlogits,
           w * L.bce_with_logits_backward(np.ones(40), cb).dlogits)
    # alpha = -1: no weighting
    fl1, _ = L.sigmoid_focal_loss_forward(x, t, alpha=-1, gamma=0.0)
    _close(fl1, bce)
    # saturated logits: p rounds to 0 or 1 but the gradient is finite and tends to its limits:
    # well classified (x = +-40 with the right label): -> 0; badly wrong: -> alpha_t (p - t)
    for gam in (0.5, 1.0, 2.0, 3.5):
        xs = np.array([40.0, -40.0, 40.0, -40.0])
        ts = np.array([1.0, 0.0, 0.0, 1.0])
        loss, c = L.sigmoid_focal_loss_forward(xs, ts, alpha=0.25, gamma=gam)
        d = L.sigmoid_focal_loss_backward(np.ones(4), c).dlogits
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(d))
        _close(d[:2], [0.0, 0.0], atol=1e-15)
        _close(d[2:], [0.75, -0.25], rtol=1e-12)
        _close(loss[2:], [0.75 * 40, 0.25 * 40], rtol=1e-12)   # ce = 40 (+ e^-40), m = 1


def test_smooth_l1_golden():
    # beta = 1: d = 0.5 -> 0.5 * 0.25 / 1 = 0.125; d = -2 -> 2 - 0.5 = 1.5; d = 1 (at beta, not < beta)
    # -> 1 - 0.5 = 0.5 (both pieces agree there); gradients 0.5, -1, 1
    p, t = np.array([0.5, -2.0, 1.0]), np.zeros(3)
    loss, c = L.smooth_l1_forward(p, t, reduction="none")
    _close(loss, [0.125, 1.5, 0.5])
    _close(L.smooth_l1_backward(np.ones(3), c).dpred, [0.5, -1.0, 1.0])
    # beta = 1/9 (torchvision RPN): d = 0.1 -> 0.5 * 0.01 * 9 = 0.045; d = 1 -> 1 - 1/18 = 0.9444444
    loss, _ = L.smooth_l1_forward(np.array([0.1, 1.0]), np.zeros(2), beta=1 / 9, reduction="none")
    _close(loss, [0.045, 1 - 1 / 18])
    # beta = 0 is L1 with gradient 0 at d = 0 (PyTorch)
    loss, c = L.smooth_l1_forward(np.array([0.0, -3.0, 2.0]), np.zeros(3), beta=0.0, reduction="sum")
    _close(loss, 5.0)
    g = L.smooth_l1_backward(1.0, c)
    _close(g.dpred, [0.0, -1.0, 1.0])
    _close(g.dtarget, [0.0, 1.0, -1.0])
    loss, c = L.l1_forward(np.array([0.0, -3.0, 2.0]), np.zeros(3))
    _close(loss, 5.0 / 3)
    _close(L.l1_backward(1.0, c).dpred, [0.0, -1 / 3, 1 / 3])


def test_iou_losses_golden():
    # pred [0,0,2,2], target [1,1,3,3]: I = 1, U = 4 + 4 - 1 = 7, enclosing box [0,0,3,3], C = 9
    #   GIoU = 1/7 - (9 - 7)/9 = 0.1428571 - 0.2222222 = -0.0793651 -> loss 1.0793651
    #   centres (1,1) and (2,2): rho^2 = 2, c^2 = 3^2 + 3^2 = 18
    #   DIoU loss = 1 - 1/7 + 2/18 = 0.9682540; CIoU: same aspect ratio, v = 0 -> same as DIoU
    p, g = np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 1.0, 3.0, 3.0]])
    for conv in ("torchvision", "mmdet"):
        _close(L.giou_loss_forward(p, g, convention=conv, eps=0.0)[0], [1 - (1 / 7 - 2 / 9)])
        _close(L.diou_loss_forward(p, g, convention=conv, eps=0.0)[0], [1 - 1 / 7 + 2 / 18])
    _close(L.giou_loss_forward(p, g)[0], [1.0793650793650793], rtol=1e-7)   # eps = 1e-7 shifts ~1e-8
    # pred [0,0,2,1] (w/h = 2), target [0,0,1,2] (w/h = 1/2): I = 1, U = 3, IoU = 1/3, enclosing
    # [0,0,2,2] -> c^2 = 8; centres (1, .5), (.5, 1) -> rho^2 = 0.5
    #   v = 4/pi^2 (atan(1/2) - atan(2))^2 = 0.4052847 * 0.4140905 = 0.1678258
    #   alpha = v / (1 - 1/3 + v) = 0.2011113
    #   CIoU loss = 1 - 1/3 + 0.5/8 + alpha v = 0.7291667 + 0.0337516 = 0.7629183
    #   mmdet gates alpha by IoU > 0.5: IoU = 1/3 -> alpha = 0 -> 0.7291667
    p, g = np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[0.0, 0.0, 1.0, 2.0]])
    # (torchvision keeps eps = 1e-7 in its DIoU part whatever eps is: agreement to ~1e-8)
    _close(L.ciou_loss_forward(p, g, eps=0.0)[0], [0.7629183350773473], rtol=1e-7)
    _close(L.ciou_loss_forward(p, g, eps=0.0, convention="mmdet")[0], [0.7291666666666667])
    _close(L.ciou_loss_forward(p, g, eps=0.0, convention="detectron2")[0], [0.7629183350773473])


def test_iou_loss_reductions_and_empty():
    e = np.zeros((0, 4))
    for f in (L.giou_loss_forward, L.diou_loss_forward, L.ciou_loss_forward):
        assert float(f(e, e, reduction="mean")[0]) == 0.0             # torchvision: 0 * sum, not NaN
        assert np.isnan(f(e, e, reduction="mean", convention="mmdet")[0])   # torch mean of nothing
        assert float(f(e, e, reduction="sum")[0]) == 0.0
        out, c = f(e, e)
        assert out.shape == (0,)
        g = (L.giou_loss_backward if f is L.giou_loss_forward else
             L.diou_loss_backward if f is L.diou_loss_forward else L.ciou_loss_backward)(np.zeros(0), c)
        assert g.dpred_boxes.shape == (0, 4) and g.dtarget_boxes.shape == (0, 4)


def test_torchvision_ciou_ignores_eps_in_its_diou_part():
    # torchvision's complete_box_iou_loss calls _diou_iou_loss(boxes1, boxes2) without eps, so its
    # IoU and c^2 use 1e-7 whatever eps is; detectron2 passes eps through.
    p, g = np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[0.0, 0.0, 1.0, 2.0]])
    tv = float(L.ciou_loss_forward(p, g, eps=0.5)[0][0])
    d2 = float(L.ciou_loss_forward(p, g, eps=0.5, convention="detectron2")[0][0])
    iou, rho2, c2 = 1 / (3 + 1e-7), 0.5, 8 + 1e-7
    v = 4 / math.pi ** 2 * (math.atan(0.5) - math.atan(2)) ** 2
    _close(tv, 1 - iou + rho2 / c2 + v / (1 - iou + v + 0.5) * v)
    iou5, c25 = 1 / 3.5, 8.5
    _close(d2, 1 - iou5 + rho2 / c25 + v / (1 - iou5 + v + 0.5) * v)


def test_tv14_ssd_hard_negative_double_counting():
    # 1 image, 8 anchors, 3 classes, every logit 0 -> every anchor's CE = ln 3 = 1.0986123.
    # 3 positives (labels 1, 2, 1), 5 negatives. torchvision mines 3 * 3 = 9 "negatives" by rank
    # with positives at -inf: there are only 8 anchors, so every rank < 9, and the 3 positives are
    # included a second time:  L_cls = (3 ln 3 + (5 + 3) ln 3) / N = 11/3 ln 3 = 4.0282451.
    # capped at the available negatives (Caffe/mmdet, and ssd.pytorch's union):
    #   (3 + 5) ln 3 / 3 = 8/3 ln 3 = 2.9296328
    z = np.zeros((1, 8, 3))
    labels = np.array([[0, 1, 0, 2, 0, 0, 1, 0]])
    tdel = np.zeros((1, 8, 4))
    tdel[0, 1] = [0.5, 0.0, 0.0, 0.0]    # smooth L1 (beta 1) of 0.5 = 0.125 -> box loss 0.125 / 3
    t = L.LossTargets(labels, tdel)
    out, c = L.multibox_loss_forward(z, np.zeros((1, 8, 4)), t)
    _close(out.classification, 11 / 3 * LN3)
    _close(out.box_regression, 0.125 / 3)
    assert c.negatives.all()                                   # positives were "mined" too
    for cap in ("negatives", "priors_minus_one"):
        _close(L.multibox_loss_forward(z, np.zeros((1, 8, 4)), t, mining_cap=cap)[0].classification,
               8 / 3 * LN3)
    # gradient: each positive's CE gradient counted twice: 2 * (1/3 - onehot) / 3
    g = L.multibox_loss_backward((1.0, 0.0), c).dconf_logits
    _close(g[0, 1], 2 * (np.array([1, 1, 1]) / 3 - [0, 1, 0]) / 3)
    _close(g[0, 0], (np.array([1, 1, 1]) / 3 - [1, 0, 0]) / 3)


def test_multibox_mining_order_and_caps():
    # 1 image, 6 anchors, 1 positive (anchor 0): 3 negatives are mined, the three highest CE.
    # background logits chosen so the CE of negatives 1..5 is 5, 1, 3, 3, 2 (ties at 3): with a
    # stable sort the kept ones are anchors 1, 3, 4 (ranks 0, 1, 2), anchor 2 (CE 1) and 5 are not.
    ce = np.array([0.0, 5.0, 1.0, 3.0, 3.0, 2.0])
    # two classes, logits (0, ce): CE of class 0 = log(1 + e^ce) - 0 ... choose z so CE_bg = c:
    # CE_bg = logsumexp(z) - z_0 with z = (0, s): = log(1 + e^s); s = log(e^c - 1)
    s = np.log(np.expm1(np.maximum(ce, 1e-3)))
    z = np.stack([np.zeros(6), s], axis=1)[None]
    labels = np.array([[1, 0, 0, 0, 0, 0]])
    out, c = L.multibox_loss_forward(z, np.zeros((1, 6, 4)), L.LossTargets(labels, np.zeros((1, 6, 4))))
    _close(c.negatives[0], [False, True, False, True, True, False])
    # P - 1 cap: 3 * 1 = 3 < 5, same selection; zero positives -> policies
    labels0 = np.zeros((1, 6), np.int64)
    t0 = L.LossTargets(labels0, np.zeros((1, 6, 4)))
    assert float(L.multibox_loss_forward(z, np.zeros((1, 6, 4)), t0)[0].classification) == 0.0
    assert np.isnan(L.multibox_loss_forward(z, np.zeros((1, 6, 4)), t0, zero_positive="nan")[0].classification)
    assert float(L.multibox_loss_forward(z, np.zeros((1, 6, 4)), t0, convention="paper")[0].classification) == 0.0
    # ssd.pytorch cap: 5 positives of 6 priors -> 3 * 5 = 15 capped at P - 1 = 5
    lab5 = np.array([[1, 1, 1, 1, 1, 0]])
    _, c5 = L.multibox_loss_forward(z, np.zeros((1, 6, 4)), L.LossTargets(lab5, np.zeros((1, 6, 4))),
                                    mining_cap="priors_minus_one")
    assert c5.negatives.sum() == 5 and c5.weight.max() * 5 == 1.0   # union: nothing counted twice


def test_tv15_retinanet_normalisers():
    # 2 images x 4 anchors x 2 classes, all logits 0 (p = 0.5 everywhere), alpha 0.25, gamma 2:
    #   a positive class element:  f1 = 0.25 * 0.5^2 * ln 2 = 0.0433217
    #   a negative class element:  f0 = 0.75 * 0.5^2 * ln 2 = 0.1299651
    # image 0 labels [0, bg, ignored, 1]: anchors 0 and 3 are positives (one f1 + one f0 each),
    #   anchor 1 background (2 f0), anchor 2 ignored (excluded): sum0 = 2 (f1 + f0) + 2 f0 = 0.6065038
    # image 1 labels [bg, bg, bg, ignored]: sum1 = 3 * 2 f0 = 0.7797906, 0 positives
    # (encoding: class in [0, K), K = 2 background, -1 ignored)
    #   torchvision: (sum0 / max(1, 2) + sum1 / max(1, 0)) / 2 = (0.3032519 + 0.7797906) / 2 = 0.5415212
    #   mmdet/paper: (sum0 + sum1) / (2 + float32 eps) = 1.3862944 / 2.0000001 = 0.6931471
    #   detectron2: EMA 0.9 * 100 + 0.1 * max(2, 1) = 90.2 -> 1.3862944 / 90.2 = 0.0153691
    #   Detectron1: / ((2 + 1) + (0 + 1)) = / 4 -> 0.3465736
    z = np.zeros((2, 4, 2))
    labels = np.array([[0, 2, -1, 1], [2, 2, 2, -1]])
    t = L.LossTargets(labels, np.zeros((2, 4, 4)))
    d = np.zeros((2, 4, 4))
    want = {"torchvision": 0.5415212348124572, "mmdet": 0.6931471392451561,
            "detectron2": 0.015369117085586368, "caffe": 0.3465735902799726}
    for conv, v in want.items():
        out, _ = L.retinanet_loss_forward(z, d, t, convention=conv)
        _close(out.classification, v)
    # the EMA is explicit state: second step 0.9 * 90.2 + 0.1 * 2 = 81.38
    out1, _ = L.retinanet_loss_forward(z, d, t, convention="detectron2")
    assert out1.ema == pytest.approx(90.2)
    out2, _ = L.retinanet_loss_forward(z, d, t, convention="detectron2", ema=out1.ema)
    assert out2.ema == pytest.approx(81.38)
    _close(out2.classification, 1.3862943611198906 / 81.38)
    # torchvision's BETWEEN_THRESHOLDS = -2 is ignored too
    t_tv = L.LossTargets(np.where(labels == -1, -2, labels), np.zeros((2, 4, 4)))
    _close(L.retinanet_loss_forward(z, d, t_tv)[0].classification, want["torchvision"])
    # per-image lists of targets are stacked
    per_image = [L.LossTargets(labels[i], np.zeros((4, 4))) for i in range(2)]
    _close(L.retinanet_loss_forward(z, d, per_image)[0].classification, want["torchvision"])


def test_rpn_normalisations_golden():
    # 1 image, 4 anchors, labels [1, 0, -1, 0], objectness logits 0 -> BCE ln 2 per sampled anchor.
    # box deltas: anchor 0 predicted 0.05 off in dx (target 0): smooth L1 beta 1/9: 0.5 * 0.05^2 * 9
    # = 0.01125; beta 0 (detectron2): 0.05; beta 1 (paper): 0.00125.
    x = np.zeros((1, 4))
    d = np.zeros((1, 4, 4))
    d[0, 0, 0] = 0.05
    t = L.LossTargets(np.array([[1, 0, -1, 0]]), np.zeros((1, 4, 4)))
    out, _ = L.rpn_loss_forward(x, d, t)                         # torchvision
    _close(out.objectness, LN2)                                  # mean over 3 sampled
    _close(out.box_regression, 0.01125 / 3)                      # sum / 3 sampled
    out, _ = L.rpn_loss_forward(x, d, t, convention="detectron2")
    _close(out.objectness, 3 * LN2 / 256)
    _close(out.box_regression, 0.05 / 256)
    out, _ = L.rpn_loss_forward(x, d, t, convention="paper", anchors_per_location=2)
    _close(out.objectness, 3 * LN2 / 256)                        # 1 / N_cls, N_cls = 256
    _close(out.box_regression, 10 * 0.00125 / 2)                 # lambda / N_reg, N_reg = 4 / 2
    out, _ = L.rpn_loss_forward(x, d, t, convention="caffe")
    _close(out.box_regression, 0.01125 / 3)
    # nothing sampled: torchvision divides 0 by 0
    t_empty = L.LossTargets(np.full((1, 4), -1), np.zeros((1, 4, 4)))
    out, _ = L.rpn_loss_forward(x, d, t_empty)
    assert np.isnan(out.objectness) and np.isnan(out.box_regression)


# =================================================================================================
# Gradient checks (float64 central differences)
# =================================================================================================

def _gc(fwd, bwd, inputs, **kw):
    report = check_gradients(fwd, bwd, inputs, rng=0, **kw)
    assert report.ok, str(report)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_logit_losses(reduction):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4)) * 3
    t = (rng.random((6, 4)) < 0.4).astype(float)
    t[0] = [0.25, 0.5, 0.75, 1.0]                                # soft targets too
    _gc(L.bce_with_logits_forward, L.bce_with_logits_backward, (x, t),
        kwargs={"reduction": reduction, "weight": rng.random(4)}, wrt=["logits"])
    for alpha, gamma in ((0.25, 2.0), (-1, 0.0), (0.6, 1.5), (0.25, 0.5), (0.1, 1.0), (0.5, 3.0)):
        _gc(L.sigmoid_focal_loss_forward, L.sigmoid_focal_loss_backward, (x, t),
            kwargs={"reduction": reduction, "alpha": alpha, "gamma": gamma}, wrt=["logits"])
    y = rng.integers(0, 4, 6)
    y[2] = -1
    _gc(L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, (x, y), kwargs={"reduction": reduction})
    for alpha, gamma in ((None, 2.0), (0.25, 0.0), (0.25, 0.7), (0.75, 1.0)):
        _gc(L.softmax_focal_loss_forward, L.softmax_focal_loss_backward, (x, y),
            kwargs={"reduction": reduction, "alpha": alpha, "gamma": gamma})


@pytest.mark.parametrize("beta", [1.0, 1 / 9, 0.0])
def test_gradcheck_regression_losses(beta):
    rng = np.random.default_rng(2)
    p = rng.standard_normal((5, 4))
    t = p + rng.choice([-1, 1], (5, 4)) * rng.uniform(0.02, 2.0, (5, 4))   # |d| >= 0.02
    t[np.abs(np.abs(p - t) - beta) < 0.01] += 0.05                        # away from |d| = beta
    _gc(L.smooth_l1_forward, L.smooth_l1_backward, (p, t), kwargs={"beta": beta})
    _gc(L.l1_forward, L.l1_backward, (p, t), kwargs={"reduction": "sum"})


def _generic_boxes(rng, n):
    """Boxes with distinct continuous coordinates (no ties, no touching: away from the kinks)."""
    xy = rng.uniform(0, 10, (n, 2))
    wh = rng.uniform(1, 6, (n, 2))
    return np.concatenate([xy, xy + wh], 1)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
@pytest.mark.parametrize("convention", ["torchvision", "detectron2", "mmdet"])
def test_gradcheck_iou_losses(kind, convention):
    rng = np.random.default_rng(3)
    p, g = _generic_boxes(rng, 12), _generic_boxes(rng, 12)
    g[:3] = p[:3] + rng.uniform(-0.3, 0.3, (3, 4))       # high IoU: mmdet's CIoU gate is open
    g[3] = p[3] + [20, 20, 20, 20]                         # disjoint boxes
    fwd = getattr(L, f"{kind}_loss_forward")
    bwd = getattr(L, f"{kind}_loss_backward")
    if kind == "ciou":
        # CIoU's alpha is computed under no_grad (a constant in the backward pass), so the central
        # differences must see it frozen at its value at (p, g): loss + (alpha0 - alpha(p', g')) v(p', g')
        # (mmdet: the same, as long as the [-1, 1] clamp is inactive, which it is for these boxes).
        alpha0 = fwd(p, g, convention=convention, eps=1e-3)[1].iou.alpha

        def frozen(pred_boxes, target_boxes, _fwd=fwd, **kw):
            loss, c = _fwd(pred_boxes, target_boxes, **{**kw, "reduction": "none"})
            loss = loss + (alpha0 - c.iou.alpha) * c.iou.v
            red = kw.get("reduction", "none")
            return (loss if red == "none" else np.asarray(loss.mean())), c._replace(red=c.red._replace(reduction=red))
        fwd = frozen
    for red in ("none", "mean"):
        _gc(fwd, bwd, (p, g), kwargs={"convention": convention, "reduction": red, "eps": 1e-3})


def test_gradcheck_composed_losses():
    rng = np.random.default_rng(4)
    B, N, K = 2, 7, 3
    # RPN
    labels = rng.integers(-1, 2, (B, N))
    td = rng.standard_normal((B, N, 4))
    dl = td + rng.choice([-1, 1], (B, N, 4)) * rng.uniform(0.2, 0.8, (B, N, 4))   # away from beta
    for conv in ("torchvision", "detectron2", "caffe", "paper"):
        _gc(L.rpn_loss_forward, L.rpn_loss_backward,
            (rng.standard_normal((B, N)), dl, L.LossTargets(labels, td)),
            kwargs={"convention": conv}, wrt=["objectness", "deltas"])
    # RetinaNet
    labels = rng.integers(-1, K + 1, (B, N))
    for conv in ("torchvision", "detectron2", "mmdet", "caffe"):
        _gc(L.retinanet_loss_forward, L.retinanet_loss_backward,
            (rng.standard_normal((B, N, K)) * 2, dl, L.LossTargets(labels, td)),
            kwargs={"convention": conv}, wrt=["cls_logits", "box_deltas"])
    # MultiBox (the mined set is piecewise constant: distinct CE values keep it fixed under eps)
    labels = np.where(rng.random((B, N)) < 0.3, rng.integers(1, K, (B, N)), 0)
    labels[:, 0] = 1
    for cap in ("none", "negatives", "priors_minus_one"):
        _gc(L.multibox_loss_forward, L.multibox_loss_backward,
            (rng.standard_normal((B, N, K)) * 2, dl, L.LossTargets(labels, td)),
            kwargs={"mining_cap": cap}, wrt=["conf_logits", "loc_deltas"])


# =================================================================================================
# Properties
# =================================================================================================

@given(rst.logits(max_dims=2), st.data())
def test_focal_is_bounded_by_weighted_bce(x, data):
    # (1 - p_t)^gamma <= 1, so FL <= alpha_t * BCE, with equality at gamma = 0
    t = data.draw(rst.binary_targets(x.shape))
    fl, _ = L.sigmoid_focal_loss_forward(x, t, alpha=0.25, gamma=2.0)
    bce, _ = L.bce_with_logits_forward(x, t, reduction="none")
    w = 0.25 * t + 0.75 * (1 - t)
    assert np.all(fl <= w * bce + 1e-15)
    assert np.all(fl >= 0)


@given(rst.loss_inputs())
def test_softmax_focal_gamma0_is_cross_entropy(inp):
    z, y = inp
    fl, cf = L.softmax_focal_loss_forward(z, y, gamma=0.0, reduction="sum")
    ce, cc = L.softmax_cross_entropy_forward(z, y, reduction="sum")
    _close(fl, ce, rtol=1e-12, atol=1e-12)
    _close(L.softmax_focal_loss_backward(1.0, cf).dlogits, L.softmax_cross_entropy_backward(1.0, cc).dlogits,
           rtol=1e-12, atol=1e-15)


@given(rst.box_sets(min_n=1, max_n=10, degenerate=False, min_size=0.25), st.data())
def test_iou_losses_identity_and_symmetry(boxes, data):
    other = data.draw(rst.box_sets(min_n=len(boxes), max_n=len(boxes), degenerate=False, min_size=0.25))
    for f in (L.giou_loss_forward, L.diou_loss_forward):
        same = f(boxes, boxes, eps=0.0)[0]
        _close(same, np.zeros(len(boxes)), atol=1e-12)
        ab, ba = f(boxes, other)[0], f(other, boxes)[0]
        _close(ab, ba, rtol=1e-12, atol=1e-12)                    # the losses are symmetric
        assert np.all(ab >= -1e-12) and np.all(ab < 2 + 1e-9)


def test_inputs_are_never_written():
    rng = np.random.default_rng(5)
    x = readonly(rng.standard_normal((4, 3)))
    t = readonly((rng.random((4, 3)) < 0.5).astype(float))
    loss, c = L.sigmoid_focal_loss_forward(x, t, reduction="none")
    d = readonly(np.ones((4, 3)))
    L.sigmoid_focal_loss_backward(d, c)
    out, c = L.multibox_loss_forward(readonly(rng.standard_normal((1, 4, 3))), readonly(np.zeros((1, 4, 4))),
                                     L.LossTargets(readonly(np.array([[1, 0, 0, 2]])), readonly(np.zeros((1, 4, 4)))))
    L.multibox_loss_backward(1.0, c)
    L.multibox_loss_backward(1.0, c)   # the cache is not consumed either


def test_validation_messages():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="`gamma` must be >= 0; got -1.0"):
        L.sigmoid_focal_loss_forward(x, x, gamma=-1)
    with pytest.raises(ValueError, match=r"`alpha` must lie in \[0, 1\] or be -1"):
        L.sigmoid_focal_loss_forward(x, x, alpha=-0.25)
    with pytest.raises(ValueError, match=r"`logits` and `targets` must have the same shape; got \(3, 2\) and \(2, 3\)"):
        L.sigmoid_focal_loss_forward(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`logits` must not contain NaN"):
        L.bce_with_logits_forward(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 2\) or equal ignore_index=-1; got 5"):
        L.softmax_cross_entropy_forward(x, np.array([0, 5, 1]))
    with pytest.raises(ValueError, match="`labels` must lie"):
        L.softmax_cross_entropy_forward(x, np.array([0, -2, 1]))
    with pytest.raises(TypeError, match="`cache` must be the CECache"):
        L.softmax_cross_entropy_backward(1.0, None)
    with pytest.raises(ValueError, match="`pos_mask` selects anchors whose label is not 1"):
        L.rpn_loss_forward(np.zeros((1, 2)), np.zeros((1, 2, 4)),
                           L.LossTargets(np.array([[0, 1]]), np.zeros((1, 2, 4))),
                           pos_mask=np.array([[True, False]]))


def test_dtypes():
    rng = np.random.default_rng(6)
    x32 = rng.standard_normal((5, 3)).astype(np.float32)
    t32 = (rng.random((5, 3)) < 0.5).astype(np.float32)
    loss, c = L.sigmoid_focal_loss_forward(x32, t32)
    assert loss.dtype == np.float32
    assert L.sigmoid_focal_loss_backward(np.ones((5, 3), np.float32), c).dlogits.dtype == np.float32
    loss, _ = L.sigmoid_focal_loss_forward(x32.astype(np.float16), t32.astype(np.float16))
    assert loss.dtype == np.float32                                   # float16 computed in float32
    loss, _ = L.smooth_l1_forward(np.array([1, 2]), np.array([0, 0]))  # ints -> float64
    assert loss.dtype == np.float64
    b = np.array([[0, 0, 2, 2]], np.float32)
    assert L.giou_loss_forward(b, b)[0].dtype == np.float32


# =================================================================================================
# Differential tests against torch / torchvision (values and gradients vs autograd)
# =================================================================================================

@settings(max_examples=40)
@given(rst.logits(max_dims=2), st.data())
def test_focal_and_bce_vs_torchvision(x, data):
    torch, tv = _torch(), _tv()
    import torch.nn.functional as F
    t = data.draw(rst.binary_targets(x.shape, soft=data.draw(st.booleans())))
    alpha = data.draw(st.sampled_from([0.25, -1, 0.0, 1.0, 0.5]))
    gamma = data.draw(st.sampled_from([2.0, 0.0, 1.0, 1.5, 0.5]))
    red = data.draw(st.sampled_from(["none", "sum", "mean"]))
    assume(not (red == "mean" and x.size == 0))
    up = np.random.default_rng(0).standard_normal(x.shape) if red == "none" else 1.7
    for dtype, rtol in ((np.float64, 1e-11), (np.float32, 2e-5)):
        xt = torch.tensor(x.astype(dtype), requires_grad=True)
        ref = tv.ops.sigmoid_focal_loss(xt, torch.tensor(t.astype(dtype)), alpha=alpha, gamma=gamma, reduction=red)
        ref.backward(torch.tensor(np.asarray(up, dtype)))
        loss, c = L.sigmoid_focal_loss_forward(x.astype(dtype), t.astype(dtype), alpha=alpha, gamma=gamma,
                                               reduction=red)
        assert loss.dtype == dtype
        scale = max(1.0, float(np.abs(ref.detach().numpy()).max(initial=0)))
        _close(loss, ref.detach().numpy(), rtol=rtol, atol=rtol * scale)
        g = L.sigmoid_focal_loss_backward(up, c).dlogits
        tg = xt.grad.numpy()
        # For 0 < gamma < 1, autograd's pow backward at 1 - p_t == 0 (p_t rounded to 1: |x| >~ 17
        # in float32, >~ 37 in float64) is gamma * 0^(gamma - 1) = inf, times 0 = NaN. refdet returns
        # the limit instead (the term is O((1 - p_t)^(gamma + 1)) -> 0): compare where torch is finite.
        assert np.all(np.isfinite(g))
        if 0 < gamma < 1:
            keep = np.isfinite(tg)
            g, tg = g[keep], tg[keep]
        else:
            assert np.all(np.isfinite(tg))
        gs = max(1.0, float(np.abs(tg).max(initial=0)))
        _close(g, tg, rtol=rtol, atol=rtol * gs)
        if gamma == 2.0:
            xb = torch.tensor(x.astype(dtype), requires_grad=True)
            refb = F.binary_cross_entropy_with_logits(xb, torch.tensor(t.astype(dtype)), reduction=red)
            refb.backward(torch.tensor(np.asarray(up, dtype)))
            lb, cb = L.bce_with_logits_forward(x.astype(dtype), t.astype(dtype), reduction=red)
            _close(lb, refb.detach().numpy(), rtol=rtol, atol=rtol * max(1.0, float(np.abs(lb).max(initial=0))))
            _close(L.bce_with_logits_backward(up, cb).dlogits, xb.grad.numpy(), rtol=rtol, atol=rtol)


@settings(max_examples=40)
@given(rst.loss_inputs(max_n=10, max_k=6))
def test_cross_entropy_vs_torch(inp):
    torch = _torch()
    import torch.nn.functional as F
    z, y = inp
    for red in ("mean", "sum", "none"):
        zt = torch.tensor(z, requires_grad=True)
        ref = F.cross_entropy(zt, torch.tensor(y), ignore_index=-1, reduction=red)
        up = np.linspace(-1, 1, len(y)) if red == "none" else 0.7
        ref.backward(torch.tensor(up, dtype=torch.float64))
        loss, c = L.softmax_cross_entropy_forward(z, y, reduction=red)
        _close(loss, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        _close(L.softmax_cross_entropy_backward(up, c).dlogits, zt.grad.numpy(), rtol=1e-12, atol=1e-14)


@settings(max_examples=40)
@given(st.integers(0, 12), st.sampled_from([1.0, 1 / 9, 0.0, 0.11, 0.5]), st.data())
def test_smooth_l1_and_l1_vs_torch(n, beta, data):
    torch = _torch()
    import torch.nn.functional as F
    # differences on a 1/36 grid hit 0 and |d| = beta (1, 1/9 = 4/36, 0.5 = 18/36) exactly
    p = np.array(data.draw(st.lists(st.integers(-72, 72), min_size=n, max_size=n)), float) / 36
    t = np.array(data.draw(st.lists(st.integers(-72, 72), min_size=n, max_size=n)), float) / 36
    if beta == 1 / 9:
        t = p - np.array(data.draw(st.lists(st.sampled_from([0.0, 1 / 9, -1 / 9, 0.05, 2.0]), min_size=n,
                                            max_size=n)))
    for red in ("mean", "sum", "none"):
        if red == "mean" and n == 0:
            assert np.isnan(L.smooth_l1_forward(p, t, beta=beta, reduction=red)[0])
            continue
        pt, tt = torch.tensor(p, requires_grad=True), torch.tensor(t, requires_grad=True)
        ref = F.smooth_l1_loss(pt, tt, beta=beta, reduction=red)
        up = np.linspace(-1, 2, n) if red == "none" else 1.3
        ref.backward(torch.tensor(up, dtype=torch.float64))
        loss, c = L.smooth_l1_forward(p, t, beta=beta, reduction=red)
        _close(loss, ref.detach().numpy(), rtol=1e-12, atol=1e-14)
        g = L.smooth_l1_backward(up, c)
        _close(g.dpred, pt.grad.numpy(), rtol=1e-12, atol=1e-14)
        _close(g.dtarget, tt.grad.numpy(), rtol=1e-12, atol=1e-14)
        pt, tt = torch.tensor(p, requires_grad=True), torch.tensor(t, requires_grad=True)
        ref = F.l1_loss(pt, tt, reduction=red)
        ref.backward(torch.tensor(up, dtype=torch.float64))
        loss, c = L.l1_forward(p, t, reduction=red)
        _close(loss, ref.detach().numpy(), rtol=1e-12, atol=1e-14)
        _close(L.l1_backward(up, c).dpred, pt.grad.numpy(), rtol=1e-12, atol=1e-14)


def _tv_box_losses():
    tv = _tv()
    return {"giou": tv.ops.generalized_box_iou_loss, "diou": tv.ops.distance_box_iou_loss,
            "ciou": tv.ops.complete_box_iou_loss}


@settings(max_examples=40)
@given(rst.box_sets(max_n=12, grid=0.5, low=0, high=20, max_size=10), st.data())
def test_iou_losses_vs_torchvision(boxes1, data):
    torch = _torch()
    n = len(boxes1)
    boxes2 = data.draw(rst.box_sets(min_n=n, max_n=n, grid=0.5, low=0, high=20, max_size=10))
    if n and data.draw(st.booleans()):
        boxes2[: n // 2] = boxes1[: n // 2]                       # identical pairs: ties everywhere
    eps = data.draw(st.sampled_from([1e-7, 1e-3]))
    for kind, ref_f in _tv_box_losses().items():
        for red in ("none", "sum", "mean"):
            b1 = torch.tensor(boxes1, requires_grad=True)
            b2 = torch.tensor(boxes2, requires_grad=True)
            ref = ref_f(b1, b2, reduction=red, eps=eps)
            up = np.linspace(-1, 1, n) if red == "none" else 0.9
            if ref.requires_grad:
                ref.backward(torch.tensor(up, dtype=torch.float64))
            fwd, bwd = getattr(L, f"{kind}_loss_forward"), getattr(L, f"{kind}_loss_backward")
            loss, c = fwd(boxes1, boxes2, reduction=red, eps=eps)
            _close(loss, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
            g = bwd(up, c)
            if ref.requires_grad:
                gp = b1.grad.numpy() if b1.grad is not None else np.zeros_like(boxes1)
                gt = b2.grad.numpy() if b2.grad is not None else np.zeros_like(boxes2)
                _close(g.dpred_boxes, gp, rtol=1e-9, atol=1e-9)
                _close(g.dtarget_boxes, gt, rtol=1e-9, atol=1e-9)
            # float32: torchvision's order of operations (atan/division rounding aside)
            l32, _ = fwd(boxes1.astype(np.float32), boxes2.astype(np.float32), reduction=red, eps=eps)
            r32 = ref_f(torch.tensor(boxes1, dtype=torch.float32), torch.tensor(boxes2, dtype=torch.float32),
                        reduction=red, eps=eps).numpy()
            assert l32.dtype == np.float32
            _close(l32, r32, rtol=2e-6, atol=2e-6 * max(1.0, float(np.abs(r32).max(initial=0))))


def _mmdet_reference(kind, p, g, eps):
    """A torch transcript of mmdet v3's giou (bbox_overlaps is_aligned), diou_loss and ciou_loss,
    to check refdet's mmdet formulas and hand-written gradients against autograd."""
    torch = _torch()
    lt = torch.max(p[:, :2], g[:, :2])
    rb = torch.min(p[:, 2:], g[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    ag = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    e_lt = torch.min(p[:, :2], g[:, :2])
    e_rb = torch.max(p[:, 2:], g[:, 2:])
    e_wh = (e_rb - e_lt).clamp(min=0)
    if kind == "giou":
        union = ap + ag - overlap
        e = union.new_tensor([eps])
        union = torch.max(union, e)
        ious = overlap / union
        enclose = torch.max(e_wh[:, 0] * e_wh[:, 1], e)
        return 1 - (ious - (enclose - union) / enclose)
    union = ap + ag - overlap + eps
    ious = overlap / union
    c2 = e_wh[:, 0] ** 2 + e_wh[:, 1] ** 2 + eps
    left = ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) ** 2 / 4
    right = ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) ** 2 / 4
    rho2 = left + right
    if kind == "diou":
        return 1 - (ious - rho2 / c2)
    w1, h1 = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1] + eps
    w2, h2 = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1] + eps
    v = (4 / math.pi ** 2) * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
    with torch.no_grad():
        alpha = (ious > 0.5).float() * v / (1 - ious + v)
    cious = ious - (rho2 / c2 + alpha * v)
    return 1 - cious.clamp(min=-1.0, max=1.0)


@settings(max_examples=30)
@given(rst.box_sets(min_n=1, max_n=10, grid=0.5, low=0, high=12, max_size=8), st.data())
def test_mmdet_iou_losses_vs_transcript(boxes1, data):
    torch = _torch()
    n = len(boxes1)
    boxes2 = data.draw(rst.box_sets(min_n=n, max_n=n, grid=0.5, low=0, high=12, max_size=8))
    if data.draw(st.booleans()):
        boxes2[: (n + 1) // 2] = boxes1[: (n + 1) // 2] + 0.5 * data.draw(st.integers(-1, 1))
    eps = 1e-6
    for kind in ("giou", "diou", "ciou"):
        b1 = torch.tensor(boxes1, requires_grad=True)
        b2 = torch.tensor(boxes2, requires_grad=True)
        ref = _mmdet_reference(kind, b1, b2, eps)
        up = np.linspace(-1, 1, n)
        ref.backward(torch.tensor(up, dtype=torch.float64))
        loss, c = getattr(L, f"{kind}_loss_forward")(boxes1, boxes2, convention="mmdet")
        _close(loss, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        g = getattr(L, f"{kind}_loss_backward")(up, c)
        _close(g.dpred_boxes, b1.grad.numpy(), rtol=1e-9, atol=1e-9)
        _close(g.dtarget_boxes, b2.grad.numpy(), rtol=1e-9, atol=1e-9)


# --- composed losses against torchvision's own compute_loss methods ---------------------------------

def _identity_coder():
    # The heads' compute_loss encode the matched gt boxes with self.box_coder; an identity coder lets
    # us pass the regression targets directly (refdet's losses take encoded deltas).
    return types.SimpleNamespace(encode_single=lambda gt, anchors: gt)


def _ssd_reference(z, d, labels, tdel):
    torch = _torch()
    from torchvision.models.detection.ssd import SSD
    B, P = labels.shape
    self = types.SimpleNamespace(neg_to_pos_ratio=(1.0 - 0.25) / 0.25, box_coder=_identity_coder())
    targets = [{"boxes": torch.tensor(tdel[b]), "labels": torch.tensor(labels[b])} for b in range(B)]
    matched = [torch.tensor(np.where(labels[b] > 0, np.arange(P), -1)) for b in range(B)]
    zt, dt = torch.tensor(z, requires_grad=True), torch.tensor(d, requires_grad=True)
    out = SSD.compute_loss(self, targets, {"bbox_regression": dt, "cls_logits": zt},
                           [torch.zeros(P, 4, dtype=torch.float64)] * B, matched)
    (out["classification"] * 1.0 + out["bbox_regression"] * 2.0).backward()
    return out["classification"].item(), out["bbox_regression"].item(), zt.grad.numpy(), dt.grad.numpy()


def test_tv14_against_torchvision_ssd_compute_loss():
    z = np.zeros((1, 8, 3))
    labels = np.array([[0, 1, 0, 2, 0, 0, 1, 0]])
    tdel = np.random.default_rng(7).standard_normal((1, 8, 4))
    rc, rb, gz, gd = _ssd_reference(z, np.zeros((1, 8, 4)), labels, tdel)
    _close(rc, 11 / 3 * LN3)                                      # TV14, double counting
    out, c = L.multibox_loss_forward(z, np.zeros((1, 8, 4)), L.LossTargets(labels, tdel))
    _close(out.classification, rc)
    _close(out.box_regression, rb)
    g = L.multibox_loss_backward((1.0, 2.0), c)
    _close(g.dconf_logits, gz, atol=1e-15)
    _close(g.dloc_deltas, gd, atol=1e-15)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(0, 12), st.integers(2, 4), st.data())
def test_multibox_vs_torchvision_ssd(B, P, K, data):
    _tv()
    seed = data.draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    z = np.round(rng.standard_normal((B, P, K)) * 8) / 8          # ties in CE happen
    d, tdel = rng.standard_normal((B, P, 4)), rng.standard_normal((B, P, 4))
    frac = data.draw(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]))
    labels = np.where(rng.random((B, P)) < frac, rng.integers(1, K, (B, P)), 0)
    rc, rb, gz, gd = _ssd_reference(z, d, labels, tdel)
    out, c = L.multibox_loss_forward(z, d, L.LossTargets(labels, tdel))
    _close(out.classification, rc)
    _close(out.box_regression, rb)
    g = L.multibox_loss_backward((1.0, 2.0), c)
    _close(g.dloc_deltas, gd, atol=1e-15)
    # The mined set may differ on CE ties (torch.sort is not stable); where it does not, the
    # gradients are identical. Values above are tie-independent (tied CEs are equal).
    ce = -np.take_along_axis(np.log(c.probs), labels[..., None], -1)[..., 0]
    tied_at_cut = False
    for b in range(B):
        neg_ce = np.where(labels[b] > 0, -np.inf, ce[b])
        kept = np.sort(neg_ce[c.negatives[b] & (labels[b] == 0)])
        left = neg_ce[~c.negatives[b] & (labels[b] == 0)]
        if kept.size and left.size and np.isclose(kept[0], left.max(), rtol=0, atol=1e-12):
            tied_at_cut = True
    if not tied_at_cut:
        _close(g.dconf_logits, gz, atol=1e-15)


def _retina_reference(z, d, matched, gt_labels, tdel, loss_type="smooth_l1"):
    torch = _torch()
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead
    B, N = matched.shape
    cself = types.SimpleNamespace(BETWEEN_THRESHOLDS=-2)
    rself = types.SimpleNamespace(_loss_type=loss_type, box_coder=_identity_coder())
    zt, dt = torch.tensor(z, requires_grad=True), torch.tensor(d, requires_grad=True)
    targets = [{"labels": torch.tensor(gt_labels[b]), "boxes": torch.tensor(tdel[b])} for b in range(B)]
    m = [torch.tensor(matched[b]) for b in range(B)]
    cls = RetinaNetClassificationHead.compute_loss(cself, targets, {"cls_logits": zt}, m)
    box = RetinaNetRegressionHead.compute_loss(rself, targets, {"bbox_regression": dt},
                                               [torch.zeros(N, 4, dtype=torch.float64)] * B, m)
    (cls + 2 * box).backward()
    return cls.item(), box.item(), zt.grad.numpy(), dt.grad.numpy()


def test_tv15_against_torchvision_retinanet_head():
    z = np.zeros((2, 4, 2))
    matched = np.array([[0, -1, -2, 3], [-1, -1, -1, -2]])       # torchvision's matched_idxs
    gt_labels = np.array([[0, 0, 0, 1], [0, 0, 0, 0]])            # gt 0 -> class 0, gt 3 -> class 1
    tdel = np.random.default_rng(8).standard_normal((2, 4, 4))
    rc, rb, gz, gd = _retina_reference(z, np.zeros((2, 4, 4)), matched, gt_labels, tdel)
    _close(rc, 0.5415212348124572)                                # TV15, derived above
    labels = np.array([[0, 2, -1, 1], [2, 2, 2, -1]])                # K = 2 background, -1 ignored
    out, c = L.retinanet_loss_forward(z, np.zeros((2, 4, 4)), L.LossTargets(labels, tdel))
    _close(out.classification, rc)
    _close(out.box_regression, rb)
    g = L.retinanet_loss_backward((1.0, 2.0), c)
    _close(g.dcls_logits, gz, atol=1e-15)
    _close(g.dbox_deltas, gd, atol=1e-15)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(0, 9), st.integers(1, 4), st.sampled_from(["smooth_l1", "l1"]), st.data())
def test_retinanet_vs_torchvision_head(B, N, K, box_loss, data):
    _tv()
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 31)))
    z = rng.standard_normal((B, N, K)) * 3
    d, tdel = rng.standard_normal((B, N, 4)), rng.standard_normal((B, N, 4))
    frac = data.draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    matched = np.where(rng.random((B, N)) < frac, np.arange(N)[None].repeat(B, 0), rng.integers(-2, 0, (B, N)))
    gt_labels = rng.integers(0, K, (B, N))
    rc, rb, gz, gd = _retina_reference(z, d, matched, gt_labels, tdel, box_loss)
    labels = np.where(matched >= 0, np.take_along_axis(gt_labels, np.maximum(matched, 0), 1),
                      np.where(matched == -1, K, -1))
    out, c = L.retinanet_loss_forward(z, d, L.LossTargets(labels, tdel), box_loss=box_loss)
    _close(out.classification, rc)
    _close(out.box_regression, rb)
    g = L.retinanet_loss_backward((1.0, 2.0), c)
    _close(g.dcls_logits, gz, atol=1e-15)
    _close(g.dbox_deltas, gd, atol=1e-15)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(1, 12), st.data())
def test_rpn_vs_torchvision(B, N, data):
    torch = _torch()
    from torchvision.models.detection.rpn import RegionProposalNetwork
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 31)))
    obj = rng.standard_normal((B, N)) * 2
    d, tdel = rng.standard_normal((B, N, 4)) * 0.2, rng.standard_normal((B, N, 4)) * 0.2
    labels = rng.integers(-1, 2, (B, N))
    pos = (labels == 1) & (rng.random((B, N)) < 0.7)
    neg = (labels == 0) & (rng.random((B, N)) < 0.7)
    assume((pos | neg).any())          # torchvision divides by the number sampled (0/0 otherwise)
    # torchvision's sampler is random: substitute one that returns our masks
    self = types.SimpleNamespace(fg_bg_sampler=lambda labs: ([torch.tensor(p) for p in pos],
                                                              [torch.tensor(q) for q in neg]))
    ot, dt = torch.tensor(obj, requires_grad=True), torch.tensor(d, requires_grad=True)
    o, b = RegionProposalNetwork.compute_loss(
        self, ot.reshape(-1, 1), dt.reshape(-1, 4),
        [torch.tensor(labels[i], dtype=torch.float64) for i in range(B)], [torch.tensor(tdel[i]) for i in range(B)])
    (o + 2 * b).backward()
    out, c = L.rpn_loss_forward(obj, d, L.LossTargets(labels, tdel), pos_mask=pos, neg_mask=neg)
    _close(out.objectness, o.item())
    _close(out.box_regression, b.item())
    g = L.rpn_loss_backward((1.0, 2.0), c)
    _close(g.dobjectness, ot.grad.numpy(), atol=1e-15)
    _close(g.ddeltas, dt.grad.numpy(), atol=1e-15)


# --- the losses accept refdet.targets' results directly (lists, one per image) ----------------------

def _scene(rng, n_anchors=40, n_gt=3):
    xy = rng.uniform(0, 60, (n_anchors, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(8, 30, (n_anchors, 2))], 1)
    gxy = rng.uniform(0, 50, (n_gt, 2))
    gt = np.concatenate([gxy, gxy + rng.uniform(10, 30, (n_gt, 2))], 1)
    return anchors, gt


def test_losses_accept_refdet_targets():
    targets = pytest.importorskip("refdet.targets")
    rng = np.random.default_rng(9)
    K = 3
    per_image, labels_mine = [], []
    ssd_per_image, rpn_per_image = [], []
    for _ in range(2):
        anchors, gt = _scene(rng)
        gl = rng.integers(0, K, len(gt))
        rt = targets.retinanet_targets(anchors, gt, gl, K)
        per_image.append(rt)
        # refdet encoding: class for foreground, K background, -1 ignored (matched -2)
        labels_mine.append(np.where(rt.matched >= 0, gl[np.maximum(rt.matched, 0)],
                                    np.where(rt.matched == -1, K, -1)))
        ssd_per_image.append(targets.ssd_targets(anchors, gt, gl + 1))
        rpn_per_image.append(targets.rpn_targets(anchors, gt, (100, 100), rng=0))
    z = rng.standard_normal((2, 40, K))
    d = rng.standard_normal((2, 40, 4))
    a, _ = L.retinanet_loss_forward(z, d, per_image)
    b, _ = L.retinanet_loss_forward(z, d, L.LossTargets(np.stack(labels_mine),
                                                        np.stack([t.deltas for t in per_image])))
    _close(a.classification, b.classification)
    _close(a.box_regression, b.box_regression)
    out, _ = L.multibox_loss_forward(rng.standard_normal((2, 40, K + 1)), d, ssd_per_image)
    assert np.isfinite(out.classification)
    out, _ = L.rpn_loss_forward(rng.standard_normal((2, 40)), d, rpn_per_image)
    assert np.isfinite(out.objectness)


def test_multibox_ignored_anchors_are_never_mined():
    # SSD targets of an empty image under Caffe's policy are all -1 (ignored): no negatives mined.
    z = np.zeros((2, 5, 3))
    labels = np.array([[1, 0, 0, 0, 0], [-1, -1, -1, -1, -1]])
    out, c = L.multibox_loss_forward(z, np.zeros((2, 5, 4)), L.LossTargets(labels, np.zeros((2, 5, 4))))
    # image 0: 1 positive, 3 of the 4 negatives mined (all CE ln 3): (1 + 3) ln 3 / 1
    _close(out.classification, 4 * LN3)
    assert not c.negatives[1].any()
    # torchvision mode with 3 * pos > negatives and ignored anchors: ignored ones rank last, never mined
    labels = np.array([[1, 0, -1, -1, 2]])
    out, c = L.multibox_loss_forward(np.zeros((1, 5, 3)), np.zeros((1, 5, 4)),
                                     L.LossTargets(labels, np.zeros((1, 5, 4))))
    # 6 "negatives" wanted: rank order = anchor 1 (CE), then positives 0 and 4 (-inf), then ignored:
    # mined = {1, 0, 4} -> positives counted twice: (2 + 2 + 1) ln 3 / 2
    _close(out.classification, 5 * LN3 / 2)
    _close(c.negatives[0], [True, True, False, False, True])


@settings(max_examples=30)
@given(rst.loss_inputs(max_n=10, max_k=5), st.sampled_from([None, 0.25, 0.75]), st.sampled_from([0.0, 1.0, 2.0, 2.5]))
def test_softmax_focal_vs_autograd_transcript(inp, alpha, gamma):
    # Caffe2's SoftmaxFocalLoss (modules/detectron/softmax_focal_loss_op.cu) transcribed in torch:
    # loss_i = -z_i (1 - p_y)^gamma log p_y, z = 1 - alpha for label 0, alpha for labels >= 1, 0 for
    # ignored labels (< 0); autograd gives the reference gradient (gamma >= 1: pow's backward at
    # 1 - p_y = 0 is finite there).
    torch = _torch()
    z, y = inp
    zt = torch.tensor(z, requires_grad=True)
    logp = torch.log_softmax(zt, dim=1) if z.size else zt
    yy = torch.tensor(np.maximum(y, 0))
    lp = logp.gather(1, yy[:, None])[:, 0] if z.size else torch.zeros(0, dtype=torch.float64)
    w = np.ones(len(y)) if alpha is None else np.where(y == 0, 1 - alpha, alpha)
    w = torch.tensor(w * (y >= 0))
    ref = (-w * (1 - lp.exp()) ** gamma * lp).sum()
    if z.size:
        ref.backward()
    loss, c = L.softmax_focal_loss_forward(z, y, alpha=alpha, gamma=gamma, reduction="sum")
    _close(loss, ref.item(), rtol=1e-12, atol=1e-12)
    if z.size:
        _close(L.softmax_focal_loss_backward(1.0, c).dlogits, zt.grad.numpy(), rtol=1e-10, atol=1e-12)


def _ssd_pytorch_reference(z, d, labels, tdel):
    """ssd.pytorch's MultiBoxLoss (layers/modules/multibox_loss.py) mining and normalisation,
    transcribed in torch: positives' CE set to 0, double sort, num_neg = clamp(3 pos, max=P - 1),
    CE over the union (pos + neg) > 0, both losses / N = sum of positives."""
    torch = _torch()
    import torch.nn.functional as F
    zt, dt = torch.tensor(z, requires_grad=True), torch.tensor(d, requires_grad=True)
    conf_t = torch.tensor(labels)
    B, P, K = z.shape
    pos = conf_t > 0
    loss_l = F.smooth_l1_loss(dt[pos], torch.tensor(tdel)[pos], reduction="sum")
    batch_conf = zt.detach().view(-1, K)
    loss_c = torch.logsumexp(batch_conf, 1, keepdim=True) - batch_conf.gather(1, conf_t.view(-1, 1))
    loss_c = loss_c.view(B, -1)
    loss_c[pos] = 0
    _, loss_idx = loss_c.sort(dim=1, descending=True, stable=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    num_neg = torch.clamp(3 * num_pos, max=P - 1)
    neg = idx_rank < num_neg.expand_as(idx_rank)
    sel = (pos | neg)
    loss_cls = F.cross_entropy(zt[sel].view(-1, K), conf_t[sel], reduction="sum")
    N = num_pos.sum()
    (loss_cls / N + 2 * loss_l / N).backward()
    return (loss_cls / N).item(), (loss_l / N).item(), zt.grad.numpy(), dt.grad.numpy()


def _mmdet_ssd_reference(z, labels):
    """mmdet SSDHead.loss_by_feat_single's classification part (per image: topk of the negatives'
    CE, min(3 pos, #neg) of them; batch sum / total positives), transcribed in torch."""
    torch = _torch()
    import torch.nn.functional as F
    zt = torch.tensor(z, requires_grad=True)
    total = 0
    for b in range(z.shape[0]):
        lab = torch.tensor(labels[b])
        ce = F.cross_entropy(zt[b], lab, reduction="none")
        pos_inds = (lab > 0).nonzero().reshape(-1)
        neg_inds = (lab == 0).nonzero().reshape(-1)
        k = min(3 * pos_inds.numel(), neg_inds.numel())
        total = total + ce[pos_inds].sum() + ce[neg_inds].topk(k)[0].sum()
    n = int((labels > 0).sum())
    out = total / n
    out.backward()
    return out.item(), zt.grad.numpy()


@settings(max_examples=30)
@given(st.integers(1, 3), st.integers(2, 12), st.integers(2, 4), st.data())
def test_multibox_caps_vs_ssd_pytorch_and_mmdet_transcripts(B, P, K, data):
    _torch()
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 31)))
    z = rng.standard_normal((B, P, K)) * 2                          # continuous: no CE ties
    d, tdel = rng.standard_normal((B, P, 4)), rng.standard_normal((B, P, 4))
    labels = np.where(rng.random((B, P)) < data.draw(st.sampled_from([0.2, 0.5, 0.9])),
                      rng.integers(1, K, (B, P)), 0)
    labels[0, 0] = 1                                                # N >= 1 (both divide by N)
    t = L.LossTargets(labels, tdel)
    rc, rb, gz, gd = _ssd_pytorch_reference(z, d, labels, tdel)
    out, c = L.multibox_loss_forward(z, d, t, mining_cap="priors_minus_one", zero_positive="nan")
    _close(out.classification, rc)
    _close(out.box_regression, rb)
    g = L.multibox_loss_backward((1.0, 2.0), c)
    _close(g.dconf_logits, gz, atol=1e-15)
    _close(g.dloc_deltas, gd, atol=1e-15)
    mc, mg = _mmdet_ssd_reference(z, labels)
    out, c = L.multibox_loss_forward(z, d, t, convention="mmdet")
    _close(out.classification, mc)
    _close(L.multibox_loss_backward((1.0, 0.0), c).dconf_logits, mg, atol=1e-15)


# =================================================================================================
# Memory layout: C, Fortran, strided, reversed and read-only views give the same bits
# =================================================================================================

from tests._layouts import LAYOUTS, assert_bits_equal, with_layout  # noqa: E402


def _layout_inputs():
    """One call per public forward of refdet.losses, large enough that NumPy's pairwise summation
    works in blocks (the sums are where the memory order could change the rounding)."""
    r = np.random.default_rng(11)
    x, t = r.standard_normal((37, 19)) * 4, (r.random((37, 19)) < 0.3).astype(float)
    y = r.integers(-1, 19, 37)
    B, N, K = 2, 160, 7
    dl, td = r.standard_normal((B, N, 4)), r.standard_normal((B, N, 4))
    xy = r.uniform(0, 50, (60, 2))
    p = np.concatenate([xy, xy + r.uniform(1, 30, (60, 2))], 1)
    g = p + r.uniform(-5, 5, (60, 4))
    ssd_labels = np.where(r.random((B, N)) < 0.2, r.integers(1, K, (B, N)), 0)
    return {
        "bce_with_logits": ((x, t), {"weight": r.random(19)}),
        "softmax_cross_entropy": ((x, y), {}),
        "sigmoid_focal_loss": ((x, t), {"reduction": "sum"}),
        "softmax_focal_loss": ((x, y), {"alpha": 0.25, "reduction": "mean"}),
        "smooth_l1": ((x, t), {"beta": 0.5}),
        "l1": ((x, t), {}),
        "giou_loss": ((p, g), {"reduction": "mean"}),
        "diou_loss": ((p, g), {"reduction": "sum", "convention": "mmdet"}),
        "ciou_loss": ((p, g), {"reduction": "mean"}),
        "rpn_loss": ((r.standard_normal((B, N)), dl, L.LossTargets(r.integers(-1, 2, (B, N)), td)),
                     {"convention": "detectron2"}),
        "retinanet_loss": ((r.standard_normal((B, N, K)) * 3, dl, L.LossTargets(r.integers(-2, K + 1, (B, N)), td)),
                           {"convention": "mmdet"}),
        "multibox_loss": ((r.standard_normal((B, N, K)), dl, L.LossTargets(ssd_labels, td)), {}),
    }


_LAYOUT_CASES = _layout_inputs()


def test_layout_cases_cover_every_forward():
    forwards = {n[:-len("_forward")] for n in L.__all__ if n.endswith("_forward")}
    assert forwards == set(_LAYOUT_CASES)


@pytest.mark.parametrize("name", sorted(_LAYOUT_CASES))
def test_results_do_not_depend_on_memory_layout(name):
    # Today's bug this pins: retinanet_loss_forward summed Fortran-ordered logits in another order
    # (1 ulp apart under mmdet and detectron2 normalisers). Every forward and its backward, for each
    # layout of every input array (and of the upstream gradient), must give the same bits.
    fwd, bwd = getattr(L, f"{name}_forward"), getattr(L, f"{name}_backward")
    args, kw = _LAYOUT_CASES[name]
    base_out, base_cache = fwd(*with_layout(args, "C"), **kw)
    dloss = np.random.default_rng(1).standard_normal(np.shape(base_out)) if np.ndim(base_out) else 1.3
    if isinstance(base_out, tuple):
        dloss = (0.7, 1.9)
    base_grads = bwd(dloss, base_cache)
    for kind in LAYOUTS[1:]:
        out, cache = fwd(*with_layout(args, kind), **kw)
        assert_bits_equal(out, base_out, f"{name}_forward[{kind}]")
        grads = bwd(with_layout(dloss, kind) if isinstance(dloss, np.ndarray) else dloss, cache)
        assert_bits_equal(grads, base_grads, f"{name}_backward[{kind}]")


@given(rst.aligned_box_sets(max_n=16, grid=None, min_size=0.0), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([1e-7, 1e-3]))
def test_iou_losses_bit_exact_vs_torchvision(pair, dtype, eps):
    # The losses are 1 - value of refdet.iou's paired family, summed in torchvision's order
    # ((1 - iou) + rho^2/c^2 + alpha v): float32 and float64 bits equal torchvision's, NaNs included
    # (CIoU with torch's arctangent: NumPy's and SLEEF's differ in the last bit)
    torch = _torch()
    tv = _tv_box_losses()
    a, b = (x.astype(dtype) for x in pair)
    tatan = lambda x: torch.atan(torch.from_numpy(np.ascontiguousarray(x))).numpy()  # noqa: E731
    for kind, ref_f in tv.items():
        ref = ref_f(torch.from_numpy(a), torch.from_numpy(b), reduction="none", eps=eps).numpy()
        kw = {"atan": tatan} if kind == "ciou" else {}
        ours = getattr(L, f"{kind}_loss_forward")(a, b, eps=eps, **kw)[0]
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours.view(np.uint8), ref.view(np.uint8))


def test_mmdet_ciou_of_identical_float32_boxes_is_nan_as_in_mmdet():
    # mmdet's alpha = (iou > 0.5) * v / (1 - iou + v) has no eps: identical boxes have v = 0, and in
    # float32 iou = I / (U + 1e-6) rounds to exactly 1 once U >= 16 (U + 1e-6 == U), so alpha = 0/0.
    # [0, 0, 10, 20]: U = 200 -> NaN in float32 (mmdet's own result, transcribed below), while in
    # float64 iou = 200 / 200.000001 < 1: alpha = 0, loss = 1 - iou = 5e-9.
    torch = _torch()
    b = np.array([[0.0, 0.0, 10.0, 20.0]])
    assert np.isnan(L.ciou_loss_forward(b.astype(np.float32), b.astype(np.float32), convention="mmdet")[0][0])
    np.testing.assert_allclose(L.ciou_loss_forward(b, b, convention="mmdet")[0], [1 - 200 / (200 + 1e-6)],
                               rtol=1e-6)
    t = torch.tensor(b, dtype=torch.float32)
    assert torch.isnan(_mmdet_reference("ciou", t, t, 1e-6)).all()
