"""COCO-style evaluation, exactly as ``pycocotools.cocoeval.COCOeval`` computes it for boxes.

``COCOeval.evaluate()`` (``evaluateImg``), ``accumulate()`` and ``summarize()``, reproduced rule by
rule (pycocotools 2.0, ``PythonAPI/pycocotools/cocoeval.py``; faster-coco-eval computes the same):

* the detections of an image and class are taken in descending score order, ties in input order
  (``np.argsort(-scores, kind="mergesort")``), at most ``max(max_dets)`` of them;
* IoU is ``maskUtils.iou`` in COCO's own ``xywh`` form, ``w = min(dx + dw, gx + gw) - max(dx, gx)``
  (0 unless ``w > 0`` and ``h > 0``), so that IoUs that hit a threshold exactly do so here as there;
  a crowd's IoU is ``intersection / detection area``;
* a detection matches, among the ground truths not yet matched (crowds can be matched many times)
  with IoU ``>= min(t, 1 - 1e-10)``, the one with the highest IoU; equal IoUs go to the **later**
  ground truth (``m`` is replaced on ``>=``); a non-ignored ground truth is preferred to any ignored
  one (the loop ``break``\\ s at the first ignored one once it holds a non-ignored match);
* ground truths that are crowds, or whose ``area`` lies outside the area range (inclusive bounds),
  are ignored; so are unmatched detections whose box area lies outside the range, and detections
  matched to an ignored ground truth;
* a detection matched to the ground truth with annotation id 0 counts as unmatched (``dtMatches``
  stores the matched id and ``accumulate`` tests it for nonzero; faster-coco-eval does the same and
  warns): refdet reproduces this and warns too;
* ``accumulate`` merges the images' lists by descending score, ties by image then by rank in the
  image (a mergesort of the lists concatenated in image order); precision ``tp / (tp + fp + eps)``
  (``eps = np.spacing(1)``) is made monotone from the right and read at the 101 recall thresholds
  with ``searchsorted(side="left")`` (0 past the end); a (class, area) with no non-ignored ground
  truth keeps precision and recall -1 and is left out of the means.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

from refdet.eval import columns
from refdet.eval.curves import recall_thresholds

#: (name, low, high) of COCO's four area ranges, in pixels², inclusive at both ends.
COCO_AREA_RANGES = (("all", 0.0, 1e5 ** 2), ("small", 0.0, 32.0 ** 2),
                    ("medium", 32.0 ** 2, 96.0 ** 2), ("large", 96.0 ** 2, 1e5 ** 2))

#: Short names of the 12 summary numbers (detectron2's for the first six).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# (ap, iou, area, which maxDets) of each summary line, as COCOeval.summarize()._summarizeDets: the
# first line asks for maxDets=100 literally, the others for maxDets[2] (or [0], [1]).
_SUMMARY = ((1, None, "all", 100), (1, 0.5, "all", 2), (1, 0.75, "all", 2), (1, None, "small", 2),
            (1, None, "medium", 2), (1, None, "large", 2), (0, None, "all", 0), (0, None, "all", 1),
            (0, None, "all", 2), (0, None, "small", 2), (0, None, "medium", 2), (0, None, "large", 2))


@dataclass
class COCOResult:
    """COCO-style evaluation results (the arrays of ``COCOeval.eval`` plus the 12 summary numbers).

    Attributes
    ----------
    stats : ndarray, shape (12,)
        AP, AP50, AP75, AP small/medium/large, AR1, AR10, AR100, AR small/medium/large
        (``COCOeval.stats``; -1 where undefined). Short names in :attr:`stat_names`.
    precision : ndarray, shape (T, R, K, A, M)
        ``COCOeval.eval["precision"]``: T IoU thresholds, R = 101 recall thresholds, K classes, A
        area ranges, M maxDets; -1 where a class has no non-ignored ground truth.
    recall : ndarray, shape (T, K, A, M)
        ``COCOeval.eval["recall"]``.
    scores : ndarray, shape (T, R, K, A, M)
        ``COCOeval.eval["scores"]``: the detection score at each precision read-out.
    iou_thresholds : ndarray, shape (T,)
    recall_thresholds : ndarray, shape (R,)
    classes : ndarray, shape (K,)
        The class (category) ids, sorted: the K axis.
    area_ranges : tuple of (name, low, high)
    max_dets : tuple of int
    stat_names : tuple of str
    class_names : tuple of str
        The categories' names when the input had them (COCO ``categories[i]["name"]``), else ().
    """
    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    classes: np.ndarray
    area_ranges: tuple
    max_dets: tuple
    stat_names: tuple = field(default=STAT_NAMES)
    class_names: tuple = field(default=())

    def summary(self) -> str:
        """The 12 lines ``COCOeval.summarize()`` prints, character for character."""
        it = self.iou_thresholds
        md = _padded_max_dets(self.max_dets)
        lines = []
        for (ap, iou, area, m), v in zip(_SUMMARY, self.stats):
            i_str = f"{it[0]:0.2f}:{it[-1]:0.2f}" if iou is None else f"{iou:0.2f}"
            title = "Average Precision" if ap else "Average Recall"
            lines.append(" {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}".format(
                title, "(AP)" if ap else "(AR)", i_str, area, 100 if m == 100 else md[m], v))
        return "\n".join(lines)

    __str__ = summary

    def ap_per_class(self, *, iou_threshold: Optional[float] = None, area: str = "all",
                     max_det: Optional[int] = None) -> np.ndarray:
        """AP of each class, shape (K,): the mean of its precision entries that are not -1.

        Parameters
        ----------
        iou_threshold : float, optional
            One of :attr:`iou_thresholds` (exact match, as ``summarize``); default: all of them.
        area : str
            An area-range name; default "all".
        max_det : int, optional
            One of :attr:`max_dets`; default the last.

        Returns
        -------
        ndarray, shape (K,)
            NaN for a class without non-ignored ground truth (detectron2's
            ``COCOEvaluator._derive_coco_results`` reports these as ``nan``).
        """
        names = [n for n, _, _ in self.area_ranges]
        if area not in names:
            raise ValueError(f"`area` must be one of {names}; got {area!r}")
        md = self.max_dets[-1] if max_det is None else max_det
        if md not in self.max_dets:
            raise ValueError(f"`max_det` must be one of {list(self.max_dets)}; got {max_det!r}")
        s = self.precision[:, :, :, names.index(area), list(self.max_dets).index(md)]  # (T, R, K)
        if iou_threshold is not None:
            t = np.flatnonzero(self.iou_thresholds == iou_threshold)
            if t.size == 0:
                raise ValueError(f"`iou_threshold` must be one of {self.iou_thresholds.tolist()}; "
                                 f"got {iou_threshold!r}")
            s = s[t]
        ok = s > -1  # (T', R, K)
        n = ok.sum(axis=(0, 1))
        with np.errstate(invalid="ignore"):  # 0 / 0 = NaN where n = 0 (the sum is 0 there)
            return np.where(ok, s, 0.0).sum(axis=(0, 1)) / n


def _padded_max_dets(max_dets):
    md = list(max_dets)
    return md + [md[-1]] * (3 - len(md))


def _pair_iou(d, g, crowd):
    """``maskUtils.iou`` (``bbIou`` in maskApi.c) for paired xywh rows: (P, 4), (P, 4), (P,) -> (P,)."""
    w = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    da = d[:, 2] * d[:, 3]
    u = np.where(crowd, da, da + g[:, 2] * g[:, 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes; masked to 0 below
        o = inter / u
    return np.where((w > 0) & (h > 0), o, 0.0)


def _match(p, grp, thr, area_rng, max_det):
    """Greedy COCO matching of every (image, class) at once.

    Only pairs with IoU at or above the smallest threshold can ever match, so they are kept and
    sorted per detection by (IoU descending, ground truth descending): the first candidate in that
    order is COCOeval's choice. The loop runs over detection *rank* (at most ``max_det`` steps): step
    r handles the r-th detection of every group together, vectorised over groups, candidates, area
    ranges and IoU thresholds (only earlier ranks of the same group compete for its ground truths).

    Returns ``hit`` (D, A, T) bool (matched, as ``dtMatches != 0``), ``ign`` (D, A, T) bool
    (``dtIgnore``), ``gt_ign`` (G, A) bool (``gtIgnore``).
    """
    t, a, d = len(thr), len(area_rng), len(p["dt_score"])
    crowd = p["gt_crowd"]
    g_area = p["gt_area"]
    gt_ign = np.stack([crowd | p["gt_ignore"] | (g_area < lo) | (g_area > hi) for _, lo, hi in area_rng],
                      axis=-1)  # (G, A)
    thr_c = np.minimum(thr, 1 - 1e-10)  # (T,)
    t_min = thr_c.min()  # T >= 1 (evaluate_detections refuses an empty list)

    # candidate pairs: the evaluated detections (rank < max_det) against their group's ground truths
    dets = np.flatnonzero((grp.rank < max_det) & (grp.gt_count[grp.dt_group] > 0))
    pd, pg, pi = [], [], []
    for chunk, pair_det, pair_gt in columns.pairs(grp, dets):
        di = chunk[pair_det]
        iou = _pair_iou(p["dt_xywh"][di], p["gt_xywh"][pair_gt], crowd[pair_gt])
        keep = iou >= t_min
        pd.append(di[keep])
        pg.append(pair_gt[keep])
        pi.append(iou[keep])
    # (an empty start: no chunk at all when no detection has a ground truth)
    pd = np.concatenate([np.zeros(0, np.int64)] + pd)
    pg = np.concatenate([np.zeros(0, np.int64)] + pg)
    pi = np.concatenate([np.zeros(0)] + pi)
    o = np.lexsort((-pg, -pi, pd))  # per detection: best IoU first, equal IoUs the later gt first
    pd, pg, pi = pd[o], pg[o], pi[o]
    n_pairs = np.bincount(pd, minlength=d)
    p_start = np.cumsum(n_pairs) - n_pairs

    hit = np.zeros((d, a, t), dtype=bool)
    ign = np.zeros((d, a, t), dtype=bool)
    taken = np.zeros((len(g_area), a * t), dtype=bool)  # (G, A*T): used up at (area range, threshold)
    cells = np.arange(a * t)
    reaches = np.tile(pi[:, None] >= thr_c, (1, a))  # (P, A*T): the pair's IoU reaches the threshold
    g_ign = np.repeat(gt_ign, t, axis=1)  # (G, A*T)
    active = np.flatnonzero(n_pairs > 0)
    act_rank = grp.rank[active]
    by_rank = np.argsort(act_rank, kind="stable")
    bounds = np.searchsorted(act_rank[by_rank], np.arange(max_det + 1))
    zero_id = p["gt_zero_id"]
    for r in range(max_det):
        di = active[by_rank[bounds[r]:bounds[r + 1]]]  # at most one detection per group
        if di.size == 0:
            continue
        n = len(di)
        first, count = p_start[di], n_pairs[di]
        m_main = np.zeros((n, a * t), dtype=np.int64)  # the chosen non-ignored / ignored gt per cell
        m_ign = np.zeros((n, a * t), dtype=np.int64)
        has_main = np.zeros((n, a * t), dtype=bool)
        has_ign = np.zeros((n, a * t), dtype=bool)
        # candidates in the detection's order (best IoU first, equal IoUs the later gt first): the
        # first non-ignored candidate wins, else the first ignored one
        for slot in range(int(count.max())):
            live = np.flatnonzero(count > slot)
            pidx = first[live] + slot
            gs = pg[pidx]
            ok = reaches[pidx] & (~taken[gs] | crowd[gs][:, None])  # (n', A*T); crowds are never used up
            ig = g_ign[gs]
            new_main = ok & ~ig & ~has_main[live]
            new_ign = ok & ig & ~has_ign[live]
            m_main[live] = np.where(new_main, gs[:, None], m_main[live])
            m_ign[live] = np.where(new_ign, gs[:, None], m_ign[live])
            has_main[live] |= new_main
            has_ign[live] |= new_ign
        found = has_main | has_ign
        m = np.where(has_main, m_main, m_ign)  # (n, A*T) matched gt
        hit[di] = (found & ~zero_id[m]).reshape(n, a, t)
        ign[di] = (found & ~has_main).reshape(n, a, t)
        taken.reshape(-1)[(m * (a * t) + cells)[found]] = True
    if zero_id.any() and taken[zero_id].any():
        warnings.warn("a ground truth with annotation id 0 was matched: pycocotools (and faster-coco-eval) "
                      "record a match by the matched annotation's id and test it for nonzero, so the "
                      "detection counts as a false positive; refdet reproduces this. Number annotation "
                      "ids from 1 to avoid it.", UserWarning, stacklevel=4)  # pragma: no mutate (mutmut adds frames; pinned by a test)
    # unmatched detections outside the area range are ignored
    d_area = p["dt_xywh"][:, 2] * p["dt_xywh"][:, 3]
    out = np.stack([(d_area < lo) | (d_area > hi) for _, lo, hi in area_rng], axis=-1)  # (D, A)
    ign |= ~hit & out[:, :, None]
    return hit, ign, gt_ign


def _counts_needed(npig, cache):
    """For the 101 recall thresholds: the first true-positive count ``c`` with ``c / npig >= thr``.

    ``rc = tp / npig`` reaches ``thr`` exactly when ``tp`` reaches this count (the same float
    division, monotone in ``c``), so ``searchsorted(rc, thr, "left")`` can be done on integers.
    """
    if npig not in cache:
        cache[npig] = np.searchsorted(np.arange(npig + 1) / npig, recall_thresholds(), side="left")
    return cache[npig]


def _readout(tp, fp, npig, sc, cache):
    """``accumulate``'s inner loop for many curves of one class at once.

    Parameters
    ----------
    tp, fp : ndarray, shape (L, nd)
        Cumulative true / false positive counts of L curves (one per (area range, IoU threshold))
        over the class's nd detections in curve order.
    npig : ndarray, shape (L,)
        Non-ignored ground truths of each curve (all > 0).
    sc : ndarray, shape (nd,)
        The detections' scores in curve order.

    Returns
    -------
    q, ss : ndarray, shape (L, R)
        Precision envelope and score at the R = 101 recall thresholds (0 past the end of a curve).
    last : ndarray, shape (L,)
        The final recall (0 for an empty curve).

    The reference is :func:`refdet.eval.curves.interp101` per curve. Each row's counts lie in
    ``[0, npig]``; shifting row j by ``sum(npig[:j] + 2)`` keeps the rows apart, so that one
    ``searchsorted`` over the flattened counts finds every row's read-out indices.
    """
    n_l, nd = tp.shape
    r = len(recall_thresholds())
    if nd == 0:
        return np.zeros((n_l, r)), np.zeros((n_l, r)), np.zeros(n_l)
    last = tp[:, -1] / npig  # integer counts: true division gives COCOeval's float64 values
    pr = tp / ((fp + tp) + np.spacing(1))  # COCOeval: tp / (fp + tp + eps)
    env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision made monotone from the right
    need = np.stack([_counts_needed(int(n), cache) for n in npig])  # (L, R)
    off = np.concatenate([[0], np.cumsum(npig[:-1] + 2)])[:, None]  # pragma: no mutate (any gap of 1 or more keeps the rows apart)
    flat = np.searchsorted((tp + off).ravel(), (need + off).ravel(), side="left").reshape(n_l, r)
    local = flat - (np.arange(n_l) * nd)[:, None]  # nd: past the end of the curve
    ok = local < nd
    li = np.where(ok, local, 0)
    q = np.where(ok, np.take_along_axis(env, li, axis=1), 0.0)
    ss = np.where(ok, sc[li], 0.0)
    return q, ss, last


def evaluate_coco(p: dict, iou_thr: np.ndarray, area_ranges: Sequence[Tuple[str, float, float]],
                  max_dets: Sequence[int], class_names: tuple = ()) -> COCOResult:
    """COCOeval's evaluate + accumulate + summarize on prepared columns (see the module docstring)."""
    grp = columns.groups(p)
    rthr = recall_thresholds()
    t, r, k, a, m = len(iou_thr), len(rthr), len(p["classes"]), len(area_ranges), len(max_dets)
    precision = -np.ones((t, r, k, a, m))
    recall = -np.ones((t, k, a, m))
    scores = -np.ones((t, r, k, a, m))
    hit, ign, g_ign = _match(p, grp, iou_thr, area_ranges, max(max_dets))
    # accumulate's order: by class, descending score, ties by image, then by rank in the image
    ev = np.flatnonzero(grp.rank < max(max_dets))
    order = ev[np.lexsort((grp.rank[ev], p["dt_img"][ev], -p["dt_score"][ev], p["dt_cat"][ev]))]
    cat_s, rank_s, score_s = p["dt_cat"][order], grp.rank[order], p["dt_score"][order]
    # one row per (area range, IoU threshold), one column per detection in curve order
    good = np.ascontiguousarray((~ign[order]).reshape(len(order), a * t).T)  # (A*T, n)
    tp_inc = np.ascontiguousarray(hit[order].reshape(len(order), a * t).T) & good
    fp_inc = good & ~tp_inc
    npig = np.stack([np.bincount(p["gt_cat"][~g_ign[:, ai]], minlength=k) for ai in range(a)], axis=1)  # (K, A)
    cache = {}
    done = None  # (max_det, selection size) of a computed column, reused when the selection is the same
    for mi in np.argsort(max_dets)[::-1]:
        keep = rank_s < max_dets[mi]
        if done is not None and keep.all():
            precision[..., mi], recall[..., mi], scores[..., mi] = (
                precision[..., done], recall[..., done], scores[..., done])
            continue
        cols = np.flatnonzero(keep)
        # (A*T, n_m) counts running over every class; summed as uint8 into int32 (bool cumsum is ~8x
        # slower; the counts are below the number of detections); ``take`` keeps the rows contiguous
        tp = np.cumsum(tp_inc.take(cols, axis=1).view(np.uint8), axis=1, dtype=np.int32)  # pragma: no mutate (speed: any integer view and dtype count the same)
        fp = np.cumsum(fp_inc.take(cols, axis=1).view(np.uint8), axis=1, dtype=np.int32)  # pragma: no mutate (speed, as for tp above)
        sc = score_s[cols]
        bounds = np.searchsorted(cat_s[cols], np.arange(k + 1))
        for ki in range(k):
            rows = np.flatnonzero(np.repeat(npig[ki], t) > 0)  # curves with a non-ignored ground truth
            if rows.size == 0:
                continue  # precision and recall stay -1
            lo, hi = bounds[ki], bounds[ki + 1]
            tp0 = tp[rows, lo - 1][:, None] if lo else 0  # counts before this class
            fp0 = fp[rows, lo - 1][:, None] if lo else 0
            q, ss, last = _readout(tp[rows, lo:hi] - tp0, fp[rows, lo:hi] - fp0, np.repeat(npig[ki], t)[rows],
                                   sc[lo:hi], cache)
            ai, ti = np.divmod(rows, t)
            precision[ti, :, ki, ai, mi] = q
            scores[ti, :, ki, ai, mi] = ss
            recall[ti, ki, ai, mi] = last
        if keep.all():  # pragma: no mutate (a shortcut: without it every column is computed, the same)
            done = mi  # pragma: no mutate (the same shortcut as the line above)
    stats = summarize(precision, recall, iou_thr, [n for n, _, _ in area_ranges], max_dets)
    return COCOResult(stats=stats, precision=precision, recall=recall, scores=scores,
                      iou_thresholds=iou_thr, recall_thresholds=rthr, classes=p["classes"],
                      area_ranges=tuple(area_ranges), max_dets=tuple(max_dets),
                      class_names=tuple(class_names))


def summarize(precision: np.ndarray, recall: np.ndarray, iou_thr: np.ndarray, area_names: Sequence[str],
              max_dets: Sequence[int]) -> np.ndarray:
    """``COCOeval.summarize()._summarizeDets`` without the printing: the 12 numbers, shape (12,).

    Each is the mean of the selected entries that are not -1 (-1 if none), selected as pycocotools
    does (fancy indexing with the matching area and maxDets lists, so that the mean sums the same
    values in the same order). With fewer than three ``max_dets`` the last one stands in for the
    missing ones (pycocotools would raise ``IndexError``).
    """
    md = _padded_max_dets(max_dets)

    def one(ap, iou, area, m):
        want = 100 if m == 100 else md[m]
        aind = [i for i, n in enumerate(area_names) if n == area]
        mind = [i for i, v in enumerate(max_dets) if v == want]
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == iou_thr)[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        s = s[s > -1]
        return -1.0 if s.size == 0 else float(np.mean(s))

    return np.array([one(*spec) for spec in _SUMMARY])
