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
    elif model == "yolo":
        kw.update(fpn_channels=4, reg_max=4)
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


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd", "yolo"])
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
        Detector("detr")


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


# ---------------------------------------------------------------------------------------------------
# the anchor-free YOLO (v8 head, TAL, v8 loss)
# ---------------------------------------------------------------------------------------------------

def _yolo_batch(det, n=2, seed=2, dtype=np.float64):
    data = make_synthetic_dataset(n, det.image_size, max_objects=3, min_size=5, max_size=16, rng=seed)
    return data.images.astype(dtype), list(zip(data.boxes, data.labels))


def test_yolo_train_step_gradients_match_central_differences():
    # The assignment (TAL on detached predictions) and CIoU's alpha (no_grad in ultralytics) are held
    # at their values at the unperturbed parameters: the registry case refdet.verify.YOLOStepCase.
    from refdet import verify as V
    from refdet.testing.gradcheck import check_gradients

    det = _tiny("yolo")
    images, targets = _yolo_batch(det)
    case = V.YOLOStepCase(det, targets)
    (params, images_), _ = case.make(np.random.default_rng(0))
    assert case.assignment.fg_mask.sum() >= 3                  # positives on more than one image
    rep = check_gradients(case, case.backward, (params, images_), wrt=("params",), max_elements=4, rng=1,
                          rtol=1e-5, atol=1e-7)
    assert rep.ok, str(rep)
    # and the registered case runs in `refdet verify self` / `refdet gradcheck`
    from refdet.testing.gradcheck import gradcheck_all
    V._register_selfcheck_cases()
    (rep2,) = gradcheck_all([V.YOLOStepCase.NAME]).values()
    assert rep2.ok, str(rep2)


def test_yolo_gradients_are_the_v8_loss_through_head_fpn_backbone():
    # Without frozen alpha the numeric derivative of the total differs from the backward only by the
    # alpha term; with alpha frozen the loss is unchanged at the point itself (correction 0)
    from refdet import verify as V

    det = _tiny("yolo")
    images, targets = _yolo_batch(det, seed=4)
    case = V.YOLOStepCase(det, targets)
    (params, images_), _ = case.make(np.random.default_rng(5))
    loss, grads = case(params, images_)
    plain = det.train_step(params, images_, targets)[0]["total"]
    assert float(loss) == plain
    assert set(grads) == {"backbone", "fpn", "head"} and all(np.isfinite(v).all() for d in grads.values()
                                                             for v in d.values())


def test_yolo_assignment_is_tal_on_detached_predictions_and_can_be_fixed():
    from refdet.yolo import Assignment, task_aligned_assign
    from refdet.yolo.decode import dfl_decode_forward

    det = _tiny("yolo")
    params = det.init(rng=3, dtype=np.float64)
    images, targets = _yolo_batch(det, n=3, seed=6)
    losses, grads, trace = det.loss_and_grads(params, images, targets)
    a = det.assign(targets, params=params, images=images)
    assert isinstance(a, Assignment)
    np.testing.assert_array_equal(a.gt_index, trace.assignment.gt_index)
    np.testing.assert_array_equal(a.quality, trace.assignment.quality)
    # the same TAL call written out: sigmoid scores, DFL boxes in pixels, anchor points in pixels
    cls, box, _ = det.forward(params, images)
    pb, _ = dfl_decode_forward(box, det.anchor_points_grid, reg_max=det.reg_max, out_fmt="xyxy")
    m = max(len(t[0]) for t in targets)
    gb = np.zeros((3, m, 4))
    gl = np.zeros((3, m), np.int64)
    gm = np.zeros((3, m), bool)
    for i, (b, lab) in enumerate(targets):
        gb[i, :len(b)], gl[i, :len(b)], gm[i, :len(b)] = b, lab, True
    ref = task_aligned_assign(1 / (1 + np.exp(-cls)), pb * det.stride_tensor, det.anchors, gl, gb, gm,
                              strides=det.strides, topk=10, alpha=0.5, beta=6.0)
    np.testing.assert_array_equal(ref.gt_index, a.gt_index)
    assert trace.num_positive == int(a.fg_mask.sum()) > 0
    # a fixed assignment gives the same step; a wrong object is refused
    l2, g2 = det.train_step(params, images, targets, assignment=a)
    assert l2 == losses
    np.testing.assert_array_equal(g2["head"]["cv3.0.2.weight"], grads["head"]["cv3.0.2.weight"])
    with pytest.raises(TypeError, match="`assignment`"):
        det.train_step(params, images, targets, assignment=(a.labels, a.gt_index))
    with pytest.raises(ValueError, match="`params` and `images`"):
        det.assign(targets)


def test_yolo_geometry_and_anchor_points():
    det = Detector("yolo")
    # 64 x 64 images, strides 4, 8, 16: 16x16 + 8x8 + 4x4 = 336 points at cell centres
    assert det.feature_sizes == [(16, 16), (8, 8), (4, 4)] and det.strides == [4, 8, 16]
    assert det.anchors.shape == (336, 2)
    np.testing.assert_array_equal(det.anchors[:2], [[2.0, 2.0], [6.0, 2.0]])        # (x + 0.5) * 4
    np.testing.assert_array_equal(det.anchors[256], [4.0, 4.0])                     # level 1: 0.5 * 8
    np.testing.assert_array_equal(det.anchors[-1], [56.0, 56.0])                    # (3 + 0.5) * 16
    params = det.init(rng=0)
    cls, box, _ = det.forward(params, np.zeros((2, 3, 64, 64), np.float32))
    assert cls.shape == (2, 336, 2) and box.shape == (2, 336, 4 * det.reg_max) and cls.dtype == np.float32
    # ultralytics Detect.bias_init: box logits 2.0, class log(5 / K / (640 / s)^2) with the image side 64
    assert np.all(params["head"]["cv2.0.2.bias"] == np.float32(2.0))
    np.testing.assert_allclose(params["head"]["cv3.1.2.bias"], np.log(5 / 2 / (64 / 8) ** 2), rtol=1e-6)


def test_yolo_detect_is_dfl_decode_then_ultralytics_nms():
    from refdet.yolo import dfl_decode_forward, yolo_non_max_suppression

    det = _tiny("yolo")
    params = det.init(rng=0, dtype=np.float64)
    for k in params["head"]:                      # spread the scores: some boxes above the threshold
        if k.startswith("cv3") and k.endswith("2.bias"):
            params["head"][k] = params["head"][k] + 3.0
    images, _ = _yolo_batch(det, n=3, seed=1)
    out = det.detect(params, images, score_threshold=0.2, nms_threshold=0.6)
    assert len(out) == 3
    cls, box, _ = det.forward(params, images)
    xywh, _ = dfl_decode_forward(box, det.anchor_points_grid, det.stride_tensor, reg_max=det.reg_max)
    from refdet.layers import sigmoid_forward
    pred = np.concatenate([xywh, sigmoid_forward(cls)[0]], -1).transpose(0, 2, 1)
    np.testing.assert_allclose(pred[:, 4:], (1 / (1 + np.exp(-cls))).transpose(0, 2, 1), rtol=1e-15)
    rows = yolo_non_max_suppression(pred, 0.2, 0.6, nc=2)
    for (b, s, lab), r in zip(out, rows):
        assert len(b) == len(r) > 0
        np.testing.assert_array_equal(s, r[:, 4])
        np.testing.assert_array_equal(lab, r[:, 5].astype(np.int64))
        np.testing.assert_array_equal(b, np.clip(r[:, :4], 0, 32))              # clipped to the image
        assert np.all(np.diff(s) <= 0) and np.all(s > 0.2)
    np.testing.assert_array_equal(det.yolo_predictions(params, images), pred)


def test_yolo_empty_ground_truth_image_trains():
    det = _tiny("yolo")
    params = det.init(rng=0)
    img = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    losses, grads = det.train_step(params, img, [empty, empty])
    assert np.isfinite(losses["total"]) and losses["box"] == 0.0 and losses["dfl"] == 0.0 and losses["cls"] > 0
    assert grads["head"]["cv2.0.2.weight"].dtype == np.float32 and not grads["head"]["cv2.0.2.weight"].any()
    losses, _ = det.train_step(params, img, [empty, (np.array([[4.0, 4, 20, 20]]), np.array([1]))])
    assert losses["box"] > 0


def test_yolo_train_step_matches_torch_autograd_and_ultralytics_loss():
    # The same architecture in torch (benchmarks/bench_detector.py builds it), the same weights, and
    # ultralytics' own v8DetectionLoss (its assigner with a stable top-k: torch.topk leaves the order of
    # equal alignments unspecified). float64 on both sides: loss and every gradient to ~1e-9.
    pytest.importorskip("torchvision")
    pytest.importorskip("ultralytics")
    import torch
    from benchmarks import bench_detector as bd

    torch.set_num_threads(1)
    s = bd._setup_yolo(dtype=np.float64, batch=4)
    losses, grads = s["det"].train_step(s["params"], s["images"], s["targets"])
    loss_t, items = bd._torch_yolo_loss(s)
    s["net"].zero_grad(set_to_none=True)
    loss_t.backward()
    assert losses["total"] == pytest.approx(float(loss_t.detach()), rel=1e-10)
    np.testing.assert_allclose([losses["box"], losses["cls"], losses["dfl"]], items.detach().numpy(), rtol=1e-10)
    named = dict(s["net"].named_parameters())
    checked = 0
    for part, d in grads.items():
        for k, g in d.items():
            t = named[bd.YOLO_TORCH_NAMES[part](k)].grad.numpy()
            scale = np.abs(t).max() + 1e-300
            assert np.abs(g - t).max() <= 1e-8 * scale, (part, k)
            checked += 1
    assert checked == len(named)
