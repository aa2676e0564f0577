"""Pin of ``pyramid_anchors``' ``octave_truncate`` (issue 19 item 2, mutation/convention_coverage.md):
RetinaNet's octave sizes ``x * 2**(i / 3)`` kept as floats (detectron2 Base-RetinaNet.yaml, mmdet
``octave_base_scale``) or truncated to int (torchvision ``retinanet.py``: ``int(x * 2 ** (i / 3.0))``).
"""
import pytest

from refdet import pyramid_anchors


def _halves(conv, **kw):
    # one 1 x 1 map of stride 64, base size 32, one ratio: the three octave squares centred on 0
    a, lv = pyramid_anchors((64, 64), [(1, 1)], [64], [32], [[1.0]], convention=conv, scales_per_octave=3, **kw)
    assert lv.tolist() == [0, 0, 0]
    return [row[2] for row in a.tolist()]


@pytest.mark.parametrize("conv, kw", [("detectron2", {}), ("mmdet", {}), ("detectron2", {"octave_truncate": False})])
def test_octave_sizes_kept_as_floats(conv, kw):
    # 32, 32 * 2**(1/3) = 40.3175, 32 * 2**(2/3) = 50.7968: half sides 16, 20.1587, 25.3984
    assert _halves(conv, **kw) == [16.0, 32 * 2 ** (1 / 3) / 2, 32 * 2 ** (2 / 3) / 2]


@pytest.mark.parametrize("conv, kw", [("torchvision", {}), ("detectron2", {"octave_truncate": True})])
def test_octave_sizes_truncated(conv, kw):
    # torchvision: int(40.3175) = 40, int(50.7968) = 50 (its cell anchors are rounded as well, which
    # hides the truncation of these two sizes: detectron2 shows it)
    assert _halves(conv, **kw) == [16.0, 20.0, 25.0]
