"""Hardening of refdet/roi_heads.py: the fuzz walk's open findings (issue 13), one test per fix."""
import re

import numpy as np
import pytest

from refdet.roi_heads import class_specific_targets, fastrcnn_loss_backward, fastrcnn_loss_forward


def _loss_inputs(seed=0, n=6, classes=3):
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, classes))
    d = r.standard_normal((n, 4 * classes))
    lab = np.array([0, 1, 2, 1, 0, 2])[:n]
    t = r.standard_normal((n, 4))
    return z, d, lab, t


def _bits(a, b):
    return all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))


def test_class_specific_targets_caps_num_classes_before_allocating():
    t = np.ones((5, 4))
    lab = np.array([1, 0, 2, 1, 0])
    # was MemoryError (an (N, 4e9) array) and, for 2**63, NumPy's own text
    for nc in (10 ** 9, 2 ** 63):
        with pytest.raises(ValueError, match=r"`num_classes` asks for .* elements .*max_elements="):
            class_specific_targets(t, lab, nc)
    with pytest.raises(ValueError, match="`num_classes` asks for"):
        class_specific_targets(np.zeros((0, 4)), np.zeros(0, np.int64), 2 ** 63)
    # the cap is the caller's: 3 outputs of 5 x 12 = 180 elements
    assert class_specific_targets(t, lab, 3, max_elements=180)[0].shape == (5, 12)
    with pytest.raises(ValueError, match="`num_classes` asks for 180 elements"):
        class_specific_targets(t, lab, 3, max_elements=179)
    with pytest.raises(TypeError, match="`max_elements`"):
        class_specific_targets(t, lab, 3, max_elements=1.5)


def test_class_specific_targets_validates_inside_weights():
    r = np.random.default_rng(1)
    t = r.standard_normal((4, 4))
    lab = np.array([2, 0, -1, 1])
    bt, iw, ow = class_specific_targets(t, lab, 3, inside_weights=(1.0, 2.0, 0.0, 0.5))
    assert iw[0, 8:].tolist() == [1.0, 2.0, 0.0, 0.5] and ow[0, 8:].tolist() == [1.0, 1.0, 0.0, 1.0]
    same = class_specific_targets(t, lab, 3, inside_weights=np.array([1.0, 2.0, 0.0, 0.5]))
    assert _bits((bt, iw, ow), same)
    for bad, err, what in [(None, TypeError, "array of numbers"), ("1111", TypeError, "array of numbers"),
                           ((1.0, 1.0), ValueError, r"4 numbers .*got shape \(2,\)"),
                           (np.ones((4, 4)), ValueError, r"got shape \(4, 4\)"),
                           ((1.0, np.nan, 1.0, 1.0), ValueError, "NaN or inf"),
                           ((1.0, np.inf, 1.0, 1.0), ValueError, "NaN or inf"),
                           ((True, True, True, True), TypeError, "")]:
        with pytest.raises(err, match=f"`inside_weights`.*{what}"):
            class_specific_targets(t, lab, 3, inside_weights=bad)


@pytest.mark.parametrize("which", ["inside_weights", "outside_weights"])
def test_fastrcnn_loss_forward_checks_weight_shapes(which):
    z, d, lab, t = _loss_inputs()
    ok = fastrcnn_loss_forward(z, d, lab, t, **{which: np.full((6, 4), 0.5)})[0]
    assert ok == fastrcnn_loss_forward(z, d, lab, t, **{which: np.full((6, 4), 0.5).tolist()})[0]
    # fewer rows was IndexError; one column or a flat vector broadcast silently
    for bad in (np.ones((4, 4)), np.ones((7, 4)), np.ones((6, 1)), np.ones(24), np.ones((6, 4, 1))):
        got = re.escape(str(bad.shape))
        with pytest.raises(ValueError, match=rf"`{which}` must have shape \(6, 4\) .*got shape {got}"):
            fastrcnn_loss_forward(z, d, lab, t, **{which: bad})
    with pytest.raises(ValueError, match=f"`{which}` must not contain NaN"):
        fastrcnn_loss_forward(z, d, lab, t, **{which: np.full((6, 4), np.nan)})


def test_fastrcnn_loss_forward_accepts_array_likes():
    z, d, lab, t = _loss_inputs()
    loss, cache = fastrcnn_loss_forward(z, d, lab, t)
    # nested lists (was refused for regression_targets and labels), tuples, per-image lists: one answer
    for lab_v, t_v in [(lab.tolist(), t.tolist()), (lab, t.tolist()), (tuple(lab.tolist()), tuple(map(tuple, t))),
                       ([lab[:2], lab[2:]], [t[:2], t[2:]]), ([lab[:2], lab[2:2], lab[2:]], [t[:2], t[2:2], t[2:]]),
                       ([lab[:2], lab[2:]], [t[:2].tolist(), t[2:].tolist()])]:
        other, c2 = fastrcnn_loss_forward(z, d, lab_v, t_v)
        assert other == loss
        assert _bits(fastrcnn_loss_backward((1.0, 0.5), cache), fastrcnn_loss_backward((1.0, 0.5), c2))
    # float32 stays float32 whichever form the targets take
    l32 = fastrcnn_loss_forward(z.astype(np.float32), d.astype(np.float32), lab, t)[0]
    assert l32 == fastrcnn_loss_forward(z.astype(np.float32), d.astype(np.float32), lab, t.tolist())[0]
    # no RoIs as empty lists
    e = fastrcnn_loss_forward(np.zeros((0, 3)), np.zeros((0, 12)), [], [], convention="detectron2")[0]
    assert e == (0.0, 0.0)
    # wrong forms name the argument (and the image)
    with pytest.raises(ValueError, match=r"`regression_targets\[1\]` must have last dimension 4"):
        fastrcnn_loss_forward(z, d, [lab[:2], lab[2:]], [t[:2], t[2:, :3]])
    with pytest.raises(ValueError, match=r"`regression_targets` must have shape \(6, 4\)"):
        fastrcnn_loss_forward(z, d, lab, t[:, :3].tolist())
    with pytest.raises(TypeError, match=r"`labels\[0\]` must be an integer array"):
        fastrcnn_loss_forward(z, d, [lab[:2].astype(float), lab[2:]], t)
    with pytest.raises(TypeError, match="`regression_targets` must be an array of numbers"):
        fastrcnn_loss_forward(z, d, lab, [t[0].tolist(), [1.0, 2.0]] + t[2:].tolist())   # ragged rows


def test_fastrcnn_loss_backward_dloss_forms():
    z, d, lab, t = _loss_inputs()
    loss, cache = fastrcnn_loss_forward(z, d, lab, t)
    ref = fastrcnn_loss_backward((1.0, 0.5), cache)
    # a pair as a FastRCNNLoss, a list or an array (was refused: "must be a pair") gives the same bits
    for form in (type(loss)(1.0, 0.5), [1.0, 0.5], np.array([1.0, 0.5]), np.array([1.0, 0.5], np.float32),
                 (np.float64(1.0), np.array(0.5))):
        assert _bits(fastrcnn_loss_backward(form, cache), ref)
    # one real is the gradient of classification + box: both parts weighted by it
    both = fastrcnn_loss_backward((0.75, 0.75), cache)
    for form in (0.75, np.float64(0.75), np.array(0.75), np.array([0.75])):
        assert _bits(fastrcnn_loss_backward(form, cache), both)
    for bad, err, what in [(None, TypeError, "`dloss` must be a real number"),
                           ("1", TypeError, "`dloss` must be a real number"),
                           ((1.0,), ValueError, "`dloss` must be a pair .*got 1 values"),
                           ((1.0, 2.0, 3.0), ValueError, "`dloss` must be a pair .*got 3 values"),
                           (np.ones(3), ValueError, r"`dloss` must be a pair .*shape \(3,\)"),
                           (np.ones((2, 1)), ValueError, r"`dloss` must be a pair .*shape \(2, 1\)"),
                           (np.array([True, False]), TypeError, "`dloss` must hold real numbers"),
                           ((np.nan, 1.0), ValueError, r"`dloss.classification` must be finite"),
                           ((1.0, "x"), TypeError, r"`dloss.box` must be a real number"),
                           (np.array([1.0, np.inf]), ValueError, r"`dloss.box` must be finite")]:
        with pytest.raises(err, match=what):
            fastrcnn_loss_backward(bad, cache)
