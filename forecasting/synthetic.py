"""Seeded synthetic data: the demo fleet and single series with planted structure.

Pure and deterministic (same arguments, same numbers). The demo fleet has the
handbook's shape (tiers control-plane / data / compute / edge on c6i.4xlarge,
i4i.4xlarge, c6i.2xlarge, t3.medium in the ratio 300 : 2,000 : 8,000 : 500), hourly
usage and requests with daily and weekly seasonality, growth that differs by pool,
noise, a few gaps, and the Double-11 sales festival (Nov 1-12) visible in history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from .frames import make_series_id

__all__ = ["TIERS", "FleetChunk", "fleet_layout", "generate_fleet", "generate_series", "DEMO_CLUSTERS"]

GIB = 2**30
TIB = 2**40

#: tier -> (share of nodes, instance type, vcpu, memory GiB, max pods, local storage GiB)
TIERS = {
    "control-plane": (300 / 10800, "c6i.4xlarge", 16, 32, 110, 0),
    "data": (2000 / 10800, "i4i.4xlarge", 16, 128, 110, 3750),
    "compute": (8000 / 10800, "c6i.2xlarge", 8, 16, 110, 0),
    "edge": (500 / 10800, "t3.medium", 2, 4, 17, 0),
}
#: tier -> (usage share of N+2 usable cpu at start, growth over the history, request/usage ratio)
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


@dataclass
class FleetChunk:
    """One cluster's data: inventory rows, series dimensions and long samples."""

    cluster: str
    inventory: pd.DataFrame  # cluster, pool, tier, zone, node, instance_type, cpu_cores, memory_bytes, pods, storage_bytes, capacity_type
    series: pd.DataFrame  # series_id, cluster, pool, node, namespace, resource, kind, level, unit
    samples: pd.DataFrame  # series_id, ts, value


def fleet_layout(nodes: int, clusters: int | None = None) -> dict[str, dict[str, int]]:
    """Nodes per cluster and tier: about 1,000 nodes a cluster (at least 4 clusters),
    tiers in the handbook's ratio, at least 5 nodes a pool."""
    n_clusters = clusters or max(4, round(nodes / 1000))
    names = [DEMO_CLUSTERS[i] if i < len(DEMO_CLUSTERS) else f"cluster-{i:02d}" for i in range(n_clusters)]
    per_cluster = nodes / n_clusters
    return {c: {t: max(MIN_POOL_NODES, round(per_cluster * share)) for t, (share, *_rest) in TIERS.items()} for c in names}


def _time_index(as_of: dt.date, history_days: int, step: str) -> pd.DatetimeIndex:
    end = pd.Timestamp(as_of, tz="UTC")
    return pd.date_range(end - pd.Timedelta(days=history_days), end, freq=step, inclusive="left")


def _shape(ts: pd.DatetimeIndex, utc_offset_h: float) -> np.ndarray:
    """Daily and weekly pattern in local time, mean about 1."""
    local = ts + pd.Timedelta(hours=utc_offset_h)
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60
    dow = local.dayofweek.to_numpy()
    daily = 0.22 * np.sin(2 * np.pi * (hour - 8) / 24) + 0.06 * np.sin(4 * np.pi * (hour - 10) / 24)
    weekly = np.where(dow >= 5, -0.10, 0.03)
    return 1.0 + daily + weekly


def _festival(ts: pd.DatetimeIndex) -> np.ndarray:
    """1 inside Nov 1-12 (Double-11), 0 elsewhere, with one day of ramp either side."""
    d = ts.tz_convert("UTC")
    day = d.dayofyear.to_numpy()
    years = d.year.to_numpy()
    start = np.array([pd.Timestamp(y, 11, 1).dayofyear for y in years])
    rel = day - start
    return np.clip(np.minimum(rel + 1, 12 - rel), 0, 1).astype(float)


def generate_fleet(
    nodes: int = 400,
    as_of: dt.date | None = None,
    history_days: int = 180,
    step: str = "1h",
    seed: int = 7,
    clusters: int | None = None,
) -> Iterator[FleetChunk]:
    """Yield the demo fleet one cluster at a time (bounded memory at 10,800 nodes).

    ``as_of`` is required in spirit (the caller passes today); it defaults to a fixed
    date only so the function never reads the clock.
    """
    as_of = as_of or dt.date(2026, 12, 1)
    ts = _time_index(as_of, history_days, step)
    t = np.linspace(0.0, 1.0, len(ts))
    festival = _festival(ts)
    layout = fleet_layout(nodes, clusters)
    for ci, (cluster, tiers) in enumerate(layout.items()):
        rng = np.random.default_rng([seed, ci])
        offset = 8.0 if "-cn-" in cluster or cluster.endswith("-global") else (-7.0 if "-us-" in cluster else 1.0)
        inv_rows, series_rows, sample_frames = [], [], []
        shape = _shape(ts, offset)
        for tier, n in tiers.items():
            _share, itype, vcpu, mem_gib, max_pods, local_gib = TIERS[tier]
            pool = tier
            alloc_cpu, alloc_mem = vcpu * 0.94, mem_gib * 0.90 * GIB
            zones = [f"{cluster}-{ZONES[i % 3]}" for i in range(n)]
            node_names = [f"{cluster}-{tier}-{i:05d}" for i in range(n)]
            inv_rows.append(pd.DataFrame({
                "cluster": cluster, "pool": pool, "tier": tier, "zone": zones, "node": node_names,
                "instance_type": itype, "cpu_cores": alloc_cpu, "memory_bytes": alloc_mem,
                "pods": float(max_pods), "storage_bytes": float(local_gib * GIB),
                # the handbook's compute tier is 70% spot
                "capacity_type": ["spot" if tier == "compute" and i % 10 < 7 else "on-demand" for i in range(n)],
            }))
            base_share, growth, req_ratio = TIER_LOAD[tier]
            base_share *= rng.uniform(0.85, 1.2)
            growth *= rng.uniform(0.6, 1.5)
            usable_cpu = (n - 2) * alloc_cpu
            trend = 1.0 + growth * t + 0.02 * np.sin(2 * np.pi * t * 3)
            fest_usage = 1.0 + (0.6 if tier in ("compute", "edge") else 0.15) * festival
            fest_req = 1.0 + (0.3 if tier in ("compute", "edge") else 0.05) * festival
            ar = _ar1(rng, len(ts), 0.9, 0.035)
            pool_cpu = usable_cpu * base_share * trend * shape * fest_usage * (1 + ar)
            mem_per_core = alloc_mem / alloc_cpu * rng.uniform(0.55, 0.8)
            pool_mem = pool_cpu.mean() * mem_per_core * trend * (1 + 0.25 * (shape - 1)) * np.sqrt(fest_usage) * (1 + 0.5 * ar)
            req_cpu = _steps(usable_cpu * base_share * req_ratio * trend * fest_req, 24 * 7)
            req_mem = _steps(pool_mem.mean() * 1.25 * trend * fest_req, 24 * 7)
            pods = _steps(n * max_pods * 0.25 * trend * fest_req, 24)
            weights = rng.dirichlet(np.full(n, 20.0))
            per_node = {
                ("cpu", "usage"): pool_cpu, ("memory", "usage"): pool_mem,
                ("cpu", "requests"): req_cpu, ("memory", "requests"): req_mem, ("pods", "requests"): pods,
            }
            for (res, kind), total in per_node.items():
                node_noise = 1 + rng.normal(0, 0.03, size=(n, len(ts))) if kind == "usage" else 1.0
                values = total[None, :] * weights[:, None] * node_noise
                if res == "pods":
                    values = np.round(values)
                values = np.asarray(values)
                mask = _gaps(rng, n, len(ts))
                ids = [make_series_id(cluster=cluster, pool=pool, node=nd, resource=res, kind=kind) for nd in node_names]
                series_rows += [{"series_id": s, "cluster": cluster, "pool": pool, "node": nd, "namespace": None,
                                 "resource": res, "kind": kind, "level": "node", "unit": _unit(res)}
                                for s, nd in zip(ids, node_names)]
                sample_frames.append(_long(ids, ts, values, mask))
            if tier == "compute":
                shares = rng.dirichlet(np.full(len(NAMESPACES), 4.0))
                for ns, sh in zip(NAMESPACES, shares):
                    for (res, kind), total in (((("cpu", "usage"), pool_cpu)), (("cpu", "requests"), req_cpu),
                                               (("memory", "usage"), pool_mem), (("memory", "requests"), req_mem)):
                        sid = make_series_id(cluster=cluster, namespace=ns, resource=res, kind=kind)
                        series_rows.append({"series_id": sid, "cluster": cluster, "pool": pool, "node": None, "namespace": ns,
                                            "resource": res, "kind": kind, "level": "namespace", "unit": _unit(res)})
                        sample_frames.append(_long([sid], ts, (total * sh)[None, :], None))
        # One storage pool per cluster (e.g. Ceph): capacity and used, growing ~2 TiB/month.
        cap_tib = round(sum(tiers.values()) * rng.uniform(1.8, 2.6) + 50)
        used0 = cap_tib * rng.uniform(0.50, 0.62)
        per_month = cap_tib * rng.uniform(0.012, 0.03)
        months = (ts - ts[0]) / pd.Timedelta(days=30.44)
        used = (used0 + per_month * months.to_numpy() + rng.normal(0, 0.05, len(ts)).cumsum() * 0.02) * TIB
        capacity = np.full(len(ts), cap_tib * TIB)
        for kind, vals in (("usage", used), ("capacity", capacity)):
            sid = make_series_id(cluster=cluster, pool="storage", resource="storage", kind=kind)
            series_rows.append({"series_id": sid, "cluster": cluster, "pool": "storage", "node": None, "namespace": None,
                                "resource": "storage", "kind": kind, "level": "pool", "unit": "bytes"})
            sample_frames.append(_long([sid], ts, vals[None, :], None))
        yield FleetChunk(
            cluster=cluster,
            inventory=pd.concat(inv_rows, ignore_index=True),
            series=pd.DataFrame(series_rows),
            samples=_assemble(sample_frames, ts),
        )


def _unit(resource: str) -> str:
    return {"cpu": "cores", "memory": "bytes", "pods": "pods", "storage": "bytes"}[resource]


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], rng.normal(0, sigma * np.sqrt(1 - phi**2), n))


def _steps(values: np.ndarray, every: int) -> np.ndarray:
    """Requests change in steps (deploys), not smoothly: hold each value for ``every`` steps."""
    idx = (np.arange(len(values)) // every) * every
    return values[idx]


def _gaps(rng: np.random.Generator, n_series: int, n_steps: int) -> np.ndarray | None:
    """A few missing scrapes: about 0.2% of series lose a 1-6 hour window."""
    mask = np.ones((n_series, n_steps), dtype=bool)
    for i in np.flatnonzero(rng.random(n_series) < 0.002 * 50):
        start = rng.integers(0, n_steps - 6)
        mask[i, start: start + rng.integers(1, 7)] = False
    return mask


def _long(ids: list[str], ts: pd.DatetimeIndex, values: np.ndarray, mask: np.ndarray | None) -> tuple:
    return ids, np.asarray(values, dtype=float), mask


def _assemble(parts: list[tuple], ts: pd.DatetimeIndex) -> pd.DataFrame:
    """Build the long frame once per cluster; ``series_id`` is categorical (no string
    copies per row, which is what makes 10,800 nodes fit in memory)."""
    ids = [i for p in parts for i in p[0]]
    codes, values, keep = [], [], []
    offset = 0
    for p_ids, vals, mask in parts:
        n, m = vals.shape
        codes.append(np.repeat(np.arange(offset, offset + n, dtype=np.int32), m))
        values.append(vals.ravel())
        keep.append(mask.ravel() if mask is not None else np.ones(n * m, dtype=bool))
        offset += n
    code = np.concatenate(codes)
    keep_all = np.concatenate(keep)
    ts_all = np.tile(ts.tz_convert(None).to_numpy(), offset)
    return pd.DataFrame({
        "series_id": pd.Categorical.from_codes(code[keep_all], categories=pd.Index(ids, dtype=object)),
        "ts": pd.DatetimeIndex(ts_all[keep_all]).tz_localize("UTC"),
        "value": np.concatenate(values)[keep_all],
    })


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
