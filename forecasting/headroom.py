"""N+k usable capacity, utilisation, trigger and order-by dates. Pure and hand-checkable.

Vocabulary (docs/ARCHITECTURE.md): *capacity* is the sum of allocatable; *N+k usable
capacity* is what is left after losing the k largest failure units (nodes, or zones);
*utilisation* is peak demand over N+k usable capacity; the *trigger* is the first day
utilisation reaches the threshold; the *order-by date* is the trigger minus the lead time.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import numpy as np
import pandas as pd

from .policy import PoolPolicy

__all__ = [
    "ALLOC_COLUMNS", "PolicyLookup", "pool_capacity", "usable_capacity", "storage_capacity",
    "utilisation", "decisions", "mark_for_review", "DECISION_COLUMNS",
]

#: Inventory column holding each resource's allocatable, in base units.
ALLOC_COLUMNS = {"cpu": "cpu_cores", "memory": "memory_bytes", "pods": "pods", "storage": "storage_bytes"}
COMPUTE_RESOURCES = ("cpu", "memory", "pods")

PolicyLookup = Callable[[str, str, "str | None"], PoolPolicy]


def pool_capacity(inventory: pd.DataFrame) -> pd.DataFrame:
    """Sum of allocatable per pool and resource.

    In: inventory (``cluster, pool, tier, zone, node, instance_type, cpu_cores,
    memory_bytes, pods``). Out: ``cluster, pool, tier, resource, nodes, capacity``.
    """
    rows = []
    for (cluster, pool), g in inventory.groupby(["cluster", "pool"], sort=True):
        for res in COMPUTE_RESOURCES:
            rows.append({
                "cluster": cluster, "pool": pool, "tier": g["tier"].iloc[0], "resource": res,
                "nodes": len(g), "capacity": float(g[ALLOC_COLUMNS[res]].sum()),
            })
    return pd.DataFrame(rows)


def lost_to_failures(nodes: pd.DataFrame, resource: str, k: int, unit: str) -> tuple[float, int]:
    """Allocatable lost when the k largest failure units fail, and how many units exist.

    ``nodes`` holds one pool's nodes (``zone`` and the allocatable columns).
    """
    col = ALLOC_COLUMNS[resource]
    sizes = nodes[col].to_numpy(dtype=float) if unit == "node" else nodes.groupby("zone")[col].sum().to_numpy(dtype=float)
    sizes = np.sort(sizes)[::-1]
    return float(sizes[:k].sum()), len(sizes)


def usable_capacity(inventory: pd.DataFrame, policy_of: PolicyLookup) -> pd.DataFrame:
    """N+k usable capacity per pool and compute resource.

    Out: ``cluster, pool, tier, resource, nodes, units, failure_unit, redundancy_k,
    capacity, lost, usable, too_small`` where ``too_small`` means the pool has no more
    than k failure units (it cannot survive its N+k at all).
    """
    rows = []
    for (cluster, pool), g in inventory.groupby(["cluster", "pool"], sort=True):
        tier = g["tier"].iloc[0]
        p = policy_of(cluster, pool, tier)
        for res in COMPUTE_RESOURCES:
            capacity = float(g[ALLOC_COLUMNS[res]].sum())
            lost, units = lost_to_failures(g, res, p.redundancy_k, p.failure_unit)
            rows.append({
                "cluster": cluster, "pool": pool, "tier": tier, "resource": res, "nodes": len(g),
                "units": units, "failure_unit": p.failure_unit, "redundancy_k": p.redundancy_k,
                "capacity": capacity, "lost": lost, "usable": max(capacity - lost, 0.0),
                "too_small": units <= p.redundancy_k,
            })
    return pd.DataFrame(rows)


def storage_capacity(capacity: pd.DataFrame) -> pd.DataFrame:
    """Usable capacity of storage pools (replication is the storage system's business,
    so no N+k is taken off). In: ``cluster, pool, capacity``. Out: as
    :func:`usable_capacity` with ``resource='storage'``."""
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


def utilisation(demand: pd.DataFrame, usable: pd.DataFrame, policy_of: PolicyLookup) -> pd.DataFrame:
    """Daily utilisation of N+k usable capacity per pool, resource and demand kind.

    In: ``demand`` (``cluster, pool, resource, kind, ts, yhat, yhat_upper``: daily peak
    forecasts) and ``usable`` (from :func:`usable_capacity`). The demand used is
    ``yhat_upper`` or ``yhat`` per the pool's ``demand_bound``. Out: ``cluster, pool,
    tier, resource, kind, ts, demand, usable, utilisation_pct, threshold_pct``.
    """
    merged = demand.merge(usable[["cluster", "pool", "tier", "resource", "usable"]], on=["cluster", "pool", "resource"])
    if merged.empty:
        return pd.DataFrame(columns=["cluster", "pool", "tier", "resource", "kind", "ts", "demand", "usable", "utilisation_pct", "threshold_pct"])
    keys = merged[["cluster", "pool", "tier", "resource"]].drop_duplicates()
    pol = {
        (r.cluster, r.pool, r.resource): policy_of(r.cluster, r.pool, r.tier) for r in keys.itertuples()
    }
    upper = np.array([pol[k].demand_bound == "upper" for k in zip(merged.cluster, merged.pool, merged.resource)])
    merged["demand"] = np.where(upper, merged["yhat_upper"], merged["yhat"])
    usable_v = merged["usable"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(usable_v > 0, 100.0 * merged["demand"].to_numpy(dtype=float) / usable_v, np.inf)
    merged["utilisation_pct"] = util
    merged["threshold_pct"] = [pol[k].threshold_for(k[2]) for k in zip(merged.cluster, merged.pool, merged.resource)]
    return merged[["cluster", "pool", "tier", "resource", "kind", "ts", "demand", "usable", "utilisation_pct", "threshold_pct"]]


def decisions(util: pd.DataFrame, policy_of: PolicyLookup, as_of: dt.date, horizon_days: int) -> pd.DataFrame:
    """Trigger and order-by per pool and resource; the binding demand kind decides.

    In: :func:`utilisation` output. Out: ``cluster, pool, tier, resource, binding_kind,
    utilisation_now_pct, peak_utilisation_pct, peak_date, threshold_pct, trigger_date,
    lead_time_days, order_by_date, late, days_of_headroom, status`` where status is
    ``red`` (order-by date today or past), ``amber`` (trigger within the horizon) or
    ``green``. ``days_of_headroom`` is days from ``as_of`` to the trigger (the horizon
    when there is none).
    """
    rows = []
    if util.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    for (cluster, pool, tier, res), g in util.groupby(["cluster", "pool", "tier", "resource"], sort=True):
        p = policy_of(cluster, pool, tier)
        best: dict | None = None
        for kind, k in g.groupby("kind"):
            k = k.sort_values("ts")
            hit = k[k["utilisation_pct"] >= k["threshold_pct"]]
            trigger = pd.Timestamp(hit["ts"].iloc[0]).date() if len(hit) else None
            peak_i = int(np.argmax(k["utilisation_pct"].to_numpy()))
            cand = {
                "kind": kind, "trigger": trigger, "now": float(k["utilisation_pct"].iloc[0]),
                "peak": float(k["utilisation_pct"].iloc[peak_i]), "peak_date": pd.Timestamp(k["ts"].iloc[peak_i]).date(),
                "threshold": float(k["threshold_pct"].iloc[0]),
            }
            if best is None or _earlier(cand, best):
                best = cand
        assert best is not None
        trigger = best["trigger"]
        lead = p.lead_time_days
        order_by = trigger - dt.timedelta(days=lead) if trigger else None
        late = bool(order_by is not None and order_by <= as_of)
        rows.append({
            "cluster": cluster, "pool": pool, "tier": tier, "resource": res, "binding_kind": best["kind"],
            "utilisation_now_pct": best["now"], "peak_utilisation_pct": best["peak"], "peak_date": best["peak_date"],
            "threshold_pct": best["threshold"], "trigger_date": trigger, "lead_time_days": lead,
            "order_by_date": order_by, "late": late,
            "days_of_headroom": (trigger - as_of).days if trigger else horizon_days,
            "status": "red" if late else ("amber" if trigger else "green"), "review_reason": None,
        })
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


DECISION_COLUMNS = [
    "cluster", "pool", "tier", "resource", "binding_kind", "utilisation_now_pct", "peak_utilisation_pct", "peak_date",
    "threshold_pct", "trigger_date", "lead_time_days", "order_by_date", "late", "days_of_headroom", "status",
    "review_reason",
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


def _earlier(a: dict, b: dict) -> bool:
    """Does demand kind ``a`` bind before ``b``? Earlier trigger first, then higher peak."""
    if a["trigger"] and b["trigger"]:
        return a["trigger"] < b["trigger"] or (a["trigger"] == b["trigger"] and a["peak"] > b["peak"])
    if a["trigger"] or b["trigger"]:
        return a["trigger"] is not None
    return a["peak"] > b["peak"]
