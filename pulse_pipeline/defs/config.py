"""Run config the data team fills in the launchpad and the backfill dialog."""

import dagster as dg
from pydantic import Field


class SyncWindowConfig(dg.Config):
    """Which days to sync, both inclusive. Leave both empty for the default trailing window."""

    start_date: str | None = Field(
        default=None,
        description=(
            "First day to sync (YYYY-MM-DD). Default: the oldest day Cost Explorer may still "
            "revise (see PULSE_DEFAULT_WINDOW)."
        ),
    )
    end_date: str | None = Field(
        default=None,
        description="Last day to sync, inclusive (YYYY-MM-DD). Default: yesterday (UTC).",
    )
