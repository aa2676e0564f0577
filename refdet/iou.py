"""Intersection over union and the GIoU / DIoU / CIoU family, pairwise and elementwise.

For two boxes A and B (xyxy, continuous coordinates)::

    I = max(0, min(x2a, x2b) - max(x1a, x1b)) * max(0, min(y2a, y2b) - max(y1a, y1b))
    U = area(A) + area(B) - I
    IoU = I / U

The frameworks agree on this formula and differ only in *guards* (what happens when ``U = 0``, i.e.
two degenerate boxes) and in the legacy "+1" pixel widths. Both are convention knobs::

    box_iou(a, b)                            # torchvision: 0/0 -> NaN
    box_iou(a, b, convention="detectron2")   # 0 where the intersection is 0
    box_iou(a, b, guard="eps_union")         # mmdet: union clamped to >= 1e-6

``print(refdet.conventions.describe("box_iou"))`` prints the table.

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
"""
from __future__ import annotations

import math

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "IOU_GUARDS",
    "box_iou",
    "box_iou_paired",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
]

#: The guards :func:`box_iou` knows (see its docstring).
IOU_GUARDS = ("none", "inter_gt_0", "eps_union", "skip_degenerate", "pfr")

_KNOBS = {
    "plus_one": "box widths are x2 - x1 + 1 and intersection widths min - max + 1 (legacy pixels)",
    "guard": "what a zero union / degenerate box gives: " + " | ".join(IOU_GUARDS),
    "sort_corners": "treat any diagonal as a box: use min/max of (x1, x2) and (y1, y2) (ONNX)",
    "half_wh": "float16 inputs: round the widths/heights min - max to float16 before the product "
               "(torchvision subtracts in float16 and upcasts after)",
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

_FAMILY_KNOBS = dict(_KNOBS)
_FAMILY_KNOBS["eps"] = "added to the DIoU diagonal c^2 and to CIoU's alpha denominator"
_FAMILY_PROFILES = {p: dict(s, eps=1e-7) for p, s in _PROFILES.items()}
_FAMILY_PROFILES["mmdet"]["eps"] = 1e-6
_FAMILY_PROFILES["paper"]["eps"] = 0.0
# torchvision's distance_box_iou / complete_box_iou upcast the boxes first: no float16 rounding
_UPCAST_PROFILES = {p: dict(s, half_wh=False) for p, s in _FAMILY_PROFILES.items()}

_FAMILY_SOURCES = """\
torchvision ops/boxes.py generalized_box_iou (no eps), distance_box_iou and complete_box_iou
  (eps = 1e-7 added to c^2 and to 1 - IoU + v). The IoU term uses the profile's box_iou guard.
The enclosing-box term (C - U) / C: guard "none" divides as is (0/0 = NaN, torchvision);
  "eps_union" divides by max(C, 1e-6) (mmdet bbox_overlaps mode="giou"); every other guard gives 0
  where C = 0. mmdet's DIoU/CIoU losses add eps = 1e-6 to c^2. Frameworks without a pairwise
  GIoU/DIoU/CIoU (detectron2, TF, ONNX, caffe) get refdet's extension with their IoU guard.
"""
conventions.register("generalized_box_iou", _FAMILY_PROFILES, knobs=_FAMILY_KNOBS, doc=_FAMILY_SOURCES)
for _op in ("distance_box_iou", "complete_box_iou"):
    conventions.register(_op, _UPCAST_PROFILES, knobs=_FAMILY_KNOBS, doc=_FAMILY_SOURCES)

# Scratch buffers hold about this many elements (256 KiB in float32): three of them stay in L2.
_BLOCK_ELEMENTS = 1 << 16


def _settings(op, convention, plus_one, guard, sort_corners, half_wh, **extra):
    s = conventions.resolve(op, convention, plus_one=plus_one, guard=guard,
                            sort_corners=sort_corners, half_wh=half_wh, **extra)
    _checks.check_choice(s["guard"], "guard", IOU_GUARDS)
    if not isinstance(s["plus_one"], (bool, np.bool_)):
        raise TypeError(f"`plus_one` must be a bool; got {type(s['plus_one']).__name__} {s['plus_one']!r}")
    if not isinstance(s["sort_corners"], (bool, np.bool_)):
        raise TypeError(f"`sort_corners` must be a bool; got {type(s['sort_corners']).__name__} "
                        f"{s['sort_corners']!r}")
    if not isinstance(s["half_wh"], (bool, np.bool_)):
        raise TypeError(f"`half_wh` must be a bool; got {type(s['half_wh']).__name__} {s['half_wh']!r}")
    return s


def _pair(boxes1, boxes2, half_wh=False):
    """Validate both box sets; return them in one common working dtype (maybe the callers' arrays).

    Also returns whether the float16 rounding of ``half_wh`` applies (both inputs float16).
    """
    half = bool(half_wh) and _checks.as_array(boxes1, "boxes1").dtype == np.float16 and \
        _checks.as_array(boxes2, "boxes2").dtype == np.float16
    b1 = _checks.as_boxes(boxes1, "boxes1")
    b2 = _checks.as_boxes(boxes2, "boxes2")
    dt = np.result_type(b1.dtype, b2.dtype)  # float32 + float64 -> float64, as torch promotes
    return b1.astype(dt, copy=False), b2.astype(dt, copy=False), half


def _columns(b, sort_corners):
    """(N, 4) -> four contiguous (N,) columns x1, y1, x2, y2 (new arrays, never views of the input)."""
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, i]).copy() for i in range(4))
    if sort_corners:  # ONNX: (x1, x2) and (y1, y2) may come in either order
        x1, x2 = np.minimum(x1, x2), np.maximum(x1, x2)
        y1, y2 = np.minimum(y1, y2), np.maximum(y1, y2)
    return x1, y1, x2, y2


def _areas(cols, plus_one):
    """(N,) areas ``(x2 - x1) * (y2 - y1)`` (+1 each side under ``plus_one``), torchvision's order."""
    x1, y1, x2, y2 = cols
    w = x2 - x1
    h = y2 - y1
    if plus_one:
        one = w.dtype.type(1)
        w += one
        h += one
    return w * h


def _round_half(x):
    """Round float32 values to float16 in place (torchvision's float16 ``rb - lt``, then upcast).

    torch's CPU float16 subtraction is computed in float32 and rounded once to float16, which is
    exactly what this does to the float32 difference.
    """
    np.copyto(x, x.astype(np.float16))


def _inter_union_into(c1, c2, a1, a2, plus_one, guard, eps, inter, union, tmp, out, half=False):
    """IoU of broadcastable column sets, written into ``out``; ``inter``/``union``/``tmp`` are scratch.

    ``c1``/``c2`` are (x1, y1, x2, y2) tuples and ``a1``/``a2`` areas, already shaped to broadcast
    to ``out.shape`` ((n, 1) against (M,) for pairwise, (n,) against (n,) for paired).
    On return ``inter`` holds the intersection and ``union`` the union (before any eps clamp).
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
        _round_half(inter)
        _round_half(union)
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
    np.divide(inter, union, out=out)
    if guard == "none":
        return
    if guard == "inter_gt_0":
        np.copyto(out, dt(0), where=inter <= 0)
    elif guard == "pfr":
        np.copyto(out, dt(0), where=~pfr_mask)
    else:  # skip_degenerate (ONNX): I <= 0, either area <= 0, or U <= 0 -> 0
        bad = (inter <= 0) | (union <= 0) | (a1 <= 0) | (a2 <= 0)
        np.copyto(out, dt(0), where=bad)


def box_iou(boxes1, boxes2, *, convention="torchvision", plus_one=None, guard=None, sort_corners=None,
            half_wh=None, eps=1e-6, out=None):
    """Pairwise intersection over union.

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention : str
        Profile setting the knobs below (``refdet.conventions.describe("box_iou")``):

        ============ ======== ================= ============
        profile      plus_one guard             sort_corners
        ============ ======== ================= ============
        torchvision  False    "none"            False
        detectron2   False    "inter_gt_0"      False
        mmdet        False    "eps_union"       False
        caffe        True     "pfr"             False
        tf           False    "inter_gt_0"      False
        onnx         False    "skip_degenerate" True
        paper        False    "none"            False
        ============ ======== ================= ============
    plus_one : bool, optional
        Legacy inclusive-pixel widths: ``area = (x2 - x1 + 1) * (y2 - y1 + 1)`` and intersection
        width ``min(x2) - max(x1) + 1`` clamped at 0 (py-faster-rcnn, Detectron1). A point box then
        has area 1 and IoU 1 with itself.
    guard : {"none", "inter_gt_0", "eps_union", "skip_degenerate", "pfr"}, optional
        ``"none"``: ``I / U`` as is; two degenerate boxes give ``0 / 0 = NaN`` (torchvision).
        ``"inter_gt_0"``: 0 wherever ``I == 0`` (detectron2, TF).
        ``"eps_union"``: ``I / max(U, eps)`` (mmdet, ``eps = 1e-6``).
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
        The union floor of ``guard="eps_union"`` (compared in the working dtype).
    out : ndarray, shape (N, M), optional
        Where to write the result (must have the working dtype and be C-contiguous).

    Returns
    -------
    ndarray, shape (N, M)
        In the working dtype (float64 for float64/int input, float32 for float32/float16). Empty
        inputs give an empty (N, M) array.

    Examples
    --------
    >>> box_iou([[0, 0, 10, 10]], [[5, 5, 15, 15], [0, 0, 10, 10]])   # 25 / (100 + 100 - 25)
    array([[0.14285714, 1.        ]])
    """
    s = _settings("box_iou", convention, plus_one, guard, sort_corners, half_wh)
    b1, b2, half = _pair(boxes1, boxes2, s["half_wh"])
    dt = b1.dtype
    eps = _checks.check_positive(eps, "eps") if s["guard"] == "eps_union" else 0.0
    n, m = len(b1), len(b2)
    if out is None:
        out = np.empty((n, m), dtype=dt)
    elif not (isinstance(out, np.ndarray) and out.shape == (n, m) and out.dtype == dt
              and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"`out` must be a writeable C-contiguous ndarray of shape {(n, m)} and dtype "
                         f"{dt}; got {_checks._describe(out)}")
    if n == 0 or m == 0:
        return out
    c1 = _columns(b1, s["sort_corners"])
    c2 = _columns(b2, s["sort_corners"])
    a1 = _areas(c1, s["plus_one"])
    a2 = _areas(c2, s["plus_one"])
    rows = max(1, _BLOCK_ELEMENTS // m)
    inter = np.empty((min(rows, n), m), dtype=dt)
    union = np.empty_like(inter)
    tmp = np.empty_like(inter)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for start in range(0, n, rows):  # blocks of rows: the scratch stays in cache
            stop = min(start + rows, n)
            k = stop - start
            block = tuple(c[start:stop, None] for c in c1)          # (k, 1) against (M,)
            _inter_union_into(block, c2, a1[start:stop, None], a2, s["plus_one"], s["guard"], eps,
                              inter[:k], union[:k], tmp[:k], out[start:stop], half)
    return out


def box_iou_paired(boxes1, boxes2, *, convention="torchvision", plus_one=None, guard=None,
                   sort_corners=None, half_wh=None, eps=1e-6):
    """Elementwise IoU of matching rows: ``iou[i] = IoU(boxes1[i], boxes2[i])``.

    The diagonal of :func:`box_iou` without the (N, N) matrix, with the same knobs and the same
    order of operations (so ``box_iou_paired(a, b) == np.diag(box_iou(a, b))`` bit for bit). This is
    the IoU that IoU losses use (predicted box i against its target i).

    Parameters
    ----------
    boxes1, boxes2 : ndarray, shape (N, 4), xyxy

    Returns
    -------
    ndarray, shape (N,)
    """
    s = _settings("box_iou_paired", convention, plus_one, guard, sort_corners, half_wh)
    b1, b2, half = _pair(boxes1, boxes2, s["half_wh"])
    _checks.check_same_length(b1, b2, "boxes1", "boxes2")
    eps = _checks.check_positive(eps, "eps") if s["guard"] == "eps_union" else 0.0
    n = len(b1)
    out = np.empty(n, dtype=b1.dtype)
    if n == 0:
        return out
    c1 = _columns(b1, s["sort_corners"])
    c2 = _columns(b2, s["sort_corners"])
    a1 = _areas(c1, s["plus_one"])
    a2 = _areas(c2, s["plus_one"])
    inter, union, tmp = (np.empty(n, dtype=b1.dtype) for _ in range(3))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _inter_union_into(c1, c2, a1, a2, s["plus_one"], s["guard"], eps, inter, union, tmp, out, half)
    return out


# ---------------------------------------------------------------------------------------------------
# GIoU / DIoU / CIoU (pairwise)
# ---------------------------------------------------------------------------------------------------

def _family_parts(boxes1, boxes2, op, convention, plus_one, guard, sort_corners, half_wh, eps):
    """Shared start of the GIoU family: settings, IoU, enclosing box extents (all (N, M))."""
    s = _settings(op, convention, plus_one, guard, sort_corners, half_wh, eps=eps)
    e = _checks.check_real(s["eps"], "eps")
    if e < 0:
        raise ValueError(f"`eps` must be >= 0; got {e}")
    b1, b2, half = _pair(boxes1, boxes2, s["half_wh"])
    dt = b1.dtype
    n, m = len(b1), len(b2)
    c1 = _columns(b1, s["sort_corners"])
    c2 = _columns(b2, s["sort_corners"])
    a1 = _areas(c1, s["plus_one"])
    a2 = _areas(c2, s["plus_one"])
    iou = np.empty((n, m), dtype=dt)
    inter = np.empty((n, m), dtype=dt)
    union = np.empty((n, m), dtype=dt)
    tmp = np.empty((n, m), dtype=dt)
    col1 = tuple(c[:, None] for c in c1)  # (N, 1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _inter_union_into(col1, c2, a1[:, None], a2, s["plus_one"], s["guard"], 1e-6, inter, union, tmp,
                          iou, half)
        # smallest enclosing box: clamp(max(x2) - min(x1), 0)   (N, M) each
        wc = np.maximum(c2[2], col1[2]) - np.minimum(c2[0], col1[0])  # (see the tie note above)
        hc = np.maximum(c2[3], col1[3]) - np.minimum(c2[1], col1[1])
        if half:
            _round_half(wc)
            _round_half(hc)
        if s["plus_one"]:
            wc += dt.type(1)
            hc += dt.type(1)
        np.maximum(dt.type(0), wc, out=wc)
        np.maximum(dt.type(0), hc, out=hc)
        if s["guard"] == "eps_union":  # mmdet clamps the union before it enters (C - U) / C
            np.maximum(union, dt.type(1e-6), out=union)
    return s, dt.type(e), c1, c2, iou, union, wc, hc


def _safe_ratio(num, den, guard, floor):
    """``num / den`` with the guard applied to a zero ``den`` (see the module's family sources)."""
    if guard == "none":
        return num / den
    if guard == "eps_union":
        return num / np.maximum(den, den.dtype.type(floor))
    r = num / den
    np.copyto(r, r.dtype.type(0), where=den == 0)
    return r


def generalized_box_iou(boxes1, boxes2, *, convention="torchvision", plus_one=None, guard=None,
                        sort_corners=None, half_wh=None, eps=None):
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
        ``"eps_union"`` divides by ``max(C, 1e-6)`` (mmdet ``bbox_overlaps(mode="giou")``), every
        other guard gives 0 where ``C = 0``.
    eps : float, optional
        Not used by GIoU (torchvision's pairwise GIoU has none); accepted so the family shares
        its keywords.

    Returns
    -------
    ndarray, shape (N, M)

    Notes
    -----
    Order of operations (torchvision): ``iou - (areai - union) / areai`` with ``areai = wc * hc``.
    """
    s, _, _, _, iou, union, wc, hc = _family_parts(boxes1, boxes2, "generalized_box_iou", convention,
                                                   plus_one, guard, sort_corners, half_wh, eps)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        area_c = wc * hc
        return iou - _safe_ratio(area_c - union, area_c, s["guard"], 1e-6)


def _diou_terms(c1, c2, wc, hc, e, guard):
    """rho^2 / c^2: squared centre distance over squared enclosing diagonal (+ eps), (N, M)."""
    dt = wc.dtype.type
    two = dt(2)
    # torchvision: x_p = (x1 + x2) / 2 on each set, then (x_p - x_g) ** 2
    xp = (c1[0] + c1[2]) / two
    yp = (c1[1] + c1[3]) / two
    xg = (c2[0] + c2[2]) / two
    yg = (c2[1] + c2[3]) / two
    dx = xp[:, None] - xg[None, :]
    dy = yp[:, None] - yg[None, :]
    rho2 = dx * dx + dy * dy
    diag2 = wc * wc + hc * hc + e  # (wc ** 2 + hc ** 2) + eps
    return _safe_ratio(rho2, diag2, guard, 1e-6)


def distance_box_iou(boxes1, boxes2, *, convention="torchvision", plus_one=None, guard=None,
                     sort_corners=None, half_wh=None, eps=None):
    """Pairwise distance IoU (Zheng et al. 2020): ``DIoU = IoU - rho^2 / (c^2 + eps)``.

    ``rho`` is the distance between the box centres, ``c`` the diagonal of the smallest enclosing
    box. DIoU lies in [-1, 1].

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention, plus_one, guard, sort_corners, half_wh
        As in :func:`box_iou`.
    eps : float, optional
        Added to ``c^2`` (torchvision 1e-7, mmdet 1e-6, paper 0).

    Returns
    -------
    ndarray, shape (N, M)
    """
    s, e, c1, c2, iou, _, wc, hc = _family_parts(boxes1, boxes2, "distance_box_iou", convention,
                                                 plus_one, guard, sort_corners, half_wh, eps)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return iou - _diou_terms(c1, c2, wc, hc, e, s["guard"])


def complete_box_iou(boxes1, boxes2, *, convention="torchvision", plus_one=None, guard=None,
                     sort_corners=None, half_wh=None, eps=None, atan=None):
    """Pairwise complete IoU (Zheng et al. 2020): ``CIoU = DIoU - alpha * v``.

    ``v = 4 / pi^2 * (atan(w1 / h1) - atan(w2 / h2))^2`` measures the aspect-ratio mismatch and
    ``alpha = v / (1 - IoU + v + eps)`` (treated as a constant in the gradient by every framework).

    Parameters
    ----------
    boxes1 : ndarray, shape (N, 4), xyxy
    boxes2 : ndarray, shape (M, 4), xyxy
    convention, plus_one, guard, sort_corners, eps
        As in :func:`distance_box_iou`; ``eps`` also enters alpha's denominator.
    atan : callable, optional
        The arctangent to use (default :func:`numpy.arctan`). Library float32 arctangents differ in
        the last bit (NumPy's SIMD ``arctan`` against torch's SLEEF ``atanf``), so float32 CIoU can
        differ from torchvision by a few ulp; the other three functions match bit for bit.

    Returns
    -------
    ndarray, shape (N, M)
        NaN for a zero-height box (``atan(0 / 0)``), as in torchvision (TV10).

    Notes
    -----
    torchvision's order: ``v = (4 / pi**2) * (atan(w1/h1) - atan(w2/h2)) ** 2`` with the factor
    rounded to the working dtype, ``alpha = v / (((1 - iou) + v) + eps)``, ``diou - alpha * v``.
    """
    s, e, c1, c2, iou, _, wc, hc = _family_parts(boxes1, boxes2, "complete_box_iou", convention,
                                                 plus_one, guard, sort_corners, half_wh, eps)
    dt = iou.dtype.type
    f = np.arctan if atan is None else atan
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diou = iou - _diou_terms(c1, c2, wc, hc, e, s["guard"])
        one = dt(1) if s["plus_one"] else dt(0)
        w1 = c1[2] - c1[0] + one
        h1 = c1[3] - c1[1] + one
        w2 = c2[2] - c2[0] + one
        h2 = c2[3] - c2[1] + one
        t1 = np.asarray(f(w1 / h1), dtype=iou.dtype)
        t2 = np.asarray(f(w2 / h2), dtype=iou.dtype)
        d = t1[:, None] - t2[None, :]
        v = dt(4 / math.pi ** 2) * (d * d)
        alpha = v / (dt(1) - iou + v + e)
        return diou - alpha * v
