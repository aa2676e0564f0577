"""Feature Pyramid Network (Lin et al., arXiv:1612.03144) as a forward/backward pair.

Given backbone maps ``C_0 .. C_{L-1}`` (highest resolution first; C2..C5 or C3..C5 in the paper's
names), the FPN computes, top-down::

    M_{L-1} = lateral_{L-1}(C_{L-1})                                  # 1x1 conv to F channels
    M_i     = lateral_i(C_i) + upsample(M_{i+1})      (i = L-2 .. 0)  # nearest-neighbour upsampling
    P_i     = output_i(M_i)                                           # 3x3 conv, padding 1

then optional extra levels on top:

* ``"maxpool"``: ``P_L = max_pool2d(P_{L-1}, kernel_size=1, stride=2)``, i.e. every second pixel
  (Faster/Mask R-CNN's "P6"; torchvision ``LastLevelMaxPool``, detectron2, mmdet ``num_outs > L``
  without extra convs, Detectron1).
* ``"p6p7"``: ``P6 = conv3x3_s2(x)``, ``P7 = conv3x3_s2(relu(P6))`` (RetinaNet, paper §4) where ``x`` is
  C5 (paper, detectron2, torchvision v2, mmdet ``add_extra_convs="on_input"``) or P5 (torchvision v1,
  mmdet ``"on_output"``); mmdet leaves out the ReLU unless ``relu_before_extra_convs=True``. A
  3x3/stride 2/padding 1 conv maps n to ``floor((n - 1) / 2) + 1`` (5 -> 3, 4 -> 2).
* ``"none"``.

Frameworks differ in how ``upsample`` is sized and in how the sum is fused; each difference is a
keyword of :func:`fpn_forward`, set by ``convention=`` (``refdet.conventions.describe("fpn_forward")``):

* ``upsample="to_lateral"`` (torchvision, mmdet): ``interpolate(M, size=lateral.shape[-2:])``, which
  works for any sizes (13x9 -> 25x17 ...); ``"x2"`` (detectron2, Detectron1, the paper):
  ``scale_factor=2``, which requires every map to be exactly twice the next (inputs padded to a
  multiple of 32) and raises otherwise, as detectron2 would fail on the addition.
* ``upsample_mode="nearest"``: source index ``floor(dst * in / out)`` (PyTorch ``nearest``, 3 -> 5
  gives ``[0, 0, 1, 1, 2]``); ``"nearest-exact"``: ``floor((dst + 0.5) * in / out)`` (``[0, 0, 1, 2, 2]``).
* ``fuse="avg"`` (detectron2 option ``fuse_type="avg"``): ``M_i = (lateral + upsample) / 2``.

Parameters are a dict with torchvision ``FeaturePyramidNetwork`` state_dict keys:
``inner_blocks.{i}.0.weight`` (F, C_i, 1, 1), ``inner_blocks.{i}.0.bias`` (F,),
``layer_blocks.{i}.0.weight`` (F, F, 3, 3), ``layer_blocks.{i}.0.bias`` (F,), and for ``"p6p7"``
``extra_blocks.p6.weight`` (F, C_in, 3, 3), ``extra_blocks.p6.bias``, ``extra_blocks.p7.weight``
(F, F, 3, 3), ``extra_blocks.p7.bias``. (detectron2 calls them ``fpn_lateral{s}``/``fpn_output{s}``,
mmdet ``lateral_convs.{i}.conv``/``fpn_convs.{i}.conv``: same tensors.)

When another FPN disagrees with refdet on the same weights and inputs, :func:`fpn_explain` tries
every knob combination and names the settings (and the framework profiles) that reproduce it.

Dtypes: float64 features -> float64 math, float32 -> float32 (parameters are cast to the features'
dtype). ReLU'(0) = 0.
"""
from __future__ import annotations

import math
from typing import List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet import layers as _layers
from refdet import resize as _resize

__all__ = [
    "EXTRA_BLOCKS",
    "FPNCache",
    "FPNCandidate",
    "fpn_init",
    "fpn_forward",
    "fpn_backward",
    "fpn_explain",
]

EXTRA_BLOCKS = ("p6p7", "maxpool", "none")

_SRC = ("torchvision ops/feature_pyramid_network.py 172-250 (interpolate to the lateral's size, "
        "LastLevelMaxPool, LastLevelP6P7 with use_P5 = in_channels == out_channels, kaiming_uniform_(a=1)); "
        "detectron2 modeling/backbone/fpn.py (scale_factor=2.0, fuse_type sum|avg, LastLevelP6P7 "
        "in_feature='res5', c2_xavier_fill = kaiming_uniform_(a=1) + zero bias); mmdet v3 necks/fpn.py "
        "(size=prev_shape, add_extra_convs='on_input' in the RetinaNet configs, relu_before_extra_convs="
        "False, init_cfg Xavier uniform); Detectron1 FPN.py (UpsampleNearest scale 2, P6 from C5, ReLU "
        "before P7, XavierFill); FPN paper §3 (2x nearest upsampling, element-wise addition), Focal Loss "
        "paper §4 (P6 = conv3x3/s2 on C5, P7 = conv3x3/s2 after a ReLU).")

conventions.register(
    "fpn_forward",
    {
        "torchvision": {"upsample": "to_lateral", "upsample_mode": "nearest", "fuse": "sum",
                        "p6p7_input": "auto", "relu_before_p7": True},
        "detectron2": {"upsample": "x2", "upsample_mode": "nearest", "fuse": "sum",
                       "p6p7_input": "c5", "relu_before_p7": True},
        "mmdet": {"upsample": "to_lateral", "upsample_mode": "nearest", "fuse": "sum",
                  "p6p7_input": "c5", "relu_before_p7": False},
        "caffe": {"upsample": "x2", "upsample_mode": "nearest", "fuse": "sum",
                  "p6p7_input": "c5", "relu_before_p7": True},
        "paper": {"upsample": "x2", "upsample_mode": "nearest", "fuse": "sum",
                  "p6p7_input": "c5", "relu_before_p7": True},
    },
    knobs={
        "upsample": conventions.choice(
            ("to_lateral", "x2"), "'to_lateral': nearest-upsample M_{i+1} to the lateral's size; 'x2': "
            "scale_factor 2 (sizes must divide)",
            source="torchvision FeaturePyramidNetwork.forward (size=inner_lateral.shape[-2:]); mmdet FPN "
                   "(size=prev_shape); detectron2 FPN.forward (scale_factor=2.0)"),
        "upsample_mode": conventions.choice(
            ("nearest", "nearest-exact"), "'nearest' (src = floor(dst*in/out)) or 'nearest-exact' "
            "(floor((dst+0.5)*in/out))", source="F.interpolate mode='nearest' in every FPN above"),
        "fuse": conventions.choice(
            ("sum", "avg"), "'sum' (lateral + upsampled) or 'avg' (half the sum, detectron2 fuse_type='avg')",
            source="detectron2 modeling/backbone/fpn.py fuse_type"),
        "p6p7_input": conventions.choice(
            ("auto", "c5", "p5", "lateral"), "input of P6: 'c5', 'p5', 'lateral' (mmdet on_lateral: the top "
            "1x1 output) or 'auto' (torchvision: P5 iff the p6 weight has F input channels, else C5)",
            source="torchvision LastLevelP6P7 (use_P5); detectron2 LastLevelP6P7 in_feature; mmdet "
                   "add_extra_convs"),
        "relu_before_p7": conventions.flag(
            "P7 = conv(relu(P6)) (True) or conv(P6) (False: mmdet's default)",
            source="torchvision/detectron2 LastLevelP6P7 (F.relu(p6)); mmdet relu_before_extra_convs=False"),
    },
    doc=_SRC,
)

conventions.register(
    "fpn_init",
    {
        "torchvision": {"p6p7_input": "auto", "init": "kaiming_uniform_a1"},
        "detectron2": {"p6p7_input": "c5", "init": "kaiming_uniform_a1"},
        "mmdet": {"p6p7_input": "c5", "init": "xavier_uniform"},
        "caffe": {"p6p7_input": "c5", "init": "kaiming_uniform_a1"},
        "paper": {"p6p7_input": "c5", "init": "kaiming_uniform_a1"},
    },
    knobs={
        "p6p7_input": conventions.choice(
            ("auto", "c5", "p5", "lateral"), "what P6 reads, which fixes the p6 weight's input channels (C5's, "
            "or F for 'p5'/'lateral'; 'auto' = C5's, which torchvision then reads as P5 when they equal F)",
            source="torchvision retinanet_resnet50_fpn LastLevelP6P7(2048 or 256, 256)"),
        "init": conventions.choice(
            ("kaiming_uniform_a1", "xavier_uniform"), "'kaiming_uniform_a1': U(-sqrt(3/fan_in), +sqrt(3/fan_in)) = "
            "torchvision kaiming_uniform_(a=1) = detectron2 c2_xavier_fill = Caffe2 XavierFill; "
            "'xavier_uniform': U(-sqrt(6/(fan_in+fan_out)), +...) (mmdet FPN init_cfg); biases 0",
            source="torchvision ops/feature_pyramid_network.py __init__; detectron2 layers/wrappers "
                   "c2_xavier_fill; mmdet necks/fpn.py init_cfg"),
    },
    doc=_SRC + " The FPN paper states no initialisation; 'paper' uses its authors' Detectron "
               "(Caffe2 XavierFill).",
)


class FPNCache(NamedTuple):
    """What :func:`fpn_backward` needs.

    Attributes
    ----------
    settings : dict
        The resolved knobs (``extra_blocks``, ``upsample``, ``upsample_mode``, ``fuse``,
        ``p6p7_input`` as used: 'c5' | 'p5' | 'lateral', ``relu_before_p7``).
    dtype : numpy.dtype
    param_shapes : dict
        ``{key: shape}`` (the keys of ``dparams``).
    feature_shapes : list of tuple
    lateral : list
        Conv caches of the 1x1 lateral convs, per level.
    up : list
        Upsample caches; ``up[i]`` upsampled ``M_{i+1}`` into level i (None for the top level).
    output : list
        Conv caches of the 3x3 output convs, per level.
    extra : tuple
        ``("maxpool", cache)``, ``("p6p7", p6 conv cache, relu cache or None, p7 conv cache)`` or ``("none",)``.
    out_shapes : list of tuple
        Shapes of the outputs (P levels then extra levels).
    """
    settings: dict
    dtype: np.dtype
    param_shapes: dict
    feature_shapes: list
    lateral: list
    up: list
    output: list
    extra: tuple
    out_shapes: list


def _dx(g):
    """The input gradient of a layer backward (a NamedTuple with ``dx``, or a bare array)."""
    return g.dx if hasattr(g, "dx") else g


# ---------------------------------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------------------------------

def _init_weight(rng, shape, scheme, dtype):
    f, c, kh, kw = shape
    fan_in, fan_out = c * kh * kw, f * kh * kw
    if scheme == "kaiming_uniform_a1":
        # kaiming_uniform_(a=1): gain = sqrt(2 / (1 + a^2)) = 1, bound = gain * sqrt(3 / fan_in)
        bound = math.sqrt(3.0 / fan_in)
    else:  # xavier_uniform, gain 1
        bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _channels_list(in_channels_list):
    if isinstance(in_channels_list, (str, bytes)) or not hasattr(in_channels_list, "__len__"):
        raise TypeError(f"`in_channels_list` must be a list of ints (C_i per level); got "
                        f"{type(in_channels_list).__name__} {in_channels_list!r}")
    cs = [_checks.check_int(c, f"in_channels_list[{i}]", low=1) for i, c in enumerate(in_channels_list)]
    if not cs:
        raise ValueError("`in_channels_list` must list at least one level; got an empty list")
    return cs


@conventions.documented("fpn_init")
def fpn_init(in_channels_list: Sequence[int], out_channels: int, *, extra_blocks: str = "p6p7",
             rng: Union[None, int, np.random.Generator] = None,
             convention: Union[str, conventions.Profile] = "torchvision", p6p7_input: Optional[str] = None,
             init: Optional[str] = None, dtype: np.dtype = np.float64, max_elements: Optional[int] = None) -> dict:
    """Parameters of an FPN.

    Parameters
    ----------
    in_channels_list : sequence of int
        C_i of the backbone maps, highest resolution first (ResNet-50 C3..C5: 512, 1024, 2048).
    out_channels : int
        F (256 in the paper).
    extra_blocks : {"p6p7", "maxpool", "none"}
        Extra levels (see the module docstring). Pass the same value to :func:`fpn_forward`.
    rng : None, int or numpy.random.Generator
    convention : str
        Sets ``p6p7_input`` and ``init`` (``describe("fpn_init")``).
    p6p7_input : {"auto", "c5", "p5", "lateral"}, optional
        Decides the p6 weight's input channels: C_{L-1} for "c5" and "auto" (torchvision's
        ``LastLevelP6P7(in_channels_list[-1], F)``), F for "p5" / "lateral".
    init : {"kaiming_uniform_a1", "xavier_uniform"}, optional
        Weight initialisation (biases are 0).
    dtype : dtype

    Returns
    -------
    dict
        torchvision state_dict keys (module docstring), weights drawn in key order from ``rng``.
    """
    s = conventions.resolve("fpn_init", convention, p6p7_input=p6p7_input, init=init)
    _checks.check_choice(extra_blocks, "extra_blocks", EXTRA_BLOCKS)
    cs = _channels_list(in_channels_list)
    f = _checks.check_int(out_channels, "out_channels", low=1)
    rng = _checks.as_rng(rng)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`dtype` must be a floating dtype; got {_checks._describe(dtype)}") from None
    if dtype.kind != "f":
        raise TypeError(f"`dtype` must be a floating dtype; got {dtype}")
    c_in = cs[-1] if s["p6p7_input"] in ("auto", "c5") else f  # P6 reads C5, or an F-channel map
    n = sum(f * (c + 1) + f * (f * 9 + 1) for c in cs)  # laterals (F, C_i, 1, 1) and 3x3 outputs, with biases
    if extra_blocks == "p6p7":
        n += f * (c_in * 9 + 1) + f * (f * 9 + 1)
    _checks.check_allocation(n, dtype.itemsize, "FPN parameters", name="in_channels_list` and `out_channels",
                             limit=max_elements)
    p = {}
    for i, c in enumerate(cs):
        p[f"inner_blocks.{i}.0.weight"] = _init_weight(rng, (f, c, 1, 1), s["init"], dtype)
        p[f"inner_blocks.{i}.0.bias"] = np.zeros(f, dtype)
    for i in range(len(cs)):
        p[f"layer_blocks.{i}.0.weight"] = _init_weight(rng, (f, f, 3, 3), s["init"], dtype)
        p[f"layer_blocks.{i}.0.bias"] = np.zeros(f, dtype)
    if extra_blocks == "p6p7":
        p["extra_blocks.p6.weight"] = _init_weight(rng, (f, c_in, 3, 3), s["init"], dtype)
        p["extra_blocks.p6.bias"] = np.zeros(f, dtype)
        p["extra_blocks.p7.weight"] = _init_weight(rng, (f, f, 3, 3), s["init"], dtype)
        p["extra_blocks.p7.bias"] = np.zeros(f, dtype)
    return p


# ---------------------------------------------------------------------------------------------------
# forward / backward
# ---------------------------------------------------------------------------------------------------

def _layout(params, feats, extra_blocks):
    """Expected {key: shape} from the features and the top lateral weight; (want, F, c_p6)."""
    from collections.abc import Mapping

    if not isinstance(params, Mapping):
        _checks.check_param_shapes(params, {})  # raises: not a Mapping
    L = len(feats)
    n_params = sum(1 for k in params if isinstance(k, str) and k.startswith("inner_blocks.")
                   and k.endswith(".0.weight"))
    if n_params != L:
        raise ValueError(f"`params` hold an FPN with {n_params} levels (inner_blocks.*.0.weight) but `features` "
                         f"has {L} maps")
    k0 = f"inner_blocks.{L - 1}.0.weight"
    _checks.check_param_shapes(params, {k0: None}, allow_extra=True)
    shape0 = np.shape(params[k0])
    if len(shape0) != 4:
        raise ValueError(f"`params[{k0!r}]` must have shape (F, C, 1, 1); got {shape0}")
    f = shape0[0]
    want = {}
    for i, x in enumerate(feats):
        want[f"inner_blocks.{i}.0.weight"] = (f, x.shape[1], 1, 1)
        want[f"inner_blocks.{i}.0.bias"] = (f,)
    for i in range(L):
        want[f"layer_blocks.{i}.0.weight"] = (f, f, 3, 3)
        want[f"layer_blocks.{i}.0.bias"] = (f,)
    has_p6 = "extra_blocks.p6.weight" in params
    c_p6 = None
    if extra_blocks == "p6p7":
        if not has_p6:
            raise ValueError("`params` has no 'extra_blocks.p6.weight': they were made without P6/P7 "
                             "(pass extra_blocks='maxpool' or 'none' to fpn_forward, as to fpn_init)")
        shp = np.shape(params["extra_blocks.p6.weight"])
        if len(shp) != 4:
            raise ValueError(f"`params['extra_blocks.p6.weight']` must have shape (F, C_in, 3, 3); got {shp}")
        c_p6 = shp[1]
        want.update({"extra_blocks.p6.weight": (f, c_p6, 3, 3), "extra_blocks.p6.bias": (f,),
                     "extra_blocks.p7.weight": (f, f, 3, 3), "extra_blocks.p7.bias": (f,)})
    elif has_p6:
        raise ValueError(f"`params` has P6/P7 weights but extra_blocks={extra_blocks!r}; pass "
                         f"extra_blocks='p6p7' (as to fpn_init)")
    return want, f, c_p6


@conventions.documented("fpn_forward")
def fpn_forward(params: Mapping[str, np.ndarray], features: Sequence[np.ndarray], *, extra_blocks: str = "p6p7",
                convention: Union[str, conventions.Profile] = "torchvision", upsample: Optional[str] = None,
                upsample_mode: Optional[str] = None, fuse: Optional[str] = None, p6p7_input: Optional[str] = None,
                relu_before_p7: Optional[bool] = None) -> Tuple[List[np.ndarray], FPNCache]:
    """Feature Pyramid Network forward pass.

    Parameters
    ----------
    params : dict
        From :func:`fpn_init`, or a torchvision ``FeaturePyramidNetwork`` state_dict as NumPy arrays.
        Must have exactly the keys the features and ``extra_blocks`` call for.
    features : list of ndarray, shape (B, C_i, H_i, W_i)
        Backbone maps, highest resolution first (``H_i >= H_{i+1}`` is usual but not required with
        ``upsample="to_lateral"``).
    extra_blocks : {"p6p7", "maxpool", "none"}
        As given to :func:`fpn_init` (checked against the params: P6/P7 weights present or not).
    convention : str
        Sets the knobs below (``refdet.conventions.describe("fpn_forward")``).
    upsample : {"to_lateral", "x2"}, optional
    upsample_mode : {"nearest", "nearest-exact"}, optional
    fuse : {"sum", "avg"}, optional
    p6p7_input : {"auto", "c5", "p5", "lateral"}, optional
    relu_before_p7 : bool, optional

    Returns
    -------
    outputs : list of ndarray
        ``[P_0, ..., P_{L-1}]`` each (B, F, H_i, W_i), then the extra levels: ``P_L`` (B, F,
        ceil(H/2), ceil(W/2)) for "maxpool", or P6 (B, F, floor((H-1)/2)+1, ...) and P7 for "p6p7".
    cache : FPNCache
    """
    s = conventions.resolve("fpn_forward", convention, upsample=upsample, upsample_mode=upsample_mode,
                            fuse=fuse, p6p7_input=p6p7_input, relu_before_p7=relu_before_p7)
    _checks.check_choice(extra_blocks, "extra_blocks", EXTRA_BLOCKS)
    if not isinstance(features, (list, tuple)):
        raise TypeError(f"`features` must be a list of (B, C_i, H_i, W_i) maps (highest resolution first); "
                        f"got {type(features).__name__}")
    if not features:
        raise ValueError("`features` must hold at least one map; got an empty list")
    feats = [_checks.as_nchw(x, f"features[{i}]") for i, x in enumerate(features)]
    dtype = np.dtype(np.result_type(*[x.dtype for x in feats]))
    feats = [np.asarray(x, dtype=dtype) for x in feats]
    for i, x in enumerate(feats):
        if x.shape[0] != feats[0].shape[0]:
            raise ValueError(f"every level of `features` must have the same batch size; got {feats[0].shape[0]} "
                             f"for level 0 and {x.shape[0]} for level {i}")
    want, f, c_p6 = _layout(params, feats, extra_blocks)
    p = _checks.check_param_shapes(params, want, dtype=dtype)
    L = len(feats)
    settings = dict(s, extra_blocks=extra_blocks)

    lateral, up, output = [None] * L, [None] * L, [None] * L
    outs = [None] * L
    half = dtype.type(0.5)
    m, lateral[L - 1] = _layers.conv2d_forward(feats[L - 1], p[f"inner_blocks.{L - 1}.0.weight"],
                                                p[f"inner_blocks.{L - 1}.0.bias"])
    top_lateral = m
    outs[L - 1], output[L - 1] = _layers.conv2d_forward(m, p[f"layer_blocks.{L - 1}.0.weight"],
                                                        p[f"layer_blocks.{L - 1}.0.bias"], padding=1)
    for i in range(L - 2, -1, -1):
        lat, lateral[i] = _layers.conv2d_forward(feats[i], p[f"inner_blocks.{i}.0.weight"],
                                                 p[f"inner_blocks.{i}.0.bias"])
        if s["upsample"] == "to_lateral":
            td, up[i] = _resize.upsample_nearest_forward(m, size=lat.shape[-2:], mode=s["upsample_mode"])
        else:
            if lat.shape[-2:] != (2 * m.shape[-2], 2 * m.shape[-1]):
                raise ValueError(
                    f"upsample='x2' needs every map twice the size of the next: level {i} is "
                    f"{tuple(lat.shape[-2:])} but level {i + 1} upsampled by 2 is "
                    f"{(2 * m.shape[-2], 2 * m.shape[-1])} (detectron2 pads inputs to a multiple of 32; "
                    f"use upsample='to_lateral' for torchvision/mmdet behaviour)")
            td, up[i] = _resize.upsample_nearest_forward(m, scale_factor=2, mode=s["upsample_mode"])
        m = lat + td
        if s["fuse"] == "avg":
            m = m * half  # detectron2: prev_features /= 2 (exact in binary floating point)
        outs[i], output[i] = _layers.conv2d_forward(m, p[f"layer_blocks.{i}.0.weight"],
                                                    p[f"layer_blocks.{i}.0.bias"], padding=1)

    if extra_blocks == "maxpool":
        pool, pc = _layers.max_pool2d_forward(outs[L - 1], kernel_size=1, stride=2)
        outs.append(pool)
        extra = ("maxpool", pc)
    elif extra_blocks == "p6p7":
        src = s["p6p7_input"]
        if src == "auto":  # torchvision LastLevelP6P7: use_P5 = in_channels == out_channels
            src = "p5" if c_p6 == f else "c5"
        x = {"c5": feats[L - 1], "p5": outs[L - 1], "lateral": top_lateral}[src]
        if x.shape[1] != c_p6:
            raise ValueError(f"p6p7_input={src!r} has {x.shape[1]} channels but `params['extra_blocks.p6.weight']` "
                             f"expects {c_p6}")
        settings["p6p7_input"] = src
        p6, c6 = _layers.conv2d_forward(x, p["extra_blocks.p6.weight"], p["extra_blocks.p6.bias"],
                                        stride=2, padding=1)
        rc = None
        x7 = p6
        if s["relu_before_p7"]:
            x7, rc = _layers.relu_forward(p6)
        p7, c7 = _layers.conv2d_forward(x7, p["extra_blocks.p7.weight"], p["extra_blocks.p7.bias"],
                                        stride=2, padding=1)
        outs += [p6, p7]
        extra = ("p6p7", c6, rc, c7)
    else:
        extra = ("none",)
    cache = FPNCache(settings, dtype, {k: v.shape for k, v in p.items()}, [x.shape for x in feats],
                     lateral, up, output, extra, [o.shape for o in outs])
    return outs, cache


def fpn_backward(doutputs: Sequence[Optional[np.ndarray]], cache: FPNCache
                 ) -> Tuple[dict, List[np.ndarray]]:
    """Gradients of the FPN.

    Parameters
    ----------
    doutputs : list of ndarray
        Gradients of the loss with respect to each output of :func:`fpn_forward` (same shapes); an
        entry may be None (that level is unused: zero gradient).
    cache : FPNCache

    Returns
    -------
    dparams : dict
        Same keys and shapes as the params.
    dfeatures : list of ndarray
        Shaped like ``features``.

    Notes
    -----
    Top-down in reverse: ``dM_i = output_i^T(dP_i) + upsample^T(dM_{i-1} [x 1/2 for avg])`` where
    ``upsample^T`` sums the gradient of every output pixel into its source pixel; the lateral gets
    ``dM_i`` (halved under ``avg`` except at the top level). The extra levels are differentiated
    first and their gradient lands on P5, C5 or the top lateral.
    """
    if not isinstance(cache, FPNCache):
        raise TypeError(f"`cache` must be the FPNCache returned by fpn_forward; got {type(cache).__name__}")
    n_out = len(cache.out_shapes)
    if not isinstance(doutputs, (list, tuple)) or len(doutputs) != n_out:
        raise ValueError(f"`doutputs` must be a list of {n_out} arrays (one per output of fpn_forward); got "
                         f"{type(doutputs).__name__}" + (f" of length {len(doutputs)}"
                                                         if isinstance(doutputs, (list, tuple)) else ""))
    dt = cache.dtype
    d = []
    for i, (g, shp) in enumerate(zip(doutputs, cache.out_shapes)):
        if g is None:
            d.append(None)
            continue
        g = _checks.as_nchw(g, f"doutputs[{i}]", dtype=dt)
        if g.shape != shp:
            raise ValueError(f"`doutputs[{i}]` must have the output's shape {shp}; got {g.shape}")
        d.append(g)
    s = cache.settings
    L = len(cache.feature_shapes)
    grads = {k: np.zeros(v, dt) for k, v in cache.param_shapes.items()}
    dfeats = [np.zeros(shp, dt) for shp in cache.feature_shapes]
    dP = list(d[:L])
    d_top_lateral = None

    def add(a, b):
        if a is None or b is None:
            return b if a is None else a
        return a + b

    if cache.extra[0] == "maxpool" and d[L] is not None:
        dP[L - 1] = add(dP[L - 1], _dx(_layers.max_pool2d_backward(d[L], cache.extra[1])))
    elif cache.extra[0] == "p6p7":
        _, c6, rc, c7 = cache.extra
        dp6 = d[L]
        if d[L + 1] is not None:
            g7 = _layers.conv2d_backward(d[L + 1], c7)
            grads["extra_blocks.p7.weight"] += g7.dw
            grads["extra_blocks.p7.bias"] += g7.db
            dx7 = g7.dx if rc is None else _dx(_layers.relu_backward(g7.dx, rc))
            dp6 = add(dp6, dx7)
        if dp6 is not None:
            g6 = _layers.conv2d_backward(dp6, c6)
            grads["extra_blocks.p6.weight"] += g6.dw
            grads["extra_blocks.p6.bias"] += g6.db
            src = s["p6p7_input"]
            if src == "c5":
                dfeats[L - 1] += g6.dx
            elif src == "p5":
                dP[L - 1] = add(dP[L - 1], g6.dx)
            else:
                d_top_lateral = g6.dx

    half = dt.type(0.5)
    d_from_below = None  # gradient reaching M_i through the upsampling into level i - 1
    for i in range(L):
        dm = d_from_below
        if dP[i] is not None:
            go = _layers.conv2d_backward(dP[i], cache.output[i])
            grads[f"layer_blocks.{i}.0.weight"] += go.dw
            grads[f"layer_blocks.{i}.0.bias"] += go.db
            dm = add(dm, go.dx)
        if i == L - 1:
            dm = add(dm, d_top_lateral)
        d_from_below = None
        if dm is None:
            continue
        if i < L - 1 and s["fuse"] == "avg":
            dm = dm * half
        gl = _layers.conv2d_backward(dm, cache.lateral[i])
        grads[f"inner_blocks.{i}.0.weight"] += gl.dw
        grads[f"inner_blocks.{i}.0.bias"] += gl.db
        dfeats[i] += gl.dx
        if i < L - 1:
            if dm.size == 0:  # empty batch: nothing flows back (and np.add.at cannot reshape size 0)
                d_from_below = np.zeros(cache.out_shapes[i + 1], dt)
            else:
                d_from_below = _dx(_resize.upsample_nearest_backward(dm, cache.up[i]))
    return grads, dfeats


# ---------------------------------------------------------------------------------------------------
# explaining a mismatch: which knob settings reproduce someone else's FPN outputs?
# ---------------------------------------------------------------------------------------------------

class FPNCandidate(NamedTuple):
    """One combination of :func:`fpn_forward` knobs tried by :func:`fpn_explain`.

    Attributes
    ----------
    settings : dict
        The knobs (only those that matter for these inputs: no upsampling knobs for one level, no
        P6/P7 knobs without P6/P7; ``p6p7_input`` resolved to 'c5' | 'p5' | 'lateral').
    profiles : tuple of str
        Convention profiles that set exactly these knobs.
    errors : tuple of float
        Per output level, ``max |refdet - theirs|`` (inf when the shapes differ).
    match : bool
        Every level within ``atol + rtol * |theirs|``.
    """
    settings: dict
    profiles: tuple
    errors: tuple
    match: bool


def fpn_explain(params: Mapping[str, np.ndarray], features: Sequence[np.ndarray], outputs: Sequence[np.ndarray], *,
                extra_blocks: str = "p6p7", rtol: float = 1e-5, atol: float = 1e-6) -> List[FPNCandidate]:
    """Which FPN conventions reproduce ``outputs``? Runs :func:`fpn_forward` under every combination
    of its knobs and ranks them by how far they land from ``outputs``.

    Use it when another implementation's FPN (same weights, same inputs) disagrees with refdet's
    default: the best candidates name the knob (upsampling size rule, nearest vs nearest-exact, sum vs
    avg, what P6 reads, the ReLU before P7) and the framework profile that explain the outputs.

    Parameters
    ----------
    params, features, extra_blocks
        As for :func:`fpn_forward`.
    outputs : list of ndarray
        The other implementation's outputs, ``[P_0, ..., P_{L-1}, extra levels]``.
    rtol, atol : float
        A level matches when ``|refdet - theirs| <= atol + rtol * |theirs|`` everywhere (float32
        implementations: keep the defaults; float64: tighten them).

    Returns
    -------
    list of FPNCandidate
        Every feasible combination (``upsample="x2"`` is skipped when the sizes do not halve), best
        first: matches first, then by the largest per-level error. At most 2*2*2*3*2 = 48 forward
        passes.
    """
    _checks.check_choice(extra_blocks, "extra_blocks", EXTRA_BLOCKS)
    rtol = _checks.check_positive(rtol, "rtol", strict=False)
    atol = _checks.check_positive(atol, "atol", strict=False)
    if not isinstance(outputs, (list, tuple)):
        raise TypeError(f"`outputs` must be a list of arrays (one per FPN output); got {type(outputs).__name__}")
    theirs = [_checks.as_nchw(o, f"outputs[{i}]", finite=False) for i, o in enumerate(outputs)]
    if not isinstance(features, (list, tuple, np.ndarray)):
        raise TypeError(f"`features` must be a list of (B, C_l, H_l, W_l) maps; got {_checks._describe(features)}")
    n_feats = len(features) if isinstance(features, (list, tuple)) else 1
    n_extra = {"p6p7": 2, "maxpool": 1, "none": 0}[extra_blocks]
    if len(theirs) != n_feats + n_extra:
        raise ValueError(f"`outputs` must have {n_feats + n_extra} levels ({n_feats} maps of `features` + "
                         f"{n_extra} extra for extra_blocks={extra_blocks!r}); got {len(theirs)}")
    knobs = {}
    if n_feats > 1:
        knobs.update(upsample=("to_lateral", "x2"), upsample_mode=("nearest", "nearest-exact"), fuse=("sum", "avg"))
    if extra_blocks == "p6p7":
        knobs.update(p6p7_input=("c5", "p5", "lateral"), relu_before_p7=(True, False))
    names = list(knobs)
    combos = [dict()]
    for k in names:
        combos = [dict(c, **{k: v}) for c in combos for v in knobs[k]]
    table = conventions.describe("fpn_forward")
    found = []
    for combo in combos:
        try:
            outs, cache = fpn_forward(params, features, extra_blocks=extra_blocks, **combo)
        except ValueError as exc:
            msg = str(exc)
            if "upsample='x2'" in msg or "p6p7_input=" in msg:
                continue  # infeasible for these sizes / channel counts
            raise
        errors, ok = [], True
        for a, b in zip(outs, theirs):
            if a.shape != b.shape:
                errors.append(float("inf"))
                ok = False
                continue
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            errors.append(float(diff.max()) if diff.size else 0.0)
            with np.errstate(invalid="ignore"):
                ok = ok and bool(np.all(diff <= atol + rtol * np.abs(b.astype(np.float64))))
        settings = {k: cache.settings[k] for k in names}
        profiles = []
        for prof, prof_settings in table.items():
            same = True
            for k in names:
                v = prof_settings[k]
                if k == "p6p7_input" and v == "auto":  # torchvision's channel rule, as resolved here
                    c_p6 = np.shape(params["extra_blocks.p6.weight"])[1]
                    v = "p5" if c_p6 == np.shape(params["extra_blocks.p6.weight"])[0] else "c5"
                same = same and v == settings[k]
            if same:
                profiles.append(prof)
        found.append(FPNCandidate(settings, tuple(profiles), tuple(errors), ok))
    # matches first, then the smallest worst-level error, then candidates some framework uses
    found.sort(key=lambda c: (not c.match, max(c.errors) if c.errors else 0.0, not c.profiles))
    return found
