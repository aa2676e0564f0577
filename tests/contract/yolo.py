"""Contract cases for refdet.yolo (names are "yolo.<name>": the family lives under refdet.yolo).

Every forward and backward, every assigner, loss and suppression: read-only inputs accepted and never
written; box arguments reject a wrong shape, NaN and a string; the issue's bad inputs (grids or strides
that do not match the maps, reg_max < 1, non-positive anchors, NaN in predictions or targets) raise a
ValueError naming the argument.
"""
import numpy as np

from refdet import yolo as Y
from tests.contract import Bad, Case

ANCH = np.array([[10.0, 13.0], [16.0, 30.0]])
LEVEL_ANCH = np.array([[[10.0, 13.0], [16.0, 30.0]], [[33.0, 23.0], [62.0, 45.0]]])


def _boxes(rng, n=6, scale=40.0):
    xy = rng.uniform(0, scale, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(2, scale / 2, (n, 2))], 1)


def _tal(rng):
    ap, s = Y.make_anchors([(4, 4), (2, 2)], [8.0, 16.0], dtype=np.float64)
    n = ap.shape[0]
    pb = _boxes(rng, 2 * n, 32.0).reshape(2, n, 4)
    gt = _boxes(rng, 4, 24.0).reshape(2, 2, 4)
    return (rng.random((2, n, 3)), pb, ap * s, rng.integers(0, 3, (2, 2)), gt), {"strides": [8.0, 16.0]}


def _simota(rng):
    ap, s = Y.make_anchors([(4, 4)], [8.0], dtype=np.float64)
    return (rng.random((16, 2)), _boxes(rng, 16, 32.0), ap * s, s[:, 0], rng.integers(0, 2, 2),
            _boxes(rng, 2, 24.0)), {}


def _atss(rng):
    ap, s = Y.make_anchors([(4, 4), (2, 2)], [8.0, 16.0], dtype=np.float64)
    c = ap * s
    anchors = np.concatenate([c - 4 * s, c + 4 * s], 1)
    return (anchors, [16, 4], rng.integers(0, 2, 2), _boxes(rng, 2, 24.0)), {"num_classes": 2}


def _hungarian(rng):
    pb = np.concatenate([rng.uniform(0.2, 0.8, (5, 2)), rng.uniform(0.05, 0.3, (5, 2))], 1)
    gt = np.concatenate([rng.uniform(0.2, 0.8, (2, 2)), rng.uniform(0.05, 0.3, (2, 2))], 1)
    return (rng.standard_normal((5, 4)), pb, rng.integers(0, 3, 2), gt), {}


def _v3_loss(rng):
    preds = [rng.standard_normal((1, 2, 4, 4, 7)), rng.standard_normal((1, 2, 2, 2, 7))]
    return (preds, [_boxes(rng, 2, 20.0)], [rng.integers(0, 2, 2)], LEVEL_ANCH, [8.0, 16.0], (32, 32)), {}


def _v5_loss(rng):
    preds = [rng.standard_normal((2, 2, 4, 4, 8)), rng.standard_normal((2, 2, 2, 2, 8))]
    t = np.array([[0, 1, 0.3, 0.4, 0.3, 0.5], [1, 2, 0.6, 0.5, 0.5, 0.3]])
    return (preds, t, LEVEL_ANCH, [8.0, 16.0]), {}


def _v8_loss(rng):
    ap, s = Y.make_anchors([(4, 4), (2, 2)], [8.0, 16.0], dtype=np.float64)
    n = ap.shape[0]
    gt = np.array([[[2.0, 3, 20, 25], [10, 12, 30, 28]], [[5.0, 6, 18, 14], [0, 0, 0, 0]]])
    return (rng.standard_normal((2, n, 32)), rng.standard_normal((2, n, 2)), ap, s, np.array([[1, 0], [0, 0]]),
            gt), {"reg_max": 8}


def _bwd(fwd, make_args, scalar=True):
    def make(rng):
        args, kw = make_args(rng)
        out, cache = fwd(*args, **kw)
        if scalar:
            d = 1.0
        elif isinstance(out, np.ndarray):
            d = rng.standard_normal(out.shape)
        return (d, cache), {}
    return make


_FWD = {
    "yolov3_decode": (lambda r: ((r.standard_normal((1, 2, 3, 2, 4)), ANCH, 8), {"scale_x_y": 1.05}), False),
    "yolov5_decode": (lambda r: ((r.standard_normal((1, 2, 3, 2, 4)), ANCH, (8, 16)), {}), False),
    "yolox_decode": (lambda r: ((r.standard_normal((2, 3, 2, 4)), 16), {}), False),
    "dfl": (lambda r: ((r.standard_normal((2, 3, 64)),), {}), False),
    "dist2bbox": (lambda r: ((r.uniform(0, 5, (3, 4)), r.uniform(0, 9, (3, 2))), {"out_fmt": "cxcywh"}), False),
    "dfl_decode": (lambda r: ((r.standard_normal((1, 5, 32)), np.arange(10.0).reshape(5, 2), np.full((5, 1), 8.0)),
                              {"reg_max": 8}), False),
    "quality_focal_loss": (lambda r: ((r.standard_normal((4, 3)), r.random((4, 3))), {}), False),
    "distribution_focal_loss": (lambda r: ((r.standard_normal((4, 8)), r.uniform(0, 8, 4)), {}), False),
    "varifocal_loss": (lambda r: ((r.standard_normal((4, 3)), r.random((4, 3)) * (r.random((4, 3)) < 0.3)),
                                  {"reduction": "sum"}), True),
    "yolov3_loss": (_v3_loss, True),
    "yolov5_loss": (_v5_loss, True),
    "v8_detection_loss": (_v8_loss, True),
}

CASES = [
    Case("yolo.wh_iou", lambda r: ((r.uniform(1, 50, (5, 2)), r.uniform(1, 50, (3, 2))), {})),
    Case("yolo.dimension_clusters", lambda r: ((r.uniform(1, 50, (20, 2)), 3), {"rng": 0})),
    Case("yolo.autoanchor_metric", lambda r: ((r.uniform(2, 300, (20, 2)), LEVEL_ANCH), {})),
    Case("yolo.anchor_fitness", lambda r: ((r.uniform(2, 300, (20, 2)), LEVEL_ANCH.reshape(-1, 2)), {})),
    Case("yolo.kmean_anchors", lambda r: ((r.uniform(2, 300, (30, 2)), 4), {"gen": 20, "rng": 0})),
    Case("yolo.check_anchor_order", lambda r: ((LEVEL_ANCH[::-1].copy(), [8.0, 16.0]), {})),
    Case("yolo.make_anchors", lambda r: (([(4, 4), (2, 2)], [8.0, 16.0]), {"image_size": (32, 32)})),
    Case("yolo.dist2bbox", lambda r: ((r.uniform(0, 5, (2, 3, 4)), r.uniform(0, 9, (3, 2))), {})),
    Case("yolo.bbox2dist", lambda r: ((r.uniform(5, 9, (3, 2)), _boxes(r, 3, 10.0)), {"reg_max": 15})),
    Case("yolo.target_scores", lambda r: ((Y.Assignment(np.array([1, 2]), np.array([0, -1]), np.zeros((2, 4)),
                                                         np.array([0.5, 0.0])), 2), {})),
    Case("yolo.task_aligned_assign", _tal),
    Case("yolo.simota_assign", _simota, box_args={5: "gt_boxes"}),
    Case("yolo.atss_assign", _atss, box_args={0: "anchors", 3: "gt_boxes"}),
    Case("yolo.hungarian_match", _hungarian, box_args={3: "gt_boxes"}),
    Case("yolo.yolov3_assign", lambda r: ((_boxes(r, 2, 20.0), r.integers(0, 2, 2), LEVEL_ANCH, [8.0, 16.0],
                                           [(4, 4), (2, 2)]), {"num_classes": 2}), box_args={0: "gt_boxes"}),
    Case("yolo.yolov5_build_targets", lambda r: ((np.array([[0, 1, 0.3, 0.4, 0.3, 0.5]]), LEVEL_ANCH / 8,
                                                  [(4, 4), (2, 2)]), {})),
    Case("yolo.yolo_non_max_suppression", lambda r: ((np.concatenate([r.uniform(0, 50, (1, 2, 9)),
                                                                      r.uniform(2, 20, (1, 2, 9)),
                                                                      r.random((1, 3, 9))], 1).astype(np.float32),),
                                                     {"multi_label": True, "return_indices": True})),
    Case("yolo.diou_nms", lambda r: ((_boxes(r), r.random(6), 0.45), {"idxs": r.integers(0, 2, 6)}),
         box_args={0: "boxes"}),
    Case("yolo.weighted_boxes_fusion", lambda r: (([_boxes(r, 4) / 80, _boxes(r, 3) / 80], [r.random(4), r.random(3)],
                                                   [r.integers(0, 2, 4), r.integers(0, 2, 3)]), {})),
]
for _name, (_make, _scalar) in _FWD.items():
    CASES.append(Case(f"yolo.{_name}_forward", _make))
    CASES.append(Case(f"yolo.{_name}_backward", _bwd(getattr(Y, f"{_name}_forward"), _make, _scalar)))

BAD = [
    Bad("yolo.make_anchors", lambda r: (([(4, 4), (2, 2)], [8.0]), {}), ValueError, "`strides`.*one stride"),
    Bad("yolo.make_anchors", lambda r: (([(4, 4), (3, 3)], [8.0, 16.0]), {"image_size": (32, 32)}), ValueError,
        r"`feature_sizes\[1\]`.*does not match"),
    Bad("yolo.dfl_forward", lambda r: ((np.zeros((2, 4)),), {"reg_max": 0}), ValueError, "`reg_max` must be >= 1"),
    Bad("yolo.dfl_decode_forward", lambda r: ((np.zeros((1, 2, 4)), np.zeros((2, 2))), {"reg_max": -3}), ValueError,
        "`reg_max`"),
    Bad("yolo.yolov3_decode_forward", lambda r: ((np.zeros((1, 2, 2, 2, 4)), -ANCH, 8), {}), ValueError,
        "`anchors`.*positive"),
    Bad("yolo.check_anchor_order", lambda r: ((np.zeros((2, 2, 2)), [8, 16]), {}), ValueError, "`anchors`.*positive"),
    Bad("yolo.dimension_clusters", lambda r: ((np.array([[3.0, -1.0]]), 1), {}), ValueError, "`wh`.*positive"),
    Bad("yolo.task_aligned_assign", lambda r: ((np.full((1, 3, 2), np.nan), np.zeros((1, 3, 4)), np.zeros((3, 2)),
                                                np.array([[0]]), np.array([[[0.0, 0, 5, 5]]])), {}), ValueError,
        "`pred_scores`.*NaN"),
    Bad("yolo.simota_assign", lambda r: ((np.full((2, 1), 2.0), np.zeros((2, 4)), np.zeros((2, 2)), np.ones(2),
                                          np.array([0]), np.array([[0.0, 0, 4, 4]])), {}), ValueError,
        "`pred_scores`.*probabilities"),
    Bad("yolo.yolov5_build_targets", lambda r: ((np.full((1, 6), np.nan), LEVEL_ANCH, [(4, 4), (2, 2)]), {}),
        ValueError, "`targets`.*NaN"),
    Bad("yolo.yolo_non_max_suppression", lambda r: ((np.full((1, 6, 7), np.nan),), {}), ValueError,
        "`prediction`.*NaN"),
    Bad("yolo.v8_detection_loss_forward", lambda r: ((np.zeros((1, 4, 8)), np.zeros((1, 4, 2)), np.zeros((4, 2)),
                                                      np.ones(4), np.zeros((1, 0), int), np.zeros((1, 0, 4))),
                                                     {"reg_max": 0}), ValueError, "`reg_max` must be >= 1"),
    Bad("yolo.atss_assign", lambda r: ((np.zeros((3, 4)), [2], np.array([0]), np.array([[0.0, 0, 2, 2]])),
                                       {"num_classes": 1}), ValueError, "`num_level_anchors`"),
]

EXEMPT = {
    "yolo.YOLOV2_VOC_ANCHORS": "constant (read-only array)",
    "yolo.YOLOV3_ANCHORS": "constant (read-only array)",
    "yolo.AnchorFit": "NamedTuple type of autoanchor_metric's result",
    "yolo.DimensionClusters": "NamedTuple type of dimension_clusters' result",
    "yolo.EvolvedAnchors": "NamedTuple type of kmean_anchors' result",
    "yolo.DecodeCache": "NamedTuple cache type of the decoders",
    "yolo.DecodeGrads": "NamedTuple gradient type of the decoders",
    "yolo.DFLCache": "NamedTuple cache type of dfl_forward",
    "yolo.DistGrads": "NamedTuple gradient type of dist2bbox_backward",
    "yolo.Assignment": "NamedTuple type of the assigners' result",
    "yolo.HungarianMatch": "NamedTuple type of hungarian_match's result",
    "yolo.YOLOv3LevelTargets": "NamedTuple type of yolov3_assign's levels",
    "yolo.YOLOv5LevelTargets": "NamedTuple type of yolov5_build_targets' levels",
    "yolo.LogitGrads": "NamedTuple gradient type of the GFL/VFL losses",
    "yolo.YOLOLoss": "NamedTuple type of the YOLOv3/v5 losses",
    "yolo.V8Loss": "NamedTuple type of the v8 loss",
    "yolo.YOLOLossGrads": "NamedTuple gradient type of the YOLOv3/v5 losses",
    "yolo.V8LossGrads": "NamedTuple gradient type of the v8 loss",
}
