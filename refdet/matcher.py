"""Label assignment: which ground truth (if any) each anchor is matched to.

Two matchers, both taking a precomputed quality matrix ``iou`` of shape ``(M, N)`` (ground truths x
anchors, the layout torchvision and detectron2 use), both returning torchvision's encoding::

    matches[n] = m   >= 0   anchor n is a positive for ground truth m
    matches[n] = -1         below the low threshold: a negative (background) anchor
    matches[n] = -2         between the thresholds: ignored by the loss

* :func:`match` is the max-IoU matcher of Faster R-CNN's RPN, RetinaNet and the R-CNN box head
  (torchvision ``Matcher``, detectron2 ``Matcher``, mmdet ``MaxIoUAssigner``, TF ``ArgMaxMatcher``,
  py-faster-rcnn ``anchor_target_layer``).
* :func:`ssd_match` is SSD's "match every ground truth to its best default box first, then threshold"
  (torchvision ``SSDMatcher``, ssd.pytorch ``match``, Caffe SSD ``MatchBBox`` with BIPARTITE + PER_PREDICTION).

A worked example (detectron2's docstring style). Thresholds ``low = 0.3``, ``high = 0.7``::

    iou = [[0.10, 0.60, 0.60, 0.20, 0.00, 0.75],     # gt 0
           [0.50, 0.60, 0.10, 0.29, 0.00, 0.30]]     # gt 1
    best gt per anchor (first on ties):     0     0     0     1     0     0
    best IoU per anchor:                 0.50  0.60  0.60  0.29  0.00  0.75
    thresholds:                            -2    -2    -2    -1    -1     0
    low-quality step: gt 0's best anchor is 5 (already positive); gt 1's best IoU is 0.60, reached
    by anchor 1, which is promoted, and regresses to ITS best gt (0), not to gt 1 (torchvision):
                                           -2     0    -2    -1    -1     0

Where the frameworks differ (SPEC-conventions section 4; every difference is a keyword here):

* ``positive_strict``: every code base uses ``iou >= high`` for positives; the Faster R-CNN paper says
  "higher than 0.7" (``convention="paper"``). Negatives are always ``iou < low``.
* ``low_quality``: which anchors the "best anchor of every ground truth" rule promotes, and to which gt.

  ======================================  =====================================================
  ``"off"``                               no promotion (torchvision box head, SSD's base step)
  ``"all_ties_argmax_gt"``                every anchor tying a gt's best IoU; it keeps ITS OWN
                                          argmax gt (torchvision, detectron2, py-faster-rcnn;
                                          detectron2#1162)
  ``"all_ties_forcing_gt_last_wins"``     every tying anchor is assigned to the gt that promotes
                                          it; gts are visited in order so the last one wins
                                          (mmdet ``MaxIoUAssigner``, ``gt_max_assign_all=True``)
  ``"first_forcing_gt_last_wins"``        only the first best anchor of each gt, forcing gt, last
                                          gt wins (mmdet ``gt_max_assign_all=False``, its SSD)
  ``"first_forcing_gt_first_wins"``       only the first best anchor of each gt, forcing gt, the
                                          lower gt index wins (TF ``ArgMaxMatcher`` with
                                          ``force_match_for_each_row=True``)
  ======================================  =====================================================

* ``min_pos_iou``: a gt promotes anchors only if its best IoU is ``>= min_pos_iou`` (mmdet; RPN 0.3,
  RetinaNet 0.0; mmdetection#6821). ``-inf`` = no gate (every other framework).
* ``background_after``: Detectron1's RetinaNet (and py-faster-rcnn with ``RPN_CLOBBER_POSITIVES``)
  writes the background label *after* the positives, so a promoted anchor whose best IoU is below
  ``low`` ends up negative again.
* ``empty_gt`` (M = 0): ``"raise"`` with torchvision's message, ``"all_negative"`` (detectron2, mmdet,
  TF) or ``"all_ignore"`` (Caffe SSD, which mines no negatives in an image without objects).

Ties: the best gt of an anchor is the **first** maximal row (``torch.max(dim=0)`` and ``np.argmax``
agree); the low-quality test is exact equality with the row maximum, so a value 1 ulp below the
maximum is not a tie (detectron2#3750). NaN (only with ``allow_nan=True``) behaves as in torch: it is
the largest value, the first NaN wins the argmax, it fails every threshold comparison and so counts as
a *positive* match, and a row whose maximum is NaN promotes nothing.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks
from refdet import conventions

__all__ = [
    "LOW_QUALITY_MODES",
    "EMPTY_GT_POLICIES",
    "SSD_PREMATCH_MODES",
    "MatchResult",
    "match",
    "match_details",
    "ssd_match",
]

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2

LOW_QUALITY_MODES = ("off", "all_ties_argmax_gt", "all_ties_forcing_gt_last_wins",
                     "first_forcing_gt_last_wins", "first_forcing_gt_first_wins")
EMPTY_GT_POLICIES = ("raise", "all_negative", "all_ignore")
SSD_PREMATCH_MODES = ("last_wins", "first_wins", "greedy_bipartite", "off")

_NO_GT_MESSAGE = "No ground-truth boxes available for one of the images during training"

_INF = float("inf")


def _check_gate(v):
    """min_pos_iou: -inf (no gate) or a quality in [-1, 1] (an IoU, or a GIoU); the declaration's
    ``high=1.0`` has refused ``v > 1`` already."""
    if v != -_INF and v < -1.0:
        raise ValueError(f"`min_pos_iou` must be -inf (no gate) or lie in [-1, 1] (an IoU or a GIoU); got {v}")
    return v


def _check_floor(v):
    """neg_floor: -inf (no floor) or a quality in [-1, 1] (GIoU lies in [-1, 1]); the declaration's
    ``high=1.0`` has refused ``v > 1`` already."""
    if v != -_INF and v < -1.0:
        raise ValueError(f"`neg_floor` must be -inf (no floor) or lie in [-1, 1]; got {v}")
    return v


conventions.register(
    "match",
    {
        "torchvision": {"positive_strict": False, "low_quality": "all_ties_argmax_gt",
                        "min_pos_iou": -_INF, "background_after": False, "empty_gt": "raise", "neg_floor": -_INF},
        "detectron2": {"positive_strict": False, "low_quality": "all_ties_argmax_gt",
                       "min_pos_iou": -_INF, "background_after": False, "empty_gt": "all_negative",
                       "neg_floor": -_INF},
        "mmdet": {"positive_strict": False, "low_quality": "all_ties_forcing_gt_last_wins",
                  "min_pos_iou": 0.3, "background_after": False, "empty_gt": "all_negative", "neg_floor": 0.0},
        "caffe": {"positive_strict": False, "low_quality": "all_ties_argmax_gt",
                  "min_pos_iou": -_INF, "background_after": False, "empty_gt": "raise", "neg_floor": -_INF},
        "tf": {"positive_strict": False, "low_quality": "first_forcing_gt_first_wins",
               "min_pos_iou": -_INF, "background_after": False, "empty_gt": "all_negative",
               "neg_floor": -_INF},
        "paper": {"positive_strict": True, "low_quality": "all_ties_argmax_gt",
                  "min_pos_iou": -_INF, "background_after": False, "empty_gt": "all_negative",
                  "neg_floor": -_INF},
    },
    knobs={
        "positive_strict": conventions.flag(
            "positive iff IoU > high (paper) instead of IoU >= high (all code)",
            source="Faster R-CNN paper 3.1.2 'higher than 0.7'; torchvision _utils.py Matcher "
                   "(matched_vals >= high)"),
        "low_quality": conventions.choice(
            LOW_QUALITY_MODES, "which anchors 'best anchor of each gt' promotes and to which gt",
            source="torchvision Matcher.set_low_quality_matches_; detectron2 matcher.py; mmdet "
                   "MaxIoUAssigner gt_max_assign_all; TF ArgMaxMatcher force_match_for_each_row"),
        "min_pos_iou": conventions.number(
            "a gt promotes anchors only if its best IoU >= min_pos_iou (-inf: no gate; else in [-1, 1])",
            low=-_INF, high=1.0, check=_check_gate, source="mmdet MaxIoUAssigner min_pos_iou (mmdetection#6821)"),
        "background_after": conventions.flag(
            "write background (IoU < low) after the positives",
            source="Detectron1 roi_data/retinanet.py; py-faster-rcnn RPN_CLOBBER_POSITIVES"),
        "empty_gt": conventions.choice(
            EMPTY_GT_POLICIES, "what M = 0 ground truths gives",
            source="torchvision Matcher raises; detectron2 matcher.py 77-87 all negative; Caffe SSD "
                   "mines nothing (weiliu89/caffe#145)"),
        "neg_floor": conventions.number(
            "negatives need floor <= max IoU < low (mmdet: 0, so a negative GIoU is ignored; -inf or in [-1, 1])",
            low=-_INF, high=1.0, check=_check_floor,
            source="mmdet MaxIoUAssigner.assign_wrt_overlaps (max_overlaps >= 0)"),
    },
    doc="torchvision models/detection/_utils.py Matcher 357-416; detectron2 modeling/matcher.py 62-127 "
        "(empty gt 77-87); mmdet MaxIoUAssigner.assign_wrt_overlaps 242-320 (RPN min_pos_iou=0.3; "
        "RetinaNet 0.0: pass min_pos_iou=0.0); py-faster-rcnn anchor_target_layer.py 135-154 (an "
        "image without gt breaks its argmax: 'raise'); TF ArgMaxMatcher(force_match_for_each_row=True); "
        "Faster R-CNN paper section 3.1.2 ('higher than 0.7', 'lower than 0.3 for all gt boxes'). "
        "Detectron1 RetinaNet: convention='caffe', background_after=True, high=0.5, low=0.4.",
)

conventions.register(
    "ssd_match",
    {
        "torchvision": {"prematch": "last_wins", "positive_strict": False, "candidate_eps": -_INF,
                        "empty_gt": "raise"},
        "mmdet": {"prematch": "last_wins", "positive_strict": False, "candidate_eps": -_INF,
                  "empty_gt": "all_negative"},
        "caffe": {"prematch": "greedy_bipartite", "positive_strict": False, "candidate_eps": 1e-6,
                  "empty_gt": "all_ignore"},
        "tf": {"prematch": "first_wins", "positive_strict": False, "candidate_eps": -_INF,
               "empty_gt": "all_negative"},
        "paper": {"prematch": "greedy_bipartite", "positive_strict": True, "candidate_eps": -_INF,
                  "empty_gt": "all_negative"},
    },
    knobs={
        "prematch": conventions.choice(
            SSD_PREMATCH_MODES, "how each gt claims its best default box first",
            source="torchvision SSDMatcher (last gt wins); TF ArgMaxMatcher (first wins); Caffe "
                   "bbox_util.cpp MatchBBox BIPARTITE (greedy)"),
        "positive_strict": conventions.flag(
            "positive iff IoU > threshold (paper) instead of >= (code)",
            source="SSD paper 2.2 'higher than 0.5'; torchvision Matcher (>=)"),
        "candidate_eps": conventions.number(
            "only IoUs > candidate_eps can be matched at all (-inf: no filter)", low=-_INF, high=_INF,
            source="Caffe bbox_util.cpp MatchBBox (overlap > 1e-6)"),
        "empty_gt": conventions.choice(
            EMPTY_GT_POLICIES, "what M = 0 ground truths gives",
            source="torchvision SSDMatcher raises; Caffe SSD mines no negatives (weiliu89/caffe#145)"),
    },
    doc="torchvision SSDMatcher (_utils.py 419-432): Matcher(t, t, False), then matches[argmax_n iou[m]] "
        "= m for every gt, duplicate writes leave the last gt (CPU). ssd.pytorch box_utils.match: the "
        "same. mmdet SSD: MaxIoUAssigner(0.5, 0.5, min_pos_iou=0, gt_max_assign_all=False): the same. "
        "TF ArgMaxMatcher(force_match_for_each_row=True): forced, lower gt wins. Caffe SSD "
        "bbox_util.cpp MatchBBox: greedy global bipartite (strict >, overlaps > 1e-6), then "
        "PER_PREDICTION with overlap >= threshold. SSD paper: 'best jaccard overlap', then '> 0.5'.",
)


Convention = Union[str, conventions.Profile]


class MatchResult(NamedTuple):
    """Everything :func:`match_details` knows about one assignment, in every framework's encoding.

    Attributes
    ----------
    matches : ndarray of int64, shape (N,)
        torchvision / TF encoding: gt index, -1 (negative) or -2 (ignored).
    labels : ndarray of int64, shape (N,)
        detectron2 encoding: 1 positive, 0 negative, -1 ignored.
    matched_gt : ndarray of int64, shape (N,)
        detectron2's ``matches``: the gt each anchor regresses to, defined for every anchor (the
        argmax gt, or the forcing gt in the forcing modes); 0 when M = 0.
    gt_inds : ndarray of int64, shape (N,)
        mmdet's ``assigned_gt_inds``: 1-based gt index, 0 negative, -1 ignored.
    max_iou : ndarray, shape (N,)
        Best IoU of each anchor over the gts (mmdet ``max_overlaps``); 0 when M = 0.
    gt_max_iou : ndarray, shape (M,)
        Best IoU of each gt over the anchors (``highest_quality_foreach_gt``).
    forced : ndarray of bool, shape (N,)
        Anchors picked by the low-quality step (whether or not they were positive already).
    """
    matches: np.ndarray
    labels: np.ndarray
    matched_gt: np.ndarray
    gt_inds: np.ndarray
    max_iou: np.ndarray
    gt_max_iou: np.ndarray
    forced: np.ndarray


def _as_quality_matrix(iou):
    """Validate the shape and kind of an (M, N) matrix; return it in the working dtype."""
    arr = _checks.as_array(iou, "iou")
    if arr.ndim != 2:
        raise ValueError(f"`iou` must be 2-D with shape (M, N) (ground truths x anchors); got shape {arr.shape}")
    return arr.astype(_checks.working_dtype(arr.dtype), copy=False)


def _check_values(q, vals, allow_nan=False):
    """Reject NaN (unless ``allow_nan``) and +inf, looking only at the column maxima ``vals``.

    ``np.max`` propagates NaN and +inf, so ``vals`` holds one iff ``q`` does; the full matrix is
    scanned only to name the first offending element. -inf never matches anything and is accepted.
    With ``allow_nan`` a NaN column maximum hides a +inf of its column, so those columns are scanned.
    """
    if allow_nan:
        bad = np.isposinf(vals)
        nan = np.isnan(vals)
        bad[nan] = np.isposinf(q[:, nan]).any(axis=0)
    else:
        bad = ~np.isfinite(vals)
    if bad.any():
        # name the first element that is refused: -inf is accepted, and NaN too with allow_nan
        accepted = np.isneginf(q) | np.isnan(q) if allow_nan else np.isneginf(q)
        _checks.check_finite(np.where(accepted, 0, q), "iou")


_THRESHOLD_SOURCE = "an IoU lies in [0, 1]; a threshold outside cannot mean more than 0 or 1 does"


def _check_thresholds(high, low):
    high = _checks.check_unit_threshold(high, "high", source=_THRESHOLD_SOURCE)
    low = _checks.check_unit_threshold(low, "low", source=_THRESHOLD_SOURCE)
    if low > high:  # torchvision: torch._assert(low_threshold <= high_threshold)
        raise ValueError(f"`low` must be <= `high`; got low={low}, high={high}")
    return high, low


def _empty_result(n, policy):
    if policy == "raise":
        # torchvision's exact text (tests/test_matcher.py holds them equal): a documented answer of
        # the fuzz suite, although it does not name `iou`
        raise ValueError(_NO_GT_MESSAGE)
    fill = BELOW_LOW_THRESHOLD if policy == "all_negative" else BETWEEN_THRESHOLDS
    return np.full(n, fill, dtype=np.int64)  # pragma: no mutate (a Python int fill is int64 already on 64-bit numpy 2)


def _argmax_columns(q, cols, vals):
    """First maximal row of each column in ``cols`` (torch.max(dim=0) indices), shape (len(cols),).

    ``vals`` is ``q.max(axis=0)``. For a few columns the (M, C) gather is argmax-ed directly; for
    many, ``np.argmax(axis=0)`` would transpose the whole matrix, so instead each row, from the last
    to the first, writes its index where it reaches the column maximum: the first row wins, and the
    matrix is read row by row (contiguous). NaN columns go through ``np.argmax`` (first NaN wins,
    as in torch).
    """
    m, n = q.shape
    if cols.size * 8 < n:  # pragma: no mutate (a speed choice: both ways give the first maximal row)
        return q[:, cols].argmax(axis=0)                                    # int64 (np.intp)
    if np.isnan(vals[cols]).any():
        return q.argmax(axis=0)[cols]
    idx = np.zeros(n, dtype=np.int64)  # pragma: no mutate (any dtype: the callers store it in int64 matches)
    for i in range(m - 1, -1, -1):  # a loop over gts, each step vectorised over all N anchors
        np.copyto(idx, i, where=q[i] == vals)
    return idx[cols]


def _tie_pairs(q, rowmax, gate):
    """(gt, anchor) pairs with ``q[gt, anchor] == rowmax[gt]`` for the gated gts, row-major order.

    One vectorised comparison per gt row (contiguous, no (M, N) temporary); a gt whose best IoU is
    NaN ties nothing (``NaN == NaN`` is false, as in torch).
    """
    rows = np.flatnonzero(gate & ~np.isnan(rowmax))
    hits = [np.flatnonzero(q[i] == rowmax[i]) for i in rows]  # loop over gts, vectorised over anchors
    if not hits:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)  # pragma: no mutate (_assign returns on size 0)
    g = np.repeat(rows.astype(np.int64), [h.size for h in hits])  # pragma: no mutate (gts < 2**53: ufunc.at casts back)
    return g, np.concatenate(hits).astype(np.int64)


def _assign(pairs_gt, pairs_anchor, n, last_wins):
    """For each anchor the last (or first) gt among the pairs naming it; -1 where none does."""
    out = np.full(n, -1, dtype=np.int64)  # pragma: no mutate (callers read only >= 0; int64 already)
    if pairs_gt.size == 0:
        return out
    if last_wins:
        np.maximum.at(out, pairs_anchor, pairs_gt)
    else:
        big = np.iinfo(np.int64).max
        tmp = np.full(n, big, dtype=np.int64)  # pragma: no mutate (int64 max: np.full makes it int64)
        np.minimum.at(tmp, pairs_anchor, pairs_gt)
        out = np.where(tmp == big, -1, tmp)  # pragma: no mutate (callers read only >= 0)
    return out


def _match_core(q, high, low, s, allow_low_quality_matches, allow_nan):
    """The matcher on a validated (M, N) matrix with M > 0. Returns (matches, forced_gt, vals, rowmax).

    ``forced_gt`` (N,) is the gt each anchor picked by the low-quality step was given (-1 for the
    others; ``None`` when the step did not run); ``rowmax`` is ``None`` when the step did not run.
    """
    m, n = q.shape
    t = q.dtype.type
    hi, lo = t(high), t(low)  # thresholds compared in the matrix's dtype, as torch does
    vals = q.max(axis=0)                                                    # (N,) best IoU per anchor
    _check_values(q, vals, allow_nan)
    below = vals < lo
    if np.isfinite(s["neg_floor"]):  # mmdet: only 0 <= max IoU < low is negative
        below &= vals >= t(s["neg_floor"])
    # NaN fails torch's "below" and "between" tests and so stays matched: it counts as positive
    positive = (vals > hi if s["positive_strict"] else vals >= hi) | np.isnan(vals)
    matches = np.full(n, BETWEEN_THRESHOLDS, dtype=np.int64)  # pragma: no mutate (an int fill is int64 already)
    matches[below] = BELOW_LOW_THRESHOLD

    mode = s["low_quality"] if allow_low_quality_matches else "off"
    rowmax = None
    forced_gt = None
    promote = np.zeros(0, dtype=np.int64)  # pragma: no mutate (read only when not empty)
    if mode != "off":
        rowmax = q.max(axis=1)                                              # (M,) best IoU per gt
        gate = rowmax >= t(s["min_pos_iou"]) if np.isfinite(s["min_pos_iou"]) else np.ones(m, bool)
        if mode.startswith("all_ties"):
            g, a = _tie_pairs(q, rowmax, gate)
        else:
            # only the first best anchor of each gated gt (np.argmax / torch.max(dim=1): first index)
            g = np.flatnonzero(gate)
            a = q.argmax(axis=1)[g].astype(np.int64)
        if mode == "all_ties_argmax_gt":
            hit = np.zeros(n, dtype=bool)
            hit[a] = True
            promote = np.flatnonzero(hit)
        else:
            forced_gt = _assign(g, a, n, last_wins=mode.endswith("last_wins"))

    # argmax gt only where it is needed: positives and anchors promoted to their own argmax gt
    if promote.size:
        need = np.flatnonzero(positive | hit)
    else:
        need = np.flatnonzero(positive)
    if need.size:
        best = _argmax_columns(q, need, vals)
        pos_set = positive[need]  # pragma: no mutate (need[None] takes promoted too: the next line sets them)
        matches[need[pos_set]] = best[pos_set]
        if promote.size:
            matches[promote] = best[np.searchsorted(need, promote)]
    if mode == "all_ties_argmax_gt":
        forced_gt = np.full(n, -1, dtype=np.int64)  # pragma: no mutate (only >= 0 is read; int64 already)
        forced_gt[promote] = matches[promote]       # each promoted anchor keeps its own argmax gt
    elif forced_gt is not None:
        hit = forced_gt >= 0
        matches[hit] = forced_gt[hit]
    if s["background_after"]:
        matches[below] = BELOW_LOW_THRESHOLD
    return matches, forced_gt, vals, rowmax


@conventions.documented("match")
def match(iou: ArrayLike, *, high: float = 0.7, low: float = 0.3, allow_low_quality_matches: bool = True,
          convention: Convention = "torchvision", low_quality: Optional[str] = None,
          min_pos_iou: Optional[float] = None, positive_strict: Optional[bool] = None,
          background_after: Optional[bool] = None, empty_gt: Optional[str] = None,
          neg_floor: Optional[float] = None, allow_nan: bool = False) -> np.ndarray:
    """Max-IoU matching of anchors to ground truths (torchvision ``Matcher`` by default).

    Reference: :func:`refdet.reference.matcher.match` (best gt per anchor, the three bands, then the
    low-quality rule per gt, as loops); tests hold the two equal under every convention.

    Parameters
    ----------
    iou : ndarray, shape (M, N)
        Quality matrix, ground truths x anchors (``box_iou(gt_boxes, anchors)``). Any finite real
        values (GIoU may be negative). float32 is compared in float32 against ``float32(high)``.
    high, low : float
        An anchor whose best IoU is ``>= high`` is positive, ``< low`` negative, in between ignored.
        ``low <= high`` is required (``low == high`` leaves no ignore band: Fast R-CNN's 0.5/0.5).
    allow_low_quality_matches : bool
        Run the "best anchor of each gt" step (Faster R-CNN's rule (i)). ``False`` is the same as
        ``low_quality="off"``.
    convention : {"torchvision", "detectron2", "mmdet", "caffe", "tf", "paper"}
        Sets the defaults of the knobs below (``refdet.conventions.describe("match")``).
    low_quality : str, optional
        One of :data:`LOW_QUALITY_MODES` (see the module docstring).
    min_pos_iou : float, optional
        Gate of the low-quality step (mmdet). ``-inf`` disables it.
    positive_strict : bool, optional
        ``IoU > high`` for positives (the paper) instead of ``>=``.
    background_after : bool, optional
        Re-label anchors with best IoU ``< low`` as negative after the low-quality step (Detectron1
        RetinaNet).
    empty_gt : {"raise", "all_negative", "all_ignore"}, optional
        What M = 0 gives. ``"raise"`` raises torchvision's ``ValueError("No ground-truth boxes
        available for one of the images during training")``.
    neg_floor : float, optional
        Negatives need ``neg_floor <= best IoU < low``; below the floor an anchor is ignored (-2).
        mmdet uses 0 (``max_overlaps >= 0``), which only matters for qualities that can be negative
        (GIoU); ``-inf`` elsewhere.
    allow_nan : bool
        Accept NaN (torchvision's ``box_iou`` of two identical zero-area boxes) and treat it as torch
        does; by default NaN is rejected.

    Returns
    -------
    ndarray of int64, shape (N,)
        ``m >= 0`` matched gt, ``-1`` negative, ``-2`` ignored. N = 0 gives an empty array
        (torchvision raises "No proposal boxes available ..." there).

    Examples
    --------
    >>> match([[0.1, 0.6, 0.6, 0.2, 0.0, 0.75], [0.5, 0.6, 0.1, 0.29, 0.0, 0.3]]).tolist()
    [-2, 0, -2, -1, -1, 0]
    >>> match([[0.1, 0.6, 0.6, 0.2, 0.0, 0.75], [0.5, 0.6, 0.1, 0.29, 0.0, 0.3]],
    ...       convention="mmdet").tolist()                   # anchor 1 goes to the gt that forced it
    [-2, 1, -2, -1, -1, 0]
    """
    s = conventions.resolve("match", convention, low_quality=low_quality, min_pos_iou=min_pos_iou,
                            positive_strict=positive_strict, background_after=background_after,
                            empty_gt=empty_gt, neg_floor=neg_floor)
    return _run(iou, high, low, allow_low_quality_matches, s, allow_nan, fast=True)


@conventions.documented("match")
def match_details(iou: ArrayLike, *, high: float = 0.7, low: float = 0.3, allow_low_quality_matches: bool = True,
                  convention: Convention = "torchvision", low_quality: Optional[str] = None,
                  min_pos_iou: Optional[float] = None, positive_strict: Optional[bool] = None,
                  background_after: Optional[bool] = None, empty_gt: Optional[str] = None,
                  neg_floor: Optional[float] = None, allow_nan: bool = False) -> MatchResult:
    """:func:`match` with everything it computed, in every framework's encoding.

    Reference: :func:`refdet.reference.matcher.match` (the ``matches`` field).

    Same parameters as :func:`match`.

    Returns
    -------
    MatchResult
        ``matches`` (torchvision), ``labels`` (detectron2), ``matched_gt`` (detectron2's matches),
        ``gt_inds`` (mmdet, 1-based), ``max_iou``, ``gt_max_iou``, ``forced``.
    """
    s = conventions.resolve("match", convention, low_quality=low_quality, min_pos_iou=min_pos_iou,
                            positive_strict=positive_strict, background_after=background_after,
                            empty_gt=empty_gt, neg_floor=neg_floor)
    return _run(iou, high, low, allow_low_quality_matches, s, allow_nan)


def _run(iou, high, low, allow_low_quality_matches, s, allow_nan, fast=False):
    """match / match_details on a resolved profile ``s`` (``fast``: the matches only)."""
    if not isinstance(allow_low_quality_matches, (bool, np.bool_)):
        raise TypeError("`allow_low_quality_matches` must be a bool; got "
                        f"{type(allow_low_quality_matches).__name__} {allow_low_quality_matches!r}")
    if not isinstance(allow_nan, (bool, np.bool_)):
        raise TypeError(f"`allow_nan` must be a bool; got {type(allow_nan).__name__} {allow_nan!r}")
    high, low = _check_thresholds(high, low)
    q = _as_quality_matrix(iou)
    m, n = q.shape
    if m == 0:
        matches = _empty_result(n, s["empty_gt"])
        if fast:
            return matches
        zeros = np.zeros(n, dtype=np.int64)
        return _details(matches, zeros, np.zeros(n, q.dtype), np.zeros(0, q.dtype), np.zeros(n, bool))
    if n == 0:
        matches = np.zeros(0, dtype=np.int64)
        if fast:
            return matches
        # the best IoU of a gt over no anchors is the max of an empty set: -inf
        return _details(matches, matches.copy(), np.zeros(0, q.dtype), np.full(m, -np.inf, q.dtype),
                        np.zeros(0, bool))
    matches, forced_gt, vals, rowmax = _match_core(q, high, low, s, allow_low_quality_matches, allow_nan)
    if fast:
        return matches
    argmax_gt = q.argmax(axis=0).astype(np.int64)  # pragma: no mutate (argmax is int64 already)
    forced = forced_gt >= 0 if forced_gt is not None else np.zeros(n, bool)
    matched_gt = argmax_gt.copy()
    if forced_gt is not None and s["low_quality"] != "all_ties_argmax_gt":  # pragma: no mutate (there it is argmax_gt)
        matched_gt[forced] = forced_gt[forced]
    if rowmax is None:
        rowmax = q.max(axis=1)
    return _details(matches, matched_gt, vals, rowmax, forced)


def _details(matches, matched_gt, vals, rowmax, forced):
    labels = np.where(matches >= 0, 1, np.where(matches == BELOW_LOW_THRESHOLD, 0, -1)).astype(np.int64)
    gt_inds = np.where(matches >= 0, matches + 1,
                       np.where(matches == BELOW_LOW_THRESHOLD, 0, -1)).astype(np.int64)
    return MatchResult(matches=matches, labels=labels, matched_gt=matched_gt, gt_inds=gt_inds,
                       max_iou=vals, gt_max_iou=rowmax, forced=forced)


def _greedy_bipartite(q, eps):
    """Caffe SSD's BIPARTITE step: repeatedly take the largest remaining (gt, prior) overlap.

    Candidates are overlaps ``> eps``. Caffe scans priors in increasing index and the gt pool in
    increasing index with a strict ``>``, so among equal overlaps the lowest prior wins, then the
    lowest gt. Each gt and each prior is used at most once. Returns (N,) gt index or -1.

    One loop step per gt (M is small); each step re-scans only the gts whose best prior was taken.
    """
    m, n = q.shape
    w = np.where(q > q.dtype.type(eps), q, -np.inf)   # (M, N); eps = -inf keeps every finite overlap
    best_p = w.argmax(axis=1)                                               # (M,) first best prior
    best_v = w[np.arange(m), best_p]
    active = np.ones(m, dtype=bool)
    out = np.full(n, -1, dtype=np.int64)  # pragma: no mutate (the caller reads only claimed >= 0; int64 already)
    for _ in range(m):
        v = np.where(active, best_v, -np.inf)
        vmax = v.max()
        if vmax == -np.inf:
            break
        gts = np.flatnonzero(v == vmax)
        priors = best_p[gts]
        k = np.lexsort((gts, priors))[0]                                     # lowest prior, then gt
        g, p = gts[k], priors[k]
        out[p] = g
        active[g] = False  # pragma: no mutate (None stored in a bool array is False)
        w[:, p] = -np.inf
        redo = np.flatnonzero(active & (best_p == p))  # pragma: no mutate (| redoes rows not on p: same argmax)
        if redo.size:
            best_p[redo] = w[redo].argmax(axis=1)
            best_v[redo] = w[redo, best_p[redo]]
    return out


@conventions.documented("ssd_match")
def ssd_match(iou: ArrayLike, threshold: float = 0.5, *, convention: Convention = "torchvision",
              prematch: Optional[str] = None, positive_strict: Optional[bool] = None,
              candidate_eps: Optional[float] = None, empty_gt: Optional[str] = None) -> np.ndarray:
    """SSD matching: every gt first claims its best default box, then the rest is thresholded.

    Reference: :func:`refdet.reference.matcher.ssd_match` (loops per default box and per gt, Caffe's
    greedy bipartite step as the repeated "largest free pair"); tests hold the two equal.

    Parameters
    ----------
    iou : ndarray, shape (M, N)
        Ground truths x default boxes.
    threshold : float
        A default box not claimed in the first step is positive for its best gt if that IoU is
        ``>= threshold`` (``> threshold`` with ``positive_strict``), else negative (-1). There is no
        ignore band.
    convention : {"torchvision", "mmdet", "caffe", "tf", "paper"}
    prematch : {"last_wins", "first_wins", "greedy_bipartite", "off"}, optional
        ``"last_wins"``: each gt forces its first best default box; when two gts share it the later
        gt keeps it and the earlier gt ends up with no match from this step (torchvision SSDMatcher,
        ssd.pytorch, mmdet). ``"first_wins"``: the lower gt keeps it (TF). ``"greedy_bipartite"``:
        Caffe's global greedy one-to-one matching (strict ``>``, lowest prior then lowest gt on
        ties); two gts never share a prior. A claimed box keeps its gt even if another gt overlaps
        it more.
    positive_strict : bool, optional
        ``>`` instead of ``>=`` in the threshold step (the SSD paper says "higher than 0.5").
    candidate_eps : float, optional
        Only overlaps ``> candidate_eps`` can be matched in either step (Caffe: 1e-6, so a gt that
        overlaps nothing is never matched). ``-inf``: no such filter.
    empty_gt : {"raise", "all_negative", "all_ignore"}, optional
        torchvision's SSDMatcher raises (its ``SSD`` model catches M = 0 and uses all -1).

    Returns
    -------
    ndarray of int64, shape (N,)
        gt index or -1 (background); -2 only for ``empty_gt="all_ignore"``.

    Examples
    --------
    >>> ssd_match([[0.40, 0.10, 0.40], [0.45, 0.20, 0.05]]).tolist()       # TV8d
    [1, -1, -1]
    >>> ssd_match([[0.40, 0.10, 0.40], [0.45, 0.20, 0.05]], convention="caffe").tolist()
    [1, -1, 0]
    """
    s = conventions.resolve("ssd_match", convention, prematch=prematch, positive_strict=positive_strict,
                            candidate_eps=candidate_eps, empty_gt=empty_gt)
    eps = s["candidate_eps"]
    thr = _checks.check_unit_threshold(threshold, "threshold", source=_THRESHOLD_SOURCE)
    q = _as_quality_matrix(iou)
    m, n = q.shape
    if m == 0:
        return _empty_result(n, s["empty_gt"])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    colmax = q.max(axis=0)  # pragma: no mutate (only whether a NaN or inf occurs is read: every axis finds it)
    _check_values(q, colmax)
    t = q.dtype.type
    # threshold step (torchvision Matcher(t, t, False); Caffe PER_PREDICTION for unclaimed priors)
    qq = q if eps == -_INF else np.where(q > t(eps), q, -np.inf)  # pragma: no mutate (eps = -inf: np.where gives q)
    vals = qq.max(axis=0)
    pos = vals > t(thr) if s["positive_strict"] else vals >= t(thr)
    matches = np.full(n, BELOW_LOW_THRESHOLD, dtype=np.int64)
    idx = np.flatnonzero(pos)
    if idx.size:
        matches[idx] = _argmax_columns(qq, idx, vals)
    mode = s["prematch"]
    if mode == "off":
        return matches
    if mode == "greedy_bipartite":
        claimed = _greedy_bipartite(q, eps)
    else:
        best = qq.argmax(axis=1).astype(np.int64)                            # (M,) first best prior
        gts = np.arange(m)                                                   # int64
        if eps != -_INF:  # a gt with no candidate overlap claims nothing
            ok = np.isfinite(qq[gts, best])
            gts, best = gts[ok], best[ok]
        claimed = _assign(gts, best, n, last_wins=(mode == "last_wins"))
    hit = claimed >= 0
    matches[hit] = claimed[hit]
    return matches
