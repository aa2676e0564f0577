"""OpenVINO opset operators as its CPU plugin runs them: NonMaxSuppression-9, PriorBox, PriorBoxClustered,
FakeQuantize.

Every function reproduces what ``openvino.Core().compile_model(model, "CPU")`` computes for a graph
built with the ``openvino.opset9`` Python API (checked op by op in ``tests/test_openvino_runtime.py``),
and names where the CPU plugin departs from OpenVINO's own reference implementation
(``src/core/reference``), from the operator specification or from ONNX.

Sources (openvinotoolkit/openvino):

* ``src/plugins/intel_cpu/src/nodes/non_max_suppression.cpp`` (the JIT kernel and its scalar
  fallback), ``src/core/reference/src/op/non_max_suppression.cpp`` (the reference).
* ``src/core/reference/include/openvino/reference/prior_box.hpp``, ``prior_box_clustered.hpp``.
* ``src/core/reference/include/openvino/reference/fake_quantize.hpp`` and the CPU plugin's
  ``nodes/fake_quantize.cpp`` (its crop / input scale / output scale decomposition).
"""
from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import _nms_engine as _engine

__all__ = ["NMSResult", "non_max_suppression"]

_F32 = np.float32


# --------------------------------------------------------------------------------------------------
# NonMaxSuppression-9
# --------------------------------------------------------------------------------------------------

class NMSResult(NamedTuple):
    """Outputs of OpenVINO ``NonMaxSuppression``.

    Attributes
    ----------
    selected_indices : ndarray of int64, shape (K, 3)
        ``[batch, class, box]`` rows.
    selected_scores : ndarray of float32, shape (K, 3)
        ``[batch, class, score]`` rows (batch and class as floats; the score after Soft-NMS decay).
    valid_outputs : int
        K (the CPU plugin returns exactly K rows; the specification's padded shape
        ``(B * C * min(N, max_output_boxes_per_class), 3)`` is :func:`pad_nms_result`).
    """
    selected_indices: np.ndarray
    selected_scores: np.ndarray
    valid_outputs: int


def _corners(b, encoding):
    """(N, 4) float32 boxes -> (y1, x1, y2, x2) float32 with the CPU plugin's arithmetic."""
    if encoding == "corner":                                       # y1, x1, y2, x2 in either diagonal
        return (np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3]))
    half = _F32(0.5)                                               # x_center, y_center, width, height
    hw, hh = b[:, 2] * half, b[:, 3] * half
    return b[:, 1] - hh, b[:, 0] - hw, b[:, 1] + hh, b[:, 0] + hw


def _iou_one_many(c, i, idx, degenerate):
    """IoU of box ``i`` with boxes ``idx`` (float32), the CPU JIT kernel's order of operations.

    ``degenerate="cpu"``: no guard, so two zero-area boxes give 0/0 = NaN; ``"reference"``: IoU 0 when
    either area is <= 0 (``intersectionOverUnion`` of the scalar path and of the reference).
    """
    y1, x1, y2, x2 = c
    area_i = (y2[i] - y1[i]) * (x2[i] - x1[i])
    area = (y2[idx] - y1[idx]) * (x2[idx] - x1[idx])
    ih = np.maximum(np.minimum(y2[idx], y2[i]) - np.maximum(y1[idx], y1[i]), _F32(0))
    iw = np.maximum(np.minimum(x2[idx], x2[i]) - np.maximum(x1[idx], x1[i]), _F32(0))
    inter = ih * iw
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / ((area + area_i) - inter)
    if degenerate == "reference":
        iou = np.where((area <= 0) | (area_i <= 0), _F32(0), iou)
    return iou.astype(np.float32)


def _hard_nms(c, cand, iou_thr, k_max, degenerate):
    """Greedy NMS over ``cand`` (already in visiting order): suppress when IoU >= threshold."""
    n = len(cand)
    suppressed = np.zeros(n, bool)
    keep = []
    p = 0
    while p < n and len(keep) < k_max:
        keep.append(p)
        if len(keep) == k_max:
            break
        rest = np.arange(p + 1, n)
        iou = _iou_one_many(c, cand[p], cand[rest], degenerate)
        suppressed[rest] |= iou >= iou_thr                          # NaN compares false: never suppresses
        nxt = np.flatnonzero(~suppressed[p + 1:])
        if nxt.size == 0:
            break
        p = p + 1 + int(nxt[0])
    return cand[np.array(keep, np.int64)], None


def _soft_nms(c, cand, scores, score_thr, scale, k_max, degenerate):
    """Soft-NMS with the lazy priority queue of ``nmsWithSoftSigma`` (TF's algorithm).

    Pop the best candidate (ties: lower box index); decay its score by ``exp(scale * iou^2)`` for
    each box selected since it was last looked at, newest first, in float32, stopping as soon as the
    score is ``<= score_threshold`` (dropped); an unchanged score is selected, a decayed one goes back
    into the queue. The IoU threshold plays no part (the CPU plugin's ``isSoftSuppressedByIOU`` is
    false). A NaN IoU (two zero-area boxes, ``degenerate="cpu"``) gives the weight +inf, as the CPU
    plugin's vectorised ``exp`` does, so such a box comes back with score +inf.
    """
    heap = [(-float(scores[b]), int(b), 0, _F32(scores[b])) for b in cand]
    heapq.heapify(heap)
    sel, sel_scores = [], []
    while heap and len(sel) < k_max:
        _, b, begin, s = heapq.heappop(heap)
        orig = s
        if begin < len(sel):
            prev = np.array(sel[begin:][::-1], np.int64)          # newest first
            iou = _iou_one_many(c, b, prev, degenerate)
            with np.errstate(invalid="ignore", over="ignore"):
                w = np.exp((_F32(scale) * iou * iou).astype(np.float64)).astype(np.float32)
            w[np.isnan(iou)] = np.inf
            with np.errstate(invalid="ignore", over="ignore"):
                running = np.multiply.accumulate(np.concatenate([[s], w]).astype(np.float32))[1:]
            low = np.flatnonzero(~(running > score_thr))          # score <= threshold (NaN too)
            if low.size:
                continue                                           # soft-suppressed
            s = running[-1]
        if s == orig:
            sel.append(b)
            sel_scores.append(s)
        else:
            heapq.heappush(heap, (-float(s), b, len(sel), _F32(s)))
    return np.array(sel, np.int64), np.array(sel_scores, np.float32)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, max_output_boxes_per_class: int = 0,
                        iou_threshold: float = 0.0, score_threshold: float = 0.0, soft_nms_sigma: float = 0.0, *,
                        box_encoding: str = "corner", sort_result_descending: bool = True,
                        degenerate: str = "cpu") -> NMSResult:
    """OpenVINO ``NonMaxSuppression`` (opset 9; also 5) as its CPU plugin computes it.

    Per (batch, class): boxes with ``score > score_threshold`` (strict) are visited in decreasing
    score, ties lowest box index first, and selected greedily, at most
    ``max_output_boxes_per_class`` of them.

    * Hard NMS (``soft_nms_sigma == 0``): a candidate is dropped when its IoU with a selected box is
      ``>= iou_threshold`` (**inclusive**: the CPU plugin's JIT ``_CMP_GE_OS`` and its scalar
      ``iou >= iouThreshold``). ONNX and OpenVINO's own reference implementation drop at ``>``; so
      an IoU exactly on the threshold is kept by onnxruntime and by refdet's ``"onnx"`` profile but
      suppressed here, and ``iou_threshold=0`` suppresses even disjoint boxes (IoU 0 >= 0).
    * Soft-NMS (``soft_nms_sigma > 0``): scores decay by ``exp(-0.5 * iou^2 / sigma)`` (the ``"2sigma"``
      denominator of :func:`refdet.nms.soft_nms`), lazily as in TF (see :func:`_soft_nms`); a box
      whose score falls to ``<= score_threshold`` is dropped; the IoU threshold is ignored.

    Parameters
    ----------
    boxes : ndarray, shape (B, N, 4)
        ``box_encoding="corner"``: ``[y1, x1, y2, x2]``, either diagonal (min/max-sorted per axis);
        ``"center"``: ``[x_center, y_center, width, height]`` (corners ``c -+ 0.5 * size``, unsorted).
        Computed in float32 (the CPU plugin's only precision).
    scores : ndarray, shape (B, C, N)
    max_output_boxes_per_class : int >= 0
        0 selects nothing (the default, as in ONNX).
    iou_threshold, score_threshold : float
        Rounded to float32.
    soft_nms_sigma : float >= 0
    box_encoding : {"corner", "center"}
    sort_result_descending : bool
        ``True``: all selections sorted by score, ties by batch, class, box index. ``False``: grouped
        by batch, then class, in selection order.
    degenerate : {"cpu", "reference"}
        IoU of zero-area boxes. ``"cpu"`` (the CPU plugin's JIT kernel, used on every x86 CPU with
        SSE4.1): ``0/0 = NaN``, which never suppresses, and in Soft-NMS becomes the weight +inf (the
        box is returned with score +inf: a CPU-plugin bug). ``"reference"`` (OpenVINO's reference
        implementation and the plugin's scalar fallback): IoU 0 whenever a box has area <= 0.

    Returns
    -------
    NMSResult(selected_indices, selected_scores, valid_outputs)

    Notes
    -----
    Sources: ``src/plugins/intel_cpu/src/nodes/non_max_suppression.cpp`` (``nmsWithoutSoftSigma``,
    ``nmsWithSoftSigma``, ``intersectionOverUnion``, the JIT ``iou`` / ``suppressed_by_iou`` /
    ``suppressed_by_score``; ``scale = -0.5f / soft_nms_sigma``); OpenVINO's reference
    ``src/core/reference/src/op/non_max_suppression.cpp`` (``iou > iou_threshold``; its
    ``sort_result_descending`` merely reverses the list). Soft-NMS weights use a correctly rounded
    float32 ``exp``; the CPU plugin's vectorised ``exp`` may differ by an ulp.

    Examples
    --------
    IoU([0, 0, 10, 10], [0, 0, 5, 10]) = 50 / 100 = 0.5: suppressed at threshold 0.5 (inclusive).

    >>> b = np.array([[[0, 0, 10, 10], [0, 0, 5, 10], [20, 20, 30, 30]]], np.float32)
    >>> s = np.array([[[0.9, 0.8, 0.7]]], np.float32)
    >>> non_max_suppression(b, s, 10, 0.5).selected_indices
    array([[0, 0, 0],
           [0, 0, 2]])
    """
    b = _checks.as_array(boxes, "boxes")
    if b.ndim != 3 or b.shape[2] != 4:
        raise ValueError(f"`boxes` must have shape (B, N, 4); got {b.shape}")
    s = _checks.as_array(scores, "scores")
    if s.ndim != 3 or s.shape[0] != b.shape[0] or s.shape[2] != b.shape[1]:
        raise ValueError(f"`scores` must have shape (B, C, N) = ({b.shape[0]}, C, {b.shape[1]}); got {s.shape}")
    b = b.astype(np.float32)
    s = s.astype(np.float32)
    _checks.check_finite(b, "boxes")
    _checks.check_finite(s, "scores", allow_inf=True)
    k_max = _checks.check_int(max_output_boxes_per_class, "max_output_boxes_per_class", low=0)
    thr = _F32(_checks.check_real(iou_threshold, "iou_threshold"))
    sthr = _F32(_checks.check_real(score_threshold, "score_threshold"))
    sigma = _checks.check_real(soft_nms_sigma, "soft_nms_sigma")
    if sigma < 0:
        raise ValueError(f"`soft_nms_sigma` must be >= 0 (OpenVINO NonMaxSuppression: 0 is hard NMS); got {sigma}")
    _checks.check_choice(box_encoding, "box_encoding", ("corner", "center"))
    _checks.check_choice(degenerate, "degenerate", ("cpu", "reference"))
    if not isinstance(sort_result_descending, (bool, np.bool_)):
        raise TypeError(f"`sort_result_descending` must be a bool; got {sort_result_descending!r}")
    B, C, N = s.shape
    k_max = min(k_max, N)
    scale = _F32(-0.5) / _F32(sigma) if sigma > 0 else _F32(0)
    rows, vals = [], []
    for bi in range(B):                                            # loop over (batch, class) pairs
        c = _corners(b[bi], box_encoding)
        for ci in range(C):
            sc = s[bi, ci]
            cand = np.flatnonzero(sc > sthr)
            cand = cand[_engine.descending(sc[cand], "lowest_index")]
            if k_max == 0 or cand.size == 0:
                continue
            if sigma > 0:
                sel, sel_s = _soft_nms(c, cand, sc, sthr, scale, k_max, degenerate)
            else:
                sel, _ = _hard_nms(c, cand, thr, k_max, degenerate)
                sel_s = sc[sel]
            r = np.empty((len(sel), 3), np.int64)
            r[:, 0], r[:, 1], r[:, 2] = bi, ci, sel
            rows.append(r)
            vals.append(sel_s.astype(np.float32))
    if not rows:
        return NMSResult(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32), 0)
    idx = np.concatenate(rows)
    sv = np.concatenate(vals)
    if sort_result_descending:
        # score descending, then batch, class, box ascending (a total order: the parallel sort is deterministic)
        order = np.lexsort((idx[:, 2], idx[:, 1], idx[:, 0], -sv.astype(np.float64)))
        idx, sv = idx[order], sv[order]
    out_s = np.empty((len(idx), 3), np.float32)
    out_s[:, 0], out_s[:, 1], out_s[:, 2] = idx[:, 0], idx[:, 1], sv
    return NMSResult(idx, out_s, len(idx))


def pad_nms_result(result: NMSResult, num_batches: int, num_classes: int, num_boxes: int,
                   max_output_boxes_per_class: int) -> NMSResult:
    """The specification's static output shape: rows padded with -1 to
    ``num_batches * num_classes * min(num_boxes, max_output_boxes_per_class)``.

    The OpenVINO spec (NonMaxSuppression-5/9) fills the unused rows with -1 (its internal
    ``NonMaxSuppressionIEInternal`` with a static output shape does, CPU ``std::fill(..., -1)``); the
    public op on the CPU plugin returns only the ``valid_outputs`` rows.
    """
    total = int(num_batches) * int(num_classes) * min(int(num_boxes), int(max_output_boxes_per_class))
    k = result.valid_outputs
    if k > total:
        raise ValueError(f"`result` has {k} rows, more than the padded size {total}")
    ind = np.full((total, 3), -1, np.int64)
    sc = np.full((total, 3), -1.0, np.float32)
    ind[:k], sc[:k] = result.selected_indices, result.selected_scores
    return NMSResult(ind, sc, k)


__all__ += ["pad_nms_result"]
