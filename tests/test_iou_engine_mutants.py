"""Tests written from the mutation run of refdet._iou_engine (mutation/results.md): the backward pass's
branches at the edges the other tests do not reach. Values worked by hand in the comments; torch
autograd where it has the op (``pytest.importorskip`` first).
"""
import numpy as np
import pytest

from refdet import iou as riou

F32 = np.float32

# both boxes flipped: the enclosing width max(x2) - min(x1) = 2 - 10 = -8 is clamped to 0, so with
# eps = 0 c^2 = 0 while rho^2 = (5 - 7)^2 * 2 = 8: DIoU = 0 - 8 / 0 = -inf
FLIP_A = np.array([[10.0, 10.0, 0.0, 0.0]])
FLIP_B = np.array([[12.0, 12.0, 2.0, 2.0]])


@pytest.mark.parametrize("guard", ["none", "eps_union", "plus_eps"])
def test_diou_gradient_where_c2_is_zero_is_autograds_inf(guard):
    # The guards that divide as they are ("none") or by a floor of 0 keep rho^2 / c^2 = 8 / 0: the
    # gradient of -rho^2 / c^2 w.r.t. x1 is -(xp - xg) / c^2 = -(5 - 7) / 0 = +inf for box 1 (-inf for
    # box 2), and the clamped enclosing extents pass nothing (torch's clamp backward is a where(): the
    # inf * 0 there is not NaN). The zero-writing guards would give 0 here instead.
    val, cache = riou.distance_box_iou_paired_forward(FLIP_A, FLIP_B, convention="paper", guard=guard, eps=0.0)
    assert val[0] == -np.inf
    g = riou.distance_box_iou_paired_backward(np.ones(1), cache)
    assert g.dboxes1.tolist() == [[np.inf] * 4]
    assert g.dboxes2.tolist() == [[-np.inf] * 4]


def test_diou_gradient_where_c2_is_zero_vs_torch():
    torch = pytest.importorskip("torch")
    a = torch.tensor(FLIP_A, requires_grad=True)
    b = torch.tensor(FLIP_B, requires_grad=True)
    x1, y1, x2, y2 = a.unbind(-1)
    X1, Y1, X2, Y2 = b.unbind(-1)
    inter = (torch.min(x2, X2) - torch.max(x1, X1)).clamp(min=0) * (torch.min(y2, Y2) - torch.max(y1, Y1)).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (X2 - X1) * (Y2 - Y1) - inter
    wc = (torch.max(x2, X2) - torch.min(x1, X1)).clamp(min=0)
    hc = (torch.max(y2, Y2) - torch.min(y1, Y1)).clamp(min=0)
    rho2 = ((x1 + x2) / 2 - (X1 + X2) / 2) ** 2 + ((y1 + y2) / 2 - (Y1 + Y2) / 2) ** 2
    (inter / union - rho2 / (wc ** 2 + hc ** 2)).sum().backward()
    _, cache = riou.distance_box_iou_paired_forward(FLIP_A, FLIP_B, convention="paper")
    g = riou.distance_box_iou_paired_backward(np.ones(1), cache)
    np.testing.assert_array_equal(g.dboxes1, a.grad.numpy())
    np.testing.assert_array_equal(g.dboxes2, b.grad.numpy())


def test_ciou_clip_passes_no_gradient_at_minus_one():
    # Two points 5 apart (3-4-5): rho^2 = 25 = c^2 (eps = 0), IoU 0 (guard inter_gt_0), no aspect term
    # (a point's theta is 0 under the zero-writing guards) and mmdet's gate closed: CIoU = -1 exactly,
    # where mmdet's clamp(min=-1, max=1) is active: torch's clamp backward passes nothing at the bound.
    p0, p1 = np.array([[0.0, 0, 0, 0]]), np.array([[3.0, 4, 3, 4]])
    kw = dict(convention="mmdet", eps=0.0, guard="inter_gt_0")
    val, cache = riou.complete_box_iou_paired_forward(p0, p1, **kw)
    assert val[0] == -1.0
    g = riou.complete_box_iou_paired_backward(np.ones(1), cache)
    assert not g.dboxes1.any() and not g.dboxes2.any()
    # without the clip the same point has a gradient (the subgradients of the tied min/max)
    _, cache = riou.complete_box_iou_paired_forward(p0, p1, clip=False, **kw)
    assert riou.complete_box_iou_paired_backward(np.ones(1), cache).dboxes1.any()


def test_ciou_clip_passes_no_gradient_at_plus_one():
    # float32 boxes whose x1 differ by one ulp of 1: every width rounds to 1000, so I = U and IoU = 1
    # exactly, rho^2 / c^2 ~ 1e-21 and v = 0: CIoU = 1.0. Unclipped, box 1's x1 still moves its area
    # (d IoU / d x1 = I h / U^2 = 1000 / 1e6 = 0.001); clipped at the bound it passes nothing.
    a = np.array([[1, 0, 1001, 1000]], F32)
    b = a.copy()
    b[0, 0] = np.nextafter(F32(1), F32(2))
    val, cache = riou.complete_box_iou_paired_forward(a, b, clip=True)
    assert val[0] == 1.0
    g = riou.complete_box_iou_paired_backward(np.ones(1, F32), cache)
    assert not g.dboxes1.any() and not g.dboxes2.any()
    _, cache = riou.complete_box_iou_paired_forward(a, b, clip=False)
    g = riou.complete_box_iou_paired_backward(np.ones(1, F32), cache)
    assert g.dboxes1[0, 0] == F32(0.001) and g.dboxes2[0, 0] == F32(-0.001)


def test_pfr_gradient_where_the_intersection_underflows():
    # Areas 1e-170 * 1e170 = 1 each; the intersection is 1e-170 by 1e-170 = 1e-340, which underflows to
    # I = 0 although both widths are > 0. py-faster-rcnn's guard tests the widths: it computes I / U
    # = 0 / 2 there and its gradient flows, d IoU / d x2 = (1 / U) * ih = 5e-171 for box 1 (its x2 is
    # the min), d IoU / d x1 = -(1 / U) ih (1/2 each on the tie at 0) = -2.5e-171. The guards that test
    # I > 0 (detectron2's, ONNX's) write 0 there and pass nothing.
    a = np.array([[0.0, 0.0, 1e-170, 1e170]])
    b = np.array([[0.0, 0.0, 1e170, 1e-170]])
    val, cache = riou.box_iou_paired_forward(a, b, guard="pfr")
    assert val[0] == 0.0 and cache.inter[0] == 0.0
    g = riou.box_iou_paired_backward(np.ones(1), cache)
    np.testing.assert_allclose(g.dboxes1, [[-2.5e-171, -2.5e-171, 5e-171, 0.0]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(g.dboxes2, [[-2.5e-171, -2.5e-171, 0.0, 5e-171]], rtol=1e-12, atol=0)
    for guard in ("inter_gt_0", "skip_degenerate"):
        _, cache = riou.box_iou_paired_forward(a, b, guard=guard)
        g = riou.box_iou_paired_backward(np.ones(1), cache)
        assert not g.dboxes1.any() and not g.dboxes2.any(), guard


@pytest.mark.parametrize("dtype", [np.float64, F32])
def test_mmdet_alpha_gate_is_strict(dtype):
    # [0, 0, 2, 2] against [0, 0, 2, 1]: I = 2, U = 4, IoU = 0.5 exactly (eps = 0). mmdet gates alpha by
    # IoU > 0.5: closed here, so CIoU = DIoU = 0.5 - rho^2 / c^2 = 0.5 - 0.25 / 8 = 0.46875, in the
    # input dtype. A gate at 0.4 opens it: CIoU = DIoU - alpha v with v = 4/pi^2 (atan 1 - atan 2)^2.
    a = np.array([[0, 0, 2, 2]], dtype)
    b = np.array([[0, 0, 2, 1]], dtype)
    for f in (riou.complete_box_iou_paired, lambda a, b, **k: riou.complete_box_iou(a, b, **k)[0]):
        got = f(a, b, convention="mmdet", eps=0.0)
        assert got.dtype == dtype and got.tolist() == [0.46875]
        v = 4 / np.pi ** 2 * (np.arctan(1.0) - np.arctan(2.0)) ** 2
        opened = f(a, b, convention="mmdet", eps=0.0, alpha_gate=0.4)
        np.testing.assert_allclose(opened, [0.46875 - v / (0.5 + v) * v], rtol=1e-6 if dtype == F32 else 1e-14)


@pytest.mark.parametrize("f", [riou.box_iou, riou.box_iou_paired, riou.box_iou_paired_forward])
def test_iou_eps_is_checked_whatever_the_guard(f):
    a = np.array([[0.0, 0, 1, 1]])
    for guard in ("none", "plus_eps"):
        with pytest.raises(ValueError, match="`eps`"):
            f(a, a, guard=guard, eps=-1.0)


def test_paired_lengths_must_match():
    with pytest.raises(ValueError, match="`boxes1`.*`boxes2`|`boxes2`.*`boxes1`"):
        riou.generalized_box_iou_paired(np.zeros((2, 4)), np.zeros((3, 4)))


def test_forward_cache_leaves_unused_terms_none():
    # PairedIoUCache: "Terms a kind does not use are None"; the boxes before sort_corners only with it
    a = np.array([[0.0, 0, 2, 2]])
    b = np.array([[1.0, 1, 3, 4]])
    unused = {
        riou.box_iou_paired_forward: ("enclosing", "area_c", "distance", "rho2", "c2", "v", "alpha", "theta"),
        riou.generalized_box_iou_paired_forward: ("distance", "rho2", "c2", "v", "alpha", "theta"),
        riou.distance_box_iou_paired_forward: ("enclosing", "area_c", "v", "alpha", "theta"),
        riou.complete_box_iou_paired_forward: ("enclosing", "area_c"),
    }
    for f, names in unused.items():
        val, cache = f(a, b)
        for name in names:
            assert getattr(cache, name) is None, (f.__name__, name)
        used = [n for n in ("enclosing", "area_c", "distance", "rho2", "c2", "v", "alpha", "theta") if n not in names]
        for name in used:
            assert getattr(cache, name).shape == (1,), (f.__name__, name)
        assert cache.orig1 is None and cache.orig2 is None
        assert cache.kind == f.__name__.split("_")[0].replace("generalized", "giou").replace(
            "distance", "diou").replace("complete", "ciou").replace("box", "iou")
        np.testing.assert_array_equal(cache.value, val)
        _, cache = f(a, b[:, [2, 3, 0, 1]], sort_corners=True)
        np.testing.assert_array_equal(cache.orig2, b[:, [2, 3, 0, 1]])
        np.testing.assert_array_equal(cache.boxes2, b)


def test_centre_distance_forms_agree_where_exact():
    # small integers: ((X1 + X2) - (x1 + x2))^2 / 4 and ((x1 + x2)/2 - (X1 + X2)/2)^2 are the same
    # number, exactly. Centres (1, 1.5) and (6, 4): rho^2 = 25 + 6.25 = 31.25; enclosing box 0..8 by
    # 0..5: c^2 = 64 + 25 = 89 (eps = 0); IoU 0.
    a = np.array([[0.0, 0, 2, 3]])
    b = np.array([[4.0, 3, 8, 5]])
    for form in ("halves", "sums"):
        got = riou.distance_box_iou(a, b, convention="paper", centre_distance=form)
        assert got.tolist() == [[-31.25 / 89]], form
        _, cache = riou.distance_box_iou_paired_forward(a, b, convention="paper", centre_distance=form)
        assert cache.rho2.tolist() == [31.25] and cache.c2.tolist() == [89.0]


def test_atan_must_be_callable():
    a = np.array([[0.0, 0, 2, 3]])
    for f in (riou.complete_box_iou, riou.complete_box_iou_paired):
        with pytest.raises(TypeError, match="`atan`"):
            f(a, a, atan=3)


@pytest.mark.parametrize("conv", ["detectron2", "onnx", "tf"])
def test_ciou_of_a_point_box_is_its_diou_with_its_gradient(conv):
    # Under the zero-writing guards a point box has no aspect term (theta = 0, v = 0): its CIoU is its
    # DIoU, and so is its gradient (the aspect term passes 0, not 0 * NaN from atan(0 / 0)).
    p = np.array([[1.0, 1, 1, 1], [0, 0, 2, 3]])
    b = np.array([[0.0, 0, 2, 3], [1, 1, 1, 1]])
    vc, cc = riou.complete_box_iou_paired_forward(p, b, convention=conv)
    vd, cd = riou.distance_box_iou_paired_forward(p, b, convention=conv)
    np.testing.assert_array_equal(vc, vd)
    up = np.array([1.0, -2.0])
    gc = riou.complete_box_iou_paired_backward(up, cc)
    gd = riou.distance_box_iou_paired_backward(up, cd)
    assert np.isfinite(gc.dboxes1).all() and np.isfinite(gc.dboxes2).all()
    np.testing.assert_array_equal(gc.dboxes1, gd.dboxes1)
    np.testing.assert_array_equal(gc.dboxes2, gd.dboxes2)


def test_zero_guards_pass_the_gradient_where_the_denominators_are_one():
    # The zero-writing guards zero the gradient only where C = 0 (GIoU) or c^2 = 0 (DIoU); where they
    # are 1 exactly the gradient is the unguarded one. GIoU: [0, 0, .5, 1] and [.5, 0, 1, 1] touch:
    # I = 0, U = 1 = C. DIoU: [0, 0, .25, .5] and [.25, 0, .5, .5], eps = .5: c^2 = .25 + .25 + .5 = 1,
    # rho^2 = .25^2 = .0625. Where I = 0 the IoU term passes nothing either way.
    up = np.array([1.5])
    for fwd, bwd, a, b, kw in (
            (riou.generalized_box_iou_paired_forward, riou.generalized_box_iou_paired_backward,
             [[0, 0, 0.5, 1]], [[0.5, 0, 1, 1]], {}),
            (riou.distance_box_iou_paired_forward, riou.distance_box_iou_paired_backward,
             [[0, 0, 0.25, 0.5]], [[0.25, 0, 0.5, 0.5]], {"eps": 0.5})):
        a, b = np.array(a, float), np.array(b, float)
        _, free = fwd(a, b, guard="none", **kw)
        assert (free.area_c if free.area_c is not None else free.c2).tolist() == [1.0]
        want = bwd(up, free)
        assert want.dboxes1.any() and want.dboxes2.any()
        for guard in ("inter_gt_0", "pfr", "skip_degenerate"):
            got = bwd(up, fwd(a, b, guard=guard, **kw)[1])
            np.testing.assert_array_equal(got.dboxes1, want.dboxes1, err_msg=guard)
            np.testing.assert_array_equal(got.dboxes2, want.dboxes2, err_msg=guard)


BACKWARDS = [
    (riou.box_iou_paired_forward, riou.box_iou_paired_backward),
    (riou.generalized_box_iou_paired_forward, riou.generalized_box_iou_paired_backward),
    (riou.distance_box_iou_paired_forward, riou.distance_box_iou_paired_backward),
    (riou.complete_box_iou_paired_forward, riou.complete_box_iou_paired_backward),
]


@pytest.mark.parametrize("fwd,bwd", BACKWARDS, ids=lambda f: f.__name__)
def test_backward_checks_its_arguments_and_keeps_the_dtype(fwd, bwd):
    a = np.array([[0, 0, 2, 3], [1, 1, 4, 2]], F32)
    b = np.array([[1, 0, 3, 2], [0, 0, 3, 3]], F32)
    _, cache = fwd(a, b)
    g = bwd(np.array([1.0, -0.5]), cache)             # float64 upstream: the gradient stays float32
    assert g.dboxes1.dtype == F32 and g.dboxes2.dtype == F32
    assert g.dboxes1.shape == g.dboxes2.shape == (2, 4)
    with pytest.raises(TypeError, match=f"`cache` must be the PairedIoUCache returned by {fwd.__name__}; got tuple"):
        bwd(np.ones(2), tuple(cache))
    with pytest.raises(ValueError, match=r"`dvalues` must have shape \(2,\) \(one per pair\); got \(3,\)"):
        bwd(np.ones(3), cache)


def test_float16_giou_rounds_the_enclosing_box_as_torchvision():
    # torchvision computes max(x2) - min(x1) of float16 boxes in float16 (then upcasts): the enclosing
    # width 1000.5 - 0.0625 = 1000.4375 rounds to 1000.5 (float16 spacing 0.5 in [512, 1024)), the
    # height 1000.5 - 0.0625 of the second pair likewise; refdet's "torchvision" profile rounds both (half_wh).
    torch = pytest.importorskip("torch")
    tvops = pytest.importorskip("torchvision.ops")
    a = np.array([[0.0625, 0, 1000.5, 1], [0.125, 0.0625, 3, 700.25]], np.float16)
    b = np.array([[0.125, 0, 1000, 1], [0, 0.125, 2, 1000.5]], np.float16)
    want = tvops.generalized_box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    got = riou.generalized_box_iou(a, b)
    assert got.dtype == F32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(riou.generalized_box_iou_paired(a, b), np.diagonal(want))


def test_a_float64_atan_keeps_the_float32_result():
    a = np.array([[0, 0, 2, 3], [1, 1, 4, 2]], F32)
    b = np.array([[1, 0, 3, 2], [0, 0, 3, 3]], F32)

    def atan64(x):
        return np.arctan(x.astype(np.float64))

    for f in (riou.complete_box_iou, riou.complete_box_iou_paired):
        got = f(a, b, atan=atan64)
        assert got.dtype == F32
        np.testing.assert_allclose(got, f(a, b), rtol=1e-6)


def test_caffe_pfr_gradient_of_boxes_one_pixel_apart():
    # py-faster-rcnn's +1 pixels: [0, 0, 10, 10] and [10, 0, 20, 10] share the column x = 10: iw = 10 -
    # 10 + 1 = 1 > 0, ih = 11, I = 11, U = 121 + 121 - 11 = 231, IoU = 1/21. Its guard (pfr: iw > 0 and
    # ih > 0) lets the gradient through as inter_gt_0 does (I > 0): d IoU / d x2 of box 1 = (dI - IoU dU)
    # / U with dI = ih = 11 (its x2 is the min) and dU = 11 - 11 = 0: 11 / 231.
    a = np.array([[0.0, 0, 10, 10]])
    b = np.array([[10.0, 0, 20, 10]])
    grads = {}
    for guard in ("pfr", "inter_gt_0"):
        val, cache = riou.box_iou_paired_forward(a, b, convention="caffe", guard=guard)
        assert val.tolist() == [11 / 231]
        grads[guard] = riou.box_iou_paired_backward(np.ones(1), cache)
    np.testing.assert_allclose(grads["pfr"].dboxes1[0, 2], 11 / 231, rtol=1e-14)
    np.testing.assert_array_equal(grads["pfr"].dboxes1, grads["inter_gt_0"].dboxes1)
    np.testing.assert_array_equal(grads["pfr"].dboxes2, grads["inter_gt_0"].dboxes2)
    # one row lower the boxes share the row y = 10 too: the same under the transposed pair
    val, cache = riou.box_iou_paired_forward(a[:, [1, 0, 3, 2]], b[:, [1, 0, 3, 2]], convention="caffe")
    np.testing.assert_allclose(riou.box_iou_paired_backward(np.ones(1), cache).dboxes1[0, 3], 11 / 231, rtol=1e-14)


def test_zero_guards_keep_the_aspect_gradient_of_a_line_box():
    # A zero-width box [0, 0, 0, 2] has an aspect ratio (atan(0 / 2) = 0): only a point (0 / 0) has
    # none. Against [0, 0, 2, 2] every quantity is defined (I = 0, U = 4), so detectron2's CIoU and
    # its gradient are torchvision's, aspect term included.
    line = np.array([[0.0, 0, 0, 2]])
    square = np.array([[0.0, 0, 2, 2]])
    v_tv, c_tv = riou.complete_box_iou_paired_forward(line, square)
    v_d2, c_d2 = riou.complete_box_iou_paired_forward(line, square, convention="detectron2")
    np.testing.assert_array_equal(v_d2, v_tv)
    assert c_tv.v[0] > 0
    g_tv = riou.complete_box_iou_paired_backward(np.ones(1), c_tv)
    g_d2 = riou.complete_box_iou_paired_backward(np.ones(1), c_d2)
    np.testing.assert_array_equal(g_d2.dboxes1, g_tv.dboxes1)
    np.testing.assert_array_equal(g_d2.dboxes2, g_tv.dboxes2)


def test_zero_guard_diou_gradient_at_a_point_without_the_enclosing_clamp():
    # Two identical points, eps = 0: c^2 = 0 and rho^2 = 0; detectron2's guard writes 0 and passes 0
    # (not 0 / 0 = NaN), also when no clamp of the enclosing box would drop it afterwards
    p = np.array([[1.0, 1, 1, 1]])
    val, cache = riou.distance_box_iou_paired_forward(p, p, convention="detectron2", eps=0.0, clamp_enclosing=False)
    assert val.tolist() == [0.0] and cache.c2.tolist() == [0.0]
    g = riou.distance_box_iou_paired_backward(np.ones(1), cache)
    assert g.dboxes1.tolist() == [[0.0] * 4] and g.dboxes2.tolist() == [[0.0] * 4]


def test_giou_gradient_where_the_enclosing_area_is_zero():
    # torchvision's GIoU divides as it is: both boxes flipped, C = 0 (clamped) while U = 100 + 100 = 200,
    # r = (C - U) / C = -inf and GIoU = +inf; dr/dU = -1 / C = -inf reaches the corners through the
    # areas (d area / d x1 = -(y2 - y1) = 10 > 0): autograd's +-inf, not the 0 of the zero-writing guards
    val, cache = riou.generalized_box_iou_paired_forward(FLIP_A, FLIP_B)
    assert val.tolist() == [np.inf]
    g = riou.generalized_box_iou_paired_backward(np.ones(1), cache)
    assert g.dboxes1.tolist() == [[np.inf, np.inf, -np.inf, -np.inf]]
    assert g.dboxes2.tolist() == [[np.inf, np.inf, -np.inf, -np.inf]]
    torch = pytest.importorskip("torch")
    tvops = pytest.importorskip("torchvision.ops")
    a = torch.tensor(FLIP_A, requires_grad=True)
    b = torch.tensor(FLIP_B, requires_grad=True)
    tvops.generalized_box_iou(a, b)[0, 0].backward()
    np.testing.assert_array_equal(g.dboxes1, a.grad.numpy())
    np.testing.assert_array_equal(g.dboxes2, b.grad.numpy())


def test_torchvision_iou_gradient_at_a_point_is_nan():
    # guard "none": I / U = 0 / 0 at two identical points; autograd's d(I / U) / dU = -I / U^2 = NaN
    # reaches every corner through the areas (torchvision's box_iou has no guard)
    p = np.array([[1.0, 1, 1, 1]])
    _, cache = riou.box_iou_paired_forward(p, p)
    g = riou.box_iou_paired_backward(np.ones(1), cache)
    assert np.isnan(g.dboxes1).all() and np.isnan(g.dboxes2).all()


def test_caffe_enclosing_width_of_zero_width_boxes_is_one_pixel():
    # Two zero-width boxes on the line x = 0 under py-faster-rcnn's +1 pixels: the enclosing width is
    # 0 + 1 = 1 > 0, inside the clamp, so it passes its gradient: DIoU = IoU - rho^2 / c^2 with c^2 =
    # 1 + 21^2 + eps, rho^2 = (2.5 - 15)^2; d(-rho^2 / c^2) / d wc = 2 wc rho^2 / c2^2, split in halves
    # between the tied x2 (and x1) of the two boxes. The IoU term is 0 here (pfr: ih = 5 - 10 + 1 < 0).
    a = np.array([[0.0, 0, 0, 5]])
    b = np.array([[0.0, 10, 0, 20]])
    _, cache = riou.distance_box_iou_paired_forward(a, b, convention="caffe")
    g = riou.distance_box_iou_paired_backward(np.ones(1), cache)
    c2 = 1.0 + 21.0 ** 2 + 1e-7
    d_wc = 2 * 1.0 * 12.5 ** 2 / c2 ** 2
    np.testing.assert_allclose(g.dboxes1[0, [0, 2]], [-d_wc / 2, d_wc / 2], rtol=1e-12)
    np.testing.assert_allclose(g.dboxes2[0, [0, 2]], [-d_wc / 2, d_wc / 2], rtol=1e-12)


@pytest.mark.parametrize("fwd,bwd", BACKWARDS, ids=lambda f: f.__name__)
def test_backward_names_bad_dvalues_and_lets_no_warning_escape(fwd, bwd):
    from tests.test_iou_mutants import FP_CASES

    a = np.array([[0.0, 0, 2, 3]])
    _, cache = fwd(a, a)
    with pytest.raises((TypeError, ValueError), match="`dvalues`"):
        bwd(np.array(["x"]), cache)
    # 0/0, x/0 and overflow in the reverse pass are answers (NaN, inf), never warnings
    for conv in ("torchvision", "paper", "detectron2", "mmdet"):
        for name, (p, q) in FP_CASES.items():
            with np.errstate(all="ignore"):
                _, cache = fwd(p, q, convention=conv)
                want = bwd(np.ones(1), cache)
            with np.errstate(all="raise", under="ignore"):       # NumPy never warns on underflow
                got = bwd(np.ones(1), cache)
            np.testing.assert_array_equal(got.dboxes1, want.dboxes1, err_msg=f"{conv} {name}")
            np.testing.assert_array_equal(got.dboxes2, want.dboxes2, err_msg=f"{conv} {name}")
