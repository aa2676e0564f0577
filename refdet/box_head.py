"""The Faster R-CNN box head as a forward/backward pair: torchvision ``TwoMLPHead`` + ``FastRCNNPredictor``.

``flatten -> fc6 -> ReLU -> fc7 -> ReLU``, then a class score and class-specific box deltas per RoI
(detectron2 ``FastRCNNConvFCHead`` with two FC layers + ``FastRCNNOutputLayers``; mmdet
``Shared2FCBBoxHead``). The parameters carry torchvision's ``RoIHeads`` ``state_dict`` keys. The
sampling, the loss and the detections around it are in :mod:`refdet.roi_heads` (which re-exports these
names).

Dtypes follow the inputs (float32 stays float32); the FC layers are GEMMs whose summation order
differs from torch's, so the box head matches torch to float32 rounding, not bit for bit.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "BoxHeadOutput",
    "BoxHeadCache",
    "box_head_init",
    "box_head_forward",
    "box_head_backward",
]

_HEAD_KEYS = ("box_head.fc6.weight", "box_head.fc6.bias", "box_head.fc7.weight", "box_head.fc7.bias",
              "box_predictor.cls_score.weight", "box_predictor.cls_score.bias",
              "box_predictor.bbox_pred.weight", "box_predictor.bbox_pred.bias")

conventions.register(
    "box_head_init",
    {
        "torchvision": {"init": "torch_default"},
        "detectron2": {"init": "detectron2"},
    },
    knobs={"init": conventions.choice(
        ("torch_default", "detectron2"),
        "'torch_default': nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases; 'detectron2': "
        "fc6/fc7 c2_xavier_fill (U(+-sqrt(3 / fan_in)), bias 0), cls_score N(0, 0.01), bbox_pred N(0, 0.001), "
        "biases 0", source="torch.nn.Linear.reset_parameters; detectron2 FastRCNNConvFCHead, FastRCNNOutputLayers")},
    doc="torchvision TwoMLPHead(256 * 7 * 7, 1024) and FastRCNNPredictor(1024, num_classes).",
)


class BoxHeadOutput(NamedTuple):
    """Box head outputs for R RoIs."""
    class_logits: np.ndarray     # (R, num_classes)
    box_regression: np.ndarray   # (R, 4 * num_reg_classes)


class BoxHeadCache(NamedTuple):
    x: np.ndarray                # (R, D) flattened pooled features
    h6: np.ndarray               # (R, H) after ReLU
    h7: np.ndarray               # (R, H) after ReLU
    params: dict
    input_shape: tuple


@conventions.documented("box_head_init")
def box_head_init(in_features: int, num_classes: int, *, representation_size: int = 1024,
                  num_reg_classes: Optional[int] = None, rng=None, dtype=np.float32,
                  convention="torchvision", init: Optional[str] = None) -> dict:
    """Parameters of the Faster R-CNN box head, under torchvision's ``RoIHeads`` ``state_dict`` keys.

    Parameters
    ----------
    in_features : int
        ``C * PH * PW`` of the pooled features (256 * 7 * 7 in the FPN model).
    num_classes : int
        Classes including the background (``cls_score`` outputs).
    representation_size : int
        Width of fc6 and fc7 (1024).
    num_reg_classes : int, optional
        Groups of 4 box deltas: ``num_classes`` (torchvision, default), ``num_classes - 1``
        (detectron2/mmdet: no background slot) or 1 (class-agnostic).
    rng : None, int or Generator
    dtype : float32 (torch's default) or float64
    convention, init
        The initialisation (table below); ``init`` overrides the profile's.

    Returns
    -------
    dict
        ``box_head.fc6.weight`` (H, D), ``box_head.fc6.bias`` (H,), ``box_head.fc7.*``,
        ``box_predictor.cls_score.weight`` (num_classes, H), ``box_predictor.bbox_pred.weight``
        (4 * num_reg_classes, H) and their biases. ``model.roi_heads.state_dict()`` of a torchvision
        Faster R-CNN (as NumPy arrays) has exactly these keys.
    """
    s = conventions.resolve("box_head_init", convention, init=init)
    D = _checks.check_int(in_features, "in_features", low=1)
    C = _checks.check_int(num_classes, "num_classes", low=1)
    Hd = _checks.check_int(representation_size, "representation_size", low=1)
    R = C if num_reg_classes is None else _checks.check_int(num_reg_classes, "num_reg_classes", low=1)
    gen = _checks.as_rng(rng)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`dtype` must be float32 or float64; got {_checks._describe(dtype)}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"`dtype` must be float32 or float64; got {dt}")
    _checks.check_allocation(Hd * (D + 1) + Hd * (Hd + 1) + (C + 4 * R) * (Hd + 1), dt.itemsize,
                             "box head parameters",
                             name="in_features`, `representation_size`, `num_classes` and `num_reg_classes",
                             keyword=False)
    shapes = {"fc6": (Hd, D), "fc7": (Hd, Hd), "cls": (C, Hd), "bbox": (4 * R, Hd)}
    p = {}
    for key, (name, shape) in zip(("box_head.fc6", "box_head.fc7", "box_predictor.cls_score",
                                   "box_predictor.bbox_pred"), shapes.items()):
        fan_in = shape[1]
        if s.init == "torch_default":
            bound = 1.0 / math.sqrt(fan_in)
            w = gen.uniform(-bound, bound, shape)
            b = gen.uniform(-bound, bound, shape[0])
        else:
            if name in ("fc6", "fc7"):
                bound = math.sqrt(3.0 / fan_in)
                w = gen.uniform(-bound, bound, shape)
            else:
                w = gen.normal(0.0, 0.01 if name == "cls" else 0.001, shape)
            b = np.zeros(shape[0])
        p[key + ".weight"] = w.astype(dt)
        p[key + ".bias"] = b.astype(dt)
    return p


def _head_params(params, dtype):
    if not isinstance(params, dict):
        raise TypeError(f"`params` must be a dict of arrays (RoIHeads state_dict keys); got {type(params).__name__}")
    missing = [k for k in _HEAD_KEYS if k not in params]
    if missing:
        raise ValueError(f"`params` is missing {', '.join(repr(k) for k in missing)}")
    w6 = _checks.as_float_array(params["box_head.fc6.weight"], "params['box_head.fc6.weight']", ndim=2)
    Hd, D = w6.shape
    for k in ("box_predictor.cls_score.weight", "box_predictor.bbox_pred.weight"):
        if np.ndim(params[k]) != 2:
            raise ValueError(f"`params[{k!r}]` must be 2-D (out, {Hd}); got shape {np.shape(params[k])}")
    C = np.shape(params["box_predictor.cls_score.weight"])[0]
    R4 = np.shape(params["box_predictor.bbox_pred.weight"])[0]
    want = {"box_head.fc6.weight": (Hd, D), "box_head.fc6.bias": (Hd,), "box_head.fc7.weight": (Hd, Hd),
            "box_head.fc7.bias": (Hd,), "box_predictor.cls_score.weight": (C, Hd),
            "box_predictor.cls_score.bias": (C,), "box_predictor.bbox_pred.weight": (R4, Hd),
            "box_predictor.bbox_pred.bias": (R4,)}
    if R4 % 4:
        raise ValueError(f"`params['box_predictor.bbox_pred.weight']` must have 4 * num_reg_classes rows; got {R4}")
    return _checks.check_param_shapes(params, want, "params", dtype=dtype, allow_extra=True)


def box_head_forward(params: dict, features: np.ndarray):
    """Box head forward: ``flatten -> fc6 -> ReLU -> fc7 -> ReLU -> (cls_score, bbox_pred)``.

    Parameters
    ----------
    params : dict
        From :func:`box_head_init` or a torchvision ``roi_heads.state_dict()`` (extra keys ignored).
    features : ndarray, shape (R, C, PH, PW) or (R, D)
        Pooled RoI features (``flatten(start_dim=1)`` is applied).

    Returns
    -------
    out : BoxHeadOutput
        ``class_logits`` (R, num_classes) and ``box_regression`` (R, 4 * num_reg_classes).
    cache : BoxHeadCache
    """
    x = _checks.as_float_array(features, "features")
    if x.ndim < 2:
        raise ValueError(f"`features` must have shape (R, C, PH, PW) or (R, D); got {x.shape}")
    shape = x.shape
    x = x.reshape(len(x), int(np.prod(shape[1:])))      # (R, D), also for R = 0
    p = _head_params(params, x.dtype)
    if x.shape[1] != p["box_head.fc6.weight"].shape[1]:
        raise ValueError(f"`features` flatten to {x.shape[1]} values per RoI but fc6 takes "
                         f"{p['box_head.fc6.weight'].shape[1]}")
    zero = x.dtype.type(0)
    h6 = np.maximum(x @ p["box_head.fc6.weight"].T + p["box_head.fc6.bias"], zero)
    h7 = np.maximum(h6 @ p["box_head.fc7.weight"].T + p["box_head.fc7.bias"], zero)
    logits = h7 @ p["box_predictor.cls_score.weight"].T + p["box_predictor.cls_score.bias"]
    deltas = h7 @ p["box_predictor.bbox_pred.weight"].T + p["box_predictor.bbox_pred.bias"]
    return BoxHeadOutput(logits, deltas), BoxHeadCache(x, h6, h7, p, shape)


def box_head_backward(doutput, cache: BoxHeadCache):
    """Gradients of :func:`box_head_forward`.

    Parameters
    ----------
    doutput : BoxHeadOutput or (dclass_logits, dbox_regression)
        Either may be None (no gradient from that output).
    cache : BoxHeadCache

    Returns
    -------
    dparams : dict
        Same keys as the parameters. ReLU'(0) = 0.
    dfeatures : ndarray
        Shaped like the ``features`` given to the forward.
    """
    if not isinstance(cache, BoxHeadCache):
        raise TypeError(f"`cache` must be the BoxHeadCache returned by box_head_forward; got {type(cache).__name__}")
    if not isinstance(doutput, tuple) or len(doutput) != 2:
        raise TypeError("`doutput` must be a BoxHeadOutput (dclass_logits, dbox_regression)")
    p = cache.params
    dt = cache.x.dtype
    R = len(cache.x)
    dl = np.zeros((R, p["box_predictor.cls_score.weight"].shape[0]), dt) if doutput[0] is None else \
        _checks.as_float_array(doutput[0], "doutput.dclass_logits", dtype=dt)
    dd = np.zeros((R, p["box_predictor.bbox_pred.weight"].shape[0]), dt) if doutput[1] is None else \
        _checks.as_float_array(doutput[1], "doutput.dbox_regression", dtype=dt)
    if dl.shape != (R, p["box_predictor.cls_score.weight"].shape[0]):
        raise ValueError(f"`doutput.dclass_logits` must have shape {(R, p['box_predictor.cls_score.weight'].shape[0])}; "
                         f"got {dl.shape}")
    if dd.shape != (R, p["box_predictor.bbox_pred.weight"].shape[0]):
        raise ValueError(f"`doutput.dbox_regression` must have shape "
                         f"{(R, p['box_predictor.bbox_pred.weight'].shape[0])}; got {dd.shape}")
    g = {"box_predictor.cls_score.weight": dl.T @ cache.h7, "box_predictor.cls_score.bias": dl.sum(0),
         "box_predictor.bbox_pred.weight": dd.T @ cache.h7, "box_predictor.bbox_pred.bias": dd.sum(0)}
    dh7 = (dl @ p["box_predictor.cls_score.weight"] + dd @ p["box_predictor.bbox_pred.weight"]) * (cache.h7 > 0)
    g["box_head.fc7.weight"] = dh7.T @ cache.h6
    g["box_head.fc7.bias"] = dh7.sum(0)
    dh6 = (dh7 @ p["box_head.fc7.weight"]) * (cache.h6 > 0)
    g["box_head.fc6.weight"] = dh6.T @ cache.x
    g["box_head.fc6.bias"] = dh6.sum(0)
    dx = (dh6 @ p["box_head.fc6.weight"]).reshape(cache.input_shape)
    return {k: g[k] for k in _HEAD_KEYS}, dx
