"""Conformance checks of TensorFlow's operators (:mod:`refdet.tf_ops`, issue 15).

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS`` for ``refdet
verify``) or from here::

    from refdet.testing import conformance_tf
    conformance_tf.check_tf_non_max_suppression(my_nms)

Each check runs golden edge cases, then seeded hypothesis cases (:mod:`refdet.testing.strategies_tf`:
tied scores, thresholds hit exactly, zero-area and flipped boxes, empty sets), compares with refdet's
reproduction of TF's kernel and, on a mismatch, names the variant that reproduces the answer ("IoU
>= threshold instead of >", "the paper's exp(-iou^2 / sigma)", "equal scores highest index first",
"boxes not clipped to [0, 1]", ...).

Signatures expected from ``fn`` (NumPy in; NumPy arrays, lists or tensors out):

check_tf_non_max_suppression
    ``fn(boxes (N, 4), scores (N,), max_output_size, iou_threshold, score_threshold) -> indices (K,)``
    (``tf.image.non_max_suppression``, V3).
check_tf_soft_nms
    ``fn(boxes, scores, max_output_size, iou_threshold, score_threshold, soft_nms_sigma)
    -> (indices (K,), scores (K,))`` (``tf.image.non_max_suppression_with_scores``, V5).
check_tf_combined_nms
    ``fn(boxes (B, N, q, 4), scores (B, N, K), max_output_size_per_class, max_total_size,
    iou_threshold, score_threshold, pad_per_class, clip_boxes) -> (boxes (B, P, 4), scores (B, P),
    classes (B, P), valid (B,))`` (``tf.image.combined_non_max_suppression``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_tf_non_max_suppression", "check_tf_soft_nms", "check_tf_combined_nms", "TF_CHECKS"]


def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy"):          # tf.Tensor
        x = x.numpy()
    return np.asarray(x)


def _Runner(*args, **kw):
    # refdet.testing.conformance imports this module at its end: take its runner at call time
    from refdet.testing.conformance import _Runner as runner
    return runner(*args, **kw)


def _finish(report, raise_on_failure):
    from refdet.testing.conformance import _finish as finish
    return finish(report, raise_on_failure)


def _likely(variants, got, equal):
    """The first line naming a variant that reproduces ``got`` (or nothing)."""
    hits = [name for name, make in variants if _try_equal(make, got, equal)]
    if not hits:
        return ["  no single known variant reproduces it"]
    return [f"  likely cause: the implementation behaves like TF's kernel with {hits[0]}"] + \
        ([f"  (also reproduced by: {'; '.join(hits[1:4])})"] if len(hits) > 1 else [])


def _try_equal(make, got, equal):
    try:
        return equal(got, make())
    except Exception:                   # a variant that is undefined for this case reproduces nothing
        return False


def _ulps(a, b):
    """Largest distance in units in the last place of ``b``'s dtype between two equal-shape arrays."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b)
    if a.size == 0:
        return 0.0
    spacing = np.spacing(np.abs(b).astype(b.dtype)).astype(np.float64)
    spacing[spacing == 0] = np.finfo(b.dtype).smallest_subnormal
    return float(np.max(np.abs(a - b.astype(np.float64)) / spacing))


# ---------------------------------------------------------------------------------------------------
# NonMaxSuppressionV3 (hard) and V5 (soft)
# ---------------------------------------------------------------------------------------------------

def _nms_golden(soft):
    f = np.float32
    sq = np.array([[0, 0, 10, 10]], f)
    sig = 0.5 if soft else 0.0
    return [
        ("empty input", (np.zeros((0, 4), f), np.zeros(0, f), 5, 0.5, -np.inf, sig)),
        # IoU([0,0,10,10], [0,0,10,5]) = 50/100 = 0.5: kept by 'IoU > 0.5'
        ("IoU exactly at the threshold", (np.array([[0, 0, 10, 10], [0, 0, 10, 5]], f), np.array([0.9, 0.8], f),
                                          5, 0.5, -np.inf, sig)),
        ("IoU one ulp past the threshold", (np.array([[0, 0, 10, 10], [0, 0, 10, 5]], f), np.array([0.9, 0.8], f),
                                            5, float(np.nextafter(f(0.5), f(0))), -np.inf, sig)),
        # a score equal to score_threshold is not a candidate ('score > score_threshold')
        ("score exactly at the score threshold", (np.array([[0, 0, 1, 1], [5, 5, 6, 6]], f), np.array([0.5, 0.25], f),
                                                  5, 0.5, 0.25, sig)),
        ("identical boxes, tied scores", (np.repeat(sq, 3, axis=0), np.full(3, 0.7, f), 5, 0.5, -np.inf, sig)),
        # zero-area boxes: TF's IoU is 0 with them, they never suppress
        ("zero-area boxes", (np.array([[3, 3, 3, 3], [3, 3, 3, 3], [0, 0, 4, 4]], f), np.array([0.9, 0.8, 0.7], f),
                             5, 0.0, -np.inf, sig)),
        # flipped corners: [y2, x2, y1, x1] is the same box for TF
        ("flipped corners", (np.array([[0, 0, 10, 10], [10, 10, 0, 1]], f), np.array([0.9, 0.8], f), 5, 0.5,
                             -np.inf, sig)),
        ("max_output_size cuts", (np.array([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], f), np.full(3, 0.5, f),
                                  2, 0.5, -np.inf, sig)),
    ]


def _nms_variants(case, soft):
    from refdet.tf_ops import non_max_suppression as tfnms

    b, s, k, thr, sthr, sig = case

    def run(**kw):
        args = dict(soft_nms_sigma=sig)
        args.update(kw)
        r = tfnms(b, s, args.pop("k", k), thr, args.pop("sthr", sthr), **args)
        return r

    out = [
        ("equal scores highest index first (ties='highest_index')", lambda: run(ties="highest_index")),
        ("no score threshold (score_threshold ignored)", lambda: run(sthr=-np.inf)),
        ("max_output_size ignored", lambda: run(k=len(b))),
    ]
    if soft:
        out += [
            ("the paper's weight exp(-iou^2 / sigma) (gaussian_denominator='sigma')",
             lambda: run(gaussian_denominator="sigma")),
            ("a hard cut at IoU > iou_threshold on top of the Gaussian (hard_above_threshold=True)",
             lambda: run(hard_above_threshold=True)),
            ("a decayed score dropped only when < score_threshold (score_cut='strict')",
             lambda: run(score_cut="strict")),
            ("hard NMS (soft_nms_sigma ignored)", lambda: run(soft_nms_sigma=0.0)),
        ]
    else:
        from refdet.nms import nms

        def greedy(**kw):
            c = np.flatnonzero(s > np.float32(sthr))
            keep = c[nms(b[c], s[c], thr, convention="tf", **kw)]
            return keep[:k]
        out += [
            ("IoU >= iou_threshold instead of > (refdet.nms inclusive=True)", lambda: greedy(inclusive=True)),
            ("corners not min/max-sorted (refdet.nms corner_order='as_given')",
             lambda: greedy(corner_order="as_given")),
            ("score >= score_threshold admitted as a candidate", lambda: _inclusive_candidates(b, s, k, thr, sthr)),
        ]
    return out


def _inclusive_candidates(b, s, k, thr, sthr):
    from refdet.nms import nms

    c = np.flatnonzero(s >= np.float32(sthr))
    return c[nms(b[c], s[c], thr, convention="tf")][:k]


def _nms_compare(fn, soft, max_ulps):
    from refdet.tf_ops import non_max_suppression as tfnms

    def compare(case):
        b, s, k, thr, sthr, sig = case
        ref = tfnms(b, s, k, thr, sthr, soft_nms_sigma=sig)
        if soft:
            out = fn(b.copy(), s.copy(), k, thr, sthr, sig)
            got_i, got_s = _np(out[0]).astype(np.int64).ravel(), _np(out[1]).ravel()
        else:
            got_i, got_s = _np(fn(b.copy(), s.copy(), k, thr, sthr)).astype(np.int64).ravel(), None
        same_i = np.array_equal(got_i, ref.selected_indices)
        err = 0.0 if same_i else float(max(len(got_i), len(ref.selected_indices)))
        if same_i and soft:
            err = _ulps(got_s, ref.selected_scores) if got_s.shape == ref.selected_scores.shape else np.inf
            if err <= max_ulps:
                return err, None
            why = _likely(_nms_variants(case, soft), (got_i, got_s),
                          lambda g, r: np.array_equal(g[0], r.selected_indices)
                          and np.array_equal(g[1], r.selected_scores))
            if why[0].startswith("  no single"):
                why = ["  likely cause: a different exp (TF calls glibc's expf, not correctly rounded) or another "
                       "order of the multiplications by the weights (TF: newest selected box first)"]
            return err, (f"same boxes selected, scores differ by up to {err:.3g} ulp\n"
                         f"  yours  {got_s.tolist()}\n  refdet {ref.selected_scores.tolist()}\n" + "\n".join(why))
        if same_i:
            return 0.0, None
        m = min(len(got_i), len(ref.selected_indices))
        d = np.flatnonzero(got_i[:m] != ref.selected_indices[:m])
        pos = int(d[0]) if d.size else m
        lines = [f"selected indices differ from position {pos}: {len(got_i)} selected vs {len(ref.selected_indices)}",
                 f"  yours  {got_i.tolist()[:20]}", f"  refdet {ref.selected_indices.tolist()[:20]}"]
        if soft:
            lines += _likely(_nms_variants(case, soft), got_i,
                             lambda g, r: np.array_equal(g, r.selected_indices))
        else:
            lines += _likely(_nms_variants(case, soft), got_i,
                             lambda g, r: np.array_equal(g, getattr(r, "selected_indices", r)))
        return err, "\n".join(lines)
    return compare


def check_tf_non_max_suppression(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(boxes, scores, max_output_size, iou_threshold, score_threshold) -> indices`` against
    :func:`refdet.tf_ops.non_max_suppression` (TF ``NonMaxSuppressionV3``), float32 inputs.

    Returns
    -------
    ConformanceReport
        ``worst_error``: the length of the longer index list on a mismatch (0 when all agree).
    """
    from refdet.testing.strategies_tf import tf_nms_cases

    golden = [(k, c[:5] + (0.0,)) for k, c in _nms_golden(False)]
    r = _Runner("tf_non_max_suppression", "positions", "tf",
                _nms_compare(lambda b, s, k, t, st: fn(b, s, k, t, st), False, 0), progress)
    return _finish(r.run(golden, tf_nms_cases(soft=False), n_cases, seed), raise_on_failure)


def check_tf_soft_nms(fn, *, max_ulps=0, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(boxes, scores, max_output_size, iou_threshold, score_threshold, soft_nms_sigma)
    -> (indices, scores)`` against :func:`refdet.tf_ops.non_max_suppression` with ``soft_nms_sigma > 0``
    (TF ``NonMaxSuppressionV5``). Indices must agree exactly, scores within ``max_ulps`` float32 ulps
    (0: bit for bit, as TF computes them).
    """
    from refdet.testing.strategies_tf import tf_nms_cases

    r = _Runner("tf_soft_nms", "ulps", "tf", _nms_compare(fn, True, max_ulps), progress)
    return _finish(r.run(_nms_golden(True), tf_nms_cases(soft=True), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# CombinedNonMaxSuppression
# ---------------------------------------------------------------------------------------------------

def _combined_golden():
    f = np.float32
    two = np.array([[[[0, 0, 0.5, 0.5]], [[0, 0, 0.5, 0.25]], [[0.5, 0.5, 1.5, 1.5]]]], f)     # (1, 3, 1, 4)
    s = np.array([[[0.9, 0.1], [0.8, 0.8], [0.7, 0.9]]], f)                                    # (1, 3, 2)
    return [
        ("no boxes", (np.zeros((1, 0, 1, 4), f), np.zeros((1, 0, 2), f), 3, 4, 0.5, -np.inf, False, True)),
        # boxes 0 and 1: IoU 0.5 exactly, kept at threshold 0.5; box 2 reaches past 1 (clipped)
        ("IoU exactly at the threshold, clipping", (two, s, 3, 6, 0.5, -np.inf, False, True)),
        ("no clipping", (two, s, 3, 6, 0.5, -np.inf, False, False)),
        ("pad_per_class", (two, s, 1, 6, 0.5, -np.inf, True, True)),
        ("score threshold hit exactly", (two, s, 3, 6, 0.4, 0.8, False, True)),
        # equal scores across classes, total limit cutting through them
        ("tied scores cut by max_total_size", (two, np.full((1, 3, 2), 0.5, f), 3, 3, 1.0, -np.inf, False, True)),
    ]


def _combined_compare(fn):
    from refdet.tf_ops import combined_non_max_suppression as comb

    names = ("nmsed_boxes", "nmsed_scores", "nmsed_classes", "valid_detections")

    def compare(case):
        b, s, kpc, total, thr, sthr, pad, clip = case
        ref = comb(b, s, kpc, total, thr, sthr, pad_per_class=pad, clip_boxes=clip)
        got = [_np(v) for v in fn(b.copy(), s.copy(), kpc, total, thr, sthr, pad, clip)]

        def same(g, r):
            return all(np.asarray(x).shape == y.shape and np.array_equal(np.asarray(x, y.dtype), y)
                       for x, y in zip(g, r))
        if same(got, ref):
            return 0.0, None
        bad = [n for n, x, y in zip(names, got, ref) if not (x.shape == y.shape and np.array_equal(x, y))]
        lines = [f"outputs differ: {', '.join(bad)}"]
        for n, x, y in zip(names, got, ref):
            if n in bad:
                lines += [f"  {n}: yours shape {x.shape} {x.ravel()[:12].tolist()}",
                          f"  {n}: refdet shape {y.shape} {y.ravel()[:12].tolist()}"]

        def run(**kw):
            a = dict(pad_per_class=pad, clip_boxes=clip)
            a.update(kw)
            return comb(b, s, kpc, total, thr, sthr, **a)
        variants = [
            ("clip_boxes flipped (boxes clipped to [0, 1] or not)", lambda: run(clip_boxes=not clip)),
            ("pad_per_class flipped (output rows min(max_total_size, max_per_class * K) or max_total_size)",
             lambda: run(pad_per_class=not pad)),
            ("a stable merge of the classes (merge_sort='stable'; TF's std::sort is not stable)",
             lambda: run(merge_sort="stable")),
            ("equal scores lowest index first within a class (class_queue='lowest_index')",
             lambda: run(class_queue="lowest_index")),
            ("both tie orders defined (stable merge, lowest index first)",
             lambda: run(class_queue="lowest_index", merge_sort="stable")),
        ]
        lines += _likely(variants, got, same)
        n = max(len(got[1].ravel()), len(ref[1].ravel()))
        return float(n), "\n".join(lines)
    return compare


def check_tf_combined_nms(fn, *, n_cases=80, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(boxes, scores, max_output_size_per_class, max_total_size, iou_threshold,
    score_threshold, pad_per_class, clip_boxes) -> (boxes, scores, classes, valid)`` against
    :func:`refdet.tf_ops.combined_non_max_suppression` (TF ``CombinedNonMaxSuppression``), float32:
    every output bit for bit, including the order of equal scores (libstdc++'s heap and sort).
    """
    from refdet.testing.strategies_tf import tf_combined_nms_cases

    r = _Runner("tf_combined_nms", "elements", "tf", _combined_compare(fn), progress)
    return _finish(r.run(_combined_golden(), tf_combined_nms_cases(), n_cases, seed), raise_on_failure)


#: op name (``refdet verify tensorflow --op``) -> check
TF_CHECKS = {
    "tf_non_max_suppression": check_tf_non_max_suppression,
    "tf_soft_nms": check_tf_soft_nms,
    "tf_combined_nms": check_tf_combined_nms,
}
