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


def backbone_init(channels=(16, 32, 48, 64), *, in_channels=3, rng=None, dtype=np.float32, max_elements=None):
    """He-normal weights (std sqrt(2 / fan_in)) and zero biases for each 3x3 conv stage.

    ``channels`` and ``in_channels`` are ints >= 1; the parameters (``sum c_out * c_in * 9``
    elements) are capped by ``max_elements`` (default :data:`refdet._checks.MAX_ELEMENTS`).
    """
    rng = _checks.as_rng(rng)
    dtype = _checks.check_float_dtype(dtype)
    channels = [_checks.check_int(c, f"channels[{i}]", low=1)
                for i, c in enumerate(_checks.check_sequence(channels, "channels", "a list of channel counts"))]
    in_channels = _checks.check_int(in_channels, "in_channels", low=1)
    total = sum(c * ci * 9 + c for c, ci in zip(channels, [in_channels] + channels[:-1]))
    _checks.check_allocation(total, dtype.itemsize, "backbone parameters", name="channels` and `in_channels",
                             limit=max_elements)
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
    n = _check_backbone(params)
    for i in range(n):
        x, cc = layers.conv2d_forward(x, params[f"stage{i}.weight"], params[f"stage{i}.bias"], stride=2, padding=1)
        x, cr = layers.relu_forward(x)
        feats.append(x)
        caches.append((cc, cr))
    return feats, caches


def _check_backbone(params, name="params"):
    """The number of stages of a backbone parameter dict ``stage{i}.weight`` / ``stage{i}.bias``."""
    from collections.abc import Mapping

    if not isinstance(params, Mapping):
        raise TypeError(f"`{name}` must be a dict of backbone arrays (stage0.weight, ...); got {_checks._describe(params)}")
    import re

    idx = [int(m.group(1)) for k in params if isinstance(k, str) for m in [re.fullmatch(r"stage(\d+)\.(?:weight|bias)", k)]
           if m]
    n = max(idx) + 1 if idx else 0
    if n == 0:
        raise ValueError(f"`{name}` holds no backbone stage (keys stage0.weight, stage0.bias, ...); got keys "
                         f"{list(params)[:6]}")
    want = {f"stage{i}.{p}": None for i in range(n) for p in ("weight", "bias")}
    _checks.check_param_shapes(params, want, name)
    for i in range(n):
        wk, bk = f"stage{i}.weight", f"stage{i}.bias"
        w = _checks.as_float_array(params[wk], f"{name}['{wk}']", ndim=4)
        b = _checks.as_float_array(params[bk], f"{name}['{bk}']", ndim=1)
        if b.shape != (w.shape[0],):
            raise ValueError(f"`{name}['{bk}']` must have shape ({w.shape[0]},) (one per output channel of "
                             f"{wk!r}); got {b.shape}")
    return n


def backbone_backward(dfeats, caches):
    """dfeats: list (one per stage, None = 0) -> (dparams, None): the image needs no gradient."""
    dfeats = _checks.check_sequence(dfeats, "dfeats", "a list of one gradient (or None) per stage")
    caches = _checks.check_sequence(caches, "caches", "the list of caches backbone_forward returned")
    if len(dfeats) != len(caches):
        raise ValueError(f"`dfeats` must have one entry per stage of `caches` ({len(caches)}); got {len(dfeats)}")
    for i, c in enumerate(caches):
        if not (isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], layers.Conv2dCache)):
            raise TypeError(f"`caches[{i}]` must be the (conv cache, relu cache) pair backbone_forward returned; "
                            f"got {_checks._describe(c)}")
    dfeats = list(dfeats)
    for i, d in enumerate(dfeats):
        if d is not None:
            want = caches[i][0].out_shape
            d = _checks.as_float_array(d, f"dfeats[{i}]")
            if d.shape != tuple(want):
                raise ValueError(f"`dfeats[{i}]` must have the shape of stage {i}'s output {tuple(want)}; got {d.shape}")
            dfeats[i] = d
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
