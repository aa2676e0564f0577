"""Compare two anchor sets and explain the first difference (level, location, anchor, by how much).

    from refdet.testing import assert_anchors_equal
    anchors, _ = refdet.pyramid_anchors(image_size, feature_sizes, strides, sizes, aspect_ratios)
    assert_anchors_equal(my_anchors, anchors, feature_sizes=feature_sizes, strides=strides)

Rows are flattened in refdet's (and torchvision's) order ``(level, y, x, a)``: level by level, then
row-major over the feature map, then the A cell anchors of each location. On a mismatch the message
names the first differing row as ``level l, location (y, x), anchor a``, both boxes and the
difference of each corner, and recognises the usual culprits: a constant shift of half a stride
(centre offset 0.5 vs 0), of a whole stride (an off-by-one cell index), of (stride - 1) / 2
(py-faster-rcnn's centre) or of a pixel; widths off by exactly one pixel (the +1 convention); the
same anchors in another order (size-major vs ratio-major, or (a, y, x) vs (y, x, a)). With
``config`` (the keyword arguments of :func:`refdet.pyramid_anchors`) it also names the convention
or knob that reproduces ``actual``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks
from refdet.testing._malformed import check_tolerance, result_array

__all__ = ["assert_anchors_equal", "explain_anchor_difference", "anchor_location"]


def _per_level_counts(n_total, feature_sizes, num_anchors):
    hw = [int(h) * int(w) for h, w in feature_sizes]
    if num_anchors is None:
        if sum(hw) == 0 or n_total % sum(hw):
            return None
        num_anchors = n_total // sum(hw)
    if np.ndim(num_anchors) == 0:
        num_anchors = [int(num_anchors)] * len(hw)
    return [int(a) for a in num_anchors], hw


def anchor_location(row: int, feature_sizes: Sequence[Tuple[int, int]],
                    num_anchors: Union[int, Sequence[int], None]) -> Tuple[int, int, int, int]:
    """``(level, y, x, a)`` of flattened anchor ``row`` under the ``(level, y, x, a)`` order.

    Parameters
    ----------
    row : int
    feature_sizes : sequence of (H_l, W_l)
    num_anchors : int or sequence of int
        A, or A_l per level.
    """
    feature_sizes = _checks.as_feature_sizes(feature_sizes)
    num_anchors = _check_num_anchors(num_anchors, len(feature_sizes))
    if num_anchors is None:
        raise TypeError("`num_anchors` must be an int or one int per feature map; got None")
    if not isinstance(num_anchors, list):
        num_anchors = [num_anchors] * len(feature_sizes)
    row = _checks.check_int(row, "row", low=0)
    start = 0
    for lvl, ((h, w), a) in enumerate(zip(feature_sizes, num_anchors)):
        n = int(h) * int(w) * int(a)
        if row < start + n:
            r = row - start
            cell, k = divmod(r, int(a))
            y, x = divmod(cell, int(w))
            return lvl, int(y), int(x), int(k)
        start += n
    raise ValueError(f"`row` {row} is past the last anchor ({start} anchors of `feature_sizes` x `num_anchors`)")


def _check_num_anchors(num_anchors, levels):
    """None, an int >= 1, or one int >= 1 per level."""
    if num_anchors is None:
        return None
    if isinstance(num_anchors, (list, tuple, np.ndarray)):
        if len(num_anchors) != levels:
            raise ValueError(f"`num_anchors` must have one entry per feature map ({levels}); got {len(num_anchors)}")
        return [_checks.check_int(v, f"num_anchors[{i}]", low=1) for i, v in enumerate(num_anchors)]
    return _checks.check_int(num_anchors, "num_anchors", low=1)


def _check_strides(strides, levels):
    """None, or one positive stride (or (sy, sx) pair) per level."""
    if strides is None:
        return None
    if isinstance(strides, (str, bytes)) or not hasattr(strides, "__len__"):
        raise TypeError(f"`strides` must be a list of one stride per feature map; got {_checks._describe(strides)}")
    if len(strides) != levels:
        raise ValueError(f"`strides` must have one entry per feature map ({levels}); got {len(strides)}")
    return [_checks.as_stride_pair(v, f"strides[{i}]") for i, v in enumerate(strides)]


def _fmt_box(b):
    return "[" + ", ".join(f"{float(v):.6g}" for v in b) + "]"


def _shift_story(d, stride):
    """Name a constant per-corner difference ``d = actual - expected`` (4,) at ``stride`` (sy, sx)."""
    dx1, dy1, dx2, dy2 = (float(v) for v in d)
    notes = []
    tx, ty = (dx1 + dx2) / 2, (dy1 + dy2) / 2      # centre shift
    gw, gh = dx2 - dx1, dy2 - dy1                   # size change
    sy, sx = (None, None) if stride is None else stride

    def close(a, b):
        return abs(a - b) <= 1e-4 * max(1.0, abs(b))

    if close(gw, 0) and close(gh, 0):
        for name, t, s in (("x", tx, sx), ("y", ty, sy)):
            if close(t, 0):
                continue
            what = f"every anchor is shifted by {t:+g} in {name}"
            if s:
                if close(abs(t), s / 2):
                    what += (f" = half the stride {s}: a centre offset of 0.5 vs 0 (detectron2's class default "
                             "OFFSET=0.5 / TF's stride/2 against torchvision's 0)")
                elif close(abs(t), s):
                    what += (f" = one whole stride {s}: an off-by-one cell index (the grid starts at 1, or "
                             "shifts use arange(1, W + 1))")
                elif close(abs(t), (s - 1) / 2):
                    what += f" = (stride - 1) / 2 = {(s - 1) / 2:g}: py-faster-rcnn's legacy centre (base_size - 1) / 2"
                elif close(abs(t), 1):
                    what += ": an off-by-one pixel offset"
                elif close(abs(t), 0.5):
                    what += ": half a pixel (pixel-centre vs pixel-corner coordinates)"
            notes.append(what)
    else:
        if close(abs(gw), 1) or close(abs(gh), 1):
            notes.append(f"widths/heights differ by {gw:+g}/{gh:+g}: the +1 (inclusive pixel) convention, "
                         "w = x2 - x1 + 1")
        elif close(dx1, 0) and close(dy1, 0) and close(dx2, -1) and close(dy2, -1):
            notes.append("x2, y2 are one less: inclusive last-pixel corners (x2 = x1 + w - 1)")
        else:
            notes.append(f"a constant difference {[dx1, dy1, dx2, dy2]} (centre {tx:+g}, {ty:+g}; size {gw:+g}, {gh:+g})")
    return notes


def explain_anchor_difference(actual: ArrayLike, expected: ArrayLike, *,
                              feature_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                              num_anchors: Union[int, Sequence[int], None] = None,
                              strides: Optional[Sequence] = None, atol: float = 1e-4, rtol: float = 1e-6,
                              config: Optional[dict] = None, convention: str = "torchvision") -> Optional[str]:
    """The explanation text of :func:`assert_anchors_equal`, or ``None`` when the anchors agree.

    ``actual`` (the result under test) that is not an array of numbers is an AssertionError; one of
    the wrong shape, or with NaN, is explained. The other arguments are validated (TypeError /
    ValueError naming them).
    """
    a = result_array(actual, "`actual` (the anchors under test)", "an (N, 4) array of xyxy boxes")
    if a.dtype.kind == "b":
        raise AssertionError("`actual` (the anchors under test) holds booleans, not coordinates")
    a = a.astype(np.float64)
    e = _checks.as_float_array(expected, "expected", ndim=2, last=4, dtype=np.float64)
    atol = check_tolerance(atol, "atol")
    rtol = check_tolerance(rtol, "rtol")
    if not isinstance(convention, str):
        raise TypeError(f"`convention` must be a profile name (str); got {_checks._describe(convention)}")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"`config` must be a dict of pyramid_anchors arguments; got {_checks._describe(config)}")
    lines = []
    layout = None
    if feature_sizes is not None:
        feature_sizes = _checks.as_feature_sizes(feature_sizes)
        num_anchors = _check_num_anchors(num_anchors, len(feature_sizes))
        strides = _check_strides(strides, len(feature_sizes))
        layout = _per_level_counts(len(e), feature_sizes, num_anchors)
        if layout is not None and sum(h * k for h, k in zip(layout[1], layout[0])) != len(e):
            raise ValueError(f"`feature_sizes` and `num_anchors` give {sum(h * k for h, k in zip(layout[1], layout[0]))} "
                             f"anchors but `expected` has {len(e)} rows")
    if a.ndim != 2 or a.shape[-1] != 4:
        return f"actual anchors must have shape (N, 4); got {a.shape}"
    if not np.isfinite(a).all():
        i = tuple(int(v) for v in np.argwhere(~np.isfinite(a))[0])
        return f"actual anchors hold a non-finite value {a[i]!r} at {list(i)}"
    if a.shape != e.shape:
        lines.append(f"anchor counts differ: actual has {len(a)} rows, expected {len(e)}")
        if layout is not None:
            A, hw = layout
            per = [h * k for h, k in zip(hw, A)]
            lines.append(f"  expected per level (H*W*A): {per} with A = {A}")
            if sum(hw) and len(a) % sum(hw) == 0:
                lines.append(f"  actual is consistent with A = {len(a) // sum(hw)} anchors per location")
        return "\n".join(lines)
    if a.size == 0:
        return None
    tol = atol + rtol * np.abs(e)
    bad_el = ~(np.abs(a - e) <= tol)
    bad = bad_el.any(axis=1)
    if not bad.any():
        return None
    rows = np.flatnonzero(bad)
    r = int(rows[0])
    d = a - e
    where = f"row {r}"
    if layout is not None:
        A, _ = layout
        lvl, y, x, k = anchor_location(r, feature_sizes, A)
        where = f"level {lvl}, location (y={y}, x={x}), anchor a={k} (row {r})"
    lines.append(f"anchors differ in {rows.size} of {len(e)} rows; first at {where}:")
    lines.append(f"  actual   {_fmt_box(a[r])}")
    lines.append(f"  expected {_fmt_box(e[r])}")
    lines.append(f"  difference (x1, y1, x2, y2): {_fmt_box(d[r])}; worst |difference| {float(np.abs(d).max()):.6g}")
    # same anchors, another order?
    ka = np.round(a, 4)
    ke = np.round(e, 4)
    sa = ka[np.lexsort(ka.T[::-1])]
    se = ke[np.lexsort(ke.T[::-1])]
    if np.array_equal(sa, se):
        lines.append("  the same anchors in a different ORDER: refdet flattens (level, y, x, a); check the cell-anchor "
                     "order (ratio-major vs size-major, detectron2) and the (y, x, a) vs (a, y, x) layout")
        if layout is not None:
            hits = np.flatnonzero((np.abs(e - a[r]) <= 1e-4).all(axis=1))
            if hits.size:
                lvl2, y2, x2, k2 = anchor_location(int(hits[0]), feature_sizes, layout[0])
                lines.append(f"  actual row {r} is expected at level {lvl2}, (y={y2}, x={x2}), a={k2} (row {int(hits[0])})")
    elif layout is not None:
        A, hw = layout
        start = 0
        for lvl, (n_hw, k) in enumerate(zip(hw, A)):
            n = n_hw * k
            dl = d[start:start + n]
            bl = bad[start:start + n]
            start += n
            if not bl.any():
                continue
            const = bool(np.all(np.abs(dl - dl[0]) <= 1e-4 * np.maximum(1.0, np.abs(dl[0]))))
            s = None
            if strides is not None:
                sv = strides[lvl]
                s = (float(sv[0]), float(sv[1])) if np.ndim(sv) else (float(sv), float(sv))
            if const:
                for note in _shift_story(dl[0], s):
                    lines.append(f"  level {lvl}: {note}")
            else:
                # constant per cell anchor (a) but varying by a? then the cell anchors differ
                per_a = dl.reshape(-1, k, 4)
                if np.all(np.abs(per_a - per_a[0]) <= 1e-4):
                    lines.append(f"  level {lvl}: the difference depends only on the anchor index a, not on the "
                                 f"location: the CELL anchors differ (sizes, ratios, rounding); per-a differences "
                                 f"{[_fmt_box(v) for v in per_a[0][:4]]}")
                else:
                    lines.append(f"  level {lvl}: the difference varies with the location (a stride or grid "
                                 f"difference); {int(bl.sum())} of {n} rows differ")
    if config is not None:
        from refdet.testing.compare_floats import float_variants

        cfg = dict(config)
        args = tuple(cfg.pop(k) for k in ("image_size", "feature_sizes", "strides", "sizes", "aspect_ratios"))
        extra = [(f"center_offset={v!r}", {"center_offset": v}) for v in (0.5, "legacy", 1.0)]
        variants = float_variants("pyramid_anchors", args, cfg, convention=convention, extra=extra)
        hits = [k for k, v in variants.items() if v.shape == a.shape and np.allclose(v, a, rtol=rtol, atol=atol)]
        if hits:
            lines.append("  refdet.pyramid_anchors reproduces actual with: " + "; ".join(hits[:5]))
        else:
            lines.append("  no refdet convention or knob of pyramid_anchors reproduces actual")
    return "\n".join(lines)


def assert_anchors_equal(actual: ArrayLike, expected: ArrayLike, *,
                         feature_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                         num_anchors: Union[int, Sequence[int], None] = None, strides: Optional[Sequence] = None,
                         atol: float = 1e-4, rtol: float = 1e-6, config: Optional[dict] = None,
                         convention: str = "torchvision") -> None:
    """Assert two anchor sets are equal (within ``atol + rtol * |expected|``); explain the first difference.

    Parameters
    ----------
    actual, expected : array_like, shape (N, 4), xyxy
        Rows in the ``(level, y, x, a)`` order.
    feature_sizes : sequence of (H_l, W_l), optional
        Lets the message name the level, location (y, x) and anchor index a of a row.
    num_anchors : int or sequence of int, optional
        A (or A_l per level); inferred from N when every level has the same A.
    strides : sequence of int or (sy, sx), optional
        Lets the message recognise shifts of half a stride, a whole stride or (stride - 1) / 2.
    atol, rtol : float
        Coordinates agree when ``|actual - expected| <= atol + rtol * |expected|`` (pixels).
    config : dict, optional
        ``pyramid_anchors`` arguments (``image_size``, ``feature_sizes``, ``strides``, ``sizes``,
        ``aspect_ratios`` and any knobs): the message then names the refdet convention or knob that
        reproduces ``actual``.
    convention : str
        The profile ``expected`` was computed with.

    Raises
    ------
    AssertionError
    """
    msg = explain_anchor_difference(actual, expected, feature_sizes=feature_sizes, num_anchors=num_anchors,
                                    strides=strides, atol=atol, rtol=rtol, config=config, convention=convention)
    if msg is not None:
        raise AssertionError(msg)
