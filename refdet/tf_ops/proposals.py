"""TensorFlow's ``GenerateBoundingBoxProposals`` (``tf.image.generate_bounding_box_proposals``).

TF has this operator's kernel **only for the GPU**: ``tensorflow-cpu`` reports "no registered
kernels" (``tests/test_tf_proposals.py`` asserts that, so the day a CPU kernel appears the test says
so and a differential test can follow). What follows is therefore read from the kernel's source,
``tensorflow/core/kernels/image/generate_box_proposals_op.cu.cc`` (TF 2.21) and the NMS it calls,
``NmsGpu`` in ``non_max_suppression_op.cu.cc``, step by step, per image:

1. **Sort** the ``H * W * A`` scores descending (``cub::DeviceSegmentedRadixSort::SortPairsDescending``:
   a stable radix sort, so **equal scores keep their (h, w, a) order**, lowest flat index first).
2. **Keep the top** ``min(H * W * A, pre_nms_topn)`` before anything else: the ``min_size`` filter
   comes *after* the cut, so fewer than ``pre_nms_topn`` boxes may reach NMS.
3. **Decode** (``GeneratePreNMSUprightBoxesKernel``): anchors and deltas are ``[y1, x1, y2, x2]`` and
   ``[dy, dx, dh, dw]``, no ``+1`` anywhere, ``dw`` and ``dh`` clamped from above only, at
   ``bbox_xform_clip = log(1000 / 16)``::

       w = x2 - x1;  ctr = x1 + 0.5 w;  pred_ctr = ctr + w dx;  pred_w = w exp(min(dw, clip))
       x1' = pred_ctr - 0.5 pred_w;  x2' = pred_ctr + 0.5 pred_w          (likewise y with dy, dh)

4. **Clip** to ``[0, width]`` and ``[0, height]`` of ``image_info[n] = (height, width, scale, ...)``
   (the image size itself, not ``size - 1``).
5. **Filter**: keep a box when ``min(x2' - x1', y2' - y1') >= min_size * scale`` (inclusive).
6. **NMS** (``NMSKernel<false>`` / ``NMSReduce``), greedy in score order: box ``j`` is suppressed by an
   earlier kept box ``i`` when ``inter > (area_i + area_j - inter) * nms_threshold`` (strict, in
   float32, no division), and **never when either area is 0**. At most ``post_nms_topn`` boxes.
7. **Output** ``rois`` ``(N, post_nms_topn, 4)`` as ``[y1, x1, y2, x2]`` and ``roi_probabilities``
   ``(N, post_nms_topn)``, the rows past the kept count zero.

Two things the GPU does that a CPU cannot reproduce bit for bit, written down rather than guessed:
CUDA's ``expf`` (up to 2 ulp from the correctly rounded value) and nvcc's default contraction of
``ctr + w * dx`` into one fused multiply-add. float32 input is computed in float32 in the kernel's
order, with ``ctr + w * dx`` evaluated as an FMA (the product exact in float64, one rounding) and
``exp`` correctly rounded; float64 input gives the float64 answer. NaN scores are refused (the radix
sort would rank a positive NaN above ``+inf``, a negative one below ``-inf``).

The anchors: the kernel reads anchor ``k`` for the ``k``-th flat ``(h, w, a)`` position, so anchors
are per location, ``(H, W, 4 A)`` (the op's shape function asks for rank 3; TF's Python docstring
says ``[num_anchors, 4]``, which the kernel does not read). ``(H * W * A, 4)`` is accepted too.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from refdet import _checks

__all__ = ["generate_bounding_box_proposals", "ProposalsResult", "BBOX_XFORM_CLIP"]

_SRC = "tensorflow/core/kernels/image/generate_box_proposals_op.cu.cc (TF 2.21)"

#: ``bbox_xform_clip_default_ = log(1000.0 / 16.)`` (double), passed to the kernel as a float.
BBOX_XFORM_CLIP = float(np.float32(math.log(1000.0 / 16.0)))


class ProposalsResult(NamedTuple):
    """``rois`` (N, post_nms_topn, 4) ``[y1, x1, y2, x2]``; ``roi_probabilities`` (N, post_nms_topn);
    ``num_valid`` (N,) int64: how many rows of each image are proposals (the rest are zero)."""
    rois: np.ndarray
    roi_probabilities: np.ndarray
    num_valid: np.ndarray


def _real(x, name, *, low=None, high=None):
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"`{name}` must be a real number; got {type(x).__name__}")
    v = float(x)
    if math.isnan(v) or (low is not None and v < low) or (high is not None and v > high):
        rng = f" in [{low}, {high}]" if high is not None else (f" >= {low}" if low is not None else "")
        raise ValueError(f"`{name}` must be a number{rng} (TensorFlow GenerateBoundingBoxProposals); got {x!r}")
    return v


def _inputs(scores, bbox_deltas, image_info, anchors):
    s = _checks.as_float_array(scores, "scores", ndim=4, finite=False)
    if np.isnan(s).any():
        raise ValueError("`scores` must not contain NaN (the GPU radix sort would rank it above +inf)")
    n, h, w, a = s.shape
    dt = np.float64 if s.dtype == np.float64 else np.float32
    d = _checks.as_float_array(bbox_deltas, "bbox_deltas", ndim=4, finite=False)
    if d.shape != (n, h, w, 4 * a):
        raise ValueError(f"`bbox_deltas` must have shape (N, H, W, 4 A) = {(n, h, w, 4 * a)} for scores of "
                         f"shape {s.shape}; got {d.shape}")
    info = _checks.as_float_array(image_info, "image_info", ndim=2)
    if info.shape[0] != n or info.shape[1] < 3:
        raise ValueError(f"`image_info` must have shape (N, 5) = ({n}, 5) (height, width, scale, ...); "
                         f"got {info.shape}")
    anc = _checks.as_float_array(anchors, "anchors")
    if anc.size != h * w * a * 4 or anc.ndim not in (2, 3) or (anc.ndim == 2 and anc.shape[1] != 4) \
            or (anc.ndim == 3 and anc.shape != (h, w, 4 * a)):
        raise ValueError(f"`anchors` must have shape (H, W, 4 A) = {(h, w, 4 * a)} or (H W A, 4) = "
                         f"{(h * w * a, 4)}: the kernel reads one anchor per (h, w, a); got {anc.shape}")
    return (s.astype(dt, copy=False).reshape(n, -1), d.astype(dt, copy=False).reshape(n, -1, 4),
            info.astype(dt, copy=False), anc.astype(dt, copy=False).reshape(-1, 4), dt)


def _fma(a, b, c, dt):
    """``fma(a, b, c)`` for float32 (the product is exact in float64; one rounding to float32, up
    to a double rounding in rare ties), plain for float64."""
    if dt == np.float64:
        return a * b + c
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def _decode(anc, d, dt):
    """Step 3: anchors ``[y1, x1, y2, x2]``, deltas ``[dy, dx, dh, dw]`` -> ``[y1, x1, y2, x2]``."""
    half, clip = dt(0.5), dt(BBOX_XFORM_CLIP)
    out = np.empty_like(anc)
    for lo, hi, dc, ds in ((0, 2, 0, 2), (1, 3, 1, 3)):         # (y1, y2, dy, dh), then (x1, x2, dx, dw)
        size = anc[:, hi] - anc[:, lo]
        ctr = anc[:, lo] + half * size
        pred_ctr = _fma(size, d[:, dc], ctr, dt)
        with np.errstate(over="ignore"):
            pred = size * np.exp(np.fmin(d[:, ds], clip))          # CUDA fmin: a NaN delta gives clip
        out[:, lo] = pred_ctr - half * pred
        out[:, hi] = pred_ctr + half * pred
    return out


def _nms(b, thr, k_max, dt):
    """Step 6: kept positions (increasing) of boxes ``b`` (M, 4) already in score order."""
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive = np.ones(len(b), dtype=bool)
    kept = []
    t = dt(thr)
    i = 0
    while i < len(b) and len(kept) < k_max:
        if alive[i]:
            kept.append(i)
            j = slice(i + 1, None)
            hh = np.maximum(np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0]), dt(0))
            ww = np.maximum(np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1]), dt(0))
            inter = hh * ww
            over = inter > (area[i] + area[j] - inter) * t
            if area[i] != 0:
                alive[j] &= ~(over & (area[j] != 0))
        i += 1
        if i < len(b) and not alive[i:].any():
            break
    return np.asarray(kept, dtype=np.int64)


def generate_bounding_box_proposals(scores: np.ndarray, bbox_deltas: np.ndarray, image_info: np.ndarray,
                                    anchors: np.ndarray, nms_threshold: float = 0.7, pre_nms_topn: int = 6000,
                                    min_size: float = 16, post_nms_topn: int = 300) -> ProposalsResult:
    """RPN proposals as TF's ``GenerateBoundingBoxProposals`` GPU kernel computes them.

    Parameters
    ----------
    scores : ndarray, shape (N, H, W, A)
        Objectness per anchor, any order. NaN is refused.
    bbox_deltas : ndarray, shape (N, H, W, 4 A)
        ``[dy, dx, dh, dw]`` per anchor. Non-finite values are computed as the kernel does (CUDA's
        ``fmin``/``fmax`` drop a NaN operand: a NaN ``dw`` is clipped to ``bbox_xform_clip``, a NaN
        corner is clipped to the image edge), so no NaN reaches the output.
    image_info : ndarray, shape (N, 5)
        ``(height, width, scale, ...)`` per image; only the first three are read.
    anchors : ndarray, shape (H, W, 4 A) or (H W A, 4)
        ``[y1, x1, y2, x2]`` per location and anchor, shared by the images; finite.
    nms_threshold : float, default 0.7
        In [0, 1] (the kernel's ``InvalidArgument`` otherwise). Suppression is strict: ``IoU > t``.
    pre_nms_topn : int, default 6000
        > 0. Boxes decoded per image, taken by score before the size filter.
    min_size : float, default 16
        Minimum side, times ``image_info[:, 2]``; a box is kept when ``min(w, h) >= min_size * scale``.
    post_nms_topn : int, default 300
        > 0. Rows of the output per image.

    Returns
    -------
    ProposalsResult
        ``rois`` (N, post_nms_topn, 4) ``[y1, x1, y2, x2]``, ``roi_probabilities``
        (N, post_nms_topn), ``num_valid`` (N,); rows past ``num_valid`` are zero.

    Notes
    -----
    Every step, tie and threshold is in the module docstring (:mod:`refdet.tf_ops.proposals`), with
    the kernel's source. TF has no CPU kernel for this op, so it is pinned by worked examples and a
    readable loop (``tests/test_tf_proposals.py``), not by a differential test.
    """
    s, d, info, anc, dt = _inputs(scores, bbox_deltas, image_info, anchors)
    thr = _real(nms_threshold, "nms_threshold", low=0.0, high=1.0)
    pre = _checks.check_int(pre_nms_topn, "pre_nms_topn", low=1)
    post = _checks.check_int(post_nms_topn, "post_nms_topn", low=1)
    msize = _real(min_size, "min_size")
    n, k = s.shape
    _checks.check_allocation(n * post * 5, np.dtype(dt).itemsize, "the padded output", name="post_nms_topn")
    rois = np.zeros((n, post, 4), dtype=dt)
    probs = np.zeros((n, post), dtype=dt)
    valid = np.zeros(n, dtype=np.int64)
    top = min(k, pre)
    for img in range(n):                                        # images are independent, as on the GPU
        order = np.argsort(-s[img], kind="stable")[:top]        # descending, ties by flat index
        boxes = _decode(anc[order], d[img, order], dt)
        hgt, wid, scale = info[img, 0], info[img, 1], info[img, 2]
        zero = dt(0)
        # fmax(fmin(x, size), 0) as the kernel writes it: CUDA's fmin/fmax return the non-NaN operand,
        # so a coordinate a NaN delta made NaN lands on the image's far edge (and the box is filtered)
        boxes[:, [0, 2]] = np.fmax(np.fmin(boxes[:, [0, 2]], hgt), zero)
        boxes[:, [1, 3]] = np.fmax(np.fmin(boxes[:, [1, 3]], wid), zero)
        side = np.fmin(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = side >= dt(msize) * scale
        boxes, sc = boxes[ok], s[img, order][ok]
        keep = _nms(boxes, thr, post, dt)
        m = len(keep)
        rois[img, :m] = boxes[keep]
        probs[img, :m] = sc[keep]
        valid[img] = m
    return ProposalsResult(rois, probs, valid)
