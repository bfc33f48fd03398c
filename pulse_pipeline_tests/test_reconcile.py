"""The reconciliation checks catch what they exist for (the Dagster tests show them passing)."""

from dataclasses import replace
from datetime import date
from decimal import Decimal

from pulse_pipeline.costs import CostLine, StoredPage
from pulse_pipeline.reconcile import WrittenRow, reconcile

DAY = date(2026, 10, 5)
LINES = [
    CostLine(DAY, "EC2", "Usage", Decimal("10"), "USD", False, "UnblendedCost", 1),
    CostLine(DAY, "EC2", "Credit", Decimal("-1"), "USD", False, "UnblendedCost", 1),
]
RATE = Decimal("1.25")
GOOD = [
    WrittenRow(DAY, "EC2", "Usage", Decimal("10"), "USD", RATE, DAY, Decimal("8")),
    WrittenRow(DAY, "EC2", "Credit", Decimal("-1"), "USD", RATE, DAY, Decimal("-0.8")),
]
PAGE = StoredPage(1, {"Metrics": ["UnblendedCost"]}, {"ResultsByTime": []})


def verdicts(written: list[WrittenRow], pages: list[StoredPage] = [PAGE]) -> dict[str, bool]:  # noqa: B006
    return {o.name: o.passed for o in reconcile(written, LINES, LINES, pages)}


def test_rows_that_match_their_raw_pages_pass_every_check() -> None:
    assert set(verdicts(GOOD).values()) == {True}


def test_a_eur_figure_off_by_a_cent_is_caught() -> None:
    off = [replace(GOOD[0], amount_eur=Decimal("8.01")), GOOD[1]]
    assert verdicts(off)["eur_matches_raw"] is False


def test_a_duplicate_row_is_caught() -> None:
    assert verdicts([*GOOD, GOOD[0]])["no_duplicate_rows"] is False


def test_a_row_without_a_rate_is_caught() -> None:
    assert verdicts([replace(GOOD[0], fx_rate=None), GOOD[1]])["every_row_has_a_rate"] is False


def test_an_amount_that_differs_from_cost_explorer_is_caught() -> None:
    assert (
        verdicts([replace(GOOD[0], amount=Decimal("9.99")), GOOD[1]])["amounts_match_cost_explorer"]
        is False
    )


def test_a_daily_total_that_differs_from_the_groups_is_caught() -> None:
    period = {
        "TimePeriod": {"Start": "2026-10-05", "End": "2026-10-06"},
        "Total": {"UnblendedCost": {"Amount": "9.5", "Unit": "USD"}},
        "Groups": [{"Keys": ["EC2", "Usage"]}],
    }
    page = StoredPage(1, {"Metrics": ["UnblendedCost"]}, {"ResultsByTime": [period]})
    assert verdicts(GOOD, [page])["amounts_match_cost_explorer"] is False


def _rounded_day(reported: list[str], rate: Decimal = Decimal(1)) -> dict[str, bool]:
    """A day of amounts with more than 10 places, written rounded half-even to 10 places."""
    lines, written = [], []
    for n, text in enumerate(reported):
        amount = Decimal(text).quantize(Decimal("1e-10"))
        lines.append(
            CostLine(DAY, f"S{n}", "Usage", amount, "USD", False, "UnblendedCost", 1, Decimal(text))
        )
        eur = (amount / rate).quantize(Decimal("1e-10"))
        written.append(WrittenRow(DAY, f"S{n}", "Usage", amount, "USD", rate, DAY, eur))
    return {o.name: o.passed for o in reconcile(written, lines, lines, [PAGE])}


def test_amounts_rounded_to_ten_places_reconcile_with_the_exact_ones() -> None:
    assert set(_rounded_day(["1e-30", "12.34567890123", "1.5E+3"], Decimal("1.1")).values()) == {
        True
    }


def test_a_day_whose_exact_sum_sits_next_to_a_half_cent_still_reconciles() -> None:
    # Exact sum 0.02500000000004 rounds to 0.03 at the cent; the stored sum 0.0250000000 rounds
    # (half-even) to 0.02. Comparing cents would fail this day on every sync, forever.
    assert set(_rounded_day(["0.01250000000002", "0.01250000000002"]).values()) == {True}


def test_a_written_amount_one_place_off_the_rounded_one_is_caught() -> None:
    line = CostLine(DAY, "EC2", "Usage", Decimal("10.0000000000"), "USD", False, "UnblendedCost", 1)
    row = WrittenRow(DAY, "EC2", "Usage", Decimal("10.0000000001"), "USD", RATE, DAY, Decimal("8"))
    outcomes = {o.name: o.passed for o in reconcile([row], [line], [line], [PAGE])}
    assert outcomes["amounts_match_cost_explorer"] is False
