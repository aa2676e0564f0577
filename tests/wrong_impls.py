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
