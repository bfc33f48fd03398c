"""How fresh an account's CostRecords are: the age of its last successful sync, against a limit.

The age is measured from `CloudAccount.lastSyncedAt`, the time PULSE shows its users: it moves
only when a sync fetched from AWS and wrote the rows (a re-conversion without AWS does not move
it), and one query reads it for every account. An account never synced is measured from when
it was connected.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
from sqlalchemy import Connection

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.db import queries
from pulse_pipeline.keys import DAILY_COSTS

SYNCED_RECENTLY = "synced_recently"
DESCRIPTION = (
    "Fails for an account's partition when its last successful sync (CloudAccount.lastSyncedAt, "
    "or when it was connected if it never synced) is older than PULSE_COST_FRESHNESS_HOURS "
    "(default 30). Passed by every sync that fetched the account; evaluated by "
    "report_cost_freshness, which the cost_freshness sensor launches (checking every 10 "
    "minutes) for each account that turns stale or recovers."
)


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


def evaluation(state: Freshness, limit_hours: int) -> dg.AssetCheckEvaluation:
    """The synced_recently result of the account's daily_costs_eur partition."""
    if state.synced_at is None:
        summary = "never synced successfully"
        if state.age_hours is not None:
            summary += f" since it was connected {state.age_hours} hours ago"
    else:
        summary = f"last synced successfully {state.age_hours} hours ago"
    metadata: dict[str, Any] = {
        "summary": f"{summary} (limit {limit_hours} hours)",
        "limit_hours": limit_hours,
        "last_synced_at": state.synced_at.isoformat() if state.synced_at else "never",
    }
    return dg.AssetCheckEvaluation(
        asset_key=DAILY_COSTS,
        check_name=SYNCED_RECENTLY,
        passed=state.fresh,
        metadata=metadata,
        partition=state.account_id,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def just_synced(account_id: str, now: datetime, limit_hours: int) -> dg.AssetCheckEvaluation:
    """A sync that fetched and wrote the account passes its check."""
    return evaluation(Freshness(account_id, now, 0.0, fresh=True), limit_hours)


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
