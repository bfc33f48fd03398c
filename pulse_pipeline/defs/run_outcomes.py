"""How each account of a finished sync run ended, read from the run's events."""

import re
from datetime import UTC, datetime

import dagster as dg

from pulse_pipeline.defs.keys import DAILY_COSTS, FAILED_ACCOUNTS, NOTHING_ATTEMPTED, RAW_PAGES
from pulse_pipeline.defs.partitions import accounts_in_run
from pulse_pipeline.sync_status import SyncOutcome, redact

_PYDANTIC_DETAIL = re.compile(r" \[type=.*$")


def _step_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str | None, dict[str, str]]:
    """The cause the failed step gave, and per-account causes when a batch failed."""
    step_failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for event in reversed(step_failures):
        data = event.dagster_event.step_failure_data if event.dagster_event else None
        if data is None:
            continue
        if data.user_failure_data and data.user_failure_data.description:
            per_account = data.user_failure_data.metadata.get(FAILED_ACCOUNTS)
            causes = per_account.value if isinstance(per_account, dg.JsonMetadataValue) else None
            return data.user_failure_data.description, dict(causes or {})
        if data.error:
            error = data.error
            # Dagster's wrappers (and its retry policy's "Exceeded max_retries") hide the cause.
            while error.cause is not None and (error.cls_name or "").startswith(
                ("Dagster", "RetryRequested")
            ):
                error = error.cause
            message = error.message.strip()
            if not message.startswith(f"{error.cls_name}:"):  # Dagster's own errors lack it
                message = f"{error.cls_name}: {message}"
            return f"step {event.step_key} failed ({message})", {}
    return _run_failure(instance, run_id), {}


def _nothing_attempted(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run was refused before it touched any account (its config, say)."""
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = event.dagster_event.step_failure_data if event.dagster_event else None
        if data and data.user_failure_data and NOTHING_ATTEMPTED in data.user_failure_data.metadata:
            return True
    return False


def _run_failure(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why a run failed before any step did (a setting its resources rejected, say)."""
    for event in reversed(instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)):
        data = event.dagster_event.event_specific_data if event.dagster_event else None
        error = getattr(data, "error", None)
        if error is None:
            continue
        while error.cause is not None:
            error = error.cause
        # pydantic's messages end with "[type=..., input_value=...]" and a link: keep the reason.
        message = _PYDANTIC_DETAIL.sub("", " ".join(error.message.split()))
        if error.cls_name == "SettingError":  # the sentence a load with this value gives
            sentence = message.partition("SettingError: ")[2]
            return f"the sync run could not start ({sentence})"
        return f"the sync run could not start ({error.cls_name}: {message})"
    return None


def _synced_accounts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[str]:
    """Accounts the run finished: their last selected sync asset was materialized."""
    only_raw = run.asset_selection and DAILY_COSTS not in run.asset_selection
    last = RAW_PAGES if only_raw else DAILY_COSTS
    events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {
        materialization.partition
        for event in events
        if (materialization := event.asset_materialization) is not None
        and materialization.asset_key == last
        and materialization.partition is not None
    }


def outcomes_of(instance: dg.DagsterInstance, run_id: str) -> list[SyncOutcome]:
    """How each account of a finished sync run ended; nothing for runs still going."""
    record = instance.get_run_record_by_id(run_id)
    if record is None or not record.dagster_run.is_finished:
        return []
    run = record.dagster_run
    finished_at = (
        datetime.fromtimestamp(record.end_time, UTC) if record.end_time else record.update_timestamp
    )
    accounts = accounts_in_run(instance, dict(run.tags))
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return [SyncOutcome(account, run_id, finished_at, None) for account in accounts]
    if _nothing_attempted(instance, run_id):
        return []
    synced = _synced_accounts(instance, run)
    cause, per_account = _step_failure(instance, run_id)
    outcomes = []
    for account in accounts:
        error = None
        if account in per_account:
            error = per_account[account]
        elif account not in synced:
            error = _run_cause(account, run, cause, batch_summary=bool(per_account))
        outcomes.append(SyncOutcome(account, run_id, finished_at, error and redact(error)))
    return outcomes


def _run_cause(account: str, run: dg.DagsterRun, cause: str | None, batch_summary: bool) -> str:
    """Why an account of a failed run was not synced, when the run gave no cause of its own.

    A batch's summary already names its accounts; any other cause is prefixed with this one.
    """
    label = f"CloudAccount {account}"
    if cause is not None:
        return cause if batch_summary or cause.startswith(label) else f"{label}: {cause}"
    if run.status == dg.DagsterRunStatus.CANCELED:
        return f"{label}: the sync run was canceled before it finished"
    return f"{label}: the sync run ended without finishing (its process was killed or lost)"
