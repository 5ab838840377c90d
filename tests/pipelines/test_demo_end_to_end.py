"""`capplan demo` end to end, from a cold start (a fresh, empty Prefect home, as on a new
machine): three files, DuckDB rows that agree with them and the summary."""

import os
import re

import duckdb
import pandas as pd
import pytest
import yaml

from ..conftest import write_config
from .test_config import capplan


def cold_env(home) -> dict:
    """The environment of a new machine: no Prefect server configured, an empty Prefect home,
    and Prefect's own startup timeout (capplan must set a longer one itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    home.mkdir()
    return env | {"PREFECT_HOME": str(home)}


@pytest.fixture(scope="module")
def demo_cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-demo")
    cfg = write_config(folder)
    quotas = folder / "catalogs" / "quotas.yaml"  # the shipped quota is sized for make demo's 400 nodes; this fleet has 120
    quotas.write_text(quotas.read_text().replace("value: 1220 ", "value: 905 ", 1))
    home = folder / "fresh-prefect-home"
    r = capplan("demo", "--config", str(cfg), "--nodes", "120", cwd=folder, env=cold_env(home), timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (home / "prefect.db").exists()  # the temporary server really started in the fresh home
    return folder, r


def test_demo_writes_the_three_files(demo_cli):
    folder, r = demo_cli
    month = folder / "reports" / "2026-11"
    for name in ("capacity-report.html", "capacity-plan.yaml", "plan.csv"):
        assert (month / name).stat().st_size > 0
    doc = yaml.safe_load((month / "capacity-plan.yaml").read_text())
    assert doc["kind"] == "CapacityPlan" and set(doc["spec"]) >= {"currentCapacity", "businessForecast", "expansionPlan", "alerts"}


def test_summary_agrees_with_duckdb(demo_cli):
    folder, r = demo_cli
    run_id = re.search(r"run id: (\S+)", r.stdout).group(1)
    con = duckdb.connect(str(folder / "data" / "capplan.duckdb"), read_only=True)
    status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0]
    assert status == "succeeded"
    plans = con.execute("SELECT * FROM plans WHERE run_id = ?", [run_id]).df()
    csv = pd.read_csv(folder / "reports" / "2026-11" / "plan.csv")
    assert len(plans) == len(csv)
    assert plans["monthly_cost_usd"].sum() == pytest.approx(csv["monthly_cost_usd"].sum())
    printed = float(re.search(r"added run-rate \$([\d,]+)/month", r.stdout).group(1).replace(",", ""))
    assert printed == pytest.approx(plans["monthly_cost_usd"].sum(), abs=1)
    fleet_wide = plans["action"].isin(["request-quota", "commit"])
    for (cluster, pool), a in plans[~fleet_wide].groupby(["cluster", "pool"]):  # every pool with an action is in the table, with its date
        assert re.search(rf"{re.escape(cluster)} .*{re.escape(pool)} .*{a['order_by_date'].min():%Y-%m-%d}", r.stdout)
    for a in plans[plans["action"] == "request-quota"].itertuples():  # quotas and commitments: a line each, same figures
        assert f"quota {a.target} " in r.stdout and f"to {a.new_value:,.0f} vCPU by {a.order_by_date:%Y-%m-%d}" in r.stdout
    for a in plans[plans["action"] == "commit"].itertuples():
        assert f"of ${a.new_value:,.2f}/h on {a.order_by_date:%Y-%m-%d}" in r.stdout
    assert fleet_wide.any()  # the demo has a quota to raise and a commitment to buy
    counts = con.execute("SELECT count(*) FROM forecasts WHERE run_id = ?", [run_id]).fetchall()[0][0]
    assert counts > 0


def test_rerun_same_month_is_idempotent(demo_cli):
    folder, _ = demo_cli
    cfg = folder / "capplan.yaml"
    con = duckdb.connect(str(folder / "data" / "capplan.duckdb"), read_only=True)
    samples_before = con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
    first = con.execute("SELECT run_id FROM runs WHERE kind='monthly' ORDER BY started_at").fetchall()[0][0]
    con.close()
    r = capplan("demo", "--config", str(cfg), "--nodes", "120", cwd=folder)
    assert r.returncode == 0, r.stderr
    con = duckdb.connect(str(folder / "data" / "capplan.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM samples").fetchall()[0][0] == samples_before
    dupes = con.execute("SELECT count(*) FROM (SELECT series_id, ts FROM samples GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert dupes == 0
    second = con.execute("SELECT run_id FROM runs WHERE kind='monthly' ORDER BY started_at DESC").fetchall()[0][0]
    cols = "cluster, pool, action, quantity, instance_type, round(monthly_cost_usd, 2), order_by_date"
    a = con.execute(f"SELECT {cols} FROM plans WHERE run_id = ? ORDER BY ALL", [first]).fetchall()
    b = con.execute(f"SELECT {cols} FROM plans WHERE run_id = ? ORDER BY ALL", [second]).fetchall()
    assert a == b
