"""Static checks of an ONNX graph before any runtime runs it: every node, every attribute, every size.

A model file is run by :func:`refdet.exchange.onnx.verify_onnx` / :func:`run_onnx`, so what it asks a
runtime to allocate must be known first. :func:`check_graph` walks the nodes in order with the shapes of
the inputs that will be fed and computes the shape of every tensor (and the values of the small integer
tensors that shape computations pass around: ``Shape``, ``Slice``, ``Range``, ``Reshape`` targets),
from nothing but the declared extents, so no tensor is allocated. It refuses:

* an operator without a rule here (the rules cover what :func:`export_onnx` writes, plus the small
  shape and element-wise operators a post-processing graph uses), a node in another domain, functions,
  subgraphs, attributes that the operator does not define or of the wrong type;
* attribute values out of their domain: Conv / MaxPool ``pads`` negative or as large as the kernel's
  extent (windows of pure padding; ``pads=30000`` would make a 115 GB output), ``strides`` /
  ``dilations`` < 1, ``kernel_shape`` that disagrees with the weight, ``group`` that does not divide
  the channels, ``auto_pad`` / Resize modes / Cast targets that ONNX does not define, ``perm`` that is
  not a permutation, axes out of range, Resize ``scales`` that are not finite and positive or
  ``sizes`` < 1, NonMaxSuppression thresholds outside [0, 1], ``max_output_boxes_per_class`` < 0;
* shape arguments whose values cannot be computed from the input shapes and the initializers
  (``Reshape`` targets, ``Range`` limits, ``Resize`` sizes, ``Slice`` bounds, reduction axes);
* Gather indices (when known) outside the axis; inconsistent shapes (broadcasting, Concat, Conv
  channels, Reshape volumes);
* a total that exceeds the budget: the bytes of every tensor the graph computes (no memory reuse
  assumed) plus the largest im2col buffer a convolution needs in onnxruntime or onnx.reference.

Shapes downstream of ``NonMaxSuppression`` depend on the data: its output is counted at its largest
(``B * K * min(R, max_output_boxes_per_class)`` rows).
"""
from __future__ import annotations

import math

import numpy as np

from refdet.exchange._onnx_rules import (_ATTR_KINDS, _AXES_ATTR_UNTIL, _MAX_DIM, _MAX_RANK, _RULES, ONNX_DTYPES,
                                         _attr_value, _Fail, _V)
from refdet.exchange.files import Budget, format_bytes

__all__ = ["check_graph", "GraphSizes", "ONNX_DTYPES"]


# ---------------------------------------------------------------------------------------------------
# initializers: stored data checked against the declared extents before anything is converted
# ---------------------------------------------------------------------------------------------------

def _one_line(exc, limit=300):
    """An exception's message on one line (runtimes' messages span many), at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_tensor(onnx, t, what="the model"):
    """That an initializer's stored data matches its declared extents (before anything is converted)."""
    dims = list(t.dims)
    if any(d < 0 for d in dims) or len(dims) > 32:
        raise ValueError(f"{what}: initializer {t.name!r} has invalid extents {dims[:10]}")
    dtype = ONNX_DTYPES.get(t.data_type)
    if dtype is None:
        raise ValueError(f"{what}: initializer {t.name!r} has an unsupported data type {t.data_type}")
    if t.HasField("segment"):
        raise ValueError(f"{what}: initializer {t.name!r} is a segment of a tensor (refused)")
    count = math.prod(dims)
    if t.HasField("raw_data") or t.raw_data:
        have = len(t.raw_data)
        need = count * np.dtype(dtype).itemsize
        if have != need:
            raise ValueError(f"{what}: initializer {t.name!r} claims extents {dims} ({need} bytes of "
                             f"{np.dtype(dtype)}) but stores {have} bytes")
    else:
        field = {1: t.float_data, 11: t.double_data, 7: t.int64_data, 12: t.uint64_data, 13: t.uint64_data}.get(
            t.data_type, t.int32_data)
        if len(field) != count:
            raise ValueError(f"{what}: initializer {t.name!r} claims extents {dims} ({count} values) but stores "
                             f"{len(field)}")


def _tensor_to_array(onnx, t, what="the model"):
    """``numpy_helper.to_array`` after checking that the stored data matches the declared extents."""
    _check_tensor(onnx, t, what)
    try:
        return onnx.numpy_helper.to_array(t)
    except Exception as exc:  # a value out of its type's range in int32_data, and the like
        raise ValueError(f"{what}: initializer {t.name!r} cannot be read: {_one_line(exc)}") from None


class GraphSizes:
    """The result of :func:`check_graph`: ``shapes`` {name: shape}, ``tensor_bytes`` (every tensor the
    graph computes), ``scratch_bytes`` (the largest im2col buffer), ``total``."""

    def __init__(self, shapes, tensor_bytes, scratch_bytes):
        self.shapes = shapes
        self.tensor_bytes = tensor_bytes
        self.scratch_bytes = scratch_bytes
        self.total = tensor_bytes + scratch_bytes


class _Ctx:
    def __init__(self, budget, tensor_bytes, reference):
        self.budget = budget
        self.reference = reference
        self.op = ""
        self.n_out = 1
        self.scratch_max = 0
        self.tensor_bytes = tensor_bytes

    def scratch(self, nbytes):
        self.scratch_max = max(self.scratch_max, int(nbytes))


def check_graph(mp, input_shapes, budget: Budget, *, allowed_ops=None, opset=None,
                runtimes=("onnxruntime", "onnx.reference")) -> GraphSizes:
    """Walk every node of ``mp`` with the graph inputs shaped ``input_shapes`` ({name: shape}).

    Parameters
    ----------
    mp : onnx.ModelProto
        Already read by :func:`refdet.exchange.onnx.read_onnx` (initializer lengths checked).
    input_shapes : dict
        The shape of every graph input that is not an initializer (what will be fed).
    budget : Budget
        The total of every tensor computed plus the largest convolution scratch buffer must fit.
    allowed_ops : set of str, optional
        Operators accepted (default: every operator with a rule here).
    opset : int, optional
        The default domain's opset (read from the model when not given).
    runtimes : sequence of str
        Who will run it: the convolution scratch of ``"onnx.reference"`` (int64 index arrays and two
        copies of the im2col matrix, ``16 + 8 B`` bytes per tap) is counted only when it is listed;
        onnxruntime's is ``4`` bytes per tap and image.

    Returns
    -------
    GraphSizes

    Raises
    ------
    ValueError
        Naming the node (name, index and operator) and what is wrong, or the budget.
    """
    import onnx

    what = budget.what
    g = mp.graph
    if opset is None:
        opset = max((o.version for o in mp.opset_import if o.domain in ("", "ai.onnx")), default=0)
    env = {}
    tensor_bytes = 0
    for t in g.initializer:
        dtype = ONNX_DTYPES.get(t.data_type)
        if dtype is None:
            raise ValueError(f"{what}: initializer {t.name!r} has an unsupported data type {t.data_type}")
        dims = tuple(int(d) for d in t.dims)
        if len(dims) > _MAX_RANK or any(d < 0 for d in dims):
            raise ValueError(f"{what}: initializer {t.name!r} has extents {list(dims)}")
        if t.name in env:
            raise ValueError(f"{what}: initializer {t.name!r} appears twice")
        value = _tensor_to_array(onnx, t, what) if math.prod(dims) <= 4096 else None
        if value is None:
            _check_tensor(onnx, t, what)
        env[t.name] = _V(dims, dtype, value)
        tensor_bytes += env[t.name].nbytes     # the runtime's own copy
    declared = {i.name: i for i in g.input}
    for name, shape in input_shapes.items():
        if name in env:
            continue
        shape = tuple(int(d) for d in shape)
        vi = declared.get(name)
        if vi is None:
            raise ValueError(f"{what}: the graph has no input {name!r}")
        tt = vi.type.tensor_type
        dims = list(tt.shape.dim)
        if len(dims) != len(shape) or any(d.HasField("dim_value") and d.dim_value != s for d, s in zip(dims, shape)):
            raise ValueError(f"{what}: input {name!r} is declared {[d.dim_value or d.dim_param for d in dims]} but "
                             f"would be fed {list(shape)}")
        dtype = ONNX_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise ValueError(f"{what}: input {name!r} has an unsupported type {tt.elem_type}")
        env[name] = _V(shape, dtype)
        tensor_bytes += env[name].nbytes
    missing = [i.name for i in g.input if i.name not in env]
    if missing:
        raise ValueError(f"{what}: graph inputs {missing[:5]} are neither initializers nor fed")
    budget.check(tensor_bytes, "the graph's inputs")
    allowed = set(_RULES) if allowed_ops is None else set(allowed_ops) & set(_RULES)
    ctx = _Ctx(budget, tensor_bytes, "onnx.reference" in tuple(runtimes))
    for i, node in enumerate(g.node):
        label = f"node {i} ({node.op_type}{f' {node.name!r}' if node.name else ''})"
        try:
            if node.domain not in ("", "ai.onnx"):
                raise _Fail(f"domain {node.domain!r} (refdet writes the default domain only)")
            if node.op_type not in allowed:
                raise _Fail("an operator refdet never writes")
            rule, names, (lo_in, hi_in), (lo_out, hi_out) = _RULES[node.op_type]
            if node.op_type in _AXES_ATTR_UNTIL and opset <= _AXES_ATTR_UNTIL[node.op_type]:
                names = names | {"axes"}
            attrs = {}
            for a in node.attribute:
                if a.name not in names:
                    raise _Fail(f"attribute {a.name!r} is not one {node.op_type} defines")
                if a.name in attrs:
                    raise _Fail(f"attribute {a.name!r} appears twice")
                attrs[a.name] = _attr_value(onnx, a)
                kind = _ATTR_KINDS.get(a.name)
                want = {"ints": (list, "a list of integers"), "i": (int, "an integer"), "s": (str, "text"),
                        "f": (float, "a number")}.get(kind)
                if want is not None and not isinstance(attrs[a.name], want[0]):
                    raise _Fail(f"attribute {a.name!r} must be {want[1]}; got {str(attrs[a.name])[:40]}")
            if not lo_in <= len(node.input) <= hi_in or not lo_out <= len(node.output) <= hi_out:
                raise _Fail(f"{len(node.input)} inputs and {len(node.output)} outputs")
            ins = []
            for name in node.input:
                if name == "":
                    ins.append(None)
                elif name not in env:
                    raise _Fail(f"input {name!r} is not computed before this node (or not at all)")
                else:
                    ins.append(env[name])
            if ins and ins[0] is None:
                raise _Fail("its first input is missing")
            ctx.op, ctx.n_out = node.op_type, len(node.output)
            outs = rule(ctx, ins, attrs)
            for name, v in zip(node.output, outs):
                if not name:
                    continue
                if name in env:
                    raise _Fail(f"output {name!r} is computed twice")
                if len(v.shape) > _MAX_RANK or any(d < 0 or d > _MAX_DIM for d in v.shape):
                    raise _Fail(f"output {name!r} would have shape {list(v.shape)}")
                env[name] = v
                ctx.tensor_bytes += v.nbytes
            budget.check(ctx.tensor_bytes + ctx.scratch_max,
                         f"running the graph (up to {label}: {format_bytes(ctx.tensor_bytes)} of tensors and "
                         f"{format_bytes(ctx.scratch_max)} of convolution scratch)")
        except _Fail as exc:
            raise ValueError(f"{what}: {label}: {exc}") from None
    for o in g.output:
        if o.name not in env:
            raise ValueError(f"{what}: graph output {o.name!r} is never computed")
    return GraphSizes({k: v.shape for k, v in env.items()}, ctx.tensor_bytes, ctx.scratch_max)
