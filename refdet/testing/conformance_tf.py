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
check_tf_crop_and_resize
    ``fn(image (B, H, W, C), boxes (K, 4), box_indices (K,), crop_size, method, extrapolation_value)
    -> crops (K, CH, CW, C)``; optional ``grad(image, boxes, box_indices, crop_size, method,
    extrapolation_value, dcrops) -> (dimage, dboxes)`` (TF's registered gradient).
check_tf_resize
    ``fn(images (B, H, W, C), (out_h, out_w), method, align_corners, half_pixel_centers) -> (B, out_h,
    out_w, C)``, ``method`` "bilinear" or "nearest".
check_tf_fake_quant
    ``fn(inputs, min, max, num_bits, narrow_range) -> outputs`` (``FakeQuantWithMinMaxVars``);
    optional ``grad(gradients, inputs, min, max, num_bits, narrow_range) -> (dx, dmin, dmax)``.
check_tf_quantize
    ``fn(inputs, min_range, max_range, T, mode, round_mode, narrow_range) -> (output, output_min,
    output_max)`` (``QuantizeV2``; ``T`` one of "quint8", "qint8", "quint16", "qint16").
check_tf_conv2d
    ``fn(input (B, H, W, C), filters (KH, KW, C, F), strides (sh, sw), padding, dilations (dh, dw))
    -> (B, Ho, Wo, F)``, float64; optional ``grad(input, filters, strides, padding, dilations, dy)
    -> (dinput, dfilters)`` (dilation 1 only: TF's CPU backprop refuses dilations).
check_tf_sigmoid_cross_entropy
    ``fn(labels, logits) -> loss`` elementwise; optional ``grad(labels, logits, dloss) -> dlogits``.
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish
from refdet.testing.conformance_tf_ops import (  # noqa: F401  (_conv_cases, _sce_cases and the checks re-exported)
    _bits_equal, _conv_cases, _likely, _np, _sce_cases, _ulps, check_tf_conv2d, check_tf_fake_quant,
    check_tf_quantize, check_tf_sigmoid_cross_entropy)

__all__ = ["check_tf_non_max_suppression", "check_tf_soft_nms", "check_tf_combined_nms", "check_tf_crop_and_resize",
           "check_tf_resize", "check_tf_fake_quant", "check_tf_quantize", "check_tf_conv2d",
           "check_tf_sigmoid_cross_entropy", "TF_CHECKS"]


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


# ---------------------------------------------------------------------------------------------------
# CropAndResize, ResizeBilinear, ResizeNearestNeighbor
# ---------------------------------------------------------------------------------------------------

def _crop_golden():
    f = np.float32
    img = np.arange(2 * 4 * 5 * 2, dtype=f).reshape(2, 4, 5, 2)
    return [
        ("no boxes", (img, np.zeros((0, 4), f), np.zeros(0, np.int32), (2, 2), "bilinear", 0.0)),
        # the whole image with corners on pixel centres: the 4 x 5 crop reproduces the image
        ("identity crop", (img, np.array([[0, 0, 1, 1]], f), np.array([1], np.int32), (4, 5), "bilinear", 0.0)),
        # a one-pixel crop reads the box centre: 0.5 * (y1 + y2) * (H - 1)
        ("1 x 1 crop", (img, np.array([[0.25, 0.25, 0.75, 0.75]], f), np.array([0], np.int32), (1, 1), "bilinear",
                        0.0)),
        # half the rows fall outside [0, H - 1]: extrapolation_value there
        ("outside the image", (img, np.array([[-0.5, -0.5, 0.5, 0.5]], f), np.array([0], np.int32), (3, 3),
                               "bilinear", -1.5)),
        ("flipped box", (img, np.array([[1, 1, 0, 0]], f), np.array([0], np.int32), (2, 3), "bilinear", 0.0)),
        # nearest: roundf of in_y = 0.5 * 3 = 1.5 is 2 (halves away from zero)
        ("nearest at a half", (img, np.array([[0, 0, 1, 1]], f), np.array([0], np.int32), (3, 3), "nearest", 0.0)),
    ]


def _crop_compare(fn, grad):
    from refdet.roi.crop import crop_and_resize_backward, crop_and_resize_forward

    def compare(case):
        img, b, idx, cs, method, ev = case
        ref, cache = crop_and_resize_forward(img, b, idx, cs, method=method, extrapolation_value=ev,
                                             data_format="NHWC")
        got = _np(fn(img.copy(), b.copy(), idx.copy(), cs, method, ev))
        lines = []
        err = 0.0
        if not _bits_equal(got, ref):
            err = _ulps(got, ref) if got.shape == ref.shape else np.inf
            lines.append(f"crops differ (up to {err:.3g} ulp)" if got.shape == ref.shape else
                         f"crops have shape {got.shape}, refdet {ref.shape}")

            def run(**kw):
                a = dict(img=img, b=b, method=method, ev=ev)
                a.update(kw)
                return crop_and_resize_forward(a["img"], a["b"], idx, cs, method=a["method"],
                                               extrapolation_value=a["ev"], data_format="NHWC")[0]
            variants = [
                ("boxes read as [x1, y1, x2, y2] (TF's order is [y1, x1, y2, x2])",
                 lambda: run(b=np.ascontiguousarray(b[:, [1, 0, 3, 2]]))),
                ("the other method", lambda: run(method="nearest" if method == "bilinear" else "bilinear")),
                ("extrapolation_value ignored (0)", lambda: run(ev=0.0)),
            ]
            lines += _likely(variants, got, _bits_equal)
        if grad is not None and not lines:
            dy = np.random.default_rng(0).standard_normal(ref.shape).astype(ref.dtype)
            g = crop_and_resize_backward(dy, cache)
            gi, gb = (_np(v) for v in grad(img.copy(), b.copy(), idx.copy(), cs, method, ev, dy.copy()))
            for name, x, y in (("dimage", gi, g.dimage), ("dboxes", gb, g.dboxes)):
                if not _bits_equal(x, y):
                    e = _ulps(x, y) if x.shape == y.shape else np.inf
                    err = max(err, e)
                    lines.append(f"{name} differs (up to {e:.3g} ulp)")
                    if name == "dboxes" and method == "nearest":
                        lines.append("  note: TF's box gradient is the bilinear one even for method='nearest'")
                    if name == "dboxes" and 1 in cs:
                        lines.append("  note: a crop side of 1 adds its box-gradient terms in double in TF")
        return err, ("\n".join(lines) if lines else None)
    return compare


def check_tf_crop_and_resize(fn, *, grad=None, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` (and ``grad``) against :func:`refdet.roi.crop_and_resize_forward` /
    ``_backward`` with ``data_format="NHWC"`` (TF ``CropAndResize`` and its registered gradient):
    float32 bit for bit.
    """
    from refdet.testing.strategies_tf import tf_crop_cases

    r = _Runner("tf_crop_and_resize", "ulps", "tf", _crop_compare(fn, grad), progress)
    return _finish(r.run(_crop_golden(), tf_crop_cases(), n_cases, seed), raise_on_failure)


def _resize_golden():
    f = np.float32
    x = np.arange(2 * 3 * 4, dtype=f).reshape(1, 3, 4, 2) / f(4)
    return [(f"{m} {lab}", (x, size, m, ac, hp))
            for m in ("bilinear", "nearest")
            for lab, size, ac, hp in (("legacy upsample", (5, 7), False, False),
                                      ("align_corners", (5, 7), True, False),
                                      ("half_pixel_centers", (5, 7), False, True),
                                      ("half_pixel_centers downsample", (2, 3), False, True),
                                      ("align_corners to size 1", (1, 1), True, False))]


def _resize_compare(fn):
    from refdet.tf_ops.image import resize_bilinear, resize_nearest_neighbor

    def ours(x, size, m, ac, hp):
        return (resize_bilinear if m == "bilinear" else resize_nearest_neighbor)(
            x, size, align_corners=ac, half_pixel_centers=hp)

    def compare(case):
        x, size, m, ac, hp = case
        ref = ours(*case)
        got = _np(fn(x.copy(), size, m, ac, hp))
        if _bits_equal(got, ref):
            return 0.0, None
        err = _ulps(got, ref) if got.shape == ref.shape else np.inf
        lines = [f"{m} resize differs (up to {err:.3g} ulp)" if got.shape == ref.shape else
                 f"output shape {got.shape}, refdet {ref.shape}"]
        variants = [(f"align_corners={a}, half_pixel_centers={h}", lambda a=a, h=h: ours(x, size, m, a, h))
                    for a, h in ((False, False), (True, False), (False, True)) if (a, h) != (ac, hp)]
        variants.append(("the other method", lambda: ours(x, size, "nearest" if m == "bilinear" else "bilinear",
                                                           ac, hp)))
        lines += _likely(variants, got, _bits_equal)
        if lines[-1].startswith("  no single") and m == "bilinear" and got.shape == ref.shape and err < 64:
            lines[-1] = ("  likely cause: another order of operations (TF: scale = in / out multiplied, "
                         "top + (bottom - top) * y_lerp; onnxruntime divides by out / in)")
        return err, "\n".join(lines)
    return compare


def check_tf_resize(fn, *, n_cases=80, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(images, size, method, align_corners, half_pixel_centers)`` against
    :func:`refdet.tf_ops.resize_bilinear` / :func:`~refdet.tf_ops.resize_nearest_neighbor` (TF
    ``ResizeBilinear`` / ``ResizeNearestNeighbor``): float32 bit for bit.
    """
    from refdet.testing.strategies_tf import tf_resize_cases

    r = _Runner("tf_resize", "ulps", "tf", _resize_compare(fn), progress)
    return _finish(r.run(_resize_golden(), tf_resize_cases(), n_cases, seed), raise_on_failure)


# FakeQuantWithMinMaxVars, QuantizeV2, Conv2D, sigmoid_cross_entropy_with_logits: in
# refdet.testing.conformance_tf_ops


#: op name (``refdet verify tensorflow --op``) -> check
TF_CHECKS = {
    "tf_non_max_suppression": check_tf_non_max_suppression,
    "tf_soft_nms": check_tf_soft_nms,
    "tf_combined_nms": check_tf_combined_nms,
    "tf_crop_and_resize": check_tf_crop_and_resize,
    "tf_resize": check_tf_resize,
    "tf_fake_quant": check_tf_fake_quant,
    "tf_quantize": check_tf_quantize,
    "tf_conv2d": check_tf_conv2d,
    "tf_sigmoid_cross_entropy": check_tf_sigmoid_cross_entropy,
}
