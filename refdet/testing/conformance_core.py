"""The machinery every conformance check shares: the report, the runner that feeds golden and seeded
hypothesis cases through a comparison, and the helpers that name a likely cause.

A ``check_<op>`` (in :mod:`refdet.testing.conformance` and its sibling modules) builds a
``compare(case) -> (error, explanation or None)`` closure and hands it, with its golden cases and a
hypothesis strategy, to :class:`_Runner`; :func:`_finish` turns the report into an ``AssertionError``
when asked to. New check families import these from here (never from the hub
:mod:`refdet.testing.conformance`, which imports them all).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = ["ConformanceReport"]


# ---------------------------------------------------------------------------------------------------
# the report and the runner
# ---------------------------------------------------------------------------------------------------

@dataclass
class ConformanceReport:
    """What a ``check_<op>`` found.

    Attributes
    ----------
    op : str
    cases, agreeing : int
        Cases run and cases on which the implementation agreed with refdet.
    worst_error : float
        The largest disagreement seen, in ``unit`` (ULPs for floating results, differing elements
        for indices and labels, pixels for anchors); 0 when everything agreed exactly; NaN when the
        implementation answered NaN where refdet did not (a documented answer: the report says so).
    unit : str
    first_mismatch : str or None
        The explanation of the first disagreeing case (which case, then the comparator's text).
    convention : str
    """
    op: str
    cases: int = 0
    agreeing: int = 0
    worst_error: float = 0.0
    unit: str = ""
    first_mismatch: Optional[str] = None
    convention: str = "torchvision"
    failures: list = field(default_factory=list)

    @property
    def ok(self):
        return self.cases == self.agreeing

    def summary(self):
        """One line: op, cases, agreeing, worst error."""
        err = "-" if self.worst_error == 0 else f"{self.worst_error:.3g} {self.unit}"
        return f"{self.op}: {self.agreeing}/{self.cases} cases agree, worst error {err}"

    def __str__(self):
        lines = [f"{self.summary()} (convention {self.convention!r})"]
        if self.first_mismatch:
            lines.append("first mismatch: " + self.first_mismatch)
        return "\n".join(lines)

    __repr__ = __str__

    def as_dict(self):
        return dict(op=self.op, cases=self.cases, agreeing=self.agreeing, worst_error=self.worst_error,
                    unit=self.unit, convention=self.convention, ok=self.ok, first_mismatch=self.first_mismatch)


def _np(x):
    """A NumPy array from whatever the implementation returned (torch tensors included)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _short(case):
    """A compact printable form of a case (arrays abbreviated)."""
    def one(v):
        if isinstance(v, np.ndarray):
            if v.size <= 12:
                return f"array({v.tolist()}, {v.dtype})"
            return f"array(shape {v.shape}, {v.dtype})"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}={one(w)}" for k, w in v.items()) + "}"
        return repr(v)
    if isinstance(case, tuple):
        return "(" + ", ".join(one(v) for v in case) + ")"
    return one(case)


#: the conventions op whose profiles a check's ``convention`` names, where the check's op name differs
_CONVENTION_OPS = {"anchors": "pyramid_anchors", "yolo_nms": "yolo_non_max_suppression"}


class _Runner:
    """Runs golden and hypothesis cases through ``compare(case) -> (error, explanation or None)``."""

    def __init__(self, op, unit, convention, compare, progress=None):
        _checks.check_callable(progress, "progress")
        registered = _CONVENTION_OPS.get(op, op)
        if registered in conventions._REGISTRY:      # a bad `convention` is a usage error, not 100 mismatches
            conventions.resolve(registered, convention)
        self.report = ConformanceReport(op, unit=unit, convention=convention)
        self.compare = compare
        self.progress = progress

    def one(self, label, case):
        rep = self.report
        rep.cases += 1
        try:
            err, msg = self.compare(case)
        except AssertionError as exc:        # a comparator's explanation
            err, msg = math.inf, str(exc)
        except Exception as exc:             # the implementation under test crashed
            err, msg = math.inf, f"the implementation raised {type(exc).__name__}: {exc}"
        if msg is None:
            rep.agreeing += 1
        else:
            rep.failures.append(label)
            if rep.first_mismatch is None:
                rep.first_mismatch = f"{label}\n  input: {_short(case)}\n{msg}"
        if err is not None and (err > rep.worst_error or (np.isnan(err))):
            rep.worst_error = float(err)
        if self.progress is not None:
            self.progress(rep)

    def run(self, golden, strategy, n_cases, seed):
        # a case costs a call of the implementation: refuse a count no run could finish
        n_cases = _checks.check_int(n_cases, "n_cases", low=0)
        _checks.check_allocation(n_cases, 8, "hypothesis cases", name="n_cases")
        seed = _checks.check_int(seed, "seed")
        for label, case in golden:
            self.one(f"golden case '{label}'", case)
        if n_cases and strategy is not None:
            _hypothesis_cases(strategy, n_cases, seed, self.one)
        return self.report


def _hypothesis_cases(strategy, n, seed, body):
    """Draw up to ``n`` examples of ``strategy`` with hypothesis, deterministically from ``seed``.

    No shrinking and no example database: every case is handed to ``body(label, case)``, which
    records (never raises) the comparison, so the run is the same on every machine.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    counter = [0]

    @hseed(int(seed))
    @settings(max_examples=int(n), database=None, deadline=None, derandomize=False, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(strategy)
    def run(case):
        counter[0] += 1
        body(f"hypothesis case #{counter[0]} (seed {seed})", case)

    run()


def _finish(report, raise_on_failure):
    if _checks.check_bool(raise_on_failure, "raise_on_failure") and not report.ok:
        raise AssertionError(str(report))
    return report


def _variant_cause(op, got, args, kwargs, convention, fn=None, extra=(), equal=None):
    """Lines naming the refdet variants (convention knobs, extras) that reproduce ``got``."""
    from refdet.testing.compare_floats import float_variants

    variants = float_variants(op, args, kwargs, convention=convention, fn=fn, extra=extra)
    equal = equal or (lambda a, b: a.shape == b.shape and np.array_equal(a, b))
    hits = [k for k, v in variants.items() if equal(got, v)]
    if hits:
        return [f"  likely cause: the implementation behaves like refdet's {op} with {hits[0]}"] + \
            ([f"  (also reproduced by: {'; '.join(hits[1:4])})"] if len(hits) > 1 else [])
    return []


# ---------------------------------------------------------------------------------------------------
# naming the variant that reproduces a result (the YOLO family's checks)
# ---------------------------------------------------------------------------------------------------

def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _scale_tol(expected, dtype, c=16):
    """``c`` machine epsilons of the input precision times the largest magnitude (a sum of terms up to
    that size may round differently in another order of operations)."""
    scale = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
    return c * float(np.finfo(dtype).eps) * max(1.0, scale)


def _matches(got, candidate, tol):
    c = np.asarray(candidate, dtype=np.float64)
    return c.shape == got.shape and (c.size == 0 or bool(np.all(np.abs(got - c) <= tol)))


def _likely(got, variants, tol, expected_name=None):
    """Lines naming the variants that reproduce ``got``."""
    hits = [name for name, v in variants if v is not None and _matches(got, v, tol)]
    if not hits:
        return []
    out = [f"  likely cause: {hits[0]}"]
    if len(hits) > 1:
        out.append(f"  (also reproduced by: {'; '.join(hits[1:4])})")
    return out


def _level_location(row, feature_sizes, per_cell=1):
    """(level, y, x) of a flat row in (level, y, x) order."""
    start = 0
    for lvl, (h, w) in enumerate(feature_sizes):
        n = h * w * per_cell
        if row < start + n:
            cell = (row - start) // per_cell
            return lvl, cell // w, cell % w
        start += n
    return None


def _index_error(got, expected):
    """How far two index lists are apart: the length difference plus the differing common positions."""
    m = min(len(got), len(expected))
    return float(abs(len(got) - len(expected)) + int(np.sum(got[:m] != expected[:m])))


def _first_diff(got, expected):
    """The first position where two index lists differ (the shorter length if one is a prefix)."""
    m = min(len(got), len(expected))
    d = np.flatnonzero(got[:m] != expected[:m])
    return int(d[0]) if d.size else m
