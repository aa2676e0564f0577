"""Detection evaluation: PASCAL VOC and COCO average precision, exactly as the benchmarks compute it,
in the formats the ecosystem already uses.

Two entry points:

* :func:`evaluate_detections` matches detections to ground truths and returns the benchmark's
  numbers: ``style="coco"`` reproduces ``pycocotools.cocoeval.COCOeval`` (``evaluate()``,
  ``accumulate()``, ``summarize()``) for bounding boxes (:mod:`refdet.eval.coco`); ``style="voc"``
  reproduces the VOC devkit's ``voc_eval.py`` (:mod:`refdet.eval.voc`).
* :func:`average_precision` turns one precision/recall curve into a number (VOC2007 11-point,
  VOC2010+ all-point, or COCO 101-point interpolation; :mod:`refdet.eval.curves`), or gives the
  headline AP of a detection set.

Both accept every input format (:mod:`refdet.eval.formats`), detected from the input or named by
``format=``: refdet's columns (:mod:`refdet.eval.columns`), pycocotools' ground-truth dict and
results list or their JSON files, torchvision / torchmetrics per-image dicts, and VOC per-image
dicts with ``difficult`` flags. The command ``refdet eval GT.json RESULTS.json`` prints the
pycocotools summary.
"""
from refdet.eval.coco import COCO_AREA_RANGES, COCOResult
from refdet.eval.evaluate import average_precision, evaluate_detections
from refdet.eval.voc import VOCResult

__all__ = [
    "average_precision",
    "evaluate_detections",
    "COCOResult",
    "VOCResult",
    "COCO_AREA_RANGES",
]
