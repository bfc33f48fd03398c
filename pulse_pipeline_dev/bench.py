"""`make bench`: Cost Explorer requests per design, and CostRecord write throughput on PostgreSQL.

Requests are counted by the simulated AWS (moto's server answering each request, paginating at
`--page-size` groups), through the same boto3 client and pagination code the pipeline uses. Write
throughput is measured on a fresh database on the local PostgreSQL for three write paths over the
same rows: pulse_pipeline's (replace the account's window in one transaction), a row-by-row
upsert (what the seed's per-record upsert amounts to), and COPY into an empty copy of the table.
"""

import argparse
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import boto3
import psycopg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.aws.connection import AwsConnection, connection_for
from pulse_pipeline.aws.cost_explorer import RequestCount, fetch_pages, fetch_window
from pulse_pipeline.aws.requests import cost_and_usage_request
from pulse_pipeline.costs import CostLine, EurCost
from pulse_pipeline.db import queries
from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.sync_window import StoredDays, SyncWindow, default_window
from pulse_pipeline_dev import bench_dagster
from pulse_pipeline_dev.postgres import fresh_database
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_dev.simulated_aws.api import first_estimated_day

PRICE_PER_REQUEST = Decimal("0.01")
AWS_ACCOUNT = "111111111111"


DESIGNS = (
    "pulse_pipeline (days still revisable)",
    "Estuary (1st of previous month on)",
    "seed (yesterday + 30 days to date)",
    "one request per account-day",
)


@dataclass(frozen=True)
class RequestCounts:
    """Cost Explorer requests for one account: 30 daily syncs per design, and a backfill."""

    month: dict[str, int]
    pulse_backfill: int
    per_day_backfill: int


def design_windows(today: date) -> dict[str, list[SyncWindow]]:
    """The windows each design asks for on one day's sync of an account synced every day."""
    yesterday = today - timedelta(days=1)
    previous_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    # What PULSE holds after yesterday's sync: the days Cost Explorer still estimates, by the
    # same calendar as the simulation's (the previous month's bill closes on the 5th).
    stored = StoredDays(
        estimated_since=first_estimated_day(today), last_day=today - timedelta(days=2)
    )
    estuary = SyncWindow(previous_month, yesterday)
    return {
        DESIGNS[0]: [default_window(today, stored)],
        DESIGNS[1]: [estuary],
        DESIGNS[2]: [SyncWindow(yesterday, yesterday), SyncWindow(yesterday - timedelta(days=29), yesterday)],
        DESIGNS[3]: [SyncWindow(day, day) for day in _days(estuary)],
    }  # fmt: skip


def _days(window: SyncWindow) -> list[date]:
    return [window.start + timedelta(days=n) for n in range(window.days)]


def count_requests(aws: SimulatedAws, today: date) -> RequestCounts:
    """Fetch each design's windows through the simulation and count what it was asked: the 30
    daily syncs up to `today`, and a 365-day backfill."""
    ce = _assumed_ce(aws, f"arn:aws:iam::{AWS_ACCOUNT}:role/PulseCostRead")
    answered: dict[SyncWindow, int] = {}

    def requests_for(window: SyncWindow) -> int:
        if window not in answered:  # the simulation answers a window alike on any day
            before = aws.request_count(AWS_ACCOUNT)
            fetch_pages(lambda: ce, cost_and_usage_request(window))
            answered[window] = aws.request_count(AWS_ACCOUNT) - before
        return answered[window]

    month = dict.fromkeys(DESIGNS, 0)
    for day in (today - timedelta(days=n) for n in range(30)):
        for design, windows in design_windows(day).items():
            month[design] += sum(requests_for(window) for window in windows)
    yesterday = today - timedelta(days=1)
    return RequestCounts(
        month=month,
        pulse_backfill=requests_for(SyncWindow(yesterday - timedelta(days=364), yesterday)),
        per_day_backfill=365 * requests_for(SyncWindow(yesterday, yesterday)),
    )


@dataclass(frozen=True)
class LinkedCase:
    """One connection's month of daily syncs with linked accounts: what it costs."""

    name: str
    linked_accounts: int  # AWS accounts whose costs the connection holds, its own included
    requests: int  # 30 daily syncs of the revisable window

    @property
    def usd(self) -> Decimal:
        return PRICE_PER_REQUEST * self.requests


def _assumed_ce(aws: SimulatedAws, role_arn: str) -> object:
    environment = aws.environment()
    sts = boto3.client(
        "sts",
        endpoint_url=aws.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
    )
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="bench")["Credentials"]
    return boto3.client(
        "ce",
        endpoint_url=aws.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def count_linked_requests(
    aws: SimulatedAws, account: str, today: date, *, alone: bool = False
) -> int:
    """The requests of 30 daily syncs of `account` with the pipeline's own fetch (the first
    request that tells which accounts the role sees, then the fewest requests for them), or,
    `alone`, with today's SERVICE x RECORD_TYPE request alone."""
    row = CloudAccount(
        f"bench-{account}", "org-bench", "bench", "AWS", "COST_EXPLORER",
        f"arn:aws:iam::{account}:role/PulseCostRead", "bench-external-id",
    )  # fmt: skip
    connection = connection_for(row)
    client = _assumed_ce(aws, connection.role_arn)

    def client_for(_: AwsConnection) -> object:
        return client

    answered: dict[SyncWindow, int] = {}
    total = 0
    for day in (today - timedelta(days=n) for n in range(30)):
        window = design_windows(day)[DESIGNS[0]][0]
        if window not in answered:
            requests = RequestCount()
            if alone:
                fetch_pages(lambda: client, cost_and_usage_request(window), requests=requests)
            else:
                fetch_window(client_for, connection, window, "UnblendedCost",
                             max_pages=1_000_000, requests=requests)  # fmt: skip
            answered[window] = requests.paid
        total += answered[window]
    return total


MEMBER_ACCOUNT = "222222222222"
PAYER_10 = "333333333333"
PAYER_100 = "444444444444"


def linked_settings(services: int, page_size: int, payers: dict[str, int]) -> SimulationSettings:
    """A simulation with a member account and payers of that many linked accounts each."""
    linked = {
        payer: tuple(f"{n:03d}{payer[:9]}" for n in range(1, members + 1))
        for payer, members in payers.items()
    }
    return SimulationSettings(
        services_per_day=services, page_size=page_size, linked_accounts=linked
    )


def count_linked_cases(services: int, page_size: int, today: date) -> list[LinkedCase]:
    """A month of daily syncs of a member account and of payers with 10 and 100 linked accounts."""
    payers = {PAYER_10: 10, PAYER_100: 100}
    with SimulatedAws(linked_settings(services, page_size, payers)) as aws:
        return [
            LinkedCase("today (SERVICE x RECORD_TYPE)", 1,
                       count_linked_requests(aws, MEMBER_ACCOUNT, today, alone=True)),
            LinkedCase("member account", 1, count_linked_requests(aws, MEMBER_ACCOUNT, today)),
            LinkedCase("payer, 10 linked accounts", 11,
                       count_linked_requests(aws, PAYER_10, today)),
            LinkedCase("payer, 100 linked accounts", 101,
                       count_linked_requests(aws, PAYER_100, today)),
        ]  # fmt: skip


def linked_report(services: int, cases: list[LinkedCase]) -> str:
    """The linked-accounts table: per connection and per AWS account it holds, per month."""
    lines = [
        "Linked accounts: requests and price per month (30 daily syncs of the revisable window, "
        f"{services} services per account)",
        f"{'connection':<30}{'requests':>10}{'price':>9}{'per AWS account':>18}",
    ]
    for case in cases:
        per_account = case.usd / case.linked_accounts
        lines.append(
            f"{case.name:<30}{case.requests:>10}{f'${case.usd:.2f}':>9}"
            f"{f'${per_account:.3f} ({case.linked_accounts})':>18}"
        )
    return "\n".join(lines)


def synthetic_costs(accounts: int, days: int, services: int, end: date) -> list[list[EurCost]]:
    """Exact rows per account: `days` x `services` Usage lines converted at a fixed rate."""
    rate = Decimal("1.0842")
    result = []
    for account in range(accounts):
        costs = []
        for n in range(days):
            day = end - timedelta(days=n)
            for s in range(services):
                amount = Decimal(f"{(account * 7 + n * 13 + s * 31) % 997}.{s:04d}{n:06d}")
                line = CostLine(
                    day, f"Service {s:03d}", "Usage", amount, "USD", False, "UnblendedCost", 1
                )
                costs.append(
                    EurCost(line, rate, day, False, (amount / rate).quantize(Decimal("1e-10")))
                )
        result.append(costs)
    return result


def _account(n: int) -> CloudAccount:
    return CloudAccount(f"bench-{n}", "org-bench", f"Bench {n}", "AWS", "COST_EXPLORER", None, None)


def write_throughput(
    server: str, costs: list[list[EurCost]], window: SyncWindow
) -> dict[str, float]:
    """Rows per second of each write path, each on an empty CostRecord in a fresh database."""
    rows = sum(len(account_costs) for account_costs in costs)
    with fresh_database(server, "pulse_bench") as url:
        upgrade(url)
        engine = create_pulse_engine(url)

        def timed(write: Callable[[], None]) -> float:
            with engine.begin() as conn:
                conn.execute(text('TRUNCATE "CostRecord"'))
            started = time.perf_counter()
            write()
            return rows / (time.perf_counter() - started)

        def pulse_path() -> None:
            for n, account_costs in enumerate(costs):
                with engine.begin() as conn:
                    queries.replace_cost_records(conn, _account(n), window, account_costs)

        def row_by_row() -> None:
            c = cost_record.c
            for n, account_costs in enumerate(costs):
                for cost in account_costs:
                    values = _values(_account(n), cost)
                    statement = pg_insert(cost_record).values(**values)
                    statement = statement.on_conflict_do_update(
                        index_elements=[
                            c.cloudAccountId,
                            c.date,
                            c.linkedAccountId,
                            c.service,
                            c.recordType,
                        ],
                        set_={"amountEUR": statement.excluded.amountEUR},
                    )
                    with engine.begin() as conn:
                        conn.execute(statement)

        def copy() -> None:
            with psycopg.connect(url) as conn:
                conn.execute('CREATE TEMP TABLE cost_copy (LIKE "CostRecord" INCLUDING ALL)')
                columns = list(_values(_account(0), costs[0][0]))
                quoted = ", ".join(f'"{column}"' for column in columns)
                with conn.cursor().copy(f"COPY cost_copy ({quoted}) FROM STDIN") as pipe:
                    for n, account_costs in enumerate(costs):
                        for cost in account_costs:
                            pipe.write_row(list(_values(_account(n), cost).values()))

        # The fast paths alternate, best of three each, so neither gains from running later
        # on a warmer database; the row-by-row path is a hundred times slower and runs once.
        rounds = [(timed(pulse_path), timed(copy)) for _ in range(3)]
        figures = {
            "pulse_pipeline": max(pulse for pulse, _ in rounds),
            "row-by-row upsert": timed(row_by_row),
            "COPY (the limit)": max(limit for _, limit in rounds),
        }
        engine.dispose()
        return figures


def _values(account: CloudAccount, cost: EurCost) -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex, "orgId": account.org_id, "cloudAccountId": account.id,
        "date": cost.line.day, "provider": "AWS", "service": cost.line.service,
        "recordType": cost.line.record_type, "chargeCategory": "Usage", "metric": cost.line.metric,
        "amount": cost.line.amount, "currency": cost.line.currency, "fxRate": cost.fx_rate,
        "fxRateDate": cost.fx_rate_date, "fxProvisional": False, "amountEUR": cost.amount_eur,
        "estimated": False, "rawPageId": None, "linkedAccountId": "111111111111",
    }  # fmt: skip


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulse_pipeline_dev.bench", description=__doc__)
    parser.add_argument(
        "--accounts", type=_numbers, default=[10, 200, 500], help="comma-separated, e.g. 10,200"
    )
    parser.add_argument(
        "--lanes",
        type=_numbers,
        default=[5],
        help="cost_explorer pool limits: every --accounts at the first, the largest at the others",
    )
    parser.add_argument("--days", type=int, default=55, help="days per account in the write test")
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--page-size", type=int, default=500, help="groups per Cost Explorer page")
    parser.add_argument("--write-accounts", type=int, default=20, help="accounts in the write test")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--latency-ms", type=float, default=300, help="per Cost Explorer request")
    parser.add_argument("--backfill-services", type=int, default=100)
    parser.add_argument(
        "--linked-services", type=int, default=20, help="services per linked account"
    )
    args = parser.parse_args(argv)
    today = datetime.now(UTC).date()
    settings = SimulationSettings(services_per_day=args.services, page_size=args.page_size)
    with SimulatedAws(settings) as aws:
        counts = count_requests(aws, today)
    print(f"Cost Explorer requests per account ({args.services} services, {args.page_size} groups "
          f"per page; $0.01 each): 30 daily syncs up to {today}, and a backfill")  # fmt: skip
    print(f"{'design':<40}{'30 daily syncs':>15}{'per month':>11}{'365-day backfill':>18}")
    for design, requests in counts.month.items():
        backfills = {DESIGNS[0]: counts.pulse_backfill, DESIGNS[3]: counts.per_day_backfill}
        shown = str(backfills[design]) if design in backfills else "-"
        price = f"${PRICE_PER_REQUEST * requests:.2f}"
        print(f"{design:<40}{requests:>15}{price:>11}{shown:>18}")
    print()
    cases = count_linked_cases(args.linked_services, args.page_size, today)
    print(linked_report(args.linked_services, cases), flush=True)
    window = SyncWindow(today - timedelta(days=args.days), today - timedelta(days=1))
    costs = synthetic_costs(args.write_accounts, args.days, args.services, window.end)
    rows = sum(len(c) for c in costs)
    figures = write_throughput(args.postgres, costs, window)
    print(f"\nCostRecord writes on PostgreSQL ({rows} rows, {args.write_accounts} accounts)")
    limit = figures["COPY (the limit)"]
    for path, rate in figures.items():
        print(f"{path:<24}{math.floor(rate):>10} rows/s{rate / limit:>8.0%} of COPY")
    print(flush=True)
    layouts = [(accounts, args.lanes[0]) for accounts in args.accounts]
    layouts += [(max(args.accounts), lanes) for lanes in args.lanes[1:]]
    daily = []
    backfill: bench_dagster.BackfillFigures | None = None
    for number, (accounts, lanes) in enumerate(layouts):
        figures_of_sync, measured_backfill = bench_dagster.measure(
            args.postgres,
            accounts=accounts,
            lanes=lanes,
            services=args.services,
            page_size=args.page_size,
            latency=args.latency_ms / 1000,
            backfill_services=args.backfill_services if number == 0 else None,
            second_sync=number == 0,
        )
        daily.append(figures_of_sync)
        backfill = backfill or measured_backfill
        print(f"measured {accounts} accounts x {lanes} lanes", flush=True)
    print()
    print(bench_dagster.report(daily, backfill, args.latency_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
