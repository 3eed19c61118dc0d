from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import Daemon  # noqa: E402

from dada.demo import make_demo  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the numba kernels once, into numba's on-disk cache, before any daemon starts: the nodes then
    load them instead of each compiling them at once (in a fresh environment that takes longer than a
    daemon is given to come up)."""
    from dada.stxm import polarbins
    from dada.stxm.engine import warm_up

    warm_up()
    polarbins.warm_up()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("demo"))
    make_demo(root, "tiny", progress=lambda _msg: None)
    return root


@pytest.fixture(scope="session")
def daemon(demo_root: str):
    d = Daemon(["serve", demo_root])
    yield d
    d.stop()


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for a test module's GUI tests (h5web's tests make their own, with WebGL)."""
    from browser import chromium

    driver = chromium()
    yield driver
    driver.quit()
