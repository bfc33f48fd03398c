"""Failure and recovery alerts: which status changes are sent, and the messages for each channel.

An alert goes out when an account's sync starts failing (`pending` or `active` → `error`) and
when it works again (`error` → `active`); an account that stays broken or stays healthy sends
nothing. Messages carry the account, its organisation, the `lastSyncError` sentence PULSE shows
(already free of secrets) and the sync run; never a role ARN, an external ID or a setting.
"""

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal

from pulse_pipeline.accounts import CloudAccount

AlertKind = Literal["failed", "recovered"]
# Implicit TLS (SMTPS) instead of STARTTLS on this port.
SMTPS_PORT = 465


class AlertNotDelivered(Exception):
    """A channel did not take an alert; the message says why in words that hold no secret."""


@dataclass(frozen=True)
class Alert:
    """One account's change of sync state, as written to PULSE by one status run."""

    kind: AlertKind
    account: CloudAccount
    previous_status: str | None
    cause: str | None  # the lastSyncError written; None on recovery
    run_id: str  # the sync run whose outcome changed the state
    finished_at: datetime


def alert_for(
    before: CloudAccount, error: str | None, run_id: str, finished_at: datetime
) -> Alert | None:
    """The alert for writing this outcome over the account's status before, if the state changes.

    `pending` → `error` is a failure too: the first sync of a newly connected account failed,
    which is exactly when the customer's setup needs a look. `pending` → `active` is the
    expected first success and sends nothing.
    """
    if error is not None and before.status != "error":
        return Alert("failed", before, before.status, error, run_id, finished_at)
    if error is None and before.status == "error":
        return Alert("recovered", before, before.status, None, run_id, finished_at)
    return None


def run_link(dagster_ui_url: str, run_id: str) -> str | None:
    """The run's page in the Dagster UI, or None when no UI address is configured."""
    return f"{dagster_ui_url.rstrip('/')}/runs/{run_id}" if dagster_ui_url else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _slack_escape(text: str) -> str:
    """Slack reads `<...>` as links and mentions; `&`, `<`, `>` are escaped as it asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(alert: Alert) -> str:
    """One sentence: what happened to which account of which organisation."""
    account = alert.account
    who = (
        f"AWS account {_one_line(account.name)} (CloudAccount {account.id}, "
        f"organisation {account.org_id})"
    )
    if alert.kind == "failed":
        return f"PULSE sync failed for {who}: {alert.cause}"
    return f"PULSE sync recovered for {who}: costs are syncing again"


def webhook_payload(alert: Alert, link: str | None) -> dict[str, Any]:
    """A Slack-compatible `text`, plus the same facts as fields for other receivers."""
    run = f"<{link}|run {alert.run_id[:8]}>" if link else f"run {alert.run_id}"
    return {
        "text": f"{_slack_escape(summary(alert))} ({run})",
        "event": f"sync_{alert.kind}",
        "account_id": alert.account.id,
        "account_name": alert.account.name,
        "organisation_id": alert.account.org_id,
        "status": "error" if alert.kind == "failed" else "active",
        "previous_status": alert.previous_status,
        "cause": alert.cause,
        "run_id": alert.run_id,
        "run_url": link,
        "finished_at": alert.finished_at.isoformat(),
    }


def email_message(
    alert: Alert, link: str | None, sender: str, recipients: list[str]
) -> EmailMessage:
    """A plain-text e-mail with the same facts as the webhook's fields."""
    account = alert.account
    message = EmailMessage()
    verb = "failed" if alert.kind == "failed" else "recovered"
    message["Subject"] = f"PULSE sync {verb}: {_one_line(account.name)} ({account.id})"[:200]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    lines = [
        summary(alert),
        "",
        f"Account:      {_one_line(account.name)} (CloudAccount {account.id})",
        f"Organisation: {account.org_id}",
        f"Status:       {alert.previous_status} -> {'error' if verb == 'failed' else 'active'}",
    ]
    if alert.cause:
        lines.append(f"Cause:        {alert.cause}")
    lines += [
        f"Sync run:     {alert.run_id} (finished {alert.finished_at:%Y-%m-%d %H:%M:%S} UTC)",
        *([f"Run page:     {link}"] if link else []),
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


def post_webhook(url: str, payload: dict[str, Any], timeout: float) -> None:
    """POST the payload as JSON; any answer but 2xx raises AlertNotDelivered."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise AlertNotDelivered(f"the webhook answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AlertNotDelivered(f"the webhook could not be reached ({reason})") from None


def send_email(
    message: EmailMessage,
    host: str,
    port: int,
    user: str,
    password: str,
    timeout: float,
) -> None:
    """Send over SMTP: STARTTLS whenever the server offers it (implicit TLS on port 465), and a
    login only over an encrypted connection. Raises AlertNotDelivered saying why."""
    context = ssl.create_default_context()
    try:
        if port == SMTPS_PORT:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            encrypted = port == SMTPS_PORT
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if user:
                if not encrypted:
                    raise AlertNotDelivered(
                        "the SMTP server does not offer STARTTLS, and the password is never "
                        "sent unencrypted"
                    )
                smtp.login(user, password)
            smtp.send_message(message)
    except smtplib.SMTPResponseException as error:
        text = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else error.smtp_error
        )
        raise AlertNotDelivered(f"the SMTP server refused it ({error.smtp_code} {text})") from None
    except smtplib.SMTPRecipientsRefused as error:
        codes = sorted({code for code, _ in error.recipients.values()})
        raise AlertNotDelivered(f"the SMTP server refused every recipient ({codes})") from None
    except (smtplib.SMTPException, OSError) as error:
        raise AlertNotDelivered(
            f"the SMTP server could not be used ({type(error).__name__}: {error})"
        ) from None
