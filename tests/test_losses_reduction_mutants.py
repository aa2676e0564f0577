"""The reductions shared by every loss (refdet/losses/_reduction.py), pinned where the first full
mutation run (issue 19, ``python -m mutation run losses.reduction``) left survivors: the layout helper
returns a C-ordered input itself (no copy) and copies any other layout; a reduced loss's upstream
gradient given as a (1, 1) array is read as a scalar on the focal loss's broadcasting path too.
"""
import numpy as np
import pytest

from refdet import losses as L
from refdet.losses._reduction import _c_order


def test_c_order_returns_a_c_ordered_array_itself_and_copies_the_others():
    a = np.arange(6.0).reshape(2, 3)
    assert _c_order(a) is a                                       # already C-ordered: not copied
    z = np.asarray(2.5)
    assert _c_order(z) is z and _c_order(z).shape == ()           # 0-d arrays stay 0-d
    for view in (np.asfortranarray(a), a[:, ::2], a.T):
        c = _c_order(view)
        assert c.flags.c_contiguous and not np.shares_memory(c, a)
        np.testing.assert_array_equal(c, view)
    ro = np.asfortranarray(a)
    ro.flags.writeable = False
    assert _c_order(ro).flags.c_contiguous and not np.shares_memory(_c_order(ro), ro)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction, scale", [("mean", 0.25), ("sum", 1.0)])
def test_focal_backward_reads_a_2d_upstream_scalar_as_a_scalar(dtype, reduction, scale):
    """sigmoid_focal_loss_backward takes the reduced upstream gradient as a 0-d scalar that broadcasts
    (scalar_ok): a (1, 1) dloss must not add two axes to the gradient of 1-D logits."""
    x = np.array([0.3, -1.2, 2.0, 0.1], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    _, c = L.sigmoid_focal_loss_forward(x, t, reduction=reduction)
    _, cn = L.sigmoid_focal_loss_forward(x, t, reduction="none")
    g = L.sigmoid_focal_loss_backward(np.array([[2.0]]), c).dlogits
    assert g.shape == (4,) and g.dtype == dtype
    want = L.sigmoid_focal_loss_backward(np.full(4, dtype(2.0 * scale), dtype=dtype), cn).dlogits
    np.testing.assert_array_equal(g, want)
