"""Box losses as forward/backward pairs: the GIoU, DIoU and CIoU losses of matched box pairs.

See :mod:`refdet.losses` for the shape of every pair, the dtype rules and the documented kinks.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.losses._reduction import _ReduceInfo, _check_cache, _check_reduction, _reduce, _reduce_backward

__all__ = [
    "giou_loss_forward", "giou_loss_backward",
    "diou_loss_forward", "diou_loss_backward",
    "ciou_loss_forward", "ciou_loss_backward",
    "BoxLossGrads",
]

# 4 / pi^2: the CIoU aspect-ratio term v = 4/pi^2 (atan(wg/hg) - atan(w/h))^2 lies in [0, 1).
_FOUR_OVER_PI2 = 4.0 / (math.pi ** 2)


class BoxLossGrads(NamedTuple):
    """Gradients of a GIoU/DIoU/CIoU loss w.r.t. both box sets (torchvision differentiates both)."""
    dpred_boxes: np.ndarray
    dtarget_boxes: np.ndarray


class BoxLossCache(NamedTuple):
    kind: str
    formula: str
    values: dict             # named intermediates of the forward pass (see _iou_family_forward)
    red: _ReduceInfo


# ------------------------------------------------------------------------------------------------
# Convention tables
# ------------------------------------------------------------------------------------------------

conventions.register(
    "giou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={"formula": "torchvision: iou = I/(U+eps), giou = iou - (C-U)/(C+eps), intersection masked "
                      "where iw, ih > 0; mmdet: U <- max(U, eps), C <- max(C, eps), iw/ih/cw/ch clamped at 0",
           "eps": "the guard (torchvision functional default 1e-7; mmdet GIoULoss module default 1e-6)",
           "empty_mean": "value of reduction='mean' on N = 0 (torchvision returns 0*sum = 0; torch mean is NaN)"},
    doc="torchvision ops/giou_loss.py 7-74 (fvcore's giou_loss, used by detectron2); mmdet "
        "bbox_overlaps(mode='giou', is_aligned=True) behind GIoULoss (eps=1e-6).",
)

conventions.register(
    "diou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={"formula": "torchvision: 1 - I/(U+eps) + rho2/(cw^2+ch^2+eps); mmdet: same terms with "
                      "iw/ih/cw/ch clamped at 0 and rho2 = ((x1g+x2g)-(x1+x2))^2/4 + ...",
           "eps": "the guard (mmdet DIoULoss module default 1e-6)",
           "empty_mean": "value of reduction='mean' on N = 0"},
    doc="torchvision ops/diou_loss.py 64-90; detectron2 layers/losses.py diou_loss; mmdet "
        "models/losses/iou_loss.py diou_loss.",
)

conventions.register(
    "ciou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "detectron2", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={"formula": "torchvision: DIoU part always with eps=1e-7 (its _diou_iou_loss is called "
                      "without eps), alpha = v/(1-iou+v+eps) under no_grad; detectron2: eps used "
                      "everywhere; mmdet: h+eps in atan(w/h), alpha = [iou>0.5] v/(1-iou+v), "
                      "CIoU clamped to [-1, 1]",
           "eps": "the guard (mmdet CIoULoss module default 1e-6)",
           "empty_mean": "value of reduction='mean' on N = 0"},
    doc="torchvision ops/ciou_loss.py; detectron2 layers/losses.py ciou_loss; mmdet v3 "
        "models/losses/iou_loss.py ciou_loss (alpha gated by IoU > 0.5, clamp).",
)


# ------------------------------------------------------------------------------------------------
# GIoU / DIoU / CIoU losses
# ------------------------------------------------------------------------------------------------

def _max_w(a, b):
    """Share of d max(a, b) going to ``a`` (1, 0, or 1/2 on a tie: torch.maximum's backward)."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


def _min_w(a, b):
    return np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


def _box_pair(pred_boxes, target_boxes):
    p = _checks.as_boxes(pred_boxes, "pred_boxes")
    g = _checks.as_boxes(target_boxes, "target_boxes")
    if p.shape != g.shape:
        raise ValueError(f"`pred_boxes` and `target_boxes` must have the same shape (N, 4); "
                         f"got {p.shape} and {g.shape}")
    dt = np.promote_types(p.dtype, g.dtype)
    return p.astype(dt, copy=False), g.astype(dt, copy=False)


def _iou_family_forward(kind, p, g, formula, eps):
    """Elementwise loss of matched pairs and the intermediates the backward pass needs.

    Symbols: pred (x1, y1, x2, y2), target (X1, Y1, X2, Y2); intersection corners
    xk1 = max(x1, X1), xk2 = min(x2, X2) (same in y); iw = xk2 - xk1, ih = yk2 - yk1;
    I = iw * ih where both > 0 (torchvision) or clamp(iw, 0) * clamp(ih, 0) (mmdet);
    U = area_p + area_g - I; enclosing box xc1 = min(x1, X1), xc2 = max(x2, X2).
    """
    dt = p.dtype.type
    one, zero, two = dt(1), dt(0), dt(2)
    e = dt(eps)
    x1, y1, x2, y2 = p.T
    X1, Y1, X2, Y2 = g.T
    v = dict(x1=x1, y1=y1, x2=x2, y2=y2, X1=X1, Y1=Y1, X2=X2, Y2=Y2)
    xk1, yk1 = np.maximum(x1, X1), np.maximum(y1, Y1)
    xk2, yk2 = np.minimum(x2, X2), np.minimum(y2, Y2)
    iw_raw, ih_raw = xk2 - xk1, yk2 - yk1
    if formula == "mmdet":
        iw, ih = np.maximum(iw_raw, zero), np.maximum(ih_raw, zero)
        inter = iw * ih
        imask_w, imask_h = iw_raw > 0, ih_raw > 0                 # torch's clamp backward: strictly inside
    else:
        m = (ih_raw > 0) & (iw_raw > 0)
        iw, ih = iw_raw, ih_raw
        inter = np.where(m, iw_raw * ih_raw, zero)
        imask_w = imask_h = m
    w, h, W, H = x2 - x1, y2 - y1, X2 - X1, Y2 - Y1
    union = w * h + W * H - inter
    xc1, yc1 = np.minimum(x1, X1), np.minimum(y1, Y1)
    xc2, yc2 = np.maximum(x2, X2), np.maximum(y2, Y2)
    cw_raw, ch_raw = xc2 - xc1, yc2 - yc1
    if formula == "mmdet":
        cw, ch = np.maximum(cw_raw, zero), np.maximum(ch_raw, zero)
        cmask_w, cmask_h = cw_raw > 0, ch_raw > 0
    else:
        cw, ch = cw_raw, ch_raw
        cmask_w = cmask_h = np.ones_like(cw_raw, dtype=bool)
    v.update(xk1=xk1, yk1=yk1, xk2=xk2, yk2=yk2, iw=iw, ih=ih, imask_w=imask_w, imask_h=imask_h,
             inter=inter, w=w, h=h, W=W, H=H, union=union, xc1=xc1, yc1=yc1, xc2=xc2, yc2=yc2,
             cw=cw, ch=ch, cmask_w=cmask_w, cmask_h=cmask_h, eps=e)

    if kind == "giou":
        carea = cw * ch
        if formula == "mmdet":
            ue = np.maximum(union, e)                              # union = max(union, eps)
            iou = inter / ue
            ce_ = np.maximum(carea, e)                             # enclose_area = max(C, eps)
            giou = iou - (ce_ - ue) / ce_
            v.update(ue=ue, ce=ce_, carea=carea)
        else:
            iou = inter / (union + e)
            giou = iou - ((carea - union) / (carea + e))
            v.update(carea=carea)
        return one - giou, v

    # DIoU / CIoU
    diou_eps = dt(1e-7) if (kind == "ciou" and formula == "torchvision") else e
    v["diou_eps"] = diou_eps
    if formula == "mmdet":
        union_e = union + e
        iou = inter / union_e
        c2 = cw ** 2 + ch ** 2 + e
        dx_ = (X1 + X2) - (x1 + x2)                                # twice the centre offset
        dy_ = (Y1 + Y2) - (y1 + y2)
        rho2 = dx_ ** 2 / dt(4) + dy_ ** 2 / dt(4)
        v.update(union_e=union_e, iou=iou, c2=c2, dcx2=dx_, dcy2=dy_, rho2=rho2)
        if kind == "diou":
            return one - (iou - rho2 / c2), v
        h_e, H_e = h + e, H + e                                    # mmdet: eps on the heights
        theta = np.arctan(W / H_e) - np.arctan(w / h_e)
        vv = dt(_FOUR_OVER_PI2) * theta ** 2
        gate = (iou > dt(0.5)).astype(p.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = gate * vv / (one - iou + vv)
        cious = iou - (rho2 / c2 + alpha * vv)
        cmask = (cious > -one) & (cious < one)                     # clamp's backward mask (strict)
        v.update(h_e=h_e, H_e=H_e, theta=theta, vv=vv, alpha=alpha, cmask=cmask)
        return one - np.clip(cious, -one, one), v

    union_e = union + diou_eps
    iou = inter / union_e
    c2 = (cw ** 2) + (ch ** 2) + diou_eps
    xp, yp = (x2 + x1) / two, (y2 + y1) / two
    xg, yg = (X1 + X2) / two, (Y1 + Y2) / two
    rho2 = ((xp - xg) ** 2) + ((yp - yg) ** 2)
    v.update(union_e=union_e, iou=iou, c2=c2, xp=xp, yp=yp, xg=xg, yg=yg, rho2=rho2)
    loss = one - iou + (rho2 / c2)
    if kind == "diou":
        return loss, v
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.arctan(W / H) - np.arctan(w / h)
    vv = dt(_FOUR_OVER_PI2) * theta ** 2
    alpha = vv / (one - iou + vv + e)                              # no_grad in torchvision
    v.update(theta=theta, vv=vv, alpha=alpha, h_e=h, H_e=H)
    return loss + alpha * vv, v


def _iou_family_backward(kind, formula, v, g):
    """Reverse-mode pass through ``_iou_family_forward``. ``g`` (N,) = dL/dloss_i. Returns the
    (N, 4) gradients of pred and target boxes. Each line is the chain rule of one forward line."""
    dt = v["x1"].dtype.type
    one, two = dt(1), dt(2)
    e = v["eps"]
    inter, union = v["inter"], v["union"]
    zeros = np.zeros_like(inter)
    d_iou = zeros.copy()
    d_union = zeros.copy()
    d_cw = zeros.copy()
    d_ch = zeros.copy()
    d = {k: zeros.copy() for k in ("x1", "y1", "x2", "y2", "X1", "Y1", "X2", "Y2")}

    if kind == "giou":
        dgiou = -g                                                 # loss = 1 - giou
        if formula == "mmdet":
            ue, ce_ = v["ue"], v["ce"]
            # giou = I/ue - (ce - ue)/ce = I/ue - 1 + ue/ce
            d_iou = dgiou
            d_ue = dgiou * (-inter / ue ** 2) + dgiou / ce_
            d_ce = dgiou * (-ue / ce_ ** 2)
            d_union = d_ue * _max_w(union, np.full_like(union, e))
            d_carea = d_ce * _max_w(v["carea"], np.full_like(union, e))
            d_inter_direct = dgiou / ue
        else:
            ce_ = v["carea"] + e
            # iou = I/(U+eps);  r = (C - U)/(C + eps);  giou = iou - r
            d_inter_direct = dgiou / (union + e)
            d_union = dgiou * (-inter / (union + e) ** 2) + dgiou / ce_       # dr/dU = -1/(C+eps)
            d_carea = -dgiou * (union + e) / ce_ ** 2                         # dr/dC = (U+eps)/(C+eps)^2
        d_cw = d_carea * v["ch"]
        d_ch = d_carea * v["cw"]
        d_inter = d_inter_direct
    else:
        union_e, c2, rho2 = v["union_e"], v["c2"], v["rho2"]
        if kind == "ciou" and formula == "mmdet":
            # loss = 1 - clamp(cious); cious = iou - rho2/c2 - alpha*v  (alpha held fixed)
            dcious = -g * v["cmask"]
            d_iou = dcious
            d_rho2 = -dcious / c2
            d_c2 = dcious * rho2 / c2 ** 2
            d_vv = -dcious * v["alpha"]
        elif formula == "mmdet":
            # loss = 1 - (iou - rho2/c2)
            d_iou = -g
            d_rho2 = g / c2
            d_c2 = -g * rho2 / c2 ** 2
            d_vv = None
        else:
            # loss = 1 - iou + rho2/c2 (+ alpha * v, alpha held fixed)
            d_iou = -g
            d_rho2 = g / c2
            d_c2 = -g * rho2 / c2 ** 2
            d_vv = g * v["alpha"] if kind == "ciou" else None
        d_inter = d_iou / union_e
        d_union = -d_iou * inter / union_e ** 2
        d_cw = d_c2 * two * v["cw"]
        d_ch = d_c2 * two * v["ch"]
        if formula == "mmdet":
            # rho2 = ((X1+X2) - (x1+x2))^2/4 + ((Y1+Y2) - (y1+y2))^2/4
            ddx = d_rho2 * v["dcx2"] / two
            ddy = d_rho2 * v["dcy2"] / two
            d["X1"] += ddx; d["X2"] += ddx; d["x1"] -= ddx; d["x2"] -= ddx
            d["Y1"] += ddy; d["Y2"] += ddy; d["y1"] -= ddy; d["y2"] -= ddy
        else:
            # rho2 = (xp - xg)^2 + (yp - yg)^2 with xp = (x1 + x2)/2
            dxp = d_rho2 * two * (v["xp"] - v["xg"])
            dyp = d_rho2 * two * (v["yp"] - v["yg"])
            d["x1"] += dxp / two; d["x2"] += dxp / two; d["X1"] -= dxp / two; d["X2"] -= dxp / two
            d["y1"] += dyp / two; d["y2"] += dyp / two; d["Y1"] -= dyp / two; d["Y2"] -= dyp / two
        if d_vv is not None:
            # v = 4/pi^2 theta^2, theta = atan(W/H_e) - atan(w/h_e); d atan(u)/du = 1/(1+u^2)
            dtheta = d_vv * dt(2 * _FOUR_OVER_PI2) * v["theta"]
            w, h_e, W, H_e = v["w"], v["h_e"], v["W"], v["H_e"]
            with np.errstate(divide="ignore", invalid="ignore"):
                ur, ug = w / h_e, W / H_e
                du = -dtheta / (one + ur ** 2)                     # d/d(w/h_e)
                dU_ = dtheta / (one + ug ** 2)                     # d/d(W/H_e)
                dw_a, dh_a = du / h_e, -du * w / h_e ** 2
                dW_a, dH_a = dU_ / H_e, -dU_ * W / H_e ** 2
            d["x2"] += dw_a; d["x1"] -= dw_a; d["y2"] += dh_a; d["y1"] -= dh_a
            d["X2"] += dW_a; d["X1"] -= dW_a; d["Y2"] += dH_a; d["Y1"] -= dH_a

    # union = w*h + W*H - inter
    d_inter = d_inter - d_union
    dw, dh = d_union * v["h"], d_union * v["w"]
    dW, dH = d_union * v["H"], d_union * v["W"]
    d["x2"] += dw; d["x1"] -= dw; d["y2"] += dh; d["y1"] -= dh
    d["X2"] += dW; d["X1"] -= dW; d["Y2"] += dH; d["Y1"] -= dH
    # inter = iw * ih (masked or clamped)
    diw = d_inter * v["ih"] * v["imask_w"] * v["imask_h"] if formula != "mmdet" else d_inter * v["ih"] * v["imask_w"]
    dih = d_inter * v["iw"] * v["imask_w"] * v["imask_h"] if formula != "mmdet" else d_inter * v["iw"] * v["imask_h"]
    # iw = min(x2, X2) - max(x1, X1)
    for lo, hi, dd, a_lo, b_lo, a_hi, b_hi in (
            ("xk1", "xk2", diw, "x1", "X1", "x2", "X2"),
            ("yk1", "yk2", dih, "y1", "Y1", "y2", "Y2")):
        wmax = _max_w(v[a_lo], v[b_lo])
        wmin = _min_w(v[a_hi], v[b_hi])
        d[a_lo] -= dd * wmax; d[b_lo] -= dd * (one - wmax)
        d[a_hi] += dd * wmin; d[b_hi] += dd * (one - wmin)
    # enclosing box: cw = max(x2, X2) - min(x1, X1)
    d_cw = d_cw * v["cmask_w"]
    d_ch = d_ch * v["cmask_h"]
    for dd, a_lo, b_lo, a_hi, b_hi in ((d_cw, "x1", "X1", "x2", "X2"), (d_ch, "y1", "Y1", "y2", "Y2")):
        wmin = _min_w(v[a_lo], v[b_lo])
        wmax = _max_w(v[a_hi], v[b_hi])
        d[a_lo] -= dd * wmin; d[b_lo] -= dd * (one - wmin)
        d[a_hi] += dd * wmax; d[b_hi] += dd * (one - wmax)
    dp = np.stack([d["x1"], d["y1"], d["x2"], d["y2"]], axis=1)
    dg = np.stack([d["X1"], d["Y1"], d["X2"], d["Y2"]], axis=1)
    return dp, dg


def _box_loss_forward(kind, pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean):
    s = conventions.resolve(f"{kind}_loss", convention, formula=formula, eps=eps, empty_mean=empty_mean)
    red = _check_reduction(reduction)
    e = _checks.check_positive(s["eps"], "eps", strict=False)
    p, g = _box_pair(pred_boxes, target_boxes)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss, v = _iou_family_forward(kind, p, g, s["formula"], e)
    info = _ReduceInfo(red, loss.shape, loss.size, p.dtype)
    out = _reduce(loss, red, empty_mean=s["empty_mean"])
    return out, BoxLossCache(kind, s["formula"], v, info)


def _box_loss_backward(dloss, cache):
    _check_cache(cache, BoxLossCache, "giou_loss_forward / diou_loss_forward / ciou_loss_forward")
    g = _reduce_backward(dloss, cache.red)
    with np.errstate(divide="ignore", invalid="ignore"):
        dp, dg = _iou_family_backward(cache.kind, cache.formula, cache.values, g)
    return BoxLossGrads(dp, dg)


_BOX_LOSS_DOC = """
    Parameters
    ----------
    pred_boxes, target_boxes : ndarray, shape (N, 4), xyxy
        Matched pairs (row i with row i). Boxes with x2 < x1 are not rejected (torchvision does not
        check either); degenerate boxes give finite losses except CIoU's atan(w/h) with h = 0.
    reduction : {"none", "mean", "sum"}
        "mean" of an empty input returns the profile's ``empty_mean`` (torchvision: 0).
    eps : float, optional
        The guard; default from the profile (torchvision/detectron2 1e-7, mmdet module 1e-6).
    convention : {"torchvision", "detectron2", "mmdet"}
    formula : str, optional
        Overrides the profile's formula (see ``refdet.conventions.describe``).

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : BoxLossCache  (``*_backward`` returns ``BoxLossGrads(dpred_boxes, dtarget_boxes)``)
"""


def giou_loss_forward(pred_boxes, target_boxes, *, reduction="none", eps=None, convention="torchvision",
                      formula=None, empty_mean=None):
    """Generalised-IoU loss ``1 - GIoU`` (Rezatofighi et al. 2019) of matched box pairs.

    ``GIoU = IoU - (C - U) / C`` with ``C`` the area of the smallest enclosing box, ``U`` the union.
    torchvision: ``iou = I / (U + eps)``, ``GIoU = iou - (C - U) / (C + eps)``. mmdet:
    ``U <- max(U, eps)``, ``C <- max(C, eps)``, ``GIoU = I/U - (C - U)/C``.
    The loss lies in [0, 2): 0 for identical boxes, -> 2 for far-apart boxes.
    """
    return _box_loss_forward("giou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


giou_loss_forward.__doc__ += _BOX_LOSS_DOC


def giou_loss_backward(dloss, cache):
    """Hand-derived gradient of :func:`giou_loss_forward` w.r.t. both box sets.

    torchvision: with ``r = (C - U)/(C + eps)``: ``d iou/dI = 1/(U+eps)``,
    ``d iou/dU = -I/(U+eps)^2``, ``dr/dU = -1/(C+eps)``, ``dr/dC = (U+eps)/(C+eps)^2``; then
    ``dU/dI = -1``, ``dU/dw = h`` ..., ``dI/d iw = ih`` (0 where the boxes do not overlap),
    ``d iw/dx2 = [x2 < X2]`` (1/2 on ties), ``dC/d cw = ch``, ``d cw/dx2 = [x2 > X2]``.
    """
    return _box_loss_backward(dloss, cache)


def diou_loss_forward(pred_boxes, target_boxes, *, reduction="none", eps=None, convention="torchvision",
                      formula=None, empty_mean=None):
    """Distance-IoU loss ``1 - IoU + rho^2 / c^2`` (Zheng et al. 2020) of matched box pairs.

    ``rho`` is the distance between the box centres, ``c`` the diagonal of the enclosing box;
    torchvision adds eps to ``U`` and to ``c^2``; mmdet clamps the intersection and enclosing
    widths at 0 and writes ``rho^2 = ((X1+X2) - (x1+x2))^2/4 + ((Y1+Y2) - (y1+y2))^2/4``.
    """
    return _box_loss_forward("diou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


diou_loss_forward.__doc__ += _BOX_LOSS_DOC


def diou_loss_backward(dloss, cache):
    """Gradient of :func:`diou_loss_forward`: ``-d iou + d(rho^2)/c^2 - rho^2 d(c^2)/c^4`` with
    ``d rho^2 / d x1 = (xp - xg)`` (``xp = (x1 + x2)/2``) and ``d c^2/d cw = 2 cw``."""
    return _box_loss_backward(dloss, cache)


def ciou_loss_forward(pred_boxes, target_boxes, *, reduction="none", eps=None, convention="torchvision",
                      formula=None, empty_mean=None):
    """Complete-IoU loss ``1 - IoU + rho^2/c^2 + alpha v`` (Zheng et al. 2020).

    ``v = 4/pi^2 (atan(W/H) - atan(w/h))^2`` (aspect-ratio consistency) and
    ``alpha = v / (1 - IoU + v + eps)`` treated as a constant in the backward pass (``no_grad``).
    torchvision computes the DIoU part with eps = 1e-7 whatever ``eps`` is (``_diou_iou_loss`` is
    called without it); detectron2 uses ``eps`` throughout; mmdet adds eps to the heights inside
    ``atan``, sets ``alpha = [IoU > 0.5] v / (1 - IoU + v)`` and clamps CIoU to [-1, 1] (gradient 0
    where the clamp is active). torchvision's CIoU of a zero-height box is NaN (atan(0/0)).
    """
    return _box_loss_forward("ciou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


ciou_loss_forward.__doc__ += _BOX_LOSS_DOC


def ciou_loss_backward(dloss, cache):
    """Gradient of :func:`ciou_loss_forward` (alpha fixed): the DIoU gradient plus
    ``alpha * 8/pi^2 * theta * d theta`` with ``d atan(w/h) = (dw h - w dh) / (h^2 + w^2)``."""
    return _box_loss_backward(dloss, cache)
