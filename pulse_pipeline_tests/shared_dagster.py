"""One `dagster dev` (webserver + daemon) for the end-to-end modules that need one
(test_webserver_and_daemon, test_alerts_through_daemon, test_sync_requests): starting one costs
a minute of CPU and its accounts' first syncs another, so the session pays for both once.

Everything those modules see is here: one PULSE database on PostgreSQL holding every module's
accounts (each module its own account ids, organisations and AWS accounts, so no test sees
another's), one simulated AWS whose settings are the union of theirs, the alert settings pointing
at the local webhook and SMTP receivers, and Dagster's storage on PostgreSQL. Tests assert on
their own accounts only, so they pass in any order. The fixture `shared_dagster` in conftest.py
starts it once for the session; test_production_topology keeps its own processes by design.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert, select

from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.alert_receivers import (
    MailReceiver,
    WebhookReceiver,
    mail_receiver,
    webhook_receiver,
)
from pulse_pipeline_tests.ce_results import ecb_history_csv
from pulse_pipeline_tests.daemon import postgres_dagster_home, running_dagster_dev, wait_for


def role(aws_account: str) -> str:
    return f"arn:aws:iam::{aws_account}:role/PulseRead"


def account_row(
    account_id: str,
    org: str,
    role_arn: str,
    *,
    name: str | None = None,
    external_id: str | None = None,
    status: str = "pending",
) -> dict[str, Any]:
    """A CloudAccount row as the PULSE app writes it."""
    return {
        "id": account_id,
        "orgId": org,
        "provider": "AWS",
        "accountName": name or f"{account_id} account",
        "connectionType": "COST_EXPLORER",
        "roleArn": role_arn,
        "externalId": external_id or f"ext-{account_id}",
        "status": status,
    }


# test_webserver_and_daemon: three accounts of one organisation, one of them denied; a slow one
# that the test connects itself (so its first sync is the run it kills).
E2E_EXTERNAL_ID = "ext-id-e2e"
E2E_ACCOUNTS = {
    "acc-a": role("911111111111"),
    "acc-b": role("922222222222"),
    "acc-denied": role("933333333333"),
}
E2E_SLOW_AWS_ACCOUNT = "944444444444"
E2E_SLOW = ("acc-slow", role(E2E_SLOW_AWS_ACCOUNT))

# test_alerts_through_daemon: acc-2's role is denied until the test fixes it.
ALERTS_DENIED = role("722222222222")
ALERTS_FIXED = role("755555555555")
ALERTS_EXTERNAL_ID = "ext-id-42"
ALERTS_ACCOUNTS = {"acc-1": ("org-1", role("711111111111")), "acc-2": ("org-2", ALERTS_DENIED)}
ALERT_UI_URL = "https://dagster.example.com"
SMTP_PASSWORD = "hunter2-never-shown"

# test_sync_requests: id -> (organisation, role ARN, status). Ids sort in partition order:
# org-a's two accounts are not consecutive partitions, so an organisation-wide request takes
# two runs.
REQUESTS_DENIED = role("444444444444")
REQUESTS_SLOW_AWS_ACCOUNT = "666666666666"
REQUESTS_ACCOUNTS = {
    "acc-1-a": ("org-a", role("111111111111"), "pending"),
    "acc-2-b": ("org-b", role("222222222222"), "pending"),
    "acc-3-a": ("org-a", role("333333333333"), "pending"),
    "acc-4-off": ("org-a", role("777777777777"), "disconnected"),
    "acc-5-denied": ("org-t", REQUESTS_DENIED, "pending"),
    "acc-6-no-ce": ("org-t", role("555555555555"), "pending"),
    "acc-7-slow": ("org-k", role(REQUESTS_SLOW_AWS_ACCOUNT), "pending"),
    "acc-8-r": ("org-r", role("888888888888"), "pending"),
}

ROWS = [
    *(
        account_row(i, "org-e2e", arn, external_id=E2E_EXTERNAL_ID)
        for i, arn in E2E_ACCOUNTS.items()
    ),
    *(
        account_row(i, org, arn, name=f"{org} production", external_id=ALERTS_EXTERNAL_ID)
        for i, (org, arn) in ALERTS_ACCOUNTS.items()
    ),
    *(account_row(i, org, arn, status=s) for i, (org, arn, s) in REQUESTS_ACCOUNTS.items()),
]

SERVICES, PAGE_SIZE = 5, 8
SIMULATION = SimulationSettings(
    services_per_day=SERVICES,
    page_size=PAGE_SIZE,
    denied_role_arns=frozenset({E2E_ACCOUNTS["acc-denied"], ALERTS_DENIED, REQUESTS_DENIED}),
    # test_sync_requests: a role without ce:GetCostAndUsage.
    fail_with={"555555555555": ("AccessDeniedException", 1)},
    services_by_account={
        # test_sync_requests' killed run: a few slow pages, so the run is caught mid-fetch.
        REQUESTS_SLOW_AWS_ACCOUNT: 1,
        # test_alerts_through_daemon: small accounts, their costs are not what it checks.
        "711111111111": 3,
        "722222222222": 3,
        "755555555555": 3,
    },
    latency_by_account={E2E_SLOW_AWS_ACCOUNT: 2.0, REQUESTS_SLOW_AWS_ACCOUNT: 2.0},
)


@dataclass(frozen=True)
class SharedDagster:
    """The running `dagster dev` and what it talks to."""

    base: str  # the webserver's address
    home: Path  # its DAGSTER_HOME (storage on PostgreSQL)
    pulse_url: str  # PULSE's database, in the Prisma URL form
    aws: SimulatedAws
    webhook: WebhookReceiver
    mail: MailReceiver


def _pulse_database(postgres_database: str) -> str:
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_database}?schema={schema}"
    upgrade(url)
    engine = create_pulse_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(cloud_account), ROWS)
    engine.dispose()
    return url


def _first_syncs_settled(url: str) -> bool:
    engine = create_pulse_engine(url)
    with engine.connect() as conn:
        statuses = conn.execute(select(cloud_account.c.status)).scalars().all()
    engine.dispose()
    return all(status != "pending" for status in statuses)


@contextmanager
def shared_dagster_dev(postgres_database: str, tmp: Path) -> Iterator[SharedDagster]:
    """`dagster dev` in its own process group (stopped by its id), yielded once every account's
    first sync (launched by the new-account sensor, nobody else) has its status written."""
    today = datetime.now(UTC).date()
    history = tmp / "eurofxref-hist.csv"
    history.write_text(
        ecb_history_csv(
            {
                today - timedelta(days=n): {"USD": "1.1000"}
                for n in range(1, 420)
                if (today - timedelta(days=n)).weekday() < 5
            }
        )
    )
    pulse_url = _pulse_database(postgres_database)
    with (
        webhook_receiver() as webhook,
        mail_receiver() as mail,
        SimulatedAws(SIMULATION) as aws,
        postgres_dagster_home(tmp, "pulse_e2e_dagster") as home,
    ):
        env = {
            # Nothing of the developer's AWS or PULSE settings (the session starts before the
            # autouse fixture that clears them for each test).
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("AWS_", "PULSE_"))
                and k not in ("DATABASE_URL", "DAGSTER_HOME")
            },
            **aws.environment(),
            "DAGSTER_HOME": str(home),
            "DATABASE_URL": pulse_url,
            "PULSE_ECB_HISTORY_URL": str(history),
            "PULSE_ALERT_WEBHOOK_URL": webhook.url,
            "PULSE_DAGSTER_UI_URL": ALERT_UI_URL,
            "PULSE_ALERT_SMTP_HOST": "127.0.0.1",
            "PULSE_ALERT_SMTP_PORT": str(mail.port),
            # No login: the password only shows that the UI never reveals it.
            "PULSE_ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
            "PULSE_ALERT_SMTP_FROM": "pulse@example.com",
            "PULSE_ALERT_SMTP_TO": "ops@example.com",
        }
        with running_dagster_dev(env, tmp / "dagster-dev.log") as base:
            # The new-account sensor loads the ECB rates and syncs every account once.
            wait_for(
                lambda: _first_syncs_settled(pulse_url), "the accounts' first syncs", timeout=420
            )
            yield SharedDagster(base, home, pulse_url, aws, webhook, mail)
