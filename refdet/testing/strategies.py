"""Hypothesis strategies for detection inputs (public: import them in your own property tests).

    from hypothesis import given
    from refdet.testing import strategies as rst

    @given(rst.box_sets(max_n=50))
    def test_my_iou(boxes): ...

Every strategy returns NumPy arrays. Boxes are xyxy. "Valid" boxes have ``x1 <= x2`` and
``y1 <= y2`` and may have zero width or height (degenerate) unless ``min_size > 0``. Coordinates are
drawn on a grid of ``1 / 2**k`` steps by default so that ties, exact thresholds and identical boxes
actually occur; pass ``grid=None`` for arbitrary floats.

Later sections of this module (added by each subsystem) hold strategies for scores with ties, boxes
placed just past an IoU threshold, ground-truth sets, logits, feature maps and anchor configurations.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "coordinates",
    "boxes",
    "degenerate_boxes",
    "box_sets",
    "image_sizes",
]


def coordinates(*, low=-64.0, high=256.0, grid=0.25):
    """A coordinate in [low, high]: a multiple of ``grid`` (ties likely) or any float if grid is None."""
    if grid is None:
        return st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    n_lo = int(np.ceil(low / grid))
    n_hi = int(np.floor(high / grid))
    return st.integers(n_lo, n_hi).map(lambda k: k * grid)


@st.composite
def boxes(draw, *, low=-64.0, high=256.0, grid=0.25, min_size=0.0, max_size=128.0):
    """One valid xyxy box, shape (4,), float64: ``x2 - x1`` and ``y2 - y1`` in [min_size, max_size]."""
    x1 = draw(coordinates(low=low, high=high, grid=grid))
    y1 = draw(coordinates(low=low, high=high, grid=grid))
    step = grid if grid is not None else None
    if step is None:
        w = draw(st.floats(min_size, max_size, allow_nan=False))
        h = draw(st.floats(min_size, max_size, allow_nan=False))
    else:
        k_lo = int(np.ceil(min_size / step))
        k_hi = max(k_lo, int(np.floor(max_size / step)))
        w = draw(st.integers(k_lo, k_hi)) * step
        h = draw(st.integers(k_lo, k_hi)) * step
    return np.array([x1, y1, x1 + w, y1 + h], dtype=np.float64)


def degenerate_boxes(*, low=-64.0, high=256.0, grid=0.25):
    """Boxes with zero width, zero height, or both (points and lines)."""
    def make(args):
        x, y, w, h, kind = args
        if kind == 0:
            w = 0.0
        elif kind == 1:
            h = 0.0
        else:
            w = h = 0.0
        return np.array([x, y, x + w, y + h], dtype=np.float64)

    c = coordinates(low=low, high=high, grid=grid)
    return st.tuples(c, c, st.floats(0, 64).map(lambda v: round(v * 4) / 4),
                     st.floats(0, 64).map(lambda v: round(v * 4) / 4), st.integers(0, 2)).map(make)


@st.composite
def box_sets(draw, *, min_n=0, max_n=20, degenerate=True, duplicates=True, dtype=np.float64, **box_kw):
    """An (N, 4) array of valid boxes, N in [min_n, max_n].

    With ``degenerate=True`` some boxes may be points or lines; with ``duplicates=True`` some boxes may
    repeat exactly (identical boxes are where tie rules matter).
    """
    n = draw(st.integers(min_n, max_n))
    one = boxes(**box_kw)
    if degenerate:
        one = st.one_of(one, one, one, degenerate_boxes(**{k: v for k, v in box_kw.items()
                                                          if k in ("low", "high", "grid")}))
    rows = draw(st.lists(one, min_size=n, max_size=n))
    if duplicates and n >= 2 and draw(st.booleans()):
        k = draw(st.integers(1, n - 1))
        src = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
        dst = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
        for s, d in zip(src, dst):
            rows[d] = rows[s].copy()
    arr = np.array(rows, dtype=np.float64).reshape(n, 4)
    return arr.astype(dtype)


def image_sizes(*, min_side=1, max_side=1333):
    """(H, W) integer image sizes."""
    side = st.integers(min_side, max_side)
    return st.tuples(side, side)


# ---------------------------------------------------------------------------------------------------
# layers: feature maps and convolution / pooling configurations
# ---------------------------------------------------------------------------------------------------

__all__ += ["feature_maps", "conv_configs", "pool_configs"]


@st.composite
def feature_maps(draw, shape=None, *, max_batch=2, max_channels=4, min_side=1, max_side=8, low=-4.0,
                 high=4.0, grid=None, dtype=np.float64):
    """An NCHW feature map ``(B, C, H, W)``.

    ``shape`` fixes the shape; otherwise each axis is drawn (B in [1, max_batch], C in
    [1, max_channels], H and W in [min_side, max_side]). Values lie in [low, high]: any float when
    ``grid`` is None, multiples of ``grid`` otherwise (so ties, exact zeros and equal maxima occur).
    """
    if shape is None:
        shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)),
                 draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side)))
    shape = tuple(int(s) for s in shape)
    if grid is None:
        elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    else:
        elements = st.integers(int(np.ceil(low / grid)), int(np.floor(high / grid))).map(lambda k: k * grid)
    arr = draw(hnp.arrays(np.float64, shape, elements=elements))
    return arr.astype(dtype)


def _pair(max_value, min_value):
    v = st.integers(min_value, max_value)
    return st.one_of(v, st.tuples(v, v))


@st.composite
def conv_configs(draw, *, max_batch=2, max_groups=3, max_channels_per_group=3, max_kernel=3, max_stride=3,
                 max_padding=2, max_dilation=2, min_side=1, max_side=9):
    """A valid conv2d geometry, as a dict.

    Keys: ``x_shape`` (B, C, H, W), ``w_shape`` (F, C / groups, KH, KW), ``stride``, ``padding``,
    ``dilation`` (each an int or an (H, W) pair, as a caller would pass them) and ``groups``. The
    dilated kernel always fits in the padded input (the output has at least one pixel).
    """
    groups = draw(st.integers(1, max_groups))
    c = groups * draw(st.integers(1, max_channels_per_group))
    f = groups * draw(st.integers(1, max_channels_per_group))
    b = draw(st.integers(1, max_batch))
    stride = draw(_pair(max_stride, 1))
    padding = draw(_pair(max_padding, 0))
    dilation = draw(_pair(max_dilation, 1))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    p2 = padding if isinstance(padding, tuple) else (padding, padding)
    d2 = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    # smallest side for which the dilated kernel fits: d*(k-1)+1 <= side + 2p
    h_min = max(min_side, d2[0] * (kh - 1) + 1 - 2 * p2[0], 1)
    w_min = max(min_side, d2[1] * (kw - 1) + 1 - 2 * p2[1], 1)
    h = draw(st.integers(h_min, max(h_min, max_side)))
    w = draw(st.integers(w_min, max(w_min, max_side)))
    return dict(x_shape=(b, c, h, w), w_shape=(f, c // groups, kh, kw), stride=stride, padding=padding,
                dilation=dilation, groups=groups)


@st.composite
def pool_configs(draw, *, max_batch=2, max_channels=3, max_kernel=3, max_stride=3, max_dilation=2,
                 ceil_mode=True, min_side=1, max_side=9):
    """A valid max_pool2d geometry as a dict: ``x_shape``, ``kernel_size``, ``stride``, ``padding``
    (at most half the kernel, PyTorch's rule), ``dilation`` and ``ceil_mode``."""
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation))
    h_min = max(min_side, dh * (kh - 1) + 1 - 2 * ph, 1)
    w_min = max(min_side, dw * (kw - 1) + 1 - 2 * pw, 1)
    h = draw(st.integers(h_min, max(h_min, max_side)))
    w = draw(st.integers(w_min, max(w_min, max_side)))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), h, w)
    return dict(x_shape=shape, kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                ceil_mode=draw(st.booleans()) if ceil_mode else False)


# ---------------------------------------------------------------------------------------------------
# anchors (refdet.anchors): anchor and SSD default-box configurations
# ---------------------------------------------------------------------------------------------------

__all__ += ["anchor_ratios", "anchor_configs", "ssd_configs"]


def anchor_ratios(*, max_n=4):
    """A list of aspect ratios: the usual (0.5, 1, 2) family and arbitrary positive floats."""
    one = st.one_of(st.sampled_from([0.5, 1.0, 2.0, 1.0 / 3.0, 3.0, 0.25, 4.0]),
                    st.floats(0.2, 5.0, allow_nan=False, allow_infinity=False))
    return st.lists(one, min_size=1, max_size=max_n)


@st.composite
def anchor_configs(draw, *, max_levels=3, max_side=24, max_sizes=3, integer_sizes=None, strides=True):
    """Keyword arguments for ``refdet.pyramid_anchors`` / torchvision ``AnchorGenerator``.

    A dict with ``image_size`` (H, W) ints, ``feature_sizes`` (list of (H_l, W_l), each >= 1),
    ``strides`` (list of ints, or None when ``strides=False``: torchvision derives image // feature),
    ``sizes`` (list of per-level tuples) and ``aspect_ratios`` (per-level tuples). Sizes are ints
    (torchvision's usual case, including odd sizes whose half lands on .5) or floats (detectron2/mmdet
    octave sizes); ``integer_sizes`` forces one or the other.
    """
    L = draw(st.integers(1, max_levels))
    fs = [(draw(st.integers(1, max_side)), draw(st.integers(1, max_side))) for _ in range(L)]
    if strides:
        st_ = [draw(st.sampled_from([1, 2, 3, 4, 8, 16, 19, 32, 33, 64])) for _ in range(L)]
        image = (max(h * s for (h, _), s in zip(fs, st_)), max(w * s for (_, w), s in zip(fs, st_)))
    else:
        st_ = None
        image = (draw(st.integers(max(h for h, _ in fs), 1024)), draw(st.integers(max(w for _, w in fs), 1024)))
    ints = draw(st.booleans()) if integer_sizes is None else integer_sizes
    size = st.integers(1, 700) if ints else st.floats(1.0, 700.0, allow_nan=False, allow_infinity=False)
    sizes = [tuple(draw(st.lists(size, min_size=1, max_size=max_sizes))) for _ in range(L)]
    ratios = [tuple(draw(anchor_ratios())) for _ in range(L)]
    return dict(image_size=image, feature_sizes=fs, strides=st_, sizes=sizes, aspect_ratios=ratios)


@st.composite
def ssd_configs(draw, *, max_levels=4, max_side=12):
    """Keyword arguments for ``refdet.ssd_default_boxes`` / torchvision ``DefaultBoxGenerator``.

    A dict with ``image_size``, ``feature_sizes`` (square or rectangular maps), ``aspect_ratios``
    (per-level lists, possibly empty), ``scales`` (L + 1 increasing floats, some above 1 so that
    ``clip`` matters) or None with explicit ``min_ratio`` / ``max_ratio``, ``steps`` (pixels) or None,
    and ``clip``.
    """
    L = draw(st.integers(1, max_levels))
    fs = [(draw(st.integers(1, max_side)), draw(st.integers(1, max_side))) for _ in range(L)]
    image = (draw(st.integers(8, 640)), draw(st.integers(8, 640)))
    ratios = [draw(st.lists(st.sampled_from([2, 3, 1.5, 4, 0.5]), min_size=0, max_size=3)) for _ in range(L)]
    cfg = dict(image_size=image, feature_sizes=fs, aspect_ratios=ratios, clip=draw(st.booleans()))
    if draw(st.booleans()):
        cfg["scales"] = sorted(draw(st.lists(st.floats(0.02, 1.3, allow_nan=False), min_size=L + 1,
                                             max_size=L + 1)))
    else:
        lo = draw(st.floats(0.05, 0.5, allow_nan=False))
        cfg["min_ratio"] = lo
        cfg["max_ratio"] = draw(st.floats(lo, 1.2, allow_nan=False))
    if draw(st.booleans()):
        cfg["steps"] = [draw(st.sampled_from([1, 3, 8, 16, 32, 64, 100, 300])) for _ in range(L)]
    return cfg


# ---------------------------------------------------------------------------------------------------
# matcher / sampler / targets: ground-truth sets, IoU matrices with ties and exact thresholds, labels
# ---------------------------------------------------------------------------------------------------

__all__ += ["gt_sets", "threshold_values", "iou_matrices", "sampler_labels"]

#: Thresholds the detection matchers use (RPN 0.7/0.3, RetinaNet 0.5/0.4, Fast R-CNN / SSD 0.5).
MATCH_THRESHOLDS = (0.3, 0.4, 0.5, 0.7)


@st.composite
def gt_sets(draw, *, min_m=0, max_m=8, num_classes=None, image_size=(256, 256), degenerate=True,
            duplicates=True, first_label=0):
    """Ground truths of one image: ``(boxes (M, 4) float64, labels (M,) int64)``.

    Boxes lie mostly inside ``image_size = (H, W)`` (some stick out), on a 0.5 grid so that identical
    boxes and exact IoU ties occur; with ``degenerate=True`` some are points or lines (a gt that
    overlaps no anchor: the low-quality-match pathology). Labels are drawn from
    ``first_label .. first_label + num_classes - 1`` (``num_classes=None``: all ``first_label``).
    """
    h, w = image_size
    lo = -min(h, w) / 8
    hi = max(h, w) * 1.05
    boxes_ = draw(box_sets(min_n=min_m, max_n=max_m, degenerate=degenerate, duplicates=duplicates,
                           low=lo, high=hi, grid=0.5, max_size=max(h, w) / 2))
    k = 1 if num_classes is None else num_classes
    labels = draw(hnp.arrays(np.int64, (boxes_.shape[0],), elements=st.integers(first_label, first_label + k - 1)))
    return boxes_, labels


def threshold_values(thresholds=MATCH_THRESHOLDS, dtype=np.float64):
    """Values on and one ulp either side of each threshold (in ``dtype``), plus 0 and 1."""
    dt = np.dtype(dtype)
    vals = {dt.type(0), dt.type(1)}
    for t in thresholds:
        c = dt.type(t)
        vals |= {c, np.nextafter(c, dt.type(-1)), np.nextafter(c, dt.type(2))}
    return st.sampled_from(sorted(float(v) for v in vals))


@st.composite
def iou_matrices(draw, *, min_m=1, max_m=6, min_n=0, max_n=40, dtype=np.float64,
                 thresholds=MATCH_THRESHOLDS, allow_nan=False):
    """An (M, N) quality matrix (gts x anchors) in [0, 1] built to hit every tie rule.

    Entries come from a small pool: exact thresholds and their one-ulp neighbours (in ``dtype``), 0,
    1 and multiples of 0.05, so that equal IoUs within a column (argmax ties), within a row
    (low-quality ties, several anchors sharing a gt's best IoU), all-zero rows (a degenerate gt),
    duplicated rows (two gts competing for the same anchor) and values exactly on a threshold all
    occur. ``allow_nan=True`` sprinkles NaN (torchvision's IoU of two identical zero-area boxes).
    """
    dt = np.dtype(dtype)
    m = draw(st.integers(min_m, max_m))
    n = draw(st.integers(min_n, max_n))
    grid = st.integers(0, 20).map(lambda k: k * 0.05)
    pool = st.one_of(threshold_values(thresholds, dt), grid, st.just(0.0))
    q = draw(hnp.arrays(np.float64, (m, n), elements=pool)).astype(dt)
    if m and n:
        if m >= 2 and draw(st.booleans()):                 # two gts with identical rows
            i, j = draw(st.integers(0, m - 1)), draw(st.integers(0, m - 1))
            q[j] = q[i]
        if draw(st.booleans()):                            # a degenerate gt: overlaps nothing
            q[draw(st.integers(0, m - 1))] = 0
        if n >= 2 and draw(st.booleans()):                 # two anchors with identical columns
            a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
            q[:, b] = q[:, a]
        if allow_nan and draw(st.booleans()):
            k = draw(st.integers(1, max(1, m * n // 4)))
            idx = draw(st.lists(st.integers(0, m * n - 1), min_size=k, max_size=k))
            q.flat[idx] = np.nan
    return q


@st.composite
def sampler_labels(draw, *, max_n=700, classes=1, float_labels=None):
    """Labels for a balanced sampler: ``-1`` ignored, ``0`` negative, ``1..classes`` positive.

    The proportions vary from all-positive to all-negative so that both "not enough positives" and
    "not enough negatives" happen; ``float_labels`` (default: drawn) gives float32 labels as
    torchvision's RPN passes them.
    """
    n = draw(st.integers(0, max_n))
    p = draw(st.lists(st.integers(0, 10), min_size=3, max_size=3).filter(lambda v: sum(v) > 0))
    p = np.array(p, dtype=np.float64) / sum(p)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    g = np.random.default_rng(seed)
    kind = g.choice(3, size=n, p=p)
    labels = np.where(kind == 0, -1, np.where(kind == 1, 0, g.integers(1, classes + 1, size=n)))
    if float_labels is None:
        float_labels = draw(st.booleans())
    return labels.astype(np.float32 if float_labels else np.int64)
