"""Pins of ``retinanet_targets``' ``min_pos_iou`` (issue 19 item 2, mutation/convention_coverage.md):
no gate (``-inf``: torchvision, detectron2, TF, Caffe) against mmdet's ``min_pos_iou=0``.

On a real IoU the two cannot differ: every gt's best IoU is >= 0, so mmdet's gate ``max_overlap >=
min_pos_iou`` lets every gt through. They part only on a gt whose best IoU is NaN, which the matcher
documents (NaN qualities never tie; ``np.argmax``/``torch.max`` take the first NaN): float32 boxes whose
areas overflow to inf give ``inf / (inf + inf - inf)``. There, under the forcing rule of the TF
profile (``first_forcing_gt_first_wins``: each gated gt forces its argmax anchor), no gate forces the
NaN gt onto its first NaN anchor while mmdet's gate (``NaN >= 0`` is false) skips it.
"""
import warnings

import numpy as np
import pytest

from refdet import box_iou
from refdet.targets import retinanet_targets

F = np.float32
# float32 boxes of side ~2.5e19: areas overflow to inf
ANCHORS = np.array([[5e18, 0, 2e19, 3e19], [5e18, 5e18, 3e19, 3e19], [0, 2e19, 5e18, 3e19]], F)
GTS = np.array([[5e18, 5e18, 3e19, 3e19], [5e18, 1e19, 3e19, 2e19]], F)


def _matched(conv, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)         # the overflow is the point
        return retinanet_targets(ANCHORS, GTS, np.array([0, 1]), 2, convention=conv, **kw).matched.tolist()


def test_the_iou_matrix_has_a_nan_row():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = box_iou(GTS, ANCHORS)
    # gt 0 against anchors 0 and 1: inter inf, union inf + inf - inf = NaN; gt 1: finite / inf = 0
    assert np.isnan(q[0, :2]).all() and q[0, 2] == 0 and q[1].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("conv, kw", [("tf", {}), ("tf", {"min_pos_iou": -np.inf}),
                                      ("mmdet", {"low_quality": "first_forcing_gt_first_wins", "min_pos_iou": -np.inf})])
def test_no_gate_forces_a_nan_gt_onto_its_first_nan_anchor(conv, kw):
    # gt 0 (best IoU NaN) forces anchor 0 (its first NaN); gt 1 (best IoU 0) forces anchor 0 too (its first
    # 0): the first gt wins. Anchor 1: NaN max IoU counts as a match (gt 0); anchor 2: 0 < 0.4, background
    assert _matched(conv, **kw) == [0, 0, -1]


@pytest.mark.parametrize("conv, kw", [("mmdet", {"low_quality": "first_forcing_gt_first_wins"}),
                                      ("mmdet", {"low_quality": "first_forcing_gt_first_wins", "min_pos_iou": 0.0}),
                                      ("tf", {"min_pos_iou": 0.0})])
def test_mmdet_gate_skips_a_nan_gt(conv, kw):
    # mmdet MaxIoUAssigner: `if gt_max_overlaps[i] >= self.min_pos_iou`: NaN >= 0 is false, gt 0 forces
    # nothing; gt 1 (0 >= 0) forces anchor 0
    assert _matched(conv, **kw) == [1, 0, -1]
