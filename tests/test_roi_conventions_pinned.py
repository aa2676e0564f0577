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


@pytest.mark.parametrize("conv, aligned, want", [
    # f(x, y) = x on an 8 x 8 map; RoI [0, 0, 4, 4] pooled to 1 x 1: the average of a linear f is its
    # value at the bin centre: x = 2 (torchvision, aligned=False), 2 - 0.5 = 1.5 (detectron2's aligned)
    ("torchvision", None, 2.0), ("torchvision", True, 1.5), ("detectron2", None, 1.5), ("detectron2", False, 2.0)])
def test_roi_align_aligned(conv, aligned, want):
    from refdet.roi.align import roi_align

    x = np.tile(np.arange(8.0), (8, 1))[None, None]
    got = roi_align(x, np.array([[0.0, 0.0, 0.0, 4.0, 4.0]]), 1, 1.0, None, aligned, convention=conv)
    np.testing.assert_allclose(got.ravel(), [want], rtol=1e-15)


def test_roi_align_sampling_ratio_minus_one_and_zero_are_one_function():
    # every sampling_ratio <= 0 is the adaptive grid ceil(roi size / output size): torchvision's -1
    # and detectron2's / mmcv's 0 give the same bits, forward and backward; a fixed 2 differs on a
    # non-linear map
    from refdet.roi.align import roi_align_backward, roi_align_forward

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 12, 12))
    xy = rng.uniform(0, 6, (6, 2))
    boxes = np.concatenate([rng.integers(0, 2, (6, 1)), xy, xy + rng.uniform(1, 6, (6, 2))], axis=1)
    dy = rng.normal(size=(6, 3, 2, 2))
    outs = []
    for sr in (-1, 0):
        y, cache = roi_align_forward(x, boxes, 2, 1.0, sr, True)
        outs.append((y, roi_align_backward(dy, cache)))
    (y1, g1), (y2, g2) = outs
    assert np.array_equal(y1, y2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(g1, g2))
    assert not np.allclose(y1, roi_align_forward(x, boxes, 2, 1.0, 1, True)[0])
