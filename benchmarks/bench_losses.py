"""Loss benchmarks: sigmoid focal loss forward + backward on RetinaNet-sized logits.

Target (issue 5): refdet's sigmoid focal loss forward + backward on 120,000 x 80 float32 logits in at
most 0.6x the time of ``torchvision.ops.sigmoid_focal_loss`` + autograd backward, both on 1 thread.
The floor is the memory traffic: logits and targets read, the gradient written (3 x 4 bytes per
element) at the machine's copy bandwidth.
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
