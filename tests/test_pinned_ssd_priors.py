"""Pins of SSD convention values (issue 19 item 2, mutation/convention_coverage.md): the default-box
knobs ``reduce_lowest`` (TF) and ``skip_unit_ratio`` (Caffe), and ``ssd_targets``' ``plus_one=None``
("as the box coder's profile").

Goldens worked by hand: one 300 x 300 image, 1 x 1 feature maps (one cell, centre 150), so each level
lists its boxes once.
"""
import numpy as np
import pytest

from refdet import ssd_default_boxes
from refdet.targets import ssd_targets


def _r(b):
    return np.round(b, 3).tolist()


# level 0: s = 0.2 (60 px), s' = sqrt(0.2 * 0.5) (94.868 px); ratio 2: 60 sqrt 2 x 60 / sqrt 2 = 84.853 x 42.426
SQUARE = [120.0, 120.0, 180.0, 180.0]
PRIME = [102.566, 102.566, 197.434, 197.434]
WIDE = [107.574, 128.787, 192.426, 171.213]
TALL = [128.787, 107.574, 171.213, 192.426]


def _pairs(conv, **kw):
    return ssd_default_boxes((300, 300), [1, 1], aspect_ratios=[[1.0, 2.0], [2.0]], scales=[0.2, 0.5, 0.8],
                             clip=False, convention=conv, **kw)


@pytest.mark.parametrize("conv, kw", [("caffe", {}), ("torchvision", {"skip_unit_ratio": True})])
def test_caffe_skips_a_listed_unit_ratio(conv, kw):
    # Caffe PriorBox: aspect_ratios_ starts as [1]; a listed 1 "already exists" and adds nothing:
    # level 0 = square, s' square, wide, tall (4); level 1 = 4
    b = _pairs(conv, **kw)
    assert b.shape == (8, 4)
    assert _r(b[:4]) == [SQUARE, PRIME, WIDE, TALL]


@pytest.mark.parametrize("conv, kw", [("torchvision", {}), ("caffe", {"skip_unit_ratio": False})])
def test_torchvision_repeats_a_listed_unit_ratio(conv, kw):
    # torchvision DefaultBoxGenerator._generate_wh_pairs: a listed 1 adds [s, s] twice (wide and tall
    # of ratio 1): level 0 = 2 + 2 * 2 = 6 boxes, level 1 = 4
    b = _pairs(conv, **kw)
    assert b.shape == (10, 4)
    assert _r(b[:6]) == [SQUARE, PRIME, SQUARE, SQUARE, WIDE, TALL]


def _tf(**kw):
    return ssd_default_boxes((300, 300), [1, 1], aspect_ratios=[[1.0, 2.0, 0.5], [1.0, 2.0, 0.5]], clip=False,
                             convention="tf", **kw)


@pytest.mark.parametrize("kw", [{}, {"reduce_lowest": True}])
def test_tf_reduces_the_lowest_layer(kw):
    # TF create_ssd_anchors(reduce_boxes_in_lowest_layer=True): layer 0 is (0.1, 1), (s0, 2), (s0, 0.5):
    # a 30 px square [135, 165] and the two s0 = 0.2 (60 px) boxes; no interpolated box
    b = _tf(**kw)
    assert b.shape == (7, 4)
    assert _r(b[:3]) == [[135.0, 135.0, 165.0, 165.0], WIDE, TALL]


def test_tf_without_reduction_lists_every_ratio_on_the_lowest_layer():
    # reduce_lowest=False: layer 0 is s0 x (1, 2, 0.5) plus the interpolated sqrt(0.2 * 0.9) square
    # (0.42426 * 300 = 127.279 px)
    b = _tf(reduce_lowest=False)
    assert b.shape == (8, 4)
    assert _r(b[:4]) == [SQUARE, WIDE, TALL, [86.36, 86.36, 213.64, 213.64]]


# ssd_targets: prior [0, 0, 10, 10] and gt [1, 0, 11, 10] (IoU 9/11 >= 0.5): dx = (gx - px) / pw / 10


@pytest.mark.parametrize("plus_one, dx", [(None, 1 / 110), (True, 1 / 110), (False, 1 / 100)])
def test_ssd_targets_plus_one_none_defers_to_the_coder_profile(plus_one, dx):
    # plus_one=None (torchvision's ssd_targets): the box coder's own +1 rule. The caller names Caffe's
    # coder (encode_kw): +1 widths, 11 -> dx = 1 / 11 / 10 (its weights divide); an explicit False
    # overrides the coder: dx = 1 / 10 / 10
    d = np.array([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    g = np.array([[1.0, 0.0, 11.0, 10.0]])
    t = ssd_targets(d, g, np.array([1]), encode_kw={"convention": "caffe"}, plus_one=plus_one)
    assert t.matched.tolist() == [0, -1]
    np.testing.assert_allclose(t.deltas[0], [dx, 0.0, 0.0, 0.0], rtol=1e-15, atol=0)
