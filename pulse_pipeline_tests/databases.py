"""The PostgreSQL server the tests use (PULSE_TEST_POSTGRES, else the local one), and throw-away
databases on it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from pulse_pipeline_dev.postgres import fresh_database

POSTGRES_SERVER = os.environ.get("PULSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    with fresh_database(POSTGRES_SERVER, prefix) as url:
        yield url
