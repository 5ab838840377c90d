"""The scheduled path for real: a Prefect server on 127.0.0.1, a process work pool,
`prefect deploy --all` from prefect.yaml, the cron schedule, a triggered run picked up by a
worker, and the report and DuckDB rows it produced."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from ..conftest import ROOT, write_config

from pipelines.testing.promserver import free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent



@pytest.fixture
def prefect_server(tmp_path):
    port = free_port()
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_LOGGING_LEVEL": "INFO", "CAPPLAN_HOME": str(ROOT)}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("prefect server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        time.sleep(1)
    yield env
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def prefect(env, *args, timeout=300, cwd=ROOT):
    r = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"prefect {' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def api(env, method, path, body=None):
    req = urllib.request.Request(env["PREFECT_API_URL"] + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def test_deploy_schedule_trigger_and_worker_run(prefect_server, tmp_path):
    env = prefect_server
    cfg = write_config(tmp_path / "site", nodes=100, clusters=2)
    prefect(env, "work-pool", "create", "capplan", "--type", "process")
    prefect(env, "--no-prompt", "deploy", "--all")
    dep = api(env, "GET", "/deployments/name/monthly-run/monthly")
    crons = [s["schedule"].get("cron") for s in dep["schedules"]]
    assert crons == ["0 9 1 * *"]
    assert dep["work_pool_name"] == "capplan" and dep["parameters"]["request"]["config_path"] == "capplan.yaml"
    deadline = time.time() + 90
    while True:  # the server's scheduler service creates the upcoming runs shortly after deploy
        scheduled = api(env, "POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [dep["id"]]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
        if scheduled or time.time() > deadline:
            break
        time.sleep(2)
    assert scheduled and all(r["expected_start_time"][8:16] in ("01T09:00",) for r in scheduled)
    assert api(env, "GET", "/deployments/name/what-if/scenario")["parameters"]["request"]["kind"] == "what-if"
    out = prefect(env, "deployment", "run", "monthly-run/monthly", "--params", json.dumps({"request": {"config_path": str(cfg)}}))
    run_id = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
    prefect(env, "worker", "start", "--pool", "capplan", "--run-once", timeout=900)
    state = api(env, "GET", f"/flow_runs/{run_id}")["state"]["type"]
    assert state == "COMPLETED"
    report = tmp_path / "site" / "reports" / "2026-11" / "capacity-report.html"
    assert report.stat().st_size > 100_000
    con = duckdb.connect(str(tmp_path / "site" / "data" / "capplan.duckdb"), read_only=True)
    runs = con.execute("SELECT run_id, status, flow_run_id FROM runs").fetchall()
    assert len(runs) == 1 and runs[0][1] == "succeeded"
    assert runs[0][2] == run_id and runs[0][0].endswith(run_id[:8])  # one id shared by DuckDB and Prefect
    assert con.execute("SELECT count(*) FROM plans WHERE run_id = ?", [runs[0][0]]).fetchall()[0][0] >= 0
    assert con.execute("SELECT count(*) FROM forecasts WHERE run_id = ?", [runs[0][0]]).fetchall()[0][0] > 0
    con.close()
    artifacts = api(env, "POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["capacity-plan"]}}})
    assert artifacts and "Capacity plan 2026-11" in artifacts[0]["data"]

    # The what-if deployment re-plans under a scenario and leaves the monthly files byte-identical.
    month = tmp_path / "site" / "reports" / "2026-11"
    before = {p.name: p.read_bytes() for p in month.iterdir() if p.is_file()}
    scenario = {"name": "launch-x3", "event_uplifts": {"q2-product-launch": 60}, "policies": {"lead_time_days": 90}}
    out = prefect(env, "deployment", "run", "what-if/scenario", "--params",
                  json.dumps({"request": {"config_path": str(cfg), "kind": "what-if", "scenario_path": None, "scenario": scenario}}))
    wid = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
    prefect(env, "worker", "start", "--pool", "capplan", "--run-once", timeout=900)
    assert api(env, "GET", f"/flow_runs/{wid}")["state"]["type"] == "COMPLETED"
    assert {p.name: p.read_bytes() for p in month.iterdir() if p.is_file()} == before
    assert (month / "what-if" / "launch-x3" / "capacity-report.html").stat().st_size > 100_000
    con = duckdb.connect(str(tmp_path / "site" / "data" / "capplan.duckdb"), read_only=True)
    kind, baseline, status = con.execute("SELECT kind, baseline_run_id, status FROM runs WHERE flow_run_id = ?", [wid]).fetchall()[0]
    assert (kind, baseline, status) == ("what-if", runs[0][0], "succeeded")
