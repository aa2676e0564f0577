"""Faster R-CNN, whole (refdet.faster_rcnn through Detector("faster_rcnn")): the train step's gradient
against central differences and against torch autograd through torchvision's own modules and losses,
training lowers the loss, determinism, the configuration's checks, shapes and dtypes, inference."""
import numpy as np
import pytest

from refdet.detector import Detector, DetectorConfig, sgd_momentum_update
from refdet.faster_rcnn import FasterRCNNAssignment
from refdet.synthetic import make_synthetic_dataset
from refdet.testing.gradcheck import check_gradients

PARTS = ("backbone", "fpn", "rpn", "roi_heads")


def _tiny(**kw):
    # 32 x 32 images: backbone maps 16, 8, 4, 2; FPN levels 8, 4, 2 (strides 4, 8, 16) and 1 (max-pool)
    cfg = dict(image_size=(32, 32), backbone_channels=(3, 4, 4, 4), fpn_channels=4,
               anchor_sizes=((4,), (8,), (16,), (32,)), rpn_pre_nms_top_n=(60, 40), rpn_post_nms_top_n=(20, 15),
               rpn_batch_size_per_image=32, box_batch_size_per_image=8, roi_output_size=2, representation_size=6,
               canonical_scale=8.0, canonical_level=3)
    cfg.update(kw)
    return Detector("faster_rcnn", **cfg)


def _batch(det, n=2, seed=2, dtype=np.float64):
    data = make_synthetic_dataset(n, det.image_size, max_objects=3, min_size=5, max_size=16, rng=seed)
    return data.images.astype(dtype), list(zip(data.boxes, data.labels))


def _params(det, seed=0):
    rng = np.random.default_rng(seed)
    params = det.init(rng=rng, dtype=np.float64)
    for part in params.values():             # nonzero biases: ReLU inputs away from the kink at 0
        for k, v in part.items():
            if k.endswith("bias"):
                part[k] = v + 0.1 * rng.standard_normal(v.shape)
    return params


class _Step:
    """The whole train step with its assignment (RPN targets, proposals, sampled RoIs) held fixed."""

    def __init__(self, det, targets, assignment):
        self.det, self.targets, self.assignment = det, targets, assignment

    def __call__(self, params, images):
        losses, grads = self.det.train_step(params, images, self.targets, assignment=self.assignment)
        return np.asarray(losses["total"]), grads

    @staticmethod
    def backward(dloss, grads):
        g = float(np.asarray(dloss))
        return {part: {k: v * g for k, v in d.items()} for part, d in grads.items()}, None


def test_whole_step_gradient_matches_central_differences_in_every_part():
    # the proposals are constants (torchvision detaches them), so with the step's assignment fixed the
    # loss is a smooth function of every parameter: backbone, FPN, RPN head and box head
    det = _tiny()
    params = _params(det)
    images, targets = _batch(det)
    _, _, trace = det.loss_and_grads(params, images, targets, rng=0)
    a = trace.assignment
    assert trace.num_positive >= 2 and sum(int((lab > 0).sum()) for lab in a.rois.labels) >= 2
    assert len(np.unique(trace.roi_levels)) >= 2              # RoIs pooled from more than one level
    step = _Step(det, targets, a)
    # a sample of each part's arrays (first and last layers, weights and biases), 2 elements of each
    wrt = [f"params['{part}']['{k}']" for part, keys in (
        ("backbone", ("stage0.weight", "stage2.bias", "stage3.weight")),
        ("fpn", ("inner_blocks.0.0.weight", "layer_blocks.1.0.bias", "layer_blocks.2.0.weight")),
        ("rpn", ("conv.0.0.weight", "cls_logits.bias", "bbox_pred.weight")),
        ("roi_heads", ("box_head.fc6.weight", "box_head.fc7.bias", "box_predictor.cls_score.weight",
                       "box_predictor.bbox_pred.weight"))) for k in keys]
    rep = check_gradients(step, step.backward, (params, images), wrt=wrt, max_elements=2, rng=1,
                          rtol=1e-5, atol=1e-8)
    assert rep.ok, str(rep)
    assert len(rep.per_input) == len(wrt) and all(r["n"] >= 1 for r in rep.per_input.values()), str(rep)


def test_the_box_head_loss_reaches_the_fpn_and_the_backbone_through_roialign():
    # The step's gradient minus the RPN losses' own (Detector.backward of the RPN outputs' gradients)
    # is the second stage's: it reaches the FPN and the backbone only through RoIAlign's backward, and
    # equals the numeric derivative of classification + box_regression.
    from refdet.losses import LossTargets, rpn_loss_backward, rpn_loss_forward

    det = _tiny()
    params = _params(det, seed=3)
    images, targets = _batch(det, seed=5)
    _, grads, trace = det.loss_and_grads(params, images, targets, rng=1)
    a = trace.assignment
    (lt, pos, neg), _, _ = a
    obj, deltas, cache = det.forward(params, images)
    _, c = rpn_loss_forward(obj[..., 0], deltas, LossTargets(lt.labels, lt.deltas), pos_mask=pos, neg_mask=neg)
    g = rpn_loss_backward((1.0, 1.0), c)
    g_rpn = det.backward(g.dobjectness[..., None], g.ddeltas, cache)
    assert set(g_rpn) == {"backbone", "fpn", "rpn"}
    for k in g_rpn["rpn"]:                          # the box head's loss does not reach the RPN head
        np.testing.assert_allclose(g_rpn["rpn"][k], grads["rpn"][k], rtol=1e-12, atol=1e-15)

    def second_stage(p):
        ls = det.train_step(p, images, targets, assignment=a)[0]
        return ls["classification"] + ls["box_regression"]

    eps = 1e-6
    for part, key, idx in (("fpn", "layer_blocks.0.0.weight", (1, 2, 1, 1)), ("fpn", "inner_blocks.1.0.bias", (2,)),
                           ("backbone", "stage1.weight", (0, 1, 1, 2))):
        def at(d):
            q = {pt: {k: v.copy() for k, v in dd.items()} for pt, dd in params.items()}
            q[part][key][idx] += d
            return second_stage(q)
        num = (at(eps) - at(-eps)) / (2 * eps)
        mine = grads[part][key][idx] - g_rpn[part][key][idx]
        assert abs(num) > 1e-6
        assert mine == pytest.approx(num, rel=1e-5, abs=1e-9), (part, key)


def test_train_step_matches_torch_autograd_through_torchvision_modules_and_losses():
    # The same weights in torchvision's FeaturePyramidNetwork(LastLevelMaxPool), RPNHead,
    # MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor; torchvision's RPN compute_loss (its sampler
    # replaced by refdet's draw) and fastrcnn_loss on refdet's sampled RoIs and targets. float64.
    pytest.importorskip("torchvision")
    import types
    from collections import OrderedDict

    import torch
    import torch.nn.functional as F
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.roi_heads import fastrcnn_loss
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
    from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    torch.set_num_threads(1)
    det = _tiny()
    cfg = det.config
    params = _params(det, seed=4)
    images, targets = _batch(det, n=3, seed=7)
    losses, grads, trace = det.loss_and_grads(params, images, targets, rng=2)
    (lt, pos, neg), _, rois = trace.assignment

    T = {"backbone": {k: torch.tensor(v, requires_grad=True) for k, v in params["backbone"].items()}}
    fpn = FeaturePyramidNetwork([4, 4, 4], 4, extra_blocks=LastLevelMaxPool()).double()
    rpn_head = RPNHead(4, 3).double()
    p = cfg.roi_output_size
    mlp = TwoMLPHead(4 * p * p, cfg.representation_size).double()
    pred = FastRCNNPredictor(cfg.representation_size, cfg.num_classes + 1).double()
    for mod, part, prefix in ((fpn, "fpn", ""), (rpn_head, "rpn", ""), (mlp, "roi_heads", "box_head."),
                              (pred, "roi_heads", "box_predictor.")):
        mod.load_state_dict({k[len(prefix):]: torch.tensor(v) for k, v in params[part].items()
                             if k.startswith(prefix)})
        for name, prm in mod.named_parameters():   # refdet's keys are torchvision's state_dict keys
            T.setdefault(part, {})[prefix + name] = prm
    x = torch.tensor(images)
    feats = []
    for i in range(4):
        x = F.relu(F.conv2d(x, T["backbone"][f"stage{i}.weight"], T["backbone"][f"stage{i}.bias"], stride=2,
                            padding=1))
        feats.append(x)
    levels = fpn(OrderedDict((str(i), feats[i + 1]) for i in range(3)))
    obj, box = rpn_head(list(levels.values()))
    obj, box = concat_box_prediction_layers(obj, box)
    sampler = types.SimpleNamespace(fg_bg_sampler=lambda labels: ([torch.tensor(m) for m in pos],
                                                                  [torch.tensor(m) for m in neg]))
    l_obj, l_rpn_box = RegionProposalNetwork.compute_loss(
        sampler, obj, box, [torch.tensor(v, dtype=torch.float64) for v in lt.labels],
        [torch.tensor(v) for v in lt.deltas])
    pooler = MultiScaleRoIAlign(["0", "1", "2"], p, cfg.roi_sampling_ratio, canonical_scale=int(cfg.canonical_scale),
                                canonical_level=cfg.canonical_level)
    pooled = pooler(levels, [torch.tensor(r) for r in rois.rois], [det.image_size] * len(images))
    logits, deltas = pred(mlp(pooled))
    l_cls, l_box = fastrcnn_loss(logits, deltas, [torch.tensor(v) for v in rois.labels],
                                 [torch.tensor(v) for v in rois.regression_targets])
    total = l_obj + l_rpn_box + l_cls + l_box
    total.backward()
    theirs = [float(v.detach()) for v in (l_obj, l_rpn_box, l_cls, l_box, total)]
    mine = [losses[k] for k in ("objectness", "rpn_box_regression", "classification", "box_regression", "total")]
    np.testing.assert_allclose(mine, theirs, rtol=1e-12)
    assert {part: set(d) for part, d in T.items()} == {part: set(d) for part, d in grads.items()}
    for part, d in grads.items():
        for k, g in d.items():
            t = T[part][k].grad.numpy()
            assert np.abs(g - t).max() <= 1e-10 * (np.abs(t).max() + 1e-300), (part, k)


def test_a_few_steps_lower_the_loss():
    det = _tiny()
    params = det.init(rng=0)
    data = make_synthetic_dataset(4, (32, 32), max_objects=2, min_size=6, max_size=16, rng=1)
    targets = list(zip(data.boxes, data.labels))
    first = det.train_step(params, data.images, targets, rng=0)[0]["total"]
    v = None
    for _ in range(8):      # the same batch and the same draws: the loss must fall
        _, g = det.train_step(params, data.images, targets, rng=0)
        params, v = sgd_momentum_update(params, g, v, lr=0.02)
    last = det.train_step(params, data.images, targets, rng=0)[0]["total"]
    assert last < first


def test_the_same_rng_gives_the_same_step_and_another_rng_another_sample():
    det = _tiny()
    params = det.init(rng=0)
    images, targets = _batch(det, n=2, seed=3, dtype=np.float32)
    l1, g1, t1 = det.loss_and_grads(params, images, targets, rng=5)
    l2, g2, t2 = det.loss_and_grads(params, images, targets, rng=np.random.default_rng(5))
    assert l1 == l2
    for part in PARTS:
        for k in g1[part]:
            np.testing.assert_array_equal(g1[part][k], g2[part][k])
    np.testing.assert_array_equal(t1.roi_levels, t2.roi_levels)
    _, _, t3 = det.loss_and_grads(params, images, targets, rng=6)
    a1, a3 = t1.assignment, t3.assignment
    assert any(not np.array_equal(x, y) for x, y in zip(a1.rois.sampled_indices, a3.rois.sampled_indices)) or \
        not np.array_equal(a1.rpn[1], a3.rpn[1])
    # the assignment made by assign() is the step's
    a = det.assign(targets, rng=5, params=params, images=images)
    np.testing.assert_array_equal(a.rpn[1], a1.rpn[1])
    for x, y in zip(a.rois.rois, a1.rois.rois):
        np.testing.assert_array_equal(x, y)
    l4, _ = det.train_step(params, images, targets, assignment=a)
    assert l4 == l1


def test_shapes_dtypes_and_the_level_of_each_roi():
    from refdet.roi import assign_roi_levels

    det = _tiny()
    # FPN levels 8, 4, 2 and the max-pool level 1; 3 anchors per location
    assert det.feature_sizes == [(8, 8), (4, 4), (2, 2), (1, 1)] and det.strides == [4, 8, 16, 32]
    n = 3 * (64 + 16 + 4 + 1)
    assert det.anchors.shape == (n, 4) and det.num_anchors == [3, 3, 3, 3]
    for dtype in (np.float32, np.float64):
        params = det.init(rng=0, dtype=dtype)
        assert set(params) == set(PARTS)
        assert params["roi_heads"]["box_head.fc6.weight"].shape == (6, 4 * 2 * 2)
        assert params["roi_heads"]["box_predictor.bbox_pred.weight"].shape == (4 * 3, 6)
        images, targets = _batch(det, n=2, dtype=dtype)
        obj, deltas, cache = det.forward(params, images)
        assert obj.shape == (2, n, 1) and deltas.shape == (2, n, 4) and obj.dtype == deltas.dtype == dtype
        assert [tuple(s) for s in cache.level_shapes] == [(2, 4, 8, 8), (2, 4, 4, 4), (2, 4, 2, 2), (2, 4, 1, 1)]
        losses, grads, trace = det.loss_and_grads(params, images, targets, rng=0)
        assert set(losses) == {"objectness", "rpn_box_regression", "classification", "box_regression", "total"}
        assert losses["total"] == pytest.approx(sum(v for k, v in losses.items() if k != "total"))
        for part in PARTS:
            assert grads[part].keys() == params[part].keys()
            for k, g in grads[part].items():
                assert g.shape == params[part][k].shape and g.dtype == dtype, (part, k)
        rois = trace.assignment.rois
        assert all(len(r) <= 8 for r in rois.rois)
        assert all(int((lab > 0).sum()) <= 2 for lab in rois.labels)            # at most 25 % of 8
        # each RoI's level is FPN Eq. 1 with the configuration's canonical box (8 px at level 3)
        want = assign_roi_levels(np.concatenate(rois.rois), min_level=2, max_level=4, canonical_scale=8.0,
                                 canonical_level=3)
        np.testing.assert_array_equal(trace.roi_levels, want)
        out = det.detect(params, images, score_threshold=0.0, detections_per_image=7)
        assert len(out) == 2
        for boxes, scores, labels in out:
            assert boxes.shape == (len(scores), 4) and len(labels) == len(scores) <= 7
            assert labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1}
            assert boxes.dtype == scores.dtype == np.float64
            assert np.all(np.diff(scores) <= 0) and np.all((boxes >= 0) & (boxes <= 32))
    assert all(len(b) == 0 for b, _, _ in det.detect(params, images, score_threshold=1.0))


def test_detect_is_the_box_head_postprocess_of_the_test_proposals():
    from refdet.faster_rcnn import proposals
    from refdet.roi import multiscale_roi_align
    from refdet.roi_heads import box_head_forward, fastrcnn_postprocess

    det = _tiny()
    params = _params(det, seed=2)
    images, _ = _batch(det, n=2, seed=9)
    obj, deltas, cache = det.forward(params, images)
    props = proposals(det, obj, deltas, training=False)
    assert all(len(p) <= 15 for p in props.boxes)                     # the test post-NMS count
    pooled = multiscale_roi_align(cache.levels[:3], props.boxes, 2, 2, scales=[0.25, 0.125, 0.0625],
                                  canonical_scale=8.0, canonical_level=3)
    out, _ = box_head_forward(params["roi_heads"], pooled)
    ref = fastrcnn_postprocess(out.class_logits, out.box_regression, props.boxes, [(32, 32)] * 2, score_thresh=0.2)
    got = det.detect(params, images, score_threshold=0.2)
    for (b, s, lab), rb, rs, rl in zip(got, ref.boxes, ref.scores, ref.labels):
        np.testing.assert_array_equal(b, rb)
        np.testing.assert_array_equal(s, rs)
        np.testing.assert_array_equal(lab, rl - 1)                   # background 0 inside, classes 0..K-1 out


@pytest.mark.parametrize("field,value,exc", [
    ("rpn_pre_nms_top_n", (0, 10), ValueError), ("rpn_post_nms_top_n", 5, ValueError),
    ("rpn_nms_thresh", 1.5, ValueError), ("rpn_batch_size_per_image", 0, ValueError),
    ("box_batch_size_per_image", 2.5, TypeError), ("box_positive_fraction", -0.1, ValueError),
    ("roi_output_size", 0, ValueError), ("roi_sampling_ratio", 0, ValueError),
    ("canonical_scale", 0.0, ValueError), ("representation_size", 0, ValueError),
    ("anchor_sizes", ((4, 6), (8,), (16,), (32,)), ValueError), ("backbone_channels", (3, 4, 4), ValueError),
    ("num_classes", 0, ValueError),
])
def test_bad_configuration_is_refused_naming_the_field(field, value, exc):
    with pytest.raises(exc, match=field):
        _tiny(**{field: value})


def test_model_names_and_bad_calls():
    assert Detector("faster-rcnn").config.model == "faster_rcnn"
    assert Detector(DetectorConfig(model="faster-rcnn")).config.model == "faster_rcnn"
    with pytest.raises(ValueError, match="`model`"):
        Detector("faster rcnn")
    det = _tiny()
    params = det.init(rng=0)
    images, targets = _batch(det, n=2, dtype=np.float32)
    with pytest.raises(ValueError, match="`params` and `images`"):
        det.assign(targets)
    with pytest.raises(TypeError, match="`assignment`"):
        det.train_step(params, images, targets, assignment=(1, 2, 3))
    a = det.assign(targets[:1], rng=0, params=params, images=images[:1])
    with pytest.raises(ValueError, match="`assignment`"):
        det.train_step(params, images, targets, assignment=a)
    with pytest.raises(ValueError, match="`images`"):
        det.train_step(params, images[:, :, :16], targets)
    with pytest.raises(ValueError, match="labels"):
        det.train_step(params, images[:1], [(np.array([[0, 0, 5, 5.0]]), np.array([2]))])


def test_an_image_without_objects_trains():
    det = _tiny()
    params = det.init(rng=0)
    img = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    losses, grads = det.train_step(params, img, [empty, empty], rng=0)
    # no object: every sampled anchor and RoI is background, no box loss
    assert losses["rpn_box_regression"] == 0.0 and losses["box_regression"] == 0.0
    assert np.isfinite(losses["total"]) and losses["classification"] > 0
    losses, _ = det.train_step(params, img, [empty, (np.array([[4.0, 4, 20, 20]]), np.array([1]))], rng=0)
    assert losses["box_regression"] > 0


def test_the_registered_gradient_check_case_passes():
    # `refdet verify self` / `refdet gradcheck` run the whole step through the registry
    from refdet._faster_rcnn_gradcheck import FasterRCNNStepCase
    from refdet.testing.gradcheck import gradcheck_all

    (rep,) = gradcheck_all([FasterRCNNStepCase.NAME]).values()
    assert rep.ok, str(rep)
    assert len(rep.per_input) == 34 and all(r["n"] == 1 for r in rep.per_input.values())   # every array


def test_inputs_are_not_modified_and_the_layout_does_not_matter():
    det = _tiny()
    params = _params(det, seed=6)
    images, targets = _batch(det, n=2, seed=11)
    l1, g1 = det.train_step(params, images, targets, rng=3)
    frozen = {part: {k: v.copy() for k, v in d.items()} for part, d in params.items()}
    ro = {part: {k: v.copy() for k, v in d.items()} for part, d in params.items()}
    for d in ro.values():
        for v in d.values():
            v.flags.writeable = False
    img_f = np.asfortranarray(images)
    img_f.flags.writeable = False
    tg = [(b.copy(), lab.copy()) for b, lab in targets]
    l2, g2 = det.train_step(ro, img_f, tg, rng=3)
    assert l1 == l2
    for part in PARTS:
        for k in g1[part]:
            np.testing.assert_array_equal(g1[part][k], g2[part][k])
            np.testing.assert_array_equal(params[part][k], frozen[part][k])
    for (b, lab), (b0, lab0) in zip(tg, targets):
        np.testing.assert_array_equal(b, b0)
        np.testing.assert_array_equal(lab, lab0)
    d1 = det.detect(params, images[:, :, ::-1].copy()[:, :, ::-1], score_threshold=0.1)
    d2 = det.detect(ro, img_f, score_threshold=0.1)
    for x, y in zip(d1, d2):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_float32_step_agrees_with_float64_to_float32_precision():
    # float32 in, float32 math: with the float64 step's assignment, the losses and gradients agree to
    # float32 rounding (the chain is a few hundred operations deep: 1e-4 relative)
    det = _tiny()
    p64 = _params(det, seed=8)
    images, targets = _batch(det, n=2, seed=12)
    l64, g64, t = det.loss_and_grads(p64, images, targets, rng=0)
    p32 = {part: {k: v.astype(np.float32) for k, v in d.items()} for part, d in p64.items()}
    l32, g32 = det.train_step(p32, images.astype(np.float32), targets, assignment=t.assignment)
    for k in l64:
        assert l32[k] == pytest.approx(l64[k], rel=1e-4, abs=1e-6), k
    for part in PARTS:
        for k in g64[part]:
            assert g32[part][k].dtype == np.float32
            scale = np.abs(g64[part][k]).max() + 1e-12
            assert np.abs(g32[part][k] - g64[part][k]).max() <= 1e-3 * scale, (part, k)


def test_detect_checks_its_thresholds():
    det = _tiny()
    params = det.init(rng=0)
    images, _ = _batch(det, n=1, dtype=np.float32)
    for kw, name in ((dict(score_threshold=1.5), "score_threshold"), (dict(nms_threshold=-0.1), "nms_threshold"),
                     (dict(detections_per_image=-1), "detections_per_image")):
        with pytest.raises(ValueError, match=name):
            det.detect(params, images, **kw)


def test_any_valid_configuration_trains_and_detects_with_the_documented_shapes():
    # a property over configurations and batches (objects or none, near the border, tiny or image-sized)
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        h, w = draw(st.integers(20, 44)), draw(st.integers(20, 44))
        k = draw(st.integers(1, 3))
        base = draw(st.sampled_from([3, 4, 6, 8]))
        kw = dict(image_size=(h, w), num_classes=k, backbone_channels=(3, 4, 4, 4), fpn_channels=4,
                  anchor_sizes=tuple((base * 2 ** i,) for i in range(4)),
                  rpn_pre_nms_top_n=(draw(st.integers(1, 80)), draw(st.integers(1, 80))),
                  rpn_post_nms_top_n=(draw(st.integers(1, 40)), draw(st.integers(1, 40))),
                  rpn_batch_size_per_image=draw(st.integers(1, 64)),
                  box_batch_size_per_image=draw(st.integers(1, 16)),
                  box_positive_fraction=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
                  roi_output_size=draw(st.integers(1, 3)), roi_sampling_ratio=draw(st.integers(1, 2)),
                  canonical_scale=draw(st.sampled_from([4.0, 8.0, 16.0, 32.0])),
                  canonical_level=draw(st.integers(2, 5)), representation_size=draw(st.integers(1, 6)))
        targets = []
        for _ in range(draw(st.integers(1, 2))):
            m = draw(st.integers(0, 3))
            x1 = np.array(draw(st.lists(st.integers(0, w - 2), min_size=m, max_size=m)), np.float64)
            y1 = np.array(draw(st.lists(st.integers(0, h - 2), min_size=m, max_size=m)), np.float64)
            bw = np.array(draw(st.lists(st.integers(1, w), min_size=m, max_size=m)), np.float64)
            bh = np.array(draw(st.lists(st.integers(1, h), min_size=m, max_size=m)), np.float64)
            boxes = np.stack([x1, y1, np.minimum(x1 + bw, w), np.minimum(y1 + bh, h)], 1).reshape(m, 4)
            labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=m, max_size=m)), np.int64)
            targets.append((boxes, labels))
        return kw, targets, draw(st.integers(0, 2 ** 31 - 1))

    @settings(max_examples=max(10, settings.default.max_examples // 4), deadline=None)
    @given(cases())
    def check(case):
        kw, targets, seed = case
        det = Detector("faster_rcnn", **kw)
        params = det.init(rng=seed)
        images = np.random.default_rng(seed).standard_normal((len(targets), 3) + det.image_size).astype(np.float32)
        losses, grads, trace = det.loss_and_grads(params, images, targets, rng=seed)
        assert all(np.isfinite(v) for v in losses.values()), losses
        for part in PARTS:
            for key, g in grads[part].items():
                assert g.shape == params[part][key].shape and g.dtype == np.float32 and np.isfinite(g).all()
        a = trace.assignment
        batch, frac = kw["box_batch_size_per_image"], kw["box_positive_fraction"]
        n_rois = 0
        for (boxes, _), props, rois, lab in zip(targets, a.proposals.boxes, a.rois.rois, a.rois.labels):
            assert len(props) <= kw["rpn_post_nms_top_n"][0]
            assert len(rois) <= batch and int((lab > 0).sum()) <= int(batch * frac) and lab.max(initial=0) <= 3
            n_rois += len(rois)
        assert trace.roi_levels.shape == (n_rois,) and set(trace.roi_levels.tolist()) <= {0, 1, 2}
        for boxes, scores, labels in det.detect(params, images, score_threshold=0.2, detections_per_image=5):
            assert len(boxes) == len(scores) == len(labels) <= 5 and np.all(scores > 0.2)
            assert np.all((labels >= 0) & (labels < kw["num_classes"])) and np.all(np.diff(scores) <= 0)
            assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= det.image_size[1]) and \
                np.all(boxes[:, 3] <= det.image_size[0])

    check()
