"""What one simulation counts and which failures it injects; safe to use from server threads.

The checks run in this order. On each ``GetCostAndUsage`` request: ``arrive`` (count, latency
sleep, concurrency cap), ``check_credentials`` (an expired access key, throttling), then, once
the request is known to be valid, ``check_page`` (token expiry at the page, ``fail_with``). On
each ``AssumeRole`` call: ``assume_role`` (count, latency sleep, throttling, denial). Every
request and call is counted, whatever it answers.
"""

import threading
import time
from xml.sax.saxutils import escape

from pulse_pipeline_dev.simulated_aws.api import CostExplorerError, known_error
from pulse_pipeline_dev.simulated_aws.settings import SimulationSettings

EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"


class StsError(Exception):
    """An STS error as AWS sends it: the query protocol's ``<ErrorResponse>`` XML."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        """The XML body botocore reads ``Error.Code`` and ``Error.Message`` from."""
        return (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message></Error>"
            "<RequestId>simulated</RequestId></ErrorResponse>"
        ).encode()


def role_account(role_arn: str) -> str:
    """The account of ``arn:aws:iam::ACCOUNT:role/NAME`` (the whole ARN if it has none)."""
    parts = role_arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4] else role_arn


def _limit_exceeded() -> CostExplorerError:
    return CostExplorerError("LimitExceededException", "Rate limit exceeded")


def _expired_token() -> CostExplorerError:
    return CostExplorerError("ExpiredTokenException", EXPIRED_TOKEN_MESSAGE)


class Faults:
    """Request counts and the state of the injected failures of one simulation."""

    def __init__(self, settings: SimulationSettings) -> None:
        """Nothing counted, nothing injected yet."""
        self.settings = settings
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._in_flight = 0
        self._peak_in_flight = 0
        self._throttled: dict[str, int] = {}
        self._signing_keys: dict[str, set[str]] = {}  # account -> access keys seen so far
        self._expired_keys: dict[str, frozenset[str]] = {}  # account -> keys reported expired
        self._sts_throttled = 0
        self._assume_role_calls: dict[str, int] = {}  # account of the role ARN -> calls

    def arrive(self, account_id: str) -> None:
        """Count a request, sleep the account's latency, enforce ``max_concurrent_requests``."""
        limit = self.settings.max_concurrent_requests
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            over_limit = 0 < limit < self._in_flight
        try:
            time.sleep(
                self.settings.latency_by_account.get(account_id, self.settings.latency_seconds)
            )
        finally:
            with self._lock:
                self._in_flight -= 1
                self._requests[account_id] = self._requests.get(account_id, 0) + 1
        if over_limit:
            raise _limit_exceeded()

    def check_credentials(self, account_id: str, access_key: str) -> None:
        """Fail for an access key already reported expired, then for the first throttled requests."""
        with self._lock:
            if access_key in self._expired_keys.get(account_id, ()):
                raise _expired_token()
            throttled = self._throttled.get(account_id, 0)
            if throttled < self.settings.throttle_first.get(account_id, 0):
                self._throttled[account_id] = throttled + 1
                raise _limit_exceeded()
            if (
                account_id in self.settings.expire_token_at_page
                and account_id not in self._expired_keys
            ):
                self._signing_keys.setdefault(account_id, set()).add(access_key)

    def check_page(self, account_id: str, page: int) -> None:
        """Fail the first request for the token-expiry page, and every one for ``fail_with``'s."""
        if self.settings.expire_token_at_page.get(account_id) == page:
            with self._lock:
                if account_id not in self._expired_keys:
                    self._expired_keys[account_id] = frozenset(
                        self._signing_keys.pop(account_id, set())
                    )
                    raise _expired_token()
        failure = self.settings.fail_with.get(account_id)
        if failure is not None and failure[1] == page:
            raise known_error(failure[0])

    def assume_role(self, caller_account_id: str, role_arn: str, external_id: str | None) -> None:
        """Count, sleep, then fail with ``Throttling`` (400) or ``AccessDenied`` (403) if due.

        The count comes before the sleep, so a call whose client timed out is counted.
        """
        settings = self.settings
        with self._lock:
            account_id = role_account(role_arn)
            self._assume_role_calls[account_id] = self._assume_role_calls.get(account_id, 0) + 1
        time.sleep(settings.sts_latency_seconds)
        with self._lock:
            if self._sts_throttled < settings.sts_throttle_first:
                self._sts_throttled += 1
                raise StsError(400, "Throttling", "Rate exceeded")
        required = settings.required_external_ids.get(role_arn)
        if role_arn in settings.denied_role_arns or (
            required is not None and external_id != required
        ):
            raise StsError(
                403,
                "AccessDenied",
                f"User: arn:aws:sts::{caller_account_id}:user/moto is not authorized to perform: "
                f"sts:AssumeRole on resource: {role_arn}",
            )

    def requests_by_account(self) -> dict[str, int]:
        """``GetCostAndUsage`` requests per account so far, errors included."""
        with self._lock:
            return dict(self._requests)

    def reset_request_counts(self) -> None:
        """Forget the ``GetCostAndUsage`` request counts (nothing else)."""
        with self._lock:
            self._requests.clear()

    def peak_concurrent_requests(self) -> int:
        """The most ``GetCostAndUsage`` requests that were being answered at the same time."""
        with self._lock:
            return self._peak_in_flight

    def assume_role_count(self, account_id: str) -> int:
        """``AssumeRole`` calls for roles of ``account_id``, failed ones included."""
        with self._lock:
            return self._assume_role_calls.get(account_id, 0)
