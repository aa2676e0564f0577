"""Detection evaluation: PASCAL VOC and COCO average precision, exactly as the benchmarks compute it.

Two entry points:

* :func:`average_precision` turns one precision/recall curve into a number (VOC2007 11-point,
  VOC2010+ all-point, or COCO 101-point interpolation).
* :func:`evaluate_detections` matches detections to ground truths and returns the summary numbers:
  ``style="coco"`` reproduces ``pycocotools.cocoeval.COCOeval`` (``evaluate()``, ``accumulate()``,
  ``summarize()``) for bounding boxes; ``style="voc"`` reproduces the VOC devkit's ``voc_eval``.

Inputs are columnar mappings (one row per box), so that nothing loops over boxes in Python::

    detections    = {"image_id": (D,) int, "boxes": (D, 4), "scores": (D,), "labels": (D,) int}
    ground_truths = {"image_id": (G,) int, "boxes": (G, 4), "labels": (G,) int,
                     # optional:
                     "iscrowd": (G,) bool,    # COCO crowd regions (matched by inter / det area)
                     "area": (G,) float,      # COCO's annotation area (default: box area)
                     "ignore": (G,) bool,     # refdet: ignore regions that are not crowds
                     "difficult": (G,) bool,  # VOC "difficult" flags
                     "images": (I,) int,      # every image id, including images without boxes
                     "classes": (K,) int}     # every class id, including classes without boxes

Boxes are ``xyxy`` unless ``box_format`` says otherwise. COCO arithmetic is done in COCO's own
``xywh`` form (``maskUtils.iou``: ``w = min(dx + dw, gx + gw) - max(dx, gx)``) so that IoUs that
hit a threshold exactly do so in refdet as in pycocotools.

COCO matching rules (``COCOeval.evaluateImg``), all reproduced:

* detections of an image and class are taken in descending score order, ties in input order (a
  stable sort), at most ``max(max_dets)`` of them;
* a detection matches, among the ground truths not yet matched (crowds can be matched many times)
  with IoU ``>= min(t, 1 - 1e-10)``, the one with the highest IoU; equal IoUs go to the **later**
  ground truth; a non-ignored ground truth is preferred to any ignored one;
* a crowd's IoU is ``intersection / detection area``;
* ground truths that are crowds, or whose area lies outside the area range, are ignored; so are
  unmatched detections whose area lies outside the range, and detections matched to an ignored
  ground truth;
* precision is made monotone from the right, then read at the 101 recall thresholds with
  ``searchsorted(side="left")``; a (class, area) with no non-ignored ground truth has precision -1
  and is left out of the means.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from refdet import _checks

__all__ = [
    "average_precision",
    "evaluate_detections",
    "COCOResult",
    "VOCResult",
    "COCO_AREA_RANGES",
]

#: (name, low, high) of COCO's four area ranges, in pixels², inclusive at both ends.
COCO_AREA_RANGES = (("all", 0.0, 1e5 ** 2), ("small", 0.0, 32.0 ** 2),
                    ("medium", 32.0 ** 2, 96.0 ** 2), ("large", 96.0 ** 2, 1e5 ** 2))

_STAT_NAMES = (
    "AP @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AP @[IoU=0.50      | area=   all | maxDets=100]",
    "AP @[IoU=0.75      | area=   all | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area= large | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=   all | maxDets=  1]",
    "AR @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
    "AR @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area= large | maxDets=100]",
)


# --------------------------------------------------------------------------------------------
# Average precision of one curve
# --------------------------------------------------------------------------------------------

def average_precision(recall, precision, *, method="voc2010"):
    """Area under one precision/recall curve, the way a benchmark defines it.

    Parameters
    ----------
    recall, precision : ndarray, shape (D,)
        The curve after each of D detections sorted by descending score (recall non-decreasing).
    method : {"voc2010", "voc2007", "coco101"}
        ``"voc2010"`` (VOC2010 and later, ``voc_ap(use_07_metric=False)``): make precision
        monotone from the right, then sum ``(r[i+1] - r[i]) * p[i+1]`` over the points where recall
        changes, with sentinels ``r = 0`` / ``p = 0`` in front and ``r = 1`` / ``p = 0`` behind.
        ``"voc2007"``: 11-point interpolation, the mean over ``t = 0, 0.1, ..., 1`` of the highest
        precision at recall ``>= t`` (0 if none). ``"coco101"``: COCO's 101-point interpolation,
        precision made monotone from the right and read at ``searchsorted(recall, t, "left")`` for
        ``t = 0, 0.01, ..., 1`` (0 past the end of the curve), then averaged.

    Returns
    -------
    float

    Examples
    --------
    One ground truth found by the second of two detections: recall (0, 1), precision (0, 0.5).
    voc2010: 0.5 (the rise from recall 0 to 1 happens at precision 0.5); voc2007: 0.5 (every
    threshold t sees max precision 0.5); coco101: 0.5.
    """
    _checks.check_choice(method, "method", ("voc2010", "voc2007", "coco101"))
    rec = _checks.as_float_array(recall, "recall", ndim=1, dtype=np.float64)
    prec = _checks.as_float_array(precision, "precision", ndim=1, dtype=np.float64)
    _checks.check_same_length(rec, prec, "recall", "precision")
    if method == "voc2007":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # the devkit's own grid, float steps included
            p = prec[rec >= t].max() if np.any(rec >= t) else 0.0
            ap = ap + p / 11.0
        return float(ap)
    if method == "voc2010":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the precision envelope
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    q = _interp101(rec, prec)
    return float(np.mean(q))


def _recall_thresholds():
    # exactly COCOeval's Params: np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1)
    return np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def _iou_thresholds():
    return np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)


def _interp101(rec, prec, scores=None):
    """COCO's read-out of a curve at the 101 recall thresholds (precision, and the score there)."""
    rthr = _recall_thresholds()
    nd = len(rec)
    q = np.zeros(len(rthr))
    ss = np.zeros(len(rthr))
    if nd == 0:
        return (q, ss) if scores is not None else q
    env = np.maximum.accumulate(prec[::-1])[::-1]
    inds = np.searchsorted(rec, rthr, side="left")
    ok = inds < nd  # COCOeval's try/except stops at the first index past the curve
    q[ok] = env[inds[ok]]
    if scores is not None:
        ss[ok] = scores[inds[ok]]
        return q, ss
    return q


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------

def _column(mapping, key, name, *, required=True):
    if key not in mapping:
        if required:
            raise ValueError(f"`{name}` must have a {key!r} entry; got keys {sorted(mapping)}")
        return None
    return mapping[key]


def _prepare(detections, ground_truths, box_format):
    from refdet.boxes import box_convert

    for obj, name in ((detections, "detections"), (ground_truths, "ground_truths")):
        if not hasattr(obj, "keys") or not hasattr(obj, "__getitem__"):
            raise TypeError(f"`{name}` must be a mapping of columns (image_id, boxes, ...); got "
                            f"{type(obj).__name__}")
    gt_boxes = _checks.as_boxes(_column(ground_truths, "boxes", "ground_truths"), "ground_truths['boxes']",
                                dtype=np.float64)
    g = len(gt_boxes)
    gt_img = _checks.as_int_labels(_column(ground_truths, "image_id", "ground_truths"),
                                   "ground_truths['image_id']", n=g)
    gt_lab = _checks.as_int_labels(_column(ground_truths, "labels", "ground_truths"),
                                   "ground_truths['labels']", n=g)
    dt_boxes = _checks.as_boxes(_column(detections, "boxes", "detections"), "detections['boxes']",
                                dtype=np.float64)
    d = len(dt_boxes)
    dt_img = _checks.as_int_labels(_column(detections, "image_id", "detections"),
                                   "detections['image_id']", n=d)
    dt_lab = _checks.as_int_labels(_column(detections, "labels", "detections"), "detections['labels']", n=d)
    dt_score = _checks.as_scores(_column(detections, "scores", "detections"), "detections['scores']", n=d,
                                 dtype=np.float64)

    def flags(key):
        v = _column(ground_truths, key, "ground_truths", required=False)
        if v is None:
            return np.zeros(g, dtype=bool)
        a = _checks.as_array(v, f"ground_truths[{key!r}]")
        if a.shape != (g,):
            raise ValueError(f"`ground_truths[{key!r}]` must have shape ({g},); got {a.shape}")
        return a.astype(bool)

    images = _column(ground_truths, "images", "ground_truths", required=False)
    images = np.unique(gt_img) if images is None else np.unique(
        _checks.as_int_labels(images, "ground_truths['images']"))
    classes = _column(ground_truths, "classes", "ground_truths", required=False)
    classes = np.unique(gt_lab) if classes is None else np.unique(
        _checks.as_int_labels(classes, "ground_truths['classes']"))
    for ids, known, what, nm in ((dt_img, images, "image", "detections['image_id']"),
                                 (dt_lab, classes, "class", "detections['labels']"),
                                 (gt_img, images, "image", "ground_truths['image_id']"),
                                 (gt_lab, classes, "class", "ground_truths['labels']")):
        unknown = np.setdiff1d(ids, known)
        if unknown.size:
            raise ValueError(f"`{nm}` refers to unknown {what} ids {unknown[:5].tolist()} "
                             f"(known: the ground truths' {what}s)")
    fmt = _checks.check_choice(box_format, "box_format", ("xyxy", "xywh", "cxcywh", "yxyx"))
    gt_xywh = box_convert(gt_boxes, fmt, "xywh") if fmt != "xywh" else gt_boxes
    dt_xywh = box_convert(dt_boxes, fmt, "xywh") if fmt != "xywh" else dt_boxes
    area = _column(ground_truths, "area", "ground_truths", required=False)
    if area is None:
        gt_area = gt_xywh[:, 2] * gt_xywh[:, 3]
    else:
        gt_area = _checks.as_float_array(area, "ground_truths['area']", ndim=1, dtype=np.float64)
        if gt_area.shape != (g,):
            raise ValueError(f"`ground_truths['area']` must have shape ({g},); got {gt_area.shape}")
    return dict(
        images=images, classes=classes,
        gt_xywh=gt_xywh, gt_img=np.searchsorted(images, gt_img), gt_cat=np.searchsorted(classes, gt_lab),
        gt_area=gt_area, gt_crowd=flags("iscrowd"), gt_ignore=flags("ignore"),
        gt_difficult=flags("difficult"), gt_boxes=gt_boxes,
        dt_xywh=dt_xywh, dt_img=np.searchsorted(images, dt_img), dt_cat=np.searchsorted(classes, dt_lab),
        dt_score=dt_score, dt_boxes=dt_boxes,
    )


def _groups(p):
    """Group ids (image, class) for gts and dets, padded gt tables, det ranks within group."""
    k = len(p["classes"])
    g_key = p["gt_img"] * k + p["gt_cat"]
    d_key = p["dt_img"] * k + p["dt_cat"]
    keys = np.unique(np.concatenate([g_key, d_key]))
    g_grp = np.searchsorted(keys, g_key)
    d_grp = np.searchsorted(keys, d_key)
    n_grp = len(keys)
    # gts in input order within each group: padded table (n_grp, G_max) of gt indices, -1 = none
    g_order = np.argsort(g_grp, kind="stable")
    g_counts = np.bincount(g_grp, minlength=n_grp)
    g_max = int(g_counts.max()) if len(g_counts) and g_counts.size else 0
    g_start = np.concatenate([[0], np.cumsum(g_counts)[:-1]]) if n_grp else np.zeros(0, np.int64)
    g_pos = np.arange(len(g_order)) - np.repeat(g_start, g_counts)
    table = np.full((n_grp, max(g_max, 1)), -1, dtype=np.int64)
    table[g_grp[g_order], g_pos] = g_order
    # dets sorted by (group, -score, input order): the stable descending sort of COCOeval
    d_order = np.lexsort((np.arange(len(d_grp)), -p["dt_score"], d_grp))
    d_counts = np.bincount(d_grp, minlength=n_grp)
    d_start = np.concatenate([[0], np.cumsum(d_counts)[:-1]]) if n_grp else np.zeros(0, np.int64)
    rank = np.empty(len(d_grp), dtype=np.int64)
    rank[d_order] = np.arange(len(d_order)) - np.repeat(d_start, d_counts)
    return dict(keys=keys, g_grp=g_grp, d_grp=d_grp, table=table, rank=rank, d_order=d_order,
                n_grp=n_grp, k=k)


def _coco_iou(d_xywh, g_xywh, crowd):
    """COCO's bbIou for paired rows: d (n, 4), g (n, G, 4), crowd (n, G) -> (n, G)."""
    dx, dy, dw, dh = (d_xywh[:, None, i] for i in range(4))
    gx, gy, gw, gh = (g_xywh[..., i] for i in range(4))
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    ga = gw * gh
    u = np.where(crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = inter / u
    return np.where((w > 0) & (h > 0), o, 0.0)


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------

@dataclass
class COCOResult:
    """COCO-style evaluation results (the arrays of ``COCOeval.eval`` plus the 12 summary numbers).

    Attributes
    ----------
    stats : ndarray, shape (12,)
        AP, AP50, AP75, AP small/medium/large, AR1, AR10, AR100, AR small/medium/large
        (``COCOeval.stats``; -1 where undefined).
    precision : ndarray, shape (T, R, K, A, M)
        T IoU thresholds, R = 101 recall thresholds, K classes, A area ranges, M maxDets; -1 where a
        class has no non-ignored ground truth.
    recall : ndarray, shape (T, K, A, M)
    scores : ndarray, shape (T, R, K, A, M)
        The detection score at each precision read-out.
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
    stat_names: tuple = field(default=_STAT_NAMES)

    def summary(self):
        """The 12 lines ``COCOeval.summarize()`` prints."""
        kind = {"AP": "Average Precision", "AR": "Average Recall"}
        return "\n".join(f" {kind[n[:2]]:18s} ({n[:2]}) {n[3:]} = {v:0.3f}"
                         for n, v in zip(self.stat_names, self.stats))

    __str__ = summary


def _coco_match(p, grp, iou_thr, area_rng, max_det):
    """Greedy COCO matching for every (image, class) group at once.

    Loops over detection *rank* (at most ``max_det`` steps); each step handles the r-th detection of
    every group together, vectorised over groups, IoU thresholds and ground truths.

    Returns dt_matched (D, A, T) bool, dt_ignored (D, A, T) bool, gt_ignored (G, A) bool.
    """
    t = len(iou_thr)
    a = len(area_rng)
    d = len(p["dt_score"])
    table = grp["table"]
    valid = table >= 0  # (n_grp, Gm)
    n_gt = len(p["gt_area"])
    safe = np.where(valid, table, n_gt)  # padding points at one dummy row appended below
    gt_xywh = np.concatenate([p["gt_xywh"], np.zeros((1, 4))])
    crowd = np.append(p["gt_crowd"], False)[safe] & valid
    g_area = np.append(p["gt_area"], 0.0)[safe]
    # gt ignore flag per area range: crowd (COCOeval sets ignore = iscrowd), refdet ignore flags,
    # or area outside the range (inclusive bounds)
    base_ign = np.append(p["gt_crowd"] | p["gt_ignore"], False)[safe]
    gt_ign = np.stack([base_ign | (g_area < lo) | (g_area > hi) for _, lo, hi in area_rng], axis=-1)
    gt_ign &= valid[..., None]  # (n_grp, Gm, A)
    thr = np.minimum(iou_thr, 1 - 1e-10)  # (T,)

    dt_matched = np.zeros((d, a, t), dtype=bool)
    dt_ign = np.zeros((d, a, t), dtype=bool)
    gt_taken = np.zeros(table.shape + (a, t), dtype=bool)  # (n_grp, Gm, A, T)
    rank = grp["rank"]
    order = grp["d_order"]
    ranks_sorted = rank[order]
    n_steps = int(min(max_det, ranks_sorted.max() + 1)) if d else 0
    for r in range(n_steps):
        di = order[ranks_sorted == r]  # one detection per group that has an r-th detection
        gi = grp["d_grp"][di]
        iou = _coco_iou(p["dt_xywh"][di], gt_xywh[safe[gi]], crowd[gi])  # (n, Gm)
        iou = np.where(valid[gi], iou, -1.0)
        # candidates: not yet taken (crowds never count as taken), IoU >= threshold
        free = ~gt_taken[gi] | crowd[gi][..., None, None]  # (n, Gm, A, T)
        cand = free & (iou[:, :, None, None] >= thr) & valid[gi][..., None, None]
        ign = gt_ign[gi][..., None]  # (n, Gm, A, 1)
        cand_main = cand & ~ign
        has_main = cand_main.any(axis=1)  # (n, A, T)
        use = np.where(has_main[:, None], cand_main, cand & ign)
        score = np.where(use, iou[:, :, None, None], -np.inf)
        # the LAST ground truth with the highest IoU (COCOeval replaces m on >=)
        rev = score[:, ::-1]
        m = score.shape[1] - 1 - np.argmax(rev, axis=1)  # (n, A, T)
        found = np.take_along_axis(use, m[:, None], axis=1)[:, 0]
        dt_matched[di] = found
        m_ign = np.take_along_axis(np.broadcast_to(ign, use.shape), m[:, None], axis=1)[:, 0]
        dt_ign[di] = found & m_ign
        n_idx, a_idx, t_idx = np.nonzero(found)
        gt_taken[gi[n_idx], m[n_idx, a_idx, t_idx], a_idx, t_idx] = True
    # unmatched detections outside the area range are ignored
    d_area = p["dt_xywh"][:, 2] * p["dt_xywh"][:, 3]
    out = np.stack([(d_area < lo) | (d_area > hi) for _, lo, hi in area_rng], axis=-1)  # (D, A)
    dt_ign |= ~dt_matched & out[:, :, None]
    g_ign_flat = np.zeros((len(p["gt_area"]), a), dtype=bool)
    g_ign_flat[table[valid]] = gt_ign[valid]
    return dt_matched, dt_ign, g_ign_flat


def _evaluate_coco(p, iou_thresholds, area_ranges, max_dets):
    grp = _groups(p)
    iou_thr = _iou_thresholds() if iou_thresholds is None else np.asarray(iou_thresholds, np.float64)
    rthr = _recall_thresholds()
    t, r, k, a, m = len(iou_thr), len(rthr), grp["k"], len(area_ranges), len(max_dets)
    precision = -np.ones((t, r, k, a, m))
    recall = -np.ones((t, k, a, m))
    scores = -np.ones((t, r, k, a, m))
    matched, ign, g_ign = _coco_match(p, grp, iou_thr, area_ranges, max(max_dets))
    cat = p["dt_cat"]
    # the order accumulate() sorts detections in: descending score, ties by image order, then by
    # rank inside the image (mergesort of the per-image lists concatenated in image order)
    order = np.lexsort((grp["rank"], p["dt_img"], -p["dt_score"], cat))
    cat_sorted = cat[order]
    bounds = np.searchsorted(cat_sorted, np.arange(k + 1))
    npig = np.stack([np.bincount(p["gt_cat"][~g_ign[:, ai]], minlength=k) for ai in range(a)], axis=1)
    for ki in range(k):
        sel_k = order[bounds[ki]:bounds[ki + 1]]
        for mi, md in enumerate(max_dets):
            sel = sel_k[grp["rank"][sel_k] < md]
            sc = p["dt_score"][sel]
            for ai in range(a):
                n_pos = npig[ki, ai]
                if n_pos == 0:
                    continue
                keep_m = matched[sel, ai].T  # (T, nd)
                keep_i = ign[sel, ai].T
                tps = keep_m & ~keep_i
                fps = ~keep_m & ~keep_i
                tp = np.cumsum(tps, axis=1).astype(float)
                fp = np.cumsum(fps, axis=1).astype(float)
                for ti in range(t):
                    nd = tp.shape[1]
                    rc = tp[ti] / n_pos
                    pr = tp[ti] / (fp[ti] + tp[ti] + np.spacing(1))
                    recall[ti, ki, ai, mi] = rc[-1] if nd else 0.0
                    q, ss = _interp101(rc, pr, sc)
                    precision[ti, :, ki, ai, mi] = q
                    scores[ti, :, ki, ai, mi] = ss
    stats = _summarize(precision, recall, iou_thr, area_ranges, max_dets)
    return COCOResult(stats=stats, precision=precision, recall=recall, scores=scores,
                      iou_thresholds=iou_thr, recall_thresholds=rthr, classes=p["classes"],
                      area_ranges=tuple(area_ranges), max_dets=tuple(max_dets))


def _summarize(precision, recall, iou_thr, area_ranges, max_dets):
    names = [n for n, _, _ in area_ranges]

    def one(ap, iou=None, area="all", md=100):
        if area not in names or md not in max_dets:
            return -1.0
        ai = names.index(area)
        mi = list(max_dets).index(md)
        if ap:
            s = precision
            if iou is not None:
                s = s[np.where(iou == iou_thr)[0]]
            s = s[:, :, :, ai, mi]
        else:
            s = recall
            if iou is not None:
                s = s[np.where(iou == iou_thr)[0]]
            s = s[:, :, ai, mi]
        s = s[s > -1]
        return -1.0 if s.size == 0 else float(np.mean(s))

    md_last = max_dets[-1]
    md = list(max_dets) + [md_last] * (3 - len(max_dets))
    return np.array([
        one(1, md=md_last), one(1, iou=0.5, md=md_last), one(1, iou=0.75, md=md_last),
        one(1, area="small", md=md_last), one(1, area="medium", md=md_last), one(1, area="large", md=md_last),
        one(0, md=md[0]), one(0, md=md[1]), one(0, md=md[2]),
        one(0, area="small", md=md_last), one(0, area="medium", md=md_last), one(0, area="large", md=md_last),
    ])


# --------------------------------------------------------------------------------------------
# VOC
# --------------------------------------------------------------------------------------------

@dataclass
class VOCResult:
    """VOC-style results: per-class AP and curves.

    Attributes
    ----------
    ap : ndarray, shape (K,)
        Average precision per class (NaN for a class with no non-difficult ground truth, where the
        devkit divides by zero).
    map : float
        Mean of ``ap`` over classes with a defined AP.
    precision, recall : list of K ndarrays
        The curves after each detection of the class, in descending score order.
    """
    ap: np.ndarray
    map: float
    precision: list
    recall: list
    classes: np.ndarray
    iou_threshold: float
    method: str

    def summary(self):
        lines = [f"class {c}: AP = {v:.4f}" for c, v in zip(self.classes.tolist(), self.ap)]
        return "\n".join(lines + [f"mAP@{self.iou_threshold} ({self.method}) = {self.map:.4f}"])

    __str__ = summary


def _evaluate_voc(p, iou_threshold, method, plus_one):
    grp = _groups(p)
    table = grp["table"]
    valid = table >= 0
    safe = np.where(valid, table, len(p["gt_boxes"]))  # padding -> a dummy row appended below
    gt_b = np.concatenate([p["gt_boxes"], np.zeros((1, 4))])
    dt_b = p["dt_boxes"]
    difficult = np.append(p["gt_difficult"], False)[safe] & valid
    d = len(dt_b)
    tp = np.zeros(d, dtype=bool)
    fp = np.zeros(d, dtype=bool)
    taken = np.zeros(table.shape, dtype=bool)
    one = 1.0 if plus_one else 0.0
    order, rank = grp["d_order"], grp["rank"]
    ranks_sorted = rank[order]
    n_steps = int(ranks_sorted.max() + 1) if d else 0
    for r in range(n_steps):
        di = order[ranks_sorted == r]
        gi = grp["d_grp"][di]
        bb = dt_b[di][:, None, :]  # (n, 1, 4)
        g = gt_b[safe[gi]]  # (n, Gm, 4)
        # voc_eval's overlaps, +1 pixel widths in the devkit
        iw = np.maximum(np.minimum(g[..., 2], bb[..., 2]) - np.maximum(g[..., 0], bb[..., 0]) + one, 0.0)
        ih = np.maximum(np.minimum(g[..., 3], bb[..., 3]) - np.maximum(g[..., 1], bb[..., 1]) + one, 0.0)
        inters = iw * ih
        uni = ((bb[..., 2] - bb[..., 0] + one) * (bb[..., 3] - bb[..., 1] + one)
               + (g[..., 2] - g[..., 0] + one) * (g[..., 3] - g[..., 1] + one) - inters)
        with np.errstate(divide="ignore", invalid="ignore"):
            ov = np.where(uni > 0, inters / uni, 0.0)
        ov = np.where(valid[gi], ov, -np.inf)
        jmax = np.argmax(ov, axis=1)  # the FIRST best ground truth, as np.argmax in voc_eval
        ovmax = ov[np.arange(len(di)), jmax]
        hit = ovmax > iou_threshold  # strict, as in voc_eval
        diff = difficult[gi, jmax]
        already = taken[gi, jmax]
        tp[di] = hit & ~diff & ~already
        fp[di] = (hit & ~diff & already) | ~hit
        taken[gi[hit & ~diff], jmax[hit & ~diff]] = True
    k = grp["k"]
    npos = np.bincount(p["gt_cat"][~p["gt_difficult"]], minlength=k)
    # global order per class: descending score, stable
    order_c = np.lexsort((np.arange(d), -p["dt_score"], p["dt_cat"]))
    bounds = np.searchsorted(p["dt_cat"][order_c], np.arange(k + 1))
    aps = np.full(k, np.nan)
    precs, recs = [], []
    for ki in range(k):
        sel = order_c[bounds[ki]:bounds[ki + 1]]
        ctp = np.cumsum(tp[sel]).astype(float)
        cfp = np.cumsum(fp[sel]).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = ctp / float(npos[ki])
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        precs.append(prec)
        recs.append(rec)
        if npos[ki] > 0:
            aps[ki] = average_precision(rec, prec, method=method)
    defined = aps[~np.isnan(aps)]
    return VOCResult(ap=aps, map=float(defined.mean()) if defined.size else float("nan"),
                     precision=precs, recall=recs, classes=p["classes"],
                     iou_threshold=float(iou_threshold), method=method)


def evaluate_detections(detections, ground_truths, *, style="coco", box_format="xyxy",
                        iou_thresholds=None, area_ranges=COCO_AREA_RANGES, max_dets=(1, 10, 100),
                        iou_threshold=0.5, method=None, plus_one=True):
    """Evaluate detections against ground truths, COCO or VOC style.

    Parameters
    ----------
    detections, ground_truths : mapping of columns
        See the module docstring. Every detection's image and class must appear among the ground
        truths' ``images`` / ``classes`` (default: the ids present in the ground truths), as
        pycocotools' ``loadRes`` requires.
    style : {"coco", "voc"}
    box_format : {"xyxy", "xywh", "cxcywh", "yxyx"}
    iou_thresholds : ndarray, optional
        COCO only; default ``0.50:0.05:0.95`` computed as pycocotools does (``np.linspace``).
    area_ranges : sequence of (name, low, high)
        COCO only; the names "all", "small", "medium", "large" feed the summary.
    max_dets : tuple of int
        COCO only; default (1, 10, 100).
    iou_threshold : float
        VOC only: a detection is a true positive when its best IoU is **strictly greater** than
        this (``ovmax > ovthresh`` in ``voc_eval.py``).
    method : {"voc2010", "voc2007"}
        VOC only; default "voc2010" (all-point).
    plus_one : bool
        VOC only: the devkit's +1 pixel widths (default True, as ``voc_eval.py``).

    Returns
    -------
    COCOResult or VOCResult
    """
    _checks.check_choice(style, "style", ("coco", "voc"))
    p = _prepare(detections, ground_truths, box_format)
    if style == "coco":
        if iou_thresholds is not None:
            it = _checks.as_float_array(iou_thresholds, "iou_thresholds", ndim=1, dtype=np.float64)
            if np.any((it < 0) | (it > 1)):
                raise ValueError(f"`iou_thresholds` must lie in [0, 1]; got {it.tolist()}")
            iou_thresholds = it
        md = tuple(_checks.check_int(v, "max_dets", low=1) for v in max_dets)
        if list(md) != sorted(md):
            raise ValueError(f"`max_dets` must be increasing; got {md}")
        ar = tuple((str(n), float(lo), float(hi)) for n, lo, hi in area_ranges)
        return _evaluate_coco(p, iou_thresholds, ar, md)
    thr = _checks.check_probability(iou_threshold, "iou_threshold")
    method = "voc2010" if method is None else _checks.check_choice(method, "method", ("voc2010", "voc2007"))
    return _evaluate_voc(p, thr, method, bool(plus_one))
