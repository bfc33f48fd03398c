"""The code location's resources, filled from the environment by `pulse_pipeline.settings`.

`resources_from_environment` runs when the code location loads (never at import). A variable
that is set becomes an `EnvVar` field, so the UI's Resources page names the variable and each
run reads its value when it starts; one that is unset gives the field its default, shown as
is. An invalid value fails the load with one sentence naming the variable (never its value),
and fails a run again if the run's environment differs (`setting_fields.SettingsResource`).
`DATABASE_URL` has no default: without it every run and tick refuses to start rather than
writing anywhere else (the demo and the tests set it to their embedded SQLite or throw-away
PostgreSQL explicitly).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from pulse_pipeline.defs.resources import (
    AlertChannels,
    AwsCostExplorer,
    CostSettings,
    EcbRates,
    ManualRequestLimits,
    PulseDatabase,
)
from pulse_pipeline.defs.setting_fields import SettingsResource
from pulse_pipeline.settings import SETTINGS, Setting, SettingError

__all__ = ["RESOURCES", "SETTINGS", "SettingError", "resources_from_environment"]

RESOURCES: dict[str, type[SettingsResource]] = {
    resource.resource_key: resource
    for resource in (
        PulseDatabase,
        AwsCostExplorer,
        EcbRates,
        CostSettings,
        AlertChannels,
        ManualRequestLimits,
    )
}


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
            setting.parse(value)  # raises SettingError
        if value or setting.required:
            # Without a required one, the run reads it when it starts, and refuses to run.
            fields[setting.resource][setting.field] = _env_var(setting)
    return {name: RESOURCES[name](**fields[name]) for name in RESOURCES}
