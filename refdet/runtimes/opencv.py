"""OpenCV dnn's detection helpers, reproduced exactly: ``NMSBoxes``, ``NMSBoxesBatched``, ``softNMSBoxes``,
``blobFromImage``.

OpenCV's boxes are ``cv::Rect`` / ``cv::Rect2d``: ``(x, y, width, height)``, not corners. The Python
binding picks the overload from the array: integer arrays are ``std::vector<cv::Rect>`` (int32
coordinates), float arrays and lists of Python floats ``std::vector<cv::Rect2d>`` (double). Scores are
``std::vector<float>``: float64 scores are rounded to float32 first. Every function here takes the same
inputs and returns the same answer (indices as int64 instead of OpenCV's int32).

Sources (OpenCV 4.x / 5.x; the algorithms are the same in both):

* ``modules/imgproc/src/nms.cpp`` (5.x; ``modules/dnn/src/nms.cpp`` in 4.x, which ``cv::dnn`` now
  forwards to): ``rectOverlap(a, b) = 1.f - static_cast<float>(jaccardDistance(a, b))``;
  ``NMSBoxesBatchedImpl``; ``softNMSBoxes``.
* ``nms.inl.hpp`` / ``detail::NMSBoxesFast`` (``NMSFast_``): ``GetMaxScoreIndex`` (``score >
  score_threshold``, ``std::stable_sort`` by descending score, then ``top_k``), the greedy loop with
  ``keep = overlap <= adaptive_threshold`` and ``adaptive_threshold *= eta`` after each kept box while
  ``eta < 1 && adaptive_threshold > 0.5``.
* ``modules/core/include/opencv2/core/types.hpp``: ``jaccardDistance`` (``Aa + Ab <= epsilon`` gives
  distance 0, i.e. IoU 1), ``Rect_::area() = width * height`` and ``operator &=`` (an empty rect,
  ``width <= 0 || height <= 0``, intersects nothing; the intersection width is
  ``min(Rx_min.width - (Rx_max.x - Rx_min.x), Rx_max.width)``).

How they differ from refdet's :func:`refdet.nms.nms` (all checked against ``cv2`` in
``tests/test_opencv_runtime.py``):

* IoU is computed in double and then rounded twice: ``overlap = 1.f - (float)(1.0 - inter / union)``,
  so an IoU near a threshold can land one float32 ulp away from ``inter / union`` in float32.
* Integer rects use **continuous** widths (``width * height``, no ``+1``): ``Rect(0, 0, 10, 10)``
  covers 10 x 10, the same as refdet's ``xyxy`` box ``[0, 0, 10, 10]``.
* Two boxes whose areas sum to zero (``<= DBL_EPSILON`` for Rect2d) have IoU **1**: identical zero-area
  boxes suppress each other, where torchvision's 0/0 = NaN never suppresses.
* ``eta < 1`` shrinks the threshold after each kept box, only while it is above 0.5 (Dollar's
  adaptive NMS); ``top_k`` truncates the **candidates** after sorting (before NMS), not the output.
* ``softNMSBoxes`` (int rects only) selects the maximum with ties to the **lowest index** at every
  step (refdet's :func:`refdet.nms.soft_nms` reproduces the C loops' working-array order instead);
  boxes below ``score_threshold`` are skipped, not removed, and the loop stops at the first selected
  maximum below it (``<``: a score equal to the threshold is selected).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from refdet import _checks
from refdet import _nms_engine as _engine

__all__ = ["rect_overlap", "nms_boxes", "nms_boxes_batched", "soft_nms_boxes", "SoftNMSBoxesResult",
           "blob_from_image"]

_INT32_MAX = 2 ** 31 - 1
_F32 = np.float32


# --------------------------------------------------------------------------------------------------
# rects and their overlap
# --------------------------------------------------------------------------------------------------

def _as_rects(rects, name="rects"):
    """``(rects as int64 or float64 (N, 4), integer)``: the overload OpenCV's binding would pick."""
    arr = _checks.as_array(rects, name)
    if arr.ndim == 1 and arr.shape[0] == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"`{name}` must have shape (N, 4) of (x, y, width, height); got {arr.shape}")
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must hold integer or float (x, y, width, height); got dtype bool")
    if arr.dtype.kind in "iu":
        r = arr.astype(np.int64)
        big = (np.abs(r) > _INT32_MAX).any() or (np.abs(r[:, 0] + r[:, 2]) > _INT32_MAX).any() or \
            (np.abs(r[:, 1] + r[:, 3]) > _INT32_MAX).any() or (np.abs(r[:, 2] * r[:, 3]) >= 2 ** 30).any()
        if big:
            raise ValueError(f"`{name}`: OpenCV computes cv::Rect corners and areas in int32; these rects "
                             "overflow it (|width * height| must stay below 2**30)")
        return r, True
    r = arr.astype(np.float64)
    _checks.check_finite(r, name)
    return r, False


def _overlap(a, b, integer):
    """OpenCV's ``rectOverlap`` of every pair: float32, shape (N, M).

    ``a`` (N, 4), ``b`` (M, 4) as returned by :func:`_as_rects` (int64 or float64).
    """
    ax, ay, aw, ah = (a[:, None, k] for k in range(4))          # (N, 1)
    bx, by, bw, bh = (b[None, :, k] for k in range(4))          # (1, M)
    area_a, area_b = aw * ah, bw * bh                           # Rect_::area(), in _Tp
    # operator&=: empty operands intersect nothing; Rx_min is the rect with the smaller x (b on a tie)
    a_x_first, a_y_first = ax < bx, ay < by                     # (N, M)
    x_min, w_min = np.where(a_x_first, ax, bx), np.where(a_x_first, aw, bw)
    x_max, w_max = np.where(a_x_first, bx, ax), np.where(a_x_first, bw, aw)
    y_min, h_min = np.where(a_y_first, ay, by), np.where(a_y_first, ah, bh)
    y_max, h_max = np.where(a_y_first, by, ay), np.where(a_y_first, bh, ah)
    apart = ((x_min < 0) & (x_min + w_min < x_max)) | ((y_min < 0) & (y_min + h_min < y_max))
    iw = np.minimum(w_min - (x_max - x_min), w_max)
    ih = np.minimum(h_min - (y_max - y_min), h_max)
    empty = (aw <= 0) | (ah <= 0) | (bw <= 0) | (bh <= 0) | apart | (iw <= 0) | (ih <= 0)
    inter = np.where(empty, 0, iw * ih).astype(np.float64)      # double Aab = (a & b).area()
    total = area_a + area_b                                     # Aa + Ab in _Tp
    eps = 0 if integer else np.finfo(np.float64).eps            # std::numeric_limits<_Tp>::epsilon()
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 1.0 - inter / (total - inter)                    # jaccardDistance, double
    dist = np.where(total <= eps, 0.0, dist)                    # "jaccard_index = 1 -> distance = 0"
    return _F32(1) - dist.astype(np.float32)                    # 1.f - static_cast<float>(distance)


def rect_overlap(rects1: np.ndarray, rects2: np.ndarray) -> np.ndarray:
    """OpenCV's IoU of every pair of rects (``rectOverlap`` in ``modules/imgproc/src/nms.cpp``).

    Parameters
    ----------
    rects1 : ndarray, shape (N, 4)
        ``(x, y, width, height)``; integer arrays are ``cv::Rect`` (int32), float arrays ``cv::Rect2d``.
    rects2 : ndarray, shape (M, 4)
        The same kind (both integer or both float).

    Returns
    -------
    ndarray of float32, shape (N, M)
        ``1.f - (float)(1.0 - inter / (Aa + Ab - inter))`` computed in double; 1 when the two areas
        sum to at most ``epsilon`` (0 for int, ``DBL_EPSILON`` for double), so identical zero-area
        rects have IoU 1. A rect with ``width <= 0`` or ``height <= 0`` intersects nothing.

    Examples
    --------
    >>> rect_overlap(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5], [3, 3, 0, 0]]))
    array([[0.5, 0. ]], dtype=float32)
    >>> rect_overlap(np.array([[3, 3, 0, 0]]), np.array([[3, 3, 0, 0]]))
    array([[1.]], dtype=float32)
    """
    a, ia = _as_rects(rects1, "rects1")
    b, ib = _as_rects(rects2, "rects2")
    if ia != ib:
        raise TypeError("`rects1` and `rects2` must both be integer (cv::Rect) or both float (cv::Rect2d); "
                        f"got {np.asarray(rects1).dtype} and {np.asarray(rects2).dtype}")
    return _overlap(a, b, ia)


# --------------------------------------------------------------------------------------------------
# NMSBoxes, NMSBoxesBatched
# --------------------------------------------------------------------------------------------------

def _opencv_scores(scores, n):
    s = _checks.as_array(scores, "scores")
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"`scores` must have shape ({n},) (one per rect); got {s.shape}")
    return s.astype(np.float32)            # std::vector<float>


def _check_nms_args(score_threshold, nms_threshold, eta, top_k, *, fn, check_score=True):
    sthr = _checks.check_real(score_threshold, "score_threshold")
    thr = _checks.check_real(nms_threshold, "nms_threshold")
    e = _checks.check_real(eta, "eta")
    k = _checks.check_int(top_k, "top_k")
    if check_score and sthr < 0:
        raise ValueError(f"`score_threshold` must be >= 0 (OpenCV {fn} asserts score_threshold >= 0); got {sthr}")
    if thr < 0:
        raise ValueError(f"`nms_threshold` must be >= 0 (OpenCV {fn} asserts nms_threshold >= 0); got {thr}")
    if not e > 0:
        raise ValueError(f"`eta` must be > 0 (OpenCV {fn} asserts eta > 0); got {e}")
    return sthr, thr, e, k


def _nms_fast(r, integer, s, score_threshold, nms_threshold, eta, top_k):
    """``detail::NMSBoxesFast``: candidates, stable sort, top_k, greedy loop with the adaptive threshold.

    One iteration per kept box: the running maximum overlap of every later candidate with the kept
    boxes is updated in one vectorised pass, and the next kept box is the first candidate whose
    maximum is ``<=`` the current threshold (a NaN overlap compares false and suppresses, as in C++).
    """
    cand = np.flatnonzero(s > _F32(score_threshold))            # scores[i] > threshold (NaN never)
    order = cand[_engine.descending(s[cand], "lowest_index")]    # std::stable_sort, descending
    if 0 < top_k < len(order):
        order = order[:top_k]                                   # top_k candidates, before NMS
    n = len(order)
    if n == 0:
        return np.zeros(0, np.int64)
    b = r[order]
    t = _F32(nms_threshold)
    e = _F32(eta)
    max_ov = np.full(n, -np.inf, np.float32)                    # max overlap with the kept boxes
    keep = []
    p = 0
    while True:
        keep.append(p)
        ov = _overlap(b[p:p + 1], b[p + 1:], integer)[0]        # (n - p - 1,)
        max_ov[p + 1:] = np.maximum(max_ov[p + 1:], ov)         # NaN propagates: suppressed below
        if e < 1 and t > 0.5:
            t = _F32(t * e)                                     # adaptive_threshold *= eta (float)
        nxt = np.flatnonzero(max_ov[p + 1:] <= t)
        if nxt.size == 0:
            break
        p = p + 1 + int(nxt[0])
    return order[np.array(keep, np.int64)]


def nms_boxes(rects: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float, *,
              eta: float = 1.0, top_k: int = 0) -> np.ndarray:
    """``cv2.dnn.NMSBoxes``: greedy NMS on ``(x, y, w, h)`` rects with OpenCV's arithmetic.

    Parameters
    ----------
    rects : ndarray, shape (N, 4)
        ``(x, y, width, height)``. Integer arrays are ``cv::Rect`` (int32; corners and areas must fit),
        float arrays ``cv::Rect2d`` (double), as the Python binding chooses.
    scores : ndarray, shape (N,)
        Rounded to float32 (``std::vector<float>``). NaN scores are never candidates.
    score_threshold : float >= 0
        Candidates have ``score > float32(score_threshold)`` (strict: a score equal to it is dropped).
    nms_threshold : float >= 0
        A candidate is kept when its overlap with every kept box is ``<= nms_threshold`` (float32
        comparison; an IoU exactly on the threshold is kept, as in torchvision).
    eta : float > 0
        Adaptive NMS: after each kept box, ``threshold *= eta`` (float32) while ``eta < 1`` and the
        threshold is above 0.5.
    top_k : int
        If ``> 0``, only the ``top_k`` highest-scoring candidates enter NMS (OpenCV's documentation says
        "keep at most top_k picked indices"; the code truncates the sorted candidates, which can give
        fewer than ``top_k`` kept boxes when some of them are suppressed).

    Returns
    -------
    ndarray of int64, shape (K,)
        Kept indices in decreasing score order; equal scores lowest index first (stable sort).

    Notes
    -----
    Source: ``modules/imgproc/src/nms.cpp`` ``NMSBoxes`` -> ``detail::NMSBoxesFast`` (``nms.inl.hpp``
    ``NMSFast_`` in OpenCV 4.x). The overlap is :func:`rect_overlap`. ``ValueError`` for the arguments
    OpenCV asserts on (``score_threshold >= 0``, ``nms_threshold >= 0``, ``eta > 0``).

    Examples
    --------
    IoU([0, 0, 10, 10], [0, 0, 10, 5]) = 50 / 100 = 0.5: kept at threshold 0.5, suppressed below it.

    >>> r = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 5, 5]])
    >>> nms_boxes(r, np.array([0.9, 0.8, 0.7]), 0.0, 0.5)
    array([0, 1, 2])
    >>> nms_boxes(r, np.array([0.9, 0.8, 0.7]), 0.0, 0.4)
    array([0, 2])
    """
    r, integer = _as_rects(rects)
    s = _opencv_scores(scores, len(r))
    sthr, thr, e, k = _check_nms_args(score_threshold, nms_threshold, eta, top_k, fn="NMSBoxes")
    return _nms_fast(r, integer, s, sthr, thr, e, k)


def nms_boxes_batched(rects: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, score_threshold: float,
                      nms_threshold: float, *, eta: float = 1.0, top_k: int = 0) -> np.ndarray:
    """``cv2.dnn.NMSBoxesBatched``: class-aware NMS by the coordinate-offset trick.

    Each rect is moved by ``offset = class_id * (max_coord + 1)`` on both axes (double arithmetic;
    ``max_coord`` is the largest of 0 and every ``x, y, x + w, y + h``) and :func:`nms_boxes` runs on
    the moved rects. So the answer equals per-class NMS only when classes cannot overlap after the
    move: with negative coordinates or negative class ids, rects of different classes can land on
    each other and suppress across classes (torchvision's ``_batched_nms_coordinate_trick`` has the
    same flaw, refdet's :func:`refdet.nms.batched_nms` with ``coordinate_trick=True``); large offsets
    round the float rects (``Rect2d(x + offset, ...)`` in double), which can move an IoU across the
    threshold. Integer rects are truncated back to int (``cv::Rect(double, ...)``).

    Parameters
    ----------
    rects : ndarray, shape (N, 4)
    scores : ndarray, shape (N,)
    class_ids : ndarray of int, shape (N,)
    score_threshold, nms_threshold, eta, top_k
        As :func:`nms_boxes`; OpenCV does not assert ``score_threshold >= 0`` here.

    Returns
    -------
    ndarray of int64, shape (K,)
        Kept indices in decreasing score order over all classes.

    Notes
    -----
    Source: ``modules/imgproc/src/nms.cpp`` ``NMSBoxesBatchedImpl``.
    """
    r, integer = _as_rects(rects)
    s = _opencv_scores(scores, len(r))
    cls = _checks.as_int_labels(class_ids, "class_ids", n=len(r))
    sthr, thr, e, k = _check_nms_args(score_threshold, nms_threshold, eta, top_k, fn="NMSBoxesBatched",
                                      check_score=False)
    rd = r.astype(np.float64)
    if len(r):
        max_coord = max(0.0, float(np.max(np.concatenate([rd[:, 0], rd[:, 1], rd[:, 0] + rd[:, 2],
                                                           rd[:, 1] + rd[:, 3]]))))
    else:
        max_coord = 0.0
    offset = cls.astype(np.float64) * (max_coord + 1.0)        # class_ids[i] * (max_coord + 1), double
    moved = rd.copy()
    moved[:, 0] += offset
    moved[:, 1] += offset
    if integer:
        if (np.abs(moved[:, :2]) > _INT32_MAX).any():
            raise ValueError("`class_ids`: OpenCV NMSBoxesBatched moves int rects by class_id * (max_coord + 1) "
                             "in int32; these offsets overflow it")
        moved = np.trunc(moved).astype(np.int64)              # Rect(int(x + offset), ...)
    return _nms_fast(moved, integer, s, sthr, thr, e, k)


# --------------------------------------------------------------------------------------------------
# softNMSBoxes
# --------------------------------------------------------------------------------------------------

class SoftNMSBoxesResult(NamedTuple):
    """Output of :func:`soft_nms_boxes` (``cv2.dnn.softNMSBoxes`` returns ``(updated_scores, indices)``).

    Attributes
    ----------
    indices : ndarray of int64, shape (K,)
        Selected rects, in selection order.
    scores : ndarray of float32, shape (K,)
        The decayed score each had when selected.
    """
    indices: np.ndarray
    scores: np.ndarray


def soft_nms_boxes(rects: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float, *,
                   top_k: int = 0, sigma: float = 0.5, method: str = "gaussian") -> SoftNMSBoxesResult:
    """``cv2.dnn.softNMSBoxes``: Soft-NMS (Bodla et al. 2017) on integer rects, OpenCV's loop.

    Repeat until ``top_k`` rects are selected (all of them when ``top_k == 0``): select the
    remaining rect with the highest current score (ties: lowest index); stop if that score is
    ``< score_threshold``; then multiply the score of every remaining rect whose score is still
    ``>= score_threshold`` by::

        method="linear"    1 - o                 if o > nms_threshold (strict), else unchanged
        method="gaussian"  exp(-(o * o) / sigma)  (no threshold; the paper's denominator, not TF's 2 sigma)

    with ``o`` = :func:`rect_overlap` (float32). All score arithmetic is float32.

    Parameters
    ----------
    rects : ndarray of int, shape (N, 4)
        ``(x, y, width, height)``. OpenCV defines ``softNMSBoxes`` for ``std::vector<cv::Rect>`` only:
        float rects are refused (``TypeError``), as the binding refuses them.
    scores : ndarray, shape (N,)
        Rounded to float32; NaN is refused (the maximum would be undefined).
    score_threshold : float >= 0
    nms_threshold : float >= 0
    top_k : int >= 0
    sigma : float > 0
        OpenCV asserts ``sigma >= 0``; ``sigma == 0`` divides by zero (NaN scores for non-overlapping
        rects) and is refused here for the Gaussian method.
    method : {"gaussian", "linear"}

    Returns
    -------
    SoftNMSBoxesResult(indices, scores)

    Notes
    -----
    Source: ``modules/imgproc/src/nms.cpp`` ``softNMSBoxes`` (``std::max_element`` with
    ``score_cmp``: equal scores order by index, the lower index is the maximum). A rect that fell
    below ``score_threshold`` is neither decayed again nor selected. Compared with
    :func:`refdet.nms.soft_nms` (``inclusive=False``, ``gaussian_denominator="sigma"``,
    ``discard="any"``): the same formulas, but OpenCV breaks ties by index at every step, tests the
    first selection against the threshold too, and uses its own IoU (int rects, double division).
    ``exp`` is the float overload (``expf``, correctly rounded in glibc; refdet rounds the double
    ``exp`` of the float32 exponent, which is the same number) and the product is float32: bit-exact
    against ``cv2`` on 3000 random cases, where a double ``exp`` and product differ by an ulp in a
    quarter of them.

    Examples
    --------
    IoU([0, 0, 10, 10], [0, 0, 10, 5]) = 0.5: the linear weight 1 - 0.5 halves the second score.

    >>> r = np.array([[0, 0, 10, 10], [0, 0, 10, 5]])
    >>> soft_nms_boxes(r, np.array([0.9, 0.8]), 0.1, 0.3, method="linear")
    SoftNMSBoxesResult(indices=array([0, 1]), scores=array([0.9, 0.4], dtype=float32))
    """
    r, integer = _as_rects(rects)
    if not integer:
        raise TypeError("`rects` must be integer (x, y, width, height): OpenCV softNMSBoxes takes "
                        f"std::vector<cv::Rect> only; got dtype {np.asarray(rects).dtype}")
    s = _opencv_scores(scores, len(r))
    _checks.check_finite(s, "scores", allow_inf=True)
    sthr = _checks.check_real(score_threshold, "score_threshold")
    thr = _checks.check_real(nms_threshold, "nms_threshold")
    k = _checks.check_int(top_k, "top_k", low=0)
    sig = _checks.check_real(sigma, "sigma")
    _checks.check_choice(method, "method", ("gaussian", "linear"))
    if sthr < 0:
        raise ValueError(f"`score_threshold` must be >= 0 (OpenCV softNMSBoxes asserts it); got {sthr}")
    if thr < 0:
        raise ValueError(f"`nms_threshold` must be >= 0 (OpenCV softNMSBoxes asserts it); got {thr}")
    if sig < 0 or (sig == 0 and method == "gaussian"):
        raise ValueError(f"`sigma` must be > 0 for method='gaussian' (OpenCV softNMSBoxes divides by it); got {sig}")
    n = len(r)
    cur = s.copy()
    left = np.ones(n, bool)                     # not yet selected
    limit = n if k == 0 else min(k, n)
    t_score, t_iou, f_sig = _F32(sthr), _F32(thr), _F32(sig)
    ind, out = [], []
    while len(ind) < limit:
        cand = np.flatnonzero(left)
        j = int(cand[np.argmax(cur[cand])])     # first maximum in index order = score_cmp's maximum
        if cur[j] < t_score:
            break
        ind.append(j)
        out.append(cur[j])
        left[j] = False
        rest = np.flatnonzero(left & ~(cur < t_score))          # "if (bscore_i < score_threshold) continue"
        if rest.size == 0:
            continue
        o = _overlap(r[j:j + 1], r[rest], True)[0]              # float32
        if method == "linear":
            hit = o > t_iou
            cur[rest[hit]] = cur[rest[hit]] * (_F32(1) - o[hit])
        else:
            x = -(o * o) / f_sig                                 # float32 exponent
            w = np.exp(x.astype(np.float64)).astype(np.float32)  # expf, correctly rounded (glibc)
            cur[rest] = cur[rest] * w                            # float32 product
    return SoftNMSBoxesResult(np.array(ind, np.int64), np.array(out, np.float32))


# --------------------------------------------------------------------------------------------------
# blobFromImage
# --------------------------------------------------------------------------------------------------

def _linear_taps(in_size: int, out_size: int, scale: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis (``resize.cpp``, the coefficient loop of ``resize``):
    ``fx = (float)((d + 0.5) * scale - 0.5)``, ``sx = floor(fx)``, ``fx -= sx``; left of the image
    ``sx = 0, fx = 0``; at or past the last pixel ``sx = in - 1, fx = 0``. Returns ``(sx, sx + 1
    clipped, fx)`` with ``fx`` float32."""
    d = np.arange(out_size, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    left = s < 0
    s[left], f[left] = 0, 0
    right = s >= in_size - 1
    s[right], f[right] = in_size - 1, 0
    return s, np.minimum(s + 1, in_size - 1), f


def _resize_linear_f32(img: np.ndarray, out_h: int, out_w: int, scale_y: float, scale_x: float) -> np.ndarray:
    """``cv::resize(INTER_LINEAR)`` of a float32 (H, W, C) image: horizontal pass then vertical pass,
    each ``a * (1 - f) + b * f`` in float32 (``HResizeLinear`` / ``VResizeLinear``)."""
    x0, x1, fx = _linear_taps(img.shape[1], out_w, scale_x)
    y0, y1, fy = _linear_taps(img.shape[0], out_h, scale_y)
    one = _F32(1)
    ax = (one - fx)[None, :, None]
    bx = fx[None, :, None]
    rows = img[:, x0] * ax + img[:, x1] * bx                     # (H, out_w, C), float32
    ay = (one - fy)[:, None, None]
    by = fy[:, None, None]
    return rows[y0] * ay + rows[y1] * by


def blob_from_image(image: np.ndarray, scalefactor: float = 1.0, size: Optional[Tuple[int, int]] = None,
                    mean=(0.0, 0.0, 0.0, 0.0), swap_rb: bool = False, crop: bool = False) -> np.ndarray:
    """``cv2.dnn.blobFromImage``: resize (and centre-crop), swap R and B, subtract the mean, scale; NCHW.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C) with C in {1, 3, 4}
        uint8 or float32 (OpenCV's blob depth is CV_32F; other depths fail its depth assertion).
    scalefactor : float
        Multiplies every value after the mean is subtracted.
    size : (width, height), optional
        OpenCV's ``Size`` order (width first). ``None`` or the image's own size: no resize.
        Resizing (bilinear, OpenCV's ``INTER_LINEAR`` taps, see :func:`_linear_taps`) is reproduced
        for float32 images; a uint8 image is resized by OpenCV before the float conversion with its
        fixed-point interpolation, which is not reproduced (``ValueError``: convert the image to
        float32 first, the result is then exact).
    mean : sequence of up to 4 floats
        Per channel, **in the output channel order**: with ``swap_rb`` OpenCV swaps ``mean[0]`` and
        ``mean[2]`` along with the planes, so ``mean`` is given as RGB when the blob is RGB.
    swap_rb : bool
        Output channel 0 is input channel 2 and vice versa (BGR <-> RGB); 3 or 4 channels.
    crop : bool
        With ``size``: scale by ``max(W' / W, H' / H)`` (float32) keeping the aspect ratio
        (``resize(img, Size(), f, f)``: output size ``round(W * f)``, coordinate scale ``1 / f``) and
        take the centre ``W' x H'`` window at ``(int(0.5 * (w - W')), int(0.5 * (h - H')))``.

    Returns
    -------
    ndarray of float32, shape (1, C, H', W')
        ``(float32(pixel) - float32(mean[c])) * float32(scalefactor)``, each step rounded to float32.

    Notes
    -----
    Exactness: without a resize the blob equals OpenCV's bit for bit. With a resize the sizes, taps
    and crop window are OpenCV's, but OpenCV 5's float ``INTER_LINEAR`` does not round like the
    textbook two passes computed here (with or without IPP: a constant image does not even stay
    constant there), so a resized blob agrees to within ``16 * eps(float32) * max|pixel|``.

    Source: ``modules/dnn/src/dnn_utils.cpp`` ``blobFromImages`` -> ``matFromImagesWithParams``
    (``resize``, ``convertTo(CV_32F)``, ``subtract(images, mean)``, ``multiply(images,
    scalefactor)``, ``split`` into the planes with ``ch[0]`` and ``ch[2]`` swapped);
    ``modules/imgproc/src/resize.cpp`` for the taps.

    Examples
    --------
    >>> img = np.array([[[10, 20, 30]]], dtype=np.uint8)              # one BGR pixel
    >>> blob_from_image(img, 0.5, mean=(1, 2, 3), swap_rb=True)[0, :, 0, 0]
    array([14.5,  9. ,  3.5], dtype=float32)
    """
    img = _checks.as_array(image, "image")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"`image` must have shape (H, W) or (H, W, C) with C in 1, 3, 4; got {img.shape}")
    if img.dtype not in (np.uint8, np.float32):
        raise ValueError(f"`image` must be uint8 or float32 (OpenCV blobFromImage asserts the image depth equals "
                         f"the CV_32F blob depth after converting CV_8U); got {img.dtype}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"`image` must not be empty; got shape {img.shape}")
    sf = _checks.check_real(scalefactor, "scalefactor")
    m = np.zeros(4)
    mv = np.atleast_1d(_checks.as_array(mean, "mean")).astype(np.float64)
    if mv.ndim != 1 or len(mv) > 4:
        raise ValueError(f"`mean` must hold at most 4 values (a cv::Scalar); got shape {mv.shape}")
    m[:len(mv)] = mv
    if not isinstance(swap_rb, (bool, np.bool_)) or not isinstance(crop, (bool, np.bool_)):
        raise TypeError(f"`swap_rb` and `crop` must be bools; got {swap_rb!r}, {crop!r}")
    h, w, c = img.shape
    if size is not None:
        sz = tuple(size)
        if len(sz) != 2:
            raise ValueError(f"`size` must be (width, height); got {size!r}")
        tw, th = (_checks.check_int(v, "size", low=0, high=_INT32_MAX) for v in sz)     # cv::Size is int
        if (tw, th) == (0, 0):
            tw, th = w, h                                       # Size() means the image's own size
    else:
        tw, th = w, h
    x = img
    if (tw, th) != (w, h):
        if tw <= 0 or th <= 0:
            raise ValueError(f"`size` must be positive (width, height); got {size!r}")
        if img.dtype == np.uint8:
            raise ValueError("`image`: resizing a uint8 image uses OpenCV's fixed-point INTER_LINEAR, which refdet "
                             "does not reproduce; pass image.astype(np.float32) (the blob is the same up to that "
                             "rounding)")
        _checks.check_allocation(tw * th * c, 4, "blob pixels x channels", name="size", keyword=False)
        if crop:
            f = max(_F32(tw) / _F32(w), _F32(th) / _F32(h))    # float resizeFactor
            f = float(f)
            rw, rh = int(round(w * f)), int(round(h * f))       # saturate_cast<int>(size * inv_scale)
            _checks.check_allocation(rw * rh * c, 4, "resized pixels x channels before the crop", name="size",
                                     keyword=False)
            x = _resize_linear_f32(img, rh, rw, 1.0 / f, 1.0 / f)
            ox, oy = int(0.5 * (rw - tw)), int(0.5 * (rh - th))  # Point(double, double) -> int (truncation)
            x = x[oy:oy + th, ox:ox + tw]
        else:
            x = _resize_linear_f32(img, th, tw, h / th, w / tw)
    if swap_rb and c >= 3:
        m[[0, 2]] = m[[2, 0]]
    x = x.astype(np.float32)
    x = (x - m[:c].astype(np.float32)) * _F32(sf)               # subtract(mean), multiply(scalefactor)
    if swap_rb and c >= 3:
        x = x[:, :, [2, 1, 0, 3][:c]]
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
