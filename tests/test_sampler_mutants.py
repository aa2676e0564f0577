"""Tests of refdet.sampler that pin what mutation testing found unpinned (issue 19): every argument
named in its error, the eligibility boundaries, the injected permutations' checks. Hand-worked values;
each test takes milliseconds."""
import numpy as np
import pytest

from refdet import sample_balanced, sample_balanced_indices, sample_counts, sample_labels

L = np.array([1, 0, 0, 1, -1])          # positives [0, 3], negatives [1, 2]


def _err(kind, msg, f, *a, **k):
    with pytest.raises(kind, match=msg):
        f(*a, **k)


def test_labels_named_in_errors():
    for f in (sample_balanced, sample_balanced_indices, sample_labels):
        _err(TypeError, r"^`labels` must be numbers \(1 positive, 0 negative, -1 ignored\); got dtype bool$",
             f, np.array([True, False]))
        _err(ValueError, r"^`labels` must be 1-D with shape \(N,\); got shape \(2, 2\)$", f, np.zeros((2, 2)))
        _err(ValueError, r"^`labels` must not contain NaN; got nan at index \(0,\)$", f, np.array([np.nan, 1.0]))
        _err(TypeError, r"^`labels` must be an array of numbers; got str 'abc'$", f, "abc")


def test_counts_named_in_errors():
    _err(ValueError, r"^`num_positive` must be >= 0; got -1$", sample_counts, -1, 2)
    _err(ValueError, r"^`num_negative` must be >= 0; got -2$", sample_counts, 1, -2)
    _err(ValueError, r"^`batch_size_per_image` must be >= 0; got -3$", sample_counts, 1, 2, -3)
    _err(ValueError, r"^`positive_fraction` must lie in \[0.0, 1.0\]; got 1.5$", sample_counts, 1, 2, 3, 1.5)
    _err(TypeError, r"^`num_positive` must be an integer", sample_counts, 1.5, 2)
    # the ends are answers
    assert sample_counts(0, 0) == (0, 0)
    assert sample_counts(5, 5, 0) == (0, 0)
    assert sample_counts(5, 5, 4, 0.0) == (0, 4)
    assert sample_counts(5, 5, 4, 1.0) == (4, 0)
    assert sample_counts(3, 9, 8, 1.0) == (3, 5)         # the positives' shortfall goes to negatives


def test_defaults_are_256_and_one_half():
    lab = np.array([1] * 300 + [0] * 300)
    pos, neg = sample_balanced(lab, rng=0)
    assert pos.sum() == 128 and neg.sum() == 128
    pi, ni = sample_balanced_indices(lab, rng=0)
    assert len(pi) == 128 and len(ni) == 128
    assert (sample_labels(lab, rng=0) != -1).sum() == 256
    assert sample_counts(300, 300) == (128, 128)


@pytest.mark.parametrize("perm, kind, msg", [
    (([0.0, 1.0], [0, 1]), TypeError, r"^`permutation\[0\]` must be an integer array; got dtype float64$"),
    (([[0, 1]], [0, 1]), ValueError, r"^`permutation\[0\]` must be 1-D; got shape \(1, 2\)$"),
    (([0], [0, 1]), ValueError, r"^`permutation\[0\]` must hold at least 2 indices \(a permutation of range\(2\), "
                                r"the candidates `labels` marks\); got 1$"),
    (([0, 2], [0, 1]), ValueError, r"^`permutation\[0\]` values must lie in \[0, 2\); got range \[0, 2\]$"),
    (([0, -1], [0, 1]), ValueError, r"^`permutation\[0\]` values must lie in \[0, 2\); got range \[-1, 0\]$"),
    (([1, 1], [0, 1]), ValueError, r"^`permutation\[0\]` must not repeat an index among its first 2 entries$"),
    (([0, 1], [0, 3]), ValueError, r"^`permutation\[1\]` values must lie in \[0, 2\); got range \[0, 3\]$"),
    (([0, 1], [1]), ValueError, r"^`permutation\[1\]` must hold at least 2 indices \(a permutation of range\(2\)"),
    (([0, 1], [0.5, 1]), TypeError, r"^`permutation\[1\]` must be an integer array"),
    ("ab", TypeError, r"^`permutation` must be a pair \(pos_perm, neg_perm\); got str$"),
    (b"ab", TypeError, r"^`permutation` must be a pair \(pos_perm, neg_perm\); got bytes$"),
    (([0, 1],), TypeError, r"^`permutation` must be a pair \(pos_perm, neg_perm\); got tuple$"),
    (([0, 1], [0, 1], [0]), TypeError, r"^`permutation` must be a pair \(pos_perm, neg_perm\); got tuple$"),
    (5, TypeError, r"^`permutation` must be a pair \(pos_perm, neg_perm\); got int$"),
    (("ab", [0, 1]), TypeError, r"^`permutation\[0\]` must be an array of numbers; got str 'ab'$"),
    (([0, 1], None), TypeError, r"^`permutation\[1\]` must be an array of numbers; got NoneType None$"),
    (([True, False], [0, 1]), TypeError, r"^`permutation\[0\]` must be an integer array; got dtype bool$"),
])
def test_injected_permutation_checked_and_named(perm, kind, msg):
    for f in (sample_balanced, sample_balanced_indices, sample_labels):
        _err(kind, msg, f, L, 4, 0.5, permutation=perm)


def test_permutation_checks_apply_to_the_taken_prefix_only():
    # only the first num_pos / num_neg entries are taken: the rest may be anything in range or not
    pi, ni = sample_balanced_indices(L, 2, 0.5, permutation=([1, 7, 7], [0, -3]))
    assert pi.tolist() == [3] and ni.tolist() == [1]
    assert pi.dtype == ni.dtype == np.int64
    # nothing taken: an empty permutation is enough
    pi, ni = sample_balanced_indices(L, 0, 0.5, permutation=(np.zeros(0, np.int64), np.zeros(0, np.uint8)))
    assert pi.tolist() == [] and ni.tolist() == []
    # unsigned permutations are integers too
    pi, _ = sample_balanced_indices(L, 4, 0.5, permutation=(np.array([1, 0], np.uint8), [1, 0]))
    assert pi.tolist() == [3, 0]


def test_rng_and_permutation_exclusive_and_rng_named():
    for f in (sample_balanced, sample_balanced_indices, sample_labels):
        _err(ValueError, r"^pass either `rng` or `permutation`, not both$", f, L, 4, 0.5,
             permutation=([0, 1], [0, 1]), rng=0)
        _err(TypeError, r"^`rng` must be None, an int seed or a numpy Generator; got str 'x'$", f, L, rng="x")


def test_eligibility_boundaries_and_float_labels():
    # >= 1 positive (class ids, +inf), == 0 negative, anything else ignored (-1, 0.5, -inf, 2 is a class)
    lab = np.array([1.0, 0.0, 0.5, -1.0, 2.0, np.inf, -np.inf, -0.0])
    pos, neg = sample_balanced(lab, 100, 1.0, rng=0)
    assert np.flatnonzero(pos).tolist() == [0, 4, 5]
    pos, neg = sample_balanced(lab, 100, 0.0, rng=0)
    assert np.flatnonzero(neg).tolist() == [1, 7]
    out = sample_labels(lab, 100, 0.5, rng=0)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [1, 0, -1, -1, 2, np.inf, -1, 0])


def test_sample_labels_dtypes_and_copy():
    lab = np.array([1, 0, 0, 1, -1], np.int32)
    out = sample_labels(lab, 2, 0.5, permutation=([1, 0], [1, 0]))
    # positives [0, 3][[1]] = 3 kept; negatives [1, 2][[1]] = 2 kept; the rest -1
    assert out.dtype == np.int64 and out.tolist() == [-1, -1, 0, 1, -1]
    assert lab.tolist() == [1, 0, 0, 1, -1]
    lab = np.array([1, 0, 0, 1, -1], np.float32)
    out = sample_labels(lab, 2, 0.5, permutation=([1, 0], [1, 0]))
    assert out.dtype == np.float32 and out.tolist() == [-1, -1, 0, 1, -1]
    assert lab.tolist() == [1, 0, 0, 1, -1]


def test_masks_from_the_indices():
    pos, neg = sample_balanced(L, 4, 0.5, permutation=([1, 0], [1, 0]))
    assert pos.dtype == neg.dtype == bool and pos.shape == neg.shape == (5,)
    assert pos.tolist() == [True, False, False, True, False]
    assert neg.tolist() == [False, True, True, False, False]
    pos, neg = sample_balanced(L, 2, 0.5, permutation=([1, 0], [1, 0]))
    assert pos.tolist() == [False, False, False, True, False]
    assert neg.tolist() == [False, False, True, False, False]


def test_rng_draws_positives_then_negatives():
    # the draw is rng.permutation(#pos) then rng.permutation(#neg), in that order
    lab = np.array([1, 1, 1, 0, 0, 0, 0])
    pi, ni = sample_balanced_indices(lab, 4, 0.5, rng=np.random.default_rng(3))
    g = np.random.default_rng(3)
    p1, p2 = g.permutation(3)[:2], g.permutation(4)[:2]
    assert pi.tolist() == p1.tolist() and ni.tolist() == (p2 + 3).tolist()
