"""Non-maximum suppression: greedy NMS, class-aware NMS, Soft-NMS, ONNX NonMaxSuppression, and the
detector post-processing built on them (RetinaNet / RPN inference, multi-scale merging).

Greedy NMS (every framework agrees on the algorithm)::

    order the boxes by score, highest first
    walk the list: keep a box unless an already kept box suppressed it;
                   a kept box suppresses every later box whose IoU with it exceeds the threshold

What differs between frameworks, and the keyword that selects it (``convention=`` sets them all;
``refdet.conventions.describe("nms")`` prints the table):

* ``inclusive``: suppress when ``IoU > thr`` (torchvision, detectron2, mmcv, TF, ONNX, py-faster-rcnn
  ``py_cpu_nms.py``) or ``IoU >= thr`` (py-faster-rcnn ``cpu_nms.pyx``, profile ``"caffe"``).
* ``ties``: equal scores visited lowest index first (a stable descending sort: torchvision CPU,
  onnx.reference, onnxruntime, TF) or highest index first (py-faster-rcnn ``argsort()[::-1]``).
* ``plus_one``: ``w = x2 - x1`` or the legacy ``w = x2 - x1 + 1`` (py-faster-rcnn, Detectron1).
* ``nan_scores``: a NaN score sorts above every number (``torch.sort``; the reversed argsort does the
  same) or is rejected.
* ``corner_order``: ``x1 <= x2`` assumed (torchvision) or any diagonal with degenerate pairs never
  suppressing (ONNX, TF).
* ``threshold_dtype``: the float32 IoU meets a double threshold (torchvision's C++ signature) or a
  float32 one (ONNX/TF threshold tensors).

Exactness. For float32 boxes every IoU is computed in float32 in torchvision's CPU kernel's order of
operations (``csrc/ops/cpu/nms_kernel.cpp``)::

    area  = (x2 - x1) * (y2 - y1)
    w     = max(0, min(x2_i, x2_j) - max(x1_i, x1_j));  h likewise;  inter = w * h
    ovr   = inter / (area_i + area_j - inter)           # float32
    suppress  iff  ovr > iou_threshold                   # float32 ovr promoted to double, double thr

so that refdet's float32 answer equals ``torchvision.ops.nms`` index for index, including IoUs that
land exactly on the threshold. The comparison with a double threshold is reproduced by comparing
with the float32 neighbour of the threshold on the correct side (no float64 temporaries needed). A
NaN IoU (two zero-area boxes: 0/0) never suppresses, as in torchvision.

Memory and speed. No N x N matrix is ever held. The greedy walk takes the candidates in blocks of
``_BLOCK`` (64) boxes: the block is settled against itself (a 64 x 64 tile), then each kept box of
the block suppresses the remaining candidates (one vectorised pass per kept box over the boxes that
overlap it in x and y; the candidate list is compacted as it shrinks). When most of a block survives
and thousands of candidates remain, the rest goes to a sweep over x-sorted boxes that only looks at
pairs whose x-extents overlap (the only pairs that can suppress when the threshold is >= 0) and
settles the sparse graph in rounds. Class-aware NMS sweeps all classes at once (pairs of one class
only) when few pairs overlap, else walks each class. Every path gives the answer of the sequential
walk; ``tests/test_nms.py`` holds them equal to a loop transcription of the C++ kernel and to
torchvision. Loops run over blocks, kept boxes, rounds and classes, never over all boxes.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "nms",
    "batched_nms",
    "soft_nms",
    "SoftNMSResult",
    "onnx_non_max_suppression",
    "postprocess_detections",
    "Detections",
    "merge_multiscale_detections",
]

# --------------------------------------------------------------------------------------------------
# convention tables
# --------------------------------------------------------------------------------------------------

_NMS_KNOBS = {
    "inclusive": "suppress when IoU >= threshold (py-faster-rcnn cpu_nms) instead of IoU > threshold",
    "ties": "equal scores: 'lowest_index' first (stable descending sort) or 'highest_index' first "
            "(reversed ascending argsort, py-faster-rcnn)",
    "nan_scores": "'first': a NaN score sorts above every number (torch.sort) and its box suppresses "
                  "as usual; 'reject': ValueError",
    "plus_one": "box widths are x2 - x1 + 1 (legacy inclusive pixels) instead of x2 - x1",
    "corner_order": "'as_given': x1 <= x2 assumed (a flipped box has a negative width, torchvision); "
                    "'any': min/max per axis and pairs with a non-positive area or intersection never "
                    "suppress (ONNX NonMaxSuppression, TF non_max_suppression)",
    "threshold_dtype": "'float64': float32 IoU compared with the double threshold (torchvision C++); "
                       "'working': the threshold is rounded to the boxes' dtype first (ONNX/TF take it "
                       "as a float32 tensor)",
}

_TV = {"inclusive": False, "ties": "lowest_index", "nan_scores": "first", "plus_one": False,
       "corner_order": "as_given", "threshold_dtype": "float64"}
_ONNX = {"inclusive": False, "ties": "lowest_index", "nan_scores": "reject", "plus_one": False,
         "corner_order": "any", "threshold_dtype": "working"}

conventions.register(
    "nms",
    {
        "torchvision": dict(_TV),
        "detectron2": dict(_TV),
        "mmdet": dict(_TV),
        "caffe": {"inclusive": True, "ties": "highest_index", "nan_scores": "first", "plus_one": True,
                  "corner_order": "as_given", "threshold_dtype": "float64"},
        "tf": dict(_ONNX),
        "onnx": dict(_ONNX),
    },
    knobs=_NMS_KNOBS,
    doc="torchvision csrc/ops/cpu/nms_kernel.cpp (ovr > thr, scores.sort(stable=True, descending=True)); "
        "detectron2 layers/nms.py calls torchvision; mmcv csrc/pytorch/cpu/nms.cpp (ovr > thr, offset 0); "
        "py-faster-rcnn lib/nms/cpu_nms.pyx (+1 areas, ovr >= thresh, scores.argsort()[::-1]); "
        "onnx/reference/ops/op_non_max_suppression.py and onnxruntime non_max_suppression.cc "
        "(min/max corners, degenerate pairs never suppress, float32 threshold); TF "
        "non_max_suppression_op.cc (same IoU guards, priority queue with lower index first on ties). "
        "pytorch/vision#2157 (CUDA tie order), #1872 (+1 and NaN IoU).",
)

conventions.register(
    "batched_nms",
    {
        "torchvision": dict(_TV, coordinate_trick=False),
        "detectron2": dict(_TV, coordinate_trick=False),
        "mmdet": dict(_TV, coordinate_trick=False),
        "caffe": {"inclusive": True, "ties": "highest_index", "nan_scores": "first", "plus_one": True,
                  "corner_order": "as_given", "threshold_dtype": "float64", "coordinate_trick": False},
        "tf": dict(_ONNX, coordinate_trick=False),
        "onnx": dict(_ONNX, coordinate_trick=False),
    },
    knobs=dict(_NMS_KNOBS, coordinate_trick=(
        "False: exact per-class NMS; True: torchvision's offset trick boxes + idx * (max + 1) "
        "(wrong with negative coordinates, TV12); 'torchvision': the trick exactly when torchvision "
        "0.29 uses it on CPU (boxes.numel() <= 4000)")),
    doc="torchvision ops/boxes.py batched_nms: _batched_nms_coordinate_trick when numel <= 4000 on CPU, "
        "else _batched_nms_vanilla (per-class loop, then sort of the kept indices by score). Every "
        "profile defaults to the exact per-class answer; the trick is bug-compatibility only.",
)

_SOFT_KNOBS = {
    "inclusive": "linear / hard decay applies when IoU >= iou_threshold (mmcv, paper) instead of > "
                 "(Detectron1)",
    "plus_one": "box widths are x2 - x1 + 1 (Detectron1) instead of x2 - x1",
    "gaussian_denominator": "'sigma': exp(-IoU^2 / sigma) (paper, Detectron1, mmcv); '2sigma': "
                            "exp(-0.5 IoU^2 / sigma) (TF non_max_suppression_with_scores, OpenVINO)",
    "discard": "'any': after every decay pass, every remaining box below score_threshold is dropped "
               "(mmcv); 'overlapping': only boxes that overlap the selected box are tested (Detectron1)",
    "hard_above_threshold": "Gaussian mode also drops boxes whose IoU exceeds iou_threshold (TF)",
}

conventions.register(
    "soft_nms",
    {
        # torchvision has no Soft-NMS: its profile is the paper's formulas on torchvision's boxes
        "torchvision": {"inclusive": False, "plus_one": False, "gaussian_denominator": "sigma",
                        "discard": "any", "hard_above_threshold": False},
        "mmdet": {"inclusive": True, "plus_one": False, "gaussian_denominator": "sigma",
                  "discard": "any", "hard_above_threshold": False},
        "caffe": {"inclusive": False, "plus_one": True, "gaussian_denominator": "sigma",
                  "discard": "overlapping", "hard_above_threshold": False},
        "tf": {"inclusive": False, "plus_one": False, "gaussian_denominator": "2sigma",
               "discard": "any", "hard_above_threshold": True},
        "paper": {"inclusive": True, "plus_one": False, "gaussian_denominator": "sigma",
                  "discard": "any", "hard_above_threshold": False},
    },
    knobs=_SOFT_KNOBS,
    doc="Bodla et al. 2017 (arXiv:1704.04503) Algorithm 1: linear s*(1 - iou) if iou >= Nt, Gaussian "
        "s*exp(-iou^2/sigma). Detectron1 utils/cython_nms.pyx soft_nms (ov > Nt, +1 areas, only "
        "overlapping boxes are tested against the threshold). mmcv csrc/pytorch/cpu/nms.cpp softnms_cpu "
        "(ovr >= iou_threshold, every remaining box tested against min_score). TF "
        "non_max_suppression_op.cc: scale = -0.5 / soft_nms_sigma, hard suppression above the IoU "
        "threshold. All of them select the current maximum with a strict '<' scan (first maximum wins) "
        "and drop a box by swapping it with the last one.",
)


# --------------------------------------------------------------------------------------------------
# validation helpers local to NMS (wording follows _checks)
# --------------------------------------------------------------------------------------------------

def _scores_checked(scores, n, nan_scores, name="scores"):
    s = _checks.as_scores(scores, name, n=n, allow_nan=True)
    if nan_scores == "reject":
        _checks.check_finite(s, name, allow_inf=True)
    return s


def _knob_choices(s):
    _checks.check_choice(s["ties"], "ties", ("lowest_index", "highest_index"))
    _checks.check_choice(s["nan_scores"], "nan_scores", ("first", "reject"))
    _checks.check_choice(s["corner_order"], "corner_order", ("as_given", "any"))
    _checks.check_choice(s["threshold_dtype"], "threshold_dtype", ("float64", "working"))
    for k in ("inclusive", "plus_one"):
        if not isinstance(s[k], (bool, np.bool_)):
            raise TypeError(f"`{k}` must be a bool; got {type(s[k]).__name__} {s[k]!r}")


# --------------------------------------------------------------------------------------------------
# the greedy engine
# --------------------------------------------------------------------------------------------------

_BLOCK = 64            # boxes taken from the head of the candidate list per step
_TILE = 1 << 15        # a (kept x candidates) tile up to this size is done in one go (cache-sized)
_CHUNK = 1 << 18       # pairs per chunk of the sweep
_SWEEP_MIN = 4096      # below this many candidates the block walk is always cheap enough
_ROUNDS = 12           # resolution rounds on the sparse graph before the leftovers go to the walk


def descending_order(scores, *, ties="lowest_index"):
    """Indices that sort ``scores`` from highest to lowest, with the tie and NaN rules of NMS.

    ``ties="lowest_index"``: a stable descending sort (torchvision ``scores.sort(stable=True,
    descending=True)``, onnx.reference, onnxruntime's heap, TF's priority queue). NaN sorts above
    every number, several NaNs in index order (torch.sort semantics); ``-0.0`` ties with ``0.0``.
    ``ties="highest_index"``: ``np.argsort(scores, kind="stable")[::-1]``, py-faster-rcnn's
    ``argsort()[::-1]`` (NumPy's default introsort is not stable; the stable sort is what
    py-faster-rcnn gives on small inputs and the only defined reading of it). NaN again first,
    several NaNs highest index first.
    """
    s = np.asarray(scores)
    n = s.shape[0]
    if s.dtype in (np.float32, np.float16) and n < (1 << 32):
        # one uint64 key per box: the float's order-preserving bit pattern, then the index. A plain
        # (unstable, SIMD) sort of distinct keys is a stable sort of the scores, ~10x faster than
        # NumPy's stable argsort of floats.
        f = s.astype(np.float32) + np.float32(0.0)          # -0.0 -> +0.0: they tie
        f = np.where(np.isnan(f), np.float32(np.nan), f)    # every NaN the same, above +inf
        u = f.view(np.uint32)
        u = np.where(u >> 31, ~u, u | np.uint32(0x80000000)).astype(np.uint64)
        idx = np.arange(n, dtype=np.uint64)
        if ties == "highest_index":
            key = np.sort((u << np.uint64(32)) | idx)[::-1]
        else:
            key = np.sort(((np.uint64(0xFFFFFFFF) - u) << np.uint64(32)) | idx)
        return (key & np.uint64(0xFFFFFFFF)).astype(np.int64)
    if s.dtype.kind == "f" and n > 1:
        # fast path: a plain (SIMD) sort is already stable when no two scores tie and none is NaN
        neg = -s if ties == "lowest_index" else s
        order = np.argsort(neg)
        ranked = neg[order]
        if not (ranked[1:] == ranked[:-1]).any() and not np.isnan(ranked[-1]):
            return (order if ties == "lowest_index" else order[::-1]).astype(np.int64)
    if ties == "highest_index":
        return np.argsort(s, kind="stable")[::-1].astype(np.int64)
    order = np.argsort(-s, kind="stable")       # NaN (and -NaN) go last in NumPy's sort
    if s.dtype.kind == "f":
        nan = np.isnan(s[order])
        if nan.any():
            order = np.concatenate([order[nan], order[~nan]])
    return order.astype(np.int64)


class _Geom(NamedTuple):
    """Prepared IoU inputs in processing order: ``C`` = (5, N) [x1, y1, x2, y2, area]."""
    C: np.ndarray
    kind: str          # "tv", "plus_one" or "any"
    thr: object        # threshold as a scalar of C's dtype (see _cmp_threshold)
    inclusive: bool


def _cmp_threshold(thr, dtype, inclusive, threshold_dtype):
    """A scalar ``t`` of ``dtype`` such that ``x > t`` (or ``x >= t``) for every ``x`` of ``dtype``
    gives exactly the comparison of ``float64(x)`` with the float64 ``thr`` (C++ promotes the float
    IoU to double), or ``dtype(thr)`` when the framework holds the threshold in ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.float64(thr)
    t = dtype.type(thr)
    if threshold_dtype == "working":
        return t
    with np.errstate(over="ignore"):
        if not inclusive and float(t) > thr:      # x > thr  <=>  x > largest float32 <= thr
            t = np.nextafter(t, dtype.type(-np.inf))
        elif inclusive and float(t) < thr:        # x >= thr <=>  x >= smallest float32 >= thr
            t = np.nextafter(t, dtype.type(np.inf))
    return t


def _prepare(b, kind, thr, inclusive, threshold_dtype, *, normalize=True):
    """(N, 4) xyxy boxes (working dtype, processing order) -> _Geom.

    ``normalize=False`` skips the min/max of the ``"any"`` kind (ONNX ``center_point_box=1`` boxes
    are converted to corners without sorting them)."""
    dt = b.dtype
    if kind == "any" and normalize:   # ONNX / TF: any diagonal; normalise to min/max per axis
        x1 = np.minimum(b[:, 0], b[:, 2]); x2 = np.maximum(b[:, 0], b[:, 2])
        y1 = np.minimum(b[:, 1], b[:, 3]); y2 = np.maximum(b[:, 1], b[:, 3])
    else:
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    if kind == "plus_one":
        one = dt.type(1)
        area = (x2 - x1 + one) * (y2 - y1 + one)
    else:
        area = (x2 - x1) * (y2 - y1)
    C = np.empty((5, len(b)), dtype=dt)
    C[0], C[1], C[2], C[3], C[4] = x1, y1, x2, y2, area
    return _Geom(C, kind, _cmp_threshold(thr, dt, inclusive, threshold_dtype), inclusive)


def _suppress(A, B, kind, thr, inclusive):
    """Does box ``a`` suppress box ``b``? ``A``, ``B``: (5, ...) broadcastable coordinate stacks.

    The arithmetic is the framework's, operation for operation (see the module docstring).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        w = np.minimum(A[2], B[2])
        w -= np.maximum(A[0], B[0])                         # min(x2) - max(x1)
        h = np.minimum(A[3], B[3])
        h -= np.maximum(A[1], B[1])
        if kind == "plus_one":
            one = w.dtype.type(1)
            w += one
            h += one
        if kind == "any":
            # onnxruntime SuppressByIOU: no overlap, a non-positive area or union -> keep
            ok = (w > 0) & (h > 0)
            inter = w * h
            union = (A[4] + B[4]) - inter
            ok &= (inter > 0) & (A[4] > 0) & (B[4] > 0) & (union > 0)
            iou = inter / union
            return ok & ((iou >= thr) if inclusive else (iou > thr))
        np.maximum(w, 0, out=w)
        np.maximum(h, 0, out=h)
        inter = w * h
        union = A[4] + B[4]                                 # (area_i + area_j) - inter
        union -= inter
        inter /= union                                      # ovr; 0/0 = NaN never suppresses
        return (inter >= thr) if inclusive else (inter > thr)


def _resolve_dense(M):
    """Greedy outcome inside a block. ``M[a, b]``: a suppresses b (only a < b is used).

    Rounds: a box whose every suppressor is already suppressed is kept; a box with a kept suppressor
    is suppressed. The first undecided box is always decided, so rounds <= kept boxes.
    """
    T = M.shape[0]
    M = np.triu(M, 1)
    kept = np.zeros(T, dtype=bool)
    supp = np.zeros(T, dtype=bool)
    und = np.ones(T, dtype=bool)
    while und.any():
        live = ~supp
        blocked = M[live].any(axis=0)
        newk = und & ~blocked
        kept |= newk
        und &= ~newk
        hit = M[kept].any(axis=0) & und
        supp |= hit
        und &= ~hit
    return kept


def _row_hits(t, tail, kind, thr, inclusive):
    """Positions in ``tail`` (5, R) that box ``t`` (5,) suppresses, when a pair without intersection
    cannot suppress: only boxes overlapping ``t`` in x and y are tested, with the same arithmetic as
    :func:`_suppress` (``w`` and ``h`` are already positive there, so the clamps are no-ops)."""
    w = np.minimum(tail[2], t[2])
    w -= np.maximum(tail[0], t[0])                       # min(x2) - max(x1)
    h = np.minimum(tail[3], t[3])
    h -= np.maximum(tail[1], t[1])
    if kind == "plus_one":
        one = w.dtype.type(1)
        w += one
        h += one
    cand = np.flatnonzero(np.minimum(w, h) > 0)
    if cand.size == 0 or kind == "any":
        if cand.size == 0:
            return cand
        return cand[_suppress(t, np.take(tail, cand, axis=1), kind, thr, inclusive)]
    inter = w[cand]
    inter *= h[cand]                                     # w * h
    union = tail[4][cand]
    union += t[4]                                        # area_t + area_j (commutative: same bits)
    union -= inter
    inter /= union                                       # union > 0: both boxes have w, h > 0
    return cand[(inter >= thr) if inclusive else (inter > thr)]


def _walk(g, pos=None, *, allow_sweep=True, switch=True):
    """Block walk over the candidates of ``g`` (optionally only the positions ``pos``, increasing).

    Each step takes the first ``_BLOCK`` candidates, settles them among themselves (a T x T tile),
    then lets each kept box of the block suppress the remaining candidates (one vectorised row per
    kept box; the candidate list is compacted as it shrinks, so clustered boxes get cheap fast).
    When most of a block survives and many candidates remain, the rest is handed to
    :func:`_sweep` (if ``allow_sweep``), which only looks at pairs whose x-extents overlap.

    Returns the kept positions (increasing, i.e. in processing order).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # 0/0 IoU is NaN: no suppression
        return _walk_impl(g, pos, allow_sweep, switch)


def _walk_impl(g, pos, allow_sweep, switch):
    C, kind, thr, inc = g
    if pos is None:
        pos = np.arange(C.shape[1])
        rem = C
    else:
        rem = np.take(C, pos, axis=1)
    # allow_sweep: a pair with no intersection cannot suppress (x-prefilter and sweep are exact);
    # switch: hand over to the sweep when most boxes survive
    prefilter = allow_sweep
    out = []
    while pos.size:
        T = pos.size if pos.size <= 2 * _BLOCK else _BLOCK     # small sets: one dense tile
        head = rem[:, :T]
        M = _suppress(head[:, :, None], head[:, None, :], kind, thr, inc)      # (T, T)
        kb = _resolve_dense(M)
        out.append(pos[:T][kb])
        if pos.size == T:
            break
        tail = rem[:, T:]
        tpos = pos[T:]
        kept_rows = np.flatnonzero(kb)
        if len(kept_rows) * tail.shape[1] <= _TILE:        # small: one (k, R) tile
            alive = np.flatnonzero(
                ~_suppress(head[:, kept_rows, None], tail[:, None, :], kind, thr, inc).any(axis=0))
            kept_rows = kept_rows[:0]
            tail, tpos = np.take(tail, alive, axis=1), tpos[alive]
        dead = np.zeros(tail.shape[1], dtype=bool)
        n_dead = 0
        for i in kept_rows:                                # loop over the kept boxes of the block
            t = head[:, i]
            if prefilter:
                hit = _row_hits(t, tail, kind, thr, inc)
                nd = hit.size
                if nd:
                    dead[hit] = True
                    n_dead += nd
            else:
                d = _suppress(t, tail, kind, thr, inc)     # (R,)
                nd = int(np.count_nonzero(d))
                if nd:
                    dead |= d
                    n_dead += nd
            if nd:
                if 16 * n_dead > dead.size:                # compact once a sixteenth is gone
                    live = np.flatnonzero(~dead)
                    tail, tpos = np.take(tail, live, axis=1), tpos[live]
                    dead = np.zeros(tail.shape[1], dtype=bool)
                    n_dead = 0
        if n_dead:
            live = np.flatnonzero(~dead)
            tail, tpos = np.take(tail, live, axis=1), tpos[live]
        frac_kept = np.count_nonzero(kb) / T
        rem, pos = tail, tpos
        if allow_sweep and switch and pos.size > _SWEEP_MIN and frac_kept >= 0.5 and \
                _sweep_worthwhile(rem, kind, frac_kept):
            out.append(pos[_sweep(_Geom(rem, kind, thr, inc))])
            break
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _x_window(C, kind, groups=None):
    """Candidate pairs of the sweep, as an x-sorted order and a count per sorted box.

    Boxes are sorted by (group, x1); box ``i`` (in that order) is paired with the boxes after it up
    to the first one of another group or with ``x1 > x2_i`` (``x2_i + 1`` for +1 widths): a
    superset of the pairs whose x-extents overlap, the only pairs that can suppress. Comparisons go
    through ranks in the sorted x1 values, so they are exact for any dtype.
    """
    R = C.shape[1]
    x1 = C[0]
    x2 = C[2].astype(np.float64)
    if kind == "plus_one":
        x2 = x2 + 1.0       # (x2_i - x1_j) + 1 > 0 in float32 implies x1_j <= x2_i + 1 exactly
    x1_sorted = np.sort(x1)
    r1 = np.searchsorted(x1_sorted, x1, side="left")            # number of x1 values < x1_j
    r2 = np.searchsorted(x1_sorted, x2, side="right")           # number of x1 values <= x2_i
    if groups is None:
        key, query = r1, r2
    else:
        g = np.unique(groups, return_inverse=True)[1].reshape(-1)     # dense ranks: no overflow
        key = g * (R + 1) + r1                                   # x1_j <= x2_i  <=>  r1_j < r2_i
        query = g * (R + 1) + r2
    xs = np.argsort(key, kind="stable")
    hi = np.searchsorted(key[xs], query[xs], side="left")
    cnt = np.maximum(hi - np.arange(R) - 1, 0)
    return xs, cnt


def _sweep_worthwhile(C, kind, frac_kept):
    """Compare the block walk's expected pair count with the x-overlapping pair count."""
    _, cnt = _x_window(C, kind)
    R = C.shape[1]
    return cnt.sum() * 4 < frac_kept * R * R / 2


def _sweep(g, groups=None, window=None):
    """Greedy NMS through the sparse graph of x-overlapping pairs (the threshold must make a pair
    with no intersection unable to suppress; the caller guarantees it). With ``groups`` (one integer
    per candidate), only pairs of the same group are considered. Returns kept positions.

    Resolution runs in rounds (a box whose suppressors are all suppressed is kept; a box with a kept
    suppressor is suppressed); boxes still undecided after ``_ROUNDS`` rounds (long alternating
    chains) depend only on each other and finish with the block walk.
    """
    C, kind, thr, inc = g
    R = C.shape[1]
    xs, cnt = window if window is not None else _x_window(C, kind, groups)
    ends = np.cumsum(cnt)
    total = int(ends[-1]) if R else 0
    us, vs = [], []
    Cs = np.take(C, xs, axis=1)                # coordinates in sweep order: pairs are near each other
    start_row = 0
    while start_row < R and total:
        # rows [start_row, stop_row) hold about _CHUNK pairs (~20 MiB of temporaries)
        base = int(ends[start_row - 1]) if start_row else 0
        stop_row = int(np.searchsorted(ends, base + _CHUNK, side="right"))
        stop_row = max(stop_row, start_row + 1)
        c = cnt[start_row:stop_row]
        n = int(c.sum())
        if n:
            rows = np.repeat(np.arange(start_row, stop_row), c)
            first = np.cumsum(c) - c
            cols = rows + 1 + (np.arange(n) - np.repeat(first, c))
            hit = np.flatnonzero(_suppress(np.take(Cs, rows, axis=1), np.take(Cs, cols, axis=1),
                                           kind, thr, inc))
            a, b = xs[rows[hit]], xs[cols[hit]]
            us.append(np.minimum(a, b))        # the higher-ranked box is the suppressor
            vs.append(np.maximum(a, b))
        start_row = stop_row
    u = np.concatenate(us) if us else np.zeros(0, dtype=np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, dtype=np.int64)
    kept = np.zeros(R, dtype=bool)
    supp = np.zeros(R, dtype=bool)
    for _ in range(_ROUNDS):
        if u.size == 0:
            break
        blocked = np.zeros(R, dtype=bool)
        blocked[v] = True                      # every edge left has a live (kept or undecided) source
        und = ~(kept | supp)
        kept |= und & ~blocked
        hit = np.zeros(R, dtype=bool)
        hit[v[kept[u]]] = True
        supp |= hit
        live = ~supp[u] & ~kept[v] & ~supp[v]  # drop edges that can no longer matter
        u, v = u[live], v[live]
    und = ~(kept | supp)
    if u.size == 0:
        kept |= und
    elif und.any():                            # long alternating chains: finish with the walk
        left = np.flatnonzero(und)
        if groups is None:
            kept[_walk(g, left, switch=False)] = True
        else:
            for seg in _segments(groups[left]):
                kept[_walk(g, left[seg], switch=False)] = True
    return np.flatnonzero(kept)


def _segments(groups):
    """Index arrays (increasing) of the positions of each distinct value of ``groups``."""
    by = np.argsort(groups, kind="stable")
    gs = groups[by]
    cuts = np.flatnonzero(gs[1:] != gs[:-1]) + 1
    return np.split(by, cuts)


def _kind(s):
    if s["corner_order"] == "any":
        if s["plus_one"]:
            raise ValueError("`plus_one=True` is not defined with `corner_order='any'` "
                             "(ONNX/TF boxes are continuous)")
        return "any"
    return "plus_one" if s["plus_one"] else "tv"


def _sweep_allowed(thr, s):
    # the sweep needs "no intersection -> no suppression": an IoU of 0 must fail the comparison
    return (thr > 0) if s["inclusive"] else (thr >= 0)


def _greedy(b, thr, s, groups=None):
    """Kept positions (increasing) for boxes ``b`` already in processing order.

    ``groups`` (int64 per box): boxes only suppress boxes of their own group (exact class-aware NMS).
    """
    kind = _kind(s)
    g = _prepare(b, kind, thr, s["inclusive"], s["threshold_dtype"])
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    sweep_ok = _sweep_allowed(thr, s) or kind == "any"
    if groups is None:
        return _walk(g, allow_sweep=sweep_ok)
    if sweep_ok:
        window = _x_window(g.C, kind, groups)
        if window[1].sum() <= 32 * len(b):          # few overlapping pairs: one sweep for all groups
            return _sweep(g, groups, window)
    return np.concatenate([_walk(g, seg, allow_sweep=sweep_ok) for seg in _segments(groups)])


# --------------------------------------------------------------------------------------------------
# greedy NMS
# --------------------------------------------------------------------------------------------------

def _nms_settings(op, convention, **kw):
    s = conventions.resolve(op, convention, **kw)
    _knob_choices(s)
    return s


def nms(boxes, scores, iou_threshold, *, convention="torchvision", inclusive=None, ties=None,
        nan_scores=None, plus_one=None, corner_order=None, threshold_dtype=None):
    """Greedy non-maximum suppression.

    Sort the boxes by score (highest first); keep the first; drop every later box whose IoU with a
    kept box exceeds ``iou_threshold``; repeat with the next box that is not dropped.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        ``(x1, y1, x2, y2)``. Finite. With ``corner_order="any"`` either diagonal is accepted.
    scores : ndarray, shape (N,)
        Any real numbers (negative and +-inf are fine); NaN per ``nan_scores``.
    iou_threshold : float
        Any finite real. IoU is at most 1, so ``iou_threshold >= 1`` keeps every box (``> 1`` with
        ``inclusive=True``); a negative threshold suppresses every pair whose IoU is not NaN.
    convention : {"torchvision", "detectron2", "mmdet", "caffe", "tf", "onnx"}
        Sets the defaults of the keywords below (``refdet.conventions.describe("nms")``).
    inclusive : bool, optional
        ``True``: suppress when ``IoU >= iou_threshold`` (py-faster-rcnn ``cpu_nms.pyx``); ``False``:
        ``IoU > iou_threshold`` (torchvision, ONNX, TF, mmcv, py-faster-rcnn ``py_cpu_nms.py``).
    ties : {"lowest_index", "highest_index"}, optional
        Order of boxes with equal scores. ``"lowest_index"``: stable descending sort (torchvision CPU
        ``scores.sort(stable=True, descending=True)``, onnx.reference, onnxruntime 1.32's heap, TF's
        priority queue); with identical boxes and equal scores the lowest index survives.
        ``"highest_index"``: py-faster-rcnn's ``scores.argsort()[::-1]``; the highest index survives. torchvision CUDA has no defined tie
        order (pytorch/vision#2157).
    nan_scores : {"first", "reject"}, optional
        ``"first"`` (torchvision): ``torch.sort`` puts NaN above every number, so a NaN-scored box is
        visited first, kept, and suppresses the boxes it overlaps (TV11: identical boxes scored
        ``[0.5, nan, 0.7]`` keep ``[1]``). Several NaNs are visited in index order
        (``"highest_index"``: reverse index order). ``"reject"``: ``ValueError``.
    plus_one : bool, optional
        Legacy pixel widths ``x2 - x1 + 1`` in areas and intersections (py-faster-rcnn, Detectron1,
        mmcv ``offset=1``).
    corner_order : {"as_given", "any"}, optional
        ``"as_given"`` (torchvision): a box with ``x2 < x1`` keeps its negative width, so its area may
        be negative and its intersections are 0. ``"any"`` (ONNX, TF): corners are sorted per axis,
        and a pair with no intersection, a zero-area box or a non-positive union never suppresses.
    threshold_dtype : {"float64", "working"}, optional
        How a float32 IoU meets the threshold: against the double ``iou_threshold`` (torchvision's
        C++ signature) or against ``float32(iou_threshold)`` (ONNX/TF threshold tensors).

    Returns
    -------
    ndarray of int64, shape (K,)
        Indices of the kept boxes, in visiting order: decreasing score, ties per ``ties``.

    Notes
    -----
    Dtypes: float64 boxes give float64 IoUs; float32 boxes give float32 IoUs in torchvision's order
    of operations, so ``nms(b32, s, t)`` equals ``torchvision.ops.nms`` exactly (tested on
    hypothesis-generated ties and exact-threshold IoUs); float16 boxes are computed in float32 (the
    answer torchvision gives for the boxes cast to float32; its CPU kernel has no float16 version);
    integer boxes in float64. The result depends only on the order of the scores, never on their
    dtype.

    Examples
    --------
    >>> b = np.array([[0, 0, 4, 4], [0, 0, 4, 2], [10, 10, 12, 12]], dtype=np.float32)
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5)            # IoU(0, 1) = 8/16 = 0.5, not > 0.5
    array([0, 1, 2])
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5, inclusive=True)
    array([0, 2])
    """
    s = _nms_settings("nms", convention, inclusive=inclusive, ties=ties, nan_scores=nan_scores,
                      plus_one=plus_one, corner_order=corner_order, threshold_dtype=threshold_dtype)
    b = _checks.as_boxes(boxes, "boxes")
    sc = _scores_checked(scores, len(b), s["nan_scores"])
    thr = _checks.check_real(iou_threshold, "iou_threshold")
    order = descending_order(sc, ties=s["ties"])
    keep = _greedy(b[order], thr, s)
    return order[keep]


def batched_nms(boxes, scores, idxs, iou_threshold, *, convention="torchvision", coordinate_trick=None,
                inclusive=None, ties=None, nan_scores=None, plus_one=None, corner_order=None,
                threshold_dtype=None):
    """Class-aware NMS: boxes suppress only boxes of the same category.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
    scores : ndarray, shape (N,)
    idxs : ndarray of int, shape (N,)
        Category (or FPN level, or image) of each box; any integers.
    iou_threshold : float
    coordinate_trick : {False, True, "torchvision"}, optional
        ``False`` (every profile's default): exact per-category NMS. ``True``: torchvision's
        ``_batched_nms_coordinate_trick``, i.e. NMS of ``boxes + idxs[:, None] * (boxes.max() + 1)``
        computed in the boxes' dtype. It is **wrong** when coordinates are negative (a class-1 box
        ``[-11, -11, -1, -1]`` is shifted onto a class-0 box ``[0, 0, 10, 10]`` and suppressed, TV12)
        and the large offsets round float16/float32 coordinates (MultimediaTechLab/YOLO#234), which
        can move an IoU across the threshold. ``"torchvision"``: the trick exactly when torchvision
        0.29 uses it on the CPU (``boxes.numel() <= 4000``, i.e. N <= 1000), else per-category: with
        float32 input this reproduces ``torchvision.ops.batched_nms`` bit for bit.
    Other keywords: as :func:`nms`.

    Returns
    -------
    ndarray of int64, shape (K,)
        Kept indices in decreasing score order, ties per ``ties`` (torchvision's vanilla path sorts
        the kept indices, taken in increasing index order, by score: the same order).
    """
    s = _nms_settings("batched_nms", convention, coordinate_trick=coordinate_trick, inclusive=inclusive,
                      ties=ties, nan_scores=nan_scores, plus_one=plus_one, corner_order=corner_order,
                      threshold_dtype=threshold_dtype)
    trick = s["coordinate_trick"]
    if not (isinstance(trick, (bool, np.bool_)) or trick == "torchvision"):
        raise ValueError(f"`coordinate_trick` must be False, True or 'torchvision'; got {trick!r}")
    b = _checks.as_boxes(boxes, "boxes")
    sc = _scores_checked(scores, len(b), s["nan_scores"])
    cls = _checks.as_int_labels(idxs, "idxs", n=len(b))
    thr = _checks.check_real(iou_threshold, "iou_threshold")
    if trick == "torchvision":
        trick = b.size <= 4000
    order = descending_order(sc, ties=s["ties"])
    if len(b) == 0:
        return order
    if trick:
        # torchvision: offsets = idxs.to(boxes) * (boxes.max() + 1); boxes + offsets[:, None]
        dt = b.dtype.type
        offsets = cls.astype(b.dtype) * (b.max() + dt(1))
        shifted = b + offsets[:, None]
        return order[_greedy(shifted[order], thr, s)]
    # exact: boxes suppress only boxes of their own category, all in the global visiting order
    keep = np.sort(_greedy(b[order], thr, s, groups=cls[order]))
    return order[keep]


# --------------------------------------------------------------------------------------------------
# Soft-NMS
# --------------------------------------------------------------------------------------------------

class SoftNMSResult(NamedTuple):
    """Output of :func:`soft_nms`.

    indices : ndarray of int64, shape (K,)
        Selected boxes, in selection order.
    scores : ndarray, shape (K,)
        Their scores after decay (the score each box had when it was selected).
    """
    indices: np.ndarray
    scores: np.ndarray


def _iou_row(t, C, kind):
    """IoU of one box ``t`` (5,) with the boxes ``C`` (5, R), and the "overlaps" flag (iw > 0 and
    ih > 0 before clamping). mmcv's order: ``inter / (area_t + area_j - inter)``."""
    w = np.minimum(t[2], C[2]) - np.maximum(t[0], C[0])
    h = np.minimum(t[3], C[3]) - np.maximum(t[1], C[1])
    if kind == "plus_one":
        one = w.dtype.type(1)
        w += one
        h += one
    overlaps = (w > 0) & (h > 0)
    np.maximum(w, 0, out=w)
    np.maximum(h, 0, out=h)
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / ((t[4] + C[4]) - inter)
    return iou, overlaps


def soft_nms(boxes, scores, *, method="gaussian", sigma=0.5, iou_threshold=0.3, score_threshold=0.001,
             convention="torchvision", inclusive=None, plus_one=None, gaussian_denominator=None,
             discard=None, hard_above_threshold=None):
    """Soft-NMS (Bodla et al. 2017): decay the scores of overlapping boxes instead of removing them.

    Repeat until no box is left: select the box with the highest current score; multiply the score
    of every remaining box by a weight that falls with its IoU with the selected box; drop the
    remaining boxes whose score fell below ``score_threshold``.

    Weights, with ``o`` the IoU::

        method="linear"    1 - o  if o > iou_threshold (o >= with inclusive=True), else 1
        method="gaussian"  exp(-o^2 / sigma)        gaussian_denominator="sigma"  (paper, Detectron1, mmcv)
                           exp(-0.5 * o^2 / sigma)  gaussian_denominator="2sigma" (TF, OpenVINO)
                           and 0 if o > iou_threshold when hard_above_threshold (TF)
        method="hard"      0      if o > iou_threshold (>= inclusive), else 1   (greedy NMS; mmcv "naive")

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), xyxy
    scores : ndarray, shape (N,)
        Finite or +-inf; NaN is rejected (a NaN would make the maximum undefined).
    method : {"gaussian", "linear", "hard"}
    sigma : float > 0
    iou_threshold : float
        ``N_t`` of the paper (linear and hard methods; Gaussian only with ``hard_above_threshold``).
    score_threshold : float
        Boxes whose decayed score is ``< score_threshold`` are dropped (mmcv ``min_score``, Detectron1
        ``threshold``). Only decayed boxes are tested: a box that starts below the threshold is
        dropped in the first pass (``discard="any"``) or only once it overlaps a selected box
        (``discard="overlapping"``, Detectron1), and the very first selection is never tested.
    convention : {"torchvision", "mmdet", "caffe", "tf", "paper"}
        torchvision has no Soft-NMS: its profile is the paper's formulas with torchvision's
        continuous boxes and strict ``>``. ``"mmdet"``: mmcv ``softnms_cpu``. ``"caffe"``: Detectron1
        ``cython_nms.soft_nms`` (+1 widths, strict ``>``, only overlapping boxes are dropped).
        ``"tf"``: the ``-0.5 / sigma`` scale with hard suppression above the threshold.
    inclusive, plus_one, gaussian_denominator, discard, hard_above_threshold : optional
        Override the profile (``refdet.conventions.describe("soft_nms")``).

    Returns
    -------
    SoftNMSResult(indices, scores)
        ``indices``: int64, shape (K,), in selection order; ``scores``: the decayed scores.

    Notes
    -----
    Selection and ties reproduce the C loops of Detectron1 and mmcv exactly: the boxes live in a
    working array; the maximum is found by a strict ``<`` scan (the **first** maximum in the working
    array wins), swapped into the current slot, and a dropped box is replaced by the **last** box of
    the array. So equal scores go to the lower index only until the first drop reorders the array.
    refdet vectorises each pass and applies the same permutation (see ``tests/test_nms.py``, which
    holds it equal to a transcription of the C loop). Arithmetic is in the working dtype (float32
    boxes: float32, mmcv's dtype); the C libraries' ``exp`` may differ from NumPy's by an ulp, so
    Soft-NMS scores are exact only up to that. Two zero-area boxes at the same place have IoU
    0/0 = NaN: the Gaussian weight, hence the score, becomes NaN, as in the C loops (such a box is
    never picked by the ``<`` scan before the others and never dropped). Cost: one vectorised pass
    per selected box.
    """
    st = conventions.resolve("soft_nms", convention, inclusive=inclusive, plus_one=plus_one,
                             gaussian_denominator=gaussian_denominator, discard=discard,
                             hard_above_threshold=hard_above_threshold)
    _checks.check_choice(method, "method", ("gaussian", "linear", "hard"))
    _checks.check_choice(st["gaussian_denominator"], "gaussian_denominator", ("sigma", "2sigma"))
    _checks.check_choice(st["discard"], "discard", ("any", "overlapping"))
    b = _checks.as_boxes(boxes, "boxes")
    sc = _checks.as_scores(scores, "scores", n=len(b))
    sig = _checks.check_positive(sigma, "sigma")
    thr = _checks.check_real(iou_threshold, "iou_threshold")
    smin = _checks.check_real(score_threshold, "score_threshold")
    dt = np.result_type(b.dtype, sc.dtype)
    kind = "plus_one" if st["plus_one"] else "tv"
    g = _prepare(b.astype(dt, copy=False), kind, 0.0, False, "working")
    C = g.C.copy()                               # working array: rows x1, y1, x2, y2, area
    S = sc.astype(dt, copy=True)                 # current (decayed) scores
    ind = np.arange(len(b), dtype=np.int64)
    thr_t, smin_t, one, zero = dt.type(thr), dt.type(smin), dt.type(1), dt.type(0)
    sig_t = dt.type(sig)
    scale = dt.type(-0.5) / sig_t
    n = len(b)
    i = 0
    while i < n:
        # the C scan `if (max_score < sc[pos])`: first maximum wins and a NaN never takes over
        # (a NaN score arises only from a Gaussian decay with a 0/0 IoU of two zero-area boxes)
        if np.isnan(S[i]):
            m = i
        else:
            w_ = S[i:n]
            m = i + int(np.argmax(np.where(np.isnan(w_), -np.inf, w_)))
        if m != i:                               # swap the maximum into slot i
            C[:, [i, m]] = C[:, [m, i]]
            S[[i, m]] = S[[m, i]]
            ind[[i, m]] = ind[[m, i]]
        if i + 1 >= n:
            i += 1
            break
        iou, overlaps = _iou_row(C[:, i], C[:, i + 1:n], kind)
        cond = (iou >= thr_t) if st["inclusive"] else (iou > thr_t)
        if method == "linear":
            w = np.where(cond, one - iou, one)
        elif method == "hard":
            w = np.where(cond, zero, one)
        else:
            if st["gaussian_denominator"] == "sigma":
                w = np.exp(-(iou * iou) / sig_t)         # mmcv: exp(-(ovr * ovr) / sigma)
            else:
                w = np.exp((scale * iou) * iou)          # TF: exp(scale * sim * sim), scale = -0.5/sigma
            if st["hard_above_threshold"]:
                w = np.where(iou > thr_t, zero, w)
        if st["discard"] == "overlapping":               # Detectron1 touches overlapping boxes only
            w = np.where(overlaps, w, one)
        seg = S[i + 1:n] * w
        drop = seg < smin_t
        if st["discard"] == "overlapping":
            drop &= overlaps
        S[i + 1:n] = seg
        if drop.any():
            # the C loop: a dropped slot receives the last box (which is then examined at that slot)
            # and the array shrinks. Net effect: the first holes are filled, left to right, by the
            # surviving boxes taken from the end of the array, right to left.
            keep_rel = ~drop
            M = int(np.count_nonzero(keep_rel))
            rel = np.arange(drop.size)
            holes = rel[:M][drop[:M]]
            donors = rel[M:][keep_rel[M:]][::-1]
            dst, src = holes + i + 1, donors + i + 1
            C[:, dst] = C[:, src]
            S[dst] = S[src]
            ind[dst] = ind[src]
            n = i + 1 + M
        i += 1
    return SoftNMSResult(ind[:n].copy(), S[:n].copy())


# --------------------------------------------------------------------------------------------------
# ONNX NonMaxSuppression
# --------------------------------------------------------------------------------------------------

def onnx_non_max_suppression(boxes, scores, max_output_boxes_per_class=0, iou_threshold=0.0,
                             score_threshold=None, *, center_point_box=0):
    """The ONNX ``NonMaxSuppression`` operator (opset 10/11), with onnxruntime's exact semantics.

    Parameters
    ----------
    boxes : ndarray, shape (B, N, 4)
        ``center_point_box=0``: ``[y1, x1, y2, x2]``, either diagonal (corners are min/max-sorted
        per axis; since IoU is symmetric in x and y, ``[x1, y1, x2, y2]`` works too, which is what
        torchvision's exporter feeds). ``center_point_box=1``: ``[x_center, y_center, w, h]``,
        converted to corners as ``c -+ w / 2`` without sorting.
    scores : ndarray, shape (B, C, N)
    max_output_boxes_per_class : int
        At most this many boxes per (batch, class). **0 (the ONNX default) selects nothing**;
        negative values count as 0 (onnx.reference). torchvision's exporter passes ``sys.maxsize``.
    iou_threshold : float in [0, 1]
        A candidate is dropped when its IoU with a selected box is **strictly greater** (equal is
        kept). onnxruntime rejects values outside [0, 1].
    score_threshold : float, optional
        When given, only boxes with score **strictly greater** than it are candidates (a score equal
        to the threshold is dropped, TV11). ``None``: no score filter (negative scores are fine).
    center_point_box : {0, 1}

    Returns
    -------
    ndarray of int64, shape (K, 3)
        Rows ``[batch, class, box]``, grouped by batch, then class, then selection order.

    Notes
    -----
    Per (batch, class): candidates sorted by score descending, **ties to the lower box index**
    (onnx.reference ``BoxInfo.__lt__``, onnxruntime's heap); greedy selection. A pair suppresses only
    if the intersection is positive on both axes, both areas and the union are positive, and
    ``inter / union > iou_threshold`` (onnxruntime ``SuppressByIOU``): zero-area boxes never suppress
    and are never suppressed. Float32 inputs are computed in float32 with float32 thresholds (the
    operator takes them as float tensors), so results equal onnxruntime's; float64 inputs give the
    float64 answer. NaN is rejected (the heap order would be undefined).
    """
    b = _checks.as_array(boxes, "boxes")
    if b.ndim != 3 or b.shape[2] != 4:
        raise ValueError(f"`boxes` must have shape (B, N, 4); got {b.shape}")
    s = _checks.as_array(scores, "scores")
    if s.ndim != 3 or s.shape[0] != b.shape[0] or s.shape[2] != b.shape[1]:
        raise ValueError(f"`scores` must have shape (B, C, N) = ({b.shape[0]}, C, {b.shape[1]}) to match "
                         f"`boxes`; got {s.shape}")
    b = _checks.as_float_array(b, "boxes")
    s = _checks.as_float_array(s, "scores", finite=False)
    _checks.check_finite(s, "scores", allow_inf=True)
    k_max = max(_checks.check_int(max_output_boxes_per_class, "max_output_boxes_per_class"), 0)
    thr = _checks.check_probability(iou_threshold, "iou_threshold")
    sthr = None if score_threshold is None else _checks.check_real(score_threshold, "score_threshold")
    cpb = _checks.check_int(center_point_box, "center_point_box", low=0, high=1)
    B, C, _ = s.shape
    out = []
    if k_max == 0:
        return np.zeros((0, 3), dtype=np.int64)
    for bi in range(B):
        bb = b[bi]
        if cpb == 1:
            two = bb.dtype.type(2)
            hw, hh = bb[:, 2] / two, bb[:, 3] / two
            bb = np.stack([bb[:, 0] - hw, bb[:, 1] - hh, bb[:, 0] + hw, bb[:, 1] + hh], axis=1)
        for ci in range(C):                       # loop over (batch, class) pairs
            sc = s[bi, ci]
            cand = np.arange(len(sc)) if sthr is None else np.flatnonzero(sc > sc.dtype.type(sthr))
            order = cand[descending_order(sc[cand], ties="lowest_index")]
            g = _prepare(bb[order], "any", thr, False, "working", normalize=(cpb == 0))
            keep = order[_walk(g, allow_sweep=True)] if len(order) else order
            keep = keep[:k_max]
            rows = np.empty((len(keep), 3), dtype=np.int64)
            rows[:, 0], rows[:, 1], rows[:, 2] = bi, ci, keep
            out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# detector post-processing
# --------------------------------------------------------------------------------------------------

class Detections(NamedTuple):
    """Final detections of one image.

    boxes : ndarray, shape (K, 4), xyxy
    scores : ndarray, shape (K,)
    labels : ndarray of int64, shape (K,)
        Class index (``style="retinanet"``), FPN level (``style="rpn"``), or as given.
    """
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow (as refdet.layers.sigmoid_forward)."""
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, one / (one + e), e / (one + e))


def _top_k(values, k):
    """Indices of the ``k`` largest ``values``, highest first, ties to the lower index."""
    order = descending_order(values, ties="lowest_index")
    return order[:k]


def _as_levels(x, name, last):
    """A list of 2-D arrays (one per level) or a single 2-D array."""
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)):
        x = [x]
    out = []
    for i, a in enumerate(x):
        arr = _checks.as_array(a, f"{name}[{i}]")
        if last == 1 and arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or (last is not None and arr.shape[1] != last):
            want = f"(N, {last})" if last is not None else "(N, K)"
            raise ValueError(f"`{name}[{i}]` must have shape {want}; got {arr.shape}")
        out.append(arr)
    return out


def postprocess_detections(cls_logits, box_deltas, anchors, image_size, *, style="retinanet",
                           score_threshold=None, topk_candidates=1000, nms_threshold=None,
                           detections_per_image=None, min_size=None, weights=(1.0, 1.0, 1.0, 1.0),
                           clamp=math.log(1000.0 / 16), coordinate_trick=False, convention="torchvision"):
    """Turn one image's head outputs into detections, as torchvision's inference does.

    ``style="retinanet"`` (torchvision ``RetinaNet.postprocess_detections``, ``retinanet.py``
    509-571), for each FPN level:

    1. ``scores = sigmoid(logits).ravel()``: flat index ``anchor * K + class`` (row-major);
    2. keep ``scores > score_threshold`` (strict; default 0.05);
    3. keep the ``min(topk_candidates, kept)`` best (``torch.topk``; ties: lower flat index first,
       torch.topk leaves tie order unspecified);
    4. ``anchor = flat // K``, ``label = flat % K``; decode the anchor's deltas
       (:func:`refdet.box_coder.decode_boxes`, ``weights``, ``clamp``) and clip to the image;

    then over all levels: class-aware NMS (:func:`batched_nms` with ``nms_threshold``, default 0.5)
    and the first ``detections_per_image`` (default 300).

    ``style="rpn"`` (torchvision ``RegionProposalNetwork.forward`` + ``filter_proposals``,
    ``rpn.py`` 242-297): decode every anchor; per level keep the ``min(topk_candidates, N_l)``
    largest objectness **logits** (``pre_nms_top_n``); ``sigmoid``; clip; remove boxes narrower or
    shorter than ``min_size`` (default 1e-3); keep ``score >= score_threshold`` (inclusive, "for
    backwards compatibility"; default 0.0); NMS per level (``nms_threshold`` default 0.7); the first
    ``detections_per_image`` (``post_nms_top_n``, default 1000). Labels are the level indices.

    Parameters
    ----------
    cls_logits : list of ndarray, one per level, shape (N_l, K)
        Classification logits per anchor (RPN: objectness, shape (N_l,) or (N_l, 1)). Anchors are
        flattened ``(y, x, a)`` within a level, as ``refdet.heads`` / torchvision produce them.
    box_deltas : list of ndarray, one per level, shape (N_l, 4)
    anchors : list of ndarray, one per level, shape (N_l, 4), xyxy
    image_size : (H, W)
    min_size : float, optional
        Remove boxes with ``w < min_size`` or ``h < min_size`` after clipping (RetinaNet: no filter).
    coordinate_trick : {False, True, "torchvision"}
        Passed to :func:`batched_nms`; ``"torchvision"`` reproduces torchvision bit for bit.
    convention : str
        For the box decoding, clipping and NMS knobs.

    Returns
    -------
    Detections(boxes, scores, labels)
        Highest score first.
    """
    from refdet import box_coder as _bc   # imported here: nms must import even when box_coder cannot
    from refdet import boxes as _boxes

    _checks.check_choice(style, "style", ("retinanet", "rpn"))
    rpn = style == "rpn"
    if score_threshold is None:
        score_threshold = 0.0 if rpn else 0.05
    if nms_threshold is None:
        nms_threshold = 0.7 if rpn else 0.5
    if detections_per_image is None:
        detections_per_image = 1000 if rpn else 300
    if min_size is None and rpn:
        min_size = 1e-3
    logits = _as_levels(cls_logits, "cls_logits", 1 if rpn else None)
    deltas = _as_levels(box_deltas, "box_deltas", 4)
    anc = _as_levels(anchors, "anchors", 4)
    if not (len(logits) == len(deltas) == len(anc)):
        raise ValueError(f"`cls_logits`, `box_deltas` and `anchors` must have one entry per level; got "
                         f"{len(logits)}, {len(deltas)} and {len(anc)}")
    for lvl, (lg, d, a) in enumerate(zip(logits, deltas, anc)):
        if not (len(lg) == len(d) == len(a)):
            raise ValueError(f"level {lvl}: `cls_logits`, `box_deltas` and `anchors` must have the same "
                             f"number of anchors; got {len(lg)}, {len(d)} and {len(a)}")
    _checks.check_image_size(image_size)
    sthr = _checks.check_real(score_threshold, "score_threshold")
    k_top = _checks.check_int(topk_candidates, "topk_candidates", low=0)
    n_det = _checks.check_int(detections_per_image, "detections_per_image", low=0)
    _checks.check_real(nms_threshold, "nms_threshold")

    all_boxes, all_scores, all_labels = [], [], []
    for lvl, (lg, d, a) in enumerate(zip(logits, deltas, anc)):        # loop over levels
        lg = _checks.as_float_array(lg, f"cls_logits[{lvl}]", finite=False)
        _checks.check_finite(lg, f"cls_logits[{lvl}]", allow_inf=True)
        if rpn:
            lg = lg[:, 0]
            top = _top_k(lg, min(k_top, len(lg)))                        # top-k on logits
            boxes = _bc.decode_boxes(d[top], a[top], weights=weights, clamp=clamp, convention=convention)
            scores = _sigmoid(lg[top])
            labels = np.full(len(top), lvl, dtype=np.int64)
        else:
            K = lg.shape[1]
            flat = _sigmoid(lg).ravel()                                  # index anchor * K + class
            cand = np.flatnonzero(flat > flat.dtype.type(sthr))
            top = cand[_top_k(flat[cand], min(k_top, len(cand)))]
            scores = flat[top]
            anchor_idx, labels = top // K, (top % K).astype(np.int64)
            boxes = _bc.decode_boxes(d[anchor_idx], a[anchor_idx], weights=weights, clamp=clamp,
                                     convention=convention)
        boxes = _boxes.clip_boxes_to_image(boxes, image_size, convention=convention)
        all_boxes.append(boxes)
        all_scores.append(scores)
        all_labels.append(labels)
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    labels = np.concatenate(all_labels) if all_labels else np.zeros(0, dtype=np.int64)
    if rpn or min_size is not None:
        if min_size is not None:
            k = _boxes.remove_small_boxes(boxes, min_size, convention=convention)
            boxes, scores, labels = boxes[k], scores[k], labels[k]
        if rpn:
            k = np.flatnonzero(scores >= scores.dtype.type(sthr))
            boxes, scores, labels = boxes[k], scores[k], labels[k]
    keep = batched_nms(boxes, scores, labels, nms_threshold, convention=convention,
                       coordinate_trick=coordinate_trick)[:n_det]
    return Detections(boxes[keep], scores[keep], labels[keep])


def merge_multiscale_detections(detections, scales, iou_threshold=0.5, *, max_detections=None,
                                class_aware=True, convention="torchvision"):
    """Merge the detections of an image pyramid: rescale every scale's boxes to the original image
    and run (class-aware) NMS over the union — the multi-scale testing baseline (e.g. Fast R-CNN,
    SNIP/"image pyramid" evaluation).

    Parameters
    ----------
    detections : list of (boxes (N_s, 4), scores (N_s,), labels (N_s,))
        One entry per scale, boxes in the coordinates of the resized image (any
        :class:`Detections` works).
    scales : list of float > 0, one per entry
        The resize factor of each scale: an image resized by ``scale`` has boxes ``scale`` times
        larger, so boxes are divided by it. A pair ``(sy, sx)`` scales y and x separately.
    iou_threshold : float
    max_detections : int, optional
        Keep at most this many (highest scores first).
    class_aware : bool
        ``True``: :func:`batched_nms` over labels; ``False``: :func:`nms` over all boxes.

    Returns
    -------
    Detections(boxes, scores, labels)
        In the original image's coordinates, highest score first; ties go to the earlier scale,
        then the lower index (the concatenation order).
    """
    if not isinstance(detections, (list, tuple)):
        raise TypeError(f"`detections` must be a list of (boxes, scores, labels); got {type(detections).__name__}")
    if not isinstance(scales, (list, tuple, np.ndarray)) or len(scales) != len(detections):
        raise ValueError(f"`scales` must have one entry per element of `detections` ({len(detections)}); "
                         f"got {scales!r}")
    thr = _checks.check_real(iou_threshold, "iou_threshold")
    bs, ss, ls = [], [], []
    for i, (det, sc) in enumerate(zip(detections, scales)):
        if not isinstance(det, (tuple, list)) or len(det) != 3:
            raise TypeError(f"`detections[{i}]` must be (boxes, scores, labels); got {type(det).__name__}")
        b = _checks.as_boxes(det[0], f"detections[{i}].boxes")
        s = _checks.as_scores(det[1], f"detections[{i}].scores", n=len(b))
        lab = _checks.as_int_labels(det[2], f"detections[{i}].labels", n=len(b))
        if np.ndim(sc) == 0:
            sy = sx = _checks.check_positive(sc, f"scales[{i}]")
        else:
            if len(sc) != 2:
                raise ValueError(f"`scales[{i}]` must be a number or a pair (sy, sx); got {sc!r}")
            sy = _checks.check_positive(sc[0], f"scales[{i}][0]")
            sx = _checks.check_positive(sc[1], f"scales[{i}][1]")
        f = np.array([sx, sy, sx, sy], dtype=b.dtype)
        bs.append(b / f)
        ss.append(s)
        ls.append(lab)
    if not bs:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    boxes, scores, labels = np.concatenate(bs), np.concatenate(ss), np.concatenate(ls)
    if class_aware:
        keep = batched_nms(boxes, scores, labels, thr, convention=convention)
    else:
        keep = nms(boxes, scores, thr, convention=convention)
    if max_detections is not None:
        keep = keep[:_checks.check_int(max_detections, "max_detections", low=0)]
    return Detections(boxes[keep], scores[keep], labels[keep])
