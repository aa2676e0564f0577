"""RoI max pooling (Fast R-CNN, Girshick 2015, §2.1): quantise the RoI, split it into bins, take maxima.

The kernel every framework shares (Caffe ``ROIPoolingLayer`` of py-faster-rcnn, copied into
torchvision ``csrc/ops/cpu/roi_pool_kernel.cpp``, mmcv ``RoIPool`` and detectron2 ``ROIPool``)::

    x1' = round(x1 * scale)                     C round(): halves away from zero (2.5 -> 3, -2.5 -> -3)
    w   = max(x2' - x1' + 1, 1)                 inclusive pixel count: the "+1" pixel convention
    bin = w / PW                                in the features' dtype
    bin pw covers columns [floor(pw * bin), ceil((pw + 1) * bin)) + x1', clipped to [0, W]

so neighbouring bins overlap by a pixel whenever ``bin`` is not an integer. A bin left empty by the
clipping gives 0 and argmax -1; otherwise the maximum starts from ``-FLT_MAX`` and is replaced only by a
strictly larger value while scanning rows then columns, so the *first* maximum (row-major) wins ties
and values ``<= -FLT_MAX`` (float64 only) are never selected. The backward pass adds each output's
gradient to its argmax, in the kernel's order (RoI, channel, bin), bit-equal to torchvision's
autograd in float32 and float64.

There is no convention table: torchvision, detectron2, mmcv and py-faster-rcnn run the same kernel.
The readable version is :func:`refdet.reference.roi.roi_pool_reference`.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

from refdet.roi import _common

__all__ = ["RoIPoolCache", "RoIPoolGrads", "roi_pool_forward", "roi_pool_backward", "roi_pool"]

#: the initial maximum of the Caffe / torchvision kernel (FLT_MAX from <float.h>, also for double)
FLT_MAX = float(np.finfo(np.float32).max)


class RoIPoolCache(NamedTuple):
    """What :func:`roi_pool_backward` needs."""
    batch: np.ndarray          # (K,) int64
    features_shape: tuple      # (B, C, H, W)
    dtype: np.dtype
    argmax: np.ndarray         # (K, C, PH, PW) int64: h * W + w of the maximum in its image plane, -1: empty


class RoIPoolGrads(NamedTuple):
    """Gradient of :func:`roi_pool_forward` (the boxes get none)."""
    dfeatures: np.ndarray      # (B, C, H, W)


def c_round(v: np.ndarray) -> np.ndarray:
    """C ``round()``: to the nearest integer, halves away from zero (``np.round`` rounds them to even).

    Computed as ``trunc(v) + sign(v) * (|v - trunc(v)| >= 0.5)``: ``v - trunc(v)`` is exact, so no
    addition of 0.5 can round a value just below a half up (``0.49999999999999994 + 0.5 == 1.0``).
    """
    v = np.asarray(v)
    t = np.trunc(v)
    return t + np.sign(v) * (np.abs(v - t) >= 0.5)


def _bins(rois, H, W, output_size, spatial_scale):
    """Per RoI and bin: start and end rows (K, PH) and columns (K, PW), clipped to the map."""
    dt = rois.dtype
    s = dt.type(spatial_scale)
    x1 = c_round(rois[:, 1] * s).astype(np.int64)
    y1 = c_round(rois[:, 2] * s).astype(np.int64)
    x2 = c_round(rois[:, 3] * s).astype(np.int64)
    y2 = c_round(rois[:, 4] * s).astype(np.int64)
    w = np.maximum(x2 - x1 + 1, 1)
    h = np.maximum(y2 - y1 + 1, 1)
    PH, PW = output_size
    bin_h = h.astype(dt) / dt.type(PH)        # static_cast<T>(roi_height) / static_cast<T>(pooled_height)
    bin_w = w.astype(dt) / dt.type(PW)
    ph = np.arange(PH, dtype=dt)
    pw = np.arange(PW, dtype=dt)
    hs = np.floor(ph[None] * bin_h[:, None]).astype(np.int64) + y1[:, None]          # (K, PH)
    he = np.ceil((ph[None] + 1) * bin_h[:, None]).astype(np.int64) + y1[:, None]
    ws = np.floor(pw[None] * bin_w[:, None]).astype(np.int64) + x1[:, None]          # (K, PW)
    we = np.ceil((pw[None] + 1) * bin_w[:, None]).astype(np.int64) + x1[:, None]
    hs, he = np.clip(hs, 0, H), np.clip(he, 0, H)
    ws, we = np.clip(ws, 0, W), np.clip(we, 0, W)
    return hs, he, ws, we


def roi_pool_forward(features: np.ndarray, boxes, output_size, spatial_scale: float = 1.0
                     ) -> Tuple[np.ndarray, RoIPoolCache]:
    """RoI max pooling forward pass (torchvision ``ops.roi_pool``, Caffe ``ROIPooling``).

    Reference: :func:`refdet.reference.roi.roi_pool_reference` (the loop over RoIs and bins;
    ``tests/test_roi.py`` holds the two equal bit for bit).

    Parameters
    ----------
    features : ndarray, shape (B, C, H, W)
    boxes : ndarray, shape (K, 5), or list of arrays of shape (L_i, 4)
        As for :func:`refdet.roi.roi_align_forward`.
    output_size : int or (int, int)
        ``(PH, PW)``, each >= 1.
    spatial_scale : float
        > 0; multiplies the box coordinates (in the features' dtype) *before* rounding.

    Returns
    -------
    out : ndarray, shape (K, C, PH, PW)
        Bin maxima; 0 for an empty bin (a RoI outside the map).
    cache : RoIPoolCache
        ``cache.argmax`` is torchvision's second output (``h * W + w``, -1 for an empty bin).
    """
    x = _common.as_features(features)
    output_size = _common.check_output_size(output_size)
    spatial_scale = _common.check_spatial_scale(spatial_scale)
    rois, batch = _common.as_rois(boxes, x.shape[0], x.dtype)
    B, C, H, W = x.shape
    dt = x.dtype
    PH, PW = output_size
    K = len(rois)
    _common.check_outputs(K, C, PH, PW, 8)
    out = np.zeros((K, PH, PW, C), dtype=dt)
    arg = np.full((K, PH, PW, C), -1, dtype=np.int64)
    if K and C:
        hs, he, ws, we = _bins(rois, H, W, output_size, spatial_scale)
        xf = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(B * H * W, C)
        hlen, wlen = he - hs, we - ws
        Lh, Lw = max(int(hlen.max()), 0), max(int(wlen.max()), 0)
        empty = (hlen[:, :, None] <= 0) | (wlen[:, None, :] <= 0)                       # (K, PH, PW)
        for blk in _block(K, PH * PW * C):
            n = blk.stop - blk.start
            best = np.full((n, PH, PW, C), -FLT_MAX, dtype=dt)
            barg = np.full((n, PH, PW, C), -1, dtype=np.int64)
            base = (batch[blk] * (H * W))[:, None, None]
            hl, wl = hlen[blk], wlen[blk]                                                  # (n, PH), (n, PW)
            lh, lw = hl.max(axis=1), wl.max(axis=1)                                        # per RoI
            for dy in range(Lh):                  # rows, then columns: the kernel's scan order
                for dx in range(Lw):
                    act = np.flatnonzero((lh > dy) & (lw > dx))   # RoIs whose bins reach this offset
                    if len(act) == 0:
                        continue
                    every = len(act) == n
                    sel = slice(None) if every else act
                    rows = hs[blk][sel] + dy                                                # (a, PH)
                    cols = ws[blk][sel] + dx                                                # (a, PW)
                    inside = (dy < hl[sel])[:, :, None] & (dx < wl[sel])[:, None, :]        # (a, PH, PW)
                    pix = np.where(inside, rows[:, :, None] * W + cols[:, None, :], 0)
                    v = xf[base[sel] + pix]                                                 # (a, PH, PW, C)
                    b_, a_ = (best, barg) if every else (best[act], barg[act])
                    better = (v > b_) & inside[..., None]                                   # strict: first wins
                    np.copyto(b_, v, where=better)
                    np.copyto(a_, np.broadcast_to(pix[..., None], a_.shape), where=better)
                    if not every:
                        best[act], barg[act] = b_, a_
            best[np.broadcast_to(empty[blk][..., None], best.shape)] = 0     # "an empty pooling region is zero"
            out[blk] = best
            arg[blk] = barg
    y = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    argmax = np.ascontiguousarray(arg.transpose(0, 3, 1, 2))
    return y, RoIPoolCache(batch.copy(), tuple(x.shape), dt, argmax)


def _block(n, per_roi):
    step = max(1, _common.BLOCK_ELEMENTS // max(per_roi, 1))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def roi_pool_backward(dout: np.ndarray, cache: RoIPoolCache) -> RoIPoolGrads:
    """Gradient of :func:`roi_pool_forward`: each output's gradient added to its argmax.

    Parameters
    ----------
    dout : ndarray, shape (K, C, PH, PW)
    cache : RoIPoolCache

    Returns
    -------
    RoIPoolGrads
        ``dfeatures`` (B, C, H, W); empty bins (argmax -1) send nothing. Additions happen in the
        kernel's order (RoI, channel, bin), so sums equal torchvision's bit for bit.
    """
    cache = _common.check_cache(cache, RoIPoolCache)
    B, C, H, W = cache.features_shape
    dt = cache.dtype
    K = len(cache.batch)
    arg = cache.argmax
    dy = _common.as_upstream(dout, arg.shape, dt)
    g = np.zeros(B * C * H * W, dtype=dt)
    if arg.size:
        flat_arg = arg.reshape(-1)
        src = np.flatnonzero(flat_arg >= 0)                      # C order = (k, c, ph, pw)
        k = src // (C * arg.shape[2] * arg.shape[3])
        c = (src // (arg.shape[2] * arg.shape[3])) % C
        dest = (cache.batch[k] * C + c) * (H * W) + flat_arg[src]
        dyf = dy.reshape(-1)
        _common.ordered_scatter_add(g, dest, lambda i: dyf[src[i]])
    return RoIPoolGrads(g.reshape(B, C, H, W))


def roi_pool(features: np.ndarray, boxes, output_size, spatial_scale: float = 1.0) -> np.ndarray:
    """RoI max pooling: :func:`roi_pool_forward` without the cache (torchvision's argument order).

    Returns
    -------
    ndarray, shape (K, C, PH, PW)
    """
    return roi_pool_forward(features, boxes, output_size, spatial_scale)[0]
