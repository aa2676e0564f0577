"""OpenVINO opset operators as its CPU plugin runs them: NonMaxSuppression-9, PriorBox, PriorBoxClustered,
FakeQuantize.

Every function reproduces what ``openvino.Core().compile_model(model, "CPU")`` computes for a graph
built with the ``openvino.opset9`` Python API (checked op by op in ``tests/test_openvino_runtime.py``),
and names where the CPU plugin departs from OpenVINO's own reference implementation
(``src/core/reference``), from the operator specification or from ONNX.

Sources (openvinotoolkit/openvino):

* ``src/plugins/intel_cpu/src/nodes/non_max_suppression.cpp`` (the JIT kernel and its scalar
  fallback), ``src/core/reference/src/op/non_max_suppression.cpp`` (the reference).
* ``src/core/reference/include/openvino/reference/prior_box.hpp``, ``prior_box_clustered.hpp``
  (in :mod:`refdet.runtimes.openvino_priors`, re-exported here).
* ``src/core/reference/include/openvino/reference/fake_quantize.hpp`` and the CPU plugin's
  ``nodes/fake_quantize.cpp`` (its crop / input scale / output scale decomposition).
"""
from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import _nms_engine as _engine
from refdet.runtimes.openvino_priors import prior_box, prior_box_clustered  # noqa: F401  (re-exported)

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
        ``(B * C * min(N, max_output_boxes_per_class), 3)`` is :func:`pad_nms_result`). When
        ``min(N, max_output_boxes_per_class) == 0`` the CPU plugin returns no rows but leaves its
        ``valid_outputs`` uninitialised (any int, e.g. -106713488): refdet says 0.
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
        Rounded to float32; a subnormal value is read as 0, as the CPU plugin does with the constant
        threshold inputs of a compiled model (subnormal constants are flushed to zero).
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
    # the CPU plugin flushes subnormal constants to zero: a threshold of 1e-45 acts as 0 (found by hypothesis)
    tiny = np.finfo(np.float32).tiny
    thr = _F32(0) if abs(thr) < tiny else thr
    sthr = _F32(0) if abs(sthr) < tiny else sthr
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
    if not isinstance(result, NMSResult):
        raise TypeError(f"`result` must be the NMSResult of non_max_suppression; got {type(result).__name__}")
    nb, nc, nx, mo = (_checks.check_int(v, n, low=0) for v, n in (
        (num_batches, "num_batches"), (num_classes, "num_classes"), (num_boxes, "num_boxes"),
        (max_output_boxes_per_class, "max_output_boxes_per_class")))
    total = nb * nc * min(nx, mo)
    _checks.check_allocation(total * 3, 8, "padded rows x 3", keyword=False,
                             name="num_batches` x `num_classes` x min(`num_boxes`, `max_output_boxes_per_class")
    k = result.valid_outputs
    if k > total:
        raise ValueError(f"`result` has {k} rows, more than the padded size {total} (`num_batches` * `num_classes` "
                         f"* min(`num_boxes`, `max_output_boxes_per_class`))")
    ind = np.full((total, 3), -1, np.int64)
    sc = np.full((total, 3), -1.0, np.float32)
    ind[:k], sc[:k] = result.selected_indices, result.selected_scores
    return NMSResult(ind, sc, k)


__all__ += ["pad_nms_result"]


# --------------------------------------------------------------------------------------------------
# PriorBox (opset 8), PriorBoxClustered (opset 1): in refdet.runtimes.openvino_priors
# --------------------------------------------------------------------------------------------------

__all__ += ["prior_box", "prior_box_clustered"]


# --------------------------------------------------------------------------------------------------
# FakeQuantize (opset 1)
# --------------------------------------------------------------------------------------------------

def fake_quantize(x: np.ndarray, input_low, input_high, output_low, output_high, levels: int) -> np.ndarray:
    """OpenVINO ``FakeQuantize``: clamp to the input range, snap to ``levels`` evenly spaced values, map to
    the output range.

    ::

        x <= min(input_low, input_high)  ->  output_low
        x >  max(input_low, input_high)  ->  output_high
        otherwise  nearbyint((x - input_low) / (input_high - input_low) * (levels - 1)) / (levels - 1)
                   * (output_high - output_low) + output_low

    with ``nearbyint`` rounding half to **even** on the grid index counted from ``input_low``. That is
    not ONNX's / refdet.quant's ``QuantizeLinear`` (``round(x / scale) + zero_point``): for the same
    grid (``input_low = (qmin - z) * s``) the two round a tie to different neighbours whenever
    ``qmin - z`` is odd (``rint(v + k) != rint(v) + k`` for odd ``k``), e.g. uint8 with scale 0.1 and
    zero point 3: ``x = 0.05, 0.15, 0.25`` give ``0, 0.2, 0.2`` in PyTorch / ONNX (refdet.quant) and
    ``0.1, 0.1, 0.3`` here and on the CPU plugin (tested).

    Parameters
    ----------
    x : ndarray of float
    input_low, input_high, output_low, output_high : float or ndarray
        Broadcast against ``x`` (NumPy rules, OpenVINO's ``auto_broadcast="numpy"``).
    levels : int >= 2

    Returns
    -------
    ndarray, the dtype of ``x`` (float32 math for float32/float16, float64 for float64)

    Notes
    -----
    Source: ``src/core/reference/include/openvino/reference/fake_quantize.hpp`` (``quantize``: the
    formula above, the specification's). The CPU plugin (``nodes/fake_quantize.cpp``) decomposes it
    into ``crop -> x * isc + ish -> round -> x * osc + osh`` with ``isc = (levels - 1) / (ih - il)``,
    ``ish = -il * (levels - 1) / (ih - il)``, ``osc = (oh - ol) / (levels - 1)``, ``osh = ol``: the same
    values up to float32 rounding, i.e. results within a few ulps of ``max(|output_low|,
    |output_high|)``, and a grid index that lands within float32 rounding of a tie may snap to the
    other neighbour (one output step). ``tests/test_openvino_runtime.py`` pins that bound.

    Examples
    --------
    Four levels on [0, 3] mapped to [-1, 1]: 1.4 snaps to index 1 (-1/3), 1.5 is a tie and goes to
    the even index 2 (+1/3).

    >>> fake_quantize(np.array([-5, 1.4, 1.5, 9], np.float32), 0, 3, -1, 1, 4)
    array([-1.        , -0.3333333 ,  0.33333337,  1.        ], dtype=float32)
    """
    xa = _checks.as_array(x, "x")
    if xa.dtype.kind != "f":
        raise TypeError(f"`x` must be a float array; got dtype {xa.dtype}")
    dt = _checks.working_dtype(xa.dtype)
    v = xa.astype(dt)
    lv = _checks.check_int(levels, "levels")
    if lv < 2:
        raise ValueError(f"`levels` must be >= 2 (OpenVINO FakeQuantize); got {lv}")
    il, ih, ol, oh = (np.asarray(_checks.as_array(p, n), dtype=dt) for p, n in
                      ((input_low, "input_low"), (input_high, "input_high"), (output_low, "output_low"),
                       (output_high, "output_high")))
    for p, n in ((il, "input_low"), (ih, "input_high"), (ol, "output_low"), (oh, "output_high")):
        _checks.check_finite(p, n)
    try:
        np.broadcast_shapes(v.shape, il.shape, ih.shape, ol.shape, oh.shape)
    except ValueError:
        raise ValueError(f"the ranges `input_low`, `input_high`, `output_low`, `output_high` must broadcast against "
                         f"`x` {v.shape} (OpenVINO FakeQuantize auto_broadcast="
                         f"numpy); got {il.shape}, {ih.shape}, {ol.shape}, {oh.shape}") from None
    L = dt.type(lv - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint((v - il) / (ih - il) * L) / L * (oh - ol) + ol
    out = np.where(v <= np.minimum(il, ih), ol, np.where(v > np.maximum(il, ih), oh, q))
    return out.astype(dt, copy=False)


__all__ += ["fake_quantize"]


# --------------------------------------------------------------------------------------------------
# ROIAlign (opset 9)
# --------------------------------------------------------------------------------------------------

ROI_ALIGN_MODES = ("asymmetric", "half_pixel_for_nn", "half_pixel")


def roi_align(features: np.ndarray, rois: np.ndarray, batch_indices: np.ndarray, pooled_h: int, pooled_w: int,
              sampling_ratio: int = 0, spatial_scale: float = 1.0, mode: str = "avg",
              aligned_mode: str = "asymmetric") -> np.ndarray:
    """OpenVINO ``ROIAlign`` (opset 9), in terms of refdet's :func:`refdet.roi.roi_align`.

    ``aligned_mode`` (the RoI's corner ``x`` becomes, in feature coordinates):

    ==================  ==============================  ==========================================
    asymmetric          ``x * scale``, size >= 1        torchvision ``aligned=False`` (Detectron1)
    half_pixel_for_nn   ``x * scale - 0.5``             torchvision ``aligned=True`` (detectron2)
    half_pixel          ``(x + 0.5) * scale - 0.5``     TF's pixel centres: at ``scale = 1`` no shift
    ==================  ==============================  ==========================================

    The names are easy to misread: OpenVINO's ``half_pixel`` is **not** torchvision's / ONNX's
    ``half_pixel`` (``x * scale - 0.5``, OpenVINO's ``half_pixel_for_nn``).

    ``mode="avg"``: the mean of the bilinear samples (refdet's ``avg``; OpenVINO adds ``sample / n``
    per sample, so float32 results differ by a few ulps). A zero-size RoI with an adaptive grid
    (``sampling_ratio=0`` and ``half_pixel`` / ``half_pixel_for_nn``: no minimum size) has 0 samples:
    OpenVINO's CPU plugin returns NaN there (0 / 0), torchvision and refdet's :func:`refdet.roi.roi_align`
    return 0; reproduced (NaN). ``mode="max"``: OpenVINO starts the running
    maximum at **0** (``pooled_value = 0``; ``sample > pooled ? sample : pooled``), so a bin whose
    samples are all negative gives 0, and it takes the maximum of the interpolated *values* (ONNX and
    refdet's ``mode="max"`` take the maximum of the weighted *corners*). Reproduced as
    ``max(0, max over samples)``, the samples being those of an ``avg`` RoIAlign on ``gh x gw`` sub-bins.

    Parameters
    ----------
    features : ndarray, shape (B, C, H, W)
    rois : ndarray, shape (K, 4)
        ``(x1, y1, x2, y2)`` in image coordinates.
    batch_indices : ndarray of int, shape (K,)
    pooled_h, pooled_w : int >= 1
    sampling_ratio : int >= 0
        0: adaptive, ``ceil(roi_size / pooled_size)`` samples per bin and axis.
    spatial_scale : float > 0
    mode : {"avg", "max"}
    aligned_mode : {"asymmetric", "half_pixel_for_nn", "half_pixel"}

    Returns
    -------
    ndarray, shape (K, C, pooled_h, pooled_w)

    Notes
    -----
    Sources: ``src/core/reference/include/openvino/reference/roi_align.hpp`` (``aligned_mode`` offsets,
    ``pooled_value`` initialisation and the per-sample ``+= sample_value / num_samples_in_bin``) and the
    CPU plugin's ``nodes/roi_align.cpp`` (checked against it within 1e-5 in ``tests/test_openvino_runtime.py``).
    """
    from refdet.roi.align import roi_align as _roi_align

    _checks.check_choice(mode, "mode", ("avg", "max"))
    _checks.check_choice(aligned_mode, "aligned_mode", ROI_ALIGN_MODES)
    r = _checks.as_array(rois, "rois")
    if r.ndim != 2 or r.shape[1] != 4:
        raise ValueError(f"`rois` must have shape (K, 4); got {r.shape}")
    r = _checks.as_float_array(rois, "rois", ndim=2, last=4)
    x = _checks.as_nchw(features, "features", finite=False)
    bi = _checks.as_int_labels(batch_indices, "batch_indices", n=len(r), low=0, high=max(x.shape[0] - 1, 0))
    if len(bi) and x.shape[0] == 0:
        raise ValueError("`batch_indices` point into `features`, which holds no image")
    ph = _checks.check_int(pooled_h, "pooled_h", low=1)
    pw = _checks.check_int(pooled_w, "pooled_w", low=1)
    sr = _checks.check_int(sampling_ratio, "sampling_ratio", low=0, high=2 ** 31 - 1)
    _checks.check_allocation(len(r) * x.shape[1] * ph * pw, 8, "pooled values", name="pooled_h` and `pooled_w",
                             keyword=False)
    dt = _checks.working_dtype(x.dtype)
    r = r.astype(dt)
    if aligned_mode == "half_pixel":
        r = r + dt.type(0.5)
    boxes = np.concatenate([bi.astype(dt)[:, None], r], axis=1)
    aligned = aligned_mode != "asymmetric"
    sc = dt.type(_checks.check_positive(spatial_scale, "spatial_scale"))
    off = dt.type(0.5) if aligned else dt.type(0)
    hgt = (r[:, 3] * sc - off) - (r[:, 1] * sc - off)
    wid = (r[:, 2] * sc - off) - (r[:, 0] * sc - off)
    if not aligned:
        hgt, wid = np.maximum(hgt, dt.type(1)), np.maximum(wid, dt.type(1))
    if sr > 0:
        gh = np.full(len(r), sr, np.int64)
        gw = gh.copy()
    else:
        gh = np.ceil(hgt / dt.type(ph)).astype(np.int64)
        gw = np.ceil(wid / dt.type(pw)).astype(np.int64)
    if mode == "avg":
        out = _roi_align(x, boxes, (ph, pw), spatial_scale, sr, aligned)
        out[(gh == 0) | (gw == 0)] = np.nan                    # OpenVINO: 0 samples, 0 / 0 (refdet: 0)
        return out
    # max: sub-bins of one sample each, grouped by the per-RoI sample grid
    out = np.zeros((len(r), x.shape[1], ph, pw), dt)
    for a, b in sorted(set(zip(gh.tolist(), gw.tolist()))):     # one call per distinct sample grid
        sel = np.flatnonzero((gh == a) & (gw == b))
        if a == 0 or b == 0:
            continue                                           # no samples: the running maximum stays 0
        sub = _roi_align(x, boxes[sel], (ph * a, pw * b), spatial_scale, 1, aligned)
        m = sub.reshape(len(sel), x.shape[1], ph, a, pw, b).max(axis=(3, 5))
        out[sel] = np.maximum(m, dt.type(0))
    return out


__all__ += ["roi_align", "ROI_ALIGN_MODES"]


# --------------------------------------------------------------------------------------------------
# ROIPooling (opset 2)
# --------------------------------------------------------------------------------------------------

def roi_pooling(features: np.ndarray, rois: np.ndarray, output_size, spatial_scale: float = 1.0,
                method: str = "max") -> np.ndarray:
    """OpenVINO ``ROIPooling``: ``method="max"`` is Fast R-CNN's RoI max pooling, ``"bilinear"`` is TF's
    ``crop_and_resize`` on normalised coordinates.

    * ``"max"``: :func:`refdet.roi.roi_pool` (torchvision / Caffe: corners rounded,
      ``round(x * spatial_scale)``, ``+1`` sizes at least 1, bins ``floor(i * size / P)`` to
      ``ceil((i + 1) * size / P)``, an empty bin gives 0). Bit for bit on the CPU plugin.
    * ``"bilinear"``: ``rois`` are **normalised** ``[x1, y1, x2, y2]`` in [0, 1] and
      ``spatial_scale`` is ignored; output bin ``(i, j)`` samples ``y = y1 * (H - 1) + i * (y2 - y1) *
      (H - 1) / (PH - 1)`` (the centre when ``PH == 1``), bilinearly, and 0 outside the map:
      :func:`refdet.roi.crop.crop_and_resize` with boxes ``[y1, x1, y2, x2]`` (within 3e-6 of the CPU
      plugin: it interpolates in another order).

    Parameters
    ----------
    features : ndarray, shape (B, C, H, W)
    rois : ndarray, shape (K, 5)
        ``[batch_index, x1, y1, x2, y2]``.
    output_size : (PH, PW)
    spatial_scale : float > 0
    method : {"max", "bilinear"}

    Returns
    -------
    ndarray, shape (K, C, PH, PW)

    Notes
    -----
    Precision: on a CPU with native bf16 (AVX512-BF16, AMX) the CPU plugin's default
    ``INFERENCE_PRECISION_HINT`` is bf16 and ROIPooling then runs on bf16 RoIs: ``x1 = 0.1`` becomes
    ``0.1003`` and the bilinear samples move by up to 0.02 pixel (``0.9`` -> ``0.90234375``). refdet is the
    f32 answer; compile with ``{"INFERENCE_PRECISION_HINT": "f32"}`` to get it from OpenVINO.

    Source: ``src/core/reference/include/openvino/reference/roi_pooling.hpp`` and the CPU plugin's
    ``nodes/roi_pooling.cpp`` (tested against it in ``tests/test_openvino_runtime.py``).
    """
    from refdet.roi.crop import crop_and_resize
    from refdet.roi.pool import roi_pool

    _checks.check_choice(method, "method", ("max", "bilinear"))
    r = _checks.as_array(rois, "rois")
    if r.ndim != 2 or r.shape[1] != 5:
        raise ValueError(f"`rois` must have shape (K, 5) of [batch_index, x1, y1, x2, y2]; got {r.shape}")
    r = _checks.as_float_array(r, "rois", ndim=2, last=5)
    xf = _checks.as_nchw(features, "features", finite=False)
    if r.size and ((r[:, 0] < 0).any() or (r[:, 0] >= xf.shape[0]).any()):
        raise ValueError(f"`rois[:, 0]` (batch indices) must lie in [0, {xf.shape[0]}) for the images of `features`; "
                         f"got {r[:, 0].tolist()[:8]}")
    if method == "max":
        return roi_pool(features, r, output_size, spatial_scale)
    out = tuple(output_size) if np.ndim(output_size) else (output_size, output_size)
    bi = r[:, 0].astype(np.int64)
    if r.size and not np.array_equal(bi, r[:, 0]):
        raise ValueError("`rois[:, 0]` must hold integer batch indices (OpenVINO ROIPooling)")
    x = _checks.as_array(features, "features")
    boxes = r[:, [2, 1, 4, 3]].astype(_checks.working_dtype(x.dtype))
    return crop_and_resize(x, boxes, bi, out)


__all__ += ["roi_pooling"]


# --------------------------------------------------------------------------------------------------
# Interpolate (opset 11)
# --------------------------------------------------------------------------------------------------

INTERPOLATE_CTM = ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn", "align_corners")
INTERPOLATE_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _nearest_index(out_size, in_size, scale, ctm, nearest_mode):
    """Source index of every output position along one axis, the CPU plugin's float32 arithmetic
    (``Interpolate::InterpolateExecutorBase::coordTransToInput`` and ``nearestRound``)."""
    d = np.arange(out_size, dtype=np.float32)
    s = _F32(scale)
    half = _F32(0.5)
    if s == 1 or in_size == out_size:
        c = d
    elif ctm == "half_pixel":
        c = (d + half) / s - half
    elif ctm == "pytorch_half_pixel":
        c = (d + half) / s - half if out_size > 1 else np.zeros_like(d)
    elif ctm == "asymmetric":
        c = d / s
    elif ctm == "tf_half_pixel_for_nn":
        c = (d + half) / s
    else:                                                          # align_corners
        c = d * (_F32(in_size - 1) / _F32(out_size - 1)) if out_size > 1 else np.zeros_like(d)
    c = c.astype(np.float32)
    trunc = np.trunc(c)
    if nearest_mode == "round_prefer_floor":                       # ties (x == int(x) + 0.5) go down
        idx = np.where(c == trunc + half, np.floor(c), np.sign(c) * np.floor(np.abs(c) + half))
    elif nearest_mode == "round_prefer_ceil":                      # std::round: half away from zero
        idx = np.sign(c) * np.floor(np.abs(c) + half)
    elif nearest_mode == "floor":
        idx = np.floor(c)
    elif nearest_mode == "ceil":
        idx = np.ceil(c)
    else:                                                          # simple: ceil when downsampling
        idx = np.ceil(c) if s < 1 else trunc
    return np.clip(idx.astype(np.int64), 0, in_size - 1)


def interpolate(x: np.ndarray, sizes=None, scales=None, axes=None, *, mode: str = "nearest",
                coordinate_transformation_mode: str = "half_pixel", nearest_mode: str = "round_prefer_floor",
                cube_coeff: float = -0.75) -> np.ndarray:
    """OpenVINO ``Interpolate`` (opset 11) for ``mode`` ``"nearest"``, ``"linear_onnx"``, ``"cubic"`` and the
    Pillow modes ``"bilinear_pillow"`` / ``"bicubic_pillow"`` (:mod:`refdet.runtimes.openvino_pillow`).

    ``"nearest"`` is computed here with the CPU plugin's float32 coordinate arithmetic::

        scale = float32(out) / float32(in)            (shape_calculation_mode="sizes")
        half_pixel            (d + 0.5) / scale - 0.5
        pytorch_half_pixel    the same, 0 when out == 1
        asymmetric            d / scale
        tf_half_pixel_for_nn  (d + 0.5) / scale
        align_corners         d * ((in - 1) / (out - 1)), 0 when out == 1
        (the coordinate is d itself when scale == 1 or in == out)

    then ``round_prefer_floor`` (a coordinate equal to ``int(c) + 0.5`` goes down, otherwise
    ``std::round``), ``round_prefer_ceil`` (``std::round``), ``floor``, ``ceil`` or ``simple`` (``ceil``
    when downsampling, else truncation), clamped to the input. This is where OpenVINO and onnxruntime
    disagree: ``d / float32(out / in)`` is not always the exact quotient, e.g. 7 -> 2 rows,
    ``asymmetric`` + ``round_prefer_ceil``: ``1 / float32(2/7) = 3.4999998`` rounds to row 3 in
    OpenVINO, while onnxruntime (and the exact ``3.5``) take row 4.

    ``"linear_onnx"`` and ``"cubic"`` are ONNX ``Resize`` ``linear`` / ``cubic``
    (:func:`refdet.onnx_ops.resize.resize`, onnxruntime's arithmetic): OpenVINO agrees within 5e-6
    relative (another order of the float32 taps). The Pillow modes are bit-exact, and read neither
    ``coordinate_transformation_mode`` nor ``cube_coeff`` (see
:func:`refdet.runtimes.openvino_pillow.interpolate_pillow`). ``"linear"`` is, by the specification, a
    triangle filter that widens when ``antialias`` is set and the image shrinks; the CPU plugin computes
    it as ``"linear_onnx"`` instead, bit for bit, with ``antialias`` not read (measured on openvino
    2026.4 over random sizes and coordinate modes, ``tests/test_openvino_pillow.py``), so here it is
    ``"linear_onnx"`` too.

    Parameters
    ----------
    x : ndarray, any shape
    sizes : sequence of int, optional
        Output sizes of ``axes`` (``shape_calculation_mode="sizes"``).
    scales : sequence of float, optional
        Scales of ``axes`` (``"scales"``); the output size is ``floor(in * scale)``.
    axes : sequence of int, optional
        Default: all axes.
    mode : {"nearest", "linear", "linear_onnx", "cubic", "bilinear_pillow", "bicubic_pillow"}
    coordinate_transformation_mode : str
    nearest_mode : str
    cube_coeff : float

    Returns
    -------
    ndarray, the dtype of ``x`` (float32 for float32)

    Notes
    -----
    Source: ``src/plugins/intel_cpu/src/nodes/interpolate.cpp`` (``coordTransToInput``, ``nearestRound``)
    and ``src/core/reference/include/openvino/reference/interpolate.hpp``.
    """
    from refdet.onnx_ops.resize import resize

    from refdet.runtimes.openvino_pillow import PILLOW_MODES, interpolate_pillow

    _checks.check_choice(mode, "mode", ("nearest", "linear", "linear_onnx", "cubic") + PILLOW_MODES)
    if mode == "linear":            # the CPU plugin runs "linear" as "linear_onnx" (measured; see the docstring)
        mode = "linear_onnx"
    _checks.check_choice(coordinate_transformation_mode, "coordinate_transformation_mode", INTERPOLATE_CTM)
    _checks.check_choice(nearest_mode, "nearest_mode", INTERPOLATE_NEAREST)
    if mode in PILLOW_MODES:
        return interpolate_pillow(x, sizes, axes, scales=scales, mode=mode, cube_coeff=cube_coeff)
    cube_coeff = _checks.check_real(cube_coeff, "cube_coeff")
    a = _checks.as_array(x, "x")
    ax = list(range(a.ndim)) if axes is None else [_checks.check_int(v, "axes", low=-a.ndim, high=a.ndim - 1) % a.ndim
                                                     for v in axes]
    if (sizes is None) == (scales is None):
        raise ValueError("exactly one of `sizes` and `scales` must be given (OpenVINO Interpolate's "
                         "shape_calculation_mode)")
    if sizes is not None:
        out = [_checks.check_int(v, "sizes", low=1) for v in sizes]
        if len(out) != len(ax):
            raise ValueError(f"`sizes` must have one value per axis in `axes` ({len(ax)}); got {len(out)}")
        sc = [_F32(o) / _F32(a.shape[i]) for o, i in zip(out, ax)]
    else:
        sc = [_F32(_checks.check_positive(v, "scales")) for v in scales]
        if len(sc) != len(ax):
            raise ValueError(f"`scales` must have one value per axis in `axes` ({len(ax)}); got {len(sc)}")
        out = [int(np.floor(float(a.shape[i]) * float(s) + 1e-5)) for s, i in zip(sc, ax)]
    if mode != "nearest":
        if coordinate_transformation_mode == "tf_half_pixel_for_nn":
            raise ValueError("`coordinate_transformation_mode` 'tf_half_pixel_for_nn' is defined for nearest only "
                             "in refdet's ONNX Resize; OpenVINO Interpolate's linear_onnx/cubic with it are not "
                             "reproduced")
        full = list(a.shape)
        for o, i in zip(out, ax):
            full[i] = o
        try:
            return resize(a, sizes=np.array([full[i] for i in ax]), axes=ax,
                          mode="linear" if mode == "linear_onnx" else "cubic",
                          coordinate_transformation_mode=coordinate_transformation_mode, cubic_coeff_a=cube_coeff,
                          runtime="onnxruntime")
        except ValueError as exc:                          # the ONNX kernel's limits, named in OpenVINO's terms
            raise ValueError(f"{exc} (OpenVINO Interpolate `axes` {ax}, output sizes {out})") from None
    y = a
    for o, i, s in zip(out, ax, sc):                               # one gather per resized axis
        y = np.take(y, _nearest_index(o, a.shape[i], s, coordinate_transformation_mode, nearest_mode), axis=i)
    return y


__all__ += ["interpolate", "INTERPOLATE_CTM", "INTERPOLATE_NEAREST"]
