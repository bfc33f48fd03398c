"""The daily sync of N accounts end to end through Dagster, as production runs it.

A fresh PULSE database and a fresh Dagster storage database on the local PostgreSQL; the
instance configuration is the repository's production `dagster.yaml` (queued run coordinator,
run and pool limits) with only the storage pointed at the fresh database. `dagster-daemon run`
launches the runs and `dagster-webserver` runs beside it, each in its own process group. The
05:00 UTC tick of `daily_aws_cost_sync` is fired the way the UI's "Test schedule" does it: the
GraphQL `scheduleDryRun` evaluates the tick and `launchMultipleRuns` submits its run requests
(config, tags), so the runs wait in the instance's run queue for the daemon as on a normal
morning. Cost Explorer is the simulated AWS with a latency per request.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import median
from typing import Any

import dagster as dg
import yaml
from sqlalchemy import func, insert, select

from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cloud_account, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.partitions import CLOUD_ACCOUNTS, accounts_in_run
from pulse_pipeline.defs.schedules import daily_aws_cost_sync
from pulse_pipeline_dev.postgres import fresh_database
from pulse_pipeline_dev.processes import BIN, LOCATION, ROOT, WORKSPACE, daemon, graphql, webserver
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings

REPOSITORY = "__repository__"  # the repository a `Definitions` object becomes
BACKFILL_ACCOUNT = "bench-backfill"
BACKFILL_AWS_ACCOUNT = "999999999999"


@dataclass(frozen=True)
class RunFigures:
    """One sync run: its accounts, how long it took, and the memory it reached."""

    accounts: int
    startup_seconds: float  # launched -> RUN_START: a process importing the code location
    pool_wait_seconds: float  # RUN_START -> step start: resources, then a cost_explorer slot
    step_seconds: float
    teardown_seconds: float  # step end -> run end
    peak_memory_mb: float
    memory_after_first_account_mb: float
    cpu_seconds: list[float]  # the process's CPU time after each account
    queued_at: float  # epoch seconds: in the run queue
    started_at: float  # epoch seconds: RUN_START, the code location imported

    @property
    def cpu_per_account(self) -> float | None:
        """CPU seconds per account after the first: the sync alone, without the start-up."""
        if len(self.cpu_seconds) < 2:
            return None
        return (self.cpu_seconds[-1] - self.cpu_seconds[0]) / (len(self.cpu_seconds) - 1)


@dataclass(frozen=True)
class SecondSync:
    """The next daily sync, once the previous month is final: what it asked and what it kept."""

    requests: int
    wall_seconds: float
    money_unchanged: bool


@dataclass(frozen=True)
class DailySyncFigures:
    """The daily sync of every account, through the daemon."""

    accounts: int
    lanes: int
    latency: float
    days: int
    wall_seconds: float
    runs: list[RunFigures]
    failed_runs: int
    requests: int
    peak_concurrent_requests: int
    rows: int
    statuses_active: int
    status_seconds: float | None
    cores: int
    second: SecondSync | None = None
    tick_at: float = 0.0  # epoch seconds: the tick was fired

    @property
    def floor_seconds(self) -> float:
        """The requests alone, every lane busy all the time."""
        return self.requests * self.latency / self.lanes

    @property
    def cpu_per_account(self) -> float:
        """Median over the runs of their CPU seconds per account, start-up excluded."""
        figures = [run.cpu_per_account for run in self.runs if run.cpu_per_account is not None]
        return median(figures) if figures else 0.0

    @property
    def overhead_per_account(self) -> float:
        """Run start-up and teardown per account (waiting for a pool slot is not counted)."""
        outside = sum(run.startup_seconds + run.teardown_seconds for run in self.runs)
        return outside / self.accounts


@dataclass(frozen=True)
class BackfillFigures:
    """A long window of one account, through the daemon."""

    days: int
    services: int
    rows: int
    peak_memory_mb: float
    seconds: float


@contextmanager
def fresh_databases(server: str) -> Iterator[tuple[str, str]]:
    """A PULSE database (migrated) and an empty Dagster storage database, dropped afterwards."""
    with fresh_database(server, "pulse_bench") as pulse_url:
        with fresh_database(server, "dagster_bench") as dagster_url:
            upgrade(pulse_url)
            yield pulse_url, dagster_url


def _aws_account(n: int) -> str:
    return f"{100000000000 + n}"


def add_accounts(pulse_url: str, rows: list[tuple[str, str]]) -> None:
    """CloudAccounts (id, 12-digit AWS account) connected through Cost Explorer."""
    engine = create_pulse_engine(pulse_url)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [
                {
                    "id": account_id,
                    "orgId": f"org-{account_id}",
                    "provider": "AWS",
                    "accountName": f"{account_id} production",
                    "connectionType": "COST_EXPLORER",
                    "roleArn": f"arn:aws:iam::{aws_account}:role/PulseCostRead",
                    "externalId": f"ext-{account_id}",
                }
                for account_id, aws_account in rows
            ],
        )
    engine.dispose()


def _instance_yaml(dagster_url: str, lanes: int) -> str:
    """The production dagster.yaml with its storage pointed at the benchmark's database and
    `lanes` slots in the cost_explorer pool (and at least as many concurrent runs)."""
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = lanes
    runs = config["concurrency"]["runs"]
    runs["max_concurrent_runs"] = max(runs["max_concurrent_runs"], lanes)
    scheme = config["storage"]["postgres"]["postgres_db"]["scheme"]
    config["storage"] = {"postgres": {"postgres_url": dagster_url.replace("postgresql", scheme, 1)}}
    return yaml.safe_dump(config)


# The UI's "Test schedule": evaluate one tick, then launch the runs it requests.
SCHEDULE_DRY_RUN = """
mutation ScheduleDryRun($selectorData: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selectorData, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult {
        runRequests { runKey jobName runConfigYaml tags { key value } assetSelection { path } }
        skipReason
        error { message }
      }
    }
    ... on Error { message }
  }
}"""
# InvalidStepError, InvalidOutputError and RunConfigValidationInvalid do not implement Error.
LAUNCH_MULTIPLE_RUNS = """
mutation LaunchMultipleRuns($executionParamsList: [ExecutionParams!]!) {
  launchMultipleRuns(executionParamsList: $executionParamsList) {
    __typename
    ... on LaunchMultipleRunsResult {
      launchMultipleRunsResult {
        __typename
        ... on LaunchRunSuccess { run { runId } }
        ... on Error { message }
        ... on RunConfigValidationInvalid { errors { message } }
        ... on InvalidStepError { invalidStepKey }
        ... on InvalidOutputError { stepKey invalidOutputName }
      }
    }
    ... on Error { message }
  }
}"""


def next_daily_tick(now: datetime) -> datetime:
    """The next 05:00 UTC tick of `daily_aws_cost_sync` (today's, before 05:00)."""
    tick = (now + timedelta(days=1)).replace(hour=5, minute=0, second=0, microsecond=0)
    return tick - timedelta(days=1) if now.hour < 5 else tick


def tick_daily_schedule(url: str) -> list[str]:
    """Fire the next 05:00 UTC tick as the UI's "Test schedule" does; the ids of its queued runs.

    The runs keep the run requests' tags (`pulse/trigger`, the partition or partition range,
    `dagster/schedule_name`) but, as from the UI, not the run key or the tick's id.
    """
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "scheduleName": daily_aws_cost_sync.name,
    }
    timestamp = next_daily_tick(datetime.now(UTC)).timestamp()
    dry_run = graphql(url, SCHEDULE_DRY_RUN, {"selectorData": selector, "timestamp": timestamp})
    tick = dry_run["scheduleDryRun"]
    if tick["__typename"] != "DryRunInstigationTick":
        raise RuntimeError(f"scheduleDryRun: {tick}")
    evaluation = tick["evaluationResult"]
    if evaluation["error"] or not evaluation["runRequests"]:
        raise RuntimeError(f"the tick requested no run: {evaluation}")
    params = [_execution_params(request, selector) for request in evaluation["runRequests"]]
    launched = graphql(url, LAUNCH_MULTIPLE_RUNS, {"executionParamsList": params})
    result = launched["launchMultipleRuns"]
    if result["__typename"] != "LaunchMultipleRunsResult":
        raise RuntimeError(f"launchMultipleRuns: {result}")
    runs = result["launchMultipleRunsResult"]
    failed = [run for run in runs if run["__typename"] != "LaunchRunSuccess"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} runs not launched, first: {failed[0]}")
    return [run["run"]["runId"] for run in runs]


def _execution_params(request: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
    """What the UI sends for one run request: its config as YAML, its tags, no asset subset."""
    if request["assetSelection"]:
        raise ValueError(f"the UI would launch the whole job for {request['runKey']}")
    return {
        "selector": {
            "repositoryLocationName": selector["repositoryLocationName"],
            "repositoryName": selector["repositoryName"],
            "jobName": request["jobName"] or daily_aws_cost_sync.job_name,
            "assetSelection": [],
            "assetCheckSelection": [],
        },
        "runConfigData": request["runConfigYaml"],
        "mode": "default",
        "executionMetadata": {"tags": request["tags"]},
    }


def wait_for_runs(
    instance: dg.DagsterInstance, run_ids: list[str], timeout: float
) -> list[dg.RunRecord]:
    """The runs, once all have finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = list(instance.get_run_records(dg.RunsFilter(run_ids=run_ids)))
        if len(records) == len(run_ids) and all(r.dagster_run.is_finished for r in records):
            return records
        time.sleep(1)
    raise TimeoutError(f"sync runs still unfinished after {timeout:.0f} s")


def run_figures(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunFigures:
    """Where one finished run's time went, and the peak memory it reached."""
    run = record.dagster_run

    def first(event_type: dg.DagsterEventType) -> float:
        events = instance.all_logs(run.run_id, of_type=event_type)
        return events[0].timestamp if events else (record.start_time or 0.0)

    launched, started = (
        first(dg.DagsterEventType.RUN_STARTING),
        first(dg.DagsterEventType.RUN_START),
    )
    stats = instance.get_run_step_stats(run.run_id)
    step_start = min((stat.start_time or started for stat in stats), default=started)
    step_end = max((stat.end_time or step_start for stat in stats), default=step_start)
    materializations = [
        event.asset_materialization.metadata
        for event in instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if event.asset_materialization is not None
    ]
    memory = [
        float(metadata["run_peak_memory_mb"].value)  # type: ignore[arg-type]
        for metadata in materializations
        if "run_peak_memory_mb" in metadata
    ]
    cpu = [
        float(metadata["run_cpu_seconds"].value)  # type: ignore[arg-type]
        for metadata in materializations
        if "run_cpu_seconds" in metadata
    ]
    return RunFigures(
        accounts=len(accounts_in_run(instance, dict(run.tags))),
        startup_seconds=started - launched,
        pool_wait_seconds=step_start - started,
        step_seconds=step_end - step_start,
        teardown_seconds=(record.end_time or step_end) - step_end,
        peak_memory_mb=max(memory, default=0.0),
        memory_after_first_account_mb=memory[0] if memory else 0.0,
        cpu_seconds=cpu,
        queued_at=record.create_timestamp.timestamp(),
        started_at=started,
    )


def _cost_rows(pulse_url: str, account_id: str | None = None) -> int:
    engine = create_pulse_engine(pulse_url)
    with engine.connect() as conn:
        query = select(func.count()).select_from(cost_record)
        if account_id is not None:
            query = query.where(cost_record.c.cloudAccountId == account_id)
        rows = int(conn.execute(query).scalar_one())
    engine.dispose()
    return rows


def _total_eur(pulse_url: str) -> Decimal:
    engine = create_pulse_engine(pulse_url)
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(cost_record.c.amountEUR))).scalar_one()
    engine.dispose()
    return Decimal(total or 0)


def _active_accounts(pulse_url: str) -> int:
    engine = create_pulse_engine(pulse_url)
    with engine.connect() as conn:
        active = conn.execute(
            select(func.count())
            .select_from(cloud_account)
            .where(cloud_account.c.status == "active")
        ).scalar_one()
    engine.dispose()
    return int(active)


def _wait_for_statuses(pulse_url: str, accounts: int, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _active_accounts(pulse_url) >= accounts:
            return time.monotonic() - started
        time.sleep(1)
    return None


def measure(
    server: str,
    accounts: int,
    lanes: int,
    services: int,
    page_size: int,
    latency: float,
    backfill_services: int | None,
    second_sync: bool = False,
    timeout: float = 3600,
) -> tuple[DailySyncFigures, BackfillFigures | None]:
    """Run the daily sync of `accounts` accounts with `lanes` cost_explorer slots through
    Dagster; then, if asked, the next day's sync and a 14-month backfill of one account."""
    settings = SimulationSettings(
        services_per_day=services,
        page_size=page_size,
        latency_seconds=latency,
        max_concurrent_requests=lanes,
        services_by_account={BACKFILL_AWS_ACCOUNT: backfill_services or services},
        # The previous month's bill closed, even on the 1st to the 4th (when the simulation's
        # calendar keeps it open): the next day's sync is measured in its steady state.
        estimated_from=datetime.now(UTC).date().replace(day=1),
    )
    home = Path(tempfile.mkdtemp(prefix="pulse-bench-home-"))
    saved = dict(os.environ)
    try:
        with fresh_databases(server) as (pulse_url, dagster_url), SimulatedAws(settings) as aws:
            (home / "dagster.yaml").write_text(_instance_yaml(dagster_url, lanes))
            for key in [k for k in os.environ if k.startswith(("AWS_", "PULSE_"))]:
                del os.environ[key]
            os.environ.update(
                {
                    "DAGSTER_HOME": str(home),
                    "DATABASE_URL": pulse_url,
                    "PULSE_ECB_HISTORY_URL": "bundled",  # offline: never the ECB's server
                    **aws.environment(),
                }
            )
            ids = [f"bench-{n:04d}" for n in range(accounts)]
            add_accounts(pulse_url, [(id_, _aws_account(n)) for n, id_ in enumerate(ids)])
            with dg.DagsterInstance.get() as instance:
                # What the new_cloud_accounts sensor did when these accounts were connected.
                instance.add_dynamic_partitions(CLOUD_ACCOUNTS, ids)
                assert (
                    defs()
                    .resolve_job_def("refresh_ecb_rates")
                    .execute_in_process(instance=instance)
                    .success
                )
                environment = dict(os.environ)
                with (
                    daemon(environment, home / "daemon.log"),
                    webserver(environment, home / "webserver.log") as url,
                ):
                    daily = _daily_sync(instance, aws, url, pulse_url, accounts, lanes, timeout)
                    if second_sync:
                        daily = replace(daily, second=_second_sync(instance, aws, url, pulse_url))
                    backfill = None
                    if backfill_services is not None:
                        backfill = _backfill(instance, pulse_url, backfill_services, timeout)
            return daily, backfill
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)


def _daily_sync(
    instance: dg.DagsterInstance,
    aws: SimulatedAws,
    url: str,
    pulse_url: str,
    accounts: int,
    lanes: int,
    timeout: float,
) -> DailySyncFigures:
    aws.reset_request_counts()
    started, tick_at = time.monotonic(), time.time()
    launched = tick_daily_schedule(url)
    records = wait_for_runs(instance, launched, timeout)
    wall = time.monotonic() - started
    status_seconds = _wait_for_statuses(pulse_url, accounts, timeout=120)
    window_days = {
        int(m.metadata["days"].value)  # type: ignore[arg-type]
        for record in records
        for event in instance.all_logs(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if (m := event.asset_materialization) is not None and "days" in m.metadata
    }
    return DailySyncFigures(
        accounts=accounts,
        lanes=lanes,
        latency=aws.settings.latency_seconds,
        days=max(window_days, default=0),
        wall_seconds=wall,
        runs=[run_figures(instance, record) for record in records],
        failed_runs=sum(1 for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS),
        requests=aws.total_requests(),
        peak_concurrent_requests=aws.peak_concurrent_requests(),
        rows=_cost_rows(pulse_url),
        statuses_active=_active_accounts(pulse_url),
        status_seconds=(wall + status_seconds) if status_seconds is not None else None,
        cores=os.cpu_count() or 1,
        tick_at=tick_at,
    )


def _second_sync(
    instance: dg.DagsterInstance, aws: SimulatedAws, url: str, pulse_url: str
) -> SecondSync:
    """The tick again, the previous month final (only the current month's days came back
    Estimated): only the days still revisable are asked for, and the money stays."""
    before = _total_eur(pulse_url)
    aws.reset_request_counts()
    started = time.monotonic()
    records = wait_for_runs(instance, tick_daily_schedule(url), timeout=3600)
    wall = time.monotonic() - started
    if any(r.dagster_run.status != dg.DagsterRunStatus.SUCCESS for r in records):
        raise RuntimeError("a run of the second daily sync failed")
    return SecondSync(aws.total_requests(), wall, _total_eur(pulse_url) == before)


def _backfill(
    instance: dg.DagsterInstance, pulse_url: str, services: int, timeout: float
) -> BackfillFigures:
    """The whole of Cost Explorer's daily history (about 14 months) of one account."""
    add_accounts(pulse_url, [(BACKFILL_ACCOUNT, BACKFILL_AWS_ACCOUNT)])
    instance.add_dynamic_partitions(CLOUD_ACCOUNTS, [BACKFILL_ACCOUNT])
    today = datetime.now(UTC).date()
    start = today.replace(day=1)
    for _ in range(13):
        start = (start - timedelta(days=1)).replace(day=1)
    end = today - timedelta(days=1)
    config = {
        "ops": {"sync_cloud_accounts": {"config": {"start_date": str(start), "end_date": str(end)}}}
    }
    started = time.monotonic()
    subprocess.run(
        [
            str(BIN / "dagster"), "job", "launch", "-w", str(WORKSPACE),
            "-j", "sync_aws_costs", "--config-json", json.dumps(config),
            "--tags", json.dumps({"dagster/partition": BACKFILL_ACCOUNT, "pulse/trigger": "backfill"}),
        ],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    launched = instance.get_run_records(dg.RunsFilter(tags={"pulse/trigger": "backfill"}))
    (record,) = wait_for_runs(instance, [r.dagster_run.run_id for r in launched], timeout)
    figures = run_figures(instance, record)
    if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"the backfill run {record.dagster_run.run_id} failed")
    return BackfillFigures(
        days=(end - start).days + 1,
        services=services,
        rows=_cost_rows(pulse_url, BACKFILL_ACCOUNT),
        peak_memory_mb=figures.peak_memory_mb,
        seconds=time.monotonic() - started,
    )


def _layout(runs: list[RunFigures]) -> str:
    sizes = sorted(run.accounts for run in runs)
    each = str(sizes[0]) if sizes[0] == sizes[-1] else f"{sizes[0]}-{sizes[-1]}"
    return f"{len(runs)}x{each}"


def report(daily: list[DailySyncFigures], backfill: BackfillFigures | None, latency: float) -> str:
    """The figures as printed by `make bench`: one column per accounts x lanes measured."""
    first = daily[0]
    rows: list[tuple[str, list[str]]] = [
        ("accounts x lanes", [f"{d.accounts}x{d.lanes}" for d in daily]),
        ("wall time, tick to last run finished (s)", [f"{d.wall_seconds:.1f}" for d in daily]),
        ("request floor: requests x latency / lanes (s)", [f"{d.floor_seconds:.1f}" for d in daily]),
        ("wall time / request floor", [f"{d.wall_seconds / d.floor_seconds:.2f}" if d.floor_seconds else "-" for d in daily]),
        ("runs (x accounts per run)", [_layout(d.runs) for d in daily]),
        ("  all queued, after the tick (s)", [f"{max(r.queued_at for r in d.runs) - d.tick_at:.1f}" for d in daily]),
        ("  all started (code loaded), after the tick (s)", [f"{max(r.started_at for r in d.runs) - d.tick_at:.1f}" for d in daily]),
        ("failed runs", [str(d.failed_runs) for d in daily]),
        ("Cost Explorer requests (all accounts)", [str(d.requests) for d in daily]),
        ("  per account", [f"{d.requests / d.accounts:.1f}" for d in daily]),
        ("peak concurrent Cost Explorer requests", [str(d.peak_concurrent_requests) for d in daily]),
        ("CostRecord rows written", [str(d.rows) for d in daily]),
        ("CPU per account in a run, start-up excluded (s)", [f"{d.cpu_per_account:.3f}" for d in daily]),
        ("  per 1,000 rows (s)", [f"{d.cpu_per_account * 1000 * d.accounts / max(d.rows, 1):.3f}" for d in daily]),
        ("run start-up: launch + imports, median (s)", [f"{median(r.startup_seconds for r in d.runs):.1f}" for d in daily]),
        ("waiting for a cost_explorer slot, median (s)", [f"{median(r.pool_wait_seconds for r in d.runs):.1f}" for d in daily]),
        ("sync step of a run, median (s)", [f"{median(r.step_seconds for r in d.runs):.1f}" for d in daily]),
        ("peak memory of a run, max (MB)", [f"{max(r.peak_memory_mb for r in d.runs):.0f}" for d in daily]),
        ("  after its first account, median (MB)", [f"{median(r.memory_after_first_account_mb for r in d.runs):.0f}" for d in daily]),
        ("accounts active in PULSE (status written)", [str(d.statuses_active) for d in daily]),
    ]  # fmt: skip
    lines = [
        f"Daily sync through Dagster (a first sync: {first.days}-day window; {latency * 1000:.0f} "
        f"ms per Cost Explorer request, at most `lanes` at once; the runs, dagster-daemon and "
        f"dagster-webserver share {first.cores} cores)",
        *(f"{label:<50}" + "".join(f"{value:>10}" for value in values) for label, values in rows),
    ]
    if first.second is not None:
        second = first.second
        lines += [
            "",
            f"Next day's sync of the {first.accounts} accounts (previous month final)",
            f"{'requests per account, next day':<50}{second.requests / first.accounts:>10.1f}",
            f"{'wall time, tick to last run finished (s)':<50}{second.wall_seconds:>10.1f}",
            f"{'EUR total unchanged':<50}{'yes' if second.money_unchanged else 'NO':>10}",
        ]
    if backfill is not None:
        lines += [
            "",
            f"Backfill of one account through Dagster ({backfill.days} days, "
            f"{backfill.services} services)",
            f"{'CostRecord rows of the account':<50}{backfill.rows:>10}",
            f"{'peak memory of the run (MB)':<50}{backfill.peak_memory_mb:>10.0f}",
            f"{'wall time, launch to finish (s)':<50}{backfill.seconds:>10.1f}",
        ]
    return "\n".join(lines)
