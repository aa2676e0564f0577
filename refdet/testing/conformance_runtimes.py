"""Conformance checks of other runtimes' operators: OpenCV dnn and OpenVINO (issue 15).

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS`` for ``refdet
verify opencv`` / ``refdet verify openvino``) or from here::

    from refdet.testing import conformance_runtimes as cr
    cr.check_opencv_nms_boxes(my_nms_boxes)

Each check feeds golden edge cases and then seeded hypothesis cases (strategies of
:mod:`refdet.testing.strategies_runtimes`) to ``fn``, compares with the refdet reproduction in
:mod:`refdet.runtimes`, and explains the first mismatch by naming the variant that reproduces it
("int rects: IoU with +1 widths", "eta applied before the keep test", "top_k applied to the kept
boxes instead of the candidates", "zero-area rects with IoU 0/0 instead of 1", ...).

Signatures expected from ``fn`` (NumPy in; arrays or lists out):

check_opencv_nms_boxes
    ``fn(rects (N, 4) xywh, scores (N,), score_threshold, nms_threshold, eta, top_k) -> indices (K,)``
check_opencv_nms_boxes_batched
    ``fn(rects, scores, class_ids (N,), score_threshold, nms_threshold, eta, top_k) -> indices``
check_opencv_soft_nms_boxes
    ``fn(rects (N, 4) int, scores, score_threshold, nms_threshold, top_k, sigma, method) ->
    (indices (K,), scores (K,))`` with ``method`` "linear" or "gaussian"
check_opencv_blob_from_image
    ``fn(image (H, W[, C]), scalefactor, size (W, H) or None, mean, swap_rb, crop) -> (1, C, H', W')``
check_openvino_nms
    ``fn(boxes (B, N, 4), scores (B, C, N), max_output_boxes_per_class, iou_threshold, score_threshold,
    soft_nms_sigma, box_encoding, sort_result_descending)`` (keywords) ``-> (selected_indices (K, 3),
    selected_scores (K, 3)[, valid_outputs])``
check_openvino_prior_box, check_openvino_prior_box_clustered
    ``fn(layer_shape (H, W), image_shape (IH, IW), attrs dict) -> (2, 4 * H * W * P)``
check_openvino_fake_quantize
    ``fn(x, input_low, input_high, output_low, output_high, levels)`` (keywords) ``-> y`` like ``x``
check_openvino_roi_align
    ``fn(features, rois (K, 4), batch_indices, pooled_h, pooled_w, sampling_ratio, spatial_scale, mode,
    aligned_mode)`` (keywords) ``-> (K, C, pooled_h, pooled_w)``
check_openvino_roi_pooling
    ``fn(features, rois (K, 5), output_size, spatial_scale, method)`` (keywords) ``-> (K, C, PH, PW)``
check_openvino_interpolate
    ``fn(x, sizes=, axes=, mode=, coordinate_transformation_mode=, nearest_mode=) -> y``
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish

__all__ = ["check_opencv_nms_boxes", "check_opencv_nms_boxes_batched", "check_opencv_soft_nms_boxes",
           "check_opencv_blob_from_image", "check_openvino_nms",
           "check_openvino_prior_box", "check_openvino_prior_box_clustered", "check_openvino_fake_quantize",
           "check_openvino_roi_align", "check_openvino_roi_pooling", "check_openvino_interpolate",
           "RUNTIME_CHECKS"]




def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _index_error(got, expected):
    m = min(len(got), len(expected))
    return float(abs(len(got) - len(expected)) + int(np.sum(got[:m] != expected[:m])))


def _first_diff(got, expected):
    m = min(len(got), len(expected))
    d = np.flatnonzero(got[:m] != expected[:m])
    return int(d[0]) if d.size else m


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
    from refdet.runtimes.opencv import _as_rects

    r, integer = _as_rects(rects)
    s = np.asarray(scores).astype(np.float32)
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


# ---------------------------------------------------------------------------------------------------
# OpenVINO NonMaxSuppression-9
# ---------------------------------------------------------------------------------------------------

def _ov_nms_variants(case):
    """(description, NMSResult) of the usual departures from the CPU plugin's NMS."""
    from refdet.nms import onnx_non_max_suppression
    from refdet.runtimes.openvino import non_max_suppression

    out = []
    kw = dict(case)
    if kw["soft_nms_sigma"] == 0:
        try:
            onnx = onnx_non_max_suppression(kw["boxes"], kw["scores"], kw["max_output_boxes_per_class"],
                                            min(max(kw["iou_threshold"], 0.0), 1.0), kw["score_threshold"],
                                            center_point_box=int(kw["box_encoding"] == "center"))
            out.append(("suppression at IoU > threshold (ONNX, OpenVINO's reference implementation); the CPU "
                        "plugin suppresses at IoU >= threshold", onnx, None))
        except Exception:
            pass
    else:
        alt = non_max_suppression(**dict(kw, soft_nms_sigma=kw["soft_nms_sigma"] / 2))
        out.append(("Soft-NMS weight exp(-iou^2 / sigma) (the paper, mmcv); OpenVINO uses exp(-0.5 iou^2 / sigma)",
                    alt.selected_indices, alt.selected_scores))
    alt = non_max_suppression(**dict(kw, degenerate="reference"))
    out.append(("zero-area boxes with IoU 0 (OpenVINO's reference guard); the CPU plugin's JIT kernel computes "
                "0/0 = NaN (never suppresses; weight +inf in Soft-NMS)", alt.selected_indices, alt.selected_scores))
    alt = non_max_suppression(**dict(kw, sort_result_descending=not kw["sort_result_descending"]))
    out.append(("sort_result_descending read the other way round", alt.selected_indices, alt.selected_scores))
    return out


def _ov_nms_compare(fn):
    from refdet.runtimes.openvino import non_max_suppression

    def compare(case):
        exp = non_max_suppression(**case)
        got = fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()})
        gi = _np(got[0]).astype(np.int64).reshape(-1, 3)
        gs = _np(got[1]).astype(np.float32).reshape(-1, 3)
        valid = int(np.asarray(got[2]).ravel()[0]) if len(got) > 2 else len(gi)
        # (OpenVINO leaves valid_outputs uninitialised when min(N, max_output_boxes_per_class) is 0: clamp it)
        valid = min(max(valid, 0), len(gi))
        gi, gs = gi[:valid], gs[:valid]
        if np.array_equal(gi, exp.selected_indices):
            from refdet.testing.compare_floats import ulp_distance
            if len(gs) == len(gi):
                d = ulp_distance(gs[:, 2], exp.selected_scores[:, 2]) if len(gs) else np.zeros(0)
                same_inf = np.isinf(gs[:, 2]) & (gs[:, 2] == exp.selected_scores[:, 2])
                d = np.where(same_inf, 0, d)
                err = float(np.max(d, initial=0.0))
                if err <= 4:
                    return err, None
                return err, f"selection agrees; a selected score differs by {err:.0f} ulp"
        k = _first_diff(gi.reshape(-1), exp.selected_indices.reshape(-1)) // 3
        lines = [f"selected [batch, class, box] rows differ at row {k}:",
                 f"  yours  {gi.tolist()[:12]}{' ...' if len(gi) > 12 else ''}",
                 f"  refdet {exp.selected_indices.tolist()[:12]}{' ...' if len(exp.selected_indices) > 12 else ''}"]
        for desc, alt_i, _ in _ov_nms_variants(case):
            if np.array_equal(alt_i, gi):
                lines.append(f"  likely cause: {desc}")
                break
        return _index_error(gi.reshape(-1), exp.selected_indices.reshape(-1)), "\n".join(lines)
    return compare


def _ov_nms_golden():
    f = np.float32
    sq = np.array([[[0, 0, 10, 10], [0, 0, 5, 10], [20, 20, 30, 30]]], f)
    base = dict(boxes=sq, scores=np.array([[[0.9, 0.8, 0.7]]], f), max_output_boxes_per_class=10, iou_threshold=0.5,
                score_threshold=0.0, soft_nms_sigma=0.0, box_encoding="corner", sort_result_descending=True)
    zero = np.array([[[3, 3, 3, 3], [3, 3, 3, 3], [0, 0, 2, 2]]], f)
    return [
        # IoU 50 / 100 = 0.5 on the threshold: the CPU plugin suppresses (>=), ONNX keeps
        ("IoU exactly at the threshold (suppressed)", base),
        # threshold 0: IoU 0 >= 0, even the disjoint box goes
        ("iou_threshold 0", dict(base, iou_threshold=0.0)),
        ("score equal to score_threshold (dropped)", dict(base, score_threshold=0.8)),
        ("max_output_boxes_per_class 0", dict(base, max_output_boxes_per_class=0)),
        ("max_output_boxes_per_class 1", dict(base, max_output_boxes_per_class=1)),
        ("center encoding", dict(base, boxes=np.array([[[5, 5, 10, 10], [5, 2.5, 10, 5], [25, 25, 10, 10]]], f),
                                 box_encoding="center")),
        # Gaussian weight exp(-0.5 * 0.25 / 0.5) = 0.7788: 0.8 -> 0.623
        ("soft-NMS", dict(base, soft_nms_sigma=0.5)),
        ("zero-area duplicates (0/0)", dict(base, boxes=zero, iou_threshold=0.0)),
        ("tied scores over batches and classes", dict(base, boxes=np.repeat(sq, 2, axis=0),
                                                      scores=np.full((2, 2, 3), 0.5, f))),
    ]


def check_openvino_nms(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against OpenVINO NonMaxSuppression-9 on the CPU plugin
    (:func:`refdet.runtimes.openvino.non_max_suppression`).

    ``fn(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold, soft_nms_sigma,
    box_encoding, sort_result_descending)`` (keywords) ``-> (selected_indices (K, 3), selected_scores
    (K, 3)[, valid_outputs])``. Indices exact; Soft-NMS scores within 4 float32 ulps.
    """
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("openvino_nms", "ulp / differing indices", "openvino", _ov_nms_compare(fn), progress)
    return _finish(r.run(_ov_nms_golden(), srt.openvino_nms_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# OpenVINO PriorBox, PriorBoxClustered
# ---------------------------------------------------------------------------------------------------

def _prior_variants(case, clustered):
    from refdet.runtimes.openvino import prior_box, prior_box_clustered

    a = dict(case["attrs"])
    fn = prior_box_clustered if clustered else prior_box
    tries = [("clip ignored" if a.get("clip", clustered) else "clipped although clip is false",
              dict(a, clip=not a.get("clip", clustered)))]
    if clustered:
        ih, iw = case["image_shape"]
        h, w = case["layer_shape"]
        if bool(a.get("step_widths")) != bool(a.get("step_heights")) and not a.get("step"):
            tries.append(("the missing step derived from the image (OpenVINO derives both only when both "
                          "step_widths and step_heights are 0: the other stays 0)",
                          dict(a, step_widths=a.get("step_widths") or iw / w,
                               step_heights=a.get("step_heights") or ih / h)))
    else:
        tries.append(("min_max_aspect_ratios_order reversed (Caffe puts the aspect-ratio boxes before the "
                      "sqrt(min * max) square when it is false)",
                      dict(a, min_max_aspect_ratios_order=not a.get("min_max_aspect_ratios_order", True))))
        tries.append(("flip ignored" if a.get("flip") else "flipped ratios added although flip is false",
                      dict(a, flip=not a.get("flip", False))))
    out = []
    for desc, kw in tries:
        try:
            out.append((desc, fn(case["layer_shape"], case["image_shape"], **kw)))
        except ValueError:
            continue
    return out


def _prior_compare(fn, clustered):
    from refdet.runtimes.openvino import prior_box, prior_box_clustered

    ref = prior_box_clustered if clustered else prior_box

    def compare(case):
        exp = ref(case["layer_shape"], case["image_shape"], **case["attrs"])
        got = _np(fn(case["layer_shape"], case["image_shape"], dict(case["attrs"]))).astype(np.float32)
        if got.shape == exp.shape and np.array_equal(got, exp):
            return 0.0, None
        if got.shape != exp.shape:
            msg = f"output shape differs: yours {got.shape}, refdet {exp.shape} ({exp.shape[1] // 4} coordinates sets)"
            err = float("inf")
        else:
            d = np.abs(got - exp)
            k = int(np.argmax(d))
            err = float(d.max())
            row, col = divmod(k, got.shape[1])
            what = "variance" if row else f"prior {col // 4} coordinate {'xmin ymin xmax ymax'.split()[col % 4]}"
            msg = f"{what} differs: yours {got.flat[k]!r}, refdet {exp.flat[k]!r}"
        for desc, alt in _prior_variants(case, clustered):
            if alt.shape == got.shape and np.allclose(alt, got, rtol=0, atol=1e-6):
                msg += f"\n  likely cause: {desc}"
                break
        return err, msg
    return compare


def _prior_golden(clustered):
    if clustered:
        return [("two cells", dict(layer_shape=(1, 2), image_shape=(10, 20), attrs=dict(widths=[4.0], heights=[2.0],
                                                                                         offset=0.5))),
                ("step_widths alone (step_h stays 0)", dict(layer_shape=(2, 2), image_shape=(32, 32),
                                                            attrs=dict(widths=[4.0], heights=[4.0], offset=0.5,
                                                                       step_widths=8.0, clip=False)))]
    return [("SSD cell", dict(layer_shape=(1, 1), image_shape=(100, 100),
                              attrs=dict(min_size=[20.0], max_size=[60.0], aspect_ratio=[2.0], flip=True, clip=False,
                                         offset=0.5))),
            ("Caffe order", dict(layer_shape=(2, 3), image_shape=(60, 90),
                                 attrs=dict(min_size=[20.0], max_size=[60.0], aspect_ratio=[2.0, 3.0], flip=True,
                                            clip=True, step=30.0, offset=0.5, min_max_aspect_ratios_order=False,
                                            variance=[0.1, 0.1, 0.2, 0.2]))),
            ("density", dict(layer_shape=(2, 2), image_shape=(64, 64),
                             attrs=dict(fixed_size=[32.0], density=[2.0], aspect_ratio=[2.0], offset=0.5)))]


def check_openvino_prior_box(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(layer_shape, image_shape, attrs) -> (2, 4 * H * W * P)`` against OpenVINO PriorBox-8
    (:func:`refdet.runtimes.openvino.prior_box`, keyword names as OpenVINO's attributes). Exact."""
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("openvino_prior_box", "abs", "openvino", _prior_compare(fn, False), progress)
    return _finish(r.run(_prior_golden(False), srt.openvino_prior_box_cases(), n_cases, seed), raise_on_failure)


def check_openvino_prior_box_clustered(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(layer_shape, image_shape, attrs) -> (2, 4 * H * W * P)`` against OpenVINO
    PriorBoxClustered (:func:`refdet.runtimes.openvino.prior_box_clustered`). Exact."""
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("openvino_prior_box_clustered", "abs", "openvino", _prior_compare(fn, True), progress)
    return _finish(r.run(_prior_golden(True), srt.openvino_prior_box_clustered_cases(), n_cases, seed),
                   raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# OpenVINO FakeQuantize
# ---------------------------------------------------------------------------------------------------

def fake_quantize_tolerance(case, expected):
    """Where an implementation of OpenVINO's FakeQuantize may differ from the formula and by how much:
    ``4 eps(float32) * max(|output_low|, |output_high|)`` everywhere, one output step where the grid
    index ``t = (x - il) / (ih - il) * (levels - 1)`` lies within its own float32 error
    (``8 eps (max(|x|, |il|, |ih|) / |ih - il| * (levels - 1) + 1)``, at least 1e-4) of a rounding tie:
    the CPU plugin's ``x * isc + ish`` and the formula's ``(x - il) / (ih - il) * (levels - 1)`` may
    then round to different neighbours (also at exact ties: the CPU plugin's index is not exact there)."""
    x = np.asarray(case["x"], np.float64)
    il, ih = np.asarray(case["input_low"], np.float64), np.asarray(case["input_high"], np.float64)
    ol, oh = np.asarray(case["output_low"], np.float64), np.asarray(case["output_high"], np.float64)
    L = case["levels"] - 1
    with np.errstate(all="ignore"):
        t = (x - il) / (ih - il) * L
    # float32 error of the grid index: x - il loses ~eps * max(|x|, |il|), magnified by L / (ih - il)
    eps = float(np.finfo(np.float32).eps)
    with np.errstate(all="ignore"):
        window = 8 * eps * (np.maximum(np.abs(x), np.maximum(np.abs(il), np.abs(ih))) / np.abs(ih - il) * L + 1)
    tie = np.abs(t - np.floor(t) - 0.5) < np.maximum(window, 1e-4)
    base = 4 * float(np.finfo(np.float32).eps) * np.maximum(np.abs(ol), np.abs(oh)) + np.zeros_like(x)
    step = np.abs(oh - ol) / L * 1.0001 + np.zeros_like(x)
    return np.where(tie, step + base, base)


def _fq_compare(fn):
    from refdet.runtimes.openvino import fake_quantize

    def compare(case):
        exp = fake_quantize(**case)
        got = _np(fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()}))
        if got.shape != exp.shape:
            return float("inf"), f"output shape differs: yours {got.shape}, refdet {exp.shape}"
        d = np.abs(got.astype(np.float64) - exp)
        tol = fake_quantize_tolerance(case, exp)
        if np.all(d <= tol):
            return float(d.max(initial=0.0)), None
        k = int(np.argmax(d - tol))
        msg = (f"element {np.unravel_index(k, got.shape)} (x = {float(case['x'].flat[k])!r}) differs: yours "
               f"{float(got.flat[k])!r}, refdet {float(exp.flat[k])!r} (allowed {float(tol.flat[k]):.3g})")
        alt = _fq_variants(case)
        for desc, v in alt:
            if np.all(np.abs(got.astype(np.float64) - v) <= tol):
                msg += f"\n  likely cause: {desc}"
                break
        return float(d.max()), msg
    return compare


def _fq_variants(case):
    from refdet.runtimes.openvino import fake_quantize

    out = []
    x = np.asarray(case["x"], np.float32)
    il, ih = np.asarray(case["input_low"], np.float32), np.asarray(case["input_high"], np.float32)
    ol, oh = np.asarray(case["output_low"], np.float32), np.asarray(case["output_high"], np.float32)
    L = np.float32(case["levels"] - 1)
    with np.errstate(all="ignore"):
        t = (x - il) / (ih - il) * L
        away = np.sign(t) * np.floor(np.abs(t) + np.float32(0.5))
        v = np.where(x <= np.minimum(il, ih), ol, np.where(x > np.maximum(il, ih), oh, away / L * (oh - ol) + ol))
    out.append(("rounding half away from zero (OpenVINO's nearbyint rounds half to even)", v))
    with np.errstate(all="ignore"):
        tr = np.trunc(t)
        v = np.where(x <= np.minimum(il, ih), ol, np.where(x > np.maximum(il, ih), oh, tr / L * (oh - ol) + ol))
    out.append(("the grid index truncated instead of rounded to nearest", v))
    with np.errstate(all="ignore"):
        scale = (ih - il) / L
        z = np.rint(-il / scale)
        q = np.clip(np.rint(x / scale) + z, 0, L)
        out.append(("QuantizeLinear-style round(x / scale) + zero_point (ties differ when the zero point is odd)",
                    (q / L * (oh - ol) + ol)))
    out.append(("levels - 1 grid steps read as levels", fake_quantize(**dict(case, levels=case["levels"] + 1))))
    return out


def _fq_golden():
    f = np.float32
    return [
        # 4 levels on [0, 3] -> [-1, 1]: 1.5 is a tie between indices 1 and 2 and goes to the even 2
        ("tie to even", dict(x=np.array([-5, 0, 1.4, 1.5, 2.5, 3, 9], f), input_low=f(0), input_high=f(3),
                             output_low=f(-1), output_high=f(1), levels=4)),
        # x equal to input_low gives output_low; to input_high output_high
        ("range ends", dict(x=np.array([-1, 1], f), input_low=f(-1), input_high=f(1), output_low=f(0),
                            output_high=f(255), levels=256)),
        ("two levels", dict(x=np.array([-1, -0.1, 0, 0.1, 1], f), input_low=f(-1), input_high=f(1),
                            output_low=f(-1), output_high=f(1), levels=2)),
        ("per channel", dict(x=np.arange(12, dtype=f).reshape(1, 3, 2, 2) / 4, input_low=np.zeros((1, 3, 1, 1), f),
                             input_high=np.array([1, 2, 3], f).reshape(1, 3, 1, 1),
                             output_low=np.zeros((1, 3, 1, 1), f), output_high=np.full((1, 3, 1, 1), 255, f),
                             levels=256)),
    ]


def check_openvino_fake_quantize(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x, input_low, input_high, output_low, output_high, levels)`` (keywords) against OpenVINO
    FakeQuantize (:func:`refdet.runtimes.openvino.fake_quantize`) within
    :func:`fake_quantize_tolerance`."""
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("openvino_fake_quantize", "abs", "openvino", _fq_compare(fn), progress)
    return _finish(r.run(_fq_golden(), srt.openvino_fake_quantize_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# OpenVINO ROIAlign
# ---------------------------------------------------------------------------------------------------

def _ov_roi_variants(case):
    from refdet.roi.align import roi_align as tv_roi_align
    from refdet.runtimes.openvino import roi_align

    c = dict(case)
    boxes = np.concatenate([np.asarray(c["batch_indices"], np.float32)[:, None], c["rois"]], axis=1)
    out = []
    if c["aligned_mode"] == "half_pixel":
        out.append(("half_pixel read as torchvision/ONNX half_pixel (x * scale - 0.5; OpenVINO's is "
                    "(x + 0.5) * scale - 0.5, its x * scale - 0.5 is half_pixel_for_nn)",
                    roi_align(**dict(c, aligned_mode="half_pixel_for_nn"))))
    if c["mode"] == "max":
        out.append(("max of the weighted corners (ONNX / refdet mode='max'); OpenVINO takes the max of the "
                    "interpolated values, starting from 0",
                    tv_roi_align(c["features"], boxes, (c["pooled_h"], c["pooled_w"]), c["spatial_scale"],
                                 c["sampling_ratio"], c["aligned_mode"] != "asymmetric", mode="max")))
    else:
        out.append(("0 for a RoI with no samples (torchvision, refdet.roi); OpenVINO's CPU plugin returns NaN "
                    "(0 / 0)", tv_roi_align(c["features"], boxes, (c["pooled_h"], c["pooled_w"]), c["spatial_scale"],
                                            c["sampling_ratio"], c["aligned_mode"] != "asymmetric")
                    if c["aligned_mode"] != "half_pixel" else None))
    return out


def _ov_roi_compare(fn):
    from refdet.runtimes.openvino import roi_align

    def compare(case):
        exp = roi_align(**case)
        got = _np(fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()}))
        if got.shape != exp.shape:
            return float("inf"), f"output shape differs: yours {got.shape}, refdet {exp.shape}"
        tol = 1e-5 * max(1.0, float(np.nanmax(np.abs(exp), initial=1.0)))
        same_nan = np.isnan(got) == np.isnan(exp)
        with np.errstate(invalid="ignore"):
            d = np.where(np.isnan(exp) & np.isnan(got), 0.0, np.abs(got.astype(np.float64) - exp))
        d = np.where(np.isnan(d), np.inf, d)
        if same_nan.all() and np.all(d <= tol):
            return float(d.max(initial=0.0)), None
        k = int(np.argmax(d))
        idx = np.unravel_index(k, got.shape)
        msg = (f"RoI {idx[0]} = {case['rois'][idx[0]].tolist()}, channel {idx[1]}, bin {idx[2:]}: yours "
               f"{got[idx]!r}, refdet {exp[idx]!r} (mode {case['mode']!r}, aligned_mode {case['aligned_mode']!r})")
        for desc, alt in _ov_roi_variants(case):
            if alt is None:
                continue
            with np.errstate(invalid="ignore"):
                if alt.shape == got.shape and np.allclose(alt, got, rtol=0, atol=tol, equal_nan=True):
                    msg += f"\n  likely cause: {desc}"
                    break
        return float(d.max()), msg
    return compare


def _ov_roi_golden():
    x = np.arange(2 * 2 * 8 * 10, dtype=np.float32).reshape(2, 2, 8, 10) / 16 - 5
    base = dict(features=x, rois=np.array([[1, 1, 6, 5], [0.5, 2, 3.5, 7]], np.float32),
                batch_indices=np.array([0, 1], np.int32), pooled_h=2, pooled_w=2, sampling_ratio=2, spatial_scale=1.0,
                mode="avg", aligned_mode="asymmetric")
    return [("asymmetric", base), ("half_pixel_for_nn", dict(base, aligned_mode="half_pixel_for_nn")),
            ("half_pixel at scale 0.5", dict(base, aligned_mode="half_pixel", spatial_scale=0.5)),
            # the features are negative near the top-left: OpenVINO's max starts at 0
            ("max over negative values", dict(base, mode="max")),
            ("zero-size RoI, adaptive grid (NaN)", dict(base, rois=np.array([[3, 4, 3, 4], [1, 1, 6, 5]], np.float32),
                                                        sampling_ratio=0, aligned_mode="half_pixel_for_nn"))]


def check_openvino_roi_align(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(features, rois, batch_indices, pooled_h, pooled_w, sampling_ratio, spatial_scale, mode,
    aligned_mode)`` (keywords) against OpenVINO ROIAlign-9 (:func:`refdet.runtimes.openvino.roi_align`),
    within ``1e-5 * max(1, max |output|)``; NaN where OpenVINO gives NaN."""
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("openvino_roi_align", "abs", "openvino", _ov_roi_compare(fn), progress)
    return _finish(r.run(_ov_roi_golden(), srt.openvino_roi_align_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# OpenVINO ROIPooling
# ---------------------------------------------------------------------------------------------------

def _ov_roi_pooling_compare(fn):
    from refdet.runtimes.openvino import roi_pooling

    def compare(case):
        exp = roi_pooling(**case)
        got = _np(fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()}))
        if got.shape != exp.shape:
            return float("inf"), f"output shape differs: yours {got.shape}, refdet {exp.shape}"
        tol = 0.0 if case["method"] == "max" else 1e-5 * max(1.0, float(np.abs(exp).max(initial=1.0)))
        d = np.abs(got.astype(np.float64) - exp)
        if np.all(d <= tol):
            return float(d.max(initial=0.0)), None
        idx = np.unravel_index(int(np.argmax(d)), got.shape)
        msg = (f"RoI {idx[0]} = {case['rois'][idx[0]].tolist()}, channel {idx[1]}, bin {idx[2:]}: yours "
               f"{got[idx]!r}, refdet {exp[idx]!r} (method {case['method']!r})")
        swapped = roi_pooling(**dict(case, rois=case["rois"][:, [0, 2, 1, 4, 3]]))
        if np.allclose(swapped, got, rtol=0, atol=max(tol, 1e-6)):
            msg += "\n  likely cause: x and y swapped (OpenVINO's rois are [batch, x1, y1, x2, y2])"
        return float(d.max()), msg
    return compare


def check_openvino_roi_pooling(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(features, rois (K, 5), output_size, spatial_scale, method)`` (keywords) against OpenVINO
    ROIPooling (:func:`refdet.runtimes.openvino.roi_pooling`): exact for "max", within
    ``1e-5 * max(1, max |output|)`` for "bilinear"."""
    from refdet.testing import strategies_runtimes as srt

    x = np.arange(2 * 8 * 10, dtype=np.float32).reshape(1, 2, 8, 10) / 8 - 4
    golden = [("max", dict(features=x, rois=np.array([[0, 1, 1, 6, 5], [0, -3, 2, 30, 4]], np.float32),
                           output_size=(2, 3), spatial_scale=1.0, method="max")),
              ("bilinear", dict(features=x, rois=np.array([[0, 0.1, 0.2, 0.8, 0.6], [0, -0.5, 0, 1.5, 1]], np.float32),
                                output_size=(3, 2), spatial_scale=1.0, method="bilinear"))]
    r = _Runner("openvino_roi_pooling", "abs", "openvino", _ov_roi_pooling_compare(fn), progress)
    return _finish(r.run(golden, srt.openvino_roi_pooling_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# OpenVINO Interpolate
# ---------------------------------------------------------------------------------------------------

def _ov_interp_compare(fn):
    from refdet.onnx_ops.resize import resize
    from refdet.runtimes.openvino import interpolate

    def compare(case):
        kw = {k: v for k, v in case.items() if k != "x"}
        exp = interpolate(case["x"], **kw)
        got = _np(fn(case["x"].copy(), **kw))
        if got.shape != exp.shape:
            return float("inf"), f"output shape differs: yours {got.shape}, refdet {exp.shape}"
        tol = 0.0 if case["mode"] == "nearest" else 1e-5 * max(1.0, float(np.abs(exp).max(initial=1.0)))
        d = np.abs(got.astype(np.float64) - exp)
        if np.all(d <= tol):
            return float(d.max(initial=0.0)), None
        idx = np.unravel_index(int(np.argmax(d)), got.shape)
        msg = (f"output {idx} differs: yours {got[idx]!r}, refdet {exp[idx]!r} (mode {case['mode']!r}, "
               f"{case['coordinate_transformation_mode']}, {case['nearest_mode']})")
        if case["mode"] == "nearest" and case["nearest_mode"] != "simple":
            try:
                ort = resize(case["x"], sizes=np.array(case["sizes"]), axes=case["axes"], mode="nearest",
                             coordinate_transformation_mode=case["coordinate_transformation_mode"],
                             nearest_mode=case["nearest_mode"], runtime="onnxruntime")
                if np.array_equal(ort, got):
                    msg += ("\n  likely cause: onnxruntime's nearest coordinates; OpenVINO divides by the float32 "
                            "scale out / in, which lands below some exact ties (7 -> 2 rows: 3.4999998)")
            except ValueError:
                pass
        return float(d.max()), msg
    return compare


def check_openvino_interpolate(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x, sizes=, axes=, mode=, coordinate_transformation_mode=, nearest_mode=)`` against OpenVINO
    Interpolate-11 (:func:`refdet.runtimes.openvino.interpolate`): exact for nearest, within
    ``1e-5 * max(1, max |y|)`` for linear_onnx and cubic."""
    from refdet.testing import strategies_runtimes as srt

    col = np.arange(7, dtype=np.float32).reshape(1, 1, 7, 1)
    golden = [("7 -> 2 rows, asymmetric, round_prefer_ceil (float32 scale below the tie)",
               dict(x=col, sizes=[2, 1], axes=[2, 3], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="round_prefer_ceil")),
              ("simple nearest, downsampling", dict(x=col, sizes=[3, 1], axes=[2, 3], mode="nearest",
                                                    coordinate_transformation_mode="half_pixel", nearest_mode="simple")),
              ("linear_onnx", dict(x=col, sizes=[12, 2], axes=[2, 3], mode="linear_onnx",
                                   coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor"))]
    r = _Runner("openvino_interpolate", "abs", "openvino", _ov_interp_compare(fn), progress)
    return _finish(r.run(golden, srt.openvino_interpolate_cases(), n_cases, seed), raise_on_failure)


#: op name (``refdet verify --op``) -> check function
RUNTIME_CHECKS = {
    "opencv_nms_boxes": check_opencv_nms_boxes,
    "opencv_nms_boxes_batched": check_opencv_nms_boxes_batched,
    "opencv_soft_nms_boxes": check_opencv_soft_nms_boxes,
    "opencv_blob_from_image": check_opencv_blob_from_image,
    "openvino_nms": check_openvino_nms,
    "openvino_prior_box": check_openvino_prior_box,
    "openvino_prior_box_clustered": check_openvino_prior_box_clustered,
    "openvino_fake_quantize": check_openvino_fake_quantize,
    "openvino_roi_align": check_openvino_roi_align,
    "openvino_roi_pooling": check_openvino_roi_pooling,
    "openvino_interpolate": check_openvino_interpolate,
}
