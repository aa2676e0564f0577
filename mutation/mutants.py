"""First-order mutants of a Python module, generated from its AST.

Each mutant changes one node: an operator swapped, a constant nudged, a comparison made strict or
inclusive, a flag's branch negated, a NumPy reduction or rounding swapped for its twin. The operators
(``OPERATORS``) were chosen for refdet's kind of code: vectorised arithmetic whose conventions differ
in ``+ 1`` widths, strict against inclusive thresholds, ``min`` against ``max``, float32 against
float64 and the branch a convention flag selects.

Not mutated (a mutant there tests the wording of an error, not an answer): docstrings, ``raise``
statements, f-strings, annotations, ``__all__``, the arguments of ``warnings.warn``, and the body of
``if TYPE_CHECKING:``. Mutants on a line carrying ``# pragma: no mutate`` are generated but reported
as *equivalent* (not run): the comment names why they cannot change a result.

A mutant is addressed by the path from the module's root to its node (re-derived from the same
source when it is applied) and identified by a short hash of its scope (the enclosing function),
its operator, the original and mutated text and its occurrence number in that scope, so that its id
survives edits elsewhere in the module.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import io
import tokenize
from dataclasses import asdict, dataclass, field
from typing import Iterator, List, Optional, Tuple

PRAGMA = "pragma: no mutate"

# operator -> its one replacement (the "boundary" and "twin" mutants; one per site keeps runs short)
_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
          ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
          ast.BitXor: ast.BitOr, ast.LShift: ast.RShift, ast.RShift: ast.LShift}
_CMPOP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
          ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_BOOLOP = {ast.And: ast.Or, ast.Or: ast.And}
# names of functions / attributes swapped for their twin (np.maximum -> np.minimum, ...)
_TWINS = {"maximum": "minimum", "minimum": "maximum", "max": "min", "min": "max", "amax": "amin",
          "amin": "amax", "fmax": "fmin", "fmin": "fmax", "nanmax": "nanmin", "nanmin": "nanmax",
          "argmax": "argmin", "argmin": "argmax", "floor": "ceil", "ceil": "floor", "any": "all",
          "all": "any", "rint": "floor", "round": "floor", "trunc": "floor", "float64": "float32",
          "float32": "float64", "nonzero": "flatnonzero", "cumsum": "cumprod"}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
           ast.RShift: ">>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
           ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
           ast.And: "and", ast.Or: "or"}

#: operator name -> what it does (README and ``python -m mutation operators``)
OPERATORS = {
    "binop": "arithmetic/bitwise operator swapped: + <-> -, * <-> /, // -> /, % -> //, ** -> *, & <-> |, ^ -> |, << <-> >>",
    "augassign": "the same swaps in an augmented assignment (x += 1 -> x -= 1)",
    "compare": "comparison made strict/inclusive or negated: < <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in",
    "boolop": "and <-> or",
    "not": "`not x` -> `x`",
    "negate": "a flag's branch inverted: `if flag:` -> `if not flag:` (also while, x if c else y)",
    "usub": "`-x` -> `x` (unary minus dropped; negative constants are nudged instead)",
    "number": "a number nudged: n -> n + 1 (floats where x + 1 == x: x -> 2x)",
    "bool": "True <-> False",
    "string": "a string compared against (== 'eps_union', in ('a', 'b')) -> 'XX...XX', so the branch never matches",
    "twin": "a function swapped for its twin: maximum <-> minimum, max <-> min, floor <-> ceil, argmax <-> argmin, "
            "any <-> all, rint/round/trunc -> floor, float64 <-> float32, cumsum -> cumprod",
    "loop": "break <-> continue",
}


@dataclass
class Mutant:
    """One first-order mutant (JSON-serialisable)."""

    id: str
    module: str            # path relative to the repository root, e.g. "refdet/iou.py"
    line: int
    col: int
    end_line: int
    stmt_line: int         # first line of the enclosing statement
    op: str                # one of OPERATORS
    scope: str             # qualname of the outermost enclosing def ("<module>" at module level)
    level: str             # "function" (the def's code object is swapped) or "module" (the module re-run)
    before: str
    after: str
    path: List[Tuple[str, Optional[int]]] = field(default_factory=list)
    equivalent: bool = False  # on a "# pragma: no mutate" line
    reason: str = ""

    def describe(self) -> str:
        return f"{self.module}:{self.line} [{self.op}] `{self.before}` -> `{self.after}` (in {self.scope})"

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = [list(p) for p in self.path]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Mutant":
        d = dict(d)
        d["path"] = [tuple(p) for p in d["path"]]
        return cls(**d)


def pragma_lines(source: str) -> dict:
    """``{line: (selector, reason)}`` of the lines carrying ``# pragma: no mutate``.

    ``# pragma: no mutate (reason)`` covers every mutant of the line; ``# pragma: no mutate[1 -> 2]
    (reason)`` only the mutants reading ``1 -> 2`` (several selectors separated by ``;``), for a line
    whose other mutants do change results.
    """
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and PRAGMA in tok.string:
            rest = tok.string.split(PRAGMA, 1)[1]
            selector = None
            if rest.startswith("["):
                sel, rest = rest[1:].split("]", 1)
                selector = tuple(" ".join(x.split()) for x in sel.split(";"))
            out[tok.start[0]] = (selector, rest.strip(" -:()\t"))
    return out


def _pragma_applies(selector, before, after, short=None) -> bool:
    """Whether a pragma's selector names this mutant: its full text ``before -> after`` or, for an
    operator mutant, the operator change alone (``<= -> <`` names every such change on the line)."""
    if selector is None:
        return True
    return " ".join(f"{before} -> {after}".split()) in selector or (short is not None and short in selector)


def _is_docstring(node, parent) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _call_name(call: ast.Call) -> str:
    f = call.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


class _Site:
    """A mutable slot: (parent node, field name, index or None) and the path to it."""

    __slots__ = ("parent", "fieldname", "index", "path")

    def __init__(self, parent, fieldname, index, path):
        self.parent, self.fieldname, self.index, self.path = parent, fieldname, index, path

    def get(self):
        v = getattr(self.parent, self.fieldname)
        return v if self.index is None else v[self.index]

    def set(self, new):
        if self.index is None:
            setattr(self.parent, self.fieldname, new)
        else:
            getattr(self.parent, self.fieldname)[self.index] = new


def _walk(node, path, ctx) -> Iterator[Tuple[_Site, dict]]:
    """Every (slot, context) below ``node``, skipping what is never mutated.

    ``ctx``: ``qual`` (the qualname prefix), ``func`` (qualname of the outermost def, None at module or
    class-body level), ``func_node`` (that def), ``in_header`` (inside its defaults: evaluated when the
    module runs), ``stmt`` (the enclosing statement).
    """
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment", "decorator_list"):
            continue  # annotations; decorators (conventions.documented("op")) are not arithmetic
        items = value if isinstance(value, list) else [value]
        for i, child in enumerate(items):
            if not isinstance(child, ast.AST):
                continue
            idx = i if isinstance(value, list) else None
            site = _Site(node, name, idx, path + [(name, idx)])
            if _is_docstring(child, node):
                continue
            if isinstance(child, (ast.Raise, ast.JoinedStr, ast.Assert, ast.Import, ast.ImportFrom, ast.Global,
                                  ast.Nonlocal)):
                continue
            if isinstance(child, ast.Call) and _call_name(child) in ("warnings.warn", "warn"):
                continue
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                     for t in child.targets):
                continue
            c = ctx
            if node is ctx["func_node"]:
                # the outermost def: its body runs when called; its defaults when the module runs
                c = dict(ctx, in_header=(name == "args"))
            if isinstance(child, ast.ClassDef) and ctx["func"] is None:
                c = dict(c, qual=(ctx["qual"] + "." if ctx["qual"] else "") + child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and ctx["func"] is None:
                qual = (ctx["qual"] + "." if ctx["qual"] else "") + child.name
                c = dict(c, qual=qual, func=qual, func_node=child)
            if isinstance(child, ast.stmt):
                c = dict(c, stmt=child)
            yield site, c
            yield from _walk(child, site.path, c)


def _const_repr(v) -> str:
    return repr(v)


def _nudge(v):
    """n -> n + 1; a float where x + 1 == x (or inf) -> 2x (inf stays inf: no mutant)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return None
        w = v + 1.0
        if w == v:
            w = v * 2.0
        return w
    return None


def _candidates(site: _Site, ctx: dict, parent_chain) -> Iterator[Tuple[str, object]]:
    """(op, replacement node) for the node in ``site``."""
    node = site.get()
    parent = site.parent
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
        new = copy.copy(node)
        new.op = _BINOP[type(node.op)]()
        yield "binop", new
    elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP:
        new = copy.copy(node)
        new.op = _BINOP[type(node.op)]()
        yield "augassign", new
    elif isinstance(node, ast.Compare):
        for i, o in enumerate(node.ops):
            if type(o) in _CMPOP:
                new = copy.copy(node)
                new.ops = list(node.ops)
                new.ops[i] = _CMPOP[type(o)]()
                yield "compare", new
    elif isinstance(node, ast.BoolOp):
        new = copy.copy(node)
        new.op = _BOOLOP[type(node.op)]()
        yield "boolop", new
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            yield "not", node.operand
        elif isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
            yield "usub", node.operand
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            yield "bool", ast.Constant(value=not v)
        elif isinstance(v, (int, float)):
            w = _nudge(v)
            if w is not None:
                yield "number", ast.Constant(value=w)
        elif isinstance(v, str) and ctx.get("compared"):
            yield "string", ast.Constant(value="XX" + v + "XX")
    elif isinstance(node, ast.Break):
        yield "loop", ast.Continue()
    elif isinstance(node, ast.Continue):
        yield "loop", ast.Break()
    elif isinstance(node, ast.Attribute) and node.attr in _TWINS and isinstance(node.ctx, ast.Load):
        # np.maximum(...), x.max(...), np.float64: only as a called function or a dtype (np.float32)
        called = isinstance(parent, ast.Call) and site.fieldname == "func"
        dtype = node.attr in ("float64", "float32")
        if called or dtype:
            new = copy.copy(node)
            new.attr = _TWINS[node.attr]
            yield "twin", new
    elif isinstance(node, ast.Name) and node.id in ("max", "min") and isinstance(parent, ast.Call) \
            and site.fieldname == "func":
        yield "twin", ast.Name(id=_TWINS[node.id], ctx=ast.Load())
    # a flag's branch: if/while/ternary whose test is a plain value (a Compare, a BoolOp or a `not`
    # is mutated by its own operator)
    if site.fieldname == "test" and isinstance(parent, (ast.If, ast.While, ast.IfExp)) and \
            isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
        yield "negate", ast.UnaryOp(op=ast.Not(), operand=node)


def _snippet(node) -> str:
    try:
        s = ast.unparse(node)
    except Exception:  # noqa: BLE001
        s = type(node).__name__
    s = " ".join(s.split())
    return s if len(s) <= 80 else s[:77] + "..."


def _describe(op, old, new) -> Tuple[str, str]:
    if op in ("binop", "augassign", "boolop"):
        return _SYMBOL[type(old.op)], _SYMBOL[type(new.op)]
    if op == "compare":
        for a, b in zip(old.ops, new.ops):
            if type(a) is not type(b):
                return _SYMBOL[type(a)], _SYMBOL[type(b)]
    if op in ("twin",):
        return (old.attr if isinstance(old, ast.Attribute) else old.id), (
            new.attr if isinstance(new, ast.Attribute) else new.id)
    return _snippet(old), _snippet(new)


def _labels(op, old, new, site=None) -> Tuple[str, str]:
    """The (before, after) text of a mutant: the expression when short, else the operator alone.
    A nudged constant under a unary minus reads ``-1 -> -2``; a constant that is a keyword's value
    or a dict's value carries its name (``clip=True -> clip=False``, ``'half_wh': False -> ...``)."""
    parent = site.parent if site is not None else None
    if op == "number" and isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.USub):
        return "-" + _snippet(old), "-" + _snippet(new)
    if op in ("number", "bool", "string") and isinstance(parent, ast.keyword) and parent.arg:
        return f"{parent.arg}={_snippet(old)}", f"{parent.arg}={_snippet(new)}"
    if op in ("number", "bool", "string") and isinstance(parent, ast.Dict) and site.fieldname == "values":
        key = parent.keys[site.index]
        if isinstance(key, ast.Constant):
            return f"{key.value!r}: {_snippet(old)}", f"{key.value!r}: {_snippet(new)}"
    if op in ("binop", "augassign", "compare", "boolop"):
        before, after = _snippet(old), _snippet(new)
        if len(before) <= 60:
            return before, after
    return _describe(op, old, new)


def _mark_compared(tree):
    """Flag string constants that are compared against (operands of ==, !=, in, not in)."""
    ids = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Compare):
            for operand in [n.left] + list(n.comparators):
                stack = [operand]
                while stack:
                    o = stack.pop()
                    if isinstance(o, ast.Constant) and isinstance(o.value, str):
                        ids.add(id(o))
                    elif isinstance(o, (ast.Tuple, ast.List, ast.Set)):
                        stack.extend(o.elts)
    return ids


def generate(source: str, module: str) -> List[Mutant]:
    """Every mutant of ``source`` (the text of ``module``, a repository-relative path)."""
    tree = ast.parse(source)
    pragmas = pragma_lines(source)
    compared = _mark_compared(tree)
    root_ctx = {"qual": "", "func": None, "func_node": None, "in_header": False, "stmt": None}
    out: List[Mutant] = []
    seen: dict = {}
    for site, ctx in _walk(tree, [], root_ctx):
        node = site.get()
        c = dict(ctx, compared=id(node) in compared)
        for op, new in _candidates(site, c, None):
            before_s, after_s = _labels(op, node, new, site)
            scope = ctx["func"] or "<module>"
            level = "function" if (ctx["func"] and not ctx["in_header"]) else "module"
            stmt = ctx["stmt"]
            line = getattr(node, "lineno", None) or (stmt.lineno if stmt else 1)
            key = (scope, op, before_s, after_s)
            k = seen.get(key, 0)
            seen[key] = k + 1
            h = hashlib.sha1(repr((module, scope, op, before_s, after_s, k)).encode()).hexdigest()[:8]
            m = Mutant(id=h, module=module, line=line, col=getattr(node, "col_offset", 0),
                       end_line=getattr(node, "end_lineno", line) or line,
                       stmt_line=stmt.lineno if stmt is not None else line, op=op, scope=scope, level=level,
                       before=before_s, after=after_s, path=list(site.path))
            stmt_end = stmt.end_lineno if stmt is not None and not isinstance(
                stmt, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef)) else line
            lines_ = list(range(line, max(line, m.end_line) + 1))
            if stmt is not None:
                # a pragma anywhere on a simple statement's lines covers the statement
                lines_ += list(range(stmt.lineno, (stmt_end or stmt.lineno) + 1))
            short = None
            if op in ("binop", "augassign", "compare", "boolop"):
                short = "{} -> {}".format(*_describe(op, node, new))
            hit = [ln for ln in lines_ if ln in pragmas and _pragma_applies(pragmas[ln][0], before_s, after_s, short)]
            if hit:
                m.equivalent = True
                m.reason = pragmas[hit[0]][1]
            out.append(m)
    return out


def apply(source: str, mutant: Mutant) -> ast.Module:
    """The AST of ``source`` with ``mutant`` applied (checked against the mutant's description)."""
    tree = ast.parse(source)
    node = tree
    parent = None
    for name, idx in mutant.path:
        parent = node
        v = getattr(node, name)
        node = v if idx is None else v[idx]
    site = _Site(parent, mutant.path[-1][0], mutant.path[-1][1], mutant.path)
    compared = _mark_compared(tree)
    ctx = {"compared": id(node) in compared, "func": None}
    for op, new in _candidates(site, ctx, None):
        if op != mutant.op:
            continue
        before, after = _labels(op, node, new, site)
        if (before, after) == (mutant.before, mutant.after):
            site.set(new)
            ast.fix_missing_locations(tree)
            return tree
    raise LookupError(f"mutant {mutant.id} ({mutant.describe()}) does not apply to this source")
