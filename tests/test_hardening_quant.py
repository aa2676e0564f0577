"""Hardening of refdet.quant: arguments named, the right one blamed, sizes capped, no numpy text."""
import numpy as np
import pytest

import refdet
from refdet import quant as Q


@pytest.mark.parametrize("fn", [refdet.round_half_even, refdet.round_half_away, refdet.round_half_up])
def test_rounding_refuses_complex_bool_and_none(fn):
    for bad, err in [(np.array([1.5 + 1j]), TypeError), (np.array([True]), TypeError), (None, TypeError),
                     (np.array(["1.5"]), TypeError)]:
        with pytest.raises(err, match="`v` must be an array of"):
            fn(bad)
    assert fn(np.array([2.5])).dtype == np.float64


def test_fake_quant_qmax_is_blamed_not_zero_point():
    with pytest.raises(ValueError, match=r"\[`qmin`, `qmax`\]"):
        Q.fake_quant_forward(np.zeros(3), 1.0, 3, qmin=-128, qmax=-1)
    with pytest.raises(ValueError, match=r"`qmin`, `qmax`"):
        refdet.quantize(np.zeros(3), 0.1, 0, qmax=-1)


def test_fixed_point_broadcast_errors_name_arguments():
    with pytest.raises(ValueError, match=r"`a` and `b` must broadcast together"):
        Q.saturating_rounding_doubling_high_mul(np.arange(6), np.arange(2))
    with pytest.raises(ValueError, match=r"`x` and `exponent` must broadcast"):
        Q.rounding_divide_by_pot(np.arange(6), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"`x` and `multiplier` and `shift` must broadcast"):
        Q.multiply_by_quantized_multiplier(np.arange(6), np.array([1 << 30, 1 << 30]), -1)
    with pytest.raises(TypeError, match="`single_rounding` must be a bool"):
        Q.quantize_multiplier(0.5, single_rounding=np.array([True, False]))


def test_requantize_names_out_dtype_and_axis():
    acc = np.arange(24).reshape(2, 3, 4)
    with pytest.raises(TypeError, match="`out_dtype` must be an integer dtype"):
        Q.requantize(acc, np.array([0.1, 0.2, 0.3]), 3, axis=1, out_dtype="bogus")
    with pytest.raises(ValueError, match="`out_dtype` int8 cannot hold"):
        Q.requantize(acc, 0.1, 3, qmin=0, qmax=255, out_dtype=np.int8)
    with pytest.raises(ValueError, match="`multiplier` has 3 values \\(per-channel\\) but `axis` is None"):
        Q.requantize(acc, np.array([0.1, 0.2, 0.3]), 3)
    with pytest.raises(ValueError, match="`acc` and `multiplier` must broadcast"):
        Q.requantize(acc, np.array([[0.1, 0.2, 0.3]]), 3)


def test_quantize_weights_empty_channels():
    q = refdet.quantize_weights(np.zeros((0, 3, 3, 3)))
    assert q.q.shape == (0, 3, 3, 3) and q.scale.shape == (0,)


def test_observer_sizes_capped_and_ch_axis_message():
    with pytest.raises(ValueError, match="`bins` and `upsample_rate` ask for"):
        Q.HistogramObserver(2048, 10 ** 9)
    with pytest.raises(ValueError, match="`num_bins` asks for"):
        Q.PercentileObserver(99.0, 10 ** 9)
    with pytest.raises(ValueError, match="`num_grid` asks for"):
        Q.MSEObserver(10 ** 9)
    with pytest.raises(ValueError, match=r"`x` of shape \(5,\) has no axis `ch_axis` = 1"):
        Q.PerChannelMinMaxObserver(1).update(np.zeros(5))
