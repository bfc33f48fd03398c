"""The environment, PULSE database and seed accounts behind conftest's fixtures, as functions a
fixture of any scope can call."""

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import insert

from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline_tests.ce_results import ecb_history_csv
from pulse_pipeline_tests.support import RATES, account_row


def fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, one region, the bundled ECB history, and no profile, endpoint, other
    PULSE_* setting or DATABASE_URL left over: nothing can reach real AWS or the ECB."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PULSE_")) or name in ("DATABASE_URL", "DAGSTER_HOME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # Offline ECB rates unless a test serves its own: tests never reach the ECB.
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", "bundled")


def empty_database_url(kind: str, tmp_path: Path, postgres_database: str | None) -> str:
    """An empty PULSE database: a SQLite file, or a fresh schema given in the Prisma URL form."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'pulse.db'}"
    assert postgres_database is not None
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{postgres_database}?schema={schema}"


def seed_two_accounts(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two AWS accounts of two orgs in PULSE, and the ECB history file the sync reads."""
    history = tmp_path / "eurofxref-hist.csv"
    history.write_text(ecb_history_csv(RATES))
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", str(history))
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [
                account_row("acc-1", "org-1", "arn:aws:iam::111111111111:role/PulseRead"),
                account_row("acc-2", "org-2", "arn:aws:iam::222222222222:role/PulseRead"),
            ],
        )
    engine.dispose()
