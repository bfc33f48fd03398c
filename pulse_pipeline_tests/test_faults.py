"""The fault matrix, each through a real Dagster run on PostgreSQL against a simulated AWS that
misbehaves on purpose (moto's server; botocore's own retries really run): every fault ends in
success or in one clear, named failure, and nothing is lost."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from sqlalchemy import select

from pulse_pipeline.db.schema import cost_explorer_page
from pulse_pipeline.db.urls import create_pulse_engine, to_sqlalchemy_url
from pulse_pipeline.defs.assets import sync_cloud_accounts
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from pulse_pipeline.defs.resources import AwsCostExplorer, CostSettings, PulseDatabase
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import (
    D1,
    D3,
    account_status,
    amounts_by_service,
    failure_of,
    load_rates,
    materialization,
    run_sync,
    set_account,
    stored_rows,
    write_status,
)

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
ACC1, ACC2 = "111111111111", "222222222222"
ROLE1 = "arn:aws:iam::111111111111:role/PulseRead"


@pytest.fixture
def simulate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SimulatedAws]]:
    """Start a simulated AWS with the given faults and point boto3 at it (one at a time)."""
    with ExitStack() as stack:

        def start(**faults: Any) -> SimulatedAws:
            stack.close()
            aws = stack.enter_context(
                SimulatedAws(SimulationSettings(services_per_day=4, page_size=5, **faults))
            )
            for name, value in aws.environment().items():
                monkeypatch.setenv(name, value)
            return aws

        yield start


def retries_of(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY")


def raw_page_count(database_url: str, account_id: str) -> int:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        count = len(
            conn.execute(
                select(cost_explorer_page.c.id).where(
                    cost_explorer_page.c.cloud_account_id == account_id
                )
            ).all()
        )
    engine.dispose()
    return count


def expected(aws: SimulatedAws, aws_account: str) -> dict[tuple[Any, str], Decimal]:
    """What the simulation charged per day and service over D1..D3."""
    days = [D1 + timedelta(days=n) for n in range((D3 - D1).days + 1)]
    return {
        (day, s): aws.expected_cost(aws_account, day, s)
        for day in days
        for s in aws.service_names()
    }


def test_1_throttling_is_retried_with_backoff_and_counted(
    pulse: str, dagster_instance: dg.DagsterInstance, simulate: Callable[..., SimulatedAws]
) -> None:
    aws = simulate(throttle_first={ACC1: 3})
    load_rates(dagster_instance)

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert result.success
    metadata = materialization(result, "cost_explorer_raw").metadata
    assert metadata["requests"].value == metadata["pages"].value + 3 == aws.request_count(ACC1)
    assert amounts_by_service(pulse, "acc-1") == expected(aws, ACC1)


def test_2_access_denied_is_not_retried_and_other_accounts_carry_on(
    pulse: str, dagster_instance: dg.DagsterInstance, simulate: Callable[..., SimulatedAws]
) -> None:
    simulate()
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before = stored_rows(pulse, "acc-1")
    aws = simulate(required_external_ids={ROLE1: "the-external-id-pulse-was-given"})

    denied = run_sync(dagster_instance, "acc-1", D1, D3)
    other = run_sync(dagster_instance, "acc-2", D1, D3)

    assert not denied.success and retries_of(denied) == 0
    assert failure_of(denied) == (
        "CloudAccount acc-1 (org-1 production): AWS denied AssumeRole on "
        f"{ROLE1} (AccessDenied); check that the role's trust policy allows PULSE and requires "
        "this account's external ID"
    )
    assert aws.request_count(ACC1) == 0
    assert stored_rows(pulse, "acc-1") == before
    assert other.success and amounts_by_service(pulse, "acc-2") == expected(aws, ACC2)
    assert write_status(dagster_instance, [denied.run_id, other.run_id]).success
    assert account_status(pulse, "acc-1")["status"] == "error"
    assert account_status(pulse, "acc-2")["status"] == "active"


def test_3_credentials_expiring_mid_window_are_renewed_and_the_window_completed(
    pulse: str, dagster_instance: dg.DagsterInstance, simulate: Callable[..., SimulatedAws]
) -> None:
    aws = simulate(expire_token_at_page={ACC1: 2})
    load_rates(dagster_instance)

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert result.success
    assert aws.assume_role_count(ACC1) == 2
    assert materialization(result, "cost_explorer_raw").metadata["credential_renewals"].value == 1
    assert amounts_by_service(pulse, "acc-1") == expected(aws, ACC1)


@pytest.mark.parametrize(
    ("code", "page", "cause"),
    [
        ("DataUnavailableException", 1, "Cost Explorer has no data for this window yet"),
        (
            "BillExpirationException",
            1,
            "the window starts before the daily history Cost Explorer keeps",
        ),
        ("InvalidNextTokenException", 2, "Cost Explorer rejected its own pagination token twice"),
        ("RequestChangedException", 2, "Cost Explorer said the request changed between pages"),
    ],
)
def test_4_cost_explorer_errors_end_clearly_without_writing(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    simulate: Callable[..., SimulatedAws],
    code: str,
    page: int,
    cause: str,
) -> None:
    simulate()
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before, pages_before = stored_rows(pulse, "acc-1"), raw_page_count(pulse, "acc-1")
    simulate(fail_with={ACC1: (code, page)})

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert not result.success and retries_of(result) == 0
    assert failure_of(result).startswith(f"CloudAccount acc-1 (org-1 production): {cause}")
    assert failure_of(result).endswith(f"({code})")
    assert stored_rows(pulse, "acc-1") == before
    assert raw_page_count(pulse, "acc-1") == pages_before


def test_6_a_connection_dropped_mid_write_rolls_back_and_the_retry_rewrites_the_window(
    pulse: str, dagster_instance: dg.DagsterInstance, simulate: Callable[..., SimulatedAws]
) -> None:
    simulate()
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before = stored_rows(pulse, "acc-1")
    url, schema = to_sqlalchemy_url(pulse)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True, options=f"-c search_path={schema}") as admin:
        admin.execute(
            "CREATE FUNCTION slow_insert() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(5); "
            "RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        admin.execute(
            'CREATE TRIGGER slow_insert BEFORE INSERT ON "CostRecord" '
            "FOR EACH STATEMENT EXECUTE FUNCTION slow_insert()"
        )
        killed: list[int] = []

        def kill_the_writer() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                for (pid,) in admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY \"CostRecord\"%' "
                    "AND state = 'active' AND pid <> pg_backend_pid()"
                ).fetchall():
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.append(pid)
                time.sleep(0.1)

        killer = threading.Thread(target=kill_the_writer)
        killer.start()
        result = run_sync(dagster_instance, "acc-1", D1, D3)
        killer.join()
        admin.execute('DROP TRIGGER slow_insert ON "CostRecord"')

    assert len(killed) == 1 and result.success
    (retry,) = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert "CloudAccount acc-1: PULSE's database failed during the sync (OperationalError)" in str(
        retry.event_specific_data
    )
    assert stored_rows(pulse, "acc-1") == before
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["status"] == "active"


def test_8_two_syncs_of_one_account_at_once_leave_the_rows_of_one_sync(
    pulse: str,
    dagster_postgres_url: str,
    simulate: Callable[..., SimulatedAws],
    tmp_path: Path,
) -> None:
    """Two run processes at once (as two launches past the queue's per-account limit would be)."""
    aws = simulate(latency_seconds=0.3)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {dagster_postgres_url}\n"
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        load_rates(instance)
        instance.add_dynamic_partitions("cloud_accounts", ["acc-1"])
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    config = {
        "ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}
    }
    command = [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
        "-m", "pulse_pipeline.defs.definitions", "--select", "cost_explorer_raw,daily_costs_eur",
        "--partition", "acc-1", "--config-json", json.dumps(config),
    ]  # fmt: skip
    logs = [(tmp_path / f"run-{n}.log").open("w") for n in range(2)]
    processes = [
        subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs
    ]
    codes = [process.wait(timeout=300) for process in processes]
    for log in logs:
        log.close()

    assert codes == [0, 0], (tmp_path / "run-0.log").read_text()[-2000:]
    rows = stored_rows(pulse, "acc-1")
    keys = [(row[1], row[2], row[9]) for row in rows]
    assert len(keys) == len(set(keys))
    assert amounts_by_service(pulse, "acc-1") == expected(aws, ACC1)
    assert raw_page_count(pulse, "acc-1") > 0


def test_9_a_network_timeout_is_retried_then_fails_clearly(
    pulse: str, dagster_instance: dg.DagsterInstance, simulate: Callable[..., SimulatedAws]
) -> None:
    aws = simulate(sts_latency_seconds=2.0)
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1"])
    impatient = AwsCostExplorer(read_timeout_seconds=0.5, connect_timeout_seconds=1, max_attempts=2)

    result = dg.materialize(
        [sync_cloud_accounts],
        instance=dagster_instance,
        partition_key="acc-1",
        resources={
            "pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL")),
            "aws": impatient,
            "settings": CostSettings(),
        },
        run_config={
            "ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}
        },
        raise_on_error=False,
    )

    assert not result.success
    assert retries_of(result) == 2  # the RetryPolicy's attempts, each after botocore's own 2
    assert aws.assume_role_count(ACC1) == 3 * 2
    assert failure_of(result) == (
        "CloudAccount acc-1 (org-1 production): could not reach AWS for AssumeRole (ReadTimeoutError)"
    )
    assert stored_rows(pulse, "acc-1") == []


def test_10_an_unreachable_pulse_database_fails_before_any_aws_request(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    simulate: Callable[..., SimulatedAws],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aws = simulate()
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:db-pw@127.0.0.1:1/pulse")

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert not result.success
    assert failure_of(result).startswith(
        "CloudAccount acc-1: PULSE's database failed during the sync (OperationalError)"
    )
    assert "db-pw" not in failure_of(result)
    assert aws.assume_role_count(ACC1) == 0 and aws.request_count(ACC1) == 0


def test_11_in_a_batch_a_transient_failure_is_retried_without_refetching_the_others(
    pulse: str, dagster_instance: dg.DagsterInstance, simulate: Callable[..., SimulatedAws]
) -> None:
    # acc-1's first two requests are throttled, more than the client's 2 attempts allow.
    aws = simulate(throttle_first={ACC1: 2})
    load_rates(dagster_instance)
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1", "acc-2"])

    result = dg.materialize(
        [sync_cloud_accounts],
        instance=dagster_instance,
        tags={
            "dagster/asset_partition_range_start": "acc-1",
            "dagster/asset_partition_range_end": "acc-2",
        },
        resources={
            "pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL")),
            "aws": AwsCostExplorer(max_attempts=2),
            "settings": CostSettings(),
        },
        run_config={
            "ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}
        },
        raise_on_error=False,
    )

    assert result.success and retries_of(result) == 0  # retried inside the batch, not the step
    raw = {
        m.partition: m.metadata["pages"].value
        for m in (
            e.step_materialization_data.materialization
            for e in result.get_asset_materialization_events()
        )
        if m.asset_key == dg.AssetKey("cost_explorer_raw")
    }
    assert amounts_by_service(pulse, "acc-1") == expected(aws, ACC1)
    assert amounts_by_service(pulse, "acc-2") == expected(aws, ACC2)
    assert aws.request_count(ACC2) == raw["acc-2"] > 1  # fetched once, page by page
    assert aws.request_count(ACC1) == 2 + raw["acc-1"]  # two throttled, then the retry
    assert write_status(dagster_instance, [result.run_id]).success
    assert {account_status(pulse, a)["status"] for a in ("acc-1", "acc-2")} == {"active"}


LABEL1 = "CloudAccount acc-1 (org-1 production)"


def run_batch(
    instance: dg.DagsterInstance, job: dg.JobDefinition | None = None
) -> dg.ExecuteInProcessResult:
    """One run of acc-1 and acc-2 over D1..D3, as the schedule launches a batch, with the
    settings of the environment (or of `job`, loaded earlier)."""
    instance.add_dynamic_partitions("cloud_accounts", ["acc-1", "acc-2"])
    return (job or defs().resolve_job_def("sync_aws_costs")).execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: "acc-1", RANGE_END_TAG: "acc-2"},
        run_config={
            "ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}
        },
        raise_on_error=False,
    )


def failure_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    data = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert data is not None
    return {key: value.value for key, value in data.metadata.items()}


def logged(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The messages the run's code logged (what the UI's run log shows besides events)."""
    return [entry.user_message for entry in instance.all_logs(run_id) if not entry.is_dagster_event]


def synced_earlier(pulse: str, instance: dg.DagsterInstance) -> dict[str, list[Any]]:
    """Both accounts synced once; their rows, to compare with after a failure."""
    assert run_batch(instance).success
    return {account: stored_rows(pulse, account) for account in ("acc-1", "acc-2")}


def assert_acc1_failed_alone(
    pulse: str, instance: dg.DagsterInstance, aws: SimulatedAws, batch: Any, cause: str
) -> str:
    """acc-1 failed with `cause` and nothing else; acc-2 synced; the statuses say so."""
    assert not batch.success and retries_of(batch) == 0
    assert failure_of(batch) == f"1 of 2 CloudAccounts failed: {cause}"
    assert failure_metadata(batch)["failed_accounts"] == {"acc-1": cause}
    assert amounts_by_service(pulse, "acc-2") == expected(aws, ACC2)
    assert write_status(instance, [batch.run_id]).success
    acc1, acc2 = account_status(pulse, "acc-1"), account_status(pulse, "acc-2")
    assert acc1["status"] == "error" and acc1["lastSyncError"] == cause
    assert "ext-id-42" not in cause and "simulated" not in cause  # no external ID, no key
    assert acc2["status"] == "active" and acc2["lastSyncError"] is None
    return cause


@pytest.mark.parametrize(
    ("faults", "max_pages", "requests", "what_happened"),
    [
        (
            {"endless_pages": {ACC1}},
            None,
            200,
            "Cost Explorer kept returning pages past the limit of 200 (PULSE_MAX_PAGES); "
            "stopped after 200 paid requests ($2.00) and wrote nothing; raise PULSE_MAX_PAGES "
            "if the account really has that many pages",
        ),
        (
            # acc-1: at least 36 groups, 8 pages of 5; acc-2: at most 24, 5 pages.
            {"services_by_account": {ACC1: 12}},
            "5",
            5,
            "Cost Explorer kept returning pages past the limit of 5 (PULSE_MAX_PAGES); stopped "
            "after 5 paid requests ($0.05) and wrote nothing; raise PULSE_MAX_PAGES if the "
            "account really has that many pages",
        ),
        (
            # The first request (which accounts the role sees) is page 1 of the fetch.
            {"repeat_token_at_page": {ACC1: 2}},
            None,
            3,
            "Cost Explorer returned the same NextPageToken twice (page 3 repeated the token of "
            "page 2), which would repeat the same pages forever; stopped after 3 paid requests "
            "($0.03) and wrote nothing",
        ),
    ],
    ids=["new-tokens-forever", "more-pages-than-PULSE_MAX_PAGES", "repeated-token"],
)
def test_12_pagination_past_the_ceiling_fails_the_account_at_once_and_is_never_retried(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    simulate: Callable[..., SimulatedAws],
    monkeypatch: pytest.MonkeyPatch,
    faults: dict[str, Any],
    max_pages: str | None,
    requests: int,
    what_happened: str,
) -> None:
    simulate()
    load_rates(dagster_instance)
    before = synced_earlier(pulse, dagster_instance)
    pages_before = raw_page_count(pulse, "acc-1")
    aws = simulate(**faults)
    if max_pages:
        monkeypatch.setenv("PULSE_MAX_PAGES", max_pages)

    batch = run_batch(dagster_instance)

    cause = f"{LABEL1}: {what_happened}"
    assert_acc1_failed_alone(pulse, dagster_instance, aws, batch, cause)
    # Exactly the ceiling, once: not retried by botocore, nor at the end of the batch.
    assert aws.request_count(ACC1) == requests
    assert stored_rows(pulse, "acc-1") == before["acc-1"]
    assert raw_page_count(pulse, "acc-1") == pages_before
    # The run's bill counts the failed account's paid requests too.
    paid = requests + aws.request_count(ACC2)
    bill = failure_metadata(batch)
    assert (bill["cost_explorer_requests"], bill["cost_explorer_paid_requests"]) == (paid, paid)
    assert bill["cost_explorer_usd"] == float(Decimal("0.01") * paid)
    assert (
        f"Cost Explorer requests of this run: {paid} paid (${Decimal('0.01') * paid} at $0.01 "
        "each), 0 failed or retried (free)"
    ) in logged(dagster_instance, batch.run_id)

    aws.reset_request_counts()
    alone = run_sync(dagster_instance, "acc-1", D1, D3)

    assert not alone.success and retries_of(alone) == 0  # no RetryPolicy attempt either
    assert failure_of(alone) == cause
    assert aws.request_count(ACC1) == requests
    assert failure_metadata(alone)["cost_explorer_paid_requests"] == requests
    assert stored_rows(pulse, "acc-1") == before["acc-1"]


@pytest.mark.parametrize("partition", ["aws-cn", "aws-us-gov"])
def test_13_a_role_in_another_aws_partition_is_refused_before_any_aws_call(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    simulate: Callable[..., SimulatedAws],
    partition: str,
) -> None:
    simulate()
    load_rates(dagster_instance)
    before = synced_earlier(pulse, dagster_instance)
    role = f"arn:{partition}:iam::111111111111:role/PulseRead"
    set_account(pulse, "acc-1", roleArn=role)
    aws = simulate()

    batch = run_batch(dagster_instance)

    cause = (
        f"{LABEL1}: its IAM role {role} is in the AWS partition {partition}, but PULSE's own "
        "AWS credentials are in aws (region us-east-1) and can only assume roles there; connect "
        "a role of an AWS account in aws"
    )
    assert_acc1_failed_alone(pulse, dagster_instance, aws, batch, cause)
    assert aws.assume_role_count(ACC1) == 0 and aws.request_count(ACC1) == 0
    assert stored_rows(pulse, "acc-1") == before["acc-1"]

    alone = run_sync(dagster_instance, "acc-1", D1, D3)

    assert not alone.success and retries_of(alone) == 0
    assert failure_of(alone) == cause
    assert aws.assume_role_count(ACC1) == 0 and aws.request_count(ACC1) == 0


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        (
            "PULSE_RECORD_TYPES",
            "usage,tax",
            "PULSE_RECORD_TYPES is invalid: unknown record type 'usage', 'tax' (did you mean "
            "Usage, Tax?); use AWS's exact names (Usage, DiscountedUsage, ",
        ),
        (
            "PULSE_MAX_PAGES",
            "0",
            "PULSE_MAX_PAGES is invalid: must be a whole number of at least 1 (the most Cost "
            "Explorer pages, $0.01 each, one account's fetch may ask for))",
        ),
    ],
)
def test_14_an_invalid_setting_in_the_runs_environment_fails_before_any_aws_request(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    simulate: Callable[..., SimulatedAws],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    reason: str,
) -> None:
    """Loaded with a valid value (an invalid one fails the load: test_settings.py), run with
    an invalid one."""
    simulate()
    load_rates(dagster_instance)
    before = synced_earlier(pulse, dagster_instance)
    monkeypatch.setenv(variable, "1" if variable == "PULSE_MAX_PAGES" else "Usage")
    job = defs().resolve_job_def("sync_aws_costs")
    monkeypatch.setenv(variable, value)
    aws = simulate()

    result = run_batch(dagster_instance, job)

    assert not result.success and retries_of(result) == 0
    assert aws.total_requests() == 0
    assert aws.assume_role_count(ACC1) == aws.assume_role_count(ACC2) == 0
    monkeypatch.delenv(variable)
    assert write_status(dagster_instance, [result.run_id]).success
    for account in ("acc-1", "acc-2"):  # a deployment setting: every account of the run
        status = account_status(pulse, account)
        assert status["status"] == "error"
        assert status["lastSyncError"].startswith(
            f"CloudAccount {account}: the sync run could not start ({reason}"
        )
        assert stored_rows(pulse, account) == before[account]
