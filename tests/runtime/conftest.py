from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_counter = itertools.count()


@pytest.fixture
def mesh_name() -> Callable[[], str]:
    """Unique mesh names (<= 20 chars) so tests run in parallel with others."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "m").removeprefix("gw")

    def make() -> str:
        return f"rtdev{worker}-{os.getpid() % 100000}-{next(_counter)}"

    return make


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    d.mkdir()
    yield d
