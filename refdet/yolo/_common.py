"""Private pieces shared by the refdet.yolo modules: input checks, stable elementwise functions, and
the YOLO family's own CIoU (ultralytics / YOLOv5 order of operations) with its backward pass.

Nothing here is public; the public modules name these functions in their docstrings where it matters
(which CIoU a loss uses, how a sigmoid is evaluated).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refdet import _checks

# 4 / pi^2: the CIoU aspect-ratio term v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2 lies in [0, 1).
FOUR_OVER_PI2 = 4.0 / math.pi ** 2


# ------------------------------------------------------------------------------------------------
# Input checks (wording follows refdet._checks)
# ------------------------------------------------------------------------------------------------

def floats(x, name, *, ndim=None, last=None, finite=True, dtype=None):
    """A real array in refdet's working float dtype, C-contiguous (maybe the caller's own array: read
    only). Contiguity makes reductions and matrix products sum in one order whatever the caller's
    memory layout, so results are bit-identical for C, Fortran and strided inputs."""
    arr = _checks.as_float_array(x, name, ndim=ndim, last=last, finite=finite, dtype=dtype)
    return arr if arr.ndim == 0 or arr.flags.c_contiguous else np.ascontiguousarray(arr)


def common_dtype(*arrays):
    """The dtype two or more working arrays are computed in (float32 + float64 -> float64)."""
    return np.result_type(*[a.dtype for a in arrays])


def same_dtype(dt, *arrays):
    return tuple(a.astype(dt, copy=False) for a in arrays)


def check_shape(arr, shape, name, what):
    """``arr.shape == shape`` or a ValueError naming ``name`` and the expected layout ``what``."""
    if arr.shape != tuple(shape):
        raise ValueError(f"`{name}` must have shape {what} = {tuple(shape)}; got {arr.shape}")


def check_reg_max(reg_max, name="reg_max"):
    """``reg_max`` >= 1 (the number of DFL bins; 1 means no distribution, plain distances)."""
    return _checks.check_int(reg_max, name, low=1)


def as_strides(strides, n_levels, name="strides"):
    """One positive finite stride per level, as a float64 array of length ``n_levels``."""
    arr = _checks.as_positive_vector(strides, name)
    if arr.shape[0] != n_levels:
        raise ValueError(f"`{name}` must give one stride per feature map ({n_levels}); got {arr.shape[0]}")
    return arr


def check_sizes_match_image(feature_sizes, strides, image_size, name="feature_sizes"):
    """Each level's (H, W) must be ceil(image / stride): what a stride-s conv pyramid produces."""
    if image_size is None:
        return
    ih, iw = _checks.check_image_size(image_size)
    for lvl, ((h, w), s) in enumerate(zip(feature_sizes, strides)):
        want = (math.ceil(ih / s), math.ceil(iw / s))
        if (h, w) != want:
            raise ValueError(f"`{name}[{lvl}]` = {(h, w)} does not match image_size {(ih, iw)} at stride {s:g} "
                             f"(`image_size`, `strides[{lvl}]`): expected ceil(image / stride) = {want}")


def as_gt_batch(gt_boxes, gt_labels, gt_mask, *, num_classes=None, dtype=None):
    """Padded ground truths ``(B, M, 4)``, ``(B, M)`` int64 labels, ``(B, M)`` bool mask.

    ``gt_mask`` None means every row is valid. Labels of valid rows must lie in [0, num_classes);
    padded rows may hold anything (they are never read).
    """
    g = floats(gt_boxes, "gt_boxes", dtype=dtype)
    if g.ndim != 3 or g.shape[-1] != 4:
        raise ValueError(f"`gt_boxes` must have shape (B, M, 4) (padded per image); got {g.shape}")
    lab = _checks.as_array(gt_labels, "gt_labels")
    if lab.dtype.kind not in "iu":
        if lab.dtype.kind == "f" and lab.size and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)            # ultralytics keeps class ids as floats
        elif lab.dtype.kind == "f" and lab.size == 0:
            lab = lab.astype(np.int64)
        else:
            raise TypeError(f"`gt_labels` must hold integer class ids; got dtype {lab.dtype}")
    if lab.ndim == 3 and lab.shape[-1] == 1:
        lab = lab[..., 0]
    if lab.shape != g.shape[:2]:
        raise ValueError(f"`gt_labels` must have shape (B, M) = {g.shape[:2]}; got {lab.shape}")
    lab = lab.astype(np.int64, copy=False)
    if gt_mask is None:
        mask = np.ones(g.shape[:2], dtype=bool)
    else:
        m = _checks.as_array(gt_mask, "gt_mask")
        if m.ndim == 3 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.shape != g.shape[:2]:
            raise ValueError(f"`gt_mask` must have shape (B, M) = {g.shape[:2]}; got {m.shape}")
        mask = m.astype(bool)
    if num_classes is not None and mask.any():
        v = lab[mask]
        if v.min() < 0 or v.max() >= num_classes:
            bad = v[(v < 0) | (v >= num_classes)][0]
            raise ValueError(f"`gt_labels` of valid ground truths must lie in [0, {num_classes}); got {bad}")
    return g, lab, mask


# ------------------------------------------------------------------------------------------------
# Stable elementwise functions (torch's CPU formulas)
# ------------------------------------------------------------------------------------------------

def sigmoid(x):
    """``(sigmoid(x), 1 - sigmoid(x))``, both as ``1 / (1 + exp(-+x))`` (torch's CPU formula); the
    second keeps its relative precision when the first rounds to 1."""
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        p = one / (one + np.exp(-x))
        q = one / (one + np.exp(x))
    return p, q


def log_sigmoid(x):
    """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``: never overflows."""
    return np.minimum(x, x.dtype.type(0)) - np.log1p(np.exp(-np.abs(x)))


def bce_logits(x, t):
    """torch's ``binary_cross_entropy_with_logits`` elementwise: ``(1 - t) x - log_sigmoid(x)``."""
    return (x.dtype.type(1) - t) * x - log_sigmoid(x)


def torch_pow(x, e):
    """``torch.pow(x, e)`` for a Python scalar exponent, with torch's fast paths (``0.5 -> sqrt``,
    ``2 -> x * x``, ``3 -> x * x * x``, ``-0.5 -> 1 / sqrt``, ``-1 -> 1 / x``, ``-2 -> 1 / (x * x)``,
    ``1 -> x``, ``0 -> 1``; ``aten/src/ATen/native/cpu/PowKernel.cpp``) so float32 bits agree."""
    T = x.dtype.type
    e = float(e)
    if e == 0.5:
        return np.sqrt(x)
    if e == 2.0:
        return x * x
    if e == 3.0:
        return x * x * x
    if e == -0.5:
        return T(1) / np.sqrt(x)
    if e == -1.0:
        return T(1) / x
    if e == -2.0:
        return T(1) / (x * x)
    if e == 1.0:
        return x.copy()
    if e == 0.0:
        return np.ones_like(x)
    return np.power(x, T(e))


def log_softmax(z, axis=-1):
    """``z - max - log(sum(exp(z - max)))`` along ``axis``."""
    m = np.max(z, axis=axis, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def max_share(a, b):
    """Share of d max(a, b) going to ``a``: 1, 0, or 1/2 on a tie (torch.maximum's backward)."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


def min_share(a, b):
    return np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


# ------------------------------------------------------------------------------------------------
# CIoU of matched pairs, as ultralytics and YOLOv5 compute it
# ------------------------------------------------------------------------------------------------

class CIoUCache(NamedTuple):
    fmt: str
    style: str
    v: dict


def ciou_pairs(b1, b2, *, fmt="xyxy", style="ultralytics", eps=1e-7):
    """Elementwise CIoU of ``b1[i]`` and ``b2[i]`` (shapes (..., 4)), the way the YOLO code does it.

    ``style="ultralytics"`` is ``ultralytics/utils/metrics.py bbox_iou(..., CIoU=True)``: with
    ``fmt="xyxy"`` heights get ``+ eps`` (``h = y2 - y1 + eps``), and ``alpha = v / (1 - iou + v +
    eps)``. ``style="yolov5"`` is YOLOv5 v7.0 ``utils/metrics.py bbox_iou``: ``fmt="xyxy"`` clamps
    heights to ``>= eps``; ``alpha = v / (v - iou + (1 + eps))``. With ``fmt="cxcywh"`` (both styles'
    ``xywh=True``) the widths and heights are the inputs themselves, no eps. Both then compute::

        inter = clamp(min(x2) - max(x1), 0) * clamp(min(y2) - max(y1), 0)
        union = w1 * h1 + w2 * h2 - inter + eps;   iou = inter / union
        c2 = cw ** 2 + ch ** 2 + eps;   rho2 = ((x1' + x2' - x1 - x2) ** 2 + (y...) ** 2) / 4
        v = 4 / pi ** 2 * (atan(w2 / h2) - atan(w1 / h1)) ** 2;   alpha under no_grad
        ciou = iou - (rho2 / c2 + v * alpha)

    in that order (float32 inputs give float32 math in the same order). ``alpha`` is a constant in
    the backward pass (``torch.no_grad``), ``clamp(., 0)`` passes no gradient at 0 and a tie of
    ``min``/``max`` splits the gradient in halves, as torch's autograd does.
    """
    dt = np.result_type(b1.dtype, b2.dtype)
    T = dt.type
    e = T(eps)
    one, zero, two = T(1), T(0), T(2)
    b1 = b1.astype(dt, copy=False)
    b2 = b2.astype(dt, copy=False)
    v = {}
    if fmt == "cxcywh":
        x1, y1, w1, h1 = (b1[..., k] for k in range(4))
        x2, y2, w2, h2 = (b2[..., k] for k in range(4))
        w1_, h1_, w2_, h2_ = w1 / two, h1 / two, w2 / two, h2 / two
        ax1, ax2, ay1, ay2 = x1 - w1_, x1 + w1_, y1 - h1_, y1 + h1_
        bx1, bx2, by1, by2 = x2 - w2_, x2 + w2_, y2 - h2_, y2 + h2_
        hmask1 = hmask2 = None
    else:
        ax1, ay1, ax2, ay2 = (b1[..., k] for k in range(4))
        bx1, by1, bx2, by2 = (b2[..., k] for k in range(4))
        w1, w2 = ax2 - ax1, bx2 - bx1
        if style == "ultralytics":
            h1, h2 = ay2 - ay1 + e, by2 - by1 + e
            hmask1 = hmask2 = None
        else:
            r1, r2 = ay2 - ay1, by2 - by1
            h1, h2 = np.maximum(r1, e), np.maximum(r2, e)
            hmask1, hmask2 = r1 > e, r2 > e            # clamp(min=eps) backward: strictly inside
    ix2, ix1 = np.minimum(ax2, bx2), np.maximum(ax1, bx1)
    iy2, iy1 = np.minimum(ay2, by2), np.maximum(ay1, by1)
    iw_raw, ih_raw = ix2 - ix1, iy2 - iy1
    iw, ih = np.maximum(iw_raw, zero), np.maximum(ih_raw, zero)
    inter = iw * ih
    union = w1 * h1 + w2 * h2 - inter + e
    iou = inter / union
    cx2, cx1 = np.maximum(ax2, bx2), np.minimum(ax1, bx1)
    cy2, cy1 = np.maximum(ay2, by2), np.minimum(ay1, by1)
    cw, ch = cx2 - cx1, cy2 - cy1
    c2 = cw ** 2 + ch ** 2 + e
    dx = bx1 + bx2 - ax1 - ax2                        # twice the centre offset, the code's order
    dy = by1 + by2 - ay1 - ay2
    rho2 = (dx ** 2 + dy ** 2) / T(4)
    with np.errstate(divide="ignore", invalid="ignore"):
        a1, a2 = np.arctan(w1 / h1), np.arctan(w2 / h2)
    vv = T(FOUR_OVER_PI2) * (a2 - a1) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        if style == "ultralytics":
            alpha = vv / (one - iou + vv + e)
        else:
            alpha = vv / (vv - iou + (one + e))
    ciou = iou - (rho2 / c2 + vv * alpha)
    v.update(ax1=ax1, ay1=ay1, ax2=ax2, ay2=ay2, bx1=bx1, by1=by1, bx2=bx2, by2=by2, w1=w1, h1=h1, w2=w2,
             h2=h2, hmask1=hmask1, hmask2=hmask2, ix1=ix1, ix2=ix2, iy1=iy1, iy2=iy2, iw_raw=iw_raw,
             ih_raw=ih_raw, iw=iw, ih=ih, inter=inter, union=union, iou=iou, cx1=cx1, cx2=cx2, cy1=cy1,
             cy2=cy2, cw=cw, ch=ch, c2=c2, dx=dx, dy=dy, rho2=rho2, a1=a1, a2=a2, vv=vv, alpha=alpha)
    return ciou, CIoUCache(fmt, style, v)


def ciou_pairs_grad(g, cache):
    """Gradients of ``sum(g * ciou)`` with respect to both box arrays (the chain rule of the forward,
    line by line, read bottom up). Returns ``(db1, db2)`` shaped like the inputs."""
    v = cache.v
    dt = v["iou"].dtype
    T = dt.type
    g = np.asarray(g, dtype=dt)
    # ciou = iou - rho2 / c2 - vv * alpha            (alpha constant)
    g_iou = g
    g_rho2 = -g / v["c2"]
    g_c2 = g * v["rho2"] / (v["c2"] * v["c2"])
    g_vv = -g * v["alpha"]
    # vv = K (a2 - a1)^2
    d_a = g_vv * T(2 * FOUR_OVER_PI2) * (v["a2"] - v["a1"])
    g_a2, g_a1 = d_a, -d_a
    # a = atan(w / h): da/dw = h / (w^2 + h^2), da/dh = -w / (w^2 + h^2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = v["w1"] ** 2 + v["h1"] ** 2
        r2 = v["w2"] ** 2 + v["h2"] ** 2
        g_w1 = g_a1 * v["h1"] / r1
        g_h1 = -g_a1 * v["w1"] / r1
        g_w2 = g_a2 * v["h2"] / r2
        g_h2 = -g_a2 * v["w2"] / r2
    # rho2 = (dx^2 + dy^2) / 4
    g_dx = g_rho2 * v["dx"] / T(2)
    g_dy = g_rho2 * v["dy"] / T(2)
    # c2 = cw^2 + ch^2 + eps
    g_cw = g_c2 * T(2) * v["cw"]
    g_ch = g_c2 * T(2) * v["ch"]
    # iou = inter / union
    g_inter = g_iou / v["union"]
    g_union = -g_iou * v["inter"] / (v["union"] * v["union"])
    # union = w1 h1 + w2 h2 - inter + eps
    g_w1 = g_w1 + g_union * v["h1"]
    g_h1 = g_h1 + g_union * v["w1"]
    g_w2 = g_w2 + g_union * v["h2"]
    g_h2 = g_h2 + g_union * v["w2"]
    g_inter = g_inter - g_union
    # inter = clamp(iw_raw, 0) * clamp(ih_raw, 0)
    g_iw = np.where(v["iw_raw"] > 0, g_inter * v["ih"], T(0))
    g_ih = np.where(v["ih_raw"] > 0, g_inter * v["iw"], T(0))
    ax1, ay1, ax2, ay2 = v["ax1"], v["ay1"], v["ax2"], v["ay2"]
    bx1, by1, bx2, by2 = v["bx1"], v["by1"], v["bx2"], v["by2"]
    # corners: intersection (min of x2, max of x1), enclosure (max of x2, min of x1), centre offsets
    s = min_share(ax2, bx2)
    g_ax2 = g_iw * s
    g_bx2 = g_iw * (1 - s)
    s = max_share(ax1, bx1)
    g_ax1 = -g_iw * s
    g_bx1 = -g_iw * (1 - s)
    s = min_share(ay2, by2)
    g_ay2 = g_ih * s
    g_by2 = g_ih * (1 - s)
    s = max_share(ay1, by1)
    g_ay1 = -g_ih * s
    g_by1 = -g_ih * (1 - s)
    s = max_share(ax2, bx2)
    g_ax2 = g_ax2 + g_cw * s
    g_bx2 = g_bx2 + g_cw * (1 - s)
    s = min_share(ax1, bx1)
    g_ax1 = g_ax1 - g_cw * s
    g_bx1 = g_bx1 - g_cw * (1 - s)
    s = max_share(ay2, by2)
    g_ay2 = g_ay2 + g_ch * s
    g_by2 = g_by2 + g_ch * (1 - s)
    s = min_share(ay1, by1)
    g_ay1 = g_ay1 - g_ch * s
    g_by1 = g_by1 - g_ch * (1 - s)
    g_bx1 = g_bx1 + g_dx
    g_bx2 = g_bx2 + g_dx
    g_ax1 = g_ax1 - g_dx
    g_ax2 = g_ax2 - g_dx
    g_by1 = g_by1 + g_dy
    g_by2 = g_by2 + g_dy
    g_ay1 = g_ay1 - g_dy
    g_ay2 = g_ay2 - g_dy
    if cache.fmt == "cxcywh":
        # x1 = cx - w/2, x2 = cx + w/2 (w and h also enter directly)
        db1 = np.stack([g_ax1 + g_ax2, g_ay1 + g_ay2, g_w1 + (g_ax2 - g_ax1) / T(2),
                        g_h1 + (g_ay2 - g_ay1) / T(2)], axis=-1)
        db2 = np.stack([g_bx1 + g_bx2, g_by1 + g_by2, g_w2 + (g_bx2 - g_bx1) / T(2),
                        g_h2 + (g_by2 - g_by1) / T(2)], axis=-1)
        return db1, db2
    if v["hmask1"] is not None:                     # yolov5 xyxy: h = clamp(y2 - y1, eps)
        g_h1 = np.where(v["hmask1"], g_h1, T(0))
        g_h2 = np.where(v["hmask2"], g_h2, T(0))
    # w = x2 - x1, h = y2 - y1 (+ eps)
    db1 = np.stack([g_ax1 - g_w1, g_ay1 - g_h1, g_ax2 + g_w1, g_ay2 + g_h1], axis=-1)
    db2 = np.stack([g_bx1 - g_w2, g_by1 - g_h2, g_bx2 + g_w2, g_by2 + g_h2], axis=-1)
    return db1, db2


def box_iou_pairs(b1, b2):
    """Plain IoU of matched xyxy pairs (..., 4), 0 where the union is 0."""
    iw = np.maximum(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0)
    ih = np.maximum(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0)
    inter = iw * ih
    union = ((b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
             + (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(inter.dtype)


def cxcywh_to_xyxy(b):
    """(cx, cy, w, h) -> (x1, y1, x2, y2) as ultralytics ``xywh2xyxy``: ``xy -+ wh / 2``."""
    xy = b[..., :2]
    wh = b[..., 2:4] / b.dtype.type(2)
    return np.concatenate([xy - wh, xy + wh], axis=-1)


def xyxy_to_cxcywh(b):
    """(x1, y1, x2, y2) -> (cx, cy, w, h) as ultralytics ``xyxy2xywh``: ``(x1 + x2) / 2``, ``x2 - x1``."""
    two = b.dtype.type(2)
    return np.stack([(b[..., 0] + b[..., 2]) / two, (b[..., 1] + b[..., 3]) / two,
                     b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)
