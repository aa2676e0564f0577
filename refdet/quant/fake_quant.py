"""Fake quantization for quantization-aware training: quantize-dequantize in float, and its gradient.

``y = (clamp(round(x / s) + z, qmin, qmax) - z) * s`` forward; the straight-through estimator
backward (the rounding's derivative taken as 1 inside the range, 0 outside), and with
``learnable=True`` the LSQ scale and zero-point gradients of PyTorch's learnable fake quant.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.quant.affine import _OPS, _ROUNDING_SRC, _ROUNDINGS, ArrayLike, _along, _resolve, _rounder

__all__ = ["FakeQuantCache", "FakeQuantGrads", "fake_quant_forward", "fake_quant_backward"]

conventions.register(
    "fake_quant_forward",
    {
        "torchvision": {"rounding": "half_even", "op": "mul_inv", "mask": "torch"},
        "detectron2": {"rounding": "half_even", "op": "mul_inv", "mask": "torch"},
        "mmdet": {"rounding": "half_even", "op": "mul_inv", "mask": "torch"},
        "onnx": {"rounding": "half_even", "op": "div", "mask": "torch"},
        "tf": {"rounding": "half_up", "op": "mul_inv", "mask": "tf"},
    },
    knobs={"rounding": conventions.choice(_ROUNDINGS, "rounding mode of x / scale", source=_ROUNDING_SRC),
           "op": conventions.choice(_OPS, "'div' or 'mul_inv' (multiply by the reciprocal)",
                                    source="aten FakeQuantPerTensorAffine.cpp (inv_scale); TF "
                                           "fake_quant_ops_functor.h (inv_nudged_scale)"),
           "mask": conventions.choice(("torch", "tf"),
                                      "'torch': gradient passes where the rounded, unclamped q is in [qmin, qmax]; "
                                      "'tf': where x is in [(qmin - z) s, (qmax - z) s]",
                                      source="aten FakeQuantPerTensorAffine.cpp (mask on q); TF "
                                             "fake_quant_ops_functor.h FakeQuantWithMinMaxVarsGradient (mask on x)")},
    doc="PyTorch fake_quantize_per_tensor_affine_cachemask (FakeQuantPerTensorAffine.cpp, "
        "QuantizedOpKernels.cpp): q = z + nearbyint(x * inv_scale), mask on q. TF FakeQuantWithMinMaxVars "
        "(fake_quant_ops_functor.h): floor(v + 0.5) with v = (clamp(x) - nudged_min) * inv_scale, gradient mask "
        "nudged_min <= x <= nudged_max (TF's own float order of operations is not reproduced bit for bit). "
        "ONNX has no fake-quant op: its forward is QuantizeLinear then DequantizeLinear (division, RNE) and "
        "refdet uses PyTorch's mask for it.",
)


class FakeQuantCache(NamedTuple):
    """What :func:`fake_quant_backward` needs.

    Attributes
    ----------
    x : ndarray, the input (working dtype)
    scale : ndarray, shape () or broadcastable to x
    zero_point : ndarray of float, the integer zero point used by the forward (broadcastable)
    mask : ndarray of bool, shape of x: where the gradient passes
    learnable : bool
    grad_factor : float
    qmin, qmax : int
    xq_back : ndarray or None: the learnable backward's ``nearbyint(z_b + x / s)`` (float)
    zp_back : float or None: the learnable backward's zero point ``(int)(z + 0.5)``, clamped
    """
    x: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    mask: np.ndarray
    learnable: bool
    grad_factor: float
    qmin: int
    qmax: int
    xq_back: Optional[np.ndarray]
    zp_back: Optional[float]


class FakeQuantGrads(NamedTuple):
    """dx : shape of x. dscale, dzero_point : shape (1,) for learnable fake quant, else None."""
    dx: np.ndarray
    dscale: Optional[np.ndarray]
    dzero_point: Optional[np.ndarray]


@conventions.documented("fake_quant_forward")
def fake_quant_forward(x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, *, qmin: int, qmax: int,
                       axis: Optional[int] = None, mask: Optional[str] = None, rounding: Optional[str] = None,
                       op: Optional[str] = None, learnable: bool = False, grad_factor: float = 1.0,
                       convention="torchvision") -> Tuple[np.ndarray, FakeQuantCache]:
    """Fake quantization ``y = (clamp(round(x / s) + z, qmin, qmax) - z) * s`` and its gradient mask.

    PyTorch ``fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine`` (float32:
    ``q = z + nearbyint(x * (1.0f / s))``, then ``(clamp(q) - z) * s`` with one float32 rounding), and
    with ``learnable=True`` ``_fake_quantize_learnable_per_tensor_affine``.

    Parameters
    ----------
    x : ndarray of float, any shape
    scale : float or ndarray, shape () or (C,) (per channel along ``axis``)
    zero_point : int or ndarray, shape () or (C,)
        An integer. With ``learnable=True`` a float (PyTorch's learnable zero point): the forward uses
        ``clamp(nearbyint(z))``, the backward ``clamp((int)(z + 0.5))`` (truncation), as PyTorch does.
    qmin, qmax : int
        The integer range, e.g. -128, 127 (keyword-only, required).
    axis : int, optional
        Channel axis for per-channel parameters (not with ``learnable``).
    mask : {"torch", "tf"}, optional
        Straight-through gradient mask. ``"torch"``: ``qmin <= q <= qmax`` on the *rounded, unclamped*
        q (so inputs up to half a step beyond ``(qmax - z) s`` still pass gradient). ``"tf"``:
        ``(qmin - z) s <= x <= (qmax - z) s`` on x (TF ``FakeQuantWithMinMaxVarsGradient``).
        Both ends inclusive.
    rounding, op : optional
        Override the convention (torchvision: half_even with the float32 reciprocal; tf: half_up).
    learnable : bool
        LSQ (Esser et al. 2020): the backward also returns the scale and zero-point gradients.
    grad_factor : float
        Multiplies the scale and zero-point gradients (LSQ's ``g = 1 / sqrt(N * Qp)``).

    Returns
    -------
    y : ndarray, shape of x, working dtype
    cache : FakeQuantCache
    """
    s = _resolve("fake_quant_forward", convention, mask=mask, rounding=rounding, op=op)
    rnd = _rounder(s["rounding"])
    lo = _checks.check_int(qmin, "qmin")
    hi = _checks.check_int(qmax, "qmax")
    if lo >= hi:
        raise ValueError(f"`qmin` must be < `qmax`; got [{lo}, {hi}]")
    if not isinstance(learnable, (bool, np.bool_)):
        raise TypeError(f"`learnable` must be a bool; got {learnable!r}")
    gf = _checks.check_real(grad_factor, "grad_factor")
    xa = _checks.as_array(x, "x")
    wd = _checks.working_dtype(xa.dtype)
    xa = np.asarray(xa, dtype=wd)  # no copy when x is already in the working dtype
    _checks.check_finite(xa, "x", allow_inf=True)
    ax = _checks.check_axis(axis, max(xa.ndim, 1))
    if learnable and ax is not None:
        raise ValueError("`learnable=True` is per-tensor (PyTorch _fake_quantize_learnable_per_tensor_affine); "
                         "got an `axis`")
    length = None if ax is None else (xa.shape[ax] if xa.ndim else 1)  # a 0-d input is one channel
    sc = _checks.as_quant_scale(scale, axis=ax, length=length)   # named `scale` by default
    zp = _checks.as_quant_zero_point(zero_point, qmin=lo, qmax=hi, axis=ax, length=length,  # `zero_point`
                                     allow_float=bool(learnable), range_name="[`qmin`, `qmax`]")
    t = wd.type
    sc = _along(sc.astype(wd), xa.ndim, ax)
    zp_back = None
    if learnable:
        zf = float(zp)
        z_fwd = float(min(max(np.rint(np.float32(zf)), lo), hi))
        zp_back = float(min(max(math.trunc(float(np.float32(zf) + np.float32(0.5))), lo), hi))
        zpa = np.asarray(z_fwd)
    else:
        zpa = _along(np.asarray(zp, dtype=np.float64), xa.ndim, ax)
    zw = zpa.astype(wd)  # the zero point in the working dtype
    with np.errstate(over="ignore", invalid="ignore"):  # saturation: x * inv may overflow to +-inf
        inv = t(1) / sc  # inf for a subnormal float32 scale (and then 0 * inf is NaN)
        v = xa / sc if s["op"] == "div" else xa * inv
        q = rnd(v) + zw  # integer-valued floats (exact below 2**24 in float32)
        qc = np.clip(q, lo, hi)
        y = (qc - zw) * sc  # working dtype: every operand is
    xq_back = None
    if learnable:
        with np.errstate(over="ignore", invalid="ignore"):
            xq_back = rnd(t(zp_back) + xa * inv)  # z added *before* rounding in the learnable backward
        m = (xq_back >= lo) & (xq_back <= hi)
    elif s["mask"] == "torch":
        m = (q >= lo) & (q <= hi)
    else:
        nmin = (t(lo) - zw) * sc
        nmax = (t(hi) - zw) * sc
        m = (xa >= nmin) & (xa <= nmax)
    m = np.broadcast_to(m, xa.shape).copy()
    cache = FakeQuantCache(xa, sc, zpa, m, bool(learnable), gf, lo, hi, xq_back, zp_back)
    return y, cache


def fake_quant_backward(dy: np.ndarray, cache: FakeQuantCache) -> FakeQuantGrads:
    """Straight-through gradient of :func:`fake_quant_forward` (plus LSQ's scale/zero-point gradients).

    ``dx = dy * mask`` (the rounding's derivative is taken as 1 inside the range and 0 outside: there
    is no finite-difference check for it, the tests compare with the analytic formula and PyTorch
    autograd). With ``learnable=True`` (PyTorch ``_fake_quantize_learnable_per_tensor_affine``
    backward), with ``xq = nearbyint(z_b + x / s)`` and ``x_hat = (clamp(xq) - z_b) s``::

        dscale = sum( dy * (qmin - z_b)        where xq < qmin
                      dy * (qmax - z_b)        where xq > qmax
                      dy * (x_hat - x) / s     inside ) * grad_factor
        dzero_point = sum( -dy * s  outside, 0 inside ) * grad_factor

    (LSQ: d x_hat / d s = round(x/s) - x/s inside the range, qmin or qmax - z outside.) The sums are
    taken in float64 and returned in the working dtype, shape (1,) like PyTorch's.

    Parameters
    ----------
    dy : ndarray, shape of x
    cache : FakeQuantCache

    Returns
    -------
    FakeQuantGrads(dx, dscale, dzero_point)
    """
    if not isinstance(cache, FakeQuantCache):
        raise TypeError(f"`cache` must be the FakeQuantCache returned by fake_quant_forward; "
                        f"got {type(cache).__name__}")
    d = _checks.as_float_array(dy, "dy", dtype=cache.x.dtype)
    if d.shape != cache.x.shape:
        raise ValueError(f"`dy` must have the shape of x {cache.x.shape}; got {d.shape}")
    dx = np.where(cache.mask, d, cache.x.dtype.type(0))
    if not cache.learnable:
        return FakeQuantGrads(dx, None, None)
    t = cache.x.dtype.type
    s = cache.scale
    zb = t(cache.zp_back)
    xq = cache.xq_back
    lo, hi = cache.qmin, cache.qmax
    gf = t(cache.grad_factor)
    with np.errstate(over="ignore", invalid="ignore"):  # x = +-inf, or dy near float32 max, overflow to +-inf
        inv = t(1) / s
        # x_hat = (clamp(xq) - z_b) s: `inside` is read only where qmin <= xq <= qmax, so no clamp is needed
        xhat = (xq - zb) * s
        inside = d * (xhat - cache.x) * inv * gf
        below = xq < lo
        above = xq > hi
        ds = np.where(below, d * (t(lo) - zb) * gf, np.where(above, d * (t(hi) - zb) * gf, inside))
        dz = np.where(below | above, -(d * s * gf), t(0))
    dscale = np.asarray([ds.sum(dtype=np.float64)]).astype(cache.x.dtype)
    dzp = np.asarray([dz.sum(dtype=np.float64)]).astype(cache.x.dtype)
    return FakeQuantGrads(dx, dscale, dzp)
