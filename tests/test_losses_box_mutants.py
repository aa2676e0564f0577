"""The box losses (refdet/losses/box.py), pinned where the first full mutation run (issue 19,
``python -m mutation run losses.box``) left survivors: the ``empty_mean`` knob's validation and value,
the ``formula`` and ``empty_mean`` overrides of every public forward, the cache check's message, and
the gradient through mmdet's CIoU clamp where the clamp is active.
"""
import numpy as np
import pytest

from refdet import losses as L

FWD = {"giou": L.giou_loss_forward, "diou": L.diou_loss_forward, "ciou": L.ciou_loss_forward}
BWD = {"giou": L.giou_loss_backward, "diou": L.diou_loss_backward, "ciou": L.ciou_loss_backward}

# Two flipped boxes (x2 < x1): mmdet clamps the enclosing widths at 0, so c^2 = eps and
# rho^2 / c^2 = 8 / 1e-6: CIoU = iou - (8e6 + alpha v) is far below -1 and the clamp to [-1, 1] is
# active: loss 1 - (-1) = 2, gradient 0 (torch's clamp passes no gradient outside (-1, 1)).
FLIP_P = np.array([[10.0, 10.0, 0.0, 0.0]])
FLIP_T = np.array([[12.0, 12.0, 2.0, 2.0]])
# An ordinary pair (IoU 1/7 <= 0.5: mmdet's alpha is 0, its CIoU is its DIoU)
OK_P = np.array([[0.0, 0.0, 2.0, 2.0]])
OK_T = np.array([[1.0, 1.0, 3.0, 3.0]])


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_empty_mean_accepts_numbers_and_names_what_it_refused(kind):
    e = np.zeros((0, 4))
    for v, want in ((3, 3.0), (np.float32(2.5), 2.5), (np.int64(-1), -1.0), (0.25, 0.25)):
        out, _ = FWD[kind](e, e, reduction="mean", empty_mean=v)
        assert out.shape == () and out.dtype == np.float64 and float(out) == want
    out, _ = FWD[kind](e, e, reduction="mean", convention="mmdet", empty_mean=7.0)   # overrides NaN
    assert float(out) == 7.0
    for bad, shown in ((True, "bool True"), ("0", "str '0'"), ([1.0], r"list \[1.0\]")):
        with pytest.raises(TypeError, match=r"`empty_mean` must be a float \(NaN allowed\); got " + shown):
            FWD[kind](e, e, reduction="mean", empty_mean=bad)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_formula_override_is_passed_through(kind):
    """formula= replaces the convention's formula: torchvision's profile with formula='mmdet' is mmdet's
    loss at the same eps (the flipped pair tells the formulas apart)."""
    tv_as_mm, _ = FWD[kind](FLIP_P, FLIP_T, convention="torchvision", formula="mmdet", eps=1e-6)
    mm, _ = FWD[kind](FLIP_P, FLIP_T, convention="mmdet", eps=1e-6)
    tv, _ = FWD[kind](FLIP_P, FLIP_T, convention="torchvision", eps=1e-6)
    np.testing.assert_array_equal(tv_as_mm, mm)
    assert abs(float(tv[0]) - float(mm[0])) > 0.5


def test_ciou_formula_override_detectron2_uses_eps_everywhere():
    p, g = np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[0.0, 0.0, 1.0, 2.0]])
    a, _ = L.ciou_loss_forward(p, g, eps=0.5, formula="detectron2")
    b, _ = L.ciou_loss_forward(p, g, eps=0.5, convention="detectron2")
    c, _ = L.ciou_loss_forward(p, g, eps=0.5)
    np.testing.assert_array_equal(a, b)
    assert float(a[0]) != float(c[0])


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_backward_refuses_another_cache_naming_the_forwards(kind):
    _, foreign = L.l1_forward(np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError, match=r"`cache` must be the BoxLossCache returned by giou_loss_forward / "
                                        r"diou_loss_forward / ciou_loss_forward; got RegressionCache"):
        BWD[kind](1.0, foreign)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_mmdet_ciou_gradient_is_zero_where_the_clamp_is_active(reduction):
    p, t = np.concatenate([FLIP_P, OK_P]), np.concatenate([FLIP_T, OK_T])
    loss, c = L.ciou_loss_forward(p, t, convention="mmdet", reduction="none")
    assert float(loss[0]) == 2.0                                   # 1 - clamp(CIoU, -1, 1) = 1 - (-1)
    assert float(loss[1]) < 1.0
    _, cr = L.ciou_loss_forward(p, t, convention="mmdet", reduction=reduction)
    up = np.array([0.5, 2.0]) if reduction == "none" else 2.0
    g = L.ciou_loss_backward(up, cr)
    assert np.all(g.dpred_boxes[0] == 0.0) and np.all(g.dtarget_boxes[0] == 0.0)
    # the unclamped row: its own gradient, scaled by its upstream share
    _, c1 = L.ciou_loss_forward(OK_P, OK_T, convention="mmdet", reduction="sum")
    share = {"none": 2.0, "sum": 2.0, "mean": 1.0}[reduction]
    g1 = L.ciou_loss_backward(share, c1)
    np.testing.assert_allclose(g.dpred_boxes[1], g1.dpred_boxes[0], rtol=1e-15, atol=0)
    np.testing.assert_allclose(g.dtarget_boxes[1], g1.dtarget_boxes[0], rtol=1e-15, atol=0)
    assert np.abs(g1.dpred_boxes).max() > 0.01
    # mmdet's own loss (a torch transcript, tests/test_losses.py) agrees with autograd
    torch = pytest.importorskip("torch")
    from tests.test_losses import _mmdet_reference
    b1 = torch.tensor(p, requires_grad=True)
    b2 = torch.tensor(t, requires_grad=True)
    ref = _mmdet_reference("ciou", b1, b2, 1e-6)
    rows = {"none": [0.5, 2.0], "sum": [2.0, 2.0], "mean": [1.0, 1.0]}[reduction]
    ref.backward(torch.tensor(rows, dtype=torch.float64))
    np.testing.assert_allclose(g.dpred_boxes, b1.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.dtarget_boxes, b2.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_box_arguments_are_named_in_errors(kind):
    ok = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match="`pred_boxes`"):
        FWD[kind](ok[:, :3], ok)
    with pytest.raises(ValueError, match="`target_boxes`"):
        FWD[kind](ok, ok[:, :3])
    with pytest.raises(ValueError, match=r"^`pred_boxes` and `target_boxes` must have the same shape \(N, 4\); "
                                         r"got \(2, 4\) and \(1, 4\)$"):
        FWD[kind](ok, ok[:1])


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
@pytest.mark.parametrize("swap", [False, True])
def test_mixed_float32_float64_pair_is_computed_in_float64(kind, swap):
    """float32 + float64 -> float64 (as torch promotes): the loss and both gradients are float64 and equal
    the float64 computation on the upcast float32 boxes, bit for bit, in whichever slot the float32 is."""
    a = np.array([[0.1, 0.2, 1000.3, 1000.7], [3.3, 1.7, 9.1, 8.9]], np.float32)
    b = np.array([[0.15, 0.1, 999.9, 1001.1], [2.2, 2.5, 8.0, 9.75]])
    p, t = (b, a) if swap else (a, b)
    loss, c = FWD[kind](p, t, reduction="sum")
    g = BWD[kind](1.5, c)
    loss64, c64 = FWD[kind](p.astype(np.float64), t.astype(np.float64), reduction="sum")
    g64 = BWD[kind](1.5, c64)
    assert loss.dtype == g.dpred_boxes.dtype == g.dtarget_boxes.dtype == np.float64
    np.testing.assert_array_equal(loss, loss64)
    np.testing.assert_array_equal(g.dpred_boxes, g64.dpred_boxes)
    np.testing.assert_array_equal(g.dtarget_boxes, g64.dtarget_boxes)


def test_cache_names_the_loss_and_the_formula_used():
    for kind in ("giou", "diou", "ciou"):
        for conv, formula, want in (("torchvision", None, "torchvision"), ("mmdet", None, "mmdet"),
                                    ("torchvision", "mmdet", "mmdet")):
            _, c = FWD[kind](OK_P, OK_T, convention=conv, formula=formula)
            assert (c.kind, c.formula) == (kind, want)
    _, c = L.ciou_loss_forward(OK_P, OK_T, convention="detectron2")
    assert c.formula == "detectron2"


@pytest.mark.parametrize("dtype, p, t", [
    (np.float64, [17.3, 10.8, 20.6, 15.3], [15.4, 9.3, 21.3, 15.9]),
    (np.float32, [12.3, 7.7, 22.3, 17.5], [13.0, 8.3, 23.1, 17.1]),
])
def test_torchvision_diou_loss_sums_in_torchvision_order(dtype, p, t):
    """torchvision: loss = (1 - iou) + rho^2/c^2, not 1 - (iou - rho^2/c^2) (refdet.iou's DIoU): on these
    pairs the two orders differ in the last bit, and the loss has torchvision's."""
    p, t = np.array([p], dtype), np.array([t], dtype)
    loss, c = L.diou_loss_forward(p, t)
    one = dtype(1)
    assert loss[0] == (one - c.iou.iou[0]) + c.iou.distance[0]
    assert loss[0] != one - (c.iou.iou[0] - c.iou.distance[0])         # the case tells the orders apart
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    ref = ops.distance_box_iou_loss(torch.from_numpy(p), torch.from_numpy(t)).numpy()
    np.testing.assert_array_equal(loss.view(np.uint8), ref.view(np.uint8))


def test_mmdet_ciou_loss_sums_in_mmdet_order():
    """mmdet: cious = iou - (rho^2/c^2 + alpha v); refdet.iou's CIoU subtracts the two in turn. On this pair
    (IoU > 0.5: alpha > 0) the orders differ in the last bit, and the loss has mmdet's."""
    p = np.array([[2.7, 8.1, 6.300000000000001, 12.2]])
    t = np.array([[3.0, 7.8, 6.300000000000001, 12.799999999999999]])
    loss, c = L.ciou_loss_forward(p, t, convention="mmdet")
    ci = c.iou
    assert ci.alpha[0] > 0
    assert loss[0] == 1.0 - (ci.iou[0] - (ci.distance[0] + ci.alpha[0] * ci.v[0]))
    assert loss[0] != 1.0 - ((ci.iou[0] - ci.distance[0]) - ci.alpha[0] * ci.v[0])
    torch = pytest.importorskip("torch")
    from tests.test_losses import _mmdet_reference
    ref = _mmdet_reference("ciou", torch.from_numpy(p), torch.from_numpy(t), 1e-6).numpy()
    np.testing.assert_array_equal(loss, ref)
