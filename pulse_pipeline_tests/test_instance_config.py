"""The two Dagster instance configurations in the repository load and work."""

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]


def test_production_dagster_yaml_runs_on_postgresql(
    dagster_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(dagster_postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        instance.add_dynamic_partitions("cloud_accounts", ["acc-config-check"])
        assert "acc-config-check" in instance.get_dynamic_partitions("cloud_accounts")
        instance.delete_dynamic_partition("cloud_accounts", "acc-config-check")
        limits = instance.get_concurrency_config()
        assert limits.pool_config.default_pool_limit == 5
        # Runs waiting for a pool slot are started ahead, so a freed slot is not left idle.
        assert limits.run_queue_config.op_concurrency_slot_buffer == 5
        per_account = limits.run_queue_config.tag_concurrency_limits
        assert per_account == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]


@pytest.mark.parametrize("config", ["dagster.yaml", "dagster.local.yaml"])
def test_instance_configs_name_only_public_modules(config: str) -> None:
    modules = re.findall(r"^\s*module:\s*(\S+)", (REPO / config).read_text(), re.MULTILINE)
    private = [m for m in modules if any(part.startswith("_") for part in m.split("."))]
    assert private == []


def test_local_dagster_yaml_limits_one_sync_per_account(tmp_path: Path) -> None:
    shutil.copy(REPO / "dagster.local.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = instance.get_concurrency_config()
        assert limits.pool_config.default_pool_limit == 5
        assert limits.run_queue_config.tag_concurrency_limits[0]["key"] == "dagster/partition"
