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
from botocore.exceptions import ClientError
from moto.ce.models import CostExplorerBackend
from moto.sts.models import STSBackend

from pulse_pipeline_demo.aws_simulation import SimulatedAws, SimulationSettings, service_names

ROLE_111 = "arn:aws:iam::111111111111:role/PulseRead"
ROLE_222 = "arn:aws:iam::222222222222:role/PulseRead"
DENIED_ROLE = "arn:aws:iam::333333333333:role/PulseRead"
EXTERNAL_ID = "pulse-demo-external-id"
START = date(2026, 10, 27)
END = date(2026, 11, 6)  # exclusive: ten days across a month boundary
TEN_DAYS = [START + timedelta(days=n) for n in range(10)]
BY_SERVICE = [{"Type": "DIMENSION", "Key": "SERVICE"}]


def ce_client(aws: SimulatedAws, role_arn: str = ROLE_111, external_id: str = EXTERNAL_ID) -> Any:
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
    with SimulatedAws() as aws:
        port = int(aws.endpoint_url.rsplit(":", 1)[1])
        assert CostExplorerBackend.get_cost_and_usage is not original_ce
        assert STSBackend.assume_role is not original_sts
        with pytest.raises(RuntimeError), SimulatedAws():
            pass  # a second simulation cannot run alongside
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    assert CostExplorerBackend.get_cost_and_usage is original_ce
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
    assert len(service_names(30)) == len(set(service_names(30))) == 30
