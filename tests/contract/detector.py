import numpy as np

from tests.contract import Bad, Case


def _tree(rng):
    return {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=(5,)).astype(np.float32)}}


def _step(rng):
    p, g, v = _tree(rng), _tree(rng), _tree(rng)
    return (p, g, v), {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "max_grad_norm": 1.0}


CASES = [
    Case("sgd_momentum_update", _step),
    Case("sgd_momentum_update", lambda r: ((_tree(r), _tree(r)), {})),
]

BAD = [
    Bad("sgd_momentum_update", lambda r: ((_tree(r), _tree(r)), {"lr": -1.0}), ValueError, "`lr`"),
    Bad("sgd_momentum_update", lambda r: ((_tree(r), _tree(r)), {"momentum": 1.5}), ValueError, "`momentum`"),
]

EXEMPT = {
    "Detector": "a configuration class; its methods are covered by tests/test_detector.py",
    "DetectorConfig": "a NamedTuple of settings",
}
