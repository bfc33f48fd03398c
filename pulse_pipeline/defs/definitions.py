"""The pulse_pipeline code location: assembles assets, jobs, schedules, sensors and resources."""

import os
import warnings

import dagster as dg

from pulse_pipeline.defs.assets import ecb_fx_rates, ecb_rates_current, sync_cloud_accounts
from pulse_pipeline.defs.checks import cost_freshness_check, reconcile_cost_records
from pulse_pipeline.defs.jobs import (
    refresh_ecb_rates,
    report_cost_freshness,
    sync_aws_costs,
    test_aws_connection,
    write_sync_status_job,
)
from pulse_pipeline.defs.schedules import daily_aws_cost_sync, daily_ecb_rates
from pulse_pipeline.defs.sensors import (
    cost_freshness,
    new_cloud_accounts,
    sync_requests,
    sync_status_writer,
)
from pulse_pipeline.defs.settings import resources_from_environment
from pulse_pipeline.defs.view_assets import focus_costs, monthly_costs_eur


@dg.definitions
def defs() -> dg.Definitions:
    """Everything the data team sees, with resources configured from the environment when the
    code location loads (an invalid setting fails the load with one sentence)."""
    definitions = dg.Definitions(
        assets=[sync_cloud_accounts, ecb_fx_rates, monthly_costs_eur, focus_costs],
        asset_checks=[reconcile_cost_records, cost_freshness_check, ecb_rates_current],
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
    with warnings.catch_warnings():
        # Dagster 1.13 passes an empty `owners` when it binds resources to a sensor's jobs and
        # then warns that sensor owners are beta, in every process that loads the location.
        warnings.filterwarnings("ignore", "Parameter `owners`", dg.BetaWarning)
        definitions.get_repository_def()
    return definitions
