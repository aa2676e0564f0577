"""The RPN head (Faster R-CNN §3.1): a shared 3x3 conv + ReLU, then 1x1 objectness logits and 1x1
box deltas per anchor, as a forward/backward pair.

Sources: torchvision 0.29 ``models/detection/rpn.py`` (``RPNHead``); detectron2 ``StandardRPNHead``;
mmdet ``RPNHead``; py-faster-rcnn ``models/pascal_voc/VGG16/faster_rcnn_end2end/train.prototxt``
(``rpn_cls_score``, the 2A-channel softmax objectness).
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.heads._common import (HeadCache, _backward_levels, _check_channels, _count, _features,
                                  _forward_levels, _init_common, _normal)

__all__ = ["RPNHeadOutput", "rpn_head_init", "rpn_head_forward", "rpn_head_backward"]

conventions.register(
    "rpn_head_init",
    {
        "torchvision": {"objectness": "sigmoid"},
        "detectron2": {"objectness": "sigmoid"},
        "mmdet": {"objectness": "sigmoid"},
        "caffe": {"objectness": "softmax"},
        "paper": {"objectness": "softmax"},
    },
    knobs={"objectness": conventions.choice(
        ("sigmoid", "softmax"), "'sigmoid': A objectness logits (one per anchor); 'softmax': 2A logits, "
        "channels [0, A) background and [A, 2A) foreground (py-faster-rcnn)",
        source="torchvision models/detection/rpn.py RPNHead; py-faster-rcnn lib/rpn/proposal_layer.py "
               "(scores = bottom[0].data[:, A:])")},
    doc="torchvision RPNHead (rpn.py 15-79), detectron2 StandardRPNHead and mmdet RPNHead "
        "(use_sigmoid=True) predict A sigmoid logits. py-faster-rcnn's rpn_cls_score has 2A channels "
        "reshaped to (1, 2, A*H, W) for a softmax, so channels [0, A) are background and [A, 2A) "
        "foreground (proposal_layer.py takes bottom[0].data[:, A:, :, :]); the Faster R-CNN paper "
        "(§3.1) describes this 2k-score softmax.",
)



class RPNHeadOutput(NamedTuple):
    """Raw RPN head outputs (logits and deltas, before any sigmoid/softmax or decoding).

    Attributes
    ----------
    objectness : ndarray, shape (B, A, H, W) (sigmoid) or (B, 2A, H, W) (softmax), or a list per level
    deltas : ndarray, shape (B, 4A, H, W), or a list per level; channel ``a*4 + j``
    """
    objectness: object
    deltas: object


@conventions.documented("rpn_head_init")
def rpn_head_init(in_channels: int, num_anchors: int, *, rng: Union[None, int, np.random.Generator] = None,
                  conv_depth: int = 1, objectness: Optional[str] = None,
                  convention: Union[str, conventions.Profile] = "torchvision",
                  dtype: np.dtype = np.float64, max_elements: Optional[int] = None) -> dict:
    """Parameters of an RPN head: ``conv_depth`` x (3x3 conv + ReLU), then 1x1 objectness and 1x1 deltas.

    Parameters
    ----------
    in_channels : int
        C, channels of every feature map (the 3x3 convs keep C channels).
    num_anchors : int
        A, anchors per location.
    rng : None, int or numpy.random.Generator
    conv_depth : int
        Number of 3x3 conv + ReLU blocks (torchvision's ``conv_depth``; 1 in every stock model).
    objectness : {"sigmoid", "softmax"}, optional
        Overrides the profile: ``"sigmoid"`` gives A objectness channels (torchvision, detectron2,
        mmdet), ``"softmax"`` gives 2A (py-faster-rcnn: channels ``[0, A)`` background, ``[A, 2A)``
        foreground of the same anchors).
    convention : str
        ``"caffe"`` and ``"paper"`` select ``"softmax"``; the others ``"sigmoid"``.
    dtype : dtype
        Of the returned arrays.

    Returns
    -------
    dict
        torchvision ``RPNHead`` state_dict keys: ``conv.{i}.0.weight`` (C, C, 3, 3),
        ``conv.{i}.0.bias`` (C,), ``cls_logits.weight`` (A or 2A, C, 1, 1), ``cls_logits.bias``,
        ``bbox_pred.weight`` (4A, C, 1, 1), ``bbox_pred.bias`` (4A,). Weights ``normal(0, 0.01)``,
        biases 0 (torchvision ``RPNHead.__init__``, detectron2, mmdet ``normal_init(std=0.01)``,
        py-faster-rcnn ``gaussian std 0.01``).
    """
    s = conventions.resolve("rpn_head_init", convention, objectness=objectness)
    c = _checks.check_int(in_channels, "in_channels", low=1)
    a = _checks.check_int(num_anchors, "num_anchors", low=1)
    depth = _checks.check_int(conv_depth, "conv_depth", low=0)
    rng, dtype = _init_common(rng, dtype)
    n_obj = a if s["objectness"] == "sigmoid" else 2 * a
    _checks.check_allocation(depth * (c * c * 9 + c) + (n_obj + 4 * a) * (c + 1), dtype.itemsize,
                             "RPN head parameters", name="in_channels`, `num_anchors` and `conv_depth",
                             limit=max_elements)
    p = {}
    for i in range(depth):
        p[f"conv.{i}.0.weight"] = _normal(rng, (c, c, 3, 3), 0.01, dtype)
        p[f"conv.{i}.0.bias"] = np.zeros(c, dtype)
    p["cls_logits.weight"] = _normal(rng, (n_obj, c, 1, 1), 0.01, dtype)
    p["cls_logits.bias"] = np.zeros(n_obj, dtype)
    p["bbox_pred.weight"] = _normal(rng, (4 * a, c, 1, 1), 0.01, dtype)
    p["bbox_pred.bias"] = np.zeros(4 * a, dtype)
    return p


def _rpn_layout(params):
    """(C, A, n_obj, depth) from the parameter shapes; strict key/shape check."""
    _checks.check_param_shapes(params, {}, allow_extra=True)  # a Mapping, or TypeError
    depth = _count(params, r"conv\.(\d+)\.0\.weight")
    if "bbox_pred.weight" not in params or "cls_logits.weight" not in params:
        _checks.check_param_shapes(params, {"cls_logits.weight": None, "bbox_pred.weight": None})  # raises: missing
    c = np.shape(params["bbox_pred.weight"])[1] if np.ndim(params["bbox_pred.weight"]) == 4 else None
    f_box = np.shape(params["bbox_pred.weight"])[0] if c is not None else None
    if c is None or f_box % 4:
        raise ValueError("`params['bbox_pred.weight']` must have shape (4A, C, 1, 1); got shape "
                         f"{np.shape(params['bbox_pred.weight'])}")
    a = f_box // 4
    if np.ndim(params["cls_logits.weight"]) != 4:
        raise ValueError("`params['cls_logits.weight']` must have shape (A or 2A, C, 1, 1); got shape "
                         f"{np.shape(params['cls_logits.weight'])}")
    n_obj = np.shape(params["cls_logits.weight"])[0]
    if n_obj not in (a, 2 * a):
        raise ValueError(f"`params['cls_logits.weight']` must have A = {a} (sigmoid) or 2A = {2 * a} (softmax) "
                         f"output channels; got shape {np.shape(params['cls_logits.weight'])}")
    want = {}
    for i in range(depth):
        want[f"conv.{i}.0.weight"] = (c, c, 3, 3)
        want[f"conv.{i}.0.bias"] = (c,)
    want.update({"cls_logits.weight": (n_obj, c, 1, 1), "cls_logits.bias": (n_obj,),
                 "bbox_pred.weight": (4 * a, c, 1, 1), "bbox_pred.bias": (4 * a,)})
    return want, c, a, n_obj, depth


def rpn_head_forward(params: Mapping[str, np.ndarray], features: Union[np.ndarray, Sequence[np.ndarray]]
                     ) -> Tuple[RPNHeadOutput, HeadCache]:
    """RPN head: shared 3x3 conv + ReLU, then 1x1 objectness logits and 1x1 box deltas.

    Parameters
    ----------
    params : dict
        From :func:`rpn_head_init`, or a torchvision ``RPNHead`` state_dict as NumPy arrays. The layout
        (C, A, sigmoid/softmax, depth) is read from the shapes.
    features : ndarray, shape (B, C, H, W), or list of them (one per level; shared weights)

    Returns
    -------
    output : RPNHeadOutput
        ``objectness`` (B, A, H, W) [sigmoid] or (B, 2A, H, W) [softmax: channel ``a`` is the
        background logit and ``A + a`` the foreground logit of anchor ``a``]; ``deltas``
        (B, 4A, H, W), channel ``a*4 + j``. Lists when ``features`` is a list.
    cache : HeadCache

    Notes
    -----
    ``t = relu(conv3x3(x))``; ``objectness = conv1x1_cls(t)``; ``deltas = conv1x1_box(t)`` (padding 1 and
    0). Flatten with :func:`flatten_head_output` (``num_anchors = A``). The softmax layout is
    class-major: ``flatten_head_output(objectness, A, layout="class_major")`` gives (H*W*A, 2) rows
    (background, foreground); the foreground logits alone are ``objectness[:, A:]``, and softmax over
    the pair equals ``sigmoid(fg - bg)``.
    """
    feats, single, dtype = _features(features)
    want, c, a, n_obj, depth = _rpn_layout(params)
    p = _checks.check_param_shapes(params, want, dtype=dtype)
    _check_channels(feats, c)
    trunk = []
    for i in range(depth):
        trunk += [("conv", f"conv.{i}.0.weight", f"conv.{i}.0.bias", 1), ("relu",)]
    branches = [[("conv", "cls_logits.weight", "cls_logits.bias", 0)],
                [("conv", "bbox_pred.weight", "bbox_pred.bias", 0)]]
    return _forward_levels("rpn_head", RPNHeadOutput, p, feats, single, dtype, lambda lvl: (trunk, branches))


def rpn_head_backward(doutput: RPNHeadOutput, cache: HeadCache) -> Tuple[dict, Union[np.ndarray, list]]:
    """Gradients of the RPN head.

    Parameters
    ----------
    doutput : RPNHeadOutput
        Gradients of the loss with respect to ``objectness`` and ``deltas``, shaped like the forward's
        outputs (a field, or one level of it, may be None: zero gradient).
    cache : HeadCache

    Returns
    -------
    dparams : dict
        Same keys and shapes as ``params``; summed over levels (the weights are shared).
    dfeatures : ndarray or list of ndarray
        Shaped like ``features``.
    """
    return _backward_levels(doutput, cache)
