"""Tests of refdet.iou: golden vectors (TV10), properties, conventions, and torchvision differentials."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refdet
from refdet import iou as riou
from refdet.iou import (box_iou, box_iou_paired, complete_box_iou, distance_box_iou,
                        generalized_box_iou)
from refdet.testing import strategies as rst
from tests.conftest import readonly

F32 = np.float32


def loop_iou(b1, b2, *, plus_one=False):
    """Slow float64 reference, one pair at a time, as the formula reads (0/0 -> NaN)."""
    out = np.empty((len(b1), len(b2)))
    e = 1.0 if plus_one else 0.0
    for i, a in enumerate(np.asarray(b1, float)):
        for j, b in enumerate(np.asarray(b2, float)):
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + e)
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + e)
            inter = iw * ih
            union = (a[2] - a[0] + e) * (a[3] - a[1] + e) + (b[2] - b[0] + e) * (b[3] - b[1] + e) - inter
            out[i, j] = inter / union if union != 0 else (math.nan if inter == 0 else math.inf)
    return out


# TV10 boxes (SPEC-conventions §11)
B1 = np.array([[0, 0, 10, 10], [5, 5, 5, 5], [0, 0, 0, 0]], dtype=F32)
B2 = np.array([[5, 5, 15, 15], [5, 5, 5, 5], [20, 20, 30, 30]], dtype=F32)


# --------------------------------------------------------------------------------------- golden

def test_tv10_box_iou():
    got = box_iou(B1, B2)
    assert got.dtype == F32
    # [0,0,10,10] vs [5,5,15,15]: I = 5 * 5 = 25, U = 100 + 100 - 25 = 175, IoU = 1/7
    assert got[0, 0] == F32(25) / F32(175)
    # a point inside a box: I = 0, U = 100 + 0 - 0 -> 0; disjoint: 0
    assert got[0, 1] == 0 and got[0, 2] == 0 and got[1, 0] == 0 and got[2, 0] == 0
    # identical points, and two different points: I = 0, U = 0 + 0 - 0 -> 0/0 = NaN (torchvision)
    assert np.isnan(got[1, 1]) and np.isnan(got[2, 1])
    # a point against a 10x10 box far away: U = 100 -> 0
    assert got[1, 2] == 0 and got[2, 2] == 0


def test_tv10_family_first_row():
    b = B1[:1]
    # GIoU: enclosing box [0,0,15,15], C = 225, U = 175: 1/7 - 50/225 = -0.0793651
    # with the point (5,5): C = 100 = U, GIoU = IoU = 0;
    # with [20,20,30,30]: C = 900, U = 200: 0 - 700/900 = -0.7777778
    np.testing.assert_allclose(generalized_box_iou(b, B2)[0], [-0.0793651, 0.0, -0.7777778], atol=1e-7)
    # DIoU: centres (5,5) vs (10,10): rho^2 = 50, c^2 = 15^2 + 15^2 = 450: 1/7 - 1/9 = 0.0317460;
    # point (5,5) is the centre of the box: rho = 0 -> 0; far box: rho^2 = 2 * 20^2 = 800,
    # c^2 = 2 * 30^2 = 1800 -> -0.4444444
    np.testing.assert_allclose(distance_box_iou(b, B2)[0], [0.0317460, 0.0, -0.4444444], atol=1e-7)
    # CIoU: equal aspect ratios -> v = 0, CIoU = DIoU; the point has atan(0/0) = NaN
    c = complete_box_iou(b, B2)[0]
    np.testing.assert_allclose(c[[0, 2]], [0.0317460, -0.4444444], atol=1e-7)
    assert np.isnan(c[1])


def test_tv10_float16_areas_do_not_overflow():
    # 300 * 300 = 90000 > 65504 (float16 max): computed in float32, so [1.0, 0.5] (vision#3371)
    a = np.array([[0, 0, 300, 300]], dtype=np.float16)
    b = np.array([[0, 0, 300, 300], [0, 0, 150, 300]], dtype=np.float16)
    got = box_iou(a, b)
    assert got.dtype == F32
    assert got.tolist() == [[1.0, 0.5]]


def test_profiles_on_degenerate_pairs():
    # detectron2 / tf: 0 wherever I == 0, so the NaNs of TV10 become 0
    for conv in ("detectron2", "tf", "mmdet", "onnx"):
        got = box_iou(B1, B2, convention=conv)
        assert not np.isnan(got).any(), conv
        assert got[1, 1] == 0 and got[2, 1] == 0
        assert got[0, 0] == box_iou(B1, B2)[0, 0]
    # caffe (+1 pixels): [0,0,10,10] is 11 x 11 = 121; I = (10 - 5 + 1)^2 = 36; U = 242 - 36 = 206
    c = box_iou(B1, B2, convention="caffe")
    assert c[0, 0] == F32(36) / F32(206)
    # a point box is one pixel: IoU 1 with itself; the point (5,5) touches [0,0,10,10]: 1 / 121
    assert c[1, 1] == 1.0
    assert c[0, 1] == F32(1) / F32(121)
    # the paper leaves 0/0 undefined: NaN
    assert np.isnan(box_iou(B1, B2, convention="paper")[1, 1])


def test_eps_union_floor():
    # two identical tiny boxes of area 1e-8: I = U = 1e-8 < eps = 1e-6 -> IoU = 1e-8 / 1e-6 = 0.01
    a = np.array([[0, 0, 1e-4, 1e-4]])
    np.testing.assert_allclose(box_iou(a, a, guard="eps_union"), [[0.01]], rtol=1e-9)
    np.testing.assert_allclose(box_iou(a, a), [[1.0]], rtol=1e-12)


def test_pfr_guard_needs_positive_width_and_height():
    # +1 widths: boxes touching at x = 10 overlap by one pixel column: iw = 10 - 10 + 1 = 1
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[10, 0, 20, 10]])
    # I = 1 * 11, U = 121 + 121 - 11 = 231
    np.testing.assert_allclose(box_iou(a, b, convention="caffe"), [[11 / 231]], rtol=1e-15)
    # one pixel apart: iw = 10 - 11 + 1 = 0 -> not computed, 0
    assert box_iou(a, b + [1, 0, 1, 0], convention="caffe")[0, 0] == 0


def test_onnx_any_diagonal_and_degenerate_skip():
    a = np.array([[0, 0, 10, 10]])
    flipped = np.array([[10, 10, 0, 0]])
    assert box_iou(a, flipped, convention="onnx")[0, 0] == 1.0
    # torchvision: a flipped box has negative widths, so no intersection
    assert box_iou(a, flipped)[0, 0] == 0.0
    # ONNX skips a zero-area box even when it would intersect in the +1 world
    assert box_iou(a, np.array([[2, 2, 2, 8]]), convention="onnx")[0, 0] == 0.0


def test_describe_lists_every_profile():
    table = refdet.conventions.describe("box_iou")
    assert set(table) == set(refdet.conventions.PROFILES)
    assert table["torchvision"]["guard"] == "none"
    assert "pfr" in str(table)


# ----------------------------------------------------------------------------------- structure

def test_empty_inputs():
    e = np.zeros((0, 4))
    b = np.array([[0, 0, 1, 1.0]])
    for f in (box_iou, generalized_box_iou, distance_box_iou, complete_box_iou):
        assert f(e, b).shape == (0, 1)
        assert f(b, e).shape == (1, 0)
        assert f(e, e).shape == (0, 0)
    assert box_iou_paired(e, e).shape == (0,)


def test_dtypes():
    b = np.array([[0, 0, 4, 4]], dtype=np.int64)
    assert box_iou(b, b).dtype == np.float64
    assert box_iou(b.astype(F32), b.astype(F32)).dtype == F32
    assert box_iou(b.astype(F32), b.astype(np.float64)).dtype == np.float64  # torch promotes too
    assert generalized_box_iou(b.astype(np.float16), b.astype(np.float16)).dtype == F32


def test_blocks_match_the_loop_reference(monkeypatch, rng):
    # force many small blocks (and a ragged last one): 37 rows at 16 elements -> 8 per block
    monkeypatch.setattr(riou, "_BLOCK_ELEMENTS", 16)
    xy = rng.uniform(0, 50, (37, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 30, (37, 2))], 1)
    xy = rng.uniform(0, 50, (2, 2))
    b = np.concatenate([xy, xy + rng.uniform(0, 30, (2, 2))], 1)
    np.testing.assert_allclose(box_iou(a, b), loop_iou(a, b), rtol=1e-13, atol=0)
    np.testing.assert_allclose(box_iou(a, b, plus_one=True), loop_iou(a, b, plus_one=True), rtol=1e-13)


def test_out_argument_is_written():
    a = np.array([[0, 0, 2, 2.0], [1, 1, 3, 3]])
    out = np.full((2, 2), -1.0)
    r = box_iou(a, a, out=out)
    assert r is out
    np.testing.assert_array_equal(out, box_iou(a, a))


def test_readonly_inputs():
    a, b = readonly(B1, B2)
    for f in (box_iou, generalized_box_iou, distance_box_iou, complete_box_iou):
        f(a, b)
    box_iou_paired(a, b)
    np.testing.assert_array_equal(a, B1)


# ---------------------------------------------------------------------------------- properties

@given(rst.box_sets(max_n=12), rst.box_sets(max_n=12))
def test_iou_symmetric_bounded_and_matches_loop(a, b):
    ab = box_iou(a, b)
    np.testing.assert_array_equal(ab, box_iou(b, a).T)  # bit for bit: every step is symmetric
    ok = ~np.isnan(ab)
    assert np.all((ab[ok] >= 0) & (ab[ok] <= 1))
    np.testing.assert_allclose(ab, loop_iou(a, b), rtol=1e-12, atol=0)  # NaN where the loop has NaN


@given(rst.box_sets(min_n=1, max_n=10), rst.box_sets(min_n=1, max_n=10),
       st.integers(-64, 64), st.integers(-64, 64), st.sampled_from([0.25, 0.5, 2.0, 4.0]))
def test_iou_invariant_to_translation_and_scaling(a, b, tx, ty, s):
    # on the 1/4 grid, translations by integers and scaling by powers of two are exact in float64,
    # so the IoU does not change by a single bit
    shift = np.array([tx, ty, tx, ty], dtype=float)
    base = box_iou(a, b)
    np.testing.assert_array_equal(box_iou(a + shift, b + shift), base)
    np.testing.assert_array_equal(box_iou(a * s, b * s), base)


@given(rst.box_sets(min_n=1, max_n=10), rst.box_sets(min_n=1, max_n=10), st.floats(0.1, 10.0))
def test_iou_scaling_any_factor_close(a, b, s):
    base = box_iou(a, b, convention="detectron2")
    np.testing.assert_allclose(box_iou(a * s, b * s, convention="detectron2"), base, rtol=1e-12, atol=1e-12)


@given(rst.box_sets(max_n=10, degenerate=False, min_size=0.25), rst.box_sets(max_n=10, degenerate=False,
                                                                               min_size=0.25))
def test_family_bounds(a, b):
    iou = box_iou(a, b)
    g = generalized_box_iou(a, b)
    d = distance_box_iou(a, b)
    c = complete_box_iou(a, b)
    assert np.all((g >= -1) & (g <= 1))
    assert np.all(g <= iou + 1e-15)              # the penalty (C - U) / C is >= 0
    assert np.all((d >= -1) & (d <= 1))
    assert np.all(d <= iou + 1e-15)
    assert np.all(c <= d + 1e-15)                # alpha * v >= 0
    np.testing.assert_allclose(g, generalized_box_iou(b, a).T, rtol=0, atol=1e-15)


@given(rst.box_sets(min_n=0, max_n=15), st.data())
def test_paired_is_the_diagonal(a, data):
    b = data.draw(rst.box_sets(min_n=len(a), max_n=len(a)))
    for conv in ("torchvision", "detectron2", "mmdet", "caffe", "onnx"):
        d = np.diag(box_iou(a, b, convention=conv)) if len(a) else np.zeros(0)
        np.testing.assert_array_equal(box_iou_paired(a, b, convention=conv), d)


@given(rst.box_sets(max_n=10), rst.box_sets(max_n=10))
def test_guards_agree_where_defined(a, b):
    tv = box_iou(a, b)
    d2 = box_iou(a, b, convention="detectron2")
    pos = tv > 0
    np.testing.assert_array_equal(d2[pos], tv[pos])
    assert np.all(d2[~pos] == 0)
    # mmdet: identical to torchvision wherever the union is at least eps = 1e-6
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    areas = area(a)[:, None] + area(b)[None, :]  # U >= max(area1, area2) >= areas / 2
    mm = box_iou(a, b, convention="mmdet")
    big = areas >= 1e-3  # so U >= 5e-4 > eps there
    np.testing.assert_array_equal(mm[big], tv[big])
    assert not np.isnan(mm).any()


# ---------------------------------------------------------------------- torchvision differentials

from tests._torchutil import _bits_equal, _torch_ops as _torch  # noqa: E402


@given(rst.box_sets(max_n=16, dtype=F32), rst.box_sets(max_n=16, dtype=F32))
def test_float32_bit_exact_vs_torchvision(a, b):
    torch, ops = _torch()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    _bits_equal(box_iou(a, b), ops.box_iou(ta, tb).numpy())
    _bits_equal(generalized_box_iou(a, b), ops.generalized_box_iou(ta, tb).numpy())
    _bits_equal(distance_box_iou(a, b), ops.distance_box_iou(ta, tb).numpy())
    # CIoU: bit-exact once the arctangent is torch's (library atan differs in the last bit) ...
    tatan = lambda x: torch.atan(torch.from_numpy(np.ascontiguousarray(x))).numpy()  # noqa: E731
    _bits_equal(complete_box_iou(a, b, atan=tatan), ops.complete_box_iou(ta, tb).numpy())
    # ... and a few float32 ulp away with NumPy's
    np.testing.assert_allclose(complete_box_iou(a, b), ops.complete_box_iou(ta, tb).numpy(),
                               rtol=2e-6, atol=2e-6)


@given(rst.box_sets(max_n=16, grid=None), rst.box_sets(max_n=16, grid=None))
def test_float64_vs_torchvision(a, b):
    torch, ops = _torch()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    _bits_equal(box_iou(a, b), ops.box_iou(ta, tb).numpy())
    _bits_equal(generalized_box_iou(a, b), ops.generalized_box_iou(ta, tb).numpy())
    _bits_equal(distance_box_iou(a, b), ops.distance_box_iou(ta, tb).numpy())
    # float64 closed forms: ~1e-12 (atan differs in the last bit between libms)
    np.testing.assert_allclose(complete_box_iou(a, b), ops.complete_box_iou(ta, tb).numpy(),
                               rtol=1e-12, atol=1e-12)


def test_float32_large_random_bit_exact(rng):
    torch, ops = _torch()
    xy = rng.uniform(0, 1000, (3000, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 200, (3000, 2))], 1).astype(F32)
    xy = rng.uniform(0, 1000, (70, 2))
    b = np.concatenate([xy, xy + rng.uniform(0, 200, (70, 2))], 1).astype(F32)
    _bits_equal(box_iou(a, b), ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy())


@given(rst.box_sets(max_n=16, grid=None, high=2000.0, max_size=700.0),
       rst.box_sets(max_n=16, grid=None, high=2000.0, max_size=700.0))
def test_float16_bit_exact_vs_torchvision(a, b):
    # torchvision upcasts areas but subtracts rb - lt in float16: the "torchvision" profile rounds those
    # differences to float16 (half_wh) and returns float32 like torchvision
    torch, ops = _torch()
    a, b = a.astype(np.float16), b.astype(np.float16)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    _bits_equal(box_iou(a, b), ops.box_iou(ta, tb).numpy())
    _bits_equal(generalized_box_iou(a, b), ops.generalized_box_iou(ta, tb).numpy())
    _bits_equal(distance_box_iou(a, b), ops.distance_box_iou(ta, tb).numpy())  # upcasts first
    # without the rounding: the float32 IoU of the float16 boxes, within float16 rounding of torchvision
    np.testing.assert_allclose(box_iou(a, b, half_wh=False), box_iou(a.astype(F32), b.astype(F32)),
                               rtol=0, atol=0)
    np.testing.assert_allclose(box_iou(a, b, half_wh=False), ops.box_iou(ta, tb).numpy(), rtol=0, atol=2e-3)


def test_half_wh_rounding_golden():
    # x2 = 1000.5 and x1 = 0.0625 are float16 numbers; 1000.5 - 0.0625 = 1000.4375 is not (float16 has
    # 11 significant bits: the spacing in [512, 1024) is 0.5), so torchvision's float16 width is 1000.5
    a = np.array([[0.0625, 0, 1000.5, 1]], dtype=np.float16)
    b = np.array([[0, 0, 1024, 1]], dtype=np.float16)
    # torchvision: I = 1000.5 * 1, U = 1000.4375 + 1024 - 1000.5 = 1023.9375
    assert box_iou(a, b)[0, 0] == F32(1000.5) / F32(1023.9375)
    # float32 throughout: I = 1000.4375, U = 1024, IoU = 0.97698975
    assert box_iou(a, b, half_wh=False)[0, 0] == F32(1000.4375) / F32(1024)


def test_signed_zeros_match_torchvision():
    # NumPy's maximum returns the second argument on a tie, torch's the first: refdet orders the
    # arguments so that even the sign of a zero IoU matches torchvision
    torch, ops = _torch()
    a = np.array([[0.0, 0.0, 1.0, 1.0], [-0.0, -0.0, -0.0, -0.0], [0.0, -0.0, 0.0, -0.0]], F32)
    b = np.array([[0.0, -0.0, 0.0, -0.0], [-0.0, 0.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], F32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for f, g in ((box_iou, ops.box_iou), (generalized_box_iou, ops.generalized_box_iou),
                 (distance_box_iou, ops.distance_box_iou)):
        _bits_equal(f(a, b), g(ta, tb).numpy())
        _bits_equal(f(b, a), g(tb, ta).numpy())


@given(rst.aligned_box_sets(min_n=1, max_n=12, min_size=0.25))
def test_paired_iou_of_identical_rows_is_one(pair):
    a, b = pair
    same = np.all(a == b, axis=1)
    got = box_iou_paired(a, b)
    np.testing.assert_array_equal(got[same], 1.0)
    assert np.all((got >= 0) & (got <= 1))


# ------------------------------------------------------------------------------------ paired family

_FAMILY = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
_CONVENTIONS = ("torchvision", "detectron2", "mmdet", "caffe", "tf", "onnx", "paper")


@given(rst.aligned_box_sets(max_n=12), st.sampled_from(_CONVENTIONS),
       st.sampled_from([np.float64, np.float32]))
def test_paired_family_is_the_diagonal(pair, conv, dtype):
    # one implementation: the paired values are the pairwise ones, bit for bit, under every profile
    a, b = (x.astype(dtype) for x in pair)
    for name in _FAMILY:
        full = getattr(riou, name)(a, b, convention=conv)
        diag = np.diagonal(full).copy() if len(a) else np.zeros(0, full.dtype)
        _bits_equal(getattr(riou, f"{name}_paired")(a, b, convention=conv), diag)
        values, cache = getattr(riou, f"{name}_paired_forward")(a, b, convention=conv)
        _bits_equal(values, diag)
        assert cache.value.shape == (len(a),)


def test_mmdet_ciou_gate_is_the_difference_from_torchvision():
    # The 0.36 gap of issue 12: mmdet's CIoU (its ciou_loss, mmdet v3 models/losses/iou_loss.py) gates
    # alpha by IoU > 0.5, after the CIoU authors' code. Pair: pred [0,0,4,1] (w/h = 4), target
    # [0,0,1,4] (w/h = 1/4): I = 1, U = 7, IoU = 1/7 <= 0.5 -> mmdet alpha = 0.
    #   v = 4/pi^2 (atan(4) - atan(1/4))^2 = 0.4052847 * 1.0808390^2 = 0.4734589
    #   torchvision alpha = v / (1 - 1/7 + v) = 0.3558231; alpha v = 0.1684676 = mmdet - torchvision
    p = np.array([[0.0, 0.0, 4.0, 1.0]])
    g = np.array([[0.0, 0.0, 1.0, 4.0]])
    v = 4 / math.pi ** 2 * (math.atan(4) - math.atan(0.25)) ** 2
    alpha = v / (1 - 1 / 7 + v)
    tv = complete_box_iou(p, g, eps=0.0)[0, 0]
    mm = complete_box_iou(p, g, convention="mmdet")[0, 0]
    np.testing.assert_allclose(mm - tv, 0.1684676, rtol=1e-5)                 # eps = 1e-6 aside
    np.testing.assert_allclose(alpha * v, 0.1684676, rtol=1e-6)
    assert mm == distance_box_iou(p, g, convention="mmdet")[0, 0]              # gate closed: CIoU = DIoU
    # and the loss is 1 - that value: one definition for mmdet's CIoU
    from refdet import losses as L
    assert L.ciou_loss_forward(p, g, convention="mmdet")[0][0] == 1 - mm


def _frozen_ciou(fwd, alpha0):
    # CIoU's alpha is a constant in the backward pass: the numerical derivative must see it frozen
    def f(boxes1, boxes2, **kw):
        value, c = fwd(boxes1, boxes2, **kw)
        return value - (alpha0 - c.alpha) * c.v * ((c.value > -1) & (c.value < 1)), c
    return f


def _generic_pairs(rng, n=10):
    xy = rng.uniform(0, 10, (n, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 6, (n, 2))], 1)
    xy = rng.uniform(0, 10, (n, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 6, (n, 2))], 1)
    b[:3] = a[:3] + rng.uniform(-0.3, 0.3, (3, 4))       # high IoU: mmdet's alpha gate open
    b[3] = a[3] + 20                                       # disjoint
    return a, b


@pytest.mark.parametrize("name", _FAMILY)
@pytest.mark.parametrize("conv", _CONVENTIONS)
@pytest.mark.parametrize("guard", [None, "plus_eps", "eps_union"])
def test_paired_gradcheck(name, conv, guard):
    from refdet.testing import check_gradients
    rng = np.random.default_rng(4)
    a, b = _generic_pairs(rng)
    if conv == "onnx":                                     # any diagonal: flipped corners are routed back
        a[5] = a[5][[2, 3, 0, 1]]
        b[6] = b[6][[2, 1, 0, 3]]
    fwd, bwd = getattr(riou, f"{name}_paired_forward"), getattr(riou, f"{name}_paired_backward")
    kw = {"convention": conv, "guard": guard}
    if name != "box_iou":
        kw["eps"] = 1e-3
    f = _frozen_ciou(fwd, fwd(a, b, **kw)[1].alpha) if name == "complete_box_iou" else fwd
    report = check_gradients(f, bwd, (a, b), kwargs=kw, rng=0)
    assert report.ok, str(report)


def _grid_pairs(data, n, grid=0.5):
    a = data.draw(rst.box_sets(min_n=n, max_n=n, grid=grid, low=0, high=20, max_size=10))
    b = data.draw(rst.box_sets(min_n=n, max_n=n, grid=grid, low=0, high=20, max_size=10))
    if n and data.draw(st.booleans()):
        b[: n // 2] = a[: n // 2]                          # identical pairs: ties in every max/min
    return a, b


@given(st.integers(0, 10), st.data())
def test_paired_backward_vs_torchvision_autograd(n, data):
    # torchvision.ops' pairwise functions on each pair (a 1 x 1 matrix each: the diagonal of the full
    # matrix would let 0 * NaN from other pairs into the gradient), differentiated by autograd
    torch, ops = _torch()
    a, b = _grid_pairs(data, n)
    up = np.linspace(-1, 1, n)
    for name in _FAMILY:
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        ref = torch.stack([getattr(ops, name)(ta[i:i + 1], tb[i:i + 1])[0, 0] for i in range(n)]) if n \
            else torch.zeros(0, dtype=torch.float64)
        values, cache = getattr(riou, f"{name}_paired_forward")(a, b)
        np.testing.assert_allclose(values, ref.detach().numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)
        ok = np.isfinite(values)                             # 0/0 of two points: no gradient to compare
        if not ok.any():
            continue
        (ref[torch.from_numpy(ok)] * torch.tensor(up[ok])).sum().backward()
        g = getattr(riou, f"{name}_paired_backward")(np.where(ok, up, 0.0), cache)
        np.testing.assert_allclose(g.dboxes1[ok], ta.grad.numpy()[ok], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(g.dboxes2[ok], tb.grad.numpy()[ok], rtol=1e-9, atol=1e-9)


@given(st.integers(0, 10), st.sampled_from([1e-7, 1e-3, 0.5]), st.data())
def test_paired_with_loss_knobs_vs_torchvision_losses(n, eps, data):
    # torchvision's IoU losses are 1 - value under guard="plus_eps", clamp_enclosing=False (CIoU: eps
    # 1e-7 in the DIoU part, eps in alpha): values and gradients against autograd, degenerate boxes
    # and ties included
    torch, ops = _torch()
    a, b = _grid_pairs(data, n)
    up = np.linspace(-1, 1, n)
    losses = {"generalized_box_iou": ops.generalized_box_iou_loss, "distance_box_iou": ops.distance_box_iou_loss,
              "complete_box_iou": ops.complete_box_iou_loss}
    for name, tv_loss in losses.items():
        kw = {"guard": "plus_eps", "clamp_enclosing": False, "eps": eps}
        if name == "complete_box_iou":
            kw.update(eps=1e-7, alpha_eps=eps)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        ref = tv_loss(ta, tb, reduction="none", eps=eps)
        values, cache = getattr(riou, f"{name}_paired_forward")(a, b, **kw)
        np.testing.assert_allclose(1 - values, ref.detach().numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)
        if not n or not np.isfinite(ref.detach().numpy()).all():
            continue
        ref.backward(torch.tensor(up))
        g = getattr(riou, f"{name}_paired_backward")(-up, cache)             # d(1 - v) = -dv
        np.testing.assert_allclose(g.dboxes1, ta.grad.numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(g.dboxes2, tb.grad.numpy(), rtol=1e-9, atol=1e-9)


# -------------------------------------------------------------------------------------- layouts

from tests._layouts import LAYOUTS, assert_bits_equal, with_layout  # noqa: E402


def test_results_do_not_depend_on_memory_layout():
    # every public function of refdet.iou (pairwise, paired, forward/backward): each layout of the
    # inputs (C, Fortran, strided, reversed, read-only) gives the same bits
    rng = np.random.default_rng(9)
    xy = rng.uniform(0, 50, (70, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 30, (70, 2))], 1)
    b = a[rng.permutation(70)] + rng.uniform(-3, 3, (70, 4))
    up = rng.standard_normal(70)
    names = [n for n in riou.__all__ if n != "IOU_GUARDS" and not n.endswith("_backward")]
    assert len(names) == 12
    for name in names:
        f = getattr(riou, name)
        base = f(*with_layout((a, b), "C"), convention="mmdet" if "distance" in name else "torchvision")
        bwd = getattr(riou, name.replace("_forward", "_backward"), None) if name.endswith("_forward") else None
        base_g = bwd(up, base[1]) if bwd else None
        for kind in LAYOUTS[1:]:
            out = f(*with_layout((a, b), kind), convention="mmdet" if "distance" in name else "torchvision")
            assert_bits_equal(out[0] if bwd else out, base[0] if bwd else base, f"{name}[{kind}]")
            if bwd:
                assert_bits_equal(bwd(with_layout(up, kind), out[1]), base_g, f"{name} backward[{kind}]")


def test_convention_tables_are_declared_and_documented():
    # every knob of the IoU family and of the losses is a declared Option with a source, and each
    # public function carries the generated table of its op
    from refdet import conventions
    from refdet import losses as L
    ops = {"box_iou": riou.box_iou, "box_iou_paired": riou.box_iou_paired_forward,
           "generalized_box_iou": riou.generalized_box_iou,
           "generalized_box_iou_paired": riou.generalized_box_iou_paired_forward,
           "distance_box_iou": riou.distance_box_iou, "distance_box_iou_paired": riou.distance_box_iou_paired,
           "complete_box_iou": riou.complete_box_iou, "complete_box_iou_paired": riou.complete_box_iou_paired,
           "giou_loss": L.giou_loss_forward, "diou_loss": L.diou_loss_forward, "ciou_loss": L.ciou_loss_forward,
           "rpn_loss": L.rpn_loss_forward, "retinanet_loss": L.retinanet_loss_forward,
           "multibox_loss": L.multibox_loss_forward}
    for op, f in ops.items():
        table = conventions.describe(op)
        assert all(o.kind != "legacy" and o.source for o in table.options.values()), op
        assert getattr(f, "__convention_op__", None) == op and "Conventions\n" in f.__doc__, op
        for knob in table.options:
            assert f"``{knob}``" in f.__doc__, (op, knob)


@pytest.mark.parametrize("name", ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"])
def test_paired_backward_names_its_forward(name):
    # a wrong cache is refused with the forward the caller should have used
    backward = getattr(riou, f"{name}_paired_backward")
    b = np.array([[0, 0, 2, 2.0]])
    _, cache = getattr(riou, f"{name}_paired_forward")(b, b)
    with pytest.raises(TypeError, match=rf"`cache` must be the PairedIoUCache returned by {name}_paired_forward; "
                                        r"got tuple"):
        backward(np.ones(1), tuple(cache))
