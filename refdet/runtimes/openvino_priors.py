"""OpenVINO's PriorBox (opset 8) and PriorBoxClustered (opset 1) as its CPU plugin runs them.

Split out of :mod:`refdet.runtimes.openvino`, which re-exports both functions: import them from
there. Sources (openvinotoolkit/openvino): ``src/core/reference/include/openvino/reference/prior_box.hpp``,
``prior_box_clustered.hpp``; checked against ``openvino.Core().compile_model(model, "CPU")`` in
``tests/test_openvino_runtime.py``.
"""
from __future__ import annotations

import numpy as np

from refdet import _checks

__all__ = ["prior_box", "prior_box_clustered"]

_F32 = np.float32


# --------------------------------------------------------------------------------------------------
# PriorBox (opset 8), PriorBoxClustered (opset 1)
# --------------------------------------------------------------------------------------------------

def _float_list(v, name, *, positive=False):
    """A flat list of finite float32 values (empty allowed); ``positive``: each > 0 (OpenVINO takes
    square roots and reciprocals of them and would answer NaN or inf)."""
    arr = np.atleast_1d(_checks.as_array(v, name))
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must be a list of numbers; got booleans")
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a list of numbers; got shape {arr.shape}")
    arr = arr.astype(np.float64)
    _checks.check_finite(arr, name)
    if positive and (arr <= 0).any():
        raise ValueError(f"`{name}` must hold values > 0 (OpenVINO would take the square root or the reciprocal); "
                         f"got {arr[arr <= 0][0]}")
    return [_F32(x) for x in arr]


def _pair(v, name):
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 2:
        raise TypeError(f"`{name}` must be a pair (H, W) of ints; got {v!r}")
    return [_checks.check_int(x, f"{name}[{i}]", low=1, high=2 ** 31 - 1) for i, x in enumerate(v)]


def _layer_and_image(layer_shape, image_shape):
    lh, lw = _pair(layer_shape, "layer_shape")
    ih, iw = _pair(image_shape, "image_shape")
    return lh, lw, ih, iw


def _check_size(H, W, n_priors):
    _checks.check_allocation(2 * H * W * n_priors * 4, 4, "priors x 4 coordinates x 2 rows", name="layer_shape",
                             keyword=False)


def _aspect_ratios(aspect_ratio, flip):
    """``[1] + aspect_ratio`` with duplicates (|a - b| < 1e-6) dropped and ``1 / ar`` after each new one
    when ``flip`` (``prior_box.hpp``; ``PriorBox::normalized_aspect_ratio``)."""
    out = [_F32(1)]
    for ar in aspect_ratio:
        if any(abs(float(ar) - float(e)) < 1e-6 for e in out):
            continue
        out.append(_F32(ar))
        if flip:
            out.append(_F32(1) / _F32(ar))
    return out


def _variance_row(variance, n_priors_total, name="variance"):
    v = _float_list(variance, name) or [_F32(0.1)]
    if len(v) not in (1, 4):
        raise ValueError(f"`{name}` must hold 0, 1 or 4 values (OpenVINO NGRAPH_CHECK); got {len(v)}")
    return np.tile(np.array(v if len(v) == 4 else v * 4, np.float32), n_priors_total)


def prior_box(layer_shape, image_shape, *, min_size=(), max_size=(), aspect_ratio=(), flip: bool = False,
              clip: bool = False, step: float = 0.0, offset: float = 0.0, variance=(),
              scale_all_sizes: bool = True, fixed_ratio=(), fixed_size=(), density=(),
              min_max_aspect_ratios_order: bool = True) -> np.ndarray:
    """OpenVINO ``PriorBox`` (opset 8): SSD default boxes, normalised to the image, with variances.

    For every feature-map cell ``(h, w)`` (row-major) the priors come in this order:

    1. ``fixed_size`` (with ``density``): for each fixed size ``f``, ``density[s]**2`` shifted copies
       of each ``fixed_ratio`` box (or, without ``fixed_ratio``, of the square ``f x f`` box and then
       of each aspect ratio != 1), centres ``cx - int(f) // 2 + shift / 2 + c * shift`` with
       ``shift = int(f / density)``; these boxes are always clipped to [0, 1].
    2. for each ``min_size[i]``: the square ``min x min``; then with
       ``min_max_aspect_ratios_order=True`` the square ``sqrt(min * max[i])`` and the aspect-ratio boxes
       ``min * sqrt(ar) x min / sqrt(ar)`` (ar != 1), with ``False`` the aspect-ratio boxes first
       (Caffe's order). Without ``scale_all_sizes`` (MXNet) only the last min size gets the aspect
       ratios, of ``min_size[0]``, and ``step`` and ``min_size`` are fractions of the image height.

    Aspect ratios: 1 first, then each new value (a value within 1e-6 of an earlier one is skipped)
    followed by ``1 / ar`` when ``flip``. Centres: ``(w + 0.5) * IW / W`` when ``step == 0`` (the
    ``offset`` is then ignored), else ``(offset + w) * step``. Coordinates ``(cx -+ half_w) / IW``,
    ``(cy -+ half_h) / IH`` (multiplied by ``1.0f / IW``), all in float32; ``clip`` clamps every value
    to [0, 1] at the end.

    Parameters
    ----------
    layer_shape : (H, W)
        Feature-map size.
    image_shape : (IH, IW)
        Image size.
    min_size, max_size, aspect_ratio, fixed_ratio, fixed_size, density, variance : sequences of float
    flip, clip, scale_all_sizes, min_max_aspect_ratios_order : bool
    step, offset : float

    Returns
    -------
    ndarray of float32, shape (2, 4 * H * W * P)
        Row 0: ``[xmin, ymin, xmax, ymax]`` of every prior; row 1: the variances (one value repeated
        or four values tiled; 0.1 when ``variance`` is empty).

    Notes
    -----
    Source: ``src/core/reference/include/openvino/reference/prior_box.hpp`` (what the CPU plugin
    runs when the shapes are constants: the op is constant-folded) and
    ``PriorBox::number_of_priors``. ``ValueError`` for an attribute combination whose prior count
    differs from ``number_of_priors`` (OpenVINO would write past or short of its output), e.g. more
    ``max_size`` than ``min_size`` values, or ``density`` / ``fixed_size`` of different lengths.

    Examples
    --------
    One cell of a 1 x 1 map on a 100 x 100 image, min size 20, max size 60, aspect ratio 2:
    squares of side 20 and sqrt(20 * 60) = 34.64, then a 28.28 x 14.14 box.

    >>> pb = prior_box((1, 1), (100, 100), min_size=[20], max_size=[60], aspect_ratio=[2])
    >>> pb[0].reshape(-1, 4).round(4)
    array([[0.4   , 0.4   , 0.6   , 0.6   ],
           [0.3268, 0.3268, 0.6732, 0.6732],
           [0.3586, 0.4293, 0.6414, 0.5707]], dtype=float32)
    """
    H, W, IH, IW = _layer_and_image(layer_shape, image_shape)
    mins = _float_list(min_size, "min_size", positive=True)
    maxs = _float_list(max_size, "max_size", positive=True)
    fixed = _float_list(fixed_size, "fixed_size", positive=True)
    fratio = _float_list(fixed_ratio, "fixed_ratio", positive=True)
    dens = _float_list(density, "density", positive=True)
    flip = _checks.check_bool(flip, "flip")
    clip = _checks.check_bool(clip, "clip")
    scale_all_sizes = _checks.check_bool(scale_all_sizes, "scale_all_sizes")
    min_max_aspect_ratios_order = _checks.check_bool(min_max_aspect_ratios_order, "min_max_aspect_ratios_order")
    ars = _aspect_ratios(_float_list(aspect_ratio, "aspect_ratio", positive=True), flip)
    st = _F32(_checks.check_real(step, "step"))
    off = _F32(_checks.check_real(offset, "offset"))
    if fixed and len(dens) < len(fixed):
        raise ValueError("`density` must have one value per `fixed_size` (OpenVINO PriorBox reads density[s]); "
                         f"got {len(dens)} for {len(fixed)}")
    # PriorBox::number_of_priors
    n_expected = len(ars) * len(mins) + len(maxs) if scale_all_sizes else len(ars) + len(mins) - 1
    if fixed:
        n_expected = len(ars) * len(fixed)
    for d in dens:
        d2 = int(d) * int(d) - 1
        n_expected += (len(fratio) if fratio else len(ars)) * d2
    _check_size(H, W, max(n_expected, 0))                           # before the per-prior loops below
    if not scale_all_sizes:                                         # mxnet-like PriorBox
        st = _F32(1) * _F32(IH) / _F32(H) if st == -1 else st * _F32(IH)
        mins = [m * _F32(IH) for m in mins]
    half = _F32(0.5)
    # one entry per prior: (fa, fb, shift_col, shift_row, half_w, half_h, clip_now)
    specs = []

    def dense(f, d, hw, hh):
        fi = int(f)                                                 # static_cast<size_t>(fixed_size[s])
        di = int(d)
        shift = int(f / _F32(di)) if di else 0                      # static_cast<int64_t>(fixed_size / density)
        for r in range(di):
            for c in range(di):
                specs.append((_F32(fi // 2), _F32(shift) / _F32(2), _F32(c * shift), _F32(r * shift), hw, hh, True))

    for s_i, f in enumerate(fixed):
        sq = _F32(int(f)) * half
        if fratio:
            for ar in fratio:
                a = np.sqrt(ar, dtype=np.float32)
                dense(f, dens[s_i], f * half * a, f * half / a)
        else:
            if dens:
                dense(f, dens[s_i], sq, sq)
            for ar in ars:
                if abs(float(ar) - 1.0) < 1e-6:
                    continue
                a = np.sqrt(ar, dtype=np.float32)
                dense(f, dens[s_i], f * half * a, f * half / a)
    for i, m in enumerate(mins):
        specs.append((None, None, None, None, m * half, m * half, False))
        ratio_boxes = []
        if scale_all_sizes or i == len(mins) - 1:
            base = mins[i if scale_all_sizes else 0]
            for ar in ars:
                if abs(float(ar) - 1.0) < 1e-6:
                    continue
                a = np.sqrt(ar, dtype=np.float32)
                ratio_boxes.append((None, None, None, None, base * half * a, base * half / a, False))
        big = []
        if len(maxs) > i:
            hb = np.sqrt(m * maxs[i], dtype=np.float32) * half
            big = [(None, None, None, None, hb, hb, False)]
        specs += (big + ratio_boxes) if min_max_aspect_ratios_order else (ratio_boxes + big)
    if len(specs) != n_expected:
        raise ValueError(f"this attribute combination gives {len(specs)} priors per cell but OpenVINO PriorBox's "
                         f"number_of_priors is {n_expected} (check `max_size` against `min_size`, `density` against "
                         "`fixed_size`, `aspect_ratio` and `scale_all_sizes`): OpenVINO would write out of its output")
    _check_size(H, W, len(specs))
    hh_, ww_ = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
    if st == 0:
        cx = (ww_ + half) * (_F32(IW) / _F32(W))
        cy = (hh_ + half) * (_F32(IH) / _F32(H))
    else:
        cx = (off + ww_) * st
        cy = (off + hh_) * st
    iwi, ihi = _F32(1) / _F32(IW), _F32(1) / _F32(IH)
    out = np.empty((H, W, max(len(specs), 0), 4), np.float32)
    for p, (fa, fb, sc_, sr_, hw, hh, clip_now) in enumerate(specs):
        x, y = cx, cy
        if fa is not None:
            x = ((cx - fa) + fb) + sc_
            y = ((cy - fa) + fb) + sr_
        box = np.stack([(x - hw) * iwi, (y - hh) * ihi, (x + hw) * iwi, (y + hh) * ihi], axis=-1)
        if clip_now:
            box[..., :2] = np.where(box[..., :2] > 0, box[..., :2], _F32(0))
            box[..., 2:] = np.where(box[..., 2:] < 1, box[..., 2:], _F32(1))
        out[:, :, p] = box
    coords = out.reshape(-1)
    if clip:
        coords = np.minimum(np.maximum(coords, _F32(0)), _F32(1))
    return np.stack([coords, _variance_row(variance, H * W * len(specs))])


def prior_box_clustered(layer_shape, image_shape, *, widths=(), heights=(), clip: bool = True,
                        step_widths: float = 0.0, step_heights: float = 0.0, step: float = 0.0,
                        offset: float = 0.5, variance=()) -> np.ndarray:
    """OpenVINO ``PriorBoxClustered`` (opset 1): priors of given pixel sizes, normalised to the image.

    For every cell ``(h, w)`` and every ``(widths[s], heights[s])``::

        step_w = step_widths or step;  step_h = step_heights or step
        (both 0: step_w = IW / W, step_h = IH / H)
        cx = (w + offset) * step_w;  cy = (h + offset) * step_h
        box = ((cx - width / 2) / IW, (cy - height / 2) / IH, (cx + width / 2) / IW, (cy + height / 2) / IH)

    in float32 (division by the image size, not multiplication by its inverse as in
    :func:`prior_box`), clamped to [0, 1] with ``clip``. Only when **both** steps are 0 are they
    derived from the image: ``step_widths=8`` alone leaves ``step_h = 0`` and every centre at ``y = 0``
    (reproduced, as OpenVINO does).

    Parameters
    ----------
    layer_shape : (H, W)
    image_shape : (IH, IW)
    widths, heights : sequences of float of equal length
    clip : bool
    step_widths, step_heights, step, offset : float
    variance : 0, 1 or 4 floats

    Returns
    -------
    ndarray of float32, shape (2, 4 * H * W * P)

    Notes
    -----
    Source: ``src/core/reference/include/openvino/reference/prior_box_clustered.hpp``.

    Examples
    --------
    >>> pbc = prior_box_clustered((1, 2), (10, 20), widths=[4], heights=[2])
    >>> pbc[0].reshape(-1, 4)
    array([[0.15, 0.4 , 0.35, 0.6 ],
           [0.65, 0.4 , 0.85, 0.6 ]], dtype=float32)
    """
    H, W, IH, IW = _layer_and_image(layer_shape, image_shape)
    ws = _float_list(widths, "widths")
    hs = _float_list(heights, "heights")
    clip = _checks.check_bool(clip, "clip")
    if len(ws) != len(hs):
        raise ValueError(f"`widths` and `heights` must have the same length (OpenVINO PriorBoxClustered); got "
                         f"{len(ws)} and {len(hs)}")
    sw = _F32(_checks.check_real(step_widths, "step_widths"))
    sh = _F32(_checks.check_real(step_heights, "step_heights"))
    st = _F32(_checks.check_real(step, "step"))
    off = _F32(_checks.check_real(offset, "offset"))
    _check_size(H, W, len(ws))
    step_w = st if sw == 0 else sw
    step_h = st if sh == 0 else sh
    if step_w == 0 and step_h == 0:
        step_w, step_h = _F32(IW) / _F32(W), _F32(IH) / _F32(H)
    hh_, ww_ = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
    cx = (ww_ + off) * step_w                                     # (H, W)
    cy = (hh_ + off) * step_h
    two = _F32(2)
    wv = np.array(ws, np.float32)                                 # (P,)
    hv = np.array(hs, np.float32)
    fiw, fih = _F32(IW), _F32(IH)
    box = np.stack([(cx[..., None] - wv / two) / fiw, (cy[..., None] - hv / two) / fih,
                    (cx[..., None] + wv / two) / fiw, (cy[..., None] + hv / two) / fih], axis=-1)  # (H, W, P, 4)
    if clip:
        box = np.minimum(np.maximum(box, _F32(0)), _F32(1))
    return np.stack([box.reshape(-1).astype(np.float32), _variance_row(variance, H * W * len(ws), "variance")])
