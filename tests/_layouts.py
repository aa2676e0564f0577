"""Memory-layout variants of an array and a bit-for-bit result comparison (results must not depend on
whether an input is C-ordered, Fortran-ordered, a strided or reversed view, or read-only)."""
import numpy as np

LAYOUTS = ("C", "F", "strided", "reversed", "readonly")


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
