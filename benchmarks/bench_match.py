"""Matcher and sampler speed: refdet against torchvision's Matcher / SSDMatcher / sampler.

Target (issue): ``match`` on a 100 x 120,000 float32 IoU matrix at most 0.7x torchvision's ``Matcher``.
The IoU matrix is realistic: mostly small values with a few large ones per gt (``u**8``), so only a
few anchors are positive or tie a gt's best IoU.
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none, torchvision_or_none
from refdet.matcher import match, ssd_match
from refdet.sampler import sample_balanced


def _iou(m, n, seed=0):
    g = np.random.default_rng(seed)
    return (g.random((m, n)) ** 8).astype(np.float32)


def _real_iou(m, n, seed=0):
    """box_iou of m random gts against n anchors tiling an 800 x 800 image: mostly zeros."""
    from refdet.iou import box_iou
    g = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n / 3)))
    c = (np.arange(side) + 0.5) * (800 / side)
    cy, cx = np.meshgrid(c, c, indexing="ij")
    sizes = np.array([32.0, 64.0, 128.0])
    w = np.broadcast_to(sizes, (side, side, 3))
    anchors = np.stack([cx[..., None] - w / 2, cy[..., None] - w / 2, cx[..., None] + w / 2,
                        cy[..., None] + w / 2], axis=-1).reshape(-1, 4)[:n]
    xy = g.uniform(0, 700, size=(m, 2))
    wh = g.uniform(10, 300, size=(m, 2))
    gts = np.concatenate([xy, xy + wh], axis=1)
    return box_iou(gts.astype(np.float32), anchors.astype(np.float32))


def _setup(m, n, real=False):
    def setup():
        a = _real_iou(m, n) if real else _iou(m, n)
        st = {"np": a}
        torch = torch_or_none()
        if torch is not None and torchvision_or_none() is not None:
            st["t"] = torch.from_numpy(a)
        return st
    return setup


def _tv_matcher(high, low, allow):
    if torchvision_or_none() is None:
        return None
    from torchvision.models.detection._utils import Matcher
    m = Matcher(high, low, allow)
    return lambda st: m(st["t"])


def _tv_ssd(t):
    if torchvision_or_none() is None:
        return None
    from torchvision.models.detection._utils import SSDMatcher
    m = SSDMatcher(t)
    return lambda st: m(st["t"])


def _sampler_setup():
    g = np.random.default_rng(1)
    lab = g.choice([-1, 0, 1], size=120000, p=[0.3, 0.69, 0.01]).astype(np.float32)
    st = {"np": lab}
    torch = torch_or_none()
    if torch is not None:
        st["t"] = torch.from_numpy(lab)
    return st


def _tv_sampler():
    if torchvision_or_none() is None:
        return None
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
    s = BalancedPositiveNegativeSampler(256, 0.5)
    return lambda st: s([st["t"]])


_BYTES = lambda st: st["np"].nbytes  # noqa: E731  (the matrix must be read at least once)

BENCHMARKS = [
    Bench("match 100x120000 float32 box_iou (RPN 0.7/0.3, low-q)", _setup(100, 120000, real=True),
          lambda st: match(st["np"]), _tv_matcher(0.7, 0.3, True),
          "torchvision Matcher(0.7, 0.3, True)", target=0.7, floor_bytes=_BYTES),
    Bench("match 100x120000 float32 dense u**8 (RPN, low-q)", _setup(100, 120000),
          lambda st: match(st["np"]), _tv_matcher(0.7, 0.3, True),
          "torchvision Matcher(0.7, 0.3, True)", target=0.7, floor_bytes=_BYTES),
    Bench("match 100x120000 float32 (box head 0.5/0.5, no low-q)", _setup(100, 120000),
          lambda st: match(st["np"], high=0.5, low=0.5, allow_low_quality_matches=False),
          _tv_matcher(0.5, 0.5, False), "torchvision Matcher(0.5, 0.5, False)", floor_bytes=_BYTES),
    Bench("ssd_match 50x8732 float32", _setup(50, 8732), lambda st: ssd_match(st["np"]),
          _tv_ssd(0.5), "torchvision SSDMatcher(0.5)", floor_bytes=_BYTES),
    Bench("sample_balanced 120000 labels (256, 0.5)", _sampler_setup,
          lambda st: sample_balanced(st["np"], rng=0), _tv_sampler(),
          "torchvision BalancedPositiveNegativeSampler(256, 0.5)"),
]
