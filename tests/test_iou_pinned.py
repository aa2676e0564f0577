"""Tests that pin refdet.iou's convention branches (written from the mutation run, mutation/results.md).

Each test names the branch it pins: a profile's setting, a guard, a default. The golden values are
worked by hand in the comments, or come from the framework the profile reproduces (torchvision, or a
transcription of mmdet's ``ciou_loss``, mmdet v3 ``models/losses/iou_loss.py``).
"""
import math

import numpy as np
import pytest

from refdet import iou as riou
from refdet.iou import (box_iou, box_iou_paired, box_iou_paired_forward, complete_box_iou, distance_box_iou_paired,
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
BOX10 = [0, 0, 10, 10.0]
VSEG = [5, 0, 5, 10]             # zero width: iw = 0, ih = 10 against itself
HSEG = [0, 5, 10, 5]             # zero height
PAIRS_A = np.array([TINY, POINT, BOX10, [10, 0, 0, 10], [20, 0, 0, 10], VSEG, HSEG])
PAIRS_B = np.array([TINY, POINT, [5, 5, 15, 15.0], BOX10, BOX10, VSEG, HSEG])
_V4 = 4 / math.pi ** 2


def _guard_table(fn, eps):
    """Expected values of ``fn`` on PAIRS_A[i] vs PAIRS_B[i] under each guard (torchvision's eps).

    row 0, a tiny box with itself: I = U = 1e-8 (and C = U, rho = 0, v = 0): only the IoU term moves:
        eps_union 1e-8 / max(1e-8, eps), plus_eps 1e-8 / (1e-8 + eps), the others 1
    row 1, a point with itself: I = U = C = 0, rho = 0: 0/0 = NaN under "none", 0 under every other
        guard (the IoU and the enclosing term are written or floored); CIoU's atan(0/0) is NaN, except
        under the zero-writing guards, which write the point pair's CIoU as 0
    row 2, [0,0,10,10] vs [5,5,15,15]: I = 25, U = 175, C = 15^2 = 225, rho^2 = 5^2 + 5^2 = 50,
        c^2 = 15^2 + 15^2 = 450, both square (v = 0): IoU 1/7 (plus_eps: 25 / (175 + eps))
    row 3, the flipped [10,0,0,10] (area -10 * 10 = -100) vs [0,0,10,10]: I = 0, U = -100 + 100 = 0:
        IoU 0/0 = NaN under "none", else 0; enclosing box 10 x 10, C = 100: GIoU = IoU - (100 - 0) / 100
        (plus_eps: / (100 + eps); eps_union: (100 - max(0, eps)) / 100); same centres (5, 5): DIoU = IoU;
        atan(-10 / 10) - atan(10 / 10) = -pi/2: v = 1, alpha = 1 / (1 - IoU + 1 + eps)
    row 4, the flipped [20,0,0,10] (area -200) vs [0,0,10,10]: I = 0, U = -100: IoU 0 / -100 = -0.0
        under "none" and "plus_eps" (0 / (-100 + eps)), +0 where a guard writes it; C = 100,
        (C - U) / C = 2; centres (10, 5) and (5, 5): rho^2 = 25, c^2 = 200; theta = atan(-2) - pi/4
    rows 5 and 6, a zero-width (zero-height) segment with itself: iw = 0 (ih = 0) exactly, the other
        extent 10: like the points (I = U = C = 0, rho = 0), and atan(0/10) = atan(10/0) - pi/2 = 0 on
        both sides (v = 0), so CIoU = DIoU there
    """
    out = {}
    for g in GUARDS:
        iou0 = {"eps_union": 1e-8 / max(1e-8, eps), "plus_eps": 1e-8 / (1e-8 + eps)}.get(g, 1.0)
        iou2 = 25 / (175 + eps) if g == "plus_eps" else 1 / 7
        nan_or_0 = math.nan if g == "none" else 0.0
        iou4 = -0.0 if g in ("none", "plus_eps") else 0.0
        if fn == "box_iou":
            row = [iou0, nan_or_0, iou2, nan_or_0, iou4, nan_or_0, nan_or_0]
        elif fn == "generalized_box_iou":
            enc = {"plus_eps": (50 / (225 + eps), 100 / (100 + eps), 200 / (100 + eps)),
                   "eps_union": (50 / 225, (100 - eps) / 100, (100 - eps) / 100)}.get(g, (50 / 225, 1.0, 2.0))
            row = [iou0, nan_or_0, iou2 - enc[0], nan_or_0 - enc[1], iou4 - enc[2], nan_or_0, nan_or_0]
        else:
            diou = [iou0, nan_or_0, iou2 - 50 / (450 + eps), nan_or_0, iou4 - 25 / (200 + eps), nan_or_0, nan_or_0]
            if fn == "distance_box_iou":
                row = diou
            else:  # CIoU: alpha v = 0 for equal aspect ratios; the points' atan(0/0) is NaN, except
                # under the guards that write 0 (detectron2, TF, ONNX: the point pair's CIoU is 0)
                v3 = _V4 * (math.pi / 2) ** 2
                v4 = _V4 * (math.atan(-2) - math.pi / 4) ** 2
                point = 0.0 if g in ("inter_gt_0", "skip_degenerate", "pfr") else math.nan
                row = [diou[0], point, diou[2], nan_or_0 - v3 * v3 / (1 - nan_or_0 + v3 + eps),
                       diou[4] - v4 * v4 / (1 - iou4 + v4 + eps), nan_or_0, nan_or_0]
        out[g] = row
    return out


@pytest.mark.parametrize("fn", ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"])
def test_every_guard_on_degenerate_pairs(fn):
    eps = 1e-6 if fn == "box_iou" else 1e-7      # box_iou's eps keyword; the family's torchvision eps
    for g, want in _guard_table(fn, eps).items():
        full = np.diagonal(getattr(riou, fn)(PAIRS_A, PAIRS_B, guard=g))
        paired = getattr(riou, f"{fn}_paired")(PAIRS_A, PAIRS_B, guard=g)
        for got, name in ((full, fn), (paired, f"{fn}_paired")):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"{name} {g}")
            if fn == "box_iou":  # the sign of a zero IoU: written by the guard (+0) or computed (-0)
                ok = ~np.isnan(want)
                np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(np.array(want)[ok]),
                                              err_msg=f"{name} {g}")


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


# ----------------------------------------------------------------------------------- the reverse pass

ZERO_WRITING = ("inter_gt_0", "skip_degenerate", "pfr")


def _grads(fn, a, b, up=None, **kw):
    vals, cache = getattr(riou, f"{fn}_paired_forward")(a, b, **kw)
    g = getattr(riou, f"{fn}_paired_backward")(np.ones(len(a)) if up is None else up, cache)
    return vals, g


def test_zero_writing_guards_have_zero_gradient_where_they_write():
    # the points and segments (I = U = C = 0) and the flipped pair of row 3 (I = U = 0): the guard
    # writes the IoU as 0 and its gradient as 0 (never 1 / U = inf times 0); GIoU's enclosing term is
    # written as 0 where C = 0; DIoU's distance term is 0 / (c^2 + eps) with rho = 0, gradient 0.
    # (GIoU's enclosing term of the flipped pair, 1 - U / C with C = 100, does move: left out.)
    rows = [1, 3, 5, 6]
    a, b = PAIRS_A[rows], PAIRS_B[rows]
    for g in ZERO_WRITING:
        for fn, keep in (("box_iou", [0, 1, 2, 3]), ("generalized_box_iou", [0, 2, 3]),
                         ("distance_box_iou", [0, 1, 2, 3])):
            vals, grads = _grads(fn, a, b, guard=g)
            assert np.all(vals[keep] == 0), (fn, g)
            assert np.all(grads.dboxes1[keep] == 0) and np.all(grads.dboxes2[keep] == 0), (fn, g, grads)


def test_distance_term_with_eps_0_at_a_point():
    # c^2 = 0^2 + 0^2 + 0 = 0 and rho^2 = 0: 0/0. The zero-writing guards write 0 (value and gradient);
    # "none", "eps_union" and "plus_eps" keep the NaN (torchvision with eps = 0 gives NaN too).
    p = np.array([POINT])
    for g in GUARDS:
        v = distance_box_iou(p, p, guard=g, eps=0.0)[0, 0]
        vals, grads = _grads("distance_box_iou", p, p, guard=g, eps=0.0)
        if g in ZERO_WRITING:
            assert v == 0 and vals[0] == 0, g
            assert np.all(grads.dboxes1 == 0) and np.all(grads.dboxes2 == 0), g
        else:
            assert np.isnan(v) and np.isnan(vals[0]), g


def _torch_family(torch, kind, guard, eps, a, b, clamp=True):
    """The family in torch, written from its formulas (torchvision ops/boxes.py order), for autograd."""
    x1, y1, x2, y2 = a.unbind(1)
    X1, Y1, X2, Y2 = b.unbind(1)
    e = torch.tensor(eps, dtype=a.dtype)
    area1 = (x2 - x1) * (y2 - y1)
    area2 = (X2 - X1) * (Y2 - Y1)
    iw = (torch.minimum(x2, X2) - torch.maximum(x1, X1)).clamp(min=0)
    ih = (torch.minimum(y2, Y2) - torch.maximum(y1, Y1)).clamp(min=0)
    inter = iw * ih
    union = area1 + area2 - inter
    if guard == "none":
        iou = inter / union
    elif guard == "plus_eps":
        iou = inter / (union + e)
    else:  # eps_union
        iou = inter / torch.maximum(union, e)
    if kind == "box_iou":
        return iou
    wc = torch.maximum(x2, X2) - torch.minimum(x1, X1)
    hc = torch.maximum(y2, Y2) - torch.minimum(y1, Y1)
    if clamp:
        wc, hc = wc.clamp(min=0), hc.clamp(min=0)
    if kind == "generalized_box_iou":
        c = wc * hc
        if guard == "none":
            return iou - (c - union) / c
        if guard == "plus_eps":
            return iou - (c - union) / (c + e)
        cm = torch.maximum(c, e)
        return iou - (cm - torch.maximum(union, e)) / cm
    c2 = wc * wc + hc * hc + e
    dx = (x1 + x2) / 2 - (X1 + X2) / 2
    dy = (y1 + y2) / 2 - (Y1 + Y2) / 2
    return iou - (dx * dx + dy * dy) / c2


# rows for the reverse pass: areas below eps = 1e-3, ties in every max/min, touching boxes (iw = 0),
# flipped boxes (a negative enclosing extent), segments (C = 0), and ordinary pairs
GRAD_A = np.array([[0, 0, 0.02, 0.03], [1, 1, 4, 5], [0, 0, 1, 1], [10, 10, 0, 0], [10, 10, 0, 0], [5, 0, 5, 10],
                   [0, 0, 3, 2], [2, 1, 6, 7], [0, 0, 0.01, 0.01]])
GRAD_B = np.array([[0.01, 0, 0.03, 0.02], [1, 1, 4, 5], [1, 0, 2, 1], [10, 10, 0, 0], [12, 10, 2, 0], [5, 0, 5, 10],
                   [1, 1, 5, 4], [0, 3, 3, 9], [0, 0, 0.01, 0.01]])


@pytest.mark.parametrize("fn, clamp", [("box_iou", True), ("generalized_box_iou", True), ("generalized_box_iou", False),
                                       ("distance_box_iou", True), ("distance_box_iou", False)])
@pytest.mark.parametrize("guard", ["none", "plus_eps", "eps_union"])
def test_reverse_pass_matches_torch_autograd_on_degenerate_pairs(fn, guard, clamp):
    torch = pytest.importorskip("torch")
    eps = 1e-3
    kw = {"guard": guard, "eps": eps} if fn == "box_iou" else {"guard": guard, "eps": eps, "clamp_enclosing": clamp}
    vals, grads = _grads(fn, GRAD_A, GRAD_B, **kw)
    ta = torch.tensor(GRAD_A, requires_grad=True)
    tb = torch.tensor(GRAD_B, requires_grad=True)
    tv = _torch_family(torch, fn, guard, eps, ta, tb, clamp)
    tv.sum().backward()
    np.testing.assert_allclose(vals, tv.detach().numpy(), rtol=1e-12, atol=1e-15)
    want1, want2 = ta.grad.numpy(), tb.grad.numpy()
    ok = np.isfinite(want1).all(1) & np.isfinite(want2).all(1)
    assert ok.sum() >= 6
    np.testing.assert_allclose(grads.dboxes1[ok], want1[ok], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads.dboxes2[ok], want2[ok], rtol=1e-9, atol=1e-12)


def _torch_ciou(torch, a, b, eps, clip, mmdet=False):
    """torchvision ops/boxes.py complete_box_iou (alpha under no_grad), optionally clamped to [-1, 1];
    mmdet=True: mmdet v3 ciou_loss's CIoU (union + eps, eps on the heights, alpha gated by IoU > 0.5)."""
    x1, y1, x2, y2 = a.unbind(1)
    X1, Y1, X2, Y2 = b.unbind(1)
    iw = (torch.minimum(x2, X2) - torch.maximum(x1, X1)).clamp(min=0)
    ih = (torch.minimum(y2, Y2) - torch.maximum(y1, Y1)).clamp(min=0)
    inter = iw * ih
    union = (x2 - x1) * (y2 - y1) + (X2 - X1) * (Y2 - Y1) - inter
    iou = inter / (union + eps) if mmdet else inter / union
    wc = (torch.maximum(x2, X2) - torch.minimum(x1, X1)).clamp(min=0)
    hc = (torch.maximum(y2, Y2) - torch.minimum(y1, Y1)).clamp(min=0)
    c2 = wc * wc + hc * hc + eps
    if mmdet:
        rho2 = ((X1 + X2) - (x1 + x2)) ** 2 / 4 + ((Y1 + Y2) - (y1 + y2)) ** 2 / 4
        h1, h2 = y2 - y1 + eps, Y2 - Y1 + eps
    else:
        rho2 = ((x1 + x2) / 2 - (X1 + X2) / 2) ** 2 + ((y1 + y2) / 2 - (Y1 + Y2) / 2) ** 2
        h1, h2 = y2 - y1, Y2 - Y1
    v = 4 / math.pi ** 2 * (torch.atan((X2 - X1) / h2) - torch.atan((x2 - x1) / h1)) ** 2
    with torch.no_grad():
        alpha = (iou > 0.5).to(iou.dtype) * v / (1 - iou + v) if mmdet else v / (1 - iou + v + eps)
    out = iou - rho2 / c2 - alpha * v
    return out.clamp(-1.0, 1.0) if clip else out


def test_ciou_clip_gradient_matches_torch_clamp():
    # identical boxes: CIoU = 1 exactly, on the clamp's bound (torch's clamp passes no gradient there);
    # far apart with aspect ratios 1/20 and 20: CIoU = -1.23 < -1 (the clamp is active); two ordinary pairs
    torch = pytest.importorskip("torch")
    a = np.array([[2.0, 1.0, 5.0, 4.0], [0.0, 0.0, 1.0, 20.0], [0, 0, 4, 3.0], [1, 2, 3, 9.0]])
    b = np.array([[2.0, 1.0, 5.0, 4.0], [100.0, 100.0, 120.0, 101.0], [1, 1, 5, 5.0], [0, 3, 5, 6.0]])
    for clip in (True, False):
        vals, grads = _grads("complete_box_iou", a, b, clip=clip)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        tv = _torch_ciou(torch, ta, tb, 1e-7, clip)
        tv.sum().backward()
        np.testing.assert_allclose(vals, tv.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(grads.dboxes1, ta.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads.dboxes2, tb.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert np.all(_grads("complete_box_iou", a[:2], b[:2], clip=True)[1].dboxes1 == 0)


def test_mmdet_ciou_gradient_matches_its_loss_in_torch():
    # mmdet's CIoU (eps = 1e-3 to make the eps on the heights count): the gate open (IoU > 0.5) with
    # different aspect ratios, small heights, and a gate-closed pair
    torch = pytest.importorskip("torch")
    a = np.array([[0, 0, 0.04, 0.02], [0, 0, 1, 1.0], [0, 0, 10, 10.0], [0, 0, 4, 1.0]])
    b = np.array([[0, 0, 0.04, 0.025], [0, 0, 1, 0.8], [1, 0, 11, 12.0], [0, 0, 1, 4.0]])
    vals, grads = _grads("complete_box_iou", a, b, convention="mmdet", eps=1e-3)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    tv = _torch_ciou(torch, ta, tb, 1e-3, True, mmdet=True)
    tv.sum().backward()
    np.testing.assert_allclose(vals, tv.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads.dboxes1, ta.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads.dboxes2, tb.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_mmdet_alpha_gate_is_strict():
    # IoU exactly 0.5 (guard "none": I = 2 * 1, U = 4 + 2 - 2 = 4): mmdet's (ious > 0.5) leaves alpha 0,
    # so CIoU = DIoU although the aspect ratios (4 and 2) differ; a gate at 0.49 lets alpha v in
    a = np.array([[0, 0, 4, 1.0]])
    b = np.array([[0, 0, 2, 1.0]])
    d = distance_box_iou(a, b, convention="mmdet", guard="none")[0, 0]
    assert complete_box_iou(a, b, convention="mmdet", guard="none")[0, 0] == d
    assert complete_box_iou_paired(a, b, convention="mmdet", guard="none")[0] == d
    assert complete_box_iou(a, b, convention="mmdet", guard="none", alpha_gate=0.49)[0, 0] < d - 1e-4


def _mmdet_diou32(pred, target, eps=np.float32(1e-6)):
    """mmdet v3 diou_loss's DIoU in float32, torch's order of operations (each op rounds as torch's)."""
    lt = np.maximum(pred[:, :2], target[:, :2])
    rb = np.minimum(pred[:, 2:], target[:, 2:])
    wh = np.maximum(rb - lt, np.float32(0))
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + ag - overlap + eps
    ious = overlap / union
    ewh = np.maximum(np.maximum(pred[:, 2:], target[:, 2:]) - np.minimum(pred[:, :2], target[:, :2]), np.float32(0))
    c2 = ewh[:, 0] ** 2 + ewh[:, 1] ** 2 + eps
    left = ((target[:, 0] + target[:, 2]) - (pred[:, 0] + pred[:, 2])) ** 2 / np.float32(4)
    right = ((target[:, 1] + target[:, 3]) - (pred[:, 1] + pred[:, 3])) ** 2 / np.float32(4)
    return ious - (left + right) / c2


def test_mmdet_diou_float32_bits_use_coordinate_sums():
    # mmdet measures rho^2 from coordinate sums, ((X1 + X2) - (x1 + x2))^2 / 4; torchvision from halves,
    # ((x1 + x2) / 2 - (X1 + X2) / 2)^2. Halving is exact in binary floating point, so the two agree bit
    # for bit until the squares are subnormal: these boxes (float32, ~1e-18) are such a pair.
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (400, 2)).astype(F32)
    p = np.concatenate([xy, xy + rng.uniform(1, 50, (400, 2)).astype(F32)], 1)
    t = p + rng.uniform(-20, 20, (400, 4)).astype(F32)
    t[:, 2:] = np.maximum(t[:, 2:], t[:, :2] + 1)
    p = np.concatenate([p, [[2.7881944e-18, 3.3578471e-18, 3.0575025e-18, 7.4921288e-18]]]).astype(F32)
    t = np.concatenate([t, [[2.4583655e-18, 3.5718676e-18, 3.4114004e-18, 6.3751347e-18]]]).astype(F32)
    want = _mmdet_diou32(p, t)
    got = distance_box_iou_paired(p, t, convention="mmdet")
    assert got.dtype == F32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(np.diagonal(distance_box_iou(p, t, convention="mmdet")).view(np.uint32),
                                  want.view(np.uint32))
    halves = distance_box_iou_paired(p, t, convention="mmdet", centre_distance="halves")
    assert halves[-1] != want[-1] and np.array_equal(halves[:-1], want[:-1])
    # and torchvision's halves give torchvision's bits (eps = 0 so that the subnormal squares show)
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    a = np.array([[6.9131377e-19, 2.6071495e-19, 9.4467976e-19, 7.3843809e-19]], F32)
    b = np.array([[5.8464996e-19, 3.9783347e-19, 1.0275518e-18, 4.0783347e-19]], F32)
    tv = ops.distance_box_iou(torch.from_numpy(a), torch.from_numpy(b), eps=0.0).numpy()
    np.testing.assert_array_equal(distance_box_iou(a, b, eps=0.0).view(np.uint32), tv.view(np.uint32))
    np.testing.assert_array_equal(distance_box_iou_paired(a, b, eps=0.0).view(np.uint32), tv[0].view(np.uint32))
    assert distance_box_iou(a, b, eps=0.0, centre_distance="sums")[0, 0] != tv[0, 0]
