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
from pipelines.io.sources.prometheus import PrometheusError, connect, ingest_prometheus
from pipelines.io.store import Store, StoreBusy

from ..conftest import AS_OF, write_config
from ..pipelines.test_prometheus import Proxy, main, needs_prometheus, prom_config, window  # noqa: F401  (main: fixture)

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

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def matrix(series: list[tuple[dict, list]]) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix",
                       "result": [{"metric": m, "values": v} for m, v in series]}})


def client_for(tmp_path, url, extra=""):
    cfg = load_config(prom_config(tmp_path, url, extra))
    return connect(cfg), cfg


@fault
def test_dns_failure_is_named(tmp_path):
    c, _ = client_for(tmp_path, "http://prometheus.invalid:9090")
    with pytest.raises(PrometheusError, match=r"^cannot connect to http://prometheus.invalid:9090 \(host 'prometheus.invalid' "
                                              r"not found in DNS\); check source.prometheus.url \(2 attempt\(s\)\)$"):
        c.query_range("q", "up", 0, 7200, 3600)


@fault
def test_tls_failure_is_not_retried_and_says_what_to_do(tmp_path):
    fake = FakeProm(lambda path: (200, matrix([])))
    try:
        c, _ = client_for(tmp_path, fake.url.replace("http://", "https://"))
        with pytest.raises(PrometheusError, match="TLS verification failed|ca_file|SSL"):
            c.query_range("q", "up", 0, 7200, 3600)
    finally:
        fake.stop()


@fault
@secret
@pytest.mark.parametrize("status", [401, 403])
def test_unauthorised_is_clear_and_the_token_never_leaks(tmp_path, monkeypatch, caplog, status):
    monkeypatch.setenv("CAPPLAN_PROM_TOKEN", TOKEN)
    fake = FakeProm(lambda path: (status, json.dumps({"status": "error", "error": f"denied for Bearer {TOKEN}"})))
    try:
        c, _ = client_for(tmp_path, fake.url)
        with pytest.raises(PrometheusError) as exc:
            c.query_range("q", "up", 0, 7200, 3600)
        assert f"HTTP {status}" in str(exc.value) and TOKEN not in str(exc.value)
        assert fake.headers_seen[0]["Authorization"] == f"Bearer {TOKEN}"  # it was sent
        assert TOKEN not in caplog.text
        assert len(fake.headers_seen) == 1  # 401/403 are not retried
    finally:
        fake.stop()


@fault
@rows_lost
@needs_prometheus
def test_nan_inf_empty_and_vanishing_series(main, tmp_path):  # noqa: F811
    """A proxy in front of the real server spoils the answers of one pool query: NaN and
    +Inf values, one pool that stops reporting half way, and empty answers for another."""
    import urllib.parse
    import urllib.request

    spoiled = {"values": 0, "nan": 0}
    cut = pd.Timestamp(AS_OF, tz="UTC").timestamp() - 13 * 86400  # one day into the 14-day window

    def decide(path, form, n):
        q = form.get("query", "")
        if not path.endswith("query_range") or form.get("step") != "3600":
            return None
        if "node_memory_MemAvailable_bytes" in q:  # pool memory usage: nothing at all
            return (200, matrix([]).encode())
        if "node_cpu_seconds_total" not in q or "sum by (cluster, pool)" not in q:
            return None
        with urllib.request.urlopen(urllib.request.Request(main.url + path, data=urllib.parse.urlencode(form).encode())) as r:
            body = json.loads(r.read())
        for s in body["data"]["result"]:
            for i, p in enumerate(s["values"]):
                spoiled["values"] += 1
                if i % 10 == 5:
                    p[1] = "NaN" if i % 20 == 5 else "+Inf"
                    spoiled["nan"] += 1
            if s["metric"]["pool"] == "system":  # stops reporting after the first day
                s["values"] = [p for p in s["values"] if float(p[0]) < cut]
        return (200, json.dumps(body).encode())

    proxy = Proxy(main.url, decide)
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url, "    clusters: [west]\n    drill_down: false\n    storage: []\n"
                                                          "    on_missing_data: warn\n"))
        store = Store(cfg.path(cfg.store.path))
        res = ingest_prometheus(store, cfg, window(cfg))
    finally:
        proxy.stop()
    assert spoiled["nan"] > 0
    with store.connect(read_only=True) as con:
        vals = con.execute("SELECT value FROM samples x JOIN series s USING (series_id) WHERE s.resource = 'cpu' "
                           "AND s.kind = 'usage' AND s.level = 'pool'").df()["value"]
    assert np.isfinite(vals).all() and len(vals) > 0
    q = res.quality[(res.quality.resource == "cpu") & (res.quality.kind == "usage")].set_index("pool")
    assert bool(q.loc["system", "stale"]) and q.loc["system", "coverage_pct"] == pytest.approx(100 / 14, abs=1)
    assert q.loc["default", "gaps"] > 0  # NaN and Inf became gaps, reported
    assert any("no memory usage" in w for w in res.warnings)  # the empty query: a red warning, not a silent hole


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
