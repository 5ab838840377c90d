"""A run's files from its frames: the HTML report, the CapacityPlan YAML and the plan CSV.

Pure: contents are returned, not written (:func:`pipelines.jobs.record.execute` stages
and publishes them with the run's commit).
"""

from __future__ import annotations

import pandas as pd
import yaml

from forecasting.planning import PlanOutputs

from ..present.report import ReportInputs, render_report
from ..present.tables import elastic_lines
from ..display import csv_safe
from .context import RunContext
from .stages import ForecastOutputs, daily_history

__all__ = ["report_inputs", "render_files", "plan_csv", "plan_yaml"]


def report_inputs(ctx: RunContext, plan: PlanOutputs, fc: ForecastOutputs, history: pd.DataFrame, quality: pd.DataFrame,
                  previous_run_id: str | None, title: str | None = None) -> ReportInputs:
    """Everything the report shows, from one run's frames (``history`` is the hourly pool
    history; the report draws its daily peaks)."""
    cfg = ctx.cfg
    policies = [{"match": "default", **cfg.policies.default.model_dump()}]
    for o in cfg.policies.overrides:
        m = ", ".join(f"{k}={v}" for k, v in o.match.model_dump().items() if v)
        policies.append({"match": m, **cfg.policies.default.model_dump(), **o.set})
    return ReportInputs(
        run_id=ctx.run_id, as_of=ctx.as_of, horizon_days=cfg.forecasting.horizon_days, title=title or cfg.report.title,
        decisions=plan.decisions, actions=plan.actions, capacity=plan.capacity, forecasts=fc.forecasts,
        history=daily_history(history), scores=fc.scores, quality=quality, fleet_costs=plan.fleet_costs, diff=plan.diff,
        events=ctx.events, config_yaml=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        prices_as_of=ctx.catalog.prices_as_of, catalog_rows=[t.model_dump() for t in ctx.catalog.instance_types],
        policies=policies, previous_run_id=previous_run_id, max_charts=cfg.report.max_charts, forecast_notes=fc.notes,
        headroom=plan.headroom, effects=plan.effects, spikes=plan.spikes, pools=plan.pools,
        elastic=plan.elastic, elastic_lines=elastic_lines(plan.summary.get("elastic")),
    )


def plan_csv(actions: pd.DataFrame) -> str:
    """One row per action (the ``plans`` table's columns); text cells a spreadsheet would
    run as a formula (a pool named ``=cmd|...``) start with ``'`` (:func:`csv_safe`)."""
    return csv_safe(actions).to_csv(index=False) if len(actions) else ",".join(actions.columns) + "\n"


def plan_yaml(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def render_files(inputs: ReportInputs, plan: PlanOutputs) -> dict[str, str]:
    """``report``, ``plan`` and ``csv`` contents (kinds of :data:`pipelines.io.files.OUTPUT_NAMES`)."""
    return {"report": render_report(inputs), "plan": plan_yaml(plan.document), "csv": plan_csv(plan.actions)}
