"""Whole detectors: gradient check of a full train step (float64), loss going down, shapes, errors."""
import numpy as np
import pytest

from refdet.detector import Detector, sgd_momentum_update
from refdet.synthetic import make_synthetic_dataset


def _tiny(model):
    kw = dict(image_size=(32, 32), backbone_channels=(4, 6, 8, 8))
    if model == "retinanet":
        kw.update(fpn_channels=4, head_convs=1, anchor_sizes=((6,), (12,), (24,), (48,), (96,)))
    elif model == "rpn":
        kw.update(anchor_sizes=((6, 10, 16),))
    else:
        kw.update(anchor_sizes=((5, 8), (10, 16), (20, 30)))
    return Detector(model, **kw)


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "/"))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_train_step_gradients_match_central_differences(model):
    # float64 params; the assignment does not depend on the params and the RPN's sampler uses a
    # fixed seed, so the loss is a smooth function of the params away from ReLU kinks.
    det = _tiny(model)
    params = det.init(rng=1, dtype=np.float64)
    data = make_synthetic_dataset(2, (32, 32), max_objects=2, min_size=6, max_size=16, rng=2)
    images = data.images.astype(np.float64)
    targets = list(zip(data.boxes, data.labels))
    losses, grads = det.train_step(params, images, targets, rng=0)
    flat_p, flat_g = _flat(params), _flat(grads)
    assert flat_p.keys() == flat_g.keys()
    rng = np.random.default_rng(3)
    eps = 1e-6
    worst = 0.0
    for name, p in flat_p.items():
        g = flat_g[name]
        assert g.shape == p.shape and g.dtype == np.float64, name
        for idx in [tuple(rng.integers(0, s) for s in p.shape) for _ in range(3)]:
            def loss_at(delta):
                q = {k: ({kk: vv.copy() for kk, vv in v.items()}) for k, v in params.items()}
                part, key = name.split("/")
                q[part][key][idx] += delta
                return det.train_step(q, images, targets, rng=0)[0]["total"]
            num = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            err = abs(num - g[idx]) / max(1e-4, abs(num))
            worst = max(worst, err)
            assert abs(num - g[idx]) <= 1e-6 + 1e-4 * abs(num), (name, idx, g[idx], num)
    assert worst < 1e-4


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_a_few_steps_lower_the_loss(model):
    det = _tiny(model)
    params = det.init(rng=0)
    data = make_synthetic_dataset(4, (32, 32), max_objects=2, min_size=6, max_size=16, rng=1)
    targets = list(zip(data.boxes, data.labels))
    first = det.train_step(params, data.images, targets, rng=0)[0]["total"]
    v = None
    for _ in range(8):  # the same batch: the loss must fall
        _, g = det.train_step(params, data.images, targets, rng=0)
        params, v = sgd_momentum_update(params, g, v, lr=0.01 if model != "ssd" else 0.005)
    last = det.train_step(params, data.images, targets, rng=0)[0]["total"]
    assert last < first


def test_shapes_of_the_seed_rpn():
    # the seed's numbers on a 50x50 stride-16 map hold for refdet's RPN head layout too: 9 anchors
    det = Detector("rpn")
    assert det.num_anchors == [9]
    fs = det.feature_sizes[0]
    assert len(det.anchors) == fs[0] * fs[1] * 9


def test_detect_returns_per_image_triples():
    det = _tiny("retinanet")
    params = det.init(rng=0)
    data = make_synthetic_dataset(3, (32, 32), max_objects=2, min_size=6, max_size=16, rng=1)
    out = det.detect(params, data.images, score_threshold=0.0)
    assert len(out) == 3
    for boxes, scores, labels in out:
        assert boxes.shape[1] == 4 and len(boxes) == len(scores) == len(labels) <= 100
        assert np.all(np.diff(scores) <= 0)  # batched NMS returns indices by decreasing score
        assert np.all((boxes >= 0) & (boxes <= 32))


def test_sgd_does_not_modify_inputs_and_matches_torch_formula():
    p = {"a": {"w": np.array([1.0, -2.0])}}
    g = {"a": {"w": np.array([0.5, 0.25])}}
    p2, v = sgd_momentum_update(p, g, None, lr=0.1, momentum=0.9, weight_decay=0.01)
    assert p["a"]["w"].tolist() == [1.0, -2.0]
    # v = g + wd * p = (0.51, 0.23); p' = p - 0.1 * v
    np.testing.assert_allclose(v["a"]["w"], [0.51, 0.23])
    np.testing.assert_allclose(p2["a"]["w"], [1 - 0.051, -2 - 0.023])
    p3, v2 = sgd_momentum_update(p2, g, v, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(v2["a"]["w"], 0.9 * v["a"]["w"] + g["a"]["w"])


def test_bad_inputs():
    det = _tiny("retinanet")
    params = det.init(rng=0)
    img = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match="`images`"):
        det.train_step(params, np.zeros((1, 3, 16, 16), np.float32), [(np.zeros((0, 4)), np.zeros(0, int))])
    with pytest.raises(ValueError, match="`targets`"):
        det.train_step(params, img, [])
    with pytest.raises(ValueError, match="labels"):
        det.train_step(params, img, [(np.array([[0, 0, 5, 5.0]]), np.array([7]))])
    with pytest.raises(ValueError, match="`model`"):
        Detector("yolo")


def test_empty_ground_truth_image_trains():
    det = _tiny("retinanet")
    params = det.init(rng=0)
    img = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    losses, grads = det.train_step(params, img, [(np.zeros((0, 4)), np.zeros(0, np.int64))])
    assert np.isfinite(losses["total"]) and losses["box_regression"] == 0.0


def test_retinanet_train_step_matches_torch_autograd():
    # The same architecture, weights and targets in torch (benchmarks/bench_detector.py builds it):
    # the loss and every parameter gradient agree to float32 precision.
    pytest.importorskip("torchvision")
    import torch
    from benchmarks import bench_detector as bd

    torch.set_num_threads(1)
    s = bd._setup()
    losses, grads = s["det"].train_step(s["params"], s["images"], s["targets"])
    s["net"].zero_grad(set_to_none=True)
    loss_t = bd._torch_loss(s)
    loss_t.backward()
    assert losses["total"] == pytest.approx(float(loss_t.detach()), rel=1e-5)
    named = dict(s["net"].named_parameters())
    cfg = s["det"].config
    pairs = [(grads["backbone"][f"stage{i}.weight"], named[f"stages.{i}.weight"]) for i in range(4)]
    pairs += [(grads["fpn"][k], named["fpn." + k]) for k in grads["fpn"]]
    pairs += [(grads["head"]["classification_head.cls_logits.weight"], named["cls_out.weight"]),
              (grads["head"]["regression_head.bbox_reg.weight"], named["box_out.weight"])]
    pairs += [(grads["head"][f"classification_head.conv.{j}.0.weight"], named[f"cls_conv.{2 * j}.weight"])
              for j in range(cfg.head_convs)]
    for mine, theirs in pairs:
        t = theirs.grad.numpy()
        scale = np.abs(t).max() + 1e-12
        assert np.abs(mine - t).max() <= 2e-4 * scale


def test_precomputed_assignment_gives_the_same_step():
    det = _tiny("retinanet")
    params = det.init(rng=0, dtype=np.float64)
    data = make_synthetic_dataset(2, (32, 32), max_objects=2, min_size=6, max_size=16, rng=1)
    targets = list(zip(data.boxes, data.labels))
    a = det.assign(det._check_targets(targets, 2))
    l1, g1 = det.train_step(params, data.images, targets)
    l2, g2 = det.train_step(params, data.images, targets, assignment=a)
    assert l1 == l2
    np.testing.assert_array_equal(g1["head"]["classification_head.cls_logits.weight"],
                                  g2["head"]["classification_head.cls_logits.weight"])
    with pytest.raises(TypeError, match="`assignment`"):
        det.train_step(params, data.images, targets, assignment=a[0])
