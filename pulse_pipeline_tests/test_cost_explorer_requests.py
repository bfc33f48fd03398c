"""GetCostAndUsage requests, pagination against a real (stubbed) boto3 client, and AWS errors."""

from datetime import date
from decimal import Decimal
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

from pulse_pipeline.accounts import CloudAccount, SyncError
from pulse_pipeline.aws.connection import AwsConnection, connection_for
from pulse_pipeline.aws.cost_explorer import (
    Page,
    RequestCount,
    RunawayPagination,
    describe_aws_error,
    fetch_pages,
)
from pulse_pipeline.aws.requests import cost_and_usage_request, window_requests
from pulse_pipeline.defs.resources import AwsCostExplorer
from pulse_pipeline.sync_window import SyncWindow

EXTERNAL_ID = "pulse-ext-9f8e7d6c5b4a"
AWS_SECRET_IN_MESSAGE = "wJalrXUtnFEMI-SECRET-IN-AWS-MESSAGE"
ROLE_ARN = "arn:aws:iam::123456789012:role/PulseCostReader"


def test_request_asks_daily_costs_per_service_and_charge_type_with_exclusive_end() -> None:
    request = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 11, 23)))
    assert request == {
        "TimePeriod": {"Start": "2026-10-01", "End": "2026-11-24"},
        "Granularity": "DAILY",
        # The configured metric first, the amortized one beside it at the same $0.01.
        "Metrics": ["UnblendedCost", "AmortizedCost"],
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
    # A Net metric configured: BilledCost, EffectiveCost and ContractedCost's metrics beside it.
    assert request["Metrics"] == ["NetUnblendedCost", "NetAmortizedCost", "UnblendedCost"]


def test_a_payer_is_asked_per_record_type_and_a_member_as_before() -> None:
    window = SyncWindow(date(2026, 11, 1), date(2026, 11, 23))
    member = window_requests(
        "111111111111", ["111111111111"], ["Usage", "Tax"], window, "UnblendedCost"
    )
    assert member == [cost_and_usage_request(window)]
    payer = window_requests(
        "999999999999", ["111111111111", "999999999999"], ["Tax", "Usage"], window, "UnblendedCost"
    )
    assert [r["Filter"] for r in payer] == [
        {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Tax"]}},
        {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Usage"]}},
    ]
    assert {tuple(g["Key"] for g in r["GroupBy"]) for r in payer} == {("LINKED_ACCOUNT", "SERVICE")}


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
    # The dropped first page was a paid request; the rejected one is made but not charged.
    assert fetch.restarts == 1 and fetch.requests == RequestCount(made=4, paid=3)
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


# --- the ceiling on a fetch ---------------------------------------------------------------

REQUEST = cost_and_usage_request(SyncWindow(date(2026, 10, 1), date(2026, 10, 3)))


def _pages(stubber: Stubber, tokens: list[str | None], first_token: str | None = None) -> None:
    """Expect one request per page: the first with `first_token`, each next one with the token
    the page before returned; page N returns tokens[N-1]."""
    asked = first_token
    for token in tokens:
        stubber.add_response(
            "get_cost_and_usage",
            _response("2026-10-01", "EC2", "1", token),
            {**REQUEST, **({"NextPageToken": asked} if asked else {})},
        )
        asked = token


def test_a_fetch_of_exactly_max_pages_pages_completes() -> None:
    client = _ce_client()
    with Stubber(client) as stubber:
        _pages(stubber, ["tok-1", None])
        fetch = fetch_pages(lambda: client, REQUEST, max_pages=2)
        stubber.assert_no_pending_responses()
    assert len(fetch.pages) == 2 and fetch.requests == RequestCount(made=2, paid=2)


def test_a_fetch_stops_at_max_pages_without_asking_for_the_next_page() -> None:
    client = _ce_client()
    requests = RequestCount()
    with Stubber(client) as stubber:
        _pages(stubber, ["tok-1", "tok-2"])  # a third request would find no stubbed answer
        with pytest.raises(RunawayPagination) as caught:
            fetch_pages(lambda: client, REQUEST, max_pages=2, requests=requests)
        stubber.assert_no_pending_responses()
    assert str(caught.value) == (
        "Cost Explorer kept returning pages past the limit of 2 (PULSE_MAX_PAGES); stopped "
        "after 2 paid requests ($0.02) and wrote nothing; raise PULSE_MAX_PAGES if the account "
        "really has that many pages"
    )
    assert requests == RequestCount(made=2, paid=2) and requests.usd == Decimal("0.02")


@pytest.mark.parametrize(
    ("tokens", "repeated"),
    [
        (["tok-1", "tok-1"], "page 2 repeated the token of page 1"),  # a page returns its own
        (["tok-1", "tok-2", "tok-1"], "page 3 repeated the token of page 1"),  # a longer loop
    ],
)
def test_a_repeated_token_stops_the_fetch_at_once(tokens: list[str | None], repeated: str) -> None:
    client = _ce_client()
    requests = RequestCount()
    with Stubber(client) as stubber:
        _pages(stubber, tokens)
        with pytest.raises(RunawayPagination) as caught:
            fetch_pages(lambda: client, REQUEST, max_pages=1000, requests=requests)
        stubber.assert_no_pending_responses()
    paid = len(tokens)
    assert str(caught.value) == (
        f"Cost Explorer returned the same NextPageToken twice ({repeated}), which would repeat "
        f"the same pages forever; stopped after {paid} paid requests (${paid / 100:.2f}) and "
        "wrote nothing"
    )
    assert requests == RequestCount(made=paid, paid=paid)


def test_pages_discarded_by_a_restart_count_toward_the_limit_but_their_tokens_do_not_repeat() -> (
    None
):
    client = _ce_client()
    requests = RequestCount()
    with Stubber(client) as stubber:
        _pages(stubber, ["tok-1"])
        stubber.add_client_error(
            "get_cost_and_usage",
            service_error_code="InvalidNextTokenException",
            expected_params={**REQUEST, "NextPageToken": "tok-1"},
        )
        _pages(stubber, ["tok-1", "tok-2"])  # the restart: tok-1 again is no repetition
        with pytest.raises(RunawayPagination, match="past the limit of 3 "):
            fetch_pages(lambda: client, REQUEST, max_pages=3, requests=requests)
        stubber.assert_no_pending_responses()
    assert requests == RequestCount(made=4, paid=3)


def test_a_failed_fetch_still_counts_what_it_paid_for() -> None:
    client = _ce_client()
    requests = RequestCount()
    with Stubber(client) as stubber:
        _pages(stubber, ["tok-1"])
        stubber.add_client_error(
            "get_cost_and_usage",
            service_error_code="DataUnavailableException",
            expected_params={**REQUEST, "NextPageToken": "tok-1"},
        )
        with pytest.raises(ClientError):
            fetch_pages(lambda: client, REQUEST, requests=requests)
    assert requests == RequestCount(made=2, paid=1)


# --- ARN partitions ----------------------------------------------------------------------


def _connection(role_arn: str) -> AwsConnection:
    return connection_for(
        CloudAccount("clacct01", "org1", "Acme Prod", "AWS", "ROLE", role_arn, EXTERNAL_ID)
    )


@pytest.mark.parametrize(
    ("region", "role_arn", "partitions"),
    [
        ("us-east-1", "arn:aws-cn:iam::210987654321:role/Pulse", ("aws-cn", "aws")),
        ("eu-central-1", "arn:aws-us-gov:iam::111122223333:role/Pulse", ("aws-us-gov", "aws")),
        ("us-gov-west-1", ROLE_ARN, ("aws", "aws-us-gov")),
        ("cn-north-1", ROLE_ARN, ("aws", "aws-cn")),
    ],
)
def test_a_role_outside_pulses_partition_is_refused_before_any_aws_call(
    region: str, role_arn: str, partitions: tuple[str, str]
) -> None:
    aws = AwsCostExplorer(region_name=region)

    with pytest.raises(SyncError) as caught:
        # No endpoint or credentials would answer here: the refusal comes before any call.
        aws.cost_explorer_client(_connection(role_arn))

    theirs, ours = partitions
    assert str(caught.value) == (
        f"{LABEL}: its IAM role {role_arn} is in the AWS partition {theirs}, but PULSE's own "
        f"AWS credentials are in {ours} (region {region}) and can only assume roles there; "
        f"connect a role of an AWS account in {ours}"
    )
    assert caught.value.retryable is False


def test_a_region_botocore_does_not_know_is_refused_before_any_aws_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "mars-north-1")  # from the AWS config, not a setting

    with pytest.raises(SyncError) as caught:
        AwsCostExplorer().cost_explorer_client(_connection(ROLE_ARN))

    assert str(caught.value) == (
        f"{LABEL}: PULSE's AWS region 'mars-north-1' is unknown to botocore; set AWS_REGION to "
        "a region such as us-east-1"
    )


def test_a_role_in_pulses_own_partition_is_assumed(moto_aws: None) -> None:
    aws = AwsCostExplorer(region_name="cn-north-1")
    client = aws.cost_explorer_client(_connection("arn:aws-cn:iam::210987654321:role/Pulse"))
    assert client.meta.service_model.service_name == "ce"


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


def test_runaway_pagination_names_the_account_and_is_not_retried(
    connection: AwsConnection,
) -> None:
    error = describe_aws_error(connection, "GetCostAndUsage", RunawayPagination("what happened"))
    assert str(error) == f"{LABEL}: what happened"
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
