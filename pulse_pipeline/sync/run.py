"""What one run syncs: its accounts' window, settings and systems."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pulse_pipeline.aws.connection import AwsConnection
from pulse_pipeline.aws.cost_explorer import DEFAULT_MAX_PAGES, RequestCount
from pulse_pipeline.db.database import Database
from pulse_pipeline.sync_window import REVISABLE, WindowRequest


@dataclass(frozen=True)
class SyncRun:
    """One run's sync: its accounts' window, settings, systems, and which assets it makes.

    `window` is the run's requested days, checked once; `fetch` asks Cost Explorer and stores the
    raw pages (cost_explorer_raw); `write` converts pages to EUR CostRecords (daily_costs_eur):
    this run's pages, else the latest stored ones. `max_pages` caps each account's fetch;
    `window_rule` is PULSE_DEFAULT_WINDOW; `requests` collects every fetch's request count as it
    goes, failed fetches included, so the run can report what it paid.
    """

    run_id: str
    database: Database
    cost_explorer: Callable[[AwsConnection], Any]
    metric: str
    record_types: frozenset[str] | None
    window: WindowRequest
    fetch: bool
    write: bool
    max_pages: int = DEFAULT_MAX_PAGES
    window_rule: str = REVISABLE
    requests: list[RequestCount] = field(default_factory=list)

    def requests_total(self) -> RequestCount:
        """Every Cost Explorer request of the run so far, over all accounts and attempts."""
        return sum(self.requests, RequestCount())
