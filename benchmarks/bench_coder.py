"""Box coder speed: refdet encode/decode against torchvision's BoxCoder (1 thread, medians).

120,000 anchors (a RetinaNet-sized set), weights (1, 1, 1, 1) and (10, 10, 5, 5). The floor is
reading the inputs and writing the result once.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none
from refdet.box_coder import decode_boxes, decode_boxes_forward, encode_boxes

N = 120000


def _boxes(n, seed):
    g = np.random.default_rng(seed)
    xy = g.uniform(0, 1000, size=(n, 2))
    wh = g.uniform(1, 200, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _setup(weights):
    def setup():
        a, g = _boxes(N, 0), _boxes(N, 1)
        d = np.random.default_rng(2).normal(0, 1, size=(N, 4)).astype(np.float32)
        st = {"a": a, "g": g, "d": d, "w": weights}
        torch = torch_or_none()
        if torch is not None:
            from torchvision.models.detection._utils import BoxCoder
            st.update(ta=torch.from_numpy(a), tg=torch.from_numpy(g), td=torch.from_numpy(d),
                      coder=BoxCoder(weights))
        return st
    return setup


def _has_tv():
    try:
        import torchvision  # noqa: F401
        return True
    except ImportError:
        return False


_TV = _has_tv()


def _floor(s):
    return 3 * N * 16  # two (N, 4) float32 inputs read, one written


BENCHMARKS = []
for _w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    BENCHMARKS += [
        Bench(f"encode_boxes {N} float32 w={_w}", _setup(_w),
              lambda s: encode_boxes(s["g"], s["a"], weights=s["w"]),
              other=(lambda s: s["coder"].encode_single(s["tg"], s["ta"])) if _TV else None,
              other_name="torchvision BoxCoder.encode_single", floor_bytes=_floor),
        Bench(f"decode_boxes {N} float32 w={_w}", _setup(_w),
              lambda s: decode_boxes(s["d"], s["a"], weights=s["w"]),
              other=(lambda s: s["coder"].decode_single(s["td"], s["ta"])) if _TV else None,
              other_name="torchvision BoxCoder.decode_single", floor_bytes=_floor),
    ]
BENCHMARKS.append(
    Bench(f"decode_boxes_forward {N} float32", _setup((1.0, 1.0, 1.0, 1.0)),
          lambda s: decode_boxes_forward(s["d"], s["a"]),
          other=(lambda s: s["coder"].decode_single(s["td"], s["ta"])) if _TV else None,
          other_name="torchvision BoxCoder.decode_single", floor_bytes=_floor))
