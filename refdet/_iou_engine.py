"""The computation behind :mod:`refdet.iou` (private): one implementation of the IoU family.

:mod:`refdet.iou` resolves the convention profile and documents each public function; everything
numerical is here, shared by the pairwise (N, M), the paired (N,) and the differentiable paths:

* the guarded IoU kernel :func:`inter_union_into` (in place, in torchvision's order of operations);
* :func:`terms`: validation, the IoU and the enclosing box of a pairwise or paired evaluation, and
  the family's terms (:func:`enclosing_term`, :func:`distance_term`, :func:`aspect_terms`);
* :func:`forward_paired` and its reverse pass :func:`backward_paired` (hand-derived, one block per
  forward line; the subgradients are autograd's, see :mod:`refdet.iou`).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import numpy as np

from refdet import _checks
from refdet import conventions

# 4 / pi^2: v = 4/pi^2 (atan(wa/ha) - atan(wb/hb))^2 lies in [0, 1)
FOUR_OVER_PI2 = 4 / math.pi ** 2


# ---------------------------------------------------------------------------------------------------
# Boxes, areas, the IoU kernel
# ---------------------------------------------------------------------------------------------------

def validate_pair(boxes1, boxes2, half_wh=False):  # pragma: no mutate (only forward_paired uses the default, and ignores the flag)
    """Validate both box sets; return them in one common working dtype (maybe the callers' arrays).

    Also returns whether the float16 rounding of ``half_wh`` applies (both inputs float16).
    """
    half = bool(half_wh) and _checks.as_array(boxes1, "boxes1").dtype == np.float16 and \
        _checks.as_array(boxes2, "boxes2").dtype == np.float16
    b1 = _checks.as_boxes(boxes1, "boxes1")
    b2 = _checks.as_boxes(boxes2, "boxes2")
    dt = np.result_type(b1.dtype, b2.dtype)  # float32 + float64 -> float64, as torch promotes
    return b1.astype(dt, copy=False), b2.astype(dt, copy=False), half  # pragma: no mutate (copy=False: speed only, callers copy)


def columns(b, sort_corners):
    """(N, 4) -> four contiguous (N,) columns x1, y1, x2, y2 (new arrays, never views of the input)."""
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, i]).copy() for i in range(4))
    if sort_corners:  # ONNX: (x1, x2) and (y1, y2) may come in either order
        x1, x2 = np.minimum(x1, x2), np.maximum(x1, x2)
        y1, y2 = np.minimum(y1, y2), np.maximum(y1, y2)
    return x1, y1, x2, y2


def areas(cols, plus_one):
    """(N,) areas ``(x2 - x1) * (y2 - y1)`` (+1 each side under ``plus_one``), torchvision's order."""
    x1, y1, x2, y2 = cols
    w = x2 - x1
    h = y2 - y1
    if plus_one:
        one = w.dtype.type(1)
        w += one
        h += one
    return w * h


def round_half(x):
    """Round float32 values to float16 in place (torchvision's float16 ``rb - lt``, then upcast).

    torch's CPU float16 subtraction is computed in float32 and rounded once to float16, which is
    exactly what this does to the float32 difference.
    """
    np.copyto(x, x.astype(np.float16))


def inter_union_into(c1, c2, a1, a2, plus_one, guard, eps, inter, union, tmp, out, half=False):  # pragma: no mutate (every caller passes half)
    """IoU of broadcastable column sets, written into ``out``; ``inter``/``union``/``tmp`` are scratch.

    ``c1``/``c2`` are (x1, y1, x2, y2) tuples and ``a1``/``a2`` areas, already shaped to broadcast
    to ``out.shape`` ((n, 1) against (M,) for pairwise, (n,) against (n,) for paired).
    On return ``inter`` holds the intersection and ``union`` the union (before any eps guard).
    """
    x1a, y1a, x2a, y2a = c1
    x1b, y1b, x2b, y2b = c2
    dt = out.dtype.type
    # Argument order: on a tie NumPy's maximum/minimum return the *second* argument and torch's the
    # first; the two differ only in the sign of a zero, which the swapped order below reproduces
    # (torch.max(a, b) -> np.maximum(b, a); x.clamp(min=0) -> np.maximum(0, x)).
    # width of the intersection: clamp(min(x2) - max(x1) [+ 1], 0)
    np.minimum(x2b, x2a, out=inter)
    np.maximum(x1b, x1a, out=tmp)
    np.subtract(inter, tmp, out=inter)
    # height into `union` (used as scratch until the union is formed)
    np.minimum(y2b, y2a, out=union)
    np.maximum(y1b, y1a, out=tmp)
    np.subtract(union, tmp, out=union)
    if half:
        round_half(inter)
        round_half(union)
    if plus_one:
        np.add(inter, dt(1), out=inter)
        np.add(union, dt(1), out=union)
    pfr_mask = None
    if guard == "pfr":  # py-faster-rcnn: only where iw > 0 and ih > 0
        pfr_mask = (inter > 0) & (union > 0)
    np.maximum(dt(0), inter, out=inter)
    np.maximum(dt(0), union, out=union)
    np.multiply(inter, union, out=inter)            # I = w * h
    np.add(a1, a2, out=union)                       # area1 + area2 first ...
    np.subtract(union, inter, out=union)            # ... then - I  (torchvision's order)
    if guard == "eps_union":
        np.maximum(union, dt(eps), out=tmp)
        np.divide(inter, tmp, out=out)
        return
    if guard == "plus_eps":
        np.add(union, dt(eps), out=tmp)
        np.divide(inter, tmp, out=out)
        return
    np.divide(inter, union, out=out)
    if guard == "none":
        return
    if guard == "inter_gt_0":  # pragma: no mutate (the zero-writing guards are one function: test_iou_pinned.py)
        np.copyto(out, dt(0), where=inter <= 0)
    elif guard == "pfr":  # pragma: no mutate['pfr' -> 'XXpfrXX'] (see above: pfr falls to the same zeros)
        np.copyto(out, dt(0), where=~pfr_mask)
    else:  # skip_degenerate (ONNX): I <= 0, either area <= 0, or U <= 0 -> 0
        bad = (inter <= 0) | (union <= 0) | (a1 <= 0) | (a2 <= 0)  # pragma: no mutate[<= -> <; (inter <= 0) | (union <= 0) -> (inter <= 0) & (union <= 0); (inter <= 0) | (union <= 0) | (a1 <= 0) -> ((inter <= 0) | (union <= 0)) & (a1 <= 0)] (I <= 0 already covers them: I > 0 needs U > 0 and positive areas)
        np.copyto(out, dt(0), where=bad)


def guard_eps(eps):
    """The union guard constant of ``box_iou`` / ``box_iou_paired`` (their ``eps`` keyword), checked
    whatever the guard (an unused eps is still a mistake); only "eps_union" and "plus_eps" read it."""
    return _checks.check_positive(eps, "eps")


# ---------------------------------------------------------------------------------------------------
# The family's terms (pairwise (N, M) or paired (N,))
# ---------------------------------------------------------------------------------------------------

class Terms(NamedTuple):
    """The shared intermediates of one IoU-family evaluation (pairwise (N, M) or paired (N,))."""
    profile: conventions.Profile
    c1: tuple            # box-1 columns (x1, y1, x2, y2), shaped (N, 1) pairwise or (N,) paired
    c2: tuple            # box-2 columns, (M,) or (N,)
    iou: np.ndarray
    inter: np.ndarray
    union: np.ndarray    # area1 + area2 - I, before any guard
    wc: Optional[np.ndarray]   # enclosing width and height (+1, clamped at 0 as the profile says)
    hc: Optional[np.ndarray]
    eps: float


def terms(s, boxes1, boxes2, *, eps, paired=False, enclosing=False) -> Terms:
    """Validate the boxes and compute the guarded IoU and the enclosing box extents under ``s``.

    Pairwise (N, M) unless ``paired``; the enclosing box only when ``enclosing`` (the IoU alone
    needs neither, and the profile of ``box_iou`` has no ``clamp_enclosing``).
    """
    b1, b2, half = validate_pair(boxes1, boxes2, s["half_wh"])
    if paired:
        _checks.check_same_length(b1, b2, "boxes1", "boxes2")
    dt = b1.dtype
    c1 = columns(b1, s["sort_corners"])
    c2 = columns(b2, s["sort_corners"])
    a1 = areas(c1, s["plus_one"])
    a2 = areas(c2, s["plus_one"])
    if paired:
        shape, col1, a1b = (len(b1),), c1, a1
    else:
        shape, col1, a1b = (len(b1), len(b2)), tuple(c[:, None] for c in c1), a1[:, None]  # (N, 1)
    iou, inter, union, tmp = (np.empty(shape, dtype=dt) for _ in range(4))
    wc = hc = None
    with np.errstate(invalid="ignore", over="ignore"):  # no x / 0 here: U > 0 wherever I > 0
        inter_union_into(col1, c2, a1b, a2, s["plus_one"], s["guard"], eps, inter, union, tmp, iou, half)
        if enclosing:
            # smallest enclosing box: max(x2) - min(x1) [+ 1], clamped at 0 unless the profile says not
            wc = np.maximum(c2[2], col1[2]) - np.minimum(c2[0], col1[0])  # (see the tie note above)
            hc = np.maximum(c2[3], col1[3]) - np.minimum(c2[1], col1[1])
            if half:
                round_half(wc)
                round_half(hc)
            if s["plus_one"]:
                wc += dt.type(1)
                hc += dt.type(1)
            if s["clamp_enclosing"]:
                np.maximum(dt.type(0), wc, out=wc)
                np.maximum(dt.type(0), hc, out=hc)
    return Terms(s, col1, c2, iou, inter, union, wc, hc, eps)


def enclosing_term(t: Terms):
    """``(C - U) / C`` under the guard: (ratio, C) with C = wc * hc (see the family sources)."""
    dt = t.iou.dtype.type
    area_c = t.wc * t.hc
    guard = t.profile["guard"]
    if guard == "none":
        return (area_c - t.union) / area_c, area_c
    if guard == "plus_eps":                                       # torchvision ops/giou_loss.py
        return (area_c - t.union) / (area_c + dt(t.eps)), area_c
    if guard == "eps_union":                                      # mmdet bbox_overlaps(mode="giou")
        cm = np.maximum(area_c, dt(t.eps))
        return (cm - np.maximum(t.union, dt(t.eps))) / cm, area_c
    r = (area_c - t.union) / area_c
    np.copyto(r, dt(0), where=area_c == 0)
    return r, area_c


def _centre_distance(t: Terms):
    """rho^2, the squared distance between the box centres."""
    dt = t.iou.dtype.type
    c1, c2 = t.c1, t.c2
    if t.profile["centre_distance"] == "sums":
        # mmdet: ((X1 + X2) - (x1 + x2))^2 / 4 + ((Y1 + Y2) - (y1 + y2))^2 / 4, X = boxes2 (target)
        sx = (c2[0] + c2[2]) - (c1[0] + c1[2])
        sy = (c2[1] + c2[3]) - (c1[1] + c1[3])
        return (sx * sx) / dt(4) + (sy * sy) / dt(4)
    # torchvision: x_p = (x1 + x2) / 2 on each set, then (x_p - x_g) ** 2
    two = dt(2)
    dx = (c1[0] + c1[2]) / two - (c2[0] + c2[2]) / two
    dy = (c1[1] + c1[3]) / two - (c2[1] + c2[3]) / two
    return dx * dx + dy * dy


def distance_term(t: Terms):
    """rho^2 / c^2 with c^2 = wc^2 + hc^2 + eps: (ratio, rho2, c2). A zero c^2 (eps = 0 and both boxes
    the same point) gives NaN under guard "none" and 0 under the zero-writing guards."""
    dt = t.iou.dtype.type
    rho2 = _centre_distance(t)
    c2 = t.wc * t.wc + t.hc * t.hc + dt(t.eps)                   # (wc ** 2 + hc ** 2) + eps
    ratio = rho2 / c2
    if t.profile["guard"] not in ("none", "eps_union", "plus_eps"):
        np.copyto(ratio, dt(0), where=c2 == 0)
    return ratio, rho2, c2


#: IoU guards that write 0 where the ratio is undefined (refdet's extension of CIoU to the frameworks
#: without one: detectron2 and TF "inter_gt_0", ONNX "skip_degenerate", py-faster-rcnn "pfr")
_ZERO_GUARDS = ("inter_gt_0", "skip_degenerate", "pfr")


def aspect_terms(t: Terms, atan):
    """CIoU's v and alpha, and theta = atan(w1/h1) - atan(w2/h2)."""
    s = t.profile
    dt = t.iou.dtype.type
    f = np.arctan if _checks.check_callable(atan, "atan") is None else atan
    one = dt(1) if s["plus_one"] else dt(0)
    c1, c2 = t.c1, t.c2
    w1 = c1[2] - c1[0] + one
    h1 = c1[3] - c1[1] + one
    w2 = c2[2] - c2[0] + one
    h2 = c2[3] - c2[1] + one
    if s["height_eps"]:                                           # mmdet: h = y2 - y1 + eps
        h1 = h1 + dt(t.eps)
        h2 = h2 + dt(t.eps)
    t1 = np.asarray(f(w1 / h1), dtype=t.iou.dtype)
    t2 = np.asarray(f(w2 / h2), dtype=t.iou.dtype)
    theta = t1 - t2                                               # (N, M) or (N,)
    if s["guard"] in _ZERO_GUARDS:
        # The profile's IoU guard defines 0/0 (a point's IoU) as 0; the same guard makes the aspect
        # term of a point box (atan(0 / 0), no aspect ratio) contribute nothing: v = 0, CIoU = DIoU.
        # torchvision (guard "none", and its losses' "plus_eps") and the paper keep atan(0/0) = NaN,
        # as torchvision computes it; mmdet's height eps makes it finite.
        undefined = ((w1 == 0) & (h1 == 0)) | ((w2 == 0) & (h2 == 0))
        if np.any(undefined):
            theta = np.where(undefined, t.iou.dtype.type(0), theta)
    v = dt(FOUR_OVER_PI2) * (theta * theta)
    a_eps = dt(t.eps if s["alpha_eps"] is None else s["alpha_eps"])
    iou = t.iou
    if s["alpha_gate"] is None:
        alpha = v / (dt(1) - iou + v + a_eps)                     # ((1 - iou) + v) + eps
    else:                                                         # mmdet: (iou > 0.5) * v / (1 - iou + v)
        alpha = (iou > dt(s["alpha_gate"])).astype(iou.dtype) * v / (dt(1) - iou + v + a_eps)
    return v, alpha, theta



# ---------------------------------------------------------------------------------------------------
# Paired: forward with a cache, and the reverse pass
# ---------------------------------------------------------------------------------------------------

class PairedIoUGrads(NamedTuple):
    """Gradients of a paired IoU-family value w.r.t. both box sets, shape (N, 4) each."""
    dboxes1: np.ndarray
    dboxes2: np.ndarray


class PairedIoUCache(NamedTuple):
    """What ``*_paired_backward`` needs: the boxes, the profile and the named terms, all (N,).

    ``iou`` is the guarded IoU; ``enclosing`` the GIoU term ``(C - U) / C`` (``area_c`` = C);
    ``distance`` the DIoU term ``rho^2 / c^2``; ``v`` and ``alpha`` CIoU's aspect term (``alpha * v``
    is subtracted; ``theta = atan(w1/h1) - atan(w2/h2)``). Terms a kind does not use are None.
    ``value`` is the result before CIoU's optional clip. ``boxes1``/``boxes2`` are the working-dtype
    boxes after ``sort_corners``; ``orig1``/``orig2`` the boxes before it (None without it).
    """
    kind: str
    profile: conventions.Profile
    eps: float
    boxes1: np.ndarray
    boxes2: np.ndarray
    orig1: Optional[np.ndarray]
    orig2: Optional[np.ndarray]
    iou: np.ndarray
    inter: np.ndarray
    union: np.ndarray
    enclosing: Optional[np.ndarray]
    area_c: Optional[np.ndarray]
    distance: Optional[np.ndarray]
    rho2: Optional[np.ndarray]
    c2: Optional[np.ndarray]
    v: Optional[np.ndarray]
    alpha: Optional[np.ndarray]
    theta: Optional[np.ndarray]
    value: np.ndarray


def forward_paired(kind, s, eps, boxes1, boxes2, atan=None) -> Tuple[np.ndarray, PairedIoUCache]:
    """(values, PairedIoUCache) of ``kind`` in {"iou", "giou", "diou", "ciou"} under the resolved ``s``."""
    t = terms(s, boxes1, boxes2, paired=True, eps=eps, enclosing=kind != "iou")
    dt = t.iou.dtype.type
    enclosing = area_c = distance = rho2 = c2 = v = alpha = theta = None
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if kind == "iou":
            value = t.iou.copy()
        elif kind == "giou":
            enclosing, area_c = enclosing_term(t)
            value = t.iou - enclosing
        else:
            distance, rho2, c2 = distance_term(t)
            value = t.iou - distance
            if kind == "ciou":
                v, alpha, theta = aspect_terms(t, atan)
                value = value - alpha * v                        # torchvision: diou - alpha * v
    b1 = np.stack(t.c1, axis=1)
    b2 = np.stack(t.c2, axis=1)
    o1 = o2 = None
    if s["sort_corners"]:
        o1, o2, _ = validate_pair(boxes1, boxes2)
        o1, o2 = o1.copy(), o2.copy()
    cache = PairedIoUCache(kind, s, float(eps), b1, b2, o1, o2, t.iou, t.inter, t.union, enclosing, area_c,
                           distance, rho2, c2, v, alpha, theta, value)
    out = value
    if kind == "ciou" and s["clip"]:
        out = np.clip(value, dt(-1), dt(1))  # pragma: no mutate[1 -> 2] (CIoU <= IoU <= 1)
    return out, cache


def _max_share(a, b):
    """Share of d max(a, b) going to ``a``: 1, 0, or 1/2 on a tie (torch.maximum's backward)."""
    t = a.dtype.type
    return np.where(a > b, t(1), np.where(a == b, t(0.5), t(0)))


def _min_share(a, b):
    """Share of d min(a, b) going to ``a``: 1, 0, or 1/2 on a tie (torch.minimum's backward)."""
    t = a.dtype.type
    return np.where(a < b, t(1), np.where(a == b, t(0.5), t(0)))


def backward_paired(g, c: PairedIoUCache) -> PairedIoUGrads:
    """Reverse-mode pass through :func:`forward_paired`; ``g`` (N,) = dL/dvalue.

    Each block is the chain rule of one forward line, last line first. Box 1 has columns
    (x1, y1, x2, y2), box 2 (X1, Y1, X2, Y2); ``d_name`` is dL/d(name); ``p1`` is the +1 of
    ``plus_one`` (else 0).
    """
    s = c.profile
    dt = c.iou.dtype.type
    one, two, zero = dt(1), dt(2), dt(0)
    e = dt(c.eps)
    p1 = dt(1) if s["plus_one"] else dt(0)
    guard = s["guard"]
    cols1 = [np.ascontiguousarray(c.boxes1[:, i]) for i in range(4)]
    cols2 = [np.ascontiguousarray(c.boxes2[:, i]) for i in range(4)]
    x1, y1, x2, y2 = cols1
    X1, Y1, X2, Y2 = cols2
    d1 = [np.zeros_like(x1) for _ in range(4)]                   # dL/d(x1, y1, x2, y2)
    d2 = [np.zeros_like(x1) for _ in range(4)]                   # dL/d(X1, Y1, X2, Y2)
    d_union = np.zeros_like(x1)
    d_wc = d_hc = None

    if c.kind == "ciou":
        if s["clip"]:                                            # clamp's backward: strictly inside
            g = g * ((c.value > -one) & (c.value < one))
        # value = diou - alpha * v with alpha constant; v = 4/pi^2 theta^2,
        # theta = atan(w1 / h1) - atan(w2 / h2); d atan(u) = du / (1 + u^2); d(w/h) = dw/h - w dh/h^2
        d_theta = -g * c.alpha * dt(2 * FOUR_OVER_PI2) * c.theta
        h_eps = e if s["height_eps"] else zero
        for sign, cols, dd in ((one, cols1, d1), (-one, cols2, d2)):
            w = cols[2] - cols[0] + p1
            h = cols[3] - cols[1] + p1 + h_eps
            u = w / h
            du = sign * d_theta / (one + u * u)
            dw, dh = du / h, -du * u / h
            if s["guard"] in _ZERO_GUARDS:  # a point box's guarded theta is 0: it passes 0, not 0 * NaN
                point = (w == 0) & (h == 0)
                dw = np.where(point, zero, dw)
                dh = np.where(point, zero, dh)
            dd[:] = [-dw, -dh, dw, dh]                           # the first gradients: d1, d2 were 0
    if c.kind in ("diou", "ciou"):
        # value = iou - rho2 / c2, c2 = wc^2 + hc^2 + eps
        d_iou = g
        d_ratio = -g
        c2 = c.c2
        d_rho2 = d_ratio / c2
        d_c2 = -d_ratio * c.rho2 / (c2 * c2)
        if guard not in ("none", "eps_union", "plus_eps"):  # the guard wrote 0 where c^2 = 0: gradient 0
            d_rho2 = np.where(c2 == 0, zero, d_rho2)
            d_c2 = np.where(c2 == 0, zero, d_c2)
        d_wc = d_c2 * two * _enclosing_extent(c, 0, 2)
        d_hc = d_c2 * two * _enclosing_extent(c, 1, 3)
        # rho2 = (xp - xg)^2 + (yp - yg)^2 with xp = (x1 + x2) / 2: d rho2 / d x1 = xp - xg
        # (the same derivative for mmdet's ((X1 + X2) - (x1 + x2))^2 / 4)
        for lo, hi, ctr in ((0, 2, (x1 + x2) / two - (X1 + X2) / two), (1, 3, (y1 + y2) / two - (Y1 + Y2) / two)):
            dd = d_rho2 * ctr
            d1[lo] += dd
            d1[hi] += dd
            d2[lo] -= dd
            d2[hi] -= dd
    elif c.kind == "giou":
        # value = iou - r, r = (C - U) / C under the guard; C = wc * hc
        d_iou = g
        d_r = -g
        area_c, union = c.area_c, c.union
        if guard == "plus_eps":                                  # r = (C - U) / (C + eps)
            ce = area_c + e
            d_c = d_r * (union + e) / (ce * ce)
            d_union = -d_r / ce
        elif guard == "eps_union":                               # r = (Cm - Um) / Cm = 1 - Um / Cm
            cm, um = np.maximum(area_c, e), np.maximum(union, e)
            d_c = d_r * um / (cm * cm) * _max_share(area_c, e)
            d_union = -d_r / cm * _max_share(union, e)
        else:                                                    # r = (C - U) / C
            d_c = d_r * union / (area_c * area_c)
            d_union = -d_r / area_c
            if guard != "none":                                  # 0 written where C == 0: gradient 0
                d_c = np.where(area_c == 0, zero, d_c)
                d_union = np.where(area_c == 0, zero, d_union)
        d_wc = d_c * _enclosing_extent(c, 1, 3)
        d_hc = d_c * _enclosing_extent(c, 0, 2)
    else:
        d_iou = g

    # iou = I / U under the guard; I = max(0, iw) * max(0, ih), iw = min(x2, X2) - max(x1, X1) + p1
    inter, union = c.inter, c.union
    iw = np.minimum(x2, X2) - np.maximum(x1, X1) + p1
    ih = np.minimum(y2, Y2) - np.maximum(y1, Y1) + p1
    if guard == "plus_eps":
        ud = union + e
        d_inter = d_iou / ud
        d_union = d_union - d_iou * inter / (ud * ud)
    elif guard == "eps_union":
        ud = np.maximum(union, e)
        d_inter = d_iou / ud
        d_union = d_union - d_iou * inter / (ud * ud) * _max_share(union, e)
    else:
        d_inter = d_iou / union
        d_union_iou = d_iou * inter / (union * union)
        if guard != "none":                                      # where the guard writes 0: gradient 0
            # inter_gt_0 and skip_degenerate pass where I > 0 (skip_degenerate's U > 0 and positive
            # areas follow from I > 0); pfr where the unclamped widths are > 0, which is I > 0 except
            # where I = iw * ih underflows to 0
            passes = (iw > 0) & (ih > 0) if guard == "pfr" else inter > 0
            d_inter = np.where(passes, d_inter, zero)
            d_union_iou = np.where(passes, d_union_iou, zero)
        d_union = d_union - d_union_iou
    # union = (area1 + area2) - I;  area = (x2 - x1 + p1) (y2 - y1 + p1)
    d_inter = d_inter - d_union
    for dd, cols in ((d1, cols1), (d2, cols2)):
        dw = d_union * (cols[3] - cols[1] + p1)
        dh = d_union * (cols[2] - cols[0] + p1)
        dd[2] += dw
        dd[0] -= dw
        dd[3] += dh
        dd[1] -= dh
    # the clamps of I = max(0, iw) * max(0, ih) pass the gradient strictly inside
    d_iw = np.where(iw > 0, d_inter * np.maximum(ih, zero), zero)  # where(), as torch: inf * 0 is not NaN
    d_ih = np.where(ih > 0, d_inter * np.maximum(iw, zero), zero)
    for lo, hi, d_ext in ((0, 2, d_iw), (1, 3, d_ih)):           # the x, then the y axis: columns lo, hi
        share_hi = _min_share(cols1[hi], cols2[hi])
        share_lo = _max_share(cols1[lo], cols2[lo])
        d1[hi] += d_ext * share_hi
        d2[hi] += d_ext * (one - share_hi)
        d1[lo] -= d_ext * share_lo
        d2[lo] -= d_ext * (one - share_lo)
    # enclosing extents: wc = max(x2, X2) - min(x1, X1) + p1, clamped at 0 (strictly inside)
    if d_wc is not None:
        for lo, hi, d_ext in ((0, 2, d_wc), (1, 3, d_hc)):
            if s["clamp_enclosing"]:
                raw = np.maximum(cols1[hi], cols2[hi]) - np.minimum(cols1[lo], cols2[lo]) + p1
                d_ext = np.where(raw > 0, d_ext, zero)
            share_hi = _max_share(cols1[hi], cols2[hi])
            share_lo = _min_share(cols1[lo], cols2[lo])
            d1[hi] += d_ext * share_hi
            d2[hi] += d_ext * (one - share_hi)
            d1[lo] -= d_ext * share_lo
            d2[lo] -= d_ext * (one - share_lo)
    if s["sort_corners"]:                                        # x1 = min(x1o, x2o), x2 = max(x1o, x2o)
        d1 = _unsort(d1, c.orig1)
        d2 = _unsort(d2, c.orig2)
    return PairedIoUGrads(np.stack(d1, axis=1), np.stack(d2, axis=1))


def _enclosing_extent(c: PairedIoUCache, lo, hi):
    """wc (columns lo, hi = 0, 2) or hc (1, 3) as the forward computed them (after +1 and the clamp)."""
    dt = c.iou.dtype.type
    ext = np.maximum(c.boxes1[:, hi], c.boxes2[:, hi]) - np.minimum(c.boxes1[:, lo], c.boxes2[:, lo])
    if c.profile["plus_one"]:
        ext = ext + dt(1)
    if c.profile["clamp_enclosing"]:
        ext = np.maximum(ext, dt(0))
    return ext


def _unsort(d, orig):
    """Route the gradients of the sorted corners back to the given ones (halves on a tie)."""
    out = [None] * 4
    for i, j in ((0, 2), (1, 3)):                                # columns x1, x2, then y1, y2
        lo, hi = np.ascontiguousarray(orig[:, i]), np.ascontiguousarray(orig[:, j])
        share = _min_share(lo, hi)                               # the given lo is the sorted min
        out[i] = d[i] * share + d[j] * (1 - share)
        out[j] = d[i] * (1 - share) + d[j] * share
    return out


def backward_entry(dvalues, cache, forward_name: str) -> PairedIoUGrads:
    if not isinstance(cache, PairedIoUCache):
        raise TypeError(f"`cache` must be the PairedIoUCache returned by {forward_name}; got "
                        f"{type(cache).__name__}")
    n = len(cache.iou)
    d = _checks.as_float_array(dvalues, "dvalues")
    if d.shape != (n,):
        raise ValueError(f"`dvalues` must have shape ({n},) (one per pair); got {d.shape}")
    g = np.ascontiguousarray(d, dtype=cache.iou.dtype)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return backward_paired(g, cache)

