"""The box coder as its four equations, one box at a time.

Encoding moves an anchor (or proposal) ``p`` onto a box ``g`` (R-CNN, Faster R-CNN eq. 2)::

    dx = wx * (gx - px) / pw        dy = wy * (gy - py) / ph
    dw = ww * log(gw / pw)          dh = wh * log(gh / ph)

and decoding inverts it, with ``dw``, ``dh`` clamped before ``exp``::

    cx = dx / wx * pw + px          w = exp(min(dw / ww, clamp)) * pw
    x1 = cx - 0.5 * w               x2 = cx + 0.5 * w

Each framework variant is a plain branch: +1 pixel widths (py-faster-rcnn), the centre as
``x1 + 0.5 * w`` or ``(x1 + x2) * 0.5`` (mmdet), weights that multiply before the division
(torchvision) or after it (TF), or standard deviations that divide (mmdet, py-faster-rcnn) with a
mean, TF's ``eps`` and ``(dy, dx, dh, dw)`` order, the clamp (upper, symmetric, none) and Detectron1's
``x2 = cx + 0.5 * w - 1``. The knobs are the ones of :func:`refdet.encode_boxes` /
:func:`refdet.decode_boxes` (``refdet.conventions.resolve("encode_boxes", name)`` gives a profile's
values). Arithmetic is done on NumPy scalars of the working dtype (float32 in, float32 math) in the
order written, which is the fast path's order: ``tests/test_reference_geometry.py`` holds the two
bit-equal.
"""
import math

import numpy as np

DEFAULT_CLAMP = math.log(1000.0 / 16)  # no box grows more than 1000/16 times its anchor in one step


def _working(x):
    """float64 stays float64, float32 and float16 compute in float32, integers in float64."""
    x = np.asarray(x)
    return x.astype(np.float32 if x.dtype in (np.float32, np.float16) else np.float64)


def _log(x):
    """Natural log, correctly rounded in the working dtype (float32: taken in float64, then rounded)."""
    if isinstance(x, np.float32):
        return np.float32(np.log(np.float64(x)))
    return np.log(x)


def _exp(x):
    if isinstance(x, np.float32):
        return np.float32(np.exp(np.float64(x)))
    return np.exp(x)


def center_size(box, plus_one=False, center="half_width"):
    """``(cx, cy, w, h)`` of one xyxy box (NumPy scalars of the box's dtype)."""
    x1, y1, x2, y2 = box
    one, half = box.dtype.type(1), box.dtype.type(0.5)
    w = x2 - x1
    h = y2 - y1
    if plus_one:                      # inclusive pixels: a box from 0 to 9 is 10 pixels wide
        w = w + one
        h = h + one
    if center == "half_width":        # torchvision, detectron2, py-faster-rcnn, TF
        cx = x1 + half * w
        cy = y1 + half * h
    else:                             # "midpoint": mmdet
        cx = (x1 + x2) * half
        cy = (y1 + y2) * half
    return cx, cy, w, h


def encode_boxes(boxes, anchors, *, weights=(1.0, 1.0, 1.0, 1.0), means=(0.0, 0.0, 0.0, 0.0), plus_one=False,
                 center="half_width", weight_mode="multiply", eps=0.0, order="xy", log=_log):
    """Regression targets ``(dx, dy, dw, dh)`` moving each anchor onto its box; shapes (N, 4) -> (N, 4)."""
    g, a = _working(boxes), _working(anchors)
    dt = np.result_type(g.dtype, a.dtype)
    g, a, t = g.astype(dt), a.astype(dt), dt.type
    wx, wy, ww, wh = (t(v) for v in weights)
    mx, my, mw, mh = (t(v) for v in (means if means is not None else (0, 0, 0, 0)))
    out = np.zeros((len(g), 4), dtype=dt)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for n in range(len(g)):
            gx, gy, gw, gh = center_size(g[n], plus_one, center)
            px, py, pw, ph = center_size(a[n], plus_one, center)
            if eps != 0.0:                                 # TF: EPSILON added to every size
                gw, gh, pw, ph = gw + t(eps), gh + t(eps), pw + t(eps), ph + t(eps)
            if weight_mode == "multiply":                  # torchvision: wx * (gx - px) / pw
                dx = wx * (gx - px) / pw
                dy = wy * (gy - py) / ph
                dw = ww * log(gw / pw)
                dh = wh * log(gh / ph)
            elif weight_mode == "multiply_after":          # TF: ((gx - px) / pw) * wx
                dx = (gx - px) / pw * wx
                dy = (gy - py) / ph * wy
                dw = log(gw / pw) * ww
                dh = log(gh / ph) * wh
            else:                                          # "divide": (d - mean) / std (mmdet)
                dx = ((gx - px) / pw - mx) / wx
                dy = ((gy - py) / ph - my) / wy
                dw = (log(gw / pw) - mw) / ww
                dh = (log(gh / ph) - mh) / wh
            out[n] = (dx, dy, dw, dh) if order == "xy" else (dy, dx, dh, dw)
    return out


def decode_boxes(deltas, anchors, *, weights=(1.0, 1.0, 1.0, 1.0), means=(0.0, 0.0, 0.0, 0.0),
                 clamp=DEFAULT_CLAMP, plus_one=False, center="half_width", weight_mode="multiply", order="xy",
                 clamp_mode="max", x2_minus_one=False, float32_deltas=False, exp=_exp):
    """Boxes described by ``deltas`` (N, 4K) on ``anchors`` (N, 4): K xyxy boxes per anchor, (N, 4K)."""
    d = _working(deltas)
    if d.ndim == 1:                                        # an empty (0,) array: no boxes
        d = d.reshape(0, 4)
    if float32_deltas:                                     # detectron2: deltas.float()
        d = d.astype(np.float32)
    dt = d.dtype
    a, t = _working(anchors).astype(dt), dt.type           # anchors take the deltas' dtype (torchvision)
    wx, wy, ww, wh = (t(v) for v in weights)
    mx, my, mw, mh = (t(v) for v in (means if means is not None else (0, 0, 0, 0)))
    c = t(abs(clamp) if clamp_mode == "symmetric" else clamp) if clamp_mode != "none" else None
    half, one = t(0.5), t(1)
    out = np.zeros(d.shape, dtype=dt)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for n in range(d.shape[0]):
            px, py, pw, ph = center_size(a[n], plus_one, center)
            for k in range(d.shape[1] // 4):
                dx, dy, dw, dh = d[n, 4 * k:4 * k + 4]
                if order == "yx":                          # TF codes are (ty, tx, th, tw)
                    dx, dy, dw, dh = dy, dx, dh, dw
                if weight_mode == "divide":                # d * std + mean
                    dx, dy, dw, dh = dx * wx + mx, dy * wy + my, dw * ww + mw, dh * wh + mh
                else:                                      # d / weight (torchvision and TF alike)
                    dx, dy, dw, dh = dx / wx, dy / wy, dw / ww, dh / wh
                if clamp_mode == "max":                    # torchvision: clamp(max=log(1000/16))
                    dw, dh = min(dw, c), min(dh, c)
                elif clamp_mode == "symmetric":            # mmdet: clamp(min=-c, max=c)
                    dw, dh = max(-c, min(dw, c)), max(-c, min(dh, c))
                cx = dx * pw + px
                cy = dy * ph + py
                w = exp(dw) * pw
                h = exp(dh) * ph
                x1, y1, x2, y2 = cx - half * w, cy - half * h, cx + half * w, cy + half * h
                if x2_minus_one:                           # Detectron1: inclusive far corner
                    x2, y2 = x2 - one, y2 - one
                out[n, 4 * k:4 * k + 4] = (x1, y1, x2, y2)
    return out
