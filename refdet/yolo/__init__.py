"""The YOLO family and modern label assignment (issue 16), as oracle code that reads like the papers.

Modules (each name below is also importable from ``refdet.yolo`` directly)::

    refdet.yolo.anchors          dimension clusters, autoanchor, anchor order, anchor points
    refdet.yolo.decode           YOLOv2-v5, YOLOX and DFL decoders, forward and backward
    refdet.yolo.assign           TaskAlignedAssigner, SimOTA, ATSS, DETR's Hungarian matcher
    refdet.yolo.targets          YOLOv3 best-anchor + ignore, YOLOv5 ratio test + neighbour cells
    refdet.yolo.losses           quality focal, distribution focal and varifocal losses
    refdet.yolo.detector_losses  the YOLOv3, YOLOv5 and ultralytics v8 detector losses
    refdet.yolo.nms              ultralytics/YOLOv5 NMS, merge-NMS, DIoU-NMS, weighted boxes fusion

The readable loop versions of task-aligned assignment and the DFL decode are in
``refdet.reference.yolo``. Conventions: ``refdet.conventions.describe(op)`` for
``task_aligned_assign``, ``simota_assign``, ``distribution_focal_loss``,
``yolo_non_max_suppression`` and ``diou_nms`` (profiles ``ultralytics``, ``yolov5``, ``yolox``,
``darknet``, ``mmdet``, ``paper``).
"""
from refdet.yolo.anchors import (  # noqa: F401
    YOLOV2_VOC_ANCHORS, YOLOV3_ANCHORS, AnchorFit, DimensionClusters, EvolvedAnchors, anchor_fitness,
    autoanchor_metric, check_anchor_order, dimension_clusters, kmean_anchors, make_anchors, wh_iou,
)
from refdet.yolo.decode import (  # noqa: F401
    DecodeCache, DecodeGrads, DFLCache, DistGrads, bbox2dist, dfl_backward, dfl_decode_backward,
    dfl_decode_forward, dfl_forward, dist2bbox, dist2bbox_backward, dist2bbox_forward, yolov3_decode_backward,
    yolov3_decode_forward, yolov5_decode_backward, yolov5_decode_forward, yolox_decode_backward,
    yolox_decode_forward,
)
from refdet.yolo.assign import (  # noqa: F401
    Assignment, HungarianMatch, atss_assign, hungarian_match, simota_assign, target_scores, task_aligned_assign,
)
from refdet.yolo.targets import (  # noqa: F401
    YOLOv3LevelTargets, YOLOv5LevelTargets, yolov3_assign, yolov5_build_targets,
)
from refdet.yolo.losses import (  # noqa: F401
    LogitGrads, distribution_focal_loss_backward, distribution_focal_loss_forward, quality_focal_loss_backward,
    quality_focal_loss_forward, varifocal_loss_backward, varifocal_loss_forward,
)
from refdet.yolo.detector_losses import (  # noqa: F401
    V8Loss, V8LossGrads, YOLOLoss, YOLOLossGrads, v8_detection_loss_backward, v8_detection_loss_forward,
    yolov3_loss_backward, yolov3_loss_forward, yolov5_loss_backward, yolov5_loss_forward,
)
from refdet.yolo.nms import diou_nms, weighted_boxes_fusion, yolo_non_max_suppression  # noqa: F401
from refdet.yolo import _gradcheck_cases  # noqa: E402,F401  (registers the pairs' gradient checks)

__all__ = [
    # anchors
    "YOLOV2_VOC_ANCHORS", "YOLOV3_ANCHORS", "AnchorFit", "DimensionClusters", "EvolvedAnchors",
    "wh_iou", "dimension_clusters", "autoanchor_metric", "anchor_fitness", "kmean_anchors",
    "check_anchor_order", "make_anchors",
    # decode
    "DecodeCache", "DecodeGrads", "DFLCache", "DistGrads",
    "yolov3_decode_forward", "yolov3_decode_backward", "yolov5_decode_forward", "yolov5_decode_backward",
    "yolox_decode_forward", "yolox_decode_backward", "dfl_forward", "dfl_backward",
    "dist2bbox", "dist2bbox_forward", "dist2bbox_backward", "bbox2dist",
    "dfl_decode_forward", "dfl_decode_backward",
    # assign
    "Assignment", "HungarianMatch", "target_scores", "task_aligned_assign", "simota_assign", "atss_assign",
    "hungarian_match",
    # targets
    "YOLOv3LevelTargets", "YOLOv5LevelTargets", "yolov3_assign", "yolov5_build_targets",
    # losses
    "LogitGrads", "quality_focal_loss_forward", "quality_focal_loss_backward",
    "distribution_focal_loss_forward", "distribution_focal_loss_backward",
    "varifocal_loss_forward", "varifocal_loss_backward",
    # detector losses
    "YOLOLoss", "V8Loss", "YOLOLossGrads", "V8LossGrads",
    "yolov3_loss_forward", "yolov3_loss_backward", "yolov5_loss_forward", "yolov5_loss_backward",
    "v8_detection_loss_forward", "v8_detection_loss_backward",
    # nms
    "yolo_non_max_suppression", "diou_nms", "weighted_boxes_fusion",
]
