"""Label assignment of the modern one-stage detectors: TAL, SimOTA, ATSS and DETR's Hungarian matcher.

Every assigner answers the same question -- which anchor (point, prior, query) learns which ground
truth, and how good a target it is -- and returns the same :class:`Assignment`::

    labels    (..., N) int64   class of the matched ground truth; ``num_classes`` (background) else
    gt_index  (..., N) int64   matched ground truth; -1 background (-2 ignored, YOLOv3 only)
    boxes     (..., N, 4)      the matched ground-truth box (xyxy), zeros for background
    quality   (..., N)         the soft target: TAL's normalised alignment, SimOTA's IoU, ATSS's IoU

``target_scores(a, num_classes)`` turns it into the ``(..., N, K)`` classification targets
(``one_hot(labels) * quality``) the quality-aware losses train against.

Ties and thresholds are part of each contract and written in each docstring. One rule recurs:
where a framework calls ``torch.topk``, whose order among equal values is unspecified (on the CPU it
follows the partition, not the index), refdet picks **the lowest index among equals**; where it
calls ``max``/``argmax``/``min`` (first extreme), refdet does the same. The YOLOv3 and YOLOv5 grid
assigners live in :mod:`refdet.yolo.targets`.

Sources: ultralytics 8.4 ``utils/tal.py TaskAlignedAssigner``; TOOD (arXiv:2108.07755) section 3.2;
YOLOX ``yolox/models/yolo_head.py get_assignments / simota_matching`` (main and v0.1) and mmdet v3
``task_modules/assigners/sim_ota_assigner.py``; ATSS (arXiv:1912.02424) and mmdet
``atss_assigner.py``; DETR ``models/matcher.py HungarianMatcher``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.iou import generalized_box_iou
from refdet.yolo import _common

__all__ = [
    "Assignment", "target_scores",
    "task_aligned_assign", "simota_assign", "atss_assign", "hungarian_match", "HungarianMatch",
]


class Assignment(NamedTuple):
    """Per-anchor targets (see the module docstring for the fields and their encodings)."""
    labels: np.ndarray
    gt_index: np.ndarray
    boxes: np.ndarray
    quality: np.ndarray

    @property
    def fg_mask(self) -> np.ndarray:
        """``gt_index >= 0``: the positives (foreground)."""
        return self.gt_index >= 0


def target_scores(assignment: Assignment, num_classes: int, *, max_elements: Optional[int] = None) -> np.ndarray:
    """``(..., N, K)`` soft classification targets: ``quality`` at the matched class, 0 elsewhere.

    This is ultralytics' ``target_scores`` (``one_hot(label) * fg * norm_align_metric``) for TAL and
    YOLOX's ``cls_target`` (``one_hot(class) * iou``) for SimOTA.
    """
    if not isinstance(assignment, Assignment):
        raise TypeError(f"`assignment` must be an Assignment; got {type(assignment).__name__}")
    k = _checks.check_int(num_classes, "num_classes", low=1)
    _checks.check_allocation(int(np.prod(assignment.labels.shape)) * k, 8, "one-hot target scores",
                             name="num_classes", limit=max_elements)
    lab = assignment.labels
    out = np.zeros(lab.shape + (k,), dtype=assignment.quality.dtype)
    fg = assignment.gt_index >= 0
    idx = np.nonzero(fg)
    out[idx + (lab[fg],)] = assignment.quality[fg]
    return out


def _empty(shape_bn, num_classes, dt):
    return Assignment(np.full(shape_bn, num_classes, np.int64), np.full(shape_bn, -1, np.int64),
                      np.zeros(shape_bn + (4,), dt), np.zeros(shape_bn, dt))


# ------------------------------------------------------------------------------------------------
# TaskAlignedAssigner (TOOD / ultralytics)
# ------------------------------------------------------------------------------------------------

def _check_min_side(v):
    if v is None or (isinstance(v, str) and v == "second_stride"):
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not v > 0:
        raise ValueError(f"`min_side` must be None, 'second_stride' or a positive number; got {v!r}")
    return float(v)


conventions.register("task_aligned_assign", {
    "ultralytics": {"topk": 13, "alpha": 1.0, "beta": 6.0, "eps": 1e-9, "overlap": "ciou",
                    "min_side": "second_stride"},
    "paper": {"topk": 13, "alpha": 1.0, "beta": 6.0, "eps": 1e-9, "overlap": "iou", "min_side": None},
}, knobs={
    "topk": conventions.integer("anchors with the largest alignment kept per ground truth", low=1,
                                source="TOOD sec. 3.2 (m = 13); ultralytics TaskAlignedAssigner(topk=13), "
                                       "v8DetectionLoss passes 10"),
    "alpha": conventions.number("exponent of the class score s in t = s^alpha u^beta", low=0.0, high=1e6,
                                source="TOOD eq. 2; ultralytics default 1.0, v8DetectionLoss passes 0.5"),
    "beta": conventions.number("exponent of the overlap u in t = s^alpha u^beta", low=0.0, high=1e6,
                               source="TOOD eq. 2 (beta = 6)"),
    "eps": conventions.number("margin of the strict centre-in-box test and of the normalisation's "
                              "denominator", low=0.0, source="ultralytics utils/tal.py (1e-9)"),
    "overlap": conventions.choice(("ciou", "iou"), "u: CIoU clamped at 0 (ultralytics iou_calculation) or IoU "
                                  "(the paper)", source="ultralytics utils/tal.py iou_calculation"),
    "min_side": conventions.option("ground-truth sides shorter than this are enlarged about the centre "
                                   "before the centre-in-box test ('second_stride' = strides[1])",
                                   check=_check_min_side, allow_none=True,
                                   source="ultralytics utils/tal.py select_candidates_in_gts (stride_val)"),
}, doc="ultralytics 8.4 utils/tal.py TaskAlignedAssigner; TOOD arXiv:2108.07755 section 3.2.")


def _pairs_overlap(kind, gt, pd):
    """u of matched (gt, pred) pairs, (P, 4) xyxy each: CIoU clamped at 0 or plain IoU."""
    if kind == "ciou":
        c, _ = _common.ciou_pairs(gt, pd, fmt="xyxy", style="ultralytics", eps=1e-7)
        return np.maximum(c, c.dtype.type(0))
    return _common.box_iou_pairs(gt, pd)


def _group_starts(keys, n_groups):
    """Index of the first element of each group in a sorted key array, (n_groups + 1,)."""
    return np.searchsorted(keys, np.arange(n_groups + 1))


@conventions.documented("task_aligned_assign")
def task_aligned_assign(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask=None, *,
                        strides: Sequence[float] = (8, 16, 32), convention="ultralytics",
                        topk: Optional[int] = None, alpha: Optional[float] = None,
                        beta: Optional[float] = None, eps: Optional[float] = None,
                        overlap: Optional[str] = None, min_side=None) -> Assignment:
    """Task-aligned assignment (TOOD), exactly as ultralytics' ``TaskAlignedAssigner``.

    For image ``b``, ground truth ``m`` and anchor point ``a``:

    1. *Candidates*: valid ground truths whose box contains the point strictly,
       ``min(ax - x1, ay - y1, x2 - ax, y2 - ay) > eps``. ultralytics first enlarges sides shorter
       than ``strides[1]`` to ``strides[1]`` about the box centre (``min_side="second_stride"``;
       boxes go through ``xyxy -> xywh -> xyxy`` as in its code).
    2. *Alignment* of candidate pairs: ``t = s^alpha * u^beta`` with ``s`` the predicted score of the
       ground truth's class and ``u`` the overlap of the predicted box with the ground truth (CIoU
       clamped at 0; ``overlap="iou"`` for the paper). Other pairs have ``t = 0`` and ``u = 0``.
    3. *Top-k*: per ground truth, the ``topk`` largest ``t`` over **all** N points; among equal ``t``
       the lowest anchor index wins (``torch.topk`` leaves this order unspecified: with fewer than
       ``topk`` positive alignments, which zero-alignment points fill the list is arbitrary in
       ultralytics; refdet's rule makes it the lowest indices). Selected candidates are positive.
    4. *Claimed twice*: a point positive for several ground truths keeps only the ground truth of
       largest ``u`` over **all** ground truths of the image (``overlaps.max(1)``, first maximum;
       when every ``u`` of that point is 0 this is ground truth 0, which ultralytics then assigns
       even though its alignment is 0 -- reproduced).
    5. *Quality*: ``t * max_a(u over the gt's positives) / (max_a(t over the gt's positives) + eps)``
       -- each ground truth's best positive gets its best overlap as target score.

    Parameters
    ----------
    pred_scores : ndarray, shape (B, N, K)
        Class probabilities (sigmoid of the logits), in [0, 1].
    pred_boxes : ndarray, shape (B, N, 4)
        Decoded predicted boxes, xyxy pixels.
    anchor_points : ndarray, shape (N, 2)
        Points in pixels (``make_anchors`` points times their stride).
    gt_labels : ndarray of int, shape (B, M) (or (B, M, 1))
    gt_boxes : ndarray, shape (B, M, 4)
        xyxy pixels, padded per image.
    gt_mask : ndarray of bool, shape (B, M) (or (B, M, 1)), optional
        Which rows are real ground truths (default: all).
    strides : sequence of float
        The model's strides; only ``strides[1]`` (``strides[0]`` with one level) is used, by
        ``min_side="second_stride"``.
    convention : {"ultralytics", "paper"}
    topk, alpha, beta, eps, overlap, min_side
        Override the profile (table below).

    Returns
    -------
    Assignment
        Fields of shape (B, N) / (B, N, 4). ``labels`` is ``K`` and ``boxes`` 0 for background
        (ultralytics fills background with ground truth 0's label and box; its losses never read
        them).

    Notes
    -----
    Vectorised over images, ground truths and points: the candidate pairs (step 1) are the only
    pairs whose overlap is computed, as in ultralytics. ``refdet.reference.yolo.task_aligned_assign``
    is the loop version held equal to this one. No NaN is accepted in scores or boxes (it would
    poison the top-k).
    """
    s = conventions.resolve("task_aligned_assign", convention, topk=topk, alpha=alpha, beta=beta, eps=eps,
                            overlap=overlap, min_side=min_side)
    ps = _common.floats(pred_scores, "pred_scores")
    if ps.ndim != 3:
        raise ValueError(f"`pred_scores` must have shape (B, N, K); got {ps.shape}")
    B, N, K = ps.shape
    pb = _common.floats(pred_boxes, "pred_boxes")
    _common.check_shape(pb, (B, N, 4), "pred_boxes", "(B, N, 4)")
    ap = _common.floats(anchor_points, "anchor_points")
    _common.check_shape(ap, (N, 2), "anchor_points", "(N, 2)")
    g, lab, gmask = _common.as_gt_batch(gt_boxes, gt_labels, gt_mask, num_classes=K)
    if g.shape[0] != B:
        raise ValueError(f"`gt_boxes` must have batch size {B} (that of `pred_scores`); got {g.shape[0]}")
    M = g.shape[1]
    dt = _common.common_dtype(ps, pb, ap, g)
    ps, pb, ap, g = _common.same_dtype(dt, ps, pb, ap, g)
    T = dt.type
    if M == 0 or N == 0 or B == 0:
        return _empty((B, N), K, dt)
    st = _checks.as_positive_vector(strides, "strides")

    # 1. candidates: point strictly inside the (possibly enlarged) box
    gb = g
    if s.min_side is not None:
        side = (st[1] if st.shape[0] > 1 else st[0]) if s.min_side == "second_stride" else s.min_side
        xywh = _common.xyxy_to_cxcywh(g)
        small = (xywh[..., 2:] < T(side)) & gmask[..., None]                     # (B, M, 2)
        xywh[..., 2:] = np.where(small, T(side), xywh[..., 2:])
        gb = _common.cxcywh_to_xyxy(xywh)
    e = T(s.eps)
    ax, ay = ap[:, 0], ap[:, 1]
    inside = (ax - gb[..., 0, None]) > e                                         # (B, M, N)
    inside &= (ay - gb[..., 1, None]) > e
    inside &= (gb[..., 2, None] - ax) > e
    inside &= (gb[..., 3, None] - ay) > e
    inside &= gmask[..., None]
    bi, mi, ai = np.nonzero(inside)                                              # sorted by (b, m, a)

    # 2. alignment of candidate pairs
    sc = ps[bi, ai, lab[bi, mi]]
    u = _pairs_overlap(s.overlap, g[bi, mi], pb[bi, ai])
    t = _common.torch_pow(sc, s.alpha) * _common.torch_pow(u, s.beta)

    # 3. top-k per ground truth over the whole row (zeros elsewhere), lowest index among equals
    grp = bi * M + mi                                                            # (P,), non-decreasing
    G = B * M
    start = _group_starts(grp, G)
    order = np.lexsort((ai, -t, grp))                                            # desc t, asc index
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0]) - start[grp[order]]
    posv = t > 0
    cpos = np.concatenate([[0], np.cumsum(posv)])
    n_pos = cpos[start[1:]] - cpos[start[:-1]]                                   # positive t per gt
    k = min(int(s.topk), N)
    # a zero-alignment point ranks after all positive ones, then by index among the zeros
    zeros_before = ai - (cpos[np.arange(ai.shape[0])] - cpos[start[grp]])
    sel = np.where(posv, rank < k, n_pos[grp] + zeros_before < k)
    pb_i, pm_i, pa_i = bi[sel], mi[sel], ai[sel]

    # 4. anchors claimed by several ground truths keep the largest overlap over all ground truths
    flat = pb_i * N + pa_i
    count = np.bincount(flat, minlength=B * N)
    gt_of = np.full(B * N, -1, np.int64)
    single = count[flat] == 1
    gt_of[flat[single]] = pm_i[single]
    multi = np.nonzero(count > 1)[0]
    if multi.size:
        key = bi * N + ai                                                        # every candidate pair
        is_m = count[key] > 1
        kb, km, ku = key[is_m], mi[is_m], u[is_m]
        o = np.lexsort((km, -ku, kb))                                            # per anchor: max u, low m
        kb, km, ku = kb[o], km[o], ku[o]
        first = np.concatenate([[True], kb[1:] != kb[:-1]])
        best_m = np.where(ku[first] > 0, km[first], 0)                           # all-zero column -> gt 0
        gt_of[kb[first]] = best_m

    # 5. normalised alignment of the final positives
    fg_flat = np.nonzero(gt_of >= 0)[0]
    fb, fa = fg_flat // N, fg_flat % N
    fm = gt_of[fg_flat]
    fkey = (fb * M + fm) * N + fa
    ckey = (bi * M + mi) * N + ai                                                # sorted ascending
    loc = np.searchsorted(ckey, fkey)
    found = (loc < ckey.shape[0]) & (ckey[np.minimum(loc, max(ckey.shape[0] - 1, 0))] == fkey) \
        if ckey.shape[0] else np.zeros(fkey.shape, bool)
    loc = np.minimum(loc, max(ckey.shape[0] - 1, 0))
    ft = np.where(found, t[loc] if t.shape[0] else T(0), T(0)).astype(dt)
    fu = np.where(found, u[loc] if u.shape[0] else T(0), T(0)).astype(dt)
    fg_grp = fb * M + fm
    max_t = np.zeros(G, dt)
    max_u = np.zeros(G, dt)
    np.maximum.at(max_t, fg_grp, ft)
    np.maximum.at(max_u, fg_grp, fu)
    q = (ft * max_u[fg_grp]) / (max_t[fg_grp] + e)

    out = _empty((B, N), K, dt)
    gi = out.gt_index.reshape(-1)
    gi[fg_flat] = fm
    out.labels.reshape(-1)[fg_flat] = lab[fb, fm]
    out.boxes.reshape(-1, 4)[fg_flat] = g[fb, fm]
    out.quality.reshape(-1)[fg_flat] = q
    return out


# ------------------------------------------------------------------------------------------------
# SimOTA (YOLOX)
# ------------------------------------------------------------------------------------------------

conventions.register("simota_assign", {
    "yolox": {"center_radius": 1.5, "candidates": "center", "inf_cost": 1e6, "iou_eps": 1e-8},
    "paper": {"center_radius": 2.5, "candidates": "box_or_center", "inf_cost": 1e5, "iou_eps": 1e-8},
    "mmdet": {"center_radius": 2.5, "candidates": "box_or_center", "inf_cost": 1e8, "iou_eps": 1e-7},
}, knobs={
    "center_radius": conventions.number("half side, in strides, of the square around the gt centre that a "
                                        "point must fall in", low=0.0,
                                        source="YOLOX get_geometry_constraint (1.5; v0.1 get_in_boxes_info 2.5)"),
    "candidates": conventions.choice(("center", "box_or_center"),
                                     "which points enter the cost matrix: inside some centre square, or "
                                     "inside some box or centre square (then a pair outside box AND square "
                                     "pays inf_cost)", source="YOLOX v0.1 get_in_boxes_info; mmdet SimOTAAssigner"),
    "inf_cost": conventions.number("cost added to pairs outside the geometric prior", low=0.0,
                                   source="YOLOX main 1e6, v0.1 1e5; mmdet INF = 1e8"),
    "iou_eps": conventions.number("eps in the IoU cost -log(IoU + eps)", low=0.0,
                                  source="YOLOX 1e-8; mmdet EPS = 1e-7"),
}, doc="YOLOX yolox/models/yolo_head.py (main: get_geometry_constraint, simota_matching; v0.1: "
       "get_in_boxes_info, dynamic_k_matching); mmdet v3 sim_ota_assigner.py.")


def _iou_matrix(a, b):
    """Plain IoU (M, P) of xyxy boxes (YOLOX bboxes_iou: 0 where the boxes do not overlap)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    en = np.all(lt < rb, axis=-1)
    wh = rb - lt
    inter = wh[..., 0] * wh[..., 1] * en
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(a.dtype)


def _bce_prob(p, t):
    """torch ``F.binary_cross_entropy(p, t)``: logs clamped at -100."""
    with np.errstate(divide="ignore"):
        lp = np.maximum(np.log(p), -100.0)
        lq = np.maximum(np.log1p(-p), -100.0)
    return -(t * lp + (1 - t) * lq)


@conventions.documented("simota_assign")
def simota_assign(pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes, *, convention="yolox",
                  center_radius: Optional[float] = None, candidates: Optional[str] = None,
                  inf_cost: Optional[float] = None, iou_eps: Optional[float] = None,
                  candidate_topk: int = 10, iou_weight: float = 3.0, cls_weight: float = 1.0) -> Assignment:
    """SimOTA (YOLOX): dynamic-k matching on a classification + IoU cost, for one image.

    1. *Geometry*: point ``a`` (a cell centre ``(x + 0.5) * stride``) is near ground truth ``m``
       when it lies strictly inside the square of half side ``center_radius * stride_a`` around the
       box centre (and, for ``candidates="box_or_center"``, ``in box`` = strictly inside the box).
       Candidate points: near some ground truth (``"center"``), or inside some box or near some
       centre (``"box_or_center"``). Only candidates are matched.
    2. *Cost* (M, P) over candidates: ``cls_weight * sum_k BCE(sqrt(p_ak), onehot_mk)
       + iou_weight * -log(IoU_ma + iou_eps) + inf_cost * [pair outside the prior]`` where the prior
       is "near the centre" (``"center"``) or "in the box and near the centre" (``"box_or_center"``).
       ``BCE`` is torch's ``binary_cross_entropy`` (logs clamped at -100).
    3. *Dynamic k*: ``k_m = max(1, int(sum of the top-min(candidate_topk, P) IoUs of m))``
       (truncation); ground truth ``m`` takes its ``k_m`` cheapest candidates (equal costs: lowest
       index first).
    4. A point taken by several ground truths keeps the cheapest (first minimum: lowest gt index).
    5. ``quality`` = IoU of the point's predicted box with its ground truth (YOLOX's
       ``pred_ious_this_matching``, the class target).

    Parameters
    ----------
    pred_scores : ndarray, shape (N, K)
        Joint probabilities ``sigmoid(cls) * sigmoid(obj)`` (YOLOX multiplies before the sqrt).
    pred_boxes : ndarray, shape (N, 4)
        Decoded predictions, xyxy pixels.
    points : ndarray, shape (N, 2)
        Cell centres in pixels, ``(grid + 0.5) * stride``.
    strides : ndarray, shape (N,)
        Stride of each point.
    gt_labels : ndarray of int, shape (M,)
    gt_boxes : ndarray, shape (M, 4)
        xyxy pixels (YOLOX keeps cxcywh; the centre is ``(x1 + x2) / 2``).
    convention : {"yolox", "paper", "mmdet"}
    candidate_topk, iou_weight, cls_weight
        YOLOX's 10, 3.0 and 1.0.

    Returns
    -------
    Assignment
        Fields of shape (N,) / (N, 4).
    """
    s = conventions.resolve("simota_assign", convention, center_radius=center_radius, candidates=candidates,
                            inf_cost=inf_cost, iou_eps=iou_eps)
    ps = _common.floats(pred_scores, "pred_scores", ndim=2)
    N, K = ps.shape
    pb = _common.floats(pred_boxes, "pred_boxes")
    _common.check_shape(pb, (N, 4), "pred_boxes", "(N, 4)")
    pts = _common.floats(points, "points")
    _common.check_shape(pts, (N, 2), "points", "(N, 2)")
    st = _common.floats(strides, "strides")
    _common.check_shape(st, (N,), "strides", "(N,)")
    if (st <= 0).any():
        raise ValueError("`strides` must be positive")
    if ps.size and (ps.min() < 0 or ps.max() > 1):
        raise ValueError("`pred_scores` must be probabilities in [0, 1]")
    g = _checks.as_boxes(gt_boxes, "gt_boxes")
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0, high=K - 1)
    ctopk = _checks.check_int(candidate_topk, "candidate_topk", low=1)
    wi = _checks.check_positive(iou_weight, "iou_weight", strict=False)
    wc = _checks.check_real(cls_weight, "cls_weight")
    dt = _common.common_dtype(ps, pb, pts, st, g)
    ps, pb, pts, st, g = _common.same_dtype(dt, ps, pb, pts, st, g)
    M = g.shape[0]
    out = _empty((N,), K, dt)
    if M == 0 or N == 0:
        return out
    T = dt.type
    cx, cy = (g[:, 0] + g[:, 2]) / T(2), (g[:, 1] + g[:, 3]) / T(2)
    r = st * T(s.center_radius)                                                  # (N,)
    px, py = pts[:, 0], pts[:, 1]
    near = ((px - (cx[:, None] - r)) > 0) & (((cx[:, None] + r) - px) > 0) \
        & ((py - (cy[:, None] - r)) > 0) & (((cy[:, None] + r) - py) > 0)        # (M, N)
    if s.candidates == "center":
        cand = near.any(axis=0)
        prior = near
    else:
        inbox = ((px - g[:, 0, None]) > 0) & ((g[:, 2, None] - px) > 0) \
            & ((py - g[:, 1, None]) > 0) & ((g[:, 3, None] - py) > 0)
        cand = inbox.any(axis=0) | near.any(axis=0)
        prior = inbox & near
    ci = np.nonzero(cand)[0]                                                     # (P,)
    P = ci.shape[0]
    if P == 0:
        return out
    prior = prior[:, ci]
    iou = _iou_matrix(g, pb[ci])                                                 # (M, P)
    onehot = np.zeros((M, K), dt)
    onehot[np.arange(M), lab] = 1
    sq = np.sqrt(ps[ci])                                                         # (P, K)
    # sum_k BCE(sqrt p_k, onehot_k) = sum_k BCE(sqrt p_k, 0) - BCE(.,0)[label] + BCE(.,1)[label]
    bce0 = _bce_prob(sq, T(0)).astype(dt)                                        # (P, K)
    bce1 = _bce_prob(sq, T(1)).astype(dt)
    cls_cost = bce0.sum(axis=1)[None, :] - bce0[:, lab].T + bce1[:, lab].T       # (M, P)
    with np.errstate(divide="ignore"):
        iou_cost = -np.log(iou + T(s.iou_eps))
    cost = T(wc) * cls_cost + T(wi) * iou_cost + T(s.inf_cost) * (~prior)

    # dynamic k: one small top-k per ground truth (a loop over the M ground truths, as YOLOX)
    nk = min(ctopk, P)
    top_iou = -np.sort(-iou, axis=1)[:, :nk]
    ks = np.maximum(top_iou.sum(axis=1).astype(np.int64), 1)                     # int() truncates
    match = np.zeros((M, P), bool)
    order = np.argsort(cost, axis=1, kind="stable")                              # cheapest, low index first
    for m in range(M):
        match[m, order[m, :ks[m]]] = True
    many = match.sum(axis=0) > 1
    if many.any():
        best = np.argmin(cost[:, many], axis=0)                                  # first minimum
        match[:, many] = False
        match[best, np.nonzero(many)[0]] = True
    fg = match.any(axis=0)
    gm = np.argmax(match[:, fg], axis=0)
    idx = ci[fg]
    out.gt_index[idx] = gm
    out.labels[idx] = lab[gm]
    out.boxes[idx] = g[gm]
    out.quality[idx] = iou[gm, np.nonzero(fg)[0]]
    return out


# ------------------------------------------------------------------------------------------------
# ATSS
# ------------------------------------------------------------------------------------------------

def atss_assign(anchors, num_level_anchors: Sequence[int], gt_labels, gt_boxes, *, num_classes: int,
                topk: int = 9, center_eps: float = 0.01, ddof: int = 1) -> Assignment:
    """Adaptive training sample selection (ATSS), for one image.

    1. Per level and ground truth, the ``min(topk, n_level)`` anchors whose centres are closest (L2)
       to the box centre are candidates (equal distances: lowest anchor index first).
    2. Threshold ``t_m = mean + std`` of the candidates' IoUs with ``m`` (``std`` with ``ddof = 1``,
       torch's unbiased ``.std()`` as the official code and mmdet; one candidate gives NaN and no
       positive).
    3. Positive: candidate with ``IoU >= t_m`` (inclusive) whose centre lies inside the box with
       ``min(cx - x1, cy - y1, x2 - cx, y2 - cy) > center_eps`` (0.01, strict).
    4. An anchor positive for several ground truths takes the one of highest IoU (first maximum:
       lowest gt index).

    Parameters
    ----------
    anchors : ndarray, shape (N, 4)
        xyxy, levels concatenated in order.
    num_level_anchors : sequence of int
        Anchors per level, summing to N.
    gt_labels : ndarray of int, shape (M,)
    gt_boxes : ndarray, shape (M, 4)
    num_classes : int
        The background label.
    topk : int
        Candidates per level (paper: 9).
    center_eps : float
    ddof : {0, 1}
        Degrees of freedom of the standard deviation (the paper does not say; the code uses 1).

    Returns
    -------
    Assignment
        ``quality`` is the IoU of the anchor with its ground truth (the statistic ATSS thresholds).
        IoU is mmdet's ``bbox_overlaps`` (union clamped to >= 1e-6).
    """
    a = _checks.as_boxes(anchors, "anchors")
    g = _checks.as_boxes(gt_boxes, "gt_boxes")
    K = _checks.check_int(num_classes, "num_classes", low=1, high=_checks.MAX_CLASSES)
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0, high=K - 1)
    k = _checks.check_int(topk, "topk", low=1)
    num_level_anchors = _checks.check_sequence(num_level_anchors, "num_level_anchors", "a list of one count per level")
    ce = _checks.check_real(center_eps, "center_eps")
    ddof = _checks.check_int(ddof, "ddof", low=0, high=1)
    nl = [_checks.check_int(v, f"num_level_anchors[{i}]", low=0) for i, v in enumerate(num_level_anchors)]
    if sum(nl) != a.shape[0]:
        raise ValueError(f"`num_level_anchors` must sum to the number of anchors ({a.shape[0]}); got {sum(nl)}")
    dt = _common.common_dtype(a, g)
    a, g = _common.same_dtype(dt, a, g)
    N, M = a.shape[0], g.shape[0]
    out = _empty((N,), K, dt)
    if N == 0 or M == 0:
        return out
    T = dt.type
    # IoU (N, M), mmdet bbox_overlaps: union clamped to eps = 1e-6
    lt = np.maximum(a[:, None, :2], g[None, :, :2])
    rb = np.minimum(a[:, None, 2:], g[None, :, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    iou = inter / np.maximum(area_a[:, None] + area_g[None, :] - inter, T(1e-6))
    acx, acy = (a[:, 0] + a[:, 2]) / T(2), (a[:, 1] + a[:, 3]) / T(2)
    gcx, gcy = (g[:, 0] + g[:, 2]) / T(2), (g[:, 1] + g[:, 3]) / T(2)
    dist = np.sqrt((acx[:, None] - gcx[None, :]) ** 2 + (acy[:, None] - gcy[None, :]) ** 2)  # (N, M)
    cand = []
    s0 = 0
    for n_l in nl:                                                               # a loop over levels
        if n_l:
            kk = min(k, n_l)
            o = np.argsort(dist[s0:s0 + n_l], axis=0, kind="stable")[:kk]        # (kk, M)
            cand.append(o + s0)
        s0 += n_l
    cand = np.concatenate(cand, axis=0)                                          # (C, M)
    cols = np.arange(M)[None, :]
    ciou = iou[cand, cols]                                                       # (C, M)
    with np.errstate(invalid="ignore", divide="ignore"):
        thr = ciou.mean(axis=0) + (ciou.std(axis=0, ddof=ddof) if cand.shape[0] > ddof
                                   else np.full(M, np.nan, dt))
    pos = ciou >= thr[None, :]
    l_ = acx[cand] - g[None, :, 0]
    t_ = acy[cand] - g[None, :, 1]
    r_ = g[None, :, 2] - acx[cand]
    b_ = g[None, :, 3] - acy[cand]
    pos &= np.minimum(np.minimum(l_, t_), np.minimum(r_, b_)) > T(ce)
    best = np.full((N, M), -np.inf, dt)
    best[cand[pos], np.broadcast_to(cols, cand.shape)[pos]] = iou[cand[pos], np.broadcast_to(cols, cand.shape)[pos]]
    mv = best.max(axis=1)
    am = best.argmax(axis=1)                                                     # first maximum
    fg = mv != -np.inf
    idx = np.nonzero(fg)[0]
    out.gt_index[idx] = am[fg]
    out.labels[idx] = lab[am[fg]]
    out.boxes[idx] = g[am[fg]]
    out.quality[idx] = iou[idx, am[fg]]
    return out


# ------------------------------------------------------------------------------------------------
# DETR Hungarian matcher
# ------------------------------------------------------------------------------------------------

class HungarianMatch(NamedTuple):
    """Result of :func:`hungarian_match` for one image.

    Attributes
    ----------
    query_index, gt_index : ndarray of int64, shape (min(Q, M),)
        The matched pairs, sorted by
        query (scipy's ``linear_sum_assignment`` row order), DETR's ``(index_i, index_j)``.
    assignment : Assignment
        Per query (Q,): label ``num_classes`` ("no object") when unmatched.
    cost : ndarray, shape (Q, M)
        The cost matrix that was solved.
    """
    query_index: np.ndarray
    gt_index: np.ndarray
    assignment: Assignment
    cost: np.ndarray


def _cxcywh_to_xyxy(b):
    """DETR ``box_cxcywh_to_xyxy``: ``(cx - 0.5 w, cy - 0.5 h, cx + 0.5 w, cy + 0.5 h)``."""
    h = b.dtype.type(0.5)
    return np.stack([b[:, 0] - h * b[:, 2], b[:, 1] - h * b[:, 3], b[:, 0] + h * b[:, 2], b[:, 1] + h * b[:, 3]],
                    axis=1)


def hungarian_match(logits, pred_boxes, gt_labels, gt_boxes, *, cost_class: float = 1.0,
                    cost_bbox: float = 5.0, cost_giou: float = 2.0) -> HungarianMatch:
    """DETR's Hungarian matcher for one image (``models/matcher.py HungarianMatcher``).

    ``C[q, m] = cost_bbox * |b_q - b_m|_1 + cost_class * (-softmax(logits_q)[c_m])
    + cost_giou * (-GIoU(b_q, b_m))`` with boxes in normalised ``(cx, cy, w, h)`` (L1 on those four
    numbers, GIoU on their xyxy corners), solved with ``scipy.optimize.linear_sum_assignment``
    (a minimum-cost matching of ``min(Q, M)`` pairs; among equal-cost matchings scipy's is returned).
    DETR's weights are 1, 5, 2 (``--set_cost_class/bbox/giou``).

    Parameters
    ----------
    logits : ndarray, shape (Q, K + 1)
        Class logits; the last column is "no object".
    pred_boxes : ndarray, shape (Q, 4)
        Normalised cxcywh.
    gt_labels : ndarray of int, shape (M,)
        In [0, K).
    gt_boxes : ndarray, shape (M, 4)
        Normalised cxcywh, widths and heights >= 0.
    cost_class, cost_bbox, cost_giou : float
        Non-negative, not all zero.

    Returns
    -------
    HungarianMatch
        ``assignment.quality`` is 1 for matched queries, 0 else.
    """
    from scipy.optimize import linear_sum_assignment

    z = _common.floats(logits, "logits", ndim=2)
    Q, K1 = z.shape
    if K1 < 2:
        raise ValueError(f"`logits` must have K + 1 >= 2 columns (classes and 'no object'); got {K1}")
    pb = _common.floats(pred_boxes, "pred_boxes")
    _common.check_shape(pb, (Q, 4), "pred_boxes", "(Q, 4)")
    g = _checks.as_boxes(gt_boxes, "gt_boxes")
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0, high=K1 - 2)
    wc = _checks.check_positive(cost_class, "cost_class", strict=False)
    wb = _checks.check_positive(cost_bbox, "cost_bbox", strict=False)
    wg = _checks.check_positive(cost_giou, "cost_giou", strict=False)
    if wc == 0 and wb == 0 and wg == 0:
        raise ValueError("`cost_class`, `cost_bbox` and `cost_giou` must not all be 0")
    if (pb[:, 2:] < 0).any() or (g[:, 2:] < 0).any():
        raise ValueError("`pred_boxes` and `gt_boxes` must have non-negative widths and heights (cxcywh)")
    dt = _common.common_dtype(z, pb, g)
    z, pb, g = _common.same_dtype(dt, z, pb, g)
    M = g.shape[0]
    K = K1 - 1
    out = _empty((Q,), K, dt)
    if M == 0 or Q == 0:
        return HungarianMatch(np.zeros(0, np.int64), np.zeros(0, np.int64), out, np.zeros((Q, M), dt))
    prob = np.exp(_common.log_softmax(z, axis=-1))
    c_class = -prob[:, lab]                                                      # (Q, M)
    c_bbox = np.abs(pb[:, None, :] - g[None, :, :]).sum(axis=-1)                 # torch.cdist(p=1)
    c_giou = -generalized_box_iou(_cxcywh_to_xyxy(pb), _cxcywh_to_xyxy(g))
    C = dt.type(wb) * c_bbox + dt.type(wc) * c_class + dt.type(wg) * c_giou
    if not np.all(np.isfinite(C)):
        raise ValueError("the matching cost is not finite (degenerate boxes give a NaN GIoU)")
    rows, cols = linear_sum_assignment(C)
    rows = rows.astype(np.int64)
    cols = cols.astype(np.int64)
    out.gt_index[rows] = cols
    out.labels[rows] = lab[cols]
    out.boxes[rows] = g[cols]
    out.quality[rows] = 1
    return HungarianMatch(rows, cols, out, C)
