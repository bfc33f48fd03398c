"""The names the assets, checks, sensors and the status write-back share."""

import dagster as dg

RAW_PAGES = dg.AssetKey("cost_explorer_raw")
DAILY_COSTS = dg.AssetKey("daily_costs_eur")
ECB_RATES = dg.AssetKey("ecb_fx_rates")
SYNC_ASSETS = frozenset({RAW_PAGES, DAILY_COSTS})
# Step failure metadata of a failed batch: account id -> the one-sentence cause.
FAILED_ACCOUNTS = "failed_accounts"
MONTHLY_COSTS = dg.AssetKey("monthly_costs_eur")
FOCUS_COSTS = dg.AssetKey("focus_costs")
# Step failure metadata and the failed partition's observation: the account's cause.
SYNC_ERROR = "sync_error"
# Who answers for these assets, and how the catalog finds them.
OWNERS = ["team:pulse-data"]
TAGS = {"domain": "finops", "provider": "aws"}
# Step failure metadata of a run refused before it touched any account (its config, say): the
# status write-back leaves those accounts' status as it was.
NOTHING_ATTEMPTED = "nothing_attempted"
