"""The data team's shell path: `dagster asset materialize ... --partition ID --config-json ...`,
in a separate process that reaches AWS only through the standard AWS_ENDPOINT_URL setting."""

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
from sqlalchemy import insert, select

from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cloud_account, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import amounts_by_service

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_asset_materialize_from_a_shell_syncs_one_account(
    database_url: str, tmp_path: Path
) -> None:
    upgrade(database_url)
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account).values(
                id="acc-cli",
                orgId="org-1",
                provider="AWS",
                accountName="CLI account",
                connectionType="COST_EXPLORER",
                roleArn="arn:aws:iam::555555555555:role/PulseRead",
                externalId="ext-id-cli",
            )
        )
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("cloud_accounts", ["acc-cli"])
    end = datetime.now(UTC).date() - timedelta(days=2)
    start = end - timedelta(days=6)
    settings = SimulationSettings(services_per_day=5, page_size=8)

    with SimulatedAws(settings) as aws:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            **aws.environment(),
            "DAGSTER_HOME": str(home),
            "DATABASE_URL": database_url,
        }
        config = {
            "ops": {
                "sync_cloud_accounts": {
                    "config": {"start_date": start.isoformat(), "end_date": end.isoformat()}
                }
            }
        }
        completed = subprocess.run(
            [
                DAGSTER,
                "asset",
                "materialize",
                "-m",
                "pulse_pipeline.defs.definitions",
                "--select",
                "ecb_fx_rates",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        completed = subprocess.run(
            [
                DAGSTER,
                "asset",
                "materialize",
                "-m",
                "pulse_pipeline.defs.definitions",
                "--select",
                "cost_explorer_raw,daily_costs_eur",
                "--partition",
                "acc-cli",
                "--config-json",
                json.dumps(config),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        requests = aws.request_count("555555555555")
        expected = {
            (start + timedelta(days=n), service): aws.expected_cost(
                "555555555555", start + timedelta(days=n), service
            )
            for n in range(7)
            for service in aws.service_names()
        }

    with engine.connect() as conn:
        rows = conn.execute(
            select(
                cost_record.c.date,
                cost_record.c.service,
                cost_record.c.amount,
                cost_record.c.currency,
            ).where(cost_record.c.cloudAccountId == "acc-cli")
        ).all()
    engine.dispose()
    assert amounts_by_service(database_url, "acc-cli") == expected
    assert {row.currency for row in rows} == {"USD"}
    # The first request (which accounts the role sees: one page), then one request per result
    # page of 8 groups (a group = a day's service and record type).
    assert requests == 1 + math.ceil(len(rows) / 8) and len(rows) >= 35
    assert sum(expected.values(), Decimal(0)) > 0
