"""From raw Cost Explorer pages to one exact cost line per day and service, then to EUR rows."""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pulse_pipeline.fx import MissingRateError, RateTable
from pulse_pipeline.sync_window import SyncWindow

EUR_PLACES = Decimal("1e-10")
_CURRENCY = re.compile(r"[A-Z]{3}")

# AWS RECORD_TYPE -> FOCUS ChargeCategory (Usage, Purchase, Tax, Credit, Adjustment).
FOCUS_CHARGE_CATEGORY = {
    "Usage": "Usage",
    "DiscountedUsage": "Usage",
    "Reservation applied usage": "Usage",
    "Savings Plan Covered Usage": "Usage",
    "Savings Plan Negation": "Usage",
    "Recurring reservation fee": "Purchase",
    "Upfront reservation fee": "Purchase",
    "Savings Plan Recurring Fee": "Purchase",
    "Savings Plan Upfront Fee": "Purchase",
    "Support fee": "Purchase",
    "Tax": "Tax",
    "Credit": "Credit",
    "Enterprise Discount Program Discount": "Credit",
    "Refund": "Adjustment",
    "Other out-of-cycle charges": "Adjustment",
}


def charge_category(record_type: str | None) -> str | None:
    """The FOCUS ChargeCategory of an AWS record type; unknown types count as Adjustment."""
    if record_type is None:
        return None
    return FOCUS_CHARGE_CATEGORY.get(record_type, "Adjustment")


class MalformedPayloadError(ValueError):
    """Cost Explorer returned something that cannot be turned into exact cost rows."""


@dataclass(frozen=True)
class StoredPage:
    """A raw page as kept in the raw table: its row id ties every cost row to its source."""

    id: int
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def metric(self) -> str:
        """The cost metric the page was requested with, e.g. UnblendedCost."""
        return str(self.request["Metrics"][0])

    @property
    def grouped_by_record_type(self) -> bool:
        return [g.get("Key") for g in self.request.get("GroupBy", [])][1:2] == ["RECORD_TYPE"]


@dataclass(frozen=True)
class CostLine:
    """One day's cost of one service, in the currency Cost Explorer reported it in."""

    day: date
    service: str
    record_type: str | None
    amount: Decimal
    currency: str
    estimated: bool
    metric: str
    page_id: int

    @property
    def key(self) -> tuple[date, str, str | None]:
        return (self.day, self.service, self.record_type)


@dataclass(frozen=True)
class EurCost:
    """A cost line converted to EUR at the ECB rate of its day."""

    line: CostLine
    fx_rate: Decimal
    fx_rate_date: date
    fx_provisional: bool
    amount_eur: Decimal


def _amount(group: dict[str, Any], metric: str, where: str) -> tuple[Decimal, str]:
    value = group.get("Metrics", {}).get(metric)
    if not isinstance(value, dict):
        raise MalformedPayloadError(f"{where} has no {metric}")
    unit = value.get("Unit")
    if not isinstance(unit, str) or not _CURRENCY.fullmatch(unit):
        raise MalformedPayloadError(f"{where} has no valid currency Unit ({unit!r})")
    try:
        amount = Decimal(str(value.get("Amount")))
    except InvalidOperation:
        raise MalformedPayloadError(f"{where} has a non-numeric Amount") from None
    if not amount.is_finite():
        raise MalformedPayloadError(f"{where} has a non-numeric Amount")
    return amount, unit


def cost_lines(pages: Iterable[StoredPage], window: SyncWindow) -> list[CostLine]:
    """Every (day, service, record type) cost in the pages, checked: inside the window, numeric,
    with a Unit. Raises MalformedPayloadError on the first problem, so nothing half-valid is
    ever written.
    """
    lines: dict[tuple[date, str, str | None], CostLine] = {}
    for page in pages:
        for period in page.response.get("ResultsByTime", []):
            try:
                day = date.fromisoformat(period["TimePeriod"]["Start"])
            except (KeyError, TypeError, ValueError):
                raise MalformedPayloadError("a result has no valid TimePeriod.Start") from None
            if not window.start <= day <= window.end:
                raise MalformedPayloadError(f"Cost Explorer returned {day}, outside {window}")
            for group in period.get("Groups", []):
                keys = group.get("Keys") or []
                if not keys or not isinstance(keys[0], str):
                    raise MalformedPayloadError(f"a group on {day} has no service key")
                service = keys[0]
                record_type = None
                if page.grouped_by_record_type:
                    if len(keys) < 2 or not isinstance(keys[1], str):
                        raise MalformedPayloadError(f"{service} on {day} has no record type key")
                    record_type = keys[1]
                where = (
                    f"{service} ({record_type}) on {day}" if record_type else f"{service} on {day}"
                )
                amount, unit = _amount(group, page.metric, where)
                line = CostLine(
                    day,
                    service,
                    record_type,
                    amount,
                    unit,
                    bool(period.get("Estimated", False)),
                    page.metric,
                    page.id,
                )
                if line.key in lines:
                    raise MalformedPayloadError(f"{where} appears twice in the response")
                lines[line.key] = line
    return sorted(lines.values(), key=lambda line: (line.day, line.service, line.record_type or ""))


def to_eur(lines: Sequence[CostLine], rates: RateTable) -> list[EurCost]:
    """Convert each line at the ECB rate (EUR→currency) of its day: EUR = amount ÷ rate."""
    converted = []
    for line in lines:
        try:
            applied = rates.rate_for(line.currency, line.day)
        except MissingRateError as error:
            raise MalformedPayloadError(f"cannot convert {line.currency} to EUR: {error}") from None
        amount_eur = (line.amount / applied.rate).quantize(EUR_PLACES, rounding=ROUND_HALF_EVEN)
        converted.append(
            EurCost(line, applied.rate, applied.rate_date, applied.provisional, amount_eur)
        )
    return converted


def totals_by_currency(lines: Iterable[CostLine]) -> dict[str, Decimal]:
    """Exact sums per original currency."""
    totals: dict[str, Decimal] = {}
    for line in lines:
        totals[line.currency] = totals.get(line.currency, Decimal(0)) + line.amount
    return totals
