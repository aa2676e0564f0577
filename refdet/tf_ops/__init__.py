"""TensorFlow's operators on a detector's path, as TF's CPU kernels compute them (issue 15)."""
from __future__ import annotations

from refdet.tf_ops.image import resize_bilinear, resize_nearest_neighbor, resize_source_index
from refdet.tf_ops.nn import (Conv2DBackprop, conv2d, conv2d_backprop, sigmoid_cross_entropy_with_logits,
                              sigmoid_cross_entropy_with_logits_grad)
from refdet.tf_ops.nms import (CombinedNMSResult, NMSResult, combined_non_max_suppression,
                               non_max_suppression, tf_iou)

__all__ = ["NMSResult", "CombinedNMSResult", "non_max_suppression", "combined_non_max_suppression", "tf_iou",
           "resize_bilinear", "resize_nearest_neighbor", "resize_source_index", "conv2d", "conv2d_backprop",
           "Conv2DBackprop", "sigmoid_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits_grad"]
