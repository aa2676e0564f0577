"""Conformance checks of the RoI operators, FPN level assignment and proposal selection (issue 14):
:func:`check_roi_align`, :func:`check_roi_pool`, :func:`check_assign_roi_levels`,
:func:`check_filter_proposals`.

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS``).
"""
from __future__ import annotations

import math

import numpy as np

from refdet import conventions
from refdet.testing.conformance_core import _Runner, _finish, _np

__all__ = ["check_roi_align", "check_roi_pool", "check_assign_roi_levels", "check_filter_proposals"]


# ---------------------------------------------------------------------------------------------------
# RoI operators, FPN level assignment, proposal selection (issue 14)
# ---------------------------------------------------------------------------------------------------
#
# ``fn`` signatures (torchvision's argument order):
#
# =======================  ================================================================================
# check_roi_align          ``fn(features (B, C, H, W), rois (K, 5), output_size (PH, PW), spatial_scale,
#                          sampling_ratio, aligned) -> (K, C, PH, PW)``
# check_roi_pool           ``fn(features, rois (K, 5), output_size, spatial_scale) -> (K, C, PH, PW)``
# check_assign_roi_levels  ``fn(boxes (N, 4)) -> levels (N,)`` counted from ``min_level`` (P2-P5: 0..3)
# check_filter_proposals   ``fn(proposals (B, N, 4), objectness (B, N), image_sizes, num_anchors_per_level)
#                          -> (boxes list of (P_i, 4), scores list of (P_i,))`` (test mode)
# =======================  ================================================================================

def _roi_tol(dtype):
    """(rtol, atol per unit of the largest |feature|) for RoI outputs: summation order is free."""
    return (2e-5, 2e-5) if np.dtype(dtype) == np.float32 else (1e-12, 1e-12)


def _roi_close(got, expected, scale):
    """(max abs difference, agree?) of two RoI outputs within :func:`_roi_tol`."""
    if got.shape != expected.shape:
        return math.inf, False
    if not expected.size:
        return 0.0, True
    rtol, atol = _roi_tol(expected.dtype)
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(e)):
        return math.inf, False
    ok = ~np.isnan(e)
    d = np.abs(g[ok] - e[ok])
    err = float(d.max()) if d.size else 0.0
    return err, bool(np.all(d <= atol * max(scale, 1.0) + rtol * np.abs(e[ok])))


def _roi_first_difference(got, expected, rois):
    """Text naming the first RoI / channel / bin whose value differs most."""
    if got.shape != expected.shape:
        return f"  output shape {got.shape}, refdet's {expected.shape}"
    d = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    d = np.where(np.isnan(d), np.inf, d)
    k, c, i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    return (f"  worst at RoI {k} = {rois[k].tolist()}, channel {c}, bin ({i}, {j}): yours {got[k, c, i, j]!r}, "
            f"refdet {expected[k, c, i, j]!r}")


def _explain_variants(got, variants, scale):
    """The ``likely cause`` line of the first variant (tried in order) that reproduces ``got``."""
    hits = []
    for cause, thunk in variants:
        try:
            v = thunk()
        except Exception:           # a variant refdet refuses (e.g. an invalid knob value for this input)
            continue
        if _roi_close(got, v, scale)[1]:
            hits.append(cause)
    if not hits:
        return []
    return [f"  likely cause: {hits[0]}"] + ([f"  (also reproduced by: {'; '.join(hits[1:3])})"] if len(hits) > 1
                                             else [])


def _roi_align_variants(case, convention):
    """Refdet's RoIAlign with one knob or input convention changed, in the order they are tried."""
    from refdet.roi import roi_align

    x, rois = case["features"], case["rois"]
    size, scale, sr, al = case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"]

    def run(r=rois, s=sr, a=al):
        return roi_align(x, r, size, scale, s, a, convention=convention)

    out = []
    if al:
        out.append(("aligned=False: no half-pixel shift (the scaled box is not moved by -0.5 and a RoI smaller "
                    "than one pixel is forced to 1 x 1)", lambda: run(a=False)))
    else:
        out.append(("aligned=True: a half-pixel shift where the reproduced framework has none (torchvision's "
                    "default aligned=False)", lambda: run(a=True)))
    if sr <= 0:
        for fixed in (1, 2, 3, 4):
            out.append((f"sampling ratio adaptive vs fixed: yours samples a fixed {fixed} x {fixed} grid per bin "
                        f"where sampling_ratio={sr} means adaptive ceil(bin size)", lambda f=fixed: run(s=f)))
    else:
        out.append((f"sampling ratio adaptive vs fixed: yours samples an adaptive ceil(bin size) grid where "
                    f"sampling_ratio={sr} is fixed", lambda: run(s=0)))
        for fixed in (1, 2, 3, 4):
            if fixed != sr:
                out.append((f"sampling ratio {fixed} instead of {sr}", lambda f=fixed: run(s=f)))
    swapped = rois[:, [0, 2, 1, 4, 3]] if rois.size else rois
    out.append(("box given as (y1, x1, y2, x2): yours reads the RoI columns with x and y swapped (TF order)",
                lambda: run(r=swapped)))
    if scale != 1.0:
        out.append(("spatial_scale not applied: yours pools the box in image coordinates",
                    lambda: roi_align(x, rois, size, 1.0, sr, al, convention=convention)))
    return out


def _roi_align_golden():
    out = []
    rng = np.random.default_rng(14)
    for f in (np.float32, np.float64):
        n = np.dtype(f).name
        x = rng.standard_normal((2, 2, 8, 10)).astype(f)
        # a non-square box (x range != y range) on a non-symmetric map: swapping x and y shows
        ordinary = np.array([[0, 1.0, 2.0, 13.0, 9.0], [1, 0.0, 0.0, 16.0, 6.0]], f)
        out.append((f"empty RoI set ({n})", dict(features=x, rois=np.zeros((0, 5), f), output_size=(2, 2),
                                                 spatial_scale=1.0, sampling_ratio=-1, aligned=False)))
        # bin size 6 x 3 at scale 1, adaptive: a 6 x 3 grid (not 2 x 2); aligned: -0.5 shift
        out.append((f"aligned, adaptive grid ({n})", dict(features=x, rois=ordinary.copy(), output_size=(1, 2),
                                                          spatial_scale=1.0, sampling_ratio=-1, aligned=True)))
        out.append((f"unaligned, adaptive grid, spatial_scale 0.5 ({n})",
                    dict(features=x, rois=ordinary.copy(), output_size=(2, 3), spatial_scale=0.5,
                         sampling_ratio=0, aligned=False)))
        out.append((f"fixed sampling ratio 2 ({n})", dict(features=x, rois=ordinary.copy(), output_size=(2, 2),
                                                          spatial_scale=1.0, sampling_ratio=2, aligned=True)))
        # zero-size: unaligned forces 1 x 1; aligned has no samples with the adaptive grid -> 0
        zero = np.array([[0, 3.0, 4.0, 3.0, 4.0], [0, 2.0, 1.0, 2.0, 7.0]], f)
        for al in (False, True):
            out.append((f"zero-size RoIs, aligned={al} ({n})", dict(features=x, rois=zero.copy(), output_size=(2, 2),
                                                                    spatial_scale=1.0, sampling_ratio=-1, aligned=al)))
        # wholly and partly outside the map (samples beyond [-1, H] are empty), and a sub-pixel box
        edge = np.array([[0, -30.0, -30.0, -20.0, -25.0], [1, 7.0, 5.0, 14.0, 11.0], [0, 4.25, 3.5, 4.5, 3.625]], f)
        out.append((f"outside-the-map and sub-pixel RoIs ({n})",
                    dict(features=x, rois=edge, output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2,
                         aligned=False)))
    return out


def check_roi_align(fn, *, convention="torchvision", spatial_scales=None, n_cases=60, seed=0, raise_on_failure=True,
                    progress=None):
    """Check ``fn(features, rois, output_size, spatial_scale, sampling_ratio, aligned) -> (K, C, PH, PW)``
    against :func:`refdet.roi.roi_align` (torchvision's ``ops.roi_align`` signature; ``sampling_ratio`` <= 0
    means adaptive).

    Golden cases: an empty RoI set, non-square boxes on a non-symmetric map (aligned and not, adaptive
    and fixed grids, spatial scale 0.5), zero-size RoIs (the unaligned 1 x 1 clamp, no samples when
    aligned), RoIs outside the map and a sub-pixel RoI, in float32 and float64; then hypothesis cases of
    :func:`refdet.testing.strategies_roi.roi_align_inputs` (zero-size, outside, sub-pixel, reversed and
    huge RoIs on a 1/8 grid). Outputs agree within ``2e-5`` relative plus ``2e-5 * max|features|``
    absolute in float32 (``1e-12`` in float64): the order in which an implementation sums the samples
    of a bin is free. A mismatch names the worst RoI and bin and the first of these refdet variants
    that reproduces yours: "aligned=False: no half-pixel shift" (or the shift where none is expected),
    "sampling ratio adaptive vs fixed", "box given as (y1, x1, y2, x2)", spatial_scale not applied.
    ``worst_error`` is the largest absolute difference.

    ``spatial_scales``: when given, a hypothesis case whose scale is not in it runs with
    ``spatial_scales[0]`` instead (ONNX stores ``spatial_scale`` as a float32 attribute: pass scales
    exact in float32 to compare float64 models).

    Cases where torchvision's CPU kernel cannot run (an aligned adaptive RoI with one negative side:
    ``grid_h * grid_w < 0`` sizes a ``std::vector``; onnxruntime's ``RoiAlign`` reports an integer
    overflow there) count as agreeing when ``fn`` raises for them; any other exception is a mismatch.
    """
    conventions.resolve("roi_align", convention)       # a bad `convention` named before any case runs
    from refdet.roi import roi_align
    from refdet.testing import strategies_roi as rsr

    def compare(case):
        if spatial_scales is not None and case["spatial_scale"] not in spatial_scales:
            case = dict(case, spatial_scale=float(spatial_scales[0]))
        x, rois = case["features"], case["rois"]
        args = (case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"])
        expected = roi_align(x, rois, *args, convention=convention)
        try:
            got = _np(fn(x.copy(), rois.copy(), *args))
        except Exception:
            if _negative_adaptive_grid(rois, *args):
                return 0.0, None
            raise
        scale = float(np.abs(x).max()) if x.size else 1.0
        err, ok = _roi_close(got, expected, scale)
        if ok:
            return err, None
        lines = [f"  RoIAlign outputs differ (max |difference| {err:.3g}; output_size={args[0]}, "
                 f"spatial_scale={args[1]}, sampling_ratio={args[2]}, aligned={args[3]}, {x.dtype})",
                 _roi_first_difference(got, expected, rois)]
        lines += _explain_variants(got, _roi_align_variants(case, convention), scale)
        return err, "\n".join(lines)

    r = _Runner("roi_align", "abs", convention if isinstance(convention, str) else convention.name, compare, progress)
    return _finish(r.run(_roi_align_golden(), rsr.roi_align_inputs(max_n=6), n_cases, seed), raise_on_failure)


def _negative_adaptive_grid(rois, output_size, spatial_scale, sampling_ratio, aligned):
    """True when an aligned, adaptive RoI has exactly one negative side (torchvision's kernel raises)."""
    if not aligned or sampling_ratio > 0 or not len(rois):
        return False
    w = rois[:, 3] - rois[:, 1]
    h = rois[:, 4] - rois[:, 2]
    gw = np.ceil(w * spatial_scale / output_size[1])
    gh = np.ceil(h * spatial_scale / output_size[0])
    return bool(np.any(gw * gh < 0))


def _roi_pool_golden():
    out = []
    for f in (np.float32, np.float64):
        n = np.dtype(f).name
        x = np.arange(2 * 2 * 9 * 11, dtype=f).reshape(2, 2, 9, 11) % 7 - 3   # ties: equal values repeat
        out.append((f"empty RoI set ({n})", dict(features=x, rois=np.zeros((0, 5), f), output_size=(2, 2),
                                                 spatial_scale=1.0)))
        # scale 0.5 with coordinates whose scaled value lands on .5 (rounded away from zero): 3 -> 1.5 -> 2,
        # where rounding first gives round(3) * 0.5 = 1.5 -> 2 too, but 5 -> 2.5 -> 3 and 13 -> 6.5 -> 7 only
        # when scaled first; 2.6 -> 1.3 -> 1 scaled first, round(2.6) * 0.5 = 1.5 -> 2 rounded first
        out.append((f"scaled coordinates on .5, spatial_scale 0.5 ({n})",
                    dict(features=x, rois=np.array([[0, 2.6, 5.0, 13.0, 15.0], [1, 5.0, 2.6, 17.4, 13.0]], f),
                         output_size=(3, 2), spatial_scale=0.5)))
        out.append((f"non-square RoI, spatial_scale 1 ({n})",
                    dict(features=x, rois=np.array([[0, 1.0, 2.0, 9.0, 5.0], [1, 0.0, 3.0, 4.0, 8.0]], f),
                         output_size=(2, 2), spatial_scale=1.0)))
        # outside the map: empty bins give 0; a zero-size RoI is one pixel
        out.append((f"outside-the-map and zero-size RoIs ({n})",
                    dict(features=x, rois=np.array([[0, -20.0, -20.0, -12.0, -15.0], [1, 3.0, 3.0, 3.0, 3.0],
                                                    [0, 8.0, 6.0, 30.0, 30.0]], f),
                         output_size=(2, 3), spatial_scale=1.0)))
    return out


def _roi_pool_variants(case):
    from refdet.roi import roi_pool
    from refdet.roi.pool import c_round

    x, rois, size, scale = case["features"], case["rois"], case["output_size"], case["spatial_scale"]
    out = []
    if scale != 1.0 and rois.size:
        pre = rois.copy()
        pre[:, 1:] = c_round(rois[:, 1:].astype(np.float64)).astype(rois.dtype)
        out.append(("spatial_scale applied after rounding: yours rounds the image coordinates to whole pixels "
                    "before scaling (torchvision / Caffe: round(x * spatial_scale))",
                    lambda: roi_pool(x, pre, size, scale)))
        out.append(("spatial_scale not applied: yours pools the box in image coordinates",
                    lambda: roi_pool(x, rois, size, 1.0)))
    if rois.size:
        swapped = rois[:, [0, 2, 1, 4, 3]]
        out.append(("box given as (y1, x1, y2, x2): yours reads the RoI columns with x and y swapped (TF order)",
                    lambda: roi_pool(x, swapped, size, scale)))
    return out


def check_roi_pool(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(features, rois, output_size, spatial_scale) -> (K, C, PH, PW)`` against
    :func:`refdet.roi.roi_pool` (torchvision ``ops.roi_pool`` / Caffe ``ROIPooling``: scaled coordinates
    rounded half away from zero, floor/ceil bin edges clipped to the map, an empty bin gives 0).

    Max pooling selects an input value, so the outputs must be equal (NaN where refdet has NaN).
    Golden cases put scaled coordinates exactly on ``.5`` (where rounding before or after scaling
    differs), non-square RoIs, RoIs outside the map and zero-size RoIs on a map full of ties; then
    :func:`refdet.testing.strategies_roi.roi_pool_inputs`. A mismatch names the first of: "spatial_scale
    applied after rounding", spatial_scale not applied, "box given as (y1, x1, y2, x2)".
    ``worst_error`` is the largest absolute difference.
    """
    from refdet.roi import roi_pool
    from refdet.testing import strategies_roi as rsr

    def compare(case):
        x, rois = case["features"], case["rois"]
        expected = roi_pool(x, rois, case["output_size"], case["spatial_scale"])
        got = _np(fn(x.copy(), rois.copy(), case["output_size"], case["spatial_scale"]))
        if got.shape == expected.shape and np.array_equal(got, expected, equal_nan=True):
            return 0.0, None
        err, _ = _roi_close(got, expected, 1.0)
        if got.shape == expected.shape and err == 0.0:
            err = math.inf                                  # NaN placement differs
        lines = [f"  RoI pooling outputs differ (output_size={case['output_size']}, "
                 f"spatial_scale={case['spatial_scale']}, {x.dtype})",
                 _roi_first_difference(got, expected, rois)]
        lines += _explain_variants(got, _roi_pool_variants(case), 0.0)
        return err, "\n".join(lines)

    r = _Runner("roi_pool", "abs", "torchvision", compare, progress)
    return _finish(r.run(_roi_pool_golden(), rsr.roi_pool_inputs(max_n=6), n_cases, seed), raise_on_failure)


def _level_knob_variants(convention, min_level, max_level):
    """(cause, {knob: value}) for the level-assignment knobs, in the order they are tried: the eps
    (value and placement) first, then the canonical level, the canonical size, +1 widths, whole rules."""
    from refdet import conventions

    s = conventions.resolve("assign_roi_levels", convention)
    out = []
    for ei, eo in ((0.0, 0.0), (1e-6, 0.0), (1e-8, 0.0), (0.0, 1e-6)):
        if (ei, eo) != (s.eps_inside, s.eps_outside):
            where = ("no eps" if ei == eo == 0 else
                     f"eps {ei:g} added inside the log2 (detectron2 / mmdet)" if ei else
                     f"eps {eo:g} added after the log2 (torchvision LevelMapper)")
            out.append((f"{where} instead of eps_inside={s.eps_inside:g}, eps_outside={s.eps_outside:g}",
                        dict(eps_inside=ei, eps_outside=eo)))
    for k0 in (3, 4, 5):
        if s.canonical_level is not None and k0 != s.canonical_level:
            out.append((f"canonical level k0 = {k0} instead of {s.canonical_level}", dict(canonical_level=k0)))
    for scale in (224.0, 256.0, 56.0, 112.0, 448.0):
        if scale != s.canonical_scale:
            out.append((f"canonical size {scale:g} instead of {s.canonical_scale:g}", dict(canonical_scale=scale)))
    out.append(("+1 pixel widths (plus_one=" + str(not s.plus_one) + ")", dict(plus_one=not s.plus_one)))
    for name in ("torchvision", "detectron2", "mmdet", "caffe"):
        if name != getattr(s, "name", None):
            p = conventions.resolve("assign_roi_levels", name)
            out.append((f"{name}'s level rule", {k: p[k] for k in p}))
    return out


def _level_golden(dtype):
    f = dtype
    # sqrt(area) exactly 224 -> level 4 (k = floor(4 + 0)); a float32 ulp below -> level 3 unless eps
    # lifts it; exactly 112 / 448 (boundaries of levels 3 and 5); 56 (clamped to 2); zero-size
    below = float(np.nextafter(np.float32(224), np.float32(0)))
    return [
        (f"sizes exactly on the level boundaries ({np.dtype(f).name})",
         np.array([[0, 0, 224, 224], [10, 10, 122, 122], [0, 0, 448, 448], [0, 0, 112, 448], [0, 0, 56, 56],
                   [0, 0, 1000, 1000]], f)),
        (f"one ulp below the boundary: eps decides ({np.dtype(f).name})",
         np.array([[0, 0, below, below], [0, 0, 224, below], [5, 5, 5 + 112, 5 + 112]], f)),
        (f"zero-size and tiny boxes ({np.dtype(f).name})", np.array([[3, 3, 3, 3], [0, 0, 0, 50], [0, 0, 1, 1]], f)),
    ]


def check_assign_roi_levels(fn, *, convention="torchvision", min_level=2, max_level=5, n_cases=100, seed=0,
                            raise_on_failure=True, progress=None):
    """Check ``fn(boxes (N, 4)) -> levels (N,)`` (counted from ``min_level``: P2-P5 give 0..3) against
    :func:`refdet.roi.assign_roi_levels` (torchvision ``LevelMapper``, detectron2
    ``assign_boxes_to_levels``, mmdet ``map_roi_levels``, per ``convention``).

    Golden cases put ``sqrt(w * h)`` exactly on a level boundary (224: P4, 112, 448) and one float32 ulp
    below it (where the eps and its placement decide), plus zero-size boxes; then
    :func:`refdet.testing.strategies_roi.level_boxes` (boundary sizes within 4 ulps, float32 and
    float64). Levels must be equal, except for RoIs with a NaN size (negative area), which no framework
    pools and which are not compared. A mismatch names the first RoI: "RoI assigned to level 3 instead
    of 4" (levels as FPN levels ``P_k``) and the first knob of the level rule that reproduces yours
    (canonical size, canonical level, eps inside or after the log2, +1 widths).
    ``worst_error`` counts differing RoIs.
    """
    conventions.resolve("assign_roi_levels", convention)       # a bad `convention` named before any case runs
    from hypothesis import strategies as st

    from refdet.roi import assign_roi_levels
    from refdet.testing import strategies_roi as rsr

    def compare(boxes):
        expected = assign_roi_levels(boxes, min_level=min_level, max_level=max_level, convention=convention)
        got = _np(fn(boxes.copy())).astype(np.int64).reshape(-1)
        if got.shape != expected.shape:
            return math.inf, f"  {got.shape[0]} levels for {expected.shape[0]} boxes"
        ok = expected >= 0
        bad = np.flatnonzero(ok & (got != expected))
        if not bad.size:
            return 0.0, None
        i = int(bad[0])
        b = boxes[i].astype(np.float64)
        size = math.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 0.0))
        lines = [f"  {bad.size} of {ok.sum()} RoIs on another level; first: RoI {i} = {boxes[i].tolist()} "
                 f"(sqrt(w * h) = {size!r}, {boxes.dtype})",
                 f"  RoI assigned to level {got[i] + min_level} instead of {expected[i] + min_level}: canonical "
                 f"size or eps (refdet's {convention if isinstance(convention, str) else convention.name} rule)"]
        hits = []
        for cause, kw in _level_knob_variants(convention, min_level, max_level):
            try:
                v = assign_roi_levels(boxes, min_level=min_level, max_level=max_level, convention=convention, **kw)
            except (TypeError, ValueError):
                continue
            if np.array_equal(v[ok], got[ok]):
                hits.append(cause)
        if hits:
            lines.append(f"  likely cause: {hits[0]}")
            if len(hits) > 1:
                lines.append(f"  (also reproduced by: {'; '.join(hits[1:3])})")
        return float(bad.size), "\n".join(lines)

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from((np.float32, np.float64)))
        return draw(rsr.level_boxes()).astype(dt)

    golden = _level_golden(np.float32) + _level_golden(np.float64)
    r = _Runner("assign_roi_levels", "RoIs", convention if isinstance(convention, str) else convention.name,
                compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def _proposal_golden():
    # level 0: anchors 0-3, level 1: anchors 4-5. IoU(box 0, box 1) = 70 / 100 = 0.7 exactly (kept: NMS
    # suppresses IoU > 0.7); box 2 is 5e-4 wide (< min_size 1e-3); box 3 leaves the image (clipped);
    # box 4 (level 1) equals box 0 (kept: NMS per level); box 5 is ordinary
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 7], [20, 20, 20.0005, 30], [45, 45, 60, 60],
                      [0, 0, 10, 10], [30, 0, 40, 10.0]], np.float32)
    logits = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0], np.float32)
    two = dict(proposals=boxes[None], objectness=logits[None], image_sizes=[(50, 50)], num_anchors_per_level=[4, 2])
    empty = dict(proposals=np.zeros((1, 0, 4), np.float32), objectness=np.zeros((1, 0), np.float32),
                 image_sizes=[(50, 50)], num_anchors_per_level=[0])
    batch = dict(proposals=np.stack([boxes, boxes[::-1].copy()]), objectness=np.stack([logits, logits]),
                 image_sizes=[(50, 50), (40, 60)], num_anchors_per_level=[4, 2])
    return [("IoU exactly 0.7, tiny, outside and cross-level duplicate boxes", two), ("no anchors", empty),
            ("two images of different sizes", batch)]


def _proposal_knob_variants(convention):
    from refdet import conventions

    s = conventions.resolve("filter_proposals", convention)
    out = [("NMS over all proposals instead of per level (nms_per_level=False)", dict(nms_per_level=False))
           if s.nms_per_level else ("NMS per level", dict(nms_per_level=True))]
    for ms, rule in ((0.0, "strict"), (1e-3, "inclusive"), (0.0, "inclusive"), (1e-3, "strict")):
        if (ms, rule) != (s.min_size, s.small_box_rule):
            out.append((f"small boxes removed with min_size={ms:g}, rule {rule!r} (refdet: min_size="
                        f"{s.min_size:g}, {s.small_box_rule!r})", dict(min_size=ms, small_box_rule=rule)))
    for sc in ("logit", "sigmoid"):
        if sc != s.score:
            out.append((f"scores returned as {sc} (refdet: {s.score})", dict(score=sc)))
    if s.top_k_scope != "all":
        out.append(("pre-NMS top-k over all levels instead of per level", dict(top_k_scope="all")))
    if s.score_thresh is not None:
        out.append(("no score threshold", dict(score_thresh=None)))
    out.append(("NMS threshold applied with IoU >= thr (the caffe NMS)", dict(nms_profile="caffe")))
    return out


def check_filter_proposals(fn, *, convention="torchvision", n_cases=30, seed=0, raise_on_failure=True,
                           progress=None):
    """Check RPN proposal selection ``fn(proposals (B, N, 4), objectness (B, N), image_sizes,
    num_anchors_per_level) -> (boxes, scores)`` (lists of one ``(P_i, 4)`` / ``(P_i,)`` array per image,
    best first; torchvision ``RegionProposalNetwork.filter_proposals`` in test mode) against
    :func:`refdet.proposals.filter_proposals` (``training=False``).

    Golden cases: an IoU exactly at the 0.7 NMS threshold, a box just under ``min_size``, a box leaving
    the image, a duplicate on another level, no anchors, two images of different sizes; then
    :func:`refdet.testing.strategies_roi.proposal_inputs` (clusters of jittered boxes, duplicates, tiny
    boxes, distinct logits). Boxes must be equal (clipping and NMS select input values), scores within
    ``2**-22`` relative (the sigmoid's ``exp`` may be 1 ulp apart between libraries). A mismatch names
    the image, the first differing rank, and the first knob variant of refdet's that reproduces yours
    (NMS per level or over all, small-box rule, score kind, top-k scope, score threshold, the NMS rule).
    ``worst_error`` counts images that differ.
    """
    conventions.resolve("filter_proposals", convention)       # a bad `convention` named before any case runs
    from refdet.proposals import filter_proposals
    from refdet.testing import strategies_roi as rsr

    def same(a, b):
        boxes, scores = a
        rb, rs = b
        if len(boxes) != len(rb):
            return False
        for i in range(len(rb)):
            gb, gs = _np(boxes[i]), _np(scores[i])
            if gb.shape != rb[i].shape or not np.array_equal(gb.astype(rb[i].dtype), rb[i]):
                return False
            if gs.shape != rs[i].shape or not np.allclose(gs, rs[i], rtol=2 ** -22, atol=0):
                return False
        return True

    def compare(case):
        args = (case["proposals"], case["objectness"], case["image_sizes"], case["num_anchors_per_level"])
        ref = filter_proposals(*args, convention=convention)
        out = fn(case["proposals"].copy(), case["objectness"].copy(), list(case["image_sizes"]),
                 list(case["num_anchors_per_level"]))
        got = ([_np(b) for b in out[0]], [_np(s) for s in out[1]])
        if same(got, (ref.boxes, ref.scores)):
            return 0.0, None
        lines = []
        nbad = 0
        for i in range(max(len(got[0]), len(ref.boxes))):
            if i >= len(got[0]) or i >= len(ref.boxes):
                nbad += 1
                continue
            gb, rb = got[0][i], ref.boxes[i]
            if gb.shape == rb.shape and np.array_equal(gb.astype(rb.dtype), rb) and \
                    np.allclose(got[1][i], ref.scores[i], rtol=2 ** -22, atol=0):
                continue
            nbad += 1
            if not lines:
                n = min(len(gb), len(rb))
                diff = [j for j in range(n) if not np.array_equal(gb[j].astype(rb.dtype), rb[j])]
                j = diff[0] if diff else n
                lines.append(f"  image {i}: {len(gb)} proposals, refdet {len(rb)}; first difference at rank {j}"
                             + (f": yours {gb[j].tolist()}, refdet {rb[j].tolist()} (refdet's anchor "
                                f"{int(ref.anchor_indices[i][j])}, level {int(ref.levels[i][j])})"
                                if j < n else ""))
        if len(got[0]) != len(ref.boxes):
            lines.append(f"  {len(got[0])} images returned, refdet {len(ref.boxes)}")
        for cause, kw in _proposal_knob_variants(convention):
            try:
                v = filter_proposals(*args, convention=convention, **kw)
            except (TypeError, ValueError):
                continue
            if same(got, (v.boxes, v.scores)):
                lines.append(f"  likely cause: {cause}")
                break
        return float(max(nbad, 1)), "\n".join(lines)

    r = _Runner("filter_proposals", "images", convention if isinstance(convention, str) else convention.name,
                compare, progress)
    return _finish(r.run(_proposal_golden(), rsr.proposal_inputs(max_per_level=150), n_cases, seed),
                   raise_on_failure)
