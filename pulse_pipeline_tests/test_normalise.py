"""From raw Cost Explorer pages to exact cost lines, and from those to EUR."""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pulse_pipeline.aws.metrics import focus_metrics
from pulse_pipeline.aws.pages import charge_category, cost_lines
from pulse_pipeline.costs import (
    CostLine,
    MalformedPayloadError,
    StoredPage,
    check_storable,
    to_eur,
    totals_by_currency,
)
from pulse_pipeline.fx import EcbRate, RateTable
from pulse_pipeline.sync_window import SyncWindow

WINDOW = SyncWindow(date(2026, 10, 1), date(2026, 10, 3))
D1, D2, D3 = date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)


def _group(service: str, amount: Any, unit: Any = "USD", metric: str = "UnblendedCost") -> dict:
    value: dict[str, Any] = {}
    if amount is not ...:
        value["Amount"] = amount
    if unit is not ...:
        value["Unit"] = unit
    return {"Keys": [service], "Metrics": {metric: value}}


def _period(day: date, groups: list[dict], estimated: bool = False) -> dict:
    return {
        "TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()},
        "Total": {},
        "Groups": groups,
        "Estimated": estimated,
    }


def _page(page_id: int, periods: list[dict], metric: str = "UnblendedCost") -> StoredPage:
    request = {
        "TimePeriod": {"Start": "2026-10-01", "End": "2026-10-04"},
        "Granularity": "DAILY",
        "Metrics": [metric],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
    }
    return StoredPage(page_id, request, {"ResultsByTime": periods})


def _line(
    day: date,
    service: str,
    amount: str,
    currency: str = "USD",
    estimated: bool = False,
    page=1,
    metric: str = "UnblendedCost",
) -> CostLine:
    """A line of a page asked for `metric` alone: the FOCUS columns that metric is, filled."""
    value, focus = Decimal(amount), focus_metrics(metric)
    return CostLine(
        day,
        service,
        None,
        value,
        currency,
        estimated,
        metric,
        page,
        billed=value if focus.billed == metric else None,
        effective=value if focus.effective == metric else None,
        contracted=value if focus.contracted == metric else None,
    )


# --- cost_lines --------------------------------------------------------------------------


def test_lines_from_several_pages_with_a_day_split_across_pages() -> None:
    page_1 = _page(
        11,
        [
            _period(D1, [_group("Amazon EC2", "1.50"), _group("AWS Lambda", "0.0001")]),
            _period(D2, [_group("Amazon S3", "2.25")]),
        ],
    )
    # Cost Explorer continues 2 October on the next page with other services.
    page_2 = _page(
        12,
        [
            _period(D2, [_group("Amazon EC2", "3.75")]),
            _period(D3, [_group("Amazon EC2", "-0.40")], estimated=True),  # a credit
        ],
    )
    assert cost_lines([page_1, page_2], WINDOW) == [
        _line(D1, "AWS Lambda", "0.0001", page=11),
        _line(D1, "Amazon EC2", "1.50", page=11),
        _line(D2, "Amazon EC2", "3.75", page=12),
        _line(D2, "Amazon S3", "2.25", page=11),
        _line(D3, "Amazon EC2", "-0.40", estimated=True, page=12),
    ]


def test_amounts_are_exact_decimals_rounded_half_even_to_ten_places() -> None:
    page = _page(
        1,
        [_period(D1, [_group("A", "1234567.123456789012345678"), _group("B", "0.0000000001")])],
    )
    lines = cost_lines([page], WINDOW)
    assert [(line.amount, line.reported) for line in lines] == [
        (Decimal("1234567.1234567890"), Decimal("1234567.123456789012345678")),
        (Decimal("0.0000000001"), Decimal("0.0000000001")),
    ]
    assert [line.reported_amount for line in lines] == [
        Decimal("1234567.123456789012345678"),
        None,  # nothing to round: the reported amount is the stored one
    ]


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("1e-30", "0.0000000000"),
        ("-1E-30", "0.0000000000"),  # no negative zero
        ("1.5E+3", "1500"),
        ("1.5e3", "1500"),
        ("2.5E-7", "0.00000025"),
        ("12.34567890123", "12.3456789012"),
        ("0.00000000005", "0.0000000000"),  # a tie: half-even goes to the even 0
        ("0.00000000015", "0.0000000002"),  # a tie: half-even goes to the even 2
        ("-0.00000000025", "-0.0000000002"),
        ("999999999999999999.99999999994", "999999999999999999.9999999999"),
        ("-999999999999999999.9999999999", "-999999999999999999.9999999999"),
        ("+7", "7"),
        (".5", "0.5"),
        ("5.", "5"),
    ],
)
def test_any_amount_below_ten_to_the_eighteen_is_stored_rounded_half_even(
    text: str, stored: str
) -> None:
    [line] = cost_lines([_page(1, [_period(D1, [_group("A", text)])])], WINDOW)
    assert line.amount == Decimal(stored) and line.amount.as_tuple().exponent == -10
    assert line.amount.is_signed() is Decimal(stored).is_signed()
    assert line.reported == Decimal(text)


@pytest.mark.parametrize(
    "text",
    [
        "1000000000000000000",
        "-1000000000000000000",
        "1e18",
        "999999999999999999.99999999995",  # rounds up to 10^18
        "1e999999999",
        "123456789012345678901234567890",
    ],
)
def test_an_amount_of_ten_to_the_eighteen_or_more_is_rejected_in_words(text: str) -> None:
    page = _page(1, [_period(D1, [_group("A", "1"), _group("B", text)])])
    with pytest.raises(MalformedPayloadError) as error:
        cost_lines([page], WINDOW)
    assert str(error.value).startswith(f"B on 2026-10-01 has an Amount of {text!r}, too large")
    assert "below 10^18" in str(error.value)


def test_many_tiny_amounts_sum_exactly() -> None:
    # 3 days x 100 services of 0.0000000001 each: exactly 0.00000003 (floats would drift).
    periods = [
        _period(day, [_group(f"service-{n:03d}", "0.0000000001") for n in range(100)])
        for day in (D1, D2, D3)
    ]
    lines = cost_lines([_page(1, periods)], WINDOW)
    assert len(lines) == 300
    assert totals_by_currency(lines) == {"USD": Decimal("0.00000003")}
    assert sum((line.amount for line in lines), Decimal(0)) == Decimal("0.00000003")


def test_estimated_flag_is_per_day() -> None:
    page = _page(
        1,
        [
            _period(D1, [_group("A", "1")], estimated=False),
            _period(D2, [_group("A", "1")], estimated=True),
            _period(D3, [], estimated=True),
        ],
    )
    assert [(line.day, line.estimated) for line in cost_lines([page], WINDOW)] == [
        (D1, False),
        (D2, True),
    ]


def test_metric_comes_from_the_request() -> None:
    page = _page(1, [_period(D1, [_group("A", "7.5", metric="AmortizedCost")])], "AmortizedCost")
    assert cost_lines([page], WINDOW) == [_line(D1, "A", "7.5", metric="AmortizedCost")]


def test_group_without_the_requested_metric_is_rejected() -> None:
    page = _page(1, [_period(D1, [_group("A", "7.5", metric="BlendedCost")])])
    with pytest.raises(MalformedPayloadError, match="UnblendedCost"):
        cost_lines([page], WINDOW)


def test_no_pages_or_empty_results_give_no_lines() -> None:
    assert cost_lines([], WINDOW) == []
    # An account without costs: an empty list of days, or days with an empty list of groups.
    assert cost_lines([_page(1, [])], WINDOW) == []
    assert cost_lines([_page(1, [_period(D1, []), _period(D2, [])])], WINDOW) == []


@pytest.mark.parametrize(
    "amount",
    [
        *["abc", "", "1,5", "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", None, ...],
        *[" 1.5", "1.5 ", "1_000", "\u0661", "0x10", "1e", "e5", "--1", "1.2.3"],
    ],
)
def test_non_numeric_amounts_are_rejected(amount: Any) -> None:
    page = _page(1, [_period(D1, [_group("A", "1"), _group("B", amount)])])
    with pytest.raises(MalformedPayloadError, match="B on 2026-10-01"):
        cost_lines([page], WINDOW)


@pytest.mark.parametrize("unit", [..., None, "", "usd", "Usd", "US", "USDX", "US1", " USD", 840])
def test_missing_or_invalid_unit_is_rejected(unit: Any) -> None:
    page = _page(1, [_period(D1, [_group("A", "1.00", unit=unit)])])
    with pytest.raises(MalformedPayloadError, match="Unit"):
        cost_lines([page], WINDOW)


def test_unit_with_trailing_newline_is_rejected() -> None:
    page = _page(1, [_period(D1, [_group("A", "1.00", unit="USD\n")])])
    with pytest.raises(MalformedPayloadError, match="Unit"):
        cost_lines([page], WINDOW)


@pytest.mark.parametrize("day", [date(2026, 9, 30), date(2026, 10, 4)])
def test_day_outside_the_window_is_rejected(day: date) -> None:
    page = _page(1, [_period(D1, [_group("A", "1")]), _period(day, [_group("A", "1")])])
    with pytest.raises(MalformedPayloadError, match="outside"):
        cost_lines([page], WINDOW)


def test_duplicate_day_and_service_in_one_page_is_rejected() -> None:
    page = _page(1, [_period(D1, [_group("A", "1"), _group("A", "2")])])
    with pytest.raises(MalformedPayloadError, match="twice"):
        cost_lines([page], WINDOW)


def test_duplicate_day_and_service_across_pages_is_rejected() -> None:
    pages = [
        _page(1, [_period(D1, [_group("A", "1")])]),
        _page(2, [_period(D1, [_group("A", "1")])]),
    ]
    with pytest.raises(MalformedPayloadError, match="twice"):
        cost_lines(pages, WINDOW)


@pytest.mark.parametrize(
    "period",
    [
        {"Groups": [_group("A", "1")]},
        {"TimePeriod": {}, "Groups": [_group("A", "1")]},
        {"TimePeriod": None, "Groups": [_group("A", "1")]},
        {"TimePeriod": {"Start": "1 Oct 2026"}, "Groups": [_group("A", "1")]},
    ],
)
def test_missing_or_invalid_time_period_is_rejected(period: dict) -> None:
    with pytest.raises(MalformedPayloadError, match="TimePeriod"):
        cost_lines([_page(1, [period])], WINDOW)


@pytest.mark.parametrize("group", [{"Metrics": {}}, {"Keys": [], "Metrics": {}}, {"Keys": [None]}])
def test_group_without_service_key_is_rejected(group: dict) -> None:
    with pytest.raises(MalformedPayloadError, match="service"):
        cost_lines([_page(1, [_period(D1, [group])])], WINDOW)


# --- structure: what Cost Explorer documents, or a rejection in words -------------------


def _rejection(pages: list[StoredPage]) -> str:
    with pytest.raises(MalformedPayloadError) as error:
        cost_lines(pages, WINDOW)
    return str(error.value)


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        ({"ResultsByTime": None}, "null"),
        ({}, "missing"),
        ({"ResultsByTime": "[]"}, "the string '[]'"),
        ({"ResultsByTime": {"TimePeriod": {}}}, "an object"),
    ],
)
def test_results_by_time_that_is_not_a_list_is_rejected(response: dict, kind: str) -> None:
    page = StoredPage(1, _page(1, []).request, response)
    assert _rejection([_page(1, [_period(D1, [_group("A", "1")])]), page]) == (
        f"ResultsByTime on page 2 is {kind}, expected a list"
    )


@pytest.mark.parametrize(
    ("result", "kind"),
    [(None, "null"), ("2026-10-01", "the string '2026-10-01'"), ([], "a list of 0 items")],
)
def test_a_result_that_is_not_an_object_is_rejected(result: Any, kind: str) -> None:
    assert _rejection([_page(1, [_period(D1, []), result])]) == (
        f"result 2 of ResultsByTime on page 1 is {kind}, expected an object"
    )


@pytest.mark.parametrize(
    ("groups", "kind"), [(None, "null"), (..., "missing"), ({}, "an object"), ("", "the string ''")]
)
def test_groups_that_are_not_a_list_are_rejected(groups: Any, kind: str) -> None:
    period = _period(D2, [])
    if groups is ...:
        del period["Groups"]
    else:
        period["Groups"] = groups
    assert _rejection([_page(1, [_period(D1, [_group("A", "1")]), period])]) == (
        f"Groups on 2026-10-02 is {kind}, expected a list"
    )


@pytest.mark.parametrize(
    ("estimated", "kind"),
    [
        ("false", "the string 'false'"),
        ("true", "the string 'true'"),
        (0, "the number 0"),
        (1, "the number 1"),
        (None, "null"),
        (..., "missing"),
    ],
)
@pytest.mark.parametrize("groups", [[_group("A", "1")], []], ids=["with-costs", "without"])
def test_estimated_that_is_not_a_boolean_is_rejected(
    estimated: Any, kind: str, groups: list[dict]
) -> None:
    period = _period(D1, groups)
    if estimated is ...:
        del period["Estimated"]
    else:
        period["Estimated"] = estimated
    assert _rejection([_page(1, [period])]) == (
        f"Estimated on 2026-10-01 is {kind}, expected true or false"
    )


@pytest.mark.parametrize(
    ("group", "kind"), [(None, "null"), ("EC2", "the string 'EC2'"), ([], "a list of 0 items")]
)
def test_a_group_that_is_not_an_object_is_rejected(group: Any, kind: str) -> None:
    page = _typed_page([_typed_group("S3", "Usage", "1"), group])
    assert _rejection([page]) == f"group 2 on 2026-10-01 is {kind}, expected an object"


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        ("EC2", "the string 'EC2'"),  # once stored as service 'E', record type 'C'
        (["EC2"], "a list of 1 item"),
        (["EC2", "Usage", "Tax"], "a list of 3 items"),
        (["EC2", 5], "a list whose item 2 is the number 5"),
        ([None, "Usage"], "a list whose item 1 is null"),
        ([["EC2"], "Usage"], "a list whose item 1 is a list of 1 item"),
        ({"0": "EC2", "1": "Usage"}, "an object"),
        (None, "null"),
        (..., "missing"),
    ],
)
def test_keys_that_are_not_two_strings_are_rejected(keys: Any, kind: str) -> None:
    group = _typed_group("EC2", "Usage", "1")
    if keys is ...:
        del group["Keys"]
    else:
        group["Keys"] = keys
    assert _rejection([_typed_page([_typed_group("S3", "Usage", "1"), group])]) == (
        f"Keys of group 2 on 2026-10-01 is {kind}, expected a list of 2 strings "
        "(service, record type)"
    )


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (None, "Metrics of EC2 (Usage) on 2026-10-01 is null, expected an object"),
        ([], "Metrics of EC2 (Usage) on 2026-10-01 is a list of 0 items, expected an object"),
        ({"AmortizedCost": "1"}, "EC2 (Usage) on 2026-10-01 has no AmortizedCost"),
        (
            {"AmortizedCost": {"Amount": 12.5, "Unit": "USD"}},
            "Amount of EC2 (Usage) on 2026-10-01 is the number 12.5, expected a decimal string",
        ),
        (
            {"AmortizedCost": {"Amount": 12, "Unit": "USD"}},
            "Amount of EC2 (Usage) on 2026-10-01 is the number 12, expected a decimal string",
        ),
        (
            {"AmortizedCost": {"Amount": True, "Unit": "USD"}},
            "Amount of EC2 (Usage) on 2026-10-01 is the boolean true, expected a decimal string",
        ),
    ],
)
def test_metrics_and_amounts_of_the_wrong_type_are_rejected(metrics: Any, message: str) -> None:
    group = {"Keys": ["EC2", "Usage"], "Metrics": metrics}
    assert _rejection([_typed_page([group])]) == message


@pytest.mark.parametrize(
    ("service", "record_type", "message"),
    [
        (
            "Amazon\x00EC2",
            "Usage",
            "the service name 'Amazon\\x00EC2' on 2026-10-01 contains a NUL character, which "
            "PULSE's database cannot store",
        ),
        (
            "EC2",
            "Us\x00age",
            "the record type 'Us\\x00age' on 2026-10-01 contains a NUL character, which PULSE's "
            "database cannot store",
        ),
        (
            "EC2\ud800",
            "Usage",
            "the service name 'EC2\\ud800' on 2026-10-01 contains an unpaired surrogate (not "
            "valid Unicode), which PULSE's database cannot store",
        ),
        (
            "S" * 3000,
            "Usage",
            f"the service name '{'S' * 40}'… on 2026-10-01 is 3,000 bytes long (UTF-8); PULSE "
            "stores at most 1,024",
        ),
        (
            "é" * 513,
            "Usage",
            f"the service name '{'é' * 40}'… on 2026-10-01 is 1,026 bytes long (UTF-8); PULSE "
            "stores at most 1,024",
        ),
        (
            "EC2",
            "U" * 257,
            f"the record type '{'U' * 40}'… on 2026-10-01 is 257 bytes long (UTF-8); PULSE "
            "stores at most 256",
        ),
    ],
    ids=["nul-service", "nul-record-type", "surrogate", "3000-chars", "multibyte", "record-type"],
)
def test_text_the_database_cannot_hold_is_rejected_naming_day_and_field(
    service: str, record_type: str, message: str
) -> None:
    assert _rejection([_typed_page([_typed_group(service, record_type, "1")])]) == message


def test_names_up_to_the_limits_are_accepted() -> None:
    page = _typed_page(
        [_typed_group("S" * 1024, "U" * 256, "1"), _typed_group("é" * 512, "Ü", "2")]
    )
    assert [len(line.service) for line in cost_lines([page], WINDOW)] == [1024, 512]


@pytest.mark.parametrize(
    ("response", "where"),
    [
        ({"DimensionValueAttributes": [{"Value": "a\x00b"}]}, "DimensionValueAttributes[0].Value"),
        ({"GroupDefinitions": [{"Key\x00": "SERVICE"}]}, "GroupDefinitions[0]"),
        ({"NextPageToken": "\udc80"}, "NextPageToken"),
    ],
)
def test_text_the_database_cannot_hold_anywhere_in_a_page_is_rejected(
    response: dict, where: str
) -> None:
    clean = _page(1, [_period(D1, [_group("A", "1")])])
    dirty = StoredPage(2, clean.request, {**clean.response, **response})
    check_storable([clean])
    with pytest.raises(MalformedPayloadError) as error:
        check_storable([clean, dirty])
    assert str(error.value).startswith("page 2 has ")
    assert str(error.value).endswith(f" in {where}, which PULSE's database cannot store")


# --- to_eur ------------------------------------------------------------------------------

RATES = RateTable(
    [
        EcbRate("USD", date(2026, 10, 1), Decimal("1.08")),
        EcbRate("GBP", date(2026, 10, 1), Decimal("0.855")),
        EcbRate("USD", date(2026, 10, 2), Decimal("2")),  # a Friday
        EcbRate("JPY", date(2026, 10, 2), Decimal("161.9")),
    ]
)


def test_to_eur_divides_by_the_rate_and_rounds_to_ten_places() -> None:
    # 10 / 1.08 = 9.25925925925|92... -> 9.2592592593
    [converted] = to_eur([_line(D1, "A", "10")], RATES)
    assert converted.amount_eur == Decimal("9.2592592593")
    assert converted.amount_eur.as_tuple().exponent == -10
    assert (converted.fx_rate, converted.fx_rate_date, converted.fx_provisional) == (
        Decimal("1.08"),
        D1,
        False,
    )
    assert converted.line == _line(D1, "A", "10")


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        # 1.0000000005 / 2 = 0.50000000025: a tie; half-even keeps ...2 (half-up would give ...3)
        ("1.0000000005", "0.5000000002"),
        # 1.0000000007 / 2 = 0.50000000035: a tie; half-even goes up to the even ...4
        ("1.0000000007", "0.5000000004"),
        # -1.0000000005 / 2: a negative tie also goes to even (half-up would give -...3)
        ("-1.0000000005", "-0.5000000002"),
    ],
)
def test_to_eur_rounds_ties_to_even(amount: str, expected: str) -> None:
    [converted] = to_eur([_line(D2, "A", amount)], RATES)
    assert converted.fx_rate == Decimal("2")
    assert converted.amount_eur == Decimal(expected)


def test_each_line_uses_the_rate_of_its_own_unit() -> None:
    lines = [_line(D1, "A", "10", "GBP"), _line(D1, "A2", "10", "USD"), _line(D1, "B", "3", "EUR")]
    converted = to_eur(lines, RATES)
    # 10 / 0.855 = 11.69590643274|85... ; 10 / 1.08 = 9.25925925925|92...
    assert [(c.fx_rate, c.amount_eur) for c in converted] == [
        (Decimal("0.855"), Decimal("11.6959064327")),
        (Decimal("1.08"), Decimal("9.2592592593")),
        (Decimal(1), Decimal("3")),
    ]


def test_weekend_line_uses_fridays_rate() -> None:
    # 1234.56 JPY on Sunday 4 Oct 2026 at Friday's 161.9: 7.62544780728|84... -> 7.6254478073
    [converted] = to_eur([_line(date(2026, 10, 4), "A", "1234.56", "JPY")], RATES)
    assert (converted.fx_rate_date, converted.amount_eur) == (
        date(2026, 10, 2),
        Decimal("7.6254478073"),
    )


@pytest.mark.parametrize(
    "line",
    [
        _line(D1, "A", "1", "CHF"),  # no rates at all
        _line(D1, "A", "1", "JPY"),  # JPY starts on 2 October
    ],
)
def test_missing_rate_is_a_malformed_payload(line: CostLine) -> None:
    with pytest.raises(MalformedPayloadError, match=line.currency):
        to_eur([_line(D1, "OK", "1"), line], RATES)


def test_to_eur_of_the_largest_amount_is_exact() -> None:
    # 999999999999999999.9999999999 / 2 = 499999999999999999.99999999995: a tie, half-even
    # goes up to the even ...0 (28 significant digits; the default context has 28)
    [converted] = to_eur([_line(D2, "A", "999999999999999999.9999999999")], RATES)
    assert converted.amount_eur == Decimal("500000000000000000.0000000000")


def test_to_eur_beyond_what_is_stored_is_rejected_in_words() -> None:
    # 900000000000000000 GBP / 0.855 = 1.05e18 EUR
    with pytest.raises(MalformedPayloadError) as error:
        to_eur([_line(D1, "A", "900000000000000000", "GBP")], RATES)
    assert str(error.value).startswith(
        "A on 2026-10-01: 900000000000000000 GBP is 1052631578947368421.0526315789 EUR, too "
        "large to store"
    )


def test_to_eur_of_nothing_is_nothing() -> None:
    assert to_eur([], RATES) == []


# --- totals_by_currency ------------------------------------------------------------------


def test_totals_by_currency_sum_each_currency_exactly() -> None:
    lines = [
        _line(D1, "A", "0.1"),
        _line(D1, "B", "0.2", "GBP"),
        _line(D2, "A", "0.2"),
        _line(D2, "B", "-0.05", "GBP"),
        _line(D3, "A", "1000000000.0000000001"),
    ]
    assert totals_by_currency(lines) == {
        "USD": Decimal("1000000000.3000000001"),
        "GBP": Decimal("0.15"),
    }
    assert totals_by_currency([]) == {}


# --- charge types --------------------------------------------------------------------------


def _typed_page(groups: list[dict]) -> StoredPage:
    request = {
        "Metrics": ["AmortizedCost"],
        "GroupBy": [
            {"Type": "DIMENSION", "Key": "SERVICE"},
            {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
        ],
    }
    return StoredPage(5, request, {"ResultsByTime": [_period(D1, groups)]})


def _typed_group(service: str, record_type: str, amount: str) -> dict:
    return {
        "Keys": [service, record_type],
        "Metrics": {"AmortizedCost": {"Amount": amount, "Unit": "USD"}},
    }


def test_one_service_has_a_line_per_record_type_with_the_metric_it_was_asked_for() -> None:
    page = _typed_page(
        [
            _typed_group("Amazon EC2", "Usage", "10"),
            _typed_group("Amazon EC2", "Credit", "-2.5"),
            _typed_group("Amazon EC2", "Tax", "1.25"),
        ]
    )

    lines = cost_lines([page], WINDOW)

    assert [(line.service, line.record_type, line.amount, line.metric) for line in lines] == [
        ("Amazon EC2", "Credit", Decimal("-2.5"), "AmortizedCost"),
        ("Amazon EC2", "Tax", Decimal("1.25"), "AmortizedCost"),
        ("Amazon EC2", "Usage", Decimal("10"), "AmortizedCost"),
    ]
    assert sum((line.amount for line in lines), Decimal(0)) == Decimal("8.75")


def test_a_grouped_page_without_the_record_type_key_is_rejected() -> None:
    page = _typed_page(
        [{"Keys": ["Amazon EC2"], "Metrics": {"AmortizedCost": {"Amount": "1", "Unit": "USD"}}}]
    )
    with pytest.raises(MalformedPayloadError) as error:
        cost_lines([page], WINDOW)
    assert str(error.value) == (
        "Keys of group 1 on 2026-10-01 is a list of 1 item, expected a list of 2 strings "
        "(service, record type)"
    )


def test_the_same_service_and_record_type_twice_is_rejected() -> None:
    page = _typed_page([_typed_group("S3", "Usage", "1"), _typed_group("S3", "Usage", "2")])
    with pytest.raises(MalformedPayloadError, match="appears twice"):
        cost_lines([page], WINDOW)


@pytest.mark.parametrize(
    ("record_type", "category"),
    [
        ("Usage", "Usage"),
        ("Savings Plan Covered Usage", "Usage"),
        ("Savings Plan Negation", "Usage"),
        ("Reservation applied usage", "Usage"),
        ("Recurring reservation fee", "Purchase"),
        ("Savings Plan Upfront Fee", "Purchase"),
        ("Support fee", "Purchase"),
        ("Tax", "Tax"),
        ("Credit", "Credit"),
        ("Refund", "Adjustment"),
        ("Other out-of-cycle charges", "Adjustment"),
        ("Something AWS adds next year", "Adjustment"),
        (None, None),
    ],
)
def test_record_types_map_to_focus_charge_categories(
    record_type: str | None, category: str | None
) -> None:
    assert charge_category(record_type) == category
