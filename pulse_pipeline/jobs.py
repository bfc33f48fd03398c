"""The jobs the data team launches: the per-account cost sync, the ECB refresh, the status write-back."""

import dagster as dg
from pydantic import Field

from pulse_pipeline.db import queries
from pulse_pipeline.db.urls import DatabaseUrlError
from pulse_pipeline.keys import DAILY_COSTS, ECB_RATES, RAW_PAGES
from pulse_pipeline.resources import PulseDatabase
from pulse_pipeline.sync_status import outcomes_of, redact

sync_aws_costs = dg.define_asset_job(
    name="sync_aws_costs",
    # The sync evaluates the reconciliation checks itself, per account, before each commit.
    selection=dg.AssetSelection.assets(RAW_PAGES, DAILY_COSTS).without_checks(),
    description=(
        "Sync one CloudAccount, or a partition range of them: fetch the Cost Explorer pages for "
        "the window in run config (ops.sync_cloud_accounts.config.start_date/end_date), then "
        "rewrite the EUR CostRecords."
    ),
)

refresh_ecb_rates = dg.define_asset_job(
    name="refresh_ecb_rates",
    selection=dg.AssetSelection.assets(ECB_RATES),
    description="Load the ECB euro reference rates that daily_costs_eur converts with.",
)


class SyncStatusConfig(dg.Config):
    """The sync runs whose outcome to write to PULSE."""

    run_ids: list[str] = Field(description="Run ids of finished sync runs, any order.")


@dg.op(
    name="write_cloud_account_status",
    retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL),
)
def write_sync_status_op(
    context: dg.OpExecutionContext, config: SyncStatusConfig, pulse_db: PulseDatabase
) -> dg.Output[int]:
    """Write `status`, `lastSyncedAt` and `lastSyncError` of each finished sync run's CloudAccount.

    Success: `active`, the run's end time, no error. Failure, cancellation or a killed run:
    `error` and one secret-free sentence naming the cause; `lastSyncedAt` keeps the last success.
    Outcomes are written oldest first, so the newest run of an account has the last word.
    """
    outcomes = [o for run_id in config.run_ids for o in outcomes_of(context.instance, run_id)]
    outcomes.sort(key=lambda outcome: outcome.finished_at)
    try:
        pulse_db.engine()
    except DatabaseUrlError as unreadable:  # no attempt can read it: fail without retries
        raise dg.Failure(description=str(unreadable), allow_retries=False) from None
    written = 0
    with pulse_db.begin() as conn:
        for outcome in outcomes:
            account = queries.load_account(conn, outcome.account_id)
            if account is None:
                context.log.warning(f"CloudAccount {outcome.account_id} is no longer in PULSE")
                continue
            error = redact(outcome.error, [account.external_id]) if outcome.error else None
            if queries.record_sync_result(conn, account.id, error, outcome.finished_at):
                written += 1
                # The cause already names the account.
                context.log.info(f"error: {error}" if error else f"{account.label}: active")
            else:
                context.log.info(f"{account.label} is {account.status} in PULSE; left as it is")
    return dg.Output(
        written,
        metadata={
            "accounts_updated": written,
            "errors": sum(1 for outcome in outcomes if outcome.error),
            "runs_seen": len(config.run_ids),
        },
    )


@dg.job(
    name="write_sync_status",
    description="Write the outcome of finished sync runs to PULSE's CloudAccount rows.",
)
def write_sync_status_job() -> None:
    write_sync_status_op()
