"""The ONNX operators on a detector's path, as onnxruntime and onnx.reference compute them.

An exported detector carries operators refdet's layers do not cover: the softmax of a box head,
Darknet's leaky ReLU, transposed convolutions that upsample, ``Resize`` in its linear and cubic modes,
``TopK`` before NMS, and ``QuantizeLinear``/``DequantizeLinear`` in every element type (those live in
:mod:`refdet.quant.onnx_qdq`, with the bit-level types in :mod:`refdet.quant.types`). Each module here
holds the ONNX operator (the node's attributes as keywords, ``runtime="onnxruntime"`` or
``"onnx_reference"`` where the two differ, with the difference and its source written down) and,
where the operator is differentiable in a detector, a forward/backward layer pair with PyTorch's
semantics (``convention="torchvision"``) or ONNX's (``convention="onnx"``):

==================  =====================================  =====================================
module              ONNX operator                          layer pair
==================  =====================================  =====================================
``softmax``         ``softmax``, ``log_softmax``           ``softmax_forward/backward``,
                    (opset < 13 2-D coercion, >= 13 axis)  ``log_softmax_forward/backward``
``activations``     ``leaky_relu``                         ``leaky_relu_forward/backward``
``conv_transpose``  ``conv_transpose`` (N-D, auto_pad,     ``conv_transpose2d_forward/backward``
                    output_shape, groups, dilations)
``resize``          ``resize`` (nearest, linear, cubic,    ``resize_linear_forward/backward``
                    every coordinate mode, antialias)
``topk``            ``topk`` (ties: lower index first)     --
==================  =====================================  =====================================

Readable references (loops) are in :mod:`refdet.reference.onnx_ops`; ONNX's own node test cases
(``onnx.backend.test.case.node``) run against these functions in ``tests/test_onnx_ops_node_cases.py``.
These names stay under ``refdet.onnx_ops`` (``refdet.onnx_ops.resize``), not at the top level: the ONNX
operator names (``resize``, ``softmax``) would shadow refdet's own modules and layers.
"""
from __future__ import annotations

from refdet.onnx_ops import activations as _act, conv_transpose as _convt, resize as _rsz, softmax as _smx, topk as _tk
from refdet.onnx_ops.activations import *  # noqa: F401,F403  (each module's __all__ is the package's)
from refdet.onnx_ops.conv_transpose import *  # noqa: F401,F403
from refdet.onnx_ops.resize import *  # noqa: F401,F403
from refdet.onnx_ops.softmax import *  # noqa: F401,F403
from refdet.onnx_ops.topk import *  # noqa: F401,F403

__all__ = [name for module in (_smx, _act, _convt, _rsz, _tk)
           for name in module.__all__]

from refdet.onnx_ops import _gradcheck_cases  # noqa: E402,F401  (registers the pairs' gradient checks)
