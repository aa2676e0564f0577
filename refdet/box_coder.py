"""Encoding and decoding of box regression deltas ``(dx, dy, dw, dh)`` (R-CNN parameterisation).

With an anchor (or proposal) of centre ``(px, py)`` and size ``(pw, ph)`` and a target box of centre
``(gx, gy)`` and size ``(gw, gh)`` (Girshick et al. 2014, Faster R-CNN eq. 2)::

    dx = wx * (gx - px) / pw        dy = wy * (gy - py) / ph
    dw = ww * log(gw / pw)          dh = wh * log(gh / ph)

and decoding inverts it (``dw`` clamped from above so that ``exp`` cannot overflow)::

    cx = dx / wx * pw + px          w = exp(min(dw / ww, clamp)) * pw
    x1 = cx - 0.5 * w               x2 = cx + 0.5 * w

The invariant (detectron2's ``Box2BoxTransform`` states it) is ``decode(encode(b, a), a) == b`` up
to rounding, as long as no ``dw``/``dh`` reaches the clamp.

Frameworks differ in details that change bits, each a convention knob (``refdet.conventions.describe
("decode_boxes")``): +1 pixel widths (py-faster-rcnn, Detectron1), the centre formula
``x1 + 0.5 * w`` (torchvision, detectron2, py-faster-rcnn, TF) or ``(x1 + x2) * 0.5`` (mmdet), weights
that multiply (torchvision, Detectron1) or standard deviations that divide (mmdet ``target_stds``,
py-faster-rcnn ``BBOX_NORMALIZE_STDS``), the clamp (upper only, symmetric, none), TF's ``1e-8``
added to every size before encoding and its ``[ty, tx, th, tw]`` code order, and Detectron1's decode
``x2 = cx + 0.5 * w - 1``.

Dtypes: float64 in -> float64 math; float32 in -> float32 math in torchvision's order of
operations; float16 computed in float32. ``exp`` and ``log`` are the exception to bit-exactness:
torch on x86 routes float32 ``exp``/``log`` to Intel MKL VML (``VML_HA``), whose last bit neither
NumPy's SIMD ``exp`` nor SLEEF nor glibc reproduces. refdet's default for float32 is the correctly
rounded value (computed in float64, then rounded), which agrees with torch's float32 ``exp`` on about
99% and ``log`` on about 96% of random inputs and is otherwise 1 ulp away. Pass ``exp=`` / ``log=``
(any elementwise callable, e.g. one wrapping ``torch.exp``) to reproduce a framework's libm, and
every other operation then matches bit for bit.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks
from refdet import conventions

__all__ = [
    "DEFAULT_CLAMP",
    "encode_boxes",
    "decode_boxes",
    "decode_boxes_forward",
    "decode_boxes_backward",
    "DecodeCache",
    "DecodeGrads",
]

#: ``log(1000 / 16)``: no box grows more than 1000/16 times its anchor in one decode step
#: (torchvision ``BoxCoder.bbox_xform_clip``, detectron2 ``_DEFAULT_SCALE_CLAMP``, Detectron1
#: ``BBOX_XFORM_CLIP``; mmdet's ``abs(log(16 / 1000))`` is the same number).
DEFAULT_CLAMP = math.log(1000.0 / 16)

_CENTERS = ("half_width", "midpoint")
_WEIGHT_MODES = ("multiply", "multiply_after", "divide")
_CLAMP_MODES = ("max", "symmetric", "none")
_ORDERS = ("xy", "yx")

_KNOBS = {
    "plus_one": conventions.flag(
        "sizes are x2 - x1 + 1 (legacy inclusive pixels)",
        source="py-faster-rcnn lib/fast_rcnn/bbox_transform.py bbox_transform; Detectron1 utils/boxes.py"),
    "center": conventions.choice(
        _CENTERS, "centre as x1 + 0.5 * w ('half_width') or (x1 + x2) * 0.5 ('midpoint')",
        source="torchvision models/detection/_utils.py encode_boxes (half_width); mmdet "
               "delta_xywh_bbox_coder.py bbox2delta (midpoint)"),
    "weight_mode": conventions.choice(
        _WEIGHT_MODES, "'multiply': wx * (gx - px) / pw (torchvision); 'multiply_after': "
                       "((gx - px) / pw) * wx (TF); 'divide': weights are stds, ((gx - px) / pw - mean) / std "
                       "(mmdet, py-faster-rcnn); decode inverts each",
        source="torchvision _utils.py encode_boxes; TF box_coders/faster_rcnn_box_coder.py _encode; mmdet "
               "bbox2delta target_stds; py-faster-rcnn BBOX_NORMALIZE_STDS"),
    "eps": conventions.number(
        "added to all four sizes before encoding", low=0.0,
        source="TF OD API box_coders/faster_rcnn_box_coder.py EPSILON = 1e-8"),
    "order": conventions.choice(
        _ORDERS, "code order: 'xy' = (dx, dy, dw, dh), 'yx' = (dy, dx, dh, dw)",
        source="TF OD API faster_rcnn_box_coder.py: codes [ty, tx, th, tw]"),
}
_DECODE_KNOBS = dict(_KNOBS)
_DECODE_KNOBS.update({
    "clamp_mode": conventions.choice(
        _CLAMP_MODES, "how `clamp` limits dw, dh before exp: 'max' (upper only), 'symmetric' "
                      "([-clamp, clamp]) or 'none'",
        source="torchvision BoxCoder.decode_single torch.clamp(max=); mmdet delta2bbox clamp(min=-c, "
               "max=c); py-faster-rcnn bbox_transform_inv and TF _decode: none"),
    "x2_minus_one": conventions.flag(
        "decode x2 = cx + 0.5 * w - 1 and y2 likewise",
        source="Detectron1 detectron/utils/boxes.py bbox_transform"),
    "float32_deltas": conventions.flag(
        "decode in float32 whatever the deltas' dtype",
        source="detectron2 modeling/box_regression.py Box2BoxTransform.apply_deltas: deltas.float()"),
})
del _DECODE_KNOBS["eps"]

_ENCODE_PROFILES = {
    "torchvision": dict(plus_one=False, center="half_width", weight_mode="multiply", eps=0.0, order="xy"),
    "detectron2": dict(plus_one=False, center="half_width", weight_mode="multiply", eps=0.0, order="xy"),
    "mmdet": dict(plus_one=False, center="midpoint", weight_mode="divide", eps=0.0, order="xy"),
    "caffe": dict(plus_one=True, center="half_width", weight_mode="divide", eps=0.0, order="xy"),
    "tf": dict(plus_one=False, center="half_width", weight_mode="multiply_after", eps=1e-8, order="yx"),
    "paper": dict(plus_one=False, center="midpoint", weight_mode="multiply", eps=0.0, order="xy"),
}
_DECODE_PROFILES = {
    "torchvision": dict(plus_one=False, center="half_width", weight_mode="multiply", order="xy",
                        clamp_mode="max", x2_minus_one=False, float32_deltas=False),
    "detectron2": dict(plus_one=False, center="half_width", weight_mode="multiply", order="xy",
                       clamp_mode="max", x2_minus_one=False, float32_deltas=True),
    "mmdet": dict(plus_one=False, center="midpoint", weight_mode="divide", order="xy",
                  clamp_mode="symmetric", x2_minus_one=False, float32_deltas=False),
    "caffe": dict(plus_one=True, center="half_width", weight_mode="divide", order="xy",
                  clamp_mode="none", x2_minus_one=False, float32_deltas=False),
    "tf": dict(plus_one=False, center="half_width", weight_mode="multiply_after", order="yx",
               clamp_mode="none", x2_minus_one=False, float32_deltas=False),
    "paper": dict(plus_one=False, center="midpoint", weight_mode="multiply", order="xy",
                  clamp_mode="none", x2_minus_one=False, float32_deltas=False),
}

_SOURCES = """\
torchvision models/detection/_utils.py encode_boxes / BoxCoder.decode_single (0.29.1): x1 + 0.5 * w,
  encode wx * (gx - px) / pw, decode dx / wx, dw clamped to max log(1000/16), corners cx -+ 0.5 * w.
detectron2 modeling/box_regression.py Box2BoxTransform: the same formulas and clamp (decode casts
  deltas to float32 first).
mmdet DeltaXYWHBBoxCoder (bbox2delta / delta2bbox): centre (x1 + x2) * 0.5, encode (d - mean) / std,
  decode d * std + mean, dw clamped to [-log(1000/16), log(1000/16)].
caffe = py-faster-rcnn lib/fast_rcnn/bbox_transform.py: +1 widths, x1 + 0.5 * w, no clamp, targets
  normalised by BBOX_NORMALIZE_MEANS / STDS (divide). Detectron1 detectron/utils/boxes.py differs:
  weights multiply (10, 10, 5, 5), dw clamped to max BBOX_XFORM_CLIP = log(1000/16) and decode
  x2 = cx + 0.5 * w - 1: use convention="caffe", weight_mode="multiply", clamp_mode="max",
  x2_minus_one=True. (Detectron1 names encode "bbox_transform_inv"; py-faster-rcnn the reverse.)
tf = TF OD API box_coders/faster_rcnn_box_coder.py: EPSILON = 1e-8 added to the anchor and box sizes
  before encoding, scale_factors applied after the division, codes [ty, tx, th, tw], no clamp on
  decode in the versions read (some forks clamp tw, th at 80; pass clamp_mode="max", clamp=80).
  refdet keeps boxes xyxy for every profile: convert TF's yxyx boxes with box_convert.
paper = Faster R-CNN eq. 2: centres and sizes, no weights, no clamp.
ONNX has no box-coder operator (no "onnx" profile).
"""

conventions.register("encode_boxes", _ENCODE_PROFILES, knobs=_KNOBS, doc=_SOURCES)
conventions.register("decode_boxes", _DECODE_PROFILES, knobs=_DECODE_KNOBS, doc=_SOURCES)
conventions.register("decode_boxes_forward", _DECODE_PROFILES, knobs=_DECODE_KNOBS, doc=_SOURCES)

Convention = Union[str, conventions.Profile]
Weights = Sequence[float]
_DECODE_OPS = ("decode_boxes", "decode_boxes_forward")


def _resolve(op, convention, **overrides):
    """``conventions.resolve`` that keeps a Profile of the sibling decode op (same table) whole."""
    if isinstance(convention, conventions.Profile) and convention.op in _DECODE_OPS and op in _DECODE_OPS \
            and convention.op != op:
        ov = convention.overridden
        convention = conventions.Profile(op, convention.name, dict(convention), ov)  # pragma: no mutate (values only read)
    return conventions.resolve(op, convention, **overrides)


class DecodeCache(NamedTuple):
    """What :func:`decode_boxes_backward` needs from the forward pass (all in the working dtype).

    Attributes
    ----------
    scale : ndarray, shape (4,)
        d(denormalised delta) / d(delta) for (x, y, w, h): ``1 / weight`` or ``std``.
    widths, heights : ndarray, shape (N, 1)
        Anchor sizes.
    pred_w, pred_h : ndarray, shape (N, K)
        Decoded sizes ``exp(dw) * pw``.
    pass_w, pass_h : ndarray of bool, shape (N, K)
        Where the clamp let the gradient through (strictly inside: ``False`` exactly at the clamp
        value, as torch's ``clamp`` backward).
    order : str
        Code order ("xy" or "yx").
    shape : tuple
        Shape of ``deltas`` (N, 4K).
    """
    scale: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    pred_w: np.ndarray
    pred_h: np.ndarray
    pass_w: np.ndarray
    pass_h: np.ndarray
    order: str
    shape: tuple


class DecodeGrads(NamedTuple):
    """Gradient of :func:`decode_boxes_forward`.

    Attributes
    ----------
    ddeltas : ndarray, shape (N, 4K)
        Gradient with respect to the deltas (anchors are constants).
    """
    ddeltas: np.ndarray


def _means4(means):
    if means is None:
        return np.zeros(4)  # pragma: no mutate (only m4[0] .. m4[3] are read)
    if isinstance(means, (str, bytes)) or not hasattr(means, "__len__"):
        raise TypeError(f"`means` must be 4 numbers; got {_checks._describe(means)}")
    try:
        arr = np.asarray(means, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`means` must be 4 real numbers; got {_checks._describe(means)}") from None
    if arr.shape != (4,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"`means` must be 4 finite numbers; got {means!r}")
    return arr


def _centers_sizes(b, s):
    """(N, 4) xyxy -> (cx, cy, w, h), each (N,), in the profile's formulas."""
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    dt = b.dtype.type
    w = x2 - x1
    h = y2 - y1
    if s["plus_one"]:
        w = w + dt(1)
        h = h + dt(1)
    if s["center"] == "half_width":   # torchvision: x1 + 0.5 * w (with the +1 width under caffe)
        cx = x1 + dt(0.5) * w
        cy = y1 + dt(0.5) * h
    else:                             # mmdet: (x1 + x2) * 0.5
        cx = (x1 + x2) * dt(0.5)
        cy = (y1 + y2) * dt(0.5)
    return cx, cy, w, h


def _check_sizes(w, h, boxes, name, *, allow_zero=False):
    """Sizes (after the +1 and eps) must be > 0 (a reference box) or >= 0 (a target box)."""
    ok = (w >= 0) & (h >= 0) if allow_zero else (w > 0) & (h > 0)
    bad = ~ok  # NaN-safe: a NaN size is bad too
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if allow_zero:
            why = ("a target box must not be flipped (x2 < x1 or y2 < y1): log(gw / pw) of a negative size "
                   "is NaN")
        else:
            why = ("a reference box needs both > 0 (the code divides by its size and takes log(gw / pw): "
                   "detectron2's Box2BoxTransform.get_deltas asserts positive reference sizes)")
        raise ValueError(f"`{name}` row {i} has width {w[i].item()} and height {h[i].item()}; {why}; "
                         f"got box {boxes[i].tolist()}")


def _default_log(x):
    if x.dtype == np.float32:  # correctly rounded float32 log (see the module docstring)
        return np.log(x.astype(np.float64)).astype(np.float32)  # pragma: no mutate (None = float64; _apply casts back)
    return np.log(x)


def _default_exp(x):
    if x.dtype == np.float32:
        return np.exp(x.astype(np.float64)).astype(np.float32)  # pragma: no mutate (None = float64; _apply casts back)
    return np.exp(x)


def _apply(fn, x, name):
    y = np.asarray(fn(x))
    if y.shape != x.shape:
        raise ValueError(f"`{name}` must be elementwise; it returned shape {y.shape} for shape {x.shape}")
    return y.astype(x.dtype, copy=False)  # pragma: no mutate (copy only: never written)


@conventions.documented("encode_boxes")
def encode_boxes(boxes: ArrayLike, anchors: ArrayLike, *, weights: Weights = (1.0, 1.0, 1.0, 1.0),
                 convention: Convention = "torchvision", means: Optional[Weights] = None,
                 plus_one: Optional[bool] = None, center: Optional[str] = None, weight_mode: Optional[str] = None,
                 eps: Optional[float] = None, order: Optional[str] = None,
                 log: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Regression targets that move each anchor onto its box.

    Reference: :func:`refdet.reference.box_coder.encode_boxes` (the four equations, one box at a time);
    tests hold the two bit-equal under every convention.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), xyxy
        Target (ground-truth) boxes, one per anchor.
    anchors : ndarray, shape (N, 4), xyxy
        Anchors or proposals (torchvision's ``proposals``, detectron2's ``src_boxes``).
    weights : 4 positive numbers
        ``(wx, wy, ww, wh)``, always in this x-first order (also under ``order="yx"``, where TF's
        ``scale_factors`` would read (wy, wx, wh, ww)). torchvision/detectron2 RPN and RetinaNet use
        (1, 1, 1, 1), the R-CNN box head and SSD (10, 10, 5, 5). Under ``weight_mode="divide"`` they are standard deviations
        (mmdet ``target_stds``, e.g. (0.1, 0.1, 0.2, 0.2)).
    convention : str or Profile
        ``"torchvision"``, ``"detectron2"``, ``"mmdet"``, ``"caffe"``, ``"tf"``, ``"paper"``, or a
        resolved :class:`refdet.conventions.Profile` (composite ops pass theirs down).
    means : 4 numbers, optional
        Subtracted before dividing by the stds under ``weight_mode="divide"`` (mmdet
        ``target_means``); default zeros. Ignored by the other modes.
    plus_one, center, weight_mode, eps, order
        Knobs overriding the profile (see the module docstring and ``conventions.describe``).
    log : callable, optional
        Elementwise natural logarithm (default: correctly rounded in the working dtype).

    Returns
    -------
    ndarray, shape (N, 4)
        ``(dx, dy, dw, dh)`` (or ``(dy, dx, dh, dw)`` under ``order="yx"``).

    A zero-size target box (a point or a line) encodes to ``dw = -inf`` (or ``dh``): torchvision's
    ``encode_boxes`` has no guard and gives exactly that (``log(0 / pw)``); TF's ``eps`` keeps it finite.

    Raises
    ------
    ValueError
        Naming the argument, the row and the box: if an anchor has a width or height <= 0 (x2 < x1 or
        a zero-width reference box: its code would divide by zero, inf or NaN; detectron2's
        ``Box2BoxTransform.get_deltas`` asserts positive reference sizes, "Input boxes to
        Box2BoxTransform are not valid!"), or a target box is flipped (width or height < 0: the log
        of a negative ratio is NaN; no framework defines it). Sizes are measured after the profile's
        ``+1`` and ``eps`` (a caffe box with ``x1 == x2`` is one pixel wide and valid).

    Notes
    -----
    Order of operations (torchvision ``encode_boxes``): ``wx * (gx - px) / pw`` is
    ``(wx * (gx - px)) / pw`` and ``ww * log(gw / pw)``, with ``wx`` rounded to the working dtype.

    Examples
    --------
    A 16 x 16 anchor and a 16 x 8 box whose centre is 2 pixels to the right: dx = 2/16, dy = 0,
    dw = log(16/16), dh = log(8/16).

    >>> anchor = np.array([[0., 0., 16., 16.]])
    >>> box = np.array([[2., 4., 18., 12.]])
    >>> encode_boxes(box, anchor)
    array([[ 0.125     ,  0.        ,  0.        , -0.69314718]])
    >>> encode_boxes(box, anchor, weights=(10, 10, 5, 5))   # the second stage's weights
    array([[ 1.25     ,  0.       ,  0.       , -3.4657359]])
    >>> decode_boxes(encode_boxes(box, anchor), anchor)     # the round trip
    array([[ 2.,  4., 18., 12.]])
    """
    s = conventions.resolve("encode_boxes", convention, plus_one=plus_one, center=center,
                            weight_mode=weight_mode, eps=eps, order=order)
    g = _checks.as_boxes(boxes)                   # the default name: "boxes"
    a = _checks.as_boxes(anchors, "anchors")
    _checks.check_same_length(g, a, "boxes", "anchors")
    w4 = _checks.check_weights4(weights)          # the default name: "weights"
    m4 = _means4(means)
    e = s["eps"]
    dt = np.result_type(g.dtype, a.dtype)
    g = g.astype(dt, copy=False)  # pragma: no mutate (copy only: never written)
    a = a.astype(dt, copy=False)  # pragma: no mutate (copy only: never written)
    t = dt.type
    log = _default_log if _checks.check_callable(log, "log") is None else log
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gx, gy, gw, gh = _centers_sizes(g, s)
        px, py, pw, ph = _centers_sizes(a, s)
        if e != 0.0:  # TF: sizes += EPSILON before the division and the log
            gw, gh, pw, ph = (v + t(e) for v in (gw, gh, pw, ph))
        _check_sizes(pw, ph, a, "anchors")
        _check_sizes(gw, gh, g, "boxes", allow_zero=True)
        rw = _apply(log, gw / pw, "log")
        rh = _apply(log, gh / ph, "log")
        mode = s["weight_mode"]
        if mode == "multiply":
            dx = t(w4[0]) * (gx - px) / pw
            dy = t(w4[1]) * (gy - py) / ph
            dw = t(w4[2]) * rw
            dh = t(w4[3]) * rh
        elif mode == "multiply_after":
            dx = (gx - px) / pw * t(w4[0])
            dy = (gy - py) / ph * t(w4[1])
            dw = rw * t(w4[2])
            dh = rh * t(w4[3])
        else:  # divide: (d - mean) / std
            dx = ((gx - px) / pw - t(m4[0])) / t(w4[0])
            dy = ((gy - py) / ph - t(m4[1])) / t(w4[1])
            dw = (rw - t(m4[2])) / t(w4[2])
            dh = (rh - t(m4[3])) / t(w4[3])
    cols = (dx, dy, dw, dh) if s["order"] == "xy" else (dy, dx, dh, dw)
    return np.stack(cols, axis=1).astype(dt, copy=False)  # pragma: no mutate (np.stack is fresh: copy changes nothing)


def _decode(deltas, anchors, weights, clamp, convention, means, knobs, exp, op):
    s = _resolve(op, convention, **knobs)
    d = _checks.as_array(deltas, "deltas")
    if d.ndim != 2 or d.shape[1] % 4 != 0 or (d.shape[1] == 0 and d.shape[0] != 0):
        if not (d.ndim == 1 and d.size == 0):
            raise ValueError(f"`deltas` must have shape (N, 4K); got {d.shape}")
        d = d.reshape(0, 4)
    d = _checks.as_float_array(d, "deltas")
    if s["float32_deltas"]:  # detectron2 apply_deltas: deltas.float(), boxes.to(deltas.dtype)
        d = d.astype(np.float32, copy=False)  # pragma: no mutate (copy only: d is never written)
    a = _checks.as_boxes(anchors, "anchors")
    _checks.check_same_length(d, a, "deltas", "anchors")
    w4 = _checks.check_weights4(weights)          # the default name: "weights"
    m4 = _means4(means)
    c = None
    if s["clamp_mode"] != "none":
        if clamp is None:
            clamp = DEFAULT_CLAMP
        c = _checks.check_real(clamp, "clamp")
        if s["clamp_mode"] == "symmetric":
            c = abs(c)
    # torchvision: anchors are cast to the deltas' dtype (boxes.to(rel_codes.dtype))
    dt = d.dtype
    a = a.astype(dt, copy=False)  # pragma: no mutate (copy only: never written)
    t = dt.type
    exp = _default_exp if _checks.check_callable(exp, "exp") is None else exp
    xi, yi, wi, hi = (0, 1, 2, 3) if s["order"] == "xy" else (1, 0, 3, 2)
    with np.errstate(invalid="ignore", over="ignore"):  # no division by zero: weights are > 0
        px, py, pw, ph = _centers_sizes(a, s)
        raw = [d[:, k::4] for k in (xi, yi, wi, hi)]  # (N, K) each
        if s["weight_mode"] == "divide":  # d * std + mean
            dx, dy, dw, dh = (r * t(w4[k]) + t(m4[k]) for k, r in enumerate(raw))
            scale = w4.copy()
        else:                              # d / weight (torchvision and TF alike)
            dx, dy, dw, dh = (r / t(w4[k]) for k, r in enumerate(raw))
            scale = 1.0 / w4
        pass_w = np.ones(dw.shape, dtype=bool)
        pass_h = np.ones(dh.shape, dtype=bool)
        if c is not None:
            hi_c = t(c)
            if s["clamp_mode"] == "symmetric":
                pass_w = (dw > -hi_c) & (dw < hi_c)      # torch's clamp backward: strictly inside
                pass_h = (dh > -hi_c) & (dh < hi_c)
                dw = np.clip(dw, -hi_c, hi_c)
                dh = np.clip(dh, -hi_c, hi_c)
            else:
                pass_w = dw < hi_c
                pass_h = dh < hi_c
                dw = np.minimum(dw, hi_c)
                dh = np.minimum(dh, hi_c)
        cx = dx * pw[:, None] + px[:, None]          # (N, K)
        cy = dy * ph[:, None] + py[:, None]
        pred_w = _apply(exp, dw, "exp") * pw[:, None]
        pred_h = _apply(exp, dh, "exp") * ph[:, None]
        half_w = t(0.5) * pred_w                        # torchvision: tensor(0.5) * pred_w
        half_h = t(0.5) * pred_h
        out = np.empty(d.shape, dtype=dt)
        out[:, 0::4] = cx - half_w
        out[:, 1::4] = cy - half_h
        out[:, 2::4] = cx + half_w
        out[:, 3::4] = cy + half_h
        if s["x2_minus_one"]:
            out[:, 2::4] -= t(1)
            out[:, 3::4] -= t(1)
    scale = scale.astype(dt)  # (x, y, w, h) whatever the code order
    cache = DecodeCache(scale=scale, widths=pw[:, None], heights=ph[:, None], pred_w=pred_w, pred_h=pred_h,
                        pass_w=pass_w, pass_h=pass_h, order=s["order"], shape=d.shape)
    return out, cache


@conventions.documented("decode_boxes")
def decode_boxes(deltas: ArrayLike, anchors: ArrayLike, *, weights: Weights = (1.0, 1.0, 1.0, 1.0),
                 clamp: Optional[float] = DEFAULT_CLAMP, convention: Convention = "torchvision",
                 means: Optional[Weights] = None, plus_one: Optional[bool] = None, center: Optional[str] = None,
                 weight_mode: Optional[str] = None, order: Optional[str] = None, clamp_mode: Optional[str] = None,
                 x2_minus_one: Optional[bool] = None, float32_deltas: Optional[bool] = None,
                 exp: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Apply regression deltas to anchors: the boxes the deltas describe.

    Reference: :func:`refdet.reference.box_coder.decode_boxes` (the inverse equations, one box at a
    time); tests hold the two bit-equal under every convention.

    Parameters
    ----------
    deltas : ndarray, shape (N, 4K)
        ``(dx, dy, dw, dh)`` per anchor, or K groups of four (class-specific box-head outputs, as
        torchvision's ``decode_single`` reads ``rel_codes[:, 0::4]``).
    anchors : ndarray, shape (N, 4), xyxy
    weights : 4 positive numbers
        ``(wx, wy, ww, wh)`` that divide the deltas (or stds that multiply them under
        ``weight_mode="divide"``); see :func:`encode_boxes`.
    clamp : float
        Limit on ``dw / ww`` and ``dh / wh`` before ``exp``: default ``log(1000 / 16) = 4.1352``.
        Applied as ``min(dw, clamp)`` (torchvision, detectron2, Detectron1), ``clip(dw, -clamp,
        clamp)`` (mmdet) or not at all (py-faster-rcnn, TF), per ``clamp_mode``.
    convention : str or Profile
        ``"torchvision"``, ``"detectron2"``, ``"mmdet"``, ``"caffe"``, ``"tf"``, ``"paper"``, or a
        resolved :class:`refdet.conventions.Profile` (composite ops pass theirs down).
    means : 4 numbers, optional
        Added after multiplying by the stds under ``weight_mode="divide"``.
    plus_one, center, weight_mode, order, clamp_mode, x2_minus_one, float32_deltas
        Knobs overriding the profile. ``float32_deltas`` (on under ``"detectron2"``) decodes in
        float32 whatever the dtype of the deltas, as detectron2's ``apply_deltas`` does
        (``deltas.float()``, "ensure fp32 for decoding precision"), so float64 deltas give float32
        boxes there.
    exp : callable, optional
        Elementwise exponential (default: correctly rounded in the working dtype).

    Returns
    -------
    ndarray, shape (N, 4K)
        xyxy boxes, in the deltas' working dtype (the anchors are cast to it, as torchvision does;
        float32 under ``float32_deltas``).

    Notes
    -----
    torchvision's order: ``dx = d / wx``; ``dw = min(d / ww, clamp)``; ``cx = dx * pw + px``;
    ``w = exp(dw) * pw``; ``x1 = cx - 0.5 * w``; ``x2 = cx + 0.5 * w``. TV9: anchor
    ``[0, 0, 10, 10]`` with deltas ``[0, 0, 10, 10]`` is clamped to ``w = 10 * 1000 / 16 = 625``, so
    ``[-307.5, -307.5, 317.5, 317.5]``; deltas ``[0, 0, -10, -10]`` are not clamped (upper clamp only).

    Examples
    --------
    >>> anchor = np.array([[0., 0., 16., 16.]])
    >>> decode_boxes(np.array([[0.125, 0., 0., -0.69314718]]), anchor).round(6)
    array([[ 2.,  4., 18., 12.]])

    ``dw = 10`` is clamped to ``log(1000 / 16)`` first: the box grows 62.5 times, to 1000 pixels.

    >>> decode_boxes(np.array([[0., 0., 10., 0.]]), anchor)
    array([[-492.,    0.,  508.,   16.]])
    """
    knobs = dict(plus_one=plus_one, center=center, weight_mode=weight_mode, order=order,
                 clamp_mode=clamp_mode, x2_minus_one=x2_minus_one, float32_deltas=float32_deltas)
    out, _ = _decode(deltas, anchors, weights, clamp, convention, means, knobs, exp, "decode_boxes")
    return out


@conventions.documented("decode_boxes_forward")
def decode_boxes_forward(deltas: ArrayLike, anchors: ArrayLike, *, weights: Weights = (1.0, 1.0, 1.0, 1.0),
                         clamp: Optional[float] = DEFAULT_CLAMP, convention: Convention = "torchvision",
                         means: Optional[Weights] = None, plus_one: Optional[bool] = None,
                         center: Optional[str] = None, weight_mode: Optional[str] = None,
                         order: Optional[str] = None, clamp_mode: Optional[str] = None,
                         x2_minus_one: Optional[bool] = None, float32_deltas: Optional[bool] = None,
                         exp: Optional[Callable[[np.ndarray], np.ndarray]] = None
                         ) -> Tuple[np.ndarray, "DecodeCache"]:
    """:func:`decode_boxes` that also returns what the backward pass needs.

    For IoU losses computed on decoded boxes (GIoU/DIoU/CIoU losses in RetinaNet/FCOS-style
    heads): the loss gradient with respect to the boxes flows back to the deltas through
    :func:`decode_boxes_backward`.

    Parameters
    ----------
    Same as :func:`decode_boxes`.

    Returns
    -------
    boxes : ndarray, shape (N, 4K)
    cache : DecodeCache
    """
    knobs = dict(plus_one=plus_one, center=center, weight_mode=weight_mode, order=order,
                 clamp_mode=clamp_mode, x2_minus_one=x2_minus_one, float32_deltas=float32_deltas)
    return _decode(deltas, anchors, weights, clamp, convention, means, knobs, exp, "decode_boxes_forward")


def decode_boxes_backward(dboxes: ArrayLike, cache: DecodeCache) -> DecodeGrads:
    """Gradient of the decoded boxes with respect to the deltas.

    With ``s`` the per-coordinate scale (``1 / weight``, or ``std`` under ``weight_mode="divide"``),
    ``cx = s_x * d_x * pw + px`` and ``w = exp(s_w * d_w) * pw`` (before the clamp), so::

        x1 = cx - w / 2,  x2 = cx + w / 2
        dL/dd_x = (dL/dx1 + dL/dx2) * s_x * pw
        dL/dd_w = (dL/dx2 - dL/dx1) * (w / 2) * s_w    where the clamp let dw through, else 0

    and likewise for y/h. At exactly the clamp value the gradient is 0 (torch 2.x's ``clamp``
    backward passes it only strictly inside: ``grad * (x < max)``). The Detectron1 ``- 1`` is a
    constant and does not change it.

    Parameters
    ----------
    dboxes : ndarray, shape (N, 4K)
        Upstream gradient with respect to the decoded boxes.
    cache : DecodeCache
        From :func:`decode_boxes_forward`.

    Returns
    -------
    DecodeGrads
        ``ddeltas`` with the shape of the forward's ``deltas``.
    """
    if not isinstance(cache, DecodeCache):
        raise TypeError(f"`cache` must be the DecodeCache from decode_boxes_forward; got {type(cache).__name__}")
    g = _checks.as_array(dboxes, "dboxes")
    if g.shape != cache.shape:
        raise ValueError(f"`dboxes` must have shape {cache.shape} (the decoded boxes); got {g.shape}")
    dt = cache.pred_w.dtype
    g = _checks.as_float_array(g, "dboxes", dtype=dt)
    t = dt.type
    sx, sy, sw, sh = cache.scale
    gx1, gy1, gx2, gy2 = g[:, 0::4], g[:, 1::4], g[:, 2::4], g[:, 3::4]
    ddx = (gx1 + gx2) * sx * cache.widths
    ddy = (gy1 + gy2) * sy * cache.heights
    ddw = np.where(cache.pass_w, (gx2 - gx1) * (t(0.5) * cache.pred_w) * sw, t(0))
    ddh = np.where(cache.pass_h, (gy2 - gy1) * (t(0.5) * cache.pred_h) * sh, t(0))
    out = np.empty(cache.shape, dtype=dt)
    xi, yi, wi, hi = (0, 1, 2, 3) if cache.order == "xy" else (1, 0, 3, 2)
    out[:, xi::4] = ddx
    out[:, yi::4] = ddy
    out[:, wi::4] = ddw
    out[:, hi::4] = ddh
    return DecodeGrads(out)
