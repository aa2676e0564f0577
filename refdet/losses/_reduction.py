"""Reductions, cache checks and the memory-layout rule shared by the loss modules (private).

Layout rule: every array a loss reads is made C-contiguous at the boundary (:func:`_c_order`), so
that a reduction sums in the same order, and gives the same bits, for C-ordered, Fortran-ordered,
strided and read-only views of the same values (NumPy's pairwise summation follows memory order).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refdet import _checks

REDUCTIONS = ("none", "mean", "sum")


def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` itself if it is C-contiguous, else a C-ordered copy (0-d arrays stay 0-d: they are always
    C-contiguous, so they never reach ``ascontiguousarray``, which would make them 1-d)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


class _ReduceInfo(NamedTuple):
    reduction: str
    shape: tuple
    count: int       # elements averaged over by "mean" (non-ignored ones for cross entropy)
    dtype: np.dtype


def _reduce(loss, reduction, count=None, empty_mean=float("nan")):
    """Apply ``reduction``; returns an array (0-d for mean/sum). ``count`` overrides the mean's
    denominator (cross entropy averages over the non-ignored elements only)."""
    if reduction == "none":
        return loss
    s = loss.sum()                                  # a float32/float64 array sums in its own dtype
    if reduction == "sum":
        return np.asarray(s)
    n = loss.size if count is None else count
    if n == 0:
        return np.asarray(empty_mean, dtype=loss.dtype)
    return np.asarray(s / loss.dtype.type(n))


def _reduce_backward(dloss, red, name="dloss", scalar_ok=False):
    """Upstream gradient of a reduced loss -> per-element factor with the loss's elementwise shape
    (or, with ``scalar_ok``, a 0-d scalar of the working dtype that broadcasts to it)."""
    d = _checks.as_float_array(dloss, name)
    if red.reduction == "none":
        if d.shape != red.shape:
            raise ValueError(f"`{name}` must have shape {red.shape} (reduction='none'); got {d.shape}")
        return _c_order(np.asarray(d, dtype=red.dtype))
    if d.size != 1:
        raise ValueError(f"`{name}` must be a scalar (reduction={red.reduction!r}); got shape {d.shape}")
    g = red.dtype.type(d.reshape(()))
    if red.reduction == "mean":
        g = g / red.dtype.type(max(red.count, 1))
    if scalar_ok:
        return g
    return np.full(red.shape, g)                    # g is a scalar of red.dtype: the array takes its dtype


def _check_cache(cache, cls, forward):
    if not isinstance(cache, cls):
        raise TypeError(f"`cache` must be the {cls.__name__} returned by {forward}; got {type(cache).__name__}")
    return cache


def _check_reduction(reduction):
    return _checks.check_choice(reduction, "reduction", REDUCTIONS)
