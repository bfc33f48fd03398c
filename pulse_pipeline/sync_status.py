"""Writing each finished sync's outcome back to PULSE's CloudAccount (status, lastSyncedAt, lastSyncError)."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from pulse_pipeline.db import queries
from pulse_pipeline.resources import PulseDatabase

PARTITION_TAG = "dagster/partition"
MAX_ERROR_LENGTH = 500
# Things that must never reach PULSE's UI even if an unexpected error quotes them.
_SECRETS = [
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), "<aws-key>"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1***@"),
    (
        re.compile(r"(?i)\b(externalid|external_id|secret[_a-z]*|token|password)(\s*[=:]\s*)\S+"),
        r"\1\2***",
    ),
]


@dataclass(frozen=True)
class SyncOutcome:
    """How one sync run of one account ended."""

    account_id: str
    run_id: str
    finished_at: datetime
    error: str | None


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """One line, at most MAX_ERROR_LENGTH characters, with the given secret values and anything
    credential-shaped (AWS keys, URL passwords, `password=...`) masked."""
    line = " ".join(text.split())
    for secret in secrets:
        if secret and len(secret) >= 2:
            line = line.replace(secret, "***")
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line[:MAX_ERROR_LENGTH]


def failure_cause(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The real cause of a failed run: its failed step's error, not Dagster's 'Steps failed'."""
    step_failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for event in reversed(step_failures):
        data = event.dagster_event.step_failure_data if event.dagster_event else None
        if data is None:
            continue
        if data.user_failure_data and data.user_failure_data.description:
            return redact(data.user_failure_data.description)
        if data.error:
            error = data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            return redact(
                f"CloudAccount {run.tags.get(PARTITION_TAG)}: step {event.step_key} failed "
                f"({error.cls_name}: {error.message.strip()})"
            )
    account = run.tags.get(PARTITION_TAG)
    if run.status == dg.DagsterRunStatus.CANCELED:
        return f"CloudAccount {account}: the sync run was canceled before it finished"
    return f"CloudAccount {account}: the sync run ended without finishing (its process was killed or lost)"


def outcome_of(instance: dg.DagsterInstance, run_id: str) -> SyncOutcome | None:
    """The outcome of a finished, partitioned run; None for runs still going or not per account."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return None
    run = record.dagster_run
    account_id = run.tags.get(PARTITION_TAG)
    if account_id is None or not run.is_finished:
        return None
    finished_at = (
        datetime.fromtimestamp(record.end_time, UTC) if record.end_time else record.update_timestamp
    )
    error = None if run.status == dg.DagsterRunStatus.SUCCESS else failure_cause(instance, run)
    return SyncOutcome(account_id, run_id, finished_at, error)


class SyncStatusConfig(dg.Config):
    """The sync runs whose outcome to write to PULSE."""

    run_ids: list[str] = Field(description="Run ids of finished sync runs, any order.")


@dg.op(
    name="write_cloud_account_status",
    retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL),
)
def write_sync_status_op(
    context: dg.OpExecutionContext, config: SyncStatusConfig, pulse_db: PulseDatabase
) -> dg.Output[int]:
    """Write `status`, `lastSyncedAt` and `lastSyncError` of each finished sync run's CloudAccount.

    Success: `active`, the run's end time, no error. Failure, cancellation or a killed run:
    `error` and one secret-free sentence naming the cause; `lastSyncedAt` keeps the last success.
    Outcomes are written oldest first, so the newest run of an account has the last word.
    """
    outcomes = [o for run_id in config.run_ids if (o := outcome_of(context.instance, run_id))]
    outcomes.sort(key=lambda outcome: outcome.finished_at)
    written = 0
    with pulse_db.begin() as conn:
        for outcome in outcomes:
            account = queries.load_account(conn, outcome.account_id)
            if account is None:
                context.log.warning(f"CloudAccount {outcome.account_id} is no longer in PULSE")
                continue
            error = redact(outcome.error, [account.external_id]) if outcome.error else None
            if queries.record_sync_result(conn, account.id, error, outcome.finished_at):
                written += 1
                context.log.info(f"{account.label}: " + (f"error: {error}" if error else "active"))
            else:
                context.log.info(f"{account.label} is {account.status} in PULSE; left as it is")
    return dg.Output(
        written,
        metadata={
            "accounts_updated": written,
            "errors": sum(1 for outcome in outcomes if outcome.error),
            "runs_seen": len(config.run_ids),
        },
    )
