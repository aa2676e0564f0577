"""Hypothesis strategies for TensorFlow's operators (:mod:`refdet.tf_ops`): ties, thresholds hit
exactly, degenerate and flipped boxes, empty sets.

Each strategy draws one complete argument tuple of the op, in the order of the ``refdet.tf_ops``
function (and of the ``fn`` a :mod:`refdet.testing.conformance_tf` check calls).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from refdet.testing import strategies as rst

__all__ = ["tf_nms_cases", "tf_combined_nms_cases", "tf_crop_cases", "tf_resize_cases", "flush_subnormals"]


def flush_subnormals(a: np.ndarray) -> np.ndarray:
    """``a`` with subnormal values replaced by zero of the same sign.

    TF runs its CPU kernels with denormals flushed to zero (``port::ScopedFlushDenormal`` in the
    executor: FTZ and DAZ set), so a subnormal score or coordinate is 0 to TF and not to NumPy;
    the strategies leave that one difference out (it is written down, not reproduced).
    """
    a = np.array(a, copy=True)
    tiny = np.finfo(a.dtype).tiny
    a[np.abs(a) < tiny] *= 0
    return a


@st.composite
def tf_nms_cases(draw, *, soft=None, max_n=30):
    """``(boxes (N, 4) float32, scores (N,) float32, max_output_size, iou_threshold, score_threshold,
    soft_nms_sigma)``.

    Boxes and the IoU threshold come from :func:`refdet.testing.strategies.nms_inputs` (grid boxes,
    identical and zero-area ones, flipped corners, a threshold equal to some pair's float32 IoU,
    kept within TF's [0, 1]); the score threshold is often one of the scores (hit exactly) or
    -inf; ``max_output_size`` is sometimes below the number of survivors. ``soft``: True draws a
    positive sigma, False 0, None either.
    """
    b, s, thr = draw(rst.nms_inputs(max_n=max_n, dtype=np.float32, flipped=True))
    b, s = flush_subnormals(b), flush_subnormals(s)
    s[np.abs(s) < 1e-20] = 0           # a decayed soft-NMS score must not become subnormal (TF: FTZ)
    thr = float(min(max(thr, 0.0), 1.0))
    n = len(b)
    choice = draw(st.integers(0, 2))
    if choice == 0 or n == 0:
        sthr = draw(st.sampled_from([-np.inf, 0.0, 0.25, 0.5]))
    elif choice == 1:
        sthr = float(s[draw(st.integers(0, n - 1))])
    else:
        sthr = float(np.float32(draw(st.floats(-1.0, 1.0, width=32))))
    k = draw(st.integers(0, n + 2))
    if soft is None:
        soft = draw(st.booleans())
    sigma = float(np.float32(draw(st.sampled_from([0.1, 0.25, 0.5, 1.0])))) if soft else 0.0
    return b, s, k, thr, sthr, sigma


@st.composite
def tf_combined_nms_cases(draw, *, max_batch=2, max_n=14, max_classes=4):
    """``(boxes (B, N, q, 4), scores (B, N, K), max_output_size_per_class, max_total_size,
    iou_threshold, score_threshold, pad_per_class, clip_boxes)``, float32.

    Normalized coordinates on a 1/8 grid in [-0.25, 1.25] (so clipping matters; zero-area and
    flipped boxes included), scores from a few levels (ties within and across classes), ``q`` 1 or
    K, per-class and total limits small enough to cut.
    """
    B = draw(st.integers(1, max_batch))
    N = draw(st.integers(0, max_n))
    K = draw(st.integers(1, max_classes))
    q = draw(st.sampled_from([1, K]))
    grid = st.integers(-2, 10)
    coords = draw(st.lists(grid, min_size=B * N * q * 4, max_size=B * N * q * 4))
    b = (np.array(coords, np.float32) / np.float32(8)).reshape(B, N, q, 4)
    levels = draw(st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=3))
    sc = draw(st.lists(st.one_of(st.sampled_from(levels), st.floats(0.0, 1.0, width=32)),
                       min_size=B * N * K, max_size=B * N * K))
    s = flush_subnormals(np.array(sc, np.float32).reshape(B, N, K))
    kpc = draw(st.integers(1, max(N, 1) + 1))
    total = draw(st.integers(1, max(N * K, 1) + 2))
    thr = draw(st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0]))
    sthr = draw(st.one_of(st.sampled_from([-np.inf, 0.0, 0.25, 0.5]), st.sampled_from(levels)))
    return b, s, kpc, total, float(thr), float(sthr), draw(st.booleans()), draw(st.booleans())


def _image(draw, B, H, W, C):
    vals = draw(st.lists(st.one_of(st.integers(-4, 4).map(float), st.floats(-8.0, 8.0, width=32)),
                         min_size=B * H * W * C, max_size=B * H * W * C))
    img = np.array(vals, np.float32).reshape(B, H, W, C)
    # values below 1e-20 become 0: their products with a lerp weight could be subnormal, which TF
    # flushes to zero (FTZ) and NumPy does not
    img[np.abs(img) < 1e-20] = 0
    return img


@st.composite
def tf_crop_cases(draw, *, max_side=7, max_boxes=5):
    """``(image (B, H, W, C), boxes (K, 4), box_indices (K,), crop_size, method, extrapolation_value)``,
    float32, NHWC, normalized ``[y1, x1, y2, x2]`` on a 1/8 grid in [-0.25, 1.25] (samples outside the
    image, flipped boxes ``y2 < y1``, zero-size boxes, crop sides of 1) or any float there."""
    B = draw(st.integers(1, 2))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    C = draw(st.integers(1, 3))
    img = _image(draw, B, H, W, C)
    K = draw(st.integers(0, max_boxes))
    coord = st.one_of(st.integers(-2, 10).map(lambda v: v / 8), st.floats(-0.25, 1.25, width=32))
    boxes = np.array(draw(st.lists(coord, min_size=4 * K, max_size=4 * K)), np.float32).reshape(K, 4)
    idx = np.array(draw(st.lists(st.integers(0, B - 1), min_size=K, max_size=K)), np.int32)
    crop = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    method = draw(st.sampled_from(["bilinear", "nearest"]))
    ev = draw(st.sampled_from([0.0, -1.5]))
    boxes[np.abs(boxes) < 1e-20] = 0     # a box centre or a lerp weight must not become subnormal (TF: FTZ)
    return img, boxes, idx, crop, method, ev


@st.composite
def tf_resize_cases(draw, *, max_side=8, max_out=17):
    """``(images (B, H, W, C) float32, (out_h, out_w), method, align_corners, half_pixel_centers)``:
    up- and down-sampling, sides of 1, every valid flag pair (not both True)."""
    B, C = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    img = _image(draw, B, H, W, C)
    size = (draw(st.integers(1, max_out)), draw(st.integers(1, max_out)))
    method = draw(st.sampled_from(["bilinear", "nearest"]))
    ac, hp = draw(st.sampled_from([(False, False), (True, False), (False, True)]))
    return img, size, method, ac, hp
