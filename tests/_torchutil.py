"""Helpers shared by the differential tests against torch/torchvision."""
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
