"""The jobs the data team launches: the per-account cost sync, the ECB refresh, the status write-back."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from pulse_pipeline import request_rows
from pulse_pipeline.aws.probe import probe_connection
from pulse_pipeline.db.urls import DatabaseUrlError
from pulse_pipeline.defs.checks import freshness_evaluation
from pulse_pipeline.defs.keys import DAILY_COSTS, ECB_RATES, RAW_PAGES
from pulse_pipeline.defs.resources import (
    AlertChannels,
    AwsCostExplorer,
    CostSettings,
    PulseDatabase,
)
from pulse_pipeline.defs.run_outcomes import outcomes_of
from pulse_pipeline.freshness import accounts_freshness
from pulse_pipeline.request_rows import shown
from pulse_pipeline.request_rules import finish_running
from pulse_pipeline.status_write_back import write_back
from pulse_pipeline.sync.failures import AccountFailure, failing_cleanly
from pulse_pipeline.sync_status import redact

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
    context: dg.OpExecutionContext,
    config: SyncStatusConfig,
    pulse_db: PulseDatabase,
    alerts: AlertChannels,
) -> dg.Output[int]:
    """Write `status`, `lastSyncedAt` and `lastSyncError` of each finished sync run's CloudAccount,
    then alert on every account whose sync started failing or works again.

    Success: `active`, the run's end time, no error. Failure, cancellation or a killed run:
    `error` and one secret-free sentence naming the cause; `lastSyncedAt` keeps the last success.
    Outcomes are written oldest first in one transaction, so the newest run of an account has
    the last word; writing the same runs again changes nothing. Alerts go out after the commit
    (see pulse_pipeline.alerts), each channel within its deadline and all of them within the
    alerting budget; a channel that fails is a warning, never a failure of this step.
    """
    outcomes = [o for run_id in config.run_ids for o in outcomes_of(context.instance, run_id)]
    try:
        done = write_back(pulse_db, outcomes, alerts.channel_settings(), context.log)
    except DatabaseUrlError as unreadable:  # no attempt can read it: fail without retries
        raise dg.Failure(description=str(unreadable), allow_retries=False) from None
    return dg.Output(
        done.accounts_updated,
        metadata={
            "accounts_updated": done.accounts_updated,
            "errors": done.errors,
            "runs_seen": len(config.run_ids),
            "alerts": done.alerts,
            "alerts_not_delivered": done.alerts_not_delivered,
        },
    )


@dg.job(
    name="write_sync_status",
    description="Write the outcome of finished sync runs to PULSE's CloudAccount rows.",
)
def write_sync_status_job() -> None:
    write_sync_status_op()


FRESHNESS_OP = "evaluate_synced_recently"


class FreshnessConfig(dg.Config):
    """The accounts whose synced_recently check to evaluate."""

    account_ids: list[str] = Field(description="CloudAccount ids (daily_costs_eur partitions).")


@dg.op(name=FRESHNESS_OP, out={})
def evaluate_synced_recently(
    context: dg.OpExecutionContext,
    config: FreshnessConfig,
    pulse_db: PulseDatabase,
    settings: CostSettings,
) -> Iterator[dg.AssetCheckEvaluation]:
    """The synced_recently check of each account's daily_costs_eur partition: fails when its
    last successful sync (CloudAccount.lastSyncedAt) is older than PULSE_COST_FRESHNESS_HOURS."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with pulse_db.begin() as conn:
        states = accounts_freshness(conn, config.account_ids, now, settings.freshness_hours)
    for account, state in states:
        context.log.info(
            f"{account.label}: "
            + ("synced recently" if state.fresh else "not synced within the limit")
        )
        yield freshness_evaluation(state, settings.freshness_hours)


@dg.job(
    name="report_cost_freshness",
    description=(
        "Evaluate the synced_recently check of daily_costs_eur for the accounts in config; "
        "launched by the cost_freshness sensor when an account turns stale or recovers."
    ),
)
def report_cost_freshness() -> None:
    evaluate_synced_recently()


class ConnectionTestConfig(dg.Config):
    """The PULSE app's connection test to serve."""

    request_id: str = Field(description="SyncRequest.id; the result is written to that row.")
    request_key: str = Field(
        description="The request's identity (pulse/request-key): a row inserted again with the "
        "same id is another request and gets no result from this run."
    )
    cloud_account_id: str = Field(description="The CloudAccount whose connection to test.")


def _finish_request(
    context: dg.OpExecutionContext,
    pulse_db: PulseDatabase,
    config: ConnectionTestConfig,
    status: str,
    **outcome: Any,
) -> None:
    """Write a connection test's final status and outcome to its (running) SyncRequest row."""
    with pulse_db.begin() as conn:
        written = finish_running(
            conn,
            config.request_id,
            config.request_key,
            status,
            datetime.now(UTC),
            runId=context.run_id,
            **outcome,
        )
    if not written:
        context.log.warning(
            f"SyncRequest {shown(config.request_id)} is no longer this running request (deleted, "
            "replaced or ended); its outcome is not written"
        )


@dg.op(name="test_connection")
def test_connection_op(
    context: dg.OpExecutionContext,
    config: ConnectionTestConfig,
    pulse_db: PulseDatabase,
    aws: AwsCostExplorer,
    settings: CostSettings,
) -> dg.Output[str]:
    """Assume the account's IAM role, then one GetCostAndUsage request for yesterday, first page
    only ($0.01); write the outcome to the SyncRequest row. No CostRecord is written and no
    CloudAccount field changes. A failed test fails the run with the customer-facing cause
    (trust policy or external ID, missing ce:GetCostAndUsage), never retried."""
    now = datetime.now(UTC)
    try:
        with failing_cleanly(config.cloud_account_id):
            result = probe_connection(
                pulse_db,
                aws.cost_explorer_client,
                config.cloud_account_id,
                settings.metric,
                now.date(),
            )
    except AccountFailure as failure:
        error = redact(failure.cause)
        _finish_request(context, pulse_db, config, request_rows.FAILED, error=error)
        raise dg.Failure(description=error, allow_retries=False) from None
    _finish_request(context, pulse_db, config, request_rows.SUCCEEDED, result=result)
    context.log.info(f"CloudAccount {config.cloud_account_id}: the connection works")
    return dg.Output(
        config.cloud_account_id,
        metadata={"aws_account_id": result["awsAccountId"], "cost_explorer_usd": 0.01},
    )


@dg.job(
    name="test_aws_connection",
    tags={"pulse/trigger": "manual"},
    description=(
        "The PULSE app's Test connection: assume a CloudAccount's role and make the smallest "
        "Cost Explorer call (one day, one page: $0.01). Launched by the sync_requests sensor; "
        "writes its outcome to the SyncRequest row only."
    ),
)
def test_aws_connection() -> None:
    test_connection_op()
