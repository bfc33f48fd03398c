"""Resource fields filled by deployment settings (`pulse_pipeline.settings`), and the one place
a resource's values are parsed: `SettingsResource`, the base of every resource with settings.
"""

from typing import Any, ClassVar

import dagster as dg
from pydantic import Field, model_validator

from pulse_pipeline.settings import setting_named, setting_of


def read_at_run_start(value: Any) -> bool:
    """An `EnvVar` (or `EnvVar.int`) field: its value is read, and parsed, when a run starts."""
    return isinstance(value, dg.EnvVar) or hasattr(value, "env_var_name")


def from_setting(variable: str) -> Any:
    """A field filled by a deployment setting: its default and description are the setting's."""
    setting = setting_named(variable)
    if setting.required:
        return Field(description=setting.description)
    return Field(default=setting.default, description=setting.description)


class SettingsResource(dg.ConfigurableResource):
    """A resource whose fields are deployment settings (`pulse_pipeline.settings`).

    Every value given to a field goes through its setting's parser, as the text it would have
    been in the environment: a value given in code, and an `EnvVar`'s once the run has read it,
    so a run whose environment differs from the load's fails with the sentence the load gave.
    """

    resource_key: ClassVar[str]  # its key in the code location, as settings rows name it

    @model_validator(mode="before")
    @classmethod
    def _parsed_by_their_settings(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        parsed = dict(values)
        for name, value in values.items():
            setting = setting_of(cls.resource_key, name)
            if value in (None, "") or read_at_run_start(value):
                continue  # unset, or parsed here again once the run has read it
            if setting and setting.parsed_at_run_start:
                parsed[name] = setting.parse(value if isinstance(value, str) else str(value))
        return parsed
