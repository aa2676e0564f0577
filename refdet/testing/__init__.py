"""Tools for testing *other* implementations against refdet (and refdet against itself).

``refdet.testing`` needs only NumPy; ``refdet.testing.strategies`` (hypothesis strategies) needs
hypothesis and is imported on first use.

Public pieces: ``strategies`` (hypothesis strategies), ``check_gradients`` (float64 central
differences), comparators that explain the first difference (``assert_nms_equal``,
``assert_matches_equal``, ...), ``conformance`` (``conformance.check_nms(my_nms)`` and the other
``check_<op>`` functions: golden edge cases + seeded hypothesis cases against refdet, raising an
AssertionError that names the likely cause; the engine of ``refdet verify``).
"""
import importlib as _importlib

# name -> module inside refdet.testing that defines it (one line each)
_EXPORTS = {
    "check_gradients": "gradcheck",
    "gradcheck_all": "gradcheck",
    "register_gradcheck": "gradcheck",
    "assert_nms_equal": "compare_nms",
    "explain_nms_difference": "compare_nms",
    "assert_matches_equal": "compare_match",
    "assert_sample_valid": "compare_match",
    "match_variants": "compare_match",
    "assert_anchors_equal": "compare_anchors",
    "explain_anchor_difference": "compare_anchors",
    "assert_allclose_ulp": "compare_floats",
    "explain_float_difference": "compare_floats",
    "ulp_distance": "compare_floats",
}

_LAZY_SUBMODULES = ("strategies", "conformance")

__all__ = sorted(_EXPORTS) + list(_LAZY_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(_importlib.import_module(f"refdet.testing.{_EXPORTS[name]}"), name)
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"refdet.testing.{name}")
    raise AttributeError(f"module 'refdet.testing' has no attribute {name!r}")


def __dir__():
    return __all__
