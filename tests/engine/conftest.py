import os

import pytest

from flexcore.registry import load_plugin

TINY_PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_plugin.py")


@pytest.fixture(scope="session")
def tiny_plugin():
    """The tiny dataset/backbone plugin module (registered once per session)."""
    return load_plugin(TINY_PLUGIN)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Tiny models run fastest on one thread (the shared ``single_thread`` fixture)."""


@pytest.fixture(scope="session")
def train_net_server():
    """Forks real ``train_net`` processes from one process that imported flexcore once."""
    from train_net_runs import TrainNetServer

    with TrainNetServer() as server:
        yield server
