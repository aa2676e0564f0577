"""A synthetic detection dataset: filled rectangles and ellipses on noise.

Small enough to train a detector on two CPU cores in about a minute, hard enough that an untrained
detector scores near zero: shapes of random size, aspect ratio, colour and position, partly
overlapping, on a noisy background whose colour also varies.

Class ids: 0 = rectangle, 1 = ellipse. Boxes are xyxy in continuous pixel coordinates: a shape that
covers pixel columns ``x0 .. x1 - 1`` has the box ``x1 - x0`` wide.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refdet import _checks

__all__ = ["SyntheticBatch", "CLASS_NAMES", "make_synthetic_dataset"]

CLASS_NAMES = ("rectangle", "ellipse")


class SyntheticBatch(NamedTuple):
    """Images and their ground truth.

    Attributes
    ----------
    images : ndarray, shape (B, 3, H, W), float32 in roughly [-1, 1]
    boxes : list of B arrays, shape (M_i, 4), xyxy float32
    labels : list of B int64 arrays, shape (M_i,)
    """
    images: np.ndarray
    boxes: list
    labels: list


def make_synthetic_dataset(n_images, image_size=(64, 64), *, max_objects=3, min_size=10, max_size=32,
                           noise=0.25, rng=None, max_elements=None):
    """Draw ``n_images`` images with 1 to ``max_objects`` shapes each.

    Parameters
    ----------
    n_images : int
    image_size : (H, W)
    max_objects : int
    min_size, max_size : int
        Range of each shape's width and height, in pixels.
    noise : float
        Standard deviation of the Gaussian pixel noise.
    rng : None, int or Generator
    max_elements : int, optional
        Cap on the pixels (``n_images * 3 * H * W``) and on the shapes drawn (default
        :data:`refdet._checks.MAX_ELEMENTS`).

    Returns
    -------
    SyntheticBatch

    Notes
    -----
    Each shape is painted through a mask computed for the whole pixel grid at once (no loop over
    pixels); later shapes are painted over earlier ones. Rectangles fill their box exactly; an
    ellipse is inscribed in its box, so its box is tight too.
    """
    n = _checks.check_int(n_images, "n_images", low=0)
    h, w = (int(v) for v in _checks.check_image_size(image_size))
    k = _checks.check_int(max_objects, "max_objects", low=1)
    lo = _checks.check_int(min_size, "min_size", low=2)
    hi = _checks.check_int(max_size, "max_size", low=2)
    if hi < lo:
        raise ValueError(f"`max_size` must be >= `min_size` = {lo}; got {hi}")
    if hi > min(h, w):
        raise ValueError(f"`max_size` must fit in the image (`image_size` {(h, w)}: {min(h, w)} px); got {hi}")
    sigma = _checks.check_positive(noise, "noise", strict=False)
    rng = _checks.as_rng(rng)
    _checks.check_allocation(n * 3 * h * w, 4, f"{n} images x 3 x {h} x {w} pixels", name="n_images` and `image_size",
                             limit=max_elements)
    _checks.check_allocation(n * k, 8, "shapes to draw", name="max_objects` and `n_images", limit=max_elements)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + np.float32(0.5)  # pixel centres
    images = np.empty((n, 3, h, w), dtype=np.float32)
    all_boxes, all_labels = [], []
    for i in range(n):  # a loop over images and their few shapes; the pixels are vectorised
        bg = rng.uniform(-0.6, 0.0, size=(3, 1, 1)).astype(np.float32)
        img = bg + rng.normal(0, sigma, size=(3, h, w)).astype(np.float32)
        m = int(rng.integers(1, k + 1))
        bw = rng.integers(lo, hi + 1, size=m)
        bh = rng.integers(lo, hi + 1, size=m)
        x0 = rng.integers(0, w - bw + 1)
        y0 = rng.integers(0, h - bh + 1)
        cls = rng.integers(0, 2, size=m)
        colours = rng.uniform(0.3, 1.0, size=(m, 3)).astype(np.float32)
        for j in range(m):
            if cls[j] == 0:
                mask = (xx >= x0[j]) & (xx < x0[j] + bw[j]) & (yy >= y0[j]) & (yy < y0[j] + bh[j])
            else:
                cx, cy = x0[j] + bw[j] / 2, y0[j] + bh[j] / 2
                mask = ((xx - cx) / (bw[j] / 2)) ** 2 + ((yy - cy) / (bh[j] / 2)) ** 2 <= 1.0
            img = np.where(mask[None], colours[j][:, None, None] + rng.normal(0, sigma / 2, (3, h, w))
                           .astype(np.float32), img)
        images[i] = img
        all_boxes.append(np.stack([x0, y0, x0 + bw, y0 + bh], axis=1).astype(np.float32))
        all_labels.append(cls.astype(np.int64))
    return SyntheticBatch(images, all_boxes, all_labels)
