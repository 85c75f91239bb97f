import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models trace and run fastest on one thread, especially on a shared, loaded machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
