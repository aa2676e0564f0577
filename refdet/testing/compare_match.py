"""Comparators for label assignment and sampling that explain the first difference.

    from refdet.testing import assert_matches_equal
    assert_matches_equal(my_matches, refdet.match(iou), iou)

On a mismatch the AssertionError names the first anchor that differs and says why the two answers
could differ there: the anchor's IoU with every gt, which IoUs sit exactly on (or one ulp from) a
threshold, which gts tie for the anchor's best IoU, whether the anchor ties some gt's best IoU (so
the low-quality step touches it), and which conventions / low-quality modes reproduce each of the
two answers (everything is recomputed under each of them).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks
from refdet.matcher import LOW_QUALITY_MODES, match, ssd_match, SSD_PREMATCH_MODES
from refdet.testing._malformed import check_names, result_array, result_indices, result_mask

__all__ = ["assert_matches_equal", "assert_sample_valid", "match_variants"]


def _variants(high, low, allow, kind, threshold):
    """(description, callable) for every convention and every mode override worth trying."""
    out = []
    if kind == "ssd":
        for c in ("torchvision", "mmdet", "caffe", "tf", "paper"):
            out.append((f"ssd_match(convention={c!r})", lambda q, c=c: ssd_match(q, threshold, convention=c)))
        for p in SSD_PREMATCH_MODES:
            out.append((f"ssd_match(prematch={p!r})", lambda q, p=p: ssd_match(q, threshold, prematch=p)))
        out.append(("ssd_match(positive_strict=True)",
                    lambda q: ssd_match(q, threshold, positive_strict=True)))
        return out
    base = dict(high=high, low=low)
    for c in ("torchvision", "detectron2", "mmdet", "caffe", "tf", "paper"):
        out.append((f"match(convention={c!r})",
                    lambda q, c=c: match(q, allow_low_quality_matches=allow, convention=c, empty_gt="all_negative",
                                         allow_nan=True, **base)))
    for mode in LOW_QUALITY_MODES:
        for gate in (None, 0.0, low):
            g = "" if gate is None else f", min_pos_iou={gate}"
            out.append((f"match(low_quality={mode!r}{g})",
                        lambda q, mode=mode, gate=gate: match(q, low_quality=mode, min_pos_iou=gate,
                                                              allow_nan=True, **base)))
    out.append(("match(positive_strict=True)",
                lambda q: match(q, allow_low_quality_matches=allow, positive_strict=True, allow_nan=True, **base)))
    out.append(("match(background_after=True)",
                lambda q: match(q, allow_low_quality_matches=allow, background_after=True, allow_nan=True, **base)))
    return out


def match_variants(iou: ArrayLike, *, high: float = 0.7, low: float = 0.3, allow_low_quality_matches: bool = True,
                   kind: str = "match", threshold: float = 0.5) -> Dict[str, np.ndarray]:
    """``{description: matches}`` for every convention and mode override (see the module docstring).

    Parameters
    ----------
    iou : ndarray, shape (M, N)
    kind : {"match", "ssd"}
        Recompute with :func:`refdet.match` or with :func:`refdet.ssd_match` (``threshold``).

    Returns
    -------
    dict of str -> ndarray of int64, shape (N,)
        Variants that raise are left out.
    """
    q, high, low, allow_low_quality_matches, kind, threshold = _options(
        iou, high, low, allow_low_quality_matches, kind, threshold)
    res = {}
    seen = set()
    for desc, fn in _variants(high, low, allow_low_quality_matches, kind, threshold):
        if desc in seen:
            continue
        seen.add(desc)
        try:
            res[desc] = fn(q)
        except (ValueError, TypeError):
            continue
    return res


def _options(iou, high, low, allow, kind, threshold):
    """The quality matrix (NaN allowed) and the matcher options, validated (TypeError / ValueError)."""
    q = _checks.as_float_array(iou, "iou", ndim=2, finite=False)
    _checks.check_finite(q, "iou", allow_inf=True)
    if np.isposinf(q).any():
        raise ValueError("`iou` must not contain +inf (a quality lies in [-1, 1])")
    high = _checks.check_unit_threshold(high, "high")
    low = _checks.check_unit_threshold(low, "low")
    allow = _checks.check_bool(allow, "allow_low_quality_matches")
    _checks.check_choice(kind, "kind", ("match", "ssd"))
    threshold = _checks.check_unit_threshold(threshold, "threshold")
    return q, high, low, allow, kind, threshold


def _near(v, t, dtype):
    """'exactly' / 'one ulp below' / 'one ulp above' / None for value v against threshold t."""
    dt = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
    tv = dt.type(t)
    v = dt.type(v)
    if v == tv:
        return "exactly"
    if v == np.nextafter(tv, dt.type(-np.inf)):
        return "one ulp below"
    if v == np.nextafter(tv, dt.type(np.inf)):
        return "one ulp above"
    return None


def _code(v):
    return {-1: "-1 (negative)", -2: "-2 (ignored)"}.get(int(v), f"{int(v)} (gt {int(v)})")


def assert_matches_equal(matches: ArrayLike, expected: ArrayLike, iou: ArrayLike, *, high: float = 0.7,
                         low: float = 0.3, allow_low_quality_matches: bool = True, kind: str = "match",
                         threshold: float = 0.5, names: Tuple[str, str] = ("matches", "expected"),
                         max_gts: int = 12) -> None:
    """Assert two matcher outputs (torchvision encoding) are identical; explain the first difference.

    Parameters
    ----------
    matches, expected : array_like of int, shape (N,)
        gt index, -1 negative, -2 ignored. A malformed result (not 1-D, not N long, a fraction, a
        value outside -2 .. M - 1) is an AssertionError saying so.
    iou : ndarray, shape (M, N)
        The quality matrix both were computed from (ground truths x anchors).
    high, low, allow_low_quality_matches : thresholds and setting used (for ``kind="match"``).
    kind : {"match", "ssd"}
    threshold : float
        For ``kind="ssd"``.
    names : (str, str)
        How to call the two arrays in the message.
    max_gts : int
        Print at most this many IoUs of the anchor.

    Raises
    ------
    AssertionError
        With the first differing anchor, its IoU with each gt, thresholds hit exactly, ties, and the
        conventions / modes that give each of the two answers.
    """
    q, high, low, allow_low_quality_matches, kind, threshold = _options(
        iou, high, low, allow_low_quality_matches, kind, threshold)
    na, nb = check_names(names)
    max_gts = _checks.check_int(max_gts, "max_gts", low=1)
    m_gt = q.shape[0]
    what = f"gt indices 0 .. {m_gt - 1}, -1 (negative) or -2 (ignored)"
    a0 = result_array(matches, na, what)
    b0 = result_array(expected, nb, what)
    if a0.shape != b0.shape:
        raise AssertionError(f"{na} has shape {a0.shape} but {nb} has shape {b0.shape}")
    a = result_indices(a0, na, n=m_gt, low=-2, what=what)
    b = result_indices(b0, nb, n=m_gt, low=-2, what=what)
    if q.shape[1] != a.shape[0]:
        raise AssertionError(f"{na} has {a.shape[0]} anchors but `iou` has shape {q.shape} (ground truths x "
                             f"anchors)")
    diff = np.flatnonzero(a != b)
    if diff.size == 0:
        return
    n = int(diff[0])
    col = q[:, n]
    m = q.shape[0]
    lines = [f"{na} and {nb} differ at {diff.size} of {a.shape[0]} anchors; first at anchor {n}: "
             f"{na}[{n}] = {_code(a[n])}, {nb}[{n}] = {_code(b[n])}"]
    if m:
        shown = ", ".join(f"gt {i}: {float(col[i])!r}" for i in range(min(m, max_gts)))
        more = f", ... ({m - max_gts} more)" if m > max_gts else ""
        lines.append(f"  IoU of anchor {n} with each gt: {shown}{more}")
        best = np.nanmax(col) if not np.isnan(col).all() else np.nan
        ties = np.flatnonzero(col == best)
        if np.isnan(col).any():
            lines.append(f"  NaN IoU with gts {np.flatnonzero(np.isnan(col)).tolist()} (torch treats NaN as the "
                         "maximum: the anchor is matched to the first NaN gt)")
        lines.append(f"  best IoU {float(best)!r} with gt(s) {ties.tolist()}"
                     + (" -- a tie: the first gt wins the argmax" if ties.size > 1 else ""))
        thr = [("high", high), ("low", low)] if kind == "match" else [("threshold", threshold)]
        for i in range(min(m, max_gts)):
            for tname, t in thr:
                how = _near(col[i], t, q.dtype)
                if how:
                    lines.append(f"  IoU with gt {i} is {how} `{tname}` = {t} "
                                 f"(>= vs > decides it: positive_strict / the paper's 'higher than')")
        rowmax = np.max(q, axis=1)
        best_of = np.flatnonzero(col == rowmax)
        if best_of.size:
            lines.append(f"  anchor {n} is the best anchor (incl. ties) of gt(s) {best_of.tolist()}: the "
                         "low-quality / pre-match step decides it")
            for i in best_of[:max_gts]:
                k = int(np.sum(q[i] == rowmax[i]))
                if k > 1:
                    lines.append(f"    gt {i}'s best IoU {float(rowmax[i])!r} is shared by {k} anchors "
                                 "(all-ties vs first-only modes differ)")
        near = [int(i) for i in range(m) if col[i] != rowmax[i] and
                abs(float(col[i]) - float(rowmax[i])) <= 4 * np.finfo(q.dtype if q.dtype.kind == "f"
                                                                      else np.float64).eps * max(1.0, abs(float(rowmax[i])))]
        if near:
            lines.append(f"  anchor {n} misses the best IoU of gt(s) {near} by a few ulp only "
                         "(detectron2#3750: the exact == tie test is rounding-sensitive)")
    variants = match_variants(q, high=high, low=low, allow_low_quality_matches=allow_low_quality_matches,
                              kind=kind, threshold=threshold)
    for label, arr in ((na, a), (nb, b)):
        whole = [d for d, v in variants.items() if np.array_equal(v, arr)]
        here = [d for d, v in variants.items() if v[n] == arr[n]]
        if whole:
            lines.append(f"  {label} equals refdet's {', '.join(whole[:6])} on every anchor")
        elif here:
            lines.append(f"  {label}[{n}] is what {', '.join(here[:6])} give(s) at this anchor")
        else:
            lines.append(f"  no refdet convention or mode gives {label}[{n}] = {int(arr[n])}")
    if diff.size > 1:
        lines.append(f"  other differing anchors: {diff[1:11].tolist()}{' ...' if diff.size > 11 else ''}")
    raise AssertionError("\n".join(lines))


def assert_sample_valid(labels: ArrayLike, pos_mask: ArrayLike, neg_mask: ArrayLike, batch_size_per_image: int = 256,
                        positive_fraction: float = 0.5) -> None:
    """Check a balanced sample against its invariants; explain the first violation.

    Invariants (torchvision ``BalancedPositiveNegativeSampler``): the masks are boolean of shape (N,)
    and disjoint; ``pos_mask`` only where ``labels >= 1``, ``neg_mask`` only where ``labels == 0``;
    ``pos_mask.sum() == min(#pos, int(batch * fraction))``, ``neg_mask.sum() == min(#neg, batch -
    pos_mask.sum())``. (Which anchors were drawn is random and is not checked.)

    Raises
    ------
    AssertionError
        On a violated invariant, and when a mask (the result under test) is malformed: not an array
        of numbers, another shape than ``labels``, values other than 0/1.
    TypeError, ValueError
        Naming ``labels`` (real numbers, 1-D, no NaN), ``batch_size_per_image`` (an int >= 0) or
        ``positive_fraction`` (a finite real in [0, 1]).
    """
    lab = _checks.as_array(labels, "labels")       # ints or floats (torchvision's labels are float)
    if lab.ndim != 1:
        raise ValueError(f"`labels` must be 1-D with shape (N,); got shape {lab.shape}")
    if lab.dtype.kind == "f":
        _checks.check_finite(lab, "labels", allow_inf=True)
    batch_size_per_image = _checks.check_int(batch_size_per_image, "batch_size_per_image", low=0)
    positive_fraction = _checks.check_probability(positive_fraction, "positive_fraction")
    p = result_mask(pos_mask, "pos_mask", lab.shape, "one bool per label")
    q = result_mask(neg_mask, "neg_mask", lab.shape, "one bool per label")
    both = np.flatnonzero(p & q)
    if both.size:
        raise AssertionError(f"anchor {both[0]} is in both pos_mask and neg_mask (label {lab[both[0]]})")
    bad = np.flatnonzero(p & ~(lab >= 1))
    if bad.size:
        raise AssertionError(f"anchor {bad[0]} is a sampled positive but its label is {lab[bad[0]]} (needs >= 1)")
    bad = np.flatnonzero(q & ~(lab == 0))
    if bad.size:
        raise AssertionError(f"anchor {bad[0]} is a sampled negative but its label is {lab[bad[0]]} (needs 0)")
    npos, nneg = int((lab >= 1).sum()), int((lab == 0).sum())
    want_pos = min(npos, int(batch_size_per_image * positive_fraction))
    want_neg = min(nneg, batch_size_per_image - want_pos)
    if p.sum() != want_pos:
        raise AssertionError(f"{int(p.sum())} positives sampled; expected min(#pos = {npos}, "
                             f"int({batch_size_per_image} * {positive_fraction})) = {want_pos}")
    if q.sum() != want_neg:
        raise AssertionError(f"{int(q.sum())} negatives sampled; expected min(#neg = {nneg}, "
                             f"{batch_size_per_image} - {want_pos}) = {want_neg}")
