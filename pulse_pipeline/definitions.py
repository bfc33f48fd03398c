"""The pulse_pipeline code location: assembles assets, jobs, schedules, sensors and resources."""

import os

import dagster as dg

from pulse_pipeline.assets import ecb_fx_rates, ecb_rates_current, sync_cloud_accounts
from pulse_pipeline.jobs import (
    refresh_ecb_rates,
    report_cost_freshness,
    sync_aws_costs,
    test_aws_connection,
    write_sync_status_job,
)
from pulse_pipeline.schedules import daily_aws_cost_sync, daily_ecb_rates
from pulse_pipeline.sensors import (
    cost_freshness,
    new_cloud_accounts,
    sync_requests,
    sync_status_writer,
)
from pulse_pipeline.settings import resources_from_environment


@dg.definitions
def defs() -> dg.Definitions:
    """Everything the data team sees, with resources configured from the environment when the
    code location loads (an invalid setting fails the load with one sentence)."""
    return dg.Definitions(
        assets=[sync_cloud_accounts, ecb_fx_rates],
        asset_checks=[ecb_rates_current],
        jobs=[
            sync_aws_costs,
            refresh_ecb_rates,
            write_sync_status_job,
            report_cost_freshness,
            test_aws_connection,
        ],
        schedules=[daily_aws_cost_sync, daily_ecb_rates],
        sensors=[new_cloud_accounts, sync_status_writer, cost_freshness, sync_requests],
        # One process per run: steps share it instead of each paying for the imports again.
        executor=dg.in_process_executor,
        resources=resources_from_environment(os.environ),
    )
