"""Conformance checks of the training ops: the sigmoid focal loss (forward and gradient), ReLU and
conv2d.

Import them from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS``).
"""
from __future__ import annotations

import math

import numpy as np

from refdet import _checks
from refdet.testing.conformance_core import _Runner, _finish, _np, _variant_cause

__all__ = ["check_focal_loss", "check_relu", "check_conv2d"]


# ---------------------------------------------------------------------------------------------------
# focal loss
# ---------------------------------------------------------------------------------------------------

def _loss_tol(dtype):
    return (1e-4, 1e-6) if np.dtype(dtype) == np.float32 else (1e-7, 1e-10)


def check_focal_loss(fn, *, grad=None, alpha=0.25, gamma=2.0, n_cases=100, seed=0, raise_on_failure=True,
                     progress=None):
    """Check a sigmoid focal loss (Lin et al. 2017) against :func:`refdet.sigmoid_focal_loss_forward`.

    Parameters
    ----------
    fn : callable
        ``fn(logits, targets) -> loss``, elementwise (``reduction="none"``), with your ``alpha`` and
        ``gamma``.
    grad : callable, optional
        ``grad(logits, targets, dloss) -> dlogits``: the gradient of ``sum(loss * dloss)``; compared
        with :func:`refdet.sigmoid_focal_loss_backward`.
    alpha, gamma : float
        What refdet uses (``alpha < 0`` disables the weighting, torchvision's rule).

    Agreement: ``|yours - refdet| <= atol + rtol * |refdet|`` with (rtol, atol) = (1e-7, 1e-10) for
    float64, (1e-4, 1e-6) for float32. A mismatch names the variant that reproduces yours (no α, α
    on the wrong class, no focusing term). ``worst_error`` is in ULPs.
    """
    from hypothesis import strategies as st

    from refdet.losses import sigmoid_focal_loss_backward, sigmoid_focal_loss_forward
    from refdet.testing.compare_floats import explain_float_difference, ulp_distance

    alpha = _checks.check_focal_alpha(alpha, "alpha")
    gamma = _checks.check_positive(gamma, "gamma", strict=False)
    from refdet.testing import strategies as rst

    extra = [("alpha=-1: no alpha weighting (alpha_t missing)", {"alpha": -1}),
             (f"alpha={1 - alpha:g}: alpha applied to the negatives instead of the positives", {"alpha": 1 - alpha}),
             ("gamma=0: no focusing term (1 - p_t)**gamma", {"gamma": 0.0}),
             ("gamma=1", {"gamma": 1.0})]

    def fwd(x, t, **kw):
        return sigmoid_focal_loss_forward(x, t, **kw)[0]

    def bwd(x, t, dloss, **kw):
        return sigmoid_focal_loss_backward(dloss, sigmoid_focal_loss_forward(x, t, **kw)[1]).dlogits

    def compare(case):
        x, t, dloss = case
        rtol, atol = _loss_tol(x.dtype)
        errs, msgs = [0.0], []
        for name, ours, theirs, args, f in (
                ("forward", lambda: fwd(x, t, alpha=alpha, gamma=gamma), lambda: fn(x.copy(), t.copy()), (x, t), fwd),
                ("gradient", lambda: bwd(x, t, dloss, alpha=alpha, gamma=gamma),
                 (lambda: grad(x.copy(), t.copy(), dloss.copy())) if grad is not None else None, (x, t, dloss), bwd)):
            if theirs is None:
                continue
            expected = np.asarray(ours())
            got = _np(theirs())
            m = explain_float_difference(got, expected, rtol=rtol, atol=atol, max_ulps=4,
                                         op=f"sigmoid focal loss {name}", args=None, names=("yours", "refdet"))
            if m is None:
                continue
            if got.shape == expected.shape and expected.size:
                errs.append(float(ulp_distance(got, expected, expected.dtype).max()))
                hits = _variant_cause("sigmoid_focal_loss", got, args, {"alpha": alpha, "gamma": gamma}, "torchvision",
                                      fn=f, extra=extra,
                                      equal=lambda a, b: a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol))
                m += "\n" + "\n".join(hits) if hits else ""
                bad = np.argwhere(~np.isclose(got, expected, rtol=rtol, atol=atol))
                if bad.size:
                    k = tuple(bad[0])
                    m += f"\n  at {list(map(int, k))}: logit {float(x[k])!r}, target {float(t[k])!r}"
            else:
                errs.append(math.inf)
            msgs.append(m)
        return max(errs), ("\n".join(msgs) if msgs else None)

    def with_dloss(x, t):
        rng = np.random.default_rng(x.size)
        return x, t, rng.standard_normal(x.shape).astype(x.dtype)

    x0 = np.array([[0.0, 0.0, 2.0, -2.0, 17.0, -17.0, 30.0, -30.0]] * 2)
    t0 = np.array([[1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]])
    golden = [
        # logit 0: p = 1/2; target 1: 0.25 * (1/2)^2 * ln 2 = 0.0433217; target 0: 0.75 * 0.25 * ln 2 = 0.1299651
        ("logits 0, +-2, saturating +-17 and +-30 (float64)", with_dloss(x0, t0)),
        ("the same, float32", with_dloss(x0.astype(np.float32), t0.astype(np.float32))),
        ("empty", with_dloss(np.zeros((0, 3)), np.zeros((0, 3)))),
    ]

    @st.composite
    def cases(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))
        x = draw(rst.logits(max_dims=2, max_side=6))
        t = draw(rst.binary_targets(x.shape))
        return with_dloss(x.astype(dt), t.astype(dt))

    r = _Runner("sigmoid_focal_loss", "ULPs", "torchvision", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------

def check_relu(fn, *, grad=None, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x) -> relu(x)`` and ``grad(x, dy) -> dx`` against :func:`refdet.relu_forward` /
    :func:`refdet.relu_backward`: exact equality (ReLU has no rounding). Inputs contain exact zeros
    (and -0.0): refdet, torch and every framework use the subgradient ReLU'(0) = 0; a mismatch
    confined to x == 0 says so."""
    from refdet.layers import relu_backward, relu_forward
    from refdet.testing import strategies as rst

    def compare(case):
        x, dy = case
        msgs, err = [], 0.0
        y = relu_forward(x)[0]
        got = _np(fn(x.copy()))
        if got.shape != y.shape or not np.array_equal(got, y):
            bad = np.argwhere(got != y) if got.shape == y.shape else None
            m = f"relu forward differs: shape {got.shape} vs {y.shape}"
            if bad is not None and bad.size:
                k = tuple(bad[0])
                m = (f"relu forward differs at {len(bad)} elements; first at {list(map(int, k))}: x = {float(x[k])!r}, "
                     f"yours {float(got[k])!r}, refdet {float(y[k])!r}")
            msgs.append(m)
            err = math.inf if bad is None else float(len(bad))
        if grad is not None:
            dx = relu_backward(dy, relu_forward(x)[1]).dx
            g = _np(grad(x.copy(), dy.copy()))
            if g.shape != dx.shape or not np.array_equal(g, dx):
                if g.shape != dx.shape:
                    msgs.append(f"relu gradient has shape {g.shape}; x has shape {dx.shape}")
                    err = math.inf
                else:
                    bad = g != dx
                    k = tuple(int(v) for v in np.argwhere(bad)[0])
                    m = (f"relu gradient differs at {int(bad.sum())} elements; first at {list(k)}: x = {float(x[k])!r}, "
                         f"dy = {float(dy[k])!r}, yours {float(g[k])!r}, refdet {float(dx[k])!r}")
                    zero = x == 0
                    if np.all(zero[bad]):
                        if np.array_equal(g[bad], dy[bad]):
                            m += ("\n  every difference is at x == 0 exactly, where yours passes dy through: "
                                  "ReLU'(0) = 1; refdet (and torch, TF, ONNX) use the subgradient ReLU'(0) = 0 "
                                  "(write `x > 0`, not `x >= 0`)")
                        else:
                            m += "\n  every difference is at x == 0 exactly: the subgradient at the kink differs " \
                                 "(refdet uses ReLU'(0) = 0)"
                    msgs.append(m)
                    err = max(err, float(bad.sum()))
        return err, ("\n".join(msgs) if msgs else None)

    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        x = draw(rst.feature_maps(grid=0.5, max_side=5))
        return x, np.random.default_rng(x.size).standard_normal(x.shape)

    xg = np.array([[-2.0, -0.0, 0.0, 0.5, 3.0, 0.0]])
    golden = [("exact zeros, -0.0 and both signs", (xg, np.array([[1.0, 2.0, 3.0, 4.0, 5.0, -6.0]])))]
    r = _Runner("relu", "elements", "torchvision", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)


def check_conv2d(fn, *, dtype=np.float64, n_cases=40, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(x, w, b, stride=, padding=, dilation=, groups=) -> y`` (NCHW, cross-correlation,
    PyTorch semantics) against :func:`refdet.conv2d_forward`.

    Inputs in ``dtype``; agreement within ``c * sum|x| * max|w|`` (the scale of the accumulation's
    rounding error) with c = 1e-10 for float64 and 1e-5 for float32 (refdet computes float32 in
    float32 too, but summation orders differ between kernels). A mismatch gives the output location (batch, channel, y, x) and recognises a flipped
    kernel (true convolution instead of cross-correlation). ``worst_error`` is the largest absolute
    difference.
    """
    from hypothesis import strategies as st

    from refdet.layers import conv2d_forward
    from refdet.testing import strategies as rst

    def compare(case):
        x, w, b, kw = case
        x, w = x.astype(dtype), w.astype(dtype)
        b = None if b is None else b.astype(dtype)
        y = conv2d_forward(x, w, b, **kw)[0]
        got = _np(fn(x.copy(), w.copy(), None if b is None else b.copy(), **kw))
        if got.shape != y.shape:
            return math.inf, f"output shape {got.shape}; refdet gives {y.shape} for {kw}"
        c = 1e-5 if np.dtype(dtype) == np.float32 else 1e-10
        tol = c * max(1.0, float(np.abs(x).sum() * np.abs(w).max()))
        diff = np.abs(got.astype(np.float64) - y)
        if not (diff > tol).any():
            return float(diff.max()) if diff.size else 0.0, None
        k = tuple(int(v) for v in np.unravel_index(int(np.argmax(diff)), diff.shape))
        m = (f"conv2d differs at {int((diff > tol).sum())} of {diff.size} outputs ({kw}); worst at (batch {k[0]}, "
             f"channel {k[1]}, y {k[2]}, x {k[3]}): yours {float(got[k])!r}, refdet {float(y[k])!r}")
        flipped = conv2d_forward(x, w[:, :, ::-1, ::-1].copy(), b, **kw)[0]
        if np.allclose(got, flipped, atol=tol):
            m += "\n  likely cause: yours flips the kernel (true convolution); PyTorch/ONNX conv is cross-correlation"
        return float(diff.max()), m

    @st.composite
    def cases(draw):
        cfg = draw(rst.conv_configs(max_side=7))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
        x = rng.standard_normal(cfg["x_shape"])
        w = rng.standard_normal(cfg["w_shape"])
        b = rng.standard_normal(cfg["w_shape"][0]) if draw(st.booleans()) else None
        kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
        return x, w, b, kw

    rng = np.random.default_rng(0)
    golden = [("3x3, padding 1, asymmetric kernel", (rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3)),
                                                     rng.standard_normal(3), dict(stride=1, padding=1, dilation=1, groups=1))),
              ("stride 2, groups 2, dilation 2", (rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((4, 2, 2, 3)),
                                                  None, dict(stride=2, padding=(1, 0), dilation=2, groups=2)))]
    r = _Runner("conv2d", "abs", "torchvision", compare, progress)
    return _finish(r.run(golden, cases(), n_cases, seed), raise_on_failure)
