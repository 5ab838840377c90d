"""The figures every output shows and the CapacityPlan document: one row per pool, the
plan's totals, today's capacity, the YAML document and the month-over-month diff. Pure.

Every number here is computed once and only formatted by ``pipelines.present``
(docs/ARCHITECTURE.md, "The numbers").
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .actions import pool_first
from .costs import GIB, HOURS_PER_MONTH
from .policy import Catalog

__all__ = ["DEFINITIONS", "POOL_COLUMNS", "pool_summary", "pool_rows", "plan_totals", "current_capacity", "plan_document",
           "diff_plans", "limit_section", "quota_section", "commitment_section"]

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
    "autoscaledPool": "a pool that grows with demand up to its limits (Karpenter NodePool, cluster-autoscaler node "
                      "group): its usable capacity is what its limits allow (main-type nodes) minus the k largest "
                      "nodes and one more of granularity, so its trigger is the day the capacity it needs (demand at "
                      "the threshold, plus N+k, plus one largest instance) reaches a limit, and its action raises the "
                      "limits; order by is the file-by date (trigger minus limit_lead_time_days)",
    "quota": "a cloud quota counts the vCPU of its families and capacity types in every cluster it lists: fixed "
             "pools' nodes plus planned additions, autoscaled pools' needed nodes (quantiles summed); crossing at "
             "P50 and at max_late_risk; file by = crossing minus the quota's lead time (an assumption)",
    "forecastMonthlyCost": "an autoscaled pool's bill: today's nodes scaled by the forecast requests over today's "
                           "peak, times the mean of its hour-of-week profile, at its spot and reserved mix",
    "commitment": "amounts of on-demand-equivalent spend per hour to commit for 1 and 3 years that minimise the "
                  "expected cost over three years of the spend neither spot, reserved nor already committed "
                  "(the forecast for the horizon, its last 30 days held beyond); a commitment at discount d pays "
                  "off where it is used at least 1 - d of the time",
}



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
        first = pool_first(d)
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
    orders = actions[~actions["action"].isin(("review", "commit"))] if len(actions) else actions
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
    if a.action == "raise-limit":
        item |= {"target": a.target, "patch": a.patch}
    if a.action == "request-quota":
        item |= {"quotaCode": a.target, "newValue": f"{a.new_value:,.0f} vCPU"}
    if a.action == "commit":
        item |= {"commitment": a.target, "hourly": f"${a.new_value:,.2f}/h"}
    if a.action == "rent-nodes":
        item["temporary"] = {"events": a.events, "rentFrom": str(a.rent_start), "rentTo": str(a.rent_end),
                             "rentCost": f"${a.window_cost_usd:,.0f}", "buyInstead12Months": f"${a.buy_12m_cost_usd:,.0f}"}
    if a.action not in ("review", "commit"):
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


def _money(v) -> str | None:
    return None if v is None or pd.isna(v) else f"${v:,.0f}"


def limit_section(limits: pd.DataFrame, pool_costs: pd.DataFrame) -> list[dict]:
    """The CapacityPlan's ``limits``: per autoscaled pool its limits, when the capacity it
    needs crosses them (P50 and at the risk), the file-by date, the new limits as a patch,
    what cannot be reached and the forecast monthly bill.
    In: :data:`forecasting.elastic.LIMIT_RUNWAY_COLUMNS` and ``POOL_COST_COLUMNS`` rows."""
    out = []
    pools = sorted(set(zip(limits["cluster"], limits["pool"])) | set(zip(pool_costs["cluster"], pool_costs["pool"])))
    for cluster, pool in pools:
        item: dict = {"cluster": cluster, "pool": pool}
        lim = limits[(limits["cluster"] == cluster) & (limits["pool"] == pool)]
        if len(lim):
            r = lim.iloc[0]
            item |= {"provisioner": r.provisioner, "source": r.source, "limits": r.limits_text, "bindingLimit": r.binding_limit,
                     "nodeCeiling": int(r.node_ceiling), "nodesToday": int(r.nodes_today), "bindsOn": r.binds_on,
                     "neededNodes": {"p50": _round(r.needed_nodes_p50), "atRisk": _round(r.needed_nodes_risk)},
                     "crossingP50": _date_text(r.crossing_p50_date), "crossing": _date_text(r.crossing_date),
                     "fileBy": _date_text(r.file_by_date), "riskOfLate": _pct_text(r.risk_pct), "status": r.status,
                     "leadTimeDays": int(r.lead_time_days), "newLimits": r.new_limits}
            if r.patch:
                item["patch"] = r.patch
            if r.late:
                item["late"] = True
            if isinstance(r.unreachable, str) and r.unreachable:
                item["unreachable"] = r.unreachable
        else:
            item["limits"] = "none known"
        costs = pool_costs[(pool_costs["cluster"] == cluster) & (pool_costs["pool"] == pool)]
        item["forecastMonthlyCost"] = [{"month": c.month, "nodes": _round(c.nodes_p50), "p50": _money(c.monthly_cost_p50_usd),
                                        "atRisk": _money(c.monthly_cost_risk_usd)} for c in costs.itertuples()]
        out.append(item)
    return out


def _round(v) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), 1)


def quota_section(quotas: pd.DataFrame) -> list[dict]:
    """The CapacityPlan's ``quotas``: value, use today, the peak, crossing (P50 and at the
    risk), file-by date, new value and lead time per quota. In: :data:`forecasting.quotas.QUOTA_COLUMNS`."""
    out = []
    for q in quotas.itertuples():
        item = {"code": q.code, "name": q.name, "cloud": q.cloud, "account": q.account, "region": q.region,
                "clusters": q.clusters.split(","), "value": f"{q.value:,.0f} vCPU", "usedToday": f"{q.used_today:,.0f} vCPU",
                "peak": {"p50": f"{q.peak_p50:,.0f} vCPU", "atRisk": f"{q.peak_risk:,.0f} vCPU"},
                "crossingP50": _date_text(q.crossing_p50_date), "crossing": _date_text(q.crossing_date),
                "fileBy": _date_text(q.file_by_date), "riskOfLate": _pct_text(q.risk_pct), "status": q.status,
                "leadTimeDays": int(q.lead_time_days), "leadTime": q.lead_time_note}
        if q.new_value is not None and pd.notna(q.new_value):
            item["newValue"] = f"{q.new_value:,.0f} vCPU"
        if q.late:
            item["late"] = True
        if isinstance(q.binds_before, str):
            item["bindsBefore"] = q.binds_before
        out.append(item)
    return out


def commitment_section(ladder: pd.DataFrame, summary: dict) -> dict:
    """The CapacityPlan's ``commitments``: what exists, what to buy (the ladder) and the
    expected saving. In: :data:`forecasting.elastic.LADDER_COLUMNS` rows and the summary."""
    def row(r) -> dict:
        item = {"name": r.name, "type": r.type, "term": f"{int(r.term_years)}y", "start": _date_text(r.start_date),
                "expiry": _date_text(r.expiry_date), "covers": f"${r.covers_usd_per_hour:,.2f}/h on-demand",
                "discount": f"{r.discount_pct:g}%"}
        if r.hourly_usd is not None and pd.notna(r.hourly_usd):
            item["hourly"] = f"${r.hourly_usd:,.2f}/h"
        if r.kind == "recommended":
            item |= {"expectedSaving": f"${r.expected_saving_per_month_usd:,.0f}/month",
                     "chanceUnused": _pct_text(r.unused_chance_pct)}
        return item

    out = {"existing": [row(r) for r in ladder[ladder["kind"] == "existing"].itertuples()],
           "recommended": [row(r) for r in ladder[ladder["kind"] == "recommended"].itertuples()]}
    if summary:
        out["expectedSavingPerMonth"] = f"${summary['saving_per_month_usd']:,.0f}"
        out["chanceUnused"] = _pct_text(summary["unused_chance_pct"])
    return out
