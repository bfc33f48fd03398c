"""A small run of the benchmark, to keep `make bench` working: request counts exactly, no timing."""

from datetime import date

import pytest

from pulse_pipeline_dev.bench import count_requests, main
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings


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
    # Pages hold a whole window, so every sync is exactly one Cost Explorer request.
    args = ["--accounts", "3", "--days", "4", "--services", "3", "--page-size", "100000"]
    fast = ["--latency-ms", "0", "--backfill-services", "2", "--write-accounts", "2"]
    assert main([*args, *fast, "--postgres", server]) == 0
    out = capsys.readouterr().out
    for figure in ("pulse_pipeline (window, per page)", "seed (day + month-to-date)",
                   "one request per account-day", "row-by-row upsert", "COPY (the limit)",
                   "Dagster overhead per account", "peak memory of a run (max)",
                   "peak memory of the run"):  # fmt: skip
        assert figure in out
    assert "(24 rows, 2 accounts)" in out
    # The daily sync through the daemon, its tick fired over the webserver's GraphQL: every
    # account synced in one batch run, one request each, and every status written back to PULSE.
    assert "dagster-daemon and dagster-webserver share" in out
    assert figure_of(out, "runs (accounts per run)") == "1 (3)"
    assert figure_of(out, "failed runs") == "0"
    assert figure_of(out, "Cost Explorer requests (per account)") == "3 (1.0)"
    assert figure_of(out, "peak concurrent Cost Explorer requests") == "1"
    assert figure_of(out, "accounts active in PULSE (status written)").startswith("3 after")
    assert int(figure_of(out, "CostRecord rows of the account")) > 0  # the backfill


def figure_of(out: str, label: str) -> str:
    """The value printed after a label in the benchmark's table."""
    lines = [line for line in out.splitlines() if line.startswith(label + " ")]
    assert len(lines) == 1, out
    line = lines[0]
    return line[len(label) :].strip()
