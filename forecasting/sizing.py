"""What to add to a pool: the fewest, cheapest nodes (or storage increments) after which
the policy's rule no longer fires, and how long they take to arrive. Pure.

In: one pool's nodes (inventory rows: ``zone, instance_type, capacity_type`` and the
allocatable columns), its peak demand per resource, its :class:`PoolPolicy` and the
:class:`Catalog`. Out: a :class:`Sizing` (type -> count, monthly cost, what binds, why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .costs import GIB
from .headroom import ALLOC_COLUMNS, COMPUTE_RESOURCES, PolicyLookup, lost_to_failures
from .policy import Catalog, InstanceType, PoolPolicy, StorageType

__all__ = ["Sizing", "usable_after", "size_nodes", "size_storage", "effective_lead_time", "lead_lookup", "fmt_amount"]


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


def _with_additions(pool_nodes: pd.DataFrame, additions: dict[str, tuple[int, dict[str, float]]],
                    spot_ratio_pct: float = 0.0) -> pd.DataFrame:
    """The pool's nodes plus new ones, spread round-robin over its zones (fewest first);
    ``spot_ratio_pct`` of the new nodes are spot (interleaved)."""
    zones = pool_nodes["zone"].value_counts().sort_values(kind="stable")
    zone_cycle = list(zones.index) if len(zones) else ["zone-a"]
    share = spot_ratio_pct / 100
    rows, i = [], 0
    for name, (count, alloc) in additions.items():
        for _ in range(count):
            spot = int((i + 1) * share) > int(i * share)
            rows.append({"zone": zone_cycle[i % len(zone_cycle)], "instance_type": name,
                         "capacity_type": "spot" if spot else "on-demand", **{ALLOC_COLUMNS[r]: alloc[r] for r in COMPUTE_RESOURCES}})
            i += 1
    if not rows:
        return pool_nodes
    return pd.concat([pool_nodes, pd.DataFrame(rows)], ignore_index=True)


def usable_after(pool_nodes: pd.DataFrame, additions: dict[str, tuple[int, dict[str, float]]], policy: PoolPolicy) -> dict[str, float]:
    """N+k usable capacity per resource after adding nodes (spread round-robin over the
    pool's zones, fewest nodes first; the policy's spot share of them spot, which matters
    when spot nodes fail together). ``additions``: type -> (count, allocatable)."""
    nodes = _with_additions(pool_nodes, additions, policy.spot_ratio_pct)
    together = policy.spot_failure == "together"
    out = {}
    for r in COMPUTE_RESOURCES:
        lost, units = lost_to_failures(nodes, r, policy.redundancy_k, policy.failure_unit, together)
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
        f"{binding} binds: peak {fmt_amount(peak_demand[binding], binding)} needs "
        f"{fmt_amount(required[binding], binding)} N+{policy.redundancy_k} usable at {policy.threshold_for(binding):g}%, "
        f"has {fmt_amount(base[binding], binding)}; after: {fmt_amount(after[binding], binding)}"
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


def fmt_amount(value: float, resource: str) -> str:
    if resource in ("memory", "storage"):
        return f"{value / GIB / 1024:,.1f} TiB" if value >= 1024 * GIB else f"{value / GIB:,.0f} GiB"
    if resource == "cpu":
        return f"{value:,.0f} cores"
    return f"{value:,.0f} pods"



def effective_lead_time(policy: PoolPolicy, itype: InstanceType | None = None, stype: StorageType | None = None) -> tuple[int, str]:
    """The longer of the policy's lead time and the catalog's for what the pool buys, and
    where it comes from (e.g. ``"i4i.4xlarge catalog lead time, longer than the policy's 30"``)."""
    days, why = policy.lead_time_days, "policy"
    for item in (itype, stype):
        if item is not None and item.lead_time_days is not None and item.lead_time_days > days:
            days, why = item.lead_time_days, f"{item.name} catalog lead time, longer than the policy's {policy.lead_time_days}"
    return days, why


def lead_lookup(inventory: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog,
                autoscaled: set[tuple[str, str]] | None = None):
    """``(cluster, pool, tier, resource) -> (days, why)`` for :func:`forecasting.headroom.decisions`:
    compute pools by their own (most common) instance type, storage by the policy's type,
    autoscaled pools by the time to raise a limit (``limit_lead_time_days``)."""
    own = inventory.groupby(["cluster", "pool"])["instance_type"].agg(lambda s: s.mode().iloc[0]).to_dict()

    def lookup(cluster: str, pool: str, tier: str, resource: str) -> tuple[int, str]:
        p = policy_of(cluster, pool, tier)
        if resource == "storage":
            stype = next((t for t in catalog.storage_types if t.name == p.storage_type), None)
            return effective_lead_time(p, stype=stype)
        if (cluster, pool) in (autoscaled or ()):
            return p.limit_lead_time_days, "raising an autoscaled pool's limit"
        name = own.get((cluster, pool))
        itype = next((t for t in catalog.instance_types if t.name == name), None)
        return effective_lead_time(p, itype=itype)

    return lookup

