"""Every statement pulse_pipeline runs against PULSE's database (SQLAlchemy Core, bound parameters).

Longer than 400 lines because every statement against PULSE's tables sits here, grouped by
table (accounts, raw pages, cost records, rates, sync requests): the one place where bound
parameters, row locks and the two dialects' differences are reviewed together.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.aws.cost_explorer import Page
from pulse_pipeline.aws.pages import charge_category
from pulse_pipeline.costs import CostLine, EurCost, StoredPage
from pulse_pipeline.db.schema import (
    cloud_account,
    cost_explorer_page,
    cost_record,
    fx_rate,
    sync_request,
)
from pulse_pipeline.fx import EcbRate
from pulse_pipeline.reconcile import WrittenRow
from pulse_pipeline.sync_window import StoredDays, SyncWindow

AWS_PROVIDER = "AWS"
COST_EXPLORER_CONNECTION = "COST_EXPLORER"
# Accounts in these states are synced (the PULSE app's own rule); others are disconnected.
SYNCABLE_STATUSES = frozenset({"pending", "active", "error"})


def load_account(conn: Connection, account_id: str, *, lock: bool = False) -> CloudAccount | None:
    """One CloudAccount, or None if PULSE has no such row. `lock` holds it until commit (PostgreSQL)."""
    query = select(cloud_account).where(cloud_account.c.id == account_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return CloudAccount.from_row(row) if row else None


def aws_cost_explorer_accounts(conn: Connection) -> list[CloudAccount]:
    """All AWS accounts connected through Cost Explorer, oldest first."""
    rows = conn.execute(
        select(cloud_account)
        .where(
            cloud_account.c.provider == AWS_PROVIDER,
            cloud_account.c.connectionType == COST_EXPLORER_CONNECTION,
        )
        .order_by(cloud_account.c.createdAt, cloud_account.c.id)
    ).mappings()
    return [CloudAccount.from_row(row) for row in rows]


def stored_days(conn: Connection, account_id: str) -> StoredDays:
    """The account's oldest stored day still marked Estimated, and its newest stored day."""
    c = cost_record.c
    row = conn.execute(
        select(func.min(case((c.estimated.is_(True), c.date))), func.max(c.date)).where(
            c.cloudAccountId == account_id
        )
    ).one()
    return StoredDays(estimated_since=row[0], last_day=row[1])


def insert_pages(
    conn: Connection,
    account: CloudAccount,
    aws_account_id: str,
    run_id: str,
    window: SyncWindow,
    pages: Sequence[Page],
    fetched_at: datetime,
) -> list[StoredPage]:
    """Store every page of one fetch; a re-executed run replaces its own earlier pages."""
    conn.execute(
        delete(cost_explorer_page).where(
            cost_explorer_page.c.run_id == run_id,
            cost_explorer_page.c.cloud_account_id == account.id,
        )
    )
    stored = conn.execute(
        insert(cost_explorer_page).returning(cost_explorer_page.c.id, sort_by_parameter_order=True),
        [
            {
                "cloud_account_id": account.id,
                "aws_account_id": aws_account_id,
                "run_id": run_id,
                "window_start": window.start,
                "window_end": window.end,
                "page_number": page.number,
                "request": page.request,
                "response": page.response,
                "fetched_at": fetched_at,
            }
            for page in pages
        ],
    ).scalars()
    return [
        StoredPage(page_id, page.request, page.response, aws_account_id)
        for page_id, page in zip(stored, pages, strict=True)
    ]


def latest_fetch(
    conn: Connection, account_id: str, run_id: str | None = None
) -> tuple[SyncWindow, list[StoredPage]] | None:
    """The pages of one fetch for an account: this run's if given and present, else the newest."""
    pages = cost_explorer_page.c
    chosen_run = run_id
    if run_id is not None:
        found = conn.execute(
            select(pages.id)
            .where(pages.cloud_account_id == account_id, pages.run_id == run_id)
            .limit(1)
        ).first()
        chosen_run = run_id if found else None
    if chosen_run is None:
        chosen_run = conn.execute(
            select(pages.run_id)
            .where(pages.cloud_account_id == account_id)
            .order_by(pages.fetched_at.desc(), pages.id.desc())
            .limit(1)
        ).scalar()
    if chosen_run is None:
        return None
    rows = conn.execute(
        select(
            pages.id,
            pages.window_start,
            pages.window_end,
            pages.request,
            pages.response,
            pages.aws_account_id,
        )
        .where(pages.cloud_account_id == account_id, pages.run_id == chosen_run)
        .order_by(pages.page_number)
    ).all()
    window = SyncWindow(rows[0].window_start, rows[0].window_end)
    return window, [
        StoredPage(row.id, row.request, row.response, row.aws_account_id) for row in rows
    ]


@dataclass(frozen=True)
class ReplaceSummary:
    """What a replacement changed compared with the rows it replaced."""

    written: int
    added: int
    removed: int
    changed: int


def _row_key(row: Any) -> tuple[Any, ...]:
    return (row["date"], row["linkedAccountId"], row["service"], row["recordType"])


_COMPARED = (
    "amount",
    "currency",
    "amountEUR",
    "metric",
    "estimated",
    "billedCost",
    "effectiveCost",
    "contractedCost",
)


def _row_value(row: Any) -> tuple[Any, ...]:
    return tuple(row[name] for name in _COMPARED)


def replace_cost_records(
    conn: Connection, account: CloudAccount, window: SyncWindow, costs: Iterable[EurCost]
) -> ReplaceSummary:
    """Replace the account's CostRecords inside the window (call within one transaction)."""
    c = cost_record.c
    in_window = (
        c.cloudAccountId == account.id,
        c.date >= window.start,
        c.date <= window.end,
    )
    before = {
        _row_key(row): _row_value(row)
        for row in conn.execute(
            select(
                c.date, c.linkedAccountId, c.service, c.recordType, *(c[n] for n in _COMPARED)
            ).where(*in_window)
        ).mappings()
    }
    conn.execute(delete(cost_record).where(*in_window))
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4().hex,
            "orgId": account.org_id,
            "cloudAccountId": account.id,
            "date": cost.line.day,
            "provider": AWS_PROVIDER,
            "service": cost.line.service,
            "recordType": cost.line.record_type,
            "chargeCategory": charge_category(cost.line.record_type),
            "metric": cost.line.metric,
            "amount": cost.line.amount,
            "currency": cost.line.currency,
            "fxRate": cost.fx_rate,
            "fxRateDate": cost.fx_rate_date,
            "fxProvisional": cost.fx_provisional,
            "amountEUR": cost.amount_eur,
            "estimated": cost.line.estimated,
            "rawPageId": cost.line.page_id,
            "billedCost": cost.line.billed,
            "effectiveCost": cost.line.effective,
            "contractedCost": cost.line.contracted,
            "linkedAccountId": cost.line.linked_account,
            "linkedAccountName": cost.line.linked_account_name,
        }
        for cost in costs
    ]
    if rows:
        _insert_rows(conn, rows)
    after = {_row_key(row): _row_value(row) for row in rows}
    return ReplaceSummary(
        written=len(rows),
        added=len(after.keys() - before.keys()),
        removed=len(before.keys() - after.keys()),
        changed=sum(1 for key in after.keys() & before.keys() if after[key] != before[key]),
    )


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert CostRecords in the current transaction: PostgreSQL's COPY, else one executemany."""
    if conn.dialect.name != "postgresql":
        conn.execute(insert(cost_record), rows)
        return
    columns = list(rows[0])  # names from the schema, never from input
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(column) for column in columns)
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f'COPY "CostRecord" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])


def written_rows(conn: Connection, account_id: str, window: SyncWindow) -> list[WrittenRow]:
    """The account's CostRecords inside the window, as stored."""
    c = cost_record.c
    rows = conn.execute(
        select(
            c.date,
            c.service,
            c.recordType,
            c.amount,
            c.currency,
            c.fxRate,
            c.fxRateDate,
            c.amountEUR,
            c.linkedAccountId,
        ).where(c.cloudAccountId == account_id, c.date >= window.start, c.date <= window.end)
    ).all()
    return [WrittenRow(*row) for row in rows]


def cost_record_counts(conn: Connection, account_id: str) -> tuple[int, int]:
    """How many CostRecord rows the account has in all, and the whole table."""
    c = cost_record.c
    account = conn.execute(select(func.count()).where(c.cloudAccountId == account_id)).scalar()
    table = conn.execute(select(func.count()).select_from(cost_record)).scalar()
    return int(account or 0), int(table or 0)


def load_rates(conn: Connection, currencies: Iterable[str], since: date) -> list[EcbRate]:
    """Stored ECB rates of the given currencies from `since` on, plus each currency's last rate
    before it (the one a day at the start of the window may fall back to)."""
    rates = fx_rate.c
    loaded: list[EcbRate] = []
    for currency in sorted(set(currencies) - {"EUR"}):
        floor = conn.execute(
            select(func.max(rates.rate_date)).where(
                rates.currency == currency, rates.rate_date <= since
            )
        ).scalar()
        rows = conn.execute(
            select(rates.currency, rates.rate_date, rates.rate).where(
                rates.currency == currency, rates.rate_date >= (floor or since)
            )
        ).all()
        loaded += [EcbRate(row.currency, row.rate_date, row.rate) for row in rows]
    return loaded


def stored_currencies(conn: Connection) -> frozenset[str]:
    """Currencies with at least one stored ECB rate, plus EUR."""
    return frozenset(conn.execute(select(fx_rate.c.currency).distinct()).scalars()) | {"EUR"}


def upsert_rates(conn: Connection, rates: Sequence[EcbRate], source: str) -> int:
    """Store ECB rates, replacing any stored for the same currencies between their first and
    last day (newer stored rates stay: an older source, such as the bundled copy, removes none)."""
    if not rates:
        return 0
    start = min(rate.rate_date for rate in rates)
    end = max(rate.rate_date for rate in rates)
    currencies = sorted({rate.currency for rate in rates})
    conn.execute(
        delete(fx_rate).where(
            fx_rate.c.rate_date >= start,
            fx_rate.c.rate_date <= end,
            fx_rate.c.currency.in_(currencies),
        )
    )
    conn.execute(
        insert(fx_rate),
        [
            {"currency": r.currency, "rate_date": r.rate_date, "rate": r.rate, "source": source}
            for r in rates
        ],
    )
    return len(rates)


def newest_rate_date(conn: Connection, on_or_before: date | None = None) -> date | None:
    """The newest day any ECB rate is stored for (none after `on_or_before`, if given)."""
    query = select(func.max(fx_rate.c.rate_date))
    if on_or_before is not None:
        query = query.where(fx_rate.c.rate_date <= on_or_before)
    return conn.execute(query).scalar()


def delete_rates_after(conn: Connection, day: date) -> int:
    """Remove stored ECB rates dated after `day` (no ECB rate can be); how many there were."""
    return conn.execute(delete(fx_rate).where(fx_rate.c.rate_date > day)).rowcount


def accounts_with_provisional_rows(conn: Connection) -> list[str | None]:
    """The accounts (None: rows without one) with CostRecords converted at a provisional rate."""
    c = cost_record.c
    found = conn.execute(
        select(c.cloudAccountId).where(c.fxProvisional.is_(True)).distinct()
    ).scalars()
    return sorted(found, key=lambda account_id: account_id or "")


@dataclass(frozen=True)
class ProvisionalRow:
    """A stored CostRecord converted at a provisional rate: its line, and that rate."""

    id: str
    line: CostLine
    fx_rate: Decimal | None
    fx_rate_date: date | None


def provisional_rows(conn: Connection, account_id: str | None) -> list[ProvisionalRow]:
    """The account's CostRecords still marked fxProvisional."""
    c = cost_record.c
    account = c.cloudAccountId.is_(None) if account_id is None else c.cloudAccountId == account_id
    rows = conn.execute(
        select(
            c.id,
            c.date,
            c.service,
            c.recordType,
            c.amount,
            c.currency,
            c.estimated,
            c.metric,
            c.rawPageId,
            c.fxRate,
            c.fxRateDate,
        ).where(account, c.fxProvisional.is_(True))
    ).all()
    return [
        ProvisionalRow(
            row.id,
            CostLine(
                day=row.date,
                service=row.service,
                record_type=row.recordType,
                amount=row.amount,
                currency=row.currency,
                estimated=bool(row.estimated),
                metric=row.metric or "",
                page_id=row.rawPageId or 0,
            ),
            row.fxRate,
            row.fxRateDate,
        )
        for row in rows
    ]


def update_conversions(conn: Connection, converted: Sequence[tuple[str, EurCost]]) -> int:
    """Give CostRecords (by id) their new rate, rate day, provisional flag and EUR amount."""
    if not converted:
        return 0
    c = cost_record.c
    conn.execute(
        update(cost_record)
        .where(c.id == bindparam("row_id"))
        .values(
            fxRate=bindparam("new_rate"),
            fxRateDate=bindparam("new_rate_date"),
            fxProvisional=bindparam("new_provisional"),
            amountEUR=bindparam("new_amount_eur"),
        ),
        [
            {
                "row_id": row_id,
                "new_rate": cost.fx_rate,
                "new_rate_date": cost.fx_rate_date,
                "new_provisional": cost.fx_provisional,
                "new_amount_eur": cost.amount_eur,
            }
            for row_id, cost in converted
        ],
    )
    return len(converted)


def record_sync_result(
    conn: Connection, account_id: str, error: str | None, finished_at: datetime | None = None
) -> bool:
    """Write a sync's outcome to CloudAccount: `active` and the time, or `error` and why.

    Accounts disconnected meanwhile (a status outside SYNCABLE_STATUSES) are left as they are.
    """
    finished = (finished_at or datetime.now(UTC)).replace(tzinfo=None)
    values: dict[str, Any] = (
        {"status": "error", "lastSyncError": error}
        if error
        else {"status": "active", "lastSyncedAt": finished, "lastSyncError": None}
    )
    result = conn.execute(
        update(cloud_account)
        .where(cloud_account.c.id == account_id, cloud_account.c.status.in_(SYNCABLE_STATUSES))
        .values(**values)
    )
    return result.rowcount > 0


# The SyncRequest columns the pipeline reads, each cast to text: a value PostgreSQL holds but
# Python cannot ('infinity', a year 20260, a BC date), or any text or number SQLite holds in a
# date column, would fail a typed read of every row; request_rows parses them row by row.
SYNC_REQUEST_COLUMNS = (
    "id",
    "orgId",
    "cloudAccountId",
    "kind",
    "startDate",
    "endDate",
    "status",
    "requestedAt",
    "startedAt",
    "runId",
)


def sync_request_texts(
    conn: Connection,
    *,
    statuses: Sequence[str] = (),
    other_than: Sequence[str] = (),
    request_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, str | None]]:
    """SyncRequest rows as text, oldest first: those in `statuses`, those in none of
    `other_than`, or the one with `request_id`."""
    r = sync_request.c
    query = select(*(cast(r[name], Text).label(name) for name in SYNC_REQUEST_COLUMNS))
    if statuses:
        query = query.where(r.status.in_(statuses))
    if other_than:
        query = query.where(r.status.not_in(other_than))
    if request_id is not None:
        query = query.where(r.id == request_id)
    query = query.order_by(r.requestedAt, r.id)
    if limit is not None:
        query = query.limit(limit)
    return [dict(row) for row in conn.execute(query).mappings()]


def launch_times(
    conn: Connection,
    kind: str,
    statuses: Sequence[str],
    since: datetime,
    *,
    org_id: str,
    cloud_account_id: str | None = None,
    other_than_id: str | None = None,
) -> list[str]:
    """startedAt, as text, of the organisation's (or the account's) requests of `kind` in
    `statuses` launched at or after `since`, leaving out the request `other_than_id`."""
    r = sync_request.c
    query = select(cast(r.startedAt, Text)).where(
        r.kind == kind, r.orgId == org_id, r.status.in_(statuses), r.startedAt >= since
    )
    if cloud_account_id is not None:
        query = query.where(r.cloudAccountId == cloud_account_id)
    if other_than_id is not None:
        query = query.where(r.id != other_than_id)
    return [text for text in conn.execute(query).scalars() if text is not None]


def update_sync_request(
    conn: Connection, request_id: str, requested_at: str, from_status: str, **values: Any
) -> bool:
    """Move a request on from `from_status`; False if it was no longer in that status.

    `requested_at` is the row's requestedAt as sync_request_texts read it: a row deleted and
    inserted again with the same id meanwhile is another request, and is left alone.
    """
    r = sync_request.c
    result = conn.execute(
        update(sync_request)
        .where(
            r.id == request_id,
            cast(r.requestedAt, Text) == requested_at,
            r.status == from_status,
        )
        .values(**values)
    )
    return result.rowcount > 0


def fetch_windows(conn: Connection, run_id: str) -> dict[str, SyncWindow]:
    """The window each account of a run fetched, from its stored raw pages."""
    pages = cost_explorer_page.c
    rows = conn.execute(
        select(pages.cloud_account_id, pages.window_start, pages.window_end)
        .where(pages.run_id == run_id)
        .distinct()
    ).all()
    return {row.cloud_account_id: SyncWindow(row.window_start, row.window_end) for row in rows}


@dataclass(frozen=True)
class AccountTotals:
    """An account's CostRecords inside a window, summed up."""

    account_id: str
    records: int
    total_eur: Decimal
    services: tuple[str, ...]


def account_totals(conn: Connection, account_id: str, window: SyncWindow) -> AccountTotals:
    """The account's CostRecords inside the window: how many, their EUR total, their services."""
    c = cost_record.c
    rows = conn.execute(
        select(c.service, c.amountEUR).where(
            c.cloudAccountId == account_id, c.date >= window.start, c.date <= window.end
        )
    ).all()
    return AccountTotals(
        account_id=account_id,
        records=len(rows),
        total_eur=sum((row.amountEUR for row in rows), Decimal(0)),
        services=tuple(sorted({row.service for row in rows})),
    )


def connections_holding(
    conn: Connection, org_id: str, linked_account_id: str, other_than: str
) -> list[str]:
    """The organisation's other CloudAccounts holding CostRecords of that linked AWS account."""
    c = cost_record.c
    found = conn.execute(
        select(c.cloudAccountId)
        .where(
            c.orgId == org_id,
            c.linkedAccountId == linked_account_id,
            c.cloudAccountId != other_than,
        )
        .distinct()
    ).scalars()
    return sorted(account_id for account_id in found if account_id is not None)


def lock_organisation(conn: Connection, org_id: str) -> None:
    """Hold the organisation's CloudAccount rows until commit (PostgreSQL), so that two writes
    of one organisation (a payer's and a member's) never interleave."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(cloud_account.c.id)
            .where(cloud_account.c.orgId == org_id)
            .order_by(cloud_account.c.id)
            .with_for_update()
        ).all()


def remove_linked_rows_of_others(
    conn: Connection,
    account: CloudAccount,
    window: SyncWindow,
    linked_account_ids: Iterable[str],
) -> int:
    """Delete, inside the window, the organisation's other CloudAccounts' CostRecords of these
    linked AWS accounts (now held by `account`); return how many."""
    c = cost_record.c
    linked = sorted(set(linked_account_ids))
    if not linked:
        return 0
    result = conn.execute(
        delete(cost_record).where(
            c.orgId == account.org_id,
            c.cloudAccountId != account.id,
            c.linkedAccountId.in_(linked),
            c.date >= window.start,
            c.date <= window.end,
        )
    )
    return int(result.rowcount or 0)
