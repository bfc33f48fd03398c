"""The local AWS simulation: its pure parts, then its server through real boto3 clients."""

import json
import socket
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws
from moto.ce.models import CostExplorerBackend
from moto.ce.responses import CostExplorerResponse
from moto.server import DomainDispatcherApplication
from moto.sts.models import STSBackend
from moto.sts.responses import TokenResponse

from pulse_pipeline.aws.cost_explorer import METRICS
from pulse_pipeline.aws.metrics import requested_metrics
from pulse_pipeline.aws.requests import (
    cost_and_usage_request,
    linked_account_costs_request,
    linked_accounts_request,
)
from pulse_pipeline.sync_window import SyncWindow
from pulse_pipeline_dev.simulated_aws import (
    INJECTABLE_ERROR_CODES,
    SimulatedAws,
    SimulationSettings,
    service_names,
)
from pulse_pipeline_dev.simulated_aws.api import (
    CostExplorerError,
    answer,
    encode_token,
    first_estimated_day,
    parse_request,
)
from pulse_pipeline_dev.simulated_aws.data import day_lines, format_amount, window_lines

ACC_111, ACC_222 = "111111111111", "222222222222"
ROLE_111 = f"arn:aws:iam::{ACC_111}:role/PulseRead"
ROLE_222 = f"arn:aws:iam::{ACC_222}:role/PulseRead"
DENIED_ROLE = "arn:aws:iam::333333333333:role/PulseRead"
EXTERNAL_ID = "pulse-demo-external-id"
TEN_DAYS = [date(2026, 10, 27) + timedelta(days=n) for n in range(10)]  # across a month end
WINDOW = SyncWindow(TEN_DAYS[0], TEN_DAYS[-1])

# botocore's Config: ``max_attempts`` counts the *retries*, ``total_max_attempts`` every attempt.
STANDARD_RETRIES = Config(retries={"mode": "standard", "max_attempts": 8})
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def pipeline_request(metric: str = "UnblendedCost", **extra: Any) -> dict[str, Any]:
    """The request pulse_pipeline sends for the ten-day window."""
    return {**cost_and_usage_request(WINDOW, metric), **extra}


def body(**changes: Any) -> bytes:
    """The JSON body of the pipeline's request, with some parameters changed or removed."""
    request = {**pipeline_request(), **changes}
    return json.dumps({k: v for k, v in request.items() if v is not None}).encode()


# -- the pure parts ------------------------------------------------------------------------


def test_costs_are_deterministic_per_seed_and_account() -> None:
    lines = day_lines(0, 30, ACC_111, TEN_DAYS[0])
    assert day_lines(0, 30, ACC_111, TEN_DAYS[0]) == lines
    assert day_lines(1, 30, ACC_111, TEN_DAYS[0]) != lines
    assert day_lines(0, 30, ACC_222, TEN_DAYS[0]) != lines
    usage = [line.service for line in lines if line.record_type == "Usage"]
    assert usage == service_names(30)  # every service, every day
    assert usage[-1] == "Simulated Service 030"
    assert {line.record_type for line in lines} == {"Usage", "Credit", "Tax"}
    assert all(line.cost < 0 for line in lines if line.record_type == "Credit")
    assert all(line.cost > 0 for line in lines if line.record_type != "Credit")
    assert format_amount(Decimal("1.50000000004")) == "1.5"
    assert format_amount(Decimal("-0.00000000001")) == "0"


def test_the_pipelines_own_requests_are_accepted_for_every_metric() -> None:
    for metric in METRICS:
        request = parse_request(json.dumps(pipeline_request(metric)).encode())
        assert (request.start, request.end, request.metric, request.offset) == (
            TEN_DAYS[0],
            date(2026, 11, 6),  # End is exclusive
            metric,
            0,
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"Metrics": ["BlendedCost"]},
        {"Metrics": ["UsageQuantity"]},
        {"Metrics": ["UnblendedCost", "UnblendedCost"]},
        {"Granularity": "HOURLY"},
        {"GroupBy": [{"Type": "DIMENSION", "Key": "USAGE_TYPE"}]},
        {"GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}] * 2},
        {"GroupBy": [{"Type": "TAG", "Key": "a"}, {"Type": "TAG", "Key": "b"}, {"Type": "TAG"}]},
        {"GroupBy": None},
        {"Filter": {"Dimensions": {"Key": "REGION", "Values": ["eu-west-1"]}}},
        {"Filter": {"And": [{"Dimensions": {"Key": "SERVICE", "Values": ["AWS Lambda"]}}]}},
        {"Filter": {"CostCategories": {"Key": "team", "Values": ["a"]}}},
        {"TimePeriod": {"Start": "2026-11-06", "End": "2026-10-27"}},
        {"TimePeriod": {"Start": "27/10/2026", "End": "2026-11-06"}},
    ],
)
def test_what_the_pipeline_never_asks_is_a_validation_exception(changes: dict[str, Any]) -> None:
    with pytest.raises(CostExplorerError) as error:
        parse_request(body(**changes))
    assert error.value.code == "ValidationException"


def test_pages_cover_the_window_once_and_tokens_belong_to_their_request() -> None:
    lines = window_lines(0, 5, ACC_111, TEN_DAYS[0], date(2026, 11, 6))
    request = parse_request(body())
    pages = []
    while True:
        page = answer(request, lines, currency="USD", page_size=7, first_estimated=TEN_DAYS[-1])
        pages.append(page)
        if "NextPageToken" not in page:
            break
        request = parse_request(body(NextPageToken=page["NextPageToken"]))
        assert request.page_number(7) == len(pages) + 1

    groups = [
        (result["TimePeriod"]["Start"], *group["Keys"])
        for page in pages
        for result in page["ResultsByTime"]
        for group in result["Groups"]
    ]
    assert groups == [(line.day.isoformat(), line.service, line.record_type) for line in lines]
    assert len(pages) == -(-len(lines) // 7)
    token = encode_token(7, request.fingerprint)
    with pytest.raises(CostExplorerError) as changed:
        parse_request(body(Metrics=["AmortizedCost"], NextPageToken=token))
    with pytest.raises(CostExplorerError) as garbage:
        parse_request(body(NextPageToken="not-a-token"))
    assert changed.value.code == "RequestChangedException"
    assert garbage.value.code == "InvalidNextTokenException"


@pytest.mark.parametrize(
    ("today", "first_estimated"),
    [
        # The previous month's bill is open on the 1st to the 4th: its days are estimated.
        (date(2026, 12, 1), date(2026, 11, 1)),
        (date(2026, 12, 4), date(2026, 11, 1)),
        # From the 5th on it is closed: only the open month is estimated.
        (date(2026, 12, 5), date(2026, 12, 1)),
        (date(2026, 12, 31), date(2026, 12, 1)),
        (date(2027, 1, 2), date(2026, 12, 1)),
        (date(2027, 3, 3), date(2027, 2, 1)),
    ],
)
def test_days_are_estimated_by_the_calendar(today: date, first_estimated: date) -> None:
    assert first_estimated_day(today) == first_estimated
    assert SimulationSettings(today=today).estimated_since() == first_estimated
    # An explicit first estimated day wins over the calendar.
    assert SimulationSettings(today=today, estimated_from=today).estimated_since() == today
    # The four days before today are always still estimated.
    assert first_estimated_day(today) <= today - timedelta(days=4)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="currency_by_account: '1234' is not a 12-digit"):
        SimulationSettings(currency_by_account={"1234": "EUR"})
    with pytest.raises(ValueError, match="is not a currency code"):
        SimulationSettings(currency_by_account={ACC_111: "euro"})
    with pytest.raises(ValueError, match="page_size"):
        SimulationSettings(page_size=0)
    with pytest.raises(ValueError, match="services_by_account: '1234'"):
        SimulationSettings(services_by_account={"1234": 3})
    with pytest.raises(ValueError, match="throttle_first"):
        SimulationSettings(throttle_first={ACC_111: -1})
    with pytest.raises(ValueError, match="expire_token_at_page"):
        SimulationSettings(expire_token_at_page={ACC_111: 0})
    with pytest.raises(ValueError, match="is not one of"):
        SimulationSettings(fail_with={ACC_111: ("AccessDenied", 1)})
    with pytest.raises(ValueError, match="page number"):
        SimulationSettings(fail_with={ACC_111: ("ValidationException", 0)})
    with pytest.raises(ValueError, match="sts_throttle_first"):
        SimulationSettings(sts_throttle_first=-1)
    with pytest.raises(ValueError, match="sts_latency_seconds"):
        SimulationSettings(sts_latency_seconds=-0.1)
    with pytest.raises(ValueError, match="endless_pages: '1234'"):
        SimulationSettings(endless_pages=frozenset({"1234"}))
    with pytest.raises(ValueError, match=r"repeat_token_at_page\['111111111111'\] must be"):
        SimulationSettings(repeat_token_at_page={ACC_111: 1})
    with pytest.raises(ValueError, match="today must be a date, not a datetime"):
        SimulationSettings(today=datetime(2026, 11, 25, tzinfo=UTC))
    listed = SimulationSettings(fail_with={ACC_111: ["ValidationException", 2]})  # type: ignore[dict-item]
    assert listed.fail_with == {ACC_111: ("ValidationException", 2)}


# -- the server, through boto3 ---------------------------------------------------------------


def sts_client(aws: SimulatedAws, config: Config | None = None) -> Any:
    """A plain STS client for the simulation (the conftest's fake credentials)."""
    return boto3.client(
        "sts", region_name="us-east-1", endpoint_url=aws.endpoint_url, config=config
    )


def ce_client(
    aws: SimulatedAws,
    role_arn: str = ROLE_111,
    external_id: str = EXTERNAL_ID,
    config: Config | None = None,
) -> Any:
    """A Cost Explorer client with credentials from AssumeRole, as the pipeline builds it."""
    credentials = sts_client(aws).assume_role(
        RoleArn=role_arn, RoleSessionName="pulse-test", ExternalId=external_id
    )["Credentials"]
    return boto3.client(
        "ce",
        region_name="us-east-1",
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        config=config,
    )


def get_all_pages(ce: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of one GetCostAndUsage request, following NextPageToken."""
    pages = [ce.get_cost_and_usage(**request)]
    while "NextPageToken" in pages[-1]:
        pages.append(ce.get_cost_and_usage(**request, NextPageToken=pages[-1]["NextPageToken"]))
    return pages


def groups_of(pages: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """How often each (day, service, record type) group was answered."""
    return Counter(
        (result["TimePeriod"]["Start"], *group["Keys"])
        for page in pages
        for result in page["ResultsByTime"]
        for group in result["Groups"]
    )


def test_a_window_is_answered_in_pages_with_exactly_the_requested_days() -> None:
    # October's bill is closed on 6 November: only November's days are still estimated.
    settings = SimulationSettings(services_per_day=5, page_size=7, today=date(2026, 11, 6))
    with SimulatedAws(settings) as aws:
        ce = ce_client(aws)
        pages = get_all_pages(ce, pipeline_request())
        again = get_all_pages(ce, pipeline_request())
        requests = aws.request_count(ACC_111)

    assert len(pages) > 1
    assert requests == 2 * len(pages)  # one request per page, the window fetched twice
    assert pages[0]["GroupDefinitions"] == pipeline_request()["GroupBy"]
    seen = groups_of(pages)
    assert set(seen.values()) == {1}
    assert {day for day, _, _ in seen} == {d.isoformat() for d in TEN_DAYS}
    assert {(day, s) for day, s, rt in seen if rt == "Usage"} == {
        (d.isoformat(), s) for d in TEN_DAYS for s in service_names(5)
    }
    # A day continues on the next page, as in the real service.
    last_days = [p["ResultsByTime"][-1]["TimePeriod"]["Start"] for p in pages[:-1]]
    first_days = [p["ResultsByTime"][0]["TimePeriod"]["Start"] for p in pages[1:]]
    assert any(a == b for a, b in zip(last_days, first_days, strict=True))
    periods = {
        r["TimePeriod"]["Start"]: (r["TimePeriod"]["End"], r["Estimated"])
        for p in pages
        for r in p["ResultsByTime"]
    }
    assert periods == {
        d.isoformat(): ((d + timedelta(days=1)).isoformat(), d.month == 11) for d in TEN_DAYS
    }
    for page in pages:
        for result in page["ResultsByTime"]:
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            for group in result["Groups"]:
                amount = group["Metrics"]["UnblendedCost"]
                assert amount["Unit"] == "USD"
                assert Decimal(amount["Amount"]) == aws.expected_cost(ACC_111, day, *group["Keys"])
    assert [p["ResultsByTime"] for p in again] == [p["ResultsByTime"] for p in pages]


def estimated_days(aws: SimulatedAws, window: SyncWindow) -> dict[date, bool]:
    """Each day of the window with its ``Estimated``, as the pipeline's request gets them."""
    pages = get_all_pages(ce_client(aws), cost_and_usage_request(window))
    return {
        date.fromisoformat(r["TimePeriod"]["Start"]): r["Estimated"]
        for page in pages
        for r in page["ResultsByTime"]
    }


def test_a_backfill_of_a_closed_month_comes_back_final_whatever_its_last_day() -> None:
    september = SyncWindow(date(2026, 9, 1), date(2026, 9, 30))
    november = SyncWindow(date(2026, 11, 1), date(2026, 11, 24))
    with SimulatedAws(SimulationSettings(services_per_day=2, today=date(2026, 11, 25))) as aws:
        backfill = estimated_days(aws, september)
        month_to_date = estimated_days(aws, november)
        # October's bill closed on 5 November: a window across it is final up to November.
        across = estimated_days(aws, SyncWindow(date(2026, 10, 30), date(2026, 11, 2)))

    # Nothing for the next default sync to re-read in September (the simulation used to mark
    # the last two days of every window Estimated, so it re-read from 29 September).
    assert len(backfill) == 30 and not any(backfill.values())
    assert len(month_to_date) == 24 and all(month_to_date.values())
    assert across == {
        date(2026, 10, 30): False,
        date(2026, 10, 31): False,
        date(2026, 11, 1): True,
        date(2026, 11, 2): True,
    }


def test_the_previous_month_stays_estimated_until_its_bill_closes() -> None:
    october = SyncWindow(date(2026, 10, 1), date(2026, 10, 31))
    with SimulatedAws(SimulationSettings(services_per_day=2, today=date(2026, 11, 3))) as aws:
        open_bill = estimated_days(aws, october)
        september = estimated_days(aws, SyncWindow(date(2026, 9, 1), date(2026, 9, 30)))

    assert len(open_bill) == 31 and all(open_bill.values())
    assert not any(september.values())


def test_without_a_today_the_simulation_uses_the_current_utc_date() -> None:
    today = datetime.now(UTC).date()
    with SimulatedAws(SimulationSettings(services_per_day=1)) as aws:
        days = estimated_days(aws, SyncWindow(today - timedelta(days=40), today))

    # The previous month is open on the 1st to the 4th, the current month always.
    first_estimated = today.replace(day=1)
    if today.day < 5:
        first_estimated = (first_estimated - timedelta(days=1)).replace(day=1)
    assert days == {day: day >= first_estimated for day in days}
    assert days[today - timedelta(days=1)] and not days[today - timedelta(days=40)]


def test_every_cost_metric_reports_the_expected_cost_in_the_accounts_currency() -> None:
    settings = SimulationSettings(services_per_day=3, currency_by_account={ACC_222: "EUR"})
    with SimulatedAws(settings) as aws:
        answers = {
            (account, metric): ce.get_cost_and_usage(**pipeline_request(metric))
            for account, ce in (
                (ACC_111, ce_client(aws, ROLE_111)),
                (ACC_222, ce_client(aws, ROLE_222)),
            )
            for metric in METRICS
        }
        counts = aws.requests_by_account()
        total = aws.total_requests()

    for (account, metric), response in answers.items():
        for result in response["ResultsByTime"]:
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            for group in result["Groups"]:
                assert group["Metrics"] == {
                    asked: {
                        "Amount": format_amount(aws.expected_cost(account, day, *group["Keys"])),
                        "Unit": "EUR" if account == ACC_222 else "USD",
                    }
                    for asked in requested_metrics(metric)
                }
    assert counts == {ACC_111: 4, ACC_222: 4} and total == 8


def test_a_changed_request_or_a_bad_token_gets_the_cost_explorer_error() -> None:
    with SimulatedAws(SimulationSettings(services_per_day=5, page_size=7)) as aws:
        ce = ce_client(aws, config=NO_RETRIES)
        token = ce.get_cost_and_usage(**pipeline_request())["NextPageToken"]
        raised = {}
        for name, request in {
            "changed": pipeline_request("AmortizedCost", NextPageToken=token),
            "garbage": pipeline_request(NextPageToken="not-a-token"),
            "unsimulated": {**pipeline_request(), "Granularity": "HOURLY"},
        }.items():
            with pytest.raises(ClientError) as error:
                ce.get_cost_and_usage(**request)
            raised[name] = error.value.response
        counted = aws.request_count(ACC_111)

    assert {name: r["Error"]["Code"] for name, r in raised.items()} == {
        "changed": "RequestChangedException",
        "garbage": "InvalidNextTokenException",
        "unsimulated": "ValidationException",
    }
    assert {r["ResponseMetadata"]["HTTPStatusCode"] for r in raised.values()} == {400}
    assert "HOURLY" in raised["unsimulated"]["Error"]["Message"]
    assert counted == 4  # errors are requests too


def test_latency_applies_per_request_and_per_account() -> None:
    settings = SimulationSettings(services_per_day=1, latency_by_account={ACC_222: 0.4})
    with SimulatedAws(settings) as aws:
        fast, slow = ce_client(aws, ROLE_111), ce_client(aws, ROLE_222)
        began = time.monotonic()
        fast.get_cost_and_usage(**pipeline_request())
        fast_seconds = time.monotonic() - began
        began = time.monotonic()
        slow.get_cost_and_usage(**pipeline_request())
        slow_seconds = time.monotonic() - began
    assert fast_seconds < 0.4 <= slow_seconds


def test_denied_role_and_wrong_external_id_raise_access_denied() -> None:
    settings = SimulationSettings(
        denied_role_arns=frozenset({DENIED_ROLE}), required_external_ids={ROLE_222: EXTERNAL_ID}
    )
    with SimulatedAws(settings) as aws:
        with pytest.raises(ClientError) as denied:
            ce_client(aws, DENIED_ROLE)
        with pytest.raises(ClientError) as wrong_external_id:
            ce_client(aws, ROLE_222, external_id="someone-else")
        with pytest.raises(ClientError) as missing_external_id:
            sts_client(aws).assume_role(RoleArn=ROLE_222, RoleSessionName="pulse")
        ce_client(aws, ROLE_222)  # the right ExternalId passes
        ce_client(aws, ROLE_111, external_id="anything")  # no requirement: anything passes
        counts = [aws.assume_role_count(a) for a in ("333333333333", ACC_222, ACC_111)]

    for error in (denied.value, wrong_external_id.value, missing_external_id.value):
        assert error.response["Error"]["Code"] == "AccessDenied"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert error.operation_name == "AssumeRole"
    assert DENIED_ROLE in str(denied.value)
    assert counts == [1, 3, 1]


def test_environment_points_boto3_at_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    with SimulatedAws(SimulationSettings(services_per_day=1)) as aws:
        environment = aws.environment()
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN")
        identity = boto3.client("sts").get_caller_identity()
        response = boto3.client("ce").get_cost_and_usage(**pipeline_request())
        counted = aws.requests_by_account()
    assert set(environment) == {
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
    assert environment["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == "us-east-1"
    assert identity["Account"] == "123456789012"  # moto's default account
    assert len(response["ResultsByTime"]) == 10
    assert counted == {"123456789012": 1}


# -- fault injection -------------------------------------------------------------------------


def test_throttled_requests_are_retried_by_botocore_as_throttling() -> None:
    settings = SimulationSettings(services_per_day=2, throttle_first={ACC_111: 3, ACC_222: 1})
    with SimulatedAws(settings) as aws:
        response = ce_client(aws, ROLE_111, config=STANDARD_RETRIES).get_cost_and_usage(
            **pipeline_request()
        )
        retried = aws.request_count(ACC_111)
        ce_222 = ce_client(aws, ROLE_222, config=NO_RETRIES)
        with pytest.raises(ClientError) as throttled:
            ce_222.get_cost_and_usage(**pipeline_request())
        ce_222.get_cost_and_usage(**pipeline_request())  # only the first one was throttled

    assert response["ResponseMetadata"]["RetryAttempts"] == 3
    assert len(response["ResultsByTime"]) == 10
    assert retried == 4  # three throttled, then the answer
    error = throttled.value.response
    assert error["Error"] == {"Code": "LimitExceededException", "Message": "Rate limit exceeded"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_over_the_concurrency_cap_requests_are_throttled_and_the_peak_recorded() -> None:
    settings = SimulationSettings(
        services_per_day=1, latency_seconds=0.5, max_concurrent_requests=1
    )
    with SimulatedAws(settings) as aws:
        clients = [ce_client(aws, role, config=NO_RETRIES) for role in (ROLE_111, ROLE_222)]
        codes: list[str] = []

        def call(ce: Any) -> None:
            try:
                ce.get_cost_and_usage(**pipeline_request())
                codes.append("ok")
            except ClientError as error:
                codes.append(error.response["Error"]["Code"])

        threads = [threading.Thread(target=call, args=(ce,)) for ce in clients]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join()
        peak = aws.peak_concurrent_requests()

    assert sorted(codes) == ["LimitExceededException", "ok"]
    assert peak == 2


def test_expired_token_fails_until_new_credentials_continue_the_pagination() -> None:
    settings = SimulationSettings(
        services_per_day=5, page_size=10, expire_token_at_page={ACC_111: 3}
    )
    request = pipeline_request()
    with SimulatedAws(settings) as aws:
        old = ce_client(aws, config=NO_RETRIES)
        pages = [old.get_cost_and_usage(**request)]
        pages.append(old.get_cost_and_usage(**request, NextPageToken=pages[-1]["NextPageToken"]))
        token = pages[-1]["NextPageToken"]
        errors: list[Any] = []
        for _ in range(2):  # page 3 fails, and keeps failing for the same access key
            with pytest.raises(ClientError) as expired:
                old.get_cost_and_usage(**request, NextPageToken=token)
            errors.append(expired.value.response)
        with pytest.raises(ClientError) as still_expired:  # any request with the old key
            old.get_cost_and_usage(**request)
        errors.append(still_expired.value.response)

        new = ce_client(aws, config=NO_RETRIES)  # newly assumed credentials continue
        while token:
            pages.append(new.get_cost_and_usage(**request, NextPageToken=token))
            token = pages[-1].get("NextPageToken")
        later = get_all_pages(ce_client(aws), request)  # fires once: page 3 passes now

    for error in errors:
        assert error["Error"]["Code"] == "ExpiredTokenException"
        assert error["Error"]["Message"] == "The security token included in the request is expired"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error["ResponseMetadata"]["RetryAttempts"] == 0
    assert groups_of(pages) == groups_of(later)
    assert set(groups_of(pages).values()) == {1}
    assert [p["ResultsByTime"] for p in later] == [p["ResultsByTime"] for p in pages]


def test_fail_with_raises_the_chosen_error_for_that_page_every_time() -> None:
    codes = sorted(INJECTABLE_ERROR_CODES)
    accounts = [f"{n}" * 12 for n in range(1, len(codes) + 1)]
    settings = SimulationSettings(
        services_per_day=5,
        page_size=20,
        fail_with={
            account: (code, 2 if n % 2 else 1)
            for n, (account, code) in enumerate(zip(accounts, codes, strict=True))
        },
    )
    raised: dict[str, list[Any]] = {}
    with SimulatedAws(settings) as aws:
        for n, account in enumerate(accounts):
            ce = ce_client(aws, f"arn:aws:iam::{account}:role/PulseRead", config=STANDARD_RETRIES)
            token = ce.get_cost_and_usage(**pipeline_request())["NextPageToken"] if n % 2 else None
            for _ in range(2):
                with pytest.raises(ClientError) as failed:
                    ce.get_cost_and_usage(
                        **pipeline_request(), **({"NextPageToken": token} if token else {})
                    )
                raised.setdefault(account, []).append(failed.value.response)
        counts = aws.requests_by_account()

    for n, (account, code) in enumerate(zip(accounts, codes, strict=True)):
        for error in raised[account]:
            assert error["Error"] == {"Code": code, "Message": INJECTABLE_ERROR_CODES[code]}
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert error["ResponseMetadata"]["RetryAttempts"] == 0  # not retried
        assert counts[account] == (3 if n % 2 else 2)  # each failure is one request


def test_endless_pages_follow_the_last_group_with_new_tokens_forever() -> None:
    settings = SimulationSettings(services_per_day=2, page_size=10, endless_pages={ACC_111})
    with SimulatedAws(settings) as aws:
        ce = ce_client(aws)
        pages = [ce.get_cost_and_usage(**pipeline_request())]
        for _ in range(7):
            pages.append(
                ce.get_cost_and_usage(
                    **pipeline_request(), NextPageToken=pages[-1]["NextPageToken"]
                )
            )
        other = get_all_pages(ce_client(aws, ROLE_222), pipeline_request())
        requests = aws.requests_by_account()

    tokens = [page["NextPageToken"] for page in pages]
    assert len(set(tokens)) == len(tokens)  # a new token every time
    with_groups = [page for page in pages if page["ResultsByTime"]]
    assert set(groups_of(with_groups).values()) == {1}  # the real groups once, then empty pages
    assert pages[-1]["ResultsByTime"] == [] and len(with_groups) < len(pages)
    assert "NextPageToken" not in other[-1]  # other accounts end as usual
    assert requests == {ACC_111: 8, ACC_222: len(other)}


def test_repeat_token_at_page_hands_back_the_token_the_page_was_asked_with() -> None:
    settings = SimulationSettings(
        services_per_day=5, page_size=7, repeat_token_at_page={ACC_111: 2}
    )
    with SimulatedAws(settings) as aws:
        ce = ce_client(aws)
        first = ce.get_cost_and_usage(**pipeline_request())
        token = first["NextPageToken"]
        second = ce.get_cost_and_usage(**pipeline_request(), NextPageToken=token)
        again = ce.get_cost_and_usage(**pipeline_request(), NextPageToken=second["NextPageToken"])

    assert second["NextPageToken"] == token == again["NextPageToken"]
    assert again["ResultsByTime"] == second["ResultsByTime"] != first["ResultsByTime"]


def test_sts_throttling_is_retried_and_counted_per_account() -> None:
    with SimulatedAws(SimulationSettings(sts_throttle_first=2)) as aws:
        with pytest.raises(ClientError) as throttled:
            sts_client(aws, NO_RETRIES).assume_role(RoleArn=ROLE_111, RoleSessionName="pulse")
        retried = sts_client(aws, STANDARD_RETRIES).assume_role(
            RoleArn=ROLE_222, RoleSessionName="pulse"
        )
        ce_client(aws, ROLE_222)  # no more throttling
        counts = [aws.assume_role_count(a) for a in (ACC_111, ACC_222, "333333333333")]

    error = throttled.value.response
    assert error["Error"]["Code"] == "Throttling"
    assert error["Error"]["Message"] == "Rate exceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert retried["ResponseMetadata"]["RetryAttempts"] == 1
    assert retried["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{ACC_222}:assumed-role/")
    assert counts == [1, 3, 0]


def test_sts_latency_provokes_read_timeouts() -> None:
    def impatient(aws: SimulatedAws, retries: Any) -> Any:
        return sts_client(aws, Config(read_timeout=0.1, connect_timeout=1, retries=retries))

    with SimulatedAws(SimulationSettings(sts_latency_seconds=0.3)) as aws:
        with pytest.raises(ReadTimeoutError):
            impatient(aws, {"mode": "standard", "total_max_attempts": 2}).assume_role(
                RoleArn=ROLE_111, RoleSessionName="pulse"
            )
        attempts = aws.assume_role_count(ACC_111)
        began = time.monotonic()
        sts_client(aws).assume_role(RoleArn=ROLE_222, RoleSessionName="pulse")
        elapsed = time.monotonic() - began

    assert attempts == 2  # both attempts reached the server, then botocore gave up
    assert elapsed >= 0.3


# -- lifecycle, and moto left alone ----------------------------------------------------------


MOTO_CLASSES = (
    CostExplorerBackend,
    CostExplorerResponse,
    STSBackend,
    TokenResponse,
    DomainDispatcherApplication,
)


def moto_snapshot() -> list[dict[str, Any]]:
    """The methods and attributes of the moto classes a simulation could be tempted to patch
    (dunders left out: Python adds ``__annotations__`` when moto first reads them)."""
    return [
        {name: value for name, value in vars(cls).items() if not name.startswith("__")}
        for cls in MOTO_CLASSES
    ]


def test_exit_closes_the_port() -> None:
    with SimulatedAws() as aws:
        port = int(aws.endpoint_url.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with pytest.raises(RuntimeError):
        _ = aws.endpoint_url


def test_two_simulations_run_side_by_side_with_their_own_settings() -> None:
    with (
        SimulatedAws(
            SimulationSettings(services_per_day=2, currency_by_account={ACC_111: "EUR"})
        ) as eur,
        SimulatedAws(SimulationSettings(services_per_day=3, seed=7)) as other,
    ):
        first = ce_client(eur).get_cost_and_usage(**pipeline_request())
        second = ce_client(other).get_cost_and_usage(**pipeline_request())
        counts = (eur.requests_by_account(), other.requests_by_account())

    assert {k[1] for k in groups_of([first])} == set(service_names(2))
    assert {k[1] for k in groups_of([second])} == set(service_names(3))
    units = {
        metric["Unit"]
        for result in first["ResultsByTime"]
        for group in result["Groups"]
        for metric in group["Metrics"].values()
    }
    assert units == {"EUR"}
    assert counts == ({ACC_111: 1}, {ACC_111: 1})


def test_moto_is_not_modified_and_mock_aws_inside_a_simulation_is_plain_moto() -> None:
    before = moto_snapshot()
    settings = SimulationSettings(
        denied_role_arns=frozenset({DENIED_ROLE}), throttle_first={"123456789012": 5}
    )
    with SimulatedAws(settings) as aws:
        during = moto_snapshot()
        with mock_aws():
            sts = boto3.client("sts", region_name="us-east-1")
            assumed = sts.assume_role(RoleArn=DENIED_ROLE, RoleSessionName="pulse")
            plain = boto3.client("ce", region_name="us-east-1").get_cost_and_usage(
                **pipeline_request()
            )
        # The simulation still answers afterwards (with credentials assumed now: mock_aws
        # resets moto's shared in-memory state when it starts and stops).
        pages = get_all_pages(ce_client(aws, ROLE_222), pipeline_request())
        counts = aws.requests_by_account()

    assert during == before == moto_snapshot()
    assert assumed["AssumedRoleUser"]["Arn"].startswith("arn:aws:sts::333333333333:")
    assert plain["ResultsByTime"] == []  # moto's own answer: nothing queued
    assert counts == {ACC_222: len(pages)}


def _all_pages(ce: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    pages = [ce.get_cost_and_usage(**request)]
    while pages[-1].get("NextPageToken"):
        pages.append(ce.get_cost_and_usage(**request, NextPageToken=pages[-1]["NextPageToken"]))
    return pages


def test_a_payer_sees_each_member_as_the_member_sees_itself_per_linked_account() -> None:
    settings = SimulationSettings(
        services_per_day=3,
        page_size=5,
        linked_accounts={ACC_222: (ACC_111,)},
        account_names={ACC_111: "shop", ACC_222: "payer"},
    )
    with SimulatedAws(settings) as aws:
        payer = ce_client(aws, ROLE_222)
        months = _all_pages(payer, linked_accounts_request(WINDOW))
        usage = _all_pages(payer, linked_account_costs_request(WINDOW, "UnblendedCost", "Usage"))
        member = _all_pages(ce_client(aws, ROLE_111), linked_accounts_request(WINDOW))

    # MONTHLY: the window's two months, cut to the requested days; names as the description.
    periods = [r["TimePeriod"] for page in months for r in page["ResultsByTime"]]
    assert periods[0] == {"Start": "2026-10-27", "End": "2026-11-01"}
    assert periods[-1] == {"Start": "2026-11-01", "End": "2026-11-06"}
    names = {
        a["Value"]: a["Attributes"]["description"]
        for p in months
        for a in p["DimensionValueAttributes"]
    }
    assert names == {ACC_111: "shop", ACC_222: "payer"}
    assert {g["Keys"][0] for p in member for r in p["ResultsByTime"] for g in r["Groups"]} == {
        ACC_111
    }
    # LINKED_ACCOUNT x SERVICE filtered to Usage: each member's usage, exactly its own.
    for page in usage:
        for result in page["ResultsByTime"]:
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            for group in result["Groups"]:
                account, service = group["Keys"]
                expected = aws.expected_cost(account, day, service, "Usage")
                assert group["Metrics"]["UnblendedCost"]["Amount"] == format_amount(expected)
    seen = {g["Keys"][0] for p in usage for r in p["ResultsByTime"] for g in r["Groups"]}
    assert seen == {ACC_111, ACC_222}


def test_tag_groups_come_back_as_key_dollar_value_and_split_the_days_cost() -> None:
    settings = SimulationSettings(services_per_day=6, tags={"team": ("web", "data")})
    request = {
        **pipeline_request(),
        "GroupBy": [{"Type": "TAG", "Key": "team"}, {"Type": "DIMENSION", "Key": "SERVICE"}],
    }
    with SimulatedAws(settings) as aws:
        pages = _all_pages(ce_client(aws), request)

    totals: dict[date, Decimal] = {}
    values = set()
    for page in pages:
        for result in page["ResultsByTime"]:
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            for group in result["Groups"]:
                values.add(group["Keys"][0])
                amount = Decimal(group["Metrics"]["UnblendedCost"]["Amount"])
                totals[day] = totals.get(day, Decimal(0)) + amount
    assert values <= {"team$web", "team$data", "team$"} and len(values) > 1
    for day, total in totals.items():
        services = aws.service_names()
        assert total == sum(aws.expected_cost(ACC_111, day, s) for s in services)
