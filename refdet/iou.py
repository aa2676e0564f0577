"""Intersection over union and the GIoU / DIoU / CIoU family: pairwise, paired, and differentiable.

For two boxes A and B (xyxy, continuous coordinates)::

    I = max(0, min(x2a, x2b) - max(x1a, x1b)) * max(0, min(y2a, y2b) - max(y1a, y1b))
    U = area(A) + area(B) - I
    IoU = I / U
    GIoU = IoU - (C - U) / C                     C: area of the smallest box enclosing A and B
    DIoU = IoU - rho^2 / c^2                     rho: distance of the centres, c: diagonal of that box
    CIoU = DIoU - alpha * v                      v = 4/pi^2 (atan(wa/ha) - atan(wb/hb))^2,
                                                 alpha = v / (1 - IoU + v), a constant for gradients

Three shapes of the same computation, one implementation:

* **pairwise** (N, M): :func:`box_iou`, :func:`generalized_box_iou`, :func:`distance_box_iou`,
  :func:`complete_box_iou` (torchvision ``ops/boxes.py``);
* **paired** (N,), row i against row i: :func:`box_iou_paired` and the ``*_paired`` variants, equal
  bit for bit to the diagonal of the pairwise result;
* **paired with gradients**: ``*_paired_forward(boxes1, boxes2) -> (values, cache)`` and
  ``*_paired_backward(dvalues, cache) -> PairedIoUGrads(dboxes1, dboxes2)``. The IoU losses of
  :mod:`refdet.losses.box` are built on these (a loss is ``1 - value`` under the loss's profile).

The frameworks agree on the formulas and differ in *guards* (what a zero union or enclosing area
gives, where an ``eps`` goes), the legacy "+1" pixel widths, and a few CIoU details. Each is a
convention knob (``print(refdet.conventions.describe("complete_box_iou"))`` prints the table)::

    box_iou(a, b)                            # torchvision: 0/0 -> NaN
    box_iou(a, b, convention="detectron2")   # 0 where the intersection is 0
    box_iou(a, b, guard="eps_union")         # mmdet: union clamped to >= 1e-6

The readable versions (a loop over pairs, the papers' formulas per pair) are in
:mod:`refdet.reference.iou`; tests hold every function here equal to them. This module resolves the
profiles and documents the functions; the computation, shared by all three shapes, is in the private
:mod:`refdet._iou_engine`.

Order of operations (for float32 bit-exactness with ``torchvision.ops.box_iou``)::

    area = (x2 - x1) * (y2 - y1)                         # (N,), (M,)
    lt = max(x1a, x1b), rb = min(x2a, x2b)               # per axis, (N, M)
    wh = clamp(rb - lt, min=0); inter = w * h            # (N, M)
    union = (area1[:, None] + area2[None, :]) - inter    # the sum of areas first
    iou = inter / union

refdet follows it exactly, so float32 inputs give torchvision's float32 bits. float16 inputs are
computed (and returned) in float32, as torchvision does for the areas; torchvision however subtracts
``rb - lt`` in float16 before upcasting, so the ``"torchvision"`` profile rounds those differences to
float16 too (knob ``half_wh``) and matches its float16 results bit for bit. Pass ``half_wh=False`` for
the plain float32 value (different in about 0.06% of random float16 pairs, by up to ~5e-4).

Memory: :func:`box_iou` works on blocks of rows with preallocated scratch buffers (about 256 KiB
each), so besides the (N, M) result it needs O(M) extra memory, never an (N, M, 2) temporary.

Gradients (``*_paired_backward``): the subgradients are PyTorch autograd's. ``max(a, b)`` and
``min(a, b)`` split the gradient in halves on a tie (``torch.maximum``); a clamp at 0 (the
intersection width, the enclosing width) passes the gradient only strictly inside its range (torch's
``clamp`` backward); a guard that writes 0 (``inter_gt_0``, ``pfr``, ``skip_degenerate``, a zero
enclosing area) has gradient 0 where it applies; CIoU's ``alpha`` is a constant (every framework
computes it under ``no_grad``); the float16 rounding of ``half_wh`` is passed straight through.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet import _iou_engine as E
from refdet._iou_engine import PairedIoUCache, PairedIoUGrads

__all__ = [
    "IOU_GUARDS",
    "box_iou",
    "box_iou_paired",
    "box_iou_paired_forward",
    "box_iou_paired_backward",
    "generalized_box_iou",
    "generalized_box_iou_paired",
    "generalized_box_iou_paired_forward",
    "generalized_box_iou_paired_backward",
    "distance_box_iou",
    "distance_box_iou_paired",
    "distance_box_iou_paired_forward",
    "distance_box_iou_paired_backward",
    "complete_box_iou",
    "complete_box_iou_paired",
    "complete_box_iou_paired_forward",
    "complete_box_iou_paired_backward",
]

#: The guards :func:`box_iou` knows (see its docstring).
IOU_GUARDS = ("none", "inter_gt_0", "eps_union", "plus_eps", "skip_degenerate", "pfr")

Convention = Union[str, conventions.Profile]

# ---------------------------------------------------------------------------------------------------
# Convention tables
# ---------------------------------------------------------------------------------------------------

_KNOBS = {
    "plus_one": conventions.flag(
        "box widths are x2 - x1 + 1 and intersection widths min - max + 1 (legacy inclusive pixels)",
        source="py-faster-rcnn lib/utils/bbox.pyx bbox_overlaps; Detectron1 utils/boxes.py"),
    "guard": conventions.choice(
        IOU_GUARDS,
        "what a zero union gives: 'none' I / U (0/0 = NaN); 'inter_gt_0' 0 where I == 0; 'eps_union' "
        "I / max(U, eps); 'plus_eps' I / (U + eps); 'skip_degenerate' 0 where I <= 0, an area <= 0 or "
        "U <= 0; 'pfr' 0 unless the unclamped iw > 0 and ih > 0",
        source="torchvision ops/boxes.py box_iou (none); detectron2 structures/boxes.py pairwise_iou "
               "(inter_gt_0); mmdet structures/bbox/bbox_overlaps.py (eps_union); torchvision "
               "ops/giou_loss.py and mmdet diou_loss/ciou_loss (plus_eps); onnxruntime SuppressByIOU "
               "(skip_degenerate); py-faster-rcnn bbox.pyx (pfr)"),
    "sort_corners": conventions.flag(
        "treat any diagonal as a box: use min/max of (x1, x2) and (y1, y2)",
        source="ONNX NonMaxSuppression (center_point_box=0: 'any diagonal pair'); onnxruntime SuppressByIOU"),
    "half_wh": conventions.flag(
        "float16 inputs: round the widths/heights min - max to float16 before the product",
        source="torchvision ops/boxes.py _box_inter_union (rb - lt in the input dtype, _upcast after)"),
}

_PROFILES = {
    "torchvision": {"plus_one": False, "guard": "none", "sort_corners": False, "half_wh": True},
    "detectron2": {"plus_one": False, "guard": "inter_gt_0", "sort_corners": False, "half_wh": False},
    "mmdet": {"plus_one": False, "guard": "eps_union", "sort_corners": False, "half_wh": False},
    "caffe": {"plus_one": True, "guard": "pfr", "sort_corners": False, "half_wh": False},
    "tf": {"plus_one": False, "guard": "inter_gt_0", "sort_corners": False, "half_wh": False},
    "onnx": {"plus_one": False, "guard": "skip_degenerate", "sort_corners": True, "half_wh": False},
    "paper": {"plus_one": False, "guard": "none", "sort_corners": False, "half_wh": False},
}

_SOURCES = """\
torchvision ops/boxes.py box_iou / _box_inter_union (0.29.1): no guard, 0/0 = NaN.
detectron2 structures/boxes.py pairwise_iou: where(inter > 0, inter / union, 0).
mmdet structures/bbox/bbox_overlaps.py: union = max(union, eps = 1e-6).
py-faster-rcnn lib/utils/bbox.pyx bbox_overlaps (also Detectron1): +1 widths, IoU computed only where
  iw > 0 and ih > 0, else 0.
TF OD API core/box_list_ops.py iou: where(inter == 0, 0, inter / union) (inter >= 0, so = inter_gt_0).
ONNX NonMaxSuppression (onnxruntime SuppressByIOU): corners sorted (any diagonal), IoU treated as 0
  when inter <= 0, either area <= 0 or union <= 0.
paper (Jaccard index): I / U, undefined (NaN) when U = 0.
"""

for _op in ("box_iou", "box_iou_paired"):
    conventions.register(_op, _PROFILES, knobs=_KNOBS, doc=_SOURCES)

_CLAMP_ENCLOSING = conventions.flag(
    "clamp the enclosing box's width and height at 0 (they are < 0 only for flipped boxes; the "
    "gradient is 0 where they are 0)",
    source="torchvision ops/boxes.py generalized_box_iou/_box_diou_iou (.clamp(min=0)); mmdet "
           "bbox_overlaps and diou_loss/ciou_loss; torchvision's losses ops/giou_loss.py and "
           "diou_loss.py do not clamp")
_EPS = conventions.number(
    "the guard constant: the union floor ('eps_union') or addend ('plus_eps'), the enclosing-area guard "
    "of GIoU under those guards, added to c^2 (DIoU, CIoU) and to CIoU's alpha denominator",
    low=0.0,
    source="torchvision ops/boxes.py _box_diou_iou / complete_box_iou (eps=1e-7); mmdet bbox_overlaps "
           "and the IoU losses (1e-6)")
_CENTRE_DISTANCE = conventions.choice(
    ("halves", "sums"),
    "rho^2 as ((x1 + x2)/2 - (X1 + X2)/2)^2 + ... ('halves') or ((X1 + X2) - (x1 + x2))^2 / 4 + ... "
    "('sums'): equal in exact arithmetic, rounded differently",
    source="torchvision ops/boxes.py _box_diou_iou and ops/diou_loss.py (halves); mmdet "
           "models/losses/iou_loss.py diou_loss/ciou_loss (sums)")
_CIOU_KNOBS = {
    "height_eps": conventions.flag(
        "add eps to the heights inside atan(w / h)",
        source="mmdet models/losses/iou_loss.py ciou_loss (h1 = y2 - y1 + eps)"),
    "alpha_gate": conventions.number(
        "alpha = 0 unless IoU > alpha_gate (None: no gate)", low=0.0, high=1.0, allow_none=True,
        source="mmdet ciou_loss alpha = (ious > 0.5).float() * v / (1 - ious + v), after the CIoU "
               "authors' code (Zzh-tju/CIoU layers/modules/multibox_loss.py)"),
    "alpha_eps": conventions.number(
        "added to alpha's denominator 1 - IoU + v (None: eps)", low=0.0, allow_none=True,
        source="torchvision ops/ciou_loss.py (its eps, while its DIoU part keeps 1e-7); mmdet ciou_loss "
               "(no eps: 0)"),
    "clip": conventions.flag(
        "clamp CIoU to [-1, 1] (gradient 0 where the clamp is active)",
        source="mmdet ciou_loss cious.clamp(min=-1.0, max=1.0)"),
}

_FAMILY_BASE = {p: dict(s, eps=1e-7, clamp_enclosing=True) for p, s in _PROFILES.items()}
_FAMILY_BASE["mmdet"]["eps"] = 1e-6
_FAMILY_BASE["paper"]["eps"] = 0.0
_GIOU_KNOBS = dict(_KNOBS, eps=_EPS, clamp_enclosing=_CLAMP_ENCLOSING)
_GIOU_PROFILES = _FAMILY_BASE
# torchvision's distance_box_iou / complete_box_iou upcast the boxes first: no float16 rounding
_DIOU_KNOBS = dict(_GIOU_KNOBS, centre_distance=_CENTRE_DISTANCE)
_DIOU_PROFILES = {p: dict(s, half_wh=False, centre_distance="halves") for p, s in _FAMILY_BASE.items()}
# mmdet has no pairwise DIoU/CIoU: its definitions are those of its DIoU/CIoU losses (union + eps)
_DIOU_PROFILES["mmdet"].update(guard="plus_eps", centre_distance="sums")
_CIOU_KNOBS_ALL = dict(_DIOU_KNOBS, **_CIOU_KNOBS)
_CIOU_PROFILES = {p: dict(s, height_eps=False, alpha_gate=None, alpha_eps=None, clip=False)
                  for p, s in _DIOU_PROFILES.items()}
_CIOU_PROFILES["mmdet"].update(height_eps=True, alpha_gate=0.5, alpha_eps=0.0, clip=True)  # pragma: no mutate[clip=True -> clip=False] (the gate opens only where CIoU > -3/4)

_FAMILY_SOURCES = """\
torchvision ops/boxes.py generalized_box_iou (no eps), distance_box_iou and complete_box_iou
  (eps = 1e-7 added to c^2 and to 1 - IoU + v). The IoU term uses the profile's guard.
The enclosing-box term (C - U) / C: guard "none" divides as is (0/0 = NaN, torchvision); "plus_eps"
  divides by C + eps (torchvision ops/giou_loss.py); "eps_union" uses max(C, eps) and max(U, eps) (mmdet
  bbox_overlaps mode="giou"); every other guard gives 0 where C = 0.
mmdet defines DIoU and CIoU only in its losses (models/losses/iou_loss.py diou_loss, ciou_loss): the
  mmdet profiles of distance_box_iou / complete_box_iou are those definitions (I / (U + eps), rho^2
  from coordinate sums, eps on the heights in atan, alpha gated by IoU > 0.5 without eps, CIoU clamped
  to [-1, 1]), so that 1 - complete_box_iou(convention="mmdet") is mmdet's CIoU loss.
Frameworks without a pairwise GIoU/DIoU/CIoU (detectron2, TF, ONNX, caffe) get refdet's extension with
  their IoU guard.
"""
for _op in ("generalized_box_iou", "generalized_box_iou_paired"):
    conventions.register(_op, _GIOU_PROFILES, knobs=_GIOU_KNOBS, doc=_FAMILY_SOURCES)
for _op in ("distance_box_iou", "distance_box_iou_paired"):
    conventions.register(_op, _DIOU_PROFILES, knobs=_DIOU_KNOBS, doc=_FAMILY_SOURCES)
for _op in ("complete_box_iou", "complete_box_iou_paired"):
    conventions.register(_op, _CIOU_PROFILES, knobs=_CIOU_KNOBS_ALL, doc=_FAMILY_SOURCES)

# Scratch buffers hold about this many elements (256 KiB in float32): three of them stay in L2.
_BLOCK_ELEMENTS = 1 << 16  # pragma: no mutate (block size: speed only; every size gives the same bits)


# ---------------------------------------------------------------------------------------------------
# IoU
# ---------------------------------------------------------------------------------------------------

@conventions.documented("box_iou")
def box_iou(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
            plus_one: Optional[bool] = None, guard: Optional[str] = None, sort_corners: Optional[bool] = None,
            half_wh: Optional[bool] = None, eps: float = 1e-6, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Pairwise intersection over union.

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention : str or conventions.Profile
        Profile setting the knobs below (table at the end of this docstring).
    plus_one : bool, optional
        Legacy inclusive-pixel widths: ``area = (x2 - x1 + 1) * (y2 - y1 + 1)`` and intersection
        width ``min(x2) - max(x1) + 1`` clamped at 0 (py-faster-rcnn, Detectron1). A point box then
        has area 1 and IoU 1 with itself.
    guard : {"none", "inter_gt_0", "eps_union", "plus_eps", "skip_degenerate", "pfr"}, optional
        ``"none"``: ``I / U`` as is; two degenerate boxes give ``0 / 0 = NaN`` (torchvision).
        ``"inter_gt_0"``: 0 wherever ``I == 0`` (detectron2, TF).
        ``"eps_union"``: ``I / max(U, eps)`` (mmdet, ``eps = 1e-6``).
        ``"plus_eps"``: ``I / (U + eps)`` (the IoU inside torchvision's and mmdet's IoU losses).
        ``"skip_degenerate"``: 0 where ``I <= 0``, either area ``<= 0`` or ``U <= 0`` (ONNX NMS).
        ``"pfr"``: computed only where the (unclamped) intersection width and height are both
        ``> 0``, else 0 (py-faster-rcnn ``bbox_overlaps``).
    sort_corners : bool, optional
        Use ``min``/``max`` of each coordinate pair, so that any diagonal describes the box (ONNX).
        Without it a box with ``x2 < x1`` has a negative width: its intersection with anything is 0
        and its "area" is whatever the product gives, as in torchvision.
    half_wh : bool, optional
        Only for float16 inputs (both sets): round the intersection widths and heights
        ``min(x2) - max(x1)`` to float16 before they are multiplied, which is what torchvision does
        (it upcasts the areas but subtracts ``rb - lt`` in float16). On by default under
        ``"torchvision"`` so that float16 results match it bit for bit; ``False`` keeps the float32
        difference (the more accurate value).
    eps : float
        The union floor of ``guard="eps_union"`` and the addend of ``"plus_eps"`` (in the working
        dtype).
    out : ndarray, shape (N, M), optional
        Where to write the result (must have the working dtype and be C-contiguous).

    Returns
    -------
    ndarray, shape (N, M)
        In the working dtype (float64 for float64/int input, float32 for float32/float16). Empty
        inputs give an empty (N, M) array.

    Notes
    -----
    Reference: :func:`refdet.reference.iou.box_iou` (a loop over pairs; equal bit for bit).

    Examples
    --------
    >>> box_iou([[0, 0, 10, 10]], [[5, 5, 15, 15], [0, 0, 10, 10]])   # 25 / (100 + 100 - 25)
    array([[0.14285714, 1.        ]])
    >>> box_iou([[0, 0, 10, 10]], [[5, 5, 15, 15]], convention="caffe")  # +1 pixels: 36 / (121 + 121 - 36)
    array([[0.17475728]])
    """
    s = conventions.resolve("box_iou", convention, plus_one=plus_one, guard=guard, sort_corners=sort_corners,
                            half_wh=half_wh)
    b1, b2, half = E.validate_pair(boxes1, boxes2, s["half_wh"])
    dt = b1.dtype
    eps = E.guard_eps(eps)
    n, m = len(b1), len(b2)
    if out is None:
        out = np.empty((n, m), dtype=dt)
    elif not (isinstance(out, np.ndarray) and out.shape == (n, m) and out.dtype == dt
              and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"`out` must be a writeable C-contiguous ndarray of shape {(n, m)} and dtype "
                         f"{dt}; got {_checks._describe(out)}")
    if n == 0 or m == 0:
        return out
    c1 = E.columns(b1, s["sort_corners"])
    c2 = E.columns(b2, s["sort_corners"])
    a1 = E.areas(c1, s["plus_one"])
    a2 = E.areas(c2, s["plus_one"])
    rows = max(1, _BLOCK_ELEMENTS // m)  # pragma: no mutate[max -> min; 1 -> 2] (block size: speed only)
    inter = np.empty((min(rows, n), m), dtype=dt)  # pragma: no mutate (scratch size: speed only)
    union = np.empty_like(inter)
    tmp = np.empty_like(inter)
    with np.errstate(invalid="ignore", over="ignore"):  # no x / 0: U > 0 wherever I > 0 (0 / 0 is "invalid")
        for start in range(0, n, rows):  # blocks of rows: the scratch stays in cache
            stop = min(start + rows, n)
            k = stop - start
            block = tuple(c[start:stop, None] for c in c1)          # (k, 1) against (M,)
            E.inter_union_into(block, c2, a1[start:stop, None], a2, s["plus_one"], s["guard"], eps,
                               inter[:k], union[:k], tmp[:k], out[start:stop], half)
    return out


# ---------------------------------------------------------------------------------------------------
# GIoU / DIoU / CIoU (pairwise)
# ---------------------------------------------------------------------------------------------------

def _family_profile(op, convention, **overrides):
    s = conventions.resolve(op, convention, **overrides)
    return s, s["eps"]


@conventions.documented("generalized_box_iou")
def generalized_box_iou(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                        plus_one: Optional[bool] = None, guard: Optional[str] = None,
                        sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                        eps: Optional[float] = None, clamp_enclosing: Optional[bool] = None) -> np.ndarray:
    """Pairwise generalized IoU (Rezatofighi et al. 2019): ``GIoU = IoU - (C - U) / C``.

    ``C`` is the area of the smallest box enclosing both boxes and ``U`` their union. GIoU lies in
    [-1, 1] and equals IoU when the union fills the enclosing box (``C = U``).

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh
        As in :func:`box_iou` (the IoU term is ``box_iou``'s). The enclosing term ``(C - U) / C``:
        guard ``"none"`` divides as is (torchvision: NaN when both boxes are the same point),
        ``"plus_eps"`` divides by ``C + eps`` (torchvision's GIoU loss), ``"eps_union"`` computes
        ``(max(C, eps) - max(U, eps)) / max(C, eps)`` (mmdet ``bbox_overlaps(mode="giou")``), every
        other guard gives 0 where ``C = 0``.
    eps : float, optional
        The guard constant of ``"eps_union"`` / ``"plus_eps"`` (the profile's: 1e-7, mmdet 1e-6).
        torchvision's pairwise GIoU itself uses none.
    clamp_enclosing : bool, optional
        Clamp the enclosing width and height at 0 (every pairwise implementation does; torchvision's
        GIoU *loss* does not).

    Returns
    -------
    ndarray, shape (N, M)

    Notes
    -----
    Order of operations (torchvision): ``iou - (areai - union) / areai`` with ``areai = wc * hc``.
    Reference: :func:`refdet.reference.iou.giou` per pair (equal bit for bit).

    Examples
    --------
    GIoU = IoU - (C - U) / C with C the smallest enclosing box: 25/175 - (225 - 175)/225 for the first
    pair; disjoint boxes have IoU 0 and a negative GIoU that still says how far apart they are.

    >>> generalized_box_iou([[0, 0, 10, 10]], [[5, 5, 15, 15], [20, 0, 30, 10]])
    array([[-0.07936508, -0.33333333]])
    """
    s, e = _family_profile("generalized_box_iou", convention, plus_one=plus_one, guard=guard,
                           sort_corners=sort_corners, half_wh=half_wh, eps=eps, clamp_enclosing=clamp_enclosing)
    t = E.terms(s, boxes1, boxes2, eps=e, enclosing=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio, _ = E.enclosing_term(t)
        return t.iou - ratio


@conventions.documented("distance_box_iou")
def distance_box_iou(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                     plus_one: Optional[bool] = None, guard: Optional[str] = None,
                     sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                     eps: Optional[float] = None, clamp_enclosing: Optional[bool] = None,
                     centre_distance: Optional[str] = None) -> np.ndarray:
    """Pairwise distance IoU (Zheng et al. 2020): ``DIoU = IoU - rho^2 / (c^2 + eps)``.

    ``rho`` is the distance between the box centres, ``c`` the diagonal of the smallest enclosing
    box. DIoU lies in [-1, 1].

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, clamp_enclosing
        As in :func:`generalized_box_iou`.
    eps : float, optional
        Added to ``c^2`` (torchvision 1e-7, mmdet 1e-6, paper 0); also the guard constant of the
        IoU term.
    centre_distance : {"halves", "sums"}, optional
        ``rho^2`` from the centres ``(x1 + x2) / 2`` (torchvision) or from the coordinate sums,
        ``((X1 + X2) - (x1 + x2))^2 / 4`` (mmdet): the same number up to rounding.

    Returns
    -------
    ndarray, shape (N, M)

    Notes
    -----
    The ``"mmdet"`` profile is the definition inside mmdet's ``diou_loss`` (mmdet has no pairwise
    DIoU): IoU ``I / (U + eps)``, ``rho^2`` from sums.
    Reference: :func:`refdet.reference.iou.diou` per pair (equal bit for bit under "halves").
    """
    s, e = _family_profile("distance_box_iou", convention, plus_one=plus_one, guard=guard,
                           sort_corners=sort_corners, half_wh=half_wh, eps=eps, clamp_enclosing=clamp_enclosing,
                           centre_distance=centre_distance)
    t = E.terms(s, boxes1, boxes2, eps=e, enclosing=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio, _, _ = E.distance_term(t)
        return t.iou - ratio


@conventions.documented("complete_box_iou")
def complete_box_iou(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                     plus_one: Optional[bool] = None, guard: Optional[str] = None,
                     sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                     eps: Optional[float] = None, clamp_enclosing: Optional[bool] = None,
                     centre_distance: Optional[str] = None, height_eps: Optional[bool] = None,
                     alpha_gate: Optional[float] = None, alpha_eps: Optional[float] = None,
                     clip: Optional[bool] = None,
                     atan: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Pairwise complete IoU (Zheng et al. 2020): ``CIoU = DIoU - alpha * v``.

    ``v = 4 / pi^2 * (atan(w1 / h1) - atan(w2 / h2))^2`` measures the aspect-ratio mismatch and
    ``alpha = v / (1 - IoU + v + eps)`` (treated as a constant in the gradient by every framework).

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention, plus_one, guard, sort_corners, eps, clamp_enclosing, centre_distance
        As in :func:`distance_box_iou`; ``eps`` also enters alpha's denominator.
    height_eps : bool, optional
        ``atan(w / (h + eps))`` (mmdet).
    alpha_gate : float, optional
        ``alpha = 0`` unless ``IoU > alpha_gate`` (mmdet 0.5, after the CIoU authors' code).
    alpha_eps : float, optional
        Added to alpha's denominator instead of ``eps`` (mmdet: 0).
    clip : bool, optional
        Clamp the result to [-1, 1] (mmdet).
    atan : callable, optional
        The arctangent to use (default :func:`numpy.arctan`). Library float32 arctangents differ in
        the last bit (NumPy's SIMD ``arctan`` against torch's SLEEF ``atanf``), so float32 CIoU can
        differ from torchvision by a few ulp; the other three functions match bit for bit.

    Returns
    -------
    ndarray, shape (N, M)
        A point box (zero width and height) has no aspect ratio (``atan(0 / 0)``): under
        ``"torchvision"`` and ``"paper"`` (IoU guard ``"none"``) its CIoU is NaN, which is what
        torchvision's ``ops/boxes.py complete_box_iou`` computes (SPEC TV10; a documented answer,
        not an error; ``guard="plus_eps"`` keeps it too, as torchvision's ``complete_box_iou_loss``).
        Under the profiles whose IoU guard writes 0 where 0/0 (detectron2, TF, ONNX: refdet's
        extension of CIoU to them) the point's aspect term is 0 and its CIoU is its DIoU; mmdet's
        ``atan(w / (h + eps))`` and caffe's +1 pixels are finite anyway.

    Notes
    -----
    torchvision's order: ``v = (4 / pi**2) * (atan(w1/h1) - atan(w2/h2)) ** 2`` with the factor
    rounded to the working dtype, ``alpha = v / (((1 - iou) + v) + eps)``, ``diou - alpha * v``.

    The ``"mmdet"`` profile is the definition inside mmdet's ``ciou_loss`` (mmdet v3
    ``models/losses/iou_loss.py``; mmdet has no pairwise CIoU): IoU ``I / (U + eps)``, ``rho^2``
    from coordinate sums, ``atan(w / (h + eps))``, ``alpha = [IoU > 0.5] v / (1 - IoU + v)`` and
    the result clamped to [-1, 1]. So ``1 - complete_box_iou(a, b, convention="mmdet")`` on the
    diagonal is ``refdet.ciou_loss_forward(a, b, convention="mmdet")`` (mmdet adds
    ``rho^2/c^2 + alpha v`` before subtracting it: the two may differ in the last bit). The gate is
    the big difference from torchvision's CIoU: for a pair with IoU <= 0.5 mmdet's CIoU is its
    DIoU, larger than torchvision's CIoU by ``alpha v`` (up to about 0.43). mmdet's alpha has no eps:
    for two identical boxes (v = 0) whose IoU rounds to 1 (float32 once ``U + eps`` rounds to ``U``,
    i.e. U >= 16 with eps = 1e-6) alpha is 0/0 and mmdet's CIoU, and its loss, are NaN; refdet
    reproduces that (float64 keeps IoU < 1 there).
    Reference: :func:`refdet.reference.iou.ciou` per pair (within a few ulp: the arctangents).
    """
    s, e = _family_profile("complete_box_iou", convention, plus_one=plus_one, guard=guard,
                           sort_corners=sort_corners, half_wh=half_wh, eps=eps, clamp_enclosing=clamp_enclosing,
                           centre_distance=centre_distance, height_eps=height_eps, alpha_gate=alpha_gate,
                           alpha_eps=alpha_eps, clip=clip)
    t = E.terms(s, boxes1, boxes2, eps=e, enclosing=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio, _, _ = E.distance_term(t)
        v, alpha, _ = E.aspect_terms(t, atan)
        out = (t.iou - ratio) - alpha * v                        # torchvision: diou - alpha * v
        if s["clip"]:
            np.clip(out, -1, 1, out=out)  # pragma: no mutate[1 -> 2] (CIoU <= IoU <= 1: the upper bound never acts)
        return out


# ---------------------------------------------------------------------------------------------------
# Paired (N,): row i against row i; values, and forward/backward pairs
# ---------------------------------------------------------------------------------------------------

@conventions.documented("box_iou_paired")
def box_iou_paired(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                   plus_one: Optional[bool] = None, guard: Optional[str] = None,
                   sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                   eps: float = 1e-6) -> np.ndarray:
    """Elementwise IoU of matching rows: ``iou[i] = IoU(boxes1[i], boxes2[i])``.

    The diagonal of :func:`box_iou` without the (N, N) matrix, with the same knobs and the same
    order of operations (so ``box_iou_paired(a, b) == np.diag(box_iou(a, b))`` bit for bit). This is
    the IoU that IoU losses use (predicted box i against its target i).

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps
        As in :func:`box_iou`.

    Returns
    -------
    ndarray, shape (N,)

    Notes
    -----
    Reference: :func:`refdet.reference.iou.iou` per pair (equal bit for bit).
    """
    s = conventions.resolve("box_iou_paired", convention, plus_one=plus_one, guard=guard,
                            sort_corners=sort_corners, half_wh=half_wh)
    return E.terms(s, boxes1, boxes2, paired=True, eps=E.guard_eps(eps)).iou


@conventions.documented("box_iou_paired")
def box_iou_paired_forward(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                           plus_one: Optional[bool] = None, guard: Optional[str] = None,
                           sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                           eps: float = 1e-6) -> Tuple[np.ndarray, PairedIoUCache]:
    """:func:`box_iou_paired` with a cache for :func:`box_iou_paired_backward` (the ``1 - IoU`` and
    ``-log IoU`` losses build on it).

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps
        As in :func:`box_iou`.

    Returns
    -------
    values : ndarray, shape (N,)
        :func:`box_iou_paired`'s values.
    cache : PairedIoUCache
        The boxes, the profile and the named terms (``iou``, ``inter``, ``union``).
    """
    s = conventions.resolve("box_iou_paired", convention, plus_one=plus_one, guard=guard,
                            sort_corners=sort_corners, half_wh=half_wh)
    return E.forward_paired("iou", s, E.guard_eps(eps), boxes1, boxes2)


def box_iou_paired_backward(dvalues: np.ndarray, cache: PairedIoUCache) -> PairedIoUGrads:
    """Gradient of :func:`box_iou_paired_forward` w.r.t. both box sets.

    ``d IoU / dI = 1 / U``, ``d IoU / dU = -I / U^2`` (with the guard's ``U + eps`` or
    ``max(U, eps)``; 0 where a zero-writing guard applies); ``U = a1 + a2 - I``, ``a = w h``,
    ``I = max(0, iw) max(0, ih)`` with ``iw = min(x2, X2) - max(x1, X1)``.

    Parameters
    ----------
    dvalues : ndarray, shape (N,)
    cache : PairedIoUCache

    Returns
    -------
    PairedIoUGrads(dboxes1, dboxes2), shape (N, 4) each
    """
    return E.backward_entry(dvalues, cache, "box_iou_paired_forward")


@conventions.documented("generalized_box_iou_paired")
def generalized_box_iou_paired(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                               plus_one: Optional[bool] = None, guard: Optional[str] = None,
                               sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                               eps: Optional[float] = None, clamp_enclosing: Optional[bool] = None) -> np.ndarray:
    """Generalized IoU of matching rows: the diagonal of :func:`generalized_box_iou`, bit for bit.

    torchvision's GIoU loss is ``1 - generalized_box_iou_paired(p, g, guard="plus_eps",
    clamp_enclosing=False)``; mmdet's is ``1 - generalized_box_iou_paired(p, g, convention="mmdet")``.

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps, clamp_enclosing
        As in :func:`generalized_box_iou`.

    Returns
    -------
    ndarray, shape (N,)
    """
    return generalized_box_iou_paired_forward(boxes1, boxes2, convention=convention, plus_one=plus_one,
                                              guard=guard, sort_corners=sort_corners, half_wh=half_wh, eps=eps,
                                              clamp_enclosing=clamp_enclosing)[0]


@conventions.documented("generalized_box_iou_paired")
def generalized_box_iou_paired_forward(boxes1: np.ndarray, boxes2: np.ndarray, *,
                                       convention: Convention = "torchvision", plus_one: Optional[bool] = None,
                                       guard: Optional[str] = None, sort_corners: Optional[bool] = None,
                                       half_wh: Optional[bool] = None, eps: Optional[float] = None,
                                       clamp_enclosing: Optional[bool] = None
                                       ) -> Tuple[np.ndarray, PairedIoUCache]:
    """:func:`generalized_box_iou_paired` with a cache for :func:`generalized_box_iou_paired_backward`.

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps, clamp_enclosing
        As in :func:`generalized_box_iou`.

    Returns
    -------
    values : ndarray, shape (N,)
    cache : PairedIoUCache
        The named terms: ``iou``, ``enclosing`` = ``(C - U) / C`` (``value = iou - enclosing``), ``area_c``.
    """
    s, e = _family_profile("generalized_box_iou_paired", convention, plus_one=plus_one, guard=guard,
                           sort_corners=sort_corners, half_wh=half_wh, eps=eps, clamp_enclosing=clamp_enclosing)
    return E.forward_paired("giou", s, e, boxes1, boxes2)


def generalized_box_iou_paired_backward(dvalues: np.ndarray, cache: PairedIoUCache) -> PairedIoUGrads:
    """Gradient of :func:`generalized_box_iou_paired_forward` w.r.t. both box sets.

    ``GIoU = IoU - r`` with ``r = (C - U) / C``: ``dr/dC = U / C^2``, ``dr/dU = -1 / C`` (guard
    ``"plus_eps"``: ``(U + eps) / (C + eps)^2`` and ``-1 / (C + eps)``; ``"eps_union"``: through
    ``max(C, eps)`` and ``max(U, eps)``); ``C = wc hc`` with ``wc = max(x2, X2) - min(x1, X1)``;
    the IoU term as in :func:`box_iou_paired_backward`.

    Parameters
    ----------
    dvalues : ndarray, shape (N,)
    cache : PairedIoUCache

    Returns
    -------
    PairedIoUGrads(dboxes1, dboxes2), shape (N, 4) each
    """
    return E.backward_entry(dvalues, cache, "generalized_box_iou_paired_forward")


@conventions.documented("distance_box_iou_paired")
def distance_box_iou_paired(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                            plus_one: Optional[bool] = None, guard: Optional[str] = None,
                            sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                            eps: Optional[float] = None, clamp_enclosing: Optional[bool] = None,
                            centre_distance: Optional[str] = None) -> np.ndarray:
    """Distance IoU of matching rows: the diagonal of :func:`distance_box_iou`, bit for bit.

    torchvision's DIoU loss is ``1 - iou + distance`` with the terms of
    ``distance_box_iou_paired_forward(p, g, guard="plus_eps", clamp_enclosing=False)``.

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps, clamp_enclosing, centre_distance
        As in :func:`distance_box_iou`.

    Returns
    -------
    ndarray, shape (N,)
    """
    return distance_box_iou_paired_forward(boxes1, boxes2, convention=convention, plus_one=plus_one, guard=guard,
                                           sort_corners=sort_corners, half_wh=half_wh, eps=eps,
                                           clamp_enclosing=clamp_enclosing, centre_distance=centre_distance)[0]


@conventions.documented("distance_box_iou_paired")
def distance_box_iou_paired_forward(boxes1: np.ndarray, boxes2: np.ndarray, *,
                                    convention: Convention = "torchvision", plus_one: Optional[bool] = None,
                                    guard: Optional[str] = None, sort_corners: Optional[bool] = None,
                                    half_wh: Optional[bool] = None, eps: Optional[float] = None,
                                    clamp_enclosing: Optional[bool] = None, centre_distance: Optional[str] = None
                                    ) -> Tuple[np.ndarray, PairedIoUCache]:
    """:func:`distance_box_iou_paired` with a cache for :func:`distance_box_iou_paired_backward`.

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps, clamp_enclosing, centre_distance
        As in :func:`distance_box_iou`.

    Returns
    -------
    values : ndarray, shape (N,)
    cache : PairedIoUCache
        The named terms: ``iou``, ``distance`` = ``rho^2 / c^2`` (``value = iou - distance``),
        ``rho2``, ``c2``.
    """
    s, e = _family_profile("distance_box_iou_paired", convention, plus_one=plus_one, guard=guard,
                           sort_corners=sort_corners, half_wh=half_wh, eps=eps, clamp_enclosing=clamp_enclosing,
                           centre_distance=centre_distance)
    return E.forward_paired("diou", s, e, boxes1, boxes2)


def distance_box_iou_paired_backward(dvalues: np.ndarray, cache: PairedIoUCache) -> PairedIoUGrads:
    """Gradient of :func:`distance_box_iou_paired_forward` w.r.t. both box sets.

    ``DIoU = IoU - rho^2 / c^2``: ``d rho^2 / d x1 = xp - xg`` (``xp = (x1 + x2) / 2``; the same for
    both ``centre_distance`` forms), ``d c^2 / d wc = 2 wc``; the IoU term as in
    :func:`box_iou_paired_backward`.

    Parameters
    ----------
    dvalues : ndarray, shape (N,)
    cache : PairedIoUCache

    Returns
    -------
    PairedIoUGrads(dboxes1, dboxes2), shape (N, 4) each
    """
    return E.backward_entry(dvalues, cache, "distance_box_iou_paired_forward")


@conventions.documented("complete_box_iou_paired")
def complete_box_iou_paired(boxes1: np.ndarray, boxes2: np.ndarray, *, convention: Convention = "torchvision",
                            plus_one: Optional[bool] = None, guard: Optional[str] = None,
                            sort_corners: Optional[bool] = None, half_wh: Optional[bool] = None,
                            eps: Optional[float] = None, clamp_enclosing: Optional[bool] = None,
                            centre_distance: Optional[str] = None, height_eps: Optional[bool] = None,
                            alpha_gate: Optional[float] = None, alpha_eps: Optional[float] = None,
                            clip: Optional[bool] = None,
                            atan: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Complete IoU of matching rows: the diagonal of :func:`complete_box_iou`, bit for bit.

    ``1 - complete_box_iou_paired(p, g, convention="mmdet")`` is mmdet's CIoU loss (see
    :func:`complete_box_iou` for the last bit).

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps, clamp_enclosing, centre_distance,
    height_eps, alpha_gate, alpha_eps, clip, atan
        As in :func:`complete_box_iou`.

    Returns
    -------
    ndarray, shape (N,)
    """
    return complete_box_iou_paired_forward(boxes1, boxes2, convention=convention, plus_one=plus_one, guard=guard,
                                           sort_corners=sort_corners, half_wh=half_wh, eps=eps,
                                           clamp_enclosing=clamp_enclosing, centre_distance=centre_distance,
                                           height_eps=height_eps, alpha_gate=alpha_gate, alpha_eps=alpha_eps,
                                           clip=clip, atan=atan)[0]


@conventions.documented("complete_box_iou_paired")
def complete_box_iou_paired_forward(boxes1: np.ndarray, boxes2: np.ndarray, *,
                                    convention: Convention = "torchvision", plus_one: Optional[bool] = None,
                                    guard: Optional[str] = None, sort_corners: Optional[bool] = None,
                                    half_wh: Optional[bool] = None, eps: Optional[float] = None,
                                    clamp_enclosing: Optional[bool] = None, centre_distance: Optional[str] = None,
                                    height_eps: Optional[bool] = None, alpha_gate: Optional[float] = None,
                                    alpha_eps: Optional[float] = None, clip: Optional[bool] = None,
                                    atan: Optional[Callable[[np.ndarray], np.ndarray]] = None
                                    ) -> Tuple[np.ndarray, PairedIoUCache]:
    """:func:`complete_box_iou_paired` with a cache for :func:`complete_box_iou_paired_backward`.

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh, eps, clamp_enclosing, centre_distance,
    height_eps, alpha_gate, alpha_eps, clip, atan
        As in :func:`complete_box_iou`.

    Returns
    -------
    values : ndarray, shape (N,)
    cache : PairedIoUCache
        The named terms: ``iou``, ``distance``, ``v``, ``alpha``, ``theta`` (``value = (iou -
        distance) - alpha * v`` before the optional clip).
    """
    s, e = _family_profile("complete_box_iou_paired", convention, plus_one=plus_one, guard=guard,
                           sort_corners=sort_corners, half_wh=half_wh, eps=eps, clamp_enclosing=clamp_enclosing,
                           centre_distance=centre_distance, height_eps=height_eps, alpha_gate=alpha_gate,
                           alpha_eps=alpha_eps, clip=clip)
    return E.forward_paired("ciou", s, e, boxes1, boxes2, atan)


def complete_box_iou_paired_backward(dvalues: np.ndarray, cache: PairedIoUCache) -> PairedIoUGrads:
    """Gradient of :func:`complete_box_iou_paired_forward` w.r.t. both box sets, ``alpha`` held
    constant (``no_grad`` in every framework).

    ``CIoU = DIoU - alpha v`` with ``v = 4/pi^2 theta^2``, ``theta = atan(w1/h1) - atan(w2/h2)``:
    ``dv = 8/pi^2 theta d theta``, ``d atan(w/h) = (h dw - w dh) / (w^2 + h^2)``; 0 where the clip
    is active; the DIoU part as in :func:`distance_box_iou_paired_backward`. A zero-height box gives
    NaN (as autograd).

    Parameters
    ----------
    dvalues : ndarray, shape (N,)
    cache : PairedIoUCache

    Returns
    -------
    PairedIoUGrads(dboxes1, dboxes2), shape (N, 4) each
    """
    return E.backward_entry(dvalues, cache, "complete_box_iou_paired_forward")
