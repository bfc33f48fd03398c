"""A local AWS (STS + Cost Explorer) for the demo and the benchmark, built on moto's server.

Never used by the production code path, nor by the main tests (those queue exact results in
moto's Cost Explorer result queue). ``SimulatedAws`` starts ``moto.server.ThreadedMotoServer``
on ``127.0.0.1`` and a free port inside this process and, while it runs, replaces three moto
methods (all restored on exit):

``moto.ce.models.CostExplorerBackend.get_cost_and_usage``
    Instead of replaying queued results, it *answers the request*: ``TimePeriod`` (Start
    inclusive, End exclusive), ``Granularity`` (``DAILY`` only), every requested ``Metrics``
    name, ``GroupBy`` on the dimensions ``SERVICE``, ``RECORD_TYPE`` and ``LINKED_ACCOUNT`` (at
    most two keys, as in AWS) and ``NextPageToken``. Amounts are deterministic decimal strings
    (at most 10 decimals) derived from a hash of (seed, account, day, service, record type), so
    two runs with the same ``SimulationSettings`` see the same costs. The account is the one
    whose credentials call (credentials from ``AssumeRole`` on
    ``arn:aws:iam::111111111111:role/X`` read account 111111111111); its ``Unit`` comes from
    ``SimulationSettings.currency_by_account`` (default ``USD``). Pages hold at most
    ``page_size`` groups; as in the real service a day's groups may continue on the next page
    (the same ``TimePeriod`` then appears at the end of one page and the start of the next).
    The token encodes the offset and a fingerprint of the request: changing any other
    parameter between pages raises ``RequestChangedException``, a malformed token raises
    ``InvalidNextTokenException``, bad input raises ``ValidationException`` (all HTTP 400 JSON
    errors that botocore turns into ``ClientError``). The last ``estimated_days`` days of the
    requested period are ``Estimated: true``. ``Filter`` is accepted and ignored. Each request
    sleeps ``latency_seconds`` first and is counted per account (errors included).

``moto.ce.responses.CostExplorerResponse.get_cost_and_usage``
    The HTTP handler: it answers exactly as above, but also knows the access key id that signed
    the request (the ``Credential=AKID/...`` of its ``Authorization`` header, which the backend
    method never sees), so that the injected faults below can tell credentials apart. Requests
    that reach the backend method directly (not over HTTP) have no access key: the token expiry
    fault ignores them.

``moto.sts.models.STSBackend.assume_role``
    Denies role ARNs listed in ``SimulationSettings.denied_role_arns`` and, for role ARNs in
    ``SimulationSettings.required_external_ids``, a missing or different ``ExternalId``. The
    denial is moto's own ``moto.core.exceptions.AccessDeniedError``: a real HTTP 403
    ``<ErrorResponse>`` XML body with code ``AccessDenied`` that botocore raises as
    ``ClientError`` with ``Error.Code == "AccessDenied"``, like AWS. Every other role is
    assumed as moto always does (the role need not exist).

Fault injection (all off by default), so that tests of the pipeline can provoke AWS failures
through the ordinary boto3 HTTP path, where botocore's own retry logic runs:

``throttle_first``
    Account -> N: the account's first N ``GetCostAndUsage`` requests fail with
    ``LimitExceededException`` ("Rate limit exceeded", HTTP 400 JSON), which botocore's
    ``standard`` (and ``adaptive``) retry mode classifies as throttling and retries with
    throttling backoff; the ``legacy`` mode (boto3's default) does not retry it.
``expire_token_at_page``
    Account -> page N (1-based; page N is the request carrying the token that the (N-1)th page
    returned, page 1 the request without a token): the first such request of the account fails
    with ``ExpiredTokenException`` ("The security token included in the request is expired",
    HTTP 400 JSON) and from then on every request signed with an access key id that had already
    signed a ``GetCostAndUsage`` request of that account (the failing one included) fails the
    same way. Credentials assumed afterwards work and can continue from the same
    ``NextPageToken``. It fires once per account. botocore does not retry it.
``fail_with``
    Account -> (error code, page N): every request of the account for page N fails with that
    Cost Explorer error (HTTP 400 JSON; one of ``INJECTABLE_ERROR_CODES``). None is retried by
    botocore.
``sts_throttle_first`` and ``sts_latency_seconds``
    The first N ``AssumeRole`` calls (over all roles) fail with ``Throttling`` ("Rate exceeded",
    HTTP 400, the ``<ErrorResponse><Error>`` XML that moto writes for STS errors and AWS sends),
    which botocore retries as throttling; every ``AssumeRole`` call first sleeps
    ``sts_latency_seconds`` (longer than a client's ``read_timeout`` provokes
    ``ReadTimeoutError``, which botocore retries as a transient error).

Order of the checks on each ``GetCostAndUsage`` request: latency sleep, count, already-expired
access key, throttling, request validation, token expiry at the page, ``fail_with``, answer.
On each ``AssumeRole``: count (``assume_role_count``, per account of the role ARN; on arrival,
so calls whose client timed out count too), latency sleep, throttling, denial, moto's own
``assume_role``. Every request and call is counted, whatever it answers.

Why not moto's IAM validation for the denied role: switching it on
(``INITIAL_NO_AUTH_ACTION_COUNT`` or ``POST /moto-api/reset-auth``) is process-global and makes
*every* request (STS and Cost Explorer) check its signature and permissions against IAM users,
access keys and policies that would all have to be created in moto first (dummy credentials no
longer work); and even then moto only checks ``ExternalId`` for a role in the caller's own
account (moto/core/authorization.py, moto/iam/access_control.py). Patching the backend method
keeps the simulation self-contained and the denial explicit.

While the simulation runs, werkzeug's per-request access log is silenced (unless
``log_requests=True``). Only one ``SimulatedAws`` can run at a time in a process, because the
patches are on moto's classes; they also affect in-process moto (``mock_aws``) until exit.

Example::

    with SimulatedAws(SimulationSettings(currency_by_account={"222222222222": "EUR"})) as aws:
        sts = boto3.client("sts", endpoint_url=aws.endpoint_url)
        ...
        os.environ.update(aws.environment())  # or pass it to a subprocess
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import Any, Self
from xml.sax.saxutils import escape

from moto.ce.models import CostExplorerBackend
from moto.ce.responses import CostExplorerResponse
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.server import ThreadedMotoServer
from moto.sts.models import AssumedRole, STSBackend
from werkzeug.exceptions import HTTPException

__all__ = [
    "COST_METRICS",
    "INJECTABLE_ERROR_CODES",
    "RECORD_TYPES",
    "SUPPORTED_GROUP_BY_DIMENSIONS",
    "USAGE_METRICS",
    "SimulatedAws",
    "SimulationSettings",
    "service_names",
]

# (Cost Explorer service name, typical daily cost in the account's currency)
_KNOWN_SERVICES: tuple[tuple[str, str], ...] = (
    ("Amazon Elastic Compute Cloud - Compute", "140"),
    ("Amazon Simple Storage Service", "18"),
    ("Amazon Relational Database Service", "75"),
    ("EC2 - Other", "32"),
    ("Amazon Virtual Private Cloud", "9"),
    ("AmazonCloudWatch", "6"),
    ("AWS Lambda", "4"),
    ("Amazon DynamoDB", "12"),
    ("Amazon Elastic Load Balancing", "15"),
    ("Amazon Elastic Container Service", "24"),
    ("AWS Key Management Service", "1.2"),
    ("Amazon Route 53", "0.6"),
    ("Amazon Simple Queue Service", "0.8"),
    ("Amazon Simple Notification Service", "0.3"),
    ("AWS Secrets Manager", "0.5"),
    ("Amazon EC2 Container Registry (ECR)", "1.5"),
    ("AWS CloudTrail", "2"),
    ("Amazon CloudFront", "7"),
    ("Amazon ElastiCache", "20"),
    ("AWS Glue", "11"),
    ("Amazon Athena", "3"),
    ("Amazon Kinesis", "8"),
    ("AWS Backup", "2.5"),
    ("Amazon Elastic File System", "5"),
)

#: Metrics that are money: ``Unit`` is the account's currency.
COST_METRICS: frozenset[str] = frozenset(
    {"AmortizedCost", "BlendedCost", "NetAmortizedCost", "NetUnblendedCost", "UnblendedCost"}
)
#: Metrics that are quantities: ``Unit`` is ``N/A`` (mixed units summed, as Cost Explorer does).
USAGE_METRICS: frozenset[str] = frozenset({"NormalizedUsageAmount", "UsageQuantity"})
#: Dimensions the simulation can group by.
SUPPORTED_GROUP_BY_DIMENSIONS: frozenset[str] = frozenset(
    {"SERVICE", "RECORD_TYPE", "LINKED_ACCOUNT"}
)
#: Record types the simulation emits: ``Usage`` always, ``Credit`` (negative) and ``Tax`` sometimes.
RECORD_TYPES: tuple[str, ...] = ("Usage", "Credit", "Tax")
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
    }
)

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_TEN_DECIMALS = Decimal("0.0000000001")
_MAX_GROUP_BY_KEYS = 2

_EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"

_active_lock = threading.Lock()
_active: SimulatedAws | None = None


@dataclass(frozen=True)
class SimulationSettings:
    """What the simulated AWS answers; all values are validated on construction.

    Attributes:
        services_per_day: Services with costs on every day (the first N of a realistic list;
            made-up ``Simulated Service NNN`` names beyond it).
        page_size: At most this many groups per ``GetCostAndUsage`` page.
        latency_seconds: Sleep before answering each ``GetCostAndUsage`` request.
        currency_by_account: 12-digit account id -> ``Unit`` of its amounts (default ``USD``).
        estimated_days: The last N days of the requested period are ``Estimated: true``.
        seed: Changes every generated amount.
        denied_role_arns: Role ARNs whose ``AssumeRole`` fails with ``AccessDenied`` (403).
        required_external_ids: Role ARN -> the ``ExternalId`` it requires; a missing or
            different one fails with ``AccessDenied``.
        latency_by_account: 12-digit account id -> its own latency, replacing
            ``latency_seconds`` for that account (a slow account beside fast ones).
        throttle_first: 12-digit account id -> how many of its first ``GetCostAndUsage``
            requests fail with ``LimitExceededException`` ("Rate limit exceeded", HTTP 400),
            which botocore's ``standard`` retry mode retries as throttling.
        expire_token_at_page: 12-digit account id -> page number N >= 1: the account's first
            request for page N (the request carrying the token the (N-1)th page returned; page 1
            has no token) fails with ``ExpiredTokenException``, and so does every later request
            signed with an access key id that had signed a request of that account by then.
            Newly assumed credentials work and may continue from the same ``NextPageToken``.
            Fires once per account.
        fail_with: 12-digit account id -> (error code, page number N >= 1): every request of
            the account for page N fails with that code (one of ``INJECTABLE_ERROR_CODES``,
            HTTP 400 JSON).
        sts_throttle_first: The first N ``AssumeRole`` calls (all roles together) fail with
            ``Throttling`` (HTTP 400 XML), which botocore retries as throttling.
        sts_latency_seconds: Sleep before answering each ``AssumeRole`` call.
        services_by_account: 12-digit account id -> its own ``services_per_day``.
        max_concurrent_requests: When above 0, a ``GetCostAndUsage`` request arriving while
            this many are being answered fails with ``LimitExceededException``; the peak of
            concurrent requests is recorded either way (``peak_concurrent_requests``).
    """

    services_per_day: int = 12
    page_size: int = 200
    latency_seconds: float = 0.0
    currency_by_account: dict[str, str] = field(default_factory=dict)
    estimated_days: int = 2
    seed: int = 0
    denied_role_arns: frozenset[str] = frozenset()
    required_external_ids: dict[str, str] = field(default_factory=dict)
    latency_by_account: dict[str, float] = field(default_factory=dict)
    throttle_first: dict[str, int] = field(default_factory=dict)
    expire_token_at_page: dict[str, int] = field(default_factory=dict)
    fail_with: dict[str, tuple[str, int]] = field(default_factory=dict)
    sts_throttle_first: int = 0
    sts_latency_seconds: float = 0.0
    services_by_account: dict[str, int] = field(default_factory=dict)
    max_concurrent_requests: int = 0

    def __post_init__(self) -> None:
        """Validate the values; normalise ``denied_role_arns`` and ``fail_with`` values."""
        if self.services_per_day < 1:
            raise ValueError("services_per_day must be at least 1")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if self.estimated_days < 0:
            raise ValueError("estimated_days must not be negative")
        for account_id, currency in self.currency_by_account.items():
            if not _ACCOUNT_ID.match(account_id):
                raise ValueError(f"currency_by_account: {account_id!r} is not a 12-digit account")
            if not _CURRENCY.match(currency):
                raise ValueError(f"currency_by_account: {currency!r} is not a currency code")
        object.__setattr__(self, "denied_role_arns", frozenset(self.denied_role_arns))
        self._validate_faults()

    def _validate_faults(self) -> None:
        """Validate the fault injection settings; make ``fail_with`` values tuples."""
        for name, mapping in (
            ("throttle_first", self.throttle_first),
            ("expire_token_at_page", self.expire_token_at_page),
            ("fail_with", self.fail_with),
        ):
            for account_id in mapping:
                if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
                    raise ValueError(f"{name}: {account_id!r} is not a 12-digit account")
        for account_id, count in self.throttle_first.items():
            if not _is_int(count) or count < 0:
                raise ValueError(f"throttle_first[{account_id!r}] must be an integer >= 0")
        for account_id, page in self.expire_token_at_page.items():
            if not _is_int(page) or page < 1:
                raise ValueError(f"expire_token_at_page[{account_id!r}] must be a page number >= 1")
        normalised: dict[str, tuple[str, int]] = {}
        for account_id, value in self.fail_with.items():
            if not isinstance(value, tuple | list) or len(value) != 2:
                raise ValueError(f"fail_with[{account_id!r}] must be (error code, page number)")
            code, page = value
            if code not in INJECTABLE_ERROR_CODES:
                raise ValueError(
                    f"fail_with[{account_id!r}]: {code!r} is not one of "
                    f"{sorted(INJECTABLE_ERROR_CODES)}"
                )
            if not _is_int(page) or page < 1:
                raise ValueError(f"fail_with[{account_id!r}]: the page number must be >= 1")
            normalised[account_id] = (code, page)
        object.__setattr__(self, "fail_with", normalised)
        if not _is_int(self.sts_throttle_first) or self.sts_throttle_first < 0:
            raise ValueError("sts_throttle_first must be an integer >= 0")
        if self.sts_latency_seconds < 0:
            raise ValueError("sts_latency_seconds must not be negative")

    def currency_for(self, account_id: str) -> str:
        """The ``Unit`` of the amounts of ``account_id``."""
        return self.currency_by_account.get(account_id, "USD")


def _is_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` (and not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _role_account(role_arn: str) -> str:
    """The account of ``arn:aws:iam::ACCOUNT:role/NAME`` (the whole ARN if it has none)."""
    parts = role_arn.split(":") if isinstance(role_arn, str) else []
    return parts[4] if len(parts) > 5 and parts[4] else str(role_arn)


def service_names(count: int) -> list[str]:
    """The first ``count`` simulated service names, in the order the simulation reports them."""
    names = [name for name, _ in _KNOWN_SERVICES[:count]]
    names.extend(f"Simulated Service {n:03d}" for n in range(len(names) + 1, count + 1))
    return names


def _service_scale(index: int) -> Decimal:
    """Typical daily cost of the service at ``index`` of ``service_names``."""
    return Decimal(_KNOWN_SERVICES[index][1]) if index < len(_KNOWN_SERVICES) else Decimal(1)


def _unit_fraction(*parts: object) -> Decimal:
    """A deterministic number in [0, 1) from a hash of ``parts``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


def _format_amount(amount: Decimal) -> str:
    """A Cost Explorer style decimal string: plain notation, at most 10 decimals."""
    quantized = amount.quantize(_TEN_DECIMALS)
    if quantized == 0:
        return "0"
    return format(quantized.normalize(), "f")


@dataclass(frozen=True)
class _Line:
    """One (service, record type) line of one day of one account."""

    service: str
    record_type: str
    cost: Decimal
    usage: Decimal


def _day_lines(settings: SimulationSettings, account_id: str, day: date) -> tuple[_Line, ...]:
    """Every cost line of ``account_id`` on ``day``, in a stable order."""
    services = settings.services_by_account.get(account_id, settings.services_per_day)
    return _generated_lines(settings.seed, services, account_id, day)


# Every page of a window asks for the same days again: keep the recent ones (a few accounts'
# windows) instead of hashing them anew, so the simulation spends less of the CPU it shares
# with the pipeline in a benchmark.
@functools.lru_cache(maxsize=4096)
def _generated_lines(seed: int, services: int, account_id: str, day: date) -> tuple[_Line, ...]:
    lines: list[_Line] = []
    for index, service in enumerate(service_names(services)):
        key = (seed, account_id, day.isoformat(), service)
        usage_cost = (
            _service_scale(index) * (Decimal("0.05") + Decimal("0.95") * _unit_fraction(*key))
        ).quantize(_TEN_DECIMALS)
        quantity = (Decimal(1000) * _unit_fraction(*key, "quantity")).quantize(_TEN_DECIMALS)
        lines.append(_Line(service, "Usage", usage_cost, quantity))
        pick = _unit_fraction(*key, "record-types")
        if pick < Decimal("0.15"):
            share = Decimal("0.1") + Decimal("0.4") * _unit_fraction(*key, "Credit")
            lines.append(
                _Line(service, "Credit", -(usage_cost * share).quantize(_TEN_DECIMALS), Decimal(0))
            )
        elif pick > Decimal("0.9"):
            tax = (usage_cost * Decimal("0.08")).quantize(_TEN_DECIMALS)
            lines.append(_Line(service, "Tax", tax, Decimal(0)))
    return tuple(lines)


class _CostExplorerError(JsonRESTError):
    """A Cost Explorer error as moto serialises it: HTTP 400, JSON ``__type`` + ``message``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(error_type, message)


class _StsThrottlingError(HTTPException):
    """STS ``Throttling`` as moto serialises STS errors (and AWS sends them): HTTP 400 XML.

    The body is what moto writes for an STS ``ServiceException`` (moto fills in the
    ``RequestId``); raising ``moto.sts.exceptions.STSClientError("Throttling", ...)`` itself
    gives the same bytes but warns on every call that STS models no ``Throttling`` error.
    """

    code = 400

    def __init__(self, message: str = "Rate exceeded") -> None:
        super().__init__()
        self.description = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>Throttling</Code><Message>{escape(message)}"
            "</Message></Error><RequestId>RequestId</RequestId></ErrorResponse>"
        )

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        """Moto's STS error headers."""
        return [("Content-Type", "text/xml")]

    def get_body(self, *args: Any, **kwargs: Any) -> str:
        """The XML body."""
        return self.description or ""


@dataclass(frozen=True)
class _Request:
    """A validated ``GetCostAndUsage`` request."""

    start: date
    end: date
    metrics: tuple[str, ...]
    group_by: tuple[dict[str, str], ...]
    offset: int


def _fingerprint(payload: Mapping[str, Any]) -> str:
    """A short digest of every request parameter except ``NextPageToken``."""
    rest = {k: v for k, v in payload.items() if k != "NextPageToken"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _encode_token(offset: int, fingerprint: str) -> str:
    """An opaque page token holding the next offset and the request fingerprint."""
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, fingerprint: str) -> int:
    """The offset in ``token``; raises the errors Cost Explorer raises for a bad token."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = data["o"]
        token_fingerprint = data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise _CostExplorerError("InvalidNextTokenException", "Invalid pagination token") from error
    if not isinstance(offset, int) or offset < 0:
        raise _CostExplorerError("InvalidNextTokenException", "Invalid pagination token")
    if token_fingerprint != fingerprint:
        raise _CostExplorerError(
            "RequestChangedException",
            "The request parameters changed between paginated requests",
        )
    return offset


def _parse_date(value: object, name: str) -> date:
    """A ``YYYY-MM-DD`` request date, or ``ValidationException``."""
    if not isinstance(value, str):
        raise _CostExplorerError("ValidationException", f"{name} is required")
    try:
        return date.fromisoformat(value[:10])
    except ValueError as error:
        raise _CostExplorerError(
            "ValidationException", f"{name} {value!r} is not a valid date (YYYY-MM-DD)"
        ) from error


def _parse_request(body: str) -> _Request:
    """Validate a raw ``GetCostAndUsage`` JSON body."""
    try:
        payload = json.loads(body or "{}")
    except ValueError as error:
        raise _CostExplorerError("ValidationException", "The request body is not JSON") from error
    if not isinstance(payload, dict):
        raise _CostExplorerError("ValidationException", "The request body is not a JSON object")

    period = payload.get("TimePeriod") or {}
    start = _parse_date(period.get("Start"), "TimePeriod.Start")
    end = _parse_date(period.get("End"), "TimePeriod.End")
    if start >= end:
        raise _CostExplorerError(
            "ValidationException", "Start date (and hour) should be before end date (and hour)"
        )
    if payload.get("Granularity") != "DAILY":
        raise _CostExplorerError(
            "ValidationException",
            f"Granularity {payload.get('Granularity')!r} is not simulated: use DAILY",
        )
    metrics = payload.get("Metrics") or []
    if not metrics:
        raise _CostExplorerError("ValidationException", "Metrics is required")
    unknown = [m for m in metrics if m not in COST_METRICS | USAGE_METRICS]
    if unknown:
        raise _CostExplorerError("ValidationException", f"Unsupported metrics: {unknown}")

    group_by = payload.get("GroupBy") or []
    if len(group_by) > _MAX_GROUP_BY_KEYS:
        raise _CostExplorerError(
            "ValidationException", "You can only group by up to two different dimensions"
        )
    for group in group_by:
        if group.get("Type") != "DIMENSION" or group.get("Key") not in (
            SUPPORTED_GROUP_BY_DIMENSIONS
        ):
            raise _CostExplorerError(
                "ValidationException",
                f"GroupBy {group!r} is not simulated: use DIMENSION "
                f"{sorted(SUPPORTED_GROUP_BY_DIMENSIONS)}",
            )

    fingerprint = _fingerprint(payload)
    token = payload.get("NextPageToken")
    offset = _decode_token(token, fingerprint) if token else 0
    return _Request(start, end, tuple(metrics), tuple(group_by), offset)


def _metric_values(
    metrics: Iterable[str], cost: Decimal, usage: Decimal, currency: str
) -> dict[str, dict[str, str]]:
    """The ``Metrics`` / ``Total`` object for one group or one day."""
    values: dict[str, dict[str, str]] = {}
    for metric in metrics:
        if metric in COST_METRICS:
            values[metric] = {"Amount": _format_amount(cost), "Unit": currency}
        else:
            values[metric] = {"Amount": _format_amount(usage), "Unit": "N/A"}
    return values


# One item per (day, group), or per day when nothing is grouped; a page holds page_size items.
_Item = tuple[date, list[str] | None, Decimal, Decimal]


# Every page of a window needs the window's items: build them once per window, not per page.
@functools.lru_cache(maxsize=64)
def _window_items(
    seed: int, services: int, account_id: str, start: date, end: date, keys: tuple[str, ...]
) -> tuple[_Item, ...]:
    items: list[_Item] = []
    day = start
    while day < end:
        lines = _generated_lines(seed, services, account_id, day)
        if not keys:
            items.append(
                (
                    day,
                    None,
                    sum((x.cost for x in lines), Decimal(0)),
                    sum((x.usage for x in lines), Decimal(0)),
                )
            )
        else:
            groups: dict[tuple[str, ...], tuple[Decimal, Decimal]] = {}
            for line in lines:
                values = {
                    "SERVICE": line.service,
                    "RECORD_TYPE": line.record_type,
                    "LINKED_ACCOUNT": account_id,
                }
                group_key = tuple(values[k] for k in keys)
                cost, usage = groups.get(group_key, (Decimal(0), Decimal(0)))
                groups[group_key] = (cost + line.cost, usage + line.usage)
            items.extend((day, list(k), cost, usage) for k, (cost, usage) in groups.items())
        day += timedelta(days=1)

    return tuple(items)


def _answer(
    settings: SimulationSettings, account_id: str, body: str, request: _Request | None = None
) -> dict[str, Any]:
    """The ``GetCostAndUsage`` response page for ``body`` (parsed: ``request``) of ``account_id``."""
    if request is None:
        request = _parse_request(body)
    currency = settings.currency_for(account_id)
    first_estimated = request.end - timedelta(days=settings.estimated_days)
    keys = [group["Key"] for group in request.group_by]

    services = settings.services_by_account.get(account_id, settings.services_per_day)
    items = _window_items(
        settings.seed, services, account_id, request.start, request.end, tuple(keys)
    )
    if request.offset > len(items):
        raise _CostExplorerError("InvalidNextTokenException", "Invalid pagination token")
    page = items[request.offset : request.offset + settings.page_size]

    results: list[dict[str, Any]] = []
    for item_day, group_keys, cost, usage in page:
        if not results or results[-1]["TimePeriod"]["Start"] != item_day.isoformat():
            results.append(
                {
                    "TimePeriod": {
                        "Start": item_day.isoformat(),
                        "End": (item_day + timedelta(days=1)).isoformat(),
                    },
                    "Total": {},
                    "Groups": [],
                    "Estimated": item_day >= first_estimated,
                }
            )
        metrics = _metric_values(request.metrics, cost, usage, currency)
        if group_keys is None:
            results[-1]["Total"] = metrics
        else:
            results[-1]["Groups"].append({"Keys": group_keys, "Metrics": metrics})

    response: dict[str, Any] = {"ResultsByTime": results, "DimensionValueAttributes": []}
    if request.group_by:
        response["GroupDefinitions"] = [dict(group) for group in request.group_by]
    next_offset = request.offset + len(page)
    if next_offset < len(items):
        response["NextPageToken"] = _encode_token(next_offset, _fingerprint(json.loads(body)))
    return response


class SimulatedAws:
    """A moto server answering STS and Cost Explorer like AWS would; a context manager.

    ``with SimulatedAws(settings) as aws:`` starts the server and patches moto (see the module
    docstring); leaving the block stops the server (its port refuses connections) and restores
    moto's methods.
    """

    def __init__(
        self, settings: SimulationSettings | None = None, *, log_requests: bool = False
    ) -> None:
        """Prepare a simulation; nothing starts before ``__enter__`` / ``start``."""
        self.settings: SimulationSettings = settings or SimulationSettings()
        self._log_requests = log_requests
        self._server: ThreadedMotoServer | None = None
        self._endpoint_url: str | None = None
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._in_flight = 0
        self._peak_in_flight = 0
        # Fault injection state, all under _faults_lock.
        self._faults_lock = threading.Lock()
        self._throttled: dict[str, int] = {}  # account -> LimitExceededException sent
        self._signing_keys: dict[str, set[str]] = {}  # account -> access keys seen so far
        self._expired_keys: dict[str, frozenset[str]] = {}  # account -> keys reported expired
        self._sts_throttled = 0
        self._assume_counts: dict[str, int] = {}  # account of the role ARN -> AssumeRole calls
        self._originals: list[tuple[type, str, Any]] = []
        self._werkzeug_level: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Start the simulation and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server and undo the patches."""
        self.stop()

    def start(self) -> None:
        """Patch moto and start the server on 127.0.0.1 and a free port."""
        global _active
        with _active_lock:
            if _active is not None:
                raise RuntimeError("A SimulatedAws is already running in this process")
            _active = self
        try:
            self._patch()
            if not self._log_requests:
                werkzeug_logger = logging.getLogger("werkzeug")
                self._werkzeug_level = werkzeug_logger.level
                werkzeug_logger.setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            self._server = server
            host, port = server.get_host_and_port()
            self._endpoint_url = f"http://{host}:{port}"
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (if running) and restore moto's methods; safe to call twice."""
        global _active
        server, self._server = self._server, None
        self._endpoint_url = None
        try:
            if server is not None:
                server.stop()
        finally:
            for owner, name, original in reversed(self._originals):
                setattr(owner, name, original)
            self._originals.clear()
            if self._werkzeug_level is not None:
                logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
                self._werkzeug_level = None
            with _active_lock:
                if _active is self:
                    _active = None

    def _patch(self) -> None:
        """Replace moto's CE ``get_cost_and_usage`` (backend, HTTP handler) and ``assume_role``."""
        simulation = self
        original_get_cost_and_usage: Callable[..., dict[str, Any]] = (
            CostExplorerBackend.get_cost_and_usage
        )
        original_assume_role: Callable[..., AssumedRole] = STSBackend.assume_role
        original_response_get_cost_and_usage: Callable[..., str] = (
            CostExplorerResponse.get_cost_and_usage
        )

        def get_cost_and_usage(backend: CostExplorerBackend, body: str) -> dict[str, Any]:
            return simulation._get_cost_and_usage(backend.account_id, body, access_key=None)

        def response_get_cost_and_usage(response: CostExplorerResponse) -> str:
            # The HTTP handler sees the Authorization header, so it knows the signing key.
            answer = simulation._get_cost_and_usage(
                response.ce_backend.account_id, response.body, access_key=response.get_access_key()
            )
            return json.dumps(answer)

        def assume_role(
            backend: STSBackend,
            region_name: str,
            role_session_name: str,
            role_arn: str,
            policy: str,
            duration: int,
            external_id: str,
        ) -> AssumedRole:
            simulation._before_assume_role(role_arn)
            simulation._check_assume_role(backend.account_id, role_arn, external_id)
            return original_assume_role(
                backend,
                region_name=region_name,
                role_session_name=role_session_name,
                role_arn=role_arn,
                policy=policy,
                duration=duration,
                external_id=external_id,
            )

        self._originals.append(
            (CostExplorerBackend, "get_cost_and_usage", original_get_cost_and_usage)
        )
        setattr(CostExplorerBackend, "get_cost_and_usage", get_cost_and_usage)  # noqa: B010
        self._originals.append(
            (CostExplorerResponse, "get_cost_and_usage", original_response_get_cost_and_usage)
        )
        setattr(  # noqa: B010
            CostExplorerResponse, "get_cost_and_usage", response_get_cost_and_usage
        )
        self._originals.append((STSBackend, "assume_role", original_assume_role))
        setattr(STSBackend, "assume_role", assume_role)  # noqa: B010

    # -- what the patched moto methods do -------------------------------------------------

    def _get_cost_and_usage(
        self, account_id: str, body: str, *, access_key: str | None
    ) -> dict[str, Any]:
        """Sleep, count, inject faults, answer (runs in a server thread).

        ``access_key`` is the access key id that signed the request (``None`` when the backend
        method is called directly: the token expiry fault then does not apply).
        """
        settings = self.settings
        with self._counts_lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            over_limit = 0 < settings.max_concurrent_requests < self._in_flight
        try:
            latency = settings.latency_by_account.get(account_id, settings.latency_seconds)
            if latency:
                time.sleep(latency)
        finally:
            with self._counts_lock:
                self._in_flight -= 1
                self._counts[account_id] = self._counts.get(account_id, 0) + 1
        if over_limit:
            raise _CostExplorerError("LimitExceededException", "Rate limit exceeded")

        with self._faults_lock:
            if access_key is not None and access_key in self._expired_keys.get(account_id, ()):
                raise _CostExplorerError("ExpiredTokenException", _EXPIRED_TOKEN_MESSAGE)
            throttled = self._throttled.get(account_id, 0)
            if throttled < settings.throttle_first.get(account_id, 0):
                self._throttled[account_id] = throttled + 1
                raise _CostExplorerError("LimitExceededException", "Rate limit exceeded")
            if (
                access_key is not None
                and account_id in settings.expire_token_at_page
                and account_id not in self._expired_keys
            ):
                self._signing_keys.setdefault(account_id, set()).add(access_key)

        request = _parse_request(body)
        page = request.offset // settings.page_size + 1
        if access_key is not None and settings.expire_token_at_page.get(account_id) == page:
            with self._faults_lock:
                if account_id not in self._expired_keys:
                    self._expired_keys[account_id] = frozenset(
                        self._signing_keys.pop(account_id, set())
                    )
                    raise _CostExplorerError("ExpiredTokenException", _EXPIRED_TOKEN_MESSAGE)
        failure = settings.fail_with.get(account_id)
        if failure is not None and failure[1] == page:
            raise _CostExplorerError(failure[0], INJECTABLE_ERROR_CODES[failure[0]])
        return _answer(settings, account_id, body, request)

    def _before_assume_role(self, role_arn: str) -> None:
        """Count per account of ``role_arn``, sleep, raise ``Throttling`` for the first calls.

        The count comes before the sleep, so a call whose client has timed out is counted.
        """
        account_id = _role_account(role_arn)
        with self._faults_lock:
            self._assume_counts[account_id] = self._assume_counts.get(account_id, 0) + 1
        if self.settings.sts_latency_seconds:
            time.sleep(self.settings.sts_latency_seconds)
        with self._faults_lock:
            if self._sts_throttled < self.settings.sts_throttle_first:
                self._sts_throttled += 1
                raise _StsThrottlingError()

    def _check_assume_role(
        self, caller_account_id: str, role_arn: str, external_id: str | None
    ) -> None:
        """Raise moto's 403 ``AccessDenied`` if the settings deny this ``AssumeRole``."""
        required = self.settings.required_external_ids.get(role_arn)
        if role_arn in self.settings.denied_role_arns or (
            required is not None and external_id != required
        ):
            raise AccessDeniedError(
                user_arn=f"arn:aws:sts::{caller_account_id}:user/moto",
                action=f"sts:AssumeRole on resource: {role_arn}",
            )

    # -- public helpers ----------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._endpoint_url is None:
            raise RuntimeError("The simulation is not running")
        return self._endpoint_url

    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 (all services) at the simulation.

        Both region variables are set: the AWS CLI and other SDKs read ``AWS_REGION``, but
        botocore 1.44 only reads ``AWS_DEFAULT_REGION``.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "simulated",
            "AWS_SECRET_ACCESS_KEY": "simulated",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def request_count(self, account_id: str) -> int:
        """``GetCostAndUsage`` requests (pages) answered for ``account_id``, errors included."""
        with self._counts_lock:
            return self._counts.get(account_id, 0)

    def peak_concurrent_requests(self) -> int:
        """The most ``GetCostAndUsage`` requests that were being answered at the same time."""
        with self._counts_lock:
            return self._peak_in_flight

    def total_requests(self) -> int:
        """``GetCostAndUsage`` requests over all accounts."""
        with self._counts_lock:
            return sum(self._counts.values())

    def requests_by_account(self) -> dict[str, int]:
        """A snapshot of the request counts per account."""
        with self._counts_lock:
            return dict(self._counts)

    def reset_request_counts(self) -> None:
        """Set every ``GetCostAndUsage`` request count back to zero.

        Neither ``assume_role_count`` nor the fault injection state (throttles sent, expired
        credentials) is reset.
        """
        with self._counts_lock:
            self._counts.clear()

    def assume_role_count(self, account_id: str) -> int:
        """``AssumeRole`` calls for roles of ``account_id`` (the role ARN's account).

        Every call that reached the server counts: throttled, denied and timed-out (the client
        gave up, the server still answered) ones included.
        """
        with self._faults_lock:
            return self._assume_counts.get(account_id, 0)

    def service_names(self) -> list[str]:
        """The services that have costs on every day."""
        return service_names(self.settings.services_per_day)

    def expected_cost(
        self, account_id: str, day: date, service: str, record_type: str | None = None
    ) -> Decimal:
        """The cost the simulation reports for one service on one day (all record types if None).

        The same value as the ``UnblendedCost`` amount of the (``day``, ``service``) group.
        """
        return sum(
            (
                line.cost
                for line in _day_lines(self.settings, account_id, day)
                if line.service == service and record_type in (None, line.record_type)
            ),
            Decimal(0),
        )
