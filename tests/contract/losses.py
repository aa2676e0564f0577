"""Contract cases for refdet.losses (every forward, every backward, the documented errors)."""
import numpy as np

from refdet import losses
from tests.contract import Bad, Case


def _x(rng, shape=(5, 3)):
    return rng.standard_normal(shape) * 2


def _t(rng, shape=(5, 3)):
    return (rng.random(shape) < 0.4).astype(np.float64)


def _labels(rng, n=5, k=3):
    y = rng.integers(0, k, n)
    y[1] = -1
    return y


def _boxes(rng, n=6):
    xy = rng.uniform(-20, 80, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _rpn(rng):
    labels = rng.integers(-1, 2, (2, 6))
    return (rng.standard_normal((2, 6)), rng.standard_normal((2, 6, 4)),
            losses.LossTargets(labels, rng.standard_normal((2, 6, 4)))), {}


def _retina(rng):
    labels = rng.integers(-2, 3, (2, 5))
    return (rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4)),
            losses.LossTargets(labels, rng.standard_normal((2, 5, 4)))), {}


def _ssd(rng):
    labels = rng.integers(0, 3, (2, 7))
    return (rng.standard_normal((2, 7, 3)), rng.standard_normal((2, 7, 4)),
            {"labels": labels, "deltas": rng.standard_normal((2, 7, 4))}), {}


def _bwd(fwd, make_args, scalar=True):
    def make(rng):
        args, kw = make_args(rng)
        out, cache = fwd(*args, **kw)
        d = 1.0 if scalar else rng.standard_normal(np.shape(out))
        return (d, cache), {}
    return make


_FORWARDS = {
    "bce_with_logits": (lambda r: ((_x(r), _t(r)), {}), True),
    "softmax_cross_entropy": (lambda r: ((_x(r), _labels(r)), {}), True),
    "sigmoid_focal_loss": (lambda r: ((_x(r), _t(r)), {}), False),
    "softmax_focal_loss": (lambda r: ((_x(r), _labels(r)), {"alpha": 0.25}), False),
    "smooth_l1": (lambda r: ((_x(r), _x(r)), {"beta": 0.5}), True),
    "l1": (lambda r: ((_x(r), _x(r)), {}), True),
    "giou_loss": (lambda r: ((_boxes(r), _boxes(r)), {}), False),
    "diou_loss": (lambda r: ((_boxes(r), _boxes(r)), {"convention": "mmdet"}), False),
    "ciou_loss": (lambda r: ((_boxes(r), _boxes(r)), {}), False),
    "rpn_loss": (_rpn, True),
    "retinanet_loss": (_retina, True),
    "multibox_loss": (_ssd, True),
}

CASES = []
for _name, (_make, _scalar) in _FORWARDS.items():
    _box = {0: "pred_boxes", 1: "target_boxes"} if _name.endswith("iou_loss") else {}
    CASES.append(Case(f"{_name}_forward", _make, box_args=_box))
    CASES.append(Case(f"{_name}_backward", _bwd(getattr(losses, f"{_name}_forward"), _make, _scalar)))

BAD = [
    Bad("sigmoid_focal_loss_forward", lambda r: ((_x(r), _t(r)), {"gamma": -1.0}), ValueError, "`gamma`.*>= 0"),
    Bad("sigmoid_focal_loss_forward", lambda r: ((_x(r), _t(r)), {"alpha": 1.5}), ValueError,
        r"`alpha`.*\[0, 1\] or be -1"),
    Bad("sigmoid_focal_loss_forward", lambda r: ((_x(r), _t(r)), {"alpha": -0.5}), ValueError, "`alpha`"),
    Bad("sigmoid_focal_loss_forward", lambda r: ((_x(r), _t(r, (5, 4))), {}), ValueError,
        "`logits` and `targets` must have the same shape"),
    Bad("sigmoid_focal_loss_forward", lambda r: ((np.array([0.0, np.nan]), np.zeros(2)), {}), ValueError,
        "`logits`.*NaN"),
    Bad("bce_with_logits_forward", lambda r: ((_x(r), _t(r)), {"reduction": "avg"}), ValueError, "`reduction`.*'avg'"),
    Bad("bce_with_logits_forward", lambda r: ((_x(r), _t(r, (3, 5))), {}), ValueError, "same shape"),
    Bad("softmax_cross_entropy_forward", lambda r: ((_x(r), np.array([0, 1, 3, 0, 0])), {}), ValueError,
        r"`labels` must lie in \[0, 3\).*got 3 at index 2"),
    Bad("softmax_cross_entropy_forward", lambda r: ((_x(r), np.array([0.0, 1, 2, 0, 0])), {}), TypeError,
        "`labels` must be an integer array"),
    Bad("softmax_cross_entropy_forward", lambda r: ((_x(r), np.array([0, 1])), {}), ValueError, "same length"),
    Bad("softmax_focal_loss_forward", lambda r: ((_x(r), _labels(r)), {"gamma": -0.1}), ValueError, "`gamma`"),
    Bad("smooth_l1_forward", lambda r: ((_x(r), _x(r)), {"beta": -1.0}), ValueError, "`beta`"),
    Bad("smooth_l1_forward", lambda r: ((_x(r), _x(r, (5, 4))), {}), ValueError, "`pred` and `target`"),
    Bad("giou_loss_forward", lambda r: ((_boxes(r, 3), _boxes(r, 4)), {}), ValueError, "same shape"),
    Bad("ciou_loss_forward", lambda r: ((_boxes(r), _boxes(r)), {"convention": "onnx"}), ValueError,
        "`convention`.*'onnx'"),
    Bad("giou_loss_forward", lambda r: ((_boxes(r), _boxes(r)), {"eps": -1.0}), ValueError, "`eps`"),
    Bad("sigmoid_focal_loss_backward", lambda r: ((1.0, None), {}), TypeError, "`cache` must be the FocalCache"),
    Bad("sigmoid_focal_loss_backward",
        lambda r: ((np.ones(3), losses.sigmoid_focal_loss_forward(_x(r), _t(r))[1]), {}), ValueError,
        r"`dloss` must have shape \(5, 3\)"),
    Bad("bce_with_logits_backward",
        lambda r: ((np.ones(3), losses.bce_with_logits_forward(_x(r), _t(r))[1]), {}), ValueError,
        "`dloss` must be a scalar"),
    Bad("rpn_loss_forward", lambda r: ((np.zeros((2, 6)), np.zeros((2, 6, 4)),
                                        losses.LossTargets(np.full((2, 6), 2), np.zeros((2, 6, 4)))), {}),
        ValueError, "`targets.labels` must be 1"),
    Bad("rpn_loss_forward", lambda r: ((np.zeros((2, 6)), np.zeros((2, 5, 4)),
                                        losses.LossTargets(np.zeros((2, 6), int), np.zeros((2, 6, 4)))), {}),
        ValueError, "`deltas` must have shape"),
    Bad("retinanet_loss_forward", lambda r: ((np.zeros((2, 5, 3)), np.zeros((2, 5, 4)),
                                              losses.LossTargets(np.full((2, 5), 4), np.zeros((2, 5, 4)))), {}),
        ValueError, r"`targets.labels` must be a class in \[0, 3\)"),
    Bad("retinanet_loss_forward", lambda r: (_retina(r)[0], {"normalizer": "median"}), ValueError,
        "`normalizer`.*'median'"),
    Bad("retinanet_loss_forward", lambda r: (_retina(r)[0], {"gamma": -2.0}), ValueError, "`gamma`"),
    Bad("multibox_loss_forward", lambda r: ((np.zeros((2, 7, 3)), np.zeros((2, 7, 4)),
                                             losses.LossTargets(np.full((2, 7), 3), np.zeros((2, 7, 4)))), {}),
        ValueError, r"`targets.labels` must lie in \[0, 3\)"),
    Bad("multibox_loss_forward", lambda r: (_ssd(r)[0], {"mining_cap": "half"}), ValueError, "`mining_cap`"),
    Bad("multibox_loss_forward", lambda r: ((np.zeros((2, 7, 3)), np.zeros((2, 7, 4)), "targets"), {}),
        TypeError, "`targets`"),
]

EXEMPT = {
    "REDUCTIONS": "a constant tuple of reduction names",
    "LossTargets": "NamedTuple type of the composed losses' targets",
    "RPNLoss": "NamedTuple type of rpn_loss_forward's losses",
    "RetinaNetLoss": "NamedTuple type of retinanet_loss_forward's losses",
    "MultiBoxLoss": "NamedTuple type of multibox_loss_forward's losses",
    "LogitGrads": "NamedTuple type of the logit losses' gradients",
    "RegressionGrads": "NamedTuple type of smooth_l1_backward's / l1_backward's result",
    "BoxLossGrads": "NamedTuple type of the IoU losses' gradients",
    "RPNLossGrads": "NamedTuple type of rpn_loss_backward's result",
    "RetinaNetLossGrads": "NamedTuple type of retinanet_loss_backward's result",
    "MultiBoxLossGrads": "NamedTuple type of multibox_loss_backward's result",
}
