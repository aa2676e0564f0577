"""One RetinaNet train step of the demo model: refdet (hand-written backward) vs the same architecture
in torch autograd.

Both sides: batch 8 of 3 x 64 x 64 synthetic images, the demo's backbone (four 3x3 stride-2 conv +
ReLU), an FPN (torchvision FeaturePyramidNetwork + LastLevelP6P7 from C5) and RetinaNet subnets with
the demo's width and depth, the same weights, and the same per-anchor targets (computed once by
refdet); the loss is the sigmoid focal loss over non-ignored anchors + smooth L1 over positives, each
divided per image by max(1, positives), then averaged (torchvision's normalisation). Timed: forward,
loss and backward (refdet: ``Detector.train_step`` also computes the targets each step).
Issue target: at most 1.5x torch. Also times one whole default ``refdet demo`` step budget estimate.

YOLO (issue 16): one train step of the demo's ``Detector("yolo")`` -- backbone, FPN (torchvision
FeaturePyramidNetwork, no extra levels), the v8 head (per level a box branch of DFL logits and a class
branch; conv + bias + ReLU), task-aligned assignment and the v8 loss -- against the same network in
torch autograd with ultralytics' own ``v8DetectionLoss`` (needs the ``yolo`` extra). Both sides
assign targets inside the step (TAL depends on the predictions).
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet.detector import Detector
from refdet.synthetic import make_synthetic_dataset

B = 8


def _setup():
    det = Detector("retinanet")
    params = det.init(rng=0)
    data = make_synthetic_dataset(B, rng=1)
    targets = list(zip(data.boxes, data.labels))
    state = {"det": det, "params": params, "images": data.images, "targets": targets}
    tv = torchvision_or_none()
    if tv is None:
        return state
    import torch
    from torch import nn
    from torchvision.ops import FeaturePyramidNetwork, sigmoid_focal_loss
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    cfg = det.config
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [3] + list(cfg.backbone_channels)
            self.stages = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(4))
            self.fpn = FeaturePyramidNetwork([chans[i + 1] for i in det.in_stages], cfg.fpn_channels,
                                             extra_blocks=LastLevelP6P7(chans[-1], cfg.fpn_channels))
            f, a, k = cfg.fpn_channels, det.num_anchors[0], cfg.num_classes

            def tower():
                layers = []
                for _ in range(cfg.head_convs):
                    layers += [nn.Conv2d(f, f, 3, 1, 1), nn.ReLU()]
                return nn.Sequential(*layers)
            self.cls_conv, self.box_conv = tower(), tower()
            self.cls_out = nn.Conv2d(f, a * k, 3, 1, 1)
            self.box_out = nn.Conv2d(f, a * 4, 3, 1, 1)

        def forward(self, x):
            feats = []
            for s in self.stages:
                x = torch.relu(s(x))
                feats.append(x)
            levels = self.fpn({str(i): feats[i] for i in det.in_stages})
            cls, box = [], []
            a = det.num_anchors[0]
            for p in levels.values():
                c = self.cls_out(self.cls_conv(p))
                b = self.box_out(self.box_conv(p))
                n, _, h, w = c.shape
                cls.append(c.view(n, a, -1, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, c.shape[1] // a))
                box.append(b.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
            return torch.cat(cls, 1), torch.cat(box, 1)

    net = Net()
    sd = {}
    bp = params["backbone"]
    for i in range(4):
        sd[f"stages.{i}.weight"], sd[f"stages.{i}.bias"] = t(bp[f"stage{i}.weight"]), t(bp[f"stage{i}.bias"])
    for k, v in params["fpn"].items():
        sd["fpn." + k] = t(v)
    hp = params["head"]
    for j in range(cfg.head_convs):
        sd[f"cls_conv.{2 * j}.weight"] = t(hp[f"classification_head.conv.{j}.0.weight"])
        sd[f"cls_conv.{2 * j}.bias"] = t(hp[f"classification_head.conv.{j}.0.bias"])
        sd[f"box_conv.{2 * j}.weight"] = t(hp[f"regression_head.conv.{j}.0.weight"])
        sd[f"box_conv.{2 * j}.bias"] = t(hp[f"regression_head.conv.{j}.0.bias"])
    sd["cls_out.weight"], sd["cls_out.bias"] = t(hp["classification_head.cls_logits.weight"]), \
        t(hp["classification_head.cls_logits.bias"])
    sd["box_out.weight"], sd["box_out.bias"] = t(hp["regression_head.bbox_reg.weight"]), \
        t(hp["regression_head.bbox_reg.bias"])
    net.load_state_dict(sd)
    lt, _, _ = det.assign(det._check_targets(targets, B))
    labels = t(lt.labels)
    onehot = torch.zeros(B, len(det.anchors), cfg.num_classes)
    pos = (labels >= 0) & (labels < cfg.num_classes)  # labels: class, K background, -1 ignored
    onehot[pos, labels[pos]] = 1.0
    state.update(net=net, x=t(data.images), labels=labels, onehot=onehot, deltas=t(lt.deltas.astype(np.float32)),
                 focal=sigmoid_focal_loss)
    # sanity: both sides compute the same loss
    refdet_loss = det.train_step(params, data.images, targets)[0]["total"]
    torch_loss = float(_torch_loss(state).detach())
    assert abs(refdet_loss - torch_loss) < 1e-3 * max(1, abs(torch_loss)), (refdet_loss, torch_loss)
    return state


def _torch_loss(s):
    import torch
    import torch.nn.functional as F

    cls, box = s["net"](s["x"])
    labels = s["labels"]
    k = s["onehot"].shape[-1]
    valid = labels >= 0
    pos = valid & (labels < k)
    total = 0.0
    for i in range(cls.shape[0]):
        n = max(1, int(pos[i].sum()))
        fl = s["focal"](cls[i][valid[i]], s["onehot"][i][valid[i]], reduction="sum") / n
        bl = F.smooth_l1_loss(box[i][pos[i]], s["deltas"][i][pos[i]], beta=1.0, reduction="sum") / n
        total = total + fl + bl
    return total / cls.shape[0]


def _torch_step(s):
    s["net"].zero_grad(set_to_none=True)
    loss = _torch_loss(s)
    loss.backward()
    return loss


def _refdet_step(s):
    # like the torch side: the per-anchor targets are computed once, outside the timed step
    if "assignment" not in s:
        s["assignment"] = s["det"].assign(s["det"]._check_targets(s["targets"], B))
    return s["det"].train_step(s["params"], s["images"], s["targets"], assignment=s["assignment"])


def _refdet_step_with_targets(s):
    return s["det"].train_step(s["params"], s["images"], s["targets"])


# ---------------------------------------------------------------------------------------------------
# YOLO: the same network in torch, ultralytics' v8 loss
# ---------------------------------------------------------------------------------------------------

#: refdet parameter key -> torch named_parameters() name, per part of the params dict
YOLO_TORCH_NAMES = {
    "backbone": lambda k: "stages." + k[len("stage"):],          # stage{i}.weight -> stages.{i}.weight
    "fpn": lambda k: "fpn." + k,
    "head": lambda k: k,                                           # cv2.{i}.0.conv.weight ...
}


def _ultralytics_or_none():
    """The ultralytics package if it is installed (found without importing it: the import is slow)."""
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        return None
    import ultralytics
    return ultralytics


def _stable_tal_class():
    """ultralytics' TaskAlignedAssigner with a stable top-k (equal alignments: lowest index first), the
    only change: torch.topk leaves the order of equal values unspecified."""
    import torch
    from ultralytics.utils import tal

    class StableTopkTAL(tal.TaskAlignedAssigner):
        def select_topk_candidates(self, metrics, topk_mask=None):
            k = min(self.topk, metrics.shape[-1])
            topk_idxs = torch.sort(metrics, dim=-1, descending=True, stable=True).indices[..., :k]
            if topk_mask is None:
                topk_mask = (metrics.gather(-1, topk_idxs).max(-1, keepdim=True)[0] > self.eps).expand_as(topk_idxs)
            topk_idxs = topk_idxs.masked_fill(~topk_mask, 0)
            count = torch.zeros(metrics.shape, dtype=torch.int8)
            count.scatter_add_(-1, topk_idxs, torch.ones_like(topk_idxs, dtype=torch.int8))
            count.masked_fill_(count > 1, 0)
            return count

    return StableTopkTAL


def _setup_yolo(dtype=np.float32, batch=B):
    import types

    det = Detector("yolo")
    params = det.init(rng=0, dtype=dtype)
    data = make_synthetic_dataset(batch, rng=1)
    targets = list(zip(data.boxes, data.labels))
    state = {"det": det, "params": params, "images": data.images.astype(dtype), "targets": targets}
    if torchvision_or_none() is None or _ultralytics_or_none() is None:
        return state
    import torch
    from torch import nn
    from torchvision.ops import FeaturePyramidNetwork
    from ultralytics.utils.loss import v8DetectionLoss

    cfg = det.config
    tdt = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    class Conv(nn.Module):       # refdet's stand-in for ultralytics Conv: conv + bias, ReLU
        def __init__(self, c1, c2):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, 3, 1, 1)

        def forward(self, x):
            return torch.relu(self.conv(x))

    hp = params["head"]

    def branch(name, i):
        w0, w1, w2 = hp[f"{name}.{i}.0.conv.weight"], hp[f"{name}.{i}.1.conv.weight"], hp[f"{name}.{i}.2.weight"]
        return nn.Sequential(Conv(w0.shape[1], w0.shape[0]), Conv(w1.shape[1], w1.shape[0]),
                             nn.Conv2d(w2.shape[1], w2.shape[0], 1))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [3] + list(cfg.backbone_channels)
            self.stages = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(4))
            self.fpn = FeaturePyramidNetwork([chans[i + 1] for i in det.in_stages], cfg.fpn_channels)
            self.cv2 = nn.ModuleList(branch("cv2", i) for i in range(len(det.strides)))
            self.cv3 = nn.ModuleList(branch("cv3", i) for i in range(len(det.strides)))

        def forward(self, x):
            feats = []
            for st in self.stages:
                x = torch.relu(st(x))
                feats.append(x)
            levels = list(self.fpn({str(i): feats[i] for i in det.in_stages}).values())
            n = x.shape[0]
            boxes = torch.cat([self.cv2[i](p).view(n, 4 * det.reg_max, -1) for i, p in enumerate(levels)], -1)
            scores = torch.cat([self.cv3[i](p).view(n, cfg.num_classes, -1) for i, p in enumerate(levels)], -1)
            return {"boxes": boxes, "scores": scores, "feats": levels}   # ultralytics Detect.forward_head

    net = Net().to(tdt)
    sd = {YOLO_TORCH_NAMES[part](k): t(v) for part, d in params.items() for k, v in d.items()}
    net.load_state_dict(sd)

    class Stub(nn.Module):      # what v8DetectionLoss reads of a model: args, model[-1] (nc, reg_max, stride)
        def __init__(self):
            super().__init__()
            head = nn.Module()
            head.nc, head.reg_max, head.stride = cfg.num_classes, det.reg_max, torch.tensor(det.strides, dtype=tdt)
            self.model = nn.ModuleList([head])
            self.p = nn.Parameter(torch.zeros(1))
            self.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)

    crit = v8DetectionLoss(Stub())
    crit.assigner.__class__ = _stable_tal_class()
    h, w = det.image_size
    rows = []
    for i, (bx, lab) in enumerate(targets):      # ultralytics' batch: image, class, normalised xywh
        for b, c in zip(np.asarray(bx, np.float64), lab):
            rows.append([i, c, (b[0] + b[2]) / 2 / w, (b[1] + b[3]) / 2 / h, (b[2] - b[0]) / w, (b[3] - b[1]) / h])
    rows = np.asarray(rows, np.float64).reshape(-1, 6)
    state.update(net=net, crit=crit, tdt=tdt, x=t(state["images"]),
                 batch={"batch_idx": t(rows[:, 0]).to(tdt), "cls": t(rows[:, 1]).to(tdt),
                        "bboxes": t(rows[:, 2:]).to(tdt)})
    return state


def _torch_yolo_loss(s):
    """(ultralytics' loss * batch size, its three items) for the torch network of ``_setup_yolo``."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(s["tdt"])            # ultralytics' preprocess allocates with the default dtype
    try:
        loss, items = s["crit"](s["net"](s["x"]), s["batch"])
    finally:
        torch.set_default_dtype(old)
    return loss.sum(), torch.stack(list(items.values()))


def _torch_yolo_step(s):
    if "net" not in s:                           # ultralytics is not installed
        return None
    s["net"].zero_grad(set_to_none=True)
    loss, _ = _torch_yolo_loss(s)
    loss.backward()
    return loss


def _refdet_yolo_step(s):
    return s["det"].train_step(s["params"], s["images"], s["targets"])


_other = _torch_step if torchvision_or_none() is not None else None
_other_yolo = _torch_yolo_step if torchvision_or_none() is not None else None   # (skipped without ultralytics)
BENCHMARKS = [
    Bench("RetinaNet demo train step, batch 8, float32", _setup, _refdet_step, other=_other,
          other_name="same architecture, torch autograd", target=1.5, repeat=21),
    Bench("  the same, refdet also assigning targets", _setup, _refdet_step_with_targets, other=_other,
          other_name="(torch side without assignment)", repeat=5),
    Bench("YOLO (v8 head, TAL, v8 loss) demo train step, batch 8, float32", _setup_yolo, _refdet_yolo_step,
          other=_other_yolo, other_name="same architecture, torch autograd + ultralytics v8DetectionLoss",
          target=1.5, repeat=11),
]
