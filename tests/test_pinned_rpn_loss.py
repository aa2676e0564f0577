"""Pin of ``rpn_loss``' ``reg_normalizer='sampled_per_image'`` (py-faster-rcnn; issue 19 item 2,
mutation/convention_coverage.md): each image's box loss over its own sampled count, then summed,
against torchvision's one division by the batch's sampled count. They differ only when the images
sample different numbers of anchors.
"""
import numpy as np
import pytest

from refdet.losses.detector import LossTargets, rpn_loss_backward, rpn_loss_forward

# two images of 6 anchors. Image 0 samples 2 anchors (1 positive, 1 negative), image 1 samples 4
# (1 positive, 3 negatives); -1: not sampled. Each positive's deltas miss their targets by 1 in dx
# only: smooth L1 (beta 1/9) = 1 - 0.5 / 9 = 17/18 per positive.
LABELS = np.array([[1, 0, -1, -1, -1, -1], [1, 0, 0, 0, -1, -1]])
TARGETS = np.zeros((2, 6, 4))
DELTAS = np.zeros((2, 6, 4))
DELTAS[:, 0, 0] = 1.0
OBJ = np.zeros((2, 6))
L1 = 1 - 0.5 / 9


def _loss(**kw):
    return rpn_loss_forward(OBJ, DELTAS, LossTargets(LABELS, TARGETS), **kw)


@pytest.mark.parametrize("kw", [{"convention": "caffe"}, {"reg_normalizer": "sampled_per_image"}])
def test_sampled_per_image_normalises_each_image_by_its_own_count(kw):
    # py-faster-rcnn anchor_target_layer.py: bbox_outside_weights = 1 / num_examples of the image:
    # 17/18 / 2 + 17/18 / 4
    losses, cache = _loss(**kw)
    assert float(losses.box_regression) == pytest.approx(L1 / 2 + L1 / 4, rel=1e-15)
    # the gradient carries the same per-image weights: d/d dx = 1 / 2 (image 0), 1 / 4 (image 1)
    g = rpn_loss_backward((0.0, 1.0), cache).ddeltas
    assert g[:, 0, 0].tolist() == [0.5, 0.25]


def test_sampled_normalises_by_the_batch_count():
    # torchvision rpn.py: smooth_l1(...).sum() / sampled_inds.numel(): (17/18 + 17/18) / 6
    losses, cache = _loss(convention="torchvision")
    assert float(losses.box_regression) == pytest.approx(2 * L1 / 6, rel=1e-15)
    assert rpn_loss_backward((0.0, 1.0), cache).ddeltas[:, 0, 0].tolist() == [1 / 6, 1 / 6]
