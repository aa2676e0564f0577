"""RoI operators as the kernels' loops: one RoI, one bin, one sample at a time.

These are the readable versions of :mod:`refdet.roi`; ``tests/test_roi.py`` holds them equal to the
vectorised code bit for bit (same dtype, same order of operations). Each works on NumPy scalars of
the input's dtype (``T``), so float32 arithmetic rounds exactly where the C++ kernels round; only the
channel axis is a vector (every channel follows the same steps).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "bilinear_weights",
    "roi_align_reference",
    "roi_align_backward_reference",
    "roi_pool_reference",
    "roi_pool_backward_reference",
    "crop_and_resize_reference",
    "roi_level_reference",
]


def _bin_geometry(roi, spatial_scale, P, sampling_ratio, aligned, T):
    """(start, bin size, grid) along x and y for one RoI ``(b, x1, y1, x2, y2)``, in dtype T."""
    s = T(spatial_scale)
    off = T(0.5) if aligned else T(0.0)
    x1, y1, x2, y2 = (T(v) * s - off for v in roi[1:])
    w, h = x2 - x1, y2 - y1
    if not aligned:                 # "Force malformed ROIs to be 1x1"
        w, h = max(w, T(1)), max(h, T(1))
    bin_h, bin_w = h / T(P[0]), w / T(P[1])
    gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_h))
    gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_w))
    return (y1, x1), (bin_h, bin_w), (gh, gw)


def bilinear_weights(y, x, H, W, T):
    """torchvision's ``bilinear_interpolate``: ``[(w, row, col)] * 4`` for a sample, or None if empty."""
    if not (y >= -1 and y <= H and x >= -1 and x <= W):
        return None
    y = T(0) if y <= 0 else y
    x = T(0) if x <= 0 else x
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_low = y_high = H - 1
        y = T(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_low = x_high = W - 1
        x = T(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - T(y_low), x - T(x_low)
    hy, hx = T(1) - ly, T(1) - lx
    return [(hy * hx, y_low, x_low), (hy * lx, y_low, x_high), (ly * hx, y_high, x_low), (ly * lx, y_high, x_high)]


def _samples(roi, H, W, P, spatial_scale, sampling_ratio, aligned, T):
    """Yield ``(ph, pw, weights or None, count)`` for every sample of one RoI, in the kernel's order."""
    (sy, sx), (bh, bw), (gh, gw) = _bin_geometry(roi, spatial_scale, P, sampling_ratio, aligned, T)
    for ph in range(P[0]):
        for pw in range(P[1]):
            for iy in range(gh):
                y = sy + T(ph) * bh + T(iy + 0.5) * bh / T(gh)
                for ix in range(gw):
                    x = sx + T(pw) * bw + T(ix + 0.5) * bw / T(gw)
                    yield ph, pw, bilinear_weights(y, x, H, W, T), (gh, gw)


def roi_align_reference(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
                        mode="avg"):
    """RoIAlign as torchvision's CPU kernel loops (``mode="max"``: ONNX's weighted-corner maximum).

    features (B, C, H, W) float32/float64; rois (K, 5); output_size (PH, PW). Returns (K, C, PH, PW).
    """
    T = features.dtype.type
    B, C, H, W = features.shape
    P = tuple(output_size)
    out = np.zeros((len(rois), C) + P, dtype=features.dtype)
    for k, roi in enumerate(rois):
        img = features[int(roi[0])]
        acc = np.zeros((C,) + P, dtype=features.dtype)
        first = np.ones(P, dtype=bool)
        gh = gw = 0
        for ph, pw, wts, (gh, gw) in _samples(roi, H, W, P, spatial_scale, sampling_ratio, aligned, T):
            if wts is None:               # empty sample: weight 0 on pixel (0, 0)
                wts = [(T(0), 0, 0)] * 4
            terms = [w * img[:, r, c] for w, r, c in wts]
            if mode == "avg":
                acc[:, ph, pw] += ((terms[0] + terms[1]) + terms[2]) + terms[3]
            else:
                val = terms[0]
                for t in terms[1:]:
                    val = np.where(val < t, t, val)
                acc[:, ph, pw] = val if first[ph, pw] else np.where(acc[:, ph, pw] < val, val, acc[:, ph, pw])
                first[ph, pw] = False
        if mode == "avg":
            acc /= T(max(gh * gw, 1))
        out[k] = acc
    return out


def roi_align_backward_reference(dout, features_shape, rois, output_size, spatial_scale=1.0, sampling_ratio=-1,
                                 aligned=False):
    """The backward loop of torchvision's kernel (``mode="avg"``): ``(dout * w) / count`` per corner."""
    T = dout.dtype.type
    B, C, H, W = features_shape
    P = tuple(output_size)
    dx = np.zeros(features_shape, dtype=dout.dtype)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        for ph, pw, wts, (gh, gw) in _samples(roi, H, W, P, spatial_scale, sampling_ratio, aligned, T):
            if wts is None:
                continue
            for w, r, c in wts:
                dx[b, :, r, c] += (dout[k, :, ph, pw] * w) / T(gh * gw)
    return dx


def roi_pool_reference(features, rois, output_size, spatial_scale=1.0):
    """Caffe / torchvision RoI max pooling: returns ``(out (K, C, PH, PW), argmax (K, C, PH, PW))``."""
    T = features.dtype.type
    B, C, H, W = features.shape
    PH, PW = output_size
    out = np.zeros((len(rois), C, PH, PW), dtype=features.dtype)
    arg = np.full((len(rois), C, PH, PW), -1, dtype=np.int64)
    flt_max = T(np.finfo(np.float32).max)
    for k, roi in enumerate(rois):
        img = features[int(roi[0])]
        x1, y1, x2, y2 = (_c_round(T(v) * T(spatial_scale)) for v in roi[1:])
        h, w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bh, bw = T(h) / T(PH), T(w) / T(PW)
        for ph in range(PH):
            hs = min(max(int(math.floor(T(ph) * bh)) + y1, 0), H)
            he = min(max(int(math.ceil(T(ph + 1) * bh)) + y1, 0), H)
            for pw in range(PW):
                ws = min(max(int(math.floor(T(pw) * bw)) + x1, 0), W)
                we = min(max(int(math.ceil(T(pw + 1) * bw)) + x1, 0), W)
                if he <= hs or we <= ws:
                    continue                  # empty bin: 0, argmax -1
                for c in range(C):
                    best, idx = -flt_max, -1
                    for yy in range(hs, he):
                        for xx in range(ws, we):
                            if img[c, yy, xx] > best:      # strict: the first maximum wins
                                best, idx = img[c, yy, xx], yy * W + xx
                    out[k, c, ph, pw], arg[k, c, ph, pw] = best, idx
    return out, arg


def _c_round(v):
    """C ``round``: halves away from zero."""
    t = math.trunc(float(v))
    return int(t + (math.copysign(1, v) if abs(float(v) - t) >= 0.5 else 0))


def roi_pool_backward_reference(dout, features_shape, rois, argmax):
    """Each output's gradient added to its argmax, in the order (RoI, channel, bin)."""
    B, C, H, W = features_shape
    dx = np.zeros(features_shape, dtype=dout.dtype)
    for k, roi in enumerate(rois):
        for c in range(C):
            for ph in range(argmax.shape[2]):
                for pw in range(argmax.shape[3]):
                    a = argmax[k, c, ph, pw]
                    if a >= 0:
                        dx[int(roi[0]), c, a // W, a % W] += dout[k, c, ph, pw]
    return dx


def crop_and_resize_reference(image, boxes, box_indices, crop_size, method="bilinear", extrapolation_value=0.0):
    """TF ``CropAndResize`` on an NCHW image, boxes ``[y1, x1, y2, x2]`` normalised; (K, C, CH, CW)."""
    T = image.dtype.type
    B, C, H, W = image.shape
    CH, CW = crop_size
    out = np.full((len(boxes), C, CH, CW), T(extrapolation_value), dtype=image.dtype)
    for k, (y1, x1, y2, x2) in enumerate(boxes.astype(image.dtype)):
        img = image[int(box_indices[k])]
        hs = (y2 - y1) * T(H - 1) / T(CH - 1) if CH > 1 else T(0)
        ws = (x2 - x1) * T(W - 1) / T(CW - 1) if CW > 1 else T(0)
        for y in range(CH):
            in_y = y1 * T(H - 1) + T(y) * hs if CH > 1 else T(0.5 * float(y1 + y2) * (H - 1))
            if in_y < 0 or in_y > H - 1:
                continue
            for x in range(CW):
                in_x = x1 * T(W - 1) + T(x) * ws if CW > 1 else T(0.5 * float(x1 + x2) * (W - 1))
                if in_x < 0 or in_x > W - 1:
                    continue
                if method == "nearest":
                    out[k, :, y, x] = img[:, _c_round(in_y), _c_round(in_x)]
                    continue
                t, b_ = math.floor(in_y), math.ceil(in_y)
                left, r = math.floor(in_x), math.ceil(in_x)
                yl, xl = in_y - T(t), in_x - T(left)
                top = img[:, t, left] + (img[:, t, r] - img[:, t, left]) * xl
                bottom = img[:, b_, left] + (img[:, b_, r] - img[:, b_, left]) * xl
                out[k, :, y, x] = top + (bottom - top) * yl
    return out


def roi_level_reference(box, k_min=2, k_max=5, canonical_scale=224.0, canonical_level=4, eps_inside=0.0,
                        eps_outside=0.0, plus_one=False):
    """The FPN level index (from k_min) of one xyxy box, in the box's dtype; -1 for a NaN size."""
    T = box.dtype.type
    w, h = box[2] - box[0], box[3] - box[1]
    if plus_one:
        w, h = w + T(1), h + T(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(w * h) / T(canonical_scale)
        if eps_inside:
            r = r + T(eps_inside)
        lg = np.log2(r)
        if canonical_level is not None:
            lg = T(canonical_level) + lg
        if eps_outside:
            lg = lg + T(eps_outside)
    if np.isnan(lg):
        return -1
    lo, hi = (k_min, k_max) if canonical_level is not None else (0, k_max - k_min)
    k = int(min(max(np.floor(lg), lo), hi))
    return k - k_min if canonical_level is not None else k
