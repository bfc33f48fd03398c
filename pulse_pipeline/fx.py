"""ECB euro reference rates: the rate for a cost day (the day's, else the last published before it)."""

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pulse_pipeline.target_calendar import business_days_after


@dataclass(frozen=True)
class EcbRate:
    """1 EUR = `rate` units of `currency` on `rate_date` (an ECB business day)."""

    currency: str
    rate_date: date
    rate: Decimal


@dataclass(frozen=True)
class AppliedRate:
    """The rate used for one cost day, and whether a newer rate may still replace it."""

    rate: Decimal
    rate_date: date
    provisional: bool


class MissingRateError(LookupError):
    """No ECB rate exists for a currency on or before a day."""


class RateTable:
    """Rates per currency, answering 'the rate of this day, or the last ECB day before it'."""

    def __init__(self, rates: Iterable[EcbRate]) -> None:
        by_currency: dict[str, list[tuple[date, Decimal]]] = {}
        for rate in rates:
            by_currency.setdefault(rate.currency, []).append((rate.rate_date, rate.rate))
        self._dates: dict[str, list[date]] = {}
        self._rates: dict[str, list[Decimal]] = {}
        for currency, points in by_currency.items():
            points.sort()
            self._dates[currency] = [day for day, _ in points]
            self._rates[currency] = [rate for _, rate in points]

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self._dates) | {"EUR"}

    def latest_date(self, currency: str) -> date | None:
        days = self._dates.get(currency)
        return days[-1] if days else None

    def rate_for(self, currency: str, day: date) -> AppliedRate:
        """The EUR→currency rate for `day`: that day's, else the last published before it.

        A day after the newest published rate takes the newest one and is provisional: the
        ECB has not published that day's rate yet.
        """
        if currency == "EUR":
            return AppliedRate(Decimal(1), day, provisional=False)
        days = self._dates.get(currency)
        if not days:
            raise MissingRateError(
                f"no ECB euro reference rate is stored for {currency} "
                "(a currency the ECB does not quote, or ecb_fx_rates not materialized yet)"
            )
        index = bisect_right(days, day) - 1
        if index < 0:
            raise MissingRateError(f"no ECB rate for {currency} on or before {day}")
        rate_date = days[index]
        provisional = day > days[-1] and business_days_after(rate_date, day) > 0
        return AppliedRate(self._rates[currency][index], rate_date, provisional)
