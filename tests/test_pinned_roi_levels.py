"""Pins of ``multiscale_roi_align``'s ``canonical_level`` (issue 19 item 2, mutation/convention_coverage.md).

``canonical_level=4`` (FPN eq. 1, torchvision ``LevelMapper``: ``k = floor(4 + log2(sqrt(area) / 224)
+ 1e-6)``) against ``None`` (mmdet's rule, counted from the finest level). Every level of the feature
maps below is a constant (level l holds l + 1), so a pooled value names the level the RoI went to.

Pinning it found a bug: ``multiscale_roi_align`` handed its level knobs to
``conventions.resolve("assign_roi_levels", name, **knobs)``, where ``None`` means "keep the named
profile's value": a profile whose ``canonical_level`` is None (mmdet's rule) under another profile's
name was pooled with that profile's level 4 (the test below).
"""
import numpy as np
import pytest

from refdet import conventions
from refdet.roi.levels import assign_roi_levels, multiscale_roi_align

FEATS = [np.full((1, 1, 128 >> i, 128 >> i), float(i + 1)) for i in range(4)]   # P2..P5 of a 512 image
SCALES = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
# sqrt(area) 224, 56, 112, 448: torchvision k = 4, 2, 3, 5 -> P4, P2, P3, P5 (values 3, 1, 2, 4)
BOXES = np.array([[0.0, 0.0, 224.0, 224.0], [0.0, 0.0, 56.0, 56.0], [0.0, 0.0, 112.0, 112.0],
                  [0.0, 0.0, 448.0, 448.0]])


def _pooled(convention, **kw):
    return multiscale_roi_align(FEATS, [BOXES], 1, scales=SCALES, convention=convention, **kw).ravel().tolist()


@pytest.mark.parametrize("kw", [{}, {"canonical_level": 4}])
def test_canonical_level_4_pools_a_224_box_from_p4(kw):
    assert _pooled("torchvision", **kw) == [3.0, 1.0, 2.0, 4.0]


def test_canonical_level_none_counts_from_the_finest_level():
    # the same knobs with canonical_level None: floor(log2(s / 224) + 1e-6) from P2: 0, -2, -1, 1
    # -> P2, P2, P2, P3
    prof = conventions.resolve("multiscale_roi_align", "torchvision")
    prof = conventions.Profile(prof.op, prof.name, dict(prof, canonical_level=None))
    assert _pooled(prof) == [1.0, 1.0, 1.0, 2.0]


def test_a_profile_with_mmdets_level_rule_pools_as_mmdet():
    # mmdet's level rule (finest_scale 56, canonical_level None) carried by a profile named torchvision:
    # the levels are assign_roi_levels(convention="mmdet")'s: floor(log2(s / 56 + 1e-6)) = 2, 0, 1, 3
    t = conventions.describe("multiscale_roi_align")
    prof = conventions.Profile("multiscale_roi_align", "torchvision",
                               dict(t["torchvision"], canonical_level=None, canonical_scale=56.0, eps_inside=1e-6,
                                    eps_outside=0.0))
    want = (assign_roi_levels(BOXES, convention="mmdet") + 1).astype(float).tolist()
    assert want == [3.0, 1.0, 2.0, 4.0]
    assert _pooled(prof) == want
    assert _pooled("mmdet") == want


def test_torchvision_multiscale_roi_align_pools_the_same_levels():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.ops import MultiScaleRoIAlign

    m = MultiScaleRoIAlign(["0", "1", "2", "3"], 1, 2)
    x = {str(i): torch.from_numpy(f) for i, f in enumerate(FEATS)}
    got = m(x, [torch.from_numpy(BOXES)], [(512, 512)]).numpy().ravel().tolist()
    assert got == [3.0, 1.0, 2.0, 4.0]
