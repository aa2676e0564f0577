"""Head benchmarks: a RetinaNet head (both subnets) forward + backward against torch autograd.

RetinaNet head at the paper's width: C = 256 channels, A = 9 anchors, K = 80 classes, one 50 x 50
feature map (batch 1), float32, one thread. refdet: ``retinanet_head_forward`` +
``retinanet_head_backward`` (10 convolutions forward, their input and weight gradients backward);
other: torchvision's ``RetinaNetHead`` (same weights) + ``torch.autograd.backward``. The floor is
the GEMM work (forward 2*F*C*9*H*W flops per conv, backward twice that) at the machine's float32
GEMM rate.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet import heads

_C, _A, _K, _H, _W = 256, 9, 80, 50, 50


def _setup():
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float32) for k, v in heads.retinanet_head_init(_C, _A, _K, rng=0).items()}
    x = rng.standard_normal((1, _C, _H, _W)).astype(np.float32)
    state = {"params": params, "x": x,
             "d_cls": rng.standard_normal((1, _A * _K, _H, _W)).astype(np.float32),
             "d_box": rng.standard_normal((1, 4 * _A, _H, _W)).astype(np.float32)}
    tv = torchvision_or_none()
    if tv is not None:
        torch = torch_or_none()
        from torchvision.models.detection.retinanet import RetinaNetHead

        head = RetinaNetHead(_C, _A, _K)
        head.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
        state.update(head=head, xt=torch.from_numpy(x.copy()),
                     d_cls_t=torch.from_numpy(state["d_cls"].copy()), d_box_t=torch.from_numpy(state["d_box"].copy()))
    return state


def _refdet(s):
    out, cache = heads.retinanet_head_forward(s["params"], s["x"])
    return heads.retinanet_head_backward(heads.RetinaNetHeadOutput(s["d_cls"], s["d_box"]), cache)


def _torch(s):
    import torch

    head = s["head"]
    head.zero_grad(set_to_none=True)
    x = s["xt"].detach().requires_grad_(True)
    c = head.classification_head.cls_logits(head.classification_head.conv(x))
    b = head.regression_head.bbox_reg(head.regression_head.conv(x))
    torch.autograd.backward([c, b], [s["d_cls_t"], s["d_box_t"]])
    return x.grad


def _flops(s):
    hw = _H * _W
    tower = 2 * 4 * (2 * _C * _C * 9 * hw)                 # two subnets x 4 convs
    final = 2 * (_A * _K + 4 * _A) * _C * 9 * hw
    return 3 * (tower + final), np.float32                  # forward + (dx and dw) backward


BENCHMARKS = [
    Bench(
        name=f"retinanet_head fwd+bwd C={_C} {_H}x{_W} A={_A} K={_K} f32",
        setup=_setup,
        refdet=_refdet,
        other=_torch if torchvision_or_none() is not None else None,
        other_name="torchvision RetinaNetHead + autograd",
        target=None,
        floor_flops=_flops,
        repeat=3,
    ),
]
