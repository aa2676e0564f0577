"""Memory-layout variants of test inputs, and a leaf-by-leaf bitwise comparison of results.

A public function must return the same bits for C-ordered, Fortran-ordered, strided, reversed-stride
and read-only inputs holding the same values. The pieces:

* ``layout(a, kind)``: one array's values in layout ``kind`` (one of :data:`LAYOUTS`):

  - ``"C"``: a C-contiguous copy;
  - ``"F"``: a Fortran-ordered copy;
  - ``"strided"``: every other row and every third column (element along the later axes) of a larger
    buffer, whose other elements hold junk that a function reading outside the view would pick up;
  - ``"reversed"``: a negative-stride view (``r[::-1]`` of a reversed copy);
  - ``"readonly"``: a C copy with the write flag cleared.

* ``with_layout(obj, kind)`` rebuilds ``obj`` (arrays inside tuples, NamedTuples, lists and dicts)
  with every ndarray in layout ``kind``; ``caches=False`` leaves a forward's cache (a NamedTuple whose
  type name ends in ``Cache``) as it is.
* ``bits_equal(a, b)`` is None when every leaf is the same bits, else a message naming the first leaf
  that differs: arrays by dtype, shape and bytes; floats by their bits (so -0.0 != 0.0 and NaN == the
  same NaN); containers element by element, of the same type; anything else with ``==``.
  ``assert_bits_equal`` raises ``AssertionError`` with that message.
* Two drivers: ``assert_layout_independent(func, make)`` calls ``func`` on the arrays that
  ``make(rng)`` builds and again with every array argument (positional and keyword; not inside a
  cache) in each other layout; ``check_layout_independent(fn, args, kwargs)`` does the same for fixed
  positional ``args``.
"""
import numpy as np

LAYOUTS = ("C", "F", "strided", "reversed", "readonly")
#: the layouts compared with C order
KINDS = LAYOUTS[1:]


def _junk(dtype):
    """A value that a function reading outside a strided view would notice."""
    if dtype.kind == "b":
        return True
    if dtype.kind in "iu":
        return 7
    if dtype.kind in "fc":
        return np.array(1e30 if dtype.itemsize > 2 else 6e4).astype(dtype)
    return 0


def layout(a, kind):
    """``a``'s values in the memory layout ``kind`` (one of :data:`LAYOUTS`); always a new buffer."""
    a = np.asarray(a)
    if kind == "C":
        return np.array(a, order="C", copy=True)
    if kind == "F":
        return np.array(a, order="F", copy=True)
    if kind == "readonly":
        r = np.array(a, order="C", copy=True)
        r.setflags(write=False)
        return r
    if kind not in LAYOUTS:
        raise ValueError(kind)
    if a.ndim == 0:
        return np.array(a, copy=True)       # no strides to vary
    if kind == "strided":
        shape = (2 * a.shape[0] + 1,) + tuple(3 * d + 1 for d in a.shape[1:])
        view_of = (slice(1, None, 2),) + (slice(2, None, 3),) * (a.ndim - 1)
        big = np.full(shape, _junk(a.dtype), dtype=a.dtype)
        view = big[view_of]
        view[...] = a
        return view
    flip = (slice(None, None, -1),) * a.ndim      # "reversed": negative strides, same values
    return np.ascontiguousarray(a[flip])[flip]


def is_cache(obj):
    """A forward's cache: a NamedTuple whose type name ends in ``Cache``."""
    return isinstance(obj, tuple) and hasattr(obj, "_fields") and type(obj).__name__.endswith("Cache")


def with_layout(obj, kind, *, caches=True):
    """``obj`` with every ndarray leaf in layout ``kind`` (same values); caches too unless ``caches=False``."""
    if isinstance(obj, np.ndarray):
        return layout(obj, kind)
    if not caches and is_cache(obj):
        return obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(with_layout(o, kind, caches=caches) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(with_layout(o, kind, caches=caches) for o in obj)
    if isinstance(obj, dict):
        return {k: with_layout(v, kind, caches=caches) for k, v in obj.items()}
    return obj


def bits_equal(a, b, path="result"):
    """None when ``a`` and ``b`` are the same bits at every leaf, else a message naming the first leaf
    that differs."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return f"{path}: {type(a).__name__} vs {type(b).__name__}"
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.reshape(-1), b.reshape(-1))):
                m = bits_equal(x, y, f"{path}.flat[{i}]")
                if m:
                    return m
            return None
        ca, cb = np.ascontiguousarray(a), np.ascontiguousarray(b)
        if ca.tobytes() != cb.tobytes():
            neq = (ca.view(np.uint8).reshape(-1, a.itemsize) != cb.view(np.uint8).reshape(-1, a.itemsize)).any(1)
            first = np.unravel_index(int(np.flatnonzero(neq)[0]), a.shape)
            return (f"{path}: {int(neq.sum())} of {a.size} elements differ in their bits, first at {first}: "
                    f"{ca[first]!r} vs {cb[first]!r}")
        return None
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        names = getattr(a, "_fields", None) or range(len(a))
        for n, x, y in zip(names, a, b):
            m = bits_equal(x, y, f"{path}.{n}" if isinstance(n, str) else f"{path}[{n}]")
            if m:
                return m
        return None
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            m = bits_equal(a[k], b[k], f"{path}[{k!r}]")
            if m:
                return m
        return None
    if isinstance(a, (float, np.floating)):
        same = np.array(a).tobytes() == np.array(b).tobytes()
        return None if same else f"{path}: {a!r} vs {b!r}"
    try:
        same = bool(a == b)
    except Exception:  # noqa: BLE001 (an object without a usable ==)
        same = a is b
    return None if same else f"{path}: {a!r} vs {b!r}"


def assert_bits_equal(a, b, path="result"):
    """Every leaf of ``a`` and ``b`` the same bits (:func:`bits_equal`), else ``AssertionError``."""
    msg = bits_equal(a, b, path)
    assert msg is None, msg


def assert_layout_independent(func, make, seed=0):
    """``func(*args, **kwargs)`` with ``(args, kwargs) = make(rng)``: the same bits for every layout of
    every array argument (caches passed in are left as they are)."""
    args, kwargs = make(np.random.default_rng(seed))
    base = func(*args, **kwargs)
    for kind in KINDS:
        args, kwargs = make(np.random.default_rng(seed))
        out = func(*with_layout(args, kind, caches=False), **with_layout(kwargs, kind, caches=False))
        assert_bits_equal(base, out, f"{getattr(func, '__name__', func)} with {kind} inputs")


def check_layout_independent(fn, args, kwargs=None):
    """``fn(*args, **kwargs)`` gives bit-identical results for every layout of every positional array."""
    kwargs = kwargs or {}
    base = fn(*with_layout(args, "C"), **kwargs)
    for kind in KINDS:
        got = fn(*with_layout(args, kind), **kwargs)
        assert_bits_equal(base, got, f"{getattr(fn, '__name__', fn)} with {kind} inputs")
