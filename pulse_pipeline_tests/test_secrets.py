"""No secret ever leaves memory: a sync with known secrets (PULSE's AWS keys, the external ID,
the database password inside DATABASE_URL), one succeeding and one denied, then a scan of the
captured output, the Dagster event log and every table of PULSE's database."""

import json
from collections.abc import Iterator

import dagster as dg
import pytest
from sqlalchemy import MetaData, select

from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine, to_sqlalchemy_url
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import D1, D3, load_rates, run_sync, write_status

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
EXTERNAL_ID = "ext-SECRET-7f3a9c"
PULSE_KEY_ID = "AKIAPULSESECRET12345"
PULSE_SECRET = "pulse-secret-access-key-93jd"
DB_PASSWORD = "db-secret-pw-1x9"
SECRETS = [EXTERNAL_ID, PULSE_KEY_ID, PULSE_SECRET, DB_PASSWORD]


@pytest.fixture
def secret_settings(pulse: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedAws]:
    url, schema = to_sqlalchemy_url(pulse)
    with_password = url.set(password=DB_PASSWORD).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", f"{with_password.replace('+psycopg', '')}?schema={schema}")
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(cloud_account.update().values(externalId=EXTERNAL_ID))
    engine.dispose()
    settings = SimulationSettings(
        services_per_day=3, denied_role_arns=frozenset({"arn:aws:iam::222222222222:role/PulseRead"})
    )
    with SimulatedAws(settings) as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", PULSE_KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PULSE_SECRET)
        yield aws


def test_no_secret_in_logs_event_log_metadata_or_database(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    secret_settings: SimulatedAws,
    capfd: pytest.CaptureFixture[str],
) -> None:
    load_rates(dagster_instance)
    ok = run_sync(dagster_instance, "acc-1", D1, D3)
    denied = run_sync(dagster_instance, "acc-2", D1, D3)
    assert ok.success and not denied.success
    assert write_status(dagster_instance, [ok.run_id, denied.run_id]).success

    captured = capfd.readouterr()
    events = [
        dg.serialize_value(record)
        for run_id in (ok.run_id, denied.run_id)
        for record in dagster_instance.all_logs(run_id)
    ]
    engine = create_pulse_engine(pulse)
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        stored = [
            json.dumps([list(row) for row in conn.execute(select(table)).all()], default=str)
            for name, table in tables.tables.items()
            if name != cloud_account.name  # PULSE itself keeps the external ID there
        ]
        statuses = conn.execute(select(cloud_account.c.lastSyncError)).scalars().all()
    engine.dispose()

    haystacks = {"output": captured.out + captured.err, "event log": "\n".join(events)}
    haystacks |= {"tables": "\n".join(stored), "lastSyncError": json.dumps(statuses)}
    assert "AccessDenied" in haystacks["lastSyncError"]  # the scan looks at real content
    assert len(haystacks["event log"]) > 1000
    for where, text in haystacks.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into the {where}"
