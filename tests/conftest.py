"""Hypothesis profiles and shared fixtures.

Profiles (select with HYPOTHESIS_PROFILE=name; CI=true selects "ci"):
  ci        derandomized (same examples every run), 60 examples, no deadline
  dev       the default: random, 100 examples, no deadline
  thorough  1000 examples, for a long local run
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=60, print_blob=True, **_common)
settings.register_profile("dev", max_examples=100, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
_default = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


@pytest.fixture
def rng():
    """A seeded Generator: tests are reproducible."""
    return np.random.default_rng(12345)


def readonly(*arrays):
    """Copies of ``arrays`` with the write flag cleared (inputs must never be written)."""
    out = []
    for a in arrays:
        a = np.array(a, copy=True)
        a.setflags(write=False)
        out.append(a)
    return out if len(out) != 1 else out[0]
