"""The read-only views pulse_pipeline keeps over CostRecord: monthly totals and FOCUS 1.2 rows.

Created by `pulse-pipeline db upgrade` (migration 0004) and described here once, for the
migration, the assets that report on them and docs/pulse-app.md. Each view has one SQL text per
dialect (PostgreSQL for PULSE, SQLite for the demo and tests): month arithmetic and boolean
aggregates differ, everything else is the same. Amounts stay NUMERIC: no float anywhere.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pulse_pipeline.aws import focus


@dataclass(frozen=True)
class View:
    """A view: its name, what it is, its columns (name, type, meaning) and its SQL per dialect."""

    name: str
    description: str
    columns: tuple[tuple[str, str, str], ...]
    postgresql: str
    sqlite: str

    def select_sql(self, dialect: str) -> str:
        return self.postgresql if dialect == "postgresql" else self.sqlite


MONTHLY_COSTS_VIEW = View(
    name="monthly_costs_eur",
    description=(
        "EUR totals per CloudAccount and calendar month, summed from CostRecord; the current "
        "month is month-to-date (through the last synced day)."
    ),
    columns=(
        ("orgId", "text", "PULSE organisation"),
        ("cloudAccountId", "text", "PULSE CloudAccount.id"),
        ("month", "date", "first day of the month"),
        ("amountEUR", "numeric", "sum of CostRecord.amountEUR"),
        ("rows", "integer", "CostRecord rows summed"),
        ("estimated", "boolean", "true if any day is still estimated by Cost Explorer"),
        ("fxProvisional", "boolean", "true if any row used a provisional ECB rate"),
    ),
    postgresql="""
SELECT c."orgId", c."cloudAccountId",
       CAST(date_trunc('month', c."date") AS date) AS "month",
       SUM(c."amountEUR") AS "amountEUR",
       CAST(COUNT(*) AS integer) AS "rows",
       COALESCE(bool_or(c."estimated"), false) AS "estimated",
       COALESCE(bool_or(c."fxProvisional"), false) AS "fxProvisional"
FROM "CostRecord" AS c
GROUP BY c."orgId", c."cloudAccountId", CAST(date_trunc('month', c."date") AS date)""",
    # SQLite has no exact decimal type: amounts are decimal text (see ExactDecimal), summed here
    # as integers of 10^-10 EUR and written back as decimal text. Exact while a row's amount
    # is below 400,000 EUR (a double holds 15 significant digits); PostgreSQL is always exact.
    sqlite="""
SELECT "orgId", "cloudAccountId", "month",
       CASE WHEN units < 0 THEN '-' ELSE '' END || (abs(units) / 10000000000) || '.'
           || printf('%010d', abs(units) % 10000000000) AS "amountEUR",
       "rows", "estimated", "fxProvisional"
FROM (
    SELECT c."orgId", c."cloudAccountId",
           date(c."date", 'start of month') AS "month",
           SUM(CAST(round(CAST(c."amountEUR" AS REAL) * 10000000000) AS INTEGER)) AS units,
           COUNT(*) AS "rows",
           COALESCE(MAX(c."estimated"), 0) AS "estimated",
           COALESCE(MAX(c."fxProvisional"), 0) AS "fxProvisional"
    FROM "CostRecord" AS c
    GROUP BY c."orgId", c."cloudAccountId", date(c."date", 'start of month')
)""",
)


def _lookup(column: str, mapping: Mapping[str, str], default: str, dialect: str) -> str:
    """SQL for `mapping[c.column]` (else `default`), its literals quoted by SQLAlchemy."""
    value = sa.table("c", sa.column(column, sa.Text)).c[column]
    expression = sa.cast(sa.case(dict(mapping), value=value, else_=sa.literal(default)), sa.Text)
    dialect_impl = postgresql.dialect() if dialect == "postgresql" else sqlite.dialect()
    return str(expression.compile(dialect=dialect_impl, compile_kwargs={"literal_binds": True}))


def _focus_lookups(dialect: str) -> dict[str, str]:
    """The ServiceCategory, ServiceSubcategory and ChargeFrequency expressions (aws/focus.py)."""
    categories = {service: pair[0] for service, pair in focus.SERVICE_CATEGORIES.items()}
    subcategories = {service: pair[1] for service, pair in focus.SERVICE_CATEGORIES.items()}
    return {
        "category": _lookup("service", categories, focus.OTHER[0], dialect),
        "subcategory": _lookup("service", subcategories, focus.OTHER[1], dialect),
        "frequency": _lookup(
            "recordType", focus.CHARGE_FREQUENCIES, focus.DEFAULT_CHARGE_FREQUENCY, dialect
        ),
    }


# FOCUS 1.2 (https://focus.finops.org): every Mandatory column, the Recommended ChargeFrequency
# and ServiceSubcategory, and the Conditional SubAccountId/SubAccountName, as far as Cost
# Explorer's grouped daily data allows; docs/pulse-app.md lists how each is derived, and
# test_focus_conformance.py checks them against the specification's own column definitions.
# Columns whose figures are not read yet are NULL, never a made-up number.
_FOCUS_SELECT = """
SELECT COALESCE(c."billedCost", c."amount") AS "BilledCost",
       COALESCE(c."effectiveCost", c."amount") AS "EffectiveCost",
       CAST(NULL AS numeric) AS "ListCost",
       c."contractedCost" AS "ContractedCost",
       CAST(c."currency" AS text) AS "BillingCurrency",
       {charge_start} AS "ChargePeriodStart",
       {charge_end} AS "ChargePeriodEnd",
       c."chargeCategory" AS "ChargeCategory",
       CAST(NULL AS text) AS "ChargeClass",
       c."service" || COALESCE(' (' || c."recordType" || ')', '') || ', daily total'
           AS "ChargeDescription",
       {frequency} AS "ChargeFrequency",
       c."service" AS "ServiceName",
       {category} AS "ServiceCategory",
       {subcategory} AS "ServiceSubcategory",
       CAST(NULL AS numeric) AS "PricingQuantity",
       CAST(NULL AS text) AS "PricingUnit",
       'AWS' AS "ProviderName",
       'AWS' AS "PublisherName",
       'AWS' AS "InvoiceIssuerName",
       CAST(p."aws_account_id" AS text) AS "BillingAccountId",
       CAST(NULL AS text) AS "BillingAccountName",
       COALESCE(c."linkedAccountId", CAST(p."aws_account_id" AS text)) AS "SubAccountId",
       COALESCE(c."linkedAccountName", a."accountName") AS "SubAccountName",
       {billing_start} AS "BillingPeriodStart",
       {billing_end} AS "BillingPeriodEnd",
       c."amountEUR" AS "x_AmountEUR",
       c."fxRate" AS "x_FxRate",
       c."fxRateDate" AS "x_FxRateDate",
       c."fxProvisional" AS "x_FxProvisional",
       c."estimated" AS "x_Estimated",
       c."metric" AS "x_Metric",
       c."recordType" AS "x_RecordType",
       c."cloudAccountId" AS "x_CloudAccountId",
       c."orgId" AS "x_OrgId"
FROM "CostRecord" AS c
LEFT JOIN "CloudAccount" AS a ON a."id" = c."cloudAccountId"
LEFT JOIN "pipeline_cost_explorer_page" AS p ON p."id" = c."rawPageId"
WHERE c."provider" = 'AWS'"""

# FOCUS Date/Time values are moments in UTC: timestamptz on PostgreSQL (the day's midnight at
# UTC, whatever the session's time zone), ISO 8601 text ending in Z on SQLite.
_FOCUS_TIMES = {
    "postgresql": {
        "charge_start": "CAST(c.\"date\" AS timestamp) AT TIME ZONE 'UTC'",
        "charge_end": "CAST(c.\"date\" + 1 AS timestamp) AT TIME ZONE 'UTC'",
        "billing_start": "date_trunc('month', CAST(c.\"date\" AS timestamp)) AT TIME ZONE 'UTC'",
        "billing_end": (
            "(date_trunc('month', CAST(c.\"date\" AS timestamp)) + interval '1 month') "
            "AT TIME ZONE 'UTC'"
        ),
    },
    "sqlite": {
        "charge_start": "strftime('%Y-%m-%dT%H:%M:%SZ', c.\"date\")",
        "charge_end": "strftime('%Y-%m-%dT%H:%M:%SZ', c.\"date\", '+1 day')",
        "billing_start": "strftime('%Y-%m-%dT%H:%M:%SZ', c.\"date\", 'start of month')",
        "billing_end": ("strftime('%Y-%m-%dT%H:%M:%SZ', c.\"date\", 'start of month', '+1 month')"),
    },
}


def _focus_sql(dialect: str) -> str:
    return _FOCUS_SELECT.format(**_FOCUS_TIMES[dialect], **_focus_lookups(dialect))


FOCUS_COSTS_VIEW = View(
    name="focus_costs",
    description=(
        "CostRecord as a FOCUS 1.2 dataset: one charge per account, day, service and charge "
        "type, in the billing currency Cost Explorer reported, with x_ extensions for EUR."
    ),
    columns=(
        ("BilledCost", "numeric", "UnblendedCost (NetUnblendedCost when a Net metric is set)"),
        ("EffectiveCost", "numeric", "AmortizedCost (NetAmortizedCost when a Net metric is set)"),
        ("ListCost", "numeric", "NULL: Cost Explorer gives no list-price figure"),
        ("ContractedCost", "numeric", "UnblendedCost (aws/metrics.py)"),
        ("BillingCurrency", "text", "Cost Explorer's Unit, e.g. USD"),
        ("ChargePeriodStart", "timestamptz", "the day, 00:00 UTC"),
        ("ChargePeriodEnd", "timestamptz", "the next day, 00:00 UTC (exclusive)"),
        ("ChargeCategory", "text", "Usage, Purchase, Tax, Credit or Adjustment (RECORD_TYPE)"),
        ("ChargeClass", "text", "always null: Cost Explorer does not mark corrections"),
        ("ChargeDescription", "text", "service (record type), daily total"),
        ("ChargeFrequency", "text", "Usage-Based, Recurring or One-Time (RECORD_TYPE)"),
        ("ServiceName", "text", "Cost Explorer's SERVICE"),
        ("ServiceCategory", "text", "FOCUS category of the service (aws/focus.py)"),
        ("ServiceSubcategory", "text", "FOCUS subcategory of the service (aws/focus.py)"),
        ("PricingQuantity", "numeric", "NULL: daily service totals mix pricing units"),
        ("PricingUnit", "text", "NULL, as PricingQuantity"),
        ("ProviderName", "text", "AWS"),
        ("PublisherName", "text", "AWS (Marketplace publishers are not told apart yet)"),
        ("InvoiceIssuerName", "text", "AWS"),
        ("BillingAccountId", "text", "the AWS account whose Cost Explorer was read (the payer)"),
        ("BillingAccountName", "text", "NULL until the payer's name is read"),
        ("SubAccountId", "text", "the AWS account that incurred the cost (LINKED_ACCOUNT)"),
        ("SubAccountName", "text", "its AWS account name (else CloudAccount.accountName)"),
        ("BillingPeriodStart", "timestamptz", "first day of the charge's month, 00:00 UTC"),
        ("BillingPeriodEnd", "timestamptz", "first day of the next month (exclusive)"),
        ("x_AmountEUR", "numeric", "CostRecord.amountEUR"),
        ("x_FxRate", "numeric", "ECB rate used (1 EUR = x BillingCurrency)"),
        ("x_FxRateDate", "date", "the ECB business day of that rate"),
        ("x_FxProvisional", "boolean", "the rate is the last known one, not the day's"),
        ("x_Estimated", "boolean", "Cost Explorer still marks the day Estimated"),
        ("x_Metric", "text", "Cost Explorer metric, e.g. UnblendedCost"),
        ("x_RecordType", "text", "Cost Explorer's RECORD_TYPE"),
        ("x_CloudAccountId", "text", "PULSE CloudAccount.id"),
        ("x_OrgId", "text", "PULSE organisation"),
    ),
    postgresql=_focus_sql("postgresql"),
    sqlite=_focus_sql("sqlite"),
)

VIEWS = (MONTHLY_COSTS_VIEW, FOCUS_COSTS_VIEW)


def create_views(conn: sa.Connection) -> None:
    """(Re)create every view from its current definition; rows are never touched."""
    for view in reversed(VIEWS):
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{view.name}"'))
    for view in VIEWS:
        body = view.select_sql(conn.dialect.name)
        conn.execute(sa.text(f'CREATE VIEW "{view.name}" AS {body}'))


def view_summary(conn: sa.Connection, view: View) -> dict[str, Any]:
    """What a person checks first in a view: its rows, accounts and latest month."""
    if view is MONTHLY_COSTS_VIEW:
        latest: object
        rows, accounts, latest = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(sa.column("cloudAccountId"))),
                sa.func.max(sa.column("month")),
            ).select_from(sa.table(view.name))
        ).one()
        amounts: Iterable[Any] = conn.execute(
            sa.select(sa.column("amountEUR"))
            .select_from(sa.table(view.name))
            .where(sa.column("month") == latest)
        ).scalars()
        month_total = sum((Decimal(str(amount)) for amount in amounts), Decimal(0))
        return {
            "rows": rows,
            "accounts": accounts,
            "latest_month": latest and str(latest)[:10],
            "latest_month_eur": str(month_total),
        }
    first: object
    last: object
    rows, accounts, first, last = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(sa.distinct(sa.column("x_CloudAccountId"))),
            sa.func.min(sa.column("ChargePeriodStart")),
            sa.func.max(sa.column("ChargePeriodStart")),
        ).select_from(sa.table(view.name))
    ).one()
    return {
        "rows": rows,
        "accounts": accounts,
        "first_day": first and str(first)[:10],
        "last_day": last and str(last)[:10],
    }
