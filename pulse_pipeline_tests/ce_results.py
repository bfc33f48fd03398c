"""Builders for Cost Explorer responses queued in moto, and for a small ECB history file."""

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import requests

from pulse_pipeline.aws.metrics import requested_metrics

MOTO_CE_QUEUE = "http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results"

# day -> service, or (service, record type), -> (amount, unit); a bare service is "Usage".
Costs = Mapping[date, Mapping[str | tuple[str, str], tuple[str, str]]]


def _keys(service: str | tuple[str, str]) -> list[str]:
    return list(service) if isinstance(service, tuple) else [service, "Usage"]


def _metrics(
    day: date,
    service: str | tuple[str, str],
    amount: tuple[str, str],
    metric: str,
    other: Mapping[str, Costs],
) -> dict[str, dict[str, str]]:
    """Every metric the pipeline asks for beside `metric`: the same amount unless `other` says."""
    metrics = {}
    for name in requested_metrics(metric):
        value, unit = other.get(name, {}).get(day, {}).get(service, amount)
        metrics[name] = {"Amount": value, "Unit": unit}
    return metrics


def ce_page(
    costs: Costs,
    next_token: str | None = None,
    estimated: Iterable[date] = (),
    metric: str = "UnblendedCost",
    other: Mapping[str, Costs] | None = None,
) -> dict[str, Any]:
    """One GetCostAndUsage page as AWS shapes it (DAILY, grouped by SERVICE and RECORD_TYPE),
    with every metric the pipeline asks for when `metric` is configured: each the same amount,
    unless `other` (metric -> costs) gives another."""
    estimated_days = set(estimated)
    page: dict[str, Any] = {
        "GroupDefinitions": [
            {"Type": "DIMENSION", "Key": "SERVICE"},
            {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
        ],
        "ResultsByTime": [
            {
                "TimePeriod": {
                    "Start": day.isoformat(),
                    "End": (day + timedelta(days=1)).isoformat(),
                },
                "Total": {},
                "Groups": [
                    {
                        "Keys": _keys(service),
                        "Metrics": _metrics(day, service, (amount, unit), metric, other or {}),
                    }
                    for service, (amount, unit) in services.items()
                ],
                "Estimated": day in estimated_days,
            }
            for day, services in sorted(costs.items())
        ],
        "DimensionValueAttributes": [],
    }
    if next_token:
        page["NextPageToken"] = next_token
    return page


def linked_accounts_page(
    accounts: Mapping[str, str], record_types: Iterable[str], months: Iterable[date]
) -> dict[str, Any]:
    """The answer to a fetch's first request (MONTHLY, LINKED_ACCOUNT x RECORD_TYPE): every
    account (id -> name) with every record type in every month (its first day)."""
    periods = []
    for month in sorted(set(months)):
        end = (month + timedelta(days=32)).replace(day=1)
        groups = [
            {"Keys": [account, kind], "Metrics": {"UnblendedCost": {"Amount": "1", "Unit": "USD"}}}
            for account in accounts
            for kind in sorted(set(record_types))
        ]
        periods.append(
            {
                "TimePeriod": {"Start": month.isoformat(), "End": end.isoformat()},
                "Total": {},
                "Groups": groups,
                "Estimated": False,
            }
        )
    return {
        "GroupDefinitions": [
            {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"},
            {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
        ],
        "ResultsByTime": periods,
        "DimensionValueAttributes": [
            {"Value": account, "Attributes": {"description": name}}
            for account, name in accounts.items()
        ],
    }


def _record_types_and_months(pages: list[dict[str, Any]]) -> tuple[set[str], set[date]]:
    """What the pages hold, read leniently: a malformed page is the test's point, not this."""
    kinds, months = set(), set()
    for page in pages:
        for period in page.get("ResultsByTime") or []:
            try:
                months.add(date.fromisoformat(period["TimePeriod"]["Start"]).replace(day=1))
            except (KeyError, TypeError, ValueError):
                continue
            for group in period.get("Groups") or []:
                keys = group.get("Keys") if isinstance(group, dict) else None
                if isinstance(keys, list) and len(keys) == 2 and isinstance(keys[1], str):
                    kinds.add(keys[1])
    return kinds or {"Usage"}, months


def queue_results(
    aws_account_id: str, pages: list[dict[str, Any]], *, name: str | None = None
) -> None:
    """Queue responses in moto (decorator mode) for calls made with that AWS account's
    credentials: the first request's answer (the account sees only itself, `name` its AWS name),
    then `pages`, the answers to the SERVICE x RECORD_TYPE request that follows."""
    kinds, months = _record_types_and_months(pages)
    first = linked_accounts_page(
        {aws_account_id: name or f"Account {aws_account_id}"}, kinds, months
    )
    queue_raw(aws_account_id, [first, *pages])


def queue_raw(aws_account_id: str, pages: list[dict[str, Any]]) -> None:
    """Queue responses in moto as they are, one per new request body, in order."""
    response = requests.post(MOTO_CE_QUEUE, json={"account_id": aws_account_id, "results": pages})
    response.raise_for_status()


def ecb_history_csv(rates: Mapping[date, Mapping[str, str]]) -> str:
    """An ECB `eurofxref-hist.csv` with the given business days (newest first, as the ECB does)."""
    currencies = sorted({currency for day_rates in rates.values() for currency in day_rates})
    lines = ["Date," + ",".join(currencies) + ","]
    for day in sorted(rates, reverse=True):
        cells = [rates[day].get(currency, "N/A") for currency in currencies]
        lines.append(f"{day.isoformat()}," + ",".join(cells) + ",")
    return "\n".join(lines) + "\n"


def eur(amount: str, rate: str) -> Decimal:
    """What the pipeline must store: amount ÷ rate, to 10 decimal places."""
    return (Decimal(amount) / Decimal(rate)).quantize(Decimal("1e-10"))
