import numpy as np

from tests.contract import Bad, Case


def _labels(rng, n=300):
    return rng.choice([-1, 0, 1], size=n, p=[0.2, 0.6, 0.2]).astype(np.int64)


def _perms(rng):
    lab = _labels(rng)
    return lab, (rng.permutation(int((lab >= 1).sum())), rng.permutation(int((lab == 0).sum())))


CASES = [
    Case("sample_balanced", lambda r: ((_labels(r), 64, 0.25), {"rng": 0})),
    Case("sample_balanced", lambda r: (lambda lp: ((lp[0],), {"permutation": lp[1]}))(_perms(r))),
    Case("sample_balanced_indices", lambda r: ((_labels(r).astype(np.float32),), {"rng": 1})),
    Case("sample_labels", lambda r: ((_labels(r),), {"rng": 2})),
    Case("sample_counts", lambda r: ((20, 1000), {})),
]

BAD = [
    Bad("sample_balanced", lambda r: ((_labels(r).reshape(30, 10),), {}), ValueError, "`labels` must be 1-D"),
    Bad("sample_balanced", lambda r: ((np.array([0.0, np.nan]),), {}), ValueError, "`labels`.*NaN"),
    Bad("sample_balanced", lambda r: (("labels",), {}), TypeError, "`labels`"),
    Bad("sample_balanced", lambda r: ((_labels(r), 256, 1.5), {}), ValueError, "`positive_fraction`"),
    Bad("sample_balanced", lambda r: ((_labels(r), 25.6), {}), TypeError, "`batch_size_per_image`"),
    Bad("sample_balanced", lambda r: ((_labels(r),), {"rng": "seed"}), TypeError, "`rng`"),
    Bad("sample_balanced", lambda r: ((np.array([1, 1, 0]),), {"permutation": ([0, 0], [0])}),
        ValueError, r"`permutation\[0\]` must not repeat"),
    Bad("sample_balanced", lambda r: ((np.array([1, 1, 0]),), {"permutation": ([0, 2], [0])}),
        ValueError, r"`permutation\[0\]` values must lie in \[0, 2\)"),
    Bad("sample_balanced", lambda r: ((np.array([1, 1, 0]),), {"permutation": ([0], [0])}),
        ValueError, r"`permutation\[0\]` must hold at least 2"),
    Bad("sample_labels", lambda r: ((np.array([1, 0]),), {"permutation": ([0], [0]), "rng": 1}),
        ValueError, "either `rng` or `permutation`"),
    Bad("sample_counts", lambda r: ((-1, 3), {}), ValueError, "`num_positive`"),
]

EXEMPT = {}
