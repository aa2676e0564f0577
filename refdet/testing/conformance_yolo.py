"""Conformance checks of the YOLO family: decoders, anchor points, the task-aligned assigner,
ultralytics' NMS and the generalized focal losses (issue 16).

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS`` for ``refdet
verify``)::

    from refdet.testing import conformance
    conformance.check_yolo_decode(my_decode, decoder="yolov5")
    conformance.check_task_aligned_assign(my_assigner)

Each check runs golden edge cases and then seeded hypothesis cases (strategies of
:mod:`refdet.testing.strategies_yolo`), compares with refdet, and explains the first mismatch by
naming the variant that reproduces it -- "centre decoded as σ(t) + c, expected 2σ(t) − 0.5 + c",
"anchor points at grid, expected grid + 0.5", "tie between two boxes for one anchor resolved by the
lower index instead of the higher IoU", "DFL bins 0..reg_max vs 0..reg_max−1", ...

Signatures expected from ``fn`` (NumPy in; NumPy arrays, lists or torch tensors out):

check_make_anchors
    ``fn(feature_sizes, strides) -> points (N, 2)`` in grid units, or ``(points, stride_tensor)``
    with ``stride_tensor`` of shape ``(N, 1)``; ``feature_sizes`` is ``[(H, W), ...]``.
check_dfl_decode
    ``fn(logits, anchor_points, stride_tensor) -> boxes (B, N, 4)``, cxcywh pixels by default;
    ``logits`` is ``(B, N, 4 R)``, ``anchor_points`` ``(N, 2)``, ``stride_tensor`` ``(N, 1)``.
check_yolo_decode
    ``fn(t, anchors, stride) -> (B, A, H, W, 4)`` cxcywh pixels, with ``t`` of shape
    ``(B, A, H, W, 4)`` and ``anchors`` ``(A, 2)`` in pixels; ``decoder="yolox"`` expects
    ``fn(t, stride)`` with ``t`` of shape ``(B, H, W, 4)``.
check_task_aligned_assign
    ``fn(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask, *, strides, topk,
    alpha, beta)`` returning a :class:`refdet.yolo.Assignment` or ultralytics' tuple
    ``(target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx)``; shapes
    ``(B, N, K)``, ``(B, N, 4)``, ``(N, 2)``, ``(B, M)``, ``(B, M, 4)``, ``(B, M)``.
check_yolo_nms
    ``fn(prediction, conf_thres, iou_thres)`` with ``prediction`` of shape ``(B, 4 + K, N)``,
    returning a list of ``B`` arrays ``(n, 6)``: ``(x1, y1, x2, y2, score, class)``.
check_distribution_focal_loss
    ``fn(logits, targets) -> loss (n,)`` with ``logits`` ``(n, R)``; ``grad(logits, targets,
    dloss) -> dlogits``.
check_varifocal_loss
    ``fn(logits, targets, labels) -> loss`` elementwise; ``grad(logits, targets, labels, dloss)``.
check_quality_focal_loss
    ``fn(logits, targets) -> loss`` elementwise; ``grad(logits, targets, dloss)``.
"""
from __future__ import annotations

import math

import numpy as np

from refdet.testing.conformance_core import _Runner, _f64, _finish, _level_location, _likely, _np, _scale_tol

__all__ = ["check_make_anchors", "check_dfl_decode", "check_yolo_decode", "check_yolov3_decode",
           "check_yolov5_decode", "check_yolox_decode", "check_task_aligned_assign", "check_yolo_nms",
           "check_distribution_focal_loss", "check_varifocal_loss", "check_quality_focal_loss"]


# ---------------------------------------------------------------------------------------------------
# anchor points (ultralytics make_anchors)
# ---------------------------------------------------------------------------------------------------

def _points(sizes, strides, offset=0.5, order="yx"):
    pts, st = [], []
    for (h, w), s in zip(sizes, strides):
        yy, xx = np.meshgrid(np.arange(h) + offset, np.arange(w) + offset, indexing="ij")
        if order == "xy":                                        # column by column
            yy, xx = yy.T, xx.T
        pts.append(np.stack([xx.ravel(), yy.ravel()], 1))
        st.append(np.full((h * w, 1), float(s)))
    if not pts:
        return np.zeros((0, 2)), np.zeros((0, 1))
    return np.concatenate(pts), np.concatenate(st)


def explain_points_difference(got, expected, feature_sizes, strides):
    """Why anchor points differ: the first differing point (level, cell) and the variant of
    ``make_anchors`` that reproduces them (offset, units, order, columns)."""
    got = _f64(got)
    exp = _f64(expected)
    n_exp = sum(h * w for h, w in feature_sizes)
    if got.shape != exp.shape:
        return (f"anchor points have shape {got.shape}; expected ({n_exp}, 2): one point per cell of every "
                f"level, sum of H*W = {' + '.join(f'{h}*{w}' for h, w in feature_sizes)}")
    bad = np.flatnonzero(np.any(np.abs(got - exp) > 1e-6 * max(1.0, float(np.abs(exp).max(initial=0))), axis=1))
    i = int(bad[0])
    lvl, y, x = _level_location(i, feature_sizes)
    lines = [f"{len(bad)} of {len(exp)} anchor points differ; first at row {i} = level {lvl}, cell (y={y}, x={x}): "
             f"yours {got[i].tolist()}, refdet {exp[i].tolist()} (grid units of the level)"]
    st = _points(feature_sizes, strides)[1]
    variants = [
        ("anchor points at grid (x, y), expected grid + 0.5 (the cell centre; ultralytics make_anchors "
         "grid_cell_offset=0.5)", _points(feature_sizes, strides, 0.0)[0]),
        ("anchor points at grid + 1, expected grid + 0.5", _points(feature_sizes, strides, 1.0)[0]),
        ("anchor points in pixels ((grid + 0.5) * stride), expected grid units: ultralytics multiplies by the "
         "stride tensor only where it needs pixels (the assigner, the decoded boxes)", exp * st),
        ("anchor points at the cell's top-left corner in pixels (grid * stride), expected (grid + 0.5) in grid "
         "units", _points(feature_sizes, strides, 0.0)[0] * st),
        ("columns (y, x), expected (x, y)", exp[:, ::-1]),
        ("cells ordered column by column (x outer), expected row-major (y outer, x inner: meshgrid(sy, sx, "
         "indexing='ij'))", _points(feature_sizes, strides, 0.5, "xy")[0]),
    ]
    if len(feature_sizes) > 1:
        rev = _points(feature_sizes[::-1], strides[::-1])[0]
        variants.append(("levels in reverse order (coarsest first), expected finest (smallest stride) first", rev))
    lines += _likely(got, variants, 1e-6)
    return "\n".join(lines)


def check_make_anchors(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(feature_sizes, strides) -> anchor points (N, 2)`` (or ``(points, stride_tensor)``)
    against :func:`refdet.yolo.make_anchors` (ultralytics ``make_anchors``, grid_cell_offset 0.5).

    Points are in grid units of their level, ``(x + 0.5, y + 0.5)``, row-major within a level, levels
    in the given order; a returned stride tensor (N, 1) must repeat each level's stride. A mismatch
    names the first differing point (level, cell) and the variant that reproduces yours (offset 0 or
    1, pixels instead of grid units, (y, x) columns, column-major order, reversed levels).
    ``worst_error`` is in grid units.
    """
    from hypothesis import strategies as st

    from refdet.testing import strategies_yolo as ys
    from refdet.yolo.anchors import make_anchors

    def compare(case):
        sizes, strides = case
        pts, stt = make_anchors(sizes, strides, dtype=np.float64)
        out = fn([tuple(s) for s in sizes], list(strides))
        got_st = None
        if isinstance(out, (tuple, list)) and len(out) == 2:
            out, got_st = out
        got = _f64(_np(out))
        msg = None
        if got.shape != pts.shape or not np.allclose(got, pts, rtol=0, atol=1e-6):
            msg = explain_points_difference(got, pts, sizes, strides)
            err = float(np.abs(got - pts).max()) if got.shape == pts.shape and got.size else math.inf
            return err, msg
        if got_st is not None:
            g = _f64(_np(got_st)).reshape(-1)
            if g.shape != (len(pts),) or not np.array_equal(g, stt[:, 0]):
                bad = (np.flatnonzero(g != stt[:, 0]) if g.shape == (len(pts),) else [0])
                i = int(bad[0])
                where = _level_location(i, sizes)
                return math.inf, (f"the stride tensor differs at row {i} (level {where[0]}): yours "
                                  f"{g[i] if g.shape == (len(pts),) else g.shape}, refdet {stt[i, 0]} "
                                  f"(one stride per point, repeated H*W times per level)")
        return 0.0, None

    golden = [
        # level 0 is 2 x 3: points (0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (0.5, 1.5), ...
        ("one 2 x 3 level", ([(2, 3)], [8.0])),
        ("three square levels 4, 2, 1", ([(4, 4), (2, 2), (1, 1)], [8.0, 16.0, 32.0])),
        ("non-square levels 3 x 5, 2 x 3", ([(3, 5), (2, 3)], [8.0, 16.0])),
    ]

    @st.composite
    def cases(draw):
        g = draw(ys.pyramid_grids())
        return [tuple(s) for s in g["feature_sizes"]], list(g["strides"])

    r = _Runner("make_anchors", "grid units", "ultralytics", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# the DFL decode (ultralytics Detect inference)
# ---------------------------------------------------------------------------------------------------

def _dfl_variant(z, ap, st, R, *, proj=None, layout="side_major", fmt="cxcywh", stride=True, swap_xy=False):
    """The DFL decode in float64 with one thing changed."""
    z = _f64(z)
    B, N = z.shape[:2]
    if layout == "side_major":
        z4 = z.reshape(B, N, 4, R)
    else:                                                          # bins outer: view(..., R, 4)
        z4 = z.reshape(B, N, R, 4).swapaxes(-1, -2)
    if R == 1:
        d = z4[..., 0]
    else:
        e = np.exp(z4 - z4.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        d = p @ (np.arange(R, dtype=np.float64) if proj is None else proj)
    if swap_xy:
        d = d[..., [1, 0, 3, 2]]
    ap = _f64(ap)
    x1y1, x2y2 = ap - d[..., :2], ap + d[..., 2:]
    box = np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], -1) if fmt == "cxcywh" else \
        np.concatenate([x1y1, x2y2], -1)
    return box * _f64(st).reshape(-1, 1) if stride else box


def check_dfl_decode(fn, *, out_fmt="cxcywh", n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(logits (B, N, 4 R), anchor_points (N, 2), stride_tensor (N, 1)) -> boxes (B, N, 4)``
    against :func:`refdet.yolo.dfl_decode_forward` (ultralytics ``Detect`` inference:
    ``dist2bbox(DFL(logits), anchor_points, xywh=True) * strides``).

    The logits are side-major (``view(B, N, 4, R)``, sides l, t, r, b); each side's distance is the
    expectation of a softmax over the bins ``0 .. R - 1`` (``R = 1``: the logit itself). Anchor
    points are in grid units (cell centres). ``out_fmt``: ``"cxcywh"`` (ultralytics' inference) or
    ``"xyxy"``. Float32 and float64 cases; agreement within 16 machine epsilons of the largest
    coordinate. A mismatch names the variant that reproduces yours (bins ``1..R`` or ``0..R`` instead
    of ``0..R - 1``, bin-major logits, xyxy / cxcywh, no stride, x and y swapped).
    ``worst_error`` is in pixels.
    """
    from hypothesis import strategies as st

    from refdet.testing import strategies_yolo as ys
    from refdet.yolo.anchors import make_anchors
    from refdet.yolo.decode import dfl_decode_forward

    other = "xyxy" if out_fmt == "cxcywh" else "cxcywh"

    def compare(case):
        z, ap, stt = case
        R = z.shape[-1] // 4
        exp, _ = dfl_decode_forward(z, ap, stt, reg_max=R, out_fmt=out_fmt)
        got = _f64(_np(fn(z.copy(), ap.copy(), stt.copy())))
        tol = _scale_tol(exp, z.dtype)
        if got.shape == exp.shape and np.all(np.abs(got - exp) <= tol):
            return (float(np.abs(got - exp).max()) if got.size else 0.0), None
        if got.shape != exp.shape:
            return math.inf, f"boxes have shape {got.shape}; refdet gives {exp.shape} (B, N, 4)"
        diff = np.abs(got - exp)
        b, n, c = (int(v) for v in np.unravel_index(int(np.argmax(diff)), diff.shape))
        lines = [f"DFL decode ({out_fmt}, reg_max = {R}) differs at {int((diff > tol).sum())} of {diff.size} "
                 f"coordinates; worst at image {b}, point {n} (anchor point {ap[n].tolist()}, stride "
                 f"{float(stt[n, 0]):g}), coordinate {c}: yours {float(got[b, n, c])!r}, "
                 f"refdet {float(exp[b, n, c])!r}"]
        variants = [
            (f"output {other}, expected {out_fmt}", _dfl_variant(z, ap, stt, R, fmt=other)),
            ("boxes not multiplied by the stride (grid units), expected pixels",
             _dfl_variant(z, ap, stt, R, fmt=out_fmt, stride=False)),
            ("x and y swapped in the distances: sides read as (t, l, b, r), expected (l, t, r, b)",
             _dfl_variant(z, ap, stt, R, fmt=out_fmt, swap_xy=True)),
        ]
        if R > 1:
            variants = [
                (f"DFL bins 1..reg_max, expected 0..reg_max-1 (the projection is arange(reg_max)): every distance "
                 "one bin too long", _dfl_variant(z, ap, stt, R, proj=np.arange(1, R + 1.0), fmt=out_fmt)),
                (f"DFL bins 0..reg_max (linspace(0, reg_max, reg_max): every distance times reg_max / (reg_max - 1) "
                 f"= {R / (R - 1):.4g}), expected 0..reg_max-1", _dfl_variant(z, ap, stt, R, proj=np.linspace(0, R, R),
                                                                              fmt=out_fmt)),
                (f"logits read bin-major (view(..., reg_max, 4)), expected side-major (view(..., 4, reg_max): the "
                 f"{R} bins of l, then of t, r, b)", _dfl_variant(z, ap, stt, R, layout="bin_major", fmt=out_fmt)),
            ] + variants
        lines += _likely(got, variants, max(tol, 1e-9 * max(1.0, float(np.abs(exp).max()))))
        return float(diff.max()), "\n".join(lines)

    ap, stt = make_anchors([(2, 2), (1, 1)], [8.0, 16.0], dtype=np.float64)
    peaked = np.zeros((1, 5, 64))
    # point 0: bin 3 of l, 5 of t, 2 of r, 7 of b at +30 (softmax ~ one-hot): distances ~ (3, 5, 2, 7)
    # around (0.5, 0.5) -> x1y1 = (-2.5, -4.5), x2y2 = (2.5, 7.5) -> cxcywh (0, 1.5, 5, 12) * 8 px
    for side, k in enumerate((3, 5, 2, 7)):
        peaked[0, 0, side * 16 + k] = 30.0
    rng = np.random.default_rng(0)
    golden = [
        ("peaked logits (distances ~ 3, 5, 2, 7 bins), reg_max 16", (peaked, ap, stt)),
        # all logits equal: uniform over 16 bins, each distance (0 + ... + 15) / 16 = 7.5
        ("uniform logits: every distance 7.5 bins, reg_max 16", (np.zeros((1, 5, 64)), ap, stt)),
        ("random logits, reg_max 4, float32", ((rng.standard_normal((2, 5, 16)) * 3).astype(np.float32),
                                               ap.astype(np.float32), stt.astype(np.float32))),
        ("reg_max 1 (the logits are the distances)", (rng.uniform(0, 3, (1, 5, 4)), ap, stt)),
    ]

    @st.composite
    def cases(draw):
        pts, strides, g = draw(ys.anchor_points(max_levels=2, max_cells=4))
        dt = draw(st.sampled_from([np.float64, np.float32]))
        R = draw(st.sampled_from([1, 2, 4, 8, 16]))
        B = draw(st.integers(1, 2))
        r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        z = r.standard_normal((B, len(pts), 4 * R)) * (3 if R > 1 else 1) + (0 if R > 1 else 2)
        return z.astype(dt), (pts / strides[:, None]).astype(dt), strides[:, None].astype(dt)

    r = _Runner("dfl_decode", "pixels", "ultralytics", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# anchor-based decoders (YOLOv2/v3/v4, YOLOv5/v7) and YOLOX
# ---------------------------------------------------------------------------------------------------

_CENTRE = {"yolov3": "σ(t) + c", "yolov5": "2σ(t) − 0.5 + c", "yolox": "t + c"}
_SIZE = {"yolov3": "p·exp(t)", "yolov5": "(2σ(t))²·p", "yolox": "s·exp(t)"}


def _decode_parts(t, anchors, stride, dt):
    """Centre and size variants of one level, in float64 pixels: {formula: (cx, cy)} and {formula: (w, h)}."""
    t = _f64(t)
    if t.ndim == 4:                                                # YOLOX (B, H, W, 4): one "anchor"
        t = t[:, None]
    B, A, H, W, _ = t.shape
    gx = np.arange(W, dtype=np.float64)[None, None, None, :]
    gy = np.arange(H, dtype=np.float64)[None, None, :, None]
    sy, sx = (float(stride[0]), float(stride[1])) if np.ndim(stride) else (float(stride), float(stride))
    sig = 1.0 / (1.0 + np.exp(-t))
    p = np.ones((A, 2)) if anchors is None else _f64(anchors)
    pw, ph = p[None, :, None, None, 0], p[None, :, None, None, 1]
    cen = {
        "σ(t) + c": (sig[..., 0] + gx, sig[..., 1] + gy),
        "2σ(t) − 0.5 + c": (2 * sig[..., 0] - 0.5 + gx, 2 * sig[..., 1] - 0.5 + gy),
        "t + c": (t[..., 0] + gx, t[..., 1] + gy),
        "σ(t) + c + 0.5 (the cell centre as c)": (sig[..., 0] + gx + 0.5, sig[..., 1] + gy + 0.5),
    }
    for S in (1.05, 1.1, 1.2):
        cen[f"{S:g}·σ(t) − {(S - 1) / 2:g} + c (YOLOv4 scale_x_y = {S:g})"] = (
            S * sig[..., 0] - (S - 1) / 2 + gx, S * sig[..., 1] - (S - 1) / 2 + gy)
    centres = {k: (x * sx, y * sy) for k, (x, y) in cen.items()}
    for k in ("σ(t) + c", "2σ(t) − 0.5 + c", "t + c"):
        x, y = cen[k]
        centres[f"{k} in grid units (not times the stride)"] = (x, y)
    centres["σ(t) + c with the cell index c taken from the wrong axis (x and y swapped)"] = (
        (sig[..., 0] + gy) * sx, (sig[..., 1] + gx) * sy)
    sizes = {
        "p·exp(t)": (pw * np.exp(t[..., 2]), ph * np.exp(t[..., 3])),
        "(2σ(t))²·p": ((2 * sig[..., 2]) ** 2 * pw, (2 * sig[..., 3]) ** 2 * ph),
        "s·exp(t)": (sx * np.exp(t[..., 2]), sy * np.exp(t[..., 3])),
        "p·exp(t)·s (anchors in pixels multiplied by the stride again)": (pw * sx * np.exp(t[..., 2]),
                                                                          ph * sy * np.exp(t[..., 3])),
        "(2σ(t))²·p·s (anchors in pixels multiplied by the stride again)": ((2 * sig[..., 2]) ** 2 * pw * sx,
                                                                           (2 * sig[..., 3]) ** 2 * ph * sy),
        "p/s·exp(t) (anchors in grid units, not pixels)": (pw / sx * np.exp(t[..., 2]), ph / sy * np.exp(t[..., 3])),
        "exp(t) (no anchor, no stride)": (np.exp(t[..., 2]), np.exp(t[..., 3])),
        "2σ(t)²·p (the square applied to σ only)": (2 * sig[..., 2] ** 2 * pw, 2 * sig[..., 3] ** 2 * ph),
    }
    return centres, sizes


def check_yolo_decode(fn, *, decoder="yolov5", scale_x_y=1.0, n_cases=60, seed=0, raise_on_failure=True,
                      progress=None):
    """Check a YOLO box decoder against refdet's: ``decoder="yolov3"`` (YOLOv2/v3, and YOLOv4's
    ``scale_x_y``), ``"yolov5"`` (YOLOv5/v7) or ``"yolox"``.

    ``fn(t, anchors, stride) -> boxes`` with ``t`` (B, A, H, W, 4) raw outputs, ``anchors`` (A, 2) in
    pixels and ``boxes`` (B, A, H, W, 4) ``(cx, cy, w, h)`` in pixels; YOLOX: ``fn(t (B, H, W, 4),
    stride)``. The formulas (c the cell index, s the stride, p the anchor)::

        yolov3  centre (σ(t) + c) s                 size p exp(t)
                scale_x_y S: (S σ(t) − (S − 1)/2 + c) s
        yolov5  centre (2σ(t) − 0.5 + c) s          size (2σ(t))² p
        yolox   centre (t + c) s                    size s exp(t)

    Float32 and float64 cases; agreement within 16 machine epsilons of the largest coordinate. A
    mismatch is explained per part: "centre decoded as σ(t) + c, expected 2σ(t) − 0.5 + c", the size
    formula likewise, anchors in grid units or multiplied by the stride twice, the stride forgotten,
    x and y swapped. ``worst_error`` is in pixels.
    """
    from hypothesis import strategies as st

    from refdet.yolo import decode as D

    if decoder not in _CENTRE:
        raise ValueError(f"`decoder` must be one of {', '.join(_CENTRE)}; got {decoder!r}")
    want_c = _CENTRE[decoder]
    if decoder == "yolov3" and scale_x_y != 1.0:
        S = float(scale_x_y)
        want_c = f"{S:g}·σ(t) − {(S - 1) / 2:g} + c (YOLOv4 scale_x_y = {S:g})"
    want_s = _SIZE[decoder]

    def ref(t, anchors, stride):
        if decoder == "yolov3":
            return D.yolov3_decode_forward(t, anchors, stride, scale_x_y=scale_x_y)[0]
        if decoder == "yolov5":
            return D.yolov5_decode_forward(t, anchors, stride)[0]
        return D.yolox_decode_forward(t, stride)[0]

    def compare(case):
        t, anchors, stride = case
        exp = ref(t, anchors, stride)
        args = (t.copy(), stride) if decoder == "yolox" else (t.copy(), anchors.copy(), stride)
        got = _f64(_np(fn(*args)))
        tol = _scale_tol(exp, t.dtype)
        if got.shape == exp.shape and np.all(np.abs(got - exp) <= tol):
            return (float(np.abs(got - exp).max()) if got.size else 0.0), None
        if got.shape != exp.shape:
            return math.inf, f"boxes have shape {got.shape}; refdet gives {exp.shape}"
        diff = np.abs(got - exp)
        worst = tuple(int(v) for v in np.unravel_index(int(np.argmax(diff)), diff.shape))
        loc = (f"image {worst[0]}, anchor {worst[1]}, cell (y={worst[2]}, x={worst[3]})" if decoder != "yolox"
               else f"image {worst[0]}, cell (y={worst[1]}, x={worst[2]})")
        lines = [f"{decoder} decode differs at {int((diff > tol).sum())} of {diff.size} coordinates; worst at {loc}, "
                 f"coordinate {'cx cy w h'.split()[worst[-1]]}: yours {float(got[worst])!r}, "
                 f"refdet {float(exp[worst])!r} "
                 f"(raw t = {_f64(t)[worst[:-1]].tolist()})"]
        centres, sizes = _decode_parts(t, None if decoder == "yolox" else anchors, stride, t.dtype)
        shape = exp.shape[:-1]
        for part, cols, table, want in (("centre", (0, 1), centres, want_c), ("size", (2, 3), sizes, want_s)):
            g = got[..., list(cols)]
            e = exp[..., list(cols)]
            if np.all(np.abs(g - e) <= tol):
                lines.append(f"  the {part} agrees ({want})")
                continue
            hit = None
            for name, (vx, vy) in table.items():
                cand = np.stack([np.broadcast_to(vx.reshape(vx.shape if decoder != "yolox" else vx.shape[:1] +
                                                                vx.shape[2:]), shape),
                                 np.broadcast_to(vy.reshape(vy.shape if decoder != "yolox" else vy.shape[:1] +
                                                                vy.shape[2:]), shape)], -1)
                if name != want and np.all(np.abs(g - cand) <= max(tol, 1e-9 * max(1.0, float(np.abs(e).max())))):
                    hit = name
                    break
            if hit:
                lines.append(f"  likely cause: {part} decoded as {hit}, expected {want}")
            else:
                lines.append(f"  the {part} differs from {want} and from every variant refdet knows")
        return float(diff.max()), "\n".join(lines)

    sig1 = 1 / (1 + math.exp(-1.0))
    t0 = np.zeros((1, 1, 1, 2, 4))
    t0[0, 0, 0, 1] = [1.0, -1.0, 0.5, 0.0]
    anch = np.array([[10.0, 13.0]])
    golden_t = t0 if decoder != "yolox" else t0[:, 0]
    golden = [
        # cell (y=0, x=1), stride 8, anchor (10, 13), t = (1, -1, 0.5, 0): sigma(1) = 0.7311, sigma(-1) = 0.2689
        #   yolov3: cx = (0.7311 + 1) * 8 = 13.849, cy = 0.2689 * 8 = 2.151, w = 10 e^0.5 = 16.487, h = 13
        #   yolov5: cx = (1.4621 - 0.5 + 1) * 8 = 15.697, cy = (0.5379 - 0.5) * 8 = 0.303,
        #           w = (2 sigma(0.5))^2 * 10 = 15.498, h = 13
        #   yolox:  cx = (1 + 1) * 8 = 16, cy = -1 * 8 = -8, w = 8 e^0.5 = 13.190, h = 8
        (f"one cell, t = (1, -1, 0.5, 0), stride 8 (centre {2 * sig1 - 0.5 + 1:.4f} cells under yolov5)",
         (golden_t, anch, 8)),
        ("zeros (sigma = 0.5: v3 and v5 centres coincide), 2 anchors, stride (8, 16), float32",
         (np.zeros((1, 2, 2, 3, 4) if decoder != "yolox" else (1, 2, 3, 4), np.float32),
          np.array([[10.0, 13.0], [16.0, 30.0]], np.float32)[:1 if decoder == "yolox" else 2], (8, 16))),
    ]

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        B, A = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        shape = (B, A, H, W, 4) if decoder != "yolox" else (B, H, W, 4)
        t = (r.standard_normal(shape) * 1.5).astype(dt)
        anchors = np.round(r.uniform(4, 120, (A, 2))).astype(dt)
        stride = draw(st.sampled_from([8, 16, 32, (8, 16)]))
        return t, anchors, stride

    r = _Runner(f"{decoder}_decode", "pixels", decoder, compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def check_yolov3_decode(fn, **kw):
    """:func:`check_yolo_decode` with ``decoder="yolov3"``."""
    return check_yolo_decode(fn, decoder="yolov3", **kw)


def check_yolov5_decode(fn, **kw):
    """:func:`check_yolo_decode` with ``decoder="yolov5"``."""
    return check_yolo_decode(fn, decoder="yolov5", **kw)


def check_yolox_decode(fn, **kw):
    """:func:`check_yolo_decode` with ``decoder="yolox"``."""
    return check_yolo_decode(fn, decoder="yolox", **kw)


# ---------------------------------------------------------------------------------------------------
# ultralytics non_max_suppression
# ---------------------------------------------------------------------------------------------------

def _xyxy_as_xywh(pred):
    """A prediction whose box channels, read as xywh, are the given channels read as xyxy."""
    p = pred.copy()
    b = pred[:, :4]
    p[:, 0], p[:, 1] = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    p[:, 2], p[:, 3] = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return p


def check_yolo_nms(fn, *, convention="ultralytics", n_cases=60, seed=0, raise_on_failure=True, progress=None,
                   **options):
    """Check ``fn(prediction (B, 4 + K, N), conf_thres, iou_thres) -> list of B arrays (n, 6)`` against
    :func:`refdet.yolo.yolo_non_max_suppression` (ultralytics ``non_max_suppression``: candidates by
    best class score ``> conf_thres``, xywh -> xyxy, class-aware NMS by the ``max_wh`` offset trick,
    ``IoU > iou_thres`` suppresses, stable order among equal scores, ``max_det``).

    ``options`` (``agnostic``, ``multi_label``, ``max_det``, ``classes``, ``nc``) are passed to
    refdet; ``fn`` must apply the same. Every case carries its ``conf_thres`` / ``iou_thres`` (handed to
    ``fn``): the golden cases put scores and IoUs exactly on them. Rows agree when the classes are
    equal and boxes and scores within 1e-6 relative.
    A mismatch names the image, the rows, and the variant that reproduces yours (class-agnostic NMS,
    ``>=`` at either threshold, boxes read as xyxy, multi-label). ``worst_error`` counts differing rows.
    """
    from hypothesis import strategies as st

    from refdet.testing import strategies_yolo as ys
    from refdet.yolo.nms import yolo_non_max_suppression

    def run_ref(p, c, i, **over):
        return yolo_non_max_suppression(p, c, i, convention=convention, **{**options, **over})

    def same(a, b):
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            x, y = _f64(x), _f64(y)
            if x.shape != y.shape or not np.array_equal(x[:, 5], y[:, 5]) or \
                    not np.allclose(x[:, :5], y[:, :5], rtol=1e-6, atol=1e-6):
                return False
        return True

    def compare(case):
        p, c, i = case
        exp = run_ref(p, c, i)
        got = [_f64(_np(g)) for g in fn(p.copy(), c, i)]
        got = [g if g.ndim == 2 else g.reshape(-1, 6) for g in got]
        if same(got, exp):
            return 0.0, None
        if len(got) != len(exp):
            return math.inf, f"{len(got)} images in the result; expected {len(exp)} (one array per image)"
        err = 0
        first = None
        for b, (g, e) in enumerate(zip(got, exp)):
            if not same([g], [e]):
                n = max(len(g), len(e))
                err += n
                if first is None:
                    first = b
        g, e = got[first], _f64(exp[first])
        lines = [f"image {first}: yours keeps {len(g)} rows, refdet {len(e)} (conf_thres {c:g}, iou_thres {i:g})"]
        m = min(len(g), len(e))
        k = next((j for j in range(m) if not same([g[j:j + 1]], [e[j:j + 1]])), m)
        if k < len(g):
            lines.append(f"  first differing row {k}: yours {np.round(g[k], 4).tolist()}")
        if k < len(e):
            lines.append(f"  {'' if k < len(g) else 'first missing '}row {k} of refdet: {np.round(e[k], 4).tolist()}")
        T = p.dtype.type
        variants = [
            ("class-agnostic NMS (no max_wh class offset: boxes of different classes suppress each other), expected "
             "class-aware" if not options.get("agnostic") else "class-aware NMS, expected agnostic",
             dict(agnostic=not options.get("agnostic", False))),
            (f"score >= conf_thres kept, expected strictly > {c:g}",
             dict(conf_thres=float(np.nextafter(T(c), T(-1))) if c > 0 else None)),
            (f"suppressed at IoU >= iou_thres, expected only IoU > {i:g} (torchvision nms)",
             dict(iou_thres=float(np.nextafter(T(i), T(-1))) if i > 0 else None)),
            (f"the {np.dtype(T).name} IoU compared with {np.dtype(T).name}(iou_thres) = {float(T(i))!r}; torchvision's "
             f"nms compares it with the float64 threshold {i!r}, so an IoU equal to {np.dtype(T).name}({i:g}) "
             f"{'suppresses' if float(T(i)) > i else 'is kept'}",
             dict(iou_thres=float(T(i)) if float(T(i)) != i else None)),
            ("one row per class above the threshold (multi_label), expected the best class only"
             if not options.get("multi_label") else "best class only, expected multi_label",
             dict(multi_label=not options.get("multi_label", False))),
        ]
        for name, over in variants:
            cc = over.pop("conf_thres", c)
            ii = over.pop("iou_thres", i)
            if cc is None or ii is None:
                continue
            try:
                v = run_ref(p, cc, ii, **over)
            except (ValueError, TypeError):
                continue
            if same(got, v):
                lines.append(f"  likely cause: {name}")
                break
        else:
            try:
                v = run_ref(_xyxy_as_xywh(p), c, i)
                if same(got, v):
                    lines.append("  likely cause: boxes read as (x1, y1, x2, y2), expected (cx, cy, w, h) converted "
                                 "by xywh2xyxy")
            except (ValueError, TypeError):
                pass
        return float(max(err, 1)), "\n".join(lines)

    def pred(rows):
        """rows of (cx, cy, w, h, score_0, ..., score_K-1) -> (1, 4 + K, N) float32"""
        return np.asarray(rows, np.float32).reshape(1, len(rows), -1).transpose(0, 2, 1).copy()

    golden = [
        # box 1 scores exactly conf_thres 0.25: not a candidate (score > conf, strictly)
        ("a score exactly at conf_thres", (pred([[10, 10, 8, 8, 0.9, 0.1], [40, 40, 8, 8, 0.25, 0.0]]), 0.25, 0.45)),
        # xywh (5, 5, 10, 10) and (5, 2.5, 10, 5): IoU = 50 / 100 = 0.5 exactly: kept at iou_thres 0.5
        ("IoU exactly at iou_thres", (pred([[5, 5, 10, 10, 0.9, 0.0], [5, 2.5, 10, 5, 0.8, 0.0]]), 0.25, 0.5)),
        # 12 x 13 and 26 x 6 boxes overlapping 12 x 6: IoU = 72 / 240 = float32(0.3) = 0.30000001 > 0.3:
        # suppressed, because torchvision compares the float32 IoU with the float64 threshold
        ("IoU equal to float32(iou_thres), above the float64 threshold",
         (pred([[90, 86, 12, 13, 0.9, 0.0], [85, 87, 26, 6, 0.8, 0.0]]), 0.25, 0.3)),
        # the same box, best in class 0 and class 1 for two rows: the class offset keeps both
        ("the same box in two classes", (pred([[20, 20, 10, 10, 0.9, 0.1], [20, 20, 10, 10, 0.1, 0.8]]), 0.25, 0.45)),
        # identical boxes with equal scores: the lower index survives
        ("identical boxes, tied scores", (pred([[20, 20, 10, 10, 0.7, 0.0]] * 3), 0.25, 0.45)),
        ("no candidate", (pred([[20, 20, 10, 10, 0.1, 0.2]]), 0.25, 0.45)),
        ("no box at all", (np.zeros((1, 6, 0), np.float32), 0.25, 0.45)),
    ]

    @st.composite
    def cases(draw):
        p, _ = draw(ys.yolo_predictions(max_extra=0))
        return p, draw(st.sampled_from([0.0, 0.25, 0.5])), draw(st.sampled_from([0.3, 0.45, 0.7]))

    r = _Runner("yolo_nms", "rows", convention, compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


# the training side (the task-aligned assigner, the generalized focal losses): conformance_yolo_train
from refdet.testing.conformance_yolo_train import (check_distribution_focal_loss, check_quality_focal_loss,  # noqa: E402
                                                   check_task_aligned_assign, check_varifocal_loss)

#: op name (``refdet verify --op``) -> check function
YOLO_CHECKS = {
    "make_anchors": check_make_anchors,
    "dfl_decode": check_dfl_decode,
    "yolov3_decode": check_yolov3_decode,
    "yolov5_decode": check_yolov5_decode,
    "yolox_decode": check_yolox_decode,
    "task_aligned_assign": check_task_aligned_assign,
    "yolo_nms": check_yolo_nms,
    "distribution_focal_loss": check_distribution_focal_loss,
    "varifocal_loss": check_varifocal_loss,
    "quality_focal_loss": check_quality_focal_loss,
}
