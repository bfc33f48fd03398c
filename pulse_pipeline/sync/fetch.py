"""Read an account, then download its window from Cost Explorer, page by page."""

from dataclasses import dataclass
from datetime import UTC, date, datetime

from pulse_pipeline.accounts import (
    AwsConnection,
    CloudAccount,
    SyncError,
    aws_account_id,
    connection_for,
    covering_account,
    shares_external_id,
)
from pulse_pipeline.cost_explorer import (
    Fetch,
    cost_and_usage_request,
    describe_aws_error,
    fetch_pages,
)
from pulse_pipeline.db import queries
from pulse_pipeline.sync.run import Database, SyncRun
from pulse_pipeline.sync_window import SyncWindow, resolve_window


@dataclass(frozen=True)
class SyncTarget:
    """The account to sync, and the oldest of its stored days still marked Estimated."""

    account: CloudAccount
    estimated_since: date | None


def sync_target(database: Database, account_id: str) -> SyncTarget:
    """Read the account before any AWS call; refuse a connection that must not sync: a duplicate
    in its organisation, or a role and external ID another organisation connected first."""
    with database.begin() as conn:
        account = queries.load_account(conn, account_id)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
        if account.status not in queries.SYNCABLE_STATUSES:
            raise SyncError(
                f"{account.label} is disconnected in PULSE (status {account.status!r}); "
                "reconnect it to sync it again"
            )
        accounts = queries.aws_cost_explorer_accounts(conn)
        estimated_since = queries.earliest_estimated_day(conn, account_id)
    if shares_external_id(account, accounts):
        raise SyncError(
            f"{account.label} uses the same role ARN and external ID as a connection in another "
            "organisation, so it could read that organisation's costs (the confused deputy the "
            "external ID exists to prevent); PULSE must issue this connection a new external "
            "ID, and the role's trust policy must require it"
        )
    connected = [other for other in accounts if other.status in queries.SYNCABLE_STATUSES]
    covering = covering_account(account, connected)
    if covering is not None:
        raise SyncError(
            f"{account.label} connects AWS account {aws_account_id(account.role_arn)}, which "
            f"CloudAccount {covering.id} ({covering.name}) of the same organisation "
            f"{_why_it_syncs(covering)}; disconnect or delete the connection you no longer use"
        )
    return SyncTarget(account, estimated_since)


def _why_it_syncs(covering: CloudAccount) -> str:
    if covering.last_synced_at is not None:
        return f"syncs (last synced successfully at {covering.last_synced_at:%Y-%m-%d %H:%M} UTC)"
    return "syncs (the newest connection; none has synced successfully yet)"


@dataclass(frozen=True)
class Download:
    """One account's Cost Explorer pages for its window, not yet stored."""

    account: CloudAccount
    window: SyncWindow
    connection: AwsConnection
    metric: str
    fetch: Fetch


def download(run: SyncRun, account_id: str) -> Download:
    """Read the account, then fetch its window from Cost Explorer, page by page.

    Thread-safe, so a batch can download the next account while the current one is written.
    """
    today = datetime.now(UTC).date()
    resolve_window(run.start_date, run.end_date, today)  # bad config fails before any read
    target = sync_target(run.database, account_id)
    window = resolve_window(run.start_date, run.end_date, today, target.estimated_since)
    connection = connection_for(target.account)
    request = cost_and_usage_request(window, run.metric)
    try:
        fetch = fetch_pages(lambda: run.cost_explorer(connection), request)
    except SyncError:
        raise
    except Exception as error:
        raise describe_aws_error(connection, "GetCostAndUsage", error) from None
    return Download(target.account, window, connection, run.metric, fetch)
