"""Point-forecast models behind one small protocol, registered by name.

Each model sees one regular numpy series (no timestamps except where a library needs
them) and returns ``horizon`` point forecasts. Intervals are not the models' business:
:mod:`forecasting.backtest` calibrates them from rolling-origin residuals, the same way
for every model, so a model's interval is exactly as honest as its backtest.

``season`` is the number of steps in a week (7 for daily data, 168 for hourly), the
seasonality that matters most for capacity.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Protocol

import numpy as np
import pandas as pd

__all__ = ["Model", "MODELS", "BASELINES", "CANDIDATES", "make_model", "ModelError"]


class ModelError(ValueError):
    """A model cannot be fitted to this series (too short, unknown name...)."""


class Model(Protocol):
    """``fit(y) -> self``, then ``predict(horizon) -> array`` of point forecasts."""

    name: str

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "Model": ...

    def predict(self, horizon: int) -> np.ndarray: ...


class SeasonalNaive:
    """Repeat the last full season (last week). The baseline every score is scaled by."""

    name = "snaive"

    def __init__(self, season: int):
        self.season = season

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "SeasonalNaive":
        if len(y) < self.season:
            raise ModelError(f"snaive needs one season ({self.season} points), got {len(y)}")
        self.last_season_ = np.asarray(y[-self.season:], dtype=float)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        reps = int(np.ceil(horizon / self.season))
        return np.tile(self.last_season_, reps)[:horizon]


class Drift:
    """Last value plus the average change per step (a random walk with drift)."""

    name = "drift"

    def __init__(self, season: int):
        self.season = season

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "Drift":
        if len(y) < 2:
            raise ModelError("drift needs two points")
        self.last_ = float(y[-1])
        self.slope_ = float((y[-1] - y[0]) / (len(y) - 1))
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return self.last_ + self.slope_ * np.arange(1, horizon + 1)


class WindowMean:
    """Flat at the mean of the last season (the last week): the robust choice for a level
    that wanders without trend, where copying last week copies its noise too."""

    name = "window_mean"

    def __init__(self, season: int):
        self.season = season

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "WindowMean":
        if len(y) < 1:
            raise ModelError("window_mean needs one point")
        self.level_ = float(np.mean(y[-self.season:]))
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.full(horizon, self.level_)


class SeasonalTrend:
    """Mean weekly profile of the last few weeks plus a robust, damped linear trend.

    The profile averages out one week's noise (which seasonal naive copies); the trend
    is the Theil-Sen slope of weekly means, so one spike or level shift cannot tilt it.
    """

    name = "seasonal_trend"

    def __init__(self, season: int, weeks: int = 4, trend_weeks: int = 8, damping: float = 0.998):
        self.season, self.weeks, self.trend_weeks, self.damping = season, weeks, trend_weeks, damping

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "SeasonalTrend":
        s = self.season
        n_weeks = len(y) // s
        if n_weeks < 2:
            raise ModelError(f"seasonal_trend needs two seasons ({2 * s} points), got {len(y)}")
        full = np.asarray(y[len(y) - n_weeks * s:], dtype=float).reshape(n_weeks, s)
        means = full.mean(axis=1)
        k = min(self.trend_weeks, n_weeks)
        slope_per_week = _theil_sen(np.arange(k), means[-k:])
        self.slope_ = slope_per_week / s
        recent = full[-min(self.weeks, n_weeks):]
        # Re-centre each week on its own mean plus trend, so the profile is shape only.
        ages = np.arange(len(recent))[::-1]
        aligned = recent + (ages * slope_per_week)[:, None]
        self.profile_ = aligned.mean(axis=0)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        reps = int(np.ceil(horizon / self.season))
        seasonal = np.tile(self.profile_, reps)[:horizon]
        steps = np.arange(1, horizon + 1)
        d = self.damping ** (1.0 / max(self.season / 7, 1))  # damping per day, whatever the step
        damped = (d * (1 - d**steps) / (1 - d)) if d < 1 else steps
        # The profile's level is the last week's mean, centred half a week before the end.
        return seasonal + self.slope_ * (self.season / 2 + damped)


def _theil_sen(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return 0.0
    i, j = np.triu_indices(len(x), k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


class _StatsmodelsModel:
    name = "base"

    def __init__(self, season: int):
        self.season = season

    def _check(self, y: np.ndarray, seasons: int) -> None:
        if len(y) < seasons * self.season + 2:
            raise ModelError(
                f"{self.name} needs {seasons} seasons ({seasons * self.season} points), got {len(y)}"
            )

    def predict(self, horizon: int) -> np.ndarray:
        return np.asarray(self.result_.forecast(horizon), dtype=float)


class HoltWinters(_StatsmodelsModel):
    """statsmodels Holt-Winters: additive damped trend, additive weekly season."""

    name = "holt_winters"

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "HoltWinters":
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        self._check(y, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result_ = ExponentialSmoothing(
                np.asarray(y, dtype=float), trend="add", damped_trend=True, seasonal="add",
                seasonal_periods=self.season, initialization_method="heuristic",
            ).fit()
        return self


class Theta(_StatsmodelsModel):
    """statsmodels Theta method with weekly deseasonalisation."""

    name = "theta"

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "Theta":
        from statsmodels.tsa.forecasting.theta import ThetaModel

        self._check(y, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result_ = ThetaModel(np.asarray(y, dtype=float), period=self.season).fit()
        return self


class StlArima(_StatsmodelsModel):
    """statsmodels STL (weekly, robust) with an ARIMA(1,1,0)-with-drift on the rest."""

    name = "stl_arima"

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "StlArima":
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tsa.forecasting.stl import STLForecast

        self._check(y, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result_ = STLForecast(
                np.asarray(y, dtype=float), ARIMA, period=self.season, robust=True,
                model_kwargs={"order": (1, 1, 0), "trend": "t"},
            ).fit(fit_kwargs={"cov_type": "none"})  # same forecast, no numerical Hessian (20% faster)
        return self


class ProphetModel:
    """Prophet with weekly (and, on sub-daily data, daily) seasonality; MAP fit.

    Yearly seasonality only with at least two years of history. Prophet's own
    uncertainty sampling is switched off: intervals come from the backtest.
    """

    name = "prophet"

    def __init__(self, season: int):
        self.season = season

    def fit(self, y: np.ndarray, index: pd.DatetimeIndex | None = None) -> "ProphetModel":
        from prophet import Prophet

        if index is None:
            raise ModelError("prophet needs timestamps")
        if len(y) < 2 * self.season:
            raise ModelError(f"prophet needs two seasons ({2 * self.season} points), got {len(y)}")
        for name in ("prophet", "cmdstanpy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        span = index[-1] - index[0]
        sub_daily = (index[1] - index[0]) < pd.Timedelta(days=1)
        self.model_ = Prophet(
            yearly_seasonality=span >= pd.Timedelta(days=730),
            weekly_seasonality=True,
            daily_seasonality=bool(sub_daily),
            uncertainty_samples=0,
        )
        ds = index.tz_convert("UTC").tz_localize(None)
        self.model_.fit(pd.DataFrame({"ds": ds, "y": np.asarray(y, dtype=float)}))
        self.last_, self.step_ = ds[-1], ds[1] - ds[0]
        return self

    def predict(self, horizon: int) -> np.ndarray:
        future = pd.DataFrame({"ds": self.last_ + self.step_ * np.arange(1, horizon + 1)})
        return self.model_.predict(future)["yhat"].to_numpy(dtype=float)


MODELS: dict[str, Callable[[int], Model]] = {
    "snaive": SeasonalNaive,
    "drift": Drift,
    "window_mean": WindowMean,
    "seasonal_trend": SeasonalTrend,
    "holt_winters": HoltWinters,
    "theta": Theta,
    "stl_arima": StlArima,
    "prophet": ProphetModel,
}
#: Scored in every backtest; chosen only if nothing beats them.
BASELINES = ("snaive", "drift")
#: What ``model="auto"`` tries besides the baselines. Chosen by bench/forecast.py on the
#: real series (docs/FORECASTING.md): adding Prophet and Holt-Winters made auto slower
#: (0.47 s instead of 0.08 s per series) and no more accurate (geo. rel. MASE 0.91 vs 0.89).
#: Both stay available by name (``model="prophet"``).
CANDIDATES = ("window_mean", "seasonal_trend", "theta", "stl_arima")


def make_model(name: str, season: int) -> Model:
    """Instantiate a registered model for a series whose week is ``season`` steps."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}") from None
    return factory(season)
