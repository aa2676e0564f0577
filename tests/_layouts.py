"""Memory-layout variants of test inputs, and a leaf-by-leaf bitwise comparison of results.

``with_layout(obj, kind)`` rebuilds ``obj`` (arrays inside tuples, NamedTuples, lists and dicts) with
every ndarray in one memory layout holding the same values:

* ``"C"``: C-contiguous;
* ``"F"``: Fortran-ordered;
* ``"strided"``: every other row of an array twice as long (``x[::2]`` of a doubled array), whose other
  rows hold junk;
* ``"reversed"``: a negative-stride view (``r[::-1]`` of a reversed copy);
* ``"readonly"``: a C copy with the write flag cleared.

``assert_bits_equal(a, b)`` compares every leaf: arrays by dtype, shape and bytes, floats by their
bits (so -0.0 != 0.0 and NaN == NaN), other objects with ``==``.
"""
import math

import numpy as np

LAYOUTS = ("C", "F", "strided", "reversed", "readonly")


def _one(a, kind):
    a = np.array(a, copy=True)
    if kind == "C":
        return np.ascontiguousarray(a)
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "readonly":
        a.setflags(write=False)
        return a
    if a.ndim == 0:
        return a
    if kind == "strided":
        big = np.empty((2 * a.shape[0],) + a.shape[1:], a.dtype)
        big[::2] = a
        big[1::2] = 7 if a.dtype.kind in "iub" else np.array(1e30).astype(a.dtype)   # junk, never read
        return big[::2]
    if kind == "reversed":
        return a[::-1].copy()[::-1]
    raise ValueError(kind)


def with_layout(obj, kind):
    """``obj`` with every ndarray leaf in layout ``kind`` (same values)."""
    if isinstance(obj, np.ndarray):
        return _one(obj, kind)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(with_layout(o, kind) for o in obj))
    if isinstance(obj, tuple):
        return tuple(with_layout(o, kind) for o in obj)
    if isinstance(obj, list):
        return [with_layout(o, kind) for o in obj]
    if isinstance(obj, dict):
        return {k: with_layout(v, kind) for k, v in obj.items()}
    return obj


def _float_bits(x):
    return "nan" if math.isnan(x) else np.float64(x).view(np.int64)


def assert_bits_equal(a, b, path="result"):
    """Every leaf of ``a`` and ``b`` identical (arrays: dtype, shape and bytes)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), f"{path}: {type(a)} vs {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        ca, cb = np.ascontiguousarray(a), np.ascontiguousarray(b)
        if ca.tobytes() != cb.tobytes():
            diff = np.flatnonzero(ca.view(np.uint8).reshape(ca.size, -1) != cb.view(np.uint8).reshape(cb.size, -1)) \
                if ca.size else []
            raise AssertionError(f"{path}: bits differ ({len(diff)} bytes), e.g. {ca.ravel()[:4]} vs {cb.ravel()[:4]}")
        return
    if isinstance(a, tuple) and hasattr(a, "_fields"):
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        for name, x, y in zip(a._fields, a, b):
            assert_bits_equal(x, y, f"{path}.{name}")
        return
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bits_equal(x, y, f"{path}[{i}]")
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ"
        for k in a:
            assert_bits_equal(a[k], b[k], f"{path}[{k!r}]")
        return
    if isinstance(a, (float, np.floating)):
        assert isinstance(b, (float, np.floating)) and _float_bits(a) == _float_bits(b), f"{path}: {a!r} vs {b!r}"
        return
    assert a == b, f"{path}: {a!r} vs {b!r}"


# ---- the per-array spelling used by the NMS and post-processing tests ----

def layout(a, kind):
    """``a``'s values in the memory layout ``kind`` (one of :data:`LAYOUTS`)."""
    a = np.asarray(a)
    if kind == "C":
        return np.ascontiguousarray(a).copy()
    if kind == "F":
        return np.array(a, order="F", copy=True)
    if kind == "strided":
        # every other element of a larger buffer whose other elements are poison
        big = np.full(tuple(2 * d + 1 for d in a.shape), 7777, dtype=a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if kind == "reversed":
        flip = (slice(None, None, -1),) * a.ndim
        return np.ascontiguousarray(a[flip])[flip]      # negative strides, same values
    if kind == "readonly":
        r = np.array(a, copy=True)
        r.setflags(write=False)
        return r
    raise ValueError(kind)


def map_arrays(obj, fn):
    """Apply ``fn`` to every ndarray in nested lists/tuples (NamedTuples are rebuilt)."""
    if isinstance(obj, np.ndarray):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_arrays(o, fn) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_arrays(o, fn) for o in obj)
    return obj


def assert_bit_identical(x, y, where=""):
    """Same structure, same dtypes and shapes, and the same bytes in every array leaf."""
    if isinstance(x, np.ndarray):
        assert isinstance(y, np.ndarray), where
        assert x.dtype == y.dtype and x.shape == y.shape, f"{where}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes(), \
            f"{where}: values differ\n{x}\n{y}"
    elif isinstance(x, (list, tuple)):
        assert type(x) is type(y) and len(x) == len(y), where
        for i, (a, b) in enumerate(zip(x, y)):
            assert_bit_identical(a, b, f"{where}[{i}]")
    else:
        assert type(x) is type(y) and x == y, f"{where}: {x!r} vs {y!r}"


def check_layout_independent(fn, args, kwargs=None):
    """``fn(*args, **kwargs)`` gives bit-identical results for every layout of every array argument."""
    kwargs = kwargs or {}
    base = fn(*map_arrays(args, lambda a: layout(a, "C")), **kwargs)
    for kind in LAYOUTS[1:]:
        got = fn(*map_arrays(args, lambda a: layout(a, kind)), **kwargs)
        assert_bit_identical(base, got, f"{getattr(fn, '__name__', fn)} with {kind} inputs")
