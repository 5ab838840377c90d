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

import logging
import math
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from forecasting.frames import UNITS, make_series_id

from ...config import Config, PrometheusSource
from ...display import for_terminal
from ...domain import HistoryWindow
from ..store import Store
from .budget import Budget, Cost, resolve_budget
from .catalog import MetricCatalog, Query, build_queries, load_metric_catalog, preferred_variant, render, rule_names
from .common import IngestResult, data_quality
from .doctor import Setup, inspect
from .presets import UNLABELLED
from .promapi import (PrometheusError, PromClient, RangeAnswer, WindowPlanner, escape_label_value, fmt_ts, parse_duration,
                      plan_chunks)

__all__ = ["PrometheusError", "MetricCatalog", "load_metric_catalog", "escape_label_value", "plan_chunks", "Query",
           "ingest_prometheus", "parse_duration", "render", "missing_windows", "answers_to_frame", "connect"]

log = logging.getLogger("capplan")

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


#: Values above these are no measurement (a unit error, a broken exporter or recording
#: rule): ten million cores or pods in one series, an exabyte of memory or storage.
PLAUSIBLE_MAX = {"cores": 1e7, "bytes": 1e18, "pods": 1e7, "nodes": 1e7}


def answers_to_frame(q: Query, answers: list[RangeAnswer], node_groups: dict[str, str] | None = None,
                     dropped: dict[str, list] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Range answers of one query -> (samples ``series_id, ts, value``, series dimensions).
    Limit entries name their pool by ``nodepool`` (Karpenter) or by the node group (cluster-
    autoscaler, mapped to its pool by ``node_groups``), their resource by ``resource_type``.

    What a real Prometheus never sends is screened out, never stored: NaN and infinite
    values, negative values (no demand or capacity is below zero) and values above
    :data:`PLAUSIBLE_MAX` become gaps (the data-quality section counts them); timestamps
    outside the request's window or off its step grid are dropped (stored, they would fall
    outside the window a re-run replaces and be duplicated); timestamps out of order are
    sorted and a timestamp seen twice keeps the last value. ``dropped`` (reason ->
    [count, example series, example ts, example value]) collects what was dropped."""
    e = q.entry
    peak = e.level in ("pool", "storage")
    samples, dims = [], {}
    for ans in answers:
        for r in ans.result:
            m = r.get("metric") or {}
            d = {"cluster": q.cluster, "pool": None, "node": None, "namespace": None, "resource": e.resource, "kind": e.kind,
                 "level": "pool" if peak else e.level, "unit": UNITS[e.resource], "agg": "max" if peak else "avg"}
            if e.level == "limit":
                d["resource"] = m.get("resource_type", e.resource)
                d["pool"] = m.get("nodepool") or (node_groups or {}).get(m.get("node_group", ""))  # unmapped: the doctor warns
                if d["resource"] not in UNITS or not d["pool"]:
                    continue
                d |= {"unit": UNITS[d["resource"]], "provider": e.source}
                key = {"cluster": q.cluster, "pool": d["pool"]}
                sid = make_series_id(**key, resource=d["resource"], kind="limit") + f"/provider={e.source}"
                dims[sid] = {"series_id": sid, **d}
                samples += _values(sid, r, q.shift_s, ans, dropped, d["unit"])
                continue
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
            samples += _values(sid, r, q.shift_s, ans, dropped, d["unit"])
    frame = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=["series_id", "ts", "value"])
    if len(frame):
        if e.level == "limit":  # a pool scaled by two node groups (one per zone): its ceiling is their sum
            frame = frame.groupby(["series_id", "ts"], as_index=False, sort=False)["value"].sum()
        else:
            n = len(frame)
            frame = frame.drop_duplicates(["series_id", "ts"], keep="last")
            if len(frame) < n and dropped is not None:
                _count(dropped, "repeated timestamps (the last value kept)", n - len(frame), "", 0.0, float("nan"))
    return frame, pd.DataFrame(list(dims.values()))


def _values(sid: str, r: dict, shift_s: int, ans: RangeAnswer | None = None,
            dropped: dict[str, list] | None = None, unit: str = "") -> list[pd.DataFrame]:
    """One series' ``values`` of an answer as ``series_id, ts, value``, screened (see
    :func:`answers_to_frame`)."""
    values = r.get("values") or []
    if not values:
        return []
    try:
        ts = np.fromiter((float(p[0]) for p in values), dtype=float, count=len(values))
        v = np.array([p[1] for p in values], dtype=float)  # numpy parses "NaN", "+Inf" too
    except (TypeError, ValueError, IndexError):
        raise PrometheusError(f"series {for_terminal(sid, 200)}: the answer's values are not [time, \"number\"] pairs (e.g. "
                              f"{str(values[0])[:80]})") from None
    keep = np.isfinite(v)
    checks = [("NaN or infinite values", ~keep)]
    with np.errstate(invalid="ignore"):
        checks += [("negative values", keep & (v < 0)),
                   ("implausibly large values", keep & (v > PLAUSIBLE_MAX.get(unit, np.inf)))]
    if ans is not None:
        k = (ts - ans.start) / ans.step
        off = (ts < ans.start - 1e-3) | (ts > ans.end + 1e-3) | (np.abs(k - np.round(k)) > 1e-6)
        checks.append(("timestamps outside the request's window or step grid", off))
    for reason, bad in checks:
        keep &= ~bad
        if dropped is not None and bad.any():
            i = int(np.argmax(bad))
            _count(dropped, reason, int(bad.sum()), sid, ts[i] - shift_s, float(v[i]))
    ts, v = ts[keep] - shift_s, v[keep]
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        order = np.argsort(ts, kind="stable")  # the last of repeated timestamps stays last
        ts, v = ts[order], v[order]
    return [pd.DataFrame({"series_id": sid, "ts": pd.to_datetime((ts * 1e6).astype("int64"), unit="us", utc=True), "value": v})]


def _count(dropped: dict[str, list], reason: str, n: int, sid: str, ts: float, value: float) -> None:
    if reason in dropped:
        dropped[reason][0] += n
    else:
        dropped[reason] = [n, sid, ts, value]


def dropped_notes(label: str, cluster: str, dropped: dict[str, list]) -> list[str]:
    """One warning per reason: how many samples of ``label`` were dropped, one example (the
    series and cluster as text: a label value cannot forge a log line)."""
    out = []
    for reason, (n, sid, ts, value) in dropped.items():
        example = f", e.g. {for_terminal(sid, 200)} at {fmt_ts(ts)}: {value:g}" if sid else ""
        out.append(f"{label} [{for_terminal(cluster, 80)}]: {n} sample(s) dropped, {reason}{example}")
    return out


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
        where = f" [{for_terminal(c.cluster, 80)}]" if c.cluster else ""
        # one line per check whatever its detail names (label values); a fix may hold a snippet of several lines
        lines.append(f"- {c.check}{where}: {for_terminal(c.detail, limit=None)}"
                     + (f"\n  fix: {for_terminal(c.fix, limit=None, keep_newlines=True)}" if c.fix else ""))
    return "\n".join(lines)


def _gate(setup: Setup, src: PrometheusSource) -> list[str]:
    """Stop on failed checks; with ``on_missing_data: warn`` the data-coverage ones
    (history, retention, node-exporter reach) become report warnings instead."""
    soft = {"history", "limits", "node-exporter join"}
    if src.on_missing_data == "warn":
        for c in setup.failed:
            if c.check in soft:
                c.status = "WARN"
    server = [c for c in setup.failed if c.check == "server"]
    if server:  # not a Prometheus API: one plain line, nothing else was checked
        raise PrometheusError(server[0].detail, plain=True)
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
            problems.append(f"pool {for_terminal(pool, 80)} of cluster {for_terminal(cluster, 80)} has {len(g)} node(s) but no {', '.join(missing)} series in "
                            f"{fmt_ts(window.start.timestamp())} .. {fmt_ts(window.end.timestamp())}")
    if problems and src.on_missing_data == "error":
        raise PrometheusError("; ".join(problems) + ". `capplan doctor` shows which metric or join is missing; "
                              "source.prometheus.on_missing_data: warn goes on with a red warning")
    return problems


def _windows(window: HistoryWindow, stored: list[tuple[pd.Timestamp, pd.Timestamp]], step_s: int,
             cuts: list[pd.Timestamp]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The missing parts of ``window``, cut at ``cuts`` (where raw data starts on Thanos,
    where a series' recorded variant starts)."""
    out = []
    for a, b in missing_windows(window.start, window.end, stored, step_s):
        edges = [a] + sorted({c for c in cuts if a < c < b}) + [b]
        out += [(x, y) for x, y in zip(edges, edges[1:]) if (y - x).total_seconds() >= step_s]
    return out


def _align(t: float, step_s: int) -> pd.Timestamp:
    return pd.Timestamp(math.ceil(t / step_s) * step_s, unit="s", tz="UTC")


class _Stopped(Exception):
    """Another request of the pull failed: the others stop after their current request."""


@dataclass
class _Task:
    q: Query
    start: pd.Timestamp
    end: pd.Timestamp
    first: float
    last: float


def _plan_tasks(queries: list[Query], have: dict, window: HistoryWindow, step_s: int,
                raw_cut: pd.Timestamp | None) -> list[_Task]:
    """One task per (query, cluster, missing window): each piece of a series' window read
    with its most preferred variant that exists there (:data:`.catalog.VARIANTS`: capplan's
    pool rule from its ``since``, else the mixins' recorded variant from its ``since``, else
    the raw entry), only where nothing of any variant is stored yet."""
    by_group: dict[tuple[str, str], list[Query]] = defaultdict(list)
    for q in queries:
        by_group[(q.group, q.cluster)].append(q)
    tasks = []
    for (_, cluster), qs in by_group.items():
        by_variant = {q.variant: q for q in qs}
        since = {v: None if q.since is None or v == "raw" else _align(q.since, step_s) for v, q in by_variant.items()}
        stored = [w for q in qs for w in have[(q.name, q.cluster, step_s)]]
        cuts = [c for c in (raw_cut, *since.values()) if c is not None]
        for a, b in _windows(window, stored, step_s, cuts):
            q = by_variant[preferred_variant(since, a)]
            grid = plan_chunks(a.timestamp(), b.timestamp(), step_s, 10**9)
            if grid:
                tasks.append(_Task(q, a, b, grid[0][0] + q.shift_s, grid[0][1] + q.shift_s))
    # oldest windows first (a resumed pull fills the history from its start), clusters interleaved
    return sorted(tasks, key=lambda t: (t.start, t.q.cluster))


def _cost_summary(costs: dict[str, Cost], wall_s: float, budgets: list[Budget]) -> dict:
    total = Cost()
    for c in costs.values():
        total.merge(c)
    return {**total.as_dict(), "wall_s": round(wall_s, 2), "by_variant": {k: v.as_dict() for k, v in sorted(costs.items())},
            "budget": "; ".join(b.describe() for b in budgets),
            "line": (f"Prometheus pull: {total.requests} requests, {total.samples:,} samples read, "
                     f"{total.server_s:.1f} s of server time, {wall_s:.1f} s wall ("
                     + ", ".join(f"{k} {v.requests} requests / {v.samples:,} samples" for k, v in sorted(costs.items()))
                     + f"); budget {'; '.join(b.describe() for b in budgets)}")}


@dataclass
class _Server:
    """One server's side of a pull: its client, what the doctor found, its requests."""

    src: PrometheusSource
    client: PromClient
    setup: Setup
    queries: list[Query]
    planner: WindowPlanner
    budget: Budget
    extra: Callable[[float, float], dict] | None
    warnings: list[str]
    tasks: list[_Task]


def _prepare(src: PrometheusSource, client: PromClient, catalog: MetricCatalog, window: HistoryWindow, step_s: int,
             have: dict) -> _Server:
    """The doctor's checks for one server (stopping on a failed one), its queries and the
    requests still missing."""
    setup = inspect(client, src, window, step_s, rule_names(catalog), catalog)
    warnings = _gate(setup, src)
    if setup.inventory.empty:
        raise PrometheusError(f"no nodes from {src.url}: kube_node_info and kube_node_labels returned nothing")
    recorded = src.recorded == "auto"
    queries = [q for cs in setup.clusters
               for q in build_queries(catalog, cs, src, step_s, setup.peak_s, setup.rate_window_s, recorded)]
    budget = resolve_budget(src)
    samples_budget = int(setup.server.max_samples * budget.samples_budget_pct / 100)
    planner = WindowPlanner(step_s, samples_budget, min(src.timeout_s, setup.server.timeout_s or src.timeout_s),
                            src.max_points_per_request, parse_duration(src.max_query_length) if src.max_query_length else None)
    # Thanos: windows are cut where raw blocks begin, so raw data is never read at 1h resolution
    cut = pd.Timestamp(math.ceil(setup.raw_earliest / step_s) * step_s, unit="s", tz="UTC") if setup.raw_earliest else None
    tasks = _plan_tasks(queries, have, window, step_s, cut)
    return _Server(src, client, setup, queries, planner, budget, _max_source_resolution(src, setup), warnings, tasks)


def ingest_prometheus(store: Store, cfg: Config, window: HistoryWindow, progress: Callable | None = None,
                      client: PromClient | None = None) -> IngestResult:
    """Pull the missing parts of the history window for every catalog query and cluster,
    and snapshot the inventory (see the module docstring). ``client`` (default: one for
    the configured server) keeps a record of every request."""
    started = time.perf_counter()
    base = cfg.source.prometheus
    catalog = load_metric_catalog(cfg.path(base.catalog) if base.catalog else None)
    step_s = parse_duration(base.step)
    stored = store.stored_windows("prometheus")
    have: dict[tuple, list] = defaultdict(list)
    for r in stored.itertuples():
        have[(r.query_name, r.cluster, r.step_s)].append((pd.Timestamp(r.window_start), pd.Timestamp(r.window_end)))
    seen_clusters = set(stored["cluster"].dropna())
    servers = []
    for src in base.per_server():
        own = client if client is not None and client.url == src.url.rstrip("/") else PromClient(src, cfg.base_dir)
        servers.append(_prepare(src, own, catalog, window, step_s, have))
    names = [cs.name for s in servers for cs in s.setup.clusters]
    if len(names) != len(set(names)):
        raise PrometheusError("source.prometheus.servers: a cluster is served by two servers ("
                              + ", ".join(sorted({n for n in names if names.count(n) > 1}))
                              + "); give each server its clusters")
    warnings = [w for s in servers for w in s.warnings]
    inventory = pd.concat([s.setup.inventory for s in servers], ignore_index=True)
    pools_with_nodes = set(zip(inventory["cluster"], inventory["pool"]))
    node_groups = {cs.name: cs.node_groups for s in servers for cs in s.setup.clusters}
    tasks = sorted(((s, t) for s in servers for t in s.tasks), key=lambda st: (st[1].start, st[1].q.cluster))
    rows, new, series_ids = 0, 0, []
    costs: dict[str, Cost] = defaultdict(Cost)
    dropped: dict[tuple[str, str], dict[str, list]] = defaultdict(dict)

    def commit(server: _Server, task: _Task, ans: RangeAnswer, wall: float) -> None:
        """Write one answer (one request) in one transaction: an interrupted pull resumes
        from the last request written."""
        nonlocal rows, new, warnings
        q, extra = task.q, server.extra
        samples, dims = answers_to_frame(q, [ans], node_groups.get(q.cluster), dropped[(q.label, q.cluster)])
        if q.entry.level in ("pool", "node") and (q.cluster, UNLABELLED) not in pools_with_nodes and len(dims):
            # only virtual nodes (left out of the inventory) are in no pool: nothing to plan
            dims = dims[dims["pool"] != UNLABELLED]
            samples = samples[samples["series_id"].isin(dims["series_id"])]
        warnings += [f"{q.label} [{q.cluster}]: {w}" for w in ans.warnings]
        if len(dims):
            new += store.upsert_series(dims, source="prometheus")
            series_ids.extend(dims["series_id"])
        cost = Cost()
        cost.add(ans)
        costs[q.variant].merge(cost)
        # the stored timestamps of this request: ts = evaluation time - shift, each covering one step
        a = max(task.start, pd.Timestamp(ans.start - q.shift_s, unit="s", tz="UTC"))
        b = min(task.end, pd.Timestamp(ans.end - q.shift_s + ans.step, unit="s", tz="UTC"))
        resolution = (extra(ans.start, ans.end) or {}).get("max_source_resolution", "") if extra else ""
        rows += store.replace_samples(samples, a, b,
                                      {"source": "prometheus", "query_name": q.name, "cluster": q.cluster,
                                       "step_s": step_s, "query_group": q.group, "variant": q.variant,
                                       "resolution": resolution, "cost": {**cost.as_dict(), "wall_s": round(wall, 3)}},
                                      fresh=q.cluster not in seen_clusters)

    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def pull(server: _Server, task: _Task) -> None:
        q = task.q
        t = [time.perf_counter()]

        def answered(ans: RangeAnswer) -> None:
            now = time.perf_counter()
            done.put((server, task, ans, now - t[0]))
            t[0] = now
            if stop.is_set():
                raise _Stopped()

        try:
            server.planner.pull(server.client, q.name, q.label, q.expr, task.first, task.last, q.cluster, server.extra,
                                server.budget, answered)
            done.put((server, task, None, None))
        except BaseException as exc:  # noqa: BLE001  (handed to the writing thread)
            done.put((server, task, exc, None))

    # One pool for every server's requests, as large as their query slots together: each
    # request waits for a slot of its own server (Budget.slots), so each server sees at most
    # its budget's max_concurrency queries while the others keep going. Threads, not Prefect
    # tasks: the work is waiting on HTTP, the limit is per server, and the samples must be
    # written by one thread in order (Prefect's concurrency limits are global tags that need
    # a server-side setup, and a task per request would cost more than the request).
    finished = 0
    with ThreadPoolExecutor(max_workers=max(1, sum(s.budget.max_concurrency for s in servers))) as pool:
        futures = [pool.submit(pull, s, t) for s, t in tasks]
        try:
            while finished < len(tasks):
                server, task, item, wall = done.get()
                if isinstance(item, _Stopped):
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                elif item is None:
                    finished += 1
                    if progress:
                        progress(finished, len(tasks), task.q.label)
                else:
                    commit(server, task, item, wall)
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise
    for (label, cluster), d in sorted(dropped.items()):
        notes = dropped_notes(label, cluster, d)
        for n in notes:
            log.warning(n)
        warnings += notes
    for s in servers:
        queried = {(q.cluster, q.entry.resource, q.entry.kind) for q in s.queries if q.entry.level == "pool"}
        warnings += _check_pools(store, window, s.setup, s.src, queried)
    clusters = set(names)
    storage = store.storage_pools(window)
    storage = storage[storage["cluster"].isin(clusters) & storage["pool"].str.contains(":", regex=False)].reset_index(drop=True)
    quality = data_quality(store, window, step_s)
    quality = quality[quality["cluster"].isin(clusters)].reset_index(drop=True)
    cost = _cost_summary(costs, time.perf_counter() - started, [s.budget for s in servers])
    log.info(cost["line"])
    return IngestResult(inventory=inventory, storage_pools=storage, quality=quality, rows=rows,
                        series=len(set(series_ids)), new_series=new, warnings=list(dict.fromkeys(warnings)), cost=cost)
