"""The PULSE app's SyncRequest rows, read one by one: what a row may hold, the one sentence a
row PULSE cannot serve is rejected with, and the identity that ties a row to its runs.

Rows are read as text (see queries.sync_request_texts) and parsed here, so that a value the
database accepts but Python cannot hold (PostgreSQL's `'infinity'`, a year 20260, a BC date;
on SQLite any text or number) rejects that row alone instead of failing every row's tick.
"""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pulse_pipeline.accounts import MAX_PARTITION_KEY_BYTES
from pulse_pipeline.printable import printable

SYNC = "sync"
TEST_CONNECTION = "test_connection"
KINDS = (SYNC, TEST_CONNECTION)

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
RATE_LIMITED = "rate_limited"
REJECTED = "rejected"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, RATE_LIMITED, REJECTED)
# A request in one of these was launched: the rate limits count it from its startedAt.
LAUNCHED = (RUNNING, SUCCEEDED, FAILED)

# A request id becomes the value of a Dagster run tag (pulse/request), kept in the same kind of
# PostgreSQL index as a partition key: the same bound holds.
MAX_ID_BYTES = MAX_PARTITION_KEY_BYTES
# How many characters of a value from the database a log line or a sentence shows.
SHOWN_CHARACTERS = 80

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2}){0,2})?"
)
# C0 and C1 control characters and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Rejected(Exception):
    """A request that must not reach AWS; the message is the one sentence the app shows."""


def shown(value: str) -> str:
    """A value from the database as a log line or a sentence shows it: control characters
    escaped (a line break in an id cannot forge a log line) and a long value cut short."""
    escaped = printable(value)
    if len(escaped) <= SHOWN_CHARACTERS:
        return escaped
    return f"{escaped[:SHOWN_CHARACTERS]}… ({len(value):,} characters)"


@dataclass(frozen=True)
class SyncRequest:
    """One row of the SyncRequest table, parsed. `requested_at_text` is its requestedAt exactly
    as read, so that an update reaches this row and not a newer one with the same id."""

    id: str
    org_id: str
    cloud_account_id: str | None
    kind: str
    start_date: date | None
    end_date: date | None
    status: str
    requested_at: datetime
    started_at: datetime | None
    run_id: str | None
    requested_at_text: str

    @property
    def key(self) -> str:
        """The request's identity: its id, when it was asked for and what it asks. A row deleted
        and inserted again with the same id is another request, with other runs."""
        parts = (
            self.id,
            self.requested_at.isoformat(),
            self.org_id,
            self.cloud_account_id or "",
            self.kind,
            self.start_date.isoformat() if self.start_date else "",
            self.end_date.isoformat() if self.end_date else "",
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]

    @property
    def label(self) -> str:
        return f"SyncRequest {shown(self.id)}"

    def window_config(self) -> dict[str, str]:
        """The sync's run config window (SyncWindowConfig): only the days the app chose."""
        days = {"start_date": self.start_date, "end_date": self.end_date}
        return {name: day.isoformat() for name, day in days.items() if day is not None}


def id_problem(request_id: str) -> str | None:
    """Why an id cannot name a request in logs and Dagster's run tags, or None if it can."""
    if not request_id:
        return "is empty"
    size = len(request_id.encode(errors="replace"))
    if size > MAX_ID_BYTES:
        return (
            f"is {size:,} bytes long, more than the {MAX_ID_BYTES:,} bytes a Dagster run tag "
            "can hold"
        )
    if _CONTROL.search(request_id):
        return "contains control characters (a line break, say)"
    return None


def parse_day(value: str | None, field: str, label: str) -> date | None:
    if value is None:
        return None
    try:
        if _DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise Rejected(
        f"{label}: {field} '{shown(value)}' is not a date PULSE can read (YYYY-MM-DD with a "
        "four-digit year)"
    )


def parse_timestamp(value: str | None, field: str, label: str) -> datetime | None:
    """A timestamp as an aware UTC datetime (one without an offset is UTC, as SQLite keeps
    them)."""
    if value is None:
        return None
    try:
        if _TIMESTAMP.fullmatch(value):
            moment = datetime.fromisoformat(value)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise Rejected(
        f"{label}: {field} '{shown(value)}' is not a timestamp PULSE can read (ISO 8601 date "
        "and time with a four-digit year)"
    )


def parse_row(row: Mapping[str, str | None]) -> SyncRequest:
    """A row read by queries.sync_request_texts, checked field by field; raises Rejected naming
    the first field PULSE cannot serve and why."""
    request_id = row["id"] or ""
    label = f"SyncRequest {shown(request_id)}"
    problem = id_problem(request_id)
    if problem is not None:
        raise Rejected(f"{label}: its id {problem}")
    status = row["status"] or ""
    if status not in STATUSES:
        raise Rejected(
            f"{label}: status '{shown(status)}' is not one PULSE writes; insert requests as "
            "'queued'"
        )
    kind = row["kind"] or ""
    if kind not in KINDS:
        raise Rejected(f"{label}: unknown kind '{shown(kind)}'; use 'sync' or 'test_connection'")
    requested_text = row["requestedAt"]
    requested_at = parse_timestamp(requested_text, "requestedAt", label)
    if requested_text is None or requested_at is None:
        raise Rejected(f"{label}: requestedAt is empty")
    return SyncRequest(
        id=request_id,
        org_id=row["orgId"] or "",
        cloud_account_id=row["cloudAccountId"],
        kind=kind,
        start_date=parse_day(row["startDate"], "startDate", label),
        end_date=parse_day(row["endDate"], "endDate", label),
        status=status,
        requested_at=requested_at,
        started_at=parse_timestamp(row["startedAt"], "startedAt", label),
        run_id=row["runId"],
        requested_at_text=requested_text,
    )
