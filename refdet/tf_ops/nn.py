"""TF's ``Conv2D`` (NHWC, HWIO filters, ``SAME``/``VALID``/explicit padding) and
``sigmoid_cross_entropy_with_logits``, on refdet's own layers.

Conv2D ``SAME`` (``tensorflow/core/framework/kernel_shape_util.cc``, ``GetWindowedOutputSizeVerbose``)::

    out = ceil(in / stride)
    pad_total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)
    pad_before = pad_total // 2,  pad_after = pad_total - pad_before     # the odd pixel at the end

which is refdet's ``padding="same"`` (:mod:`refdet._conv`); PyTorch's ``padding=k // 2`` agrees only at
stride 1 with odd kernels, and ONNX ``SAME_LOWER`` puts the odd pixel first. The arithmetic is
refdet's :func:`refdet.layers.conv2d_forward` / ``conv2d_backward`` (float64: the exact sums; TF's
Eigen/oneDNN GEMMs sum in another order, so float32 agrees to a few ulps of the sum of magnitudes).

``sigmoid_cross_entropy_with_logits`` (``tensorflow/python/ops/nn_impl.py``)::

    cond = logits >= 0
    relu_logits    = where(cond, logits, 0)
    neg_abs_logits = where(cond, -logits, logits)
    loss = (relu_logits - logits * labels) + log1p(exp(neg_abs_logits))

and its gradient is TF's autodiff of those lines: ``where(cond, 1, 0) - labels + where(cond, -1, 1) *
exp(n) / (1 + exp(n))``, which equals ``sigmoid(logits) - labels`` everywhere, including at
``logits == 0`` (``cond`` is true there: ``1 - labels - 1/2``). TF's float32 ``exp``/``log1p`` are
Eigen's vectorised approximations: values agree with refdet's to a few ulps, not bit for bit.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np

from refdet import _checks
from refdet import layers as _layers

__all__ = ["conv2d", "conv2d_backprop", "Conv2DBackprop", "sigmoid_cross_entropy_with_logits",
           "sigmoid_cross_entropy_with_logits_grad"]

_RUNTIME = "TensorFlow's Conv2D"


def _tf_padding(padding, explicit_paddings):
    if isinstance(padding, str):
        p = padding.upper()
        if p in ("SAME", "VALID"):
            if explicit_paddings is not None:
                raise ValueError(f"`explicit_paddings` is only defined with padding='EXPLICIT' ({_RUNTIME}); "
                                 f"got padding={padding!r}")
            return p.lower()
        if p == "EXPLICIT":
            if explicit_paddings is None or len(explicit_paddings) != 8:
                raise ValueError("`explicit_paddings` must list 8 ints (before, after for N, H, W, C) with "
                                 f"padding='EXPLICIT' ({_RUNTIME}); got {explicit_paddings!r}")
            e = [_checks.check_int(v, "explicit_paddings", low=0) for v in explicit_paddings]
            if e[0] or e[1] or e[6] or e[7]:
                raise ValueError(f"`explicit_paddings` may pad only H and W ({_RUNTIME}); got {e}")
            return (e[2], e[3], e[4], e[5])
    raise ValueError(f"`padding` must be 'SAME', 'VALID' or 'EXPLICIT'; got {padding!r}")


def _pair4(v, name):
    """TF's strides / dilations: an int, a pair (H, W) or the 4-list (1, h, w, 1)."""
    if hasattr(v, "__len__") and len(v) == 4:
        if int(v[0]) != 1 or int(v[3]) != 1:
            raise ValueError(f"`{name}` may not stride the batch or channel axis ({_RUNTIME}); got {list(v)}")
        v = (v[1], v[2])
    return _checks.check_pair(v, name, low=1)


def _check_conv(input, filters, strides, padding, dilations, explicit_paddings):  # noqa: A002
    """Validate in TF's names (``input``, ``filters``, ``dilations``) before refdet's NCHW engine runs."""
    x = _checks.as_float_array(input, "input")
    w = _checks.as_float_array(filters, "filters")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"`input` must be (B, H, W, C) and `filters` (KH, KW, Cg, F); got {x.shape} and {w.shape}")
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"`filters` must have a kernel of at least 1 x 1; got shape {w.shape}")
    if w.shape[2] == 0 or x.shape[3] % w.shape[2]:
        raise ValueError(f"`input` channels {x.shape[3]} must be a multiple of `filters`' in-channels {w.shape[2]}")
    pad = _tf_padding(padding, explicit_paddings)
    st, dil = _pair4(strides, "strides"), _pair4(dilations, "dilations")
    # a dilated kernel's extent bounds the padding SAME adds: refuse a padded input above refdet's cap
    ext_h, ext_w = (w.shape[0] - 1) * dil[0] + 1, (w.shape[1] - 1) * dil[1] + 1
    _checks.check_allocation(x.shape[0] * x.shape[3] * (x.shape[1] + ext_h) * (x.shape[2] + ext_w), x.itemsize,
                             "a padded input", name="dilations", keyword=False)
    return x, w, pad, st, dil


def conv2d(input: np.ndarray, filters: np.ndarray, strides=1, padding: str = "SAME", *,  # noqa: A002
           dilations=1, explicit_paddings=None) -> np.ndarray:
    """TF ``tf.nn.conv2d`` (``Conv2D``), NHWC.

    Parameters
    ----------
    input : ndarray, shape (B, H, W, C)
    filters : ndarray, shape (KH, KW, C / groups, F)
        ``C / groups`` input channels per group (TF infers ``groups`` from the shapes).
    strides, dilations : int, (int, int) or (1, sh, sw, 1)
    padding : {"SAME", "VALID", "EXPLICIT"}
    explicit_paddings : list of 8 ints, optional
        With ``"EXPLICIT"``: ``[0, 0, top, bottom, left, right, 0, 0]``.

    Returns
    -------
    ndarray, shape (B, Ho, Wo, F)
    """
    x, w, pad, st, dil = _check_conv(input, filters, strides, padding, dilations, explicit_paddings)
    groups = x.shape[3] // w.shape[2]
    y, _ = _layers.conv2d_forward(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), None,
                                  stride=st, padding=pad, dilation=dil, groups=groups)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


class Conv2DBackprop(NamedTuple):
    """TF's ``Conv2DBackpropInput`` and ``Conv2DBackpropFilter`` outputs."""
    dinput: np.ndarray      # (B, H, W, C)
    dfilters: np.ndarray    # (KH, KW, Cg, F)


def conv2d_backprop(input: np.ndarray, filters: np.ndarray, dy: np.ndarray, strides=1,  # noqa: A002
                    padding: str = "SAME", *, dilations=1, explicit_paddings=None) -> Conv2DBackprop:
    """Gradients of :func:`conv2d` (refdet's :func:`refdet.layers.conv2d_backward` in TF's layouts).

    Parameters
    ----------
    input, filters, strides, padding, dilations, explicit_paddings
        As :func:`conv2d`.
    dy : ndarray, shape (B, Ho, Wo, F)
    """
    x, w, pad, st, dil = _check_conv(input, filters, strides, padding, dilations, explicit_paddings)
    d = _checks.as_float_array(dy, "dy")
    y, cache = _layers.conv2d_forward(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), None,
                                      stride=st, padding=pad, dilation=dil, groups=x.shape[3] // w.shape[2])
    want = (y.shape[0], y.shape[2], y.shape[3], y.shape[1])
    if d.shape != want:
        raise ValueError(f"`dy` must have the output's shape {want} (given `input`, `filters`, `strides`, `padding` "
                         f"and `dilations`); got {d.shape}")
    g = _layers.conv2d_backward(d.transpose(0, 3, 1, 2), cache)
    return Conv2DBackprop(np.ascontiguousarray(g.dx.transpose(0, 2, 3, 1)),
                          np.ascontiguousarray(g.dw.transpose(2, 3, 1, 0)))


def _logits_labels(labels, logits):
    z = _checks.as_array(logits, "logits")
    t = _checks.as_array(labels, "labels")
    if z.shape != t.shape:
        raise ValueError(f"`labels` and `logits` must have the same shape; got {t.shape} and {z.shape}")
    dt = _checks.working_dtype(np.result_type(z.dtype, t.dtype))
    return t.astype(dt, copy=False), z.astype(dt, copy=False)


def sigmoid_cross_entropy_with_logits(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``tf.nn.sigmoid_cross_entropy_with_logits(labels=..., logits=...)``, elementwise, TF's order.

    Parameters
    ----------
    labels : ndarray, any shape (any real value; TF does not check [0, 1])
    logits : ndarray, same shape

    Returns
    -------
    ndarray, same shape: ``(where(x >= 0, x, 0) - x z) + log1p(exp(-|x|))``.
    """
    t, x = _logits_labels(labels, logits)
    zero = x.dtype.type(0)
    cond = x >= zero
    relu = np.where(cond, x, zero)
    neg_abs = np.where(cond, -x, x)
    return (relu - x * t) + np.log1p(np.exp(neg_abs))


def sigmoid_cross_entropy_with_logits_grad(labels: np.ndarray, logits: np.ndarray,
                                           dloss: Union[float, np.ndarray] = 1.0) -> np.ndarray:
    """TF's gradient of :func:`sigmoid_cross_entropy_with_logits` with respect to ``logits``:
    ``dloss * (sigmoid(x) - z)`` written as TF's autodiff of its lines (see the module docstring).

    Returns
    -------
    ndarray, shape of ``logits``
    """
    t, x = _logits_labels(labels, logits)
    d = _checks.as_array(dloss, "dloss")
    if d.dtype.kind == "b":
        raise TypeError("`dloss` must be a real number or array; got dtype bool")
    try:
        d = np.broadcast_to(np.asarray(d, dtype=x.dtype), x.shape)
    except ValueError:
        raise ValueError(f"`dloss` must broadcast to the shape of `logits` {x.shape}; got shape {d.shape}") from None
    zero, one = x.dtype.type(0), x.dtype.type(1)
    cond = x >= zero
    e = np.exp(np.where(cond, -x, x))
    dn = d / (one + e) * e                                  # through log1p(exp(n))
    return (np.where(cond, d, zero) - d * t) + np.where(cond, -dn, dn)
