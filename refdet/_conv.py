"""Sliding-window geometry shared by every convolution and pooling in refdet: one padding grammar,
one output-size formula, one im2col.

Who uses it: :mod:`refdet.layers` (``conv2d_forward``/``conv2d_backward``, ``max_pool2d_*``) and the
integer kernels of the quantized path (``conv2d_int``), which feed it integer arrays. Keeping the
geometry in one place means a padding tuple means the same thing everywhere.

Padding grammar (:func:`parse_padding`)
---------------------------------------
refdet's canonical padding is the 4-tuple **(top, bottom, left, right)**: the two sides of H, then the
two sides of W (NumPy's ``np.pad`` order, ``((top, bottom), (left, right))`` flattened). Accepted
spellings, all normalised to that tuple of Python ints:

=================================  ==========================================================
``p``                              ``(p, p, p, p)``
``(ph, pw)``                       ``(ph, ph, pw, pw)`` (PyTorch ``padding=(ph, pw)``)
``((top, bottom), (left, right))`` as written
``(top, bottom, left, right)``     as written (the canonical tuple itself)
``"valid"``                        ``(0, 0, 0, 0)``
``"same"`` / ``"same_upper"``      TensorFlow ``SAME`` = ONNX ``auto_pad="SAME_UPPER"`` (= PyTorch
                                   ``padding="same"`` at stride 1): output ``ceil(n / s)``, total
                                   ``max((ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)``, split
                                   ``total // 2`` before and the odd pixel after
``"same_lower"``                   ONNX ``SAME_LOWER``: the odd pixel before
=================================  ==========================================================

**ONNX order.** ONNX ``pads`` list every axis's begin, then every axis's end: for 2-D that is
``(top, left, bottom, right)``, *not* refdet's order. Only functions that face ONNX (an ONNX node's
attributes, ``conv2d_int``'s ONNX-style ``padding``, the exchange writers and readers) convert, with
:func:`onnx_pads_to_canonical` / :func:`canonical_to_onnx_pads`; nothing else reads a flat 4-tuple in
ONNX order.

im2col (:class:`Im2col`)
------------------------
``cols[b, g, (c, i, j), r * width + q]`` is the input pixel that kernel tap ``(i, j)`` of channel
``c`` of group ``g`` sees for output pixel ``(r, q)``; a convolution is then one batched GEMM
``w.reshape(G, F / G, Cg*KH*KW) @ cols``. Two layouts of the same matrix, chosen per call:

* general (any stride): ``width = Wo``; the copy gathers ``Wo``-element pieces.
* whole rows (stride 1, the common 3x3 case): ``width = Wp``, the padded width. Output pixel
  ``(r, q)`` reads ``xp[r + i*dh, q + j*dw]``; computing the output for every ``q`` in ``[0, Wp)``
  makes each tap one *contiguous* run of the flattened padded input, so the copy moves long runs.
  The ``Wp - Wo`` extra columns of each output row are junk and are cut off after the GEMM.

Large matrices are built in chunks of output rows (:meth:`Im2col.chunks`) of at most
``IM2COL_MAX_BYTES``. :func:`col2im_add` is the adjoint of the general layout (the convolution
backward's scatter).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from refdet import _checks

__all__ = ["PADDING_STRINGS", "IM2COL_MAX_BYTES", "parse_padding", "onnx_pads_to_canonical",
           "canonical_to_onnx_pads", "output_size", "pad", "windows", "col2im_add", "Im2col"]

#: The padding modes given by name (case-insensitive).
PADDING_STRINGS = ("valid", "same", "same_upper", "same_lower")

#: Largest im2col matrix (bytes) built at once; larger convolutions are done in chunks of output rows.
IM2COL_MAX_BYTES = 256 * 2 ** 20

Pads = Tuple[int, int, int, int]


def _pairs(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (v, v) if np.isscalar(v) else (int(v[0]), int(v[1]))


def parse_padding(padding, size_hw: Sequence[int] = (1, 1), kernel_hw: Sequence[int] = (1, 1),
                  stride_hw: Sequence[int] = (1, 1), dilation_hw: Sequence[int] = (1, 1), *,
                  name: str = "padding") -> Pads:
    """Normalise a padding specification to ``(top, bottom, left, right)`` Python ints (see the module
    docstring for the grammar). ``size_hw``, ``kernel_hw``, ``stride_hw`` and ``dilation_hw`` are used
    only by the ``"same"`` modes. Raises TypeError/ValueError naming ``name``.
    """
    if isinstance(padding, str):
        mode = _checks.check_choice(padding.lower(), name, PADDING_STRINGS)
        if mode == "valid":
            return (0, 0, 0, 0)
        out = []
        for n, k, s, d in zip(size_hw, kernel_hw, stride_hw, dilation_hw):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            small, big = total // 2, total - total // 2
            out += [big, small] if mode == "same_lower" else [small, big]
        return tuple(out)
    if isinstance(padding, bytes) or not hasattr(padding, "__len__"):
        v = _checks.check_int(padding, name, low=0)
        return (v, v, v, v)
    if len(padding) == 4:
        return tuple(_checks.check_int(p, f"{name}[{k}]", low=0) for k, p in enumerate(padding))
    if len(padding) != 2:
        raise ValueError(f"`{name}` must be an int, a pair (for H, for W), a pair of (before, after) pairs, "
                         f"(top, bottom, left, right) or one of {', '.join(repr(c) for c in PADDING_STRINGS)}; "
                         f"got {len(padding)} values")
    out = []
    for axis, p in zip("HW", padding):
        if hasattr(p, "__len__") and not isinstance(p, (str, bytes)):
            if len(p) != 2:
                raise ValueError(f"`{name}` for {axis} must be an int or a (before, after) pair; got {len(p)} values")
            out += [_checks.check_int(p[0], f"{name}[{axis}][0]", low=0),
                    _checks.check_int(p[1], f"{name}[{axis}][1]", low=0)]
        else:
            v = _checks.check_int(p, f"{name}[{axis}]", low=0)
            out += [v, v]
    return tuple(out)


def onnx_pads_to_canonical(pads: Sequence[int]) -> Pads:
    """ONNX 2-D ``pads`` ``(top, left, bottom, right)`` -> refdet's ``(top, bottom, left, right)``."""
    t, l, b, r = (int(p) for p in pads)
    return (t, b, l, r)


def canonical_to_onnx_pads(pads: Sequence[int]) -> Pads:
    """refdet's ``(top, bottom, left, right)`` -> ONNX 2-D ``pads`` ``(top, left, bottom, right)``."""
    t, b, l, r = (int(p) for p in pads)
    return (t, l, b, r)


def output_size(size: int, kernel: int, stride: int, before: int, after: int, dilation: int = 1, *,
                ceil_mode: bool = False, what: str = "kernel", name: str = "x") -> int:
    """Output length of a sliding window along one axis (PyTorch's formula).

    ``floor((size + before + after - dilation * (kernel - 1) - 1) / stride) + 1``. With ``ceil_mode`` the
    division rounds up, but the last window must start inside the input or the ``before`` padding
    (PyTorch's and Caffe's rule). Raises ValueError naming ``name`` when the dilated window is larger
    than the padded input.
    """
    eff = dilation * (kernel - 1) + 1
    span = size + before + after
    if eff > span:
        knob = "`kernel_size`" if what == "pooling window" else "the kernel"
        raise ValueError(f"the {what} (dilated size {eff} = `dilation` x ({knob} - 1) + 1) is larger than the "
                         f"padded input of `{name}` ({size} + {before} + {after} = {span}, with `padding`)")
    if ceil_mode:
        out = -(-(span - eff) // stride) + 1
        if (out - 1) * stride >= size + before:
            out -= 1
        return out
    return (span - eff) // stride + 1


def check_sizes(x_shape, pads, out_channels, out_h, out_w, itemsize, *, name="padding` and `dilation"):
    """Refuse, before allocating, a padded input or an output beyond the allocation cap.

    The geometry arguments (padding, and a dilation that SAME padding follows) choose these sizes;
    :func:`refdet._checks.check_allocation` names them with the shape they would need.
    """
    b, c, h, w = x_shape
    pt, pb, pl, pr = pads
    hp, wp = h + pt + pb, w + pl + pr
    _checks.check_allocation(b * c * hp * wp, itemsize, f"a padded input of shape {(b, c, hp, wp)}", name=name)
    _checks.check_allocation(b * out_channels * out_h * out_w, itemsize,
                             f"an output of shape {(b, out_channels, out_h, out_w)}", name=name)


def pad(x: np.ndarray, pads: Sequence[int], value=0) -> np.ndarray:
    """``x`` (B, C, H, W) padded on H and W by ``pads = (top, bottom, left, right)`` with ``value``: a new
    C-ordered array, or ``x`` itself when there is no padding (``x`` is never written)."""
    pt, pb, pl, pr = pads
    if pt == pb == pl == pr == 0:
        return x
    b, c, h, w = x.shape
    shape = (b, c, h + pt + pb, w + pl + pr)
    # the padding is an argument: refuse a padded copy no input needs before making it
    _checks.check_allocation(b * c * shape[2] * shape[3], x.dtype.itemsize,
                             f"a padded input of shape {shape}", name="padding")
    out = np.zeros(shape, dtype=x.dtype) if value == 0 else np.full(shape, value, dtype=x.dtype)
    out[:, :, pt:pt + h, pl:pl + w] = x
    return out


def windows(xp: np.ndarray, kernel_hw: Sequence[int], stride_hw: Sequence[int], dilation_hw: Sequence[int],
            out_w: int, r0: int = 0, rows: int = 1) -> np.ndarray:
    """Read-only strided view ``(B, C, KH, KW, rows, Wo)`` of an already padded input ``xp``.

    Element ``[b, c, i, j, r, q]`` is ``xp[b, c, (r0 + r) * sh + i * dh, q * sw + j * dw]``: the pixel that
    kernel tap ``(i, j)`` sees for output pixel ``(r0 + r, q)``. No copy is made.
    """
    kh, kw = kernel_hw
    sh, sw = stride_hw
    dh, dw = dilation_hw
    s_b, s_c, s_h, s_w = xp.strides
    # an axis of length 1 never steps: its byte stride is 0, so that a stride far beyond the input
    # (one window, as PyTorch allows) cannot overflow the view's strides
    return as_strided(xp[:, :, r0 * sh:, :], shape=(xp.shape[0], xp.shape[1], kh, kw, rows, out_w),
                      strides=(s_b, s_c, dh * s_h if kh > 1 else 0, dw * s_w if kw > 1 else 0,
                               sh * s_h if rows > 1 else 0, sw * s_w if out_w > 1 else 0), writeable=False)


def col2im_add(dxp: np.ndarray, dcols: np.ndarray, r0: int, stride_hw: Sequence[int],
               dilation_hw: Sequence[int]) -> None:
    """The adjoint of :func:`windows`: add ``dcols`` (B, C, KH, KW, rows, Wo) into the padded gradient
    ``dxp`` (B, C, Hp, Wp) at the pixels each tap read, in place. One addition per tap (a loop over the
    KH*KW taps, never over pixels); taps are added in row-major order.
    """
    sh, sw = stride_hw
    dh, dw = dilation_hw
    kh, kw, rows, wo = dcols.shape[2:]
    for i in range(kh):
        top = r0 * sh + i * dh
        for j in range(kw):
            left = j * dw
            dxp[:, :, top:top + (rows - 1) * sh + 1:sh, left:left + (wo - 1) * sw + 1:sw] += dcols[:, :, i, j]


class Im2col:
    """The im2col matrix of one NCHW input, built chunk by chunk of output rows.

    ::

        plan = Im2col(x, (kh, kw), stride=(sh, sw), pads=pads, dilation=(dh, dw), groups=g)
        for r0, r1 in plan.chunks():
            out = np.matmul(w.reshape(g, F // g, -1), plan.cols(r0, r1))   # (B, g, F/g, rows * width)
            out = out.reshape(B, F, r1 - r0, plan.width)[..., :plan.out_w]

    An integer kernel passes its zero-point-shifted int64 input (padding with 0 then means padding
    with the zero point) and multiplies in the dtype it has proven exact::

        plan = Im2col(xq.astype(np.int64) - x_zero_point, (kh, kw), stride=s, pads=parse_padding(p), groups=g)
        acc = np.matmul(wq_shifted.reshape(g, F // g, -1), plan.cols(0, plan.out_h))   # exact int64

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
        Any numeric dtype (float for ``layers``, int64 for the integer kernels); ``cols`` has its dtype.
    kernel_hw, stride, dilation : (int, int)
    pads : (top, bottom, left, right)
        Already normalised (:func:`parse_padding`); the padding value is ``pad_value``.
    groups : int
        Divides C.
    whole_rows : bool, optional
        Use the stride-1 whole-row layout (``width = Wp``). Default: whenever the stride is 1. Must be
        False for a strided convolution.

    Attributes
    ----------
    out_h, out_w : int
        The output size (:func:`output_size`; raises if the window does not fit).
    width : int
        Columns per output row in ``cols``: ``out_w``, or ``Wp >= out_w`` in the whole-row layout.
    """

    def __init__(self, x: np.ndarray, kernel_hw: Sequence[int], *, stride: Sequence[int] = (1, 1),
                 pads: Sequence[int] = (0, 0, 0, 0), dilation: Sequence[int] = (1, 1), groups: int = 1,
                 whole_rows: Optional[bool] = None, pad_value=0):
        self.kh, self.kw = kernel_hw
        self.sh, self.sw = stride
        self.dh, self.dw = dilation
        self.groups = groups
        pt, pb, pl, pr = pads
        bsz, c, h, w = x.shape
        self.out_h = output_size(h, self.kh, self.sh, pt, pb, self.dh)
        self.out_w = output_size(w, self.kw, self.sw, pl, pr, self.dw)
        if whole_rows is None:
            whole_rows = (self.sh, self.sw) == (1, 1)
        if whole_rows and (self.sh, self.sw) != (1, 1):
            raise ValueError("the whole-row im2col layout needs stride 1")
        self.whole_rows = bool(whole_rows)
        self.shape = (bsz, c)
        if self.whole_rows:
            wp = w + pl + pr
            # extra zero rows at the bottom keep the last tap's run inside the flattened array
            extra = -(-((self.kw - 1) * self.dw) // wp) if wp else 0
            xp = pad(x, (pt, pb + extra, pl, pr), pad_value)
            self._src = np.ascontiguousarray(xp).reshape(bsz, c, -1)       # (B, C, L)
            self.width = wp
        else:
            self._src = pad(x, pads, pad_value)                            # (B, C, Hp, Wp)
            self.width = self.out_w

    @property
    def padded(self) -> np.ndarray:
        """The padded input (B, C, Hp, Wp) of the general layout."""
        if self.whole_rows:
            raise ValueError("the whole-row layout keeps a flattened input")
        return self._src

    def chunks(self, max_bytes: Optional[int] = None) -> List[Tuple[int, int]]:
        """Output-row ranges ``[(r0, r1), ...]`` whose ``cols`` stay under ``max_bytes``
        (default ``IM2COL_MAX_BYTES``, read at call time)."""
        limit = IM2COL_MAX_BYTES if max_bytes is None else max_bytes
        bsz, c = self.shape
        per_row = bsz * c * self.kh * self.kw * self.width * self._src.dtype.itemsize
        step = max(1, int(limit // max(per_row, 1)))
        return [(r0, min(self.out_h, r0 + step)) for r0 in range(0, self.out_h, step)]

    def view(self, r0: int, r1: int) -> np.ndarray:
        """The read-only strided view behind :meth:`cols`: ``(B, C, KH, KW, rows * width)`` (whole rows)
        or ``(B, C, KH, KW, rows, Wo)`` (general). No copy."""
        rows = r1 - r0
        if self.whole_rows:
            flat, wp = self._src, self.width
            s_b, s_c, s_l = flat.strides
            return as_strided(flat[:, :, r0 * wp:], shape=(flat.shape[0], flat.shape[1], self.kh, self.kw, rows * wp),
                              strides=(s_b, s_c, self.dh * wp * s_l, self.dw * s_l, s_l), writeable=False)
        return windows(self._src, (self.kh, self.kw), (self.sh, self.sw), (self.dh, self.dw), self.out_w, r0, rows)

    def cols(self, r0: int, r1: int) -> np.ndarray:
        """The im2col matrix of output rows ``[r0, r1)``: ``(B, groups, Cg*KH*KW, (r1 - r0) * width)``,
        a new C-ordered array (the copy), rows ordered ``(c, i, j)`` like a weight ``(F, Cg, KH, KW)``."""
        bsz, c = self.shape
        g = self.groups
        return self.view(r0, r1).reshape(bsz, g, (c // g) * self.kh * self.kw, (r1 - r0) * self.width)
