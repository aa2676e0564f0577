"""Conformance checks of the box geometry and assignment ops: IoU (pairwise and generalized), matching,
box coding (encode / decode), pyramid anchors and balanced sampling.

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS``).
"""
from __future__ import annotations

import math

import numpy as np

from refdet import _checks
from refdet.testing.conformance_core import _Runner, _finish, _np

__all__ = ["check_box_iou", "check_generalized_box_iou", "check_match", "check_encode_decode", "check_encode",
           "check_decode", "check_anchors", "check_sample_balanced"]


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
    from refdet import iou
    from refdet.testing.compare_floats import explain_float_difference, ulp_distance

    ref = getattr(iou, op)

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
    from refdet import box_coder
    from refdet.testing.compare_floats import explain_float_difference, ulp_distance

    ref = getattr(box_coder, op)

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
