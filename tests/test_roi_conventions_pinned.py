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
