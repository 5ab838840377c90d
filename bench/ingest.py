"""Ingest benchmark: capplan's Prometheus pull, raw series against the mixins' recorded
series and against capplan's own pool rules, at three fleet sizes, measured in one process
and extrapolated to the handbook's 10,800 nodes.

For each size it builds a fleet shaped like real exporters and ServiceMonitors
(``pipelines.testing.kubefleet``: an EKS cluster on kube-prometheus-stack with two HA
replicas and PVCs, a Karpenter cluster on kube-prometheus with Rook/Ceph), scraped every
minute, with kube-prometheus-stack's recording rules evaluated over the whole history by
``promtool tsdb create-blocks-from rules`` (as a stack running for months has them), then
capplan's pool rules (``capplan rules``, :mod:`pipelines.io.sources.pool_rules`) evaluated
over those in a third pass, served by Debian's Prometheus 2.42 with ``--query.max-samples``
lowered to 5,000,000, and measures for the raw path (``recorded: never``), the recorded path
(``recorded: auto``, ``pool_rules: never``) and the pool-rules path (both ``auto``):

* samples the server reads per node and day of history (the doctor's one-day probes of every
  pool and storage query with ``stats=all``: Prometheus 2.42 does not count the samples inside
  a pool query's peak subquery in the pull's own stats, the probes evaluate it unwrapped);
* server seconds per node and day (``timings.evalTotalTime`` of every request of the pull);
* wall time of the pull into an empty DuckDB, and of the next day's pull on the same database;
* the pool-day values of each path against the raw path's (daily peak and mean).

It fits server seconds a day against nodes (one line per path, R squared), and extrapolates
the full 180-day and the monthly (30-day) pull to 10,800 nodes in clusters of 1,000: the
line's slope per node plus its intercept (per-query overhead, per cluster) once per cluster;
the pool-rules path's pool and storage queries per pool instead (see ``handbook_pool_rules_s``).
The baseline in the same process: the same HTTP requests replayed by a bare concurrent client
that reads the bytes and nothing else. Thanos' downsampled path is not measured (no Thanos
here: docs/PERFORMANCE.md). The last line is one JSON object.

    python bench/ingest.py [--sizes 8,32,128] [--days 4] [--quick]
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

import duckdb
import numpy as np
import requests

from pipelines.cli_doctor import doctor_report
from pipelines.config import PrometheusSource, load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.catalog import VARIANTS
from pipelines.io.sources.prometheus import connect, ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.kubefleet import ClusterSpec, FleetSpec, PoolSpec
from pipelines.testing.promfixtures import AS_OF, prom_site
from pipelines.testing.promserver import PrometheusServer, backfill

HANDBOOK_NODES = 10_800
NODES_PER_CLUSTER = 1_000  # the handbook: clusters of about 1,000 nodes
FULL_DAYS, MONTH_DAYS = 180, 30
MAX_SAMPLES = 5_000_000
PATHS = ("raw", "recorded", "pool_rules")
#: config of each path (under source.prometheus)
PATH_CONFIG = {"raw": "    recorded: never\n", "recorded": "    recorded: auto\n    pool_rules: never\n",
               "pool_rules": "    recorded: auto\n    pool_rules: auto\n"}
#: An assumption for the per-pool extrapolation: node pools per cluster of 1,000 nodes (the
#: fixture has two per cluster; a large cluster runs a handful to a few dozen).
POOLS_PER_CLUSTER = 20
#: targets of issue 19
TARGETS = {"samples_per_node_day_recorded": 2_000, "full_pull_server_s_10800": 3_600, "monthly_pull_server_s_10800": 300,
           "linear_r2": 0.98, "recorded_vs_raw_max_rel_err": 0.01, "samples_per_node_day_pool_rules": 2_000,
           "full_pull_server_s_10800_pool_rules": 3_600, "monthly_pull_server_s_10800_pool_rules": 300}


def fleet_spec(nodes: int, days: int, scrape_s: int = 60) -> FleetSpec:
    """Two clusters, four pools of ``nodes / 4``; the mixins' rules and capplan's pool rules
    evaluated from the first day."""
    q = max(1, nodes // 4)
    return FleetSpec(AS_OF, days, (
        ClusterSpec("east", "eks", "kps", (PoolSpec("ng-general", q, ("m6i.large",)), PoolSpec("ng-batch", q, ("c6i.large",), "yes")),
                    replicas=2, ksm_rollout_day=days // 2, replace_node=True, reboot_node=True, pvcs=True, rules_since_day=0,
                    pool_rules_since_day=0),
        ClusterSpec("west", "karpenter", "kp", (PoolSpec("default", q, ("c6i.large", "m6i.large"), "mixed"),
                                               PoolSpec("system", q, ("r6i.large",))), ceph=True, rules_since_day=0,
                    pool_rules_since_day=0),
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


def daily(store: Store, window: HistoryWindow):
    h = store.pool_samples(*window)
    return h.assign(day=h["ts"].dt.floor("D")).groupby(["cluster", "pool", "resource", "kind", "day"])["value"].agg(["max", "mean"])


def measure_size(nodes: int, days: int, folder: Path) -> dict:
    """Backfill one fleet and pull it both ways; per path: probes, pulls, costs."""
    t = time.perf_counter()
    fleet, tsdb, samples = backfill(fleet_spec(nodes, days + 1), folder / "prom")
    server = PrometheusServer(folder / "prom", tsdb, max_samples=MAX_SAMPLES)
    n_nodes = len(fleet.inventory())
    per_cluster = {c: int(n) for c, n in fleet.inventory().groupby("cluster").size().items()}
    print(f"fixture: {n_nodes} nodes in 2 clusters, {days + 1} days scraped every minute with the recording rules, "
          f"{samples / 1e6:.1f}M samples; backfill and start {time.perf_counter() - t:.0f} s", flush=True)
    out: dict = {"nodes": n_nodes, "fixture_samples": samples, "backfill_s": round(time.perf_counter() - t, 1)}
    first_as_of = AS_OF - dt.timedelta(days=1)
    window = HistoryWindow.ending(first_as_of, days - 1)  # inside the data: the day before as_of is the "next month"
    try:
        for path in PATHS:
            cfg_path = prom_site(folder / f"site-{path}", server.url, 14,
                                 f"    timeout_s: 120\n    retries: 3\n{PATH_CONFIG[path]}    on_missing_data: warn\n"
                                 "    budget: {max_concurrency: 1}\n")  # server seconds without queries contending for the CPU
            cfg = load_config(cfg_path)
            rep = doctor_report(cfg_path, first_as_of, cost=True)
            est = best_estimates(rep["estimates"])
            read_node_day = sum(e["total_per_day"] for e in est) / n_nodes
            peak_node_day = {e["query"]: e["peak_per_day"] / per_cluster[e["cluster"]] for e in est}
            store = Store(cfg.path(cfg.store.path))
            client = connect(cfg)
            t = time.perf_counter()
            res = ingest_prometheus(store, cfg, window, client=client)
            wall = time.perf_counter() - t
            pulls = [r for r in client.records if r.outcome == "ok" and not r.name.startswith("doctor:")]
            bare = replay(pulls, server.url, 1)
            client2 = connect(cfg)
            t = time.perf_counter()
            res2 = ingest_prometheus(store, cfg, HistoryWindow.ending(AS_OF, days - 1), client=client2)
            month_wall = time.perf_counter() - t
            month_pulls = [r for r in client2.records if r.outcome == "ok" and not r.name.startswith("doctor:")]
            pool_s = pool_server_s(store)
            out[path] = {
                "samples_per_node_day": read_node_day, "peak_node_day": peak_node_day,
                "server_s_per_day": res.cost["server_s"] / window.days,
                "pool_server_s_per_day": pool_s / window.days,
                "other_server_s_per_day": (res.cost["server_s"] - pool_s) / window.days,
                "server_s_per_node_day": res.cost["server_s"] / window.days / n_nodes,
                "wall_s": wall, "wall_s_per_node_day": wall / window.days / n_nodes, "bare_http_s": bare,
                "points": sum(r.points for r in pulls), "rows": res.rows, "requests": len(pulls),
                "largest_peak": max((r.peak_samples or 0) for r in client.records),
                "next_day_wall_s": month_wall, "next_day_days": pulled_days(month_pulls), "next_day_rows": res2.rows,
                "daily": daily(store, window), "window_days": window.days}
            print(f"  {path:9s} samples/node-day {read_node_day:9,.0f}  server {res.cost['server_s']:7.1f} s "
                  f"({out[path]['server_s_per_node_day'] * 1000:.2f} ms/node-day)  wall {wall:6.1f} s  "
                  f"(bare HTTP {bare:.1f} s)  {len(pulls)} requests", flush=True)
    finally:
        server.stop()
    out["pools"] = int(fleet.inventory().groupby(["cluster", "pool"]).ngroups)
    raw = out["raw"]["daily"]
    for path, prefix in (("recorded", ""), ("pool_rules", "pool_rules_")):
        err = (out[path]["daily"].reindex(raw.index) / raw - 1).abs()
        out[f"{prefix}rel_err_max"] = float(err["max"].max())
        out[f"{prefix}rel_err_mean"] = float(err["mean"].max())
        out[f"{prefix}rel_err_pool_days_over_1pct"] = int((err > 0.01).any(axis=1).sum())
    out["pool_days"] = len(raw)
    return out


def best_estimates(estimates: list[dict]) -> list[dict]:
    """The doctor's probes of the variant the pull reads: per (group, cluster) the most
    preferred variant probed (pool rules, then recorded, then raw)."""
    rank = {v: i for i, v in enumerate(VARIANTS)}
    best: dict[tuple, dict] = {}
    for e in estimates:
        key = (e["group"], e["cluster"])
        if e["total_per_day"] and (key not in best or rank[e["variant"]] < rank[best[key]["variant"]]):
            best[key] = e
    return list(best.values())


def pool_server_s(store: Store) -> float:
    """Server seconds of the pull's pool and storage queries (query_costs)."""
    with duckdb.connect(str(store.path), read_only=True) as con:
        return float(con.execute("SELECT coalesce(sum(server_s), 0) FROM query_costs WHERE query_group LIKE 'pool%' "
                                 "OR query_group LIKE 'storage%'").fetchall()[0][0])


def fit(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Least-squares line ``y = a + b x``: (a, b, R squared)."""
    b, a = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    pred = a + b * np.asarray(x, float)
    ss_res = float(((np.asarray(y) - pred) ** 2).sum())
    ss_tot = float(((np.asarray(y) - np.mean(y)) ** 2).sum())
    return float(a), float(b), 1.0 - ss_res / ss_tot if ss_tot else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description="Prometheus ingest benchmark: raw and recorded series at three fleet sizes")
    ap.add_argument("--sizes", default="8,32,128", help="nodes per fleet (4 pools in 2 clusters)")
    ap.add_argument("--days", type=int, default=4, help="days of history each fleet holds (the pull reads days - 1)")
    ap.add_argument("--quick", action="store_true", help="8, 16 and 32 nodes, 3 days (a few minutes)")
    args = ap.parse_args()
    sizes, days = ([8, 16, 32], 3) if args.quick else ([int(s) for s in args.sizes.split(",")], args.days)
    started = time.perf_counter()
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure_size(n, days, Path(tmp)))
    nodes = [r["nodes"] for r in results]
    lines = {p: fit(nodes, [r[p]["server_s_per_day"] for r in results]) for p in PATHS}
    big = results[-1]
    clusters = math.ceil(HANDBOOK_NODES / NODES_PER_CLUSTER)

    def handbook_s(path: str, d: int) -> float:
        a, b, _ = lines[path]
        # a: per-query overhead of the fixture's 2 clusters, paid once per cluster
        return (max(a, 0.0) / 2 * clusters + b * HANDBOOK_NODES) * d

    drill = fit(nodes, [r["pool_rules"]["other_server_s_per_day"] for r in results])
    per_pool = float(np.mean([r["pool_rules"]["pool_server_s_per_day"] / r["pools"] for r in results]))

    def handbook_pool_rules_s(d: int) -> float:
        # Per pool, not per node: the pool-rules path's pool and storage queries read one series
        # per pool whatever its nodes, so their server seconds a day, divided by the fixture's
        # pools (the storage queries counted in, a conservative share), are paid once per pool:
        # clusters x POOLS_PER_CLUSTER. The drill-down (node and namespace series, hourly) still
        # reads a series per node: its own line against nodes, as handbook_s.
        a, b, _ = drill
        return (per_pool * clusters * POOLS_PER_CLUSTER + max(a, 0.0) / 2 * clusters + b * HANDBOOK_NODES) * d

    print()
    print("| path | nodes | samples per node-day | server ms per node-day | wall s | pull wall ms per node-day |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for p in PATHS:
            m = r[p]
            print(f"| {p} | {r['nodes']} | {m['samples_per_node_day']:,.0f} | {m['server_s_per_node_day'] * 1000:.2f} | "
                  f"{m['wall_s']:.1f} | {m['wall_s_per_node_day'] * 1000:.1f} |")
    for p in PATHS:
        a, b, r2 = lines[p]
        print(f"{p}: server seconds a day = {a:.3f} + {b * 1000:.3f} ms x nodes (R squared {r2:.3f}); "
              f"{HANDBOOK_NODES:,} nodes: full {FULL_DAYS}-day pull {handbook_s(p, FULL_DAYS):,.0f} s, "
              f"monthly {handbook_s(p, MONTH_DAYS):,.0f} s of server time")
    pr_s = handbook_pool_rules_s(FULL_DAYS)
    print(f"pool_rules per pool: {per_pool * 1000:.1f} ms of server time a day for the pool and storage queries; "
          f"drill-down {drill[0]:.3f} + {drill[1] * 1000:.3f} ms x nodes; {HANDBOOK_NODES:,} nodes in "
          f"{clusters} clusters of {POOLS_PER_CLUSTER} pools: full {FULL_DAYS}-day pull {pr_s:,.0f} s, monthly "
          f"{handbook_pool_rules_s(MONTH_DAYS):,.0f} s of server time")
    raw_s, rec_s = handbook_s("raw", FULL_DAYS), handbook_s("recorded", FULL_DAYS)
    print(f"recorded against raw, in the same process: {big['raw']['samples_per_node_day'] / big['recorded']['samples_per_node_day']:.1f}x "
          f"fewer samples, {raw_s / rec_s:.1f}x less server time at {HANDBOOK_NODES:,} nodes; pool-days within 1%: "
          f"{big['pool_days'] - big['rel_err_pool_days_over_1pct']} of {big['pool_days']} (largest difference: daily peak "
          f"{big['rel_err_max'] * 100:.2f}%, daily mean {big['rel_err_mean'] * 100:.2f}%)")
    rec = big["recorded"]
    conc = PrometheusSource().max_concurrency
    heaviest = max(rec["peak_node_day"], key=rec["peak_node_day"].get)
    default_budget = 50_000_000 * 0.5
    req_per_query = math.ceil(rec["peak_node_day"][heaviest] * NODES_PER_CLUSTER * FULL_DAYS / default_budget)
    out = {
        "sizes": nodes, "days": big["recorded"]["window_days"], "scrape_s": 60,
        # the lines of the per-node paths (the pool-rules path is nearly flat against nodes)
        "linear_r2": round(min(lines[p][2] for p in ("raw", "recorded")), 4),
        "linear_r2_by_path": {p: round(lines[p][2], 4) for p in PATHS},
        "samples_per_node_day_raw": round(big["raw"]["samples_per_node_day"]),
        "samples_per_node_day_recorded": round(rec["samples_per_node_day"]),
        "server_s_per_node_day_raw": round(big["raw"]["server_s_per_node_day"], 6),
        "server_s_per_node_day_recorded": round(rec["server_s_per_node_day"], 6),
        "recorded_vs_raw_max_rel_err": round(big["rel_err_max"], 5),
        "recorded_vs_raw_mean_rel_err": round(big["rel_err_mean"], 5),
        "full_pull_server_s_10800": round(rec_s), "monthly_pull_server_s_10800": round(handbook_s("recorded", MONTH_DAYS)),
        "full_pull_server_s_10800_raw": round(raw_s), "monthly_pull_server_s_10800_raw": round(handbook_s("raw", MONTH_DAYS)),
        "samples_per_node_day_pool_rules": round(big["pool_rules"]["samples_per_node_day"]),
        "server_s_per_node_day_pool_rules": round(big["pool_rules"]["server_s_per_node_day"], 6),
        "pool_rules_wall_s": round(big["pool_rules"]["wall_s"], 2),
        "pool_rules_vs_raw_max_rel_err": round(big["pool_rules_rel_err_max"], 5),
        "pool_rules_vs_raw_mean_rel_err": round(big["pool_rules_rel_err_mean"], 5),
        "pool_rules_pool_days_over_1pct": big["pool_rules_rel_err_pool_days_over_1pct"],
        "pool_rules_server_s_per_pool_day": round(per_pool, 6), "pools_per_cluster_assumed": POOLS_PER_CLUSTER,
        "full_pull_server_s_10800_pool_rules": round(pr_s),
        "monthly_pull_server_s_10800_pool_rules": round(handbook_pool_rules_s(MONTH_DAYS)),
        "targets": TARGETS,
        # the keys of the earlier benchmark, from the largest fleet's recorded pull
        "nodes": big["nodes"], "points": rec["points"], "rows": rec["rows"], "full_pull_s": round(rec["wall_s"], 2),
        "points_per_s": round(rec["points"] / rec["wall_s"]), "bare_http_s": round(rec["bare_http_s"], 2),
        "limit_points_per_s": round(rec["points"] / rec["bare_http_s"]),
        "fraction_of_limit": round(rec["bare_http_s"] / rec["wall_s"], 2), "requests": rec["requests"],
        "largest_request_peak_samples": rec["largest_peak"], "query_max_samples": MAX_SAMPLES,
        "samples_read_per_node_day": round(rec["samples_per_node_day"]),
        "samples_read_per_node_month": round(rec["samples_per_node_day"] * MONTH_DAYS),
        "server_eval_s_per_node_day": round(rec["server_s_per_node_day"], 6),
        "monthly_pull_s": round(rec["next_day_wall_s"], 2), "monthly_pull_days": round(rec["next_day_days"], 2),
        "monthly_rows": rec["next_day_rows"],
        "handbook_full_pull_samples_read": round(rec["samples_per_node_day"] * HANDBOOK_NODES * FULL_DAYS),
        "handbook_full_pull_server_cpu_s": round(rec_s),
        "handbook_full_pull_wall_s_at_concurrency": round(rec_s / conc),
        "handbook_monthly_pull_wall_s_at_concurrency": round(handbook_s("recorded", MONTH_DAYS) / conc),
        "handbook_heaviest_query": heaviest, "handbook_requests_per_cluster_for_heaviest": req_per_query,
        "benchmark_s": round(time.perf_counter() - started),
    }
    met = {k: (out[k] <= v if k != "linear_r2" else out[k] >= v) for k, v in TARGETS.items()}
    print("targets: " + ", ".join(f"{k} {out[k]} ({'met' if ok else 'not met'}: {'>=' if k == 'linear_r2' else '<='} {v})"
                                  for (k, v), ok in zip(TARGETS.items(), met.values())))
    print(f"benchmark took {out['benchmark_s']} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
