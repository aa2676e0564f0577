"""Tests of refdet.postprocess: goldens, torchvision's RetinaNet / RPN inference, the multi-scale
merge, the convention resolved once and passed down as Profile objects, and memory layout."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refdet
from refdet import conventions
from refdet.postprocess import Detections, merge_multiscale_detections, postprocess_detections
from refdet.testing import strategies as rst
from tests._layouts import check_layout_independent

F32 = np.float32


@pytest.fixture(scope="module")
def tv():
    torch = pytest.importorskip("torch")
    tvm = pytest.importorskip("torchvision")
    torch.set_num_threads(1)
    return torch, tvm


# ------------------------------------------------------------------------------------- RetinaNet / RPN

def _retinanet_case(rng, levels=((6, 5), (3, 3)), A=2, K=3, dtype=F32):
    logits, deltas, anchors = [], [], []
    for (h, w) in levels:
        n = h * w * A
        logits.append(rng.normal(-1.0, 2.0, size=(n, K)).astype(dtype))
        deltas.append(rng.normal(0, 0.3, size=(n, 4)).astype(dtype))
        ctr = rng.uniform(0, 80, size=(n, 2))
        wh = rng.uniform(4, 40, size=(n, 2))
        anchors.append(np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).astype(dtype))
    return logits, deltas, anchors


def test_postprocess_retinanet_against_torchvision(tv, rng):
    torch, tvm = tv
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.retinanet import RetinaNet
    for trial in range(6):
        logits, deltas, anchors = _retinanet_case(rng)
        net = RetinaNet.__new__(RetinaNet)          # no backbone or head: only the post-processing
        torch.nn.Module.__init__(net)
        net.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        net.score_thresh, net.nms_thresh = [0.05, 0.3, 0.5][trial % 3], [0.5, 0.3][trial % 2]
        net.detections_per_img, net.topk_candidates = [300, 7][trial % 2], [1000, 10, 3][trial % 3]
        head = {"cls_logits": [torch.from_numpy(x)[None] for x in logits],
                "bbox_regression": [torch.from_numpy(x)[None] for x in deltas]}
        ref = net.postprocess_detections(head, [[torch.from_numpy(a) for a in anchors]], [(70, 90)])[0]
        got = postprocess_detections(logits, deltas, anchors, (70, 90),
                                            score_threshold=net.score_thresh, nms_threshold=net.nms_thresh,
                                            detections_per_image=net.detections_per_img,
                                            topk_candidates=net.topk_candidates,
                                            coordinate_trick="torchvision")
        assert got.labels.tolist() == ref["labels"].tolist()
        # sigmoid and exp are libm-dependent in the last float32 bit
        np.testing.assert_allclose(got.scores, ref["scores"].numpy(), rtol=2e-7, atol=0)
        np.testing.assert_allclose(got.boxes, ref["boxes"].numpy(), rtol=1e-6, atol=1e-5)


def test_postprocess_rpn_against_torchvision(tv, rng):
    torch, tvm = tv
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.rpn import RegionProposalNetwork
    logits, deltas, anchors = _retinanet_case(rng, K=1)
    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, dict(training=10, testing=15),
                                dict(training=10, testing=12), 0.6, score_thresh=0.1)
    rpn.eval()
    coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    all_anchors = torch.from_numpy(np.concatenate(anchors))
    all_deltas = torch.from_numpy(np.concatenate(deltas))
    proposals = coder.decode(all_deltas, [all_anchors]).view(1, -1, 4)
    objectness = torch.from_numpy(np.concatenate(logits))
    boxes, scores = rpn.filter_proposals(proposals, objectness, [(70, 90)], [len(a) for a in anchors])
    got = postprocess_detections(logits, deltas, anchors, (70, 90), style="rpn", topk_candidates=15,
                                        detections_per_image=12, nms_threshold=0.6, score_threshold=0.1,
                                        coordinate_trick="torchvision")
    np.testing.assert_allclose(got.scores, scores[0].numpy(), rtol=2e-7, atol=0)
    np.testing.assert_allclose(got.boxes, boxes[0].numpy(), rtol=1e-6, atol=1e-5)


def test_postprocess_golden():
    # one level, two anchors, two classes; identity deltas decode to the anchors
    anchors = [np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float64)]
    deltas = [np.zeros((2, 4))]
    # sigmoid(2) = 0.881 (anchor 0, class 1), sigmoid(1) = 0.731 (anchor 1, class 1): IoU 81/119 > 0.5,
    # same class -> anchor 1 suppressed; sigmoid(0) = 0.5 (anchor 1, class 0) survives (other class);
    # sigmoid(-5) = 0.0067 < 0.05 dropped
    logits = [np.array([[-5.0, 2.0], [0.0, 1.0]])]
    d = postprocess_detections(logits, deltas, anchors, (20, 20))
    assert d.labels.tolist() == [1, 0]
    np.testing.assert_allclose(d.scores, [1 / (1 + math.exp(-2)), 0.5], rtol=1e-15)
    assert d.boxes.tolist() == [[0, 0, 10, 10], [1, 1, 11, 11]]
    # clipping to (H, W) = (8, 9)
    d = postprocess_detections(logits, deltas, anchors, (8, 9))
    assert d.boxes.tolist() == [[0, 0, 9, 8], [1, 1, 9, 8]]


def test_nms_module_does_not_reach_up_into_postprocess():
    """Imports go down only: post-processing builds on NMS, never the other way round."""
    import refdet.nms
    assert not hasattr(refdet.nms, "postprocess_detections")
    assert refdet.postprocess_detections is postprocess_detections


# ------------------------------------------------------------------------------------- multi-scale merge

def test_merge_multiscale_golden():
    # the same object found at scale 1 and at scale 2 (boxes twice as large): after rescaling they
    # coincide, NMS keeps the higher score; another class is untouched
    d1 = (np.array([[10, 10, 20, 20], [40, 40, 50, 50]], float), np.array([0.6, 0.9]), np.array([0, 1]))
    d2 = (np.array([[20, 20, 40, 40]], float), np.array([0.8]), np.array([0]))
    out = merge_multiscale_detections([d1, d2], [1.0, 2.0], 0.5)
    assert out.scores.tolist() == [0.9, 0.8]
    assert out.boxes.tolist() == [[40, 40, 50, 50], [10, 10, 20, 20]]
    assert out.labels.tolist() == [1, 0]
    out = merge_multiscale_detections([d1, d2], [1.0, (2.0, 2.0)], 0.5, max_detections=1)
    assert out.scores.tolist() == [0.9]
    out = merge_multiscale_detections([d1, (d2[0], d2[1], np.array([1]))], [1.0, 2.0], 0.5, class_aware=False)
    assert out.scores.tolist() == [0.9, 0.8]
    empty = merge_multiscale_detections([], [], 0.5)
    assert empty.boxes.shape == (0, 4) and empty.labels.dtype == np.int64


# ------------------------------------------------------------------------------------- conventions

def _exact_half_case():
    # two anchors whose decoded boxes (zero deltas) have IoU exactly 8/16 = 0.5, same class
    anchors = [np.array([[0, 0, 4, 4], [0, 0, 4, 2]], np.float64)]
    deltas = [np.zeros((2, 4))]
    logits = [np.array([[3.0], [2.0]])]
    return logits, deltas, anchors


def test_profile_overrides_reach_nms():
    logits, deltas, anchors = _exact_half_case()
    # torchvision: IoU 0.5 is not > 0.5, both kept
    assert len(postprocess_detections(logits, deltas, anchors, (10, 10)).scores) == 2
    # a batched_nms Profile with inclusive=True: the override reaches the NMS, 0.5 >= 0.5 suppresses
    p = conventions.resolve("batched_nms", "torchvision", inclusive=True)
    d = postprocess_detections(logits, deltas, anchors, (10, 10), convention=p)
    assert d.scores.tolist() == [1 / (1 + math.exp(-3.0))]
    # the same for the multi-scale merge
    det = (anchors[0], np.array([0.9, 0.8]), np.array([0, 0]))
    assert len(merge_multiscale_detections([det], [1.0], 0.5).scores) == 2
    assert len(merge_multiscale_detections([det], [1.0], 0.5, convention=p).scores) == 1
    q = conventions.resolve("nms", "torchvision", inclusive=True)
    assert len(merge_multiscale_detections([det], [1.0], 0.5, class_aware=False, convention=q).scores) == 1


def test_convention_resolved_once_and_passed_down(monkeypatch):
    """Every op's table is looked up by name at most once per call; the stages below receive the
    resolved Profile objects (no stage re-resolves a string)."""
    calls = []
    real = conventions.resolve

    def spy(op, convention, /, **kw):
        calls.append((op, isinstance(convention, conventions.Profile)))
        return real(op, convention, **kw)

    monkeypatch.setattr(conventions, "resolve", spy)
    rng = np.random.default_rng(0)
    for style in ("retinanet", "rpn"):
        logits, deltas, anchors = _retinanet_case(rng, K=1 if style == "rpn" else 3)
        calls.clear()
        postprocess_detections(logits, deltas, anchors, (70, 90), style=style, convention="detectron2")
        from_names = [op for op, is_profile in calls if not is_profile]
        assert sorted(from_names) == sorted(set(from_names)), f"re-resolved from a name: {calls}"
        assert ("batched_nms", True) in calls and ("decode_boxes", True) in calls, calls


# ------------------------------------------------------------------------------------- memory layout

@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([F32, np.float64]), st.sampled_from(["retinanet", "rpn"]))
def test_postprocess_layout_independent(seed, dtype, style):
    rng = np.random.default_rng(seed)
    logits, deltas, anchors = _retinanet_case(rng, K=1 if style == "rpn" else 3, dtype=dtype)
    # ties in the logits: equal scores make the tie order visible
    logits = [np.round(lg, 1) for lg in logits]
    check_layout_independent(postprocess_detections, (logits, deltas, anchors, (70, 90)),
                             {"style": style, "score_threshold": 0.2, "topk_candidates": 20})


@given(rst.nms_inputs(max_n=20), st.sampled_from([True, False]))
def test_merge_layout_independent(data, class_aware):
    b, s, thr = data
    lab = (np.arange(len(b)) % 2).astype(np.int64)
    dets = [(b, s, lab), (b * 2, s[::-1].copy(), lab[::-1].copy())]
    check_layout_independent(merge_multiscale_detections, (dets, [1.0, 2.0], thr),
                             {"class_aware": class_aware})
