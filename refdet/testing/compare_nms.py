"""Compare two NMS results and explain the first difference.

    from refdet.testing import assert_nms_equal
    assert_nms_equal(my_keep, refdet.nms(boxes, scores, 0.5), boxes, scores, iou_threshold=0.5)

On a mismatch the AssertionError says where the lists first differ, which box is missing or extra,
its score, the IoU with the kept box that did (or would have) suppressed it, whether that IoU sits
exactly on the threshold, whether scores tie, and which NMS conventions (``>=``, highest-index ties,
+1 pixels, ONNX corners) reproduce each side.
"""
from __future__ import annotations

import importlib
import itertools

import numpy as np

from refdet import _checks
from refdet.testing._malformed import result_indices

__all__ = ["assert_nms_equal", "explain_nms_difference"]

_VARIANTS = {
    "inclusive": (False, True),
    "ties": ("lowest_index", "highest_index"),
    "plus_one": (False, True),
    "corner_order": ("as_given", "any"),
}


def _f(x):
    """A float for a message: shortest repr that round-trips its own precision."""
    x = np.asarray(x)
    return repr(float(x)) if x.dtype != np.float32 else f"{float(x):.9g} (float32)"


def _describe_variant(v):
    parts = []
    parts.append("IoU >= thr" if v["inclusive"] else "IoU > thr")
    parts.append("ties: highest index first" if v["ties"] == "highest_index" else "ties: lowest index first")
    if v["plus_one"]:
        parts.append("+1 pixel widths")
    if v["corner_order"] == "any":
        parts.append("ONNX/TF corners and guards")
    return ", ".join(parts)


def _variants_matching(target, boxes, scores, thr):
    _nms = importlib.import_module("refdet.nms")

    out = []
    for vals in itertools.product(*_VARIANTS.values()):
        v = dict(zip(_VARIANTS, vals))
        if v["plus_one"] and v["corner_order"] == "any":
            continue
        try:
            k = _nms.nms(boxes, scores, thr, **v)
        except ValueError:
            continue
        if np.array_equal(k, target):
            out.append(_describe_variant(v))
    return out


def _iou_with(boxes, i, others):
    """Float IoUs (torchvision's order of operations, the boxes' dtype) of box ``i`` with ``others``:
    the readable per-pair formula, :func:`refdet.reference.nms.pair_iou`."""
    from refdet.reference.nms import pair_iou

    return np.array([pair_iou(boxes[i], boxes[j]) for j in others], dtype=boxes.dtype)


def _box_story(name, idx, boxes, scores, kept_before, thr, side):
    """Why ``idx`` may have been suppressed (or not) by the boxes kept before it on ``side``."""
    lines = [f"  {name} box {idx}: {boxes[idx].tolist()}, score {_f(scores[idx])}"]
    before = np.asarray([k for k in kept_before if k != idx], dtype=np.int64)
    if before.size == 0:
        lines.append(f"    no box was kept before it in {side}")
        return lines
    ious = _iou_with(boxes, idx, before)
    with np.errstate(invalid="ignore"):
        j = int(np.nanargmax(ious)) if np.isfinite(ious).any() else 0
    other = int(before[j])
    iou = ious[j]
    rel = ""
    if thr is not None and np.isfinite(iou):
        if float(iou) == thr:
            rel = f" == threshold {thr!r} EXACTLY (kept by '>', suppressed by '>=')"
        elif float(iou) > thr:
            rel = f" > threshold {thr!r}"
        else:
            rel = f" <= threshold {thr!r} (difference {float(iou) - thr:+.3g})"
    lines.append(f"    highest IoU with a box kept before it in {side}: box {other} "
                 f"(score {_f(scores[other])}), IoU {_f(iou)}{rel}")
    if scores[other] == scores[idx]:
        lines.append(f"    boxes {other} and {idx} have EQUAL scores: the tie order decides which survives")
    if not np.isfinite(iou):
        lines.append("    the IoU is NaN (0/0: zero-area boxes): torchvision never suppresses on it")
    return lines


def explain_nms_difference(keep, expected, boxes, scores, *, iou_threshold=None):
    """The explanation text of :func:`assert_nms_equal`, or ``None`` when the results are equal.

    Raises AssertionError when ``keep`` or ``expected`` is not a list of distinct box indices (see
    :func:`assert_nms_equal`), TypeError / ValueError naming ``boxes``, ``scores`` or
    ``iou_threshold`` when those are malformed.
    """
    b = _checks.as_boxes(boxes, "boxes")
    s = _checks.as_scores(scores, "scores", n=len(b), allow_nan=True)
    if iou_threshold is not None:
        iou_threshold = _checks.check_unit_threshold(iou_threshold, "iou_threshold")
    what = f"indices of kept boxes, 0 .. N - 1 with N = {len(b)}"
    keep = result_indices(keep, "`keep` (the result under test)", n=len(b), what=what, unique=True)
    expected = result_indices(expected, "`expected`", n=len(b), what=what, unique=True)
    if np.array_equal(keep, expected):
        return None
    n = min(len(keep), len(expected))
    diff = np.flatnonzero(keep[:n] != expected[:n])
    k = int(diff[0]) if diff.size else n
    lines = [f"NMS results differ: {len(keep)} kept vs {len(expected)} expected; first difference at "
             f"position {k}"]
    got = int(keep[k]) if k < len(keep) else None
    exp = int(expected[k]) if k < len(expected) else None
    lines.append(f"  got      {keep[max(0, k - 2):k + 3].tolist()} (position {k}: "
                 f"{'end of list' if got is None else got})")
    lines.append(f"  expected {expected[max(0, k - 2):k + 3].tolist()} (position {k}: "
                 f"{'end of list' if exp is None else exp})")
    set_k, set_e = set(keep.tolist()), set(expected.tolist())
    if set_k == set_e:
        lines.append("  same boxes kept, different ORDER")
        if got is not None and exp is not None and s[got] == s[exp]:
            lines.append(f"  boxes {got} and {exp} have equal scores {_f(s[got])}: tie order differs "
                         "(stable lowest-index-first vs highest-index-first, or an unstable sort)")
        elif got is not None and exp is not None:
            lines.append(f"  scores {_f(s[got])} (got) vs {_f(s[exp])} (expected): one side is not sorted "
                         "by decreasing score")
    else:
        for idx in ([got] if got is not None else []) + ([exp] if exp is not None else []):
            if idx in set_k and idx not in set_e:
                lines.append(f"  box {idx} is kept in got but suppressed in expected:")
                lines += _box_story("extra", idx, b, s, expected[:k + 1].tolist()
                                    + [e for e in expected[k + 1:] if s[e] >= s[idx]], iou_threshold,
                                    "expected")
            elif idx in set_e and idx not in set_k:
                lines.append(f"  box {idx} is kept in expected but suppressed in got:")
                lines += _box_story("missing", idx, b, s, keep[:k + 1].tolist()
                                    + [g for g in keep[k + 1:] if s[g] >= s[idx]], iou_threshold, "got")
    if iou_threshold is not None and b.ndim == 2 and b.shape[-1] == 4:
        for name, target in (("got", keep), ("expected", expected)):
            m = _variants_matching(target, b, s, iou_threshold)
            lines.append(f"  refdet.nms conventions reproducing {name}: "
                         + ("; ".join(m) if m else "none of the standard ones"))
    return "\n".join(lines)


def assert_nms_equal(keep, expected, boxes, scores, *, iou_threshold=None):
    """Assert two NMS results are identical (same indices, same order); explain the first difference.

    Parameters
    ----------
    keep : array-like of int, shape (K,)
        The result under test (a torch tensor works too). Anything but distinct box indices in
        ``[0, N)`` (``None``, a string, a 2-D array, a fraction, an index out of range, a repeated
        index) is itself a failure: an AssertionError saying what is malformed.
    expected : array-like of int, shape (K',)
        The reference result (for instance ``refdet.nms(boxes, scores, thr)``).
    boxes : ndarray, shape (N, 4), xyxy
    scores : ndarray, shape (N,)
    iou_threshold : float, optional
        Enables the threshold analysis and the search for conventions that reproduce each side:
        refdet recomputes NMS under ``>`` / ``>=``, lowest / highest index ties, continuous / +1
        widths and torchvision / ONNX corner handling.

    Raises
    ------
    AssertionError
        With the explanation (first differing position; the extra or missing box, its score, its
        highest IoU with a box kept before it and how that IoU compares with the threshold; equal
        scores; NaN IoUs; the matching conventions).
    """
    msg = explain_nms_difference(keep, expected, boxes, scores, iou_threshold=iou_threshold)
    if msg is not None:
        raise AssertionError(msg)
