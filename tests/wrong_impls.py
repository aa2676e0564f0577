"""Deliberately wrong (and matching correct) implementations for the conformance tests.

Each ``wrong_*`` function carries one classic bug; the conformance checks must catch it and name it.
The ``right_*`` twins are written independently of refdet (plain loops / textbook formulas) and must
pass: they show the checks do not flag honest implementations.
"""
import math

import numpy as np


# --------------------------------------------------------------------------------------------- NMS

def _greedy_nms(boxes, scores, thr, *, inclusive=False, order=None):
    b = np.asarray(boxes, dtype=np.float64) if boxes.dtype == np.float64 else np.asarray(boxes, np.float32)
    f = b.dtype.type
    if order is None:
        order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(b), bool)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        w = np.maximum(f(0), np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]))
        h = np.maximum(f(0), np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[i] + area - inter)
        hit = iou >= thr if inclusive else iou > thr
        suppressed |= hit
    return np.array(keep, dtype=np.int64)


def right_nms(boxes, scores, thr):
    return _greedy_nms(boxes, scores, thr)


def wrong_nms_inclusive(boxes, scores, thr):
    """Bug: suppresses when IoU >= threshold (torchvision: IoU > threshold)."""
    return _greedy_nms(boxes, scores, thr, inclusive=True)


def wrong_nms_unstable_ties(boxes, scores, thr):
    """Bug: ``argsort(scores)[::-1]`` visits equal scores highest index first."""
    return _greedy_nms(boxes, scores, thr, order=np.argsort(scores, kind="stable")[::-1])


# --------------------------------------------------------------------------------------------- IoU

def _iou(a, b, plus_one=False):
    f = a.dtype.type if a.dtype in (np.float32, np.float64) else np.float64
    one = f(1) if plus_one else f(0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt + one, f(0), None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def right_box_iou(a, b):
    return _iou(a, b)


def wrong_box_iou_plus_one(a, b):
    """Bug: legacy +1 pixel widths in areas and intersections."""
    return _iou(a, b, plus_one=True)


# --------------------------------------------------------------------------------------------- box coder

def _decode(deltas, anchors, clamp=True):
    f = deltas.dtype.type
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    cx = anchors[:, 0] + f(0.5) * w
    cy = anchors[:, 1] + f(0.5) * h
    dx, dy, dw, dh = deltas.T
    if clamp:
        lim = f(math.log(1000.0 / 16))
        dw = np.minimum(dw, lim)
        dh = np.minimum(dh, lim)
    pcx = dx * w + cx
    pcy = dy * h + cy
    pw = np.exp(dw) * w
    ph = np.exp(dh) * h
    c_to_c_w = f(0.5) * pw
    c_to_c_h = f(0.5) * ph
    return np.stack([pcx - c_to_c_w, pcy - c_to_c_h, pcx + c_to_c_w, pcy + c_to_c_h], axis=1)


def right_decode(deltas, anchors):
    return _decode(deltas, anchors)


def wrong_decode_no_clamp(deltas, anchors):
    """Bug: dw, dh are not clamped at log(1000 / 16) before exp."""
    return _decode(deltas, anchors, clamp=False)


# --------------------------------------------------------------------------------------------- focal loss

def _focal(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + np.exp(-x))
    ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))       # stable BCE with logits
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def right_focal(x, t):
    return _focal(x, t)


def wrong_focal_no_alpha(x, t):
    """Bug: the alpha_t weighting is left out."""
    return _focal(x, t, alpha=-1)


# --------------------------------------------------------------------------------------------- relu

def right_relu(x):
    return np.maximum(x, 0)


def right_relu_grad(x, dy):
    return np.where(x > 0, dy, 0.0)


def wrong_relu_grad_at_zero(x, dy):
    """Bug: ReLU'(0) = 1 (``x >= 0``)."""
    return np.where(x >= 0, dy, 0.0)


# --------------------------------------------------------------------------------------------- anchors

def _anchors(image_size, feature_sizes, strides, sizes, aspect_ratios, shift_start=0):
    out = []
    for (fh, fw), s, sz, ar in zip(feature_sizes, strides, sizes, aspect_ratios):
        sz = np.asarray(sz, dtype=np.float64)
        ar = np.asarray(ar, dtype=np.float64)
        hr = np.sqrt(ar)
        wr = 1 / hr
        ws = (wr[:, None] * sz[None, :]).ravel()                     # ratio-major (torchvision)
        hs = (hr[:, None] * sz[None, :]).ravel()
        cell = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)     # half-to-even, like torch.round
        xs = (np.arange(fw) + shift_start) * s
        ys = (np.arange(fh) + shift_start) * s
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=1)
        out.append((shifts[:, None, :] + cell[None]).reshape(-1, 4))
    return np.concatenate(out) if out else np.zeros((0, 4))


def right_anchors(image_size, feature_sizes, strides, sizes, aspect_ratios):
    return _anchors(image_size, feature_sizes, strides, sizes, aspect_ratios)


def wrong_anchors_off_by_one(image_size, feature_sizes, strides, sizes, aspect_ratios):
    """Bug: the grid shifts start at cell 1 (``arange(1, W + 1) * stride``)."""
    return _anchors(image_size, feature_sizes, strides, sizes, aspect_ratios, shift_start=1)


# --------------------------------------------------------------------------------------------- RoIAlign

def _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, *, shift=True,
               fixed_ratio=None, swap_xy=False):
    """torchvision's RoIAlign kernel written from its description (one RoI at a time, samples as arrays)."""
    x = np.asarray(features)
    f = x.dtype.type
    B, C, H, W = x.shape
    PH, PW = output_size
    out = np.zeros((len(rois), C, PH, PW), x.dtype)
    scale = f(spatial_scale)
    for k, roi in enumerate(np.asarray(rois, x.dtype)):
        b = int(roi[0])
        c1, r1, c2, r2 = (roi[2], roi[1], roi[4], roi[3]) if swap_xy else (roi[1], roi[2], roi[3], roi[4])
        off = f(0.5) if (aligned and shift) else f(0)
        x1, y1, x2, y2 = c1 * scale - off, r1 * scale - off, c2 * scale - off, r2 * scale - off
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, f(1)), max(rh, f(1))
        bh, bw = rh / f(PH), rw / f(PW)
        sr = fixed_ratio if fixed_ratio is not None else sampling_ratio
        gh = sr if sr > 0 else int(math.ceil(rh / f(PH)))
        gw = sr if sr > 0 else int(math.ceil(rw / f(PW)))
        count = f(max(gh * gw, 1))
        if gh <= 0 or gw <= 0:
            continue
        ys = y1 + np.arange(PH, dtype=f)[:, None] * bh + (np.arange(gh, dtype=f)[None, :] + f(0.5)) * bh / f(gh)
        xs = x1 + np.arange(PW, dtype=f)[:, None] * bw + (np.arange(gw, dtype=f)[None, :] + f(0.5)) * bw / f(gw)

        def axis(v, n):
            valid = (v >= -1) & (v <= n)
            v = np.maximum(v, f(0))
            lo = np.floor(v).astype(np.int64)
            top = lo >= n - 1
            lo = np.where(top, n - 1, lo)
            hi = np.where(top, n - 1, lo + 1)
            v = np.where(top, lo.astype(f), v)
            frac = (v - lo).astype(f)
            return lo, hi, frac, (f(1) - frac).astype(f), valid
        yl, yh, ly, hy, vy = axis(ys, H)
        xl, xh, lx, hx, vx = axis(xs, W)
        img = x[b]                                         # (C, H, W)
        g = lambda a, c: img[:, a[:, :, None, None], c[None, None, :, :]]   # (C, PH, gh, PW, gw)
        w = lambda a, c: a[:, :, None, None] * c[None, None, :, :]
        val = (w(hy, hx) * g(yl, xl) + w(hy, lx) * g(yl, xh) + w(ly, hx) * g(yh, xl) + w(ly, lx) * g(yh, xh))
        val = val * (vy[:, :, None, None] & vx[None, None, :, :])
        out[k] = (val.sum(axis=(2, 4)) / count).astype(x.dtype)
    return out


def right_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def wrong_roi_align_no_half_pixel(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Bug: ``aligned=True`` keeps the size rule but forgets the -0.5 pixel shift."""
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, shift=False)


def wrong_roi_align_fixed_ratio(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Bug: always samples 2 x 2 points per bin (the paper's figure), ignoring the adaptive grid."""
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, fixed_ratio=2)


def wrong_roi_align_yx_boxes(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Bug: reads the RoI as (batch, y1, x1, y2, x2) (TF's box order)."""
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, swap_xy=True)


# --------------------------------------------------------------------------------------------- RoI pool

def _c_round(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _roi_pool(features, rois, output_size, spatial_scale, *, round_first=False):
    x = np.asarray(features)
    f = x.dtype.type
    B, C, H, W = x.shape
    PH, PW = output_size
    out = np.zeros((len(rois), C, PH, PW), x.dtype)
    for k, roi in enumerate(np.asarray(rois, x.dtype)):
        b = int(roi[0])
        if round_first:
            x1, y1, x2, y2 = (_c_round(float(_c_round(float(v)) * f(spatial_scale))) for v in roi[1:])
        else:
            x1, y1, x2, y2 = (_c_round(float(v * f(spatial_scale))) for v in roi[1:])
        rw, rh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bh, bw = f(rh) / f(PH), f(rw) / f(PW)
        for i in range(PH):
            hs = min(max(int(math.floor(f(i) * bh)) + y1, 0), H)
            he = min(max(int(math.ceil(f(i + 1) * bh)) + y1, 0), H)
            for j in range(PW):
                ws = min(max(int(math.floor(f(j) * bw)) + x1, 0), W)
                we = min(max(int(math.ceil(f(j + 1) * bw)) + x1, 0), W)
                if he > hs and we > ws:
                    out[k, :, i, j] = x[b, :, hs:he, ws:we].max(axis=(1, 2))
    return out


def right_roi_pool(features, rois, output_size, spatial_scale):
    return _roi_pool(features, rois, output_size, spatial_scale)


def wrong_roi_pool_round_first(features, rois, output_size, spatial_scale):
    """Bug: rounds the image coordinates to whole pixels, then scales (torchvision: round(x * scale))."""
    return _roi_pool(features, rois, output_size, spatial_scale, round_first=True)


# --------------------------------------------------------------------------------------------- FPN levels

def _levels(boxes, eps):
    b = np.asarray(boxes)
    f = b.dtype.type
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        k = np.floor(f(4) + np.log2(s / f(224)) + f(eps))
    return (np.clip(np.nan_to_num(k, nan=2), 2, 5) - 2).astype(np.int64)


def right_levels(boxes):
    """torchvision LevelMapper: floor(4 + log2(sqrt(area) / 224) + 1e-6), clamped to [2, 5]."""
    return _levels(boxes, 1e-6)


def wrong_levels_no_eps(boxes):
    """Bug: no eps: a RoI one ulp under 224 x 224 lands on P3 instead of P4."""
    return _levels(boxes, 0.0)
