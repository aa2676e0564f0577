"""Pin of ``multiscale_roi_align``'s ``plus_one=True`` (the caffe profile; no other test resolved it,
mutation/convention_coverage.md): Detectron1's level rule counts +1 pixel widths.
"""
import numpy as np
import pytest

from refdet.roi.levels import multiscale_roi_align_forward


@pytest.mark.parametrize("plus_one, level", [(None, 1), (True, 1), (False, 0)])
def test_caffe_level_counts_plus_one_widths(plus_one, level):
    # a 223 x 223 box: caffe (canonical 224 at level 4, eps_inside 1e-6) takes sqrt(224 * 224) / 224
    # + 1e-6 > 1 -> log2 > 0 -> level 4 with +1 widths; 223 / 224 + 1e-6 < 1 -> level 3 without.
    feats = [np.zeros((1, 1, 32, 32)), np.zeros((1, 1, 16, 16))]     # levels 3 and 4 (scales 1/8, 1/16)
    boxes = np.array([[0.0, 10.0, 10.0, 233.0, 233.0]])
    _, cache = multiscale_roi_align_forward(feats, boxes, 2, scales=[1 / 8, 1 / 16], convention="caffe",
                                            plus_one=plus_one)
    assert cache.levels.tolist() == [level]


def test_level_eps_inside_decides_a_box_just_below_the_boundary():
    # level = floor(4 + log2(sqrt(w h) / 224 + eps_inside) + eps_outside), levels 2..5 -> index 0..3.
    # torchvision (eps_inside 0, eps_outside 1e-6): a box of side 224 * 2^-(1e-6 + 7e-9) has
    # log2 = -1.007e-6; + 1e-6 stays below 0: level 3 (index 1). eps_inside 1e-8 adds
    # 1e-8 / (1 * ln 2) = 1.44e-8 to the log: above 0, level 4 (index 2).
    from refdet.roi.levels import assign_roi_levels

    s = 224 * 2 ** -(1e-6 + 7e-9)
    b = np.array([[0.0, 0.0, s, s]])
    assert assign_roi_levels(b, convention="torchvision").tolist() == [1]
    assert assign_roi_levels(b, convention="torchvision", eps_inside=1e-8).tolist() == [2]
    # detectron2 (eps_inside 1e-8, eps_outside 0): side 224 * 2^-7e-9, log2 = -7e-9; + 1.44e-8 > 0:
    # level 4; without the eps, level 3
    s = 224 * 2 ** -7e-9
    b = np.array([[0.0, 0.0, s, s]])
    assert assign_roi_levels(b, convention="detectron2").tolist() == [2]
    assert assign_roi_levels(b, convention="detectron2", eps_inside=0.0).tolist() == [1]


# boxes at the level boundaries of every profile: side s with log2(s / 224) just below 0 by 7e-9,
# 1e-6 + 7e-9 and 5e-7 (the eps_inside / eps_outside placements), 223 (+1 widths), and mmdet's 56
# boundary (5e-7 below); plus ordinary sizes
_SIDES = [224 * 2 ** -7e-9, 224 * 2 ** -(1e-6 + 7e-9), 224 * 2 ** -5e-7, 223.0, 56 * 2 ** -5e-7,
          112 * 2 ** -5e-7, 30.0, 100.0, 500.0]
_BOUNDARY = np.array([[0.0, 0.0, s, s] for s in _SIDES])


@pytest.mark.parametrize("conv", ["torchvision", "detectron2", "mmdet", "caffe", "onnx", "paper"])
def test_multiscale_levels_are_assign_roi_levels(conv):
    # multiscale_roi_align's level knobs (canonical scale and level, eps_inside, eps_outside, plus_one)
    # decide the same levels as assign_roi_levels under the same profile, box for box, on the
    # boundaries where each knob matters
    from refdet.roi.levels import assign_roi_levels

    feats = [np.zeros((1, 1, 16 >> i, 16 >> i)) for i in range(4)]       # levels 2..5
    rois = np.concatenate([np.zeros((len(_BOUNDARY), 1)), _BOUNDARY], axis=1)
    _, cache = multiscale_roi_align_forward(feats, rois, 1, scales=[1 / 4, 1 / 8, 1 / 16, 1 / 32],
                                            convention=conv)
    want = assign_roi_levels(_BOUNDARY, min_level=2, max_level=5, convention=conv)
    assert cache.levels.tolist() == want.tolist()
