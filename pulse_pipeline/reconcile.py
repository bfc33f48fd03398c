"""Reconciliation of written CostRecords against the raw Cost Explorer pages they came from.

Run inside the write transaction, after the insert and before the commit: a failed check rolls
the replacement back, so the account's previous rows stay.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pulse_pipeline.normalise import CostLine, StoredPage

CENT = Decimal("0.01")


@dataclass(frozen=True)
class WrittenRow:
    """A CostRecord as read back from the database."""

    day: date
    service: str
    record_type: str | None
    amount: Decimal | None
    currency: str
    fx_rate: Decimal | None
    fx_rate_date: date | None
    amount_eur: Decimal


@dataclass(frozen=True)
class CheckOutcome:
    """One reconciliation check: its name, verdict and what it compared."""

    name: str
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)


CHECKS = {
    "eur_matches_raw": "Per day, Σ amountEUR equals Σ raw amount ÷ each row's rate, to the cent.",
    "no_duplicate_rows": "No two rows share account, day, service and record type.",
    "every_row_has_a_rate": "Every row carries its ECB rate and the date of that rate.",
    "amounts_match_cost_explorer": (
        "Per day and currency, the written amounts equal Cost Explorer's (and its daily Total "
        "where the response gives one)."
    ),
}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def reconcile(
    written: Sequence[WrittenRow],
    lines: Sequence[CostLine],
    all_lines: Sequence[CostLine],
    pages: Iterable[StoredPage],
) -> list[CheckOutcome]:
    """Every check of CHECKS over the rows written for `lines` (the record types chosen to be
    written, out of `all_lines` in the raw `pages`)."""
    raw = {line.key: line for line in lines}
    keys = [(row.day, row.service, row.record_type) for row in written]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    rateless = [
        row
        for row in written
        if row.fx_rate is None or row.fx_rate_date is None or row.fx_rate <= 0
    ]

    eur_days: dict[date, tuple[Decimal, Decimal]] = {}
    for row in written:
        line = raw.get((row.day, row.service, row.record_type))
        recomputed = (
            line.amount / row.fx_rate if line is not None and row.fx_rate else Decimal("NaN")
        )
        stored, expected = eur_days.get(row.day, (Decimal(0), Decimal(0)))
        eur_days[row.day] = (stored + row.amount_eur, expected + recomputed)
    eur_off = sorted(
        day
        for day, (stored, expected) in eur_days.items()
        if expected.is_nan() or _cents(stored) != _cents(expected)
    )

    written_amounts: defaultdict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for row in written:
        written_amounts[(row.day, row.currency)] += row.amount or Decimal(0)
    raw_amounts: defaultdict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for line in lines:
        raw_amounts[(line.day, line.currency)] += line.amount
    amounts_off = sorted(
        f"{day} {currency}"
        for day, currency in set(written_amounts) | set(raw_amounts)
        if written_amounts[(day, currency)] != raw_amounts[(day, currency)]
    )
    amounts_off += _totals_off(pages, all_lines)

    return [
        CheckOutcome(
            "eur_matches_raw",
            not eur_off,
            f"{len(eur_days)} days compared" + (f"; off on {eur_off[:5]}" if eur_off else ""),
            {"days_checked": len(eur_days), "days_off": len(eur_off)},
        ),
        CheckOutcome(
            "no_duplicate_rows",
            not duplicates,
            f"{len(keys)} rows" + (f"; duplicated: {duplicates[:5]}" if duplicates else ""),
            {"rows": len(keys), "duplicates": len(duplicates)},
        ),
        CheckOutcome(
            "every_row_has_a_rate",
            not rateless,
            f"{len(rateless)} rows without a rate",
            {"rows_without_rate": len(rateless)},
        ),
        CheckOutcome(
            "amounts_match_cost_explorer",
            not amounts_off,
            "written amounts equal Cost Explorer's"
            if not amounts_off
            else f"differences on {amounts_off[:5]}",
            {"differences": len(amounts_off)},
        ),
    ]


def _totals_off(pages: Iterable[StoredPage], lines: Sequence[CostLine]) -> list[str]:
    """Days whose response Total (given for ungrouped requests) differs from their groups' sum."""
    sums: defaultdict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for line in lines:
        sums[(line.day, line.currency)] += line.amount
    off = []
    for page in pages:
        for period in page.response.get("ResultsByTime", []):
            total = (period.get("Total") or {}).get(page.metric)
            if not total or not period.get("Groups"):
                continue
            day = date.fromisoformat(period["TimePeriod"]["Start"])
            if Decimal(str(total["Amount"])) != sums[(day, str(total["Unit"]))]:
                off.append(f"{day} Total")
    return off
