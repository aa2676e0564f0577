"""Tests of refdet.roi_heads: RoI sampling, the box head, the Fast R-CNN loss and post-processing; golden
cases per framework, gradient checks, and differential tests against torchvision's RoIHeads (sampling
with torch's own random draws injected, loss with autograd, postprocess_detections)."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import conventions
from refdet.roi_heads import (box_head_backward, box_head_forward, box_head_init, class_specific_targets,
                              fastrcnn_loss_backward, fastrcnn_loss_forward, fastrcnn_postprocess, sample_rois)
from refdet.testing import check_gradients
from tests._torchutil import _bits_equal, _state, _torch
from tests.conftest import readonly


def _examples(n):
    """``n`` examples, or the thorough profile's 1000 (HYPOTHESIS_PROFILE=thorough)."""
    return 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else n


def _scene(rng, n_props=300, n_gt=4, size=(200, 300), dtype=np.float32):
    H, W = size
    gxy = rng.uniform(0, [W - 60, H - 60], (n_gt, 2))
    gt = np.concatenate([gxy, gxy + rng.uniform(20, 60, (n_gt, 2))], 1)
    which = rng.integers(0, max(n_gt, 1), n_props)
    jit = rng.normal(0, 12, (n_props, 4))
    near = gt[which] + jit if n_gt else rng.uniform(0, 100, (n_props, 4))
    far = rng.uniform(0, [W, H, W, H], (n_props, 4))
    props = np.where(rng.random((n_props, 1)) < 0.6, near, far)
    props = np.concatenate([np.minimum(props[:, :2], props[:, 2:]), np.maximum(props[:, :2], props[:, 2:])], 1)
    return props.astype(dtype), gt.astype(dtype), rng.integers(1, 6, n_gt)


# --------------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------------

def test_sample_rois_golden_torchvision():
    # one gt [0, 0, 10, 10]; proposals with IoU 1 (copy), 0.5 ([0, 0, 10, 5]: 50/100), 0.49 and 0
    gt = [np.array([[0, 0, 10, 10.0]])]
    props = [np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 4.9], [50, 50, 60, 60.0]])]
    r = sample_rois(props, gt, [np.array([3])], rng=0)
    # the gt is appended (index 4); IoU >= 0.5 is foreground with the gt's label, below is background 0;
    # every candidate fits the 512 sample, returned in index order
    assert r.sampled_indices[0].tolist() == [0, 1, 2, 3, 4]
    assert r.labels[0].tolist() == [3, 3, 0, 0, 3]
    np.testing.assert_array_equal(r.regression_targets[0][0], [0, 0, 0, 0])
    # [0, 0, 10, 5] -> gt: centre y 2.5 -> 5: dy = 10 * 2.5 / 5 = 5; dh = 5 * log(10 / 5)
    np.testing.assert_allclose(r.regression_targets[0][1], [0, 5, 0, 5 * np.log(2)], rtol=1e-15)
    # batch 2, fraction 0.5: one foreground, one background
    r2 = sample_rois(props, gt, [np.array([3])], rng=1, batch_size_per_image=2, positive_fraction=0.5)
    assert sorted(r2.labels[0].tolist()) == [0, 3]


def test_sample_rois_golden_py_faster_rcnn_and_detectron2():
    gt = [np.array([[0, 0, 9, 9.0]])]
    # +1 IoU: [0, 0, 9, 4] vs gt: 10*5 / 100 = 0.5 -> fg; [0, 0, 9, 0] = 10*1 / 100 = 0.1 -> bg (>= 0.1);
    # [0, 0, 8, 0]: 9 / 100 = 0.09 -> ignored (below BG_THRESH_LO); [40, 40, 49, 49]: 0 -> ignored
    props = [np.array([[0, 0, 9, 4], [0, 0, 9, 0], [0, 0, 8, 0], [40, 40, 49, 49.0]])]
    r = sample_rois(props, gt, [np.array([2])], rng=0, convention="caffe")
    idx = r.sampled_indices[0]
    assert sorted(idx.tolist()) == [0, 1, 4] and set(idx[:2].tolist()) == {0, 4}     # fg draws first
    assert dict(zip(idx.tolist(), r.labels[0].tolist())) == {0: 2, 1: 0, 4: 2}
    # detectron2 labels background num_classes - 1 (= 5 here), objects 0..4
    d = sample_rois([np.array([[0, 0, 9, 9], [30, 30, 40, 40.0]])], gt, [np.array([1])], num_classes=6,
                    rng=0, convention="detectron2")
    assert sorted(zip(d.sampled_indices[0].tolist(), d.labels[0].tolist())) == [(0, 1), (1, 5), (2, 1)]
    assert d.labels[0][-1] == 5          # foreground first, then background
    # py-faster-rcnn's foreground quota is np.round(0.25 * 128) = 32; with batch 10: round(2.5) = 2 (half even)
    many = [np.tile(np.array([[0, 0, 9, 9.0]]), (20, 1))]
    q = sample_rois(many, gt, [np.array([2])], rng=0, convention="caffe", batch_size_per_image=10)
    assert (q.labels[0] == 2).sum() == 2
    q = sample_rois(many, gt, [np.array([2])], rng=0, convention="caffe", batch_size_per_image=14)
    assert (q.labels[0] == 2).sum() == 4         # round(3.5) = 4


def test_sample_rois_image_without_objects_and_bad_input():
    r = sample_rois([np.array([[0, 0, 5, 5.0]])], [np.zeros((0, 4))], [np.zeros(0, np.int64)], rng=0)
    assert r.labels[0].tolist() == [0] and r.matched_idxs[0].tolist() == [0]
    with pytest.raises(ValueError, match=r"`num_classes`"):
        sample_rois([np.zeros((1, 4))], [np.zeros((0, 4))], [np.zeros(0, np.int64)], convention="detectron2")
    with pytest.raises(ValueError, match=r"`gt_labels\[0\]` must be object classes >= 1"):
        sample_rois([np.array([[0, 0, 5, 5.0]])], [np.array([[1, 1, 4, 4.0]])], [np.array([0])])
    with pytest.raises(ValueError, match=r"`gt_boxes` must have one entry per image \(1\)"):
        sample_rois([np.zeros((1, 4))], [], [])
    with pytest.raises(TypeError, match=r"`proposals` must be a list"):
        sample_rois(np.zeros((1, 4)), [np.zeros((0, 4))], [np.zeros(0, np.int64)])
    with pytest.raises(ValueError, match=r"`proposals\[0\]`.*NaN"):
        sample_rois([np.full((1, 4), np.nan)], [np.zeros((0, 4))], [np.zeros(0, np.int64)])


@settings(max_examples=_examples(25))
@given(seed=st.integers(0, 2 ** 31 - 1), n_gt=st.integers(0, 6), batch=st.sampled_from((8, 64, 512)))
def test_sample_rois_matches_torchvision_with_its_random_draws(seed, n_gt, batch):
    torch = _torch()
    from torchvision.models.detection.roi_heads import RoIHeads
    rng = np.random.default_rng(seed)
    imgs = [_scene(rng, n_gt=n_gt) for _ in range(2)]
    heads = RoIHeads(None, None, None, 0.5, 0.5, batch, 0.25, None, 0.05, 0.5, 100)
    tprops = [torch.from_numpy(p) for p, _, _ in imgs]
    targets = [dict(boxes=torch.from_numpy(g), labels=torch.from_numpy(lab)) for _, g, lab in imgs]
    torch.manual_seed(seed)
    t_rois, t_matched, t_labels, t_targets = heads.select_training_samples([t.clone() for t in tprops], targets)
    # torch's draws: per image randperm(#fg) then randperm(#bg), from the same seed
    _, labels = heads.assign_targets_to_proposals(heads.add_gt_proposals([t.clone() for t in tprops],
                                                                         [t["boxes"] for t in targets]),
                                                  [t["boxes"] for t in targets], [t["labels"] for t in targets])
    torch.manual_seed(seed)
    perms = [(torch.randperm(int((lab >= 1).sum())).numpy(), torch.randperm(int((lab == 0).sum())).numpy())
             for lab in labels]
    r = sample_rois([p for p, _, _ in imgs], [g for _, g, _ in imgs], [lab for _, _, lab in imgs],
                    permutations=perms, batch_size_per_image=batch)
    for i in range(2):
        _bits_equal(r.rois[i], t_rois[i].numpy())
        np.testing.assert_array_equal(r.labels[i], t_labels[i].numpy())
        np.testing.assert_array_equal(r.matched_idxs[i], t_matched[i].numpy())
        # encode's log: correctly rounded here, MKL in torch (an ulp apart)
        np.testing.assert_allclose(r.regression_targets[i], t_targets[i].numpy(), rtol=1e-5, atol=1e-5)


def test_class_specific_targets():
    t = np.array([[1, 2, 3, 4.0], [5, 6, 7, 8], [9, 9, 9, 9]])
    bt, iw, ow = class_specific_targets(t, np.array([2, 0, -1]), 3)
    np.testing.assert_array_equal(bt[0], [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
    assert not bt[1:].any() and iw[0, 8:].tolist() == [1, 1, 1, 1] and iw.sum() == 4
    np.testing.assert_array_equal(ow, iw)
    bt, _, _ = class_specific_targets(t, np.array([0, 2, 1]), 3, background="last")
    np.testing.assert_array_equal(bt[0, :4], [1, 2, 3, 4])
    assert not bt[1].any()


# --------------------------------------------------------------------------------------------------
# box head
# --------------------------------------------------------------------------------------------------

def test_box_head_matches_torchvision_and_state_dict_keys(rng):
    torch = _torch()
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.roi_heads import RoIHeads
    torch.manual_seed(0)
    heads = RoIHeads(None, TwoMLPHead(8 * 3 * 3, 32), FastRCNNPredictor(32, 5), 0.5, 0.5, 512, 0.25, None,
                     0.05, 0.5, 100).double()
    params = _state(heads)
    assert sorted(params) == sorted(box_head_init(8 * 3 * 3, 5, representation_size=32))
    x = rng.standard_normal((6, 8, 3, 3))
    out, cache = box_head_forward(params, readonly(x))
    xt = torch.from_numpy(x).requires_grad_()
    logits, deltas = heads.box_predictor(heads.box_head(xt))
    np.testing.assert_allclose(out.class_logits, logits.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.box_regression, deltas.detach().numpy(), rtol=1e-12, atol=1e-12)
    gl, gd = rng.standard_normal(out.class_logits.shape), rng.standard_normal(out.box_regression.shape)
    (logits * torch.from_numpy(gl)).sum().add((deltas * torch.from_numpy(gd)).sum()).backward()
    dparams, dx = box_head_backward((gl, gd), cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    for k, v in heads.named_parameters():
        np.testing.assert_allclose(dparams[k], v.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=k)


def test_box_head_init_conventions():
    p = box_head_init(20, 4, representation_size=16, rng=0)
    assert p["box_head.fc6.weight"].shape == (16, 20) and p["box_predictor.bbox_pred.weight"].shape == (16, 16)
    assert p["box_head.fc6.weight"].dtype == np.float32
    assert np.abs(p["box_head.fc6.weight"]).max() <= 1 / np.sqrt(20)
    d = box_head_init(20, 4, representation_size=16, num_reg_classes=3, rng=0, convention="detectron2")
    assert d["box_predictor.bbox_pred.weight"].shape == (12, 16) and not d["box_head.fc6.bias"].any()
    assert np.abs(d["box_predictor.bbox_pred.weight"]).max() < 0.01
    with pytest.raises(ValueError, match=r"`params` is missing"):
        box_head_forward({}, np.zeros((1, 20)))
    with pytest.raises(ValueError, match=r"flatten to 21 values per RoI but fc6 takes 20"):
        box_head_forward(p, np.zeros((1, 21)))


def test_box_head_gradcheck(rng):
    p = box_head_init(12, 3, representation_size=5, rng=1, dtype=np.float64)
    x = rng.standard_normal((4, 3, 2, 2))
    check_gradients(box_head_forward, box_head_backward, (p, x), rng=0)


# --------------------------------------------------------------------------------------------------
# the Fast R-CNN loss
# --------------------------------------------------------------------------------------------------

def test_fastrcnn_loss_golden():
    # 2 RoIs, 3 classes; logits 0 -> softmax 1/3 -> CE log 3 each; RoI 0 is class 2 (fg), RoI 1 background.
    # box: RoI 0's slot 2 deltas [0.05, 0, 1, 0] vs targets 0: smooth L1 beta 1/9:
    # 0.05 < 1/9: 0.5 * 0.0025 * 9 = 0.01125; 1 >= 1/9: 1 - 1/18; sum / N = (0.01125 + 17/18) / 2
    z = np.zeros((2, 3))
    d = np.zeros((2, 12))
    d[0, 8:] = [0.05, 0, 1, 0]
    loss, _ = fastrcnn_loss_forward(z, d, np.array([2, 0]), np.zeros((2, 4)))
    assert loss.classification == pytest.approx(np.log(3), rel=1e-15)
    assert loss.box == pytest.approx((0.01125 + 17 / 18) / 2, rel=1e-14)
    # detectron2: L1 (beta 0): (0.05 + 1) / 2; background last (label 2 is the background of 3 classes)
    d2 = np.zeros((2, 8))
    d2[0, :4] = [0.05, 0, 1, 0]
    l2, _ = fastrcnn_loss_forward(z, d2, np.array([0, 2]), np.zeros((2, 4)), convention="detectron2")
    assert l2.box == pytest.approx(1.05 / 2, rel=1e-15)
    # class-agnostic: 4 columns
    l3, _ = fastrcnn_loss_forward(z, d2[:, :4], np.array([0, 2]), np.zeros((2, 4)), convention="detectron2")
    assert l3.box == pytest.approx(1.05 / 2, rel=1e-15)
    # py-faster-rcnn sigma 1 (beta 1): 0.5 * 0.05^2 + 0.5 * 1 = 0.50125; outside weight 2 doubles it
    l4, _ = fastrcnn_loss_forward(z, d, np.array([2, 0]), np.zeros((2, 4)), convention="caffe")
    assert l4.box == pytest.approx(0.50125 / 2, rel=1e-14)
    l5, _ = fastrcnn_loss_forward(z, d, np.array([2, 0]), np.zeros((2, 4)), convention="caffe",
                                  outside_weights=np.full((2, 4), 2.0))
    assert l5.box == pytest.approx(0.50125, rel=1e-14)
    # empty batch: torchvision's mean of nothing is NaN, detectron2 returns 0
    e, _ = fastrcnn_loss_forward(np.zeros((0, 3)), np.zeros((0, 12)), np.zeros(0, np.int64), np.zeros((0, 4)))
    assert np.isnan(e.classification) and np.isnan(e.box)
    e2, _ = fastrcnn_loss_forward(np.zeros((0, 3)), np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros((0, 4)),
                                  convention="detectron2")
    assert e2 == (0.0, 0.0)


@settings(max_examples=_examples(30))
@given(n=st.integers(1, 40), c=st.integers(2, 6), seed=st.integers(0, 10000))
def test_fastrcnn_loss_matches_torchvision_with_autograd(n, c, seed):
    torch = _torch()
    from torchvision.models.detection.roi_heads import fastrcnn_loss
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, c)) * 3
    d = rng.standard_normal((n, 4 * c))
    labels = rng.integers(0, c, n)
    targets = rng.standard_normal((n, 4)) * 0.5
    zt, dt = torch.from_numpy(z).requires_grad_(), torch.from_numpy(d).requires_grad_()
    cls_t, box_t = fastrcnn_loss(zt, dt, [torch.from_numpy(labels[:n // 2]), torch.from_numpy(labels[n // 2:])],
                                 [torch.from_numpy(targets[:n // 2]), torch.from_numpy(targets[n // 2:])])
    loss, cache = fastrcnn_loss_forward(z, d, [labels[:n // 2], labels[n // 2:]], [targets[:n // 2], targets[n // 2:]])
    np.testing.assert_allclose(loss.classification, cls_t.item(), rtol=1e-13)
    np.testing.assert_allclose(loss.box, box_t.item(), rtol=1e-13, atol=1e-15)
    w = rng.standard_normal(2)
    (cls_t * w[0] + box_t * w[1]).backward()
    g = fastrcnn_loss_backward((w[0], w[1]), cache)
    np.testing.assert_allclose(g.dclass_logits, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g.dbox_regression, dt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("convention,cols", [("torchvision", 4 * 4), ("detectron2", 4 * 3), ("detectron2", 4),
                                             ("caffe", 4 * 4)])
def test_fastrcnn_loss_gradcheck(convention, cols):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, 4))
    d = rng.standard_normal((6, cols)) * 0.7 + 0.3          # away from the L1 / smooth-L1 kinks
    labels = np.array([1, 0, 3, 2, 1, 0]) if convention != "detectron2" else np.array([1, 3, 0, 2, 1, 3])
    check_gradients(fastrcnn_loss_forward, fastrcnn_loss_backward, (z, d, labels, np.zeros((6, 4))),
                    kwargs=dict(convention=convention), rng=0, wrt=["class_logits", "box_regression"])


def test_fastrcnn_loss_bad_input():
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 3\)"):
        fastrcnn_loss_forward(np.zeros((1, 3)), np.zeros((1, 12)), np.array([3]), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"`box_regression` must have 4, 4 \* 2 or 4 \* 3 columns"):
        fastrcnn_loss_forward(np.zeros((1, 3)), np.zeros((1, 20)), np.array([1]), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"`regression_targets` must have shape \(1, 4\)"):
        fastrcnn_loss_forward(np.zeros((1, 3)), np.zeros((1, 12)), np.array([1]), np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"`cache`"):
        fastrcnn_loss_backward((1.0, 1.0), None)
    with pytest.raises(ValueError, match=r"`beta`"):
        fastrcnn_loss_forward(np.zeros((1, 3)), np.zeros((1, 12)), np.array([1]), np.zeros((1, 4)), beta=-1.0)


# --------------------------------------------------------------------------------------------------
# post-processing
# --------------------------------------------------------------------------------------------------

def test_fastrcnn_postprocess_golden():
    # 2 RoIs, classes {bg, 1, 2}; zero deltas: boxes are the RoIs. RoI 0 scores class 1 high; RoI 1 is a
    # near copy of RoI 0 (IoU 0.9) scoring class 1 lower and class 2 high.
    props = [np.array([[0, 0, 10, 10], [0, 0, 10, 9.0]])]
    z = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.3, 0.6]]))
    d = np.zeros((2, 12))
    det = fastrcnn_postprocess(z, d, props, [(20, 20)])
    # candidates (roi, class) RoI-major: (0,1) 0.8, (0,2) 0.1, (1,1) 0.3, (1,2) 0.6; per-class NMS at 0.5
    # (IoU 0.9): (0,1) suppresses (1,1) and (1,2) suppresses (0,2)
    assert list(zip(det.rois[0].tolist(), det.labels[0].tolist())) == [(0, 1), (1, 2)]
    np.testing.assert_allclose(det.scores[0], [0.8, 0.6], rtol=1e-15)
    loose = fastrcnn_postprocess(z, d, props, [(20, 20)], nms_thresh=0.95)
    assert list(zip(loose.rois[0].tolist(), loose.labels[0].tolist())) == [(0, 1), (1, 2), (1, 1), (0, 2)]
    assert fastrcnn_postprocess(z, d, props, [(20, 20)], score_thresh=0.7).labels[0].tolist() == [1]
    # py-faster-rcnn: grouped by class; at most 2 per image keeps every score >= the 2nd best (0.6)
    c = fastrcnn_postprocess(z, d, props, [(20, 20)], convention="caffe", nms_thresh=0.95, detections_per_img=2)
    assert list(zip(c.rois[0].tolist(), c.labels[0].tolist())) == [(0, 1), (1, 2)]
    # ... and a tie at the 2nd best score keeps both tied detections (3 > 2)
    zt = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.45, 0.45]]))
    t = fastrcnn_postprocess(zt, d, props, [(20, 20)], convention="caffe", nms_thresh=0.95, detections_per_img=2)
    assert sorted(zip(t.rois[0].tolist(), t.labels[0].tolist())) == [(0, 1), (1, 1), (1, 2)]
    # detectron2: background last, deltas per object class only (2 groups)
    z2 = z[:, [1, 2, 0]]
    d2 = np.zeros((2, 8))
    r2 = fastrcnn_postprocess(z2, d2, props, [(20, 20)], convention="detectron2")
    assert list(zip(r2.rois[0].tolist(), r2.labels[0].tolist())) == [(0, 0), (1, 1)]


@settings(max_examples=_examples(25))
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(0, 120), c=st.integers(2, 8),
       dtype=st.sampled_from((np.float32, np.float64)))
def test_fastrcnn_postprocess_matches_torchvision(seed, n, c, dtype):
    torch = _torch()
    from torchvision.models.detection.roi_heads import RoIHeads
    rng = np.random.default_rng(seed)
    props = []
    for _ in range(2):
        p, _, _ = _scene(rng, n_props=n, dtype=dtype)
        props.append(p)
    R = 2 * n
    # every (RoI, object class) gets its own probability j / D, 1e-4 or more from any other: no two scores
    # tie or nearly tie (torchvision's final sort is not stable, and its softmax differs from NumPy's in the
    # last bit), so the order is defined; the + 0.37 in D keeps every j / D at least 1.8e-5 away from the
    # 0.05 threshold. Background takes the rest of each row; logits = log(p).
    M = R * (c - 1)
    fgp = (1.0 + rng.permutation(M).reshape(R, c - 1)) / ((M + 1) * c + 0.37)
    z = np.log(np.concatenate([1.0 - fgp.sum(1, keepdims=True), fgp], axis=1)).astype(dtype)
    d = (rng.standard_normal((R, 4 * c)) * 0.5).astype(dtype)
    heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100)
    tb, ts, tl = heads.postprocess_detections(torch.from_numpy(z), torch.from_numpy(d),
                                              [torch.from_numpy(p) for p in props], [(200, 300), (180, 250)])
    texp = (lambda v: torch.exp(torch.from_numpy(np.ascontiguousarray(v))).numpy())
    det = fastrcnn_postprocess(z, d, props, [(200, 300), (180, 250)], exp=texp)
    for i in range(2):
        np.testing.assert_array_equal(det.labels[i], tl[i].numpy())
        _bits_equal(det.boxes[i], tb[i].numpy())
        np.testing.assert_allclose(det.scores[i], ts[i].numpy(), rtol=4 * np.finfo(dtype).eps)


def test_fastrcnn_postprocess_bad_input():
    with pytest.raises(ValueError, match=r"`proposals` hold 1 RoIs but `class_logits` has 2 rows"):
        fastrcnn_postprocess(np.zeros((2, 3)), np.zeros((2, 12)), [np.zeros((1, 4))], [(5, 5)])
    with pytest.raises(ValueError, match=r"`image_sizes` must have one entry per image \(1\)"):
        fastrcnn_postprocess(np.zeros((1, 3)), np.zeros((1, 12)), [np.zeros((1, 4))], [])
    with pytest.raises(ValueError, match=r"`nms_thresh`"):
        fastrcnn_postprocess(np.zeros((1, 3)), np.zeros((1, 12)), [np.zeros((1, 4))], [(5, 5)], nms_thresh=2.0)


def test_convention_tables():
    for op in ("sample_rois", "fastrcnn_loss", "fastrcnn_postprocess", "box_head_init"):
        t = conventions.describe(op)
        assert "torchvision" in t
    assert conventions.describe("fastrcnn_loss")["torchvision"]["beta"] == 1 / 9
    assert conventions.describe("sample_rois")["caffe"]["batch_size_per_image"] == 128
