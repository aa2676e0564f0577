"""Tests of refdet.targets: goldens, border modes, and differentials against torchvision's RPN,
RetinaNet head loss and SSD matcher + box coder."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refdet import box_iou, match, pyramid_anchors, retinanet_targets, rpn_targets, ssd_match, ssd_targets
from refdet.testing import strategies as rst
from tests.conftest import readonly

# --------------------------------------------------------------------------------------------------
# Goldens
# --------------------------------------------------------------------------------------------------

# One gt [0, 0, 10, 10]; anchors:
#   0 [0, 0, 10, 10]   IoU 1                                  -> positive (>= 0.7)
#   1 [0, 0, 10, 20]   IoU 100 / 200 = 0.5                    -> ignored (in [0.3, 0.7))
#   2 [0, 0, 20, 20]   IoU 100 / 400 = 0.25                   -> negative
#   3 [30, 30, 40, 40] IoU 0                                  -> negative
#   4 [-5, 0, 5, 10]   IoU 50 / 150 = 1/3, crosses x = 0      -> ignored; outside the image if border 0
ANCHORS = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 20, 20], [30, 30, 40, 40], [-5, 0, 5, 10]], float)
GT = np.array([[0, 0, 10, 10]], float)


def test_rpn_golden_torchvision():
    t = rpn_targets(ANCHORS, GT, (50, 50), sample=False)
    assert t.matched.tolist() == [0, -2, -1, -1, -2]
    assert t.assigned.tolist() == [1, -1, 0, 0, -1]
    assert t.inside.all()                                  # torchvision keeps every anchor
    # deltas of anchor 1 (centre (5, 10), size 10 x 20) onto the gt (centre (5, 5), 10 x 10):
    # dx = 0, dy = (5 - 10) / 20 = -0.25, dw = log(10/10) = 0, dh = log(10/20) = -0.6931471805599453
    np.testing.assert_allclose(t.deltas[1], [0, -0.25, 0, np.log(0.5)], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(t.deltas[0], [0, 0, 0, 0])


def test_rpn_golden_border_and_sampling():
    # caffe: allowed_border 0 -> anchor 4 (x1 = -5) is outside, removed before matching
    t = rpn_targets(ANCHORS, GT, (50, 50), convention="caffe", sample=False)
    assert t.inside.tolist() == [True, True, True, True, False]
    assert t.assigned.tolist() == [1, -1, 0, 0, -1]
    # sample 2 @ 0.5 with an injected draw: one positive (anchor 0), one negative (negatives [2, 3])
    s = rpn_targets(ANCHORS, GT, (50, 50), batch_size_per_image=2, permutation=([0], [1, 0]))
    assert s.labels.tolist() == [1, -1, -1, 0, -1]
    assert s.pos_mask.tolist() == [True, False, False, False, False]


def test_border_modes_differ_when_the_best_anchor_is_outside():
    # gt [0, 0, 10, 10]; anchor 0 = the gt shifted left (outside), anchor 1 IoU 0.25 (inside).
    anchors = np.array([[-1, 0, 9, 10], [0, 0, 20, 20], [30, 30, 40, 40]], float)
    # filter_before_match (py-faster-rcnn): only anchors 1, 2 are matched; anchor 1 is the gt's best
    # (0.25) and is promoted although 0.25 < 0.3.
    a = rpn_targets(anchors, GT, (50, 50), allowed_border=0, sample=False)
    assert a.assigned.tolist() == [-1, 1, 0]
    # ignore_after_match (detectron2): anchor 0 (IoU 90/110 = 0.818) is the best and positive, then
    # set to -1 for crossing the border; anchor 1 stays negative.
    b = rpn_targets(anchors, GT, (50, 50), allowed_border=0, border_mode="ignore_after_match", sample=False)
    assert b.assigned.tolist() == [-1, 0, 0]


def test_rpn_paper_is_strict():
    # IoU exactly 0.7 with two gts: anchor [0, 0, 10, 7] vs gt [0, 0, 10, 10] is 70 / 100 = 0.7
    anchors = np.array([[0, 0, 10, 7], [0, 0, 10, 10]], float)
    gts = np.array([[0, 0, 10, 10]], float)
    assert rpn_targets(anchors, gts, (20, 20), sample=False, allow_low_quality_matches=False).assigned.tolist() == [1, 1]
    assert rpn_targets(anchors, gts, (20, 20), sample=False, allow_low_quality_matches=False,
                       convention="paper", allowed_border=-1).assigned.tolist() == [-1, 1]


def test_rpn_empty_gt():
    t = rpn_targets(ANCHORS, np.zeros((0, 4)), (50, 50), rng=0)
    assert t.assigned.tolist() == [0] * 5 and t.matched.tolist() == [-1] * 5
    assert (t.labels == 0).all() and not t.pos_mask.any()
    np.testing.assert_array_equal(t.matched_boxes, np.zeros((5, 4)))
    # caffe's border rule still ignores anchor 4
    assert rpn_targets(ANCHORS, np.zeros((0, 4)), (50, 50), convention="caffe", sample=False).assigned.tolist() == \
        [0, 0, 0, 0, -1]


def test_retinanet_golden():
    # gts: [0,0,10,10] class 2, [30,30,40,40] class 0; K = 3. IoUs (0.5 / 0.4):
    # anchor 0: 1 -> gt 0; 1: 0.5 -> gt 0 (>= 0.5); 2: 0.25 -> bg; 3: 1 with gt 1; 4: 1/3 -> bg
    gts = np.array([[0, 0, 10, 10], [30, 30, 40, 40]], float)
    t = retinanet_targets(ANCHORS, gts, np.array([2, 0]), 3)
    assert t.matched.tolist() == [0, 0, -1, 1, -1]
    assert t.labels.tolist() == [2, 2, 3, 0, 3]            # background = K = 3
    np.testing.assert_array_equal(t.cls_targets, [[0, 0, 1], [0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert t.valid.all() and t.num_foreground == 3
    np.testing.assert_array_equal(t.deltas[2], [0, 0, 0, 0])
    e = retinanet_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, np.int64), 3)
    assert e.matched.tolist() == [-1] * 5 and e.valid.all() and not e.cls_targets.any()


def test_retinanet_conventions_on_a_degenerate_gt():
    # gt 1 is a point: mmdet (min_pos_iou 0) lets it take every anchor; torchvision promotes all
    # anchors to gt 0; Detectron1 rewrites IoU < 0.4 back to background; the paper promotes none.
    gts = np.array([[0, 0, 10, 10], [45, 45, 45, 45]], float)
    lab = np.array([0, 1])
    assert retinanet_targets(ANCHORS, gts, lab, 2).matched.tolist() == [0, 0, 0, 0, 0]
    assert retinanet_targets(ANCHORS, gts, lab, 2, convention="mmdet").matched.tolist() == [1, 1, 1, 1, 1]
    assert retinanet_targets(ANCHORS, gts, lab, 2, convention="caffe").matched.tolist() == [0, 0, -1, -1, -1]
    assert retinanet_targets(ANCHORS, gts, lab, 2, convention="paper").matched.tolist() == [0, 0, -1, -1, -1]


def test_ssd_golden():
    # gt [0,0,10,10] label 5: anchor 0 (IoU 1) and anchor 1 (0.5 >= 0.5) are foreground
    t = ssd_targets(ANCHORS, GT, np.array([5]))
    assert t.matched.tolist() == [0, 0, -1, -1, -1]
    assert t.labels.tolist() == [5, 5, 0, 0, 0]
    # weights (10, 10, 5, 5): anchor 1 -> dy = 10 * (5 - 10) / 20 = -2.5, dh = 5 * log(0.5)
    np.testing.assert_allclose(t.deltas[1], [0, -2.5, 0, 5 * np.log(0.5)], rtol=0, atol=1e-14)
    e = ssd_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, np.int64))
    assert e.labels.tolist() == [0] * 5 and e.num_foreground == 0
    c = ssd_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, np.int64), convention="caffe")
    assert c.labels.tolist() == [-1] * 5                   # Caffe mines no negatives without gt


def test_levels_of_positives():
    anchors, level = pyramid_anchors((64, 64), [8, 4], [8, 16], [[16], [32]], [1.0])
    gts = np.array([[8, 8, 24, 24], [0, 0, 32, 32]], float)
    t = rpn_targets(anchors, gts, (64, 64), level=level, sample=False)
    pos = t.assigned == 1
    np.testing.assert_array_equal(t.level[pos], level[pos])
    assert (t.level[~pos] == -1).all()
    assert set(t.level[pos].tolist()) == {0, 1}            # both levels matched at once


def test_inputs_not_modified():
    a, g = readonly(ANCHORS, GT)
    rpn_targets(a, g, (50, 50), rng=0)
    retinanet_targets(a, g, readonly(np.array([0])), 1)
    ssd_targets(a, g, readonly(np.array([1])))
    np.testing.assert_array_equal(a, ANCHORS)


# --------------------------------------------------------------------------------------------------
# Differential tests against torchvision
# --------------------------------------------------------------------------------------------------

def _anchor_set(cfg_index):
    cfgs = [((64, 80), [8, 4], [8, 20], [[16, 24], [40]], [0.5, 1.0, 2.0]),
            ((48, 48), [6], [8], [[12, 20, 32]], [1.0, 2.0])]
    image, fs, strides, sizes, ratios = cfgs[cfg_index]
    anchors, level = pyramid_anchors(image, fs, strides, sizes, ratios, dtype=np.float32)
    return image, anchors, level


def _torch_log(torch):
    """encode_boxes keywords that take the logarithm with torch's float32 log (not correctly rounded;
    refdet's default is, so the two may differ by 1 ulp in dw / dh)."""
    return {"log": lambda x: torch.log(torch.from_numpy(np.ascontiguousarray(x))).numpy()}


def _tv_rpn(torch):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    return RegionProposalNetwork(AnchorGenerator(((16,),), ((1.0,),)), RPNHead(4, 1), 0.7, 0.3, 256, 0.5,
                                 dict(training=10, testing=10), dict(training=10, testing=10), 0.7)


@given(cfg=st.integers(0, 1), gts=rst.gt_sets(min_m=0, max_m=6, image_size=(64, 80)),
       seed=st.integers(0, 2 ** 31))
def test_rpn_against_torchvision(cfg, gts, seed):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    torch.set_num_threads(1)
    image, anchors, level = _anchor_set(cfg)
    g = gts[0].astype(np.float32)
    rpn = _tv_rpn(torch)
    at, gt_t = torch.from_numpy(anchors.copy()), torch.from_numpy(g.copy())
    labels, matched_boxes = rpn.assign_targets_to_anchors([at], [{"boxes": gt_t}])
    ours = rpn_targets(anchors, g, image, level=level, sample=False, encode_kw=_torch_log(torch))
    np.testing.assert_array_equal(ours.assigned, labels[0].numpy().astype(np.int64))
    np.testing.assert_array_equal(ours.matched_boxes, matched_boxes[0].numpy())
    if len(g):
        # float32 on both sides, same order of operations and the same (torch's) log: identical bits
        # (-inf in dw / dh for a zero-size gt, as torchvision)
        tv_deltas = rpn.box_coder.encode(matched_boxes, [at])[0].numpy()
        np.testing.assert_array_equal(ours.deltas, tv_deltas)
    # the balanced sample, replaying torchvision's two randperm draws
    torch.manual_seed(seed)
    tv_pos, tv_neg = rpn.fg_bg_sampler(labels)
    torch.manual_seed(seed)
    npos, nneg = int((ours.assigned == 1).sum()), int((ours.assigned == 0).sum())
    perm = (torch.randperm(npos).numpy(), torch.randperm(nneg).numpy())
    sampled = rpn_targets(anchors, g, image, permutation=perm)
    np.testing.assert_array_equal(sampled.pos_mask, tv_pos[0].numpy().astype(bool))
    np.testing.assert_array_equal(sampled.neg_mask, tv_neg[0].numpy().astype(bool))


@given(cfg=st.integers(0, 1), gts=rst.gt_sets(min_m=0, max_m=5, num_classes=3, image_size=(64, 80)),
       seed=st.integers(0, 2 ** 16))
def test_retinanet_against_torchvision_head_loss(cfg, gts, seed):
    """Our targets fed to torchvision's losses give torchvision's RetinaNetHead.compute_loss."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher
    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops import box_iou as tv_box_iou, sigmoid_focal_loss
    torch.set_num_threads(1)
    image, anchors, level = _anchor_set(cfg)
    g, lab = gts[0].astype(np.float32), gts[1]
    n, k = anchors.shape[0], 3
    ours = retinanet_targets(anchors, g, lab, k, level=level)
    at, gt_t = torch.from_numpy(anchors.copy()), torch.from_numpy(g.copy())
    if len(g):
        tv_matched = Matcher(0.5, 0.4, True)(tv_box_iou(gt_t, at))
    else:
        tv_matched = torch.full((n,), -1, dtype=torch.int64)        # retinanet.py 498-502
    np.testing.assert_array_equal(ours.matched, tv_matched.numpy())
    gen = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(1, n, k, generator=gen, dtype=torch.float64)
    bbox_reg = torch.randn(1, n, 4, generator=gen, dtype=torch.float64)
    head = RetinaNetHead(4, 1, k)
    targets = [{"boxes": gt_t.double(), "labels": torch.from_numpy(lab.copy())}]
    tv_loss = head.compute_loss(targets, {"cls_logits": cls_logits, "bbox_regression": bbox_reg},
                                [at.double()], [tv_matched])
    # the same losses from our targets
    ct, valid = torch.from_numpy(ours.cls_targets.astype(np.float64)), torch.from_numpy(ours.valid)
    nfg = max(1, ours.num_foreground)
    cls = sigmoid_focal_loss(cls_logits[0][valid], ct[valid], reduction="sum") / nfg
    fg = torch.from_numpy(ours.foreground)
    ours_d = retinanet_targets(anchors.astype(np.float64), g.astype(np.float64), lab, k).deltas
    reg = torch.nn.functional.l1_loss(bbox_reg[0][fg], torch.from_numpy(ours_d)[fg], reduction="sum") / nfg
    # float64 on both sides; different summation order -> agreement to ~1e-12 relative
    np.testing.assert_allclose(cls.item(), tv_loss["classification"].item(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(reg.item(), tv_loss["bbox_regression"].item(), rtol=1e-10, atol=1e-12)


@given(cfg=st.integers(0, 1), gts=rst.gt_sets(min_m=0, max_m=5, num_classes=4, first_label=1, image_size=(64, 80)))
def test_ssd_against_torchvision(cfg, gts):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import BoxCoder, SSDMatcher
    from torchvision.ops import box_iou as tv_box_iou
    image, anchors, level = _anchor_set(cfg)
    g, lab = gts[0].astype(np.float32), gts[1]
    # no anchor has zero area, so box_iou never divides 0 by 0 here (no NaN)
    ours = ssd_targets(anchors, g, lab, level=level, encode_kw=_torch_log(torch))
    n = anchors.shape[0]
    at, gt_t = torch.from_numpy(anchors.copy()), torch.from_numpy(g.copy())
    tv_matched = SSDMatcher(0.5)(tv_box_iou(gt_t, at)) if len(g) else torch.full((n,), -1, dtype=torch.int64)
    np.testing.assert_array_equal(ours.matched, tv_matched.numpy())
    fg = tv_matched >= 0
    want_labels = np.zeros(n, np.int64)
    want_labels[fg.numpy()] = lab[tv_matched[fg].numpy()]
    np.testing.assert_array_equal(ours.labels, want_labels)
    if fg.any():
        tv_d = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(gt_t[tv_matched[fg]], at[fg]).numpy()
        np.testing.assert_array_equal(ours.deltas[fg.numpy()], tv_d)
    assert (ours.level[ours.foreground] == level[ours.foreground]).all()


@given(gts=rst.gt_sets(min_m=1, max_m=6, image_size=(64, 80)), border=st.sampled_from([None, 0, 4]),
       seed=st.integers(0, 1000))
def test_rpn_invariants(gts, border, seed):
    image, anchors, level = _anchor_set(0)
    t = rpn_targets(anchors, gts[0], image, allowed_border=border, rng=seed)
    assert t.pos_mask.sum() == min((t.assigned == 1).sum(), 128)
    assert t.neg_mask.sum() == min((t.assigned == 0).sum(), 256 - t.pos_mask.sum())
    assert (t.assigned[~t.inside] == -1).all()
    np.testing.assert_array_equal(t.labels == 1, t.pos_mask)
    np.testing.assert_array_equal(t.labels == 0, t.neg_mask)
    # the matcher on the inside anchors alone gives the same labels (filter_before_match)
    inside = np.flatnonzero(t.inside)
    if inside.size:
        m = match(box_iou(gts[0], anchors[inside]), allow_nan=True)
        np.testing.assert_array_equal(t.matched[inside], m)
    # ssd targets: a shared best box never leaves a gt's labels out of range
    s = ssd_targets(anchors, gts[0], np.ones(len(gts[0]), np.int64))
    assert set(np.unique(s.matched)).issubset(set(range(-1, len(gts[0]))))
    np.testing.assert_array_equal(s.matched, ssd_match(box_iou(gts[0], anchors), 0.5))


# --------------------------------------------------------------------------------------------------
# Conventions: resolved once, passed down, never replaced (issue 12)
# --------------------------------------------------------------------------------------------------

def _random_scene(seed, dtype=np.float32):
    g = np.random.default_rng(seed)
    c = g.uniform(0, 120, size=(200, 2))
    wh = g.uniform(4, 60, size=(200, 2))
    anchors = np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(dtype)
    xy = g.uniform(0, 90, size=(5, 2))
    gwh = g.uniform(8, 50, size=(5, 2))
    gts = np.concatenate([xy, xy + gwh], axis=1).astype(dtype)
    return anchors, gts


_RECIPES = {
    "rpn_targets": ("torchvision", "detectron2", "mmdet", "caffe", "tf", "paper"),
    "retinanet_targets": ("torchvision", "detectron2", "mmdet", "caffe", "tf", "paper"),
    "ssd_targets": ("torchvision", "mmdet", "caffe", "tf", "paper"),
}


def _run_recipe(op, anchors, gts, convention, **kw):
    if op == "rpn_targets":
        t = rpn_targets(anchors, gts, (128, 128), convention=convention, sample=False, **kw)
        return t, t.assigned == 1, t.matched
    if op == "retinanet_targets":
        t = retinanet_targets(anchors, gts, np.arange(len(gts)) % 3, 3, convention=convention, **kw)
        return t, t.foreground, t.matched
    t = ssd_targets(anchors, gts, np.arange(len(gts)) % 3 + 1, convention=convention, **kw)
    return t, t.foreground, t.matched


@pytest.mark.parametrize("op,convention", [(op, c) for op, cs in _RECIPES.items() for c in cs])
def test_targets_encode_with_the_callers_convention(op, convention):
    # The regression targets are encode_boxes under the caller's convention (the recipe's profile may
    # only change the coder through its declared knobs: weights, and Caffe SSD's plus_one / center).
    # Before issue 12, targets._encode replaced the convention by torchvision's formulas (+1 widths
    # under caffe only): mmdet's midpoint centres and stds, TF's eps and (dy, dx, dh, dw) order and
    # the paper's formula were lost.
    from refdet import conventions, encode_boxes
    anchors, gts = _random_scene(3)
    t, fg, matched = _run_recipe(op, anchors, gts, convention)
    assert fg.any()
    p = conventions.resolve(op, convention)
    coder = conventions.resolve("encode_boxes", convention)
    for k in ("plus_one", "center"):
        if k in p and p[k] is not None:
            coder = coder.replace(**{k: p[k]})
    want = encode_boxes(gts[matched[fg]], anchors[fg], weights=p.weights, convention=coder)
    np.testing.assert_array_equal(t.deltas[fg], want)


def test_targets_encoder_is_not_replaced_golden():
    # mmdet: centre (x1 + x2) * 0.5 and stds (0.1, 0.1, 0.2, 0.2) for its SSD; torchvision's formula
    # x1 + 0.5 * w with weights (10, 10, 5, 5) gives other float32 bits on these boxes. The old
    # targets._encode used torchvision's formula for every convention: this test fails on it.
    from refdet import encode_boxes
    anchors, gts = _random_scene(5)
    t, fg, matched = _run_recipe("ssd_targets", anchors, gts, "mmdet")
    g, a = gts[matched[fg]], anchors[fg]
    mm = encode_boxes(g, a, weights=(0.1, 0.1, 0.2, 0.2), convention="mmdet")
    old = encode_boxes(g, a, weights=(10.0, 10.0, 5.0, 5.0), convention="torchvision")
    assert not np.array_equal(mm, old)                  # the two coders differ on this scene
    np.testing.assert_array_equal(t.deltas[fg], mm)
    # the RPN under mmdet: stds (1, 1, 1, 1) but midpoint centres
    r = rpn_targets(anchors, gts, (128, 128), convention="mmdet", sample=False)
    pos = r.assigned == 1
    mm = encode_boxes(r.matched_boxes[pos], anchors[pos], convention="mmdet")
    old = encode_boxes(r.matched_boxes[pos], anchors[pos], convention="torchvision")
    assert not np.array_equal(mm, old)
    np.testing.assert_array_equal(r.deltas[pos], mm)
    # TF: codes (dy, dx, dh, dw) with scale factors (10, 10, 5, 5)
    r = rpn_targets(anchors, gts, (128, 128), convention="tf", sample=False)
    pos = r.assigned == 1
    np.testing.assert_array_equal(r.deltas[pos], encode_boxes(r.matched_boxes[pos], anchors[pos],
                                                              weights=(10, 10, 5, 5), convention="tf"))


def test_caffe_ssd_codes_normalised_boxes_without_plus_one():
    # Caffe SSD (bbox_util.cpp EncodeBBox CENTER_SIZE): no +1, centre (xmin + xmax) / 2, divide by the
    # prior variances; py-faster-rcnn's generic coder (encode_boxes "caffe") has +1 widths.
    from refdet import encode_boxes
    anchors = np.array([[0.1, 0.1, 0.3, 0.5], [0.5, 0.5, 0.9, 0.7]])
    gts = np.array([[0.12, 0.1, 0.32, 0.45]])
    t = ssd_targets(anchors, gts, np.array([1]), convention="caffe")
    assert t.matched.tolist() == [0, -1]
    # cx: prior 0.2, gt 0.22, prior w 0.2 -> dx = (0.02 / 0.2) / 0.1 = 1.0; dw = log(0.2 / 0.2) / 0.2 = 0
    # cy: prior 0.3, gt 0.275, prior h 0.4 -> dy = (-0.025 / 0.4) / 0.1 = -0.625; dh = log(0.35/0.4)/0.2
    np.testing.assert_allclose(t.deltas[0], [1.0, -0.625, 0.0, np.log(0.35 / 0.4) / 0.2], rtol=1e-12, atol=1e-12)
    assert not np.allclose(t.deltas[0], encode_boxes(gts, anchors[:1], weights=(0.1, 0.1, 0.2, 0.2),
                                                     convention="caffe")[0])


@pytest.mark.parametrize("op,convention", [(op, c) for op, cs in _RECIPES.items() for c in cs])
def test_targets_accept_a_resolved_profile(op, convention):
    from refdet import conventions
    anchors, gts = _random_scene(7)
    by_name = _run_recipe(op, anchors, gts, convention)[0]
    by_profile = _run_recipe(op, anchors, gts, conventions.resolve(op, convention))[0]
    for x, y in zip(by_name, by_profile):
        np.testing.assert_array_equal(x, y)


def test_profile_overrides_travel_down():
    # an override set on the recipe's profile object reaches the border rule (no re-resolving by name)
    from refdet import conventions
    p = conventions.resolve("rpn_targets", "torchvision", allowed_border=0.0)
    t = rpn_targets(ANCHORS, GT, (50, 50), convention=p, sample=False)
    assert t.inside.tolist() == [True, True, True, True, False]
    assert t.assigned.tolist() == rpn_targets(ANCHORS, GT, (50, 50), allowed_border=0, sample=False).assigned.tolist()
    # and the explicit keyword still wins over the profile
    assert rpn_targets(ANCHORS, GT, (50, 50), convention=p, allowed_border=-1, sample=False).inside.all()


def test_encode_kw_overrides_and_weights_conflict():
    from refdet import encode_boxes
    anchors, gts = _random_scene(9)
    t = rpn_targets(anchors, gts, (128, 128), convention="mmdet", sample=False, encode_kw={"center": "half_width"})
    pos = t.assigned == 1
    np.testing.assert_array_equal(t.deltas[pos], encode_boxes(t.matched_boxes[pos], anchors[pos],
                                                              convention="mmdet", center="half_width"))
    with pytest.raises(TypeError, match="`encode_kw` must not hold 'weights'"):
        rpn_targets(anchors, gts, (128, 128), encode_kw={"weights": (1, 1, 1, 1)})


def test_ssd_targets_pixel_knobs_are_keywords():
    """`plus_one` and `center` of the ssd_targets table are keywords: +1 widths change the IoU and deltas."""
    import refdet
    d = np.array([[0, 0, 10, 10], [20, 20, 30, 30.]])
    g = np.array([[0, 0, 9, 9.]])
    a = refdet.ssd_targets(d, g, np.array([1]), plus_one=False)
    b = refdet.ssd_targets(d, g, np.array([1]), plus_one=True)
    # continuous: IoU 81/100 and centre 4.5 vs 5; +1 pixels: IoU 100/121 and centre 4.5 vs 5 with w 10 vs 11
    assert a.labels[0] == 1 and b.labels[0] == 1
    assert not np.array_equal(a.deltas[0], b.deltas[0])
