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

__all__ = ["check_tf_non_max_suppression", "check_tf_soft_nms", "check_tf_combined_nms", "check_tf_crop_and_resize",
           "check_tf_resize", "check_tf_fake_quant", "check_tf_quantize", "check_tf_conv2d",
           "check_tf_sigmoid_cross_entropy", "TF_CHECKS"]


def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy"):          # tf.Tensor
        x = x.numpy()
    return np.asarray(x)




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


# ---------------------------------------------------------------------------------------------------
# CropAndResize, ResizeBilinear, ResizeNearestNeighbor
# ---------------------------------------------------------------------------------------------------

def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a.astype(b.dtype), b, equal_nan=True)


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


# ---------------------------------------------------------------------------------------------------
# FakeQuantWithMinMaxVars, QuantizeV2
# ---------------------------------------------------------------------------------------------------

def _fq_variants(x, mn, mx, nb, nr):
    from refdet.tf_ops import quant as q

    F = np.float32
    qmin, qmax = (1 if nr else 0), (1 << nb) - 1

    def raw_range(rounding):           # no nudging: the grid starts at min itself
        s = (F(mx) - F(mn)) / F(qmax - qmin)
        v = (np.clip(x, F(mn), F(mx)) - F(mn)) / s
        r = np.floor(v + F(0.5)) if rounding == "half_up" else np.rint(v)
        return r * s + F(mn)

    def half_even():
        nmin, nmax, s, inv = q.nudge(mn, mx, qmin, qmax)
        v = np.maximum(np.minimum(x, nmax), nmin) - nmin
        return np.rint(v / s - np.floor(-nmin * inv + F(0.5))) * s
    return [
        ("the range not nudged (zero may fall between two grid points)", lambda: raw_range("half_up")),
        ("the range not nudged, ties to even", lambda: raw_range("half_even")),
        ("ties rounded to even instead of floor(v + 0.5)", half_even),
        ("the pre-quant_zero kernel: floor(v * (1 / scale) + 0.5) * scale + nudged_min (legacy=True)",
         lambda: q.fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=nr, legacy=True)),
        ("narrow_range flipped", lambda: q.fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=not nr)),
        ("a multiplication by inv_scale (FakeQuantWithMinMaxArgs' order)",
         lambda: q.fake_quant_with_min_max_args(x, mn, mx, num_bits=nb, narrow_range=nr)
         if not (mn == 0 and mx == 0) else None),
    ]


def _fq_golden():
    f = np.float32
    # [-1, 1] with 255 steps: scale 2/255, zero point 127.5 -> 128 (std::round, halves away): nudged
    # range [-128, 127] * 2/255; -1 clamps to -256/255
    x = np.array([-2, -1, -0.5, 0, 1 / 255, 0.5, 1, 2], f)
    return [
        ("symmetric range, zero point nudged", (x, -1.0, 1.0, 8, False)),
        ("narrow range", (x, -1.0, 1.0, 8, True)),
        ("min == max == 0 gives zeros", (x, 0.0, 0.0, 8, False)),
        ("range not containing zero", (x, 0.25, 1.5, 4, False)),
        ("16 bits", (x, -6.0, 6.0, 16, False)),
    ]


def _fq_cases():
    from hypothesis import strategies as st

    from refdet.testing.strategies_tf import flush_subnormals

    @st.composite
    def cases(draw):
        n = draw(st.integers(0, 40))
        nb = draw(st.integers(2, 16))
        mn = draw(st.one_of(st.sampled_from([0.0, -1.0, -6.0]), st.floats(-8, 0, width=32)))
        mx = draw(st.one_of(st.sampled_from([1.0, 6.0, 0.5]), st.floats(0.0009765625, 8, width=32)))
        mn = 0.0 if mn > -1e-20 else mn          # no subnormal scale: TF flushes it (FTZ)
        scale = (mx - mn) / ((1 << nb) - 1)
        # values on the grid, half-way between grid points (the rounding ties) and anywhere
        grid = st.integers(-(1 << nb), 1 << nb).map(lambda k: mn + k * scale * 0.5)
        vals = draw(st.lists(st.one_of(grid, st.floats(-10, 10, width=32)), min_size=n, max_size=n))
        return (flush_subnormals(np.array(vals, np.float32)), float(np.float32(mn)), float(np.float32(mx)), nb,
                draw(st.booleans()))
    return cases()


def _fq_compare(fn, grad):
    from refdet.tf_ops import quant as q

    def compare(case):
        x, mn, mx, nb, nr = case
        ref = q.fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=nr)
        got = _np(fn(x.copy(), mn, mx, nb, nr))
        if not _bits_equal(got, ref):
            err = _ulps(got, ref) if got.shape == ref.shape else np.inf
            lines = [f"fake-quantized values differ (up to {err:.3g} ulp)"]
            lines += _likely(_fq_variants(x, mn, mx, nb, nr), got, _bits_equal)
            return err, "\n".join(lines)
        if grad is None:
            return 0.0, None
        dy = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
        r = q.fake_quant_with_min_max_vars_gradient(dy, x, mn, mx, num_bits=nb, narrow_range=nr)
        g = [_np(v) for v in grad(dy.copy(), x.copy(), mn, mx, nb, nr)]
        if not _bits_equal(g[0], r[0]):
            return np.inf, ("dx differs: the straight-through mask must be nudged_min <= x <= nudged_max, both "
                            "inclusive")
        # the range gradients are sums: TF's Eigen reduction order is not reproduced, allow its rounding
        nmin, nmax = (0.0, 0.0) if mn == 0 and mx == 0 else q.nudge(mn, mx, 1 if nr else 0, (1 << nb) - 1)[:2]
        for name, a, b, sel in (("dmin", g[1], r[1], x < nmin), ("dmax", g[2], r[2], x > nmax)):
            tol = 4 * np.finfo(np.float32).eps * (float(np.abs(dy[sel]).sum()) + 1e-30)
            if not abs(float(a) - float(b)) <= tol:
                return float(abs(float(a) - float(b))), (f"{name} = {float(a)!r}, refdet {float(b)!r}: the sum of the "
                                                         f"gradients where x is {'below' if name == 'dmin' else 'above'} "
                                                         "the nudged range")
        return 0.0, None
    return compare


def check_tf_fake_quant(fn, *, grad=None, n_cases=80, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(inputs, min, max, num_bits, narrow_range)`` (and ``grad``) against
    :func:`refdet.tf_ops.fake_quant_with_min_max_vars` (TF ``FakeQuantWithMinMaxVars``): outputs and
    ``dx`` bit for bit, ``dmin``/``dmax`` to a float32 sum's rounding.
    """
    r = _Runner("tf_fake_quant", "ulps", "tf", _fq_compare(fn, grad), progress)
    return _finish(r.run(_fq_golden(), _fq_cases(), n_cases, seed), raise_on_failure)


def _quantize_golden():
    f = np.float32
    x = np.array([-3, -1.5, -0.5, 0, 0.5, 1.5, 2.5, 3.1], f)
    out = []
    for T in ("quint8", "qint8"):
        for mode, rm in (("MIN_COMBINED", "HALF_AWAY_FROM_ZERO"), ("MIN_FIRST", "HALF_AWAY_FROM_ZERO"),
                         ("SCALED", "HALF_AWAY_FROM_ZERO"), ("SCALED", "HALF_TO_EVEN")):
            out.append((f"{T} {mode} {rm}", (x, -2.0, 3.0, T, mode, rm, False)))
    out.append(("qint8 SCALED narrow_range", (x, -2.0, 3.0, "qint8", "SCALED", "HALF_TO_EVEN", True)))
    # a range narrower than ensure_minimum_range: widened to min_range + 0.01
    out.append(("tiny range widened", (x, 0.0, 0.0, "quint8", "MIN_COMBINED", "HALF_AWAY_FROM_ZERO", False)))
    return out


def _quantize_cases():
    from hypothesis import strategies as st

    from refdet.testing.strategies_tf import flush_subnormals

    @st.composite
    def cases(draw):
        T = draw(st.sampled_from(["quint8", "qint8", "quint16", "qint16"]))
        mode = draw(st.sampled_from(["MIN_COMBINED", "MIN_FIRST", "SCALED"]))
        rm = draw(st.sampled_from(["HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN"])) if mode == "SCALED" else \
            "HALF_AWAY_FROM_ZERO"
        nr = draw(st.booleans()) if mode == "SCALED" else False
        mn = draw(st.one_of(st.sampled_from([0.0, -1.0, -2.0]), st.floats(-8, 0, width=32)))
        mx = draw(st.one_of(st.sampled_from([0.0, 1.0, 3.0]), st.floats(0, 8, width=32)))
        mn, mx = (0.0 if abs(mn) < 1e-20 else mn), (0.0 if abs(mx) < 1e-20 else mx)   # TF flushes subnormals
        if mode == "SCALED" and T.startswith("qu"):
            mx = max(mx, 0.5)          # else scale FLT_MAX, output_min 1/FLT_MAX: subnormal, flushed by TF
        n = draw(st.integers(0, 40))
        halves = st.integers(-40, 40).map(lambda k: k * 0.125)
        vals = draw(st.lists(st.one_of(halves, st.floats(-10, 10, width=32)), min_size=n, max_size=n))
        return flush_subnormals(np.array(vals, np.float32)), float(mn), float(mx), T, mode, rm, nr
    return cases()


def _quantize_compare(fn):
    from refdet.tf_ops import quant as q

    def compare(case):
        x, mn, mx, T, mode, rm, nr = case
        ref = q.quantize_v2(x, mn, mx, T, mode=mode, round_mode=rm, narrow_range=nr)
        got = [_np(v) for v in fn(x.copy(), mn, mx, T, mode, rm, nr)]
        same = (got[0].shape == ref.output.shape and np.array_equal(got[0].astype(np.int64), ref.output.astype(np.int64))
                and _bits_equal(got[1], ref.output_min) and _bits_equal(got[2], ref.output_max))
        if same:
            return 0.0, None
        d = (np.abs(got[0].astype(np.int64) - ref.output.astype(np.int64)).max()
             if got[0].shape == ref.output.shape and got[0].size else 0)
        head = f"integers differ by up to {d}" if d else "the integers agree"
        lines = [f"{T} {mode} {rm}: {head}; output range ({got[1]}, {got[2]}), refdet "
                 f"({ref.output_min}, {ref.output_max})"]
        others = [(f"round_mode={o}", lambda o=o: q.quantize_v2(x, mn, mx, T, mode=mode, round_mode=o,
                                                                  narrow_range=nr))
                  for o in ("HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN") if o != rm and mode == "SCALED"]
        others += [(f"mode={m}", lambda m=m: q.quantize_v2(x, mn, mx, T, mode=m)) for m in q.QUANTIZE_MODES
                   if m != mode]
        if mode == "SCALED":
            others.append(("narrow_range flipped", lambda: q.quantize_v2(x, mn, mx, T, mode=mode, round_mode=rm,
                                                                         narrow_range=not nr)))
        why = _likely(others, got, lambda g, r: g[0].shape == r.output.shape and
                      np.array_equal(g[0].astype(np.int64), r.output.astype(np.int64)))
        if why[0].startswith("  no single") and T in ("quint8", "qint8") and (
                (mode == "SCALED" and rm == "HALF_TO_EVEN") or (mode == "MIN_FIRST" and T == "quint8")):
            why = ["  likely cause: TF ran oneDNN's _MklQuantizeV2 instead of the reference QuantizeV2 kernel "
                   "(TF_ENABLE_ONEDNN_OPTS was not 0 when TF was imported)"]
        return float(d) if d else np.inf, "\n".join(lines + why)
    return compare


def check_tf_quantize(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(inputs, min_range, max_range, T, mode, round_mode, narrow_range) -> (output,
    output_min, output_max)`` against :func:`refdet.tf_ops.quantize_v2` (TF's reference ``QuantizeV2``
    kernel): the integers and the output range exactly.
    """
    r = _Runner("tf_quantize", "steps", "tf", _quantize_compare(fn), progress)
    return _finish(r.run(_quantize_golden(), _quantize_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# Conv2D (SAME padding), sigmoid_cross_entropy_with_logits
# ---------------------------------------------------------------------------------------------------

def _close(got, ref, scale, rtol):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return np.inf
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref) / (rtol * (scale + 1e-300))))


def _conv_golden():
    x = np.arange(1 * 5 * 5 * 1, dtype=np.float64).reshape(1, 5, 5, 1)
    w = np.ones((2, 2, 1, 1))
    return [
        # SAME, stride 2 on 5 pixels: out 3, pad total (3-1)*2 + 2 - 5 = 1: the one pixel goes after
        ("SAME stride 2, even kernel", (x, w, (2, 2), "SAME", (1, 1))),
        ("SAME stride 1, even kernel", (x, w, (1, 1), "SAME", (1, 1))),
        ("SAME 3x3 stride 2", (x, np.ones((3, 3, 1, 1)), (2, 2), "SAME", (1, 1))),
        ("VALID", (x, w, (2, 1), "VALID", (1, 1))),
        ("SAME dilated", (x, np.ones((2, 2, 1, 1)), (1, 1), "SAME", (2, 2))),
    ]


def _conv_cases():
    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        B, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        H, W = draw(st.integers(1, 8)), draw(st.integers(1, 8))
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        dil = draw(st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2)]))
        stride = (1, 1) if dil != (1, 1) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        pad = draw(st.sampled_from(["SAME", "SAME", "VALID"]))
        if pad == "VALID" and (H < (kh - 1) * dil[0] + 1 or W < (kw - 1) * dil[1] + 1):
            pad = "SAME"
        seed = draw(st.integers(0, 2 ** 16))
        g = np.random.default_rng(seed)
        return g.standard_normal((B, H, W, C)), g.standard_normal((kh, kw, C, F)), stride, pad, dil
    return cases()


def _conv_compare(fn, grad):
    from refdet.tf_ops import nn

    def compare(case):
        x, w, s, pad, d = case
        ref = nn.conv2d(x, w, s, pad, dilations=d)
        got = _np(fn(x.copy(), w.copy(), s, pad, d))
        scale = float(np.abs(x).max() * np.abs(w).sum()) if x.size and w.size else 1.0
        err = _close(got, ref, scale, 1e-13)
        if err > 1:
            lines = [f"Conv2D {pad} stride {s} dilation {d}: output shape {got.shape}, refdet {ref.shape}"
                     if got.shape != ref.shape else f"Conv2D {pad} stride {s} dilation {d} differs"]
            from refdet import layers as L

            def torch_like(p):
                y, _ = L.conv2d_forward(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), None, stride=s, padding=p,
                                        dilation=d)
                return y.transpose(0, 2, 3, 1)
            variants = [("the odd padding pixel before instead of after (ONNX SAME_LOWER)",
                         lambda: torch_like("same_lower")),
                        ("symmetric padding k // 2 (PyTorch padding=k//2)",
                         lambda: torch_like((w.shape[0] // 2 * d[0], w.shape[1] // 2 * d[1]))),
                        ("VALID padding", lambda: nn.conv2d(x, w, s, "VALID", dilations=d))]
            lines += _likely(variants, got, lambda g, r: _close(g, r, scale, 1e-13) <= 1)
            return err, "\n".join(lines)
        if grad is not None and d == (1, 1):
            dy = np.random.default_rng(1).standard_normal(ref.shape)
            r = nn.conv2d_backprop(x, w, dy, s, pad)
            gi, gw = (_np(v) for v in grad(x.copy(), w.copy(), s, pad, d, dy.copy()))
            e2 = max(_close(gi, r.dinput, float(np.abs(dy).sum() * np.abs(w).max() + 1), 1e-13),
                     _close(gw, r.dfilters, float(np.abs(dy).sum() * np.abs(x).max() + 1), 1e-13))
            if e2 > 1:
                return e2, "Conv2D gradients differ (dinput or dfilters)"
        return 0.0, None
    return compare


def check_tf_conv2d(fn, *, grad=None, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(input, filters, strides, padding, dilations)`` (and ``grad``) against
    :func:`refdet.tf_ops.conv2d` (TF ``Conv2D``, NHWC/HWIO) in float64, to 1e-13 of the sum of
    magnitudes (the GEMM's summation order is not reproduced); the point is the padding geometry.
    ``worst_error`` in units of that tolerance.
    """
    r = _Runner("tf_conv2d", "tol", "tf", _conv_compare(fn, grad), progress)
    return _finish(r.run(_conv_golden(), _conv_cases(), n_cases, seed), raise_on_failure)


def _sce_golden():
    out = []
    for dt in (np.float32, np.float64):
        z = np.array([0, -0.0, 1, -1, 30, -30, 100, -100, 1e-8], dt)
        t = np.array([0, 1, 0.5, 1, 0, 1, 1, 0, 0.25], dt)
        out.append((f"kink at 0, saturation ({np.dtype(dt).name})", (t, z)))
    return out


def _sce_cases():
    from hypothesis import strategies as st

    from refdet.testing.strategies_tf import flush_subnormals

    @st.composite
    def cases(draw):
        n = draw(st.integers(0, 30))
        dt = draw(st.sampled_from([np.float32, np.float64]))
        z = draw(st.lists(st.one_of(st.sampled_from([0.0, -0.0, 88.0, -88.0, 20.0]), st.floats(-100, 100, width=32)),
                          min_size=n, max_size=n))
        t = draw(st.lists(st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0, 1, width=32)), min_size=n,
                          max_size=n))
        return flush_subnormals(np.array(t, dt)), flush_subnormals(np.array(z, dt))
    return cases()


def _sce_compare(fn, grad):
    from refdet.tf_ops import nn

    def compare(case):
        t, z = case
        ref = nn.sigmoid_cross_entropy_with_logits(t, z)
        got = _np(fn(t.copy(), z.copy()))
        eps = np.finfo(z.dtype).eps
        # TF's exp / log1p are Eigen's: a few ulps of the terms |x| + |x z| + log1p(exp(-|x|))
        scale = np.abs(z) + np.abs(z * t) + 1
        if got.shape != ref.shape or not np.all(np.abs(got.astype(np.float64) - ref) <= 8 * eps * scale):
            err = _close(got, ref, float(scale.max()) if scale.size else 1.0, 8 * eps)
            variants = [("the naive log(1 + exp(-x)) + x (1 - z) (overflows for large |x|)",
                         lambda: np.log1p(np.exp(-z)) + z * (1 - t)),
                        ("-(z log(sigmoid(x)) + (1 - z) log(1 - sigmoid(x))) through the probabilities",
                         lambda: -(t * np.log(1 / (1 + np.exp(-z))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-z)))))]
            lines = ["sigmoid cross entropy differs"]
            lines += _likely(variants, got, lambda g, r: g.shape == r.shape and np.allclose(g, r, rtol=8 * eps,
                                                                                             equal_nan=True))
            return err, "\n".join(lines)
        if grad is None:
            return 0.0, None
        dl = np.random.default_rng(0).standard_normal(z.shape).astype(z.dtype)
        r = nn.sigmoid_cross_entropy_with_logits_grad(t, z, dl)
        g = _np(grad(t.copy(), z.copy(), dl.copy()))
        gscale = np.abs(dl) * (1 + np.abs(t))
        if g.shape != r.shape or not np.all(np.abs(g.astype(np.float64) - r) <= 8 * eps * gscale):
            bad = np.flatnonzero(~(np.abs(g.astype(np.float64) - r) <= 8 * eps * gscale)) if g.shape == r.shape else []
            at0 = len(bad) and np.all(z.ravel()[bad] == 0)
            msg = "dlogits differs" + (" only at logits == 0: the gradient there is sigmoid(0) - z = 0.5 - z "
                                       "(a relu/abs subgradient of 0 gives -z instead)" if at0 else "")
            return _close(g, r, float(gscale.max()) if gscale.size else 1.0, 8 * eps), msg
        return 0.0, None
    return compare


def check_tf_sigmoid_cross_entropy(fn, *, grad=None, n_cases=80, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(labels, logits)`` (and ``grad(labels, logits, dloss)``) against
    :func:`refdet.tf_ops.sigmoid_cross_entropy_with_logits`, float32 and float64, to 8 epsilons of the
    terms' magnitude (TF's Eigen ``exp``/``log1p`` are not glibc's).
    """
    r = _Runner("tf_sigmoid_cross_entropy", "tol", "tf", _sce_compare(fn, grad), progress)
    return _finish(r.run(_sce_golden(), _sce_cases(), n_cases, seed), raise_on_failure)


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
