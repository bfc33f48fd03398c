"""Every deployment setting, in one place: environment variable -> resource field, validated.

`resources_from_environment` runs when the code location loads (never at import). A variable
that is set becomes an `EnvVar` field, so the UI's Resources page names the variable and each
run reads its value when it starts; one that is unset gives the field its default, shown as
is. An invalid value fails the load with one sentence naming the variable (never its value),
and fails a run again if the run's environment differs. `DATABASE_URL` has no default: without
it every run and tick refuses to start rather than writing anywhere else (the demo and the
tests set it to their embedded SQLite or throw-away PostgreSQL explicitly).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import ValidationError

from pulse_pipeline.aws.cost_explorer import DEFAULT_MAX_PAGES
from pulse_pipeline.db.urls import DatabaseUrlError, to_sqlalchemy_url
from pulse_pipeline.defs.resources import (
    AlertChannels,
    AwsCostExplorer,
    CostSettings,
    EcbRates,
    ManualRequestLimits,
    PulseDatabase,
)
from pulse_pipeline.sync_window import REVISABLE


class SettingError(ValueError):
    """A deployment setting has a value pulse_pipeline cannot use."""


@dataclass(frozen=True)
class Setting:
    """One environment variable and the resource field it fills."""

    variable: str
    resource: str
    field: str
    default: Any = None
    required: bool = False


SETTINGS = (
    Setting("DATABASE_URL", "pulse_db", "url", required=True),
    Setting(
        "PULSE_DB_CONNECT_TIMEOUT_SECONDS",
        "pulse_db",
        "connect_timeout_seconds",
        PulseDatabase.model_fields["connect_timeout_seconds"].default,
    ),
    Setting(
        "PULSE_DB_STATEMENT_TIMEOUT_SECONDS",
        "pulse_db",
        "statement_timeout_seconds",
        PulseDatabase.model_fields["statement_timeout_seconds"].default,
    ),
    Setting("PULSE_COST_METRIC", "settings", "metric", CostSettings.model_fields["metric"].default),
    Setting("PULSE_RECORD_TYPES", "settings", "record_types", ""),
    Setting("PULSE_MAX_PAGES", "settings", "max_pages", DEFAULT_MAX_PAGES),
    Setting(
        "PULSE_COST_FRESHNESS_HOURS",
        "settings",
        "freshness_hours",
        CostSettings.model_fields["freshness_hours"].default,
    ),
    Setting(
        "PULSE_ECB_HISTORY_URL", "ecb", "history_url", EcbRates.model_fields["history_url"].default
    ),
    Setting(
        "PULSE_MANUAL_SYNC_INTERVAL_MINUTES",
        "request_limits",
        "sync_interval_minutes",
        ManualRequestLimits.model_fields["sync_interval_minutes"].default,
    ),
    Setting("PULSE_DEFAULT_WINDOW", "settings", "default_window", REVISABLE),
    Setting("AWS_PROFILE", "aws", "profile_name"),
    # botocore reads AWS_DEFAULT_REGION itself, but not AWS_REGION.
    Setting("AWS_REGION", "aws", "region_name"),
    Setting("PULSE_ALERT_WEBHOOK_URL", "alerts", "webhook_url", ""),
    Setting("PULSE_DAGSTER_UI_URL", "alerts", "dagster_ui_url", ""),
    Setting("PULSE_ALERT_SMTP_HOST", "alerts", "smtp_host", ""),
    Setting(
        "PULSE_ALERT_SMTP_PORT",
        "alerts",
        "smtp_port",
        AlertChannels.model_fields["smtp_port"].default,
    ),
    Setting("PULSE_ALERT_SMTP_USER", "alerts", "smtp_user", ""),
    Setting("PULSE_ALERT_SMTP_PASSWORD", "alerts", "smtp_password", ""),
    Setting("PULSE_ALERT_SMTP_FROM", "alerts", "smtp_from", ""),
    Setting("PULSE_ALERT_SMTP_TO", "alerts", "smtp_to", ""),
    Setting("PULSE_TELEGRAM_BOT_TOKEN", "alerts", "telegram_bot_token", ""),
    Setting("PULSE_TELEGRAM_CHAT_ID", "alerts", "telegram_chat_id", ""),
    Setting(
        "PULSE_TELEGRAM_API_URL",
        "alerts",
        "telegram_api_url",
        AlertChannels.model_fields["telegram_api_url"].default,
    ),
    Setting(
        "PULSE_ALERT_DEADLINE_SECONDS",
        "alerts",
        "deadline_seconds",
        AlertChannels.model_fields["deadline_seconds"].default,
    ),
    Setting(
        "PULSE_ALERT_RUN_BUDGET_SECONDS",
        "alerts",
        "run_budget_seconds",
        AlertChannels.model_fields["run_budget_seconds"].default,
    ),
)

RESOURCES: dict[str, type[dg.ConfigurableResource]] = {
    "pulse_db": PulseDatabase,
    "aws": AwsCostExplorer,
    "ecb": EcbRates,
    "settings": CostSettings,
    "alerts": AlertChannels,
    "request_limits": ManualRequestLimits,
}


def variable_of(resource_class: str, field: str) -> str | None:
    """The environment variable behind a resource field, e.g. `CostSettings.record_types`."""
    for setting in SETTINGS:
        if RESOURCES[setting.resource].__name__ == resource_class and setting.field == field:
            return setting.variable
    return None


def _check_database_url(value: str) -> None:
    try:
        to_sqlalchemy_url(value)
    except DatabaseUrlError as error:  # its message never quotes the URL
        raise SettingError(str(error)) from None


def _check_value(setting: Setting, value: str) -> None:
    """Raise SettingError if the resource would reject `value` for its field."""
    if setting.variable == "DATABASE_URL":
        _check_database_url(value)
        return
    try:
        RESOURCES[setting.resource](**{setting.field: value})
    except ValidationError as error:
        # Only this field's errors: a resource with a required field (pulse_db.url) misses it here.
        reasons = [e["msg"] for e in error.errors() if e["loc"] == (setting.field,)]
        if reasons:
            reason = reasons[0].removeprefix("Value error, ")
            raise SettingError(f"{setting.variable} is invalid: {reason}") from None


def _env_var(setting: Setting) -> Any:
    """The field's EnvVar: Dagster reads whole-number fields with `EnvVar.int`."""
    annotation = RESOURCES[setting.resource].model_fields[setting.field].annotation
    return dg.EnvVar.int(setting.variable) if annotation is int else dg.EnvVar(setting.variable)


def resources_from_environment(environ: Mapping[str, str]) -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, each field an `EnvVar` when its variable is set."""
    fields: dict[str, dict[str, Any]] = {name: {} for name in RESOURCES}
    for setting in SETTINGS:
        value = environ.get(setting.variable)
        if value:
            _check_value(setting, value)
            fields[setting.resource][setting.field] = _env_var(setting)
        elif setting.required:
            # The run reads it when it starts, and refuses to run without it.
            fields[setting.resource][setting.field] = _env_var(setting)
        else:
            fields[setting.resource][setting.field] = setting.default
    return {name: RESOURCES[name](**fields[name]) for name in RESOURCES}
