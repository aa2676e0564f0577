"""What the three heads share: the cache, a tiny op-list interpreter that runs a head forward and
backward over pyramid levels, feature validation and the initialisers.

A head is described as a *program*: a trunk (ops applied to a level's features) and branches (ops
applied to the trunk's output, one branch per output field), with ops::

    ("conv", weight_key, bias_key or None, padding)
    ("gn", weight_key, bias_key, num_groups, eps)
    ("relu",)

:func:`_forward_levels` runs the program on every level with :mod:`refdet.layers` and records the
layer caches (the tape); :func:`_backward_levels` walks the tape back, summing parameter gradients
over levels (RPN and RetinaNet share their weights across levels). Each head module (``rpn``,
``retinanet``, ``ssd``) only reads its parameter layout and writes its program; the exporters
(``refdet.exchange``) and the quantized head read the same programs.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import layers as _layers


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
# the interpreter (program format in the module docstring)
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
        elif kind == "relu":
            x, c = _layers.relu_forward(x)
        else:
            raise ValueError(f"unknown head op {op!r} (the ops are 'conv', 'gn' and 'relu')")
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
        else:  # relu (the forward refused any other op)
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
                b_cat = None if firsts[0][2] is None else np.concatenate([params[op[2]] for op in firsts])  # pragma: no mutate (_fusable: all or none have a bias)
                stacked[key] = (w_cat, b_cat)
            w_cat, b_cat = stacked[key]
            y_cat, c_cat = _layers.conv2d_forward(t, w_cat, b_cat, padding=firsts[0][3])  # pragma: no mutate (_fusable: one padding)
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
            a = _checks.as_nchw(a, label, dtype=cache.dtype)  # pragma: no mutate (layers' backward casts dy to the forward dtype too)
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
                    parts.append(np.zeros((b_, int(widths[k]), h_, w_), dtype=cache.dtype))  # pragma: no mutate (zeros; conv2d_backward casts dy)
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
    return [np.asarray(m, dtype=dtype) for m in checked], single, np.dtype(dtype)


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
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`dtype` must be a floating dtype; got {_checks._describe(dtype)}") from None
    if dtype.kind != "f":
        raise TypeError(f"`dtype` must be a floating dtype; got {dtype}")
    return rng, dtype


def _count(params, pattern):
    rx = re.compile(pattern)
    idx = sorted(int(m.group(1)) for k in params if isinstance(k, str)
                 for m in [rx.fullmatch(k)] if m)
    return len(idx)


def _per_level(v, n, name):
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"`{name}` must have one entry per level ({n}); got {len(v)}")
        return [_checks.check_int(x, f"{name}[{i}]", low=1) for i, x in enumerate(v)]
    return [_checks.check_int(v, name, low=1)] * n
