"""Which connection of an AWS account syncs, through real Dagster runs against the simulated AWS
(PULSE on SQLite and PostgreSQL): a reconnected account replaces a broken connection, a
connection that synced keeps its place, and a role ARN and external ID already connected in
another organisation are refused for the newer connection. Refusals cost no AWS request."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import delete, insert

from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import PulseDatabase
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import (
    D1,
    D3,
    account_row,
    account_status,
    failure_of,
    load_rates,
    run_sync,
    set_account,
    stored_rows,
    write_status,
)

ACC1 = "111111111111"
ROLE1 = "arn:aws:iam::111111111111:role/PulseRead"
RIGHT_ID = "ext-id-42"  # what the role's trust policy requires (support.account_row's default)
LATER = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedAws]:
    settings = SimulationSettings(
        services_per_day=3, page_size=4, required_external_ids={ROLE1: RIGHT_ID}
    )
    with SimulatedAws(settings) as simulated:
        for name, value in simulated.environment().items():
            monkeypatch.setenv(name, value)
        yield simulated


def add_account(database_url: str, **row: Any) -> None:
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(cloud_account), [row])
    engine.dispose()


def delete_account(database_url: str, account_id: str) -> None:
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        conn.execute(delete(cloud_account).where(cloud_account.c.id == account_id))
    engine.dispose()


def retries_of(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY")


def daily_tick(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime.now(UTC),
        resources={"pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL"))},
        repository_def=defs().get_repository_def(),
    ) as context:
        result = defs().resolve_schedule_def("daily_aws_cost_sync").evaluate_tick(context)
    return list(result.run_requests or [])


def test_a_reconnected_account_syncs_instead_of_the_broken_connection_it_replaces(
    pulse: str, dagster_instance: dg.DagsterInstance, aws: SimulatedAws
) -> None:
    """The old connection never synced (wrong external ID); the customer connected again."""
    set_account(pulse, "acc-1", externalId="ext-typo", status="error", lastSyncError="denied")
    add_account(pulse, **account_row("acc-1b", "org-1", ROLE1, RIGHT_ID), createdAt=LATER)
    load_rates(dagster_instance)

    old = run_sync(dagster_instance, "acc-1", D1, D3)
    new = run_sync(dagster_instance, "acc-1b", D1, D3)

    assert not old.success and retries_of(old) == 0
    covered = (
        "CloudAccount acc-1 (org-1 production) connects AWS account 111111111111, which "
        "CloudAccount acc-1b (org-1 production) of the same organisation syncs (the newest "
        "connection; none has synced successfully yet); disconnect or delete the connection "
        "you no longer use"
    )
    assert failure_of(old) == covered
    assert new.success and len(stored_rows(pulse, "acc-1b")) > 0
    assert aws.assume_role_count(ACC1) == 1  # acc-1b's; the refused one asked AWS nothing
    assert write_status(dagster_instance, [old.run_id, new.run_id]).success
    assert account_status(pulse, "acc-1")["lastSyncError"] == covered
    assert account_status(pulse, "acc-1b")["status"] == "active"

    # The customer deletes the broken row: nothing of it is left in the way.
    delete_account(pulse, "acc-1")
    requests = daily_tick(dagster_instance)
    assert [r.partition_key for r in requests] == ["acc-1b"]
    job = defs().resolve_job_def("sync_aws_costs")
    daily = job.execute_in_process(
        instance=dagster_instance, partition_key="acc-1b", tags=requests[0].tags
    )
    assert daily.success
    assert write_status(dagster_instance, [daily.run_id]).success
    assert account_status(pulse, "acc-1b")["lastSyncError"] is None
    assert stored_rows(pulse, "acc-1") == []


def test_a_connection_that_synced_keeps_syncing_until_it_is_disconnected(
    pulse: str, dagster_instance: dg.DagsterInstance, aws: SimulatedAws
) -> None:
    load_rates(dagster_instance)
    first = run_sync(dagster_instance, "acc-1", D1, D3)
    assert write_status(dagster_instance, [first.run_id]).success
    synced_at = account_status(pulse, "acc-1")["lastSyncedAt"]
    before = stored_rows(pulse, "acc-1")
    add_account(pulse, **account_row("acc-1b", "org-1", ROLE1, RIGHT_ID), createdAt=LATER)
    requests = aws.request_count(ACC1)

    newer = run_sync(dagster_instance, "acc-1b", D1, D3)
    again = run_sync(dagster_instance, "acc-1", D1, D3)

    assert failure_of(newer) == (
        "CloudAccount acc-1b (org-1 production) connects AWS account 111111111111, which "
        "CloudAccount acc-1 (org-1 production) of the same organisation syncs (last synced "
        f"successfully at {synced_at:%Y-%m-%d %H:%M} UTC); disconnect or delete the "
        "connection you no longer use"
    )
    assert again.success and stored_rows(pulse, "acc-1") == before
    assert aws.assume_role_count(ACC1) == 2  # acc-1's two syncs only
    assert aws.request_count(ACC1) == 2 * requests

    set_account(pulse, "acc-1", status="disconnected")
    takes_over = run_sync(dagster_instance, "acc-1b", D1, D3)

    assert takes_over.success and len(stored_rows(pulse, "acc-1b")) == len(before)
    assert stored_rows(pulse, "acc-1") == before  # kept as history


def test_a_role_and_external_id_connected_in_another_organisation_are_refused_for_the_newer(
    pulse: str, dagster_instance: dg.DagsterInstance, aws: SimulatedAws
) -> None:
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before, requests = stored_rows(pulse, "acc-1"), aws.request_count(ACC1)
    add_account(pulse, **account_row("acc-9", "org-9", ROLE1, RIGHT_ID), createdAt=LATER)

    deputy = run_sync(dagster_instance, "acc-9", D1, D3)
    owner = run_sync(dagster_instance, "acc-1", D1, D3)

    assert not deputy.success and retries_of(deputy) == 0
    refused = (
        "CloudAccount acc-9 (org-9 production) uses the same role ARN and external ID as a "
        "connection in another organisation, so it could read that organisation's costs (the "
        "confused deputy the external ID exists to prevent); PULSE must issue this connection "
        "a new external ID, and the role's trust policy must require it"
    )
    assert failure_of(deputy) == refused
    assert owner.success and stored_rows(pulse, "acc-1") == before
    assert stored_rows(pulse, "acc-9") == []
    assert aws.assume_role_count(ACC1) == 2 and aws.request_count(ACC1) == 2 * requests
    assert write_status(dagster_instance, [deputy.run_id, owner.run_id]).success
    status = account_status(pulse, "acc-9")
    assert status["status"] == "error" and status["lastSyncError"] == refused
    assert RIGHT_ID not in refused and "org-1" not in refused and "acc-1 " not in refused
    assert account_status(pulse, "acc-1")["status"] == "active"
