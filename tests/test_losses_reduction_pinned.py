"""The reductions shared by every loss (refdet/losses/_reduction.py), pinned where mutation testing
(issue 19, ``python -m mutation run losses.reduction``) found them unpinned: the mean of one element,
the dtype of every reduced value and of the gradients, the empty mean, the count of cross entropy's
mean, the errors naming ``dloss``, ``cache`` and ``reduction``.
"""
import numpy as np
import pytest

from refdet import losses as L


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduced_values_and_dtypes(dtype):
    p = np.array([0.1, -0.7, 2.5], dtype=dtype)
    t = np.zeros(3, dtype=dtype)
    s, _ = L.l1_forward(p, t, reduction="sum")
    m, _ = L.l1_forward(p, t, reduction="mean")
    n, _ = L.l1_forward(p, t, reduction="none")
    assert s.shape == () and s.dtype == dtype and m.shape == () and m.dtype == dtype and n.dtype == dtype
    assert s == np.abs(p).sum(dtype=dtype)
    assert m == np.abs(p).sum(dtype=dtype) / dtype(3)
    one, _ = L.l1_forward(np.array([3.0], dtype=dtype), np.array([1.0], dtype=dtype), reduction="mean")
    assert one == 2.0 and one.dtype == dtype                       # a mean over one element is that element


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_reductions(dtype):
    e = np.zeros((0,), dtype=dtype)
    m, c = L.l1_forward(e, e, reduction="mean")
    assert np.isnan(m) and m.shape == () and m.dtype == dtype
    s, _ = L.l1_forward(e, e, reduction="sum")
    assert s == 0.0 and s.dtype == dtype
    g = L.l1_backward(1.0, c)
    assert g.dpred.shape == (0,) and g.dpred.dtype == dtype


def test_cross_entropy_mean_counts_the_non_ignored_rows():
    z = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    y = np.array([0, -1, 1])                                      # -1: ignore_index
    none, _ = L.softmax_cross_entropy_forward(z, y, reduction="none")
    mean, c = L.softmax_cross_entropy_forward(z, y, reduction="mean")
    assert mean == (none[0] + none[2]) / 2.0
    g = L.softmax_cross_entropy_backward(1.0, c).dlogits
    g_sum = L.softmax_cross_entropy_backward(1.0, L.softmax_cross_entropy_forward(z, y, reduction="sum")[1]).dlogits
    np.testing.assert_array_equal(g, g_sum / 2.0)
    one, c1 = L.softmax_cross_entropy_forward(z[:1], y[:1], reduction="mean")        # count 1: g / 1
    np.testing.assert_array_equal(L.softmax_cross_entropy_backward(2.0, c1).dlogits,
                                  L.softmax_cross_entropy_backward(2.0, L.softmax_cross_entropy_forward(
                                      z[:1], y[:1], reduction="sum")[1]).dlogits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_backward_divides_by_the_count(dtype):
    p = np.array([0.5, -2.0, 3.0, 0.0], dtype=dtype)
    _, c = L.l1_forward(p, np.zeros(4, dtype=dtype), reduction="mean")
    g = L.l1_backward(np.float64(2.0), c)
    assert g.dpred.dtype == dtype and g.dtarget.dtype == dtype
    np.testing.assert_array_equal(g.dpred, np.array([0.5, -0.5, 0.5, 0.0], dtype=dtype))
    np.testing.assert_array_equal(g.dtarget, -g.dpred)
    _, c1 = L.l1_forward(np.array([4.0], dtype=dtype), np.zeros(1, dtype=dtype), reduction="mean")
    assert L.l1_backward(3.0, c1).dpred.tolist() == [3.0]
    _, cs = L.l1_forward(p, np.zeros(4, dtype=dtype), reduction="sum")
    np.testing.assert_array_equal(L.l1_backward(np.array([[2.0]]), cs).dpred, np.array([2, -2, 2, 0], dtype=dtype))
    _, cn = L.l1_forward(p, np.zeros(4, dtype=dtype), reduction="none")
    up = np.array([1.0, 2.0, 3.0, 4.0])
    gn = L.l1_backward(up, cn).dpred
    assert gn.dtype == dtype and gn.flags.c_contiguous
    np.testing.assert_array_equal(gn, np.array([1, -2, 3, 0], dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_focal_mean_backward_scalar(dtype):
    """The focal loss takes the reduced upstream gradient as a scalar: mean = sum / N, dtype kept."""
    x = np.array([[0.3, -1.2], [2.0, 0.1]], dtype=dtype)
    t = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    _, cm = L.sigmoid_focal_loss_forward(x, t, reduction="mean")
    _, cs = L.sigmoid_focal_loss_forward(x, t, reduction="sum")
    gm = L.sigmoid_focal_loss_backward(dtype(4.0), cm).dlogits
    gs = L.sigmoid_focal_loss_backward(dtype(1.0), cs).dlogits
    assert gm.dtype == dtype and gm.shape == (2, 2)
    np.testing.assert_array_equal(gm, gs)


def test_reduction_errors_name_the_argument():
    _, cn = L.l1_forward(np.ones(3), np.zeros(3), reduction="none")
    with pytest.raises(ValueError, match=r"^`dloss` must have shape \(3,\) \(reduction='none'\); got \(2,\)$"):
        L.l1_backward(np.ones(2), cn)
    _, cm = L.l1_forward(np.ones(3), np.zeros(3), reduction="mean")
    with pytest.raises(ValueError, match=r"^`dloss` must be a scalar \(reduction='mean'\); got shape \(2,\)$"):
        L.l1_backward(np.ones(2), cm)
    with pytest.raises(TypeError, match=r"^`dloss`"):
        L.l1_backward("1", cm)
    with pytest.raises(TypeError, match=r"^`cache` must be the RegressionCache returned by smooth_l1_forward; "
                                        r"got tuple$"):
        L.l1_backward(1.0, tuple(cm))
    with pytest.raises(ValueError, match=r"`reduction`"):
        L.l1_forward(np.ones(3), np.zeros(3), reduction="avg")


def test_layouts_reduce_to_the_same_bits():
    """A Fortran-ordered or strided view sums in the same (C) order as its contiguous copy."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(37, 29)).astype(np.float32)
    for view in (np.asfortranarray(a), np.asfortranarray(np.repeat(a, 2, axis=1))[:, ::2]):
        s, _ = L.l1_forward(view, np.zeros_like(view), reduction="sum")
        s0, _ = L.l1_forward(a, np.zeros_like(a), reduction="sum")
        assert s.tobytes() == s0.tobytes()
