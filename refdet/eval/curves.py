"""Average precision of one precision/recall curve, and COCO's threshold grids.

Three interpolations, each exactly as its benchmark's code computes it:

* ``"voc2010"`` (VOC2010 and later; ``voc_ap(use_07_metric=False)`` in the devkit's ``voc_eval.py``):
  the precision envelope integrated where recall changes;
* ``"voc2007"`` (``voc_ap(use_07_metric=True)``): 11-point interpolation;
* ``"coco101"`` (``COCOeval.accumulate``): the envelope read at 101 recall thresholds.
"""
from __future__ import annotations

import numpy as np

from refdet import _checks

CURVE_METHODS = ("voc2010", "voc2007", "coco101")
_RECALL_END = 1.0  # pragma: no mutate (the devkit's end sentinel: its step is weighed by the precision sentinel 0)


def recall_thresholds() -> np.ndarray:
    """COCOeval's ``Params.recThrs``: ``np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1)``, (101,)."""
    return np.linspace(0.0, 1.00, 101)  # int(np.round((1.00 - .0) / .01)) + 1 = 101; endpoint=True: the default


def iou_thresholds() -> np.ndarray:
    """COCOeval's ``Params.iouThrs``: ``np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1)``, (10,).

    Built the same way so that ``0.75 == iou_thresholds()[5]`` holds bit for bit, as the summary needs.
    """
    return np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)  # endpoint=True: the default


def curve_ap(rec: np.ndarray, prec: np.ndarray, method: str) -> float:
    """The area under one validated float64 curve (see :func:`refdet.eval.average_precision`)."""
    if method == "voc2007":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # the devkit's own grid, float steps included
            p = prec[rec >= t].max() if np.any(rec >= t) else 0.0
            ap = ap + p / 11.0
        return float(ap)
    if method == "voc2010":
        mrec = np.concatenate(([0.0], rec, [_RECALL_END]))
        # the devkit's mpre = [0, prec, 0] without its first sentinel, which is never read: env[i] is its mpre[i + 1]
        env = np.concatenate((prec, [0.0]))
        env = np.maximum.accumulate(env[::-1])[::-1]  # the precision envelope
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * env[i]))
    return float(np.mean(interp101(rec, prec)))


def interp101(rec: np.ndarray, prec: np.ndarray) -> np.ndarray:
    """COCO's read-out of one curve at the 101 recall thresholds, shape (101,).

    The envelope (precision made monotone from the right, ``for i in range(nd - 1, 0, -1)`` in
    ``accumulate``) read at ``np.searchsorted(rec, recThrs, side="left")``; thresholds past the end
    of the curve read 0 (COCOeval's ``try/except`` stops at the first index past the end, and the
    indices only grow).
    """
    rthr = recall_thresholds()
    q = np.zeros(len(rthr))
    nd = len(rec)
    if nd == 0:
        return q
    env = np.maximum.accumulate(prec[::-1])[::-1]
    inds = np.searchsorted(rec, rthr)  # side="left" (the default), as COCOeval
    ok = inds < nd
    q[ok] = env[inds[ok]]
    return q


def validate_curve(recall, precision):
    """``(rec, prec)`` as float64 (D,) arrays of the same length, or the error naming the argument."""
    rec = _checks.as_float_array(recall, "recall", ndim=1, dtype=np.float64)
    prec = _checks.as_float_array(precision, "precision", ndim=1, dtype=np.float64)
    _checks.check_same_length(rec, prec, "recall", "precision")
    return rec, prec
