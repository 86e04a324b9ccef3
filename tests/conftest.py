"""Session-wide fixtures shared by several test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mongo import secantus_server


@pytest.fixture(scope="session")
def secantus_uri() -> Iterator[str]:
    """One SecantusDB (a MongoDB wire-protocol server) per test session, on a free port."""
    with secantus_server() as uri:
        yield uri
