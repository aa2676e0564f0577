"""Balanced positive/negative sampling of anchors (or proposals) for the loss.

The arithmetic is the same in every framework (SPEC-conventions section 5)::

    num_pos = min(#positives, int(batch_size_per_image * positive_fraction))
    num_neg = min(#negatives, batch_size_per_image - num_pos)

so an RPN with 256 anchors per image and fraction 0.5 takes at most 128 positives and fills the rest
with negatives (20 positives -> 236 negatives). Which ones are taken is uniformly random; since every
library has its own random stream, a draw can be reproduced only by injecting it: pass
``permutation=(pos_perm, neg_perm)`` with the permutations the framework drew (torchvision:
``torch.randperm(#pos)`` then ``torch.randperm(#neg)``) and refdet takes the first ``num_pos`` /
``num_neg`` of them, exactly as torchvision's ``BalancedPositiveNegativeSampler`` does.

Eligibility follows torchvision (``_utils.py`` 44-45): a label ``>= 1`` is a positive (RPN 1, box head
class ids 1..K), ``== 0`` a negative, anything else (-1) is ignored. Output forms:

* :func:`sample_balanced` -> ``(pos_mask, neg_mask)`` boolean masks (torchvision);
* :func:`sample_balanced_indices` -> ``(pos_idx, neg_idx)`` in draw order (detectron2
  ``subsample_labels``);
* :func:`sample_labels` -> a copy of the labels with every unsampled anchor set to -1
  (py-faster-rcnn ``anchor_target_layer`` and detectron2's RPN ``_subsample_labels``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks

RngLike = Union[None, int, np.random.Generator]
Permutation = Optional[Sequence[ArrayLike]]

__all__ = [
    "sample_balanced",
    "sample_balanced_indices",
    "sample_labels",
    "sample_counts",
]


def _as_labels(labels):
    arr = _checks.as_array(labels, "labels")
    if arr.dtype.kind == "b":
        raise TypeError("`labels` must be numbers (1 positive, 0 negative, -1 ignored); got dtype bool")
    if arr.ndim != 1:
        raise ValueError(f"`labels` must be 1-D with shape (N,); got shape {arr.shape}")
    if arr.dtype.kind == "f":
        _checks.check_finite(arr, "labels", allow_inf=True)
    return arr


def sample_counts(num_positive: int, num_negative: int, batch_size_per_image: int = 256,
                  positive_fraction: float = 0.5) -> Tuple[int, int]:
    """How many positives and negatives a balanced sample takes.

    Parameters
    ----------
    num_positive, num_negative : int
        Eligible positives and negatives.
    batch_size_per_image : int
    positive_fraction : float

    Returns
    -------
    (num_pos, num_neg) : tuple of int
        ``num_pos = min(num_positive, int(batch_size_per_image * positive_fraction))`` (Python float
        product, truncated, as torchvision) and ``num_neg = min(num_negative, batch_size_per_image -
        num_pos)``.
    """
    num_positive = _checks.check_int(num_positive, "num_positive", low=0)
    num_negative = _checks.check_int(num_negative, "num_negative", low=0)
    batch = _checks.check_int(batch_size_per_image, "batch_size_per_image", low=0)
    frac = _checks.check_probability(positive_fraction, "positive_fraction")
    num_pos = min(num_positive, int(batch * frac))
    num_neg = min(num_negative, batch - num_pos)
    return num_pos, num_neg


def _take(perm, count, available, name):
    """The first ``count`` entries of an injected permutation of ``range(available)``."""
    p = _checks.as_array(perm, name)
    if p.dtype.kind not in ("i", "u"):
        raise TypeError(f"`{name}` must be an integer array; got dtype {p.dtype}")
    if p.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {p.shape}")
    if p.shape[0] < count:
        raise ValueError(f"`{name}` must hold at least {count} indices (a permutation of range({available}), "
                         f"the candidates `labels` marks); got {p.shape[0]}")
    head = p[:count].astype(np.int64)
    if head.size:
        if head.min() < 0 or head.max() >= available:
            raise ValueError(f"`{name}` values must lie in [0, {available}); got range "
                             f"[{int(head.min())}, {int(head.max())}]")
        if np.unique(head).size != head.size:
            raise ValueError(f"`{name}` must not repeat an index among its first {count} entries")
    return head


def sample_balanced_indices(labels: ArrayLike, batch_size_per_image: int = 256, positive_fraction: float = 0.5, *,
                            rng: RngLike = None, permutation: Permutation = None) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of the sampled positives and negatives, in the order they were drawn.

    Reference: :func:`refdet.reference.sampler.sample_balanced_indices` (the same draw written as lists
    and a loop, consuming the same random numbers); tests hold the two equal.

    Parameters
    ----------
    labels : ndarray, shape (N,)
        ``>= 1`` positive, ``0`` negative, anything else ignored. Integer or float (torchvision's RPN
        passes float32 labels); NaN is rejected.
    batch_size_per_image : int
    positive_fraction : float in [0, 1]
    rng : None, int or numpy Generator
        Draws ``rng.permutation(#pos)`` then ``rng.permutation(#neg)`` (in that order) when no
        ``permutation`` is given.
    permutation : (pos_perm, neg_perm), optional
        Permutations of ``range(#pos)`` and ``range(#neg)`` (at least the first ``num_pos`` /
        ``num_neg`` entries). ``positives[pos_perm[:num_pos]]`` are taken, where ``positives`` are the
        positive indices in increasing order: exactly torchvision's ``positive[perm1]``.

    Returns
    -------
    pos_idx, neg_idx : ndarray of int64, shapes (num_pos,), (num_neg,)
    """
    lab = _as_labels(labels)
    positive = np.flatnonzero(lab >= 1)
    negative = np.flatnonzero(lab == 0)
    num_pos, num_neg = sample_counts(positive.size, negative.size, batch_size_per_image, positive_fraction)
    if permutation is not None:
        if rng is not None:
            raise ValueError("pass either `rng` or `permutation`, not both")
        if isinstance(permutation, (str, bytes)) or not hasattr(permutation, "__len__") or len(permutation) != 2:
            raise TypeError("`permutation` must be a pair (pos_perm, neg_perm); got "
                            f"{type(permutation).__name__}")
        perm1 = _take(permutation[0], num_pos, positive.size, "permutation[0]")
        perm2 = _take(permutation[1], num_neg, negative.size, "permutation[1]")
    else:
        gen = _checks.as_rng(rng)
        perm1 = gen.permutation(positive.size)[:num_pos]
        perm2 = gen.permutation(negative.size)[:num_neg]
    return positive[perm1].astype(np.int64), negative[perm2].astype(np.int64)


def sample_balanced(labels: ArrayLike, batch_size_per_image: int = 256, positive_fraction: float = 0.5, *,
                    rng: RngLike = None, permutation: Permutation = None) -> Tuple[np.ndarray, np.ndarray]:
    """Balanced sample as two boolean masks (torchvision ``BalancedPositiveNegativeSampler``).

    Reference: :func:`refdet.reference.sampler.sample_balanced` (same draw, same random numbers).

    Parameters
    ----------
    labels : ndarray, shape (N,)
        ``>= 1`` positive, ``0`` negative, anything else (-1) ignored.
    batch_size_per_image : int
        Anchors per image in the sample (RPN 256; box head 512 torchvision/detectron2/mmdet, 128
        py-faster-rcnn).
    positive_fraction : float
        At most ``int(batch_size_per_image * positive_fraction)`` positives (RPN 0.5, box head 0.25).
    rng, permutation
        See :func:`sample_balanced_indices`.

    Returns
    -------
    pos_mask, neg_mask : ndarray of bool, shape (N,)
        Disjoint; ``pos_mask`` only where ``labels >= 1``, ``neg_mask`` only where ``labels == 0``;
        ``pos_mask.sum() == min(#pos, int(batch * fraction))`` and ``neg_mask.sum() == min(#neg,
        batch - pos_mask.sum())``.

    Examples
    --------
    Three positives, five negatives, two ignored; a sample of 4 with at most half positives:

    >>> labels = np.array([1, 1, 1, 0, 0, 0, 0, 0, -1, -1])
    >>> pos, neg = sample_balanced(labels, 4, 0.5, rng=0)
    >>> int(pos.sum()), int(neg.sum()), bool(np.all(labels[pos] == 1)), bool(np.all(labels[neg] == 0))
    (2, 2, True, True)
    """
    lab = _as_labels(labels)
    pos_idx, neg_idx = sample_balanced_indices(lab, batch_size_per_image, positive_fraction, rng=rng,
                                               permutation=permutation)
    pos_mask = np.zeros(lab.shape[0], dtype=bool)
    neg_mask = np.zeros(lab.shape[0], dtype=bool)
    pos_mask[pos_idx] = True
    neg_mask[neg_idx] = True
    return pos_mask, neg_mask


def sample_labels(labels: ArrayLike, batch_size_per_image: int = 256, positive_fraction: float = 0.5, *,
                  rng: RngLike = None, permutation: Permutation = None) -> np.ndarray:
    """A copy of ``labels`` in which every anchor not in the balanced sample is set to -1.

    py-faster-rcnn's ``anchor_target_layer`` (lines 156-172) and detectron2's RPN
    ``_subsample_labels`` write ``-1`` ("don't care") into the surplus positives and negatives instead
    of returning masks; this is the same sample written that way. Sampled anchors keep their label.

    Returns
    -------
    ndarray, shape (N,)
        Same dtype as ``labels`` (int64 for integer labels); ``labels`` is not modified.
    """
    lab = _as_labels(labels)
    pos_mask, neg_mask = sample_balanced(lab, batch_size_per_image, positive_fraction, rng=rng,
                                         permutation=permutation)
    out_dtype = lab.dtype if lab.dtype.kind == "f" else np.dtype(np.int64)
    out = lab.astype(out_dtype)                 # a copy (astype's default): labels is never written
    out[~(pos_mask | neg_mask)] = -1
    return out
