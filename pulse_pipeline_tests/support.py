"""Shared by the Dagster tests: the test days, ECB rates, expected rows, and ways to run and inspect syncs."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import select

from pulse_pipeline.db.schema import cloud_account, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline_tests.ce_results import ce_page, eur

TODAY = datetime.now(UTC).date()
D1, D2, D3, D4 = (TODAY - timedelta(days=n) for n in (12, 11, 10, 9))
EC2 = "Amazon Elastic Compute Cloud - Compute"
S3 = "Amazon Simple Storage Service"


def _usd_rates() -> dict[date, dict[str, str]]:
    """Weekday rates over the last 120 days, a different USD rate each day, GBP constant."""
    rates = {}
    for offset in range(1, 121):
        day = TODAY - timedelta(days=offset)
        if day.weekday() < 5:
            rates[day] = {"USD": f"1.{1000 + offset:04d}", "GBP": "0.8500"}
    return rates


RATES = _usd_rates()


def rate_on(day: date, currency: str) -> tuple[str, date]:
    """The rate the ECB gives for a day: that day's, else the last business day before."""
    rate_day = max(d for d in RATES if d <= day)
    return RATES[rate_day][currency], rate_day


def account_row(
    account_id: str, org_id: str, role_arn: str | None, external_id: str | None = "ext-id-42"
) -> dict[str, Any]:
    return {
        "id": account_id,
        "orgId": org_id,
        "provider": "AWS",
        "accountName": f"{org_id} production",
        "connectionType": "COST_EXPLORER",
        "roleArn": role_arn,
        "externalId": external_id,
    }


def run_sync(
    instance: dg.DagsterInstance, account_id: str, start: date | None, end: date | None
) -> dg.ExecuteInProcessResult:
    """One sync run of the account; no dates means the default window."""
    instance.add_dynamic_partitions("cloud_accounts", [account_id])
    window = {"start_date": start.isoformat(), "end_date": end.isoformat()} if start and end else {}
    return (
        defs()
        .resolve_job_def("sync_aws_costs")
        .execute_in_process(
            instance=instance,
            partition_key=account_id,
            run_config={"ops": {"sync_cloud_accounts": {"config": window}}},
            raise_on_error=False,
        )
    )


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    """The one-sentence cause a failed sync run gives."""
    data = result.get_step_failure_events()[0].step_failure_data
    assert data.user_failure_data is not None, data.error
    return str(data.user_failure_data.description)


def set_account(database_url: str, account_id: str, **values: Any) -> None:
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            cloud_account.update().where(cloud_account.c.id == account_id).values(**values)
        )
    engine.dispose()


def load_rates(instance: dg.DagsterInstance) -> None:
    result = dg.materialize([defs().resolve_assets_def("ecb_fx_rates")], instance=instance)
    assert result.success


def stored_rows(database_url: str, account_id: str) -> list[tuple[Any, ...]]:
    engine = create_pulse_engine(database_url)
    c = cost_record.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                c.orgId,
                c.date,
                c.service,
                c.amount,
                c.currency,
                c.fxRate,
                c.fxRateDate,
                c.amountEUR,
                c.estimated,
                c.recordType,
                c.chargeCategory,
                c.metric,
            )
            .where(c.cloudAccountId == account_id)
            .order_by(c.date, c.service, c.recordType)
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def expected_row(
    org: str,
    day: date,
    service: str,
    amount: str,
    estimated: bool = False,
    record_type: str = "Usage",
    category: str = "Usage",
    metric: str = "UnblendedCost",
    currency: str = "USD",
) -> tuple[Any, ...]:
    """A CostRecord as the pipeline must store it, computed by hand from the test's rates."""
    rate, rate_day = rate_on(day, currency)
    return (
        org,
        day,
        service,
        Decimal(amount),
        currency,
        Decimal(rate),
        rate_day,
        eur(amount, rate),
        estimated,
        record_type,
        category,
        metric,
    )


TWO_PAGES = [
    ce_page(
        {D1: {EC2: ("12.3456789012", "USD"), S3: ("0.0000001", "USD")}, D2: {EC2: ("10", "USD")}},
        next_token="page-2",
    ),
    ce_page({D2: {S3: ("1.5", "USD")}, D3: {EC2: ("7.77", "USD")}}, estimated=[D3]),
]
EXPECTED_ACC1 = [
    expected_row("org-1", D1, EC2, "12.3456789012"),
    expected_row("org-1", D1, S3, "0.0000001"),
    expected_row("org-1", D2, EC2, "10"),
    expected_row("org-1", D2, S3, "1.5"),
    expected_row("org-1", D3, EC2, "7.77", estimated=True),
]


def account_status(database_url: str, account_id: str) -> dict[str, Any]:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        row = (
            conn.execute(select(cloud_account).where(cloud_account.c.id == account_id))
            .mappings()
            .one()
        )
    engine.dispose()
    return dict(row)


def write_status(instance: dg.DagsterInstance, run_ids: list[str]) -> dg.ExecuteInProcessResult:
    return (
        defs()
        .resolve_job_def("write_sync_status")
        .execute_in_process(
            instance=instance,
            run_config={"ops": {"write_cloud_account_status": {"config": {"run_ids": run_ids}}}},
        )
    )


def amounts_by_service(
    database_url: str, account_id: str, start: date | None = None, end: date | None = None
) -> dict[tuple[date, str], Decimal]:
    """The account's stored amounts per day and service, its record types added together."""
    c = cost_record.c
    query = select(c.date, c.service, c.amount).where(c.cloudAccountId == account_id)
    if start and end:
        query = query.where(c.date >= start, c.date <= end)
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    engine.dispose()
    totals: dict[tuple[date, str], Decimal] = {}
    for day, service, amount in rows:
        totals[(day, service)] = totals.get((day, service), Decimal(0)) + amount
    return totals


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetMaterialization:
    """The run's one materialization of a sync asset (both come from the sync_cloud_accounts step)."""
    (event,) = [
        m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset)
    ]
    return event.step_materialization_data.materialization
