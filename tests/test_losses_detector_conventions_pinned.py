"""Pins of ``multibox_loss``'s convention values the coverage run's tests did not catch
(mutation/convention_coverage.md), and the one equivalence: ``zero_positive`` "max1" and "zero" are one
function (with no positive nothing is mined, so the sum divided by max(1, 0) is 0, the paper's 0).
"""
import numpy as np
import pytest

from refdet.losses.detector import multibox_loss_backward, multibox_loss_forward


def _batch(labels):
    rng = np.random.default_rng(11)
    P = len(labels)
    z = rng.normal(size=(1, P, 3))
    dl = rng.normal(size=(1, P, 4))
    targets = {"labels": np.array([labels]), "deltas": rng.normal(size=(1, P, 4))}
    return z, dl, targets


@pytest.mark.parametrize("cap, mined", [("none", 3), ("negatives", 2), ("priors_minus_one", 3)])
def test_mining_cap_with_a_fractional_ratio(cap, mined):
    # 1 positive, 5 negatives, neg_pos_ratio 2.5: Caffe/mmdet mine floor(2.5) = 2 negatives; torchvision
    # and ssd.pytorch keep the ranks < 2.5, i.e. 3 (the positive ranks last: -inf or 0 below every CE)
    z, dl, t = _batch([1, 0, 0, 0, 0, 0])
    _, cache = multibox_loss_forward(z, dl, t, neg_pos_ratio=2.5, mining_cap=cap)
    neg = cache.negatives[0] & ~cache.positives[0]
    assert int(neg.sum()) == mined
    # the mined ones are the hardest negatives (largest CE)
    ce = -np.log(np.exp(z[0]) / np.exp(z[0]).sum(-1, keepdims=True))[np.arange(6), 0]
    hardest = np.argsort(-ce[1:], kind="stable")[:mined] + 1
    assert sorted(np.flatnonzero(neg).tolist()) == sorted(hardest.tolist())


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 2, 0, 1], [-1, 0, 0, 0]])
@pytest.mark.parametrize("cap", ["none", "negatives", "priors_minus_one"])
def test_zero_positive_max1_and_zero_are_one_function(labels, cap):
    z, dl, t = _batch(labels)
    out = []
    for zp in ("max1", "zero"):
        loss, cache = multibox_loss_forward(z, dl, t, mining_cap=cap, zero_positive=zp)
        grads = multibox_loss_backward(1.0, cache)
        out.append((loss, grads))
    (l1, g1), (l2, g2) = out
    assert all(np.array_equal(a, b) for a, b in zip(l1, l2))
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))
    if not any(v > 0 for v in labels):
        assert float(l1.classification) == 0.0 and float(l1.box_regression) == 0.0
        loss, _ = multibox_loss_forward(z, dl, t, mining_cap=cap, zero_positive="nan")
        assert np.isnan(float(loss.classification))


@pytest.mark.parametrize("conv, kw, want", [
    # one positive anchor, box delta error 0.05, one background anchor (label K = 3), zero logits.
    # torchvision smooth L1 beta 1: 0.5 * 0.05^2 / 1, over 1 positive (no eps)
    ("torchvision", {}, 0.5 * 0.05 ** 2),
    # detectron2 beta 0 (L1): 0.05 (its EMA normalizer replaced by the positive count here)
    ("detectron2", {"normalizer": "num_pos"}, 0.05),
    # mmdet L1 over (1 + float32 eps)
    ("mmdet", {}, 0.05 / (1 + 2.0 ** -23)),
    # Detectron1 beta 0.11 over fg + 1 = 2
    ("caffe", {}, 0.5 * 0.05 ** 2 / 0.11 / 2),
    ("paper", {}, 0.5 * 0.05 ** 2 / 0.11 / (1 + 2.0 ** -23)),
])
def test_retinanet_box_loss_beta_and_normalizer(conv, kw, want):
    from refdet.losses.detector import retinanet_loss_forward

    z = np.zeros((1, 2, 3))
    d = np.array([[[0.05, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    t = {"labels": np.array([[1, 3]]), "deltas": np.zeros((1, 2, 4))}
    loss, _ = retinanet_loss_forward(z, d, t, convention=conv, **kw)
    np.testing.assert_allclose(float(loss.box_regression), want, rtol=1e-12)
