"""Decision backtest: would capplan have ordered in time?

Figures, not a pass/fail test. On series that really cross a threshold (seeded synthetic
ones with a known crossing, and the real hourly series in ../shared/data/real scaled so
their daily peak crosses 70% of a capacity late in the series), the history is cut 30 and
60 days before the actual crossing, the daily peak is forecast, and the predicted trigger
is compared with the actual one. Reported per setting (conservative = interval upper bound,
point = point forecast): the median absolute trigger-date error in days and how often the
order-by date would have come too late (predicted trigger after the actual one: the
lead time would not have been respected). The last line is one JSON object.

    python bench/decisions.py [--quick] [--level 80]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from forecasting import forecast_daily_peak  # noqa: E402
from forecasting.series import daily_peak, regularize, to_series  # noqa: E402
from forecasting.synthetic import generate_series  # noqa: E402

THRESHOLD = 0.70
LEVEL = 80.0  # interval level; the conservative setting plans on its upper bound (--level)


def synthetic_cases(n: int) -> list[tuple[str, pd.DataFrame, float]]:
    cases = []
    for i in range(n):
        rng = np.random.default_rng(500 + i)
        trend = rng.uniform(0.15, 0.6)
        df = generate_series(days=200, trend_per_day=trend, noise=rng.uniform(1, 4), daily_amp=rng.uniform(5, 15), weekly_amp=rng.uniform(2, 6), seed=600 + i)
        peaks = daily_peak(to_series(df))
        # capacity so that 70% of it is crossed around day 170
        capacity = float(peaks.iloc[165:175].mean()) / THRESHOLD
        cases.append((f"synthetic-{i}", df, capacity))
    return cases


def real_cases(data: Path) -> list[tuple[str, pd.DataFrame, float]]:
    cases = []
    for f in sorted(data.rglob("*hourly*.csv")):
        df = pd.read_csv(f)
        df = pd.DataFrame({"ts": pd.to_datetime(df["timestamp"], utc=True), "value": df["value"]})
        y, _ = regularize(to_series(df))
        peaks = daily_peak(y)
        if len(peaks) < 75:
            continue
        # 70% of capacity = the 90th percentile of the last 20% of daily peaks: crossed late
        tail = peaks.iloc[int(len(peaks) * 0.8):]
        capacity = float(np.quantile(tail, 0.9)) / THRESHOLD
        cases.append((f.stem, df, capacity))
    return cases


def crossing(peaks: pd.Series, level: float, after: int = 0) -> int | None:
    hit = np.flatnonzero(peaks.to_numpy()[after:] >= level)
    return int(hit[0]) + after if len(hit) else None


def evaluate(cases, cuts=(30, 60)) -> pd.DataFrame:
    rows = []
    for name, df, capacity in cases:
        y, _ = regularize(to_series(df))
        peaks = daily_peak(y)
        level = THRESHOLD * capacity
        for cut in cuts:
            # the actual crossing, with at least `cut` days of history (and 28) before it
            actual = crossing(peaks, level, after=max(cut, 28) + 28)
            if actual is None or actual - cut < 28:
                continue
            cut_day = peaks.index[actual - cut]
            hist = pd.DataFrame({"ts": y.index, "value": y.to_numpy()})
            hist = hist[hist.ts < cut_day]
            horizon = len(peaks) - (actual - cut) + 30
            fc = forecast_daily_peak(hist, horizon, level=LEVEL).frame
            for setting, col in (("conservative", "yhat_upper"), ("point", "yhat")):
                hit = fc[fc[col] >= level]
                predicted = (hit["ts"].iloc[0].normalize() - cut_day.normalize()).days if len(hit) else horizon + 1
                rows.append({"series": name, "cut_days": cut, "setting": setting, "actual_days": cut,
                             "predicted_days": predicted, "error_days": predicted - cut, "late": predicted > cut})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description="decision backtest")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--level", type=float, default=80.0, help="interval level in percent (default 80)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    args = ap.parse_args()
    global LEVEL
    LEVEL = args.level
    cases = synthetic_cases(3 if args.quick else 10)
    if not args.quick and args.data.exists():
        cases += real_cases(args.data)
    res = evaluate(cases)
    summary = res.groupby(["setting"]).agg(cases=("series", "size"), median_abs_error_days=("error_days", lambda s: float(np.median(np.abs(s)))),
                                           mean_error_days=("error_days", "mean"), late_share=("late", "mean"), late=("late", "sum"))
    print(summary.round(2).to_string())
    by_source = res.assign(source=np.where(res.series.str.startswith("synthetic"), "synthetic", "real")).groupby(["source", "setting"])
    print(by_source.agg(cases=("series", "size"), median_abs_error_days=("error_days", lambda s: float(np.median(np.abs(s)))),
                        late=("late", "sum")).to_string())
    c = summary.loc["conservative"]
    p = summary.loc["point"]
    print(json.dumps({"cases": int(c["cases"]), "conservative_late": int(c["late"]), "conservative_median_abs_error_days": float(c["median_abs_error_days"]),
                      "point_late": int(p["late"]), "point_median_abs_error_days": float(p["median_abs_error_days"]),
                      "conservative_mean_error_days": round(float(c["mean_error_days"]), 2)}))


if __name__ == "__main__":
    main()
