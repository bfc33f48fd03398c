"""The checks of daily_costs_eur: the reconciliation and freshness checks declared apart from the
sync, and the results the sync and the freshness job report, built from Dagster-free verdicts."""

import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

# The documented type of AssetCheckEvaluation(target_materialization_data=...), which Dagster
# 1.13 does not export: without it a partition's check result never counts for the partition's
# latest materialization, and the check's Partitions tab shows every partition as missing.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckedMaterialization,
)

from pulse_pipeline.defs.keys import DAILY_COSTS
from pulse_pipeline.defs.partitions import cloud_accounts_partitions
from pulse_pipeline.defs.resources import CostSettings, PulseDatabase
from pulse_pipeline.freshness import Freshness, accounts_freshness
from pulse_pipeline.reconcile import CHECKS, CheckOutcome
from pulse_pipeline.sync.failures import AccountFailure, failing_cleanly
from pulse_pipeline.sync.write import verify

SYNCED_RECENTLY = "synced_recently"
SYNCED_RECENTLY_DESCRIPTION = (
    "Fails for an account's partition when its last successful sync (CloudAccount.lastSyncedAt, "
    "or when it was connected if it never synced) is older than PULSE_COST_FRESHNESS_HOURS "
    "(default 30). Passed by every sync that fetched the account; evaluated by "
    "report_cost_freshness, which the cost_freshness sensor launches (checking every 10 "
    "minutes) for each account that turns stale or recovers."
)


def freshness_evaluation(state: Freshness, limit_hours: int) -> dg.AssetCheckEvaluation:
    """The synced_recently result of the account's daily_costs_eur partition."""
    if state.synced_at is None:
        summary = "never synced successfully"
        if state.age_hours is not None:
            summary += f" since it was connected {state.age_hours} hours ago"
    else:
        summary = f"last synced successfully {state.age_hours} hours ago"
    metadata: dict[str, Any] = {
        "summary": f"{summary} (limit {limit_hours} hours)",
        "limit_hours": limit_hours,
        "last_synced_at": state.synced_at.isoformat() if state.synced_at else "never",
    }
    return dg.AssetCheckEvaluation(
        asset_key=DAILY_COSTS,
        check_name=SYNCED_RECENTLY,
        passed=state.fresh,
        metadata=metadata,
        partition=state.account_id,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def just_synced(account_id: str, now: datetime, limit_hours: int) -> dg.AssetCheckEvaluation:
    """A sync that fetched and wrote the account passes its check."""
    return freshness_evaluation(Freshness(account_id, now, 0.0, fresh=True), limit_hours)


def on_latest(
    instance: dg.DagsterInstance, evaluations: Iterable[dg.AssetCheckEvaluation]
) -> Iterator[dg.AssetCheckEvaluation]:
    """The evaluations, each pointing at its partition's latest materialization as Dagster's own
    AssetCheckResult does for a single partition (not for a batch): the check's Partitions tab
    counts a result only for the materialization it names. One lookup per partition."""
    latest: dict[tuple[dg.AssetKey, str], CheckedMaterialization | None] = {}
    for evaluation in evaluations:
        if evaluation.partition is None:
            yield evaluation
            continue
        target = (evaluation.asset_key, evaluation.partition)
        if target not in latest:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    evaluation.asset_key, asset_partitions=[evaluation.partition]
                ),
                limit=1,
            ).records
            latest[target] = (
                CheckedMaterialization(
                    storage_id=records[0].storage_id,
                    run_id=records[0].run_id,
                    timestamp=records[0].timestamp,
                )
                if records
                else None
            )
        yield dg.AssetCheckEvaluation(
            asset_key=evaluation.asset_key,
            check_name=evaluation.check_name,
            passed=evaluation.passed,
            metadata=evaluation.metadata,
            target_materialization_data=latest[target],
            severity=evaluation.severity,
            description=evaluation.description,
            blocking=evaluation.blocking,
            partition=evaluation.partition,
        )


def stored_checks(
    context: dg.AssetExecutionContext,
    pulse_db: PulseDatabase,
    settings: CostSettings,
    failures: Iterable[AccountFailure],
) -> Iterator[dg.AssetCheckEvaluation]:
    """The checks of daily_costs_eur on what failed accounts have stored, which their failed
    sync left as it was: what reconcile_cost_records and cost_freshness_check report.

    A backfill run plans every check of its assets for each of its partitions, and Dagster
    shows a planned check that got no result in a failed run as "Execution failed", on the
    check's badge too when that partition is the run's last. An account with nothing stored
    yet has nothing to reconcile and keeps that status, and so does every account when the
    database itself could not be used (it would only fail again, and take as long).
    """
    accounts = [failure.account_id for failure in failures]
    if DAILY_COSTS not in context.selected_asset_keys or any(
        failure.database_unusable for failure in failures
    ):
        return
    stored = []
    for account in accounts:
        try:
            with failing_cleanly(account):
                outcomes = verify(pulse_db, account, settings.record_type_set())
        except AccountFailure:
            continue
        stored.append(account)
        yield from on_latest(
            context.instance, [reconcile_evaluation(account, outcome) for outcome in outcomes]
        )
    if not stored:
        return
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        with pulse_db.begin() as conn:
            states = accounts_freshness(conn, stored, now, settings.freshness_hours)
    except Exception as error:  # the step already fails with its accounts' causes
        context.log.warning(f"synced_recently not evaluated for the failed accounts: {error}")
        return
    yield from on_latest(
        context.instance,
        [freshness_evaluation(state, settings.freshness_hours) for _, state in states],
    )


def reconcile_evaluation(account: str, outcome: CheckOutcome) -> dg.AssetCheckEvaluation:
    """One reconciliation check's result on the account's daily_costs_eur partition."""
    return dg.AssetCheckEvaluation(
        asset_key=DAILY_COSTS,
        check_name=outcome.name,
        passed=outcome.passed,
        metadata={"summary": outcome.summary, **outcome.metadata},
        blocking=True,
        partition=account,
    )


def _check_specs(descriptions: dict[str, str], blocking: bool) -> list[dg.AssetCheckSpec]:
    """Checks of daily_costs_eur, one evaluation per account (partition).

    Partitioned check specs are a preview feature of Dagster 1.13 whose warning would be printed
    by every process loading the code location.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name,
                asset=DAILY_COSTS,
                description=description,
                blocking=blocking,
                partitions_def=cloud_accounts_partitions,
            )
            for name, description in descriptions.items()
        ]


@dg.multi_asset_check(
    name="reconcile_cost_records",
    specs=_check_specs(CHECKS, blocking=True),
    can_subset=True,
    description=(
        "The reconciliation checks of daily_costs_eur. Every sync evaluates them on the rows it "
        "writes, before the commit, and records them on the account's partition (a failing "
        "check rolls the write back). Executed on their own, they re-check an account's stored "
        "CostRecords against its latest stored Cost Explorer pages, read-only, without AWS."
    ),
)
def reconcile_cost_records(
    context: dg.AssetCheckExecutionContext, pulse_db: PulseDatabase, settings: CostSettings
) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
    selected = {key.name for key in context.selected_asset_check_keys}
    for account in context.partition_keys:
        try:
            with failing_cleanly(account):
                outcomes = verify(pulse_db, account, settings.record_type_set())
        except AccountFailure as failure:
            raise dg.Failure(description=failure.cause, allow_retries=False) from None
        yield from on_latest(
            context.instance,
            [
                reconcile_evaluation(account, outcome)
                for outcome in outcomes
                if outcome.name in selected
            ],
        )
    # The evaluations name their partitions; these close the step's outputs quietly.
    for key in context.selected_asset_check_keys:
        yield dg.Output(None, output_name=f"{key.asset_key.to_python_identifier()}_{key.name}")


@dg.multi_asset_check(
    name="cost_freshness_check",
    specs=_check_specs({SYNCED_RECENTLY: SYNCED_RECENTLY_DESCRIPTION}, blocking=False),
    description=(
        "Whether each selected account synced within PULSE_COST_FRESHNESS_HOURS. Every sync that "
        "fetched an account passes it; the cost_freshness sensor has it evaluated when an "
        "account turns stale or recovers. Executed on its own, it reads CloudAccount only."
    ),
)
def cost_freshness_check(
    context: dg.AssetCheckExecutionContext, pulse_db: PulseDatabase, settings: CostSettings
) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    hours = settings.freshness_hours
    with pulse_db.begin() as conn:
        states = accounts_freshness(conn, context.partition_keys, now, hours)
    yield from on_latest(
        context.instance, [freshness_evaluation(state, hours) for _, state in states]
    )
    yield dg.Output(None, output_name=f"{DAILY_COSTS.to_python_identifier()}_{SYNCED_RECENTLY}")
