"""The YOLOv8 detection head (ultralytics ``Detect``, the "legacy" v8 form): a decoupled box branch
with distribution focal loss (DFL) logits and a class branch, one pair of branches per pyramid level,
as a forward/backward pair written out by hand from :mod:`refdet.layers`.

Per level ``i`` with ``C_i`` input channels::

    box branch  cv2.i:  3x3 conv C_i -> c2, ReLU;  3x3 conv c2 -> c2, ReLU;  1x1 conv c2 -> 4 * reg_max
    class branch cv3.i: 3x3 conv C_i -> c3, ReLU;  3x3 conv c3 -> c3, ReLU;  1x1 conv c3 -> K

with ultralytics' widths ``c2 = max(16, C_0 // 4, 4 * reg_max)`` and ``c3 = max(C_0, min(K, 100))``.
The box channels are side-major (``side * reg_max + bin``, sides l, t, r, b): the logits of the
distribution over ``reg_max`` distances per side that :func:`refdet.yolo.dfl_decode_forward` turns
into a box. Unlike RetinaNet's, the branches are **not** shared across levels (``nn.ModuleList`` of
one ``Sequential`` per level).

What differs from ultralytics, and why: ultralytics' ``Conv`` is conv (no bias) + BatchNorm + SiLU.
refdet's head is conv **with** bias + ReLU: no batch statistics (training and inference are the same
function, which a gradient check and an oracle need) and only the layers of :mod:`refdet.layers`. The
parameter keys are those of a *fused* ultralytics head (``model.fuse()`` folds each BatchNorm into
its conv's weight and bias): ``cv2.{i}.0.conv.weight``, ``cv2.{i}.0.conv.bias``, ``cv2.{i}.1.conv.*``,
``cv2.{i}.2.weight``, ``cv2.{i}.2.bias``, the same under ``cv3``.

The head outputs the raw logits; flattening (``refdet.heads.flatten_head_output(x, 1)``: row ``y * W
+ x`` of each level, levels concatenated) gives ultralytics' ``preds["boxes"].permute(0, 2, 1)`` and
``preds["scores"].permute(0, 2, 1)``, in the order of :func:`refdet.yolo.make_anchors`.

Sources: ultralytics 8.4 ``nn/modules/head.py`` (``Detect.__init__``, ``forward_head``,
``bias_init``), ``nn/modules/conv.py`` (``Conv``, ``Conv.forward_fuse``), ``utils/torch_utils.py``
(``fuse_conv_and_bn``).
"""
from __future__ import annotations

import math
import re
from typing import List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import layers as _layers
from refdet.heads._common import _features, _init_common

__all__ = ["YOLOHeadOutput", "YOLOHeadCache", "YOLO_BOX_BIAS", "yolo_head_widths", "yolo_head_init",
           "yolo_head_forward", "yolo_head_backward"]

#: ultralytics 8.4 ``Detect.bias_init``: every box logit starts at 2.0 (a uniform distribution over
#: the bins: each side starts at the middle distance ``(reg_max - 1) / 2``)
YOLO_BOX_BIAS = 2.0

_BRANCHES = ("cv2", "cv3")          # box, class (ultralytics' names)


class YOLOHeadOutput(NamedTuple):
    """Raw YOLOv8 head outputs, one array per level (a list) or one array for one map.

    box : (B, 4 * reg_max, H, W) DFL logits, channel ``side * reg_max + bin`` (sides l, t, r, b)
    cls : (B, K, H, W) class logits
    """
    box: object
    cls: object


class YOLOHeadCache(NamedTuple):
    """What :func:`yolo_head_backward` needs: per level and branch the layer caches
    ``[(conv, relu), (conv, relu), conv]``; the parameter shapes; one map or a list."""
    tapes: list
    param_shapes: dict
    single: bool
    dtype: np.dtype


def yolo_head_widths(in_channels: int, num_classes: int, reg_max: int) -> Tuple[int, int]:
    """ultralytics' branch widths ``(c2, c3) = (max(16, C_0 // 4, 4 reg_max), max(C_0, min(K, 100)))``."""
    c0 = _checks.check_int(in_channels, "in_channels", low=1)
    k = _checks.check_int(num_classes, "num_classes", low=1)
    r = _checks.check_int(reg_max, "reg_max", low=1)
    return max(16, c0 // 4, 4 * r), max(c0, min(k, 100))


def yolo_head_init(in_channels: Union[int, Sequence[int]], num_classes: int, *, num_levels: Optional[int] = None,
                   reg_max: int = 16, strides: Sequence[float] = (8, 16, 32), image_size: float = 640,
                   rng: Union[None, int, np.random.Generator] = None, dtype: np.dtype = np.float64,
                   max_elements: Optional[int] = None) -> dict:
    """Parameters of a YOLOv8 head.

    Parameters
    ----------
    in_channels : int or sequence of int
        Channels of each level's features (an int: the same for ``num_levels`` levels).
    num_classes : int
        K.
    num_levels : int, optional
        Needed when ``in_channels`` is an int (default 3).
    reg_max : int
        DFL bins per side (ultralytics 16), >= 1.
    strides : sequence of float
        Stride of each level: the class bias depends on it (below).
    image_size : float
        The image side of the class bias (ultralytics hard-codes 640).
    rng : None, int or Generator
    dtype : floating dtype

    Returns
    -------
    dict
        Keys as in the module docstring. Hidden 3x3 convs: He-normal weights (std ``sqrt(2 /
        fan_in)``, for ReLU without normalisation) and zero biases. Last 1x1 convs: weights
        ``normal(0, 0.01)``; biases as ultralytics' ``Detect.bias_init``: box 2.0
        (:data:`YOLO_BOX_BIAS`), class ``log(5 / K / (image_size / stride_i) ** 2)`` -- a prior of 5
        objects per image spread over the ``(image / stride)^2`` cells and K classes.
    """
    rng, dtype = _init_common(rng, dtype)
    if isinstance(in_channels, (list, tuple)):
        chans = [_checks.check_int(c, f"in_channels[{i}]", low=1) for i, c in enumerate(in_channels)]
        if num_levels is not None and _checks.check_int(num_levels, "num_levels", low=1) != len(chans):
            raise ValueError(f"`num_levels` ({num_levels}) must equal len(in_channels) ({len(chans)})")
    else:
        n = 3 if num_levels is None else _checks.check_int(num_levels, "num_levels", low=1)
        chans = [_checks.check_int(in_channels, "in_channels", low=1)] * n
    if not chans:
        raise ValueError("`in_channels` must list at least one level")
    k = _checks.check_int(num_classes, "num_classes", low=1)
    r = _checks.check_int(reg_max, "reg_max", low=1)
    st = _checks.as_positive_vector(strides, "strides")
    if st.shape[0] != len(chans):
        raise ValueError(f"`strides` must give one stride per level ({len(chans)}); got {st.shape[0]}")
    side = _checks.check_positive(image_size, "image_size")
    c2, c3 = yolo_head_widths(chans[0], k, r)
    _checks.check_allocation(sum(w * (c * 9 + 1) + w * (w * 9 + 1) + n * (w + 1) for c in chans
                                 for w, n in ((c2, 4 * r), (c3, k))), 8, "YOLO head parameters",
                             name="in_channels`, `num_classes` and `reg_max", limit=max_elements)
    p = {}
    for i, c in enumerate(chans):
        for br, width, n_out in (("cv2", c2, 4 * r), ("cv3", c3, k)):
            c_in = c
            for j in (0, 1):
                std = math.sqrt(2.0 / (c_in * 9))
                p[f"{br}.{i}.{j}.conv.weight"] = (rng.standard_normal((width, c_in, 3, 3)) * std).astype(dtype)
                p[f"{br}.{i}.{j}.conv.bias"] = np.zeros(width, dtype)
                c_in = width
            p[f"{br}.{i}.2.weight"] = (rng.standard_normal((n_out, width, 1, 1)) * 0.01).astype(dtype)
            if br == "cv2":
                p[f"{br}.{i}.2.bias"] = np.full(n_out, YOLO_BOX_BIAS, dtype)
            else:
                p[f"{br}.{i}.2.bias"] = np.full(n_out, math.log(5.0 / k / (side / float(st[i])) ** 2), dtype)
    return p


def _layout(params):
    """(levels, reg_max, K, {key: shape}) read from the keys and shapes of ``params``."""
    _checks.check_param_shapes(params, {}, "params", allow_extra=True)      # a Mapping, or TypeError
    rx = re.compile(r"cv2\.(\d+)\.2\.weight")
    levels = sorted(int(m.group(1)) for key in params if isinstance(key, str) for m in [rx.fullmatch(key)] if m)
    if not levels or levels != list(range(len(levels))):
        raise ValueError("`params` must hold a YOLO head: keys 'cv2.{i}.2.weight' for levels i = 0, 1, ...; got "
                         f"levels {levels}")
    want = {}
    k = r = None
    for i in levels:
        for br in _BRANCHES:
            w2 = np.shape(params.get(f"{br}.{i}.2.weight", ()))
            if len(w2) != 4 or w2[2:] != (1, 1):
                raise ValueError(f"`params['{br}.{i}.2.weight']` must have shape (F, c, 1, 1); got {w2}")
            w0 = np.shape(params.get(f"{br}.{i}.0.conv.weight", ()))
            if len(w0) != 4:
                raise ValueError(f"`params['{br}.{i}.0.conv.weight']` must have shape (c, C, 3, 3); got {w0}")
            width, c_in = w0[0], w0[1]
            want[f"{br}.{i}.0.conv.weight"] = (width, c_in, 3, 3)
            want[f"{br}.{i}.0.conv.bias"] = (width,)
            want[f"{br}.{i}.1.conv.weight"] = (width, width, 3, 3)
            want[f"{br}.{i}.1.conv.bias"] = (width,)
            want[f"{br}.{i}.2.weight"] = (w2[0], width, 1, 1)
            want[f"{br}.{i}.2.bias"] = (w2[0],)
        nb = np.shape(params[f"cv2.{i}.2.weight"])[0]
        if nb % 4:
            raise ValueError(f"`params['cv2.{i}.2.weight']` must have 4 * reg_max output channels; got {nb}")
        nk = np.shape(params[f"cv3.{i}.2.weight"])[0]
        if (r is not None and nb // 4 != r) or (k is not None and nk != k):
            raise ValueError(f"every level must have the same reg_max and K; level {i} has reg_max {nb // 4}, K {nk} "
                             f"(`params['cv2.{i}.2.weight']`, `params['cv3.{i}.2.weight']`)")
        r, k = nb // 4, nk
    return len(levels), r, k, want


def yolo_head_forward(params: Mapping[str, np.ndarray], features: Union[np.ndarray, Sequence[np.ndarray]]
                      ) -> Tuple[YOLOHeadOutput, YOLOHeadCache]:
    """The YOLOv8 head on every level (see the module docstring).

    Parameters
    ----------
    params : dict
        From :func:`yolo_head_init` (or a fused ultralytics ``Detect`` state_dict; its SiLU is ReLU here).
    features : ndarray, shape (B, C_0, H, W), or list of L arrays (B, C_i, H_i, W_i)
        Level ``i`` runs through branches ``cv2.i`` and ``cv3.i``.

    Returns
    -------
    output : YOLOHeadOutput
        ``box`` (B, 4 * reg_max, H_i, W_i) and ``cls`` (B, K, H_i, W_i) per level (lists, or arrays
        for one map).
    cache : YOLOHeadCache
    """
    feats, single, dtype = _features(features)
    n_levels, _, _, want = _layout(params)
    if len(feats) != n_levels:
        raise ValueError(f"`features` must have one map per head level ({n_levels}); got {len(feats)}")
    p = _checks.check_param_shapes(params, want, "params", dtype=dtype)
    for i, x in enumerate(feats):
        c = p[f"cv2.{i}.0.conv.weight"].shape[1]
        if x.shape[1] != c or p[f"cv3.{i}.0.conv.weight"].shape[1] != c:
            raise ValueError(f"`features[{i}]` must have C = {c} channels (the level's branches read that many); "
                             f"got shape {x.shape}")
    outs = {br: [] for br in _BRANCHES}
    tapes = []
    for i, x in enumerate(feats):
        level = {}
        for br in _BRANCHES:
            h = x
            tape = []
            for j in (0, 1):                                     # Conv(3x3) + act, twice
                h, cc = _layers.conv2d_forward(h, p[f"{br}.{i}.{j}.conv.weight"], p[f"{br}.{i}.{j}.conv.bias"],
                                               padding=1)
                h, cr = _layers.relu_forward(h)
                tape.append((cc, cr))
            y, cc = _layers.conv2d_forward(h, p[f"{br}.{i}.2.weight"], p[f"{br}.{i}.2.bias"])   # 1x1, no act
            tape.append(cc)
            level[br] = tape
            outs[br].append(y)
        tapes.append(level)
    box, cls = outs["cv2"], outs["cv3"]
    if single:
        box, cls = box[0], cls[0]
    cache = YOLOHeadCache(tapes, {k: v.shape for k, v in p.items()}, single, dtype)
    return YOLOHeadOutput(box, cls), cache


def yolo_head_backward(doutput: YOLOHeadOutput, cache: YOLOHeadCache) -> Tuple[dict, Union[np.ndarray, List]]:
    """Gradients of :func:`yolo_head_forward`.

    Parameters
    ----------
    doutput : YOLOHeadOutput
        Gradients of ``box`` and ``cls`` in the forward's structure (None for a field or a level: zero).
    cache : YOLOHeadCache

    Returns
    -------
    dparams : dict
        Same keys and shapes as the parameters.
    dfeatures : ndarray or list
        Per level, the sum of what the two branches send back.
    """
    if not isinstance(cache, YOLOHeadCache):
        raise TypeError(f"`cache` must be the YOLOHeadCache returned by yolo_head_forward; got "
                        f"{type(cache).__name__}")
    if not isinstance(doutput, YOLOHeadOutput):
        raise TypeError(f"`doutput` must be a YOLOHeadOutput(box, cls); got {type(doutput).__name__}")
    n = len(cache.tapes)

    def per_level(v, field):
        if v is None:
            return [None] * n
        if cache.single:
            return [v]
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise ValueError(f"`doutput.{field}` must be a list of {n} arrays (one per level)")
        return list(v)

    grads = {k: np.zeros(s, cache.dtype) for k, s in cache.param_shapes.items()}
    dfeats = []
    for i, (level, dbox, dcls) in enumerate(zip(cache.tapes, per_level(doutput.box, "box"),
                                                per_level(doutput.cls, "cls"))):
        dx = None
        for br, dy in (("cv2", dbox), ("cv3", dcls)):
            tape = level[br]
            if dy is None:
                continue
            dy = _checks.as_nchw(dy, f"doutput.{'box' if br == 'cv2' else 'cls'}", finite=False)
            if dy.shape != tape[2].out_shape:
                raise ValueError(f"the gradient of level {i}'s {br} output must have shape {tape[2].out_shape}; "
                                 f"got {dy.shape}")
            g = _layers.conv2d_backward(dy.astype(cache.dtype, copy=False), tape[2])
            grads[f"{br}.{i}.2.weight"] += g.dw
            grads[f"{br}.{i}.2.bias"] += g.db
            d = g.dx
            for j in (1, 0):
                cc, cr = tape[j]
                d = _layers.relu_backward(d, cr).dx
                g = _layers.conv2d_backward(d, cc)
                grads[f"{br}.{i}.{j}.conv.weight"] += g.dw
                grads[f"{br}.{i}.{j}.conv.bias"] += g.db
                d = g.dx
            dx = d if dx is None else dx + d
        if dx is None:
            x_shape = level["cv2"][0][0].x.shape
            dx = np.zeros(x_shape, cache.dtype)
        dfeats.append(dx)
    return grads, (dfeats[0] if cache.single else dfeats)
