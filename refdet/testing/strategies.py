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


# ------------------------------------------------------------------------------------------------
# losses (refdet/losses/): logits, targets, labels
# ------------------------------------------------------------------------------------------------

__all__ += ["logits", "binary_targets", "class_labels", "loss_inputs"]


@st.composite
def logits(draw, shape=None, *, max_dims=2, max_side=8, bound=30.0, extremes=True, dtype=np.float64):
    """A logits array: values on a 1/8 grid in [-bound, bound] (ties and exact zeros occur), and with
    ``extremes`` some saturating values (``|x| >= 17``, where float64 sigmoid is within 1e-7 of 0 or 1
    and float32 sigmoid rounds to exactly 1). Shape drawn if not given (up to ``max_dims`` axes)."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=1, max_size=max_dims)))
    n = int(np.prod(shape))
    steps = int(bound * 8)
    vals = draw(st.lists(st.integers(-steps, steps), min_size=n, max_size=n))
    x = np.array(vals, dtype=np.float64) / 8
    if extremes and n and draw(st.booleans()):
        k = draw(st.integers(1, n))
        idx = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
        x[idx] = draw(st.sampled_from([-bound, -17.0, 17.0, bound, 0.0]))
    return x.reshape(shape).astype(dtype)


@st.composite
def binary_targets(draw, shape, *, soft=False, dtype=np.float64):
    """0/1 targets of ``shape`` (``soft=True``: some entries are probabilities on a 1/4 grid)."""
    n = int(np.prod(shape))
    t = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.float64)
    if soft and n:
        s = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.float64) / 4
        t = np.where(np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))), s, t)
    return t.reshape(shape).astype(dtype)


@st.composite
def class_labels(draw, n, num_classes, *, ignore_index=None):
    """(n,) int64 labels in [0, num_classes), some equal to ``ignore_index`` if given."""
    lo = 0 if ignore_index is None else -1
    vals = draw(st.lists(st.integers(lo, num_classes - 1), min_size=n, max_size=n))
    y = np.array(vals, dtype=np.int64)
    if ignore_index is not None:
        y[y == -1] = ignore_index
    return y


@st.composite
def loss_inputs(draw, *, max_n=12, max_k=5, ignore_index=-1):
    """(logits (N, K), labels (N,)) for softmax losses: K >= 1, labels in [0, K) or ignore_index."""
    n = draw(st.integers(0, max_n))
    k = draw(st.integers(1, max_k))
    return draw(logits((n, k))), draw(class_labels(n, k, ignore_index=ignore_index))
# end of the losses section


# ---------------------------------------------------------------------------------------------------
# fpn / heads: pyramid level sizes
# ---------------------------------------------------------------------------------------------------

__all__ += ["pyramid_sizes"]


@st.composite
def pyramid_sizes(draw, *, min_levels=1, max_levels=3, max_side=13, divisible=False):
    """A list of level sizes ``[(H_0, W_0), ..., (H_{L-1}, W_{L-1})]``, highest resolution first.

    ``divisible=False``: each size is drawn freely in [1, max_side] (odd sizes such as 13 x 9 over
    7 x 5, and even a level larger than the one below: torchvision's FPN interpolates to any lateral
    size). ``divisible=True``: the top level is drawn in [1, max(1, max_side >> (L - 1))] and every
    lower level is exactly twice the next (what detectron2's ``scale_factor=2`` upsampling needs).
    """
    n = draw(st.integers(min_levels, max_levels))
    if not divisible:
        return [(draw(st.integers(1, max_side)), draw(st.integers(1, max_side))) for _ in range(n)]
    top_max = max(1, max_side >> (n - 1))
    top = (draw(st.integers(1, top_max)), draw(st.integers(1, top_max)))
    return [(top[0] << (n - 1 - i), top[1] << (n - 1 - i)) for i in range(n)]


# ---------------------------------------------------------------------------------------------------
# NMS: scores with ties, box pairs placed exactly at / just past an IoU threshold (refdet.nms)
# ---------------------------------------------------------------------------------------------------

__all__ += ["tied_scores", "threshold_box_pairs", "nms_inputs"]


@st.composite
def tied_scores(draw, n, *, levels=4, dtype=np.float64, nan=False):
    """(n,) scores where equal values are likely: drawn from ``levels`` distinct values (or any float
    in [0, 1] for some entries). With ``nan=True`` a few may be NaN."""
    pool = draw(st.lists(st.floats(-1.0, 2.0, allow_nan=False, width=32), min_size=1, max_size=levels))
    one = st.one_of(st.sampled_from(pool), st.floats(0.0, 1.0, width=32))
    if nan:
        one = st.one_of(one, one, one, st.just(float("nan")))
    vals = draw(st.lists(one, min_size=n, max_size=n))
    return np.array(vals, dtype=np.float64).astype(dtype)


def _iou32(a, b):
    """IoU of two xyxy boxes in torchvision's float32 order of operations."""
    f = np.float32
    a = a.astype(f)
    b = b.astype(f)
    w = max(f(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(f(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    aa = (a[2] - a[0]) * (a[3] - a[1])
    ab = (b[2] - b[0]) * (b[3] - b[1])
    with np.errstate(all="ignore"):
        return f(inter / (aa + ab - inter))


@st.composite
def threshold_box_pairs(draw, *, offset=None):
    """``(boxes (2, 4) float64, iou_threshold)`` with the pair's float32 IoU placed exactly at the
    threshold (``offset=0``), one float32 ulp above (``+1``) or below (``-1``) it; ``offset=None``
    draws one of the three.

    The second box shares the first's origin and x extent and covers ``c`` of its ``r`` rows, so
    the IoU is ``c / r`` (e.g. 1/2, 1/3, 3/4); the threshold is that float32 value as a double, or
    its float32 neighbour.
    """
    r = draw(st.integers(2, 12))
    c = draw(st.integers(1, r - 1))
    w = draw(st.integers(1, 16)) * 0.5
    x = draw(st.integers(-20, 40)) * 0.5
    y = draw(st.integers(-20, 40)) * 0.5
    boxes = np.array([[x, y, x + w, y + r], [x, y, x + w, y + c]], dtype=np.float64)
    if draw(st.booleans()):
        boxes = boxes[::-1].copy()
    iou = _iou32(boxes[0], boxes[1])
    k = draw(st.sampled_from([-1, 0, 1])) if offset is None else offset
    t = iou
    if k:
        t = np.nextafter(iou, np.float32(np.inf if k < 0 else -np.inf))   # IoU just past: below t or above
    return boxes, float(t)


@st.composite
def nms_inputs(draw, *, min_n=0, max_n=30, dtype=np.float32, nan=False, flipped=False):
    """``(boxes (N, 4), scores (N,), iou_threshold)`` built to hit NMS's edge cases: coordinates on a
    coarse grid (identical and degenerate boxes), tied scores, exact-threshold pairs appended, and a
    threshold that is often exactly the float32 IoU of some pair. ``flipped=True`` may swap corners
    (x2 < x1), which only ONNX/TF define."""
    b = draw(box_sets(min_n=min_n, max_n=max_n, grid=0.5, low=-8, high=48, max_size=24.0))
    if draw(st.booleans()) and len(b) < max_n:
        pair, t_pair = draw(threshold_box_pairs())
        b = np.concatenate([b, pair])
    else:
        t_pair = None
    if flipped and len(b) and draw(st.booleans()):
        i = draw(st.integers(0, len(b) - 1))
        b[i] = b[i][[2, 1, 0, 3]]
    n = len(b)
    s = draw(tied_scores(n, nan=nan))
    choice = draw(st.integers(0, 3))
    if choice == 0 and t_pair is not None:
        thr = t_pair
    elif choice == 1 and n >= 2:
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        iou = _iou32(b[i], b[j])
        thr = float(iou) if np.isfinite(iou) else 0.5
    else:
        thr = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]))
    return b.astype(dtype), s.astype(dtype), thr


# ---------------------------------------------------------------------------------------------------
# quant (refdet.quant): values placed on rounding ties, scales, integer accumulators
# ---------------------------------------------------------------------------------------------------

__all__ += ["quant_scales", "quant_tie_values"]


def quant_scales(*, low=2.0 ** -10, high=4.0):
    """A positive float32 scale: a power of two (products exact, ties exact) or an arbitrary float32."""
    pow2 = st.integers(int(np.ceil(np.log2(low))), int(np.floor(np.log2(high)))).map(lambda e: float(2.0 ** e))
    anyf = st.floats(low, high, allow_nan=False, allow_infinity=False, width=32)
    return st.one_of(pow2, anyf).map(np.float32)


@st.composite
def quant_tie_values(draw, scale, *, n_max=64, steps=300, dtype=np.float32):
    """(N,) values of which many sit exactly (in ``dtype``) or nearly on ``(k + 1/2) * scale``: the
    rounding ties where RNE, half-away and half-up disagree; the rest are arbitrary, some beyond
    ``steps`` quantization steps (saturation). ``scale`` is a float (or a strategy of one)."""
    if isinstance(scale, st.SearchStrategy):
        scale = draw(scale)
    n = draw(st.integers(0, n_max))
    ks = draw(hnp.arrays(np.int64, n, elements=st.integers(-steps, steps)))
    kind = draw(hnp.arrays(np.int8, n, elements=st.integers(0, 3)))
    s = np.float64(scale)
    tie = (ks + 0.5) * s
    out = np.where(kind == 0, tie, np.where(kind == 1, np.nextafter(tie, np.inf),
                   np.where(kind == 2, ks * s, (ks + 0.37) * s * 1.7)))
    return out.astype(dtype)


# ---------------------------------------------------------------------------------------------------
# IoU and box coding (refdet.iou, refdet.box_coder)
# ---------------------------------------------------------------------------------------------------

__all__ += ["aligned_box_sets", "regression_deltas"]


@st.composite
def aligned_box_sets(draw, *, min_n=0, max_n=20, min_size=0.0, dtype=np.float64, **box_kw):
    """Two (N, 4) box arrays of the same length (targets and anchors, or predictions and targets).

    With ``min_size > 0`` no box is degenerate (what ``encode_boxes`` needs: a zero-size box encodes
    to -inf). Some rows may repeat the other set's box exactly (IoU 1, zero deltas).
    """
    degenerate = min_size <= 0
    a = draw(box_sets(min_n=min_n, max_n=max_n, degenerate=degenerate, min_size=min_size, **box_kw))
    n = len(a)
    b = draw(box_sets(min_n=n, max_n=n, degenerate=degenerate, min_size=min_size, **box_kw))
    if n and draw(st.booleans()):
        same = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        b[same] = a[same]
    return a.astype(dtype), b.astype(dtype)


@st.composite
def regression_deltas(draw, n, *, k=1, dtype=np.float64, clamp_hits=True, bound=6.0):
    """An (n, 4k) array of (dx, dy, dw, dh) deltas.

    With ``clamp_hits`` some dw/dh sit exactly at ``log(1000 / 16)`` or beyond it (the decode clamp),
    and some are exactly 0 (exp(0) = 1: the anchor's own size).
    """
    import math
    special = [0.0, math.log(1000.0 / 16), 8.0, -8.0] if clamp_hits else [0.0]
    val = st.one_of(st.floats(-bound, bound, allow_nan=False, width=64), st.sampled_from(special))
    vals = draw(st.lists(val, min_size=4 * k * n, max_size=4 * k * n))
    return np.array(vals, dtype=np.float64).reshape(n, 4 * k).astype(dtype)


# ---------------------------------------------------------------------------------------------------
# conformance (refdet.testing.conformance): clustered boxes with controlled overlaps, anchor
# configurations whose strides divide the image
# ---------------------------------------------------------------------------------------------------

__all__ += ["overlapping_box_sets", "divisible_anchor_configs"]


@st.composite
def overlapping_box_sets(draw, *, max_clusters=4, max_per_cluster=6, max_shift=4, grid=0.5, dtype=np.float64,
                         score_levels=3):
    """``(boxes (N, 4), scores (N,))``: clusters of boxes that overlap by a controlled amount, with ties.

    Each cluster starts from one box (side 4 to 32 on a ``grid``) and adds copies shifted by at most
    ``max_shift`` grid steps in each corner, so IoUs within a cluster spread over (0, 1] and exact
    duplicates (IoU 1) occur; clusters are placed far apart (no IoU across clusters). Scores come
    from ``score_levels`` distinct values, so equal scores inside a cluster are common: the cases
    where NMS's threshold rule and tie order decide the answer.
    """
    k = draw(st.integers(0, max_clusters))
    rows = []
    for c in range(k):
        x0 = c * 100.0
        side = draw(st.integers(8, 64)) * grid
        base = np.array([x0, 0.0, x0 + side, side])
        m = draw(st.integers(1, max_per_cluster))
        for _ in range(m):
            d = np.array(draw(st.lists(st.integers(-max_shift, max_shift), min_size=4, max_size=4)), float) * grid
            b = base + d
            b[2] = max(b[2], b[0])
            b[3] = max(b[3], b[1])
            rows.append(b)
    boxes_ = np.array(rows, dtype=np.float64).reshape(len(rows), 4)
    pool = draw(st.lists(st.integers(1, 20), min_size=1, max_size=score_levels))
    s = np.array(draw(st.lists(st.sampled_from(pool), min_size=len(rows), max_size=len(rows))), float) / 20
    return boxes_.astype(dtype), s.astype(dtype)


@st.composite
def divisible_anchor_configs(draw, *, max_levels=3, max_cells=8, max_sizes=2):
    """Keyword arguments for ``refdet.pyramid_anchors`` whose image sides divide by every stride.

    Strides are ``base * 2**l`` (base in {4, 8, 16}), the image side is ``cells * top stride``, so
    ``image // feature == stride`` on every level (torchvision derives strides that way). Sizes are
    integers, some odd (half-widths on .5: the rounding rule shows), 1 to ``max_sizes`` per level;
    ratios from :func:`anchor_ratios`.
    """
    L = draw(st.integers(1, max_levels))
    base = draw(st.sampled_from([4, 8, 16]))
    strides = [base * 2 ** i for i in range(L)]
    top = strides[-1]
    ch, cw = draw(st.integers(1, max_cells)), draw(st.integers(1, max_cells))
    image = (ch * top, cw * top)
    feature_sizes = [(image[0] // s, image[1] // s) for s in strides]
    sizes = [tuple(draw(st.lists(st.integers(1, 4 * s), min_size=1, max_size=max_sizes))) for s in strides]
    ratios = [tuple(draw(anchor_ratios(max_n=3))) for _ in strides]
    return dict(image_size=image, feature_sizes=feature_sizes, strides=strides, sizes=sizes, aspect_ratios=ratios)
