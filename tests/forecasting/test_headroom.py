"""Capacity math on tables small enough to check on paper."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from statistics import NormalDist

from forecasting.frames import QUANTILE_COLUMNS, QUANTILES
from forecasting.headroom import decisions, measured_peaks, quantile_at, storage_capacity, usable_capacity, utilisation
from forecasting.policy import PoolPolicy

GIB = 2**30
AS_OF = dt.date(2026, 1, 1)


def nodes(n, cpu=4.0, mem_gib=16.0, pods=110, zones=("a",), pool="p", cluster="c", tier="compute"):
    return pd.DataFrame({
        "cluster": cluster, "pool": pool, "tier": tier, "zone": [zones[i % len(zones)] for i in range(n)],
        "node": [f"n{i}" for i in range(n)], "instance_type": "t", "cpu_cores": cpu,
        "memory_bytes": mem_gib * GIB, "pods": float(pods), "storage_bytes": 0.0,
    })


def policy(**kw):
    return lambda cluster, pool, tier=None: PoolPolicy(**kw)


def demand_frame(resource, kind, values, cluster="c", pool="p", start=AS_OF, spread=0.1, dependence=1.0):
    """Daily forecasts whose predictive distribution is normal with sd = ``spread`` x yhat /
    1.2816, so the 80% interval is yhat x (1 -/+ spread) and q900 is yhat_upper."""
    ts = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=len(values), freq="D")
    v = np.asarray(values, dtype=float)
    sd = spread * v / NormalDist().inv_cdf(0.9)
    quantiles = {c: v + NormalDist().inv_cdf(q) * sd for c, q in zip(QUANTILE_COLUMNS, QUANTILES)}
    return pd.DataFrame({"cluster": cluster, "pool": pool, "resource": resource, "kind": kind, "ts": ts,
                         "yhat": v, "yhat_lower": v * (1 - spread), "yhat_upper": v * (1 + spread), **quantiles,
                         "dependence": dependence})


def test_n_plus_2_by_node_removes_the_two_largest_nodes():
    inv = pd.concat([nodes(3, cpu=4), nodes(2, cpu=8).assign(node=["b0", "b1"])], ignore_index=True)
    u = usable_capacity(inv, policy()).set_index("resource")
    assert u.loc["cpu", "capacity"] == 28
    assert u.loc["cpu", "lost"] == 16  # the two 8-core nodes
    assert u.loc["cpu", "usable"] == 12
    assert not u.loc["cpu", "too_small"]


def test_n_plus_k_by_zone():
    inv = nodes(6, cpu=4, zones=("a", "b", "c"))
    u1 = usable_capacity(inv, policy(failure_unit="zone", redundancy_k=1)).set_index("resource")
    u2 = usable_capacity(inv, policy(failure_unit="zone", redundancy_k=2)).set_index("resource")
    assert u1.loc["cpu", "usable"] == 16 and u1.loc["cpu", "units"] == 3
    assert u2.loc["cpu", "usable"] == 8


def test_pool_too_small_for_its_n_plus_k_is_flagged():
    u = usable_capacity(nodes(2), policy()).set_index("resource")
    assert u.loc["cpu", "too_small"] and u.loc["cpu", "usable"] == 0


def test_trigger_order_by_and_status():
    inv = nodes(5)  # usable cpu = 12
    demand = demand_frame("cpu", "usage", [6, 7, 8, 8.4, 9, 10])  # 70% of 12 = 8.4
    d = demand.copy()
    u = utilisation(d, usable_capacity(inv, policy(demand_bound="point")), policy(demand_bound="point"))
    measured = pd.DataFrame({"cluster": ["c"], "pool": ["p"], "resource": ["cpu"], "kind": ["usage"], "measured_peak": [6.0]})
    dec = decisions(u, policy(demand_bound="point", lead_time_days=2), AS_OF, 180, measured=measured).set_index("resource")
    assert dec.loc["cpu", "trigger_date"] == AS_OF + dt.timedelta(days=3)
    assert dec.loc["cpu", "order_by_date"] == AS_OF + dt.timedelta(days=1)
    assert dec.loc["cpu", "status"] == "amber" and not dec.loc["cpu", "late"]
    assert dec.loc["cpu", "days_of_headroom"] == 3
    assert dec.loc["cpu", "measured_peak_pct"] == pytest.approx(50.0)  # 6 of 12 usable, measured
    assert dec.loc["cpu", "forecast_peak_pct"] == pytest.approx(100 * 10 / 12)
    late = decisions(u, policy(demand_bound="point", lead_time_days=30), AS_OF, 180).set_index("resource")
    assert late.loc["cpu", "late"] and late.loc["cpu", "status"] == "red"


def test_upper_bound_demand():
    inv = nodes(5)
    u = utilisation(demand_frame("cpu", "usage", [8.0]), usable_capacity(inv, policy()), policy(demand_bound="upper"))
    assert u["demand"].iloc[0] == pytest.approx(8.8)  # yhat_upper


def test_risk_is_the_default_and_plans_on_the_matching_quantile():
    inv = nodes(5)
    assert PoolPolicy().demand_bound == "risk" and PoolPolicy().max_late_risk_pct == 10
    u = utilisation(demand_frame("cpu", "usage", [8.0]), usable_capacity(inv, policy()), policy())
    assert u["demand"].iloc[0] == pytest.approx(8.8)  # the 90th percentile: 1 - 10% risk
    u25 = utilisation(demand_frame("cpu", "usage", [8.0]), usable_capacity(inv, policy()), policy(max_late_risk_pct=25))
    assert u25["demand"].iloc[0] == pytest.approx(8 + NormalDist().inv_cdf(0.75) * 0.8 / NormalDist().inv_cdf(0.9))


def test_quantile_at_interpolates_in_probability():
    f = pd.DataFrame({c: [float(i)] for i, c in enumerate(QUANTILE_COLUMNS)})
    i900 = QUANTILE_COLUMNS.index("q900")
    assert quantile_at(f, 0.9)[0] == i900
    assert quantile_at(f, 0.925)[0] == pytest.approx(i900 + 0.5)  # halfway from 0.90 to 0.95
    with pytest.raises(ValueError, match="outside"):
        quantile_at(f, 0.999)


def test_risk_trigger_keeps_the_chance_of_being_late_under_the_policy():
    """Comonotone errors: P(crossed by t) is the largest daily exceedance so far, so the
    trigger is the first day P(demand_t >= 8.4) > 10%, i.e. the day q900 reaches 8.4."""
    inv = nodes(5)  # usable 12, threshold 8.4
    d = demand_frame("cpu", "usage", np.linspace(6, 9, 31))
    u = utilisation(d, usable_capacity(inv, policy()), policy())
    dec = decisions(u, policy(lead_time_days=5), AS_OF, 30).iloc[0]
    first_q900 = int(np.argmax(d["q900"].to_numpy() > 8.4))
    assert dec["trigger_date"] == AS_OF + dt.timedelta(days=first_q900)
    assert dec["risk_pct"] <= 10.0 + 1e-9  # ordered on the order-by date, late at most 10% of the time
    assert dec["horizon_risk_pct"] > 50  # by the end, a crossing is likely
    independent = decisions(utilisation(demand_frame("cpu", "usage", np.linspace(6, 9, 31), dependence=0.0),
                                        usable_capacity(inv, policy()), policy()), policy(lead_time_days=5), AS_OF, 30).iloc[0]
    assert independent["trigger_date"] <= dec["trigger_date"]  # independent days accumulate risk faster


def test_late_pool_says_what_happens_before_capacity_arrives():
    inv = nodes(5)  # raw 20 cores, usable 12
    d = demand_frame("cpu", "usage", [10, 11, 12.5, 13, 21, 21], spread=0.0001)
    u = utilisation(d, usable_capacity(inv, policy(demand_bound="point")), policy(demand_bound="point"))
    dec = decisions(u, policy(demand_bound="point", lead_time_days=4), AS_OF, 6).iloc[0]
    assert dec["late"] and dec["earliest_arrival_date"] == AS_OF + dt.timedelta(days=4)
    assert dec["arrival_peak_pct"] == pytest.approx(100 * 13 / 12)  # days 0-3 before arrival
    assert dec["arrival_over_usable"] and not dec["arrival_over_raw"]  # 13 > 12 usable, < 20 raw
    longer = decisions(u, policy(demand_bound="point", lead_time_days=5), AS_OF, 6).iloc[0]
    assert longer["arrival_over_raw"]  # day 4 reaches 21 > 20 raw: pods would not schedule


def test_spot_nodes_of_one_type_can_fail_together():
    inv = nodes(10, cpu=4).assign(capacity_type=["spot"] * 7 + ["on-demand"] * 3)
    apart = usable_capacity(inv, policy()).set_index("resource").loc["cpu"]
    together = usable_capacity(inv, policy(spot_failure="together")).set_index("resource").loc["cpu"]
    assert apart["usable"] == 40 - 8  # two nodes
    assert together["usable"] == 40 - 28 - 4  # the spot group (7 x 4) and one on-demand node
    assert together["failure_unit"] == "node + spot groups" and together["units"] == 4


def test_measured_peak_is_the_highest_daily_peak_of_the_last_7_days():
    ts = pd.date_range(pd.Timestamp(AS_OF, tz="UTC") - pd.Timedelta(days=10), periods=10, freq="D")
    daily = pd.DataFrame({"cluster": "c", "pool": "p", "resource": "cpu", "kind": "usage", "ts": ts,
                          "value": [50, 1, 2, 3, 9, 5, 6, 7, 8, 4.0]})
    m = measured_peaks(daily, AS_OF)
    assert m["measured_peak"].iloc[0] == 9  # day -6; the 50 of day -10 is older than 7 days


def test_binding_kind_is_the_one_with_less_headroom():
    inv = nodes(5)
    d = pd.concat([demand_frame("cpu", "usage", [5, 6, 7, 8, 9]), demand_frame("cpu", "requests", [8, 9, 9, 9, 9])])
    u = utilisation(d, usable_capacity(inv, policy(demand_bound="point")), policy(demand_bound="point"))
    dec = decisions(u, policy(demand_bound="point"), AS_OF, 180).set_index("resource")
    assert dec.loc["cpu", "binding_kind"] == "requests"
    assert dec.loc["cpu", "trigger_date"] == AS_OF + dt.timedelta(days=1)


def test_no_trigger_within_horizon_is_green():
    inv = nodes(5)
    u = utilisation(demand_frame("cpu", "usage", [1, 2, 3]), usable_capacity(inv, policy()), policy())
    dec = decisions(u, policy(), AS_OF, 90).iloc[0]
    assert dec["trigger_date"] is None and dec["status"] == "green" and dec["days_of_headroom"] == 90


def test_handbook_example_on_paper():
    """100 nodes, 400 CPU, 1600 Gi at 65% CPU / 72% memory; storage 50 Ti, 35 Ti used, +2 Ti/month.

    N+2 usable: 392 cores, 1568 Gi. Memory: 1152 Gi / 1568 Gi = 73.5% >= 70%: triggers today.
    CPU growing 5 cores a month from 260: 0.7 * 392 = 274.4 reached after 86.4 days -> day 87.
    Storage (no N+k): 75% of 50 Ti = 37.5 Ti reached after 2.5 Ti / (2 Ti / 30 d) = 37.5 days -> day 38.
    Order-by with 30 days of lead time: CPU day 57, storage day 8; memory is late.
    """
    inv = nodes(100, cpu=4, mem_gib=16)
    days = np.arange(120)
    d = pd.concat([
        demand_frame("cpu", "usage", 260 + 5 / 30 * days),
        demand_frame("memory", "usage", np.full(120, 1152.0 * GIB)),
        demand_frame("storage", "usage", (35 + 2 / 30 * days) * 2**40, pool="ceph"),
    ])
    usable = pd.concat([usable_capacity(inv, policy(demand_bound="point")),
                        storage_capacity(pd.DataFrame({"cluster": ["c"], "pool": ["ceph"], "capacity": [50 * 2**40]}))])
    pol = policy(demand_bound="point", lead_time_days=30)
    dec = decisions(utilisation(d, usable, pol), pol, AS_OF, 120).set_index("resource")
    assert usable.set_index("resource").loc["cpu", "usable"] == 392
    assert dec.loc["memory", "forecast_peak_pct"] == pytest.approx(73.47, abs=0.01)
    assert dec.loc["memory", "trigger_date"] == AS_OF and dec.loc["memory", "late"]
    assert dec.loc["cpu", "trigger_date"] == AS_OF + dt.timedelta(days=87)
    assert dec.loc["cpu", "order_by_date"] == AS_OF + dt.timedelta(days=57)
    assert dec.loc["storage", "threshold_pct"] == 75
    assert dec.loc["storage", "trigger_date"] == AS_OF + dt.timedelta(days=38)
    assert dec.loc["storage", "order_by_date"] == AS_OF + dt.timedelta(days=8)


def test_per_resource_threshold_override():
    p = PoolPolicy(thresholds_pct={"memory": 85})
    assert p.threshold_for("memory") == 85 and p.threshold_for("cpu") == 70 and p.threshold_for("storage") == 75
