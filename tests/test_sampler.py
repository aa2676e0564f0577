"""Tests of refdet.sampler: counts, invariants, injected permutations vs torchvision's randperm draw."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refdet import sample_balanced, sample_balanced_indices, sample_counts, sample_labels
from refdet.testing import strategies as rst
from tests.conftest import readonly


def test_rpn_counts_golden():
    # 20 positives, 1000 negatives, 256 @ 0.5: num_pos = min(20, int(128.0)) = 20; num_neg = 256 - 20
    assert sample_counts(20, 1000) == (20, 236)
    # plenty of both: 128 / 128
    assert sample_counts(500, 1000) == (128, 128)
    # few negatives: 300 positives -> 128, negatives min(10, 128) = 10 (the batch is not refilled)
    assert sample_counts(300, 10) == (128, 10)
    # box head 512 @ 0.25: int(128.0) = 128 positives at most
    assert sample_counts(1000, 1000, 512, 0.25) == (128, 384)
    # int() truncates: 10 * 0.33 = 3.3 -> 3
    assert sample_counts(100, 100, 10, 0.33) == (3, 7)


def test_golden_masks_with_injected_permutation():
    labels = np.array([1, 0, -1, 1, 0, 0, 1, -1, 0, 1])
    # positives [0, 3, 6, 9], negatives [1, 4, 5, 8]; batch 4 @ 0.5 -> 2 positives, 2 negatives
    pos, neg = sample_balanced(labels, 4, 0.5, permutation=([3, 1, 0, 2], [2, 0, 3, 1]))
    # positives[[3, 1]] = [9, 3]; negatives[[2, 0]] = [5, 1]
    assert np.flatnonzero(pos).tolist() == [3, 9]
    assert np.flatnonzero(neg).tolist() == [1, 5]
    pi, ni = sample_balanced_indices(labels, 4, 0.5, permutation=([3, 1, 0, 2], [2, 0, 3, 1]))
    assert pi.tolist() == [9, 3] and ni.tolist() == [5, 1]                 # draw order kept
    out = sample_labels(labels, 4, 0.5, permutation=([3, 1], [2, 0]))       # prefixes are enough
    assert out.tolist() == [-1, 0, -1, 1, -1, 0, -1, -1, -1, 1]


def test_box_head_class_ids_are_positives():
    labels = np.array([3, 0, 7, -1, 0, 1])
    pos, neg = sample_balanced(labels, 512, 0.25, rng=0)
    assert pos.tolist() == [True, False, True, False, False, True]
    assert neg.tolist() == [False, True, False, False, True, False]
    assert sample_labels(labels, 2, 0.5, permutation=([1, 0, 2], [0, 1])).tolist() == [-1, 0, 7, -1, -1, -1]


def test_empty_and_readonly():
    pos, neg = sample_balanced(np.zeros(0, dtype=np.int64))
    assert pos.shape == neg.shape == (0,) and pos.dtype == bool
    lab = readonly(np.array([1.0, 0.0, -1.0, 0.0], dtype=np.float32))
    out = sample_labels(lab, rng=0)
    assert out.dtype == np.float32 and lab.tolist() == [1.0, 0.0, -1.0, 0.0]


def test_rng_reproducible():
    lab = np.random.default_rng(0).choice([-1, 0, 1], size=2000)
    a = sample_balanced(lab, rng=7)
    b = sample_balanced(lab, rng=np.random.default_rng(7))
    c = sample_balanced(lab, rng=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_draw_is_uniform_enough():
    # 10 positives, take 5: each is chosen with probability 1/2. 4000 draws -> 2000 +- 32 (1 sigma);
    # a 6-sigma band (fails with probability ~1e-9 per positive) still catches a biased draw.
    lab = np.array([1] * 10)
    g = np.random.default_rng(11)
    counts = sum(sample_balanced(lab, 10, 0.5, rng=g)[0].astype(int) for _ in range(4000))
    assert np.all(np.abs(counts - 2000) < 6 * np.sqrt(4000 * 0.25))


@given(labels=rst.sampler_labels(classes=3), batch=st.integers(0, 300),
       frac=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 0.33]), seed=st.integers(0, 2 ** 31))
def test_invariants(labels, batch, frac, seed):
    pos, neg = sample_balanced(labels, batch, frac, rng=seed)
    npos, nneg = int((labels >= 1).sum()), int((labels == 0).sum())
    want_pos = min(npos, int(batch * frac))
    assert pos.sum() == want_pos
    assert neg.sum() == min(nneg, batch - want_pos)
    assert not (pos & neg).any()                       # disjoint
    assert (labels[pos] >= 1).all()                    # subsets of the eligible sets
    assert (labels[neg] == 0).all()
    assert pos.sum() + neg.sum() <= batch
    lab2 = sample_labels(labels, batch, frac, rng=seed)
    np.testing.assert_array_equal(lab2 != -1, pos | neg)  # same draw for the same seed
    np.testing.assert_array_equal(lab2[pos | neg], labels[pos | neg])


@given(labels=rst.sampler_labels(classes=2), batch=st.sampled_from([0, 1, 16, 256, 512]),
       frac=st.sampled_from([0.25, 0.5, 1.0]), seed=st.integers(0, 2 ** 31))
def test_injected_torch_randperm_reproduces_torchvision(labels, batch, frac, seed):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
    torch.set_num_threads(1)
    t = torch.from_numpy(labels.copy())
    torch.manual_seed(seed)
    tv_pos, tv_neg = BalancedPositiveNegativeSampler(batch, frac)([t])
    # the same seed replays torchvision's two randperm calls (positives first, then negatives)
    torch.manual_seed(seed)
    npos, nneg = int((labels >= 1).sum()), int((labels == 0).sum())
    perm = (torch.randperm(npos).numpy(), torch.randperm(nneg).numpy())
    pos, neg = sample_balanced(labels, batch, frac, permutation=perm)
    np.testing.assert_array_equal(pos, tv_pos[0].numpy().astype(bool))
    np.testing.assert_array_equal(neg, tv_neg[0].numpy().astype(bool))
