"""Cost Explorer's GetCostAndUsage: the request, the pagination loop, and its errors in plain words.

boto3 has no paginator for GetCostAndUsage, so `fetch_pages` follows `NextPageToken` itself,
sending the identical request with each token (changing it raises RequestChangedException). Every
page is a paid request ($0.01), so one fetch asks for at most `max_pages` pages and stops at once
when Cost Explorer repeats a token.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.aws.connection import AwsConnection
from pulse_pipeline.aws.metrics import DEFAULT_METRIC, METRICS
from pulse_pipeline.aws.pages import linked_accounts_seen
from pulse_pipeline.aws.requests import linked_accounts_request, window_requests
from pulse_pipeline.costs import MalformedPayloadError, StoredPage
from pulse_pipeline.sync_window import SyncWindow

__all__ = ["DEFAULT_METRIC", "METRICS"]
# Well above a 14-month backfill of a large account; PULSE_MAX_PAGES changes it.
DEFAULT_MAX_PAGES = 200
# What AWS charges per GetCostAndUsage request it answers; failed requests are free.
PRICE_PER_REQUEST_USD = Decimal("0.01")


@dataclass(frozen=True)
class Page:
    """One GetCostAndUsage response and how many attempts it took (botocore retries included)."""

    number: int
    request: dict[str, Any]
    response: dict[str, Any]
    attempts: int


@dataclass
class RequestCount:
    """The GetCostAndUsage requests of one fetch, counted as they are answered, so a fetch that
    fails still shows what it cost.

    `made` counts every request sent, botocore's retries and failed requests included (as
    botocore reports them); `paid` those answered with a page, the ones AWS charges for.
    """

    made: int = 0
    paid: int = 0

    @property
    def usd(self) -> Decimal:
        return self.paid * PRICE_PER_REQUEST_USD

    def __add__(self, other: "RequestCount") -> "RequestCount":
        return RequestCount(self.made + other.made, self.paid + other.paid)

    def metadata(self) -> dict[str, int | float]:
        """The bill as a failed step's metadata shows it."""
        return {
            "cost_explorer_requests": self.made,
            "cost_explorer_paid_requests": self.paid,
            "cost_explorer_usd": float(self.usd),
        }

    def summary(self, attempt: int = 1) -> str:
        """The bill of a run (of its `attempt`-th step attempt), failed accounts included."""
        of = f" (step attempt {attempt})" if attempt > 1 else ""
        return (
            f"Cost Explorer requests of this run{of}: {self.paid} paid "
            f"(${self.usd} at ${PRICE_PER_REQUEST_USD} each), {self.made - self.paid} failed "
            "or retried (free)"
        )


@dataclass(frozen=True)
class Fetch:
    """Every page of one window, and what it took to get them."""

    pages: list[Page]
    credential_renewals: int
    restarts: int
    requests: RequestCount


class RunawayPagination(Exception):
    """Cost Explorer kept paginating past what one fetch may ask for: never retried, since
    asking again would pay for the same pages again."""


EXPIRED_CREDENTIALS = frozenset({"ExpiredTokenException", "ExpiredToken", "RequestExpired"})
RESTARTABLE = frozenset({"InvalidNextTokenException", "RequestChangedException"})


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _attempts(metadata: Mapping[str, Any]) -> int:
    """One request plus botocore's retries of it, from a response's ResponseMetadata."""
    return 1 + int(metadata.get("RetryAttempts", 0))


def _paid(requests: int) -> str:
    plural = "" if requests == 1 else "s"
    return f"{requests} paid request{plural} (${requests * PRICE_PER_REQUEST_USD})"


def fetch_pages(
    new_client: Callable[[], Any],
    request: dict[str, Any],
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    requests: RequestCount | None = None,
    max_renewals: int = 3,
    pages_before: int = 0,
) -> Fetch:
    """Every page of the result, in order, until Cost Explorer stops returning a NextPageToken.

    Credentials that expire mid-way are renewed with `new_client()` and the same page is asked
    again; if Cost Explorer rejects its own token, the fetch restarts once from the first page.
    Nothing is returned until the last page is in, so a caller never sees a partial window.

    At most `max_pages` pages are asked for (a restart's discarded pages included), so one fetch
    costs at most `max_pages` x $0.01 and holds at most that many pages in memory; a
    NextPageToken Cost Explorer already returned in this fetch stops it at once. Either raises
    RunawayPagination. `requests`, when given, is updated as each answer arrives.
    `pages_before` is how many pages earlier requests of the same account's fetch took: they
    count toward `max_pages`, and the pages are numbered after them in errors.
    """
    count = requests if requests is not None else RequestCount()
    client = new_client()
    pages: list[Page] = []
    token: str | None = None
    seen: dict[str, int] = {}  # NextPageToken -> the page that returned it, in this pass
    answered, renewals, restarts = pages_before, 0, 0
    while True:
        try:
            response = client.get_cost_and_usage(
                **request, **({"NextPageToken": token} if token else {})
            )
        except ClientError as error:
            count.made += _attempts(error.response.get("ResponseMetadata", {}))
            if _error_code(error) in EXPIRED_CREDENTIALS and renewals < max_renewals:
                renewals += 1
                client = new_client()
                continue
            if _error_code(error) in RESTARTABLE and restarts == 0:
                restarts += 1
                pages, token, seen = [], None, {}
                continue
            raise
        attempts = _attempts(response.pop("ResponseMetadata", {}))
        count.made += attempts
        count.paid += 1
        answered += 1
        pages.append(Page(len(pages) + 1, request, response, attempts))
        token = response.get("NextPageToken")
        if not token:
            return Fetch(pages, renewals, restarts, count)
        if token in seen:
            raise RunawayPagination(
                f"Cost Explorer returned the same NextPageToken twice (page "
                f"{pages_before + len(pages)} repeated the token of page "
                f"{pages_before + seen[token]}), which would repeat the same pages "
                f"forever; stopped after {_paid(answered)} and wrote nothing"
            )
        if answered >= max_pages:
            raise RunawayPagination(
                f"Cost Explorer kept returning pages past the limit of {max_pages} "
                f"(PULSE_MAX_PAGES); stopped after {_paid(answered)} and wrote nothing; raise "
                "PULSE_MAX_PAGES if the account really has that many pages"
            )
        seen[token] = len(pages)


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


class _Client:
    """One client acting as the role for every request of a fetch; renewed when it expires."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    def for_request(self) -> Callable[[], Any]:
        """What `fetch_pages` calls for a client: the current one first, a new one after."""
        calls = 0

        def client() -> Any:
            nonlocal calls
            calls += 1
            if self._client is None or calls > 1:
                self._client = self._make()
            return self._client

        return client


def fetch_window(
    client_for: Callable[[AwsConnection], Any],
    connection: AwsConnection,
    window: SyncWindow,
    metric: str,
    *,
    max_pages: int,
    requests: RequestCount,
) -> Fetch:
    """Every page of one account's window, through one client acting as its role whose
    answers are kept as sent: first `linked_accounts_request`, then `window_requests` (each
    followed to its last page with `fetch_pages`). At most `max_pages` pages in all. Raises
    SyncError naming the account and the cause, MalformedPayloadError for a bad first page."""
    client = _Client(lambda: as_sent(client_for(connection)))
    fetches: list[Fetch] = []

    def fetch(request: dict[str, Any]) -> Fetch:
        done = sum(len(f.pages) for f in fetches)
        fetched = fetch_pages(
            client.for_request(),
            request,
            max_pages=max_pages,
            requests=requests,
            pages_before=done,
        )
        fetches.append(fetched)
        return fetched

    try:
        first = fetch(linked_accounts_request(window, metric))
        seen, record_types = linked_accounts_seen(
            [StoredPage(page.number, page.request, page.response) for page in first.pages]
        )
        for request in window_requests(
            connection.aws_account_id, seen, record_types, window, metric
        ):
            fetch(request)
    except (SyncError, MalformedPayloadError):
        raise
    except Exception as error:
        raise describe_aws_error(connection, "GetCostAndUsage", error) from None
    pages = [page for fetched in fetches for page in fetched.pages]
    return Fetch(
        [Page(number, p.request, p.response, p.attempts) for number, p in enumerate(pages, 1)],
        sum(f.credential_renewals for f in fetches),
        sum(f.restarts for f in fetches),
        requests,
    )


def describe_aws_error(connection: AwsConnection, action: str, error: Exception) -> SyncError:
    """One secret-free sentence for an AWS failure: it names the account and what to do.

    AWS's own message text is left out: it can quote request parameters.
    """
    label = connection.account.label
    if isinstance(error, RunawayPagination):
        return SyncError(f"{label}: {error}")
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


def keep_as_sent(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's `before-parse` hook: the answer becomes Cost Explorer's JSON exactly as sent.

    botocore reshapes a response to its model without checking it: a null member vanishes, a
    string where a list belongs becomes the list of its characters (Keys "EC2" would be a
    service "E" of record type "C"), and some wrong types crash its parser. The raw page is
    stored and checked (`normalise.cost_lines`) as sent instead; botocore parses an empty
    object and adds only its ResponseMetadata.
    """
    if response_dict.get("status_code") != 200:
        return
    try:
        document = json.loads(response_dict["body"])
    except (KeyError, TypeError, ValueError):
        return  # botocore's own parser says what is wrong with it
    if isinstance(document, dict):
        document.pop("ResponseMetadata", None)  # botocore's own, with its retry count
        customized_response_dict.update(document)
        response_dict["body"] = b"{}"


def as_sent(client: Any) -> Any:
    """A Cost Explorer client whose GetCostAndUsage answers are kept as sent (see keep_as_sent)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register("before-parse.cost-explorer.GetCostAndUsage", keep_as_sent)
    return client
