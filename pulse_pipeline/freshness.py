"""How fresh an account's CostRecords are: the age of its last successful sync, against a limit.

The age is measured from `CloudAccount.lastSyncedAt`, the time PULSE shows its users: it moves
only when a sync fetched from AWS and wrote the rows (a re-conversion without AWS does not move
it), and one query reads it for every account. An account never synced is measured from when
it was connected.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.db import queries


@dataclass(frozen=True)
class Freshness:
    """One account's last successful sync (None: never, nor a connection time) and its verdict."""

    account_id: str
    synced_at: datetime | None
    age_hours: float | None
    fresh: bool


def freshness(account: CloudAccount, now: datetime, limit_hours: int) -> Freshness:
    """Whether the account synced within `limit_hours` of `now` (naive UTC, as PULSE stores it)."""
    since = account.last_synced_at or account.created_at
    if since is None:
        return Freshness(account.id, None, None, fresh=False)
    age = (now - since).total_seconds() / 3600
    return Freshness(account.id, account.last_synced_at, round(age, 1), age <= limit_hours)


def accounts_freshness(
    conn: Connection, account_ids: Collection[str], now: datetime, limit_hours: int
) -> list[tuple[CloudAccount, Freshness]]:
    """Each of `account_ids` that is an AWS Cost Explorer account in PULSE, with its freshness."""
    wanted = set(account_ids)
    return [
        (account, freshness(account, now, limit_hours))
        for account in queries.aws_cost_explorer_accounts(conn)
        if account.id in wanted
    ]
