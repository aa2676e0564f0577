"""TensorFlow's operators on a detector's path, as TF's CPU kernels compute them (issue 15)."""
from __future__ import annotations

from refdet.tf_ops.image import resize_bilinear, resize_nearest_neighbor, resize_source_index
from refdet.tf_ops.nms import (CombinedNMSResult, NMSResult, combined_non_max_suppression,
                               non_max_suppression, tf_iou)

__all__ = ["NMSResult", "CombinedNMSResult", "non_max_suppression", "combined_non_max_suppression", "tf_iou",
           "resize_bilinear", "resize_nearest_neighbor", "resize_source_index"]
