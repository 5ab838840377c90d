"""Calibrated intervals: the quantile grid on every forecast, the error model behind it."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from forecasting import fit_forecast, forecast_daily_peak
from forecasting.backtest import BacktestPlan, day_to_day_scale, fit_error_model, plan_calibration
from forecasting.events import Event
from forecasting.frames import QUANTILE_COLUMNS, QUANTILES, quantile_column
from forecasting.synthetic import generate_fleet, generate_series


def test_quantile_column_names():
    assert quantile_column(0.01) == "q010"
    assert quantile_column(0.025) == "q025"
    assert quantile_column(0.5) == "q500"
    assert quantile_column(0.975) == "q975"
    assert quantile_column(0.99) == "q990"
    assert QUANTILE_COLUMNS == tuple(quantile_column(q) for q in QUANTILES)
    assert list(QUANTILES) == sorted(QUANTILES)
    with pytest.raises(ValueError):
        quantile_column(1.0)
    with pytest.raises(ValueError):
        quantile_column(0.0125)


@pytest.mark.parametrize("peak", [False, True])
def test_every_forecast_carries_an_ordered_quantile_grid(peak):
    hist = generate_series(days=90, trend_per_day=0.2, noise=2.0, seed=11)
    fn = forecast_daily_peak if peak else fit_forecast
    out = fn(hist, 30).frame
    assert list(out.columns[:5]) == ["ts", "yhat", "yhat_lower", "yhat_upper", "model"]
    assert set(QUANTILE_COLUMNS) <= set(out.columns)
    grid = out[list(QUANTILE_COLUMNS)].to_numpy()
    assert np.all(np.diff(grid, axis=1) >= -1e-9)
    # the 80% interval is the grid's 10% and 90% quantiles, and holds the point forecast
    assert np.allclose(out["yhat_lower"], out["q100"]) and np.allclose(out["yhat_upper"], out["q900"])
    assert (out["q400"] <= out["yhat"] + 1e-9).all() and (out["yhat"] <= out["q600"] + 1e-9).all()
    # and it widens with the horizon
    width = (out["q900"] - out["q100"]).to_numpy()
    assert width[-1] >= width[0] - 1e-9


def test_level_picks_the_matching_quantiles():
    hist = generate_series(days=90, noise=2.0, seed=12)
    out = fit_forecast(hist, 7, level=95).frame
    assert np.allclose(out["yhat_lower"], out["q025"]) and np.allclose(out["yhat_upper"], out["q975"])
    out50 = fit_forecast(hist, 7, level=50).frame
    assert np.allclose(out50["yhat_lower"], out50["q250"]) and np.allclose(out50["yhat_upper"], out50["q750"])


def _fleet_requests(resource: str) -> pd.DataFrame:
    chunk = next(generate_fleet(nodes=40, as_of=dt.date(2026, 10, 1), history_days=120, seed=11))
    meta = chunk.series
    sid = meta[(meta.pool == "compute") & (meta.resource == resource) & (meta.kind == "requests") & (meta.level == "node")]["series_id"].iloc[0]
    return chunk.samples[chunk.samples.series_id == sid][["ts", "value"]].reset_index(drop=True)


@pytest.mark.parametrize("peak", [False, True])
def test_step_like_requests_never_get_a_zero_width_band(peak):
    """The demo's requests are held for a week; the band must not collapse after a step."""
    hist = _fleet_requests("cpu")
    for cut_days in (0, 2, 4):  # different phases of the weekly step
        h = hist[hist.ts <= hist.ts.max() - pd.Timedelta(days=cut_days)]
        fn = forecast_daily_peak if peak else fit_forecast
        out = fn(h, 14).frame
        width = (out["yhat_upper"] - out["yhat_lower"]).to_numpy()
        assert width.min() > 1e-3 * out["yhat"].abs().mean(), (cut_days, width.min())
        assert (out["q990"] - out["q010"]).min() > width.min()


def test_constant_series_still_gets_a_band():
    ts = pd.date_range("2026-01-01", periods=24 * 60, freq="h", tz="UTC")
    out = fit_forecast(pd.DataFrame({"ts": ts, "value": 42.0}), 7).frame
    assert ((out["yhat_upper"] - out["yhat_lower"]) > 0).all()


def test_overlays_scale_the_quantiles():
    hist = generate_series(days=90, trend_per_day=0.0, daily_amp=0, weekly_amp=0, noise=0.5, seed=2)
    last = hist["ts"].iloc[-1]
    start, end = (last + pd.Timedelta(days=5)).date(), (last + pd.Timedelta(days=6)).date()
    plain = forecast_daily_peak(hist, 10).frame
    out = forecast_daily_peak(hist, 10, [Event(name="sale", start=start, end=end, uplift_pct=100)]).frame
    inside = (out.ts.dt.date >= start) & (out.ts.dt.date <= end)
    for col in ("q010", "q500", "q990"):
        assert np.allclose(out.loc[inside, col], 2 * plain.loc[inside, col])
        assert np.allclose(out.loc[~inside, col], plain.loc[~inside, col])


def test_error_model_recovers_known_noise_and_grows_past_the_backtest():
    rng = np.random.default_rng(0)
    resid = rng.normal(0, 5.0, size=(10, 14))
    em = fit_error_model(resid, 1, floor=0.1)
    off = em.offsets(60, 1, np.array([0.1, 0.5, 0.9]))
    # inside the backtested horizon: about the normal 80% half-width 1.28 * 5 (t4 minimum is narrower)
    assert 4.0 < off[0, 2] < 8.5 and -8.5 < off[0, 0] < -4.0
    assert np.all(np.diff(off[:, 2]) >= -1e-12)  # never narrower further out
    assert off[-1, 2] >= off[13, 2] * np.sqrt(60 / 14) * 0.99  # at least sqrt(h) growth past day 14


def test_error_model_floor_keeps_a_band_when_the_backtest_saw_no_error():
    em = fit_error_model(np.zeros((8, 10)), 1, floor=2.0)
    off = em.offsets(10, 1, np.array([0.1, 0.9]))
    assert np.all(off[:, 0] < -1.0) and np.all(off[:, 1] > 1.0)


def test_day_to_day_floor_ignores_a_steady_trend_but_not_steps():
    trend = 100 + 2.0 * np.arange(60)
    assert day_to_day_scale(trend) < 0.01
    steps = np.repeat(100 + 10.0 * np.arange(9), 7)[:60]  # +10 once a week
    assert day_to_day_scale(steps) == pytest.approx(10 * 8 / 56, rel=0.2)


def test_calibration_origins_are_spread_over_weekdays():
    choice = BacktestPlan(origins=(76, 83, 90), horizon=14)
    origins = plan_calibration(104, 30, 7, choice)
    assert set(choice.origins) <= set(origins)
    assert 8 <= len(origins) <= 10
    assert min(origins) <= 0.45 * 104
    assert len({o % 7 for o in origins}) >= 5  # not all on the weekday after a weekly step


def test_dependence_measures_shared_errors():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(40, 1)) * np.ones((1, 20))
    noise = rng.normal(size=(40, 20))
    assert fit_error_model(shared + 0.01 * noise, 1, 1e-9).dependence > 0.9
    assert fit_error_model(noise, 1, 1e-9).dependence < 0.1
    mixed = fit_error_model(shared + noise, 1, 1e-9).dependence
    assert 0.3 < mixed < 0.7
