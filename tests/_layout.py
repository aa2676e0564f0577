"""Memory-layout checks: a public function must return the same bits for C-ordered, Fortran-ordered,
strided, reversed-stride and read-only inputs holding the same values.

``assert_layout_independent(func, make)`` calls ``func`` on the arrays ``make(rng)`` builds (C order),
then again with every array argument (inside tuples, lists, dicts and output NamedTuples, but not
inside a forward's cache) replaced by each variant, and compares every leaf of the results bit for
bit (:func:`bits_equal`).
"""
import numpy as np

KINDS = ("fortran", "strided", "reversed", "readonly")


def _variant(a, kind):
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "strided":
        # the same values as every other element of a buffer twice as large along each axis
        big = np.zeros(tuple(2 * s for s in a.shape) or (1,), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)] if a.ndim else big[0, ...]
        view[...] = a
        return view
    if kind == "reversed":
        # negative strides: a reversed copy read back through a reversed view
        if a.ndim == 0:
            return a.copy()
        rev = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return rev[tuple(slice(None, None, -1) for _ in a.shape)]
    out = np.array(a, copy=True)
    out.setflags(write=False)
    return out


def _is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _is_cache(obj):
    return _is_namedtuple(obj) and type(obj).__name__.endswith("Cache")


def transform(obj, kind):
    """``obj`` with every array replaced by its ``kind`` variant (caches are left alone)."""
    if isinstance(obj, np.ndarray):
        return _variant(obj, kind)
    if _is_cache(obj):
        return obj
    if _is_namedtuple(obj):
        return type(obj)(*[transform(o, kind) for o in obj])
    if isinstance(obj, (tuple, list)):
        return type(obj)(transform(o, kind) for o in obj)
    if isinstance(obj, dict):
        return {k: transform(v, kind) for k, v in obj.items()}
    return obj


def bits_equal(a, b, path="result"):
    """None when ``a`` and ``b`` are the same bits at every leaf, else a message naming the first leaf
    that differs. Arrays: shape, dtype and bytes; containers: element by element; scalars: type and
    value (NaN equal to NaN); anything else: ``==``."""
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


def assert_layout_independent(func, make, seed=0):
    """``func(*args, **kwargs)`` with ``(args, kwargs) = make(rng)``: the same bits for every layout."""
    args, kwargs = make(np.random.default_rng(seed))
    base = func(*args, **kwargs)
    for kind in KINDS:
        args, kwargs = make(np.random.default_rng(seed))
        out = func(*transform(args, kind), **transform(kwargs, kind))
        msg = bits_equal(base, out)
        assert msg is None, f"{getattr(func, '__name__', func)} with {kind} inputs: {msg}"
