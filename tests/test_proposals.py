"""Tests of refdet.proposals: golden cases per framework, tie rules, the fast per-level NMS, bad input, and
differential tests against torchvision's RegionProposalNetwork.filter_proposals (and its decode)."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import conventions
from refdet.nms import batched_nms
from refdet.proposals import _grouped_nms, filter_proposals, select_proposals, top_k_per_level
from refdet.testing import strategies as rst
from refdet.testing import strategies_roi as rsr
from tests._torchutil import _bits_equal, _torch
from tests.conftest import readonly


def _examples(n):
    """``n`` examples, or the thorough profile's 1000 (HYPOTHESIS_PROFILE=thorough)."""
    return 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else n


def _tv_rpn(torch, *, pre=(2000, 1000), post=(2000, 1000), nms_thresh=0.7, score_thresh=0.0, training=False):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, 256, 0.5,
                                dict(training=pre[0], testing=pre[1]), dict(training=post[0], testing=post[1]),
                                nms_thresh, score_thresh=score_thresh)
    return rpn.train(training)


# --------------------------------------------------------------------------------------------------
# golden cases
# --------------------------------------------------------------------------------------------------

def _two_levels():
    # level 0: anchors 0-3, level 1: anchors 4-5. Boxes 0 and 1 overlap with IoU exactly 0.7
    # ([0, 0, 10, 10] and [0, 0, 10, 7]: 70 / 100); box 2 is tiny (5e-4 wide); box 3 leaves the image;
    # box 4 (level 1) equals box 0; box 5 is ordinary.
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 7], [20, 20, 20.0005, 30], [45, 45, 60, 60],
                      [0, 0, 10, 10], [30, 0, 40, 10.0]])
    logits = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])
    return boxes, logits, [4, 2]


def test_filter_proposals_golden_torchvision():
    boxes, logits, counts = _two_levels()
    r = filter_proposals(boxes, logits, (50, 50), counts)
    # torchvision: clip box 3 to [45, 45, 50, 50]; box 2 (w = 5e-4 < 1e-3) removed; IoU(0, 1) = 0.7 is not
    # > 0.7: both kept; box 4 is on another level: NMS per level keeps it; order by sigmoid score
    assert r.anchor_indices[0].tolist() == [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(r.boxes[0][2], [45, 45, 50, 50])
    np.testing.assert_allclose(r.scores[0], 1 / (1 + np.exp(-logits[[0, 1, 3, 4, 5]])), rtol=1e-15)
    assert r.levels[0].tolist() == [0, 0, 0, 1, 1]
    # pre_nms_top_n = 2 per level: level 0 keeps anchors 0, 1; level 1 both
    assert filter_proposals(boxes, logits, (50, 50), counts, pre_nms_top_n=2).anchor_indices[0].tolist() == [0, 1, 4, 5]
    # score_thresh 0.5: sigmoid(0) = 0.5 >= 0.5 stays (torchvision's ">= for backwards compatibility")
    assert filter_proposals(boxes, logits, (50, 50), counts, score_thresh=0.5).anchor_indices[0].tolist() == [0, 1, 3]
    # per-level NMS off: box 0 then suppresses its copy 4 (IoU 1)
    assert filter_proposals(boxes, logits, (50, 50), counts, nms_per_level=False).anchor_indices[0].tolist() == \
        [0, 1, 3, 5]
    # post_nms_top_n (test) = 2
    assert filter_proposals(boxes, logits, (50, 50), counts, post_nms_top_n=(5, 2)).anchor_indices[0].tolist() == [0, 1]
    assert len(filter_proposals(boxes, logits, (50, 50), counts, post_nms_top_n=(2, 5),
                                training=True).boxes[0]) == 2


def test_filter_proposals_golden_detectron2_mmdet():
    boxes, logits, counts = _two_levels()
    r = filter_proposals(boxes, logits, (50, 50), counts, convention="detectron2")
    # detectron2 keeps logits as scores and nonempty(0) keeps the 5e-4 box (w > 0): 6 proposals
    assert r.anchor_indices[0].tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(r.scores[0], logits)
    # mmdet: sigmoid scores, the same strict size rule
    m = filter_proposals(boxes, logits, (50, 50), counts, convention="mmdet")
    assert m.anchor_indices[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert m.scores[0][0] == np.float64(1 / (1 + np.exp(-3.0)))


def test_filter_proposals_golden_py_faster_rcnn():
    # one level; probabilities; +1 widths; clip to W - 1; min_size 16 * im_scale; IoU >= 0.7 suppresses
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 6], [20, 20, 34, 40], [40, 40, 60, 60.0]])
    probs = np.array([0.9, 0.8, 0.7, 0.6])
    r = filter_proposals(boxes, probs, (50, 50), [4], convention="caffe", min_size=5)
    # IoU(0, 1) with +1 pixels: 10*7 / (100 + 70 - 70) = 0.7 >= 0.7: box 1 suppressed
    # box 3 clipped to [40, 40, 49, 49] (W - 1): 10 x 10 pixels; scores are the given probabilities
    assert r.anchor_indices[0].tolist() == [0, 2, 3]
    np.testing.assert_array_equal(r.boxes[0][2], [40, 40, 49, 49])
    np.testing.assert_array_equal(r.scores[0], [0.9, 0.7, 0.6])
    # RPN_MIN_SIZE 16 scaled by the image scale 0.6 = 9.6: box 0 (10 px) stays, box 3 (10 px) stays,
    # box 2 (15 px wide) stays; with scale 0.7 (11.2) only box 2 (15 x 21) survives
    assert filter_proposals(boxes, probs, (50, 50), [4], convention="caffe",
                            image_scales=[0.6]).anchor_indices[0].tolist() == [0, 2, 3]
    assert filter_proposals(boxes, probs, (50, 50), [4], convention="caffe",
                            image_scales=[0.7]).anchor_indices[0].tolist() == [2]
    # ties: the proposal layer's argsort()[::-1] ranks the later anchor first (so the pre-NMS cut keeps
    # anchor 1), then nms() sorts again with argsort()[::-1] and reverses the tie back: anchor 0 leads
    two = np.array([[0, 0, 20, 20], [30, 30, 45, 45.0]])
    tie = filter_proposals(two, np.array([0.5, 0.5]), (50, 50), [2], convention="caffe", min_size=1)
    assert tie.anchor_indices[0].tolist() == [0, 1]
    cut = filter_proposals(two, np.array([0.5, 0.5]), (50, 50), [2], convention="caffe", min_size=1,
                           pre_nms_top_n=1)
    assert cut.anchor_indices[0].tolist() == [1]


def test_filter_proposals_convention_table():
    t = conventions.describe("filter_proposals")
    assert t["torchvision"]["pre_nms_top_n"] == (2000, 1000) and t["caffe"]["post_nms_top_n"] == (2000, 300)
    assert t["detectron2"]["score"] == "logit" and t["caffe"]["filter_first"]
    assert "Conventions" in filter_proposals.__doc__ and "Conventions" in select_proposals.__doc__


def test_top_k_per_level_ties_lower_index_first():
    s = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    # level 0 = first 5: top 2 are the 3.0s at 1, 2 (index 4 also 3.0 but later); level 1: 5, 6
    assert top_k_per_level(s, [5, 3], 2).tolist() == [1, 2, 5, 6]
    assert top_k_per_level(s, [5, 3], 0).tolist() == [1, 2, 4, 3, 0, 5, 6, 7]
    assert top_k_per_level(s, [0, 8], 3).tolist() == [5, 6, 7]


# --------------------------------------------------------------------------------------------------
# against torchvision
# --------------------------------------------------------------------------------------------------

@settings(max_examples=_examples(40))
@given(case=rsr.proposal_inputs(), training=st.booleans(), pre=st.integers(1, 500), post=st.integers(1, 1500),
       nms_thresh=st.sampled_from((0.5, 0.7, 0.9)), score_thresh=st.sampled_from((0.0, 0.3)))
def test_filter_proposals_matches_torchvision(case, training, pre, post, nms_thresh, score_thresh):
    torch = _torch()
    rpn = _tv_rpn(torch, pre=(pre, pre), post=(post, post), nms_thresh=nms_thresh, score_thresh=score_thresh,
                  training=training)
    tb, ts = rpn.filter_proposals(torch.from_numpy(case["proposals"]), torch.from_numpy(case["objectness"]),
                                  case["image_sizes"], case["num_anchors_per_level"])
    r = filter_proposals(case["proposals"], case["objectness"], case["image_sizes"], case["num_anchors_per_level"],
                         training=training, pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=nms_thresh,
                         score_thresh=score_thresh)
    for i in range(len(tb)):
        _bits_equal(r.boxes[i], tb[i].numpy())
        # the sigmoid's exp: correctly rounded here, SLEEF in torch (1 ulp apart at most)
        np.testing.assert_allclose(r.scores[i], ts[i].numpy(), rtol=2 ** -22, atol=0)


def test_select_proposals_matches_torchvision_decode_and_filter():
    torch = _torch()
    from torchvision.models.detection._utils import BoxCoder
    rng = np.random.default_rng(0)
    H, W = 480, 640
    counts = [3 * (H // s) * (W // s) for s in (8, 16, 32)]
    N = sum(counts)
    ctr = rng.uniform(0, [W, H], (N, 2))
    wh = np.exp(rng.uniform(np.log(16), np.log(400), (N, 2)))
    anchors = np.concatenate([ctr - wh / 2, ctr + wh / 2], 1).astype(np.float32)
    logits = ((rng.permutation(2 * N).reshape(2, N) - N) * (12.0 / (2 * N))).astype(np.float32)
    deltas = (rng.standard_normal((2, N, 4)) * 0.2).astype(np.float32)
    deltas[0, :50, 2:] = 9.0                       # hits the log(1000 / 16) clamp
    props = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.from_numpy(deltas.reshape(-1, 4)),
                                                 [torch.from_numpy(anchors)] * 2).view(2, N, 4)
    rpn = _tv_rpn(torch)
    tb, ts = rpn.filter_proposals(props, torch.from_numpy(logits), [(H, W), (H - 40, W - 100)], counts)
    texp = (lambda v: torch.exp(torch.from_numpy(np.ascontiguousarray(v))).numpy())
    r = select_proposals(logits, deltas, anchors, [(H, W), (H - 40, W - 100)], counts, exp=texp)
    r_default = select_proposals(logits, deltas, anchors, [(H, W), (H - 40, W - 100)], counts)
    for i in range(2):
        # with torch's exp the decode is torchvision's bit for bit; refdet's correctly rounded exp is
        # within an ulp of each box's size (same proposals here)
        _bits_equal(r.boxes[i], tb[i].numpy())
        np.testing.assert_allclose(r_default.boxes[i], tb[i].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(r.scores[i], ts[i].numpy(), rtol=2 ** -22)


# --------------------------------------------------------------------------------------------------
# the per-level NMS speed path equals refdet.batched_nms
# --------------------------------------------------------------------------------------------------

@settings(max_examples=_examples(60))
@given(data=rst.overlapping_box_sets(max_clusters=6, max_per_cluster=10), groups=st.integers(1, 4),
       thr=st.sampled_from((0.3, 0.5, 0.6, 0.7, 0.75, 0.9)), dtype=st.sampled_from((np.float32, np.float64)),
       seed=st.integers(0, 1000))
def test_grouped_nms_equals_batched_nms(data, groups, thr, dtype, seed):
    boxes, scores = data
    g = np.random.default_rng(seed).integers(0, groups, len(boxes))
    b, s = boxes.astype(dtype), scores.astype(dtype)
    np.testing.assert_array_equal(_grouped_nms(b, s, g, thr), batched_nms(b, s, g, thr))


def test_grouped_nms_long_chain_and_many_boxes(rng):
    # a chain of boxes each overlapping the next above the threshold: the greedy keeps every other one,
    # resolved one box at a time beyond the vectorised rounds
    n = 300
    x = np.arange(n) * 1.0
    chain = np.stack([x, np.zeros(n), x + 10, np.full(n, 10.0)], 1)
    sc = np.linspace(1, 0.1, n)
    np.testing.assert_array_equal(_grouped_nms(chain, sc, np.zeros(n, np.int64), 0.8),
                                  batched_nms(chain, sc, np.zeros(n, np.int64), 0.8))
    b = rng.uniform(0, 500, (3000, 2))
    b = np.concatenate([b, b + rng.uniform(1, 80, (3000, 2))], 1).astype(np.float32)
    s = rng.random(3000).astype(np.float32)
    g = rng.integers(0, 5, 3000)
    np.testing.assert_array_equal(_grouped_nms(b, s, g, 0.7), batched_nms(b, s, g, 0.7))


# --------------------------------------------------------------------------------------------------
# properties and bad input
# --------------------------------------------------------------------------------------------------

@settings(max_examples=_examples(30))
@given(case=rsr.proposal_inputs(distinct=False, max_per_level=200),
       convention=st.sampled_from(("torchvision", "detectron2", "mmdet", "caffe")))
def test_filter_proposals_invariants(case, convention):
    counts = case["num_anchors_per_level"]
    obj = case["objectness"]
    if convention == "caffe":
        obj = 1 / (1 + np.exp(-obj))
        counts = [sum(counts)]
    p, o = readonly(case["proposals"], obj)
    r = filter_proposals(p, o, case["image_sizes"], counts, convention=convention)
    for i, (h, w) in enumerate(case["image_sizes"]):
        b = r.boxes[i]
        lim = (w - 1, h - 1) if convention == "caffe" else (w, h)
        assert (b >= 0).all() and (b[:, 0::2] <= lim[0]).all() and (b[:, 1::2] <= lim[1]).all()
        assert len(np.unique(r.anchor_indices[i])) == len(b) <= conventions.describe(
            "filter_proposals")[convention]["post_nms_top_n"][1]
        assert (np.diff(r.scores[i]) <= 0).all()                 # best first
        hi = np.array([lim[0], lim[1], lim[0], lim[1]], dtype=b.dtype)
        _bits_equal(b, np.clip(case["proposals"][i][r.anchor_indices[i]], b.dtype.type(0), hi))


def test_filter_proposals_empty_and_single_image():
    r = filter_proposals(np.zeros((0, 4)), np.zeros(0), (10, 10), [0, 0])
    assert r.boxes[0].shape == (0, 4) and r.levels[0].shape == (0,)
    r = select_proposals(np.zeros(0), np.zeros((0, 4)), np.zeros((0, 4)), (10, 10), [0])
    assert len(r.boxes) == 1 and len(r.boxes[0]) == 0


@pytest.mark.parametrize("call,err,match", [
    (lambda: filter_proposals(np.zeros((3, 4)), np.zeros(3), (10, 10), [2]), ValueError,
     r"`num_anchors_per_level` must sum to the number of anchors N = 3"),
    (lambda: filter_proposals(np.zeros((3, 4)), np.zeros(2), (10, 10), [3]), ValueError,
     r"`objectness` must have shape"),
    (lambda: filter_proposals(np.zeros((3, 5)), np.zeros(3), (10, 10), [3]), ValueError,
     r"`proposals` must have shape"),
    (lambda: filter_proposals(np.full((1, 4), np.nan), np.zeros(1), (10, 10), [1]), ValueError, r"`proposals`.*NaN"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.array([np.inf]), (10, 10), [1]), ValueError, r"`objectness`"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.zeros(1), [(10, 10), (5, 5)], [1]), ValueError,
     r"`image_sizes` must hold one \(H, W\) per image \(1\)"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.zeros(1), (10, 10), [1], nms_thresh=1.5), ValueError,
     r"`nms_thresh`"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.zeros(1), (10, 10), [1], pre_nms_top_n=(1, 2, 3)), ValueError,
     r"\(train, test\) pair"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.zeros(1), (10, 10), [1], training=1), TypeError,
     r"`training` must be a bool"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.zeros(1), (10, 10), [1], convention="tf"), ValueError,
     r"`convention` must be one of"),
    (lambda: filter_proposals(np.zeros((1, 4)), np.zeros(1), (10, 10), [1], image_scales=[0.0]), ValueError,
     r"`image_scales\[0\]` must be > 0"),
    (lambda: select_proposals(np.zeros(2), np.zeros((2, 4)), np.zeros((3, 4)), (10, 10), [2]), ValueError,
     r"`anchors` must have shape"),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()
