"""Anchors: refdet.pyramid_anchors vs torchvision AnchorGenerator.forward (same process, 1 thread).

Issue target: RetinaNet anchors for an 800 x 800 image (P3-P7 maps 100, 50, 25, 13, 7; 3 octave sizes x
3 ratios = 9 per location; 120,087 anchors) in at most 1.5x torchvision's time. Both sides produce
float32 anchors from scratch (cell anchors, strides from image // feature, tiling, concatenation).
Also measured: the float64 oracle, SSD300's 8,732 default boxes vs DefaultBoxGenerator.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet.anchors import pyramid_anchors, ssd_default_boxes

_FS = [(100, 100), (50, 50), (25, 25), (13, 13), (7, 7)]
_SIZES = [32, 64, 128, 256, 512]
_SSD = dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])
_SSD_FS = [38, 19, 10, 5, 3, 1]


def _setup_retina():
    state = {}
    torch, tv = torch_or_none(), torchvision_or_none()
    if torch is not None and tv is not None:
        from torchvision.models.detection.image_list import ImageList
        from torchvision.models.detection.retinanet import _default_anchorgen
        state["gen"] = _default_anchorgen()
        state["images"] = ImageList(torch.zeros(1, 3, 800, 800), [(800, 800)])
        state["feats"] = [torch.zeros(1, 1, h, w) for h, w in _FS]
    return state


def _refdet32(s):
    return pyramid_anchors((800, 800), _FS, None, _SIZES, (0.5, 1.0, 2.0), scales_per_octave=3, dtype=np.float32)


def _refdet64(s):
    return pyramid_anchors((800, 800), _FS, None, _SIZES, (0.5, 1.0, 2.0), scales_per_octave=3)


def _tv(s):
    return s["gen"](s["images"], s["feats"])


def _setup_ssd():
    state = {}
    torch, tv = torch_or_none(), torchvision_or_none()
    if torch is not None and tv is not None:
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
        from torchvision.models.detection.image_list import ImageList
        state["gen"] = DefaultBoxGenerator(**_SSD)
        state["images"] = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
        state["feats"] = [torch.zeros(1, 1, f, f) for f in _SSD_FS]
    return state


def _ssd_refdet(s):
    return ssd_default_boxes((300, 300), _SSD_FS, dtype=np.float32, **_SSD)


def _have_tv():
    return torch_or_none() is not None and torchvision_or_none() is not None


BENCHMARKS = [
    Bench("pyramid_anchors RetinaNet 800x800 float32 (120k)", _setup_retina, _refdet32,
          other=_tv if _have_tv() else None, other_name="torchvision AnchorGenerator", target=1.5,
          floor_bytes=lambda s: 120087 * 4 * 4),
    Bench("pyramid_anchors RetinaNet 800x800 float64 (120k)", _setup_retina, _refdet64,
          other=_tv if _have_tv() else None, other_name="torchvision AnchorGenerator (float32)",
          floor_bytes=lambda s: 120087 * 4 * 8),
    Bench("ssd_default_boxes SSD300 float32 (8732)", _setup_ssd, _ssd_refdet,
          other=_tv if _have_tv() else None, other_name="torchvision DefaultBoxGenerator",
          floor_bytes=lambda s: 8732 * 4 * 4),
]
