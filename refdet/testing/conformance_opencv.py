"""Conformance checks of OpenCV dnn's operators: ``NMSBoxes`` (int and float rects), ``NMSBoxesBatched``,
``softNMSBoxes``, ``blobFromImage`` (issue 15).

Split out of :mod:`refdet.testing.conformance_runtimes`, which re-exports every name here and
documents the signature each check expects from ``fn``; import the checks from there or from
:mod:`refdet.testing.conformance`.
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish, _first_diff, _index_error, _np

__all__ = ["opencv_nms_loop", "check_opencv_nms_boxes", "check_opencv_nms_boxes_batched",
           "check_opencv_soft_nms_boxes", "check_opencv_blob_from_image"]


# ---------------------------------------------------------------------------------------------------
# OpenCV NMSBoxes: the readable loop with the knobs that name a mismatch
# ---------------------------------------------------------------------------------------------------

def _plain_overlap(a, b, integer, iou, zero_area):
    """One pair's overlap under a variant.

    ``iou``: "opencv" (OpenCV's arithmetic), "float32" (``inter / union`` in float32), "float64"
    (double, not rounded), "plus_one" (OpenCV's rounding, but legacy widths ``w + 1``).
    """
    from refdet.runtimes.opencv import _overlap

    if iou == "opencv" and zero_area == "one":
        return float(_overlap(a[None], b[None], integer)[0, 0])
    one = 1 if iou == "plus_one" else 0
    dt = np.float32 if iou == "float32" else np.float64
    ax1, ay1, ax2, ay2 = dt(a[0]), dt(a[1]), dt(a[0] + a[2]), dt(a[1] + a[3])
    bx1, by1, bx2, by2 = dt(b[0]), dt(b[1]), dt(b[0] + b[2]), dt(b[1] + b[3])
    o = dt(one)
    area_a, area_b = (ax2 - ax1 + o) * (ay2 - ay1 + o), (bx2 - bx1 + o) * (by2 - by1 + o)
    if area_a + area_b <= 0:
        return 1.0 if zero_area == "one" else float("nan")        # OpenCV: areas summing to 0 -> IoU 1
    w = max(dt(0), min(ax2, bx2) - max(ax1, bx1) + o)
    h = max(dt(0), min(ay2, by2) - max(ay1, by1) + o)
    inter = w * h
    with np.errstate(all="ignore"):
        v = inter / (area_a + area_b - inter)
    if iou == "plus_one" or (iou == "opencv"):
        return float(np.float32(1) - np.float32(1.0 - v))
    return float(v)


def opencv_nms_loop(rects, scores, score_threshold, nms_threshold, eta=1.0, top_k=0, *, iou="opencv",
                    zero_area="one", score_rule=">", top_k_on="candidates", eta_rule="after_keep",
                    ties="lowest_index", inclusive=False):
    """``cv2.dnn.NMSBoxes`` as a readable loop, with the knobs other implementations turn.

    Defaults are OpenCV's (``modules/imgproc/src/nms.cpp``); :func:`refdet.runtimes.opencv.nms_boxes`
    is the vectorised version and equals this loop with the defaults (tested).

    Knobs: ``iou`` ("opencv": double IoU then ``1.f - (float)(1 - iou)``; "float32": ``inter /
    union`` in float32; "float64"; "plus_one": legacy ``+1`` widths), ``zero_area`` ("one": two
    zero-area rects have IoU 1; "nan": 0/0 never suppresses), ``score_rule`` (">" or ">="),
    ``top_k_on`` ("candidates" or "output"), ``eta_rule`` ("after_keep", "ignored", "always": shrink
    even below 0.5), ``ties`` ("lowest_index" or "highest_index"), ``inclusive`` (suppress at
    ``IoU >= threshold``).
    """
    from refdet import _checks
    from refdet.runtimes.opencv import _as_rects, _check_nms_args, _opencv_scores

    r, integer = _as_rects(rects)
    s = _opencv_scores(scores, len(r))
    # NMSBoxesBatched takes any real score threshold (NMSBoxes asserts >= 0): the loop serves both
    score_threshold, nms_threshold, eta, top_k = _check_nms_args(score_threshold, nms_threshold, eta, top_k,
                                                                 fn="NMSBoxes", check_score=False)
    _checks.check_choice(iou, "iou", ("opencv", "float32", "float64", "plus_one"))
    _checks.check_choice(zero_area, "zero_area", ("one", "nan"))
    _checks.check_choice(score_rule, "score_rule", (">", ">="))
    _checks.check_choice(top_k_on, "top_k_on", ("candidates", "output"))
    _checks.check_choice(eta_rule, "eta_rule", ("after_keep", "ignored", "always"))
    _checks.check_choice(ties, "ties", ("lowest_index", "highest_index"))
    inclusive = _checks.check_bool(inclusive, "inclusive")
    st = np.float32(score_threshold)
    cand = [i for i in range(len(s)) if (s[i] > st if score_rule == ">" else s[i] >= st)]
    if ties == "lowest_index":
        cand.sort(key=lambda i: -float(s[i]))                     # stable: lower index first
    else:
        cand.sort(key=lambda i: (-float(s[i]), -i))
    if top_k > 0 and top_k_on == "candidates":
        cand = cand[:top_k]
    t = np.float32(nms_threshold)
    keep = []
    for i in cand:
        ok = True
        for k in keep:
            o = _plain_overlap(r[i], r[k], integer, iou, zero_area)
            if np.isnan(o):
                continue                                           # 0/0 never suppresses
            if (o >= t) if inclusive else (o > t):
                ok = False
                break
        if ok:
            keep.append(i)
            if top_k > 0 and top_k_on == "output" and len(keep) == top_k:
                break
        if ok and eta < 1 and (t > 0.5 or eta_rule == "always") and eta_rule != "ignored":
            t = np.float32(t * np.float32(eta))
    return np.array(keep, np.int64)


#: (description, knobs of :func:`opencv_nms_loop`) tried in turn to name a mismatch
_OPENCV_NMS_VARIANTS = [
    ("IoU computed as inter / union in float32 (OpenCV rounds a double IoU: 1.f - (float)(1 - iou))",
     dict(iou="float32")),
    ("IoU in float64 compared without OpenCV's float32 rounding", dict(iou="float64")),
    ("int rects: IoU with +1 widths (legacy pixels; OpenCV's Rect area is width * height)", dict(iou="plus_one")),
    ("zero-area rects with IoU 0/0 (never suppress) instead of OpenCV's IoU 1 when the areas sum to 0",
     dict(zero_area="nan")),
    ("score threshold inclusive (score >= score_threshold; OpenCV keeps score > score_threshold)",
     dict(score_rule=">=")),
    ("top_k applied to the kept boxes instead of the sorted candidates before NMS", dict(top_k_on="output")),
    ("eta ignored (OpenCV shrinks the threshold by eta after each kept box while it is > 0.5)",
     dict(eta_rule="ignored")),
    ("eta applied even when the threshold is <= 0.5", dict(eta_rule="always")),
    ("equal scores visited highest index first (OpenCV's stable_sort visits the lowest first)",
     dict(ties="highest_index")),
    ("suppression at IoU >= threshold (OpenCV keeps overlap <= threshold)", dict(inclusive=True)),
]


def _opencv_nms_cause(got, case, batched):
    from refdet.runtimes.opencv import nms_boxes_batched

    lines = []
    hits = []
    for desc, knobs in _OPENCV_NMS_VARIANTS:
        if batched:
            continue
        try:
            alt = opencv_nms_loop(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                                  case["eta"], case["top_k"], **knobs)
        except Exception:
            continue
        if np.array_equal(alt, got):
            hits.append(desc)
    if hits:
        lines.append(f"  likely cause: {hits[0]}")
        lines += [f"  (also reproduced by: {h})" for h in hits[1:3]]
    if batched and not lines:
        exact = _per_class_nms(case)
        if np.array_equal(exact, got):
            lines.append("  likely cause: exact per-class NMS; OpenCV's NMSBoxesBatched moves each rect by "
                         "class_id * (max_coord + 1) and runs one NMS, so with negative coordinates or class ids "
                         "rects of different classes can suppress each other")
        del nms_boxes_batched
    return lines


def _per_class_nms(case):
    from refdet.runtimes.opencv import nms_boxes

    cls = np.asarray(case["class_ids"])
    parts = []
    for c in np.unique(cls):
        sub = np.flatnonzero(cls == c)
        k = nms_boxes(case["rects"][sub], case["scores"][sub], max(case["score_threshold"], 0.0),
                      case["nms_threshold"], eta=case["eta"], top_k=case["top_k"])
        parts.append(sub[k])
    if not parts:
        return np.zeros(0, np.int64)
    allk = np.concatenate(parts)
    s = np.asarray(case["scores"]).astype(np.float32)[allk]
    return allk[np.argsort(-s, kind="stable")]


def _opencv_nms_compare(fn, batched):
    from refdet.runtimes.opencv import nms_boxes, nms_boxes_batched

    def compare(case):
        c = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()}
        if batched:
            expected = nms_boxes_batched(case["rects"], case["scores"], case["class_ids"], case["score_threshold"],
                                         case["nms_threshold"], eta=case["eta"], top_k=case["top_k"])
            got = fn(c["rects"], c["scores"], c["class_ids"], c["score_threshold"], c["nms_threshold"], c["eta"],
                     c["top_k"])
        else:
            expected = nms_boxes(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                                 eta=case["eta"], top_k=case["top_k"])
            got = fn(c["rects"], c["scores"], c["score_threshold"], c["nms_threshold"], c["eta"], c["top_k"])
        got = _np(got).astype(np.int64).ravel()
        if np.array_equal(got, expected):
            return 0.0, None
        k = _first_diff(got, expected)
        lines = [f"kept indices differ at position {k}:", f"  yours  {got.tolist()}",
                 f"  refdet {expected.tolist()} (OpenCV's rule)"]
        r = np.asarray(case["rects"])
        if k < len(got) and k < len(expected):
            a, b = int(got[k]), int(expected[k])
            lines.append(f"  rect {a} = {r[a].tolist()} (score {float(case['scores'][a]):.9g}) vs rect {b} = "
                         f"{r[b].tolist()} (score {float(case['scores'][b]):.9g})")
        lines += _opencv_nms_cause(got, case, batched)
        return _index_error(got, expected), "\n".join(lines)
    return compare


def _opencv_nms_golden(batched=False):
    i32 = np.int32
    f32 = np.float32
    third = float(np.nextafter(f32(1 / 3), f32(0)))
    cases = [
        ("empty input", dict(rects=np.zeros((0, 4), i32), scores=np.zeros(0, f32), score_threshold=0.0,
                             nms_threshold=0.5, eta=1.0, top_k=0)),
        # IoU([0,0,10,10], [0,0,10,5]) = 50 / 100 = 0.5: kept by 'overlap <= 0.5'
        ("IoU exactly at the threshold (kept)", dict(rects=np.array([[0, 0, 10, 10], [0, 0, 10, 5]], i32),
                                                     scores=np.array([0.9, 0.8], f32), score_threshold=0.0,
                                                     nms_threshold=0.5, eta=1.0, top_k=0)),
        # IoU 50 / 150 = 1/3: float32(1/3) = 0.33333334 but OpenCV's 1.f - (float)(2/3) = 0.3333333, one ulp
        # lower: at the threshold 0.3333333 OpenCV keeps the pair, a float32 inter/union suppresses it
        ("IoU 1/3 rounded by 1.f - (float)(1 - iou)", dict(rects=np.array([[0, 0, 10, 10], [5, 0, 10, 10]], i32),
                                                          scores=np.array([0.9, 0.8], f32), score_threshold=0.0,
                                                          nms_threshold=third, eta=1.0, top_k=0)),
        # identical zero-area rects: the areas sum to 0, jaccardDistance returns 0, IoU 1: suppressed
        ("identical zero-area rects (IoU 1)", dict(rects=np.array([[3, 3, 0, 0], [3, 3, 0, 0]], i32),
                                                   scores=np.array([0.9, 0.8], f32), score_threshold=0.0,
                                                   nms_threshold=0.5, eta=1.0, top_k=0)),
        ("identical rects, tied scores", dict(rects=np.array([[1, 1, 4, 4]] * 3, i32), scores=np.full(3, 0.7, f32),
                                              score_threshold=0.0, nms_threshold=0.5, eta=1.0, top_k=0)),
        # the score 0.5 equals the threshold: not a candidate (score > score_threshold)
        ("score equal to score_threshold", dict(rects=np.array([[0, 0, 2, 2], [5, 5, 2, 2]], i32),
                                                scores=np.array([0.9, 0.5], f32), score_threshold=0.5,
                                                nms_threshold=0.5, eta=1.0, top_k=0)),
        # rect 1 is suppressed by rect 0 and rect 2 is disjoint: top_k=2 takes candidates 0 and 1 only -> [0]
        ("top_k truncates candidates", dict(rects=np.array([[0, 0, 10, 10], [0, 0, 10, 9], [30, 30, 5, 5]], i32),
                                            scores=np.array([0.9, 0.8, 0.7], f32), score_threshold=0.0,
                                            nms_threshold=0.5, eta=1.0, top_k=2)),
        # thr 0.6, eta 0.5: after rect 0 is kept the threshold is 0.3; IoU(0, 1) = 0.4 now suppresses
        ("eta shrinks the threshold", dict(rects=np.array([[0, 0, 10, 10], [0, 0, 10, 4], [40, 0, 5, 5]], i32),
                                           scores=np.array([0.9, 0.8, 0.7], f32), score_threshold=0.0,
                                           nms_threshold=0.6, eta=0.5, top_k=0)),
        # float rects are cv::Rect2d: [0.4, 0, 1, 1] vs [0, 0, 1, 1] has IoU 0.6 / 1.4, not 1
        ("float rects (Rect2d)", dict(rects=np.array([[0.4, 0, 1, 1], [0, 0, 1, 1]]), scores=np.array([0.9, 0.8], f32),
                                      score_threshold=0.0, nms_threshold=0.5, eta=1.0, top_k=0)),
    ]
    if batched:
        out = []
        for label, c in cases:
            c = dict(c, class_ids=np.zeros(len(c["rects"]), np.int32))
            out.append((label + " (one class)", c))
        # negative coordinates: class 1's rect is moved by 1 * (max_coord + 1) = 11 onto class 0's rect
        out.append(("negative coordinates: rects of two classes collide after the offset",
                    dict(rects=np.array([[0, 0, 10, 10], [-11, -11, 10, 10]], i32), scores=np.array([0.9, 0.8], f32),
                         class_ids=np.array([0, 1], np.int32), score_threshold=0.0, nms_threshold=0.5, eta=1.0,
                         top_k=0)))
        return out
    return cases


def check_opencv_nms_boxes(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against ``cv2.dnn.NMSBoxes``'s rules (:func:`refdet.runtimes.opencv.nms_boxes`).

    ``fn(rects, scores, score_threshold, nms_threshold, eta, top_k) -> indices``. Golden cases: IoU
    on the threshold, OpenCV's double-then-float IoU rounding, zero-area rects (IoU 1), ties, the
    strict score threshold, ``top_k`` on the candidates, ``eta``, float rects; then hypothesis cases
    with int and float rects. Returns a ``ConformanceReport``.
    """
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("opencv_nms_boxes", "differing indices", "opencv", _opencv_nms_compare(fn, False), progress)
    return _finish(r.run(_opencv_nms_golden(), srt.opencv_nms_cases(), n_cases, seed), raise_on_failure)


def check_opencv_nms_boxes_batched(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against ``cv2.dnn.NMSBoxesBatched``
    (:func:`refdet.runtimes.opencv.nms_boxes_batched`, the coordinate-offset trick).

    ``fn(rects, scores, class_ids, score_threshold, nms_threshold, eta, top_k) -> indices``.
    """
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("opencv_nms_boxes_batched", "differing indices", "opencv", _opencv_nms_compare(fn, True), progress)
    return _finish(r.run(_opencv_nms_golden(True), srt.opencv_nms_cases(batched=True), n_cases, seed),
                   raise_on_failure)


def _opencv_soft_compare(fn):
    from refdet.runtimes.opencv import soft_nms_boxes

    def compare(case):
        expected = soft_nms_boxes(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                                  top_k=case["top_k"], sigma=case["sigma"], method=case["method"])
        got = fn(case["rects"].copy(), case["scores"].copy(), case["score_threshold"], case["nms_threshold"],
                 case["top_k"], case["sigma"], case["method"])
        gi = _np(got[0]).astype(np.int64).ravel()
        gs = _np(got[1]).astype(np.float32).ravel()
        if np.array_equal(gi, expected.indices) and len(gs) == len(gi):
            from refdet.testing.compare_floats import ulp_distance
            err = float(np.max(ulp_distance(gs, expected.scores), initial=0.0))
            if err <= 2:
                return err, None
            k = int(np.argmax(ulp_distance(gs, expected.scores)))
            return err, (f"selection agrees; the decayed score of rect {int(gi[k])} differs by {err:.0f} ulp: yours "
                         f"{float(gs[k]):.9g}, refdet {float(expected.scores[k]):.9g}" + _soft_cause(gi, gs, case))
        k = _first_diff(gi, expected.indices)
        msg = (f"selection differs at position {k}:\n  yours  {gi.tolist()}\n  refdet {expected.indices.tolist()}"
               + _soft_cause(gi, gs, case))
        return _index_error(gi, expected.indices), msg
    return compare


def _soft_cause(gi, gs, case):
    """Name the refdet soft_nms variant that reproduces the selection, if one does."""
    from refdet.nms import soft_nms

    r = np.asarray(case["rects"]).astype(np.float64)
    xyxy = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], axis=1)
    if (r[:, 2:] < 0).any():
        return ""
    tries = [("the paper's Gaussian exp(-0.5 IoU^2 / sigma) (TF, OpenVINO) instead of OpenCV's exp(-IoU^2 / sigma)",
              dict(convention="tf", hard_above_threshold=False)),
             ("linear decay at IoU >= threshold (OpenCV decays only above it)", dict(convention="mmdet")),
             ("refdet/mmcv Soft-NMS (working-array tie order, first selection never tested)",
              dict(convention="torchvision"))]
    for desc, kw in tries:
        try:
            res = soft_nms(xyxy, np.asarray(case["scores"], np.float32), method=case["method"], sigma=case["sigma"],
                           iou_threshold=case["nms_threshold"], score_threshold=case["score_threshold"], **kw)
        except Exception:
            continue
        ind = res.indices[:case["top_k"]] if case["top_k"] else res.indices
        if np.array_equal(ind, gi):
            return f"\n  likely cause: {desc}"
    return ""


def _opencv_soft_golden():
    i32, f32 = np.int32, np.float32
    sq = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [40, 40, 4, 4]], i32)
    return [
        ("empty input", dict(rects=np.zeros((0, 4), i32), scores=np.zeros(0, f32), score_threshold=0.0,
                             nms_threshold=0.3, top_k=0, sigma=0.5, method="gaussian")),
        # IoU 0.5 > 0.3: the second score is multiplied by 1 - 0.5
        ("linear decay above the threshold", dict(rects=sq, scores=np.array([0.9, 0.8, 0.1], f32), score_threshold=0.05,
                                                  nms_threshold=0.3, top_k=0, sigma=0.5, method="linear")),
        # IoU 0.5 == threshold: no decay (strict '>')
        ("linear, IoU exactly at the threshold", dict(rects=sq, scores=np.array([0.9, 0.8, 0.1], f32),
                                                      score_threshold=0.0, nms_threshold=0.5, top_k=0, sigma=0.5,
                                                      method="linear")),
        # Gaussian weight exp(-0.25 / 0.5) = 0.6065: 0.8 -> 0.485
        ("gaussian decay", dict(rects=sq, scores=np.array([0.9, 0.8, 0.1], f32), score_threshold=0.0,
                                nms_threshold=0.3, top_k=0, sigma=0.5, method="gaussian")),
        # equal scores: the lower index is selected first at every step
        ("tied scores", dict(rects=np.array([[0, 0, 4, 4], [20, 20, 4, 4], [0, 0, 4, 4]], i32),
                             scores=np.full(3, 0.5, f32), score_threshold=0.0, nms_threshold=0.3, top_k=0, sigma=0.5,
                             method="linear")),
        # a maximum equal to the threshold is selected ('<' stops), the first selection is tested too
        ("score equal to the threshold; all below it", dict(rects=sq, scores=np.array([0.5, 0.2, 0.1], f32),
                                                            score_threshold=0.5, nms_threshold=0.3, top_k=0, sigma=0.5,
                                                            method="linear")),
        ("top_k", dict(rects=sq, scores=np.array([0.9, 0.8, 0.7], f32), score_threshold=0.0, nms_threshold=0.3,
                       top_k=2, sigma=0.5, method="gaussian")),
    ]


def check_opencv_soft_nms_boxes(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against ``cv2.dnn.softNMSBoxes`` (:func:`refdet.runtimes.opencv.soft_nms_boxes`).

    ``fn(rects (N, 4) int, scores, score_threshold, nms_threshold, top_k, sigma, method) -> (indices,
    scores)``. Indices must agree exactly, decayed scores within 2 float32 ulps.
    """
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("opencv_soft_nms_boxes", "ulp / differing indices", "opencv", _opencv_soft_compare(fn), progress)
    return _finish(r.run(_opencv_soft_golden(), srt.opencv_soft_nms_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# OpenCV blobFromImage
# ---------------------------------------------------------------------------------------------------

def _blob_variants(case):
    """(description, blob) pairs of the usual blobFromImage mistakes."""
    from refdet.runtimes.opencv import blob_from_image

    c = dict(case)
    out = []
    mean = list(c["mean"]) + [0.0] * (4 - len(c["mean"]))
    if c["swap_rb"]:
        swapped = (mean[2], mean[1], mean[0], mean[3])
        out.append(("mean applied in the input (BGR) order; OpenCV swaps mean[0] and mean[2] with the planes, so "
                    "mean is given in the output order", dict(c, mean=swapped)))
        out.append(("R and B not swapped", dict(c, swap_rb=False)))
    if c["scalefactor"] != 1.0:
        out.append(("scale applied before the mean is subtracted: (x * scale - mean); OpenCV computes "
                    "(x - mean) * scale", None))
    if c["crop"] and c["size"] is not None:
        out.append(("resized to size without centre-cropping (crop ignored)", dict(c, crop=False)))
    res = []
    for desc, kw in out:
        if kw is None:
            img = np.asarray(c["image"], np.float32)
            base = blob_from_image(img, 1.0, c["size"], (0.0,) * 4, c["swap_rb"], c["crop"])
            m = np.asarray(mean, np.float32)[:base.shape[1]]          # output channel order
            res.append((desc, base * np.float32(c["scalefactor"]) - m[None, :, None, None]))
        else:
            try:
                res.append((desc, blob_from_image(**kw)))
            except Exception:
                continue
    return res


def _blob_compare(fn):
    from refdet.runtimes.opencv import blob_from_image

    def compare(case):
        expected = blob_from_image(**case)
        got = _np(fn(case["image"].copy(), case["scalefactor"], case["size"], case["mean"], case["swap_rb"],
                     case["crop"])).astype(np.float32)
        resized = case["size"] is not None and tuple(case["size"]) != case["image"].shape[1::-1]
        scale = float(np.max(np.abs(expected), initial=1.0))
        tol = 16 * float(np.finfo(np.float32).eps) * max(scale, 255.0 * abs(case["scalefactor"])) if resized else 0.0
        if got.shape == expected.shape:
            err = float(np.max(np.abs(got - expected), initial=0.0))
            if err <= tol:
                return err, None
        else:
            err = float("inf")
        lines = [f"blob differs: yours shape {got.shape}, refdet {expected.shape}"
                 + (f"; max |difference| {err:.3g} (allowed {tol:.3g}{' for a resize' if resized else ''})"
                    if got.shape == expected.shape else "")]
        for desc, alt in _blob_variants(case):
            if alt.shape == got.shape and np.allclose(alt, got, rtol=0, atol=max(tol, 1e-4 * scale)):
                lines.append(f"  likely cause: {desc}")
                break
        return err, "\n".join(lines)
    return compare


def _blob_golden():
    px = np.array([[[10, 20, 30]]], np.uint8)
    grad = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    return [
        # (30 - 1) * 0.5 = 14.5: channel 0 of the blob is the image's channel 2 and meets mean[0]
        ("swapRB with a mean", dict(image=px, scalefactor=0.5, size=None, mean=(1, 2, 3), swap_rb=True, crop=False)),
        ("gray image", dict(image=grad[:, :, 0], scalefactor=1 / 255, size=None, mean=(0.5,), swap_rb=False,
                            crop=False)),
        ("resize up", dict(image=grad, scalefactor=1.0, size=(12, 8), mean=(0,), swap_rb=False, crop=False)),
        ("resize and centre crop", dict(image=grad, scalefactor=1.0, size=(4, 4), mean=(0,), swap_rb=False,
                                        crop=True)),
    ]


def check_opencv_blob_from_image(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against ``cv2.dnn.blobFromImage`` (:func:`refdet.runtimes.opencv.blob_from_image`).

    ``fn(image, scalefactor, size, mean, swap_rb, crop) -> blob (1, C, H, W)``. Exact without a resize;
    within ``16 eps * max|value|`` with one (OpenCV 5's float bilinear rounding).
    """
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("opencv_blob_from_image", "abs", "opencv", _blob_compare(fn), progress)
    return _finish(r.run(_blob_golden(), srt.opencv_blob_cases(), n_cases, seed), raise_on_failure)
