"""The job's stages as plain functions: frames and a :class:`RunContext` in, frames out.

They call the pure core (``forecasting``) and never touch Prefect; the jobs in
:mod:`pipelines.jobs.monthly` and :mod:`pipelines.jobs.whatif` chain them, and the
notebook calls them directly. Each checks the frames it receives against the contracts in
:mod:`forecasting.frames`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from forecasting.engine import ForecastResult, forecast_panel
from forecasting.events import OVERLAY_COLUMNS, Event, Scope, events_for, occurrences
from forecasting.frames import QUANTILE_COLUMNS, check_frame, make_series_id
from forecasting.planning import PlanInputs, PlanOutputs, make_plan
from forecasting.policy import UNKNOWN_INSTANCE_TYPE, CatalogError, PoolPolicy
from forecasting.spikes import find_unexplained_spikes

from ..config import Config
from ..domain import PoolKey
from .context import PreviousPlan, RunContext

__all__ = ["ForecastOutputs", "FanOut", "pool_tiers", "forecast_pools", "plan_capacity", "require_prices",
           "policy_lookup", "daily_history", "events_frame", "NOTE_COLUMNS"]

FORECAST_KEYS = ["cluster", "pool", "resource", "kind"]
NOTE_COLUMNS = ["series_id", "cluster", "pool", "resource", "kind", "severity", "message"]
#: Maps the panel forecast over jobs: ``(jobs, horizon_days, model, level, workers) -> {series_id: result}``.
FanOut = Callable[[list, float, str, float, "int | None"], "dict[str, ForecastResult | Exception]"]


@dataclass
class ForecastOutputs:
    """Daily-peak ``forecasts``, what each event added (``overlays``: ``series_id, ts,
    event, contribution``), backtest ``scores``, and ``notes`` (:data:`NOTE_COLUMNS`):
    severity ``error`` for a series that could not be forecast, ``note`` for repairs."""

    forecasts: pd.DataFrame
    overlays: pd.DataFrame
    scores: pd.DataFrame
    notes: pd.DataFrame

    @property
    def failures(self) -> pd.DataFrame:
        return self.notes[self.notes["severity"] == "error"]


def policy_lookup(cfg: Config) -> Callable[[str, str, str | None], PoolPolicy]:
    """``(cluster, pool, tier) -> PoolPolicy``, memoised."""
    cache: dict = {}

    def lookup(cluster: str, pool: str, tier: str | None = None) -> PoolPolicy:
        key = (cluster, pool, tier)
        if key not in cache:
            cache[key] = cfg.policies.for_pool(cluster, pool, tier)
        return cache[key]

    return lookup


def pool_tiers(inventory: pd.DataFrame, storage_pools: pd.DataFrame) -> dict[PoolKey, str]:
    """Each pool's tier, for event scopes; storage pools have tier ``storage``."""
    tiers = {PoolKey(r.cluster, r.pool): r.tier for r in inventory[["cluster", "pool", "tier"]].drop_duplicates().itertuples()}
    return tiers | {PoolKey(r.cluster, r.pool): "storage" for r in storage_pools.itertuples()}


def daily_history(history: pd.DataFrame) -> pd.DataFrame:
    """Daily peaks of pool history. In and out: ``cluster, pool, resource, kind, ts, value``."""
    if history.empty:
        return history
    # grouped on the floored days without copying the frame (700 MB at 100 clusters)
    day = history["ts"].dt.floor("D")
    return history.groupby([*(history[k] for k in FORECAST_KEYS), day])["value"].max().reset_index()


def events_frame(events: list[Event]) -> pd.DataFrame:
    """The events catalog as the ``events`` table's rows."""
    return pd.DataFrame([{
        "name": e.name, "kind": e.kind, "start_date": e.start, "end_date": e.end, "uplift_pct": e.uplift_pct,
        "recurring": e.recurring, "scope_json": e.scope.model_dump_json(), "reason": e.reason,
    } for e in events])


def forecast_pools(ctx: RunContext, history: pd.DataFrame, tiers: dict[PoolKey, str], fan_out: FanOut,
                   masks: dict[tuple, list[Event]] | None = None) -> ForecastOutputs:
    """Daily-peak forecast of every pool demand and storage-use series.

    In: pool history (``cluster, pool, resource, kind, ts, value``) and each pool's tier
    (for event scopes). ``fan_out`` maps the panel forecast over the series (a local
    process pool, or Dask); a requests series is sent with the id of its usage series, whose
    trend it may follow (:func:`forecasting.engine.forecast_panel`). Out: :class:`ForecastOutputs`; ``forecasts`` has ``series_id,
    cluster, pool, resource, kind, resolution, ts, yhat, yhat_lower, yhat_upper,
    yhat_baseline, model``.
    """
    check_frame(history, "pool_history", "forecast input")
    fcfg = ctx.cfg.forecasting
    jobs, dims = [], {}
    for key, g in history[history["kind"] != "capacity"].groupby(FORECAST_KEYS, sort=True):
        cluster, pool, resource, kind = key
        sid = make_series_id(cluster=cluster, pool=pool, resource=resource, kind=kind)
        d = {"cluster": cluster, "pool": pool, "tier": tiers.get(PoolKey(cluster, pool), pool), "resource": resource, "kind": kind}
        dims[sid] = d
        # requests may follow their pool's usage trend (the engine's backtest decides)
        follows = make_series_id(cluster=cluster, pool=pool, resource=resource, kind="usage") if kind == "requests" else None
        jobs.append((sid, g[["ts", "value"]].reset_index(drop=True), events_for(ctx.events, d) + (masks or {}).get(key, []),
                     follows))
    results = fan_out(jobs, fcfg.horizon_days, fcfg.model, fcfg.level_pct, fcfg.workers)
    frames, overlays, scores, notes = [], [], [], []
    for sid, res in results.items():
        d = {k: v for k, v in dims[sid].items() if k != "tier"}
        if isinstance(res, Exception):
            notes.append({"series_id": sid, **d, "severity": "error", "message": str(res)})
            continue
        f = res.frame
        frames.append(pd.DataFrame({
            "series_id": sid, **d, "resolution": "1d-peak", "ts": f["ts"], "yhat": f["yhat"],
            "yhat_lower": f["yhat_lower"], "yhat_upper": f["yhat_upper"], "yhat_baseline": f["yhat_baseline"], "model": f["model"],
            **{q: f[q] for q in QUANTILE_COLUMNS}, "dependence": res.dependence,
        }))
        if len(res.contributions):
            overlays.append(res.contributions.assign(series_id=sid)[OVERLAY_COLUMNS])
        if not res.scores.empty:
            scores.append(res.scores.assign(series_id=sid))
        notes += [{"series_id": sid, **d, "severity": "note", "message": w} for w in res.warnings]
    forecasts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["series_id", *FORECAST_KEYS, "ts"])
    return ForecastOutputs(
        forecasts=forecasts,
        overlays=pd.concat(overlays, ignore_index=True) if overlays else pd.DataFrame(columns=OVERLAY_COLUMNS),
        scores=pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(),
        notes=pd.DataFrame(notes, columns=NOTE_COLUMNS),
    )


@dataclass
class UnexplainedPeaks:
    """History peaks no declared event explains (``spikes``: ``cluster, pool, resource, kind,
    start_date, end_date, excess_pct``) and their series forecast again with them masked."""

    spikes: pd.DataFrame
    refit: pd.DataFrame

    @classmethod
    def none(cls) -> "UnexplainedPeaks":
        return cls(pd.DataFrame(columns=SPIKE_COLUMNS), pd.DataFrame())


SPIKE_COLUMNS = ["cluster", "pool", "resource", "kind", "start_date", "end_date", "excess_pct"]


def unexplained_peaks(ctx: RunContext, history: pd.DataFrame, tiers: dict[PoolKey, str], fan_out: FanOut) -> UnexplainedPeaks:
    """Find daily peaks in the history that no declared event covers
    (:func:`forecasting.spikes.find_unexplained_spikes`) and forecast those series again
    with the peaks masked, so the plan can say what each peak does to its trigger.

    In: the hourly pool history. Out: :class:`UnexplainedPeaks`."""
    daily = daily_history(history)
    rows, masks = [], {}
    start, end = ctx.window.start.date(), ctx.window.end.date()
    for key, g in daily[daily["kind"] != "capacity"].groupby(FORECAST_KEYS, sort=True):
        cluster, pool, resource, kind = key
        dims = {"cluster": cluster, "pool": pool, "tier": tiers.get(PoolKey(cluster, pool), pool), "resource": resource}
        declared = [o.window_with_ramps() for o in occurrences(events_for(ctx.events, dims), start, end) if o.end is not None]
        found = find_unexplained_spikes(g.set_index("ts")["value"], declared)
        for r in found.itertuples():
            rows.append({"cluster": cluster, "pool": pool, "resource": resource, "kind": kind, "start_date": r.start,
                         "end_date": r.end, "excess_pct": r.excess_pct})
            masks.setdefault(key, []).append(Event(name=f"unexplained peak {r.start}", kind="holiday", start=r.start, end=r.end,
                                                   scope=Scope(resources=[resource])))
    spikes = pd.DataFrame(rows, columns=SPIKE_COLUMNS)
    if spikes.empty:
        return UnexplainedPeaks.none()
    # vectorised: a Python loop over the rows' keys took 28 s at 100 clusters (9.5M rows)
    subset = history[pd.MultiIndex.from_frame(history[FORECAST_KEYS]).isin(list(masks))]
    return UnexplainedPeaks(spikes, forecast_pools(ctx, subset, tiers, fan_out, masks).forecasts)


def require_prices(ctx: RunContext, inventory: pd.DataFrame) -> None:
    """Stop with a :class:`CatalogError` that names every instance type of the inventory
    missing from the catalog (and gives the lines to paste): nodes cannot be sized or
    costed without it. The monthly job calls it right after the ingest, before forecasting, so
    it fails in seconds (a what-if re-plans an inventory that passed it)."""
    unlabelled = inventory[inventory["instance_type"] == UNKNOWN_INSTANCE_TYPE]
    if len(unlabelled):
        raise CatalogError(f"{len(unlabelled)} node(s) have no instance type (e.g. {unlabelled['node'].iloc[0]} in "
                           f"{unlabelled['cluster'].iloc[0]}/{unlabelled['pool'].iloc[0]}): they cannot be sized or priced; "
                           "give them the node.kubernetes.io/instance-type label (allow-list it in kube-state-metrics), "
                           "or set source.prometheus.instance_type_label")
    missing = ctx.catalog.missing_instance_types(inventory)
    if missing:
        raise CatalogError(f"{ctx.cfg.catalogs.instances}: {missing[0]}. Add them under instance_types (sizes estimated "
                           f"from the nodes' allocatable: check them and fill in the prices):\n{missing[1]}")


def plan_capacity(ctx: RunContext, inventory: pd.DataFrame, storage_pools: pd.DataFrame, fc: ForecastOutputs,
                  history: pd.DataFrame, previous: PreviousPlan | None = None, peaks: UnexplainedPeaks | None = None,
                  track_record: dict | None = None) -> PlanOutputs:
    """The run's plan (:func:`forecasting.planning.make_plan`) from its frames and context.

    In: the inventory, storage pools (``cluster, pool, capacity``), the forecasts, the
    hourly pool history (its daily peaks give the measured peaks), the plan to diff against,
    the unexplained peaks (None: not searched) and the track record summary (None: not scored);
    the autoscaled pools' limits come from the store, quotas and commitments from the context.
    """
    cfg = ctx.cfg
    limits = ctx.store.pool_limits(*ctx.window, read_only=ctx.kind == "what-if")

    return make_plan(PlanInputs(
        as_of=ctx.as_of, horizon_days=cfg.forecasting.horizon_days, run_id=ctx.run_id, inventory=inventory,
        storage_pools=storage_pools, forecasts=fc.forecasts, overlays=fc.overlays, failures=fc.failures,
        daily=daily_history(history), policy_of=policy_lookup(cfg), catalog=ctx.catalog, events=ctx.events,
        thresholds={"cpu": cfg.policies.default.threshold_pct, "storage": cfg.policies.default.storage_threshold_pct},
        events_file=str(cfg.catalogs.events), spikes=peaks.spikes if peaks else None,
        spike_refit=peaks.refit if peaks else pd.DataFrame(), previous=previous, track_record=track_record,
        limits=limits, hourly=history, quotas=ctx.quotas, commitments=ctx.commitments,
        max_late_risk_pct=cfg.policies.default.max_late_risk_pct,
    ))


def local_fan_out(progress: Callable[[int, int, str], None] | None = None) -> FanOut:
    """The default fan-out: a local process pool over all cores (``forecasting.workers``)."""

    def run(jobs, horizon_days, model, level, workers):
        return forecast_panel(jobs, horizon_days, model=model, level=level, peak=True, workers=workers,
                              progress=(lambda done, total: progress(done, total, "series")) if progress else None)

    return run

