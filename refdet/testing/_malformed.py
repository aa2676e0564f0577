"""How the comparators of :mod:`refdet.testing` read what they compare.

A comparator holds a result *under test* (from another implementation) against refdet's. Whatever
that implementation returns -- ``None``, a string, a ragged list, fractional numbers where indices
are meant, an index out of range, a repeated index, a mask of 2s -- is a finding about it, so it
becomes an ``AssertionError`` that says what is malformed, never an ``IndexError``,
``OverflowError`` or NumPy's own text from inside the comparator. The options the caller passes
(thresholds, tolerances, names) are checked like any refdet argument: ``TypeError`` / ``ValueError``
naming the argument.
"""
from __future__ import annotations

import numpy as np

from refdet import _checks


def result_array(x, name, what):
    """``np.asarray(x)`` of a result under test (numbers only), else AssertionError naming ``name``."""
    if x is None or isinstance(x, (str, bytes, dict, set)):
        raise AssertionError(f"{name} is not an array of numbers ({what}); got {_checks._describe(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise AssertionError(f"{name} is not an array of numbers ({what}): {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise AssertionError(f"{name} must hold numbers ({what}); got dtype {arr.dtype}")
    return arr


def result_indices(x, name, *, n, what, low=0, unique=False):
    """A 1-D int64 array of indices in ``[low, n)`` from a result under test, else AssertionError.

    Integral floats (``[0.0, 2.0]``) are read as indices; a fraction, NaN, inf or a bool is malformed.
    """
    arr = result_array(x, name, what)
    if arr.dtype.kind == "b":
        raise AssertionError(f"{name} must hold integer indices ({what}); got booleans (a mask?)")
    if arr.ndim != 1:
        raise AssertionError(f"{name} must be 1-D ({what}); got shape {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AssertionError(f"{name}[{i}] = {arr[i].item()!r} is not an integer index ({what})")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        i = int(np.argmax(arr))
        raise AssertionError(f"{name}[{i}] = {arr[i]} is not {what} (valid: {low} .. {n - 1})")
    arr = arr.astype(np.int64, copy=False)
    out = (arr < low) | (arr >= n)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        valid = f"{low} .. {n - 1}" if n > low else "none: there is nothing to index"
        raise AssertionError(f"{name}[{i}] = {int(arr[i])} is not {what} (valid: {valid})")
    if unique and arr.size:
        vals, first, counts = np.unique(arr, return_index=True, return_counts=True)
        if (counts > 1).any():
            v = int(vals[counts > 1][0])
            where = np.flatnonzero(arr == v)[:2].tolist()
            raise AssertionError(f"{name} lists {v} more than once (positions {where}): {what} must be distinct")
    return arr


def result_mask(x, name, shape, what):
    """A bool array of ``shape`` from a result under test (bools, or 0/1 numbers), else AssertionError."""
    arr = result_array(x, name, what)
    if arr.shape != tuple(shape):
        raise AssertionError(f"{name} has shape {arr.shape}; expected {tuple(shape)} ({what})")
    if arr.dtype.kind != "b":
        ok = np.isin(arr, (0, 1))
        if not ok.all():
            i = tuple(int(v) for v in np.argwhere(~ok)[0])
            raise AssertionError(f"{name} is not a 0/1 mask ({what}): {arr[i].item()!r} at index {list(i)}")
    return arr.astype(bool)


def check_names(names, name="names"):
    """Two strings naming the compared arrays in messages."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (tuple, list)) or len(names) != 2 \
            or not all(isinstance(v, str) for v in names):
        raise TypeError(f"`{name}` must be a pair of strings (the two arrays' names); got {_checks._describe(names)}")
    return tuple(names)


def check_tolerance(x, name):
    """A finite real >= 0 (an absolute or relative tolerance, a ULP count)."""
    return _checks.check_positive(x, name, strict=False)
