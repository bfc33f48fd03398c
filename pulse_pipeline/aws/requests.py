"""The GetCostAndUsage requests a fetch sends: what each asks for, and the fewest that keep
service and record type exact for every linked account (Cost Explorer groups by two keys at
most)."""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pulse_pipeline.aws.metrics import DEFAULT_METRIC, requested_metrics
from pulse_pipeline.sync_window import SyncWindow


def cost_and_usage_request(window: SyncWindow, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """Daily costs per service and record type (charge type) for the window, in one request
    per result page; Cost Explorer's End is exclusive. `metric` comes first in Metrics, the
    FOCUS columns' metrics follow it (`requested_metrics`), at no extra price."""
    return _daily(window, metric, "SERVICE", "RECORD_TYPE")


def _daily(window: SyncWindow, metric: str, *keys: str) -> dict[str, Any]:
    """A DAILY request of the requested metrics, grouped by the dimensions `keys`."""
    return {
        "TimePeriod": _period(window),
        "Granularity": "DAILY",
        "Metrics": requested_metrics(metric),
        "GroupBy": [{"Type": "DIMENSION", "Key": key} for key in keys],
    }


def _period(window: SyncWindow) -> dict[str, str]:
    return {"Start": window.start.isoformat(), "End": (window.end + timedelta(days=1)).isoformat()}


def linked_accounts_request(window: SyncWindow, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """The cheap first request of every fetch: the window's costs per month, linked account and
    record type. It tells which AWS accounts the role's Cost Explorer sees (a member account
    only itself, a management account every member), their names (DimensionValueAttributes),
    and which record types occur; usually one page."""
    return {
        "TimePeriod": _period(window),
        "Granularity": "MONTHLY",
        "Metrics": [metric],
        "GroupBy": [
            {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"},
            {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
        ],
    }


def linked_account_costs_request(
    window: SyncWindow, metric: str, record_type: str
) -> dict[str, Any]:
    """A management account's daily costs of one record type, per linked account and service:
    Cost Explorer groups by two keys at most, so the record type is a Filter."""
    return {
        **_daily(window, metric, "LINKED_ACCOUNT", "SERVICE"),
        "Filter": {"Dimensions": {"Key": "RECORD_TYPE", "Values": [record_type]}},
    }


def window_requests(
    own_account: str,
    seen: Sequence[str],
    record_types: Sequence[str],
    window: SyncWindow,
    metric: str,
) -> list[dict[str, Any]]:
    """The fewest requests that keep service and record type exact for every linked account:
    SERVICE x RECORD_TYPE when the role sees only its own account, else LINKED_ACCOUNT x
    SERVICE once per record type that occurs."""
    if set(seen) <= {own_account}:
        return [cost_and_usage_request(window, metric)]
    return [linked_account_costs_request(window, metric, kind) for kind in record_types]
