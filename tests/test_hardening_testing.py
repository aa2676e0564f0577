"""Hardening of refdet.testing: malformed results under test are AssertionErrors saying what is wrong."""
import numpy as np
import pytest

import refdet
from refdet.testing import (assert_allclose_ulp, assert_anchors_equal, assert_matches_equal, assert_nms_equal,
                            assert_sample_valid, check_gradients, explain_nms_difference, match_variants,
                            ulp_distance)

B = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 9, 10.0]])
S = np.array([0.9, 0.8, 0.7, 0.6])
KEEP = refdet.nms(B, S, 0.5)


@pytest.mark.parametrize("bad,msg", [
    ([0, 12], r"`keep` \(the result under test\)\[1\] = 12 is not indices of kept boxes"),
    ([0, -3], r"\[1\] = -3 is not"),
    ([0, 2 ** 40], r"\[1\] = 1099511627776 is not"),
    ([0, 0], "lists 0 more than once"),
    ([0.5], r"\[0\] = 0.5 is not an integer index"),
    (None, "is not an array of numbers"),
    ("0 2", "is not an array of numbers"),
    ([[0, 2]], "must be 1-D"),
    ([True, False], "booleans"),
])
@pytest.mark.parametrize("fn", [assert_nms_equal, explain_nms_difference])
def test_nms_comparators_turn_malformed_keep_into_assertion(fn, bad, msg):
    with pytest.raises(AssertionError, match=msg):
        fn(bad, KEEP, B, S, iou_threshold=0.5)


def test_nms_comparator_expected_is_checked_too_and_integral_floats_are_indices():
    with pytest.raises(AssertionError, match=r"`expected`\[0\] = 9 is not"):
        assert_nms_equal(KEEP, [9], B, S)
    assert_nms_equal(KEEP.astype(float), KEEP, B, S)        # [0.0, 2.0] reads as indices


def test_nms_comparator_options_are_named():
    with pytest.raises(ValueError, match="`iou_threshold` must"):
        assert_nms_equal(KEEP, KEEP, B, S, iou_threshold=1.5)
    with pytest.raises(ValueError, match="`scores` must have length 4"):
        assert_nms_equal(KEEP, KEEP, B, S[:2])


@pytest.mark.parametrize("frac", [float("inf"), float("-inf"), float("nan"), 1.5])
def test_sample_valid_infinite_fraction_names_it(frac):
    lab = np.array([1, 0, 0, 1, -1])
    with pytest.raises(ValueError, match="`positive_fraction`"):
        assert_sample_valid(lab, lab == 1, lab == 0, 4, frac)


def test_sample_valid_malformed_masks_are_assertions():
    lab = np.array([1, 0, 0, 1, -1])
    with pytest.raises(AssertionError, match="pos_mask has shape"):
        assert_sample_valid(lab, [True], lab == 0, 4, 0.5)
    with pytest.raises(AssertionError, match="neg_mask is not a 0/1 mask"):
        assert_sample_valid(lab, lab == 1, np.array([0, 2, 1, 0, 0]), 4, 0.5)
    with pytest.raises(AssertionError, match="neg_mask is not an array of numbers"):
        assert_sample_valid(lab, lab == 1, None, 4, 0.5)
    with pytest.raises(TypeError, match="`labels` must be an array of real numbers"):
        assert_sample_valid(lab.astype(str), lab == 1, lab == 0, 4, 0.5)


def test_matches_comparator_malformed_results():
    iou = np.array([[0.8, 0.2, 0.5], [0.1, 0.6, 0.35]])
    good = refdet.match(iou)
    with pytest.raises(AssertionError, match=r"matches\[1\] = 5 is not gt indices"):
        assert_matches_equal(np.array([0, 5, -1]), good, iou)
    with pytest.raises(AssertionError, match=r"matches\[0\] = 0.5 is not an integer"):
        assert_matches_equal([0.5, 1, -1], good, iou)
    with pytest.raises(ValueError, match="`high` must"):
        assert_matches_equal(good, good, iou, high=2.0)
    with pytest.raises(TypeError, match="`names` must be a pair of strings"):
        assert_matches_equal(good, good, iou, names=None)
    with pytest.raises(ValueError, match="`low` must"):
        match_variants(iou, low=float("nan"))


def test_anchor_comparator_options_named_and_result_checked():
    a, _ = refdet.pyramid_anchors((32, 32), [(4, 4), (2, 2)], [8, 16], [(16.0,), (32.0,)], [0.5, 1.0, 2.0])
    with pytest.raises(AssertionError, match=r"`actual` \(the anchors under test\) is not an array"):
        assert_anchors_equal(None, a)
    with pytest.raises(TypeError, match="`expected`"):
        assert_anchors_equal(a, None)
    with pytest.raises(ValueError, match="`atol` must be >= 0"):
        assert_anchors_equal(a, a, atol=-1.0)
    with pytest.raises(ValueError, match="`num_anchors`"):
        assert_anchors_equal(a, a, feature_sizes=[(4, 4), (2, 2)], num_anchors=float("nan") if False else 0)
    with pytest.raises(AssertionError, match="non-finite"):
        bad = a.copy()
        bad[3, 1] = np.nan
        assert_anchors_equal(bad, a)


def test_float_comparators():
    with pytest.raises(ValueError, match="`a` and `b` must broadcast"):
        ulp_distance(np.zeros(3), np.zeros(2))
    with pytest.raises(TypeError, match="`dtype` must be float16, float32 or float64"):
        ulp_distance(1.0, 2.0, dtype="bogus")
    with pytest.raises(ValueError, match="`dtype` must be float16"):
        ulp_distance(1.0, 2.0, dtype=np.int32)
    with pytest.raises(AssertionError, match=r"`actual` \(the result under test\) must hold numbers"):
        assert_allclose_ulp(np.array(["a"]), np.zeros(1))
    with pytest.raises(ValueError, match="`max_ulps` must be >= 0"):
        assert_allclose_ulp(np.zeros(1), np.zeros(1), max_ulps=-1)
    with pytest.raises(TypeError, match="`names` must be a pair"):
        assert_allclose_ulp(np.zeros(1), np.zeros(1), names="ab")


def test_check_gradients_names_its_arguments():
    x = np.random.default_rng(0).standard_normal((2, 3)) + 0.05
    with pytest.raises(TypeError, match="`kwargs` must be a dict"):
        check_gradients(refdet.relu_forward, refdet.relu_backward, (x,), kwargs="stride")
    with pytest.raises(ValueError, match="`upstream` must have the structure and shapes"):
        check_gradients(refdet.relu_forward, refdet.relu_backward, (x,), upstream=np.zeros(3))
    with pytest.raises(ValueError, match=r"`forward` refused `inputs`.*`x` must not contain NaN"):
        check_gradients(refdet.relu_forward, refdet.relu_backward, (np.full((2, 2), np.nan),))
    with pytest.raises(ValueError, match="`rng` must be a non-negative"):
        check_gradients(refdet.relu_forward, refdet.relu_backward, (x,), rng=-1)
