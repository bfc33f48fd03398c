"""PULSE's database as the Dagster-free core sees it: a source of transactions."""

from contextlib import AbstractContextManager
from typing import Protocol

from sqlalchemy import Connection


class Database(Protocol):
    """PULSE's database: one transaction per `begin()`, committed when the block ends."""

    def begin(self) -> AbstractContextManager[Connection]: ...
