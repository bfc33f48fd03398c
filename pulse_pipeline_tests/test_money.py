"""Money a FinOps user can trust, through real Dagster runs against moto on SQLite and PostgreSQL:
charge types, the metric setting, restatements, duplicate connections and the reconciliation checks."""

import os
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import insert, select, text

from pulse_pipeline.db.schema import cloud_account, cost_explorer_page, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.settings import SettingError
from pulse_pipeline_tests.ce_results import ce_page, ecb_history_csv, queue_results
from pulse_pipeline_tests.support import (
    D1,
    D2,
    D3,
    EC2,
    EXPECTED_ACC1,
    RATES,
    S3,
    TODAY,
    TWO_PAGES,
    account_row,
    account_status,
    expected_row,
    failure_of,
    load_rates,
    materialization,
    rate_on,
    run_sync,
    set_account,
    stored_rows,
    write_status,
)

CHARGES = {
    D1: {
        (EC2, "Usage"): ("10", "USD"),
        (EC2, "Credit"): ("-2.5", "USD"),
        (EC2, "Tax"): ("1.25", "USD"),
        (EC2, "Savings Plan Upfront Fee"): ("30", "USD"),
    }
}


def raw_requests(database_url: str, run_id: str) -> list[dict[str, Any]]:
    """The run's cost requests, after the first one (which accounts the role sees)."""
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        requests = (
            conn.execute(
                select(cost_explorer_page.c.request)
                .where(cost_explorer_page.c.run_id == run_id)
                .order_by(cost_explorer_page.c.page_number)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    return [request for request in requests if request["Granularity"] == "DAILY"]


def test_every_charge_type_is_a_row_with_its_focus_category(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", [ce_page(CHARGES)])

    result = run_sync(dagster_instance, "acc-1", D1, D1)

    assert result.success
    assert stored_rows(pulse, "acc-1") == [
        expected_row("org-1", D1, EC2, "-2.5", record_type="Credit", category="Credit"),
        expected_row(
            "org-1", D1, EC2, "30", record_type="Savings Plan Upfront Fee", category="Purchase"
        ),
        expected_row("org-1", D1, EC2, "1.25", record_type="Tax", category="Tax"),
        expected_row("org-1", D1, EC2, "10", record_type="Usage", category="Usage"),
    ]
    # The day's total is the console's: every record type, credits included.
    assert sum(row[3] for row in stored_rows(pulse, "acc-1")) == Decimal("38.75")
    [request] = raw_requests(pulse, result.run_id)
    assert [g["Key"] for g in request["GroupBy"]] == ["SERVICE", "RECORD_TYPE"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "eur_matches_raw": True,
        "no_duplicate_rows": True,
        "every_row_has_a_rate": True,
        "amounts_match_cost_explorer": True,
        "synced_recently": True,
    }


def test_a_deployment_can_write_only_some_record_types(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_RECORD_TYPES", "Usage, Tax")
    load_rates(dagster_instance)
    queue_results("111111111111", [ce_page(CHARGES)])

    result = run_sync(dagster_instance, "acc-1", D1, D1)

    assert result.success
    assert [row[9] for row in stored_rows(pulse, "acc-1")] == ["Tax", "Usage"]
    metadata = materialization(result, "daily_costs_eur").metadata
    assert metadata["record_types_skipped"].value == 2


def test_the_metric_setting_is_asked_for_and_stored_on_every_row(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_COST_METRIC", "AmortizedCost")
    load_rates(dagster_instance)
    # An upfront fee billed earlier makes the amortized 4 USD differ from the billed 5 USD.
    billed = {"UnblendedCost": {D1: {EC2: ("5", "USD")}}}
    queue_results(
        "111111111111",
        [ce_page({D1: {EC2: ("4", "USD")}}, metric="AmortizedCost", other=billed)],
    )

    result = run_sync(dagster_instance, "acc-1", D1, D1)

    assert result.success
    assert stored_rows(pulse, "acc-1") == [
        expected_row("org-1", D1, EC2, "4", metric="AmortizedCost")
    ]
    # One request asks for both metrics at $0.01; amountEUR stays the configured metric.
    assert raw_requests(pulse, result.run_id)[0]["Metrics"] == ["AmortizedCost", "UnblendedCost"]
    engine = create_pulse_engine(pulse)
    with engine.connect() as conn:
        focus = conn.execute(text('SELECT "BilledCost", "EffectiveCost" FROM focus_costs')).one()
        contracted = conn.execute(select(cost_record.c.contractedCost)).scalar_one()
    engine.dispose()
    assert [Decimal(str(value)) for value in focus] == [Decimal(5), Decimal(4)]
    assert contracted == Decimal(5)


def test_an_unknown_metric_fails_the_load_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_COST_METRIC", "BlendedCost")

    with pytest.raises(SettingError) as error:
        defs()

    assert str(error.value) == (
        "PULSE_COST_METRIC is invalid: unknown cost metric 'BlendedCost'; choose one of "
        "UnblendedCost, AmortizedCost, NetUnblendedCost, NetAmortizedCost"
    )


def test_an_unknown_metric_in_the_runs_environment_fails_before_any_aws_request(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_COST_METRIC", "AmortizedCost")
    job = defs().resolve_job_def("sync_aws_costs")  # loaded with a valid metric
    monkeypatch.setenv("PULSE_COST_METRIC", "BlendedCost")  # the run's environment differs
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1"])

    result = job.execute_in_process(
        instance=dagster_instance, partition_key="acc-1", raise_on_error=False
    )

    assert not result.success
    assert raw_requests(pulse, result.run_id) == []
    monkeypatch.delenv("PULSE_COST_METRIC")
    write_status(dagster_instance, [result.run_id])
    error = account_status(pulse, "acc-1")["lastSyncError"]
    assert error.startswith("CloudAccount acc-1: the sync run could not start (")
    assert "unknown cost metric 'BlendedCost'" in error


def test_the_default_window_reaches_back_to_days_still_estimated_and_restates_them(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    old_day = TODAY - timedelta(days=75)  # always before the 1st of last month
    load_rates(dagster_instance)
    queue_results(
        "111111111111",
        [ce_page({old_day: {EC2: ("5", "USD"), S3: ("1", "USD")}}, estimated=[old_day])],
    )
    queue_results(
        "111111111111", [ce_page({old_day: {EC2: ("5.5", "USD")}, D1: {EC2: ("2", "USD")}})]
    )
    first = run_sync(dagster_instance, "acc-1", old_day, old_day)
    assert first.success

    restated = run_sync(dagster_instance, "acc-1", None, None)

    assert restated.success
    [request] = raw_requests(pulse, restated.run_id)
    assert request["TimePeriod"] == {"Start": old_day.isoformat(), "End": TODAY.isoformat()}
    assert stored_rows(pulse, "acc-1") == [
        expected_row("org-1", old_day, EC2, "5.5"),
        expected_row("org-1", D1, EC2, "2"),
    ]
    metadata = materialization(restated, "daily_costs_eur").metadata
    assert (
        metadata["rows_added"].value,
        metadata["rows_removed"].value,
        metadata["rows_changed"].value,
    ) == (1, 1, 1)


def test_a_rerun_reports_no_change(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success

    again = run_sync(dagster_instance, "acc-1", D1, D3)

    metadata = materialization(again, "daily_costs_eur").metadata
    assert (
        metadata["rows_added"].value,
        metadata["rows_removed"].value,
        metadata["rows_changed"].value,
    ) == (0, 0, 0)
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1


def test_one_aws_account_connected_twice_in_an_org_is_synced_once(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [
                {
                    **account_row("acc-dup", "org-1", "arn:aws:iam::111111111111:role/Other"),
                    "accountName": "Again",
                    "createdAt": datetime(2026, 1, 1),  # older than acc-1: neither synced yet
                }
            ],
        )
    engine.dispose()
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    original = run_sync(dagster_instance, "acc-1", D1, D3)
    duplicate = run_sync(dagster_instance, "acc-dup", D1, D3)
    assert original.success and not duplicate.success
    assert failure_of(duplicate) == (
        "CloudAccount acc-dup (Again) connects AWS account 111111111111, which CloudAccount acc-1 "
        "(org-1 production) of the same organisation syncs (the newest connection; none has "
        "synced successfully yet); disconnect or delete the connection you no longer use"
    )
    assert write_status(dagster_instance, [original.run_id, duplicate.run_id]).success
    assert account_status(pulse, "acc-dup")["status"] == "error"
    assert "CloudAccount acc-1" in account_status(pulse, "acc-dup")["lastSyncError"]
    assert stored_rows(pulse, "acc-dup") == [] and stored_rows(pulse, "acc-1") == EXPECTED_ACC1


def test_a_disconnected_older_connection_does_not_block_a_reconnect(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    set_account(pulse, "acc-1", status="disconnected")
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [account_row("acc-new", "org-1", "arn:aws:iam::111111111111:role/PulseRead")],
        )
    engine.dispose()
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)

    assert run_sync(dagster_instance, "acc-new", D1, D3).success


def test_two_invalid_role_arns_are_reported_as_invalid_not_as_duplicates(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    set_account(pulse, "acc-1", roleArn=None)
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(insert(cloud_account), [account_row("acc-3", "org-1", None)])
    engine.dispose()

    result = run_sync(dagster_instance, "acc-3", D1, D3)

    assert (
        failure_of(result)
        == "CloudAccount acc-3 (org-1 production) has no IAM role ARN; reconnect the account in PULSE"
    )


def test_a_disconnected_account_is_not_synced_and_keeps_its_status(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    set_account(pulse, "acc-1", status="disconnected")

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert "is disconnected in PULSE (status 'disconnected')" in failure_of(result)
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["status"] == "disconnected"


def test_a_status_message_keeps_its_words_and_loses_the_external_id(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    set_account(pulse, "acc-2", externalId="ext id with a space")
    result = run_sync(dagster_instance, "acc-2", D1, D2)
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-2")["lastSyncError"] == (
        "CloudAccount acc-2 (org-2 production) has an external ID AWS would reject (it must be "
        "2 to 1224 characters of letters, digits and +=,.@:/-_)"
    )


def test_provisional_rates_are_reconverted_from_stored_pages_without_asking_aws(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    days = [D1 + timedelta(days=n) for n in range(7)]
    early = tmp_path / "ecb-until-d1.csv"
    early.write_text(ecb_history_csv({day: r for day, r in RATES.items() if day <= D1}))
    full = os.environ["PULSE_ECB_HISTORY_URL"]
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", str(early))
    load_rates(dagster_instance)
    queue_results("111111111111", [ce_page({day: {EC2: ("10", "USD")} for day in days})])
    assert run_sync(dagster_instance, "acc-1", days[0], days[-1]).success
    d1_rate = Decimal(rate_on(D1, "USD")[0])
    provisional = [row for row in stored_rows(pulse, "acc-1") if row[5] == d1_rate and row[1] > D1]
    assert provisional and all(row[6] == D1 for row in provisional)
    assert provisional_flags(pulse) == {False, True}  # D1 itself is final
    assert raw_page_total(pulse) == 2  # which accounts the role sees, then the costs

    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", full)
    load_rates(dagster_instance)
    reconverted = dg.materialize(
        [defs().resolve_assets_def("daily_costs_eur")],
        selection=["daily_costs_eur"],
        instance=dagster_instance,
        partition_key="acc-1",
    )

    assert reconverted.success
    assert stored_rows(pulse, "acc-1") == [expected_row("org-1", day, EC2, "10") for day in days]
    assert raw_page_total(pulse) == 2  # no new Cost Explorer request
    assert provisional_flags(pulse) == {False}


def raw_page_total(database_url: str) -> int:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        total = len(conn.execute(select(cost_explorer_page.c.id)).all())
    engine.dispose()
    return total


def provisional_flags(database_url: str) -> set[bool]:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        flags = set(conn.execute(select(cost_record.c.fxProvisional)).scalars())
    engine.dispose()
    return flags
