"""Ingest from Prometheus (or Thanos Query / Mimir behind the same API).

1. :func:`pipelines.io.sources.doctor.inspect` looks at the server first (cheap): kind and
   limits, clusters, scrape jobs, each cluster's node-pool labels (presets), the
   node-exporter join, the inventory, the history it holds, the storage sources. A failed
   check stops the run here, before any heavy query, with the fix in the message.
2. The catalog (``metrics.yaml`` plus the user's file) is rendered per cluster
   (:mod:`.catalog`). Pool and storage series are aggregated on the server and keep the
   highest value at 5-minute resolution within each step.
3. Only windows not stored yet are pulled (``ingest_windows``): a monthly run reads about
   one month. Each query's window is split by time so no request exceeds the server's
   ``query.max-samples`` (sized from the first day's ``stats``), its timeout or 11,000
   points; a request that is too heavy anyway is split again (:mod:`.promapi`).
4. Each (query, cluster, window) is written in one transaction (replace, never append
   twice). Then a pool with nodes but no data, or a history shorter than asked, stops the
   run (or, with ``on_missing_data: warn``, becomes a red warning in the report).
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable

import numpy as np
import pandas as pd

from forecasting.frames import UNITS, make_series_id

from ...config import Config, PrometheusSource
from ...domain import HistoryWindow
from ..store import Store
from .catalog import MetricCatalog, Query, build_queries, load_metric_catalog, render
from .common import IngestResult, data_quality
from .doctor import Setup, inspect
from .presets import UNLABELLED
from .promapi import (PrometheusError, PromClient, RangeAnswer, WindowPlanner, escape_label_value, fmt_ts, parse_duration,
                      plan_chunks)

__all__ = ["PrometheusError", "MetricCatalog", "load_metric_catalog", "escape_label_value", "plan_chunks", "Query",
           "ingest_prometheus", "parse_duration", "render", "missing_windows", "answers_to_frame", "connect"]

#: Pool series every pool with nodes must have (resource, kind).
REQUIRED = [("cpu", "usage"), ("memory", "usage"), ("cpu", "requests"), ("memory", "requests")]


def connect(cfg: Config) -> PromClient:
    """A client for the configured server (credentials from the environment)."""
    return PromClient(cfg.source.prometheus, cfg.base_dir)


def missing_windows(start: pd.Timestamp, end: pd.Timestamp, stored: list[tuple[pd.Timestamp, pd.Timestamp]],
                    step_s: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Parts of ``[start, end)`` not covered by the ``stored`` windows, at least one step long."""
    gaps, pos = [], start
    for a, b in sorted(stored):
        if b <= pos or a >= end:
            continue
        if a > pos:
            gaps.append((pos, min(a, end)))
        pos = max(pos, b)
    if pos < end:
        gaps.append((pos, end))
    return [(a, b) for a, b in gaps if (b - a).total_seconds() >= step_s]


def _pool_name(template: str, labels: dict) -> str:
    return template.format_map(defaultdict(lambda: "none", {k: v for k, v in labels.items() if v}))


def answers_to_frame(q: Query, answers: list[RangeAnswer]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Range answers of one query -> (samples ``series_id, ts, value``, series dimensions).
    NaN and infinite values are gaps; a timestamp seen twice keeps the last value."""
    e = q.entry
    peak = e.level in ("pool", "storage")
    samples, dims = [], {}
    for ans in answers:
        for r in ans.result:
            m = r.get("metric") or {}
            d = {"cluster": q.cluster, "pool": None, "node": None, "namespace": None, "resource": e.resource, "kind": e.kind,
                 "level": "pool" if peak else e.level, "unit": UNITS[e.resource], "agg": "max" if peak else "avg"}
            if e.level == "pool":
                d["pool"] = m.get("pool") or UNLABELLED
                key = {"cluster": q.cluster, "pool": d["pool"]}
            elif e.level == "storage":
                d["pool"] = _pool_name(e.pool or "storage", m)
                key = {"cluster": q.cluster, "pool": d["pool"]}
            elif e.level == "node":
                d["node"], d["pool"] = m.get("node", "unknown"), m.get("pool")
                key = {"cluster": q.cluster, "node": d["node"]}
            else:
                d["namespace"] = m.get("namespace", "unknown")
                key = {"cluster": q.cluster, "namespace": d["namespace"]}
            sid = make_series_id(**key, resource=e.resource, kind=e.kind) + ("/agg=max" if peak else "")
            dims[sid] = {"series_id": sid, **d}
            values = r.get("values") or []
            if not values:
                continue
            ts = np.fromiter((p[0] for p in values), dtype=float, count=len(values)) - q.shift_s
            v = np.array([p[1] for p in values], dtype=float)  # numpy parses "NaN", "+Inf" too
            samples.append(pd.DataFrame({"series_id": sid, "ts": pd.to_datetime((ts * 1e6).astype("int64"), unit="us", utc=True),
                                         "value": v}))
    frame = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=["series_id", "ts", "value"])
    if len(frame):
        frame = frame[np.isfinite(frame["value"].to_numpy(dtype=float))]
        frame = frame.drop_duplicates(["series_id", "ts"], keep="last")
    return frame, pd.DataFrame(list(dims.values()))


def _max_source_resolution(src: PrometheusSource, setup: Setup) -> Callable[[float, float], dict] | None:
    """Thanos: raw data where it exists, 1h downsampled blocks before (``auto``)."""
    if setup.server.kind != "thanos":
        return None
    if src.max_source_resolution != "auto":
        return lambda a, b: {"max_source_resolution": src.max_source_resolution}
    raw = setup.raw_earliest
    return lambda a, b: {"max_source_resolution": "1h" if raw and a < raw else "0s"}


def _stop_message(setup: Setup, src: PrometheusSource) -> str:
    lines = [f"{src.url} is not ready for capplan ({len(setup.failed)} check(s) failed; `capplan doctor` shows all):"]
    for c in setup.failed:
        where = f" [{c.cluster}]" if c.cluster else ""
        lines.append(f"- {c.check}{where}: {c.detail}" + (f"\n  fix: {c.fix}" if c.fix else ""))
    return "\n".join(lines)


def _gate(setup: Setup, src: PrometheusSource) -> list[str]:
    """Stop on failed checks; with ``on_missing_data: warn`` the data-coverage ones
    (history, retention, node-exporter reach) become report warnings instead."""
    soft = {"history", "limits", "node-exporter join"}
    if src.on_missing_data == "warn":
        for c in setup.failed:
            if c.check in soft:
                c.status = "WARN"
    if setup.failed:
        raise PrometheusError(_stop_message(setup, src))
    return [f"{c.check}{f' [{c.cluster}]' if c.cluster else ''}: {c.detail}" for c in setup.checks
            if c.report and c.status != "OK"]


def _check_pools(store: Store, window: HistoryWindow, setup: Setup, src: PrometheusSource, queried: set) -> list[str]:
    """Every pool with nodes must have its demand series: a hole is an error (or a warning)."""
    history = store.pool_samples(window.start, window.end)
    have = set(zip(history["cluster"], history["pool"], history["resource"], history["kind"]))
    problems = []
    for (cluster, pool), g in setup.inventory.groupby(["cluster", "pool"]):
        missing = [f"{r} {k}" for r, k in REQUIRED if (cluster, r, k) in queried and (cluster, pool, r, k) not in have]
        if missing:
            problems.append(f"pool {pool} of cluster {cluster} has {len(g)} node(s) but no {', '.join(missing)} series in "
                            f"{fmt_ts(window.start.timestamp())} .. {fmt_ts(window.end.timestamp())}")
    if problems and src.on_missing_data == "error":
        raise PrometheusError("; ".join(problems) + ". `capplan doctor` shows which metric or join is missing; "
                              "source.prometheus.on_missing_data: warn goes on with a red warning")
    return problems


def ingest_prometheus(store: Store, cfg: Config, window: HistoryWindow, progress: Callable | None = None,
                      client: PromClient | None = None) -> IngestResult:
    """Pull the missing parts of the history window for every catalog query and cluster,
    and snapshot the inventory (see the module docstring). ``client`` (default: one for
    the configured server) keeps a record of every request."""
    src = cfg.source.prometheus
    catalog = load_metric_catalog(cfg.path(src.catalog) if src.catalog else None)
    step_s = parse_duration(src.step)
    client = client or connect(cfg)
    setup = inspect(client, src, window, step_s)
    warnings = _gate(setup, src)
    if setup.inventory.empty:
        raise PrometheusError(f"no nodes from {src.url}: kube_node_info and kube_node_labels returned nothing")
    queries = [q for cs in setup.clusters for q in build_queries(catalog, cs, src, step_s, setup.peak_s, setup.rate_window_s)]
    budget = int(setup.server.max_samples * src.samples_budget_pct / 100)
    planner = WindowPlanner(step_s, budget, min(src.timeout_s, setup.server.timeout_s or src.timeout_s),
                            src.max_points_per_request, parse_duration(src.max_query_length) if src.max_query_length else None)
    stored = store.stored_windows("prometheus")
    have: dict[tuple, list] = defaultdict(list)
    for r in stored.itertuples():
        have[(r.query_name, r.cluster, r.step_s)].append((pd.Timestamp(r.window_start), pd.Timestamp(r.window_end)))
    seen_clusters = set(stored["cluster"].dropna())
    # Thanos: windows are cut where raw blocks begin, so raw data is never read at 1h resolution
    cut = pd.Timestamp(math.ceil(setup.raw_earliest / step_s) * step_s, unit="s", tz="UTC") if setup.raw_earliest else None
    tasks = []
    for q in queries:
        gaps = missing_windows(window.start, window.end, have[(q.name, q.cluster, step_s)], step_s)
        if cut is not None:
            gaps = [part for a, b in gaps for part in (((a, cut), (cut, b)) if a < cut < b else ((a, b),))]
        for a, b in gaps:
            grid = plan_chunks(a.timestamp(), b.timestamp(), step_s, 10**9)
            if grid:
                tasks.append((q, a, b, grid[0][0] + q.shift_s, grid[0][1] + q.shift_s))
    extra = _max_source_resolution(src, setup)
    pools_with_nodes = set(zip(setup.inventory["cluster"], setup.inventory["pool"]))
    rows, new, series_ids = 0, 0, []

    def pull(task):
        q, a, b, first, last = task
        return task, planner.pull(client, q.name, q.label, q.expr, first, last, q.cluster, extra)

    with ThreadPoolExecutor(max_workers=src.max_concurrency) as pool:
        futures = [pool.submit(pull, t) for t in tasks]
        try:
            for i, fut in enumerate(as_completed(futures)):
                (q, a, b, _, _), answers = fut.result()
                samples, dims = answers_to_frame(q, answers)
                if q.entry.level in ("pool", "node") and (q.cluster, UNLABELLED) not in pools_with_nodes and len(dims):
                    # only virtual nodes (left out of the inventory) are in no pool: nothing to plan
                    dims = dims[dims["pool"] != UNLABELLED]
                    samples = samples[samples["series_id"].isin(dims["series_id"])]
                for ans in answers:
                    warnings += [f"{q.label} [{q.cluster}]: {w}" for w in ans.warnings]
                if len(dims):
                    new += store.upsert_series(dims, source="prometheus")
                    series_ids += list(dims["series_id"])
                rows += store.replace_samples(samples, a, b, {"source": "prometheus", "query_name": q.name,
                                                              "cluster": q.cluster, "step_s": step_s},
                                              fresh=q.cluster not in seen_clusters)
                if progress:
                    progress(i + 1, len(futures), q.label)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    queried = {(q.cluster, q.entry.resource, q.entry.kind) for q in queries if q.entry.level == "pool"}
    warnings += _check_pools(store, window, setup, src, queried)
    clusters = {cs.name for cs in setup.clusters}
    storage = store.storage_pools(window)
    storage = storage[storage["cluster"].isin(clusters) & storage["pool"].str.contains(":", regex=False)].reset_index(drop=True)
    quality = data_quality(store, window, step_s)
    quality = quality[quality["cluster"].isin(clusters)].reset_index(drop=True)
    return IngestResult(inventory=setup.inventory, storage_pools=storage, quality=quality, rows=rows,
                        series=len(set(series_ids)), new_series=new, warnings=list(dict.fromkeys(warnings)))

