"""Limit-runway and commitment backtests (used by bench/decisions.py; runnable alone).

Figures, not a pass/fail test.

**Runway.** Each case is an autoscaled pool whose cpu requests follow a series (the
decision backtest's: seeded trending series, step-like requests, the real hourly series
and requests built from them), on c6i.2xlarge-like nodes (8 vCPU, 7.52 cores allocatable)
with a Karpenter cpu limit set so that the capacity the pool needs (demand at 70%, plus
N+2, plus one node) reaches it near the series' crossing day (a fresh crossing: demand
stayed below it in the two weeks before the cut and since). The history is cut 30, 45
and 60 days before that crossing and the whole plan runs on it (``forecasting.planning.make_plan``
with the limit as history): its P50 crossing is compared with the actual one, and a case is
**late** when the limit is actually crossed before the file-by date plus the lead time (the
risk crossing).

**Commitments.** Hourly spend follows a series (real hourly series, and two years of a
seeded trending series standing for a fleet's on-demand bill); at several origins a
commitment at a 30% discount is sized by capplan's rule (``forecasting.commitments.recommend``
on the forecast of the spend) and by Cost Explorer's trailing rule (the same quantile of the
last 30 days' hours), and both are charged what the following hours really cost. The real
series are 51-91 days long, so their windows are the rest of the series (at least 3 weeks);
the seeded series gives 6 monthly origins with 12 months each.

    python bench/runway.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
warnings.filterwarnings("ignore")

from decisions import consistent_with, kind_of_crossing, late_upper_bound, real_cases, step_cases, synthetic_cases  # noqa: E402

from forecasting import forecast_daily_peak  # noqa: E402
from forecasting.commitments import (  # noqa: E402
    SpendSamples, realised_cost, recommend, spend_hours, trailing_rule, uncovered_spend,
)
from forecasting.planning import PlanInputs, make_plan  # noqa: E402
from forecasting.policy import Catalog, InstanceType, PoolPolicy  # noqa: E402
from forecasting.series import daily_peak, regularize, to_series  # noqa: E402
from forecasting.synthetic import generate_series  # noqa: E402

VCPU, ALLOC = 8, 7.52
K = 2
THRESHOLD = 0.70
CUTS = (30, 45, 60)
LEAD_DAYS = 7
DISCOUNT = 0.30
POOL_CORES = 200.0
CATALOG = Catalog(prices_as_of="2026-11-01", instance_types=[
    InstanceType(name="c6i.2xlarge", vcpu=VCPU, memory_gib=16, on_demand_hourly_usd=0.34, allocatable_cpu_fraction=ALLOC / VCPU)])


def _policy(cluster, pool, tier=None) -> PoolPolicy:
    return PoolPolicy(pool_kind="autoscaled", redundancy_k=K, limit_lead_time_days=LEAD_DAYS, instance_types=[])


def limit_for(demand_peak: float) -> tuple[float, float]:
    """(cpu limit in cores, the demand peak at which the needed capacity reaches it)."""
    nodes = int(np.floor((demand_peak / THRESHOLD + (K + 1) * ALLOC) / ALLOC))  # the crossing at or just below the level
    usable = nodes * ALLOC - (K + 1) * ALLOC
    return float(nodes * VCPU), usable * THRESHOLD


def _one_pool(demand_peak: float, as_of: dt.date) -> pd.DataFrame:
    n = max(int(demand_peak / THRESHOLD / ALLOC), K + 2)
    return pd.DataFrame({"cluster": "c", "pool": "p", "tier": "compute", "zone": [f"z{i % 3}" for i in range(n)],
                         "node": [f"n{i}" for i in range(n)], "instance_type": "c6i.2xlarge", "cpu_cores": ALLOC,
                         "memory_bytes": 16 * 0.9 * 2**30, "pods": 110.0, "storage_bytes": 0.0, "capacity_type": "on-demand"})


def runway_case(name: str, source: str, df: pd.DataFrame, level: float, cut: int) -> dict | None:
    """One cut of one series: the plan's P50 and risk crossing of the limit against the actual one.
    The series is scaled so the crossing level is :data:`POOL_CORES` (a pool of some 40 nodes:
    one node of granularity is then a few percent, as in a real pool)."""
    scale = POOL_CORES / level
    df, level = df.assign(value=df["value"] * scale), POOL_CORES
    y, _ = regularize(to_series(df))
    peaks = daily_peak(y)
    limit, crossing_level = limit_for(level)
    values = peaks.to_numpy()
    start = max(cut, 28) + 28
    # a fresh crossing: none in the cut days before it nor the two weeks before the cut
    fresh = [d for d in np.flatnonzero(values >= crossing_level) if d >= start and values[d - cut - 14: d].max() < crossing_level]
    if not fresh:
        return None
    actual = int(fresh[0])
    cut_day = peaks.index[actual - cut]
    as_of = cut_day.date()
    hist = pd.DataFrame({"ts": y.index, "value": y.to_numpy()})
    hist = hist[hist.ts < cut_day]
    horizon = len(peaks) - (actual - cut) + 30
    res = forecast_daily_peak(hist, horizon)
    f = res.frame.assign(series_id="s", cluster="c", pool="p", resource="cpu", kind="requests", dependence=res.dependence)
    daily = daily_peak(to_series(hist)).rename("value").rename_axis("ts").reset_index().assign(
        cluster="c", pool="p", resource="cpu", kind="requests")
    limits = pd.DataFrame([{"cluster": "c", "pool": "p", "source": "karpenter", "resource": "cpu",
                            "ts": cut_day - pd.Timedelta(days=1), "value": limit}])
    plan = make_plan(PlanInputs(
        as_of=as_of, horizon_days=horizon, run_id="bench", inventory=_one_pool(level, as_of), storage_pools=pd.DataFrame(),
        forecasts=f, overlays=pd.DataFrame(columns=["series_id", "ts", "event", "contribution", "factor"]),
        failures=pd.DataFrame(columns=["cluster", "pool", "resource", "kind", "message"]), daily=daily, policy_of=_policy,
        catalog=CATALOG, events=[], thresholds={"cpu": 70, "storage": 75}, limits=limits))
    row = plan.elastic.limits.iloc[0]
    p50 = (row.crossing_p50_date - as_of).days if pd.notna(row.crossing_p50_date) else horizon + 1
    risk = (row.crossing_date - as_of).days if pd.notna(row.crossing_date) else horizon + 1
    return {"series": name, "source": source, "cut_days": cut, "actual_days": cut, "p50_days": p50, "risk_days": risk,
            "error_days": p50 - cut, "late": cut < risk, "file_by_days": risk - LEAD_DAYS,
            # the decision backtest's kinds: trend (stays over on half of the 14 days from the crossing) or spike
            "kind": kind_of_crossing(peaks.to_numpy(), actual, crossing_level)}


def runway(cases, cuts=CUTS) -> pd.DataFrame:
    rows = []
    for name, source, df, capacity in cases:
        for cut in cuts:
            r = runway_case(name, source, df, THRESHOLD * capacity, cut)
            if r:
                rows.append(r)
    return pd.DataFrame(rows)


def _spend_samples(hist: pd.DataFrame, days: int) -> SpendSamples:
    """The spend per hour for ``days`` days as the plan sizes a commitment on it
    (:func:`forecasting.commitments.spend_hours`): the last four weeks' real hours, raised
    where the forecast of the daily peak (P50) grows."""
    peak = forecast_daily_peak(hist, days).frame.iloc[:days]
    median = peak["q500"].to_numpy(dtype=float)
    recent = hist["value"].to_numpy()[-28 * 24:].reshape(28, 24)  # no declared events in these series
    hours = spend_hours(recent, median / max(float(np.mean(median[:7])), 1e-9))
    return uncovered_spend([hours], np.zeros(days), pd.DatetimeIndex(peak["ts"]))


def commitment_case(name: str, hourly: pd.Series, origin: int, window_days: int) -> dict:
    """At ``origin`` (hours), size a 1-year commitment both ways and charge the next
    ``window_days`` days of real spend."""
    hist = pd.DataFrame({"ts": hourly.index[:origin], "value": hourly.to_numpy()[:origin]})
    future = hourly.to_numpy()[origin: origin + window_days * 24]
    samples = _spend_samples(hist, min(window_days, 180))
    ours = recommend(samples, d1=DISCOUNT, d3=None, grid=80).first.cover_1y
    trailing = trailing_rule(hourly.to_numpy()[max(0, origin - 30 * 24): origin], DISCOUNT)
    return {"series": name, "origin_day": origin // 24, "window_days": window_days, "ours": ours, "trailing": trailing,
            "cost_ours": realised_cost(future, ours, DISCOUNT), "cost_trailing": realised_cost(future, trailing, DISCOUNT),
            "cost_none": realised_cost(future, 0.0, DISCOUNT)}


def _hourly(f: Path) -> pd.Series:
    raw = pd.read_csv(f)
    y, _ = regularize(to_series(pd.DataFrame({"ts": pd.to_datetime(raw["timestamp"], utc=True), "value": raw["value"]})))
    return y.clip(lower=0)


def _fleet_bills(data: Path) -> dict[str, pd.Series]:
    """The Bitbrains VMs as one autoscaled fleet each for cpu and memory: every VM's load
    over its own mean, summed (nodes follow load, so the on-demand bill does)."""
    out = {}
    for resource in ("cpu", "mem"):
        series = [_hourly(f) for f in sorted((data / "bitbrains_vms").glob(f"*_{resource}_*hourly*.csv"))]
        if len(series) < 2:
            continue
        frame = pd.concat([s / max(float(s.mean()), 1e-9) for s in series], axis=1).dropna()
        out[f"real-fleet-{resource}"] = frame.sum(axis=1)
    return out


def commitment_replay(data: Path, quick: bool = False) -> pd.DataFrame:
    """One row per (bill, origin): both rules' coverage and what the following hours cost
    with each and with none. Bills: every real hourly series alone (``group`` single), the
    real Bitbrains VMs summed into fleets (fleet), and two years of a seeded fleet bill."""
    rows = []
    bills: list[tuple[str, str, pd.Series]] = []
    files = sorted(data.rglob("*hourly*.csv"))[: 3 if quick else None] if data.exists() else []
    bills += [(f.stem, "single", _hourly(f)) for f in files]
    if data.exists() and not quick:
        bills += [(name, "fleet", y) for name, y in _fleet_bills(data).items()]
    for name, group, y in bills:
        days = len(y) // 24
        if days < 51 or (len(y) > 1 and (y.index[1] - y.index[0]) != pd.Timedelta(hours=1)):
            continue
        spend = y / max(float(y.mean()), 1e-9) * 100.0  # about $100 an hour on average
        for origin_day in range(30, days - 21, 7):
            rows.append({**commitment_case(name, spend, origin_day * 24, days - origin_day), "group": group})
    fleet = generate_series(days=730, trend_per_day=0.08, noise=2.0, daily_amp=12.0, weekly_amp=5.0, seed=901)
    y = fleet.set_index("ts")["value"].clip(lower=0)
    for month in range(6 if not quick else 2):
        rows.append({**commitment_case("seeded-fleet-bill", y, (60 + 30 * month) * 24, 365), "group": "seeded"})
    return pd.DataFrame(rows)


def report(rw: pd.DataFrame, cm: pd.DataFrame, risk: float = 0.10) -> dict:
    """Print the figures and return the JSON keys decisions.py adds."""
    thirty = rw[rw["cut_days"] == 30]
    out = {"runway_cases": int(len(rw)), "runway_late": int(rw["late"].sum()),
           "runway_late_share": round(float(rw["late"].mean()), 4) if len(rw) else None,
           "runway_late_upper95": round(late_upper_bound(int(rw["late"].sum()), len(rw)), 4) if len(rw) else None,
           "runway_late_within_risk": consistent_with(int(rw["late"].sum()), len(rw), risk) if len(rw) else None,
           "runway_median_abs_error_days": float(np.median(np.abs(thirty["error_days"]))) if len(thirty) else None}
    for kind, g in rw.groupby("kind"):
        out[f"runway_{kind}_cases"] = int(len(g))
        out[f"runway_{kind}_late"] = int(g["late"].sum())
        g30 = g[g["cut_days"] == 30]
        out[f"runway_{kind}_median_abs_error_days"] = float(np.median(np.abs(g30["error_days"]))) if len(g30) else None
    # the headline: the bills a commitment is bought for, a fleet's (real VMs summed, and the seeded one)
    bills = cm[cm["group"].isin(("fleet", "seeded"))]
    saving = (bills["cost_trailing"].sum() - bills["cost_ours"].sum()) / bills["cost_trailing"].sum() * 100 if len(bills) else None
    out["commitment_replay_cases"] = int(len(bills))
    out["commitment_replay_saving_vs_trailing_pct"] = round(float(saving), 3) if saving is not None else None
    for label, g in cm.groupby("group"):
        if len(g):
            out[f"commitment_replay_{label}_saving_vs_trailing_pct"] = round(
                float((g["cost_trailing"].sum() - g["cost_ours"].sum()) / g["cost_trailing"].sum() * 100), 3)
            out[f"commitment_replay_{label}_saving_vs_none_pct"] = round(
                float((g["cost_none"].sum() - g["cost_ours"].sum()) / g["cost_none"].sum() * 100), 3)
    print(f"runway: {out['runway_cases']} cases, {out['runway_late']} late ({out['runway_late_share']:.1%}, 95% upper bound "
          f"{out['runway_late_upper95']:.1%}; {'consistent with' if out['runway_late_within_risk'] else 'more than'} the declared "
          f"{risk:.0%}), median |P50 error| at a 30-day cut {out['runway_median_abs_error_days']} days (target <= 14)")
    for kind, g in rw.groupby("kind"):
        print(f"  {kind}: {len(g)} cases, {int(g['late'].sum())} late, median |error| "
              f"{out[f'runway_{kind}_median_abs_error_days']} days")
    print(f"commitments: {len(bills)} origins on fleet bills; realised cost with capplan's rule vs the trailing 30-day "
          f"rule: {saving:+.2f}% saved (target >= 0)")
    for label, g in cm.groupby("group"):
        print(f"  {label}: {len(g)} origins, {out[f'commitment_replay_{label}_saving_vs_trailing_pct']:+.2f}% vs trailing, "
              f"{out[f'commitment_replay_{label}_saving_vs_none_pct']:+.2f}% vs no commitment")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="limit-runway and commitment backtests")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    args = ap.parse_args()

    cases = synthetic_cases(3 if args.quick else 10) + step_cases(2 if args.quick else 8)
    if not args.quick and args.data.exists():
        cases += real_cases(args.data)
    out = report(runway(cases), commitment_replay(args.data, args.quick))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
