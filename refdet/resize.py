"""Nearest-neighbour resizing of NCHW maps, as a forward/backward pair, with each framework's index rule.

Resizing is a gather: output pixel ``(i, j)`` copies input pixel ``(rows[i], cols[j])``. The whole
concern is *which* source index each output position reads, and that is where frameworks differ:

* PyTorch ``nearest`` (ATen ``nearest_idx``): ``floor(dst * in / out)`` with the scale in float32;
  what torchvision's and mmdet's FPN use (:func:`upsample_nearest_source_index`).
* PyTorch ``nearest-exact``: ``floor((dst + 0.5) * in / out)`` (Pillow, scikit-image).
* ONNX ``Resize(mode="nearest")``: a coordinate transformation (``half_pixel`` by default) then a
  rounding mode (``round_prefer_floor``) (:func:`onnx_resize_nearest_source_index`).

The backward pass adds each output gradient into its source pixel, in row-major output order (the
order of PyTorch's CPU kernel), so float32 gradients match PyTorch bit for bit.

This module was split out of :mod:`refdet.layers` (which keeps the convolution, activation, pooling
and normalisation layers and re-exports these names): resizing shares no arithmetic with them, and
its index rules are what the ONNX and NNEF exporters mirror (``refdet.exchange``). Readable
reference: :func:`refdet.reference.conv.upsample_nearest` (the index formula, written out).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "UpsampleCache",
    "UpsampleGrads",
    "upsample_nearest_source_index",
    "onnx_resize_nearest_source_index",
    "upsample_nearest_forward",
    "upsample_nearest_backward",
]

#: ONNX Resize ``coordinate_transformation_mode`` values refdet implements for ``mode="nearest"``.
ONNX_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn", "align_corners")
#: ONNX Resize ``nearest_mode`` values.
ONNX_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
#: The ``mode`` values of :func:`upsample_nearest_forward`.
UPSAMPLE_MODES = ("nearest", "nearest-exact", "onnx")

_ATEN = "ATen native/UpSample.h nearest_idx / nearest_exact_idx (PyTorch 2.14)"
_ORT = "onnxruntime core/providers/cpu/tensor/upsamplebase.h get_original_coordinate / GetNearestPixelFromOriginal"

_TORCH_UPSAMPLE = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
conventions.register(
    "upsample_nearest",
    {
        "torchvision": dict(_TORCH_UPSAMPLE),
        "detectron2": dict(_TORCH_UPSAMPLE),
        "mmdet": dict(_TORCH_UPSAMPLE),
        "caffe": dict(_TORCH_UPSAMPLE),
        "tf": dict(_TORCH_UPSAMPLE),
        "paper": dict(_TORCH_UPSAMPLE),
        "onnx": {"mode": "onnx", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor"},
    },
    knobs={
        "mode": conventions.choice(
            UPSAMPLE_MODES, "'nearest' (PyTorch: floor(dst * in/out)), 'nearest-exact' (floor((dst + 0.5) * in/out)) "
            "or 'onnx' (ONNX Resize with the two knobs below)", source=_ATEN + "; ONNX Resize-19"),
        "coordinate_transformation_mode": conventions.choice(
            ONNX_COORDINATE_MODES, "ONNX Resize coordinate map (used when mode='onnx'); 'asymmetric' with "
            "nearest_mode 'floor' is the ONNX spelling of PyTorch 'nearest'", source=_ORT),
        "nearest_mode": conventions.choice(
            ONNX_NEAREST_MODES, "ONNX Resize rounding of the source coordinate (used when mode='onnx')", source=_ORT),
    },
    doc="torchvision FPN: F.interpolate(size=lateral, mode='nearest') (ops/feature_pyramid_network.py); "
        "detectron2 FPN: scale_factor=2.0 nearest; mmdet FPN: nearest to prev_shape; TF OD API FPN: "
        "ops.nearest_neighbor_upsampling (integer scale, the same map as 'nearest'); Caffe (Detectron1) "
        "UpsampleNearest is integer-scale nearest. ONNX Resize defaults to half_pixel + round_prefer_floor, "
        "which differs from PyTorch for non-integer ratios (13 -> 25: output 13 reads row 7, not 6).",
)


class UpsampleCache(NamedTuple):
    """What :func:`upsample_nearest_backward` needs: the input shape and the two index maps."""
    in_shape: tuple               # (B, C, H, W)
    rows: np.ndarray              # (Ho,) int64 source row of each output row
    cols: np.ndarray              # (Wo,) int64 source column of each output column
    dtype: np.dtype


class UpsampleGrads(NamedTuple):
    """The input gradient of :func:`upsample_nearest_forward`."""
    dx: np.ndarray                # (B, C, H, W)


def upsample_nearest_source_index(in_size: int, out_size: int, *, scale_factor: Optional[float] = None,
                                  mode: str = "nearest", max_elements: Optional[int] = None) -> np.ndarray:
    """Source index of every output position along one axis, with PyTorch's arithmetic.

    ``mode="nearest"`` (ATen ``nearest_idx``): ``src = floor(dst * scale)``, except that
    ``out == in`` copies and ``out == 2 * in`` uses ``dst >> 1``. ``mode="nearest-exact"``
    (ATen ``nearest_exact_idx``): ``src = floor((dst + 0.5) * scale)``. Both clip to ``in - 1``.

    ``scale`` is a **float32** number: ``float32(in) / float32(out)``, or ``float32(1 / scale_factor)``
    when a scale factor was given (and not recomputed). For ``nearest`` the product ``dst * scale``
    is a float32 product; for ``nearest-exact`` ``(dst + 0.5)`` is a double and the product is
    rounded to float32 before ``floorf``. The float32 rounding matters at exact boundaries: for
    3 -> 5 ``nearest`` gives ``[0, 0, 1, 1, 2]`` and ``nearest-exact`` ``[0, 0, 1, 2, 2]``; 13 -> 25 and
    38 -> 75 follow the same rule.

    ``in_size`` and ``out_size`` are ints (a NaN or an inf size is a TypeError naming it, not NaN or
    -9.2e18 indices); ``scale_factor`` is None or a finite real (<= 0: derived from the sizes, as
    ATen does with a missing scale); ``out_size`` beyond ``max_elements`` (default
    :data:`refdet._checks.MAX_ELEMENTS`) is a ValueError before anything is allocated.

    Returns
    -------
    ndarray of int64, shape (out_size,)
    """
    _checks.check_choice(mode, "mode", ("nearest", "nearest-exact"))
    in_size = _checks.check_int(in_size, "in_size", low=1)
    out_size = _checks.check_int(out_size, "out_size", low=0)
    _checks.check_allocation(out_size, 8, "source indices", name="out_size", limit=max_elements)
    if scale_factor is not None:
        scale_factor = _checks.check_real(scale_factor, "scale_factor")
    dst = np.arange(out_size)
    if scale_factor is not None and scale_factor > 0:
        scale = np.float32(1.0 / scale_factor)
    else:
        scale = np.float32(in_size) / np.float32(max(out_size, 1))
    if mode == "nearest":
        if out_size == in_size:
            return dst.astype(np.int64)
        if out_size == 2 * in_size:
            return (dst >> 1).astype(np.int64)
        src = np.floor(dst.astype(np.float32) * scale)                  # float32 product, floorf
    else:
        src = np.floor(((dst + 0.5) * np.float64(scale)).astype(np.float32))
    return np.minimum(src.astype(np.int64), in_size - 1)


def onnx_resize_nearest_source_index(in_size: int, out_size: int, *, scale: Optional[float] = None,
                                     coordinate_transformation_mode: str = "half_pixel",
                                     nearest_mode: str = "round_prefer_floor",
                                     max_elements: Optional[int] = None) -> np.ndarray:
    """Source index of every output position along one axis for ONNX ``Resize(mode="nearest")``.

    ``x_scale = float32(out) / float32(in)`` (or the given ``scale``, as ONNX ``scales``), then in
    float32, as ONNX Runtime's ``get_original_coordinate``:

    ==========================  ==================================================
    half_pixel (ONNX default)   ``(x + 0.5) / x_scale - 0.5``
    pytorch_half_pixel          the same, but 0 when ``out == 1``
    asymmetric                  ``x / x_scale``
    tf_half_pixel_for_nn        ``(x + 0.5) / x_scale``
    align_corners               ``x * (in - 1) / (out - 1)`` (0 when ``out == 1``)
    ==========================  ==================================================

    then ``nearest_mode``: ``round_prefer_floor`` (default; a value exactly halfway goes down),
    ``round_prefer_ceil`` (``std::round``: halfway goes away from zero), ``floor`` or ``ceil``, and the
    result is clipped to ``[0, in - 1]``. ``asymmetric`` + ``floor`` is PyTorch's ``nearest``.

    Notes
    -----
    Exact halfway points (``half_pixel`` with ``(2 dst + 1) * in / out`` an odd integer, e.g. 14 -> 19,
    dst 9: 6.5) come out of float32 as ``6.5000005`` and round up here; ONNX Runtime 1.32 lands on
    the tie and rounds down (it agrees with this function on every other position tested).

    Returns
    -------
    ndarray of int64, shape (out_size,)
    """
    _checks.check_choice(coordinate_transformation_mode, "coordinate_transformation_mode", ONNX_COORDINATE_MODES)
    _checks.check_choice(nearest_mode, "nearest_mode", ONNX_NEAREST_MODES)
    in_size = _checks.check_int(in_size, "in_size", low=1)
    out_size = _checks.check_int(out_size, "out_size", low=0)
    _checks.check_allocation(out_size, 8, "source indices", name="out_size", limit=max_elements)
    if scale is not None:
        scale = _checks.check_positive(scale, "scale")
    f32 = np.float32
    xs = f32(scale) if scale is not None else f32(out_size) / f32(max(in_size, 1))
    xr = np.arange(out_size).astype(f32)
    half = f32(0.5)
    ctm = coordinate_transformation_mode
    if ctm == "half_pixel":
        xo = (xr + half) / xs - half
    elif ctm == "pytorch_half_pixel":
        xo = (xr + half) / xs - half if out_size > 1 else np.zeros(out_size, f32)
    elif ctm == "asymmetric":
        xo = xr / xs
    elif ctm == "tf_half_pixel_for_nn":
        xo = (xr + half) / xs
    else:  # align_corners
        xo = xr * f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else np.zeros(out_size, f32)
    if nearest_mode == "floor":
        src = np.floor(xo)
    elif nearest_mode == "ceil":
        src = np.ceil(xo)
    else:
        src = np.sign(xo) * np.floor(np.abs(xo) + half)      # std::round: halves away from zero
        if nearest_mode == "round_prefer_floor":
            src = np.where(xo == np.trunc(xo) + half, np.floor(xo), src)
    return np.clip(src.astype(np.int64), 0, in_size - 1)


def _scale_pair(scale_factor) -> Tuple[float, float]:
    if isinstance(scale_factor, (str, bytes)):
        raise TypeError(f"`scale_factor` must be a positive number or a pair; got {scale_factor!r}")
    if hasattr(scale_factor, "__len__"):
        if len(scale_factor) != 2:
            raise ValueError(f"`scale_factor` must be a number or a pair (for H, for W); got {len(scale_factor)} values")
        return tuple(_checks.check_positive(v, f"scale_factor[{i}]") for i, v in enumerate(scale_factor))
    v = _checks.check_positive(scale_factor, "scale_factor")
    return (v, v)


@conventions.documented("upsample_nearest")
def upsample_nearest_forward(x: np.ndarray, *, size: Union[int, Sequence[int], None] = None,
                             scale_factor: Union[float, Sequence[float], None] = None, mode: Optional[str] = None,
                             recompute_scale_factor: bool = False,
                             convention: Union[str, conventions.Profile] = "torchvision",
                             coordinate_transformation_mode: Optional[str] = None,
                             nearest_mode: Optional[str] = None,
                             max_elements: Optional[int] = None) -> Tuple[np.ndarray, UpsampleCache]:
    """Nearest-neighbour resize of an NCHW map, as ``torch.nn.functional.interpolate`` (or ONNX Resize).

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    size : int or (int, int), optional
        Output ``(Ho, Wo)``. Exactly one of ``size`` and ``scale_factor`` must be given.
    scale_factor : float or (float, float), optional
        Output size ``floor(H * scale_factor)``; the source index then uses ``1 / scale_factor``
        (not ``H / Ho``) unless ``recompute_scale_factor=True``, exactly as PyTorch does. With
        ``scale_factor=2`` an odd map doubles (detectron2's FPN, which needs sizes divisible by 32).
    mode : {"nearest", "nearest-exact", "onnx"}, optional
        ``"nearest"``: ``src = floor(dst * in / out)`` (PyTorch's default, OpenCV ``INTER_NEAREST``;
        what torchvision's and mmdet's FPN use). ``"nearest-exact"``: ``floor((dst + 0.5) * in / out)``
        (Pillow, scikit-image). See :func:`upsample_nearest_source_index` for the float32 arithmetic.
        ``"onnx"``: ONNX ``Resize(mode="nearest")`` with ``coordinate_transformation_mode`` and
        ``nearest_mode`` (:func:`onnx_resize_nearest_source_index`); ``scale_factor`` is then ONNX's
        ``scales`` (output ``floor(in * scale)``, coordinates use the given scale).
        Default: set by ``convention`` ("nearest" everywhere except ``"onnx"``).
    convention : str
        ``"onnx"`` selects ONNX Resize's defaults (``half_pixel`` + ``round_prefer_floor``), which differ
        from PyTorch's ``nearest`` for non-integer ratios; see ``conventions.describe("upsample_nearest")``.
    coordinate_transformation_mode, nearest_mode : str, optional
        ONNX knobs (used with ``mode="onnx"``); override the profile.
    max_elements : int, optional
        Cap on the output's elements (``B * C * Ho * Wo``; default :data:`refdet._checks.MAX_ELEMENTS`):
        a larger ``size`` or ``scale_factor`` is a ValueError naming it before anything is allocated.

    Returns
    -------
    y : ndarray, shape (B, C, Ho, Wo), ``y[..., i, j] = x[..., rows[i], cols[j]]``
    cache : UpsampleCache

    Notes
    -----
    Index agreement with PyTorch 2.14 (CPU) is exact for float32 maps (checked for every
    ``in <= 100, out <= 4 * in + 1``). PyTorch's float64 kernel computes some indices in double
    precision; refdet always uses the float32 rule, which agrees with float64 PyTorch for ``nearest``
    on every FPN size pair ``n -> 2n - 1, 2n, 2n + 1`` but can differ by one source row for
    ``nearest-exact`` at large sizes (e.g. 92 -> 183) where ``(dst + 0.5) * in / out`` is an integer.

    Readable reference: :func:`refdet.reference.conv.upsample_nearest` (the gather written per pixel).
    """
    st = conventions.resolve("upsample_nearest", convention, mode=mode,
                             coordinate_transformation_mode=coordinate_transformation_mode, nearest_mode=nearest_mode)
    mode, ctm, nmode = st.mode, st.coordinate_transformation_mode, st.nearest_mode
    x = _checks.as_nchw(x, "x", finite=False)
    _checks.check_finite(x, "x", allow_inf=True)
    if (size is None) == (scale_factor is None):
        raise ValueError("exactly one of `size` and `scale_factor` must be given; got "
                         f"size={size!r}, scale_factor={scale_factor!r}")
    bsz, c, h, w = x.shape
    if size is not None:
        ho, wo = _checks.check_pair(size, "size", low=1)
        sh = sw = None
    else:
        sh, sw = _scale_pair(scale_factor)
        ho, wo = int(np.floor(h * sh)), int(np.floor(w * sw))   # ATen: static_cast<int64_t>(in * scale)
        if ho < 1 or wo < 1:
            raise ValueError(f"`scale_factor` {scale_factor!r} gives an empty output ({ho}, {wo}) for `x` of "
                             f"spatial size ({h}, {w})")
        if recompute_scale_factor:
            sh = sw = None
    if h == 0 or w == 0:
        raise ValueError(f"`x` must have non-empty spatial dimensions to upsample; got shape {x.shape}")
    _checks.check_allocation(bsz * c * ho * wo, x.dtype.itemsize, f"an output of shape {(bsz, c, ho, wo)}",
                             name="size" if size is not None else "scale_factor", limit=max_elements)
    if mode == "onnx":
        rows = onnx_resize_nearest_source_index(h, ho, scale=sh, coordinate_transformation_mode=ctm,
                                                nearest_mode=nmode)
        cols = onnx_resize_nearest_source_index(w, wo, scale=sw, coordinate_transformation_mode=ctm,
                                                nearest_mode=nmode)
    else:
        rows = upsample_nearest_source_index(h, ho, scale_factor=sh, mode=mode)
        cols = upsample_nearest_source_index(w, wo, scale_factor=sw, mode=mode)
    y = x[:, :, rows[:, None], cols[None, :]]                              # (B, C, Ho, Wo) gather (exact)
    return y, UpsampleCache(x.shape, rows, cols, x.dtype)


def upsample_nearest_backward(dy: np.ndarray, cache: UpsampleCache) -> UpsampleGrads:
    """Gradient of :func:`upsample_nearest_forward`: each output gradient is added to its source pixel.

    Parameters
    ----------
    dy : ndarray, shape (B, C, Ho, Wo)
    cache : UpsampleCache

    Returns
    -------
    UpsampleGrads
        ``dx`` (B, C, H, W).

    Notes
    -----
    The additions happen in row-major order of the output pixels (``np.add.at`` is sequential), the
    order of PyTorch's CPU backward kernel, so float32 gradients match it bit for bit, whatever the
    memory layout of ``dy``. Readable reference: :func:`refdet.reference.conv.upsample_nearest_backward`.
    """
    if not isinstance(cache, UpsampleCache):
        raise TypeError(f"`cache` must be the UpsampleCache returned by upsample_nearest_forward; got "
                        f"{type(cache).__name__}")
    bsz, c, h, w = cache.in_shape
    out_shape = (bsz, c, len(cache.rows), len(cache.cols))
    dy = _checks.as_nchw(dy, "dy", dtype=cache.dtype)
    if dy.shape != out_shape:
        raise ValueError(f"`dy` must have the output's shape {out_shape}; got {dy.shape}")
    if (len(cache.rows) == 2 * h and len(cache.cols) == 2 * w
            and np.array_equal(cache.rows, np.arange(2 * h) // 2) and np.array_equal(cache.cols, np.arange(2 * w) // 2)):
        # exact x2 (FPN): each source pixel receives its 2 x 2 block, added in the same row-major order
        v = dy.reshape(bsz, c, h, 2, w, 2)
        return UpsampleGrads(((v[:, :, :, 0, :, 0] + v[:, :, :, 0, :, 1]) + v[:, :, :, 1, :, 0]) + v[:, :, :, 1, :, 1])
    src = (cache.rows[:, None] * w + cache.cols[None, :]).reshape(-1)     # (Ho*Wo,) flat source pixel
    dx = np.zeros((h * w, bsz * c), dtype=cache.dtype)
    # rows of dx are source pixels, columns the B*C planes: one add.at over the output pixels in order
    np.add.at(dx, src, dy.reshape(bsz * c, -1).T)
    return UpsampleGrads(np.ascontiguousarray(dx.T).reshape(bsz, c, h, w))
