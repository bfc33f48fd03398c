"""GetCostAndUsage as pulse_pipeline calls it: the request, its pages, its tokens and errors.

Only the request pulse_pipeline sends is simulated: ``DAILY`` granularity, one or more cost metrics (each reporting the same amount),
``GroupBy`` ``SERVICE`` then ``RECORD_TYPE``, and ``NextPageToken``. Any other request fails with
a ``ValidationException`` that names what is not simulated, so a change in the pipeline's
request shows at once instead of being answered with made-up data.

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
from types import MappingProxyType
from typing import Any

from pulse_pipeline_dev.simulated_aws.data import CostLine, format_amount

COST_METRICS: frozenset[str] = frozenset(
    {"UnblendedCost", "AmortizedCost", "NetUnblendedCost", "NetAmortizedCost"}
)
GROUP_BY: tuple[dict[str, str], ...] = (
    {"Type": "DIMENSION", "Key": "SERVICE"},
    {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
)
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

_SIMULATED_KEYS = frozenset({"TimePeriod", "Granularity", "Metrics", "GroupBy", "NextPageToken"})


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
    if payload.get("Granularity") != "DAILY":
        raise _invalid(f"Granularity {payload.get('Granularity')!r} is not simulated: use DAILY")
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
    if payload.get("GroupBy") != list(GROUP_BY):
        raise _invalid(f"GroupBy {payload.get('GroupBy')!r} is not simulated: use {list(GROUP_BY)}")

    request_fingerprint = _fingerprint(payload)
    token = payload.get("NextPageToken")
    if token is not None and not isinstance(token, str):
        raise known_error("InvalidNextTokenException")
    offset = _decode_token(token, request_fingerprint) if token else 0
    return CostRequest(start, end, tuple(metrics), request_fingerprint, offset)


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
    lines: Sequence[CostLine],
    *,
    currency: str,
    page_size: int,
    first_estimated: date,
    endless: bool = False,
) -> dict[str, Any]:
    """The response page for ``request`` over the window's ``lines``.

    A page holds at most ``page_size`` groups, so a day may continue on the next page (its
    ``TimePeriod`` then ends one page and starts the next), as in the real service. Every day
    from ``first_estimated`` on is ``Estimated``, whatever the requested period. ``endless``:
    after the last group, empty pages follow forever, each with a new ``NextPageToken``.
    """
    if request.offset > len(lines) and not endless:
        raise known_error("InvalidNextTokenException")
    page = lines[request.offset : request.offset + page_size]
    results: list[dict[str, Any]] = []
    for line in page:
        if not results or results[-1]["TimePeriod"]["Start"] != line.day.isoformat():
            results.append(
                {
                    "TimePeriod": {
                        "Start": line.day.isoformat(),
                        "End": (line.day + timedelta(days=1)).isoformat(),
                    },
                    "Total": {},
                    "Groups": [],
                    "Estimated": line.day >= first_estimated,
                }
            )
        amount = {"Amount": format_amount(line.cost), "Unit": currency}
        results[-1]["Groups"].append(
            {
                "Keys": [line.service, line.record_type],
                "Metrics": {metric: dict(amount) for metric in request.metrics},
            }
        )
    response: dict[str, Any] = {
        "GroupDefinitions": [dict(group) for group in GROUP_BY],
        "ResultsByTime": results,
        "DimensionValueAttributes": [],
    }
    if endless:
        response["NextPageToken"] = encode_token(request.offset + page_size, request.fingerprint)
    elif request.offset + len(page) < len(lines):
        response["NextPageToken"] = encode_token(request.offset + len(page), request.fingerprint)
    return response
