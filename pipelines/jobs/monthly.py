"""The monthly job (ingest -> forecast -> plan -> report) and the ingest-only job.

Each is a :data:`pipelines.jobs.record.Job`: it computes and returns :class:`RunOutputs`;
:func:`pipelines.jobs.record.execute` records, commits and publishes them.
"""

from __future__ import annotations

import pandas as pd

from forecasting.frames import check_frame
from forecasting.planning import PlanOutputs

from ..io.files import run_folder
from ..io.sources import IngestError, IngestResult, ingest
from ..present.tables import headline
from .context import PreviousPlan, RunContext
from .record import RunOutputs, Steps, records
from .render import render_files, report_inputs
from .pastplans import score_past_plans
from .stages import (
    ForecastOutputs, daily_history, events_frame, forecast_pools, local_fan_out, plan_capacity, pool_tiers,
    require_prices, unexplained_peaks,
)

__all__ = ["monthly_job", "ingest_job", "ingest_history", "load_history", "forecast_demand", "plan_tables"]


def ingest_history(ctx: RunContext) -> IngestResult:
    """Bring the run's history window into DuckDB from the configured source."""
    result = ingest(ctx.cfg, ctx.store, ctx.as_of, ctx.window, Steps.progress("ingest"), ctx.events)
    check_frame(result.inventory, "inventory", "ingest output")
    return result


def load_history(ctx: RunContext) -> pd.DataFrame:
    """The pool history of the run's window (``cluster, pool, resource, kind, ts, value``);
    an empty window is an error that says to ingest first."""
    history = ctx.store.pool_samples(*ctx.window)
    if history.empty:
        raise IngestError(f"no pool history in {ctx.store.path} for the {ctx.window.days} days before {ctx.as_of}; "
                          "run the ingest first")
    return history


def forecast_demand(ctx: RunContext, history: pd.DataFrame, tiers: dict, fan_out=None) -> ForecastOutputs:
    """Daily-peak forecasts of every pool series (see :func:`forecast_pools`)."""
    return forecast_pools(ctx, history, tiers, fan_out or local_fan_out(Steps.progress("forecast")))


def plan_tables(plan: PlanOutputs, fc: ForecastOutputs) -> dict[str, pd.DataFrame]:
    """The plan's and the forecast's run tables."""
    return {"forecasts": fc.forecasts, "forecast_overlays": fc.overlays, "backtest_scores": fc.scores,
            "forecast_notes": fc.notes, "capacity": plan.capacity, "headroom": plan.headroom, "decisions": plan.decisions,
            "plans": plan.actions, "fleet_costs": plan.fleet_costs, "plan_diffs": plan.diff, "event_effects": plan.effects,
            "unexplained_peaks": plan.spikes, **elastic_tables(plan)}


def elastic_tables(plan: PlanOutputs) -> dict[str, pd.DataFrame]:
    """The limits', quotas' and commitments' run tables."""
    e = plan.elastic
    return {"limit_runway": e.limits, "quotas": e.quotas, "quota_usage": e.quota_usage, "pool_costs": e.pool_costs,
            "commitments": e.ladder}


def monthly_job(ctx: RunContext, steps: Steps) -> RunOutputs:
    """Ingest the window, forecast every pool series, plan, and render the three files."""
    ing = steps.run("ingest-history", ingest_history, ctx)
    history = steps.run("load-history", load_history, ctx)
    require_prices(ctx, ing.inventory)
    tiers = pool_tiers(ing.inventory, ing.storage_pools)
    fc = steps.run("forecast-demand", forecast_demand, ctx, history, tiers, steps.fan_out)
    peaks = steps.run("find-unexplained-peaks", unexplained_peaks, ctx, history, tiers, steps.fan_out or local_fan_out())
    track, record = steps.run("score-past-plans", score_past_plans, ctx, daily_history(history))
    previous = PreviousPlan.before(ctx.store, ctx.run_id)
    plan = steps.run("plan-capacity", plan_capacity, ctx, ing.inventory, ing.storage_pools, fc, history, previous, peaks,
                     record)
    inputs = report_inputs(ctx, plan, fc, history, ing.quality, previous.run_id if previous else None)
    inputs.ingest_warnings = list(ing.warnings)
    inputs.track_record, inputs.track_summary = track, record
    files = steps.run("render-report", render_files, inputs, plan)
    tables = {"inventory": ing.inventory, "storage_pools": ing.storage_pools, "events": events_frame(ctx.events),
              "data_quality": ing.quality, "track_record": track, **plan_tables(plan, fc)}
    summary = {**plan.summary, "headline": headline(plan.pools, ctx.as_of),
               "ingest": {"rows": ing.rows, "series": ing.series, "new_series": ing.new_series, "warnings": ing.warnings,
                          "cost": ing.cost},
               "track_record": record}
    return RunOutputs(tables, run_folder(ctx.report_root, ctx.as_of), files, summary,
                      records(plan.pools), fc.notes)


def ingest_job(ctx: RunContext, steps: Steps) -> RunOutputs:
    """Ingest only: pull the window and snapshot the inventory (no files)."""
    ing = steps.run("ingest-history", ingest_history, ctx)
    summary = {"rows": ing.rows, "series": ing.series, "new_series": ing.new_series, "warnings": ing.warnings,
               "cost": ing.cost}
    return RunOutputs({"inventory": ing.inventory, "storage_pools": ing.storage_pools, "data_quality": ing.quality},
                      run_folder(ctx.report_root, ctx.as_of), {}, summary)
