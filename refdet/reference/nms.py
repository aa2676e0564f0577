"""NMS as the loops one draws on a whiteboard: greedy, class-aware, Soft-NMS, ONNX NonMaxSuppression.

The readable versions of :mod:`refdet.nms`. One pair of boxes at a time, in the boxes' float dtype
(float32 boxes: float32 arithmetic in torchvision's order of operations; float16 in float32;
integers in float64), so the fast functions equal these index for index
(``tests/test_reference_nms.py``). No validation: pass valid arrays. The keywords are the knobs of
the fast functions, already resolved (``**refdet.conventions.resolve("nms", "caffe")``).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np


def _dtype(a):
    """refdet's working dtype: float32 for float32/float16, float64 for everything else."""
    return np.dtype(np.float32) if np.asarray(a).dtype in (np.float32, np.float16) else np.dtype(np.float64)


def visiting_order(scores: np.ndarray, ties: str = "lowest_index") -> List[int]:
    """Indices by score, highest first; NaN above every number; equal scores by index, lowest first
    (stable sort: torchvision, ONNX, TF) or highest first (py-faster-rcnn ``argsort()[::-1]``)."""
    def key(i):
        s = float(scores[i])
        tie = i if ties == "lowest_index" else -i
        return (0, 0.0, tie) if math.isnan(s) else (1, -s, tie)     # -(-0.0) == -(0.0): a tie
    return sorted(range(len(scores)), key=key)


def pair_iou(a: np.ndarray, b: np.ndarray, *, plus_one: bool = False) -> np.floating:
    """IoU of two xyxy boxes of one float dtype, torchvision ``nms_kernel.cpp``'s arithmetic.

    ::

        w = max(0, min(x2a, x2b) - max(x1a, x1b) [+ 1]);  h likewise;  inter = w * h
        iou = inter / ((area_a + area_b) - inter)          # 0 / 0 = NaN (two zero-area boxes)
    """
    e = a.dtype.type(1 if plus_one else 0)
    zero = a.dtype.type(0)
    w = max(zero, min(a[2], b[2]) - max(a[0], b[0]) + e)
    h = max(zero, min(a[3], b[3]) - max(a[1], b[1]) + e)
    inter = w * h
    area_a = (a[2] - a[0] + e) * (a[3] - a[1] + e)
    area_b = (b[2] - b[0] + e) * (b[3] - b[1] + e)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def guarded_iou(a, b) -> Optional[np.floating]:
    """onnxruntime ``SuppressByIOU`` (and TF's IOU): the IoU of two corner-sorted boxes, or ``None``
    when the pair cannot suppress: no overlap on an axis, or a non-positive intersection, area or
    union."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if not (w > 0 and h > 0):
        return None
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    union = area_a + area_b - inter
    if inter <= 0 or area_a <= 0 or area_b <= 0 or union <= 0:
        return None
    return inter / union


def _exceeds(iou, thr, inclusive, threshold_dtype):
    """``iou > thr`` (``>=`` when inclusive): a float32 IoU meets the double threshold as C++
    compares them (``"float64"``), or the threshold rounded to the IoU's dtype (``"working"``)."""
    x, t = (float(iou), float(thr)) if threshold_dtype == "float64" else (iou, iou.dtype.type(thr))
    return x >= t if inclusive else x > t


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, inclusive: bool = False,
        ties: str = "lowest_index", nan_scores: str = "first", plus_one: bool = False,
        corner_order: str = "as_given", threshold_dtype: str = "float64") -> np.ndarray:
    """Greedy NMS: take the best box left, keep it, drop every box it overlaps too much, repeat."""
    if nan_scores == "reject" and np.isnan(np.asarray(scores, dtype=np.float64)).any():
        raise ValueError("`scores` must not contain NaN")
    b = np.asarray(boxes).astype(_dtype(boxes))
    if corner_order == "any":          # ONNX/TF: either diagonal; sort the corners of each box
        b = np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                      np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)

    def suppresses(i, j):
        iou = guarded_iou(b[i], b[j]) if corner_order == "any" else pair_iou(b[i], b[j], plus_one=plus_one)
        return iou is not None and _exceeds(iou, iou_threshold, inclusive, threshold_dtype)

    remaining = visiting_order(scores, ties)
    keep = []
    while remaining:
        best = remaining.pop(0)                                    # the highest score left
        keep.append(best)
        remaining = [j for j in remaining if not suppresses(best, j)]
    return np.array(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float, *,
                coordinate_trick=False, **knobs) -> np.ndarray:
    """Class-aware NMS: :func:`nms` per category, the survivors merged in visiting order.

    ``coordinate_trick`` (torchvision's shortcut, wrong for negative coordinates): one NMS over
    ``boxes + idxs * (max(boxes) + 1)``; ``"torchvision"`` uses it when ``boxes.size <= 4000``.
    """
    boxes, idxs = np.asarray(boxes), np.asarray(idxs)
    if coordinate_trick == "torchvision":
        coordinate_trick = boxes.size <= 4000
    if coordinate_trick and len(boxes):
        b = boxes.astype(_dtype(boxes))
        offsets = idxs.astype(b.dtype) * (b.max() + b.dtype.type(1))
        return nms(b + offsets[:, None], scores, iou_threshold, **knobs)
    kept = []
    for c in np.unique(idxs):
        members = np.flatnonzero(idxs == c)
        kept += members[nms(boxes[members], np.asarray(scores)[members], iou_threshold, **knobs)].tolist()
    rank = {i: r for r, i in enumerate(visiting_order(scores, knobs.get("ties", "lowest_index")))}
    return np.array(sorted(kept, key=rank.get), dtype=np.int64)


def soft_nms(boxes: np.ndarray, scores: np.ndarray, *, method: str = "gaussian", sigma: float = 0.5,
             iou_threshold: float = 0.3, score_threshold: float = 0.001, inclusive: bool = False,
             plus_one: bool = False, gaussian_denominator: str = "sigma", discard: str = "any",
             hard_above_threshold: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Soft-NMS, Bodla et al. 2017 (arXiv:1704.04503) Algorithm 1, on the C loops' working array::

        while B is not empty:
            m = argmax S;  move b_m from B to D             (first maximum in B's order wins)
            for b_i in B:  s_i = s_i * f(iou(b_m, b_i))
                           drop b_i if s_i < score_threshold (its slot takes B's last box)

    ``f``: linear ``1 - iou`` above ``N_t`` (else 1); gaussian ``exp(-iou^2 / sigma)`` (or
    ``exp(-0.5 iou^2 / sigma)``, TF; and 0 above ``N_t`` with ``hard_above_threshold``); hard 0
    above ``N_t``. The order of B is the one Detectron1 and mmcv keep: it decides equal scores.
    Returns ``(indices of D in selection order, their decayed scores)``.
    """
    dt = np.result_type(_dtype(boxes), _dtype(scores))
    B = np.asarray(boxes).astype(dt)                  # the working array (rows move, never copied back)
    S = np.asarray(scores).astype(dt)
    ids = list(range(len(B)))
    e, one, zero = dt.type(1 if plus_one else 0), dt.type(1), dt.type(0)
    thr, smin, sig = dt.type(iou_threshold), dt.type(score_threshold), dt.type(sigma)

    def f(iou):
        above = iou >= thr if inclusive else iou > thr
        if method == "linear":
            return one - iou if above else one
        if method == "hard":
            return zero if above else one
        if gaussian_denominator == "sigma":
            w = np.exp(-(iou * iou) / sig)                      # mmcv, Detectron1, the paper
        else:
            w = np.exp((dt.type(-0.5) / sig * iou) * iou)       # TF: scale = -0.5 / sigma
        return zero if hard_above_threshold and iou > thr else w

    def move(src, dst):
        B[dst], S[dst], ids[dst] = B[src], S[src], ids[src]

    n, i = len(B), 0                                   # slots [0, i) are D, [i, n) are B
    while i < n:
        m = i
        for p in range(i + 1, n):                      # strict '<' scan: a NaN never takes over
            if S[m] < S[p]:
                m = p
        B[[i, m]], S[[i, m]] = B[[m, i]], S[[m, i]]
        ids[i], ids[m] = ids[m], ids[i]
        p = i + 1
        while p < n:
            a, c = B[i], B[p]
            overlaps = min(a[2], c[2]) - max(a[0], c[0]) + e > 0 and min(a[3], c[3]) - max(a[1], c[1]) + e > 0
            if discard == "overlapping" and not overlaps:   # Detectron1 skips boxes it does not touch
                p += 1
                continue
            S[p] = S[p] * f(pair_iou(a, c, plus_one=plus_one))
            if S[p] < smin:
                move(n - 1, p)                          # the last box takes the slot; look at it next
                n -= 1
            else:
                p += 1
        i += 1
    return np.array(ids[:n], dtype=np.int64), S[:n].copy()


def onnx_non_max_suppression(boxes: np.ndarray, scores: np.ndarray, max_output_boxes_per_class: int = 0,
                             iou_threshold: float = 0.0, score_threshold: Optional[float] = None, *,
                             center_point_box: int = 0) -> np.ndarray:
    """The ONNX NonMaxSuppression specification, loop per (batch, class)::

        candidates: boxes with score > score_threshold, by score descending (ties: lower index)
        for each candidate: stop at max_output_boxes_per_class selections;
                            select it unless a selected box has IoU > iou_threshold with it

    Boxes are ``[y1, x1, y2, x2]`` with either diagonal (``center_point_box=0``) or
    ``[x_center, y_center, width, height]`` (``1``). IoU as onnxruntime's ``SuppressByIOU``
    (:func:`guarded_iou`), threshold in the boxes' dtype. Rows ``[batch, class, box]``.
    """
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    b = boxes.astype(_dtype(boxes))
    s = scores.astype(_dtype(scores))
    thr = b.dtype.type(iou_threshold)

    def corners(box):                                   # -> (x_min, y_min, x_max, y_max)
        if center_point_box == 0:
            y1, x1, y2, x2 = box
            return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
        xc, yc, w, h = box
        two = box.dtype.type(2)
        return xc - w / two, yc - h / two, xc + w / two, yc + h / two

    rows = []
    for batch in range(s.shape[0]):
        c = [corners(box) for box in b[batch]]
        for cls in range(s.shape[1]):
            sc = s[batch, cls]
            cand = [i for i in range(len(sc))
                    if score_threshold is None or sc[i] > sc.dtype.type(score_threshold)]
            cand.sort(key=lambda i: (-float(sc[i]), i))
            selected = []
            for i in cand:
                if len(selected) >= max_output_boxes_per_class:
                    break
                ious = [guarded_iou(c[k], c[i]) for k in selected]
                if not any(iou is not None and iou > thr for iou in ious):
                    selected.append(i)
            rows += [[batch, cls, i] for i in selected]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)
