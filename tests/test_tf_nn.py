"""refdet.tf_ops.nn: TF Conv2D (SAME padding geometry) and sigmoid_cross_entropy_with_logits --
golden cases and gradient checks without TF, then differential tests against TensorFlow."""
import math
import os

import numpy as np
import pytest
from hypothesis import given

from refdet.losses import bce_with_logits_forward
from refdet.testing import conformance_tf
from refdet.testing.conformance_tf import _conv_cases, _sce_cases
from refdet.tf_ops import (conv2d, conv2d_backprop, sigmoid_cross_entropy_with_logits,
                           sigmoid_cross_entropy_with_logits_grad)


def test_same_padding_puts_the_odd_pixel_after():
    # 5 pixels, kernel 2, stride 2: out ceil(5/2) = 3, pad total (3-1)*2 + 2 - 5 = 1 -> bottom/right
    x = np.arange(25, dtype=np.float64).reshape(1, 5, 5, 1)
    y = conv2d(x, np.ones((2, 2, 1, 1)), 2, "SAME")
    assert y.shape == (1, 3, 3, 1)
    # the last output row reads rows 4 and the zero pad: x[4, 0] + x[4, 1] = 20 + 21
    assert y[0, 2, 0, 0] == 41
    assert y[0, 0, 0, 0] == 0 + 1 + 5 + 6                 # no padding before
    # explicit padding (top 1, bottom 0) moves the pad before: the first window is [0, 0, x00, x01]
    e = conv2d(x, np.ones((2, 2, 1, 1)), 2, "EXPLICIT", explicit_paddings=[0, 0, 1, 0, 1, 0, 0, 0])
    assert e[0, 0, 0, 0] == 0


def test_conv_backprop_is_the_derivative():
    g = np.random.default_rng(0)
    x, w = g.standard_normal((1, 5, 4, 2)), g.standard_normal((3, 2, 2, 3))
    dy = g.standard_normal(conv2d(x, w, (2, 1), "SAME").shape)
    r = conv2d_backprop(x, w, dy, (2, 1), "SAME")
    h = 1e-6
    for arr, grad in ((x, r.dinput), (w, r.dfilters)):
        for idx in [(0, 0, 0, 0), tuple(s - 1 for s in arr.shape), (0, 1, 1, 1)]:
            a = arr.copy()
            a[idx] += h
            up = np.sum(conv2d(a if arr is x else x, a if arr is w else w, (2, 1), "SAME") * dy)
            a[idx] -= 2 * h
            dn = np.sum(conv2d(a if arr is x else x, a if arr is w else w, (2, 1), "SAME") * dy)
            assert math.isclose((up - dn) / (2 * h), grad[idx], rel_tol=1e-6, abs_tol=1e-8)


@pytest.mark.parametrize("call, match", [
    (lambda: conv2d(np.zeros((1, 3, 3, 1)), np.zeros((2, 2, 1, 1)), 1, "FULL"), "padding"),
    (lambda: conv2d(np.zeros((1, 3, 3, 1)), np.zeros((2, 2, 1, 1)), 1, "SAME", explicit_paddings=[0] * 8),
     r"explicit_paddings.*TensorFlow's Conv2D"),
    (lambda: conv2d(np.zeros((1, 3, 3, 1)), np.zeros((2, 2, 1, 1)), [2, 1, 1, 1], "SAME"), r"strides.*Conv2D"),
    (lambda: conv2d(np.zeros((1, 3, 3, 3)), np.zeros((2, 2, 2, 1)), 1, "SAME"), "channels"),
    (lambda: sigmoid_cross_entropy_with_logits(np.zeros(3), np.zeros(2)), "same shape"),
])
def test_bad_input(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_sigmoid_ce_golden():
    z = np.array([0.0, 0.0, 100.0, -100.0])
    t = np.array([0.0, 1.0, 1.0, 1.0])
    loss = sigmoid_cross_entropy_with_logits(t, z)
    # log 2 at 0; no overflow at +-100: max(x,0) - x z + log1p(exp(-|x|))
    np.testing.assert_allclose(loss, [math.log(2), math.log(2), math.log1p(math.exp(-100)), 100 + math.log1p(
        math.exp(-100))], rtol=1e-15)
    # the gradient at 0 is sigmoid(0) - z = 0.5 - z (cond = logits >= 0 is true there)
    assert sigmoid_cross_entropy_with_logits_grad(t, z)[:2].tolist() == [0.5, -0.5]


@given(_sce_cases())
def test_sigmoid_ce_equals_refdet_bce(case):
    t, z = case
    ours = sigmoid_cross_entropy_with_logits(t, z)
    ref, _ = bce_with_logits_forward(z, t, reduction="none")
    eps = np.finfo(z.dtype).eps
    assert np.all(np.abs(ours - ref) <= 4 * eps * (np.abs(z) + 1))
    g = sigmoid_cross_entropy_with_logits_grad(t, z)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    assert np.all(np.abs(g - (p - t)) <= 4 * eps * (1 + np.abs(t)))


def test_conformance_names_the_variant():
    from refdet import layers as L

    def torch_padding(x, w, s, pad, d):
        if pad == "VALID":
            return conv2d(x, w, s, pad, dilations=d)
        y, _ = L.conv2d_forward(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), None, stride=s,
                                padding="same_lower", dilation=d)
        return y.transpose(0, 2, 3, 1)
    rep = conformance_tf.check_tf_conv2d(torch_padding, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "SAME_LOWER" in rep.first_mismatch

    def kink(t, z, dl):
        g = sigmoid_cross_entropy_with_logits_grad(t, z, dl)
        return np.where(z == 0, -dl * t, g)
    rep = conformance_tf.check_tf_sigmoid_cross_entropy(sigmoid_cross_entropy_with_logits, grad=kink, n_cases=0,
                                                        raise_on_failure=False)
    assert not rep.ok and "0.5 - z" in rep.first_mismatch


# --------------------------------------------------------------------------------------------------
# differential tests against TensorFlow
# --------------------------------------------------------------------------------------------------

def _tf():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    pytest.importorskip("tensorflow")
    from refdet.runtimes.tensorflow import require
    return require()


@given(_conv_cases())
def test_conv2d_equals_tensorflow(case):
    tf = _tf()
    x, w, s, pad, d = case
    xt, wt = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([xt, wt])
        y = tf.nn.conv2d(xt, wt, strides=[1, *s, 1], padding=pad, dilations=[1, *d, 1])
        dy = np.random.default_rng(3).standard_normal(y.shape)
        loss = tf.reduce_sum(y * dy)
    ref = conv2d(x, w, s, pad, dilations=d)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12 * (np.abs(x).max() * np.abs(w).sum() + 1))
    if d == (1, 1):                      # TF's CPU backprop refuses dilations > 1
        gx, gw = tape.gradient(loss, [xt, wt])
        r = conv2d_backprop(x, w, dy, s, pad)
        np.testing.assert_allclose(gx.numpy(), r.dinput, rtol=1e-12, atol=1e-11)
        np.testing.assert_allclose(gw.numpy(), r.dfilters, rtol=1e-12, atol=1e-11)


@given(_sce_cases())
def test_sigmoid_ce_equals_tensorflow(case):
    tf = _tf()
    t, z = case
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(t), logits=zt)
        dl = np.linspace(-2, 2, len(z)).astype(z.dtype)
        s = tf.reduce_sum(loss * dl)
    eps = np.finfo(z.dtype).eps
    ours = sigmoid_cross_entropy_with_logits(t, z)
    assert np.all(np.abs(loss.numpy() - ours) <= 4 * eps * (np.abs(z) + np.abs(z * t) + 1))
    g = tape.gradient(s, zt).numpy()
    assert np.all(np.abs(g - sigmoid_cross_entropy_with_logits_grad(t, z, dl)) <= 8 * eps * np.abs(dl) * (1 + t))


def test_verify_tensorflow_nn_ops_agree():
    _tf()
    from refdet.verify import run_target
    rows = run_target("tensorflow", ops=["tf_conv2d", "tf_sigmoid_cross_entropy"], n_cases=10)
    assert len(rows) == 2 and all(r["ok"] for r in rows), rows
