"""The PULSE app's "Test connection": assume the account's role and make the smallest Cost
Explorer call, one day on one page ($0.01). Nothing is stored and no CloudAccount changes."""

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.aws.connection import AwsConnection, connection_for, refuse_shared_external_id
from pulse_pipeline.aws.cost_explorer import describe_aws_error
from pulse_pipeline.aws.requests import cost_and_usage_request
from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.sync_window import SyncWindow


def probe_connection(
    database: Database,
    cost_explorer: Callable[[AwsConnection], Any],
    account_id: str,
    metric: str,
    today: date,
) -> dict[str, str]:
    """Assume the account's role (STS, free), then ask GetCostAndUsage for yesterday, the same
    request shape a sync sends, and read its first page only: one paid request ($0.01).

    Raises SyncError with the customer-facing cause: the trust policy or external ID
    (AccessDenied on AssumeRole), a role without `ce:GetCostAndUsage`, Cost Explorer not
    enabled, or a connection that must not be used (disconnected, confused deputy).
    """
    with database.begin() as conn:
        account = queries.load_account(conn, account_id)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
        accounts = queries.aws_cost_explorer_accounts(conn)
    if account.status not in queries.SYNCABLE_STATUSES:
        raise SyncError(
            f"{account.label} is disconnected in PULSE (status {account.status!r}); "
            "reconnect it first"
        )
    refuse_shared_external_id(account, accounts)
    connection = connection_for(account)
    client = cost_explorer(connection)  # AssumeRole; its failure is already a SyncError
    yesterday = today - timedelta(days=1)
    try:
        client.get_cost_and_usage(
            **cost_and_usage_request(SyncWindow(yesterday, yesterday), metric)
        )
    except Exception as error:
        raise describe_aws_error(connection, "GetCostAndUsage", error) from None
    return {
        "cloudAccountId": account.id,
        "awsAccountId": connection.aws_account_id,
        "assumeRole": "ok",
        "costExplorer": "ok",
    }
