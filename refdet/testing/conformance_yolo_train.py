"""Conformance checks of the YOLO family's training side: the task-aligned assigner and the
generalized focal losses (distribution focal, varifocal, quality focal) -- issue 16.

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS``); the signatures
expected from ``fn`` are in :mod:`refdet.testing.conformance_yolo`.
"""
from __future__ import annotations

import math

import numpy as np

from refdet.testing.conformance_core import _Runner, _f64, _finish, _np

__all__ = ["check_task_aligned_assign", "check_distribution_focal_loss", "check_varifocal_loss",
           "check_quality_focal_loss"]


# ---------------------------------------------------------------------------------------------------
# the task-aligned assigner
# ---------------------------------------------------------------------------------------------------

def _as_assignment(out, K):
    """(fg (B, N) bool, gt_index (B, N), labels, boxes, target_scores (B, N, K)) from an Assignment or
    ultralytics' (target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx)."""
    from refdet.yolo.assign import Assignment, target_scores

    if isinstance(out, Assignment) or (hasattr(out, "gt_index") and hasattr(out, "quality")):
        a = Assignment(*(np.asarray(_np(v)) for v in out))
        return a.gt_index >= 0, a.gt_index, a.labels, a.boxes, target_scores(a, K)
    if isinstance(out, (tuple, list)) and len(out) == 5:
        tl, tb, ts, fg, gi = (np.asarray(_np(v)) for v in out)
        fg = fg.astype(bool)
        return fg, np.where(fg, gi, -1).astype(np.int64), tl.reshape(fg.shape), tb, ts
    raise TypeError("the assigner must return a refdet.yolo.Assignment or ultralytics' (target_labels, "
                    "target_bboxes, target_scores, fg_mask, target_gt_idx)")


def _tal_explain(case, fg, gi, ts, ref, K, settings, convention):
    """Explain the first differing anchor of a task-aligned assignment."""
    from refdet import conventions
    from refdet.yolo import assign as YA
    from refdet.yolo.assign import target_scores, task_aligned_assign

    P, PB, AP, GL, GB, GM = (case[k] for k in ("pred_scores", "pred_boxes", "anchor_points", "gt_labels",
                                               "gt_boxes", "gt_mask"))
    rfg, rgi = ref.fg_mask, ref.gt_index
    diff = (fg != rfg) | (fg & rfg & (gi != rgi))
    lines = []
    kw = dict(strides=case["strides"], convention=convention, **settings)
    s = conventions.resolve("task_aligned_assign", convention, **settings)
    if diff.any():
        b, a = (int(v) for v in np.argwhere(diff)[0])
        desc = lambda f, g: f"gt {int(g)}" if f else "background"  # noqa: E731
        lines.append(f"{int(diff.sum())} anchor points are assigned differently; first: image {b}, point {a} at "
                     f"{AP[a].tolist()} px: yours {desc(fg[b, a], gi[b, a])}, refdet {desc(rfg[b, a], rgi[b, a])}")
        M = GB.shape[1]
        # each ground truth's own selection (its top-k among the candidates), before conflicts are resolved
        claim = []
        for m in range(M):
            if not GM[b, m]:
                continue
            mask = np.zeros_like(GM)
            mask[b, m] = True
            one = task_aligned_assign(P, PB, AP, GL, GB, mask, **kw)
            if one.fg_mask[b, a]:
                claim.append(m)
        u = np.zeros(M)
        valid = np.flatnonzero(GM[b])
        if valid.size:
            u[valid] = YA._pairs_overlap(s.overlap, GB[b, valid].astype(np.float64),
                                         np.repeat(PB[b, a][None].astype(np.float64), valid.size, 0))
        if len(claim) > 1:
            lines.append(f"  point {a} is in the top-{s.topk} of ground truths {claim} (overlaps "
                         f"{', '.join(f'gt {m}: {u[m]:.4g}' for m in claim)} with the predicted box "
                         f"{PB[b, a].tolist()})")
            if fg[b, a] and rfg[b, a]:
                best = int(np.argmax(u)) if u.max() > 0 else 0
                if int(gi[b, a]) == min(claim) and int(rgi[b, a]) == best:
                    lines.append("  likely cause: tie between two boxes for one anchor resolved by the lower index "
                                 f"(gt {min(claim)}) instead of the higher IoU (gt {best}, overlap {u[best]:.4g}): a "
                                 "point claimed by several ground truths keeps the one it overlaps most "
                                 "(ultralytics select_highest_overlaps: overlaps.max(1))")
                elif int(gi[b, a]) == max(claim):
                    lines.append(f"  likely cause: the last claimant (gt {max(claim)}) kept the point, as when "
                                 "each ground truth overwrites the previous one; expected the one of highest overlap "
                                 f"(gt {best})")
        gb = GB[b].astype(np.float64)
        dist = np.stack([AP[a, 0] - gb[:, 0], AP[a, 1] - gb[:, 1], gb[:, 2] - AP[a, 0], gb[:, 3] - AP[a, 1]], 1)
        m_y = int(gi[b, a]) if fg[b, a] else -1
        if m_y >= 0 and not rfg[b, a] and 0 <= m_y < M and np.isclose(dist[m_y].min(), 0, atol=s.eps):
            lines.append(f"  likely cause: the point lies ON the border of gt {m_y} {gb[m_y].tolist()} (distance "
                         f"{dist[m_y].min():g}); a candidate must be strictly inside (min distance > eps = "
                         f"{s.eps:g}, ultralytics select_candidates_in_gts)")
    else:
        b, a = (int(v) for v in np.argwhere(~np.isclose(ts, target_scores(ref, K), rtol=1e-5, atol=1e-7))[0][:2])
        lines.append(f"the same points are positive for the same ground truths, but the target scores differ; "
                     f"first at image {b}, point {a}: yours {ts[b, a].tolist()}, refdet "
                     f"{target_scores(ref, K)[b, a].tolist()} (t * max overlap of the gt / (max t of the gt + eps))")
    # refdet's knobs, one at a time
    tries = [("overlap='iou': u is plain IoU, expected CIoU clamped at 0 (ultralytics iou_calculation)",
              dict(overlap="iou")),
             ("min_side=None: small boxes are not enlarged to strides[1] before the centre-in-box test "
              "(ultralytics select_candidates_in_gts)", dict(convention="paper", overlap=s.overlap, eps=s.eps)),
             (f"alpha and beta swapped (alpha = {s.beta:g}, beta = {s.alpha:g})", dict(alpha=s.beta, beta=s.alpha)),
             ("topk 13 (the assigner's default) instead of the loss's 10" if s.topk == 10 else
              "topk 10 (v8DetectionLoss) instead of 13", dict(topk=10 if s.topk != 10 else 13))]
    vars_ = []
    for name, over in tries:
        try:
            v = task_aligned_assign(P, PB, AP, GL, GB, GM, **{**kw, **over})
        except (ValueError, TypeError):
            continue
        vars_.append((name, v))
    for name, v in vars_:
        if np.array_equal(v.fg_mask, fg) and np.array_equal(np.where(fg, v.gt_index, -1), np.where(fg, gi, -1)) \
                and np.allclose(target_scores(v, K), ts, rtol=1e-5, atol=1e-7):
            lines.append(f"  likely cause: {name}")
            break
    if not diff.any():
        ft = ref.fg_mask
        if ft.any():
            q = target_scores(ref, K)
            # t (the raw alignment) and t / max t reproduced from refdet's own pieces
            raw = np.zeros_like(q)
            b_i, a_i = np.nonzero(ft)
            m_i = ref.gt_index[ft]
            sc = P[b_i, a_i, GL[b_i, m_i]].astype(np.float64)
            uu = YA._pairs_overlap(s.overlap, GB[b_i, m_i].astype(np.float64), PB[b_i, a_i].astype(np.float64))
            t = sc ** s.alpha * uu ** s.beta
            raw[b_i, a_i, GL[b_i, m_i]] = t
            grp = b_i * GB.shape[1] + m_i
            mt = np.zeros(GB.shape[0] * GB.shape[1])
            np.maximum.at(mt, grp, t)
            unit = np.zeros_like(q)
            unit[b_i, a_i, GL[b_i, m_i]] = t / (mt[grp] + s.eps)
            for name, v in (("target scores are the raw alignments t, expected t * max overlap / max t", raw),
                            ("target scores normalised to 1 (t / max t), expected t * max overlap / max t "
                             "(the best point of a gt gets its best overlap, not 1)", unit)):
                if np.allclose(v, ts, rtol=1e-5, atol=1e-7):
                    lines.append(f"  likely cause: {name}")
                    break
    return "\n".join(lines)


def check_task_aligned_assign(fn, *, convention="ultralytics", n_cases=40, seed=0, raise_on_failure=True,
                              progress=None):
    """Check a task-aligned assigner against :func:`refdet.yolo.task_aligned_assign` (TOOD, ultralytics'
    ``TaskAlignedAssigner``).

    ``fn(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask, *, strides, topk, alpha,
    beta)`` with probabilities (B, N, K), xyxy pixel boxes (B, N, 4), points (N, 2) in pixels,
    labels (B, M), boxes (B, M, 4) and a bool mask (B, M); returns a :class:`refdet.yolo.Assignment`
    or ultralytics' 5-tuple. Compared: which points are positive, for which ground truth (exact),
    their labels and boxes, and the target scores (within 1e-5 relative).

    The rules (refdet's docstring has them in full): candidates strictly inside the box (after sides
    shorter than ``strides[1]`` are enlarged); alignment ``t = s^alpha * u^beta`` with ``u`` CIoU
    clamped at 0; the ``topk`` largest ``t`` per ground truth, **lowest index first among equal
    values** (``torch.topk`` leaves that order unspecified: an implementation that calls it may
    differ on ties at the k-th place); a point claimed by several ground truths keeps the one of
    largest overlap; target score ``t * max u / (max t + eps)`` per ground truth.

    A mismatch names the first differing point, the ground truths that claim it and their overlaps,
    and the likely cause ("tie between two boxes for one anchor resolved by the lower index instead
    of the higher IoU", a point on the box border, IoU instead of CIoU, no small-box enlargement,
    alpha/beta swapped, unnormalised target scores). ``worst_error`` counts differing points.
    """
    from refdet.testing import strategies_yolo as ys
    from refdet.yolo.anchors import make_anchors
    from refdet.yolo.assign import target_scores, task_aligned_assign

    def compare(case):
        settings = dict(topk=case["topk"], alpha=case["alpha"], beta=case.get("beta", 6.0))
        K = case["pred_scores"].shape[-1]
        ref = task_aligned_assign(case["pred_scores"], case["pred_boxes"], case["anchor_points"], case["gt_labels"],
                                  case["gt_boxes"], case["gt_mask"], strides=case["strides"], convention=convention,
                                  **settings)
        out = fn(*(case[k].copy() for k in ("pred_scores", "pred_boxes", "anchor_points", "gt_labels", "gt_boxes",
                                            "gt_mask")), strides=list(case["strides"]), **settings)
        fg, gi, lab, box, ts = _as_assignment(out, K)
        rts = target_scores(ref, K)
        ok = (fg.shape == ref.fg_mask.shape and np.array_equal(fg, ref.fg_mask)
              and np.array_equal(gi[fg], ref.gt_index[fg]) and np.array_equal(lab[fg], ref.labels[fg])
              and np.allclose(_f64(box)[fg], ref.boxes[fg]) and ts.shape == rts.shape
              and np.allclose(ts, rts, rtol=1e-5, atol=1e-7))
        if ok:
            return 0.0, None
        if fg.shape != ref.fg_mask.shape or ts.shape != rts.shape:
            return math.inf, f"shapes differ: fg_mask {fg.shape} vs {ref.fg_mask.shape}, target scores {ts.shape} " \
                             f"vs {rts.shape}"
        n_bad = int(((fg != ref.fg_mask) | (fg & ref.fg_mask & (gi != ref.gt_index))).sum())
        if n_bad == 0 and not (np.array_equal(lab[fg], ref.labels[fg]) and np.allclose(_f64(box)[fg], ref.boxes[fg])):
            return 1.0, "the same points and ground truths, but the assigned labels or boxes differ from the gt's own"
        return float(max(n_bad, 1)), _tal_explain(case, fg, gi, ts, ref, K, settings, convention)

    def golden_case(pts, scores, boxes, gt, labels, strides, topk=13, alpha=1.0):
        B, M = 1, len(gt)
        return dict(pred_scores=np.asarray(scores, np.float64)[None], pred_boxes=np.asarray(boxes, np.float64)[None],
                    anchor_points=np.asarray(pts, np.float64), gt_labels=np.asarray(labels, np.int64)[None],
                    gt_boxes=np.asarray(gt, np.float64).reshape(B, M, 4), gt_mask=np.ones((B, M), bool),
                    strides=list(strides), topk=topk, alpha=alpha)

    ap, _ = make_anchors([(4, 4)], [8.0], dtype=np.float64)
    pts = ap * 8.0                                           # 4, 12, 20, 28 on both axes (32 x 32 px)
    n = len(pts)
    sc = np.full((n, 2), 0.5)
    g0, g1 = [0.0, 0, 24, 24], [8.0, 8, 32, 32]
    # the 4 points in the overlap (12..20) are inside both boxes; their predicted boxes equal gt 1:
    # CIoU with gt 1 = 1 > with gt 0, so each stays with gt 1 although gt 0 (the lower index) claims it too
    pb = np.tile(np.array([[40.0, 40, 44, 44]]), (n, 1))       # far away elsewhere: CIoU 0
    both = [i for i in range(n) if 8 < pts[i, 0] < 24 and 8 < pts[i, 1] < 24]
    pb[both] = g1
    for i in range(n):                                       # points only in gt 0 / gt 1 predict their gt
        if i not in both and pts[i, 0] < 24 and pts[i, 1] < 24:
            pb[i] = g0
        elif i not in both and pts[i, 0] > 8 and pts[i, 1] > 8:
            pb[i] = g1
    border = pb.copy()
    golden = [
        ("an anchor claimed by two boxes: the higher overlap wins", golden_case(pts, sc, pb, [g0, g1], [0, 1], [8.0])),
        # gt [4, 4, 20, 28]: the points x = 4 (and y = 4) lie on its border: not strictly inside
        ("points exactly on a box border", golden_case(pts, sc, border, [[4.0, 4, 20, 28]], [1], [8.0])),
        # a 4 x 4 box around (14, 14) contains no point; enlarged to strides[1] = 16 about its centre,
        # [6, 6, 22, 22], it holds the 4 points at x, y in {12, 20}
        ("a box smaller than strides[1] (enlarged before the centre test)",
         golden_case(pts, sc, np.tile(np.array([[6.0, 6, 22, 22]]), (n, 1)), [[12.0, 12, 16, 16]], [0], [8.0, 16.0])),
        # every prediction far from the gt: all alignments 0 -> the top-k are the k lowest indices, and
        # those inside the box are positive with target score 0 (ultralytics masks only invalid gts)
        ("every alignment 0: the k lowest-index points inside are positive",
         golden_case(pts, sc, np.tile(np.array([[40.0, 40, 44, 44]]), (n, 1)), [[0.0, 0, 32, 32]], [0], [8.0])),
        # equal scores and identical predictions: 16 equal alignments, top-3 -> the three lowest indices
        ("equal alignments at the k-th place (lowest index first)",
         golden_case(pts, sc, np.tile(np.array([[0.0, 0, 32, 32]]), (n, 1)), [[0.0, 0, 32, 32]], [1], [8.0], topk=3)),
        ("no ground truth", dict(golden_case(pts, sc, pb, np.zeros((0, 4)), np.zeros(0, np.int64), [8.0]))),
    ]
    r = _Runner("task_aligned_assign", "points", convention, compare, progress)
    return _finish(r.run(golden, ys.tal_inputs(ties=True), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# the generalized focal losses
# ---------------------------------------------------------------------------------------------------

def _loss_compare(op, fwd_ref, bwd_ref, fn, grad, variants, rtol_atol, dtypes):
    """compare(case) for an elementwise loss: forward (and gradient) with named variants. Floating
    inputs of a dtype not in ``dtypes`` are cast to ``dtypes[0]`` first."""
    dtypes = tuple(np.dtype(d) for d in dtypes)

    def compare(case):
        case = tuple(a.astype(dtypes[0]) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                     and a.dtype not in dtypes else a for a in case)
        args, dloss = case[:-1], case[-1]
        rtol, atol = rtol_atol(args[0].dtype)
        msgs, err = [], 0.0
        pairs = [("forward", fwd_ref(*args), lambda: fn(*(a.copy() for a in args)), "fwd")]
        if grad is not None:
            pairs.append(("gradient", bwd_ref(*args, dloss), lambda: grad(*(a.copy() for a in args), dloss.copy()),
                          "bwd"))
        for name, exp, theirs, kind in pairs:
            got = _f64(_np(theirs()))
            e = _f64(exp)
            if got.shape == e.shape and np.allclose(got, e, rtol=rtol, atol=atol):
                continue
            if got.shape != e.shape:
                msgs.append(f"{op} {name}: shape {got.shape}; refdet gives {e.shape}")
                err = math.inf
                continue
            bad = ~np.isclose(got, e, rtol=rtol, atol=atol)
            k = tuple(int(v) for v in np.argwhere(bad)[0])
            shown = []
            for a in args:                   # the inputs of the differing element (a row for a distribution)
                a = _f64(a)
                if a.ndim == len(k) or a.ndim == len(k) + 1:
                    v = a[k]
                elif a.ndim == len(k) - 1:
                    v = a[k[:-1]]
                else:
                    continue
                shown.append(repr(float(v)) if np.ndim(v) == 0 else str(np.round(v, 4).tolist()))
            m = (f"{op} {name} differs at {int(bad.sum())} of {e.size} elements; first at {list(k)} (inputs "
                 f"{', '.join(shown)}): yours {float(got[k])!r}, refdet {float(e[k])!r}")
            for vname, vf in variants.get(kind, []):
                try:
                    v = _f64(vf(*args, dloss) if kind == "bwd" else vf(*args))
                except (ValueError, TypeError, IndexError):
                    continue
                if v.shape == got.shape and np.allclose(got, v, rtol=rtol, atol=atol):
                    m += f"\n  likely cause: {vname}"
                    break
            msgs.append(m)
            err = max(err, float(np.abs(got - e).max()))
        return err, ("\n".join(msgs) if msgs else None)
    return compare


def _tol(dtype):
    return (1e-4, 1e-6) if np.dtype(dtype) == np.float32 else (1e-7, 1e-10)


def check_distribution_focal_loss(fn, *, grad=None, dtypes=(np.float64, np.float32), n_cases=60, seed=0,
                                  raise_on_failure=True, progress=None):
    """Check the distribution focal loss (GFL eq. 6, ultralytics ``DFLoss``) against
    :func:`refdet.yolo.distribution_focal_loss_forward` (``convention="ultralytics"``).

    ``fn(logits (n, R), targets (n,)) -> loss (n,)``, one value per distribution: targets clamped to
    ``[0, R - 1 - 0.01]``, ``y_l = floor(y)``, ``w_l = y_l + 1 - y``, ``w_r = 1 - w_l``, ``loss =
    -(w_l log softmax(z)[y_l] + w_r log softmax(z)[y_r])``. ``grad(logits, targets, dloss) ->
    dlogits`` (optional). ``dtypes``: the input precisions to test (an implementation that computes
    in float32 only is checked with ``dtypes=(np.float32,)``); tolerances (rtol, atol) (1e-7, 1e-10)
    for float64 and (1e-4, 1e-6) for float32 (the same for the other two losses). A mismatch names
    the variant (weights swapped, the hard target ``round(y)``, the mean of the two terms instead of
    their sum).
    """
    from hypothesis import strategies as st

    from refdet.yolo import losses as L

    def fwd(z, y):
        return L.distribution_focal_loss_forward(z, y)[0]

    def bwd(z, y, d):
        return L.distribution_focal_loss_backward(d, L.distribution_focal_loss_forward(z, y)[1]).dlogits

    def manual(z, y, *, swap=False, hard=False, half=False, clamp=True):
        z, y = _f64(z), _f64(y)
        R = z.shape[-1]
        if clamp:
            y = np.clip(y, 0, R - 1 - 0.01)
        tl = np.minimum(np.floor(y).astype(np.int64), R - 2)
        wl = tl + 1 - y
        wr = 1 - wl
        if swap:
            wl, wr = wr, wl
        lp = z - z.max(-1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
        if hard:
            k = np.minimum(np.round(y).astype(np.int64), R - 1)
            return -np.take_along_axis(lp, k[..., None], -1)[..., 0]
        out = -(np.take_along_axis(lp, tl[..., None], -1)[..., 0] * wl
                + np.take_along_axis(lp, (tl + 1)[..., None], -1)[..., 0] * wr)
        return out / 2 if half else out

    variants = {"fwd": [
        ("the two bins' weights swapped (w_l = y - y_l), expected w_l = y_l + 1 - y (the nearer bin weighs more)",
         lambda z, y: manual(z, y, swap=True)),
        ("cross entropy to the nearest bin round(y), expected the two bins around y",
         lambda z, y: manual(z, y, hard=True)),
        ("the mean of the two terms, expected their sum", lambda z, y: manual(z, y, half=True)),
    ]}

    rng = np.random.default_rng(0)
    z0 = rng.standard_normal((5, 16)) * 2
    golden = [
        # y = 3.25: bins 3 and 4 with weights 0.75 and 0.25; y = 0 (weights 1, 0); y = 15.5 clamps to 14.99
        ("targets 3.25, 0, 14.99, 15.5 (clamped), 7 (integer), reg_max 16",
         (z0, np.array([3.25, 0.0, 14.99, 15.5, 7.0]), rng.standard_normal(5))),
        ("float32, reg_max 4", (z0[:, :4].astype(np.float32), np.array([0.5, 1.0, 2.5, 2.99, 3.5], np.float32),
                                rng.standard_normal(5).astype(np.float32))),
    ]

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        R = draw(st.sampled_from([2, 4, 8, 16]))
        n = draw(st.integers(1, 8))
        r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        y = np.round(r.uniform(0, R, n) * 4) / 4            # quarters: integer targets and bins' midpoints
        return (r.standard_normal((n, R)) * 2).astype(dt), y.astype(dt), r.standard_normal(n).astype(dt)

    r = _Runner("distribution_focal_loss", "abs", "ultralytics",
                _loss_compare("distribution_focal_loss", fwd, bwd, fn, grad, variants, _tol, dtypes), progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def check_varifocal_loss(fn, *, grad=None, dtypes=(np.float64, np.float32), alpha=0.75, gamma=2.0, n_cases=60,
                         seed=0, raise_on_failure=True,
                         progress=None):
    """Check the varifocal loss (VarifocalNet eq. 2, ultralytics ``VarifocalLoss``) against
    :func:`refdet.yolo.varifocal_loss_forward` with ``labels``.

    ``fn(logits, targets, labels) -> loss`` elementwise: ``w * BCE_with_logits(z, q)``, ``w = q`` where
    ``labels`` (positives), ``alpha * sigmoid(z)^gamma`` elsewhere (with ``q = 0`` there); the weight
    is not detached (``grad(logits, targets, labels, dloss) -> dlogits`` includes its derivative). A
    mismatch names the variant (positives weighted by 1 instead of q, alpha on the positives, gamma
    1, the weight detached in the gradient).
    """
    from hypothesis import strategies as st

    from refdet import _checks
    from refdet.yolo import losses as L

    alpha, gamma = _checks.check_real(alpha, "alpha"), _checks.check_real(gamma, "gamma")   # named up front
    if alpha < 0 or gamma < 0:
        raise ValueError(f"`alpha` and `gamma` must be >= 0; got alpha={alpha}, gamma={gamma}")

    def fwd(z, q, lab):
        return L.varifocal_loss_forward(z, q, labels=lab, alpha=alpha, gamma=gamma)[0]

    def bwd(z, q, lab, d):
        cache = L.varifocal_loss_forward(z, q, labels=lab, alpha=alpha, gamma=gamma)[1]
        return L.varifocal_loss_backward(d, cache).dlogits

    def manual(z, q, lab, *, pos_w="q", a=alpha, g=gamma):
        z, q = _f64(z), _f64(q)
        p = 1 / (1 + np.exp(-z))
        bce = np.maximum(z, 0) - z * q + np.log1p(np.exp(-np.abs(z)))
        wpos = q if pos_w == "q" else (np.ones_like(q) if pos_w == "1" else a * q)
        return np.where(lab.astype(bool), wpos, a * p ** g) * bce

    def detached_grad(z, q, lab, d):
        z, q = _f64(z), _f64(q)
        p = 1 / (1 + np.exp(-z))
        w = np.where(lab.astype(bool), q, alpha * p ** gamma)
        return w * (p - q) * _f64(d)

    variants = {"fwd": [("positives weighted by 1, expected by their target q (IoU-aware)",
                         lambda z, q, lab: manual(z, q, lab, pos_w="1")),
                        (f"alpha = {alpha:g} applied to the positives too",
                         lambda z, q, lab: manual(z, q, lab, pos_w="aq")),
                        ("gamma = 1", lambda z, q, lab: manual(z, q, lab, g=1.0))],
                "bwd": [("the weight treated as a constant (detached); ultralytics and mmdet differentiate "
                         "alpha * sigmoid(z)^gamma too", detached_grad)]}

    rng = np.random.default_rng(0)
    z0 = np.array([[0.0, 2.0, -2.0, 17.0], [-17.0, 1.0, 0.5, -0.5]])
    q0 = np.array([[0.8, 0.0, 0.0, 0.6], [0.0, 0.3, 0.0, 0.0]])
    golden = [("positives, negatives, saturated logits", (z0, q0, q0 > 0, rng.standard_normal(z0.shape))),
              # a labelled positive with target 0 (ultralytics' label) weighs q = 0, not alpha p^gamma
              ("a positive label with target 0", (z0, q0 * 0, q0 > 0, rng.standard_normal(z0.shape)))]

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        shape = (draw(st.integers(1, 5)), draw(st.integers(1, 4)))
        r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        lab = r.random(shape) < 0.3
        q = np.where(lab, np.round(r.random(shape), 2), 0.0)
        return (r.standard_normal(shape) * 3).astype(dt), q.astype(dt), lab, r.standard_normal(shape).astype(dt)

    r = _Runner("varifocal_loss", "abs", "ultralytics",
                _loss_compare("varifocal_loss", fwd, bwd, fn, grad, variants, _tol, dtypes), progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def check_quality_focal_loss(fn, *, grad=None, dtypes=(np.float64, np.float32), beta=2.0, n_cases=60, seed=0,
                             raise_on_failure=True, progress=None):
    """Check the quality focal loss (GFL eq. 5) against :func:`refdet.yolo.quality_focal_loss_forward`.

    ``fn(logits, targets) -> loss`` elementwise, ``|y - sigmoid(z)|^beta * BCE_with_logits(z, y)``;
    ``grad(logits, targets, dloss) -> dlogits`` (optional). A mismatch names the variant (beta 1, no
    modulating factor, the focal loss's ``sigmoid^beta`` weight on every element, ``(y - p)`` without
    the absolute value).
    """
    from hypothesis import strategies as st

    from refdet.yolo import losses as L

    def fwd(z, y):
        return L.quality_focal_loss_forward(z, y, beta=beta)[0]

    def bwd(z, y, d):
        return L.quality_focal_loss_backward(d, L.quality_focal_loss_forward(z, y, beta=beta)[1]).dlogits

    def manual(z, y, kind):
        z, y = _f64(z), _f64(y)
        p = 1 / (1 + np.exp(-z))
        bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        w = {"beta1": np.abs(y - p), "none": np.ones_like(p), "sigma": p ** beta}[kind]
        return w * bce

    variants = {"fwd": [("beta = 1, expected |y - sigmoid(z)|^beta with beta = %g" % beta,
                         lambda z, y: manual(z, y, "beta1")),
                        ("no modulating factor (plain BCE)", lambda z, y: manual(z, y, "none")),
                        ("weight sigmoid(z)^beta on every element (the negatives' form), expected "
                         "|y - sigmoid(z)|^beta",
                         lambda z, y: manual(z, y, "sigma"))]}
    rng = np.random.default_rng(0)
    z0 = np.array([[0.0, 2.0, -2.0, 17.0, -17.0, 0.3]])
    y0 = np.array([[0.5, 0.0, 0.7, 1.0, 0.0, 0.574442516811659]])     # the last one: y == sigmoid(0.3)
    golden = [("soft targets, y == sigmoid(z) exactly, saturated logits", (z0, y0, rng.standard_normal(z0.shape)))]

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        shape = (draw(st.integers(1, 5)), draw(st.integers(1, 4)))
        r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        y = np.where(r.random(shape) < 0.3, np.round(r.random(shape), 2), 0.0)
        return (r.standard_normal(shape) * 3).astype(dt), y.astype(dt), r.standard_normal(shape).astype(dt)

    r = _Runner("quality_focal_loss", "abs", "paper",
                _loss_compare("quality_focal_loss", fwd, bwd, fn, grad, variants, _tol, dtypes), progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)
