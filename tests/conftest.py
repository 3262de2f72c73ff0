"""Fixtures every test module shares; plain helpers are in tests/helpers.py."""

from __future__ import annotations

import sys

import pytest
from helpers import write_pairs


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: tiny tensors run fastest so, and the tests share a small machine.

    Only where torch is loaded already (a collected test module imports it): a torch-free
    test run never imports torch for this.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pairs(tmp_path):
    """Two small synthetic LR/HR specimens (tmp_path/a, tmp_path/b; 3 sections, 16 -> 32 px): (LR paths, HR paths)."""
    return write_pairs(tmp_path)
