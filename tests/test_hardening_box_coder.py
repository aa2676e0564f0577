"""Hardening of refdet.box_coder: invalid geometry is a caller error, never an inf or NaN code."""
import numpy as np
import pytest

import refdet

A = np.array([[0, 0, 10, 10.0], [5, 5, 25, 15.0]])
G = np.array([[1, 1, 9, 12.0], [6, 4, 20, 18.0]])


@pytest.mark.parametrize("bad,width", [([10, 0, 0, 10.0], -10.0), ([5, 0, 5, 10.0], 0.0)])
def test_flipped_or_zero_width_anchor_is_refused_with_row_and_value(bad, width):
    a = A.copy()
    a[1] = bad
    with pytest.raises(ValueError, match=rf"`anchors` row 1 has width {width} and height 10.0.*detectron2"):
        refdet.encode_boxes(G, a)


def test_flipped_target_box_is_refused():
    g = G.copy()
    g[0] = [9, 1, 1, 12]
    with pytest.raises(ValueError, match=r"`boxes` row 0 has width -8.0"):
        refdet.encode_boxes(g, A)


def test_plus_one_and_tf_eps_define_zero_width_boxes():
    # caffe's +1: a box with x1 == x2 is one pixel wide (py-faster-rcnn), TF's 1e-8: finite codes
    z = np.array([[5, 0, 5, 10.0]])
    assert np.isfinite(refdet.encode_boxes(z, z, convention="caffe")).all()
    assert np.isfinite(refdet.encode_boxes(z, A[:1], convention="tf")).all()
    # a flipped box stays refused under tf (width -10 + 1e-8 < 0)
    with pytest.raises(ValueError, match="`anchors` row 0"):
        refdet.encode_boxes(A[:1], np.array([[10, 0, 0, 10.0]]), convention="tf")


def test_injected_functions_must_be_callable():
    with pytest.raises(TypeError, match="`log` must be a callable or None"):
        refdet.encode_boxes(G, A, log="log")
    with pytest.raises(TypeError, match="`exp` must be a callable or None"):
        refdet.decode_boxes(np.zeros((2, 4)), A, exp=1.5)


@pytest.mark.parametrize("w", [(1, 1, 1j, 1), (1, 1, np.array([1, 2]), 1), (1, True, 1, 1)])
def test_weights_of_the_wrong_kind_name_weights(w):
    with pytest.raises(TypeError, match="`weights` must be 4 real numbers"):
        refdet.encode_boxes(G, A, weights=w)


def test_means_of_the_wrong_kind_name_means():
    with pytest.raises(TypeError, match="`means` must be 4 real numbers"):
        refdet.encode_boxes(G, A, means=(0, 0, 1j, 0), weight_mode="divide")
