"""Autoscaled pools, quotas and commitments on tables small enough to check on paper."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from forecasting.autoscaling import (
    AutoscaledInputs, ceilings, limit_patch, limit_summary, limits_in_force, needed_nodes, new_limits, pool_shape,
)
from forecasting.commitments import (
    Commitment, CommitmentCatalog, SpendSamples, coverage, realised_cost, recommend, spend_hours, trailing_rule,
    uncovered_spend,
)
from forecasting.frames import QUANTILES
from forecasting.policy import Catalog, InstanceType, PoolPolicy
from forecasting.quotas import Quota, QuotaCatalog, instance_family, quota_runway, quota_usage

from .test_headroom import AS_OF, GIB, demand_frame, nodes

EXACT = {"allocatable_cpu_fraction": 1.0, "allocatable_memory_fraction": 1.0}


def catalog():
    return Catalog(prices_as_of="2026-11-01", instance_types=[
        InstanceType(name="t", vcpu=4, memory_gib=16, on_demand_hourly_usd=1.0, **EXACT),
        InstanceType(name="big", vcpu=16, memory_gib=32, on_demand_hourly_usd=4.0, **EXACT),
    ])


def autoscaled(**kw):
    kw.setdefault("instance_types", ["big"])
    return lambda cluster, pool, tier=None: PoolPolicy(pool_kind="autoscaled", **kw)


def limit_rows(**values):
    ts = pd.Timestamp(AS_OF, tz="UTC") - pd.Timedelta(days=10)
    return pd.DataFrame([{"cluster": "c", "pool": "p", "source": "karpenter", "resource": r, "ts": ts, "value": v}
                         for r, v in values.items()])


def test_ceiling_is_what_the_tightest_limit_allows_minus_k_plus_one_nodes():
    # 5 x (4 cores, 16 GiB); cpu limit 40 cores -> 10 nodes; memory limit 128 GiB -> 8 nodes: memory binds
    only_t = autoscaled(instance_types=[])
    lim = limits_in_force(limit_rows(cpu=40, memory=128 * GIB), nodes(5), only_t, AS_OF)
    c = ceilings(nodes(5), lim, only_t, catalog()).set_index("resource")
    assert c.loc["cpu", "binding_limit"] == "memory" and c.loc["cpu", "node_ceiling"] == 8
    assert c.loc["cpu", "capacity"] == 32  # 8 nodes x 4 cores
    assert c.loc["cpu", "lost"] == 12  # N+2 and one node of granularity: 3 x 4 cores
    assert c.loc["cpu", "usable"] == 20
    assert "the cpu limit of 40 cores cannot be reached: the memory limit stops the pool at 32 cores even with t" \
        in c.loc["cpu", "unreachable"]
    # with big (16 cores, 32 GiB) allowed, 128 GiB hold 64 cores: reachable; the largest
    # allowed node sets the margin (3 x 16 cores)
    with_big = ceilings(nodes(5), lim, autoscaled(), catalog()).set_index("resource")
    assert with_big.loc["cpu", "unreachable"] is None and with_big.loc["cpu", "lost"] == 48

def test_a_limit_no_allowed_type_can_reach_is_flagged():
    inv = nodes(5)
    lim = limits_in_force(limit_rows(cpu=400, nodes=10), inv, autoscaled(), AS_OF)
    note = ceilings(inv, lim, autoscaled(instance_types=["big"]), catalog())["unreachable"].iloc[0]
    # 10 nodes of the largest allowed type (big, 16 cores) hold 160 cores < 400
    assert note == ("the cpu limit of 400 cores cannot be reached: the nodes limit stops the pool at 160 cores even with "
                    "big, the allowed type that holds the most cpu")
    reachable = limits_in_force(limit_rows(cpu=100, nodes=10), inv, autoscaled(), AS_OF)
    assert ceilings(inv, reachable, autoscaled(instance_types=["big"]), catalog())["unreachable"].iloc[0] is None


def test_limits_history_keeps_the_value_in_force_on_the_plan_date():
    ts = pd.Timestamp(AS_OF, tz="UTC")
    hist = pd.DataFrame([
        {"cluster": "c", "pool": "p", "source": "karpenter", "resource": "cpu", "ts": ts - pd.Timedelta(days=30), "value": 20.0},
        {"cluster": "c", "pool": "p", "source": "karpenter", "resource": "cpu", "ts": ts - pd.Timedelta(days=5), "value": 40.0},
        {"cluster": "c", "pool": "p", "source": "karpenter", "resource": "cpu", "ts": ts + pd.Timedelta(days=5), "value": 80.0},
    ])
    now = limits_in_force(hist, nodes(5), autoscaled(), AS_OF)
    assert now["value"].tolist() == [40.0] and now["since"].iloc[0] == (ts - pd.Timedelta(days=5)).date()


def test_a_limit_no_longer_reported_while_the_cluster_reports_others_is_not_in_force():
    """A NodePool whose memory limit was deleted 10 days ago (its series stopped while the
    cluster's other limit series went on), and a pool q whose limits all stopped: neither
    old value binds; q is planned as unlimited, for review. Limits that all stop together
    (the ingest ended) stay in force."""
    end = pd.Timestamp(AS_OF, tz="UTC")
    days = pd.date_range(end - pd.Timedelta(days=30), end - pd.Timedelta(hours=1), freq="1D")

    def series(pool, resource, value, until):
        return [{"cluster": "c", "pool": pool, "source": "karpenter", "resource": resource, "ts": t, "value": value}
                for t in days if t <= until]

    hist = pd.DataFrame(series("p", "cpu", 400.0, end) + series("p", "memory", 64 * GIB, end - pd.Timedelta(days=10))
                        + series("q", "cpu", 40.0, end - pd.Timedelta(days=10)))
    inv = pd.concat([nodes(5), nodes(5, pool="q")], ignore_index=True)
    now = limits_in_force(hist, inv, autoscaled(), AS_OF)
    assert now[["pool", "resource"]].values.tolist() == [["p", "cpu"]]
    auto = AutoscaledInputs.build(inv, hist, autoscaled(), catalog(), AS_OF)
    assert ("c", "q") in auto.shapes and ("c", "q") not in auto.limits  # unlimited: the plan marks it for review
    assert auto.limits[("c", "p")].values == {"cpu": 400.0}

    stopped_together = hist[hist["pool"] == "p"].assign(ts=lambda d: d["ts"].clip(upper=end - pd.Timedelta(days=10)))
    kept = limits_in_force(stopped_together, nodes(5), autoscaled(), AS_OF)
    assert sorted(kept["resource"]) == ["cpu", "memory"]


def test_config_limits_stand_in_when_no_metric_says():
    now = limits_in_force(limit_rows().iloc[0:0], nodes(5), autoscaled(limits={"cpu": 64, "memory_gib": 512}), AS_OF)
    assert dict(zip(now["resource"], now["value"])) == {"cpu": 64.0, "memory": 512 * GIB}
    assert set(now["source"]) == {"config"}


def test_new_limits_cover_the_needed_nodes_and_the_patch_is_ready():
    shape = pool_shape(nodes(5), catalog())
    raised = new_limits({"cpu": 40.0, "memory": 128 * GIB}, {"cpu": 50.0}, shape)  # 50 cores -> 13 nodes
    assert raised == {"cpu": 52.0, "memory": 208 * GIB}
    assert limit_summary({"cpu": 40.0, "memory": 128 * GIB}, raised) == "raise limits: cpu 40 -> 52 cores, memory 128 -> 208 GiB"
    patch = limit_patch("karpenter", "compute", raised)
    assert patch == 'kubectl patch nodepool compute --type merge -p \'{"spec":{"limits":{"cpu":"52","memory":"208Gi"}}}\''
    assert limit_patch("cluster-autoscaler", "ng-1", {"nodes": 13.0}) == "node group ng-1: max size 13"


def test_needed_nodes_is_demand_at_the_threshold_plus_margin_in_nodes():
    inv, only_t = nodes(5), autoscaled(instance_types=[])
    lim = limits_in_force(limit_rows(cpu=400), inv, only_t, AS_OF)
    auto = AutoscaledInputs.build(inv, limit_rows(cpu=400), only_t, catalog(), AS_OF)
    f = demand_frame("cpu", "requests", [14.0, 28.0], spread=0.0)
    n = needed_nodes(f, ceilings(inv, lim, only_t, catalog()), only_t, auto.shapes)
    # 14 cores at 70% -> 20 cores + 3 x 4 lost = 32 cores = 8 nodes; 28 -> 40 + 12 = 52 -> 13 nodes
    assert n["q500"].tolist() == pytest.approx([8.0, 13.0])


def test_quota_counts_its_families_capacity_types_and_planned_additions():
    inv = pd.concat([nodes(4).assign(capacity_type="on-demand"), nodes(2).assign(capacity_type="spot", node=["s0", "s1"]),
                     nodes(3, pool="q").assign(instance_type="big", capacity_type="on-demand")], ignore_index=True)
    q = Quota(code="L-1", cloud="aws", account="1", region="us-east-1", value=100, families=["t"], clusters=["c"],
              lead_time_days=10)
    days = pd.date_range(pd.Timestamp(AS_OF, tz="UTC"), periods=4, freq="D")
    adds = pd.DataFrame([{"action": "add-nodes", "cluster": "c", "pool": "p", "quantity": 5, "instance_type": "t",
                          "spot_ratio_pct": 40.0, "needed_by_date": AS_OF + dt.timedelta(days=2), "late": False}])
    empty = pd.DataFrame(columns=["cluster", "pool", "ts"])
    use = quota_usage(q, inv, adds, empty, {}, lambda c, p, t=None: PoolPolicy(), catalog(), days, AS_OF)
    # 4 on-demand t nodes = 16 vCPU; from day 3, 5 more at 60% on-demand = 12 vCPU; big and spot not counted
    assert use["q500"].tolist() == pytest.approx([16, 16, 28, 28])


def test_quota_crossing_and_file_by_date():
    q = Quota(code="L-1", cloud="aws", account="1", region="us-east-1", value=100, clusters=["c"], lead_time_days=10)
    days = pd.date_range(pd.Timestamp(AS_OF, tz="UTC"), periods=40, freq="D")
    v = np.linspace(80, 120, 40)  # crosses 100 on day 20 (index 20 -> 100.5)
    use = pd.DataFrame({"ts": days, **{c: v for c in demand_frame("cpu", "usage", [1.0]).filter(regex="^q").columns}})
    r = quota_runway(q, use, AS_OF, 10)
    assert r["crossing_date"] == r["crossing_p50_date"] == (days[20]).date()
    assert r["file_by_date"] == (days[10]).date() and not r["late"] and r["status"] == "amber"
    assert r["new_value"] == 200.0  # 120 vCPU peak, in whole hundreds


def test_bad_quota_catalog_entries_are_rejected():
    base = {"code": "L-1", "cloud": "aws", "account": "1", "region": "us-east-1", "value": 10, "clusters": ["c"],
            "lead_time_days": 3}
    with pytest.raises(ValueError, match="unknown aws region 'us-middle-1'"):
        Quota(**{**base, "region": "us-middle-1"})
    with pytest.raises(ValueError, match="greater than 0"):
        Quota(**{**base, "value": -5})
    with pytest.raises(ValueError, match="listed twice"):
        QuotaCatalog(quotas=[base, base])
    assert instance_family("c6i.2xlarge") == "c6i" and instance_family("n2-standard-2") == "n2"


def test_commitment_pays_off_where_used_at_least_one_minus_discount_of_the_time():
    # spend is 10 half the time and 20 the other half: at 30% discount, covering 20 is used
    # half the time (< 70%): not worth it; covering 10 always is
    days = pd.date_range(pd.Timestamp(AS_OF, tz="UTC"), periods=30, freq="D")
    values = np.where(np.arange(24) < 12, 10.0, 20.0)[None, :, None] * np.ones((30, 24, len(QUANTILES)))
    rec = recommend(SpendSamples(days, values, np.full(len(QUANTILES), 1 / len(QUANTILES))), d1=None, d3=0.3, grid=40)
    buy = rec.first
    assert buy.cover_3y == pytest.approx(10.0, abs=0.6) and buy.cover_1y == 0
    assert buy.hourly_3y == pytest.approx(buy.cover_3y * 0.7)
    assert rec.saving_per_month > 0 and rec.unused_chance == pytest.approx(0.0, abs=0.01)
    # the trailing rule on the same hours picks the same level; realised cost is lower than none
    hours = values[:, :, 0].ravel()
    x = trailing_rule(hours, 0.3)
    assert x == pytest.approx(10.0) and realised_cost(hours, x, 0.3) < realised_cost(hours, 0.0, 0.3)


def test_existing_commitments_cover_until_they_expire_and_bad_ones_are_rejected():
    sp = Commitment(name="sp", type="savings-plan", hourly_usd=7.0, discount_pct=30, term_years=1,
                    start=AS_OF - dt.timedelta(days=300), expiry=AS_OF + dt.timedelta(days=2))
    days = pd.date_range(pd.Timestamp(AS_OF, tz="UTC"), periods=4, freq="D")
    assert coverage([sp], {}, days).tolist() == pytest.approx([10.0, 10.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="expiry .* is not after start"):
        Commitment(name="x", type="savings-plan", hourly_usd=1, discount_pct=30, term_years=1, start=AS_OF, expiry=AS_OF)
    with pytest.raises(ValueError, match="listed twice"):
        CommitmentCatalog(commitments=[sp, sp])


def test_a_commitment_that_covers_everything_until_it_expires_is_replaced_when_it_expires():
    # spend 10 every hour; an existing commitment covers it all for the first 100 days
    days = pd.date_range(pd.Timestamp(AS_OF, tz="UTC"), periods=180, freq="D")
    spend = spend_hours(np.full((28, 24), 10.0), np.ones(180))
    sp = Commitment(name="sp", type="savings-plan", hourly_usd=7.0, discount_pct=30, term_years=1,
                    start=AS_OF - dt.timedelta(days=265), expiry=AS_OF + dt.timedelta(days=100))
    samples = uncovered_spend([spend], coverage([sp], {}, days), days)
    rec = recommend(samples, d1=0.2, d3=0.4, stages=[0, 100], grid=40)
    now, later = rec.purchases
    assert now.cover_1y == 0 and now.cover_3y == 0  # buying today would pay for 100 idle days
    assert later.day == AS_OF + dt.timedelta(days=100) and later.cover_3y == pytest.approx(10.0, abs=0.3)
    assert rec.saving_per_month > 0


def test_spend_hours_repeat_the_last_weeks_and_rise_only_with_growth():
    recent = np.arange(28)[:, None] * np.ones((1, 24))  # day k of the last four weeks spends k an hour
    hours = spend_hours(recent, np.array([1.0, 0.5, 2.0] + [1.0] * 27))
    assert hours[:, 0].tolist()[:3] == [0.0, 1.0, 4.0]  # day 1 is not lowered by a forecast decline
    assert hours[28, 0] == 0.0 and hours[29, 0] == 1.0  # day 28 takes the same weekday again


def test_recent_weeks_leave_out_weeks_with_a_declared_event():
    from forecasting.autoscaling import clean_weeks

    festival = {AS_OF - dt.timedelta(days=d) for d in range(9, 12)}  # inside the second week back
    weeks = clean_weeks(AS_OF, festival, weeks=2)
    assert weeks == [AS_OF - dt.timedelta(days=21), AS_OF - dt.timedelta(days=7)]
    assert all((AS_OF - w).days % 7 == 0 for w in weeks)  # whole weeks: the weekdays line up with the plan date's
