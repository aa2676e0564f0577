"""Hypothesis strategies for the YOLO family: grids, anchor points, YOLO targets, assigner inputs.

    from hypothesis import given
    from refdet.testing import strategies_yolo as ys

    @given(ys.tal_inputs())
    def test_my_assigner(case): ...

Every strategy returns NumPy arrays (or a dict of them). Coordinates are drawn on coarse grids by
default, so that equal scores, equal alignments, boxes touching anchor points and empty images
actually occur -- the cases where implementations disagree.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["pyramid_grids", "anchor_points", "yolo_targets", "gt_batches", "tal_inputs", "yolo_predictions",
           "box_sizes"]


@st.composite
def pyramid_grids(draw, *, min_levels=1, max_levels=3, max_cells=12, strides=(8, 16, 32, 64)):
    """A consistent pyramid: ``{"image_size": (H, W), "feature_sizes": [(h, w)...], "strides": [...]}``.

    Strides double level by level starting from ``strides[0]``; the image is a multiple of the
    largest stride, so every level is exactly ``image / stride`` (what ``make_anchors`` checks).
    """
    L = draw(st.integers(min_levels, min(max_levels, len(strides))))
    s = list(strides[:L])
    top = s[-1]
    k_h = draw(st.integers(1, max(1, max_cells * s[0] // top)))
    k_w = draw(st.integers(1, max(1, max_cells * s[0] // top)))
    H, W = k_h * top, k_w * top
    return {"image_size": (H, W), "feature_sizes": [(H // v, W // v) for v in s], "strides": [float(v) for v in s]}


@st.composite
def anchor_points(draw, **grid_kw):
    """``(points (N, 2) pixels, strides (N,), grid)``: ultralytics anchor points of a random pyramid."""
    from refdet.yolo.anchors import make_anchors

    g = draw(pyramid_grids(**grid_kw))
    p, s = make_anchors(g["feature_sizes"], g["strides"], dtype=np.float64)
    return p * s, s[:, 0], g


def box_sizes(*, min_n=1, max_n=40, low=1.0, high=200.0, grid=1.0):
    """Box widths and heights ``(N, 2)`` (> 0) on a grid (duplicates likely)."""
    k_lo, k_hi = int(np.ceil(low / grid)), int(np.floor(high / grid))
    return st.lists(st.tuples(st.integers(k_lo, k_hi), st.integers(k_lo, k_hi)), min_size=min_n,
                    max_size=max_n).map(lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 2) * grid)


@st.composite
def yolo_targets(draw, *, batch_size=2, max_t=8, num_classes=3, grid=1 / 64):
    """YOLOv5 label rows ``(T, 6)``: ``(image, class, x, y, w, h)`` normalised, on a 1/64 grid so that
    centres land exactly on cell borders and halves (the neighbour-cell thresholds)."""
    T = draw(st.integers(0, max_t))
    k = int(round(1 / grid))
    rows = []
    for _ in range(T):
        b = draw(st.integers(0, batch_size - 1))
        c = draw(st.integers(0, num_classes - 1))
        x = draw(st.integers(0, k)) / k
        y = draw(st.integers(0, k)) / k
        w = draw(st.integers(1, k)) / k
        h = draw(st.integers(1, k)) / k
        rows.append([b, c, x, y, w, h])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


@st.composite
def gt_batches(draw, *, batch_size=2, max_m=5, num_classes=4, image=(64, 64), grid=2.0, empty_ok=True):
    """Padded ground truths: ``(labels (B, M), boxes (B, M, 4) xyxy, mask (B, M))``; padded rows are 0."""
    M = draw(st.integers(0 if empty_ok else 1, max_m))
    H, W = image
    labels = np.zeros((batch_size, M), np.int64)
    boxes = np.zeros((batch_size, M, 4))
    mask = np.zeros((batch_size, M), bool)
    for b in range(batch_size):
        n = draw(st.integers(0 if empty_ok else min(1, M), M))
        for m in range(n):
            x1 = draw(st.integers(0, int(W / grid) - 1)) * grid
            y1 = draw(st.integers(0, int(H / grid) - 1)) * grid
            w = draw(st.integers(1, int(W / grid))) * grid
            h = draw(st.integers(1, int(H / grid))) * grid
            boxes[b, m] = [x1, y1, min(x1 + w, W), min(y1 + h, H)]
            labels[b, m] = draw(st.integers(0, num_classes - 1))
            mask[b, m] = True
    return labels, boxes, mask


@st.composite
def tal_inputs(draw, *, batch_size=2, num_classes=4, max_m=5, ties=True):
    """Inputs of a task-aligned assigner on a small pyramid (strides 8, 16, 32 over 64 x 64):
    ``dict(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask, strides, topk, alpha)``.

    With ``ties`` scores are multiples of 0.25 and boxes integer, so equal alignments, zero overlaps
    and boxes through anchor points occur; otherwise they are continuous.
    """
    from refdet.yolo.anchors import make_anchors

    strides = [8.0, 16.0, 32.0]
    ap, s = make_anchors([(8, 8), (4, 4), (2, 2)], strides, dtype=np.float64)
    pts = ap * s
    N = pts.shape[0]
    labels, boxes, mask = draw(gt_batches(batch_size=batch_size, max_m=max_m, num_classes=num_classes))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.random((batch_size, N, num_classes))
    c = rng.uniform(0, 64, (batch_size, N, 2))
    wh = rng.uniform(1, 40, (batch_size, N, 2))
    pb = np.concatenate([c - wh / 2, c + wh / 2], axis=-1)
    if ties:
        scores = np.round(scores * 4) / 4
        pb = np.round(pb)
        # some predictions copy a ground truth exactly (CIoU = 1 ties)
        if boxes.shape[1]:
            pick = rng.random((batch_size, N)) < 0.2
            src = rng.integers(0, boxes.shape[1], (batch_size, N))
            pb = np.where(pick[..., None], boxes[np.arange(batch_size)[:, None], src], pb)
    topk = draw(st.sampled_from([1, 3, 10, 13]))
    alpha = draw(st.sampled_from([0.5, 1.0]))
    return dict(pred_scores=scores, pred_boxes=pb, anchor_points=pts, gt_labels=labels, gt_boxes=boxes,
                gt_mask=mask, strides=strides, topk=topk, alpha=alpha)


@st.composite
def yolo_predictions(draw, *, max_batch=2, max_classes=5, max_extra=2, sizes=(0, 1, 5, 7, 40, 120),
                     ties=True, dtype=np.float32):
    """ultralytics-layout raw detections ``(B, 4 + K + E, N)``: xywh boxes, class scores in [0, 1],
    extra channels; with ``ties`` coordinates are integers and scores multiples of 0.1 (equal scores,
    identical boxes, IoUs exactly at common thresholds). Returns ``(prediction, K)``.

    N = 6 is avoided: ultralytics reads a last dimension of 6 as an end-to-end output.
    """
    B = draw(st.integers(1, max_batch))
    K = draw(st.integers(1, max_classes))
    E = draw(st.integers(0, max_extra))
    N = draw(st.sampled_from(sizes))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (B, N, 2))
    wh = rng.uniform(1, 40, (B, N, 2))
    sc = rng.random((B, N, K))
    if ties:
        xy, wh, sc = np.round(xy), np.round(wh), np.round(sc, 1)
    ex = rng.standard_normal((B, N, E))
    pred = np.concatenate([xy, wh, sc, ex], axis=-1).astype(dtype)
    return np.ascontiguousarray(pred.transpose(0, 2, 1)), K
