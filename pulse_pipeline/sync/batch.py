"""The accounts of one run, each synced in isolation, with one in-run retry of transient failures."""

import logging
import resource
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pulse_pipeline.reconcile import CheckOutcome
from pulse_pipeline.sync.failures import AccountFailure, BatchFailure, failing_cleanly
from pulse_pipeline.sync.fetch import Connections, Download, download
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync.store import store
from pulse_pipeline.sync.write import write

# In a batch, a transient failure is retried once inside the run, so the accounts that
# succeeded are not fetched again.
BATCH_RETRIES = 1


@dataclass(frozen=True)
class Synced:
    """One asset of one account is done: `raw` (cost_explorer_raw) or `costs` (daily_costs_eur)."""

    asset: Literal["raw", "costs"]
    account_id: str
    metadata: dict[str, Any]
    checks: list[CheckOutcome] = field(default_factory=list)


def peak_memory_mb() -> float:
    """The process's peak resident memory so far (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds() -> float:
    """The CPU time of the run's process so far, every thread, start-up included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)


def sync_account(
    run: SyncRun,
    account_id: str,
    log: logging.Logger,
    peers: Connections,
    prefetched: "Future[Download] | None" = None,
) -> Iterator[Synced]:
    """The run's assets for one account. Raises AccountFailure naming the account."""
    fetched = None
    if run.fetch:
        with failing_cleanly(account_id):
            pages = prefetched or download(run, account_id, peers)
            if isinstance(pages, Future):
                pages = pages.result()
            raw, fetched = store(run, pages, log)
        yield Synced("raw", account_id, {**raw, "run_peak_memory_mb": peak_memory_mb()})
    if run.write:
        with failing_cleanly(account_id):
            costs, outcomes = write(run, account_id, fetched)
        process = {"run_peak_memory_mb": peak_memory_mb(), "run_cpu_seconds": cpu_seconds()}
        yield Synced("costs", account_id, {**costs, **process}, outcomes)


def sync_accounts(
    run: SyncRun, accounts: Sequence[str], log: logging.Logger, retry_delay: float
) -> Iterator[Synced]:
    """Sync the accounts one after another, each in isolation, yielding each asset as it is done.

    One account: its AccountFailure is raised as is (the caller's retry policy decides). Several:
    a failed account does not stop the others; those whose failure is transient are retried once
    after `retry_delay` seconds at the end of the batch, then BatchFailure names every account
    still failed. While one account is written, the next one's pages download in a second
    thread, so a run keeps one Cost Explorer request in flight.
    """
    peers = Connections(run.database)
    if len(accounts) == 1:
        yield from sync_account(run, accounts[0], log, peers)
        return
    failures: dict[str, AccountFailure] = {}
    pending = list(accounts)
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cost-explorer")

    def start_download(position: int) -> "Future[Download] | None":
        if not run.fetch or position >= len(pending):
            return None
        return prefetch.submit(download, run, pending[position], peers)

    try:
        for attempt in range(1 + BATCH_RETRIES):
            if attempt:
                log.info(f"retrying {len(pending)} accounts whose failure looked transient")
                time.sleep(retry_delay)
            upcoming = start_download(0)
            for number, account_id in enumerate(pending, 1):
                current, upcoming = upcoming, start_download(number)
                try:
                    yield from sync_account(run, account_id, log, peers, current)
                except AccountFailure as failure:
                    failures[account_id] = failure
                    log.error(failure.cause)
                else:
                    failures.pop(account_id, None)
                log.info(f"{number}/{len(pending)} accounts done, {len(failures)} failed so far")
            pending = [a for a in pending if a in failures and failures[a].retryable]
            if not pending:
                break
    finally:
        prefetch.shutdown(cancel_futures=True)
    if failures:
        raise BatchFailure(len(accounts), failures)
