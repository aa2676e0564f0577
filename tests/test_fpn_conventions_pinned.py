"""Pins of refdet.fpn's convention values the coverage run's tests did not catch
(mutation/convention_coverage.md): the init law, P6 read from the top lateral, and the equivalence of
``fpn_init``'s 'auto' and 'c5' (and 'p5' and 'lateral'): init only sizes the P6 weight from them.
"""
import numpy as np
import pytest

from refdet import layers
from refdet.fpn import fpn_forward, fpn_init


def test_fpn_init_kaiming_vs_xavier_bounds():
    # kaiming_uniform(a=1): U(+-sqrt(3 / fan_in)); xavier_uniform: U(+-sqrt(6 / (fan_in + fan_out))).
    # The 1x1 lateral of C = 2048 -> F = 64: sqrt(3 / 2048) = 0.0383 vs sqrt(6 / 2112) = 0.0533;
    # 131072 draws reach within 0.1% of the bound
    for init, bound in (("kaiming_uniform_a1", (3 / 2048) ** 0.5), ("xavier_uniform", (6 / (2048 + 64)) ** 0.5)):
        p = fpn_init([2048], 64, extra_blocks="none", init=init, rng=np.random.default_rng(0))
        m = np.abs(p["inner_blocks.0.0.weight"]).max()
        assert 0.999 * bound < m <= bound, (init, m, bound)
    for conv, bound in (("torchvision", (3 / 2048) ** 0.5), ("mmdet", (6 / (2048 + 64)) ** 0.5)):
        m = np.abs(fpn_init([2048], 64, extra_blocks="none", convention=conv,
                            rng=np.random.default_rng(0))["inner_blocks.0.0.weight"]).max()
        assert 0.999 * bound < m <= bound, (conv, m, bound)


@pytest.mark.parametrize("a, b", [("auto", "c5"), ("p5", "lateral")])
def test_fpn_init_p6_sources_with_one_shape_are_one_function(a, b):
    pa = fpn_init([8, 16], 4, p6p7_input=a, rng=np.random.default_rng(3))
    pb = fpn_init([8, 16], 4, p6p7_input=b, rng=np.random.default_rng(3))
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert pa["extra_blocks.p6.weight"].shape[1] == (16 if a == "auto" else 4)


def test_fpn_forward_p6_from_the_top_lateral():
    # mmdet add_extra_convs="on_lateral": P6 = conv3x3/2(lateral of C5) with lateral = conv1x1(C5);
    # 'p5' reads the 3x3 output of that lateral instead
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(1, 8, 8, 8)), rng.normal(size=(1, 16, 4, 4))]
    p = fpn_init([8, 16], 4, p6p7_input="lateral", rng=np.random.default_rng(1))
    p = {k: v + 0.1 if k.endswith("bias") else v for k, v in p.items()}
    lat, _ = layers.conv2d_forward(feats[1], p["inner_blocks.1.0.weight"], p["inner_blocks.1.0.bias"])
    want, _ = layers.conv2d_forward(lat, p["extra_blocks.p6.weight"], p["extra_blocks.p6.bias"], stride=2, padding=1)
    outs = fpn_forward(p, feats, p6p7_input="lateral")[0]
    got = outs[2] if isinstance(outs, (list, tuple)) else list(outs.values())[2]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    outs5 = fpn_forward(p, feats, p6p7_input="p5")[0]
    got5 = outs5[2] if isinstance(outs5, (list, tuple)) else list(outs5.values())[2]
    assert not np.allclose(got5, want)
