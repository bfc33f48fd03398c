"""Cost Explorer's raw pages, checked, to one exact cost line per day, service and record type."""

import re
from collections.abc import Iterable
from datetime import date
from decimal import Decimal, localcontext
from typing import Any

from pulse_pipeline.aws.metrics import focus_metrics
from pulse_pipeline.costs import (
    AMOUNT_LIMIT,
    AMOUNT_PLACES,
    MONEY,
    CostLine,
    MalformedPayloadError,
    StoredPage,
    shown,
    text_problem,
)
from pulse_pipeline.sync_window import SyncWindow

# The unique key (account, date, service, record type) is a btree index, whose entries
# PostgreSQL caps at about 2,700 bytes: these caps leave room for the account id.
MAX_SERVICE_BYTES = 1024
MAX_RECORD_TYPE_BYTES = 256
_CURRENCY = re.compile(r"[A-Z]{3}")
# Plain or exponent notation (1e-30, 1.5E+3); no spaces, underscores, NaN or Infinity.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_MISSING = object()

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


def _kind(value: Any) -> str:
    """What a JSON value is, in words, for an error that says what was expected instead."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
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


def _name(text: str, what: str, day: date, max_bytes: int) -> str:
    """A service name or record type that PULSE's database and unique key can hold."""
    problem = text_problem(text)
    if problem is not None:
        raise MalformedPayloadError(
            f"the {what} {shown(text)} on {day} contains {problem}, which PULSE's database "
            "cannot store"
        )
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise MalformedPayloadError(
            f"the {what} {shown(text)} on {day} is {size:,} bytes long (UTF-8); "
            f"PULSE stores at most {max_bytes:,}"
        )
    return text


_ACCOUNT_ID = re.compile(r"\d{12}", re.ASCII)
# A linked account's name as PULSE stores it (AWS allows 50 characters; room to spare).
MAX_ACCOUNT_NAME_BYTES = 256
# The shapes of page PULSE asks for, by GroupBy keys: what each group's Keys are.
SERVICE_RECORD_TYPE = ["SERVICE", "RECORD_TYPE"]
LINKED_ACCOUNT_SERVICE = ["LINKED_ACCOUNT", "SERVICE"]
LINKED_ACCOUNT_RECORD_TYPE = ["LINKED_ACCOUNT", "RECORD_TYPE"]


def _strings(group: Any, position: int, day: date, expected: str, count: int) -> list[str]:
    """A group's Keys: exactly `count` strings, else an error naming what came instead."""
    keys = _field(group, "Keys")
    if not (
        isinstance(keys, list) and len(keys) == count and all(isinstance(key, str) for key in keys)
    ):
        kind = _kind(keys)
        if isinstance(keys, list) and len(keys) == count:
            kind = next(
                f"a list whose item {n} is {_kind(key)}"
                for n, key in enumerate(keys, 1)
                if not isinstance(key, str)
            )
        raise MalformedPayloadError(
            f"Keys of group {position} on {day} is {kind}, expected a list of {expected}"
        )
    return keys


def _account(text: str, day: date) -> str:
    if not _ACCOUNT_ID.fullmatch(text):
        raise MalformedPayloadError(
            f"the linked account {shown(text)} on {day} is not a 12-digit AWS account id"
        )
    return text


def filtered_record_type(request: dict[str, Any]) -> str | None:
    """The one record type a request is filtered to, if it is."""
    dimension = (request.get("Filter") or {}).get("Dimensions") or {}
    values = dimension.get("Values") or []
    return str(values[0]) if dimension.get("Key") == "RECORD_TYPE" and len(values) == 1 else None


def _keys(
    group: Any, position: int, day: date, page: StoredPage
) -> tuple[str | None, str, str | None]:
    """The (linked account, service, record type) of a group of a cost page.

    SERVICE x RECORD_TYPE (or SERVICE alone) pages are the account's own costs; LINKED_ACCOUNT
    x SERVICE pages carry their record type in the request's Filter.
    """
    shape = page.grouped_by
    if shape == LINKED_ACCOUNT_SERVICE:
        keys = _strings(group, position, day, "2 strings (linked account, service)", 2)
        service = _name(keys[1], "service name", day, MAX_SERVICE_BYTES)
        return _account(keys[0], day), service, filtered_record_type(page.request)
    if page.grouped_by_record_type:
        keys = _strings(group, position, day, "2 strings (service, record type)", 2)
        service = _name(keys[0], "service name", day, MAX_SERVICE_BYTES)
        record_type = _name(keys[1], "record type", day, MAX_RECORD_TYPE_BYTES)
        return page.account_id, service, record_type
    keys = _strings(group, position, day, "1 string (service)", 1)
    return page.account_id, _name(keys[0], "service name", day, MAX_SERVICE_BYTES), None


def account_names(pages: Iterable[StoredPage]) -> dict[str, str]:
    """Each linked account's name, from the pages' DimensionValueAttributes (`description`)."""
    names: dict[str, str] = {}
    for number, page in enumerate(pages, 1):
        attributes = _field(page.response, "DimensionValueAttributes")
        if attributes is _MISSING or attributes is None:
            continue
        for item in _list(page.response, "DimensionValueAttributes", f"on page {number}"):
            value = _field(item, "Value")
            description = _field(_field(item, "Attributes"), "description")
            if not isinstance(value, str) or not _ACCOUNT_ID.fullmatch(value):
                continue  # values of other dimensions (or none) name no account
            if not isinstance(description, str):
                raise MalformedPayloadError(
                    f"the name of linked account {value} on page {number} is "
                    f"{_kind(description)}, expected a string"
                )
            problem = text_problem(description)
            if problem is not None or len(description.encode("utf-8")) > MAX_ACCOUNT_NAME_BYTES:
                raise MalformedPayloadError(
                    f"the name of linked account {value} on page {number} "
                    f"{'contains ' + problem if problem else 'is too long'}, which PULSE's "
                    "database cannot store"
                )
            names[value] = description
    return names


def linked_accounts_seen(pages: Iterable[StoredPage]) -> tuple[list[str], list[str]]:
    """The linked accounts and the record types the LINKED_ACCOUNT x RECORD_TYPE pages show,
    each sorted; checked like every page."""
    accounts: set[str] = set()
    record_types: set[str] = set()
    for number, page in enumerate(pages, 1):
        for position, period in enumerate(
            _list(page.response, "ResultsByTime", f"on page {number}"), 1
        ):
            day = _day(period, f"result {position} of ResultsByTime on page {number}")
            for index, group in enumerate(_list(period, "Groups", f"on {day}"), 1):
                keys = _strings(group, index, day, "2 strings (linked account, record type)", 2)
                accounts.add(_account(keys[0], day))
                record_types.add(_name(keys[1], "record type", day, MAX_RECORD_TYPE_BYTES))
    return sorted(accounts), sorted(record_types)


def _stored_amount(text: str, amount: Decimal, where: str) -> Decimal:
    """A Cost Explorer Amount as stored: rounded half-even to AMOUNT_PLACES, below AMOUNT_LIMIT."""
    too_large = MalformedPayloadError(
        f"{where} has an Amount of {shown(text)}, too large to store: PULSE stores amounts "
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
        raise MalformedPayloadError(f"{where} has a non-numeric Amount ({shown(text)})")
    reported = Decimal(text)
    return _stored_amount(text, reported, where), reported, unit


def _focus_amounts(
    group: Any, page: StoredPage, where: str, unit: str, amount: Decimal
) -> dict[str, Decimal | None]:
    """The group's BilledCost, EffectiveCost and ContractedCost (`billed`, `effective`,
    `contracted`), each from its metric when the page asked for it, in the group's currency."""
    stored = {page.metric: amount}
    for metric in page.metrics[1:]:
        other, _, other_unit = _amount(group, metric, where)
        if other_unit != unit:
            raise MalformedPayloadError(
                f"{where} reports {page.metric} in {unit} but {metric} in {other_unit}"
            )
        stored[metric] = other
    wanted = focus_metrics(page.metric)
    return {
        "billed": stored.get(wanted.billed),
        "effective": stored.get(wanted.effective),
        "contracted": stored.get(wanted.contracted),
    }


def _day(period: Any, where: str) -> date:
    if not isinstance(period, dict):
        raise MalformedPayloadError(f"{where} is {_kind(period)}, expected an object")
    try:
        return date.fromisoformat(period["TimePeriod"]["Start"])
    except (KeyError, TypeError, ValueError):
        raise MalformedPayloadError("a result has no valid TimePeriod.Start") from None


def cost_lines(pages: Iterable[StoredPage], window: SyncWindow) -> list[CostLine]:
    """Every (day, linked account, service, record type) cost in the pages, checked: the structure Cost Explorer
    documents (lists, objects, strings and booleans where it promises them), inside the window,
    numeric amounts PULSE can store, a Unit, text PostgreSQL can hold. Raises
    MalformedPayloadError on the first problem, so nothing half-valid is ever written.
    """
    pages = list(pages)
    names = account_names(pages)
    lines: dict[tuple[date, str | None, str, str | None], CostLine] = {}
    for number, page in enumerate(pages, 1):
        if page.grouped_by == LINKED_ACCOUNT_RECORD_TYPE:
            continue  # which accounts and record types the window has: no cost lines
        metric = page.metric
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
                linked, service, record_type = _keys(group, index, day, page)
                where = (
                    f"{service} ({record_type}) on {day}" if record_type else f"{service} on {day}"
                )
                if linked is not None and linked != page.account_id:
                    where = f"{where} in account {linked}"
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
                    **_focus_amounts(group, page, where, unit, amount),
                    linked_account=linked,
                    linked_account_name=names.get(linked) if linked else None,
                )
                if line.key in lines:
                    raise MalformedPayloadError(f"{where} appears twice in the response")
                lines[line.key] = line
    return sorted(
        lines.values(),
        key=lambda line: (
            line.day,
            line.linked_account or "",
            line.service,
            line.record_type or "",
        ),
    )
