"""Contract tests walking every public function (see tests/contract/__init__.py)."""
import copy
import importlib
import pkgutil

import numpy as np
import pytest

import refdet
import tests.contract as contract_pkg
from tests._layouts import KINDS, with_layout

_MODULES = [importlib.import_module(f"tests.contract.{m.name}")
            for m in pkgutil.iter_modules(contract_pkg.__path__)]
CASES = [c for m in _MODULES for c in getattr(m, "CASES", [])]
BAD = [b for m in _MODULES for b in getattr(m, "BAD", [])]
EXEMPT = {k: v for m in _MODULES for k, v in getattr(m, "EXEMPT", {}).items()}


def _freeze(obj):
    """Read-only copies of every ndarray in obj (recursing into tuples, lists and dicts)."""
    if isinstance(obj, np.ndarray):
        a = obj.copy()
        a.setflags(write=False)
        return a
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_freeze(o) for o in obj)
    if isinstance(obj, list):
        return [_freeze(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _freeze(v) for k, v in obj.items()}
    return obj


def _equal(a, b):
    """Bit-for-bit equality of two results, leaf by leaf (arrays, scalars, containers, objects)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and \
            a.dtype == b.dtype and (a.dtype == object and _equal(a.tolist(), b.tolist())
                                    or a.dtype != object and a.tobytes() == b.tobytes())
    if isinstance(a, np.generic) or isinstance(b, np.generic):
        return type(a) is type(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a != a and b != b) or (a == b and str(a) == str(b))      # NaN == NaN, 0.0 != -0.0
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (int, str, bytes, bool, type(None), complex)):
        return a == b
    if isinstance(a, type) or callable(a):
        return a is b or a == b
    if hasattr(a, "_asdict"):
        return _equal(tuple(a), tuple(b))
    if hasattr(a, "__dict__") and not callable(a):
        return _equal(vars(a), vars(b))
    if hasattr(a, "keys") and hasattr(a, "__getitem__"):      # a Mapping (e.g. a conventions.Profile)
        return _equal({k: a[k] for k in a.keys()}, {k: b[k] for k in b.keys()})
    return a == b


def test_equal_compares_every_leaf():
    assert _equal((np.zeros(2), 1.0, "a", [None]), (np.zeros(2), 1.0, "a", [None]))
    assert not _equal(1.0, 2.0) and not _equal("a", "b") and not _equal(0.0, -0.0)
    assert not _equal(np.array([0.0]), np.array([-0.0]))                # bit-identical, not just ==
    assert not _equal(np.zeros(2, np.float32), np.zeros(2))
    assert _equal(float("nan"), float("nan")) and not _equal(1, 1.0)
    assert not _equal({"a": 1}, {"a": 2}) and not _equal([1], [1, 2])


# Public names that live in a module's namespace rather than at the top level (low-level helpers,
# observers): looked up in these modules, in order.
_MODULE_NAMESPACES = ("refdet.quant", "refdet.layers", "refdet.resize", "refdet.matcher", "refdet.losses",
                      "refdet.iou", "refdet.box_coder", "refdet.fpn", "refdet.heads", "refdet.eval")


def _func(name):
    """``refdet.<name>``; a dotted name ("yolo.make_anchors") reaches into a subpackage; a name kept
    out of the top level is found in its module (``refdet.quant.rounding_divide_by_pot``)."""
    import importlib
    obj = refdet
    parts = name.split(".")
    if len(parts) == 1 and not hasattr(refdet, name):
        for m in _MODULE_NAMESPACES:
            mod = importlib.import_module(m)
            if name in getattr(mod, "__all__", ()):
                return getattr(mod, name)
    for part in parts:
        obj = getattr(obj, part)
    return obj


def test_every_public_name_is_covered():
    covered = {c.name for c in CASES} | set(EXEMPT)
    missing = [n for n in refdet.__all__ if n not in covered]
    assert not missing, f"public names without a contract case or exemption: {missing}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_readonly_inputs_accepted_and_not_modified(case):
    rng = np.random.default_rng(0)
    args, kwargs = case.make(rng)
    frozen_args, frozen_kwargs = _freeze(args), _freeze(kwargs)
    pristine = copy.deepcopy((frozen_args, frozen_kwargs))
    _func(case.name)(*frozen_args, **frozen_kwargs)
    assert _equal(pristine, (frozen_args, frozen_kwargs)), f"{case.name} modified its input"
    # writable inputs too: nothing may be written into them
    args2, kwargs2 = case.make(np.random.default_rng(0))
    before = copy.deepcopy((args2, kwargs2))
    _func(case.name)(*args2, **kwargs2)
    assert _equal(before, (args2, kwargs2)), f"{case.name} wrote into a writable input"


_BOX_CASES = [(c, pos, arg) for c in CASES for pos, arg in c.box_args.items()]


@pytest.mark.parametrize("case,pos,arg", _BOX_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_bad_boxes_rejected(case, pos, arg):
    f = _func(case.name)
    args, kwargs = case.make(np.random.default_rng(0))
    good = np.asarray(args[pos], dtype=np.float64)
    bad_shape = list(args)
    bad_shape[pos] = np.zeros((3, 5))
    with pytest.raises(ValueError, match=f"`{arg}`"):
        f(*bad_shape, **kwargs)
    if good.size:
        nan = good.copy()
        nan.flat[0] = np.nan
        bad_nan = list(args)
        bad_nan[pos] = nan
        with pytest.raises(ValueError, match=f"`{arg}`.*NaN"):
            f(*bad_nan, **kwargs)
    bad_type = list(args)
    bad_type[pos] = "boxes"
    with pytest.raises(TypeError, match=f"`{arg}`"):
        f(*bad_type, **kwargs)


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.name)
def test_bad_input_rejected_with_clear_error(bad):
    args, kwargs = bad.make(np.random.default_rng(0))
    with pytest.raises(bad.error, match=bad.match):
        _func(bad.name)(*args, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_results_do_not_depend_on_memory_layout(case, kind):
    """C-ordered, Fortran-ordered, strided, negatively strided and read-only views of the same values
    give bit-identical results (outputs, caches, gradients)."""
    args, kwargs = case.make(np.random.default_rng(0))
    expected = _func(case.name)(*args, **kwargs)
    args2, kwargs2 = case.make(np.random.default_rng(0))
    got = _func(case.name)(*with_layout(args2, kind), **with_layout(kwargs2, kind))
    assert _equal(expected, got), f"{case.name}: a {kind} input changes the result"
