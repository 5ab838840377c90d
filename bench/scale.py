"""Scale benchmark: the monthly job at the handbook's estate size, stage by stage.

Figures, not a pass/fail test. For each fleet size (default 1,000, 3,000 and 10,800
nodes; ``--quick``: 200, 400 and 800) it runs the monthly job itself
(``pipelines.jobs.monthly.monthly_job`` under the run lifecycle, as ``capplan run`` does,
without Prefect) on the demo fleet (180 days hourly) in a fresh folder, and reads its step
timings:

* ingest: generating and bulk-loading node-level samples into DuckDB,
* aggregate: pool series from node samples (SQL in DuckDB),
* forecast: daily-peak forecasts with model choice by backtest (all cores),
* plan: headroom, triggers, sizing and costs,
* report: HTML rendering (and, with Chromium installed, the time to open it).

It prints wall seconds, peak memory (this process and its children), rows or series per
second, the growth exponent of each stage in the number of nodes (slope of log time
against log nodes), and, in the same process, the handbook's reference (default Prophet
per series, sequentially) on a subset of series, extrapolated to all of them. The last
line is one JSON object.

    python bench/scale.py [--nodes 10800] [--quick]
"""

from __future__ import annotations

import argparse
import os
import datetime as dt
import json
import logging
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
for _n in ("prophet", "cmdstanpy"):
    logging.getLogger(_n).setLevel(logging.ERROR)

from pipelines.jobs import RunContext, Steps, execute  # noqa: E402
from pipelines.jobs.monthly import monthly_job  # noqa: E402
from pipelines.testing.site import demo_site  # noqa: E402

AS_OF = dt.date(2026, 11, 27)


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


class MemoryWatch:
    """Peak of the summed RSS of this process and all its descendants (process pool,
    Dask workers), sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.25):
        import psutil

        self.proc, self.every, self.peak_mb = psutil.Process(), every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> float:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_mb = max(self.peak_mb, self._total())

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def open_in_chromium(path: Path) -> float | None:
    chromium = shutil.which("chromium")
    if not chromium:
        return None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--dump-dom"]

    def run(target: str) -> float:
        with tempfile.TemporaryDirectory() as prof:
            t = time.perf_counter()
            subprocess.run([chromium, *flags, f"--user-data-dir={prof}", target], capture_output=True, timeout=300)
            return time.perf_counter() - t

    blank = Path(tempfile.mkdtemp()) / "blank.html"
    blank.write_text("<html><body>x</body></html>")
    base = min(run(blank.as_uri()) for _ in range(2))
    return max(0.0, min(run(path.as_uri()) for _ in range(2)) - base)


def one_size(nodes: int, folder: Path, fan_out=None) -> dict:
    """The monthly job itself (the same code as `capplan run`), timed step by step;
    ``fan_out``: the forecast fan-out (default: the local process pool)."""
    clusters = min(100, max(4, round(nodes / 1000)))
    ctx = RunContext.create(demo_site(folder, nodes=nodes, clusters=clusters, as_of=AS_OF))
    steps = Steps(fan_out=fan_out)
    with MemoryWatch() as mem:
        result = execute(ctx, monthly_job, steps)
    t = steps.timings
    rows = result.summary["ingest"]["rows"]
    out = {"nodes": nodes, "ingest_s": t["ingest_history_s"], "ingest_rows_per_s": rows / t["ingest_history_s"],
           "aggregate_s": t["load_history_s"], "aggregate_rows_per_s": rows / t["load_history_s"],
           "forecast_s": t["forecast_demand_s"], "peaks_s": t["find_unexplained_peaks_s"], "track_s": t["score_past_plans_s"],
           "plan_s": t["plan_capacity_s"], "report_s": t["render_report_s"]}
    out["series"] = int(ctx.store.table("forecasts", result.run_id)["series_id"].nunique())
    out["forecast_series_per_s"] = out["series"] / out["forecast_s"]
    page = result.files["report"]
    out["report_mb"] = page.stat().st_size / 2**20
    out["run_from_duckdb_s"] = sum(out[k] for k in ("aggregate_s", "forecast_s", "peaks_s", "track_s", "plan_s", "report_s"))
    out["browser_open_s"] = open_in_chromium(page)
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_all_mb"] = mem.peak_mb
    out["_history"] = ctx.store.pool_samples(*ctx.window)
    return out


def reference(history: pd.DataFrame, n_series: int, total_series: int) -> dict:
    """The handbook's reference: default Prophet (yearly on) per hourly series, sequentially."""
    from prophet import Prophet

    keys = history[history.kind != "capacity"].groupby(["cluster", "pool", "resource", "kind"]).size().index[:n_series]
    t = time.perf_counter()
    for key in keys:
        g = history.set_index(["cluster", "pool", "resource", "kind"]).loc[key]
        m = Prophet(yearly_seasonality=True)
        m.fit(pd.DataFrame({"ds": g["ts"].dt.tz_localize(None).to_numpy(), "y": g["value"].to_numpy()}))
        m.predict(m.make_future_dataframe(periods=180 * 24, freq="h", include_history=False))
    per_series = (time.perf_counter() - t) / len(keys)
    return {"reference_s_per_series": per_series, "reference_total_s_est": per_series * total_series, "reference_series_timed": len(keys)}


def per_series_cost(history: pd.DataFrame, n_series: int, reference_s: float) -> dict:
    """The forecast stage's own work at the monthly job's shape, on one core: choice,
    calibration and forecast of ``n_series`` pool series (daily peaks of the 180-day
    window, 180-day horizon, ``forecast_panel(workers=1)``), CPU seconds per series; and
    the handbook's reference loop (``reference_s`` per series, timed in this process) over it."""
    from forecasting.engine import forecast_panel

    keys = history[history.kind != "capacity"].groupby(["cluster", "pool", "resource", "kind"]).size().index[:n_series]
    h = history.set_index(["cluster", "pool", "resource", "kind"])
    jobs = [("/".join(k), h.loc[k][["ts", "value"]].reset_index(drop=True), []) for k in keys]
    forecast_panel(jobs[:2], 180, workers=1)  # imports and compiled code loaded (see docs/PERFORMANCE.md, cold start)
    t = time.process_time()
    res = forecast_panel(jobs, 180, workers=1)
    cpu = (time.process_time() - t) / len(jobs)
    failed = sum(isinstance(r, Exception) for r in res.values())
    return {"engine_cpu_s_per_series": cpu, "engine_series_timed": len(jobs), "engine_failed": failed,
            "engine_ratio_vs_reference": reference_s / cpu}


def fan_out_at(history: pd.DataFrame, n_series: int, fan_out) -> dict:
    """The forecast stage's fan-out on ``n_series`` pool series (the run's own, repeated
    under new ids until there are enough: the size of a larger fleet's stage, e.g. 2,310
    series for 108,000 nodes in 100 clusters), requests sent with their usage as the
    monthly job does. Wall seconds and peak RSS of all processes."""
    keys = list(history[history.kind != "capacity"].groupby(["cluster", "pool", "resource", "kind"]).size().index)
    h = history.set_index(["cluster", "pool", "resource", "kind"])
    frames = {k: h.loc[k][["ts", "value"]].reset_index(drop=True) for k in keys}
    jobs = []
    for i in range(int(np.ceil(n_series / len(keys)))):
        for (c, p, r, kind) in keys:
            sid = f"copy{i}/{c}/{p}/{r}/{kind}"
            jobs.append((sid, frames[(c, p, r, kind)], [], f"copy{i}/{c}/{p}/{r}/usage" if kind == "requests" else None))
    jobs = jobs[:n_series]
    with MemoryWatch() as mem:
        t = time.perf_counter()
        res = fan_out(jobs, 180, "auto", 80.0, None)
        wall = time.perf_counter() - t
    return {"fanout_series": len(jobs), "fanout_s": wall, "fanout_peak_rss_all_mb": mem.peak_mb,
            "fanout_failed": sum(isinstance(r, Exception) for r in res.values())}


def exponent(sizes: list[int], times: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(times, 1e-6)), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description="scale benchmark of the monthly job")
    ap.add_argument("--nodes", type=int, default=10800, help="the largest fleet")
    ap.add_argument("--quick", action="store_true", help="200, 400 and 800 nodes")
    ap.add_argument("--sizes", default="", help="comma-separated fleet sizes instead of the defaults")
    ap.add_argument("--fanout-series", type=int, default=0,
                    help="also time the forecast fan-out on this many pool series (2310: a 108,000-node fleet's)")
    ap.add_argument("--dask", action="store_true",
                    help="forecast on a local Dask cluster (one single-threaded worker per core) instead of the process pool")
    ap.add_argument("--reference-series", type=int, default=4)
    ap.add_argument("--engine-series", type=int, default=60, help="pool series timed on one core for the per-series cost")
    args = ap.parse_args()
    sizes = [200, 400, 800] if args.quick else sorted({1000, 3000, args.nodes})
    if args.sizes:
        sizes = sorted({int(x) for x in args.sizes.split(",")})
    fan_out, cluster = None, None
    if args.dask:
        from distributed import LocalCluster

        from pipelines.orchestration.dask import dask_client_runner

        cluster = LocalCluster(n_workers=os.cpu_count(), threads_per_worker=1, processes=True, dashboard_address=None,
                               memory_limit="1.5GiB")
        fan_out = dask_client_runner(cluster.scheduler_address)
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("CAPPLAN_BENCH_DIR")) as tmp:
            r = one_size(n, Path(tmp), fan_out)
        results.append(r)
        print(f"{n:>6} nodes: ingest {r['ingest_s']:.1f}s ({r['ingest_rows_per_s']:,.0f} rows/s), aggregate {r['aggregate_s']:.1f}s, "
              f"forecast {r['forecast_s']:.1f}s ({r['series']} series, {r['forecast_series_per_s']:.1f}/s), unexplained peaks "
              f"{r['peaks_s']:.1f}s, plan {r['plan_s']:.1f}s, "
              f"report {r['report_s']:.1f}s ({r['report_mb']:.1f} MB, opens in {r['browser_open_s'] or float('nan'):.1f}s); "
              f"DuckDB->report {r['run_from_duckdb_s']:.1f}s; peak RSS {r['peak_rss_mb']:,.0f} MB (one process), "
              f"{r['peak_rss_all_mb']:,.0f} MB (all processes)", flush=True)
    biggest = results[-1]
    history = biggest.pop("_history")
    ref = reference(history, args.reference_series, biggest["series"])
    eng = per_series_cost(history, args.engine_series, ref["reference_s_per_series"])
    if args.fanout_series:
        from pipelines.jobs.stages import local_fan_out

        fan = fan_out_at(history, args.fanout_series, fan_out or local_fan_out())
        print(f"fan-out ({'dask' if args.dask else 'process pool'}) on {fan['fanout_series']} pool series: "
              f"{fan['fanout_s']:.1f} s, {fan['fanout_failed']} failed, peak RSS {fan['fanout_peak_rss_all_mb']:,.0f} MB (all processes)")
        eng.update(fan)
    del history
    if cluster is not None:
        cluster.close()
    for r in results:
        r.pop("_history", None)
    stages = ["ingest_s", "aggregate_s", "forecast_s", "plan_s", "report_s", "run_from_duckdb_s"]
    exps = {s.replace("_s", ""): round(exponent(sizes, [r[s] for r in results]), 2) for s in stages}
    print("growth exponents (time ~ nodes^k):", exps)
    print(f"reference (default Prophet, sequential, hourly): {ref['reference_s_per_series']:.1f} s/series -> "
          f"{ref['reference_total_s_est']:.0f} s for {biggest['series']} series; capplan forecast {biggest['forecast_s']:.0f} s")
    print(f"engine at the monthly job's shape (daily peaks, 180-day horizon, one core): {eng['engine_cpu_s_per_series']:.3f} "
          f"CPU s per series ({eng['engine_series_timed']} series, {eng['engine_failed']} failed; target <= 0.05); reference loop "
          f"{ref['reference_s_per_series']:.2f} s per series: {eng['engine_ratio_vs_reference']:.0f}x")
    print(json.dumps({
        "nodes": biggest["nodes"], "total_s": round(biggest["run_from_duckdb_s"], 1), "ingest_s": round(biggest["ingest_s"], 1),
        "forecast_s": round(biggest["forecast_s"], 1), "peak_rss_mb": round(biggest["peak_rss_mb"]),
        "peak_rss_all_mb": round(biggest["peak_rss_all_mb"]), "fan_out": "dask" if args.dask else "process pool", "exponent": exps["run_from_duckdb"],
        "exponents": exps, "report_mb": round(biggest["report_mb"], 2), "browser_open_s": biggest["browser_open_s"],
        "ratio_vs_reference": round(ref["reference_total_s_est"] / biggest["forecast_s"], 1), "series": biggest["series"],
        "engine_cpu_s_per_series": round(eng["engine_cpu_s_per_series"], 4),
        "engine_ratio_vs_reference": round(eng["engine_ratio_vs_reference"], 1),
        **{k: round(v, 1) for k, v in eng.items() if k.startswith("fanout_")},
    }))


if __name__ == "__main__":
    main()
