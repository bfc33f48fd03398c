"""daily_costs_eur for one account: convert its pages to EUR and replace its CostRecords."""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.aws.pages import charge_category, cost_lines
from pulse_pipeline.costs import CostLine, EurCost, to_eur
from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.fx import RateTable
from pulse_pipeline.reconcile import CheckOutcome, reconcile
from pulse_pipeline.sync.payers import refuse_covered_member, take_over_linked_accounts
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync.store import Fetched

TOP_SERVICES_SHOWN = 10
CENT = Decimal("0.01")


class Markdown(str):
    """A metadata value to show as Markdown."""


def write(
    run: SyncRun, account_id: str, fetched: Fetched | None
) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """Convert the pages just fetched (else the account's latest stored fetch) and replace the
    account's rows in the window, in one transaction that the reconciliation checks can roll
    back; return the materialization's metadata and the checks' outcomes."""
    with run.database.begin() as conn:
        account = queries.load_account(conn, account_id, lock=True)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
        queries.lock_organisation(conn, account.org_id)
        refuse_covered_member(conn, account)
        if fetched is not None:
            window, pages, all_lines = fetched.window, fetched.pages, fetched.lines
        else:
            fetch = queries.latest_fetch(conn, account_id, run.run_id)
            if fetch is None:
                raise SyncError(f"{account.label}: no Cost Explorer data stored yet; sync it first")
            window, pages = fetch
            all_lines = cost_lines(pages, window)
        lines = chosen_lines(all_lines, run.record_types)
        rates = RateTable(queries.load_rates(conn, {line.currency for line in lines}, window.start))
        costs = to_eur(lines, rates)
        summary = queries.replace_cost_records(conn, account, window, costs)
        linked = _linked_accounts(lines)
        taken_over = take_over_linked_accounts(conn, account, window, linked)
        account_rows, table_rows = queries.cost_record_counts(conn, account_id)
        outcomes = reconcile(
            queries.written_rows(conn, account_id, window), lines, all_lines, pages
        )
        failed = [outcome for outcome in outcomes if not outcome.passed]
        if failed:
            raise SyncError(
                f"{account.label}: reconciliation failed, nothing was written: "
                + "; ".join(f"{o.name} ({o.summary})" for o in failed)
            )
    by_service = _totals(costs, lambda cost: cost.line.service)
    by_category = _totals(costs, lambda cost: charge_category(cost.line.record_type) or "unknown")
    total_eur = sum(by_service.values(), Decimal(0))
    metadata: dict[str, Any] = {
        # The partition is the account: its rows in all, not only the window's.
        "dagster/row_count": account_rows,
        "rows_in_window": summary.written,
        "table_rows": table_rows,
        "rows_added": summary.added,
        "rows_removed": summary.removed,
        "rows_changed": summary.changed,
        "total_eur": float(total_eur.quantize(CENT)),
        "total_eur_exact": str(total_eur),
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "metric": pages[0].metric,
        "services": len(by_service),
        "record_types_skipped": len(all_lines) - len(lines),
        "eur_by_charge_category": ", ".join(
            f"{category} {amount.quantize(CENT)}"
            for category, amount in sorted(by_category.items())
        )
        or "none",
        "currencies": ", ".join(sorted({cost.line.currency for cost in costs})) or "none",
        "provisional_fx_rows": sum(1 for cost in costs if cost.fx_provisional),
        "estimated_days": len({cost.line.day for cost in costs if cost.line.estimated}),
        "top_services": Markdown(top_services_markdown(by_service)),
        "linked_accounts": len(linked),
        "linked_account_list": Markdown(linked_accounts_markdown(linked)),
        "rows_taken_over_from_member_connections": taken_over,
    }
    return metadata, outcomes


def _linked_accounts(lines: Sequence[CostLine]) -> dict[str, str]:
    """Each linked account of the lines, with its AWS name ('' when unknown)."""
    linked: dict[str, str] = {}
    for line in lines:
        if line.linked_account is not None:
            linked[line.linked_account] = line.linked_account_name or ""
    return dict(sorted(linked.items()))


def linked_accounts_markdown(linked: dict[str, str]) -> str:
    """The linked AWS accounts of a partition, as a Markdown table."""
    rows = ["| linked account | name |", "|---|---|"]
    escaped = {account_id: name.replace("|", "\\|") for account_id, name in linked.items()}
    rows += [f"| {account_id} | {name} |" for account_id, name in escaped.items()]
    return "\n".join(rows)


def chosen_lines(
    all_lines: Sequence[CostLine], record_types: frozenset[str] | None
) -> list[CostLine]:
    """The lines of the record types PULSE keeps (`PULSE_RECORD_TYPES`; None keeps all)."""
    return [
        line
        for line in all_lines
        if record_types is None or line.record_type is None or line.record_type in record_types
    ]


def verify(
    database: Database, account_id: str, record_types: frozenset[str] | None
) -> list[CheckOutcome]:
    """The reconciliation checks over the account's stored rows and its latest stored fetch,
    read-only: what a check run on its own reports, long after the write."""
    with database.begin() as conn:
        fetch = queries.latest_fetch(conn, account_id)
        if fetch is None:
            raise SyncError(f"CloudAccount {account_id}: no Cost Explorer data stored yet")
        window, pages = fetch
        all_lines = cost_lines(pages, window)
        written = queries.written_rows(conn, account_id, window)
    return reconcile(written, chosen_lines(all_lines, record_types), all_lines, pages)


def _totals(costs: Sequence[EurCost], key: Any) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for cost in costs:
        name = key(cost)
        totals[name] = totals.get(name, Decimal(0)) + cost.amount_eur
    return totals


def top_services_markdown(totals: dict[str, Decimal]) -> str:
    """The largest services by EUR total, as a Markdown table."""
    top = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:TOP_SERVICES_SHOWN]
    lines = ["| service | EUR |", "|---|---:|"]
    lines += [f"| {service} | {amount.quantize(CENT)} |" for service, amount in top]
    return "\n".join(lines)
