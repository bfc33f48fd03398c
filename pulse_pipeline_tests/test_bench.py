"""A small run of the benchmark, to keep `make bench` working: request counts and the run layout
exactly, nothing about time."""

from datetime import date

import pytest

from pulse_pipeline_dev.bench import DESIGNS, count_linked_cases, count_requests, main
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings


def test_a_month_of_daily_syncs_costs_fewer_requests_than_the_other_designs() -> None:
    # Pages large enough that every window is one page: the counts are then exact by design.
    with SimulatedAws(SimulationSettings(services_per_day=3, page_size=100_000)) as aws:
        counts = count_requests(aws, today=date(2026, 11, 25))

    pulse, estuary, seed, per_day = (counts.month[design] for design in DESIGNS)
    # One request a day for each design that reads a window (the seed: two windows a day).
    assert (pulse, estuary, seed) == (30, 30, 60)
    # One per day read from the 1st of the previous month: on 1-25 November 31 days of
    # October plus the month so far, on 27-31 October 30 days of September plus the same.
    november = sum(31 + day - 1 for day in range(1, 26))
    october = sum(30 + day - 1 for day in range(27, 32))
    assert per_day == november + october == 1365
    assert (counts.pulse_backfill, counts.per_day_backfill) == (1, 365)


def test_with_small_pages_the_revisable_window_saves_requests() -> None:
    with SimulatedAws(SimulationSettings(services_per_day=40, page_size=500)) as aws:
        counts = count_requests(aws, today=date(2026, 11, 25))

    pulse, estuary, _, _ = (counts.month[design] for design in DESIGNS)
    assert pulse < estuary / 2  # only the days still revisable, once the month has closed


def test_a_member_pays_one_request_a_sync_more_and_a_payer_one_per_record_type() -> None:
    cases = count_linked_cases(services=3, page_size=100_000, today=date(2026, 11, 25))

    today, member, payer_10, payer_100 = cases
    assert today.requests == 30  # SERVICE x RECORD_TYPE alone, one page a sync
    # A member: the first request (which accounts it sees: only itself), then its costs.
    assert (member.linked_accounts, member.requests) == (1, 30 * 2)
    # A payer: the first request, then one per record type that occurs (Usage, Credit, Tax),
    # however many linked accounts it has while a window fits a page.
    assert (payer_10.linked_accounts, payer_10.requests) == (11, 30 * 4)
    assert (payer_100.linked_accounts, payer_100.requests) == (101, 30 * 4)
    assert payer_100.usd / payer_100.linked_accounts < member.usd


def test_the_benchmark_command_prints_every_figure(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = postgres_database.rsplit("/", 1)[0]
    # Pages hold a whole window, so every sync is exactly one Cost Explorer request.
    args = ["--accounts", "3", "--lanes", "2", "--days", "4", "--services", "3"]
    fast = ["--page-size", "100000", "--latency-ms", "0", "--backfill-services", "2"]
    assert main([*args, *fast, "--write-accounts", "2", "--postgres", server]) == 0
    out = capsys.readouterr().out
    for figure in (*DESIGNS, "row-by-row upsert", "COPY (the limit)", "wall time / request floor",
                   "CPU per account in a run, start-up excluded (s)", "peak memory of the run (MB)",
                   "peak memory of a run, max (MB)", "member account",
                   "payer, 10 linked accounts", "payer, 100 linked accounts"):  # fmt: skip
        assert figure in out
    assert "(24 rows, 2 accounts)" in out
    # The daily sync through the daemon, its tick fired over the webserver's GraphQL: the 3
    # accounts shared out over the 2 lanes, two requests each (which accounts the role sees,
    # then its costs), every status written back.
    assert "dagster-daemon and dagster-webserver share" in out
    assert figure_of(out, "accounts x lanes") == "3x2"
    assert figure_of(out, "runs (x accounts per run)") == "2x1-2"
    assert figure_of(out, "failed runs") == "0"
    assert figure_of(out, "Cost Explorer requests (all accounts)") == "6"
    assert figure_of(out, "accounts active in PULSE (status written)") == "3"
    # The next day's sync asks for the days still revisable only: one page each, the same money.
    assert figure_of(out, "requests per account, next day") == "2.0"
    assert figure_of(out, "EUR total unchanged") == "yes"
    assert int(figure_of(out, "CostRecord rows of the account")) > 0  # the backfill


def figure_of(out: str, label: str) -> str:
    """The value printed after a label in the benchmark's table."""
    lines = [line for line in out.splitlines() if line.startswith(label + " ")]
    assert len(lines) == 1, out
    line = lines[0]
    return line[len(label) :].strip()
