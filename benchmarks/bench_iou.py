"""box_iou speed: refdet against torchvision.ops.box_iou (same process, 1 thread, medians).

Target (issue 2): ``box_iou`` on 120,000 x 100 float32 boxes at most 0.35x torchvision's time.
The floor is the memory traffic that cannot be avoided: writing the (N, M) result and reading both box
sets once. refdet works on blocks of rows that stay in cache (no (N, M, 2) temporaries), so it runs
close to the floor; torchvision materialises several (N, M, 2) tensors.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet.iou import box_iou, generalized_box_iou


def _boxes(n, seed):
    g = np.random.default_rng(seed)
    xy = g.uniform(0, 1000, size=(n, 2))
    wh = g.uniform(1, 200, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _setup(n, m):
    def setup():
        a, b = _boxes(n, 0), _boxes(m, 1)
        st = {"a": a, "b": b, "out": np.empty((n, m), np.float32)}
        torch = torch_or_none()
        if torch is not None:
            st["ta"], st["tb"] = torch.from_numpy(a), torch.from_numpy(b)
        return st
    return setup


def _tv(fn_name):
    tv = torchvision_or_none()
    if tv is None:
        return None
    fn = getattr(tv.ops, fn_name)
    return lambda s: fn(s["ta"], s["tb"])


def _floor(s):
    n, m = len(s["a"]), len(s["b"])
    return n * m * 4 + (n + m) * 16


BENCHMARKS = [
    Bench("box_iou 120000x100 float32", _setup(120000, 100), lambda s: box_iou(s["a"], s["b"]),
          other=_tv("box_iou"), other_name="torchvision.ops.box_iou", target=0.35, floor_bytes=_floor),
    Bench("box_iou 120000x100 float32, out=", _setup(120000, 100),
          lambda s: box_iou(s["a"], s["b"], out=s["out"]),
          other=_tv("box_iou"), other_name="torchvision.ops.box_iou", target=0.35, floor_bytes=_floor),
    Bench("box_iou 2000x2000 float32", _setup(2000, 2000), lambda s: box_iou(s["a"], s["b"]),
          other=_tv("box_iou"), other_name="torchvision.ops.box_iou", floor_bytes=_floor),
    Bench("box_iou 100x120000 float32 (transposed shape)", _setup(100, 120000),
          lambda s: box_iou(s["a"], s["b"]),
          other=_tv("box_iou"), other_name="torchvision.ops.box_iou", floor_bytes=_floor),
    Bench("generalized_box_iou 2000x1000 float32", _setup(2000, 1000),
          lambda s: generalized_box_iou(s["a"], s["b"]),
          other=_tv("generalized_box_iou"), other_name="torchvision.ops.generalized_box_iou",
          floor_bytes=_floor),
]
