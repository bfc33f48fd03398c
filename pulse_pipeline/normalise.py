"""From raw Cost Explorer pages to one exact cost line per day and service, then to EUR rows."""

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from pulse_pipeline.fx import AppliedRate, MissingRateError, RateTable
from pulse_pipeline.sync_window import SyncWindow

# CostRecord's amount and amountEUR are NUMERIC(28,10): 10 decimal places, below 10^18.
# Every stored figure is rounded half-even to those places once; larger ones are rejected.
AMOUNT_PLACES = EUR_PLACES = Decimal("1e-10")
AMOUNT_LIMIT = Decimal("1e18")
# Wide enough that sums and quotients of such figures are exact before their one rounding.
MONEY = Context(prec=60, rounding=ROUND_HALF_EVEN)
# The unique key (account, date, service, record type) is a btree index, whose entries
# PostgreSQL caps at about 2,700 bytes: these caps leave room for the account id.
MAX_SERVICE_BYTES = 1024
MAX_RECORD_TYPE_BYTES = 256
_CURRENCY = re.compile(r"[A-Z]{3}")
# Plain or exponent notation (1e-30, 1.5E+3); no spaces, underscores, NaN or Infinity.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_MISSING = object()
# A UTF-16 surrogate as json.dumps escapes it (a pair for characters beyond the BMP, or alone).
_SURROGATE_ESCAPE = re.compile(r"\\ud[89a-f][0-9a-f]{2}")

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
    """One day's cost of one service, in the currency Cost Explorer reported it in.

    `amount` is what is stored: Cost Explorer's Amount rounded half-even to AMOUNT_PLACES;
    `reported_amount` is that Amount exactly as sent, when it had more places.
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

    @property
    def key(self) -> tuple[date, str, str | None]:
        return (self.day, self.service, self.record_type)

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


def _shown(text: str, limit: int = 40) -> str:
    """A text as it may appear in an error: quoted, escaped, at most `limit` characters of it."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def _plain(amount: Decimal) -> str:
    """An amount without exponent or trailing zeros, e.g. 1500 for 1.5E+3 or 1500.0000000000."""
    with localcontext(MONEY):
        return format(amount.normalize(), "f")


def _kind(value: Any) -> str:
    """What a JSON value is, in words, for an error that says what was expected instead."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_shown(value)}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _field(container: Any, name: str) -> Any:
    return container.get(name, _MISSING) if isinstance(container, dict) else _MISSING


def _list(container: Any, name: str, where: str) -> list[Any]:
    value = _field(container, name)
    if not isinstance(value, list):
        raise MalformedPayloadError(f"{name} {where} is {_kind(value)}, expected a list")
    return value


def _text_problem(text: str) -> str | None:
    """What in a text PostgreSQL cannot store, if anything (checked on SQLite too, alike)."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate (not valid Unicode)"
    return None


def _name(text: str, what: str, day: date, max_bytes: int) -> str:
    """A service name or record type that PULSE's database and unique key can hold."""
    problem = _text_problem(text)
    if problem is not None:
        raise MalformedPayloadError(
            f"the {what} {_shown(text)} on {day} contains {problem}, which PULSE's database "
            "cannot store"
        )
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise MalformedPayloadError(
            f"the {what} {_shown(text)} on {day} is {size:,} bytes long (UTF-8); "
            f"PULSE stores at most {max_bytes:,}"
        )
    return text


def _keys(group: Any, position: int, day: date, record_types: bool) -> tuple[str, str | None]:
    """The (service, record type) of a group: Keys must be exactly that many strings."""
    keys = _field(group, "Keys")
    wanted = 2 if record_types else 1
    if not (
        isinstance(keys, list) and len(keys) == wanted and all(isinstance(key, str) for key in keys)
    ):
        kind = _kind(keys)
        if isinstance(keys, list) and len(keys) == wanted:
            kind = next(
                f"a list whose item {n} is {_kind(key)}"
                for n, key in enumerate(keys, 1)
                if not isinstance(key, str)
            )
        expected = "2 strings (service, record type)" if record_types else "1 string (service)"
        raise MalformedPayloadError(
            f"Keys of group {position} on {day} is {kind}, expected a list of {expected}"
        )
    service = _name(keys[0], "service name", day, MAX_SERVICE_BYTES)
    if not record_types:
        return service, None
    return service, _name(keys[1], "record type", day, MAX_RECORD_TYPE_BYTES)


def _stored_amount(text: str, amount: Decimal, where: str) -> Decimal:
    """A Cost Explorer Amount as stored: rounded half-even to AMOUNT_PLACES, below AMOUNT_LIMIT."""
    too_large = MalformedPayloadError(
        f"{where} has an Amount of {_shown(text)}, too large to store: PULSE stores amounts "
        "below 10^18 with 10 decimal places"
    )
    if amount.adjusted() >= 18:
        raise too_large
    with localcontext(MONEY):
        rounded = amount.quantize(AMOUNT_PLACES)
    if abs(rounded) >= AMOUNT_LIMIT:
        raise too_large
    return rounded if rounded else rounded.copy_abs()


def _amount(group: Any, metric: str, where: str) -> tuple[Decimal, Decimal, str]:
    """The stored amount, the amount as reported, and the currency of one group."""
    metrics = _field(group, "Metrics")
    if not isinstance(metrics, dict):
        raise MalformedPayloadError(f"Metrics of {where} is {_kind(metrics)}, expected an object")
    value = metrics.get(metric)
    if not isinstance(value, dict):
        raise MalformedPayloadError(f"{where} has no {metric}")
    unit = value.get("Unit")
    if not isinstance(unit, str) or not _CURRENCY.fullmatch(unit):
        raise MalformedPayloadError(f"{where} has no valid currency Unit ({unit!r})")
    text = value.get("Amount", _MISSING)
    if not isinstance(text, str):
        if text is _MISSING or text is None:
            raise MalformedPayloadError(f"{where} has a non-numeric Amount ({_kind(text)})")
        raise MalformedPayloadError(
            f"Amount of {where} is {_kind(text)}, expected a decimal string"
        )
    if not _DECIMAL.fullmatch(text):
        raise MalformedPayloadError(f"{where} has a non-numeric Amount ({_shown(text)})")
    reported = Decimal(text)
    return _stored_amount(text, reported, where), reported, unit


def _day(period: Any, where: str) -> date:
    if not isinstance(period, dict):
        raise MalformedPayloadError(f"{where} is {_kind(period)}, expected an object")
    try:
        return date.fromisoformat(period["TimePeriod"]["Start"])
    except (KeyError, TypeError, ValueError):
        raise MalformedPayloadError("a result has no valid TimePeriod.Start") from None


def cost_lines(pages: Iterable[StoredPage], window: SyncWindow) -> list[CostLine]:
    """Every (day, service, record type) cost in the pages, checked: the structure Cost Explorer
    documents (lists, objects, strings and booleans where it promises them), inside the window,
    numeric amounts PULSE can store, a Unit, text PostgreSQL can hold. Raises
    MalformedPayloadError on the first problem, so nothing half-valid is ever written.
    """
    lines: dict[tuple[date, str, str | None], CostLine] = {}
    for number, page in enumerate(pages, 1):
        metric, by_record_type = page.metric, page.grouped_by_record_type
        results = _list(page.response, "ResultsByTime", f"on page {number}")
        for position, period in enumerate(results, 1):
            day = _day(period, f"result {position} of ResultsByTime on page {number}")
            if not window.start <= day <= window.end:
                raise MalformedPayloadError(f"Cost Explorer returned {day}, outside {window}")
            groups = _list(period, "Groups", f"on {day}")
            estimated = _field(period, "Estimated")
            if not isinstance(estimated, bool):
                raise MalformedPayloadError(
                    f"Estimated on {day} is {_kind(estimated)}, expected true or false"
                )
            for index, group in enumerate(groups, 1):
                if not isinstance(group, dict):
                    raise MalformedPayloadError(
                        f"group {index} on {day} is {_kind(group)}, expected an object"
                    )
                service, record_type = _keys(group, index, day, by_record_type)
                where = (
                    f"{service} ({record_type}) on {day}" if record_type else f"{service} on {day}"
                )
                amount, reported, unit = _amount(group, metric, where)
                line = CostLine(
                    day,
                    service,
                    record_type,
                    amount,
                    unit,
                    estimated,
                    metric,
                    page.id,
                    reported if reported != amount else None,
                )
                if line.key in lines:
                    raise MalformedPayloadError(f"{where} appears twice in the response")
                lines[line.key] = line
    return sorted(lines.values(), key=lambda line: (line.day, line.service, line.record_type or ""))


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


def surely_storable(page: StoredPage) -> bool:
    """True when the page surely holds no NUL and no surrogate: its JSON text (ASCII, so both
    appear as escapes) has neither `\\u0000` nor a `\\ud800`-`\\udfff` escape."""
    text = json.dumps(page.response, default=str)
    return "\\u0000" not in text and _SURROGATE_ESCAPE.search(text) is None


def check_storable(pages: Iterable[StoredPage]) -> None:
    """Raise MalformedPayloadError if a page holds text PostgreSQL cannot store (a NUL, an
    unpaired surrogate), wherever it is: the raw pages are stored whole, as received. A page
    whose JSON text shows neither is passed at C speed; only a suspect one is walked."""
    for number, page in enumerate(pages, 1):
        if surely_storable(page):
            continue
        for path, text in _strings(page.response, ""):
            problem = _text_problem(text)
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
                    f"{where} on {line.day}: {_plain(line.reported)} {line.currency} is "
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
