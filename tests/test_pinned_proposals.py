"""Pins of ``filter_proposals``' convention values (issue 19 item 2, mutation/convention_coverage.md),
and the two swaps that cannot change an answer (``mutation/convention_coverage.py`` EQUIVALENT_SWAPS):

* ``top_k_scope='all'``: one top-k over every anchor instead of one per level;
* ``rank_on``: torchvision's ``topk`` on the logits against mmdet's sort of the sigmoids, which part where
  the sigmoid saturates (sigmoid(40) == sigmoid(50) == 1.0 in float32 and float64: a tie);
* ``coordinate_trick``: the offset trick of batched NMS moves float32 coordinates by up to half an ulp
  of the offset, enough to move an IoU across 0.7; ``'torchvision'`` takes it for at most 1000 boxes;
* ``score='logit'`` and ``score='probability'`` are one function (both take the objectness as the
  score; they name what the input holds), and ``nms_profile='torchvision'`` and ``'mmdet'`` are one
  function (the two refdet.nms profiles are the same table, and the speed path used under
  'torchvision' is exact).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import conventions
from refdet.proposals import filter_proposals, select_proposals

F = np.float32


def _idx(out):
    return out.anchor_indices[0].tolist()


# ------------------------------------------------------------------------------------- top_k_scope

def test_top_k_scope_all_ranks_every_anchor_at_once():
    # two levels of two disjoint boxes, logits (3, 1 | 2, 0), pre_nms_top_n 1: per level keeps anchors
    # 0 and 2; over all anchors only anchor 0
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], float)
    obj = np.array([3.0, 1.0, 2.0, 0.0])
    kw = dict(convention="torchvision", pre_nms_top_n=1)
    assert _idx(filter_proposals(boxes, obj, (100, 100), [2, 2], top_k_scope="all", **kw)) == [0]
    assert _idx(filter_proposals(boxes, obj, (100, 100), [2, 2], top_k_scope="per_level", **kw)) == [0, 2]
    assert _idx(filter_proposals(boxes, obj, (100, 100), [2, 2], **kw)) == [0, 2]


# ------------------------------------------------------------------------------------------ rank_on

SAT_BOXES = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
SAT_LOGITS = np.array([40.0, 50.0])           # sigmoid 1.0 for both (float64 and float32)


@pytest.mark.parametrize("dtype", [np.float64, F])
@pytest.mark.parametrize("conv, kw, kept", [("torchvision", {}, [1]), ("torchvision", {"rank_on": "logit"}, [1]),
                                            ("torchvision", {"rank_on": "score"}, [0]), ("mmdet", {}, [0]),
                                            ("mmdet", {"rank_on": "score"}, [0]), ("mmdet", {"rank_on": "logit"}, [1])])
def test_rank_on_logits_or_on_saturated_sigmoids(dtype, conv, kw, kept):
    # pre_nms_top_n 1 of one level: torch.topk on the logits keeps anchor 1 (50 > 40); mmdet sorts the
    # sigmoids, equal at 1.0: the stable descending sort keeps anchor 0
    out = filter_proposals(SAT_BOXES.astype(dtype), SAT_LOGITS.astype(dtype), (100, 100), [2], convention=conv,
                           pre_nms_top_n=1, **kw)
    assert _idx(out) == kept
    assert out.scores[0].tolist() == [1.0]


def test_rank_on_goldens_are_torchs():
    torch = pytest.importorskip("torch")
    x = torch.tensor(SAT_LOGITS)
    assert x.topk(1).indices.tolist() == [1]                                    # torchvision _get_top_n_idx
    assert x.sigmoid().sort(descending=True).indices[:1].tolist() == [0]       # mmdet _predict_by_feat_single


# --------------------------------------------------------------------------------- coordinate_trick

# level 0: one box reaching 1000 (offset of level 1: 1 * (1000 + 1)); level 1: A = [0, 0, 10, 10] and
# B = [0, 0, 10, 7.00002] (float32 7.0000200): IoU 0.700002 > 0.7, B suppressed by A. Shifted by 1001,
# B's y2 1008.00002 rounds to 1008.0 in float32: height 7, IoU 0.7f = 0.69999999 <= 0.7: B kept.
LEVEL0 = np.array([[990, 990, 1000, 1000]], F)
LEVEL1 = np.array([[0, 0, 10, 10], [0, 0, 10, 7.00002]], F)
SMALL = (np.concatenate([LEVEL0, LEVEL1]), np.array([0.0, 3.0, 2.0], F), [1, 2])


def _large():
    # 1024 more disjoint level-0 boxes of low logits: 1000 of them survive the per-level top-k, so
    # 1002 boxes reach the NMS (torchvision: boxes.numel() > 4000, no trick)
    g = np.arange(32) * 30.0
    x, y = np.meshgrid(g, g)
    pad = np.stack([x.ravel(), y.ravel(), x.ravel() + 20, y.ravel() + 20], 1).astype(F)
    boxes = np.concatenate([pad, LEVEL0, LEVEL1]).astype(F)
    obj = np.concatenate([np.linspace(-1, -2, 1024), [0.0, 3.0, 2.0]]).astype(F)
    return boxes, obj, [1025, 2]


A, B = 1, 2            # anchor indices of A and B in SMALL (in the large case: 1025, 1026)


@pytest.mark.parametrize("conv, kw, kept_b", [
    ("torchvision", {}, True), ("torchvision", {"coordinate_trick": "torchvision"}, True),
    ("torchvision", {"coordinate_trick": True}, True), ("torchvision", {"coordinate_trick": False}, False),
    ("mmdet", {}, True), ("mmdet", {"coordinate_trick": False}, False),
    ("detectron2", {"coordinate_trick": False}, False), ("detectron2", {"coordinate_trick": True}, True)])
def test_coordinate_trick_on_few_boxes(conv, kw, kept_b):
    boxes, obj, counts = SMALL
    got = _idx(filter_proposals(boxes, obj, (1024, 1024), counts, convention=conv, **kw))
    assert got == ([A, B, 0] if kept_b else [A, 0])


@pytest.mark.parametrize("conv, kw, kept_b", [
    ("torchvision", {}, False), ("torchvision", {"coordinate_trick": "torchvision"}, False),
    ("torchvision", {"coordinate_trick": True}, True), ("torchvision", {"coordinate_trick": False}, False),
    ("mmdet", {}, True), ("mmdet", {"coordinate_trick": "torchvision"}, False),
    ("mmdet", {"coordinate_trick": False}, False)])
def test_coordinate_trick_on_more_than_1000_boxes(conv, kw, kept_b):
    boxes, obj, counts = _large()
    got = _idx(filter_proposals(boxes, obj, (1024, 1024), counts, convention=conv, **kw))
    # A (logit 3), B (2) if kept, the level-0 box (0), then the padding; 1000 after post_nms_top_n
    assert got[:3] == ([1025, 1026, 1024] if kept_b else [1025, 1024, 0])
    assert len(got) == 1000


def test_coordinate_trick_goldens_are_torchvisions():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

    torch.set_num_threads(1)
    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, 256, 0.5, dict(training=2000, testing=1000),
                                dict(training=2000, testing=1000), 0.7, score_thresh=0.0).eval()
    for (boxes, obj, counts), n in ((SMALL, 3), (_large(), 1000)):
        with torch.no_grad():
            b, _ = rpn.filter_proposals(torch.from_numpy(boxes[None]), torch.from_numpy(obj[None]), [(1024, 1024)],
                                        counts)
        ours = filter_proposals(boxes, obj, (1024, 1024), counts)
        assert len(b[0]) == n
        np.testing.assert_array_equal(b[0].numpy(), ours.boxes[0])


# ----------------------------------------------------------------------- the two equivalent swaps

@st.composite
def _proposal_cases(draw):
    n0 = draw(st.integers(0, 12))
    n1 = draw(st.integers(0, 12))
    n = n0 + n1
    xy = np.array(draw(st.lists(st.integers(0, 40), min_size=2 * n, max_size=2 * n)), float).reshape(n, 2)
    wh = np.array(draw(st.lists(st.integers(0, 30), min_size=2 * n, max_size=2 * n)), float).reshape(n, 2)
    boxes = np.concatenate([xy, xy + wh], 1) * 2.0
    obj = np.array(draw(st.lists(st.sampled_from([-3.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0]), min_size=n,
                                 max_size=n)))
    dtype = draw(st.sampled_from([np.float64, F]))
    return boxes.astype(dtype), obj.astype(dtype), [n0, n1], draw(st.booleans())


def _same(a, b):
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


@settings(deadline=None)
@given(_proposal_cases(), st.sampled_from(["torchvision", "detectron2", "mmdet", "caffe"]))
def test_score_logit_and_probability_are_one_function(case, conv):
    # both take the objectness as the score (only 'sigmoid' transforms it): ranking, thresholds and
    # returned scores alike
    boxes, obj, counts, training = case
    kw = dict(convention=conv, training=training, pre_nms_top_n=5, score_thresh=0.5)
    a = filter_proposals(boxes, obj, (100, 100), counts, score="logit", **kw)
    b = filter_proposals(boxes, obj, (100, 100), counts, score="probability", **kw)
    _same(a, b)
    anchors = boxes if len(boxes) else np.zeros((0, 4), boxes.dtype)
    d = np.zeros_like(anchors)
    a = select_proposals(obj, d, anchors, (100, 100), counts, score="logit", **kw)
    b = select_proposals(obj, d, anchors, (100, 100), counts, score="probability", **kw)
    _same(a, b)


def test_the_mmdet_and_torchvision_nms_profiles_are_one_table():
    for op in ("nms", "batched_nms"):
        t = conventions.describe(op)
        assert t["mmdet"] == t["torchvision"]


@settings(deadline=None)
@given(_proposal_cases(), st.sampled_from(["torchvision", "detectron2", "mmdet", "caffe"]),
       st.sampled_from([False, True, "torchvision"]))
def test_nms_profile_torchvision_and_mmdet_are_one_function(case, conv, trick):
    boxes, obj, counts, training = case
    kw = dict(convention=conv, training=training, coordinate_trick=trick)
    _same(filter_proposals(boxes, obj, (100, 100), counts, nms_profile="torchvision", **kw),
          filter_proposals(boxes, obj, (100, 100), counts, nms_profile="mmdet", **kw))


@pytest.mark.parametrize("dtype", [np.float64, F])
def test_nms_profiles_agree_on_the_speed_path(dtype):
    # more than 1000 boxes without the trick: 'torchvision' takes the sparse grouped NMS, 'mmdet'
    # refdet.batched_nms; many overlapping boxes on two levels
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 300, (3000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (3000, 2))], 1).astype(dtype)
    obj = rng.normal(0, 1, 3000).astype(dtype)
    obj[::7] = obj[0]                                           # ties
    kw = dict(coordinate_trick=False, pre_nms_top_n=5000, post_nms_top_n=5000)
    a = filter_proposals(boxes, obj, (400, 400), [1500, 1500], nms_profile="torchvision", **kw)
    b = filter_proposals(boxes, obj, (400, 400), [1500, 1500], nms_profile="mmdet", **kw)
    assert 1000 < len(a.boxes[0]) < 3000
    _same(a, b)
