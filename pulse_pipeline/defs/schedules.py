"""The daily ECB rate refresh at 04:30 UTC and the re-sync of every connected AWS account at 05:00 UTC."""

import dagster as dg

from pulse_pipeline.db import queries
from pulse_pipeline.defs.jobs import refresh_ecb_rates, sync_aws_costs
from pulse_pipeline.defs.partitions import (
    CLOUD_ACCOUNTS,
    balanced_batches,
    batch_run_request,
    cost_explorer_lanes,
    refuse_unpartitionable,
)
from pulse_pipeline.defs.resources import PulseDatabase


@dg.schedule(
    job=sync_aws_costs,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every day at 05:00 UTC, syncs every AWS account whose PULSE status is pending, active "
        "or error, over the default window (the days Cost Explorer may still revise), in one run "
        "per cost_explorer lane (the pool's limit), of equal size, so every lane is busy from "
        "the start and they finish together (at most 500 accounts per run; each account still "
        "succeeds or fails on its own). An account whose id cannot be a partition key is skipped and marked error with "
        "the reason. The run key names the day and the accounts, so a tick evaluated twice launches "
        "nothing twice."
    ),
)
def daily_aws_cost_sync(
    context: dg.ScheduleEvaluationContext, pulse_db: PulseDatabase
) -> list[dg.RunRequest] | dg.SkipReason:
    with pulse_db.begin() as conn:
        accounts = queries.aws_cost_explorer_accounts(conn)
        syncable = [a for a in accounts if a.status in queries.SYNCABLE_STATUSES]
        refused = refuse_unpartitionable(conn, syncable, context.log)
    partitions = context.instance.get_dynamic_partitions(CLOUD_ACCOUNTS)
    due = {a.id for a in syncable if a.id not in refused} & set(partitions)
    if not due:
        waiting = len(syncable) - len(refused) - len(due)
        return dg.SkipReason(
            f"no connected AWS account to sync ({len(accounts)} AWS accounts in PULSE, "
            f"{waiting} waiting for the new_cloud_accounts sensor to add them, "
            f"{len(refused)} whose id cannot be a partition key)"
        )
    day = context.scheduled_execution_time.date().isoformat()
    return [
        batch_run_request(batch, f"daily:{day}", {"pulse/trigger": "daily"})
        for batch in balanced_batches(partitions, due, cost_explorer_lanes(context.instance))
    ]


daily_ecb_rates = dg.ScheduleDefinition(
    name="daily_ecb_rates",
    job=refresh_ecb_rates,
    cron_schedule="30 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every day at 04:30 UTC, before the cost sync, refresh the ECB reference rates "
        "(published around 16:00 CET on TARGET business days)."
    ),
)
