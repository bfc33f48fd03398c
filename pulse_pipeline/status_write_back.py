"""Writing finished sync runs' outcomes to PULSE's CloudAccount rows, then alerting on every
account whose sync started failing or works again."""

import logging
from dataclasses import dataclass

from pulse_pipeline.accounts import CloudAccount
from pulse_pipeline.alerts import Alert, ChannelSettings, alert_for, send_alerts
from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.printable import printable
from pulse_pipeline.sync_status import SyncOutcome, redact


@dataclass(frozen=True)
class WriteBack:
    """What one status write-back did."""

    accounts_updated: int
    errors: int  # outcomes that were failures
    alerts: int
    alerts_not_delivered: int  # (alert, channel) messages a channel did not take


def write_statuses(
    database: Database, outcomes: list[SyncOutcome], log: logging.Logger
) -> tuple[int, list[Alert]]:
    """Write the outcomes oldest first in one transaction, each account's row locked, so the
    newest run of an account has the last word; an outcome older than the account's last
    success is left out, so writing the same runs again changes nothing. Returns how many
    rows were updated and the alert of each account whose state changed."""
    written = 0
    before: dict[str, CloudAccount] = {}
    last_written: dict[str, tuple[SyncOutcome, str | None]] = {}
    with database.begin() as conn:
        for outcome in sorted(outcomes, key=lambda outcome: outcome.finished_at):
            account = queries.load_account(conn, outcome.account_id, lock=True)
            if account is None:
                log.warning(f"CloudAccount {printable(outcome.account_id)} is no longer in PULSE")
                continue
            label = printable(account.label)
            before.setdefault(account.id, account)
            synced = account.last_synced_at
            if synced is not None and outcome.finished_at.replace(tzinfo=None) <= synced:
                log.info(f"{label} has synced since run {printable(outcome.run_id)}")
                continue
            error = redact(outcome.error, [account.external_id]) if outcome.error else None
            if queries.record_sync_result(conn, account.id, error, outcome.finished_at):
                written += 1
                last_written[account.id] = (outcome, error)
                # The cause already names the account (redact keeps it on one line).
                log.info(f"error: {error}" if error else f"{label}: active")
            else:
                log.info(f"{label} is {printable(str(account.status))} in PULSE; left as it is")
    changes = [
        alert
        for account_id, (outcome, error) in last_written.items()
        if (alert := alert_for(before[account_id], error, outcome.run_id, outcome.finished_at))
    ]
    return written, changes


def write_back(
    database: Database,
    outcomes: list[SyncOutcome],
    channels: ChannelSettings,
    log: logging.Logger,
) -> WriteBack:
    """Write the outcomes (see `write_statuses`), then send the alerts after the commit, one
    per account whose state changed and channel; a channel that fails is a warning, never a
    failure of the write-back. Takes at most the alerting budget beyond the writing."""
    written, alerts = write_statuses(database, outcomes, log)
    return WriteBack(
        accounts_updated=written,
        errors=sum(1 for outcome in outcomes if outcome.error),
        alerts=len(alerts),
        alerts_not_delivered=send_alerts(channels, alerts, log),
    )
