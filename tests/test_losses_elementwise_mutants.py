"""The element-wise losses (refdet/losses/elementwise.py), pinned where mutation testing (issue 19,
``python -m mutation run losses.elementwise``) found them unpinned: every argument check and its
message, BCE's ``weight`` (value, broadcasting, gradient), logits with no class column, the
``alpha=None`` spelling, the softmax focal loss's ``background`` class.
"""
import math
import re

import numpy as np
import pytest

from refdet import losses as L


def _raises(exc, msg):
    return pytest.raises(exc, match="^" + re.escape(msg) + "$")


X = np.zeros((2, 3))


def test_argument_errors_name_the_argument():
    with _raises(ValueError, "`weight` must broadcast to the logits' shape (2, 3); got (2,)"):
        L.bce_with_logits_forward(X, X, weight=np.ones(2))
    with _raises(ValueError, "`weight` must broadcast to the logits' shape (3,); got (2, 3)"):
        L.bce_with_logits_forward(X[0], X[0], weight=np.ones((2, 3)))
    with _raises(ValueError, "`weight` must not contain NaN or inf; got nan at index (0,)"):
        L.bce_with_logits_forward(X, X, weight=np.array([np.nan, 1, 1]))
    with _raises(ValueError, "`logits` and `targets` must have the same shape; got (2, 3) and (3, 2)"):
        L.bce_with_logits_forward(X, np.zeros((3, 2)))
    with _raises(ValueError, "`targets` must not contain NaN or inf; got inf at index (1, 2)"):
        L.bce_with_logits_forward(X, np.array([[0, 0, 0], [0, 0, np.inf]]))
    with _raises(ValueError, "`logits` must be 2-D with shape (N, K); got shape (3,)"):
        L.softmax_cross_entropy_forward(np.zeros(3), np.array([0, 1, 1]))
    with _raises(ValueError, "`logits` and `labels` must have the same length N; got 2 and 3"):
        L.softmax_cross_entropy_forward(X, np.array([0, 1, 1]))
    with _raises(ValueError, "`labels` must lie in [0, 3) or equal ignore_index=-1; got 3 at index 1 "
                             "(K = 3 columns of `logits`, `ignore_index`)"):
        L.softmax_cross_entropy_forward(X, np.array([0, 3]))
    with _raises(ValueError, "`labels` must lie in [0, 3) or equal ignore_index=7; got -1 at index 0 "
                             "(K = 3 columns of `logits`, `ignore_index`)"):
        L.softmax_focal_loss_forward(X, np.array([-1, 7]), ignore_index=7)
    with _raises(TypeError, "`ignore_index` must be an integer; got float 1.5"):
        L.softmax_cross_entropy_forward(X, np.array([0, 1]), ignore_index=1.5)
    with _raises(TypeError, "`labels` must be an integer array; got dtype float64"):
        L.softmax_cross_entropy_forward(X, np.array([0.0, 1.0]))
    with _raises(TypeError, "`background` must be an integer; got float 0.5"):
        L.softmax_focal_loss_forward(X, np.array([0, 1]), background=0.5)
    with _raises(ValueError, "`gamma` must be >= 0; got -1.0"):
        L.softmax_focal_loss_forward(X, np.array([0, 1]), gamma=-1)
    with _raises(ValueError, "`alpha` must lie in [0, 1] or be -1 (no weighting); got 2.0"):
        L.softmax_focal_loss_forward(X, np.array([0, 1]), alpha=2)
    with _raises(ValueError, "`beta` must be >= 0; got -1.0"):
        L.smooth_l1_forward(X, X, beta=-1)
    with _raises(ValueError, "`pred` and `target` must have the same shape; got (2, 3) and (3,)"):
        L.smooth_l1_forward(X, np.zeros(3))
    with _raises(ValueError, "`target` must not contain NaN or inf; got nan at index (0, 0)"):
        L.l1_forward(X, np.full((2, 3), np.nan))
    with _raises(ValueError, "`pred` must not contain NaN or inf; got inf at index (0,)"):
        L.l1_forward(np.array([np.inf]), np.zeros(1))
    with _raises(ValueError, "`logits` must not contain NaN or inf; got nan at index (0, 1)"):
        L.softmax_focal_loss_forward(np.array([[0.0, np.nan]]), np.array([0]))


@pytest.mark.parametrize("bwd, name", [
    (L.bce_with_logits_backward, "BCECache returned by bce_with_logits_forward"),
    (L.softmax_cross_entropy_backward, "CECache returned by softmax_cross_entropy_forward"),
    (L.sigmoid_focal_loss_backward, "FocalCache returned by sigmoid_focal_loss_forward"),
    (L.softmax_focal_loss_backward, "SoftmaxFocalCache returned by softmax_focal_loss_forward"),
    (L.smooth_l1_backward, "RegressionCache returned by smooth_l1_forward"),
    (L.l1_backward, "RegressionCache returned by smooth_l1_forward"),
])
def test_backward_refuses_another_cache(bwd, name):
    with _raises(TypeError, f"`cache` must be the {name}; got NoneType"):
        bwd(1.0, None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_weight_multiplies_each_element_and_its_gradient(dtype):
    # x = (0, 2), t = (1, 0): BCE ln 2 and 2 + log1p(e^-2); weight (3, 0.5) broadcast over 2 rows
    x = np.array([[0.0, 2.0], [0.0, 2.0]], dtype)
    t = np.array([[1.0, 0.0], [1.0, 0.0]], dtype)
    w = np.array([3.0, 0.5])
    loss, c = L.bce_with_logits_forward(x, t, weight=w, reduction="none")
    b2 = 2 + math.log1p(math.exp(-2))
    assert loss.dtype == dtype and c.weight.dtype == dtype and c.weight.flags.c_contiguous
    np.testing.assert_allclose(loss, [[3 * math.log(2), 0.5 * b2]] * 2, rtol=1e-6 if dtype == np.float32 else 1e-15)
    g = L.bce_with_logits_backward(np.ones((2, 2)), c).dlogits
    s2 = 1 / (1 + math.exp(-2))
    np.testing.assert_allclose(g, [[3 * (0.5 - 1), 0.5 * s2]] * 2, rtol=1e-6 if dtype == np.float32 else 1e-15)
    m, cm = L.bce_with_logits_forward(x, t, weight=w[None, :], reduction="mean")
    np.testing.assert_allclose(m, (3 * math.log(2) + 0.5 * b2) / 2, rtol=1e-6 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(L.bce_with_logits_backward(4.0, cm).dlogits, g, rtol=1e-6)
    # a Fortran-ordered weight gives the same bits
    wf = np.asfortranarray(np.array([[3.0, 0.5], [3.0, 0.5]]))
    lf, _ = L.bce_with_logits_forward(x, t, weight=wf, reduction="sum")
    ls, _ = L.bce_with_logits_forward(x, t, weight=np.ascontiguousarray(wf), reduction="sum")
    assert lf.tobytes() == ls.tobytes()


def test_logits_without_a_class_column():
    """K = 0: every label must be ignore_index; the loss is 0 per row ("none"), NaN for "mean"."""
    z = np.zeros((2, 0))
    y = np.array([-1, -1])
    for fwd, bwd in ((L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward),
                     (L.softmax_focal_loss_forward, L.softmax_focal_loss_backward)):
        with np.errstate(divide="ignore"):
            none, c = fwd(z, y, reduction="none")
            mean, _ = fwd(z, y, reduction="mean")
        assert none.shape == (2,) and np.all(none == 0.0) and np.isnan(mean)
        g = bwd(np.ones(2), c).dlogits
        assert g.shape == (2, 0)


def test_alpha_none_is_no_weighting():
    x = np.array([[0.3, -1.2], [2.0, 0.1]])
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    a, ca = L.sigmoid_focal_loss_forward(x, t, alpha=None)
    b, cb = L.sigmoid_focal_loss_forward(x, t, alpha=-1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(L.sigmoid_focal_loss_backward(np.ones((2, 2)), ca).dlogits,
                                  L.sigmoid_focal_loss_backward(np.ones((2, 2)), cb).dlogits)
    y = np.array([1, 0])
    a, _ = L.softmax_focal_loss_forward(x, y, alpha=None)
    b, _ = L.softmax_focal_loss_forward(x, y, alpha=-1)
    c, _ = L.softmax_focal_loss_forward(x, y, alpha=0.5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a * 0.5, c)


def test_softmax_focal_background_class_takes_one_minus_alpha():
    # rows with labels 0, 1, 2 and uniform logits over 3 classes: p_y = 1/3, (1 - p_y)^2 = 4/9,
    # -log p_y = ln 3. alpha 0.25: the background label gets 0.75, the others 0.25.
    z = np.zeros((3, 3))
    y = np.array([0, 1, 2])
    base = 4 / 9 * math.log(3)
    for bg, w in ((0, [0.75, 0.25, 0.25]), (2, [0.25, 0.25, 0.75]), (5, [0.25, 0.25, 0.25])):
        loss, c = L.softmax_focal_loss_forward(z, y, alpha=0.25, background=bg)
        np.testing.assert_allclose(loss, np.array(w) * base, rtol=1e-15)
        assert c.alpha_t.dtype == np.float64
    l32, c32 = L.softmax_focal_loss_forward(z.astype(np.float32), y, alpha=0.25)
    assert l32.dtype == np.float32 and c32.alpha_t.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smooth_l1_at_beta_takes_the_linear_piece(dtype):
    """|d| == beta is not < beta: PyTorch takes |d| - beta / 2 there. The two pieces agree in exact
    arithmetic, not in floating point for beta = 0.1: 0.5 * b * b / b != b - 0.5 * b."""
    b = dtype(0.1)
    d = np.array([b, -b, b / dtype(2)], dtype)
    loss, c = L.smooth_l1_forward(d, np.zeros(3, dtype), beta=0.1, reduction="none")
    linear = b - dtype(0.5) * b
    assert dtype(0.5) * b * b / b != linear                          # the case tells the pieces apart
    assert loss.dtype == dtype and loss[0] == linear and loss[1] == linear
    assert loss[2] == dtype(0.5) * d[2] * d[2] / b
    np.testing.assert_array_equal(L.smooth_l1_backward(np.ones(3, dtype), c).dpred, np.array([1, -1, 0.5], dtype))
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    ref = F.smooth_l1_loss(torch.from_numpy(d), torch.zeros(3, dtype=torch.from_numpy(d).dtype), beta=0.1,
                           reduction="none").numpy()
    np.testing.assert_array_equal(loss, ref)


def test_log_softmax_is_shifted_by_the_row_maximum():
    # logits 1000 apart: exp(1000) overflows unless the row maximum is subtracted first
    z = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    loss, c = L.softmax_cross_entropy_forward(z, np.array([1, 1]), reduction="none")
    assert loss.tolist() == [1000.0, 0.0]
    np.testing.assert_array_equal(L.softmax_cross_entropy_backward(np.ones(2), c).dlogits, [[1.0, -1.0], [0.0, 0.0]])
    fl, _ = L.softmax_focal_loss_forward(z, np.array([1, 0]), gamma=0.0)
    assert fl.tolist() == [1000.0, 1000.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_class_column_keeps_the_dtype(dtype):
    z = np.zeros((2, 0), dtype)
    y = np.array([-1, -1])
    with np.errstate(divide="ignore"):
        for fwd in (L.softmax_cross_entropy_forward, L.softmax_focal_loss_forward):
            for alpha in ((None, 0.25) if fwd is L.softmax_focal_loss_forward else (None,)):
                kw = {} if alpha is None and fwd is L.softmax_cross_entropy_forward else {"alpha": alpha}
                loss, c = fwd(z, y, reduction="none", **kw)
                assert loss.dtype == dtype and loss.shape == (2,)


def test_softmax_focal_defaults_and_alpha_zero():
    z = np.array([[0.3, -1.2, 0.5], [2.0, 0.1, -0.4]])
    y = np.array([1, 0])
    a, _ = L.softmax_focal_loss_forward(z, y)
    b, _ = L.softmax_focal_loss_forward(z, y, alpha=None, gamma=2.0, reduction="none", ignore_index=-1, background=0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2,)
    # alpha = 0 weights the foreground by 0 and the background by 1 (not "no weighting")
    a0, _ = L.softmax_focal_loss_forward(z, y, alpha=0.0)
    assert a0[0] == 0.0 and a0[1] == b[1]
    a32, _ = L.softmax_focal_loss_forward(z.astype(np.float32), y)                   # alpha None: ones, float32
    assert a32.dtype == np.float32


def test_softmax_focal_gradient_where_one_minus_p_rounds_to_zero():
    """z = (40, 0), label 0: p_y rounds to 1, q = 1 - p_y = 0 and log p_y = 0. For 0 < gamma < 1,
    q^(gamma - 1) = inf there is replaced by its limit's product 0: a finite gradient (0), and no
    floating-point warning escapes; gamma >= 1 gives 0 too."""
    import warnings
    z = np.array([[40.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0])
    for gam in (0.5, 1.0, 2.5):
        _, c = L.softmax_focal_loss_forward(z, y, gamma=gam)
        assert c.log_py[0] == 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g = L.softmax_focal_loss_backward(np.ones(2), c).dlogits
        assert np.all(g[0] == 0.0) and np.all(np.isfinite(g)) and np.all(g[1] != 0.0)


@pytest.mark.parametrize("fwd, bwd", [(L.smooth_l1_forward, L.smooth_l1_backward), (L.l1_forward, L.l1_backward)])
def test_regression_losses_promote_a_mixed_pair(fwd, bwd):
    p32 = np.array([0.1, -0.7, 2.5, 0.05], np.float32)
    t64 = np.array([0.0, 0.3, 1.0, 0.1])
    for a, b in ((p32, t64), (t64, p32)):
        loss, c = fwd(a, b, reduction="none")
        ref, cr = fwd(a.astype(np.float64), b.astype(np.float64), reduction="none")
        assert loss.dtype == np.float64
        np.testing.assert_array_equal(loss, ref)
        g = bwd(np.ones(4), c)
        assert g.dpred.dtype == g.dtarget.dtype == np.float64
        np.testing.assert_array_equal(g.dpred, bwd(np.ones(4), cr).dpred)
