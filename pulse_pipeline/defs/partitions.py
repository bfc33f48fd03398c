"""One partition per PULSE CloudAccount (the key is `CloudAccount.id`), and batches of them per run."""

import logging
import math
from collections.abc import Iterable, Sequence

import dagster as dg
from sqlalchemy import Connection

from pulse_pipeline.accounts import CloudAccount, partition_key_problem
from pulse_pipeline.db import queries
from pulse_pipeline.defs.keys import SYNC_ASSETS

CLOUD_ACCOUNTS = "cloud_accounts"
# Dagster's run tags for the partition of a run, or the partition range of a batch run.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# The pool every sync step takes a slot of: its limit is how many accounts call Cost Explorer
# at once, the "lanes" the schedule and the sensor fill.
COST_EXPLORER_POOL = "cost_explorer"
# The most accounts one run of the schedule or the sensor syncs. A run syncs its accounts one
# after another (about 2 s each at 6 requests of 300 ms), so 500 stay well inside run
# monitoring's one-hour max_runtime_seconds; past lanes x 500 accounts there are more runs.
MAX_ACCOUNTS_PER_RUN = 500
# Accounts per run of a backfill. Dagster cuts a backfill into runs by this fixed number (the
# sync's BackfillPolicy) when it is launched, before any lane count is known: 5 per run keeps
# the default 5 lanes busy from 25 selected accounts on, while a run per account would cost a
# run start-up (seconds of CPU) for each.
BACKFILL_ACCOUNTS_PER_RUN = 5

cloud_accounts_partitions = dg.DynamicPartitionsDefinition(name=CLOUD_ACCOUNTS)


def refuse_unpartitionable(
    conn: Connection, accounts: Iterable[CloudAccount], log: logging.Logger
) -> dict[str, str]:
    """Mark each account whose id cannot be a partition key `error`, saying why (written and
    logged only when it changes); return those accounts' ids and sentences. Nothing can sync
    such an account, but it never stops the others."""
    refused = {}
    for account in accounts:
        problem = partition_key_problem(account.id)
        if problem is None:
            continue
        shown_id = account.id if len(account.id) <= 64 else f"{account.id[:32]}…"
        name = " ".join(account.name.split())[:100]
        sentence = (
            f"CloudAccount {shown_id!r} ({name}) cannot be synced: its id {problem}; reconnect "
            "the account in PULSE so that it gets a new id"
        )
        refused[account.id] = sentence
        if account.status != "error" or account.last_sync_error != sentence:
            queries.record_sync_result(conn, account.id, sentence)
            log.warning(sentence)
    return refused


def cost_explorer_lanes(instance: dg.DagsterInstance) -> int:
    """How many accounts can call Cost Explorer at once: the `cost_explorer` pool's limit (one
    set in the UI or with `dagster instance concurrency set`, else `concurrency.pools.
    default_limit`), capped by `concurrency.runs.max_concurrent_runs`. An instance with neither
    (the tests' in-process one) has one lane."""
    config = instance.get_concurrency_config()
    pool = instance.event_log_storage.get_concurrency_info(COST_EXPLORER_POOL).slot_count
    limits = [pool or config.pool_config.default_pool_limit]
    if config.run_queue_config is not None:
        limits.append(config.run_queue_config.max_concurrent_runs)
    known = [limit for limit in limits if limit is not None and limit > 0]
    return min(known, default=1)


def run_sizes(accounts: int, lanes: int) -> list[int]:
    """Accounts per run so that every lane is busy from the start and all finish together.

    `min(lanes, accounts)` runs of equal size (they differ by one at most); past `lanes` x
    MAX_ACCOUNTS_PER_RUN accounts, as many rounds of `lanes` runs as needed.
    """
    if accounts <= 0:
        return []
    rounds = math.ceil(accounts / (max(lanes, 1) * MAX_ACCOUNTS_PER_RUN))
    runs = min(accounts, max(lanes, 1) * rounds)
    size, extra = divmod(accounts, runs)
    return [size + 1 if n < extra else size for n in range(runs)]


def balanced_batches(ordered: Sequence[str], due: set[str], lanes: int) -> list[list[str]]:
    """The due accounts in partition order, cut into `run_sizes` runs of consecutive partitions.

    A batch run covers a partition range, so a partition that is not due (a disconnected
    account) also ends a batch instead of being synced with it.
    """
    sizes = iter(run_sizes(len(due), lanes))
    batches: list[list[str]] = []
    current: list[str] = []
    left = next(sizes, 0)  # accounts still to put in the current run's share
    for key in ordered:
        if key not in due:
            if current:  # the rest of this share goes into a run of its own
                batches.append(current)
                current = []
            continue
        current.append(key)
        left -= 1
        if left == 0:
            batches.append(current)
            current = []
            left = next(sizes, 0)
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


def unknown_partitions(
    instance: dg.DagsterInstance, partition_keys: Iterable[str], account_ids: set[str]
) -> list[str]:
    """Partitions that name no AWS Cost Explorer CloudAccount and were never materialized.

    Such a partition was never an account's (e.g. one added by hand in the launch dialog, or a
    typo): nothing is lost by removing it. A deleted account's partition that holds history
    (materializations) is kept.
    """
    unknown = []
    for key in partition_keys:
        if key in account_ids:
            continue
        materialized = any(
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=1
            ).records
            for asset in SYNC_ASSETS
        )
        if not materialized:
            unknown.append(key)
    return unknown
