"""Detection heads (RPN, RetinaNet, SSD) as forward/backward pairs, composed from :mod:`refdet.layers`.

A head turns feature maps ``(B, C, H, W)`` into per-location predictions: for every location and
every one of its ``A`` anchors, ``K`` class logits and 4 box deltas, stored in the channels::

    (B, A*K, H, W)      channel  a*K + k      (anchor-major; box deltas: a*4 + j, j = dx, dy, dw, dh)

:func:`flatten_head_output` turns that into one row per anchor, in the order of the anchors of
:func:`refdet.grid_anchors` (``(y, x, a)``: row ``(y*W + x)*A + a``), which is torchvision's
``permute_and_flatten``, detectron2's ``permute_to_N_HWA_K`` and mmdet's ``permute(0, 2, 3, 1)``.

Parameters are plain ``dict``\\ s of arrays whose keys are **torchvision's ``state_dict`` keys**, so a
torchvision head is copied with ``{k: v.detach().numpy() for k, v in head.state_dict().items()}``.
Every forward takes one map (B, C, H, W) or a list of maps (one per pyramid level); RPN and
RetinaNet heads share their weights across levels (parameter gradients are summed over levels), the
SSD head has one pair of convolutions per level. Outputs and input gradients have the same structure
as the features (one array, or a list).

Dtypes: float64 features -> float64 math; float32 features -> float32 math (parameters are cast to
the features' working dtype); float16 is computed in float32. ReLU'(0) = 0 (the subgradient PyTorch
uses).

Sources: torchvision 0.29 ``models/detection/rpn.py`` (``RPNHead``), ``retinanet.py``
(``RetinaNetClassificationHead``/``RetinaNetRegressionHead``), ``ssd.py`` (``SSDHead``, ``_xavier_init``);
detectron2 ``StandardRPNHead``, ``RetinaNetHead``; mmdet ``RPNHead``, ``RetinaHead``, ``SSDHead``;
py-faster-rcnn ``models/pascal_voc/VGG16/faster_rcnn_end2end/train.prototxt`` (``rpn_cls_score``).
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet import layers as _layers

__all__ = [
    "RPNHeadOutput",
    "RetinaNetHeadOutput",
    "SSDHeadOutput",
    "HeadCache",
    "RETINANET_PRIOR_BIAS",
    "rpn_head_init",
    "rpn_head_forward",
    "rpn_head_backward",
    "retinanet_head_init",
    "retinanet_head_forward",
    "retinanet_head_backward",
    "ssd_head_init",
    "ssd_head_forward",
    "ssd_head_backward",
    "flatten_head_output",
    "unflatten_head_output",
]

#: ``-log((1 - pi) / pi)`` with ``pi = 0.01``: the RetinaNet classification bias that makes every
#: anchor start with foreground probability 0.01 (Focal Loss paper §4.1), so that the ~100k easy
#: negatives do not swamp the first iterations. ``-log(99) = -4.59511985013459``.
RETINANET_PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)

conventions.register(
    "rpn_head_init",
    {
        "torchvision": {"objectness": "sigmoid"},
        "detectron2": {"objectness": "sigmoid"},
        "mmdet": {"objectness": "sigmoid"},
        "caffe": {"objectness": "softmax"},
        "paper": {"objectness": "softmax"},
    },
    knobs={"objectness": "'sigmoid': A objectness logits (one per anchor); 'softmax': 2A logits, "
                         "channels [0, A) background and [A, 2A) foreground (py-faster-rcnn)"},
    doc="torchvision RPNHead (rpn.py 15-79), detectron2 StandardRPNHead and mmdet RPNHead "
        "(use_sigmoid=True) predict A sigmoid logits. py-faster-rcnn's rpn_cls_score has 2A channels "
        "reshaped to (1, 2, A*H, W) for a softmax, so channels [0, A) are background and [A, 2A) "
        "foreground (proposal_layer.py takes bottom[0].data[:, A:, :, :]); the Faster R-CNN paper "
        "(§3.1) describes this 2k-score softmax.",
)


# ---------------------------------------------------------------------------------------------------
# outputs and cache
# ---------------------------------------------------------------------------------------------------

class RPNHeadOutput(NamedTuple):
    """Raw RPN head outputs (logits and deltas, before any sigmoid/softmax or decoding).

    objectness : ndarray, shape (B, A, H, W) (sigmoid) or (B, 2A, H, W) (softmax), or a list per level
    deltas : ndarray, shape (B, 4A, H, W), or a list per level; channel ``a*4 + j``
    """
    objectness: object
    deltas: object


class RetinaNetHeadOutput(NamedTuple):
    """Raw RetinaNet head outputs.

    cls_logits : ndarray, shape (B, A*K, H, W), or a list per level; channel ``a*K + k``
    bbox_deltas : ndarray, shape (B, 4A, H, W), or a list per level; channel ``a*4 + j``
    """
    cls_logits: object
    bbox_deltas: object


class SSDHeadOutput(NamedTuple):
    """Raw SSD head outputs (one map per level; ``A_l`` may differ between levels).

    cls_logits : list of ndarray, shape (B, A_l*K, H_l, W_l) (K includes the background class 0)
    bbox_deltas : list of ndarray, shape (B, 4*A_l, H_l, W_l)
    """
    cls_logits: object
    bbox_deltas: object


class HeadCache(NamedTuple):
    """What a head's backward pass needs.

    head : str
        "rpn_head", "retinanet_head" or "ssd_head".
    output_type : type
        The forward's output NamedTuple class.
    single : bool
        The forward was given one map (not a list); gradients come back the same way.
    dtype : numpy.dtype
        Working dtype.
    param_shapes : dict
        ``{key: shape}`` of every parameter (the keys of ``dparams``).
    levels : list
        Per level: ``(programs, tapes, out_shapes, in_shape, fused)`` where ``programs`` is the
        ``(trunk, branches)`` op list, ``tapes`` the layer caches in the same order, and ``fused``
        ``(conv cache, channel cuts)`` when the branches' first convs ran as one stacked conv (their
        tapes then start at the second op), else None.
    """
    head: str
    output_type: type
    single: bool
    dtype: np.dtype
    param_shapes: dict
    levels: list


# ---------------------------------------------------------------------------------------------------
# a tiny interpreter: a head is a trunk (ops applied to the features) and branches (ops applied to
# the trunk's output, one branch per output field). Ops:
#   ("conv", weight_key, bias_key or None, padding)
#   ("gn", weight_key, bias_key, num_groups, eps)
#   ("relu",)
# ---------------------------------------------------------------------------------------------------

def _run(ops, params, x):
    tape = []
    for op in ops:
        kind = op[0]
        if kind == "conv":
            _, wk, bk, pad = op
            x, c = _layers.conv2d_forward(x, params[wk], None if bk is None else params[bk], padding=pad)
        elif kind == "gn":
            _, gk, bk, groups, eps = op
            x, c = _layers.group_norm_forward(x, params[gk], params[bk], num_groups=groups, eps=eps)
        else:  # relu
            x, c = _layers.relu_forward(x)
        tape.append(c)
    return x, tape


def _acc(grads, key, g):
    grads[key] += g


def _run_backward(ops, tape, dy, grads):
    for op, c in zip(reversed(ops), reversed(tape)):
        kind = op[0]
        if kind == "conv":
            g = _layers.conv2d_backward(dy, c)
            _acc(grads, op[1], g.dw)
            if op[2] is not None:
                _acc(grads, op[2], g.db)
            dy = g.dx
        elif kind == "gn":
            g = _layers.group_norm_backward(dy, c)
            _acc(grads, op[1], g.dgamma)
            _acc(grads, op[2], g.dbeta)
            dy = g.dx
        else:
            dy = _layers.relu_backward(dy, c).dx
    return dy


def _fusable(branches, params):
    """The first convs of the branches when they can run as one conv (same input, padding, kernel)."""
    if len(branches) < 2 or not all(br and br[0][0] == "conv" for br in branches):
        return None
    firsts = [br[0] for br in branches]
    if len({op[3] for op in firsts}) != 1 or len({op[2] is None for op in firsts}) != 1:
        return None
    if len({params[op[1]].shape[1:] for op in firsts}) != 1:
        return None
    return firsts


def _forward_levels(head, output_type, params, feats, single, dtype, program_of_level):
    """Run the head's program on every level.

    When every branch starts with a conv of the trunk's output (the RetinaNet classification and box
    subnets both start with a 3x3 conv of the level's features), those convs run as ONE conv with the
    filters stacked (one im2col instead of one per subnet); the result is split by channel. The
    arithmetic per output channel is the same dot product.
    """
    levels = []
    outs = [[] for _ in output_type._fields]
    stacked = {}
    for lvl, x in enumerate(feats):
        trunk, branches = program_of_level(lvl)
        t, trunk_tape = _run(trunk, params, x)
        tapes = [trunk_tape]
        shapes = []
        firsts = _fusable(branches, params)
        fused = None
        if firsts is not None:
            key = tuple(op[1] for op in firsts)
            if key not in stacked:
                w_cat = np.concatenate([params[op[1]] for op in firsts])
                b_cat = None if firsts[0][2] is None else np.concatenate([params[op[2]] for op in firsts])
                stacked[key] = (w_cat, b_cat)
            w_cat, b_cat = stacked[key]
            y_cat, c_cat = _layers.conv2d_forward(t, w_cat, b_cat, padding=firsts[0][3])
            cuts = np.cumsum([params[op[1]].shape[0] for op in firsts])[:-1]
            starts = np.split(y_cat, cuts, axis=1)
            fused = (c_cat, [int(v) for v in cuts])
        for k, br in enumerate(branches):
            if fused is not None:
                y, tape = _run(br[1:], params, starts[k])
            else:
                y, tape = _run(br, params, t)
            tapes.append(tape)
            outs[k].append(y)
            shapes.append(y.shape)
        levels.append(((trunk, branches), tapes, shapes, x.shape, fused))
    if single:
        outs = [o[0] for o in outs]
    cache = HeadCache(head, output_type, single, dtype, {k: v.shape for k, v in params.items()}, levels)
    return output_type(*outs), cache


def _backward_levels(doutput, cache, name="doutput"):
    if not isinstance(cache, HeadCache):
        raise TypeError(f"`cache` must be the HeadCache returned by a head forward; got {type(cache).__name__}")
    fields = cache.output_type._fields
    if not isinstance(doutput, tuple) or len(doutput) != len(fields):
        raise TypeError(f"`{name}` must be a {cache.output_type.__name__}({', '.join(fields)}) "
                        f"(a field may be None for a zero gradient); got {type(doutput).__name__}")
    n_levels = len(cache.levels)
    per_field = []
    for k, f in enumerate(fields):
        d = doutput[k]
        if d is None:
            per_field.append([None] * n_levels)
            continue
        if cache.single:
            d = [d]
        elif not isinstance(d, (list, tuple)) or len(d) != n_levels:
            raise ValueError(f"`{name}.{f}` must be a list of {n_levels} arrays (one per level, like the "
                             f"forward's output); got {type(d).__name__}")
        lv = []
        for lvl, a in enumerate(d):
            want = cache.levels[lvl][2][k]
            if a is None:
                lv.append(None)
                continue
            label = f"{name}.{f}" if cache.single else f"{name}.{f}[{lvl}]"
            a = _checks.as_nchw(a, label, dtype=cache.dtype)
            if a.shape != want:
                raise ValueError(f"`{label}` must have the forward output's shape {want}; got {a.shape}")
            lv.append(a)
        per_field.append(lv)
    grads = {k: np.zeros(s, dtype=cache.dtype) for k, s in cache.param_shapes.items()}
    dfeats = []
    for lvl, ((trunk, branches), tapes, shapes, in_shape, fused) in enumerate(cache.levels):
        dt = None
        if fused is not None:
            c_cat, cuts = fused
            widths = np.diff([0] + cuts + [c_cat.w.shape[0]])
            parts = []
            for k, br in enumerate(branches):
                d = per_field[k][lvl]
                if d is None:
                    b_, _, h_, w_ = c_cat.out_shape
                    parts.append(np.zeros((b_, int(widths[k]), h_, w_), dtype=cache.dtype))
                else:
                    parts.append(_run_backward(br[1:], tapes[k + 1], d, grads))
            if any(per_field[k][lvl] is not None for k in range(len(branches))):
                g = _layers.conv2d_backward(np.concatenate(parts, axis=1), c_cat)
                for op, dw_k, db_k in zip((br[0] for br in branches), np.split(g.dw, cuts),
                                          np.split(g.db, cuts) if g.db is not None else [None] * len(branches)):
                    _acc(grads, op[1], dw_k)
                    if op[2] is not None:
                        _acc(grads, op[2], db_k)
                dt = g.dx
        else:
            for k, br in enumerate(branches):
                d = per_field[k][lvl]
                if d is None:
                    continue
                g = _run_backward(br, tapes[k + 1], d, grads)
                dt = g if dt is None else dt + g
        if dt is None:  # no gradient reaches this level
            dfeats.append(np.zeros(in_shape, dtype=cache.dtype))
            continue
        dfeats.append(_run_backward(trunk, tapes[0], dt, grads))
    return grads, (dfeats[0] if cache.single else dfeats)


# ---------------------------------------------------------------------------------------------------
# validation shared by the heads
# ---------------------------------------------------------------------------------------------------

def _features(features, name="features"):
    """One NCHW map or a list of them -> (list in a common working dtype, single?)."""
    single = not isinstance(features, (list, tuple))
    maps = [features] if single else list(features)
    if not maps:
        raise ValueError(f"`{name}` must be one (B, C, H, W) map or a non-empty list of them; got an empty list")
    checked = [_checks.as_nchw(m, name if single else f"{name}[{i}]") for i, m in enumerate(maps)]
    dtype = np.result_type(*[m.dtype for m in checked])
    b = checked[0].shape[0]
    for i, m in enumerate(checked):
        if m.shape[0] != b:
            raise ValueError(f"every level of `{name}` must have the same batch size; got {b} for level 0 and "
                             f"{m.shape[0]} for level {i}")
    return [m.astype(dtype, copy=False) for m in checked], single, np.dtype(dtype)


def _check_channels(feats, c, name="features"):
    for i, m in enumerate(feats):
        if m.shape[1] != c:
            label = name if len(feats) == 1 else f"{name}[{i}]"
            raise ValueError(f"`{label}` must have C = {c} channels (the heads' in_channels); got shape {m.shape}")


# ---------------------------------------------------------------------------------------------------
# init helpers (all randomness through one Generator, drawn in key order)
# ---------------------------------------------------------------------------------------------------

def _normal(rng, shape, std, dtype):
    return (rng.standard_normal(shape) * std).astype(dtype)


def _xavier_uniform(rng, shape, dtype):
    # torch.nn.init.xavier_uniform_: bound = gain * sqrt(6 / (fan_in + fan_out)), gain 1,
    # fan_in = C * KH * KW, fan_out = F * KH * KW
    f, c, kh, kw = shape
    bound = math.sqrt(6.0 / ((c + f) * kh * kw))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _init_common(rng, dtype):
    rng = _checks.as_rng(rng)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"`dtype` must be a floating dtype; got {dtype}")
    return rng, dtype


# ---------------------------------------------------------------------------------------------------
# RPN head
# ---------------------------------------------------------------------------------------------------

def rpn_head_init(in_channels, num_anchors, *, rng=None, conv_depth=1, objectness=None,
                  convention="torchvision", dtype=np.float64):
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
    _checks.check_choice(s["objectness"], "objectness", ("sigmoid", "softmax"))
    c = _checks.check_int(in_channels, "in_channels", low=1)
    a = _checks.check_int(num_anchors, "num_anchors", low=1)
    depth = _checks.check_int(conv_depth, "conv_depth", low=0)
    rng, dtype = _init_common(rng, dtype)
    n_obj = a if s["objectness"] == "sigmoid" else 2 * a
    p = {}
    for i in range(depth):
        p[f"conv.{i}.0.weight"] = _normal(rng, (c, c, 3, 3), 0.01, dtype)
        p[f"conv.{i}.0.bias"] = np.zeros(c, dtype)
    p["cls_logits.weight"] = _normal(rng, (n_obj, c, 1, 1), 0.01, dtype)
    p["cls_logits.bias"] = np.zeros(n_obj, dtype)
    p["bbox_pred.weight"] = _normal(rng, (4 * a, c, 1, 1), 0.01, dtype)
    p["bbox_pred.bias"] = np.zeros(4 * a, dtype)
    return p


def _count(params, pattern):
    rx = re.compile(pattern)
    idx = sorted(int(m.group(1)) for k in params if isinstance(k, str)
                 for m in [rx.fullmatch(k)] if m)
    return len(idx)


def _rpn_layout(params):
    """(C, A, n_obj, depth) from the parameter shapes; strict key/shape check."""
    _checks.check_param_shapes(params, {}, "params", allow_extra=True)  # a Mapping, or TypeError
    depth = _count(params, r"conv\.(\d+)\.0\.weight")
    if "bbox_pred.weight" not in params or "cls_logits.weight" not in params:
        _checks.check_param_shapes(params, {"cls_logits.weight": None, "bbox_pred.weight": None}, "params",
                                   allow_extra=True)
    c = np.shape(params["bbox_pred.weight"])[1] if np.ndim(params["bbox_pred.weight"]) == 4 else None
    f_box = np.shape(params["bbox_pred.weight"])[0]
    if c is None or f_box % 4:
        raise ValueError("`params['bbox_pred.weight']` must have shape (4A, C, 1, 1); got shape "
                         f"{np.shape(params['bbox_pred.weight'])}")
    a = f_box // 4
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


def rpn_head_forward(params, features):
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
    p = _checks.check_param_shapes(params, want, "params", dtype=dtype)
    _check_channels(feats, c)
    trunk = []
    for i in range(depth):
        trunk += [("conv", f"conv.{i}.0.weight", f"conv.{i}.0.bias", 1), ("relu",)]
    branches = [[("conv", "cls_logits.weight", "cls_logits.bias", 0)],
                [("conv", "bbox_pred.weight", "bbox_pred.bias", 0)]]
    return _forward_levels("rpn_head", RPNHeadOutput, p, feats, single, dtype, lambda lvl: (trunk, branches))


def rpn_head_backward(doutput, cache):
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


# ---------------------------------------------------------------------------------------------------
# RetinaNet head
# ---------------------------------------------------------------------------------------------------

_RN_CLS = "classification_head"
_RN_BOX = "regression_head"


def retinanet_head_init(in_channels, num_anchors, num_classes, *, rng=None, prior_probability=0.01,
                        num_convs=4, norm=None, dtype=np.float64):
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
    _checks.check_param_shapes(params, {}, "params", allow_extra=True)  # a Mapping, or TypeError
    _checks.check_param_shapes(params, {f"{_RN_CLS}.cls_logits.weight": None,
                                        f"{_RN_BOX}.bbox_reg.weight": None}, "params", allow_extra=True)
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


def retinanet_head_forward(params, features, *, num_groups=32, eps=1e-5):
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
    p = _checks.check_param_shapes(params, want, "params", dtype=dtype)
    _check_channels(feats, c)
    g = _checks.check_int(num_groups, "num_groups", low=1)
    e = _checks.check_positive(eps, "eps")
    if any(op[0] == "gn" for op in progs[_RN_CLS] + progs[_RN_BOX]) and c % g:
        raise ValueError(f"`num_groups` must divide the head's C = {c} channels; got {g}")
    branches = [[op if op[0] != "gn" else op + (g, e) for op in progs[h]] for h in (_RN_CLS, _RN_BOX)]
    return _forward_levels("retinanet_head", RetinaNetHeadOutput, p, feats, single, dtype,
                           lambda lvl: ([], branches))


def retinanet_head_backward(doutput, cache):
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


# ---------------------------------------------------------------------------------------------------
# SSD head
# ---------------------------------------------------------------------------------------------------

def _per_level(v, n, name):
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"`{name}` must have one entry per level ({n}); got {len(v)}")
        return [_checks.check_int(x, f"{name}[{i}]", low=1) for i, x in enumerate(v)]
    return [_checks.check_int(v, name, low=1)] * n


def ssd_head_init(in_channels, num_anchors, num_classes, *, rng=None, dtype=np.float64):
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
    for lvl, (c, a) in enumerate(zip(cs, a_s)):
        p[f"classification_head.module_list.{lvl}.weight"] = _xavier_uniform(rng, (a * k, c, 3, 3), dtype)
        p[f"classification_head.module_list.{lvl}.bias"] = np.zeros(a * k, dtype)
    for lvl, (c, a) in enumerate(zip(cs, a_s)):
        p[f"regression_head.module_list.{lvl}.weight"] = _xavier_uniform(rng, (4 * a, c, 3, 3), dtype)
        p[f"regression_head.module_list.{lvl}.bias"] = np.zeros(4 * a, dtype)
    return p


def ssd_head_forward(params, features, *, num_classes=None):
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
    _checks.check_param_shapes(params, {}, "params", allow_extra=True)  # a Mapping, or TypeError
    n = _count(params, r"regression_head\.module_list\.(\d+)\.weight")
    if n == 0:
        _checks.check_param_shapes(params, {"regression_head.module_list.0.weight": None}, "params",
                                   allow_extra=True)
    want = {}
    k_seen = None
    for lvl in range(n):
        ck, bk = f"classification_head.module_list.{lvl}", f"regression_head.module_list.{lvl}"
        _checks.check_param_shapes(params, {f"{ck}.weight": None, f"{bk}.weight": None}, "params",
                                   allow_extra=True)
        wb, wc = np.shape(params[f"{bk}.weight"]), np.shape(params[f"{ck}.weight"])
        if len(wb) != 4 or wb[0] % 4 or len(wc) != 4 or wc[0] % (wb[0] // 4):
            raise ValueError(f"`params['{bk}.weight']` must be (4*A_l, C_l, 3, 3) and `params['{ck}.weight']` "
                             f"(A_l*K, C_l, 3, 3); got {wb} and {wc}")
        a, c = wb[0] // 4, wb[1]
        kk = wc[0] // a
        if k_seen is not None and kk != k_seen:
            raise ValueError(f"every level must predict the same number of classes; level 0 has {k_seen}, "
                             f"level {lvl} has {kk}")
        k_seen = kk
        want.update({f"{ck}.weight": (a * kk, c, 3, 3), f"{ck}.bias": (a * kk,),
                     f"{bk}.weight": (4 * a, c, 3, 3), f"{bk}.bias": (4 * a,)})
    if num_classes is not None:
        k = _checks.check_int(num_classes, "num_classes", low=1)
        if k != k_seen:
            raise ValueError(f"`num_classes` = {k} does not match the params, which predict K = {k_seen} classes")
    p = _checks.check_param_shapes(params, want, "params", dtype=dtype)
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


def ssd_head_backward(doutput, cache):
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


# ---------------------------------------------------------------------------------------------------
# layout: channels <-> one row per anchor
# ---------------------------------------------------------------------------------------------------

_LAYOUTS = ("anchor_major", "class_major")


def _flatten_one(x, a, name, per_location, layout="anchor_major"):
    arr = _checks.as_array(x, name)
    if arr.ndim not in (3, 4):
        raise ValueError(f"`{name}` must be 3-D (A*C, H, W) or 4-D (B, A*C, H, W); got shape {arr.shape}")
    batched = arr.ndim == 4
    x4 = arr if batched else arr[None]
    b, ac, h, w = x4.shape
    if ac % a:
        raise ValueError(f"`{name}` channels ({ac}) must be a multiple of `num_anchors` ({a}); got shape {arr.shape}")
    c = ac // a
    out = np.empty((b, h, w, a, c), dtype=arr.dtype)
    if layout == "anchor_major":
        # (B, A, C, H, W) -> (B, H, W, A, C): channel a*C + c of location (y, x) -> row (y*W + x)*A + a
        out[...] = x4.reshape(b, a, c, h, w).transpose(0, 3, 4, 1, 2)
    else:
        # (B, C, A, H, W) -> (B, H, W, A, C): channel c*A + a (py-faster-rcnn's 2A softmax scores)
        out[...] = x4.reshape(b, c, a, h, w).transpose(0, 3, 4, 2, 1)
    out = out.reshape(b, h * w, a * c) if per_location else out.reshape(b, h * w * a, c)
    return out if batched else out[0]


def flatten_head_output(x, num_anchors, *, per_location=False, layout="anchor_major"):
    """Rearrange head outputs from channels to one row per anchor.

    Parameters
    ----------
    x : ndarray, shape (A*C, H, W) or (B, A*C, H, W), or a list of such arrays (levels)
        Channel ``a*C + c`` holds value ``c`` (class logit, or delta ``c`` of dx, dy, dw, dh) of
        anchor ``a``.
    num_anchors : int, or sequence of int (one per level)
        A.
    per_location : bool
        Return one row per location instead: ``(H*W, A*C)`` (the same memory order; row ``y*W + x``,
        column ``a*C + c``).
    layout : {"anchor_major", "class_major"}
        How the channels are laid out: ``"anchor_major"``, channel ``a*C + c`` (torchvision
        ``permute_and_flatten``, detectron2, mmdet, and every box-delta output including
        py-faster-rcnn's ``rpn_bbox_pred``); ``"class_major"``, channel ``c*A + a``: py-faster-rcnn's
        2A softmax objectness ``rpn_cls_score`` (reshaped to ``(1, 2, A*H, W)``: channels ``[0, A)``
        background, ``[A, 2A)`` foreground), flattened to ``(H*W*A, 2)`` = (background, foreground).

    Returns
    -------
    ndarray, shape (H*W*A, C) or (B, H*W*A, C)
        Row ``(y*W + x)*A + a``, column ``c`` = ``x[..., a*C + c, y, x]``: the order ``(y, x, a)`` of
        :func:`refdet.grid_anchors`. For a list of levels the rows are concatenated level by level
        (``(level, y, x, a)``, torchvision's ``concat_box_prediction_layers`` / ``RetinaNetHead``).
        A new array; the dtype of ``x`` is kept (a pure rearrangement).

    Examples
    --------
    A 50 x 50 map with A = 9: the (1, 36, 50, 50) regression output is (2500, 36) per location and
    (22500, 4) per anchor; the (1, 9, 50, 50) objectness is (2500, 9) per location, (22500, 1) per
    anchor.
    """
    _checks.check_choice(layout, "layout", _LAYOUTS)
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("`x` must be an array or a non-empty list of levels; got an empty list")
        a_s = _per_level(num_anchors, len(x), "num_anchors")
        parts = [_flatten_one(xi, ai, f"x[{i}]", per_location, layout) for i, (xi, ai) in enumerate(zip(x, a_s))]
        nd = {p.ndim for p in parts}
        if len(nd) != 1:
            raise ValueError("every level of `x` must have the same number of dimensions")
        if len({p.shape[-1] for p in parts}) != 1 or len({p.shape[:-2] for p in parts}) != 1:
            raise ValueError(f"the levels of `x` must agree on the batch size and the per-row width; got "
                             f"{[p.shape for p in parts]}")
        return np.concatenate(parts, axis=-2)
    a = _checks.check_int(num_anchors, "num_anchors", low=1)
    return _flatten_one(x, a, "x", per_location, layout)


def unflatten_head_output(x, num_anchors, feature_sizes, *, layout="anchor_major"):
    """Inverse of :func:`flatten_head_output` (e.g. to send a loss gradient back into a head).

    Parameters
    ----------
    x : ndarray, shape (N, C) or (B, N, C)
        One row per anchor in ``(level, y, x, a)`` order, ``N = sum_l H_l*W_l*A_l``.
    num_anchors : int, or sequence of int (one per level)
    feature_sizes : (H, W) or a list of (H, W) pairs (levels)
    layout : {"anchor_major", "class_major"}
        The channel layout to produce (see :func:`flatten_head_output`).

    Returns
    -------
    ndarray, shape (A*C, H, W) or (B, A*C, H, W); a list of them when ``feature_sizes`` is a list
    """
    _checks.check_choice(layout, "layout", _LAYOUTS)
    arr = _checks.as_array(x, "x")
    if arr.ndim not in (2, 3):
        raise ValueError(f"`x` must be 2-D (N, C) or 3-D (B, N, C); got shape {arr.shape}")
    many = isinstance(feature_sizes, list) or (
        isinstance(feature_sizes, tuple) and len(feature_sizes) > 0 and hasattr(feature_sizes[0], "__len__"))
    sizes = list(feature_sizes) if many else [feature_sizes]
    sizes = [_checks.check_pair(s, f"feature_sizes[{i}]" if many else "feature_sizes", low=1)
             for i, s in enumerate(sizes)]
    a_s = _per_level(num_anchors, len(sizes), "num_anchors")
    batched = arr.ndim == 3
    x3 = arr if batched else arr[None]
    b, n, c = x3.shape
    total = sum(h * w * a for (h, w), a in zip(sizes, a_s))
    if n != total:
        raise ValueError(f"`x` must have sum H*W*A = {total} rows for these feature sizes and anchors; got {n}")
    outs, start = [], 0
    for (h, w), a in zip(sizes, a_s):
        part = x3[:, start:start + h * w * a].reshape(b, h, w, a, c)
        start += h * w * a
        if layout == "anchor_major":
            o = np.empty((b, a, c, h, w), dtype=arr.dtype)
            o[...] = part.transpose(0, 3, 4, 1, 2)
        else:
            o = np.empty((b, c, a, h, w), dtype=arr.dtype)
            o[...] = part.transpose(0, 4, 3, 1, 2)
        o = o.reshape(b, a * c, h, w)
        outs.append(o if batched else o[0])
    return outs if many else outs[0]
