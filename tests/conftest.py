"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _pinned_threads(request):
    """Pin torch's thread count per test module (``TORCH_THREADS`` in the module, default 2).

    Float reductions depend on the thread count, and the bit-identity tests compare runs made at
    different times (fixtures vs tests), so no module may inherit another module's setting.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(getattr(request.module, "TORCH_THREADS", 2))
    yield
    torch.set_num_threads(n)
