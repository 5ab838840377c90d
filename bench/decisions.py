"""Decision backtest: would capplan have ordered in time?

Figures, not a pass/fail test. On series that really cross a threshold, the history is cut
30, 60 and 90 days before the actual crossing (where the history allows: at least 28 days
stay before the cut), the daily peak is forecast, and the predicted trigger is compared
with the actual one. Series (``source``):

* ``synthetic``: seeded trending series (``generate_series``), capacity set so that 70% of
  it is crossed around day 170;
* ``synthetic-requests``: step-like requests built from seeded trending usage: held a
  week like the demo fleet's (``_steps``) or reset at random deploys (see
  ``bench/forecast.py:requests_from_usage``); crossed around day 170;
* ``real``: the real hourly series in ../shared/data/real, scaled so that 70% of capacity
  is the 90th percentile of the last 20% of their daily peaks: mostly a spike on a flat
  series, crossed late;
* ``real-requests``: step-like requests built from those real series, scaled the same way.

Settings: ``point`` (the first day the point forecast reaches the threshold), ``upper80``
(the first day the 80% interval's upper bound does: the conservative setting before
risk-based triggers) and ``risk10``/``risk25`` (the first day the probability that demand
has crossed by then exceeds 10% / 25%: ``forecasting.risk.risk_trigger`` with the
dependence measured for the series). The default setting is ``risk10``; its figures are
also reported under the historic keys ``conservative_*``.

A trigger is **late** when the predicted trigger day is after the actual crossing day
(capacity ordered for that day would arrive after demand crossed; the same definition
as before). A risk setting at r should be late in at most a share r of cases: printed
with the one-sided 95% Clopper-Pearson upper bound of the late share and whether the
late count is consistent with r (binomial test at 5%). Also printed: the median absolute
trigger-date error in days (target <= 14). No trigger within the horizon counts as the
horizon + 1 day. The cases are reported apart by kind of crossing: ``trend`` (demand stays
at or above the threshold on at least half of the 14 days from the crossing) and
``spike`` (one or a few days above it, then back). The last line is one JSON object.

The same cases also give the limit-runway backtest of autoscaled pools and the commitment
replay (bench/runway.py): the last line adds ``runway_*`` and ``commitment_replay_*`` keys.

    python bench/decisions.py [--quick] [--dependence X]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
warnings.filterwarnings("ignore")

from forecast import requests_from_usage, seed_of  # noqa: E402

from forecasting import forecast_daily_peak  # noqa: E402
from forecasting.risk import risk_trigger  # noqa: E402
from forecasting.series import daily_peak, regularize, to_series  # noqa: E402
from forecasting.synthetic import generate_series  # noqa: E402

THRESHOLD = 0.70
CUTS = (30, 60, 90)
RISKS = (0.10, 0.25)
DEFAULT_RISK = 0.10
TARGET_ERROR_DAYS = 14


def _capacity_at_day(df: pd.DataFrame, day: int) -> float:
    """Capacity whose 70% is the mean daily peak around ``day``."""
    peaks = daily_peak(to_series(df))
    return float(peaks.iloc[day - 5: day + 5].mean()) / THRESHOLD


def _trending(i: int, days: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(500 + i)
    return generate_series(days=days, trend_per_day=rng.uniform(0.15, 0.6), noise=rng.uniform(1, 4), daily_amp=rng.uniform(5, 15),
                           weekly_amp=rng.uniform(2, 6), seed=600 + i)


def synthetic_cases(n: int) -> list[tuple[str, str, pd.DataFrame, float]]:
    """(name, source, history, capacity): trending series crossing around day 170."""
    out = []
    for i in range(n):
        df = _trending(i)
        out.append((f"synthetic-{i}", "synthetic", df, _capacity_at_day(df, 170)))
    return out


def step_cases(n: int) -> list[tuple[str, str, pd.DataFrame, float]]:
    """Step-like requests over trending usage: even i held a week (the demo fleet's
    construction), odd i reset at random deploys."""
    out = []
    for i in range(n):
        usage = _trending(100 + i)
        if i % 2 == 0:
            v = usage["value"].rolling(24 * 7, min_periods=1).quantile(0.95).to_numpy()
            held = v[(np.arange(len(v)) // (24 * 7)) * (24 * 7)]
            df = pd.DataFrame({"ts": usage["ts"], "value": held})
        else:
            df = requests_from_usage(usage, seed=700 + i)
        out.append((f"synthetic-requests-{i}", "synthetic-requests", df, _capacity_at_day(df, 170)))
    return out


def real_cases(data: Path) -> list[tuple[str, str, pd.DataFrame, float]]:
    """Real hourly series (and requests built from them) with capacity such that 70% of
    it is the 90th percentile of the last 20% of the daily peaks."""
    out = []
    for f in sorted(data.rglob("*hourly*.csv")):
        raw = pd.read_csv(f)
        df = pd.DataFrame({"ts": pd.to_datetime(raw["timestamp"], utc=True), "value": raw["value"]})
        for source, series in (("real", df), ("real-requests", requests_from_usage(df.dropna(), seed_of(f.stem)))):
            y, _ = regularize(to_series(series))
            peaks = daily_peak(y)
            if len(peaks) < 75:
                continue
            tail = peaks.iloc[int(len(peaks) * 0.8):]
            out.append((f.stem if source == "real" else f"{f.stem}-requests", source, series, float(np.quantile(tail, 0.9)) / THRESHOLD))
    return out


def crossing(peaks: pd.Series, level: float, after: int = 0) -> int | None:
    hit = np.flatnonzero(peaks.to_numpy()[after:] >= level)
    return int(hit[0]) + after if len(hit) else None


#: A crossing is a trend when at least this share of the 14 days from it are at or
#: above the threshold; otherwise it is a spike (one or a few days above, then back).
SUSTAINED_SHARE = 0.5


def kind_of_crossing(peaks: np.ndarray, day: int, level: float, days: int = 14) -> str:
    """``trend`` (demand stays above the threshold once it got there) or ``spike``."""
    after = peaks[day: day + days]
    return "trend" if float(np.mean(after >= level)) >= SUSTAINED_SHARE else "spike"


def _first(mask: np.ndarray) -> int | None:
    hit = np.flatnonzero(mask)
    return int(hit[0]) if len(hit) else None


def evaluate(cases, cuts=CUTS, dependence: float | None = None) -> pd.DataFrame:
    """One row per (case, cut, setting): predicted and actual trigger day after the cut."""
    rows = []
    for name, source, df, capacity in cases:
        y, _ = regularize(to_series(df))
        peaks = daily_peak(y)
        level = THRESHOLD * capacity
        for cut in cuts:
            # the actual crossing, with at least `cut` days of history (and 28) before it
            actual = crossing(peaks, level, after=max(cut, 28) + 28)
            if actual is None or actual - cut < 28:
                continue
            cut_day = peaks.index[actual - cut]
            crossing_kind = kind_of_crossing(peaks.to_numpy(), actual, level)
            hist = pd.DataFrame({"ts": y.index, "value": y.to_numpy()})
            hist = hist[hist.ts < cut_day]
            horizon = len(peaks) - (actual - cut) + 30
            res = forecast_daily_peak(hist, horizon)
            fc = res.frame
            dep = res.dependence if dependence is None else dependence
            days = ((fc["ts"].dt.normalize() - cut_day.normalize()) / pd.Timedelta(days=1)).to_numpy().astype(int)
            triggers = {"point": _first(fc["yhat"].to_numpy() >= level), "upper80": _first(fc["yhat_upper"].to_numpy() >= level)}
            for r in RISKS:
                triggers[f"risk{round(r * 100)}"] = risk_trigger(fc, level, r, dependence=dep)
            for setting, pos in triggers.items():
                predicted = int(days[pos]) if pos is not None else horizon + 1
                rows.append({"series": name, "source": source, "crossing": crossing_kind, "cut_days": cut, "setting": setting,
                             "actual_days": cut,
                             "predicted_days": predicted, "error_days": predicted - cut, "late": predicted > cut,
                             "dependence": dep})
        print(f"  {name:55s} done", flush=True)
    return pd.DataFrame(rows)


def late_upper_bound(late: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of the late share."""
    return 1.0 if late >= n else float(stats.beta.ppf(confidence, late + 1, n - late))


def consistent_with(late: int, n: int, r: float) -> bool:
    """Is ``late`` of ``n`` consistent with a late probability of at most ``r``?
    (one-sided binomial test at 5%: P(X >= late | n, r) >= 0.05)."""
    return bool(stats.binom.sf(late - 1, n, r) >= 0.05)


def summarise(res: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = res.groupby(by)
    out = g.agg(cases=("series", "size"), late=("late", "sum"), late_share=("late", "mean"),
                median_abs_error_days=("error_days", lambda s: float(np.median(np.abs(s)))),
                mean_error_days=("error_days", "mean"))
    out["late_upper95"] = [late_upper_bound(int(r.late), int(r.cases)) for r in out.itertuples()]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="decision backtest")
    ap.add_argument("--quick", action="store_true", help="a few synthetic cases only (checks the path)")
    ap.add_argument("--dependence", type=float, default=None,
                    help="override the measured error dependence (1 = comonotone, 0 = independent days)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    args = ap.parse_args()
    cases = synthetic_cases(3 if args.quick else 10) + step_cases(2 if args.quick else 8)
    if not args.quick and args.data.exists():
        cases += real_cases(args.data)
    res = evaluate(cases, dependence=args.dependence)
    summary = summarise(res, ["setting"])
    print(summary.round(3).to_string())
    print(summarise(res, ["source", "setting"]).round(3).to_string())
    by_kind = summarise(res, ["crossing", "setting"])
    print("by kind of crossing (trend: at least half of the 14 days from the crossing above the threshold; spike: not):\n"
          + by_kind.round(3).to_string())
    print("measured dependence (median per source):", res.groupby("source")["dependence"].median().round(2).to_dict())
    out = {"cases": int(summary.loc["point", "cases"]), "dependence": "measured" if args.dependence is None else args.dependence}
    for setting in summary.index:
        r = summary.loc[setting]
        out[f"{setting}_late"] = int(r["late"])
        out[f"{setting}_late_share"] = round(float(r["late_share"]), 4)
        out[f"{setting}_late_upper95"] = round(float(r["late_upper95"]), 4)
        out[f"{setting}_median_abs_error_days"] = float(r["median_abs_error_days"])
        out[f"{setting}_mean_error_days"] = round(float(r["mean_error_days"]), 2)
    for risk in RISKS:
        key = f"risk{round(risk * 100)}"
        r = summary.loc[key]
        ok_late = consistent_with(int(r["late"]), int(r["cases"]), risk)
        ok_err = float(r["median_abs_error_days"]) <= TARGET_ERROR_DAYS
        out[f"{key}_late_within_risk"] = ok_late
        out[f"{key}_error_target_met"] = ok_err
        print(f"{key}: {int(r['late'])} late of {int(r['cases'])} ({r['late_share']:.1%}, 95% upper bound {r['late_upper95']:.1%}); "
              f"{'consistent with' if ok_late else 'more than'} {risk:.0%} late; median |error| {r['median_abs_error_days']:.1f} days "
              f"(target <= {TARGET_ERROR_DAYS}: {'met' if ok_err else 'not met'})")
    for (kind, setting), r in by_kind.iterrows():
        if setting in ("point", "upper80", "risk10", "risk25"):
            out[f"{kind}_{setting}_cases"] = int(r["cases"])
            out[f"{kind}_{setting}_late"] = int(r["late"])
            out[f"{kind}_{setting}_median_abs_error_days"] = float(r["median_abs_error_days"])
    default = f"risk{round(DEFAULT_RISK * 100)}"
    # The historic keys describe the default setting (was: the 80% upper bound).
    out["conservative_late"] = out[f"{default}_late"]
    out["conservative_median_abs_error_days"] = out[f"{default}_median_abs_error_days"]
    out["conservative_mean_error_days"] = out[f"{default}_mean_error_days"]
    out["ratio_late_default_vs_upper80"] = round(out[f"{default}_late"] / out["upper80_late"], 3) if out["upper80_late"] else None
    # autoscaled pools' limits and commitments on the same series (bench/runway.py)
    import runway

    out.update(runway.report(runway.runway(cases), runway.commitment_replay(args.data, args.quick), DEFAULT_RISK))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
