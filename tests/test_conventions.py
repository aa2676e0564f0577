"""The conventions registry: declared options, frozen profiles, validation, generated tables."""
import inspect
import pickle

import pytest

import refdet
from refdet import conventions as cv


# ---- the schema itself, on a private test op ----------------------------------------------------

def _register_toy():
    return cv.register("_toy_op", {
        "torchvision": {"strict": True, "mode": "a", "eps": 0.0, "k": 3, "clamp": None, "w": (1.0, 2.0)},
        "caffe": {"strict": False, "mode": "b", "eps": 1e-6, "k": 1, "clamp": 4.0, "w": (1.0, 1.0)},
    }, knobs={
        "strict": cv.flag("compare with > instead of >=", source="toy.py::f"),
        "mode": cv.choice(("a", "b"), "which branch", source="toy.py::g"),
        "eps": cv.number("added to the denominator", low=0.0, source="toy.py::h"),
        "k": cv.integer("how many", low=1, source="toy.py::k"),
        "clamp": cv.number("upper clamp", allow_none=True, source="toy.py::c"),
        "w": cv.option("two weights", check=lambda v: tuple(float(x) for x in v), source="toy.py::w"),
    }, doc="toy sources")


@pytest.fixture
def toy():
    table = _register_toy()
    yield table
    cv._REGISTRY.pop("_toy_op", None)


def test_resolve_returns_a_frozen_profile_with_overrides(toy):
    p = cv.resolve("_toy_op", "torchvision", eps=0.5, k=None)
    assert isinstance(p, cv.Profile)
    assert p.name == "torchvision" and p.op == "_toy_op"
    assert p["eps"] == 0.5 and p.eps == 0.5 and p.k == 3          # None means "the profile's value"
    assert p.overridden == {"eps"}
    assert dict(p) == {"strict": True, "mode": "a", "eps": 0.5, "k": 3, "clamp": None, "w": (1.0, 2.0)}
    with pytest.raises(TypeError):
        p["eps"] = 1.0                                               # frozen mapping
    with pytest.raises(AttributeError, match="frozen"):
        p.eps = 1.0
    with pytest.raises(AttributeError, match="no convention knob 'nope'"):
        p.nope
    q = p.replace(mode="b")
    assert q.mode == "b" and p.mode == "a" and q.overridden == {"eps", "mode"}
    assert pickle.loads(pickle.dumps(q)) == q


def test_a_profile_is_accepted_as_the_convention(toy):
    p = cv.resolve("_toy_op", "caffe", k=7)
    again = cv.resolve("_toy_op", p)               # same op: every value kept, overrides included
    assert again == p and again.k == 7
    assert cv.resolve("_toy_op", p, k=2).k == 2     # and explicit keywords still win
    other = cv.resolve("box_iou", "caffe")
    assert cv.resolve("_toy_op", other).name == "caffe"   # another op's profile carries its name
    assert cv.resolve("_toy_op", other).k == 1


@pytest.mark.parametrize("kw,err,match", [
    ({"strict": 1}, TypeError, "`strict` must be a bool; got int 1"),
    ({"mode": "c"}, ValueError, "`mode` must be one of 'a', 'b'; got 'c'"),
    ({"mode": 1}, ValueError, "`mode` must be one of"),
    ({"eps": -1.0}, ValueError, r"`eps` must be a number >= 0.0; got -1.0"),
    ({"eps": float("nan")}, ValueError, "`eps` must be .*got nan"),
    ({"eps": "1"}, TypeError, "`eps` must be a real number; got str"),
    ({"eps": True}, TypeError, "`eps` must be a real number; got bool"),
    ({"k": 1.5}, TypeError, "`k` must be an int; got float 1.5"),
    ({"k": 0}, ValueError, r"`k` must be an integer >= 1; got 0"),
    ({"clamp": float("inf")}, ValueError, "`clamp` must be finite"),
    ({"w": "ab"}, ValueError, "could not convert"),
    ({"nope": 1}, TypeError, "'nope' is not a convention knob"),
])
def test_overrides_are_checked_against_their_declaration(toy, kw, err, match):
    with pytest.raises(err, match=match):
        cv.resolve("_toy_op", "torchvision", **kw)


def test_the_convention_argument_is_checked(toy):
    with pytest.raises(ValueError, match="`convention` must be one of 'torchvision', 'caffe' for _toy_op; got 'tf'"):
        cv.resolve("_toy_op", "tf")
    with pytest.raises(TypeError, match="`convention` must be a profile name"):
        cv.resolve("_toy_op", 3)


def test_register_checks_every_profile_value():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        cv.register("_bad_op", {"torchvision": {"mode": "z"}},
                    knobs={"mode": cv.choice(("a",), "m", source="s")})
    with pytest.raises(ValueError, match="missing"):
        cv.register("_bad_op", {"torchvision": {}}, knobs={"mode": cv.choice(("a",), "m", source="s")})
    with pytest.raises(ValueError, match="unknown profile"):
        cv.register("_bad_op", {"pytorch": {"mode": "a"}}, knobs={"mode": cv.choice(("a",), "m", source="s")})
    with pytest.raises(ValueError, match="sets `eps` to None"):
        cv.register("_bad_op", {"torchvision": {"eps": None}}, knobs={"eps": cv.number("e", source="s")})
    with pytest.raises(TypeError, match="must be declared as a conventions.Option"):
        cv.register("_bad_op", {"torchvision": {"eps": 1}}, knobs={"eps": 3})
    assert "_bad_op" not in cv._REGISTRY


def test_describe_and_table_rst_render_meaning_values_and_source(toy):
    text = str(cv.describe("_toy_op"))
    assert "mode: which branch (one of 'a', 'b')" in text and "source: toy.py::g" in text
    rst = cv.table_rst("_toy_op")
    assert "``eps`` : a number >= 0.0" in rst and "*Source:* toy.py::h" in rst
    assert rst.splitlines()[-1].startswith("====")


def test_documented_appends_the_generated_table(toy):
    @cv.documented("_toy_op")
    def f(x, *, convention="torchvision"):
        """Do a thing.

        Parameters
        ----------
        x : float
        """
    assert f.__convention_op__ == "_toy_op"
    assert f.__doc__.rstrip().endswith(cv.table_rst("_toy_op").splitlines()[-1])
    # the section takes the docstring's own indentation (8 spaces in this nested function), so that
    # inspect.getdoc / numpydoc see it at the level of "Parameters"
    assert "        Conventions\n        -----------\n" in f.__doc__
    assert "\nParameters\n----------\n" in inspect.getdoc(f) and "\nConventions\n-----------\n" in inspect.getdoc(f)


# ---- the registry as the modules fill it ---------------------------------------------------------

OPS = cv.ops()


def test_registry_is_not_empty():
    assert len(OPS) > 40 and "box_iou" in OPS and "nms" in OPS and "match" in OPS


@pytest.mark.parametrize("op", OPS)
def test_every_knob_is_declared_with_a_meaning_and_a_source(op):
    table = cv.describe(op)
    for knob, o in table.options.items():
        assert o.kind != "legacy", f"{op}: knob {knob!r} is not declared (string meaning only)"
        assert o.meaning, f"{op}: knob {knob!r} has no meaning"
        assert o.source or table.doc, f"{op}: knob {knob!r} has no source"


@pytest.mark.parametrize("op", OPS)
def test_every_profile_resolves_and_roundtrips(op):
    table = cv.describe(op)
    for name in table:
        p = cv.resolve(op, name)
        assert p.name == name and dict(p) == dict(table[name])
        assert cv.resolve(op, p) == p
        # each declared value survives its own validation unchanged (NaN is a value, e.g. torch's
        # mean of nothing)
        for knob, o in table.options.items():
            v = p[knob]
            if v is not None:
                w = o.validate(v, knob, op)
                assert w == v or (w != w and v != v), (op, knob, v, w)


def _public_function(op):
    """The public function a table belongs to (by name, in refdet or its submodules)."""
    for name in (op, op + "_forward", op.replace("2d", "2d_forward")):
        f = getattr(refdet, name, None)
        if callable(f):
            return f
    import importlib
    import pkgutil
    for m in pkgutil.walk_packages(refdet.__path__, "refdet."):
        if m.name.split(".")[-1].startswith("_") or m.name.startswith(("refdet.apps", "refdet.reference",
                                                                       "refdet.testing")) \
                or m.name.endswith(("cli", "demo")):
            continue
        mod = importlib.import_module(m.name)
        for name in (op, op + "_forward"):
            f = getattr(mod, name, None)
            if callable(f):
                return f
    return None


@pytest.mark.parametrize("op", OPS)
def test_knobs_are_keyword_arguments_of_their_op(op):
    f = _public_function(op)
    if f is None:
        pytest.skip(f"{op} is a table without a function of that name")
    params = inspect.signature(f).parameters
    table = cv.describe(op)
    if "convention" in params:
        assert params["convention"].default in table, f"{op}: default convention has no profile"
    missing = [k for k in table.options if k not in params]
    assert not missing, f"{op}: knobs {missing} are not keyword arguments of {f.__qualname__}"


def test_generated_docstring_tables_match_the_registry():
    """A function decorated with @documented carries exactly the registry's current table."""
    seen = 0
    for name in refdet.__all__:
        f = getattr(refdet, name)
        op = getattr(f, "__convention_op__", None)
        if op is None:
            continue
        seen += 1
        doc_lines = [ln.strip() for ln in f.__doc__.splitlines()]
        table_lines = [ln.strip() for ln in cv.table_rst(op).splitlines()]
        n = len(table_lines)
        assert any(doc_lines[i:i + n] == table_lines for i in range(len(doc_lines))), \
            f"{name}: its docstring's convention table differs from the registry's"
    assert seen >= 20, f"only {seen} public functions carry a generated convention table"
