"""The demo detectors' backbone: four 3x3 stride-2 conv + ReLU stages (strides 2, 4, 8, 16).

A toy stand-in for a ResNet's C2..C5, sized for 64-pixel images so that the demo trains on two CPU
cores in minutes; every detector of :mod:`refdet.detector` (and :mod:`refdet.faster_rcnn`) starts
with it. Forward/backward pairs over :func:`refdet.layers.conv2d_forward` and ``relu_forward``.
"""
from __future__ import annotations

import math

import numpy as np

from refdet import _checks
from refdet import layers

__all__ = ["backbone_init", "backbone_forward", "backbone_backward"]



def backbone_init(channels=(16, 32, 48, 64), *, in_channels=3, rng=None, dtype=np.float32):
    """He-normal weights (std sqrt(2 / fan_in)) and zero biases for each 3x3 conv stage."""
    rng = _checks.as_rng(rng)
    params = {}
    c_in = in_channels
    for i, c in enumerate(channels):
        fan_in = c_in * 9
        params[f"stage{i}.weight"] = (rng.standard_normal((c, c_in, 3, 3)) * math.sqrt(2.0 / fan_in)).astype(dtype)
        params[f"stage{i}.bias"] = np.zeros(c, dtype=dtype)
        c_in = c
    return params


def backbone_forward(params, x):
    """x (B, 3, H, W) -> list of the stage outputs [C1 (stride 2), C2 (4), C3 (8), C4 (16)], cache."""
    feats, caches = [], []
    n = len([k for k in params if k.endswith(".weight")])
    for i in range(n):
        x, cc = layers.conv2d_forward(x, params[f"stage{i}.weight"], params[f"stage{i}.bias"], stride=2, padding=1)
        x, cr = layers.relu_forward(x)
        feats.append(x)
        caches.append((cc, cr))
    return feats, caches


def backbone_backward(dfeats, caches):
    """dfeats: list (one per stage, None = 0) -> (dparams, None): the image needs no gradient."""
    grads = {}
    d = None
    for i in reversed(range(len(caches))):
        cc, cr = caches[i]
        if dfeats[i] is not None:
            d = dfeats[i] if d is None else d + dfeats[i]
        if d is None:  # nothing above this stage was used: zero gradients
            grads[f"stage{i}.weight"] = np.zeros(cc.w.shape, cc.w.dtype)
            grads[f"stage{i}.bias"] = np.zeros(cc.w.shape[0], cc.w.dtype)
            continue
        d = layers.relu_backward(d, cr).dx
        g = layers.conv2d_backward(d, cc, compute_dx=i > 0)  # no gradient for the image itself
        grads[f"stage{i}.weight"] = g.dw
        grads[f"stage{i}.bias"] = g.db
        d = g.dx
    return grads, d
