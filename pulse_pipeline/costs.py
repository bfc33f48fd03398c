"""Exact money: a day's cost line in its own currency, its EUR conversion at the ECB rate, and
the limits of what PULSE's database can store. Every provider's page parsing ends here."""

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from pulse_pipeline.fx import AppliedRate, MissingRateError, RateTable

# CostRecord's amount and amountEUR are NUMERIC(28,10): 10 decimal places, below 10^18.
# Every stored figure is rounded half-even to those places once; larger ones are rejected.
AMOUNT_PLACES = EUR_PLACES = Decimal("1e-10")
AMOUNT_LIMIT = Decimal("1e18")
# Wide enough that sums and quotients of such figures are exact before their one rounding.
MONEY = Context(prec=60, rounding=ROUND_HALF_EVEN)
# A UTF-16 surrogate as json.dumps escapes it (a pair for characters beyond the BMP, or alone).
_SURROGATE_ESCAPE = re.compile(r"\\ud[89a-f][0-9a-f]{2}")


class MalformedPayloadError(ValueError):
    """Cost Explorer returned something that cannot be turned into exact cost rows."""


@dataclass(frozen=True)
class StoredPage:
    """A raw page as kept in the raw table: its row id ties every cost row to its source."""

    id: int
    request: dict[str, Any]
    response: dict[str, Any]
    account_id: str | None = None  # the provider account whose data it is (AWS: 12 digits)

    @property
    def grouped_by(self) -> list[str]:
        """The keys the page's groups are made of, in order (e.g. SERVICE, RECORD_TYPE)."""
        return [str(group.get("Key")) for group in self.request.get("GroupBy", [])]

    @property
    def metric(self) -> str:
        """The cost metric the page was requested with, e.g. UnblendedCost (the first of
        its Metrics: the one `amount` is)."""
        return str(self.request["Metrics"][0])

    @property
    def metrics(self) -> list[str]:
        """Every metric the page was requested with, the configured one first."""
        return [str(metric) for metric in self.request["Metrics"]]

    @property
    def grouped_by_record_type(self) -> bool:
        return self.grouped_by[1:2] == ["RECORD_TYPE"]


@dataclass(frozen=True)
class CostLine:
    """One day's cost of one service, in the currency Cost Explorer reported it in.

    `amount` is what is stored: Cost Explorer's Amount rounded half-even to AMOUNT_PLACES;
    `reported_amount` is that Amount exactly as sent, when it had more places. `billed`,
    `effective` and `contracted` are FOCUS's BilledCost, EffectiveCost and ContractedCost in the
    same currency, rounded alike (None when the page was not asked for their metrics).
    """

    day: date
    service: str
    record_type: str | None
    amount: Decimal
    currency: str
    estimated: bool
    metric: str
    page_id: int
    reported_amount: Decimal | None = None
    billed: Decimal | None = None
    effective: Decimal | None = None
    contracted: Decimal | None = None
    linked_account: str | None = None
    linked_account_name: str | None = None

    @property
    def key(self) -> tuple[date, str | None, str, str | None]:
        return (self.day, self.linked_account, self.service, self.record_type)

    @property
    def reported(self) -> Decimal:
        """Cost Explorer's Amount exactly as sent."""
        return self.amount if self.reported_amount is None else self.reported_amount


@dataclass(frozen=True)
class EurCost:
    """A cost line converted to EUR at the ECB rate of its day."""

    line: CostLine
    fx_rate: Decimal
    fx_rate_date: date
    fx_provisional: bool
    amount_eur: Decimal


def shown(text: str, limit: int = 40) -> str:
    """A text as it may appear in an error: quoted, escaped, at most `limit` characters of it."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def plain(amount: Decimal) -> str:
    """An amount without exponent or trailing zeros, e.g. 1500 for 1.5E+3 or 1500.0000000000."""
    with localcontext(MONEY):
        return format(amount.normalize(), "f")


def text_problem(text: str) -> str | None:
    """What in a text PostgreSQL cannot store, if anything (checked on SQLite too, alike)."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate (not valid Unicode)"
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every text in a JSON document (object keys included), with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path, str(key)
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _surely_storable(page: StoredPage) -> bool:
    """True when the page surely holds no NUL and no surrogate: its JSON text (ASCII, so both
    appear as escapes) has neither `\\u0000` nor a `\\ud800`-`\\udfff` escape."""
    text = json.dumps(page.response, default=str)
    return "\\u0000" not in text and _SURROGATE_ESCAPE.search(text) is None


def may_hold_unstorable_text(pages: Iterable[StoredPage]) -> bool:
    """Whether any page's JSON text shows a NUL or a surrogate escape (a fast test at C speed):
    only then does `check_storable` need to walk the pages."""
    return not all(_surely_storable(page) for page in pages)


def check_storable(pages: Iterable[StoredPage]) -> None:
    """Raise MalformedPayloadError if a page holds text PostgreSQL cannot store (a NUL, an
    unpaired surrogate), wherever it is: the raw pages are stored whole, as received. A page
    whose JSON text shows neither is passed at C speed; only a suspect one is walked."""
    for number, page in enumerate(pages, 1):
        if _surely_storable(page):
            continue
        for path, text in _strings(page.response, ""):
            problem = text_problem(text)
            if problem is not None:
                raise MalformedPayloadError(
                    f"page {number} has {problem} in {path or 'the response'}, which PULSE's "
                    "database cannot store"
                )


def to_eur(lines: Sequence[CostLine], rates: RateTable) -> list[EurCost]:
    """Convert each line at the ECB rate (EUR→currency) of its day: EUR = amount ÷ rate."""
    converted = []
    applied_rates: dict[tuple[str, date], AppliedRate] = {}  # a rate per currency and day
    with localcontext(MONEY):
        for line in lines:
            applied = applied_rates.get((line.currency, line.day))
            if applied is None:
                try:
                    applied = rates.rate_for(line.currency, line.day)
                except MissingRateError as error:
                    raise MalformedPayloadError(
                        f"cannot convert {line.currency} to EUR: {error}"
                    ) from None
                applied_rates[(line.currency, line.day)] = applied
            amount_eur = (line.amount / applied.rate).quantize(EUR_PLACES)
            if abs(amount_eur) >= AMOUNT_LIMIT:
                where = f"{line.service} ({line.record_type})" if line.record_type else line.service
                raise MalformedPayloadError(
                    f"{where} on {line.day}: {plain(line.reported)} {line.currency} is "
                    f"{amount_eur} EUR, too large to store: PULSE stores amounts below 10^18"
                )
            converted.append(
                EurCost(line, applied.rate, applied.rate_date, applied.provisional, amount_eur)
            )
    return converted


def totals_by_currency(lines: Iterable[CostLine]) -> dict[str, Decimal]:
    """Exact sums of the stored amounts per original currency."""
    totals: dict[str, Decimal] = {}
    with localcontext(MONEY):
        for line in lines:
            totals[line.currency] = totals.get(line.currency, Decimal(0)) + line.amount
    return totals
