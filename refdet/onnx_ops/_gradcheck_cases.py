"""Gradient-check cases of every refdet.onnx_ops forward/backward pair, for ``refdet verify self`` and
``refdet.testing.gradcheck_all`` (registered when refdet.onnx_ops is imported).

Small float64 inputs away from kinks (leaky ReLU at 0). ``tests/test_onnx_ops_layers.py`` holds the
same pairs to torch autograd.
"""
from __future__ import annotations

import numpy as np

import sys

import refdet.onnx_ops.activations  # noqa: F401  (the submodules; their names are shadowed by the functions)
import refdet.onnx_ops.conv_transpose  # noqa: F401
import refdet.onnx_ops.resize  # noqa: F401
import refdet.onnx_ops.softmax  # noqa: F401
from refdet._gradcheck_registry import register_gradcheck as _reg

_A = sys.modules["refdet.onnx_ops.activations"]
_CT = sys.modules["refdet.onnx_ops.conv_transpose"]
_R = sys.modules["refdet.onnx_ops.resize"]
_S = sys.modules["refdet.onnx_ops.softmax"]


def _away_from_zero(r, shape):
    x = r.standard_normal(shape)
    return np.where(np.abs(x) < 1e-2, 0.5, x)


_reg("softmax_forward axis 1", _S.softmax_forward, _S.softmax_backward,
     lambda r: ((2 * r.standard_normal((2, 5, 3)),), {"axis": 1}))
_reg("log_softmax_forward last axis", _S.log_softmax_forward, _S.log_softmax_backward,
     lambda r: ((2 * r.standard_normal((3, 6)),), {}))
_reg("leaky_relu_forward slope 0.1", _A.leaky_relu_forward, _A.leaky_relu_backward,
     lambda r: ((_away_from_zero(r, (2, 3, 4)),), {"negative_slope": 0.1}))


def _ct(stride, padding, output_padding, dilation, groups, bias=True):
    def make(r):
        x = r.standard_normal((2, 2 * groups, 3, 4))
        w = r.standard_normal((2 * groups, 3, 3, 2))
        b = r.standard_normal(3 * groups) if bias else None
        return (x, w, b), dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
                               groups=groups)
    return make


_reg("conv_transpose2d_forward stride 2 pad 1 output_padding 1", _CT.conv_transpose2d_forward,
     _CT.conv_transpose2d_backward, _ct(2, 1, 1, 1, 1))
_reg("conv_transpose2d_forward stride (1,3) pad (0,1,2,0) dilation (2,1) groups 2", _CT.conv_transpose2d_forward,
     _CT.conv_transpose2d_backward, _ct((1, 3), (0, 1, 2, 0), (1, 2), (2, 1), 2))
_reg("conv_transpose2d_forward no bias", _CT.conv_transpose2d_forward, _CT.conv_transpose2d_backward,
     _ct(1, 0, 0, 1, 1, bias=False))
for _ac in (False, True):
    _reg(f"resize_linear_forward 3x4 -> 5x7 align_corners={_ac}", _R.resize_linear_forward, _R.resize_linear_backward,
         lambda r, ac=_ac: ((r.standard_normal((2, 2, 3, 4)),), {"size": (5, 7), "align_corners": ac}))
_reg("resize_linear_forward scale 0.5 (onnx)", _R.resize_linear_forward, _R.resize_linear_backward,
     lambda r: ((r.standard_normal((1, 2, 6, 5)),), {"scale_factor": 0.5, "convention": "onnx"}))
