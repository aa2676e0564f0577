"""Conformance checks of NMS: :func:`check_nms` and :func:`check_batched_nms` (golden ties, IoUs on the
threshold and one ulp past it, empty inputs; then seeded hypothesis cases), explained by
:func:`refdet.testing.compare_nms.explain_nms_difference`.

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS``).
"""
from __future__ import annotations

import numpy as np

from refdet import _checks
from refdet.testing.conformance_core import _Runner, _finish, _np, _variant_cause

__all__ = ["check_nms", "check_batched_nms"]


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
