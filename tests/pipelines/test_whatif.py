"""What-if scenarios re-plan without overwriting the baseline."""

import duckdb
import pytest

from pipelines.config import ConfigError
from pipelines.whatif import run_what_if


def test_bigger_event_and_longer_lead_time(demo_run, tmp_path):
    base_id = demo_run["result"]["run_id"]
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
    res = run_what_if(demo_run["config"], scenario)
    assert res["baseline_run_id"] == base_id
    assert res["cost_after"] > res["cost_before"]
    assert len(res["diff"]) > 0
    assert res["files"]["report"].parent.name == "what-if-launch-x3"
    con = duckdb.connect(str(demo_run["db"]), read_only=True)
    assert con.execute("SELECT * FROM plans WHERE run_id = ? ORDER BY ALL", [base_id]).fetchall() == base_plans
    kind, baseline = con.execute("SELECT kind, baseline_run_id FROM runs WHERE run_id = ?", [res["run_id"]]).fetchall()[0]
    assert kind == "what-if" and baseline == base_id
    orders = con.execute("SELECT min(order_by_date) FROM plans WHERE run_id = ?", [res["run_id"]]).fetchall()[0][0]
    base_orders = con.execute("SELECT min(order_by_date) FROM plans WHERE run_id = ?", [base_id]).fetchall()[0][0]
    assert orders <= base_orders  # 90 days of lead time: orders come earlier


def test_no_op_scenario_reproduces_the_baseline_plan(demo_run, tmp_path):
    scenario = tmp_path / "same.yaml"
    scenario.write_text("name: same\n")
    res = run_what_if(demo_run["config"], scenario)
    assert res["cost_after"] == pytest.approx(res["cost_before"], rel=1e-9)
    assert res["diff"].empty


def test_bad_scenario_names_the_field(demo_run, tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("name: x\nevent_uplifts: {no-such-event: 10}\n")
    with pytest.raises(ConfigError, match="no-such-event"):
        run_what_if(demo_run["config"], scenario)
    scenario.write_text("name: x\npolicies: {threshold_pct: 140}\n")
    with pytest.raises(ConfigError, match="threshold_pct"):
        run_what_if(demo_run["config"], scenario)
