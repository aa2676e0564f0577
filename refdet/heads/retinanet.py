"""The RetinaNet head (Focal Loss paper §4, Fig. 3): a classification subnet and a box subnet, each
``num_convs`` x (3x3 conv [+ GroupNorm] + ReLU) then a 3x3 conv, applied to every pyramid level with
shared weights; as a forward/backward pair.

Sources: torchvision 0.29 ``models/detection/retinanet.py`` (``RetinaNetClassificationHead``,
``RetinaNetRegressionHead``; the v2 GroupNorm variant); detectron2 ``RetinaNetHead``; mmdet
``RetinaHead``.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet.heads._common import (HeadCache, _backward_levels, _check_channels, _count, _features,
                                  _forward_levels, _init_common, _normal)

__all__ = ["RetinaNetHeadOutput", "RETINANET_PRIOR_BIAS", "retinanet_head_init", "retinanet_head_forward",
           "retinanet_head_backward"]

#: ``-log((1 - pi) / pi)`` with ``pi = 0.01``: the RetinaNet classification bias that makes every
#: anchor start with foreground probability 0.01 (Focal Loss paper §4.1), so that the ~100k easy
#: negatives do not swamp the first iterations. ``-log(99) = -4.59511985013459``.
RETINANET_PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)


class RetinaNetHeadOutput(NamedTuple):
    """Raw RetinaNet head outputs.

    Attributes
    ----------
    cls_logits : ndarray, shape (B, A*K, H, W), or a list per level; channel ``a*K + k``
    bbox_deltas : ndarray, shape (B, 4A, H, W), or a list per level; channel ``a*4 + j``
    """
    cls_logits: object
    bbox_deltas: object


_RN_CLS = "classification_head"
_RN_BOX = "regression_head"


def retinanet_head_init(in_channels: int, num_anchors: int, num_classes: int, *,
                        rng: Union[None, int, np.random.Generator] = None, prior_probability: float = 0.01,
                        num_convs: int = 4, norm: Optional[str] = None, dtype: np.dtype = np.float64,
                        max_elements: Optional[int] = None) -> dict:
    """Parameters of a RetinaNet head (classification and box subnets).

    Parameters
    ----------
    in_channels : int
        C (256 in the paper); every tower conv keeps C channels.
    num_anchors : int
        A (9 in the paper: 3 scales x 3 ratios).
    num_classes : int
        K, sigmoid classes (no background channel).
    rng : None, int or numpy.random.Generator
    prior_probability : float
        pi in the classification bias ``-log((1 - pi) / pi)``; 0.01 gives
        :data:`RETINANET_PRIOR_BIAS` = -4.59511985013459.
    num_convs : int
        Tower depth (4 in the paper and everywhere).
    norm : {None, "group_norm"}
        ``"group_norm"``: each tower conv is followed by GroupNorm (affine, weight 1 bias 0 at init)
        and has **no bias** (torchvision ``retinanet_resnet50_fpn_v2``: ``Conv2dNormActivation`` with
        ``norm_layer=partial(nn.GroupNorm, 32)``). The number of groups is a forward option.
    dtype : dtype

    Returns
    -------
    dict
        torchvision ``RetinaNetHead`` state_dict keys: ``classification_head.conv.{i}.0.weight``
        (C, C, 3, 3) [+ ``.0.bias`` (C,) or ``.1.weight``/``.1.bias`` (C,) with GroupNorm],
        ``classification_head.cls_logits.weight`` (A*K, C, 3, 3), ``...cls_logits.bias`` (A*K,),
        the same towers under ``regression_head.``, ``regression_head.bbox_reg.weight`` (4A, C, 3, 3)
        and ``.bias`` (4A,). All conv weights ``normal(0, 0.01)``, biases 0 except the cls bias
        (torchvision ``retinanet.py`` 105-123 and 209-219, detectron2 ``RetinaNetHead`` 389-398,
        mmdet ``RetinaHead.init_cfg`` with ``bias_prob=0.01``, paper §4.1).
    """
    c = _checks.check_int(in_channels, "in_channels", low=1)
    a = _checks.check_int(num_anchors, "num_anchors", low=1)
    k = _checks.check_int(num_classes, "num_classes", low=1)
    pi = _checks.check_real(prior_probability, "prior_probability")
    if not 0 < pi < 1:
        raise ValueError(f"`prior_probability` must lie in (0, 1); got {pi}")
    depth = _checks.check_int(num_convs, "num_convs", low=0)
    if norm is not None:
        _checks.check_choice(norm, "norm", ("group_norm",))
    rng, dtype = _init_common(rng, dtype)
    _checks.check_allocation(2 * depth * (c * c * 9 + (1 if norm is None else 2) * c) + (a * k + 4 * a) * (c * 9 + 1),
                             dtype.itemsize,
                             "RetinaNet head parameters",
                             name="in_channels`, `num_anchors`, `num_classes` and `num_convs", limit=max_elements)
    p = {}
    for head in (_RN_CLS, _RN_BOX):
        for i in range(depth):
            p[f"{head}.conv.{i}.0.weight"] = _normal(rng, (c, c, 3, 3), 0.01, dtype)
            if norm is None:
                p[f"{head}.conv.{i}.0.bias"] = np.zeros(c, dtype)
            else:
                p[f"{head}.conv.{i}.1.weight"] = np.ones(c, dtype)
                p[f"{head}.conv.{i}.1.bias"] = np.zeros(c, dtype)
        if head == _RN_CLS:
            p[f"{head}.cls_logits.weight"] = _normal(rng, (a * k, c, 3, 3), 0.01, dtype)
            p[f"{head}.cls_logits.bias"] = np.full(a * k, -math.log((1 - pi) / pi), dtype)
        else:
            p[f"{head}.bbox_reg.weight"] = _normal(rng, (4 * a, c, 3, 3), 0.01, dtype)
            p[f"{head}.bbox_reg.bias"] = np.zeros(4 * a, dtype)
    return p


def _retinanet_layout(params):
    _checks.check_param_shapes(params, {}, allow_extra=True)  # a Mapping, or TypeError
    _checks.check_param_shapes(params, {f"{_RN_CLS}.cls_logits.weight": None,
                                        f"{_RN_BOX}.bbox_reg.weight": None}, allow_extra=True)
    wb = params[f"{_RN_BOX}.bbox_reg.weight"]
    wc = params[f"{_RN_CLS}.cls_logits.weight"]
    if np.ndim(wb) != 4 or np.shape(wb)[0] % 4:
        raise ValueError(f"`params['{_RN_BOX}.bbox_reg.weight']` must have shape (4A, C, 3, 3); got "
                         f"{np.shape(wb)}")
    a = np.shape(wb)[0] // 4
    c = np.shape(wb)[1]
    if np.ndim(wc) != 4 or np.shape(wc)[0] % a:
        raise ValueError(f"`params['{_RN_CLS}.cls_logits.weight']` must have shape (A*K, C, 3, 3) with "
                         f"A = {a}; got {np.shape(wc)}")
    k = np.shape(wc)[0] // a
    want, progs = {}, {}
    for head in (_RN_CLS, _RN_BOX):
        depth = _count(params, re.escape(head) + r"\.conv\.(\d+)\.0\.weight")
        gn = f"{head}.conv.0.1.weight" in params
        ops = []
        for i in range(depth):
            pre = f"{head}.conv.{i}"
            want[f"{pre}.0.weight"] = (c, c, 3, 3)
            if gn:
                want[f"{pre}.1.weight"] = (c,)
                want[f"{pre}.1.bias"] = (c,)
            has_bias = f"{pre}.0.bias" in params or not gn
            if has_bias:
                want[f"{pre}.0.bias"] = (c,)
            ops.append(("conv", f"{pre}.0.weight", f"{pre}.0.bias" if has_bias else None, 1))
            if gn:
                ops.append(("gn", f"{pre}.1.weight", f"{pre}.1.bias"))
            ops.append(("relu",))
        progs[head] = ops
    want[f"{_RN_CLS}.cls_logits.weight"] = (a * k, c, 3, 3)
    want[f"{_RN_CLS}.cls_logits.bias"] = (a * k,)
    want[f"{_RN_BOX}.bbox_reg.weight"] = (4 * a, c, 3, 3)
    want[f"{_RN_BOX}.bbox_reg.bias"] = (4 * a,)
    progs[_RN_CLS] = progs[_RN_CLS] + [("conv", f"{_RN_CLS}.cls_logits.weight", f"{_RN_CLS}.cls_logits.bias", 1)]
    progs[_RN_BOX] = progs[_RN_BOX] + [("conv", f"{_RN_BOX}.bbox_reg.weight", f"{_RN_BOX}.bbox_reg.bias", 1)]
    return want, c, a, k, progs


def retinanet_head_forward(params: Mapping[str, np.ndarray], features: Union[np.ndarray, Sequence[np.ndarray]], *,
                           num_groups: int = 32, eps: float = 1e-5) -> Tuple[RetinaNetHeadOutput, HeadCache]:
    """RetinaNet head: a classification subnet and a box subnet applied to every level.

    Each subnet is ``num_convs`` x (3x3 conv [+ GroupNorm] + ReLU) then a 3x3 conv to ``A*K``
    (classification) or ``4A`` (box) channels; both subnets read the same features and have their own
    weights (Focal Loss paper §4, Fig. 3).

    Parameters
    ----------
    params : dict
        From :func:`retinanet_head_init` or a torchvision ``RetinaNetHead`` state_dict. The layout
        (C, A, K, depth, GroupNorm or not) is read from the keys and shapes.
    features : ndarray, shape (B, C, H, W), or list of them (shared weights across levels)
    num_groups : int
        GroupNorm groups (used only when the params have GroupNorm weights); torchvision v2 uses 32.
    eps : float
        GroupNorm epsilon (PyTorch's default 1e-5).

    Returns
    -------
    output : RetinaNetHeadOutput
        ``cls_logits`` (B, A*K, H, W), ``bbox_deltas`` (B, 4A, H, W), or lists per level. torchvision's
        ``RetinaNetHead.forward`` returns ``flatten_head_output(cls_logits_list, A)`` (B, sum HWA, K).
    cache : HeadCache
    """
    feats, single, dtype = _features(features)
    want, c, a, k, progs = _retinanet_layout(params)
    p = _checks.check_param_shapes(params, want, dtype=dtype)
    _check_channels(feats, c)
    g = _checks.check_int(num_groups, "num_groups", low=1)
    e = _checks.check_positive(eps, "eps")
    if any(op[0] == "gn" for op in progs[_RN_CLS] + progs[_RN_BOX]) and c % g:
        raise ValueError(f"`num_groups` must divide the head's C = {c} channels; got {g}")
    branches = [[op if op[0] != "gn" else op + (g, e) for op in progs[h]] for h in (_RN_CLS, _RN_BOX)]
    return _forward_levels("retinanet_head", RetinaNetHeadOutput, p, feats, single, dtype,
                           lambda lvl: ([], branches))


def retinanet_head_backward(doutput: RetinaNetHeadOutput, cache: HeadCache
                            ) -> Tuple[dict, Union[np.ndarray, list]]:
    """Gradients of the RetinaNet head.

    Parameters
    ----------
    doutput : RetinaNetHeadOutput
        Gradients with respect to ``cls_logits`` and ``bbox_deltas`` (raw (B, A*K, H, W) layout; use
        :func:`unflatten_head_output` for gradients in the flattened layout). None = zero.
    cache : HeadCache

    Returns
    -------
    dparams : dict
        Same keys as ``params``, summed over levels.
    dfeatures : ndarray or list of ndarray
        The sum of what the two subnets send back.
    """
    return _backward_levels(doutput, cache)
