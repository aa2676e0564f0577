"""Hardening of the detector, the synthetic data, the walkthrough, plots, sampler and losses."""
import numpy as np
import pytest

import refdet
from refdet import detector as D
from refdet.plots import focal_loss_curve
from refdet.synthetic import make_synthetic_dataset
from refdet.walkthrough import anchors_report


def _det():
    return D.Detector("retinanet", image_size=(32, 32), num_classes=2, backbone_channels=(4, 4, 4, 4),
                      fpn_channels=4, head_convs=1)


def test_sgd_names_missing_and_malformed_entries():
    p = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    g = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    with pytest.raises(ValueError, match=r"`grads` must have the keys of `params`; missing \['w'\]"):
        D.sgd_momentum_update(p, {"b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"`params` must have the keys of `params`|unexpected"):
        D.sgd_momentum_update(p, g, {**g, "x": np.zeros(1)})
    with pytest.raises(ValueError, match=r"`grads\['w'\]` must have the shape of `params` \(3, 2\)"):
        D.sgd_momentum_update(p, {"w": np.ones((3, 2, 1)), "b": np.zeros(2)})
    with pytest.raises(TypeError, match="`velocity` must be a dict like `params`"):
        D.sgd_momentum_update(p, g, np.zeros(3))
    with pytest.raises(TypeError, match="`max_grad_norm` must be a real number"):
        D.sgd_momentum_update(p, g, max_grad_norm="1")


def test_backbone_sizes_capped_and_counts_checked():
    with pytest.raises(ValueError, match="`channels` and `in_channels` ask for"):
        D.backbone_init((10 ** 9, 4))
    with pytest.raises(ValueError, match=r"`channels\[0\]` must be >= 1"):
        D.backbone_init((0, 4))
    with pytest.raises(ValueError, match=r"`params` is missing 'stage0.weight'"):
        D.backbone_forward({"stage0.bias": np.zeros(4)}, np.zeros((1, 3, 8, 8)))
    p = D.backbone_init((4, 4), rng=0, dtype=np.float64)
    feats, caches = D.backbone_forward(p, np.zeros((1, 3, 16, 16)))
    with pytest.raises(ValueError, match="`dfeats` must have one entry per stage"):
        D.backbone_backward([], caches)


def test_detector_params_and_targets_named():
    d = _det()
    p = d.init(rng=0, dtype=np.float64)
    x = np.zeros((1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"`params` must have the keys .*missing \['backbone'\]"):
        d.forward({k: v for k, v in p.items() if k != "backbone"}, x)
    with pytest.raises(TypeError, match="`params` must be the dict init"):
        d.forward(None, x)
    with pytest.raises(TypeError, match="`targets` must be a list"):
        d.assign(None)
    with pytest.raises(TypeError, match=r"`targets\[0\]` must be a \(boxes, labels\) pair"):
        d.assign([None])
    with pytest.raises(ValueError, match="`nms_threshold` must"):
        d.detect(p, x, nms_threshold=1.5)
    with pytest.raises(TypeError, match="`dtype` must be a floating dtype"):
        d.init(dtype="bogus")


def test_synthetic_and_walkthrough_sizes_capped():
    with pytest.raises(ValueError, match="`n_images` and `image_size` ask for"):
        make_synthetic_dataset(10 ** 9, (32, 32))
    with pytest.raises(ValueError, match="`max_objects` and `n_images` ask for"):
        make_synthetic_dataset(2, (32, 32), max_objects=10 ** 9, min_size=4, max_size=12)
    with pytest.raises(ValueError, match="`image_size` asks for"):
        anchors_report("retinanet", (10 ** 9, 64))


def test_focal_loss_curve_domain():
    with pytest.raises(TypeError, match="`p_t`"):
        focal_loss_curve(None, 2.0)
    with pytest.raises(ValueError, match=r"`p_t` must lie in \(0, 1\]"):
        focal_loss_curve(np.array([0.0, 0.5]), 2.0)
    assert np.isfinite(focal_loss_curve(np.array([0.01, 1.0]), 2.0)).all()


def test_sampler_refuses_bool_labels():
    with pytest.raises(TypeError, match="`labels` must be numbers"):
        refdet.sample_balanced(np.array([True, False, True]), 2, 0.5, rng=0)


def test_cross_entropy_message_names_ignore_index():
    with pytest.raises(ValueError, match="`ignore_index`"):
        refdet.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, -1]), ignore_index=0)
