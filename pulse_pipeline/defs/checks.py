"""Check results the sync and the freshness job report: built here, from the Dagster-free verdicts."""

from datetime import datetime
from typing import Any

import dagster as dg

from pulse_pipeline.defs.keys import DAILY_COSTS
from pulse_pipeline.freshness import Freshness

SYNCED_RECENTLY = "synced_recently"
DESCRIPTION = (
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
