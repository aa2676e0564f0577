"""Pins of the matcher's convention values the coverage run's tests did not catch
(mutation/convention_coverage.md): one IoU matrix on which every ``low_quality`` mode, the
``min_pos_iou`` gate, ``background_after`` and ``neg_floor`` give different matches.

    anchors:      0     1     2     3     4
    gt 0        0.5   0.6   0.1   0    -0.5
    gt 1        0.2   0.45  0.45  0    -0.5
    gt 2        0     0     0     0.25 -0.5

high 0.7, low 0.3: no anchor is positive; anchors 0..2 lie between the thresholds (-2), 3 and 4
below (-1). Best anchors: gt 0 -> anchor 1 (0.6); gt 1 -> anchors 1 and 2 (tie at 0.45); gt 2 ->
anchor 3 (0.25). Anchor 1's own best gt is gt 0.
"""
import numpy as np
import pytest

from refdet.matcher import match

Q = np.array([[0.5, 0.6, 0.1, 0.0, -0.5],
              [0.2, 0.45, 0.45, 0.0, -0.5],
              [0.0, 0.0, 0.0, 0.25, -0.5]])


@pytest.mark.parametrize("mode, want", [
    ("off", [-2, -2, -2, -1, -1]),
    # every tying anchor promoted, each to its own argmax gt: 1 -> gt 0, 2 -> gt 1, 3 -> gt 2
    ("all_ties_argmax_gt", [-2, 0, 1, 2, -1]),
    # every tying anchor forced to the promoting gt, later gts overwrite: 1 -> gt 1
    ("all_ties_forcing_gt_last_wins", [-2, 1, 1, 2, -1]),
    # only each gt's first best anchor (gt 1's is anchor 1, not 2), last gt wins anchor 1
    ("first_forcing_gt_last_wins", [-2, 1, -2, 2, -1]),
    # ... the first gt keeps anchor 1
    ("first_forcing_gt_first_wins", [-2, 0, -2, 2, -1]),
])
def test_low_quality_modes(mode, want):
    assert match(Q, low_quality=mode).tolist() == want


@pytest.mark.parametrize("conv, want", [
    ("torchvision", [-2, 0, 1, 2, -1]), ("detectron2", [-2, 0, 1, 2, -1]), ("caffe", [-2, 0, 1, 2, -1]),
    ("paper", [-2, 0, 1, 2, -1]),
    # mmdet: forcing gt, last wins; gt 2's best 0.25 fails min_pos_iou 0.3 (RPN); IoU -0.5 is below
    # its neg_floor 0: ignored (-2), not negative
    ("mmdet", [-2, 1, 1, -1, -2]),
    ("tf", [-2, 0, -2, 2, -1]),
])
def test_profiles(conv, want):
    assert match(Q, convention=conv).tolist() == want


def test_gate_background_after_and_floor():
    # min_pos_iou 0.3: gt 2 (best 0.25) promotes nothing; Detectron1's background written after the
    # positives turns the promoted anchor 3 (0.25 < low) negative again; neg_floor 0 keeps -0.5 out of
    # the negatives
    assert match(Q, min_pos_iou=0.3).tolist() == [-2, 0, 1, -1, -1]
    assert match(Q, background_after=True).tolist() == [-2, 0, 1, -1, -1]
    assert match(Q, neg_floor=0.0).tolist() == [-2, 0, 1, 2, -2]
    assert match(Q, min_pos_iou=0.2, background_after=False, neg_floor=float("-inf")).tolist() == [-2, 0, 1, 2, -1]
