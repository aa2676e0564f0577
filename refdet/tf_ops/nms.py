"""TensorFlow's NMS kernels: ``NonMaxSuppressionV3/V4/V5`` and ``CombinedNonMaxSuppression``.

Source: ``tensorflow/core/kernels/image/non_max_suppression_op.cc`` (TF 2.21), read line by line:

* **IoU** (``IOU``): corners min/max-sorted per axis (either diagonal, ``[y1, x1, y2, x2]`` or
  ``[x1, y1, x2, y2]``: IoU is symmetric in the axes), computed in float32 whatever the box dtype::

      area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i);   likewise area_j
      if area_i <= 0 or area_j <= 0: IoU = 0            # degenerate boxes never suppress
      inter  = max(iymax - iymin, 0) * max(ixmax - ixmin, 0)
      IoU    = inter / (area_i + area_j - inter)         # i = the candidate, j = a selected box

  This is refdet's ``corner_order="any"`` NMS arithmetic (:func:`refdet.nms`, ``convention="tf"``).
* **Candidates**: boxes with ``score > score_threshold`` (strict; a NaN score is never a candidate),
  visited highest score first, **equal scores lowest index first** (the priority queue's comparator
  breaks ties by ``box_index``).
* **Hard NMS** (``soft_nms_sigma == 0``): a candidate is dropped when its IoU with a selected box is
  ``> iou_threshold`` (strict), the IoU rounded to the score dtype first. ``iou_threshold`` must be in
  [0, 1] (the kernel's ``InvalidArgument``).
* **Soft-NMS** (``soft_nms_sigma > 0``, V5): the weight is ``exp(scale * iou * iou)`` with
  ``scale = -0.5 / soft_nms_sigma`` (so ``exp(-iou^2 / (2 sigma))``, not the paper's ``/ sigma``) and
  **no hard threshold**: ``iou_threshold`` is validated but unused. Candidates are decayed lazily: a
  popped candidate is multiplied by the weights of the boxes selected since it was last examined
  (the newest first), and dropped as soon as its score is ``<= score_threshold`` (inclusive, where the
  initial filter is strict); if its score changed it goes back into the queue, otherwise it is
  selected with that score.
* ``max_output_size``: at most that many selections; ``pad_to_max_output_size`` (V4/V5) pads the
  indices with 0 (and the scores with 0) up to ``max_output_size``, and the number of valid outputs
  is returned beside them.

``CombinedNonMaxSuppression`` (same file, ``DoNMSPerClass`` / ``SelectResultPerBatch``) runs hard NMS
per (image, class) and merges the classes; its differences are written down in
:func:`combined_non_max_suppression`.

float32 inputs are computed in float32 in the kernel's order of operations (bit-exact against TF;
the soft-NMS weight uses glibc's ``expf``, reproduced in :mod:`refdet.tf_ops._libm`);
float64 inputs give the float64 answer (TF itself has only half and float kernels). One difference
is written down, not reproduced: TF runs its kernels with denormals flushed to zero (FTZ/DAZ,
``port::ScopedFlushDenormal``), so to TF a subnormal score or coordinate is 0.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple, Optional, Union

import numpy as np

from refdet import _checks
from refdet import _nms_engine as _engine
from refdet import conventions
from refdet.tf_ops import _libm
from refdet.tf_ops import _libstdcxx as _cxx

__all__ = ["non_max_suppression", "NMSResult", "combined_non_max_suppression", "CombinedNMSResult",
           "tf_iou"]


_SRC = "tensorflow/core/kernels/image/non_max_suppression_op.cc (TF 2.21)"

conventions.register(
    "tf_non_max_suppression",
    {"tf": {"gaussian_denominator": "2sigma", "hard_above_threshold": False, "score_cut": "inclusive",
            "ties": "lowest_index"}},
    knobs={
        "gaussian_denominator": conventions.choice(
            ("sigma", "2sigma"), "soft-NMS weight exp(-iou^2 / sigma) (paper) or exp(-0.5 iou^2 / sigma)",
            source=_SRC + ": scale = -0.5 / soft_nms_sigma; Bodla et al. 2017 use / sigma"),
        "hard_above_threshold": conventions.flag(
            "soft-NMS also drops a candidate whose IoU with a selected box is > iou_threshold",
            source=_SRC + ": suppress_weight returns the Gaussian weight whenever is_soft_nms (no cut)"),
        "score_cut": conventions.choice(
            ("inclusive", "strict"), "soft-NMS drops a decayed score <= score_threshold ('inclusive') "
                                     "or < score_threshold ('strict', mmcv's min_score)",
            source=_SRC + ": 'if (next_candidate.score <= score_threshold) break'"),
        "ties": conventions.choice(
            ("lowest_index", "highest_index"), "equal (decayed) scores: which box the queue gives first",
            source=_SRC + ": the queue's comparator breaks ties by box_index, lower first"),
    },
    doc="TF's NonMaxSuppressionV3/V4/V5 CPU kernel; the knobs exist to name what another "
        "implementation does differently (refdet.testing.conformance_tf explains mismatches with them).")

conventions.register(
    "tf_combined_non_max_suppression",
    {"tf": {"class_queue": "libstdc++", "merge_sort": "libstdc++"}},
    knobs={
        "class_queue": conventions.choice(
            ("libstdc++", "lowest_index"), "order of equal scores in the per-class queue: libstdc++'s "
                                           "std::priority_queue (score-only comparator) or lower index first",
            source=_SRC + " DoNMSPerClass: cmp = bs_i.score < bs_j.score; libstdc++ bits/stl_heap.h"),
        "merge_sort": conventions.choice(
            ("libstdc++", "stable"), "the merge of the classes: libstdc++'s std::sort (introsort, not "
                                     "stable) or a stable sort of the slot array",
            source=_SRC + " SelectResultPerBatch: std::sort(rc_cmp); libstdc++ bits/stl_algo.h"),
    },
    doc="TF's CombinedNonMaxSuppression CPU kernel; the knobs name the tie orders another "
        "implementation may use instead.")


class NMSResult(NamedTuple):
    """Output of :func:`non_max_suppression`.

    Attributes
    ----------
    selected_indices : ndarray of int64, shape (K,)
        In selection order (``K = max_output_size`` when padded, the padding is index 0).
    selected_scores : ndarray, shape (K,)
        The score each box had when it was selected (its decayed score in soft-NMS; padding 0).
    valid_outputs : int
        Number of real selections (V4/V5 ``valid_outputs``).
    """
    selected_indices: np.ndarray
    selected_scores: np.ndarray
    valid_outputs: int


class CombinedNMSResult(NamedTuple):
    """Output of :func:`combined_non_max_suppression` (TF's four outputs).

    Attributes
    ----------
    nmsed_boxes : ndarray, shape (B, P, 4)
    nmsed_scores : ndarray, shape (B, P)
    nmsed_classes : ndarray, shape (B, P)
        Class indices as floats (TF returns them as float32).
    valid_detections : ndarray of int64, shape (B,)
    """
    nmsed_boxes: np.ndarray
    nmsed_scores: np.ndarray
    nmsed_classes: np.ndarray
    valid_detections: np.ndarray


def tf_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """TF's ``IOU`` of one box (the candidate ``i``) with each of ``boxes`` (the selected ``j``).

    Parameters
    ----------
    box : ndarray, shape (4,)
    boxes : ndarray, shape (M, 4)
        Either diagonal; both in the same dtype (the arithmetic dtype).

    Returns
    -------
    ndarray, shape (M,)
        0 where either area is ``<= 0``; else ``inter / (area_i + area_j - inter)``.

    Raises
    ------
    TypeError, ValueError
        ``box`` not of shape (4,) or ``boxes`` not of shape (M, 4), or not real numbers (naming the
        argument). NaN and inf coordinates are computed with, as TF does.
    """
    box = _checks.as_float_array(box, "box", ndim=1, last=4, finite=False)
    boxes = _checks.as_boxes(boxes, "boxes", finite=False)
    return _tf_iou(box, boxes)


def _tf_iou(box, boxes):
    """:func:`tf_iou` on validated arrays (the NMS loops call it once per candidate)."""
    lo_i = np.minimum(box[[0, 1]], box[[2, 3]])                           # (2,) ymin, xmin
    hi_i = np.maximum(box[[0, 1]], box[[2, 3]])
    lo_j = np.minimum(boxes[:, [0, 1]], boxes[:, [2, 3]])                 # (M, 2)
    hi_j = np.maximum(boxes[:, [0, 1]], boxes[:, [2, 3]])
    area_i = (hi_i[0] - lo_i[0]) * (hi_i[1] - lo_i[1])
    area_j = (hi_j[:, 0] - lo_j[:, 0]) * (hi_j[:, 1] - lo_j[:, 1])       # (M,)
    zero = boxes.dtype.type(0)
    ext = np.maximum(np.minimum(hi_i, hi_j) - np.maximum(lo_i, lo_j), zero)   # (M, 2)
    inter = ext[:, 0] * ext[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_i + area_j - inter)
    return np.where((area_i <= 0) | (area_j <= 0), zero, iou)


def _score_threshold(x, name="score_threshold"):
    """TF's ``score_threshold``: a real scalar, any value (``-inf`` keeps every box, ``+inf`` none).

    ``NonMaxSuppressionV3Op::Compute`` and ``CombinedNonMaxSuppressionOp::Compute``
    (tensorflow/core/kernels/image/non_max_suppression_op.cc) only require a scalar; NaN is refused
    here because ``score > NaN`` is false for every score (an empty answer nobody means).
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        if isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf":
            x = x.item()
        else:
            raise TypeError(f"`{name}` must be a real number; got {type(x).__name__}"
                            + (f" of shape {x.shape}" if isinstance(x, np.ndarray) else ""))
    v = float(x)
    if np.isnan(v):
        raise ValueError(f"`{name}` must not be NaN; got nan")
    return v


def _working(b, s):
    """TF computes IoUs in float32 (float64 here for float64 input) and scores in their own dtype."""
    fdt = np.float64 if (b.dtype == np.float64 or s.dtype == np.float64) else np.float32
    sdt = np.float64 if fdt == np.float64 else (np.float16 if s.dtype == np.float16 else np.float32)
    return fdt, sdt


def _exp(x):
    """TF's ``Eigen::numext::exp<T>``: glibc ``expf`` for float (and for half, then rounded to half);
    the double ``exp`` for float64."""
    if x.dtype == np.float64:
        return np.exp(x)
    return x.dtype.type(_libm.expf(np.float32(x))[()])


def _soft_loop(b, s, k_max, thr, sthr, sigma, p):
    """TF's ``DoNonMaxSuppressionOp`` in both modes, one candidate at a time (the kernel's loop).

    ``b`` in the IoU dtype, ``s`` in the score dtype; ``thr``, ``sthr``, ``sigma`` scalars of the score
    dtype; ``p`` the resolved ``tf_non_max_suppression`` profile. Returns (indices, scores).
    """
    import heapq

    T = s.dtype.type
    soft = sigma > 0
    scale = (T(-0.5) if p.gaussian_denominator == "2sigma" else T(-1)) / sigma if soft else T(0)
    sign = 1 if p.ties == "lowest_index" else -1
    heap = [(-float(s[i]), sign * int(i), 0) for i in np.flatnonzero(s > sthr)]   # score desc, then index
    heapq.heapify(heap)
    sel, sel_scores = [], []
    score = {sign * k: s[sign * k] for _, k, _ in heap}
    while len(sel) < k_max and heap:
        _, k, begin = heapq.heappop(heap)
        i = sign * k
        orig = cur = score[i]
        hard = False
        if begin < len(sel):
            sims = _tf_iou(b[i], b[np.array(sel[begin:][::-1])]).astype(s.dtype)   # newest first
            for sim in sims:
                if soft:
                    cur = T(cur * _exp(scale * sim * sim))
                if sim > thr and (not soft or p.hard_above_threshold):
                    hard = True
                    break
                if cur <= sthr if p.score_cut == "inclusive" else cur < sthr:
                    break
        if hard:
            continue
        if cur == orig:
            sel.append(i)
            sel_scores.append(cur)
        elif cur > sthr if p.score_cut == "inclusive" else cur >= sthr:
            score[i] = cur
            heapq.heappush(heap, (-float(cur), k, len(sel)))
    return np.array(sel, np.int64), np.array(sel_scores, s.dtype)


@conventions.documented("tf_non_max_suppression")
def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, max_output_size: int,
                        iou_threshold: float = 0.5, score_threshold: float = -np.inf, *,
                        soft_nms_sigma: float = 0.0, pad_to_max_output_size: bool = False,
                        convention: Union[str, conventions.Profile] = "tf",
                        gaussian_denominator: Optional[str] = None, hard_above_threshold: Optional[bool] = None,
                        score_cut: Optional[str] = None, ties: Optional[str] = None) -> NMSResult:
    """TF ``NonMaxSuppressionV3/V4/V5`` (``tf.image.non_max_suppression``, ``..._padded``,
    ``..._with_scores``): hard or soft NMS with a score threshold.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        ``[y1, x1, y2, x2]`` (either diagonal; ``[x1, y1, x2, y2]`` gives the same answer).
    scores : ndarray, shape (N,)
        NaN scores are never candidates (``NaN > score_threshold`` is false), as in TF.
    max_output_size : int >= 0
        With ``pad_to_max_output_size``, a padded output above refdet's cap (2**28 entries) is refused
        with a ValueError naming it (TF would allocate it).
    iou_threshold : float in [0, 1]
        Hard NMS drops a candidate whose IoU with a selected box is ``> iou_threshold``; unused by
        soft-NMS (TF validates it all the same).
    score_threshold : float
        Candidates need ``score > score_threshold``; in soft-NMS a decayed score ``<= score_threshold``
        is dropped. Any real, ``+-inf`` included (TF checks only that it is a scalar:
        ``NonMaxSuppressionV3Op::Compute``); NaN is refused (it would drop every box).
    soft_nms_sigma : float >= 0
        0: hard NMS (V3/V4). > 0: Gaussian soft-NMS ``score * exp(-0.5 iou^2 / sigma)`` (V5).
    pad_to_max_output_size : bool
        Pad to ``max_output_size`` entries with index 0 and score 0 (V4/V5).
    convention : "tf" or conventions.Profile
    gaussian_denominator, hard_above_threshold, score_cut, ties : optional
        Override TF's behaviour to reproduce another implementation's (table at the end).

    Returns
    -------
    NMSResult(selected_indices, selected_scores, valid_outputs)

    Notes
    -----
    Hard NMS equals :func:`refdet.nms` with ``convention="tf"`` on the candidates, truncated to
    ``max_output_size`` (greedy NMS is prefix-stable); that is how it is computed here for float32 and
    float64 scores. Soft-NMS and float16 scores (TF rounds each IoU to half before comparing it) run
    TF's loop itself. Equal decayed scores again go to the lower index.
    """
    p = conventions.resolve("tf_non_max_suppression", convention, gaussian_denominator=gaussian_denominator,
                            hard_above_threshold=hard_above_threshold, score_cut=score_cut, ties=ties)
    b = _checks.as_boxes(boxes, "boxes")
    s = _checks.as_scores(scores, "scores", n=len(b), allow_nan=True,
                          dtype=np.float16 if np.asarray(scores).dtype == np.float16 else None)
    k_max = _checks.check_int(max_output_size, "max_output_size", low=0)
    thr = _checks.check_probability(iou_threshold, "iou_threshold")
    sthr = _score_threshold(score_threshold)
    sigma = _checks.check_positive(soft_nms_sigma, "soft_nms_sigma", strict=False)
    if not isinstance(pad_to_max_output_size, (bool, np.bool_)):
        raise TypeError(f"`pad_to_max_output_size` must be a bool; got {type(pad_to_max_output_size).__name__}")
    fdt, sdt = _working(b, s)
    b = b.astype(fdt, copy=False)
    s = s.astype(sdt, copy=False)
    T = np.dtype(sdt).type
    if sigma > 0 or sdt == np.float16:
        sel, sel_scores = _soft_loop(b, s, k_max, T(thr), T(sthr), T(sigma), p)
    else:
        cand = np.flatnonzero(s > T(sthr))
        order = cand[_engine.descending(s[cand], p.ties)]
        keep = _engine.greedy(b[order], thr, kind="any", inclusive=False, threshold_dtype="working")
        sel = order[keep][:k_max]
        sel_scores = s[sel]
    valid = len(sel)
    if pad_to_max_output_size and valid < k_max:
        # TF allocates the padded output as well (NonMaxSuppressionV4): refused above refdet's cap
        _checks.check_allocation(k_max, 8, "padded selected indices", name="max_output_size", keyword=False)
        sel = np.concatenate([sel, np.zeros(k_max - valid, np.int64)])
        sel_scores = np.concatenate([sel_scores, np.zeros(k_max - valid, sdt)])
    return NMSResult(sel.astype(np.int64), sel_scores, valid)


# --------------------------------------------------------------------------------------------------
# CombinedNonMaxSuppression
# --------------------------------------------------------------------------------------------------

def _score_less(a, b):
    return a[0] < b[0]


def _index_less(a, b):                  # a strict total order: equal scores, lower index on top
    return a[0] < b[0] or (a[0] == b[0] and a[1] > b[1])


def _per_class(b, s, size_per_class, thr, sthr, queue):
    """``DoNMSPerClass``: candidates ``s > sthr`` in a score-only priority queue, hard NMS (IoU > thr)."""
    less = _score_less if queue == "libstdc++" else _index_less
    heap = []
    for i in np.flatnonzero(s > sthr):
        _cxx.push_heap(heap, (s[i], int(i)), less)
    sel = []
    while len(sel) < size_per_class and heap:
        _, i = _cxx.pop_heap(heap, less)
        if sel and (_tf_iou(b[i], b[np.array(sel)]) > thr).any():
            continue
        sel.append(i)
    return sel


@conventions.documented("tf_combined_non_max_suppression")
def combined_non_max_suppression(boxes: np.ndarray, scores: np.ndarray, max_output_size_per_class: int,
                                 max_total_size: int, iou_threshold: float = 0.5,
                                 score_threshold: float = -np.inf, *, pad_per_class: bool = False,
                                 clip_boxes: bool = True, convention: Union[str, conventions.Profile] = "tf",
                                 class_queue: Optional[str] = None,
                                 merge_sort: Optional[str] = None) -> CombinedNMSResult:
    """TF ``CombinedNonMaxSuppression`` (``tf.image.combined_non_max_suppression``).

    Per image and class: hard NMS (IoU ``> iou_threshold``, candidates ``score > score_threshold``,
    at most ``min(max_output_size_per_class, N)`` selections); then per image the selections of all
    classes sorted by score, the best ``max_total_size`` kept.

    Parameters
    ----------
    boxes : ndarray, shape (B, N, q, 4)
        ``q = 1`` (one box shared by all classes) or ``q = K`` (a box per class); ``[y1, x1, y2, x2]``.
    scores : ndarray, shape (B, N, K)
    max_output_size_per_class, max_total_size : int > 0
        TF requires ``max_total_size > 0``; outputs above refdet's cap (2**28 elements) are refused
        with a ValueError naming ``max_total_size`` (TF only logs a warning above 10**6).
    iou_threshold : float in [0, 1]
    score_threshold : float
        Any real, ``+-inf`` included (TF checks only that it is a scalar); NaN is refused.
    pad_per_class : bool
        False: the outputs have ``P = max_total_size`` rows. True: ``P = min(max_total_size,
        max_output_size_per_class * K)``.
    clip_boxes : bool
        Clip the output coordinates to [0, 1] (normalized boxes); False returns them as given.
    convention : "tf" or conventions.Profile
    class_queue, merge_sort : optional
        Other tie orders (table at the end).

    Returns
    -------
    CombinedNMSResult(nmsed_boxes (B, P, 4), nmsed_scores (B, P), nmsed_classes (B, P),
    valid_detections (B,))
        Rows past ``valid_detections`` are zero. Scores are the original scores.

    Notes
    -----
    Unlike :func:`non_max_suppression`, the per-class queue compares **scores only** (no index
    tie-break): equal scores come out in the order of libstdc++'s ``std::priority_queue`` over a
    ``std::vector``, reproduced here exactly (:mod:`refdet.tf_ops._libstdcxx`), so that among
    overlapping boxes with equal scores the same box survives as in TF. The merge sorts TF's slot
    array (class ``c``'s ``j``-th selection at ``j + min(max_output_size_per_class, N) * c``, empty
    slots at score -inf) with ``std::sort``, which is not stable: equal scores across classes come out
    in libstdc++'s introsort order (reproduced, :mod:`refdet.tf_ops._libstdcxx`; it equals a stable
    sort when the array has at most 16 slots), and ``max_total_size`` may cut through them. That
    order is TF's, not a rule: another C++ library would give another. IoUs in float32 as in
    :func:`non_max_suppression` (float64 input: float64).
    """
    p = conventions.resolve("tf_combined_non_max_suppression", convention, class_queue=class_queue,
                            merge_sort=merge_sort)
    b = _checks.as_float_array(boxes, "boxes", ndim=4, last=4)
    s = _checks.as_float_array(scores, "scores", ndim=3, finite=False)
    if not isinstance(pad_per_class, (bool, np.bool_)):
        raise TypeError(f"`pad_per_class` must be a bool; got {type(pad_per_class).__name__}")
    if not isinstance(clip_boxes, (bool, np.bool_)):
        raise TypeError(f"`clip_boxes` must be a bool; got {type(clip_boxes).__name__}")
    B, N, q, _ = b.shape
    if s.shape[0] != B or s.shape[1] != N:
        raise ValueError(f"`scores` must have shape (B, N, K) = ({B}, {N}, K) to match `boxes`; got {s.shape}")
    K = s.shape[2]
    if q not in (1, K):
        raise ValueError(f"`boxes` must have shape (B, N, q, 4) with q = 1 or q = K = {K}; got {b.shape}")
    kpc = _checks.check_int(max_output_size_per_class, "max_output_size_per_class", low=1)
    total = _checks.check_int(max_total_size, "max_total_size", low=1)
    thr = _checks.check_probability(iou_threshold, "iou_threshold")
    sthr = _score_threshold(score_threshold)
    fdt = np.float64 if (b.dtype == np.float64 or s.dtype == np.float64) else np.float32
    b = b.astype(fdt, copy=False)
    s = s.astype(fdt, copy=False)
    T = np.dtype(fdt).type
    size_per_class = min(kpc, N)
    per_batch = min(total, kpc * K) if pad_per_class else total
    # the outputs are (B, per_batch, 4) boxes plus scores and classes: refused above refdet's cap
    _checks.check_allocation(B * per_batch * 6, np.dtype(fdt).itemsize, "padded boxes, scores and classes",
                             name="max_total_size", keyword=False)
    out_b = np.zeros((B, per_batch, 4), fdt)
    out_s = np.zeros((B, per_batch), fdt)
    out_c = np.zeros((B, per_batch), fdt)
    valid = np.zeros(B, np.int64)
    for bi in range(B):                                          # loop over (image, class)
        # TF's slot array: class c's j-th selection at j + size_per_class * c; empty slots score -inf
        slots = [(-np.inf, -1, -1)] * (size_per_class * K)
        for c in range(K):
            sel = _per_class(b[bi, :, c if q > 1 else 0], s[bi, :, c], size_per_class, T(thr), T(sthr),
                             p.class_queue)
            for j, i in enumerate(sel):
                slots[j + size_per_class * c] = (s[bi, i, c], i, c)
        if p.merge_sort == "libstdc++":
            _cxx.sort(slots, lambda u, v: v[0] < u[0])          # std::sort, descending score
        else:
            slots.sort(key=lambda u: -u[0])                     # Python's sort is stable
        n = min(sum(1 for x in slots if x[1] > -1), per_batch)
        valid[bi] = n
        for r, (sc, i, c) in enumerate(slots[:n]):
            bx = b[bi, i, c if q > 1 else 0]
            out_b[bi, r] = np.maximum(np.minimum(bx, T(1)), T(0)) if clip_boxes else bx
            out_s[bi, r] = sc
            out_c[bi, r] = c
    return CombinedNMSResult(out_b, out_s, out_c, valid)
