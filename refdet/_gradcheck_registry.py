"""The registry of gradient-check cases that :func:`refdet.testing.gradcheck_all` runs together.

A foundation module (it imports nothing of refdet): the op packages register their cases at import
(``refdet.roi``, ``refdet.yolo``, ``refdet.onnx_ops``) without importing :mod:`refdet.testing`, which
sits above them; :mod:`refdet.testing.gradcheck` registers the layers' cases and runs them all.
"""
from __future__ import annotations

#: name -> (forward, backward, make, options)
_CASES: dict = {}


def register_gradcheck(name, forward, backward, make, **options):
    """Register a gradient-check case run by :func:`refdet.testing.gradcheck_all`.

    Parameters
    ----------
    name : str
        Unique case name, e.g. ``"conv2d stride 2 groups 2"``.
    forward, backward : callable
        The pair, as for :func:`refdet.testing.check_gradients`.
    make : callable
        ``make(rng) -> (inputs, kwargs)``: small float64 inputs away from kinks.
    **options
        Passed to :func:`refdet.testing.check_gradients` (``wrt``, ``grads_map``, ``max_elements``, ``rtol``, ...).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string; got {name!r}")
    if not (callable(forward) and callable(backward) and callable(make)):
        raise TypeError("`forward`, `backward` and `make` must be callables")
    _CASES[name] = (forward, backward, make, dict(options))
