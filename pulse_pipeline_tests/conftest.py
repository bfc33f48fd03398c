"""Shared fixtures: fake AWS settings, and PULSE databases on SQLite and the real PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from pulse_pipeline_tests.databases import fresh_postgres_database
from pulse_pipeline_tests.pulse_setup import (
    empty_database_url,
    fake_aws_environment,
    seed_two_accounts,
)
from pulse_pipeline_tests.shared_dagster import SharedDagster, shared_dagster_dev


@pytest.fixture(autouse=True)
def fake_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach real AWS, the ECB or a developer's settings (see fake_aws_environment)."""
    fake_aws_environment(monkeypatch)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (PULSE schemas, one per test)."""
    with fresh_postgres_database("pulse_test") as url:
        yield url


@pytest.fixture(scope="session")
def dagster_postgres_url() -> Iterator[str]:
    """Dagster's own storage on PostgreSQL, in its own database; psycopg2 because
    dagster-postgres's NOTIFY needs it."""
    with fresh_postgres_database("pulse_dagster_test") as url:
        yield url.replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.fixture(scope="session")
def shared_dagster(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedDagster]:
    """One `dagster dev` for the session's end-to-end modules (see shared_dagster.py)."""
    with shared_dagster_dev(postgres_database, tmp_path_factory.mktemp("shared_dagster")) as dev:
        yield dev


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty PULSE database: a SQLite file, or a fresh schema given in the Prisma URL form."""
    server_db = None if request.param == "sqlite" else request.getfixturevalue("postgres_database")
    return empty_database_url(request.param, tmp_path, server_db)


@pytest.fixture
def pulse_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """PULSE's schema migrated into the fresh database, and DATABASE_URL pointing at it."""
    from pulse_pipeline.db.migrate import upgrade

    upgrade(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


@pytest.fixture
def dagster_instance(
    database_url: str, request: pytest.FixtureRequest
) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance on the same kind of database as PULSE's in this test."""
    overrides = None
    if database_url.startswith("postgresql"):
        storage_url: str = request.getfixturevalue("dagster_postgres_url")
        overrides = {"storage": {"postgres": {"postgres_url": storage_url}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        _wipe(instance)  # the PostgreSQL storage is shared by the session's tests
        yield instance
        _wipe(instance)


def _wipe(instance: dg.DagsterInstance) -> None:
    instance.wipe()
    for key in instance.get_dynamic_partitions("cloud_accounts"):
        instance.delete_dynamic_partition("cloud_accounts", key)


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """moto's STS and Cost Explorer in this process, reached by the ordinary boto3 clients."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def pulse(pulse_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """PULSE with two accounts of two orgs, and the ECB history the sync reads."""
    seed_two_accounts(pulse_database, tmp_path, monkeypatch)
    return pulse_database
