"""monthly_costs_eur and focus_costs: the views `db upgrade` creates, their assets, and the one
query a FinOps user asks, on SQLite and PostgreSQL."""

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import text

from pulse_pipeline.db.types import ExactDecimal
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.db.views import FOCUS_COSTS_VIEW
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import D1, D3, EC2, S3, TODAY, TWO_PAGES, load_rates, run_sync

# docs/pulse-app.md's answer to "what did account X cost this month so far, and in FOCUS terms?"
MONTH_TO_DATE_FOCUS = """
SELECT "SubAccountId", "SubAccountName", "BillingCurrency", "ChargeCategory",
       SUM("BilledCost") AS "BilledCost", SUM("EffectiveCost") AS "EffectiveCost",
       SUM("x_AmountEUR") AS "x_AmountEUR", bool_or("x_Estimated") AS "x_Estimated",
       MAX("ChargePeriodEnd") AS "through"
FROM focus_costs
WHERE "x_CloudAccountId" = :account
  AND "BillingPeriodStart" = date_trunc('month', now(), 'UTC')
GROUP BY "SubAccountId", "SubAccountName", "BillingCurrency", "ChargeCategory"
"""
# PostgreSQL's information_schema name of each documented type.
PG_TYPES = {
    "numeric": "numeric",
    "text": "text",
    "timestamptz": "timestamp with time zone",
    "date": "date",
    "boolean": "boolean",
    "integer": "integer",
}
# acc-2 in GBP this month: usage and a credit, so totals have both signs.
THIS_MONTH = [
    day
    for day in (TODAY - timedelta(days=2), TODAY - timedelta(days=1))
    if day.month == TODAY.month
]


def _query(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(text(sql), params).mappings()]
    engine.dispose()
    return rows


def _money(value: Any) -> Decimal:
    """A view's amount as read by the pipeline's exact type (SQLite keeps decimal text)."""
    return Decimal(str(value)) if not isinstance(value, Decimal) else value


def _synced(pulse: str, instance: dg.DagsterInstance) -> list[dict[str, Any]]:
    load_rates(instance)
    queue_results("111111111111", TWO_PAGES)
    assert run_sync(instance, "acc-1", D1, D3).success
    days = THIS_MONTH or [D1]
    costs = {day: {EC2: ("100.1234567891", "GBP"), (S3, "Credit"): ("-3.5", "GBP")} for day in days}
    queue_results("222222222222", [ce_page(costs)])
    assert run_sync(instance, "acc-2", days[0], days[-1]).success
    return _query(pulse, 'SELECT * FROM "CostRecord"')


def test_views_sum_exactly_the_cost_records_they_summarise(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    records = _synced(pulse, dagster_instance)
    expected: dict[tuple[str, str, date], dict[str, Any]] = defaultdict(
        lambda: {"amountEUR": Decimal(0), "rows": 0, "estimated": False, "fxProvisional": False}
    )
    for record in records:
        day = (
            record["date"]
            if isinstance(record["date"], date)
            else date.fromisoformat(record["date"])
        )
        month = expected[(record["orgId"], record["cloudAccountId"], day.replace(day=1))]
        month["amountEUR"] += ExactDecimal().process_result_value(record["amountEUR"], None)  # type: ignore[arg-type, operator]
        month["rows"] += 1
        month["estimated"] |= bool(record["estimated"])
        month["fxProvisional"] |= bool(record["fxProvisional"])

    monthly = _query(pulse, "SELECT * FROM monthly_costs_eur")
    got = {
        (row["orgId"], row["cloudAccountId"], date.fromisoformat(str(row["month"])[:10])): {
            "amountEUR": _money(row["amountEUR"]),
            "rows": row["rows"],
            "estimated": bool(row["estimated"]),
            "fxProvisional": bool(row["fxProvisional"]),
        }
        for row in monthly
    }
    assert got == expected
    assert sum(month["rows"] for month in got.values()) == len(records)

    focus = _query(pulse, "SELECT * FROM focus_costs")
    assert len(focus) == len(records)
    assert list(focus[0]) == [name for name, _, _ in FOCUS_COSTS_VIEW.columns]
    assert sum(_money(row["x_AmountEUR"]) for row in focus) == sum(
        month["amountEUR"] for month in expected.values()
    )
    by_account = {row["x_CloudAccountId"]: row for row in focus}
    assert by_account["acc-1"]["SubAccountId"] == "111111111111"
    assert by_account["acc-2"]["SubAccountId"] == "222222222222"
    assert by_account["acc-2"]["BillingCurrency"] == "GBP"
    assert {row["ChargeCategory"] for row in focus} == {"Usage", "Credit"}
    for row in focus:
        start = datetime.fromisoformat(str(row["ChargePeriodStart"]))
        assert datetime.fromisoformat(str(row["ChargePeriodEnd"])) - start == timedelta(days=1)
        assert datetime.fromisoformat(str(row["BillingPeriodStart"])) == start.replace(day=1)
        assert _money(row["BilledCost"]) == _money(row["EffectiveCost"])
        assert row["ProviderName"] == "AWS" and row["x_Metric"] == "UnblendedCost"

    if pulse.startswith("postgresql"):
        schema = pulse.split("schema=")[1]
        types = _query(
            pulse,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = 'focus_costs'",
            schema=schema,
        )
        assert {row["column_name"]: row["data_type"] for row in types} == {
            name: PG_TYPES[type_] for name, type_, _ in FOCUS_COSTS_VIEW.columns
        }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # PULSE's own database
def test_one_query_answers_what_an_account_cost_this_month_in_focus_terms(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    records = _synced(pulse, dagster_instance)
    this_month = datetime.now(UTC).date().replace(day=1)

    answer = {
        row["ChargeCategory"]: row for row in _query(pulse, MONTH_TO_DATE_FOCUS, account="acc-2")
    }

    mine = [r for r in records if r["cloudAccountId"] == "acc-2" and r["date"] >= this_month]
    assert set(answer) == {r["chargeCategory"] for r in mine}
    for category, row in answer.items():
        rows = [r for r in mine if r["chargeCategory"] == category]
        assert row["BilledCost"] == sum(r["amount"] for r in rows)
        assert row["x_AmountEUR"] == sum(r["amountEUR"] for r in rows)
        assert (row["SubAccountId"], row["BillingCurrency"]) == ("222222222222", "GBP")


def test_view_assets_report_the_views_without_calling_aws(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    _synced(pulse, dagster_instance)
    definitions = defs()
    result = dg.materialize(
        [
            definitions.resolve_assets_def("monthly_costs_eur"),
            definitions.resolve_assets_def("focus_costs"),
        ],
        instance=dagster_instance,
    )

    assert result.success
    monthly = result.asset_materializations_for_node("monthly_costs_eur")[0].metadata
    focus = result.asset_materializations_for_node("focus_costs")[0].metadata
    assert monthly["dagster/row_count"].value == len(
        _query(pulse, "SELECT * FROM monthly_costs_eur")
    )
    assert monthly["accounts"].value == 2
    assert focus["dagster/row_count"].value == len(_query(pulse, 'SELECT * FROM "CostRecord"'))
    graph = definitions.resolve_asset_graph()
    for key in ("monthly_costs_eur", "focus_costs"):
        assert graph.get(dg.AssetKey(key)).parent_keys == {dg.AssetKey("daily_costs_eur")}
