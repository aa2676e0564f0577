"""Anchors of a feature pyramid: octave sizes, one cell-anchor set per level tiled over its map.

:func:`pyramid_anchors` builds each level's :func:`~refdet.anchors.cell_anchors`, tiles them over the
level's ``H_l x W_l`` map (:func:`~refdet.anchors.grid_anchors`) and concatenates the levels, so the
row order is ``(level, y, x, a)``. The centre of the first cell, the octave sizes of RetinaNet and the
border filter of py-faster-rcnn's RPN are convention knobs (tables generated from the registry).
The readable version is :func:`refdet.reference.anchors.pyramid_anchors`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from refdet import _checks
from refdet import conventions
from refdet.anchors.cell import _CELL_DOC, _CELL_KNOBS, _CELL_PROFILES, _cell
from refdet.anchors.grid import _offset_pixels, _tile
from refdet.boxes import boxes_inside_image

__all__ = ["CENTER_OFFSETS", "octave_sizes", "pyramid_anchors", "anchors_inside_image"]

Convention = Union[str, conventions.Profile]

#: The named centre offsets (besides a fraction of the stride).
CENTER_OFFSETS = ("legacy", "tf_divisible")


def _check_center_offset(v):
    """A fraction of the stride (a real number) or one of :data:`CENTER_OFFSETS`."""
    if isinstance(v, str):
        if v not in CENTER_OFFSETS:
            raise ValueError(f"`center_offset` must be a number or one of 'legacy', 'tf_divisible'; got {v!r}")
        return v
    return _checks.check_real(v, "center_offset")


_PYRAMID_KNOBS = dict(_CELL_KNOBS)
_PYRAMID_KNOBS.update({
    "center_offset": conventions.option(
        "centre of the first cell: a fraction f of the stride (f * stride), 'legacy' = (stride - 1) / 2, "
        "'tf_divisible' = stride / 2 when the image side divides by the stride, else 0",
        check=_check_center_offset,
        source="torchvision anchor_utils.py grid_anchors (0, pytorch/vision#1765); detectron2 "
               "ANCHOR_GENERATOR.OFFSET (detectron2#378); py-faster-rcnn generate_anchors (7.5 = (16 - 1) / 2); "
               "TF MultiscaleGridAnchorGenerator"),
    "octave_truncate": conventions.flag(
        "with scales_per_octave: int(x * 2**(i/n)) instead of the float",
        source="torchvision models/detection/retinanet.py _default_anchorgen 50-53"),
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
    knobs={"truncate": conventions.flag(
        "int(x * 2**(i/n)) instead of the float",
        source="torchvision models/detection/retinanet.py _default_anchorgen 50-53")},
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
    knobs={"allowed_border": conventions.number(
        "None or < 0: keep every anchor; b >= 0: keep x1 >= -b, y1 >= -b, x2 < W + b, y2 < H + b",
        allow_none=True, source="py-faster-rcnn lib/rpn/anchor_target_layer.py 109-115")},
    doc="py-faster-rcnn anchor_target_layer.py 109-115 (allowed_border=0: anchors crossing the border are "
        "ignored in RPN training); torchvision does not filter; detectron2 RPN.BOUNDARY_THRESH = -1; "
        "mmdet configs set allowed_border=-1 (the function default is 0).",
)


@conventions.documented("octave_sizes")
def octave_sizes(base_sizes: Sequence[float], scales_per_octave: int = 3, *, convention: Convention = "torchvision",
                 truncate: Optional[bool] = None, max_elements: Optional[int] = None) -> List[Tuple[float, ...]]:
    """RetinaNet's octave sizes: ``(x * 2**(i / n) for i in range(n))`` for each base size ``x``.

    Reference: :func:`refdet.reference.anchors.octave_sizes`.

    torchvision truncates to int (``retinanet.py`` 50-53): 32 -> (32, 40, 50), 64 -> (64, 80, 101),
    128 -> (128, 161, 203), 256 -> (256, 322, 406), 512 -> (512, 645, 812); detectron2, mmdet,
    Detectron1 and TF keep floats (32, 40.3175, 50.7968).

    Parameters
    ----------
    base_sizes : sequence of float, length L
    scales_per_octave : int
    truncate : bool, optional
        Overrides the profile.
    max_elements : int, optional
        Cap on ``L * scales_per_octave`` (default :data:`refdet._checks.MAX_ELEMENTS`): a larger
        ``scales_per_octave`` is a ValueError before the loop starts.

    Returns
    -------
    list of L tuples of ``scales_per_octave`` floats
    """
    s = conventions.resolve("octave_sizes", convention, truncate=truncate)
    base = _checks.as_positive_vector(base_sizes, "base_sizes")
    n = _checks.check_int(scales_per_octave, "scales_per_octave", low=1)
    _checks.check_allocation(len(base) * n, 8, f"{len(base)} base sizes x {n} octave sizes",
                             name="scales_per_octave", limit=max_elements)
    out = []
    for x in base.tolist():
        row = tuple(x * 2 ** (i / n) for i in range(n))      # Python float math, as both libraries do
        if s["truncate"]:
            row = tuple(float(int(v)) for v in row)
        out.append(row)
    return out


def _per_level(x, L, name):
    """Sizes/ratios: a flat list shared by every level, or one list per level."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()  # a 0-d array is a number (len() of it would fail)
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


@conventions.documented("pyramid_anchors")
def pyramid_anchors(image_size: Tuple[int, int], feature_sizes: Sequence, strides: Optional[Sequence],
                    sizes: Sequence, aspect_ratios: Sequence, *, convention: Convention = "torchvision",
                    ratio_def: Optional[str] = None, order: Optional[str] = None, rounding: Optional[str] = None,
                    plus_one: Optional[bool] = None, center_offset: Union[float, str, None] = None,
                    octave_truncate: Optional[bool] = None, scales_per_octave: Optional[int] = None,
                    base_sizes: Optional[Sequence[float]] = None,
                    dtype: DTypeLike = np.float64, max_elements: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Anchors of every level of a feature pyramid (FPN RPN, RetinaNet P3-P7) or of one feature map.

    Reference: :func:`refdet.reference.anchors.pyramid_anchors` (cell anchors per level, shifted over
    each grid in loops); tests hold the two bit-equal under every convention.

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
    max_elements : int, optional
        Cap on the elements of the anchors (``sum_l H_l * W_l * A_l * 4``), default
        :data:`refdet._checks.MAX_ELEMENTS` (2**28): more is a ValueError naming ``feature_sizes``
        before anything is allocated.

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

    Examples
    --------
    Two levels (8 x 8 at stride 8 with 32-pixel anchors, 4 x 4 at stride 16 with 64-pixel ones), one
    square anchor per location; rows are ordered (level, y, x, a).

    >>> anchors, level = pyramid_anchors((64, 64), [(8, 8), (4, 4)], [8, 16], [32, 64], [1.0])
    >>> anchors.shape, np.bincount(level).tolist()
    ((80, 4), [64, 16])
    >>> anchors[[0, 64]]                # the first anchor of each level
    array([[-16., -16.,  16.,  16.],
           [-32., -32.,  32.,  32.]])
    """
    s = conventions.resolve("pyramid_anchors", convention, ratio_def=ratio_def, order=order,
                            rounding=rounding, plus_one=plus_one, center_offset=center_offset,
                            octave_truncate=octave_truncate)
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
        per_size = [np.array(r) for r in octave_sizes(base, scales_per_octave, truncate=s["octave_truncate"],
                                                      max_elements=max_elements)]
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

    counts = [h * w * len(per_size[i]) * len(per_ratio[i]) for i, (h, w) in enumerate(fs)]
    _checks.check_allocation(sum(counts) * 4, dt.itemsize, f"{sum(counts):,} anchors x 4 coordinates",
                             name="feature_sizes", limit=max_elements)
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
        center = 0.0
        if s["rounding"] == "mmdet_legacy":
            # the legacy rounding acts on absolute corners: put the centre in the template
            if oy != ox:
                raise ValueError(f"rounding 'mmdet_legacy' needs equal x/y offsets; level {lvl} has {(oy, ox)}")
            center, oy, ox = ox, 0.0, 0.0
        cell = _cell(per_size[lvl], per_ratio[lvl], s, dt, base_size=base, center=center)
        _tile(cell, h, w, sy, sx, oy, ox, out=anchors[ends[lvl] - counts[lvl]:ends[lvl]])
    level = np.arange(L, dtype=np.int64)  # pragma: no mutate (NumPy 2's arange default is int64 already; explicit for the contract)
    return anchors, np.repeat(level, counts)


@conventions.documented("anchors_inside_image")
def anchors_inside_image(anchors: ArrayLike, image_size: Tuple[int, int], *, convention: Convention = "torchvision",
                         allowed_border: Optional[float] = None) -> np.ndarray:
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
