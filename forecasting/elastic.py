"""What autoscaled pools, cloud quotas and commitments add to a plan: the limits' runway,
each quota's usage and crossing, the autoscaled pools' forecast bill, and the commitment
ladder, with their actions. Pure (docs/AUTOSCALING.md).

:func:`elastic_plan` runs after the pools' decisions and actions (a quota counts the nodes
the plan adds) and returns :class:`ElasticOutputs`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .actions import ACTION_COLUMNS, pool_first
from .autoscaling import AutoscaledInputs, hour_of_week_profile, needed_nodes, provisioned_nodes, recent_weeks
from .commitments import CommitmentCatalog, Recommendation, coverage, recommend, spend_hours, uncovered_spend
from .events import Event, events_for, occurrences
from .frames import QUANTILE_COLUMNS
from .headroom import PolicyLookup, quantile_at
from .policy import HOURS_PER_MONTH, Catalog
from .quotas import QUOTA_COLUMNS, Quota, quota_runway, quota_usage

__all__ = ["ElasticOutputs", "elastic_plan", "LIMIT_RUNWAY_COLUMNS", "POOL_COST_COLUMNS", "LADDER_COLUMNS"]

LIMIT_RUNWAY_COLUMNS = [
    "cluster", "pool", "tier", "provisioner", "source", "limits_text", "binding_limit", "node_ceiling", "nodes_today",
    "needed_nodes_p50", "needed_nodes_risk", "binds_on", "crossing_p50_date", "crossing_date", "file_by_date",
    "lead_time_days", "late", "status", "risk_pct", "new_limits", "patch", "unreachable",
]
POOL_COST_COLUMNS = ["cluster", "pool", "month", "nodes_p50", "nodes_risk", "monthly_cost_p50_usd", "monthly_cost_risk_usd"]
LADDER_COLUMNS = ["kind", "name", "type", "term_years", "start_date", "expiry_date", "hourly_usd", "covers_usd_per_hour",
                  "discount_pct", "expected_saving_per_month_usd", "unused_chance_pct", "reason"]


@dataclass
class ElasticOutputs:
    """``limits`` (:data:`LIMIT_RUNWAY_COLUMNS`), ``quotas`` (:data:`QUOTA_COLUMNS` plus
    ``binds_before``), ``quota_usage`` (``code, ts, q...``: vCPU per day), ``pool_costs``
    (:data:`POOL_COST_COLUMNS`), ``ladder`` (:data:`LADDER_COLUMNS`), ``commitment``
    (the summary figures) and the extra ``actions`` (``request-quota``, ``commit``)."""

    limits: pd.DataFrame
    quotas: pd.DataFrame
    quota_usage: pd.DataFrame
    pool_costs: pd.DataFrame
    ladder: pd.DataFrame
    commitment: dict = field(default_factory=dict)
    actions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ACTION_COLUMNS))
    #: for charts: each autoscaled pool's needed capacity in its binding limit's units
    #: (``cluster, pool, resource, ts`` and the quantile columns) and the limits' history
    needed: pd.DataFrame = field(default_factory=pd.DataFrame)
    limit_history: pd.DataFrame = field(default_factory=pd.DataFrame)

    def records(self) -> dict:
        """JSON-safe rows of what every output shows (the run summary keeps them, so the
        CLI, the email and the report print the same figures): ``quotas``, ``limits``,
        ``commitments`` (the ladder and its summary) and each autoscaled pool's bill in
        its first and last month."""
        bills = []
        for (cluster, pool), g in self.pool_costs.groupby(["cluster", "pool"], sort=True):
            bills.append({"cluster": cluster, "pool": pool, "first_month": g["month"].iloc[0],
                          "first_p50_usd": float(g["monthly_cost_p50_usd"].iloc[0]), "last_month": g["month"].iloc[-1],
                          "last_p50_usd": float(g["monthly_cost_p50_usd"].iloc[-1]),
                          "last_risk_usd": float(g["monthly_cost_risk_usd"].iloc[-1])})
        return {"quotas": _json_rows(self.quotas), "limits": _json_rows(self.limits),
                "commitments": {"ladder": _json_rows(self.ladder), **self.commitment}, "bills": bills}

    @classmethod
    def empty(cls) -> "ElasticOutputs":
        return cls(pd.DataFrame(columns=LIMIT_RUNWAY_COLUMNS), pd.DataFrame(columns=[*QUOTA_COLUMNS, "binds_before"]),
                   pd.DataFrame(columns=["code", "ts", *QUANTILE_COLUMNS]), pd.DataFrame(columns=POOL_COST_COLUMNS),
                   pd.DataFrame(columns=LADDER_COLUMNS))


def _p50_crossing(forecasts: pd.DataFrame, usable: pd.DataFrame, policy_of: PolicyLookup, cluster: str, pool: str,
                  tier: str) -> dt.date | None:
    """The first day the median demand of any resource and kind reaches the threshold of
    the ceiling's usable capacity."""
    p = policy_of(cluster, pool, tier)
    first = None
    u = usable[(usable["cluster"] == cluster) & (usable["pool"] == pool)].set_index("resource")["usable"]
    f = forecasts[(forecasts["cluster"] == cluster) & (forecasts["pool"] == pool)]
    for (res, _kind), g in f.groupby(["resource", "kind"]):
        if res not in u.index:
            continue
        g = g.sort_values("ts")
        hit = np.flatnonzero(quantile_at(g, 0.5) >= float(u[res]) * p.threshold_for(res) / 100)
        if len(hit):
            day = pd.Timestamp(g["ts"].iloc[hit[0]]).date()
            first = day if first is None or day < first else first
    return first


def _limit_rows(auto: AutoscaledInputs, dec: pd.DataFrame, actions: pd.DataFrame, forecasts: pd.DataFrame,
                usable: pd.DataFrame, needed: pd.DataFrame, inventory: pd.DataFrame, policy_of: PolicyLookup) -> pd.DataFrame:
    rows = []
    # split once per pool (masks over the whole forecasts and inventory per pool were most
    # of this function's time at 100 clusters)
    fc_of = dict(tuple(forecasts.groupby(["cluster", "pool"], sort=False))) if len(forecasts) else {}
    count = inventory.groupby(["cluster", "pool"]).size().to_dict() if len(inventory) else {}
    for (cluster, pool), lim in sorted(auto.limits.items()):
        d = dec[(dec["cluster"] == cluster) & (dec["pool"] == pool) & dec["resource"].isin(("cpu", "memory", "pods"))]
        if d.empty:
            continue
        first = pool_first(d)
        act = actions[(actions["cluster"] == cluster) & (actions["pool"] == pool) & (actions["action"] == "raise-limit")]
        n = needed[(needed["cluster"] == cluster) & (needed["pool"] == pool)]
        p = policy_of(cluster, pool, first.tier)
        rows.append({
            "cluster": cluster, "pool": pool, "tier": first.tier, "provisioner": lim.provisioner, "source": lim.source,
            "limits_text": lim.text, "binding_limit": lim.binding, "node_ceiling": lim.node_ceiling,
            "nodes_today": int(count.get((cluster, pool), 0)),
            "needed_nodes_p50": float(quantile_at(n, 0.5).max()) if len(n) else np.nan,
            "needed_nodes_risk": float(quantile_at(n, 1 - p.max_late_risk_pct / 100).max()) if len(n) else np.nan,
            "binds_on": f"{first.resource} {first.binding_kind}" if isinstance(first.binding_kind, str) else None,
            "crossing_p50_date": _p50_crossing(fc_of.get((cluster, pool), forecasts.iloc[0:0]), usable, policy_of, cluster, pool,
                                               first.tier),
            "crossing_date": first.trigger_date, "file_by_date": first.order_by_date,
            "lead_time_days": first.lead_time_days, "late": bool(first.late), "status": first.status,
            "risk_pct": first.risk_pct if len(act) else first.horizon_risk_pct,
            "new_limits": act["summary"].iloc[0] if len(act) else "limits hold", "patch": act["patch"].iloc[0] if len(act) else None,
            "unreachable": lim.unreachable,
        })
    return pd.DataFrame(rows, columns=LIMIT_RUNWAY_COLUMNS)


def _quota_actions(quotas: pd.DataFrame, as_of: dt.date) -> list[dict]:
    out = []
    for q in quotas[quotas["crossing_date"].notna()].itertuples():
        summary = f"request {q.code} {q.value:,.0f} -> {q.new_value:,.0f} vCPU"
        out.append({
            "order_by_date": q.file_by_date, "needed_by_date": q.crossing_date, "late": bool(q.late), "cluster": q.clusters,
            "pool": f"quota {q.code}", "tier": "quota", "action": "request-quota", "quantity": 0, "instance_type": None,
            "storage_gib": 0.0, "storage_type": None, "summary": summary, "spot_ratio_pct": 0.0, "reserved_ratio_pct": 0.0,
            "reserved_term_years": None, "reserved_nodes": 0, "monthly_cost_usd": 0.0, "next_12m_cost_usd": 0.0,
            "temporary": False, "window_cost_usd": 0.0, "binding_resource": "vcpu", "binds_on": f"{q.code} ({q.unit})",
            "risk_pct": q.risk_pct, "lead_time_days": int(q.lead_time_days), "events": "", "target": q.code,
            "new_value": float(q.new_value), "patch": None,
            "reason": (f"{q.name or q.code} ({q.cloud} {q.account} {q.region}, counting {q.clusters}) reaches "
                       f"{q.value:,.0f} vCPU on {q.crossing_date} at the risk bound (P50: {q.crossing_p50_date or 'not within the horizon'}); "
                       f"file by {q.file_by_date} ({q.lead_time_days} days: {q.lead_time_note})"
                       + (f"; {q.binds_before}" if q.binds_before else "")),
        })
    return out


def _binds_before(quota: Quota, crossing: dt.date | None, limits: pd.DataFrame) -> str | None:
    if crossing is None or limits.empty:
        return None
    mine = limits[limits["cluster"].isin(quota.clusters)]
    later = [f"{r.cluster}/{r.pool}'s {r.binding_limit} limit ({r.crossing_date or 'not within the horizon'})"
             for r in mine.itertuples() if r.crossing_date is None or pd.isna(r.crossing_date) or r.crossing_date > crossing]
    return ("binds before " + ", ".join(later)) if later else None


def _month_costs(prov: pd.DataFrame, profile: pd.DataFrame, inventory: pd.DataFrame, policy_of: PolicyLookup,
                 catalog: Catalog, auto: AutoscaledInputs) -> pd.DataFrame:
    """Each autoscaled pool's forecast bill per month: nodes at the daily peak times the
    hour-of-week profile's mean (nodes run fewer at night), at the policy's spot and
    reserved mix."""
    rows = []
    for (cluster, pool), g in prov.groupby(["cluster", "pool"], sort=True):
        tier = inventory.loc[(inventory.cluster == cluster) & (inventory.pool == pool), "tier"].iloc[0]
        p = policy_of(cluster, pool, tier)
        shape = auto.shapes[(cluster, pool)]
        per_node_day = catalog.instance(shape.instance_type).monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct) * 24 / HOURS_PER_MONTH
        prof = profile[(profile["cluster"] == cluster) & (profile["pool"] == pool)]["ratio"]
        mean = float(prof.mean()) if len(prof) else 1.0  # nodes run fewer at night: the shape's mean
        g = g.sort_values("ts")
        p50, risk = quantile_at(g, 0.5), quantile_at(g, 1 - p.max_late_risk_pct / 100)
        month = pd.DatetimeIndex(g["ts"]).strftime("%Y-%m")
        frame = pd.DataFrame({"month": month, "p50": p50, "risk": risk})
        for m, x in frame.groupby("month", sort=True):
            rows.append({"cluster": cluster, "pool": pool, "month": m, "nodes_p50": float(x["p50"].mean() * mean),
                         "nodes_risk": float(x["risk"].mean() * mean),
                         "monthly_cost_p50_usd": float(x["p50"].mean() * mean * per_node_day * HOURS_PER_MONTH / 24),
                         "monthly_cost_risk_usd": float(x["risk"].mean() * mean * per_node_day * HOURS_PER_MONTH / 24)})
    return pd.DataFrame(rows, columns=POOL_COST_COLUMNS)


def _event_days(events: list[Event], inventory: pd.DataFrame, pools: set[tuple[str, str]], as_of: dt.date,
                days: int = 120) -> dict[tuple[str, str], set[dt.date]]:
    """Per pool, the days of the last ``days`` that a declared event with a window (with its
    ramps) moved: the recent weeks a commitment or a bill is based on leave them out (a
    step that persists is the new level, not left out)."""
    out = {}
    tiers = inventory.drop_duplicates(["cluster", "pool"]).set_index(["cluster", "pool"])["tier"].to_dict()
    first = as_of - dt.timedelta(days=days)
    for cluster, pool in pools:
        dims = {"cluster": cluster, "pool": pool, "tier": tiers.get((cluster, pool), pool), "resource": "cpu"}
        skip: set[dt.date] = set()
        for o in occurrences(events_for(events, dims), first, as_of):
            a, b = o.window_with_ramps()
            if b is None:
                continue
            skip |= {a + dt.timedelta(days=k) for k in range((b - a).days + 1)}
        out[(cluster, pool)] = skip
    return out


def _pool_spend(inventory: pd.DataFrame, actions: pd.DataFrame, prov: pd.DataFrame, hourly: pd.DataFrame | None,
                policy_of: PolicyLookup, catalog: Catalog, auto: AutoscaledInputs, days: pd.DatetimeIndex,
                as_of: dt.date, skip: dict[tuple[str, str], set[dt.date]]) -> list[np.ndarray]:
    """Per pool, its on-demand-equivalent spend per hour over the horizon (days, 24): the
    part of its nodes neither spot nor reserved by its policy, at on-demand price. Fixed
    pools: today's nodes, plus each planned add-nodes from the day it is there; autoscaled
    pools: :func:`forecasting.commitments.spend_hours` of their last four clean weeks (no
    declared event), scaled to today's nodes, raised by the growth of their forecast
    provisioned nodes (P50)."""
    n, out = len(days), []
    day = pd.DatetimeIndex(days).date
    for (cluster, pool, tier), g in inventory.groupby(["cluster", "pool", "tier"], sort=True):
        p = policy_of(cluster, pool, tier)
        uncovered = max(1 - (p.spot_ratio_pct + p.reserved_ratio_pct) / 100, 0.0)
        if (cluster, pool) in auto.shapes:
            got = recent_weeks(hourly, cluster, pool, as_of, skip.get((cluster, pool), set()))
            f = prov[(prov["cluster"] == cluster) & (prov["pool"] == pool)].set_index("ts").reindex(days).ffill().bfill()
            if got is None or f.empty or f["q500"].isna().all():
                continue
            recent = got[0] / got[1]  # relative to a usual day's peak: today's nodes at the peak
            median = f["q500"].to_numpy(dtype=float)
            growth = median / max(float(np.mean(median[:7])), 1e-9)
            price = catalog.instance(auto.shapes[(cluster, pool)].instance_type).on_demand_hourly_usd
            out.append(spend_hours(recent, growth) * len(g) * price * uncovered)
            continue
        on_demand = g if "capacity_type" not in g else g[g["capacity_type"] != "spot"]
        reserved_nodes = len(g) * p.reserved_ratio_pct / 100
        spend = sum(catalog.instance(t).on_demand_hourly_usd for t in on_demand["instance_type"])
        spend *= max(len(on_demand) - reserved_nodes, 0) / max(len(on_demand), 1)
        daily = np.full(n, spend)
        adds = actions[(actions["cluster"] == cluster) & (actions["pool"] == pool) & (actions["action"] == "add-nodes")] \
            if len(actions) else actions
        for a in adds.itertuples():
            start = as_of if a.late else a.needed_by_date
            daily = daily + np.where(day >= start, int(a.quantity) * catalog.instance(a.instance_type).on_demand_hourly_usd
                                     * uncovered, 0.0)
        out.append(np.repeat(daily[:, None], 24, axis=1))
    return out


def _ladder(book: CommitmentCatalog, spend: list, on_demand: dict[str, float], days: pd.DatetimeIndex,
            as_of: dt.date) -> tuple[pd.DataFrame, dict, list[dict]]:
    """Existing commitments and what to buy: decided together for today and for each day
    an existing commitment expires within the horizon (buying the day the old one ends,
    not today, when that is cheaper)."""
    rows = [{"kind": "existing", "name": c.name, "type": c.type, "term_years": c.term_years, "start_date": c.start,
             "expiry_date": c.expiry, "hourly_usd": c.hourly_usd if c.hourly_usd else None,
             "covers_usd_per_hour": float(coverage([c], on_demand, pd.DatetimeIndex([pd.Timestamp(c.start, tz="UTC")]))[0]),
             "discount_pct": c.discount_pct, "expected_saving_per_month_usd": None, "unused_chance_pct": None,
             "reason": "in force" + (f"; expires {c.expiry}, within the horizon" if c.expiry <= days[-1].date() else "")}
            for c in book.commitments]
    o1, o3 = book.offer(1), book.offer(3)
    if not (o1 or o3):
        return pd.DataFrame(rows, columns=LADDER_COLUMNS), {}, []
    d1, d3 = (o1.discount_pct / 100 if o1 else None), (o3.discount_pct / 100 if o3 else None)
    expiries = sorted({c.expiry for c in book.commitments if as_of < c.expiry <= days[-1].date()})
    stages = [0, *((e - as_of).days for e in expiries)]
    samples = uncovered_spend(spend, coverage(book.commitments, on_demand, days), days)
    rec = recommend(samples, d1, d3, stages)
    actions = []
    for buy in rec.purchases:
        for years, cover, hourly, offer in ((3, buy.cover_3y, buy.hourly_3y, o3), (1, buy.cover_1y, buy.hourly_1y, o1)):
            if offer is None or hourly < 0.5:  # under 50 cents an hour: not worth a purchase
                continue
            name = f"{offer.type} {years}y from {buy.day}"
            rows.append({"kind": "recommended", "name": name, "type": offer.type, "term_years": years, "start_date": buy.day,
                         "expiry_date": buy.day + dt.timedelta(days=365 * years), "hourly_usd": hourly,
                         "covers_usd_per_hour": cover, "discount_pct": offer.discount_pct,
                         "expected_saving_per_month_usd": rec.saving_per_month, "unused_chance_pct": 100 * rec.unused_chance,
                         "reason": _commit_reason(rec, buy.day, as_of)})
            actions.append(_commit_action(name, offer.type, years, buy.day, hourly, cover, rec, as_of))
    summary = {"saving_per_month_usd": rec.saving_per_month, "unused_chance_pct": 100 * rec.unused_chance,
               "on_demand_cost_per_month_usd": rec.baseline_per_month, "cost_per_month_usd": rec.cost_per_month,
               "decision_dates": [str(b.day) for b in rec.purchases]}
    return pd.DataFrame(rows, columns=LADDER_COLUMNS), summary, actions


def _commit_reason(rec: Recommendation, when: dt.date, as_of: dt.date) -> str:
    start = "today" if when == as_of else f"on {when}, when a commitment expires"
    return (f"bought {start}: together with the other purchases it minimises the expected cost of the uncovered "
            f"on-demand spend until the last 3-year term ends (forecast for the horizon, its last 30 days held beyond); "
            f"expected saving ${rec.saving_per_month:,.0f}/month, {100 * rec.unused_chance:.0f}% of the first year's "
            "hours leave part of the new commitments unused")


def _commit_action(name: str, ctype: str, years: int, when: dt.date, hourly: float, cover: float, rec: Recommendation,
                   as_of: dt.date) -> dict:
    return {
        "order_by_date": when, "needed_by_date": when, "late": False, "cluster": "fleet", "pool": "commitments",
        "tier": "commitment", "action": "commit", "quantity": 0, "instance_type": None, "storage_gib": 0.0, "storage_type": None,
        "summary": f"{years}-year {ctype} ${hourly:,.2f}/h", "spot_ratio_pct": 0.0, "reserved_ratio_pct": 0.0,
        "reserved_term_years": years, "reserved_nodes": 0, "monthly_cost_usd": 0.0, "next_12m_cost_usd": 0.0,
        "temporary": False, "window_cost_usd": 0.0, "binding_resource": None, "binds_on": None, "risk_pct": np.nan,
        "lead_time_days": 0, "events": "", "target": name, "new_value": hourly, "patch": None,
        "reason": f"covers ${cover:,.2f}/h of on-demand spend; " + _commit_reason(rec, when, as_of),
    }


def elastic_plan(auto: AutoscaledInputs, dec: pd.DataFrame, actions: pd.DataFrame, forecasts: pd.DataFrame,
                 usable: pd.DataFrame, daily: pd.DataFrame, hourly: pd.DataFrame | None, inventory: pd.DataFrame,
                 policy_of: PolicyLookup, catalog: Catalog, quotas: list[Quota], commitments: CommitmentCatalog | None,
                 as_of: dt.date, horizon_days: int, max_late_risk_pct: float, events: list[Event] | None = None) -> ElasticOutputs:
    """Limits' runway, quotas, autoscaled pools' bill and the commitment ladder.

    In: the autoscaled pools (:class:`forecasting.autoscaling.AutoscaledInputs`), the
    plan's decisions and actions, the daily-peak forecasts, the planning ``usable`` (with
    the ceilings), daily and hourly pool history, inventory, policies, catalog, quotas and
    commitments, and the business calendar (its past windows are left out of the recent
    weeks). Out: :class:`ElasticOutputs`."""
    events = events or []
    if not auto.shapes and not quotas and commitments is None:
        return ElasticOutputs.empty()
    days = pd.date_range(pd.Timestamp(as_of, tz="UTC"), periods=horizon_days, freq="D")
    ceil = auto.ceilings
    needed = needed_nodes(forecasts, ceil, policy_of, auto.shapes) if len(ceil) else needed_nodes(forecasts.iloc[0:0], ceil, policy_of, {})
    limits = _limit_rows(auto, dec, actions, forecasts, usable, needed, inventory, policy_of)
    qrows, usage_frames = [], []
    for q in quotas:
        use = quota_usage(q, inventory, actions, needed, auto.shapes, policy_of, catalog, days, as_of)
        row = quota_runway(q, use, as_of, max_late_risk_pct)
        row["binds_before"] = _binds_before(q, row["crossing_date"], limits)
        qrows.append(row)
        usage_frames.append(use.assign(code=q.code))
    quota_frame = pd.DataFrame(qrows, columns=[*QUOTA_COLUMNS, "binds_before"])
    usage = pd.concat(usage_frames, ignore_index=True)[["code", "ts", *QUANTILE_COLUMNS]] if usage_frames else \
        pd.DataFrame(columns=["code", "ts", *QUANTILE_COLUMNS])
    prov = provisioned_nodes(forecasts, daily, inventory, set(auto.shapes), as_of)
    skip = _event_days(events, inventory, set(auto.shapes), as_of)
    profile = hour_of_week_profile(hourly, as_of, skip) if hourly is not None else \
        pd.DataFrame(columns=["cluster", "pool", "hour_of_week", "week", "ratio"])
    profile = profile[[k in auto.shapes for k in zip(profile["cluster"], profile["pool"])]] if len(profile) else profile
    pool_costs = _month_costs(prov, profile, inventory, policy_of, catalog, auto)
    extra = _quota_actions(quota_frame, as_of)
    ladder, summary = pd.DataFrame(columns=LADDER_COLUMNS), {}
    if commitments is not None:
        on_demand = {t.name: t.on_demand_hourly_usd for t in catalog.instance_types}
        spend = _pool_spend(inventory, actions, prov, hourly, policy_of, catalog, auto, days, as_of, skip)
        ladder, summary, commit = _ladder(commitments, spend, on_demand, days, as_of)
        extra += commit
    return ElasticOutputs(limits, quota_frame, usage, pool_costs, ladder, summary, pd.DataFrame(extra, columns=ACTION_COLUMNS),
                          _needed_in_limit_units(needed, auto), auto.history)


def _needed_in_limit_units(needed: pd.DataFrame, auto: AutoscaledInputs) -> pd.DataFrame:
    """Needed nodes as capacity of each pool's binding limit (cores, bytes or nodes)."""
    out = []
    for (cluster, pool), lim in auto.limits.items():
        n = needed[(needed["cluster"] == cluster) & (needed["pool"] == pool)]
        if n.empty:
            continue
        per = lim.shape.capacity(lim.binding)
        out.append(n.assign(resource=lim.binding, **{c: n[c] * per for c in QUANTILE_COLUMNS}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["cluster", "pool", "resource", "ts", *QUANTILE_COLUMNS])


def _json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows with dates as ISO text, missing values as None."""
    out = []
    for row in frame.to_dict("records"):
        item = {}
        for k, v in row.items():
            if v is None or (isinstance(v, float) and not np.isfinite(v)) or (not isinstance(v, (str, list, dict)) and pd.isna(v)):
                item[k] = None
            elif isinstance(v, (dt.date, pd.Timestamp)):
                item[k] = str(v)[:10]
            elif isinstance(v, (np.integer, np.floating, np.bool_)):
                item[k] = v.item()
            else:
                item[k] = v
        out.append(item)
    return out
