"""What-if scenarios re-plan without overwriting the baseline (rows or files)."""

import duckdb
import pytest

from pipelines.config import ConfigError
from pipelines.jobs import RunRequest, run


def what_if(config, scenario=None, inline=None):
    return run(RunRequest(config_path=str(config), kind="what-if", scenario_path=str(scenario) if scenario else None,
                          scenario=inline))


def test_bigger_event_and_longer_lead_time(demo_run, tmp_path):
    base_id = demo_run["result"]["run_id"]
    monthly = demo_run["folder"] / "reports" / "2026-11"
    before = {p.name: p.read_bytes() for p in monthly.iterdir() if p.is_file()}
    con = duckdb.connect(str(demo_run["db"]), read_only=True)
    base_plans = con.execute("SELECT * FROM plans WHERE run_id = ? ORDER BY ALL", [base_id]).fetchall()
    con.close()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: launch-x3\n"
        "event_uplifts: {q2-product-launch: 60}\n"
        "policies: {lead_time_days: 90}\n"
        "added_workload:\n  - {cluster: prod-cn-east, pool: compute, resource: cpu, amount: 60, from: 2027-01-01}\n"
    )
    res = what_if(demo_run["config"], scenario)
    s = res.summary
    assert s["baseline_run_id"] == base_id
    assert s["added_monthly_cost_usd"] > s["baseline_monthly_cost_usd"]
    assert len(s["diff"]) > 0
    assert res.files["report"].parent == monthly / "what-if" / "launch-x3"
    assert {p.name: p.read_bytes() for p in monthly.iterdir() if p.is_file()} == before  # monthly files untouched
    con = duckdb.connect(str(demo_run["db"]), read_only=True)
    assert con.execute("SELECT * FROM plans WHERE run_id = ? ORDER BY ALL", [base_id]).fetchall() == base_plans
    kind, baseline = con.execute("SELECT kind, baseline_run_id FROM runs WHERE run_id = ?", [res.run_id]).fetchall()[0]
    assert kind == "what-if" and baseline == base_id
    orders = con.execute("SELECT min(order_by_date) FROM plans WHERE run_id = ?", [res.run_id]).fetchall()[0][0]
    base_orders = con.execute("SELECT min(order_by_date) FROM plans WHERE run_id = ?", [base_id]).fetchall()[0][0]
    assert orders <= base_orders  # 90 days of lead time: orders come earlier


def test_no_op_scenario_reproduces_the_baseline_plan(demo_run):
    res = what_if(demo_run["config"], inline={"name": "same"})
    assert res.summary["added_monthly_cost_usd"] == pytest.approx(res.summary["baseline_monthly_cost_usd"], rel=1e-9)
    assert res.summary["diff"] == []


def test_bad_scenario_names_the_field(demo_run, tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("name: x\nevent_uplifts: {no-such-event: 10}\n")
    with pytest.raises(ConfigError, match="no-such-event"):
        what_if(demo_run["config"], scenario)
    scenario.write_text("name: x\npolicies: {threshold_pct: 140}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*threshold_pct"):
        what_if(demo_run["config"], scenario)


def test_a_scenario_naming_an_unknown_instance_type_stops_before_any_work(demo_run):
    runs_before = duckdb.connect(str(demo_run["db"]), read_only=True).execute("SELECT count(*) FROM runs").fetchone()[0]
    with pytest.raises(ConfigError, match=r"scenario 'bigger-nodes': policies\..*instance type 'z9.huge' is not in .*add it"):
        what_if(demo_run["config"], inline={"name": "bigger-nodes", "policies": {"instance_types": ["z9.huge"]}})
    con = duckdb.connect(str(demo_run["db"]), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == runs_before  # no failed run left behind either
