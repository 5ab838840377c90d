"""Forecast engine: recovery of planted structure, calibrated intervals, bad inputs."""

import numpy as np
import pandas as pd
import pytest

from forecasting import ForecastInputError, fit_forecast, forecast_daily_peak, forecast_series
from forecasting.events import Event
from forecasting.synthetic import generate_series


def test_planted_trend_and_daily_season_are_recovered():
    hist = generate_series(days=120, trend_per_day=0.5, daily_amp=10, weekly_amp=0, noise=1.0, seed=1)
    out = forecast_series(hist, horizon_days=14)
    assert list(out.columns[:4]) == ["ts", "yhat", "yhat_lower", "yhat_upper"]
    assert len(out) == 14 * 24
    assert out["ts"].iloc[0] == hist["ts"].iloc[-1] + pd.Timedelta(hours=1)
    # truth for the horizon, without noise
    d = ((out["ts"] - hist["ts"].iloc[0]) / pd.Timedelta(days=1)).to_numpy()
    truth = 100 + 0.5 * d + 10 * np.sin(2 * np.pi * out["ts"].dt.hour.to_numpy() / 24)
    err = np.abs(out["yhat"].to_numpy() - truth)
    assert err.mean() < 2.0, err.mean()  # noise sd is 1; a missed trend would be off by >3 by day 14
    daily = pd.Series(out["yhat"].to_numpy(), index=out["ts"]).groupby(out["ts"].dt.hour.to_numpy()).mean()
    assert daily.max() - daily.min() == pytest.approx(20, abs=3)


def test_interval_coverage_on_known_noise():
    """Pure white noise around a level: the 80% interval should hold about 80%."""
    rng = np.random.default_rng(3)
    n = 200 + 28
    ts = pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC")
    y = 50 + rng.normal(0, 5, n)
    hist = pd.DataFrame({"ts": ts[:200], "value": y[:200]})
    out = forecast_series(hist, horizon_days=28, level=80)
    inside = (y[200:] >= out["yhat_lower"].to_numpy()) & (y[200:] <= out["yhat_upper"].to_numpy())
    assert 0.6 <= inside.mean() <= 0.97
    width = (out["yhat_upper"] - out["yhat_lower"]).mean()
    assert 2 * 1.28 * 5 * 0.6 < width < 2 * 1.28 * 5 * 1.8  # near the true 80% width of N(0, 5)


def test_future_uplift_multiplies_forecast_and_is_kept_apart():
    hist = generate_series(days=90, trend_per_day=0.0, daily_amp=0, weekly_amp=0, noise=0.5, seed=2, start="2026-01-01")
    last = hist["ts"].iloc[-1]
    start = (last + pd.Timedelta(days=10)).date()
    end = (last + pd.Timedelta(days=12)).date()
    ev = Event(name="sale", start=start, end=end, uplift_pct=150)
    res = forecast_daily_peak(hist, 30, [ev])
    out = res.frame
    inside = out[(out.ts.dt.date >= start) & (out.ts.dt.date <= end)]
    outside = out[out.ts.dt.date < start]
    assert np.allclose(inside["yhat"], inside["yhat_baseline"] * 2.5)
    contrib = res.contributions.set_index("ts")
    assert set(contrib["event"]) == {"sale"}
    assert np.allclose(contrib.loc[inside["ts"], "contribution"], (inside["yhat"] - inside["yhat_baseline"]).to_numpy())
    assert np.allclose(outside["yhat"], outside["yhat_baseline"])
    assert (inside["yhat_upper"] >= inside["yhat"]).all()


def test_step_event_persists_and_ramps():
    hist = generate_series(days=60, trend_per_day=0.0, daily_amp=0, weekly_amp=0, noise=0.1, seed=4)
    last = hist["ts"].iloc[-1]
    start = (last + pd.Timedelta(days=8)).date()
    ev = Event(name="launch", kind="step", start=start, uplift_pct=20, ramp_up_days=4)
    out = forecast_daily_peak(hist, 20, [ev]).frame
    ratio = (out["yhat"] / out["yhat_baseline"]).to_numpy()
    assert ratio[-1] == pytest.approx(1.2)
    assert ratio[0] == pytest.approx(1.0)
    ramp = ratio[(out.ts.dt.date < start).to_numpy() & (ratio > 1.0001)]
    assert len(ramp) == 4 and np.all(np.diff(ramp) > 0)


def test_past_event_is_masked_and_its_uplift_measured():
    hist = generate_series(days=120, trend_per_day=0.0, daily_amp=5, weekly_amp=0, noise=0.5, seed=5,
                           start="2026-01-01", event=("2026-03-01", "2026-03-10", 100))
    ev = Event(name="fest", start="2026-03-01", end="2026-03-10", recurring="annual")
    res = fit_forecast(hist, 14, [ev])
    assert res.measured_uplifts["fest"] == pytest.approx(100, abs=15)
    # masked: the forecast level stays near 100 (the spike did not bend the fit)
    assert res.frame["yhat"].mean() == pytest.approx(100, abs=4)
    plain = fit_forecast(hist, 14)
    assert "fest" not in plain.measured_uplifts


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"ts": [], "value": []}), "empty"),
        (pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=5, freq="h", tz="UTC"), "value": [np.nan] * 5}), "no finite"),
        (pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=2, freq="h", tz="UTC"), "value": [1.0, 2.0]}), "at least 3"),
        (pd.DataFrame({"time": [1], "value": [1]}), "columns ts and value"),
        (pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=10, freq="7D", tz="UTC"), "value": range(10)}), "5 minutes to 1 day"),
    ],
)
def test_bad_inputs_give_clear_errors(frame, message):
    with pytest.raises(ForecastInputError, match=message):
        forecast_series(frame, 7)


def test_constant_series_gives_flat_forecast():
    ts = pd.date_range("2026-01-01", periods=24 * 30, freq="h", tz="UTC")
    res = fit_forecast(pd.DataFrame({"ts": ts, "value": 42.0}), 7)
    assert np.allclose(res.frame["yhat"], 42.0)
    assert any("constant" in w for w in res.warnings)


def test_short_history_falls_back_with_a_warning():
    ts = pd.date_range("2026-01-01", periods=24 * 5, freq="h", tz="UTC")
    res = fit_forecast(pd.DataFrame({"ts": ts, "value": np.arange(len(ts), dtype=float)}), 3)
    assert any("too short" in w for w in res.warnings)
    assert res.frame["yhat"].iloc[-1] > res.frame["yhat"].iloc[0]  # drift keeps the slope


def test_negative_values_are_clipped_and_forecast_non_negative():
    hist = generate_series(days=60, level=1.0, trend_per_day=-0.05, daily_amp=0.5, weekly_amp=0, noise=0.2, seed=6)
    res = fit_forecast(hist, 60)
    assert (res.frame[["yhat", "yhat_lower", "yhat_upper"]] >= 0).all().all()
    assert any("negative" in w for w in res.warnings)


def test_irregular_and_repeated_timestamps_are_handled():
    hist = generate_series(days=40, noise=0.5, seed=7, step="5min")
    hist = pd.concat([hist, hist.iloc[100:110]]).sample(frac=1, random_state=1)
    hist["ts"] = hist["ts"] + pd.to_timedelta(np.random.default_rng(0).integers(-20, 20, len(hist)), unit="s")
    res = fit_forecast(hist, 2)
    assert len(res.frame) == 2 * 24 * 12
    assert res.frame["ts"].diff().dropna().eq(pd.Timedelta(minutes=5)).all()


def test_backtest_scores_and_choice_are_reported():
    hist = generate_series(days=150, trend_per_day=0.3, noise=2, seed=8)
    res = fit_forecast(hist, 30)
    s = res.scores
    assert {"snaive", "drift"} <= set(s["model"])
    assert s["chosen"].sum() == 1
    chosen = s[s["chosen"]].iloc[0]
    assert chosen["mae"] <= s["mae"].min() * 1.05  # the best, or a combination within 5% of it
    assert chosen["rel_mase"] < 1.0  # beats seasonal naive on a clean seasonal series
    assert s.loc[s.model == "snaive", "rel_mase"].iloc[0] == pytest.approx(1.0)


def test_country_holidays_from_the_holidays_package():
    from forecasting.events import occurrences

    ev = Event(name="cn-holidays", kind="uplift", country="CN", uplift_pct=-30)
    occ = occurrences([ev], pd.Timestamp("2027-01-01").date(), pd.Timestamp("2027-12-31").date())
    days = {o.start for o in occ}
    assert pd.Timestamp("2027-10-01").date() in days  # National Day
    hist = generate_series(days=60, trend_per_day=0, daily_amp=0, weekly_amp=0, noise=0.1, seed=9, start="2026-08-01")
    out = forecast_daily_peak(hist, 70, [ev]).frame
    national_day = out[out.ts.dt.date == pd.Timestamp("2026-10-01").date()].iloc[0]
    assert national_day["yhat"] == pytest.approx(national_day["yhat_baseline"] * 0.7)


def test_a_past_event_is_masked_with_its_ramps():
    """A x2.5 festival with 3 days of ramp-up and 2 of ramp-down, ten days before the end of a
    flat history: none of it (ramps included) may lift the forecast."""
    hist = generate_series(days=120, trend_per_day=0.0, daily_amp=0, weekly_amp=0, noise=0.5, seed=5, start="2026-01-01")
    day = hist["ts"].dt.date
    start, end = (hist["ts"].iloc[-1] - pd.Timedelta(days=25)).date(), (hist["ts"].iloc[-1] - pd.Timedelta(days=14)).date()
    ev = Event(name="fest", start=start, end=end, uplift_pct=150, ramp_up_days=3, ramp_down_days=2)
    from forecasting.events import event_factor, occurrences

    factor = event_factor(day.to_numpy(), occurrences([ev], day.iloc[0], day.iloc[-1])[0], 150)
    hist = hist.assign(value=hist["value"] * factor)
    assert (factor > 1).sum() > (end - start).days + 1  # the ramps are in the history
    out = forecast_daily_peak(hist, 14, [ev]).frame
    assert out["yhat"].mean() == pytest.approx(100, rel=0.03)  # the flat level, not lifted by the ramps
