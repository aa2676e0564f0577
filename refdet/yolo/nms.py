"""Suppression in the YOLO family: ultralytics/YOLOv5 ``non_max_suppression``, merge-NMS, DIoU-NMS
and weighted boxes fusion.

``yolo_non_max_suppression`` is the post-processing every YOLO export must reproduce. Per image:

1. *Candidates*: best class score (ultralytics) or objectness (YOLOv5) ``> conf_thres`` (strict).
2. *Scores*: class scores (ultralytics) or ``objectness * class score`` (YOLOv5); boxes ``xywh ->
   xyxy`` (``xy -+ wh / 2``).
3. *Labels*: the best class (first maximum), or every class above ``conf_thres`` (``multi_label``;
   rows ordered box-major, class-minor, ``torch.where``'s order).
4. *Filter* by ``classes``; cap at ``max_nms`` rows by score.
5. *Class-aware NMS by the offset trick*: boxes shifted by ``class * max_wh`` (7680 pixels) so that
   boxes of different classes never overlap, then one ``torchvision.ops.nms`` (``agnostic``: no
   shift). Keep at most ``max_det``.
6. *Merge-NMS* (YOLOv5 ``merge=True``, for ``1 < n < 3000``): each kept box becomes the
   score-weighted mean of the boxes it overlaps above ``iou_thres`` (itself included); with
   ``redundant`` only boxes that overlap at least one other are kept.

Ties: refdet orders equal scores by index (stable sorts) everywhere. ``torch.argsort(descending=
True)`` (ultralytics' ``max_nms`` cap, YOLOv5's presort) is not stable, so where a cap or presort
meets equal scores the frameworks' order is arbitrary; ``torchvision.ops.nms`` itself is stable on
the CPU. The ``max_wh`` trick assumes boxes within ``[0, max_wh)``: larger boxes of different classes
can suppress each other, in refdet as in ultralytics.

Sources: ultralytics 8.4 ``utils/nms.py non_max_suppression``; YOLOv5 v7.0 ``utils/general.py
non_max_suppression`` and ``utils/metrics.py box_iou``; DIoU-NMS: Zheng et al. (arXiv:1911.08287
section 4.3) and darknet ``src/box.c box_diounms / diounms_sort``; WBF: Solovyev et al.
(arXiv:1910.13302) and ZFTurbo's ``ensemble_boxes/ensemble_boxes_wbf.py`` (1.0.9).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.nms import nms as _tv_nms
from refdet.yolo import _common

__all__ = ["yolo_non_max_suppression", "diou_nms", "weighted_boxes_fusion"]

conventions.register("yolo_non_max_suppression", {
    "ultralytics": {"layout": "channels_first", "objectness": False, "scale_extra": False, "max_wh": 7680.0,
                    "max_nms": 30000},
    "yolov5": {"layout": "channels_last", "objectness": True, "scale_extra": True, "max_wh": 7680.0,
               "max_nms": 30000},
}, knobs={
    "layout": conventions.choice(("channels_first", "channels_last"),
                                 "prediction (B, 4 + K + E, N) (ultralytics) or (B, N, 5 + K + E) (YOLOv5)",
                                 source="ultralytics utils/nms.py; YOLOv5 utils/general.py"),
    "objectness": conventions.flag("channel 4 is objectness: candidates by it, scores = obj * cls",
                                   source="YOLOv5 non_max_suppression (xc = obj > conf; x[:, 5:] *= x[:, 4:5])"),
    "scale_extra": conventions.flag("the extra channels (mask coefficients) are multiplied by objectness too",
                                    source="YOLOv5 v7.0: x[:, 5:] *= x[:, 4:5] covers them"),
    "max_wh": conventions.number("class offset of the batched-NMS trick, pixels", low=0.0,
                                 source="ultralytics/YOLOv5 max_wh = 7680"),
    "max_nms": conventions.integer("rows kept, by score, before NMS", low=1, source="max_nms = 30000"),
}, doc="ultralytics 8.4 utils/nms.py non_max_suppression; YOLOv5 v7.0 utils/general.py non_max_suppression.")


def _xywh2xyxy(b):
    return _common.cxcywh_to_xyxy(b)


def _pair_iou_eps(a, b, eps):
    """YOLOv5 ``box_iou(box1, box2, eps=1e-7)`` (N, M): ``inter / (area1 + area2 - inter + eps)``."""
    inter = np.prod(np.maximum(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]),
                               0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + a.dtype.type(eps))


@conventions.documented("yolo_non_max_suppression")
def yolo_non_max_suppression(prediction, conf_thres: float = 0.25, iou_thres: float = 0.45, *,
                             classes: Optional[Sequence[int]] = None, agnostic: bool = False,
                             multi_label: bool = False, max_det: int = 300, nc: int = 0,
                             merge: bool = False, redundant: bool = True, return_indices: bool = False,
                             convention="ultralytics", layout: Optional[str] = None,
                             objectness: Optional[bool] = None, scale_extra: Optional[bool] = None,
                             max_wh: Optional[float] = None, max_nms: Optional[int] = None):
    """ultralytics / YOLOv5 ``non_max_suppression`` (see the module docstring for the steps).

    Parameters
    ----------
    prediction : ndarray
        ``(B, 4 + K + E, N)`` (ultralytics) or ``(B, N, 5 + K + E)`` (YOLOv5); boxes xywh (centre)
        pixels, class scores (and objectness) as probabilities, ``E`` extra channels carried along.
    conf_thres, iou_thres : float
        In [0, 1] (both frameworks assert it). Kept: score ``> conf_thres``; suppressed:
        ``IoU > iou_thres``.
    classes : sequence of int, optional
        Keep only these classes.
    agnostic : bool
        One NMS over all classes.
    multi_label : bool
        One row per (box, class above threshold); ignored when K == 1.
    max_det : int
        Rows kept per image after NMS.
    nc : int
        Number of classes (0: all channels after the box (and objectness) are classes, E = 0).
    merge, redundant : bool
        YOLOv5 merge-NMS and its redundancy requirement.
    return_indices : bool
        Also return, per image, the index (into N) of each output row's box.
    convention : {"ultralytics", "yolov5"}
    layout, objectness, scale_extra, max_wh, max_nms
        Override the profile (table below).

    Returns
    -------
    list of B ndarrays, shape (n_b, 6 + E)
        ``(x1, y1, x2, y2, score, class, extras...)`` in NMS order (decreasing score), the class as
        a float, in the prediction's dtype.
    list of B int64 ndarrays, shape (n_b,)
        Only with ``return_indices``.

    Notes
    -----
    The NMS is :func:`refdet.nms.nms` (torchvision's CPU kernel, float32 bit-exact), so float32
    predictions give ultralytics' rows exactly. The time limit (``max_time_img``) is not reproduced.
    """
    s = conventions.resolve("yolo_non_max_suppression", convention, layout=layout, objectness=objectness,
                            scale_extra=scale_extra, max_wh=max_wh, max_nms=max_nms)
    conf = _checks.check_probability(conf_thres, "conf_thres")
    iou_t = _checks.check_probability(iou_thres, "iou_thres")
    max_det = _checks.check_int(max_det, "max_det", low=0)
    nc = _checks.check_int(nc, "nc", low=0)
    for name, v in (("agnostic", agnostic), ("multi_label", multi_label), ("merge", merge),
                    ("redundant", redundant), ("return_indices", return_indices)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"`{name}` must be a bool; got {type(v).__name__} {v!r}")
    p = _common.floats(prediction, "prediction", finite=False)
    if p.ndim != 3:
        raise ValueError(f"`prediction` must be 3-D ({'(B, 4 + K + E, N)' if s.layout == 'channels_first' else '(B, N, 5 + K + E)'}); "
                         f"got shape {p.shape}")
    _checks.check_finite(p, "prediction")
    x_all = np.swapaxes(p, 1, 2) if s.layout == "channels_first" else p          # (B, N, C)
    head = 5 if s.objectness else 4
    C = x_all.shape[2]
    K = nc or (C - head)
    if K < 1 or head + K > C:
        raise ValueError(f"`prediction` has {C} channels: too few for the box, {'objectness, ' if s.objectness else ''}"
                         f"and `nc` = {K} classes")
    cls_filter = None
    if classes is not None:
        classes = _checks.check_sequence(classes, "classes", "a list of class ids (or None)")
        cls_filter = np.asarray([_checks.check_int(c, f"classes[{i}]", low=0) for i, c in enumerate(classes)],
                                dtype=np.int64)
    multi = bool(multi_label) and K > 1
    dt = x_all.dtype
    T = dt.type
    outs, idxs = [], []
    E = C - head - K
    for xi in range(x_all.shape[0]):                                             # a loop over images
        x = x_all[xi]
        if s.objectness:
            cand = x[:, 4] > T(conf)
        else:
            cand = (x[:, 4:4 + K].max(axis=1) if x.shape[0] else np.zeros(0, dt)) > T(conf)
        xk = np.nonzero(cand)[0]
        x = x[cand]
        if s.objectness:
            obj = x[:, 4:5]
            cls = x[:, 5:5 + K] * obj
            extra = x[:, 5 + K:] * obj if s.scale_extra else x[:, 5 + K:]
        else:
            cls = x[:, 4:4 + K]
            extra = x[:, 4 + K:]
        box = _xywh2xyxy(x[:, :4])
        if multi:
            i, j = np.nonzero(cls > T(conf))
            rows = np.concatenate([box[i], cls[i, j][:, None], j[:, None].astype(dt), extra[i]], axis=1)
            xk = xk[i]
        else:
            j = np.argmax(cls, axis=1) if cls.shape[0] else np.zeros(0, np.int64)
            cf = cls[np.arange(cls.shape[0]), j]
            keep = cf > T(conf)
            rows = np.concatenate([box, cf[:, None], j[:, None].astype(dt), extra], axis=1)[keep]
            xk = xk[keep]
        if cls_filter is not None:
            keep = np.isin(rows[:, 5], cls_filter.astype(dt))
            rows, xk = rows[keep], xk[keep]
        n = rows.shape[0]
        if n == 0:
            outs.append(np.zeros((0, 6 + E), dt))
            idxs.append(np.zeros(0, np.int64))
            continue
        # by score, stable, capped at max_nms (ultralytics sorts only when n > max_nms, YOLOv5 always;
        # with a stable sort both give the NMS below the same visiting order)
        order = np.argsort(-rows[:, 4], kind="stable")[:s.max_nms]
        rows, xk = rows[order], xk[order]
        c = rows[:, 5:6] * (T(0) if agnostic else T(s.max_wh))
        boxes = rows[:, :4] + c
        scores = rows[:, 4]
        i = _tv_nms(boxes, scores, iou_t)[:max_det]
        if merge and 1 < n < 3000:
            ov = _pair_iou_eps(boxes[i], boxes, 1e-7) > T(iou_t)                 # (k, n)
            wts = ov * scores[None, :]
            rows = rows.copy()
            rows[i, :4] = (wts @ rows[:, :4]) / wts.sum(axis=1, keepdims=True)
            if redundant:
                i = i[ov.sum(axis=1) > 1]
        outs.append(rows[i])
        idxs.append(xk[i].astype(np.int64))
    return (outs, idxs) if return_indices else outs


# ------------------------------------------------------------------------------------------------
# DIoU-NMS
# ------------------------------------------------------------------------------------------------

conventions.register("diou_nms", {
    "paper": {"beta": 1.0, "inclusive": True},
    "darknet": {"beta": 0.6, "inclusive": False},
}, knobs={
    "beta": conventions.number("exponent of the distance penalty (rho^2 / c^2)^beta", low=0.0, high=1e6,
                               source="DIoU paper eq. 12 (beta = 1); darknet beta_nms = 0.6"),
    "inclusive": conventions.flag("suppress when IoU - penalty >= thr (paper) or > thr (darknet)",
                                  source="DIoU paper eq. 12; darknet diounms_sort"),
}, doc="Zheng et al., Distance-IoU loss, arXiv:1911.08287 section 4.3; darknet src/box.c box_diounms.")


@conventions.documented("diou_nms")
def diou_nms(boxes, scores, iou_threshold: float, *, idxs=None, convention="paper",
             beta: Optional[float] = None, inclusive: Optional[bool] = None) -> np.ndarray:
    """DIoU-NMS (YOLOv4): greedy NMS that suppresses by ``IoU - (rho^2 / c^2)^beta``.

    ``rho`` is the distance between the box centres, ``c`` the diagonal of their smallest enclosing
    box (a pair with ``c = 0`` -- two identical points -- is compared by IoU alone, as darknet). Boxes
    with nearby centres are suppressed as in plain NMS; overlapping boxes whose centres are far
    apart (occluded neighbours) survive.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        xyxy.
    scores : ndarray, shape (N,)
    iou_threshold : float in [0, 1]
        Outside [0, 1] or NaN: ValueError (as :func:`refdet.nms`).
    idxs : ndarray of int, shape (N,), optional
        Class of each box: suppression only within a class (darknet runs it per class).
    convention : {"paper", "darknet"}
    beta, inclusive
        Override the profile (table below).

    Returns
    -------
    ndarray of int64, shape (K,)
        Kept indices by decreasing score (equal scores: lowest index first).

    Notes
    -----
    The greedy walk loops over the kept boxes (each step vectorised over the remaining ones): O(K N).
    """
    s = conventions.resolve("diou_nms", convention, beta=beta, inclusive=inclusive)
    b = _checks.as_boxes(boxes, "boxes")
    sc = _checks.as_scores(scores, "scores", n=b.shape[0])
    thr = _checks.check_unit_threshold(iou_threshold, "iou_threshold")
    cl = None
    if idxs is not None:
        cl = _checks.as_int_labels(idxs, "idxs", n=b.shape[0])
    dt = b.dtype
    T = dt.type
    order = np.argsort(-sc.astype(np.float64), kind="stable")
    cx, cy = (b[:, 0] + b[:, 2]) / T(2), (b[:, 1] + b[:, 3]) / T(2)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = []
    rest = order
    while rest.size:                                                             # a loop over kept boxes
        i, rest = rest[0], rest[1:]
        keep.append(i)
        if not rest.size:
            break
        iw = np.maximum(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0)
        ih = np.maximum(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1), T(0))
            cw = np.maximum(b[i, 2], b[rest, 2]) - np.minimum(b[i, 0], b[rest, 0])
            ch = np.maximum(b[i, 3], b[rest, 3]) - np.minimum(b[i, 1], b[rest, 1])
            c2 = cw * cw + ch * ch
            d2 = (cx[i] - cx[rest]) ** 2 + (cy[i] - cy[rest]) ** 2
            pen = np.where(c2 > 0, _common.torch_pow(d2 / np.where(c2 > 0, c2, 1), s.beta), T(0))
        val = iou - pen
        sup = (val >= T(thr)) if s.inclusive else (val > T(thr))
        if cl is not None:
            sup &= cl[rest] == cl[i]
        rest = rest[~sup]
    return np.asarray(keep, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# Weighted boxes fusion
# ------------------------------------------------------------------------------------------------

def weighted_boxes_fusion(boxes_list: Sequence, scores_list: Sequence, labels_list: Sequence, *,
                          weights: Optional[Sequence[float]] = None, iou_thr: float = 0.55,
                          skip_box_thr: float = 0.0, conf_type: str = "avg", allows_overflow: bool = False):
    """Weighted boxes fusion of several models' detections (ensemble_boxes ``weighted_boxes_fusion``).

    1. Per model ``t`` (weight ``w_t``): drop boxes with ``score < skip_box_thr``; swap flipped
       corners, clip to [0, 1], drop zero-area boxes; the box's score becomes ``score * w_t``.
    2. Per label, boxes by decreasing weighted score (equal scores: model order, then index -- a
       stable sort; ensemble_boxes reverses an unstable argsort there): each box joins the cluster
       whose fused box overlaps it most if that IoU is ``> iou_thr`` (strict; equal IoUs: the
       earliest cluster), else starts a cluster. A cluster's fused box is the score-weighted mean of
       its boxes; its score the mean (``"avg"``) or maximum (``"max"``) of its boxes' scores.
    3. Rescale the scores: ``"avg"``: times ``min(T, n_cluster) / sum(w)`` (``allows_overflow``:
       ``n_cluster / sum(w)``); ``"max"``: divided by ``max(w)``. Output by decreasing score
       (stable over the labels in order of first appearance).

    Parameters
    ----------
    boxes_list : list of T arrays, shape (N_t, 4)
        Normalised xyxy in [0, 1].
    scores_list : list of T arrays, shape (N_t,)
    labels_list : list of T int arrays, shape (N_t,)
    weights : sequence of T floats, optional
        Model weights (> 0; default 1 each).
    iou_thr : float
    skip_box_thr : float
    conf_type : {"avg", "max"}
    allows_overflow : bool

    Returns
    -------
    boxes : ndarray, shape (K, 4)
    scores : ndarray, shape (K,)
    labels : ndarray of int64, shape (K,)

    Notes
    -----
    Clustering is sequential (a box's cluster depends on the clusters formed before it): the loop
    runs over boxes, each step vectorised over the clusters. ensemble_boxes accumulates fused boxes
    in float32; refdet in float64.
    """
    if not isinstance(boxes_list, (list, tuple)) or not isinstance(scores_list, (list, tuple)) \
            or not isinstance(labels_list, (list, tuple)):
        raise TypeError("`boxes_list`, `scores_list` and `labels_list` must be lists (one entry per model)")
    Tm = len(boxes_list)
    if len(scores_list) != Tm or len(labels_list) != Tm:
        raise ValueError(f"`boxes_list`, `scores_list` and `labels_list` must have the same length; got "
                         f"{Tm}, {len(scores_list)}, {len(labels_list)}")
    w = np.ones(Tm) if weights is None else _checks.as_positive_vector(weights, "weights", allow_empty=True)
    if w.shape[0] != Tm:
        raise ValueError(f"`weights` must give one weight per model ({Tm}); got {w.shape[0]}")
    thr = _checks.check_unit_threshold(iou_thr, "iou_thr")
    skip = _checks.check_real(skip_box_thr, "skip_box_thr")
    allows_overflow = _checks.check_bool(allows_overflow, "allows_overflow")
    _checks.check_choice(conf_type, "conf_type", ("avg", "max"))
    rows = []                                                                    # label, score, w, t, box
    for t in range(Tm):
        b = _checks.as_boxes(boxes_list[t], f"boxes_list[{t}]").astype(np.float64)
        s_ = _checks.as_scores(scores_list[t], f"scores_list[{t}]", n=b.shape[0]).astype(np.float64)
        lab = _checks.as_array(labels_list[t], f"labels_list[{t}]")
        if lab.shape != (b.shape[0],):
            raise ValueError(f"`labels_list[{t}]` must have shape ({b.shape[0]},); got {lab.shape}")
        lab = lab.astype(np.int64)                                               # int(label)
        keep = s_ >= skip
        b, s_, lab = b[keep], s_[keep], lab[keep]
        x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
        y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
        bb = np.clip(np.stack([x1, y1, x2, y2], axis=1), 0.0, 1.0)
        ok = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]) != 0.0
        bb, s_, lab = bb[ok], s_[ok], lab[ok]
        n = bb.shape[0]
        rows.append(np.concatenate([lab[:, None].astype(np.float64), (s_ * w[t])[:, None], np.full((n, 1), w[t]),
                                    np.full((n, 1), float(t)), bb], axis=1))
    allr = np.concatenate(rows, axis=0) if rows else np.zeros((0, 8))
    if allr.shape[0] == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    _, first = np.unique(allr[:, 0], return_index=True)
    label_order = allr[np.sort(first), 0]
    fused_all = []
    for lab in label_order:                                                      # a loop over labels
        cur = allr[allr[:, 0] == lab]
        cur = cur[np.argsort(-cur[:, 1], kind="stable")]
        fused = np.zeros((0, 8))
        members: List[list] = []
        for r in cur:                                                            # sequential clustering
            if fused.shape[0]:
                fb = fused[:, 4:]
                iw = np.maximum(np.minimum(fb[:, 2], r[6]) - np.maximum(fb[:, 0], r[4]), 0)
                ih = np.maximum(np.minimum(fb[:, 3], r[7]) - np.maximum(fb[:, 1], r[5]), 0)
                inter = iw * ih
                ua = (fb[:, 2] - fb[:, 0]) * (fb[:, 3] - fb[:, 1]) + (r[6] - r[4]) * (r[7] - r[5]) - inter
                iou = inter / ua
                k = int(np.argmax(iou))
                if iou[k] > thr:
                    members[k].append(r)
                    m = np.asarray(members[k])
                    conf = m[:, 1].sum()
                    fused[k, 4:] = (m[:, 1:2] * m[:, 4:]).sum(axis=0) / conf
                    fused[k, 1] = conf / m.shape[0] if conf_type == "avg" else m[:, 1].max()
                    fused[k, 2] = m[:, 2].sum()
                    continue
            members.append([r])
            fused = np.vstack([fused, r[None, :]])
        for k, m in enumerate(members):
            if conf_type == "max":
                fused[k, 1] = fused[k, 1] / w.max()
            elif not allows_overflow:
                fused[k, 1] = fused[k, 1] * min(Tm, len(m)) / w.sum()
            else:
                fused[k, 1] = fused[k, 1] * len(m) / w.sum()
        fused_all.append(fused)
    out = np.concatenate(fused_all, axis=0)
    out = out[np.argsort(-out[:, 1], kind="stable")]
    return out[:, 4:].copy(), out[:, 1].copy(), out[:, 0].astype(np.int64)
