"""IoU and the GIoU / DIoU / CIoU formulas, one pair of boxes at a time.

The readable version of :mod:`refdet.iou`: each function takes two boxes ``a``, ``b`` (rows
``x1, y1, x2, y2`` of a NumPy array: NumPy scalars keep float32 arithmetic in float32, and a division
by zero gives inf or NaN as in the fast path, where Python floats would raise) and computes the
paper's formula in the order of operations of ``torchvision.ops.boxes``. ``pairwise`` and ``paired``
are the loops over pairs.
Tests hold :mod:`refdet.iou` equal to these (bit for bit, except where an arctangent is involved).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Box = Sequence[float]    # x1, y1, x2, y2: a row of an array (NumPy scalars)


def area(a: Box) -> float:
    """Width times height, ``(x2 - x1) * (y2 - y1)``."""
    return (a[2] - a[0]) * (a[3] - a[1])


def intersection(a: Box, b: Box) -> float:
    """Area of the overlap: the overlap's width and height, each clamped at 0."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def union(a: Box, b: Box) -> float:
    """``area(a) + area(b) - intersection`` (the areas are added first)."""
    return (area(a) + area(b)) - intersection(a, b)


def iou(a: Box, b: Box) -> float:
    """Jaccard index ``I / U`` (0/0 = NaN for two degenerate boxes, as torchvision)."""
    return intersection(a, b) / union(a, b)


def enclosing_box(a: Box, b: Box) -> tuple:
    """Width and height of the smallest box containing both, each clamped at 0."""
    return (max(0, max(a[2], b[2]) - min(a[0], b[0])),
            max(0, max(a[3], b[3]) - min(a[1], b[1])))


def giou(a: Box, b: Box) -> float:
    """Generalized IoU (Rezatofighi et al. 2019): ``IoU - (C - U) / C``, C = enclosing area."""
    w, h = enclosing_box(a, b)
    c = w * h
    return iou(a, b) - (c - union(a, b)) / c


def diou(a: Box, b: Box, eps: float = 0.0) -> float:
    """Distance IoU (Zheng et al. 2020): ``IoU - rho^2 / (c^2 + eps)``; rho is the distance of the
    centres, c the diagonal of the enclosing box."""
    rho2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    w, h = enclosing_box(a, b)
    c2 = w ** 2 + h ** 2 + eps
    return iou(a, b) - rho2 / c2


def ciou(a: Box, b: Box, eps: float = 0.0, atan: Callable = np.arctan) -> float:
    """Complete IoU (Zheng et al. 2020): ``DIoU - alpha v`` with the aspect-ratio term
    ``v = 4/pi^2 (atan(wa/ha) - atan(wb/hb))^2`` and ``alpha = v / (1 - IoU + v + eps)``."""
    v = 4 / math.pi ** 2 * (atan((a[2] - a[0]) / (a[3] - a[1])) - atan((b[2] - b[0]) / (b[3] - b[1]))) ** 2
    alpha = v / (1 - iou(a, b) + v + eps)
    return diou(a, b, eps) - alpha * v


def _rows(boxes):
    """(N, 4) rows in the working dtype: float64, or float32 for float32/float16 boxes."""
    arr = np.asarray(boxes).reshape(-1, 4)
    return arr.astype(np.float32 if arr.dtype in (np.float16, np.float32) else np.float64)


def pairwise(f: Callable, boxes1: np.ndarray, boxes2: np.ndarray, **kw) -> np.ndarray:
    """The (N, M) array ``f(a, b)`` for every box ``a`` of ``boxes1`` and ``b`` of ``boxes2``."""
    b1, b2 = _rows(boxes1), _rows(boxes2)
    out = np.empty((len(b1), len(b2)), np.result_type(b1, b2))
    with np.errstate(all="ignore"):                 # atan(w / 0), as the fast path
        for i, a in enumerate(b1):
            for j, b in enumerate(b2):
                out[i, j] = f(a, b, **kw)
    return out


def paired(f: Callable, boxes1: np.ndarray, boxes2: np.ndarray, **kw) -> np.ndarray:
    """The (N,) array ``f(boxes1[i], boxes2[i])``."""
    b1, b2 = _rows(boxes1), _rows(boxes2)
    out = np.empty(len(b1), np.result_type(b1, b2))
    with np.errstate(all="ignore"):
        for i, (a, b) in enumerate(zip(b1, b2)):
            out[i] = f(a, b, **kw)
    return out


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU, shape (N, M): the loop over pairs (:func:`refdet.box_iou`, ``"torchvision"``)."""
    return pairwise(iou, boxes1, boxes2)
