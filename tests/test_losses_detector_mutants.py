"""The composed detector losses (refdet/losses/detector.py), pinned where mutation testing (issue 19,
``python -m mutation run losses.detector``) found them unpinned: every accepted form of ``targets`` and
the error naming what was refused, the batched/unbatched shapes, the dtype promotion, the upstream
gradient given as one scalar or one value per part, and each loss's own argument checks.
"""
import math
import re
import types

import numpy as np
import pytest

from refdet import losses as L


def _raises(exc, msg):
    return pytest.raises(exc, match="^" + re.escape(msg) + "$")


Z = np.zeros((1, 3, 2))
D = np.zeros((1, 3, 4))
LAB = np.array([[0, 2, -1]])
T = {"labels": LAB, "deltas": np.zeros((1, 3, 4))}
FIELDS = ("`targets` must have fields `labels` and `deltas` (a LossTargets, a refdet.targets result, a dict, "
          "a (labels, deltas) pair, or a list of these per image); got ")


# --- targets: every accepted form, and the errors ---------------------------------------------------

def _retina(targets, z=None, d=None, **kw):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 3, 2)) if z is None else z
    d = rng.normal(size=(2, 3, 4)) if d is None else d
    return L.retinanet_loss_forward(z, d, targets, **kw)


def test_every_targets_form_gives_the_same_loss():
    rng = np.random.default_rng(4)
    labels = np.array([[0, 2, 1], [2, -1, 0]])
    deltas = rng.normal(size=(2, 3, 4))
    want, _ = _retina(L.LossTargets(labels, deltas))
    assert float(want.box_regression) > 0 and float(want.classification) > 0
    forms = [
        {"labels": labels, "deltas": deltas},
        {"labels": labels, "regression_targets": deltas},
        {"labels": labels, "box_targets": deltas},
        (labels, deltas),
        types.SimpleNamespace(labels=labels, deltas=deltas),
        types.SimpleNamespace(labels=labels, regression_targets=deltas),
        types.SimpleNamespace(labels=labels, box_targets=deltas),
        [L.LossTargets(labels[i], deltas[i]) for i in range(2)],
        [{"labels": labels[i], "box_targets": deltas[i]} for i in range(2)],
        tuple({"labels": labels[i], "deltas": deltas[i]} for i in range(2)),        # a tuple of dicts
        tuple(L.LossTargets(labels[i], deltas[i]) for i in range(2)),                 # a tuple of objects
        [types.SimpleNamespace(labels=labels[i], regression_targets=deltas[i]) for i in range(2)],
    ]
    for f in forms:
        got, _ = _retina(f)
        np.testing.assert_array_equal(got.classification, want.classification)
        np.testing.assert_array_equal(got.box_regression, want.box_regression)


def test_a_dict_entry_is_looked_up_by_name_before_its_alternatives():
    rng = np.random.default_rng(5)
    labels = np.array([[0, 2, 1], [2, -1, 0]])
    good, other = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    want, _ = _retina({"labels": labels, "deltas": good})
    for t in ({"labels": labels, "deltas": good, "box_targets": other},
              types.SimpleNamespace(labels=labels, deltas=good, regression_targets=other)):
        got, _ = _retina(t)
        np.testing.assert_array_equal(got.box_regression, want.box_regression)


def test_targets_errors_name_what_is_missing():
    with _raises(ValueError, "`targets` must have a 'labels' entry; got keys ['box_targets', 'deltas']"):
        L.retinanet_loss_forward(Z, D, {"deltas": D, "box_targets": D})
    with _raises(ValueError, "`targets` must have a 'deltas' entry; got keys ['labels']"):
        L.retinanet_loss_forward(Z, D, {"labels": LAB})
    with _raises(TypeError, FIELDS + "int"):
        L.retinanet_loss_forward(Z, D, 5)
    with _raises(TypeError, FIELDS + "tuple"):
        L.retinanet_loss_forward(Z, D, (LAB,))                   # a 1-tuple: no deltas
    with _raises(TypeError, FIELDS + "tuple"):
        L.retinanet_loss_forward(Z, D, ())
    with _raises(TypeError, FIELDS + "SimpleNamespace"):
        L.retinanet_loss_forward(Z, D, types.SimpleNamespace(labels=LAB))
    with _raises(ValueError, "per-image `targets` must have the same number of anchors; got label shapes "
                             "[(3,), (2,)]"):
        L.retinanet_loss_forward(np.zeros((2, 3, 2)), np.zeros((2, 3, 4)),
                                 [{"labels": LAB[0], "deltas": D[0]}, {"labels": LAB[0, :2], "deltas": D[0, :2]}])


def test_retinanet_targets_object_is_read_through_its_masks():
    """An object with foreground / valid / cls_targets (refdet.targets.RetinaNetTargets) has its labels read
    through the masks: foreground rows keep their class, other valid rows are background (K), the rest -1."""
    K = 3
    z = np.random.default_rng(6).normal(size=(4, K))
    d = np.random.default_rng(7).normal(size=(4, 4))
    td = np.zeros((4, 4))
    obj = types.SimpleNamespace(labels=np.array([2, 0, 1, 1]), foreground=np.array([True, False, False, True]),
                                valid=np.array([True, True, False, True]), cls_targets=np.zeros((4, K)),
                                deltas=td)
    got, _ = L.retinanet_loss_forward(z, d, obj)
    want, _ = L.retinanet_loss_forward(z, d, L.LossTargets(np.array([2, K, -1, 1]), td))
    np.testing.assert_array_equal(got.classification, want.classification)
    np.testing.assert_array_equal(got.box_regression, want.box_regression)
    # without all three attributes the labels are read as they are
    for drop in ("foreground", "valid", "cls_targets"):
        o = types.SimpleNamespace(**{k: v for k, v in vars(obj).items() if k != drop})
        got, _ = L.retinanet_loss_forward(z, d, o)
        plain, _ = L.retinanet_loss_forward(z, d, L.LossTargets(obj.labels, td))
        np.testing.assert_array_equal(got.classification, plain.classification)
    # a dict with those keys is a dict: read as it is
    got, _ = L.retinanet_loss_forward(z, d, dict(vars(obj)))
    np.testing.assert_array_equal(got.classification, plain.classification)


# --- head inputs ------------------------------------------------------------------------------------

def test_head_input_errors_name_the_argument_and_the_shapes():
    with _raises(ValueError, "`cls_logits` must be 2-D or 3-D (batched); got shape (3,)"):
        L.retinanet_loss_forward(np.zeros(3), D, T)
    with _raises(ValueError, "`box_deltas` must have shape (1, 3, 4) to match `cls_logits` (1, 3, 2); got (3, 5)"):
        L.retinanet_loss_forward(Z, np.zeros((3, 5)), T)
    with _raises(ValueError, "`box_deltas` must have shape (1, 3, 4) to match `cls_logits` (3, 2); got (1, 2, 4)"):
        L.retinanet_loss_forward(Z[0], np.zeros((1, 2, 4)), T)
    with _raises(ValueError, "`loc_deltas` must have shape (1, 3, 4) to match `conf_logits` (1, 3, 2); "
                             "got (1, 3, 4, 1)"):
        L.multibox_loss_forward(Z, np.zeros((1, 3, 4, 1)), T)
    with _raises(TypeError, "`targets.labels` must be an integer array; got dtype float64"):
        L.retinanet_loss_forward(Z, D, {"labels": LAB.astype(float), "deltas": D})
    with _raises(ValueError, "`targets.labels` must have shape (1, 3) (one per anchor); got (1, 2)"):
        L.retinanet_loss_forward(Z, D, {"labels": LAB[:, :2], "deltas": D})
    with _raises(ValueError, "`targets.deltas` must have shape (1, 3, 4) (like `box_deltas`); got (1, 2, 4)"):
        L.retinanet_loss_forward(Z, D, {"labels": LAB, "deltas": D[:, :2]})
    with _raises(ValueError, "`targets.deltas` must have shape (1, 3, 4) (like `deltas`); got (1, 3, 5)"):
        L.rpn_loss_forward(np.zeros((1, 3)), D, {"labels": np.array([[0, 1, -1]]), "deltas": np.zeros((1, 3, 5))})


def test_unbatched_inputs_give_unbatched_gradients_and_the_batched_values():
    rng = np.random.default_rng(8)
    z, d = rng.normal(size=(3, 2)), rng.normal(size=(3, 4))
    lab, td = np.array([0, 2, 1]), rng.normal(size=(3, 4))
    a, ca = L.retinanet_loss_forward(z, d, L.LossTargets(lab, td))
    b, cb = L.retinanet_loss_forward(z[None], d[None], L.LossTargets(lab[None], td[None]))
    np.testing.assert_array_equal(a.classification, b.classification)
    ga, gb = L.retinanet_loss_backward(1.0, ca), L.retinanet_loss_backward(1.0, cb)
    assert ga.dcls_logits.shape == (3, 2) and ga.dbox_deltas.shape == (3, 4)
    assert gb.dcls_logits.shape == (1, 3, 2) and gb.dbox_deltas.shape == (1, 3, 4)
    np.testing.assert_array_equal(ga.dcls_logits, gb.dcls_logits[0])
    # unbatched logits with batched deltas and targets: the deltas' shape is kept for their gradient
    c, cc = L.retinanet_loss_forward(z, d[None], L.LossTargets(lab, td))
    gc = L.retinanet_loss_backward(1.0, cc)
    assert gc.dcls_logits.shape == (3, 2) and gc.dbox_deltas.shape == (1, 3, 4)
    np.testing.assert_array_equal(c.box_regression, a.box_regression)


@pytest.mark.parametrize("fwd, bwd, k", [(L.retinanet_loss_forward, L.retinanet_loss_backward, 2),
                                         (L.multibox_loss_forward, L.multibox_loss_backward, 3)])
def test_mixed_dtypes_promote_to_float64(fwd, bwd, k):
    rng = np.random.default_rng(9)
    z, d = rng.normal(size=(1, 4, k)), rng.normal(size=(1, 4, 4))
    t = L.LossTargets(np.array([[1, 0, 2, 1]]), rng.normal(size=(1, 4, 4)))   # a class in [0, K) for both
    want, cw = fwd(z, d, t)
    gw = bwd((0.5, 2.0), cw)
    for zz, dd in ((z.astype(np.float32), d), (z, d.astype(np.float32))):
        zz64, dd64 = zz.astype(np.float64), dd.astype(np.float64)
        got, c = fwd(zz, dd, t)
        ref, cr = fwd(zz64, dd64, t)
        assert all(v.dtype == np.float64 for v in got[:2])
        g = bwd((0.5, 2.0), c)
        assert g[0].dtype == g[1].dtype == np.float64
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(g[1], bwd((0.5, 2.0), cr)[1])
    assert gw[0].dtype == np.float64


# --- the upstream gradient of a composed loss -------------------------------------------------------

def test_dloss_scalar_or_one_value_per_part():
    rng = np.random.default_rng(10)
    z, d = rng.normal(size=(1, 4, 2)), rng.normal(size=(1, 4, 4))
    t = L.LossTargets(np.array([[0, 1, 2, 1]]), rng.normal(size=(1, 4, 4)))
    _, c = L.retinanet_loss_forward(z, d, t)
    one = L.retinanet_loss_backward(1.0, c)
    for up in ((3.0, 0.5), [3.0, 0.5], (np.float32(3.0), np.array([0.5])), (3.0, 0.5, 99.0),
               L.RetinaNetLoss(3.0, 0.5, None, None)):
        g = L.retinanet_loss_backward(up, c)
        np.testing.assert_allclose(g.dcls_logits, 3.0 * one.dcls_logits, rtol=1e-15)
        np.testing.assert_allclose(g.dbox_deltas, 0.5 * one.dbox_deltas, rtol=1e-15)
    for up in (2.0, np.array([[2.0]]), np.float32(2.0)):
        g = L.retinanet_loss_backward(up, c)
        np.testing.assert_allclose(g.dcls_logits, 2.0 * one.dcls_logits, rtol=1e-15)
        np.testing.assert_allclose(g.dbox_deltas, 2.0 * one.dbox_deltas, rtol=1e-15)
    with _raises(ValueError, "`dloss` must be a scalar or 2 values; got 1 values"):
        L.retinanet_loss_backward((1.0,), c)
    with _raises(TypeError, "`dloss[1]` must be a real number; got str 'a'"):
        L.retinanet_loss_backward((1.0, "a"), c)
    with _raises(TypeError, "`dloss[0]` must be a real number; got str 'a'"):
        L.multibox_loss_backward(["a", 1.0], L.multibox_loss_forward(z, d, L.LossTargets(np.array([[0, 1, 1, 0]]),
                                                                                         t.deltas))[1])
    with _raises(TypeError, "`dloss` must be a real number; got str 'a'"):
        L.rpn_loss_backward("a", L.rpn_loss_forward(z[..., 0], d, L.LossTargets(np.array([[0, 1, 1, 0]]),
                                                                                 t.deltas))[1])


@pytest.mark.parametrize("bwd, name", [(L.rpn_loss_backward, "RPNLossCache returned by rpn_loss_forward"),
                                       (L.retinanet_loss_backward,
                                        "RetinaNetLossCache returned by retinanet_loss_forward"),
                                       (L.multibox_loss_backward, "MultiBoxLossCache returned by multibox_loss_forward")])
def test_backward_refuses_another_cache(bwd, name):
    with _raises(TypeError, f"`cache` must be the {name}; got NoneType"):
        bwd(1.0, None)


# --- each loss's own checks --------------------------------------------------------------------------

def test_rpn_argument_errors():
    t = {"labels": np.array([[0, 1, -1]]), "deltas": D}
    x = np.zeros((1, 3))
    with _raises(ValueError, "`targets.labels` must be 1 (positive), 0 (negative) or -1 (ignored); got 2"):
        L.rpn_loss_forward(x, D, {"labels": np.array([[0, 2, -1]]), "deltas": D})
    with _raises(ValueError, "`targets.labels` must be 1 (positive), 0 (negative) or -1 (ignored); got -2"):
        L.rpn_loss_forward(x, D, {"labels": np.array([[0, 1, -2]]), "deltas": D})
    with _raises(ValueError, "`objectness` must have shape (B, N) or (N,); got (1, 3, 1)"):
        L.rpn_loss_forward(x[..., None], D, t)
    with _raises(ValueError, "`batch_size_per_image` must be >= 1; got 0"):
        L.rpn_loss_forward(x, D, t, batch_size_per_image=0)
    with _raises(ValueError, "`anchors_per_location` must be >= 1; got 0"):
        L.rpn_loss_forward(x, D, t, anchors_per_location=0)
    with _raises(TypeError, "`pos_mask` must be a bool mask; got dtype int64"):
        L.rpn_loss_forward(x, D, t, pos_mask=np.array([[0, 1, 0]]))
    with _raises(TypeError, "`neg_mask` must be a bool mask; got dtype int64"):
        L.rpn_loss_forward(x, D, t, neg_mask=np.array([[1, 0, 0]]))
    with _raises(ValueError, "`pos_mask` must have shape (1, 3); got (2,)"):
        L.rpn_loss_forward(x, D, t, pos_mask=np.array([True, False]))
    with _raises(ValueError, "`neg_mask` must have shape (1, 3); got (2,)"):
        L.rpn_loss_forward(x, D, t, neg_mask=np.array([True, False]))
    with _raises(ValueError, "`neg_mask` selects anchors whose label is not 0"):
        L.rpn_loss_forward(x, D, t, neg_mask=np.array([[True, True, False]]))


def test_rpn_masks_select_the_sampled_anchors():
    # labels [1, 0, 1, 0], logits (0, 1, 2, -1), no box error. pos_mask keeps anchor 0 only, neg_mask
    # anchor 3 only: the BCE mean over the two sampled anchors = (ln(1 + e^0) + ln(1 + e^-1)) / 2
    x = np.array([[0.0, 1.0, 2.0, -1.0]])
    t = {"labels": np.array([[1, 0, 1, 0]]), "deltas": np.zeros((1, 4, 4))}
    d = np.zeros((1, 4, 4))
    d[0, 2, 0] = 0.5                                              # anchor 2: positive but not sampled
    out, c = L.rpn_loss_forward(x, d, t, pos_mask=np.array([[True, False, False, False]]),
                                neg_mask=np.array([False, False, False, True]))       # flat: reshaped
    want = (np.log1p(np.exp(-0.0)) + np.log1p(np.exp(-1.0))) / 2
    np.testing.assert_allclose(out.objectness, want, rtol=1e-15)
    assert float(out.box_regression) == 0.0
    g = L.rpn_loss_backward(1.0, c)
    np.testing.assert_allclose(g.dobjectness, [[(0.5 - 1) / 2, 0.0, 0.0, (1 / (1 + np.e)) / 2]], rtol=1e-15)
    assert np.all(g.ddeltas == 0.0)
    # unmasked: every label 1 / 0 is sampled, anchor 2's box error counts (beta 1/9: 0.5 - 1/18, / 4)
    out, _ = L.rpn_loss_forward(x, d, t)
    np.testing.assert_allclose(out.box_regression, (0.5 - 1 / 18) / 4, rtol=1e-15)


def test_retinanet_argument_errors():
    with _raises(ValueError, "`targets.labels` must be a class in [0, 2), 2 (background) or -1/-2 (ignored); got 3"):
        L.retinanet_loss_forward(Z, D, {"labels": np.array([[0, 3, -1]]), "deltas": D})
    with _raises(ValueError, "`targets.labels` must be a class in [0, 2), 2 (background) or -1/-2 (ignored); "
                             "got -3"):
        L.retinanet_loss_forward(Z, D, {"labels": np.array([[0, -3, -1]]), "deltas": D})
    with _raises(ValueError, "`ema_momentum` must lie in [0.0, 1.0]; got 1.5"):
        L.retinanet_loss_forward(Z, D, T, ema_momentum=1.5)
    with _raises(ValueError, "`ema_initial` must be > 0; got 0.0"):
        L.retinanet_loss_forward(Z, D, T, ema_initial=0)          # checked even when the EMA is unused
    with _raises(ValueError, "`ema` must be > 0; got -1.0"):
        L.retinanet_loss_forward(Z, D, T, convention="detectron2", ema=-1.0)
    # the boundary labels are accepted: K (background) and -2 (between thresholds)
    L.retinanet_loss_forward(Z, D, {"labels": np.array([[2, -2, 1]]), "deltas": D})


def test_multibox_argument_errors():
    z = np.zeros((1, 3, 3))
    with _raises(ValueError, "`targets.labels` must lie in [0, 3) (0 = background) or be -1 (ignored); got 3"):
        L.multibox_loss_forward(z, D, {"labels": np.array([[0, 3, -1]]), "deltas": D})
    with _raises(ValueError, "`targets.labels` must lie in [0, 3) (0 = background) or be -1 (ignored); got -2"):
        L.multibox_loss_forward(z, D, {"labels": np.array([[0, -2, -1]]), "deltas": D})
    with _raises(ValueError, "`neg_pos_ratio` must be >= 0; got -1.0"):
        L.multibox_loss_forward(z, D, T, neg_pos_ratio=-1)
    L.multibox_loss_forward(z, D, {"labels": np.array([[2, -1, 0]]), "deltas": D})   # K - 1 and -1 accepted


# --- normalisers on two images with different counts -------------------------------------------------

def _rpn_two_images():
    # logits 0: BCE ln 2 per sampled anchor. image 0: labels [1, 0, -1, 0] (3 sampled, 1 positive,
    # dx error 0.05); image 1: labels [1, 1, -1, -1] (2 sampled, 2 positives, dx errors 0.05 and 0.3)
    x = np.zeros((2, 4))
    t = L.LossTargets(np.array([[1, 0, -1, 0], [1, 1, -1, -1]]), np.zeros((2, 4, 4)))
    d = np.zeros((2, 4, 4))
    d[0, 0, 0], d[1, 0, 0], d[1, 1, 0] = 0.05, 0.05, 0.3
    return x, d, t


@pytest.mark.parametrize("conv, obj, box, dd", [
    # torchvision: BCE mean over the 5 sampled anchors; smooth L1 (beta 1/9) sum / 5:
    # 0.05 < 1/9: 0.5 * 0.05^2 * 9 = 0.01125; 0.3 >= 1/9: 0.3 - 1/18; gradients 0.45 and 1, / 5
    ("torchvision", math.log(2), (2 * 0.01125 + 0.3 - 1 / 18) / 5, (0.45 / 5, 0.45 / 5, 1 / 5)),
    # py-faster-rcnn: per image / its own sampled count (3 and 2), summed
    ("caffe", math.log(2), 0.01125 / 3 + (0.01125 + 0.3 - 1 / 18) / 2, (0.45 / 3, 0.45 / 2, 1 / 2)),
    # detectron2: both sums / (256 * 2), L1 (beta 0)
    ("detectron2", 5 * math.log(2) / 512, 0.4 / 512, (1 / 512, 1 / 512, 1 / 512)),
    # paper: cls sum / (256 * 2); lambda 10, smooth L1 beta 1, / N_reg = (4 / 2 anchors per location) * 2
    ("paper", 5 * math.log(2) / 512, 10 * (2 * 0.00125 + 0.045) / 4, (10 * 0.05 / 4, 10 * 0.05 / 4, 10 * 0.3 / 4)),
])
def test_rpn_normalisers_on_two_images(conv, obj, box, dd):
    x, d, t = _rpn_two_images()
    out, c = L.rpn_loss_forward(x, d, t, convention=conv, anchors_per_location=2)
    np.testing.assert_allclose(out.objectness, obj, rtol=1e-14)
    np.testing.assert_allclose(out.box_regression, box, rtol=1e-14)
    g = L.rpn_loss_backward((1.0, 1.0), c)
    np.testing.assert_allclose([g.ddeltas[0, 0, 0], g.ddeltas[1, 0, 0], g.ddeltas[1, 1, 0]], dd, rtol=1e-14)
    assert np.count_nonzero(g.ddeltas) == 3
    # objectness gradient: (sigmoid(0) - label) / the cls normaliser on sampled anchors, 0 elsewhere
    den = 5 if conv in ("torchvision", "caffe") else 512
    want = np.where(t.labels >= 0, 0.5 - (t.labels == 1), 0.0) / den
    np.testing.assert_allclose(g.dobjectness, want, rtol=1e-14)


def test_empty_batches():
    e4 = np.zeros((0, 4, 4))
    t = L.LossTargets(np.zeros((0, 4), np.int64), e4)
    for conv in ("torchvision", "detectron2", "paper"):           # means over nothing: 0 / 0
        out, c = L.rpn_loss_forward(np.zeros((0, 4)), e4, t, convention=conv)
        assert np.isnan(out.objectness) and np.isnan(out.box_regression)
        g = L.rpn_loss_backward(1.0, c)
        assert g.dobjectness.shape == (0, 4) and g.ddeltas.shape == (0, 4, 4)
    out, _ = L.rpn_loss_forward(np.zeros((0, 4)), e4, t, convention="caffe")
    assert np.isnan(out.objectness) and float(out.box_regression) == 0.0        # a sum over no image
    # torchvision RetinaNet: classification / B (NaN for B = 0), box / max(1, B) (0)
    out, c = L.retinanet_loss_forward(np.zeros((0, 4, 2)), e4, t)
    assert np.isnan(out.classification) and float(out.box_regression) == 0.0 and out.normalizer.shape == (0,)
    assert L.retinanet_loss_backward(1.0, c).dcls_logits.shape == (0, 4, 2)
    out, _ = L.retinanet_loss_forward(np.zeros((0, 4, 2)), e4, t, convention="detectron2")
    assert out.ema == pytest.approx(90.1) and float(out.classification) == 0.0   # max(0, 1) in the EMA
    # MultiBox with no prior: nothing mined, loss 0
    out, c = L.multibox_loss_forward(np.zeros((2, 0, 3)), np.zeros((2, 0, 4)),
                                     L.LossTargets(np.zeros((2, 0), np.int64), np.zeros((2, 0, 4))))
    assert float(out.classification) == 0.0 and float(out.box_regression) == 0.0
    assert L.multibox_loss_backward(1.0, c).dconf_logits.shape == (2, 0, 3)


@pytest.mark.parametrize("conv", ["torchvision", "detectron2", "caffe", "paper"])
def test_rpn_float32_stays_float32(conv):
    x, d, t = _rpn_two_images()
    out, c = L.rpn_loss_forward(x.astype(np.float32), d.astype(np.float32), t, convention=conv)
    assert out.objectness.dtype == out.box_regression.dtype == np.float32
    g = L.rpn_loss_backward(1.0, c)
    assert g.dobjectness.dtype == g.ddeltas.dtype == np.float32
    assert c.labels_f.dtype == c.cls_weight.dtype == c.reg_weight.dtype == np.float32


def test_rpn_overrides_of_beta_and_reg_weight():
    # one image, labels [1, 0], dx error 0.05 on the positive, 2 sampled anchors (torchvision normaliser)
    x = np.zeros((1, 2))
    d = np.zeros((1, 2, 4))
    d[0, 0, 0] = 0.05
    t = L.LossTargets(np.array([[1, 0]]), np.zeros((1, 2, 4)))
    out, _ = L.rpn_loss_forward(x, d, t, beta=0.5)                        # 0.5 * 0.05^2 / 0.5 / 2
    np.testing.assert_allclose(out.box_regression, 0.0025 / 2, rtol=1e-14)
    out, _ = L.rpn_loss_forward(x, d, t, reg_weight=2.0)                  # 2 * 0.5 * 0.05^2 * 9 / 2
    np.testing.assert_allclose(out.box_regression, 2 * 0.01125 / 2, rtol=1e-14)
    out, _ = L.rpn_loss_forward(x, d, t, cls_normalizer="batch_size", reg_normalizer="batch_size",
                                batch_size_per_image=4)
    np.testing.assert_allclose([out.objectness, out.box_regression], [2 * math.log(2) / 4, 0.01125 / 4], rtol=1e-14)


def test_rpn_empty_batch_gives_nan_without_warnings():
    import warnings
    e4 = np.zeros((0, 4, 4))
    t = L.LossTargets(np.zeros((0, 4), np.int64), e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for conv in ("torchvision", "detectron2", "caffe", "paper"):
            out, c = L.rpn_loss_forward(np.zeros((0, 4)), e4, t, convention=conv)
            L.rpn_loss_backward(1.0, c)
        # nothing sampled in a non-empty batch: 0 / 0 = NaN, silently (torchvision's mean of nothing)
        out, c = L.rpn_loss_forward(np.zeros((1, 2)), np.zeros((1, 2, 4)),
                                    L.LossTargets(np.array([[-1, -1]]), np.zeros((1, 2, 4))))
        assert np.isnan(out.objectness) and np.isnan(out.box_regression)
        g = L.rpn_loss_backward(1.0, c)
    assert g.dobjectness.shape == (1, 2)
