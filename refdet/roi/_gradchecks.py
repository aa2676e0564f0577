"""Gradient-check cases of the RoI operators and the box head / Fast R-CNN loss (:mod:`refdet.roi_heads`),
registered for ``refdet verify self`` / ``gradcheck_all``.

Small float64 inputs with box corners off the sample grid (bilinear kinks), distinct feature values
(max pooling ties) and crop lines off integer pixels (crop_and_resize's floor/ceil kink).
"""
from __future__ import annotations

import numpy as np

from refdet._gradcheck_registry import register_gradcheck


def _register():
    from refdet.roi import align, crop, levels, pool

    small = dict(max_elements=16)
    rois = np.array([[0, 0.37, 1.13, 5.71, 4.29], [1, -1.41, 2.07, 3.53, 9.9], [1, 2.2, 0.3, 2.6, 0.7]])

    def feats(rng, shape=(2, 2, 6, 7)):
        return rng.standard_normal(shape)

    def distinct(rng, shape=(2, 2, 6, 7)):
        return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + 1.0

    register_gradcheck("roi_align aligned adaptive", align.roi_align_forward, align.roi_align_backward,
                       lambda r: ((feats(r), rois, (2, 3)), dict(spatial_scale=0.9, aligned=True)),
                       wrt=["features"], **small)
    register_gradcheck("roi_align sampling 2 (torchvision)", align.roi_align_forward, align.roi_align_backward,
                       lambda r: ((feats(r), rois, 2), dict(spatial_scale=0.9, sampling_ratio=2)),
                       wrt=["features"], **small)
    register_gradcheck("roi_align max mode (ONNX)", align.roi_align_forward, align.roi_align_backward,
                       lambda r: ((distinct(r), rois[:2], 2), dict(sampling_ratio=2, mode="max")),
                       wrt=["features"], **small)
    register_gradcheck("roi_pool", pool.roi_pool_forward, pool.roi_pool_backward,
                       lambda r: ((distinct(r), rois, (2, 3)), {}), wrt=["features"], **small)
    boxes = np.array([[0.13, 0.21, 0.77, 0.93], [-0.2, 0.11, 0.57, 1.3], [0.91, 0.83, 0.07, 0.29]])
    register_gradcheck("crop_and_resize bilinear (image, boxes)", crop.crop_and_resize_forward,
                       crop.crop_and_resize_backward,
                       lambda r: ((feats(r, (2, 2, 5, 6)), boxes, np.array([0, 1, 1]), (3, 4)), {}), **small)
    register_gradcheck("crop_and_resize nearest (image)", crop.crop_and_resize_forward,
                       crop.crop_and_resize_backward,
                       lambda r: ((feats(r, (2, 2, 5, 6)), boxes, np.array([0, 1, 1]), (3, 4)),
                                  dict(method="nearest")), wrt=["image"], **small)
    register_gradcheck("tf_crop_and_pool", crop.tf_crop_and_pool_forward, crop.tf_crop_and_pool_backward,
                       lambda r: ((feats(r, (2, 2, 6, 5)), boxes[:2], np.array([0, 1])), dict(crop_size=6)),
                       **small)
    register_gradcheck("multiscale_roi_align 2 levels", levels.multiscale_roi_align_forward,
                       levels.multiscale_roi_align_backward,
                       lambda r: (([r.standard_normal((1, 2, 16, 16)), r.standard_normal((1, 2, 8, 8))],
                                   [np.array([[1.3, 2.1, 5.7, 4.9], [0.7, 0.9, 14.2, 13.6]])], 2),
                                  dict(scales=[1.0, 0.5], min_level=3, canonical_scale=8.0)),
                       wrt=["features"], **small)

    from refdet import roi_heads as RH

    register_gradcheck("box_head (fc6, fc7, cls_score, bbox_pred)", RH.box_head_forward, RH.box_head_backward,
                       lambda r: ((RH.box_head_init(12, 3, representation_size=5, rng=r, dtype=np.float64),
                                   r.standard_normal((4, 3, 2, 2))), {}), **small)
    for conv, cols, labels in (("torchvision", 16, [1, 0, 3, 2, 1, 0]), ("detectron2", 12, [1, 3, 0, 2, 1, 3]),
                               ("caffe", 16, [1, 0, 3, 2, 1, 0])):
        register_gradcheck(f"fastrcnn_loss {conv}", RH.fastrcnn_loss_forward, RH.fastrcnn_loss_backward,
                           lambda r, c=cols, lab=labels, conv=conv: (
                               (r.standard_normal((6, 4)), r.standard_normal((6, c)) * 0.7 + 0.3, np.array(lab),
                                np.zeros((6, 4))), dict(convention=conv)),
                           wrt=["class_logits", "box_regression"], **small)


_register()
