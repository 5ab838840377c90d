"""Ingest benchmark: capplan's Prometheus pull into DuckDB vs the limit and the straightforward pull.

Figures, not a pass/fail test. Generates N nodes x 180 days of hourly history, backfills a
local Prometheus (Debian's prometheus + promtool) and measures, in one process:

* end to end: ``ingest_prometheus`` (catalog queries, chunking, concurrency, parsing,
  DuckDB writes): points per second;
* the limit: the same queries fetched by a bare concurrent HTTP client that reads the
  responses and does nothing else;
* the straightforward pull: ``custom_query_range`` per query plus ``MetricRangeDataFrame``,
  sequential (what a script would do), no storage.

The last line is one JSON object.

    python bench/ingest.py [--nodes 60] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.prometheus import build_queries, ingest_prometheus, load_metric_catalog, parse_duration, plan_chunks
from pipelines.io.store import Store
from pipelines.testing.promserver import PrometheusServer, make_fleet, write_openmetrics
from pipelines.testing.site import demo_site


def main() -> None:
    ap = argparse.ArgumentParser(description="Prometheus ingest benchmark")
    ap.add_argument("--nodes", type=int, default=60, help="nodes in the synthetic fleet")
    ap.add_argument("--quick", action="store_true", help="12 nodes, 30 days")
    args = ap.parse_args()
    nodes = 12 if args.quick else args.nodes
    days = 30 if args.quick else 180
    as_of = dt.date(2026, 11, 27)
    per_pool = max(1, nodes // 4)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fleet = make_fleet(as_of, days=days, per_pool=per_pool)
        t = time.perf_counter()
        write_openmetrics(fleet, folder / "data.om")
        server = PrometheusServer(folder, folder / "data.om")
        print(f"fleet: {len(fleet.nodes)} nodes, {days} days hourly; backfill {time.perf_counter() - t:.1f} s")
        try:
            cfg_path = demo_site(folder / "site", as_of=as_of)
            text = cfg_path.read_text().replace("kind: demo                # demo | prometheus | file", "kind: prometheus")
            text = text.replace("    url: http://127.0.0.1:9090\n    step: 1h", f"    url: {server.url}\n    step: 1h\n    scrape_interval: 1h\n    rate_window: 1h")
            text = text.replace("history_days: 180", f"history_days: {days}")
            cfg_path.write_text(text)
            cfg = load_config(cfg_path)
            src = cfg.source.prometheus
            queries = build_queries(load_metric_catalog(None), src, parse_duration(src.step))
            end = fleet.ts[-1] + 3600
            start = end - days * 86400
            urls = [(q.expr, a, b) for q in queries for a, b in plan_chunks(start, end, 3600, 11000)]

            def fetch(item):
                expr, a, b = item
                r = requests.get(server.url + "/api/v1/query_range", params={"query": expr, "start": a, "end": b, "step": 3600}, timeout=120)
                return len(r.content)

            # limit: bare concurrent HTTP, responses read and dropped
            t = time.perf_counter()
            with ThreadPoolExecutor(src.max_concurrency) as pool:
                list(pool.map(fetch, urls))
            limit_s = time.perf_counter() - t

            # end to end
            store = Store(cfg.path(cfg.store.path))
            t = time.perf_counter()
            res = ingest_prometheus(store, cfg, HistoryWindow.ending(as_of, days))
            e2e_s = time.perf_counter() - t
            points = res.rows

            # straightforward: custom_query_range + MetricRangeDataFrame, sequential
            from prometheus_api_client import MetricRangeDataFrame, PrometheusConnect

            pc = PrometheusConnect(url=server.url)
            t = time.perf_counter()
            base_points = 0
            for q in queries:
                data = pc.custom_query_range(q.expr, dt.datetime.fromtimestamp(start, dt.timezone.utc),
                                             dt.datetime.fromtimestamp(end - 3600, dt.timezone.utc), "3600")
                if data:
                    base_points += len(MetricRangeDataFrame(data))
            base_s = time.perf_counter() - t
        finally:
            server.stop()
    out = {
        "nodes": len(fleet.nodes), "days": days, "queries": len(queries), "points": points,
        "seconds": round(e2e_s, 3), "points_per_s": round(points / e2e_s),
        "limit_points_per_s": round(points / limit_s), "baseline_points_per_s": round(base_points / base_s),
        "ratio_vs_baseline": round((points / e2e_s) / (base_points / base_s), 2),
        "fraction_of_limit": round((points / e2e_s) / (points / limit_s), 2),
    }
    print(f"end to end {out['points_per_s']:,} points/s; limit {out['limit_points_per_s']:,}; straightforward {out['baseline_points_per_s']:,}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
