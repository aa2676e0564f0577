"""RoIAlign (Mask R-CNN, He et al. 2017, §3): bilinear sampling of a regular grid in every bin.

For a RoI ``(x1, y1, x2, y2)`` in image coordinates and an output of ``PH x PW`` bins, every
framework computes, in the feature map's coordinates (``scale = spatial_scale``)::

    start = x1 * scale - offset                    offset = 0.5 if aligned else 0
    size  = x2 * scale - offset - start            (aligned=False: max(size, 1), "malformed RoIs 1x1")
    bin   = size / PW
    grid  = sampling_ratio if > 0 else ceil(size / PW)          (adaptive: about one sample per pixel)
    x(pw, ix) = start + pw * bin + (ix + 0.5) * bin / grid      (ix = 0 .. grid - 1)

and the bin's value is the mean (``mode="avg"``) of the bilinear interpolations at the ``grid_h x
grid_w`` sample points. A sample with ``y < -1`` or ``y > H`` (likewise for x) contributes 0 but still
counts in the mean; a coordinate in ``[-1, 0]`` is clamped to 0, one past ``H - 1`` to ``H - 1``
(torchvision ``csrc/ops/cpu/roi_align_common.h``, ``pre_calc_for_bilinear_interpolate``).

Which framework does what
-------------------------
* torchvision ``ops.roi_align(input, boxes, output_size, spatial_scale=1, sampling_ratio=-1,
  aligned=False)``; ``MultiScaleRoIAlign`` in Faster R-CNN uses ``sampling_ratio=2, aligned=False``.
* detectron2 ``layers.ROIAlign`` calls torchvision's kernel; ``POOLER_TYPE: "ROIAlignV2"`` (the
  default) is ``aligned=True``, ``"ROIAlign"`` is ``aligned=False``; ``POOLER_SAMPLING_RATIO: 0``.
* mmcv ``RoIAlign`` (mmdet): ``aligned=True, sampling_ratio=0``, the same kernel (from Caffe2).
* ONNX ``RoiAlign``: opset 16 added ``coordinate_transformation_mode``: ``"half_pixel"`` (default)
  is ``aligned=True``, ``"output_half_pixel"`` (and every opset-10 model) is ``aligned=False``;
  ``sampling_ratio=0`` is adaptive; ``mode="max"`` takes, per sample, the largest of the four
  *weighted corners* ``w_i * v_i`` and then the largest over samples (onnxruntime
  ``object_detection/roialign.cc`` and ``onnx/reference/ops/op_roi_align.py`` agree on this: it is
  not the maximum of the interpolated values). See :func:`onnx_roi_align` for the two evaluators.
* TF uses ``crop_and_resize`` instead: :mod:`refdet.roi.crop`.

Order of operations
-------------------
float32 and float64 follow torchvision's kernel step by step: the geometry above in the features'
dtype (``spatial_scale`` rounded to it), weights ``hy * hx`` etc., each sample's
``((w1*v1 + w2*v2) + w3*v3) + w4*v4`` added to a running sum that starts at +0, then one division
by ``max(grid_h * grid_w, 1)``. The backward pass adds ``(dout * w) / count`` into the gradient in the
kernel's loop order (RoI, bin, sample, corner), so float32 and float64 results equal
``torchvision.ops.roi_align`` and its autograd bit for bit (``tests/test_roi.py``). RoI boxes receive
no gradient (torchvision and detectron2 treat them as constants).

The readable version is :func:`refdet.reference.roi.roi_align_reference` (loops over RoIs, bins and
samples); a property test holds the two equal.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.roi import _common

__all__ = [
    "RoIAlignCache",
    "RoIAlignGrads",
    "roi_align_forward",
    "roi_align_backward",
    "roi_align",
    "onnx_roi_align",
]

ROI_ALIGN_MODES = ("avg", "max")

conventions.register(
    "roi_align",
    {
        "torchvision": {"aligned": False, "sampling_ratio": -1},
        "detectron2": {"aligned": True, "sampling_ratio": 0},
        "mmdet": {"aligned": True, "sampling_ratio": 0},
        "caffe": {"aligned": False, "sampling_ratio": 0},
        "onnx": {"aligned": True, "sampling_ratio": 0},
        "paper": {"aligned": False, "sampling_ratio": 2},
    },
    knobs={
        "aligned": conventions.flag(
            "shift the scaled box by -0.5 pixel (pixel centres at integers) and do not force a 1x1 size",
            source="torchvision ops/roi_align.py (aligned); detectron2 ROIAlignV2; ONNX RoiAlign-16 "
                   "coordinate_transformation_mode='half_pixel'; mmcv RoIAlign(aligned=True)"),
        "sampling_ratio": conventions.integer(
            "sample points per bin along each axis; -1 or 0: adaptive, ceil(bin size)",
            low=-1,
            source="torchvision default -1; detectron2 MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO 0; mmdet "
                   "RoIAlign sampling_ratio=0; Detectron1 FAST_RCNN.ROI_XFORM_SAMPLING_RATIO 0; ONNX default 0; "
                   "Mask R-CNN paper §3: four regular sample points (2 x 2)"),
    },
    doc="detectron2 'ROIAlignV2' (the default pooler) = aligned True; 'ROIAlign' = aligned False. "
        "Caffe = Detectron1's Caffe2 RoIAlign op (no half-pixel shift). TF has no RoIAlign: its "
        "Faster R-CNN crops with crop_and_resize (refdet.roi.crop), so the op raises for 'tf'.",
)


class RoIAlignCache(NamedTuple):
    """What :func:`roi_align_backward` needs (the validated inputs and the geometry)."""
    rois: np.ndarray               # (K, 5) in the working dtype: batch index, x1, y1, x2, y2
    batch: np.ndarray              # (K,) int64
    features_shape: tuple          # (B, C, H, W)
    dtype: np.dtype
    output_size: tuple             # (PH, PW)
    spatial_scale: float
    sampling_ratio: int
    aligned: bool
    mode: str
    argmax: Optional[np.ndarray]   # mode="max": (K, PH, PW, C) int64 flat index into (B*H*W), -1: none
    argweight: Optional[np.ndarray]  # mode="max": (K, PH, PW, C) the winning corner's weight


class RoIAlignGrads(NamedTuple):
    """Gradient of :func:`roi_align_forward` (the boxes get none)."""
    dfeatures: np.ndarray          # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------
# geometry (per RoI, per axis), in the working dtype and the kernel's order of operations
# ---------------------------------------------------------------------------------------------------

class _Geometry(NamedTuple):
    start_y: np.ndarray    # (K,)
    start_x: np.ndarray
    bin_h: np.ndarray
    bin_w: np.ndarray
    grid_h: np.ndarray     # (K,) int64 (may be <= 0 for an aligned RoI of negative size: no samples)
    grid_w: np.ndarray
    clamped_h: np.ndarray  # (K,) bool: aligned=False and the scaled height was < 1 (forced to 1)
    clamped_w: np.ndarray


def _geometry(rois, output_size, spatial_scale, sampling_ratio, aligned) -> _Geometry:
    dt = rois.dtype
    one = dt.type(1)
    s = dt.type(spatial_scale)            # the kernel receives `const T& spatial_scale`
    off = dt.type(0.5 if aligned else 0.0)
    x1 = rois[:, 1] * s - off
    y1 = rois[:, 2] * s - off
    x2 = rois[:, 3] * s - off
    y2 = rois[:, 4] * s - off
    w = x2 - x1
    h = y2 - y1
    clamped_h = np.zeros(len(rois), dtype=bool)
    clamped_w = clamped_h.copy()
    if not aligned:                       # "Force malformed ROIs to be 1x1"
        clamped_h, clamped_w = h < one, w < one
        w = np.maximum(w, one)
        h = np.maximum(h, one)
    ph, pw = output_size
    bin_h = h / dt.type(ph)
    bin_w = w / dt.type(pw)
    if sampling_ratio > 0:
        gh = np.full(len(rois), sampling_ratio, dtype=np.int64)
        gw = gh.copy()
    else:                                  # ceil(roi_height / pooled_height): the same division as bin_h
        gh = np.ceil(bin_h).astype(np.int64)
        gw = np.ceil(bin_w).astype(np.int64)
    return _Geometry(y1, x1, bin_h, bin_w, gh, gw, clamped_h, clamped_w)


class _Axis(NamedTuple):
    low: np.ndarray     # (K, P, G) int64
    high: np.ndarray
    frac: np.ndarray    # (K, P, G) dtype: l = y - y_low
    rest: np.ndarray    # h = 1 - l
    valid: np.ndarray   # (K, P, G) bool: -1 <= y <= size


def _axis_samples(start, bin_size, grid, P, G, size, python_bins=None) -> _Axis:
    """Sample coordinates along one axis and their bilinear split, shape (K, P, G).

    ``y = (start + p * bin) + ((i + 0.5) * bin) / grid``: the association of the C++ expression
    ``roi_start_h + ph * bin_size_h + static_cast<T>(iy + .5f) * bin_size_h / static_cast<T>(grid)``.

    ``python_bins`` (K,) bool marks RoIs whose bin size ``onnx.reference`` holds as a Python float
    (float64) in a float32 computation: ``max(roi_height, 1.0)`` returns the Python ``1.0`` when it
    clamps, so ``p * bin`` and ``(i + 0.5) * bin / grid`` are computed in float64 and rounded to
    float32 only when added to the float32 start (NumPy 2's rule for Python scalars).
    """
    dt = start.dtype
    p = np.arange(P, dtype=dt)[None, :, None]                      # (1, P, 1)
    t = (np.arange(G) + 0.5).astype(dt)[None, None, :]             # (1, 1, G)
    g = np.maximum(grid, 1).astype(dt)[:, None, None]              # (K, 1, 1); grid <= 0 has no samples
    b = bin_size[:, None, None]
    y = (start[:, None, None] + p * b) + (t * b) / g               # (K, P, G)
    if python_bins is not None and dt == np.float32 and python_bins.any():
        bd = 1.0 / P                                               # Python float: 1.0 / pooled_height
        pd = np.arange(P, dtype=np.float64)[None, :, None] * bd
        td = (np.arange(G) + 0.5)[None, None, :] * bd / np.maximum(grid, 1)[:, None, None]
        yd = (start[:, None, None] + pd.astype(dt)) + td.astype(dt)
        y = np.where(python_bins[:, None, None], yd, y)
    valid = (y >= -1) & (y <= size)
    y = np.where(y <= 0, dt.type(0), y)
    low = y.astype(np.int64)                                       # (int)y, y >= 0 here
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    y = np.where(at_edge, low.astype(dt), y)
    frac = y - low.astype(dt)
    rest = dt.type(1) - frac
    return _Axis(low, high, frac, rest, valid)


def _block_slices(n, per_roi):
    step = max(1, _common.BLOCK_ELEMENTS // max(per_roi, 1))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def _sample_weights(ay, ax, rows, iy, ix):
    """Weights and in-map positions of one sample per RoI in ``rows``: four (n, PH, PW) pairs."""
    hy, ly = ay.rest[rows, :, iy], ay.frac[rows, :, iy]           # (n, PH)
    hx, lx = ax.rest[rows, :, ix], ax.frac[rows, :, ix]           # (n, PW)
    valid = ay.valid[rows, :, iy][:, :, None] & ax.valid[rows, :, ix][:, None, :]
    ylo, yhi = ay.low[rows, :, iy][:, :, None], ay.high[rows, :, iy][:, :, None]
    xlo, xhi = ax.low[rows, :, ix][:, None, :], ax.high[rows, :, ix][:, None, :]
    hy, ly = hy[:, :, None], ly[:, :, None]
    hx, lx = hx[:, None, :], lx[:, None, :]
    zero = hy.dtype.type(0)
    w = [np.where(valid, hy * hx, zero), np.where(valid, hy * lx, zero),
         np.where(valid, ly * hx, zero), np.where(valid, ly * lx, zero)]
    return w, (ylo, yhi, xlo, xhi), valid


def _positions(W, corners, valid, base):
    ylo, yhi, xlo, xhi = corners
    # an empty sample reads pixel (0, 0) of its image with weight 0, as the kernel does
    return [np.where(valid, base + ylo * W + xlo, base), np.where(valid, base + ylo * W + xhi, base),
            np.where(valid, base + yhi * W + xlo, base), np.where(valid, base + yhi * W + xhi, base)]


def _sample_index(gh, gw, s):
    """(iy, ix) of sample ``s`` for RoIs with grids ``(gh, gw)`` (row-major, as the kernel's loops)."""
    gw1 = np.maximum(gw, 1)
    return s // gw1, s % gw1

#: gather from a compact copy of the touched pixels when they are at most this fraction of the map
COMPACT_FRACTION = 0.6


class _Pixels(NamedTuple):
    """The feature pixels a set of RoIs can touch, as rows of a (U, C) array (or all of them)."""
    pix: Optional[np.ndarray]     # (U,) sorted flat indices b*H*W + y*W + x; None: every pixel
    lut: Optional[np.ndarray]     # (B*H*W,) int64 row of each pixel in the compact array


def _touched_pixels(geo, output_size, batch, B, H, W) -> _Pixels:
    """A superset of the pixels the samples of every RoI read: its clipped bounding rectangle.

    Sample coordinates lie between the RoI's start and end, are clamped into ``[0, size - 1]`` and read
    ``floor`` and ``floor + 1``; empty samples read pixel (0, 0) of their image. Marking the rectangles
    (a 2-D difference array and two cumulative sums) costs O(K + B*H*W) and lets the kernel gather from
    a compact (U, C) copy instead of transposing the whole map when the RoIs cover little of it.
    """
    def span(start, bin_size, P, n):
        end = start + bin_size * P
        with np.errstate(invalid="ignore"):
            lo = np.clip(np.floor(np.minimum(start, end)), 0, n - 1).astype(np.int64)
            hi = np.clip(np.floor(np.maximum(start, end)) + 1, 0, n - 1).astype(np.int64)
        return lo, hi
    ylo, yhi = span(geo.start_y, geo.bin_h, output_size[0], H)
    xlo, xhi = span(geo.start_x, geo.bin_w, output_size[1], W)
    d = np.zeros((B, H + 1, W + 1), dtype=np.int64)
    np.add.at(d, (batch, ylo, xlo), 1)
    np.add.at(d, (batch, ylo, xhi + 1), -1)
    np.add.at(d, (batch, yhi + 1, xlo), -1)
    np.add.at(d, (batch, yhi + 1, xhi + 1), 1)
    d[np.unique(batch), 0, 0] += 1                      # pixel (0, 0): where empty samples read
    cover = np.cumsum(np.cumsum(d, axis=1), axis=2)[:, :H, :W] > 0
    pix = np.flatnonzero(cover)
    if len(pix) > COMPACT_FRACTION * B * H * W:
        return _Pixels(None, None)
    lut = np.full(B * H * W, -1, dtype=np.int64)
    lut[pix] = np.arange(len(pix))
    return _Pixels(pix, lut)


def _gather_rows(x, px: _Pixels):
    """(U, C) rows ``x[b, :, y, x]`` of the touched pixels (every pixel, NHWC order, if px.pix is None)."""
    B, C, H, W = x.shape
    if px.pix is None:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(B * H * W, C)
    rows = np.empty((len(px.pix), C), dtype=x.dtype)
    bounds = np.searchsorted(px.pix, np.arange(B + 1) * (H * W))
    for b in range(B):                                   # a handful of images
        a, e = bounds[b], bounds[b + 1]
        if e > a:
            rows[a:e] = np.take(x[b].reshape(C, H * W), px.pix[a:e] - b * H * W, axis=1).T
    return rows


def _rows_to_nchw(rows, px: _Pixels, shape):
    """The inverse of :func:`_gather_rows` for a gradient: (U, C) rows into a zero (B, C, H, W) array."""
    B, C, H, W = shape
    if px.pix is None:
        return np.ascontiguousarray(rows.reshape(B, H, W, C).transpose(0, 3, 1, 2))
    out = np.zeros((B, C, H * W), dtype=rows.dtype)
    bounds = np.searchsorted(px.pix, np.arange(B + 1) * (H * W))
    for b in range(B):
        a, e = bounds[b], bounds[b + 1]
        if e > a:
            out[b][:, px.pix[a:e] - b * H * W] = rows[a:e].T
    return out.reshape(B, C, H, W)


def _forward(x, rois, batch, output_size, spatial_scale, sampling_ratio, aligned, mode, onnx_reference=False,
             names=("output_size", "boxes`, `spatial_scale` and `sampling_ratio")):
    B, C, H, W = x.shape
    dt = x.dtype
    PH, PW = output_size
    K = len(rois)
    _common.check_outputs(K, C, PH, PW, dt.itemsize, name=names[0])
    out = np.zeros((K, PH, PW, C), dtype=dt)
    argmax = argweight = None
    if mode == "max":
        argmax = np.full((K, PH, PW, C), -1, dtype=np.int64)
        argweight = np.zeros((K, PH, PW, C), dtype=dt)
    if K == 0 or C == 0:
        return out, argmax, argweight
    geo = _geometry(rois, output_size, spatial_scale, sampling_ratio, aligned)
    _common.check_samples(geo.bin_h, geo.bin_w, sampling_ratio, output_size, name=names[1])
    px = _touched_pixels(geo, output_size, batch, B, H, W)
    xf = _gather_rows(x, px)                            # one row per (touched) pixel: C contiguous values
    nsamp = np.maximum(geo.grid_h, 0) * np.maximum(geo.grid_w, 0)
    count = np.maximum(geo.grid_h * geo.grid_w, 1).astype(dt)   # `std::max(grid_h * grid_w, 1)`
    for blk in _block_slices(K, PH * PW * C):
        # RoIs with more samples first: at sample s the RoIs still sampling are a prefix
        ids = blk.start + np.argsort(-nsamp[blk], kind="stable")
        ns = nsamp[ids]
        Gh = max(int(geo.grid_h[ids].max()), 1)
        Gw = max(int(geo.grid_w[ids].max()), 1)
        ay = _axis_samples(geo.start_y[ids], geo.bin_h[ids], geo.grid_h[ids], PH, Gh, H,
                           geo.clamped_h[ids] if onnx_reference else None)
        ax = _axis_samples(geo.start_x[ids], geo.bin_w[ids], geo.grid_w[ids], PW, Gw, W,
                           geo.clamped_w[ids] if onnx_reference else None)
        base = (batch[ids] * (H * W))[:, None, None]
        n_all = len(ids)
        acc = np.zeros((n_all, PH, PW, C), dtype=dt)
        best = np.zeros((n_all, PH, PW, C), dtype=dt) if mode == "max" else None
        bpos = np.full((n_all, PH, PW, C), -1, dtype=np.int64) if mode == "max" else None
        bw = np.zeros((n_all, PH, PW, C), dtype=dt) if mode == "max" else None
        v = np.empty((n_all, PH, PW, C), dtype=dt)
        tmp = np.empty((n_all, PH, PW, C), dtype=dt)
        smax = int(ns.max()) if n_all else 0
        for s in range(smax):
            n = int(np.count_nonzero(ns > s))
            rows = np.arange(n)
            iy, ix = _sample_index(geo.grid_h[ids[:n]], geo.grid_w[ids[:n]], s)
            w, corners, valid = _sample_weights(ay, ax, rows, iy, ix)
            pos = _positions(W, corners, valid, base[:n])
            if px.lut is not None:
                pos = [px.lut[p] for p in pos]
            if mode == "avg":
                t = tmp[:n]
                np.take(xf, pos[0], axis=0, out=t)
                t *= w[0][..., None]
                for j in (1, 2, 3):        # ((w1*v1 + w2*v2) + w3*v3) + w4*v4
                    vj = v[:n]
                    np.take(xf, pos[j], axis=0, out=vj)
                    vj *= w[j][..., None]
                    t += vj
                acc[:n] += t
            else:
                # val = max(max(max(w1*v1, w2*v2), w3*v3), w4*v4); std::max keeps the first on ties
                val = tmp[:n]
                np.take(xf, pos[0], axis=0, out=val)
                val *= w[0][..., None]
                vpos = np.broadcast_to(pos[0][..., None], val.shape).copy()
                vw = np.broadcast_to(w[0][..., None], val.shape).copy()
                for j in (1, 2, 3):
                    vj = v[:n]
                    np.take(xf, pos[j], axis=0, out=vj)
                    vj *= w[j][..., None]
                    better = val < vj
                    np.copyto(val, vj, where=better)
                    np.copyto(vpos, np.broadcast_to(pos[j][..., None], vj.shape), where=better)
                    np.copyto(vw, np.broadcast_to(w[j][..., None], vj.shape), where=better)
                if s == 0:
                    best[:n] = val
                    bpos[:n] = vpos
                    bw[:n] = vw
                else:
                    better = best[:n] < val
                    np.copyto(best[:n], val, where=better)
                    np.copyto(bpos[:n], vpos, where=better)
                    np.copyto(bw[:n], vw, where=better)
        if mode == "avg":
            acc /= count[ids][:, None, None, None]
            out[ids] = acc
        else:
            out[ids] = best
            argmax[ids] = bpos if px.pix is None else np.where(bpos >= 0, px.pix[np.maximum(bpos, 0)], -1)
            argweight[ids] = bw
    return out, argmax, argweight


def _resolve(convention, aligned, sampling_ratio):
    if isinstance(convention, str) and convention == "tf":
        raise ValueError("`convention` 'tf' has no RoIAlign: TF's Faster R-CNN crops with crop_and_resize; "
                         "use refdet.roi.crop_and_resize or tf_crop_and_pool")
    return conventions.resolve("roi_align", convention, aligned=aligned, sampling_ratio=sampling_ratio)


@conventions.documented("roi_align")
def roi_align_forward(features: np.ndarray, boxes, output_size, spatial_scale: float = 1.0,
                      sampling_ratio: Optional[int] = None, aligned: Optional[bool] = None, *,
                      mode: str = "avg", convention="torchvision") -> Tuple[np.ndarray, RoIAlignCache]:
    """RoIAlign forward pass (torchvision ``ops.roi_align`` and the frameworks that share its kernel).

    Reference: :func:`refdet.reference.roi.roi_align_reference` (the loop over RoIs, bins and sampling
    points; ``tests/test_roi.py`` holds the two equal bit for bit).

    Parameters
    ----------
    features : ndarray, shape (B, C, H, W)
        Feature map(s); NaN/inf rejected.
    boxes : ndarray, shape (K, 5), or list of B' <= B arrays of shape (L_i, 4)
        ``(batch index, x1, y1, x2, y2)`` rows in image coordinates, or one xyxy array per image
        (image ``i``'s boxes get batch index ``i``). A batch index must be an integer in ``[0, B)``.
        Zero-size boxes, boxes outside the map and ``x1 > x2`` are valid (see the module docstring).
    output_size : int or (int, int)
        ``(PH, PW)``, each >= 1.
    spatial_scale : float
        Image-to-feature scale (``1 / stride``), > 0; rounded to the features' dtype as in the kernel.
    sampling_ratio : int, optional
        Sample points per bin along each axis; -1 or 0: adaptive ``ceil(bin size)`` per RoI and axis.
        Default: the convention's (torchvision -1).
    aligned : bool, optional
        Half-pixel shift (see the module docstring). Default: the convention's (torchvision False).
    mode : {"avg", "max"}
        ``"max"`` is ONNX RoiAlign's max mode: the largest weighted corner ``w_i * v_i`` over the four
        corners and the samples (first wins on ties); its backward sends the gradient to that corner.
    convention : str or conventions.Profile
        Framework profile for the defaults of ``aligned`` and ``sampling_ratio``.

    Returns
    -------
    out : ndarray, shape (K, C, PH, PW)
        In the features' working dtype. A bin without samples (an aligned RoI of zero or negative
        size with the adaptive grid) is 0.
    cache : RoIAlignCache
    """
    _checks.check_choice(mode, "mode", ROI_ALIGN_MODES)
    s = _resolve(convention, aligned, sampling_ratio)
    x = _common.as_features(features)
    output_size = _common.check_output_size(output_size)
    spatial_scale = _common.check_spatial_scale(spatial_scale)
    sr = _common.check_sampling_ratio(s.sampling_ratio)
    rois, batch = _common.as_rois(boxes, x.shape[0], x.dtype)
    out, argmax, argweight = _forward(x, rois, batch, output_size, spatial_scale, sr, s.aligned, mode)
    y = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    cache = RoIAlignCache(rois.copy(), batch.copy(), tuple(x.shape), x.dtype, output_size, spatial_scale, sr,
                          bool(s.aligned), mode, argmax, argweight)
    return y, cache


def roi_align_backward(dout: np.ndarray, cache: RoIAlignCache) -> RoIAlignGrads:
    """Gradient of :func:`roi_align_forward` with respect to the features.

    Parameters
    ----------
    dout : ndarray, shape (K, C, PH, PW)
    cache : RoIAlignCache

    Returns
    -------
    RoIAlignGrads
        ``dfeatures`` (B, C, H, W). ``mode="avg"``: every sample adds ``(dout * w_i) / count`` to its
        four corners, in torchvision's ``roi_align_backward_kernel_impl`` loop order (RoI, bin,
        sample, corner), skipping samples outside ``[-1, H] x [-1, W]``: bit-equal to torchvision's
        autograd. ``mode="max"``: ``dout * w`` goes to the winning corner (a subgradient at ties).
    """
    cache = _common.check_cache(cache, RoIAlignCache)
    B, C, H, W = cache.features_shape
    dt = cache.dtype
    PH, PW = cache.output_size
    K = len(cache.rois)
    dy = _common.as_upstream(dout, (K, C, PH, PW), dt)
    if K == 0 or C == 0:
        return RoIAlignGrads(np.zeros(cache.features_shape, dtype=dt))
    dyr = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))            # (K, PH, PW, C)
    if cache.mode == "max":
        g = np.zeros((B * H * W, C), dtype=dt)
        _max_backward(g, dyr, cache)
        return RoIAlignGrads(_rows_to_nchw(g, _Pixels(None, None), cache.features_shape))
    geo = _geometry(cache.rois, cache.output_size, cache.spatial_scale, cache.sampling_ratio, cache.aligned)
    px = _touched_pixels(geo, cache.output_size, cache.batch, B, H, W)
    g = np.zeros((B * H * W if px.pix is None else len(px.pix), C), dtype=dt)
    _avg_backward(g, dyr.reshape(K * PH * PW, C), cache, geo, px)
    return RoIAlignGrads(_rows_to_nchw(g, px, cache.features_shape))


def _avg_backward(g, dyr, cache, geo, px):
    B, C, H, W = cache.features_shape
    dt = cache.dtype
    PH, PW = cache.output_size
    K = len(cache.rois)
    count = (geo.grid_h * geo.grid_w).astype(dt)     # the backward kernel divides by grid_h * grid_w
    Gh_all = max(int(geo.grid_h.max()), 1)
    Gw_all = max(int(geo.grid_w.max()), 1)
    # consecutive RoIs, in order: the per-pixel order of additions is the kernel's
    for blk in _block_slices(K, PH * PW * Gh_all * Gw_all * 4):
        ids = np.arange(blk.start, blk.stop)
        Gh = max(int(geo.grid_h[ids].max()), 1)
        Gw = max(int(geo.grid_w[ids].max()), 1)
        ay = _axis_samples(geo.start_y[ids], geo.bin_h[ids], geo.grid_h[ids], PH, Gh, H)
        ax = _axis_samples(geo.start_x[ids], geo.bin_w[ids], geo.grid_w[ids], PW, Gw, W)
        n = len(ids)
        # every (RoI, ph, pw, iy, ix, corner) in C order = the kernel's order
        valid = (ay.valid[:, :, None, :, None] & ax.valid[:, None, :, None, :]
                 & (np.arange(Gh) < geo.grid_h[ids][:, None])[:, None, None, :, None]
                 & (np.arange(Gw) < geo.grid_w[ids][:, None])[:, None, None, None, :])   # (n, PH, PW, Gh, Gw)
        base = (cache.batch[ids] * (H * W))[:, None, None, None, None]
        ylo = ay.low[:, :, None, :, None] * W
        yhi = ay.high[:, :, None, :, None] * W
        xlo = ax.low[:, None, :, None, :]
        xhi = ax.high[:, None, :, None, :]
        hy, ly = ay.rest[:, :, None, :, None], ay.frac[:, :, None, :, None]
        hx, lx = ax.rest[:, None, :, None, :], ax.frac[:, None, :, None, :]
        shape = (n, PH, PW, Gh, Gw, 4)
        dest = np.empty(shape, dtype=np.int64)
        w = np.empty(shape, dtype=dt)
        for j, (yy, xx, wy, wx) in enumerate(((ylo, xlo, hy, hx), (ylo, xhi, hy, lx),
                                              (yhi, xlo, ly, hx), (yhi, xhi, ly, lx))):
            dest[..., j] = base + yy + xx
            w[..., j] = wy * wx
        rows = (blk.start + np.arange(n))[:, None, None] * (PH * PW) + \
            (np.arange(PH)[:, None] * PW + np.arange(PW))[None]             # (n, PH, PW) row of dyr
        keep = np.broadcast_to(valid[..., None], shape)
        dest_k = dest[keep]
        if px.lut is not None:
            dest_k = px.lut[dest_k]
        w_k = w[keep]
        row_k = np.broadcast_to(rows[:, :, :, None, None, None], shape)[keep]
        cnt_k = np.broadcast_to(count[ids][:, None, None, None, None, None], shape)[keep]
        if cache.sampling_ratio > 0:
            div = dt.type(count[0])                   # one count for every RoI

            def values(i):
                v = dyr[row_k[i]]
                v *= w_k[i][:, None]                  # grad_output_this_bin * w1 / count
                v /= div
                return v
        else:
            def values(i):
                v = dyr[row_k[i]]
                v *= w_k[i][:, None]
                v /= cnt_k[i][:, None]
                return v
        _common.ordered_scatter_add(g, dest_k, values)


def _max_backward(g, dyr, cache):
    K, PH, PW, C = dyr.shape
    pos = cache.argmax.reshape(-1, C)
    wt = cache.argweight.reshape(-1, C)
    d = dyr.reshape(-1, C)
    # per element (k, ph, pw, c) in the kernel's order (k, c, ph, pw) for one channel plane
    rows, chans = np.nonzero(pos >= 0)
    order = np.lexsort((rows % (PH * PW), chans, rows // (PH * PW)))
    rows, chans = rows[order], chans[order]
    dest = pos[rows, chans] * C + chans
    flat = g.reshape(-1)
    _common.ordered_scatter_add(flat, dest, lambda i: d[rows[i], chans[i]] * wt[rows[i], chans[i]])


def roi_align(features: np.ndarray, boxes, output_size, spatial_scale: float = 1.0,
              sampling_ratio: Optional[int] = None, aligned: Optional[bool] = None, *, mode: str = "avg",
              convention="torchvision") -> np.ndarray:
    """RoIAlign: :func:`roi_align_forward` without the cache (torchvision's argument order).

    Returns
    -------
    ndarray, shape (K, C, PH, PW)
    """
    return roi_align_forward(features, boxes, output_size, spatial_scale, sampling_ratio, aligned, mode=mode,
                             convention=convention)[0]


ONNX_EVALUATORS = ("onnxruntime", "onnx_reference")
ONNX_CTM = ("half_pixel", "output_half_pixel")


def onnx_roi_align(X: np.ndarray, rois: np.ndarray, batch_indices: np.ndarray, *, output_height: int = 1,
                   output_width: int = 1, sampling_ratio: int = 0, spatial_scale: float = 1.0, mode: str = "avg",
                   coordinate_transformation_mode: Optional[str] = None, opset: int = 16,
                   evaluator: str = "onnxruntime") -> np.ndarray:
    """ONNX ``RoiAlign`` with the operator's own inputs and attributes, as an evaluator computes it.

    Parameters
    ----------
    X : ndarray, shape (B, C, H, W)
    rois : ndarray, shape (K, 4)
        ``x1, y1, x2, y2`` in image coordinates.
    batch_indices : ndarray of int, shape (K,)
    output_height, output_width, sampling_ratio, spatial_scale, mode
        The attributes (defaults of the schema: 1, 1, 0 = adaptive, 1.0, ``"avg"``). ``spatial_scale``
        is a float attribute: it is rounded to float32 first, as both evaluators see it.
    coordinate_transformation_mode : {"half_pixel", "output_half_pixel"}, optional
        The attribute (opset >= 16). Absent: what the evaluator uses for ``opset`` (below).
    opset : int
        The model's opset (10 or >= 16; RoiAlign did not change between 10 and 16).
    evaluator : {"onnxruntime", "onnx_reference"}
        Where they differ, which one to reproduce. onnxruntime 1.32 follows the specification: an
        opset-10..15 model has no half-pixel shift (``output_half_pixel``). ``onnx.reference``
        (onnx 1.23) implements only the latest RoiAlign and fills a missing attribute from the
        opset-16 schema, so it evaluates an opset-10 model with ``half_pixel``: the boxes move by half
        a pixel and the 1x1 clamp is off. At opset >= 16 they agree, ``max`` mode included (both take
        the largest weighted corner, which onnxruntime's warning calls "incorrect" but has kept), except
        in float32 for a RoI that ``output_half_pixel`` clamps to 1 pixel: ``onnx.reference`` writes
        ``max(roi_width, 1.0)``, which returns the *Python* float ``1.0``, so its bin size ``1 / PW`` and
        the sample offsets are float64 values rounded to float32 only when added to the float32 start
        (NumPy 2's rule for Python scalars), where onnxruntime computes ``1.0f / PW`` in float32: sample
        positions, and outputs, can differ in the last bits. Both are reproduced bit for bit
        (``tests/test_roi.py`` runs both evaluators on every mode and opset).

    Returns
    -------
    ndarray, shape (K, C, output_height, output_width)
    """
    _checks.check_choice(evaluator, "evaluator", ONNX_EVALUATORS)
    _checks.check_choice(mode, "mode", ROI_ALIGN_MODES)
    opset = _checks.check_int(opset, "opset", low=10)
    if coordinate_transformation_mode is not None:
        _checks.check_choice(coordinate_transformation_mode, "coordinate_transformation_mode", ONNX_CTM)
        if opset < 16:
            raise ValueError(f"`coordinate_transformation_mode` exists from opset 16; got opset {opset}")
        ctm = coordinate_transformation_mode
    elif opset < 16 and evaluator == "onnxruntime":
        ctm = "output_half_pixel"
    else:
        ctm = "half_pixel"
    sr = _checks.check_int(sampling_ratio, "sampling_ratio", low=0, high=2 ** 31 - 1)
    scale = float(np.float32(_common.check_spatial_scale(spatial_scale)))
    x = _common.as_features(X, "X")
    r = _checks.as_boxes(rois, "rois", dtype=x.dtype)
    bi = _common.as_batch_indices(batch_indices, len(r), x.shape[0])
    size = (_checks.check_int(output_height, "output_height", low=1),
            _checks.check_int(output_width, "output_width", low=1))
    boxes5 = np.concatenate([bi[:, None].astype(x.dtype), r], axis=1)
    out, _, _ = _forward(x, boxes5, bi, size, scale, sr, ctm == "half_pixel", mode,
                         onnx_reference=evaluator == "onnx_reference",
                         names=("output_height` and `output_width", "rois`, `spatial_scale` and `sampling_ratio"))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
