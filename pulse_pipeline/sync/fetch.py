"""Read an account, then download its window from Cost Explorer, page by page."""

import threading
from dataclasses import dataclass

from pulse_pipeline.accounts import CloudAccount, SyncError
from pulse_pipeline.aws.connection import (
    AwsConnection,
    connection_for,
    refuse_duplicate,
    refuse_shared_external_id,
)
from pulse_pipeline.aws.cost_explorer import Fetch, RequestCount, fetch_window
from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.sync.payers import refuse_covered_member
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
    """Read the account before any AWS call; refuse a connection that must not sync: a member
    account whose costs a payer connection of its organisation holds, a duplicate in its
    organisation, or a role and external ID another organisation connected first (among
    `peers`, the run's connections)."""
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
        refuse_covered_member(conn, account)
    others = [other for other in peers.all() if other.id != account_id]
    refuse_shared_external_id(account, others)
    connected = [other for other in others if other.status in queries.SYNCABLE_STATUSES]
    refuse_duplicate(account, connected)
    return SyncTarget(account, stored)


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
    requests = RequestCount()
    run.requests.append(requests)  # counted as the pages arrive, even if the fetch fails
    fetch = fetch_window(
        run.cost_explorer,
        connection,
        window,
        run.metric,
        max_pages=run.max_pages,
        requests=requests,
    )
    return Download(target.account, window, connection, run.metric, fetch)
