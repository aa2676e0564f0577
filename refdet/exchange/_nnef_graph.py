"""refdet's own reader of ``graph.nnef`` text, and the static checks of a graph before ``nnef.Session`` runs it.

:func:`parse_graph` reads the flat NNEF syntax refdet writes (and the ``nnef`` package writes): a
``version`` line, a ``graph name( inputs ) -> ( outputs )`` header and a body of ``name = op(args);``
statements whose arguments are literals (numbers, strings, ``true`` / ``false``, lists ``[...]``, tuples
``(...)``), tensor names or nested invocations. It is strict where the C++ parser would be lenient: no
``fragment`` / ``extension`` definitions, no operator expressions, one result per statement, nesting at
most ``MAX_DEPTH`` deep (the C++ parser recurses and could overflow its stack), at most ``MAX_STATEMENTS``
statements. Anything else is a ``ValueError`` naming the line.

:func:`check_graph` then computes the shape of every tensor from the ``external`` and ``variable``
declarations, operation by operation, refusing operations refdet never writes, arguments it does not
define or that are out of range (conv ``padding`` as wide as the kernel, strides, dilations, groups,
upsampling factors, reshape targets, slice bounds, axes), inconsistent shapes, and a total of tensor
bytes beyond the budget. No tensor is allocated.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from refdet.exchange.files import Budget, format_bytes

__all__ = ["parse_graph", "check_graph", "Graph", "MAX_DEPTH", "MAX_STATEMENTS"]

MAX_DEPTH = 32
MAX_STATEMENTS = 1 << 16
_MAX_RANK = 8
_MAX_DIM = 1 << 40

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>'[^'\n]*'|"[^"\n]*")
  | (?P<arrow>->)
  | (?P<p>[()\[\]{}<>,=;:])
""", re.VERBOSE)


class Call(NamedTuple):
    op: str
    type: str
    args: tuple          # positional
    kwargs: tuple        # ((name, value), ...)
    line: int


class Ref(str):
    """A tensor name used as an argument (a plain ``str`` is a string literal)."""


class Statement(NamedTuple):
    name: str
    call: Call
    line: int


class Graph(NamedTuple):
    name: str
    inputs: tuple
    outputs: tuple
    statements: tuple


class _Lexer:
    def __init__(self, text, what):
        self.text, self.what = text, what
        self.pos, self.line = 0, 1
        self.tok = None
        self.advance()

    def fail(self, msg):
        start = self.text.rfind("\n", 0, self.pos) + 1
        end = self.text.find("\n", self.pos)
        snippet = self.text[start:end if end >= 0 else len(self.text)].strip()[:120]
        raise ValueError(f"{self.what} line {self.line}: {msg} (in {snippet!r})")

    def advance(self):
        while True:
            if self.pos >= len(self.text):
                self.tok = ("eof", "")
                return
            m = _TOKEN.match(self.text, self.pos)
            if m is None:
                self.fail(f"unexpected character {self.text[self.pos]!r}")
            self.pos = m.end()
            kind = m.lastgroup
            if kind == "ws":
                self.line += m.group().count("\n")
                continue
            self.tok = (kind, m.group())
            return

    def take(self, kind=None, text=None):
        k, t = self.tok
        if (kind is not None and k != kind) or (text is not None and t != text):
            self.fail(f"expected {text or kind!s}, found {t or 'the end of the file'!r}")
        self.advance()
        return t

    def at(self, text):
        return self.tok[1] == text and self.tok[0] in ("p", "arrow", "id")


def _value(lx, depth):
    if depth > MAX_DEPTH:
        lx.fail(f"nesting deeper than {MAX_DEPTH}")
    k, t = lx.tok
    if k == "num":
        lx.advance()
        try:
            return int(t) if re.fullmatch(r"-?\d+", t) and len(t) < 20 else float(t)
        except (ValueError, OverflowError):
            lx.fail(f"bad number {t!r}")
    if k == "str":
        lx.advance()
        return t[1:-1]
    if k == "id":
        if t in ("true", "false"):
            lx.advance()
            return t == "true"
        lx.advance()
        if lx.at("(") or lx.at("<"):
            return _call(lx, t, depth + 1)
        return Ref(t)
    if t in ("[", "("):
        close = "]" if t == "[" else ")"
        lx.advance()
        items = []
        while not lx.at(close):
            items.append(_value(lx, depth + 1))
            if len(items) > 4096:
                lx.fail("a list of more than 4096 items")
            if not lx.at(close):
                lx.take("p", ",")
        lx.advance()
        return list(items) if close == "]" else tuple(items)
    lx.fail(f"expected a value, found {t or 'the end of the file'!r}")


def _call(lx, op, depth):
    line = lx.line
    typ = ""
    if lx.at("<"):
        lx.advance()
        typ = lx.take("id")
        lx.take("p", ">")
    lx.take("p", "(")
    args, kwargs = [], []
    while not lx.at(")"):
        if lx.tok[0] == "id" and lx.text[lx.pos:lx.pos + 64].lstrip().startswith("=") \
                and not lx.text[lx.pos:lx.pos + 64].lstrip().startswith("=="):
            key = lx.take("id")
            lx.take("p", "=")
            if any(key == k for k, _ in kwargs):
                lx.fail(f"argument {key!r} given twice")
            kwargs.append((key, _value(lx, depth)))
        else:
            if kwargs:
                lx.fail("a positional argument after a named one")
            args.append(_value(lx, depth))
        if len(args) + len(kwargs) > 64:
            lx.fail("more than 64 arguments")
        if not lx.at(")"):
            lx.take("p", ",")
    lx.advance()
    return Call(op, typ, tuple(args), tuple(kwargs), line)


def _names(lx):
    lx.take("p", "(")
    out = []
    while not lx.at(")"):
        out.append(lx.take("id"))
        if not lx.at(")"):
            lx.take("p", ",")
    lx.advance()
    return tuple(out)


def parse_graph(text: str, what: str = "graph.nnef") -> Graph:
    """Parse ``graph.nnef`` text (see the module docstring); ``ValueError`` naming ``what`` and the line."""
    lx = _Lexer(text, what)
    lx.take("id", "version")
    v = lx.take("num")
    if not re.fullmatch(r"1\.\d+", v):
        lx.fail(f"version {v} (refdet reads NNEF 1.x)")
    lx.take("p", ";")
    if lx.tok == ("id", "extension") or lx.tok == ("id", "fragment"):
        lx.fail("graph.nnef defines fragments or extensions; refdet reads only the flat syntax of its own operation "
                "set")
    lx.take("id", "graph")
    name = lx.take("id")
    ins = _names(lx)
    lx.take("arrow")
    outs = _names(lx)
    lx.take("p", "{")
    stmts = []
    while not lx.at("}"):
        line = lx.line
        if lx.tok[0] != "id":
            lx.fail("refdet's graphs assign one result per statement (name = operation(...);)")
        target = lx.take("id")
        lx.take("p", "=")
        op = lx.take("id")
        call = _call(lx, op, 1)
        lx.take("p", ";")
        stmts.append(Statement(target, call, line))
        if len(stmts) > MAX_STATEMENTS:
            lx.fail(f"more than {MAX_STATEMENTS} statements")
    lx.advance()
    if lx.tok[0] != "eof":
        lx.fail("text after the graph body")
    return Graph(name, ins, outs, tuple(stmts))


def variables(graph: Graph, what: str = "graph.nnef"):
    """[(label, shape, line)] of every ``variable`` statement (shape and label checked for type); errors
    name ``what``."""
    out = []
    for st in graph.statements:
        c = st.call
        if c.op != "variable":
            continue
        kw = dict(c.kwargs)
        shape, label = kw.get("shape", c.args[0] if c.args else None), kw.get("label", None)
        if label is None and len(c.args) > 1:
            label = c.args[1]
        if not isinstance(label, str) or isinstance(label, Ref):
            raise ValueError(f"{what} line {st.line}: variable {st.name!r} has no label string")
        if (not isinstance(shape, list) or len(shape) > _MAX_RANK
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= _MAX_DIM for d in shape)):
            raise ValueError(f"{what} line {st.line}: variable {st.name!r} (label {label!r}) has an invalid shape "
                             f"{str(shape)[:80]}")
        out.append((label, tuple(shape), st.line))
    return out


# ---------------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------------

class _Fail(Exception):
    pass


def _ints(v, what, *, low=None, n=None):
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise _Fail(f"{what} must be a list of integers; got {str(v)[:60]}")
    if n is not None and len(v) != n:
        raise _Fail(f"{what} must have {n} entries; got {v}")
    if low is not None and any(x < low for x in v):
        raise _Fail(f"{what} must be >= {low}; got {v}")
    return v


def _int(v, what, low=None, high=None):
    if (not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low)
            or (high is not None and v > high)):
        raise _Fail(f"{what} must be an integer{f' >= {low}' if low is not None else ''}"
                    f"{f' <= {high}' if high is not None else ''}; got {str(v)[:40]}")
    return v


def _pairs(v, what, n):
    if v == []:
        return None
    if (not isinstance(v, list) or len(v) != n or not all(isinstance(p, tuple) and len(p) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in p) for p in v)):
        raise _Fail(f"{what} must be [] or {n} (before, after) pairs of integers; got {str(v)[:60]}")
    return v


def _broadcast(a, b):
    r = max(len(a), len(b))
    a, b = (1,) * (r - len(a)) + tuple(a), (1,) * (r - len(b)) + tuple(b)
    if any(x != y and x != 1 and y != 1 for x, y in zip(a, b)):
        raise _Fail(f"shapes {list(a)} and {list(b)} do not broadcast")
    return tuple(max(x, y) if 0 not in (x, y) else 0 for x, y in zip(a, b))


def _window(inp, kernel, padding, stride, dilation, border, what):
    """NNEF's output size of a sliding window (nnef/shapes.py ``_downsize_shape``), after checks."""
    n = len(kernel)
    stride = _ints(stride, f"{what} stride", low=1) or [1] * n
    dilation = _ints(dilation, f"{what} dilation", low=1) or [1] * n
    if len(stride) != n or len(dilation) != n:
        raise _Fail(f"{what} stride {stride} and dilation {dilation} must have {n} entries")
    if border not in ("constant", "ignore", "replicate", "reflect", "reflect-even"):
        raise _Fail(f"{what} border {str(border)[:30]!r} is not an NNEF border")
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    pads = _pairs(padding, f"{what} padding", n)
    out = []
    for i, (x, e, s) in enumerate(zip(inp, extent, stride)):
        if pads is None:      # automatic ('same') padding
            out.append(-(-x // s))
            continue
        p, q = pads[i]
        if p < 0 or q < 0 or p >= e or q >= e:
            raise _Fail(f"{what} padding {pads} must be >= 0 and smaller than the kernel's extent {extent} (a wider "
                        f"padding makes windows that see nothing but padding)")
        if x + p + q < e:
            raise _Fail(f"{what} kernel extent {e} is larger than the padded input {x + p + q}")
        out.append((x + p + q - e) // s + 1)
    return out


def _bind(call, params, required):
    """{param: value} of a call against the operation's parameter list (positional, then named)."""
    if len(call.args) > len(params):
        raise _Fail(f"{len(call.args)} positional arguments; {call.op} takes {len(params)}")
    got = dict(zip(params, call.args))
    for k, v in call.kwargs:
        if k not in params:
            raise _Fail(f"argument {k!r} is not one {call.op} takes ({', '.join(params)})")
        if k in got:
            raise _Fail(f"argument {k!r} given twice")
        got[k] = v
    missing = [p for p in required if p not in got]
    if missing:
        raise _Fail(f"missing argument {missing[0]!r}")
    return got


class _Checker:
    def __init__(self, budget, externals, var_shapes):
        self.budget = budget
        self.shapes = {}
        self.total = 0
        self.externals = externals
        self.var_shapes = var_shapes
        self.line = 0

    def tensor(self, v, what):
        if isinstance(v, Ref):
            if v not in self.shapes:
                raise _Fail(f"{what} {v!r} is not defined before this statement")
            return self.shapes[v]
        if isinstance(v, Call):
            return self.evaluate(v)
        raise _Fail(f"{what} must be a tensor; got {str(v)[:40]}")

    def operand(self, v, what):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return ()
        return self.tensor(v, what)

    def made(self, shape):
        shape = tuple(int(d) for d in shape)
        if len(shape) > _MAX_RANK or any(d < 0 or d > _MAX_DIM for d in shape):
            raise _Fail(f"a tensor of shape {list(shape)}")
        self.total += math.prod(shape) * 4
        self.budget.check(self.total, f"running graph.nnef (up to line {self.line}: {format_bytes(self.total)} "
                                      f"of tensors)")
        return shape

    def evaluate(self, c: Call):
        rule = _OPS.get(c.op)
        if rule is None:
            raise _Fail(f"operation {c.op!r} is one refdet never emits (refdet runs only graphs made of its own "
                        f"operation set)")
        params, required, fn = rule
        if c.type not in ("", "scalar"):
            raise _Fail(f"{c.op}<{c.type}> (refdet writes scalar tensors)")
        return self.made(fn(self, _bind(c, params, required)))


def _external(ck, a):
    shape = _ints(a["shape"], "external shape", low=1)
    if len(shape) > _MAX_RANK:
        raise _Fail(f"external shape {shape}")
    return shape


def _variable(ck, a):
    shape = _ints(a["shape"], "variable shape", low=0)
    if not isinstance(a.get("label"), str) or isinstance(a["label"], Ref):
        raise _Fail("variable label must be a string")
    want = ck.var_shapes.get(a["label"])
    if want is not None and tuple(want) != tuple(shape):
        raise _Fail(f"variable {a['label']!r} is declared {shape} but its file holds {list(want)}")
    return shape


def _conv(ck, a):
    x = ck.tensor(a["input"], "conv input")
    w = ck.tensor(a["filter"], "conv filter")
    if len(x) != 4 or len(w) != 4:
        raise _Fail(f"refdet writes 2-D convolutions: input {list(x)}, filter {list(w)}")
    g = _int(a.get("groups", 1), "conv groups", low=0)
    g = g or x[1]
    if x[1] % g or w[0] % g or w[1] * g != x[1]:
        raise _Fail(f"conv groups {g} do not fit input {list(x)} and filter {list(w)}")
    bias = a.get("bias", 0.0)
    if not isinstance(bias, (int, float)) or isinstance(bias, bool):
        b = ck.tensor(bias, "conv bias")
        if b not in ((1, w[0]), (w[0],)):
            raise _Fail(f"conv bias of shape {list(b)} for {w[0]} filters")
    out = _window(x[2:], w[2:], a.get("padding", []), a.get("stride", []), a.get("dilation", []),
                  a.get("border", "constant"), "conv")
    return (x[0], w[0], *out)


def _pool(ck, a):
    x = ck.tensor(a["input"], "max_pool input")
    size = _ints(a["size"], "max_pool size", low=1, n=len(x))
    return tuple(_window(x, size, a.get("padding", []), a.get("stride", []), a.get("dilation", []),
                         a.get("border", "constant"), "max_pool"))


def _unary(ck, a):
    return ck.tensor(a["x"], "argument")


def _binary(ck, a):
    return _broadcast(ck.operand(a["x"], "left operand"), ck.operand(a["y"], "right operand"))


def _axes(v, rank, what):
    axes = _ints(v, what)
    if any(not 0 <= ax < rank for ax in axes) or len(set(axes)) != len(axes):
        raise _Fail(f"{what} {axes} must be distinct axes in [0, {rank})")
    return axes


def _mean_reduce(ck, a):
    x = ck.tensor(a["input"], "mean_reduce input")
    axes = _axes(a["axes"], len(x), "mean_reduce axes")
    return tuple(1 if i in axes else d for i, d in enumerate(x))


def _reshape(ck, a):
    x = list(ck.tensor(a["input"], "reshape input"))
    shape = list(_ints(a["shape"], "reshape shape", low=-1))
    start = _int(a.get("axis_start", 0), "reshape axis_start", 0, len(x))
    count = _int(a.get("axis_count", -1), "reshape axis_count", -1)
    count = len(x) - start if count == -1 else count
    if start + count > len(x) or shape.count(-1) > 1 or len(shape) > _MAX_RANK:
        raise _Fail(f"reshape of {x} to {shape} (axis_start {start}, axis_count {count})")
    part = x[start:start + count]
    for i, s in enumerate(shape):
        if s == 0:
            if start + i >= len(x):
                raise _Fail(f"reshape shape {shape}: a 0 copies an axis {x} lacks")
            shape[i] = x[start + i]
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 or math.prod(part) % rest:
            raise _Fail(f"reshape of {x} to {shape}: the -1 cannot be inferred")
        shape[shape.index(-1)] = math.prod(part) // rest
    if math.prod(shape) != math.prod(part):
        raise _Fail(f"reshape of {x} ({math.prod(part)} values) to {shape}")
    return tuple(x[:start] + shape + x[start + count:])


def _transpose(ck, a):
    x = ck.tensor(a["input"], "transpose input")
    axes = _ints(a["axes"], "transpose axes")
    if sorted(axes) != list(range(len(axes))) or len(axes) > len(x):
        raise _Fail(f"transpose axes {axes} are not a permutation of the first axes of {list(x)}")
    return tuple(x[i] for i in axes) + tuple(x[len(axes):])


def _concat(ck, a):
    vals = a["values"]
    if not isinstance(vals, list) or not vals:
        raise _Fail("concat values must be a non-empty list of tensors")
    shapes = [ck.tensor(v, "concat value") for v in vals]
    r = len(shapes[0])
    axis = _int(a["axis"], "concat axis", 0, r - 1)
    if any(len(s) != r or any(s[i] != shapes[0][i] for i in range(r) if i != axis) for s in shapes):
        raise _Fail(f"concat on axis {axis} of shapes {[list(s) for s in shapes]}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def _upsample(ck, a):
    x = ck.tensor(a["input"], "nearest_upsample input")
    f = _ints(a["factor"], "nearest_upsample factor", low=1, n=len(x) - 2)
    return tuple(x[:2]) + tuple(d * k for d, k in zip(x[2:], f))


def _slice(ck, a):
    x = list(ck.tensor(a["input"], "slice input"))
    axes = _axes(a["axes"], len(x), "slice axes")
    begin, end = _ints(a["begin"], "slice begin", n=len(axes)), _ints(a["end"], "slice end", n=len(axes))
    stride = _ints(a.get("stride", []), "slice stride") or [1] * len(axes)
    if len(stride) != len(axes) or 0 in stride:
        raise _Fail(f"slice stride {stride} must give {len(axes)} non-zero entries")
    if all(s == 1 for s in stride):   # nnef/shapes.py slice_shape: an end of 0 means the whole axis
        end = [x[ax] if e == 0 else e for ax, e in zip(axes, end)]
    for ax, b, e, s in zip(axes, begin, end, stride):
        n = x[ax]
        b = max(-1, min(n, b + n if b < 0 else b))
        e = max(-1, min(n, e + n if e < 0 else e))
        if not (0 <= b <= e if s > 0 else e <= b < n):
            raise _Fail(f"slice range {b}:{e}:{s} of an axis of {n}")
        x[ax] = (e - b + s - 1) // s if s > 0 else (e - b + s + 1) // s     # ceil((e - b) / s)
    return tuple(x)


def _copy(ck, a):
    return ck.tensor(a["x"], "copy argument")


# operation -> (parameters in order, required ones, rule); NNEF 1.0 standard signatures
_OPS = {
    "external": (("shape",), ("shape",), _external),
    "variable": (("shape", "label"), ("shape", "label"), _variable),
    "conv": (("input", "filter", "bias", "border", "padding", "stride", "dilation", "groups"), ("input", "filter"),
             _conv),
    "max_pool": (("input", "size", "border", "padding", "stride", "dilation"), ("input", "size"), _pool),
    "relu": (("x",), ("x",), _unary),
    "sqrt": (("x",), ("x",), _unary),
    "copy": (("x",), ("x",), _copy),
    "add": (("x", "y"), ("x", "y"), _binary),
    "sub": (("x", "y"), ("x", "y"), _binary),
    "mul": (("x", "y"), ("x", "y"), _binary),
    "div": (("x", "y"), ("x", "y"), _binary),
    "mean_reduce": (("input", "axes"), ("input", "axes"), _mean_reduce),
    "reshape": (("input", "shape", "axis_start", "axis_count"), ("input", "shape"), _reshape),
    "transpose": (("input", "axes"), ("input", "axes"), _transpose),
    "concat": (("values", "axis"), ("values", "axis"), _concat),
    "nearest_upsample": (("input", "factor"), ("input", "factor"), _upsample),
    "slice": (("input", "axes", "begin", "end", "stride"), ("input", "axes", "begin", "end"), _slice),
}

#: every operation :func:`refdet.exchange.export_nnef` writes (and :func:`check_graph` has a rule for)
OPERATIONS = frozenset(_OPS)


def check_graph(graph: Graph, budget: Budget, *, external_shapes=None, variable_shapes=None, what="graph.nnef"):
    """Shapes of every tensor of ``graph`` (``{name: shape}``), checked as the module docstring says.

    Parameters
    ----------
    graph : Graph
        From :func:`parse_graph`.
    budget : Budget
        The bytes of every tensor (float32, nothing reused) must fit.
    external_shapes : dict, optional
        The shapes the inputs will be fed with; each must equal the graph's ``external`` declaration.
    variable_shapes : dict, optional
        ``{label: shape}`` of the tensor files; each ``variable`` must declare the same.
    """
    ck = _Checker(budget, external_shapes or {}, variable_shapes or {})
    for st in graph.statements:
        ck.line = st.line
        try:
            if st.name in ck.shapes:
                raise _Fail(f"{st.name!r} is assigned twice")
            if st.call.op == "external" and st.name not in graph.inputs:
                raise _Fail(f"external {st.name!r} is not a graph input")
            if st.call.op != "external" and st.name in graph.inputs:
                raise _Fail(f"graph input {st.name!r} is not declared with external")
            shape = ck.evaluate(st.call)
            if st.call.op == "external" and st.name in ck.externals and tuple(ck.externals[st.name]) != shape:
                raise _Fail(f"input {st.name!r} is declared {list(shape)} but would be fed "
                            f"{list(ck.externals[st.name])}")
            ck.shapes[st.name] = shape
        except _Fail as exc:
            raise ValueError(f"{what} line {st.line} ({st.name} = {st.call.op}(...)): {exc}") from None
    for n in graph.inputs + graph.outputs:
        if n not in ck.shapes:
            raise ValueError(f"{what}: graph input or output {n!r} is never defined")
    return ck.shapes, ck.total
