"""The read-only views pulse_pipeline keeps over CostRecord: monthly totals and FOCUS 1.2 rows.

Created by `pulse-pipeline db upgrade` (migration 0004) and described here once, for the
migration, the assets that report on them and the README. Each view has one SQL text per
dialect (PostgreSQL for PULSE, SQLite for the demo and tests): month arithmetic and boolean
aggregates differ, everything else is the same. Amounts stay NUMERIC: no float anywhere.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa


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

# FOCUS 1.2 (https://focus.finops.org) columns as far as Cost Explorer's grouped daily data
# allows; the README lists how each is derived and which FOCUS columns cannot be given.
FOCUS_COSTS_VIEW = View(
    name="focus_costs",
    description=(
        "CostRecord in FOCUS 1.2 column names: one charge per account, day, service and charge "
        "type, in the billing currency Cost Explorer reported, with x_ extensions for EUR."
    ),
    columns=(
        ("BilledCost", "numeric", "UnblendedCost (NetUnblendedCost when a Net metric is set)"),
        ("EffectiveCost", "numeric", "AmortizedCost (NetAmortizedCost when a Net metric is set)"),
        ("BillingCurrency", "text", "Cost Explorer's Unit, e.g. USD"),
        ("ChargePeriodStart", "timestamp", "the day, 00:00 UTC"),
        ("ChargePeriodEnd", "timestamp", "the next day, 00:00 UTC (exclusive)"),
        ("ChargeCategory", "text", "Usage, Purchase, Tax, Credit or Adjustment (RECORD_TYPE)"),
        ("ChargeClass", "text", "always null: Cost Explorer does not mark corrections"),
        ("ServiceName", "text", "Cost Explorer's SERVICE"),
        ("ProviderName", "text", "AWS"),
        ("PublisherName", "text", "AWS (Marketplace publishers are not told apart)"),
        ("InvoiceIssuerName", "text", "AWS (resellers are not known)"),
        ("SubAccountId", "text", "the AWS account that incurred the cost (LINKED_ACCOUNT)"),
        ("SubAccountName", "text", "its AWS account name (else CloudAccount.accountName)"),
        ("BillingAccountId", "text", "the AWS account whose Cost Explorer was read (the payer)"),
        ("BillingPeriodStart", "timestamp", "first day of the charge's month"),
        ("BillingPeriodEnd", "timestamp", "first day of the next month (exclusive)"),
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
    postgresql="""
SELECT COALESCE(c."billedCost", c."amount") AS "BilledCost",
       COALESCE(c."effectiveCost", c."amount") AS "EffectiveCost",
       CAST(c."currency" AS text) AS "BillingCurrency",
       CAST(c."date" AS timestamp) AS "ChargePeriodStart",
       CAST(c."date" + 1 AS timestamp) AS "ChargePeriodEnd",
       c."chargeCategory" AS "ChargeCategory",
       CAST(NULL AS text) AS "ChargeClass",
       c."service" AS "ServiceName",
       'AWS' AS "ProviderName",
       'AWS' AS "PublisherName",
       'AWS' AS "InvoiceIssuerName",
       COALESCE(c."linkedAccountId", CAST(p."aws_account_id" AS text)) AS "SubAccountId",
       COALESCE(c."linkedAccountName", a."accountName") AS "SubAccountName",
       CAST(p."aws_account_id" AS text) AS "BillingAccountId",
       date_trunc('month', CAST(c."date" AS timestamp)) AS "BillingPeriodStart",
       date_trunc('month', CAST(c."date" AS timestamp)) + interval '1 month' AS "BillingPeriodEnd",
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
WHERE c."provider" = 'AWS'""",
    sqlite="""
SELECT COALESCE(c."billedCost", c."amount") AS "BilledCost",
       COALESCE(c."effectiveCost", c."amount") AS "EffectiveCost",
       c."currency" AS "BillingCurrency",
       datetime(c."date") AS "ChargePeriodStart",
       datetime(c."date", '+1 day') AS "ChargePeriodEnd",
       c."chargeCategory" AS "ChargeCategory",
       CAST(NULL AS text) AS "ChargeClass",
       c."service" AS "ServiceName",
       'AWS' AS "ProviderName",
       'AWS' AS "PublisherName",
       'AWS' AS "InvoiceIssuerName",
       COALESCE(c."linkedAccountId", p."aws_account_id") AS "SubAccountId",
       COALESCE(c."linkedAccountName", a."accountName") AS "SubAccountName",
       p."aws_account_id" AS "BillingAccountId",
       datetime(c."date", 'start of month') AS "BillingPeriodStart",
       datetime(c."date", 'start of month', '+1 month') AS "BillingPeriodEnd",
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
WHERE c."provider" = 'AWS'""",
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
