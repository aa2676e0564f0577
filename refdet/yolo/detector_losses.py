"""Whole-detector YOLO losses, forward and closed-form backward: YOLOv3, YOLOv5, ultralytics v8.

Each loss assigns targets (with the predictions detached, as the frameworks do), evaluates its terms
and returns them with the frameworks' normalisation; the backward pass returns the gradient of the
raw head outputs. An ``assignment``/``build`` keyword takes precomputed targets, so that a gradient
check perturbs the loss with the targets held fixed (the frameworks' ``no_grad`` assignment).

=================  =====================================================================================
loss               terms (``p = sigmoid``)
=================  =====================================================================================
YOLOv3 (darknet)   positives: ``scale * [BCE(tx, tx*) + BCE(ty, ty*) + (tw - tw*)^2 / 2 + (th - th*)^2 / 2]``,
                   ``scale = 2 - w h`` (normalised gt size); objectness BCE against 1 (positives) and 0
                   (not ignored); class BCE against one-hot; all summed over the batch
YOLOv5             per level: ``mean(1 - CIoU)`` of the entries, ``mean BCE(obj, IoU target) * balance``,
                   ``mean BCE(cls, label-smoothed one-hot)``; gains ``box``, ``obj``, ``cls``; times B
ultralytics v8     ``sum((1 - CIoU) w) / S``, ``sum BCE(cls, TAL targets) / S``, ``sum(DFL mean over sides
                   * w) / S`` with ``w`` the anchor's target score, ``S = max(1, sum of target scores)``;
                   gains 7.5, 0.5, 1.5; times B
=================  =====================================================================================

darknet's YOLOv3 has no loss function, only gradients (``delta = target - output`` after the
logistic, never multiplied by the logistic's derivative for ``x, y``): the YOLOv3 loss here is the
function whose gradient with respect to the raw outputs *is* darknet's ``-delta`` -- a BCE with soft
targets for ``x, y``, squared error for ``w, h``.

Sources: darknet ``src/yolo_layer.c`` (``forward_yolo_layer``, ``delta_yolo_box``); YOLOv5 v7.0
``utils/loss.py ComputeLoss`` and ``utils/metrics.py bbox_iou``; ultralytics 8.4 ``utils/loss.py``
(``v8DetectionLoss``, ``BboxLoss``, ``DFLoss``).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet.yolo import _common
from refdet.yolo.assign import Assignment, target_scores, task_aligned_assign
from refdet.yolo.decode import bbox2dist, dfl_backward, dfl_forward, dist2bbox_backward, dist2bbox_forward
from refdet.yolo.losses import distribution_focal_loss_backward, distribution_focal_loss_forward
from refdet.yolo.targets import YOLOv5LevelTargets, yolov3_assign, yolov5_build_targets

__all__ = [
    "YOLOLoss", "V8Loss", "YOLOLossGrads", "V8LossGrads",
    "yolov3_loss_forward", "yolov3_loss_backward",
    "yolov5_loss_forward", "yolov5_loss_backward",
    "v8_detection_loss_forward", "v8_detection_loss_backward",
]


class YOLOLoss(NamedTuple):
    """``loss`` (what is backpropagated) and its parts (after gains, before the batch factor)."""
    loss: np.ndarray
    box: np.ndarray
    obj: np.ndarray
    cls: np.ndarray


class V8Loss(NamedTuple):
    """ultralytics' ``loss * batch_size`` and its three gained items."""
    loss: np.ndarray
    box: np.ndarray
    cls: np.ndarray
    dfl: np.ndarray


class YOLOLossGrads(NamedTuple):
    """Gradients w.r.t. each level's raw predictions (B, A, H, W, 5 + K)."""
    dpreds: list


class V8LossGrads(NamedTuple):
    dpred_dist: np.ndarray
    dpred_scores: np.ndarray


class _LossCache(NamedTuple):
    kind: str
    parts: dict


def _upstream(dloss, names, dt):
    """A scalar (gradient of ``loss``) or a tuple of one scalar per field -> dict of floats."""
    if isinstance(dloss, tuple) and len(dloss) == len(names):
        vals = [_common.floats(v, f"dloss.{n}") for v, n in zip(dloss, names)]
        for v, n in zip(vals, names):
            if v.size != 1:
                raise ValueError(f"`dloss.{n}` must be a scalar; got shape {v.shape}")
        return {n: dt.type(v.reshape(())) for n, v in zip(names, vals)}
    d = _common.floats(dloss, "dloss")
    if d.size != 1:
        raise ValueError(f"`dloss` must be a scalar (the loss) or one scalar per field {names}; got shape {d.shape}")
    out = {n: dt.type(0) for n in names}
    out[names[0]] = dt.type(d.reshape(()))
    return out


def _check_cache(cache, kind, forward):
    if not isinstance(cache, _LossCache) or cache.kind != kind:
        raise TypeError(f"`cache` must be the cache returned by {forward}; got {type(cache).__name__}")


def _levels(preds, A=None, name="preds"):
    if isinstance(preds, np.ndarray) or not hasattr(preds, "__len__") or len(preds) == 0:
        raise TypeError(f"`{name}` must be a non-empty list of per-level arrays (B, A, H, W, 5 + K)")
    out = []
    for i, p in enumerate(preds):
        arr = _common.floats(p, f"{name}[{i}]")
        if arr.ndim != 5 or arr.shape[-1] < 6:
            raise ValueError(f"`{name}[{i}]` must have shape (B, A, H, W, 5 + K) with K >= 1; got {arr.shape}")
        if out and (arr.shape[0], arr.shape[1], arr.shape[4]) != (out[0].shape[0], out[0].shape[1], out[0].shape[4]):
            raise ValueError(f"`{name}[{i}]` must share B, A and 5 + K with `{name}[0]` {out[0].shape}; got {arr.shape}")
        out.append(arr)
    if A is not None and out[0].shape[1] != A:
        raise ValueError(f"`{name}` must have A = {A} anchors per level (that of `anchors`); got {out[0].shape[1]}")
    dt = np.result_type(*[o.dtype for o in out])
    return [o.astype(dt, copy=False) for o in out], dt


# ------------------------------------------------------------------------------------------------
# YOLOv3 (darknet)
# ------------------------------------------------------------------------------------------------

def yolov3_loss_forward(preds: Sequence, gt_boxes: Sequence, gt_labels: Sequence, anchors, strides: Sequence[float],
                        image_size: Sequence, *, ignore_thresh: float = 0.7, assignments=None):
    """The YOLOv3 loss (darknet's gradients as a function; see the module docstring).

    Parameters
    ----------
    preds : list of L arrays, shape (B, A, H_l, W_l, 5 + K)
        Raw outputs ``(tx, ty, tw, th, obj, cls...)``.
    gt_boxes : list of B arrays, shape (M_b, 4)
        xyxy pixels of the network input.
    gt_labels : list of B int arrays, shape (M_b,)
    anchors : ndarray, shape (L, A, 2)
        Pixels.
    strides : sequence of float, length L
    image_size : (H, W)
        Network input size (normalises ``scale = 2 - w h``).
    ignore_thresh : float
        darknet's 0.7.
    assignments : list of B lists of L YOLOv3LevelTargets, optional
        Precomputed :func:`refdet.yolo.targets.yolov3_assign` results (default: computed from the
        detached decoded predictions).

    Returns
    -------
    loss : YOLOLoss
        ``loss = box + obj + cls`` (sums over the batch).
    cache
    """
    from refdet.yolo.decode import yolov3_decode_forward

    a = _common.floats(anchors, "anchors")
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"`anchors` must have shape (L, A, 2); got {a.shape}")
    P, dt = _levels(preds, a.shape[1])
    L = len(P)
    if a.shape[0] != L:
        raise ValueError(f"`anchors` must have one row per level of `preds` ({L}); got {a.shape[0]}")
    st = _common.as_strides(strides, L)
    ih, iw = _checks.check_image_size(image_size)
    B, A = P[0].shape[:2]
    K = P[0].shape[-1] - 5
    gt_boxes = _checks.check_sequence(gt_boxes, "gt_boxes", "a list of one (M, 4) array per image")
    gt_labels = _checks.check_sequence(gt_labels, "gt_labels", "a list of one (M,) array per image")
    if assignments is not None:
        assignments = _checks.check_sequence(assignments, "assignments", "a list (per image) of lists of levels")
    if len(gt_boxes) != B or len(gt_labels) != B:
        raise ValueError(f"`gt_boxes` and `gt_labels` must hold one entry per image ({B}); "
                         f"got {len(gt_boxes)} and {len(gt_labels)}")
    sizes = [p.shape[2:4] for p in P]
    T = dt.type
    if assignments is None:
        assignments = []
        for b in range(B):                                                       # a loop over images
            pbx = []
            for lvl, p in enumerate(P):
                box, _ = yolov3_decode_forward(p[b:b + 1, ..., :4], a[lvl], st[lvl])
                if not np.isfinite(box).all():
                    raise ValueError(f"`preds[{lvl}]` (image {b}) decodes to non-finite boxes: exp of a width or "
                                     f"height logit (max {float(p[b, ..., 2:4].max()):g}) overflows {dt}")
                pbx.append(_common.cxcywh_to_xyxy(box[0]))
            assignments.append(yolov3_assign(gt_boxes[b], gt_labels[b], a, st, sizes, num_classes=K,
                                             pred_boxes=pbx, ignore_thresh=ignore_thresh))
    elif len(assignments) != B:
        raise ValueError(f"`assignments` must hold one list of levels per image ({B}); got {len(assignments)}")
    box_l = obj_l = cls_l = T(0)
    grads = []
    for lvl, p in enumerate(P):
        gi = np.stack([assignments[b][lvl].gt_index for b in range(B)])          # (B, A, H, W)
        gbox = np.stack([assignments[b][lvl].boxes for b in range(B)]).astype(dt)
        glab = np.stack([assignments[b][lvl].labels for b in range(B)])
        pos, neg = gi >= 0, gi == -1
        d = np.zeros(p.shape, dt)
        sig, _ = _common.sigmoid(p[..., 4])
        bce1 = _common.bce_logits(p[..., 4], np.ones_like(sig))
        bce0 = _common.bce_logits(p[..., 4], np.zeros_like(sig))
        obj_l = obj_l + bce1[pos].sum(dtype=dt) + bce0[neg].sum(dtype=dt)
        d[..., 4] = np.where(pos, sig - 1, np.where(neg, sig, T(0)))
        bi, ai, yi, xi = np.nonzero(pos)
        if bi.size:
            g = gbox[bi, ai, yi, xi]
            gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
            gcx, gcy = (g[:, 0] + g[:, 2]) / T(2), (g[:, 1] + g[:, 3]) / T(2)
            txy = np.stack([gcx / T(st[lvl]) - xi.astype(dt), gcy / T(st[lvl]) - yi.astype(dt)], axis=1)
            with np.errstate(divide="ignore"):
                twh = np.log(np.stack([gw / a[lvl, ai, 0].astype(dt), gh / a[lvl, ai, 1].astype(dt)], axis=1))
            scale = T(2) - (gw / T(iw)) * (gh / T(ih))
            tp = p[bi, ai, yi, xi]                                               # (n, 5 + K)
            sxy, _ = _common.sigmoid(tp[:, :2])
            lxy = _common.bce_logits(tp[:, :2], txy).sum(axis=1)
            lwh = (T(0.5) * (tp[:, 2:4] - twh) ** 2).sum(axis=1)
            box_l = box_l + (scale * (lxy + lwh)).sum(dtype=dt)
            onehot = np.zeros((bi.size, K), dt)
            onehot[np.arange(bi.size), glab[bi, ai, yi, xi]] = 1
            cls_l = cls_l + _common.bce_logits(tp[:, 5:], onehot).sum(dtype=dt)
            sc, _ = _common.sigmoid(tp[:, 5:])
            d[bi, ai, yi, xi, :2] = scale[:, None] * (sxy - txy)
            d[bi, ai, yi, xi, 2:4] = scale[:, None] * (tp[:, 2:4] - twh)
            d[bi, ai, yi, xi, 5:] = sc - onehot
        grads.append(d)
    loss = YOLOLoss(np.asarray(box_l + obj_l + cls_l, dt), np.asarray(box_l, dt), np.asarray(obj_l, dt),
                    np.asarray(cls_l, dt))
    return loss, _LossCache("yolov3", dict(grads=grads, dt=dt, assignments=assignments))


def yolov3_loss_backward(dloss, cache):
    """Gradients of the raw outputs: ``scale (sigmoid(t) - t*)`` for x, y; ``scale (t - t*)`` for
    w, h; ``sigmoid(o) - [positive]`` for objectness (0 where ignored); ``sigmoid(c) - onehot`` for
    positives' classes -- darknet's ``-delta``. ``dloss``: a scalar for ``loss``, or a YOLOLoss-shaped
    tuple of four scalars. Returns YOLOLossGrads(dpreds)."""
    _check_cache(cache, "yolov3", "yolov3_loss_forward")
    dt = cache.parts["dt"]
    u = _upstream(dloss, YOLOLoss._fields, dt)
    gb, go, gc = u["loss"] + u["box"], u["loss"] + u["obj"], u["loss"] + u["cls"]
    out = []
    for d in cache.parts["grads"]:
        g = d.copy()
        g[..., :4] *= gb
        g[..., 4] *= go
        g[..., 5:] *= gc
        out.append(g)
    return YOLOLossGrads(out)


# ------------------------------------------------------------------------------------------------
# YOLOv5
# ------------------------------------------------------------------------------------------------

def yolov5_loss_forward(preds: Sequence, targets, anchors, strides: Sequence[float], *, anchor_t: float = 4.0,
                        balance: Optional[Sequence[float]] = None, box_gain: float = 0.05, obj_gain: float = 1.0,
                        cls_gain: float = 0.5, label_smoothing: float = 0.0, gr: float = 1.0,
                        sort_obj_iou: bool = False, build=None, obj_targets: Optional[Sequence] = None):
    """YOLOv5's ``ComputeLoss.__call__`` (v7.0), with its default hyperparameters.

    Per level ``i`` with ``n`` entries from :func:`refdet.yolo.targets.yolov5_build_targets`:

    * box: ``pxy = 2 sigmoid - 0.5``, ``pwh = (2 sigmoid)^2 * anchor`` (grid units), ``lbox +=
      mean(1 - CIoU(pbox, tbox))`` (YOLOv5's ``bbox_iou(xywh=True, CIoU=True)``);
    * objectness: target ``tobj[b, a, gj, gi] = (1 - gr) + gr * clamp(CIoU, 0)`` (detached; with
      ``sort_obj_iou`` entries are written in increasing IoU, stable; the last write wins),
      ``lobj += mean over all B*A*H*W of BCE(obj, tobj) * balance[i]``;
    * class (only when K > 1): ``lcls += mean over n*K of BCE(cls, t)``, ``t = 1 - eps/2`` at the
      label and ``eps/2`` elsewhere (``smooth_BCE``).

    Then ``box *= box_gain``, ``obj *= obj_gain``, ``cls *= cls_gain`` and ``loss = (box + obj + cls)
    * B``. YOLOv5's ``train.py`` rescales the gains by ``3 / nl``, ``nc / 80`` and ``(imgsz / 640)^2``
    before building the loss: pass the rescaled values. ``autobalance`` (a running state) is not
    reproduced: pass ``balance``.

    Parameters
    ----------
    preds : list of L arrays (B, A, H, W, 5 + K)
    targets : ndarray, shape (T, 6)
        ``(image, class, x, y, w, h)`` normalised.
    anchors : ndarray, shape (L, A, 2)
        Pixels (divided by the strides into YOLOv5's grid-unit ``m.anchors``).
    strides : sequence of float, length L
    anchor_t : float
    balance : sequence of L floats, optional
        Default ``[4.0, 1.0, 0.4]`` for 3 levels, else ``[4.0, 1.0, 0.25, 0.06, 0.02][:L]``.
    box_gain, obj_gain, cls_gain : float
        hyp.scratch-low: 0.05, 1.0, 0.5.
    label_smoothing : float
        ``eps`` in [0, 1].
    gr : float
        IoU ratio of the objectness target (1.0).
    sort_obj_iou : bool
    build : list of YOLOv5LevelTargets, optional
        Precomputed targets.
    obj_targets : list of L arrays (B, A, H, W), optional
        Objectness targets to use instead of the detached IoUs (they are constants of the backward
        pass; a gradient check must hold them fixed too, as ``cache.parts["levels"][i]["tobj"]``).

    Returns
    -------
    loss : YOLOLoss
        NaN (YOLOv5's own answer, documented) when a responsible prediction's width and height both
        decode to exactly 0 (``(2 sigmoid(t))^2`` underflows for logits below about -88 in float32):
        YOLOv5's ``bbox_iou(xywh=True, CIoU=True)`` has no eps on those heights, so its aspect term is
        ``atan(0 / 0)``.
    cache
    """
    a = _common.floats(anchors, "anchors")
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"`anchors` must have shape (L, A, 2); got {a.shape}")
    P, dt = _levels(preds, a.shape[1])
    L = len(P)
    if a.shape[0] != L:
        raise ValueError(f"`anchors` must have one row per level of `preds` ({L}); got {a.shape[0]}")
    st = _common.as_strides(strides, L)
    T = dt.type
    B, A = P[0].shape[:2]
    K = P[0].shape[-1] - 5
    if balance is None:
        balance = [4.0, 1.0, 0.4] if L == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][:L]
    balance = _checks.check_sequence(balance, "balance", "a list of one weight per level")
    sort_obj_iou = _checks.check_bool(sort_obj_iou, "sort_obj_iou")
    bal = [_checks.check_real(v, f"balance[{i}]") for i, v in enumerate(balance)]
    if len(bal) != L:
        raise ValueError(f"`balance` must give one weight per level ({L}); got {len(bal)}")
    eps = _checks.check_probability(label_smoothing, "label_smoothing")
    gr = _checks.check_probability(gr, "gr")
    cp, cn = T(1.0 - 0.5 * eps), T(0.5 * eps)
    gains = [_checks.check_real(v, n) for v, n in ((box_gain, "box_gain"), (obj_gain, "obj_gain"),
                                                   (cls_gain, "cls_gain"))]
    ag = (a.astype(dt) / st.astype(dt)[:, None, None]).astype(dt)               # grid-unit anchors
    if build is None:
        tg = _common.floats(targets, "targets").astype(dt, copy=False)
        build = yolov5_build_targets(tg, ag, [p.shape[2:4] for p in P], batch_size=B, anchor_t=anchor_t)
    else:
        build = _checks.check_sequence(build, "build", "a list of one YOLOv5LevelTargets per level")
        if len(build) != L:
            raise ValueError(f"`build` must hold one YOLOv5LevelTargets per level ({L}); got {len(build)}")
        for i, bt in enumerate(build):
            if not isinstance(bt, YOLOv5LevelTargets):
                raise TypeError(f"`build[{i}]` must be a YOLOv5LevelTargets (yolov5_build_targets); got "
                                f"{type(bt).__name__}")
    if obj_targets is not None:
        obj_targets = _checks.check_sequence(obj_targets, "obj_targets", "a list of one array per level")
        if len(obj_targets) != L:
            raise ValueError(f"`obj_targets` must hold one array per level ({L}); got {len(obj_targets)}")
        obj_targets = [_common.floats(o, f"obj_targets[{i}]").astype(dt, copy=False) for i, o in enumerate(obj_targets)]
        for i, (o, p) in enumerate(zip(obj_targets, P)):
            _common.check_shape(o, p.shape[:4], f"obj_targets[{i}]", "(B, A, H, W)")
    for bt in build:
        if bt.labels.size and bt.labels.max() >= K:
            raise ValueError(f"`targets` classes must be < K = {K} (the predictions' classes); got {bt.labels.max()}")
    lbox = lobj = lcls = T(0)
    parts = []
    for i, (p, bt) in enumerate(zip(P, build)):
        n = bt.image.shape[0]
        tobj = np.zeros(p.shape[:4], dt)
        lv = dict(n=n, idx=(bt.image, bt.anchor, bt.gy, bt.gx))
        if n:
            ps = p[bt.image, bt.anchor, bt.gy, bt.gx]                            # (n, 5 + K)
            sp, sq = _common.sigmoid(ps[:, :4])
            anc = bt.anchors.astype(dt)
            pxy = sp[:, :2] * T(2) - T(0.5)
            pwh = (sp[:, 2:4] * T(2)) ** 2 * anc
            pbox = np.concatenate([pxy, pwh], axis=1)
            iou, ccache = _common.ciou_pairs(pbox, bt.boxes.astype(dt), fmt="cxcywh", style="yolov5")
            lbox = lbox + (T(1) - iou).mean(dtype=dt)
            io = np.maximum(iou, T(0))
            b_, a_, y_, x_ = bt.image, bt.anchor, bt.gy, bt.gx
            if sort_obj_iou:
                j = np.argsort(io, kind="stable")
                b_, a_, y_, x_, io = b_[j], a_[j], y_[j], x_[j], io[j]
            if gr < 1:
                io = T(1.0 - gr) + T(gr) * io
            tobj[b_, a_, y_, x_] = io                                            # last write wins
            lv.update(sp=sp, sq=sq, anc=anc, ccache=ccache)
            if K > 1:
                t = np.full((n, K), cn, dt)
                t[np.arange(n), bt.labels] = cp
                lcls = lcls + _common.bce_logits(ps[:, 5:], t).mean(dtype=dt)
                sc, _ = _common.sigmoid(ps[:, 5:])
                lv.update(cls_t=t, cls_s=sc)
        if obj_targets is not None:
            tobj = obj_targets[i]
        so, _ = _common.sigmoid(p[..., 4])
        obji = _common.bce_logits(p[..., 4], tobj).mean(dtype=dt)
        lobj = lobj + obji * T(bal[i])
        lv.update(tobj=tobj, so=so, shape=p.shape)
        parts.append(lv)
    lbox, lobj, lcls = lbox * T(gains[0]), lobj * T(gains[1]), lcls * T(gains[2])
    loss = YOLOLoss(np.asarray((lbox + lobj + lcls) * T(B), dt), np.asarray(lbox, dt), np.asarray(lobj, dt),
                    np.asarray(lcls, dt))
    return loss, _LossCache("yolov5", dict(levels=parts, dt=dt, B=B, K=K, bal=bal, gains=gains, build=build))


def yolov5_loss_backward(dloss, cache):
    """Closed-form gradients of :func:`yolov5_loss_forward` w.r.t. each level's raw outputs.

    With ``G = gain * (B dL + d_item)`` per term:

    * box: ``-G_box / n * dCIoU/dpbox`` through ``dpxy/dt = 2 p (1 - p)``, ``dpwh/dt = 8 p * p (1 - p)
      * anchor``, accumulated where several entries share a prediction (indexing's backward adds);
    * objectness: ``G_obj * balance / (B A H W) * (sigmoid(o) - tobj)`` (``tobj`` constant);
    * class: ``G_cls / (n K) * (sigmoid(c) - t)``, accumulated likewise.

    ``dloss``: a scalar for ``loss``, or a YOLOLoss-shaped tuple. Returns YOLOLossGrads(dpreds).
    """
    _check_cache(cache, "yolov5", "yolov5_loss_forward")
    P = cache.parts
    dt = P["dt"]
    T = dt.type
    u = _upstream(dloss, YOLOLoss._fields, dt)
    B = T(P["B"])
    gb = T(P["gains"][0]) * (u["loss"] * B + u["box"])
    go = T(P["gains"][1]) * (u["loss"] * B + u["obj"])
    gc = T(P["gains"][2]) * (u["loss"] * B + u["cls"])
    out = []
    for i, lv in enumerate(P["levels"]):
        d = np.zeros(lv["shape"], dt)
        d[..., 4] = go * T(P["bal"][i]) * (lv["so"] - lv["tobj"]) / T(lv["tobj"].size)
        n = lv["n"]
        if n:
            dpbox, _ = _common.ciou_pairs_grad(np.full(n, -gb / T(n), dt), lv["ccache"])
            sp, sq = lv["sp"], lv["sq"]
            draw = np.empty((n, 4), dt)
            draw[:, :2] = dpbox[:, :2] * T(2) * sp[:, :2] * sq[:, :2]
            draw[:, 2:4] = dpbox[:, 2:4] * T(8) * sp[:, 2:4] * (sp[:, 2:4] * sq[:, 2:4]) * lv["anc"]
            b_, a_, y_, x_ = lv["idx"]
            np.add.at(d, (b_, a_, y_, x_, slice(0, 4)), draw)
            if "cls_t" in lv:
                np.add.at(d, (b_, a_, y_, x_, slice(5, None)),
                          gc * (lv["cls_s"] - lv["cls_t"]) / T(n * P["K"]))
        out.append(d)
    return YOLOLossGrads(out)


# ------------------------------------------------------------------------------------------------
# ultralytics v8
# ------------------------------------------------------------------------------------------------

def v8_detection_loss_forward(pred_dist, pred_scores, anchor_points, stride_tensor, gt_labels, gt_boxes,
                              gt_mask=None, *, reg_max: int = 16, box_gain: float = 7.5, cls_gain: float = 0.5,
                              dfl_gain: float = 1.5, topk: int = 10, alpha: float = 0.5, beta: float = 6.0,
                              strides: Optional[Sequence[float]] = None, image_size: Optional[Sequence] = None,
                              assignment: Optional[Assignment] = None):
    """ultralytics ``v8DetectionLoss`` (8.4): CIoU + DFL + BCE against task-aligned targets.

    1. Decode: ``pred_bboxes = dist2bbox(DFL(pred_dist), anchor_points)`` (grid units, xyxy).
    2. Assign: :func:`refdet.yolo.assign.task_aligned_assign` on ``sigmoid(pred_scores)``,
       ``pred_bboxes * stride`` and ``anchor_points * stride`` with ``topk = 10, alpha = 0.5,
       beta = 6`` (the loss's settings), detached.
    3. ``S = max(1, sum of target scores)``; ``cls = sum BCE(pred_scores, target_scores) / S``.
    4. Positives, weighted by their target score ``w``: ``box = sum((1 - CIoU(pred, target / stride))
       * w) / S`` (ultralytics' CIoU, :func:`refdet.yolo._common.ciou_pairs`); ``dfl = sum(
       mean over the 4 sides of DFL(pred_dist, bbox2dist(target, reg_max - 1)) * w) / S``
       (``reg_max = 1``: an L1 loss on distances normalised by the image size instead).
    5. ``loss = (7.5 box + 0.5 cls + 1.5 dfl) * B``; the items are the gained terms.

    Parameters
    ----------
    pred_dist : ndarray, shape (B, N, 4 * reg_max)
        Box logits (``preds["boxes"].permute(0, 2, 1)``), side-major.
    pred_scores : ndarray, shape (B, N, K)
        Class logits.
    anchor_points : ndarray, shape (N, 2)
        Grid units (:func:`refdet.yolo.anchors.make_anchors`).
    stride_tensor : ndarray, shape (N, 1) or (N,)
    gt_labels : ndarray of int, shape (B, M)
    gt_boxes : ndarray, shape (B, M, 4)
        xyxy pixels, padded.
    gt_mask : ndarray of bool, shape (B, M), optional
        Default: ultralytics' ``gt_boxes.sum(-1) > 0`` (so a real box whose coordinates sum to <= 0
        is dropped, as in ultralytics).
    reg_max : int
        >= 1.
    box_gain, cls_gain, dfl_gain : float
        ``hyp.box``, ``hyp.cls``, ``hyp.dfl``.
    topk, alpha, beta : TAL settings of the loss.
    strides : sequence of float, optional
        The model strides for TAL's minimum side (default: the distinct values of ``stride_tensor``
        in order).
    image_size : (H, W), optional
        Needed for ``reg_max = 1`` (ultralytics' ``imgsz``).
    assignment : Assignment, optional
        Precomputed TAL targets (for gradient checks).

    Returns
    -------
    loss : V8Loss
    cache
    """
    R = _common.check_reg_max(reg_max)
    pd = _common.floats(pred_dist, "pred_dist")
    if pd.ndim != 3 or pd.shape[-1] != 4 * R:
        raise ValueError(f"`pred_dist` must have shape (B, N, 4 * reg_max = {4 * R}) (`reg_max` = {R}); got {pd.shape}")
    B, N = pd.shape[:2]
    sc = _common.floats(pred_scores, "pred_scores")
    if sc.ndim != 3 or sc.shape[:2] != (B, N):
        raise ValueError(f"`pred_scores` must have shape (B, N, K) = ({B}, {N}, K); got {sc.shape}")
    K = sc.shape[-1]
    ap = _common.floats(anchor_points, "anchor_points")
    _common.check_shape(ap, (N, 2), "anchor_points", "(N, 2)")
    sv = _common.floats(stride_tensor, "stride_tensor")
    if sv.ndim == 2 and sv.shape[1] == 1:
        sv = sv[:, 0]
    _common.check_shape(sv, (N,), "stride_tensor", "(N,) or (N, 1)")
    if (sv <= 0).any():
        raise ValueError("`stride_tensor` must be positive")
    dt = _common.common_dtype(pd, sc, ap, sv)
    pd, sc, ap, sv = _common.same_dtype(dt, pd, sc, ap, sv)
    T = dt.type
    gains = [_checks.check_real(v, n) for v, n in ((box_gain, "box_gain"), (cls_gain, "cls_gain"),
                                                   (dfl_gain, "dfl_gain"))]
    if gt_mask is None:
        gb_ = _common.floats(gt_boxes, "gt_boxes")
        gt_mask = gb_.sum(axis=-1) > 0 if gb_.ndim == 3 else None
    g, lab, gmask = _common.as_gt_batch(gt_boxes, gt_labels, gt_mask, num_classes=K)
    g = g.astype(dt, copy=False)
    if R == 1:
        if image_size is None:
            raise ValueError("`image_size` is required for reg_max = 1 (distances are normalised by it)")
        ih, iw = _checks.check_image_size(image_size)
    dist, dcache = dfl_forward(pd, reg_max=R)                                    # (B, N, 4) grid units
    pbox, bcache = dist2bbox_forward(dist, ap, out_fmt="xyxy")
    s2 = sv[:, None]
    if assignment is None:
        if strides is None:
            _, first = np.unique(sv, return_index=True)
            strides = sv[np.sort(first)]
        p_sig, _ = _common.sigmoid(sc)
        assignment = task_aligned_assign(p_sig, pbox * s2, ap * s2, lab, g, gmask, strides=strides,
                                         convention="ultralytics", topk=topk, alpha=alpha, beta=beta)
    elif not isinstance(assignment, Assignment) or assignment.gt_index.shape != (B, N):
        raise ValueError(f"`assignment` must be an Assignment of shape (B, N) = ({B}, {N})")
    ts = target_scores(assignment, K).astype(dt)                                # (B, N, K)
    tss = max(ts.sum(dtype=dt), T(1))
    bce = _common.bce_logits(sc, ts)
    cls_raw = bce.sum(dtype=dt) / tss
    fg = assignment.fg_mask
    w = assignment.quality[fg].astype(dt)                                        # target_scores[fg].sum(-1)
    tb = assignment.boxes.astype(dt) / s2                                        # target boxes, grid units
    box_raw = T(0)
    dfl_raw = T(0)
    parts = dict(dt=dt, B=B, R=R, gains=gains, fg=fg, w=w, tss=tss, ts=ts, dcache=dcache, bcache=bcache,
                 shape_sc=sc.shape, assignment=assignment)
    ps_sig, _ = _common.sigmoid(sc)
    parts["ps_sig"] = ps_sig
    if fg.any():
        ciou, ccache = _common.ciou_pairs(pbox[fg], tb[fg], fmt="xyxy", style="ultralytics")
        box_raw = ((T(1) - ciou) * w).sum(dtype=dt) / tss
        parts["ccache"] = ccache
        ap_b = np.broadcast_to(ap, (B, N, 2))
        if R > 1:
            tl = bbox2dist(ap_b[fg], tb[fg], reg_max=R - 1)                     # clamp to [0, R - 1.01]
            dl, dflc = distribution_focal_loss_forward(pd[fg].reshape(-1, 4, R), tl, convention="ultralytics")
            dfl_raw = (dl.mean(axis=-1) * w).sum(dtype=dt) / tss
            parts["dflc"] = dflc
        else:
            sf = sv[None, :, None] * np.ones((B, 1, 1), dt)
            tl = bbox2dist(ap_b[fg], tb[fg]) * sf[fg]
            pn = pd[fg] * sf[fg]
            norm = np.array([iw, ih, iw, ih], dtype=dt)
            tl, pn = tl / norm, pn / norm
            dfl_raw = (np.abs(pn - tl).mean(axis=-1) * w).sum(dtype=dt) / tss
            parts.update(l1_sign=np.sign(pn - tl), l1_scale=sf[fg] / norm)
    box, cls, dfl = box_raw * T(gains[0]), cls_raw * T(gains[1]), dfl_raw * T(gains[2])
    loss = V8Loss(np.asarray((box + cls + dfl) * T(B), dt), np.asarray(box, dt), np.asarray(cls, dt),
                  np.asarray(dfl, dt))
    return loss, _LossCache("v8", parts)


def v8_detection_loss_backward(dloss, cache):
    """Closed-form gradients of :func:`v8_detection_loss_forward` (targets constant).

    With ``G = gain * (B dL + d_item)`` per term and ``S`` the target-score sum:

    * ``dpred_scores = G_cls (sigmoid(z) - target_scores) / S``;
    * box: ``-G_box w / S * dCIoU/dpred_box``, through ``dist2bbox`` (``dl = -dx1``, ``dr = dx2``)
      and the DFL expectation (``dz_j = dd p_j (j - d)``);
    * DFL: ``G_dfl w / (4 S) * ((w_l + w_r) P - w_l e_l - w_r e_r)`` on each side's logits
      (``reg_max = 1``: ``G w / (4 S) sign(pred - target) * stride / image side``).

    ``dloss``: a scalar for ``loss`` or a V8Loss-shaped tuple. Returns V8LossGrads.
    """
    _check_cache(cache, "v8", "v8_detection_loss_forward")
    P = cache.parts
    dt = P["dt"]
    T = dt.type
    u = _upstream(dloss, V8Loss._fields, dt)
    B = T(P["B"])
    gbox = T(P["gains"][0]) * (u["loss"] * B + u["box"])
    gcls = T(P["gains"][1]) * (u["loss"] * B + u["cls"])
    gdfl = T(P["gains"][2]) * (u["loss"] * B + u["dfl"])
    tss = P["tss"]
    dscores = gcls * (P["ps_sig"] - P["ts"]) / tss
    fg, w, R = P["fg"], P["w"], P["R"]
    dbox_full = np.zeros(P["bcache"].shape, dt)
    dlogits = np.zeros(P["dcache"].shape, dt)
    if fg.any():
        db, _ = _common.ciou_pairs_grad(-gbox * w / tss, P["ccache"])
        dbox_full[fg] = db
        if R > 1:
            g = (gdfl * w / (T(4) * tss))[:, None] * np.ones((1, 4), dt)          # (n_fg, 4)
            dz = distribution_focal_loss_backward(g, P["dflc"]).dlogits          # (n_fg, 4, R)
            dlogits[fg] = dz.reshape(dz.shape[0], -1)
        else:
            dlogits[fg] = (gdfl * w / (T(4) * tss))[:, None] * P["l1_sign"] * P["l1_scale"]
    dd = dist2bbox_backward(dbox_full, P["bcache"]).ddistance
    dlogits = dlogits + dfl_backward(dd, P["dcache"]).dt
    return V8LossGrads(dlogits, dscores)
