"""One partition per PULSE CloudAccount (the key is `CloudAccount.id`), and batches of them per run."""

from collections.abc import Sequence

import dagster as dg

CLOUD_ACCOUNTS = "cloud_accounts"
# Dagster's run tags for the partition of a run, or the partition range of a batch run.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Accounts synced by one run when the schedule, the sensor or a backfill launches many: a run
# costs seconds of CPU to start (it imports the code location), an account far less to sync.
ACCOUNTS_PER_RUN = 25

cloud_accounts_partitions = dg.DynamicPartitionsDefinition(name=CLOUD_ACCOUNTS)


def contiguous_batches(ordered: Sequence[str], due: set[str]) -> list[list[str]]:
    """The due accounts in partition order, cut into runs of consecutive partitions.

    A batch run covers a partition range, so a partition that is not due (a disconnected
    account) ends a batch instead of being synced with it.
    """
    batches: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in due and len(current) < ACCOUNTS_PER_RUN:
            current.append(key)
            continue
        if current:
            batches.append(current)
        current = [key] if key in due else []
    if current:
        batches.append(current)
    return batches


def accounts_in_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[str]:
    """The accounts a run covers: its partition, or every partition of its partition range."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start = tags.get(RANGE_START_TAG)
    end = tags.get(RANGE_END_TAG)
    if start is None or end is None:
        return []
    keys = instance.get_dynamic_partitions(CLOUD_ACCOUNTS)
    if start not in keys or end not in keys:
        return [key for key in (start, end) if key]
    return list(keys[keys.index(start) : keys.index(end) + 1])


def batch_run_request(
    batch: Sequence[str], run_key: str, tags: dict[str, str], job_name: str | None = None
) -> dg.RunRequest:
    """One run for a batch: a single partition, or a partition range over several."""
    if len(batch) == 1:
        return dg.RunRequest(
            job_name=job_name, partition_key=batch[0], run_key=f"{run_key}:{batch[0]}", tags=tags
        )
    return dg.RunRequest(
        job_name=job_name,
        run_key=f"{run_key}:{batch[0]}..{batch[-1]}",
        tags={
            **tags,
            RANGE_START_TAG: batch[0],
            RANGE_END_TAG: batch[-1],
            "pulse/accounts": str(len(batch)),
        },
    )
