"""VOC-style evaluation, exactly as the devkit's ``voc_eval.py`` computes it.

``voc_eval(detpath, annopath, imagesetfile, classname, ovthresh=0.5, use_07_metric=False)``
(py-faster-rcnn ``lib/datasets/voc_eval.py``, the Python port of the VOC devkit's ``VOCevaldet.m``),
for every class:

* detections of the class are taken in descending score order over all images (refdet breaks ties
  in input order; ``voc_eval`` uses ``np.argsort(-confidence)``, NumPy's unstable quicksort, whose
  order among equal scores is unspecified);
* each detection is compared with *every* ground truth of its image and class, with the "+1 pixel"
  overlap (``iw = max(ixmax - ixmin + 1, 0)``, union ``(w + 1)(h + 1) + (W + 1)(H + 1) - inter``;
  ``plus_one=False`` drops the 1s); ``ovmax = np.max(overlaps)`` (NaN if any overlap is 0 / 0) and
  ``jmax = np.argmax(overlaps)`` (the **first** best ground truth), whether or not it is taken;
* ``ovmax > ovthresh`` (**strict**): a ``difficult`` ground truth makes the detection neither a
  true nor a false positive; otherwise the first detection to reach ``jmax`` is a true positive and
  later ones are false positives (duplicates); ``ovmax <= ovthresh`` is a false positive;
* ``rec = tp / npos`` with ``npos`` the non-difficult ground truths of the class (NaN/inf for a
  class without any, as the devkit's division gives); ``prec = tp / max(tp + fp, eps)``;
  AP by ``voc_ap`` (:func:`refdet.eval.average_precision`, ``"voc2010"`` or ``"voc2007"``).

Only the first detection reaching a ground truth is a true positive, and which ground truth a
detection reaches does not depend on the others, so the whole evaluation is vectorised: no loop
over detections (the loop version is the test's transcription of ``voc_eval.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from refdet.eval import columns
from refdet.eval.curves import curve_ap


@dataclass
class VOCResult:
    """VOC-style results: per-class AP and curves.

    Attributes
    ----------
    ap : ndarray, shape (K,)
        Average precision per class (NaN for a class with no non-difficult ground truth, where the
        devkit divides by zero).
    map : float
        Mean of ``ap`` over classes with a defined AP (NaN if none).
    precision, recall : list of K ndarrays, each shape (D_k,)
        The curves after each detection of the class, in descending score order.
    classes : ndarray, shape (K,)
        The class ids, sorted.
    iou_threshold : float
    method : str
    class_names : tuple of str
        The classes' names when the input had them, else ().
    """
    ap: np.ndarray
    map: float
    precision: list
    recall: list
    classes: np.ndarray
    iou_threshold: float
    method: str
    class_names: tuple = field(default=())

    def summary(self) -> str:
        """One line per class and the mean: ``class 3: AP = 0.7500`` ... ``mAP@0.5 (voc2010) = 0.6250``."""
        names = self.class_names or tuple(str(c) for c in self.classes.tolist())
        lines = [f"class {c}: AP = {v:.4f}" for c, v in zip(names, self.ap)]
        return "\n".join(lines + [f"mAP@{self.iou_threshold} ({self.method}) = {self.map:.4f}"])

    __str__ = summary


def _best_overlaps(p, grp, plus_one):
    """``ovmax`` (-inf if no ground truth) and ``jmax`` (a ground-truth index, 0 if none) of every detection.

    ``jmax`` is read only where ``ovmax > ovthresh``, that is where the detection has ground truths.
    """
    d = len(p["dt_score"])
    ovmax = np.full(d, -np.inf)
    jmax = np.zeros(d, dtype=np.int64)
    one = 1.0 if plus_one else 0.0
    dets = np.flatnonzero(grp.gt_count[grp.dt_group] > 0)
    for chunk, pair_det, pair_gt in columns.pairs(grp, dets):
        bb = p["dt_xyxy"][chunk][pair_det]  # (P, 4)
        g = p["gt_xyxy"][pair_gt]  # (P, 4)
        iw = np.maximum(np.minimum(g[:, 2], bb[:, 2]) - np.maximum(g[:, 0], bb[:, 0]) + one, 0.0)
        ih = np.maximum(np.minimum(g[:, 3], bb[:, 3]) - np.maximum(g[:, 1], bb[:, 1]) + one, 0.0)
        inters = iw * ih
        uni = ((bb[:, 2] - bb[:, 0] + one) * (bb[:, 3] - bb[:, 1] + one)
               + (g[:, 2] - g[:, 0] + one) * (g[:, 3] - g[:, 1] + one) - inters)
        # 0 / 0 only: a positive intersection needs positive widths and heights of both boxes, and
        # then the union is at least the larger area
        with np.errstate(invalid="ignore"):
            ov = inters / uni
        count = np.bincount(pair_det)  # every detection of the chunk has a pair: len(chunk) counts
        start = np.cumsum(count) - count  # every detection here has at least one pair
        mx = np.maximum.reduceat(ov, start)  # np.max: a NaN wins
        # np.argmax: the first NaN if there is one, else the first maximum
        first = np.where((ov == mx[pair_det]) | np.isnan(ov), np.arange(len(ov)), len(ov))
        pos = np.minimum.reduceat(first, start)
        ovmax[chunk] = mx
        jmax[chunk] = pair_gt[pos]
    return ovmax, jmax


def evaluate_voc(p: dict, iou_threshold: float, method: str, plus_one: bool,
                 class_names: tuple = ()) -> VOCResult:
    """``voc_eval`` for every class on prepared columns (see the module docstring)."""
    grp = columns.groups(p)
    d = len(p["dt_score"])
    k = len(p["classes"])
    ovmax, jmax = _best_overlaps(p, grp, plus_one)
    hit = ovmax > iou_threshold  # NaN compares False: a false positive, as in voc_eval
    diff = np.zeros(d, dtype=bool)
    diff[hit] = p["gt_difficult"][jmax[hit]]  # the best ground truth is difficult: neither tp nor fp
    # the order voc_eval goes down the detections of each class: descending score, ties in input order
    order = np.lexsort((np.arange(d), -p["dt_score"], p["dt_cat"]))
    cand = order[(hit & ~diff)[order]]
    _, first = np.unique(jmax[cand], return_index=True)  # the first detection to reach each gt
    tp = np.zeros(d, dtype=bool)
    tp[cand[first]] = True
    fp = (hit & ~diff & ~tp) | ~hit
    npos = np.bincount(p["gt_cat"][~p["gt_difficult"]], minlength=k)
    per_class = np.split(order, np.searchsorted(p["dt_cat"][order], np.arange(1, k)))  # k parts (1 if k = 0)
    aps = np.full(k, np.nan)
    precs, recs = [], []
    for ki in range(k):
        sel = per_class[ki]
        # integer counts: int / float division gives the devkit's float64 values bit for bit
        ctp = np.cumsum(tp[sel])
        cfp = np.cumsum(fp[sel])
        # 0 / 0 only (tp <= npos): a class without a non-difficult ground truth, as the devkit divides
        with np.errstate(invalid="ignore"):
            rec = ctp / float(npos[ki])
        # voc_eval's np.maximum(tp + fp, eps): the counts are integers, so eps only turns 0 / 0 (the
        # first detections hit difficult ground truths) into 0, and 1 does the same
        prec = ctp / np.maximum(ctp + cfp, 1)
        precs.append(prec)
        recs.append(rec)
        if npos[ki] > 0:
            aps[ki] = curve_ap(rec, prec, method)
    defined = aps[~np.isnan(aps)]
    return VOCResult(ap=aps, map=float(defined.mean()) if defined.size else np.nan,
                     precision=precs, recall=recs, classes=p["classes"],
                     iou_threshold=float(iou_threshold), method=method, class_names=tuple(class_names))
