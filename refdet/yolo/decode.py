"""YOLO box decoders, forward and backward: from raw head outputs to boxes in pixels.

Every YOLO predicts, per cell ``(cx, cy)`` of a level with stride ``s`` (and per anchor template
``(pw, ph)`` in pixels for the anchor-based ones), a raw vector ``t``. The family differs only in
how ``t`` becomes a box:

=====================  ================================================  ==========================================
decoder                centre (pixels)                                   size (pixels)
=====================  ================================================  ==========================================
YOLOv2 / YOLOv3        ``(sigmoid(t) + c) * s``                          ``p * exp(t)``
YOLOv4 ``scale_x_y``   ``(S * sigmoid(t) - (S - 1) / 2 + c) * s``        ``p * exp(t)``
YOLOv5 / YOLOv7        ``(2 * sigmoid(t) - 0.5 + c) * s``                ``p * (2 * sigmoid(t)) ** 2``
YOLOX                  ``(t + c) * s``                                   ``s * exp(t)``
ultralytics v8+ (DFL)  ``dist2bbox``: ``(c + 0.5) -+ d`` in grid units,  times ``s``; ``d`` = expectation of a
                                                                         softmax over ``reg_max`` bins
                                                                         ``0 .. reg_max - 1`` per side (l, t, r, b)
=====================  ================================================  ==========================================

Sources: darknet ``src/yolo_layer.c get_yolo_box`` (and ``scal_add_cpu`` for ``scale_x_y``,
AlexeyAB), YOLOv5 ``models/yolo.py Detect.forward`` (``grid - 0.5``, ``anchor_grid = anchors *
stride``), YOLOX ``yolox/models/yolo_head.py get_output_and_grid`` / ``decode_outputs``, ultralytics
``nn/modules/block.py DFL``, ``utils/tal.py dist2bbox / bbox2dist``, ``utils/loss.py
v8DetectionLoss.bbox_decode``. YOLOv2's anchors are in grid units: pass ``anchors * stride``.

Layouts. Anchor-based decoders take one level ``t`` of shape ``(B, A, H, W, 4)`` -- YOLOv5's
``x[i].view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2)[..., :4]`` -- and anchors ``(A, 2)`` in
pixels; YOLOX takes ``(B, H, W, 4)``. Boxes come out as ``(cx, cy, w, h)`` in pixels (the family's
native format; ``refdet.boxes.box_convert`` gives xyxy). DFL logits are ``(..., 4 * reg_max)``,
side-major (``view(b, a, 4, reg_max)``, ultralytics' order) or ``(..., 4, reg_max)``.

Backward passes (CS231n shape: ``forward -> (out, cache)``, ``backward(dout, cache) -> grads``):
``d/dt sigmoid(t) = sigmoid(t) (1 - sigmoid(t))``; ``d/dt exp(t) = exp(t)``; ``d/dz softmax
expectation = p_j (j - E[j])``. Each is checked against central differences and torch autograd in
``tests/test_yolo_decode.py``. Float32 inputs are computed in float32 in the frameworks' order of
operations (e.g. YOLOv5's ``(2 sigmoid(t) + (c - 0.5)) * s``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks
from refdet.yolo import _common

__all__ = [
    "DecodeCache", "DecodeGrads", "DFLCache", "DistGrads",
    "yolov3_decode_forward", "yolov3_decode_backward",
    "yolov5_decode_forward", "yolov5_decode_backward",
    "yolox_decode_forward", "yolox_decode_backward",
    "dfl_forward", "dfl_backward",
    "dist2bbox", "dist2bbox_forward", "dist2bbox_backward", "bbox2dist",
    "dfl_decode_forward", "dfl_decode_backward",
]

OUT_FORMATS = ("xyxy", "cxcywh")


class DecodeCache(NamedTuple):
    kind: str
    parts: dict
    shape: tuple
    dtype: np.dtype


class DecodeGrads(NamedTuple):
    """Gradient w.r.t. the raw head outputs ``t``."""
    dt: np.ndarray


class DFLCache(NamedTuple):
    exps: np.ndarray         # (..., 4, reg_max) exp(z - shift), the softmax before normalisation
    denom: np.ndarray        # (..., 4, 1) their sums: probs = exps / denom
    dist: np.ndarray         # (..., 4) expectation
    shape: tuple             # shape of the logits as given
    reg_max: int


class DistGrads(NamedTuple):
    """Gradient w.r.t. the distances ``(l, t, r, b)`` (anchor points are not differentiated)."""
    ddistance: np.ndarray


def _stride_pair(stride, dt):
    sy, sx = _checks.as_stride_pair(stride)
    return dt.type(sy), dt.type(sx)


def _level_t(t, name="t", ndim=5):
    arr = _common.floats(t, name)
    if arr.ndim != ndim or arr.shape[-1] != 4:
        want = "(B, A, H, W, 4)" if ndim == 5 else "(B, H, W, 4)"
        raise ValueError(f"`{name}` must have shape {want} (one level of raw box outputs); got {arr.shape}")
    return arr


def _anchors(anchors, a_count, dt):
    arr = _common.floats(anchors, "anchors")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"`anchors` must have shape (A, 2) (pixels); got {arr.shape}")
    if arr.shape[0] != a_count:
        raise ValueError(f"`anchors` must have one row per anchor of `t` ({a_count}); got {arr.shape[0]}")
    if (arr <= 0).any():
        raise ValueError("`anchors` must hold positive widths and heights")
    return arr.astype(dt, copy=False)


def _grid(h, w, dt):
    """Cell indices broadcastable to (..., H, W): cx (1, W), cy (H, 1)."""
    return np.arange(w, dtype=dt)[None, :], np.arange(h, dtype=dt)[:, None]


def _check_dout(dout, cache, name="dboxes"):
    d = _common.floats(dout, name)
    if d.shape != cache.shape:
        raise ValueError(f"`{name}` must have the shape of the forward output {cache.shape}; got {d.shape}")
    return d.astype(cache.dtype, copy=False)


def _check_cache(cache, kind, forward):
    if not isinstance(cache, DecodeCache) or cache.kind != kind:
        raise TypeError(f"`cache` must be the DecodeCache returned by {forward}; got {type(cache).__name__}")


# ------------------------------------------------------------------------------------------------
# YOLOv2 / v3 / v4
# ------------------------------------------------------------------------------------------------

def yolov3_decode_forward(t, anchors, stride, *, scale_x_y: float = 1.0):
    """YOLOv2/v3 (and YOLOv4 ``scale_x_y``) decode of one level.

    ``cx = (S * sigmoid(tx) - (S - 1) / 2 + x) * s_x``, ``w = pw * exp(tw)`` (same in y), with
    ``S = scale_x_y`` (1 for YOLOv2/v3: ``(sigmoid(tx) + x) * s_x``; YOLOv4 uses 1.05-1.2 so that a
    centre can reach the cell border). darknet ``get_yolo_box``: ``b.x = (i + x) / lw`` with
    ``x = S * sigmoid(tx) - 0.5 (S - 1)`` (``scal_add_cpu``), times the network width.

    Parameters
    ----------
    t : ndarray, shape (B, A, H, W, 4)
        Raw ``(tx, ty, tw, th)``.
    anchors : ndarray, shape (A, 2)
        Anchor ``(pw, ph)`` in pixels (YOLOv2: grid units times the stride).
    stride : float or (stride_y, stride_x)
    scale_x_y : float
        > 0.

    Returns
    -------
    boxes : ndarray, shape (B, A, H, W, 4)
        ``(cx, cy, w, h)`` in pixels.
    cache : DecodeCache
    """
    x = _level_t(t)
    dt = x.dtype
    T = dt.type
    a = _anchors(anchors, x.shape[1], dt)
    sy, sx = _stride_pair(stride, dt)
    sc = _checks.check_positive(scale_x_y, "scale_x_y")
    S = T(sc)
    gx, gy = _grid(x.shape[2], x.shape[3], dt)
    p, q = _common.sigmoid(x[..., :2])
    half = T(0.5) * (S - T(1))
    ox = S * p[..., 0] - half                                # darknet: scal_add(S, -(S - 1)/2)
    oy = S * p[..., 1] - half
    with np.errstate(over="ignore"):
        e = np.exp(x[..., 2:4])
    aw = a[None, :, None, None, 0]
    ah = a[None, :, None, None, 1]
    boxes = np.stack([(ox + gx) * sx, (oy + gy) * sy, aw * e[..., 0], ah * e[..., 1]], axis=-1)
    parts = dict(pq=p * q, S=S, sx=sx, sy=sy, wh=boxes[..., 2:4])
    return boxes, DecodeCache("yolov3", parts, boxes.shape, dt)


def yolov3_decode_backward(dboxes, cache):
    """``dtx = dcx * s_x * S * sigmoid(tx)(1 - sigmoid(tx))``, ``dtw = dw * w``; returns DecodeGrads."""
    _check_cache(cache, "yolov3", "yolov3_decode_forward")
    d = _check_dout(dboxes, cache)
    P = cache.parts
    dt = np.empty(cache.shape, dtype=cache.dtype)
    dt[..., 0] = d[..., 0] * P["sx"] * P["S"] * P["pq"][..., 0]
    dt[..., 1] = d[..., 1] * P["sy"] * P["S"] * P["pq"][..., 1]
    dt[..., 2:4] = d[..., 2:4] * P["wh"]
    return DecodeGrads(dt)


# ------------------------------------------------------------------------------------------------
# YOLOv5 / v7
# ------------------------------------------------------------------------------------------------

def yolov5_decode_forward(t, anchors, stride):
    """YOLOv5/YOLOv7 decode of one level (``models/yolo.py Detect.forward``).

    ``cx = (2 sigmoid(tx) + (x - 0.5)) * s_x`` (YOLOv5 bakes the ``- 0.5`` into its grid),
    ``w = (2 sigmoid(tw)) ** 2 * pw``: the centre may leave the cell by half a cell on each side (the
    two neighbouring cells of :func:`refdet.yolo.assign.yolov5_build_targets` can reach their
    targets), and the size is bounded by ``4 * pw`` (the ``anchor_t = 4`` of the ratio test).

    Parameters
    ----------
    t : ndarray, shape (B, A, H, W, 4)
    anchors : ndarray, shape (A, 2)
        Pixels (YOLOv5's ``anchor_grid``).
    stride : float or (stride_y, stride_x)

    Returns
    -------
    boxes : ndarray, shape (B, A, H, W, 4)
        ``(cx, cy, w, h)`` pixels.
    cache : DecodeCache
    """
    x = _level_t(t)
    dt = x.dtype
    T = dt.type
    a = _anchors(anchors, x.shape[1], dt)
    sy, sx = _stride_pair(stride, dt)
    gx, gy = _grid(x.shape[2], x.shape[3], dt)
    gx, gy = gx - T(0.5), gy - T(0.5)                       # YOLOv5's grid already holds c - 0.5
    p, q = _common.sigmoid(x)
    two = T(2)
    aw = a[None, :, None, None, 0]
    ah = a[None, :, None, None, 1]
    boxes = np.stack([(p[..., 0] * two + gx) * sx, (p[..., 1] * two + gy) * sy,
                      (p[..., 2] * two) ** 2 * aw, (p[..., 3] * two) ** 2 * ah], axis=-1)
    parts = dict(p=p, pq=p * q, sx=sx, sy=sy, aw=aw, ah=ah)
    return boxes, DecodeCache("yolov5", parts, boxes.shape, dt)


def yolov5_decode_backward(dboxes, cache):
    """``dtx = dcx * 2 s_x sigmoid'(tx)``, ``dtw = dw * 8 pw sigmoid(tw) sigmoid'(tw)``
    (``d/dt (2 sigmoid)^2 = 8 sigmoid * sigmoid'``); returns DecodeGrads."""
    _check_cache(cache, "yolov5", "yolov5_decode_forward")
    d = _check_dout(dboxes, cache)
    P = cache.parts
    T = cache.dtype.type
    dt = np.empty(cache.shape, dtype=cache.dtype)
    dt[..., 0] = d[..., 0] * T(2) * P["sx"] * P["pq"][..., 0]
    dt[..., 1] = d[..., 1] * T(2) * P["sy"] * P["pq"][..., 1]
    dt[..., 2] = d[..., 2] * T(8) * P["aw"] * P["p"][..., 2] * P["pq"][..., 2]
    dt[..., 3] = d[..., 3] * T(8) * P["ah"] * P["p"][..., 3] * P["pq"][..., 3]
    return DecodeGrads(dt)


# ------------------------------------------------------------------------------------------------
# YOLOX
# ------------------------------------------------------------------------------------------------

def yolox_decode_forward(t, stride):
    """YOLOX decode of one level (anchor-free; ``yolo_head.py get_output_and_grid``).

    ``cx = (tx + x) * s_x``, ``w = exp(tw) * s_x`` (grid offset 0: YOLOX's "anchor point" of a cell
    is its top-left corner in the decode, its centre ``(x + 0.5) s`` only in the SimOTA prior).

    Parameters
    ----------
    t : ndarray, shape (B, H, W, 4)
    stride : float or (stride_y, stride_x)

    Returns
    -------
    boxes : ndarray, shape (B, H, W, 4)
        ``(cx, cy, w, h)`` pixels.
    cache : DecodeCache
    """
    x = _level_t(t, ndim=4)
    dt = x.dtype
    sy, sx = _stride_pair(stride, dt)
    gx, gy = _grid(x.shape[1], x.shape[2], dt)
    with np.errstate(over="ignore"):
        e = np.exp(x[..., 2:4])
    boxes = np.stack([(x[..., 0] + gx) * sx, (x[..., 1] + gy) * sy, e[..., 0] * sx, e[..., 1] * sy], axis=-1)
    return boxes, DecodeCache("yolox", dict(sx=sx, sy=sy, wh=boxes[..., 2:4]), boxes.shape, dt)


def yolox_decode_backward(dboxes, cache):
    """``dtx = dcx * s_x``, ``dtw = dw * w``; returns DecodeGrads."""
    _check_cache(cache, "yolox", "yolox_decode_forward")
    d = _check_dout(dboxes, cache)
    P = cache.parts
    dt = np.empty(cache.shape, dtype=cache.dtype)
    dt[..., 0] = d[..., 0] * P["sx"]
    dt[..., 1] = d[..., 1] * P["sy"]
    dt[..., 2:4] = d[..., 2:4] * P["wh"]
    return DecodeGrads(dt)


# ------------------------------------------------------------------------------------------------
# Distribution focal loss decode (ultralytics v8+, GFL)
# ------------------------------------------------------------------------------------------------

def _dfl_logits(logits, reg_max):
    z = _common.floats(logits, "logits", finite=False)
    R = _common.check_reg_max(reg_max)
    if z.ndim >= 2 and z.shape[-2:] == (4, R):
        return z, z, R
    if z.ndim == 0 or z.shape[-1] != 4 * R:
        raise ValueError(f"`logits` must have last dimension 4 * reg_max = {4 * R} (`reg_max` = {R}; side-major l, t, r, b) "
                         f"or shape (..., 4, {R}); got {z.shape}")
    return z, z.reshape(z.shape[:-1] + (4, R)), R


# exp(-x) stays a normal number for x below these: a common shift is safe when the logits span less
_EXP_SPAN = {np.dtype(np.float32): 80.0, np.dtype(np.float64): 700.0}


def _shifted_exp(z, given=None):
    """``exp(z - shift)`` over the last axis, with the validation of ``z`` folded in.

    Softmax is invariant to a shift of each row; torch subtracts each row's maximum. Logits within
    ``[-span, span]`` (always, for a trained head) need no shift: every ``exp`` is finite and normal.
    When they span less than ``span``, one global shift -- the overall maximum -- does the same;
    otherwise each row's maximum is used. The variants differ only in rounding (a few ulp of the
    probabilities), and saving the per-row reduction is most of the decode's cost.
    """
    if z.size == 0:
        return np.zeros_like(z)
    lo, hi = z.min(), z.max()                                   # also the finiteness screen
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _checks.check_finite(z if given is None else given, "logits")   # the index in the caller's layout
    span = _EXP_SPAN.get(z.dtype, 80.0)
    if -span <= lo and hi <= span:
        return np.exp(z)                                        # no shift needed at all
    if hi - lo <= span:
        e = np.subtract(z, hi)
    else:
        e = z - z.max(axis=-1, keepdims=True)
    return np.exp(e, out=e)


def dfl_forward(logits, *, reg_max: int = 16):
    """Expected distance of each side under a softmax over ``reg_max`` bins (ultralytics ``DFL``).

    ``d = sum_{j=0}^{reg_max-1} j * softmax(z)_j`` per side, so ``0 <= d <= reg_max - 1`` (grid
    units). ``reg_max = 1`` is the distribution-free head (YOLO26): the logits are the distances.

    Parameters
    ----------
    logits : ndarray, shape (..., 4 * reg_max) or (..., 4, reg_max)
        Side-major: bins of l, then t, r, b (``view(b, a, 4, reg_max)``).
    reg_max : int
        Bins per side, >= 1 (ultralytics 16; GFL's ``reg_max = 16`` means 17 bins: pass 17).

    Returns
    -------
    distance : ndarray, shape (..., 4)
    cache : DFLCache

    Notes
    -----
    ``DFL`` computes the expectation as a 1 x 1 convolution with weights ``0 .. reg_max - 1``, the
    loss's ``bbox_decode`` as ``softmax(3).matmul(proj)``: the same sum in a different order, so
    float32 results agree to a few ulp, not bit for bit. refdet evaluates ``sum_j j e_j / sum_j e_j``
    with ``e = exp(z - shift)`` (one global shift when the logits span less than 80 in float32,
    else each row's maximum, as torch).
    """
    z, z4, R = _dfl_logits(logits, reg_max)
    if R == 1:
        _checks.check_finite(z, "logits")
        d = z4[..., 0].copy()
        return d, DFLCache(np.ones_like(z4), np.ones(z4.shape[:-1] + (1,), z.dtype), d, z.shape, 1)
    e = _shifted_exp(z4, z)                                  # (..., 4, R)
    # one small matrix product gives both sums of each side: [sum_j e_j, sum_j j e_j]
    w = np.stack([np.ones(R, z.dtype), np.arange(R, dtype=z.dtype)], axis=1)   # (R, 2)
    s = e.reshape(-1, R) @ w                                 # (n, 2)
    den = s[:, 0].reshape(e.shape[:-1] + (1,))
    d = (s[:, 1] / s[:, 0]).reshape(e.shape[:-1])           # (..., 4): E[j] = sum j e_j / sum e_j
    return d, DFLCache(e, den, d, z.shape, R)


def dfl_backward(ddistance, cache):
    """``dz_j = dd * p_j (j - d)`` (the softmax Jacobian applied to the bin values); returns
    ``DecodeGrads(dt)`` shaped like the logits as given."""
    if not isinstance(cache, DFLCache):
        raise TypeError(f"`cache` must be the DFLCache returned by dfl_forward; got {type(cache).__name__}")
    g = _common.floats(ddistance, "ddistance")
    if g.shape != cache.dist.shape:
        raise ValueError(f"`ddistance` must have shape {cache.dist.shape}; got {g.shape}")
    g = g.astype(cache.dist.dtype, copy=False)
    if cache.reg_max == 1:
        return DecodeGrads(g[..., None].reshape(cache.shape).copy())
    proj = np.arange(cache.reg_max, dtype=cache.dist.dtype)
    probs = cache.exps / cache.denom
    dz = probs * (proj - cache.dist[..., None]) * g[..., None]
    return DecodeGrads(dz.reshape(cache.shape))


def _points(anchor_points, dt, lead_shape):
    ap = _common.floats(anchor_points, "anchor_points")
    if ap.ndim == 0 or ap.shape[-1] != 2:
        raise ValueError(f"`anchor_points` must have last dimension 2 (x, y); got shape {ap.shape}")
    try:
        np.broadcast_shapes(ap.shape[:-1], lead_shape)
    except ValueError:
        raise ValueError(f"`anchor_points` of shape {ap.shape} does not broadcast to the distances' "
                         f"leading shape {lead_shape}") from None
    return ap.astype(dt, copy=False)


def dist2bbox(distance, anchor_points, *, out_fmt: str = "xyxy") -> np.ndarray:
    """Boxes from ``(l, t, r, b)`` distances to anchor points (ultralytics ``dist2bbox``).

    ``x1 = ax - l``, ``y1 = ay - t``, ``x2 = ax + r``, ``y2 = ay + b``; ``out_fmt="cxcywh"`` gives
    ``((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)`` in that order of operations (ultralytics'
    ``xywh=True``, its inference default).

    Parameters
    ----------
    distance : ndarray, shape (..., 4)
    anchor_points : ndarray, shape (..., 2), broadcastable to the distances' leading shape
    out_fmt : {"xyxy", "cxcywh"}

    Returns
    -------
    ndarray, shape (..., 4)
    """
    return dist2bbox_forward(distance, anchor_points, out_fmt=out_fmt)[0]


def dist2bbox_forward(distance, anchor_points, *, out_fmt: str = "xyxy"):
    """:func:`dist2bbox` with a cache for :func:`dist2bbox_backward`."""
    d = _common.floats(distance, "distance")
    if d.ndim == 0 or d.shape[-1] != 4:
        raise ValueError(f"`distance` must have last dimension 4 (l, t, r, b); got shape {d.shape}")
    _checks.check_choice(out_fmt, "out_fmt", OUT_FORMATS)
    ap = _points(anchor_points, d.dtype, d.shape[:-1])
    dt = np.result_type(d.dtype, ap.dtype)
    d, ap = d.astype(dt, copy=False), ap.astype(dt, copy=False)
    x1y1 = ap - d[..., :2]
    x2y2 = ap + d[..., 2:]
    if out_fmt == "xyxy":
        out = np.concatenate([x1y1, x2y2], axis=-1)
    else:
        out = np.concatenate([(x1y1 + x2y2) / dt.type(2), x2y2 - x1y1], axis=-1)
    return out, DecodeCache("dist2bbox", dict(fmt=out_fmt, dshape=d.shape), out.shape, dt)


def dist2bbox_backward(dboxes, cache):
    """xyxy: ``dl = -dx1``, ``dr = dx2``; cxcywh: ``dl = -dcx/2 + dw``, ``dr = dcx/2 + dw``;
    returns DistGrads(ddistance)."""
    _check_cache(cache, "dist2bbox", "dist2bbox_forward")
    g = _check_dout(dboxes, cache)
    T = cache.dtype.type
    if cache.parts["fmt"] == "xyxy":
        dd = np.concatenate([-g[..., :2], g[..., 2:]], axis=-1)
    else:
        half = g[..., :2] / T(2)
        dd = np.concatenate([-half + g[..., 2:], half + g[..., 2:]], axis=-1)
    return DistGrads(dd)


def bbox2dist(anchor_points, boxes, *, reg_max: Optional[float] = None) -> np.ndarray:
    """``(l, t, r, b)`` distances from anchor points to xyxy boxes (ultralytics ``bbox2dist``).

    ``l = ax - x1``, ``t = ay - y1``, ``r = x2 - ax``, ``b = y2 - ay``: the inverse of
    :func:`dist2bbox` (``dist2bbox(bbox2dist(a, b), a) == b`` up to rounding). With ``reg_max`` the
    distances are clamped to ``[0, reg_max - 0.01]`` -- note ultralytics passes ``reg_max - 1``
    here, so a 16-bin head clamps its targets to ``[0, 14.99]`` (the right bin of the DFL target
    must exist).

    Parameters
    ----------
    anchor_points : ndarray, shape (..., 2)
    boxes : ndarray, shape (..., 4)
        xyxy, broadcastable with the points' leading shape.
    reg_max : float, optional
        Upper clamp plus 0.01; > 0.01.

    Returns
    -------
    ndarray, shape (broadcast leading shape, 4)
    """
    b = _common.floats(boxes, "boxes")
    if b.ndim == 0 or b.shape[-1] != 4:
        raise ValueError(f"`boxes` must have last dimension 4 (x1, y1, x2, y2); got shape {b.shape}")
    ap = _points(anchor_points, b.dtype, b.shape[:-1])
    dt = np.result_type(b.dtype, ap.dtype)
    b, ap = b.astype(dt, copy=False), ap.astype(dt, copy=False)
    dist = np.concatenate([ap - b[..., :2], b[..., 2:] - ap], axis=-1)
    if reg_max is not None:
        hi = _checks.check_real(reg_max, "reg_max")
        if hi <= 0.01:
            raise ValueError(f"`reg_max` must be > 0.01 (distances clamp to [0, reg_max - 0.01]); got {hi}")
        dist = np.clip(dist, dt.type(0), dt.type(hi - 0.01))
    return dist


def dfl_decode_forward(logits, anchor_points, stride_tensor=None, *, reg_max: int = 16, out_fmt: str = "cxcywh"):
    """The ultralytics v8+ head decode: DFL expectation, :func:`dist2bbox`, times the stride.

    ``boxes = dist2bbox(dfl(logits), anchor_points, out_fmt) * stride_tensor`` (``Detect._inference``:
    ``dist2bbox(self.dfl(box), anchors, xywh=True) * strides``). Without ``stride_tensor`` the boxes
    stay in grid units (``v8DetectionLoss.bbox_decode``, xyxy).

    Parameters
    ----------
    logits : ndarray, shape (B, N, 4 * reg_max) or (B, N, 4, reg_max)
    anchor_points : ndarray, shape (N, 2)
        Grid units (:func:`refdet.yolo.anchors.make_anchors`).
    stride_tensor : ndarray, shape (N, 1) or (N,), optional
    reg_max : int
    out_fmt : {"cxcywh", "xyxy"}

    Returns
    -------
    boxes : ndarray, shape (B, N, 4)
    cache : DecodeCache
    """
    _checks.check_choice(out_fmt, "out_fmt", OUT_FORMATS)
    d, dcache = dfl_forward(logits, reg_max=reg_max)
    if d.ndim < 2:
        raise ValueError(f"`logits` must have shape (B, N, 4 * reg_max); got {dcache.shape}")
    ap = _points(anchor_points, d.dtype, d.shape[:-1])
    dt = np.result_type(d.dtype, ap.dtype)
    s = None
    if stride_tensor is not None:
        s = _common.floats(stride_tensor, "stride_tensor").astype(dt, copy=False)
        if s.ndim == 1:
            s = s[:, None]
        if s.ndim != 2 or s.shape[1] != 1 or s.shape[0] != d.shape[-2]:
            raise ValueError(f"`stride_tensor` must have shape (N, 1) with N = {d.shape[-2]}; got {s.shape}")
        if (s <= 0).any():
            raise ValueError("`stride_tensor` must be positive")
    # dist2bbox in ultralytics' order of operations, one coordinate column at a time (NumPy loops
    # over a 2-wide last axis are slow), written into one output array
    b = np.empty(d.shape, dt)
    ax, ay = ap[..., 0], ap[..., 1]
    x1, y1 = ax - d[..., 0], ay - d[..., 1]
    x2, y2 = ax + d[..., 2], ay + d[..., 3]
    if out_fmt == "xyxy":
        b[..., 0], b[..., 1], b[..., 2], b[..., 3] = x1, y1, x2, y2
    else:
        two = dt.type(2)
        b[..., 0], b[..., 1] = (x1 + x2) / two, (y1 + y2) / two
        b[..., 2], b[..., 3] = x2 - x1, y2 - y1
    if s is not None:
        sc = s[:, 0]
        for k in range(4):                                   # four columns
            b[..., k] *= sc
    bcache = DecodeCache("dist2bbox", dict(fmt=out_fmt, dshape=d.shape), d.shape, dt)
    return b, DecodeCache("dfl_decode", dict(dfl=dcache, box=bcache, stride=s), b.shape, b.dtype)


def dfl_decode_backward(dboxes, cache):
    """Chain of :func:`dist2bbox_backward` and :func:`dfl_backward`; returns DecodeGrads(dt) with
    the logits' shape."""
    _check_cache(cache, "dfl_decode", "dfl_decode_forward")
    g = _check_dout(dboxes, cache)
    if cache.parts["stride"] is not None:
        g = g * cache.parts["stride"]
    dd = dist2bbox_backward(g, cache.parts["box"]).ddistance
    return dfl_backward(dd, cache.parts["dfl"])
