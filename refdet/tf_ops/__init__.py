"""TensorFlow's operators on a detector's path, as TF's CPU kernels compute them (issue 15).

Each module reproduces TF 2.21 kernels from their source (cited in its docstring), in float32 in the
kernel's order of operations, and is held equal to TF itself by ``tests/test_tf_*.py`` and ``refdet
verify tensorflow`` (:mod:`refdet.testing.conformance_tf`):

:mod:`~refdet.tf_ops.nms`
    ``NonMaxSuppressionV3/V4/V5`` (score threshold, padding, soft-NMS) and
    ``CombinedNonMaxSuppression``: bit for bit, ties included (libstdc++'s heap and sort, glibc's
    ``expf``).
:mod:`~refdet.tf_ops.image`
    ``ResizeBilinear`` and ``ResizeNearestNeighbor`` (both legacy flags): bit for bit.
    ``CropAndResize`` and its gradients are :mod:`refdet.roi.crop` (bit for bit as well).
:mod:`~refdet.tf_ops.quant`
    ``FakeQuantWithMinMaxVars/Args/VarsPerChannel`` and the gradient, ``QuantizeV2`` (``MIN_COMBINED``,
    ``MIN_FIRST``, ``SCALED``): bit for bit (the range gradients to a float32 sum's rounding;
    ``QuantizeV2`` as TF's reference kernel, not oneDNN's).
:mod:`~refdet.tf_ops.nn`
    ``Conv2D`` (``SAME``/``VALID``/``EXPLICIT``) and its gradients, ``sigmoid_cross_entropy_with_logits``:
    the padding geometry exactly, the sums and Eigen's ``exp`` to a few ulps.

:mod:`~refdet.tf_ops.proposals`
    ``GenerateBoundingBoxProposals`` (``tf.image.generate_bounding_box_proposals``), read from its CUDA
    kernel: TF has no CPU kernel for it (``tensorflow-cpu`` reports "no registered kernels"), so it is
    pinned by worked examples and a loop from the source, not checked against TF; a test notices the
    day a CPU kernel appears.

These names stay under ``refdet.tf_ops`` (TF's operator names would shadow refdet's own functions at the top level).
"""
from __future__ import annotations

from refdet.tf_ops.image import resize_bilinear, resize_nearest_neighbor, resize_source_index
from refdet.tf_ops.nms import (CombinedNMSResult, NMSResult, combined_non_max_suppression,
                               non_max_suppression, tf_iou)
from refdet.tf_ops.nn import (Conv2DBackprop, conv2d, conv2d_backprop, sigmoid_cross_entropy_with_logits,
                              sigmoid_cross_entropy_with_logits_grad)
from refdet.tf_ops.proposals import BBOX_XFORM_CLIP, ProposalsResult, generate_bounding_box_proposals
from refdet.tf_ops.quant import (QUANTIZE_MODES, QUANTIZED_TYPES, ROUND_MODES, FakeQuantGradients, QuantizeResult,
                                 fake_quant_with_min_max_args, fake_quant_with_min_max_vars,
                                 fake_quant_with_min_max_vars_gradient, fake_quant_with_min_max_vars_per_channel,
                                 nudge, quantize_v2)

__all__ = ["NMSResult", "CombinedNMSResult", "non_max_suppression", "combined_non_max_suppression", "tf_iou",
           "resize_bilinear", "resize_nearest_neighbor", "resize_source_index", "conv2d", "conv2d_backprop",
           "Conv2DBackprop", "sigmoid_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits_grad",
           "nudge", "fake_quant_with_min_max_vars", "fake_quant_with_min_max_args",
           "fake_quant_with_min_max_vars_per_channel", "fake_quant_with_min_max_vars_gradient", "FakeQuantGradients",
           "quantize_v2", "QuantizeResult", "QUANTIZE_MODES", "ROUND_MODES", "QUANTIZED_TYPES",
           "generate_bounding_box_proposals", "ProposalsResult", "BBOX_XFORM_CLIP"]
