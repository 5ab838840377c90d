"""The job's stages as plain functions: read from the store, call the pure core, return
frames. Prefect tasks in :mod:`pipelines.flows` wrap these; the notebook and tests call
them directly.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from forecasting.engine import ForecastResult, forecast_panel
from forecasting.events import Event, events_for, occurrences
from forecasting.frames import make_series_id
from forecasting.headroom import decisions as decide
from forecasting.headroom import storage_capacity, usable_capacity, utilisation
from forecasting.planning import build_plan, diff_plans, fleet_cost, plan_document
from forecasting.policy import Catalog, PoolPolicy

from .config import Config
from .ingest import history_window
from .store import Store

__all__ = ["ForecastOutputs", "PlanOutputs", "pool_tiers", "load_pool_history", "forecast_pools", "plan_capacity", "policy_lookup", "daily_history"]

Progress = Callable[[int, int, str], None]
FORECAST_KEYS = ["cluster", "pool", "resource", "kind"]


@dataclass
class ForecastOutputs:
    """Daily-peak forecasts (``forecasts``), event contributions (``overlays``),
    backtest ``scores`` and series that could not be forecast (``failures``)."""

    forecasts: pd.DataFrame
    overlays: pd.DataFrame
    scores: pd.DataFrame
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class PlanOutputs:
    capacity: pd.DataFrame
    headroom: pd.DataFrame
    decisions: pd.DataFrame
    actions: pd.DataFrame
    fleet_costs: pd.DataFrame
    document: dict
    diff: pd.DataFrame
    summary: dict


def policy_lookup(cfg: Config) -> Callable[[str, str, str | None], PoolPolicy]:
    cache: dict = {}

    def lookup(cluster: str, pool: str, tier: str | None = None) -> PoolPolicy:
        key = (cluster, pool, tier)
        if key not in cache:
            cache[key] = cfg.policies.for_pool(cluster, pool, tier)
        return cache[key]

    return lookup


def pool_tiers(inventory: pd.DataFrame, storage_pools: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(cluster, pool) -> tier, for event scopes; storage pools have tier ``storage``."""
    tiers = {(r.cluster, r.pool): r.tier for r in inventory[["cluster", "pool", "tier"]].drop_duplicates().itertuples()}
    return tiers | {(r.cluster, r.pool): "storage" for r in storage_pools.itertuples()}


def load_pool_history(store: Store, as_of: dt.date, history_days: int) -> pd.DataFrame:
    """Pool-level series for the history window. Out: ``cluster, pool, resource, kind, ts, value``."""
    start, end = history_window(as_of, history_days)
    return store.pool_samples(start, end)


def daily_history(history: pd.DataFrame) -> pd.DataFrame:
    """Daily peaks of pool history. Out: ``cluster, pool, resource, kind, ts, value``."""
    if history.empty:
        return history
    h = history.copy()
    h["ts"] = h["ts"].dt.floor("D")
    return h.groupby(FORECAST_KEYS + ["ts"], as_index=False)["value"].max()


def forecast_pools(
    history: pd.DataFrame,
    events: list[Event],
    tiers: dict[tuple[str, str], str],
    horizon_days: int,
    model: str = "auto",
    level: float = 80.0,
    workers: int | None = None,
    runner: Callable | None = None,
) -> ForecastOutputs:
    """Daily-peak forecast of every pool demand and storage-use series.

    In: pool history (``cluster, pool, resource, kind, ts, value``), the events catalog
    and each pool's tier (for event scopes). ``runner`` maps the panel function over
    chunks (Prefect's task runner); default: a local process pool.
    Out: :class:`ForecastOutputs`; ``forecasts`` has ``series_id, cluster, pool,
    resource, kind, resolution, ts, yhat, yhat_lower, yhat_upper, yhat_baseline, model``.
    """
    jobs, dims = [], {}
    for key, g in history[history["kind"] != "capacity"].groupby(FORECAST_KEYS, sort=True):
        cluster, pool, resource, kind = key
        sid = make_series_id(cluster=cluster, pool=pool, resource=resource, kind=kind)
        d = {"cluster": cluster, "pool": pool, "tier": tiers.get((cluster, pool), pool), "resource": resource, "kind": kind}
        dims[sid] = d
        jobs.append((sid, g[["ts", "value"]].reset_index(drop=True), events_for(events, d)))
    results = (runner or _local_runner)(jobs, horizon_days, model, level, workers)
    frames, overlays, scores, failures, notes = [], [], [], [], []
    for sid, res in results.items():
        d = dims[sid]
        if isinstance(res, Exception):
            failures.append({"series_id": sid, **d, "error": str(res)})
            continue
        f = res.frame
        base = pd.DataFrame({
            "series_id": sid, "cluster": d["cluster"], "pool": d["pool"], "resource": d["resource"], "kind": d["kind"],
            "resolution": "1d-peak", "ts": f["ts"], "yhat": f["yhat"], "yhat_lower": f["yhat_lower"],
            "yhat_upper": f["yhat_upper"], "yhat_baseline": f["yhat_baseline"], "model": f["model"],
        })
        frames.append(base)
        if len(res.contributions):
            overlays.append(res.contributions.assign(series_id=sid)[["series_id", "ts", "event", "contribution"]])
        if not res.scores.empty:
            scores.append(res.scores.assign(series_id=sid))
        for w in res.warnings:
            notes.append({"series_id": sid, **d, "note": w})
    return ForecastOutputs(
        forecasts=pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        overlays=pd.concat(overlays, ignore_index=True) if overlays else pd.DataFrame(columns=["series_id", "ts", "event", "contribution"]),
        scores=pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(),
        failures=pd.DataFrame(failures),
        notes=pd.DataFrame(notes),
    )


def _local_runner(jobs, horizon_days, model, level, workers) -> dict[str, ForecastResult | Exception]:
    from .progress import report

    return forecast_panel(jobs, horizon_days, model=model, level=level, peak=True, workers=workers,
                          progress=lambda done, total: report("forecast", done, total, "series"))


def plan_capacity(
    cfg: Config,
    catalog: Catalog,
    events: list[Event],
    as_of: dt.date,
    run_id: str,
    inventory: pd.DataFrame,
    storage_pools: pd.DataFrame,
    fc: ForecastOutputs,
    history: pd.DataFrame,
    previous: dict | None = None,
) -> PlanOutputs:
    """Headroom, triggers, sized and costed actions, the plan document and the diff.

    ``previous`` holds the previous run's ``decisions``, ``actions`` and ``context``.
    """
    policy_of = policy_lookup(cfg)
    usable = usable_capacity(inventory, policy_of)
    if not storage_pools.empty:
        usable = pd.concat([usable, storage_capacity(storage_pools)], ignore_index=True)
    util = utilisation(fc.forecasts, usable, policy_of)
    dec = decide(util, policy_of, as_of, cfg.forecasting.horizon_days)
    drivers = _event_drivers(fc)
    actions = build_plan(dec, util, inventory, storage_pools, policy_of, catalog, as_of, drivers)
    costs = fleet_cost(inventory, policy_of, catalog)
    current = _current_capacity(inventory, storage_pools, history, usable)
    horizon_end = as_of + dt.timedelta(days=cfg.forecasting.horizon_days)
    ev_rows = []
    for o in occurrences(events, as_of, horizon_end):
        e = o.event
        growth = f"{e.uplift_pct:+g}%" if e.uplift_pct is not None else "measured from last occurrence"
        ev_rows.append({"name": e.name, "window": f"{o.start} .. {o.end or 'onwards'}", "expectedGrowth": growth,
                        "kind": e.kind, "reason": e.reason})
    doc = plan_document(
        f"capacity-plan-{as_of:%Y-%m}", run_id, as_of, actions, current, ev_rows,
        {"cpu": cfg.policies.default.threshold_pct, "storage": cfg.policies.default.storage_threshold_pct}, catalog,
    )
    context = {"events": sorted(e.name for e in events),
               "nodes": {f"{c}/{p}": int(n) for (c, p), n in inventory.groupby(["cluster", "pool"]).size().items()}}
    diff = pd.DataFrame()
    if previous:
        pc = previous.get("context", {})
        to_pairs = lambda ctx: {"events": ctx.get("events", []), "nodes": {tuple(k.split("/", 1)): v for k, v in ctx.get("nodes", {}).items()}}
        diff = diff_plans(previous["decisions"], dec, previous["actions"], actions, to_pairs(pc), to_pairs(context))
    late = dec[dec["status"] == "red"]
    summary = {
        "as_of": str(as_of), "pools": int(dec[["cluster", "pool"]].drop_duplicates().shape[0]),
        "red": int(late[["cluster", "pool"]].drop_duplicates().shape[0]),
        "amber": int(dec[dec["status"] == "amber"][["cluster", "pool"]].drop_duplicates().shape[0]),
        "actions": int(len(actions)), "added_monthly_cost_usd": float(actions["monthly_cost_usd"].sum()) if len(actions) else 0.0,
        "fleet_monthly_cost_usd": float(costs["monthly_cost_usd"].sum()) if len(costs) else 0.0,
        "first_order_by": str(actions["order_by_date"].min()) if len(actions) else None,
        "context": context,
    }
    return PlanOutputs(usable, util, dec, actions, costs, doc, diff, summary)


def _event_drivers(fc: ForecastOutputs) -> dict[tuple[str, str], list[str]]:
    if fc.overlays.empty:
        return {}
    pos = fc.overlays[fc.overlays["contribution"] > 0].merge(fc.forecasts[["series_id", "cluster", "pool"]].drop_duplicates(), on="series_id")
    return {k: sorted(g["event"].unique()) for k, g in pos.groupby(["cluster", "pool"])}


def _current_capacity(inventory: pd.DataFrame, storage_pools: pd.DataFrame, history: pd.DataFrame, usable: pd.DataFrame) -> dict:
    """The handbook's ``currentCapacity`` block, fleet-wide, from the last week of history."""
    out: dict = {}
    cpu = float(inventory["cpu_cores"].sum())
    mem = float(inventory["memory_bytes"].sum())
    util = {}
    if not history.empty:
        last = history[history["ts"] >= history["ts"].max() - pd.Timedelta(days=7)]
        for res, cap in (("cpu", cpu), ("memory", mem)):
            u = last[(last.resource == res) & (last.kind == "usage") & (last.pool != "storage")]
            if len(u) and cap > 0:
                util[res] = f"{100 * u.groupby('ts')['value'].sum().mean() / cap:.0f}%"
    out["compute"] = {"nodes": int(len(inventory)), "totalCPU": round(cpu), "totalMemory": f"{mem / 2**30:,.0f}Gi", "utilization": util}
    if not storage_pools.empty and not history.empty:
        s = history[(history.resource == "storage") & (history.kind == "usage")]
        total = float(storage_pools["capacity"].sum())
        if len(s):
            by_ts = s.groupby("ts")["value"].sum()
            used = float(by_ts.iloc[-1])
            days = max((by_ts.index[-1] - by_ts.index[0]).days, 1)
            growth = (used - float(by_ts.iloc[0])) / days * 30.44
            out["storage"] = {"totalCapacity": f"{total / 2**40:,.0f}Ti", "usedCapacity": f"{used / 2**40:,.0f}Ti",
                              "growthRate": f"{growth / 2**40:,.1f}Ti/month"}
    return out


def previous_plan(store: Store, run_id: str) -> dict | None:
    """The newest succeeded monthly run before ``run_id``: decisions, actions, context."""
    prev = store.latest_run("monthly", before=run_id)
    if not prev:
        return None
    info = store.run(prev)
    summary = json.loads(info.get("summary_json") or "{}")
    return {"run_id": prev, "decisions": store.table("decisions", prev), "actions": store.table("plans", prev),
            "context": summary.get("context", {})}
