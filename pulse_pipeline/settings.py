"""Every deployment setting, in one place: its environment variable, the resource field it fills,
its default, its kind of value (`setting_kinds`) and what it is for.

`defs/settings.py` turns these into the code location's resources; each resource reads its
values through `Setting.parse` again when a run starts, so a value is judged by one parser
wherever it comes from. To add a setting, add a row here and the field to its resource.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulse_pipeline.alerts.channels import DEFAULT_DEADLINE_SECONDS, DEFAULT_RUN_BUDGET_SECONDS
from pulse_pipeline.alerts.telegram import TELEGRAM_API_URL
from pulse_pipeline.aws.cost_explorer import DEFAULT_MAX_PAGES, DEFAULT_METRIC, METRICS
from pulse_pipeline.db.urls import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    MIN_CONNECT_TIMEOUT_SECONDS,
    DatabaseUrlError,
)
from pulse_pipeline.ecb_history import ECB_HISTORY_URL
from pulse_pipeline.setting_kinds import (
    Parser,
    aws_region,
    choice,
    database_url,
    ecb_history_location,
    email_addresses,
    http_url,
    record_types,
    tcp_port,
    telegram_bot_token,
    telegram_chat_id,
    text,
    whole_number,
)
from pulse_pipeline.sync_window import PREVIOUS_MONTH, REVISABLE, WINDOW_RULES


class SettingError(Exception):
    """A deployment setting has a value pulse_pipeline cannot use; the message is one sentence
    naming the variable, never its value.

    Not a ValueError on purpose: pydantic passes it through a resource's validator untouched,
    where it would wrap a ValueError in a message that lists every field's value.
    """


@dataclass(frozen=True)
class Setting:
    """One environment variable and the resource field it fills."""

    variable: str
    resource: str
    field: str
    default: Any = None
    kind: Parser = text
    description: str = ""
    # Without a default: unset, every run and tick refuses to start rather than guess.
    required: bool = False
    # False: the resource's own use parses the value again when a run needs it (DATABASE_URL:
    # creating the engine, so that each step that needed it fails naming its account).
    parsed_at_run_start: bool = True

    def parse(self, value: str) -> Any:
        """The field's value for the variable's text, or SettingError naming the variable."""
        try:
            return self.kind(value)
        except DatabaseUrlError as error:  # already one sentence naming the variable
            raise SettingError(str(error)) from None
        except ValueError as error:
            raise SettingError(f"{self.variable} is invalid: {error}") from None


SETTINGS = (
    Setting(
        "DATABASE_URL",
        "pulse_db",
        "url",
        kind=database_url,
        required=True,
        parsed_at_run_start=False,
        description="SQLAlchemy or Prisma URL of PULSE's database.",
    ),
    Setting(
        "PULSE_DB_CONNECT_TIMEOUT_SECONDS",
        "pulse_db",
        "connect_timeout_seconds",
        DEFAULT_CONNECT_TIMEOUT_SECONDS,
        whole_number(MIN_CONNECT_TIMEOUT_SECONDS, "seconds"),
        f"Seconds to wait for a connection (at least {MIN_CONNECT_TIMEOUT_SECONDS}).",
    ),
    Setting(
        "PULSE_DB_STATEMENT_TIMEOUT_SECONDS",
        "pulse_db",
        "statement_timeout_seconds",
        300,
        whole_number(1, "seconds"),
        "Seconds a statement may run or wait for a lock (SQLite: its busy timeout).",
    ),
    Setting(
        "PULSE_COST_METRIC",
        "settings",
        "metric",
        DEFAULT_METRIC,
        choice(METRICS, "cost metric"),
        f"One of {', '.join(METRICS)}.",
    ),
    Setting(
        "PULSE_RECORD_TYPES",
        "settings",
        "record_types",
        "",
        record_types,
        "Comma-separated AWS record types to write, e.g. Usage,Tax; empty = all.",
    ),
    Setting(
        "PULSE_MAX_PAGES",
        "settings",
        "max_pages",
        DEFAULT_MAX_PAGES,
        whole_number(
            1, note="the most Cost Explorer pages, $0.01 each, one account's fetch may ask for"
        ),
        "The most Cost Explorer pages ($0.01 each) one account's fetch may ask for.",
    ),
    Setting(
        "PULSE_COST_FRESHNESS_HOURS",
        "settings",
        "freshness_hours",
        30,
        whole_number(1, "hours"),
        "Hours after an account's last successful sync before synced_recently fails.",
    ),
    Setting(
        "PULSE_ECB_HISTORY_URL",
        "ecb",
        "history_url",
        ECB_HISTORY_URL,
        ecb_history_location,
        "https URL or path of eurofxref-hist.zip (or its CSV), or `bundled`.",
    ),
    Setting(
        "PULSE_MANUAL_SYNC_INTERVAL_MINUTES",
        "request_limits",
        "sync_interval_minutes",
        15,
        whole_number(1, "minutes"),
        "Minutes between two launched sync requests of an organisation.",
    ),
    Setting(
        "PULSE_DEFAULT_WINDOW",
        "settings",
        "default_window",
        REVISABLE,
        choice(WINDOW_RULES, "window rule"),
        f"Where a daily sync's window starts: `{REVISABLE}` (the oldest day Cost Explorer may "
        f"still revise) or `{PREVIOUS_MONTH}` (always the 1st of last month).",
    ),
    Setting(
        "AWS_PROFILE",
        "aws",
        "profile_name",
        description="AWS profile for PULSE's own credentials; empty = boto3's chain.",
    ),
    # botocore reads AWS_DEFAULT_REGION itself, but not AWS_REGION.
    Setting(
        "AWS_REGION",
        "aws",
        "region_name",
        kind=aws_region,
        description="Region of the STS endpoint; empty = the AWS config, else us-east-1.",
    ),
    Setting(
        "PULSE_ALERT_WEBHOOK_URL",
        "alerts",
        "webhook_url",
        "",
        http_url(secret=True),
        "URL the alert JSON is POSTed to (e.g. a Slack incoming webhook).",
    ),
    Setting(
        "PULSE_DAGSTER_UI_URL",
        "alerts",
        "dagster_ui_url",
        "",
        http_url(secret=False),
        "Address of the Dagster UI, for a link to the run; empty = none.",
    ),
    Setting(
        "PULSE_ALERT_SMTP_HOST",
        "alerts",
        "smtp_host",
        "",
        description="SMTP server for e-mail alerts; empty = none.",
    ),
    Setting(
        "PULSE_ALERT_SMTP_PORT",
        "alerts",
        "smtp_port",
        587,
        tcp_port,
        "SMTP port (465: implicit TLS).",
    ),
    Setting(
        "PULSE_ALERT_SMTP_USER",
        "alerts",
        "smtp_user",
        "",
        description="SMTP login; empty = no login.",
    ),
    Setting(
        "PULSE_ALERT_SMTP_PASSWORD",
        "alerts",
        "smtp_password",
        "",
        description="SMTP password (an EnvVar, never shown).",
    ),
    Setting(
        "PULSE_ALERT_SMTP_FROM",
        "alerts",
        "smtp_from",
        "",
        email_addresses,
        "Sender address of alert e-mails.",
    ),
    Setting(
        "PULSE_ALERT_SMTP_TO",
        "alerts",
        "smtp_to",
        "",
        email_addresses,
        "Comma-separated recipients of alert e-mails.",
    ),
    Setting(
        "PULSE_TELEGRAM_BOT_TOKEN",
        "alerts",
        "telegram_bot_token",
        "",
        telegram_bot_token,
        "Telegram bot token (an EnvVar, never shown); empty = no Telegram alerts.",
    ),
    Setting(
        "PULSE_TELEGRAM_CHAT_ID",
        "alerts",
        "telegram_chat_id",
        "",
        telegram_chat_id,
        "Telegram chat the bot writes to: its numeric id or @channel.",
    ),
    Setting(
        "PULSE_TELEGRAM_API_URL",
        "alerts",
        "telegram_api_url",
        TELEGRAM_API_URL,
        http_url(secret=True),
        "Telegram's Bot API address.",
    ),
    Setting(
        "PULSE_ALERT_DEADLINE_SECONDS",
        "alerts",
        "deadline_seconds",
        DEFAULT_DEADLINE_SECONDS,
        whole_number(1, "seconds"),
        "Seconds per channel and alert: connect, send and answer together.",
    ),
    Setting(
        "PULSE_ALERT_RUN_BUDGET_SECONDS",
        "alerts",
        "run_budget_seconds",
        DEFAULT_RUN_BUDGET_SECONDS,
        whole_number(1, "seconds"),
        "Seconds for all the alerts of one status run; alerts left are not sent.",
    ),
)

_BY_FIELD: Mapping[tuple[str, str], Setting] = {(s.resource, s.field): s for s in SETTINGS}
_BY_VARIABLE: Mapping[str, Setting] = {s.variable: s for s in SETTINGS}


def setting_of(resource: str, field: str) -> Setting | None:
    """The setting behind a resource's field (None: the field is no deployment setting)."""
    return _BY_FIELD.get((resource, field))


def setting_named(variable: str) -> Setting:
    """The setting of an environment variable; KeyError for one that is none."""
    return _BY_VARIABLE[variable]
