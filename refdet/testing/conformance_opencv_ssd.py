"""Conformance checks of SSD's ``PriorBox`` and ``DetectionOutput`` layers as OpenCV dnn runs them
(issue 15), against :mod:`refdet.runtimes.opencv_ssd`.

Registered in :data:`refdet.testing.conformance_runtimes.RUNTIME_CHECKS` (and so in
:data:`refdet.testing.conformance.CHECKS` and ``refdet verify opencv``). Signatures expected from ``fn``:

check_opencv_prior_box
    ``fn(layer_shape (H, W), image_shape (IH, IW), attrs dict) -> (2, H * W * P * 4)`` (or with a
    leading axis of 1), ``attrs`` the layer's parameters (prototxt fields: ``min_size``, ``max_size``,
    ``aspect_ratio``, ``flip``, ``clip``, ``variance``, ``step``/``step_h``/``step_w``, ``offset``/
    ``offset_h``/``offset_w``, ``width``/``height``, ``normalized_bbox``).
check_opencv_detection_output
    ``fn(loc (B, P * L * 4), conf (B, P * C), priors (1, 2, P * 4), attrs dict) -> (B * keep_top_k, 7)``
    (or with leading axes of 1).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish, _np

__all__ = ["check_opencv_prior_box", "check_opencv_detection_output", "detection_output_order_defined"]


# ---------------------------------------------------------------------------------------------------
# PriorBox
# ---------------------------------------------------------------------------------------------------

def _prior_variants(ls, im, attrs):
    """(description, priors) pairs of the usual PriorBox mistakes."""
    from refdet.runtimes.opencv_ssd import prior_box

    out = []
    a = dict(attrs)
    if "clip" not in a:
        out.append(("not clipped: Caffe's PriorBoxParameter.clip defaults to false, OpenCV's to true",
                    dict(a, clip=False)))
    else:
        out.append((f"clip={not a['clip']} (the clip flag ignored or inverted)", dict(a, clip=not a["clip"])))
    if a.get("aspect_ratio") is not None and len(a.get("aspect_ratio", ())) and "flip" in a:
        out.append(("flip ignored", dict(a, flip=not a["flip"])))
    if a.get("normalized_bbox", True) is False:
        out.append(("pixel corners without the legacy -1 on xmax/ymax (or normalised anyway)",
                    dict(a, normalized_bbox=True)))
    res = []
    for desc, kw in out:
        try:
            res.append((desc, prior_box(ls, im, **kw)))
        except (TypeError, ValueError):
            continue
    try:
        # Caffe's arithmetic: centre and half sizes in double, one rounding at the end
        base = prior_box(ls, im, **dict(a, clip=False))
        f64 = _prior_box_f64(ls, im, a)
        if f64 is not None and f64.shape == base.shape[1:]:
            res.append(("corners computed in double and rounded once (Caffe's prior_box_layer.cpp), not "
                        "OpenCV's float32 (center_x - width * 0.5f) / imgWidth", np.stack([f64, base[1]])))
    except (TypeError, ValueError):
        pass
    return res


def _prior_box_f64(ls, im, a):
    """The same priors with float64 arithmetic (Caffe's order: (cx - w / 2.) / W), rounded once."""
    from refdet.runtimes.opencv_ssd import prior_box

    if a.get("normalized_bbox", True) is False or "width" in a or a.get("offset_h") is not None:
        return None
    one = prior_box((1, 1), (1, 1), **{k: v for k, v in a.items() if k not in ("step", "step_h", "step_w",
                                                                           "offset", "clip")}, clip=False, step=1.0,
                    offset=0.0)
    half = one[0].reshape(-1, 4)[:, 2:].astype(np.float64)                # (P, 2): w/2, h/2 at (0, 0) of a 1x1 image
    H, W = ls
    IH, IW = im
    if "step_h" in a:
        sx, sy = float(np.float32(a["step_w"])), float(np.float32(a["step_h"]))
    elif "step" in a:
        sx = sy = float(np.float32(a["step"]))
    else:
        sx, sy = float(np.float32(IW) / np.float32(W)), float(np.float32(IH) / np.float32(H))
    off = float(a.get("offset", 0.5))
    cx = (np.arange(W) + off) * sx
    cy = (np.arange(H) + off) * sy
    out = np.empty((H, W, len(half), 4))
    out[..., 0] = (cx[None, :, None] - half[None, None, :, 0]) / IW
    out[..., 1] = (cy[:, None, None] - half[None, None, :, 1]) / IH
    out[..., 2] = (cx[None, :, None] + half[None, None, :, 0]) / IW
    out[..., 3] = (cy[:, None, None] + half[None, None, :, 1]) / IH
    v = out.reshape(-1).astype(np.float32)
    return np.clip(v, 0, 1) if a.get("clip", True) else v


def _prior_compare(fn):
    from refdet.runtimes.opencv_ssd import prior_box

    def compare(case):
        ls, im, attrs = case["layer_shape"], case["image_shape"], case["attrs"]
        expected = prior_box(ls, im, **attrs)
        got = _np(fn(ls, im, dict(attrs))).astype(np.float32)
        if got.ndim == 3 and got.shape[0] == 1:
            got = got[0]
        if got.shape == expected.shape and np.array_equal(got.view(np.uint32), expected.view(np.uint32)):
            return 0.0, None
        if got.shape != expected.shape:
            err, head = float("inf"), f"priors differ: yours shape {got.shape}, OpenCV's {expected.shape}"
        else:
            d = np.abs(got.astype(np.float64) - expected)
            err = float(d.max())
            k = int(np.argmax(d))
            head = (f"priors differ: max |difference| {err:.3g} at flat index {k} (row {k // expected.shape[1]}): "
                    f"yours {got.reshape(-1)[k]!r}, OpenCV {expected.reshape(-1)[k]!r}")
        lines = [head]
        for desc, alt in _prior_variants(ls, im, attrs):
            if alt.shape == got.shape and np.array_equal(alt, got):
                lines.append(f"  likely cause: {desc}")
                break
        return err, "\n".join(lines)
    return compare


def _prior_golden():
    v = [0.1, 0.1, 0.2, 0.2]
    return [
        # one cell of 100 x 100: squares 20 and sqrt(1200) = 34.64, then 2:1 and 1:2
        ("min, max, ratio 2 flipped", dict(layer_shape=(1, 1), image_shape=(100, 100),
                                           attrs=dict(min_size=[20.0], max_size=[60.0], aspect_ratio=[2.0],
                                                      variance=v))),
        # duplicates and the unit ratio are dropped; 0.5 is already there as the flip of 2
        ("duplicate ratios dropped", dict(layer_shape=(2, 3), image_shape=(60, 90),
                                          attrs=dict(min_size=[10.0], aspect_ratio=[2.0, 1.0, 2.0, 0.5],
                                                     variance=[0.1]))),
        # corners outside [0, 1]: kept without clip, clamped with it (OpenCV's default is clip=true)
        ("unclipped border priors", dict(layer_shape=(2, 2), image_shape=(40, 40),
                                         attrs=dict(min_size=[30.0], clip=False, variance=v))),
        ("default clip", dict(layer_shape=(2, 2), image_shape=(40, 40), attrs=dict(min_size=[30.0], variance=v))),
        ("two offsets, step_h/step_w", dict(layer_shape=(2, 3), image_shape=(50, 70),
                                            attrs=dict(min_size=[8.0], offset_h=[0.0, 0.5], offset_w=[0.5, 0.0],
                                                       step_h=10.0, step_w=12.0, clip=False, variance=v))),
        ("explicit widths/heights", dict(layer_shape=(2, 2), image_shape=(64, 64),
                                         attrs=dict(width=[10.0, 20.0], height=[30.0, 5.0], clip=False, variance=v))),
        # pixel corners: xmax = cx + w / 2 - 1
        ("pixel corners", dict(layer_shape=(1, 2), image_shape=(32, 64),
                               attrs=dict(min_size=[16.0], normalized_bbox=False, clip=False, variance=v))),
        ("two min sizes", dict(layer_shape=(3, 2), image_shape=(300, 300),
                               attrs=dict(min_size=[30.0, 60.0], max_size=[60.0, 111.0], aspect_ratio=[2.0, 3.0],
                                          step=100.0, clip=False, variance=v))),
    ]


def _prior_cases():
    from hypothesis import strategies as st

    fl = st.floats(1.0, 120.0, allow_nan=False, width=32)

    @st.composite
    def case(draw):
        ls = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        im = (draw(st.integers(8, 400)), draw(st.integers(8, 400)))
        a = dict(variance=draw(st.sampled_from([[0.1], [0.1, 0.1, 0.2, 0.2], [0.2]])))
        if draw(st.booleans()) and draw(st.booleans()):
            n = draw(st.integers(1, 3))
            a["width"] = draw(st.lists(fl, min_size=n, max_size=n))
            a["height"] = draw(st.lists(fl, min_size=n, max_size=n))
        else:
            mins = draw(st.lists(fl, min_size=1, max_size=2))
            a["min_size"] = mins
            if draw(st.booleans()):
                a["max_size"] = [m + draw(st.floats(0.5, 100.0, width=32)) for m in mins]
            if draw(st.booleans()):
                a["aspect_ratio"] = draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5, 1.0 / 3]), min_size=1,
                                                  max_size=4))
            if draw(st.booleans()):
                a["flip"] = draw(st.booleans())
        if draw(st.booleans()):
            a["clip"] = draw(st.booleans())
        step = draw(st.sampled_from(["none", "step", "hw"]))
        if step == "step":
            a["step"] = draw(st.floats(1.0, 64.0, width=32))
        elif step == "hw":
            a["step_h"] = draw(st.floats(1.0, 64.0, width=32))
            a["step_w"] = draw(st.floats(1.0, 64.0, width=32))
        off = draw(st.sampled_from(["none", "offset", "pairs"]))
        if off == "offset":
            a["offset"] = draw(st.floats(0.0, 1.0, width=32))
        elif off == "pairs":
            k = draw(st.integers(1, 2))
            a["offset_h"] = draw(st.lists(st.floats(0.0, 1.0, width=32), min_size=k, max_size=k))
            a["offset_w"] = draw(st.lists(st.floats(0.0, 1.0, width=32), min_size=k, max_size=k))
        if draw(st.integers(0, 4)) == 0:
            a["normalized_bbox"] = False
        return dict(layer_shape=ls, image_shape=im, attrs=a)
    return case()


def check_opencv_prior_box(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against OpenCV's ``PriorBox`` layer (:func:`refdet.runtimes.opencv_ssd.prior_box`).

    ``fn(layer_shape, image_shape, attrs) -> (2, H * W * P * 4)``; bit-exact float32 agreement is
    required. A mismatch names the variant that reproduces it (Caffe's clip default, Caffe's double
    arithmetic, an ignored ``flip``, pixel corners without the ``-1``).
    """
    r = _Runner("opencv_prior_box", "abs", "opencv", _prior_compare(fn), progress)
    return _finish(r.run(_prior_golden(), _prior_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# DetectionOutput
# ---------------------------------------------------------------------------------------------------

def _do_kwargs(attrs):
    missing = [k for k in ("num_classes", "keep_top_k", "nms_threshold") if k not in attrs]
    if missing:
        raise ValueError(f"`attrs` must set {', '.join(missing)} (DetectionOutput's required parameters)")
    keys = ("num_classes", "keep_top_k", "nms_threshold", "share_location", "background_label_id", "top_k",
            "code_type", "variance_encoded_in_target", "confidence_threshold", "normalized_bbox", "clip",
            "loc_pred_transposed", "group_by_classes")
    a = {k: attrs[k] for k in keys if k in attrs}
    a.setdefault("share_location", True)
    a.setdefault("background_label_id", 0)
    return a


def detection_output_order_defined(loc, conf, priors, attrs):
    """Whether OpenCV's output order (and selection at the ``keep_top_k`` cut) is defined for this input.

    OpenCV sorts with ``std::sort`` / ``std::partial_sort``, which order equal scores as libstdc++'s
    introsort and heap select happen to; a stable sort gives the same answer when every image has no
    tied surviving scores, or sorts at most 16 of them with ``keep_top_k * 8`` above their count.
    """
    from refdet.runtimes.opencv_ssd import detection_output

    if not isinstance(attrs, Mapping):
        raise TypeError(f"`attrs` must be a dict of DetectionOutput parameters; got {type(attrs).__name__}")
    a = _do_kwargs(attrs)
    try:
        checked = detection_output(loc, conf, priors, **a)                # validates every argument
    except (TypeError, ValueError) as exc:                                # parameters are keys of `attrs`
        raise type(exc)(f"{exc} (arguments `loc`, `conf`, `priors` and the parameters in `attrs`)") from None
    B = checked.detections.shape[0] // a["keep_top_k"]
    full = detection_output(loc, conf, priors, **dict(a, keep_top_k=max(1, np.asarray(conf).size + 1)))
    rows = full.detections[:full.count]
    for i in range(B):
        sc = rows[rows[:, 0] == i, 2]
        n, k = len(sc), a["keep_top_k"]
        tied = len(np.unique(sc)) < n
        if tied and (n > 16 or (n > k and k * 8 <= n)):
            return False
    return True


def _do_compare(fn):
    from refdet.runtimes import opencv_ssd as S

    def compare(case):
        a = _do_kwargs(case["attrs"])
        loc, conf, pri = case["loc"], case["conf"], case["priors"]
        expected = S.detection_output(loc, conf, pri, **a)
        exp = expected.detections
        got = _np(fn(loc.copy(), conf.copy(), pri.copy(), dict(case["attrs"]))).astype(np.float32)
        got = got.reshape(-1, 7) if got.size % 7 == 0 else got
        if got.shape == exp.shape and np.array_equal(got, exp):
            return 0.0, None
        if got.shape == exp.shape and not detection_output_order_defined(loc, conf, pri, case["attrs"]):
            # equal scores in an unstable sort: compare the score column and the rows of unique scores
            same_scores = np.array_equal(np.sort(got[:, 2]), np.sort(exp[:, 2]))
            uniq = [s for s in np.unique(exp[:expected.count, 2]) if (exp[:expected.count, 2] == s).sum() == 1]
            rows_ok = all(np.array_equal(got[got[:, 2] == s], exp[exp[:, 2] == s]) for s in uniq)
            if same_scores and rows_ok:
                return 0.0, None
        err = float("inf") if got.shape != exp.shape else float(np.max(np.abs(got - exp)))
        lines = [f"detections differ: yours shape {got.shape}, OpenCV {exp.shape} with {expected.count} detections"]
        if got.shape == exp.shape:
            r = int(np.flatnonzero(np.any(got != exp, axis=1))[0])
            lines.append(f"  first differing row {r}: yours {got[r].tolist()}, OpenCV {exp[r].tolist()}")
        variants = [
            ("detections written class by class (Caffe's order; OpenCV sorts them by score unless group_by_classes)",
             dict(a, group_by_classes=not a.get("group_by_classes", False)), {}),
            ("prior centre (xmin + xmax) / 2 as Caffe's bbox_util.cpp, not OpenCV's xmin + width * .5", a,
             dict(center="caffe")),
            ("confidence_threshold inclusive (>=); OpenCV keeps only scores > threshold", a,
             dict(inclusive_score=True)),
        ]
        for desc, kw, extra in variants:
            try:
                full = dict(dict(share_location=True, background_label_id=0, top_k=-1, code_type="CORNER",
                                 variance_encoded_in_target=False, confidence_threshold=0.0, normalized_bbox=True,
                                 clip=False, image_shape=None, loc_pred_transposed=False, group_by_classes=False),
                            **kw)
                alt = S._detection_output(loc, conf, pri, **full, **extra).detections
            except (TypeError, ValueError):
                continue
            if alt.shape == got.shape and np.array_equal(alt, got):
                lines.append(f"  likely cause: {desc}")
                break
        return err, "\n".join(lines)
    return compare


def _do_golden():
    f32 = np.float32
    v = [0.1, 0.1, 0.2, 0.2]
    # two priors side by side overlapping with IoU 1/3, one with IoU exactly 0.5 against the first
    pri = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], [0.0, 0.0, 0.5, 0.25]], f32)
    pr = np.stack([pri.ravel(), np.tile(np.array(v, f32), 3)])[None]
    zero = np.zeros((1, 12), f32)
    base = dict(num_classes=2, share_location=True, background_label_id=0, keep_top_k=5, code_type="CORNER")
    return [
        # IoU(prior 0, prior 2) = 0.125 / 0.25 = 0.5 == nms_threshold: kept ('<=')
        ("IoU exactly at the threshold", dict(loc=zero, conf=np.array([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7]], f32),
                                              priors=pr, attrs=dict(base, nms_threshold=0.5))),
        ("IoU above the threshold", dict(loc=zero, conf=np.array([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7]], f32),
                                         priors=pr, attrs=dict(base, nms_threshold=0.45))),
        # a score equal to confidence_threshold is dropped ('>')
        ("score equal to the confidence threshold", dict(loc=zero, conf=np.array([[0.5, 0.5, 0.2, 0.8, 0.3, 0.25]],
                                                                                 f32), priors=pr,
                                                         attrs=dict(base, nms_threshold=0.3,
                                                                    confidence_threshold=0.5))),
        # tied scores: the lower prior index first
        ("tied scores", dict(loc=zero, conf=np.array([[0.1, 0.6, 0.1, 0.6, 0.1, 0.6]], f32), priors=pr,
                             attrs=dict(base, nms_threshold=0.9))),
        ("keep_top_k across classes", dict(loc=np.zeros((1, 12), f32),
                                           conf=np.array([[0.0, 0.9, 0.8], [0.0, 0.7, 0.6], [0.0, 0.5, 0.95]],
                                                         f32).reshape(1, 9), priors=pr,
                                           attrs=dict(base, num_classes=3, nms_threshold=0.99, keep_top_k=4))),
        ("grouped by class", dict(loc=np.zeros((1, 12), f32),
                                  conf=np.array([[0.0, 0.9, 0.8], [0.0, 0.7, 0.6], [0.0, 0.5, 0.95]],
                                                f32).reshape(1, 9), priors=pr,
                                  attrs=dict(base, num_classes=3, nms_threshold=0.99, group_by_classes=True))),
        ("CENTER_SIZE decode", dict(loc=np.array([[0.5, -0.5, 1.0, -1.0] * 3], f32),
                                    conf=np.array([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7]], f32), priors=pr,
                                    attrs=dict(base, nms_threshold=0.45, code_type="CENTER_SIZE"))),
        ("no detection", dict(loc=zero, conf=np.array([[0.9, 0.0, 0.9, 0.0, 0.9, 0.0]], f32), priors=pr,
                              attrs=dict(base, nms_threshold=0.45))),
    ]


def _do_cases():
    from hypothesis import strategies as st

    @st.composite
    def case(draw):
        B, P, C = draw(st.integers(1, 2)), draw(st.integers(1, 10)), draw(st.integers(1, 4))
        share = draw(st.booleans())
        bg = draw(st.sampled_from([0, 1, C, -2] if share else [0, 1, C, -1]))
        venc, norm = draw(st.booleans()), draw(st.booleans())
        grid = draw(st.sampled_from([0, 4, 8]))                             # a coarse grid makes ties and equal IoUs
        seed = draw(st.integers(0, 2 ** 32 - 1))
        rng = np.random.default_rng(seed)
        pri = np.sort(rng.random((P, 2, 2)) * (1 if norm else 40), axis=1).reshape(P, 4)[:, [0, 2, 1, 3]]
        loc = rng.standard_normal((B, P * (1 if share else C) * 4)) * 0.5
        conf = rng.random((B, P * C))
        if grid:
            pri, loc, conf = np.round(pri * grid) / grid, np.round(loc * grid) / grid, np.round(conf * 4) / 4
        pr = np.stack([pri.ravel(), np.tile([0.1, 0.1, 0.2, 0.2], P)])[:1 if venc else 2][None].astype(np.float32)
        attrs = dict(num_classes=C, share_location=share, background_label_id=bg,
                     nms_threshold=draw(st.sampled_from([0.3, 0.45, 0.5, 1.0 / 3])),
                     keep_top_k=draw(st.integers(1, 12)), code_type=draw(st.sampled_from(["CORNER", "CENTER_SIZE"])),
                     variance_encoded_in_target=venc, confidence_threshold=draw(st.sampled_from([0.0, 0.25, 0.5])),
                     top_k=draw(st.sampled_from([-1, 3, 400])), normalized_bbox=norm,
                     clip=bool(norm and draw(st.booleans())), group_by_classes=draw(st.booleans()),
                     loc_pred_transposed=draw(st.booleans()))
        return dict(loc=loc.astype(np.float32), conf=conf.astype(np.float32), priors=pr, attrs=attrs)
    return case()


def check_opencv_detection_output(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against OpenCV's ``DetectionOutput`` layer
    (:func:`refdet.runtimes.opencv_ssd.detection_output`).

    ``fn(loc, conf, priors, attrs) -> (B * keep_top_k, 7)``; bit-exact agreement is required, except
    that where equal scores meet OpenCV's unstable sorts (:func:`detection_output_order_defined` is
    False) the score column and the rows of unique scores must agree. A mismatch names the variant
    that reproduces it (Caffe's class-by-class order, Caffe's prior centre, an inclusive threshold).
    """
    r = _Runner("opencv_detection_output", "abs", "opencv", _do_compare(fn), progress)
    return _finish(r.run(_do_golden(), _do_cases(), n_cases, seed), raise_on_failure)
