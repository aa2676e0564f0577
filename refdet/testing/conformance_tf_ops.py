"""Conformance checks of TensorFlow's quantization and nn operators: ``FakeQuantWithMinMaxVars``,
``QuantizeV2``, ``Conv2D`` (SAME padding) and ``sigmoid_cross_entropy_with_logits`` (issue 15), and
the helpers every TF check shares (reading ``fn``'s answer, naming the variant that reproduces it).

Split out of :mod:`refdet.testing.conformance_tf`, which re-exports every check here, gathers them
in ``TF_CHECKS`` and documents the signature each check expects from ``fn``; import the checks from
there or from :mod:`refdet.testing.conformance`.
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish

__all__ = ["check_tf_fake_quant", "check_tf_quantize", "check_tf_conv2d", "check_tf_sigmoid_cross_entropy"]


# ---------------------------------------------------------------------------------------------------
# Helpers shared with refdet.testing.conformance_tf
# ---------------------------------------------------------------------------------------------------

def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy"):          # tf.Tensor
        x = x.numpy()
    return np.asarray(x)




def _likely(variants, got, equal):
    """The first line naming a variant that reproduces ``got`` (or nothing)."""
    hits = [name for name, make in variants if _try_equal(make, got, equal)]
    if not hits:
        return ["  no single known variant reproduces it"]
    return [f"  likely cause: the implementation behaves like TF's kernel with {hits[0]}"] + \
        ([f"  (also reproduced by: {'; '.join(hits[1:4])})"] if len(hits) > 1 else [])


def _try_equal(make, got, equal):
    try:
        return equal(got, make())
    except Exception:                   # a variant that is undefined for this case reproduces nothing
        return False


def _ulps(a, b):
    """Largest distance in units in the last place of ``b``'s dtype between two equal-shape arrays."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b)
    if a.size == 0:
        return 0.0
    spacing = np.spacing(np.abs(b).astype(b.dtype)).astype(np.float64)
    spacing[spacing == 0] = np.finfo(b.dtype).smallest_subnormal
    return float(np.max(np.abs(a - b.astype(np.float64)) / spacing))


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a.astype(b.dtype), b, equal_nan=True)


# ---------------------------------------------------------------------------------------------------
# FakeQuantWithMinMaxVars, QuantizeV2
# ---------------------------------------------------------------------------------------------------

def _fq_variants(x, mn, mx, nb, nr):
    from refdet.tf_ops import quant as q

    F = np.float32
    qmin, qmax = (1 if nr else 0), (1 << nb) - 1

    def raw_range(rounding):           # no nudging: the grid starts at min itself
        s = (F(mx) - F(mn)) / F(qmax - qmin)
        v = (np.clip(x, F(mn), F(mx)) - F(mn)) / s
        r = np.floor(v + F(0.5)) if rounding == "half_up" else np.rint(v)
        return r * s + F(mn)

    def half_even():
        nmin, nmax, s, inv = q.nudge(mn, mx, qmin, qmax)
        v = np.maximum(np.minimum(x, nmax), nmin) - nmin
        return np.rint(v / s - np.floor(-nmin * inv + F(0.5))) * s
    return [
        ("the range not nudged (zero may fall between two grid points)", lambda: raw_range("half_up")),
        ("the range not nudged, ties to even", lambda: raw_range("half_even")),
        ("ties rounded to even instead of floor(v + 0.5)", half_even),
        ("the pre-quant_zero kernel: floor(v * (1 / scale) + 0.5) * scale + nudged_min (legacy=True)",
         lambda: q.fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=nr, legacy=True)),
        ("narrow_range flipped", lambda: q.fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=not nr)),
        ("a multiplication by inv_scale (FakeQuantWithMinMaxArgs' order)",
         lambda: q.fake_quant_with_min_max_args(x, mn, mx, num_bits=nb, narrow_range=nr)
         if not (mn == 0 and mx == 0) else None),
    ]


def _fq_golden():
    f = np.float32
    # [-1, 1] with 255 steps: scale 2/255, zero point 127.5 -> 128 (std::round, halves away): nudged
    # range [-128, 127] * 2/255; -1 clamps to -256/255
    x = np.array([-2, -1, -0.5, 0, 1 / 255, 0.5, 1, 2], f)
    return [
        ("symmetric range, zero point nudged", (x, -1.0, 1.0, 8, False)),
        ("narrow range", (x, -1.0, 1.0, 8, True)),
        ("min == max == 0 gives zeros", (x, 0.0, 0.0, 8, False)),
        ("range not containing zero", (x, 0.25, 1.5, 4, False)),
        ("16 bits", (x, -6.0, 6.0, 16, False)),
    ]


def _fq_cases():
    from hypothesis import strategies as st

    from refdet.testing.strategies_tf import flush_subnormals

    @st.composite
    def cases(draw):
        n = draw(st.integers(0, 40))
        nb = draw(st.integers(2, 16))
        mn = draw(st.one_of(st.sampled_from([0.0, -1.0, -6.0]), st.floats(-8, 0, width=32)))
        mx = draw(st.one_of(st.sampled_from([1.0, 6.0, 0.5]), st.floats(0.0009765625, 8, width=32)))
        mn = 0.0 if mn > -1e-20 else mn          # no subnormal scale: TF flushes it (FTZ)
        scale = (mx - mn) / ((1 << nb) - 1)
        # values on the grid, half-way between grid points (the rounding ties) and anywhere
        grid = st.integers(-(1 << nb), 1 << nb).map(lambda k: mn + k * scale * 0.5)
        vals = draw(st.lists(st.one_of(grid, st.floats(-10, 10, width=32)), min_size=n, max_size=n))
        return (flush_subnormals(np.array(vals, np.float32)), float(np.float32(mn)), float(np.float32(mx)), nb,
                draw(st.booleans()))
    return cases()


def _fq_compare(fn, grad):
    from refdet.tf_ops import quant as q

    def compare(case):
        x, mn, mx, nb, nr = case
        ref = q.fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=nr)
        got = _np(fn(x.copy(), mn, mx, nb, nr))
        if not _bits_equal(got, ref):
            err = _ulps(got, ref) if got.shape == ref.shape else np.inf
            lines = [f"fake-quantized values differ (up to {err:.3g} ulp)"]
            lines += _likely(_fq_variants(x, mn, mx, nb, nr), got, _bits_equal)
            return err, "\n".join(lines)
        if grad is None:
            return 0.0, None
        dy = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
        r = q.fake_quant_with_min_max_vars_gradient(dy, x, mn, mx, num_bits=nb, narrow_range=nr)
        g = [_np(v) for v in grad(dy.copy(), x.copy(), mn, mx, nb, nr)]
        if not _bits_equal(g[0], r[0]):
            return np.inf, ("dx differs: the straight-through mask must be nudged_min <= x <= nudged_max, both "
                            "inclusive")
        # the range gradients are sums: TF's Eigen reduction order is not reproduced, allow its rounding
        nmin, nmax = (0.0, 0.0) if mn == 0 and mx == 0 else q.nudge(mn, mx, 1 if nr else 0, (1 << nb) - 1)[:2]
        for name, a, b, sel in (("dmin", g[1], r[1], x < nmin), ("dmax", g[2], r[2], x > nmax)):
            tol = 4 * np.finfo(np.float32).eps * (float(np.abs(dy[sel]).sum()) + 1e-30)
            if not abs(float(a) - float(b)) <= tol:
                return float(abs(float(a) - float(b))), (f"{name} = {float(a)!r}, refdet {float(b)!r}: the sum of the "
                                                         f"gradients where x is {'below' if name == 'dmin' else 'above'} "
                                                         "the nudged range")
        return 0.0, None
    return compare


def check_tf_fake_quant(fn, *, grad=None, n_cases=80, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(inputs, min, max, num_bits, narrow_range)`` (and ``grad``) against
    :func:`refdet.tf_ops.fake_quant_with_min_max_vars` (TF ``FakeQuantWithMinMaxVars``): outputs and
    ``dx`` bit for bit, ``dmin``/``dmax`` to a float32 sum's rounding.
    """
    r = _Runner("tf_fake_quant", "ulps", "tf", _fq_compare(fn, grad), progress)
    return _finish(r.run(_fq_golden(), _fq_cases(), n_cases, seed), raise_on_failure)


def _quantize_golden():
    f = np.float32
    x = np.array([-3, -1.5, -0.5, 0, 0.5, 1.5, 2.5, 3.1], f)
    out = []
    for T in ("quint8", "qint8"):
        for mode, rm in (("MIN_COMBINED", "HALF_AWAY_FROM_ZERO"), ("MIN_FIRST", "HALF_AWAY_FROM_ZERO"),
                         ("SCALED", "HALF_AWAY_FROM_ZERO"), ("SCALED", "HALF_TO_EVEN")):
            out.append((f"{T} {mode} {rm}", (x, -2.0, 3.0, T, mode, rm, False)))
    out.append(("qint8 SCALED narrow_range", (x, -2.0, 3.0, "qint8", "SCALED", "HALF_TO_EVEN", True)))
    # a range narrower than ensure_minimum_range: widened to min_range + 0.01
    out.append(("tiny range widened", (x, 0.0, 0.0, "quint8", "MIN_COMBINED", "HALF_AWAY_FROM_ZERO", False)))
    return out


def _quantize_cases():
    from hypothesis import strategies as st

    from refdet.testing.strategies_tf import flush_subnormals

    @st.composite
    def cases(draw):
        T = draw(st.sampled_from(["quint8", "qint8", "quint16", "qint16"]))
        mode = draw(st.sampled_from(["MIN_COMBINED", "MIN_FIRST", "SCALED"]))
        rm = draw(st.sampled_from(["HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN"])) if mode == "SCALED" else \
            "HALF_AWAY_FROM_ZERO"
        nr = draw(st.booleans()) if mode == "SCALED" else False
        mn = draw(st.one_of(st.sampled_from([0.0, -1.0, -2.0]), st.floats(-8, 0, width=32)))
        mx = draw(st.one_of(st.sampled_from([0.0, 1.0, 3.0]), st.floats(0, 8, width=32)))
        mn, mx = (0.0 if abs(mn) < 1e-20 else mn), (0.0 if abs(mx) < 1e-20 else mx)   # TF flushes subnormals
        if mode == "SCALED" and T.startswith("qu"):
            mx = max(mx, 0.5)          # else scale FLT_MAX, output_min 1/FLT_MAX: subnormal, flushed by TF
        n = draw(st.integers(0, 40))
        halves = st.integers(-40, 40).map(lambda k: k * 0.125)
        vals = draw(st.lists(st.one_of(halves, st.floats(-10, 10, width=32)), min_size=n, max_size=n))
        return flush_subnormals(np.array(vals, np.float32)), float(mn), float(mx), T, mode, rm, nr
    return cases()


def _quantize_compare(fn):
    from refdet.tf_ops import quant as q

    def compare(case):
        x, mn, mx, T, mode, rm, nr = case
        ref = q.quantize_v2(x, mn, mx, T, mode=mode, round_mode=rm, narrow_range=nr)
        got = [_np(v) for v in fn(x.copy(), mn, mx, T, mode, rm, nr)]
        same = (got[0].shape == ref.output.shape and np.array_equal(got[0].astype(np.int64), ref.output.astype(np.int64))
                and _bits_equal(got[1], ref.output_min) and _bits_equal(got[2], ref.output_max))
        if same:
            return 0.0, None
        d = (np.abs(got[0].astype(np.int64) - ref.output.astype(np.int64)).max()
             if got[0].shape == ref.output.shape and got[0].size else 0)
        head = f"integers differ by up to {d}" if d else "the integers agree"
        lines = [f"{T} {mode} {rm}: {head}; output range ({got[1]}, {got[2]}), refdet "
                 f"({ref.output_min}, {ref.output_max})"]
        others = [(f"round_mode={o}", lambda o=o: q.quantize_v2(x, mn, mx, T, mode=mode, round_mode=o,
                                                                  narrow_range=nr))
                  for o in ("HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN") if o != rm and mode == "SCALED"]
        others += [(f"mode={m}", lambda m=m: q.quantize_v2(x, mn, mx, T, mode=m)) for m in q.QUANTIZE_MODES
                   if m != mode]
        if mode == "SCALED":
            others.append(("narrow_range flipped", lambda: q.quantize_v2(x, mn, mx, T, mode=mode, round_mode=rm,
                                                                         narrow_range=not nr)))
        why = _likely(others, got, lambda g, r: g[0].shape == r.output.shape and
                      np.array_equal(g[0].astype(np.int64), r.output.astype(np.int64)))
        if why[0].startswith("  no single") and T in ("quint8", "qint8") and (
                (mode == "SCALED" and rm == "HALF_TO_EVEN") or (mode == "MIN_FIRST" and T == "quint8")):
            why = ["  likely cause: TF ran oneDNN's _MklQuantizeV2 instead of the reference QuantizeV2 kernel "
                   "(TF_ENABLE_ONEDNN_OPTS was not 0 when TF was imported)"]
        return float(d) if d else np.inf, "\n".join(lines + why)
    return compare


def check_tf_quantize(fn, *, n_cases=100, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(inputs, min_range, max_range, T, mode, round_mode, narrow_range) -> (output,
    output_min, output_max)`` against :func:`refdet.tf_ops.quantize_v2` (TF's reference ``QuantizeV2``
    kernel): the integers and the output range exactly.
    """
    r = _Runner("tf_quantize", "steps", "tf", _quantize_compare(fn), progress)
    return _finish(r.run(_quantize_golden(), _quantize_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# Conv2D (SAME padding), sigmoid_cross_entropy_with_logits
# ---------------------------------------------------------------------------------------------------

def _close(got, ref, scale, rtol):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return np.inf
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref) / (rtol * (scale + 1e-300))))


def _conv_golden():
    x = np.arange(1 * 5 * 5 * 1, dtype=np.float64).reshape(1, 5, 5, 1)
    w = np.ones((2, 2, 1, 1))
    return [
        # SAME, stride 2 on 5 pixels: out 3, pad total (3-1)*2 + 2 - 5 = 1: the one pixel goes after
        ("SAME stride 2, even kernel", (x, w, (2, 2), "SAME", (1, 1))),
        ("SAME stride 1, even kernel", (x, w, (1, 1), "SAME", (1, 1))),
        ("SAME 3x3 stride 2", (x, np.ones((3, 3, 1, 1)), (2, 2), "SAME", (1, 1))),
        ("VALID", (x, w, (2, 1), "VALID", (1, 1))),
        ("SAME dilated", (x, np.ones((2, 2, 1, 1)), (1, 1), "SAME", (2, 2))),
    ]


def _conv_cases():
    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        B, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        H, W = draw(st.integers(1, 8)), draw(st.integers(1, 8))
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        dil = draw(st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2)]))
        stride = (1, 1) if dil != (1, 1) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        pad = draw(st.sampled_from(["SAME", "SAME", "VALID"]))
        if pad == "VALID" and (H < (kh - 1) * dil[0] + 1 or W < (kw - 1) * dil[1] + 1):
            pad = "SAME"
        seed = draw(st.integers(0, 2 ** 16))
        g = np.random.default_rng(seed)
        return g.standard_normal((B, H, W, C)), g.standard_normal((kh, kw, C, F)), stride, pad, dil
    return cases()


def _conv_compare(fn, grad):
    from refdet.tf_ops import nn

    def compare(case):
        x, w, s, pad, d = case
        ref = nn.conv2d(x, w, s, pad, dilations=d)
        got = _np(fn(x.copy(), w.copy(), s, pad, d))
        scale = float(np.abs(x).max() * np.abs(w).sum()) if x.size and w.size else 1.0
        err = _close(got, ref, scale, 1e-13)
        if err > 1:
            lines = [f"Conv2D {pad} stride {s} dilation {d}: output shape {got.shape}, refdet {ref.shape}"
                     if got.shape != ref.shape else f"Conv2D {pad} stride {s} dilation {d} differs"]
            from refdet import layers as L

            def torch_like(p):
                y, _ = L.conv2d_forward(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), None, stride=s, padding=p,
                                        dilation=d)
                return y.transpose(0, 2, 3, 1)
            variants = [("the odd padding pixel before instead of after (ONNX SAME_LOWER)",
                         lambda: torch_like("same_lower")),
                        ("symmetric padding k // 2 (PyTorch padding=k//2)",
                         lambda: torch_like((w.shape[0] // 2 * d[0], w.shape[1] // 2 * d[1]))),
                        ("VALID padding", lambda: nn.conv2d(x, w, s, "VALID", dilations=d))]
            lines += _likely(variants, got, lambda g, r: _close(g, r, scale, 1e-13) <= 1)
            return err, "\n".join(lines)
        if grad is not None and d == (1, 1):
            dy = np.random.default_rng(1).standard_normal(ref.shape)
            r = nn.conv2d_backprop(x, w, dy, s, pad)
            gi, gw = (_np(v) for v in grad(x.copy(), w.copy(), s, pad, d, dy.copy()))
            e2 = max(_close(gi, r.dinput, float(np.abs(dy).sum() * np.abs(w).max() + 1), 1e-13),
                     _close(gw, r.dfilters, float(np.abs(dy).sum() * np.abs(x).max() + 1), 1e-13))
            if e2 > 1:
                return e2, "Conv2D gradients differ (dinput or dfilters)"
        return 0.0, None
    return compare


def check_tf_conv2d(fn, *, grad=None, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(input, filters, strides, padding, dilations)`` (and ``grad``) against
    :func:`refdet.tf_ops.conv2d` (TF ``Conv2D``, NHWC/HWIO) in float64, to 1e-13 of the sum of
    magnitudes (the GEMM's summation order is not reproduced); the point is the padding geometry.
    ``worst_error`` in units of that tolerance.
    """
    r = _Runner("tf_conv2d", "tol", "tf", _conv_compare(fn, grad), progress)
    return _finish(r.run(_conv_golden(), _conv_cases(), n_cases, seed), raise_on_failure)


def _sce_golden():
    out = []
    for dt in (np.float32, np.float64):
        z = np.array([0, -0.0, 1, -1, 30, -30, 100, -100, 1e-8], dt)
        t = np.array([0, 1, 0.5, 1, 0, 1, 1, 0, 0.25], dt)
        out.append((f"kink at 0, saturation ({np.dtype(dt).name})", (t, z)))
    return out


def _sce_cases():
    from hypothesis import strategies as st

    from refdet.testing.strategies_tf import flush_subnormals

    @st.composite
    def cases(draw):
        n = draw(st.integers(0, 30))
        dt = draw(st.sampled_from([np.float32, np.float64]))
        z = draw(st.lists(st.one_of(st.sampled_from([0.0, -0.0, 88.0, -88.0, 20.0]), st.floats(-100, 100, width=32)),
                          min_size=n, max_size=n))
        t = draw(st.lists(st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0, 1, width=32)), min_size=n,
                          max_size=n))
        return flush_subnormals(np.array(t, dt)), flush_subnormals(np.array(z, dt))
    return cases()


def _sce_compare(fn, grad):
    from refdet.tf_ops import nn

    def compare(case):
        t, z = case
        ref = nn.sigmoid_cross_entropy_with_logits(t, z)
        got = _np(fn(t.copy(), z.copy()))
        eps = np.finfo(z.dtype).eps
        # TF's exp / log1p are Eigen's: a few ulps of the terms |x| + |x z| + log1p(exp(-|x|))
        scale = np.abs(z) + np.abs(z * t) + 1
        if got.shape != ref.shape or not np.all(np.abs(got.astype(np.float64) - ref) <= 8 * eps * scale):
            err = _close(got, ref, float(scale.max()) if scale.size else 1.0, 8 * eps)
            variants = [("the naive log(1 + exp(-x)) + x (1 - z) (overflows for large |x|)",
                         lambda: np.log1p(np.exp(-z)) + z * (1 - t)),
                        ("-(z log(sigmoid(x)) + (1 - z) log(1 - sigmoid(x))) through the probabilities",
                         lambda: -(t * np.log(1 / (1 + np.exp(-z))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-z)))))]
            lines = ["sigmoid cross entropy differs"]
            lines += _likely(variants, got, lambda g, r: g.shape == r.shape and np.allclose(g, r, rtol=8 * eps,
                                                                                             equal_nan=True))
            return err, "\n".join(lines)
        if grad is None:
            return 0.0, None
        dl = np.random.default_rng(0).standard_normal(z.shape).astype(z.dtype)
        r = nn.sigmoid_cross_entropy_with_logits_grad(t, z, dl)
        g = _np(grad(t.copy(), z.copy(), dl.copy()))
        gscale = np.abs(dl) * (1 + np.abs(t))
        if g.shape != r.shape or not np.all(np.abs(g.astype(np.float64) - r) <= 8 * eps * gscale):
            bad = np.flatnonzero(~(np.abs(g.astype(np.float64) - r) <= 8 * eps * gscale)) if g.shape == r.shape else []
            at0 = len(bad) and np.all(z.ravel()[bad] == 0)
            msg = "dlogits differs" + (" only at logits == 0: the gradient there is sigmoid(0) - z = 0.5 - z "
                                       "(a relu/abs subgradient of 0 gives -z instead)" if at0 else "")
            return _close(g, r, float(gscale.max()) if gscale.size else 1.0, 8 * eps), msg
        return 0.0, None
    return compare


def check_tf_sigmoid_cross_entropy(fn, *, grad=None, n_cases=80, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(labels, logits)`` (and ``grad(labels, logits, dloss)``) against
    :func:`refdet.tf_ops.sigmoid_cross_entropy_with_logits`, float32 and float64, to 8 epsilons of the
    terms' magnitude (TF's Eigen ``exp``/``log1p`` are not glibc's).
    """
    r = _Runner("tf_sigmoid_cross_entropy", "tol", "tf", _sce_compare(fn, grad), progress)
    return _finish(r.run(_sce_golden(), _sce_cases(), n_cases, seed), raise_on_failure)
