"""What-if: re-plan the latest monthly run under a scenario, without touching it.

A scenario may add events, change existing events' uplifts, change policies (threshold,
lead time, instance types...) and add workload. The stored baseline forecasts are reused
(no refit): their overlay-free values are recovered and the scenario's events applied,
so a what-if takes seconds. The result is a run of kind ``what-if`` (with
``baseline_run_id``) and files under ``reports/<yyyy-mm>/what-if/<name>/``; the monthly
files and the baseline's rows are never written.

```yaml
name: double-11-x3
events:                       # added to the catalog (same fields as catalogs/events.yaml)
  - {name: flash-sale, start: 2027-01-10, end: 2027-01-12, uplift_pct: 80, scope: fleet}
event_uplifts: {q2-product-launch: 40}     # change declared uplifts (%)
policies:                     # merged into capplan.yaml's policies.default
  lead_time_days: 60
  threshold_pct: 65
added_workload:               # extra demand from a date, in base units (cores, bytes, pods)
  - {cluster: prod-cn-east, pool: compute, resource: cpu, amount: 40, from: 2027-01-01}
```
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forecasting.events import AddedWorkload, Event, replay_events
from forecasting.policy import PoolPolicy

from ..config import ConfigError, check_policy_names, format_validation_error, load_yaml
from ..io.files import plain_name_problem, run_folder
from ..present.tables import headline
from .context import PreviousPlan, RunContext, new_run_id
from .monthly import elastic_tables
from .record import RunOutputs, Steps, records
from .render import render_files, report_inputs
from .stages import NOTE_COLUMNS, ForecastOutputs, plan_capacity, pool_tiers

__all__ = ["Scenario", "load_scenario", "what_if_context", "what_if_job", "what_if_text"]

class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="the folder under what-if/: a plain name")
    events: list[Event] = Field(default_factory=list)
    event_uplifts: dict[str, float] = Field(default_factory=dict)
    policies: dict[str, Any] = Field(default_factory=dict)
    added_workload: list[AddedWorkload] = Field(default_factory=list)

    @field_validator("name", mode="before")
    @classmethod
    def _plain_name(cls, name: Any) -> Any:
        """The name becomes a folder: ``..``, ``.x``, ``a/b``, an absolute path would leave ``what-if/``."""
        problem = plain_name_problem(name) if isinstance(name, str) else None
        if problem:
            raise ValueError(f"must be a plain folder name (letters, digits, '.', '_', '-'; no leading dot): it {problem}")
        return name


def load_scenario(data: dict | None, where: str) -> Scenario:
    """Validate a scenario (from a YAML file or given inline); errors name ``where`` and the field."""
    try:
        scenario = Scenario.model_validate(data or {})
        PoolPolicy.model_validate(scenario.policies)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(where, exc)) from None
    return scenario


def scenario_from(path: str | Path | None, inline: dict | None) -> Scenario:
    """The scenario of a request: a YAML file, an inline mapping, or a plain re-plan."""
    if path:
        return load_scenario(load_yaml(Path(path)), str(path))
    if inline is not None:
        return load_scenario(inline, "scenario")
    return Scenario(name="replan")


def what_if_context(base: RunContext, scenario: Scenario, as_of: dt.date | None = None) -> RunContext:
    """The what-if run's context: the latest monthly run as baseline (its as-of date unless
    given), the scenario's events and uplifts added to the catalog, its policies merged."""
    store = base.store
    baseline = store.latest_run("monthly")
    if not baseline:
        raise ConfigError(f"{store.path}: no successful monthly run to compare with; run `capplan run` first")
    day = as_of or pd.Timestamp(store.run(baseline)["as_of"]).date()
    known = {e.name for e in base.events}
    unknown = sorted(set(scenario.event_uplifts) - known)
    if unknown:
        raise ConfigError(f"scenario {scenario.name!r}: event_uplifts: unknown event(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    events = [e.model_copy(update={"uplift_pct": scenario.event_uplifts[e.name]}) if e.name in scenario.event_uplifts else e
              for e in base.events] + list(scenario.events)
    cfg = base.cfg
    if scenario.policies:
        default = PoolPolicy.model_validate({**cfg.policies.default.model_dump(), **scenario.policies})
        cfg = cfg.model_copy(update={"policies": cfg.policies.model_copy(update={"default": default})})
        check_policy_names(cfg, base.catalog, f"scenario {scenario.name!r}")  # before any forecasting
    return dataclasses.replace(base, cfg=cfg, events=events, as_of=day, kind="what-if", baseline_run_id=baseline,
                               run_id=new_run_id(day, "what-if", base.flow_run_id))


def what_if_job(scenario: Scenario):
    """The job (see :data:`pipelines.jobs.record.Job`) re-planning the baseline under ``scenario``."""

    def job(ctx: RunContext, steps: Steps) -> RunOutputs:
        store, base_id = ctx.store, ctx.baseline_run_id
        assert base_id is not None
        inventory, storage_pools = store.table("inventory", base_id), store.table("storage_pools", base_id)
        forecasts, overlays = replay_events(store.table("forecasts", base_id), ctx.events, ctx.as_of,
                                            pool_tiers(inventory, storage_pools), scenario.added_workload)
        notes = store.table("forecast_notes", base_id)
        fc = ForecastOutputs(forecasts, overlays, store.table("backtest_scores", base_id),
                             notes if len(notes) else pd.DataFrame(columns=NOTE_COLUMNS))
        history = store.pool_samples(*ctx.window, read_only=True)
        baseline = PreviousPlan.load(store, base_id)
        plan = steps.run("plan-capacity", plan_capacity, ctx, inventory, storage_pools, fc, history, baseline)
        inputs = report_inputs(ctx, plan, fc, history, store.table("data_quality", base_id), base_id,
                               title=f"What-if '{scenario.name}' against {base_id}")
        files = steps.run("render-report", render_files, inputs, plan)
        tables = {"forecasts": fc.forecasts, "forecast_overlays": fc.overlays, "capacity": plan.capacity,
                  "headroom": plan.headroom, "decisions": plan.decisions, "plans": plan.actions,
                  "fleet_costs": plan.fleet_costs, "plan_diffs": plan.diff, "event_effects": plan.effects,
                  **elastic_tables(plan)}
        before = float(baseline.actions["monthly_cost_usd"].sum()) if len(baseline.actions) else 0.0
        summary = {**plan.summary, "headline": f"What-if '{scenario.name}': {headline(plan.pools, ctx.as_of)}",
                   "scenario": scenario.name, "baseline_run_id": base_id, "baseline_monthly_cost_usd": before,
                   "baseline_actions": int(len(baseline.actions)),
                   "diff": records(plan.diff) if len(plan.diff) else []}
        return RunOutputs(tables, run_folder(ctx.report_root, ctx.as_of, scenario.name), files, summary, records(plan.pools))

    return job


def what_if_text(result_summary: dict, run_id: str, report: Path | str) -> str:
    """The CLI's account of a what-if: cost and actions before and after, what moved."""
    before, after = result_summary["baseline_monthly_cost_usd"], result_summary["added_monthly_cost_usd"]
    lines = [f"what-if '{result_summary['scenario']}' (run {run_id}) against baseline {result_summary['baseline_run_id']}:",
             f"  added monthly cost ${before:,.0f} -> ${after:,.0f} ({after - before:+,.0f})",
             f"  actions {result_summary['baseline_actions']} -> {result_summary['actions']}"]
    for r in result_summary["diff"]:
        lines.append(f"  {r['cluster']}/{r['pool']}/{r['resource']}: trigger {r['trigger_before'] or '-'} -> "
                     f"{r['trigger_after'] or '-'}, nodes {r['nodes_before']} -> {r['nodes_after']}")
    lines.append(f"  report: {report}")
    return "\n".join(lines)
