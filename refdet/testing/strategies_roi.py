"""Hypothesis strategies for RoI operators: RoIs that hit the edge cases every kernel handles differently.

    from hypothesis import given
    from refdet.testing import strategies_roi as rsr

    @given(rsr.roi_align_inputs())
    def test_my_roi_align(case): ...

The RoIs mix ordinary boxes with the cases where implementations disagree:

* **zero-size** boxes (a point or a line): the 1x1 clamp of ``aligned=False``, no samples when aligned;
* **outside-the-map** boxes, partly or wholly (samples beyond ``[-1, H]`` are empty; RoI pooling bins
  are clipped to nothing and give 0);
* **sub-pixel** boxes (smaller than one feature-map pixel once scaled);
* **reversed** boxes (``x2 < x1``): a negative size, a NaN FPN level;
* coordinates on a ``1 / 8`` grid, so that sample points land exactly on pixel centres and borders,
  scaled coordinates land on ``.5`` (RoI pooling's rounding) and sizes land exactly on the FPN level
  boundaries.

Every strategy returns NumPy arrays (float64 unless ``dtype`` says otherwise).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = [
    "ROI_KINDS",
    "roi_boxes",
    "feature_maps_for_rois",
    "roi_align_inputs",
    "roi_pool_inputs",
    "level_boxes",
    "crop_boxes",
    "proposal_inputs",
]

#: the kinds of RoI :func:`roi_boxes` draws
ROI_KINDS = ("ordinary", "zero_size", "outside", "sub_pixel", "reversed", "huge")


@st.composite
def roi_boxes(draw, *, batch_size=1, min_n=0, max_n=12, map_size=(8, 8), spatial_scale=1.0, grid=0.125,
              kinds=ROI_KINDS, dtype=np.float64):
    """An (K, 5) array of RoIs ``(batch index, x1, y1, x2, y2)`` in image coordinates.

    ``map_size`` (H, W) and ``spatial_scale`` place the boxes relative to the feature map: the image
    is ``map_size / spatial_scale``. Coordinates are multiples of ``grid`` (``None``: any float).
    """
    H, W = map_size
    img_h, img_w = H / spatial_scale, W / spatial_scale
    n = draw(st.integers(min_n, max_n))

    def coord(lo, hi):
        if grid is None:
            return draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
        return draw(st.integers(int(np.ceil(lo / grid)), int(np.floor(hi / grid)))) * grid

    rows = []
    for _ in range(n):
        kind = draw(st.sampled_from(kinds))
        b = draw(st.integers(0, batch_size - 1))
        if kind == "outside":
            side = draw(st.sampled_from(("left", "right", "top", "bottom", "partial")))
            x1, y1 = coord(-img_w, 2 * img_w), coord(-img_h, 2 * img_h)
            w, h = coord(0, img_w), coord(0, img_h)
            if side == "left":
                x1 = -w - coord(0, img_w)
            elif side == "right":
                x1 = img_w + coord(0, img_w)
            elif side == "top":
                y1 = -h - coord(0, img_h)
            elif side == "bottom":
                y1 = img_h + coord(0, img_h)
        else:
            x1, y1 = coord(-0.25 * img_w, img_w), coord(-0.25 * img_h, img_h)
            if kind == "zero_size":
                w, h = draw(st.sampled_from(((0.0, 0.0), (0.0, 1.0), (1.0, 0.0))))
                w, h = w * coord(0, img_w), h * coord(0, img_h)
            elif kind == "sub_pixel":
                w, h = coord(0, 1 / spatial_scale), coord(0, 1 / spatial_scale)
            elif kind == "reversed":
                w, h = -coord(0, img_w / 2), coord(-img_h / 2, img_h / 2)
            elif kind == "huge":
                w, h = coord(img_w, 3 * img_w), coord(img_h, 3 * img_h)
            else:
                w, h = coord(0, img_w), coord(0, img_h)
        rows.append([b, x1, y1, x1 + w, y1 + h])
    return np.array(rows, dtype=dtype).reshape(n, 5)


@st.composite
def feature_maps_for_rois(draw, *, batch_size=1, channels=(1, 3), map_size=((1, 9), (1, 9)), ties=True,
                          dtype=np.float64):
    """A (B, C, H, W) map; with ``ties`` its values are small integers (RoI pooling ties)."""
    C = draw(st.integers(*channels))
    H = draw(st.integers(*map_size[0]))
    W = draw(st.integers(*map_size[1]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    if ties and draw(st.booleans()):
        x = rng.integers(-3, 4, size=(batch_size, C, H, W)).astype(dtype)
    else:
        x = rng.standard_normal((batch_size, C, H, W)).astype(dtype)
    return x


@st.composite
def roi_align_inputs(draw, *, max_n=10, dtype=None, sampling_ratios=(-1, 0, 1, 2, 3), max_output=4):
    """A dict of RoIAlign arguments: features, rois, output_size, spatial_scale, sampling_ratio, aligned."""
    dt = draw(st.sampled_from((np.float32, np.float64))) if dtype is None else dtype
    B = draw(st.integers(1, 2))
    x = draw(feature_maps_for_rois(batch_size=B, dtype=dt, ties=False))
    scale = draw(st.sampled_from((1.0, 0.5, 0.25, 0.125, 0.3)))
    rois = draw(roi_boxes(batch_size=B, max_n=max_n, map_size=x.shape[2:], spatial_scale=scale, dtype=dt))
    return dict(features=x, rois=rois,
                output_size=(draw(st.integers(1, max_output)), draw(st.integers(1, max_output))),
                spatial_scale=scale, sampling_ratio=draw(st.sampled_from(sampling_ratios)),
                aligned=draw(st.booleans()))


@st.composite
def roi_pool_inputs(draw, *, max_n=10, dtype=None, max_output=4):
    """A dict of RoI pooling arguments: features (with ties), rois, output_size, spatial_scale."""
    dt = draw(st.sampled_from((np.float32, np.float64))) if dtype is None else dtype
    B = draw(st.integers(1, 2))
    x = draw(feature_maps_for_rois(batch_size=B, dtype=dt, ties=True))
    scale = draw(st.sampled_from((1.0, 0.5, 0.25, 0.125, 0.3)))
    rois = draw(roi_boxes(batch_size=B, max_n=max_n, map_size=x.shape[2:], spatial_scale=scale, dtype=dt))
    return dict(features=x, rois=rois, output_size=(draw(st.integers(1, max_output)),
                                                    draw(st.integers(1, max_output))), spatial_scale=scale)


@st.composite
def level_boxes(draw, *, max_n=20, dtype=np.float32, boundaries=(56.0, 112.0, 224.0, 448.0, 896.0)):
    """(N, 4) boxes whose size ``sqrt(w * h)`` is on, or a few ulps either side of, a level boundary.

    Squares of side ``b`` (area ``b**2``), rectangles with the same area, and a few ordinary, zero-size
    and reversed boxes.
    """
    n = draw(st.integers(1, max_n))
    rows = []
    for _ in range(n):
        kind = draw(st.sampled_from(("square", "rect", "random", "zero", "reversed")))
        x, y = draw(st.integers(0, 512)) / 4, draw(st.integers(0, 512)) / 4
        if kind in ("square", "rect"):
            b = draw(st.sampled_from(boundaries))
            steps = draw(st.integers(-4, 4))
            side = float(np.float32(b))
            for _ in range(abs(steps)):
                side = float(np.nextafter(np.float32(side), np.float32(np.inf if steps > 0 else 0)))
            if kind == "square":
                w = h = side
            else:
                r = draw(st.sampled_from((0.5, 2.0, 4.0)))
                w, h = side * r, side / r
        elif kind == "zero":
            w, h = 0.0, draw(st.integers(0, 64))
        elif kind == "reversed":
            w, h = -draw(st.integers(1, 64)), draw(st.integers(1, 64))
        else:
            w, h = draw(st.integers(0, 4000)) / 4, draw(st.integers(0, 4000)) / 4
        rows.append([x, y, x + w, y + h])
    return np.array(rows, dtype=dtype)


@st.composite
def crop_boxes(draw, *, max_n=8, dtype=np.float64, grid=None):
    """(K, 4) normalised ``[y1, x1, y2, x2]`` boxes: inside, flipped, zero-size and beyond [0, 1]."""
    n = draw(st.integers(0, max_n))

    def v():
        if grid is None:
            return draw(st.floats(-0.5, 1.5, allow_nan=False, allow_infinity=False))
        return draw(st.integers(int(-0.5 / grid), int(1.5 / grid))) * grid
    rows = []
    for _ in range(n):
        y1, x1, y2, x2 = v(), v(), v(), v()
        if draw(st.booleans()):
            y2 = y1 if draw(st.booleans()) else y2
        rows.append([y1, x1, y2, x2])
    return np.array(rows, dtype=dtype).reshape(n, 4)


@st.composite
def proposal_inputs(draw, *, max_levels=4, max_per_level=400, max_batch=2, distinct=True, dtype=np.float32):
    """RPN outputs for proposal selection: a dict with ``proposals`` (B, N, 4) decoded boxes,
    ``objectness`` (B, N) logits, ``image_sizes``, ``num_anchors_per_level``.

    Boxes come in clusters of jittered copies (IoUs around the 0.7 NMS threshold, exact duplicates),
    with tiny (< 1e-3), zero-size and partly-outside boxes mixed in. With ``distinct`` the logits are a
    shuffled grid wide enough apart that their float32 sigmoids differ too (no ties anywhere: the
    order is then defined in every framework); otherwise they are small integers (many ties).
    """
    L = draw(st.integers(1, max_levels))
    counts = [draw(st.integers(0, max_per_level)) for _ in range(L)]
    N = sum(counts)
    B = draw(st.integers(1, max_batch))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    sizes = [(int(rng.integers(32, 400)), int(rng.integers(32, 400))) for _ in range(B)]
    H = max(s[0] for s in sizes)
    W = max(s[1] for s in sizes)
    boxes = np.empty((B, N, 4))
    for i in range(B):
        k = max(1, N // 8)
        ctr = rng.uniform(-0.2, 1.2, (k, 2)) * [W, H]
        side = np.exp(rng.uniform(np.log(0.5), np.log(max(H, W)), (k, 2)))
        which = rng.integers(0, k, N)
        c = ctr[which] + rng.normal(0, 0.08, (N, 2)) * side[which]
        wh = side[which] * rng.uniform(0.85, 1.15, (N, 2))
        tiny = rng.random(N) < 0.05
        wh[tiny] = rng.choice([0.0, 1e-4, 5e-4, 1e-3, 2e-3], (int(tiny.sum()), 2))
        boxes[i] = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
        dup = rng.random(N) < 0.05
        if N and dup.any():
            boxes[i][dup] = boxes[i][rng.integers(0, N, int(dup.sum()))]
    if distinct:
        logits = (rng.permutation(B * N).reshape(B, N) - B * N / 2) * (12.0 / max(B * N, 1))
    else:
        logits = rng.integers(-3, 4, (B, N)).astype(np.float64)
    return dict(proposals=boxes.astype(dtype), objectness=logits.astype(dtype), image_sizes=sizes,
                num_anchors_per_level=counts)
