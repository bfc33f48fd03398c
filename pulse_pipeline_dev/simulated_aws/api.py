"""GetCostAndUsage as pulse_pipeline calls it: the request, its pages, its tokens and errors.

The request shapes Cost Explorer documents that pulse_pipeline sends are simulated: ``DAILY`` or
``MONTHLY`` granularity; one or more cost metrics (each reporting the same amount); ``GroupBy``
one or two of the dimensions ``SERVICE``, ``RECORD_TYPE``, ``LINKED_ACCOUNT`` and
``BILLING_ENTITY`` or a ``TAG`` key (groups come back as ``key$value``, ``key$`` when untagged);
a ``Filter`` expression of ``Dimensions`` and ``Tags`` (``Key``, ``Values``) combined with
``And``, ``Or`` and ``Not``; and ``NextPageToken``. With ``LINKED_ACCOUNT`` grouped, the answer's
``DimensionValueAttributes`` gives each account's name as its ``description``. Any other request
fails with a ``ValidationException`` that names what is not simulated, so a change in the
pipeline's request shows at once instead of being answered with made-up data.

Which days are ``Estimated`` follows the calendar, as in Cost Explorer, never the requested
window (``first_estimated_day``): every day of the open month, and the previous month's days
until its bill closes on the ``BILL_CLOSES_ON_DAY``th. On 1-4 December all of November is still
estimated; from 5 December on it is final and only December's days are estimated. Why:

* AWS estimates the month in progress and finalises a month's bill in the first days of the
  next one; a day it answers with ``Estimated: false`` no longer changes. AWS names no fixed
  closing day: the 5th is an assumption, the one the benchmark (``pulse_pipeline_dev/bench.py``)
  makes too.
* The last days before today, which Cost Explorer also still revises, need no rule of their
  own: with the bill closing on the 5th, the four days before today are always in an open month.
* A backfill of a closed month therefore comes back final whatever its last day, so the next
  default sync does not reach back into it (it did while the last two days of every window
  were marked ``Estimated``).

"Today" is ``SimulationSettings.today``, or else the UTC date when the request is answered
(the pipeline's own "today"); ``SimulationSettings.estimated_from`` replaces the rule by a
fixed first estimated day.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from pulse_pipeline_dev.simulated_aws.data import BILLING_ENTITY, CostLine, format_amount

COST_METRICS: frozenset[str] = frozenset(
    {"UnblendedCost", "AmortizedCost", "NetUnblendedCost", "NetAmortizedCost"}
)
GROUP_BY: tuple[dict[str, str], ...] = (
    {"Type": "DIMENSION", "Key": "SERVICE"},
    {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
)
#: The dimensions a request may group or filter by here.
DIMENSIONS = frozenset({"SERVICE", "RECORD_TYPE", "LINKED_ACCOUNT", "BILLING_ENTITY"})
GRANULARITIES = frozenset({"DAILY", "MONTHLY"})
#: Cost Explorer error codes ``SimulationSettings.fail_with`` can inject, with their messages.
INJECTABLE_ERROR_CODES: Mapping[str, str] = MappingProxyType(
    {
        "DataUnavailableException": "The requested data is unavailable",
        "BillExpirationException": (
            "The requested data is unavailable because the bill for the period has expired"
        ),
        "InvalidNextTokenException": "Invalid pagination token",
        "RequestChangedException": "The request parameters changed between paginated requests",
        "ValidationException": "The request failed validation",
        # A role whose permission policy lacks ce:GetCostAndUsage.
        "AccessDeniedException": "User is not authorized to perform: ce:GetCostAndUsage",
    }
)

#: The day of the month on which the previous month's bill closes and its days become final.
BILL_CLOSES_ON_DAY = 5

_SIMULATED_KEYS = frozenset(
    {"TimePeriod", "Granularity", "Metrics", "GroupBy", "Filter", "NextPageToken"}
)


class CostExplorerError(Exception):
    """A Cost Explorer error as AWS sends it: HTTP 400 with a JSON ``__type`` and ``message``."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def body(self) -> bytes:
        """The JSON body botocore reads ``Error.Code`` and ``Error.Message`` from."""
        return json.dumps({"__type": self.code, "message": self.message}).encode()


def _invalid(message: str) -> CostExplorerError:
    return CostExplorerError("ValidationException", message)


def known_error(code: str) -> CostExplorerError:
    """The error ``code`` of ``INJECTABLE_ERROR_CODES`` with its message."""
    return CostExplorerError(code, INJECTABLE_ERROR_CODES[code])


@dataclass(frozen=True)
class CostRequest:
    """A valid GetCostAndUsage request; ``offset`` is the first group of the page it asks for."""

    start: date
    end: date
    metrics: tuple[str, ...]
    fingerprint: str
    offset: int
    granularity: str = "DAILY"
    group_by: tuple[tuple[str, str], ...] = (("DIMENSION", "SERVICE"), ("DIMENSION", "RECORD_TYPE"))
    filter: Mapping[str, Any] | None = None

    @property
    def metric(self) -> str:
        """The first of the requested metrics."""
        return self.metrics[0]

    def page_number(self, page_size: int) -> int:
        """1 for the request without a token, N for the one carrying the (N-1)th page's token."""
        return self.offset // page_size + 1


def _fingerprint(payload: Mapping[str, Any]) -> str:
    """A digest of every request parameter except ``NextPageToken``."""
    rest = {key: value for key, value in payload.items() if key != "NextPageToken"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:16]


def encode_token(offset: int, request_fingerprint: str) -> str:
    """An opaque page token holding the next offset and the request's fingerprint."""
    raw = json.dumps({"o": offset, "f": request_fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, request_fingerprint: str) -> int:
    """The offset in ``token``, or the error Cost Explorer sends for a bad or foreign token."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, token_fingerprint = data["o"], data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise known_error("InvalidNextTokenException") from error
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise known_error("InvalidNextTokenException")
    if token_fingerprint != request_fingerprint:
        raise known_error("RequestChangedException")
    return offset


def _parse_date(value: object, name: str) -> date:
    if not isinstance(value, str):
        raise _invalid(f"{name} is required")
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise _invalid(f"{name} {value!r} is not a valid date (YYYY-MM-DD)") from error


def parse_request(body: bytes) -> CostRequest:
    """Validate a GetCostAndUsage JSON body; raise ``ValidationException`` for what is not simulated."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError as error:
        raise _invalid("The request body is not JSON") from error
    if not isinstance(payload, dict):
        raise _invalid("The request body is not a JSON object")
    unsimulated = sorted(set(payload) - _SIMULATED_KEYS)
    if unsimulated:
        raise _invalid(f"{', '.join(unsimulated)} is not simulated")

    period = payload.get("TimePeriod")
    period = period if isinstance(period, dict) else {}
    start = _parse_date(period.get("Start"), "TimePeriod.Start")
    end = _parse_date(period.get("End"), "TimePeriod.End")
    if start >= end:
        raise _invalid("Start date (and hour) should be before end date (and hour)")
    granularity = payload.get("Granularity")
    if granularity not in GRANULARITIES:
        raise _invalid(f"Granularity {granularity!r} is not simulated: use DAILY or MONTHLY")
    metrics = payload.get("Metrics")
    if (
        not isinstance(metrics, list)
        or not metrics
        or len(set(map(str, metrics))) != len(metrics)
        or not set(metrics) <= COST_METRICS
    ):
        raise _invalid(
            f"Metrics {metrics!r} is not simulated: use distinct ones of {sorted(COST_METRICS)}"
        )
    group_by = _group_by(payload.get("GroupBy"))
    expression = payload.get("Filter")
    if expression is not None:
        _check_filter(expression)

    request_fingerprint = _fingerprint(payload)
    token = payload.get("NextPageToken")
    if token is not None and not isinstance(token, str):
        raise known_error("InvalidNextTokenException")
    offset = _decode_token(token, request_fingerprint) if token else 0
    return CostRequest(
        start,
        end,
        tuple(metrics),
        request_fingerprint,
        offset,
        str(granularity),
        group_by,
        expression,
    )


def _group_by(value: object) -> tuple[tuple[str, str], ...]:
    """One or two distinct groupings: a simulated DIMENSION, or a TAG key."""
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise _invalid(f"GroupBy {value!r} is not simulated: group by one or two keys")
    groups = []
    for group in value:
        kind = group.get("Type") if isinstance(group, dict) else None
        key = group.get("Key") if isinstance(group, dict) else None
        if set(group) != {"Type", "Key"} or not isinstance(key, str) or not key:
            raise _invalid(f"GroupBy {group!r} needs exactly a Type and a Key")
        if not (kind == "TAG" or (kind == "DIMENSION" and key in DIMENSIONS)):
            raise _invalid(
                f"GroupBy {group!r} is not simulated: use a TAG or one of {sorted(DIMENSIONS)}"
            )
        groups.append((kind, key))
    if len(set(groups)) != len(groups):
        raise _invalid(f"GroupBy {value!r} repeats a key")
    return tuple(groups)


def _check_filter(expression: object) -> None:
    """A Cost Explorer Expression: exactly one of And, Or (lists), Not, Dimensions or Tags."""
    if not isinstance(expression, dict) or len(expression) != 1:
        raise _invalid(f"Filter {expression!r} must have exactly one operator")
    ((operator, operand),) = expression.items()
    if operator in ("And", "Or"):
        if not isinstance(operand, list) or len(operand) < 2:
            raise _invalid(f"{operator} needs a list of at least two expressions")
        for inner in operand:
            _check_filter(inner)
    elif operator == "Not":
        _check_filter(operand)
    elif operator in ("Dimensions", "Tags"):
        values = operand.get("Values") if isinstance(operand, dict) else None
        key = operand.get("Key") if isinstance(operand, dict) else None
        if not isinstance(key, str) or not isinstance(values, list) or not values:
            raise _invalid(f"{operator} needs a Key and a non-empty list of Values")
        if operator == "Dimensions" and key not in DIMENSIONS:
            raise _invalid(f"Filter dimension {key!r} is not simulated: use {sorted(DIMENSIONS)}")
    else:
        raise _invalid(f"Filter operator {operator!r} is not simulated")


def tag_value(line: CostLine, key: str, tags: Mapping[str, Sequence[str]]) -> str:
    """The line's value of the cost allocation tag ``key`` ('' when untagged): the same for
    every day of an account's service, so splits are stable from one request to the next."""
    values = tags.get(key)
    if not values:
        return ""
    digest = hashlib.sha256(f"{key}|{line.account}|{line.service}".encode()).digest()
    pick = digest[0] % (len(values) + 1)
    return "" if pick == len(values) else values[pick]


def _value(line: CostLine, kind: str, key: str, tags: Mapping[str, Sequence[str]]) -> str:
    if kind == "TAG":
        return tag_value(line, key, tags)
    return {
        "SERVICE": line.service,
        "RECORD_TYPE": line.record_type,
        "LINKED_ACCOUNT": line.account,
        "BILLING_ENTITY": BILLING_ENTITY,
    }[key]


def matches(
    line: CostLine, expression: Mapping[str, Any], tags: Mapping[str, Sequence[str]]
) -> bool:
    """Whether the line passes a (checked) Filter expression."""
    ((operator, operand),) = expression.items()
    if operator == "And":
        return all(matches(line, inner, tags) for inner in operand)
    if operator == "Or":
        return any(matches(line, inner, tags) for inner in operand)
    if operator == "Not":
        return not matches(line, operand, tags)
    kind = "TAG" if operator == "Tags" else "DIMENSION"
    return _value(line, kind, operand["Key"], tags) in operand["Values"]


def _periods(request: CostRequest) -> list[tuple[date, date]]:
    """The request's days, or its calendar months cut to the requested period."""
    if request.granularity == "DAILY":
        days = (request.end - request.start).days
        return [
            (request.start + timedelta(n), request.start + timedelta(n + 1)) for n in range(days)
        ]
    periods, start = [], request.start
    while start < request.end:
        next_month = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
        periods.append((start, min(next_month, request.end)))
        start = next_month
    return periods


@dataclass(frozen=True)
class Group:
    """One group of one period: its keys and summed cost."""

    start: date
    end: date
    keys: tuple[str, ...]
    cost: Decimal


def groups(
    request: CostRequest, lines: Sequence[CostLine], tags: Mapping[str, Sequence[str]]
) -> list[Group]:
    """The request's groups, period by period, in the order their first line comes."""
    by_day: dict[date, list[CostLine]] = {}
    for line in lines:
        by_day.setdefault(line.day, []).append(line)
    found: list[Group] = []
    for start, end in _periods(request):
        sums: dict[tuple[str, ...], Decimal] = {}
        for offset in range((end - start).days):
            for line in by_day.get(start + timedelta(offset), ()):
                if request.filter is not None and not matches(line, request.filter, tags):
                    continue
                keys = tuple(_value(line, kind, key, tags) for kind, key in request.group_by)
                sums[keys] = sums.get(keys, Decimal(0)) + line.cost
        found += [Group(start, end, keys, cost) for keys, cost in sums.items()]
    return found


def first_estimated_day(today: date) -> date:
    """The oldest day Cost Explorer still answers ``Estimated`` on ``today`` (UTC): the 1st of
    the current month, or of the previous month while its bill is open (before the
    ``BILL_CLOSES_ON_DAY``th)."""
    first_of_month = today.replace(day=1)
    if today.day >= BILL_CLOSES_ON_DAY:
        return first_of_month
    return (first_of_month - timedelta(days=1)).replace(day=1)


def answer(
    request: CostRequest,
    lines: Sequence[CostLine] | Sequence[Group],
    *,
    currency: str,
    page_size: int,
    first_estimated: date,
    endless: bool = False,
    account_names: Mapping[str, str] | None = None,
    tags: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The response page for ``request`` over the visible ``lines`` (an account's own, or a
    payer's and its linked accounts'), or over their ``groups`` computed before.

    A page holds at most ``page_size`` groups, so a period may continue on the next page (its
    ``TimePeriod`` then ends one page and starts the next), as in the real service. Every
    period reaching ``first_estimated`` is ``Estimated``, whatever the requested period.
    ``endless``: after the last group, empty pages follow forever, each with a new
    ``NextPageToken``. A ``TAG`` group's key is ``key$value`` (``key$`` when untagged).
    """
    tags = tags or {}
    found = [line for line in lines if isinstance(line, Group)]
    if len(found) != len(lines):
        found = groups(request, [line for line in lines if isinstance(line, CostLine)], tags)
    if request.offset > len(found) and not endless:
        raise known_error("InvalidNextTokenException")
    page = found[request.offset : request.offset + page_size]
    results: list[dict[str, Any]] = []
    accounts: dict[str, None] = {}
    for group in page:
        if not results or results[-1]["TimePeriod"]["Start"] != group.start.isoformat():
            results.append(
                {
                    "TimePeriod": {"Start": group.start.isoformat(), "End": group.end.isoformat()},
                    "Total": {},
                    "Groups": [],
                    "Estimated": group.end - timedelta(days=1) >= first_estimated,
                }
            )
        amount = {"Amount": format_amount(group.cost), "Unit": currency}
        keys = [
            f"{key}${value}" if kind == "TAG" else value
            for (kind, key), value in zip(request.group_by, group.keys, strict=True)
        ]
        for (_, key), value in zip(request.group_by, group.keys, strict=True):
            if key == "LINKED_ACCOUNT":
                accounts[value] = None
        results[-1]["Groups"].append(
            {"Keys": keys, "Metrics": {metric: dict(amount) for metric in request.metrics}}
        )
    names = account_names or {}
    response: dict[str, Any] = {
        "GroupDefinitions": [{"Type": kind, "Key": key} for kind, key in request.group_by],
        "ResultsByTime": results,
        "DimensionValueAttributes": [
            {"Value": account, "Attributes": {"description": names.get(account, account)}}
            for account in accounts
        ],
    }
    if endless:
        response["NextPageToken"] = encode_token(request.offset + page_size, request.fingerprint)
    elif request.offset + len(page) < len(found):
        response["NextPageToken"] = encode_token(request.offset + len(page), request.fingerprint)
    return response
