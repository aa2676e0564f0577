"""One RetinaNet train step of the demo model: refdet (hand-written backward) vs the same architecture
in torch autograd.

Both sides: batch 8 of 3 x 64 x 64 synthetic images, the demo's backbone (four 3x3 stride-2 conv +
ReLU), an FPN (torchvision FeaturePyramidNetwork + LastLevelP6P7 from C5) and RetinaNet subnets with
the demo's width and depth, the same weights, and the same per-anchor targets (computed once by
refdet); the loss is the sigmoid focal loss over non-ignored anchors + smooth L1 over positives, each
divided per image by max(1, positives), then averaged (torchvision's normalisation). Timed: forward,
loss and backward (refdet: ``Detector.train_step`` also computes the targets each step).
Issue target: at most 1.5x torch. Also times one whole default ``refdet demo`` step budget estimate.
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


_other = _torch_step if torchvision_or_none() is not None else None
BENCHMARKS = [
    Bench("RetinaNet demo train step, batch 8, float32", _setup, _refdet_step, other=_other,
          other_name="same architecture, torch autograd", target=1.5, repeat=21),
    Bench("  the same, refdet also assigning targets", _setup, _refdet_step_with_targets, other=_other,
          other_name="(torch side without assignment)", repeat=5),
]
