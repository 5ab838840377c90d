"""A pool whose series cannot be forecast stays in every output as red "no forecast: review"."""

import duckdb
import numpy as np
import pandas as pd
import yaml

from pipelines.jobs import RunRequest, run

from ..conftest import AS_OF, write_config


def export(tmp_path):
    """Pool `web` has 60 days of every series; pool `batch` has two samples of one series."""
    ts = pd.date_range(pd.Timestamp(AS_OF, tz="UTC") - pd.Timedelta(days=60), periods=60 * 24, freq="h")
    rng = np.random.default_rng(3)
    rows = []
    for resource, kind, unit, level in (("cpu", "usage", "cores", 8.0), ("cpu", "requests", "cores", 10.0),
                                        ("memory", "usage", "bytes", 40 * 2**30), ("memory", "requests", "bytes", 50 * 2**30),
                                        ("pods", "requests", "pods", 80.0)):
        values = level * (1 + 0.1 * np.sin(np.arange(len(ts)) * 2 * np.pi / 24) + rng.normal(0, 0.01, len(ts)))
        rows += [{"cluster": "c1", "pool": "web", "resource": resource, "kind": kind, "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "value": v, "unit": unit} for t, v in zip(ts, values)]
    rows += [{"cluster": "c1", "pool": "batch", "resource": "cpu", "kind": "usage", "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "value": 3.0, "unit": "cores"} for t in ts[-2:]]
    pd.DataFrame(rows).to_csv(tmp_path / "export.csv", index=False)
    nodes = [{"cluster": "c1", "pool": pool, "tier": "compute", "zone": f"z{i % 3}", "node": f"{pool}-{i}",
              "instance_type": "c6i.2xlarge", "cpu_cores": 7.52, "memory_bytes": 14.4 * 2**30, "pods": 110, "storage_bytes": 0}
             for pool in ("web", "batch") for i in range(5)]
    pd.DataFrame(nodes).to_csv(tmp_path / "nodes.csv", index=False)


def test_unforecastable_pool_is_red_in_every_output(tmp_path):
    export(tmp_path)
    cfg = write_config(tmp_path)
    overrides = {"source": {"kind": "file", "file": {"path": str(tmp_path / "export.csv"), "inventory": str(tmp_path / "nodes.csv")}},
                 "forecasting": {"history_days": 60, "horizon_days": 60}}
    result = run(RunRequest(config_path=str(cfg), overrides=overrides))
    assert [f["pool"] for f in result.failures] == ["batch"]  # the one series that was there but too short
    con = duckdb.connect(str(tmp_path / "data" / "capplan.duckdb"), read_only=True)
    dec = con.execute("SELECT pool, resource, status, review_reason FROM decisions WHERE run_id = ?", [result.run_id]).df()
    batch = dec[dec.pool == "batch"]
    assert sorted(batch.resource) == ["cpu", "memory", "pods"]  # every resource with capacity is still there
    assert (batch.status == "red").all() and batch.review_reason.str.startswith("no forecast: review").all()
    assert "distinct timestamps" in batch[batch.resource == "cpu"].review_reason.iloc[0]  # the reason, not a shrug
    assert dec[dec.pool == "web"].review_reason.isna().all()
    notes = con.execute("SELECT pool, severity FROM forecast_notes WHERE run_id = ? AND severity = 'error'", [result.run_id]).fetchall()
    assert notes == [("batch", "error")]
    plans = con.execute("SELECT pool, action, reason FROM plans WHERE run_id = ?", [result.run_id]).df()
    review = plans[plans.pool == "batch"]
    assert list(review.action) == ["review"] and "no forecast" in review.reason.iloc[0]
    csv = pd.read_csv(result.files["csv"])
    assert csv[(csv.pool == "batch")]["action"].tolist() == ["review"]
    doc = yaml.safe_load(result.files["plan"].read_text())
    items = [a for step in doc["spec"]["expansionPlan"] for a in step["actions"] if a["pool"] == "batch"]
    assert [a["type"] for a in items] == ["review"] and "no forecast" in items[0]["reason"]
    html = result.files["report"].read_text()
    assert "No forecast: review" in html and "could not be forecast" in html
    assert "1 pool without a forecast need review" in result.summary["headline"]
    rows = [r for r in result.table if r["pool"] == "batch"]  # one row per pool: the CLI's table
    assert len(rows) == 1 and rows[0]["status"] == "red" and rows[0]["to_add"] == "review"
    assert all(f"{res}: no forecast: review" in rows[0]["review_reason"] for res in ("cpu", "memory", "pods"))
