"""A capacity planner's hand computation, written down, for three pools of one demo run:
a late compute pool, a storage pool and a pool that rents for a short event. Every number
is recomputed from the run's own inputs (inventory, forecast quantiles, catalog prices,
policies) with the arithmetic of docs/ARCHITECTURE.md ("The numbers") and compared with
the CSV and the YAML the run wrote."""

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from forecasting.risk import crossing_probability
from pipelines.jobs import RunRequest, run

from ..conftest import AS_OF, write_config

HOURS = 730  # a month of an hourly price
GB_PER_GIB = 2**30 / 1e9
PRICES = {"c6i.2xlarge": (0.34, 65, 37), "i4i.4xlarge": (1.373, 60, 37), "t3.medium": (0.0416, 70, 37)}  # catalogs/instances.yaml
POLICY = {"compute": (70, 0), "data": (0, 60), "edge": (0, 0)}  # spot %, reserved % (capplan.yaml + the overrides below)
LEAD = {"data": 150, "storage": 21, "edge": 30, "compute": 30}


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hand")
    cfg = write_config(folder)
    events = yaml.safe_load((folder / "catalogs" / "events.yaml").read_text())
    events["events"].append({"name": "flash-sale", "kind": "uplift", "start": "2027-01-20", "end": "2027-01-25",
                             "uplift_pct": 90, "scope": {"level": "tier", "names": ["edge"]}, "reason": "a one-off sale"})
    (folder / "catalogs" / "events.yaml").write_text(yaml.safe_dump(events, sort_keys=False))
    overrides = {"policies": {"overrides": [
        {"match": {"tier": "compute"}, "set": {"spot_ratio_pct": 70}},
        {"match": {"tier": "data"}, "set": {"reserved_ratio_pct": 60, "lead_time_days": 150}},  # long: a late pool
        {"match": {"tier": "storage"}, "set": {"storage_type": "gp3", "lead_time_days": 21}}]}}
    result = run(RunRequest(config_path=str(cfg), overrides=overrides))
    con = duckdb.connect(str(folder / "data" / "capplan.duckdb"), read_only=True)
    tables = {t: con.execute(f"SELECT * FROM {t} WHERE run_id = ?", [result.run_id]).df()
              for t in ("inventory", "storage_pools", "forecasts", "decisions", "plans")}
    con.close()
    return result, tables


def blend(spot: float, reserved: float, spot_discount: float, reserved_discount: float) -> float:
    return spot / 100 * (1 - spot_discount / 100) + reserved / 100 * (1 - reserved_discount / 100) + 1 - (spot + reserved) / 100


def first_day_over(fc: pd.DataFrame, limit: float, risk: float = 0.10) -> dt.date | None:
    """The risk rule: the first day the chance of having crossed ``limit`` exceeds 10%."""
    p = crossing_probability(fc, limit, float(fc["dependence"].iloc[0]))
    hit = np.flatnonzero(p > risk)
    return pd.Timestamp(fc["ts"].iloc[hit[0]]).date() if len(hit) else None


def series(tables, cluster, pool, resource, kind):
    f = tables["forecasts"]
    return f[(f.cluster == cluster) & (f.pool == pool) & (f.resource == resource) & (f.kind == kind)].sort_values("ts").reset_index(drop=True)


def csv_and_yaml(result, cluster, pool):
    csv = pd.read_csv(result.files["csv"])
    doc = yaml.safe_load(result.files["plan"].read_text())
    items = [a for step in doc["spec"]["expansionPlan"] for a in step["actions"] if (a["cluster"], a["pool"]) == (cluster, pool)]
    return csv[(csv.cluster == cluster) & (csv.pool == pool)], items


def test_a_late_compute_pool_by_hand(hand_run):
    result, t = hand_run
    plans = t["plans"]
    late = plans[plans["late"] & (plans["action"] == "add-nodes") & (plans["tier"] == "data")]
    assert len(late), "the data tier's 150-day lead time makes a late pool"
    a = late.iloc[0]
    cluster, pool, resource = a["cluster"], a["pool"], a["binding_resource"]
    d = t["decisions"].set_index(["cluster", "pool", "resource"]).loc[(cluster, pool, resource)]
    nodes = t["inventory"][(t["inventory"].cluster == cluster) & (t["inventory"].pool == pool)]
    col = {"cpu": "cpu_cores", "memory": "memory_bytes", "pods": "pods"}[resource]
    sizes = np.sort(nodes[col].to_numpy())[::-1]
    usable = sizes.sum() - sizes[:2].sum()  # N+2: lose the two largest nodes
    assert d["usable"] == pytest.approx(usable)
    fc = series(t, cluster, pool, resource, d["binding_kind"])
    trigger = first_day_over(fc, 0.70 * usable)
    lead = max(LEAD["data"], 45)  # the policy's 150 days beat i4i.4xlarge's catalog 45
    assert pd.Timestamp(d["trigger_date"]).date() == trigger
    assert int(d["lead_time_days"]) == lead
    order_by = trigger - dt.timedelta(days=lead)
    assert pd.Timestamp(a["order_by_date"]).date() == order_by and order_by <= AS_OF
    arrival = AS_OF + dt.timedelta(days=lead)
    before = fc[pd.DatetimeIndex(fc["ts"]).date < arrival]
    assert d["arrival_peak_pct"] == pytest.approx(100 * before["q900"].max() / usable)  # the 90th percentile: 10% risk
    assert bool(d["arrival_over_usable"]) == bool(before["q900"].max() >= usable)
    # the fewest nodes of the pool's own type (same size as today's, so N+2 still loses two of them)
    n, alloc = int(a["quantity"]), float(np.median(nodes[col]))
    for kind in ("usage", "requests"):
        f = series(t, cluster, pool, resource, kind)
        p_after = crossing_probability(f, 0.70 * (usable + n * alloc), float(f["dependence"].iloc[0]))[-1]
        assert p_after <= 0.10 + 1e-9, kind  # enough for the whole horizon at the accepted risk
    p_one_less = max(crossing_probability(f, 0.70 * (usable + (n - 1) * alloc), float(f["dependence"].iloc[0]))[-1]
                     for f in (series(t, cluster, pool, r, k) for r in ("cpu", "memory", "pods") for k in ("usage", "requests"))
                     if len(f))
    assert p_one_less > 0.10 - 1e-9 or n == 0  # one node fewer would not do (for some resource)
    hourly, spot_d, res_d = PRICES[a["instance_type"]]
    monthly = n * hourly * HOURS * blend(*POLICY["data"], spot_d, res_d)
    assert a["monthly_cost_usd"] == pytest.approx(monthly)
    assert a["next_12m_cost_usd"] == pytest.approx(monthly * (AS_OF + dt.timedelta(days=365) - arrival).days * 24 / HOURS)
    assert int(a["reserved_nodes"]) == round(n * 0.6)
    csv, items = csv_and_yaml(result, cluster, pool)
    assert csv["monthly_cost_usd"].sum() == pytest.approx(monthly)
    assert items[0]["estimatedCost"] == f"${monthly:,.0f}/month" and items[0]["late"] is True
    assert items[0]["reservedCommitment"] == {"share": "60%", "term": "1y", "nodes": round(n * 0.6)}


def test_a_storage_pool_by_hand(hand_run):
    result, t = hand_run
    plans = t["plans"]
    rows = plans[plans["action"] == "expand-storage"]
    assert len(rows), "the demo's storage grows into its 75% threshold"
    a = rows.iloc[0]
    cluster, pool = a["cluster"], a["pool"]
    cap = float(t["storage_pools"].set_index(["cluster", "pool"]).loc[(cluster, pool), "capacity"])
    fc = series(t, cluster, pool, "storage", "usage")
    trigger = first_day_over(fc, 0.75 * cap)  # no N+k: 75% of raw capacity
    assert pd.Timestamp(a["needed_by_date"]).date() == trigger
    assert pd.Timestamp(a["order_by_date"]).date() == trigger - dt.timedelta(days=LEAD["storage"])
    tib = 2**40
    n = int(round(a["storage_gib"] / 1024))
    p = lambda capacity: crossing_probability(fc, 0.75 * capacity, float(fc["dependence"].iloc[0]))[-1]  # noqa: E731
    assert p(cap + n * tib) <= 0.10 + 1e-9 and p(cap + (n - 1) * tib) > 0.10  # the fewest 1 TiB increments
    monthly = n * 1024 * GB_PER_GIB * 0.08  # GiB -> GB at $0.08 per GB-month
    assert a["monthly_cost_usd"] == pytest.approx(monthly)
    start = max(trigger, AS_OF) if not a["late"] else AS_OF + dt.timedelta(days=LEAD["storage"])
    assert a["next_12m_cost_usd"] == pytest.approx(monthly * (AS_OF + dt.timedelta(days=365) - start).days * 24 / HOURS)
    csv, items = csv_and_yaml(result, cluster, pool)
    assert csv["summary"].iloc[0] == f"'+{n} TiB gp3" and items[0]["capacity"] == f"+{n}Ti"
    assert items[0]["estimatedCost"] == f"${monthly:,.0f}/month"


def test_a_short_event_rents_by_hand(hand_run):
    result, t = hand_run
    plans = t["plans"]
    rent = plans[plans["action"] == "rent-nodes"]
    assert len(rent), "the 6-day flash sale makes an edge pool need capacity only for its window"
    a = rent.iloc[0]
    cluster, pool = a["cluster"], a["pool"]
    assert "flash-sale" in a["reason"] and a["temporary"]
    start, end = pd.Timestamp(a["rent_start"]).date(), pd.Timestamp(a["rent_end"]).date()
    trigger = pd.Timestamp(a["needed_by_date"]).date()
    order_by = trigger - dt.timedelta(days=2)  # 2 days to provision
    assert pd.Timestamp(a["order_by_date"]).date() == order_by and start == max(order_by, AS_OF)
    assert bool(a["late"]) == (order_by <= AS_OF)
    # the pool's decisions (the report's chart markers, the stored table) carry the rental's dates
    d = t["decisions"].set_index(["cluster", "pool", "resource"]).loc[(cluster, pool, a["binding_resource"])]
    assert pd.Timestamp(d["order_by_date"]).date() == order_by and int(d["lead_time_days"]) == 2
    assert d["risk_pct"] == pytest.approx(a["risk_pct"]) and bool(d["late"]) == bool(a["late"])
    days = (end - start).days + 1
    hourly, spot_d, _ = PRICES[a["instance_type"]]
    window = int(a["quantity"]) * hourly * blend(0, 0, spot_d, 0) * 24 * days  # on-demand (edge has no spot share)
    assert a["window_cost_usd"] == pytest.approx(window) and a["monthly_cost_usd"] == 0
    buy = int(a["quantity"]) * hourly * HOURS * 1.0 * (AS_OF + dt.timedelta(days=365) - trigger).days * 24 / HOURS
    assert a["buy_12m_cost_usd"] == pytest.approx(buy) and window < buy  # the cheaper is recommended
    csv, items = csv_and_yaml(result, cluster, pool)
    assert csv["action"].tolist() == ["rent-nodes"]
    assert items[0]["temporary"]["rentCost"] == f"${window:,.0f}" and items[0]["temporary"]["rentFrom"] == str(start)
