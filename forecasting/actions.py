"""Dated, costed actions for every pool with a trigger in the horizon: add nodes, expand
storage, rent for a short event, or review a pool that has no forecast. Pure.

In: decisions and utilisation (:mod:`forecasting.headroom`), the inventory, storage pools,
policies and the catalog. Out: one row per action with :data:`ACTION_COLUMNS`.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

from .autoscaling import AutoscaledInputs, PoolLimits, limit_patch, limit_summary, new_limits
from .costs import HOURS_PER_MONTH, cost_within, storage_monthly_cost
from .headroom import COMPUTE_RESOURCES, PolicyLookup
from .headroom import decisions as decide
from .policy import Catalog, PoolPolicy
from .sizing import Sizing, fmt_amount, size_nodes, size_storage

__all__ = ["ACTION_COLUMNS", "action_summary", "build_plan", "apply_rentals", "pool_first"]

ACTION_COLUMNS = [
    "order_by_date", "needed_by_date", "late", "cluster", "pool", "tier", "action", "quantity",
    "instance_type", "storage_gib", "storage_type", "summary", "spot_ratio_pct", "reserved_ratio_pct",
    "reserved_term_years", "reserved_nodes", "monthly_cost_usd", "next_12m_cost_usd", "temporary", "rent_start",
    "rent_end", "window_cost_usd", "buy_12m_cost_usd", "binding_resource", "binds_on", "measured_peak_pct",
    "forecast_peak_pct", "risk_pct", "lead_time_days", "events", "reason", "target", "new_value", "patch",
]



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


def pool_first(d: pd.DataFrame) -> pd.Series:
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


def _chance_and_lead_time(first: pd.Series, before: str) -> str:
    """`` (23% chance of crossing before <before>); lead time 90 days (<source>)``."""
    text = f" ({first.risk_pct:.0f}% chance of crossing before {before})" if np.isfinite(first.risk_pct) else ""
    return text + f"; lead time {int(first.lead_time_days)} days ({first.lead_time_source})"


def _why(first: pd.Series, policy: PoolPolicy, tier: str, event_text: str) -> str:
    if tier == "storage":
        base = (f"storage use reaches {first.threshold_pct:g}% of raw capacity (no N+k: replication is inside the storage "
                f"system) on {first.trigger_date}")
    else:
        base = (f"{first.resource} {first.binding_kind} reaches {first.threshold_pct:g}% of N+{policy.redundancy_k} "
                f"usable on {first.trigger_date}")
    base += _chance_and_lead_time(first, f"capacity ordered on {first.order_by_date} arrives")
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
    autoscaled: AutoscaledInputs | None = None,
) -> pd.DataFrame:
    """Dated, costed actions for every pool with a trigger in the horizon.

    In: :func:`forecasting.headroom.decisions` and ``utilisation`` output, the inventory,
    storage pools (``cluster, pool, capacity``), the catalog; ``effects`` from
    :func:`forecasting.reasons.event_effects`, ``temporary`` from
    :func:`forecasting.reasons.temporary_needs`, ``notes`` more text per pool (e.g.
    unexplained spikes). Out: one row per action with :data:`ACTION_COLUMNS`. An action is
    ordered on the pool's earliest order-by date and sized so that the whole horizon stays
    below the threshold; a pool needed only for short events rents instead of buying when
    that is cheaper over the next 12 months. An autoscaled pool (``autoscaled``) is never
    sized in nodes: its limits are raised (:func:`raise_limit_row`).
    """
    rows = []
    triggered = decisions[decisions["trigger_date"].notna()]
    for (cluster, pool, tier), d in triggered.groupby(["cluster", "pool", "tier"], sort=True):
        p = policy_of(cluster, pool, tier)
        first = pool_first(d)
        u = util[(util.cluster == cluster) & (util.pool == pool)]
        peak = _sizing_demand(u, d)
        event_text, events = _event_text(effects, cluster, pool, first.resource)
        limits = autoscaled.of(cluster, pool) if autoscaled else None
        why = _why_limit(first, p, limits, event_text) if limits else _why(first, p, tier, event_text)
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
        if limits:
            rows.append(raise_limit_row(common, limits, peak, p, pool, why))
            continue
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
                                   f"{fmt_amount(peak['storage'], 'storage')} below {p.threshold_for('storage'):g}% "
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


def _why_limit(first: pd.Series, policy: PoolPolicy, limits: PoolLimits, event_text: str) -> str:
    base = (f"{first.resource} {first.binding_kind} reaches {first.threshold_pct:g}% of the N+{policy.redundancy_k} usable "
            f"capacity its limits allow ({limits.text}: {limits.node_ceiling:,.0f} x {limits.shape.instance_type}, the "
            f"{limits.binding} limit binds) on {first.trigger_date}")
    base += _chance_and_lead_time(first, f"a raise filed on {first.order_by_date} is in force")
    if first.late:
        base += (f"; late: filed today the raise is in force {first.earliest_arrival_date}, forecast peak until then "
                 f"{first.arrival_peak_pct:.0f}% of N+{policy.redundancy_k} usable at the limit")
    if limits.unreachable:
        base += f"; {limits.unreachable}"
    if event_text:
        base += f"; {event_text}"
    return base


def raise_limit_row(common: dict, limits: PoolLimits, peak: dict[str, float], p: PoolPolicy, pool: str, why: str) -> dict:
    """The ``raise-limit`` action of an autoscaled pool: every limit raised to the capacity
    of the nodes the horizon needs (each resource's sizing peak at its threshold plus the
    ceiling's N+k and granularity margin), as a ready patch. A limit costs nothing: the
    pool's bill follows its demand (the forecast cost, not this action)."""
    need = {r: v * 100 / p.threshold_for(r) + limits.lost[r] for r, v in peak.items() if r in limits.lost and v > 0}
    raised = new_limits(limits.values, need, limits.shape)
    summary = limit_summary(limits.values, raised)
    target_nodes = max(math.ceil(v / limits.shape.allocatable[r] - 1e-9) for r, v in need.items()) if need else 0
    return {**common, "action": "raise-limit", "quantity": max(int(target_nodes - limits.node_ceiling), 0),
            "instance_type": limits.shape.instance_type, "storage_gib": 0.0, "storage_type": None, "summary": summary,
            "reserved_ratio_pct": 0.0, "reserved_nodes": 0, "monthly_cost_usd": 0.0, "next_12m_cost_usd": 0.0,
            "target": f"{p.provisioner} {pool}", "new_value": float(raised.get(limits.binding, 0.0)),
            "patch": limit_patch(p.provisioner, pool, raised),
            "reason": f"{why}; the horizon needs {target_nodes:,} x {limits.shape.instance_type} at the risk bound "
                      f"(demand / threshold + {p.redundancy_k + 1} largest nodes): {summary}"}


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


