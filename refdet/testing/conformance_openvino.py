"""Conformance checks of OpenVINO's operators as its CPU plugin runs them: NonMaxSuppression-9, PriorBox,
PriorBoxClustered, FakeQuantize, ROIAlign, ROIPooling, Interpolate (issue 15).

Split out of :mod:`refdet.testing.conformance_runtimes`, which re-exports every name here and
documents the signature each check expects from ``fn``; import the checks from there or from
:mod:`refdet.testing.conformance`.
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish, _first_diff, _index_error, _np

__all__ = ["fake_quantize_tolerance", "check_openvino_nms", "check_openvino_prior_box",
           "check_openvino_prior_box_clustered", "check_openvino_fake_quantize", "check_openvino_roi_align",
           "check_openvino_roi_pooling", "check_openvino_interpolate"]


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
    (:func:`refdet.runtimes.openvino.prior_box <refdet.runtimes.openvino_priors.prior_box>`, keyword names as OpenVINO's attributes). Exact."""
    from refdet.testing import strategies_runtimes as srt

    r = _Runner("openvino_prior_box", "abs", "openvino", _prior_compare(fn, False), progress)
    return _finish(r.run(_prior_golden(False), srt.openvino_prior_box_cases(), n_cases, seed), raise_on_failure)


def check_openvino_prior_box_clustered(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(layer_shape, image_shape, attrs) -> (2, 4 * H * W * P)`` against OpenVINO
    PriorBoxClustered (:func:`refdet.runtimes.openvino.prior_box_clustered <refdet.runtimes.openvino_priors.prior_box_clustered>`). Exact."""
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
    from collections.abc import Mapping

    from refdet import _checks

    if not isinstance(case, Mapping):
        raise TypeError(f"`case` must be a dict with x, input_low, input_high, output_low, output_high, levels; "
                        f"got {type(case).__name__}")
    missing = [k for k in ("x", "input_low", "input_high", "output_low", "output_high", "levels") if k not in case]
    if missing:
        raise ValueError(f"`case` lacks {', '.join(missing)}")
    x, il, ih, ol, oh = (_checks.as_float_array(case[k], f"case['{k}']", dtype=np.float64)
                         for k in ("x", "input_low", "input_high", "output_low", "output_high"))
    L = _checks.check_int(case["levels"], "case['levels']", low=2) - 1
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
        exact = case["mode"] in ("nearest", "bilinear_pillow", "bicubic_pillow")
        tol = 0.0 if exact else 1e-5 * max(1.0, float(np.abs(exp).max(initial=1.0)))
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
        if case["mode"] == "bicubic_pillow":
            msg += ("\n  likely cause: OpenVINO's CPU plugin builds the bicubic Pillow filter with a = -0.5 "
                    "whatever cube_coeff says; accumulation is fused multiply-add in float32")
        return float(d.max()), msg
    return compare


def check_openvino_interpolate(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x, sizes=, axes=, mode=, coordinate_transformation_mode=, nearest_mode=)`` against OpenVINO
    Interpolate-11 (:func:`refdet.runtimes.openvino.interpolate`): exact for nearest and the Pillow
    modes, within ``1e-5 * max(1, max |y|)`` for linear_onnx and cubic."""
    from refdet.testing import strategies_runtimes as srt

    col = np.arange(7, dtype=np.float32).reshape(1, 1, 7, 1)
    golden = [("7 -> 2 rows, asymmetric, round_prefer_ceil (float32 scale below the tie)",
               dict(x=col, sizes=[2, 1], axes=[2, 3], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="round_prefer_ceil")),
              ("simple nearest, downsampling", dict(x=col, sizes=[3, 1], axes=[2, 3], mode="nearest",
                                                    coordinate_transformation_mode="half_pixel", nearest_mode="simple")),
              ("linear_onnx", dict(x=col, sizes=[12, 2], axes=[2, 3], mode="linear_onnx",
                                   coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor")),
              ("bicubic_pillow, 7 -> 3 rows (antialiased; a = -0.5 whatever cube_coeff)",
               dict(x=col, sizes=[3, 1], axes=[2, 3], mode="bicubic_pillow",
                    coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor"))]
    r = _Runner("openvino_interpolate", "abs", "openvino", _ov_interp_compare(fn), progress)
    return _finish(r.run(golden, srt.openvino_interpolate_cases(), n_cases, seed), raise_on_failure)
