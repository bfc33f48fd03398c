"""Cost Explorer's GetCostAndUsage: the request, the pagination loop, and its errors in plain words.

boto3 has no paginator for GetCostAndUsage, so `fetch_pages` follows `NextPageToken` itself,
sending the identical request with each token (changing it raises RequestChangedException).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from pulse_pipeline.accounts import AwsConnection, SyncError
from pulse_pipeline.sync_window import SyncWindow

DEFAULT_METRIC = "UnblendedCost"
METRICS = ("UnblendedCost", "AmortizedCost", "NetUnblendedCost", "NetAmortizedCost")


@dataclass(frozen=True)
class Page:
    """One GetCostAndUsage response and how many attempts it took (botocore retries included)."""

    number: int
    request: dict[str, Any]
    response: dict[str, Any]
    attempts: int


def cost_and_usage_request(window: SyncWindow, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """Daily costs per service and record type (charge type) for the window, in one request
    per result page; Cost Explorer's End is exclusive."""
    return {
        "TimePeriod": {
            "Start": window.start.isoformat(),
            "End": (window.end + timedelta(days=1)).isoformat(),
        },
        "Granularity": "DAILY",
        "Metrics": [metric],
        "GroupBy": [
            {"Type": "DIMENSION", "Key": "SERVICE"},
            {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
        ],
    }


@dataclass(frozen=True)
class Fetch:
    """Every page of one window, and what it took to get them."""

    pages: list[Page]
    credential_renewals: int
    restarts: int
    discarded_requests: int = 0

    @property
    def requests(self) -> int:
        """Every GetCostAndUsage request made, retries and pages dropped by a restart included."""
        return sum(page.attempts for page in self.pages) + self.discarded_requests


EXPIRED_CREDENTIALS = frozenset({"ExpiredTokenException", "ExpiredToken", "RequestExpired"})
RESTARTABLE = frozenset({"InvalidNextTokenException", "RequestChangedException"})


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def fetch_pages(
    new_client: Callable[[], Any], request: dict[str, Any], max_renewals: int = 3
) -> Fetch:
    """Every page of the result, in order, until Cost Explorer stops returning a NextPageToken.

    Credentials that expire mid-way are renewed with `new_client()` and the same page is asked
    again; if Cost Explorer rejects its own token, the fetch restarts once from the first page.
    Nothing is returned until the last page is in, so a caller never sees a partial window.
    """
    client = new_client()
    pages: list[Page] = []
    token: str | None = None
    renewals = restarts = discarded = 0
    while True:
        try:
            response = client.get_cost_and_usage(
                **request, **({"NextPageToken": token} if token else {})
            )
        except ClientError as error:
            if _error_code(error) in EXPIRED_CREDENTIALS and renewals < max_renewals:
                renewals += 1
                client = new_client()
                continue
            if _error_code(error) in RESTARTABLE and restarts == 0:
                restarts += 1
                discarded += sum(page.attempts for page in pages)
                pages, token = [], None
                continue
            raise
        metadata = response.pop("ResponseMetadata", {})
        attempts = 1 + int(metadata.get("RetryAttempts", 0))
        pages.append(Page(len(pages) + 1, request, response, attempts))
        token = response.get("NextPageToken")
        if not token:
            return Fetch(pages, renewals, restarts, discarded)


_CE_CAUSES: dict[str, tuple[str, bool]] = {
    "AccessDeniedException": (
        "the role may not call ce:GetCostAndUsage; allow that action in the role's policy",
        False,
    ),
    "DataUnavailableException": (
        "Cost Explorer has no data for this window yet; it must be enabled in the account, "
        "and a new account's data takes up to 24 hours to appear",
        False,
    ),
    "BillExpirationException": (
        "the window starts before the daily history Cost Explorer keeps (about 14 months)",
        False,
    ),
    "LimitExceededException": ("Cost Explorer kept throttling the requests", True),
    "InvalidNextTokenException": (
        "Cost Explorer rejected its own pagination token twice, even after starting over",
        False,
    ),
    "RequestChangedException": (
        "Cost Explorer said the request changed between pages, even after starting over",
        False,
    ),
    "ExpiredTokenException": ("the assumed-role credentials kept expiring", True),
    "ValidationException": ("Cost Explorer rejected the request as invalid", False),
}


def describe_aws_error(connection: AwsConnection, action: str, error: Exception) -> SyncError:
    """One secret-free sentence for an AWS failure: it names the account and what to do.

    AWS's own message text is left out: it can quote request parameters.
    """
    label = connection.account.label
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        if action == "AssumeRole":
            if code in ("AccessDenied", "AccessDeniedException"):
                return SyncError(
                    f"{label}: AWS denied AssumeRole on {connection.role_arn} ({code}); check that "
                    "the role's trust policy allows PULSE and requires this account's external ID"
                )
            retryable = code in ("Throttling", "ThrottlingException", "RequestLimitExceeded")
            return SyncError(
                f"{label}: AssumeRole on {connection.role_arn} failed ({code})", retryable=retryable
            )
        cause, retryable = _CE_CAUSES.get(code, (f"Cost Explorer answered {code}", False))
        return SyncError(f"{label}: {cause} ({code})", retryable=retryable)
    if isinstance(error, NoCredentialsError):
        return SyncError(
            f"{label}: pulse_pipeline has no AWS credentials of its own to assume the role with; "
            "configure them with the standard AWS settings"
        )
    if isinstance(error, EndpointConnectionError | ConnectionError | ReadTimeoutError):
        return SyncError(
            f"{label}: could not reach AWS for {action} ({type(error).__name__})", retryable=True
        )
    if isinstance(error, BotoCoreError):
        return SyncError(f"{label}: {action} failed in the AWS client ({type(error).__name__})")
    return SyncError(f"{label}: {action} failed ({type(error).__name__})")
