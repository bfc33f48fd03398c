"""A small run of the benchmark, to keep `make bench` working: request counts exactly, no timing."""

from datetime import date

import pytest

from pulse_pipeline_demo.aws_simulation import SimulatedAws, SimulationSettings
from pulse_pipeline_demo.bench import count_requests, main


def test_request_counts_are_one_per_result_page_against_the_other_designs() -> None:
    # Pages large enough that every window is one page: the counts are then exact by design.
    with SimulatedAws(SimulationSettings(services_per_day=3, page_size=100_000)) as aws:
        counts = count_requests(aws, days=10, today=date(2026, 11, 24))

    assert counts.pulse_daily == 1  # the whole window in one request
    assert counts.seed_daily == 2  # yesterday, then month-to-date again
    assert counts.per_day_daily == 10  # one per account-day
    assert (counts.pulse_backfill, counts.per_day_backfill) == (1, 365)


def test_the_benchmark_command_prints_every_figure(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = postgres_database.rsplit("/", 1)[0]
    args = ["--accounts", "3", "--days", "4", "--services", "3", "--page-size", "5"]
    assert main([*args, "--write-accounts", "2", "--postgres", server]) == 0
    out = capsys.readouterr().out
    for figure in ("pulse_pipeline (window, per page)", "seed (day + month-to-date)",
                   "one request per account-day", "row-by-row upsert", "COPY (the limit)"):  # fmt: skip
        assert figure in out
    assert "(24 rows, 2 accounts)" in out
