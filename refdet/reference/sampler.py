"""Balanced positive/negative sampling as the draw it is.

Take the positives (label >= 1) and the negatives (label == 0) in index order; keep at most
``int(batch * fraction)`` positives and fill the batch with negatives; choose which ones by a random
permutation of each list, positives first (torchvision's ``torch.randperm(#pos)`` then
``torch.randperm(#neg)``). The random numbers are drawn exactly as :func:`refdet.sample_balanced_indices`
draws them, so ``tests/test_reference_geometry.py`` holds the two equal index for index.
"""
import numpy as np


def sample_balanced_indices(labels, batch_size_per_image=256, positive_fraction=0.5, rng=None):
    """(positive indices, negative indices) in the order drawn."""
    positives = [i for i, v in enumerate(labels) if v >= 1]
    negatives = [i for i, v in enumerate(labels) if v == 0]
    num_pos = min(len(positives), int(batch_size_per_image * positive_fraction))
    num_neg = min(len(negatives), batch_size_per_image - num_pos)
    rng = np.random.default_rng(rng)
    pos_order = rng.permutation(len(positives))         # drawn first
    neg_order = rng.permutation(len(negatives))
    return ([positives[k] for k in pos_order[:num_pos]],
            [negatives[k] for k in neg_order[:num_neg]])


def sample_balanced(labels, batch_size_per_image=256, positive_fraction=0.5, rng=None):
    """The same sample as two boolean masks over the labels."""
    pos, neg = sample_balanced_indices(labels, batch_size_per_image, positive_fraction, rng)
    pos, neg = set(pos), set(neg)
    pos_mask = np.array([i in pos for i in range(len(labels))], dtype=bool)
    neg_mask = np.array([i in neg for i in range(len(labels))], dtype=bool)
    return pos_mask, neg_mask
