"""Failure and recovery alerts: which changes of state send one, what the messages say, the
channels (a webhook, a real SMTP server and a Telegram Bot API on loopback) driven by real
status runs, and peers that misbehave on purpose: each costs at most its deadline."""

import dataclasses
import logging
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.alerts import (
    Alert,
    ChannelSettings,
    alert_for,
    email_message,
    send_alerts,
    webhook_payload,
)
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import AlertChannels
from pulse_pipeline.defs.settings import SettingError
from pulse_pipeline_tests.alert_receivers import (
    HttpPeer,
    MailReceiver,
    Respond,
    WebhookReceiver,
    http_peer,
    huge,
    mail_receiver,
    redirect,
    slow_smtp_greeting,
    telegram_error,
    telegram_sent,
    trickle,
    webhook_receiver,
)
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.daemon import free_port
from pulse_pipeline_tests.support import (
    D1,
    D3,
    EC2,
    account_status,
    load_rates,
    run_sync,
    set_account,
    write_status,
)

FINISHED = datetime(2026, 11, 25, 5, 3, 7, tzinfo=UTC)
RUN_ID = "0f3c9a52-6a1e-4b8e-9d7c-2f1d1c3b4a5e"
GOOD_ARN = "arn:aws:iam::111111111111:role/PulseRead"
BAD_ARN = "arn:aws:iam::111111111111:user/not-a-role"
LOG = logging.getLogger("alerts")


def account(status: str, name: str = "Acme <prod> & co") -> CloudAccount:
    return CloudAccount(
        id="acc-1",
        org_id="org-1",
        name=name,
        provider="AWS",
        connection_type="COST_EXPLORER",
        role_arn=GOOD_ARN,
        external_id="ext-secret-42",
        status=status,
    )


@pytest.mark.parametrize(
    ("before", "error", "kind"),
    [
        ("active", "CloudAccount acc-1: AccessDenied", "failed"),
        ("pending", "CloudAccount acc-1: AccessDenied", "failed"),  # a new account's first sync
        ("error", "CloudAccount acc-1: AccessDenied", None),  # still broken: no second alert
        ("error", None, "recovered"),
        ("pending", None, None),  # the expected first success
        ("active", None, None),
    ],
)
def test_one_alert_per_change_of_state(before: str, error: str | None, kind: str | None) -> None:
    alert = alert_for(account(before), error, RUN_ID, FINISHED)
    assert (alert.kind if alert else None) == kind


def test_the_messages_name_account_organisation_cause_and_run_and_hold_no_secret() -> None:
    cause = "CloudAccount acc-1 (Acme): AssumeRole was denied (AccessDenied)"
    alert = alert_for(account("active"), cause, RUN_ID, FINISHED)
    assert alert is not None
    link = f"https://dagster.example.com/runs/{RUN_ID}"

    payload = webhook_payload(alert, link)
    mail = email_message(alert, link, "pulse@example.com", ["ops@example.com", "cto@example.com"])

    assert payload == {
        "text": "PULSE sync failed for AWS account Acme &lt;prod&gt; &amp; co (CloudAccount acc-1, "
        "organisation org-1): CloudAccount acc-1 (Acme): AssumeRole was denied (AccessDenied) "
        f"(<{link}|run 0f3c9a52>)",
        "event": "sync_failed",
        "account_id": "acc-1",
        "account_name": "Acme <prod> & co",
        "organisation_id": "org-1",
        "status": "error",
        "previous_status": "active",
        "cause": cause,
        "run_id": RUN_ID,
        "run_url": link,
        "finished_at": "2026-11-25T05:03:07+00:00",
    }
    assert mail["Subject"] == "PULSE sync failed: Acme <prod> & co (acc-1)"
    assert mail["To"] == "ops@example.com, cto@example.com"
    body = mail.get_content()
    for fact in (cause, "org-1", RUN_ID, link, "active -> error"):
        assert fact in body
    for secret in ("ext-secret-42", GOOD_ARN):
        assert secret not in body and secret not in str(payload)
    recovered = alert_for(account("error"), None, RUN_ID, FINISHED)
    assert recovered is not None
    assert webhook_payload(recovered, None)["text"] == (
        "PULSE sync recovered for AWS account Acme &lt;prod&gt; &amp; co (CloudAccount acc-1, "
        f"organisation org-1): costs are syncing again (run {RUN_ID})"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PULSE_ALERT_WEBHOOK_URL",
            "http://hooks.example.com/services/T0/B0/token",
            "PULSE_ALERT_WEBHOOK_URL is invalid: must be an https:// URL (http:// only on this "
            "machine)",
        ),
        (
            "PULSE_DAGSTER_UI_URL",
            "https://admin:hunter2@dagster.example.com",
            "PULSE_DAGSTER_UI_URL is invalid: must not hold a user name or password",
        ),
        ("PULSE_ALERT_SMTP_PORT", "99999", "PULSE_ALERT_SMTP_PORT is invalid: must be a TCP port"),
        ("PULSE_ALERT_SMTP_TO", "ops, cto@example.com", "PULSE_ALERT_SMTP_TO is invalid: must be"),
    ],
)
def test_invalid_alert_settings_stop_the_load_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as refused:
        defs()
    assert str(refused.value).startswith(message)
    assert "hunter2" not in str(refused.value) and "token" not in str(refused.value)


def test_the_smtp_password_shows_as_its_variable_never_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_ALERT_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("PULSE_ALERT_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("PULSE_ALERT_WEBHOOK_URL", "https://hooks.example.com/services/T/B/token")
    alerts = defs().resources["alerts"]
    assert isinstance(alerts, AlertChannels)
    fields = dict(alerts)
    assert fields["smtp_password"] == dg.EnvVar("PULSE_ALERT_SMTP_PASSWORD")
    assert fields["webhook_url"] == dg.EnvVar("PULSE_ALERT_WEBHOOK_URL")
    assert fields["smtp_port"] == 587 and fields["smtp_to"] == ""


@pytest.fixture
def mail() -> Iterator[MailReceiver]:
    with mail_receiver() as receiver:
        yield receiver


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


def test_no_password_is_sent_to_a_server_without_starttls(
    mail: MailReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    channels = ChannelSettings(
        smtp_host="127.0.0.1",
        smtp_port=mail.port,
        smtp_user="pulse",
        smtp_password="hunter2",
        smtp_from="pulse@example.com",
        smtp_to="ops@example.com",
    )
    alert = alert_for(account("active"), "CloudAccount acc-1: denied", RUN_ID, FINISHED)
    assert alert is not None
    assert send_alerts(channels, [alert], LOG) == 1
    assert mail.attempts == 0
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by e-mail: the SMTP server "
        "does not offer STARTTLS, and the password is never sent unencrypted"
    ]


def test_starttls_is_used_when_the_server_offers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosmtpd with a certificate for 127.0.0.1, trusted through SSL_CERT_FILE: the message
    arrives over the encrypted connection, the certificate checked against the host."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    receiver = MailReceiver()
    sessions: list[bool] = []
    original = receiver.handle_DATA

    async def handle_data(server: object, session: object, envelope: object) -> str:
        sessions.append(bool(getattr(session, "ssl", None)))
        return await original(server, session, envelope)

    receiver.handle_DATA = handle_data  # type: ignore[method-assign]
    port = free_port()
    controller = Controller(
        receiver, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
    )
    controller.start()
    try:
        channels = ChannelSettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from="pulse@example.com",
            smtp_to="ops@example.com",
        )
        alert = alert_for(account("error"), None, RUN_ID, FINISHED)
        assert alert is not None
        assert send_alerts(channels, [alert], LOG) == 0
    finally:
        controller.stop()
    assert [m["Subject"] for m in receiver.messages] == [
        "PULSE sync recovered: Acme <prod> & co (acc-1)"
    ]
    assert sessions == [True]


def warnings_of(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is None and entry.level >= 30
    ]


def test_status_runs_alert_on_failure_and_recovery_once_and_survive_failing_channels(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    webhook: WebhookReceiver,
    mail: MailReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in {
        "PULSE_ALERT_WEBHOOK_URL": webhook.url,
        "PULSE_DAGSTER_UI_URL": "http://127.0.0.1:3000/",
        "PULSE_ALERT_SMTP_HOST": "127.0.0.1",
        "PULSE_ALERT_SMTP_PORT": str(mail.port),
        "PULSE_ALERT_SMTP_FROM": "pulse@example.com",
        "PULSE_ALERT_SMTP_TO": "ops@example.com, cto@example.com",
    }.items():
        monkeypatch.setenv(variable, value)
    load_rates(dagster_instance)
    set_account(pulse, "acc-1", roleArn=BAD_ARN)

    failed = run_sync(dagster_instance, "acc-1", D1, D3)
    assert write_status(dagster_instance, [failed.run_id]).success
    [sent] = webhook.received
    assert sent["event"] == "sync_failed" and sent["account_id"] == "acc-1"
    assert sent["previous_status"] == "pending" and sent["run_id"] == failed.run_id
    assert sent["run_url"] == f"http://127.0.0.1:3000/runs/{failed.run_id}"
    assert sent["cause"] == account_status(pulse, "acc-1")["lastSyncError"]
    assert "malformed IAM role ARN" in sent["cause"]
    [email] = mail.messages
    assert email["Subject"] == "PULSE sync failed: org-1 production (acc-1)"
    assert email["X-Envelope-To"] == "ops@example.com, cto@example.com"
    assert sent["cause"] in email.get_content()

    # Failing again, and writing the same run twice: no second alert.
    again = run_sync(dagster_instance, "acc-1", D1, D3)
    assert write_status(dagster_instance, [again.run_id, failed.run_id]).success
    assert (len(webhook.received), len(mail.messages)) == (1, 1)

    set_account(pulse, "acc-1", roleArn=GOOD_ARN)
    queue_results("111111111111", [ce_page({D1: {EC2: ("1.5", "USD")}})])
    fixed = run_sync(dagster_instance, "acc-1", D1, D3)
    assert fixed.success
    assert write_status(dagster_instance, [fixed.run_id]).success
    assert [m["event"] for m in webhook.received] == ["sync_failed", "sync_recovered"]
    assert webhook.received[1]["cause"] is None and webhook.received[1]["run_id"] == fixed.run_id
    assert [m["Subject"] for m in mail.messages][1] == (
        "PULSE sync recovered: org-1 production (acc-1)"
    )

    # Both channels failing: the status is written all the same, each failure a warning.
    webhook.status, mail.refuse = 500, True
    set_account(pulse, "acc-2", roleArn="arn:aws:iam::222222222222:user/not-a-role")
    broken = run_sync(dagster_instance, "acc-2", D1, D3)
    status = write_status(dagster_instance, [broken.run_id])
    assert status.success
    assert account_status(pulse, "acc-2")["status"] == "error"
    assert (webhook.attempts, mail.attempts) == (3, 3)
    assert warnings_of(dagster_instance, status.run_id) == [
        "CloudAccount acc-2 (org-2 production): failed alert not sent by webhook: the webhook "
        "answered HTTP 500",
        "CloudAccount acc-2 (org-2 production): failed alert not sent by e-mail: the SMTP "
        "server refused it (554 5.7.1 refused by the test)",
    ]
    output = status.output_for_node("write_cloud_account_status")
    assert output == 1


def test_an_unreachable_webhook_is_a_warning_that_never_quotes_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/s3cr3t-token"  # nobody listens
    alert = alert_for(account("active"), "CloudAccount acc-1: denied", RUN_ID, FINISHED)
    assert alert is not None

    assert send_alerts(ChannelSettings(webhook_url=url), [alert], LOG) == 1

    [warning] = caplog.messages
    assert warning.startswith(
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by webhook: the webhook "
        "could not be reached ("
    )
    assert "s3cr3t-token" not in warning and "127.0.0.1" not in warning


TOKEN = "123456789:AAHs3cr3t-bot_token-0123456789abcdef"
CHAT = "-100200300"
SECRET_PATH = "/hooks/T0/B0/s3cr3t-token"
MARGIN = 0.6  # seconds beyond a deadline for the watchdog and thread switches on a busy machine


def failed(account_id: str = "acc-1", name: str = "Acme <prod> & co") -> Alert:
    before = dataclasses.replace(account("active", name), id=account_id)
    alert = alert_for(before, f"CloudAccount {account_id}: AssumeRole denied", RUN_ID, FINISHED)
    assert alert is not None
    return alert


def timed_send(settings: ChannelSettings, alerts: list[Alert]) -> tuple[int, float]:
    """How many messages were not delivered, and the seconds the whole sending took."""
    started = time.monotonic()
    not_delivered = send_alerts(settings, alerts, LOG)
    return not_delivered, time.monotonic() - started


def no_secret_in(text: str) -> bool:
    return TOKEN not in text and "s3cr3t" not in text and "hunter2" not in text


def test_a_webhook_that_trickles_one_byte_at_a_time_is_cut_at_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with http_peer(trickle(every=0.2)) as peer:
        settings = ChannelSettings(webhook_url=peer.url + SECRET_PATH, deadline_seconds=2)
        not_delivered, took = timed_send(settings, [failed()])
    assert not_delivered == 1
    assert 2 <= took < 2 + MARGIN
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by webhook: the webhook "
        "did not answer within 2 s"
    ]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_redirect_is_not_followed_and_not_delivered(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with http_peer() as peer:
        peer.answers = [redirect(f"{peer.url}/elsewhere", status)]
        not_delivered, _ = timed_send(
            ChannelSettings(webhook_url=peer.url + SECRET_PATH), [failed()]
        )
    assert not_delivered == 1
    [(method, path, body)] = peer.requests  # posted once; nothing sent to /elsewhere
    assert (method, path, body["event"]) == ("POST", SECRET_PATH, "sync_failed")
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by webhook: the webhook "
        f"answered HTTP {status}, a redirect, which is not followed"
    ]


@pytest.mark.parametrize(("status", "not_delivered"), [(200, 0), (500, 1)])
def test_a_100_mb_webhook_answer_is_not_read(
    status: int, not_delivered: int, caplog: pytest.LogCaptureFixture
) -> None:
    with http_peer(huge(status, 100 * 2**20)) as peer:
        tracemalloc.start()
        try:
            result, took = timed_send(
                ChannelSettings(webhook_url=peer.url + SECRET_PATH), [failed()]
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result == not_delivered
    assert peak < 2**20  # under 1 MB of Python memory for the whole send
    assert took < 2
    if status == 500:
        [warning] = caplog.messages
        assert warning.endswith(f"the webhook answered HTTP 500 ({'x' * 200})")
    else:
        assert caplog.messages == []


def test_an_smtp_server_that_greets_one_byte_at_a_time_is_cut_at_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with slow_smtp_greeting(every=0.2) as port:
        settings = ChannelSettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from="pulse@example.com",
            smtp_to="ops@example.com",
            deadline_seconds=2,
        )
        not_delivered, took = timed_send(settings, [failed()])
    assert not_delivered == 1
    assert 2 <= took < 2 + MARGIN
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by e-mail: the SMTP "
        "server did not finish within 2 s"
    ]


def telegram(peer: HttpPeer, deadline: int = 10) -> ChannelSettings:
    return ChannelSettings(
        telegram_bot_token=TOKEN,
        telegram_chat_id=CHAT,
        telegram_api_url=peer.url,
        dagster_ui_url="https://dagster.example.com",
        deadline_seconds=deadline,
    )


def test_telegram_gets_the_alert_as_a_message_to_the_chat() -> None:
    long_name = "Ünïcode 🚀 " * 1000  # 11,000 characters, 12,000 UTF-16 code units
    with http_peer(telegram_sent()) as peer:
        not_delivered, _ = timed_send(telegram(peer), [failed(), failed("acc-2", long_name)])
    assert not_delivered == 0
    [(method, path, first), (_, _, second)] = peer.requests
    assert (method, path) == ("POST", f"/bot{TOKEN}/sendMessage")
    assert first == {
        "chat_id": CHAT,
        "text": "PULSE sync failed for AWS account Acme <prod> & co (CloudAccount acc-1, "
        "organisation org-1): CloudAccount acc-1: AssumeRole denied\n\n"
        "Account:      Acme <prod> & co (CloudAccount acc-1)\n"
        "Organisation: org-1\n"
        "Status:       active -> error\n"
        "Cause:        CloudAccount acc-1: AssumeRole denied\n"
        f"Sync run:     {RUN_ID} (finished 2026-11-25 05:03:07 UTC)\n"
        f"Run page:     https://dagster.example.com/runs/{RUN_ID}",
    }
    text = second["text"]
    assert len(text.encode("utf-16-le")) // 2 <= 4096 and text.endswith("…")
    assert text.startswith("PULSE sync failed for AWS account Ünïcode 🚀 Ünïcode")


def test_telegram_429_is_honoured_when_its_retry_after_fits_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with http_peer(
        telegram_error(429, "Too Many Requests: retry after 1", retry_after=1), telegram_sent()
    ) as peer:
        not_delivered, took = timed_send(telegram(peer, deadline=3), [failed()])
    assert not_delivered == 0 and caplog.messages == []
    assert len(peer.requests) == 2 and peer.requests[0] == peer.requests[1]
    assert 1 <= took < 1 + MARGIN


def test_telegram_429_beyond_the_deadline_is_not_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with http_peer(
        telegram_error(429, "Too Many Requests: retry after 30", retry_after=30)
    ) as peer:
        not_delivered, took = timed_send(telegram(peer, deadline=2), [failed()])
    assert not_delivered == 1 and len(peer.requests) == 1
    assert took < MARGIN
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by Telegram: Telegram "
        "asked to wait 30 s (HTTP 429) and the channel's 2 s deadline does not allow another "
        "attempt"
    ]


def test_a_telegram_error_is_one_line_in_its_own_words_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = f"Bad Request: chat not found (/bot{TOKEN}/sendMessage)\n[ERROR] forged line"
    with http_peer(telegram_error(400, echo)) as peer:
        not_delivered, _ = timed_send(telegram(peer), [failed()])
    assert not_delivered == 1
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by Telegram: Telegram "
        "refused it (HTTP 400: Bad Request: chat not found (/bot***/sendMessage) [ERROR] forged "
        "line)"
    ]


def test_a_trickling_telegram_is_cut_at_its_deadline_and_never_named_by_its_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with http_peer(trickle(every=0.2)) as peer:
        not_delivered, took = timed_send(telegram(peer, deadline=1), [failed()])
    assert not_delivered == 1
    assert 1 <= took < 1 + MARGIN
    [warning] = caplog.messages
    assert warning.endswith("Telegram did not answer within 1 s") and no_secret_in(warning)


def test_a_channel_that_missed_its_deadline_is_not_tried_again_in_the_same_status_run(
    mail: MailReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = [failed(f"acc-{n}") for n in range(1, 6)]
    with http_peer(trickle(every=0.2)) as peer:
        settings = ChannelSettings(
            webhook_url=peer.url + SECRET_PATH,
            smtp_host="127.0.0.1",
            smtp_port=mail.port,
            smtp_from="pulse@example.com",
            smtp_to="ops@example.com",
            deadline_seconds=1,
        )
        not_delivered, took = timed_send(settings, alerts)
    assert not_delivered == 5 and len(peer.requests) == 1
    assert len(mail.messages) == 5  # the healthy channel gets every alert
    assert took < 1 + 2 * MARGIN
    assert caplog.messages == [
        "CloudAccount acc-1 (Acme <prod> & co): failed alert not sent by webhook: the webhook "
        "did not answer within 1 s",
        *(
            f"CloudAccount acc-{n} (Acme <prod> & co): failed alert not sent by webhook: not "
            "tried again: the webhook did not answer within 1 s earlier in this status run"
            for n in range(2, 6)
        ),
    ]


def slow_ok(seconds: float) -> Respond:
    """Answers 200, each time after `seconds`: slow, but within the deadline."""
    sent = telegram_sent()

    def answer(handler: BaseHTTPRequestHandler, stopped: threading.Event) -> None:
        stopped.wait(seconds)
        sent(handler, stopped)

    return answer


def test_all_the_alerts_of_one_status_run_take_at_most_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = [failed(f"acc-{n}") for n in range(1, 11)]
    with http_peer(slow_ok(0.7)) as peer:
        settings = ChannelSettings(
            webhook_url=peer.url + SECRET_PATH, deadline_seconds=5, run_budget_seconds=2
        )
        not_delivered, took = timed_send(settings, alerts)
    delivered = 10 - not_delivered
    assert took < 2 + MARGIN
    assert delivered in (2, 3) and len(peer.requests) == 3  # the third is cut at the budget
    cut, *not_tried = caplog.messages[delivered - 10 :]
    assert cut == (
        f"CloudAccount acc-{delivered + 1} (Acme <prod> & co): failed alert not sent by webhook: "
        "not finished when this status run's 2 s for alerting were spent"
    )
    assert not_tried == [
        f"CloudAccount acc-{n} (Acme <prod> & co): failed alert not sent by webhook: not tried: "
        "this status run's 2 s for alerting were spent"
        for n in range(delivered + 2, 11)
    ]


def test_ids_and_names_from_the_database_cannot_forge_log_lines(
    webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 500
    alert = failed("acc-1\n2026-11-25 05:03:07 INFO forged", "Acme\r\n\x1b[32mall good\u2028")
    assert send_alerts(ChannelSettings(webhook_url=webhook.url), [alert], LOG) == 1
    [warning] = caplog.messages
    assert warning == (
        "CloudAccount acc-1\\n2026-11-25 05:03:07 INFO forged (Acme\\r\\n\\x1b[32mall "
        "good\\u2028): failed alert not sent by webhook: the webhook answered HTTP 500"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PULSE_TELEGRAM_BOT_TOKEN",
            "123456789:AAHs3cr3t/../../evil?x=",
            "PULSE_TELEGRAM_BOT_TOKEN is invalid: must be a Telegram bot token as BotFather "
            "gives it",
        ),
        ("PULSE_TELEGRAM_CHAT_ID", "ops team", "PULSE_TELEGRAM_CHAT_ID is invalid: must be a"),
        (
            "PULSE_TELEGRAM_API_URL",
            "http://telegram.example.com",
            "PULSE_TELEGRAM_API_URL is invalid: must be an https:// URL (http:// only on this "
            "machine)",
        ),
        (
            "PULSE_ALERT_DEADLINE_SECONDS",
            "0",
            "PULSE_ALERT_DEADLINE_SECONDS is invalid: must be a whole number of seconds, at least 1",
        ),
        ("PULSE_ALERT_RUN_BUDGET_SECONDS", "soon", "PULSE_ALERT_RUN_BUDGET_SECONDS is invalid"),
    ],
)
def test_invalid_telegram_and_deadline_settings_stop_the_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as refused:
        defs()
    assert str(refused.value).startswith(message)
    assert "s3cr3t" not in str(refused.value)


def test_the_bot_token_shows_as_its_variable_never_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("PULSE_TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("PULSE_ALERT_DEADLINE_SECONDS", "5")
    alerts = defs().resources["alerts"]
    assert isinstance(alerts, AlertChannels)
    fields = dict(alerts)
    assert fields["telegram_bot_token"] == dg.EnvVar("PULSE_TELEGRAM_BOT_TOKEN")
    assert fields["telegram_chat_id"] == dg.EnvVar("PULSE_TELEGRAM_CHAT_ID")
    assert fields["telegram_api_url"] == "https://api.telegram.org"
    assert getattr(fields["deadline_seconds"], "env_var_name", None) == (
        "PULSE_ALERT_DEADLINE_SECONDS"
    )
    assert fields["run_budget_seconds"] == 60
    assert TOKEN not in repr(alerts)
    resolved = ChannelSettings(  # as a run hands the values to the core
        webhook_url="https://hooks.example.com/s3cr3t-token",
        smtp_password="hunter2",
        telegram_bot_token=TOKEN,
    )
    assert no_secret_in(repr(resolved))
