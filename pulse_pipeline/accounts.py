"""A PULSE CloudAccount as the pipeline sees it, and the sentence a failed sync of it ends with."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class SyncError(Exception):
    """A sync of one account failed; the message is one secret-free sentence naming the account.

    `retryable` is True for transient causes (throttling, network) that a later attempt may fix.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class CloudAccount:
    """One row of PULSE's CloudAccount table. The external ID never appears in its repr."""

    id: str
    org_id: str
    name: str
    provider: str
    connection_type: str
    role_arn: str | None
    external_id: str | None = field(repr=False)
    status: str | None = None
    created_at: datetime | None = None
    last_synced_at: datetime | None = None
    last_sync_error: str | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> "CloudAccount":
        return cls(
            id=row["id"],
            org_id=row["orgId"],
            name=row["accountName"],
            provider=row["provider"],
            connection_type=row["connectionType"],
            role_arn=row["roleArn"],
            external_id=row["externalId"],
            status=row.get("status"),
            created_at=row.get("createdAt"),
            last_synced_at=row.get("lastSyncedAt"),
            last_sync_error=row.get("lastSyncError"),
        )

    @property
    def label(self) -> str:
        return f"CloudAccount {self.id} ({self.name})"


# Dagster keeps partition keys in PostgreSQL btree indexes (dynamic_partitions, run_tags,
# event_logs, asset_check_executions), and a batch run's key, a run tag, holds two of them. A
# btree entry holds at most 2,704 bytes: beside a tag name, 2,676 bytes of incompressible text
# (an id 2,680 characters long fails every insert with ProgramLimitExceeded). 1,024 bytes per
# key leaves room for the two keys of a run key and the names beside them in every index.
MAX_PARTITION_KEY_BYTES = 1024
# What Dagster refuses in a partition key (its INVALID_PARTITION_SUBSTRINGS); PostgreSQL cannot
# store a NUL either.
REFUSED_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


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
