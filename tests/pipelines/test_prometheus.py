"""Ingest from a real Prometheus: backfilled history, compared with what was generated."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.prometheus import PrometheusError, Puller, Query, escape_label_value, ingest_prometheus, plan_chunks, render
from pipelines.io.store import Store

from ..conftest import AS_OF, write_config
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL, PrometheusServer, free_port, make_fleet, write_openmetrics

needs_prometheus = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed (make test installs it as root)")


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prom")
    fleet = make_fleet(AS_OF)
    write_openmetrics(fleet, folder / "data.om")
    server = PrometheusServer(folder, folder / "data.om")
    yield fleet, server
    server.stop()


def window(cfg) -> HistoryWindow:
    """The history window a run on ``cfg`` reads."""
    return HistoryWindow.ending(cfg.as_of, cfg.forecasting.history_days)


def prom_config(folder: Path, url: str, extra: str = "") -> Path:
    # rate_window 1h: Debian's Prometheus 2.x closes range windows at both ends, so [1h]
    # holds exactly the two hourly samples around each step and rate() is exact.
    cfg = write_config(folder)
    text = cfg.read_text().replace("kind: demo                # demo | prometheus | file", "kind: prometheus")
    text = text.replace("    url: http://127.0.0.1:9090\n    step: 1h", f"    url: {url}\n    step: 1h\n    scrape_interval: 1h\n    rate_window: 1h\n    retries: 1\n    timeout_s: 5{extra}")
    cfg.write_text(text)
    return cfg


def test_chunks_fit_the_point_limit_without_overlap():
    chunks = plan_chunks(0, 60 * 86400, 300, 11000)
    assert len(chunks) == 2
    assert chunks[0] == (0, 10999 * 300) and chunks[1][0] == 11000 * 300
    assert chunks[-1][1] == 60 * 86400 - 300
    points = sum((b - a) // 300 + 1 for a, b in chunks)
    assert points == 60 * 86400 // 300  # every step exactly once


def test_label_values_cannot_inject_promql(tmp_path):
    import re

    assert escape_label_value('a"}) or vector(1) #') == 'a\\"}) or vector(1) #'
    cfg = load_config(prom_config(tmp_path, "http://127.0.0.1:1"))
    hostile = 'prod"} or up{x="'
    src = cfg.source.prometheus.model_copy(update={"clusters": [hostile, "b\\c"]})
    out = render("up{<<selector>>}", src)
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', out)
    assert len(literals) == 1 and out == f'up{{cluster=~"{literals[0]}"}}'  # one string, nothing outside it
    regex = re.sub(r"\\(.)", lambda m: m.group(1), literals[0])  # PromQL string unescaping
    assert re.fullmatch(regex, hostile) and re.fullmatch(regex, "b\\c") and not re.fullmatch(regex, "prod")


@needs_prometheus
def test_ingest_matches_what_was_generated(prom, tmp_path):
    fleet, server = prom
    cfg = load_config(prom_config(tmp_path, server.url))
    store = Store(cfg.path(cfg.store.path))
    res = ingest_prometheus(store, cfg, window(cfg))
    assert len(res.inventory) == len(fleet.nodes)
    inv = res.inventory.set_index("node").sort_index()
    exp = fleet.nodes.set_index("node").sort_index()
    assert (inv["pool"] == exp["pool"]).all() and (inv["zone"] == exp["zone"]).all()
    assert np.allclose(inv["cpu_cores"], exp["cpu_cores"]) and np.allclose(inv["memory_bytes"], exp["memory_bytes"])
    pools = store.pool_samples(*[pd.Timestamp(x) for x in (pd.Timestamp(AS_OF, tz="UTC") - pd.Timedelta(days=180), pd.Timestamp(AS_OF, tz="UTC"))])
    for cluster in ("east", "west"):
        for pool in ("compute", "data"):
            got = pools[(pools.cluster == cluster) & (pools.pool == pool)]
            for resource, kind, what, first in (("cpu", "usage", "cpu_usage", 1), ("memory", "usage", "mem_usage", 0),
                                                ("cpu", "requests", "cpu_requests", 0), ("memory", "requests", "mem_requests", 0),
                                                ("pods", "requests", "pods", 0)):
                g = got[(got.resource == resource) & (got.kind == kind)].sort_values("ts")
                expected = fleet.pool_expected(cluster, pool, what, first)
                assert len(g) == len(expected), (cluster, pool, what)
                # rate() over the restarted counter limits its extrapolation near zero for one
                # step (Prometheus semantics), so CPU usage agrees to 0.1%; a missed reset would
                # be off by the counter's whole history.
                rel = 1e-3 if what == "cpu_usage" else 1e-9
                assert g["value"].sum() == pytest.approx(expected.sum(), rel=rel)
                assert g["value"].max() == pytest.approx(expected.max(), rel=rel)
                assert (g["value"] >= 0).all()
    sp = res.storage_pools.set_index("cluster")
    assert sp.loc["east", "capacity"] == fleet.storage_capacity["east"]
    con = duckdb.connect(str(store.path), read_only=True)
    dupes = con.execute("SELECT count(*) FROM (SELECT series_id, ts FROM samples GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert dupes == 0
    assert con.execute("SELECT count(*) FROM series WHERE level = 'node'").fetchall()[0][0] == 2 * len(fleet.nodes)
    con.close()
    # a re-run pulls nothing already stored and changes nothing
    before = store.pool_samples(pd.Timestamp(AS_OF, tz="UTC") - pd.Timedelta(days=180), pd.Timestamp(AS_OF, tz="UTC"))
    again = ingest_prometheus(store, cfg, window(cfg))
    assert again.rows == 0
    after = store.pool_samples(pd.Timestamp(AS_OF, tz="UTC") - pd.Timedelta(days=180), pd.Timestamp(AS_OF, tz="UTC"))
    pd.testing.assert_frame_equal(before, after)


@needs_prometheus
def test_five_minute_step_is_chunked_without_duplicates_or_holes(prom, tmp_path):
    fleet, server = prom
    cfg = load_config(prom_config(tmp_path, server.url))
    puller = Puller(cfg.source.prometheus)
    end = pd.Timestamp(AS_OF, tz="UTC").timestamp()
    start = end - 60 * 86400
    res = puller.range(Query("clock", "vector(time())", None, "raw"), start, end, 300)
    ts = np.array([float(t) for r in res for t, _ in r["values"]])
    values = np.array([float(v) for r in res for _, v in r["values"]])
    assert len(ts) == 60 * 86400 // 300 and len(np.unique(ts)) == len(ts)
    assert np.all(np.diff(np.sort(ts)) == 300) and np.allclose(ts, values)


@needs_prometheus
def test_bad_promql_in_a_user_catalog_names_the_query(prom, tmp_path):
    fleet, server = prom
    (tmp_path / "mine.yaml").write_text("metrics:\n  - {name: my_broken, level: pool, resource: cpu, kind: usage, expr: 'sum by (cluster, pool) (rate(foo[5m]'}\n")
    cfg = load_config(prom_config(tmp_path, server.url, "\n    catalog: mine.yaml"))
    store = Store(cfg.path(cfg.store.path))
    with pytest.raises(PrometheusError, match=r"query 'my_broken' \(clusters: all\) failed with HTTP 400"):
        ingest_prometheus(store, cfg, window(cfg))


def test_server_down_is_retried_then_named(tmp_path):
    cfg = load_config(prom_config(tmp_path, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(PrometheusError, match=r"query '\w+' \(clusters: all\) failed after 2 attempt\(s\).*ConnectionError"):
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, window(cfg))


class FlakyProxy:
    """A real HTTP proxy in front of Prometheus that fails chosen requests."""

    def __init__(self, target: str, fail: str, times: int):
        import urllib.request

        outer = self
        self.calls = 0

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.calls += 1
                if outer.calls <= times:
                    if fail == "500":
                        self.send_response(500)
                        self.end_headers()
                        self.wfile.write(b'{"status":"error","error":"internal"}')
                        return
                    if fail == "slow":
                        import time

                        time.sleep(3)
                    if fail == "truncated":
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":')
                        return
                with urllib.request.urlopen(target + self.path, timeout=30) as r:
                    body = r.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@needs_prometheus
@pytest.mark.parametrize("fail", ["500", "truncated"])
def test_transient_failures_are_retried(prom, tmp_path, fail):
    fleet, server = prom
    proxy = FlakyProxy(server.url, fail, times=1)
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url))
        puller = Puller(cfg.source.prometheus)
        end = pd.Timestamp(AS_OF, tz="UTC").timestamp()
        res = puller.range(Query("q", "sum(kube_node_labels)", None, "raw"), end - 86400, end, 3600)
        assert proxy.calls == 2 and len(res[0]["values"]) == 24
    finally:
        proxy.stop()


@needs_prometheus
def test_slow_server_times_out_then_is_reported(prom, tmp_path):
    fleet, server = prom
    proxy = FlakyProxy(server.url, "slow", times=10)
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url).as_posix())
        cfg.source.prometheus.timeout_s = 1
        puller = Puller(cfg.source.prometheus)
        with pytest.raises(PrometheusError, match=r"query 'q' \(clusters: all\) failed after 2 attempt\(s\).*(Timeout|timed out)"):
            puller.range(Query("q", "sum(kube_node_labels)", None, "raw"), 0, 3600 * 24, 3600)
    finally:
        proxy.stop()


@needs_prometheus
def test_monthly_run_fails_cleanly_then_a_rerun_completes(prom, tmp_path):
    from pipelines.jobs import RunRequest, run

    fleet, server = prom
    down = prom_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PrometheusError):
        run(RunRequest(config_path=str(down)))
    db = tmp_path / "data" / "capplan.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    runs = con.execute("SELECT run_id, status, error FROM runs").fetchall()
    assert len(runs) == 1 and runs[0][1] == "failed" and "failed after" in runs[0][2]
    for table in ("forecasts", "plans", "decisions", "inventory"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == 0
    con.close()
    assert not (tmp_path / "reports" / "2026-11").exists()
    up = prom_config(tmp_path, server.url)
    result = run(RunRequest(config_path=str(up))).as_dict()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs WHERE run_id = ?", [result["run_id"]]).fetchall()[0][0] == "succeeded"
    assert con.execute("SELECT count(DISTINCT pool) FROM decisions WHERE run_id = ?", [result["run_id"]]).fetchall()[0][0] == 3
    assert Path(result["files"]["report"]).exists()
