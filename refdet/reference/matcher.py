"""Matching as the paper draws it: per anchor the best ground truth, three threshold bands, then the
low-quality rule per ground truth; SSD's "each gt claims its best default box first".

``iou`` is (M, N): ground truths x anchors. Result in torchvision's encoding: ``m >= 0`` the matched
gt, ``-1`` negative (background), ``-2`` ignored. The knobs are those of :func:`refdet.match` and
:func:`refdet.ssd_match` (``refdet.conventions.resolve("match", name)`` gives a profile's values);
``tests/test_reference_geometry.py`` holds these loops equal to the vectorised matchers.

Ties: the best gt of an anchor is the **first** maximal row; the low-quality test is exact equality
with the gt's best IoU. NaN behaves as in torch: the largest value (the first NaN wins an argmax), it
fails every comparison (so it stays a positive match), and ``NaN == NaN`` is false.
"""
import numpy as np


def first_argmax(values):
    """Index of the first maximum of a sequence; NaN counts as the largest value (torch.max, np.argmax)."""
    best = 0
    for k in range(1, len(values)):
        if np.isnan(values[best]):
            break
        if np.isnan(values[k]) or values[k] > values[best]:
            best = k
    return best


def _empty(n, empty_gt):
    if empty_gt == "raise":
        raise ValueError("No ground-truth boxes available for one of the images during training")
    return np.full(n, -1 if empty_gt == "all_negative" else -2, dtype=np.int64)


def match(iou, high=0.7, low=0.3, allow_low_quality_matches=True, *, positive_strict=False,
          low_quality="all_ties_argmax_gt", min_pos_iou=-np.inf, background_after=False, empty_gt="raise",
          neg_floor=-np.inf):
    """Max-IoU matching (Faster R-CNN RPN, RetinaNet, the R-CNN box head), one anchor at a time."""
    q = np.asarray(iou)
    m, n = q.shape
    if m == 0:
        return _empty(n, empty_gt)
    if n == 0:                             # no anchors: nothing to match
        return np.zeros(0, dtype=np.int64)
    t = q.dtype.type                       # thresholds are compared in the matrix's dtype, as torch does
    high, low, floor = t(high), t(low), t(neg_floor)

    # 1. each anchor: its best gt and the band its best IoU falls in
    best_gt = [first_argmax(q[:, j]) for j in range(n)]
    out = []
    for j in range(n):
        v = q[best_gt[j], j]
        is_pos = (v > high) if positive_strict else (v >= high)
        if is_pos or np.isnan(v):          # NaN fails the two tests below, so it stays matched
            out.append(best_gt[j])
        elif floor <= v < low:             # negative: below low for every gt (mmdet: and >= 0)
            out.append(-1)
        else:                              # between the thresholds: ignored
            out.append(-2)

    # 2. each gt promotes its best anchor(s), if the gate lets it (mmdet min_pos_iou)
    mode = low_quality if allow_low_quality_matches else "off"
    forced_by = [None] * n                 # the gt that forces each anchor (forcing modes)
    for i in range(m if mode != "off" else 0):
        best_anchor = first_argmax(q[i])
        gt_best = q[i, best_anchor]
        if np.isfinite(min_pos_iou) and not gt_best >= t(min_pos_iou):
            continue                       # gated out (a NaN best IoU fails the gate too)
        if mode.startswith("all_ties"):    # every anchor reaching the gt's best IoU (NaN == NaN is false)
            anchors = [j for j in range(n) if q[i, j] == gt_best]
        else:                              # only the first best anchor
            anchors = [best_anchor]
        for j in anchors:
            if mode == "all_ties_argmax_gt":
                out[j] = best_gt[j]        # torchvision: the anchor regresses to ITS best gt
            elif mode.endswith("last_wins") or forced_by[j] is None:
                forced_by[j] = i           # mmdet: later gts overwrite; TF: the lowest gt keeps it
    for j in range(n):
        if forced_by[j] is not None:
            out[j] = forced_by[j]

    # 3. Detectron1 RetinaNet writes the background after the positives
    if background_after:
        for j in range(n):
            v = q[best_gt[j], j]
            if floor <= v < low:
                out[j] = -1
    return np.array(out, dtype=np.int64)


def ssd_match(iou, threshold=0.5, *, prematch="last_wins", positive_strict=False, candidate_eps=-np.inf,
              empty_gt="raise"):
    """SSD: every gt first claims its best default box, the other boxes are thresholded."""
    q = np.asarray(iou)
    m, n = q.shape
    if m == 0:
        return _empty(n, empty_gt)
    t = q.dtype.type
    thr = t(threshold)
    # Caffe only matches overlaps > 1e-6; without that filter every pair is a candidate
    candidate = [[bool(q[i, j] > t(candidate_eps)) if np.isfinite(candidate_eps) else True for j in range(n)]
                 for i in range(m)]

    # threshold step: each default box takes its best candidate gt if that IoU reaches the threshold
    out = []
    for j in range(n):
        gts = [i for i in range(m) if candidate[i][j]]
        if not gts:
            out.append(-1)
            continue
        best = gts[first_argmax([q[i, j] for i in gts])]
        v = q[best, j]
        out.append(best if ((v > thr) if positive_strict else (v >= thr)) else -1)

    # prematch step: each gt claims one default box, which keeps it whatever its other overlaps
    if prematch in ("last_wins", "first_wins"):
        order = range(m) if prematch == "last_wins" else range(m - 1, -1, -1)
        for i in order:                    # later writes win: last gt (torchvision) or first gt (TF)
            boxes = [j for j in range(n) if candidate[i][j]]
            if boxes:
                out[boxes[first_argmax([q[i, j] for j in boxes])]] = i
    elif prematch == "greedy_bipartite":   # Caffe MatchBBox BIPARTITE: the largest free pair, repeatedly
        free_gts, free_boxes = list(range(m)), list(range(n))
        while free_gts:
            best, j, i = -np.inf, None, None   # strict >: the lowest box, then the lowest gt, on ties
            for jj in free_boxes:
                for ii in free_gts:
                    if candidate[ii][jj] and q[ii, jj] > best:
                        best, j, i = q[ii, jj], jj, ii
            if j is None:
                break
            out[j] = i
            free_gts.remove(i)
            free_boxes.remove(j)
    return np.array(out, dtype=np.int64)
