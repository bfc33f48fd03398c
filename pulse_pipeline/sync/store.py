"""cost_explorer_raw for one account: validate the downloaded pages and store them as received."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pulse_pipeline.aws.pages import cost_lines
from pulse_pipeline.costs import (
    CostLine,
    MalformedPayloadError,
    StoredPage,
    check_storable,
    may_hold_unstorable_text,
    totals_by_currency,
)
from pulse_pipeline.db import queries
from pulse_pipeline.sync.fetch import Download
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync_window import SyncWindow


@dataclass(frozen=True)
class Fetched:
    """The pages a run just stored for an account, and their cost lines."""

    window: SyncWindow
    pages: list[StoredPage]
    lines: list[CostLine]


def store(run: SyncRun, download: Download, log: logging.Logger) -> tuple[dict[str, Any], Fetched]:
    """Check the pages, then store them in one transaction (a rejected payload stores nothing);
    return the materialization's metadata and what was stored."""
    account, window, fetch = download.account, download.window, download.fetch
    if fetch.credential_renewals or fetch.restarts:
        log.warning(
            f"{account.label}: credentials renewed {fetch.credential_renewals} times, "
            f"fetch restarted {fetch.restarts} times"
        )
    # Checked before any write: a page PostgreSQL cannot hold must not reach it, since its
    # refusal would look like a database fault. A suspect page is read first, so that a service
    # name or record type it cannot hold is named as such.
    own = download.connection.aws_account_id
    received = [StoredPage(page.number, page.request, page.response, own) for page in fetch.pages]
    if may_hold_unstorable_text(received):
        cost_lines(received, window)
        check_storable(received)
    with run.database.begin() as conn:
        stored = queries.insert_pages(
            conn,
            account,
            download.connection.aws_account_id,
            run.run_id,
            window,
            fetch.pages,
            fetched_at=datetime.now(UTC),
        )
        # Read from the stored pages, so each line names its page's row; a malformed payload
        # raises here and rolls the pages back with it.
        lines = cost_lines(stored, window)
        known = queries.stored_currencies(conn)
        unknown = sorted({line.currency for line in lines} - known)
        if unknown and known != {"EUR"}:
            raise MalformedPayloadError(
                f"no ECB euro reference rate exists for {', '.join(unknown)}"
            )
    totals = totals_by_currency(lines)
    metadata = {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "days": window.days,
        "pages": len(fetch.pages),
        "requests": fetch.requests.made,
        "paid_requests": fetch.requests.paid,
        "cost_explorer_usd": float(fetch.requests.usd),
        "credential_renewals": fetch.credential_renewals,
        "groups": len(lines),
        "metric": download.metric,
        "estimated_days": len({line.day for line in lines if line.estimated}),
        "amounts_rounded": sum(1 for line in lines if line.reported_amount is not None),
        "total_original_currency": ", ".join(
            f"{amount} {currency}" for currency, amount in sorted(totals.items())
        )
        or "no costs",
        "aws_account_id": download.connection.aws_account_id,
    }
    return metadata, Fetched(window, stored, lines)
