"""What-if: re-plan the latest monthly run under a scenario, without touching the baseline.

A scenario YAML may add events, change existing events' uplifts, change policies
(threshold, lead time, instance types...) and add workload. The stored baseline forecasts
are reused (no refit): their overlay-free bands are recovered and the scenario's events
applied, so a what-if takes seconds. The result is a run of kind ``what-if`` (with
``baseline_run_id``) and files under ``reports/<yyyy-mm>/what-if-<name>/``.

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

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecasting.events import Event, apply_overlays, events_for, occurrences
from forecasting.policy import PoolPolicy

from .config import ConfigError, format_validation_error, load_catalog, load_config, load_events, load_yaml
from .ingest import history_window
from .outputs import run_dir, write_outputs
from .report import render_report
from .stages import ForecastOutputs, daily_history, load_pool_history, plan_capacity, pool_tiers
from .store import Store

__all__ = ["Scenario", "load_scenario", "run_what_if"]


class AddedWorkload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cluster: str
    pool: str
    resource: str = Field(pattern="^(cpu|memory|pods|storage)$")
    amount: float
    from_date: dt.date = Field(alias="from")
    kinds: list[str] = Field(default_factory=lambda: ["usage", "requests"])


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    events: list[Event] = Field(default_factory=list)
    event_uplifts: dict[str, float] = Field(default_factory=dict)
    policies: dict[str, Any] = Field(default_factory=dict)
    added_workload: list[AddedWorkload] = Field(default_factory=list)


def load_scenario(path: Path) -> Scenario:
    data = load_yaml(path) or {}
    try:
        scenario = Scenario.model_validate(data)
        PoolPolicy.model_validate(scenario.policies)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    return scenario


def _rebase(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Stored forecasts -> overlay-free baseline (overlays multiply all three columns)."""
    f = forecasts.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(f["yhat"] > 0, f["yhat_baseline"] / f["yhat"], 1.0)
    f["yhat_lower"] = f["yhat_lower"] * ratio
    f["yhat_upper"] = f["yhat_upper"] * ratio
    f["yhat"] = f["yhat_baseline"]
    return f


def run_what_if(config_path: Path, scenario_path: Path | None, as_of: dt.date | None = None) -> dict:
    """Re-plan the latest monthly run (under ``scenario_path`` if given)."""
    cfg = load_config(config_path)
    scenario = load_scenario(scenario_path) if scenario_path else Scenario(name="replan")
    store = Store(cfg.path(cfg.store.path))
    base_id = store.latest_run("monthly")
    if not base_id:
        raise ConfigError(f"{cfg.path(cfg.store.path)}: no successful monthly run to compare with; run `capplan run` first")
    info = store.run(base_id)
    as_of = as_of or pd.Timestamp(info["as_of"]).date()
    events = load_events(cfg.path(cfg.catalogs.events))
    known = {e.name for e in events}
    unknown = sorted(set(scenario.event_uplifts) - known)
    if unknown:
        raise ConfigError(f"{scenario_path}: event_uplifts: unknown event(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    events = [e.model_copy(update={"uplift_pct": scenario.event_uplifts[e.name]}) if e.name in scenario.event_uplifts else e for e in events]
    events += scenario.events
    if scenario.policies:
        cfg.policies = cfg.policies.model_copy(update={"default": PoolPolicy.model_validate({**cfg.policies.default.model_dump(), **scenario.policies})})
    catalog = load_catalog(cfg.path(cfg.catalogs.instances))
    inventory = store.table("inventory", base_id)
    storage_pools = store.table("storage_pools", base_id)
    tiers = pool_tiers(inventory, storage_pools)
    base_fc = store.table("forecasts", base_id)
    frames, overlays = [], []
    for sid, f in _rebase(base_fc).groupby("series_id", sort=True):
        d = f.iloc[0]
        dims = {"cluster": d.cluster, "pool": d.pool, "tier": tiers.get((d.cluster, d.pool), d.pool), "resource": d.resource}
        f = f.sort_values("ts").reset_index(drop=True)
        occ = [o for o in occurrences(events_for(events, dims), as_of, f["ts"].max().date()) if o.end is None or o.end >= as_of]
        out, contributions = apply_overlays(f[["ts", "yhat", "yhat_lower", "yhat_upper"]], occ)
        for w in scenario.added_workload:
            if (w.cluster, w.pool, w.resource) == (d.cluster, d.pool, d.resource) and d.kind in w.kinds:
                add = np.where(out["ts"].dt.date >= w.from_date, w.amount, 0.0)
                for c in ("yhat", "yhat_lower", "yhat_upper"):
                    out[c] = out[c] + add
        if len(contributions):
            overlays.append(contributions.assign(series_id=sid)[["series_id", "ts", "event", "contribution"]])
        frames.append(f.assign(yhat=out["yhat"], yhat_lower=out["yhat_lower"], yhat_upper=out["yhat_upper"]))
    fc = ForecastOutputs(
        forecasts=pd.concat(frames, ignore_index=True),
        overlays=pd.concat(overlays, ignore_index=True) if overlays else pd.DataFrame(columns=["series_id", "ts", "event", "contribution"]),
        scores=store.table("backtest_scores", base_id),
    )
    run_id = f"{as_of:%Y-%m}-whatif-{uuid.uuid4().hex[:8]}"
    history = load_pool_history(store, as_of, cfg.forecasting.history_days)
    baseline = {"run_id": base_id, "decisions": store.table("decisions", base_id), "actions": store.table("plans", base_id),
                "context": json.loads(info.get("summary_json") or "{}").get("context", {})}
    plan = plan_capacity(cfg, catalog, events, as_of, run_id, inventory, storage_pools, fc, history, baseline)
    from .flows import report_inputs

    inputs = report_inputs(cfg, catalog, events, as_of, run_id, plan, fc, daily_history(history), store.table("data_quality", base_id), baseline)
    inputs.title = f"What-if '{scenario.name}' against {base_id}"
    files = write_outputs(run_dir(cfg.path(cfg.report.dir), f"{as_of:%Y-%m}", scenario.name), render_report(inputs), plan.document, plan.actions)
    with store.run_lock():
        store.start_run(run_id, "what-if", as_of, cfg.model_dump_json(), history_window(as_of, cfg.forecasting.history_days),
                        baseline_run_id=base_id, scenario_json=scenario.model_dump_json())
        store.finish_run(run_id, {"forecasts": fc.forecasts, "forecast_overlays": fc.overlays, "capacity": plan.capacity,
                                  "headroom": plan.headroom, "decisions": plan.decisions, "plans": plan.actions,
                                  "fleet_costs": plan.fleet_costs,
                                  "plan_diffs": plan.diff.assign(previous_run_id=base_id) if len(plan.diff) else plan.diff},
                         {}, {**plan.summary, "files": {k: str(v) for k, v in files.items()}})
    before = float(baseline["actions"]["monthly_cost_usd"].sum()) if len(baseline["actions"]) else 0.0
    after = float(plan.actions["monthly_cost_usd"].sum()) if len(plan.actions) else 0.0
    lines = [f"what-if '{scenario.name}' (run {run_id}) against baseline {base_id}:",
             f"  added monthly cost ${before:,.0f} -> ${after:,.0f} ({after - before:+,.0f})",
             f"  actions {len(baseline['actions'])} -> {len(plan.actions)}"]
    for r in plan.diff.itertuples():
        lines.append(f"  {r.cluster}/{r.pool}/{r.resource}: trigger {r.trigger_before or '-'} -> {r.trigger_after or '-'}, "
                     f"nodes {r.nodes_before} -> {r.nodes_after}")
    lines.append(f"  report: {files['report']}")
    return {"run_id": run_id, "baseline_run_id": base_id, "diff": plan.diff, "actions": plan.actions,
            "cost_before": before, "cost_after": after, "files": files, "text": "\n".join(lines)}
