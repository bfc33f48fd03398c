"""One partition per PULSE CloudAccount (the key is `CloudAccount.id`), and batches of them per run."""

import logging
from collections.abc import Iterable, Sequence

import dagster as dg
from sqlalchemy import Connection

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.db import queries
from pulse_pipeline.keys import SYNC_ASSETS

CLOUD_ACCOUNTS = "cloud_accounts"
# Dagster's run tags for the partition of a run, or the partition range of a batch run.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Accounts synced by one run when the schedule, the sensor or a backfill launches many: a run
# costs seconds of CPU to start (it imports the code location), an account far less to sync.
ACCOUNTS_PER_RUN = 25

# Dagster keeps partition keys in PostgreSQL btree indexes (dynamic_partitions, run_tags,
# event_logs, asset_check_executions), and a batch run's key, a run tag, holds two of them. A
# btree entry holds at most 2,704 bytes: beside a tag name, 2,676 bytes of incompressible text
# (an id 2,680 characters long fails every insert with ProgramLimitExceeded). 1,024 bytes per
# key leaves room for the two keys of a run key and the names beside them in every index.
MAX_PARTITION_KEY_BYTES = 1024
# What Dagster refuses in a partition key (its INVALID_PARTITION_SUBSTRINGS); PostgreSQL cannot
# store a NUL either.
REFUSED_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")

cloud_accounts_partitions = dg.DynamicPartitionsDefinition(name=CLOUD_ACCOUNTS)


def partition_key_problem(key: str) -> str | None:
    """Why `key` cannot be a cloud_accounts partition key, or None if it can."""
    if not key:
        return "is empty"
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        return "is not valid Unicode"
    if size > MAX_PARTITION_KEY_BYTES:
        return (
            f"is {size:,} bytes long, more than the {MAX_PARTITION_KEY_BYTES:,} bytes a "
            "partition key can have in Dagster's storage"
        )
    found = [part for part in REFUSED_SUBSTRINGS if part in key]
    if found:
        shown = ", ".join(repr(part) for part in found)
        return f"contains {shown}, which Dagster does not allow in a partition key"
    return None


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
