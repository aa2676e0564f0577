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
