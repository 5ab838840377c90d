"""Forecast benchmark: capplan's auto choice vs the handbook's reference and predict_linear.

Figures, not a pass/fail test. On every hourly real series in ../shared/data/real (5-minute
cluster traces are averaged to hourly first) and on seeded synthetic series, the last
14 days (or a quarter of the series, whichever is shorter, at least 7 days) are held out
and forecast from the rest. Printed per method:

* rel_mase: MAE over the MAE of weekly seasonal naive on the same hold-out (geometric
  mean over series; below 1 beats naive),
* coverage_80: share of held-out points inside the 80% interval,
* peak_err_pct: mean absolute error of the daily peak, in % of the mean daily peak,
* s_per_series: seconds per series (model choice included for auto).

Methods: ``auto`` (capplan: model choice by backtest, conformal intervals), ``reference``
(the handbook: ``Prophet(yearly_seasonality=True)``, defaults otherwise, its own 80%
interval) and ``predict_linear`` (Prometheus-style least-squares line over the last 7
days, no interval). The last line is one JSON object.

    python bench/forecast.py [--quick] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecasting import fit_forecast, forecast_daily_peak  # noqa: E402
from forecasting.synthetic import generate_series  # noqa: E402

warnings.filterwarnings("ignore")
for name in ("prophet", "cmdstanpy"):
    logging.getLogger(name).setLevel(logging.ERROR)


def load_real(data: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for f in sorted(data.rglob("*.csv")):
        df = pd.read_csv(f)
        df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
        df = df[["ts", "value"]].dropna()
        step = df["ts"].diff().median()
        if step < pd.Timedelta(hours=1):
            df = df.set_index("ts")["value"].resample("1h").mean().dropna().reset_index()
        if (df["ts"].max() - df["ts"].min()) < pd.Timedelta(days=35):
            continue  # too short to hold out 2 weeks and keep 3 weeks of history
        out[f.stem] = df
    return out


def synthetic() -> dict[str, pd.DataFrame]:
    out = {}
    for i, (trend, noise) in enumerate([(0.2, 2.0), (0.5, 4.0), (-0.1, 1.0), (1.0, 6.0), (0.0, 3.0)]):
        out[f"synthetic-{i}"] = generate_series(days=120, trend_per_day=trend, noise=noise, seed=100 + i, daily_amp=8 + 2 * i, weekly_amp=4)
    return out


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    span = df["ts"].max() - df["ts"].min()
    hold_days = int(max(7, min(14, span.days // 4)))
    cut = df["ts"].max() - pd.Timedelta(days=hold_days)
    return df[df.ts <= cut].reset_index(drop=True), df[df.ts > cut].reset_index(drop=True), hold_days


def on_grid(pred: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    return actual.merge(pred, on="ts", how="inner")


def snaive_mae(train: pd.DataFrame, test: pd.DataFrame) -> float:
    s = train.set_index("ts")["value"]
    vals = []
    for ts, v in zip(test["ts"], test["value"]):
        src = ts - pd.Timedelta(days=7)
        while src > s.index[-1]:
            src -= pd.Timedelta(days=7)
        if src in s.index:
            vals.append(abs(v - s[src]))
    return float(np.mean(vals)) if vals else float("nan")


def daily_peak_err(pred_peaks: pd.Series, test: pd.DataFrame) -> float:
    actual = test.set_index("ts")["value"].groupby(test["ts"].dt.floor("D").to_numpy()).max()
    joined = pd.concat([actual.rename("a"), pred_peaks.rename("p")], axis=1).dropna()
    return float(100 * np.mean(np.abs(joined.a - joined.p)) / max(joined.a.mean(), 1e-9))


def method_auto(train, hold_days):
    res = fit_forecast(train, hold_days)
    t = time.perf_counter()
    peaks = forecast_daily_peak(train, hold_days + 1).frame
    PEAK_SECONDS.append(time.perf_counter() - t)
    return res.frame, pd.Series(peaks["yhat"].to_numpy(), index=peaks["ts"].dt.floor("D").to_numpy()), res.model


def method_reference(train, hold_days):
    from prophet import Prophet

    m = Prophet(yearly_seasonality=True)
    m.fit(pd.DataFrame({"ds": train["ts"].dt.tz_localize(None), "y": train["value"]}))
    step = train["ts"].diff().median()
    future = pd.DataFrame({"ds": train["ts"].iloc[-1].tz_localize(None) + step * np.arange(1, int(pd.Timedelta(days=hold_days) / step) + 1)})
    f = m.predict(future)
    frame = pd.DataFrame({"ts": f["ds"].dt.tz_localize("UTC"), "yhat": f["yhat"], "yhat_lower": f["yhat_lower"], "yhat_upper": f["yhat_upper"]})
    peaks = frame.set_index("ts")["yhat"].groupby(frame["ts"].dt.floor("D").to_numpy()).max()
    return frame, peaks, "prophet-yearly"


def method_predict_linear(train, hold_days):
    last = train[train.ts > train.ts.max() - pd.Timedelta(days=7)]
    x = (last["ts"] - last["ts"].iloc[0]).dt.total_seconds().to_numpy()
    slope, intercept = np.polyfit(x, last["value"].to_numpy(), 1)
    step = train["ts"].diff().median()
    ts = pd.DatetimeIndex(train["ts"].iloc[-1] + step * np.arange(1, int(pd.Timedelta(days=hold_days) / step) + 1))
    xs = (ts - last["ts"].iloc[0]).total_seconds().to_numpy()
    y = intercept + slope * xs
    frame = pd.DataFrame({"ts": ts, "yhat": y, "yhat_lower": np.nan, "yhat_upper": np.nan})
    peaks = frame.set_index("ts")["yhat"].groupby(frame["ts"].dt.floor("D").to_numpy()).max()
    return frame, peaks, "linear-7d"


PEAK_SECONDS: list[float] = []
METHODS = {"auto": method_auto, "reference": method_reference, "predict_linear": method_predict_linear}


def run(series: dict[str, pd.DataFrame], methods: list[str]) -> pd.DataFrame:
    rows = []
    for name, df in series.items():
        train, test, hold = split(df)
        base = snaive_mae(train, test)
        for method in methods:
            t = time.perf_counter()
            frame, peaks, model = METHODS[method](train, hold)
            secs = time.perf_counter() - t - (PEAK_SECONDS[-1] if method == "auto" else 0.0)
            j = on_grid(frame, test)
            mae = float(np.mean(np.abs(j.value - j.yhat)))
            cov = float(np.mean((j.value >= j.yhat_lower) & (j.value <= j.yhat_upper))) if j.yhat_lower.notna().any() else float("nan")
            rows.append({"series": name, "method": method, "model": model, "rel_mase": mae / base if base > 0 else np.nan,
                         "coverage_80": cov, "peak_err_pct": daily_peak_err(peaks, test), "seconds": secs, "n": len(train)})
        print(f"  {name:55s} " + "  ".join(f"{r['method']}={r['rel_mase']:.2f}" for r in rows[-len(methods):]), flush=True)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("method")
    return pd.DataFrame({
        "geo_rel_mase": g["rel_mase"].apply(lambda s: float(np.exp(np.log(s.clip(lower=1e-6)).mean()))),
        "coverage_80": g["coverage_80"].mean(),
        "peak_err_pct": g["peak_err_pct"].median(),
        "s_per_series": g["seconds"].mean(),
        "series": g.size(),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--quick", action="store_true", help="a few series and no reference Prophet (checks the path)")
    args = ap.parse_args()
    real = load_real(args.data) if args.data.exists() else {}
    synth = synthetic()
    methods = ["auto", "predict_linear"] if args.quick else list(METHODS)
    if args.quick:
        real = dict(list(real.items())[:4])
        synth = dict(list(synth.items())[:2])
    print(f"real series: {len(real)}, synthetic: {len(synth)}; methods: {', '.join(methods)}")
    res_real = run(real, methods) if real else pd.DataFrame()
    res_syn = run(synth, methods)
    figures = {}
    for label, res in (("real", res_real), ("synthetic", res_syn)):
        if res.empty:
            continue
        s = summarise(res)
        print(f"\n{label}:\n{s.round(3).to_string()}")
        figures[label] = s.round(4).to_dict("index")
        print("auto chose:", res[res.method == "auto"]["model"].value_counts().to_dict())
    auto = figures.get("real", figures["synthetic"])["auto"]
    ref = figures.get("real", figures["synthetic"]).get("reference")
    out = {
        "series_real": len(real), "series_synthetic": len(synth),
        "auto_geo_rel_mase": auto["geo_rel_mase"], "auto_coverage_80": auto["coverage_80"],
        "auto_peak_err_pct": auto["peak_err_pct"], "auto_s_per_series": auto["s_per_series"],
        "auto_peak_s_per_series": float(np.mean(PEAK_SECONDS)) if PEAK_SECONDS else None,
        "reference_geo_rel_mase": ref["geo_rel_mase"] if ref else None,
        "predict_linear_geo_rel_mase": figures.get("real", figures["synthetic"])["predict_linear"]["geo_rel_mase"],
        "synthetic_auto_geo_rel_mase": figures["synthetic"]["auto"]["geo_rel_mase"],
        "synthetic_auto_coverage_80": figures["synthetic"]["auto"]["coverage_80"],
        "ratio_mase_auto_vs_reference": (auto["geo_rel_mase"] / ref["geo_rel_mase"]) if ref else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
