"""The SSD head (Liu et al. 2016, §2.1): per pyramid level one 3x3 conv for class logits (background
included) and one for box deltas, no activation; as a forward/backward pair. Unlike RPN and RetinaNet
the levels do not share weights (and may have different channels and anchor counts).

Sources: torchvision 0.29 ``models/detection/ssd.py`` (``SSDHead``, ``_xavier_init``); mmdet
``SSDHead``.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet.heads._common import (HeadCache, _backward_levels, _count, _features, _forward_levels, _init_common,
                                  _per_level, _xavier_uniform)

__all__ = ["SSDHeadOutput", "ssd_head_init", "ssd_head_forward", "ssd_head_backward"]


class SSDHeadOutput(NamedTuple):
    """Raw SSD head outputs (one map per level; ``A_l`` may differ between levels).

    Attributes
    ----------
    cls_logits : list of ndarray, shape (B, A_l*K, H_l, W_l) (K includes the background class 0)
    bbox_deltas : list of ndarray, shape (B, 4*A_l, H_l, W_l)
    """
    cls_logits: object
    bbox_deltas: object


def ssd_head_init(in_channels: Union[int, Sequence[int]], num_anchors: Union[int, Sequence[int]], num_classes: int,
                  *, rng: Union[None, int, np.random.Generator] = None, dtype: np.dtype = np.float64,
                  max_elements: Optional[int] = None) -> dict:
    """Parameters of an SSD head: per level, one 3x3 conv for class logits and one for box deltas.

    Parameters
    ----------
    in_channels : sequence of int
        C_l of each level (SSD300-VGG16: 512, 1024, 512, 256, 256, 256).
    num_anchors : int or sequence of int
        A_l, default boxes per location of each level (SSD300: 4, 6, 6, 6, 4, 4).
    num_classes : int
        K **including the background class 0** (torchvision's ``SSDHead`` argument, e.g. 91 for COCO;
        the paper's C + 1). The classification conv has ``A_l * K`` outputs, softmax over K.
    rng : None, int or numpy.random.Generator
    dtype : dtype

    Returns
    -------
    dict
        torchvision ``SSDHead`` state_dict keys: ``classification_head.module_list.{l}.weight``
        (A_l*K, C_l, 3, 3) and ``.bias``, ``regression_head.module_list.{l}.weight`` (4*A_l, C_l, 3, 3)
        and ``.bias``. Weights ``xavier_uniform`` (bound ``sqrt(6 / ((C_l + F) * 9))``), biases 0
        (torchvision ``ssd.py`` ``_xavier_init``; mmdet ``SSDHead`` uses the same Xavier uniform).
    """
    if isinstance(in_channels, (list, tuple)):
        cs = [_checks.check_int(x, f"in_channels[{i}]", low=1) for i, x in enumerate(in_channels)]
    else:
        cs = [_checks.check_int(in_channels, "in_channels", low=1)]
    if not cs:
        raise ValueError("`in_channels` must list at least one level; got an empty list")
    a_s = _per_level(num_anchors, len(cs), "num_anchors")
    k = _checks.check_int(num_classes, "num_classes", low=1)
    rng, dtype = _init_common(rng, dtype)
    p = {}
    _checks.check_allocation(sum((a * k + 4 * a) * (c * 9 + 1) for c, a in zip(cs, a_s)), np.dtype(dtype).itemsize,
                             "SSD head parameters", name="in_channels`, `num_anchors` and `num_classes",
                             limit=max_elements)
    for lvl, (c, a) in enumerate(zip(cs, a_s)):
        p[f"classification_head.module_list.{lvl}.weight"] = _xavier_uniform(rng, (a * k, c, 3, 3), dtype)
        p[f"classification_head.module_list.{lvl}.bias"] = np.zeros(a * k, dtype)
    for lvl, (c, a) in enumerate(zip(cs, a_s)):
        p[f"regression_head.module_list.{lvl}.weight"] = _xavier_uniform(rng, (4 * a, c, 3, 3), dtype)
        p[f"regression_head.module_list.{lvl}.bias"] = np.zeros(4 * a, dtype)
    return p


def ssd_head_forward(params: Mapping[str, np.ndarray], features: Union[np.ndarray, Sequence[np.ndarray]], *,
                     num_classes: Optional[int] = None) -> Tuple[SSDHeadOutput, HeadCache]:
    """SSD head: per level ``cls = conv3x3_cls_l(x_l)`` and ``box = conv3x3_box_l(x_l)`` (no activation).

    Parameters
    ----------
    params : dict
        From :func:`ssd_head_init` or a torchvision ``SSDHead`` state_dict.
    features : list of ndarray, shape (B, C_l, H_l, W_l)
        One map per level, as many as the params have levels (a single array is taken as one level).
    num_classes : int, optional
        K including background. Only used to check the params (the layout is otherwise read from the
        shapes: ``A_l = F_box / 4`` and ``K = F_cls / A_l``).

    Returns
    -------
    output : SSDHeadOutput
        Lists ``cls_logits`` (B, A_l*K, H_l, W_l) and ``bbox_deltas`` (B, 4*A_l, H_l, W_l).
        torchvision's ``SSDHead.forward`` returns ``flatten_head_output(cls_logits, [A_l...])``.
    cache : HeadCache
    """
    feats, single, dtype = _features(features)
    _checks.check_param_shapes(params, {}, allow_extra=True)  # a Mapping, or TypeError
    n = _count(params, r"regression_head\.module_list\.(\d+)\.weight")
    if n == 0:
        _checks.check_param_shapes(params, {"regression_head.module_list.0.weight": None})  # raises: missing
    want = {}
    k_seen = None
    for lvl in range(n):
        ck, bk = f"classification_head.module_list.{lvl}", f"regression_head.module_list.{lvl}"
        _checks.check_param_shapes(params, {f"{ck}.weight": None, f"{bk}.weight": None}, allow_extra=True)
        wb, wc = np.shape(params[f"{bk}.weight"]), np.shape(params[f"{ck}.weight"])
        if len(wb) != 4 or wb[0] == 0 or wb[0] % 4 or len(wc) != 4 or wc[0] == 0 or 4 * wc[0] % wb[0]:
            raise ValueError(f"`params['{bk}.weight']` must be (4*A_l, C_l, 3, 3) and `params['{ck}.weight']` "
                             f"(A_l*K, C_l, 3, 3); got {wb} and {wc}")
        a, c = wb[0] // 4, wb[1]
        kk = wc[0] // a
        if k_seen is not None and kk != k_seen:
            raise ValueError(f"every level must predict the same number of classes; level 0 has {k_seen}, "
                             f"level {lvl} has {kk} (`params['{ck}.weight']` {wc})")
        k_seen = kk
        want.update({f"{ck}.weight": (a * kk, c, 3, 3), f"{ck}.bias": (a * kk,),
                     f"{bk}.weight": (4 * a, c, 3, 3), f"{bk}.bias": (4 * a,)})
    if num_classes is not None:
        k = _checks.check_int(num_classes, "num_classes", low=1)
        if k != k_seen:
            raise ValueError(f"`num_classes` = {k} does not match the params, which predict K = {k_seen} classes")
    p = _checks.check_param_shapes(params, want, dtype=dtype)
    if len(feats) != n:
        raise ValueError(f"`features` must have one map per head level ({n}); got {len(feats)}")
    for lvl, m in enumerate(feats):
        c = want[f"regression_head.module_list.{lvl}.weight"][1]
        if m.shape[1] != c:
            raise ValueError(f"`features[{lvl}]` must have C = {c} channels; got shape {m.shape}")

    def program(lvl):
        ck, bk = f"classification_head.module_list.{lvl}", f"regression_head.module_list.{lvl}"
        return [], [[("conv", f"{ck}.weight", f"{ck}.bias", 1)], [("conv", f"{bk}.weight", f"{bk}.bias", 1)]]

    out, cache = _forward_levels("ssd_head", SSDHeadOutput, p, feats, False, dtype, program)
    return out, cache


def ssd_head_backward(doutput: SSDHeadOutput, cache: HeadCache) -> Tuple[dict, list]:
    """Gradients of the SSD head.

    Parameters
    ----------
    doutput : SSDHeadOutput
        Lists of gradients shaped like the forward's outputs (None = zero).
    cache : HeadCache

    Returns
    -------
    dparams : dict
    dfeatures : list of ndarray
    """
    return _backward_levels(doutput, cache)
