"""Point-forecast models, registered by name, all in statsforecast's model protocol.

Every model is an object statsforecast can fit over a whole panel at once
(:mod:`forecasting.panel`): ``forecast(y, h) -> {"mean": array}``, ``fit(y)`` /
``predict(h)``, ``forward(y, h)`` (apply what was fitted to a longer history: the cheap
step of a rolling-origin backtest, ``cross_validation(refit=False)``), ``new()`` and an
``alias`` (the name in the registry, and the column statsforecast writes). Intervals are
not the models' business: :mod:`forecasting.backtest` calibrates them from the same
rolling-origin errors that choose the model.

Two kinds:

* statsforecast's numba-compiled models (AutoETS, the Theta family, MSTL, CES,
  AutoARIMA; PyPI ``statsforecast``), configured once here;
* :class:`LocalModel`: small numpy models statsforecast does not have (or has without
  ``forward``), and by-name adapters for statsmodels and Prophet. Their ``forward`` is a
  refit: for the numpy ones that is what fitting means (they read the last weeks), for
  the slow adapters it keeps the backtest honest.

``season`` is the number of steps in a week: models see the daily level (7).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = ["MODELS", "BASELINES", "CANDIDATES", "ENSEMBLE_BASELINES", "ENSEMBLE_SIZE", "make_model", "ModelError", "LocalModel"]


class ModelError(ValueError):
    """A model cannot be fitted to this series (too short, unknown name...)."""


class LocalModel:
    """Base of the numpy/adapter models: statsforecast's protocol on ``_fit``/``_predict``.

    Follows the shape of statsforecast's own ``_TS`` models (statsforecast/models.py):
    fitted state ends in an underscore, ``new()`` is a shallow copy.
    """

    uses_exog = False
    alias = "local"

    def __init__(self, season: int):
        self.season = season

    def new(self) -> "LocalModel":
        b = type(self).__new__(type(self))
        b.__dict__.update(self.__dict__)
        return b

    def __repr__(self) -> str:
        return self.alias

    def _fit(self, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, h: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, y: np.ndarray, X: Any = None) -> "LocalModel":
        self._fit(np.asarray(y, dtype=float))
        return self

    def predict(self, h: int, X: Any = None, level: Any = None) -> dict[str, np.ndarray]:
        return {"mean": np.asarray(self._predict(h), dtype=float)}

    def forecast(self, y: np.ndarray, h: int, X: Any = None, X_future: Any = None, level: Any = None,
                 fitted: bool = False) -> dict[str, np.ndarray]:
        return self.new().fit(y).predict(h)

    def forward(self, y: np.ndarray, h: int, X: Any = None, X_future: Any = None, level: Any = None,
                fitted: bool = False) -> dict[str, np.ndarray]:
        return self.forecast(y, h)


class SeasonalNaive(LocalModel):
    """Repeat the last full season (last week). The baseline every score is scaled by."""

    alias = "snaive"

    def _fit(self, y: np.ndarray) -> None:
        if len(y) < self.season:
            raise ModelError(f"snaive needs one season ({self.season} points), got {len(y)}")
        self.last_season_ = y[-self.season:]

    def _predict(self, h: int) -> np.ndarray:
        return np.tile(self.last_season_, int(np.ceil(h / self.season)))[:h]


class Drift(LocalModel):
    """Last value plus the average change per step (a random walk with drift)."""

    alias = "drift"

    def _fit(self, y: np.ndarray) -> None:
        if len(y) < 2:
            raise ModelError("drift needs two points")
        self.last_, self.slope_ = float(y[-1]), float((y[-1] - y[0]) / (len(y) - 1))

    def _predict(self, h: int) -> np.ndarray:
        return self.last_ + self.slope_ * np.arange(1, h + 1)


class WindowMean(LocalModel):
    """Flat at the mean of the last season (the last week): the robust choice for a level
    that wanders without trend, where copying last week copies its noise too."""

    alias = "window_mean"

    def _fit(self, y: np.ndarray) -> None:
        if len(y) < 1:
            raise ModelError("window_mean needs one point")
        self.level_ = float(np.mean(y[-self.season:]))

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.level_)


class SeasonalTrend(LocalModel):
    """Mean weekly profile of the last few weeks plus a robust, damped linear trend.

    The profile averages out one week's noise (which seasonal naive copies); the trend
    is the Theil-Sen slope of weekly means, so one spike or level shift cannot tilt it.
    """

    alias = "seasonal_trend"

    def __init__(self, season: int, weeks: int = 4, trend_weeks: int = 8, damping: float = 0.998):
        super().__init__(season)
        self.weeks, self.trend_weeks, self.damping = weeks, trend_weeks, damping

    def _fit(self, y: np.ndarray) -> None:
        s = self.season
        n_weeks = len(y) // s
        if n_weeks < 2:
            raise ModelError(f"seasonal_trend needs two seasons ({2 * s} points), got {len(y)}")
        full = y[len(y) - n_weeks * s:].reshape(n_weeks, s)
        means = full.mean(axis=1)
        k = min(self.trend_weeks, n_weeks)
        slope_per_week = _theil_sen(np.arange(k), means[-k:])
        self.slope_ = slope_per_week / s
        recent = full[-min(self.weeks, n_weeks):]
        # Re-centre each week on its own mean plus trend, so the profile is shape only.
        ages = np.arange(len(recent))[::-1]
        self.profile_ = (recent + (ages * slope_per_week)[:, None]).mean(axis=0)

    def _predict(self, h: int) -> np.ndarray:
        seasonal = np.tile(self.profile_, int(np.ceil(h / self.season)))[:h]
        steps = np.arange(1, h + 1)
        d = self.damping ** (1.0 / max(self.season / 7, 1))  # damping per day, whatever the step
        damped = (d * (1 - d**steps) / (1 - d)) if d < 1 else steps
        # The profile's level is the last week's mean, centred half a week before the end.
        return seasonal + self.slope_ * (self.season / 2 + damped)


def _theil_sen(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return 0.0
    i, j = np.triu_indices(len(x), k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


class HoltWinters(LocalModel):
    """statsmodels Holt-Winters: additive damped trend, additive weekly season (by name)."""

    alias = "holt_winters"

    def _fit(self, y: np.ndarray) -> None:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        _need_seasons(self, y, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result_ = ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add",
                                                seasonal_periods=self.season, initialization_method="heuristic").fit()

    def _predict(self, h: int) -> np.ndarray:
        return np.asarray(self.result_.forecast(h), dtype=float)


class StlArima(LocalModel):
    """statsmodels STL (weekly, robust) with an ARIMA(1,1,0)-with-drift on the rest (by name)."""

    alias = "stl_arima"

    def _fit(self, y: np.ndarray) -> None:
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tsa.forecasting.stl import STLForecast

        _need_seasons(self, y, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result_ = STLForecast(y, ARIMA, period=self.season, robust=True,
                                       model_kwargs={"order": (1, 1, 0), "trend": "t"}).fit(fit_kwargs={"cov_type": "none"})

    def _predict(self, h: int) -> np.ndarray:
        return np.asarray(self.result_.forecast(h), dtype=float)


class ProphetModel(LocalModel):
    """Prophet on the daily level with weekly seasonality (yearly only with two years of
    history), MAP fit, no uncertainty sampling (intervals come from the backtest).

    The panel passes values, not dates: Prophet sees consecutive days from a fixed start,
    which moves the phase of its weekly terms and nothing else.
    """

    alias = "prophet"

    def _fit(self, y: np.ndarray) -> None:
        from prophet import Prophet

        if len(y) < 2 * self.season:
            raise ModelError(f"prophet needs two seasons ({2 * self.season} points), got {len(y)}")
        for name in ("prophet", "cmdstanpy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        ds = pd.date_range("2000-01-03", periods=len(y), freq="D")
        self.model_ = Prophet(yearly_seasonality=len(y) >= 730, weekly_seasonality=True, daily_seasonality=False,
                              uncertainty_samples=0)
        self.model_.fit(pd.DataFrame({"ds": ds, "y": y}))
        self.last_ = ds[-1]

    def _predict(self, h: int) -> np.ndarray:
        future = pd.DataFrame({"ds": pd.date_range(self.last_ + pd.Timedelta(days=1), periods=h, freq="D")})
        return self.model_.predict(future)["yhat"].to_numpy(dtype=float)


def _need_seasons(model: LocalModel, y: np.ndarray, seasons: int) -> None:
    if len(y) < seasons * model.season + 2:
        raise ModelError(f"{model.alias} needs {seasons} seasons ({seasons * model.season} points), got {len(y)}")


def _sf(name: str, factory: Callable[[int], Any]) -> Callable[[int], Any]:
    """A statsforecast model factory whose alias is the registry name."""

    def make(season: int) -> Any:
        m = factory(season)
        m.alias = name
        return m

    make.__doc__ = f"statsforecast model registered as {name!r}"
    return make


def _ets(season: int) -> Any:
    from statsforecast.models import AutoETS

    # Additive season, trend chosen (none, additive, damped) by AICc: 3 fits instead of
    # AutoETS's 30; the multiplicative variants were not better on the benchmark.
    return AutoETS(season_length=season, model="AZA")


def _theta(season: int) -> Any:
    from statsforecast.models import Theta

    return Theta(season_length=season)


def _dotm(season: int) -> Any:
    from statsforecast.models import DynamicOptimizedTheta

    return DynamicOptimizedTheta(season_length=season)


def _ets_damped(season: int) -> Any:
    from statsforecast.models import AutoETS

    return AutoETS(season_length=season, model="AAA", damped=True)


def _mstl(season: int) -> Any:
    from statsforecast.models import MSTL, AutoETS

    return MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))


def _ces(season: int) -> Any:
    from statsforecast.models import AutoCES

    return AutoCES(season_length=season)


def _arima(season: int) -> Any:
    from statsforecast.models import AutoARIMA

    return AutoARIMA(season_length=season)


MODELS: dict[str, Callable[[int], Any]] = {
    "snaive": SeasonalNaive,
    "drift": Drift,
    "window_mean": WindowMean,
    "seasonal_trend": SeasonalTrend,
    "ets": _sf("ets", _ets),
    "theta": _sf("theta", _theta),
    "dotm": _sf("dotm", _dotm),
    "ets_damped": _sf("ets_damped", _ets_damped),
    "mstl": _sf("mstl", _mstl),
    "ces": _sf("ces", _ces),
    "auto_arima": _sf("auto_arima", _arima),
    "holt_winters": HoltWinters,
    "stl_arima": StlArima,
    "prophet": ProphetModel,
}
#: Scored in every backtest; chosen only if nothing beats them.
BASELINES = ("snaive", "drift")
#: What ``model="auto"`` tries besides the baselines (docs/FORECASTING.md, "Choices").
#: Chosen on bench/forecast.py (docs/FORECASTING.md, "Choices"): adding AutoETS or MSTL
#: (or the optimised theta, CES, the statsmodels models) was no more accurate on the real
#: series and two to five times slower; they stay available by name.
CANDIDATES = ("window_mean", "seasonal_trend", "theta")
#: Baselines that may be ensemble members (seasonal naive: the reference ensemble
#: median(seasonal naive, MSTL, Prophet) has it; drift's straight line does not blend).
ENSEMBLE_BASELINES = ("snaive",)
#: The median and mean of the best this many candidates are candidates too.
ENSEMBLE_SIZE = 3


def make_model(name: str, season: int) -> Any:
    """Instantiate a registered model for a series whose week is ``season`` steps."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}") from None
    return factory(season)
