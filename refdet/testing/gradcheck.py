"""Gradient checking by central differences for any refdet forward/backward pair.

    from refdet.testing import check_gradients
    from refdet.layers import conv2d_forward, conv2d_backward

    report = check_gradients(conv2d_forward, conv2d_backward, (x, w, b), kwargs={"padding": 1}, rng=0)
    print(report)              # worst element: which input, index, analytic vs numeric

What it does
------------
1. Copies every floating array in ``inputs`` as float64 (the caller's arrays are never touched).
2. Runs ``out, cache = forward(*inputs, **kwargs)`` and draws a random upstream gradient ``dout``
   shaped like ``out`` (standard normal, from ``rng``). This defines the scalar
   ``J = sum_leaves sum(out_leaf * dout_leaf)``, whose gradient with respect to an input is exactly
   what ``backward(dout, cache)`` must return.
3. Compares every element of the analytic gradient with the central difference
   ``(J(x + eps e_i) - J(x - eps e_i)) / (2 eps)``, passing when
   ``|analytic - numeric| <= atol + rtol * |numeric|`` (``numpy.allclose``'s rule).
4. Also checks that forward and backward wrote into none of their arguments, that each gradient has
   its input's shape and (``check_dtype``) is float64 for float64 inputs.

Structures
----------
``inputs`` is a tuple/list of positional arguments (or a dict of keyword arguments). An argument may
be an array, a container (dict / list / tuple / NamedTuple) of arrays, e.g. a parameter dict, or
anything else (None, ints, strings: passed through, not differentiated). Every floating ndarray leaf
is differentiated; integer and bool arrays (labels, masks) are not. ``out`` may likewise be an array,
a Python/NumPy float (a loss), or a tuple / NamedTuple / list / dict of them; non-float leaves of
``out`` get ``None`` in ``dout``.

Alignment rule (how gradients are matched to inputs)
----------------------------------------------------
The value returned by ``backward`` is matched to the inputs in this order:

* ``grads_map`` if given: a callable ``grads -> dict {input name: gradient}`` (or a sequence in the
  inputs' order);
* a dict: keys are input names (``"x"`` or ``"dx"``);
* a NamedTuple whose field names are the input names, optionally prefixed by ``d``
  (``Conv2dGrads(dx, dw, db)`` for ``(x, w, b)``), matched by name; otherwise by position;
* a plain tuple or list: by position (``grads[i]`` is the gradient of ``inputs[i]``);
* anything else (a bare array): the gradient of the first input.

With exactly one input, a 1-tuple / 1-field NamedTuple is unwrapped first. Inside a container input,
the gradient must mirror the container (same dict keys, same list positions). Input names are the
forward's parameter names (from its signature) for positional inputs, the keys for a dict.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from refdet import _checks
from refdet._gradcheck_registry import _CASES, register_gradcheck  # noqa: F401  (re-exported)

__all__ = ["check_gradients", "GradCheckReport", "GradCheckFailure", "register_gradcheck", "gradcheck_all"]


@dataclass
class GradCheckFailure:
    """The worst element found: where it is and how far apart the two gradients are."""
    input: str
    index: tuple
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float          # |a - n| / max(|a|, |n|), 0 when both are 0
    excess: float             # |a - n| / (atol + rtol * |n|): > 1 fails


@dataclass
class GradCheckReport:
    """Result of :func:`check_gradients`. ``ok`` is True when every check passed."""
    ok: bool
    worst: Optional[GradCheckFailure]
    per_input: dict = field(default_factory=dict)   # path -> dict(n, max_abs, max_rel, ok)
    problems: list = field(default_factory=list)    # structural problems (missing gradient, ...)
    eps: float = 1e-6
    rtol: float = 1e-5
    atol: float = 1e-6

    def __str__(self):
        lines = [f"gradient check {'passed' if self.ok else 'FAILED'} (central differences, eps={self.eps:g}; "
                 f"pass if |analytic - numeric| <= {self.atol:g} + {self.rtol:g} * |numeric|)"]
        for p in self.problems:
            lines.append(f"  problem: {p}")
        if self.per_input:
            lines.append(f"  {'input':32s} {'checked':>8s} {'max abs err':>12s} {'max rel err':>12s}")
            for name, r in self.per_input.items():
                flag = "" if r["ok"] else "  <-- out of tolerance"
                lines.append(f"  {name:32s} {r['n']:8d} {r['max_abs']:12.3e} {r['max_rel']:12.3e}{flag}")
        if self.worst is not None:
            w = self.worst
            lines.append(f"  worst element: {w.input}[{', '.join(map(str, w.index))}]: analytic {w.analytic!r}, "
                         f"numeric {w.numeric!r}, abs error {w.abs_error:.3e}, rel error {w.rel_error:.3e} "
                         f"({w.excess:.3g} x the tolerance)")
        return "\n".join(lines)

    __repr__ = __str__


# ---------------------------------------------------------------------------------------------------
# pytree helpers: a "path" is a tuple of tokens ("key", k) / ("idx", i) / ("attr", name, i)
# ---------------------------------------------------------------------------------------------------

def _is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _is_float_scalar(a):
    return (isinstance(a, (float, np.floating)) and not isinstance(a, bool))


def _leaves(obj, path=(), *, scalars=False):
    """Yield ``(path, leaf)`` for every floating ndarray (and float scalar if ``scalars``) in ``obj``."""
    if _is_float_array(obj) or (scalars and _is_float_scalar(obj)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (("key", k),), scalars=scalars)
    elif _is_namedtuple(obj):
        for i, (f, v) in enumerate(zip(obj._fields, obj)):
            yield from _leaves(v, path + (("attr", f, i),), scalars=scalars)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (("idx", i),), scalars=scalars)


def _map(obj, fn, path=(), *, scalars=False, other=lambda p, v: v):
    """Rebuild ``obj`` with every float leaf replaced by ``fn(path, leaf)`` (others by ``other``)."""
    if _is_float_array(obj) or (scalars and _is_float_scalar(obj)):
        return fn(path, obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn, path + (("key", k),), scalars=scalars, other=other) for k, v in obj.items()}
    if _is_namedtuple(obj):
        return type(obj)(*[_map(v, fn, path + (("attr", f, i),), scalars=scalars, other=other)
                           for i, (f, v) in enumerate(zip(obj._fields, obj))])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(v, fn, path + (("idx", i),), scalars=scalars, other=other)
                         for i, v in enumerate(obj))
    return other(path, obj)


def _get(obj, path):
    """Follow ``path`` into ``obj``; None when the structure does not have it."""
    for tok in path:
        if obj is None:
            return None
        kind = tok[0]
        try:
            if kind == "key":
                if not isinstance(obj, dict):
                    return None
                k = tok[1]
                obj = obj[k] if k in obj else (obj.get("d" + k) if isinstance(k, str) else None)
            elif kind == "idx":
                if not isinstance(obj, (list, tuple)) or tok[1] >= len(obj):
                    return None
                obj = obj[tok[1]]
            else:  # attribute of a NamedTuple input: match the gradient by field name, else position
                name, i = tok[1], tok[2]
                if _is_namedtuple(obj):
                    if name in obj._fields:
                        obj = getattr(obj, name)
                    elif "d" + name in obj._fields:
                        obj = getattr(obj, "d" + name)
                    else:
                        obj = obj[i] if i < len(obj) else None
                elif isinstance(obj, dict):
                    obj = obj.get(name, obj.get("d" + name))
                elif isinstance(obj, (list, tuple)) and i < len(obj):
                    obj = obj[i]
                else:
                    return None
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _path_str(name, path):
    s = name
    for tok in path:
        if tok[0] == "key":
            s += f"[{tok[1]!r}]"
        elif tok[0] == "idx":
            s += f"[{tok[1]}]"
        else:
            s += f".{tok[1]}"
    return s


def _input_names(forward, n):
    """Parameter names of ``forward`` for ``n`` positional inputs (``inputs[i]`` when unknown)."""
    names = [f"inputs[{i}]" for i in range(n)]
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return names
    k = 0
    for p in params:
        if k >= n:
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names[k] = p.name
            k += 1
        else:
            break
    return names


def _align(grads, names, grads_map):
    """Map the value returned by backward to ``{input name: gradient structure}`` (see module doc)."""
    if grads_map is not None:
        grads = grads_map(grads)
        if isinstance(grads, dict):
            return dict(grads), "grads_map (by name)"
        return {n: g for n, g in zip(names, grads)}, "grads_map (by position)"
    if isinstance(grads, dict):
        out = {}
        for n in names:
            if n in grads:
                out[n] = grads[n]
            elif "d" + n in grads:
                out[n] = grads["d" + n]
        return out, "dict keys"
    if len(names) == 1 and isinstance(grads, tuple) and len(grads) == 1:
        return {names[0]: grads[0]}, "single input"
    if _is_namedtuple(grads):
        fields = list(grads._fields)
        byname = {}
        for f in fields:
            if f in names:
                byname[f] = getattr(grads, f)
            elif f.startswith("d") and f[1:] in names:
                byname[f[1:]] = getattr(grads, f)
        if len(byname) == len(fields):
            return byname, "NamedTuple field names"
        return {n: g for n, g in zip(names, grads)}, "NamedTuple by position"
    if isinstance(grads, (list, tuple)) and len(names) > 1:
        return {n: g for n, g in zip(names, grads)}, "position"
    return {names[0]: grads}, "single gradient"


def _snapshot(obj):
    return _map(obj, lambda p, a: a.copy(), other=lambda p, v: v.copy() if isinstance(v, np.ndarray) else v)


def _unchanged(before, after):
    """True when every ndarray in ``after`` equals its snapshot (NaN == NaN)."""
    a_leaves = list(_all_arrays(before))
    b_leaves = list(_all_arrays(after))
    if len(a_leaves) != len(b_leaves):
        return True  # structure changed shape: not a write into an array
    for (pa, a), (_, b) in zip(a_leaves, b_leaves):
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            return False
    return True


def _all_arrays(obj, path=()):
    if isinstance(obj, np.ndarray):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _all_arrays(v, path + (("key", k),))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _all_arrays(v, path + (("idx", i),))


def _objective(out, dout_leaves):
    """``J = sum over float leaves of sum(out_leaf * dout_leaf)`` in float64."""
    total = 0.0
    for path, leaf in _leaves(out, scalars=True):
        u = dout_leaves.get(path)
        if u is None:
            continue
        total += float(np.sum(np.asarray(leaf, dtype=np.float64) * np.asarray(u, dtype=np.float64)))
    return total


def _selected(label, name, wrt):
    if wrt is None:
        return True
    for w in wrt:
        if label == w or name == w or label.startswith(w + "[") or label.startswith(w + "."):
            return True
    return False


def _shapes(leaves):
    return ", ".join(f"{_path_str('out', p)}: {s}" for p, s in leaves.items()) or "no float arrays"


def check_gradients(forward, backward, inputs, *, kwargs=None, upstream=None, eps=1e-6, rtol=1e-5,
                    atol=1e-6, rng=None, wrt=None, grads_map=None, max_elements=None, check_dtype=True,
                    raise_on_failure=True):
    """Compare ``backward``'s analytic gradients with float64 central differences of ``forward``.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs, **kwargs) -> (out, cache)`` (or ``forward(**inputs, **kwargs)`` for a dict).
    backward : callable
        ``backward(dout, cache) -> gradients`` aligned with ``inputs`` (see the module docstring).
    inputs : tuple, list or dict
        The forward's arguments. Floating ndarrays (also inside dicts, lists, NamedTuples) are copied
        to float64 and differentiated; other values are passed through unchanged.
    kwargs : dict, optional
        Keyword options of the forward (``stride``, ``padding``, ...): not differentiated.
    upstream : optional
        ``dout`` to use, with the structure of ``out``. Default: standard normal draws from ``rng``.
    eps : float
        Central-difference step (absolute). Truncation error is ``O(eps**2)``; round-off is about
        ``1e-16 * |J| / eps``.
    rtol, atol : float
        An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    rng : None, int or Generator
        For the upstream gradient and for the subset of elements when ``max_elements`` is set.
    wrt : iterable of str, optional
        Only check these inputs: input names (``"x"``) or leaf paths (``"params['w']"``).
    grads_map : callable, optional
        ``grads -> {input name: gradient}`` (or a sequence in the inputs' order) for backward
        functions whose result does not follow the alignment rule.
    max_elements : int, optional
        Check at most this many randomly chosen elements per input array (all by default). Each
        element costs two forward calls.
    check_dtype : bool
        Require float64 gradients for the float64 inputs (refdet's dtype policy).
    raise_on_failure : bool
        Raise ``AssertionError`` carrying the report when a check fails (default); else return it.

    Returns
    -------
    GradCheckReport
        ``ok``, the worst element (input, index, analytic vs numeric, relative error) and per-input
        maxima; printing it gives a table.

    Notes
    -----
    Choose inputs away from kinks (ReLU at 0, max-pool ties, clamps): there the two one-sided
    derivatives differ and the central difference averages them.
    """
    rng = _checks.as_rng(rng)
    eps = _checks.check_positive(eps, "eps")
    rtol = _checks.check_positive(rtol, "rtol", strict=False)
    atol = _checks.check_positive(atol, "atol", strict=False)
    if not callable(forward) or not callable(backward):
        raise TypeError("`forward` and `backward` must be callables")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"`kwargs` must be a dict of the forward's keyword options; got {_checks._describe(kwargs)}")
    check_dtype = _checks.check_bool(check_dtype, "check_dtype")
    raise_on_failure = _checks.check_bool(raise_on_failure, "raise_on_failure")
    _checks.check_callable(grads_map, "grads_map")
    kwargs = dict(kwargs or {})
    if isinstance(inputs, dict):
        names = list(inputs)
        values = list(inputs.values())
        as_kw = True
    elif isinstance(inputs, (list, tuple)) and not _is_namedtuple(inputs):
        values = list(inputs)
        names = _input_names(forward, len(values))
        as_kw = False
    else:
        raise TypeError(f"`inputs` must be a tuple/list of positional arguments or a dict of keyword "
                        f"arguments; got {type(inputs).__name__}")
    if wrt is not None:
        if not isinstance(wrt, str) and not (hasattr(wrt, "__iter__") and all(isinstance(w, str) for w in wrt)):
            raise TypeError(f"`wrt` must be an input name or a list of them; got {_checks._describe(wrt)}")
        wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    if max_elements is not None:
        max_elements = _checks.check_int(max_elements, "max_elements", low=1)

    # 1. float64 copies (never the caller's arrays)
    values = [_map(v, lambda p, a: np.array(a, dtype=np.float64, copy=True),
                   other=lambda p, o: o.copy() if isinstance(o, np.ndarray) else o) for v in values]

    def call():
        if as_kw:
            return forward(**dict(zip(names, values)), **kwargs)
        return forward(*values, **kwargs)

    problems = []
    pristine = _snapshot(values)
    try:
        res = call()
    except (TypeError, ValueError) as exc:  # the forward's own validation: say which inputs it refused
        raise type(exc)(f"`forward` refused `inputs` (and `kwargs`): {exc}") from exc
    if not (isinstance(res, tuple) and len(res) == 2):
        raise TypeError(f"`forward` must return (out, cache); got {type(res).__name__}")
    out, cache = res

    # 2. the upstream gradient dout, shaped like out
    if upstream is None:
        def draw(p, leaf):
            if isinstance(leaf, np.ndarray):
                return rng.standard_normal(leaf.shape)
            return float(rng.standard_normal())
        dout = _map(out, draw, scalars=True, other=lambda p, v: None)
    else:
        dout = upstream
        want = {p: np.shape(v) for p, v in _leaves(out, scalars=True)}
        got = {p: np.shape(v) for p, v in _leaves(dout, scalars=True)}
        if want != got:
            raise ValueError(f"`upstream` must have the structure and shapes of the forward's output "
                             f"({_shapes(want)}); got {_shapes(got)}")
    dout_leaves = {p: u for p, u in _leaves(dout, scalars=True)}
    dout_before = _snapshot(dout)
    grads = backward(dout, cache)
    if not _unchanged(pristine, values):
        problems.append("forward or backward wrote into an input array")
    if not _unchanged(dout_before, dout):
        problems.append("backward wrote into the upstream gradient `dout`")
    aligned, how = _align(grads, names, grads_map)

    # 3. central differences, element by element
    per_input = {}
    worst = None
    for name, value in zip(names, values):
        for path, leaf in _leaves(value):
            label = _path_str(name, path)
            if not _selected(label, name, wrt):
                continue
            g = _get(aligned.get(name), path)
            if g is None:
                problems.append(f"backward returned no gradient for `{label}` (alignment: {how})")
                continue
            g = np.asarray(g)
            if g.shape != leaf.shape:
                problems.append(f"gradient of `{label}` has shape {g.shape}; the input has shape {leaf.shape}")
                continue
            if check_dtype and g.dtype != np.float64:
                problems.append(f"gradient of `{label}` has dtype {g.dtype} for a float64 input "
                                f"(float64 in must give float64 out)")
            if leaf.size == 0:
                per_input[label] = dict(n=0, max_abs=0.0, max_rel=0.0, ok=True)
                continue
            if max_elements is not None and leaf.size > max_elements:
                flat_idx = np.sort(rng.choice(leaf.size, size=max_elements, replace=False))
            else:
                flat_idx = np.arange(leaf.size)
            flat = leaf.reshape(-1)  # a view of our own float64 copy
            numeric = np.empty(len(flat_idx))
            for k, i in enumerate(flat_idx):
                orig = flat[i]
                flat[i] = orig + eps
                jp = _objective(call()[0], dout_leaves)
                flat[i] = orig - eps
                jm = _objective(call()[0], dout_leaves)
                flat[i] = orig
                numeric[k] = (jp - jm) / (2 * eps)
            analytic = g.reshape(-1)[flat_idx].astype(np.float64)
            err = np.abs(analytic - numeric)
            scale = np.maximum(np.abs(analytic), np.abs(numeric))
            rel = np.divide(err, scale, out=np.zeros_like(err), where=scale > 0)
            bound = atol + rtol * np.abs(numeric)
            excess = np.divide(err, bound, out=np.where(err > 0, np.inf, 0.0), where=bound > 0)
            excess = np.where(np.isnan(err), np.inf, excess)
            ok = bool(np.all(excess <= 1))
            per_input[label] = dict(n=len(flat_idx), max_abs=float(np.nanmax(err)), max_rel=float(np.nanmax(rel)),
                                    ok=ok)
            k = int(np.argmax(excess))
            if worst is None or excess[k] > worst.excess:
                worst = GradCheckFailure(label, tuple(int(v) for v in np.unravel_index(flat_idx[k], leaf.shape)),
                                         float(analytic[k]), float(numeric[k]), float(err[k]), float(rel[k]),
                                         float(excess[k]))
    if not per_input and not problems:
        problems.append("no floating-point input was checked (nothing differentiable in `inputs`/`wrt`)")
    all_ok = not problems and all(r["ok"] for r in per_input.values())
    report = GradCheckReport(all_ok, worst, per_input, problems, eps, rtol, atol)
    if raise_on_failure and not all_ok:
        raise AssertionError(str(report))
    return report


# ---------------------------------------------------------------------------------------------------
# a registry of gradient-check cases, run together by gradcheck_all (for a `refdet gradcheck` command)
# ---------------------------------------------------------------------------------------------------

# the registry itself is refdet._gradcheck_registry (a foundation module, so that the op packages that
# register their cases -- roi, yolo, onnx_ops -- need not import this testing module above them)
_LAYER_CASES_REGISTERED = False


def _register_layer_cases():
    """The refdet.layers cases (registered on first use of gradcheck_all)."""
    from refdet import layers as L

    def conv(stride, padding, dilation, groups, bias=True):
        def make(rng):
            x = rng.standard_normal((2, 2 * groups, 5, 6))
            w = rng.standard_normal((3 * groups, 2, 3, 2))
            b = rng.standard_normal(3 * groups) if bias else None
            return (x, w, b), dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return make

    def away_from_zero(rng, shape=(2, 3, 4, 5)):
        x = rng.standard_normal(shape)
        return np.where(np.abs(x) < 1e-2, 0.5, x)   # ReLU's kink at 0 is not differentiable

    def distinct(rng, shape=(2, 2, 6, 5)):
        n = int(np.prod(shape))
        return (rng.permutation(n) * 1e-2).reshape(shape)  # no ties: max pooling is differentiable

    register_gradcheck("conv2d 3x3 pad 1", L.conv2d_forward, L.conv2d_backward, conv(1, 1, 1, 1))
    register_gradcheck("conv2d stride (2,1) pad (1,2) dilation (1,2) groups 2", L.conv2d_forward,
                       L.conv2d_backward, conv((2, 1), (1, 2), (1, 2), 2))
    register_gradcheck("conv2d no bias stride 2", L.conv2d_forward, L.conv2d_backward, conv(2, 0, 1, 1, bias=False))
    register_gradcheck("conv2d stride 2 padding 'same' (TF SAME)", L.conv2d_forward, L.conv2d_backward,
                       conv(2, "same", 1, 1))
    register_gradcheck("relu", L.relu_forward, L.relu_backward, lambda r: ((away_from_zero(r),), {}))
    register_gradcheck("sigmoid", L.sigmoid_forward, L.sigmoid_backward,
                       lambda r: ((4 * r.standard_normal((2, 3, 4, 5)),), {}))
    for mode in ("nearest", "nearest-exact"):
        register_gradcheck(f"upsample_nearest {mode} 3x4 -> 7x9", L.upsample_nearest_forward,
                           L.upsample_nearest_backward,
                           lambda r, m=mode: ((r.standard_normal((2, 2, 3, 4)),), dict(size=(7, 9), mode=m)))
    register_gradcheck("max_pool2d 3x3 stride 2 pad 1", L.max_pool2d_forward, L.max_pool2d_backward,
                       lambda r: ((distinct(r),), dict(kernel_size=3, stride=2, padding=1)))
    register_gradcheck("max_pool2d 1x1 stride 2 (FPN P6)", L.max_pool2d_forward, L.max_pool2d_backward,
                       lambda r: ((distinct(r),), dict(kernel_size=1, stride=2)))
    register_gradcheck("group_norm 2 groups affine", L.group_norm_forward, L.group_norm_backward,
                       lambda r: ((r.standard_normal((2, 4, 3, 3)) * 2 + 1, r.standard_normal(4),
                                   r.standard_normal(4)), dict(num_groups=2)))


def gradcheck_names():
    """Names of every registered gradient-check case (sorted)."""
    global _LAYER_CASES_REGISTERED
    if not _LAYER_CASES_REGISTERED:
        _LAYER_CASES_REGISTERED = True
        _register_layer_cases()
    return sorted(_CASES)


def gradcheck_all(names=None, *, rng=0, out=None, progress=None):
    """Run every registered gradient-check case (or those whose name contains one of ``names``).

    Parameters
    ----------
    names : iterable of str, optional
        Substrings selecting cases; all cases by default.
    rng : None, int or Generator
        Seeds the inputs and the upstream gradients (default 0: reproducible).
    out : callable, optional
        Called with one line per case (e.g. ``print``).
    progress : callable, optional
        Called as ``progress(i, total, name)`` after case ``i`` (1-based) of ``total`` is checked (the
        command line's progress line).

    Returns
    -------
    dict
        ``{case name: GradCheckReport}``; a case whose forward/backward raised gets a failed report
        whose ``problems`` hold the exception.
    """
    global _LAYER_CASES_REGISTERED
    if not _LAYER_CASES_REGISTERED:
        _LAYER_CASES_REGISTERED = True
        _register_layer_cases()
    rng = _checks.as_rng(rng)
    if isinstance(names, str):
        names = [names]
    chosen = [k for k in _CASES if names is None or any(n in k for n in names)]
    results = {}
    for i, name in enumerate(chosen, 1):
        forward, backward, make, options = _CASES[name]
        inputs, kwargs = make(rng)
        try:
            rep = check_gradients(forward, backward, inputs, kwargs=kwargs, rng=rng, raise_on_failure=False,
                                  **options)
        except Exception as exc:  # a crash is a failed check, reported with the others
            rep = GradCheckReport(False, None, {}, [f"{type(exc).__name__}: {exc}"])
        results[name] = rep
        if out is not None:
            w = rep.worst
            detail = (f"worst element {w.input}{list(w.index)}: rel error {w.rel_error:.2e}, "
                      f"{w.excess:.2g} x tolerance") if w else "; ".join(rep.problems)
            out(f"{'ok  ' if rep.ok else 'FAIL'} {name}: {detail}")
        if progress is not None:
            progress(i, len(chosen), name)
    return results
