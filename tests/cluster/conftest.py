"""The cluster tests' PostgreSQL server (tests/memory/pg.py: a throwaway one, or $LLMASOS_TEST_PG_URL)."""

from __future__ import annotations

import pytest

from tests.cluster.nodes import close_all
from tests.memory.pg import postgres_url


@pytest.fixture(scope="session")
def pg_server():
    with postgres_url() as url:
        try:
            yield url
        finally:
            close_all()
