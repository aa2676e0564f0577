"""Transposed convolution: the layer pair (PyTorch's ``conv_transpose2d``) and the ONNX operator.

A transposed convolution is the adjoint of a convolution with respect to its input: every input pixel
scatters ``x[b, c, h, w] * w[c, f, i, j]`` onto output pixel ``(h * sh + i * dh - top,
w * sw + j * dw - left)``. Detectors use it to upsample (Mask R-CNN's mask head, CenterNet, FPN
variants, segmentation heads on top of a detector).

Geometry (per spatial axis)::

    full = (in - 1) * stride + dilation * (kernel - 1) + 1        # everything the scatter touches
    out  = full + output_padding - pad_begin - pad_end             # PyTorch and ONNX (explicit pads)

``output_padding`` adds rows/columns at the end that receive no scatter (only the bias); PyTorch
requires ``output_padding < max(stride, dilation)``.

Weights are ``(C, F / groups, KH, KW)`` (input channels first, as ``torch.nn.ConvTranspose2d`` and
ONNX ``ConvTranspose``); input channel ``c`` belongs to group ``c // (C / groups)`` and writes the
output channels ``g * F/groups ... (g + 1) * F/groups - 1`` of its group.

Implementation: the forward is one batched GEMM ``w^T @ x`` giving, for every input pixel, the
``F/g * KH * KW`` values it scatters, then :func:`refdet._conv.col2im_add` (the adjoint of the one
im2col, a loop over the KH*KW taps) adds them onto a zero canvas of size ``full (+ output padding)``,
and the padding is cut off. The backward is a convolution: ``dx = conv(dy_canvas, w)`` and
``dw = x (x) im2col(dy_canvas)`` through :class:`refdet._conv.Im2col`. Padding is refdet's grammar
``(top, bottom, left, right)``; the ONNX-facing :func:`conv_transpose` converts ONNX's ``pads``
(all begins, then all ends) with :func:`refdet._conv.onnx_pads_to_canonical`.

ONNX ``ConvTranspose`` (opset 22), :func:`conv_transpose`, adds ``auto_pad`` and ``output_shape``:
``total = full + output_padding - output_shape`` is split ``total // 2`` at the begin and the rest at
the end for ``SAME_UPPER``, the other way round for ``NOTSET`` and ``SAME_LOWER`` (the schema's
equations); ``SAME_*`` without ``output_shape`` targets ``in * stride``; explicit ``pads`` are ignored
when ``output_shape`` is given. An ``output_shape`` one row beyond the scatter (a negative total, as in
ONNX's ``test_convtranspose_output_shape``) appends zero rows (plus bias) at the end. Where the runtimes
differ (``runtime=``):

* onnxruntime (``core/providers/cpu/nn/conv_transpose_attributes.h``,
  ``ComputeTransposePadAndOutputShape``) follows the equations and also checks that a convolution of
  the output gives back the input size: ``output_padding`` must be ``< max(stride, dilation)`` and
  ``floor((out + pads - (dilation * (k - 1) + 1)) / stride) + 1 == in`` (so ``stride = 1`` with
  ``dilation = 2, output_padding = 1`` is refused; PyTorch accepts it). A negative total padding (an
  ``output_shape`` larger than reachable) is refused.
* onnx.reference (``onnx/reference/ops/op_conv_transpose.py``) does not compute pads for
  ``output_shape`` with ``auto_pad=NOTSET``: it keeps the given ``pads`` (zeros by default), so the
  output starts at the first scattered row, and its col2im refuses an ``output_shape`` smaller than
  the scatter (reproduced: refused); its grouped path slices
  the weights by output channels and adds ``B[0]`` to every group: it is right only for depthwise
  weights (``C == F``, one output channel per group) and then adds ``B[0]`` everywhere (reproduced);
  other grouped cases fail or are wrong there (refused).

1-D and 2-D are computed by the 2-D path (1-D as height 1); 3-D and more by a loop over the kernel
taps (each tap one GEMM and one strided add). Readable reference:
:func:`refdet.reference.onnx_ops.conv_transpose2d` (the scatter, pixel by pixel).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks, _conv
from refdet import conventions

__all__ = [
    "CONV_TRANSPOSE_RUNTIMES",
    "AUTO_PADS",
    "conv_transpose",
    "ConvTranspose2dCache",
    "ConvTranspose2dGrads",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]

CONV_TRANSPOSE_RUNTIMES = ("onnxruntime", "onnx_reference")
#: ONNX ``auto_pad`` values.
AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")

_ORT = "onnxruntime core/providers/cpu/nn/conv_transpose_attributes.h (ComputeTransposePadAndOutputShape)"
_REF = "onnx/reference/ops/op_conv_transpose.py"

conventions.register(
    "conv_transpose2d_forward",
    {"torchvision": {"output_padding_rule": "max_stride_dilation"},
     "onnx": {"output_padding_rule": "input_size_consistent"}},
    knobs={"output_padding_rule": conventions.choice(
        ("max_stride_dilation", "input_size_consistent"),
        "which output_padding is accepted: < max(stride, dilation) (PyTorch) or, in addition, such that a "
        "convolution of the output gives back the input size (onnxruntime)",
        source=f"ATen native/ConvUtils.h (check_shape_forward: output padding must be smaller than either stride "
               f"or dilation); {_ORT}")},
    doc="Same arithmetic in both; onnxruntime refuses output paddings PyTorch accepts when dilation > stride.",
)
conventions.register(
    "conv_transpose",
    {"onnx": {"runtime": "onnxruntime"}},
    knobs={"runtime": conventions.choice(
        CONV_TRANSPOSE_RUNTIMES, "onnxruntime (the schema's equations plus its input-size check) or onnx.reference "
        "(output_shape keeps the given pads; grouped bias B[0])", source=f"{_ORT}; {_REF}")},
    doc="ONNX ConvTranspose-22.",
)


def _dtype_of(*arrays):
    dts = [a.dtype for a in arrays if a is not None]
    return np.dtype(np.float32) if all(d == np.float32 for d in dts) else np.dtype(np.float64)


class ConvTranspose2dCache(NamedTuple):
    """What :func:`conv_transpose2d_backward` needs."""
    x: np.ndarray                 # (B, C, H, W), compute dtype
    w: np.ndarray                 # (C, F / groups, KH, KW)
    has_bias: bool
    stride: tuple                 # (sh, sw)
    padding: tuple                # (top, bottom, left, right)
    dilation: tuple               # (dh, dw)
    groups: int
    out_shape: tuple              # (B, F, Ho, Wo)


class ConvTranspose2dGrads(NamedTuple):
    dx: np.ndarray                # (B, C, H, W)
    dw: np.ndarray                # (C, F / groups, KH, KW)
    db: Optional[np.ndarray]      # (F,) or None


def _check_weight(w, x, groups):
    w = _checks.as_float_array(w, "w")
    if w.ndim != 4:
        raise ValueError(f"`w` must be 4-D with shape (C, F / groups, KH, KW); got shape {w.shape}")
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"`groups` must divide the input channels C = {c} of `x`; got groups={groups}")
    if w.shape[0] != c:
        raise ValueError(f"`w` must have shape (C, F / groups, KH, KW) with C = {c} (x's channels) first; got "
                         f"shape {w.shape}")
    return w


def _scatter_2d(x, w, b, stride, pads, dilation, groups, out_hw):
    """The forward arithmetic on validated arrays of one dtype: GEMM, col2im onto a canvas, crop."""
    bsz, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    g = groups
    cg = c // g
    f_out = fg * g
    (sh, sw), (dh, dw) = stride, dilation
    pt, pb, pl, pr = pads
    ho, wo = out_hw
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (wd - 1) * sw + dw * (kw - 1) + 1
    # a negative begin pad (onnx.reference's split of a negative total) puts zero rows before the scatter
    lead_h, lead_w = max(0, -pt), max(0, -pl)
    canvas = np.zeros((bsz, f_out, lead_h + max(full_h, pt + ho), lead_w + max(full_w, pl + wo)), dtype=x.dtype)
    scatter = canvas[:, :, lead_h:, lead_w:]                                          # a view: adds land in canvas
    if x.size and w.size:
        wt = w.reshape(g, cg, fg * kh * kw).transpose(0, 2, 1)                  # (g, F/g*KH*KW, Cg)
        xs = np.ascontiguousarray(x).reshape(bsz, g, cg, h * wd)
        per_row = bsz * f_out * kh * kw * wd * x.dtype.itemsize
        step = max(1, int(_conv.IM2COL_MAX_BYTES // max(per_row, 1)))
        for r0 in range(0, h, step):
            r1 = min(h, r0 + step)
            rows = r1 - r0
            part = xs.reshape(bsz, g, cg, h, wd)[:, :, :, r0:r1].reshape(bsz, g, cg, rows * wd)
            cols = np.matmul(wt, part)                                             # (B, g, F/g*KH*KW, rows*W)
            cols = cols.reshape(bsz, f_out, kh, kw, rows, wd)                      # channel g*F/g + f
            _conv.col2im_add(scatter, cols, r0, (sh, sw), (dh, dw))                # scatter, tap by tap
    y = canvas[:, :, lead_h + pt:lead_h + pt + ho, lead_w + pl:lead_w + pl + wo]
    y = np.ascontiguousarray(y)
    if b is not None:
        y += b.astype(x.dtype, copy=False)[:, None, None]                          # (F, 1, 1) broadcast
    return y


def _parse_layer_padding(padding):
    if isinstance(padding, str):
        raise ValueError(f"`padding` must be numbers for a transposed convolution (PyTorch has no padding mode "
                         f"string for it; ONNX auto_pad is conv_transpose(auto_pad=...)); got {padding!r}")
    return _conv.parse_padding(padding)


@conventions.documented("conv_transpose2d_forward")
def conv_transpose2d_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, *, stride=1,
                             padding=0, output_padding=0, groups: int = 1, dilation=1,
                             output_padding_rule: Optional[str] = None,
                             convention: Union[str, conventions.Profile] = "torchvision"
                             ) -> Tuple[np.ndarray, ConvTranspose2dCache]:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    ``y[n, g*F/g + f, i, j] = b[.] + sum_{c in group g, p, q} x[n, c, h, w] * w[c, f, p, q]`` over the
    ``(h, w, p, q)`` with ``h*sh + p*dh - top = i`` and ``w*sw + q*dw - left = j``.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    w : ndarray, shape (C, F / groups, KH, KW)
    b : ndarray, shape (F,), or None
    stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)) or (top, bottom, left, right)
        Cropped from the full output (refdet's padding grammar; a flat 4-tuple is *not* ONNX order).
    output_padding : int or (int, int)
        Extra rows/columns at the bottom/right, each ``< max(stride, dilation)``.
    groups : int
        Divides C and F.
    output_padding_rule : optional
        ``"input_size_consistent"`` also refuses what onnxruntime refuses (module docstring).

    Returns
    -------
    y : ndarray, shape (B, F, Ho, Wo)
        ``Ho = (H - 1) * sh - top - bottom + dh * (KH - 1) + output_padding_h + 1``, likewise ``Wo``.
    cache : ConvTranspose2dCache

    Notes
    -----
    float64 results are the oracle; float32 agree with PyTorch to a few ulp of the sum of ``|terms|``
    (a GEMM's summation order is not defined). Readable reference:
    :func:`refdet.reference.onnx_ops.conv_transpose2d`.
    """
    rule = conventions.resolve("conv_transpose2d_forward", convention,
                               output_padding_rule=output_padding_rule).output_padding_rule
    x = _checks.as_nchw(x, "x")
    groups = _checks.check_int(groups, "groups", low=1)
    w = _check_weight(w, x, groups)
    f_out = w.shape[1] * groups
    b = _checks.check_optional_vector(b, "b", f_out)
    sh, sw = _checks.check_pair(stride, "stride", low=1)
    dh, dw = _checks.check_pair(dilation, "dilation", low=1)
    oph, opw = _checks.check_pair(output_padding, "output_padding", low=0)
    pads = _parse_layer_padding(padding)
    dt = _dtype_of(x, w, b)
    x, w = x.astype(dt, copy=False), np.ascontiguousarray(w.astype(dt, copy=False))
    bsz, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    ho, wo = _out_size_2d((h, wd), (kh, kw), (sh, sw), (dh, dw), pads, (oph, opw), rule, "output_padding")
    _checks.check_allocation(bsz * f_out * ((h - 1) * sh + dh * (kh - 1) + 1 + oph) * ((wd - 1) * sw + dw * (kw - 1) + 1 + opw),
                             dt.itemsize, "the transposed convolution's full output grid",
                             name="stride` and `dilation", keyword=False)
    y = _scatter_2d(x, w, b, (sh, sw), pads, (dh, dw), groups, (ho, wo))
    return y, ConvTranspose2dCache(x, w, b is not None, (sh, sw), pads, (dh, dw), groups, y.shape)


def _out_size_2d(in_hw, k_hw, s_hw, d_hw, pads, op_hw, rule, op_name):
    out = []
    for axis, (n, k, s, d, (p0, p1), op) in enumerate(zip(in_hw, k_hw, s_hw, d_hw, ((pads[0], pads[1]),
                                                                                     (pads[2], pads[3])), op_hw)):
        if op >= max(s, d):
            raise ValueError(f"`{op_name}` must be smaller than max(stride, dilation) = {max(s, d)} along "
                             f"{'HW'[axis]}; got {op}")
        full = (n - 1) * s + d * (k - 1) + 1
        o = full + op - p0 - p1
        if o < 1:
            raise ValueError(f"`padding` {p0} + {p1} leaves no output: the transposed convolution's output is "
                             f"{full + op} along {'HW'[axis]} (PyTorch: 'output size is too small')")
        if rule == "input_size_consistent" and n > 0 and (o + p0 + p1 - (d * (k - 1) + 1)) // s + 1 != n:
            raise ValueError(f"`{op_name}` {op} along {'HW'[axis]}: onnxruntime refuses it (a convolution of the "
                             f"output would give {(o + p0 + p1 - (d * (k - 1) + 1)) // s + 1} rows, not the input's "
                             f"{n}; 'output_padding may be too large for stride')")
        out.append(o)
    return tuple(out)


def conv_transpose2d_backward(dy: np.ndarray, cache: ConvTranspose2dCache) -> ConvTranspose2dGrads:
    """Gradients of :func:`conv_transpose2d_forward`.

    With ``dY`` the upstream gradient placed back on the forward's canvas (zeros over the cropped
    padding), ``dcols = im2col(dY)`` (the same windows the forward scattered through):
    ``dx = w @ dcols`` (a convolution of ``dY`` with ``w``), ``dw = x (x) dcols`` summed over the
    batch and the pixels, ``db = dy.sum((0, 2, 3))``.

    Returns
    -------
    ConvTranspose2dGrads
        ``dx`` (B, C, H, W), ``dw`` (C, F / groups, KH, KW), ``db`` (F,) or None.
    """
    if not isinstance(cache, ConvTranspose2dCache):
        raise TypeError(f"`cache` must be the ConvTranspose2dCache returned by conv_transpose2d_forward; got "
                        f"{type(cache).__name__}")
    x, w = cache.x, cache.w
    dt = x.dtype
    dy = _checks.as_nchw(dy, "dy", finite=False)
    if dy.shape != cache.out_shape:
        raise ValueError(f"`dy` must have the output's shape {cache.out_shape}; got {dy.shape}")
    dy = np.ascontiguousarray(dy.astype(dt, copy=False))
    bsz, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    g = cache.groups
    cg = c // g
    f_out = fg * g
    (sh, sw), (dh, dw) = cache.stride, cache.dilation
    pt, pb, pl, pr = cache.padding
    ho, wo = dy.shape[2:]
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (wd - 1) * sw + dw * (kw - 1) + 1
    # the canvas the forward scattered onto, cut to the `full` rows/columns the scatter reaches
    canvas = np.zeros((bsz, f_out, full_h, full_w), dtype=dt)
    r_lo, r_hi = max(pt, 0), min(pt + ho, full_h)
    c_lo, c_hi = max(pl, 0), min(pl + wo, full_w)
    if r_hi > r_lo and c_hi > c_lo:
        canvas[:, :, r_lo:r_hi, c_lo:c_hi] = dy[:, :, r_lo - pt:r_hi - pt, c_lo - pl:c_hi - pl]
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    dx = np.zeros((bsz, c, h, wd), dtype=dt)
    dwg = np.zeros((g, cg, fg * kh * kw), dtype=dt)
    if x.size and w.size and dy.size:
        plan = _conv.Im2col(canvas, (kh, kw), stride=(sh, sw), dilation=(dh, dw), groups=g, whole_rows=False)
        wg = w.reshape(g, cg, fg * kh * kw)                                        # (g, Cg, F/g*KH*KW)
        xs = x.reshape(bsz, g, cg, h, wd)
        for r0, r1 in plan.chunks():
            rows = r1 - r0
            cols = plan.cols(r0, r1)                                               # (B, g, F/g*KH*KW, rows*W)
            dx[:, :, r0:r1, :] = np.matmul(wg, cols).reshape(bsz, c, rows, wd)
            xr = np.ascontiguousarray(xs[:, :, :, r0:r1]).reshape(bsz, g, cg, rows * wd)
            part = np.matmul(xr, cols.transpose(0, 1, 3, 2))                       # (B, g, Cg, F/g*KH*KW)
            dwg += part.sum(axis=0)
    return ConvTranspose2dGrads(dx, dwg.reshape(w.shape), db)


# ---------------------------------------------------------------------------------------------------
# ONNX ConvTranspose (N-D)
# ---------------------------------------------------------------------------------------------------

def _ints(v, n, name, default, low=None):
    if v is None:
        return [default] * n
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
        raise TypeError(f"`{name}` must be a list of {n} ints; got {type(v).__name__} {v!r}")
    if len(v) != n:
        raise ValueError(f"`{name}` must have {n} values (one per spatial axis); got {len(v)}")
    return [_checks.check_int(e, f"{name}[{i}]", low=low) for i, e in enumerate(v)]


def _scatter_nd(x, w, stride, dilation, groups, canvas_shape, lead):
    """N-D scatter by kernel taps: canvas[b, f, lead + o] += sum_c x[b, c, i] w[c, f, tap] at o = i*s + tap*d."""
    bsz, c = x.shape[:2]
    _, fg = w.shape[:2]
    g = groups
    cg = c // g
    sp = x.shape[2:]
    canvas = np.zeros((bsz, fg * g) + tuple(canvas_shape), dtype=x.dtype)
    xs = x.reshape((bsz, g, cg, -1))
    for tap in itertools.product(*[range(k) for k in w.shape[2:]]):
        wt = w[(slice(None), slice(None)) + tap].reshape(g, cg, fg).transpose(0, 2, 1)     # (g, F/g, Cg)
        contrib = np.matmul(wt, xs).reshape((bsz, fg * g) + sp)                            # (B, F, *in)
        sl = tuple(slice(o + t * d, o + t * d + (n - 1) * s + 1, s)
                   for o, t, d, n, s in zip(lead, tap, dilation, sp, stride))
        canvas[(slice(None), slice(None)) + sl] += contrib
    return canvas


@conventions.documented("conv_transpose")
def conv_transpose(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, *, auto_pad: str = "NOTSET",
                   dilations: Optional[Sequence[int]] = None, group: int = 1,
                   kernel_shape: Optional[Sequence[int]] = None, output_padding: Optional[Sequence[int]] = None,
                   output_shape: Optional[Sequence[int]] = None, pads: Optional[Sequence[int]] = None,
                   strides: Optional[Sequence[int]] = None, convention: Union[str, conventions.Profile] = "onnx",
                   runtime: Optional[str] = None) -> np.ndarray:
    """ONNX ``ConvTranspose`` (opsets 1-22), any number of spatial axes, every attribute.

    Parameters
    ----------
    x : ndarray, shape (B, C, D1, ..., Dn)
    w : ndarray, shape (C, F / group, k1, ..., kn)
    b : ndarray, shape (F,), or None
    auto_pad : {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
    dilations, strides, output_padding : list of n ints, optional (defaults 1, 1, 0)
    group : int
    kernel_shape : list of n ints, optional
        Must equal ``w.shape[2:]`` when given.
    output_shape : list of n ints, optional
        The spatial output size; the pads are then computed (explicit ``pads`` ignored).
    pads : list of 2n ints, optional
        ONNX order: ``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``; with ``auto_pad="NOTSET"``.
    convention, runtime
        ``"onnxruntime"`` (default) or ``"onnx_reference"`` (module docstring).

    Returns
    -------
    ndarray, shape (B, F, O1, ..., On), x's dtype (float16 computed in float32).
    """
    runtime = conventions.resolve("conv_transpose", convention, runtime=runtime).runtime
    xa = _checks.as_array(x, "x")
    if xa.dtype.kind != "f":
        raise TypeError(f"`x` must be float16/float32/float64 (the ONNX ConvTranspose types); got dtype {xa.dtype}")
    if xa.ndim < 3:
        raise ValueError(f"`x` must be (B, C, D1, ..., Dn) with n >= 1 spatial axes; got shape {xa.shape}")
    out_dtype = xa.dtype
    nd = xa.ndim - 2
    group = _checks.check_int(group, "group", low=1)
    wa = _checks.as_float_array(w, "w")
    if wa.ndim != xa.ndim or wa.shape[0] != xa.shape[1]:
        raise ValueError(f"`w` must have shape (C, F / group, k1, ..., k{nd}) with C = {xa.shape[1]}; got {wa.shape}")
    if xa.shape[1] % group:
        raise ValueError(f"`group` must divide the input channels C = {xa.shape[1]}; got {group}")
    f_out = wa.shape[1] * group
    ba = _checks.check_optional_vector(b, "b", f_out)
    auto = _checks.check_choice(auto_pad if isinstance(auto_pad, str) else str(auto_pad), "auto_pad", AUTO_PADS)
    ks = list(wa.shape[2:])
    if kernel_shape is not None and _ints(kernel_shape, nd, "kernel_shape", 1, low=1) != ks:
        raise ValueError(f"`kernel_shape` must equal w.shape[2:] = {ks}; got {list(kernel_shape)}")
    st = _ints(strides, nd, "strides", 1, low=1)
    dl = _ints(dilations, nd, "dilations", 1, low=1)
    op = _ints(output_padding, nd, "output_padding", 0, low=0)
    sp = list(xa.shape[2:])
    full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(sp, st, dl, ks)]
    # the scatter fills the full grid before cropping: refuse one no input needs, before allocating it
    _checks.check_allocation(int(np.prod([xa.shape[0], f_out] + [f + o for f, o in zip(full, op)], dtype=object)), 8,
                             "the transposed convolution's full output grid", name="strides` and `dilations",
                             keyword=False)
    for i in range(nd):
        if op[i] >= max(st[i], dl[i]):
            raise ValueError(f"`output_padding`[{i}] = {op[i]} must be smaller than max(stride, dilation) = "
                             f"{max(st[i], dl[i])} (onnxruntime ConvTranspose; PyTorch)")
    if output_shape is not None:
        osh = _ints(output_shape, nd, "output_shape", 1, low=0)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        osh = [n * s for n, s in zip(sp, st)]
    else:
        osh = None
    if osh is not None and runtime == "onnx_reference" and auto == "NOTSET":
        # onnx.reference keeps the given pads (zeros by default) and output_shape as they are; its col2im then
        # requires a convolution of that output to give back the input size
        p = [0] * (2 * nd) if pads is None else _ints(pads, 2 * nd, "pads", 0, low=0)
        begin, end = p[:nd], p[nd:]
        for i in range(nd):
            back = (osh[i] + begin[i] + end[i] - (dl[i] * (ks[i] - 1) + 1)) // st[i] + 1
            if back != sp[i]:
                raise ValueError(f"`output_shape` {osh} with pads {p}: onnx.reference's ConvTranspose ignores the "
                                 f"spec's computed pads and its col2im fails (a convolution of the output gives "
                                 f"{back}, "
                                 f"not {sp[i]}); runtime='onnxruntime' computes the pads")
        out = list(osh)
    elif osh is not None:
        total = [f + o - t for f, o, t in zip(full, op, osh)]
        if auto == "SAME_UPPER":
            begin, end = [t // 2 for t in total], [t - t // 2 for t in total]
        else:                                   # NOTSET and SAME_LOWER: the odd pixel at the begin
            begin, end = [t - t // 2 for t in total], [t // 2 for t in total]
        if runtime == "onnxruntime":
            if output_shape is None and min(total) < 0:
                # SAME_* out of reach (in * stride > full + output_padding): onnxruntime clamps the total padding at
                # 0 on that axis, so the output is full + output_padding, not in * stride
                osh = [o if t >= 0 else f + p_ for o, t, f, p_ in zip(osh, total, full, op)]
                begin = [b if t >= 0 else 0 for b, t in zip(begin, total)]
                end = [e if t >= 0 else 0 for e, t in zip(end, total)]
            else:
                # an explicit output_shape beyond the scatter appends rows at the end, like output_padding
                begin = [b if t >= 0 else 0 for b, t in zip(begin, total)]
                end = [e if t >= 0 else t for e, t in zip(end, total)]
        # onnx.reference splits a negative total with Python's floor division: a negative begin shifts the output
        out = list(osh)
    else:
        p = [0] * (2 * nd) if (pads is None or auto == "VALID") else _ints(pads, 2 * nd, "pads", 0, low=0)
        begin, end = p[:nd], p[nd:]
        out = [f + o - p0 - p1 for f, o, p0, p1 in zip(full, op, begin, end)]
        if min(out) < 0:
            raise ValueError(f"`pads` {p} are larger than the output {[f + o for f, o in zip(full, op)]}")
    if runtime == "onnxruntime" and min(out) <= 0:
        raise ValueError(f"`pads`/`output_shape` give an output of size {out}: onnxruntime refuses an output dimension "
                         f"<= 0 ('Computed output dimension is <= 0'); onnx.reference returns an empty tensor")
    for i in range(nd):
        # both runtimes check that a convolution of the output gives back the input size (onnxruntime's
        # ConvTranspose shape check, with pads clamped at 0; onnx.reference's col2im, with the pads as split)
        pb_, pe_ = (max(begin[i], 0), max(end[i], 0)) if runtime == "onnxruntime" else (begin[i], end[i])
        back = (out[i] + pb_ + pe_ - (dl[i] * (ks[i] - 1) + 1)) // st[i] + 1
        if sp[i] > 0 and back != sp[i]:
            who = "onnxruntime refuses it" if runtime == "onnxruntime" else "onnx.reference's col2im refuses it"
            raise ValueError(f"`output_padding`/`output_shape` along spatial axis {i}: {who} (a convolution of the "
                             f"output gives {back}, not the input size {sp[i]})")
    ref_bias_quirk = False
    if runtime == "onnx_reference" and group > 1:
        if not (wa.shape[1] == 1 and f_out == xa.shape[1]):
            raise ValueError(f"`group` {group} with {xa.shape[1]} input and {f_out} output channels: onnx.reference's "
                             f"grouped ConvTranspose slices the weights by output channels and fails or is wrong "
                             f"unless every group has one input and one output channel (runtime='onnxruntime')")
        ref_bias_quirk = ba is not None               # it adds B[0] to every group's single channel
    dt = np.dtype(np.float64) if np.float64 in (xa.dtype, wa.dtype) or (ba is not None and ba.dtype == np.float64) \
        else np.dtype(np.float32)
    xw = xa.astype(dt)
    ww = np.ascontiguousarray(wa.astype(dt))
    bias = None if ba is None else ba.astype(dt)
    if ref_bias_quirk:
        bias = np.full(f_out, bias[0], dtype=dt)
    if nd <= 2:
        x4 = xw.reshape(xw.shape[:2] + (1,) * (2 - nd) + xw.shape[2:])
        w4 = ww.reshape(ww.shape[:2] + (1,) * (2 - nd) + ww.shape[2:])
        s2, d2 = [1] * (2 - nd) + st, [1] * (2 - nd) + dl
        b2, e2, o2 = [0] * (2 - nd) + begin, [0] * (2 - nd) + end, [1] * (2 - nd) + out
        y = _scatter_2d(x4, w4, bias, tuple(s2), (b2[0], e2[0], b2[1], e2[1]), tuple(d2), group, tuple(o2))
        y = y.reshape(y.shape[:2] + tuple(out))
    else:
        lead = [max(0, -b0) for b0 in begin]
        canvas_shape = [ld + max(f, b0 + o) for ld, f, b0, o in zip(lead, full, begin, out)]
        canvas = _scatter_nd(xw, ww, st, dl, group, canvas_shape, lead)
        y = canvas[(slice(None), slice(None)) + tuple(slice(ld + b0, ld + b0 + o)
                                                      for ld, b0, o in zip(lead, begin, out))].copy()
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * nd)
    return y.astype(out_dtype)
