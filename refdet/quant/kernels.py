"""Integer kernels: exact integer convolution, ONNX ``QLinearConv`` and TFLite int8 ``CONV_2D``.

:func:`conv2d_int` sums zero-point-shifted integer products exactly (the accumulator inside ONNX
``ConvInteger``/``QLinearConv`` and TFLite ``CONV_2D``); :func:`qlinear_conv` (NCHW, ONNX semantics)
and :func:`tflite_conv2d_int8` (NHWC, TFLite reference-kernel semantics) add the int32 bias and
requantize with :func:`refdet.quant.fixed_point.requantize`; :func:`tflite_activation_range` is a
fused activation as an integer clamp.

Padding follows refdet's one grammar (:mod:`refdet._conv`: a flat 4-tuple is (top, bottom, left,
right), as in :func:`refdet.layers.conv2d_forward`) and the im2col is refdet's one
(:class:`refdet._conv.Im2col`); ONNX-order ``pads`` are read only by :func:`qlinear_conv`'s ``pads=``.

Reference: :func:`refdet.reference.quant.conv2d_int` (a loop over output positions in Python ints).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import _conv
from refdet.quant.affine import _INT32_MAX, _INT32_MIN, QUANT_DTYPES, ArrayLike, round_half_away
from refdet.quant.fixed_point import _int32_array, requantize

__all__ = ["conv2d_int", "qlinear_conv", "tflite_activation_range", "tflite_conv2d_int8"]

IntPair = Union[int, Tuple[int, int]]
Padding = Union[int, str, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]], Tuple[int, int, int, int]]


_EXACT32 = 2 ** 24
_EXACT64 = 2 ** 53


def conv2d_int(xq: np.ndarray, wq: np.ndarray, *, x_zero_point: ArrayLike = 0, w_zero_point: ArrayLike = 0,
               stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, groups: int = 1,
               accumulator: str = "int64", method: str = "auto") -> np.ndarray:
    """Integer 2-D convolution (cross-correlation) of zero-point-shifted operands, exactly.

    ``acc[n, f, i, j] = sum_{c, u, v} (x[n, g*Cg + c, i*sh + u*dh - pt, j*sw + v*dw - pl] - x_zp)
    * (w[f, c, u, v] - w_zp[f])`` where ``g = f // (F / groups)``: ONNX ``ConvInteger`` (and the
    accumulation inside ``QLinearConv`` and TFLite CONV_2D). Padding taps contribute 0, i.e. x is
    padded with ``x_zero_point`` (TFLite skips them, which is the same).

    Parameters
    ----------
    xq : ndarray of int, shape (N, C, H, W)
    wq : ndarray of int, shape (F, C / groups, KH, KW)
    x_zero_point : int
    w_zero_point : int or ndarray of int, shape (F,)
        Per output channel allowed (ONNX ConvInteger / QLinearConv).
    stride, dilation : int or (h, w)
    padding : int, (ph, pw), ((top, bottom), (left, right)), (top, bottom, left, right) or a string
        refdet's one padding grammar (:func:`refdet._conv.parse_padding`: a flat 4-tuple is
        **(top, bottom, left, right)**, as in :func:`refdet.layers.conv2d_forward`; ``"valid"``,
        ``"same"`` = ``"same_upper"``, ``"same_lower"``). ONNX ``pads`` (top, left, bottom, right)
        go through :func:`refdet._conv.onnx_pads_to_canonical` first, or to :func:`qlinear_conv`'s
        ``pads=``.
    groups : int
    accumulator : {"int64", "int32"}
        ``"int32"`` emulates the runtimes' int32 accumulator: a final value outside int32 raises a
        ``ValueError`` naming the first offending output (instead of silently wrapping).
    method : {"auto", "float32", "float64", "int64"}
        How the products are summed; all give the same integers when allowed. ``"auto"`` picks float32
        BLAS over K-chunks when every partial sum is provably an integer below 2**24
        (``max|x - x_zp| * max|w - w_zp| * chunk < 2**24``), else float64 BLAS when below 2**53, else an
        int64 matmul (exact while below 2**63). An explicit method that cannot be exact raises.

    Returns
    -------
    ndarray of int64, shape (N, F, OH, OW)
        ``OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1``, likewise OW.

    Notes
    -----
    Reference: :func:`refdet.reference.quant.conv2d_int`, the sum above as a loop over output
    positions in Python ints; the tests hold the two equal for every ``method``.
    """
    x = _checks.as_int_array(xq, "xq", ndim=4)
    w = _checks.as_int_array(wq, "wq", ndim=4)
    _checks.check_choice(accumulator, "accumulator", ("int64", "int32"))
    _checks.check_choice(method, "method", ("auto", "float32", "float64", "int64"))
    g = _checks.check_int(groups, "groups", low=1)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    if c != cg * g:
        raise ValueError(f"`xq` has {c} channels but `wq` expects {cg} x `groups` ({g}) = {cg * g}")
    if f % g:
        raise ValueError(f"`wq` has {f} filters, not divisible by groups ({g})")
    sh, sw = _checks.check_pair(stride, "stride", low=1)
    dh, dw = _checks.check_pair(dilation, "dilation", low=1)
    pads = _conv.parse_padding(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))   # (top, bottom, left, right)
    pt, pb, pl, pr = pads
    xzp = _checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=-(2 ** 31), qmax=2 ** 32)
    wzp = _checks.as_quant_zero_point(w_zero_point, "w_zero_point", qmin=-(2 ** 31), qmax=2 ** 32, axis=0,
                                      length=f)
    oh = _conv.output_size(h, kh, sh, pt, pb, dh, name="xq")
    ow = _conv.output_size(wd, kw, sw, pl, pr, dw, name="xq")
    _conv.check_sizes(x.shape, (pt, pb, pl, pr), f, oh, ow, 8)
    xs = x.astype(np.int64) - xzp                                               # (N, C, H, W)
    ws = w.astype(np.int64) - (wzp.reshape(-1, 1, 1, 1) if wzp.ndim else wzp)   # (F, Cg, KH, KW)
    K = cg * kh * kw
    prod = int(np.abs(xs).max(initial=0)) * int(np.abs(ws).max(initial=0))   # bound of one product
    if method == "auto":
        if prod * min(K, 64) < _EXACT32 and prod > 0:
            method = "float32"
        elif prod * K < _EXACT64:
            method = "float64"
        else:
            method = "int64"
    if method == "float32" and not prod < _EXACT32:
        raise ValueError(f"`method` 'float32' cannot be exact: one product of (`x` - `x_zero_point`) and (`w` - "
                         f"`w_zero_point`) can reach {prod} >= 2**24")
    if method == "float64" and not prod * K < _EXACT64:
        raise ValueError(f"`method` 'float64' cannot be exact: the accumulator of (`x` - `x_zero_point`) times "
                         f"(`w` - `w_zero_point`) can reach {prod * K} >= 2**53")
    if prod * K >= 2 ** 63:
        raise ValueError(f"the accumulator of (`x` - `x_zero_point`) times (`w` - `w_zero_point`) over {K} terms can "
                         f"reach {prod * K}, beyond int64")
    dt = {"float32": np.float32, "float64": np.float64, "int64": np.int64}[method]

    out = np.zeros((n, f, oh, ow), dtype=np.int64)
    if out.size and K:
        # refdet's one im2col; padding with 0 after the zero-point shift = padding x with x_zero_point
        plan = _conv.Im2col(xs.astype(dt), (kh, kw), stride=(sh, sw), pads=pads, dilation=(dh, dw), groups=g)
        wg = ws.astype(dt).reshape(g, f // g, K)                  # (G, F/G, Cg*KH*KW), rows (c, u, v)
        # float32: K-chunks of at most (2**24 - 1) / prod products, so every partial sum is an integer
        # below 2**24 (exact in float32); the chunks are summed in float64 (exact below 2**53)
        step = max(1, (_EXACT32 - 1) // max(prod, 1)) if method == "float32" else K
        for r0, r1 in plan.chunks():
            cols = plan.cols(r0, r1)                              # (N, G, Cg*KH*KW, rows*width)
            if step >= K:
                acc = np.matmul(wg, cols)                         # (N, G, F/G, rows*width)
            else:
                acc = np.zeros((n, g, f // g, cols.shape[3]), dtype=np.float64)
                for k0 in range(0, K, step):
                    acc += np.matmul(wg[:, :, k0:k0 + step], cols[:, :, k0:k0 + step])
            # every value is an exact integer: the cast to int64 is exact
            out[:, :, r0:r1] = acc.reshape(n, f, r1 - r0, plan.width)[..., :ow]
    if accumulator == "int32":
        _check_int32_acc(out, "conv2d_int")
    return out


def _check_int32_acc(acc, where):
    if acc.size and (acc.min() < _INT32_MIN or acc.max() > _INT32_MAX):
        bad = np.argwhere((acc < _INT32_MIN) | (acc > _INT32_MAX))[0]
        raise ValueError(f"{where}: the int32 accumulator overflows: value {int(acc[tuple(bad)])} at index "
                         f"{tuple(int(i) for i in bad)} is outside [-2**31, 2**31 - 1] (onnxruntime and TFLite "
                         f"accumulate in int32; use accumulator='int64' to see the exact value)")


def _as_q8(v, name):
    a = _checks.as_int_array(v, name, ndim=4)
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError(f"`{name}` must be int8 or uint8 (ONNX QLinearConv types); got dtype {a.dtype}")
    return a


def _zp_range(arr_or_int, fallback):
    """The range of a typed 8-bit zero point's dtype, else of ``fallback`` (a plain int zero point)."""
    a = np.asarray(arr_or_int)
    return QUANT_DTYPES[(a.dtype if a.dtype in (np.int8, np.uint8) else fallback).name]


def qlinear_conv(x: np.ndarray, x_scale: ArrayLike, x_zero_point: ArrayLike, w: np.ndarray, w_scale: ArrayLike,
                 w_zero_point: ArrayLike, y_scale: ArrayLike, y_zero_point: ArrayLike, B: Optional[np.ndarray] = None,
                 *, stride: IntPair = 1, padding: Padding = 0, pads: Optional[Sequence[int]] = None,
                 dilation: IntPair = 1, groups: int = 1, mode: str = "onnxruntime") -> np.ndarray:
    """ONNX ``QLinearConv`` (opset 10): integer conv, int32 bias, requantization to 8 bits.

    ``y = saturate(round((conv(x - x_zp, w - w_zp) + B) * (x_scale * w_scale / y_scale)) + y_zp)``,
    NCHW, weights (F, C/groups, KH, KW), ``w_scale``/``w_zero_point`` per tensor or per output channel.
    The schema does not fix the requantization arithmetic; the two runtimes differ near ties:

    * ``mode="onnxruntime"``: the multiplier ``float32(float32(x_s * w_s[f]) / y_s)``, then
      ``rint(float32(acc) * multiplier) + y_zp`` (x86 MLAS ``MlasRequantizeOutput``; ORT PR #3196). ORT's
      CPU kernel additionally requires equal per-channel weight zero points.
    * ``mode="onnx_reference"``: ``onnx.reference``'s ``op_qlinear_conv.py``: the same float32
      multiplier, a float64 product, ``+ y_zp`` *before* clipping and ``np.round``.

    Parameters
    ----------
    x : ndarray of uint8 or int8, shape (N, C, H, W)
    x_scale : float (float32)
    x_zero_point : int or 0-d array of x's dtype
    w : ndarray of uint8 or int8, shape (F, C / groups, KH, KW)
    w_scale : float or ndarray, shape (F,)
    w_zero_point : int or ndarray, shape () or (F,)
    y_scale : float
    y_zero_point : int or 0-d array; its dtype (uint8/int8) is the output dtype (default: x's dtype)
    B : ndarray of int32, shape (F,), optional
        Bias in units of ``x_scale * w_scale[f]`` (zero point 0), added to the int32 accumulator.
    stride, dilation : int or pair
    padding : refdet's padding grammar, optional
        As :func:`conv2d_int` (a flat 4-tuple is (top, bottom, left, right)).
    pads : sequence of 4 ints, optional
        The ONNX node attribute as written, in ONNX order **(top, left, bottom, right)** (``x1_begin,
        x2_begin, x1_end, x2_end``); converted with :func:`refdet._conv.onnx_pads_to_canonical`. Give
        ``padding`` or ``pads``, not both.
    groups : int
    mode : {"onnxruntime", "onnx_reference"} (also the other :func:`requantize` modes)

    Returns
    -------
    ndarray of uint8 or int8, shape (N, F, OH, OW)

    Raises
    ------
    ValueError
        If the int32 accumulator (with the bias) overflows.
    """
    xa = _as_q8(x, "x")
    wa = _as_q8(w, "w")
    xlo, xhi = QUANT_DTYPES[xa.dtype.name]   # x_zero_point has x's type (ONNX T1), w_zero_point w's (T2)
    wlo, whi = QUANT_DTYPES[wa.dtype.name]
    ylo, yhi = _zp_range(y_zero_point, xa.dtype)   # y's type (T3) is y_zero_point's
    f = wa.shape[0]
    xs = np.float32(_checks.as_quant_scale(x_scale, "x_scale"))
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=f).astype(np.float32)
    ys = np.float32(_checks.as_quant_scale(y_scale, "y_scale"))
    xz = _checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=xlo, qmax=xhi)
    wz = _checks.as_quant_zero_point(w_zero_point, "w_zero_point", qmin=wlo, qmax=whi, axis=0, length=f)
    yz = _checks.as_quant_zero_point(y_zero_point, "y_zero_point", qmin=ylo, qmax=yhi)
    if pads is not None:
        if not (isinstance(padding, (int, np.integer)) and padding == 0):
            raise ValueError(f"give `padding` (refdet's grammar) or `pads` (ONNX order), not both; got padding="
                             f"{padding!r} and pads={pads!r}")
        if isinstance(pads, (str, bytes)) or not hasattr(pads, "__len__") or len(pads) != 4:
            raise ValueError(f"`pads` must be the 4 ONNX pads (top, left, bottom, right); got {pads!r}")
        padding = _conv.onnx_pads_to_canonical([_checks.check_int(p, "pads", low=0) for p in pads])
    acc = conv2d_int(xa, wa, x_zero_point=xz, w_zero_point=wz, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, accumulator="int32")
    if B is not None:
        b = _checks.as_int_array(B, "B", ndim=1)
        if b.shape[0] != f:
            raise ValueError(f"`B` must have one value per output channel ({f}); got length {b.shape[0]}")
        _int32_array(b, "B")
        acc = acc + b.astype(np.int64)[:, None, None]   # (F, 1, 1) against (N, F, OH, OW)
        _check_int32_acc(acc, "qlinear_conv (accumulator + B)")
    m = (xs * ws) / ys  # float32 throughout: (x_s * w_s) / y_s, shape () or (F,)
    # the output type is the smallest holding [ylo, yhi]: y_zero_point's type
    return requantize(acc, m, yz, mode=mode, qmin=ylo, qmax=yhi, axis=1)


_TFL_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def tflite_activation_range(activation: str, scale: ArrayLike, zero_point: ArrayLike, *,
                            dtype: str = "int8") -> Tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized``: the fused activation as an integer clamp.

    With ``quantize(f) = zero_point + int(TfLiteRound(float32(f) / float32(scale)))``:
    NONE -> [qmin, qmax]; RELU -> [max(qmin, zp), qmax]; RELU6 -> [max(qmin, zp), min(qmax, quantize(6))];
    RELU_N1_TO_1 -> [max(qmin, quantize(-1)), min(qmax, quantize(1))].

    Returns
    -------
    (int, int)
    """
    _checks.check_choice(activation, "activation", _TFL_ACTIVATIONS)
    dtype = _checks.check_quant_dtype(dtype)
    lo, hi = QUANT_DTYPES[dtype]
    s = np.float32(_checks.as_quant_scale(scale))   # named `scale` by default
    z = int(_checks.as_quant_zero_point(zero_point, qmin=lo, qmax=hi))   # named `zero_point` by default

    def q(v):
        return z + int(round_half_away(np.float32(v) / s))

    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, z), hi
    if activation == "RELU6":
        return max(lo, z), min(hi, q(6.0))
    return max(lo, q(-1.0)), min(hi, q(1.0))


def tflite_conv2d_int8(x: np.ndarray, x_scale: ArrayLike, x_zero_point: ArrayLike, w: np.ndarray,
                       w_scale: ArrayLike, bias: Optional[np.ndarray], y_scale: ArrayLike, y_zero_point: ArrayLike,
                       *, stride: IntPair = 1, padding: Union[str, Padding] = "VALID", dilation: IntPair = 1,
                       activation: str = "NONE", mode: str = "tflite") -> np.ndarray:
    """TFLite int8 ``CONV_2D`` with per-channel weights, reference-kernel semantics (bit-exact with
    LiteRT ``BUILTIN_REF``; XNNPACK and the optimized kernels differ by 1 LSB by design).

    ``reference/integer_ops/conv.h``::

        acc = sum w[o, u, v, c] * (x[n, ., ., c] - x_zp)         int32; padding taps skipped
        acc += bias[o]
        acc = MultiplyByQuantizedMultiplier(acc, q_o, shift_o)   (q_o, shift_o) = QuantizeMultiplier(M_o)
        y = clamp(acc + y_zp, act_min, act_max)

    with ``M_o = double(x_scale) * double(w_scale[o]) / double(y_scale)`` (float32 scales widened to
    double, ``PopulateConvolutionQuantizationParams``) and the clamp from
    :func:`tflite_activation_range`.

    Parameters
    ----------
    x : ndarray of int8, shape (N, H, W, C)   (NHWC)
    x_scale : float
    x_zero_point : int in [-128, 127]
    w : ndarray of int8, shape (O, KH, KW, C)   (OHWI; weight zero point 0 per the spec)
    w_scale : float or ndarray, shape (O,)
    bias : ndarray of int32, shape (O,), or None
        In units of ``x_scale * w_scale[o]``.
    y_scale : float
    y_zero_point : int in [-128, 127]
    stride, dilation : int or pair
    padding : "VALID", "SAME", or explicit in refdet's grammar (int, pair, (top, bottom, left, right))
        SAME puts the odd extra pixel at the bottom/right (``ComputePaddingHeightWidth``).
    activation : {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}
    mode : {"tflite", "tflite_single", "float_rne"}
        Requantization (see :func:`requantize`); "float_rne" reproduces XNNPACK.

    Returns
    -------
    ndarray of int8, shape (N, OH, OW, O)
    """
    xa = _checks.as_int_array(x, "x", ndim=4)
    wa = _checks.as_int_array(w, "w", ndim=4)
    if xa.dtype != np.int8 or wa.dtype != np.int8:
        raise TypeError(f"`x` and `w` must be int8 (TFLite int8 CONV_2D); got {xa.dtype} and {wa.dtype}")
    _checks.check_choice(mode, "mode", ("tflite", "tflite_single", "float_rne"))
    o, kh, kw, ci = wa.shape
    if xa.shape[3] != ci:
        raise ValueError(f"`x` has {xa.shape[3]} channels (NHWC) but `w` (OHWI) expects {ci}")
    xs = float(np.float32(_checks.as_quant_scale(x_scale, "x_scale")))
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=o).astype(np.float32)
    ys = float(np.float32(_checks.as_quant_scale(y_scale, "y_scale")))
    xz = int(_checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=-128, qmax=127))
    yz = int(_checks.as_quant_zero_point(y_zero_point, "y_zero_point", qmin=-128, qmax=127))
    sh, sw = _checks.check_pair(stride, "stride", low=1)
    dh, dw = _checks.check_pair(dilation, "dilation", low=1)
    if isinstance(padding, str):
        # TFLite's two modes; SAME (ComputePaddingHeightWidth) is refdet's "same": the odd pixel after
        _checks.check_choice(padding, "padding", ("VALID", "SAME"))
    pads = _conv.parse_padding(padding, (xa.shape[1], xa.shape[2]), (kh, kw), (sh, sw), (dh, dw))  # any case
    acc = conv2d_int(xa.transpose(0, 3, 1, 2), wa.transpose(0, 3, 1, 2), x_zero_point=xz,   # w_zero_point 0
                     stride=(sh, sw), padding=pads, dilation=(dh, dw), accumulator="int32")
    if bias is not None:
        b = _checks.as_int_array(bias, "bias", ndim=1)
        if b.shape[0] != o:
            raise ValueError(f"`bias` must have one value per output channel ({o}); got length {b.shape[0]}")
        _int32_array(b, "bias")
        acc = acc + b.astype(np.int64)[:, None, None]   # (O, 1, 1) against (N, O, OH, OW)
        _check_int32_acc(acc, "tflite_conv2d_int8 (accumulator + bias)")
    lo, hi = tflite_activation_range(activation, y_scale, yz)
    m = np.multiply(xs, ws, dtype=np.float64) / ys  # (O,) in double: float32 scales widened
    y = requantize(acc, m, yz, mode=mode, qmin=lo, qmax=hi, axis=1, out_dtype=np.int8)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))
