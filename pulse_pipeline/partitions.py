"""One partition per PULSE CloudAccount: the key is `CloudAccount.id`."""

import dagster as dg

CLOUD_ACCOUNTS = "cloud_accounts"

cloud_accounts_partitions = dg.DynamicPartitionsDefinition(name=CLOUD_ACCOUNTS)
