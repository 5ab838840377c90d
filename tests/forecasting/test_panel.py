"""The many-series engine: one statsforecast panel, one backtest for choice and calibration."""

import numpy as np
import pandas as pd
import pytest

from forecasting import fit_forecast, forecast_daily_peak, forecast_panel
from forecasting import models as registry
from forecasting import panel
from forecasting.backtest import choose, fixed_windows, plan_backtest
from forecasting.models import LocalModel


def _daily(values: np.ndarray, start: str = "2026-01-01") -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.date_range(start, periods=len(values), freq="D", tz="UTC"), "value": values})


def _panel(seed: int = 0, n: int = 180) -> dict[str, np.ndarray]:
    """Seeded synthetic panel: weekly season plus a planted trend, a planted step or nothing."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    week = 5 * np.sin(2 * np.pi * t / 7)
    return {
        "trend": 100 + 0.8 * t + week + rng.normal(0, 1, n),
        "step": 100 + 40 * (t >= n - 40) + week + rng.normal(0, 1, n),
        "flat": 100 + week + rng.normal(0, 1, n),
    }


def test_one_backtest_plan_spreads_origins_over_weekdays():
    plan = plan_backtest(180, 180, 7)
    assert plan.origins[0] + plan.horizon == 180  # the first window reaches the end
    assert plan.origins[0] >= 0.4 * 180 and plan.origins[-1] == 179
    assert len(plan.origins) == 10
    assert len({o % 7 for o in plan.origins}) == 7
    assert plan_backtest(18, 14, 7) is None  # too short: the engine falls back (and says so)
    fixed = fixed_windows(180, 180, 7)  # statsforecast cross_validation's layout
    assert fixed.origins[-1] + fixed.horizon == 180 and fixed.step % 7 != 0
    assert np.all(np.diff(fixed.origins) == fixed.step) and fixed.origins[0] >= 0.4 * 180


def test_panel_recovers_a_planted_trend_and_step():
    series = _panel()
    jobs = [(k, _daily(v), []) for k, v in series.items()]
    out = forecast_panel(jobs, 28, workers=1)
    trend = out["trend"].frame["yhat"].to_numpy()
    slope = np.polyfit(np.arange(len(trend)), trend, 1)[0]
    assert slope == pytest.approx(0.8, abs=0.25)
    assert trend[0] == pytest.approx(100 + 0.8 * 180, abs=8)
    step = out["step"].frame["yhat"].to_numpy()
    assert step.mean() == pytest.approx(140, abs=6)  # the new level, not the average of both
    flat = out["flat"].frame["yhat"].to_numpy()
    assert flat.mean() == pytest.approx(100, abs=3) and abs(np.polyfit(np.arange(28), flat, 1)[0]) < 0.15


def test_panel_equals_one_series_at_a_time():
    series = _panel(seed=3, n=120)
    jobs = [(k, _daily(v), []) for k, v in series.items()]
    together = forecast_panel(jobs, 30, workers=1)
    for key, hist, _ in jobs:
        alone = forecast_daily_peak(hist, 30)
        pd.testing.assert_frame_equal(together[key].frame, alone.frame)
        assert together[key].dependence == pytest.approx(alone.dependence)


def test_process_pool_gives_the_same_numbers():
    series = {f"{k}-{i}": v for i in range(2) for k, v in _panel(seed=10 + i, n=100).items()}
    jobs = [(k, _daily(v), []) for k, v in series.items()]
    single = forecast_panel(jobs, 20, workers=1)
    pooled = forecast_panel(jobs, 20, workers=2)
    assert list(pooled) == list(single)
    for k in single:
        pd.testing.assert_frame_equal(single[k].frame, pooled[k].frame)


class _Fixed(LocalModel):
    """A fixed-answer model: always forecasts 100."""

    alias = "fixed"

    def _fit(self, y):
        self.seen_ = len(y)

    def _predict(self, h):
        return np.full(h, 100.0)


class _Fails(LocalModel):
    """Fails on series whose mean is above 130, answers 0 elsewhere."""

    alias = "fails"

    def _fit(self, y):
        if np.mean(y) > 130:
            raise ValueError("too high for me")

    def _predict(self, h):
        return np.zeros(h)


@pytest.fixture
def fake_models(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "fixed", _Fixed)
    monkeypatch.setitem(registry.MODELS, "fails", _Fails)


@pytest.mark.parametrize("layout", ["ragged", "fixed"])
def test_backtest_windows_hold_the_models_answers(fake_models, layout):
    series = _panel(n=100)
    if layout == "ragged":
        plan = plan_backtest(100, 30, 7)
        cv = panel.backtest(series, ("fixed", "snaive"), 7, plan)
    else:
        plan = fixed_windows(100, 30, 7)
        cv = panel.cross_validate(series, ("fixed", "snaive"), 7, plan)
    assert set(cv) == set(series)
    assert cv["flat"]["fixed"].shape == (len(plan.origins), plan.horizon)
    assert np.all(cv["flat"]["fixed"] == 100.0)
    y = series["flat"]
    for k, o in enumerate(plan.origins):  # seasonal naive from each origin: the week before it
        assert np.allclose(cv["flat"]["snaive"][k, :7], y[o - 7: o])


def test_choice_and_calibration_use_the_same_windows(fake_models):
    """On a flat series around 100 the fixed answer beats everything; its errors at the
    backtest's origins are the calibration's."""
    series = _panel(n=120)
    res = fit_forecast(_daily(series["flat"] - 5 * np.sin(2 * np.pi * np.arange(120) / 7)), 20, model="fixed")
    assert res.model == "fixed"
    s = res.scores.set_index("model")
    assert s.loc["fixed", "chosen"] and s.loc["fixed", "mae"] < s.loc["snaive", "mae"]
    plan = plan_backtest(120, 20, 7)
    assert (s["origins"] == len(plan.origins)).all() and (s["horizon_steps"] == plan.horizon).all()
    assert 0.6 <= s.loc["fixed", "coverage_80"] <= 1.0  # leave-one-origin-out over those windows
    assert np.allclose(res.frame["yhat"], 100.0)


def test_a_model_failing_on_one_series_leaves_the_others(fake_models):
    series = _panel(n=100)
    jobs = [(k, _daily(v), []) for k, v in series.items()]
    out = forecast_panel(jobs, 14, model="fails", workers=1)
    assert out["trend"].model != "fails"  # mean above 130: failed, a baseline took over
    assert any("fails unavailable" in w for w in out["trend"].warnings)
    assert out["flat"].model == "fails"


def test_ensembles_are_candidates_named_by_their_members():
    rng = np.random.default_rng(5)
    y = 50 + rng.normal(0, 1, 100)
    plan = plan_backtest(100, 20, 7)
    actual = np.stack([np.pad(y[o: o + plan.horizon], (0, plan.horizon - len(y[o: o + plan.horizon])),
                              constant_values=np.nan) for o in plan.origins])
    preds = {"a": actual + 1.0, "b": actual - 1.0, "c": actual + 0.1, "snaive": actual + 5.0, "drift": actual + 5.0}
    res = choose(y, plan, preds, ("a", "b", "c", "snaive", "drift"), 7)
    # median(a, b, c) = c + 0: better than c alone; mean(a, b, c) = actual + 0.033
    assert res.chosen == "mean(a,b,c)" and res.how == "mean" and res.members == ("a", "b", "c")
    assert {"median(a,b,c)", "mean(a,b,c)"} <= set(res.scores["model"])
    assert res.scores.loc[res.scores.model == "snaive", "rel_mase"].iloc[0] == pytest.approx(1.0)


def test_requests_that_step_up_with_usage_follow_its_trend():
    """Usage climbs steadily; requests are reset to 1.3 x the last week's usage peak once
    a week (the demo fleet's deploys). Alone, the requests' last step is held; sent with
    their usage, the forecast climbs with it."""
    n = 150
    t = np.arange(n + 28)
    usage = 100 * (1 + 0.004 * t) + 3 * np.sin(2 * np.pi * t / 7) + np.random.default_rng(2).normal(0, 0.5, len(t))
    weekly = np.array([usage[max(0, i - 7): i + 1].max() for i in range(len(t))])
    requests = 1.3 * weekly[(t // 7) * 7]
    jobs = [("usage", _daily(usage[:n]), []), ("requests", _daily(requests[:n]), [], "usage")]
    out = forecast_panel(jobs, 28, workers=1)
    res = out["requests"]
    assert "follow_usage" in set(res.scores["model"])
    assert "follow_usage" in res.model  # alone or in the chosen ensemble
    err_follow = np.mean(np.abs(res.frame["yhat"].to_numpy() - requests[n:]))
    last_step = np.mean(np.abs(requests[n - 1] - requests[n:]))
    assert err_follow < 0.6 * last_step
    alone = forecast_panel([jobs[1][:3]], 28, workers=1)["requests"]
    assert "follow_usage" not in set(alone.scores["model"])
    assert err_follow < np.mean(np.abs(alone.frame["yhat"].to_numpy() - requests[n:]))
