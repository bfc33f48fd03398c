"""Sending one status run's alerts to every configured channel, within bounded time.

Each channel has a total deadline per alert (connect, send and answer: `deadline_seconds`), and
all the alerts of one status run share one budget (`run_budget_seconds`), so that a slow peer
cannot hold back the status write-backs queued behind this one. A channel that misses its
deadline is not tried again in the same status run; alerts left when the budget is spent are
not sent. Each alert a channel did not take is one warning naming the account and the cause,
never a URL, token or password.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pulse_pipeline.alerts.delivery import AlertNotDelivered, Deadline, MissedDeadline
from pulse_pipeline.alerts.messages import (
    Alert,
    email_message,
    run_link,
    telegram_text,
    webhook_payload,
)
from pulse_pipeline.alerts.smtp import send_email
from pulse_pipeline.alerts.telegram import TELEGRAM_API_URL, send_telegram
from pulse_pipeline.alerts.webhook import post_webhook
from pulse_pipeline.printable import printable

DEFAULT_DEADLINE_SECONDS = 10
DEFAULT_RUN_BUDGET_SECONDS = 60


@dataclass(frozen=True)
class ChannelSettings:
    """Where alerts go; an empty webhook URL, SMTP host or bot token leaves that channel out.
    The credentials (the webhook's URL, the password, the token) never appear in its repr."""

    webhook_url: str = field(default="", repr=False)
    dagster_ui_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = ""
    smtp_to: str = ""
    telegram_bot_token: str = field(default="", repr=False)
    telegram_chat_id: str = ""
    telegram_api_url: str = TELEGRAM_API_URL
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    run_budget_seconds: float = DEFAULT_RUN_BUDGET_SECONDS

    def secrets(self) -> list[str]:
        """Values no warning may hold: the webhook's URL and path, the password, the token."""
        path = self.webhook_url.split("://", 1)[-1].partition("/")[2]
        values = [self.webhook_url, path, self.smtp_password, self.telegram_bot_token]
        return sorted((value for value in values if len(value) >= 4), key=len, reverse=True)


def split_addresses(value: str) -> list[str]:
    """The addresses of a comma-separated list, blanks left out."""
    return [address.strip() for address in value.split(",") if address.strip()]


Deliver = Callable[[Alert, str | None, Deadline], None]


def _channels(settings: ChannelSettings) -> list[tuple[str, Deliver]]:
    """The configured channels, by the name a warning gives them."""

    def webhook(alert: Alert, link: str | None, deadline: Deadline) -> None:
        post_webhook(settings.webhook_url, webhook_payload(alert, link), deadline)

    def email(alert: Alert, link: str | None, deadline: Deadline) -> None:
        recipients = split_addresses(settings.smtp_to)
        if not recipients or not settings.smtp_from:
            raise AlertNotDelivered("PULSE_ALERT_SMTP_FROM and PULSE_ALERT_SMTP_TO must be set")
        message = email_message(alert, link, settings.smtp_from, recipients)
        send_email(
            message,
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_user,
            settings.smtp_password,
            deadline,
        )

    def telegram(alert: Alert, link: str | None, deadline: Deadline) -> None:
        if not settings.telegram_chat_id:
            raise AlertNotDelivered("PULSE_TELEGRAM_CHAT_ID must be set")
        send_telegram(
            settings.telegram_api_url,
            settings.telegram_bot_token,
            settings.telegram_chat_id,
            telegram_text(alert, link),
            deadline,
        )

    channels: list[tuple[str, Deliver]] = []
    if settings.webhook_url:
        channels.append(("webhook", webhook))
    if settings.smtp_host:
        channels.append(("e-mail", email))
    if settings.telegram_bot_token:
        channels.append(("Telegram", telegram))
    return channels


def send_alerts(settings: ChannelSettings, alerts: list[Alert], log: logging.Logger) -> int:
    """Send each alert to every configured channel, within the deadline per channel and the
    budget of the whole run; returns how many (alert, channel) messages were not delivered,
    each logged as a warning. Nothing a channel raises reaches the caller."""
    budget = Deadline(settings.run_budget_seconds)
    channels = _channels(settings)
    missed: dict[str, str] = {}  # channel -> why it is not tried again in this run
    spent = f"this status run's {settings.run_budget_seconds:g} s for alerting were spent"
    failed = 0
    for alert in alerts:
        link = run_link(settings.dagster_ui_url, alert.run_id)
        for name, deliver in channels:
            if name in missed:
                reason = f"not tried again: {missed[name]} earlier in this status run"
            elif budget.left() <= 0:
                reason = f"not tried: {spent}"
            else:
                cut_by_budget = budget.left() < settings.deadline_seconds
                deadline = Deadline(min(settings.deadline_seconds, budget.left()))
                outcome = _deliver(deliver, alert, link, deadline)
                if outcome is None:
                    continue
                reason, deadline_missed = outcome
                if deadline_missed and cut_by_budget:
                    reason = f"not finished when {spent}"
                elif deadline_missed:
                    missed[name] = reason
            failed += 1
            for secret in settings.secrets():
                reason = reason.replace(secret, "***")
            log.warning(f"{alert.label}: {alert.kind} alert not sent by {name}: {reason}")
    return failed


def _deliver(
    deliver: Deliver, alert: Alert, link: str | None, deadline: Deadline
) -> tuple[str, bool] | None:
    """None once delivered, else why not (on one line) and whether the deadline passed."""
    try:
        deliver(alert, link, deadline)
    except Exception as error:
        reason = str(error)
        if not isinstance(error, AlertNotDelivered):  # a defect: say what it was
            reason = f"{type(error).__name__}: {error}"
        return printable(" ".join(reason.split())), isinstance(error, MissedDeadline)
    return None
