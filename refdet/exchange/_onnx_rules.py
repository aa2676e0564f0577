"""The shape rules of :func:`refdet.exchange._onnx_check.check_graph`: one rule per ONNX operator,
``rule(ctx, ins, attrs) -> list of _V``, computing every output's shape (and the values of the small
integer tensors that shape computations pass around) from the inputs' declared extents, refusing
attribute values out of their domain with :class:`_Fail`.

``_RULES`` maps each operator to its rule, the attributes it may carry and its numbers of inputs and
outputs; the module docstring of :mod:`refdet.exchange._onnx_check` lists what is refused.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["ONNX_DTYPES"]


#: ONNX TensorProto data types refdet reads (no strings, complex or bfloat/float8)
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}

_VALUE_LIMIT = 1 << 16        # values are followed for tensors this small
_MAX_RANK = 8
_MAX_DIM = 1 << 40


class _V:
    """What is known about a tensor: its shape (upper bounds when not ``exact``), dtype, maybe its value."""
    __slots__ = ("shape", "dtype", "value", "exact")

    def __init__(self, shape, dtype, value=None, exact=True):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.value = value
        self.exact = exact

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize


class _Fail(Exception):
    pass


def _attr_value(onnx, a):
    T = onnx.AttributeProto
    if a.ref_attr_name:
        raise _Fail(f"attribute {a.name!r} refers to a function attribute")
    kinds = {T.INT: "i", T.INTS: "ints", T.FLOAT: "f", T.FLOATS: "floats", T.STRING: "s", T.STRINGS: "strings"}
    if a.type not in kinds:
        raise _Fail(f"attribute {a.name!r} has type {a.type} (graphs, tensors and the like are refused)")
    k = kinds[a.type]
    if k == "i":
        return int(a.i)
    if k == "ints":
        if len(a.ints) > 64:
            raise _Fail(f"attribute {a.name!r} lists {len(a.ints)} values")
        return [int(v) for v in a.ints]
    if k == "f":
        return float(a.f)
    if k == "floats":
        return [float(v) for v in a.floats[:64]]
    if k == "s":
        try:
            return a.s.decode("ascii")
        except UnicodeDecodeError:
            raise _Fail(f"attribute {a.name!r} is not ASCII text") from None
    raise _Fail(f"attribute {a.name!r} is a list of strings")


# the type ONNX defines for every attribute a rule reads
_ATTR_KINDS = dict(
    {k: "ints" for k in ("pads", "strides", "dilations", "kernel_shape", "perm", "axes")},
    **{k: "i" for k in ("group", "axis", "to", "keepdims", "allowzero", "ceil_mode", "storage_order", "saturate",
                        "block_size", "antialias", "center_point_box", "noop_with_empty_axes", "select_last_index",
                        "largest", "sorted", "num_outputs", "start", "end", "count_include_pad", "exclude_outside",
                        "output_dtype")},
    **{k: "s" for k in ("auto_pad", "mode", "coordinate_transformation_mode", "nearest_mode",
                        "keep_aspect_ratio_policy")},
    **{k: "f" for k in ("cubic_coeff_a", "extrapolation_value")})


def _axis(a, rank, what="axis"):
    if not isinstance(a, (int, np.integer)) or not -rank <= int(a) < max(rank, 1):
        raise _Fail(f"{what} {a} is outside [-{rank}, {rank})")
    return int(a) % max(rank, 1)


def _broadcast(*vals):
    rank = max(len(v.shape) for v in vals)
    out = []
    for i in range(rank):
        dims = [v.shape[len(v.shape) - rank + i] if len(v.shape) - rank + i >= 0 else 1 for v in vals]
        exact = [d for d, v in zip(dims, vals) if d != 1 and v.exact]
        if len(set(exact)) > 1:
            raise _Fail(f"shapes {[list(v.shape) for v in vals]} do not broadcast")
        out.append(max(dims) if 0 not in exact else 0)
    return tuple(out)


def _known_ints(v, what, *, ndim_max=1):
    if v is None or v.value is None:
        raise _Fail(f"{what} must be computable from the input shapes and the initializers")
    arr = np.asarray(v.value)
    if arr.dtype.kind not in "iu" or arr.ndim > ndim_max:
        raise _Fail(f"{what} must be integers of rank <= {ndim_max}; got {arr.dtype} of shape {list(arr.shape)}")
    return [int(x) for x in arr.reshape(-1)]


def _known_floats(v, what):
    if v is None or v.value is None:
        raise _Fail(f"{what} must be an initializer (or computable from one)")
    arr = np.asarray(v.value)
    if arr.dtype.kind not in "fiu":
        raise _Fail(f"{what} must be numbers; got {arr.dtype}")
    return [float(x) for x in arr.reshape(-1)]


def _small(shape):
    return math.prod(shape) <= _VALUE_LIMIT


# ---------------------------------------------------------------------------------------------------
# the rules: rule(ctx, ins, attrs) -> list of _V; ATTRS lists the attributes each operator may carry
# ---------------------------------------------------------------------------------------------------

_UNARY_NP = {"Relu": lambda a: np.maximum(a, 0), "Neg": np.negative, "Abs": np.abs, "Floor": np.floor,
             "Ceil": np.ceil, "Identity": lambda a: a, "Not": np.logical_not, "Round": np.round,
             "Sigmoid": None, "Exp": None, "Sqrt": None, "Log": None, "Tanh": None}
_BINARY_NP = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Min": np.minimum, "Max": np.maximum,
              "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
              "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
              "Xor": np.logical_xor, "Div": None, "Pow": None, "Sum": np.add, "Mean": None}
_COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"}


def _r_unary(ctx, ins, attrs):
    x = ins[0]
    f = _UNARY_NP.get(ctx.op)
    value = None
    if x.value is not None and f is not None:
        value = np.asarray(f(np.asarray(x.value))).astype(x.dtype, copy=False)
    return [_V(x.shape, x.dtype, value, x.exact)]


def _r_elementwise(ctx, ins, attrs):
    if any(v is None for v in ins):
        raise _Fail("an input is missing")
    shape = _broadcast(*ins)
    dtype = np.bool_ if ctx.op in _COMPARE else ins[0].dtype
    value = None
    f = _BINARY_NP.get(ctx.op)
    if all(v.value is not None for v in ins) and _small(shape):
        with np.errstate(all="ignore"):
            arrs = [np.asarray(v.value) for v in ins]
            if f is not None:
                out = arrs[0]
                for a in arrs[1:]:
                    out = f(out, a)
                value = np.asarray(out).astype(dtype, copy=False)
            elif ctx.op == "Div" and arrs[0].dtype.kind == "f":
                value = np.divide(arrs[0], arrs[1]).astype(dtype, copy=False)
            elif ctx.op == "Div" and not np.any(arrs[1] == 0):   # integer Div truncates toward zero
                q = np.abs(arrs[0]) // np.abs(arrs[1])
                value = (np.sign(arrs[0]) * np.sign(arrs[1]) * q).astype(dtype, copy=False)
    return [_V(shape, dtype, value, all(v.exact for v in ins))]


def _r_where(ctx, ins, attrs):
    c, x, y = ins
    return [_V(_broadcast(c, x, y), x.dtype, None, c.exact and x.exact and y.exact)]


def _r_clip(ctx, ins, attrs):
    for v, name in zip(ins[1:], ("min", "max")):
        if v is not None and v.size != 1:
            raise _Fail(f"Clip's {name} must be a scalar")
    return [_V(ins[0].shape, ins[0].dtype, None, ins[0].exact)]


def _r_softmax(ctx, ins, attrs):
    x = ins[0]
    _axis(attrs.get("axis", -1), len(x.shape))
    return [_V(x.shape, x.dtype, None, x.exact)]


def _r_cast(ctx, ins, attrs):
    to = attrs.get("to")
    if to not in ONNX_DTYPES:
        raise _Fail(f"Cast to={to} is not a numeric type refdet reads")
    if attrs.get("saturate", 1) not in (0, 1):
        raise _Fail(f"Cast saturate={attrs['saturate']} must be 0 or 1")
    x = ins[0]
    value = None
    if x.value is not None:
        with np.errstate(all="ignore"):
            value = np.asarray(x.value).astype(ONNX_DTYPES[to])
    return [_V(x.shape, ONNX_DTYPES[to], value, x.exact)]


def _r_shape(ctx, ins, attrs):
    x = ins[0]
    r = len(x.shape)
    start, end = attrs.get("start", 0), attrs.get("end", r)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    dims = list(x.shape[start:end])
    return [_V((len(dims),), np.int64, np.asarray(dims, np.int64) if x.exact else None)]


def _check_window(ctx, x, kernel, attrs, *, what):
    """Spatial output sizes of a Conv / MaxPool window (ONNX formulas), after checking the attributes."""
    n = len(kernel)
    strides = attrs.get("strides", [1] * n)
    dil = attrs.get("dilations", [1] * n)
    pads = attrs.get("pads", [0] * 2 * n)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise _Fail(f"{what} auto_pad={auto!r} is not an ONNX value")
    if len(strides) != n or len(dil) != n or len(pads) != 2 * n:
        raise _Fail(f"{what} strides {strides}, dilations {dil}, pads {pads} do not fit a {n}-D kernel")
    if any(s < 1 for s in strides) or any(d < 1 for d in dil) or any(k < 1 for k in kernel):
        raise _Fail(f"{what} kernel {kernel}, strides {strides} and dilations {dil} must be >= 1")
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if any(p < 0 for p in pads) or any(pads[i] >= extent[i] or pads[i + n] >= extent[i] for i in range(n)):
        raise _Fail(f"{what} pads {pads} must be >= 0 and smaller than the kernel's extent {extent} (a wider "
                    f"padding makes windows that see nothing but padding)")
    spatial = x.shape[2:]
    if len(spatial) != n:
        raise _Fail(f"{what} with a {n}-D kernel on an input of shape {list(x.shape)}")
    ceil_mode = attrs.get("ceil_mode", 0)
    if ceil_mode not in (0, 1):
        raise _Fail(f"{what} ceil_mode={ceil_mode} must be 0 or 1")
    out = []
    for i, (h, e, s) in enumerate(zip(spatial, extent, strides)):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-h // s))
            continue
        total = h + (0 if auto == "VALID" else pads[i] + pads[i + n])
        if total < e:
            raise _Fail(f"{what} kernel extent {e} is larger than the padded input {total} on axis {i + 2}")
        if s > max(total, 1):
            raise _Fail(f"{what} stride {s} is larger than the padded input {total} on axis {i + 2}")
        out.append((total - e + (s - 1 if ceil_mode else 0)) // s + 1)
    return out


def _r_conv(ctx, ins, attrs):
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    if w is None or len(x.shape) != 4 or len(w.shape) != 4:
        raise _Fail(f"refdet writes 2-D convolutions: input {list(x.shape)} and weight "
                    f"{list(w.shape) if w is not None else None} must be 4-D")
    kernel = attrs.get("kernel_shape", list(w.shape[2:]))
    if list(kernel) != list(w.shape[2:]):
        raise _Fail(f"kernel_shape {kernel} disagrees with the weight's {list(w.shape[2:])}")
    g = attrs.get("group", 1)
    c, f = x.shape[1], w.shape[0]
    if g < 1 or (x.exact and c % g) or f % g or (x.exact and w.shape[1] * g != c):
        raise _Fail(f"group={g} does not fit {c} input channels and a weight of shape {list(w.shape)}")
    if b is not None and b.shape != (f,):
        raise _Fail(f"bias of shape {list(b.shape)} for {f} output channels")
    ho, wo = _check_window(ctx, x, list(kernel), attrs, what="Conv")
    # im2col: onnxruntime copies (C/g * KH * KW, Ho * Wo) per image; onnx.reference builds int64 index
    # arrays of that size for each spatial axis and the gathered copy (and its transpose) for the batch
    taps = w.shape[1] * kernel[0] * kernel[1] * ho * wo
    ctx.scratch(taps * x.dtype.itemsize if not ctx.reference else taps * (16 + 2 * x.dtype.itemsize * x.shape[0]))
    return [_V((x.shape[0], f, ho, wo), x.dtype, None, x.exact)]


def _r_pool(ctx, ins, attrs):
    x = ins[0]
    kernel = attrs.get("kernel_shape")
    if not kernel:
        raise _Fail("kernel_shape is required")
    if len(x.shape) != 4:
        raise _Fail(f"refdet writes 2-D pooling: input {list(x.shape)}")
    if attrs.get("storage_order", 0) not in (0, 1) or attrs.get("count_include_pad", 0) not in (0, 1):
        raise _Fail("storage_order and count_include_pad must be 0 or 1")
    ho, wo = _check_window(ctx, x, list(kernel), attrs, what=ctx.op)
    out = [_V(x.shape[:2] + (ho, wo), x.dtype, None, x.exact)]
    if ctx.n_out > 1:
        out.append(_V(x.shape[:2] + (ho, wo), np.int64, None, x.exact))
    return out


def _reduce_axes(ctx, ins, attrs):
    x = ins[0]
    r = len(x.shape)
    if "axes" in attrs:
        axes = attrs["axes"]
    elif len(ins) > 1 and ins[1] is not None:
        axes = _known_ints(ins[1], "the reduction axes")
    else:
        axes = [] if attrs.get("noop_with_empty_axes", 0) else list(range(r))
    axes = [_axis(a, r, "reduction axis") for a in axes]
    if len(set(axes)) != len(axes):
        raise _Fail(f"reduction axes {axes} repeat")
    return axes


def _r_reduce(ctx, ins, attrs):
    x = ins[0]
    keep = attrs.get("keepdims", 1)
    if keep not in (0, 1) or attrs.get("noop_with_empty_axes", 0) not in (0, 1):
        raise _Fail("keepdims and noop_with_empty_axes must be 0 or 1")
    axes = _reduce_axes(ctx, ins, attrs)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    return [_V(shape, x.dtype, None, x.exact)]


def _r_argmax(ctx, ins, attrs):
    x = ins[0]
    a = _axis(attrs.get("axis", 0), len(x.shape))
    keep = attrs.get("keepdims", 1)
    if keep not in (0, 1) or attrs.get("select_last_index", 0) not in (0, 1):
        raise _Fail("keepdims and select_last_index must be 0 or 1")
    shape = tuple(1 if i == a else d for i, d in enumerate(x.shape) if keep or i != a)
    return [_V(shape, np.int64, None, x.exact)]


def _r_reshape(ctx, ins, attrs):
    x = ins[0]
    target = _known_ints(ins[1], "the Reshape target")
    allowzero = attrs.get("allowzero", 0)
    if allowzero not in (0, 1) or len(target) > _MAX_RANK:
        raise _Fail(f"Reshape target {target[:10]} (allowzero={allowzero}) is not a shape refdet writes")
    if any(t < -1 for t in target) or target.count(-1) > 1:
        raise _Fail(f"Reshape target {target} must be >= -1 with at most one -1")
    if not x.exact:
        raise _Fail("Reshape of a tensor whose shape depends on the data")
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(x.shape):
                raise _Fail(f"Reshape target {target}: a 0 copies axis {i}, which {list(x.shape)} lacks")
            t = x.shape[i]
        out.append(t)
    if -1 in out:
        rest = math.prod(t for t in out if t != -1)
        if rest == 0 or x.size % rest:
            raise _Fail(f"Reshape {list(x.shape)} -> {target}: the -1 cannot be inferred")
        out[out.index(-1)] = x.size // rest
    if math.prod(out) != x.size:
        raise _Fail(f"Reshape {list(x.shape)} ({x.size} values) -> {out}")
    value = None if x.value is None else np.asarray(x.value).reshape(out)
    return [_V(out, x.dtype, value)]


def _r_expand(ctx, ins, attrs):
    x = ins[0]
    target = _known_ints(ins[1], "the Expand target")
    if len(target) > _MAX_RANK or any(t < 0 for t in target):
        raise _Fail(f"Expand target {target[:10]} is not a shape")
    shape = _broadcast(x, _V(target, x.dtype))
    return [_V(shape, x.dtype, None, x.exact)]


def _r_transpose(ctx, ins, attrs):
    x = ins[0]
    r = len(x.shape)
    perm = attrs.get("perm", list(range(r))[::-1])
    if sorted(perm) != list(range(r)):
        raise _Fail(f"perm {perm} is not a permutation of the {r} axes")
    value = None if x.value is None else np.transpose(x.value, perm)
    return [_V(tuple(x.shape[p] for p in perm), x.dtype, value, x.exact)]


def _r_concat(ctx, ins, attrs):
    if not ins or any(v is None for v in ins):
        raise _Fail("Concat of a missing input")
    r = len(ins[0].shape)
    a = _axis(attrs.get("axis"), r) if "axis" in attrs else None
    if a is None:
        raise _Fail("Concat needs axis")
    for v in ins:
        if len(v.shape) != r:
            raise _Fail(f"Concat of ranks {[len(v.shape) for v in ins]}")
        for i in range(r):
            if i != a and v.exact and ins[0].exact and v.shape[i] != ins[0].shape[i]:
                raise _Fail(f"Concat on axis {a} of shapes {[list(v.shape) for v in ins]}")
    shape = list(ins[0].shape)
    shape[a] = sum(v.shape[a] for v in ins)
    for i in range(r):
        if i != a:
            shape[i] = max(v.shape[i] for v in ins)
    value = None
    if all(v.value is not None for v in ins):
        value = np.concatenate([np.asarray(v.value) for v in ins], axis=a)
    return [_V(shape, ins[0].dtype, value, all(v.exact for v in ins))]


def _r_split(ctx, ins, attrs):
    x = ins[0]
    a = _axis(attrs.get("axis", 0), len(x.shape))
    n = ctx.n_out
    if len(ins) > 1 and ins[1] is not None:
        parts = _known_ints(ins[1], "the Split sizes")
        if len(parts) != n or any(p < 0 for p in parts) or sum(parts) != x.shape[a]:
            raise _Fail(f"Split sizes {parts} do not divide axis {a} of {list(x.shape)} into {n}")
    else:
        num = attrs.get("num_outputs", n)
        if num != n or n < 1:
            raise _Fail(f"Split into {num} outputs but the node has {n}")
        step = -(-x.shape[a] // n)
        parts = [min(step, max(x.shape[a] - i * step, 0)) for i in range(n)]
    return [_V(x.shape[:a] + (p,) + x.shape[a + 1:], x.dtype, None, x.exact) for p in parts]


def _r_slice(ctx, ins, attrs):
    x = ins[0]
    r = len(x.shape)
    starts = _known_ints(ins[1], "Slice starts")
    ends = _known_ints(ins[2], "Slice ends")
    axes = _known_ints(ins[3], "Slice axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = _known_ints(ins[4], "Slice steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise _Fail(f"Slice starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    axes = [_axis(a, r, "Slice axis") for a in axes]
    if len(set(axes)) != len(axes) or any(s == 0 for s in steps):
        raise _Fail(f"Slice axes {axes} repeat or a step is 0")
    shape = list(x.shape)
    index = [slice(None)] * r
    for a, s, e, st in zip(axes, starts, ends, steps):
        n = x.shape[a]
        s, e = s + n if s < 0 else s, e + n if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
        else:
            s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
        shape[a] = max(0, -(-(e - s) // st))
        index[a] = slice(s, e if e >= 0 else None, st)
    value = None
    if x.value is not None and x.exact:
        value = np.asarray(x.value)[tuple(index)]
    return [_V(shape, x.dtype, value, x.exact)]


def _r_squeeze(ctx, ins, attrs):
    x = ins[0]
    r = len(x.shape)
    if len(ins) > 1 and ins[1] is not None:
        axes = [_axis(a, r, "Squeeze axis") for a in _known_ints(ins[1], "Squeeze axes")]
    elif "axes" in attrs:
        axes = [_axis(a, r, "Squeeze axis") for a in attrs["axes"]]
    else:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    if any(x.shape[a] != 1 for a in axes) and x.exact:
        raise _Fail(f"Squeeze axes {axes} of shape {list(x.shape)} are not all 1")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    value = None if x.value is None else np.asarray(x.value).reshape(shape)
    return [_V(shape, x.dtype, value, x.exact)]


def _r_unsqueeze(ctx, ins, attrs):
    x = ins[0]
    raw = _known_ints(ins[1], "Unsqueeze axes") if len(ins) > 1 and ins[1] is not None else attrs.get("axes", [])
    r = len(x.shape) + len(raw)
    axes = sorted(_axis(a, r, "Unsqueeze axis") for a in raw)
    if len(set(axes)) != len(axes) or r > _MAX_RANK:
        raise _Fail(f"Unsqueeze axes {raw}")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    value = None if x.value is None else np.asarray(x.value).reshape(shape)
    return [_V(shape, x.dtype, value, x.exact)]


def _r_flatten(ctx, ins, attrs):
    x = ins[0]
    r = len(x.shape)
    a = attrs.get("axis", 1)
    if not -r <= a <= r:
        raise _Fail(f"Flatten axis {a} outside [-{r}, {r}]")
    a = a + r if a < 0 else a
    return [_V((math.prod(x.shape[:a]), math.prod(x.shape[a:])), x.dtype, None, x.exact)]


def _r_gather(ctx, ins, attrs):
    x, idx = ins
    r = len(x.shape)
    a = _axis(attrs.get("axis", 0), r)
    if idx.dtype.kind not in "iu":
        raise _Fail(f"Gather indices must be integers; got {idx.dtype}")
    n = x.shape[a]
    if idx.value is not None and x.exact:
        v = np.asarray(idx.value)
        if v.size and (v.min() < -n or v.max() >= n):
            raise _Fail(f"Gather indices in [{v.min()}, {v.max()}] outside axis {a} of length {n}")
    shape = x.shape[:a] + idx.shape + x.shape[a + 1:]
    value = None
    if x.value is not None and idx.value is not None and _small(shape):
        value = np.take(np.asarray(x.value), np.asarray(idx.value), axis=a)
    return [_V(shape, x.dtype, value, x.exact and idx.exact)]


def _r_gather_elements(ctx, ins, attrs):
    x, idx = ins
    a = _axis(attrs.get("axis", 0), len(x.shape))
    if len(idx.shape) != len(x.shape) or idx.dtype.kind not in "iu":
        raise _Fail(f"GatherElements indices {list(idx.shape)} ({idx.dtype}) for data {list(x.shape)}")
    for i, (d, e) in enumerate(zip(idx.shape, x.shape)):
        if i != a and d > e:
            raise _Fail(f"GatherElements indices {list(idx.shape)} larger than data {list(x.shape)}")
    return [_V(idx.shape, x.dtype, None, x.exact and idx.exact)]


def _r_range(ctx, ins, attrs):
    start, limit, delta = (_known_floats(v, f"Range {n}") for v, n in zip(ins, ("start", "limit", "delta")))
    if len(start) != 1 or len(limit) != 1 or len(delta) != 1:
        raise _Fail("Range start, limit and delta must be scalars")
    s, lim, d = start[0], limit[0], delta[0]
    if d == 0 or not all(map(math.isfinite, (s, lim, d))):
        raise _Fail(f"Range({s}, {lim}, {d}) has a zero or non-finite argument")
    n = max(int(math.ceil((lim - s) / d)), 0)
    if n > _MAX_DIM:
        raise _Fail(f"Range({s}, {lim}, {d}) has {n} elements")
    dt = ins[0].dtype
    value = np.arange(n, dtype=np.float64) * d + s if n <= _VALUE_LIMIT else None
    return [_V((n,), dt, None if value is None else value.astype(dt))]


def _r_topk(ctx, ins, attrs):
    x = ins[0]
    a = _axis(attrs.get("axis", -1), len(x.shape))
    k = _known_ints(ins[1], "TopK K")
    if len(k) != 1 or not 0 <= k[0] <= x.shape[a]:
        raise _Fail(f"TopK K={k} outside [0, {x.shape[a]}]")
    if attrs.get("largest", 1) not in (0, 1) or attrs.get("sorted", 1) not in (0, 1):
        raise _Fail("TopK largest and sorted must be 0 or 1")
    shape = x.shape[:a] + (k[0],) + x.shape[a + 1:]
    return [_V(shape, x.dtype, None, x.exact), _V(shape, np.int64, None, x.exact)]


_RESIZE_MODES = ("nearest", "linear", "cubic")
_RESIZE_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                  "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _r_resize(ctx, ins, attrs):
    x = ins[0]
    if attrs.get("mode", "nearest") not in _RESIZE_MODES:
        raise _Fail(f"Resize mode={attrs['mode']!r} is not an ONNX mode")
    if attrs.get("coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORDS:
        raise _Fail(f"Resize coordinate_transformation_mode={attrs['coordinate_transformation_mode']!r} is not "
                    f"an ONNX value")
    if attrs.get("nearest_mode", "round_prefer_floor") not in _NEAREST_MODES:
        raise _Fail(f"Resize nearest_mode={attrs['nearest_mode']!r} is not an ONNX value")
    if attrs.get("antialias", 0) != 0 or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" \
            or "axes" in attrs or attrs.get("exclude_outside", 0) not in (0, 1):
        raise _Fail("Resize with antialias, axes or an aspect-ratio policy (refdet writes none of them)")
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise _Fail("Resize tf_crop_and_resize (refdet never writes it)")
    scales = ins[2] if len(ins) > 2 else None
    sizes = ins[3] if len(ins) > 3 else None
    r = len(x.shape)
    if (scales is None) == (sizes is None):
        raise _Fail("Resize needs exactly one of scales and sizes")
    if sizes is not None:
        out = _known_ints(sizes, "Resize sizes")
        if len(out) != r or any(s < 1 for s in out):
            raise _Fail(f"Resize sizes {out[:10]} must give {r} sizes >= 1")
    else:
        sc = _known_floats(scales, "Resize scales")
        if len(sc) != r or not all(math.isfinite(s) and s > 0 for s in sc):
            raise _Fail(f"Resize scales {sc[:10]} must give {r} finite numbers > 0")
        if any(d * s > _MAX_DIM for d, s in zip(x.shape, sc)):
            raise _Fail(f"Resize scales {sc} of shape {list(x.shape)}")
        out = [int(math.floor(d * s)) for d, s in zip(x.shape, sc)]
    if len(ins) > 1 and ins[1] is not None and ins[1].size not in (0, 2 * r):
        raise _Fail(f"Resize roi of {ins[1].size} values for a rank-{r} input")
    return [_V(out, x.dtype, None, x.exact)]


def _r_nms(ctx, ins, attrs):
    boxes, scores = ins[0], ins[1]
    if attrs.get("center_point_box", 0) not in (0, 1):
        raise _Fail(f"NonMaxSuppression center_point_box={attrs['center_point_box']} must be 0 or 1")
    if len(boxes.shape) != 3 or boxes.shape[2] != 4 or len(scores.shape) != 3:
        raise _Fail(f"NonMaxSuppression boxes {list(boxes.shape)} must be (B, R, 4) and scores (B, K, R); "
                    f"got scores {list(scores.shape)}")
    if boxes.exact and scores.exact and (boxes.shape[0] != scores.shape[0] or boxes.shape[1] != scores.shape[2]):
        raise _Fail(f"NonMaxSuppression boxes {list(boxes.shape)} and scores {list(scores.shape)} disagree")
    b, k, r = scores.shape
    limit = 0
    if len(ins) > 2 and ins[2] is not None:
        m = _known_ints(ins[2], "max_output_boxes_per_class")
        if len(m) != 1 or m[0] < 0:
            raise _Fail(f"max_output_boxes_per_class {m} must be one integer >= 0")
        limit = m[0]
    if len(ins) > 3 and ins[3] is not None:
        t = _known_floats(ins[3], "iou_threshold")
        if len(t) != 1 or not 0.0 <= t[0] <= 1.0:
            raise _Fail(f"iou_threshold {t} must be one number in [0, 1]")
    if len(ins) > 4 and ins[4] is not None:
        t = _known_floats(ins[4], "score_threshold")
        if len(t) != 1 or math.isnan(t[0]):
            raise _Fail(f"score_threshold {t} must be one number")
    rows = b * k * min(r, limit)
    return [_V((rows, 3), np.int64, None, exact=False)]


def _quant_axis_check(x, scale, zp, attrs, what):
    if attrs.get("block_size", 0) != 0:
        raise _Fail(f"{what} block_size={attrs['block_size']} (blocked quantization is not written by refdet)")
    a = _axis(attrs.get("axis", 1), max(len(x.shape), 1), f"{what} axis")
    if scale.size != 1:
        if len(scale.shape) != 1 or scale.shape[0] != x.shape[a]:
            raise _Fail(f"{what} scale of shape {list(scale.shape)} for axis {a} of {list(x.shape)}")
    if zp is not None and zp.shape != scale.shape:
        raise _Fail(f"{what} zero point of shape {list(zp.shape)} and scale of shape {list(scale.shape)}")


def _r_quantize(ctx, ins, attrs):
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    _quant_axis_check(x, scale, zp, attrs, "QuantizeLinear")
    if attrs.get("saturate", 1) not in (0, 1):
        raise _Fail("QuantizeLinear saturate must be 0 or 1")
    if "output_dtype" in attrs and attrs["output_dtype"] not in (2, 3):
        raise _Fail(f"QuantizeLinear output_dtype={attrs['output_dtype']} (refdet writes uint8 / int8)")
    dt = zp.dtype if zp is not None else ONNX_DTYPES.get(attrs.get("output_dtype", 2), np.uint8)
    return [_V(x.shape, dt, None, x.exact)]


def _r_dequantize(ctx, ins, attrs):
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    _quant_axis_check(x, scale, zp, attrs, "DequantizeLinear")
    return [_V(x.shape, scale.dtype, None, x.exact)]


# operator -> (rule, attributes it may carry, number of inputs (min, max), number of outputs (min, max))
_POOL_ATTRS = {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"}
_RULES = {
    "Conv": (_r_conv, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}, (2, 3), (1, 1)),
    "MaxPool": (_r_pool, _POOL_ATTRS, (1, 1), (1, 2)),
    "AveragePool": (_r_pool, _POOL_ATTRS | {"count_include_pad"}, (1, 1), (1, 1)),
    "Cast": (_r_cast, {"to", "saturate"}, (1, 1), (1, 1)),
    "Shape": (_r_shape, {"start", "end"}, (1, 1), (1, 1)),
    "Reshape": (_r_reshape, {"allowzero"}, (2, 2), (1, 1)),
    "Expand": (_r_expand, set(), (2, 2), (1, 1)),
    "Transpose": (_r_transpose, {"perm"}, (1, 1), (1, 1)),
    "Concat": (_r_concat, {"axis"}, (1, 64), (1, 1)),
    "Split": (_r_split, {"axis", "num_outputs"}, (1, 2), (1, 64)),
    "Slice": (_r_slice, set(), (3, 5), (1, 1)),
    "Squeeze": (_r_squeeze, set(), (1, 2), (1, 1)),
    "Unsqueeze": (_r_unsqueeze, set(), (2, 2), (1, 1)),
    "Flatten": (_r_flatten, {"axis"}, (1, 1), (1, 1)),
    "Gather": (_r_gather, {"axis"}, (2, 2), (1, 1)),
    "GatherElements": (_r_gather_elements, {"axis"}, (2, 2), (1, 1)),
    "Range": (_r_range, set(), (3, 3), (1, 1)),
    "TopK": (_r_topk, {"axis", "largest", "sorted"}, (2, 2), (2, 2)),
    "Resize": (_r_resize, {"antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
                           "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode",
                           "nearest_mode"}, (1, 4), (1, 1)),
    "NonMaxSuppression": (_r_nms, {"center_point_box"}, (2, 5), (1, 1)),
    "QuantizeLinear": (_r_quantize, {"axis", "saturate", "block_size", "output_dtype"}, (2, 3), (1, 1)),
    "DequantizeLinear": (_r_dequantize, {"axis", "block_size"}, (2, 3), (1, 1)),
    "ReduceMean": (_r_reduce, {"axes", "keepdims", "noop_with_empty_axes"}, (1, 2), (1, 1)),
    "ReduceMax": (_r_reduce, {"axes", "keepdims", "noop_with_empty_axes"}, (1, 2), (1, 1)),
    "ReduceMin": (_r_reduce, {"axes", "keepdims", "noop_with_empty_axes"}, (1, 2), (1, 1)),
    "ReduceSum": (_r_reduce, {"axes", "keepdims", "noop_with_empty_axes"}, (1, 2), (1, 1)),
    "ArgMax": (_r_argmax, {"axis", "keepdims", "select_last_index"}, (1, 1), (1, 1)),
    "ArgMin": (_r_argmax, {"axis", "keepdims", "select_last_index"}, (1, 1), (1, 1)),
    "Softmax": (_r_softmax, {"axis"}, (1, 1), (1, 1)),
    "Where": (_r_where, set(), (3, 3), (1, 1)),
    "Clip": (_r_clip, set(), (1, 3), (1, 1)),
}
for _op in _UNARY_NP:
    _RULES[_op] = (_r_unary, set(), (1, 1), (1, 1))
for _op in _BINARY_NP:
    _RULES[_op] = (_r_elementwise, set(), (2, 2) if _op not in ("Min", "Max", "Sum", "Mean") else (1, 64), (1, 1))
del _op

# the opset-dependent spellings: axes as an attribute or as an input
_AXES_ATTR_UNTIL = {"ReduceMean": 17, "ReduceMax": 17, "ReduceMin": 17, "ReduceSum": 12, "Squeeze": 12,
                    "Unsqueeze": 12}
