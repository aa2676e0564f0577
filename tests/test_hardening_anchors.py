"""Hardening of refdet.anchors: sizes that cannot be served are refused before allocating."""
import numpy as np
import pytest

import refdet
from refdet import _checks

BASE = refdet.cell_anchors((32.0,), (1.0,))


def test_grid_anchors_huge_feature_size_names_argument_and_size():
    # 100000 x 100000 cells x 1 anchor x 4 = 4e10 float64 = 298 GiB: refused before any allocation
    with pytest.raises(ValueError, match=r"`feature_size` asks for 40,000,000,000 elements .*298 GiB"):
        refdet.grid_anchors(BASE, (100000, 100000), 16)
    with pytest.raises(ValueError, match="`feature_size` asks for"):
        refdet.grid_anchors(BASE, (2 ** 63, 1), 16)


def test_grid_anchors_cap_is_a_keyword():
    with pytest.raises(ValueError, match=r"`feature_size` asks for 400 elements"):
        refdet.grid_anchors(BASE, (10, 10), 16, max_elements=399)
    assert refdet.grid_anchors(BASE, (10, 10), 16, max_elements=400).shape == (100, 4)


def test_octave_sizes_huge_count_refused_instantly():
    with pytest.raises(ValueError, match=r"`scales_per_octave` asks for 2,000,000,000 elements"):
        refdet.octave_sizes((32.0, 64.0), 10 ** 9)
    with pytest.raises(ValueError, match="`scales_per_octave` asks for"):
        refdet.pyramid_anchors((64, 64), [(8, 8), (4, 4)], None, (32.0, 64.0), (1.0,), scales_per_octave=10 ** 9)


def test_pyramid_and_ssd_boxes_huge_maps_refused():
    with pytest.raises(ValueError, match="`feature_sizes` asks for"):
        refdet.pyramid_anchors((64, 64), [(10 ** 6, 10 ** 6)], [8], (32.0,), (1.0,))
    with pytest.raises(ValueError, match="`feature_sizes` asks for"):
        refdet.ssd_default_boxes((300, 300), [10 ** 9], aspect_ratios=[[2]], scales=[0.2, 0.9])


def test_scalar_array_sizes_and_ratios_are_numbers():
    # a 0-d array is a number: no "len() of unsized object"
    a, _ = refdet.pyramid_anchors((64, 64), [(4, 4)], [16], np.array(32.0), np.array(1.0))
    b, _ = refdet.pyramid_anchors((64, 64), [(4, 4)], [16], 32.0, 1.0)
    assert np.array_equal(a, b)


def test_ssd_normalized_must_be_bool():
    with pytest.raises(TypeError, match="`normalized` must be a bool"):
        refdet.ssd_default_boxes((300, 300), [3], aspect_ratios=[[2]], scales=[0.2, 0.9],
                                 normalized=np.array([True, False]))


def test_ssd_sizes_from_ratios_blames_num_levels():
    with pytest.raises(ValueError, match="`num_levels` = 1000000000 needs"):
        refdet.ssd_sizes_from_ratios(300, 10 ** 9, 0.2, 0.9)


def test_cap_default_documented():
    assert _checks.MAX_ELEMENTS == 2 ** 28
