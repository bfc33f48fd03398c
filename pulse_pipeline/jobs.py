"""The jobs the data team launches: the per-account cost sync and the status write-back."""

import dagster as dg

from pulse_pipeline.assets import DAILY_COSTS, RAW_PAGES, ecb_fx_rates
from pulse_pipeline.partitions import cloud_accounts_partitions
from pulse_pipeline.sync_status import write_sync_status_op

sync_aws_costs = dg.define_asset_job(
    name="sync_aws_costs",
    selection=dg.AssetSelection.assets(RAW_PAGES.key, DAILY_COSTS.key),
    partitions_def=cloud_accounts_partitions,
    description=(
        "Sync one CloudAccount, or a partition range of them: fetch the Cost Explorer pages for "
        "the window in run config (ops.sync_cloud_accounts.config.start_date/end_date), then "
        "rewrite the EUR CostRecords."
    ),
)

refresh_ecb_rates = dg.define_asset_job(
    name="refresh_ecb_rates",
    selection=dg.AssetSelection.assets(ecb_fx_rates),
    description="Load the ECB euro reference rates that daily_costs_eur converts with.",
)


@dg.job(
    name="write_sync_status",
    description="Write the outcome of finished sync runs to PULSE's CloudAccount rows.",
)
def write_sync_status_job() -> None:
    write_sync_status_op()
