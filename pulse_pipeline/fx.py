"""ECB euro reference rates: the rate for a cost day, and the TARGET calendar the ECB publishes on."""

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal


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
        provisional = day > days[-1] and any(
            is_target_business_day(rate_date + timedelta(days=offset))
            for offset in range(1, (day - rate_date).days + 1)
        )
        return AppliedRate(self._rates[currency][index], rate_date, provisional)


def easter_sunday(year: int) -> date:
    """Western Easter (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_shift = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_shift) // 451
    month, day = divmod(h + weekday_shift - 7 * m + 114, 31)
    return date(year, month, day + 1)


def is_target_business_day(day: date) -> bool:
    """Whether the ECB publishes reference rates on `day` (TARGET2 calendar)."""
    if day.weekday() >= 5:
        return False
    if (day.month, day.day) in {(1, 1), (5, 1), (12, 25), (12, 26)}:
        return False
    easter = easter_sunday(day.year)
    return day not in {easter - timedelta(days=2), easter + timedelta(days=1)}
