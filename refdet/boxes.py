"""Box formats, conversion, area, clipping, the small-box filter and the inside-image mask.

Boxes are ``(N, 4)`` arrays. The default format is ``"xyxy"`` = ``(x1, y1, x2, y2)`` in continuous
coordinates: a box's width is ``x2 - x1`` (torchvision, detectron2, mmdet >= 2, TF, ONNX). The legacy
"+1" pixel convention of py-faster-rcnn / Detectron1 (``w = x2 - x1 + 1``: a box is a set of inclusive
integer pixels) is available through ``convention="caffe"`` or ``plus_one=True``.

Dtypes: float64 in -> float64 math; float32 in -> float32 math in torchvision's order of operations;
float16 is computed in float32; integer and bool boxes become float64.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks
from refdet import conventions

Convention = Union[str, conventions.Profile]

__all__ = [
    "BOX_FORMATS",
    "box_convert",
    "box_area",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "boxes_inside_image",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")

_PLUS_ONE = conventions.flag(
    "box widths are x2 - x1 + 1 (legacy inclusive pixels) instead of x2 - x1",
    source="py-faster-rcnn lib/utils/bbox.pyx and lib/fast_rcnn/bbox_transform.py; Detectron1 "
           "detectron/utils/boxes.py boxes_area")

conventions.register(
    "box_area",
    {
        "torchvision": {"plus_one": False},
        "detectron2": {"plus_one": False},
        "mmdet": {"plus_one": False},
        "caffe": {"plus_one": True},
        "tf": {"plus_one": False},
        "onnx": {"plus_one": False},
        "paper": {"plus_one": False},
    },
    knobs={"plus_one": _PLUS_ONE},
    doc="torchvision ops/boxes.py box_area; py-faster-rcnn lib/utils/bbox.pyx; Detectron1 boxes_area.",
)

conventions.register(
    "clip_boxes_to_image",
    {
        "torchvision": {"plus_one": False},
        "detectron2": {"plus_one": False},
        "mmdet": {"plus_one": False},
        "caffe": {"plus_one": True},
        "tf": {"plus_one": False},
        "onnx": {"plus_one": False},
    },
    knobs={"plus_one": conventions.flag(
        "clip x to [0, W - 1] and y to [0, H - 1] (legacy) instead of [0, W] and [0, H]",
        source="py-faster-rcnn lib/fast_rcnn/bbox_transform.py clip_boxes; Detectron1 "
               "utils/boxes.py clip_tiled_boxes; torchvision ops/boxes.py clip_boxes_to_image")},
    doc="torchvision clip_boxes_to_image (boxes.py 155-188), detectron2 Boxes.clip, mmdet delta2bbox "
        "clamp to [0, W]; py-faster-rcnn clip_boxes and Detectron1 clip_tiled_boxes clamp to W - 1.",
)

conventions.register(
    "remove_small_boxes",
    {
        "torchvision": {"plus_one": False, "strict": False},
        "detectron2": {"plus_one": False, "strict": True},
        "mmdet": {"plus_one": False, "strict": True},
        "caffe": {"plus_one": True, "strict": False},
    },
    knobs={"plus_one": _PLUS_ONE,
           "strict": conventions.flag(
               "keep w > min_size (strict) instead of w >= min_size",
               source="torchvision ops/boxes.py remove_small_boxes (>=); detectron2 structures/boxes.py "
                      "Boxes.nonempty (>); mmdet min_bbox_size filter (>); py-faster-rcnn "
                      "lib/rpn/proposal_layer.py _filter_boxes (>= with +1 widths)")},
    doc="torchvision remove_small_boxes keeps w >= min_size and h >= min_size; detectron2 "
        "Boxes.nonempty(threshold) and mmdet's min_bbox_size filter keep w > thr; py-faster-rcnn "
        "_filter_boxes keeps ws >= min_size with +1 widths.",
)


def _as_fmt(fmt, name):
    return _checks.check_choice(fmt, name, BOX_FORMATS)


def _to_xyxy(b, fmt):
    """(N, 4) in ``fmt`` -> a new (N, 4) xyxy array; torchvision's order of operations."""
    if fmt == "xyxy":
        return b.copy()
    if fmt == "yxyx":
        return b[:, [1, 0, 3, 2]]
    if fmt == "xywh":
        x, y, w, h = b.T
        return np.stack([x, y, x + w, y + h], axis=1)
    # cxcywh: torchvision _box_cxcywh_to_xyxy computes cx - 0.5 * w
    cx, cy, w, h = b.T
    half = b.dtype.type(0.5)
    return np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=1)


def _from_xyxy(b, fmt):
    if fmt == "xyxy":
        return b.copy()
    if fmt == "yxyx":
        return b[:, [1, 0, 3, 2]]
    x1, y1, x2, y2 = b.T
    if fmt == "xywh":
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    # cxcywh: torchvision _box_xyxy_to_cxcywh computes (x1 + x2) / 2
    two = b.dtype.type(2)
    return np.stack([(x1 + x2) / two, (y1 + y2) / two, x2 - x1, y2 - y1], axis=1)


def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> np.ndarray:
    """Convert boxes between formats.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
    in_fmt, out_fmt : {"xyxy", "xywh", "cxcywh", "yxyx"}
        ``xyxy`` corners (x1, y1, x2, y2); ``xywh`` top-left corner and size; ``cxcywh`` centre and
        size; ``yxyx`` corners in TF/ONNX order (y1, x1, y2, x2).

    Returns
    -------
    ndarray, shape (N, 4)
        A new array (never a view of ``boxes``) in the working dtype.

    Notes
    -----
    Conversions go through ``xyxy`` with torchvision's formulas (``cx - 0.5 * w`` and
    ``(x1 + x2) / 2``), so float32 results match ``torchvision.ops.box_convert`` bit for bit. The
    round trip ``box_convert(box_convert(b, "xyxy", f), f, "xyxy")`` is exact for ``xyxy``/``yxyx``
    and exact up to rounding for the others.

    Examples
    --------
    >>> box = np.array([[10., 20., 30., 60.]])          # x1, y1, x2, y2
    >>> box_convert(box, "xyxy", "cxcywh")
    array([[20., 40., 20., 40.]])
    >>> box_convert(box, "xyxy", "xywh")
    array([[10., 20., 20., 40.]])
    """
    b = _checks.as_boxes(boxes)
    _as_fmt(in_fmt, "in_fmt")
    _as_fmt(out_fmt, "out_fmt")
    if in_fmt == out_fmt:
        return b.copy()
    return _from_xyxy(_to_xyxy(b, in_fmt), out_fmt)


@conventions.documented("box_area")
def box_area(boxes: ArrayLike, *, convention: Convention = "torchvision",
             plus_one: Optional[bool] = None) -> np.ndarray:
    """Area of each box.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), xyxy
    convention : str
        ``"caffe"`` uses +1 pixel widths; every other profile is continuous.
    plus_one : bool, optional
        Overrides the profile: ``(x2 - x1 + 1) * (y2 - y1 + 1)``.

    Returns
    -------
    ndarray, shape (N,)
        ``(x2 - x1) * (y2 - y1)``; float16 input is computed (and returned) in float32 because a
        300 x 300 box already overflows float16 (pytorch/vision#3371). No clamping: a box with
        x2 < x1 has a negative width and its "area" is whatever the product gives, as in torchvision.

    Examples
    --------
    >>> box_area(np.array([[10., 20., 30., 60.], [0., 0., 0., 5.]]))    # 20 * 40; a line has area 0
    array([800.,   0.])
    """
    s = conventions.resolve("box_area", convention, plus_one=plus_one)
    b = _checks.as_boxes(boxes)
    return _area(b, s["plus_one"])


def _area(b, plus_one):
    """(N, 4) xyxy in the working dtype -> (N,) areas, torchvision's order of operations."""
    if plus_one:
        one = b.dtype.type(1)
        return (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


@conventions.documented("clip_boxes_to_image")
def clip_boxes_to_image(boxes: ArrayLike, image_size: Tuple[int, int], *, convention: Convention = "torchvision",
                        plus_one: Optional[bool] = None) -> np.ndarray:
    """Clip boxes so they lie inside an image of ``image_size = (H, W)``.

    x is clamped to ``[0, W]`` and y to ``[0, H]`` (continuous), or to ``[0, W - 1]`` and
    ``[0, H - 1]`` under ``convention="caffe"`` / ``plus_one=True`` (py-faster-rcnn ``clip_boxes``).

    Returns
    -------
    ndarray, shape (N, 4)
        A new array; ``boxes`` is not modified.

    Examples
    --------
    ``image_size`` is (H, W): x is clipped to [0, W], y to [0, H].

    >>> clip_boxes_to_image(np.array([[-5., 10., 120., 90.]]), (80, 100))
    array([[  0.,  10., 100.,  80.]])
    """
    s = conventions.resolve("clip_boxes_to_image", convention, plus_one=plus_one)
    b = _checks.as_boxes(boxes)
    h, w = _checks.check_image_size(image_size)
    if s["plus_one"]:
        h, w = h - 1, w - 1
    out = np.empty_like(b)
    np.clip(b[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(b[:, 1::2], 0, h, out=out[:, 1::2])
    return out


@conventions.documented("remove_small_boxes")
def remove_small_boxes(boxes: ArrayLike, min_size: float, *, convention: Convention = "torchvision",
                       plus_one: Optional[bool] = None, strict: Optional[bool] = None) -> np.ndarray:
    """Indices of the boxes whose width and height both reach ``min_size``.

    torchvision keeps ``w >= min_size and h >= min_size`` (its RPN uses ``min_size=1e-3``);
    detectron2's ``nonempty`` and mmdet keep ``w > min_size`` (``strict=True``); py-faster-rcnn keeps
    ``ws >= min_size`` with +1 widths.

    Returns
    -------
    ndarray of int64, shape (K,)
        Increasing indices into ``boxes``.

    Notes
    -----
    ``min_size`` is compared in the boxes' working dtype (a float32 box width against
    ``float32(min_size)``), as torch compares a float32 tensor with a Python scalar.
    """
    s = conventions.resolve("remove_small_boxes", convention, plus_one=plus_one, strict=strict)
    b = _checks.as_boxes(boxes)
    m = _checks.check_real(min_size, "min_size")
    m = b.dtype.type(m)
    ws = b[:, 2] - b[:, 0]
    hs = b[:, 3] - b[:, 1]
    if s["plus_one"]:
        ws = ws + b.dtype.type(1)
        hs = hs + b.dtype.type(1)
    keep = (ws > m) & (hs > m) if s["strict"] else (ws >= m) & (hs >= m)
    return np.flatnonzero(keep).astype(np.int64)


def boxes_inside_image(boxes: ArrayLike, image_size: Tuple[int, int], *,
                       allowed_border: Optional[float] = 0) -> np.ndarray:
    """Mask of the boxes (anchors) that lie inside the image, up to ``allowed_border`` pixels.

    A box is inside when ``x1 >= -b``, ``y1 >= -b``, ``x2 < W + b`` and ``y2 < H + b`` with
    ``b = allowed_border``. The far edge is **strict** in every implementation that has this filter
    (py-faster-rcnn ``anchor_target_layer.py`` 109-115, detectron2 ``Boxes.inside_box``, mmdet
    ``anchor_inside_flags``): an anchor ending exactly on the image border at ``x2 = W`` is outside
    with ``allowed_border=0``.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), xyxy
    image_size : (H, W)
    allowed_border : float or None
        ``None`` or a negative value disables the filter (every box is inside), as detectron2's
        ``RPN.BOUNDARY_THRESH = -1`` does.

    Returns
    -------
    ndarray of bool, shape (N,)
    """
    b = _checks.as_boxes(boxes)
    h, w = _checks.check_image_size(image_size)
    if allowed_border is None:
        return np.ones(len(b), dtype=bool)
    ab = _checks.check_real(allowed_border, "allowed_border")
    if ab < 0:
        return np.ones(len(b), dtype=bool)
    return (b[:, 0] >= -ab) & (b[:, 1] >= -ab) & (b[:, 2] < w + ab) & (b[:, 3] < h + ab)
