"""Tests that pin refdet.iou's convention branches (written from the mutation run, mutation/results.md).

Each test names the branch it pins: a profile's setting, a guard, a default. The golden values are
worked by hand in the comments, or come from the framework the profile reproduces (torchvision, or a
transcription of mmdet's ``ciou_loss``, mmdet v3 ``models/losses/iou_loss.py``).
"""
import math

import numpy as np
import pytest

from refdet import iou as riou
from refdet.iou import (box_iou, box_iou_paired, box_iou_paired_forward, complete_box_iou,
                        complete_box_iou_paired, distance_box_iou, generalized_box_iou)

F32 = np.float32
PROFILES = ("torchvision", "detectron2", "mmdet", "caffe", "tf", "onnx", "paper")

# A box and the same box with its corners given the other way round.
BOX = np.array([[0.0, 0.0, 10.0, 10.0]])
FLIPPED = np.array([[10.0, 10.0, 0.0, 0.0]])
# float16 pair where torchvision's float16 rb - lt differs from the float32 one (see test_iou.py):
# x2 - x1 = 1000.5 - 0.0625 = 1000.4375 is not a float16 (spacing 0.5 in [512, 1024)): it rounds to 1000.5
H1 = np.array([[0.0625, 0, 1000.5, 1]], dtype=np.float16)
H2 = np.array([[0, 0, 1024, 1]], dtype=np.float16)


def _both(a, b, conv):
    """box_iou and box_iou_paired of the one pair, which must agree."""
    full = box_iou(a, b, convention=conv)[0, 0]
    paired = box_iou_paired(a, b, convention=conv)[0]
    assert np.array_equal(full, paired, equal_nan=True), (conv, full, paired)
    return full


@pytest.mark.parametrize("conv", PROFILES)
def test_sort_corners_is_onnx_only(conv):
    # ONNX NonMaxSuppression reads any diagonal: the flipped box is the box itself, IoU 1.
    # Everywhere else the flipped box has negative widths: min(x2) - max(x1) = 0 - 10 = -10, clamped
    # to 0: I = 0 (caffe: -10 + 1 = -9, not > 0: the pfr guard writes 0), IoU 0.
    want = 1.0 if conv == "onnx" else 0.0
    assert _both(BOX, FLIPPED, conv) == want


@pytest.mark.parametrize("conv", PROFILES)
def test_half_wh_is_torchvision_only(conv):
    got = _both(H1, H2, conv)
    assert got.dtype == F32
    if conv == "torchvision":
        # rb - lt rounded to float16: I = 1000.5 * 1; U = (1000.4375 + 1024) - 1000.5 = 1023.9375
        assert got == F32(1000.5) / F32(1023.9375)
    elif conv == "caffe":
        # +1 pixels, widths in float32: iw = 1000.4375 + 1, ih = 1 + 1: I = 2002.875;
        # areas 1001.4375 * 2 = 2002.875 and 1025 * 2 = 2050: U = (2002.875 + 2050) - 2002.875 = 2050
        assert got == F32(2002.875) / F32(2050)
    else:
        # float32 throughout: I = 1000.4375, U = 1000.4375 + 1024 - 1000.4375 = 1024
        assert got == F32(1000.4375) / F32(1024)


def test_paired_eps_defaults_are_mmdets_union_floor():
    # two identical boxes of area 1e-8: I = U = 1e-8 < eps = 1e-6 (the default of every IoU
    # function's eps): eps_union gives 1e-8 / 1e-6 = 0.01, plus_eps 1e-8 / (1e-8 + 1e-6) = 1/101
    a = np.array([[0, 0, 1e-4, 1e-4]])
    np.testing.assert_allclose(box_iou_paired(a, a, guard="eps_union"), [0.01], rtol=1e-9)
    np.testing.assert_allclose(box_iou_paired_forward(a, a, guard="eps_union")[0], [0.01], rtol=1e-9)
    np.testing.assert_allclose(box_iou_paired(a, a, guard="plus_eps"), [1 / 101], rtol=1e-9)
    np.testing.assert_allclose(box_iou(a, a, guard="plus_eps"), [[1 / 101]], rtol=1e-9)


def test_out_must_match_shape_dtype_and_layout():
    a = np.array([[0, 0, 2, 2.0], [1, 1, 3, 3]])
    ro = np.empty((2, 2))
    ro.setflags(write=False)
    # wrong dtype, wrong shape, not C-contiguous, read-only, not an array
    for bad in (np.empty((2, 2), F32), np.empty((2, 3)), np.empty((2, 4))[:, ::2], ro, [[0.0] * 2] * 2):
        with pytest.raises(ValueError, match="`out`"):
            box_iou(a, a, out=bad)
    good = np.empty((2, 2))
    assert box_iou(a, a, out=good) is good and good[0, 0] == 1.0


def test_flipped_enclosing_box_is_clamped_as_torchvision_does():
    # Both boxes given with x2 < x1: the enclosing box max(x2) - min(x1) is negative. torchvision's
    # generalized/distance/complete_box_iou clamp it at 0 (ops/boxes.py: (rbi - lti).clamp(min=0)):
    #   pair 1: [10,10,0,0] with itself: C = 0, (C - U) / C = (0 - 200) / 0 = -inf: GIoU = 0 + inf = inf
    #   pair 2: [10,10,0,0] vs [12,10,2,0]: c^2 = 0 + eps = 1e-7, rho^2 = (5 - 7)^2 = 4: DIoU = -4e7
    # Unclamped, C = 100 and c^2 = 8^2 + 10^2 = 164 would give GIoU 1 and DIoU -4/164.
    a = np.array([[10, 10, 0, 0.0], [10, 10, 0, 0]])
    b = np.array([[10, 10, 0, 0.0], [12, 10, 2, 0]])
    assert np.isposinf(generalized_box_iou(a, b)).all()
    np.testing.assert_allclose(distance_box_iou(a, b)[:, 1], -4 / 1e-7, rtol=1e-12)
    np.testing.assert_allclose(generalized_box_iou(a, b, clamp_enclosing=False), [[1.0, 1.5]] * 2, rtol=1e-15)
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for mine, theirs in ((generalized_box_iou, ops.generalized_box_iou), (distance_box_iou, ops.distance_box_iou),
                         (complete_box_iou, ops.complete_box_iou)):
        np.testing.assert_array_equal(mine(a, b), theirs(ta, tb).numpy())


def _mmdet_ciou(pred, target, eps=1e-6):
    """mmdet v3 models/losses/iou_loss.py ciou_loss, transcribed (float64): the CIoU before 1 - x."""
    lt = np.maximum(pred[:, :2], target[:, :2])
    rb = np.minimum(pred[:, 2:], target[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + ag - overlap + eps
    ious = overlap / union
    enclose_wh = np.clip(np.maximum(pred[:, 2:], target[:, 2:]) - np.minimum(pred[:, :2], target[:, :2]), 0, None)
    c2 = enclose_wh[:, 0] ** 2 + enclose_wh[:, 1] ** 2 + eps
    w1, h1 = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
    w2, h2 = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps
    left = ((target[:, 0] + target[:, 2]) - (pred[:, 0] + pred[:, 2])) ** 2 / 4
    right = ((target[:, 1] + target[:, 3]) - (pred[:, 1] + pred[:, 3])) ** 2 / 4
    rho2 = left + right
    v = 4 / math.pi ** 2 * (np.arctan(w2 / h2) - np.arctan(w1 / h1)) ** 2
    alpha = (ious > 0.5) * v / (1 - ious + v)
    cious = ious - (rho2 / c2 + alpha * v)
    return np.clip(cious, -1.0, 1.0)


def test_mmdet_ciou_matches_its_loss_code():
    # pairs chosen so that each mmdet detail matters: the gate open with different aspect ratios
    # (alpha = v / (1 - IoU + v) without eps), heights of 1e-6 (the eps added to h inside atan moves
    # atan(w / h) from atan(1) to atan(1/2)), a gate-closed far pair
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 1e-6, 1e-6], [0, 0, 4, 1], [0, 0, 1, 1]])
    target = np.array([[0, 0, 10, 8], [1, 0, 11, 12], [0, 0, 1e-6, 1e-6], [0, 0, 1, 4], [50, 50, 51, 70]])
    want = _mmdet_ciou(pred.astype(float), target.astype(float))
    np.testing.assert_allclose(complete_box_iou_paired(pred, target, convention="mmdet"), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.diagonal(complete_box_iou(pred, target, convention="mmdet")), want,
                               rtol=1e-12, atol=1e-15)
    # first pair by hand: I = 80, U = 100 + 80 - 80 + 1e-6, IoU = 0.8 > 0.5 (gate open); rho = 1,
    # c^2 = 10^2 + 10^2 + 1e-6; v = 4/pi^2 (atan(10 / (8 + 1e-6)) - atan(10 / (10 + 1e-6)))^2
    iou = 80 / (100 + 1e-6)
    v = 4 / math.pi ** 2 * (math.atan(10 / (8 + 1e-6)) - math.atan(10 / (10 + 1e-6))) ** 2
    np.testing.assert_allclose(want[0], iou - (1 / (200 + 1e-6) + v * v / (1 - iou + v)), rtol=1e-13)


def test_ciou_clip_at_minus_one():
    # Far apart, aspect ratios 1/20 and 20: IoU = 0, rho^2 / c^2 = 0.9 (close to 1), and without a gate
    # alpha v = v^2 / (1 + v) with v = 4/pi^2 (atan(1/20) - atan(20))^2 = 0.9368: CIoU < -1.
    # mmdet clamps to [-1, 1] (clip=True); torchvision does not.
    p = np.array([[0.0, 0.0, 1.0, 20.0]])
    g = np.array([[100.0, 100.0, 120.0, 101.0]])
    v = 4 / math.pi ** 2 * (math.atan(1 / 20) - math.atan(20)) ** 2
    raw = complete_box_iou(p, g, eps=0.0)[0, 0]
    assert raw < -1.2
    c = ((120 - 0) ** 2 + (101 - 0) ** 2)
    rho2 = (110 - 0.5) ** 2 + (100.5 - 10) ** 2
    np.testing.assert_allclose(raw, 0 - rho2 / c - v * v / (1 + v), rtol=1e-12)
    assert complete_box_iou(p, g, clip=True)[0, 0] == -1.0
    assert complete_box_iou_paired(p, g, clip=True)[0] == -1.0
    assert complete_box_iou_paired(p, g, eps=0.0)[0] == raw
    # Under mmdet's own gate the clip never acts: alpha is 0 unless IoU > 0.5, and with IoU > 0 the
    # boxes overlap, so rho^2 / c^2 <= 1/4 and alpha v <= v^2 / (1 + v) <= 1/2: CIoU > -3/4. Here the
    # gate is closed (IoU = 0): mmdet's CIoU is its DIoU, above -1.
    assert complete_box_iou(p, g, convention="mmdet")[0, 0] == distance_box_iou(p, g, convention="mmdet")[0, 0] > -1


def test_alpha_gate_is_an_iou_in_0_1():
    a = np.array([[0, 0, 1, 1.0]])
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha_gate"):
            complete_box_iou(a, a, alpha_gate=bad)
    assert complete_box_iou(a, a, alpha_gate=1.0)[0, 0] == 1.0


def test_block_size_does_not_change_bits(monkeypatch):
    # box_iou works on blocks of rows (speed only): one row per block gives the same bits
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (37, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 20, (37, 2))], 1).astype(F32)
    want = box_iou(a, a[:11])
    monkeypatch.setattr(riou, "_BLOCK_ELEMENTS", 1)
    np.testing.assert_array_equal(box_iou(a, a[:11]), want)


# ------------------------------------------------------------------------------------ the guards

GUARDS = ("none", "inter_gt_0", "eps_union", "plus_eps", "skip_degenerate", "pfr")
TINY = [0, 0, 1e-4, 1e-4]        # area 1e-8, below both eps
POINT = [5, 5, 5, 5]             # area 0
PAIRS_A = np.array([TINY, POINT, [0, 0, 10, 10.0]])
PAIRS_B = np.array([TINY, POINT, [5, 5, 15, 15.0]])


def _guard_table(fn, eps):
    """Expected values of ``fn`` on PAIRS_A[i] vs PAIRS_B[i] under each guard (torchvision's eps).

    row 0, a tiny box with itself: I = U = 1e-8 (and C = U, rho = 0, v = 0): only the IoU term moves:
        eps_union 1e-8 / max(1e-8, eps), plus_eps 1e-8 / (1e-8 + eps), the others 1
    row 1, a point with itself: I = U = C = 0, rho = 0: 0/0 = NaN under "none", 0 under every other
        guard (the IoU and the enclosing term are written or floored); CIoU's atan(0/0) is NaN anyway
    row 2, [0,0,10,10] vs [5,5,15,15]: I = 25, U = 175, C = 15^2 = 225, rho^2 = 5^2 + 5^2 = 50,
        c^2 = 15^2 + 15^2 = 450, both square (v = 0): IoU 1/7 (plus_eps: 25 / (175 + eps))
    """
    out = {}
    for g in GUARDS:
        iou0 = {"eps_union": 1e-8 / max(1e-8, eps), "plus_eps": 1e-8 / (1e-8 + eps)}.get(g, 1.0)
        iou2 = 25 / (175 + eps) if g == "plus_eps" else 1 / 7
        point = math.nan if g == "none" else 0.0
        if fn == "box_iou":
            row = [iou0, point, iou2]
        elif fn == "generalized_box_iou":
            enc = 50 / (225 + eps) if g == "plus_eps" else 50 / 225
            row = [iou0, point, iou2 - enc]
        else:  # DIoU; CIoU adds alpha v = 0 (equal aspect ratios) except for the 0/0 of the points
            row = [iou0, point if fn == "distance_box_iou" else math.nan, iou2 - 50 / (450 + eps)]
        out[g] = row
    return out


@pytest.mark.parametrize("fn", ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"])
def test_every_guard_on_degenerate_pairs(fn):
    eps = 1e-6 if fn == "box_iou" else 1e-7      # box_iou's eps keyword; the family's torchvision eps
    for g, want in _guard_table(fn, eps).items():
        full = getattr(riou, fn)(PAIRS_A, PAIRS_B, guard=g)
        np.testing.assert_allclose(np.diagonal(full), want, rtol=1e-12, atol=0, err_msg=f"{fn} {g}")
        np.testing.assert_allclose(getattr(riou, f"{fn}_paired")(PAIRS_A, PAIRS_B, guard=g), want, rtol=1e-12,
                                   atol=0, err_msg=f"{fn}_paired {g}")


def test_zero_writing_guards_are_one_function():
    # "inter_gt_0" (0 where I <= 0), "skip_degenerate" (also where an area or U <= 0) and "pfr" (0 unless
    # the unclamped iw > 0 and ih > 0) are different code, and the same function: I > 0 needs iw > 0 and
    # ih > 0, hence positive areas and U >= area > 0. The registry keeps all three because each names
    # what its framework does; these swaps are equivalent (mutation/convention_coverage.py).
    rng = np.random.default_rng(7)
    for _ in range(50):
        a = rng.integers(-3, 6, (8, 4)) * rng.choice([1.0, 0.5, 1e-3])
        b = rng.integers(-3, 6, (8, 4)).astype(float)
        for fn in ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"):
            for plus_one in (False, True):
                got = [getattr(riou, fn)(a, b, guard=g, plus_one=plus_one)
                       for g in ("inter_gt_0", "skip_degenerate", "pfr")]
                assert all(np.array_equal(got[0], x, equal_nan=True) for x in got[1:])
        fwd, bwd = riou.generalized_box_iou_paired_forward, riou.generalized_box_iou_paired_backward
        g0 = rng.standard_normal(8)
        grads = [bwd(g0, fwd(a, b, guard=g)[1]) for g in ("inter_gt_0", "skip_degenerate", "pfr")]
        assert all(np.array_equal(grads[0].dboxes1, x.dboxes1, equal_nan=True)
                   and np.array_equal(grads[0].dboxes2, x.dboxes2, equal_nan=True) for x in grads[1:])
