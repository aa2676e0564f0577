"""Loss benchmarks: sigmoid focal loss forward + backward on RetinaNet-sized logits, and the IoU
losses forward + backward on a batch of matched boxes.

Target (issue 5): refdet's sigmoid focal loss forward + backward on 120,000 x 80 float32 logits in at
most 0.6x the time of ``torchvision.ops.sigmoid_focal_loss`` + autograd backward, both on 1 thread.
The floor is the memory traffic: logits and targets read, the gradient written (3 x 4 bytes per
element) at the machine's copy bandwidth.

The IoU losses (no target; issue 12 built them on refdet.iou's paired forward/backward) run on
100,000 matched float32 pairs against torchvision's loss + autograd; their floor is both box sets
read and both gradients written (4 x 16 bytes per pair).
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet import losses

_N, _K = 120_000, 80


def _setup():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((_N, _K)) * 3).astype(np.float32)
    # one-hot targets: ~1 % of the anchors are positives (a RetinaNet batch), one class each
    t = np.zeros((_N, _K), np.float32)
    pos = rng.random(_N) < 0.01
    t[np.flatnonzero(pos), rng.integers(0, _K, pos.sum())] = 1
    state = {"x": x, "t": t}
    torch = torch_or_none()
    if torch is not None:
        state["xt"] = torch.from_numpy(x.copy())
        state["tt"] = torch.from_numpy(t.copy())
    return state


def _refdet(s):
    loss, cache = losses.sigmoid_focal_loss_forward(s["x"], s["t"], alpha=0.25, gamma=2.0, reduction="sum")
    return losses.sigmoid_focal_loss_backward(1.0, cache).dlogits


def _torchvision(s):
    tv = torchvision_or_none()
    x = s["xt"].detach().requires_grad_(True)
    loss = tv.ops.sigmoid_focal_loss(x, s["tt"], alpha=0.25, gamma=2.0, reduction="sum")
    loss.backward()
    return x.grad


_PAIRS = 100_000


def _box_setup():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, (_PAIRS, 2))
    p = np.concatenate([xy, xy + rng.uniform(1, 200, (_PAIRS, 2))], 1).astype(np.float32)
    g = (p + rng.uniform(-20, 20, (_PAIRS, 4))).astype(np.float32)
    g[:, 2:] = np.maximum(g[:, 2:], g[:, :2] + 1)
    state = {"p": p, "g": g}
    if torch_or_none() is not None:
        torch = torch_or_none()
        state["tp"], state["tg"] = torch.from_numpy(p.copy()), torch.from_numpy(g.copy())
    return state


def _refdet_box(kind):
    fwd, bwd = getattr(losses, f"{kind}_loss_forward"), getattr(losses, f"{kind}_loss_backward")

    def run(s):
        loss, cache = fwd(s["p"], s["g"], reduction="sum")
        return bwd(1.0, cache)
    return run


def _torchvision_box(kind):
    tv = torchvision_or_none()
    if tv is None:
        return None
    f = {"giou": tv.ops.generalized_box_iou_loss, "diou": tv.ops.distance_box_iou_loss,
         "ciou": tv.ops.complete_box_iou_loss}[kind]

    def run(s):
        p = s["tp"].detach().requires_grad_(True)
        g = s["tg"].detach().requires_grad_(True)
        f(p, g, reduction="sum").backward()
        return p.grad
    return run


BENCHMARKS = [
    Bench(
        name=f"sigmoid_focal_loss fwd+bwd {_N}x{_K} float32",
        setup=_setup,
        refdet=_refdet,
        other=_torchvision if torchvision_or_none() is not None else None,
        other_name="torchvision.ops.sigmoid_focal_loss + autograd",
        target=0.6,
        floor_bytes=lambda s: 3 * s["x"].nbytes,
        repeat=5,
    ),
]

BENCHMARKS += [
    Bench(
        name=f"{kind}_loss fwd+bwd {_PAIRS} pairs float32",
        setup=_box_setup,
        refdet=_refdet_box(kind),
        other=_torchvision_box(kind),
        other_name=f"torchvision.ops.{name}_loss + autograd",
        floor_bytes=lambda s: 4 * s["p"].nbytes,
        repeat=5,
    )
    for kind, name in (("giou", "generalized_box_iou"), ("diou", "distance_box_iou"), ("ciou", "complete_box_iou"))
]
