"""Forecast benchmark: accuracy against baselines, and interval coverage per kind of series.

Figures, not a pass/fail test. Two parts, both printed, then one JSON line.

**Accuracy** (unchanged method, comparable with earlier runs): on every hourly real series
in ../shared/data/real (5-minute cluster traces are averaged to hourly first) and on
seeded synthetic series, the last 14 days (or a quarter of the series, whichever is
shorter, at least 7 days) are held out and forecast from the rest. Printed per method:

* rel_mase: MAE over the MAE of weekly seasonal naive on the same hold-out (geometric
  mean over series; below 1 beats naive),
* coverage_80: share of held-out points inside the 80% interval,
* peak_err_pct: mean absolute error of the daily peak, in % of the mean daily peak,
* s_per_series: seconds per series (model choice and interval calibration included).

Methods: ``auto`` (capplan), ``reference`` (the handbook: ``Prophet(yearly_seasonality=True)``,
defaults otherwise, its own 80% interval) and ``predict_linear`` (Prometheus-style
least-squares line over the last 7 days, no interval).

**Coverage per kind** (held out: the intervals are calibrated on the history before each
cut only): every series is cut 14, 28 and 42 days before its end (where at least 35 days
stay for training) and forecast 14 days ahead, at its own step (``fit_forecast``) and
as daily peaks (``forecast_daily_peak``). Coverage of the 80% interval (``yhat_lower`` ..
``yhat_upper``) and of the 95% one (``q025`` .. ``q975``) is the share of held-out values
inside, averaged over forecasts. Kinds:

* usage: the real series as they are;
* requests: step-like series: from each real series, requests reset at random "deploys"
  (exponential gaps, mean 2-7 days) to the 95th percentile of the last three days of
  usage and held until the next one; and the demo fleet's requests (``generate_fleet``:
  held a week, pods a day);
* storage: synthetic monotone growth with noise and occasional cleanups (2-8% freed
  every 20-60 days on average), and the demo fleet's storage pools.

Baseline in the same run: seasonal naive with the empirical 10/90% and 2.5/97.5%
quantiles of the training data's week-over-week changes (a classic naive interval).
Targets: 80% coverage within 0.78-0.85 and 95% coverage >= 0.92, per kind and path.

    python bench/forecast.py [--quick] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecasting import fit_forecast, forecast_daily_peak, forecast_panel  # noqa: E402
from forecasting.series import daily_peak, regularize, to_series  # noqa: E402
from forecasting.synthetic import generate_fleet, generate_series  # noqa: E402

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


def method_named(name: str):
    """capplan with one model forced by name (``--models``): what each candidate scores."""

    def run_named(train, hold_days):
        res = fit_forecast(train, hold_days, model=name)
        peaks = forecast_daily_peak(train, hold_days + 1, model=name).frame
        return res.frame, pd.Series(peaks["yhat"].to_numpy(), index=peaks["ts"].dt.floor("D").to_numpy()), res.model

    return run_named


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


# --- series kinds for the coverage part ----------------------------------------------

COVER_HOLD_DAYS = 14
COVER_CUTS = 3
COVER_MIN_TRAIN_DAYS = 35
TARGET_80 = (0.78, 0.85)
TARGET_95 = 0.92


def seed_of(name: str) -> int:
    """A stable seed per series name (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


def requests_from_usage(df: pd.DataFrame, seed: int, mean_gap_days: tuple[float, float] = (2, 7)) -> pd.DataFrame:
    """Step-like requests from a usage series (columns ``ts, value`` in and out).

    At random deploys (exponential gaps; the mean gap is drawn per series from
    ``mean_gap_days``) requests are reset to the 95th percentile of the last three days
    of usage, and held until the next deploy: piecewise constant, jumps both ways.
    """
    rng = np.random.default_rng(seed)
    s = df.set_index("ts")["value"]
    high = s.rolling("3D", min_periods=1).quantile(0.95).to_numpy()
    per_day = pd.Timedelta(days=1) / s.index.to_series().diff().median()
    gaps = 1 + rng.exponential(rng.uniform(*mean_gap_days) * per_day, size=int(len(s) / per_day) + 10).astype(int)
    at = np.concatenate([[0], np.cumsum(gaps)])
    at = at[at < len(s)]
    held = np.full(len(s), np.nan)
    held[at] = high[at]
    return pd.DataFrame({"ts": s.index, "value": pd.Series(held).ffill().to_numpy()})


def storage_series(days: int, seed: int) -> pd.DataFrame:
    """Hourly used storage: monotone growth (more on weekdays and in the day, noisy) with
    occasional cleanups (every 20-60 days on average, 2-8% freed over 1-6 hours)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-01-01", periods=days * 24, freq="h", tz="UTC")
    base = 1000.0
    rate = base * rng.uniform(0.001, 0.006) / 24
    hour, weekday = ts.hour.to_numpy(), ts.dayofweek.to_numpy() < 5
    inc = rate * (1 + 0.6 * np.sin(2 * np.pi * (hour - 6) / 24)) * np.where(weekday, 1.2, 0.5)
    y = base + np.cumsum(inc * rng.lognormal(0, 0.5, len(ts)))
    gap = rng.uniform(20, 60) * 24
    t = int(rng.exponential(gap))
    freed = np.zeros(len(ts))
    while t < len(ts):
        width = int(rng.integers(1, 7))
        freed[t: t + width] += rng.uniform(0.02, 0.08) * y[t] / width
        t += int(rng.exponential(gap)) + 24
    return pd.DataFrame({"ts": ts, "value": y - np.cumsum(freed) + rng.normal(0, base * 0.0005, len(ts))})


def fleet_series() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The demo fleet's step-like requests (cpu and memory held a week, pods a day; one
    node per pool shape), the same nodes' usage (what the requests may follow; pods have
    none) and its storage pools. Before the Double-11 festival, which would need its
    event declared."""
    requests, usage, storage = {}, {}, {}
    for chunk in generate_fleet(nodes=40, as_of=dt.date(2026, 10, 1), history_days=120, seed=11):
        meta = chunk.series
        for pool, res in (("compute", "cpu"), ("data", "memory"), ("compute", "pods")):
            row = meta[(meta.pool == pool) & (meta.resource == res) & (meta.kind == "requests") & (meta.level == "node")].iloc[0]
            name = f"fleet-{chunk.cluster}-{pool}-{res}-requests"
            requests[name] = _samples(chunk, row["series_id"])
            same = meta[(meta.node == row["node"]) & (meta.resource == res) & (meta.kind == "usage") & (meta.level == "node")]
            if len(same):
                usage[name] = _samples(chunk, same["series_id"].iloc[0])
        sid = meta[(meta.pool == "storage") & (meta.kind == "usage")]["series_id"].iloc[0]
        storage[f"fleet-{chunk.cluster}-storage"] = _samples(chunk, sid)
    return requests, usage, storage


def _samples(chunk, series_id: str) -> pd.DataFrame:
    s = chunk.samples[chunk.samples.series_id == series_id]
    return s[["ts", "value"]].reset_index(drop=True)


def series_by_kind(real: dict[str, pd.DataFrame]) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.DataFrame]]:
    """usage / requests / storage series, as described in the module docstring, and for
    each requests series the usage it was built from (``leaders``)."""
    fleet_requests, fleet_usage, fleet_storage = fleet_series()
    requests = {f"{k}-requests": requests_from_usage(v, seed_of(k)) for k, v in real.items()}
    leaders = {**{f"{k}-requests": v for k, v in real.items()}, **fleet_usage}
    storage = {f"storage-{i}": storage_series(days=70 + 10 * i, seed=300 + i) for i in range(8)}
    return {"usage": dict(real), "requests": {**requests, **fleet_requests}, "storage": {**storage, **fleet_storage}}, leaders


def cover_cuts(df: pd.DataFrame, n: int = COVER_CUTS) -> list[pd.Timestamp]:
    """Cut points 14, 28, 42... days before the end that leave 35 days of training."""
    end, start = df["ts"].max(), df["ts"].min()
    cuts = [end - pd.Timedelta(days=COVER_HOLD_DAYS * k) for k in range(1, n + 1)]
    return [c for c in cuts if c - start >= pd.Timedelta(days=COVER_MIN_TRAIN_DAYS)]


def held_out_peaks(test: pd.DataFrame) -> pd.DataFrame:
    """Daily peaks of the held-out part (``ts`` at midnight, ``value``)."""
    y, _ = regularize(to_series(test))
    p = daily_peak(y)
    return pd.DataFrame({"ts": p.index, "value": p.to_numpy()})


def naive_interval(train: pd.DataFrame, frame: pd.DataFrame, peak: bool) -> pd.DataFrame:
    """Baseline: last week repeated, +- the empirical quantiles of the training data's
    week-over-week changes (at the series' step, or of its daily peaks)."""
    s = train.set_index("ts")["value"]
    if peak:
        y, _ = regularize(to_series(train))
        s = daily_peak(y).asfreq("D").interpolate(limit_direction="both")
    step = s.index[1] - s.index[0]
    week = int(pd.Timedelta(days=7) / step)
    diffs = (s.to_numpy()[week:] - s.to_numpy()[:-week])
    q = np.quantile(diffs, [0.025, 0.1, 0.9, 0.975]) if len(diffs) else np.zeros(4)
    last = s.to_numpy()[-week:]
    point = np.tile(last, len(frame) // week + 1)[: len(frame)]
    return pd.DataFrame({"ts": frame["ts"].to_numpy(), "point": point, "q025": point + q[0], "q100": point + q[1],
                         "q900": point + q[2], "q975": point + q[3]})


def _coverage(j: pd.DataFrame, lo80: str, hi80: str) -> tuple[float, float]:
    c80 = float(np.mean((j.value >= j[lo80]) & (j.value <= j[hi80])))
    c95 = float(np.mean((j.value >= j.q025) & (j.value <= j.q975)))
    return c80, c95


def _cover_forecast(train: pd.DataFrame, path: str, leader: pd.DataFrame | None) -> pd.DataFrame:
    """capplan's forecast of one cut: alone, or (``leader``) in one panel with the usage
    it may follow."""
    peak = path.startswith("peak")
    if leader is None:
        return (forecast_daily_peak(train, COVER_HOLD_DAYS + 1) if peak else fit_forecast(train, COVER_HOLD_DAYS)).frame
    jobs = [("usage", leader, []), ("requests", train, [], "usage")]
    return forecast_panel(jobs, COVER_HOLD_DAYS + 1 if peak else COVER_HOLD_DAYS, peak=peak, workers=1)["requests"].frame


def coverage_run(kinds: dict[str, dict[str, pd.DataFrame]], n_cuts: int = COVER_CUTS,
                 leaders: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per (kind, series, cut, path): held-out coverage of capplan's 80% and 95%
    intervals and of the naive baseline's, capplan's mean relative 80% width, the share
    of held-out values above ``q900``, and the MAE relative to the naive baseline's point
    forecast (last week repeated). Requests with a usage series are forecast twice:
    alone (``own``, ``peak``) and with their usage (``own+usage``, ``peak+usage``)."""
    rows = []
    for kind, series in kinds.items():
        for name, df in series.items():
            lead = (leaders or {}).get(name)
            paths = ("own", "peak") + (("own+usage", "peak+usage") if lead is not None else ())
            for i, cut in enumerate(cover_cuts(df, n_cuts)):
                train = df[df.ts <= cut].reset_index(drop=True)
                test = df[(df.ts > cut) & (df.ts <= cut + pd.Timedelta(days=COVER_HOLD_DAYS))]
                for path in paths:
                    peak = path.startswith("peak")
                    lead_train = lead[lead.ts <= cut].reset_index(drop=True) if path.endswith("+usage") else None
                    frame = _cover_forecast(train, path, lead_train)
                    actual = held_out_peaks(test) if peak else test[["ts", "value"]]
                    j = actual.merge(frame, on="ts")
                    b = actual.merge(naive_interval(train, frame, peak), on="ts")
                    c80, c95 = _coverage(j, "yhat_lower", "yhat_upper")
                    b80, b95 = _coverage(b, "q100", "q900")
                    width = float(np.mean(j.yhat_upper - j.yhat_lower) / max(np.mean(np.abs(j.value)), 1e-12))
                    naive_mae = float(np.mean(np.abs(b.value - b.point)))
                    rows.append({"kind": kind, "source": source_of(name), "series": name, "cut": i, "path": path,
                                 "coverage_80": c80, "coverage_95": c95,
                                 "naive_80": b80, "naive_95": b95, "rel_width_80": width,
                                 "above_q900": float(np.mean(j.value > j.q900)),
                                 "rel_mae": float(np.mean(np.abs(j.value - j.yhat))) / naive_mae if naive_mae > 0 else np.nan})
            print(f"  {kind:9s} {name:55s} done", flush=True)
    return pd.DataFrame(rows)


def conformal_run(kinds: dict[str, dict[str, pd.DataFrame]], n_cuts: int = COVER_CUTS) -> pd.DataFrame:
    """The alternative calibration: statsforecast's own ``ConformalIntervals`` (absolute
    errors of as many back-to-back windows of the horizon as the history holds, at most
    5, per horizon step) on the Theta model, daily peaks, the same cuts. Its windows must
    fit one after another, so it needs at least twice the horizon of history (it cannot
    run at the monthly job's shape: 180 days of history, 180 days ahead)."""
    from statsforecast import StatsForecast
    from statsforecast.models import Theta
    from statsforecast.utils import ConformalIntervals

    rows = []
    h = COVER_HOLD_DAYS + 1
    for kind, series in kinds.items():
        for name, df in series.items():
            for i, cut in enumerate(cover_cuts(df, n_cuts)):
                train = df[df.ts <= cut].reset_index(drop=True)
                test = df[(df.ts > cut) & (df.ts <= cut + pd.Timedelta(days=COVER_HOLD_DAYS))]
                y, _ = regularize(to_series(train))
                peaks = daily_peak(y).asfreq("D").interpolate(limit_direction="both")
                windows = min(5, (len(peaks) - 21) // h)  # the first window keeps 3 weeks to fit on
                if windows < 2:
                    continue
                sf = StatsForecast(models=[Theta(season_length=7, prediction_intervals=ConformalIntervals(h=h, n_windows=windows))],
                                   freq="D")
                frame = pd.DataFrame({"unique_id": "s", "ds": peaks.index.tz_localize(None), "y": peaks.to_numpy()})
                fc = sf.forecast(df=frame, h=h, level=[80, 95])
                fc["ts"] = pd.to_datetime(fc["ds"]).dt.tz_localize("UTC")
                j = held_out_peaks(test).merge(fc, on="ts")
                rows.append({"kind": kind, "series": name, "cut": i, "windows": windows,
                             "coverage_80": float(np.mean((j.value >= j["Theta-lo-80"]) & (j.value <= j["Theta-hi-80"]))),
                             "coverage_95": float(np.mean((j.value >= j["Theta-lo-95"]) & (j.value <= j["Theta-hi-95"])))})
    return pd.DataFrame(rows)


def source_of(name: str) -> str:
    """Where a benchmark series comes from: the demo fleet, the storage generator or real data."""
    return "fleet" if name.startswith("fleet-") else "generated" if name.startswith("storage-") else "real"


def coverage_summary(res: pd.DataFrame, by: tuple[str, ...] = ("kind", "path")) -> pd.DataFrame:
    """Per kind and path (or ``by``): mean coverage (capplan and naive), median relative
    width and whether the targets are met."""
    g = res.groupby(list(by))
    out = pd.DataFrame({
        "forecasts": g.size(), "series": g["series"].nunique(),
        "coverage_80": g["coverage_80"].mean(), "coverage_95": g["coverage_95"].mean(),
        "naive_80": g["naive_80"].mean(), "naive_95": g["naive_95"].mean(),
        "rel_width_80": g["rel_width_80"].median(),
        "above_q900": g["above_q900"].mean(),
        "geo_rel_mae": g["rel_mae"].apply(lambda x: float(np.exp(np.log(x.dropna().clip(lower=1e-6)).mean()))),
    })
    out["met_80"] = out["coverage_80"].between(*TARGET_80)
    out["met_95"] = out["coverage_95"] >= TARGET_95
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--quick", action="store_true", help="a few series, one cut, no reference Prophet (checks the path)")
    ap.add_argument("--models", default="", help="comma-separated model names to score one by one as well (e.g. ets,theta)")
    ap.add_argument("--no-coverage", action="store_true", help="accuracy part only")
    ap.add_argument("--conformal", action="store_true",
                    help="also: statsforecast's ConformalIntervals (Theta, daily peaks) on the same cuts")
    ap.add_argument("--backtest", choices=["ragged", "fixed"], default="ragged",
                    help="the engine's backtest layout (fixed: statsforecast cross_validation), to compare them")
    args = ap.parse_args()
    import forecasting.engine

    forecasting.engine.BACKTEST = args.backtest
    real = load_real(args.data) if args.data.exists() else {}
    synth = synthetic()
    methods = ["auto", "predict_linear"] if args.quick else list(METHODS)
    for name in filter(None, args.models.split(",")):
        METHODS[f"model:{name}"] = method_named(name)
        methods.append(f"model:{name}")
    kinds, leaders = series_by_kind(real)
    if args.quick:
        real = dict(list(real.items())[:4])
        synth = dict(list(synth.items())[:2])
        kinds = {k: dict(list(v.items())[:3]) for k, v in kinds.items()}
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
    if args.no_coverage:
        print(json.dumps({label: f for label, f in figures.items()}))
        return
    print(f"\ncoverage per kind (held out, {COVER_HOLD_DAYS}-day horizon): " + ", ".join(f"{k}: {len(v)} series" for k, v in kinds.items()))
    cov_rows = coverage_run(kinds, 1 if args.quick else COVER_CUTS, leaders)
    cov = coverage_summary(cov_rows)
    print(cov.round(3).to_string())
    print("by source:\n" + coverage_summary(cov_rows, ("kind", "source", "path")).round(3).to_string())
    conformal = {}
    if args.conformal:
        conf = conformal_run(kinds, 1 if args.quick else COVER_CUTS)
        g = conf.groupby("kind")
        conformal = {k: {"c80": round(float(r.coverage_80), 4), "c95": round(float(r.coverage_95), 4), "forecasts": int(r.n)}
                     for k, r in g.agg(coverage_80=("coverage_80", "mean"), coverage_95=("coverage_95", "mean"),
                                       n=("series", "size")).iterrows()}
        print("statsforecast ConformalIntervals (Theta, daily peaks, same cuts):", conformal)
    by_origin = coverage_summary(cov_rows, ("kind", "path", "cut"))
    print("by origin (cut 0: 14 days before the end, 1: 28, 2: 42):\n" + by_origin.round(3).to_string())
    # Calibration error: mean distance of the two coverages from their nominal levels.
    cal_err = float(np.mean(np.abs(cov["coverage_80"] - 0.8) + np.abs(cov["coverage_95"] - 0.95)))
    naive_err = float(np.mean(np.abs(cov["naive_80"] - 0.8) + np.abs(cov["naive_95"] - 0.95)))
    missed = [f"{k}/{p} {lvl}" for (k, p), r in cov.iterrows() for lvl in ("80", "95") if not r[f"met_{lvl}"]]
    print(f"targets (80% in {TARGET_80[0]}-{TARGET_80[1]}, 95% >= {TARGET_95}): "
          + ("all met" if not missed else "not met for " + ", ".join(missed)))
    print(f"calibration error |c80-0.8|+|c95-0.95|: capplan {cal_err:.3f}, naive {naive_err:.3f} (ratio {cal_err / naive_err:.2f})")
    auto = figures.get("real", figures["synthetic"])["auto"]
    ref = figures.get("real", figures["synthetic"]).get("reference")
    out = {
        "backtest": args.backtest, "series_real": len(real), "series_synthetic": len(synth),
        "auto_geo_rel_mase": auto["geo_rel_mase"], "auto_coverage_80": auto["coverage_80"],
        "auto_peak_err_pct": auto["peak_err_pct"], "auto_s_per_series": auto["s_per_series"],
        "auto_peak_s_per_series": float(np.mean(PEAK_SECONDS)) if PEAK_SECONDS else None,
        "reference_geo_rel_mase": ref["geo_rel_mase"] if ref else None,
        "predict_linear_geo_rel_mase": figures.get("real", figures["synthetic"])["predict_linear"]["geo_rel_mase"],
        "synthetic_auto_geo_rel_mase": figures["synthetic"]["auto"]["geo_rel_mase"],
        "synthetic_auto_coverage_80": figures["synthetic"]["auto"]["coverage_80"],
        "ratio_mase_auto_vs_reference": (auto["geo_rel_mase"] / ref["geo_rel_mase"]) if ref else None,
        "coverage": {f"{k}_{p}": {"c80": round(float(r.coverage_80), 4), "c95": round(float(r.coverage_95), 4),
                                  "naive_c80": round(float(r.naive_80), 4), "naive_c95": round(float(r.naive_95), 4),
                                  "forecasts": int(r.forecasts)} for (k, p), r in cov.iterrows()},
        "coverage_targets_missed": missed,
        "calibration_error": round(cal_err, 4), "naive_calibration_error": round(naive_err, 4),
        "peak_above_q900": {k: round(float(cov.loc[(k, "peak"), "above_q900"]), 4) for k in cov.index.get_level_values(0).unique()},
        "geo_rel_mae_vs_naive": {f"{k}_{p}": round(float(r.geo_rel_mae), 4) for (k, p), r in cov.iterrows()},
        "failed": int(cov_rows["coverage_80"].isna().sum()),
        "conformal_theta_peak": conformal,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
