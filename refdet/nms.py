"""Non-maximum suppression: greedy NMS, class-aware NMS, Soft-NMS and ONNX NonMaxSuppression.

Greedy NMS (every framework agrees on the algorithm)::

    order the boxes by score, highest first
    walk the list: keep a box unless an already kept box suppressed it;
                   a kept box suppresses every later box whose IoU with it exceeds the threshold

What differs between frameworks is written down in each function's convention table
(``convention=`` sets every knob; ``refdet.conventions.describe("nms")`` prints the table):

* ``inclusive``: suppress when ``IoU > thr`` (torchvision, detectron2, mmcv, TF, ONNX, py-faster-rcnn
  ``py_cpu_nms.py``) or ``IoU >= thr`` (py-faster-rcnn ``cpu_nms.pyx``, profile ``"caffe"``).
* ``ties``: equal scores visited lowest index first (a stable descending sort: torchvision CPU,
  onnx.reference, onnxruntime, TF) or highest index first (py-faster-rcnn ``argsort()[::-1]``).
* ``nan_scores``: a NaN score sorts above every number (``torch.sort``) or is rejected.
* ``plus_one``: ``w = x2 - x1`` or the legacy ``w = x2 - x1 + 1`` (py-faster-rcnn, Detectron1).
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
land exactly on the threshold. A NaN IoU (two zero-area boxes: 0/0) never suppresses, as in
torchvision. float64 boxes give the float64 answer.

Two paths, one answer. The functions here validate, resolve the convention and hand boxes in
processing order to the speed engine :mod:`refdet._nms_engine` (a block walk and a sweep over the
sparse graph of x-overlapping pairs: no N x N matrix is ever held). The readable versions are in
:mod:`refdet.reference.nms` (the whiteboard loops, one pair at a time);
``tests/test_reference_nms.py`` holds every function here equal to its reference. Detector
post-processing built on NMS lives in :mod:`refdet.postprocess`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from refdet import _checks
from refdet import _nms_engine as _engine
from refdet import conventions


__all__ = [
    "nms",
    "batched_nms",
    "soft_nms",
    "SoftNMSResult",
    "onnx_non_max_suppression",
    "descending_order",
]

Convention = Union[str, conventions.Profile]

# --------------------------------------------------------------------------------------------------
# convention tables
# --------------------------------------------------------------------------------------------------

_TIES = ("lowest_index", "highest_index")

_NMS_OPTIONS = {
    "inclusive": conventions.flag(
        "suppress when IoU >= threshold instead of IoU > threshold",
        source="py-faster-rcnn lib/nms/cpu_nms.pyx (ovr >= thresh); '>' in torchvision "
               "csrc/ops/cpu/nms_kernel.cpp, mmcv csrc/pytorch/cpu/nms.cpp, py-faster-rcnn "
               "py_cpu_nms.py, onnxruntime non_max_suppression_helper.h, TF non_max_suppression_op.cc"),
    "ties": conventions.choice(
        _TIES, "equal scores: lowest index first (stable descending sort) or highest index first "
               "(reversed ascending argsort)",
        source="torchvision nms_kernel.cpp scores.sort(stable=True, descending=True); onnx.reference "
               "BoxInfo.__lt__; onnxruntime's heap; TF's priority queue; py-faster-rcnn "
               "scores.argsort()[::-1]; pytorch/vision#2157 (CUDA has no defined tie order)"),
    "nan_scores": conventions.choice(
        ("first", "reject"), "'first': a NaN score sorts above every number and its box suppresses as "
                             "usual; 'reject': ValueError",
        source="torch.sort puts NaN above +inf; ONNX and TF leave NaN scores undefined"),
    "plus_one": conventions.flag(
        "box widths are x2 - x1 + 1 (legacy inclusive pixels) instead of x2 - x1",
        source="py-faster-rcnn lib/nms/cpu_nms.pyx, Detectron1, mmcv nms offset=1; pytorch/vision#1872"),
    "corner_order": conventions.choice(
        ("as_given", "any"), "'as_given': x1 <= x2 assumed (a flipped box keeps its negative width); "
                             "'any': corners min/max-sorted per axis, and a pair with no overlap or a "
                             "non-positive area or union never suppresses",
        source="onnxruntime non_max_suppression_helper.h SuppressByIOU, TF non_max_suppression_op.cc "
               "IOU; onnx/onnx#6322, microsoft/onnxruntime#21898"),
    "threshold_dtype": conventions.choice(
        ("float64", "working"), "'float64': a float32 IoU is compared with the double threshold; "
                                "'working': the threshold is rounded to the boxes' dtype first",
        source="torchvision nms_kernel.cpp takes double iou_threshold; ONNX NonMaxSuppression and TF "
               "take it as a float32 tensor"),
}

_TV = {"inclusive": False, "ties": "lowest_index", "nan_scores": "first", "plus_one": False,
       "corner_order": "as_given", "threshold_dtype": "float64"}
_CAFFE = {"inclusive": True, "ties": "highest_index", "nan_scores": "first", "plus_one": True,
          "corner_order": "as_given", "threshold_dtype": "float64"}
_ONNX = {"inclusive": False, "ties": "lowest_index", "nan_scores": "reject", "plus_one": False,
         "corner_order": "any", "threshold_dtype": "working"}

_NMS_SOURCES = (
    "torchvision csrc/ops/cpu/nms_kernel.cpp (ovr > thr, scores.sort(stable=True, descending=True)); "
    "detectron2 layers/nms.py calls torchvision; mmcv csrc/pytorch/cpu/nms.cpp (ovr > thr, offset 0); "
    "py-faster-rcnn lib/nms/cpu_nms.pyx (+1 areas, ovr >= thresh, scores.argsort()[::-1]); "
    "onnx/reference/ops/op_non_max_suppression.py and onnxruntime non_max_suppression.cc "
    "(min/max corners, degenerate pairs never suppress, float32 threshold); TF "
    "non_max_suppression_op.cc (same IoU guards, priority queue with lower index first on ties). "
    "pytorch/vision#2157 (CUDA tie order), #1872 (+1 and NaN IoU).")

conventions.register(
    "nms",
    {"torchvision": dict(_TV), "detectron2": dict(_TV), "mmdet": dict(_TV), "caffe": dict(_CAFFE),
     "tf": dict(_ONNX), "onnx": dict(_ONNX),
     # OpenVINO's CPU plugin suppresses at IoU >= threshold (nodes/non_max_suppression.cpp: JIT _CMP_GE_OS,
     # scalar `iou >= iouThreshold`); its reference implementation and ONNX use '>'. Exact for
     # thresholds > 0; at 0 and for zero-area boxes see refdet.runtimes.openvino.non_max_suppression
     "openvino": dict(_ONNX, inclusive=True)},
    knobs=_NMS_OPTIONS, doc=_NMS_SOURCES)

conventions.register(
    "batched_nms",
    {p: dict(v, coordinate_trick=False) for p, v in
     (("torchvision", _TV), ("detectron2", _TV), ("mmdet", _TV), ("caffe", _CAFFE), ("tf", _ONNX),
      ("onnx", _ONNX))},
    knobs=dict(_NMS_OPTIONS, coordinate_trick=conventions.choice(
        (False, True, "torchvision"),
        "False: exact per-class NMS; True: NMS of boxes + idx * (max + 1) (wrong with negative "
        "coordinates, TV12); 'torchvision': the trick exactly when torchvision uses it on the CPU "
        "(boxes.numel() <= 4000)",
        source="torchvision ops/boxes.py batched_nms, _batched_nms_coordinate_trick; "
               "MultimediaTechLab/YOLO#234 (float16 offsets)")),
    doc="torchvision ops/boxes.py batched_nms: _batched_nms_coordinate_trick when numel <= 4000 on CPU, "
        "else _batched_nms_vanilla (per-class loop, then sort of the kept indices by score). Every "
        "profile defaults to the exact per-class answer; the trick is bug-compatibility only. "
        + _NMS_SOURCES)

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
        # TF's soft mode has no hard threshold (non_max_suppression_op.cc: suppress_weight returns the
        # Gaussian weight whenever is_soft_nms; checked against TF 2.21 in tests/test_tf_nms.py)
        "tf": {"inclusive": False, "plus_one": False, "gaussian_denominator": "2sigma",
               "discard": "any", "hard_above_threshold": False},
        "paper": {"inclusive": True, "plus_one": False, "gaussian_denominator": "sigma",
                  "discard": "any", "hard_above_threshold": False},
    },
    knobs={
        "inclusive": conventions.flag(
            "linear / hard decay applies when IoU >= iou_threshold instead of IoU > iou_threshold",
            source="Bodla et al. 2017 Algorithm 1 and mmcv softnms_cpu (>=); Detectron1 "
                   "utils/cython_nms.pyx soft_nms (ov > Nt)"),
        "plus_one": conventions.flag(
            "box widths are x2 - x1 + 1 (legacy inclusive pixels) instead of x2 - x1",
            source="Detectron1 utils/cython_nms.pyx soft_nms"),
        "gaussian_denominator": conventions.choice(
            ("sigma", "2sigma"), "'sigma': exp(-IoU^2 / sigma); '2sigma': exp(-0.5 IoU^2 / sigma)",
            source="paper, Detectron1, mmcv: exp(-(ovr * ovr) / sigma); TF non_max_suppression_op.cc "
                   "scale = -0.5 / soft_nms_sigma, OpenVINO NMS-5"),
        "discard": conventions.choice(
            ("any", "overlapping"), "'any': after every decay pass each remaining box below "
                                    "score_threshold is dropped; 'overlapping': only boxes that "
                                    "overlap the selected box are tested",
            source="mmcv softnms_cpu (every box tested against min_score); Detectron1 cython_nms.pyx "
                   "(only boxes with iw > 0 and ih > 0)"),
        "hard_above_threshold": conventions.flag(
            "Gaussian mode also drops boxes whose IoU exceeds iou_threshold",
            source="a hard cut some ports add to Gaussian soft-NMS; TF non_max_suppression_op.cc does "
                   "not (is_soft_nms: the weight applies at every IoU, iou_threshold unused)"),
    },
    doc="Bodla et al. 2017 (arXiv:1704.04503) Algorithm 1: linear s*(1 - iou) if iou >= Nt, Gaussian "
        "s*exp(-iou^2/sigma). All implementations select the current maximum with a strict '<' scan "
        "(first maximum wins) and drop a box by swapping it with the last one.",
)


# --------------------------------------------------------------------------------------------------
# shared validation
# --------------------------------------------------------------------------------------------------

def _scores_checked(scores, n, nan_scores):
    s = _checks.as_scores(scores, n=n, allow_nan=True)
    if nan_scores == "reject":
        _checks.check_finite(s, "scores", allow_inf=True)
    return s


def _suppression_kind(s):
    """The engine's pair arithmetic for a resolved profile: "tv", "plus_one" or "any"."""
    if s["corner_order"] == "any":
        if s["plus_one"]:
            raise ValueError("`plus_one=True` is not defined with `corner_order='any'` "
                             "(ONNX/TF boxes are continuous)")
        return "any"
    if s["plus_one"]:
        return "plus_one"
    return "tv"  # pragma: no mutate (the engine's default arithmetic: it tests only for "plus_one" and "any")


# --------------------------------------------------------------------------------------------------
# the public family
# --------------------------------------------------------------------------------------------------

def descending_order(scores: np.ndarray, *, ties: str = "lowest_index") -> np.ndarray:
    """Indices that sort ``scores`` from highest to lowest, with the tie and NaN rules of NMS.

    Parameters
    ----------
    scores : ndarray, shape (N,)
        Any real numbers; NaN allowed (integers are compared as float64, float16 as float32).
    ties : {"lowest_index", "highest_index"}
        ``"lowest_index"``: a stable descending sort (torchvision ``scores.sort(stable=True,
        descending=True)``, onnx.reference, onnxruntime's heap, TF's priority queue). NaN sorts
        above every number, several NaNs in index order (``torch.sort``); ``-0.0`` ties with ``0.0``.
        ``"highest_index"``: ``np.argsort(scores, kind="stable")[::-1]``, py-faster-rcnn's
        ``argsort()[::-1]`` (NumPy's default introsort is not stable; the stable sort is what
        py-faster-rcnn gives on small inputs and the only defined reading of it). NaN again first,
        several NaNs highest index first.

    Returns
    -------
    ndarray of int64, shape (N,)
        The visiting order of greedy NMS. Reference: :func:`refdet.reference.nms.visiting_order`.
    """
    _checks.check_choice(ties, "ties", _TIES)
    s = _checks.as_scores(scores, allow_nan=True)
    return _engine.descending(s, ties)


@conventions.documented("nms")
def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *,
        convention: Convention = "torchvision", inclusive: Optional[bool] = None,
        ties: Optional[str] = None, nan_scores: Optional[str] = None, plus_one: Optional[bool] = None,
        corner_order: Optional[str] = None, threshold_dtype: Optional[str] = None) -> np.ndarray:
    """Greedy non-maximum suppression.

    Sort the boxes by score (highest first); keep the first; drop every later box whose IoU with it
    exceeds ``iou_threshold`` (``>``; ``>=`` with ``inclusive``); repeat with the next box that is
    not dropped. Reference: :func:`refdet.reference.nms.nms` (that loop, one pair at a time).

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        ``(x1, y1, x2, y2)``. Finite. With ``corner_order="any"`` either diagonal is accepted.
    scores : ndarray, shape (N,)
        Any real numbers (negative and +-inf are fine); NaN per ``nan_scores``.
    iou_threshold : float
        In [0, 1] (``iou_threshold = 1`` keeps every box unless ``inclusive``). A value outside, or
        NaN, is a ValueError: ONNX ``NonMaxSuppression`` defines the threshold on [0, 1]
        (onnxruntime refuses others); torchvision accepts any float but an IoU lies in [0, 1], so a
        threshold outside means no more than 0 or 1 does and is almost always a mix-up.
    convention : str or conventions.Profile
        Sets the defaults of the keywords below (table at the end).
    inclusive : bool, optional
        ``False``: suppress when ``IoU > iou_threshold`` (an IoU exactly on the threshold is kept);
        ``True``: when ``IoU >= iou_threshold`` (py-faster-rcnn ``cpu_nms.pyx``).
    ties : {"lowest_index", "highest_index"}, optional
        Order of boxes with equal scores (:func:`descending_order`). With identical boxes and equal
        scores the lowest index survives (``"lowest_index"``) or the highest (``"highest_index"``,
        py-faster-rcnn). torchvision CUDA has no defined tie order (pytorch/vision#2157).
    nan_scores : {"first", "reject"}, optional
        ``"first"`` (torchvision): ``torch.sort`` puts NaN above every number, so a NaN-scored box is
        visited first, kept, and suppresses the boxes it overlaps (TV11: identical boxes scored
        ``[0.5, nan, 0.7]`` keep ``[1]``). Several NaNs are visited in index order
        (``"highest_index"``: reverse index order). ``"reject"``: ``ValueError``.
    plus_one : bool, optional
        Legacy pixel widths ``x2 - x1 + 1`` in areas and intersections (py-faster-rcnn, Detectron1,
        mmcv ``offset=1``): ``IoU([0,0,4,4], [0,0,4,2])`` is 8/16 = 0.5 continuous, 15/25 = 0.6 +1.
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
    integer boxes in float64. A 0/0 IoU (two zero-area boxes at one place) is NaN and never
    suppresses. The result depends only on the order of the scores, never on their dtype, and not
    on the memory layout of the inputs.

    Examples
    --------
    >>> b = np.array([[0, 0, 4, 4], [0, 0, 4, 2], [10, 10, 12, 12]], dtype=np.float32)
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5)            # IoU(0, 1) = 8/16 = 0.5, not > 0.5
    array([0, 1, 2])
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5, inclusive=True)
    array([0, 2])
    """
    s = conventions.resolve("nms", convention, inclusive=inclusive, ties=ties, nan_scores=nan_scores,
                            plus_one=plus_one, corner_order=corner_order, threshold_dtype=threshold_dtype)
    b = _checks.as_boxes(boxes)
    sc = _scores_checked(scores, len(b), s.nan_scores)
    thr = _checks.check_unit_threshold(iou_threshold, "iou_threshold")
    kind = _suppression_kind(s)
    order = _engine.descending(sc, s.ties)
    keep = _engine.greedy(b[order], thr, kind=kind, inclusive=s.inclusive, threshold_dtype=s.threshold_dtype)
    return order[keep]


@conventions.documented("batched_nms")
def batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float, *,
                convention: Convention = "torchvision", coordinate_trick: Union[bool, str, None] = None,
                inclusive: Optional[bool] = None, ties: Optional[str] = None,
                nan_scores: Optional[str] = None, plus_one: Optional[bool] = None,
                corner_order: Optional[str] = None, threshold_dtype: Optional[str] = None) -> np.ndarray:
    """Class-aware NMS: boxes suppress only boxes of the same category.

    The answer of :func:`nms` run on each category separately, merged in visiting order.
    Reference: :func:`refdet.reference.nms.batched_nms` (that loop over the categories).

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
    scores : ndarray, shape (N,)
    idxs : ndarray of int, shape (N,)
        Category (or FPN level, or image) of each box; any integers, compared for equality only.
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
    convention, inclusive, ties, nan_scores, plus_one, corner_order, threshold_dtype
        As :func:`nms`.

    Returns
    -------
    ndarray of int64, shape (K,)
        Kept indices in decreasing score order, ties per ``ties`` (torchvision's vanilla path sorts
        the kept indices, taken in increasing index order, by score: the same order).

    Examples
    --------
    Boxes 0 and 2 are identical but of different classes, so both stay; box 1 overlaps box 0 with IoU
    81 / 119 = 0.68 in the same class and goes.

    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], dtype=float)
    >>> batched_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.5)
    array([0, 2])
    """
    if isinstance(coordinate_trick, np.bool_):
        coordinate_trick = bool(coordinate_trick)
    s = conventions.resolve("batched_nms", convention, coordinate_trick=coordinate_trick,
                            inclusive=inclusive, ties=ties, nan_scores=nan_scores, plus_one=plus_one,
                            corner_order=corner_order, threshold_dtype=threshold_dtype)
    b = _checks.as_boxes(boxes)
    sc = _scores_checked(scores, len(b), s.nan_scores)
    cls = _checks.as_int_labels(idxs, "idxs", n=len(b))
    thr = _checks.check_unit_threshold(iou_threshold, "iou_threshold")
    kind = _suppression_kind(s)
    trick = s.coordinate_trick
    if trick == "torchvision":
        trick = len(b) <= 1000                  # torchvision: boxes.numel() <= 4000
    order = _engine.descending(sc, s.ties)
    if not len(b):
        return order
    knobs = dict(kind=kind, inclusive=s.inclusive, threshold_dtype=s.threshold_dtype)
    if trick:
        # torchvision: offsets = idxs.to(boxes) * (boxes.max() + 1); boxes + offsets[:, None]
        offsets = cls.astype(b.dtype) * (b.max() + b.dtype.type(1))
        shifted = b + offsets[:, None]
        return order[_engine.greedy(shifted[order], thr, **knobs)]
    # exact: boxes suppress only boxes of their own category, all in the global visiting order
    keep = np.sort(_engine.greedy(b[order], thr, groups=cls[order], **knobs))
    return order[keep]


class SoftNMSResult(NamedTuple):
    """Output of :func:`soft_nms`.

    Attributes
    ----------
    indices : ndarray of int64, shape (K,)
        Selected boxes, in selection order.
    scores : ndarray, shape (K,)
        Their scores after decay (the score each box had when it was selected).
    """
    indices: np.ndarray
    scores: np.ndarray


@conventions.documented("soft_nms")
def soft_nms(boxes: np.ndarray, scores: np.ndarray, *, method: str = "gaussian", sigma: float = 0.5,
             iou_threshold: float = 0.3, score_threshold: float = 0.001,
             convention: Convention = "torchvision",
             inclusive: Optional[bool] = None, plus_one: Optional[bool] = None,
             gaussian_denominator: Optional[str] = None, discard: Optional[str] = None,
             hard_above_threshold: Optional[bool] = None) -> SoftNMSResult:
    """Soft-NMS (Bodla et al. 2017): decay the scores of overlapping boxes instead of removing them.

    Repeat until no box is left: select the box with the highest current score; multiply the score
    of every remaining box by a weight that falls with its IoU with the selected box; drop the
    remaining boxes whose score fell below ``score_threshold``. Reference:
    :func:`refdet.reference.nms.soft_nms` (the paper's Algorithm 1 on the C loops' working array).

    Weights, with ``o`` the IoU::

        method="linear"    1 - o  if o > iou_threshold (o >= with inclusive=True), else 1
        method="gaussian"  exp(-o^2 / sigma)        gaussian_denominator="sigma"  (paper, Detectron1, mmcv)
                           exp(-0.5 * o^2 / sigma)  gaussian_denominator="2sigma" (TF, OpenVINO)
                           and 0 if o > iou_threshold when hard_above_threshold
        method="hard"      0      if o > iou_threshold (>= inclusive), else 1   (greedy NMS; mmcv "naive")

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), xyxy
    scores : ndarray, shape (N,)
        Finite or +-inf; NaN is rejected (a NaN would make the maximum undefined).
    method : {"gaussian", "linear", "hard"}
    sigma : float > 0
    iou_threshold : float in [0, 1]
        ``N_t`` of the paper (linear and hard methods; Gaussian only with ``hard_above_threshold``).
        Outside [0, 1] (or NaN) is a ValueError, as for :func:`nms`.
    score_threshold : float
        Boxes whose decayed score is ``< score_threshold`` (strict) are dropped (mmcv ``min_score``,
        Detectron1 ``threshold``). Any finite real (scores are any reals here, not probabilities). Only decayed boxes are tested: a box that starts below the
        threshold is dropped in the first pass (``discard="any"``) or only once it overlaps a
        selected box (``discard="overlapping"``, Detectron1), and the very first selection is never
        tested.
    convention : str or conventions.Profile
        torchvision has no Soft-NMS: its profile is the paper's formulas with torchvision's
        continuous boxes and strict ``>``. ``"mmdet"``: mmcv ``softnms_cpu``. ``"caffe"``: Detectron1
        ``cython_nms.soft_nms`` (+1 widths, strict ``>``, only overlapping boxes are dropped).
        ``"tf"``: the ``-0.5 / sigma`` scale, no hard threshold (TF's exact kernel, with its
        lazy decay, ``<=`` score cut and float32 ``expf``, is :func:`refdet.tf_ops.non_max_suppression`).
    inclusive, plus_one, gaussian_denominator, discard, hard_above_threshold : optional
        Override the profile (table at the end).

    Returns
    -------
    SoftNMSResult(indices, scores)
        ``indices``: int64, shape (K,), in selection order; ``scores``: the decayed scores, in the
        dtype of ``boxes`` and ``scores`` combined (float32 only if both are float32 or float16).

    Notes
    -----
    Selection and ties reproduce the C loops of Detectron1 and mmcv exactly: the boxes live in a
    working array; the maximum is found by a strict ``<`` scan (the **first** maximum in the working
    array wins), swapped into the current slot, and a dropped box is replaced by the **last** box of
    the array. So equal scores go to the lower index only until the first drop reorders the array.
    Arithmetic is in the working dtype (float32 boxes and scores: float32, mmcv's dtype); the C
    libraries' ``exp`` may differ from NumPy's by an ulp, so Gaussian Soft-NMS scores are exact only
    up to that. Two zero-area boxes at the same place have IoU 0/0 = NaN: the Gaussian weight, hence
    the score, becomes NaN, as in the C loops (such a box is never picked by the ``<`` scan before
    the others and never dropped). Cost: one vectorised pass per selected box.
    """
    st = conventions.resolve("soft_nms", convention, inclusive=inclusive, plus_one=plus_one,
                             gaussian_denominator=gaussian_denominator, discard=discard,
                             hard_above_threshold=hard_above_threshold)
    _checks.check_choice(method, "method", ("gaussian", "linear", "hard"))
    b = _checks.as_boxes(boxes)
    sc = _checks.as_scores(scores, n=len(b))
    sig = _checks.check_positive(sigma, "sigma")
    thr = _checks.check_unit_threshold(iou_threshold, "iou_threshold")
    smin = _checks.check_real(score_threshold, "score_threshold")
    dt = np.result_type(b.dtype, sc.dtype)
    ind, out = _engine.soft_nms_passes(
        b.astype(dt), sc.astype(dt), method=method, sigma=sig, iou_threshold=thr,
        score_threshold=smin, inclusive=st.inclusive, plus_one=st.plus_one,
        gaussian_denominator=st.gaussian_denominator, discard=st.discard,
        hard_above_threshold=st.hard_above_threshold)
    return SoftNMSResult(ind, out)


def onnx_non_max_suppression(boxes: np.ndarray, scores: np.ndarray, max_output_boxes_per_class: int = 0,
                             iou_threshold: float = 0.0, score_threshold: Optional[float] = None, *,
                             center_point_box: int = 0) -> np.ndarray:
    """The ONNX ``NonMaxSuppression`` operator (opset 10/11), with onnxruntime's exact semantics.

    Reference: :func:`refdet.reference.nms.onnx_non_max_suppression` (the operator specification's
    loop over (batch, class) pairs).

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
        kept). The specification defines the range [0, 1]; onnxruntime rejects values outside it.
    score_threshold : float, optional
        When given, only boxes with score **strictly greater** than it are candidates (a score equal
        to the threshold is dropped, TV11). ``None``: no score filter (negative scores are fine).
        Any finite real: the operator's scores are raw values, not probabilities, and the
        specification sets no range (a documented answer, not an out-of-range option).
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
    s = _checks.as_float_array(s, "scores",
                               finite=False)  # pragma: no mutate (None is falsy like False; inf is checked below)
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
            # the "onnx" profile's knobs: lower index first, '>', any corners, float32 threshold
            order = cand[_engine.descending(sc[cand],
                                            _ONNX["ties"])]  # pragma: no mutate (None reads as "lowest_index", the engine's default)
            keep = order[_engine.greedy(bb[order], thr, kind="any", threshold_dtype=_ONNX["threshold_dtype"],
                                        inclusive=_ONNX["inclusive"],  # pragma: no mutate (None is falsy like False)
                                        normalize=(cpb == 0))]
            keep = keep[:k_max]                   # greedy is prefix-stable: the first k_max selections
            rows = np.empty((len(keep), 3), dtype=np.int64)
            rows[:, 0], rows[:, 1], rows[:, 2] = bi, ci, keep
            out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)
