"""Linked accounts through real Dagster runs against the simulated AWS (PULSE on SQLite and
PostgreSQL): a member account's connection holds its own costs; a management (payer) account's
holds every member's, per linked account; and when an organisation connects the payer and one
of its members, every euro is counted once in CostRecord, monthly_costs_eur, focus_costs and
what a served "Sync now" answers."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import insert, text

from pulse_pipeline.db import queries
from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.request_rules import sync_result
from pulse_pipeline.sync_window import SyncWindow
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import (
    D1,
    D3,
    account_row,
    account_status,
    failure_of,
    load_rates,
    materialization,
    run_sync,
    write_status,
)

MEMBER, OTHER_1, OTHER_2, PAYER = "111111111111", "333333333333", "444444444444", "999999999999"
NAMES = {MEMBER: "shop-prod", OTHER_1: "data-lake", OTHER_2: "sandbox", PAYER: "acme-payer"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedAws]:
    settings = SimulationSettings(
        services_per_day=4,
        linked_accounts={PAYER: (MEMBER, OTHER_1, OTHER_2)},
        account_names=NAMES,
    )
    with SimulatedAws(settings) as simulated:
        for name, value in simulated.environment().items():
            monkeypatch.setenv(name, value)
        yield simulated


@pytest.fixture
def with_payer(pulse: str) -> str:
    """acc-1 (AWS 111111111111, org-1) is a member; org-1 also connects the payer."""
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [account_row("acc-payer", "org-1", f"arn:aws:iam::{PAYER}:role/PulseRead")],
        )
    engine.dispose()
    return pulse


def _query(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(text(sql), params).mappings()]
    engine.dispose()
    return rows


def _eur(database_url: str, sql: str, **params: Any) -> Decimal:
    return sum(
        (Decimal(str(row["eur"])) for row in _query(database_url, sql, **params)), Decimal(0)
    )


def test_a_member_accounts_rows_name_it_and_cost_one_request_more(
    pulse: str, dagster_instance: dg.DagsterInstance, aws: SimulatedAws
) -> None:
    load_rates(dagster_instance)

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert result.success
    rows = _query(
        pulse,
        'SELECT DISTINCT "linkedAccountId", "linkedAccountName" FROM "CostRecord" '
        'WHERE "cloudAccountId" = :account',
        account="acc-1",
    )
    assert rows == [{"linkedAccountId": MEMBER, "linkedAccountName": "shop-prod"}]
    focus = _query(
        pulse,
        'SELECT DISTINCT "SubAccountId", "SubAccountName", "BillingAccountId" FROM focus_costs',
    )
    assert focus == [
        {"SubAccountId": MEMBER, "SubAccountName": "shop-prod", "BillingAccountId": MEMBER}
    ]
    # Which accounts the role sees (one page), then today's SERVICE x RECORD_TYPE request.
    assert aws.request_count(MEMBER) == 2
    metadata = materialization(result, "daily_costs_eur").metadata
    assert metadata["linked_accounts"].value == 1
    assert "shop-prod" in str(metadata["linked_account_list"].value)


def test_a_payer_holds_every_linked_account_and_no_euro_is_counted_twice(
    with_payer: str, dagster_instance: dg.DagsterInstance, aws: SimulatedAws
) -> None:
    pulse = with_payer
    load_rates(dagster_instance)
    # The member connected first and synced on its own.
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    member_alone = _eur(
        pulse, 'SELECT "amountEUR" AS eur FROM "CostRecord" WHERE "cloudAccountId" = \'acc-1\''
    )

    payer_run = run_sync(dagster_instance, "acc-payer", D1, D3)
    member_run = run_sync(dagster_instance, "acc-1", D1, D3)

    assert payer_run.success
    by_linked = _query(
        pulse,
        'SELECT "linkedAccountId", "linkedAccountName", COUNT(*) AS n FROM "CostRecord" '
        'WHERE "cloudAccountId" = \'acc-payer\' GROUP BY "linkedAccountId", "linkedAccountName" '
        'ORDER BY "linkedAccountId"',
    )
    assert [(row["linkedAccountId"], row["linkedAccountName"]) for row in by_linked] == sorted(
        NAMES.items()
    )
    # Per record type that occurs, one LINKED_ACCOUNT x SERVICE request, after the first one.
    kinds = _query(pulse, 'SELECT DISTINCT "recordType" FROM "CostRecord"')
    assert aws.request_count(PAYER) == 1 + len(kinds)
    eur_meta = materialization(payer_run, "daily_costs_eur").metadata
    assert eur_meta["linked_accounts"].value == 4
    assert eur_meta["rows_taken_over_from_member_connections"].value > 0

    # The member's connection: refused before any AWS call, in words the customer acts on.
    assert not member_run.success
    cause = failure_of(member_run)
    assert cause.startswith("CloudAccount acc-1 (org-1 production) connects AWS account 1111")
    assert "management account 999999999999 is connected as CloudAccount acc-payer" in cause
    assert aws.request_count(MEMBER) == 2  # its first sync's only
    write_status(dagster_instance, [member_run.run_id])
    status = account_status(pulse, "acc-1")
    assert status["status"] == "error" and status["lastSyncError"] == cause

    # Every euro once: the member's costs are in the payer's rows only, and equal to what the
    # member's own connection had stored.
    assert _query(pulse, 'SELECT * FROM "CostRecord" WHERE "cloudAccountId" = \'acc-1\'') == []
    held = _eur(
        pulse,
        'SELECT "amountEUR" AS eur FROM "CostRecord" WHERE "linkedAccountId" = :linked',
        linked=MEMBER,
    )
    assert held == member_alone
    total = _eur(pulse, 'SELECT "amountEUR" AS eur FROM "CostRecord" WHERE "orgId" = \'org-1\'')
    monthly = _eur(
        pulse, 'SELECT "amountEUR" AS eur FROM monthly_costs_eur WHERE "orgId" = \'org-1\''
    )
    focus = _eur(pulse, 'SELECT "x_AmountEUR" AS eur FROM focus_costs WHERE "x_OrgId" = \'org-1\'')
    assert monthly == focus == total
    focus_member = _query(
        pulse,
        'SELECT "BillingAccountId", COUNT(*) AS n, COUNT(DISTINCT "x_CloudAccountId") AS holders '
        'FROM focus_costs WHERE "SubAccountId" = :linked GROUP BY "BillingAccountId"',
        linked=MEMBER,
    )
    assert [(row["BillingAccountId"], row["holders"]) for row in focus_member] == [(PAYER, 1)]
    # What a served "Sync now" of org-1 answers: the payer's totals (the member's sentence
    # goes to the request's error), adding up to the organisation's total.
    engine = create_pulse_engine(pulse)
    with engine.connect() as conn:
        answered = sync_result(queries.account_totals(conn, "acc-payer", SyncWindow(D1, D3)))
    engine.dispose()
    assert Decimal(answered["totalAmountEUR"]) == total
    assert total > member_alone > 0
