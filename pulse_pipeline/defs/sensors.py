"""Sensors: new PULSE accounts become partitions and get a first sync; finished syncs get their
status written; the PULSE app's sync and test requests are served."""

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import dagster as dg

from pulse_pipeline.db import queries
from pulse_pipeline.defs.jobs import (
    FRESHNESS_OP,
    refresh_ecb_rates,
    report_cost_freshness,
    sync_aws_costs,
    test_aws_connection,
    write_sync_status_job,
)
from pulse_pipeline.defs.keys import ECB_RATES, SYNC_ASSETS
from pulse_pipeline.defs.partitions import (
    CLOUD_ACCOUNTS,
    PARTITION_TAG,
    RANGE_START_TAG,
    balanced_batches,
    batch_run_request,
    cloud_accounts_partitions,
    cost_explorer_lanes,
    refuse_unpartitionable,
    unknown_partitions,
)
from pulse_pipeline.defs.request_runs import serve
from pulse_pipeline.defs.resources import CostSettings, ManualRequestLimits, PulseDatabase
from pulse_pipeline.freshness import freshness

# Finished runs read per status-sensor tick; the cursor carries on from the last one.
STATUS_BATCH = 500
# Each status run's tag: the sensor finds it by this to learn whether its outcomes were written.
STATUS_BATCH_TAG = "pulse/status-batch"
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dg.sensor(
    jobs=[sync_aws_costs, refresh_ecb_rates],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Adds a cloud_accounts partition for each newly connected AWS Cost Explorer account in "
        "PULSE and requests its first sync (default window) in the same tick, shared out over the "
        "cost_explorer lanes like the daily schedule's runs. Accounts that are "
        "disconnected (a status other than pending/active/error) or deleted in PULSE are no "
        "longer synced; their partitions and CostRecords stay as history. A partition that "
        "names no CloudAccount and was never materialized (added by hand, say) is removed, and "
        "the tick says which. An account whose id "
        "cannot be a partition key (too long, or characters Dagster refuses) is skipped and "
        "marked error with the reason; the others carry on. The cursor lists the accounts "
        "already handled, so a partition deleted by hand is not added back. On a fresh "
        "deployment it first loads the ECB rates (refresh_ecb_rates) and waits for them."
    ),
)
def new_cloud_accounts(
    context: dg.SensorEvaluationContext, pulse_db: PulseDatabase
) -> dg.SensorResult | dg.SkipReason:
    with pulse_db.begin() as conn:
        accounts = queries.aws_cost_explorer_accounts(conn)
        syncable = [a for a in accounts if a.status in queries.SYNCABLE_STATUSES]
        refused = refuse_unpartitionable(conn, syncable, context.log)
    ordered = context.instance.get_dynamic_partitions(CLOUD_ACCOUNTS)
    partitions = set(ordered)
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    syncable_ids = [account.id for account in syncable]
    new = [
        id_
        for id_ in syncable_ids
        if id_ not in partitions and id_ not in handled and id_ not in refused
    ]
    gone = sorted(partitions - set(syncable_ids))
    removed = unknown_partitions(context.instance, gone, {account.id for account in accounts})
    gone = [key for key in gone if key not in removed]
    removal = [cloud_accounts_partitions.build_delete_request(removed)] if removed else []
    removed_note = (
        f"; removed {len(removed)} partitions without a CloudAccount and without "
        f"materializations: {', '.join(removed[:20])}"
        if removed
        else ""
    )
    if removed:
        context.log.info(removed_note[2:])
        # A removed key may become a real account later: it is new again then.
        handled -= set(removed)
    refused_note = (
        f"; {len(refused)} accounts cannot be partitions (their lastSyncError says why)"
        if refused
        else ""
    )
    if not new:
        kept = (
            f"; {len(gone)} partitions no longer connected in PULSE, kept as history: "
            if gone
            else ""
        )
        skip = (
            f"no new account: {len(syncable)} connected AWS Cost Explorer accounts in PULSE, "
            f"{len(partitions)} partitions{refused_note}{kept}{', '.join(gone[:20])}"
            f"{removed_note}"
        )
        if not removed:
            return dg.SkipReason(skip)
        return dg.SensorResult(
            skip_reason=skip,
            dynamic_partitions_requests=removal,
            cursor=json.dumps(sorted(handled)),
        )
    if context.instance.get_latest_materialization_event(ECB_RATES) is None:
        day = datetime.now(UTC).date().isoformat()
        context.log.info(
            f"{len(new)} new accounts wait for the first ECB rates (refresh_ecb_rates)"
        )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(job_name=refresh_ecb_rates.name, run_key=f"ecb-first-load:{day}")
            ],
            cursor=context.cursor,
        )
    context.log.info(f"new AWS accounts: {', '.join(new)}{refused_note}")
    job = sync_aws_costs.name
    lanes = cost_explorer_lanes(context.instance)
    return dg.SensorResult(
        dynamic_partitions_requests=[*removal, cloud_accounts_partitions.build_add_request(new)],
        # New partitions are appended in this order, so consecutive ones form a range; they
        # are shared out over the cost_explorer lanes like the schedule's.
        run_requests=[
            batch_run_request(batch, "initial-sync", {"pulse/trigger": "new-account"}, job)
            for batch in balanced_batches([*ordered, *new], set(new), lanes)
        ],
        cursor=json.dumps(sorted(handled | (partitions - set(removed)) | set(new))),
    )


def _is_sync_run(run: dg.DagsterRun) -> bool:
    """A run that synced accounts, whatever launched it (job, asset page, backfill, CLI)."""
    if PARTITION_TAG not in run.tags and RANGE_START_TAG not in run.tags:
        return False
    if run.job_name == sync_aws_costs.name:
        return True
    return bool(run.asset_selection and SYNC_ASSETS & run.asset_selection)


@dataclass(frozen=True)
class StatusCursor:
    """How far sync outcomes are written, and the status run that is writing the next ones.

    `written_until`: every sync run that finished (run record updated) at or before it has its
    outcome in PULSE. It moves only when the status run covering the runs up to `batch_until`
    succeeded; a failed one leaves it, so the next request covers those runs again.
    """

    written_until: float | None = None
    batch: str | None = None  # the pending status run's STATUS_BATCH_TAG
    batch_until: float | None = None
    failures: int = 0  # status runs failed in a row since written_until last moved

    @classmethod
    def parse(cls, cursor: str | None) -> "StatusCursor":
        if not cursor:
            return cls()
        if not cursor.startswith("{"):  # a timestamp: the cursor before batches were tracked
            return cls(written_until=float(cursor))
        return cls(**json.loads(cursor))

    def dump(self) -> str:
        return json.dumps(asdict(self))


def _retry_delay(failures: int) -> float:
    """Seconds to wait after a failed status run before asking again: at once after the first,
    then 1, 2, 4 ... minutes, at most an hour (a database that stays down is not hammered)."""
    return 0.0 if failures <= 1 else min(30.0 * 2 ** (failures - 1), 3600.0)


def _batch_run(instance: dg.DagsterInstance, batch: str) -> dg.DagsterRun | None:
    """The newest status run of a batch (a re-execution from the UI keeps its tags)."""
    records = instance.get_run_records(dg.RunsFilter(tags={STATUS_BATCH_TAG: batch}), limit=1)
    return records[0].dagster_run if records else None


@dg.sensor(
    job=write_sync_status_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches write_sync_status for every sync run that finished since the outcomes last "
        "written, however it was launched (schedule, sensor, UI, backfill, CLI) and however it "
        "ended (success, failure, cancellation, a killed process): many finished runs become "
        "one status run, and one status run at a time. The cursor moves past a sync run only "
        "once a status run that covered it succeeded; if one fails, the next covers its runs "
        "again (at once, then after 1, 2, 4 ... minutes, at most an hour)."
    ),
)
def sync_status_writer(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    state = StatusCursor.parse(context.cursor)
    if state.batch is not None:
        run = _batch_run(context.instance, state.batch)
        if run is not None and not run.is_finished:
            return dg.SensorResult(
                skip_reason=f"status run {run.run_id} is still writing", cursor=state.dump()
            )
        if run is not None and run.status == dg.DagsterRunStatus.SUCCESS:
            state = StatusCursor(written_until=state.batch_until)
        elif run is not None:
            record = context.instance.get_run_record_by_id(run.run_id)
            ended = record.end_time if record and record.end_time else time.time()
            failures = state.failures + 1
            wait = ended + _retry_delay(failures) - time.time()
            if wait > 0:
                return dg.SensorResult(
                    skip_reason=(
                        f"status run {run.run_id} failed ({failures} in a row); its sync runs "
                        f"are requested again in {wait:.0f} s"
                    ),
                    cursor=state.dump(),
                )
            context.log.warning(f"status run {run.run_id} failed; requesting its sync runs again")
            state = StatusCursor(written_until=state.written_until, failures=failures)
        # No run for the batch: its request was never launched; it is requested again below.
    runs_filter = dg.RunsFilter(statuses=FINISHED)
    if state.written_until is not None:
        runs_filter = dg.RunsFilter(
            statuses=FINISHED,
            updated_after=datetime.fromtimestamp(state.written_until, UTC),
        )
    records = context.instance.get_run_records(
        runs_filter, limit=STATUS_BATCH, order_by="update_timestamp", ascending=True
    )
    run_ids = [record.dagster_run.run_id for record in records if _is_sync_run(record.dagster_run)]
    if not run_ids:
        until = records[-1].update_timestamp.timestamp() if records else state.written_until
        return dg.SensorResult(
            skip_reason=f"no sync run finished since the last tick ({len(records)} other runs)",
            cursor=StatusCursor(written_until=until).dump(),
        )
    until = records[-1].update_timestamp.timestamp()
    batch = hashlib.sha256(f"{','.join(run_ids)}#{state.failures}".encode()).hexdigest()[:16]
    context.log.info(f"{len(run_ids)} sync runs finished; writing their status")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"sync-status:{batch}",
                run_config={
                    "ops": {"write_cloud_account_status": {"config": {"run_ids": run_ids}}}
                },
                tags={"pulse/sync-runs": str(len(run_ids)), STATUS_BATCH_TAG: batch},
            )
        ],
        cursor=StatusCursor(state.written_until, batch, until, state.failures).dump(),
    )


@dg.sensor(
    job=report_cost_freshness,
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every 10 minutes, finds the connected accounts whose last successful sync "
        "(CloudAccount.lastSyncedAt) turned older than PULSE_COST_FRESHNESS_HOURS (default 30) "
        "since the last tick, or recovered, and launches report_cost_freshness for them: the "
        "synced_recently check of their daily_costs_eur partition fails or passes. Nothing is "
        "launched while no account changes; the cursor lists the accounts reported stale."
    ),
)
def cost_freshness(
    context: dg.SensorEvaluationContext, pulse_db: PulseDatabase, settings: CostSettings
) -> dg.SensorResult:
    with pulse_db.begin() as conn:
        accounts = queries.aws_cost_explorer_accounts(conn)
    partitions = set(context.instance.get_dynamic_partitions(CLOUD_ACCOUNTS))
    reported_stale = set(json.loads(context.cursor)) if context.cursor else set()
    now = datetime.now(UTC).replace(tzinfo=None)
    limit = settings.freshness_hours
    stale, changed = set(), []
    for account in accounts:
        if account.status not in queries.SYNCABLE_STATUSES or account.id not in partitions:
            continue
        fresh = freshness(account, now, limit).fresh
        if not fresh:
            stale.add(account.id)
        if fresh == (account.id in reported_stale):  # turned stale, or recovered
            changed.append(account.id)
    summary = (
        f"{len(stale)} accounts not synced within {limit} hours; "
        f"{len(stale - reported_stale)} turned stale, {len(reported_stale - stale)} recovered"
    )
    cursor = json.dumps(sorted(stale))
    if not changed:
        return dg.SensorResult(skip_reason=summary, cursor=cursor)
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_config={"ops": {FRESHNESS_OP: {"config": {"account_ids": changed}}}},
                tags={"pulse/accounts": str(len(changed))},
            )
        ],
        cursor=cursor,
    )


@dg.sensor(
    jobs=[sync_aws_costs, test_aws_connection],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        'Serves the PULSE app\'s SyncRequest rows ("Sync now", "Test connection"), oldest '
        "first, each row judged alone: a row PULSE cannot read (a date or timestamp out of "
        "range or of the wrong type, a kind or status it never writes, an id too long for a "
        "run tag or with control characters, 'running' without startedAt) ends rejected with "
        "one sentence naming the field, and the others are served. Checks each request before "
        "any AWS call (rejected: unknown or disconnected account, another organisation's, "
        "invalid window), applies the rate limits (one sync per organisation per "
        "PULSE_MANUAL_SYNC_INTERVAL_MINUTES, one test per account per minute) and at most 20 "
        "launches per tick, launches sync_aws_costs for the account(s), or test_aws_connection, "
        "tagged pulse/trigger=manual, pulse/request=<id> and pulse/request-key=<identity>, and "
        "writes each request's final status, result or error once its runs end (killed and "
        "canceled runs included). A request whose run never appeared within 5 minutes passes "
        "the same checks and limits again and is launched once more at most; then it fails."
    ),
)
def sync_requests(
    context: dg.SensorEvaluationContext,
    pulse_db: PulseDatabase,
    request_limits: ManualRequestLimits,
) -> dg.SensorResult:
    relaunched = _relaunched(context.cursor)
    with pulse_db.begin() as conn:
        served = serve(
            conn, context.instance, request_limits, datetime.now(UTC), context.log, relaunched
        )
    cursor = json.dumps({"relaunched": sorted(served.relaunched)})
    if not served.notes:
        return dg.SensorResult(skip_reason="no SyncRequest to launch or complete", cursor=cursor)
    added = cloud_accounts_partitions.build_add_request(served.new_partitions)
    return dg.SensorResult(
        run_requests=served.run_requests,
        dynamic_partitions_requests=[added] if served.new_partitions else [],
        cursor=cursor,
    )


def _relaunched(cursor: str | None) -> frozenset[str]:
    """The running requests already launched a second time (the sync_requests cursor)."""
    if not cursor:
        return frozenset()
    try:
        keys = json.loads(cursor).get("relaunched", [])
    except (ValueError, AttributeError):
        return frozenset()
    return frozenset(key for key in keys if isinstance(key, str))
