"""Autoscaled pools: their ceilings, the capacity they need, and what raising a limit means.
Pure and hand-checkable (docs/AUTOSCALING.md).

An autoscaled pool (Karpenter NodePool, cluster-autoscaler node group) grows with demand
until a limit stops it. Its limits (``pool_limits``: :data:`LIMIT_COLUMNS`, in instance
*capacity* units: cores, bytes, nodes, as Karpenter counts them) become a **ceiling** per
resource in allocatable terms, and the ceiling's N+k usable capacity is what is left after
the k largest nodes fail and one more largest node of granularity:

    usable_r = n_eff x allocatable_r(main type) - (k + 1) x largest allocatable_r

where ``n_eff`` is the number of main-type nodes the tightest limit allows. Demand at the
pool's threshold reaches that usable capacity exactly when the provisioned capacity needed
(demand / threshold + N+k + one largest instance) reaches the limit, so the plan's usual
utilisation, trigger and risk (:mod:`forecasting.headroom`) give the limit's crossing date.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .frames import QUANTILE_COLUMNS
from .headroom import ALLOC_COLUMNS, COMPUTE_RESOURCES, PolicyLookup
from .policy import Catalog, PoolPolicy

__all__ = ["LIMIT_COLUMNS", "LIMIT_RESOURCES", "NodeShape", "pool_shape", "autoscaled_pools", "limits_in_force",
           "drop_removed_limits", "REMOVED_AFTER",
           "ceilings", "CEILING_COLUMNS", "new_limits", "limit_patch", "limit_summary", "needed_nodes",
           "provisioned_nodes", "hour_of_week_profile", "clean_weeks", "recent_weeks", "fmt_limit"]

GIB = 2**30
#: ``pool_limits`` rows: one limit of one pool from ``ts`` on (a history: limits are raised).
LIMIT_COLUMNS = ["cluster", "pool", "source", "resource", "ts", "value"]
#: Limit resources and their units (instance capacity, as Karpenter and cluster-autoscaler count).
LIMIT_RESOURCES = {"cpu": "cores", "memory": "bytes", "nodes": "nodes"}
#: A pool without known limits: its ceiling is this many times today's capacity.
UNBOUNDED = 1e6
CEILING_COLUMNS = ["cluster", "pool", "tier", "resource", "nodes", "units", "failure_unit", "redundancy_k", "capacity",
                   "lost", "usable", "too_small", "pool_kind", "binding_limit", "node_ceiling", "limits_text", "unreachable"]


@dataclass(frozen=True)
class NodeShape:
    """One node of an instance type: its capacity (what limits count) and allocatable."""

    instance_type: str
    vcpu: float
    memory_bytes: float
    allocatable: dict[str, float]

    def capacity(self, resource: str) -> float:
        """Instance capacity counted against a limit on ``resource`` (cpu, memory, nodes)."""
        return {"cpu": self.vcpu, "memory": self.memory_bytes, "nodes": 1.0}[resource]


def _alloc_of(pool_nodes: pd.DataFrame, name: str, catalog: Catalog) -> dict[str, float]:
    same = pool_nodes[pool_nodes["instance_type"] == name]
    if len(same):
        return {r: float(same[ALLOC_COLUMNS[r]].median()) for r in COMPUTE_RESOURCES}
    return catalog.instance(name).allocatable()


def pool_shape(pool_nodes: pd.DataFrame, catalog: Catalog, name: str | None = None) -> NodeShape:
    """The shape of the pool's main (most common) instance type, or of ``name``:
    allocatable as its nodes show it (else the catalog's), capacity from the catalog."""
    name = name or str(pool_nodes["instance_type"].mode().iloc[0])
    t = catalog.instance(name)
    return NodeShape(name, t.vcpu, t.memory_gib * GIB, _alloc_of(pool_nodes, name, catalog))


def _allowed(pool_nodes: pd.DataFrame, policy: PoolPolicy) -> list[str]:
    return list(dict.fromkeys([*pool_nodes["instance_type"].unique(), *policy.instance_types]))


def autoscaled_pools(inventory: pd.DataFrame, policy_of: PolicyLookup, limits: pd.DataFrame | None = None) -> set[tuple[str, str]]:
    """``(cluster, pool)`` of the inventory's autoscaled pools: the policy says
    ``autoscaled``, or ``auto`` and the source reports limits for the pool (``limits``:
    :data:`LIMIT_COLUMNS`)."""
    reported = set(zip(limits["cluster"], limits["pool"])) if limits is not None and len(limits) else set()
    pools = inventory[["cluster", "pool", "tier"]].drop_duplicates()
    out = set()
    for r in pools.itertuples():
        kind = policy_of(r.cluster, r.pool, r.tier).pool_kind
        if kind == "autoscaled" or (kind == "auto" and (r.cluster, r.pool) in reported):
            out.add((r.cluster, r.pool))
    return out


#: A pool's limit series that stops while its cluster's other limit series go on for longer
#: than this was removed (the NodePool's ``spec.limits`` entry deleted, the node group gone):
#: it is no longer in force. A cluster whose limits all stop together (ingest ended) keeps them.
REMOVED_AFTER = pd.Timedelta(days=1)


def drop_removed_limits(limits: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """``limits`` (:data:`LIMIT_COLUMNS`) before ``end`` without the series (cluster, pool,
    resource) whose last sample is more than :data:`REMOVED_AFTER` older than the latest
    limit sample of the same cluster."""
    seen = limits[limits["ts"] < end]
    if seen.empty:
        return seen
    last = seen.groupby(["cluster", "pool", "resource"])["ts"].transform("max")
    cluster_last = seen.groupby("cluster")["ts"].transform("max")
    return seen[last >= cluster_last - REMOVED_AFTER]


def limits_in_force(limits: pd.DataFrame, inventory: pd.DataFrame, policy_of: PolicyLookup, as_of: dt.date) -> pd.DataFrame:
    """The limits of every autoscaled pool on the plan date.

    In: ``limits`` (:data:`LIMIT_COLUMNS`, from metrics), the inventory and policies. A
    pool's latest metric value before ``as_of`` wins, unless the series was removed
    (:func:`drop_removed_limits`); a pool without any reported limit uses its policy's
    ``limits`` (source ``config``), else it has none (planned as unlimited, for review).
    Out: ``cluster, pool, resource, value, source, since`` (``since``: the day the value took
    effect, None for the config's)."""
    end = pd.Timestamp(as_of, tz="UTC")
    seen = drop_removed_limits(limits, end) if len(limits) else limits
    rows = []
    for cluster, pool in sorted(autoscaled_pools(inventory, policy_of, limits)):
        mine = seen[(seen["cluster"] == cluster) & (seen["pool"] == pool)] if len(seen) else seen
        if len(mine):
            for res, g in mine.sort_values("ts").groupby("resource", sort=True):
                last = g.iloc[-1]
                changed = g[g["value"] != last["value"]]
                since = g[g["ts"] > changed["ts"].max()]["ts"].min() if len(changed) else g["ts"].min()
                rows.append({"cluster": cluster, "pool": pool, "resource": res, "value": float(last["value"]),
                             "source": last["source"], "since": pd.Timestamp(since).date()})
            continue
        tier = inventory.loc[(inventory.cluster == cluster) & (inventory.pool == pool), "tier"].iloc[0]
        for key, v in policy_of(cluster, pool, tier).limits.items():
            res = "memory" if key == "memory_gib" else key
            rows.append({"cluster": cluster, "pool": pool, "resource": res, "value": float(v) * (GIB if res == "memory" else 1),
                         "source": "config", "since": None})
    return pd.DataFrame(rows, columns=["cluster", "pool", "resource", "value", "source", "since"])


def fmt_limit(resource: str, value: float) -> str:
    """``4,000 cores``, ``8,192 GiB``, ``600 nodes``."""
    if resource == "memory":
        return f"{value / GIB:,.0f} GiB"
    return f"{value:,.0f} {LIMIT_RESOURCES.get(resource, resource)}"


def _unreachable(limits: dict[str, float], allowed: list[NodeShape]) -> list[str]:
    """Limits the pool can never reach (karpenter-provider-aws#6328): with every allowed
    instance type, another limit stops the pool first. For each type the nodes it may run
    are the fewest any limit allows; a limit is unreachable when no type reaches it."""
    out = []
    for res, v in limits.items():
        if res == "nodes":
            continue
        others = {r: x for r, x in limits.items() if r != res}
        if not others:
            continue
        reach = {s.instance_type: min(x / s.capacity(r) for r, x in others.items()) * s.capacity(res) for s in allowed}
        best = max(reach, key=reach.get)
        if reach[best] < v * 0.999:
            stop = min(others, key=lambda r: others[r] / next(s for s in allowed if s.instance_type == best).capacity(r))
            out.append(f"the {res} limit of {fmt_limit(res, v)} cannot be reached: the {stop} limit stops the pool at "
                       f"{fmt_limit(res, reach[best])} even with {best}, the allowed type that holds the most {res}")
    return out


def ceilings(inventory: pd.DataFrame, limits_now: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog,
             pools: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The ceiling of every autoscaled pool per compute resource, in the columns of
    :func:`forecasting.headroom.usable_capacity` (plus :data:`CEILING_COLUMNS`' extras).

    ``capacity`` is what the limits allow (``n_eff`` main-type nodes, allocatable), ``lost``
    the k largest nodes plus one of granularity, ``usable`` the rest; ``binding_limit`` is
    the limit that sets ``n_eff`` (``node_ceiling``); ``pools``: the autoscaled pools
    (default: those :func:`autoscaled_pools` finds in ``limits_now``); a pool without limits has a ceiling of
    :data:`UNBOUNDED` times its capacity (``binding_limit`` None). ``unreachable`` says which limits cannot be reached."""
    rows = []
    pools = autoscaled_pools(inventory, policy_of, limits_now) if pools is None else pools
    for (cluster, pool), g in inventory.groupby(["cluster", "pool"], sort=True):
        tier = g["tier"].iloc[0]
        p = policy_of(cluster, pool, tier)
        if (cluster, pool) not in pools:
            continue
        shape = pool_shape(g, catalog)
        allowed = [pool_shape(g, catalog, n) for n in _allowed(g, p)]
        largest = {r: max(s.allocatable[r] for s in allowed) for r in COMPUTE_RESOURCES}
        mine = limits_now[(limits_now["cluster"] == cluster) & (limits_now["pool"] == pool)]
        lim = {r.resource: float(r.value) for r in mine.itertuples() if r.resource in LIMIT_RESOURCES}
        per_limit = {res: v / shape.capacity(res) for res, v in lim.items()}
        binding = min(per_limit, key=per_limit.get) if per_limit else None
        n_eff = math.floor(per_limit[binding] + 1e-9) if binding else len(g)
        text = ", ".join(f"{r} {fmt_limit(r, v)}" for r, v in sorted(lim.items())) or "none known"
        note = "; ".join(_unreachable(lim, allowed)) if binding else ""
        for r in COMPUTE_RESOURCES:
            # no limit known: a ceiling far above any demand (finite, so the risk math holds)
            capacity = n_eff * shape.allocatable[r] if binding else UNBOUNDED * float(g[ALLOC_COLUMNS[r]].sum())
            lost = (p.redundancy_k + 1) * largest[r]
            rows.append({"cluster": cluster, "pool": pool, "tier": tier, "resource": r, "nodes": len(g),
                         "units": n_eff if binding else len(g), "failure_unit": "node (+1 granularity)",
                         "redundancy_k": p.redundancy_k, "capacity": capacity, "lost": lost,
                         "usable": max(capacity - lost, 0.0), "too_small": bool(capacity - lost <= 0),
                         "pool_kind": "autoscaled", "binding_limit": binding, "node_ceiling": n_eff if binding else np.nan,
                         "limits_text": text, "unreachable": note or None})
    return pd.DataFrame(rows, columns=CEILING_COLUMNS)


def new_limits(current: dict[str, float], ceiling_needed: dict[str, float], shape: NodeShape) -> dict[str, float]:
    """The limits after a raise: enough main-type nodes for every resource's needed ceiling
    (``ceiling_needed``: resource -> allocatable the pool must be allowed to reach), each
    existing limit raised to those nodes' capacity (cores and nodes whole, memory in whole
    GiB); a limit already above stays."""
    nodes = max((math.ceil(v / shape.allocatable[r] - 1e-9) for r, v in ceiling_needed.items() if shape.allocatable.get(r)),
                default=0)
    out = {}
    for res, v in current.items():
        need = nodes * shape.capacity(res)
        need = math.ceil(need / GIB) * GIB if res == "memory" else math.ceil(need - 1e-9)
        out[res] = max(v, float(need))
    return out


def limit_summary(current: dict[str, float], raised: dict[str, float]) -> str:
    """``raise limits: cpu 4,000 -> 4,800 cores, memory 8,192 -> 9,600 GiB``."""
    parts = [f"{r} {fmt_limit(r, current[r]).split(' ')[0]} -> {fmt_limit(r, raised[r])}"
             for r in sorted(raised) if raised[r] > current[r]]
    return "raise limits: " + ", ".join(parts) if parts else "limits hold"


def limit_patch(provisioner: str, pool: str, raised: dict[str, float]) -> str:
    """The change to apply, ready to paste: a NodePool ``spec.limits`` merge patch for
    Karpenter (karpenter.sh/v1 NodePool: ``spec.limits`` holds resource quantities), the
    node group's max size or the flags for cluster-autoscaler, the limits for others."""
    if provisioner == "karpenter":
        fields = []
        if "cpu" in raised:
            fields.append(f'"cpu":"{raised["cpu"]:.0f}"')
        if "memory" in raised:
            fields.append(f'"memory":"{raised["memory"] / GIB:.0f}Gi"')
        if "nodes" in raised:
            fields.append(f'"nodes":"{raised["nodes"]:.0f}"')
        return f"kubectl patch nodepool {pool} --type merge -p '{{\"spec\":{{\"limits\":{{{','.join(fields)}}}}}}}'"
    if provisioner == "cluster-autoscaler":
        parts = []
        if "nodes" in raised:
            parts.append(f"node group {pool}: max size {raised['nodes']:.0f}")
        if "cpu" in raised:
            parts.append(f"--cores-total=0:{raised['cpu']:.0f}")
        if "memory" in raised:
            parts.append(f"--memory-total=0:{raised['memory'] / GIB:.0f}")
        return "; ".join(parts)
    return ", ".join(f"{r}: {fmt_limit(r, v)}" for r, v in sorted(raised.items()))


def needed_nodes(forecasts: pd.DataFrame, ceiling: pd.DataFrame, policy_of: PolicyLookup,
                 shapes: dict[tuple[str, str], NodeShape]) -> pd.DataFrame:
    """Main-type nodes each autoscaled pool needs per day, as a quantile grid: for every
    resource and demand kind ``(demand / threshold + lost) / allocatable``, the largest.

    In: daily-peak forecasts with the quantile columns, :func:`ceilings` rows (``lost``)
    and each pool's shape. Out: ``cluster, pool, ts`` and the quantile columns (nodes)."""
    out = []
    lost = {(r.cluster, r.pool, r.resource): float(r.lost) for r in ceiling.itertuples()}
    tiers = {(r.cluster, r.pool): r.tier for r in ceiling.itertuples()}
    for (cluster, pool), g in forecasts.groupby(["cluster", "pool"], sort=True):
        if (cluster, pool) not in tiers:
            continue
        p, shape = policy_of(cluster, pool, tiers[(cluster, pool)]), shapes[(cluster, pool)]
        per = []
        for (res, _kind), f in g[g["resource"].isin(COMPUTE_RESOURCES)].groupby(["resource", "kind"]):
            f = f.sort_values("ts")
            q = f[list(QUANTILE_COLUMNS)].to_numpy(dtype=float)
            n = (q * 100 / p.threshold_for(res) + lost[(cluster, pool, res)]) / shape.allocatable[res]
            per.append(pd.DataFrame(n, columns=list(QUANTILE_COLUMNS), index=pd.DatetimeIndex(f["ts"])))
        if per:
            nodes = pd.concat(per).groupby(level=0).max()
            out.append(nodes.rename_axis("ts").reset_index().assign(cluster=cluster, pool=pool))
    cols = ["cluster", "pool", "ts", *QUANTILE_COLUMNS]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def provisioned_nodes(forecasts: pd.DataFrame, daily: pd.DataFrame, inventory: pd.DataFrame, pools: set[tuple[str, str]],
                      as_of: dt.date, days: int = 7) -> pd.DataFrame:
    """Nodes each autoscaled pool will run at its daily peak (what it is billed for), as a
    quantile grid: today's nodes scaled by the forecast requests over the highest daily
    peak of the last ``days`` days (the autoscaler provisions for requests, at today's
    packing); the resource that grows most binds. Usage stands in where a pool has no
    requests series. Out: ``cluster, pool, ts`` and the quantile columns (nodes)."""
    end = pd.Timestamp(as_of, tz="UTC")
    recent = daily[(daily["ts"] >= end - pd.Timedelta(days=days)) & (daily["ts"] < end)]
    today = recent.groupby(["cluster", "pool", "resource", "kind"])["value"].max().to_dict()
    count = inventory.groupby(["cluster", "pool"]).size().to_dict()
    out = []
    for (cluster, pool), g in forecasts.groupby(["cluster", "pool"], sort=True):
        if (cluster, pool) not in pools:
            continue
        g = g[g["resource"].isin(("cpu", "memory"))]
        kind = "requests" if (g["kind"] == "requests").any() else "usage"
        per = []
        for res, f in g[g["kind"] == kind].groupby("resource"):
            base = today.get((cluster, pool, res, kind))
            if not base or base <= 0:
                continue
            f = f.sort_values("ts")
            ratio = f[list(QUANTILE_COLUMNS)].to_numpy(dtype=float) / base
            per.append(pd.DataFrame(ratio * count[(cluster, pool)], columns=list(QUANTILE_COLUMNS),
                                    index=pd.DatetimeIndex(f["ts"])))
        if per:
            nodes = pd.concat(per).groupby(level=0).max()
            out.append(nodes.rename_axis("ts").reset_index().assign(cluster=cluster, pool=pool))
    cols = ["cluster", "pool", "ts", *QUANTILE_COLUMNS]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def clean_weeks(as_of: dt.date, skip: set[dt.date], weeks: int = 4, look_back: int = 12) -> list[dt.date]:
    """First days of the latest ``weeks`` whole weeks before ``as_of`` (each ending on a
    multiple of 7 days before it, so they keep its weekdays) that hold none of the ``skip``
    days (a declared event's window: a sales festival is not the baseline), oldest first.
    Fewer when the last ``look_back`` weeks have not that many."""
    out = []
    for j in range(look_back):
        start = as_of - dt.timedelta(days=7 * (j + 1))
        if not any(start + dt.timedelta(days=k) in skip for k in range(7)):
            out.append(start)
        if len(out) == weeks:
            break
    return sorted(out)


def recent_weeks(hourly: pd.DataFrame, cluster: str, pool: str, as_of: dt.date, skip: set[dt.date],
                 weeks: int = 4) -> tuple[np.ndarray, float] | None:
    """A pool's hourly cpu requests (else usage) in its last ``weeks`` clean weeks
    (:func:`clean_weeks`): ``(values (weeks x 7, 24), reference)``, oldest first, with the
    reference the median of those days' peaks; missing hours take the median hour. None
    without history."""
    if hourly is None or hourly.empty:
        return None
    h = hourly[(hourly["cluster"] == cluster) & (hourly["pool"] == pool) & (hourly["resource"] == "cpu")]
    if h.empty:
        return None
    kind = "requests" if (h["kind"] == "requests").any() else "usage"
    series = h[h["kind"] == kind].groupby("ts")["value"].max()
    starts = clean_weeks(as_of, skip, weeks)
    if not starts:
        return None
    blocks = []
    for start in starts:
        t0 = pd.Timestamp(start, tz="UTC")
        blocks.append(series.reindex(pd.date_range(t0, t0 + pd.Timedelta(days=7), freq="h", inclusive="left")).to_numpy())
    values = np.concatenate(blocks).reshape(len(starts) * 7, 24)
    if not np.isfinite(values).any():
        return None
    values = np.where(np.isfinite(values), values, np.nanmedian(values))
    ref = float(np.median(values.max(axis=1)))
    return values, ref


def hour_of_week_profile(hourly: pd.DataFrame, as_of: dt.date, skip: dict[tuple[str, str], set[dt.date]] | None = None,
                         weeks: int = 4) -> pd.DataFrame:
    """Each pool's hour-of-week shape in its last ``weeks`` clean weeks (no declared event:
    ``skip`` per pool): every hour's value over those days' median peak (about 1 at a usual
    day's peak hour, less at night, more on a spike).

    In: hourly ``cluster, pool, resource, kind, ts, value``. Out: ``cluster, pool,
    hour_of_week, week, ratio`` (hour 0 = Monday 00:00 UTC; week 0 the oldest)."""
    cols = ["cluster", "pool", "hour_of_week", "week", "ratio"]
    if hourly is None or hourly.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (cluster, pool), _g in hourly[hourly["resource"] == "cpu"].groupby(["cluster", "pool"], sort=True):
        got = recent_weeks(hourly, cluster, pool, as_of, (skip or {}).get((cluster, pool), set()), weeks)
        if got is None:
            continue
        values, ref = got
        starts = clean_weeks(as_of, (skip or {}).get((cluster, pool), set()), weeks)
        days = [start + dt.timedelta(days=k) for start in starts for k in range(7)]
        how = np.array([d.weekday() * 24 for d in days])[:, None] + np.arange(24)[None, :]
        week = np.repeat(np.arange(len(starts)), 7)[:, None] * np.ones((1, 24), dtype=int)
        out.append(pd.DataFrame({"cluster": cluster, "pool": pool, "hour_of_week": how.ravel(), "week": week.ravel(),
                                 "ratio": (values / ref if ref > 0 else np.ones_like(values)).ravel()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


@dataclass(frozen=True)
class PoolLimits:
    """One autoscaled pool's limits in force and its ceiling: ``values`` (resource ->
    capacity units), the ``binding`` limit, ``node_ceiling`` (main-type nodes it allows),
    ``lost`` per resource (N+k and granularity), the main type's ``shape``, a text of the
    limits and what cannot be reached."""

    values: dict[str, float]
    binding: str
    node_ceiling: float
    shape: NodeShape
    lost: dict[str, float]
    text: str
    unreachable: str | None
    provisioner: str
    since: dict[str, dt.date | None]
    source: str


@dataclass(frozen=True)
class AutoscaledInputs:
    """The autoscaled pools of a plan: their shapes (all of them) and limits (those that
    have any)."""

    shapes: dict[tuple[str, str], NodeShape]
    limits: dict[tuple[str, str], PoolLimits]
    ceilings: pd.DataFrame
    history: pd.DataFrame  # the limits' history (LIMIT_COLUMNS), for charts

    def of(self, cluster: str, pool: str) -> PoolLimits | None:
        return self.limits.get((cluster, pool))

    @classmethod
    def build(cls, inventory: pd.DataFrame, limits: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog,
              as_of: dt.date) -> "AutoscaledInputs":
        """From the inventory, the limits' history (:data:`LIMIT_COLUMNS`) and the policies."""
        pools = autoscaled_pools(inventory, policy_of, limits)
        now = limits_in_force(limits, inventory, policy_of, as_of)
        ceil = ceilings(inventory, now, policy_of, catalog, pools)
        shapes, out = {}, {}
        for (cluster, pool), g in inventory.groupby(["cluster", "pool"], sort=True):
            if (cluster, pool) not in pools:
                continue
            shapes[(cluster, pool)] = pool_shape(g, catalog)
            c = ceil[(ceil["cluster"] == cluster) & (ceil["pool"] == pool)]
            mine = now[(now["cluster"] == cluster) & (now["pool"] == pool)]
            if c.empty or c["binding_limit"].isna().all():
                continue
            first = c.iloc[0]
            p = policy_of(cluster, pool, first.tier)
            out[(cluster, pool)] = PoolLimits(
                values={r.resource: float(r.value) for r in mine.itertuples()}, binding=str(first.binding_limit),
                node_ceiling=float(first.node_ceiling), shape=shapes[(cluster, pool)],
                lost={r.resource: float(r.lost) for r in c.itertuples()}, text=str(first.limits_text),
                unreachable=first.unreachable, provisioner=p.provisioner,
                since={r.resource: r.since for r in mine.itertuples()}, source=str(mine["source"].iloc[0]))
        return cls(shapes, out, ceil, limits)
