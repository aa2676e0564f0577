"""Tiling: cell anchors copied to every cell of a feature map, in the order ``(y, x, a)``.

The anchor ``a`` of cell ``(y, x)`` is the template ``cell[a]`` shifted by
``(x * stride_x + offset_x, y * stride_y + offset_y)``; it sits in row ``(y * W + x) * A + a`` so that
a head's ``(A * C, H, W)`` output reshaped to ``(H * W * A, C)`` lines up with the anchors. The
readable version is :func:`refdet.reference.anchors.grid_anchors`.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks

__all__ = ["grid_anchors"]


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
    # centres: i * stride + offset, computed in float64 (int64 arange times the Python-float strides and
    # offsets; torch arange and int32*stride are exact here) then rounded once to the working dtype, as
    # torchvision adds an int32 shift to float32 anchors.
    xs = (np.arange(w) * sx + ox).astype(dt)                          # (W,)
    ys = (np.arange(h) * sy + oy).astype(dt)                          # (H,)
    A = cell.shape[0]
    if out is None:
        out = np.empty((h * w * A, 4), dtype=dt)
    # anchor (y, x, a) = (xs[x] + cell[a, 0], ys[y] + cell[a, 1], xs[x] + cell[a, 2], ys[y] + cell[a, 3]):
    # one addition per coordinate, exactly torchvision's shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4).
    # The x coordinates do not depend on y and the y coordinates not on x, so build one (W, A, 4) row,
    # broadcast it over the H rows, and overwrite the y coordinates with the (H, A, 2) y part: long
    # contiguous copies instead of a broadcast add with an inner loop of length 4 (6x faster).
    row = np.repeat(cell[None], w, axis=0)                                  # (W, A, 4), dtype of cell
    row[:, :, 0::2] += xs[:, None, None]                                    # x1, x2 (y1, y2 overwritten below)
    ycol = ys[:, None, None] + cell[None, :, 1::2]                          # (H, A, 2): y1, y2
    o = out.reshape(h, w, A, 4)
    o[...] = row[None]
    o[:, :, :, 1::2] = ycol[:, None]
    return out


def grid_anchors(cell: ArrayLike, feature_size: Union[int, Tuple[int, int]],
                 stride: Union[float, Tuple[float, float]], *, offset: Union[float, str] = 0.0,
                 max_elements: Optional[int] = None) -> np.ndarray:
    """Tile cell anchors over an ``H x W`` feature map.

    Reference: :func:`refdet.reference.anchors.grid_anchors` (a loop over ``y``, ``x``, ``a``); tests
    hold the two bit-equal.

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
    max_elements : int, optional
        Cap on the elements of the result (``H * W * A * 4``); default
        :data:`refdet._checks.MAX_ELEMENTS` (2**28). A larger grid is a ValueError naming
        ``feature_size`` before anything is allocated.

    Returns
    -------
    ndarray, shape (H * W * A, 4)
        In the working dtype of ``cell`` (float32 stays float32).

    Examples
    --------
    The seed's RPN: 9 cell anchors over a 50 x 50 map of stride 16 give 22,500 anchors; row
    ``(y * 50 + x) * 9 + a``.

    >>> from refdet.anchors import cell_anchors
    >>> cell = cell_anchors((128, 256, 512), (0.5, 1.0, 2.0))
    >>> anchors = grid_anchors(cell, (50, 50), 16)
    >>> anchors.shape
    (22500, 4)
    >>> anchors[[0, 9]]                 # anchor 0 of cells (0, 0) and (0, 1): shifted by 16 in x
    array([[-91., -45.,  91.,  45.],
           [-75., -45., 107.,  45.]])
    """
    c = _checks.as_boxes(cell, "cell")
    (h, w), = _checks.as_feature_sizes([feature_size], "feature_size")
    sy, sx = _checks.as_stride_pair(stride)
    _checks.check_allocation(h * w * c.shape[0] * 4, c.dtype.itemsize, f"{h} x {w} cells x {c.shape[0]} anchors "
                             f"x 4 coordinates", name="feature_size", limit=max_elements)
    oy = _offset_pixels(offset, sy)
    ox = _offset_pixels(offset, sx)
    return _tile(c, h, w, sy, sx, oy, ox)
