"""Grid targets of the anchor-based YOLOs: YOLOv3's best anchor with an ignore threshold, YOLOv5's
ratio test with two neighbouring cells.

Anchor-based YOLOs predict, on level ``l`` (``H x W`` cells, stride ``s``), ``A`` boxes per cell,
one per anchor template ``(pw, ph)``. Their tensors are laid out ``(B, A, H, W, 5 + K)`` (YOLOv5's
``view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2)``): anchor-major, then row, then column -- not
refdet's ``(y, x, anchor)`` order of the two-stage detectors. The per-level dense targets here keep
that ``(A, H, W)`` layout.

* :func:`yolov3_assign` (darknet ``src/yolo_layer.c forward_yolo_layer``): each ground truth is
  given to the single anchor, over *all* levels' templates, whose shape overlaps it best
  (centre-aligned IoU, :func:`refdet.yolo.anchors.wh_iou`), at the cell containing its centre;
  predictions overlapping some ground truth by more than ``ignore_thresh`` are left out of the
  "no object" loss.
* :func:`yolov5_build_targets` (YOLOv5 ``utils/loss.py ComputeLoss.build_targets``): a ground truth
  goes to *every* template whose width and height ratios are within ``anchor_t`` (4), at its cell and
  at the two neighbouring cells nearest to its centre (left or right, up or down), so one object
  trains up to three cells per template and level.

The assignment of a YOLOv5 target is a list of entries (several may land on one cell); the dense
``gt_index`` view of a level keeps, per cell, the entry written last (what ``tobj[b, a, gj, gi] =
iou`` leaves with duplicate indices on the CPU, where writes happen in order).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet.yolo import _common
from refdet.yolo.anchors import wh_iou

__all__ = ["YOLOv3LevelTargets", "yolov3_assign", "YOLOv5LevelTargets", "yolov5_build_targets"]


def _anchor_levels(anchors, name="anchors"):
    a = _common.floats(anchors, name)
    if a.ndim != 3 or a.shape[-1] != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"`{name}` must have shape (L, A, 2) (templates per level); got {a.shape}")
    if (a <= 0).any():
        raise ValueError(f"`{name}` must hold positive widths and heights")
    return a


def _levels(feature_sizes, n):
    sizes = _checks.as_feature_sizes(feature_sizes)
    if len(sizes) != n:
        raise ValueError(f"`feature_sizes` must give one (H, W) per level of `anchors` ({n}); got {len(sizes)}")
    return sizes


# ------------------------------------------------------------------------------------------------
# YOLOv3 (darknet)
# ------------------------------------------------------------------------------------------------

class YOLOv3LevelTargets(NamedTuple):
    """Dense targets of one level, each of shape (A, H, W) (``boxes`` (A, H, W, 4)).

    Attributes
    ----------
    gt_index : int64
        Responsible ground truth; -1 "no object"; -2 ignored (best IoU of the
        prediction with any ground truth > ``ignore_thresh``, and not responsible).
    labels : int64
        Its class; ``num_classes`` elsewhere.
    boxes : float, shape (A, H, W, 4)
        The responsible ground truth (xyxy pixels); 0 elsewhere.
    quality : float
        1 for responsible predictions, 0 elsewhere (YOLOv3's objectness target).
    best_iou : float
        The prediction's best IoU with any ground truth (0 without ``pred_boxes``).
    """
    gt_index: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    quality: np.ndarray
    best_iou: np.ndarray


def yolov3_assign(gt_boxes, gt_labels, anchors, strides: Sequence[float], feature_sizes: Sequence, *,
                  num_classes: int, pred_boxes: Optional[Sequence] = None,
                  ignore_thresh: float = 0.7) -> List[YOLOv3LevelTargets]:
    """YOLOv3 assignment for one image, as darknet's ``forward_yolo_layer``.

    1. For every prediction (level ``l``, anchor ``a``, cell ``(j, i)``) with a predicted box, its
       best IoU with any ground truth; above ``ignore_thresh`` (strictly, darknet ``best_iou >
       l.ignore_thresh``; 0.7 in ``yolov3.cfg``, the paper says 0.5) the prediction is *ignored*:
       it gets no "no object" loss.
    2. Each ground truth ``m`` (in order) picks the template of largest centre-aligned IoU among all
       ``L * A`` templates (darknet's loop keeps the first strict maximum: the lowest flat index on a
       tie); if that template belongs to level ``l``, the cell ``(j, i) = (floor(cy / s),
       floor(cx / s))`` (clipped to the map; darknet's ``int`` cast reads outside it) of anchor ``a``
       becomes *responsible* for ``m``. A later ground truth landing on the same (anchor, cell)
       replaces an earlier one (darknet overwrites the deltas; its ``delta_yolo_class`` also keeps
       the earlier class as a second positive class, which refdet does not reproduce).

    Parameters
    ----------
    gt_boxes : ndarray, shape (M, 4)
        xyxy pixels of the network input.
    gt_labels : ndarray of int, shape (M,)
    anchors : ndarray, shape (L, A, 2)
        Templates per level in pixels (darknet's ``mask`` groups; YOLOv3: :data:`YOLOV3_ANCHORS`).
    strides : sequence of float, length L
    feature_sizes : sequence of (H, W), length L
    num_classes : int
    pred_boxes : sequence of L arrays of shape (A, H, W, 4), optional
        Decoded predictions (xyxy pixels) for the ignore rule; without them nothing is ignored.
    ignore_thresh : float

    Returns
    -------
    list of YOLOv3LevelTargets, one per level
    """
    a = _anchor_levels(anchors)
    L, A = a.shape[:2]
    st = _common.as_strides(strides, L)
    sizes = _levels(feature_sizes, L)
    K = _checks.check_int(num_classes, "num_classes", low=1, high=_checks.MAX_CLASSES)
    g = _checks.as_boxes(gt_boxes, "gt_boxes")
    if g.shape[0]:
        flipped = (g[:, 2] < g[:, 0]) | (g[:, 3] < g[:, 1])
        if flipped.any():
            i = int(np.flatnonzero(flipped)[0])
            raise ValueError(f"`gt_boxes` row {i} is flipped (x2 < x1 or y2 < y1): {g[i].tolist()}; its width and "
                             f"height pick the best anchor")
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0, high=K - 1)
    thr = _checks.check_unit_threshold(ignore_thresh, "ignore_thresh", source="darknet compares an IoU with it")
    dt = _common.common_dtype(g, a)
    preds = None
    if pred_boxes is not None:
        pred_boxes = _checks.check_sequence(pred_boxes, "pred_boxes", "a list of one array per level")
        if len(pred_boxes) != L:
            raise ValueError(f"`pred_boxes` must give one array per level ({L}); got {len(pred_boxes)}")
        preds = []
        for lvl, (pbx, (h, w)) in enumerate(zip(pred_boxes, sizes)):
            p = _common.floats(pbx, f"pred_boxes[{lvl}]")
            _common.check_shape(p, (A, h, w, 4), f"pred_boxes[{lvl}]", "(A, H, W, 4)")
            preds.append(p)
            dt = np.result_type(dt, p.dtype)
    g = g.astype(dt, copy=False)
    out = []
    for lvl, (h, w) in enumerate(sizes):
        shape = (A, h, w)
        best = np.zeros(shape, dt)
        gi = np.full(shape, -1, np.int64)
        if preds is not None and g.shape[0] and h * w:
            p = preds[lvl].reshape(-1, 4).astype(dt, copy=False)
            lt = np.maximum(p[:, None, :2], g[None, :, :2])
            rb = np.minimum(p[:, None, 2:], g[None, :, 2:])
            wh = np.maximum(rb - lt, 0)
            inter = wh[..., 0] * wh[..., 1]
            union = ((p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]))[:, None] + \
                ((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]))[None, :] - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
            best = iou.max(axis=1).reshape(shape).astype(dt)
            gi[best > thr] = -2
        out.append([gi, np.full(shape, K, np.int64), np.zeros(shape + (4,), dt), np.zeros(shape, dt), best])
    if g.shape[0]:
        gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
        flat = a.reshape(-1, 2).astype(dt)
        n_best = np.argmax(wh_iou(np.stack([gw, gh], axis=1), flat), axis=1)      # first maximum
        cx, cy = (g[:, 0] + g[:, 2]) / 2, (g[:, 1] + g[:, 3]) / 2
        for lvl, (h, w) in enumerate(sizes):                                     # a loop over levels
            mine = np.nonzero(n_best // A == lvl)[0]                             # gts in index order
            if mine.size == 0 or h * w == 0:
                continue
            ai = n_best[mine] % A
            ii = np.clip(np.floor(cx[mine] / st[lvl]).astype(np.int64), 0, w - 1)
            jj = np.clip(np.floor(cy[mine] / st[lvl]).astype(np.int64), 0, h - 1)
            gi_, lab_, box_, q_, _ = out[lvl]
            # fancy assignment writes in order: the last ground truth on a cell wins, as in darknet
            gi_[ai, jj, ii] = mine
            lab_[ai, jj, ii] = lab[mine]
            box_[ai, jj, ii] = g[mine]
            q_[ai, jj, ii] = 1
    return [YOLOv3LevelTargets(*o) for o in out]


# ------------------------------------------------------------------------------------------------
# YOLOv5
# ------------------------------------------------------------------------------------------------

class YOLOv5LevelTargets(NamedTuple):
    """Targets of one level: ``n`` entries (arrays of length n) and the dense view.

    Attributes
    ----------
    image, anchor, gy, gx : int64
        Where each entry trains (``indices`` of YOLOv5; gx, gy clamped
        to the map).
    gt_index : int64
        Row of ``targets`` the entry comes from.
    labels : int64
        Its class (``tcls``).
    boxes : (n, 4)
        ``tbox``: ``(gx - gi, gy - gj, gw, gh)`` in grid units, offsets from the
        *unclamped* cell (so in [-0.5, 1.5) for an entry inside the map).
    anchors : (n, 2)
        The template in grid units (``anch``).
    dense_gt_index : (B, A, H, W) int64
        Per prediction, the entry's ``gt_index`` written last
        (-1: no entry), i.e. the objectness target's owner.
    """
    image: np.ndarray
    anchor: np.ndarray
    gy: np.ndarray
    gx: np.ndarray
    gt_index: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    anchors: np.ndarray
    dense_gt_index: np.ndarray


# offsets of the five cells YOLOv5 may train: centre, left, up, right, down (times g = 0.5)
_OFF = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float64)


def yolov5_build_targets(targets, anchors, feature_sizes: Sequence, *, batch_size: Optional[int] = None,
                         anchor_t: float = 4.0, bias: float = 0.5,
                         max_elements: Optional[int] = None) -> List[YOLOv5LevelTargets]:
    """YOLOv5's ``ComputeLoss.build_targets``: ratio test and neighbouring cells, vectorised.

    Per level (``H x W``, templates ``anchors[l]`` in grid units):

    1. Scale the normalised targets to the grid: ``gxy = xy * (W, H)``, ``gwh = wh * (W, H)``.
    2. *Ratio test*: template ``a`` takes target ``t`` when ``max(r, 1/r) < anchor_t`` for both
       sides, ``r = gwh / anchor`` (strict; 4.0 by default) -- entries in (anchor, target) order.
    3. *Neighbours*: besides its own cell, an entry also trains the left cell when ``gx % 1 < 0.5``
       and ``gx > 1``, the upper cell when ``gy % 1 < 0.5`` and ``gy > 1``, the right cell when
       ``(W - gx) % 1 < 0.5`` and ``W - gx > 1``, the lower one likewise -- so two of the four at
       most (three cells in all); all thresholds strict. Entries are ordered centre, left, up,
       right, down, each block in step 2's order.
    4. Cell ``(gi, gj) = trunc(gxy - offset)`` (torch ``.long()``); ``tbox = (gxy - (gi, gj), gwh)``
       with the unclamped cell; the stored indices are clamped to the map.

    Parameters
    ----------
    targets : ndarray, shape (T, 6)
        ``(image, class, x, y, w, h)``, xywh normalised to [0, 1] (YOLOv5's label rows).
    anchors : ndarray, shape (L, A, 2)
        Templates in **grid units** of each level (YOLOv5's ``m.anchors``: pixels / stride).
    feature_sizes : sequence of (H, W), length L
    batch_size : int, optional
        For the dense view (default: 1 + the largest image index, or 1).
    max_elements : int, optional
        Cap on the dense views (``B * A * H * W`` per level; default
        :data:`refdet._checks.MAX_ELEMENTS`): more is a ValueError naming ``batch_size``.
    anchor_t : float
        > 1.
    bias : float
        YOLOv5's ``g = 0.5``: the neighbour cells' offset and the fractional threshold.

    Returns
    -------
    list of YOLOv5LevelTargets, one per level

    Notes
    -----
    YOLOv5 computes this in float32; pass float32 targets for its bits (``% 1`` and the ratios are
    then float32). The image index and class are truncated (``.long()``).
    """
    tg = _common.floats(targets, "targets")
    if tg.ndim != 2 or tg.shape[1] != 6:
        if tg.ndim == 1 and tg.shape[0] == 0:
            tg = tg.reshape(0, 6)
        else:
            raise ValueError(f"`targets` must have shape (T, 6) (image, class, x, y, w, h); got {tg.shape}")
    a = _anchor_levels(anchors)
    L, A = a.shape[:2]
    sizes = _levels(feature_sizes, L)
    at = _checks.check_real(anchor_t, "anchor_t")
    if at <= 1:
        raise ValueError(f"`anchor_t` must be > 1; got {at}")
    gb = _checks.check_probability(bias, "bias")
    img = np.trunc(tg[:, 0]).astype(np.int64)
    cls = np.trunc(tg[:, 1]).astype(np.int64)
    if img.size and img.min() < 0:
        raise ValueError(f"`targets[:, 0]` (image index) must be >= 0; got {img.min()}")
    if cls.size and cls.min() < 0:
        raise ValueError(f"`targets[:, 1]` (class) must be >= 0; got {cls.min()}")
    B = _checks.check_int(batch_size, "batch_size", low=1) if batch_size is not None else \
        (int(img.max()) + 1 if img.size else 1)
    if img.size and img.max() >= B:
        raise ValueError(f"`targets[:, 0]` (image index) must be < batch_size = {B}; got {img.max()}")
    _checks.check_allocation(B * a.shape[1] * sum(h * w for h, w in sizes), 8, "dense per-cell targets",
                             name="batch_size", limit=max_elements)
    dt = _common.common_dtype(tg, a)
    tg = tg.astype(dt, copy=False)
    T = dt.type
    g = T(gb)
    out = []
    for lvl, (h, w) in enumerate(sizes):                                         # a loop over levels
        anc = a[lvl].astype(dt)
        gain = np.array([w, h], dtype=dt)
        gxy_all = tg[:, 2:4] * gain                                              # (T, 2)
        gwh_all = tg[:, 4:6] * gain
        with np.errstate(divide="ignore", invalid="ignore"):
            r = gwh_all[None, :, :] / anc[:, None, :]                            # (A, T, 2)
            ok = np.maximum(r, T(1) / r).max(axis=2) < T(at)                     # (A, T)
        ai, ti = np.nonzero(ok)                                                  # anchor-major order
        gxy = gxy_all[ti]
        gxi = gain - gxy
        near_lo = ((gxy % T(1)) < g) & (gxy > T(1))                              # (n, 2): left, up
        near_hi = ((gxi % T(1)) < g) & (gxi > T(1))                              # right, down
        use = np.stack([np.ones(ai.shape, bool), near_lo[:, 0], near_lo[:, 1], near_hi[:, 0], near_hi[:, 1]])
        kind, ent = np.nonzero(use)                                              # kind-major order
        off = (_OFF * gb).astype(dt)[kind]                                       # (n', 2)
        gxy_e = gxy[ent]
        gij = np.trunc(gxy_e - off).astype(np.int64)                             # .long() truncates
        gi_, gj_ = gij[:, 0], gij[:, 1]
        t_idx = ti[ent]
        a_idx = ai[ent]
        boxes = np.concatenate([gxy_e - gij.astype(dt), gwh_all[t_idx]], axis=1)
        gx_c = np.clip(gi_, 0, max(w - 1, 0))
        gy_c = np.clip(gj_, 0, max(h - 1, 0))
        dense = np.full((B, A, h, w), -1, np.int64)
        if t_idx.size and h * w:
            dense[img[t_idx], a_idx, gy_c, gx_c] = t_idx                         # last write wins
        out.append(YOLOv5LevelTargets(img[t_idx], a_idx.astype(np.int64), gy_c, gx_c, t_idx.astype(np.int64),
                                      cls[t_idx], boxes, anc[a_idx], dense))
    return out
