"""Cell anchors: the ``A`` zero-centred templates of one feature-map cell, and py-faster-rcnn's anchors.

For size ``s`` and aspect ratio ``r = h / w`` (torchvision, detectron2, mmdet, py-faster-rcnn) a cell
anchor keeps the area ``s**2``: ``w = s / sqrt(r)``, ``h = s * sqrt(r)``, corners
``(-w/2, -h/2, w/2, h/2)``. The frameworks differ in the ratio definition, the row order, the rounding
and the +1 pixel convention: each is a knob of ``convention=`` (the table below is generated from the
registry, ``refdet.conventions.describe("cell_anchors")``).

The readable version of this module is :mod:`refdet.reference.anchors`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from numpy.typing import DTypeLike

from refdet import _checks
from refdet import conventions

__all__ = ["RATIO_DEFS", "ORDERS", "ROUNDINGS", "cell_anchors", "faster_rcnn_anchors"]

Convention = Union[str, conventions.Profile]

#: Aspect-ratio definitions: ``r = h / w`` (most code bases) or ``r = w / h`` (TF, SSD).
RATIO_DEFS = ("h_over_w", "w_over_h")
#: Row orders of the cell anchors: ``r * S + s`` (ratio-major) or ``s * R + r`` (size-major).
ORDERS = ("ratio_major", "size_major")
#: Rounding rules of the cell anchors.
ROUNDINGS = ("none", "torchvision", "pfr", "mmdet_legacy")

_CELL_KNOBS = {
    "ratio_def": conventions.choice(
        RATIO_DEFS, "'h_over_w': r = h / w (w = s/sqrt(r), h = s*sqrt(r)); 'w_over_h': r = w / h",
        source="torchvision anchor_utils.py generate_anchors (h_ratios = sqrt(ar)); TF OD API "
               "anchor_generators/grid_anchor_generator.py tile_anchors (widths = scale * sqrt(ar))"),
    "order": conventions.choice(
        ORDERS, "'ratio_major': row r * len(sizes) + s; 'size_major': row s * len(ratios) + r",
        source="torchvision anchor_utils.py 58-74 (ratio-major); detectron2 "
               "modeling/anchor_generator.py generate_cell_anchors 181-216 (size-major)"),
    "rounding": conventions.choice(
        ROUNDINGS, "'torchvision': round(+-w/2, +-h/2) half-to-even; 'pfr': ws = round(sqrt(base^2 / r)), "
                   "hs = round(ws * r), then * size / base; 'mmdet_legacy': round the centred corners; 'none'",
        source="torchvision anchor_utils.py generate_anchors (base_anchors.round()); py-faster-rcnn "
               "lib/rpn/generate_anchors.py _ratio_enum (facebookresearch/Detectron#227); mmdet "
               "LegacyAnchorGenerator"),
    "plus_one": conventions.flag(
        "legacy inclusive pixels: corners c -+ (w - 1) / 2 instead of c -+ w / 2",
        source="py-faster-rcnn lib/rpn/generate_anchors.py _mkanchors; Detectron1 generate_anchors"),
}

_CELL_PROFILES = {
    "torchvision": {"ratio_def": "h_over_w", "order": "ratio_major", "rounding": "torchvision", "plus_one": False},
    "detectron2": {"ratio_def": "h_over_w", "order": "size_major", "rounding": "none", "plus_one": False},
    "mmdet": {"ratio_def": "h_over_w", "order": "ratio_major", "rounding": "none", "plus_one": False},
    "caffe": {"ratio_def": "h_over_w", "order": "ratio_major", "rounding": "pfr", "plus_one": True},
    "tf": {"ratio_def": "w_over_h", "order": "ratio_major", "rounding": "none", "plus_one": False},
}

_CELL_DOC = (
    "torchvision AnchorGenerator.generate_anchors (anchor_utils.py 58-74): h_ratios = sqrt(ar), "
    "ratio-major, round(stack([-ws,-hs,ws,hs])/2) half-to-even. detectron2 generate_cell_anchors "
    "(anchor_generator.py 181-216): size-major, w = sqrt(size^2/ar), h = ar*w, no rounding. mmdet "
    "gen_single_level_base_anchors (161-205): ratio-major (scale_major=True), no rounding. "
    "py-faster-rcnn generate_anchors.py 37-97 and Detectron1 generate_anchors (base_size = stride): "
    "+1 pixels and np.round of ws, hs (Detectron#227). TF tile_anchors: widths = scale*sqrt(ar)*base.")

conventions.register("cell_anchors", _CELL_PROFILES, knobs=_CELL_KNOBS, doc=_CELL_DOC)


def _pfr_ws_hs(base_size, ratios, scales):
    """py-faster-rcnn ``_ratio_enum`` then ``_scale_enum``, float64, ratio-major: (ws, hs) of shape (R*S,).

    Follows the original operations one by one (``_whctrs`` recomputes w from the ratio anchor's
    corners), so that every float is the one py-faster-rcnn computes.
    """
    # the base window [0, 0, base - 1, base - 1] (x1 = y1 = 0, x2 = y2) and its _whctrs: w = x2 - 0 + 1,
    # x_ctr = 0 + 0.5 * (w - 1); the additions of 0 are exact, so only the non-trivial operations remain
    w = h = (base_size - 1.0) + 1.0                                   # 16
    x_ctr = y_ctr = 0.5 * (w - 1.0)                                   # 7.5
    size_ratios = (w * h) / ratios                                    # (R,)
    ws = np.round(np.sqrt(size_ratios))                               # half-to-even, e.g. round(22.63) = 23
    hs = np.round(ws * ratios)                                        # round(23 * 0.5) = round(11.5) = 12
    # ratio anchors (_mkanchors), then _whctrs of each of them
    x1 = x_ctr - 0.5 * (ws - 1.0)
    y1 = y_ctr - 0.5 * (hs - 1.0)
    x2 = x_ctr + 0.5 * (ws - 1.0)
    y2 = y_ctr + 0.5 * (hs - 1.0)
    rw = x2 - x1 + 1.0                                                # (R,)
    rh = y2 - y1 + 1.0
    rx = x1 + 0.5 * (rw - 1.0)
    ry = y1 + 0.5 * (rh - 1.0)
    sw = (rw[:, None] * scales[None, :]).ravel()                      # (R*S,) ratio outer, scale inner
    sh = (rh[:, None] * scales[None, :]).ravel()
    cx = np.repeat(rx, len(scales))
    cy = np.repeat(ry, len(scales))
    return sw, sh, cx, cy


def faster_rcnn_anchors(base_size: float = 16, ratios: Sequence[float] = (0.5, 1, 2),
                        scales: Sequence[float] = (8, 16, 32), *,
                        sizes: Optional[Sequence[float]] = None) -> np.ndarray:
    """py-faster-rcnn's ``generate_anchors``: the classic nine RPN anchors of Faster R-CNN.

    Reference: :func:`refdet.reference.anchors.generate_anchors` (the original's ``_ratio_enum`` then
    ``_scale_enum``, one anchor at a time); tests hold the two bit-equal.

    Algorithm (``lib/rpn/generate_anchors.py`` 37-97), in the legacy "+1" pixel convention:

    1. the base window is ``[0, 0, base-1, base-1]``: ``w = h = base``, centre ``(base - 1) / 2``;
    2. for each ratio ``r = h / w``: ``ws = round(sqrt(base**2 / r))``, ``hs = round(ws * r)`` with
       ``np.round`` (half-to-even), so the area is only roughly ``base**2`` (276 and 242 instead of 256
       for ratios 0.5 and 2; facebookresearch/Detectron#227);
    3. for each scale: ``ws * scale``, ``hs * scale`` around the same centre;
    4. corners ``ctr -+ 0.5 * (w - 1)``.

    Detectron1's ``generate_anchors(stride, sizes, aspect_ratios)`` is this function with
    ``base_size=stride`` and ``scales=sizes/stride``.

    Parameters
    ----------
    base_size : float
        Side of the base window in pixels (the feature stride, 16 for VGG16 conv5).
    ratios : sequence of float, length R
        ``h / w``.
    scales : sequence of float, length S
        Multiples of the base window.
    sizes : sequence of float, optional
        Detectron1's parametrisation: anchor sizes in pixels, replacing ``scales`` by
        ``sizes / base_size`` (``faster_rcnn_anchors(16, sizes=(32, 64, 128, 256, 512))`` is Detectron1's
        ``generate_anchors(stride=16, sizes=(32, ..., 512), aspect_ratios=(0.5, 1, 2))``).

    Returns
    -------
    ndarray of float64, shape (R * S, 4)
        xyxy in +1 pixel coordinates, **centred on** ``((base-1)/2, (base-1)/2)`` (7.5 for 16), ratio
        outer, scale inner. The comment at the top of the original file quotes the same anchors in
        1-based MATLAB coordinates (every value +1); this function returns the Python output.

    See Also
    --------
    cell_anchors : ``convention="caffe"`` gives the same anchors re-centred on 0.
    """
    b = _checks.check_positive(base_size, "base_size")
    r = _checks.as_positive_vector(ratios, "ratios")
    if sizes is not None:
        s = _checks.as_positive_vector(sizes, "sizes") / b        # Detectron1: np.array(sizes) / stride
    else:
        s = _checks.as_positive_vector(scales, "scales")
    sw, sh, cx, cy = _pfr_ws_hs(b, r, s)
    return np.stack([cx - 0.5 * (sw - 1.0), cy - 0.5 * (sh - 1.0),
                     cx + 0.5 * (sw - 1.0), cy + 0.5 * (sh - 1.0)], axis=1)


def _wh(sizes, ratios, ratio_def, dt):
    """(R, S) widths and heights in ``dt``, in torchvision's order of operations for 'h_over_w'."""
    s = sizes.astype(dt)
    r = ratios.astype(dt)
    if ratio_def == "h_over_w":
        h_ratios = np.sqrt(r)                       # torchvision: h_ratios = sqrt(ar), w_ratios = 1 / h_ratios
        w_ratios = dt.type(1) / h_ratios
    else:                                           # TF tile_anchors: widths = scale * sqrt(ar)
        w_ratios = np.sqrt(r)
        h_ratios = dt.type(1) / w_ratios
    ws = w_ratios[:, None] * s[None, :]             # (R, S)
    hs = h_ratios[:, None] * s[None, :]
    return ws, hs


def _cell(sizes, ratios, s, dt, *, base_size, center=0.0):
    """Cell anchors (A, 4) in ``dt`` for resolved knobs ``s``; ``center`` is the template centre.

    Every step keeps ``dt`` (arrays of ``dt`` and ``dt.type`` scalars), so the result is ``dt`` as built.
    """
    R, S = len(ratios), len(sizes)
    rnd = s["rounding"]
    if rnd == "pfr":
        r_hw = ratios if s["ratio_def"] == "h_over_w" else 1.0 / ratios
        ws, hs, _, _ = _pfr_ws_hs(float(base_size), r_hw, sizes / float(base_size))
        ws = ws.reshape(R, S).astype(dt)
        hs = hs.reshape(R, S).astype(dt)
    else:
        ws, hs = _wh(sizes, ratios, s["ratio_def"], dt)
    if s["order"] == "size_major":
        ws, hs = ws.T, hs.T
    ws = ws.ravel()
    hs = hs.ravel()
    if s["plus_one"]:
        one = dt.type(1)
        ws, hs = ws - one, hs - one                 # inclusive pixels: x2 - x1 = w - 1
    if rnd == "torchvision":
        # torchvision: round(stack([-ws, -hs, ws, hs]) / 2): the *half* sizes are rounded, half-to-even,
        # so every anchor gets an even integer width (size 25 -> [-12, -12, 12, 12]).
        half = np.stack([-ws, -hs, ws, hs], axis=1) / dt.type(2)
        out = np.round(half)
    else:
        hw = dt.type(0.5) * ws
        hh = dt.type(0.5) * hs
        out = np.stack([-hw, -hh, hw, hh], axis=1)
    if center != 0.0 or rnd == "mmdet_legacy":
        c = dt.type(center)
        out = out + c
    if rnd == "mmdet_legacy":
        out = np.round(out)                         # mmdet v1: corners rounded after centring (half-to-even)
    return out


@conventions.documented("cell_anchors")
def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], *, convention: Convention = "torchvision",
                 ratio_def: Optional[str] = None, order: Optional[str] = None, rounding: Optional[str] = None,
                 plus_one: Optional[bool] = None, base_size: float = 16, center: float = 0.0,
                 dtype: DTypeLike = np.float64) -> np.ndarray:
    """Zero-centred anchor templates, one per (size, aspect ratio) pair.

    Reference: :func:`refdet.reference.anchors.cell_anchors` (the formula per anchor, in a loop);
    tests hold the two bit-equal in float64 and float32 under every convention.

    For size ``s`` and ratio ``r = h / w`` the anchor keeps the area ``s**2``:
    ``w = s / sqrt(r)``, ``h = s * sqrt(r)``, corners ``(-w/2, -h/2, w/2, h/2)``.

    Parameters
    ----------
    sizes : sequence of float, length S
        Anchor sides in pixels (sqrt of the area).
    aspect_ratios : sequence of float, length R
        ``h / w`` (or ``w / h`` with ``ratio_def="w_over_h"``).
    convention : str
        Profile setting the four knobs below (see the module table and
        ``refdet.conventions.describe("cell_anchors")``).
    ratio_def : {"h_over_w", "w_over_h"}, optional
    order : {"ratio_major", "size_major"}, optional
        Row ``r * S + s`` (torchvision, mmdet, py-faster-rcnn, TF) or ``s * R + r`` (detectron2).
    rounding : {"torchvision", "pfr", "mmdet_legacy", "none"}, optional
        ``"torchvision"``: the half sizes are rounded half-to-even (``torch.round``);
        ``"pfr"``: py-faster-rcnn's ``ws = round(sqrt(base**2 / r))``, ``hs = round(ws * r)`` on the
        ``base_size`` window, then multiplied by ``size / base_size``; ``"mmdet_legacy"``: the corners
        are rounded after adding ``center`` (mmdet ``LegacyAnchorGenerator``); ``"none"``.
    plus_one : bool, optional
        Legacy inclusive pixels: half extents ``(w - 1) / 2``.
    base_size : float
        The window for ``rounding="pfr"`` (py-faster-rcnn 16; Detectron1 uses the stride).
    center : float
        Template centre (default 0). Only needed for ``rounding="mmdet_legacy"``, whose rounding
        depends on where the template sits (mmdet v1: ``center_offset * (stride - 1)``).
    dtype : float64 or float32
        float32 reproduces torchvision's float32 ``generate_anchors`` bit for bit.

    Returns
    -------
    ndarray, shape (A, 4) with A = R * S
        xyxy, centred on ``(center, center)``.

    Examples
    --------
    >>> cell_anchors((32,), (0.5, 1, 2))          # torchvision: [-22.6, -11.3] rounded to [-23, -11]
    array([[-23., -11.,  23.,  11.],
           [-16., -16.,  16.,  16.],
           [-11., -23.,  11.,  23.]])
    """
    s = conventions.resolve("cell_anchors", convention, ratio_def=ratio_def, order=order,
                            rounding=rounding, plus_one=plus_one)
    sz = _checks.as_positive_vector(sizes, "sizes")
    ar = _checks.as_positive_vector(aspect_ratios, "aspect_ratios")
    dt = _checks.check_float_dtype(dtype)
    b = _checks.check_positive(base_size, "base_size")
    c = _checks.check_real(center, "center")
    return _cell(sz, ar, s, dt, base_size=b, center=c)
