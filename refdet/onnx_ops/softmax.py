"""Softmax and log-softmax: the ONNX operators (both opset semantics) and the layer pairs.

A detector applies softmax to class logits (Faster R-CNN's box head, SSD), and an exported model
carries it as an ONNX ``Softmax``/``LogSoftmax`` node whose meaning changed at opset 13:

* **opset < 13** (``axis`` default 1): the input is *coerced to 2-D*, ``(prod(shape[:axis]),
  prod(shape[axis:]))``, and each row is normalised: the softmax runs over **all** axes from
  ``axis`` on, not over ``axis`` alone. A ``(B, C, H, W)`` map with ``axis=1`` is normalised over
  ``C*H*W`` values per image.
* **opset >= 13** (``axis`` default -1): over ``axis`` alone (PyTorch's ``dim``).

Both runtimes compute ``e = exp(x - max)`` first (no overflow), and then differ:

===========================  =====================================  ====================================
                             onnxruntime 1.32 (= PyTorch CPU)       onnx.reference (onnx 1.23)
===========================  =====================================  ====================================
opset < 13                   coerces to 2-D (the spec)              **ignores** it: normalises over
                                                                    ``axis`` only, at every opset
softmax                      ``e * (1 / sum(e))``                   ``e / sum(e)``
log-softmax                  ``(x - max) - log(sum(e))``            ``log(e / sum(e))``: ``-inf`` where
                                                                    ``e`` underflows (x - max < -104
                                                                    in float32), finite elsewhere
===========================  =====================================  ====================================

Sources: onnxruntime ``core/providers/cpu/math/softmax.cc`` and MLAS ``compute.cpp``
(``MlasComputeSoftmaxOutputF32Kernel`` multiplies by ``1 / sum``; the log kernel adds ``-max`` then
subtracts ``log(sum)``); ``onnx/reference/ops/op_softmax.py`` and ``op_log_softmax.py`` (one class
for every opset); ATen ``native/cpu/SoftMaxKernel.cpp`` (``_vec_softmax_lastdim``: ``x * (1 / sum)``;
``_vec_log_softmax_lastdim``: ``x - max - log(sum)``). None of the three is bit-reproducible in
float32 from NumPy (each has its own vectorised ``exp`` and summation order): float32 results agree
with them to a few ulp; float64 is the oracle.

The layer pairs (:func:`softmax_forward` / :func:`softmax_backward`, and the log-softmax pair) follow
PyTorch's ``F.softmax(x, dim)`` / ``F.log_softmax`` and its autograd formulas
(``softmax_backward_data``: ``y * (dy - sum(dy * y))``; ``log_softmax_backward_data``:
``dy - exp(y) * sum(dy)``).

Readable references: :func:`refdet.reference.onnx_ops.softmax` (the formula, row by row).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "SOFTMAX_RUNTIMES",
    "softmax",
    "log_softmax",
    "SoftmaxCache",
    "SoftmaxGrads",
    "softmax_forward",
    "softmax_backward",
    "LogSoftmaxCache",
    "LogSoftmaxGrads",
    "log_softmax_forward",
    "log_softmax_backward",
]

#: The runtimes :func:`softmax` / :func:`log_softmax` reproduce.
SOFTMAX_RUNTIMES = ("onnxruntime", "onnx_reference")

_ORT = ("onnxruntime core/providers/cpu/math/softmax.cc (SoftmaxCPU: 2-D coercion below opset 13), "
        "mlas/lib/compute.cpp (MlasComputeSoftmax: e * (1/sum); log: (x - max) - log(sum))")
_REF = "onnx/reference/ops/op_softmax.py, op_log_softmax.py (axis semantics at every opset; e / sum; log(softmax))"
_ATEN = "ATen native/cpu/SoftMaxKernel.cpp (_vec_softmax_lastdim: x * (1/sum); _vec_log_softmax_lastdim)"

conventions.register(
    "softmax_forward",
    {"torchvision": {"normalize": "reciprocal"}, "onnx": {"normalize": "reciprocal"}},
    knobs={"normalize": conventions.choice(
        ("reciprocal", "divide"), "how exp(x - max) is normalised: times 1/sum (PyTorch, onnxruntime) or divided "
        "by the sum (onnx.reference)", source=f"{_ATEN}; {_ORT}; {_REF}")},
    doc="PyTorch F.softmax and onnxruntime Softmax multiply by the reciprocal of the sum; onnx.reference divides. "
        "They differ by at most 1 ulp per element.",
)
conventions.register(
    "log_softmax_forward",
    {"torchvision": {"log_form": "shifted"}, "onnx": {"log_form": "shifted"}},
    knobs={"log_form": conventions.choice(
        ("shifted", "log_of_softmax"), "'shifted': (x - max) - log(sum(exp(x - max))) (PyTorch, onnxruntime); "
        "'log_of_softmax': log(softmax(x)) (onnx.reference: -inf where exp underflows)", source=f"{_ATEN}; {_ORT}; "
        f"{_REF}")},
    doc="onnx.reference computes LogSoftmax as log(Softmax): -inf once x - max < log(smallest subnormal).",
)
for _op in ("softmax", "log_softmax"):
    conventions.register(
        _op,
        {"onnx": {"runtime": "onnxruntime"}},
        knobs={"runtime": conventions.choice(
            SOFTMAX_RUNTIMES, "whose semantics to reproduce: onnxruntime (the spec: 2-D coercion below opset 13; "
            "reciprocal; shifted log) or onnx.reference (axis semantics at every opset; divide; log of softmax)",
            source=f"{_ORT}; {_REF}")},
        doc="The ONNX operator; the layer pair with PyTorch's semantics is softmax_forward / log_softmax_forward.",
    )


def _softmax_core(x: np.ndarray, axis: int, normalize: str) -> np.ndarray:
    """``exp(x - max) / sum`` along ``axis`` of a float array (no checks)."""
    m = np.max(x, axis=axis, keepdims=True)       # a row of -inf (or with +inf) gives NaN, as in every runtime
    with np.errstate(invalid="ignore"):
        e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    if normalize == "reciprocal":
        with np.errstate(divide="ignore", invalid="ignore"):
            return e * (x.dtype.type(1) / s)
    with np.errstate(divide="ignore", invalid="ignore"):
        return e / s


def _log_softmax_core(x: np.ndarray, axis: int, log_form: str) -> np.ndarray:
    if log_form == "log_of_softmax":
        with np.errstate(divide="ignore"):
            return np.log(_softmax_core(x, axis, "divide"))
    m = np.max(x, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        shifted = x - m
    with np.errstate(divide="ignore", invalid="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _onnx_input(x):
    arr = _checks.as_array(x, "x")
    if arr.dtype.kind != "f":
        raise TypeError(f"`x` must be a float16/float32/float64 array (the ONNX Softmax types); got dtype {arr.dtype}")
    return arr


def _onnx_softmax(x, axis, opset, runtime, log):
    opset = _checks.check_int(opset, "opset", low=1)
    xa = _onnx_input(x)
    if xa.ndim == 0:
        raise ValueError("`x` must have at least 1 dimension (ONNX Softmax); got a 0-D array")
    if axis is None:
        axis = 1 if opset < 13 else -1
    a = _checks.check_int(axis, "axis")
    if not -xa.ndim <= a < xa.ndim:
        raise ValueError(f"`axis` must lie in [{-xa.ndim}, {xa.ndim}) for a {xa.ndim}-D `x`; got {a}")
    a %= xa.ndim
    out_dtype = xa.dtype
    work = np.ascontiguousarray(xa.astype(_checks.working_dtype(xa.dtype), copy=False))
    if work.size == 0:
        return work.astype(out_dtype)
    if opset < 13 and runtime == "onnxruntime":
        rows = int(np.prod(work.shape[:a], dtype=np.int64))
        flat = work.reshape(rows, -1)                                # (prod(shape[:axis]), prod(shape[axis:]))
        y = _log_softmax_core(flat, 1, "shifted") if log else _softmax_core(flat, 1, "reciprocal")
        return y.reshape(work.shape).astype(out_dtype)
    if runtime == "onnxruntime":
        y = _log_softmax_core(work, a, "shifted") if log else _softmax_core(work, a, "reciprocal")
    else:
        y = _log_softmax_core(work, a, "log_of_softmax") if log else _softmax_core(work, a, "divide")
    return y.astype(out_dtype)


@conventions.documented("softmax")
def softmax(x: np.ndarray, *, axis: Optional[int] = None, opset: int = 13,
            convention: Union[str, conventions.Profile] = "onnx", runtime: Optional[str] = None) -> np.ndarray:
    """ONNX ``Softmax`` (opsets 1-13+), as onnxruntime or onnx.reference computes it.

    Parameters
    ----------
    x : ndarray, any shape (at least 1-D)
        float16 (computed in float32, returned as float16), float32 or float64. NaN propagates to its
        row; a row of ``-inf`` gives NaN (0/0) as in both runtimes; ``+inf`` gives NaN.
    axis : int, optional
        Default 1 below opset 13, -1 from opset 13 (the schema defaults).
    opset : int
        The model's opset: below 13 the input is coerced to 2-D at ``axis`` (module docstring).
    convention, runtime
        ``runtime="onnxruntime"`` (default of the ``"onnx"`` profile) or ``"onnx_reference"``.

    Returns
    -------
    ndarray, same shape and dtype as ``x``.
    """
    runtime = conventions.resolve("softmax", convention, runtime=runtime).runtime
    return _onnx_softmax(x, axis, opset, runtime, log=False)


@conventions.documented("log_softmax")
def log_softmax(x: np.ndarray, *, axis: Optional[int] = None, opset: int = 13,
                convention: Union[str, conventions.Profile] = "onnx", runtime: Optional[str] = None) -> np.ndarray:
    """ONNX ``LogSoftmax``: as :func:`softmax`, the log of it.

    onnxruntime computes ``(x - max) - log(sum(exp(x - max)))``: finite for every finite input.
    onnx.reference computes ``log(softmax(x))``: ``-inf`` wherever ``exp(x - max)`` underflows to 0
    (``x - max < -103.97`` in float32, ``< -745.1`` in float64), e.g. ``[0, -200]`` gives
    ``[0, -inf]`` there and ``[0, -200]`` in onnxruntime.

    Returns
    -------
    ndarray, same shape and dtype as ``x``.
    """
    runtime = conventions.resolve("log_softmax", convention, runtime=runtime).runtime
    return _onnx_softmax(x, axis, opset, runtime, log=True)


# ---------------------------------------------------------------------------------------------------
# layer pairs (PyTorch semantics)
# ---------------------------------------------------------------------------------------------------

class SoftmaxCache(NamedTuple):
    """What :func:`softmax_backward` needs."""
    y: np.ndarray                 # the output, any shape
    axis: int


class SoftmaxGrads(NamedTuple):
    dx: np.ndarray


class LogSoftmaxCache(NamedTuple):
    """What :func:`log_softmax_backward` needs."""
    y: np.ndarray                 # the output (log-probabilities)
    axis: int


class LogSoftmaxGrads(NamedTuple):
    dx: np.ndarray


def _layer_input(x, axis):
    xa = _checks.as_float_array(x, "x", finite=False)
    if np.isnan(xa).any():
        _checks.check_finite(xa, "x", allow_inf=True)
    if xa.ndim == 0:
        raise ValueError("`x` must have at least 1 dimension; got a 0-D array")
    a = _checks.check_int(axis, "axis")
    if not -xa.ndim <= a < xa.ndim:
        raise ValueError(f"`axis` must lie in [{-xa.ndim}, {xa.ndim}) for a {xa.ndim}-D `x`; got {a}")
    return np.ascontiguousarray(xa), a % xa.ndim


@conventions.documented("softmax_forward")
def softmax_forward(x: np.ndarray, *, axis: int = -1, normalize: Optional[str] = None,
                    convention: Union[str, conventions.Profile] = "torchvision") -> Tuple[np.ndarray, SoftmaxCache]:
    """``y = exp(x - max) / sum(exp(x - max))`` along ``axis`` (``F.softmax(x, dim=axis)``).

    Parameters
    ----------
    x : ndarray, any shape (at least 1-D)
        NaN is rejected; ``-inf`` entries get probability 0 (a masked logit); a row of ``-inf`` gives NaN.
    axis : int
        The class axis.
    normalize : {"reciprocal", "divide"}, optional
        Multiply by ``1 / sum`` (PyTorch, onnxruntime; the default) or divide (onnx.reference).

    Returns
    -------
    y : ndarray, same shape
    cache : SoftmaxCache
    """
    normalize = conventions.resolve("softmax_forward", convention, normalize=normalize).normalize
    xa, a = _layer_input(x, axis)
    y = _softmax_core(xa, a, normalize) if xa.size else xa.copy()
    return y, SoftmaxCache(y, a)


def softmax_backward(dy: np.ndarray, cache: SoftmaxCache) -> SoftmaxGrads:
    """``dx = y * (dy - sum(dy * y, axis))``: the Jacobian ``diag(y) - y y^T`` applied to ``dy``
    (ATen ``softmax_backward_data``: ``grad_input = output * (grad - (grad * output).sum(dim))``)."""
    if not isinstance(cache, SoftmaxCache):
        raise TypeError(f"`cache` must be the SoftmaxCache returned by softmax_forward; got {type(cache).__name__}")
    y = cache.y
    g = _checks.as_float_array(dy, "dy", dtype=y.dtype, finite=False)
    if g.shape != y.shape:
        raise ValueError(f"`dy` must have the output's shape {y.shape}; got {g.shape}")
    g = np.ascontiguousarray(g)
    return SoftmaxGrads(y * (g - np.sum(g * y, axis=cache.axis, keepdims=True)))


@conventions.documented("log_softmax_forward")
def log_softmax_forward(x: np.ndarray, *, axis: int = -1, log_form: Optional[str] = None,
                        convention: Union[str, conventions.Profile] = "torchvision"
                        ) -> Tuple[np.ndarray, LogSoftmaxCache]:
    """``y = (x - max) - log(sum(exp(x - max)))`` along ``axis`` (``F.log_softmax(x, dim=axis)``).

    ``log_form="log_of_softmax"`` computes ``log(softmax(x))`` instead (onnx.reference), which is
    ``-inf`` where the probability underflows (and then has no useful gradient).

    Returns
    -------
    y : ndarray, same shape as ``x``
    cache : LogSoftmaxCache
    """
    log_form = conventions.resolve("log_softmax_forward", convention, log_form=log_form).log_form
    xa, a = _layer_input(x, axis)
    y = _log_softmax_core(xa, a, log_form) if xa.size else xa.copy()
    return y, LogSoftmaxCache(y, a)


def log_softmax_backward(dy: np.ndarray, cache: LogSoftmaxCache) -> LogSoftmaxGrads:
    """``dx = dy - exp(y) * sum(dy, axis)`` (ATen ``log_softmax_backward_data``): the Jacobian of
    ``x - logsumexp(x)`` is ``I - 1 softmax(x)^T``."""
    if not isinstance(cache, LogSoftmaxCache):
        raise TypeError(f"`cache` must be the LogSoftmaxCache returned by log_softmax_forward; got "
                        f"{type(cache).__name__}")
    y = cache.y
    g = _checks.as_float_array(dy, "dy", dtype=y.dtype, finite=False)
    if g.shape != y.shape:
        raise ValueError(f"`dy` must have the output's shape {y.shape}; got {g.shape}")
    g = np.ascontiguousarray(g)
    return LogSoftmaxGrads(g - np.exp(y) * np.sum(g, axis=cache.axis, keepdims=True))
