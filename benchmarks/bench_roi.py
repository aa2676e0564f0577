"""RoI operators: refdet.roi vs torchvision.ops (same process, 1 thread, float32).

Issue 14 targets:

* ``roi_align`` forward + backward of 512 RoIs, 7x7 bins, from a (2, 256, 100, 152) map (stride 8 of an
  800 x 1216 image), sampling ratio 2: at most 1.5x ``torchvision.ops.roi_align`` + autograd;
* ``MultiScaleRoIAlign`` over P2-P5 of an 800 x 1216 batch of 2 (512 RoIs, sampling ratio 2), forward +
  backward: at most 1.5x ``torchvision.ops.MultiScaleRoIAlign`` + autograd;
* proposal selection for the 5 levels (P2-P6, 3 anchors per location: 242,991 anchors) of one
  800 x 1216 image, test settings (1000 per level before NMS, 1000 after): at most 1x torchvision's RPN
  inference step, ``BoxCoder.decode`` of every anchor + ``RegionProposalNetwork.filter_proposals``
  (refdet decodes only the anchors that survive the per-level top-k; the boxes are the same).

Both sides get the same arrays and produce the same bits (checked once at setup: refdet reproduces
torchvision's kernels' order of operations, forward and backward). Also measured, without target:
forward alone, the adaptive sampling ratio, and RoI max pooling.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet.proposals import filter_proposals, select_proposals
from refdet.roi import (multiscale_roi_align_backward, multiscale_roi_align_forward, roi_align_backward,
                        roi_align_forward, roi_pool_backward, roi_pool_forward)

IMAGE = (800, 1216)
K = 512


def _rois(rng, n=K, batch=2):
    """Proposal-like boxes: sizes 16-600 px (all FPN levels), centres anywhere in the image."""
    ctr = rng.uniform([0, 0], [IMAGE[1], IMAGE[0]], size=(n, 2))
    wh = np.exp(rng.uniform(np.log(16), np.log(600), size=(n, 2)))
    xy1 = np.clip(ctr - wh / 2, 0, [IMAGE[1], IMAGE[0]])
    xy2 = np.clip(ctr + wh / 2, 0, [IMAGE[1], IMAGE[0]])
    return np.concatenate([rng.integers(0, batch, (n, 1)), xy1, xy2], axis=1).astype(np.float32)


def _setup_align(sampling_ratio=2, op="align"):
    def setup():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 256, 100, 152)).astype(np.float32)
        rois = _rois(rng)
        state = {"x": x, "rois": rois, "sr": sampling_ratio}
        fwd = roi_align_forward if op == "align" else roi_pool_forward
        kw = dict(sampling_ratio=sampling_ratio) if op == "align" else {}
        y, cache = fwd(x, rois, 7, 1 / 8, **kw)
        state["g"] = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        torch, tv = torch_or_none(), torchvision_or_none()
        if torch is not None and tv is not None:
            state["tx"] = torch.from_numpy(x).requires_grad_()
            state["trois"], state["tg"] = torch.from_numpy(rois), torch.from_numpy(state["g"])
            yt = _tv_call(state, op)
            yt.backward(state["tg"])
            bwd = roi_align_backward if op == "align" else roi_pool_backward
            assert np.array_equal(yt.detach().numpy(), y), "refdet and torchvision disagree (forward)"
            assert np.array_equal(state["tx"].grad.numpy(), bwd(state["g"], cache).dfeatures), \
                "refdet and torchvision disagree (backward)"
            state["tx"].grad = None
        return state
    return setup


def _tv_call(s, op):
    ops = torchvision_or_none().ops
    if op == "align":
        return ops.roi_align(s["tx"], s["trois"], 7, 1 / 8, s["sr"], False)
    return ops.roi_pool(s["tx"], s["trois"], 7, 1 / 8)


def _refdet_fwd_bwd(op):
    def run(s):
        if op == "align":
            y, c = roi_align_forward(s["x"], s["rois"], 7, 1 / 8, s["sr"])
            return roi_align_backward(s["g"], c)
        y, c = roi_pool_forward(s["x"], s["rois"], 7, 1 / 8)
        return roi_pool_backward(s["g"], c)
    return run


def _tv_fwd_bwd(op):
    def run(s):
        s["tx"].grad = None
        _tv_call(s, op).backward(s["tg"])
    return run


def _setup_ms():
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((2, 256, IMAGE[0] // s, IMAGE[1] // s)).astype(np.float32) for s in (4, 8, 16, 32)]
    rois = _rois(rng)
    boxes = [rois[rois[:, 0] == i, 1:].copy() for i in range(2)]
    state = {"feats": feats, "boxes": boxes, "sizes": [IMAGE, IMAGE]}
    y, cache = multiscale_roi_align_forward(feats, boxes, 7, image_sizes=state["sizes"])
    state["g"] = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    torch, tv = torch_or_none(), torchvision_or_none()
    if torch is not None and tv is not None:
        from collections import OrderedDict
        state["m"] = tv.ops.MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)
        state["tx"] = OrderedDict((f"p{i + 2}", torch.from_numpy(f).requires_grad_()) for i, f in enumerate(feats))
        state["tboxes"], state["tg"] = [torch.from_numpy(b) for b in boxes], torch.from_numpy(state["g"])
        yt = state["m"](state["tx"], state["tboxes"], state["sizes"])
        yt.backward(state["tg"])
        assert np.array_equal(yt.detach().numpy(), y)
        for d, t in zip(multiscale_roi_align_backward(state["g"], cache).dfeatures, state["tx"].values()):
            assert np.array_equal(d, t.grad.numpy())
    return state


def _ms_refdet(s):
    y, c = multiscale_roi_align_forward(s["feats"], s["boxes"], 7, image_sizes=s["sizes"])
    return multiscale_roi_align_backward(s["g"], c)


def _ms_tv(s):
    for t in s["tx"].values():
        t.grad = None
    s["m"](s["tx"], s["tboxes"], s["sizes"]).backward(s["tg"])


def _setup_proposals():
    rng = np.random.default_rng(0)
    sizes = [(IMAGE[0] // s, IMAGE[1] // s) for s in (4, 8, 16, 32, 64)]
    counts = [3 * h * w for h, w in sizes]
    anchors = []
    for (h, w), stride, size in zip(sizes, (4, 8, 16, 32, 64), (32, 64, 128, 256, 512)):
        ys, xs = np.mgrid[0:h, 0:w] * stride
        hr = np.sqrt([0.5, 1.0, 2.0])
        cell = np.round(np.stack([-size / hr, -size * hr, size / hr, size * hr], 1) / 2)     # torchvision's
        anchors.append((np.stack([xs, ys, xs, ys], -1)[:, :, None] + cell).reshape(-1, 4))
    anchors = np.concatenate(anchors).astype(np.float32)
    n = len(anchors)
    state = {"anchors": anchors, "counts": counts,
             # distinct logits whose float32 sigmoids differ too: torchvision's final sort is not stable,
             # so equal scores could be listed in another order (the same proposals)
             "logits": ((rng.permutation(n) - n / 2) * (12.0 / n)).astype(np.float32)[None],
             "deltas": (rng.standard_normal((1, n, 4)) * 0.3).astype(np.float32)}
    torch, tv = torch_or_none(), torchvision_or_none()
    if torch is not None and tv is not None:
        from torchvision.models.detection._utils import BoxCoder
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
        state["coder"] = BoxCoder((1.0, 1.0, 1.0, 1.0))
        state["rpn"] = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, 256, 0.5,
                                             dict(training=2000, testing=1000), dict(training=2000, testing=1000),
                                             0.7).eval()
        state["t"] = [torch.from_numpy(state[k]) for k in ("logits", "deltas", "anchors")]
        tb, _ = _tv_proposals(state)
        props = state["coder"].decode(state["t"][1].reshape(-1, 4), [state["t"][2]]).view(1, -1, 4).numpy()
        mine = filter_proposals(props, state["logits"], [IMAGE], counts)
        assert np.array_equal(mine.boxes[0], tb[0].numpy()), "refdet and torchvision disagree"
    return state


def _tv_proposals(s):
    logits, deltas, anchors = s["t"]
    props = s["coder"].decode(deltas.reshape(-1, 4), [anchors]).view(1, -1, 4)
    return s["rpn"].filter_proposals(props, logits, [IMAGE], s["counts"])


_have_tv = torchvision_or_none() is not None and torch_or_none() is not None

BENCHMARKS = [
    Bench("roi_align fwd+bwd 512 RoIs 7x7 (2,256,100,152) sr 2", _setup_align(2), _refdet_fwd_bwd("align"),
          _tv_fwd_bwd("align") if _have_tv else None, "torchvision.ops.roi_align + autograd", target=1.5, repeat=3),
    Bench("roi_align fwd 512 RoIs 7x7 sr 2", _setup_align(2),
          lambda s: roi_align_forward(s["x"], s["rois"], 7, 1 / 8, s["sr"]),
          (lambda s: _tv_call(s, "align").detach()) if _have_tv else None, "torchvision.ops.roi_align", repeat=3),
    Bench("roi_align fwd+bwd 512 RoIs 7x7 adaptive sr", _setup_align(-1), _refdet_fwd_bwd("align"),
          _tv_fwd_bwd("align") if _have_tv else None, "torchvision.ops.roi_align + autograd", repeat=3),
    Bench("MultiScaleRoIAlign fwd+bwd P2-P5 512 RoIs 7x7", _setup_ms, _ms_refdet, _ms_tv if _have_tv else None,
          "torchvision.ops.MultiScaleRoIAlign + autograd", target=1.5, repeat=3),
    Bench("proposal selection 5 levels 800x1216 (243k anchors)", _setup_proposals,
          lambda s: select_proposals(s["logits"], s["deltas"], s["anchors"], [IMAGE], s["counts"]),
          _tv_proposals if _have_tv else None, "torchvision BoxCoder.decode + RPN.filter_proposals", target=1.0),
    Bench("roi_pool fwd+bwd 512 RoIs 7x7", _setup_align(op="pool"), _refdet_fwd_bwd("pool"),
          _tv_fwd_bwd("pool") if _have_tv else None, "torchvision.ops.roi_pool + autograd", repeat=3),
]
