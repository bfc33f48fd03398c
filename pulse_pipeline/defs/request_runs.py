"""Serving the PULSE app's SyncRequest rows with Dagster runs: launch the queued ones, complete
the running ones. Called by the `sync_requests` sensor, one transaction per tick."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Connection

from pulse_pipeline import sync_requests as rules
from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.db import queries
from pulse_pipeline.defs.partitions import (
    CLOUD_ACCOUNTS,
    accounts_in_run,
    balanced_batches,
    batch_run_request,
)
from pulse_pipeline.defs.resources import ManualRequestLimits
from pulse_pipeline.defs.run_outcomes import outcomes_of
from pulse_pipeline.sync_requests import SyncRequest
from pulse_pipeline.sync_status import redact

SYNC_JOB = "sync_aws_costs"
TEST_JOB = "test_aws_connection"
REQUEST_TAG = "pulse/request"
# How many runs serve the request: an organisation's accounts that are not consecutive
# partitions take one run per stretch of consecutive ones.
RUNS_TAG = "pulse/request-runs"
MANUAL_TAGS = {"pulse/trigger": "manual"}
# Queued rows read per tick; the rest wait for the next one.
QUEUE_BATCH = 100
# A request marked running whose runs do not exist after this long (the daemon stopped between
# the tick and the launch) is launched again, with the same run keys.
RELAUNCH_AFTER = timedelta(minutes=5)


@dataclass
class Served:
    """What one tick did: runs to launch, partitions to add first, and a line per request."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def serve(
    conn: Connection,
    instance: dg.DagsterInstance,
    limits: ManualRequestLimits,
    now: datetime,
    log: logging.Logger,
) -> Served:
    """Complete the running requests whose runs ended, then launch, rate-limit or reject the
    queued ones, oldest first."""
    served = Served()
    partitions = list(instance.get_dynamic_partitions(CLOUD_ACCOUNTS))
    for row in queries.sync_requests_with_status(conn, rules.RUNNING):
        request = SyncRequest.from_row(row)
        records = _runs_of(instance, request)
        if records:
            note = _complete(conn, instance, request, records)
            if note is not None:
                served.notes.append(note)
        elif request.started_at is None or now - request.started_at > RELAUNCH_AFTER:
            accounts = _targets(conn, request, now)
            if accounts:
                _launch(request, accounts, partitions, served)
                served.notes.append(f"{request.id}: launched again (no run of it had started)")
    queued = queries.sync_requests_with_status(conn, rules.QUEUED, limit=QUEUE_BATCH)
    accounts = queries.aws_cost_explorer_accounts(conn) if queued else []
    for row in queued:
        request = SyncRequest.from_row(row)
        try:
            chosen = rules.targets(request, accounts, now.date())
        except rules.Rejected as rejected:
            _finish(conn, request, rules.QUEUED, rules.REJECTED, now, error=str(rejected))
            served.notes.append(f"{request.id}: rejected ({rejected})")
            continue
        wait = _wait(conn, request, limits, now)
        if wait is not None:
            _finish(conn, request, rules.QUEUED, rules.RATE_LIMITED, now, retryAfterSeconds=wait)
            served.notes.append(f"{request.id}: rate limited, {wait} s to wait")
            continue
        if queries.update_sync_request(
            conn, request.id, rules.QUEUED, status=rules.RUNNING, startedAt=now
        ):
            _launch(request, chosen, partitions, served)
            served.notes.append(
                f"{request.id}: {request.kind} of {', '.join(a.id for a in chosen)} launched"
            )
    for note in served.notes:
        log.info(f"SyncRequest {note}")
    return served


def _targets(conn: Connection, request: SyncRequest, now: datetime) -> list[CloudAccount]:
    """The request's accounts once more; a request no longer valid fails with the reason."""
    try:
        return rules.targets(request, queries.aws_cost_explorer_accounts(conn), now.date())
    except rules.Rejected as rejected:
        _finish(conn, request, rules.RUNNING, rules.FAILED, now, error=str(rejected))
        return []


def _wait(
    conn: Connection, request: SyncRequest, limits: ManualRequestLimits, now: datetime
) -> int | None:
    """Seconds the request's organisation (sync) or account (test) must still wait."""
    if request.kind == rules.SYNC:
        last = queries.last_launch(conn, rules.SYNC, org_id=request.org_id)
        interval = timedelta(minutes=limits.sync_interval_minutes)
    else:
        last = queries.last_launch(
            conn,
            rules.TEST_CONNECTION,
            org_id=request.org_id,
            cloud_account_id=request.cloud_account_id,
        )
        interval = timedelta(seconds=limits.test_interval_seconds)
    return rules.retry_after(last, now, interval)


def _finish(
    conn: Connection,
    request: SyncRequest,
    from_status: str,
    status: str,
    finished_at: datetime,
    **values: Any,
) -> None:
    queries.update_sync_request(
        conn, request.id, from_status, status=status, finishedAt=finished_at, **values
    )


def _launch(
    request: SyncRequest, accounts: Sequence[CloudAccount], partitions: list[str], served: Served
) -> None:
    """The runs that serve a request, with its tags (and, for a sync, its window)."""
    tags = {**MANUAL_TAGS, REQUEST_TAG: request.id}
    if request.kind == rules.TEST_CONNECTION:
        config = {"request_id": request.id, "cloud_account_id": accounts[0].id}
        served.run_requests.append(
            dg.RunRequest(
                job_name=TEST_JOB,
                run_key=f"test-connection:{request.id}",
                run_config={"ops": {"test_connection": {"config": config}}},
                tags={**tags, RUNS_TAG: "1"},
            )
        )
        return
    ids = [account.id for account in accounts]
    missing = [key for key in ids if key not in partitions]
    partitions.extend(missing)  # added by this tick, after the existing ones
    served.new_partitions.extend(missing)
    # One lane: one run per stretch of consecutive partitions (a manual request is small).
    batches = balanced_batches(partitions, set(ids), lanes=1)
    window = {"ops": {"sync_cloud_accounts": {"config": request.window_config()}}}
    for batch in batches:
        run = batch_run_request(
            batch, f"sync-request:{request.id}", {**tags, RUNS_TAG: str(len(batches))}, SYNC_JOB
        )
        served.run_requests.append(run.with_replaced_attrs(run_config=window))


def _runs_of(instance: dg.DagsterInstance, request: SyncRequest) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(tags={REQUEST_TAG: request.id})))


def _complete(
    conn: Connection,
    instance: dg.DagsterInstance,
    request: SyncRequest,
    records: Sequence[dg.RunRecord],
) -> str | None:
    """Give a running request its final status once every run serving it has ended."""
    first = min(records, key=lambda record: record.create_timestamp)
    if request.run_id is None:
        queries.update_sync_request(conn, request.id, rules.RUNNING, runId=first.dagster_run.run_id)
    expected = int(first.dagster_run.tags.get(RUNS_TAG, "1"))
    if len(records) < expected or not all(r.dagster_run.is_finished for r in records):
        return None
    finished_at = max(
        (datetime.fromtimestamp(r.end_time, UTC) if r.end_time else r.update_timestamp)
        for r in records
    )
    if request.kind == rules.TEST_CONNECTION:
        # The run writes its own outcome; a run that could not (killed, canceled) ends here.
        run = first.dagster_run
        cause = (
            "was canceled"
            if run.status == dg.DagsterRunStatus.CANCELED
            else ("ended without recording its outcome (its process was killed or lost)")
        )
        _finish(
            conn,
            request,
            rules.RUNNING,
            rules.FAILED,
            finished_at,
            error=f"CloudAccount {request.cloud_account_id}: the connection test {cause}",
        )
        return f"{request.id}: failed ({run.status.value})"
    results, errors = _sync_outcome(conn, instance, records)
    status = rules.FAILED if errors else rules.SUCCEEDED
    _finish(
        conn,
        request,
        rules.RUNNING,
        status,
        finished_at,
        result=results or None,
        error="; ".join(errors) or None,
    )
    return f"{request.id}: {status}"


def _sync_outcome(
    conn: Connection, instance: dg.DagsterInstance, records: Sequence[dg.RunRecord]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per account: its CostRecords of the synced window, or the sentence `lastSyncError` gets."""
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for record in sorted(records, key=lambda r: r.create_timestamp):
        run = record.dagster_run
        windows = queries.fetch_windows(conn, run.run_id)
        outcomes = {o.account_id: o for o in outcomes_of(instance, run.run_id)}
        for account_id in accounts_in_run(instance, dict(run.tags)):
            outcome = outcomes.get(account_id)
            if outcome is not None and outcome.error is None and account_id in windows:
                totals = queries.account_totals(conn, account_id, windows[account_id])
                results.append(rules.sync_result(totals))
                continue
            account = queries.load_account(conn, account_id)
            error = outcome.error if outcome and outcome.error else None
            error = error or f"CloudAccount {account_id}: the sync run ended without syncing it"
            errors.append(redact(error, [account.external_id if account else None]))
    return results, errors
