"""TF's ``ResizeBilinear`` and ``ResizeNearestNeighbor`` (NHWC), with both legacy flags.

Sources: ``tensorflow/core/kernels/image/resize_bilinear_op.cc`` (``compute_interpolation_weights``,
``compute_lerp``), ``resize_nearest_neighbor_op.cc``, ``tensorflow/core/util/image_resizer_state.h``
(``CalculateResizeScale``, ``HalfPixelScaler``, ``LegacyScaler``). The source coordinate of output
index ``i`` (all in float32)::

    scale = (in - 1) / (out - 1)   if align_corners and out > 1,   else in / out
    bilinear:  src = (i + 0.5) * scale - 0.5    half_pixel_centers      (HalfPixelScaler)
               src = i * scale                  otherwise               (LegacyScaler)
               lower = max(floor(src), 0), upper = min(ceil(src), in - 1), lerp = src - floor(src)
               top = tl + (tr - tl) * x_lerp;  bottom = bl + (br - bl) * x_lerp
               out = top + (bottom - top) * y_lerp
    nearest:   src = (i + 0.5) * scale          half_pixel_centers      (HalfPixelScalerForNN: no -0.5,
                                                                         the floor does the rest)
               src = i * scale                  otherwise
               index = min(roundf(src) if align_corners else floorf(src), in - 1), then max(., 0)

``roundf`` rounds halves away from zero. ``align_corners=True`` with ``half_pixel_centers=True`` is
refused by both kernels ("If half_pixel_centers is True, align_corners must be False"), and here.
``tf.image.resize`` (TF2) calls these kernels with ``half_pixel_centers=True``; ``tf.compat.v1.image.
resize_*`` with the legacy ``False``. The legacy bilinear mode is ONNX ``coordinate_transformation_mode=
"asymmetric"`` and the half-pixel one ONNX ``"half_pixel"`` in exact arithmetic, but onnxruntime divides
by ``out / in`` where TF multiplies by ``in / out``: float32 results may differ in the last bits.

float32 (and integer) images give TF's float32 output bit for bit; float64 images are computed in
float64 (TF's ``ResizeBilinear`` would return float32). Nearest keeps the input dtype (a gather).
"""
from __future__ import annotations

import numpy as np

from refdet import _checks
from refdet.roi.pool import c_round

__all__ = ["resize_bilinear", "resize_nearest_neighbor", "resize_source_index"]

_RUNTIME = "TensorFlow's ResizeBilinear / ResizeNearestNeighbor"


def _check(images, size, align_corners, half_pixel_centers):
    x = _checks.as_array(images, "images")
    if x.ndim != 4:
        raise ValueError(f"`images` must have shape (B, H, W, C) (NHWC, TF's layout); got {x.shape}")
    size = _checks.check_pair(size, "size", low=1)
    _check_flags(align_corners, half_pixel_centers)
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"`images` must have a positive height and width; got {x.shape}")
    # the output and its four gathered corners: refused above refdet's cap (a typo'd size)
    _checks.check_allocation(x.shape[0] * size[0] * size[1] * max(x.shape[3], 1), 4, "output pixels x channels",
                             name="size", keyword=False)
    return x, size


def _check_flags(align_corners, half_pixel_centers):
    for name, v in (("align_corners", align_corners), ("half_pixel_centers", half_pixel_centers)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"`{name}` must be a bool; got {type(v).__name__}")
    if align_corners and half_pixel_centers:
        raise ValueError(f"`half_pixel_centers=True` requires `align_corners=False` ({_RUNTIME} refuse the "
                         "combination: 'If half_pixel_centers is True, align_corners must be False')")


def _scale(in_size, out_size, align_corners, dt):
    """``CalculateResizeScale``: a float (float64 for float64 images)."""
    if align_corners and out_size > 1:
        return dt.type(in_size - 1) / dt.type(out_size - 1)
    return dt.type(in_size) / dt.type(out_size)


def resize_source_index(in_size: int, out_size: int, *, method: str = "bilinear", align_corners: bool = False,
                        half_pixel_centers: bool = False, dtype=np.float32):
    """The source coordinates TF reads for each output index along one axis.

    Returns
    -------
    bilinear: (lower (out,) int64, upper (out,) int64, lerp (out,) dtype); nearest: index (out,) int64.
    """
    _checks.check_choice(method, "method", ("bilinear", "nearest"))
    in_size = _checks.check_int(in_size, "in_size", low=1)
    out_size = _checks.check_int(out_size, "out_size", low=1)
    _checks.check_allocation(out_size, 8, "source indices", name="out_size", keyword=False)
    _check_flags(align_corners, half_pixel_centers)
    dt = _checks.check_float_dtype(dtype, "dtype")
    scale = _scale(in_size, out_size, align_corners, dt)
    i = np.arange(out_size, dtype=dt)
    half = dt.type(0.5)
    if method == "bilinear":
        src = (i + half) * scale - half if half_pixel_centers else i * scale
        f = np.floor(src)
        lower = np.maximum(f.astype(np.int64), 0)
        upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
        return lower, upper, (src - f).astype(dt)
    src = (i + half) * scale if half_pixel_centers else i * scale
    idx = c_round(src) if align_corners else np.floor(src)          # roundf: halves away from zero
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel_centers else idx


def resize_bilinear(images: np.ndarray, size, *, align_corners: bool = False,
                    half_pixel_centers: bool = False) -> np.ndarray:
    """TF ``ResizeBilinear`` (``tf.compat.v1.image.resize_bilinear``; ``tf.image.resize`` with
    ``half_pixel_centers=True``).

    Parameters
    ----------
    images : ndarray, shape (B, H, W, C)
    size : int or (out_h, out_w)
    align_corners, half_pixel_centers : bool
        Not both (TF refuses the combination).

    Returns
    -------
    ndarray, shape (B, out_h, out_w, C)
        float32 (float64 for float64 images), in the kernel's order of operations.
    """
    x, (oh, ow) = _check(images, size, align_corners, half_pixel_centers)
    dt = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
    x = x.astype(dt, copy=False)
    _, H, W, _ = x.shape
    y0, y1, yl = resize_source_index(H, oh, align_corners=align_corners, half_pixel_centers=half_pixel_centers,
                                     dtype=dt)
    x0, x1, xl = resize_source_index(W, ow, align_corners=align_corners, half_pixel_centers=half_pixel_centers,
                                     dtype=dt)
    xl = xl[None, None, :, None]                                   # (1, 1, out_w, 1)
    yl = yl[None, :, None, None]                                   # (1, out_h, 1, 1)
    top_rows, bottom_rows = x[:, y0], x[:, y1]                     # (B, out_h, W, C)
    tl, tr = top_rows[:, :, x0], top_rows[:, :, x1]                # (B, out_h, out_w, C)
    bl, br = bottom_rows[:, :, x0], bottom_rows[:, :, x1]
    top = tl + (tr - tl) * xl
    bottom = bl + (br - bl) * xl
    return top + (bottom - top) * yl


def resize_nearest_neighbor(images: np.ndarray, size, *, align_corners: bool = False,
                            half_pixel_centers: bool = False) -> np.ndarray:
    """TF ``ResizeNearestNeighbor`` (``tf.image.resize(method="nearest")`` uses
    ``half_pixel_centers=True``).

    Parameters
    ----------
    images : ndarray, shape (B, H, W, C)
    size : int or (out_h, out_w)
    align_corners, half_pixel_centers : bool
        Not both (TF refuses the combination).

    Returns
    -------
    ndarray, shape (B, out_h, out_w, C), the input's dtype
    """
    x, (oh, ow) = _check(images, size, align_corners, half_pixel_centers)
    _, H, W, _ = x.shape
    kw = dict(method="nearest", align_corners=align_corners, half_pixel_centers=half_pixel_centers)
    iy = resize_source_index(H, oh, **kw)
    ix = resize_source_index(W, ow, **kw)
    return x[:, iy][:, :, ix].copy()
