"""Read an account, then download its window from Cost Explorer, page by page."""

import json
import threading
from dataclasses import dataclass
from typing import Any

from pulse_pipeline.accounts import CloudAccount, SyncError
from pulse_pipeline.aws.connection import (
    AwsConnection,
    aws_account_id,
    connection_for,
    covering_account,
    shares_external_id,
)
from pulse_pipeline.aws.cost_explorer import (
    Fetch,
    RequestCount,
    cost_and_usage_request,
    describe_aws_error,
    fetch_pages,
)
from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync_window import StoredDays, SyncWindow


@dataclass(frozen=True)
class SyncTarget:
    """The account to sync, and the days of it PULSE already holds."""

    account: CloudAccount
    stored: StoredDays


class Connections:
    """Every AWS connection in PULSE, read once per run when the first account needs it: what
    each account of the run is compared with (a duplicate in its organisation, a role and
    external ID another organisation connected first). A failed read fails that account only;
    the next account reads again. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._accounts: list[CloudAccount] | None = None

    def all(self) -> list[CloudAccount]:
        with self._lock:
            if self._accounts is None:
                with self._database.begin() as conn:
                    self._accounts = queries.aws_cost_explorer_accounts(conn)
            return self._accounts


def sync_target(database: Database, account_id: str, peers: Connections) -> SyncTarget:
    """Read the account before any AWS call; refuse a connection that must not sync: a duplicate
    in its organisation, or a role and external ID another organisation connected first
    (among `peers`, the run's connections)."""
    with database.begin() as conn:
        account = queries.load_account(conn, account_id)
        if account is None:
            raise SyncError(f"CloudAccount {account_id} does not exist in PULSE (deleted?)")
        if account.status not in queries.SYNCABLE_STATUSES:
            raise SyncError(
                f"{account.label} is disconnected in PULSE (status {account.status!r}); "
                "reconnect it to sync it again"
            )
        stored = queries.stored_days(conn, account_id)
    others = [other for other in peers.all() if other.id != account_id]
    refuse_shared_external_id(account, others)
    connected = [other for other in others if other.status in queries.SYNCABLE_STATUSES]
    covering = covering_account(account, connected)
    if covering is not None:
        raise SyncError(
            f"{account.label} connects AWS account {aws_account_id(account.role_arn)}, which "
            f"CloudAccount {covering.id} ({covering.name}) of the same organisation "
            f"{_why_it_syncs(covering)}; disconnect or delete the connection you no longer use"
        )
    return SyncTarget(account, stored)


def refuse_shared_external_id(account: CloudAccount, accounts: list[CloudAccount]) -> None:
    """Raise SyncError if an older connection of another organisation uses the same role ARN
    and external ID (the confused deputy)."""
    if shares_external_id(account, accounts):
        raise SyncError(
            f"{account.label} uses the same role ARN and external ID as a connection in another "
            "organisation, so it could read that organisation's costs (the confused deputy the "
            "external ID exists to prevent); PULSE must issue this connection a new external "
            "ID, and the role's trust policy must require it"
        )


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


def download(run: SyncRun, account_id: str, peers: Connections) -> Download:
    """Read the account, then fetch its window from Cost Explorer, page by page.

    Thread-safe, so a batch can download the next account while the current one is written.
    """
    target = sync_target(run.database, account_id, peers)
    window = run.window.for_account(target.stored, run.window_rule)
    connection = connection_for(target.account)
    request = cost_and_usage_request(window, run.metric)
    requests = RequestCount()
    run.requests.append(requests)  # counted as the pages arrive, even if the fetch fails
    try:
        fetch = fetch_pages(
            lambda: as_sent(run.cost_explorer(connection)),
            request,
            max_pages=run.max_pages,
            requests=requests,
        )
    except SyncError:
        raise
    except Exception as error:
        raise describe_aws_error(connection, "GetCostAndUsage", error) from None
    return Download(target.account, window, connection, run.metric, fetch)


def keep_as_sent(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's `before-parse` hook: the answer becomes Cost Explorer's JSON exactly as sent.

    botocore reshapes a response to its model without checking it: a null member vanishes, a
    string where a list belongs becomes the list of its characters (Keys "EC2" would be a
    service "E" of record type "C"), and some wrong types crash its parser. The raw page is
    stored and checked (`normalise.cost_lines`) as sent instead; botocore parses an empty
    object and adds only its ResponseMetadata.
    """
    if response_dict.get("status_code") != 200:
        return
    try:
        document = json.loads(response_dict["body"])
    except (KeyError, TypeError, ValueError):
        return  # botocore's own parser says what is wrong with it
    if isinstance(document, dict):
        document.pop("ResponseMetadata", None)  # botocore's own, with its retry count
        customized_response_dict.update(document)
        response_dict["body"] = b"{}"


def as_sent(client: Any) -> Any:
    """A Cost Explorer client whose GetCostAndUsage answers are kept as sent (see keep_as_sent)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register("before-parse.cost-explorer.GetCostAndUsage", keep_as_sent)
    return client
