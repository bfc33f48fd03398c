"""Failure and recovery alerts: which changes of state send one, what the messages say, and the
channels (a webhook and a real SMTP server on loopback) driven by real status runs."""

import logging
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.alerts import (
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
    MailReceiver,
    WebhookReceiver,
    mail_receiver,
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
