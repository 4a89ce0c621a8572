"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread is faster, and on a shared 2-core box 2 threads measured 3-5x slower.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the old count is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
