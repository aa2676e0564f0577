"""The input formats of :func:`refdet.eval.evaluate_detections`, detected and converted to refdet's columns.

``"refdet"``
    Two column mappings (:mod:`refdet.eval.columns`), ``xyxy`` unless ``box_format`` says otherwise.
``"coco"``
    pycocotools' ground-truth dict (``images`` / ``annotations`` / ``categories``; ``bbox`` in
    ``xywh``; optional ``iscrowd``, ``area``, ``ignore``, ``id``) and results list (``image_id``,
    ``category_id``, ``bbox`` in ``xywh``, ``score``), or paths to the JSON files holding them.
``"torchvision"``
    torchvision / torchmetrics per-image dicts: ``detections[i] = {"boxes": (N, 4), "scores": (N,),
    "labels": (N,)}``, ``ground_truths[i] = {"boxes": (M, 4), "labels": (M,)}`` with optional
    ``"iscrowd"`` and ``"area"`` (M,) (and refdet's own ``"ignore"`` regions, as in its columns);
    boxes ``xyxy`` (torchmetrics' default ``box_format``). Arrays
    may be NumPy arrays, lists or CPU tensors (anything with ``.detach().cpu().numpy()``).
``"voc"``
    The same per-image dicts with ``ground_truths[i]["difficult"]`` (M,) flags; evaluated VOC-style
    (``voc_eval.py``) unless ``style="coco"`` is asked for.

How each is read, and where it differs from the library it comes from:

* COCO: image and category ids are those of ``images`` and ``categories`` (every image counts, with
  or without annotations; ``COCOeval`` evaluates ``sorted(getImgIds())`` x ``sorted(getCatIds())``).
  Image ids may be integers or strings; category ids are integers. A missing ``area`` defaults to
  ``w * h`` and a missing ``iscrowd`` to 0 (pycocotools would raise ``KeyError``). ``ignore`` is
  read and has no effect, as in pycocotools, whose ``_prepare`` overwrites it with ``iscrowd``.
  A result whose image is not among ``images`` is refused (pycocotools asserts); so is one whose
  category is not among ``categories`` (pycocotools silently drops it), and an annotation whose image
  or category is unknown (pycocotools silently skips it). Duplicate annotation ids are refused:
  pycocotools would evaluate the last annotation with that id in place of each. An empty results list
  is valid (pycocotools' ``loadRes`` fails on it): every AP is 0.
* torchvision / voc: image ``i`` is the i-th dict (any ``"image_id"`` entry is not used); the
  classes are the labels present in the ground truths or the detections (torchmetrics'
  ``MeanAveragePrecision._get_classes``), so a class seen only in detections has precision -1.
  Boxes are converted to float64 and to ``xywh`` (COCO style) in float64.
* JSON files are read as untrusted input: at most ``max_json_bytes`` bytes (checked before
  reading), UTF-8, standard JSON; too deep a nesting, an integer with thousands of digits or a field
  of the wrong kind gives a ``ValueError`` naming the file and the field, never a crash.
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from refdet import _checks, _files

FORMATS = ("refdet", "coco", "torchvision", "voc")

#: Largest JSON file read by default (COCO's train2017 instances file is 0.45 GB).
DEFAULT_MAX_JSON_BYTES = 1 << 30

_MISSING = object()


class Converted(NamedTuple):
    detections: dict
    ground_truths: dict
    box_format: str
    class_names: tuple


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------

def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def detect_format(detections: Any, ground_truths: Any) -> str:
    """The format of a (detections, ground truths) pair, read from the ground truths' structure.

    A path or a mapping with ``annotations`` (or ``images`` and ``categories``) is ``"coco"``; a
    mapping with ``boxes`` is ``"refdet"``; a list of mappings is ``"voc"`` if any of them has
    ``difficult`` flags, else ``"torchvision"``.
    """
    gt = ground_truths
    if _is_path(gt):
        return "coco"
    if isinstance(gt, Mapping):
        if "annotations" in gt or ("images" in gt and "categories" in gt):
            return "coco"
        if "boxes" in gt:
            return "refdet"
        raise ValueError("`ground_truths` is a mapping but neither COCO's (images, annotations, categories) "
                         f"nor refdet's columns (image_id, boxes, labels); got keys {sorted(map(str, gt))}")
    if isinstance(gt, (list, tuple)) and all(isinstance(t, Mapping) for t in gt):
        return "voc" if any("difficult" in t for t in gt) else "torchvision"
    raise TypeError("`ground_truths` must be refdet's column mapping, a COCO dict or JSON path, or a list of "
                    f"per-image dicts (torchvision, voc); got {_checks._describe(gt)}")


# --------------------------------------------------------------------------------------------
# JSON files
# --------------------------------------------------------------------------------------------

def read_json(path, what: str, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Any:
    """Parse the JSON file ``path`` (untrusted): size-bounded, errors as one-line ``ValueError``.

    ``what`` describes the file in messages ("ground-truth file"). Nesting deeper than Python's
    recursion limit is refused by the parser (``RecursionError``, reported as a ValueError); so are
    integers beyond Python's digit limit, invalid UTF-8 and anything that is not JSON. The reader is
    shared with the model files of :mod:`refdet.exchange` (:func:`refdet._files.read_json`).
    """
    return _files.read_json(path, what, max_bytes)


# --------------------------------------------------------------------------------------------
# Fields of lists of records (COCO)
# --------------------------------------------------------------------------------------------

class _Where:
    """Names a place in an input for error messages: ``gt.json['annotations'][3]['bbox']`` for a
    file, ``` `ground_truths['annotations'][3]['bbox']` ``` for an object passed in."""

    def __init__(self, base: str, is_file: bool):
        self.base, self.is_file = base, is_file

    def __call__(self, suffix: str = "") -> str:
        return f"{self.base}{suffix}" if self.is_file else f"`{self.base}{suffix}`"


def _records(seq, where: _Where, suffix: str) -> list:
    if not isinstance(seq, (list, tuple)):
        raise ValueError(f"{where(suffix)} must be a list of objects; got {_checks._describe(seq)}")
    if all(issubclass(t, Mapping) for t in set(map(type, seq))):  # one check per type, not per record
        return seq
    i = next(i for i, r in enumerate(seq) if not isinstance(r, Mapping))
    raise ValueError(f"{where(f'{suffix}[{i}]')} must be an object (dict); got {_checks._describe(seq[i])}")


def _get(records, key, where, suffix, default=_MISSING) -> list:
    if default is not _MISSING:
        return [r.get(key, default) for r in records]
    try:
        return [r[key] for r in records]
    except KeyError:
        i = next(i for i, r in enumerate(records) if key not in r)
        raise ValueError(f"{where(f'{suffix}[{i}]')} has no {key!r} entry") from None


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _ids(vals, where, suffix, key, *, allow_str: bool) -> np.ndarray:
    """Integer ids as int64 (integral floats accepted: pycocotools' dict keys compare 1.0 == 1), or,
    if ``allow_str``, all-string ids as a str array."""
    n = len(vals)
    types = set(map(type, vals))
    if allow_str and types == {str}:
        return np.array(vals, dtype=str).reshape(n)
    if not all(issubclass(t, numbers.Integral) and t is not bool for t in types):
        if allow_str and str in types:  # strings mixed with other ids
            i = next(i for i, v in enumerate(vals) if not isinstance(v, str))
            raise ValueError(f"{where(f'{suffix}[{i}][{key!r}]')} must be a string id like the others; "
                             f"got {vals[i]!r}")
        for i, v in enumerate(vals):
            if not (_is_int(v) or (isinstance(v, float) and v.is_integer())):
                raise ValueError(f"{where(f'{suffix}[{i}][{key!r}]')} must be an integer id; got {v!r}")
        vals = [int(v) for v in vals]
    try:
        return np.array(vals, dtype=np.int64).reshape(n)
    except OverflowError:
        i = next(i for i, v in enumerate(vals) if not -2 ** 63 <= v < 2 ** 63)
        raise ValueError(f"{where(f'{suffix}[{i}][{key!r}]')} does not fit in 64 bits; got {vals[i]}") from None


def _numbers(vals, where, suffix, key, *, width: int = 0, allow_bool: bool = False) -> np.ndarray:
    """Finite float64 numbers: (n,) if ``width`` is 0, else (n, width)."""
    n = len(vals)
    shape = (n, width) if width else (n,)
    arr = None
    try:
        arr = np.array(vals)
    except (ValueError, TypeError):
        pass
    kinds = "iufb" if allow_bool else "iuf"
    if arr is not None and arr.dtype.kind in kinds and arr.shape == shape:
        out = arr.astype(np.float64)
        if np.isfinite(out).all():
            return out
        i = int(np.argwhere(~np.isfinite(out))[0][0])
        raise ValueError(f"{where(f'{suffix}[{i}][{key!r}]')} must be finite; got {vals[i]!r}")
    if n == 0:
        return np.zeros(shape)
    want = f"a list of {width} numbers" if width else "a number"
    for i, v in enumerate(vals):
        items = v if width and isinstance(v, (list, tuple)) else [v]
        if (width and (not isinstance(v, (list, tuple)) or len(v) != width)) or not all(
                isinstance(x, numbers.Real) and (allow_bool or not isinstance(x, bool)) for x in items):
            raise ValueError(f"{where(f'{suffix}[{i}][{key!r}]')} must be {want}; got {_checks._describe(v)}")
    raise ValueError(f"{where(f'{suffix}[*][{key!r}]')} must be {want} in every entry")


def _lookup(ids, known, where, suffix, key, what):
    """Positions of ``ids`` in the sorted unique ``known``, or the error naming the first unknown one."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    if known.dtype.kind != ids.dtype.kind and not (known.dtype.kind in "iu" and ids.dtype.kind in "iu"):
        raise ValueError(f"{where(f'{suffix}[0][{key!r}]')} is a {'string' if ids.dtype.kind == 'U' else 'number'}"
                         f" but the {what} ids are {'strings' if known.dtype.kind == 'U' else 'numbers'}")
    pos = np.searchsorted(known, ids)
    bad = (pos >= len(known)) | (known[np.minimum(pos, len(known) - 1)] != ids) if len(known) else \
        np.ones(len(ids), dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(f'{suffix}[{i}][{key!r}]')} = {ids[i].item()!r} is not among the {what} ids")
    return pos


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------

def _coco_ground_truths(gt, where: _Where):
    if not isinstance(gt, Mapping):
        raise ValueError(f"{where()} must be a COCO dataset object (images, annotations, categories); "
                         f"got {_checks._describe(gt)}")
    for key in ("images", "categories"):
        if key not in gt:
            raise ValueError(f"{where()} has no {key!r} list (a COCO ground-truth dataset needs images, "
                             f"annotations and categories)")
    images = _records(gt["images"], where, "['images']")
    cats = _records(gt["categories"], where, "['categories']")
    anns = _records(gt.get("annotations", []), where, "['annotations']")
    img_ids = np.unique(_ids(_get(images, "id", where, "['images']"), where, "['images']", "id", allow_str=True))
    cat_list = _ids(_get(cats, "id", where, "['categories']"), where, "['categories']", "id", allow_str=False)
    cat_ids, first = np.unique(cat_list, return_index=True)
    names = tuple(str(cats[i].get("name", cat_ids[j])) for j, i in enumerate(first))
    s = "['annotations']"
    a_img = _ids(_get(anns, "image_id", where, s), where, s, "image_id", allow_str=True)
    a_cat = _ids(_get(anns, "category_id", where, s), where, s, "category_id", allow_str=False)
    boxes = _numbers(_get(anns, "bbox", where, s), where, s, "bbox", width=4)
    area_raw = _get(anns, "area", where, s, default=None)
    if any(v is None for v in area_raw):
        area_raw = [b[2] * b[3] if v is None else v for v, b in zip(area_raw, boxes.tolist())]
    area = _numbers(area_raw, where, s, "area")
    crowd = _numbers(_get(anns, "iscrowd", where, s, default=0), where, s, "iscrowd", allow_bool=True) != 0
    cols = {"image_id": _lookup(a_img, img_ids, where, s, "image_id", "image"),
            "labels": cat_ids[_lookup(a_cat, cat_ids, where, s, "category_id", "category")],
            "boxes": boxes, "area": area, "iscrowd": crowd,
            "images": np.arange(len(img_ids)), "classes": cat_ids}
    raw_ids = _get(anns, "id", where, s, default=None)
    if any(v is not None for v in raw_ids):
        ids = _ids(_get(anns, "id", where, s), where, s, "id", allow_str=False)
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1][0]
            i = [int(j) for j in np.flatnonzero(ids == dup)[:2]]
            raise ValueError(f"{where(f'{s}[{i[1]}][' + repr('id') + ']')} repeats annotation id {dup} of "
                             f"{s}[{i[0]}] (pycocotools would evaluate one of them twice)")
        cols["annotation_id"] = ids
    return cols, img_ids, cat_ids, names


def _coco_results(res, where: _Where, img_ids, cat_ids):
    if not isinstance(res, (list, tuple)):
        raise ValueError(f"{where()} must be a COCO results list (objects with image_id, category_id, bbox, "
                         f"score); got {_checks._describe(res)}")
    res = _records(res, where, "")
    r_img = _ids(_get(res, "image_id", where, ""), where, "", "image_id", allow_str=True)
    r_cat = _ids(_get(res, "category_id", where, ""), where, "", "category_id", allow_str=False)
    return {"image_id": _lookup(r_img, img_ids, where, "", "image_id", "ground truths' image"),
            "labels": cat_ids[_lookup(r_cat, cat_ids, where, "", "category_id", "ground truths' category")],
            "boxes": _numbers(_get(res, "bbox", where, ""), where, "", "bbox", width=4),
            "scores": _numbers(_get(res, "score", where, ""), where, "", "score")}


def _coco(detections, ground_truths, box_format, max_bytes) -> Converted:
    if box_format not in (None, "xywh"):
        raise ValueError(f"`box_format` must be 'xywh' (or None) for COCO input, whose boxes are [x, y, w, h]; "
                         f"got {box_format!r}")
    if _is_path(ground_truths):
        gt, gw = read_json(ground_truths, "`ground_truths`: ground-truth file", max_bytes), \
            _Where(os.fspath(ground_truths), True)
    else:
        gt, gw = ground_truths, _Where("ground_truths", False)
    if _is_path(detections):
        dt, dw = read_json(detections, "`detections`: results file", max_bytes), _Where(os.fspath(detections), True)
    else:
        dt, dw = detections, _Where("detections", False)
    gt_cols, img_ids, cat_ids, names = _coco_ground_truths(gt, gw)
    return Converted(_coco_results(dt, dw, img_ids, cat_ids), gt_cols, "xywh", names)


# --------------------------------------------------------------------------------------------
# torchvision / torchmetrics / VOC per-image dicts
# --------------------------------------------------------------------------------------------

def _np(x):
    """A CPU tensor (torch) as NumPy without importing torch; anything else unchanged."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        return x.detach().cpu().numpy()
    return x


def _per_image(detections, ground_truths, box_format) -> Converted:
    if not isinstance(detections, (list, tuple)) or not all(isinstance(d, Mapping) for d in detections):
        raise TypeError(f"`detections` must be a list of per-image dicts (boxes, scores, labels) like "
                        f"`ground_truths`; got {_checks._describe(detections)}")
    if len(detections) != len(ground_truths):
        raise ValueError(f"`detections` and `ground_truths` must have one dict per image each; got "
                         f"{len(detections)} and {len(ground_truths)}")
    gt_parts = {k: [] for k in ("boxes", "labels", "iscrowd", "area", "difficult", "ignore")}
    dt_parts = {k: [] for k in ("boxes", "scores", "labels")}
    g_count, d_count = [], []
    for i, (d, t) in enumerate(zip(detections, ground_truths)):
        for key in ("boxes", "labels"):
            if key not in t:
                raise ValueError(f"`ground_truths[{i}]` must have a {key!r} entry; got keys {sorted(map(str, t))}")
        for key in ("boxes", "scores", "labels"):
            if key not in d:
                raise ValueError(f"`detections[{i}]` must have a {key!r} entry; got keys {sorted(map(str, d))}")
        tb = _checks.as_boxes(_np(t["boxes"]), f"ground_truths[{i}]['boxes']", dtype=np.float64)
        m = len(tb)
        gt_parts["boxes"].append(tb)
        gt_parts["labels"].append(_checks.as_int_labels(_np(t["labels"]), f"ground_truths[{i}]['labels']", n=m))
        for key in ("iscrowd", "difficult", "ignore"):
            if key in t:
                a = _checks.as_array(_np(t[key]), f"ground_truths[{i}][{key!r}]")
                if a.shape != (m,):
                    raise ValueError(f"`ground_truths[{i}][{key!r}]` must have shape ({m},); got {a.shape}")
                gt_parts[key].append(a)  # made bool once, after the concatenation below
            else:
                gt_parts[key].append(np.zeros(m))
        if "area" in t:
            a = _checks.as_float_array(_np(t["area"]), f"ground_truths[{i}]['area']", ndim=1, dtype=np.float64)
            if a.shape != (m,):
                raise ValueError(f"`ground_truths[{i}]['area']` must have shape ({m},); got {a.shape}")
            gt_parts["area"].append(a)
        else:
            gt_parts["area"].append(None)
        db = _checks.as_boxes(_np(d["boxes"]), f"detections[{i}]['boxes']", dtype=np.float64)
        n = len(db)
        dt_parts["boxes"].append(db)
        dt_parts["scores"].append(_checks.as_scores(_np(d["scores"]), f"detections[{i}]['scores']", n=n,
                                                    dtype=np.float64))
        dt_parts["labels"].append(_checks.as_int_labels(_np(d["labels"]), f"detections[{i}]['labels']", n=n))
        g_count.append(m)
        d_count.append(n)
    n_img = len(ground_truths)
    fmt_in = "xyxy" if box_format is None else _checks.check_choice(box_format, "box_format",
                                                                      ("xyxy", "xywh", "cxcywh", "yxyx"))

    def cat(parts, width=0):
        return np.concatenate(parts) if parts else np.zeros((0, width) if width else 0)

    gt = {"image_id": np.repeat(np.arange(n_img), g_count), "boxes": cat(gt_parts["boxes"], 4),
          "labels": cat(gt_parts["labels"]).astype(np.int64),
          **{k: cat(gt_parts[k]).astype(bool) for k in ("iscrowd", "difficult", "ignore")},
          "images": np.arange(n_img)}
    dt = {"image_id": np.repeat(np.arange(n_img), d_count), "boxes": cat(dt_parts["boxes"], 4),
          "scores": cat(dt_parts["scores"]), "labels": cat(dt_parts["labels"]).astype(np.int64)}
    if any(a is not None for a in gt_parts["area"]):
        # images without an "area" entry get their boxes' areas in COCO's xywh form
        from refdet.boxes import box_convert
        parts = []
        for a, b in zip(gt_parts["area"], gt_parts["boxes"]):
            if a is None:
                wh = box_convert(b, fmt_in, "xywh")  # (0, 4) for an image without boxes
                a = wh[:, 2] * wh[:, 3]
            parts.append(a)
        gt["area"] = cat(parts)
    gt["classes"] = np.union1d(gt["labels"], dt["labels"])
    return Converted(dt, gt, fmt_in, ())


def convert(detections: Any, ground_truths: Any, fmt: str, box_format,
            max_json_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Converted:
    """Detections and ground truths of format ``fmt`` as refdet's columns."""
    if fmt == "coco":
        return _coco(detections, ground_truths, box_format, max_json_bytes)
    if fmt in ("torchvision", "voc"):
        if not isinstance(ground_truths, (list, tuple)) or not all(isinstance(t, Mapping) for t in ground_truths):
            raise TypeError(f"`ground_truths` must be a list of per-image dicts (boxes, labels, ...) for "
                            f"format={fmt!r}; got {_checks._describe(ground_truths)}")
        return _per_image(detections, ground_truths, box_format)
    return Converted(detections, ground_truths, "xyxy" if box_format is None else box_format, ())
