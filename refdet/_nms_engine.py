"""The NMS speed engine (private): greedy suppression without an N x N matrix, and Soft-NMS passes.

Public callers are :mod:`refdet.nms` (validation, conventions, the contract) and
:mod:`refdet.postprocess`. Everything here takes inputs that are already validated, in the working
dtype, and **already in processing order** (highest score first, ties broken by the convention):
position ``p`` in the arrays below is the ``p``-th box the greedy loop visits. The readable
version of what this module computes is :mod:`refdet.reference.nms`;
``tests/test_reference_nms.py`` holds the two equal index for index.

The greedy loop everyone draws (``refdet.reference.nms.nms``)::

    for each box p in processing order:
        if no kept box suppresses p: keep p

``p`` is kept iff none of the kept boxes *before* it suppresses it. Everything below is a way of
deciding that rule for many boxes at once without ever forming all N^2 pairs.

Pieces, in the order a call meets them
--------------------------------------
:func:`prepare`
    Boxes -> a (5, N) coordinate stack ``[x1, y1, x2, y2, area]`` and the threshold as a scalar
    of the working dtype (:func:`_cmp_threshold`: for float32 IoUs compared with a double
    threshold, the float32 neighbour of the threshold on the correct side gives exactly the C++
    comparison ``(double)ovr > thr`` with no float64 temporaries).
:func:`_suppress`
    "Does a suppress b?" for broadcast stacks, in the framework's order of operations (torchvision
    ``nms_kernel.cpp``; +1 widths; onnxruntime ``SuppressByIOU`` guards for ``kind="any"``). This
    is the one place the arithmetic lives; :func:`_row_hits` is the same arithmetic restricted to
    boxes that overlap the suppressor (the clamps are then no-ops).
:func:`walk` (block walk)
    Take the first ``BLOCK`` candidates. None of them is suppressed by a box kept earlier (those
    were already removed from the candidate list), so their fate depends only on each other:
    :func:`_resolve_dense` settles the block on a T x T tile. Then every kept box of the block
    removes from the remaining candidates the boxes it suppresses. By induction the candidate list
    is always "boxes not suppressed by any kept box decided so far", and the decisions for the
    processed prefix are final: the greedy answer.
:func:`_resolve_dense`
    Greedy inside a block by rounds: a box whose every suppressor is already suppressed is kept
    (that is the greedy rule); a box with a kept suppressor is suppressed. The first undecided box
    has only decided suppressors, so each round decides at least one box.
:func:`sweep`
    When most of a block survives (spread boxes, few suppressions), rows per kept box cost
    O(N) each. A pair whose x-extents do not overlap has no intersection, hence IoU 0 (or NaN), and
    cannot suppress when the comparison fails at IoU 0 (``thr >= 0`` strict, ``thr > 0``
    inclusive: :func:`sweep_allowed`; the ONNX guards never suppress such a pair). So only pairs
    found by an x-sorted window (:func:`_x_window`) are tested, giving a sparse edge list
    ``u suppresses v`` (``u < v``). The same rounds as in :func:`_resolve_dense` run on the edges;
    edges that can no longer matter are dropped each round. After ``ROUNDS`` rounds the still
    undecided boxes (long alternating chains) have no kept suppressor (it would have hit them), so
    their fate depends only on each other: a :func:`walk` over them finishes the job.
:func:`greedy`
    The entry point. Class-aware NMS (``groups``) is the same loop where only boxes of one group
    suppress each other: one sweep over all groups when few pairs overlap (the window stops at a
    group boundary), else a walk per group.
:func:`soft_nms_passes`
    Soft-NMS in the C loops' working-array order, one vectorised decay pass per selected box.
:func:`descending`
    The processing order itself (stable descending sort with NaN first, or the reversed stable
    ascending sort), with a fast key sort for float32.

Loops run over blocks, kept boxes, rounds and groups, never over all boxes. Tunables are module
constants so tests can force every path on small inputs (``tests/test_nms.py``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

BLOCK = 64            # boxes taken from the head of the candidate list per step
TILE = 1 << 15        # a (kept x candidates) tile up to this size is done in one go (cache-sized)
CHUNK = 1 << 18       # pairs per chunk of the sweep (~20 MiB of temporaries)
SWEEP_MIN = 4096      # below this many candidates the block walk is always cheap enough
ROUNDS = 12           # resolution rounds on the sparse graph before the leftovers go to the walk
_KEY_INDEX_LIMIT = 1 << 32   # descending()'s float32 keys hold the index in their low 32 bits


# --------------------------------------------------------------------------------------------------
# processing order
# --------------------------------------------------------------------------------------------------

def descending(s: np.ndarray, ties: str) -> np.ndarray:
    """Indices sorting the 1-D float array ``s`` high to low; see :func:`refdet.nms.descending_order`
    for the contract (NaN first; ``ties`` picks lowest or highest index first; -0.0 ties 0.0)."""
    n = s.shape[0]
    if s.dtype in (np.float32, np.float16) and n < _KEY_INDEX_LIMIT:
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
        # a plain (SIMD) sort is already stable when no two scores tie and none is NaN
        neg = -s if ties == "lowest_index" else s
        order = np.argsort(neg)
        ranked = neg[order]
        if not (ranked[1:] == ranked[:-1]).any() and not np.isnan(ranked[-1]):
            return (order if ties == "lowest_index" else order[::-1]).astype(np.int64)
    if ties == "highest_index":
        return np.argsort(s, kind="stable")[::-1].astype(np.int64)    # NaN last, reversed: first
    order = np.argsort(-s, kind="stable")       # NaN (and -NaN) go last in NumPy's sort
    if s.dtype.kind == "f":
        nan = np.isnan(s[order])
        if nan.any():
            order = np.concatenate([order[nan], order[~nan]])
    return order.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# geometry and the pair test
# --------------------------------------------------------------------------------------------------

class Geom(NamedTuple):
    """Prepared IoU inputs in processing order: ``C`` = (5, N) [x1, y1, x2, y2, area]."""
    C: np.ndarray
    kind: str          # "tv" (continuous), "plus_one" (legacy +1 widths) or "any" (ONNX/TF corners)
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


def prepare(b: np.ndarray, kind: str, thr: float, inclusive: bool, threshold_dtype: str, *,
            normalize: bool = True) -> Geom:
    """(N, 4) xyxy boxes (working dtype, processing order) -> :class:`Geom`.

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
    return Geom(C, kind, _cmp_threshold(thr, dt, inclusive, threshold_dtype), inclusive)


def _suppress(A, B, kind, thr, inclusive):
    """Does box ``a`` suppress box ``b``? ``A``, ``B``: (5, ...) broadcastable coordinate stacks.

    torchvision ``nms_kernel.cpp``, operation for operation::

        w = max(0, min(x2_a, x2_b) - max(x1_a, x1_b))      (+1 before the clamp for "plus_one")
        inter = w * h;  ovr = inter / ((area_a + area_b) - inter);  suppress iff ovr > thr

    ``kind="any"``: onnxruntime ``SuppressByIOU``: no overlap, a non-positive area or union never
    suppresses. With the widths clamped at 0, ``inter > 0`` is that whole guard: it fails for
    pairs apart on either axis and for an intersection whose area underflows to 0, and it implies
    ``area > 0`` for both boxes (each covers the intersection; rounding is monotone) and
    ``union > 0``. A 0/0 IoU is NaN and fails every comparison.
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
        np.maximum(w, 0, out=w)
        np.maximum(h, 0, out=h)
        inter = w * h
        if kind == "any":
            overlap = inter > 0                             # onnxruntime's guards (see above)
        union = A[4] + B[4]                                 # (area_a + area_b) - inter
        union -= inter
        inter /= union                                      # ovr; 0/0 = NaN never suppresses
        hit = (inter >= thr) if inclusive else (inter > thr)
        if kind == "any":
            hit &= overlap
        return hit


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
    if kind == "any":                                    # the ONNX guards: the pair test itself
        return cand[_suppress(t, np.take(tail, cand, axis=1), kind, thr, inclusive)]
    inter = w[cand]
    inter *= h[cand]                                     # w * h
    union = tail[4][cand]
    union += t[4]                                        # area_t + area_j (commutative: same bits)
    union -= inter
    inter /= union                                       # union > 0: both boxes have w, h > 0
    return cand[(inter >= thr) if inclusive else (inter > thr)]


# --------------------------------------------------------------------------------------------------
# block walk
# --------------------------------------------------------------------------------------------------

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


def walk(g: Geom, pos: Optional[np.ndarray] = None, *, allow_sweep: bool = True,
         switch: bool = True) -> np.ndarray:
    """Block walk over the candidates of ``g`` (optionally only the positions ``pos``, increasing).

    ``allow_sweep``: a pair with no intersection cannot suppress, so the per-row x/y prefilter
    (:func:`_row_hits`) and the hand-over to :func:`sweep` are exact. ``switch``: hand over to the
    sweep when most boxes of a block survive and many candidates remain.

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
    prefilter = allow_sweep
    out = []
    while pos.size:
        T = pos.size if pos.size <= 2 * BLOCK else BLOCK  # pragma: no mutate (any T in 1..N: same kept set)
        head = rem[:, :T]
        M = _suppress(head[:, :, None], head[:, None, :], kind, thr, inc)      # (T, T)
        kb = _resolve_dense(M)
        out.append(pos[:T][kb])
        if pos.size == T:
            break
        tail = rem[:, T:]
        tpos = pos[T:]
        kept_rows = np.flatnonzero(kb)
        if len(kept_rows) * tail.shape[1] <= TILE:  # pragma: no mutate (one (k, R) tile or row by row: both exact)
            alive = np.flatnonzero(
                ~_suppress(head[:, kept_rows, None], tail[:, None, :], kind, thr, inc).any(axis=0))
            tail, tpos = np.take(tail, alive, axis=1), tpos[alive]
        else:
            dead = np.zeros(tail.shape[1], dtype=bool)
            for i in kept_rows:                            # loop over the kept boxes of the block
                t = head[:, i]
                if prefilter:
                    dead[_row_hits(t, tail, kind, thr, inc)] = True
                else:
                    dead |= _suppress(t, tail, kind, thr, inc)     # (R,)
                if 16 * np.count_nonzero(dead) > dead.size:  # pragma: no mutate (compact once 1/16 is gone: speed)
                    live = np.flatnonzero(~dead)
                    tail, tpos = np.take(tail, live, axis=1), tpos[live]
                    dead = np.zeros(tail.shape[1], dtype=bool)
            if dead.any():
                live = np.flatnonzero(~dead)
                tail, tpos = np.take(tail, live, axis=1), tpos[live]
        frac_kept = np.count_nonzero(kb) / T  # pragma: no mutate (read only by the walk-or-sweep choice: both exact)
        rem, pos = tail, tpos
        if allow_sweep and switch and pos.size > SWEEP_MIN and frac_kept >= 0.5 and \
                _sweep_worthwhile(rem, kind, frac_kept):
            out.append(pos[sweep(Geom(rem, kind, thr, inc))])
            break
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# sweep over the sparse graph of x-overlapping pairs
# --------------------------------------------------------------------------------------------------

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
    _, cnt = _x_window(C, kind)  # pragma: no mutate (a speed heuristic: the walk and the sweep are both exact)
    R = C.shape[1]
    return cnt.sum() * 4 < frac_kept * R * R / 2  # pragma: no mutate (a speed heuristic: walk and sweep both exact)


def sweep(g: Geom, groups: Optional[np.ndarray] = None, window=None) -> np.ndarray:
    """Greedy NMS through the sparse graph of x-overlapping pairs (the caller guarantees that a pair
    with no intersection cannot suppress: :func:`sweep_allowed`). With ``groups`` (one integer per
    candidate), only pairs of the same group are considered. Returns kept positions (increasing).

    Resolution runs in rounds (a box whose suppressors are all suppressed is kept; a box with a kept
    suppressor is suppressed); boxes still undecided after ``ROUNDS`` rounds (long alternating
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
        # rows [start_row, stop_row) hold about CHUNK pairs
        base = int(ends[start_row - 1]) if start_row else 0
        stop_row = int(np.searchsorted(ends, base + CHUNK, side="right"))
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
            us.append(np.minimum(a, b))        # the earlier-visited box is the suppressor
            vs.append(np.maximum(a, b))
        start_row = stop_row
    u = np.concatenate(us) if us else np.zeros(0, dtype=np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, dtype=np.int64)
    kept = np.zeros(R, dtype=bool)
    supp = np.zeros(R, dtype=bool)
    for _ in range(ROUNDS):
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
            kept[walk(g, left, switch=False)] = True
        else:
            for seg in segments(groups[left]):
                kept[walk(g, left[seg], switch=False)] = True
    return np.flatnonzero(kept)


def segments(groups: np.ndarray) -> list:
    """Index arrays (increasing) of the positions of each distinct value of ``groups``."""
    by = np.argsort(groups, kind="stable")
    gs = groups[by]
    cuts = np.flatnonzero(gs[1:] != gs[:-1]) + 1
    return np.split(by, cuts)


def sweep_allowed(thr: float, inclusive: bool) -> bool:
    """Whether an IoU of 0 fails the comparison, i.e. a pair with no intersection cannot suppress
    (what the x/y prefilter and the sweep rely on)."""
    return (thr > 0) if inclusive else (thr >= 0)


def greedy(b: np.ndarray, thr: float, *, kind: str, inclusive: bool, threshold_dtype: str,
           groups: Optional[np.ndarray] = None, normalize: bool = True) -> np.ndarray:
    """Kept positions (increasing) for boxes ``b`` (N, 4) already in processing order.

    ``kind``: "tv", "plus_one" or "any" (see :class:`Geom`). ``groups`` (int64 per box): boxes only
    suppress boxes of their own group (exact class-aware NMS). ``normalize``: see :func:`prepare`.
    """
    g = prepare(b, kind, thr, inclusive, threshold_dtype, normalize=normalize)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    sweep_ok = sweep_allowed(thr, inclusive) or kind == "any"
    if groups is None:
        return walk(g, allow_sweep=sweep_ok)
    if sweep_ok:
        xs, cnt = _x_window(g.C, kind, groups)
        # few overlapping pairs: one sweep for all groups; else a walk per group (both exact)
        if cnt.sum() <= 32 * len(b):  # pragma: no mutate (a speed heuristic: the sweep and the walks are both exact)
            return sweep(g, groups, (xs, cnt))
    return np.concatenate([walk(g, seg, allow_sweep=sweep_ok) for seg in segments(groups)])


# --------------------------------------------------------------------------------------------------
# Soft-NMS
# --------------------------------------------------------------------------------------------------

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


def soft_nms_passes(b: np.ndarray, sc: np.ndarray, *, method: str, sigma: float, iou_threshold: float,
                    score_threshold: float, inclusive: bool, plus_one: bool, gaussian_denominator: str,
                    discard: str, hard_above_threshold: bool):
    """Soft-NMS with the selection order of the C loops (Detectron1 ``cython_nms.soft_nms``, mmcv
    ``softnms_cpu``), one vectorised decay pass per selected box. ``b``, ``sc``: validated, same
    dtype. Returns ``(indices, scores)``.

    The C loops keep the boxes in a working array: the maximum of slots ``i..n-1`` is found by a
    strict ``<`` scan (first maximum wins, a NaN never takes over) and swapped into slot ``i``;
    every later box is decayed; a dropped box's slot receives the **last** box and the array
    shrinks. Each pass here decays all later slots at once and then applies the same permutation
    the C loop's drops would have made.
    """
    dt = b.dtype
    kind = "plus_one" if plus_one else "tv"
    g = prepare(b, kind, 0.0, False, "working")
    C = g.C.copy()                               # working array: rows x1, y1, x2, y2, area
    S = sc.copy()                                # current (decayed) scores (sc has dtype dt)
    ind = np.arange(len(b), dtype=np.int64)
    thr_t, smin_t, one, zero = dt.type(iou_threshold), dt.type(score_threshold), dt.type(1), dt.type(0)
    sig_t = dt.type(sigma)
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
        cond = (iou >= thr_t) if inclusive else (iou > thr_t)
        if method == "linear":
            w = np.where(cond, one - iou, one)
        elif method == "hard":
            w = np.where(cond, zero, one)
        else:
            if gaussian_denominator == "sigma":
                w = np.exp(-(iou * iou) / sig_t)         # mmcv: exp(-(ovr * ovr) / sigma)
            else:
                w = np.exp((scale * iou) * iou)          # TF: exp(scale * sim * sim), scale = -0.5/sigma
            if hard_above_threshold:
                w = np.where(iou > thr_t, zero, w)
        if discard == "overlapping":                     # Detectron1 touches overlapping boxes only
            w = np.where(overlaps, w, one)
        seg = S[i + 1:n] * w
        drop = seg < smin_t
        if discard == "overlapping":
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
    return ind[:n].copy(), S[:n].copy()
