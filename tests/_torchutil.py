"""Helpers shared by the differential tests against torch/torchvision."""
import numpy as np
import pytest


def _torch():
    """torch with one thread, or skip the test when torch/torchvision are not installed."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    torch.set_num_threads(1)
    return torch


def _state(module):
    """A torch module's state_dict as NumPy arrays (copies)."""
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _torch_ops():
    """(torch, torchvision.ops) with one thread, or skip."""
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    torch.set_num_threads(1)
    return torch, ops


def _bits_equal(a, b):
    """Same dtype, shape and bytes (so -0.0 != 0.0 and NaN payloads count)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
