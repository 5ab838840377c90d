"""Seeded synthetic data: the demo fleet and single series with planted structure.

Pure and deterministic. The demo fleet has the handbook's shape (tiers control-plane /
data / compute / edge on c6i.4xlarge, i4i.4xlarge, c6i.2xlarge, t3.medium in the ratio
300 : 2,000 : 8,000 : 500; the compute tier 70% spot) and hourly node usage and requests.

**Consistent in absolute time.** A series' value at a timestamp depends only on the seed,
the fleet's layout (``nodes``, ``clusters``) and that timestamp, never on ``as_of`` or
``history_days``: runs whose windows overlap agree where they overlap, so a past plan can
be scored against what happened after it. Trends are functions of the time since
:data:`EPOCH`; random draws (AR(1) noise, node noise, missing scrapes) are made in weekly
blocks counted from the epoch, each seeded by ``(seed, cluster, week)``.

What the history holds:

* daily and weekly seasonality in the cluster's local time, AR(1) and per-node noise;
* **load waves**: each pool's load rises for about 15 months and eases for about 9
  (traffic moving between regions, rightsizing) on a two-year cycle, the pools' phases
  spread evenly, plus a slow fleet-wide drift. The fleet's size is fixed, so unbounded
  growth would outgrow it within a year or two; the waves keep a handful of pools near
  their thresholds whatever the plan date (at the default 400 nodes, a plan as of any
  date in 2026-2027 has some pools to expand);
* requests held for a week (deploys), pods for a day;
* **the declared business events** happen as declared: each event of the calendar the
  caller passes (the demo passes the run's ``catalogs/events.yaml``; by default
  :data:`DEMO_EVENTS`, the same events) multiplies the usage and requests of the
  resources and pools it scopes, with its ramps: Double-11 (Nov 1-12, +150%) in the
  compute and edge tiers, the 2027 Spring Festival (+40%) there too, the Q2 launch (+20%
  from 2027-04-01) fleet-wide. A plan's overlays therefore forecast what then happens,
  and a track record of past plans is not spoiled by events that were declared wrong;
* **one undeclared spike**, on purpose: in the first cluster (``prod-cn-east``), data
  tier, usage and requests +25% on 10-15 April and 10-15 October (UTC days) every year,
  "a data migration nobody declared". No events catalog mentions it, so capplan's
  unexplained-peak warning has something to find: every 180-day window ending on the
  1st of a month holds one of them whole;
* one storage pool per cluster (e.g. Ceph) whose use grows steadily and whose capacity
  grows by half its first size whenever use reaches 80% of it;
* a few missing scrapes (about 0.4% of node series a week lose 1-6 steps).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from .events import Event, event_factor, events_for, occurrences
from .frames import make_series_id

__all__ = ["TIERS", "FleetChunk", "fleet_layout", "generate_fleet", "generate_series", "DEMO_CLUSTERS", "EPOCH",
           "nodepool_limits",
           "UNDECLARED_SPIKE", "undeclared_spike", "festival", "DEMO_EVENTS"]

GIB = 2**30
TIB = 2**40

#: tier -> (share of nodes, instance type, vcpu, memory GiB, max pods, local storage GiB)
TIERS = {
    "control-plane": (300 / 10800, "c6i.4xlarge", 16, 32, 110, 0),
    "data": (2000 / 10800, "i4i.4xlarge", 16, 128, 110, 3750),
    "compute": (8000 / 10800, "c6i.2xlarge", 8, 16, 110, 0),
    "edge": (500 / 10800, "t3.medium", 2, 4, 17, 0),
}
#: tier -> (usage share of N+2 usable cpu at trend 1, growth: about the most the tier's load
#: rises in 180 days (it sets the tier's level and wave, see WAVE_*), request/usage ratio).
TIER_LOAD = {
    "control-plane": (0.22, 0.08, 1.4),
    "data": (0.30, 0.22, 1.3),
    "compute": (0.27, 0.30, 1.35),
    "edge": (0.22, 0.06, 1.5),
}
DEMO_CLUSTERS = ["prod-cn-east", "prod-cn-north", "prod-us-west", "prod-eu-central", "staging-cn-east",
                 "prod-ap-south", "prod-cn-south", "prod-us-east", "analytics-cn-east", "edge-global"]
ZONES = ("a", "b", "c")
NAMESPACES = ("checkout", "search", "payments", "recommendation", "batch")
MIN_POOL_NODES = 5

#: Time zero of every trend and of the weekly blocks of random draws.
EPOCH = pd.Timestamp("2025-01-01", tz="UTC")
_WEEK = pd.Timedelta(days=7)
_YEAR = pd.Timedelta(days=365.25)
#: Added to week numbers before seeding (seeds must not be negative; weeks before the epoch are).
_WEEK_SEED_OFFSET = 1 << 20
#: Streams of random draws within one (seed, cluster, week); node noise has one stream
#: per tier and series from _NODE_STREAM on, so each is drawn only when it is needed.
_AR_STREAM, _GAP_STREAM, _NODE_STREAM = 0, 2, 10

#: Load waves. A tier's mean trend is ``1 + WAVE_LEVEL * growth``; a pool's wave has the
#: amplitude ``WAVE_AMPLITUDE * growth`` (times a per-pool factor) and a period of
#: ``WAVE_YEARS``. Tuned so that the demo's plan has a handful of pools to expand as of
#: any date in 2026-2027 (with the tier's growth, the steepest 180 days of a wave rise by
#: about the growth of TIER_LOAD).
WAVE_LEVEL = 2.0
WAVE_AMPLITUDE = 0.9
WAVE_YEARS = 2.0
#: Fleet-wide drift of the trend per year, zero on 2027-01-01 (two years after the epoch).
DRIFT_PER_YEAR = 0.03
_DRIFT_ZERO_YEARS = 2.0
#: Phases of the pools' waves: each cluster has a slot of 1/clusters of the period, and its
#: tiers sit at these points of it, so the fast-growing data and compute pools of the fleet
#: are evenly spread over the cycle (some are always rising, some easing).
_PHASE_IN_SLOT = {"data": 0.0, "control-plane": 0.25, "compute": 0.5, "edge": 0.75}

#: The undeclared spike: (cluster position in the layout, tier, first days (month, day),
#: length in days, uplift). See the module docstring.
UNDECLARED_SPIKE = (0, "data", ((4, 10), (10, 10)), 6, 0.25)

#: The business calendar the shipped catalogs/events.yaml declares (what the demo fleet's
#: history holds when the caller passes no calendar of its own).
DEMO_EVENTS = [
    Event(name="double-11", start=dt.date(2025, 11, 1), end=dt.date(2025, 11, 12), recurring="annual", uplift_pct=150,
          ramp_up_days=3, ramp_down_days=2, scope={"level": "tier", "names": ["compute", "edge"]}),
    Event(name="spring-festival-2027", start=dt.date(2027, 2, 5), end=dt.date(2027, 2, 11), uplift_pct=40, ramp_up_days=2,
          scope={"level": "tier", "names": ["edge", "compute"]}),
    Event(name="q2-product-launch", kind="step", start=dt.date(2027, 4, 1), uplift_pct=20, scope={"level": "fleet"}),
]

#: Storage: capacity grows by this share of its first size when use reaches STORAGE_EXPAND_AT of it.
STORAGE_EXPAND_AT = 0.80
STORAGE_EXPAND_BY = 0.5
#: Chance that a node series loses a 1-6 step window in a given week.
GAP_CHANCE_PER_WEEK = 0.004


@dataclass
class FleetChunk:
    """One cluster's data: inventory rows, series dimensions and long samples."""

    cluster: str
    inventory: pd.DataFrame  # cluster, pool, tier, zone, node, instance_type, cpu_cores, memory_bytes, pods, storage_bytes, capacity_type
    series: pd.DataFrame  # series_id, cluster, pool, node, namespace, resource, kind, level, unit
    samples: pd.DataFrame  # series_id, ts, value
    #: Karpenter NodePool limits of the compute pool (level ``limit``, provider ``karpenter``):
    #: series rows like ``series`` and daily samples
    limit_series: pd.DataFrame | None = None
    limit_samples: pd.DataFrame | None = None


def fleet_layout(nodes: int, clusters: int | None = None) -> dict[str, dict[str, int]]:
    """Nodes per cluster and tier: about 1,000 nodes a cluster (at least 4 clusters),
    tiers in the handbook's ratio, at least 5 nodes a pool."""
    n_clusters = clusters or max(4, round(nodes / 1000))
    names = [DEMO_CLUSTERS[i] if i < len(DEMO_CLUSTERS) else f"cluster-{i:02d}" for i in range(n_clusters)]
    per_cluster = nodes / n_clusters
    return {c: {t: max(MIN_POOL_NODES, round(per_cluster * share)) for t, (share, *_rest) in TIERS.items()} for c in names}


@dataclass(frozen=True)
class _Grid:
    """Whole weeks from the epoch that cover the window, and where the window sits in them.

    Everything is computed on the whole weeks (so a week's numbers never depend on which
    window asked for them) and cut to ``window`` at the end.
    """

    ts: pd.DatetimeIndex  # every step of weeks first_week .. first_week + weeks - 1
    first_week: int
    weeks: int
    per_week: int  # steps in a week
    per_day: int  # steps in a day (1 when the step is a day or more)
    window: slice

    @property
    def years(self) -> np.ndarray:
        return ((self.ts - EPOCH) / _YEAR).to_numpy(dtype=float)


def _grid(as_of: dt.date, history_days: int, step: str) -> _Grid:
    step_td = pd.Timedelta(step)
    if step_td <= pd.Timedelta(0) or _WEEK.value % step_td.value:
        raise ValueError(f"step {step!r} must divide a week (e.g. 5min, 1h, 1D)")
    per_week = _WEEK.value // step_td.value
    per_day = max(pd.Timedelta(days=1).value // step_td.value, 1)
    end = pd.Timestamp(as_of, tz="UTC")
    start = end - pd.Timedelta(days=history_days)
    # steps k with EPOCH + k * step in [start, end)
    k0 = -(-(start - EPOCH).value // step_td.value)
    k1 = -(-(end - EPOCH).value // step_td.value)
    if k1 <= k0:
        raise ValueError(f"history_days must be positive, got {history_days}")
    w0, w1 = k0 // per_week, (k1 - 1) // per_week
    weeks = w1 - w0 + 1
    ts = EPOCH + pd.to_timedelta(np.arange(w0 * per_week, (w1 + 1) * per_week, dtype=np.int64) * step_td.value, unit="ns")
    return _Grid(ts=pd.DatetimeIndex(ts), first_week=int(w0), weeks=int(weeks), per_week=int(per_week),
                 per_day=int(per_day), window=slice(int(k0 - w0 * per_week), int(k1 - w0 * per_week)))


def _week_rng(seed: int, cluster: int, week: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, cluster, week + _WEEK_SEED_OFFSET, stream])


def _shape(ts: pd.DatetimeIndex, utc_offset_h: float) -> np.ndarray:
    """Daily and weekly pattern in local time, mean about 1."""
    local = ts + pd.Timedelta(hours=utc_offset_h)
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60
    dow = local.day_of_week.to_numpy()
    daily = 0.22 * np.sin(2 * np.pi * (hour - 8) / 24) + 0.06 * np.sin(4 * np.pi * (hour - 10) / 24)
    weekly = np.where(dow >= 5, -0.10, 0.03)
    return 1.0 + daily + weekly


def festival(ts: pd.DatetimeIndex) -> np.ndarray:
    """1 inside Nov 1-12 (Double-11), 0 elsewhere, with one day of ramp either side."""
    d = ts.tz_convert("UTC")
    # Nov 1 is day 305 of a year, 306 of a leap year
    rel = d.day_of_year.to_numpy() - (305 + d.is_leap_year.astype(int))
    return np.clip(np.minimum(rel + 1, 12 - rel), 0, 1).astype(float)


def undeclared_spike(ts: pd.DatetimeIndex) -> np.ndarray:
    """1 on the days of the undeclared spike (:data:`UNDECLARED_SPIKE`), 0 elsewhere."""
    _cluster, _tier, starts, days, _uplift = UNDECLARED_SPIKE
    d = ts.tz_convert("UTC")
    month, day = d.month.to_numpy(), d.day.to_numpy()
    inside = np.zeros(len(ts), dtype=bool)
    for m, first in starts:
        inside |= (month == m) & (day >= first) & (day < first + days)
    return inside.astype(float)


def _wave(x: np.ndarray) -> np.ndarray:
    """A periodic wave in [-1, 1] (period 1) that rises for 62% of the period and falls
    for 38%: a sine with a little of its second harmonic."""
    return (np.sin(2 * np.pi * x) - 0.25 * np.sin(4 * np.pi * x)) / 1.1009


def _trend(years: np.ndarray, growth: float, amplitude: float, phase: float) -> np.ndarray:
    """A pool's load relative to its share: the tier's level, the pool's wave, the fleet's
    drift and a small 60-day wiggle, all functions of the years since the epoch."""
    return (1.0 + WAVE_LEVEL * growth + DRIFT_PER_YEAR * (years - _DRIFT_ZERO_YEARS)
            + amplitude * _wave(years / WAVE_YEARS - phase) + 0.02 * np.sin(2 * np.pi * years * 365.25 / 60))


def _hold(values: np.ndarray, every: int) -> np.ndarray:
    """Requests change in steps (deploys), not smoothly: hold each block's first value.
    Blocks start at the grid's start, which is a week boundary from the epoch."""
    idx = (np.arange(len(values)) // every) * every
    return values[idx]


def _ar_noise(seed: int, ci: int, grid: _Grid, rows: int, phi: float = 0.9, sigma: float = 0.035) -> np.ndarray:
    """AR(1) noise, ``rows`` independent series on the grid.

    Each week is the AR filter run from zero over that week's and the week before's
    draws: a week's values depend only on its own two weeks (the same in every window),
    and after a week of warm-up (phi**168 is about 1e-8 at an hourly step) they join the
    previous week without a seam.
    """
    draws = np.stack([_week_rng(seed, ci, w, _AR_STREAM).standard_normal((rows, grid.per_week))
                      for w in range(grid.first_week - 1, grid.first_week + grid.weeks)], axis=1)
    pairs = np.concatenate([draws[:, :-1], draws[:, 1:]], axis=2) * sigma * np.sqrt(1 - phi**2)
    filtered = lfilter([1.0], [1.0, -phi], pairs, axis=2)[:, :, grid.per_week:]
    return filtered.reshape(rows, grid.weeks * grid.per_week)


def _node_noise(seed: int, ci: int, grid: _Grid, stream: int, n: int) -> np.ndarray:
    """Standard normal draws per node and step, shaped ``(weeks, n, per_week)``, each
    week from its own seed."""
    z = np.empty((grid.weeks, n, grid.per_week))
    for j in range(grid.weeks):
        _week_rng(seed, ci, grid.first_week + j, stream).standard_normal(out=z[j])
    return z


def _node_values(total: np.ndarray, weights: np.ndarray, grid: _Grid, noise: np.ndarray | None) -> np.ndarray:
    """Per-node values ``(n, window steps)``: the pool's total split by the nodes' weights,
    times ``1 + 0.03 * noise`` when ``noise`` (from :func:`_node_noise`) is given."""
    if noise is None:
        return total[None, grid.window] * weights[:, None]
    z = noise  # scaled in place: the draws are not needed afterwards
    z *= 0.03
    z += 1.0
    z *= total.reshape(grid.weeks, 1, grid.per_week)
    z *= weights[None, :, None]
    return z.transpose(1, 0, 2).reshape(len(weights), -1)[:, grid.window]


def _gap_draws(seed: int, ci: int, grid: _Grid, n_series: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per week: (series hit, first step in the week, length) of the missing scrapes."""
    out = []
    for j in range(grid.weeks):
        rng = _week_rng(seed, ci, grid.first_week + j, _GAP_STREAM)
        hit = rng.random(n_series) < GAP_CHANCE_PER_WEEK
        first = rng.integers(0, grid.per_week, n_series)
        length = rng.integers(1, 7, n_series)
        rows = np.flatnonzero(hit)
        out.append((rows, first[rows] + j * grid.per_week, length[rows]))
    return out


def _gap_mask(gaps: list[tuple[np.ndarray, np.ndarray, np.ndarray]], offset: int, n: int, grid: _Grid) -> np.ndarray:
    """Keep-mask ``(n, window steps)`` for the node series ``offset .. offset + n - 1`` of
    the cluster (a gap is cut at the end of its week)."""
    mask = np.ones((n, grid.weeks * grid.per_week), dtype=bool)
    for rows, first, length in gaps:
        for r, f, ln in zip(rows, first, length):
            if offset <= r < offset + n:
                week_end = (f // grid.per_week + 1) * grid.per_week
                mask[r - offset, f: min(f + ln, week_end)] = False
    return mask[:, grid.window]


@dataclass(frozen=True)
class _Pool:
    """One node pool of a cluster and its fixed traits (drawn once per seed and cluster)."""

    cluster: str
    position: int  # the cluster's position in the layout
    clusters: int  # clusters in the layout
    tier_position: int
    tier: str
    nodes: int
    base_share: float  # usage share of N+2 usable cpu before the trend
    amplitude: float  # of the pool's load wave
    mem_per_core: float  # bytes of memory used per core used
    weights: np.ndarray  # each node's share of the pool's load

    @property
    def alloc_cpu(self) -> float:
        return TIERS[self.tier][2] * 0.94

    @property
    def alloc_mem(self) -> float:
        return TIERS[self.tier][3] * 0.90 * GIB

    @property
    def node_names(self) -> list[str]:
        return [f"{self.cluster}-{self.tier}-{i:05d}" for i in range(self.nodes)]


def _draw_pool(rng: np.random.Generator, cluster: str, position: int, clusters: int, tier_position: int, tier: str,
               n: int) -> _Pool:
    base_share, growth, _ratio = TIER_LOAD[tier]
    alloc_cpu, alloc_mem = TIERS[tier][2] * 0.94, TIERS[tier][3] * 0.90 * GIB
    return _Pool(
        cluster=cluster, position=position, clusters=clusters, tier_position=tier_position, tier=tier, nodes=n,
        base_share=base_share * rng.uniform(0.85, 1.2),
        amplitude=WAVE_AMPLITUDE * growth * rng.uniform(0.6, 1.5),
        mem_per_core=alloc_mem / alloc_cpu * rng.uniform(0.55, 0.8),
        weights=rng.dirichlet(np.full(n, 20.0)),
    )


def _inventory(pool: _Pool) -> pd.DataFrame:
    """The pool's nodes: ``cluster, pool, tier, zone, node, instance_type, cpu_cores,
    memory_bytes, pods, storage_bytes, capacity_type``."""
    _share, itype, _vcpu, _mem, max_pods, local_gib = TIERS[pool.tier]
    n = pool.nodes
    return pd.DataFrame({
        "cluster": pool.cluster, "pool": pool.tier, "tier": pool.tier,
        "zone": [f"{pool.cluster}-{ZONES[i % 3]}" for i in range(n)], "node": pool.node_names,
        "instance_type": itype, "cpu_cores": pool.alloc_cpu, "memory_bytes": pool.alloc_mem,
        "pods": float(max_pods), "storage_bytes": float(local_gib * GIB),
        # the handbook's compute tier is 70% spot
        "capacity_type": ["spot" if pool.tier == "compute" and i % 10 < 7 else "on-demand" for i in range(n)],
    })


@dataclass(frozen=True)
class _Calendar:
    """What every pool of every cluster shares on the grid: time, Double-11, the undeclared spike."""

    grid: _Grid
    years: np.ndarray
    festival: np.ndarray
    spike: np.ndarray
    events: list[Event]

    def event_factors(self, cluster: str, pool: str, tier: str) -> dict[str, np.ndarray]:
        """resource -> the product of the factors of the events that scope this pool (1 where none)."""
        days = self.grid.ts.tz_convert("UTC").floor("D").date
        first, last = days[0], days[-1]
        out: dict[str, np.ndarray] = {}
        for res in ("cpu", "memory", "pods"):
            f = np.ones(len(days))
            for o in occurrences(events_for(self.events, {"cluster": cluster, "pool": pool, "tier": tier, "resource": res}), first, last):
                if o.event.uplift_pct is not None and o.event.kind != "holiday":
                    f *= event_factor(days, o, o.event.uplift_pct)
            out[res] = f
        return out


def _pool_totals(pool: _Pool, cal: _Calendar, shape: np.ndarray, ar: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """The pool's demand on the whole grid, by (resource, kind)."""
    _base, growth, req_ratio = TIER_LOAD[pool.tier]
    usable_cpu = (pool.nodes - 2) * pool.alloc_cpu
    phase = ((pool.position + _PHASE_IN_SLOT[pool.tier]) / pool.clusters) % 1.0
    trend = _trend(cal.years, growth, pool.amplitude, phase)
    # the declared events, as declared (scope, resources, ramps)
    ev = cal.event_factors(pool.cluster, pool.tier, pool.tier)
    spike_cluster, spike_tier, _starts, _days, uplift = UNDECLARED_SPIKE
    extra = 1.0 + (uplift * cal.spike if (pool.position, pool.tier) == (spike_cluster, spike_tier) else 0.0)
    cpu = usable_cpu * pool.base_share * trend * shape * ev["cpu"] * extra * (1 + ar)
    mem_level = usable_cpu * pool.base_share * pool.mem_per_core
    mem = mem_level * trend * (1 + 0.25 * (shape - 1)) * ev["memory"] * extra * (1 + 0.5 * ar)
    per_week, per_day = cal.grid.per_week, cal.grid.per_day
    # requests follow the trend in weekly deploys; events scale them on their own days
    return {
        ("cpu", "usage"): cpu,
        ("memory", "usage"): mem,
        ("cpu", "requests"): _hold(usable_cpu * pool.base_share * req_ratio * trend, per_week) * ev["cpu"] * extra,
        ("memory", "requests"): _hold(mem_level * 1.25 * trend, per_week) * ev["memory"] * extra,
        ("pods", "requests"): _hold(pool.nodes * TIERS[pool.tier][4] * 0.25 * trend, per_day) * ev["pods"] * extra,
    }


def _series_row(sid: str, cluster: str, pool: str, node: str | None, namespace: str | None, resource: str,
                kind: str, level: str) -> dict:
    return {"series_id": sid, "cluster": cluster, "pool": pool, "node": node, "namespace": namespace,
            "resource": resource, "kind": kind, "level": level, "unit": _unit(resource)}


def _node_series(pool: _Pool, totals: dict[tuple[str, str], np.ndarray], grid: _Grid, seed: int, gaps: list,
                 gap_offset: int) -> tuple[list[dict], list[tuple]]:
    """Series rows and sample parts of the pool's nodes: the totals split by the nodes'
    weights, usage with per-node noise, a few missing scrapes."""
    rows: list[dict] = []
    parts: list[tuple] = []
    names = pool.node_names
    for ri, ((res, kind), total) in enumerate(totals.items()):
        stream = _NODE_STREAM + 5 * pool.tier_position + ri
        noise = _node_noise(seed, pool.position, grid, stream, pool.nodes) if kind == "usage" else None
        values = _node_values(total, pool.weights, grid, noise)
        if res == "pods":
            values = np.round(values)
        mask = _gap_mask(gaps, gap_offset + ri * pool.nodes, pool.nodes, grid)
        ids = [make_series_id(cluster=pool.cluster, pool=pool.tier, node=nd, resource=res, kind=kind) for nd in names]
        rows += [_series_row(s, pool.cluster, pool.tier, nd, None, res, kind, "node") for s, nd in zip(ids, names)]
        parts.append(_long(ids, grid.ts[grid.window], values, mask))
    return rows, parts


def _namespace_series(rng: np.random.Generator, pool: _Pool, totals: dict[tuple[str, str], np.ndarray],
                      grid: _Grid) -> tuple[list[dict], list[tuple]]:
    """The compute tier's namespaces: fixed shares of the pool's cpu and memory."""
    rows: list[dict] = []
    parts: list[tuple] = []
    shares = rng.dirichlet(np.full(len(NAMESPACES), 4.0))
    for ns, sh in zip(NAMESPACES, shares):
        for res, kind in (("cpu", "usage"), ("cpu", "requests"), ("memory", "usage"), ("memory", "requests")):
            sid = make_series_id(cluster=pool.cluster, namespace=ns, resource=res, kind=kind)
            rows.append(_series_row(sid, pool.cluster, pool.tier, None, ns, res, kind, "namespace"))
            parts.append(_long([sid], grid.ts[grid.window], (totals[(res, kind)][grid.window] * sh)[None, :], None))
    return rows, parts


def _storage_series(rng: np.random.Generator, cluster: str, nodes: int, cal: _Calendar,
                    ar: np.ndarray) -> tuple[list[dict], list[tuple]]:
    """The cluster's storage pool: used and capacity."""
    used, capacity = _storage(rng, nodes, cal.years, ar)
    rows: list[dict] = []
    parts: list[tuple] = []
    for kind, vals in (("usage", used), ("capacity", capacity)):
        sid = make_series_id(cluster=cluster, pool="storage", resource="storage", kind=kind)
        rows.append(_series_row(sid, cluster, "storage", None, None, "storage", kind, "pool"))
        parts.append(_long([sid], cal.grid.ts[cal.grid.window], vals[None, cal.grid.window], None))
    return rows, parts


def _utc_offset_h(cluster: str) -> float:
    return 8.0 if "-cn-" in cluster or cluster.endswith("-global") else (-7.0 if "-us-" in cluster else 1.0)


def _cluster_chunk(seed: int, position: int, clusters: int, cluster: str, tiers: dict[str, int],
                   cal: _Calendar) -> FleetChunk:
    """One cluster: its pools' inventory, series and samples."""
    grid = cal.grid
    rng = np.random.default_rng([seed, position])  # the pools' fixed traits; draws in time are per week
    shape = _shape(grid.ts, _utc_offset_h(cluster))
    ar = _ar_noise(seed, position, grid, len(TIERS) + 1)  # one row per tier, one for storage
    gaps = _gap_draws(seed, position, grid, 5 * sum(tiers.values()))
    inventory, series_rows, parts = [], [], []
    gap_offset = 0
    for ti, (tier, n) in enumerate(tiers.items()):
        pool = _draw_pool(rng, cluster, position, clusters, ti, tier, n)
        inventory.append(_inventory(pool))
        totals = _pool_totals(pool, cal, shape, ar[ti])
        rows, p = _node_series(pool, totals, grid, seed, gaps, gap_offset)
        gap_offset += len(totals) * n
        series_rows += rows
        parts += p
        if tier == "compute":
            rows, p = _namespace_series(rng, pool, totals, grid)
            series_rows += rows
            parts += p
    rows, p = _storage_series(rng, cluster, sum(tiers.values()), cal, ar[len(TIERS)])
    limit_series, limit_samples = nodepool_limits(cluster, position, tiers["compute"], grid.ts[grid.window])
    return FleetChunk(
        cluster=cluster,
        inventory=pd.concat(inventory, ignore_index=True),
        series=pd.DataFrame(series_rows + rows),
        samples=_assemble(parts + p, grid.ts[grid.window]),
        limit_series=limit_series,
        limit_samples=limit_samples,
    )


#: The compute tier's Karpenter NodePool limits, as multiples of the pool's capacity today:
#: (cpu before the raise, cpu after it, memory over cpu). Raised on LIMIT_RAISED; the first
#: cluster's pool is kept tight, so its limit binds within a plan's horizon.
NODEPOOL_LIMITS = ((1.0, 1.12), (1.7, 2.0), (1.55, 1.85), (1.9, 2.2))
NODEPOOL_MEMORY_FACTOR = 1.3
LIMIT_RAISED = pd.Timestamp("2026-09-01", tz="UTC")


def nodepool_limits(cluster: str, position: int, nodes: int, ts: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compute pool's NodePool ``spec.limits`` over time (karpenter_nodepools_limit:
    cpu in cores, memory in bytes of instance capacity), one sample a day; the limit was
    raised once, on :data:`LIMIT_RAISED` (limits are history). Out: (series, samples)."""
    _share, _itype, vcpu, mem_gib, _pods, _local = TIERS["compute"]
    before, after = NODEPOOL_LIMITS[position % len(NODEPOOL_LIMITS)]
    days = pd.DatetimeIndex(ts[ts.hour == 0]) if len(ts) else pd.DatetimeIndex([], tz="UTC")
    factor = np.where(days >= LIMIT_RAISED, after, before)
    cpu = np.round(nodes * vcpu * factor)
    series, samples = [], []
    for res, values, unit in (("cpu", cpu, "cores"), ("memory", cpu / vcpu * mem_gib * NODEPOOL_MEMORY_FACTOR * GIB, "bytes")):
        sid = make_series_id(cluster=cluster, pool="compute", resource=res, kind="limit") + "/provider=karpenter"
        series.append({"series_id": sid, "cluster": cluster, "pool": "compute", "node": None, "namespace": None,
                       "resource": res, "kind": "limit", "level": "limit", "unit": unit, "provider": "karpenter"})
        samples.append(pd.DataFrame({"series_id": sid, "ts": days, "value": values}))
    return pd.DataFrame(series), pd.concat(samples, ignore_index=True)


def generate_fleet(
    nodes: int = 400,
    as_of: dt.date | None = None,
    history_days: int = 180,
    step: str = "1h",
    seed: int = 7,
    clusters: int | None = None,
    events: list[Event] | None = None,
) -> Iterator[FleetChunk]:
    """Yield the demo fleet one cluster at a time (bounded memory at 10,800 nodes).

    ``events``: the business calendar whose events the history holds (default
    :data:`DEMO_EVENTS`, the shipped catalog's).

    The samples cover ``[as_of - history_days, as_of)`` at ``step`` (which must divide a
    week). A series' value at a timestamp depends only on ``seed``, the layout (``nodes``,
    ``clusters``) and the timestamp (see the module docstring). ``as_of`` is required in
    spirit (the caller passes today); it defaults to a fixed date only so the function
    never reads the clock.
    """
    grid = _grid(as_of or dt.date(2026, 12, 1), history_days, step)
    cal = _Calendar(grid=grid, years=grid.years, festival=festival(grid.ts), spike=undeclared_spike(grid.ts),
                    events=DEMO_EVENTS if events is None else list(events))
    layout = fleet_layout(nodes, clusters)
    for position, (cluster, tiers) in enumerate(layout.items()):
        yield _cluster_chunk(seed, position, len(layout), cluster, tiers, cal)


def _storage(rng: np.random.Generator, nodes: int, years: np.ndarray, ar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One storage pool (e.g. Ceph): (used, capacity) in bytes. Use grows by 1.2-3% of
    the first capacity a month; capacity grows by half its first size each time use
    reaches 80% of it (the expansions a real pool gets)."""
    cap0 = round(nodes * rng.uniform(1.8, 2.6) + 50)
    used0 = cap0 * rng.uniform(0.50, 0.62)  # at the epoch
    per_month = cap0 * rng.uniform(0.012, 0.03)
    steady = used0 + per_month * 12 * years
    # decided on the smooth use, so noise cannot make capacity flap
    expansions = np.ceil(np.maximum(steady / (STORAGE_EXPAND_AT * cap0) - 1, 0) / STORAGE_EXPAND_BY)
    capacity = cap0 * (1 + STORAGE_EXPAND_BY * expansions)
    used = steady * (1 + 0.02 * ar)
    return used * TIB, capacity * TIB


def _unit(resource: str) -> str:
    return {"cpu": "cores", "memory": "bytes", "pods": "pods", "storage": "bytes"}[resource]


def _long(ids: list[str], ts: pd.DatetimeIndex, values: np.ndarray, mask: np.ndarray | None) -> tuple:
    return ids, np.asarray(values, dtype=float), mask


def _assemble(parts: list[tuple], ts: pd.DatetimeIndex) -> pd.DataFrame:
    """Build the long frame once per cluster; ``series_id`` is categorical (no string
    copies per row, which is what makes 10,800 nodes fit in memory). Each part is cut by
    its mask and written into the three columns in place: concatenating whole columns,
    then masking them, held about 1.5 GB at once for a cluster of 1,080 nodes (0.7 GB
    this way; docs/PERFORMANCE.md)."""
    ids = [i for p in parts for i in p[0]]
    naive = ts.tz_convert(None).to_numpy()
    m = len(naive)
    sizes = [int(mask.sum()) if mask is not None else vals.size for _ids, vals, mask in parts]
    code = np.empty(sum(sizes), dtype=np.int32)
    when = np.empty(sum(sizes), dtype=naive.dtype)
    value = np.empty(sum(sizes), dtype=float)
    at = offset = 0
    for (_ids, vals, mask), size in zip(parts, sizes):
        n = vals.shape[0]
        keep = mask.ravel() if mask is not None else slice(None)
        code[at: at + size] = np.repeat(np.arange(offset, offset + n, dtype=np.int32), m)[keep]
        when[at: at + size] = np.tile(naive, n)[keep]
        value[at: at + size] = vals.ravel()[keep]
        at += size
        offset += n
    stamps = pd.DatetimeIndex(when, copy=False).tz_localize("UTC")
    del when
    return pd.DataFrame({
        "series_id": pd.Categorical.from_codes(code, categories=pd.Index(ids, dtype=object)),
        "ts": stamps,
        "value": value,
    }, copy=False)


def generate_series(
    days: int = 180,
    step: str = "1h",
    level: float = 100.0,
    trend_per_day: float = 0.1,
    daily_amp: float = 10.0,
    weekly_amp: float = 5.0,
    noise: float = 2.0,
    seed: int = 0,
    start: str = "2026-01-01",
    event: tuple[str, str, float] | None = None,
) -> pd.DataFrame:
    """One series with planted structure. Columns out: ``ts, value``.

    ``event`` = (start, end, uplift_pct) multiplies the values inside that window.
    """
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=int(pd.Timedelta(days=days) / pd.Timedelta(step)), freq=step, tz="UTC")
    d = (ts - ts[0]) / pd.Timedelta(days=1)
    hours = ts.hour.to_numpy() + ts.minute.to_numpy() / 60
    y = (level + trend_per_day * d.to_numpy() + daily_amp * np.sin(2 * np.pi * hours / 24)
         + weekly_amp * np.sin(2 * np.pi * (d.to_numpy() % 7) / 7) + rng.normal(0, noise, len(ts)))
    if event:
        s, e, u = event
        inside = (ts >= pd.Timestamp(s, tz="UTC")) & (ts < pd.Timestamp(e, tz="UTC") + pd.Timedelta(days=1))
        y = np.where(inside, y * (1 + u / 100), y)
    return pd.DataFrame({"ts": ts, "value": y})
