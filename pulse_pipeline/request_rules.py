"""What the PULSE app's requests may do: which accounts a request reaches, the one gate every
launch passes (checks, the rate limits, a cap per tick), how a request ends, and what a served
sync answers. Plain rules with no Dagster in them; defs/request_runs.py serves the rows with
Dagster runs."""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from pulse_pipeline.accounts import CloudAccount, partition_key_problem
from pulse_pipeline.db import queries
from pulse_pipeline.request_rows import (
    FAILED,
    LAUNCHED,
    RATE_LIMITED,
    REJECTED,
    RUNNING,
    SYNC,
    TEST_CONNECTION,
    Rejected,
    SyncRequest,
    parse_row,
    parse_timestamp,
    shown,
)
from pulse_pipeline.sync_window import InvalidWindowError, resolve_window

# The scale of CostRecord amounts.
TEN_PLACES = Decimal("1e-10")


def targets(
    request: SyncRequest, accounts: Iterable[CloudAccount], today: date
) -> list[CloudAccount]:
    """The accounts a request reaches, checked before any AWS request; raises Rejected.

    `accounts` are PULSE's AWS Cost Explorer accounts. An account of another organisation is
    refused with the same sentence as an unknown one, so a request learns nothing about it.
    """
    if request.kind == TEST_CONNECTION:
        if request.cloud_account_id is None:
            raise Rejected(f"{request.label}: a connection test needs a cloudAccountId")
        if request.start_date or request.end_date:
            raise Rejected(f"{request.label}: a connection test takes no window")
    else:
        days = request.window_config()
        try:
            resolve_window(days.get("start_date"), days.get("end_date"), today)
        except InvalidWindowError as error:
            # The run config's words for the days, as the app's columns name them.
            reason = str(error).replace("start_date", "startDate").replace("end_date", "endDate")
            raise Rejected(f"{request.label}: {reason}") from None
    own = [account for account in accounts if account.org_id == request.org_id]
    org = shown(request.org_id)
    if request.cloud_account_id is not None:
        chosen = [account for account in own if account.id == request.cloud_account_id]
        if not chosen:
            raise Rejected(
                f"CloudAccount {shown(request.cloud_account_id)} is not an AWS Cost Explorer "
                f"account of organisation {org}"
            )
        account = chosen[0]
        if account.status not in queries.SYNCABLE_STATUSES:
            raise Rejected(
                f"{shown(account.label)} is disconnected in PULSE (status {account.status!r}); "
                "reconnect it first"
            )
        problem = partition_key_problem(account.id) if request.kind == SYNC else None
        if problem is not None:
            raise Rejected(f"{shown(account.label)} cannot be synced: its id {problem}")
        return [account]
    connected = [
        account
        for account in own
        if account.status in queries.SYNCABLE_STATUSES and partition_key_problem(account.id) is None
    ]
    if not connected:
        raise Rejected(f"organisation {org} has no connected AWS Cost Explorer account to sync")
    return connected


def retry_after(last_launch: datetime | None, now: datetime, interval: timedelta) -> int | None:
    """Whole seconds until the next request may be launched, or None if it may be now."""
    if last_launch is None:
        return None
    wait = (last_launch + interval - now).total_seconds()
    return math.ceil(wait) if wait > 0 else None


def finish(
    conn: Connection,
    request: SyncRequest,
    from_status: str,
    status: str,
    now: datetime,
    **values: Any,
) -> bool:
    """Give a request its final status; `finishedAt` is written in the same statement, never
    before its startedAt."""
    finished_at = max(now, request.started_at) if request.started_at else now
    return queries.update_sync_request(
        conn,
        request.id,
        request.requested_at_text,
        from_status,
        status=status,
        finishedAt=finished_at,
        **values,
    )


def reject_row(
    conn: Connection, row: Mapping[str, str | None], rejected: Rejected, now: datetime
) -> bool:
    """End a row PULSE cannot serve `rejected`, with the sentence that says why."""
    if row["id"] is None or row["requestedAt"] is None or row["status"] is None:
        return False
    return queries.update_sync_request(
        conn,
        row["id"],
        row["requestedAt"],
        row["status"],
        status=REJECTED,
        finishedAt=now,
        error=str(rejected),
    )


def finish_running(
    conn: Connection, request_id: str, request_key: str, status: str, now: datetime, **values: Any
) -> bool:
    """Give the running request `request_id` its final status, if it is still the request
    `request_key` names (not one deleted and inserted again with the same id)."""
    for row in queries.sync_request_texts(conn, statuses=[RUNNING], request_id=request_id):
        try:
            request = parse_row(row)
        except Rejected:
            return False
        if request.key == request_key:
            return finish(conn, request, RUNNING, status, now, **values)
    return False


@dataclass(frozen=True)
class Intervals:
    """How often an organisation may sync and an account may be tested."""

    sync: timedelta
    test: timedelta


@dataclass
class Gate:
    """The one gate every launch passes, whether of a queued request or a relaunch of one whose
    run never appeared: the request's checks (else `rejected`), the organisation's or account's
    rate limit (else `rate_limited`) and at most `cap` launches per tick (else it waits)."""

    conn: Connection
    intervals: Intervals
    now: datetime
    cap: int
    launched: int = 0
    _accounts: list[CloudAccount] | None = field(default=None, repr=False)

    @property
    def full(self) -> bool:
        return self.launched >= self.cap

    def admit(self, request: SyncRequest) -> tuple[list[CloudAccount] | None, str]:
        """The accounts to launch the request for (it is marked running, startedAt now), or
        None and what became of it instead."""
        if self.full:
            return None, "waits for the next tick (launches per tick reached)"
        if self._accounts is None:
            self._accounts = queries.aws_cost_explorer_accounts(self.conn)
        try:
            chosen = targets(request, self._accounts, self.now.date())
        except Rejected as rejected:
            finish(self.conn, request, request.status, REJECTED, self.now, error=str(rejected))
            return None, f"rejected ({rejected})"
        wait = retry_after(self._last_launch(request), self.now, self._interval(request))
        if wait is not None:
            finish(
                self.conn, request, request.status, RATE_LIMITED, self.now, retryAfterSeconds=wait
            )
            return None, f"rate limited, {wait} s to wait"
        if not queries.update_sync_request(
            self.conn,
            request.id,
            request.requested_at_text,
            request.status,
            status=RUNNING,
            startedAt=self.now,
        ):
            return None, "changed meanwhile; left as it is"
        self.launched += 1
        return chosen, f"{request.kind} of {', '.join(shown(a.id) for a in chosen)} launched"

    def fail(self, request: SyncRequest, reason: str) -> None:
        """End a running request `failed`."""
        finish(self.conn, request, RUNNING, FAILED, self.now, error=f"{request.label}: {reason}")

    def _interval(self, request: SyncRequest) -> timedelta:
        return self.intervals.sync if request.kind == SYNC else self.intervals.test

    def _last_launch(self, request: SyncRequest) -> datetime | None:
        """When the organisation's last sync (or the account's last test) other than this
        request was launched, within the interval; a startedAt PULSE cannot read or in the
        future is not a launch."""
        texts = queries.launch_times(
            self.conn,
            request.kind,
            LAUNCHED,
            self.now - self._interval(request),
            org_id=request.org_id,
            cloud_account_id=request.cloud_account_id if request.kind != SYNC else None,
            other_than_id=request.id,
        )
        moments = []
        for text in texts:
            try:
                moment = parse_timestamp(text, "startedAt", request.label)
            except Rejected:
                continue
            if moment is not None and moment <= self.now:
                moments.append(moment)
        return max(moments, default=None)


def sync_result(totals: queries.AccountTotals) -> dict[str, Any]:
    """What a served sync answers per account: its CostRecords of the synced window."""
    return {
        "cloudAccountId": totals.account_id,
        "recordsCount": totals.records,
        "totalAmountEUR": format(totals.total_eur.quantize(TEN_PLACES), "f"),
        "services": list(totals.services),
    }
