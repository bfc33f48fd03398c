"""Failure and recovery alerts: which changes of state send one (`messages`), the channels
(`webhook`, `smtp`, `telegram`), the deadline they share (`delivery`), and sending one status
run's alerts to all of them in bounded time (`channels`)."""

from pulse_pipeline.alerts.channels import ChannelSettings, send_alerts, split_addresses
from pulse_pipeline.alerts.delivery import AlertNotDelivered, Deadline, MissedDeadline
from pulse_pipeline.alerts.messages import (
    Alert,
    alert_for,
    email_message,
    run_link,
    telegram_text,
    webhook_payload,
)

__all__ = [
    "Alert",
    "AlertNotDelivered",
    "ChannelSettings",
    "Deadline",
    "MissedDeadline",
    "alert_for",
    "email_message",
    "run_link",
    "send_alerts",
    "split_addresses",
    "telegram_text",
    "webhook_payload",
]
