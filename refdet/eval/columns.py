"""refdet's own evaluation format: one row per box, validated, and grouped by (image, class).

Every other format (:mod:`refdet.eval.formats`) is converted to these columns first::

    detections    = {"image_id": (D,) int, "boxes": (D, 4), "scores": (D,), "labels": (D,) int}
    ground_truths = {"image_id": (G,) int, "boxes": (G, 4), "labels": (G,) int,
                     # optional:
                     "iscrowd": (G,) bool,        # COCO crowd regions (matched by inter / det area)
                     "area": (G,) float,          # COCO's annotation area (default: box area)
                     "ignore": (G,) bool,         # refdet: ignore regions that are not crowds
                     "difficult": (G,) bool,      # VOC "difficult" flags
                     "annotation_id": (G,) int,   # COCO annotation ids (only id 0 matters, see below)
                     "images": (I,) int,          # every image id, including images without boxes
                     "classes": (K,) int}         # every class id, including classes without boxes

Matching works on *pairs*: every detection against every ground truth of its own image and class
(the pairs ``COCOeval.computeIoU`` and ``voc_eval`` compute), held in flat arrays and built in
chunks, so that memory grows with the number of pairs and one crowded image does not pad every
other image to its size.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Tuple

import numpy as np

from refdet import _checks

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")

# Pairs held at once while matching: a bound on temporary memory (about 40 bytes a pair per
# (area range, IoU threshold) cell in the COCO step), not a limit on the input.
_PAIR_CHUNK = 1 << 21


def _column(mapping, key, name, *, required=True):
    if key not in mapping:
        if required:
            raise ValueError(f"`{name}` must have a {key!r} entry; got keys {sorted(map(str, mapping))}")
        return None
    return mapping[key]


def _flags(ground_truths, key, g):
    if key not in ground_truths:
        return np.zeros(g, dtype=bool)
    a = _checks.as_array(ground_truths[key], f"ground_truths[{key!r}]")
    if a.shape != (g,):
        raise ValueError(f"`ground_truths[{key!r}]` must have shape ({g},); got {a.shape}")
    return a.astype(bool)


def prepare(detections, ground_truths, box_format: str) -> dict:
    """Validate the two column mappings; return float64 / int64 arrays, ids mapped to positions.

    Image and class ids become positions in the sorted ``images`` / ``classes`` (``COCOeval``
    evaluates ``sorted(getImgIds())`` and ``sorted(getCatIds())``, and ties between detections of
    different images are broken in that order). Nothing passed in is written to.
    """
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

    images = _column(ground_truths, "images", "ground_truths", required=False)
    images = np.unique(gt_img) if images is None else np.unique(
        _checks.as_int_labels(images, "ground_truths['images']"))
    classes = _column(ground_truths, "classes", "ground_truths", required=False)
    classes = np.unique(gt_lab) if classes is None else np.unique(
        _checks.as_int_labels(classes, "ground_truths['classes']"))
    known_of = {"image": "`ground_truths['images']`, else `ground_truths['image_id']`",
                "class": "`ground_truths['classes']`, else `ground_truths['labels']`"}
    for ids, known, what, nm in ((dt_img, images, "image", "detections['image_id']"),
                                 (dt_lab, classes, "class", "detections['labels']"),
                                 (gt_img, images, "image", "ground_truths['image_id']"),
                                 (gt_lab, classes, "class", "ground_truths['labels']")):
        unknown = np.setdiff1d(ids, known)
        if unknown.size:
            raise ValueError(f"`{nm}` refers to unknown {what} ids {unknown[:5].tolist()} "
                             f"(the known {what} ids are those of {known_of[what]})")
    fmt = _checks.check_choice(box_format, "box_format", BOX_FORMATS)
    gt_xywh = box_convert(gt_boxes, fmt, "xywh") if fmt != "xywh" else gt_boxes
    dt_xywh = box_convert(dt_boxes, fmt, "xywh") if fmt != "xywh" else dt_boxes
    gt_xyxy = box_convert(gt_boxes, fmt, "xyxy") if fmt != "xyxy" else gt_boxes
    dt_xyxy = box_convert(dt_boxes, fmt, "xyxy") if fmt != "xyxy" else dt_boxes
    area = _column(ground_truths, "area", "ground_truths", required=False)
    if area is None:
        gt_area = gt_xywh[:, 2] * gt_xywh[:, 3]
    else:
        gt_area = _checks.as_float_array(area, "ground_truths['area']", ndim=1, dtype=np.float64)
        if gt_area.shape != (g,):
            raise ValueError(f"`ground_truths['area']` must have shape ({g},); got {gt_area.shape}")
    ann_id = _column(ground_truths, "annotation_id", "ground_truths", required=False)
    zero_id = np.zeros(g, dtype=bool) if ann_id is None else (
        _checks.as_int_labels(ann_id, "ground_truths['annotation_id']", n=g) == 0)
    return dict(
        images=images, classes=classes,
        gt_xywh=gt_xywh, gt_img=np.searchsorted(images, gt_img), gt_cat=np.searchsorted(classes, gt_lab),
        gt_area=gt_area, gt_crowd=_flags(ground_truths, "iscrowd", g),
        gt_ignore=_flags(ground_truths, "ignore", g), gt_difficult=_flags(ground_truths, "difficult", g),
        gt_zero_id=zero_id, gt_xyxy=gt_xyxy,
        dt_xywh=dt_xywh, dt_img=np.searchsorted(images, dt_img), dt_cat=np.searchsorted(classes, dt_lab),
        dt_score=dt_score, dt_xyxy=dt_xyxy,
    )


class Groups(NamedTuple):
    """Detections and ground truths grouped by (image, class).

    Attributes
    ----------
    gt_sorted : ndarray, shape (G,)
        Ground-truth indices ordered by group, input order inside a group.
    gt_start, gt_count : ndarray, shape (n_groups,)
        Where each group's ground truths sit in ``gt_sorted``.
    dt_group : ndarray, shape (D,)
        The group of each detection.
    rank : ndarray, shape (D,)
        The detection's place in its group by descending score, ties in input order (the
        stable ``np.argsort(-scores, kind="mergesort")`` of ``COCOeval.evaluateImg``).
    dt_order : ndarray, shape (D,)
        Detections ordered by (group, rank).
    """
    gt_sorted: np.ndarray
    gt_start: np.ndarray
    gt_count: np.ndarray
    dt_group: np.ndarray
    rank: np.ndarray
    dt_order: np.ndarray


def groups(p: dict) -> Groups:
    k = len(p["classes"])
    g_key = p["gt_img"] * k + p["gt_cat"]
    d_key = p["dt_img"] * k + p["dt_cat"]
    keys = np.unique(np.concatenate([g_key, d_key]))
    g_grp = np.searchsorted(keys, g_key)
    d_grp = np.searchsorted(keys, d_key)
    n_grp = len(keys)
    gt_sorted = np.lexsort((g_grp,))  # a stable sort: input order inside a group
    gt_count = np.bincount(g_grp, minlength=n_grp)
    gt_start = np.cumsum(gt_count) - gt_count
    d = len(d_grp)
    dt_order = np.lexsort((np.arange(d), -p["dt_score"], d_grp))
    d_count = np.bincount(d_grp)  # groups past the last one with a detection repeat nothing
    d_start = np.cumsum(d_count) - d_count
    rank = np.empty_like(dt_order)
    rank[dt_order] = np.arange(d) - np.repeat(d_start, d_count)
    return Groups(gt_sorted, gt_start, gt_count, d_grp, rank, dt_order)


def pairs(grp: Groups, dets: np.ndarray) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every (detection, ground truth of its image and class) pair, in chunks of whole detections.

    Yields ``(chunk, pair_det, pair_gt)``: ``chunk`` the detections of this chunk (a slice of
    ``dets``, same order), and for each pair the position of its detection in ``chunk`` and its
    ground-truth index; a detection's pairs are contiguous, ground truths in input order.
    """
    count = grp.gt_count[grp.dt_group[dets]]
    ends = np.cumsum(count)
    lo = 0
    while lo < len(dets):
        # as many whole detections as fit in one chunk (at least one)
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right")))
        chunk = dets[lo:hi]
        c = count[lo:hi]
        n_pairs = int(c.sum())
        pair_det = np.repeat(np.arange(len(chunk)), c)
        first = np.cumsum(c) - c
        offset = np.arange(n_pairs) - np.repeat(first, c)
        pair_gt = grp.gt_sorted[np.repeat(grp.gt_start[grp.dt_group[chunk]], c) + offset]
        yield chunk, pair_det, pair_gt
        lo = hi
