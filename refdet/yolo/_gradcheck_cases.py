"""Gradient-check cases of every refdet.yolo forward/backward pair, for ``refdet verify self`` and
``refdet.testing.gradcheck_all`` (registered when refdet.yolo is imported).

Small float64 inputs away from kinks. Targets the frameworks compute under ``no_grad`` are held
fixed: the assignments, YOLOv5's objectness targets, and CIoU's ``alpha`` -- for the last, the
checked function is the loss with ``alpha`` frozen at its value at the unperturbed inputs
(``loss + sum (alpha - alpha0) * v * weight``), whose true derivative there is the closed-form
backward's answer. ``tests/test_yolo_*.py`` hold the same pairs to torch autograd.
"""
from __future__ import annotations

import numpy as np

from refdet._gradcheck_registry import register_gradcheck as _reg
from refdet.yolo import decode as _D
from refdet.yolo import detector_losses as _DL
from refdet.yolo import losses as _L
from refdet.yolo._common import sigmoid as _sigmoid
from refdet.yolo.anchors import make_anchors as _make_anchors
from refdet.yolo.assign import task_aligned_assign as _tal

_SMALL = dict(max_elements=16, rtol=1e-5, atol=1e-7)
_ANCH = np.array([[10.0, 13.0], [16.0, 30.0]])
_LEVEL_ANCH = np.array([[[10.0, 13.0], [16.0, 30.0]], [[30.0, 61.0], [62.0, 45.0]]])


class _FrozenAlpha:
    """Forward of a detector loss with CIoU's alpha frozen at the first (unperturbed) call."""

    def __init__(self, forward, correction):
        self.forward, self.correction, self.alpha0 = forward, correction, None

    def __call__(self, *args):
        out, cache = self.forward(*args)
        alphas, terms = self.correction(cache)
        if self.alpha0 is None:
            self.alpha0 = [a.copy() for a in alphas]
        delta = sum(float(((a - a0) * t).sum()) for a, a0, t in zip(alphas, self.alpha0, terms))
        return np.asarray(float(out.loss) + delta), cache


def _v5_correction(cache):
    P = cache.parts
    alphas, terms = [], []
    for lv in P["levels"]:
        if lv["n"]:
            v = lv["ccache"].v
            alphas.append(v["alpha"])
            # loss = B * gain * mean(1 - ciou); ciou with alpha0 = ciou + (alpha - alpha0) v
            terms.append(-P["B"] * P["gains"][0] * v["vv"] / lv["n"])
    return alphas, terms


def _v8_correction(cache):
    P = cache.parts
    if "ccache" not in P:
        return [], []
    v = P["ccache"].v
    return [v["alpha"]], [-P["B"] * P["gains"][0] * v["vv"] * P["w"] / P["tss"]]


def _yolov5_case(rng):
    preds = [rng.standard_normal((1, 2, 4, 4, 7)) * 0.7, rng.standard_normal((1, 2, 2, 2, 7)) * 0.7]
    t = np.array([[0, 1, 0.3, 0.4, 0.3, 0.5], [0, 0, 0.62, 0.55, 0.5, 0.3]])
    _, cache = _DL.yolov5_loss_forward(preds, t, _LEVEL_ANCH, [8.0, 16.0], label_smoothing=0.1)
    build = cache.parts["build"]
    tobj = [lv["tobj"] for lv in cache.parts["levels"]]
    fwd = _FrozenAlpha(lambda p0, p1: _DL.yolov5_loss_forward([p0, p1], t, _LEVEL_ANCH, [8.0, 16.0], build=build,
                                                               obj_targets=tobj, label_smoothing=0.1), _v5_correction)
    return fwd, tuple(preds)


def _v8_case(rng, R):
    ap, st = _make_anchors([(4, 4), (2, 2)], [8.0, 16.0], dtype=np.float64)
    n = ap.shape[0]
    pd = rng.standard_normal((2, n, 4 * R)) * 2
    sc = rng.standard_normal((2, n, 2)) * 2
    gl = np.array([[1, 0], [0, 0]])
    gb = np.array([[[2.0, 3, 20, 25], [10, 12, 30, 28]], [[5.0, 6, 18, 14], [0, 0, 0, 0]]])
    pbox, _ = _D.dfl_decode_forward(pd, ap, reg_max=R, out_fmt="xyxy")
    a = _tal(_sigmoid(sc)[0], pbox * st, ap * st, gl, gb, gb.sum(-1) > 0, strides=[8.0, 16.0], topk=10, alpha=0.5)
    fwd = _FrozenAlpha(lambda x, y: _DL.v8_detection_loss_forward(x, y, ap, st, gl, gb, reg_max=R, image_size=(32, 32),
                                                                   assignment=a), _v8_correction)
    return fwd, (pd, sc)


def _yolov3_case(rng):
    preds = [rng.standard_normal((1, 2, 4, 4, 7)), rng.standard_normal((1, 2, 2, 2, 7))]
    gts, labs = [np.array([[3.0, 4, 17, 20], [10, 2, 40, 30]])], [np.array([0, 1])]
    _, cache = _DL.yolov3_loss_forward(preds, gts, labs, _LEVEL_ANCH, [8.0, 16.0], (32, 32))
    asg = cache.parts["assignments"]
    return (lambda p0, p1: _DL.yolov3_loss_forward([p0, p1], gts, labs, _LEVEL_ANCH, [8.0, 16.0], (32, 32),
                                                   assignments=asg)), tuple(preds)


class _Deferred:
    """The forward of a detector-loss case: its fixed targets are built by ``make`` with the inputs."""

    def __init__(self, case):
        self.case, self.fwd = case, None

    def make(self, rng):
        self.fwd, inputs = self.case(rng)
        return inputs, {}

    def __call__(self, *inputs):
        return self.fwd(*inputs)


def _register():
    _reg("yolov3_decode scale_x_y 1.1", _D.yolov3_decode_forward, _D.yolov3_decode_backward,
         lambda r: ((r.standard_normal((1, 2, 2, 3, 4)),), dict(anchors=_ANCH, stride=8, scale_x_y=1.1)), **_SMALL)
    _reg("yolov5_decode", _D.yolov5_decode_forward, _D.yolov5_decode_backward,
         lambda r: ((r.standard_normal((1, 2, 2, 3, 4)),), dict(anchors=_ANCH, stride=(8, 16))), **_SMALL)
    _reg("yolox_decode", _D.yolox_decode_forward, _D.yolox_decode_backward,
         lambda r: ((r.standard_normal((1, 2, 3, 4)),), dict(stride=16)), **_SMALL)
    _reg("dfl reg_max 6", _D.dfl_forward, _D.dfl_backward,
         lambda r: ((r.standard_normal((2, 3, 24)) * 2,), dict(reg_max=6)), **_SMALL)
    _reg("dist2bbox cxcywh", _D.dist2bbox_forward, _D.dist2bbox_backward,
         lambda r: ((r.uniform(0, 5, (3, 4)),), dict(anchor_points=np.arange(6.0).reshape(3, 2), out_fmt="cxcywh")),
         **_SMALL)
    _reg("dfl_decode reg_max 5", _D.dfl_decode_forward, _D.dfl_decode_backward,
         lambda r: ((r.standard_normal((1, 3, 20)),), dict(anchor_points=np.arange(6.0).reshape(3, 2),
                                                           stride_tensor=np.array([[8.0], [8.0], [16.0]]),
                                                           reg_max=5)), **_SMALL)
    _reg("quality_focal_loss", _L.quality_focal_loss_forward, _L.quality_focal_loss_backward,
         lambda r: ((r.standard_normal((4, 3)) * 2, r.uniform(0.1, 0.9, (4, 3)) * (r.random((4, 3)) < 0.5)),
                    dict(reduction="sum")), wrt=["logits"], **_SMALL)
    _reg("distribution_focal_loss", _L.distribution_focal_loss_forward, _L.distribution_focal_loss_backward,
         lambda r: ((r.standard_normal((4, 8)), r.uniform(0.2, 6.5, 4)), dict(reduction="mean")), wrt=["logits"],
         **_SMALL)
    _reg("varifocal_loss", _L.varifocal_loss_forward, _L.varifocal_loss_backward,
         lambda r: ((r.standard_normal((4, 3)) * 2, r.uniform(0.1, 0.9, (4, 3)) * (r.random((4, 3)) < 0.4)),
               dict(reduction="sum")), wrt=["logits"], **_SMALL)

    d = _Deferred(_yolov3_case)
    _reg("yolov3_loss (fixed assignment)", d, lambda g, c: tuple(_DL.yolov3_loss_backward(g, c).dpreds), d.make,
         **_SMALL)
    d = _Deferred(_yolov5_case)
    _reg("yolov5_loss (fixed targets, frozen CIoU alpha)", d, lambda g, c: tuple(_DL.yolov5_loss_backward(g, c).dpreds),
         d.make, **_SMALL)
    for R in (5, 1):
        d = _Deferred(lambda rng, _R=R: _v8_case(rng, _R))
        _reg(f"v8_detection_loss reg_max {R} (fixed TAL targets, frozen CIoU alpha)", d, _DL.v8_detection_loss_backward,
             d.make, **_SMALL)


_register()
