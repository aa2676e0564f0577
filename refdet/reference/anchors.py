"""Anchors as the formulas: a cell anchor per (size, ratio), shifted over the grid in the order (y, x, a).

A cell anchor of size ``s`` (the square root of its area) and aspect ratio ``r = h / w`` has
``w = s / sqrt(r)`` and ``h = s * sqrt(r)`` and is centred on the origin: ``(-w/2, -h/2, w/2, h/2)``.
The anchor ``a`` of the feature-map cell ``(y, x)`` is that template shifted by
``(x * stride + offset, y * stride + offset)``; rows are ``(level, y, x, a)``.

The knobs are those of :func:`refdet.cell_anchors` / :func:`refdet.pyramid_anchors` /
:func:`refdet.ssd_default_boxes` (``refdet.conventions.resolve(op, name)`` gives a profile's values),
each a plain branch here. Arithmetic is done on NumPy scalars of the output dtype in the order written,
which is the fast path's (torchvision's) order: ``tests/test_reference_geometry.py`` holds the two
bit-equal.
"""
import math

import numpy as np


# --------------------------------------------------------------------------------------------------
# py-faster-rcnn's generate_anchors (lib/rpn/generate_anchors.py 37-97), float64, one anchor at a time
# --------------------------------------------------------------------------------------------------

def _whctrs(a):
    """Width, height and centre of an inclusive-pixel box ``[x1, y1, x2, y2]``."""
    w = a[2] - a[0] + 1.0
    h = a[3] - a[1] + 1.0
    return w, h, a[0] + 0.5 * (w - 1.0), a[1] + 0.5 * (h - 1.0)


def _mkanchor(w, h, xc, yc):
    return [xc - 0.5 * (w - 1.0), yc - 0.5 * (h - 1.0), xc + 0.5 * (w - 1.0), yc + 0.5 * (h - 1.0)]


def _pfr_anchor(base_size, ratio, scale):
    """(w, h, xc, yc) of the py-faster-rcnn anchor of one (ratio, scale): ``_ratio_enum``, ``_scale_enum``."""
    w, h, xc, yc = _whctrs([0.0, 0.0, base_size - 1.0, base_size - 1.0])
    ws = np.round(np.sqrt(w * h / ratio))          # half-to-even: sqrt(512) = 22.6 -> 23
    hs = np.round(ws * ratio)                      # round(23 * 0.5) = round(11.5) = 12
    rw, rh, rx, ry = _whctrs(_mkanchor(ws, hs, xc, yc))
    return rw * scale, rh * scale, rx, ry


def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    """py-faster-rcnn's nine anchors (ratio outer, scale inner), +1 pixels, centred on (base - 1) / 2."""
    out = []
    for r in ratios:                                # _ratio_enum
        for s in scales:                            # _scale_enum
            out.append(_mkanchor(*_pfr_anchor(float(base_size), np.float64(r), np.float64(s))))
    return np.array(out, dtype=np.float64).reshape(-1, 4)


# --------------------------------------------------------------------------------------------------
# cell anchors, grid, pyramid
# --------------------------------------------------------------------------------------------------

def cell_anchors(sizes, aspect_ratios, *, ratio_def="h_over_w", order="ratio_major", rounding="torchvision",
                 plus_one=False, base_size=16.0, center=0.0, dtype=np.float64):
    """The (A, 4) templates, one per (size, ratio) pair, centred on ``(center, center)``."""
    t = np.dtype(dtype).type
    if order == "ratio_major":                      # row r * S + s
        pairs = [(r, s) for r in aspect_ratios for s in sizes]
    else:                                           # "size_major": row s * R + r (detectron2)
        pairs = [(r, s) for s in sizes for r in aspect_ratios]
    out = []
    for r, size in pairs:
        if rounding == "pfr":                       # py-faster-rcnn's rounded ws, hs on the base window
            r_hw = float(r) if ratio_def == "h_over_w" else 1.0 / float(r)
            w, h, _, _ = _pfr_anchor(float(base_size), np.float64(r_hw), np.float64(size) / float(base_size))
            w, h = t(w), t(h)
        else:
            r, size = t(r), t(size)
            if ratio_def == "h_over_w":             # r = h / w: h = s * sqrt(r), w = s * (1 / sqrt(r))
                h_ratio = np.sqrt(r)
                w_ratio = t(1) / h_ratio
            else:                                   # "w_over_h" (TF): w = s * sqrt(r), h = s * (1 / sqrt(r))
                w_ratio = np.sqrt(r)
                h_ratio = t(1) / w_ratio
            w, h = w_ratio * size, h_ratio * size
        if plus_one:                                # inclusive pixels: x2 - x1 = w - 1
            w, h = w - t(1), h - t(1)
        if rounding == "torchvision":               # round the half sizes, half-to-even
            box = [np.round(-w / t(2)), np.round(-h / t(2)), np.round(w / t(2)), np.round(h / t(2))]
        else:
            box = [-(t(0.5) * w), -(t(0.5) * h), t(0.5) * w, t(0.5) * h]
        if center != 0.0 or rounding == "mmdet_legacy":
            box = [v + t(center) for v in box]
        if rounding == "mmdet_legacy":              # mmdet v1: the centred corners are rounded
            box = [np.round(v) for v in box]
        out.append(box)
    return np.array(out, dtype=dtype).reshape(-1, 4)


def offset_pixels(offset, stride, image_side=None, base=None):
    """Centre of the first cell along one axis, in pixels."""
    base = stride if base is None else base
    if offset == "legacy":                          # py-faster-rcnn: (16 - 1) / 2 = 7.5
        return (base - 1.0) / 2.0
    if offset == "tf_divisible":                    # TF: stride / 2 when the image divides by the stride
        return stride / 2.0 if (image_side % stride == 0 or image_side == 1) else 0.0
    return float(offset) * base                     # a fraction of the stride (base)


def grid_anchors(cell, feature_size, stride, *, offset=0.0):
    """``cell`` (A, 4) shifted to every cell of an ``H x W`` map: (H * W * A, 4), rows (y, x, a)."""
    h, w = feature_size
    sy, sx = stride
    oy, ox = offset_pixels(offset, sy), offset_pixels(offset, sx)
    return _grid(cell, h, w, sy, sx, oy, ox)


def _grid(cell, h, w, sy, sx, oy, ox):
    t = cell.dtype.type
    out = []
    for y in range(h):
        for x in range(w):
            # the shift is computed in float64 and rounded once (torchvision adds an int shift)
            shift_x, shift_y = t(x * sx + ox), t(y * sy + oy)
            for a in range(cell.shape[0]):
                x1, y1, x2, y2 = cell[a]
                out.append([x1 + shift_x, y1 + shift_y, x2 + shift_x, y2 + shift_y])
    return np.array(out, dtype=cell.dtype).reshape(-1, 4)


def octave_sizes(base_sizes, scales_per_octave=3, truncate=False):
    """RetinaNet's ``x * 2**(i / n)`` for each base size ``x`` (torchvision truncates them to int)."""
    out = []
    for x in base_sizes:
        row = [float(x) * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)]
        out.append([float(int(v)) for v in row] if truncate else row)
    return out


def pyramid_anchors(image_size, feature_sizes, strides, sizes, aspect_ratios, *, ratio_def="h_over_w",
                    order="ratio_major", rounding="torchvision", plus_one=False, center_offset=0.0,
                    base_sizes=None, dtype=np.float64):
    """Every level's cell anchors tiled over its map, levels concatenated: rows (level, y, x, a).

    ``sizes[l]`` and ``aspect_ratios[l]`` are level ``l``'s lists; ``strides`` a list of
    ``(stride_y, stride_x)`` or None for ``image // feature`` (torchvision).
    Returns ``(anchors (N, 4), level (N,))``.
    """
    img_h, img_w = image_size
    parts, levels = [], []
    for lvl, (h, w) in enumerate(feature_sizes):
        sy, sx = (img_h // h, img_w // w) if strides is None else strides[lvl]
        base = None if base_sizes is None else float(base_sizes[lvl])
        oy = offset_pixels(center_offset, float(sy), img_h, base)
        ox = offset_pixels(center_offset, float(sx), img_w, base)
        knobs = dict(ratio_def=ratio_def, order=order, rounding=rounding, plus_one=plus_one, dtype=dtype,
                     base_size=base if base is not None else float(sx))
        if rounding == "mmdet_legacy":              # the rounding needs the template at its centre
            cell, oy, ox = cell_anchors(sizes[lvl], aspect_ratios[lvl], center=ox, **knobs), 0.0, 0.0
        else:
            cell = cell_anchors(sizes[lvl], aspect_ratios[lvl], **knobs)
        parts.append(_grid(cell, h, w, float(sy), float(sx), oy, ox))
        levels += [lvl] * len(parts[-1])
    return np.concatenate(parts).reshape(-1, 4), np.array(levels, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# SSD default boxes (SSD paper section 2.2; torchvision DefaultBoxGenerator; TF create_ssd_anchors)
# --------------------------------------------------------------------------------------------------

def ssd_shapes(k, s_k, s_next, ratios, *, layout="pairs", skip_unit_ratio=False, reduce_lowest=False,
               interpolated_ratio=1.0):
    """Relative ``(w, h)`` of the default boxes of level ``k`` (Python floats)."""
    if layout == "pairs":                           # torchvision, Caffe, mmdet
        shapes = [(s_k, s_k)]                       # the square of side s_k
        if s_next is not None:
            s_prime = math.sqrt(s_k * s_next)       # and of side sqrt(s_k * s_{k+1})
            shapes.append((s_prime, s_prime))
        for a in ratios:
            if skip_unit_ratio and abs(a - 1.0) < 1e-6:
                continue
            w, h = s_k * math.sqrt(a), s_k / math.sqrt(a)
            shapes += [(w, h), (h, w)]              # the wide box, then the tall one
        return shapes
    if k == 0 and reduce_lowest:                    # TF reduce_boxes_in_lowest_layer
        specs = [(0.1, 1.0), (s_k, 2.0), (s_k, 0.5)]
    else:                                           # TF: one box per listed ratio, then the extra one
        specs = [(s_k, a) for a in ratios]
        if interpolated_ratio > 0 and s_next is not None:
            specs.append((math.sqrt(s_k * s_next), interpolated_ratio))
    return [(sc * math.sqrt(a), sc / math.sqrt(a)) for sc, a in specs]


def ssd_default_boxes(image_size, feature_sizes, scales, aspect_ratios, *, steps=None, clip=True,
                      clip_mode="wh", offset=0.5, min_sizes=None, max_sizes=None, size_reference="image",
                      normalized=False, dtype=np.float64, **shape_knobs):
    """Default boxes of every level, xyxy pixels, rows (level, y, x, a).

    ``scales``: L + 1 relative scales (``s_k`` and ``s_{k+1}``), or ``min_sizes`` / ``max_sizes``
    (Caffe pixel sizes; ``max_sizes=None``: no extra square); ``feature_sizes``: (H_k, W_k) pairs.
    """
    t = np.dtype(dtype).type
    img_h, img_w = image_size
    zero, one = t(0), t(1)
    out = []
    for k, (fh, fw) in enumerate(feature_sizes):
        if min_sizes is not None:
            s_k, s_next = float(min_sizes[k]), None if max_sizes is None else float(max_sizes[k])
        else:
            s_k, s_next = scales[k], scales[k + 1]
        shapes = []
        for w, h in ssd_shapes(k, s_k, s_next, aspect_ratios[k], **shape_knobs):
            if min_sizes is not None:               # Caffe: box_width / img_width
                w, h = w / float(img_w), h / float(img_h)
            elif size_reference == "min_side":      # TF: scaled by min(H, W) / W and min(H, W) / H
                m = float(min(img_h, img_w))
                w, h = w * (m / float(img_w)), h * (m / float(img_h))
            w, h = t(w), t(h)
            if clip and clip_mode == "wh":          # torchvision clamps the relative sizes to [0, 1]
                w, h = min(max(w, zero), one), min(max(h, zero), one)
            shapes.append((t(0.5) * w, t(0.5) * h))
        x_f = float(img_w) / float(steps[k]) if steps is not None else float(fw)
        y_f = float(img_h) / float(steps[k]) if steps is not None else float(fh)
        for i in range(fh):
            for j in range(fw):
                cx = (t(j) + t(offset)) / t(x_f)    # centre of cell (i, j) in [0, 1] units
                cy = (t(i) + t(offset)) / t(y_f)
                for half_w, half_h in shapes:
                    box = [cx - half_w, cy - half_h, cx + half_w, cy + half_h]
                    if clip and clip_mode == "corners":     # Caffe PriorBox clip, TF clip_window
                        box = [min(max(v, zero), one) for v in box]
                    if not normalized:
                        box = [box[0] * t(img_w), box[1] * t(img_h), box[2] * t(img_w), box[3] * t(img_h)]
                    out.append(box)
    return np.array(out, dtype=dtype).reshape(-1, 4)
