"""One torch thread for the SPECIAL tests: their tiles are small, and on a shared CPU extra
threads spin against each other (a 48 x 48 training ran 11x slower on two threads)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
