"""Sizing, costs, plan document and diff on hand-checkable tables."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from forecasting.headroom import decisions, usable_capacity, utilisation
from forecasting.actions import build_plan
from forecasting.costs import cost_within, fleet_cost, storage_monthly_cost
from forecasting.plandoc import diff_plans, plan_document, pool_summary
from forecasting.sizing import effective_lead_time, size_nodes, size_storage, usable_after
from forecasting.policy import Catalog, CatalogError, InstanceType, PoolPolicy, StorageType
from forecasting.reasons import event_effects, temporary_needs

from .test_headroom import AS_OF, GIB, demand_frame, nodes, policy

EXACT = {"allocatable_cpu_fraction": 1.0, "allocatable_memory_fraction": 1.0}


def catalog(*extra):
    return Catalog(prices_as_of="2026-11-01", instance_types=[
        InstanceType(name="t", vcpu=4, memory_gib=16, on_demand_hourly_usd=1.0, **EXACT), *extra,
    ], storage_types=[{"name": "gp3", "price_per_gb_month_usd": 0.08, "increment_gib": 1024}])


def test_one_node_fixes_a_small_cpu_deficit():
    # 5 x 4 cores, N+2 usable 12; peak 10 at 70% needs > 14.29 -> one node (usable 16).
    s = size_nodes(nodes(5), {"cpu": 10.0}, PoolPolicy(), catalog(), "t")
    assert s.additions == {"t": 1} and s.binding_resource == "cpu"


def test_binding_resource_switches_to_memory():
    # memory 60 GiB at 70% needs > 85.7 GiB usable; 3 x 16 = 48 -> 3 more nodes (96 GiB).
    s = size_nodes(nodes(5), {"cpu": 10.0, "memory": 60.0 * GIB}, PoolPolicy(), catalog(), "t")
    assert s.additions == {"t": 3} and s.binding_resource == "memory"
    assert "memory binds" in s.reason


def test_enough_capacity_adds_nothing():
    s = size_nodes(nodes(10), {"cpu": 5.0}, PoolPolicy(), catalog(), "t")
    assert s.additions == {} and s.monthly_cost_usd == 0


def test_new_larger_nodes_count_in_n_plus_k():
    # Adding one 8-core node to 5 x 4: it becomes a largest unit, so N+2 loses 8+4.
    big = {"cpu": 8.0, "memory": 16 * GIB, "pods": 110.0}
    after = usable_after(nodes(5), {"big": (1, big)}, PoolPolicy())
    assert after["cpu"] == 28 - 12


def test_zone_failure_unit_spreads_new_nodes():
    inv = nodes(6, zones=("a", "b", "c"))  # N+1 by zone: usable 16 cores
    s = size_nodes(inv, {"cpu": 14.0}, PoolPolicy(failure_unit="zone", redundancy_k=1), catalog(), "t")
    # need > 20 usable: +3 nodes (one per zone) -> 9 nodes, lose a zone of 12 -> 24 usable
    assert s.additions == {"t": 3}


def test_zone_pool_with_too_few_zones_is_not_fixable_by_nodes():
    s = size_nodes(nodes(4, zones=("a", "b")), {"cpu": 14.0}, PoolPolicy(failure_unit="zone"), catalog(), "t")
    assert not s.feasible and "zones" in s.reason


def test_cheapest_type_is_chosen_and_explained():
    # memory-bound pool: a 2-core 64 GiB type at $1.2/h beats 4 of the 4-core 16 GiB type
    mem = InstanceType(name="m", vcpu=2, memory_gib=64, on_demand_hourly_usd=1.2, **EXACT)
    p = PoolPolicy(instance_types=["m"])
    s = size_nodes(nodes(5), {"cpu": 5.0, "memory": 100.0 * GIB}, p, catalog(mem), "t")
    # need > 142.9 GiB usable, have 48: own type needs 6 x 16 (=$4380), m needs 2 x 64 but
    # two m become the largest units -> 3 m (=$2628); a mix (1 m + t's) may also compete.
    assert s.monthly_cost_usd <= 3 * 1.2 * 730 + 1e-6
    assert "m" in s.additions
    assert "cheapest of" in s.reason


def test_costs_with_spot_and_reserved_mix():
    t = InstanceType(name="c6i.2xlarge", vcpu=8, memory_gib=16, on_demand_hourly_usd=0.34, spot_discount_pct=65, reserved_discount_pct=37)
    assert t.monthly_cost_usd(0, 0) == pytest.approx(248.2)
    assert t.monthly_cost_usd(70, 0) == pytest.approx(248.2 * (0.7 * 0.35 + 0.3))
    assert t.monthly_cost_usd(0, 100) == pytest.approx(248.2 * 0.63)
    assert t.monthly_cost_usd(50, 50) == pytest.approx(248.2 * (0.5 * 0.35 + 0.5 * 0.63))


def test_storage_increments():
    # 50 TiB, peak 40 TiB at 75% needs > 53.3 TiB: 4 x 1 TiB
    assert size_storage(50 * 2**40, 40 * 2**40, 75, 1024) == 4
    assert size_storage(50 * 2**40, 30 * 2**40, 75, 1024) == 0
    assert size_storage(50 * 2**40, 37.5 * 2**40, 75, 1024) == 1  # at the threshold is a trigger


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "vcpu": 0, "memory_gib": 1, "on_demand_hourly_usd": 1}, "vcpu"),
    ({"name": "x", "vcpu": 1, "memory_gib": 1, "on_demand_hourly_usd": -1}, "on_demand_hourly_usd"),
    ({"name": "x", "vcpu": 1, "memory_gib": 0, "on_demand_hourly_usd": 1}, "memory_gib"),
])
def test_invalid_catalog_entries(entry, message):
    with pytest.raises(ValidationError, match=message):
        Catalog(prices_as_of="2026-01-01", instance_types=[entry])


def test_unknown_instance_type_names_it():
    with pytest.raises(CatalogError, match="nope"):
        catalog().instance("nope")
    inv = nodes(3).assign(instance_type="mystery")
    with pytest.raises(CatalogError, match="c/p.*mystery"):
        fleet_cost(inv, policy(), catalog())


def _decision(trigger, order_by, late=False, resource="cpu", pool="p", tier="compute"):
    return {"cluster": "c", "pool": pool, "tier": tier, "resource": resource, "binding_kind": "usage", "capacity": 20.0,
            "usable": 12.0, "threshold_pct": 70.0, "demand_bound": "point", "measured_peak_pct": 50.0,
            "measured_usage_pct": 50.0, "measured_requests_pct": None, "forecast_peak_pct": 90.0, "peak_date": trigger,
            "trigger_date": trigger, "lead_time_days": 30, "lead_time_source": "policy", "order_by_date": order_by,
            "late": late, "risk_pct": 5.0, "horizon_risk_pct": 60.0, "earliest_arrival_date": None, "arrival_peak_pct": None,
            "arrival_over_usable": False, "arrival_over_raw": False, "days_of_headroom": 10, "required_usable": None,
            "status": "amber", "review_reason": None}


def test_build_plan_and_document():
    inv = nodes(5)
    dec = pd.DataFrame([_decision(AS_OF + dt.timedelta(days=40), AS_OF + dt.timedelta(days=10))])
    util = pd.DataFrame({"cluster": "c", "pool": "p", "tier": "compute", "resource": ["cpu"], "kind": "usage",
                         "ts": [pd.Timestamp(AS_OF, tz="UTC")], "demand": [10.0], "usable": [12.0], "utilisation_pct": [83.3], "threshold_pct": [70.0]})
    effects = pd.DataFrame([{"cluster": "c", "pool": "p", "resource": "cpu", "event": "sale", "event_days": 3,
                             "trigger_without": None, "shift_days": None}])
    actions = build_plan(dec, util, inv, pd.DataFrame(columns=["cluster", "pool", "capacity"]), policy(spot_ratio_pct=70), catalog(), AS_OF, effects)
    assert len(actions) == 1
    a = actions.iloc[0]
    assert a["action"] == "add-nodes" and a["quantity"] == 1 and a["order_by_date"] == AS_OF + dt.timedelta(days=10)
    assert a["monthly_cost_usd"] == pytest.approx(730 * 1.0)  # discounts are 0 in this catalog
    assert "sale (no trigger without it)" in a["reason"] and a["events"] == "sale"
    assert a["summary"] == "1 x t" and a["binds_on"] == "cpu usage" and a["risk_pct"] == 5.0
    # capacity from the needed-by date (day 40) to the end of the 12 months: 325 days of $730/month
    assert a["next_12m_cost_usd"] == pytest.approx(730 * 325 * 24 / 730)
    doc = plan_document("x", "run1", AS_OF, actions, {"compute": {"nodes": 5}}, [{"name": "sale", "expectedGrowth": "+150%"}], {"cpu": 70}, catalog())
    assert doc["kind"] == "CapacityPlan"
    step = doc["spec"]["expansionPlan"][0]
    assert step["timeline"] == str(AS_OF + dt.timedelta(days=10))
    assert step["actions"][0]["quantity"] == 1 and step["actions"][0]["instanceType"] == "t"
    assert step["actions"][0]["summary"] == "1 x t" and step["actions"][0]["riskOfLate"] == "5%"
    assert doc["spec"]["alerts"][0]["threshold"] == "70%"
    assert doc["spec"]["businessForecast"]["sale"]["expectedGrowth"] == "+150%"


def test_storage_is_priced_per_gb_not_gib():
    """41 TiB of gp3 at $0.08 per GB-month: 41 x 1024 GiB x 1.073741824 GB/GiB x 0.08 = $3,606.40."""
    gp3 = StorageType(name="gp3", price_per_gb_month_usd=0.08)
    assert storage_monthly_cost(41 * 1024, gp3) == pytest.approx(3606.398, abs=0.01)


def test_the_longer_lead_time_wins_and_says_why():
    i4i = InstanceType(name="i4i.4xlarge", vcpu=16, memory_gib=128, on_demand_hourly_usd=1.4, lead_time_days=45)
    assert effective_lead_time(PoolPolicy(lead_time_days=30), i4i) == (45, "i4i.4xlarge catalog lead time, longer than the policy's 30")
    assert effective_lead_time(PoolPolicy(lead_time_days=60), i4i) == (60, "policy")


def test_next_12_months_counts_from_the_day_capacity_is_there():
    assert cost_within(730.0, AS_OF, AS_OF) == pytest.approx(730 * 365 * 24 / 730)  # a full year: 12.0 months of 30.4 days
    assert cost_within(730.0, AS_OF + dt.timedelta(days=300), AS_OF) == pytest.approx(65 * 24)
    assert cost_within(730.0, AS_OF + dt.timedelta(days=400), AS_OF) == 0.0
    assert cost_within(730.0, AS_OF - dt.timedelta(days=10), AS_OF) == pytest.approx(365 * 24)  # never before today


def test_fleet_cost_includes_storage():
    storage = pd.DataFrame({"cluster": ["c"], "pool": ["ceph"], "capacity": [100 * 2**40]})
    costs = fleet_cost(nodes(2), policy(), catalog(), storage)
    assert costs[costs.tier == "storage"]["monthly_cost_usd"].iloc[0] == pytest.approx(100 * 1024 * 1.073741824 * 0.08)
    assert costs["monthly_cost_usd"].sum() == pytest.approx(2 * 730 + 100 * 1024 * 1.073741824 * 0.08)


def test_a_short_event_only_need_rents_and_a_long_one_buys():
    """Flat demand at 7 cores (58% of 12 usable) with a 5-day sale at +40% (9.8 cores, 82%):
    without the sale there is no trigger, so the need is temporary. Renting 1 node for the
    window (5 days + 2 of provisioning) at $1/h costs 7 x 24 = $168; buying costs $730 a month."""
    inv = nodes(5)
    p = policy(demand_bound="point", lead_time_days=30)
    fc = demand_frame("cpu", "usage", [7.0] * 60, spread=0.0001).assign(series_id="s", yhat_baseline=7.0)
    days = fc["ts"].iloc[20:25]
    fc.loc[days.index, ["yhat", "yhat_lower", "yhat_upper"]] *= 1.4
    from forecasting.frames import QUANTILE_COLUMNS
    fc.loc[days.index, list(QUANTILE_COLUMNS)] *= 1.4
    overlays = pd.DataFrame({"series_id": "s", "ts": days, "event": "sale", "contribution": 2.8, "factor": 1.4})
    usable = usable_capacity(inv, p)
    dec = decisions(utilisation(fc, usable, p), p, AS_OF, 60)
    assert dec.set_index("resource").loc["cpu", "trigger_date"] == AS_OF + dt.timedelta(days=20)
    effects = event_effects(fc, overlays, usable, dec, p, AS_OF, 60)
    assert effects.set_index("resource").loc["cpu", "trigger_without"] is None  # no trigger without the sale
    need = temporary_needs(fc, overlays, usable, dec, p, AS_OF, 60)
    assert need[("c", "p")].events == ("sale",) and need[("c", "p")].start == AS_OF + dt.timedelta(days=20)
    actions = build_plan(dec, utilisation(fc, usable, p), inv, pd.DataFrame(columns=["cluster", "pool", "capacity"]), p,
                         catalog(), AS_OF, effects, need)
    a = actions.iloc[0]
    assert a["action"] == "rent-nodes" and a["temporary"] and a["quantity"] == 1
    assert a["rent_start"] == AS_OF + dt.timedelta(days=18) and a["rent_end"] == AS_OF + dt.timedelta(days=24)
    assert a["window_cost_usd"] == pytest.approx(7 * 24 * 1.0) and a["monthly_cost_usd"] == 0
    # buying is late (30 days of lead time, trigger in 20): bought nodes would be there, and cost,
    # from day 30, as the buy action itself counts them
    assert a["buy_12m_cost_usd"] == pytest.approx(730 * (365 - 30) * 24 / 730)
    assert a["summary"] == f"rent 1 x t {AS_OF + dt.timedelta(days=18)}..{AS_OF + dt.timedelta(days=24)}"
    summary = pool_summary(dec, actions).iloc[0]
    assert summary["temporary"] and summary["next_12m_cost_usd"] == pytest.approx(168.0)
    long_policy = policy(demand_bound="point", lead_time_days=30, temporary_event_max_days=3)  # a 5-day event is not short
    assert temporary_needs(fc, overlays, usable, dec, long_policy, AS_OF, 60) == {}


def test_diff_says_what_moved_and_why():
    prev = pd.DataFrame([_decision(AS_OF + dt.timedelta(days=40), AS_OF + dt.timedelta(days=10))])
    cur = pd.DataFrame([_decision(AS_OF + dt.timedelta(days=30), AS_OF)])
    pa = pd.DataFrame({"cluster": ["c"], "pool": ["p"], "quantity": [2], "monthly_cost_usd": [100.0]})
    ca = pd.DataFrame({"cluster": ["c"], "pool": ["p"], "quantity": [3], "monthly_cost_usd": [150.0]})
    d = diff_plans(prev, cur, pa, ca, {"events": ["a"], "nodes": {("c", "p"): 5}}, {"events": ["a", "b"], "nodes": {("c", "p"): 5}})
    r = d.iloc[0]
    assert r["shift_days"] == -10 and r["nodes_before"] == 2 and r["nodes_after"] == 3
    assert "new event(s): b" in r["why"]
    same = diff_plans(prev, prev, pa, pa)
    assert same.empty


def _plan_inputs(values, previous=None, **kw):
    """One pool of 5 x 4-core nodes (N+2 usable 12 cores) with a cpu usage forecast."""
    from forecasting.planning import PlanInputs

    f = demand_frame("cpu", "usage", values).assign(series_id="s", yhat_baseline=lambda d: d["yhat"], model="m")
    return PlanInputs(
        as_of=AS_OF, horizon_days=len(values), run_id="r1", inventory=nodes(5), storage_pools=pd.DataFrame(),
        forecasts=f, overlays=pd.DataFrame(columns=["series_id", "ts", "event", "contribution", "factor"]),
        failures=pd.DataFrame(columns=["cluster", "pool", "resource", "kind", "message"]),
        daily=pd.DataFrame(columns=["cluster", "pool", "resource", "kind", "ts", "value"]), policy_of=policy(),
        catalog=catalog(), events=[], thresholds={"cpu": 70, "storage": 75}, previous=previous, **kw)


def test_make_plan_chains_headroom_sizing_and_the_document():
    from forecasting.planning import make_plan

    # usable 12 cores; demand 6 -> 10 over 40 days: 70% (8.4 cores) is crossed around day 24,
    # so the pool needs nodes; 10 cores at 70% needs > 14.29 usable: one more 4-core node (16)
    plan = make_plan(_plan_inputs(np.linspace(6, 10, 40)))
    assert list(plan.pools["pool"]) == ["p"]
    adds = plan.actions[plan.actions["action"] == "add-nodes"]
    assert int(adds["quantity"].sum()) >= 1 and set(adds["instance_type"]) == {"t"}
    spec = plan.document["spec"]
    assert [p["pool"] for p in spec["pools"]] == ["p"]
    assert spec["pools"][0]["toAdd"] == plan.pools["to_add"].iloc[0]
    assert "trackRecord" not in spec and "unexplainedPeaks" not in spec  # not asked for
    assert plan.summary["context"]["nodes"] == [{"cluster": "c", "pool": "p", "nodes": 5}]
    assert plan.summary["actions"] == len(plan.actions)


def test_make_plan_finishes_the_document_and_diffs_against_the_previous_plan():
    from forecasting.planning import PlanBaseline, make_plan

    first = make_plan(_plan_inputs(np.linspace(6, 10, 40)))
    previous = PlanBaseline("r0", first.decisions.assign(trigger_date=None), first.actions.iloc[0:0], [], {("c", "p"): 4})
    spikes = pd.DataFrame(columns=["cluster", "pool", "resource", "kind", "start_date", "end_date", "excess_pct"])
    plan = make_plan(_plan_inputs(np.linspace(6, 10, 40), previous, track_record={"mase": float("nan"), "held": 3},
                                  spikes=spikes))
    spec = plan.document["spec"]
    assert spec["trackRecord"] == {"mase": None, "held": 3}
    assert spec["unexplainedPeaks"] == []
    # one row per resource of the pool whose node count changed
    assert sorted(plan.diff["resource"]) == ["cpu", "memory", "pods"]
    assert set(plan.diff["previous_run_id"]) == {"r0"}
    assert plan.diff["why"].str.contains("inventory changed (4 -> 5 nodes)", regex=False).all()


def test_replay_removes_old_overlays_and_applies_the_new_calendar():
    from forecasting.events import AddedWorkload, Event, replay_events

    ts = pd.date_range(pd.Timestamp(AS_OF, tz="UTC"), periods=4, freq="D")
    base = demand_frame("cpu", "usage", [10.0] * 4).assign(series_id="s", tier="compute", model="m",
                                                          yhat_baseline=10.0)
    stored = base.copy()
    for c in [c for c in stored.columns if c.startswith(("yhat", "q"))]:
        stored[c] = stored[c] * np.array([1.0, 2.0, 1.0, 1.0])  # an old event doubled day 2
    stored["yhat_baseline"] = 10.0
    sale = Event(name="sale", kind="uplift", start=AS_OF + dt.timedelta(days=2), end=AS_OF + dt.timedelta(days=2),
                 uplift_pct=50)
    extra = AddedWorkload(cluster="c", pool="p", resource="cpu", amount=1.0, **{"from": AS_OF + dt.timedelta(days=3)})
    out, overlays = replay_events(stored, [sale], AS_OF, {("c", "p"): "compute"}, [extra])
    # day 2's old doubling is gone, day 3 gets +50%, day 4 the added core
    assert list(out["yhat"]) == [10.0, 10.0, 15.0, 11.0]
    assert out["q900"].iloc[1] == pytest.approx(base["q900"].iloc[1])
    assert list(overlays["event"]) == ["sale"] and overlays["ts"].iloc[0] == ts[2]
