"""Expansion sizing, costs, the CapacityPlan document and the month-over-month diff.

Pure functions: frames and typed policies in, frames and dicts out.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .headroom import ALLOC_COLUMNS, COMPUTE_RESOURCES, PolicyLookup, lost_to_failures
from .policy import Catalog, CatalogError, InstanceType, PoolPolicy

__all__ = [
    "Sizing", "usable_after", "size_nodes", "size_storage", "fleet_cost", "build_plan",
    "plan_document", "diff_plans", "ACTION_COLUMNS",
]

GIB = 2**30
GIB_PER_GB = 1e9 / GIB
ACTION_COLUMNS = [
    "order_by_date", "needed_by_date", "late", "cluster", "pool", "tier", "action", "quantity",
    "instance_type", "storage_gib", "storage_type", "spot_ratio_pct", "reserved_ratio_pct",
    "monthly_cost_usd", "binding_resource", "reason",
]


@dataclass
class Sizing:
    """What to add to one pool and why."""

    additions: dict[str, int] = field(default_factory=dict)
    monthly_cost_usd: float = 0.0
    binding_resource: str = ""
    reason: str = ""
    feasible: bool = True


def _node_allocatable(pool_nodes: pd.DataFrame, itype: InstanceType) -> dict[str, float]:
    """Allocatable of one new node: what existing nodes of that type show, else the catalog's."""
    same = pool_nodes[pool_nodes["instance_type"] == itype.name]
    if len(same):
        return {r: float(same[ALLOC_COLUMNS[r]].median()) for r in COMPUTE_RESOURCES}
    return itype.allocatable()


def _with_additions(pool_nodes: pd.DataFrame, additions: dict[str, dict[str, float] | tuple[int, dict[str, float]]]) -> pd.DataFrame:
    zones = pool_nodes["zone"].value_counts().sort_values(kind="stable")
    zone_cycle = list(zones.index) if len(zones) else ["zone-a"]
    rows, i = [], 0
    for name, (count, alloc) in additions.items():  # type: ignore[misc]
        for _ in range(count):
            rows.append({"zone": zone_cycle[i % len(zone_cycle)], "instance_type": name,
                         **{ALLOC_COLUMNS[r]: alloc[r] for r in COMPUTE_RESOURCES}})
            i += 1
    if not rows:
        return pool_nodes
    return pd.concat([pool_nodes, pd.DataFrame(rows)], ignore_index=True)


def usable_after(pool_nodes: pd.DataFrame, additions: dict[str, tuple[int, dict[str, float]]], policy: PoolPolicy) -> dict[str, float]:
    """N+k usable capacity per resource after adding nodes (spread round-robin over the
    pool's zones, fewest nodes first). ``additions``: type -> (count, allocatable)."""
    nodes = _with_additions(pool_nodes, additions)
    out = {}
    for r in COMPUTE_RESOURCES:
        lost, units = lost_to_failures(nodes, r, policy.redundancy_k, policy.failure_unit)
        out[r] = float(nodes[ALLOC_COLUMNS[r]].sum()) - lost if units > policy.redundancy_k else 0.0
    return out


def _satisfied(usable: dict[str, float], required: dict[str, float]) -> bool:
    return all(usable[r] > required[r] for r in required)


def size_nodes(
    pool_nodes: pd.DataFrame,
    peak_demand: dict[str, float],
    policy: PoolPolicy,
    catalog: Catalog,
    own_type: str,
) -> Sizing:
    """Fewest-cost nodes that keep peak utilisation below the threshold for every resource.

    ``peak_demand``: resource -> the highest demand over the horizon (overlays included).
    Required N+k usable is ``peak / threshold``; new nodes count in N+k (a new, larger
    type can become the largest failure unit). Each allowed type is sized alone; when
    several are allowed, a cheapest mix is also sought with an integer program
    (scipy.optimize.milp) and kept if it is cheaper.
    """
    required = {r: 100.0 * d / policy.threshold_for(r) for r, d in peak_demand.items() if r in COMPUTE_RESOURCES and d > 0}
    if not required:
        return Sizing(reason="no compute demand")
    base = usable_after(pool_nodes, {}, policy)
    if _satisfied(base, required):
        return Sizing(reason="enough N+%d usable capacity for the horizon" % policy.redundancy_k)
    if policy.failure_unit == "zone" and pool_nodes["zone"].nunique() <= policy.redundancy_k:
        return Sizing(feasible=False, reason=(
            f"pool spans {pool_nodes['zone'].nunique()} zone(s); N+{policy.redundancy_k} by zone needs more zones, not more nodes"))
    names = list(dict.fromkeys([own_type, *policy.instance_types]))
    types = {n: catalog.instance(n) for n in names}
    alloc = {n: _node_allocatable(pool_nodes, t) for n, t in types.items()}
    cost = {n: t.monthly_cost_usd(policy.spot_ratio_pct, policy.reserved_ratio_pct) for n, t in types.items()}
    options: list[tuple[float, dict[str, int]]] = []
    for n in names:
        count = _single_type_count(pool_nodes, n, alloc[n], base, required, policy)
        options.append((count * cost[n], {n: count}))
    if len(names) > 1:
        mix = _cheapest_mix(pool_nodes, names, alloc, cost, base, required, policy)
        if mix:
            options.append((sum(cost[n] * c for n, c in mix.items()), mix))
    best_cost, best = min(options, key=lambda o: (o[0], sum(o[1].values())))
    best = {n: c for n, c in best.items() if c}
    after = usable_after(pool_nodes, {n: (c, alloc[n]) for n, c in best.items()}, policy)
    binding = max(required, key=lambda r: required[r] / max(base[r], 1e-12))
    reason = (
        f"{binding} binds: peak {_fmt(peak_demand[binding], binding)} needs "
        f"{_fmt(required[binding], binding)} N+{policy.redundancy_k} usable at {policy.threshold_for(binding):g}%, "
        f"has {_fmt(base[binding], binding)}; after: {_fmt(after[binding], binding)}"
    )
    if len(options) > 1:
        alts = sorted(options, key=lambda o: o[0])
        reason += "; cheapest of " + ", ".join(
            f"{'+'.join(f'{c}x{n}' for n, c in o[1].items() if c)} ${o[0]:,.0f}/mo" for o in alts[:3]
        )
    return Sizing(best, best_cost, binding, reason)


def _single_type_count(pool_nodes, name, alloc, base, required, policy) -> int:
    zones = max(pool_nodes["zone"].nunique(), 1)
    share = (zones - policy.redundancy_k) / zones if policy.failure_unit == "zone" else 1.0
    gain = {r: alloc[r] * max(share, 1e-9) for r in required}
    count = max(0, max(math.ceil((required[r] - base[r]) / gain[r]) for r in required if gain[r] > 0))
    for _ in range(100000):
        if _satisfied(usable_after(pool_nodes, {name: (count, alloc)}, policy), required):
            return count
        count += 1
    raise RuntimeError(f"could not size pool with {name}")


def _cheapest_mix(pool_nodes, names, alloc, cost, base, required, policy) -> dict[str, int] | None:
    from scipy.optimize import Bounds, LinearConstraint, milp

    zones = max(pool_nodes["zone"].nunique(), 1)
    share = (zones - policy.redundancy_k) / zones if policy.failure_unit == "zone" else 1.0
    res_list = list(required)
    # Conservative: the k largest failure units may all be new nodes of the largest type.
    extra = {r: policy.redundancy_k * max(alloc[n][r] for n in names) if policy.failure_unit == "node" else 0.0 for r in res_list}
    a = np.array([[alloc[n][r] * share for n in names] for r in res_list])
    b = np.array([max(required[r] - base[r] + extra[r], 0.0) for r in res_list])
    c = np.array([cost[n] for n in names]) + 1e-6
    sol = milp(c, constraints=LinearConstraint(a, lb=b, ub=np.inf), integrality=np.ones(len(names)), bounds=Bounds(0, np.inf))
    if not sol.success:
        return None
    mix = {n: int(round(x)) for n, x in zip(names, sol.x)}
    for n in sorted(names, key=lambda n: -cost[n]):  # trim what the conservative bound over-bought
        while mix[n] > 0:
            trial = {**mix, n: mix[n] - 1}
            if _satisfied(usable_after(pool_nodes, {k: (v, alloc[k]) for k, v in trial.items()}, policy), required):
                mix = trial
            else:
                break
    if not _satisfied(usable_after(pool_nodes, {k: (v, alloc[k]) for k, v in mix.items()}, policy), required):
        return None
    return mix


def size_storage(capacity_bytes: float, peak_demand_bytes: float, threshold_pct: float, increment_gib: float) -> int:
    """Number of increments that bring peak use below the threshold (0 if already below)."""
    required = 100.0 * peak_demand_bytes / threshold_pct
    if required < capacity_bytes:
        return 0
    return int(math.floor((required - capacity_bytes) / (increment_gib * GIB))) + 1


def _fmt(value: float, resource: str) -> str:
    if resource in ("memory", "storage"):
        return f"{value / GIB / 1024:,.1f} TiB" if value >= 1024 * GIB else f"{value / GIB:,.0f} GiB"
    if resource == "cpu":
        return f"{value:,.0f} cores"
    return f"{value:,.0f} pods"


def fleet_cost(inventory: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog) -> pd.DataFrame:
    """Monthly cost of today's nodes. In: inventory. Out: ``cluster, pool, tier,
    instance_type, nodes, monthly_cost_usd``. An instance type missing from the catalog
    raises :class:`CatalogError` naming it and the pool."""
    rows = []
    for (cluster, pool, tier, itype), g in inventory.groupby(["cluster", "pool", "tier", "instance_type"], sort=True):
        p = policy_of(cluster, pool, tier)
        try:
            t = catalog.instance(itype)
        except CatalogError as exc:
            raise CatalogError(f"pool {cluster}/{pool}: {exc}") from None
        rows.append({"cluster": cluster, "pool": pool, "tier": tier, "instance_type": itype, "nodes": len(g),
                     "monthly_cost_usd": len(g) * t.monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct)})
    return pd.DataFrame(rows)


def build_plan(
    decisions: pd.DataFrame,
    util: pd.DataFrame,
    inventory: pd.DataFrame,
    storage: pd.DataFrame,
    policy_of: PolicyLookup,
    catalog: Catalog,
    as_of: dt.date,
    drivers: dict[tuple[str, str], list[str]] | None = None,
) -> pd.DataFrame:
    """Dated, costed actions for every pool with a trigger in the horizon.

    In: :func:`forecasting.headroom.decisions` and ``utilisation`` output, the
    inventory, storage pools (``cluster, pool, capacity``) and the catalog. ``drivers``
    names the events behind each pool's peak. Out: one row per action with
    :data:`ACTION_COLUMNS`. An action is ordered on the pool's earliest order-by date
    and sized so that the whole horizon stays below the threshold.
    """
    rows = []
    triggered = decisions[decisions["trigger_date"].notna()]
    for (cluster, pool, tier), d in triggered.groupby(["cluster", "pool", "tier"], sort=True):
        p = policy_of(cluster, pool, tier)
        first = d.sort_values("trigger_date").iloc[0]
        u = util[(util.cluster == cluster) & (util.pool == pool)]
        peak = u.groupby("resource")["demand"].max().to_dict()
        events = (drivers or {}).get((cluster, pool), [])
        why = f"{first.resource} reaches {first.threshold_pct:g}% of N+{p.redundancy_k} usable on {first.trigger_date}"
        if tier == "storage":
            why = f"storage reaches {first.threshold_pct:g}% on {first.trigger_date}"
        if events:
            why += " (events: " + ", ".join(events) + ")"
        common = {
            "order_by_date": first.order_by_date, "needed_by_date": first.trigger_date, "late": bool(first.late),
            "cluster": cluster, "pool": pool, "tier": tier, "spot_ratio_pct": p.spot_ratio_pct,
            "reserved_ratio_pct": p.reserved_ratio_pct,
        }
        if tier == "storage":
            stype = catalog.storage(p.storage_type)
            cap = float(storage[(storage.cluster == cluster) & (storage.pool == pool)]["capacity"].iloc[0])
            n = size_storage(cap, peak["storage"], p.threshold_for("storage"), stype.increment_gib)
            gib = n * stype.increment_gib
            rows.append({**common, "action": "expand-storage", "quantity": n, "instance_type": None,
                         "storage_gib": gib, "storage_type": stype.name, "spot_ratio_pct": 0.0, "reserved_ratio_pct": 0.0,
                         "monthly_cost_usd": gib * GIB_PER_GB * stype.price_per_gb_month_usd, "binding_resource": "storage",
                         "reason": f"{why}; +{gib / 1024:g} TiB in {stype.increment_gib:g} GiB steps keeps peak "
                                   f"{_fmt(peak['storage'], 'storage')} below {p.threshold_for('storage'):g}%"})
            continue
        nodes = inventory[(inventory.cluster == cluster) & (inventory.pool == pool)]
        own = nodes["instance_type"].mode().iloc[0]
        sizing = size_nodes(nodes, {r: peak.get(r, 0.0) for r in COMPUTE_RESOURCES}, p, catalog, own)
        if not sizing.feasible:
            rows.append({**common, "action": "review", "quantity": 0, "instance_type": None, "storage_gib": 0.0,
                         "storage_type": None, "monthly_cost_usd": 0.0, "binding_resource": first.resource,
                         "reason": f"{why}; {sizing.reason}"})
            continue
        for itype, count in sizing.additions.items():
            t = catalog.instance(itype)
            rows.append({**common, "action": "add-nodes", "quantity": count, "instance_type": itype, "storage_gib": 0.0,
                         "storage_type": None, "monthly_cost_usd": count * t.monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct),
                         "binding_resource": sizing.binding_resource, "reason": f"{why}; {sizing.reason}"})
    rows += _review_actions(decisions, as_of)
    return pd.DataFrame(rows, columns=ACTION_COLUMNS)


def _review_actions(decisions: pd.DataFrame, as_of: dt.date) -> list[dict]:
    """One ``review`` action (due today, no cost) per pool with a resource that has no
    forecast at all: such a pool is never silently left out of a plan."""
    if "review_reason" not in decisions:
        return []
    blind = decisions[decisions["review_reason"].notna() & decisions["trigger_date"].isna() & (decisions["status"] == "red")]
    rows = []
    for (cluster, pool, tier), d in blind.groupby(["cluster", "pool", "tier"], sort=True):
        rows.append({"order_by_date": as_of, "needed_by_date": None, "late": False, "cluster": cluster, "pool": pool,
                     "tier": tier, "action": "review", "quantity": 0, "instance_type": None, "storage_gib": 0.0,
                     "storage_type": None, "spot_ratio_pct": 0.0, "reserved_ratio_pct": 0.0, "monthly_cost_usd": 0.0,
                     "binding_resource": ",".join(d["resource"]),
                     "reason": "; ".join(f"{r.resource}: {r.review_reason}" for r in d.itertuples())})
    return rows


def plan_document(
    name: str,
    run_id: str,
    as_of: dt.date,
    actions: pd.DataFrame,
    current: dict,
    events: list[dict],
    thresholds: dict[str, float],
    catalog: Catalog,
) -> dict:
    """The plan in the handbook's CapacityPlan shape (a dict ready for YAML).

    ``current`` holds ``compute`` and ``storage`` summaries; ``events`` the business
    calendar entries (name, window, growth, reason).
    """
    timeline = []
    if len(actions):
        for (order_by, needed_by), g in actions.sort_values(["order_by_date", "cluster", "pool"]).groupby(
            ["order_by_date", "needed_by_date"], sort=True, dropna=False  # a review has no needed-by date
        ):
            acts = []
            for a in g.itertuples():
                item = {"type": a.action, "cluster": a.cluster, "pool": a.pool}
                if a.action == "add-nodes":
                    item |= {"quantity": int(a.quantity), "instanceType": a.instance_type, "spotRatio": f"{a.spot_ratio_pct:g}%"}
                elif a.action == "expand-storage":
                    item |= {"capacity": f"+{a.storage_gib / 1024:g}Ti", "storageType": a.storage_type}
                item |= {"estimatedCost": f"${a.monthly_cost_usd:,.0f}/month", "reason": a.reason}
                if a.late:
                    item["late"] = True
                acts.append(item)
            timeline.append({"timeline": str(order_by), "neededBy": str(needed_by) if pd.notna(needed_by) else None,
                             "reason": "; ".join(sorted({a["reason"].split(";")[0] for a in acts})[:3]), "actions": acts})
    monthly = float(actions["monthly_cost_usd"].sum()) if len(actions) else 0.0
    return {
        "apiVersion": "capplan.io/v1",
        "kind": "CapacityPlan",
        "metadata": {"name": name, "runId": run_id, "asOf": str(as_of), "pricesAsOf": str(catalog.prices_as_of)},
        "spec": {
            "currentCapacity": current,
            "businessForecast": {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in events},
            "expansionPlan": timeline,
            "totals": {"addedMonthlyCost": f"${monthly:,.0f}", "addedYearlyCost": f"${12 * monthly:,.0f}"},
            "alerts": [
                {"metric": "cluster_cpu_utilization", "threshold": f"{thresholds.get('cpu', 70):g}%",
                 "action": "notify capacity-planning team"},
                {"metric": "storage_usage", "threshold": f"{thresholds.get('storage', 75):g}%",
                 "action": "start expansion process"},
            ],
        },
    }


def diff_plans(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    prev_actions: pd.DataFrame,
    cur_actions: pd.DataFrame,
    prev_context: dict | None = None,
    cur_context: dict | None = None,
) -> pd.DataFrame:
    """What moved since the previous run, per pool and resource, and why.

    In: two :func:`forecasting.headroom.decisions` frames and their action frames;
    contexts hold ``events`` (set of names) and ``nodes`` ({(cluster, pool): count}).
    Out: ``cluster, pool, resource, trigger_before, trigger_after, shift_days,
    nodes_before, nodes_after, cost_before_usd, cost_after_usd, why`` for rows that changed.
    """
    keys = ["cluster", "pool", "resource"]
    m = previous[keys + ["trigger_date"]].merge(current[keys + ["trigger_date"]], on=keys, how="outer", suffixes=("_before", "_after"))
    def per_pool(actions: pd.DataFrame, col: str) -> dict:
        if actions is None or actions.empty:
            return {}
        return actions.groupby(["cluster", "pool"])[col].sum().to_dict()
    nb, na = per_pool(prev_actions, "quantity"), per_pool(cur_actions, "quantity")
    cb, ca = per_pool(prev_actions, "monthly_cost_usd"), per_pool(cur_actions, "monthly_cost_usd")
    pc, cc = prev_context or {}, cur_context or {}
    new_events = set(cc.get("events", ())) - set(pc.get("events", ()))
    rows = []
    for r in m.itertuples():
        tb, ta = r.trigger_date_before, r.trigger_date_after
        tb = None if pd.isna(tb) else pd.Timestamp(tb).date()
        ta = None if pd.isna(ta) else pd.Timestamp(ta).date()
        pk = (r.cluster, r.pool)
        changed = tb != ta or nb.get(pk, 0) != na.get(pk, 0) or abs(cb.get(pk, 0) - ca.get(pk, 0)) > 0.5
        if not changed:
            continue
        reasons = []
        if pc.get("nodes", {}).get(pk) != cc.get("nodes", {}).get(pk):
            reasons.append(f"inventory changed ({pc.get('nodes', {}).get(pk, 0)} -> {cc.get('nodes', {}).get(pk, 0)} nodes)")
        if new_events:
            reasons.append("new event(s): " + ", ".join(sorted(new_events)))
        if not reasons:
            reasons.append("forecast changed")
        rows.append({
            "cluster": r.cluster, "pool": r.pool, "resource": r.resource, "trigger_before": tb, "trigger_after": ta,
            "shift_days": (ta - tb).days if (ta and tb) else None,
            "nodes_before": int(nb.get(pk, 0)), "nodes_after": int(na.get(pk, 0)),
            "cost_before_usd": float(cb.get(pk, 0.0)), "cost_after_usd": float(ca.get(pk, 0.0)),
            "why": "; ".join(reasons),
        })
    return pd.DataFrame(rows, columns=["cluster", "pool", "resource", "trigger_before", "trigger_after", "shift_days",
                                       "nodes_before", "nodes_after", "cost_before_usd", "cost_after_usd", "why"])
