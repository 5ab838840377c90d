"""Ingest from Prometheus (or Thanos / Mimir behind the same API) with prometheus-api-client.

* Queries come from the metric catalog (``defaults/metrics.yaml`` plus the user's file);
  aggregation to pools runs in PromQL on the server; node and namespace series are pulled
  for drill-down.
* Windows are split so no request returns more than ``max_points_per_request`` points
  per series; chunks do not overlap (chunk k ends one step before chunk k+1 starts), so
  there are no duplicate samples at boundaries.
* Requests run concurrently (``max_concurrency``); connection errors, timeouts and 5xx
  are retried with backoff; then the run fails with a message naming the query.
* Credentials come from environment variables; TLS verification is on by default.
* Every query's window is written in one transaction (replace, never append twice), and
  recorded in ``ingest_windows`` so a re-run pulls only what is missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import requests
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecasting.frames import UNITS, make_series_id

from ...config import Config, ConfigError, PrometheusSource, format_validation_error, load_yaml
from ...domain import HistoryWindow
from ..retry import Transient, with_retries
from ..store import Store
from .common import INVENTORY_COLUMNS, IngestResult, data_quality

__all__ = ["PrometheusError", "MetricEntry", "MetricCatalog", "load_metric_catalog", "escape_label_value",
           "plan_chunks", "Puller", "ingest_prometheus", "parse_duration"]

log = logging.getLogger("capplan.prometheus")


class PrometheusError(RuntimeError):
    """Prometheus could not be read; the message names the query and the cluster."""


class MetricEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    level: str = Field(pattern="^(pool|node|namespace|storage)$")
    resource: str = Field(pattern="^(cpu|memory|pods|storage)$")
    kind: str = Field(pattern="^(usage|requests|capacity)$")
    expr: str


class MetricCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inventory: dict[str, str]
    metrics: list[MetricEntry]


def load_metric_catalog(user_path: Path | None = None) -> MetricCatalog:
    """The default catalog, with the user's entries replacing same-named ones and added."""
    base = yaml.safe_load(resources.files("pipelines.io.sources").joinpath("metrics.yaml").read_text())
    if user_path:
        extra = load_yaml(user_path) or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"{user_path}: expected keys 'metrics' and/or 'inventory'")
        unknown = set(extra) - {"metrics", "inventory"}
        if unknown:
            raise ConfigError(f"{user_path}: unknown key(s) {', '.join(sorted(unknown))}; expected metrics, inventory")
        by_name = {m["name"]: m for m in base["metrics"]}
        for i, m in enumerate(extra.get("metrics") or []):
            try:
                entry = MetricEntry.model_validate(m)
            except ValidationError as exc:
                raise ConfigError(format_validation_error(f"{user_path}: metric {m.get('name', i) if isinstance(m, dict) else i!r}", exc, f"metrics[{i}]")) from None
            by_name[entry.name] = entry.model_dump()
        base["metrics"] = list(by_name.values())
        base["inventory"] = {**base["inventory"], **(extra.get("inventory") or {})}
    return MetricCatalog.model_validate(base)


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def escape_label_value(value: str) -> str:
    """Escape a value for a double-quoted PromQL string (no injection through config)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _check_label_name(name: str, field: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ConfigError(f"source.prometheus.{field}: {name!r} is not a valid Prometheus label name")
    return name


def render(expr: str, src: PrometheusSource) -> str:
    """Fill the catalog placeholders. Label names are validated, label values escaped."""
    selector = ""
    if src.clusters:
        alternatives = "|".join(re.escape(c) for c in src.clusters)
        selector = f'{_check_label_name(src.cluster_label, "cluster_label")}=~"{escape_label_value(alternatives)}"'
    out = expr.replace(",<<selector>>}", ("," + selector + "}") if selector else "}")
    out = out.replace("<<selector>>", selector)
    for key, field in (("cluster", "cluster_label"), ("pool_label", "pool_label"), ("tier_label", "tier_label"),
                       ("zone_label", "zone_label"), ("instance_type_label", "instance_type_label")):
        out = out.replace(f"<<{key}>>", _check_label_name(getattr(src, field), field))
    return out.replace("<<range>>", src.rate_window)


def parse_duration(text: str) -> int:
    """Prometheus duration (``5m``, ``1h``, ``1d``) to seconds."""
    m = re.fullmatch(r"(\d+)(s|m|h|d|w)", text.strip())
    if not m:
        raise ConfigError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def plan_chunks(start: float, end: float, step_s: int, max_points: int = 11000) -> list[tuple[float, float]]:
    """Non-overlapping [start, end] pairs (both inclusive, on the step grid) that cover
    ``[start, end)`` with at most ``max_points`` points each."""
    first = math.ceil(start / step_s) * step_s
    last = math.floor((end - 1) / step_s) * step_s
    if last < first:
        return []
    n = int((last - first) // step_s) + 1
    out = []
    for k in range(0, n, max_points):
        a = first + k * step_s
        b = first + min(k + max_points, n) * step_s - step_s
        out.append((a, b))
    return out


@dataclass
class Query:
    name: str
    expr: str
    entry: MetricEntry | None
    agg: str  # avg | max | raw


class Puller:
    """Runs range queries through prometheus-api-client, chunked, retried, concurrent."""

    def __init__(self, src: PrometheusSource, base_dir: Path = Path(".")):
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.src = src
        headers = dict(src.headers)
        auth = None
        if src.auth.bearer_token_env:
            token = os.environ.get(src.auth.bearer_token_env)
            if token:
                headers["Authorization"] = f"Bearer {token}"
        if src.auth.username_env and src.auth.password_env:
            user, password = os.environ.get(src.auth.username_env), os.environ.get(src.auth.password_env)
            if user and password:
                auth = (user, password)
        self._secrets = [v for v in (headers.get("Authorization", "")[7:], auth[1] if auth else None) if v]
        session = requests.Session()
        session.verify = str(src.ca_file if src.ca_file.is_absolute() else base_dir / src.ca_file) if (src.ca_file and src.verify_tls) else src.verify_tls
        self.client = PrometheusConnect(url=src.url.rstrip("/"), headers=headers, disable_ssl=not src.verify_tls,
                                        retry=Retry(total=0), auth=auth, session=session, timeout=int(src.timeout_s))
        self.client._session.verify = session.verify

    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _where(self, q: Query) -> str:
        return f"query {q.name!r} (clusters: {', '.join(self.src.clusters) or 'all'})"

    def _request(self, q: Query, call: Callable[[], list[dict]]) -> list[dict]:
        """One HTTP request: transient faults become :class:`Transient` (retried by the
        caller); everything else becomes a :class:`PrometheusError` that names the query."""
        from prometheus_api_client.exceptions import PrometheusApiClientException

        try:
            return call()
        except PrometheusApiClientException as exc:
            text = str(exc)
            code = re.search(r"HTTP Status Code (\d+)", text)
            status = int(code.group(1)) if code else 0
            detail = self._detail(text)
            if status in (400, 401, 403, 404, 422):
                hint = {400: "bad query or too many points", 401: "unauthorised: check the token or credentials",
                        403: "forbidden: check the credentials' permissions", 422: "the query cannot be executed"}.get(status, "")
                raise PrometheusError(self._clean(
                    f"{self._where(q)} failed with HTTP {status} ({hint}): {detail}; PromQL: {q.expr}")) from None
            raise Transient(self._clean(f"HTTP {status}: {detail}")) from None
        except requests.exceptions.SSLError as exc:
            raise PrometheusError(self._clean(f"TLS verification failed for {self.src.url} (query {q.name!r}): {exc}; "
                                              "set source.prometheus.ca_file, or verify_tls: false only if you must")) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ValueError) as exc:
            raise Transient(self._clean(f"{type(exc).__name__}: {exc}")) from None

    def _retried(self, q: Query, call: Callable[[], list[dict]], window: str) -> list[dict]:
        try:
            return with_retries(lambda: self._request(q, call), self.src.retries, f"prometheus {q.name}")
        except Transient as exc:
            raise PrometheusError(
                f"{self._where(q)} failed after {self.src.retries + 1} attempt(s) against {self.src.url}{window}: {exc}") from None

    def range(self, q: Query, start: float, end: float, step_s: int) -> list[dict]:
        """All chunks of one query; returns the raw results (metric + values) per chunk."""
        results = []
        for a, b in plan_chunks(start, end, step_s, self.src.max_points_per_request):
            ta, tb = (dt.datetime.fromtimestamp(x, dt.timezone.utc) for x in (a, b))
            window = f" (window {ta:%Y-%m-%d %H:%M} .. {tb:%Y-%m-%d %H:%M})"
            results.extend(self._retried(q, lambda: self.client.custom_query_range(q.expr, ta, tb, str(step_s)), window))
        return results

    @staticmethod
    def _detail(text: str) -> str:
        m = re.search(r'"error":"((?:[^"\\]|\\.)*)"', text)
        return m.group(1) if m else text[:300]

    def instant(self, name: str, expr: str, at: float) -> list[dict]:
        """An instant query at ``at`` (unix seconds), retried like :meth:`range`."""
        q = Query(name, expr, None, "raw")
        return self._retried(q, lambda: self.client.custom_query(expr, params={"time": at}), "")


def build_queries(catalog: MetricCatalog, src: PrometheusSource, step_s: int) -> list[Query]:
    """Pool and storage entries are wrapped in avg/max_over_time subqueries when the step is
    coarser than the scrape interval; node and namespace entries are sampled as they are."""
    scrape_s = parse_duration(src.scrape_interval)
    out = []
    for e in catalog.metrics:
        expr = render(e.expr, src)
        if e.level in ("pool", "storage") and step_s > scrape_s:
            window = f"[{step_s}s:{scrape_s}s]"
            out.append(Query(e.name, f"max_over_time(({expr}){window})", e, "max"))
            out.append(Query(e.name + ":avg", f"avg_over_time(({expr}){window})", e, "avg"))
        else:
            out.append(Query(e.name, expr, e, "raw"))
    return out


def _to_frame(q: Query, results: list[dict], src: PrometheusSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prometheus matrix results -> (samples ``series_id, ts, value``, series dimensions)."""
    e = q.entry
    assert e is not None
    samples, dims = [], {}
    for r in results:
        m = r["metric"]
        cluster = m.get(src.cluster_label, "default")
        d = {"cluster": cluster, "pool": None, "node": None, "namespace": None, "resource": e.resource, "kind": e.kind,
             "level": "pool" if e.level == "storage" else e.level, "unit": UNITS[e.resource], "agg": "max" if q.agg == "max" else "avg"}
        if e.level == "pool":
            d["pool"] = m.get("pool", "unlabelled")
        elif e.level == "storage":
            d["pool"] = src.storage_pool
        elif e.level == "node":
            d["node"] = m.get("node", m.get("instance", "unknown"))
        else:
            d["namespace"] = m.get("namespace", "unknown")
        key = {k: d[k] for k in ("cluster", "pool", "node", "namespace") if d[k] is not None}
        sid = make_series_id(**key, resource=e.resource, kind=e.kind) + ("/agg=max" if d["agg"] == "max" else "")
        dims[sid] = {"series_id": sid, **d}
        values = r["values"]
        if not values:
            continue
        ts = np.fromiter((p[0] for p in values), dtype=float, count=len(values))
        v = np.array([p[1] for p in values], dtype=float)  # numpy parses "NaN", "+Inf" too
        samples.append(pd.DataFrame({"series_id": sid, "ts": pd.to_datetime((ts * 1e6).astype("int64"), unit="us", utc=True), "value": v}))
    frame = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=["series_id", "ts", "value"])
    if len(frame):
        frame = frame[np.isfinite(frame["value"].to_numpy(dtype=float))]  # NaN / +-Inf dropped: they are gaps
        frame = frame.drop_duplicates(["series_id", "ts"], keep="last")
    return frame, pd.DataFrame(list(dims.values()))


def inventory_snapshot(puller: Puller, catalog: MetricCatalog, src: PrometheusSource, at: float) -> pd.DataFrame:
    """Nodes with their labels and allocatable at the end of the window."""
    labels = puller.instant("inventory.labels", render(catalog.inventory["labels"], src), at)
    alloc = puller.instant("inventory.allocatable", render(catalog.inventory["allocatable"], src), at)
    nodes = {}
    for r in labels:
        m = r["metric"]
        key = (m.get(src.cluster_label, "default"), m.get("node"))
        nodes[key] = {"cluster": key[0], "node": key[1], "pool": m.get(src.pool_label, "unlabelled"),
                      "tier": m.get(src.tier_label) or m.get(src.pool_label, "unlabelled"),
                      "zone": m.get(src.zone_label, "unknown"), "instance_type": m.get(src.instance_type_label, "unknown"),
                      "cpu_cores": 0.0, "memory_bytes": 0.0, "pods": 0.0, "storage_bytes": 0.0, "capacity_type": "on-demand"}
    column = {"cpu": "cpu_cores", "memory": "memory_bytes", "pods": "pods", "ephemeral_storage": "storage_bytes"}
    for r in alloc:
        m = r["metric"]
        key = (m.get(src.cluster_label, "default"), m.get("node"))
        if key in nodes and m.get("resource") in column:
            nodes[key][column[m["resource"]]] = float(r["value"][1])
    return pd.DataFrame(list(nodes.values()), columns=INVENTORY_COLUMNS)


def ingest_prometheus(store: Store, cfg: Config, window: HistoryWindow, progress: Callable | None = None) -> IngestResult:
    """Pull the history window for every catalog query and store it (see module docstring)."""
    src = cfg.source.prometheus
    catalog = load_metric_catalog(cfg.path(src.catalog) if src.catalog else None)
    step_s = parse_duration(src.step)
    start, end = window
    puller = Puller(src, cfg.base_dir)
    queries = build_queries(catalog, src, step_s)
    stored = store.stored_windows("prometheus")
    done = {(r.query_name, pd.Timestamp(r.window_start), pd.Timestamp(r.window_end), r.step_s) for r in stored.itertuples()}
    todo = [q for q in queries if (q.name, start, end, step_s) not in done]
    rows, series_frames, new = 0, [], 0

    def pull(q: Query):
        return q, puller.range(q, start.timestamp(), end.timestamp(), step_s)

    with ThreadPoolExecutor(max_workers=src.max_concurrency) as pool:
        futures = [pool.submit(pull, q) for q in todo]
        for i, fut in enumerate(as_completed(futures)):
            q, results = fut.result()
            samples, dims = _to_frame(q, results, src)
            if len(dims):
                new += store.upsert_series(dims, source="prometheus")
                series_frames.append(dims)
            rows += store.replace_samples(samples, start, end, {"source": "prometheus", "query_name": q.name, "step_s": step_s})
            if progress:
                progress(i + 1, len(futures), q.name)
    inventory = inventory_snapshot(puller, catalog, src, end.timestamp() - step_s)
    if inventory.empty:
        raise PrometheusError(f"no nodes from {src.url}: query 'inventory.labels' returned nothing (is kube-state-metrics scraped?)")
    series = pd.concat(series_frames, ignore_index=True) if series_frames else pd.DataFrame(columns=["series_id"])
    quality = data_quality(store, window, step_s, series["series_id"] if len(series) else None)
    return IngestResult(inventory=inventory, storage_pools=store.storage_pools(window), quality=quality,
                        rows=rows, series=len(series), new_series=new)
