"""Head outputs between their two layouts: channels ``(B, A*C, H, W)`` and one row per anchor
``(B, H*W*A, C)`` in the order of :func:`refdet.grid_anchors` (``(level, y, x, a)``).

A pure rearrangement (no arithmetic), shared by every head, the losses' callers and the exporters:
torchvision's ``permute_and_flatten`` / ``concat_box_prediction_layers``, detectron2's
``permute_to_N_HWA_K``, mmdet's ``permute(0, 2, 3, 1)``, and py-faster-rcnn's class-major 2A
softmax objectness.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np

from refdet import _checks
from refdet.heads._common import _per_level

__all__ = ["flatten_head_output", "unflatten_head_output"]

_LAYOUTS = ("anchor_major", "class_major")


def _flatten_one(x, a, name, per_location, layout):
    arr = _checks.as_array(x, name)
    if arr.ndim not in (3, 4):
        raise ValueError(f"`{name}` must be 3-D (A*C, H, W) or 4-D (B, A*C, H, W); got shape {arr.shape}")
    batched = arr.ndim == 4
    x4 = arr if batched else arr[None]
    b, ac, h, w = x4.shape
    if ac % a:
        raise ValueError(f"`{name}` channels ({ac}) must be a multiple of `num_anchors` ({a}); got shape {arr.shape}")
    c = ac // a
    out = np.empty((b, h, w, a, c), dtype=arr.dtype)
    if layout == "anchor_major":
        # (B, A, C, H, W) -> (B, H, W, A, C): channel a*C + c of location (y, x) -> row (y*W + x)*A + a
        out[...] = x4.reshape(b, a, c, h, w).transpose(0, 3, 4, 1, 2)
    else:
        # (B, C, A, H, W) -> (B, H, W, A, C): channel c*A + a (py-faster-rcnn's 2A softmax scores)
        out[...] = x4.reshape(b, c, a, h, w).transpose(0, 3, 4, 2, 1)
    out = out.reshape(b, h * w, a * c) if per_location else out.reshape(b, h * w * a, c)
    return out if batched else out[0]


def flatten_head_output(x: Union[np.ndarray, Sequence[np.ndarray]], num_anchors: Union[int, Sequence[int]], *,
                        per_location: bool = False, layout: str = "anchor_major") -> np.ndarray:
    """Rearrange head outputs from channels to one row per anchor.

    Parameters
    ----------
    x : ndarray, shape (A*C, H, W) or (B, A*C, H, W), or a list of such arrays (levels)
        Channel ``a*C + c`` holds value ``c`` (class logit, or delta ``c`` of dx, dy, dw, dh) of
        anchor ``a``.
    num_anchors : int, or sequence of int (one per level)
        A.
    per_location : bool
        Return one row per location instead: ``(H*W, A*C)`` (the same memory order; row ``y*W + x``,
        column ``a*C + c``).
    layout : {"anchor_major", "class_major"}
        How the channels are laid out: ``"anchor_major"``, channel ``a*C + c`` (torchvision
        ``permute_and_flatten``, detectron2, mmdet, and every box-delta output including
        py-faster-rcnn's ``rpn_bbox_pred``); ``"class_major"``, channel ``c*A + a``: py-faster-rcnn's
        2A softmax objectness ``rpn_cls_score`` (reshaped to ``(1, 2, A*H, W)``: channels ``[0, A)``
        background, ``[A, 2A)`` foreground), flattened to ``(H*W*A, 2)`` = (background, foreground).

    Returns
    -------
    ndarray, shape (H*W*A, C) or (B, H*W*A, C)
        Row ``(y*W + x)*A + a``, column ``c`` = ``x[..., a*C + c, y, x]``: the order ``(y, x, a)`` of
        :func:`refdet.grid_anchors`. For a list of levels the rows are concatenated level by level
        (``(level, y, x, a)``, torchvision's ``concat_box_prediction_layers`` / ``RetinaNetHead``).
        A new array; the dtype of ``x`` is kept (a pure rearrangement).

    Examples
    --------
    A 50 x 50 map with A = 9: the (1, 36, 50, 50) regression output is (2500, 36) per location and
    (22500, 4) per anchor; the (1, 9, 50, 50) objectness is (2500, 9) per location, (22500, 1) per
    anchor.

    >>> deltas = np.zeros((1, 36, 50, 50))
    >>> flatten_head_output(deltas, 9).shape, flatten_head_output(deltas, 9, per_location=True).shape
    ((1, 22500, 4), (1, 2500, 36))

    Which channel goes where, on a 2 x 3 map whose values are their own flat index (channel stride
    6): row 0 is anchor 0 of cell (0, 0) (channels 0-3), row 1 anchor 1 of the same cell (channels
    4-7), row 9 anchor 0 of cell (0, 1).

    >>> x = np.arange(36 * 2 * 3, dtype=float).reshape(1, 36, 2, 3)
    >>> flatten_head_output(x, 9)[0, [0, 1, 9]]
    array([[ 0.,  6., 12., 18.],
           [24., 30., 36., 42.],
           [ 1.,  7., 13., 19.]])
    """
    per_location = _checks.check_bool(per_location, "per_location")
    _checks.check_choice(layout, "layout", _LAYOUTS)
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("`x` must be an array or a non-empty list of levels; got an empty list")
        a_s = _per_level(num_anchors, len(x), "num_anchors")
        parts = [_flatten_one(xi, ai, f"x[{i}]", per_location, layout) for i, (xi, ai) in enumerate(zip(x, a_s))]
        nd = {p.ndim for p in parts}
        if len(nd) != 1:
            raise ValueError("every level of `x` must have the same number of dimensions")
        if len({p.shape[-1] for p in parts}) != 1 or len({p.shape[:-2] for p in parts}) != 1:
            raise ValueError(f"the levels of `x` must agree on the batch size and the per-row width; got "
                             f"{[p.shape for p in parts]}")
        return np.concatenate(parts, axis=-2)
    a = _checks.check_int(num_anchors, "num_anchors", low=1)
    return _flatten_one(x, a, "x", per_location, layout)


def unflatten_head_output(x: np.ndarray, num_anchors: Union[int, Sequence[int]], feature_sizes: Sequence,
                          *, layout: str = "anchor_major") -> Union[np.ndarray, List[np.ndarray]]:
    """Inverse of :func:`flatten_head_output` (e.g. to send a loss gradient back into a head).

    Parameters
    ----------
    x : ndarray, shape (N, C) or (B, N, C)
        One row per anchor in ``(level, y, x, a)`` order, ``N = sum_l H_l*W_l*A_l``.
    num_anchors : int, or sequence of int (one per level)
    feature_sizes : (H, W) or a list of (H, W) pairs (levels)
    layout : {"anchor_major", "class_major"}
        The channel layout to produce (see :func:`flatten_head_output`).

    Returns
    -------
    ndarray, shape (A*C, H, W) or (B, A*C, H, W); a list of them when ``feature_sizes`` is a list
    """
    _checks.check_choice(layout, "layout", _LAYOUTS)
    arr = _checks.as_array(x, "x")
    if arr.ndim not in (2, 3):
        raise ValueError(f"`x` must be 2-D (N, C) or 3-D (B, N, C); got shape {arr.shape}")
    many = isinstance(feature_sizes, list) or (
        isinstance(feature_sizes, tuple) and len(feature_sizes) > 0 and hasattr(feature_sizes[0], "__len__"))
    sizes = list(feature_sizes) if many else [feature_sizes]
    sizes = [_checks.check_pair(s, f"feature_sizes[{i}]" if many else "feature_sizes", low=1)
             for i, s in enumerate(sizes)]
    a_s = _per_level(num_anchors, len(sizes), "num_anchors")
    batched = arr.ndim == 3
    x3 = arr if batched else arr[None]
    b, n, c = x3.shape
    total = sum(h * w * a for (h, w), a in zip(sizes, a_s))
    if n != total:
        raise ValueError(f"`x` must have sum H*W*A = {total} rows for these `feature_sizes` and `num_anchors`; "
                         f"got {n}")
    outs, start = [], 0
    for (h, w), a in zip(sizes, a_s):
        part = x3[:, start:start + h * w * a].reshape(b, h, w, a, c)
        start += h * w * a
        if layout == "anchor_major":
            o = np.empty((b, a, c, h, w), dtype=arr.dtype)
            o[...] = part.transpose(0, 3, 4, 1, 2)
        else:
            o = np.empty((b, c, a, h, w), dtype=arr.dtype)
            o[...] = part.transpose(0, 4, 3, 1, 2)
        o = o.reshape(b, a * c, h, w)
        outs.append(o if batched else o[0])
    return outs if many else outs[0]
