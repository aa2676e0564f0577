"""OpenVINO ``Interpolate`` (opset 11) in its Pillow modes, ``bilinear_pillow`` and ``bicubic_pillow``.

OpenVINO took these from Pillow's ``src/libImaging/Resample.c`` (9.4.0), so that a model trained on
images resized with PIL sees the same pixels after conversion. What the CPU plugin computes is not
quite OpenVINO's own reference (``src/core/reference/include/openvino/reference/interpolate_pil.hpp``,
double precision throughout); it is ``buildTblPillow`` (the taps, in float32) and the Pillow pass of
the plugin's JIT kernel, ``src/plugins/intel_cpu/src/nodes/interpolate.cpp`` and
``executors/interpolate.cpp``. Per resized axis of ``in`` samples to ``out``, with ``f = out / in``
(float32; in ``scales`` mode too: the scale only sets ``out = floor(in * scale)``, measured):

* ``clip = max(1 / f, 1)``: when shrinking, the filter is stretched by the factor, so **these modes
  always antialias** (there is no switch), and ``coordinate_transformation_mode`` is **not read**:
  the centres are Pillow's, ``center = (o + 0.5) / f``.
* ``radius = clip`` (bilinear: the triangle ``1 - |m|``) or ``2 clip`` (bicubic: Keys' cubic with
  ``a = -0.5`` **built in**: the node's ``cube_coeff``, default -0.75, is ignored).
* output ``o`` reads ``count`` inputs from ``start``::

      start = max(int(center - radius + 0.5), 0)          int(): truncation
      count = min(int(center + radius + 0.5), in) - start, at most 2 ceil(radius) + 1
      w_k   = filter((start + k - center + 0.5) / clip)   then divided by their float32 sum (if not 0)

* Two passes, the horizontal (last) axis first, then the vertical one; a pass is skipped when its
  axis keeps its size. Each output is ``result += pixel * w_k``, tap by tap, **as fused
  multiply-adds in float32** (the JIT kernel's ``vfmadd``; OpenVINO's scalar reference executor
  would round each product, and differ in the last bit). The intermediate image is stored in the
  input's type: for integer input both passes round **half to even** (the CPU's conversion, where
  the reference executor writes ``int(x + 0.5)``) and saturate.

Measured on this machine's CPU plugin (openvino 2026.4, x86-64 with FMA): bit-exact for float32 and
uint8 on random sizes, up and down, NCHW and NHWC (``tests/test_openvino_pillow.py``). Only two axes
are resized per call: the Pillow kernels work on 2-D planes (H and W of NCHW or NHWC).
"""
from __future__ import annotations

import numpy as np

from refdet import _checks

__all__ = ["interpolate_pillow", "pillow_weights", "PILLOW_MODES"]

PILLOW_MODES = ("bilinear_pillow", "bicubic_pillow")


def _bilinear(m, dt):
    m = np.abs(m)
    return np.where(m < 1, dt(1) - m, dt(0))


def _bicubic(m, dt):
    """Keys' cubic with ``a = -0.5`` as ``getPillowBicubicCoeffs``: the inner piece in double (the
    source's ``2.0``/``3.0``/``1.0`` literals), the outer one in the working type."""
    a = dt(-0.5)
    m = np.abs(m)
    m64 = m.astype(np.float64)
    inner = (((float(a) + 2.0) * m64 - (float(a) + 3.0)) * m64 * m64 + 1.0).astype(dt)
    outer = (((m - dt(5)) * m + dt(8)) * m - dt(4)) * a
    return np.where(m < 1, inner, np.where(m < 2, outer, dt(0)))


def pillow_weights(in_size: int, out_size: int, mode: str = "bilinear_pillow", *, dtype=np.float32):
    """The taps of one axis, as ``buildTblPillow`` builds them.

    Parameters
    ----------
    in_size, out_size : int
        >= 1.
    mode : {"bilinear_pillow", "bicubic_pillow"}
    dtype : {numpy.float32, numpy.float64}
        The working type (the CPU plugin's is float32).

    Returns
    -------
    start : ndarray, shape (out_size,) int64
        First input sample each output reads.
    count : ndarray, shape (out_size,) int64
        How many it reads.
    weights : ndarray, shape (out_size, L)
        Normalised weights of inputs ``start + k``, zero past ``count`` (``L = 2 ceil(radius) + 1``).
    """
    _checks.check_choice(mode, "mode", PILLOW_MODES)
    in_size = _checks.check_int(in_size, "in_size", low=1)
    out_size = _checks.check_int(out_size, "out_size", low=1)
    dt = np.dtype(dtype).type
    if dt not in (np.float32, np.float64):
        raise ValueError(f"`dtype` must be float32 or float64; got {np.dtype(dtype)}")
    return _taps(in_size, out_size, mode, dt)


def _taps(in_size, out_size, mode, dt):
    filt, window = (_bilinear, 1) if mode == "bilinear_pillow" else (_bicubic, 2)
    f = dt(out_size) / dt(in_size)                          # out / in, in "scales" mode too (measured)
    clip = max(dt(1) / f, dt(1))                            # 1 / f: the downsampling factor, at least 1
    radius = dt(window) * clip
    length = int(np.ceil(radius)) * 2 + 1
    half = dt(0.5)
    center = (np.arange(out_size).astype(dt) + half) / f    # Pillow's centre (o + 0.5) * in / out
    start = np.maximum(np.trunc(center - radius + half), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + radius + half), in_size).astype(np.int64) - start
    count = np.minimum(count, length)
    taps = np.arange(length)
    m = ((taps[None, :] + start[:, None]).astype(dt) - center[:, None] + half) * (dt(1) / clip)
    w = np.where(taps[None, :] < count[:, None], filt(m.astype(dt), dt), dt(0)).astype(dt)
    total = np.zeros(out_size, dtype=dt)
    for t in range(length):                                 # weightSum += w, tap by tap
        total += w[:, t]
    w = np.where(total[:, None] != 0, w / np.where(total == 0, dt(1), total)[:, None], w)
    return start, count, w.astype(dt)


def _pass(a, axis, start, count, w, store):
    """One pass along ``axis``: ``result += pixel * weight`` tap by tap in the working type, then
    stored as ``store`` (an integer type: rounded half to even and saturated)."""
    a = np.moveaxis(a, axis, -1)
    n, dt = a.shape[-1], w.dtype.type
    acc = np.zeros(a.shape[:-1] + (len(start),), dtype=dt)
    for t in range(w.shape[1]):                             # a loop over taps, not samples
        idx = np.minimum(start + t, n - 1)
        # result += pixel * weight as one fused multiply-add (the JIT kernel's vfmadd): the product is
        # exact in float64, then one rounding to float32 (double rounding possible only in rare ties)
        prod = a[..., idx].astype(np.float64) * w[:, t].astype(np.float64)
        acc = np.where(t < count, (prod + acc).astype(dt), acc)      # past the taps: nothing read
    if np.issubdtype(store, np.integer):
        info = np.iinfo(store)
        # the JIT kernel converts with the CPU's rounding mode (half to even), not the reference
        # executor's ``int(x + 0.5)``; saturated to the type
        acc = np.clip(np.nan_to_num(np.rint(acc)), info.min, info.max)
    return np.moveaxis(acc.astype(store), -1, axis)


def interpolate_pillow(x: np.ndarray, sizes=None, axes=None, *, scales=None, mode: str = "bilinear_pillow",
                       cube_coeff: float = -0.75) -> np.ndarray:
    """OpenVINO ``Interpolate-11`` with ``mode="bilinear_pillow"`` or ``"bicubic_pillow"``.

    Parameters
    ----------
    x : ndarray, shape (..., H, ..., W, ...)
        float32, float64 (computed in float64) or an integer type (float32 arithmetic, rounded half
        to even and saturated to the type, between the passes too).
    sizes : pair of int, optional
        Output sizes of ``axes`` (``shape_calculation_mode="sizes"``; the scale is ``out / in``).
    axes : pair of int, optional
        The two resized axes, vertical then horizontal; default the last two (H, W of NCHW).
    scales : pair of float, optional
        Instead of ``sizes`` (``"scales"``): the output size is ``floor(in * scale + 1e-5)``; the
        filter then uses ``out / in``, not the scale (what the CPU plugin does, measured).
    mode : {"bilinear_pillow", "bicubic_pillow"}
    cube_coeff : float, default -0.75
        Accepted and **not read**: the CPU plugin's bicubic Pillow filter has ``a = -0.5`` built in
        (``getPillowBicubicCoeffs``), whatever the attribute says.

    Returns
    -------
    ndarray, the dtype of ``x``
        Every step (taps, order of the passes, rounding between them) is in the module docstring.
    """
    _checks.check_choice(mode, "mode", PILLOW_MODES)
    a = _checks.as_array(x, "x")
    if a.dtype.kind not in "iuf" or a.dtype == np.float16:
        raise TypeError(f"`x` must be float32, float64 or an integer array; got {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"`x` must have at least 2 dimensions for mode {mode!r}; got shape {a.shape}")
    axes = (a.ndim - 2, a.ndim - 1) if axes is None else axes
    ax = [_checks.check_int(v, "axes", low=-a.ndim, high=a.ndim - 1) % a.ndim for v in _checks.check_sequence(axes, "axes")]
    if len(ax) != 2 or ax[0] == ax[1]:
        raise ValueError(f"`axes` must name two different axes for mode {mode!r} (OpenVINO's Pillow modes resize "
                         f"2-D planes); got {list(axes)}")
    if (sizes is None) == (scales is None):
        raise ValueError("exactly one of `sizes` and `scales` must be given (OpenVINO Interpolate's "
                         "shape_calculation_mode)")
    if sizes is not None:
        out = [_checks.check_int(v, "sizes", low=1) for v in _checks.check_sequence(sizes, "sizes")]
        if len(out) != 2:
            raise ValueError(f"`sizes` must have one value per axis in `axes` (2); got {len(out)}")
    else:
        sc = [float(np.float32(_checks.check_positive(v, "scales"))) for v in _checks.check_sequence(scales, "scales")]
        if len(sc) != 2:
            raise ValueError(f"`scales` must have one value per axis in `axes` (2); got {len(sc)}")
        out = [int(np.floor(float(a.shape[i]) * s + 1e-5)) for s, i in zip(sc, ax)]
        if min(out) < 1:
            raise ValueError(f"`scales` {list(scales)} give an empty output for input shape {a.shape}")
    _checks.check_real(cube_coeff, "cube_coeff")            # accepted and, as by the CPU plugin, not read
    full = list(a.shape)
    full[ax[0]], full[ax[1]] = out
    _checks.check_allocation(int(np.prod(full, dtype=np.float64)), 8, "the output", name="sizes")
    if 0 in a.shape:
        return np.zeros(full, dtype=a.dtype)
    dt = np.float64 if a.dtype == np.float64 else np.float32
    y = a
    for i, o in ((ax[1], out[1]), (ax[0], out[0])):          # horizontal pass first, as the kernel
        if o != a.shape[i]:
            start, count, w = _taps(a.shape[i], o, mode, dt)
            y = _pass(y, i, start, count, w, a.dtype.type)
    return y.copy() if y is a else y
