"""Compare floating-point results in ULPs and name the refdet convention that reproduces them.

    from refdet.testing import assert_allclose_ulp
    assert_allclose_ulp(my_iou, refdet.box_iou(a, b), max_ulps=4, op="box_iou", args=(a, b))

A ULP (unit in the last place) is the gap between a float and the next representable one: 2**-23
relative for float32, 2**-52 for float64. Counting the difference in ULPs says "bit-exact" (0),
"same formula, another order of operations" (a few) or "another formula" (thousands and more).

When ``op`` and ``args`` are given, refdet recomputes the op under every convention profile
registered for it (:mod:`refdet.conventions`), with each convention knob flipped on its own, in
float64 math rounded to the input precision (the "computed in double" implementation) and with the
op's extra variants (no clamp on ``decode_boxes``, ...), and reports which of them reproduce
``actual`` -- and so what the implementation under test most likely does differently.
"""
from __future__ import annotations

import importlib

import numpy as np

from refdet import _checks
from refdet.testing._malformed import check_names, check_tolerance, result_array

__all__ = ["ulp_distance", "explain_float_difference", "assert_allclose_ulp", "float_variants"]

_INT = {np.dtype(np.float16): np.int16, np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}


def _as_float(a, dtype=None, name="a"):
    a = _checks.as_array(a, name)
    if a.dtype.kind == "b":
        raise TypeError(f"`{name}` must be an array of real numbers; got dtype bool")
    if dtype is None:
        dtype = a.dtype if a.dtype in _INT else np.float64
    with np.errstate(over="ignore"):  # a float64 beyond float16/32 is counted as inf in that precision
        return np.asarray(a, dtype=dtype)


def _ulp_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`dtype` must be float16, float32 or float64; got {_checks._describe(dtype)}") from None
    if dt not in _INT:
        raise ValueError(f"`dtype` must be float16, float32 or float64; got {dt}")
    return dt


def ulp_distance(a, b, dtype=None):
    """Elementwise distance between ``a`` and ``b`` in units in the last place of ``dtype``.

    Parameters
    ----------
    a, b : array_like (broadcastable)
    dtype : {float16, float32, float64}, optional
        The precision to count in (default: ``b``'s dtype if floating, else float64). Both arrays are
        rounded to it first.

    Returns
    -------
    ndarray of float64
        The number of representable values between ``a`` and ``b`` (0 for equal values, also for
        +0 vs -0); 0 where both are NaN, ``inf`` where exactly one is NaN.
    """
    if dtype is None:
        bd = _checks.as_array(b, "b").dtype
        dtype = bd if bd in _INT else np.float64
    dt = _ulp_dtype(dtype)
    a = _as_float(a, dt, "a")
    b = _as_float(b, dt, "b")
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError:
        raise ValueError(f"`a` and `b` must broadcast together; got shapes {a.shape} and {b.shape}") from None
    it = _INT[dt]
    lo = np.iinfo(it).min

    def ordered(x):
        # the bit pattern, as a signed integer, is monotonic in the value for x >= 0; mirror the
        # negative half so that the integer line follows the real line through 0 (+0 and -0 -> 0)
        i = np.ascontiguousarray(x).view(it).astype(np.int64)
        return np.where(i < 0, np.int64(lo) - i, i)

    oa, ob = ordered(a), ordered(b)
    # |oa - ob| exactly: the span of ordered values is < 2**64, so the unsigned wrap-around
    # difference taken in the right direction is the true distance
    ua, ub = oa.astype(np.uint64), ob.astype(np.uint64)
    d = np.where(oa >= ob, ua - ub, ub - ua).astype(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    d = np.where(na & nb, 0.0, np.where(na | nb, np.inf, d))
    return d


# ---------------------------------------------------------------------------------------------------
# variants: recompute an op under each convention, knob flip, float64 math and extra variants
# ---------------------------------------------------------------------------------------------------

# op -> [(description, keyword overrides)] tried in addition to the convention table
_EXTRA = {
    "decode_boxes": [("clamp=1e300: no clamp on dw, dh before exp (torchvision clamps at log(1000/16))",
                      {"clamp": 1e300, "clamp_mode": "max"})],
}


def _convention_table(op):
    conventions = importlib.import_module("refdet.conventions")
    try:
        return conventions.describe(op)
    except ValueError:
        return None


def _cast_args(args, dtype):
    return tuple(np.asarray(a, dtype=dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in args)


def float_variants(op, args, kwargs=None, *, convention="torchvision", fn=None, extra=()):
    """``{description: result}``: ``op`` recomputed under every registered variant.

    Parameters
    ----------
    op : str
        A public refdet op name with a convention table (``"box_iou"``, ``"encode_boxes"``,
        ``"decode_boxes"``, ``"pyramid_anchors"``, ...) or any public refdet function.
    args : tuple
        Positional arguments as given to the implementation under test.
    kwargs : dict, optional
        Keyword options shared by every variant (``weights=...``).
    convention : str
        The base profile; knobs are flipped one at a time from it.
    fn : callable, optional
        The function to call (default ``getattr(refdet, op)``); its result (or its first element,
        for ops returning tuples) is kept.
    extra : sequence of (description, overrides)
        More variants to try.

    Returns
    -------
    dict of str -> ndarray
        Variants that raise are left out. Keys read like
        ``"convention='caffe' (plus_one=True, guard='pfr')"``, ``"plus_one=True: <meaning>"`` and
        ``"float64 math rounded to float32"``.
    """
    refdet = importlib.import_module("refdet")
    if not isinstance(op, str):
        raise TypeError(f"`op` must be a refdet op name (str); got {type(op).__name__} {op!r}")
    _checks.check_callable(fn, "fn")
    if fn is None and not callable(getattr(refdet, op, None)):
        raise ValueError(f"`op` must name a public refdet function (or pass `fn`); got {op!r}")
    fn = fn or getattr(refdet, op)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"`args` must be a tuple of positional arguments; got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"`kwargs` must be a dict of keyword options or None; got {type(kwargs).__name__}")
    from refdet.conventions import Profile

    if not isinstance(convention, (str, Profile)):
        raise TypeError(f"`convention` must be a profile name (str) or a Profile; got {type(convention).__name__} "
                        f"{convention!r}")
    extra = _checks.check_sequence(extra, "extra", "a list of (description, overrides) pairs")
    for i, e in enumerate(extra):
        if not (isinstance(e, (tuple, list)) and len(e) == 2 and isinstance(e[1], dict)):
            raise TypeError(f"`extra[{i}]` must be a (description, overrides dict) pair; got {e!r}")
    kwargs = dict(kwargs or {})
    table = _convention_table(op)
    out = {}

    def run(desc, a, kw):
        try:
            r = fn(*a, **kw)
        except (ValueError, TypeError, KeyError, FloatingPointError):
            return
        if isinstance(r, tuple):
            r = r[0]
        out.setdefault(desc, np.asarray(r))

    base = dict(kwargs)
    if table is not None:
        # single knobs first (the most specific explanation), then whole profiles
        base.setdefault("convention", convention)
        base_settings = table.get(base["convention"], {})
        for knob, meaning in table.knobs.items():
            values = []
            for settings in table.values():
                v = settings.get(knob)
                if v != base_settings.get(knob) and v not in values:
                    values.append(v)
            if isinstance(base_settings.get(knob), bool) and not values:
                values = [not base_settings.get(knob)]
            for v in values:
                run(f"{knob}={v!r} ({meaning})", args, {**base, knob: v})
    for desc, over in list(_EXTRA.get(op, ())) + list(extra):
        run(desc, args, {**base, **over})
    if table is not None:
        for p, settings in table.items():
            diff = {k: v for k, v in settings.items() if base_settings.get(k) != v}
            detail = ", ".join(f"{k}={v!r}" for k, v in diff.items())
            run(f"convention={p!r}" + (f" ({detail})" if detail else ""), args, {**kwargs, "convention": p})
    dts = {a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"}
    if dts and dts != {np.dtype(np.float64)}:
        try:
            r = fn(*_cast_args(args, np.float64), **base)
            r = r[0] if isinstance(r, tuple) else r
            low = min(dts, key=lambda d: d.itemsize)
            out["float64 math rounded to " + low.name] = np.asarray(r).astype(low)
        except (ValueError, TypeError):
            pass
    return out


def _reproduces(actual, candidate, max_ulps):
    c = np.asarray(candidate)
    if c.shape != actual.shape:
        return False
    if c.dtype.kind != "f":
        return np.array_equal(actual, c)
    if c.size == 0:
        return True
    d = ulp_distance(actual, c, c.dtype if c.dtype in _INT else np.float64)
    return bool(np.all(d <= max_ulps))


def _fmt(v, dt):
    return f"{float(v):.9g}" if dt == np.float32 else repr(float(v))


def explain_float_difference(actual, expected, *, max_ulps=4, rtol=0.0, atol=0.0, op=None, args=None,
                             kwargs=None, convention="torchvision", names=("actual", "expected"), extra=()):
    """The explanation text of :func:`assert_allclose_ulp`, or ``None`` when the arrays agree.

    Two elements agree when they are within ``max_ulps`` ULPs (in ``expected``'s precision), or
    ``|actual - expected| <= atol + rtol * |expected|``, or both NaN.
    """
    na, nb = check_names(names)
    max_ulps = check_tolerance(max_ulps, "max_ulps")
    rtol = check_tolerance(rtol, "rtol")
    atol = check_tolerance(atol, "atol")
    if op is not None and not isinstance(op, str):
        raise TypeError(f"`op` must be a refdet op name (str) or None; got {_checks._describe(op)}")
    if args is not None and not isinstance(args, (tuple, list)):
        raise TypeError(f"`args` must be a tuple of the op's positional arguments; got {_checks._describe(args)}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"`kwargs` must be a dict of keyword options; got {_checks._describe(kwargs)}")
    if not isinstance(convention, str):
        raise TypeError(f"`convention` must be a profile name (str); got {_checks._describe(convention)}")
    e = _as_float(expected, None, "expected")
    dt = e.dtype if e.dtype in _INT else np.dtype(np.float64)
    e = e.astype(dt)
    a_in = result_array(actual, f"`{na}` (the result under test)", "an array of floats")
    if a_in.shape != e.shape:
        return f"{na} has shape {a_in.shape} but {nb} has shape {e.shape}"
    with np.errstate(over="ignore"):
        a = a_in.astype(dt)
    if e.size == 0:
        return None
    d = ulp_distance(a, e, dt)
    with np.errstate(invalid="ignore", over="ignore"):
        absdiff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        close = (d <= max_ulps) | (absdiff <= atol + rtol * np.abs(e.astype(np.float64)))
    close |= np.isnan(a) & np.isnan(e)
    bad = ~close
    if not bad.any():
        return None
    idx = np.argwhere(bad)
    first = tuple(int(v) for v in idx[0])
    finite_d = np.where(bad, d, -1.0)
    worst = tuple(int(v) for v in np.unravel_index(int(np.argmax(finite_d)), e.shape))
    lines = [f"{op + ': ' if op else ''}{int(bad.sum())} of {e.size} elements differ by more than {max_ulps} ULPs "
             f"({dt.name}{f', rtol {rtol:g}, atol {atol:g}' if rtol or atol else ''})"]
    if a_in.dtype != dt and a_in.dtype.kind == "f":
        lines.append(f"  note: {na} is {a_in.dtype.name}, compared after rounding to {dt.name}")
    for label, at in (("first", first), ("worst", worst)):
        av, ev = a[at], e[at]
        if np.isnan(av) != np.isnan(ev):
            which = na if np.isnan(av) else nb
            lines.append(f"  {label} at {list(at)}: {na} {_fmt(av, dt)} vs {nb} {_fmt(ev, dt)} -- only {which} is NaN "
                         "(a 0/0 guard: torchvision returns NaN for a zero union, detectron2/mmdet/TF give 0)")
        else:
            rel = absdiff[at] / abs(float(ev)) if float(ev) != 0 else np.inf
            lines.append(f"  {label} at {list(at)}: {na} {_fmt(av, dt)} vs {nb} {_fmt(ev, dt)} (difference "
                         f"{float(av) - float(ev):+.3g}, {d[at]:.3g} ULPs, relative {rel:.3g})")
        if label == "first" and first == worst:
            break
    n_nan = int((np.isnan(a) != np.isnan(e)).sum())
    if n_nan:
        lines.append(f"  {n_nan} element(s) are NaN on one side only")
    if op is not None and args is not None:
        variants = float_variants(op, tuple(args), kwargs, convention=convention, extra=extra)
        hits = [k for k, v in variants.items() if _reproduces(a, v, max_ulps)]
        if hits:
            lines.append(f"  refdet reproduces {na} (within {max_ulps} ULPs) with: " + "; ".join(hits[:6]))
            lines.append(f"  likely cause: {na} computes {op} with {hits[0]}")
        else:
            near = [(k, float(np.nanmax(np.where(np.isinf(ulp_distance(a, v, dt)), np.nan,
                                                  ulp_distance(a, v, dt)))) if v.shape == a.shape
                     and v.dtype.kind == "f" and v.size else np.inf) for k, v in variants.items()]
            near = [(k, s) for k, s in near if np.isfinite(s)]
            near.sort(key=lambda t: t[1])
            lines.append(f"  no refdet convention, knob or float64-math variant of {op} reproduces {na}"
                         + (f" (closest: {near[0][0]}, {near[0][1]:.3g} ULPs)" if near else ""))
            hits_ = [k for k, v in variants.items() if _reproduces(e, v, max_ulps) and not k.startswith("convention")]
            if hits_:
                lines.append(f"  ({nb} is also reproduced by: {'; '.join(hits_[:3])})")
    return "\n".join(lines)


def assert_allclose_ulp(actual, expected, *, max_ulps=4, rtol=0.0, atol=0.0, op=None, args=None, kwargs=None,
                        convention="torchvision", names=("actual", "expected"), extra=()):
    """Assert ``actual`` equals ``expected`` within ``max_ulps`` ULPs; explain the difference.

    Parameters
    ----------
    actual, expected : array_like
        Same shape. ``expected``'s dtype (float16/32/64) sets the precision ULPs are counted in.
    max_ulps : float
        0 asks for bit-exact results (what refdet's float32 mode gives against torchvision).
    rtol, atol : float
        Also accept ``|actual - expected| <= atol + rtol * |expected|`` (useful near 0, where ULPs
        are tiny).
    op : str, optional
        The refdet op both came from (``"box_iou"``, ``"generalized_box_iou"``, ``"encode_boxes"``,
        ``"decode_boxes"``, ``"pyramid_anchors"``, ``"sigmoid_focal_loss_forward"``...); with ``args``
        the message names the convention, knob or float64-math variant that reproduces ``actual``.
    args, kwargs : tuple, dict, optional
        The op's positional arguments and shared keyword options.
    convention : str
        The profile ``expected`` was computed with.
    names : (str, str)
    extra : sequence of (description, overrides)
        More keyword variants to try.

    Raises
    ------
    AssertionError
        How many elements differ, the first and the worst one (values, difference, ULPs, relative
        error), one-sided NaNs, and the refdet variants that reproduce ``actual``.
    """
    msg = explain_float_difference(actual, expected, max_ulps=max_ulps, rtol=rtol, atol=atol, op=op, args=args,
                                   kwargs=kwargs, convention=convention, names=names, extra=extra)
    if msg is not None:
        raise AssertionError(msg)
