"""SyncRequest rows as a careless or hostile PULSE app writes them (raw SQL), served by the
`sync_requests` sensor's own tick on SQLite and PostgreSQL: each bad row ends `rejected` with
one sentence naming the field while the others are launched, every launch passes one gate, a
relaunch happens once at most, and a re-used id never gets an earlier request's answer."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import column, delete, insert, select, table, update

from pulse_pipeline.db.schema import cloud_account, sync_request
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import ManualRequestLimits, PulseDatabase
from pulse_pipeline.defs.sensors import sync_requests
from pulse_pipeline_tests.ce_results import queue_results
from pulse_pipeline_tests.support import D1, D4, TWO_PAGES, account_row, load_rates

NOW = datetime.now(UTC)


def tick(instance: dg.DagsterInstance, url: str, cursor: str | None) -> dg.SensorResult:
    """One evaluation of the sensor, as the daemon runs it."""
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"pulse_db": PulseDatabase(url=url), "request_limits": ManualRequestLimits()},
    ) as context:
        result = sync_requests(context)
    assert isinstance(result, dg.SensorResult)
    return result


def ticks(
    instance: dg.DagsterInstance, url: str, count: int, cursor: str | None
) -> tuple[list[list[dg.RunRequest]], str | None]:
    """`count` ticks in a row, each with the cursor the last one left: the runs each asked for."""
    launched = []
    for _ in range(count):
        result = tick(instance, url, cursor)
        launched.append(list(result.run_requests or []))
        cursor = result.cursor
    return launched, cursor


def insert_raw(url: str, **columns: Any) -> None:
    """One SyncRequest row written as a careless app would: plain SQL, values as given (strings
    into date columns, numbers into timestamp columns), no checks."""
    untyped = table("SyncRequest", *(column(name) for name in columns))
    engine = create_pulse_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(untyped).values(**columns))
    engine.dispose()


def rows(url: str) -> dict[str, dict[str, Any]]:
    engine = create_pulse_engine(url)
    with engine.connect() as conn:
        read = select(
            sync_request.c.id,
            sync_request.c.status,
            sync_request.c.error,
            sync_request.c.runId,
            sync_request.c.result,
        )
        found = {row.id: dict(row._mapping) for row in conn.execute(read)}
    engine.dispose()
    return found


def requested(seconds_ago: int) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%d %H:%M:%S.%f")


LONG_ID = "x" * 2685
FORGED_ID = "req-evil\nINFO SyncRequest req-admin: sync of acc-1 launched"
# (row, the words its sentence must hold) on both databases.
HOSTILE_ANYWHERE: dict[str, tuple[dict[str, Any], str]] = {
    "kind": ({"kind": "purge"}, "unknown kind 'purge'; use 'sync' or 'test_connection'"),
    "status": ({"status": "pending"}, "status 'pending' is not one PULSE writes"),
    "long id": (
        {"id": LONG_ID},
        "its id is 2,685 bytes long, more than the 1,024 bytes a Dagster run tag can hold",
    ),
    "line break": ({"id": FORGED_ID}, "its id contains control characters"),
    "running": ({"status": "running"}, "status 'running' without a startedAt"),
}
HOSTILE_ON: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "postgresql": {
        "five-digit year": ({"startDate": "20260-01-01"}, "startDate '20260-01-01' is not a date"),
        "infinity": ({"startDate": "infinity"}, "startDate 'infinity' is not a date"),
        "BC": ({"endDate": "2026-01-01 BC"}, "endDate '2026-01-01 BC' is not a date"),
        "requested at infinity": (
            {"requestedAt": "infinity"},
            "requestedAt 'infinity' is not a timestamp",
        ),
        "started at infinity": (
            {"status": "running", "startedAt": "infinity"},
            "startedAt 'infinity' is not a timestamp",
        ),
    },
    "sqlite": {
        "slashes": ({"startDate": "2026/11/17"}, "startDate '2026/11/17' is not a date"),
        "timestamp text": (
            {"startDate": "2026-11-17T00:00:00"},
            "startDate '2026-11-17T00:00:00' is not a date",
        ),
        "epoch date": ({"endDate": 1763337600}, "endDate '1763337600' is not a date"),
        "epoch requested": (
            {"requestedAt": 1763337600},
            "requestedAt '1763337600' is not a timestamp",
        ),
        "started soon": (
            {"status": "running", "startedAt": "soon"},
            "startedAt 'soon' is not a timestamp",
        ),
    },
}


def test_each_hostile_row_is_rejected_alone_and_the_others_are_served(
    pulse: str, dagster_instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    dialect = "postgresql" if pulse.startswith("postgresql") else "sqlite"
    hostile = {**HOSTILE_ANYWHERE, **HOSTILE_ON[dialect]}
    ids = {}
    for n, (case, (values, _)) in enumerate(hostile.items()):
        # Older than the good rows: the tick meets them first.
        row = {"id": f"bad-{n}", "orgId": "org-1", "cloudAccountId": "acc-1"}
        row |= {"requestedAt": requested(120 - n), **values}
        insert_raw(pulse, **row)
        ids[case] = row["id"]
    insert_raw(
        pulse, id="good-sync", orgId="org-1", cloudAccountId="acc-1", requestedAt=requested(30)
    )
    insert_raw(
        pulse,
        id="good-test",
        orgId="org-2",
        cloudAccountId="acc-2",
        kind="test_connection",
        requestedAt=requested(29),
    )

    launched, _ = ticks(dagster_instance, pulse, 4, None)
    log = capsys.readouterr().err  # the tick's log lines, as the daemon writes them

    served = rows(pulse)
    for case, (_, words) in hostile.items():
        row = served[ids[case]]
        assert row["status"] == "rejected", (case, row)
        assert words in row["error"], (case, row["error"])
        assert row["runId"] is None and row["error"].count(". ") == 0  # one sentence
    assert {served[i]["status"] for i in ("good-sync", "good-test")} == {"running"}
    # The good rows' runs in the first tick, and nothing more in the three after it.
    assert sorted(run.tags["pulse/request"] for run in launched[0]) == ["good-sync", "good-test"]
    assert launched[1:] == [[], [], []]
    # The long id is cut short and the line break escaped, in the row's sentence and the log.
    assert len(served[ids["long id"]]["error"]) < 300
    assert "req-evil\\nINFO" in served[ids["line break"]]["error"]
    assert "req-evil\\nINFO" in log and "req-evil\nINFO" not in log
    assert LONG_ID not in log


def test_rows_inserted_as_running_pass_the_gate_and_are_relaunched_once_at_most(
    pulse: str, dagster_instance: dg.DagsterInstance
) -> None:
    """Running rows without a run of their own, as a careless app or a lost launch leaves them:
    25 organisations with one account each, one of them with three such rows."""
    orgs = [f"org-g{n:02d}" for n in range(25)]
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [account_row(f"acc-{org}", org, "arn:aws:iam::333333333333:role/R") for org in orgs],
        )
    engine.dispose()
    # Launched (they say) longer ago than an organisation's interval: none limits another.
    twenty_minutes_ago = requested(1200)
    for n, org in enumerate([*orgs, orgs[0], orgs[0]]):
        insert_raw(
            pulse,
            id=f"lost-{n:02d}",
            orgId=org,
            cloudAccountId=f"acc-{org}",
            status="running",
            requestedAt=requested(1300 - n),
            startedAt=twenty_minutes_ago,
        )
    for n in range(30):  # running without startedAt: never written by the pipeline
        insert_raw(pulse, id=f"unstarted-{n:02d}", orgId=orgs[1], status="running")

    launched, cursor = ticks(dagster_instance, pulse, 3, None)

    assert [len(runs) for runs in launched] == [20, 5, 0]  # 20 launches a tick at most
    runs = [run for tick_runs in launched for run in tick_runs]
    assert sorted(run.partition_key or "" for run in runs) == [f"acc-{o}" for o in orgs]
    served = rows(pulse)
    assert [served[f"lost-{n:02d}"]["status"] for n in (25, 26)] == ["rate_limited"] * 2
    assert all(served[f"lost-{n:02d}"]["status"] == "running" for n in range(25))
    assert {served[f"unstarted-{n:02d}"]["status"] for n in range(30)} == {"rejected"}
    assert "status 'running' without a startedAt" in served["unstarted-00"]["error"]

    # Six minutes later, still no run of any of them: they fail instead of launching again.
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            update(sync_request)
            .where(sync_request.c.status == "running")
            .values(startedAt=NOW - timedelta(minutes=6))
        )
    engine.dispose()
    later, cursor = ticks(dagster_instance, pulse, 3, cursor)
    assert later == [[], [], []]
    served = rows(pulse)
    for n in range(25):
        row = served[f"lost-{n:02d}"]
        assert row["status"] == "failed"
        assert row["error"] == (
            f"SyncRequest lost-{n:02d}: no run of it started after it was launched twice; ask again"
        )
    # The cursor forgets the relaunches of requests that ended.
    assert json.loads(cursor or "") == {"relaunched": []}


def test_an_id_used_again_is_a_new_request_with_its_own_run(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    queue_results("111111111111", TWO_PAGES)
    load_rates(dagster_instance)
    window = {"startDate": D1.isoformat(), "endDate": D4.isoformat()}
    insert_raw(
        pulse,
        id="req-1",
        orgId="org-1",
        cloudAccountId="acc-1",
        requestedAt=requested(60),
        **window,
    )
    first = served_once(dagster_instance, pulse)
    assert rows(pulse)["req-1"]["status"] == "succeeded"

    # The app deletes the row and asks again with the same id.
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(delete(sync_request).where(sync_request.c.id == "req-1"))
    engine.dispose()
    insert_raw(
        pulse, id="req-1", orgId="org-1", cloudAccountId="acc-1", requestedAt=requested(5), **window
    )
    second = served_once(dagster_instance, pulse)

    assert second != first
    engine = create_pulse_engine(pulse)
    with engine.connect() as conn:
        row = (
            conn.execute(select(sync_request).where(sync_request.c.id == "req-1")).mappings().one()
        )
    engine.dispose()
    assert row["status"] == "succeeded" and row["runId"] == second
    assert row["startedAt"] <= row["finishedAt"]
    assert row["result"][0]["recordsCount"] == 5


def served_once(instance: dg.DagsterInstance, url: str) -> str:
    """A tick launches the queued request, its run runs (as the daemon would), and the next tick
    writes its outcome: the run's id. The tick in between must not answer it early."""
    (run,) = tick(instance, url, None).run_requests or []
    assert rows(url)[run.tags["pulse/request"]]["status"] == "running"
    assert tick(instance, url, None).run_requests == []
    assert rows(url)[run.tags["pulse/request"]]["status"] == "running"
    instance.add_dynamic_partitions("cloud_accounts", [run.partition_key or ""])
    result = (
        defs()
        .resolve_job_def("sync_aws_costs")
        .execute_in_process(
            instance=instance,
            partition_key=run.partition_key,
            run_config=run.run_config,
            tags=run.tags,
        )
    )
    assert result.success
    tick(instance, url, None)
    return result.run_id
