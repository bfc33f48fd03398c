"""The sync of CloudAccounts as plain code, without Dagster.

`batch.sync_accounts` syncs the accounts of one run: for each it reads the CloudAccount
(`target`), fetches its window from Cost Explorer (`fetch`), stores the raw pages (`store`),
converts them to EUR and replaces its CostRecords (`write`). Every failure becomes one
secret-free sentence naming the account (`failures`). The assets in `pulse_pipeline.defs.assets`
only declare what the data team sees and turn these results into Dagster events.
"""
