"""Anchors: cell anchors, grid anchors, feature-pyramid anchors and SSD default boxes.

Every anchor-based detector does the same two things:

1. **Cell anchors** (:func:`cell_anchors`): ``A`` template boxes centred on the origin, one per
   (size, aspect ratio) pair. Aspect ratio ``r = h / w`` (torchvision, detectron2, mmdet,
   py-faster-rcnn) keeps the area at ``size**2``: ``w = size / sqrt(r)``, ``h = size * sqrt(r)``.
2. **Tiling** (:func:`grid_anchors`): the templates are copied to every cell of an ``H x W`` feature
   map whose cells are ``stride`` pixels apart. Flattened order is **location-major, anchor-minor**:
   row ``(y * W + x) * A + a``, so that a head's ``(A * C, H, W)`` output reshaped to ``(H*W*A, C)``
   lines up with the anchors. :func:`pyramid_anchors` concatenates levels, giving the order
   ``(level, y, x, a)``.

The frameworks disagree on the details (SPEC-conventions §2); each is an explicit keyword here and
the ``convention=`` profile only sets the defaults:

============  =========  ============  ==============================  ========  ==================
profile       ratio      order         rounding                        plus_one  centre of cell 0
============  =========  ============  ==============================  ========  ==================
torchvision   h / w      ratio-major   half sizes, half-to-even        no        0
detectron2    h / w      size-major    none                            no        0 (cfg OFFSET=0.0)
mmdet         h / w      ratio-major   none                            no        0 (center_offset)
caffe         h / w      ratio-major   py-faster-rcnn ws/hs rounding   yes       (stride - 1) / 2
tf            w / h      ratio-major   none                            no        stride/2 if the
                                                                                  image divides
============  =========  ============  ==============================  ========  ==================

``print(refdet.conventions.describe("pyramid_anchors"))`` prints the same table from the registry.

Sources: torchvision 0.29.1 ``models/detection/anchor_utils.py`` 58-133; detectron2
``modeling/anchor_generator.py`` 39-55, 181-216; mmdet v3 ``prior_generators/anchor_generator.py``
161-300 and ``LegacyAnchorGenerator`` 641-740; py-faster-rcnn ``lib/rpn/generate_anchors.py`` 37-97 and
``anchor_target_layer.py`` 93-115; Detectron1 ``detectron/modeling/generate_anchors.py``; TF OD API
``anchor_generators/grid_anchor_generator.py`` and ``multiple_grid_anchor_generator.py``; issues
pytorch/vision#1765, facebookresearch/detectron2#378, open-mmlab/mmdetection#1870,
facebookresearch/Detectron#227.

Dtypes: anchors are made from Python numbers, so the output dtype is the keyword ``dtype``
(float64 by default, the oracle answer). ``dtype=np.float32`` computes in float32 in torchvision's
order of operations, so the result equals ``AnchorGenerator`` / ``DefaultBoxGenerator`` bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.boxes import boxes_inside_image

__all__ = [
    "cell_anchors",
    "grid_anchors",
    "faster_rcnn_anchors",
    "octave_sizes",
    "pyramid_anchors",
    "anchors_inside_image",
    "ssd_sizes_from_ratios",
    "ssd_default_boxes",
]

RATIO_DEFS = ("h_over_w", "w_over_h")
ORDERS = ("ratio_major", "size_major")
ROUNDINGS = ("none", "torchvision", "pfr", "mmdet_legacy")

_CELL_KNOBS = {
    "ratio_def": "'h_over_w': ratio r = h / w (w = s/sqrt(r), h = s*sqrt(r)); 'w_over_h': r = w / h (TF, SSD)",
    "order": "'ratio_major': row r*len(sizes)+s; 'size_major': row s*len(ratios)+r (detectron2)",
    "rounding": "'torchvision': round(+-w/2, +-h/2) half-to-even; 'pfr': py-faster-rcnn ws=round(sqrt("
                "base^2/r)), hs=round(ws*r), then * size/base; 'mmdet_legacy': round the corners; 'none'",
    "plus_one": "legacy inclusive pixels: corners c -+ (w - 1)/2 instead of c -+ w/2",
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

_PYRAMID_KNOBS = dict(_CELL_KNOBS)
_PYRAMID_KNOBS.update({
    "center_offset": "centre of the first cell: a fraction f of the stride (f*stride), 'legacy' = "
                     "(stride - 1)/2 (py-faster-rcnn, mmdet v1), 'tf_divisible' = stride/2 when the "
                     "image side divides by the stride, else 0 (TF MultiscaleGridAnchorGenerator)",
    "octave_truncate": "with scales_per_octave: int(x * 2**(i/n)) (torchvision RetinaNet) instead of floats",
})
conventions.register(
    "pyramid_anchors",
    {
        "torchvision": dict(_CELL_PROFILES["torchvision"], center_offset=0.0, octave_truncate=True),
        "detectron2": dict(_CELL_PROFILES["detectron2"], center_offset=0.0, octave_truncate=False),
        "mmdet": dict(_CELL_PROFILES["mmdet"], center_offset=0.0, octave_truncate=False),
        "caffe": dict(_CELL_PROFILES["caffe"], center_offset="legacy", octave_truncate=False),
        "tf": dict(_CELL_PROFILES["tf"], center_offset="tf_divisible", octave_truncate=False),
    },
    knobs=_PYRAMID_KNOBS,
    doc=_CELL_DOC + " Centres: torchvision shifts arange(W)*stride (offset 0, vision#1765); detectron2 "
    "cfg ANCHOR_GENERATOR.OFFSET = 0.0 (the class default 0.5, detectron2#378); mmdet center_offset 0; "
    "py-faster-rcnn template centred on (16-1)/2 = 7.5 with shifts arange*16; TF "
    "MultiscaleGridAnchorGenerator stride/2 when divisible. Octaves: torchvision retinanet.py 50-53 "
    "int(x*2**(1/3)); detectron2 Base-RetinaNet.yaml and mmdet octave_base_scale keep floats.",
)

conventions.register(
    "octave_sizes",
    {
        "torchvision": {"truncate": True},
        "detectron2": {"truncate": False},
        "mmdet": {"truncate": False},
        "caffe": {"truncate": False},
        "tf": {"truncate": False},
    },
    knobs={"truncate": "int(x * 2**(i/n)) (torchvision RetinaNet) instead of the float"},
    doc="torchvision retinanet.py 50-53: (x, int(x*2**(1/3)), int(x*2**(2/3))); detectron2 "
        "Base-RetinaNet.yaml, mmdet octave_base_scale * 2**(i/scales_per_octave), Detectron1 RetinaNet "
        "and TF MultiscaleGridAnchorGenerator keep the floats.",
)

conventions.register(
    "anchors_inside_image",
    {
        "torchvision": {"allowed_border": None},
        "detectron2": {"allowed_border": None},
        "mmdet": {"allowed_border": None},
        "caffe": {"allowed_border": 0},
        "tf": {"allowed_border": None},
    },
    knobs={"allowed_border": "None: keep every anchor; b >= 0: keep x1 >= -b, y1 >= -b, x2 < W + b, y2 < H + b"},
    doc="py-faster-rcnn anchor_target_layer.py 109-115 (allowed_border=0: anchors crossing the border are "
        "ignored in RPN training); torchvision does not filter; detectron2 RPN.BOUNDARY_THRESH = -1; "
        "mmdet configs set allowed_border=-1 (the function default is 0).",
)

conventions.register(
    "ssd_default_boxes",
    {
        "torchvision": {"layout": "pairs", "clip_mode": "wh", "reduce_lowest": False, "skip_unit_ratio": False,
                        "size_rule": "linear", "size_reference": "image"},
        "paper": {"layout": "pairs", "clip_mode": "wh", "reduce_lowest": False, "skip_unit_ratio": False,
                  "size_rule": "linear", "size_reference": "image"},
        "caffe": {"layout": "pairs", "clip_mode": "corners", "reduce_lowest": False, "skip_unit_ratio": True,
                  "size_rule": "percent", "size_reference": "image"},
        "mmdet": {"layout": "pairs", "clip_mode": "corners", "reduce_lowest": False, "skip_unit_ratio": False,
                  "size_rule": "percent", "size_reference": "image"},
        "tf": {"layout": "tf", "clip_mode": "corners", "reduce_lowest": True, "skip_unit_ratio": False,
               "size_rule": "linear", "size_reference": "min_side"},
    },
    knobs={
        "layout": "'pairs': per cell [s,s], [s',s'], then (wide, tall) for each ratio (torchvision, Caffe, "
                  "mmdet); 'tf': one box per listed ratio, then the interpolated sqrt(s*s_next) box",
        "clip_mode": "with clip=True: 'wh' clamps the relative (w, h) to [0, 1] (torchvision); 'corners' "
                     "clips the normalised corners to [0, 1] (Caffe PriorBox, TF clip_window)",
        "reduce_lowest": "TF reduce_boxes_in_lowest_layer: layer 0 gets (0.1, 1), (s, 2), (s, 0.5) only",
        "skip_unit_ratio": "Caffe PriorBox skips a listed ratio equal to 1 (the square is already there)",
        "size_rule": "scales=None: 'linear' s_k = min + (max-min)*k/(m-1) plus 1.0 (paper, torchvision, TF); "
                     "'percent' the integer-percent pixel sizes of Caffe ssd_pascal.py / mmdet",
        "size_reference": "'image': relative w times W, h times H (torchvision); 'min_side': both times "
                          "min(H, W) (TF scales the base anchor by min(H,W)/H, min(H,W)/W)",
    },
    doc="torchvision DefaultBoxGenerator (anchor_utils.py 136-268); SSD paper §2.2; Caffe PriorBox "
        "(weiliu89/caffe prior_box_layer.cpp, ssd_pascal.py); mmdet SSDAnchorGenerator (498-640); TF "
        "create_ssd_anchors (multiple_grid_anchor_generator.py). Caffe/mmdet/TF clip only when asked "
        "(PriorBox clip, TF clip_window); pass clip=False for their defaults.",
)


# ---------------------------------------------------------------------------------------------------
# cell anchors
# ---------------------------------------------------------------------------------------------------

def _pfr_ws_hs(base_size, ratios, scales):
    """py-faster-rcnn ``_ratio_enum`` then ``_scale_enum``, float64, ratio-major: (ws, hs) of shape (R*S,).

    Follows the original operations one by one (``_whctrs`` recomputes w from the ratio anchor's
    corners), so that every float is the one py-faster-rcnn computes.
    """
    base = np.array([1.0, 1.0, base_size, base_size]) - 1.0           # [0, 0, 15, 15]
    w = base[2] - base[0] + 1.0                                       # 16
    h = base[3] - base[1] + 1.0
    x_ctr = base[0] + 0.5 * (w - 1.0)                                 # 7.5
    y_ctr = base[1] + 0.5 * (h - 1.0)
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
    sw = (rw[:, None] * scales[None, :]).reshape(-1)                  # (R*S,) ratio outer, scale inner
    sh = (rh[:, None] * scales[None, :]).reshape(-1)
    cx = np.repeat(rx, len(scales))
    cy = np.repeat(ry, len(scales))
    return sw, sh, cx, cy


def faster_rcnn_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32), *, sizes=None):
    """py-faster-rcnn's ``generate_anchors``: the classic nine RPN anchors of Faster R-CNN.

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


def _cell(sizes, ratios, s, dt, *, base_size=16.0, center=0.0):
    """Cell anchors (A, 4) in ``dt`` for resolved knobs ``s``; ``center`` is the template centre."""
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
    ws = ws.reshape(-1)
    hs = hs.reshape(-1)
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
    return out.astype(dt, copy=False)


def cell_anchors(sizes, aspect_ratios, *, convention="torchvision", ratio_def=None, order=None,
                 rounding=None, plus_one=None, base_size=16, center=0.0, dtype=np.float64):
    """Zero-centred anchor templates, one per (size, aspect ratio) pair.

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
    _check_knobs(s)
    sz = _checks.as_positive_vector(sizes, "sizes")
    ar = _checks.as_positive_vector(aspect_ratios, "aspect_ratios")
    dt = _checks.check_float_dtype(dtype)
    b = _checks.check_positive(base_size, "base_size")
    c = _checks.check_real(center, "center")
    return _cell(sz, ar, s, dt, base_size=b, center=c)


def _check_knobs(s):
    _checks.check_choice(s["ratio_def"], "ratio_def", RATIO_DEFS)
    _checks.check_choice(s["order"], "order", ORDERS)
    _checks.check_choice(s["rounding"], "rounding", ROUNDINGS)
    if not isinstance(s["plus_one"], (bool, np.bool_)):
        raise TypeError(f"`plus_one` must be a bool; got {s['plus_one']!r}")


# ---------------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------------

def _offset_pixels(offset, stride, image_side=None, base=None):
    """Centre of the first cell in pixels along one axis.

    ``base`` is the anchor base size (mmdet ``base_sizes``, py-faster-rcnn ``base_size``); it defaults
    to the stride, which is what every released configuration uses.
    """
    base = stride if base is None else base
    if isinstance(offset, str):
        if offset == "legacy":
            return (base - 1.0) / 2.0
        if offset == "tf_divisible":
            if image_side is None:
                raise ValueError("`offset` 'tf_divisible' needs the image size (use pyramid_anchors)")
            return stride / 2.0 if (image_side % stride == 0 or image_side == 1) else 0.0
        raise ValueError(f"`offset` must be a number, 'legacy' or 'tf_divisible'; got {offset!r}")
    return _checks.check_real(offset, "offset") * base


def _tile(cell, h, w, sy, sx, oy, ox, out=None):
    """(h*w*A, 4) anchors: cell (A, 4) shifted to every cell centre, order (y, x, a). Vectorised.

    ``out`` (optional, shape (h*w*A, 4), dtype of ``cell``) receives the result (no extra copy when
    :func:`pyramid_anchors` writes each level straight into its slice of the output).
    """
    dt = cell.dtype
    # centres: i * stride + offset, computed in float64 (torch arange and int32*stride are exact here)
    # then rounded once to the working dtype, as torchvision adds an int32 shift to float32 anchors.
    xs = (np.arange(w, dtype=np.float64) * sx + ox).astype(dt)       # (W,)
    ys = (np.arange(h, dtype=np.float64) * sy + oy).astype(dt)       # (H,)
    A = cell.shape[0]
    if out is None:
        out = np.empty((h * w * A, 4), dtype=dt)
    # anchor (y, x, a) = (xs[x] + cell[a, 0], ys[y] + cell[a, 1], xs[x] + cell[a, 2], ys[y] + cell[a, 3]):
    # one addition per coordinate, exactly torchvision's shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4).
    # The x coordinates do not depend on y and the y coordinates not on x, so build one (W, A, 4) row,
    # broadcast it over the H rows, and overwrite the y coordinates with the (H, A, 2) y part: long
    # contiguous copies instead of a broadcast add with an inner loop of length 4 (6x faster).
    row = np.empty((w, A, 4), dtype=dt)
    np.add(xs[:, None, None], cell[None, :, 0::2], out=row[:, :, 0::2])    # (W, A, 2): x1, x2
    ycol = ys[:, None, None] + cell[None, :, 1::2]                          # (H, A, 2): y1, y2
    o = out.reshape(h, w, A, 4)
    o[...] = row[None]
    o[:, :, :, 1::2] = ycol[:, None]
    return out


def grid_anchors(cell, feature_size, stride, *, offset=0.0):
    """Tile cell anchors over an ``H x W`` feature map.

    The anchor ``a`` of cell ``(y, x)`` is ``cell[a]`` shifted by
    ``(x * stride_x + offset_x, y * stride_y + offset_y)`` and sits in row ``(y * W + x) * A + a``.

    Parameters
    ----------
    cell : ndarray, shape (A, 4)
        Zero-centred templates (:func:`cell_anchors`).
    feature_size : int or (H, W)
    stride : float or (stride_y, stride_x)
        Pixels between neighbouring cells.
    offset : float or {"legacy"}
        Centre of the first cell as a fraction of the stride: 0 (torchvision, detectron2 config,
        mmdet: the first anchor is centred on pixel (0, 0), pytorch/vision#1765), 0.5 (the cell's
        centre: detectron2's class default, SSD), or ``"legacy"`` for ``(stride - 1) / 2``
        (py-faster-rcnn's 7.5 for stride 16, mmdet v1 with ``center_offset=0.5``).

    Returns
    -------
    ndarray, shape (H * W * A, 4)
        In the working dtype of ``cell`` (float32 stays float32).
    """
    c = _checks.as_boxes(cell, "cell")
    (h, w), = _checks.as_feature_sizes([feature_size], "feature_size")
    sy, sx = _checks.as_stride_pair(stride)
    oy = _offset_pixels(offset, sy)
    ox = _offset_pixels(offset, sx)
    return _tile(c, h, w, sy, sx, oy, ox)


def octave_sizes(base_sizes, scales_per_octave=3, *, convention="torchvision", truncate=None):
    """RetinaNet's octave sizes: ``(x * 2**(i / n) for i in range(n))`` for each base size ``x``.

    torchvision truncates to int (``retinanet.py`` 50-53): 32 -> (32, 40, 50), 64 -> (64, 80, 101),
    128 -> (128, 161, 203), 256 -> (256, 322, 406), 512 -> (512, 645, 812); detectron2, mmdet,
    Detectron1 and TF keep floats (32, 40.3175, 50.7968).

    Parameters
    ----------
    base_sizes : sequence of float, length L
    scales_per_octave : int
    truncate : bool, optional
        Overrides the profile.

    Returns
    -------
    list of L tuples of ``scales_per_octave`` floats
    """
    s = conventions.resolve("octave_sizes", convention, truncate=truncate)
    base = _checks.as_positive_vector(base_sizes, "base_sizes")
    n = _checks.check_int(scales_per_octave, "scales_per_octave", low=1)
    out = []
    for x in base.tolist():
        row = tuple(x * 2 ** (i / n) for i in range(n))      # Python float math, as both libraries do
        if s["truncate"]:
            row = tuple(float(int(v)) for v in row)
        out.append(row)
    return out


def _per_level(x, L, name):
    """Sizes/ratios: a flat list shared by every level, or one list per level."""
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool):
            return [_checks.as_positive_vector(x, name)] * L
        raise TypeError(f"`{name}` must be a list of numbers or of per-level lists; got {type(x).__name__}")
    nested = len(x) > 0 and all(hasattr(v, "__len__") and not isinstance(v, (str, bytes)) for v in x)
    if nested:
        if len(x) != L:
            raise ValueError(f"`{name}` must have one entry per feature map ({L}); got {len(x)}")
        return [_checks.as_positive_vector(v, f"{name}[{i}]") for i, v in enumerate(x)]
    return None


def pyramid_anchors(image_size, feature_sizes, strides, sizes, aspect_ratios, *, convention="torchvision",
                    ratio_def=None, order=None, rounding=None, plus_one=None, center_offset=None,
                    octave_truncate=None, scales_per_octave=None, base_sizes=None, dtype=np.float64):
    """Anchors of every level of a feature pyramid (FPN RPN, RetinaNet P3-P7) or of one feature map.

    Level ``l`` tiles :func:`cell_anchors` (``sizes[l]`` x ``aspect_ratios[l]``) over its
    ``H_l x W_l`` map (:func:`grid_anchors`); the levels are concatenated, so the row order is
    ``(level, y, x, a)``.

    Parameters
    ----------
    image_size : (H, W)
        The (padded) image the network sees.
    feature_sizes : list of L ints or (H_l, W_l) pairs
    strides : list of L floats or (stride_y, stride_x) pairs, or None
        None computes ``image_size // feature_size`` per axis (integer floor), as torchvision's
        ``AnchorGenerator.forward`` does on the padded batch: a 100-pixel image with a 3x3 map gets
        stride 33, an 800-pixel image with a 13x13 P6 map stride 61 (not 64).
    sizes : list of L per-level lists, or a flat list
        A flat list with L entries is one size per level (torchvision's ``sizes=(32, 64, ...)``); with
        one feature map a flat list holds that level's sizes. With ``scales_per_octave=n`` each
        level's single size ``x`` becomes ``x * 2**(i/n)`` (:func:`octave_sizes`).
    aspect_ratios : flat list shared by every level, or L per-level lists
    convention : str
        Sets the knobs below (``refdet.conventions.describe("pyramid_anchors")``).
    ratio_def, order, rounding, plus_one : optional
        As in :func:`cell_anchors`.
    center_offset : float or {"legacy", "tf_divisible"}, optional
        Centre of the first cell as a fraction of the stride (0 torchvision/detectron2 cfg/mmdet,
        0.5 detectron2 class default); ``"legacy"`` = ``(stride-1)/2`` (py-faster-rcnn,
        Detectron1, mmdet v1); ``"tf_divisible"``: ``stride/2`` when the image side divides by the
        stride, else 0 (TF ``MultiscaleGridAnchorGenerator``).
    octave_truncate : bool, optional
        With ``scales_per_octave``: truncate the octave sizes to int (torchvision).
    scales_per_octave : int, optional
    base_sizes : list of L floats, optional
        mmdet's ``base_sizes`` / py-faster-rcnn's ``base_size`` (default: each level's stride, as every
        released configuration has it): the window of ``rounding="pfr"``, and the length the centre
        offset refers to (``center_offset * base``, legacy ``(base - 1) / 2``; mmdet's
        ``center = center_offset * base_size``). Sizes stay absolute pixels.
    dtype : float64 or float32

    Returns
    -------
    anchors : ndarray, shape (sum_l H_l * W_l * A_l, 4)
        xyxy pixels.
    level : ndarray of int64, same length
        The level index of each anchor.

    Notes
    -----
    The seed's single-level RPN: 50 x 50 map, stride 16, 3 sizes x 3 ratios -> 9 anchors per location,
    50 * 50 * 9 = 22,500 anchors. py-faster-rcnn's anchors are ``convention="caffe"`` with strides 16
    and sizes ``(128, 256, 512)``. Anchors crossing the image border are kept; mark them with
    :func:`anchors_inside_image` (py-faster-rcnn ignores them in RPN training).

    torchvision with float64 feature maps still builds its cell anchors in float32 (they are made in
    ``__init__``) and casts them: ``pyramid_anchors(..., dtype=np.float32).astype(np.float64)``
    reproduces that; ``dtype=np.float64`` is the float64 oracle, which can differ where a half size
    lies within float32 rounding of ``k + 0.5``.
    """
    s = conventions.resolve("pyramid_anchors", convention, ratio_def=ratio_def, order=order,
                            rounding=rounding, plus_one=plus_one, center_offset=center_offset,
                            octave_truncate=octave_truncate)
    _check_knobs(s)
    img_h, img_w = _checks.check_image_size(image_size)
    fs = _checks.as_feature_sizes(feature_sizes)
    L = len(fs)
    dt = _checks.check_float_dtype(dtype)

    if strides is None:
        st = []
        for i, (h, w) in enumerate(fs):
            if h == 0 or w == 0:
                raise ValueError(f"`strides` cannot be derived from an empty feature map "
                                 f"(feature_sizes[{i}] = {(h, w)}); pass strides")
            st.append((float(int(img_h) // h), float(int(img_w) // w)))
    else:
        if isinstance(strides, (str, bytes)) or not hasattr(strides, "__len__"):
            strides = [strides] * L
        if len(strides) != L:
            raise ValueError(f"`strides` must have one entry per feature map ({L}); got {len(strides)}")
        st = [_checks.as_stride_pair(v, f"strides[{i}]") for i, v in enumerate(strides)]

    if scales_per_octave is not None:
        base = _checks.as_positive_vector(sizes, "sizes")
        if len(base) != L:
            raise ValueError(f"with `scales_per_octave`, `sizes` must hold one base size per level ({L}); "
                             f"got {len(base)}")
        per_size = [np.array(r) for r in octave_sizes(base, scales_per_octave, truncate=s["octave_truncate"])]
    else:
        per_size = _per_level(sizes, L, "sizes")
        if per_size is None:
            flat = _checks.as_positive_vector(sizes, "sizes")
            if L == 1:
                per_size = [flat]
            elif len(flat) == L:
                per_size = [flat[i:i + 1] for i in range(L)]
            else:
                raise ValueError(f"`sizes` must have one entry per feature map ({L}) or be per-level "
                                 f"lists; got {len(flat)} sizes")
    per_ratio = _per_level(aspect_ratios, L, "aspect_ratios")
    if per_ratio is None:
        per_ratio = [_checks.as_positive_vector(aspect_ratios, "aspect_ratios")] * L

    if base_sizes is not None:
        bs = _checks.as_positive_vector(base_sizes, "base_sizes")
        if len(bs) != L:
            raise ValueError(f"`base_sizes` must have one entry per feature map ({L}); got {len(bs)}")
    off = s["center_offset"]
    if isinstance(off, str):
        _checks.check_choice(off, "center_offset", ("legacy", "tf_divisible"))
    else:
        _checks.check_real(off, "center_offset")

    counts = [h * w * len(per_size[i]) * len(per_ratio[i]) for i, (h, w) in enumerate(fs)]
    anchors = np.empty((sum(counts), 4), dtype=dt)
    ends = np.cumsum(counts)
    for lvl, ((h, w), (sy, sx)) in enumerate(zip(fs, st)):
        by = bx = float(bs[lvl]) if base_sizes is not None else None
        oy = _offset_pixels(off, sy, img_h, by)
        ox = _offset_pixels(off, sx, img_w, bx)
        base = bx if bx is not None else sx
        if s["rounding"] == "pfr" and base_sizes is None and sy != sx:
            raise ValueError(f"rounding 'pfr' needs a square stride or `base_sizes`; level {lvl} has "
                             f"strides {(sy, sx)}")
        if s["rounding"] == "mmdet_legacy":
            # the legacy rounding acts on absolute corners: put the centre in the template
            if oy != ox:
                raise ValueError(f"rounding 'mmdet_legacy' needs equal x/y offsets; level {lvl} has {(oy, ox)}")
            cell = _cell(per_size[lvl], per_ratio[lvl], s, dt, base_size=base, center=ox)
            oy = ox = 0.0
        else:
            cell = _cell(per_size[lvl], per_ratio[lvl], s, dt, base_size=base)
        _tile(cell, h, w, sy, sx, oy, ox, out=anchors[ends[lvl] - counts[lvl]:ends[lvl]])
    return anchors, np.repeat(np.arange(L, dtype=np.int64), counts)


def anchors_inside_image(anchors, image_size, *, convention="torchvision", allowed_border=None):
    """Mask of the anchors a detector trains on: those that do not cross the image border.

    py-faster-rcnn's RPN keeps only anchors with ``x1 >= -b``, ``y1 >= -b``, ``x2 < W + b``,
    ``y2 < H + b`` (``allowed_border = b = 0``, ``anchor_target_layer.py`` 109-115) and ignores the
    rest (label -1); torchvision and detectron2 (``RPN.BOUNDARY_THRESH = -1``) keep every anchor.
    This is :func:`refdet.boxes.boxes_inside_image` with the profile's default border.

    Parameters
    ----------
    anchors : ndarray, shape (N, 4), xyxy
    image_size : (H, W)
    allowed_border : float or None, optional
        Overrides the profile; ``None`` under a profile that sets it means "keep all".

    Returns
    -------
    ndarray of bool, shape (N,)
    """
    s = conventions.resolve("anchors_inside_image", convention, allowed_border=allowed_border)
    a = _checks.as_boxes(anchors, "anchors")
    return boxes_inside_image(a, image_size, allowed_border=s["allowed_border"])


# ---------------------------------------------------------------------------------------------------
# SSD default boxes
# ---------------------------------------------------------------------------------------------------

def ssd_sizes_from_ratios(input_size, num_levels, min_ratio=0.2, max_ratio=0.9):
    """Caffe SSD's (``ssd_pascal.py``) and mmdet's ``SSDAnchorGenerator`` pixel min/max sizes.

    ``lo = int(100 * min_ratio)``, ``hi = int(100 * max_ratio)``, ``step = (hi - lo) // (L - 2)``; for
    ``r in range(lo, hi + 1, step)``: ``min = int(D * r / 100)``, ``max = int(D * (r + step) / 100)``;
    the first (conv4_3) level is prepended with ``(lo // 2)%`` and ``lo%`` of ``D``.

    SSD300 VOC (0.2, 0.9): min ``[30, 60, 111, 162, 213, 264]``, max ``[60, 111, 162, 213, 264, 315]``.
    SSD300 COCO (0.15, 0.9): min ``[21, 45, 99, 153, 207, 261]``, max ``[45, 99, 153, 207, 261, 315]``
    (= torchvision's SSD300 scales times 300).

    Returns
    -------
    (min_sizes, max_sizes) : two lists of ``num_levels`` ints
    """
    d = _checks.check_int(input_size, "input_size", low=1)
    L = _checks.check_int(num_levels, "num_levels", low=3)
    lo_r = _checks.check_probability(min_ratio, "min_ratio")
    hi_r = _checks.check_probability(max_ratio, "max_ratio")
    lo, hi = int(lo_r * 100), int(hi_r * 100)          # int() as mmdet does: int(0.29*100) = 28
    step = (hi - lo) // (L - 2)
    if step <= 0:
        raise ValueError(f"`max_ratio` must exceed `min_ratio` by at least {(L - 2)}%; got {min_ratio}, {max_ratio}")
    mins = [d * r // 100 for r in range(lo, hi + 1, step)]
    maxs = [d * (r + step) // 100 for r in range(lo, hi + 1, step)]
    if len(mins) != L - 1:
        raise ValueError(f"the percent rule gives {len(mins) + 1} levels for ratios ({min_ratio}, {max_ratio}), "
                         f"not `num_levels` = {L}")
    return [d * (lo // 2) // 100] + mins, [d * lo // 100] + maxs


def _ssd_specs(k, s_k, s_next, ratios_k, s, interpolated_ratio):
    """(A_k, 2) float64 relative (w, h) pairs of level k; Python float math like torchvision.

    ``s_next`` is the next level's scale (None: no interpolated square, Caffe without max sizes).
    """
    if s["layout"] == "pairs":
        pairs = [[s_k, s_k]]
        if s_next is not None:
            s_prime = math.sqrt(s_k * s_next)
            pairs.append([s_prime, s_prime])
        for ar in ratios_k:
            if s["skip_unit_ratio"] and abs(ar - 1.0) < 1e-6:
                continue
            sq = math.sqrt(ar)
            w, h = s_k * sq, s_k / sq
            pairs.extend([[w, h], [h, w]])                 # wide first, then tall
        return pairs
    # TF create_ssd_anchors: one box per (scale, ratio) spec, ratio = w / h
    if k == 0 and s["reduce_lowest"]:
        specs = [(0.1, 1.0), (s_k, 2.0), (s_k, 0.5)]
    else:
        specs = [(s_k, ar) for ar in ratios_k]
        if interpolated_ratio > 0 and s_next is not None:
            specs.append((math.sqrt(s_k * s_next), interpolated_ratio))
    return [[sc * math.sqrt(ar), sc / math.sqrt(ar)] for sc, ar in specs]


def ssd_default_boxes(image_size, feature_sizes, *, scales=None, min_ratio=0.2, max_ratio=0.9, aspect_ratios,
                      steps=None, clip=True, convention="torchvision", layout=None, clip_mode=None,
                      reduce_lowest=None, skip_unit_ratio=None, size_rule=None, size_reference=None,
                      min_sizes=None, max_sizes=None, interpolated_ratio=1.0, offset=0.5,
                      normalized=False, box_format="xyxy", dtype=np.float64):
    """SSD default boxes (priors) for every feature map, in pixels.

    The paper (Liu et al. 2016, §2.2): level ``k`` of ``m`` has scale
    ``s_k = s_min + (s_max - s_min) * k / (m - 1)`` (relative to the image), boxes of width
    ``s_k * sqrt(a)`` and height ``s_k / sqrt(a)`` for each aspect ratio ``a`` (``w / h``), an extra
    square of side ``s'_k = sqrt(s_k * s_{k+1})``, centred at ``((j + 0.5) / f_k, (i + 0.5) / f_k)``.

    With the torchvision profile (``DefaultBoxGenerator``): per cell ``[s_k, s_k]``,
    ``[s'_k, s'_k]``, then for each listed ratio ``a`` the wide box and the tall box, so
    ``A_k = 2 + 2 * len(aspect_ratios[k])``; ``scales`` defaults to the linear rule plus an appended
    1.0 (for the last ``s'``); ``steps[k]`` (pixels) replaces ``f_k`` by ``image / steps[k]``;
    ``clip`` clamps the relative (w, h) to [0, 1] (not the corners); output
    ``(c -+ wh/2) * (W, H)``. SSD300: maps 38, 19, 10, 5, 3, 1, ratios ``[[2], [2, 3], [2, 3],
    [2, 3], [2], [2]]``, scales ``[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]``, steps
    ``[8, 16, 32, 64, 100, 300]`` -> 8732 boxes.

    Parameters
    ----------
    image_size : (H, W)
    feature_sizes : list of L ints or (H_k, W_k) pairs
    scales : list of L + 1 (or L: 1.0 is appended, as TF does) floats, optional
        Relative scales. Default: ``size_rule``.
    min_ratio, max_ratio : float
        ``s_min``, ``s_max`` of the linear rule (paper 0.2, 0.9; torchvision's class default
        ``min_ratio`` is 0.15, SSDlite uses 0.2, 0.95); percent rule: see :func:`ssd_sizes_from_ratios`.
        With one level the linear rule gives ``[min_ratio, max_ratio]`` (torchvision).
    aspect_ratios : list of L lists (or one flat list for every level)
        ``w / h``. Layout ``"pairs"``: each ``a`` adds the ``a`` and ``1/a`` boxes (Caffe ``flip``).
        Layout ``"tf"``: each listed ratio is one box (TF default ``(1, 2, 3, 1/2, 1/3)``).
    steps : list of L floats, optional
        Pixels between cell centres (torchvision ``steps``, Caffe ``step``); default ``image / f_k``.
    clip : bool
        Clip (``clip_mode``) the boxes.
    convention : {"torchvision", "paper", "caffe", "mmdet", "tf"}
    layout, clip_mode, reduce_lowest, skip_unit_ratio, size_rule, size_reference : optional
        Knobs, see ``refdet.conventions.describe("ssd_default_boxes")``.
    min_sizes, max_sizes : list of L floats, optional
        Caffe ``PriorBox`` pixel sizes (replace ``scales``): squares of ``min`` and ``sqrt(min*max)``
        pixels, ratio boxes ``min * sqrt(a)`` by ``min / sqrt(a)``.
    interpolated_ratio : float
        TF layout: the ratio of the extra ``sqrt(s_k s_{k+1})`` box (0 drops it).
    offset : float
        Centre of cell ``i`` at ``(i + offset) / f_k`` (0.5 everywhere).
    normalized : bool
        Return coordinates in [0, 1] units of the image instead of pixels (TF, Caffe priors).
    box_format : {"xyxy", "yxyx"}
        ``"yxyx"`` for TF's ``[ymin, xmin, ymax, xmax]``.
    dtype : float64 or float32
        float32 reproduces ``DefaultBoxGenerator`` bit for bit.

    Returns
    -------
    ndarray, shape (sum_k H_k * W_k * A_k, 4)
        Order ``(level, y, x, a)``.
    """
    s = conventions.resolve("ssd_default_boxes", convention, layout=layout, clip_mode=clip_mode,
                            reduce_lowest=reduce_lowest, skip_unit_ratio=skip_unit_ratio,
                            size_rule=size_rule, size_reference=size_reference)
    _checks.check_choice(s["layout"], "layout", ("pairs", "tf"))
    _checks.check_choice(s["clip_mode"], "clip_mode", ("wh", "corners"))
    _checks.check_choice(s["size_rule"], "size_rule", ("linear", "percent"))
    _checks.check_choice(s["size_reference"], "size_reference", ("image", "min_side"))
    _checks.check_choice(box_format, "box_format", ("xyxy", "yxyx"))
    img_h, img_w = _checks.check_image_size(image_size)
    fs = _checks.as_feature_sizes(feature_sizes)
    L = len(fs)
    dt = _checks.check_float_dtype(dtype)
    off = _checks.check_real(offset, "offset")
    interp = _checks.check_real(interpolated_ratio, "interpolated_ratio")
    if not isinstance(clip, (bool, np.bool_)):
        raise TypeError(f"`clip` must be a bool; got {clip!r}")

    ratios = _ssd_ratios(aspect_ratios, L)
    ratios = [r.tolist() for r in ratios]

    if steps is not None:
        stp = _checks.as_positive_vector(steps, "steps")
        if len(stp) != L:
            raise ValueError(f"`steps` must have one entry per feature map ({L}); got {len(stp)}")

    # --- scales: relative per axis (sx for widths, sy for heights), or absolute pixels -------------
    pixel_sizes = min_sizes is not None
    if not pixel_sizes and scales is None and s["size_rule"] == "percent":
        lo = _checks.check_probability(min_ratio, "min_ratio")
        hi = _checks.check_probability(max_ratio, "max_ratio")
        min_sizes, max_sizes = ssd_sizes_from_ratios(int(min(img_h, img_w)), L, lo, hi)
        pixel_sizes = True
    if pixel_sizes:
        mn = _checks.as_positive_vector(min_sizes, "min_sizes")
        if len(mn) != L:
            raise ValueError(f"`min_sizes` must have one entry per feature map ({L}); got {len(mn)}")
        if max_sizes is not None:
            mx = _checks.as_positive_vector(max_sizes, "max_sizes")
            if len(mx) != L:
                raise ValueError(f"`max_sizes` must have one entry per feature map ({L}); got {len(mx)}")
            # s'_k = sqrt(min_k * max_k): written as the scale list's "next" entry per level
            sc = [(float(a), float(b)) for a, b in zip(mn, mx)]
        else:
            sc = [(float(a), None) for a in mn]
    else:
        if scales is not None:
            sv = _checks.as_positive_vector(scales, "scales").tolist()
            if len(sv) == L:
                sv = sv + [1.0]                       # TF: `scales += [1.0]`, used only for the last s'
            elif len(sv) != L + 1:
                raise ValueError(f"`scales` must have {L + 1} (or {L}) entries for {L} feature maps; "
                                 f"got {len(sv)}")
        else:
            lo = _checks.check_real(min_ratio, "min_ratio")
            hi = _checks.check_real(max_ratio, "max_ratio")
            if L > 1:
                sv = [lo + (hi - lo) * k / (L - 1.0) for k in range(L)] + [1.0]
            else:
                sv = [lo, hi]
        sc = [(sv[k], sv[k + 1]) for k in range(L)]

    parts = []
    H, W = dt.type(img_h), dt.type(img_w)
    for k, (fh, fw) in enumerate(fs):
        s_k, s_next = sc[k]
        pairs = _ssd_specs(k, s_k, s_next, ratios[k], s, interp)
        wh64 = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        if pixel_sizes:
            wh64 = wh64 / np.array([float(img_w), float(img_h)])          # Caffe: box_width / img_width
        elif s["size_reference"] == "min_side":
            m = float(min(img_h, img_w))
            wh64 = wh64 * np.array([m / float(img_w), m / float(img_h)])
        wh = wh64.astype(dt)                          # torchvision: torch.as_tensor(pairs, float32)
        if clip and s["clip_mode"] == "wh":
            wh = np.clip(wh, 0, 1)
        if steps is not None:
            x_f, y_f = float(img_w) / float(stp[k]), float(img_h) / float(stp[k])
        else:
            x_f, y_f = float(fw), float(fh)
        # torchvision: ((arange(f) + 0.5) / x_f_k).to(float32): float32 arithmetic, x_f_k rounded first
        cx = (np.arange(fw, dtype=dt) + dt.type(off)) / dt.type(x_f)     # (W_k,)
        cy = (np.arange(fh, dtype=dt) + dt.type(off)) / dt.type(y_f)     # (H_k,)
        A = len(wh)
        half = dt.type(0.5) * wh                                        # (A, 2)
        box = np.empty((fh, fw, A, 4), dtype=dt)
        np.subtract(cx[None, :, None], half[None, None, :, 0], out=box[..., 0])
        np.subtract(cy[:, None, None], half[None, None, :, 1], out=box[..., 1])
        np.add(cx[None, :, None], half[None, None, :, 0], out=box[..., 2])
        np.add(cy[:, None, None], half[None, None, :, 1], out=box[..., 3])
        box = box.reshape(-1, 4)
        if clip and s["clip_mode"] == "corners":
            box = np.clip(box, 0, 1)
        if not normalized:
            box = box * np.array([W, H, W, H], dtype=dt)                # torchvision: (c -+ wh/2) * [W, H]
        parts.append(box)
    out = np.concatenate(parts, axis=0) if parts else np.zeros((0, 4), dtype=dt)
    if box_format == "yxyx":
        out = out[:, [1, 0, 3, 2]]
    return out


def _ssd_ratios(x, L):
    """SSD aspect ratios: L per-level lists (a level may list none) or one flat list for every level."""
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise TypeError(f"`aspect_ratios` must be a list of per-level lists of numbers; got {type(x).__name__}")
    nested = len(x) > 0 and all(hasattr(v, "__len__") and not isinstance(v, (str, bytes)) for v in x)
    if nested:
        if len(x) != L:
            raise ValueError(f"`aspect_ratios` must have one entry per feature map ({L}); got {len(x)}")
        return [_checks.as_positive_vector(v, f"aspect_ratios[{i}]", allow_empty=True) for i, v in enumerate(x)]
    return [_checks.as_positive_vector(x, "aspect_ratios", allow_empty=True)] * L
