"""The demo's local AWS simulation, exercised through plain boto3 like the pipeline would."""

import math
import socket
import time
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from moto.ce.models import CostExplorerBackend
from moto.ce.responses import CostExplorerResponse
from moto.sts.models import STSBackend

from pulse_pipeline_dev.aws_simulation import (
    INJECTABLE_ERROR_CODES,
    SimulatedAws,
    SimulationSettings,
    service_names,
)

ROLE_111 = "arn:aws:iam::111111111111:role/PulseRead"
ROLE_222 = "arn:aws:iam::222222222222:role/PulseRead"
DENIED_ROLE = "arn:aws:iam::333333333333:role/PulseRead"
EXTERNAL_ID = "pulse-demo-external-id"
START = date(2026, 10, 27)
END = date(2026, 11, 6)  # exclusive: ten days across a month boundary
TEN_DAYS = [START + timedelta(days=n) for n in range(10)]
BY_SERVICE = [{"Type": "DIMENSION", "Key": "SERVICE"}]


def ce_client(
    aws: SimulatedAws,
    role_arn: str = ROLE_111,
    external_id: str = EXTERNAL_ID,
    config: Config | None = None,
) -> Any:
    """A Cost Explorer client with credentials from AssumeRole, as the pipeline builds it."""
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=aws.endpoint_url)
    credentials = sts.assume_role(
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


def get_all_pages(ce: Any, **request: Any) -> list[dict[str, Any]]:
    """Every page of one GetCostAndUsage request, following NextPageToken."""
    pages = []
    token = None
    while True:
        page = ce.get_cost_and_usage(**request, **({"NextPageToken": token} if token else {}))
        pages.append(page)
        token = page.get("NextPageToken")
        if not token:
            return pages


def daily_request(group_by: list[dict[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
    """A DAILY UnblendedCost request for the ten-day window."""
    return {
        "TimePeriod": {"Start": START.isoformat(), "End": END.isoformat()},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": BY_SERVICE if group_by is None else group_by,
        **extra,
    }


def test_ten_day_window_returns_exactly_the_requested_days() -> None:
    settings = SimulationSettings(services_per_day=4, estimated_days=2)
    with SimulatedAws(settings) as aws:
        ce = ce_client(aws)
        response = ce.get_cost_and_usage(**daily_request(Metrics=["UnblendedCost", "BlendedCost"]))
        again = ce.get_cost_and_usage(**daily_request(Metrics=["UnblendedCost", "BlendedCost"]))

    assert "NextPageToken" not in response
    assert response["GroupDefinitions"] == BY_SERVICE
    assert response["DimensionValueAttributes"] == []
    results = response["ResultsByTime"]
    assert [r["TimePeriod"]["Start"] for r in results] == [d.isoformat() for d in TEN_DAYS]
    assert [r["TimePeriod"]["End"] for r in results] == [
        (d + timedelta(days=1)).isoformat() for d in TEN_DAYS
    ]
    assert [r["Estimated"] for r in results] == [False] * 8 + [True] * 2
    for result in results:
        assert result["Total"] == {}
        assert [g["Keys"] for g in result["Groups"]] == [[s] for s in service_names(4)]
        for group in result["Groups"]:
            assert set(group["Metrics"]) == {"UnblendedCost", "BlendedCost"}
            metric = group["Metrics"]["UnblendedCost"]
            assert metric["Unit"] == "USD"
            amount = Decimal(metric["Amount"])
            assert amount > 0
            assert -amount.as_tuple().exponent <= 10  # type: ignore[operator]
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            assert amount == aws.expected_cost("111111111111", day, group["Keys"][0])
    assert again["ResultsByTime"] == results  # deterministic


def test_without_group_by_each_day_has_a_total() -> None:
    with SimulatedAws(SimulationSettings(services_per_day=3)) as aws:
        response = ce_client(aws).get_cost_and_usage(**daily_request(group_by=[]))
    assert "GroupDefinitions" not in response
    for result in response["ResultsByTime"]:
        day = date.fromisoformat(result["TimePeriod"]["Start"])
        assert result["Groups"] == []
        expected = sum(aws.expected_cost("111111111111", day, s) for s in service_names(3))
        assert Decimal(result["Total"]["UnblendedCost"]["Amount"]) == expected


def test_record_type_as_second_key_adds_up_to_the_service_amounts() -> None:
    with SimulatedAws(SimulationSettings(services_per_day=20)) as aws:
        ce = ce_client(aws)
        by_service = ce.get_cost_and_usage(**daily_request())
        by_both = get_all_pages(
            ce, **daily_request([*BY_SERVICE, {"Type": "DIMENSION", "Key": "RECORD_TYPE"}])
        )
    assert len(by_both) == 2  # 20 services x 10 days plus credits and taxes: over 200 groups
    assert by_both[0]["GroupDefinitions"][1] == {"Type": "DIMENSION", "Key": "RECORD_TYPE"}
    sums: Counter[tuple[str, str]] = Counter()
    record_types = set()
    for result in (r for page in by_both for r in page["ResultsByTime"]):
        for group in result["Groups"]:
            service, record_type = group["Keys"]
            record_types.add(record_type)
            sums[result["TimePeriod"]["Start"], service] += Decimal(  # type: ignore[assignment]
                group["Metrics"]["UnblendedCost"]["Amount"]
            )
    assert record_types == {"Usage", "Credit", "Tax"}
    for result in by_service["ResultsByTime"]:
        for group in result["Groups"]:
            key = (result["TimePeriod"]["Start"], group["Keys"][0])
            assert sums[key] == Decimal(group["Metrics"]["UnblendedCost"]["Amount"])


def test_pages_split_days_and_cover_every_day_and_service_once() -> None:
    settings = SimulationSettings(services_per_day=5, page_size=7)
    with SimulatedAws(settings) as aws:
        ce = ce_client(aws)
        pages = get_all_pages(ce, **daily_request())
        requests_made = aws.request_count("111111111111")

        first = ce.get_cost_and_usage(**daily_request())
        changed = daily_request(Metrics=["BlendedCost"], NextPageToken=first["NextPageToken"])
        with pytest.raises(ClientError) as changed_error:
            ce.get_cost_and_usage(**changed)
        with pytest.raises(ClientError) as bad_token:
            ce.get_cost_and_usage(**daily_request(NextPageToken="not-a-token"))

    assert len(pages) == math.ceil(10 * 5 / 7) == requests_made
    assert all("NextPageToken" in page for page in pages[:-1])
    assert "NextPageToken" not in pages[-1]
    assert all(sum(len(r["Groups"]) for r in p["ResultsByTime"]) <= 7 for p in pages)

    seen = Counter(
        (result["TimePeriod"]["Start"], group["Keys"][0])
        for page in pages
        for result in page["ResultsByTime"]
        for group in result["Groups"]
    )
    expected = {(d.isoformat(), s) for d in TEN_DAYS for s in service_names(5)}
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    # Some day continues on the next page, as in the real service.
    last_days = [p["ResultsByTime"][-1]["TimePeriod"]["Start"] for p in pages[:-1]]
    first_days = [p["ResultsByTime"][0]["TimePeriod"]["Start"] for p in pages[1:]]
    assert any(a == b for a, b in zip(last_days, first_days, strict=True))

    assert changed_error.value.response["Error"]["Code"] == "RequestChangedException"
    assert bad_token.value.response["Error"]["Code"] == "InvalidNextTokenException"


def test_currency_and_request_counts_are_per_account() -> None:
    settings = SimulationSettings(services_per_day=2, currency_by_account={"222222222222": "EUR"})
    with SimulatedAws(settings) as aws:
        usd = ce_client(aws, ROLE_111).get_cost_and_usage(**daily_request())
        ce_eur = ce_client(aws, ROLE_222)
        eur = ce_eur.get_cost_and_usage(**daily_request())
        ce_eur.get_cost_and_usage(**daily_request(group_by=[]))
        counts = (aws.request_count("111111111111"), aws.request_count("222222222222"))
        total = aws.total_requests()
        other = aws.request_count("999999999999")

    def units(response: dict[str, Any]) -> set[str]:
        return {
            metric["Unit"]
            for result in response["ResultsByTime"]
            for group in result["Groups"]
            for metric in group["Metrics"].values()
        }

    assert units(usd) == {"USD"}
    assert units(eur) == {"EUR"}
    assert usd["ResultsByTime"] != eur["ResultsByTime"]  # amounts differ per account too
    assert counts == (1, 2)
    assert total == 3
    assert other == 0


def test_latency_is_applied_per_request() -> None:
    with SimulatedAws(SimulationSettings(services_per_day=1, latency_seconds=0.3)) as aws:
        ce = ce_client(aws)
        began = time.monotonic()
        ce.get_cost_and_usage(**daily_request())
        elapsed = time.monotonic() - began
    assert elapsed >= 0.3


def test_denied_role_and_wrong_external_id_raise_access_denied() -> None:
    settings = SimulationSettings(
        denied_role_arns=frozenset({DENIED_ROLE}), required_external_ids={ROLE_222: EXTERNAL_ID}
    )
    with SimulatedAws(settings) as aws:
        with pytest.raises(ClientError) as denied:
            ce_client(aws, DENIED_ROLE)
        with pytest.raises(ClientError) as wrong_external_id:
            ce_client(aws, ROLE_222, external_id="someone-else")
        ce_client(aws, ROLE_222)  # the right ExternalId passes
        ce_client(aws, ROLE_111, external_id="anything")  # no requirement: anything passes

    for error in (denied.value, wrong_external_id.value):
        assert error.response["Error"]["Code"] == "AccessDenied"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert error.operation_name == "AssumeRole"
    assert DENIED_ROLE in str(denied.value)


def test_environment_points_boto3_at_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    with SimulatedAws(SimulationSettings(services_per_day=1)) as aws:
        environment = aws.environment()
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        identity = boto3.client("sts").get_caller_identity()
        response = boto3.client("ce").get_cost_and_usage(**daily_request())
        counted = aws.total_requests()
    assert set(environment) == {
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
    assert environment["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == "us-east-1"
    assert identity["Account"] == "123456789012"
    assert len(response["ResultsByTime"]) == 10
    assert counted == 1


def test_exit_stops_the_server_and_restores_moto() -> None:
    original_ce = CostExplorerBackend.get_cost_and_usage
    original_sts = STSBackend.assume_role
    original_handler = CostExplorerResponse.get_cost_and_usage
    with SimulatedAws() as aws:
        port = int(aws.endpoint_url.rsplit(":", 1)[1])
        assert CostExplorerBackend.get_cost_and_usage is not original_ce
        assert CostExplorerResponse.get_cost_and_usage is not original_handler
        assert STSBackend.assume_role is not original_sts
        with pytest.raises(RuntimeError), SimulatedAws():
            pass  # a second simulation cannot run alongside
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    assert CostExplorerBackend.get_cost_and_usage is original_ce
    assert CostExplorerResponse.get_cost_and_usage is original_handler
    assert STSBackend.assume_role is original_sts
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with pytest.raises(RuntimeError):
        _ = aws.endpoint_url


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="12-digit"):
        SimulationSettings(currency_by_account={"1234": "EUR"})
    with pytest.raises(ValueError, match="page_size"):
        SimulationSettings(page_size=0)
    with pytest.raises(ValueError, match="throttle_first: '1234' is not a 12-digit"):
        SimulationSettings(throttle_first={"1234": 1})
    with pytest.raises(ValueError, match="throttle_first"):
        SimulationSettings(throttle_first={"111111111111": -1})
    with pytest.raises(ValueError, match="expire_token_at_page"):
        SimulationSettings(expire_token_at_page={"111111111111": 0})
    with pytest.raises(ValueError, match="is not one of"):
        SimulationSettings(fail_with={"111111111111": ("AccessDenied", 1)})
    with pytest.raises(ValueError, match="page number"):
        SimulationSettings(fail_with={"111111111111": ("ValidationException", 0)})
    with pytest.raises(ValueError, match="sts_throttle_first"):
        SimulationSettings(sts_throttle_first=-1)
    with pytest.raises(ValueError, match="sts_latency_seconds"):
        SimulationSettings(sts_latency_seconds=-0.1)
    listed = SimulationSettings(fail_with={"111111111111": ["ValidationException", 2]})  # type: ignore[dict-item]
    assert listed.fail_with == {"111111111111": ("ValidationException", 2)}
    assert len(service_names(30)) == len(set(service_names(30))) == 30


# -- fault injection ------------------------------------------------------------------------

# botocore's Config: ``max_attempts`` counts the *retries*, ``total_max_attempts`` every attempt.
STANDARD_RETRIES = Config(retries={"mode": "standard", "max_attempts": 8})
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def sts_client(aws: SimulatedAws, config: Config | None = None) -> Any:
    """A plain STS client for the simulation."""
    return boto3.client(
        "sts", region_name="us-east-1", endpoint_url=aws.endpoint_url, config=config
    )


def test_throttled_requests_are_retried_by_botocore_as_throttling() -> None:
    settings = SimulationSettings(
        services_per_day=2, throttle_first={"111111111111": 3, "222222222222": 1}
    )
    with SimulatedAws(settings) as aws:
        response = ce_client(aws, ROLE_111, config=STANDARD_RETRIES).get_cost_and_usage(
            **daily_request()
        )
        retried = aws.request_count("111111111111")
        again = ce_client(aws, ROLE_111, config=NO_RETRIES).get_cost_and_usage(**daily_request())

        ce_222 = ce_client(aws, ROLE_222, config=NO_RETRIES)
        with pytest.raises(ClientError) as throttled:
            ce_222.get_cost_and_usage(**daily_request())
        ce_222.get_cost_and_usage(**daily_request())  # only the first one was throttled
        counts = aws.requests_by_account()

    assert response["ResponseMetadata"]["RetryAttempts"] == 3
    assert len(response["ResultsByTime"]) == 10
    assert retried == 4  # three throttled, then the answer
    assert again["ResponseMetadata"]["RetryAttempts"] == 0  # only the first three are throttled
    error = throttled.value.response
    assert error["Error"]["Code"] == "LimitExceededException"
    assert error["Error"]["Message"] == "Rate limit exceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert counts == {"111111111111": 5, "222222222222": 2}


def test_expired_token_fails_until_new_credentials_continue_the_pagination() -> None:
    settings = SimulationSettings(
        services_per_day=5, page_size=10, expire_token_at_page={"111111111111": 3}
    )
    request = daily_request()
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
        assert aws.request_count("111111111111") == 5

        new = ce_client(aws, config=NO_RETRIES)  # newly assumed credentials continue
        while token:
            pages.append(new.get_cost_and_usage(**request, NextPageToken=token))
            token = pages[-1].get("NextPageToken")
        later = get_all_pages(ce_client(aws), **request)  # fires once: page 3 passes now
        assumed = aws.assume_role_count("111111111111")

    for error in errors:
        assert error["Error"]["Code"] == "ExpiredTokenException"
        assert error["Error"]["Message"] == "The security token included in the request is expired"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error["ResponseMetadata"]["RetryAttempts"] == 0
    assert len(pages) == len(later) == 5
    seen = Counter(
        (result["TimePeriod"]["Start"], group["Keys"][0])
        for page in pages
        for result in page["ResultsByTime"]
        for group in result["Groups"]
    )
    assert set(seen) == {(d.isoformat(), s) for d in TEN_DAYS for s in service_names(5)}
    assert set(seen.values()) == {1}
    assert [p["ResultsByTime"] for p in later] == [p["ResultsByTime"] for p in pages]
    assert assumed == 3


def test_fail_with_raises_the_chosen_error_for_that_page_every_time() -> None:
    accounts = [f"{n}" * 12 for n in range(1, 6)]
    codes = sorted(INJECTABLE_ERROR_CODES)
    settings = SimulationSettings(
        services_per_day=5,
        page_size=20,
        fail_with={
            account: (code, 2 if n % 2 else 1)
            for n, (account, code) in enumerate(zip(accounts, codes, strict=True))
        },
    )
    request = daily_request()
    raised: dict[str, list[Any]] = {}
    with SimulatedAws(settings) as aws:
        for n, account in enumerate(accounts):
            ce = ce_client(aws, f"arn:aws:iam::{account}:role/PulseRead", config=STANDARD_RETRIES)
            token = ce.get_cost_and_usage(**request)["NextPageToken"] if n % 2 else None
            for _ in range(2):
                with pytest.raises(ClientError) as failed:
                    ce.get_cost_and_usage(**request, **({"NextPageToken": token} if token else {}))
                raised.setdefault(account, []).append(failed.value.response)
        counts = aws.requests_by_account()

    assert list(settings.fail_with.values()) == [
        ("BillExpirationException", 1),
        ("DataUnavailableException", 2),
        ("InvalidNextTokenException", 1),
        ("RequestChangedException", 2),
        ("ValidationException", 1),
    ]
    for n, (account, code) in enumerate(zip(accounts, codes, strict=True)):
        for error in raised[account]:
            assert error["Error"]["Code"] == code
            assert error["Error"]["Message"] == INJECTABLE_ERROR_CODES[code]
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert error["ResponseMetadata"]["RetryAttempts"] == 0  # not retried
        assert counts[account] == (3 if n % 2 else 2)  # each failure is one request


def test_sts_throttling_is_retried_and_counted_per_account() -> None:
    with SimulatedAws(SimulationSettings(sts_throttle_first=2)) as aws:
        with pytest.raises(ClientError) as throttled:
            sts_client(aws, NO_RETRIES).assume_role(RoleArn=ROLE_111, RoleSessionName="pulse")
        retried = sts_client(aws, STANDARD_RETRIES).assume_role(
            RoleArn=ROLE_222, RoleSessionName="pulse"
        )
        ce_client(aws, ROLE_222)  # no more throttling
        counts = [
            aws.assume_role_count(a) for a in ("111111111111", "222222222222", "333333333333")
        ]

    error = throttled.value.response
    assert error["Error"]["Code"] == "Throttling"
    assert error["Error"]["Message"] == "Rate exceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert retried["ResponseMetadata"]["RetryAttempts"] == 1
    assert retried["AssumedRoleUser"]["Arn"].startswith("arn:aws:sts::222222222222:assumed-role/")
    assert counts == [1, 3, 0]


def test_sts_latency_provokes_read_timeouts() -> None:
    def impatient(aws: SimulatedAws, retries: Any) -> Any:
        return sts_client(aws, Config(read_timeout=0.1, connect_timeout=1, retries=retries))

    with SimulatedAws(SimulationSettings(sts_latency_seconds=0.3)) as aws:
        with pytest.raises(ReadTimeoutError):
            impatient(aws, {"mode": "standard", "total_max_attempts": 2}).assume_role(
                RoleArn=ROLE_111, RoleSessionName="pulse"
            )
        attempts = aws.assume_role_count("111111111111")
        with pytest.raises(ReadTimeoutError):  # max_attempts=2: two *retries*
            impatient(aws, {"mode": "standard", "max_attempts": 2}).assume_role(
                RoleArn=ROLE_222, RoleSessionName="pulse"
            )
        attempts_222 = aws.assume_role_count("222222222222")
        began = time.monotonic()
        sts_client(aws).assume_role(RoleArn=ROLE_111, RoleSessionName="pulse")
        elapsed = time.monotonic() - began
        assumed = aws.assume_role_count("111111111111")

    assert attempts == 2  # both attempts reached the server, then botocore gave up
    assert attempts_222 == 3
    assert elapsed >= 0.3
    assert assumed == 3
