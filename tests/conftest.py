"""Session-wide fixtures shared by several test folders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.ports.store import Store
from tests.support.mongo import secantus_server
from tests.support.stores import sqlite_store


@pytest.fixture(scope="session")
def secantus_uri() -> Iterator[str]:
    """One SecantusDB (a MongoDB wire-protocol server) per test session, on a free port."""
    with secantus_server() as uri:
        yield uri


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite store for this test, closed after it. The contract suite overrides this
    with its own `store`, parametrised over every backend."""
    async with sqlite_store(tmp_path) as s:
        yield s
