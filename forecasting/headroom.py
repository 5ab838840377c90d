"""N+k usable capacity, utilisation, triggers, order-by dates and their risk. Pure and
hand-checkable.

Vocabulary (docs/ARCHITECTURE.md, "The numbers"): *capacity* is the sum of allocatable;
*N+k usable capacity* is what is left after losing the k largest failure units (nodes,
zones, or spot groups); *utilisation* is daily peak demand over N+k usable capacity
(storage: over raw capacity); the *trigger* is the day capacity is needed by; the
*order-by date* is the trigger minus the lead time.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import numpy as np
import pandas as pd

from .frames import QUANTILE_COLUMNS, QUANTILES
from .policy import PoolPolicy
from .risk import crossing_probability

__all__ = [
    "ALLOC_COLUMNS", "PolicyLookup", "LeadLookup", "failure_units", "lost_to_failures", "usable_capacity",
    "storage_capacity", "quantile_at", "utilisation", "measured_peaks", "decisions", "mark_for_review",
    "DECISION_COLUMNS", "UTIL_COLUMNS", "MEASURED_DAYS",
]

#: Inventory column holding each resource's allocatable, in base units.
ALLOC_COLUMNS = {"cpu": "cpu_cores", "memory": "memory_bytes", "pods": "pods", "storage": "storage_bytes"}
COMPUTE_RESOURCES = ("cpu", "memory", "pods")

PolicyLookup = Callable[[str, str, "str | None"], PoolPolicy]
#: ``(cluster, pool, tier, resource) -> (lead time in days, where it comes from)``
LeadLookup = Callable[[str, str, str, str], "tuple[int, str]"]
#: Measured peak utilisation looks at the daily peaks of this many days before the plan date.
MEASURED_DAYS = 7


def failure_units(nodes: pd.DataFrame, resource: str, unit: str, spot_together: bool = False) -> np.ndarray:
    """Allocatable of each failure unit of one pool, largest first.

    ``nodes`` holds one pool's nodes (``zone``, ``instance_type``, the allocatable columns
    and optionally ``capacity_type``). A unit is a node (or a zone's nodes); with
    ``spot_together`` the spot nodes of one instance type form one unit, because one spot
    reclaim takes many of them at once.
    """
    col = ALLOC_COLUMNS[resource]
    spot = (nodes["capacity_type"] == "spot").to_numpy() if spot_together and "capacity_type" in nodes else np.zeros(len(nodes), bool)
    rest = nodes[~spot]
    sizes = rest[col].to_numpy(dtype=float) if unit == "node" else rest.groupby("zone")[col].sum().to_numpy(dtype=float)
    if spot.any():
        sizes = np.concatenate([sizes, nodes[spot].groupby("instance_type")[col].sum().to_numpy(dtype=float)])
    return np.sort(sizes)[::-1]


def lost_to_failures(nodes: pd.DataFrame, resource: str, k: int, unit: str, spot_together: bool = False) -> tuple[float, int]:
    """Allocatable lost when the k largest failure units fail, and how many units exist
    (see :func:`failure_units`)."""
    sizes = failure_units(nodes, resource, unit, spot_together)
    return float(sizes[:k].sum()), len(sizes)


def usable_capacity(inventory: pd.DataFrame, policy_of: PolicyLookup) -> pd.DataFrame:
    """N+k usable capacity per pool and compute resource.

    Out: ``cluster, pool, tier, resource, nodes, units, failure_unit, redundancy_k,
    capacity, lost, usable, too_small`` where ``too_small`` means the pool has no more
    than k failure units (it cannot survive its N+k at all). ``failure_unit`` says
    ``node``/``zone``, with ``+spot groups`` when spot nodes fail together.
    """
    rows = []
    for (cluster, pool), g in inventory.groupby(["cluster", "pool"], sort=True):
        tier = g["tier"].iloc[0]
        p = policy_of(cluster, pool, tier)
        together = p.spot_failure == "together"
        for res in COMPUTE_RESOURCES:
            capacity = float(g[ALLOC_COLUMNS[res]].sum())
            lost, units = lost_to_failures(g, res, p.redundancy_k, p.failure_unit, together)
            has_spot = together and "capacity_type" in g and bool((g["capacity_type"] == "spot").any())
            rows.append({
                "cluster": cluster, "pool": pool, "tier": tier, "resource": res, "nodes": len(g),
                "units": units, "failure_unit": p.failure_unit + (" + spot groups" if has_spot else ""),
                "redundancy_k": p.redundancy_k, "capacity": capacity, "lost": lost, "usable": max(capacity - lost, 0.0),
                "too_small": units <= p.redundancy_k,
            })
    return pd.DataFrame(rows)


def storage_capacity(capacity: pd.DataFrame) -> pd.DataFrame:
    """Usable capacity of storage pools: no N+k is taken off (replication is the storage
    system's business), so usable is the raw capacity and the threshold applies to it.
    In: ``cluster, pool, capacity``. Out: as :func:`usable_capacity` with ``resource='storage'``."""
    out = capacity[["cluster", "pool", "capacity"]].copy()
    out["tier"] = "storage"
    out["resource"] = "storage"
    out["nodes"] = 0
    out["units"] = 0
    out["failure_unit"] = "none"
    out["redundancy_k"] = 0
    out["lost"] = 0.0
    out["usable"] = out["capacity"].astype(float)
    out["too_small"] = False
    return out


def quantile_at(frame: pd.DataFrame, q: float) -> np.ndarray:
    """Each row's ``q`` predictive quantile, linear in probability between the grid's
    columns (:data:`forecasting.frames.QUANTILE_COLUMNS`)."""
    probs = np.asarray(QUANTILES)
    if not probs[0] <= q <= probs[-1]:
        raise ValueError(f"quantile {q} is outside the forecast's grid {probs[0]}..{probs[-1]}")
    values = np.sort(frame[list(QUANTILE_COLUMNS)].to_numpy(dtype=float), axis=1)
    k = int(np.clip(np.searchsorted(probs, q, side="right") - 1, 0, len(probs) - 2))
    w = (q - probs[k]) / (probs[k + 1] - probs[k])
    return values[:, k] * (1 - w) + values[:, k + 1] * w


UTIL_COLUMNS = ["cluster", "pool", "tier", "resource", "kind", "ts", "demand", "capacity", "usable", "utilisation_pct",
                "threshold_pct", "p_cross", "required_usable"]


def _planning_demand(f: pd.DataFrame, p: PoolPolicy) -> np.ndarray:
    if p.demand_bound == "point":
        return f["yhat"].to_numpy(dtype=float)
    if p.demand_bound == "upper":
        return f["yhat_upper"].to_numpy(dtype=float)
    return quantile_at(f, 1 - p.max_late_risk_pct / 100)


def utilisation(demand: pd.DataFrame, usable: pd.DataFrame, policy_of: PolicyLookup, sizing: bool = True) -> pd.DataFrame:
    """Daily utilisation of N+k usable capacity per pool, resource and demand kind.

    In: ``demand`` (``cluster, pool, resource, kind, ts, yhat, yhat_upper`` and the quantile
    columns, optionally ``dependence``: daily peak forecasts) and ``usable`` (from
    :func:`usable_capacity`). ``demand`` out is the bound the pool's policy plans on:
    ``risk``: the (1 - max_late_risk) quantile; ``upper``: ``yhat_upper``; ``point``:
    ``yhat``. ``p_cross`` is the probability that demand has reached the threshold on or
    before that day (:func:`forecasting.risk.crossing_probability`; NaN without quantiles).
    With ``sizing``, ``required_usable`` is the N+k usable capacity the series needs for
    the policy's rule not to fire within the horizon (:func:`required_usable`; NaN when it
    does not fire now). Out: :data:`UTIL_COLUMNS`.
    """
    merged = demand.merge(usable[["cluster", "pool", "tier", "resource", "capacity", "usable"]], on=["cluster", "pool", "resource"])
    if merged.empty:
        return pd.DataFrame(columns=UTIL_COLUMNS)
    has_q = all(c in merged for c in QUANTILE_COLUMNS)
    parts = []
    for (cluster, pool, tier, res, _kind), f in merged.groupby(["cluster", "pool", "tier", "resource", "kind"], sort=True):
        p = policy_of(cluster, pool, tier)
        f = f.sort_values("ts").copy()
        if p.demand_bound == "risk" and not has_q:
            raise ValueError(f"{cluster}/{pool}/{res}: demand_bound 'risk' needs the forecast's quantile columns")
        usable_v = float(f["usable"].iloc[0])
        threshold = p.threshold_for(res)
        f["demand"] = _planning_demand(f, p)
        f["utilisation_pct"] = 100.0 * f["demand"] / usable_v if usable_v > 0 else np.inf
        f["threshold_pct"] = threshold
        dependence = float(f["dependence"].iloc[0]) if "dependence" in f else 1.0
        f["p_cross"] = crossing_probability(f, usable_v * threshold / 100, dependence) if has_q else np.nan
        fires = (f["p_cross"].iloc[-1] > p.max_late_risk_pct / 100) if p.demand_bound == "risk" else (f["utilisation_pct"] >= threshold).any()
        f["required_usable"] = required_usable(f, p, threshold, dependence) if sizing and fires else np.nan
        parts.append(f[UTIL_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def required_usable(f: pd.DataFrame, p: PoolPolicy, threshold_pct: float, dependence: float = 1.0) -> float:
    """The N+k usable capacity at which the policy's rule does not fire within the horizon.

    ``upper``/``point``: the bound's peak over the threshold. ``risk``: the smallest
    capacity whose chance of a crossing within the horizon is at most ``max_late_risk``
    (bisection on :func:`forecasting.risk.crossing_probability`, which falls as capacity
    grows); at least the (1 - risk) quantile's peak over the threshold.
    """
    peak = float(_planning_demand(f, p).max()) * 100 / threshold_pct
    if p.demand_bound != "risk":
        return peak
    r = p.max_late_risk_pct / 100

    def safe(u: float) -> bool:
        return crossing_probability(f, u * threshold_pct / 100, dependence)[-1] <= r

    lo, hi = peak, max(peak, 1e-9)
    for _ in range(60):
        if safe(hi):
            break
        lo, hi = hi, hi * 1.25
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if safe(mid) else (mid, hi)
        if hi - lo <= 1e-4 * hi:
            break
    return hi


def measured_peaks(daily: pd.DataFrame, as_of: dt.date, days: int = MEASURED_DAYS) -> pd.DataFrame:
    """Highest daily peak of the last ``days`` days before ``as_of``, per pool series.

    In: daily peaks ``cluster, pool, resource, kind, ts, value``. Out: ``cluster, pool,
    resource, kind, measured_peak``.
    """
    end = pd.Timestamp(as_of, tz="UTC")
    recent = daily[(daily["ts"] >= end - pd.Timedelta(days=days)) & (daily["ts"] < end)]
    return recent.groupby(["cluster", "pool", "resource", "kind"], as_index=False)["value"].max().rename(
        columns={"value": "measured_peak"})


def decisions(util: pd.DataFrame, policy_of: PolicyLookup, as_of: dt.date, horizon_days: int,
              lead_of: LeadLookup | None = None, measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trigger, order-by and risk per pool and resource; the binding demand kind decides.

    In: :func:`utilisation` output; ``lead_of(cluster, pool, tier, resource) -> (days,
    why)`` the effective lead time (default: the policy's); ``measured`` from
    :func:`measured_peaks`. The *trigger* (needed-by date) is the first day the policy's
    rule fires: ``risk``: P(crossed by then) exceeds max_late_risk; ``upper``/``point``:
    that bound reaches the threshold. The *binding kind* is the one that triggers first
    (else the higher forecast peak). Out: :data:`DECISION_COLUMNS`, where

    * ``measured_peak_pct``: highest daily peak of the last 7 days / N+k usable (the binding
      kind; ``measured_usage_pct`` and ``measured_requests_pct`` for both);
    * ``forecast_peak_pct``: highest planning demand over the horizon / N+k usable;
    * ``risk_pct``: chance that demand crosses the threshold before capacity ordered on the
      order-by date arrives (for a late pool: ordered today); ``horizon_risk_pct``: chance of
      a crossing within the horizon;
    * for a late pool, ``earliest_arrival_date`` (today + lead time), ``arrival_peak_pct``
      (forecast peak utilisation until then) and whether that exceeds N+k usable
      (``arrival_over_usable``: would not survive N+k failures) or raw capacity
      (``arrival_over_raw``: pods would not schedule);
    * ``status``: ``red`` (order-by today or past), ``amber`` (trigger in the horizon),
      ``green``.
    """
    if util.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    meas = {} if measured is None else {(r.cluster, r.pool, r.resource, r.kind): r.measured_peak for r in measured.itertuples()}
    rows = []
    for (cluster, pool, tier, res), g in util.groupby(["cluster", "pool", "tier", "resource"], sort=True):
        p = policy_of(cluster, pool, tier)
        kinds = {kind: _kind_outcome(k.sort_values("ts"), p) for kind, k in g.groupby("kind")}
        best = min(kinds.values(), key=lambda c: (c["trigger"] is None, c["trigger"] or dt.date.max, -c["peak"]))
        k = g[g["kind"] == best["kind"]].sort_values("ts")
        usable, capacity = float(k["usable"].iloc[0]), float(k["capacity"].iloc[0])
        lead, lead_why = lead_of(cluster, pool, tier, res) if lead_of else (p.lead_time_days, "policy")
        trigger = best["trigger"]
        order_by = trigger - dt.timedelta(days=lead) if trigger else None
        late = bool(order_by is not None and order_by <= as_of)
        arrival = as_of + dt.timedelta(days=lead)
        days = pd.DatetimeIndex(k["ts"]).date
        before_arrival = days < arrival
        p_cross = k["p_cross"].to_numpy(dtype=float)
        if late or trigger is None:
            risk = _p_before(p_cross, days, arrival)
        else:
            risk = _p_before(p_cross, days, trigger)
        demand = k["demand"].to_numpy(dtype=float)
        arrival_peak = float(demand[before_arrival].max()) if before_arrival.any() else float("nan")
        rows.append({
            "cluster": cluster, "pool": pool, "tier": tier, "resource": res, "binding_kind": best["kind"],
            "capacity": capacity, "usable": usable, "threshold_pct": best["threshold"], "demand_bound": p.demand_bound,
            "measured_peak_pct": _pct(meas.get((cluster, pool, res, best["kind"])), usable),
            "measured_usage_pct": _pct(meas.get((cluster, pool, res, "usage")), usable),
            "measured_requests_pct": _pct(meas.get((cluster, pool, res, "requests")), usable),
            "forecast_peak_pct": best["peak"], "peak_date": best["peak_date"],
            "trigger_date": trigger, "lead_time_days": lead, "lead_time_source": lead_why, "order_by_date": order_by, "late": late,
            "risk_pct": 100 * risk, "horizon_risk_pct": 100 * float(np.nanmax(p_cross)) if np.isfinite(p_cross).any() else float("nan"),
            "earliest_arrival_date": arrival if late else None,
            "arrival_peak_pct": _pct(arrival_peak, usable) if late else float("nan"),
            "arrival_over_usable": bool(late and arrival_peak >= usable),
            "arrival_over_raw": bool(late and arrival_peak >= capacity),
            "days_of_headroom": (trigger - as_of).days if trigger else horizon_days,
            "required_usable": float(g["required_usable"].max()) if g["required_usable"].notna().any() else float("nan"),
            "status": "red" if late else ("amber" if trigger else "green"), "review_reason": None,
        })
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def _kind_outcome(k: pd.DataFrame, p: PoolPolicy) -> dict:
    """Trigger and forecast peak of one demand kind (rows sorted by day)."""
    if p.demand_bound == "risk":
        hit = np.flatnonzero(k["p_cross"].to_numpy(dtype=float) > p.max_late_risk_pct / 100)
    else:
        hit = np.flatnonzero(k["utilisation_pct"].to_numpy(dtype=float) >= k["threshold_pct"].to_numpy(dtype=float))
    util = k["utilisation_pct"].to_numpy(dtype=float)
    i = int(np.argmax(util))
    return {"kind": k["kind"].iloc[0], "trigger": pd.Timestamp(k["ts"].iloc[hit[0]]).date() if len(hit) else None,
            "peak": float(util[i]), "peak_date": pd.Timestamp(k["ts"].iloc[i]).date(), "threshold": float(k["threshold_pct"].iloc[0])}


def _p_before(p_cross: np.ndarray, days: np.ndarray, day: dt.date) -> float:
    """P(crossed before ``day``): the crossing probability on the day before it (0 when
    ``day`` is the first forecast day or earlier)."""
    before = np.flatnonzero(days < day)
    if not len(before) or not np.isfinite(p_cross[before[-1]]):
        return 0.0 if not len(before) else float("nan")
    return float(p_cross[before[-1]])


def _pct(value: float | None, of: float) -> float:
    return 100.0 * value / of if value is not None and np.isfinite(value) and of > 0 else float("nan")


DECISION_COLUMNS = [
    "cluster", "pool", "tier", "resource", "binding_kind", "capacity", "usable", "threshold_pct", "demand_bound",
    "measured_peak_pct", "measured_usage_pct", "measured_requests_pct", "forecast_peak_pct", "peak_date",
    "trigger_date", "lead_time_days", "lead_time_source", "order_by_date", "late", "risk_pct", "horizon_risk_pct",
    "earliest_arrival_date", "arrival_peak_pct", "arrival_over_usable", "arrival_over_raw", "days_of_headroom",
    "required_usable", "status", "review_reason",
]
#: The demand kinds a resource is planned on (compute capacity comes from the inventory).
EXPECTED_KINDS = {"cpu": ("usage", "requests"), "memory": ("usage", "requests"), "pods": ("requests",), "storage": ("usage",)}


def mark_for_review(dec: pd.DataFrame, usable: pd.DataFrame, forecast_keys: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Keep every pool and resource in the plan, marking those without a usable forecast.

    In: :func:`decisions` output; ``usable`` (``cluster, pool, tier, resource``: every pool
    resource that has capacity); ``forecast_keys`` (``cluster, pool, resource, kind`` that
    were forecast); ``failures`` (``cluster, pool, resource, kind, message``: series that
    could not be forecast). Out: ``dec`` plus a ``red`` row with ``review_reason`` "no
    forecast: ..." for each pool resource that has capacity but no forecast at all; a
    resource forecast on only some of its kinds keeps its decision, gets a
    ``review_reason`` and is at least ``amber``.
    """
    done = set(map(tuple, forecast_keys[["cluster", "pool", "resource", "kind"]].drop_duplicates().to_numpy()))
    why = {}
    for r in failures.itertuples():
        why.setdefault((r.cluster, r.pool, r.resource), []).append(f"{r.kind}: {r.message}")
    out = dec.copy()
    extra = []
    for r in usable[["cluster", "pool", "tier", "resource"]].drop_duplicates().itertuples():
        key = (r.cluster, r.pool, r.resource)
        kinds = EXPECTED_KINDS.get(r.resource, ())
        have = [k for k in kinds if (*key, k) in done]
        missing = [k for k in kinds if (*key, k) not in done]
        if not missing:
            continue
        reasons = "; ".join(why.get(key, [])) or f"no history for {', '.join(missing)}"
        if not have:
            extra.append({"cluster": r.cluster, "pool": r.pool, "tier": r.tier, "resource": r.resource, "late": False,
                          "status": "red", "review_reason": f"no forecast: review ({reasons})"})
            continue
        at = (out["cluster"] == r.cluster) & (out["pool"] == r.pool) & (out["resource"] == r.resource)
        out.loc[at, "review_reason"] = f"no forecast for {', '.join(missing)} ({reasons}); decided on {', '.join(have)}"
        out.loc[at & (out["status"] == "green"), "status"] = "amber"
    if extra:
        out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True) if len(out) else pd.DataFrame(extra)
    return out.reindex(columns=DECISION_COLUMNS).sort_values(["cluster", "pool", "resource"], ignore_index=True)

