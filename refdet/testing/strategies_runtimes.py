"""Hypothesis strategies for the runtime operators of :mod:`refdet.runtimes` (OpenCV dnn, OpenVINO).

Each strategy returns a dict of keyword arguments (NumPy arrays and numbers) built to hit the edge
cases the runtimes define differently: rects and boxes on a coarse grid (identical, touching and
zero-area ones), scores drawn from a few levels (ties), score thresholds equal to a score, and IoU
thresholds equal to the IoU of some pair as the runtime computes it.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["opencv_rects", "opencv_nms_cases", "opencv_soft_nms_cases", "opencv_blob_cases", "openvino_nms_cases",
           "openvino_prior_box_cases", "openvino_prior_box_clustered_cases",
           "openvino_fake_quantize_cases", "openvino_roi_align_cases",
           "openvino_roi_pooling_cases", "openvino_interpolate_cases"]


@st.composite
def opencv_rects(draw, *, min_n=0, max_n=24, integer=None):
    """``(x, y, w, h)`` rects, shape (N, 4): int32 (``cv::Rect``) or float64 (``cv::Rect2d``) on a
    grid of 0.5; clustered so that overlaps are common; some rects repeated, some of zero width or
    height (and rarely negative)."""
    if integer is None:
        integer = draw(st.booleans())
    n = draw(st.integers(min_n, max_n))
    step = 1.0 if integer else 0.5
    xy = st.integers(-6, 24).map(lambda v: v * step)
    wh = st.one_of(st.integers(0, 14).map(lambda v: v * step), st.just(0.0), st.integers(-2, -1).map(float))
    rows = []
    for _ in range(n):
        if rows and draw(st.integers(0, 5)) == 0:
            rows.append(list(rows[draw(st.integers(0, len(rows) - 1))]))     # a duplicate
        else:
            rows.append([draw(xy), draw(xy), draw(wh), draw(wh)])
    arr = np.array(rows, np.float64).reshape(n, 4)
    return arr.astype(np.int32) if integer else arr


def _tied(draw, n):
    pool = draw(st.lists(st.sampled_from([0.05, 0.1, 0.25, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0]), min_size=1, max_size=4))
    one = st.one_of(st.sampled_from(pool), st.floats(0.0, 1.0, width=32))
    return np.array(draw(st.lists(one, min_size=n, max_size=n)), np.float32)


@st.composite
def opencv_nms_cases(draw, *, integer=None, batched=False, max_n=24):
    """Arguments of ``cv2.dnn.NMSBoxes``: ``rects, scores, score_threshold, nms_threshold, eta,
    top_k`` (and ``class_ids`` with ``batched=True``). The NMS threshold is often exactly the float32
    overlap of some pair as OpenCV computes it, the score threshold often equal to a score."""
    from refdet.runtimes.opencv import rect_overlap

    r = draw(opencv_rects(integer=integer, max_n=max_n))
    n = len(r)
    s = _tied(draw, n)
    sthr = float(draw(st.sampled_from([0.0, 0.0, 0.2, 0.5])))
    if n and draw(st.booleans()):
        sthr = float(s[draw(st.integers(0, n - 1))])
    thr = float(draw(st.sampled_from([0.0, 0.3, 0.4, 0.5, 0.7, 1.0])))
    if n >= 2 and draw(st.booleans()):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        o = float(rect_overlap(r[i:i + 1], r[j:j + 1])[0, 0])
        if np.isfinite(o) and o >= 0:
            thr = o
    case = dict(rects=r, scores=s, score_threshold=sthr, nms_threshold=thr,
                eta=float(draw(st.sampled_from([1.0, 1.0, 0.9, 0.7]))), top_k=int(draw(st.sampled_from([0, 0, 1, 3, 8]))))
    if batched:
        case["class_ids"] = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int32)
    return case


@st.composite
def opencv_soft_nms_cases(draw, *, max_n=20):
    """Arguments of ``cv2.dnn.softNMSBoxes``: int rects, tied scores, thresholds, ``top_k``, ``sigma``,
    ``method`` ("linear" or "gaussian")."""
    c = draw(opencv_nms_cases(integer=True, max_n=max_n))
    return dict(rects=c["rects"], scores=c["scores"], score_threshold=c["score_threshold"],
                nms_threshold=c["nms_threshold"], top_k=int(draw(st.sampled_from([0, 0, 2, 5]))),
                sigma=float(draw(st.sampled_from([0.5, 0.5, 0.1, 1.0]))),
                method=draw(st.sampled_from(["linear", "gaussian"])))


@st.composite
def openvino_nms_cases(draw, *, max_batch=2, max_classes=3, max_n=16):
    """Arguments of OpenVINO ``NonMaxSuppression-9``: ``boxes (B, N, 4)``, ``scores (B, C, N)``,
    ``max_output_boxes_per_class``, ``iou_threshold``, ``score_threshold``, ``soft_nms_sigma``,
    ``box_encoding``, ``sort_result_descending``. Boxes on a grid (ties, degenerate, flipped
    corners), tied scores, thresholds that are often a score or 0."""
    b = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, max_classes))
    n = draw(st.integers(0, max_n))
    enc = draw(st.sampled_from(["corner", "center"]))
    v = st.integers(-4, 20).map(lambda k: k * 0.5)
    boxes = np.array(draw(st.lists(st.lists(v, min_size=4, max_size=4), min_size=b * n, max_size=b * n)),
                     np.float32).reshape(b, n, 4)
    if enc == "center":
        boxes[..., 2:] = np.abs(boxes[..., 2:])
    if n and draw(st.booleans()):
        boxes[:, -1] = boxes[:, 0]                      # a duplicate box in every image
    scores = np.stack([_tied(draw, n) for _ in range(b * c)]).reshape(b, c, n) if n else \
        np.zeros((b, c, 0), np.float32)
    sthr = float(draw(st.sampled_from([0.0, 0.0, 0.25, 0.5])))
    if scores.size and draw(st.booleans()):
        sthr = float(scores.ravel()[draw(st.integers(0, scores.size - 1))])
    return dict(boxes=boxes, scores=scores,
                max_output_boxes_per_class=int(draw(st.sampled_from([0, 1, 3, 100]))),
                iou_threshold=float(draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))),
                score_threshold=sthr,
                soft_nms_sigma=float(draw(st.sampled_from([0.0, 0.0, 0.5, 1.0]))),
                box_encoding=enc, sort_result_descending=draw(st.booleans()))


@st.composite
def opencv_blob_cases(draw, *, max_side=24):
    """Arguments of ``cv2.dnn.blobFromImage``: ``image`` (H, W[, C]) uint8 or float32, ``scalefactor``,
    ``size`` (None, the image's own size, or another (width, height): float32 images only, with or
    without ``crop``), ``mean`` (1 to 4 values), ``swap_rb``, ``crop``."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    c = draw(st.sampled_from([1, 3, 3, 4]))
    dt = draw(st.sampled_from([np.uint8, np.float32]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, c)).astype(np.uint8) if dt == np.uint8 else \
        (rng.random((h, w, c)) * 255).astype(np.float32)
    if c == 1 and draw(st.booleans()):
        img = img[:, :, 0]
    size = None
    if dt == np.float32 and draw(st.booleans()):
        size = (draw(st.integers(1, max_side + 8)), draw(st.integers(1, max_side + 8)))
    elif draw(st.booleans()):
        size = (w, h)
    mean = tuple(draw(st.lists(st.sampled_from([0.0, 104.0, 117.0, 123.675, 0.5]), min_size=1, max_size=4)))
    return dict(image=img, scalefactor=float(draw(st.sampled_from([1.0, 1 / 255, 0.017, 2.0]))), size=size,
                mean=mean, swap_rb=draw(st.booleans()), crop=draw(st.booleans()))


@st.composite
def openvino_prior_box_cases(draw, *, max_side=5):
    """``dict(layer_shape, image_shape, attrs)`` for OpenVINO PriorBox-8: min/max sizes, aspect ratios
    (with duplicates and 1), flip, clip, step 0 or not, offset, variance (0, 1, 4 values),
    scale_all_sizes (MXNet mode), min_max_aspect_ratios_order, or fixed_size/density/fixed_ratio."""
    layer = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    image = (draw(st.integers(8, 320)), draw(st.integers(8, 320)))
    ar = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 2.0000001, 1.0 / 3]), max_size=3))
    var = draw(st.sampled_from([[], [0.1], [0.1, 0.1, 0.2, 0.2]]))
    common = dict(aspect_ratio=ar, flip=draw(st.booleans()), clip=draw(st.booleans()), variance=var,
                  offset=draw(st.sampled_from([0.5, 0.25, 1.0])))
    mode = draw(st.sampled_from(["ssd", "ssd", "mxnet", "fixed"]))
    if mode == "fixed":
        f = draw(st.lists(st.sampled_from([10.0, 16.0, 32.0, 7.5]), min_size=1, max_size=2))
        attrs = dict(common, fixed_size=f, density=[draw(st.sampled_from([1.0, 2.0, 3.0])) for _ in f],
                     fixed_ratio=draw(st.sampled_from([[], [2.0], [1.0, 0.5]])), step=draw(st.sampled_from([0.0, 8.0])))
    elif mode == "mxnet":
        mins = draw(st.lists(st.sampled_from([0.1, 0.2, 0.35, 0.5]), min_size=1, max_size=3, unique=True))
        attrs = dict(common, min_size=mins, scale_all_sizes=False, step=draw(st.sampled_from([0.0, 0.05])),
                     min_max_aspect_ratios_order=draw(st.booleans()))
    else:
        mins = draw(st.lists(st.sampled_from([8.0, 16.0, 30.0, 45.5, 60.0]), min_size=1, max_size=3, unique=True))
        maxs = [2.0 * m for m in mins][:draw(st.integers(0, len(mins)))]
        attrs = dict(common, min_size=mins, max_size=maxs, step=draw(st.sampled_from([0.0, 8.0, 16.5])),
                     min_max_aspect_ratios_order=draw(st.booleans()))
    from refdet.runtimes.openvino import prior_box
    try:
        prior_box(layer, image, **attrs)
    except ValueError:              # a combination OpenVINO miscounts (refused by refdet): drop fixed_ratio
        attrs["fixed_ratio"] = []
    return dict(layer_shape=layer, image_shape=image, attrs=attrs)


@st.composite
def openvino_prior_box_clustered_cases(draw, *, max_side=5):
    """``dict(layer_shape, image_shape, attrs)`` for OpenVINO PriorBoxClustered."""
    layer = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    image = (draw(st.integers(8, 320)), draw(st.integers(8, 320)))
    p = draw(st.integers(1, 4))
    sizes = st.sampled_from([4.0, 10.5, 30.0, 7.25, 64.0])
    attrs = dict(widths=[draw(sizes) for _ in range(p)], heights=[draw(sizes) for _ in range(p)],
                 clip=draw(st.booleans()), offset=draw(st.sampled_from([0.5, 0.25, 1.0])),
                 variance=draw(st.sampled_from([[], [0.1], [0.1, 0.1, 0.2, 0.2]])))
    for k in ("step_widths", "step_heights", "step"):
        v = draw(st.sampled_from([0.0, 0.0, 8.0, 16.0]))
        if v:
            attrs[k] = v
    return dict(layer_shape=layer, image_shape=image, attrs=attrs)


@st.composite
def openvino_fake_quantize_cases(draw, *, max_side=6):
    """``dict(x, input_low, input_high, output_low, output_high, levels)`` for OpenVINO FakeQuantize: x
    (1, C, H, W) float32 with values on the grid, on ties between grid points and on the range ends;
    scalar or per-channel (1, C, 1, 1) ranges; levels 2 to 256."""
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    levels = draw(st.sampled_from([2, 3, 16, 255, 256]))
    per_channel = draw(st.booleans())
    n = c if per_channel else 1
    il = np.array([draw(st.sampled_from([-1.0, -0.5, 0.0, -2.25, -128.0])) for _ in range(n)], np.float32)
    ih = il + np.array([draw(st.sampled_from([1.0, 2.0, 0.375, 5.0, 255.0])) for _ in range(n)], np.float32)
    ol = np.array([draw(st.sampled_from([-1.0, 0.0, -128.0])) for _ in range(n)], np.float32)
    oh = ol + np.array([draw(st.sampled_from([1.0, 255.0, 2.0])) for _ in range(n)], np.float32)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    lo, hi = float(il.min()), float(ih.max())
    k = rng.integers(0, 2 * levels - 1, size=(1, c, h, w))
    grid = lo + (hi - lo) * k / (2 * (levels - 1))                 # grid points and midpoints (ties)
    noise = lo - 1 + (hi - lo + 2) * rng.random((1, c, h, w))
    x = np.where(rng.random((1, c, h, w)) < 0.5, grid, noise).astype(np.float32)
    x.flat[0] = lo
    shape = (1, c, 1, 1) if per_channel else ()
    return dict(x=x, input_low=il.reshape(shape), input_high=ih.reshape(shape), output_low=ol.reshape(shape),
                output_high=oh.reshape(shape), levels=levels)


@st.composite
def openvino_roi_align_cases(draw, *, max_rois=6):
    """Arguments of OpenVINO ROIAlign-9: features (B, C, H, W) float32, rois (K, 4) on a 0.25 grid
    (some of zero size, some outside the map), batch indices, pooled size, sampling ratio (0 adaptive),
    spatial scale, mode, aligned_mode."""
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    feats = np.random.default_rng(seed).standard_normal((b, c, h, w)).astype(np.float32)
    k = draw(st.integers(1, max_rois))
    v = st.integers(-8, 48).map(lambda t: t * 0.25)
    rois = []
    for _ in range(k):
        x1, y1 = draw(v), draw(v)
        rois.append([x1, y1, x1 + abs(draw(v)) * draw(st.sampled_from([0, 1, 1])), y1 + abs(draw(v))])
    return dict(features=feats, rois=np.array(rois, np.float32), batch_indices=np.array(
        [draw(st.integers(0, b - 1)) for _ in range(k)], np.int32), pooled_h=draw(st.integers(1, 3)),
        pooled_w=draw(st.integers(1, 3)), sampling_ratio=draw(st.sampled_from([0, 0, 1, 2])),
        spatial_scale=draw(st.sampled_from([1.0, 0.5, 0.25])), mode=draw(st.sampled_from(["avg", "max"])),
        aligned_mode=draw(st.sampled_from(["asymmetric", "half_pixel_for_nn", "half_pixel"])))


@st.composite
def openvino_roi_pooling_cases(draw, *, max_rois=6):
    """Arguments of OpenVINO ROIPooling: features, rois (K, 5) (pixel coordinates for "max", normalised
    for "bilinear", some outside the map), output_size, spatial_scale, method."""
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    feats = np.random.default_rng(seed).standard_normal((b, c, h, w)).astype(np.float32)
    method = draw(st.sampled_from(["max", "bilinear"]))
    k = draw(st.integers(1, max_rois))
    unit = 0.125 if method == "bilinear" else 1.0
    v = st.integers(-2, 10).map(lambda t: t * unit) if method == "bilinear" else st.integers(-4, 40).map(float)
    rois = []
    for _ in range(k):
        x1, y1 = draw(v), draw(v)
        rois.append([draw(st.integers(0, b - 1)), x1, y1, x1 + abs(draw(v)), y1 + abs(draw(v))])
    return dict(features=feats, rois=np.array(rois, np.float32),
                output_size=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                spatial_scale=draw(st.sampled_from([1.0, 0.5, 0.25])), method=method)


@st.composite
def openvino_interpolate_cases(draw, *, max_side=9):
    """Arguments of OpenVINO Interpolate-11 with sizes: x (1, C, H, W) float32, sizes of axes (2, 3)
    (up, down, equal), mode (incl. the Pillow modes), coordinate_transformation_mode, nearest_mode (incl. "simple")."""
    from refdet.runtimes.openvino import INTERPOLATE_CTM, INTERPOLATE_NEAREST

    c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    x = np.random.default_rng(seed).standard_normal((1, c, h, w)).astype(np.float32)
    mode = draw(st.sampled_from(["nearest", "nearest", "linear", "linear_onnx", "cubic", "bilinear_pillow", "bicubic_pillow"]))
    ctm = draw(st.sampled_from([m for m in INTERPOLATE_CTM if mode == "nearest" or m != "tf_half_pixel_for_nn"]))
    return dict(x=x, sizes=[draw(st.integers(1, 2 * max_side)), draw(st.integers(1, 2 * max_side))], axes=[2, 3],
                mode=mode, coordinate_transformation_mode=ctm, nearest_mode=draw(st.sampled_from(INTERPOLATE_NEAREST)))
