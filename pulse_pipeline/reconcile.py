"""Reconciliation of written CostRecords against the raw Cost Explorer pages they came from.

Run inside the write transaction, after the insert and before the commit: a failed check rolls
the replacement back, so the account's previous rows stay.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from pulse_pipeline.costs import MONEY, CostLine, StoredPage

# "To the cent": two sums agree when they differ by less than half a cent. Rounding each figure
# to 10 places moves a day's sum by at most 0.5e-10 per row, far below this, whereas comparing
# the sums rounded to cents would fail whenever the exact sum sits next to a half cent.
HALF_CENT = Decimal("0.005")


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
    linked_account: str | None = None

    @property
    def key(self) -> tuple[date, str | None, str, str | None]:
        return (self.day, self.linked_account, self.service, self.record_type)


@dataclass(frozen=True)
class CheckOutcome:
    """One reconciliation check: its name, verdict and what it compared."""

    name: str
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)


CHECKS = {
    "eur_matches_raw": (
        "Per day, Σ amountEUR equals Σ Cost Explorer's exact amount ÷ each row's rate to the cent "
        "(less than half a cent apart)."
    ),
    "no_duplicate_rows": (
        "No two rows share account, day, linked account, service and record type."
    ),
    "every_row_has_a_rate": "Every row carries its ECB rate and the date of that rate.",
    "amounts_match_cost_explorer": (
        "Per day and currency, the written amounts equal Cost Explorer's rounded half-even to 10 "
        "places, their sum equals the exact sum to the cent (less than half a cent apart), and "
        "the exact sum equals the daily Total where the response gives one."
    ),
}


def _to_the_cent(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) < HALF_CENT


def reconcile(
    written: Sequence[WrittenRow],
    lines: Sequence[CostLine],
    all_lines: Sequence[CostLine],
    pages: Iterable[StoredPage],
) -> list[CheckOutcome]:
    """Every check of CHECKS over the rows written for `lines` (the record types chosen to be
    written, out of `all_lines` in the raw `pages`)."""
    with localcontext(MONEY):
        return _reconcile(written, lines, all_lines, pages)


def _reconcile(
    written: Sequence[WrittenRow],
    lines: Sequence[CostLine],
    all_lines: Sequence[CostLine],
    pages: Iterable[StoredPage],
) -> list[CheckOutcome]:
    raw = {line.key: line for line in lines}
    keys = [row.key for row in written]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    rateless = [
        row
        for row in written
        if row.fx_rate is None or row.fx_rate_date is None or row.fx_rate <= 0
    ]

    eur_days: dict[date, tuple[Decimal, Decimal]] = {}
    for row in written:
        line = raw.get(row.key)
        recomputed = (
            line.reported / row.fx_rate if line is not None and row.fx_rate else Decimal("NaN")
        )
        stored, expected = eur_days.get(row.day, (Decimal(0), Decimal(0)))
        eur_days[row.day] = (stored + row.amount_eur, expected + recomputed)
    eur_off = sorted(
        day
        for day, (stored, expected) in eur_days.items()
        if expected.is_nan() or not _to_the_cent(stored, expected)
    )

    written_amounts: defaultdict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for row in written:
        written_amounts[(row.day, row.currency)] += row.amount or Decimal(0)
    stored_amounts: defaultdict[tuple[date, str], Decimal] = defaultdict(Decimal)
    reported_amounts: defaultdict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for line in lines:
        stored_amounts[(line.day, line.currency)] += line.amount
        reported_amounts[(line.day, line.currency)] += line.reported
    amounts_off = sorted(
        f"{day} {currency}"
        for day, currency in set(written_amounts) | set(stored_amounts)
        if written_amounts[(day, currency)] != stored_amounts[(day, currency)]
        or not _to_the_cent(written_amounts[(day, currency)], reported_amounts[(day, currency)])
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
        sums[(line.day, line.currency)] += line.reported
    off = []
    for page in pages:
        for period in page.response.get("ResultsByTime", []):
            total = (period.get("Total") or {}).get(page.metric)
            if not total or not period.get("Groups"):
                continue
            day = date.fromisoformat(period["TimePeriod"]["Start"])
            try:
                matches = Decimal(str(total["Amount"])) == sums[(day, str(total["Unit"]))]
            except (KeyError, TypeError, InvalidOperation):
                matches = False
            if not matches:
                off.append(f"{day} Total")
    return off
