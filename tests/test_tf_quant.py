"""refdet.tf_ops.quant: TF fake quant (range nudging) and QuantizeV2 -- golden cases without TF,
then differential tests against TensorFlow's reference kernels (TF_ENABLE_ONEDNN_OPTS=0)."""
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refdet.testing import conformance_tf
from refdet.tf_ops.quant import (fake_quant_with_min_max_args, fake_quant_with_min_max_vars,
                                 fake_quant_with_min_max_vars_gradient, fake_quant_with_min_max_vars_per_channel,
                                 nudge, quantize_v2)

F = np.float32


def test_nudge_golden():
    # [-1, 1], 8 bits: the float32 scale 2/255 = 0.007843138 is a little above 2/255, so the zero point
    # from min, 1 / s = 127.49999, rounds to 127 (not 128): the nudged range is [-127 s, 128 s]
    nmin, nmax, s, inv = nudge(-1.0, 1.0, 0, 255)
    assert s == F(2) / F(255) and inv == F(255) / F(2)
    assert F(1) / s < F(127.5)
    assert nmin == F(-127) * s and nmax == F(128) * s
    # a range not containing 0 moves to contain it: zp_from_min = -0.25 / s < 0 -> zp = 0, [0, 15 s]
    nmin, nmax, s, _ = nudge(0.25, 1.5, 0, 15)
    assert nmin == 0 and nmax == F(15) * s
    # exactly representable: [-2, 2] on 4 steps (qmax 4 is not a TF range, the arithmetic is the same):
    # s = 1, zero point 2
    assert nudge(-2.0, 2.0, 0, 4)[:3] == (-2.0, 2.0, 1.0)


def test_fake_quant_golden():
    x = np.array([-2, -1, 0, 0.5, 1, 2], F)
    y = fake_quant_with_min_max_vars(x, -1.0, 1.0)
    s = F(2) / F(255)
    # clamped to the nudged range [-127 s, 128 s]; 0 stays exactly 0; every output is k * s
    assert y[0] == F(-127) * s and y[-1] == F(128) * s and y[2] == 0
    k = y.astype(np.float64) / float(s)
    assert np.allclose(k, np.round(k), atol=1e-3)
    assert fake_quant_with_min_max_vars(x, 0.0, 0.0).tolist() == [0] * 6
    # narrow range [1, 255]: 254 steps, s = 2/254 = 1/127, zero point 1 + 127 = 128: exactly [-1, 1]
    y = fake_quant_with_min_max_vars(x, -1.0, 1.0, narrow_range=True)
    assert y[0] == -1 and y[-1] == 1 and y[1] == -1
    # on an exactly representable grid (s = 0.25 from [-1, 2.75] with 15 steps) ties go up: floor(v + 0.5)
    t = np.array([0.125, -0.125, 0.375], F)
    assert fake_quant_with_min_max_vars(t, -1.0, 2.75, num_bits=4).tolist() == [0.25, 0.0, 0.5]


def test_fake_quant_gradient_golden():
    x = np.array([-2, -1, 0, 0.5, 1, 2], F)
    dy = np.array([1, 2, 3, 4, 5, 6], F)
    g = fake_quant_with_min_max_vars_gradient(dy, x, -1.0, 1.0)
    # nudged range [-0.99608, 1.00392]: -2 and -1 below, 2 above
    assert g.backprops_wrt_input.tolist() == [0, 0, 3, 4, 5, 0]
    assert g.backprop_wrt_min == 3 and g.backprop_wrt_max == 6


def test_quantize_golden():
    x = np.array([-3, -0.5, 0, 0.5, 1.5, 3], F)
    # SCALED qint8 on [-2, 3]: min side -128 / -2 = 64, max side 127 / 3 = 42.33 -> 42.33; range (-3.024, 3)
    r = quantize_v2(x, -2.0, 3.0, "qint8", mode="SCALED")
    s = F(127) / F(3)
    assert r.output_min == F(-128) / s and r.output_max == F(127) / s
    assert r.output.tolist() == [-127, -21, 0, 21, 64, 127]           # 1.5 * 42.33 = 63.5 -> 64 (away)
    assert quantize_v2(x, -2.0, 3.0, "qint8", mode="SCALED", round_mode="HALF_TO_EVEN").output[4] == 64
    # MIN_COMBINED quint8: s = 255 / 5 = 51, trunc((x + 2) * 51 + 0.5): -0.5 -> 76.5 + 0.5 = 77, 0 -> 102,
    # 0.5 -> 127.5 + 0.5 = 128 (halves up)
    assert quantize_v2(x, -2.0, 3.0, "quint8").output.tolist() == [0, 77, 102, 128, 179, 255]
    # MIN_FIRST quint8: round_away(x * 51) - round_away(-2 * 51) = round_away(x * 51) + 102:
    # -0.5 -> -25.5 -> -26 -> 76 (halves away from zero, not up)
    assert quantize_v2(x, -2.0, 3.0, "quint8", mode="MIN_FIRST").output.tolist() == [0, 76, 102, 128, 179, 255]
    # a zero range is widened by ensure_minimum_range: [0, 0.01]
    r = quantize_v2(x, 0.0, 0.0, "quint8")
    assert r.output_min == 0 and r.output_max == F(0.01)


def test_quantize_per_axis_equals_slices():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(F)
    mins, maxs = np.array([-1, -2, 0, -0.5], F), np.array([1, 0.5, 2, 0.5], F)
    r = quantize_v2(x, mins, maxs, "qint8", mode="SCALED", axis=1)
    for c in range(4):
        one = quantize_v2(x[:, c], mins[c], maxs[c], "qint8", mode="SCALED")
        assert np.array_equal(r.output[:, c], one.output) and r.output_min[c] == one.output_min


@pytest.mark.parametrize("call, match", [
    (lambda: quantize_v2(np.zeros(3), -1, 1, "qint8", mode="MIN_COMBINED", round_mode="HALF_TO_EVEN"),
     r"round_mode='HALF_TO_EVEN'.*TensorFlow's QuantizeV2"),
    (lambda: quantize_v2(np.zeros((2, 3)), np.zeros(3), np.ones(3), "quint8", mode="MIN_FIRST", axis=1),
     r"axis.*MIN_FIRST.*TensorFlow"),
    (lambda: quantize_v2(np.zeros(3), 1, -1), "max_range"),
    (lambda: quantize_v2(np.zeros(3), -1, 1, "qint32"), "T"),
    (lambda: quantize_v2(np.zeros(3), -1, 1, mode="SCALAR"), "mode"),
    (lambda: fake_quant_with_min_max_vars(np.zeros(3), 1.0, -1.0), "min"),
    (lambda: fake_quant_with_min_max_vars(np.zeros(3), -1.0, 1.0, num_bits=17), "num_bits"),
    (lambda: fake_quant_with_min_max_vars(np.zeros(3), -1.0, 1.0, narrow_range=1), "narrow_range"),
    (lambda: fake_quant_with_min_max_vars_per_channel(np.zeros((2, 3)), np.zeros(2), np.ones(2)), "min"),
    (lambda: fake_quant_with_min_max_vars_gradient(np.zeros(2), np.zeros(3), -1.0, 1.0), "gradients"),
])
def test_bad_input(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_conformance_names_the_variant():
    def no_nudge(x, mn, mx, nb, nr):
        qmin, qmax = (1 if nr else 0), (1 << nb) - 1
        if mn == 0 and mx == 0:
            return np.zeros_like(x)
        s = (F(mx) - F(mn)) / F(qmax - qmin)
        return np.floor((np.clip(x, F(mn), F(mx)) - F(mn)) / s + F(0.5)) * s + F(mn)
    rep = conformance_tf.check_tf_fake_quant(no_nudge, n_cases=10, raise_on_failure=False)
    assert not rep.ok and "not nudged" in rep.first_mismatch

    def away_always(x, mn, mx, T, mode, rm, nr):
        r = quantize_v2(x, mn, mx, T, mode=mode, narrow_range=nr)
        return r.output, r.output_min, r.output_max
    rep = conformance_tf.check_tf_quantize(away_always, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "round_mode=HALF_AWAY_FROM_ZERO" in rep.first_mismatch


def test_conformance_accepts_refdet():
    def fq(x, mn, mx, nb, nr):
        return fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=nr)

    def fq_grad(dy, x, mn, mx, nb, nr):
        return fake_quant_with_min_max_vars_gradient(dy, x, mn, mx, num_bits=nb, narrow_range=nr)
    assert conformance_tf.check_tf_fake_quant(fq, grad=fq_grad, n_cases=20).ok

    def qz(x, mn, mx, T, mode, rm, nr):
        return quantize_v2(x, mn, mx, T, mode=mode, round_mode=rm, narrow_range=nr)
    assert conformance_tf.check_tf_quantize(qz, n_cases=20).ok


# --------------------------------------------------------------------------------------------------
# differential tests against TensorFlow
# --------------------------------------------------------------------------------------------------

def _tf():
    # TF reads TF_ENABLE_ONEDNN_OPTS once, at import: the reference kernels, not oneDNN's
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    pytest.importorskip("tensorflow")
    from refdet.runtimes.tensorflow import require
    return require()


_ranges = st.tuples(st.one_of(st.sampled_from([0.0, -1.0]), st.floats(-8, 0, width=32)),
                    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 8, width=32)))
_values = st.lists(st.one_of(st.integers(-64, 64).map(lambda k: k / 16), st.floats(-10, 10, width=32)),
                   min_size=0, max_size=50).map(lambda v: np.array(v, F))


@given(_values, _ranges, st.integers(2, 16), st.booleans())
def test_fake_quant_equals_tensorflow(x, rng_, nb, nr):
    tf = _tf()
    from refdet.testing.strategies_tf import flush_subnormals
    x = flush_subnormals(x)
    mn, mx = flush_subnormals(np.array(rng_, F))
    if not (mn < mx or (mn == 0 and mx == 0)):
        return
    # a subnormal scale is refused (TF flushes it to zero: FTZ)
    assume((mn == 0 and mx == 0) or (mx - mn) / F((1 << nb) - 1) >= np.finfo(F).tiny)
    y = tf.raw_ops.FakeQuantWithMinMaxVars(inputs=x, min=mn, max=mx, num_bits=nb, narrow_range=nr).numpy()
    assert y.tobytes() == fake_quant_with_min_max_vars(x, mn, mx, num_bits=nb, narrow_range=nr).tobytes()
    dy = np.linspace(-1, 1, len(x)).astype(F)
    g = tf.raw_ops.FakeQuantWithMinMaxVarsGradient(gradients=dy, inputs=x, min=mn, max=mx, num_bits=nb,
                                                   narrow_range=nr)
    r = fake_quant_with_min_max_vars_gradient(dy, x, mn, mx, num_bits=nb, narrow_range=nr)
    assert g[0].numpy().tobytes() == r[0].tobytes()
    np.testing.assert_allclose([g[1].numpy(), g[2].numpy()], [r[1], r[2]], rtol=1e-6, atol=1e-6)
    if mn < mx:
        y = tf.raw_ops.FakeQuantWithMinMaxArgs(inputs=x, min=float(mn), max=float(mx), num_bits=nb,
                                               narrow_range=nr).numpy()
        assert y.tobytes() == fake_quant_with_min_max_args(x, mn, mx, num_bits=nb, narrow_range=nr).tobytes()
        xc = np.stack([x, -x], axis=1)
        mins, maxs = np.array([mn, mn / 2], F), np.array([mx, mx], F)
        y = tf.raw_ops.FakeQuantWithMinMaxVarsPerChannel(inputs=xc, min=mins, max=maxs, num_bits=nb,
                                                         narrow_range=nr).numpy()
        assert y.tobytes() == fake_quant_with_min_max_vars_per_channel(xc, mins, maxs, num_bits=nb,
                                                                        narrow_range=nr).tobytes()


@given(_values, _ranges, st.sampled_from(["quint8", "qint8", "quint16", "qint16"]),
       st.sampled_from(["MIN_COMBINED", "MIN_FIRST", "SCALED"]), st.booleans(), st.booleans())
def test_quantize_equals_tensorflow(x, rng_, T, mode, even, nr):
    tf = _tf()
    from refdet.runtimes.tensorflow import onednn_enabled
    from refdet.testing.strategies_tf import flush_subnormals
    x = flush_subnormals(x)
    rm = "HALF_TO_EVEN" if (even and mode == "SCALED") else "HALF_AWAY_FROM_ZERO"
    nr = nr and mode == "SCALED"
    if onednn_enabled() and T in ("qint8", "quint8") and (rm == "HALF_TO_EVEN" or (mode, T) == ("MIN_FIRST", "quint8")):
        pytest.skip("TF was imported with oneDNN on: _MklQuantizeV2 replaces the reference kernel here")
    tt = {"quint8": tf.quint8, "qint8": tf.qint8, "quint16": tf.quint16, "qint16": tf.qint16}[T]
    o = tf.raw_ops.QuantizeV2(input=x, min_range=F(rng_[0]), max_range=F(rng_[1]), T=tt, mode=mode, round_mode=rm,
                              narrow_range=nr)
    r = quantize_v2(x, rng_[0], rng_[1], T, mode=mode, round_mode=rm, narrow_range=nr)
    # a SCALED range with no usable side (quint8 and max_range 0) has scale FLT_MAX and a subnormal
    # output_min, which TF flushes to 0 (FTZ): the one documented difference
    assume(not (0 < abs(float(r.output_min)) < np.finfo(F).tiny))
    assert np.array_equal(o.output.numpy().astype(np.int64), r.output.astype(np.int64))
    assert o.output_min.numpy() == r.output_min and o.output_max.numpy() == r.output_max


def test_quantize_per_axis_equals_tensorflow():
    tf = _tf()
    x = np.random.default_rng(0).standard_normal((5, 3, 2)).astype(F) * 2
    mins, maxs = np.array([-1, -2, 0], F), np.array([1, 0.5, 2], F)
    for mode in ("MIN_COMBINED", "SCALED"):
        o = tf.raw_ops.QuantizeV2(input=x, min_range=mins, max_range=maxs, T=tf.qint16, mode=mode, axis=1)
        r = quantize_v2(x, mins, maxs, "qint16", mode=mode, axis=1)
        assert np.array_equal(o.output.numpy().astype(np.int64), r.output.astype(np.int64))
        assert np.array_equal(o.output_min.numpy(), r.output_min)


def test_verify_tensorflow_quant_ops_agree():
    _tf()
    from refdet.verify import run_target
    rows = run_target("tensorflow", ops=["tf_fake_quant", "tf_quantize"], n_cases=15)
    assert len(rows) == 2 and all(r["ok"] for r in rows), rows
