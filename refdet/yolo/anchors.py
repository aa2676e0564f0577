"""Anchor design for the YOLO family: dimension clusters, autoanchor, anchor order, anchor points.

Anchor-based YOLOs (v2-v7) keep a few box *shapes* per pyramid level (``A`` templates of ``(w, h)``
in pixels) and place them at every cell; the anchor-free ones (YOLOX, ultralytics v8+) keep only the
cell centres (*anchor points*). This module designs the shapes and lays out the points:

* :func:`dimension_clusters` -- YOLOv2's k-means over ground-truth ``(w, h)`` with the distance
  ``d(box, centroid) = 1 - IoU(box, centroid)`` of boxes sharing a centre (YOLO9000, section 2,
  "Dimension Clusters"; :func:`wh_iou` is that IoU).
* :func:`autoanchor_metric`, :func:`anchor_fitness`, :func:`kmean_anchors` -- YOLOv5's autoanchor
  (``utils/autoanchor.py``): the ratio metric ``min(r, 1/r)`` with threshold ``1/thr`` (``thr = 4``,
  the ``anchor_t`` of training), best possible recall (BPR), anchors above threshold (AAT), and the
  k-means + genetic evolution that proposes new anchors.
* :func:`check_anchor_order` -- YOLOv5's check that anchor areas grow with the strides.
* :func:`make_anchors` -- ultralytics ``utils/tal.py make_anchors``: anchor points at
  ``(x + 0.5, y + 0.5)`` in grid units, level by level, row-major, with a stride per point.

Every random choice takes ``rng=`` (``np.random.default_rng``); a seed gives the same anchors on
every run. Constants: :data:`YOLOV3_ANCHORS` (COCO, pixels, also YOLOv5/v7 P3-P5) and
:data:`YOLOV2_VOC_ANCHORS` (grid units of the 13 x 13 map).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet.yolo import _common

__all__ = [
    "YOLOV3_ANCHORS", "YOLOV2_VOC_ANCHORS",
    "wh_iou", "dimension_clusters", "DimensionClusters",
    "autoanchor_metric", "AnchorFit", "anchor_fitness", "kmean_anchors", "EvolvedAnchors",
    "check_anchor_order", "make_anchors",
]

#: YOLOv3 COCO anchors (darknet ``yolov3.cfg``; also YOLOv5/v7 ``P3-P5``): (L=3, A=3, 2) pixels,
#: level order P3/8, P4/16, P5/32.
YOLOV3_ANCHORS = np.array([[[10, 13], [16, 30], [33, 23]],
                           [[30, 61], [62, 45], [59, 119]],
                           [[116, 90], [156, 198], [373, 326]]], dtype=np.float64)
YOLOV3_ANCHORS.setflags(write=False)

#: YOLOv2 VOC anchors (darknet ``yolov2-voc.cfg``), (5, 2) in units of the 13 x 13 grid (stride 32).
YOLOV2_VOC_ANCHORS = np.array([[1.3221, 1.73145], [3.19275, 4.00944], [5.05587, 8.09892],
                               [9.47112, 4.84053], [11.2364, 10.0071]], dtype=np.float64)
YOLOV2_VOC_ANCHORS.setflags(write=False)


def _wh(x, name):
    arr = _common.floats(x, name)
    if arr.ndim != 2 or arr.shape[1] != 2:
        if arr.ndim == 1 and arr.shape[0] == 0:
            return arr.reshape(0, 2)
        raise ValueError(f"`{name}` must have shape (N, 2) (widths, heights); got {arr.shape}")
    return arr


def _positive_wh(x, name):
    arr = _wh(x, name)
    if arr.size and (arr <= 0).any():
        i = tuple(int(k) for k in np.argwhere(arr <= 0)[0])
        raise ValueError(f"`{name}` must hold positive widths and heights; got {arr[i]} at index {i}")
    return arr


# ------------------------------------------------------------------------------------------------
# YOLOv2 dimension clusters
# ------------------------------------------------------------------------------------------------

def wh_iou(wh1, wh2) -> np.ndarray:
    """IoU of boxes that share a centre, from their sizes only.

    ``IoU = min(w1, w2) min(h1, h2) / (w1 h1 + w2 h2 - min(w1, w2) min(h1, h2))``.

    Parameters
    ----------
    wh1 : ndarray, shape (N, 2)
    wh2 : ndarray, shape (K, 2)
        Widths and heights, >= 0.

    Returns
    -------
    ndarray, shape (N, K)
        In [0, 1]; 0 where both boxes have zero area (0/0 defined as 0).
    """
    a = _wh(wh1, "wh1")
    b = _wh(wh2, "wh2")
    dt = _common.common_dtype(a, b)
    a, b = _common.same_dtype(dt, a, b)
    if (a < 0).any() or (b < 0).any():
        raise ValueError("`wh1` and `wh2` must hold non-negative widths and heights")
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])  # (N, K)
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(dt)


class DimensionClusters(NamedTuple):
    """Result of :func:`dimension_clusters`.

    Attributes
    ----------
    anchors : ndarray, shape (k, 2)
        Centroid ``(w, h)``, sorted by area (smallest first; ties
        keep the order of the clusters' first member).
    assignment : ndarray of int64, shape (N,)
        Cluster of each box, indexing ``anchors``.
    mean_iou : float
        ``mean_i max_j IoU(box_i, anchor_j)`` (YOLO9000 Table 1's "Avg IOU").
    iterations : int
        Lloyd iterations run (the last one changed nothing, unless ``max_iter`` hit).
    """
    anchors: np.ndarray
    assignment: np.ndarray
    mean_iou: float
    iterations: int


def dimension_clusters(wh, k: int, *, rng=None, max_iter: int = 300, center: str = "mean") -> DimensionClusters:
    """YOLOv2 dimension clusters: k-means over box sizes with distance ``1 - IoU``.

    Lloyd's algorithm: start from ``k`` distinct boxes drawn by ``rng``; assign every box to the
    centroid of largest :func:`wh_iou` (smallest ``1 - IoU``; a tie goes to the lowest centroid
    index); move each centroid to the ``mean`` (paper: standard k-means) or ``median`` (a common
    variant) of its boxes; repeat until no assignment changes. A centroid that loses all its boxes
    stays where it is.

    Parameters
    ----------
    wh : ndarray, shape (N, 2)
        Ground-truth widths and heights (> 0), any unit (pixels, or fractions of the image).
    k : int
        Number of clusters, 1 <= k <= number of distinct sizes.
    rng : None, int or Generator
        Chooses the initial centroids (``rng.choice(N, k, replace=False)`` over the distinct sizes).
    max_iter : int
        Upper bound on Lloyd iterations.
    center : {"mean", "median"}

    Returns
    -------
    DimensionClusters
        ``anchors`` sorted by area, the assignment, the mean best IoU, the iterations run.

    Examples
    --------
    >>> wh = np.array([[10, 10], [11, 9], [100, 50], [98, 52]], dtype=float)
    >>> dimension_clusters(wh, 2, rng=0).anchors
    array([[10.5,  9.5],
           [99. , 51. ]])
    """
    x = _positive_wh(wh, "wh")
    k = _checks.check_int(k, "k", low=1)
    max_iter = _checks.check_int(max_iter, "max_iter", low=1)
    _checks.check_choice(center, "center", ("mean", "median"))
    uniq = np.unique(x, axis=0)
    if k > uniq.shape[0]:
        raise ValueError(f"`k` must be at most the number of distinct sizes in `wh` ({uniq.shape[0]}); got {k}")
    g = _checks.as_rng(rng)
    cent = uniq[np.sort(g.choice(uniq.shape[0], size=k, replace=False))].copy()
    assign = None
    it = 0
    for it in range(1, max_iter + 1):
        new = np.argmax(wh_iou(x, cent), axis=1)           # first max: the lowest centroid index
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        # one centroid per cluster: a loop over the k clusters (k is small), vectorised over boxes
        for j in range(k):
            members = x[assign == j]
            if members.shape[0]:
                cent[j] = members.mean(axis=0) if center == "mean" else np.median(members, axis=0)
    iou = wh_iou(x, cent)
    order = np.argsort(cent[:, 0] * cent[:, 1], kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return DimensionClusters(cent[order], rank[assign].astype(np.int64), float(iou.max(axis=1).mean()), it)


# ------------------------------------------------------------------------------------------------
# YOLOv5 autoanchor
# ------------------------------------------------------------------------------------------------

class AnchorFit(NamedTuple):
    """How well anchors fit a set of box sizes (YOLOv5 ``check_anchors`` / ``kmean_anchors``).

    Attributes
    ----------
    bpr : float
        Best possible recall: fraction of boxes whose best anchor passes ``x > 1/thr``.
    aat : float
        Anchors above threshold: mean number of anchors per box with ``x > 1/thr``.
    best : ndarray, shape (N,)
        ``max_j x_ij``.
    ratio : ndarray, shape (N, K)
        ``x_ij = min over (w, h) of min(r, 1/r)``, ``r = wh_i / anchor_j``.
    """
    bpr: float
    aat: float
    best: np.ndarray
    ratio: np.ndarray


def _ratio_metric(wh, k):
    r = wh[:, None, :] / k[None, :, :]                      # (N, K, 2)
    x = np.minimum(r, wh.dtype.type(1) / r).min(axis=2)      # (N, K): torch.min(r, 1 / r).min(2)
    return x


def autoanchor_metric(wh, anchors, *, thr: float = 4.0) -> AnchorFit:
    """YOLOv5's anchor-fit metric (``utils/autoanchor.py check_anchors.metric``).

    For box ``i`` and anchor ``j``: ``r = wh_i / anchor_j`` per side and
    ``x_ij = min(min(r_w, 1/r_w), min(r_h, 1/r_h))`` (1 for a perfect fit, -> 0 for a bad one). A box
    is *matched* by an anchor when ``x_ij > 1 / thr`` -- strictly, the complement of training's
    ``max(r, 1/r) < anchor_t`` test written the other way round (a ratio of exactly ``thr`` fails
    both). ``bpr = mean_i [max_j x_ij > 1/thr]`` and ``aat = mean_i sum_j [x_ij > 1/thr]``.

    Parameters
    ----------
    wh : ndarray, shape (N, 2)
        Box widths and heights in pixels (> 0).
    anchors : ndarray, shape (K, 2) or (L, A, 2)
        Anchor sizes in pixels (> 0); levels are flattened.
    thr : float
        ``anchor_t`` (YOLOv5 default 4.0), > 1.

    Returns
    -------
    AnchorFit
        ``bpr`` and ``aat`` as floats (NaN for N = 0), ``best`` (N,) and ``ratio`` (N, K).

    Notes
    -----
    YOLOv5 evaluates this in float32 (``torch.tensor(...).float()``); pass float32 arrays for its
    bits, float64 for the exact answer.
    """
    x_wh = _positive_wh(wh, "wh")
    k = _common.floats(anchors, "anchors")
    if k.ndim == 3 and k.shape[-1] == 2:
        k = k.reshape(-1, 2)
    k = _positive_wh(k, "anchors")
    if k.shape[0] == 0:
        raise ValueError("`anchors` must hold at least one anchor")
    thr = _checks.check_real(thr, "thr")
    if thr <= 1:
        raise ValueError(f"`thr` must be > 1 (a ratio threshold); got {thr}")
    dt = _common.common_dtype(x_wh, k)
    x_wh, k = _common.same_dtype(dt, x_wh, k)
    x = _ratio_metric(x_wh, k)
    t = dt.type(1) / dt.type(thr)
    best = x.max(axis=1) if x.shape[0] else np.zeros(0, dt)
    with np.errstate(invalid="ignore"):
        aat = float((x > t).astype(dt).sum(axis=1).mean()) if x.shape[0] else float("nan")
        bpr = float((best > t).astype(dt).mean()) if x.shape[0] else float("nan")
    return AnchorFit(bpr, aat, best, x)


def anchor_fitness(wh, anchors, *, thr: float = 4.0) -> float:
    """YOLOv5 ``kmean_anchors.anchor_fitness``: ``mean_i best_i * [best_i > 1/thr]``.

    ``best_i = max_j x_ij`` from :func:`autoanchor_metric`; boxes no anchor matches count 0. The
    genetic evolution of :func:`kmean_anchors` maximises it. NaN for N = 0.
    """
    fit = autoanchor_metric(wh, anchors, thr=thr)
    if fit.best.shape[0] == 0:
        return float("nan")
    t = fit.best.dtype.type(1) / fit.best.dtype.type(thr)
    return float((fit.best * (fit.best > t).astype(fit.best.dtype)).mean())


class EvolvedAnchors(NamedTuple):
    """Result of :func:`kmean_anchors`.

    Attributes
    ----------
    anchors : ndarray, shape (n, 2)
        Sorted by area (smallest first), pixels.
    fitness : float
        :func:`anchor_fitness` on the filtered sizes.
    bpr, aat : float
        :func:`autoanchor_metric` on all sizes (unfiltered, as YOLOv5 prints).
    initial : ndarray, shape (n, 2)
        The k-means (or random-init) anchors before evolution.
    kmeans_ok : bool
        False when k-means returned fewer than n centroids and YOLOv5's random
        initialisation ``sort(rand(2n)).reshape(n, 2) * img_size`` was used instead.
    """
    anchors: np.ndarray
    fitness: float
    bpr: float
    aat: float
    initial: np.ndarray
    kmeans_ok: bool


def kmean_anchors(wh, n: int = 9, *, img_size: float = 640, thr: float = 4.0, gen: int = 1000,
                  rng=None, kmeans_iter: int = 30, max_elements: Optional[int] = None) -> EvolvedAnchors:
    """YOLOv5 ``utils/autoanchor.py kmean_anchors``: k-means, then genetic evolution of anchors.

    1. Keep the sizes with at least one side >= 2 pixels (``(wh >= 2).any(1)``).
    2. Whiten by the per-side standard deviation ``s = wh.std(0)`` (population std, NumPy's), run
       ``scipy.cluster.vq.kmeans(wh / s, n, iter=kmeans_iter, rng=rng)`` and scale back by ``s``.
       If it returns fewer than ``n`` centroids (too few distinct sizes), start from
       ``sort(rng.random(2n)).reshape(n, 2) * img_size`` as YOLOv5 does.
    3. ``gen`` generations: mutate all anchors by ``v = clip((rng.random(shape) < 0.9) * rng.random()
       * rng.standard_normal(shape) * 0.1 + 1, 0.3, 3.0)`` (redrawn until some ``v != 1``),
       ``kg = clip(k * v, min=2.0)``; keep ``kg`` if its :func:`anchor_fitness` is strictly larger.
    4. Sort by area.

    Parameters
    ----------
    wh : ndarray, shape (N, 2)
        Box widths and heights in pixels at training resolution (> 0), N >= n after filtering.
    n : int
        Number of anchors (YOLOv5: 9 = 3 levels x 3).
    img_size : float
        Scale of the random initialisation fallback.
    thr : float
        ``anchor_t``.
    gen : int
        Generations of evolution (0: k-means only).
    rng : None, int or Generator
        Drives k-means initialisation (scipy's ``rng``), the fallback and every mutation: the
        result is a function of ``(wh, n, ..., rng)``.
    kmeans_iter : int
        scipy ``kmeans(iter=...)``: number of k-means restarts, the best distortion kept.
    max_elements : int, optional
        Cap on the loop counts ``gen`` and ``kmeans_iter`` (default
        :data:`refdet._checks.MAX_ELEMENTS`): a larger count is a ValueError before the loop starts.

    Returns
    -------
    EvolvedAnchors

    Notes
    -----
    YOLOv5 draws from NumPy's global ``np.random`` and evaluates fitness in float32; refdet takes the
    Generator explicitly and evaluates fitness in ``wh``'s dtype (pass float32 for YOLOv5's
    arithmetic). The random streams differ, so the anchors agree with YOLOv5 in distribution, not in
    bits.
    """
    from scipy.cluster.vq import kmeans

    x0 = _positive_wh(wh, "wh")
    n = _checks.check_int(n, "n", low=1)
    img_size = _checks.check_positive(img_size, "img_size")
    gen = _checks.check_int(gen, "gen", low=0)
    kmeans_iter = _checks.check_int(kmeans_iter, "kmeans_iter", low=1)
    _checks.check_allocation(gen, 8, "generations of evolution", name="gen", limit=max_elements)
    _checks.check_allocation(kmeans_iter, 8, "k-means restarts", name="kmeans_iter", limit=max_elements)
    thr = _checks.check_real(thr, "thr")
    if thr <= 1:
        raise ValueError(f"`thr` must be > 1 (a ratio threshold); got {thr}")
    g = _checks.as_rng(rng)
    x = x0[(x0 >= 2.0).any(axis=1)]
    if x.shape[0] < n:
        raise ValueError(f"`wh` must hold at least n = {n} sizes (`n`) with a side >= 2 pixels; got {x.shape[0]}")
    s = x.astype(np.float64).std(axis=0)
    ok = bool(np.all(s > 0))
    k = None
    if ok:
        cent, _ = kmeans(x.astype(np.float64) / s, n, iter=kmeans_iter, rng=g)
        ok = cent.shape[0] == n
        if ok:
            k = cent * s
    if not ok:
        k = np.sort(g.random(n * 2)).reshape(n, 2) * img_size
    k = k[np.argsort(k[:, 0] * k[:, 1], kind="stable")]
    initial = k.copy()
    f = anchor_fitness(x, k.astype(x.dtype), thr=thr)
    sh, mp, sigma = k.shape, 0.9, 0.1
    for _ in range(gen):                                     # generations are sequential by nature
        v = np.ones(sh)
        while (v == 1).all():                                # mutate until a change occurs
            v = ((g.random(sh) < mp) * g.random() * g.standard_normal(sh) * sigma + 1).clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = anchor_fitness(x, kg.astype(x.dtype), thr=thr)
        if fg > f:
            f, k = fg, kg
    k = k[np.argsort(k[:, 0] * k[:, 1], kind="stable")]
    fit = autoanchor_metric(x0, k.astype(x0.dtype), thr=thr)
    return EvolvedAnchors(k, float(f), fit.bpr, fit.aat, initial, ok)


def check_anchor_order(anchors, strides):
    """YOLOv5 ``check_anchor_order``: anchors must grow with the strides, else the levels are reversed.

    ``a = mean anchor area per level``; if ``a[-1] - a[0]`` is non-zero and its sign differs from
    that of ``strides[-1] - strides[0]``, the level order of the anchors is flipped (the anchors
    within a level keep their order). Equal first and last areas leave the anchors as given.

    Parameters
    ----------
    anchors : ndarray, shape (L, A, 2)
        Anchor sizes per level (> 0).
    strides : sequence of float, length L
        Stride of each level (> 0).

    Returns
    -------
    anchors : ndarray, shape (L, A, 2)
        A new array, reordered if needed.
    reversed : bool
        Whether the levels were flipped.
    """
    a = _common.floats(anchors, "anchors")
    if a.ndim != 3 or a.shape[-1] != 2 or a.shape[0] == 0:
        raise ValueError(f"`anchors` must have shape (L, A, 2) with L >= 1; got {a.shape}")
    if (a <= 0).any():
        raise ValueError("`anchors` must hold positive widths and heights")
    s = _common.as_strides(strides, a.shape[0])
    area = (a[..., 0] * a[..., 1]).mean(axis=-1)            # mean anchor area per level
    da = area[-1] - area[0]
    ds = s[-1] - s[0]
    flip = bool(da != 0 and np.sign(da) != np.sign(ds))
    return (a[::-1].copy() if flip else a.copy()), flip


# ------------------------------------------------------------------------------------------------
# Anchor points (anchor-free heads)
# ------------------------------------------------------------------------------------------------

def make_anchors(feature_sizes: Sequence, strides: Sequence, *, grid_cell_offset: float = 0.5,
                 dtype=np.float32, image_size: Optional[Sequence] = None):
    """Anchor points and their strides, as ultralytics ``utils/tal.py make_anchors``.

    Level by level, row-major within a level (y outer, x inner), the point of cell ``(y, x)`` is
    ``(x + grid_cell_offset, y + grid_cell_offset)`` **in grid units** of that level; multiply by
    the stride for pixels (``anchor_points * stride_tensor``, what the v8 loss passes to the
    assigner). ``grid_cell_offset = 0.5`` puts points at cell centres (ultralytics); YOLOX's grid is
    ``0`` (and its assigner adds 0.5 itself).

    Parameters
    ----------
    feature_sizes : sequence of int or (H, W)
        One per level.
    strides : sequence of float, same length
        Pixels per cell of each level (> 0).
    grid_cell_offset : float
    dtype : float32 or float64
        ultralytics builds the points with ``type_as(feats[0])``: float32 for a float32 model.
    image_size : (H, W), optional
        When given, every level must be ``ceil(image / stride)`` (else ValueError naming the level).

    Returns
    -------
    anchor_points : ndarray, shape (N, 2)
        ``N = sum_l H_l W_l``; columns (x, y).
    stride_tensor : ndarray, shape (N, 1)

    Examples
    --------
    >>> p, s = make_anchors([(2, 3)], [8])
    >>> p[:4].tolist(), s[:, 0].tolist()
    ([[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5]], [8.0, 8.0, 8.0, 8.0, 8.0, 8.0])
    """
    sizes = _checks.as_feature_sizes(feature_sizes)
    st = _common.as_strides(strides, len(sizes))
    off = _checks.check_real(grid_cell_offset, "grid_cell_offset")
    dt = _checks.check_float_dtype(dtype)
    _common.check_sizes_match_image(sizes, st, image_size)
    points, stride = [], []
    o = dt.type(off)
    for (h, w), s in zip(sizes, st):
        sx = np.arange(w, dtype=dt) + o                      # torch.arange(w).type_as(f) + offset
        sy = np.arange(h, dtype=dt) + o
        yy, xx = np.meshgrid(sy, sx, indexing="ij")          # (H, W)
        points.append(np.stack([xx, yy], axis=-1).reshape(-1, 2))
        stride.append(np.full((h * w, 1), s, dtype=dt))
    return np.concatenate(points, axis=0), np.concatenate(stride, axis=0)
