"""Leaky ReLU: the ONNX operator and the layer pair.

``y = x`` for ``x > 0``, ``alpha * x`` otherwise (YOLOv3/v4 Darknet backbones use ``alpha = 0.1``;
ONNX's default is 0.01, PyTorch's ``negative_slope`` too).

The runtimes agree on every value and differ only in the sign of a zero result (``runtime=``):
onnxruntime ``x >= 0 ? x : alpha * x`` (``core/providers/cpu/activation/activations.h``, ``LeakyRelu``:
a zero passes through with its sign), onnx.reference ``x * s`` with ``s = 1`` for ``x > 0`` and
``s = 0 - (0 - 1) * alpha`` otherwise (``onnx/reference/ops/op_leaky_relu.py``: ``0 * alpha`` for
``x = +0``, so ``alpha < 0`` or ``alpha = -0.0`` flips the sign of a zero), ATen
``a > 0 ? a : a * negval`` (``native/cpu/Activation.cpp``, ``leaky_relu_kernel``; ``runtime="torch"``).
NaN propagates in all three. The other subtlety is the **type of alpha**: an ONNX
attribute is a float32 (``AttributeProto.f``), so a model's ``alpha=0.01`` is ``0.009999999776...``
even for a float64 tensor, while ``F.leaky_relu`` on a float64 tensor uses the double ``0.01``.
:func:`leaky_relu` (the ONNX operator) rounds ``alpha`` to float32 (the knob ``alpha_dtype``),
:func:`leaky_relu_forward` (PyTorch's layer) does not.

Backward: ``dx = dy`` where ``x > 0``, ``negative_slope * dy`` elsewhere: the subgradient at the kink
``x = 0`` is ``negative_slope`` (ATen ``leaky_relu_backward``: ``self > 0 ? grad : grad * negval``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = ["LEAKY_RELU_RUNTIMES", "leaky_relu", "LeakyReluCache", "LeakyReluGrads", "leaky_relu_forward",
           "leaky_relu_backward"]

LEAKY_RELU_RUNTIMES = ("onnxruntime", "onnx_reference", "torch")

conventions.register(
    "leaky_relu",
    {"onnx": {"alpha_dtype": "float32", "runtime": "onnxruntime"},
     "torchvision": {"alpha_dtype": "input", "runtime": "torch"}},
    knobs={"runtime": conventions.choice(
        LEAKY_RELU_RUNTIMES, "whose formula (they differ only in the sign of a zero output): x >= 0 ? x : a*x "
        "(onnxruntime), x * (x > 0 ? 1 : 0 - (0 - 1) * a) (onnx.reference), x > 0 ? x : x*a (PyTorch)",
        source="onnxruntime activations.h LeakyRelu; onnx/reference/ops/op_leaky_relu.py; ATen Activation.cpp"),
        "alpha_dtype": conventions.choice(
        ("float32", "input"), "the precision of alpha: 'float32' (an ONNX attribute is a float32, so a float64 "
        "tensor is scaled by float32(alpha)) or 'input' (the tensor's own dtype, F.leaky_relu)",
        source="onnx/onnx.proto AttributeProto.f (float); onnxruntime activations.h LeakyRelu<T> (float alpha_); "
               "ATen native/cpu/Activation.cpp leaky_relu_kernel (negval as scalar_t)")},
    doc="The operators agree on every value; only alpha's precision differs for float64 tensors.",
)


def _alpha(alpha, name, dtype, alpha_dtype):
    a = _checks.check_real(alpha, name)
    if alpha_dtype == "float32":
        a = float(np.float32(a))
    return dtype.type(a)


@conventions.documented("leaky_relu")
def leaky_relu(x: np.ndarray, *, alpha: float = 0.01, alpha_dtype: Optional[str] = None,
               convention: Union[str, conventions.Profile] = "onnx", runtime: Optional[str] = None) -> np.ndarray:
    """ONNX ``LeakyRelu`` (opsets 6-16): ``x if x > 0 else alpha * x``.

    Parameters
    ----------
    x : ndarray, any shape
        float16 (computed in float32, returned as float16), float32 or float64; NaN propagates.
    alpha : float
        The slope for ``x <= 0`` (ONNX default 0.01), rounded to float32 as the attribute is.

    Returns
    -------
    ndarray, same shape and dtype as ``x``.
    """
    st = conventions.resolve("leaky_relu", convention, alpha_dtype=alpha_dtype, runtime=runtime)
    alpha_dtype = st.alpha_dtype
    xa = _checks.as_array(x, "x")
    if xa.dtype.kind != "f":
        raise TypeError(f"`x` must be a float16/float32/float64 array (the ONNX LeakyRelu types); got dtype {xa.dtype}")
    work = xa.astype(_checks.working_dtype(xa.dtype), copy=False)
    a = _alpha(alpha, "alpha", work.dtype, alpha_dtype)
    with np.errstate(invalid="ignore"):                  # -inf * 0 = NaN, as in every runtime
        y = _leaky(work, a, st.runtime)
    return y.astype(xa.dtype)


def _leaky(work, a, runtime):
    """The three formulas (module docstring); they differ only in the sign of a zero output."""
    if runtime == "onnxruntime":
        return np.where(work >= 0, work, a * work)          # a zero passes through with its sign
    if runtime == "onnx_reference":
        one = work.dtype.type(1)
        s = np.where(work > 0, one, work.dtype.type(0) - (work.dtype.type(0) - one) * a)   # sign -= (sign - 1) * a
        return work * s
    return np.where(work > 0, work, work * a)


class LeakyReluCache(NamedTuple):
    """What :func:`leaky_relu_backward` needs."""
    positive: np.ndarray          # bool, x > 0
    negative_slope: float
    dtype: np.dtype


class LeakyReluGrads(NamedTuple):
    dx: np.ndarray


def leaky_relu_forward(x: np.ndarray, *, negative_slope: float = 0.01) -> Tuple[np.ndarray, LeakyReluCache]:
    """``F.leaky_relu(x, negative_slope)``: ``x`` where ``x > 0``, ``negative_slope * x`` elsewhere.

    Parameters
    ----------
    x : ndarray, any shape
        NaN rejected; float32 in, float32 math (the slope rounded to float32 as ATen's ``negval``).
    negative_slope : float

    Returns
    -------
    y : ndarray, same shape
    cache : LeakyReluCache
    """
    xa = _checks.as_float_array(x, "x", finite=False)
    _checks.check_finite(xa, "x", allow_inf=True)
    a = _alpha(negative_slope, "negative_slope", xa.dtype, "input")
    pos = xa > 0
    with np.errstate(invalid="ignore"):
        y = np.where(pos, xa, xa * a)
    return y, LeakyReluCache(pos, float(a), xa.dtype)


def leaky_relu_backward(dy: np.ndarray, cache: LeakyReluCache) -> LeakyReluGrads:
    """``dx = dy`` where ``x > 0``, ``negative_slope * dy`` elsewhere (at ``x = 0`` too)."""
    if not isinstance(cache, LeakyReluCache):
        raise TypeError(f"`cache` must be the LeakyReluCache returned by leaky_relu_forward; got "
                        f"{type(cache).__name__}")
    g = _checks.as_float_array(dy, "dy", dtype=cache.dtype, finite=False)
    if g.shape != cache.positive.shape:
        raise ValueError(f"`dy` must have the output's shape {cache.positive.shape}; got {g.shape}")
    return LeakyReluGrads(np.where(cache.positive, g, cache.dtype.type(cache.negative_slope) * g))
