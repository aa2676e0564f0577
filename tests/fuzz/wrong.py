"""Deliberately broken functions: the fuzz walk must report each of them (its self-test).

Each function breaks one promise of :mod:`tests.fuzz.runner` and :data:`EXPECTED` names the problem
the walk must report for it. ``python -m tests.fuzz.runner --selftest`` walks these instead of refdet;
``tests/test_fuzz_public.py::test_walk_reports_every_kind_of_broken_function`` checks the report.
"""
from __future__ import annotations

import numpy as np

from tests.fuzz.seeds import FuzzCase

_B = np.array([[0.0, 0.0, 4.0, 5.0], [1.0, 2.0, 6.0, 9.0], [3.0, 1.0, 8.0, 4.0]])


def crash_on_nan(boxes):
    """An IndexError on NaN (numpy's own failure leaking out)."""
    b = np.asarray(boxes, dtype=float)
    if np.isnan(b).any():
        return b[99]
    return b.sum()


def unnamed_error(boxes):
    """A ValueError that does not name the argument."""
    b = np.asarray(boxes, dtype=float)
    if (b < 0).any():
        raise ValueError("something is negative")
    return b.sum()


def nan_for_zero_width(boxes):
    """NaN for a zero-width box: finite input, NaN answer."""
    b = np.asarray(boxes, dtype=float)
    w = b[:, 2] - b[:, 0]
    with np.errstate(all="ignore"):
        return (b[:, 3] - b[:, 1]) / w * w


def modifies_input(boxes):
    """Clips the caller's array in place."""
    b = np.asarray(boxes)
    if b.flags.writeable and b.dtype.kind == "f":
        np.clip(b, 0.0, 5.0, out=b)
    return np.array(b, dtype=float, copy=True)


def nondeterministic(boxes):
    """Adds fresh noise: two identical calls answer differently."""
    return np.asarray(boxes, dtype=float) + np.random.default_rng().random()


def layout_dependent(boxes):
    """The answer follows the memory order (ravel order='K')."""
    b = np.asarray(boxes, dtype=float)
    return b.ravel(order="K")[:4].copy()


def allocates(n=4):
    """Allocates n float64 before any check: n = 10**9 needs 8 GB (MemoryError under the cap)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"`n` must be an int; got {n!r}")
    a = np.ones(abs(n))
    return float(a.sum())


def hangs(n=3):
    """A Python loop n times: n = 10**9 does not return within the time limit."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"`n` must be an int; got {n!r}")
    s = 0
    for i in range(abs(n) * 1000):
        s += i
    return s


def accepts_any_threshold(boxes, iou_threshold=0.5):
    """An IoU threshold of 1.5 or NaN accepted."""
    return np.asarray(boxes, dtype=float)[:, 0] > float(iou_threshold)


#: function -> the problem the walk must report for it
EXPECTED = {
    "crash_on_nan": "crash",
    "unnamed_error": "unnamed",
    "nan_for_zero_width": "nan",
    "modifies_input": "modified",
    "nondeterministic": "nondeterministic",
    "layout_dependent": "layout",
    "allocates": "crash",          # MemoryError under RLIMIT_AS
    "hangs": "hang",
    "accepts_any_threshold": "accepted",
}

CASES = [FuzzCase(f"wrong.{name}", (lambda r: ((), {"n": 4})) if name in ("allocates", "hangs")
                  else (lambda r: ((_B.copy(),), {})), fn=globals()[name]) for name in EXPECTED]
