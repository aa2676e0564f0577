"""NMS: refdet.nms / batched_nms vs torchvision.ops.nms / batched_nms (same process, 1 thread).

Issue targets (N = 10,000 float32 boxes, IoU threshold 0.5):

* clustered boxes, few kept (20 objects, 500 jittered proposals each, ~90 kept): at most 0.75x
  torchvision.ops.nms;
* spread boxes, most kept (uniform over 2000 x 2000, sides 8-40, ~95% kept): at most 1.5x;
* batched_nms over 80 classes (spread boxes): at most 2x torchvision.ops.batched_nms (which takes its
  per-class loop for N > 1000 on the CPU).

Both sides get the same float32 arrays (torch tensors share memory with the NumPy arrays) and return
the same indices (checked once at setup). Also measured, without target: the float64 oracle, and
batched NMS of clustered boxes.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet.nms import batched_nms, nms

N = 10_000


def clustered(rng, n=N, k=20):
    """Proposals jittered around k objects (sizes 50-200): each object's cluster collapses to ~1-5."""
    c = rng.uniform(0, 1000, size=(k, 2))
    size = rng.uniform(50, 200, size=(k, 2))
    obj = rng.integers(0, k, n)
    ctr = c[obj] + rng.normal(0, 0.1, size=(n, 2)) * size[obj]
    wh = size[obj] * rng.uniform(0.8, 1.2, size=(n, 2))
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def spread(rng, n=N):
    xy = rng.uniform(0, 2000, size=(n, 2))
    wh = rng.uniform(8, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32), rng.random(n).astype(np.float32)


def _setup(kind, classes=None, dtype=np.float32):
    def setup():
        rng = np.random.default_rng(0)
        b, s = (clustered if kind == "clustered" else spread)(rng)
        b, s = b.astype(dtype), s.astype(dtype)
        state = {"b": b, "s": s, "c": rng.integers(0, classes, N) if classes else None}
        torch, tv = torch_or_none(), torchvision_or_none()
        if torch is not None and tv is not None:
            state["tb"], state["ts"] = torch.from_numpy(b), torch.from_numpy(s)
            if classes:
                state["tc"] = torch.from_numpy(state["c"])
                ref = tv.ops.batched_nms(state["tb"], state["ts"], state["tc"], 0.5).numpy()
                got = batched_nms(b, s, state["c"], 0.5)
                assert sorted(ref.tolist()) == sorted(got.tolist())   # order of tied scores is torch's
            else:
                ref = tv.ops.nms(state["tb"], state["ts"], 0.5).numpy()
                assert np.array_equal(ref, nms(b, s, 0.5)), "refdet and torchvision disagree"
        return state
    return setup


def _tv_nms(state):
    return torchvision_or_none().ops.nms(state["tb"], state["ts"], 0.5)


def _tv_batched(state):
    return torchvision_or_none().ops.batched_nms(state["tb"], state["ts"], state["tc"], 0.5)


_have_tv = torchvision_or_none() is not None and torch_or_none() is not None

BENCHMARKS = [
    Bench("nms 10k clustered (few kept) float32", _setup("clustered"),
          lambda s: nms(s["b"], s["s"], 0.5), _tv_nms if _have_tv else None, "torchvision.ops.nms",
          target=0.75),
    Bench("nms 10k spread (most kept) float32", _setup("spread"),
          lambda s: nms(s["b"], s["s"], 0.5), _tv_nms if _have_tv else None, "torchvision.ops.nms",
          target=1.5, repeat=5),
    Bench("batched_nms 10k / 80 classes spread float32", _setup("spread", classes=80),
          lambda s: batched_nms(s["b"], s["s"], s["c"], 0.5), _tv_batched if _have_tv else None,
          "torchvision.ops.batched_nms", target=2.0),
    Bench("batched_nms 10k / 80 classes clustered float32", _setup("clustered", classes=80),
          lambda s: batched_nms(s["b"], s["s"], s["c"], 0.5), _tv_batched if _have_tv else None,
          "torchvision.ops.batched_nms"),
    Bench("nms 10k clustered float64", _setup("clustered", dtype=np.float64),
          lambda s: nms(s["b"], s["s"], 0.5), _tv_nms if _have_tv else None, "torchvision.ops.nms"),
]
