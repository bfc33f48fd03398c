"""Which changes of an account's sync state send an alert, and the message for each channel.

An alert goes out when an account's sync starts failing (`pending` or `active` → `error`) and
when it works again (`error` → `active`); an account that stays broken or stays healthy sends
nothing. Messages carry the account, its organisation, the `lastSyncError` sentence PULSE shows
(already free of secrets) and the sync run; never a role ARN, an external ID or a setting.
"""

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.printable import printable

AlertKind = Literal["failed", "recovered"]
# sendMessage takes 1-4,096 characters of text (counted in UTF-16 code units, as JSON sends them).
TELEGRAM_MAX_TEXT = 4096


@dataclass(frozen=True)
class Alert:
    """One account's change of sync state, as written to PULSE by one status run."""

    kind: AlertKind
    account: CloudAccount
    previous_status: str | None
    cause: str | None  # the lastSyncError written; None on recovery
    run_id: str  # the sync run whose outcome changed the state
    finished_at: datetime

    @property
    def label(self) -> str:
        """The account as a log line may name it: one line, control characters escaped."""
        return printable(self.account.label)


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
    return printable(" ".join(text.split()))


def _slack_escape(text: str) -> str:
    """Slack reads `<...>` as links and mentions; `&`, `<`, `>` are escaped as it asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(alert: Alert) -> str:
    """One sentence: what happened to which account of which organisation."""
    account = alert.account
    who = (
        f"AWS account {_one_line(account.name)} (CloudAccount {_one_line(account.id)}, "
        f"organisation {_one_line(account.org_id)})"
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


def _details(alert: Alert, link: str | None) -> list[str]:
    """The facts beneath the summary, one per line, for e-mail and Telegram."""
    account = alert.account
    lines = [
        f"Account:      {_one_line(account.name)} (CloudAccount {_one_line(account.id)})",
        f"Organisation: {_one_line(account.org_id)}",
        f"Status:       {alert.previous_status} -> "
        + ("error" if alert.kind == "failed" else "active"),
    ]
    if alert.cause:
        lines.append(f"Cause:        {alert.cause}")
    lines.append(
        f"Sync run:     {alert.run_id} (finished {alert.finished_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    if link:
        lines.append(f"Run page:     {link}")
    return lines


def email_message(
    alert: Alert, link: str | None, sender: str, recipients: list[str]
) -> EmailMessage:
    """A plain-text e-mail with the same facts as the webhook's fields."""
    account = alert.account
    message = EmailMessage()
    verb = "failed" if alert.kind == "failed" else "recovered"
    subject = f"PULSE sync {verb}: {_one_line(account.name)} ({_one_line(account.id)})"
    message["Subject"] = subject[:200]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content("\n".join([summary(alert), "", *_details(alert, link)]) + "\n")
    return message


def telegram_text(alert: Alert, link: str | None) -> str:
    """Plain text (no parse mode, so nothing needs escaping) within sendMessage's 4,096-character
    limit: a long account name or cause is cut, marked with an ellipsis."""
    text = "\n".join([summary(alert), "", *_details(alert, link)])
    if _utf16_length(text) <= TELEGRAM_MAX_TEXT:
        return text
    while _utf16_length(text) > TELEGRAM_MAX_TEXT - 1:
        text = text[: len(text) - max(1, (_utf16_length(text) - TELEGRAM_MAX_TEXT + 2) // 2)]
    return text + "…"


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
