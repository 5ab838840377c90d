"""CLI paths beyond demo: file ingest, what-if plan, runs, report."""

import duckdb
import pandas as pd

from ..conftest import write_config
from .test_config import capplan


def test_ingest_file_with_inventory(tmp_path):
    cfg = write_config(tmp_path)
    ts = pd.date_range("2026-10-01", periods=48, freq="h", tz="UTC")
    rows = [{"cluster": "c1", "pool": "web", "resource": "cpu", "kind": "usage", "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "value": 5 + i % 24 / 10, "unit": "cores"} for i, t in enumerate(ts)]
    pd.DataFrame(rows).to_csv(tmp_path / "export.csv", index=False)
    pd.DataFrame([{"cluster": "c1", "pool": "web", "tier": "compute", "zone": "a", "node": f"n{i}", "instance_type": "c6i.2xlarge",
                   "cpu_cores": 7.52, "memory_bytes": 14.4 * 2**30, "pods": 110, "storage_bytes": 0} for i in range(4)]).to_csv(tmp_path / "nodes.csv", index=False)
    r = capplan("ingest", "--config", str(cfg), "--source", "file", str(tmp_path / "export.csv"), "--inventory", str(tmp_path / "nodes.csv"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ingested 48 samples of 1 series" in r.stdout
    con = duckdb.connect(str(tmp_path / "data" / "capplan.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM samples").fetchall()[0][0] == 48
    assert con.execute("SELECT count(*) FROM inventory").fetchall()[0][0] == 4
    # the same file again replaces, never duplicates
    r = capplan("ingest", "--config", str(cfg), "--source", "file", str(tmp_path / "export.csv"), "--inventory", str(tmp_path / "nodes.csv"), cwd=tmp_path)
    con = duckdb.connect(str(tmp_path / "data" / "capplan.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM samples").fetchall()[0][0] == 48


def test_ingest_bad_file_is_one_line(tmp_path):
    cfg = write_config(tmp_path)
    (tmp_path / "bad.csv").write_text("cluster,pool,resource,kind,ts,value,unit\nc,p,cpu,usage,2026-10-01T00:00:00,1,cores\n")
    r = capplan("ingest", "--config", str(cfg), "--source", "file", str(tmp_path / "bad.csv"), cwd=tmp_path)
    assert r.returncode == 1 and "line 2" in r.stderr and "time zone" in r.stderr and "Traceback" not in r.stderr


def test_plan_what_if_and_runs(demo_run, tmp_path):
    (tmp_path / "s.yaml").write_text("name: cli-check\npolicies: {threshold_pct: 60}\n")
    r = capplan("plan", "--config", str(demo_run["config"]), "--what-if", str(tmp_path / "s.yaml"))
    assert r.returncode == 0, r.stderr
    assert "what-if 'cli-check'" in r.stdout and "added monthly cost" in r.stdout
    runs = capplan("runs", "--config", str(demo_run["config"]))
    assert "what-if" in runs.stdout and "monthly" in runs.stdout
    rep = capplan("report", "--config", str(demo_run["config"]))
    assert "capacity-report.html" in rep.stdout
