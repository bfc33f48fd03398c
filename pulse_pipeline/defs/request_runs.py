"""Serving the PULSE app's SyncRequest rows with Dagster runs: reject the rows PULSE cannot
serve, complete the running requests whose runs ended, relaunch (once) a request whose run never
appeared, and launch the queued ones. Called by the `sync_requests` sensor, one transaction per
tick; every launch passes request_rules.Gate."""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Connection

from pulse_pipeline import request_rows as rows
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
from pulse_pipeline.request_rows import Rejected, SyncRequest, shown
from pulse_pipeline.request_rules import Gate, Intervals, finish, reject_row, sync_result
from pulse_pipeline.sync_status import redact

SYNC_JOB = "sync_aws_costs"
TEST_JOB = "test_aws_connection"
REQUEST_TAG = "pulse/request"
# The request's identity (request_rows.SyncRequest.key): runs are found by it, so a row
# inserted again with an earlier row's id is never answered from that row's runs.
REQUEST_KEY_TAG = "pulse/request-key"
# How many runs serve the request: an organisation's accounts that are not consecutive
# partitions take one run per stretch of consecutive ones.
RUNS_TAG = "pulse/request-runs"
MANUAL_TAGS = {"pulse/trigger": "manual"}
# Rows read per tick and per status; the rest wait for the next one.
QUEUE_BATCH = 100
# Requests launched per tick, relaunches included; the rest stay queued for the next tick.
LAUNCHES_PER_TICK = 20
# A request marked running whose runs do not exist after this long (the daemon stopped between
# the tick and the launch) goes through the gate again, once; if its runs still do not appear
# this long after the relaunch, it fails.
RELAUNCH_AFTER = timedelta(minutes=5)
# A running row whose startedAt is further ahead than this was not written by the pipeline.
CLOCK_SKEW = timedelta(minutes=1)


@dataclass
class Served:
    """What one tick did: runs to launch, partitions to add first, a line per request, and the
    running requests relaunched once already (the sensor's cursor)."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    relaunched: set[str] = field(default_factory=set)


def serve(
    conn: Connection,
    instance: dg.DagsterInstance,
    limits: ManualRequestLimits,
    now: datetime,
    log: logging.Logger,
    relaunched: frozenset[str] = frozenset(),
) -> Served:
    """Reject rows in a status PULSE never writes, handle the running requests, then launch,
    rate-limit or reject the queued ones, oldest first."""
    served = Served()
    intervals = Intervals(
        sync=timedelta(minutes=limits.sync_interval_minutes),
        test=timedelta(seconds=limits.test_interval_seconds),
    )
    gate = Gate(conn, intervals, now, LAUNCHES_PER_TICK)
    partitions = list(instance.get_dynamic_partitions(CLOUD_ACCOUNTS))
    for row in queries.sync_request_texts(conn, other_than=rows.STATUSES, limit=QUEUE_BATCH):
        _parse_or_reject(conn, row, now, served)
    running = _parsed(conn, queries.sync_request_texts(conn, statuses=[rows.RUNNING]), now, served)
    runs = _runs_by_key(instance, [request.key for request in running])
    for request in running:
        assert request.started_at is not None  # _parsed rejects the others
        if runs[request.key]:
            note = _complete(conn, instance, request, runs[request.key], now)
        elif request.started_at > now + CLOCK_SKEW:
            note = _reject_running(conn, request, "startedAt is in the future", now)
        elif now - request.started_at <= RELAUNCH_AFTER:
            note = None
        elif request.key in relaunched:
            gate.fail(request, "no run of it started after it was launched twice; ask again")
            note = f"failed (no run tagged {REQUEST_KEY_TAG}={request.key} after two launches)"
        else:
            accounts, note = gate.admit(request)
            if accounts is not None:
                _launch(request, accounts, partitions, served, attempt=2)
                served.relaunched.add(request.key)
                note = f"launched again, no run of it had started: {note}"
        if note is not None:
            served.notes.append(f"{request.label}: {note}")
    # Keep the relaunches of requests still running; the others have ended.
    served.relaunched |= relaunched & {request.key for request in running}
    queued = queries.sync_request_texts(conn, statuses=[rows.QUEUED], limit=QUEUE_BATCH)
    for request in _parsed(conn, queued, now, served):
        if gate.full:
            served.notes.append(
                f"{len(queued)} queued requests read; the rest wait for the next tick "
                f"({LAUNCHES_PER_TICK} launches per tick)"
            )
            break
        accounts, note = gate.admit(request)
        if accounts is not None:
            _launch(request, accounts, partitions, served, attempt=1)
        served.notes.append(f"{request.label}: {note}")
    for note in served.notes:
        log.info(note)
    return served


def _parse_or_reject(
    conn: Connection, row: dict[str, str | None], now: datetime, served: Served
) -> SyncRequest | None:
    """The row parsed, or None once it has been rejected with the reason."""
    try:
        return rows.parse_row(row)
    except Rejected as rejected:
        if reject_row(conn, row, rejected, now):
            served.notes.append(f"rejected: {rejected}")
        return None


def _parsed(
    conn: Connection, texts: Sequence[dict[str, str | None]], now: datetime, served: Served
) -> list[SyncRequest]:
    """The rows PULSE can serve; each of the others is rejected, saying why."""
    requests = []
    for row in texts:
        request = _parse_or_reject(conn, row, now, served)
        if request is None:
            continue
        if request.status == rows.RUNNING and request.started_at is None:
            rejected = Rejected(
                f"{request.label}: status 'running' without a startedAt was not written by the "
                "pipeline; insert requests as 'queued'"
            )
            if reject_row(conn, row, rejected, now):
                served.notes.append(f"rejected: {rejected}")
            continue
        requests.append(request)
    return requests


def _reject_running(conn: Connection, request: SyncRequest, reason: str, now: datetime) -> str:
    sentence = f"{request.label}: {reason}"
    finish(conn, request, rows.RUNNING, rows.REJECTED, now, error=sentence)
    return f"rejected ({sentence})"


def _launch(
    request: SyncRequest,
    accounts: Sequence[CloudAccount],
    partitions: list[str],
    served: Served,
    attempt: int,
) -> None:
    """The runs that serve a request, with its tags (and, for a sync, its window). Run keys
    carry the request's identity and the attempt, so Dagster launches each at most once."""
    tags = {**MANUAL_TAGS, REQUEST_TAG: request.id, REQUEST_KEY_TAG: request.key}
    if request.kind == rows.TEST_CONNECTION:
        config = {
            "request_id": request.id,
            "request_key": request.key,
            "cloud_account_id": accounts[0].id,
        }
        served.run_requests.append(
            dg.RunRequest(
                job_name=TEST_JOB,
                run_key=f"test-connection:{request.key}:{attempt}",
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
            batch,
            f"sync-request:{request.key}:{attempt}",
            {**tags, RUNS_TAG: str(len(batches))},
            SYNC_JOB,
        )
        served.run_requests.append(run.with_replaced_attrs(run_config=window))


def _runs_by_key(
    instance: dg.DagsterInstance, keys: Sequence[str]
) -> dict[str, list[dg.RunRecord]]:
    """The runs of each request, found by its identity (one query for all of them)."""
    found: dict[str, list[dg.RunRecord]] = defaultdict(list)
    if keys:
        records = instance.get_run_records(dg.RunsFilter(tags={REQUEST_KEY_TAG: list(keys)}))
        for record in records:
            found[record.dagster_run.tags[REQUEST_KEY_TAG]].append(record)
    return found


def _complete(
    conn: Connection,
    instance: dg.DagsterInstance,
    request: SyncRequest,
    records: Sequence[dg.RunRecord],
    now: datetime,
) -> str | None:
    """Give a running request its final status once every run serving it has ended;
    `finishedAt` is when that status is written."""
    first = min(records, key=lambda record: record.create_timestamp)
    if request.run_id is None:
        queries.update_sync_request(
            conn,
            request.id,
            request.requested_at_text,
            rows.RUNNING,
            runId=first.dagster_run.run_id,
        )
    expected = int(first.dagster_run.tags.get(RUNS_TAG, "1"))
    if len(records) < expected or not all(r.dagster_run.is_finished for r in records):
        return None
    if request.kind == rows.TEST_CONNECTION:
        # The run writes its own outcome; a run that could not (killed, canceled) ends here.
        run = first.dagster_run
        cause = (
            "was canceled"
            if run.status == dg.DagsterRunStatus.CANCELED
            else ("ended without recording its outcome (its process was killed or lost)")
        )
        error = f"CloudAccount {shown(request.cloud_account_id or '')}: the connection test {cause}"
        finish(conn, request, rows.RUNNING, rows.FAILED, now, error=error)
        return f"failed ({run.status.value})"
    results, errors = _sync_outcome(conn, instance, records)
    status = rows.FAILED if errors else rows.SUCCEEDED
    finish(
        conn,
        request,
        rows.RUNNING,
        status,
        now,
        result=results or None,
        error="; ".join(errors) or None,
    )
    return status


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
                results.append(sync_result(totals))
                continue
            account = queries.load_account(conn, account_id)
            error = outcome.error if outcome and outcome.error else None
            error = error or f"CloudAccount {account_id}: the sync run ended without syncing it"
            errors.append(redact(error, [account.external_id if account else None]))
    return results, errors
