"""Prometheus faults beyond the ingest tests: DNS, TLS, 401/403, empty results, NaN/Inf,
series that vanish mid-window; interrupted runs; concurrent runs; idempotency."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.jobs import RunRequest, run
from pipelines.io.sources.prometheus import PrometheusError, Puller, Query, ingest_prometheus
from pipelines.io.store import Store, StoreBusy

from ..conftest import AS_OF, write_config
from ..pipelines.test_prometheus import prom_config, window

fault = pytest.mark.reliability(kind="fault")
rows_lost = pytest.mark.reliability(kind="rows_lost")
secret = pytest.mark.reliability(kind="secret")
TOKEN = "tok-9f8e7d6c5b4a-secret"


class FakeProm:
    """A tiny real HTTP server speaking the Prometheus query API, with chosen answers."""

    def __init__(self, answer):
        outer = self
        self.headers_seen: list[dict] = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.headers_seen.append(dict(self.headers))
                status, body = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def matrix(series: list[tuple[dict, list]]) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix",
                       "result": [{"metric": m, "values": v} for m, v in series]}})


def puller_for(tmp_path, url, extra=""):
    cfg = load_config(prom_config(tmp_path, url, extra))
    return Puller(cfg.source.prometheus), cfg


@fault
def test_dns_failure_is_named(tmp_path):
    p, _ = puller_for(tmp_path, "http://prometheus.invalid:9090")
    with pytest.raises(PrometheusError, match=r"query 'q' \(clusters: all\) failed after 2 attempt.*prometheus.invalid"):
        p.range(Query("q", "up", None, "raw"), 0, 7200, 3600)


@fault
def test_tls_failure_is_not_retried_and_says_what_to_do(tmp_path):
    fake = FakeProm(lambda path: (200, matrix([])))
    try:
        p, _ = puller_for(tmp_path, fake.url.replace("http://", "https://"))
        with pytest.raises(PrometheusError, match="TLS verification failed|ca_file|SSL"):
            p.range(Query("q", "up", None, "raw"), 0, 7200, 3600)
    finally:
        fake.stop()


@fault
@secret
@pytest.mark.parametrize("status", [401, 403])
def test_unauthorised_is_clear_and_the_token_never_leaks(tmp_path, monkeypatch, caplog, status):
    monkeypatch.setenv("CAPPLAN_PROM_TOKEN", TOKEN)
    fake = FakeProm(lambda path: (status, json.dumps({"status": "error", "error": f"denied for Bearer {TOKEN}"})))
    try:
        p, _ = puller_for(tmp_path, fake.url)
        with pytest.raises(PrometheusError) as exc:
            p.range(Query("q", "up", None, "raw"), 0, 7200, 3600)
        assert f"HTTP {status}" in str(exc.value) and TOKEN not in str(exc.value)
        assert fake.headers_seen[0]["Authorization"] == f"Bearer {TOKEN}"  # it was sent
        assert TOKEN not in caplog.text
        assert len(fake.headers_seen) == 1  # 401/403 are not retried
    finally:
        fake.stop()


@fault
@rows_lost
def test_nan_inf_empty_and_vanishing_series(tmp_path):
    end = int(pd.Timestamp(AS_OF, tz="UTC").timestamp())
    start = end - 180 * 86400
    steps = list(range(start, end, 3600))
    vals = [[t, "NaN" if i % 100 == 5 else ("+Inf" if i % 100 == 6 else str(1.0 + i % 24))] for i, t in enumerate(steps)]
    finite = sum(1 for _, v in vals if v not in ("NaN", "+Inf"))
    vanishing = [[t, "2"] for t in steps[: len(steps) // 2]]  # stops reporting half way

    def answer(path):
        if "kube_node_labels" in path and "query_range" not in path:
            return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"cluster": "c", "node": "n1", "label_node_kubernetes_io_pool": "p"}, "value": [end, "1"]}]}})
        if "query_range" not in path:
            return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
        if "node_cpu_seconds_total" in path and "group_left" in path:
            return 200, matrix([({"cluster": "c", "pool": "p"}, vals), ({"cluster": "c", "pool": "gone"}, vanishing)])
        return 200, matrix([])  # empty results for everything else

    fake = FakeProm(answer)
    try:
        cfg = load_config(prom_config(tmp_path, fake.url))
        store = Store(cfg.path(cfg.store.path))
        res = ingest_prometheus(store, cfg, window(cfg))
        with store.connect(read_only=True) as con:
            vals = con.execute("SELECT value FROM samples x JOIN series s USING (series_id) WHERE s.pool = 'p' AND s.level = 'pool'").df()["value"]
        assert np.isfinite(vals).all() and len(vals) == finite
        q = res.quality.set_index("pool")
        assert bool(q.loc["gone", "stale"]) and q.loc["gone", "coverage_pct"] == pytest.approx(50, abs=1)
        assert q.loc["p", "gaps"] > 0  # NaN and Inf became gaps, reported
    finally:
        fake.stop()


@fault
@rows_lost
def test_killed_during_ingest_then_rerun_is_correct(tmp_path):
    cfg = write_config(tmp_path, nodes=400, clusters=4)
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "demo", "--config", str(cfg), "--nodes", "400"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "data" / "capplan.duckdb"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until the ingest has written something, then kill -9
        time.sleep(0.5)
        if db.exists() and db.stat().st_size > 20_000_000:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and the temporary Prefect server it started
    proc.wait()
    con = duckdb.connect(str(db), read_only=True)  # opens cleanly
    statuses = con.execute("SELECT status FROM runs").fetchall()
    con.close()
    assert statuses in ([("running",)], [])
    result = run(RunRequest(config_path=str(cfg), overrides={"source": {"demo": {"nodes": 400, "clusters": 4}}})).as_dict()
    con = duckdb.connect(str(db), read_only=True)
    runs = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    assert runs[result["run_id"]] == "succeeded"
    assert all(s in ("succeeded", "failed") for s in runs.values())  # the killed run says it failed
    dupes = con.execute("SELECT count(*) FROM (SELECT series_id, ts FROM samples GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert dupes == 0
    expected = 180 * 24
    short = con.execute("SELECT count(*) FROM (SELECT series_id, count(*) n FROM samples x JOIN series s USING (series_id) "
                        "WHERE s.level = 'pool' GROUP BY ALL HAVING n < ?)", [expected]).fetchall()[0][0]
    assert short == 0  # no holes in pool series


@fault
def test_a_second_run_refuses_while_one_is_running(demo_run, tmp_path):
    store = Store(demo_run["db"])
    with store.run_lock():
        r = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--config", str(demo_run["config"])],
                           capture_output=True, text=True, timeout=300, cwd=demo_run["folder"])
    assert r.returncode == 1 and "another capplan run" in r.stderr and "--wait" in r.stderr
    assert "Traceback" not in r.stderr


@fault
def test_reader_waits_for_a_writer_or_says_why(demo_run):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, time, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(4)"), str(demo_run["db"])],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "open"
    try:
        with pytest.raises(StoreBusy, match="in use by another process.*cp "):
            with Store(demo_run["db"], busy_timeout_s=1).connect(read_only=True):
                pass
        t = time.time()
        with Store(demo_run["db"], busy_timeout_s=20).connect(read_only=True) as con:  # waits, then reads
            assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] >= 1
        assert time.time() - t > 0.5
    finally:
        holder.wait(timeout=30)


KILL_DURING_WRITE = r'''
import os, signal, sys
from pipelines.io import store as store_mod
from pipelines.jobs import RunRequest, run

original = store_mod.Store._insert

def insert_then_die(con, table, frame, run_id):
    original(con, table, frame, run_id)
    if table == "forecasts":  # half of the run's outputs are in the open transaction
        os.kill(os.getpid(), signal.SIGKILL)

store_mod.Store._insert = staticmethod(insert_then_die)
run(RunRequest(config_path=sys.argv[1]))
'''


@fault
@rows_lost
def test_killed_while_writing_results_leaves_no_half_run(tmp_path):
    cfg = write_config(tmp_path, nodes=100, clusters=2)
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_WRITE, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PREFECT_LOGGING_LEVEL": "CRITICAL"})
    try:
        assert proc.wait(timeout=600) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the temporary Prefect server it started, if any
        except ProcessLookupError:
            pass
    db = tmp_path / "data" / "capplan.duckdb"
    con = duckdb.connect(str(db), read_only=True)  # opens cleanly
    assert con.execute("SELECT status FROM runs").fetchall() == [("running",)]
    for table in ("forecasts", "plans", "decisions", "inventory"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == 0, table  # rolled back
    con.close()
    result = run(RunRequest(config_path=str(cfg))).as_dict()
    con = duckdb.connect(str(db), read_only=True)
    assert dict(con.execute("SELECT status, count(*) FROM runs GROUP BY 1").fetchall()) == {"failed": 1, "succeeded": 1}
    n = con.execute("SELECT count(*) FROM forecasts").fetchall()[0][0]
    assert n == con.execute("SELECT count(*) FROM forecasts WHERE run_id = ?", [result["run_id"]]).fetchall()[0][0] > 0
