"""Input validation for refdet's public boundary, and its error wording.

Every public function validates its arguments here, so that a caller always gets the same kind of
message: a ``TypeError`` for the wrong kind of object, a ``ValueError`` for a wrong shape or value, and
the message names the argument and what it got::

    ValueError: `boxes` must have shape (N, 4); got (3, 5)

Rules the helpers follow:

* They never write into what they are given. ``np.asarray`` may return the caller's own array, so
  code downstream must treat the result as read-only (every helper here is pure).
* Empty inputs (N = 0) are valid everywhere.
* Floating dtypes keep their precision (float32 in, float32 math), float16 is widened to float32 (box
  areas overflow float16 at 65504), integers become float64; see :func:`working_dtype`. Where real
  numbers are meant (boxes, scores, feature maps, parameters), bool, complex, object and string
  arrays are a ``TypeError``: a mask passed for a coordinate is a mistake, not a number.
* An argument that chooses the size of an allocation or the length of a loop (a feature-map size, a
  channel count, a number of classes, an output size) is checked by :func:`check_allocation` before
  anything is allocated: above :data:`MAX_ELEMENTS` elements it is a ``ValueError`` naming the
  argument and the size it would need. The functions with such arguments take ``max_elements=`` to
  raise (or lower) the cap for one call.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

__all__ = [
    "working_dtype",
    "as_array",
    "as_float_array",
    "as_boxes",
    "as_scores",
    "as_int_labels",
    "check_finite",
    "check_same_length",
    "check_probability",
    "check_real",
    "check_positive",
    "check_int",
    "check_choice",
    "check_image_size",
    "check_weights4",
    "as_rng",
    "MAX_ELEMENTS",
    "check_allocation",
    "check_bool",
    "check_callable",
    "check_unit_threshold",
    "check_sequence",
    "check_broadcast",
    "MAX_CLASSES",
]

#: The default cap on the number of elements of one array (or iterations of one loop) whose size an
#: argument chooses: 2**28 = 268,435,456 elements, 2 GiB of float64. Far above what a detector's
#: anchors, targets or parameters need (a 1333 x 800 image has ~200,000 FPN anchors), far below what
#: a typo (``feature_size=(100000, 100000)``) asks for. ``max_elements=`` raises it for one call.
MAX_ELEMENTS = 2 ** 28


def _fmt_bytes(n):
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def check_allocation(n_elements, itemsize, what, *, name, limit=None, keyword=True):
    """Refuse an array (or a loop) whose size the argument ``name`` chose, before making it.

    Parameters
    ----------
    n_elements : int
        Elements the call would allocate (Python int: no overflow), or iterations it would run.
    itemsize : int
        Bytes per element, for the message (8 for float64 and int64).
    what : str
        What would be allocated, for the message (``"anchors x 4 coordinates"``).
    name : str
        The argument (or arguments, ``"feature_size` and `cell"``) that chose the size.
    limit : int, optional
        The caller's ``max_elements=``; ``None`` means :data:`MAX_ELEMENTS`.
    keyword : bool
        Whether the calling function takes ``max_elements=`` (the message then says how to raise the
        cap); without it the message names :data:`MAX_ELEMENTS`.

    Raises
    ------
    ValueError
        ``"`feature_size` asks for 40,000,000,000 elements (anchors x 4 coordinates, 298 GiB); the cap
        is 268,435,456 elements (max_elements=): pass max_elements=40000000000 if you mean it"``.
    """
    cap = MAX_ELEMENTS if limit is None else check_int(limit, "max_elements", low=0)
    n = int(n_elements)
    if n > cap:
        verb = "ask" if "`" in name else "asks"  # several arguments: "`a` and `b` ask for"
        how = (f"(max_elements=): pass max_elements={n} if you mean it" if keyword else
               "(refdet._checks.MAX_ELEMENTS)")
        raise ValueError(f"`{name}` {verb} for {n:,} elements ({what}, {_fmt_bytes(n * int(itemsize))}); the cap "
                         f"is {cap:,} elements {how}")
    return n


def check_sequence(x, name, what="a list"):
    """A list or tuple (not a string, not an array, not a number), returned as a list."""
    if isinstance(x, (str, bytes)) or not isinstance(x, (list, tuple)):
        raise TypeError(f"`{name}` must be {what}; got {_describe(x)}")
    return list(x)


#: the largest class count refdet accepts where no array of that size is made (labels are int64 and
#: the background label is K itself; 2**31 - 1 is far above any label set)
MAX_CLASSES = 2 ** 31 - 1


def check_broadcast(arrays, names):
    """The broadcast shape of ``arrays``, or a ValueError naming every argument and its shape."""
    try:
        return np.broadcast_shapes(*(np.shape(a) for a in arrays))
    except ValueError:
        shapes = ", ".join(f"`{n}` {np.shape(a)}" for a, n in zip(arrays, names))
        raise ValueError(f"{' and '.join(f'`{n}`' for n in names)} must broadcast together; got {shapes}") from None


def check_bool(x, name):
    """A Python or NumPy bool (not 0/1, not a string), returned as a Python bool."""
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool (True or False); got {_describe(x)}")
    return bool(x)


def check_callable(x, name, *, allow_none=True):
    """A callable (or ``None`` when ``allow_none``), returned unchanged."""
    if x is None and allow_none:
        return None
    if not callable(x):
        raise TypeError(f"`{name}` must be a callable{' or None' if allow_none else ''}; got {_describe(x)}")
    return x


def check_unit_threshold(x, name, *, source="ONNX NonMaxSuppression defines an IoU threshold in [0, 1]"):
    """An IoU or probability threshold: a finite real in [0, 1], returned as float.

    A threshold outside [0, 1] cannot change an answer compared with 0 or 1 (an IoU, a probability
    lies in [0, 1]), so it is almost always a mix-up (a percentage, a logit, a pixel count); ``source``
    names where the range is written down, for the message.
    """
    v = check_real(x, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1] ({source}); got {v}")
    return v


def _describe(x):
    """Short description of an object for an error message."""
    if isinstance(x, np.ndarray):
        return f"ndarray of shape {x.shape} and dtype {x.dtype}"
    r = repr(x)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(x).__name__} {r}"


def working_dtype(dtype):
    """The dtype refdet computes in for inputs of ``dtype``.

    float64 -> float64 (the oracle answer), float32 -> float32 (bit-matching float32 frameworks),
    float16 -> float32 (what torchvision's ``_upcast`` does: areas overflow float16 at 65504),
    integers and bools -> float64.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float64)
    if dtype in (np.float32, np.float16):
        return np.dtype(np.float32)
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    if dtype.kind == "f":  # longdouble and friends: keep as float64 for a defined answer
        return np.dtype(np.float64)
    raise TypeError(f"dtype {dtype} is not a real number type")


def as_array(x, name):
    """``np.asarray(x)`` with a TypeError naming ``name`` for objects that are not numeric arrays."""
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise TypeError(f"`{name}` must be an array of numbers; got {_describe(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"`{name}` must be an array of numbers; got {_describe(x)} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be an array of real numbers; got dtype {arr.dtype}")
    return arr


def _refuse_bool(arr, name):
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must be an array of real numbers; got dtype bool (cast a mask explicitly "
                        f"if you mean 0.0 and 1.0)")


def as_float_array(x, name, *, ndim=None, last=None, finite=True, dtype=None):
    """Validate ``x`` as a real array and return it in refdet's working float dtype.

    Parameters
    ----------
    ndim : int, optional
        Required number of dimensions.
    last : int, optional
        Required size of the last axis.
    finite : bool
        Reject NaN and inf (they would silently poison a result).
    dtype : dtype, optional
        Force a dtype instead of :func:`working_dtype`.

    The result may be the caller's own array (no copy when the dtype already fits): treat it as
    read-only.
    """
    arr = as_array(x, name)
    _refuse_bool(arr, name)
    if ndim is not None and arr.ndim != ndim:
        want = "(" + ", ".join(["N"] * (ndim - 1) + ([str(last)] if last is not None else ["K"])) + ")" \
            if ndim > 0 else "()"
        raise ValueError(f"`{name}` must be {ndim}-D with shape {want}; got shape {arr.shape}")
    if last is not None and (arr.ndim == 0 or arr.shape[-1] != last):
        raise ValueError(f"`{name}` must have last dimension {last}; got shape {arr.shape}")
    target = np.dtype(dtype) if dtype is not None else working_dtype(arr.dtype)
    out = arr.astype(target, copy=False)
    if finite:
        check_finite(out, name)
    return out


def as_boxes(boxes, name="boxes", *, finite=True, dtype=None):
    """Validate an (N, 4) box array; return it in the working float dtype (maybe the caller's array).

    No boxes is ``np.zeros((0, 4))``: a 1-D array (even an empty one, ``np.zeros(0)`` or ``[]``) is
    refused, as torchvision's box ops refuse it (``boxes[:, 2]`` of a 1-D tensor is an IndexError).
    """
    arr = as_array(boxes, name)
    _refuse_bool(arr, name)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"`{name}` must have shape (N, 4) (no boxes: shape (0, 4)); got {arr.shape}")
    target = np.dtype(dtype) if dtype is not None else working_dtype(arr.dtype)
    out = arr.astype(target, copy=False)
    if finite:
        check_finite(out, name)
    return out


def as_scores(scores, name="scores", *, n=None, allow_nan=False, dtype=None, per="boxes"):
    """Validate a 1-D score array of length ``n`` (if given). Scores may be any real number.

    ``per`` names the argument whose length ``n`` is, for the message.
    """
    arr = as_array(scores, name)
    _refuse_bool(arr, name)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D with shape (N,); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n} (one per box of `{per}`); got length {arr.shape[0]}")
    target = np.dtype(dtype) if dtype is not None else working_dtype(arr.dtype)
    out = arr.astype(target, copy=False)
    if not allow_nan:  # +-inf scores are ordered and harmless; NaN only where a convention defines it
        check_finite(out, name, allow_inf=True)
    return out


def as_int_labels(labels, name="labels", *, n=None, ndim=1, low=None, high=None):
    """Validate an integer label array (int64 result; bools and floats are rejected)."""
    arr = as_array(labels, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must be an integer array; got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n}; got length {arr.shape[0]}")
    out = arr.astype(np.int64, copy=False)
    if out.size:
        if low is not None and out.min() < low:
            raise ValueError(f"`{name}` values must be >= {low}; got minimum {int(out.min())}")
        if high is not None and out.max() > high:
            raise ValueError(f"`{name}` values must be <= {high}; got maximum {int(out.max())}")
    return out


def check_finite(arr, name, *, allow_inf=False):
    """Raise ValueError if ``arr`` holds NaN (or inf, unless ``allow_inf``)."""
    arr = np.asarray(arr)
    if arr.dtype.kind != "f" or arr.size == 0:
        return
    # Fast reductions screen the array: a NaN propagates through min, and an inf shows in min or max.
    lo = arr.min()
    if not np.isnan(lo) and (allow_inf or (np.isfinite(lo) and np.isfinite(arr.max()))):
        return
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "NaN" if allow_inf else "NaN or inf"
        raise ValueError(f"`{name}` must not contain {what}; got {arr[idx]} at index {idx}")


def check_same_length(a, b, name_a, name_b):
    if len(a) != len(b):
        raise ValueError(f"`{name_a}` and `{name_b}` must have the same length; got {len(a)} and {len(b)}")


def check_real(x, name):
    """A finite Python/NumPy real scalar, returned as float."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        if isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf":
            x = x.item()
        else:
            raise TypeError(f"`{name}` must be a real number; got {_describe(x)}")
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"`{name}` must be finite; got {x}")
    return x


def check_probability(x, name, low=0.0, high=1.0):
    """A real in [low, high] (a threshold or a fraction)."""
    v = check_real(x, name)
    if not (low <= v <= high):
        raise ValueError(f"`{name}` must lie in [{low}, {high}]; got {v}")
    return v


def check_positive(x, name, *, strict=True):
    v = check_real(x, name)
    if (v <= 0) if strict else (v < 0):
        raise ValueError(f"`{name}` must be {'> 0' if strict else '>= 0'}; got {v}")
    return v


def check_int(x, name, *, low=None, high=None):
    """A Python/NumPy integer (bools rejected), optionally bounded, returned as int."""
    if isinstance(x, bool):
        raise TypeError(f"`{name}` must be an integer; got {_describe(x)}")
    try:
        v = operator.index(x)
    except TypeError:
        raise TypeError(f"`{name}` must be an integer; got {_describe(x)}") from None
    if low is not None and v < low:
        raise ValueError(f"`{name}` must be >= {low}; got {v}")
    if high is not None and v > high:
        raise ValueError(f"`{name}` must be <= {high}; got {v}")
    return v


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {opts}; got {value!r}")
    return value


def check_image_size(image_size, name="image_size"):
    """An (H, W) pair of positive finite numbers, returned as a tuple of floats or ints as given."""
    if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__"):
        raise TypeError(f"`{name}` must be a pair (H, W); got {_describe(image_size)}")
    if len(image_size) != 2:
        raise ValueError(f"`{name}` must be a pair (H, W); got {len(image_size)} values")
    out = []
    for v, part in zip(image_size, ("H", "W")):
        f = check_real(v, f"{name}[{part}]")
        if f <= 0:
            raise ValueError(f"`{name}` must be positive; got {tuple(image_size)}")
        out.append(v.item() if isinstance(v, np.generic) else v)
    return tuple(out)


def check_weights4(weights, name="weights"):
    """Four positive finite box-coder weights, as a float64 array."""
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise TypeError(f"`{name}` must be 4 numbers; got {_describe(weights)}")
    if any(isinstance(v, (bool, np.bool_, str, bytes, complex, np.complexfloating)) for v in weights):
        raise TypeError(f"`{name}` must be 4 real numbers; got {_describe(weights)}")
    try:
        arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be 4 real numbers; got {_describe(weights)}") from None
    if arr.shape != (4,):
        raise ValueError(f"`{name}` must be 4 numbers; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"`{name}` must be positive and finite; got {tuple(arr.tolist())}")
    return arr


def as_rng(rng, name="rng"):
    """Normalise ``rng`` with ``np.random.default_rng`` (None, a non-negative int seed or a Generator)."""
    if isinstance(rng, (bool, np.bool_)) or (
            rng is not None and not isinstance(rng, (numbers.Integral, np.random.Generator,
                                                     np.random.SeedSequence, np.random.BitGenerator))):
        raise TypeError(f"`{name}` must be None, an int seed or a numpy Generator; got {_describe(rng)}")
    if isinstance(rng, numbers.Integral) and int(rng) < 0:
        raise ValueError(f"`{name}` must be a non-negative int seed (numpy's SeedSequence takes no negative "
                         f"seeds); got {int(rng)}")
    return np.random.default_rng(rng)


# ---------------------------------------------------------------------------------------------------
# layers (refdet/layers.py): feature maps, convolution geometry
# ---------------------------------------------------------------------------------------------------

__all__ += ["as_nchw", "check_pair", "check_conv_weight", "check_optional_vector"]
# (the padding grammar and the output-size formula live in refdet/_conv.py, with the im2col)


def as_nchw(x, name="x", *, finite=True, allow_inf=False, dtype=None):
    """Validate a 4-D ``(B, C, H, W)`` feature map; return it in the working float dtype.

    ``finite=True`` rejects NaN (and inf unless ``allow_inf``). The result may be the caller's own
    array: treat it as read-only.
    """
    arr = as_array(x, name)
    _refuse_bool(arr, name)
    if arr.ndim != 4:
        raise ValueError(f"`{name}` must be 4-D with shape (B, C, H, W) (NCHW); got shape {arr.shape}")
    target = np.dtype(dtype) if dtype is not None else working_dtype(arr.dtype)
    out = arr.astype(target, copy=False)
    if finite:
        check_finite(out, name, allow_inf=allow_inf)
    return out


def check_pair(value, name, *, low=None):
    """An int or a pair of ints ``(for H, for W)``, returned as a tuple of two Python ints."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be an int or a pair of ints; got {_describe(value)}")
    if hasattr(value, "__len__"):
        if len(value) != 2:
            raise ValueError(f"`{name}` must be an int or a pair (for H, for W); got {len(value)} values")
        return (check_int(value[0], f"{name}[0]", low=low), check_int(value[1], f"{name}[1]", low=low))
    v = check_int(value, name, low=low)
    return (v, v)


def check_conv_weight(w, x, groups, name="w", x_name="x"):
    """Validate conv weights ``(F, C / groups, KH, KW)`` against an NCHW ``x`` (already validated)."""
    arr = as_array(w, name)
    if arr.ndim != 4:
        raise ValueError(f"`{name}` must be 4-D with shape (F, C / groups, KH, KW); got shape {arr.shape}")
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"`groups` must divide the input channels C = {c} of `{x_name}`; got groups={groups}")
    if arr.shape[0] % groups:
        raise ValueError(f"`groups` must divide the output channels F = {arr.shape[0]} of `{name}`; "
                         f"got groups={groups}")
    if arr.shape[1] * groups != c:
        raise ValueError(f"`{name}` must have shape (F, C / groups, KH, KW) = (F, {c // groups}, KH, KW) for "
                         f"`{x_name}` with C = {c} channels and groups={groups}; got shape {arr.shape}")
    if arr.shape[2] < 1 or arr.shape[3] < 1:
        raise ValueError(f"`{name}` must have a kernel of at least 1 x 1; got shape {arr.shape}")
    return arr


def check_optional_vector(v, name, n, *, dtype=None):
    """``None`` or a 1-D finite array of length ``n`` (a bias, GroupNorm gamma/beta)."""
    if v is None:
        return None
    arr = as_array(v, name)
    _refuse_bool(arr, name)
    if arr.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},); got shape {arr.shape}")
    out = arr.astype(np.dtype(dtype) if dtype is not None else working_dtype(arr.dtype), copy=False)
    check_finite(out, name)
    return out


# ---------------------------------------------------------------------------------------------------
# anchors (refdet/anchors.py)
# ---------------------------------------------------------------------------------------------------

def as_positive_vector(x, name, *, allow_empty=False):
    """A 1-D float64 array of finite, strictly positive numbers (anchor sizes, ratios, scales).

    A bare number is read as a one-element list. Bools are rejected.
    """
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        x = [x]
    arr = as_array(x, name)
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must be a sequence of numbers; got booleans")
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a flat sequence of numbers; got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"`{name}` must not be empty")
    arr = arr.astype(np.float64)
    check_finite(arr, name)
    if arr.size and (arr <= 0).any():
        raise ValueError(f"`{name}` must be positive; got {arr[arr <= 0][0]}")
    return arr


def as_feature_sizes(x, name="feature_sizes"):
    """A non-empty list of feature-map sizes: each an int (square map) or an (H, W) pair of ints >= 0.

    Returns a list of ``(H, W)`` tuples of Python ints.
    """
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise TypeError(f"`{name}` must be a list of (H, W) pairs; got {_describe(x)}")
    if len(x) == 0:
        raise ValueError(f"`{name}` must name at least one feature map; got an empty list")
    out = []
    for i, f in enumerate(x):
        if hasattr(f, "__len__") and not isinstance(f, (str, bytes)):
            if len(f) != 2:
                raise ValueError(f"`{name}[{i}]` must be an int or an (H, W) pair; got {len(f)} values")
            h = check_int(f[0], f"{name}[{i}][0]", low=0)
            w = check_int(f[1], f"{name}[{i}][1]", low=0)
        else:
            h = w = check_int(f, f"{name}[{i}]", low=0)
        out.append((h, w))
    return out


def as_stride_pair(x, name="stride"):
    """A positive finite stride, or an (stride_y, stride_x) pair, as a tuple of two floats."""
    if hasattr(x, "__len__") and not isinstance(x, (str, bytes)):
        if len(x) != 2:
            raise ValueError(f"`{name}` must be a number or a (y, x) pair; got {len(x)} values")
        return (check_positive(x[0], f"{name}[0]"), check_positive(x[1], f"{name}[1]"))
    v = check_positive(x, name)
    return (v, v)


def check_float_dtype(dtype, name="dtype"):
    """float64 or float32 (float16 is computed, and returned, in float32)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`{name}` must be a floating dtype; got {_describe(dtype)}") from None
    if dt.kind != "f":
        raise TypeError(f"`{name}` must be a floating dtype (float32 or float64); got {dt}")
    return working_dtype(dt)


# ---------------------------------------------------------------------------------------------------
# heads / fpn (refdet/heads.py, refdet/fpn.py): parameter dictionaries
# ---------------------------------------------------------------------------------------------------

__all__ += ["check_param_shapes"]


def check_param_shapes(params, want, name="params", *, dtype=None, allow_extra=False):
    """Validate a parameter dict (torchvision ``state_dict`` keys -> arrays) against expected shapes.

    Parameters
    ----------
    params : Mapping
    want : dict
        ``{key: shape}``; a shape of ``None`` only requires the key to be present.
    dtype : dtype, optional
        Cast the returned arrays to this dtype (the features' working dtype).
    allow_extra : bool
        Accept keys that ``want`` does not list (they are dropped). Otherwise an unexpected key is a
        ``ValueError`` (like ``load_state_dict(strict=True)``): a typo must not go unnoticed.

    Returns
    -------
    dict
        ``{key: array}`` for the keys of ``want`` (possibly the caller's arrays: read-only).
    """
    from collections.abc import Mapping

    if not isinstance(params, Mapping):
        raise TypeError(f"`{name}` must be a dict of arrays (state_dict keys); got {_describe(params)}")
    missing = [k for k in want if k not in params]
    if missing:
        raise ValueError(f"`{name}` is missing {', '.join(repr(k) for k in missing)} "
                         f"(expected keys: {', '.join(repr(k) for k in want)})")
    if not allow_extra:
        extra = [k for k in params if k not in want]
        if extra:
            raise ValueError(f"`{name}` has unexpected keys {', '.join(repr(k) for k in extra)} "
                             f"(expected keys: {', '.join(repr(k) for k in want)})")
    out = {}
    for k, shape in want.items():
        label = f"{name}[{k!r}]"
        arr = as_array(params[k], label)
        _refuse_bool(arr, label)
        if shape is not None and arr.shape != tuple(shape):
            raise ValueError(f"`{label}` must have shape {tuple(shape)}; got {arr.shape}")
        target = np.dtype(dtype) if dtype is not None else working_dtype(arr.dtype)
        arr = arr.astype(target, copy=False)
        if shape is not None:
            check_finite(arr, label)
        out[k] = arr
    return out


# ---------------------------------------------------------------------------------------------------
# quant (refdet.quant): integer dtypes, scales, zero points, channel axes
# ---------------------------------------------------------------------------------------------------

#: name -> (qmin, qmax) of the integer types refdet.quant supports
QUANT_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    "int32": (-(2 ** 31), 2 ** 31 - 1),
}


def check_quant_dtype(dtype, name="dtype"):
    """A quantized type name (or the NumPy dtype of one); returns the name, e.g. ``"int8"``."""
    if isinstance(dtype, str):
        key = dtype
    else:
        try:
            key = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"`{name}` must be one of {', '.join(map(repr, QUANT_RANGES))}; "
                            f"got {_describe(dtype)}") from None
    if key not in QUANT_RANGES:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, QUANT_RANGES))}; got {dtype!r}")
    return key


def check_axis(axis, ndim, name="axis"):
    """``None`` or an int in [-ndim, ndim), returned normalised to [0, ndim)."""
    if axis is None:
        return None
    a = check_int(axis, name)
    if not -ndim <= a < ndim:
        raise ValueError(f"`{name}` must lie in [{-ndim}, {ndim}) for a {ndim}-D input; got {a}")
    return a % ndim


def as_quant_scale(scale, name="scale", *, axis=None, length=None):
    """A positive, finite scale: a scalar (0-d array) or, with ``axis``, a 1-D array of ``length``.

    float32 and float64 scales keep their dtype; anything else becomes float64. A 1-D scale of length 1
    without ``axis`` is treated as a scalar.
    """
    arr = as_array(scale, name)
    _refuse_bool(arr, name)
    if arr.dtype.kind not in "f":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or 1-D (one per channel); got shape {arr.shape}")
    if arr.ndim == 1:
        if axis is None:
            if arr.shape[0] != 1:
                raise ValueError(f"`{name}` has {arr.shape[0]} values (per-channel) but `axis` is None; "
                                 f"pass axis= to say which axis they run along")
            arr = arr.reshape(())
        elif length is not None and arr.shape[0] != length:
            raise ValueError(f"`{name}` must have one value per channel along `axis` {axis} ({length}); "
                             f"got length {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite; got {arr.tolist()}")
    if np.any(arr <= 0):
        raise ValueError(f"`{name}` must be > 0; got {arr.tolist()}")
    return arr


def as_quant_zero_point(zero_point, name="zero_point", *, qmin, qmax, axis=None, length=None,
                        allow_float=False, range_name="the quantized type's range"):
    """An integer zero point (scalar or, with ``axis``, 1-D) inside [qmin, qmax], as int64.

    With ``allow_float`` a floating zero point (PyTorch's learnable fake quant) is accepted, must be
    finite and is returned as float64 (its range is not checked: the op clamps it).
    """
    arr = as_array(zero_point, name)
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must be an integer; got dtype bool")
    if arr.dtype.kind == "f":
        if not allow_float:
            raise TypeError(f"`{name}` must be an integer (array); got dtype {arr.dtype}")
        check_finite(arr, name)
        out = arr.astype(np.float64)
    else:
        out = arr.astype(np.int64)
    if out.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or 1-D (one per channel); got shape {out.shape}")
    if out.ndim == 1:
        if axis is None:
            if out.shape[0] != 1:
                raise ValueError(f"`{name}` has {out.shape[0]} values (per-channel) but `axis` is None")
            out = out.reshape(())
        elif length is not None and out.shape[0] != length:
            raise ValueError(f"`{name}` must have one value per channel along `axis` {axis} ({length}); "
                             f"got length {out.shape[0]}")
    if out.dtype.kind == "i" and out.size and (out.min() < qmin or out.max() > qmax):
        raise ValueError(f"`{name}` must lie in [{qmin}, {qmax}] ({range_name}); got {out.tolist()}")
    return out


def as_int_array(x, name, *, ndim=None):
    """An integer (not bool) array, unchanged dtype (may be the caller's array: read only)."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must be an integer array; got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D; got shape {arr.shape}")
    return arr


# ------------------------------------------------------------------------------------------------
# losses (refdet/losses.py)
# ------------------------------------------------------------------------------------------------

__all__ += ["check_focal_alpha"]


def check_focal_alpha(alpha, name="alpha"):
    """Focal-loss alpha: a real in [0, 1], or exactly -1 (weighting disabled, torchvision's rule)."""
    v = check_real(alpha, name)
    if not (0.0 <= v <= 1.0) and v != -1.0:
        raise ValueError(f"`{name}` must lie in [0, 1] or be -1 (no weighting); got {v}")
    return v
