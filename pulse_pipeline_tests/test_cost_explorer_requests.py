"""GetCostAndUsage requests, pagination against a real (stubbed) boto3 client, and AWS errors."""

from datetime import date
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from pulse_pipeline.accounts import AwsConnection, CloudAccount, SyncError, connection_for
from pulse_pipeline.cost_explorer import (
    Page,
    cost_and_usage_request,
    describe_aws_error,
    fetch_pages,
)
from pulse_pipeline.sync_window import SyncWindow

EXTERNAL_ID = "pulse-ext-9f8e7d6c5b4a"
AWS_SECRET_IN_MESSAGE = "wJalrXUtnFEMI-SECRET-IN-AWS-MESSAGE"
ROLE_ARN = "arn:aws:iam::123456789012:role/PulseCostReader"


def test_request_asks_daily_costs_per_service_and_charge_type_with_exclusive_end() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 11, 23)))
    assert request == {
        "TimePeriod": {"Start": "2026-10-01", "End": "2026-11-24"},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [
            {"Type": "DIMENSION", "Key": "SERVICE"},
            {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
        ],
    }


def test_request_end_crosses_month_and_year() -> None:
    request = cost_and_usage_request(
        SyncWindow(date(2025, 12, 1), date(2025, 12, 31)), "NetUnblendedCost"
    )
    assert request["TimePeriod"] == {"Start": "2025-12-01", "End": "2026-01-01"}
    assert request["Metrics"] == ["NetUnblendedCost"]


def _ce_client() -> Any:
    return boto3.client("ce", region_name="us-east-1")


def _response(day: str, service: str, amount: str, token: str | None, retries: int = 0) -> dict:
    response: dict[str, Any] = {
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}],
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": day, "End": day},
                "Total": {},
                "Groups": [
                    {
                        "Keys": [service],
                        "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
                    }
                ],
                "Estimated": False,
            }
        ],
        "DimensionValueAttributes": [],
        "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": retries},
    }
    if token:
        response["NextPageToken"] = token
    return response


def test_fetch_pages_follows_tokens_with_the_identical_request() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 3)))
    client = _ce_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_cost_and_usage", _response("2026-10-01", "EC2", "1.5", "tok-1"), dict(request)
        )
        stubber.add_response(
            "get_cost_and_usage",
            _response("2026-10-02", "S3", "2.5", "tok-2", retries=2),
            {**request, "NextPageToken": "tok-1"},
        )
        stubber.add_response(
            "get_cost_and_usage",
            _response("2026-10-03", "Lambda", "3.5", None),
            {**request, "NextPageToken": "tok-2"},
        )
        pages = fetch_pages(lambda: client, request).pages
        # A fourth call would have raised: nothing was left unconsumed and nothing extra asked.
        stubber.assert_no_pending_responses()

    assert [page.number for page in pages] == [1, 2, 3]
    assert [page.attempts for page in pages] == [1, 3, 1]
    assert [page.response["ResultsByTime"][0]["Groups"][0]["Keys"] for page in pages] == [
        ["EC2"],
        ["S3"],
        ["Lambda"],
    ]
    assert [page.response.get("NextPageToken") for page in pages] == ["tok-1", "tok-2", None]
    # What is stored as the raw page: the request itself, and no HTTP metadata.
    assert all(page.request == request for page in pages)
    assert all("ResponseMetadata" not in page.response for page in pages)


def test_fetch_pages_single_page_makes_one_call() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 1)))
    client = _ce_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_cost_and_usage", _response("2026-10-01", "EC2", "1", None, retries=4), request
        )
        pages = fetch_pages(lambda: client, request).pages
        stubber.assert_no_pending_responses()
    assert len(pages) == 1
    assert isinstance(pages[0], Page)
    assert pages[0].attempts == 5


def test_a_rejected_token_restarts_the_fetch_once_then_gives_up() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 2)))
    client = _ce_client()
    with Stubber(client) as stubber:
        for _ in range(2):  # the first attempt, then the restart from page 1
            stubber.add_response(
                "get_cost_and_usage", _response("2026-10-01", "EC2", "1", "tok-1"), request
            )
            stubber.add_client_error(
                "get_cost_and_usage",
                service_error_code="InvalidNextTokenException",
                expected_params={**request, "NextPageToken": "tok-1"},
            )
        with pytest.raises(ClientError) as caught:
            fetch_pages(lambda: client, request)
        stubber.assert_no_pending_responses()
    assert caught.value.response["Error"]["Code"] == "InvalidNextTokenException"


def test_a_restart_after_a_rejected_token_returns_only_the_second_fetch() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 2)))
    client = _ce_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_cost_and_usage", _response("2026-10-01", "EC2", "1", "tok-1"), request
        )
        stubber.add_client_error(
            "get_cost_and_usage",
            service_error_code="RequestChangedException",
            expected_params={**request, "NextPageToken": "tok-1"},
        )
        stubber.add_response(
            "get_cost_and_usage", _response("2026-10-01", "EC2", "2", "tok-9"), request
        )
        stubber.add_response(
            "get_cost_and_usage",
            _response("2026-10-02", "S3", "3", None),
            {**request, "NextPageToken": "tok-9"},
        )
        fetch = fetch_pages(lambda: client, request)
    # The dropped first page was a paid request; the rejected one is not charged by AWS.
    assert fetch.restarts == 1 and fetch.requests == 3
    assert [page.number for page in fetch.pages] == [1, 2]
    assert fetch.pages[0].response["NextPageToken"] == "tok-9"


def test_expired_credentials_are_renewed_and_the_same_page_asked_again() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 2)))
    first, second = _ce_client(), _ce_client()
    clients = iter([first, second])
    with Stubber(first) as old, Stubber(second) as new:
        old.add_response(
            "get_cost_and_usage", _response("2026-10-01", "EC2", "1", "tok-1"), request
        )
        old.add_client_error(
            "get_cost_and_usage",
            service_error_code="ExpiredTokenException",
            expected_params={**request, "NextPageToken": "tok-1"},
        )
        new.add_response(
            "get_cost_and_usage",
            _response("2026-10-02", "S3", "3", None),
            {**request, "NextPageToken": "tok-1"},
        )
        fetch = fetch_pages(lambda: next(clients), request)
        old.assert_no_pending_responses()
        new.assert_no_pending_responses()
    assert fetch.credential_renewals == 1
    assert [page.number for page in fetch.pages] == [1, 2]


# --- describe_aws_error ------------------------------------------------------------------


@pytest.fixture
def connection() -> AwsConnection:
    account = CloudAccount(
        id="clacct01",
        org_id="org1",
        name="Acme Prod",
        provider="AWS",
        connection_type="ROLE",
        role_arn=ROLE_ARN,
        external_id=EXTERNAL_ID,
    )
    return connection_for(account)


LABEL = "CloudAccount clacct01 (Acme Prod)"


def _stubbed_error(service: str, method: str, code: str, http_status: int = 400) -> ClientError:
    """The ClientError a real boto3 client raises for `code`, with a secret in AWS's message."""
    client = boto3.client(service, region_name="us-east-1")
    message = f"{AWS_SECRET_IN_MESSAGE} external id {EXTERNAL_ID}"
    with Stubber(client) as stubber:
        stubber.add_client_error(method, code, message, http_status)
        with pytest.raises(ClientError) as caught:
            if method == "assume_role":
                client.assume_role(
                    RoleArn=ROLE_ARN, RoleSessionName="pulse-clacct01", ExternalId=EXTERNAL_ID
                )
            else:
                client.get_cost_and_usage(
                    **cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 2)))
                )
    return caught.value


def _assert_safe(error: SyncError) -> str:
    text = str(error)
    assert LABEL in text
    assert EXTERNAL_ID not in text
    assert AWS_SECRET_IN_MESSAGE not in text
    assert "\n" not in text
    return text


def test_assume_role_access_denied_points_at_trust_policy(connection: AwsConnection) -> None:
    error = describe_aws_error(
        connection, "AssumeRole", _stubbed_error("sts", "assume_role", "AccessDenied", 403)
    )
    text = _assert_safe(error)
    assert "trust policy" in text
    assert "external ID" in text
    assert ROLE_ARN in text
    assert error.retryable is False


def test_assume_role_throttling_is_retryable(connection: AwsConnection) -> None:
    error = describe_aws_error(
        connection, "AssumeRole", _stubbed_error("sts", "assume_role", "Throttling")
    )
    _assert_safe(error)
    assert error.retryable is True


def test_assume_role_other_error_names_code(connection: AwsConnection) -> None:
    error = describe_aws_error(
        connection,
        "AssumeRole",
        _stubbed_error("sts", "assume_role", "RegionDisabledException", 403),
    )
    assert "RegionDisabledException" in _assert_safe(error)
    assert error.retryable is False


@pytest.mark.parametrize(
    ("code", "words", "retryable"),
    [
        ("LimitExceededException", "throttling", True),
        ("DataUnavailableException", "24 hours", False),
        ("BillExpirationException", "history", False),
        ("AccessDeniedException", "ce:GetCostAndUsage", False),
        ("RequestChangedException", "even after starting over", False),
        ("SomethingNewException", "SomethingNewException", False),
    ],
)
def test_cost_explorer_errors(
    connection: AwsConnection, code: str, words: str, retryable: bool
) -> None:
    client_error = _stubbed_error("ce", "get_cost_and_usage", code)
    error = describe_aws_error(connection, "GetCostAndUsage", client_error)
    text = _assert_safe(error)
    assert words in text
    assert code in text
    assert error.retryable is retryable


def test_endpoint_connection_error_is_retryable(connection: AwsConnection) -> None:
    error = describe_aws_error(
        connection,
        "GetCostAndUsage",
        EndpointConnectionError(endpoint_url="https://ce.us-east-1.amazonaws.com"),
    )
    text = _assert_safe(error)
    assert "could not reach AWS" in text
    assert error.retryable is True


def test_read_timeout_is_retryable(connection: AwsConnection) -> None:
    error = describe_aws_error(
        connection,
        "AssumeRole",
        ReadTimeoutError(endpoint_url="https://sts.amazonaws.com"),
    )
    _assert_safe(error)
    assert error.retryable is True


def test_no_credentials_says_so(connection: AwsConnection) -> None:
    error = describe_aws_error(connection, "AssumeRole", NoCredentialsError())
    text = _assert_safe(error)
    assert "no AWS credentials" in text
    assert error.retryable is False


def test_other_errors_name_only_their_type(connection: AwsConnection) -> None:
    botocore_error = describe_aws_error(
        connection, "GetCostAndUsage", ParamValidationError(report=AWS_SECRET_IN_MESSAGE)
    )
    assert "ParamValidationError" in _assert_safe(botocore_error)
    assert botocore_error.retryable is False
    plain = describe_aws_error(connection, "GetCostAndUsage", RuntimeError(EXTERNAL_ID))
    assert "RuntimeError" in _assert_safe(plain)
    assert plain.retryable is False
