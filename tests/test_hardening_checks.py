"""Hardening of the shared validation helpers (refdet/_checks.py): the allocation cap, seeds, bools."""
import numpy as np
import pytest

from refdet import _checks


def test_check_allocation_names_argument_and_size_before_allocating():
    with pytest.raises(ValueError, match=r"`feature_size` asks for 40,000,000,000 elements \(anchors x 4 "
                                         r"coordinates, 298 GiB\).*max_elements=40000000000"):
        _checks.check_allocation(10 ** 10 * 4, 8, "anchors x 4 coordinates", name="feature_size")
    # at the cap: allowed; the keyword raises and lowers it
    assert _checks.check_allocation(_checks.MAX_ELEMENTS, 8, "x", name="n") == _checks.MAX_ELEMENTS
    assert _checks.check_allocation(10 ** 10, 8, "x", name="n", limit=10 ** 10) == 10 ** 10
    with pytest.raises(ValueError, match="`n` asks for 11 elements"):
        _checks.check_allocation(11, 8, "x", name="n", limit=10)
    with pytest.raises(ValueError, match="`max_elements` must be >= 0"):
        _checks.check_allocation(1, 8, "x", name="n", limit=-1)
    with pytest.raises(TypeError, match="`max_elements` must be an integer"):
        _checks.check_allocation(1, 8, "x", name="n", limit=1.5)


def test_default_cap_is_documented_value():
    assert _checks.MAX_ELEMENTS == 2 ** 28


def test_negative_seed_names_rng():
    with pytest.raises(ValueError, match="`rng` must be a non-negative int seed"):
        _checks.as_rng(-1)
    with pytest.raises(TypeError, match="`rng`"):
        _checks.as_rng(True)
    assert isinstance(_checks.as_rng(np.int64(3)), np.random.Generator)


@pytest.mark.parametrize("helper", [
    lambda a: _checks.as_boxes(a), lambda a: _checks.as_float_array(a, "boxes"),
    lambda a: _checks.as_scores(a[:, 0], "boxes"), lambda a: _checks.as_nchw(a[None, None], "boxes"),
])
def test_bool_arrays_refused_where_reals_are_meant(helper):
    with pytest.raises(TypeError, match="`boxes` must be an array of real numbers; got dtype bool"):
        helper(np.ones((3, 4), bool))


def test_small_helpers():
    assert _checks.check_bool(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match="`flag` must be a bool"):
        _checks.check_bool(np.array([True, False]), "flag")
    with pytest.raises(TypeError, match="`log` must be a callable"):
        _checks.check_callable("log", "log")
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="`iou_threshold` must"):
            _checks.check_unit_threshold(bad, "iou_threshold")
    assert _checks.check_unit_threshold(np.float32(0.5), "t") == 0.5


def test_scores_length_message_names_both_arguments():
    with pytest.raises(ValueError, match=r"`scores` must have length 2 \(one per box of `boxes`\)"):
        _checks.as_scores(np.zeros(3), "scores", n=2)
