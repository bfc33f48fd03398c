"""What the data team sees in the Dagster UI: an accidental change here must fail a test."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pulse_pipeline.defs.definitions import defs


def test_assets_partitions_and_lineage() -> None:
    graph = defs().resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        "cost_explorer_raw",
        "daily_costs_eur",
        "ecb_fx_rates",
        "monthly_costs_eur",
        "focus_costs",
    }
    for name in ("cost_explorer_raw", "daily_costs_eur"):
        partitions = defs().resolve_assets_def(name).partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition)
        assert partitions.name == "cloud_accounts"
    assert defs().resolve_assets_def("ecb_fx_rates").partitions_def is None
    parents = graph.get(dg.AssetKey("daily_costs_eur")).parent_keys
    assert parents == {dg.AssetKey("cost_explorer_raw"), dg.AssetKey("ecb_fx_rates")}
    for view in ("monthly_costs_eur", "focus_costs"):
        assert graph.get(dg.AssetKey(view)).parent_keys == {dg.AssetKey("daily_costs_eur")}
        assert defs().resolve_assets_def(view).partitions_def is None
    checks = {key.name for key in graph.asset_check_keys}
    assert checks == {
        "amounts_match_cost_explorer",
        "eur_matches_raw",
        "every_row_has_a_rate",
        "no_duplicate_rows",
        "synced_recently",
        "rates_current",
    }
    groups = {defs().resolve_assets_def(key).group_names_by_key[dg.AssetKey(key)] for key in keys}
    assert groups == {"aws_costs"}


def test_every_asset_and_job_is_described_for_the_ui() -> None:
    for key in (
        "cost_explorer_raw",
        "daily_costs_eur",
        "ecb_fx_rates",
        "monthly_costs_eur",
        "focus_costs",
    ):
        description = defs().resolve_assets_def(key).descriptions_by_key[dg.AssetKey(key)]
        assert description and len(description) > 80
    for job_name in (
        "sync_aws_costs",
        "refresh_ecb_rates",
        "write_sync_status",
        "report_cost_freshness",
        "test_aws_connection",
    ):
        assert defs().resolve_job_def(job_name).description


def test_sync_job_selects_both_partitioned_assets() -> None:
    job = defs().resolve_job_def("sync_aws_costs")
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} == {
        "cost_explorer_raw",
        "daily_costs_eur",
    }
    assert isinstance(job.partitions_def, dg.DynamicPartitionsDefinition)
    assert job.partitions_def.name == "cloud_accounts"
    assert {"pulse_db", "aws"} <= set(job.resource_defs)


def test_schedule_and_sensors_the_data_team_relies_on() -> None:
    schedule = defs().resolve_schedule_def("daily_aws_cost_sync")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 5 * * *", "UTC")
    assert schedule.job_name == "sync_aws_costs" and schedule.description
    repository = defs().get_repository_def()
    sensors = {sensor.name: sensor for sensor in repository.sensor_defs}
    assert set(sensors) == {
        "new_cloud_accounts",
        "sync_status_writer",
        "cost_freshness",
        "sync_requests",
    }
    assert sorted(s.name for s in repository.schedule_defs) == [
        "daily_aws_cost_sync",
        "daily_ecb_rates",
    ]
    ecb = defs().resolve_schedule_def("daily_ecb_rates")
    assert (ecb.cron_schedule, ecb.execution_timezone, ecb.job_name) == (
        "30 4 * * *",
        "UTC",
        "refresh_ecb_rates",
    )
    assert {job.name for job in sensors["new_cloud_accounts"].jobs} == {
        "sync_aws_costs",
        "refresh_ecb_rates",
    }
    assert sensors["sync_status_writer"].job_name == "write_sync_status"
    assert sensors["cost_freshness"].minimum_interval_seconds == 600
    assert sensors["cost_freshness"].job_name == "report_cost_freshness"
    # The PULSE app's buttons are served within 15 s, by the same sync job as everything else.
    assert sensors["sync_requests"].minimum_interval_seconds <= 15
    assert sensors["sync_requests"].default_status == dg.DefaultSensorStatus.RUNNING
    assert {job.name for job in sensors["sync_requests"].jobs} == {
        "sync_aws_costs",
        "test_aws_connection",
    }
    assert all(sensor.description for sensor in sensors.values())


def test_the_checks_that_make_stale_money_and_stale_costs_visible() -> None:
    graph = defs().resolve_asset_graph()
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert {("ecb_fx_rates", "rates_current"), ("daily_costs_eur", "synced_recently")} <= checks


def test_loading_the_code_location_prints_no_beta_or_preview_warning(tmp_path: Path) -> None:
    """Every run process loads the code location: its stderr is what the run log shows."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "from pulse_pipeline.defs.definitions import defs; "
            "defs().resolve_job_def('sync_aws_costs'); defs().get_repository_def()",
        ],
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'pulse.db'}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "BetaWarning" not in loaded.stderr and "PreviewWarning" not in loaded.stderr
    assert "DeprecationWarning" not in loaded.stderr, loaded.stderr
