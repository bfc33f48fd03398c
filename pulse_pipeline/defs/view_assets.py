"""The assets of PULSE's cost views (monthly_costs_eur, focus_costs): materializing one checks
that the view answers and records what it holds."""

import dagster as dg
import sqlalchemy as sa

from pulse_pipeline.db.views import FOCUS_COSTS_VIEW, MONTHLY_COSTS_VIEW, View, view_summary
from pulse_pipeline.defs.assets import GROUP
from pulse_pipeline.defs.keys import DAILY_COSTS, FOCUS_COSTS, MONTHLY_COSTS, OWNERS, TAGS
from pulse_pipeline.defs.resources import PulseDatabase


def view_schema(view: View) -> dg.TableSchema:
    """A view's columns, with what each means."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, meaning) for name, type_, meaning in view.columns]
    )


def _view_asset(key: dg.AssetKey, view: View) -> dg.AssetsDefinition:
    """An asset for one of PULSE's cost views: materializing it checks the view and counts it."""

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds={"sql"},
        deps=[DAILY_COSTS],
        owners=OWNERS,
        tags=TAGS,
        description=(
            f"{view.description}\n\nA view over CostRecord created by `pulse-pipeline db "
            "upgrade`: always as current as daily_costs_eur, so nothing is copied and AWS is "
            "never called. Materializing it checks that the view answers on PULSE's database "
            "and records its row count and a summary."
        ),
        metadata={"dagster/table_name": view.name, "dagster/column_schema": view_schema(view)},
    )
    def view_asset(
        context: dg.AssetExecutionContext, pulse_db: PulseDatabase
    ) -> dg.MaterializeResult:
        with pulse_db.begin() as conn:
            if view.name not in sa.inspect(conn).get_view_names():
                raise dg.Failure(
                    description=(
                        f"the view {view.name} is missing from PULSE's database; run "
                        "`pulse-pipeline db upgrade`"
                    ),
                    allow_retries=False,
                )
            summary = view_summary(conn, view)
        context.log.info(f"{view.name}: {summary}")
        rows = summary.pop("rows")
        shown = {name: value for name, value in summary.items() if value is not None}
        return dg.MaterializeResult(metadata={"dagster/row_count": rows, **shown})

    return view_asset


monthly_costs_eur = _view_asset(MONTHLY_COSTS, MONTHLY_COSTS_VIEW)
focus_costs = _view_asset(FOCUS_COSTS, FOCUS_COSTS_VIEW)
