"""The pulse_pipeline code location: assembles assets, jobs and resources."""

import dagster as dg

from pulse_pipeline.assets import ecb_fx_rates, sync_cloud_accounts
from pulse_pipeline.jobs import refresh_ecb_rates, sync_aws_costs, write_sync_status_job
from pulse_pipeline.resources import AwsCostExplorer, CostSettings, EcbRates, PulseDatabase
from pulse_pipeline.schedules import daily_aws_cost_sync, daily_ecb_rates
from pulse_pipeline.sensors import new_cloud_accounts, sync_status_writer

defs = dg.Definitions(
    assets=[sync_cloud_accounts, ecb_fx_rates],
    jobs=[sync_aws_costs, refresh_ecb_rates, write_sync_status_job],
    schedules=[daily_aws_cost_sync, daily_ecb_rates],
    sensors=[new_cloud_accounts, sync_status_writer],
    # One process per run: steps share it instead of each paying for the imports again.
    executor=dg.in_process_executor,
    resources={
        "pulse_db": PulseDatabase(),
        "aws": AwsCostExplorer(),
        "ecb": EcbRates(),
        "settings": CostSettings(),
    },
)
