"""Tests of refdet.testing.check_gradients: it passes correct backwards and catches wrong ones."""
from typing import NamedTuple

import numpy as np
import pytest

from refdet.layers import conv2d_backward, conv2d_forward, relu_backward, relu_forward
from refdet.testing import check_gradients
from refdet.testing.gradcheck import GradCheckReport


def test_passes_a_correct_backward_and_reports():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    rep = check_gradients(conv2d_forward, conv2d_backward, (x, w, b), kwargs={"padding": 1}, rng=0)
    assert isinstance(rep, GradCheckReport) and rep.ok
    assert set(rep.per_input) == {"x", "w", "b"}
    assert rep.per_input["x"]["n"] == x.size and rep.per_input["w"]["n"] == w.size
    assert "passed" in str(rep)


def test_catches_relu_derivative_one_at_zero():
    # At x = 0 the central difference gives dy/2 (the mean of the one-sided slopes 0 and 1), so a
    # backward using ReLU'(0) = 1 (analytic dy) is flagged at exactly that element. So is refdet's
    # correct ReLU'(0) = 0 (analytic 0): gradient checks must be run away from kinks, which is why
    # the layer tests move inputs off 0 first.
    x = np.array([[-1.0, 0.0, 2.0]])

    def bad_backward(dy, cache):
        return (np.where(cache.positive | (np.asarray(x) == 0), dy, 0.0),)

    with pytest.raises(AssertionError, match=r"x\[0, 1\].*analytic"):
        check_gradients(relu_forward, bad_backward, (x,), rng=0)
    rep = check_gradients(relu_forward, relu_backward, (x,), rng=0, raise_on_failure=False)
    assert not rep.ok and rep.worst.index == (0, 1) and rep.worst.analytic == 0.0
    assert abs(rep.worst.numeric - 0.0) > 0  # the numeric derivative at the kink is dy/2


def test_catches_a_scaled_gradient():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3))

    def scaled(dy, cache):
        g = conv2d_backward(dy, cache)
        return g._replace(dw=g.dw * 1.001)  # 0.1 % too large: far outside rtol = 1e-5

    with pytest.raises(AssertionError, match=r"worst element: w\["):
        check_gradients(conv2d_forward, scaled, (x, w), rng=0)
    rep = check_gradients(conv2d_forward, scaled, (x, w), rng=0, raise_on_failure=False)
    assert rep.per_input["x"]["ok"] and not rep.per_input["w"]["ok"]
    assert rep.worst.input.startswith("w") and 5e-4 < rep.worst.rel_error < 2e-3


def test_catches_missing_wrong_shape_and_wrong_dtype():
    x = np.linspace(-1, 1, 6).reshape(2, 3) + 0.05

    def fwd(x, y):
        return x * y, (x, y)

    def bwd_missing(d, c):
        return {"x": d * c[1]}

    with pytest.raises(AssertionError, match=r"no gradient for `y`"):
        check_gradients(fwd, bwd_missing, (x, x + 1), rng=0)
    with pytest.raises(AssertionError, match=r"has shape"):
        check_gradients(fwd, lambda d, c: (d * c[1], (d * c[0]).ravel()), (x, x + 1), rng=0)
    with pytest.raises(AssertionError, match=r"dtype float32"):
        check_gradients(fwd, lambda d, c: (d * c[1], (d * c[0]).astype(np.float32)), (x, x + 1), rng=0,
                        atol=1e-3, rtol=1e-3)


def test_catches_a_backward_that_writes_into_its_input():
    x = np.linspace(0.5, 2, 4)

    def fwd(x):
        return x ** 2, x

    def bwd(d, x):
        x[0] = 7.0  # writes into the float64 copy it was handed
        return (2 * d,)

    with pytest.raises(AssertionError, match=r"wrote into an input"):
        check_gradients(fwd, bwd, (x,), rng=0, atol=1e3)
    assert x[0] == 0.5  # the caller's array is untouched: check_gradients works on copies


def test_nested_inputs_dict_outputs_and_scalar_loss():
    # params dict + list of features -> dict of outputs; and a scalar loss with a plain-float output
    class Out(NamedTuple):
        a: np.ndarray
        idx: np.ndarray  # an int output: not differentiated, gets None upstream

    def fwd(params, feats, *, scale=2.0):
        a = scale * params["w"] * feats[0] + params["b"] * feats[1]
        return Out(a, np.argsort(a.ravel())), (params, feats, scale)

    def bwd(dout, cache):
        params, feats, scale = cache
        assert dout.idx is None
        d = dout.a
        return {"w": (scale * d * feats[0]).sum(0), "b": (d * feats[1]).sum(0)}, [scale * d * params["w"], d * params["b"]]

    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal(3), "b": rng.standard_normal(3)}
    feats = [rng.standard_normal((4, 3)), rng.standard_normal((4, 3))]
    rep = check_gradients(fwd, bwd, (params, feats), kwargs={"scale": 3.0}, rng=0)
    assert set(rep.per_input) == {"params['w']", "params['b']", "feats[0]", "feats[1]"}
    rep = check_gradients(fwd, bwd, (params, feats), rng=0, wrt=["params"])
    assert set(rep.per_input) == {"params['w']", "params['b']"}
    rep = check_gradients(fwd, bwd, (params, feats), rng=0, max_elements=2, wrt="feats[1]")
    assert rep.per_input == {"feats[1]": rep.per_input["feats[1]"]} and rep.per_input["feats[1]"]["n"] == 2

    def loss_fwd(x):
        return float(np.sum(x ** 3)), x

    def loss_bwd(dl, x):
        assert isinstance(dl, float)
        return 3 * x ** 2 * dl

    check_gradients(loss_fwd, loss_bwd, {"x": rng.standard_normal(5)}, rng=0)


def test_grads_map_and_float32_inputs_are_checked_in_float64():
    x32 = np.linspace(-1, 1, 5, dtype=np.float32) + np.float32(0.1)

    def fwd(x):
        assert x.dtype == np.float64  # check_gradients hands float64 copies to the forward
        return np.sin(x), x

    rep = check_gradients(fwd, lambda d, x: {"grad": d * np.cos(x)}, (x32,), grads_map=lambda g: [g["grad"]],
                          rng=0)
    assert rep.ok and rep.worst.rel_error < 1e-6


def test_bad_arguments():
    with pytest.raises(TypeError, match="`inputs`"):
        check_gradients(relu_forward, relu_backward, np.ones(3))
    with pytest.raises(ValueError, match="`eps`"):
        check_gradients(relu_forward, relu_backward, (np.ones(3),), eps=0)
    with pytest.raises(TypeError, match=r"\(out, cache\)"):
        check_gradients(lambda x: x, relu_backward, (np.ones(3),))


def test_gradcheck_all_runs_every_layer_case_and_reports_failures():
    from refdet.testing import gradcheck_all, register_gradcheck
    lines = []
    res = gradcheck_all(rng=0, out=lines.append)
    names = set(res)
    for layer in ("conv2d", "relu", "sigmoid", "upsample_nearest nearest-exact", "max_pool2d", "group_norm"):
        assert any(n.startswith(layer) for n in names), layer
    assert all(r.ok for r in res.values()), [str(r) for r in res.values() if not r.ok]
    assert len(lines) == len(res) and all(line.startswith("ok") for line in lines)

    # a registered wrong backward is reported (not raised), and so is a crashing one
    register_gradcheck("test: doubled square", lambda x: (x ** 2, x), lambda d, x: (4 * x * d,),
                       lambda r: ((r.standard_normal(3),), {}))
    register_gradcheck("test: crashing backward", lambda x: (x, x), lambda d, x: 1 / 0,
                       lambda r: ((r.standard_normal(3),), {}))
    try:
        res = gradcheck_all("test:", out=lines.append)
        assert set(res) == {"test: doubled square", "test: crashing backward"}
        assert not res["test: doubled square"].ok and abs(res["test: doubled square"].worst.rel_error - 0.5) < 1e-6
        assert not res["test: crashing backward"].ok and "ZeroDivisionError" in res["test: crashing backward"].problems[0]
        assert lines[-1].startswith("FAIL")
    finally:
        from refdet.testing import gradcheck as gc
        gc._CASES.pop("test: doubled square", None)
        gc._CASES.pop("test: crashing backward", None)
    with pytest.raises(TypeError, match="`name`"):
        register_gradcheck("", relu_forward, relu_backward, lambda r: ((np.ones(2),), {}))


def test_explicit_upstream_is_used():
    # the given upstream gradient reaches backward unchanged and defines J = sum(out * upstream)
    x = np.linspace(0.1, 1.0, 6).reshape(3, 2)
    up = np.zeros((3, 2))
    up[0] = 1.0
    seen = []

    def fwd(x):
        return x ** 2, x

    def bwd(d, x):
        seen.append(d)
        return (2 * x * d,)

    assert check_gradients(fwd, bwd, (x,), upstream=up).ok
    assert seen[0] is up
    with pytest.raises(AssertionError, match=r"x\[0, "):  # only row 0 carries gradient: the error is there
        check_gradients(fwd, lambda d, x: (3 * x * d,), (x,), upstream=up)
