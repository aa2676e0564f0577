"""Conformance checks: run your implementation of an op against refdet, inside your own tests.

    from refdet.testing import conformance

    def test_my_nms():
        conformance.check_nms(my_nms)                      # raises AssertionError with the explanation

    report = conformance.check_box_iou(my_iou, convention="detectron2", raise_on_failure=False)
    print(report)                                          # cases, agreeing, worst error, first mismatch

Every ``check_<op>(fn, ...)`` feeds ``fn`` the op's golden edge cases (empty inputs, degenerate
boxes, IoUs exactly on a threshold and one ulp past it, tied scores, exact zeros at a kink, deltas
at the decode clamp...) and then ``n_cases`` hypothesis-generated cases (strategies of
:mod:`refdet.testing.strategies`, driven by hypothesis with a fixed ``seed``: the same cases every
run), compares each result with refdet's under ``convention``, and returns a
:class:`ConformanceReport` (cases, agreeing, worst error, the first mismatch explained). With
``raise_on_failure=True`` (the default) a disagreement raises ``AssertionError`` carrying that
report; the explanation comes from refdet's comparators (:func:`refdet.testing.assert_nms_equal`,
:func:`~refdet.testing.assert_matches_equal`, :func:`~refdet.testing.assert_allclose_ulp`,
:func:`~refdet.testing.assert_anchors_equal`, :func:`~refdet.testing.assert_sample_valid`) and
names the likely cause (``>=`` instead of ``>``, tie order, +1 pixels, a missing clamp, ...).

Signatures expected from ``fn`` (NumPy arrays in; NumPy arrays, lists or torch tensors out):

=====================  =================================================================
check_nms              ``fn(boxes (N, 4), scores (N,), iou_threshold) -> keep (K,)``
check_batched_nms      ``fn(boxes, scores, idxs (N,), iou_threshold) -> keep (K,)``
check_box_iou          ``fn(boxes1 (N, 4), boxes2 (M, 4)) -> (N, M)`` (also generalized)
check_match            ``fn(iou (M, N)) -> matches (N,)`` (gt index, -1 negative, -2 ignored)
check_encode_decode    ``encode(boxes, anchors) -> deltas (N, 4)``,
                       ``decode(deltas, anchors) -> boxes (N, 4)``
check_anchors          ``fn(image_size, feature_sizes, strides, sizes, aspect_ratios) -> (N, 4)``
check_focal_loss       ``fn(logits, targets) -> loss`` (elementwise), ``grad(logits, targets,
                       dloss) -> dlogits``
check_relu             ``fn(x) -> y``, ``grad(x, dy) -> dx``
check_conv2d           ``fn(x, w, b, stride=, padding=, dilation=, groups=) -> y``
check_sample_balanced  ``fn(labels (N,)) -> (pos_mask, neg_mask)``
=====================  =================================================================

Inputs keep their dtype: float32 cases check float32 behaviour (refdet's float32 mode reproduces
the framework's order of operations), float64 cases the exact answer.

The checks drive hypothesis themselves (``@given`` with a fixed seed, no shrinking, no example
database). Call them from plain test functions; inside your own ``@given`` test, hypothesis refuses
nested ``@given`` unless the outer test suppresses ``HealthCheck.nested_given`` -- or pass
``n_cases=0`` there to run the golden cases only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = ["ConformanceReport", "CHECKS", "check_nms", "check_batched_nms", "check_box_iou",
           "check_generalized_box_iou", "check_match", "check_encode_decode", "check_encode", "check_decode",
           "check_anchors", "check_focal_loss", "check_relu", "check_conv2d", "check_sample_balanced"]


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
        if registered in conventions._REGISTRY:      # a bogus `convention` is a usage error, not 100 mismatches
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
# NMS
# ---------------------------------------------------------------------------------------------------

def _nms_golden(dtype):
    f = dtype
    sq = np.array([[0, 0, 10, 10]], f)
    return [
        ("empty input", (np.zeros((0, 4), f), np.zeros(0, f), 0.5)),
        ("one box", (sq.copy(), np.array([0.9], f), 0.5)),
        # IoU([0,0,10,10], [0,0,10,5]) = 50 / 100 = 0.5 exactly: kept by 'IoU > 0.5', suppressed by '>='
        ("IoU exactly at the threshold", (np.array([[0, 0, 10, 10], [0, 0, 10, 5]], f), np.array([0.9, 0.8], f), 0.5)),
        # IoU 0.5 against a threshold one float32 ulp below 0.5: suppressed by both rules
        ("IoU one ulp past the threshold", (np.array([[0, 0, 10, 10], [0, 0, 10, 5]], f), np.array([0.9, 0.8], f),
                                            float(np.nextafter(np.float32(0.5), np.float32(0))))),
        # three identical boxes with equal scores: the lowest index survives (stable descending sort)
        ("identical boxes, tied scores", (np.repeat(sq, 3, axis=0), np.full(3, 0.7, f), 0.5)),
        # disjoint boxes with equal scores: kept in index order
        ("disjoint boxes, tied scores", (np.array([[0, 0, 1, 1], [5, 5, 6, 6], [10, 10, 11, 11]], f),
                                         np.full(3, 0.5, f), 0.5)),
        # zero-area identical boxes: IoU 0/0 = NaN never suppresses (torchvision)
        ("degenerate boxes (NaN IoU)", (np.array([[3, 3, 3, 3], [3, 3, 3, 3]], f), np.array([0.9, 0.8], f), 0.5)),
        # touching boxes (IoU 0) at threshold 0: 'IoU > 0' keeps both
        ("touching boxes, threshold 0", (np.array([[0, 0, 2, 2], [2, 0, 4, 2]], f), np.array([0.6, 0.9], f), 0.0)),
    ]


def _explain_batched(got, expected, boxes, scores, idxs, thr):
    """Explain a batched-NMS difference inside the class of the first differing box."""
    from refdet.testing.compare_nms import explain_nms_difference

    m = min(len(got), len(expected))
    diff = np.flatnonzero(got[:m] != expected[:m])
    k = int(diff[0]) if diff.size else m
    pick = got[k] if k < len(got) else expected[k]
    if not (0 <= pick < len(idxs)):
        return f"batched NMS results differ at position {k}: index {int(pick)} is not a valid box index"
    c = idxs[pick].item() if hasattr(idxs[pick], "item") else idxs[pick]
    sub = np.flatnonzero(idxs == c)
    new = -np.ones(len(idxs), np.int64)
    new[sub] = np.arange(len(sub))
    g = np.array([new[j] for j in got if 0 <= j < len(idxs) and idxs[j] == c], np.int64)
    e = np.array([new[j] for j in expected if idxs[j] == c], np.int64)
    head = (f"batched NMS results differ: {len(got)} kept vs {len(expected)} expected, first at position {k} "
            f"(box {int(pick)}, class {c!r})")
    if np.array_equal(g, e):
        msg = head + (f"\n  within class {c!r} both agree: the classes are interleaved differently (the final "
                      "order must be by decreasing score over all classes)")
        if k < m and scores[got[k]] == scores[expected[k]]:
            msg += (f"\n  boxes {int(got[k])} and {int(expected[k])} have EQUAL scores: across classes, ties must "
                    "come lowest index first (a stable sort of the scores)")
        return msg
    inner = explain_nms_difference(g, e, boxes[sub], scores[sub], iou_threshold=thr)
    return (head + f"\n  within class {c!r} (boxes renumbered 0..{len(sub) - 1}; original indices "
            f"{sub[:12].tolist()}{' ...' if len(sub) > 12 else ''}):\n" + inner)


def _nms_compare(fn, convention, batched):
    from refdet.nms import batched_nms, nms
    from refdet.testing.compare_nms import explain_nms_difference

    op = "batched_nms" if batched else "nms"

    def compare(case):
        if batched:
            b, s, i, thr = case
            expected = batched_nms(b, s, i, thr, convention=convention)
            got = _np(fn(b.copy(), s.copy(), i.copy(), thr))
            args = (b, s, i, thr)
        else:
            b, s, thr = case
            expected = nms(b, s, thr, convention=convention)
            got = _np(fn(b.copy(), s.copy(), thr))
            args = (b, s, thr)
        got = got.astype(np.int64).ravel()
        if np.array_equal(got, expected):
            return 0.0, None
        if batched:
            msg = _explain_batched(got, expected, b, s, i, thr)
        else:
            msg = explain_nms_difference(got, expected, b, s, iou_threshold=thr)
        if msg:
            msg = (msg.replace("  got      ", "  yours    ").replace("  expected ", "  refdet   ")
                   .replace("got", "yours").replace("expected", "refdet"))
        n = max(len(got), len(expected))
        m = min(len(got), len(expected))
        err = float(n - m + int(np.sum(got[:m] != expected[:m])))
        lines = [msg] + _variant_cause(op, got, args, {}, convention)
        return err, "\n".join(lines)
    return compare


def check_nms(fn, *, convention="torchvision", n_cases=100, seed=0, dtype=np.float32, raise_on_failure=True,
              progress=None):
    """Check ``fn(boxes, scores, iou_threshold) -> keep`` against :func:`refdet.nms`.

    Parameters
    ----------
    fn : callable
        ``fn(boxes (N, 4) xyxy, scores (N,), iou_threshold: float) -> (K,) int indices``, highest
        score first.
    convention : str
        refdet profile to compare with (``"torchvision"``, ``"onnx"``, ``"caffe"``, ...).
    n_cases : int
        Hypothesis cases after the golden ones (0: golden cases only).
    seed : int
        Seeds hypothesis: the same cases on every run.
    dtype : float32 or float64
        Dtype of the boxes and scores handed to ``fn``.
    raise_on_failure : bool
        Raise ``AssertionError`` with the report when any case disagrees (default).
    progress : callable, optional
        Called with the report after every case.

    Returns
    -------
    ConformanceReport
        ``worst_error`` counts differing positions of the keep list.
    """
    from refdet.testing import strategies as rst

    dtype = _checks.check_float_dtype(dtype)
    r = _Runner("nms", "positions", convention, _nms_compare(fn, convention, False), progress)
    return _finish(r.run(_nms_golden(dtype), _nms_strategy(dtype), n_cases, seed), raise_on_failure)


def _nms_strategy(dtype):
    """``nms_inputs`` (grid boxes, tied scores, exact-threshold pairs) or clusters of overlapping boxes
    with tied scores at a threshold equal to one of the cluster's float32 IoUs."""
    from hypothesis import strategies as st

    from refdet.testing import strategies as rst

    @st.composite
    def clusters(draw):
        b, s = draw(rst.overlapping_box_sets(dtype=np.float64))
        thr = draw(st.sampled_from([0.3, 0.5, 0.7]))
        if len(b) >= 2 and draw(st.booleans()):
            i, j = draw(st.integers(0, len(b) - 1)), draw(st.integers(0, len(b) - 1))
            q = rst._iou32(b[i], b[j])
            thr = float(q) if np.isfinite(q) else thr
        return b.astype(dtype), s.astype(dtype), thr

    return st.one_of(rst.nms_inputs(max_n=24, dtype=dtype), clusters())


def check_batched_nms(fn, *, convention="torchvision", n_cases=100, seed=0, dtype=np.float32,
                      raise_on_failure=True, progress=None):
    """Check ``fn(boxes, scores, idxs, iou_threshold) -> keep`` against :func:`refdet.batched_nms`
    (class-aware NMS: boxes of different ``idxs`` never suppress each other). See :func:`check_nms`."""
    from hypothesis import strategies as st

    from refdet.testing import strategies as rst

    dtype = _checks.check_float_dtype(dtype)
    golden = [(name + ", one class", (b, s, np.zeros(len(s), np.int64), t)) for name, (b, s, t) in _nms_golden(dtype)]
    # disjoint boxes with equal scores in alternating classes: ties across classes come lowest index first
    golden.append(("tied scores across classes", (np.array([[0, 0, 1, 1], [5, 5, 6, 6], [10, 10, 11, 11],
                                                            [20, 20, 21, 21]], dtype), np.full(4, 0.5, dtype),
                                                  np.array([1, 0, 1, 0]), 0.5)))
    # the same box in two classes: both survive
    golden.append(("same box, two classes", (np.array([[0, 0, 10, 10]] * 2, dtype), np.array([0.9, 0.8], dtype),
                                              np.array([0, 1]), 0.5)))

    @st.composite
    def inputs(draw):
        b, s, t = draw(_nms_strategy(dtype))
        idx = np.array(draw(st.lists(st.integers(0, 2), min_size=len(s), max_size=len(s))), dtype=np.int64)
        return b, s, idx, t

    r = _Runner("batched_nms", "positions", convention, _nms_compare(fn, convention, True), progress)
    return _finish(r.run(golden, inputs(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# IoU
# ---------------------------------------------------------------------------------------------------

def _iou_golden():
    out = []
    for f in (np.float32, np.float64):
        n = np.dtype(f).name
        a = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 40]], f)
        b = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [2, 2, 4, 4], [0, 0, 10, 5], [-5, -5, 25, 25]], f)
        # identical (1), touching (0), contained (4/100), half (0.5), containing (100/900)
        out.append((f"identical, touching, contained and containing boxes ({n})", (a, b)))
        out.append((f"empty sets ({n})", (np.zeros((0, 4), f), b)))
        out.append((f"empty second set ({n})", (a, np.zeros((0, 4), f))))
        # zero-area boxes: IoU 0/0 under torchvision (NaN), 0 under guarded conventions
        out.append((f"degenerate boxes ({n})", (np.array([[3, 3, 3, 3], [0, 0, 0, 10]], f),
                                                np.array([[3, 3, 3, 3], [0, 0, 5, 10]], f))))
        # large coordinates: float32 products lose bits; the order of operations shows
        out.append((f"large coordinates ({n})", (np.array([[1000.5, 2000.25, 1800.75, 2900.5]], f),
                                                  np.array([[1100.25, 2100.5, 1900.5, 3000.75]], f))))
    return out


def _iou_strategy():
    from hypothesis import strategies as st

    from refdet.testing import strategies as rst

    @st.composite
    def pairs(draw):
        dt = draw(st.sampled_from([np.float32, np.float64]))
        a = draw(rst.box_sets(max_n=8, dtype=dt))
        b = draw(rst.box_sets(max_n=8, dtype=dt))
        if len(a) and len(b) and draw(st.booleans()):
            b[0] = a[0]
        return a, b
    return pairs()


def _pairwise_compare(fn, op, convention, max_ulps):
    import refdet

    from refdet.testing.compare_floats import explain_float_difference, ulp_distance

    ref = getattr(refdet, op)

    def compare(case):
        a, b = case
        expected = ref(a, b, convention=convention)
        got = _np(fn(a.copy(), b.copy()))
        msg = explain_float_difference(got, expected, max_ulps=max_ulps, op=op, args=(a, b), convention=convention,
                                       names=("yours", "refdet"))
        if got.shape != expected.shape:
            return math.inf, msg
        d = ulp_distance(got, expected, expected.dtype) if expected.size else np.zeros(0)
        err = float(d.max()) if d.size else 0.0
        if msg is not None and d.size:
            i, j = np.unravel_index(int(np.argmax(d)), d.shape)
            msg += f"\n  at the worst element: boxes1[{i}] = {a[i].tolist()}, boxes2[{j}] = {b[j].tolist()}"
        return err, msg
    return compare


def check_box_iou(fn, *, convention="torchvision", max_ulps=4, n_cases=100, seed=0, raise_on_failure=True,
                  progress=None):
    """Check ``fn(boxes1, boxes2) -> (N, M) IoU`` against :func:`refdet.box_iou`.

    Float32 and float64 cases; elements agree within ``max_ulps`` ULPs of the input precision, NaN
    only where refdet has NaN (torchvision: 0/0 for zero-area boxes). A mismatch names the
    convention knob (``plus_one``, ``guard``, ...) or the float64-math variant that reproduces yours.
    ``worst_error`` is in ULPs.
    """
    r = _Runner("box_iou", "ULPs", convention, _pairwise_compare(fn, "box_iou", convention, max_ulps), progress)
    return _finish(r.run(_iou_golden(), _iou_strategy(), n_cases, seed), raise_on_failure)


def check_generalized_box_iou(fn, *, convention="torchvision", max_ulps=4, n_cases=100, seed=0,
                              raise_on_failure=True, progress=None):
    """Check ``fn(boxes1, boxes2) -> (N, M) GIoU`` against :func:`refdet.generalized_box_iou`
    (see :func:`check_box_iou`)."""
    r = _Runner("generalized_box_iou", "ULPs", convention,
                _pairwise_compare(fn, "generalized_box_iou", convention, max_ulps), progress)
    return _finish(r.run(_iou_golden(), _iou_strategy(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------------------------------

def check_match(fn, *, high=0.7, low=0.3, allow_low_quality_matches=True, convention="torchvision", n_cases=100,
                seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(iou (M, N)) -> matches (N,)`` against :func:`refdet.match`.

    ``matches`` uses torchvision's encoding: gt index, -1 below ``low``, -2 between ``low`` and
    ``high``. Cases hit every tie rule (IoUs exactly on ``high`` / ``low`` and one ulp either side,
    argmax ties between gts, several anchors sharing a gt's best IoU, all-zero rows). A mismatch
    names the first differing anchor, its IoUs, the thresholds hit exactly and the refdet
    convention / low-quality mode that gives your answer. ``worst_error`` counts differing anchors.
    """
    from refdet.matcher import match
    from refdet.testing.compare_match import assert_matches_equal
    from refdet.testing import strategies as rst

    high = _checks.check_unit_threshold(high, "high")
    low = _checks.check_unit_threshold(low, "low")
    allow_low_quality_matches = _checks.check_bool(allow_low_quality_matches, "allow_low_quality_matches")

    def compare(q):
        expected = match(q, high=high, low=low, allow_low_quality_matches=allow_low_quality_matches,
                         convention=convention)
        got = _np(fn(q.copy())).astype(np.int64)
        if got.shape == expected.shape and np.array_equal(got, expected):
            return 0.0, None
        try:
            assert_matches_equal(got, expected, q, high=high, low=low,
                                 allow_low_quality_matches=allow_low_quality_matches, names=("yours", "refdet"))
        except AssertionError as exc:
            err = float(np.sum(got != expected)) if got.shape == expected.shape else math.inf
            return err, str(exc)
        return 0.0, None

    hi32, lo32 = np.float32(high), np.float32(low)
    golden = [
        # anchor 0 exactly at `high` (positive: >= high), anchor 1 exactly at `low` (-2: low <= iou < high),
        # anchor 2 one ulp below `low` (-1), anchor 3 one ulp below `high` (-2)
        ("IoUs exactly on the thresholds", np.array([[high, low, np.nextafter(low, 0), np.nextafter(high, 0)]])),
        ("the same, float32", np.array([[hi32, lo32, np.nextafter(lo32, np.float32(0)),
                                         np.nextafter(hi32, np.float32(0))]], np.float32)),
        # two gts tie for anchor 0: the first gt wins the argmax
        ("two gts tie for an anchor", np.array([[0.8, 0.1, 0.0], [0.8, 0.0, 0.2]])),
        # gt 1's best IoU 0.2 is shared by anchors 1 and 2: both become low-quality matches
        ("a gt's best IoU shared by two anchors", np.array([[0.9, 0.0, 0.0], [0.1, 0.2, 0.2]])),
        ("a gt overlapping nothing", np.array([[0.0, 0.0, 0.0], [0.5, 0.75, 0.1]])),
        ("no anchors", np.zeros((2, 0))),
    ]
    r = _Runner("match", "anchors", convention, compare, progress)
    strategy = rst.iou_matrices(thresholds=(low, high), max_n=30)
    return _finish(r.run(golden, strategy, n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# box coding
# ---------------------------------------------------------------------------------------------------

def _coder_tol(dtype, *arrays):
    """Absolute tolerance: 4 machine epsilons of the input precision times the coordinate scale (deltas
    near 0 have tiny ULPs, but their rounding error is relative to the coordinates they came from)."""
    scale = max([1.0] + [float(np.max(np.abs(a))) for a in arrays if np.size(a)])
    return 4 * float(np.finfo(dtype).eps) * scale


def check_encode_decode(encode=None, decode=None, *, weights=(1.0, 1.0, 1.0, 1.0), convention="torchvision",
                        max_ulps=4, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``encode(boxes, anchors) -> deltas`` and/or ``decode(deltas, anchors) -> boxes`` against
    :func:`refdet.encode_boxes` / :func:`refdet.decode_boxes` (with ``weights``).

    Float32 and float64 cases, deltas exactly at the decode clamp ``log(1000 / 16)`` and beyond it,
    zero deltas, identical boxes. Elements agree within ``max_ulps`` ULPs or 4 machine epsilons of
    the coordinate scale. A mismatch names the knob that reproduces yours (``clamp_mode='none'``,
    ``plus_one``, ``center``, ``weight_mode``...). Returns one report for ``encode_boxes`` (when
    given) and one for ``decode_boxes`` (when given): a tuple ``(encode_report, decode_report)``
    with ``None`` for the one not checked.
    """
    if encode is None and decode is None:
        raise TypeError("give `encode`, `decode` or both")
    reports = [None, None]
    if encode is not None:
        reports[0] = check_encode(encode, weights=weights, convention=convention, max_ulps=max_ulps,
                                  n_cases=n_cases, seed=seed, raise_on_failure=False, progress=progress)
    if decode is not None:
        reports[1] = check_decode(decode, weights=weights, convention=convention, max_ulps=max_ulps,
                                  n_cases=n_cases, seed=seed, raise_on_failure=False, progress=progress)
    bad = [r for r in reports if r is not None and not r.ok]
    if _checks.check_bool(raise_on_failure, "raise_on_failure") and bad:
        raise AssertionError("\n\n".join(str(r) for r in bad))
    return tuple(reports)


def _coder_compare(fn, op, weights, convention, max_ulps):
    import refdet

    from refdet.testing.compare_floats import explain_float_difference, ulp_distance

    ref = getattr(refdet, op)

    def compare(case):
        x, anchors = case
        expected = ref(x, anchors, weights=weights, convention=convention)
        got = _np(fn(x.copy(), anchors.copy()))
        tol = _coder_tol(expected.dtype, x, anchors, expected)
        msg = explain_float_difference(got, expected, max_ulps=max_ulps, atol=tol, op=op, args=(x, anchors),
                                       kwargs={"weights": weights}, convention=convention, names=("yours", "refdet"))
        if got.shape != expected.shape:
            return math.inf, msg
        d = ulp_distance(got, expected, expected.dtype) if expected.size else np.zeros(0)
        if msg is None:
            return 0.0, None
        i = int(np.unravel_index(int(np.argmax(d)), d.shape)[0]) if d.size else 0
        if d.size:
            msg += f"\n  at the worst row {i}: input {x[i].tolist()}, anchor {anchors[i].tolist()}"
        return float(d.max()) if d.size else 0.0, msg
    return compare


def _coder_golden(kind):
    out = []
    for f in (np.float64, np.float32):
        anchors = np.array([[0, 0, 16, 16], [10, 20, 42, 36], [-8, -8, 8, 8], [100, 50, 228, 306]], f)
        if kind == "encode":
            boxes = np.array([[0, 0, 16, 16], [12, 18, 40, 40], [-4, -10, 6, 10], [90, 60, 300, 290]], f)
            out.append((f"identical and shifted boxes ({np.dtype(f).name})", (boxes, anchors)))
        else:
            c = math.log(1000.0 / 16)
            deltas = np.array([[0, 0, 0, 0], [0.5, -0.25, c, -c], [0, 0, 8.0, 8.0], [1.0, 1.0, -8.0, 5.0]], f)
            # row 1 sits exactly at the clamp, row 2 beyond it (dw, dh = 8 -> clamped to log(1000/16)),
            # row 3 below -clamp (only mmdet clamps from below)
            out.append((f"deltas at and past the clamp log(1000/16) ({np.dtype(f).name})", (deltas, anchors)))
    return out


def _coder_strategy(kind):
    from hypothesis import strategies as st

    from refdet.testing import strategies as rst

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        if kind == "encode":
            b, a = draw(rst.aligned_box_sets(max_n=10, min_size=0.5))
            return b.astype(dt), a.astype(dt)
        a = draw(rst.box_sets(max_n=10, min_size=0.5, degenerate=False))
        d = draw(rst.regression_deltas(len(a)))
        return d.astype(dt), a.astype(dt)
    return cases()


def check_encode(fn, *, weights=(1.0, 1.0, 1.0, 1.0), convention="torchvision", max_ulps=4, n_cases=100, seed=0,
                 raise_on_failure=True, progress=None):
    """Check ``fn(boxes, anchors) -> deltas`` against :func:`refdet.encode_boxes` (see
    :func:`check_encode_decode`)."""
    r = _Runner("encode_boxes", "ULPs", convention, _coder_compare(fn, "encode_boxes", weights, convention, max_ulps),
                progress)
    return _finish(r.run(_coder_golden("encode"), _coder_strategy("encode"), n_cases, seed), raise_on_failure)


def check_decode(fn, *, weights=(1.0, 1.0, 1.0, 1.0), convention="torchvision", max_ulps=4, n_cases=100, seed=0,
                 raise_on_failure=True, progress=None):
    """Check ``fn(deltas, anchors) -> boxes`` against :func:`refdet.decode_boxes` (see
    :func:`check_encode_decode`)."""
    r = _Runner("decode_boxes", "ULPs", convention, _coder_compare(fn, "decode_boxes", weights, convention, max_ulps),
                progress)
    return _finish(r.run(_coder_golden("decode"), _coder_strategy("decode"), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# anchors
# ---------------------------------------------------------------------------------------------------

def check_anchors(fn, *, convention="torchvision", atol=1e-3, n_cases=60, seed=0, raise_on_failure=True,
                  progress=None):
    """Check ``fn(image_size, feature_sizes, strides, sizes, aspect_ratios) -> anchors (N, 4)`` against
    :func:`refdet.pyramid_anchors` (a returned tuple counts by its first element).

    Configurations have image sides divisible by every stride (so that torchvision's
    ``image // feature`` strides equal the given ones), odd sizes whose half lands on .5, several
    sizes and ratios per level. A mismatch names the level, location (y, x) and anchor a of the
    first differing row, by how much, and a constant shift of half a stride / a whole stride / a
    pixel. ``worst_error`` is in pixels.
    """
    from refdet.anchors import pyramid_anchors
    from refdet.testing.compare_anchors import explain_anchor_difference
    from refdet.testing import strategies as rst

    atol = _checks.check_positive(atol, "atol", strict=False)

    def compare(cfg):
        expected, _ = pyramid_anchors(cfg["image_size"], cfg["feature_sizes"], cfg["strides"], cfg["sizes"],
                                      cfg["aspect_ratios"], convention=convention)
        got = fn(cfg["image_size"], cfg["feature_sizes"], cfg["strides"], cfg["sizes"], cfg["aspect_ratios"])
        got = _np(got[0] if isinstance(got, tuple) else got).astype(np.float64)
        num = [len(s) * len(r) for s, r in zip(cfg["sizes"], cfg["aspect_ratios"])]
        msg = explain_anchor_difference(got, expected, feature_sizes=cfg["feature_sizes"], num_anchors=num,
                                        strides=cfg["strides"], atol=atol, config=cfg, convention=convention)
        if got.shape != expected.shape:
            return math.inf, msg
        return (float(np.abs(got - expected).max()) if got.size else 0.0), msg

    golden = [
        ("two levels, 3 ratios", dict(image_size=(64, 96), feature_sizes=[(8, 12), (4, 6)], strides=[8, 16],
                                      sizes=[(32,), (64,)], aspect_ratios=[(0.5, 1.0, 2.0)] * 2)),
        # size 33: half-width 16.5 -> torchvision rounds half to even (16 and 17 appear)
        ("odd sizes (rounding)", dict(image_size=(32, 32), feature_sizes=[(4, 4)], strides=[8],
                                      sizes=[(33, 45)], aspect_ratios=[(0.5, 1.0, 2.0)])),
        ("a 1 x 1 level", dict(image_size=(128, 128), feature_sizes=[(1, 1)], strides=[128], sizes=[(256,)],
                               aspect_ratios=[(1.0,)])),
    ]
    r = _Runner("anchors", "pixels", convention, compare, progress)
    return _finish(r.run(golden, rst.divisible_anchor_configs(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# focal loss
# ---------------------------------------------------------------------------------------------------

def _loss_tol(dtype):
    return (1e-4, 1e-6) if np.dtype(dtype) == np.float32 else (1e-7, 1e-10)


def check_focal_loss(fn, *, grad=None, alpha=0.25, gamma=2.0, n_cases=100, seed=0, raise_on_failure=True,
                     progress=None):
    """Check a sigmoid focal loss (Lin et al. 2017) against :func:`refdet.sigmoid_focal_loss_forward`.

    Parameters
    ----------
    fn : callable
        ``fn(logits, targets) -> loss``, elementwise (``reduction="none"``), with your ``alpha`` and
        ``gamma``.
    grad : callable, optional
        ``grad(logits, targets, dloss) -> dlogits``: the gradient of ``sum(loss * dloss)``; compared
        with :func:`refdet.sigmoid_focal_loss_backward`.
    alpha, gamma : float
        What refdet uses (``alpha < 0`` disables the weighting, torchvision's rule).

    Agreement: ``|yours - refdet| <= atol + rtol * |refdet|`` with (rtol, atol) = (1e-7, 1e-10) for
    float64, (1e-4, 1e-6) for float32. A mismatch names the variant that reproduces yours (no α, α
    on the wrong class, no focusing term). ``worst_error`` is in ULPs.
    """
    from hypothesis import strategies as st

    from refdet.losses import sigmoid_focal_loss_backward, sigmoid_focal_loss_forward
    from refdet.testing.compare_floats import explain_float_difference, ulp_distance

    alpha = _checks.check_focal_alpha(alpha, "alpha")
    gamma = _checks.check_positive(gamma, "gamma", strict=False)
    from refdet.testing import strategies as rst

    extra = [("alpha=-1: no alpha weighting (alpha_t missing)", {"alpha": -1}),
             (f"alpha={1 - alpha:g}: alpha applied to the negatives instead of the positives", {"alpha": 1 - alpha}),
             ("gamma=0: no focusing term (1 - p_t)**gamma", {"gamma": 0.0}),
             ("gamma=1", {"gamma": 1.0})]

    def fwd(x, t, **kw):
        return sigmoid_focal_loss_forward(x, t, **kw)[0]

    def bwd(x, t, dloss, **kw):
        return sigmoid_focal_loss_backward(dloss, sigmoid_focal_loss_forward(x, t, **kw)[1]).dlogits

    def compare(case):
        x, t, dloss = case
        rtol, atol = _loss_tol(x.dtype)
        errs, msgs = [0.0], []
        for name, ours, theirs, args, f in (
                ("forward", lambda: fwd(x, t, alpha=alpha, gamma=gamma), lambda: fn(x.copy(), t.copy()), (x, t), fwd),
                ("gradient", lambda: bwd(x, t, dloss, alpha=alpha, gamma=gamma),
                 (lambda: grad(x.copy(), t.copy(), dloss.copy())) if grad is not None else None, (x, t, dloss), bwd)):
            if theirs is None:
                continue
            expected = np.asarray(ours())
            got = _np(theirs())
            m = explain_float_difference(got, expected, rtol=rtol, atol=atol, max_ulps=4,
                                         op=f"sigmoid focal loss {name}", args=None, names=("yours", "refdet"))
            if m is None:
                continue
            if got.shape == expected.shape and expected.size:
                errs.append(float(ulp_distance(got, expected, expected.dtype).max()))
                hits = _variant_cause("sigmoid_focal_loss", got, args, {"alpha": alpha, "gamma": gamma}, "torchvision",
                                      fn=f, extra=extra,
                                      equal=lambda a, b: a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol))
                m += "\n" + "\n".join(hits) if hits else ""
                bad = np.argwhere(~np.isclose(got, expected, rtol=rtol, atol=atol))
                if bad.size:
                    k = tuple(bad[0])
                    m += f"\n  at {list(map(int, k))}: logit {float(x[k])!r}, target {float(t[k])!r}"
            else:
                errs.append(math.inf)
            msgs.append(m)
        return max(errs), ("\n".join(msgs) if msgs else None)

    def with_dloss(x, t):
        rng = np.random.default_rng(x.size)
        return x, t, rng.standard_normal(x.shape).astype(x.dtype)

    x0 = np.array([[0.0, 0.0, 2.0, -2.0, 17.0, -17.0, 30.0, -30.0]] * 2)
    t0 = np.array([[1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]])
    golden = [
        # logit 0: p = 1/2; target 1: 0.25 * (1/2)^2 * ln 2 = 0.0433217; target 0: 0.75 * 0.25 * ln 2 = 0.1299651
        ("logits 0, +-2, saturating +-17 and +-30 (float64)", with_dloss(x0, t0)),
        ("the same, float32", with_dloss(x0.astype(np.float32), t0.astype(np.float32))),
        ("empty", with_dloss(np.zeros((0, 3)), np.zeros((0, 3)))),
    ]

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        x = draw(rst.logits(max_dims=2, max_side=6))
        t = draw(rst.binary_targets(x.shape))
        return with_dloss(x.astype(dt), t.astype(dt))

    r = _Runner("sigmoid_focal_loss", "ULPs", "torchvision", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------

def check_relu(fn, *, grad=None, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x) -> relu(x)`` and ``grad(x, dy) -> dx`` against :func:`refdet.relu_forward` /
    :func:`refdet.relu_backward`: exact equality (ReLU has no rounding). Inputs contain exact zeros
    (and -0.0): refdet, torch and every framework use the subgradient ReLU'(0) = 0; a mismatch
    confined to x == 0 says so."""
    from refdet.layers import relu_backward, relu_forward
    from refdet.testing import strategies as rst

    def compare(case):
        x, dy = case
        msgs, err = [], 0.0
        y = relu_forward(x)[0]
        got = _np(fn(x.copy()))
        if got.shape != y.shape or not np.array_equal(got, y):
            bad = np.argwhere(got != y) if got.shape == y.shape else None
            m = f"relu forward differs: shape {got.shape} vs {y.shape}"
            if bad is not None and bad.size:
                k = tuple(bad[0])
                m = (f"relu forward differs at {len(bad)} elements; first at {list(map(int, k))}: x = {float(x[k])!r}, "
                     f"yours {float(got[k])!r}, refdet {float(y[k])!r}")
            msgs.append(m)
            err = math.inf if bad is None else float(len(bad))
        if grad is not None:
            dx = relu_backward(dy, relu_forward(x)[1]).dx
            g = _np(grad(x.copy(), dy.copy()))
            if g.shape != dx.shape or not np.array_equal(g, dx):
                if g.shape != dx.shape:
                    msgs.append(f"relu gradient has shape {g.shape}; x has shape {dx.shape}")
                    err = math.inf
                else:
                    bad = g != dx
                    k = tuple(int(v) for v in np.argwhere(bad)[0])
                    m = (f"relu gradient differs at {int(bad.sum())} elements; first at {list(k)}: x = {float(x[k])!r}, "
                         f"dy = {float(dy[k])!r}, yours {float(g[k])!r}, refdet {float(dx[k])!r}")
                    zero = x == 0
                    if np.all(zero[bad]):
                        if np.array_equal(g[bad], dy[bad]):
                            m += ("\n  every difference is at x == 0 exactly, where yours passes dy through: "
                                  "ReLU'(0) = 1; refdet (and torch, TF, ONNX) use the subgradient ReLU'(0) = 0 "
                                  "(write `x > 0`, not `x >= 0`)")
                        else:
                            m += "\n  every difference is at x == 0 exactly: the subgradient at the kink differs " \
                                 "(refdet uses ReLU'(0) = 0)"
                    msgs.append(m)
                    err = max(err, float(bad.sum()))
        return err, ("\n".join(msgs) if msgs else None)

    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        x = draw(rst.feature_maps(grid=0.5, max_side=5))
        return x, np.random.default_rng(x.size).standard_normal(x.shape)

    xg = np.array([[-2.0, -0.0, 0.0, 0.5, 3.0, 0.0]])
    golden = [("exact zeros, -0.0 and both signs", (xg, np.array([[1.0, 2.0, 3.0, 4.0, 5.0, -6.0]])))]
    r = _Runner("relu", "elements", "torchvision", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def check_conv2d(fn, *, dtype=np.float64, n_cases=40, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x, w, b, stride=, padding=, dilation=, groups=) -> y`` (NCHW, cross-correlation,
    PyTorch semantics) against :func:`refdet.conv2d_forward`.

    Inputs in ``dtype``; agreement within ``c * sum|x| * max|w|`` (the scale of the accumulation's
    rounding error) with c = 1e-10 for float64 and 1e-5 for float32 (refdet computes float32 in
    float32 too, but summation orders differ between kernels). A mismatch gives the output location (batch, channel, y, x) and recognises a flipped
    kernel (true convolution instead of cross-correlation). ``worst_error`` is the largest absolute
    difference.
    """
    from hypothesis import strategies as st

    from refdet.layers import conv2d_forward
    from refdet.testing import strategies as rst

    def compare(case):
        x, w, b, kw = case
        x, w = x.astype(dtype), w.astype(dtype)
        b = None if b is None else b.astype(dtype)
        y = conv2d_forward(x, w, b, **kw)[0]
        got = _np(fn(x.copy(), w.copy(), None if b is None else b.copy(), **kw))
        if got.shape != y.shape:
            return math.inf, f"output shape {got.shape}; refdet gives {y.shape} for {kw}"
        c = 1e-5 if np.dtype(dtype) == np.float32 else 1e-10
        tol = c * max(1.0, float(np.abs(x).sum() * np.abs(w).max()))
        diff = np.abs(got.astype(np.float64) - y)
        if not (diff > tol).any():
            return float(diff.max()) if diff.size else 0.0, None
        k = tuple(int(v) for v in np.unravel_index(int(np.argmax(diff)), diff.shape))
        m = (f"conv2d differs at {int((diff > tol).sum())} of {diff.size} outputs ({kw}); worst at (batch {k[0]}, "
             f"channel {k[1]}, y {k[2]}, x {k[3]}): yours {float(got[k])!r}, refdet {float(y[k])!r}")
        flipped = conv2d_forward(x, w[:, :, ::-1, ::-1].copy(), b, **kw)[0]
        if np.allclose(got, flipped, atol=tol):
            m += "\n  likely cause: yours flips the kernel (true convolution); PyTorch/ONNX conv is cross-correlation"
        return float(diff.max()), m

    @st.composite
    def cases(draw):
        cfg = draw(rst.conv_configs(max_side=7))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
        x = rng.standard_normal(cfg["x_shape"])
        w = rng.standard_normal(cfg["w_shape"])
        b = rng.standard_normal(cfg["w_shape"][0]) if draw(st.booleans()) else None
        kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
        return x, w, b, kw

    rng = np.random.default_rng(0)
    golden = [("3x3, padding 1, asymmetric kernel", (rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3)),
                                                     rng.standard_normal(3), dict(stride=1, padding=1, dilation=1, groups=1))),
              ("stride 2, groups 2, dilation 2", (rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((4, 2, 2, 3)),
                                                  None, dict(stride=2, padding=(1, 0), dilation=2, groups=2)))]
    r = _Runner("conv2d", "abs", "torchvision", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------------

def check_sample_balanced(fn, *, batch_size_per_image=256, positive_fraction=0.5, n_cases=60, seed=0,
                          raise_on_failure=True, progress=None):
    """Check a balanced positive/negative sampler ``fn(labels) -> (pos_mask, neg_mask)`` against the
    invariants of :func:`refdet.sample_balanced` (which anchors are drawn is random and not
    compared): disjoint masks, positives only where ``labels >= 1``, negatives only where
    ``labels == 0``, ``min(#pos, int(batch * fraction))`` positives and ``min(#neg, batch - #pos
    sampled)`` negatives. ``worst_error`` counts violations (cases)."""
    from refdet.testing.compare_match import assert_sample_valid
    from refdet.testing import strategies as rst

    batch_size_per_image = _checks.check_int(batch_size_per_image, "batch_size_per_image", low=0)
    _checks.check_allocation(batch_size_per_image, 8, "golden labels", name="batch_size_per_image")
    positive_fraction = _checks.check_probability(positive_fraction, "positive_fraction")

    def compare(labels):
        out = fn(labels.copy())
        pos, neg = (_np(v) for v in out)
        assert_sample_valid(labels, pos, neg, batch_size_per_image, positive_fraction)
        return 0.0, None

    golden = [
        ("all ignored", np.full(10, -1)),
        ("no positives", np.zeros(300, np.int64)),
        ("only positives", np.ones(300, np.int64)),
        ("exactly a batch", np.r_[np.ones(batch_size_per_image // 2), np.zeros(batch_size_per_image)].astype(np.int64)),
        ("empty", np.zeros(0, np.int64)),
    ]
    r = _Runner("sample_balanced", "violations", "torchvision", compare, progress)
    return _finish(r.run(golden, rst.sampler_labels(max_n=400), n_cases, seed), raise_on_failure)


#: op name (as used by ``refdet verify --op``) -> check function
CHECKS = {
    "nms": check_nms,
    "batched_nms": check_batched_nms,
    "box_iou": check_box_iou,
    "generalized_box_iou": check_generalized_box_iou,
    "match": check_match,
    "encode_boxes": check_encode,
    "decode_boxes": check_decode,
    "anchors": check_anchors,
    "focal_loss": check_focal_loss,
    "relu": check_relu,
    "conv2d": check_conv2d,
    "sample_balanced": check_sample_balanced,
}


# ---------------------------------------------------------------------------------------------------
# RoI operators, FPN level assignment, proposal selection (issue 14)
# ---------------------------------------------------------------------------------------------------
#
# ``fn`` signatures (torchvision's argument order):
#
# =======================  ================================================================================
# check_roi_align          ``fn(features (B, C, H, W), rois (K, 5), output_size (PH, PW), spatial_scale,
#                          sampling_ratio, aligned) -> (K, C, PH, PW)``
# check_roi_pool           ``fn(features, rois (K, 5), output_size, spatial_scale) -> (K, C, PH, PW)``
# check_assign_roi_levels  ``fn(boxes (N, 4)) -> levels (N,)`` counted from ``min_level`` (P2-P5: 0..3)
# check_filter_proposals   ``fn(proposals (B, N, 4), objectness (B, N), image_sizes, num_anchors_per_level)
#                          -> (boxes list of (P_i, 4), scores list of (P_i,))`` (test mode)
# =======================  ================================================================================

def _roi_tol(dtype):
    """(rtol, atol per unit of the largest |feature|) for RoI outputs: summation order is free."""
    return (2e-5, 2e-5) if np.dtype(dtype) == np.float32 else (1e-12, 1e-12)


def _roi_close(got, expected, scale):
    """(max abs difference, agree?) of two RoI outputs within :func:`_roi_tol`."""
    if got.shape != expected.shape:
        return math.inf, False
    if not expected.size:
        return 0.0, True
    rtol, atol = _roi_tol(expected.dtype)
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(e)):
        return math.inf, False
    ok = ~np.isnan(e)
    d = np.abs(g[ok] - e[ok])
    err = float(d.max()) if d.size else 0.0
    return err, bool(np.all(d <= atol * max(scale, 1.0) + rtol * np.abs(e[ok])))


def _roi_first_difference(got, expected, rois):
    """Text naming the first RoI / channel / bin whose value differs most."""
    if got.shape != expected.shape:
        return f"  output shape {got.shape}, refdet's {expected.shape}"
    d = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    d = np.where(np.isnan(d), np.inf, d)
    k, c, i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    return (f"  worst at RoI {k} = {rois[k].tolist()}, channel {c}, bin ({i}, {j}): yours {got[k, c, i, j]!r}, "
            f"refdet {expected[k, c, i, j]!r}")


def _explain_variants(got, variants, scale):
    """The ``likely cause`` line of the first variant (tried in order) that reproduces ``got``."""
    hits = []
    for cause, thunk in variants:
        try:
            v = thunk()
        except Exception:           # a variant refdet refuses (e.g. an invalid knob value for this input)
            continue
        if _roi_close(got, v, scale)[1]:
            hits.append(cause)
    if not hits:
        return []
    return [f"  likely cause: {hits[0]}"] + ([f"  (also reproduced by: {'; '.join(hits[1:3])})"] if len(hits) > 1
                                             else [])


def _roi_align_variants(case, convention):
    """Refdet's RoIAlign with one knob or input convention changed, in the order they are tried."""
    from refdet.roi import roi_align

    x, rois = case["features"], case["rois"]
    size, scale, sr, al = case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"]

    def run(r=rois, s=sr, a=al):
        return roi_align(x, r, size, scale, s, a, convention=convention)

    out = []
    if al:
        out.append(("aligned=False: no half-pixel shift (the scaled box is not moved by -0.5 and a RoI smaller "
                    "than one pixel is forced to 1 x 1)", lambda: run(a=False)))
    else:
        out.append(("aligned=True: a half-pixel shift where the reproduced framework has none (torchvision's "
                    "default aligned=False)", lambda: run(a=True)))
    if sr <= 0:
        for fixed in (1, 2, 3, 4):
            out.append((f"sampling ratio adaptive vs fixed: yours samples a fixed {fixed} x {fixed} grid per bin "
                        f"where sampling_ratio={sr} means adaptive ceil(bin size)", lambda f=fixed: run(s=f)))
    else:
        out.append((f"sampling ratio adaptive vs fixed: yours samples an adaptive ceil(bin size) grid where "
                    f"sampling_ratio={sr} is fixed", lambda: run(s=0)))
        for fixed in (1, 2, 3, 4):
            if fixed != sr:
                out.append((f"sampling ratio {fixed} instead of {sr}", lambda f=fixed: run(s=f)))
    swapped = rois[:, [0, 2, 1, 4, 3]] if rois.size else rois
    out.append(("box given as (y1, x1, y2, x2): yours reads the RoI columns with x and y swapped (TF order)",
                lambda: run(r=swapped)))
    if scale != 1.0:
        out.append(("spatial_scale not applied: yours pools the box in image coordinates",
                    lambda: roi_align(x, rois, size, 1.0, sr, al, convention=convention)))
    return out


def _roi_align_golden():
    out = []
    rng = np.random.default_rng(14)
    for f in (np.float32, np.float64):
        n = np.dtype(f).name
        x = rng.standard_normal((2, 2, 8, 10)).astype(f)
        # a non-square box (x range != y range) on a non-symmetric map: swapping x and y shows
        ordinary = np.array([[0, 1.0, 2.0, 13.0, 9.0], [1, 0.0, 0.0, 16.0, 6.0]], f)
        out.append((f"empty RoI set ({n})", dict(features=x, rois=np.zeros((0, 5), f), output_size=(2, 2),
                                                 spatial_scale=1.0, sampling_ratio=-1, aligned=False)))
        # bin size 6 x 3 at scale 1, adaptive: a 6 x 3 grid (not 2 x 2); aligned: -0.5 shift
        out.append((f"aligned, adaptive grid ({n})", dict(features=x, rois=ordinary.copy(), output_size=(1, 2),
                                                          spatial_scale=1.0, sampling_ratio=-1, aligned=True)))
        out.append((f"unaligned, adaptive grid, spatial_scale 0.5 ({n})",
                    dict(features=x, rois=ordinary.copy(), output_size=(2, 3), spatial_scale=0.5,
                         sampling_ratio=0, aligned=False)))
        out.append((f"fixed sampling ratio 2 ({n})", dict(features=x, rois=ordinary.copy(), output_size=(2, 2),
                                                          spatial_scale=1.0, sampling_ratio=2, aligned=True)))
        # zero-size: unaligned forces 1 x 1; aligned has no samples with the adaptive grid -> 0
        zero = np.array([[0, 3.0, 4.0, 3.0, 4.0], [0, 2.0, 1.0, 2.0, 7.0]], f)
        for al in (False, True):
            out.append((f"zero-size RoIs, aligned={al} ({n})", dict(features=x, rois=zero.copy(), output_size=(2, 2),
                                                                    spatial_scale=1.0, sampling_ratio=-1, aligned=al)))
        # wholly and partly outside the map (samples beyond [-1, H] are empty), and a sub-pixel box
        edge = np.array([[0, -30.0, -30.0, -20.0, -25.0], [1, 7.0, 5.0, 14.0, 11.0], [0, 4.25, 3.5, 4.5, 3.625]], f)
        out.append((f"outside-the-map and sub-pixel RoIs ({n})",
                    dict(features=x, rois=edge, output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2,
                         aligned=False)))
    return out


def check_roi_align(fn, *, convention="torchvision", spatial_scales=None, n_cases=60, seed=0, raise_on_failure=True,
                    progress=None):
    """Check ``fn(features, rois, output_size, spatial_scale, sampling_ratio, aligned) -> (K, C, PH, PW)``
    against :func:`refdet.roi.roi_align` (torchvision's ``ops.roi_align`` signature; ``sampling_ratio`` <= 0
    means adaptive).

    Golden cases: an empty RoI set, non-square boxes on a non-symmetric map (aligned and not, adaptive
    and fixed grids, spatial scale 0.5), zero-size RoIs (the unaligned 1 x 1 clamp, no samples when
    aligned), RoIs outside the map and a sub-pixel RoI, in float32 and float64; then hypothesis cases of
    :func:`refdet.testing.strategies_roi.roi_align_inputs` (zero-size, outside, sub-pixel, reversed and
    huge RoIs on a 1/8 grid). Outputs agree within ``2e-5`` relative plus ``2e-5 * max|features|``
    absolute in float32 (``1e-12`` in float64): the order in which an implementation sums the samples
    of a bin is free. A mismatch names the worst RoI and bin and the first of these refdet variants
    that reproduces yours: "aligned=False: no half-pixel shift" (or the shift where none is expected),
    "sampling ratio adaptive vs fixed", "box given as (y1, x1, y2, x2)", spatial_scale not applied.
    ``worst_error`` is the largest absolute difference.

    ``spatial_scales``: when given, a hypothesis case whose scale is not in it runs with
    ``spatial_scales[0]`` instead (ONNX stores ``spatial_scale`` as a float32 attribute: pass scales
    exact in float32 to compare float64 models).

    Cases where torchvision's CPU kernel cannot run (an aligned adaptive RoI with one negative side:
    ``grid_h * grid_w < 0`` sizes a ``std::vector``; onnxruntime's ``RoiAlign`` reports an integer
    overflow there) count as agreeing when ``fn`` raises for them; any other exception is a mismatch.
    """
    conventions.resolve("roi_align", convention)       # a bad `convention` named before any case runs
    from refdet.roi import roi_align
    from refdet.testing import strategies_roi as rsr

    def compare(case):
        if spatial_scales is not None and case["spatial_scale"] not in spatial_scales:
            case = dict(case, spatial_scale=float(spatial_scales[0]))
        x, rois = case["features"], case["rois"]
        args = (case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"])
        expected = roi_align(x, rois, *args, convention=convention)
        try:
            got = _np(fn(x.copy(), rois.copy(), *args))
        except Exception:
            if _negative_adaptive_grid(rois, *args):
                return 0.0, None
            raise
        scale = float(np.abs(x).max()) if x.size else 1.0
        err, ok = _roi_close(got, expected, scale)
        if ok:
            return err, None
        lines = [f"  RoIAlign outputs differ (max |difference| {err:.3g}; output_size={args[0]}, "
                 f"spatial_scale={args[1]}, sampling_ratio={args[2]}, aligned={args[3]}, {x.dtype})",
                 _roi_first_difference(got, expected, rois)]
        lines += _explain_variants(got, _roi_align_variants(case, convention), scale)
        return err, "\n".join(lines)

    r = _Runner("roi_align", "abs", convention if isinstance(convention, str) else convention.name, compare, progress)
    return _finish(r.run(_roi_align_golden(), rsr.roi_align_inputs(max_n=6), n_cases, seed), raise_on_failure)


def _negative_adaptive_grid(rois, output_size, spatial_scale, sampling_ratio, aligned):
    """True when an aligned, adaptive RoI has exactly one negative side (torchvision's kernel raises)."""
    if not aligned or sampling_ratio > 0 or not len(rois):
        return False
    w = rois[:, 3] - rois[:, 1]
    h = rois[:, 4] - rois[:, 2]
    gw = np.ceil(w * spatial_scale / output_size[1])
    gh = np.ceil(h * spatial_scale / output_size[0])
    return bool(np.any(gw * gh < 0))


def _roi_pool_golden():
    out = []
    for f in (np.float32, np.float64):
        n = np.dtype(f).name
        x = np.arange(2 * 2 * 9 * 11, dtype=f).reshape(2, 2, 9, 11) % 7 - 3   # ties: equal values repeat
        out.append((f"empty RoI set ({n})", dict(features=x, rois=np.zeros((0, 5), f), output_size=(2, 2),
                                                 spatial_scale=1.0)))
        # scale 0.5 with coordinates whose scaled value lands on .5 (rounded away from zero): 3 -> 1.5 -> 2,
        # where rounding first gives round(3) * 0.5 = 1.5 -> 2 too, but 5 -> 2.5 -> 3 and 13 -> 6.5 -> 7 only
        # when scaled first; 2.6 -> 1.3 -> 1 scaled first, round(2.6) * 0.5 = 1.5 -> 2 rounded first
        out.append((f"scaled coordinates on .5, spatial_scale 0.5 ({n})",
                    dict(features=x, rois=np.array([[0, 2.6, 5.0, 13.0, 15.0], [1, 5.0, 2.6, 17.4, 13.0]], f),
                         output_size=(3, 2), spatial_scale=0.5)))
        out.append((f"non-square RoI, spatial_scale 1 ({n})",
                    dict(features=x, rois=np.array([[0, 1.0, 2.0, 9.0, 5.0], [1, 0.0, 3.0, 4.0, 8.0]], f),
                         output_size=(2, 2), spatial_scale=1.0)))
        # outside the map: empty bins give 0; a zero-size RoI is one pixel
        out.append((f"outside-the-map and zero-size RoIs ({n})",
                    dict(features=x, rois=np.array([[0, -20.0, -20.0, -12.0, -15.0], [1, 3.0, 3.0, 3.0, 3.0],
                                                    [0, 8.0, 6.0, 30.0, 30.0]], f),
                         output_size=(2, 3), spatial_scale=1.0)))
    return out


def _roi_pool_variants(case):
    from refdet.roi import roi_pool
    from refdet.roi.pool import c_round

    x, rois, size, scale = case["features"], case["rois"], case["output_size"], case["spatial_scale"]
    out = []
    if scale != 1.0 and rois.size:
        pre = rois.copy()
        pre[:, 1:] = c_round(rois[:, 1:].astype(np.float64)).astype(rois.dtype)
        out.append(("spatial_scale applied after rounding: yours rounds the image coordinates to whole pixels "
                    "before scaling (torchvision / Caffe: round(x * spatial_scale))",
                    lambda: roi_pool(x, pre, size, scale)))
        out.append(("spatial_scale not applied: yours pools the box in image coordinates",
                    lambda: roi_pool(x, rois, size, 1.0)))
    if rois.size:
        swapped = rois[:, [0, 2, 1, 4, 3]]
        out.append(("box given as (y1, x1, y2, x2): yours reads the RoI columns with x and y swapped (TF order)",
                    lambda: roi_pool(x, swapped, size, scale)))
    return out


def check_roi_pool(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(features, rois, output_size, spatial_scale) -> (K, C, PH, PW)`` against
    :func:`refdet.roi.roi_pool` (torchvision ``ops.roi_pool`` / Caffe ``ROIPooling``: scaled coordinates
    rounded half away from zero, floor/ceil bin edges clipped to the map, an empty bin gives 0).

    Max pooling selects an input value, so the outputs must be equal (NaN where refdet has NaN).
    Golden cases put scaled coordinates exactly on ``.5`` (where rounding before or after scaling
    differs), non-square RoIs, RoIs outside the map and zero-size RoIs on a map full of ties; then
    :func:`refdet.testing.strategies_roi.roi_pool_inputs`. A mismatch names the first of: "spatial_scale
    applied after rounding", spatial_scale not applied, "box given as (y1, x1, y2, x2)".
    ``worst_error`` is the largest absolute difference.
    """
    from refdet.roi import roi_pool
    from refdet.testing import strategies_roi as rsr

    def compare(case):
        x, rois = case["features"], case["rois"]
        expected = roi_pool(x, rois, case["output_size"], case["spatial_scale"])
        got = _np(fn(x.copy(), rois.copy(), case["output_size"], case["spatial_scale"]))
        if got.shape == expected.shape and np.array_equal(got, expected, equal_nan=True):
            return 0.0, None
        err, _ = _roi_close(got, expected, 1.0)
        if got.shape == expected.shape and err == 0.0:
            err = math.inf                                  # NaN placement differs
        lines = [f"  RoI pooling outputs differ (output_size={case['output_size']}, "
                 f"spatial_scale={case['spatial_scale']}, {x.dtype})",
                 _roi_first_difference(got, expected, rois)]
        lines += _explain_variants(got, _roi_pool_variants(case), 0.0)
        return err, "\n".join(lines)

    r = _Runner("roi_pool", "abs", "torchvision", compare, progress)
    return _finish(r.run(_roi_pool_golden(), rsr.roi_pool_inputs(max_n=6), n_cases, seed), raise_on_failure)


def _level_knob_variants(convention, min_level, max_level):
    """(cause, {knob: value}) for the level-assignment knobs, in the order they are tried: the eps
    (value and placement) first, then the canonical level, the canonical size, +1 widths, whole rules."""
    from refdet import conventions

    s = conventions.resolve("assign_roi_levels", convention)
    out = []
    for ei, eo in ((0.0, 0.0), (1e-6, 0.0), (1e-8, 0.0), (0.0, 1e-6)):
        if (ei, eo) != (s.eps_inside, s.eps_outside):
            where = ("no eps" if ei == eo == 0 else
                     f"eps {ei:g} added inside the log2 (detectron2 / mmdet)" if ei else
                     f"eps {eo:g} added after the log2 (torchvision LevelMapper)")
            out.append((f"{where} instead of eps_inside={s.eps_inside:g}, eps_outside={s.eps_outside:g}",
                        dict(eps_inside=ei, eps_outside=eo)))
    for k0 in (3, 4, 5):
        if s.canonical_level is not None and k0 != s.canonical_level:
            out.append((f"canonical level k0 = {k0} instead of {s.canonical_level}", dict(canonical_level=k0)))
    for scale in (224.0, 256.0, 56.0, 112.0, 448.0):
        if scale != s.canonical_scale:
            out.append((f"canonical size {scale:g} instead of {s.canonical_scale:g}", dict(canonical_scale=scale)))
    out.append(("+1 pixel widths (plus_one=" + str(not s.plus_one) + ")", dict(plus_one=not s.plus_one)))
    for name in ("torchvision", "detectron2", "mmdet", "caffe"):
        if name != getattr(s, "name", None):
            p = conventions.resolve("assign_roi_levels", name)
            out.append((f"{name}'s level rule", {k: p[k] for k in p}))
    return out


def _level_golden(dtype):
    f = dtype
    # sqrt(area) exactly 224 -> level 4 (k = floor(4 + 0)); a float32 ulp below -> level 3 unless eps
    # lifts it; exactly 112 / 448 (boundaries of levels 3 and 5); 56 (clamped to 2); zero-size
    below = float(np.nextafter(np.float32(224), np.float32(0)))
    return [
        (f"sizes exactly on the level boundaries ({np.dtype(f).name})",
         np.array([[0, 0, 224, 224], [10, 10, 122, 122], [0, 0, 448, 448], [0, 0, 112, 448], [0, 0, 56, 56],
                   [0, 0, 1000, 1000]], f)),
        (f"one ulp below the boundary: eps decides ({np.dtype(f).name})",
         np.array([[0, 0, below, below], [0, 0, 224, below], [5, 5, 5 + 112, 5 + 112]], f)),
        (f"zero-size and tiny boxes ({np.dtype(f).name})", np.array([[3, 3, 3, 3], [0, 0, 0, 50], [0, 0, 1, 1]], f)),
    ]


def check_assign_roi_levels(fn, *, convention="torchvision", min_level=2, max_level=5, n_cases=100, seed=0,
                            raise_on_failure=True, progress=None):
    """Check ``fn(boxes (N, 4)) -> levels (N,)`` (counted from ``min_level``: P2-P5 give 0..3) against
    :func:`refdet.roi.assign_roi_levels` (torchvision ``LevelMapper``, detectron2
    ``assign_boxes_to_levels``, mmdet ``map_roi_levels``, per ``convention``).

    Golden cases put ``sqrt(w * h)`` exactly on a level boundary (224: P4, 112, 448) and one float32 ulp
    below it (where the eps and its placement decide), plus zero-size boxes; then
    :func:`refdet.testing.strategies_roi.level_boxes` (boundary sizes within 4 ulps, float32 and
    float64). Levels must be equal, except for RoIs with a NaN size (negative area), which no framework
    pools and which are not compared. A mismatch names the first RoI: "RoI assigned to level 3 instead
    of 4" (levels as FPN levels ``P_k``) and the first knob of the level rule that reproduces yours
    (canonical size, canonical level, eps inside or after the log2, +1 widths).
    ``worst_error`` counts differing RoIs.
    """
    conventions.resolve("assign_roi_levels", convention)       # a bad `convention` named before any case runs
    from hypothesis import strategies as st

    from refdet.roi import assign_roi_levels
    from refdet.testing import strategies_roi as rsr

    def compare(boxes):
        expected = assign_roi_levels(boxes, min_level=min_level, max_level=max_level, convention=convention)
        got = _np(fn(boxes.copy())).astype(np.int64).reshape(-1)
        if got.shape != expected.shape:
            return math.inf, f"  {got.shape[0]} levels for {expected.shape[0]} boxes"
        ok = expected >= 0
        bad = np.flatnonzero(ok & (got != expected))
        if not bad.size:
            return 0.0, None
        i = int(bad[0])
        b = boxes[i].astype(np.float64)
        size = math.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 0.0))
        lines = [f"  {bad.size} of {ok.sum()} RoIs on another level; first: RoI {i} = {boxes[i].tolist()} "
                 f"(sqrt(w * h) = {size!r}, {boxes.dtype})",
                 f"  RoI assigned to level {got[i] + min_level} instead of {expected[i] + min_level}: canonical "
                 f"size or eps (refdet's {convention if isinstance(convention, str) else convention.name} rule)"]
        hits = []
        for cause, kw in _level_knob_variants(convention, min_level, max_level):
            try:
                v = assign_roi_levels(boxes, min_level=min_level, max_level=max_level, convention=convention, **kw)
            except (TypeError, ValueError):
                continue
            if np.array_equal(v[ok], got[ok]):
                hits.append(cause)
        if hits:
            lines.append(f"  likely cause: {hits[0]}")
            if len(hits) > 1:
                lines.append(f"  (also reproduced by: {'; '.join(hits[1:3])})")
        return float(bad.size), "\n".join(lines)

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from((np.float32, np.float64)))
        return draw(rsr.level_boxes()).astype(dt)

    golden = _level_golden(np.float32) + _level_golden(np.float64)
    r = _Runner("assign_roi_levels", "RoIs", convention if isinstance(convention, str) else convention.name,
                compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def _proposal_golden():
    # level 0: anchors 0-3, level 1: anchors 4-5. IoU(box 0, box 1) = 70 / 100 = 0.7 exactly (kept: NMS
    # suppresses IoU > 0.7); box 2 is 5e-4 wide (< min_size 1e-3); box 3 leaves the image (clipped);
    # box 4 (level 1) equals box 0 (kept: NMS per level); box 5 is ordinary
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 7], [20, 20, 20.0005, 30], [45, 45, 60, 60],
                      [0, 0, 10, 10], [30, 0, 40, 10.0]], np.float32)
    logits = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0], np.float32)
    two = dict(proposals=boxes[None], objectness=logits[None], image_sizes=[(50, 50)], num_anchors_per_level=[4, 2])
    empty = dict(proposals=np.zeros((1, 0, 4), np.float32), objectness=np.zeros((1, 0), np.float32),
                 image_sizes=[(50, 50)], num_anchors_per_level=[0])
    batch = dict(proposals=np.stack([boxes, boxes[::-1].copy()]), objectness=np.stack([logits, logits]),
                 image_sizes=[(50, 50), (40, 60)], num_anchors_per_level=[4, 2])
    return [("IoU exactly 0.7, tiny, outside and cross-level duplicate boxes", two), ("no anchors", empty),
            ("two images of different sizes", batch)]


def _proposal_knob_variants(convention):
    from refdet import conventions

    s = conventions.resolve("filter_proposals", convention)
    out = [("NMS over all proposals instead of per level (nms_per_level=False)", dict(nms_per_level=False))
           if s.nms_per_level else ("NMS per level", dict(nms_per_level=True))]
    for ms, rule in ((0.0, "strict"), (1e-3, "inclusive"), (0.0, "inclusive"), (1e-3, "strict")):
        if (ms, rule) != (s.min_size, s.small_box_rule):
            out.append((f"small boxes removed with min_size={ms:g}, rule {rule!r} (refdet: min_size="
                        f"{s.min_size:g}, {s.small_box_rule!r})", dict(min_size=ms, small_box_rule=rule)))
    for sc in ("logit", "sigmoid"):
        if sc != s.score:
            out.append((f"scores returned as {sc} (refdet: {s.score})", dict(score=sc)))
    if s.top_k_scope != "all":
        out.append(("pre-NMS top-k over all levels instead of per level", dict(top_k_scope="all")))
    if s.score_thresh is not None:
        out.append(("no score threshold", dict(score_thresh=None)))
    out.append(("NMS threshold applied with IoU >= thr (the caffe NMS)", dict(nms_profile="caffe")))
    return out


def check_filter_proposals(fn, *, convention="torchvision", n_cases=30, seed=0, raise_on_failure=True,
                           progress=None):
    """Check RPN proposal selection ``fn(proposals (B, N, 4), objectness (B, N), image_sizes,
    num_anchors_per_level) -> (boxes, scores)`` (lists of one ``(P_i, 4)`` / ``(P_i,)`` array per image,
    best first; torchvision ``RegionProposalNetwork.filter_proposals`` in test mode) against
    :func:`refdet.proposals.filter_proposals` (``training=False``).

    Golden cases: an IoU exactly at the 0.7 NMS threshold, a box just under ``min_size``, a box leaving
    the image, a duplicate on another level, no anchors, two images of different sizes; then
    :func:`refdet.testing.strategies_roi.proposal_inputs` (clusters of jittered boxes, duplicates, tiny
    boxes, distinct logits). Boxes must be equal (clipping and NMS select input values), scores within
    ``2**-22`` relative (the sigmoid's ``exp`` may be 1 ulp apart between libraries). A mismatch names
    the image, the first differing rank, and the first knob variant of refdet's that reproduces yours
    (NMS per level or over all, small-box rule, score kind, top-k scope, score threshold, the NMS rule).
    ``worst_error`` counts images that differ.
    """
    conventions.resolve("filter_proposals", convention)       # a bad `convention` named before any case runs
    from refdet.proposals import filter_proposals
    from refdet.testing import strategies_roi as rsr

    def same(a, b):
        boxes, scores = a
        rb, rs = b
        if len(boxes) != len(rb):
            return False
        for i in range(len(rb)):
            gb, gs = _np(boxes[i]), _np(scores[i])
            if gb.shape != rb[i].shape or not np.array_equal(gb.astype(rb[i].dtype), rb[i]):
                return False
            if gs.shape != rs[i].shape or not np.allclose(gs, rs[i], rtol=2 ** -22, atol=0):
                return False
        return True

    def compare(case):
        args = (case["proposals"], case["objectness"], case["image_sizes"], case["num_anchors_per_level"])
        ref = filter_proposals(*args, convention=convention)
        out = fn(case["proposals"].copy(), case["objectness"].copy(), list(case["image_sizes"]),
                 list(case["num_anchors_per_level"]))
        got = ([_np(b) for b in out[0]], [_np(s) for s in out[1]])
        if same(got, (ref.boxes, ref.scores)):
            return 0.0, None
        lines = []
        nbad = 0
        for i in range(max(len(got[0]), len(ref.boxes))):
            if i >= len(got[0]) or i >= len(ref.boxes):
                nbad += 1
                continue
            gb, rb = got[0][i], ref.boxes[i]
            if gb.shape == rb.shape and np.array_equal(gb.astype(rb.dtype), rb) and \
                    np.allclose(got[1][i], ref.scores[i], rtol=2 ** -22, atol=0):
                continue
            nbad += 1
            if not lines:
                n = min(len(gb), len(rb))
                diff = [j for j in range(n) if not np.array_equal(gb[j].astype(rb.dtype), rb[j])]
                j = diff[0] if diff else n
                lines.append(f"  image {i}: {len(gb)} proposals, refdet {len(rb)}; first difference at rank {j}"
                             + (f": yours {gb[j].tolist()}, refdet {rb[j].tolist()} (refdet's anchor "
                                f"{int(ref.anchor_indices[i][j])}, level {int(ref.levels[i][j])})"
                                if j < n else ""))
        if len(got[0]) != len(ref.boxes):
            lines.append(f"  {len(got[0])} images returned, refdet {len(ref.boxes)}")
        for cause, kw in _proposal_knob_variants(convention):
            try:
                v = filter_proposals(*args, convention=convention, **kw)
            except (TypeError, ValueError):
                continue
            if same(got, (v.boxes, v.scores)):
                lines.append(f"  likely cause: {cause}")
                break
        return float(max(nbad, 1)), "\n".join(lines)

    r = _Runner("filter_proposals", "images", convention if isinstance(convention, str) else convention.name,
                compare, progress)
    return _finish(r.run(_proposal_golden(), rsr.proposal_inputs(max_per_level=150), n_cases, seed),
                   raise_on_failure)


__all__ += ["check_roi_align", "check_roi_pool", "check_assign_roi_levels", "check_filter_proposals"]
CHECKS.update({
    "roi_align": check_roi_align,
    "roi_pool": check_roi_pool,
    "assign_roi_levels": check_assign_roi_levels,
    "filter_proposals": check_filter_proposals,
})


# the YOLO family (issue 16): refdet.testing.conformance_yolo, importable from here
# ---------------------------------------------------------------------------------------------------

from refdet.testing.conformance_yolo import (YOLO_CHECKS, check_dfl_decode, check_distribution_focal_loss,  # noqa: E402
                                             check_make_anchors, check_quality_focal_loss, check_task_aligned_assign,
                                             check_varifocal_loss, check_yolo_decode, check_yolo_nms,
                                             check_yolov3_decode, check_yolov5_decode, check_yolox_decode)

__all__ += ["check_make_anchors", "check_dfl_decode", "check_yolo_decode", "check_yolov3_decode",
            "check_yolov5_decode", "check_yolox_decode", "check_task_aligned_assign", "check_yolo_nms",
            "check_distribution_focal_loss", "check_varifocal_loss", "check_quality_focal_loss"]
CHECKS.update(YOLO_CHECKS)
