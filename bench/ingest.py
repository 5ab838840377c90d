"""Ingest benchmark: capplan's Prometheus pull against a server holding what a real stack
stores, measured in one process and extrapolated to the handbook's 10,800 nodes.

Builds a fleet shaped like real exporters and ServiceMonitors (``pipelines.testing.kubefleet``:
an EKS cluster on kube-prometheus-stack with two HA replicas and PVCs, a Karpenter cluster on
kube-prometheus with Rook/Ceph), backfills Debian's Prometheus (``--query.max-samples``
lowered to 5,000,000) and measures:

* the server's cost per pool query (the doctor's one-day probe with ``stats=all``): samples
  read per day and per month, per node;
* the full pull: 180 days into an empty DuckDB, for a plan a month before the data ends;
  the largest single request against ``query.max-samples``;
* the baseline, in the same process: the same HTTP requests replayed by a bare concurrent
  client that reads the bytes and nothing else (the limit: capplan's points/s over it);
* the monthly pull: the next month's run on the same database (how many days it reads);
* an extrapolation of the full and monthly pulls to 10,800 nodes, and what limits them.

The last line is one JSON object.

    python bench/ingest.py [--nodes 8] [--days 180] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from pipelines.cli_doctor import doctor_report
from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.promapi import parse_duration
from pipelines.io.sources.prometheus import connect, ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.kubefleet import ClusterSpec, FleetSpec, PoolSpec
from pipelines.testing.promfixtures import AS_OF, prom_site
from pipelines.testing.promserver import PrometheusServer, backfill

HANDBOOK_NODES = 10_800
NODES_PER_CLUSTER = 1_000  # the handbook: clusters of about 1,000 nodes
MAX_SAMPLES = 5_000_000
MONTH = 30


def fleet_spec(nodes: int, days: int, scrape_s: int) -> FleetSpec:
    q = max(1, nodes // 4)
    return FleetSpec(AS_OF, days, (
        ClusterSpec("east", "eks", "kps", (PoolSpec("ng-general", q, ("m6i.large",)), PoolSpec("ng-batch", q, ("c6i.large",), "yes")),
                    replicas=2, ksm_rollout_day=days // 2, replace_node=True, reboot_node=True, pvcs=True),
        ClusterSpec("west", "karpenter", "kp", (PoolSpec("default", q, ("c6i.large", "m6i.large"), "mixed"),
                                               PoolSpec("system", q, ("r6i.large",))), ceph=True),
    ), scrape_s=scrape_s)


def replay(records, url: str, workers: int) -> float:
    """The same range requests from a bare concurrent client that only reads the bytes."""
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=workers + 2))

    def send(params):
        return len(session.post(url + "/api/v1/query_range", data=params, timeout=300).content)

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, [r.params for r in records]))
    return time.perf_counter() - t


def pulled_days(records) -> float:
    """The longest stretch of history any one query read (days)."""
    per: dict = {}
    for r in records:
        per[(r.name, r.cluster)] = per.get((r.name, r.cluster), 0) + (r.end - r.start + r.step) / 86400
    return max(per.values()) if per else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description="Prometheus ingest benchmark")
    ap.add_argument("--nodes", type=int, default=8, help="nodes in the fleet (4 pools in 2 clusters)")
    ap.add_argument("--days", type=int, default=180, help="history of the full pull")
    ap.add_argument("--scrape", default="5m", help="scrape interval of the fixture (at most Prometheus' 5m lookback)")
    ap.add_argument("--quick", action="store_true", help="8 nodes, 45 days")
    args = ap.parse_args()
    nodes, days = (8, 45) if args.quick else (args.nodes, args.days)
    scrape_s = parse_duration(args.scrape)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        fleet, tsdb, samples = backfill(fleet_spec(nodes, days + MONTH + 1, scrape_s), folder / "prom")
        server = PrometheusServer(folder / "prom", tsdb, max_samples=MAX_SAMPLES)
        n_nodes = len(fleet.inventory())
        print(f"fixture: {n_nodes} nodes in 2 clusters, {days + MONTH + 1} days scraped every {args.scrape}, "
              f"{samples / 1e6:.1f}M samples; backfill and start {time.perf_counter() - t:.0f} s")
        try:
            cfg_path = prom_site(folder / "site", server.url, days, "    timeout_s: 120\n    retries: 3\n")
            cfg = load_config(cfg_path)
            first_as_of = AS_OF - dt.timedelta(days=MONTH)
            # the server's cost per pool query, from the doctor's one-day probes
            rep = doctor_report(cfg_path, first_as_of, cost=True)
            per_cluster = {c: int(n) for c, n in fleet.inventory().groupby("cluster").size().items()}
            est = [e for e in rep["estimates"] if e["total_per_day"]]
            read_node_day = sum(e["total_per_day"] / per_cluster[e["cluster"]] for e in est) / len(per_cluster)
            peak_node_day = {e["query"]: e["peak_per_day"] / per_cluster[e["cluster"]] for e in est}
            eval_node_day = sum((e["eval_s_per_day"] or 0) / per_cluster[e["cluster"]] for e in est) / len(per_cluster)
            # the full pull
            store = Store(cfg.path(cfg.store.path))
            client = connect(cfg)
            t = time.perf_counter()
            res = ingest_prometheus(store, cfg, HistoryWindow.ending(first_as_of, days), client=client)
            full_s = time.perf_counter() - t
            pulls = [r for r in client.records if r.outcome == "ok" and not r.name.startswith("doctor:")]
            points = sum(r.points for r in pulls)
            largest = max((r.peak_samples or 0) for r in client.records)
            bare_s = replay(pulls, server.url, cfg.source.prometheus.max_concurrency)
            # the next month's run on the same database
            client2 = connect(cfg)
            t = time.perf_counter()
            res2 = ingest_prometheus(store, cfg, HistoryWindow.ending(AS_OF, days), client=client2)
            month_s = time.perf_counter() - t
            month_days = pulled_days([r for r in client2.records if r.outcome == "ok" and not r.name.startswith("doctor:")])
        finally:
            server.stop()
    # extrapolation: pool queries run per cluster, so the server reads per node and holds per
    # cluster; the handbook's 10,800 nodes in clusters of 1,000
    full_read = read_node_day * HANDBOOK_NODES * days
    full_cpu_s = eval_node_day * HANDBOOK_NODES * days
    budget = MAX_SAMPLES * cfg.source.prometheus.samples_budget_pct / 100
    default_budget = 50_000_000 * cfg.source.prometheus.samples_budget_pct / 100
    heaviest = max(peak_node_day, key=peak_node_day.get)
    req_per_query = math.ceil(peak_node_day[heaviest] * NODES_PER_CLUSTER * days / default_budget)
    conc = cfg.source.prometheus.max_concurrency
    out = {
        "nodes": n_nodes, "days": days, "scrape_s": scrape_s, "points": points, "rows": res.rows,
        "full_pull_s": round(full_s, 2), "points_per_s": round(points / full_s), "bare_http_s": round(bare_s, 2),
        "limit_points_per_s": round(points / bare_s), "fraction_of_limit": round(bare_s / full_s, 2),
        "requests": len(pulls), "largest_request_peak_samples": largest, "query_max_samples": MAX_SAMPLES,
        "samples_read_per_node_day": round(read_node_day), "samples_read_per_node_month": round(read_node_day * MONTH),
        "server_eval_s_per_node_day": round(eval_node_day, 6),
        "monthly_pull_s": round(month_s, 2), "monthly_pull_days": round(month_days, 2), "monthly_rows": res2.rows,
        "handbook_full_pull_samples_read": round(full_read), "handbook_full_pull_server_cpu_s": round(full_cpu_s),
        "handbook_full_pull_wall_s_at_concurrency": round(full_cpu_s / conc),
        "handbook_monthly_pull_wall_s_at_concurrency": round(full_cpu_s / conc * MONTH / days),
        "handbook_heaviest_query": heaviest, "handbook_requests_per_cluster_for_heaviest": req_per_query,
    }
    print(f"server cost: a pool query reads {read_node_day:,.0f} samples per node per day "
          f"({read_node_day * MONTH:,.0f} per node per month, all pool queries together); evaluation "
          f"{eval_node_day * 1000:.2f} ms per node per day")
    print(f"full pull ({days} days): {full_s:.1f} s, {len(pulls)} requests, {points:,} points, {points / full_s:,.0f} points/s; "
          f"largest request held {largest:,} samples (query.max-samples {MAX_SAMPLES:,}, budget {budget:,.0f})")
    print(f"baseline, same requests from a bare HTTP client: {bare_s:.1f} s, {points / bare_s:,.0f} points/s -> capplan "
          f"reaches {bare_s / full_s:.2f} of it (target 0.8)")
    print(f"monthly pull: {month_s:.1f} s, reads {month_days:.1f} days (target <= 35), {res2.rows:,} rows; "
          f"ratio to the full pull {month_s / full_s:.2f}")
    print(f"{HANDBOOK_NODES:,} nodes (clusters of {NODES_PER_CLUSTER:,}): the full pull reads {full_read / 1e9:.1f}G samples, "
          f"{full_cpu_s / 3600:.1f} h of server evaluation (this machine's speed) -> about {full_cpu_s / conc / 3600:.1f} h "
          f"at {conc} concurrent queries, the monthly pull about {full_cpu_s / conc * MONTH / days / 3600:.1f} h; "
          f"{heaviest} needs {req_per_query} request(s) per cluster under the default query.max-samples (50M, 50% budget)")
    print("what limits it: the server's evaluation of the 5-minute peak subqueries with their joins (CPU, linear in "
          "nodes x days); transfer and DuckDB writes are small because pools are aggregated on the server")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
