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
from .headroom import decisions as decide
from .policy import HOURS_PER_MONTH, Catalog, CatalogError, InstanceType, PoolPolicy, StorageType

__all__ = [
    "Sizing", "usable_after", "size_nodes", "size_storage", "storage_monthly_cost", "effective_lead_time",
    "lead_lookup", "cost_within", "fleet_cost", "build_plan", "action_summary", "current_capacity", "DEFINITIONS",
    "apply_rentals", "pool_summary", "pool_rows", "plan_totals", "POOL_COLUMNS",
    "plan_document", "diff_plans", "ACTION_COLUMNS", "GB_PER_GIB", "HOURS_PER_MONTH", "COST_HORIZON_DAYS",
]

GIB = 2**30
#: Prices are per GB (10^9 bytes); sizes are in GiB (2^30 bytes): one GiB is 1.0737 GB.
GB_PER_GIB = GIB / 1e9
#: A month of an hourly price is HOURS_PER_MONTH (the cloud providers' convention); a day is
#: 24 of those hours. "Next 12 months" costs count each action from the day its capacity is there.
COST_HORIZON_DAYS = 365
ACTION_COLUMNS = [
    "order_by_date", "needed_by_date", "late", "cluster", "pool", "tier", "action", "quantity",
    "instance_type", "storage_gib", "storage_type", "summary", "spot_ratio_pct", "reserved_ratio_pct",
    "reserved_term_years", "reserved_nodes", "monthly_cost_usd", "next_12m_cost_usd", "temporary", "rent_start",
    "rent_end", "window_cost_usd", "buy_12m_cost_usd", "binding_resource", "binds_on", "measured_peak_pct",
    "forecast_peak_pct", "risk_pct", "lead_time_days", "events", "reason",
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


def storage_monthly_cost(gib: float, stype: StorageType) -> float:
    """Monthly cost of ``gib`` GiB of a storage type priced per GB-month."""
    return gib * GB_PER_GIB * stype.price_per_gb_month_usd


def effective_lead_time(policy: PoolPolicy, itype: InstanceType | None = None, stype: StorageType | None = None) -> tuple[int, str]:
    """The longer of the policy's lead time and the catalog's for what the pool buys, and
    where it comes from (e.g. ``"i4i.4xlarge catalog lead time, longer than the policy's 30"``)."""
    days, why = policy.lead_time_days, "policy"
    for item in (itype, stype):
        if item is not None and item.lead_time_days is not None and item.lead_time_days > days:
            days, why = item.lead_time_days, f"{item.name} catalog lead time, longer than the policy's {policy.lead_time_days}"
    return days, why


def lead_lookup(inventory: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog):
    """``(cluster, pool, tier, resource) -> (days, why)`` for :func:`forecasting.headroom.decisions`:
    compute pools by their own (most common) instance type, storage by the policy's type."""
    own = inventory.groupby(["cluster", "pool"])["instance_type"].agg(lambda s: s.mode().iloc[0]).to_dict()

    def lookup(cluster: str, pool: str, tier: str, resource: str) -> tuple[int, str]:
        p = policy_of(cluster, pool, tier)
        if resource == "storage":
            stype = next((t for t in catalog.storage_types if t.name == p.storage_type), None)
            return effective_lead_time(p, stype=stype)
        name = own.get((cluster, pool))
        itype = next((t for t in catalog.instance_types if t.name == name), None)
        return effective_lead_time(p, itype=itype)

    return lookup


def cost_within(monthly: float, start: dt.date | None, as_of: dt.date, days: int = COST_HORIZON_DAYS) -> float:
    """What a run-rate of ``monthly`` costs from ``start`` until ``as_of + days`` (prorated
    by day; nothing if it starts after that)."""
    if start is None:
        return 0.0
    begin = max(start, as_of)
    active = (as_of + dt.timedelta(days=days) - begin).days
    return monthly * max(active, 0) * 24 / HOURS_PER_MONTH


def fleet_cost(inventory: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog,
               storage_pools: pd.DataFrame | None = None) -> pd.DataFrame:
    """Monthly cost of today's nodes and storage. In: inventory, storage pools (``cluster,
    pool, capacity`` in bytes). Out: ``cluster, pool, tier, instance_type, nodes,
    storage_type, storage_gib, monthly_cost_usd``. An instance or storage type missing
    from the catalog raises :class:`CatalogError` naming it and the pool."""
    rows = []
    for (cluster, pool, tier, itype), g in inventory.groupby(["cluster", "pool", "tier", "instance_type"], sort=True):
        p = policy_of(cluster, pool, tier)
        try:
            t = catalog.instance(itype)
        except CatalogError as exc:
            raise CatalogError(f"pool {cluster}/{pool}: {exc}") from None
        rows.append({"cluster": cluster, "pool": pool, "tier": tier, "instance_type": itype, "nodes": len(g),
                     "storage_type": None, "storage_gib": 0.0,
                     "monthly_cost_usd": len(g) * t.monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct)})
    for r in (storage_pools if storage_pools is not None else pd.DataFrame()).itertuples():
        p = policy_of(r.cluster, r.pool, "storage")
        try:
            stype = catalog.storage(p.storage_type)
        except CatalogError as exc:
            raise CatalogError(f"storage pool {r.cluster}/{r.pool}: {exc}") from None
        gib = float(r.capacity) / GIB
        rows.append({"cluster": r.cluster, "pool": r.pool, "tier": "storage", "instance_type": None, "nodes": 0,
                     "storage_type": stype.name, "storage_gib": gib, "monthly_cost_usd": storage_monthly_cost(gib, stype)})
    return pd.DataFrame(rows, columns=["cluster", "pool", "tier", "instance_type", "nodes", "storage_type", "storage_gib",
                                       "monthly_cost_usd"])


def action_summary(action: str, quantity: int, instance_type: str | None, storage_gib: float, storage_type: str | None,
                   rent_start=None, rent_end=None) -> str:
    """What to buy, with units: ``33 x c6i.2xlarge``, ``+41 TiB gp3``, ``rent 12 x c6i.2xlarge
    2026-11-01..2026-11-14``, ``review``."""
    if action == "expand-storage":
        return f"+{storage_gib / 1024:g} TiB {storage_type}"
    if action == "add-nodes":
        return f"{quantity} x {instance_type}"
    if action == "rent-nodes":
        return f"rent {quantity} x {instance_type} {rent_start}..{rent_end}"
    return "review"


def _pool_first(d: pd.DataFrame) -> pd.Series:
    """The pool's decision that needs capacity first (earliest trigger; then the higher
    forecast peak): what a pool-level row reports."""
    return d.sort_values(["trigger_date", "forecast_peak_pct"], ascending=[True, False], na_position="last").iloc[0]


def _event_text(effects: pd.DataFrame | None, cluster: str, pool: str, resource: str) -> tuple[str, list[str]]:
    """'events moving it: double-11 (21 days earlier)', and the events' names (only those
    that move the trigger)."""
    if effects is None or effects.empty:
        return "", []
    e = effects[(effects.cluster == cluster) & (effects.pool == pool) & (effects.resource == resource)]
    parts, names = [], []
    for r in e.itertuples():
        if r.trigger_without is None or pd.isna(r.trigger_without):
            parts.append(f"{r.event} (no trigger without it)")
        elif r.shift_days:
            parts.append(f"{r.event} ({abs(int(r.shift_days))} days {'earlier' if r.shift_days > 0 else 'later'})")
        else:
            continue
        names.append(r.event)
    return ("events moving it: " + ", ".join(parts)) if parts else "no declared event moves it", names


def _why(first: pd.Series, policy: PoolPolicy, tier: str, event_text: str) -> str:
    if tier == "storage":
        base = (f"storage use reaches {first.threshold_pct:g}% of raw capacity (no N+k: replication is inside the storage "
                f"system) on {first.trigger_date}")
    else:
        base = (f"{first.resource} {first.binding_kind} reaches {first.threshold_pct:g}% of N+{policy.redundancy_k} "
                f"usable on {first.trigger_date}")
    if np.isfinite(first.risk_pct):
        base += f" ({first.risk_pct:.0f}% chance of crossing before capacity ordered on {first.order_by_date} arrives)"
    base += f"; lead time {int(first.lead_time_days)} days ({first.lead_time_source})"
    if first.late:
        base += (f"; late: ordered today it arrives {first.earliest_arrival_date}, forecast peak until then "
                 f"{first.arrival_peak_pct:.0f}% of {'raw capacity' if tier == 'storage' else f'N+{policy.redundancy_k} usable'}")
        if first.arrival_over_raw:
            base += ": above raw capacity, pods would not schedule" if tier != "storage" else ": the storage would fill up"
        elif first.arrival_over_usable:
            base += f": above N+{policy.redundancy_k} usable, the pool would not survive {policy.redundancy_k} failures"
    if event_text:
        base += f"; {event_text}"
    return base


def build_plan(
    decisions: pd.DataFrame,
    util: pd.DataFrame,
    inventory: pd.DataFrame,
    storage: pd.DataFrame,
    policy_of: PolicyLookup,
    catalog: Catalog,
    as_of: dt.date,
    effects: pd.DataFrame | None = None,
    temporary: dict | None = None,
    notes: dict[tuple[str, str], list[str]] | None = None,
) -> pd.DataFrame:
    """Dated, costed actions for every pool with a trigger in the horizon.

    In: :func:`forecasting.headroom.decisions` and ``utilisation`` output, the inventory,
    storage pools (``cluster, pool, capacity``), the catalog; ``effects`` from
    :func:`forecasting.reasons.event_effects`, ``temporary`` from
    :func:`forecasting.reasons.temporary_needs`, ``notes`` more text per pool (e.g.
    unexplained spikes). Out: one row per action with :data:`ACTION_COLUMNS`. An action is
    ordered on the pool's earliest order-by date and sized so that the whole horizon stays
    below the threshold; a pool needed only for short events rents instead of buying when
    that is cheaper over the next 12 months.
    """
    rows = []
    triggered = decisions[decisions["trigger_date"].notna()]
    for (cluster, pool, tier), d in triggered.groupby(["cluster", "pool", "tier"], sort=True):
        p = policy_of(cluster, pool, tier)
        first = _pool_first(d)
        u = util[(util.cluster == cluster) & (util.pool == pool)]
        peak = _sizing_demand(u, d)
        event_text, events = _event_text(effects, cluster, pool, first.resource)
        why = _why(first, p, tier, event_text)
        extra = (notes or {}).get((cluster, pool), [])
        if extra:
            why += "; " + "; ".join(extra)
        start = first.earliest_arrival_date if first.late else first.trigger_date
        common = {
            "order_by_date": first.order_by_date, "needed_by_date": first.trigger_date, "late": bool(first.late),
            "cluster": cluster, "pool": pool, "tier": tier, "spot_ratio_pct": p.spot_ratio_pct,
            "reserved_ratio_pct": p.reserved_ratio_pct, "reserved_term_years": p.reserved_term_years, "reserved_nodes": 0,
            "temporary": False, "rent_start": None, "rent_end": None, "window_cost_usd": 0.0, "buy_12m_cost_usd": None,
            "binding_resource": first.resource, "binds_on": f"{first.resource} {first.binding_kind}",
            "measured_peak_pct": first.measured_peak_pct, "forecast_peak_pct": first.forecast_peak_pct,
            "risk_pct": first.risk_pct, "lead_time_days": int(first.lead_time_days), "events": ",".join(events),
        }
        if tier == "storage":
            stype = catalog.storage(p.storage_type)
            cap = float(storage[(storage.cluster == cluster) & (storage.pool == pool)]["capacity"].iloc[0])
            n = size_storage(cap, peak["storage"], p.threshold_for("storage"), stype.increment_gib)
            gib = n * stype.increment_gib
            monthly = storage_monthly_cost(gib, stype)
            rows.append({**common, "action": "expand-storage", "quantity": n, "instance_type": None,
                         "storage_gib": gib, "storage_type": stype.name, "summary": action_summary("expand-storage", n, None, gib, stype.name),
                         "spot_ratio_pct": 0.0, "reserved_ratio_pct": 0.0, "monthly_cost_usd": monthly,
                         "next_12m_cost_usd": cost_within(monthly, start, as_of),
                         "reason": f"{why}; +{gib / 1024:g} TiB in {stype.increment_gib:g} GiB steps keeps peak "
                                   f"{_fmt(peak['storage'], 'storage')} below {p.threshold_for('storage'):g}% "
                                   f"(${stype.price_per_gb_month_usd:g}/GB-month)"})
            continue
        nodes = inventory[(inventory.cluster == cluster) & (inventory.pool == pool)]
        own = nodes["instance_type"].mode().iloc[0]
        sizing = size_nodes(nodes, {r: peak.get(r, 0.0) for r in COMPUTE_RESOURCES}, p, catalog, own)
        if not sizing.feasible:
            rows.append({**common, "action": "review", "quantity": 0, "instance_type": None, "storage_gib": 0.0,
                         "storage_type": None, "summary": "review", "monthly_cost_usd": 0.0, "next_12m_cost_usd": 0.0,
                         "reason": f"{why}; {sizing.reason}"})
            continue
        need = (temporary or {}).get((cluster, pool))
        rent = _rent_option(need, sizing, p, catalog, as_of, first.trigger_date, start) if need else None
        if rent is not None and rent["window_cost_usd"] < rent["buy_12m_cost_usd"]:
            rows += _rent_rows(common, rent, sizing, why, need)
            continue
        for itype, count in sizing.additions.items():
            t = catalog.instance(itype)
            monthly = count * t.monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct)
            reason = f"{why}; {sizing.reason}"
            if rent is not None:
                reason += (f"; needed only for {', '.join(need.events)}: renting for {rent['days']} days would cost "
                           f"${rent['window_cost_usd']:,.0f}, more than buying (${rent['buy_12m_cost_usd']:,.0f} over 12 months): buy")
            rows.append({**common, "action": "add-nodes", "quantity": count, "instance_type": itype, "storage_gib": 0.0,
                         "storage_type": None, "summary": action_summary("add-nodes", count, itype, 0.0, None),
                         "reserved_nodes": int(round(count * p.reserved_ratio_pct / 100)), "temporary": need is not None,
                         "monthly_cost_usd": monthly,
                         "next_12m_cost_usd": cost_within(monthly, start, as_of), "reason": reason})
    rows += _review_actions(decisions, as_of)
    return pd.DataFrame(rows, columns=ACTION_COLUMNS)


def _sizing_demand(u: pd.DataFrame, d: pd.DataFrame) -> dict[str, float]:
    """Per resource, the demand to size for, as a peak the threshold applies to: the
    capacity each triggered resource needs (``required_usable`` x threshold) or, for the
    others, the planning bound's peak (so they stay below the threshold after the change)."""
    peak = u.groupby("resource")["demand"].max().to_dict()
    for r in d.itertuples():
        if pd.notna(r.required_usable):
            peak[r.resource] = max(peak.get(r.resource, 0.0), float(r.required_usable) * float(r.threshold_pct) / 100)
    return peak


def _rent_option(need, sizing: Sizing, p: PoolPolicy, catalog: Catalog, as_of: dt.date, trigger: dt.date,
                 buy_from: dt.date) -> dict:
    """Renting the same nodes (on-demand, spot at the pool's share; no reservation) from
    the rent lead time before the trigger (the order-by date, as in
    :func:`apply_rentals`) until the need ends, against buying them (counted from
    ``buy_from``, as the buy action would be)."""
    order_by = trigger - dt.timedelta(days=p.rent_lead_time_days)
    start = max(order_by, as_of)
    days = (need.end - start).days + 1
    window = buy = 0.0
    for itype, count in sizing.additions.items():
        t = catalog.instance(itype)
        window += count * t.monthly_cost_usd(p.spot_ratio_pct, 0.0) * days * 24 / HOURS_PER_MONTH
        buy += cost_within(count * t.monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct), buy_from, as_of)
    return {"order_by": order_by, "start": start, "end": need.end, "days": days, "late": order_by <= as_of,
            "lead": p.rent_lead_time_days, "window_cost_usd": window, "buy_12m_cost_usd": buy}


def _rent_rows(common: dict, rent: dict, sizing: Sizing, why: str, need) -> list[dict]:
    rows = []
    for itype, count in sizing.additions.items():
        share = count / max(sum(sizing.additions.values()), 1)
        rows.append({**common, "order_by_date": rent["order_by"], "late": rent["late"], "lead_time_days": rent["lead"],
                     "action": "rent-nodes", "quantity": count, "instance_type": itype, "storage_gib": 0.0, "storage_type": None,
                     "summary": action_summary("rent-nodes", count, itype, 0.0, None, rent["start"], rent["end"]),
                     "reserved_ratio_pct": 0.0, "reserved_nodes": 0, "temporary": True, "rent_start": rent["start"],
                     "rent_end": rent["end"], "window_cost_usd": rent["window_cost_usd"] * share,
                     "buy_12m_cost_usd": rent["buy_12m_cost_usd"] * share, "monthly_cost_usd": 0.0,
                     "next_12m_cost_usd": rent["window_cost_usd"] * share,
                     "reason": (f"{why}; temporary: needed only for {', '.join(need.events)}: rent for {rent['days']} days "
                                f"(${rent['window_cost_usd']:,.0f}) instead of buying (${rent['buy_12m_cost_usd']:,.0f} over "
                                f"12 months); {sizing.reason}")})
    return rows


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
                     "storage_type": None, "summary": "review", "spot_ratio_pct": 0.0, "reserved_ratio_pct": 0.0,
                     "reserved_term_years": None, "reserved_nodes": 0, "monthly_cost_usd": 0.0, "next_12m_cost_usd": 0.0,
                     "temporary": False, "window_cost_usd": 0.0, "binding_resource": ",".join(d["resource"]),
                     "binds_on": None, "events": "",
                     "reason": "; ".join(f"{r.resource}: {r.review_reason}" for r in d.itertuples())})
    return rows


#: What every number in the outputs means: the same words in the YAML, the report's
#: Assumptions, the email and docs/ARCHITECTURE.md.
DEFINITIONS = {
    "capacity": "raw capacity: the sum of the nodes' allocatable (storage: the pool's size)",
    "usableCapacity": "N+k usable capacity: raw capacity minus the k largest failure units (nodes, zones, or spot "
                      "groups when spot nodes fail together); storage has no N+k (replication is inside the storage "
                      "system), its usable capacity is its raw capacity",
    "measuredPeakUtilization": "the highest daily peak of the last 7 days, over N+k usable capacity (storage: over raw)",
    "forecastPeakUtilization": "the highest forecast daily peak over the horizon, on the bound the policy plans on "
                               "(risk: the (100 - max_late_risk)th percentile; upper: the interval's upper bound; point: "
                               "the forecast), over N+k usable capacity",
    "bindsOn": "the resource and demand (usage: real load; requests: what the scheduler reserves) that needs capacity first",
    "trigger": "needed-by date: the first day the chance that demand has reached the threshold exceeds max_late_risk "
               "(policies upper/point: the first day that bound reaches the threshold)",
    "orderBy": "trigger minus the lead time (the longer of the policy's and the catalog's for the instance or storage type)",
    "riskOfLate": "the chance that demand reaches the threshold before capacity ordered on the order-by date arrives; "
                  "for a late pool, before capacity ordered today arrives",
    "late": "the order-by date is today or past: capacity ordered today arrives after the trigger",
    "estimatedCost": "the monthly run-rate of what is added: hourly price x 730 h, blended by the pool's spot and "
                     "reserved shares; storage at its price per GB-month (1 GiB = 1.0737 GB)",
    "next12Months": "what the actions cost in the next 12 months, each counted from the day its capacity is there "
                    "(prorated); a rental costs its window",
    "temporary": "an action needed only because of short events: without them there is no trigger; renting for the "
                 "event window is compared with buying, the cheaper is recommended",
}


def apply_rentals(dec: pd.DataFrame, actions: pd.DataFrame, util: pd.DataFrame, policy_of: PolicyLookup,
                  as_of: dt.date, horizon_days: int, measured: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pools that rent for a short need, decided again with the rent lead time: their
    decisions' order-by date, lateness, risk and arrival figures are the rental's, and the
    rent actions carry the same risk (one set of numbers everywhere). Out: ``(decisions,
    actions)``; other pools are unchanged."""
    rent = actions["action"] == "rent-nodes" if len(actions) else pd.Series(dtype=bool)
    if not rent.any():
        return dec, actions
    pools = set(zip(actions.loc[rent, "cluster"], actions.loc[rent, "pool"]))
    again = decide(util[[k in pools for k in zip(util["cluster"], util["pool"])]], policy_of, as_of, horizon_days,
                   lambda c, p, t, r: (policy_of(c, p, t).rent_lead_time_days, "renting for a temporary need"), measured)
    key = ["cluster", "pool", "resource"]
    out, again = dec.set_index(key), again.set_index(key)
    cols = [c for c in again.columns if c in out.columns and c != "review_reason"]
    out.loc[again.index, cols] = again[cols]
    actions = actions.copy()
    actions.loc[rent, "risk_pct"] = [again.loc[(c, p, r), "risk_pct"] for c, p, r in
                                     actions.loc[rent, ["cluster", "pool", "binding_resource"]].itertuples(index=False)]
    return out.reset_index()[dec.columns], actions


POOL_COLUMNS = [
    "cluster", "pool", "tier", "status", "binds_on", "measured_peak_pct", "forecast_peak_pct", "trigger_date",
    "order_by_date", "late", "risk_pct", "horizon_risk_pct", "to_add", "monthly_cost_usd", "next_12m_cost_usd",
    "temporary", "earliest_arrival_date", "arrival_peak_pct", "arrival_over_usable", "arrival_over_raw", "review_reason",
]


def pool_summary(dec: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """One row per pool: the numbers a manager sees, the same in every output.

    The pool's figures are those of its resource that needs capacity first (earliest
    trigger, else the highest forecast peak); ``to_add`` and the costs add up its actions
    (so the costs sum to the plan totals); ``risk_pct`` is NaN for a pool without an action
    (no order to be late). Out: :data:`POOL_COLUMNS`.
    """
    rows = []
    for (cluster, pool, tier), d in dec.groupby(["cluster", "pool", "tier"], sort=True):
        first = _pool_first(d)
        a = actions[(actions.cluster == cluster) & (actions.pool == pool)] if len(actions) else actions
        review = d["review_reason"].dropna()
        status = "red" if (d["status"] == "red").any() else ("amber" if (d["status"] == "amber").any() else "green")
        to_add = "; ".join(a["summary"]) if len(a) else "-"
        order_by = a["order_by_date"].min() if len(a) else first.order_by_date
        rows.append({
            "cluster": cluster, "pool": pool, "tier": tier, "status": status,
            "binds_on": f"{first.resource} {first.binding_kind}" if isinstance(first.binding_kind, str) else None,
            "measured_peak_pct": first.measured_peak_pct, "forecast_peak_pct": first.forecast_peak_pct,
            "trigger_date": first.trigger_date, "order_by_date": order_by,
            "late": bool(a["late"].any()) if len(a) else bool(first.late),
            # the risk of being late belongs to an order: none without an action
            "risk_pct": first.risk_pct if len(a) else np.nan, "horizon_risk_pct": first.horizon_risk_pct, "to_add": to_add,
            "monthly_cost_usd": float(a["monthly_cost_usd"].sum()) if len(a) else 0.0,
            "next_12m_cost_usd": float(a["next_12m_cost_usd"].sum()) if len(a) else 0.0,
            "temporary": bool(a["temporary"].any()) if len(a) else False,
            "earliest_arrival_date": first.earliest_arrival_date, "arrival_peak_pct": first.arrival_peak_pct,
            "arrival_over_usable": bool(first.arrival_over_usable) if pd.notna(first.arrival_over_usable) else False,
            "arrival_over_raw": bool(first.arrival_over_raw) if pd.notna(first.arrival_over_raw) else False,
            "review_reason": "; ".join(f"{r}: {t}" for r, t in zip(d.loc[review.index, "resource"], review)) or None,
        })
    return pd.DataFrame(rows, columns=POOL_COLUMNS)


def pool_rows(pools: pd.DataFrame) -> list[dict]:
    """:func:`pool_summary` rows for the CapacityPlan document (camelCase, units in the text)."""
    out = []
    for r in pools.itertuples():
        item = {"cluster": r.cluster, "pool": r.pool, "tier": r.tier, "status": r.status, "bindsOn": r.binds_on,
                "measuredPeakUtilization": _pct_text(r.measured_peak_pct), "forecastPeakUtilization": _pct_text(r.forecast_peak_pct),
                "trigger": _date_text(r.trigger_date), "orderBy": _date_text(r.order_by_date),
                "riskOfLate": _pct_text(r.risk_pct),
                "riskWithinHorizon": _pct_text(r.horizon_risk_pct), "toAdd": r.to_add,
                "estimatedCost": f"${r.monthly_cost_usd:,.0f}/month", "next12Months": f"${r.next_12m_cost_usd:,.0f}"}
        if r.late:
            item["late"] = {"earliestArrival": _date_text(r.earliest_arrival_date),
                            "peakUntilArrival": _pct_text(r.arrival_peak_pct),
                            "aboveUsable": bool(r.arrival_over_usable), "aboveRaw": bool(r.arrival_over_raw)}
        if r.temporary:
            item["temporary"] = True
        if r.review_reason:
            item["review"] = r.review_reason
        out.append(item)
    return out


def plan_totals(pools: pd.DataFrame, actions: pd.DataFrame, fleet_costs: pd.DataFrame) -> dict:
    """The summary figures: pools by status (:func:`pool_summary` rows), actions, costs
    (run-rate, next 12 months, today's fleet)."""
    orders = actions[actions["action"] != "review"] if len(actions) else actions
    return {
        "pools": int(len(pools)), "red": int((pools.status == "red").sum()), "amber": int((pools.status == "amber").sum()),
        "review": int(pools["review_reason"].notna().sum()), "late": int(pools["late"].sum()),
        "actions": int(len(actions)), "added_monthly_cost_usd": float(actions["monthly_cost_usd"].sum()) if len(actions) else 0.0,
        "next_12m_cost_usd": float(actions["next_12m_cost_usd"].sum()) if len(actions) else 0.0,
        "fleet_monthly_cost_usd": float(fleet_costs["monthly_cost_usd"].sum()) if len(fleet_costs) else 0.0,
        "first_order_by": str(orders["order_by_date"].min()) if len(orders) else None,
    }


def _date_text(v) -> str | None:
    return None if v is None or pd.isna(v) else str(v)[:10]


def current_capacity(usable: pd.DataFrame, inventory: pd.DataFrame, daily: pd.DataFrame, fleet_costs: pd.DataFrame,
                     as_of: dt.date, measured_days: int = 7) -> dict:
    """The CapacityPlan's ``currentCapacity``: per tier and for the fleet, raw and N+k usable
    capacity and the measured peak utilisation of usage and of requests (the highest daily
    peak of the last ``measured_days`` days of the summed demand, over the summed N+k usable
    capacity); storage: raw capacity, use and growth; today's monthly cost (nodes and storage).

    In: ``usable`` (:func:`forecasting.headroom.usable_capacity` and storage rows),
    inventory, daily peaks (``cluster, pool, resource, kind, ts, value``) of the window.
    """
    end = pd.Timestamp(as_of, tz="UTC")
    tiers = usable[["cluster", "pool", "tier"]].drop_duplicates()
    recent = daily[(daily["ts"] >= end - pd.Timedelta(days=measured_days)) & (daily["ts"] < end)].merge(tiers, on=["cluster", "pool"])

    def block(u: pd.DataFrame, r: pd.DataFrame, inv: pd.DataFrame) -> dict:
        out: dict = {"nodes": int(len(inv))}
        for res, unit, scale in (("cpu", "cores", 1.0), ("memory", "GiB", GIB), ("pods", "pods", 1.0)):
            ur = u[u.resource == res]
            raw, usable_v = float(ur["capacity"].sum()), float(ur["usable"].sum())
            util = {}
            for kind in ("usage", "requests"):
                k = r[(r.resource == res) & (r.kind == kind)]
                if len(k) and usable_v > 0:
                    util[kind] = f"{100 * k.groupby('ts')['value'].sum().max() / usable_v:.0f}%"
            out[res] = {"raw": f"{raw / scale:,.0f} {unit}", "usable": f"{usable_v / scale:,.0f} {unit}",
                        "measuredPeakUtilization": util}
        return out

    compute_u = usable[usable.resource != "storage"]
    fleet = block(compute_u, recent, inventory)
    fleet["monthlyCost"] = f"${float(fleet_costs['monthly_cost_usd'].sum()):,.0f}" if len(fleet_costs) else "$0"
    out: dict = {"fleet": fleet, "tiers": {}}
    for tier, u in compute_u.groupby("tier", sort=True):
        out["tiers"][tier] = block(u, recent[recent.tier == tier], inventory[inventory.tier == tier])
    su = usable[usable.resource == "storage"]
    if len(su):
        s = daily[(daily.resource == "storage") & (daily.kind == "usage")].merge(su[["cluster", "pool"]], on=["cluster", "pool"])
        by_day = s.groupby("ts")["value"].sum().sort_index()
        total = float(su["capacity"].sum())
        storage = {"totalCapacity": f"{total / 2**40:,.0f}Ti"}
        if len(by_day):
            span = max((by_day.index[-1] - by_day.index[0]).days, 1)
            peak = s[(s["ts"] >= end - pd.Timedelta(days=measured_days))].groupby("ts")["value"].sum().max()
            storage |= {"usedCapacity": f"{by_day.iloc[-1] / 2**40:,.0f}Ti",
                        "growthRate": f"{(by_day.iloc[-1] - by_day.iloc[0]) / span * HOURS_PER_MONTH / 24 / 2**40:,.1f}Ti/month",
                        "measuredPeakUtilization": f"{100 * peak / total:.0f}%" if total > 0 else None}
        out["storage"] = storage
    return out


def plan_document(
    name: str,
    run_id: str,
    as_of: dt.date,
    actions: pd.DataFrame,
    current: dict,
    events: list[dict],
    thresholds: dict[str, float],
    catalog: Catalog,
    pools: list[dict] | None = None,
    definitions: dict[str, str] | None = None,
) -> dict:
    """The plan in the handbook's CapacityPlan shape (a dict ready for YAML).

    ``current`` from :func:`current_capacity`; ``events`` the business calendar entries
    (name, window, growth, reason); ``pools`` one summary per pool (status, what binds,
    measured and forecast peak utilisation, dates, risk); ``definitions`` what each number
    means (the same words as the report's).
    """
    timeline = []
    if len(actions):
        for (order_by, needed_by), g in actions.sort_values(["order_by_date", "cluster", "pool"]).groupby(
            ["order_by_date", "needed_by_date"], sort=True, dropna=False  # a review has no needed-by date
        ):
            acts = [_action_item(a) for a in g.itertuples()]
            timeline.append({"timeline": str(order_by), "neededBy": str(needed_by) if pd.notna(needed_by) else None,
                             "reason": "; ".join(sorted({a["reason"].split(";")[0] for a in acts})[:3]), "actions": acts})
    permanent = float(actions["monthly_cost_usd"].sum()) if len(actions) else 0.0
    year = float(actions["next_12m_cost_usd"].sum()) if len(actions) else 0.0
    spec = {
        "definitions": definitions or {},
        "currentCapacity": current,
        "pools": pools or [],
        "businessForecast": {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in events},
        "expansionPlan": timeline,
        "totals": {"addedMonthlyRunRate": f"${permanent:,.0f}", "next12Months": f"${year:,.0f}",
                   "fleetMonthlyToday": current.get("fleet", {}).get("monthlyCost", "$0")},
        "alerts": [
            {"metric": "cluster_cpu_utilization", "threshold": f"{thresholds.get('cpu', 70):g}%",
             "action": "notify capacity-planning team"},
            {"metric": "storage_usage", "threshold": f"{thresholds.get('storage', 75):g}%",
             "action": "start expansion process"},
        ],
    }
    return {
        "apiVersion": "capplan.io/v1",
        "kind": "CapacityPlan",
        "metadata": {"name": name, "runId": run_id, "asOf": str(as_of), "pricesAsOf": str(catalog.prices_as_of)},
        "spec": spec,
    }


def _action_item(a) -> dict:
    item = {"type": a.action, "cluster": a.cluster, "pool": a.pool, "summary": a.summary}
    if a.action in ("add-nodes", "rent-nodes"):
        item |= {"quantity": int(a.quantity), "instanceType": a.instance_type, "spotRatio": f"{a.spot_ratio_pct:g}%"}
    if a.action == "add-nodes" and a.reserved_ratio_pct:
        item["reservedCommitment"] = {"share": f"{a.reserved_ratio_pct:g}%", "term": f"{int(a.reserved_term_years)}y",
                                      "nodes": int(a.reserved_nodes)}
    if a.action == "expand-storage":
        item |= {"capacity": f"+{a.storage_gib / 1024:g}Ti", "storageType": a.storage_type}
    if a.action == "rent-nodes":
        item["temporary"] = {"events": a.events, "rentFrom": str(a.rent_start), "rentTo": str(a.rent_end),
                             "rentCost": f"${a.window_cost_usd:,.0f}", "buyInstead12Months": f"${a.buy_12m_cost_usd:,.0f}"}
    if a.action != "review":
        item |= {"bindsOn": a.binds_on, "measuredPeakUtilization": _pct_text(a.measured_peak_pct),
                 "forecastPeakUtilization": _pct_text(a.forecast_peak_pct), "riskOfLate": _pct_text(a.risk_pct),
                 "leadTimeDays": int(a.lead_time_days)}
    item |= {"estimatedCost": f"${a.monthly_cost_usd:,.0f}/month", "next12Months": f"${a.next_12m_cost_usd:,.0f}",
             "reason": a.reason}
    if a.late:
        item["late"] = True
    return item


def _pct_text(v) -> str | None:
    return f"{v:.0f}%" if v is not None and pd.notna(v) and np.isfinite(v) else None


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
