"""refdet.heads.layout: the branches mutation testing found unpinned (issue 19).

Each test names the argument an error must name, or pins a shape rule of ``flatten_head_output`` /
``unflatten_head_output`` with a value worked by hand. Tiny arrays only.
"""
import numpy as np
import pytest

from refdet import heads as H


# ---------------------------------------------------------------------------------------------------
# unflatten_head_output: which feature_sizes are "a list of levels"
# ---------------------------------------------------------------------------------------------------

def test_unflatten_tuple_of_pairs_is_a_list_of_levels():
    # a tuple whose first entry has a length is a list of levels, even with a single level:
    # ((1, 2),) -> a list of one (A*C, H, W) map; ((1, 1), (1, 2)) -> two maps
    x = np.arange(6.0).reshape(3, 2)          # 1 + 2 rows (A = 1), C = 2
    one = H.unflatten_head_output(x[1:], 1, ((1, 2),))
    assert isinstance(one, list) and len(one) == 1
    # row y*W + x, column c -> channel c at (y, x): rows [2, 3] and [4, 5] -> [[2, 4]], [[3, 5]]
    np.testing.assert_array_equal(one[0], [[[2.0, 4.0]], [[3.0, 5.0]]])
    two = H.unflatten_head_output(x, 1, ((1, 1), (1, 2)))
    assert isinstance(two, list) and len(two) == 2
    np.testing.assert_array_equal(two[0], [[[0.0]], [[1.0]]])
    np.testing.assert_array_equal(two[1], [[[2.0, 4.0]], [[3.0, 5.0]]])
    # a flat pair (tuple or list of two ints in a tuple) is one level: an array, not a list
    single = H.unflatten_head_output(x[1:], 1, (1, 2))
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, one[0])


def test_unflatten_empty_tuple_is_refused_naming_feature_sizes():
    with pytest.raises(ValueError, match=r"^`feature_sizes` must be an int or a pair \(for H, for W\); got 0 values$"):
        H.unflatten_head_output(np.zeros((1, 2)), 1, ())


def test_unflatten_errors_name_the_argument():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"^`layout` must be one of 'anchor_major', 'class_major'; got 'nhwc'$"):
        H.unflatten_head_output(x, 1, (2, 2), layout="nhwc")
    with pytest.raises(TypeError, match=r"^`x` must be an array of real numbers"):
        H.unflatten_head_output(np.array([["a", "b"]]), 1, (1, 1))
    with pytest.raises(ValueError, match=r"^`x` must be 2-D \(N, C\) or 3-D \(B, N, C\); got shape \(4, 2, 1, 1\)$"):
        H.unflatten_head_output(np.zeros((4, 2, 1, 1)), 1, (2, 2))
    # one size: the pair's entries are named feature_sizes[0] / [1]
    with pytest.raises(ValueError, match=r"^`feature_sizes\[0\]` must be >= 1; got 0$"):
        H.unflatten_head_output(np.zeros((0, 2)), 1, (0, 2))
    with pytest.raises(ValueError, match=r"^`feature_sizes\[1\]` must be >= 1; got 0$"):
        H.unflatten_head_output(np.zeros((0, 2)), 1, (2, 0))
    # a list of sizes: level i's pair is feature_sizes[i]
    with pytest.raises(ValueError, match=r"^`feature_sizes\[1\]\[0\]` must be >= 1; got 0$"):
        H.unflatten_head_output(np.zeros((4, 2)), 1, [(2, 2), (0, 1)])
    with pytest.raises(ValueError, match=r"^`num_anchors` must have one entry per level \(1\); got 3$"):
        H.unflatten_head_output(x, [1, 1, 1], [(2, 2)])
    with pytest.raises(ValueError, match=r"^`num_anchors` must be >= 1; got 0$"):
        H.unflatten_head_output(x, 0, (2, 2))
    with pytest.raises(ValueError, match=r"^`num_anchors\[1\]` must be >= 1; got 0$"):
        H.unflatten_head_output(x, [1, 0], [(1, 2), (1, 2)])


def test_unflatten_keeps_the_dtype_in_both_layouts():
    # a pure rearrangement: int64 rows come back as int64 channels (not float64 through np.empty)
    x = np.arange(8, dtype=np.int64).reshape(4, 2)      # (H*W*A, C) with H = 1, W = 2, A = 2, C = 2
    for layout in ("anchor_major", "class_major"):
        out = H.unflatten_head_output(x, 2, (1, 2), layout=layout)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(H.flatten_head_output(out, 2, layout=layout), x)
    # anchor-major channel a*C + c at location x: rows (x*A + a) -> [[0, 4], [1, 5], [2, 6], [3, 7]]
    np.testing.assert_array_equal(H.unflatten_head_output(x, 2, (1, 2))[:, 0], [[0, 4], [1, 5], [2, 6], [3, 7]])
    # class-major channel c*A + a: [[0, 4], [2, 6], [1, 5], [3, 7]]
    np.testing.assert_array_equal(H.unflatten_head_output(x, 2, (1, 2), layout="class_major")[:, 0],
                                  [[0, 4], [2, 6], [1, 5], [3, 7]])


def test_flatten_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"^`x` must be an array of real numbers"):
        H.flatten_head_output(np.array([[["a"]]]), 1)
    with pytest.raises(TypeError, match=r"^`x\[1\]` must be an array of real numbers"):
        H.flatten_head_output([np.zeros((2, 1, 1)), np.array([[["a"]]])], 1)
    with pytest.raises(ValueError, match=r"^`x` must be an array or a non-empty list of levels; got an empty list$"):
        H.flatten_head_output([], 1)
    with pytest.raises(ValueError, match=r"^`num_anchors` must have one entry per level \(2\); got 3$"):
        H.flatten_head_output([np.zeros((2, 1, 1)), np.zeros((2, 1, 1))], [1, 1, 1])
    with pytest.raises(ValueError, match=r"^`num_anchors` must be >= 1; got 0$"):
        H.flatten_head_output(np.zeros((2, 1, 1)), 0)
    with pytest.raises(TypeError, match=r"^`num_anchors` must be an integer; got float 1.0$"):
        H.flatten_head_output(np.zeros((2, 1, 1)), 1.0)
    with pytest.raises(ValueError, match=r"^every level of `x` must have the same number of dimensions$"):
        H.flatten_head_output([np.zeros((2, 1, 1)), np.zeros((1, 2, 1, 1))], 1)


@pytest.mark.parametrize("second, what", [
    (np.zeros((1, 3, 1, 1)), "per-row width"),   # same batch (1), C = 3 against C = 2
    (np.zeros((2, 2, 1, 1)), "batch size"),      # same C (2), batch 2 against batch 1
])
def test_flatten_levels_must_agree_on_batch_and_width(second, what):
    # either disagreement alone is refused (the shapes are listed)
    with pytest.raises(ValueError, match=r"^the levels of `x` must agree on the batch size and the per-row width; "
                                         r"got \[\(1, 1, 2\), \(\d, 1, \d\)\]$"):
        H.flatten_head_output([np.zeros((1, 2, 1, 1)), second], 1)


def test_flatten_list_per_location_and_layout_reach_every_level():
    # two levels, A = 2, C = 2; per_location=True gives one row per location, A*C wide, for every level
    x0 = np.arange(4.0).reshape(4, 1, 1)            # one location: channels [0, 1, 2, 3]
    x1 = 10 + np.arange(8.0).reshape(4, 1, 2)       # two locations: channel k at x -> 10 + 2k + x
    out = H.flatten_head_output([x0, x1], 2, per_location=True)
    np.testing.assert_array_equal(out, [[0, 1, 2, 3], [10, 12, 14, 16], [11, 13, 15, 17]])
    # class_major in the list form: channel c*A + a -> anchor 0 = (ch 0, ch 2), anchor 1 = (ch 1, ch 3)
    cm = H.flatten_head_output([x0, x1], 2, layout="class_major")
    np.testing.assert_array_equal(cm, [[0, 2], [1, 3], [10, 14], [12, 16], [11, 15], [13, 17]])
