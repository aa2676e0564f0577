"""The layers a detector is built from, as forward/backward pairs on NCHW arrays: convolution,
ReLU, sigmoid, max pooling, group normalisation (nearest-neighbour resizing lives in
:mod:`refdet.resize` and is re-exported here).

Every layer is a pair::

    y, cache = conv2d_forward(x, w, b, stride=1, padding=1)
    grads = conv2d_backward(dy, cache)          # Conv2dGrads(dx, dw, db)

``*_forward`` returns the output and a NamedTuple cache holding what the backward pass needs;
``*_backward(dy, cache)`` returns a NamedTuple of gradients named after the forward's inputs
(``dx`` for ``x``, ``dw`` for ``w``, ...), the CS231n ``layers.py`` contract. No hidden state.

Layout: feature maps are ``(B, C, H, W)`` (NCHW, PyTorch's layout); convolution weights are
``(F, C / groups, KH, KW)``. Everything follows PyTorch's definitions (cross-correlation, not
flipped convolution; ``floor`` output sizes) so that results can be compared with
``torch.nn.functional`` directly. Padding is refdet's one grammar (:func:`refdet._conv.parse_padding`:
an int, ``(ph, pw)``, ``((top, bottom), (left, right))``, ``(top, bottom, left, right)`` or
``"same"``/``"same_lower"``/``"valid"``) and every convolution and pooling window goes through the
one im2col of :mod:`refdet._conv`.

Memory layout never changes a bit: arrays are brought to C order where a reduction order would
otherwise follow the layout (a GEMM, a sum over axes), so C-ordered, Fortran-ordered, strided and
read-only inputs with the same values give bit-identical results.

Dtypes: float64 in -> float64 math (the oracle); float32 in -> float32 math; float16 is computed in
float32; integer inputs become float64. When arguments mix float32 and float64 the float64 wins
(PyTorch would refuse the mix).

What is bit-exact against PyTorch 2.14 (CPU) and what is not:

* ``relu``, ``upsample_nearest`` (forward and backward, float32 and float64), ``max_pool2d`` (values,
  indices, ties, gradients): bit-exact.
* ``conv2d``, ``group_norm``, ``sigmoid``: equal up to the summation order of a GEMM / of the moments and
  the ``exp`` implementation (float64 ~1e-12 relative, float32 a few ulp per summed term).

Readable references (loops and formulas, held equal to these by ``tests/test_reference_conv.py``):
:mod:`refdet.reference.conv`.

Framework differences are convention profiles (``conventions.describe("max_pool2d")``,
``conventions.describe("upsample_nearest")``): Caffe's rounded-up pooling output, ONNX Resize's
coordinate and rounding modes.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks, _conv
from refdet import conventions
from refdet.resize import (UpsampleCache, UpsampleGrads, onnx_resize_nearest_source_index,  # re-exported
                           upsample_nearest_backward, upsample_nearest_forward, upsample_nearest_source_index)

__all__ = [
    "Conv2dCache",
    "Conv2dGrads",
    "conv2d_forward",
    "conv2d_backward",
    "ReluCache",
    "ReluGrads",
    "relu_forward",
    "relu_backward",
    "SigmoidCache",
    "SigmoidGrads",
    "sigmoid_forward",
    "sigmoid_backward",
    # from refdet.resize (imported from here before the split; kept importable from both)
    "UpsampleCache",
    "UpsampleGrads",
    "upsample_nearest_source_index",
    "onnx_resize_nearest_source_index",
    "upsample_nearest_forward",
    "upsample_nearest_backward",
    "MaxPool2dCache",
    "MaxPool2dGrads",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "GroupNormCache",
    "GroupNormGrads",
    "group_norm_forward",
    "group_norm_backward",
]

Pair = Union[int, Sequence[int]]
Padding = Union[int, Sequence, str]

conventions.register(
    "max_pool2d",
    {
        "torchvision": {"ceil_mode": False},
        "detectron2": {"ceil_mode": False},
        "mmdet": {"ceil_mode": False},
        "caffe": {"ceil_mode": True},
        "onnx": {"ceil_mode": False},
        "paper": {"ceil_mode": False},
    },
    knobs={"ceil_mode": conventions.flag(
        "round the output size up (Caffe's PoolingLayer always does) instead of down",
        source="Caffe src/caffe/layers/pooling_layer.cpp Reshape (ceil); PyTorch/ONNX MaxPool ceil_mode=0")},
    doc="PyTorch/ONNX MaxPool default ceil_mode=False; Caffe's PoolingLayer computes "
        "ceil((H + 2p - k) / s) + 1 (SSD and py-faster-rcnn VGG pools), clipped so the last window starts "
        "inside the image or its left padding. TF pools with 'SAME'/'VALID' padding strings (not modelled: "
        "the op raises for convention='tf').",
)


def _c(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``a`` in C order (itself when it already is): the boundary where a layout would otherwise
    decide a summation order."""
    return None if a is None else np.ascontiguousarray(a)


def _dtype_of(*arrays):
    """The dtype to compute in: float32 only if every array works in float32, else float64."""
    dts = [a.dtype for a in arrays if a is not None]
    return np.dtype(np.float32) if all(d == np.float32 for d in dts) else np.dtype(np.float64)


# ---------------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------------

class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs: the inputs (unpadded) and the geometry."""
    x: np.ndarray                 # (B, C, H, W), compute dtype
    w: np.ndarray                 # (F, C / groups, KH, KW), compute dtype
    has_bias: bool
    stride: tuple                 # (sh, sw)
    padding: tuple                # (top, bottom, left, right)
    dilation: tuple               # (dh, dw)
    groups: int
    out_shape: tuple              # (B, F, Ho, Wo)


class Conv2dGrads(NamedTuple):
    dx: Optional[np.ndarray]      # (B, C, H, W), or None with compute_dx=False
    dw: np.ndarray                # (F, C / groups, KH, KW)
    db: Optional[np.ndarray]      # (F,) or None when the forward had no bias


def _conv2d_core(x, w, b, stride, pads, dilation, groups, ho, wo):
    """The arithmetic of :func:`conv2d_forward` on validated arrays of one dtype (no checks)."""
    bsz = x.shape[0]
    f_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    dt = x.dtype
    g = groups
    wg = w.reshape(g, f_out // g, -1)                                      # (g, F/g, Cg*KH*KW)
    y = np.empty((bsz, f_out, ho, wo), dtype=dt)
    if y.size:
        plan = _conv.Im2col(x, (kh, kw), stride=stride, pads=pads, dilation=dilation, groups=g)
        chunks = plan.chunks()
        for r0, r1 in chunks:
            out = np.matmul(wg, plan.cols(r0, r1))                        # (B, g, F/g, rows*width)
            out = out.reshape(bsz, f_out, r1 - r0, plan.width)            # (B, F, rows, width)
            if len(chunks) == 1:
                # a view without the width - Wo junk columns of the whole-row layout (no copy)
                y = out if plan.width == wo else out[:, :, :, :wo]
            else:
                y[:, :, r0:r1, :] = out[:, :, :, :wo]
    if b is not None:
        y += b[:, None, None]             # (F, 1, 1) broadcast; b's dtype is dt or float32 in float64 (exact)
    return y


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, *, stride: Pair = 1,
                   padding: Padding = 0, dilation: Pair = 1, groups: int = 1) -> Tuple[np.ndarray, Conv2dCache]:
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    ``y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xpad[n, g*Cg + c, i*sh + p*dh, j*sw + q*dw]``
    where ``g = f // (F / groups)`` is the group of output channel ``f``, ``Cg = C / groups`` and
    ``xpad`` is ``x`` zero-padded by ``padding`` on each side.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    w : ndarray, shape (F, C / groups, KH, KW)
    b : ndarray, shape (F,), or None
    stride, dilation : int or (int, int)
        Per (H, W). ``stride >= 1``, ``dilation >= 1``.
    padding : int, (int, int), ((top, bottom), (left, right)), (top, bottom, left, right) or str
        Zero padding, ``>= 0`` (refdet's padding grammar, :func:`refdet._conv.parse_padding`; a flat
        4-tuple is **not** ONNX's ``pads`` order). ``"valid"`` is none; ``"same"`` is TensorFlow's ``SAME`` (= ONNX
        ``auto_pad="SAME_UPPER"``, = PyTorch ``padding="same"`` at stride 1): output ``ceil(H / sh)``,
        the odd padding pixel at the bottom/right, so a strided TF convolution is **not** the
        symmetric-padding PyTorch one; ``"same_lower"`` puts it at the top/left (ONNX ``SAME_LOWER``).
    groups : int
        Must divide both C and F; each group of ``F / groups`` filters sees ``C / groups`` channels.

    Returns
    -------
    y : ndarray, shape (B, F, Ho, Wo)
        ``Ho = floor((H + top + bottom - dh*(KH - 1) - 1) / sh) + 1``, likewise ``Wo``.
    cache : Conv2dCache

    Notes
    -----
    im2col: a strided view of the padded input is copied into the matrix ``(B, groups, Cg*KH*KW,
    Ho*Wo)`` and multiplied by the weights ``(groups, F/groups, Cg*KH*KW)`` in one batched BLAS
    matmul. When that matrix would exceed ``IM2COL_MAX_BYTES`` (256 MiB) the output rows are done in
    chunks. float32 results agree with PyTorch to float32 rounding (the summation order of a GEMM is
    not defined, so bit equality is not promised); float64 results are the oracle answer.
    NaN/inf in ``x``, ``w`` or ``b`` are rejected (``0 * inf`` would poison every window).

    Readable reference: :func:`refdet.reference.conv.conv2d` (the sum above as a loop over output
    positions); they agree within a few ulp of the sum of ``|terms|`` (summation order differs).
    """
    x = _checks.as_nchw(x)                       # its errors name `x` (the default)
    groups = _checks.check_int(groups, "groups", low=1)
    w = _checks.check_conv_weight(w, x, groups, "w", "x")
    w = _checks.as_float_array(w, "w")
    f_out = w.shape[0]
    b = _checks.check_optional_vector(b, "b", f_out)
    sh, sw = _checks.check_pair(stride, "stride", low=1)
    dh, dw = _checks.check_pair(dilation, "dilation", low=1)
    dt = _dtype_of(x, w, b)
    # w in C order fixes the GEMM's operand layout; x needs none: the im2col copies it into a C-ordered
    # matrix whatever its layout (a C copy here would only add a pass over a strided conv output)
    x, w = np.asarray(x, dtype=dt), np.ascontiguousarray(w, dtype=dt)
    bsz, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    pads = _conv.parse_padding(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    pt, pb, pl, pr = pads
    ho = _conv.output_size(h, kh, sh, pt, pb, dh)
    wo = _conv.output_size(wd, kw, sw, pl, pr, dw)
    _conv.check_sizes(x.shape, pads, w.shape[0], ho, wo, x.dtype.itemsize)

    y = _conv2d_core(x, w, b, (sh, sw), pads, (dh, dw), groups, ho, wo)
    cache = Conv2dCache(x, w, b is not None, (sh, sw), pads, (dh, dw), groups, y.shape)
    return y, cache


def conv2d_backward(dy: np.ndarray, cache: Conv2dCache, *, compute_dx: bool = True) -> Conv2dGrads:
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : ndarray, shape (B, F, Ho, Wo)
        Gradient of the loss with respect to ``y``.
    cache : Conv2dCache
    compute_dx : bool
        False skips the input gradient (``dx`` is then None), as autograd does for an input that does
        not require a gradient (a network's first layer reading the image).

    Returns
    -------
    Conv2dGrads
        ``dx`` (B, C, H, W), ``dw`` (F, C / groups, KH, KW), ``db`` (F,) or None.

    Notes
    -----
    With ``cols`` the im2col matrix of the forward pass (recomputed from the cached ``x``):
    ``dw = dy @ cols^T`` summed over the batch, ``db = dy.sum((0, 2, 3))`` and ``dcols = w^T @ dy``.
    ``dx`` is col2im of ``dcols``: each of the KH*KW kernel taps adds its slice of ``dcols`` into the
    strided positions of the padded input it read (a loop over the taps, never over pixels); the
    padding is then cut off. At stride 1 with one group ``dx`` is computed instead as the convolution
    of ``dy`` with the flipped kernels (the same sums in another order).

    Readable reference: :func:`refdet.reference.conv.conv2d_backward` (the chain rule as loops).
    """
    if not isinstance(cache, Conv2dCache):
        raise TypeError(f"`cache` must be the Conv2dCache returned by conv2d_forward; got {type(cache).__name__}")
    compute_dx = _checks.check_bool(compute_dx, "compute_dx")
    x, w = cache.x, cache.w
    dt = x.dtype
    dy = _checks.as_nchw(dy, "dy", finite=False)  # a NaN upstream gradient propagates (visibly), as in autograd
    if dy.shape != cache.out_shape:
        raise ValueError(f"`dy` must have the output's shape {cache.out_shape}; got {dy.shape}")
    dy = np.ascontiguousarray(dy, dtype=dt)  # C order: db's sum and the GEMMs must not follow dy's layout
    (sh, sw), (dh, dw), g = cache.stride, cache.dilation, cache.groups
    pt, pb, pl, pr = cache.padding
    bsz, c, h, wd = x.shape
    f_out, cg, kh, kw = w.shape
    fg = f_out // g
    ho, wo = dy.shape[2], dy.shape[3]
    wg = w.reshape(g, fg, cg * kh * kw)                                    # (g, F/g, Cg*KH*KW)
    wgt = wg.transpose(0, 2, 1)                                            # (g, Cg*KH*KW, F/g)
    dwg = np.zeros((g, fg, cg * kh * kw), dtype=dt)
    hp, wp = h + pt + pb, wd + pl + pr
    # Stride 1, one group: dx is itself a convolution, of dy zero-padded by (KH - 1)*dh - top
    # (above) and (KH - 1)*dh - bottom (below) (likewise for W) with the kernels flipped and their
    # in/out channels swapped: dx[u] = sum_i w[i] dy[u + top - i*dh]. One im2col + GEMM replaces
    # the GEMM + col2im scatter below (faster for small maps); used when those paddings are >= 0.
    full = ((kh - 1) * dh - pt, (kh - 1) * dh - pb, (kw - 1) * dw - pl, (kw - 1) * dw - pr)
    as_conv = g == 1 and (sh, sw) == (1, 1) and min(full) >= 0 and dy.size > 0 and x.size > 0
    dxp = np.zeros((bsz, c, hp, wp), dtype=dt) if not as_conv and compute_dx else None
    if as_conv:
        # dw from the same whole-row im2col as the forward; dy gets zeros in the Wp - Wo extra columns
        plan = _conv.Im2col(x, (kh, kw), pads=cache.padding, dilation=(dh, dw), whole_rows=True)
        wp = plan.width
        for r0, r1 in plan.chunks():
            rows = r1 - r0
            dye = np.zeros((bsz, f_out, rows, wp), dtype=dt)
            dye[:, :, :, :wo] = dy[:, :, r0:r1, :]
            cols = plan.cols(r0, r1)                                      # (B, 1, C*KH*KW, rows*Wp)
            part = np.matmul(dye.reshape(bsz, 1, f_out, rows * wp), cols.transpose(0, 1, 3, 2))
            dwg += part[0] if bsz == 1 else part.sum(axis=0)
            del cols, part, dye
    elif dy.size and x.size:
        plan = _conv.Im2col(x, (kh, kw), stride=(sh, sw), pads=cache.padding, dilation=(dh, dw), groups=g,
                            whole_rows=False)
        for r0, r1 in plan.chunks():
            rows = r1 - r0
            dyc = dy[:, :, r0:r1, :].reshape(bsz, g, fg, rows * wo)         # (B, g, F/g, rows*Wo)
            cols = plan.cols(r0, r1)                                      # (B, g, Cg*KH*KW, rows*Wo)
            part = np.matmul(dyc, cols.transpose(0, 1, 3, 2))             # (B, g, F/g, Cg*KH*KW)
            dwg += part[0] if bsz == 1 else part.sum(axis=0)
            del cols, part
            if not compute_dx:
                continue
            dcols = np.matmul(wgt, dyc)                                   # (B, g, Cg*KH*KW, rows*Wo)
            dcols = dcols.reshape(bsz, c, kh, kw, rows, wo)
            # col2im: tap (i, j) read xp[:, :, (r0 + r)*sh + i*dh, q*sw + j*dw]; add its gradient back.
            _conv.col2im_add(dxp, dcols, r0, (sh, sw), (dh, dw))
            del dcols
    if not compute_dx:
        dx = None
    elif as_conv:
        w_flip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, KH, KW)
        dx = np.ascontiguousarray(_conv2d_core(dy, w_flip, None, (1, 1), full, (dh, dw), 1, h, wd))
    elif any(cache.padding):
        dx = np.ascontiguousarray(dxp[:, :, pt:pt + h, pl:pl + wd])
    else:
        dx = dxp
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return Conv2dGrads(dx, dwg.reshape(w.shape), db)


# ---------------------------------------------------------------------------------------------------
# ReLU and sigmoid (any shape)
# ---------------------------------------------------------------------------------------------------

class ReluCache(NamedTuple):
    positive: np.ndarray          # bool, x > 0 (same shape as x)
    dtype: np.dtype


class ReluGrads(NamedTuple):
    dx: np.ndarray


def relu_forward(x: np.ndarray) -> Tuple[np.ndarray, ReluCache]:
    """``y = max(x, 0)``, any shape.

    Returns
    -------
    y : ndarray, same shape as ``x``
    cache : ReluCache

    Notes
    -----
    The derivative at the kink is taken as **ReLU'(0) = 0** (``dx = dy * (x > 0)``), the choice
    PyTorch's ``threshold_backward`` makes. ``+-inf`` are accepted (``relu(inf) = inf``); NaN is
    rejected. Readable reference: :func:`refdet.reference.conv.relu`.
    """
    x = _checks.as_float_array(x, "x", finite=False)
    _checks.check_finite(x, "x", allow_inf=True)
    pos = x > 0
    y = np.maximum(x, x.dtype.type(0))  # relu(-0.0) = +0.0 here; torch.relu returns -0.0
    return y, ReluCache(pos, x.dtype)


def relu_backward(dy: np.ndarray, cache: ReluCache) -> ReluGrads:
    """``dx = dy * (x > 0)``: the gradient passes where the input was strictly positive (ReLU'(0) = 0).

    Readable reference: :func:`refdet.reference.conv.relu_backward`.
    """
    if not isinstance(cache, ReluCache):
        raise TypeError(f"`cache` must be the ReluCache returned by relu_forward; got {type(cache).__name__}")
    dy = _checks.as_float_array(dy, "dy", dtype=cache.dtype, finite=False)  # NaN propagates, as in autograd
    if dy.shape != cache.positive.shape:
        raise ValueError(f"`dy` must have the output's shape {cache.positive.shape}; got {dy.shape}")
    return ReluGrads(np.where(cache.positive, dy, dy.dtype.type(0)))


class SigmoidCache(NamedTuple):
    y: np.ndarray                 # sigmoid(x), same shape as x


class SigmoidGrads(NamedTuple):
    dx: np.ndarray


def sigmoid_forward(x: np.ndarray) -> Tuple[np.ndarray, SigmoidCache]:
    """``y = 1 / (1 + exp(-x))``, any shape, without overflow.

    Written as ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0`` with
    ``e = exp(-|x|) <= 1``, so ``exp`` never overflows and tiny outputs keep their relative precision
    (``sigmoid(-700)`` is ``exp(-700)``-sized, about 1e-304, not 0 from ``1 / (1 + inf)``). ``+-inf`` give 1 and 0.

    Returns
    -------
    y : ndarray, same shape as ``x``, values in [0, 1]
    cache : SigmoidCache

    Notes
    -----
    Readable reference: :func:`refdet.reference.conv.sigmoid` (held within 8 units of roundoff).
    """
    x = _checks.as_float_array(x, "x", finite=False)
    _checks.check_finite(x, "x", allow_inf=True)
    x = _c(x)  # NumPy's SIMD exp and its strided fallback need not round alike
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    # the sign bit picks the branch: no threshold to get wrong (at +-0 both branches give 1 / 2)
    y = np.where(np.signbit(x), e / (one + e), one / (one + e))
    return y, SigmoidCache(y)


def sigmoid_backward(dy: np.ndarray, cache: SigmoidCache) -> SigmoidGrads:
    """``dx = dy * (1 - y) * y`` with ``y`` the forward output (ATen's order of operations); any shape."""
    if not isinstance(cache, SigmoidCache):
        raise TypeError(f"`cache` must be the SigmoidCache returned by sigmoid_forward; got {type(cache).__name__}")
    y = cache.y
    dy = _checks.as_float_array(dy, "dy", dtype=y.dtype)
    if dy.shape != y.shape:
        raise ValueError(f"`dy` must have the output's shape {y.shape}; got {dy.shape}")
    return SigmoidGrads(dy * (y.dtype.type(1) - y) * y)  # ATen sigmoid_backward order: dy * (1 - y) * y


# ---------------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------------

class MaxPool2dCache(NamedTuple):
    in_shape: tuple               # (B, C, H, W)
    indices: np.ndarray           # (B, C, Ho, Wo) int64: flat index h * W + w of the max in its input plane
    dtype: np.dtype


class MaxPool2dGrads(NamedTuple):
    dx: np.ndarray                # (B, C, H, W)


@conventions.documented("max_pool2d")
def max_pool2d_forward(x: np.ndarray, kernel_size: Pair, *, stride: Optional[Pair] = None, padding: Padding = 0,
                       dilation: Pair = 1, ceil_mode: Optional[bool] = None,
                       convention: Union[str, conventions.Profile] = "torchvision"
                       ) -> Tuple[np.ndarray, MaxPool2dCache]:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``. ``kernel_size=1, stride=2`` is the FPN "P6" block (torchvision
        ``LastLevelMaxPool``, detectron2 ``LastLevelMaxPool``, mmdet): it keeps every second pixel.
    padding : int, (int, int), ((top, bottom), (left, right)), (top, bottom, left, right) or str
        Implicit ``-inf`` padding (never the maximum of a window holding an input element); numeric
        padding is at most half the kernel on each side (PyTorch's rule). ``"same"`` / ``"valid"`` /
        ``"same_lower"`` as in :func:`conv2d_forward` (TensorFlow ``SAME``, ONNX ``auto_pad``).
    dilation : int or (int, int)
    ceil_mode : bool, optional
        Round the output size up, as long as the last window starts inside the input or the left
        padding. Default from ``convention``: False, except ``"caffe"`` (Caffe's PoolingLayer always
        rounds up).
    convention : str
        See ``conventions.describe("max_pool2d")``.

    Returns
    -------
    y : ndarray, shape (B, C, Ho, Wo)
    cache : MaxPool2dCache
        ``cache.indices`` are PyTorch's ``return_indices=True`` indices (flat ``h * W + w`` within
        each input plane).

    Notes
    -----
    **Ties**: the window is scanned row by row and a value replaces the running maximum only if it is
    strictly greater, so the **first** maximal element in row-major window order wins (PyTorch's CPU
    kernel, ``val > maxval``). If every real element of a window is ``-inf`` the index is that of the
    first real element, also as PyTorch. A window that holds no input element at all (possible with
    dilation and padding, e.g. W = 1, kernel 2, dilation 2, padding 1) gives ``-inf`` and index -1
    and passes no gradient; PyTorch 2.14 returns an index outside the window there and its backward
    then writes out of bounds. NaN is rejected (PyTorch would propagate it).
    The loop runs over the KH*KW kernel taps, never over pixels.

    Readable reference: :func:`refdet.reference.conv.max_pool2d` (a loop over output positions with
    the same first-maximum rule).
    """
    ceil_mode = conventions.resolve("max_pool2d", convention, ceil_mode=ceil_mode).ceil_mode
    x = _checks.as_nchw(x, allow_inf=True)       # NaN refused naming `x` (the default name)
    kh, kw = _checks.check_pair(kernel_size, "kernel_size", low=1)
    sh, sw = (kh, kw) if stride is None else _checks.check_pair(stride, "stride", low=1)
    dh, dw = _checks.check_pair(dilation, "dilation", low=1)
    bsz, c, h, w = x.shape
    pt, pb, pl, pr = _conv.parse_padding(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    if not isinstance(padding, str) and (max(pt, pb) > kh // 2 or max(pl, pr) > kw // 2):
        raise ValueError(f"`padding` must be at most half the kernel size {(kh, kw)} on each side; got "
                         f"{(pt, pb, pl, pr)} (top, bottom, left, right)")
    ho = _conv.output_size(h, kh, sh, pt, pb, dh, ceil_mode=bool(ceil_mode), what="pooling window")
    wo = _conv.output_size(w, kw, sw, pl, pr, dw, ceil_mode=bool(ceil_mode), what="pooling window")
    _conv.check_sizes(x.shape, (pt, pb, pl, pr), c, ho, wo, x.dtype.itemsize)
    dt = x.dtype
    # -inf padding, enough on the bottom/right for ceil_mode windows that overhang the input
    hp = max(h + pt + pb, (ho - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + pl + pr, (wo - 1) * sw + dw * (kw - 1) + 1)
    xp = _conv.pad(x, (pt, hp - h - pt, pl, wp - w - pl), -np.inf)
    win = _conv.windows(xp, (kh, kw), (sh, sw), (dh, dw), wo, 0, ho)   # view (B, C, KH, KW, Ho, Wo)
    best = np.full((bsz, c, ho, wo), -np.inf, dtype=dt)
    arg_r = np.full((bsz, c, ho, wo), -1, dtype=np.int64)    # input row of the running max (-1: none yet)
    arg_c = np.zeros((bsz, c, ho, wo), dtype=np.int64)
    # one window along an axis: its stride never steps (a stride beyond the input, PyTorch allows it)
    oy = np.arange(ho)[:, None] * (sh if ho > 1 else 0) - pt    # (Ho, 1) top row of each window (input coords)
    ox = np.arange(wo)[None, :] * (sw if wo > 1 else 0) - pl    # (1, Wo) left column
    for i in range(kh):                                        # taps in row-major window order
        for j in range(kw):
            v = win[:, :, i, j]                                # (B, C, Ho, Wo) what tap (i, j) sees
            upd = v > best                                     # strict: an equal later value does not win
            np.copyto(best, v, where=upd)
            np.copyto(arg_r, np.broadcast_to(oy + i * dh, upd.shape), where=upd)
            np.copyto(arg_c, np.broadcast_to(ox + j * dw, upd.shape), where=upd)
    none = arg_r < 0
    if none.any():
        # all real values are -inf: PyTorch keeps its initial index, the first real element
        first_r = oy + (-(np.minimum(oy, 0)) + dh - 1) // dh * dh      # smallest oy + i*dh >= 0
        first_c = ox + (-(np.minimum(ox, 0)) + dw - 1) // dw * dw
        # a dilated window can also step over the whole input (no real element at all): index -1
        real_r = (first_r < h) & (first_r <= oy + (kh - 1) * dh)     # (Ho, 1)
        real_c = (first_c < w) & (first_c <= ox + (kw - 1) * dw)     # (1, Wo)
        flat = np.where(real_r & real_c, first_r * w + first_c, -1)  # (Ho, Wo)
        indices = np.where(none, np.broadcast_to(flat, none.shape), arg_r * w + arg_c)
    else:
        indices = arg_r * w + arg_c
    return best, MaxPool2dCache(x.shape, indices, dt)


def max_pool2d_backward(dy: np.ndarray, cache: MaxPool2dCache) -> MaxPool2dGrads:
    """Gradient of :func:`max_pool2d_forward`: each output gradient goes to its window's max.

    Overlapping windows (stride < kernel) that share a maximum add their gradients, in row-major
    output order (PyTorch's CPU accumulation order). Readable reference:
    :func:`refdet.reference.conv.max_pool2d_backward`.
    """
    if not isinstance(cache, MaxPool2dCache):
        raise TypeError(f"`cache` must be the MaxPool2dCache returned by max_pool2d_forward; got "
                        f"{type(cache).__name__}")
    bsz, c, h, w = cache.in_shape
    dy = _checks.as_nchw(dy, "dy", dtype=cache.dtype)
    if dy.shape != cache.indices.shape:
        raise ValueError(f"`dy` must have the output's shape {cache.indices.shape}; got {dy.shape}")
    dx = np.zeros(bsz * c * h * w, dtype=cache.dtype)
    plane = (np.arange(np.int64(bsz * c)) * (h * w)).reshape(bsz, c, 1, 1)   # int64 offsets of the planes
    idx = cache.indices
    keep = idx >= 0                                           # -1: a window without an input element
    np.add.at(dx, (idx + plane)[keep], dy[keep])              # row-major output order, as PyTorch's CPU kernel
    return MaxPool2dGrads(dx.reshape(bsz, c, h, w))


# ---------------------------------------------------------------------------------------------------
# group normalisation
# ---------------------------------------------------------------------------------------------------

class GroupNormCache(NamedTuple):
    xhat: np.ndarray              # (B, C, H, W) normalised input
    rstd: np.ndarray              # (B, G) 1 / sqrt(var + eps)
    gamma: Optional[np.ndarray]   # (C,) or None
    has_beta: bool
    num_groups: int


class GroupNormGrads(NamedTuple):
    dx: np.ndarray                # (B, C, H, W)
    dgamma: Optional[np.ndarray]  # (C,) or None
    dbeta: Optional[np.ndarray]   # (C,) or None


def group_norm_forward(x: np.ndarray, gamma: Optional[np.ndarray] = None, beta: Optional[np.ndarray] = None, *,
                       num_groups: int, eps: float = 1e-5) -> Tuple[np.ndarray, GroupNormCache]:
    """Group normalisation (Wu & He 2018), as ``torch.nn.functional.group_norm``.

    The C channels are split into ``num_groups`` groups of ``C / G`` consecutive channels; each
    (sample, group) is normalised over its channels and pixels, then scaled per channel::

        mu, var = mean and biased variance of x[b, group g]        # over C/G * H * W values
        xhat = (x - mu) / sqrt(var + eps)
        y = gamma[c] * xhat + beta[c]

    torchvision's RetinaNet v2 head uses ``GroupNorm(32, 256)`` after each tower conv.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    gamma, beta : ndarray, shape (C,), or None
        Affine scale and shift (``None``: 1 and 0).
    num_groups : int
        Must divide C.
    eps : float
        Added to the variance (PyTorch default 1e-5).

    Returns
    -------
    y : ndarray, shape (B, C, H, W)
    cache : GroupNormCache

    Notes
    -----
    The moments are two-pass (mean, then the mean of squared deviations), as PyTorch's CPU kernel.
    Readable reference: :func:`refdet.reference.conv.group_norm` (the formula per group).
    """
    x = _checks.as_nchw(x)                       # its errors name `x` (the default)
    bsz, c, h, w = x.shape
    g = _checks.check_int(num_groups, "num_groups", low=1)
    if c % g:
        raise ValueError(f"`num_groups` must divide the channels C = {c} of `x`; got num_groups={g}")
    eps = _checks.check_positive(eps, "eps", strict=False)
    gamma = _checks.check_optional_vector(gamma, "gamma", c)
    beta = _checks.check_optional_vector(beta, "beta", c)
    dt = _dtype_of(x, gamma, beta)
    x = np.ascontiguousarray(x, dtype=dt)  # C order: the moments' summation order is fixed
    n = (c // g) * h * w
    if not n:                      # no value in a group (H, W or C is 0); an empty batch takes the general path
        rstd = np.zeros((bsz, g), dtype=dt)
        xhat = np.zeros(x.shape, dtype=dt)
    else:
        xg = x.reshape(bsz, g, n)                                          # (B, G, C/G*H*W)
        mu = xg.mean(axis=2, keepdims=True)
        xc = xg - mu
        var = np.mean(xc * xc, axis=2, keepdims=True)                     # biased, two-pass
        rstd = dt.type(1) / np.sqrt(var + dt.type(eps))                   # (B, G, 1)
        xhat = (xc * rstd).reshape(x.shape)
        rstd = rstd[:, :, 0]
    y = xhat
    if gamma is not None:
        y = y * gamma[:, None, None]      # gamma, beta: dt or float32 in float64 (an exact widening)
    if beta is not None:
        y = y + beta[:, None, None]
    if y is xhat:
        y = xhat.copy()
    gcache = None if gamma is None else np.asarray(gamma, dtype=dt)
    return y, GroupNormCache(xhat, rstd, gcache, beta is not None, g)


def group_norm_backward(dy: np.ndarray, cache: GroupNormCache) -> GroupNormGrads:
    """Gradients of :func:`group_norm_forward`.

    With ``n = C/G * H * W`` values per (sample, group), ``dxhat = dy * gamma`` and means taken over
    the group::

        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
        dgamma[c] = sum_{b, h, w} dy * xhat,   dbeta[c] = sum_{b, h, w} dy

    (the mean and variance depend on every x of the group, hence the two subtracted means).
    Readable reference: :func:`refdet.reference.conv.group_norm_backward`.

    Returns
    -------
    GroupNormGrads
        ``dx`` (B, C, H, W); ``dgamma``, ``dbeta`` (C,), or None where the forward had none.
    """
    if not isinstance(cache, GroupNormCache):
        raise TypeError(f"`cache` must be the GroupNormCache returned by group_norm_forward; got "
                        f"{type(cache).__name__}")
    xhat = cache.xhat
    dt = xhat.dtype
    dy = _c(_checks.as_nchw(dy, "dy", dtype=dt))  # C order: the sums over (B, H, W) have a fixed order
    if dy.shape != xhat.shape:
        raise ValueError(f"`dy` must have the output's shape {xhat.shape}; got {dy.shape}")
    bsz, c, h, w = xhat.shape
    g = cache.num_groups
    n = (c // g) * h * w
    dgamma = (dy * xhat).sum(axis=(0, 2, 3)) if cache.gamma is not None else None
    dbeta = dy.sum(axis=(0, 2, 3)) if cache.has_beta else None
    if not n:                      # as in the forward: an empty batch takes the general path
        return GroupNormGrads(np.zeros(xhat.shape, dtype=dt), dgamma, dbeta)
    dxhat = dy * cache.gamma[:, None, None] if cache.gamma is not None else dy
    dxg = dxhat.reshape(bsz, g, n)
    xg = xhat.reshape(bsz, g, n)
    m1 = dxg.mean(axis=2, keepdims=True)                                 # mean(dxhat)
    m2 = (dxg * xg).mean(axis=2, keepdims=True)                          # mean(dxhat * xhat)
    dx = cache.rstd[:, :, None] * (dxg - m1 - xg * m2)
    return GroupNormGrads(dx.reshape(xhat.shape), dgamma, dbeta)
