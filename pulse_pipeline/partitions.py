"""One partition per PULSE CloudAccount: the key is `CloudAccount.id`."""

import dagster as dg

cloud_accounts_partitions = dg.DynamicPartitionsDefinition(name="cloud_accounts")
