"""Pins of refdet.tf_ops' NMS convention values (issue 19 item 2, mutation/convention_coverage.md):
the libstdc++ orders of TF's CombinedNonMaxSuppression (the per-class heap, the merge's std::sort)
and soft-NMS's ``hard_above_threshold``.

The golden answers are TensorFlow 2.21's (``tf.image.combined_non_max_suppression`` and
``raw_ops.NonMaxSuppressionV5`` on these inputs, CPU kernels, oneDNN off); the differential tests at
the end re-run TensorFlow when it is importable.
"""
import os

import numpy as np
import pytest

from refdet.tf_ops import combined_non_max_suppression, non_max_suppression

F = np.float32


def _queue_case():
    # 20 disjoint boxes of one class, all scored 0.5; at most 5 kept per class and in total
    b = np.zeros((1, 20, 1, 4), F)
    b[0, :, 0] = [[i, 0, i + 1, 1] for i in range(20)]
    return b / F(32), np.full((1, 20, 1), 0.5, F)


def _merge_case():
    # one box per class (20 classes, disjoint), every score 0.5: 20 slots of equal score to merge
    b = np.zeros((1, 1, 20, 4), F)
    for c in range(20):
        b[0, 0, c] = [c / 32, 0, (c + 1) / 32, 1 / 32]
    return b, np.full((1, 1, 20), 0.5, F)


#: TF 2.21: the score-only std::priority_queue pops the tied boxes 0, 2, 6, 14, 19 (its heap order)
TF_QUEUE = [0.0, 2.0, 6.0, 14.0, 19.0]
#: TF 2.21: std::sort (introsort, more than 16 slots) leaves the equal-score classes in this order
TF_MERGE = [10.0, 19.0, 18.0, 17.0, 16.0, 15.0, 14.0, 13.0, 12.0, 11.0, 0.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0,
            3.0, 2.0, 1.0]


@pytest.mark.parametrize("merge_sort", [None, "libstdc++", "stable"])
def test_class_queue_libstdcxx_pops_ties_in_heap_order(merge_sort):
    # five slots: the merge is stable either way (std::sort is an insertion sort up to 16), so only
    # the per-class queue decides which tied boxes are kept
    b, s = _queue_case()
    r = combined_non_max_suppression(b, s, 5, 5, 0.5, clip_boxes=False, merge_sort=merge_sort)
    assert (r.nmsed_boxes[0, :, 0] * 32).tolist() == TF_QUEUE
    low = combined_non_max_suppression(b, s, 5, 5, 0.5, clip_boxes=False, class_queue="lowest_index",
                                       merge_sort=merge_sort)
    assert (low.nmsed_boxes[0, :, 0] * 32).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("class_queue", [None, "libstdc++", "lowest_index"])
def test_merge_sort_libstdcxx_orders_equal_classes_as_introsort(class_queue):
    # one box per class: each queue holds one element, so only the merge decides the order
    b, s = _merge_case()
    r = combined_non_max_suppression(b, s, 1, 20, 0.5, clip_boxes=False, class_queue=class_queue)
    assert r.nmsed_classes[0].tolist() == TF_MERGE
    st = combined_non_max_suppression(b, s, 1, 20, 0.5, clip_boxes=False, class_queue=class_queue,
                                      merge_sort="stable")
    assert st.nmsed_classes[0].tolist() == [float(c) for c in range(20)]


def _soft_case():
    return np.array([[0, 0, 1, 1], [0, 0, 1, 0.9]], F), np.array([0.9, 0.8], F)


def test_soft_nms_hard_above_threshold():
    # IoU 0.9 > iou_threshold 0.5. TF (no hard cut in soft mode): box 1 stays with the Gaussian weight
    # 0.8 * exp(-0.5 * 0.81 / 0.5) = 0.35588649 (float32, glibc expf); the hard cut drops it
    b, s = _soft_case()
    tf_like = non_max_suppression(b, s, 5, 0.5, 0.0, soft_nms_sigma=0.5)
    assert tf_like.selected_indices.tolist() == [0, 1]
    assert tf_like.selected_scores.tolist() == [F(0.9), F(0.3558864891529083)]
    off = non_max_suppression(b, s, 5, 0.5, 0.0, soft_nms_sigma=0.5, hard_above_threshold=False)
    assert off.selected_indices.tolist() == [0, 1]
    cut = non_max_suppression(b, s, 5, 0.5, 0.0, soft_nms_sigma=0.5, hard_above_threshold=True)
    assert cut.selected_indices.tolist() == [0] and cut.valid_outputs == 1
    assert cut.selected_scores.tolist() == [F(0.9)]


# --------------------------------------------------------------------------------------------------
# the same inputs through TensorFlow
# --------------------------------------------------------------------------------------------------

def _tf():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    return pytest.importorskip("tensorflow")


def test_golden_orders_are_tensorflows():
    tf = _tf()
    b, s = _queue_case()
    out = tf.image.combined_non_max_suppression(b, s, 5, 5, 0.5, clip_boxes=False)
    assert (out[0].numpy()[0, :, 0] * 32).tolist() == TF_QUEUE
    b, s = _merge_case()
    out = tf.image.combined_non_max_suppression(b, s, 1, 20, 0.5, clip_boxes=False)
    assert out[2].numpy()[0].tolist() == TF_MERGE
    b, s = _soft_case()
    i, sc, _ = tf.raw_ops.NonMaxSuppressionV5(boxes=b, scores=s, max_output_size=5, iou_threshold=F(0.5),
                                              score_threshold=F(0.0), soft_nms_sigma=F(0.5),
                                              pad_to_max_output_size=False)
    assert i.numpy().tolist() == [0, 1] and sc.numpy().tobytes() == np.array([0.9, 0.3558864891529083], F).tobytes()
