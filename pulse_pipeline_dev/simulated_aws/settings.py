"""What a simulated AWS answers, and which failures it injects."""

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from pulse_pipeline_dev.simulated_aws.api import INJECTABLE_ERROR_CODES, first_estimated_day

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SimulationSettings:
    """What the simulated AWS answers; all values are validated on construction.

    Accounts are 12-digit ids: a Cost Explorer request belongs to the account of the
    credentials that signed it (``AssumeRole`` on ``arn:aws:iam::111111111111:role/X`` gives
    credentials of 111111111111).

    Attributes:
        services_per_day: Services with costs on every day (the first N of a realistic list;
            made-up ``Simulated Service NNN`` names beyond it).
        page_size: At most this many groups per ``GetCostAndUsage`` page.
        latency_seconds: Sleep before answering each ``GetCostAndUsage`` request.
        currency_by_account: Account -> ``Unit`` of its amounts (default ``USD``).
        today: The simulation's today (UTC), which decides the days answered ``Estimated``
            (the open month, and the previous one until its bill closes on the 5th: see
            ``api.py``); None: the UTC date when each request is answered.
        estimated_from: When set, every day on or after it is ``Estimated: true`` and every
            day before it final, whatever ``today`` is.
        seed: Changes every generated amount.
        denied_role_arns: Role ARNs whose ``AssumeRole`` fails with ``AccessDenied`` (403).
        required_external_ids: Role ARN -> the ``ExternalId`` it requires; a missing or
            different one fails with ``AccessDenied``.
        latency_by_account: Account -> its own latency, replacing ``latency_seconds``.
        throttle_first: Account -> how many of its first ``GetCostAndUsage`` requests fail
            with ``LimitExceededException`` (HTTP 400), which botocore's ``standard`` retry
            mode retries as throttling (boto3's default ``legacy`` mode does not).
        expire_token_at_page: Account -> page N >= 1: the account's first request for page N
            (page 1 has no token) fails with ``ExpiredTokenException``, and so does every later
            request signed with an access key that had signed one of the account's requests by
            then. Newly assumed credentials work and may continue from the same
            ``NextPageToken``. Fires once per account.
        fail_with: Account -> (error code, page N >= 1): every request of the account for page
            N fails with that code (one of ``INJECTABLE_ERROR_CODES``; HTTP 400, not retried).
        sts_throttle_first: The first N ``AssumeRole`` calls (all roles together) fail with
            ``Throttling`` (HTTP 400), which botocore retries as throttling.
        sts_latency_seconds: Sleep before answering each ``AssumeRole`` call (longer than a
            client's ``read_timeout`` provokes ``ReadTimeoutError``).
        services_by_account: Account -> its own ``services_per_day``.
        max_concurrent_requests: When above 0, a ``GetCostAndUsage`` request arriving while
            this many are being answered fails with ``LimitExceededException``.
        endless_pages: Accounts whose pages never end: after the last group, every page is
            empty and carries a new ``NextPageToken``.
        repeat_token_at_page: Account -> page N >= 2: the answer to page N carries the
            ``NextPageToken`` it was asked with, so a client that follows it asks for page N
            forever.
        linked_accounts: Management (payer) account -> its member accounts: the payer's Cost
            Explorer sees its own costs and every member's (each exactly what the member sees
            of itself); a member sees only its own.
        account_names: Account -> the name ``DimensionValueAttributes`` gives it (default
            ``Account <id>``).
        tags: Cost allocation tag key -> its values; each account's service carries one of
            them or none (``key$``), the same every day.
    """

    services_per_day: int = 12
    page_size: int = 200
    latency_seconds: float = 0.0
    currency_by_account: dict[str, str] = field(default_factory=dict)
    today: date | None = None
    estimated_from: date | None = None
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
    endless_pages: frozenset[str] = frozenset()
    repeat_token_at_page: dict[str, int] = field(default_factory=dict)
    linked_accounts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    account_names: dict[str, str] = field(default_factory=dict)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate; make ``denied_role_arns`` and ``endless_pages`` frozensets and ``fail_with``
        values tuples."""
        if self.services_per_day < 1:
            raise ValueError("services_per_day must be at least 1")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if self.sts_latency_seconds < 0:
            raise ValueError("sts_latency_seconds must not be negative")
        for name in ("today", "estimated_from"):
            if isinstance(getattr(self, name), datetime):
                raise ValueError(f"{name} must be a date, not a datetime")
        for name in (
            "currency_by_account",
            "latency_by_account",
            "services_by_account",
            "throttle_first",
            "expire_token_at_page",
            "fail_with",
            "endless_pages",
            "repeat_token_at_page",
            "linked_accounts",
            "account_names",
        ):
            for account_id in getattr(self, name):
                if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
                    raise ValueError(f"{name}: {account_id!r} is not a 12-digit account")
        for currency in self.currency_by_account.values():
            if not _CURRENCY.match(currency):
                raise ValueError(f"currency_by_account: {currency!r} is not a currency code")
        for account_id, count in self.throttle_first.items():
            if not _is_int(count) or count < 0:
                raise ValueError(f"throttle_first[{account_id!r}] must be an integer >= 0")
        for account_id, page in self.expire_token_at_page.items():
            if not _is_int(page) or page < 1:
                raise ValueError(f"expire_token_at_page[{account_id!r}] must be a page number >= 1")
        if not _is_int(self.sts_throttle_first) or self.sts_throttle_first < 0:
            raise ValueError("sts_throttle_first must be an integer >= 0")
        for account_id, page in self.repeat_token_at_page.items():
            if not _is_int(page) or page < 2:
                raise ValueError(f"repeat_token_at_page[{account_id!r}] must be a page number >= 2")
        for payer, members in self.linked_accounts.items():
            for member in members:
                if not isinstance(member, str) or not _ACCOUNT_ID.match(member) or member == payer:
                    raise ValueError(f"linked_accounts[{payer!r}]: {member!r} is not a member")
        object.__setattr__(self, "denied_role_arns", frozenset(self.denied_role_arns))
        object.__setattr__(self, "endless_pages", frozenset(self.endless_pages))
        object.__setattr__(self, "fail_with", self._valid_fail_with())

    def _valid_fail_with(self) -> dict[str, tuple[str, int]]:
        valid: dict[str, tuple[str, int]] = {}
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
            valid[account_id] = (code, page)
        return valid

    def estimated_since(self) -> date:
        """The first day answered ``Estimated: true``; every day before it is final."""
        if self.estimated_from is not None:
            return self.estimated_from
        return first_estimated_day(self.today or datetime.now(UTC).date())

    def visible_accounts(self, account_id: str) -> list[str]:
        """The accounts whose costs ``account_id``'s Cost Explorer sees: itself, and its
        members when it is a payer."""
        return [account_id, *self.linked_accounts.get(account_id, ())]

    def name_of(self, account_id: str) -> str:
        """The account's name in ``DimensionValueAttributes``."""
        return self.account_names.get(account_id, f"Account {account_id}")

    def currency_for(self, account_id: str) -> str:
        """The ``Unit`` of the amounts of ``account_id``."""
        return self.currency_by_account.get(account_id, "USD")

    def services_for(self, account_id: str) -> int:
        """How many services ``account_id`` has costs for on every day."""
        return self.services_by_account.get(account_id, self.services_per_day)
