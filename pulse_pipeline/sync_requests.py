"""The PULSE app's SyncRequest rows ("Sync now", "Test connection"): which accounts a request may
reach, when an organisation may ask again, and what a served request answers.

Plain rules with no Dagster in them; `sync_request_runs.py` serves the rows with Dagster runs.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pulse_pipeline.accounts import CloudAccount, partition_key_problem
from pulse_pipeline.db import queries
from pulse_pipeline.sync_window import InvalidWindowError, resolve_window

SYNC = "sync"
TEST_CONNECTION = "test_connection"
KINDS = (SYNC, TEST_CONNECTION)

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
RATE_LIMITED = "rate_limited"
REJECTED = "rejected"
# The scale of CostRecord amounts.
TEN_PLACES = Decimal("1e-10")


class Rejected(Exception):
    """A request that must not reach AWS; the message is the one sentence the app shows."""


@dataclass(frozen=True)
class SyncRequest:
    """One row of the SyncRequest table."""

    id: str
    org_id: str
    cloud_account_id: str | None
    kind: str
    start_date: date | None
    end_date: date | None
    status: str
    requested_at: datetime
    started_at: datetime | None
    run_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "SyncRequest":
        return cls(
            id=row["id"],
            org_id=row["orgId"],
            cloud_account_id=row["cloudAccountId"],
            kind=row["kind"],
            start_date=row["startDate"],
            end_date=row["endDate"],
            status=row["status"],
            requested_at=as_utc(row["requestedAt"]),
            started_at=as_utc(row["startedAt"]) if row["startedAt"] else None,
            run_id=row["runId"],
        )

    def window_config(self) -> dict[str, str]:
        """The sync's run config window (SyncWindowConfig): only the days the app chose."""
        days = {"start_date": self.start_date, "end_date": self.end_date}
        return {name: day.isoformat() for name, day in days.items() if day is not None}


def as_utc(value: datetime) -> datetime:
    """A timestamp as an aware UTC datetime (SQLite gives them back naive, in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def targets(
    request: SyncRequest, accounts: Iterable[CloudAccount], today: date
) -> list[CloudAccount]:
    """The accounts a request reaches, checked before any AWS request; raises Rejected.

    `accounts` are PULSE's AWS Cost Explorer accounts. An account of another organisation is
    refused with the same sentence as an unknown one, so a request learns nothing about it.
    """
    if request.kind not in KINDS:
        raise Rejected(
            f"SyncRequest {request.id}: unknown kind {request.kind!r}; use 'sync' or "
            "'test_connection'"
        )
    if request.kind == TEST_CONNECTION:
        if request.cloud_account_id is None:
            raise Rejected(f"SyncRequest {request.id}: a connection test needs a cloudAccountId")
        if request.start_date or request.end_date:
            raise Rejected(f"SyncRequest {request.id}: a connection test takes no window")
    else:
        days = request.window_config()
        try:
            resolve_window(days.get("start_date"), days.get("end_date"), today)
        except InvalidWindowError as error:
            # The run config's words for the days, as the app's columns name them.
            reason = str(error).replace("start_date", "startDate").replace("end_date", "endDate")
            raise Rejected(f"SyncRequest {request.id}: {reason}") from None
    own = [account for account in accounts if account.org_id == request.org_id]
    if request.cloud_account_id is not None:
        chosen = [account for account in own if account.id == request.cloud_account_id]
        if not chosen:
            raise Rejected(
                f"CloudAccount {request.cloud_account_id} is not an AWS Cost Explorer account "
                f"of organisation {request.org_id}"
            )
        account = chosen[0]
        if account.status not in queries.SYNCABLE_STATUSES:
            raise Rejected(
                f"{account.label} is disconnected in PULSE (status {account.status!r}); "
                "reconnect it first"
            )
        problem = partition_key_problem(account.id) if request.kind == SYNC else None
        if problem is not None:
            raise Rejected(f"{account.label} cannot be synced: its id {problem}")
        return [account]
    connected = [
        account
        for account in own
        if account.status in queries.SYNCABLE_STATUSES and partition_key_problem(account.id) is None
    ]
    if not connected:
        raise Rejected(
            f"organisation {request.org_id} has no connected AWS Cost Explorer account to sync"
        )
    return connected


def retry_after(last_launch: datetime | None, now: datetime, interval: timedelta) -> int | None:
    """Whole seconds until the next request may be launched, or None if it may be now."""
    if last_launch is None:
        return None
    wait = (as_utc(last_launch) + interval - now).total_seconds()
    return math.ceil(wait) if wait > 0 else None


def sync_result(totals: queries.AccountTotals) -> dict[str, Any]:
    """What a served sync answers per account: its CostRecords of the synced window."""
    return {
        "cloudAccountId": totals.account_id,
        "recordsCount": totals.records,
        "totalAmountEUR": format(totals.total_eur.quantize(TEN_PLACES), "f"),
        "services": list(totals.services),
    }
