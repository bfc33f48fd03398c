"""Sensors: new PULSE accounts become partitions and get a first sync; finished syncs get their status written."""

import hashlib
import json
from datetime import UTC, datetime

import dagster as dg

from pulse_pipeline.db import queries
from pulse_pipeline.jobs import refresh_ecb_rates, sync_aws_costs, write_sync_status_job
from pulse_pipeline.keys import ECB_RATES, SYNC_ASSETS
from pulse_pipeline.partitions import (
    CLOUD_ACCOUNTS,
    PARTITION_TAG,
    RANGE_START_TAG,
    balanced_batches,
    batch_run_request,
    cloud_accounts_partitions,
    cost_explorer_lanes,
    refuse_unpartitionable,
)
from pulse_pipeline.resources import PulseDatabase

# Finished runs read per status-sensor tick; the cursor carries on from the last one.
STATUS_BATCH = 500
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
        "longer synced; their partitions and CostRecords stay as history. An account whose id "
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
        return dg.SkipReason(
            f"no new account: {len(syncable)} connected AWS Cost Explorer accounts in PULSE, "
            f"{len(partitions)} partitions{refused_note}{kept}{', '.join(gone[:20])}"
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
        dynamic_partitions_requests=[cloud_accounts_partitions.build_add_request(new)],
        # New partitions are appended in this order, so consecutive ones form a range; they
        # are shared out over the cost_explorer lanes like the schedule's.
        run_requests=[
            batch_run_request(batch, "initial-sync", {"pulse/trigger": "new-account"}, job)
            for batch in balanced_batches([*ordered, *new], set(new), lanes)
        ],
        cursor=json.dumps(sorted(handled | partitions | set(new))),
    )


def _is_sync_run(run: dg.DagsterRun) -> bool:
    """A run that synced accounts, whatever launched it (job, asset page, backfill, CLI)."""
    if PARTITION_TAG not in run.tags and RANGE_START_TAG not in run.tags:
        return False
    if run.job_name == sync_aws_costs.name:
        return True
    return bool(run.asset_selection and SYNC_ASSETS & run.asset_selection)


@dg.sensor(
    job=write_sync_status_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches write_sync_status for every sync run that finished since the last tick, "
        "however it was launched (schedule, sensor, UI, backfill, CLI) and however it ended "
        "(success, failure, cancellation, a killed process): many finished runs become one "
        "status run."
    ),
)
def sync_status_writer(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    runs_filter = dg.RunsFilter(statuses=FINISHED)
    if context.cursor:
        runs_filter = dg.RunsFilter(
            statuses=FINISHED, updated_after=datetime.fromtimestamp(float(context.cursor), UTC)
        )
    records = context.instance.get_run_records(
        runs_filter, limit=STATUS_BATCH, order_by="update_timestamp", ascending=True
    )
    cursor = str(records[-1].update_timestamp.timestamp()) if records else context.cursor
    run_ids = [record.dagster_run.run_id for record in records if _is_sync_run(record.dagster_run)]
    if not run_ids:
        return dg.SensorResult(
            skip_reason=f"no sync run finished since the last tick ({len(records)} other runs)",
            cursor=cursor,
        )
    digest = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:16]
    context.log.info(f"{len(run_ids)} sync runs finished; writing their status")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"sync-status:{digest}",
                run_config={
                    "ops": {"write_cloud_account_status": {"config": {"run_ids": run_ids}}}
                },
                tags={"pulse/sync-runs": str(len(run_ids))},
            )
        ],
        cursor=cursor,
    )
