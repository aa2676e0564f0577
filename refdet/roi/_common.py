"""Shared pieces of the RoI operators: argument checks and an order-exact scatter-add.

Private: the public functions of :mod:`refdet.roi` validate through these helpers so that every RoI
operator words its errors the same way, and every backward pass accumulates in the same order as
the kernel it reproduces.
"""
from __future__ import annotations

import numbers

import numpy as np

from refdet import _checks

#: Largest scratch buffer (in elements) one vectorised step builds; more RoIs are done in blocks.
BLOCK_ELEMENTS = 2 ** 22


def as_features(features, name="features"):
    """A finite (B, C, H, W) map in its working dtype (may be the caller's array: read only)."""
    x = _checks.as_nchw(features, name)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"`{name}` must have H >= 1 and W >= 1; got shape {x.shape}")
    return x


def check_output_size(output_size, name="output_size"):
    """An int or an (height, width) pair of ints >= 1, as a tuple of two Python ints."""
    return _checks.check_pair(output_size, name, low=1)


def check_outputs(k, c, ph, pw, itemsize, name="output_size"):
    """Refuse, before allocating, an output of ``k * c * ph * pw`` elements beyond the cap.

    The count takes at least one RoI and one channel: an ``output_size`` no single RoI could be served
    with is refused even for an empty RoI set (NumPy itself refuses a (0, C, 10**9, 10**9) array).
    """
    _checks.check_allocation(max(k, 1) * max(c, 1) * ph * pw, itemsize, f"an output of shape {(k, c, ph, pw)}",
                             name=name, keyword=False)


def check_samples(bin_h, bin_w, sampling_ratio, output_size, name="boxes` and `spatial_scale"):
    """Refuse a sampling grid no run could finish: ``sum_k PH * PW * grid_h * grid_w`` sample points.

    With the adaptive grid (``sampling_ratio <= 0``) the grid is ``ceil(bin size)`` per axis, so a RoI
    of 10**9 pixels asks for 10**18 samples per bin (torchvision would loop for ever); the count is
    taken in float64 before any cast to int64 (which would wrap to a negative grid: no samples).
    """
    ph, pw = output_size
    if sampling_ratio > 0:
        per = float(sampling_ratio) ** 2 * np.ones(len(bin_h))
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            per = np.maximum(np.ceil(np.asarray(bin_h, np.float64)), 0) * np.maximum(np.ceil(np.asarray(bin_w, np.float64)), 0)
        if not np.all(np.isfinite(per)):
            raise ValueError(f"`{name}` give a RoI of non-finite size (an overflow of its coordinates)")
    total = float(np.sum(per)) * ph * pw
    cap = _checks.MAX_ELEMENTS
    if total > cap:
        verb = "ask" if "`" in name else "asks"
        raise ValueError(f"`{name}` {verb} for {total:.4g} sample points (sum over RoIs of PH * PW * grid_h * "
                         f"grid_w, the adaptive grid ceil(bin size)); the cap is {cap:,} (refdet._checks.MAX_ELEMENTS): "
                         f"shrink the boxes or pass a sampling_ratio")


def check_spatial_scale(spatial_scale, name="spatial_scale"):
    """A finite real > 0 (it maps image coordinates onto the feature map)."""
    return _checks.check_positive(spatial_scale, name)


def check_sampling_ratio(sampling_ratio, name="sampling_ratio"):
    """An int >= -1: -1 (torchvision) and 0 (ONNX, detectron2, mmcv) select the adaptive grid.

    torchvision's kernel treats every value <= 0 as adaptive, but only -1 and 0 are used anywhere: any
    other negative value is almost certainly a mistake and is refused.
    """
    return _checks.check_int(sampling_ratio, name, low=-1, high=2 ** 31 - 1)


def _is_per_image_list(boxes):
    if not isinstance(boxes, (list, tuple)) or len(boxes) == 0:
        return False
    for b in boxes:
        if isinstance(b, np.ndarray):
            if b.ndim != 2 and not (b.ndim == 1 and b.size == 0):
                return False
        elif isinstance(b, (list, tuple)):
            if len(b) and not isinstance(b[0], (list, tuple, np.ndarray)):
                return False
        else:
            return False
    return True


def as_rois(boxes, batch_size, dtype, name="boxes"):
    """Validate RoIs given torchvision's two ways and return ``(rois (K, 5) in dtype, batch (K,) int64)``.

    ``boxes`` is either an array ``(K, 5)`` whose first column is the batch index (an integer stored in
    a float column) followed by ``x1, y1, x2, y2``, or a list with one ``(L_i, 4)`` array per image
    (``torchvision.ops._utils.convert_boxes_to_roi_format``: image ``i``'s boxes get batch index ``i``).
    NaN/inf, a non-integer batch index and one outside ``[0, batch_size)`` raise ``ValueError``.
    """
    dtype = np.dtype(dtype)
    if _is_per_image_list(boxes):
        if len(boxes) > batch_size:
            raise ValueError(f"`{name}` is a list of {len(boxes)} per-image box arrays but the features hold "
                             f"{batch_size} images")
        parts, index = [], []
        for i, b in enumerate(boxes):
            arr = _checks.as_boxes(b, f"{name}[{i}]", dtype=dtype)
            parts.append(arr)
            index.append(np.full(len(arr), i, dtype=np.int64))
        xyxy = np.concatenate(parts, axis=0) if parts else np.zeros((0, 4), dtype)
        batch = np.concatenate(index) if index else np.zeros(0, np.int64)
        rois = np.empty((len(xyxy), 5), dtype=dtype)
        rois[:, 0] = batch
        rois[:, 1:] = xyxy
        return rois, batch
    arr = _checks.as_array(boxes, name)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 5)
    if arr.ndim != 2 or arr.shape[1] != 5:
        hint = " (pass a list with one (L, 4) array per image, or prepend the batch index)" \
            if arr.ndim == 2 and arr.shape[1] == 4 else ""
        raise ValueError(f"`{name}` must have shape (K, 5) (batch index, x1, y1, x2, y2) or be a list of "
                         f"(L, 4) arrays{hint}; got {arr.shape}")
    if arr.dtype.kind == "f":
        _checks.check_finite(arr, name)
    batch_col = arr[:, 0]
    if arr.dtype.kind == "f":
        frac = batch_col != np.floor(batch_col)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise ValueError(f"`{name}[:, 0]` (the batch index) must hold integers; got {batch_col[i]!r} in row {i}")
    batch = batch_col.astype(np.int64)
    if batch.size and (batch.min() < 0 or batch.max() >= batch_size):
        i = int(np.flatnonzero((batch < 0) | (batch >= batch_size))[0])
        raise ValueError(f"`{name}[:, 0]` (the batch index) must lie in [0, {batch_size}) for features with "
                         f"{batch_size} images; got {batch[i]} in row {i}")
    rois = arr.astype(dtype, copy=False)
    _checks.check_finite(rois, name)     # float64 -> float32 may overflow to inf
    return rois, batch


def as_batch_indices(batch_indices, n, batch_size, name="batch_indices"):
    """A 1-D integer array of length ``n`` with values in ``[0, batch_size)`` (ONNX / TF style)."""
    arr = _checks.as_array(batch_indices, name)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
            pass
        elif arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must be an integer array; got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},) (one per box); got {arr.shape}")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= batch_size):
        i = int(np.flatnonzero((out < 0) | (out >= batch_size))[0])
        raise ValueError(f"`{name}` must lie in [0, {batch_size}); got {out[i]} at index {i}")
    return out


def check_cache(cache, cls, name="cache"):
    if not isinstance(cache, cls):
        raise TypeError(f"`{name}` must be the {cls.__name__} returned by the forward pass; "
                        f"got {type(cache).__name__}")
    return cache


def as_upstream(dout, shape, dtype, name="dout"):
    """The upstream gradient: an array of exactly ``shape``, in ``dtype`` (may be the caller's array)."""
    arr = _checks.as_array(dout, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"`{name}` must have the forward output's shape {tuple(shape)}; got {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    _checks.check_finite(arr, name)
    return arr


def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def ordered_scatter_add(out, dest, values, *, chunk=None):
    """``out[dest[i]] += v[i]`` for ``i = 0, 1, ..., N-1`` with *sequential* rounding.

    A C kernel that loops ``for i: out[dest[i]] += v[i]`` rounds each destination's sum in the order
    its contributions arrive. ``np.add.at`` would keep that order but is slow on rows; ``bincount`` and
    sorting-then-``reduceat`` change it (pairwise sums). Here the contributions are grouped into
    *rounds*: round ``r`` holds the ``r``-th contribution of every destination that has one, so the
    destinations inside a round are distinct and one vectorised ``out[d] = out[d] + v`` performs it;
    running the rounds in order repeats the kernel's additions exactly, bit for bit, in float32 and
    float64 (IEEE addition is commutative, so ``v + out[d]`` is the kernel's ``out[d] + v``). The
    number of rounds is the largest number of contributions to one destination.

    Parameters
    ----------
    out : ndarray, shape (M,) or (M, C)
        Accumulated in place (a buffer of the caller's own, never an input).
    dest : ndarray of int64, shape (N,)
        Row of ``out`` receiving contribution ``i``, listed in the kernel's order.
    values : callable
        ``values(idx) -> ndarray (len(idx),) or (len(idx), C)``: a *new* array of the contributions
        ``idx`` (computed on demand, so that ``N x C`` values never exist at once; it is modified).
    chunk : int, optional
        Rows per vectorised step (default: about 2 MiB of ``out`` rows, so the step stays in cache).

    Returns
    -------
    int
        The number of rounds.
    """
    N = len(dest)
    if N == 0:
        return 0
    if chunk is None:
        row_bytes = out.itemsize * (out.shape[1] if out.ndim > 1 else 1)
        chunk = max(1024, (2 << 20) // max(row_bytes, 1))
    order = np.argsort(dest, kind="stable")      # stable: keeps the kernel's order inside a destination
    ds = dest[order]
    first = np.empty(N, dtype=bool)
    first[0] = True
    np.not_equal(ds[1:], ds[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    rank = np.arange(N) - np.repeat(starts, np.diff(np.append(starts, N)))   # position inside its group
    counts = np.bincount(rank)
    sel = order[np.argsort(rank, kind="stable")]   # grouped by rank, round 0 first
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for r in range(len(counts)):
        for a in range(bounds[r], bounds[r + 1], chunk):
            idx = sel[a:min(a + chunk, bounds[r + 1])]
            d = dest[idx]
            v = values(idx)
            v += out[d]
            out[d] = v
    return len(counts)
