"""Tests of refdet.yolo.losses and refdet.yolo.detector_losses.

Golden values with the arithmetic in comments (GFL, VarifocalNet, darknet YOLOv3, YOLOv5); gradient
checks (float64 central differences) of every backward with the targets held fixed; torch autograd
on the same formulas; ultralytics' ``DFLoss``, ``VarifocalLoss`` and ``v8DetectionLoss`` (its
assigner's ``torch.topk`` made stable, see tests/test_yolo_assign.py) for values and gradients.
"""
import math
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.testing import check_gradients
from refdet.yolo import detector_losses as DL
from refdet.yolo import losses as L
from refdet.yolo.anchors import make_anchors
from refdet.yolo.assign import task_aligned_assign
from tests.test_yolo_assign import _stable_tal_class

LN2 = math.log(2.0)


class _FrozenCIoUAlpha:
    """CIoU's ``alpha`` is computed under ``no_grad`` (a constant of the backward pass): central
    differences must see it frozen at its value at the unperturbed inputs. Patched over
    ``refdet.yolo._common.ciou_pairs`` for a gradient check: the first forward records each
    call's alpha, later calls return ``ciou + (alpha - alpha0) * v`` (the CIoU with alpha0)."""

    def __init__(self, monkeypatch):
        from refdet.yolo import _common
        self.orig = _common.ciou_pairs
        self.alphas, self.recording, self.i = [], True, 0
        monkeypatch.setattr(_common, "ciou_pairs", self)

    def freeze(self):
        self.recording, self.i = False, 0

    def __call__(self, b1, b2, **kw):
        c, cache = self.orig(b1, b2, **kw)
        if self.recording:
            self.alphas.append(cache.v["alpha"].copy())
            return c, cache
        a0 = self.alphas[self.i % len(self.alphas)]
        self.i += 1
        c = c + (cache.v["alpha"] - a0) * cache.v["vv"]
        cache.v["alpha"] = a0
        return c, cache


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


# ------------------------------------------------------------------------------------ QFL

def test_qfl_golden():
    # z = 0 -> p = 0.5; BCE(0, y) = ln 2 for every y.
    #   y = 1:   |1 - 0.5|^2 * ln 2 = 0.25 ln 2;  y = 0.5: 0;  y = 0: 0.25 ln 2
    loss, _ = L.quality_focal_loss_forward(np.zeros(3), np.array([1.0, 0.5, 0.0]))
    np.testing.assert_allclose(loss, [0.25 * LN2, 0.0, 0.25 * LN2], rtol=1e-15)
    # beta = 0 is plain BCE
    loss, _ = L.quality_focal_loss_forward(np.array([2.0]), np.array([1.0]), beta=0.0)
    np.testing.assert_allclose(loss, [math.log1p(math.exp(-2.0))], rtol=1e-15)


def test_qfl_gradcheck_and_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)) * 2
    y = np.zeros((6, 4))
    y[np.arange(6), rng.integers(0, 4, 6)] = rng.uniform(0.1, 0.9, 6)
    for beta in (2.0, 1.5):
        check_gradients(lambda x: L.quality_focal_loss_forward(x, y, beta=beta), L.quality_focal_loss_backward,
                        (z,), rng=1)
    tz = torch.tensor(z, requires_grad=True)
    ty = torch.tensor(y)
    # mmdet gfocal_loss.quality_focal_loss, two branches, summed over classes
    p = tz.sigmoid()
    neg = torch.nn.functional.binary_cross_entropy_with_logits(tz, torch.zeros_like(tz), reduction="none") * p.pow(2)
    pos = torch.nn.functional.binary_cross_entropy_with_logits(tz, ty, reduction="none") * (ty - p).abs().pow(2)
    ref = torch.where(ty > 0, pos, neg).sum(1)
    ref.sum().backward()
    loss, cache = L.quality_focal_loss_forward(z, y)
    np.testing.assert_allclose(loss.sum(1), ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(L.quality_focal_loss_backward(np.ones_like(z), cache).dlogits, tz.grad.numpy(),
                               rtol=1e-11, atol=1e-14)


# ------------------------------------------------------------------------------------ DFL

def test_dfl_golden():
    # y = 2.3 over R = 5 bins: y_l = 2, y_r = 3, w_l = 0.7, w_r = 0.3; uniform logits P = 0.2:
    # -(0.7 ln 0.2 + 0.3 ln 0.2) = ln 5 = 1.6094; mass 0.7 / 0.3 on bins 2 / 3 minimises it
    loss, _ = L.distribution_focal_loss_forward(np.zeros((1, 5)), np.array([2.3]))
    np.testing.assert_allclose(loss, [math.log(5)], rtol=1e-15)
    z = np.log(np.array([[1e-12, 1e-12, 0.7, 0.3, 1e-12]]))
    best, _ = L.distribution_focal_loss_forward(z, np.array([2.3]))
    np.testing.assert_allclose(best, [-(0.7 * math.log(0.7) + 0.3 * math.log(0.3))], rtol=1e-9)
    # ultralytics clamps to R - 1 - 0.01 = 3.99: y_l = 3, w_l = 0.01 (up to the rounding of 3.99)
    _, c = L.distribution_focal_loss_forward(np.zeros((1, 5)), np.array([7.0]))
    assert c.left.tolist() == [3] and abs(c.wl[0] - 0.01) < 1e-12


def test_dfl_matches_ultralytics_and_autograd():
    torch = _torch()
    lossmod = pytest.importorskip("ultralytics.utils.loss")
    rng = np.random.default_rng(1)
    z = rng.standard_normal((12, 16)) * 2
    y = rng.uniform(0, 16.5, 12)
    y[:2] = [15.0, 14.99]
    tz = torch.tensor(z, requires_grad=True)
    # DFLoss takes (n * 4, R) logits and (n, 4) targets and averages the 4 sides: (n, 1)
    ref = lossmod.DFLoss(16)(tz, torch.tensor(y.reshape(3, 4)).clone())
    ref.sum().backward()
    loss, cache = L.distribution_focal_loss_forward(z, y)
    np.testing.assert_allclose(loss.reshape(3, 4).mean(-1), ref.detach().numpy()[:, 0], rtol=1e-13)
    np.testing.assert_allclose(L.distribution_focal_loss_backward(np.full(12, 0.25), cache).dlogits, tz.grad.numpy(),
                               rtol=1e-12, atol=1e-15)
    check_gradients(lambda x: L.distribution_focal_loss_forward(x, y, reduction="sum"),
                    L.distribution_focal_loss_backward, (z,), rng=2)


def test_dfl_mmdet_profile():
    # mmdet: w_r = y - y_l; targets must lie in [0, R - 1)
    loss, c = L.distribution_focal_loss_forward(np.zeros((2, 5)), np.array([0.0, 3.5]), convention="mmdet")
    assert c.wr.tolist() == [0.0, 0.5]
    with pytest.raises(ValueError, match="`targets`.*\\[0, R - 1\\)"):
        L.distribution_focal_loss_forward(np.zeros((1, 5)), np.array([4.0]), convention="mmdet")


# ------------------------------------------------------------------------------------ VFL

def test_vfl_golden():
    # z = 0 -> p = 0.5, BCE = ln 2. Positive q = 0.8: 0.8 ln 2; negative (q = 0): 0.75 * 0.5^2 * ln 2
    loss, _ = L.varifocal_loss_forward(np.zeros(2), np.array([0.8, 0.0]))
    np.testing.assert_allclose(loss, [0.8 * LN2, 0.75 * 0.25 * LN2], rtol=1e-15)
    loss, _ = L.varifocal_loss_forward(np.zeros(2), np.array([0.8, 0.0]), iou_weighted=False)
    np.testing.assert_allclose(loss, [LN2, 0.75 * 0.25 * LN2], rtol=1e-15)


def test_vfl_matches_ultralytics_and_gradcheck():
    torch = _torch()
    lossmod = pytest.importorskip("ultralytics.utils.loss")
    rng = np.random.default_rng(2)
    z = rng.standard_normal((5, 7, 3)) * 2
    lab = np.zeros((5, 7, 3))
    lab[rng.integers(0, 5, 9), rng.integers(0, 7, 9), rng.integers(0, 3, 9)] = 1
    q = lab * rng.uniform(0.05, 1, lab.shape)
    tz = torch.tensor(z, requires_grad=True)
    ref = lossmod.VarifocalLoss()(tz, torch.tensor(q), torch.tensor(lab))   # (BCE * w).mean(1).sum()
    ref.backward()
    loss, cache = L.varifocal_loss_forward(z, q, labels=lab.astype(bool))
    # VarifocalLoss evaluates the BCE in float32 (pred_score.float()): float32-level agreement
    np.testing.assert_allclose(loss.mean(1).sum(), float(ref.detach()), rtol=1e-6)
    dl = np.full(loss.shape, 1.0 / loss.shape[1])
    np.testing.assert_allclose(L.varifocal_loss_backward(dl, cache).dlogits, tz.grad.numpy(), rtol=1e-5, atol=1e-7)
    # and the same formula in float64 torch, exactly
    tz2 = torch.tensor(z, requires_grad=True)
    p = tz2.sigmoid()
    w = 0.75 * p.pow(2) * (1 - torch.tensor(lab)) + torch.tensor(q) * torch.tensor(lab)
    ref2 = (torch.nn.functional.binary_cross_entropy_with_logits(tz2, torch.tensor(q), reduction="none") * w)
    ref2.mean(1).sum().backward()
    np.testing.assert_allclose(loss, ref2.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(L.varifocal_loss_backward(dl, cache).dlogits, tz2.grad.numpy(), rtol=1e-11, atol=1e-14)
    check_gradients(lambda x: L.varifocal_loss_forward(x, q, reduction="mean"), L.varifocal_loss_backward, (z,), rng=3)


def test_gfl_bad_input():
    with pytest.raises(ValueError, match="`beta`"):
        L.quality_focal_loss_forward(np.zeros(2), np.zeros(2), beta=-1.0)
    with pytest.raises(ValueError, match="`targets`.*\\[0, 1\\]"):
        L.quality_focal_loss_forward(np.zeros(2), np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match="`logits` and `targets`"):
        L.varifocal_loss_forward(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="`logits`.*NaN"):
        L.varifocal_loss_forward(np.array([np.nan]), np.zeros(1))
    with pytest.raises(ValueError, match="`logits`.*R >= 2"):
        L.distribution_focal_loss_forward(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="`reduction`"):
        L.varifocal_loss_forward(np.zeros(2), np.zeros(2), reduction="batchmean")
    with pytest.raises(TypeError, match="`cache`"):
        L.varifocal_loss_backward(1.0, L.quality_focal_loss_forward(np.zeros(2), np.zeros(2))[1])


# ------------------------------------------------------------------------------------ YOLOv3

ONE_ANCHOR = np.array([[[8.0, 8.0]]])


def test_yolov3_loss_golden():
    # one level, 2 x 2 cells of stride 8 (image 16 x 16), one anchor (8, 8), K = 2, all outputs 0
    # (sigmoid = 0.5, every BCE of a logit 0 is ln 2). gt [0, 0, 8, 8] of class 1: cell (0, 0),
    # tx* = ty* = 4 / 8 - 0 = 0.5, tw* = th* = ln(8 / 8) = 0, scale = 2 - 0.5 * 0.5 = 1.75.
    #   box = 1.75 * (ln 2 + ln 2 + 0 + 0) = 3.5 ln 2
    #   obj = ln 2 (positive) + 3 ln 2 (three negatives; their predictions [8, 0, 16, 8], ... do not
    #         overlap the gt, none is ignored)           = 4 ln 2
    #   cls = 2 ln 2 (two classes)
    preds = [np.zeros((1, 1, 2, 2, 7))]
    out, _ = DL.yolov3_loss_forward(preds, [np.array([[0.0, 0, 8, 8]])], [np.array([1])], ONE_ANCHOR, [8.0],
                                    (16, 16))
    np.testing.assert_allclose([out.box, out.obj, out.cls, out.loss], np.array([3.5, 4, 2, 9.5]) * LN2, rtol=1e-15)


def _v3_case(rng):
    anchors = np.array([[[10.0, 13.0], [16.0, 30.0]], [[33.0, 23.0], [62.0, 45.0]]])
    preds = [rng.standard_normal((2, 2, 4, 4, 7)), rng.standard_normal((2, 2, 2, 2, 7))]
    gts = [np.array([[3.0, 4, 17, 20], [10, 2, 40, 30]]), np.array([[1.0, 1, 30, 25]])]
    labs = [np.array([0, 1]), np.array([0])]
    return preds, gts, labs, anchors


def test_yolov3_loss_gradcheck_and_autograd():
    torch = _torch()
    rng = np.random.default_rng(3)
    preds, gts, labs, anchors = _v3_case(rng)
    out, cache = DL.yolov3_loss_forward(preds, gts, labs, anchors, [8.0, 16.0], (32, 32), ignore_thresh=0.3)
    asg = cache.parts["assignments"]
    fwd = lambda p0, p1: DL.yolov3_loss_forward([p0, p1], gts, labs, anchors, [8.0, 16.0], (32, 32),  # noqa: E731
                                                assignments=asg)
    check_gradients(fwd, lambda d, c: tuple(DL.yolov3_loss_backward(d, c).dpreds), tuple(preds), rng=4)
    # the same loss written in torch from the assignment: gradients by autograd
    F = torch.nn.functional
    tp = [torch.tensor(p, requires_grad=True) for p in preds]
    total = 0
    for lvl, p in enumerate(tp):
        gi = np.stack([asg[b][lvl].gt_index for b in range(2)])
        box = np.stack([asg[b][lvl].boxes for b in range(2)])
        lab = np.stack([asg[b][lvl].labels for b in range(2)])
        pos, neg = torch.tensor(gi >= 0), torch.tensor(gi == -1)
        o = p[..., 4]
        total = total + F.binary_cross_entropy_with_logits(o[pos], torch.ones(int(pos.sum()), dtype=torch.float64), reduction="sum") \
            + F.binary_cross_entropy_with_logits(o[neg], torch.zeros(int(neg.sum()), dtype=torch.float64), reduction="sum")
        b, a, y, x = np.nonzero(gi >= 0)
        g = box[b, a, y, x]
        s = [8.0, 16.0][lvl]
        txy = torch.tensor(np.stack([(g[:, 0] + g[:, 2]) / 2 / s - x, (g[:, 1] + g[:, 3]) / 2 / s - y], 1))
        twh = torch.tensor(np.log(np.stack([(g[:, 2] - g[:, 0]) / anchors[lvl, a, 0],
                                            (g[:, 3] - g[:, 1]) / anchors[lvl, a, 1]], 1)))
        scale = torch.tensor(2 - (g[:, 2] - g[:, 0]) / 32 * (g[:, 3] - g[:, 1]) / 32)
        pp = p[b, a, y, x]
        total = total + (scale * (F.binary_cross_entropy_with_logits(pp[:, :2], txy, reduction="none").sum(1)
                                  + 0.5 * ((pp[:, 2:4] - twh) ** 2).sum(1))).sum()
        oh = torch.nn.functional.one_hot(torch.tensor(lab[b, a, y, x]), 2).double()
        total = total + F.binary_cross_entropy_with_logits(pp[:, 5:], oh, reduction="sum")
    total.backward()
    np.testing.assert_allclose(float(out.loss), float(total.detach()), rtol=1e-12)
    g = DL.yolov3_loss_backward(1.0, cache).dpreds
    for lvl in range(2):
        np.testing.assert_allclose(g[lvl], tp[lvl].grad.numpy(), rtol=1e-11, atol=1e-13)


# ------------------------------------------------------------------------------------ YOLOv5

def test_yolov5_loss_golden():
    # one level of 2 x 2 cells (stride 8), one anchor of 8 px = 1 grid unit, K = 3, all outputs 0.
    # target (0, class 1, x 0.25, y 0.25, w 0.5, h 0.5): gxy = (0.5, 0.5), gwh = (1, 1); no neighbour
    # (0.5 % 1 = 0.5 is not < 0.5). Prediction: pxy = 2 * 0.5 - 0.5 = 0.5, pwh = (2 * 0.5)^2 * 1 = 1:
    # pbox = tbox, CIoU = 1 / (1 + 1e-7) (union + eps), lbox = 1 - CIoU = 1e-7 / (1 + 1e-7).
    # obj: every BCE of a logit 0 is ln 2 whatever the target: mean ln 2, times balance[0] = 4.0.
    # cls with label smoothing 0.1: targets (0.05, 0.95, 0.05), each BCE ln 2 -> mean ln 2.
    # gains 0.05, 1.0, 0.5; loss = (box + obj + cls) * B (B = 1)
    preds = [np.zeros((1, 1, 2, 2, 8))]
    t = np.array([[0, 1, 0.25, 0.25, 0.5, 0.5]])
    out, _ = DL.yolov5_loss_forward(preds, t, ONE_ANCHOR, [8.0], label_smoothing=0.1)
    lbox = 0.05 * (1e-7 / (1 + 1e-7))
    np.testing.assert_allclose([out.box, out.obj, out.cls], [lbox, 4 * LN2, 0.5 * LN2], rtol=1e-9)
    np.testing.assert_allclose(out.loss, lbox + 4.5 * LN2, rtol=1e-12)


def _ciou_yolov5_torch(torch, b1, b2, eps=1e-7):
    """YOLOv5's CIoU of (cx, cy, w, h) pairs, written in torch (alpha under no_grad)."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1.chunk(4, -1), b2.chunk(4, -1)
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (b1x2.minimum(b2x2) - b1x1.maximum(b2x1)).clamp(0) * (b1y2.minimum(b2y2) - b1y1.maximum(b2y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = b1x2.maximum(b2x2) - b1x1.minimum(b2x1)
    ch = b1y2.maximum(b2y2) - b1y1.minimum(b2y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return (iou - (rho2 / c2 + v * alpha)).squeeze(-1)


@pytest.mark.parametrize("sort_obj_iou,gr,smooth", [(False, 1.0, 0.0), (True, 0.5, 0.1)])
def test_yolov5_loss_gradcheck_and_autograd(sort_obj_iou, gr, smooth, monkeypatch):
    torch = _torch()
    from refdet.yolo.targets import yolov5_build_targets
    rng = np.random.default_rng(5)
    anchors = np.array([[[10.0, 13.0], [16.0, 30.0]], [[30.0, 61.0], [62.0, 45.0]]])
    strides = [8.0, 16.0]
    preds = [rng.standard_normal((2, 2, 4, 4, 8)) * 0.7, rng.standard_normal((2, 2, 2, 2, 8)) * 0.7]
    t = np.array([[0, 1, 0.3, 0.4, 0.3, 0.5], [0, 2, 0.62, 0.55, 0.5, 0.3], [1, 0, 0.5, 0.5, 0.8, 0.9],
                  [1, 0, 0.52, 0.5, 0.7, 0.9]])
    kw = dict(sort_obj_iou=sort_obj_iou, gr=gr, label_smoothing=smooth)
    out, cache = DL.yolov5_loss_forward(preds, t, anchors, strides, **kw)
    build = cache.parts["build"]
    tobj = [lv["tobj"] for lv in cache.parts["levels"]]          # constants of the backward (detached IoUs)
    frozen = _FrozenCIoUAlpha(monkeypatch)
    DL.yolov5_loss_forward(preds, t, anchors, strides, build=build, obj_targets=tobj, **kw)
    frozen.freeze()
    check_gradients(lambda p0, p1: DL.yolov5_loss_forward([p0, p1], t, anchors, strides, build=build,
                                                          obj_targets=tobj, **kw),
                    lambda d, c: tuple(DL.yolov5_loss_backward(d, c).dpreds), tuple(preds), rng=6)
    monkeypatch.undo()
    # ComputeLoss.__call__ written in torch on the same targets
    F = torch.nn.functional
    tp = [torch.tensor(p, requires_grad=True) for p in preds]
    ag = anchors / np.array(strides)[:, None, None]
    bt = yolov5_build_targets(t, ag, [(4, 4), (2, 2)], batch_size=2)
    lbox = lobj = lcls = 0
    for i, (p, lv) in enumerate(zip(tp, bt)):
        b, a, gj, gi = [torch.tensor(v) for v in (lv.image, lv.anchor, lv.gy, lv.gx)]
        tobj = torch.zeros(p.shape[:4], dtype=torch.float64)
        ps = p[b, a, gj, gi]
        pxy = ps[:, :2].sigmoid() * 2 - 0.5
        pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * torch.tensor(lv.anchors)
        iou = _ciou_yolov5_torch(torch, torch.cat((pxy, pwh), 1), torch.tensor(lv.boxes))
        lbox = lbox + (1.0 - iou).mean()
        iou = iou.detach().clamp(0)
        if sort_obj_iou:
            j = torch.tensor(np.argsort(iou.numpy(), kind="stable"))
            b, a, gj, gi, iou = b[j], a[j], gj[j], gi[j], iou[j]
        if gr < 1:
            iou = (1.0 - gr) + gr * iou
        tobj[b, a, gj, gi] = iou
        tt = torch.full_like(ps[:, 5:], 0.5 * smooth)
        tt[range(len(b)), torch.tensor(lv.labels)] = 1.0 - 0.5 * smooth
        lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], tt)
        lobj = lobj + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * [4.0, 1.0][i]
    total = (lbox * 0.05 + lobj * 1.0 + lcls * 0.5) * 2
    total.backward()
    np.testing.assert_allclose(float(out.loss), float(total.detach()), rtol=1e-12)
    g = DL.yolov5_loss_backward(1.0, cache).dpreds
    for lvl in range(2):
        np.testing.assert_allclose(g[lvl], tp[lvl].grad.numpy(), rtol=1e-10, atol=1e-13)


def test_yolov5_loss_bad_input():
    with pytest.raises(ValueError, match="`targets` classes must be < K"):
        DL.yolov5_loss_forward([np.zeros((1, 1, 2, 2, 7))], np.array([[0, 2, 0.5, 0.5, 0.5, 0.5]]), ONE_ANCHOR, [8.0])
    with pytest.raises(ValueError, match=r"`preds\[0\]`.*NaN"):
        DL.yolov5_loss_forward([np.full((1, 1, 2, 2, 7), np.nan)], np.zeros((0, 6)), ONE_ANCHOR, [8.0])
    with pytest.raises(ValueError, match="`anchors`.*one row per level"):
        DL.yolov5_loss_forward([np.zeros((1, 1, 2, 2, 7))] * 2, np.zeros((0, 6)), ONE_ANCHOR, [8.0, 16.0])
    with pytest.raises(ValueError, match="`label_smoothing`"):
        DL.yolov5_loss_forward([np.zeros((1, 1, 2, 2, 7))], np.zeros((0, 6)), ONE_ANCHOR, [8.0], label_smoothing=2)


def test_yolov5_loss_no_targets():
    preds = [np.zeros((1, 1, 2, 2, 8))]
    out, cache = DL.yolov5_loss_forward(preds, np.zeros((0, 6)), ONE_ANCHOR, [8.0])
    np.testing.assert_allclose([out.box, out.obj, out.cls], [0.0, 4 * LN2, 0.0], rtol=1e-15)
    g = DL.yolov5_loss_backward(1.0, cache).dpreds[0]
    assert np.all(g[..., :4] == 0) and np.all(g[..., 5:] == 0)


# ------------------------------------------------------------------------------------ ultralytics v8

def _v8_model(torch, nc, reg_max, strides):
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nc, self.reg_max, self.stride = nc, reg_max, torch.tensor(strides)
            self.p = torch.nn.Parameter(torch.zeros(1))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.ModuleList([Head()])
            self.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)

    return Model()


def _v8_case(rng, B, K, R, sizes, strides, max_t=4, img=64.0):
    ap, st_ = make_anchors(sizes, strides, dtype=np.float64)
    N = ap.shape[0]
    pd = rng.standard_normal((B, N, 4 * R)) * 2
    sc = rng.standard_normal((B, N, K)) * 2
    rows = []
    for b in range(B):
        for _ in range(int(rng.integers(0, max_t + 1))):
            cx, cy = rng.uniform(0.1, 0.9, 2)
            w, h = rng.uniform(0.05, 0.5, 2)
            rows.append([b, rng.integers(0, K), cx, cy, w, h])
    rows = np.array(rows, dtype=np.float64).reshape(-1, 6)
    M = max([int((rows[:, 0] == b).sum()) for b in range(B)] + [0])
    gl, gb = np.zeros((B, M), np.int64), np.zeros((B, M, 4))
    for b in range(B):
        r = rows[rows[:, 0] == b]
        gl[b, :len(r)] = r[:, 1]
        xywh = r[:, 2:] * img
        gb[b, :len(r)] = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    return ap, st_, pd, sc, rows, gl, gb


@pytest.mark.parametrize("R", [16, 8, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_v8_loss_matches_ultralytics_values_and_gradients(R, seed):
    torch = _torch()
    lossmod = pytest.importorskip("ultralytics.utils.loss")
    stable, _ = _stable_tal_class()
    rng = np.random.default_rng(seed)
    B, K, sizes, strides = 2, 3, [(8, 8), (4, 4), (2, 2)], [8.0, 16.0, 32.0]
    ap, st_, pd, sc, rows, gl, gb = _v8_case(rng, B, K, R, sizes, strides, max_t=0 if seed == 2 else 4)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)          # ultralytics' preprocess allocates with the default dtype
    try:
        crit = lossmod.v8DetectionLoss(_v8_model(torch, K, R, strides).double())
        crit.assigner.__class__ = stable
        tpd, tsc = torch.tensor(pd, requires_grad=True), torch.tensor(sc, requires_grad=True)
        preds = {"boxes": tpd.permute(0, 2, 1), "scores": tsc.permute(0, 2, 1),
                 "feats": [torch.zeros(B, 1, h, w) for h, w in sizes]}
        batch = {"batch_idx": torch.tensor(rows[:, 0]), "cls": torch.tensor(rows[:, 1]),
                 "bboxes": torch.tensor(rows[:, 2:])}
        loss, items = crit(preds, batch)
        loss.sum().backward()
    finally:
        torch.set_default_dtype(old)
    out, cache = DL.v8_detection_loss_forward(pd, sc, ap, st_, gl, gb, reg_max=R, image_size=(64, 64))
    np.testing.assert_allclose([out.box, out.cls, out.dfl], [float(v) for v in items.values()], rtol=1e-11,
                               atol=1e-14)
    np.testing.assert_allclose(out.loss, float(loss.sum().detach()), rtol=1e-11)
    g = DL.v8_detection_loss_backward(1.0, cache)
    np.testing.assert_allclose(g.dpred_scores, tsc.grad.numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(g.dpred_dist, tpd.grad.numpy(), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("R", [16, 4])
def test_v8_box_and_dfl_terms_match_ultralytics_bboxloss(R):
    # ultralytics BboxLoss on the same TAL targets: (loss_iou, loss_dfl) = refdet's box / 7.5, dfl / 1.5
    torch = _torch()
    lossmod = pytest.importorskip("ultralytics.utils.loss")
    rng = np.random.default_rng(R)
    ap, st_, pd, sc, rows, gl, gb = _v8_case(rng, 2, 3, R, [(8, 8), (4, 4)], [8.0, 16.0], max_t=5)
    out, cache = DL.v8_detection_loss_forward(pd, sc, ap, st_, gl, gb, reg_max=R, strides=[8.0, 16.0])
    a = cache.parts["assignment"]
    ts = torch.tensor(cache.parts["ts"])
    tss = ts.sum().clamp(min=1)
    from refdet.yolo.decode import dfl_decode_forward
    pbox, _ = dfl_decode_forward(pd, ap, reg_max=R, out_fmt="xyxy")
    li, ld = lossmod.BboxLoss(R)(torch.tensor(pd), torch.tensor(pbox), torch.tensor(ap),
                                 torch.tensor(a.boxes / st_[None]), ts, tss, torch.tensor(a.fg_mask),
                                 torch.tensor([64.0, 64.0]), torch.tensor(st_))
    np.testing.assert_allclose([out.box / 7.5, out.dfl / 1.5], [float(li), float(ld)], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("R", [5, 1])
def test_v8_loss_gradcheck(R, monkeypatch):
    rng = np.random.default_rng(7)
    ap, st_, pd, sc, rows, gl, gb = _v8_case(rng, 2, 2, R, [(4, 4), (2, 2)], [8.0, 16.0], img=32.0)
    gl, gb = np.array([[1, 0], [0, 0]]), np.array([[[2.0, 3, 20, 25], [10, 12, 30, 28]], [[5.0, 6, 18, 14], [0, 0, 0, 0]]])
    s2 = st_
    from refdet.yolo.decode import dfl_decode_forward
    from refdet.yolo._common import sigmoid
    pbox, _ = dfl_decode_forward(pd, ap, reg_max=R, out_fmt="xyxy")
    a = task_aligned_assign(sigmoid(sc)[0], pbox * s2, ap * s2, gl, gb, gb.sum(-1) > 0, strides=[8.0, 16.0],
                            topk=10, alpha=0.5)
    assert a.fg_mask.any()
    fwd = lambda x, y: DL.v8_detection_loss_forward(x, y, ap, st_, gl, gb, reg_max=R, image_size=(32, 32),  # noqa
                                                    assignment=a)
    frozen = _FrozenCIoUAlpha(monkeypatch)
    fwd(pd, sc)
    frozen.freeze()
    check_gradients(fwd, DL.v8_detection_loss_backward, (pd, sc), rng=8)


def test_v8_loss_bad_input():
    ap, st_ = make_anchors([(2, 2)], [8.0], dtype=np.float64)
    with pytest.raises(ValueError, match="`pred_dist`.*4 \\* reg_max"):
        DL.v8_detection_loss_forward(np.zeros((1, 4, 60)), np.zeros((1, 4, 2)), ap, st_, np.zeros((1, 0), int),
                                     np.zeros((1, 0, 4)))
    with pytest.raises(ValueError, match="`reg_max` must be >= 1"):
        DL.v8_detection_loss_forward(np.zeros((1, 4, 0)), np.zeros((1, 4, 2)), ap, st_, np.zeros((1, 0), int),
                                     np.zeros((1, 0, 4)), reg_max=0)
    with pytest.raises(ValueError, match="`image_size` is required"):
        DL.v8_detection_loss_forward(np.zeros((1, 4, 4)), np.zeros((1, 4, 2)), ap, st_, np.zeros((1, 0), int),
                                     np.zeros((1, 0, 4)), reg_max=1)
    with pytest.raises(ValueError, match="`pred_scores`.*NaN"):
        DL.v8_detection_loss_forward(np.zeros((1, 4, 64)), np.full((1, 4, 2), np.nan), ap, st_,
                                     np.zeros((1, 0), int), np.zeros((1, 0, 4)))
    with pytest.raises(ValueError, match="`dloss`"):
        DL.v8_detection_loss_backward(np.ones(3), DL.v8_detection_loss_forward(
            np.zeros((1, 4, 64)), np.zeros((1, 4, 2)), ap, st_, np.zeros((1, 0), int), np.zeros((1, 0, 4)))[1])
