"""The many-series engine: a whole panel's backtest and forecasts in statsforecast calls.

Every series of a run is one ``unique_id`` of one long frame (``unique_id, ds, y``; ``ds``
is the day's position, statsforecast's integer ``freq=1``), renamed here and nowhere
else. :func:`backtest` runs the one rolling-origin backtest of :mod:`forecasting.backtest`
for every model over every series: each (series, origin) is one ``unique_id`` of the long
frame, so one ``StatsForecast.forecast`` call refits every model at every origin, and
each origin is scored on as much of the horizon as the history after it holds (early
origins measure the long horizons, late ones the next days on recent data).
:func:`cross_validate` is statsforecast's ``cross_validation`` (fixed windows, each model
fitted once and moved forward): cheaper, but its windows must all fit after the first
origin, so they are shorter and crowd together on short histories, and the intervals
under-cover (docs/FORECASTING.md). :func:`forecast` refits each model on the full
histories of the series that use it.

statsforecast compiles its models with numba on first use; ``NIXTLA_NUMBA_CACHE`` (set
here unless the caller set it) keeps the compiled code in numba's cache, so only the
first process on a machine pays for it (docs/PERFORMANCE.md, "Cold start").
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from .backtest import BacktestPlan
from .models import make_model

os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")

__all__ = ["backtest", "cross_validate", "forecast", "long_frame", "warm"]


def warm() -> None:
    """Import statsforecast now, so that worker processes forked after this share it
    instead of each importing it again (about 3 s on a cold process)."""
    import statsforecast.models  # noqa: F401


class _Guarded:
    """A model that answers NaN instead of raising, so one series a model cannot fit
    does not stop the panel (the backtest then leaves that model out for that series);
    ``forward`` falls back to a refit for models that have none (the fit-free ones)."""

    uses_exog = False

    def __init__(self, model: Any):
        self.model = model
        self.alias = model.alias

    def __repr__(self) -> str:
        return self.alias

    def new(self) -> "_Guarded":
        return _Guarded(self.model.new())

    def _safe(self, fn, h: int) -> dict[str, np.ndarray]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = np.asarray(fn()["mean"], dtype=float)
            return {"mean": out if out.shape == (h,) else np.full(h, np.nan)}
        except Exception:  # noqa: BLE001 - any failure of one model on one series is a NaN forecast
            return {"mean": np.full(h, np.nan)}

    def fit(self, y: np.ndarray, X: Any = None) -> "_Guarded":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = self.model.fit(y=y, X=X)
            self.failed_ = False
        except Exception:  # noqa: BLE001
            self.failed_ = True
        return self

    def predict(self, h: int, X: Any = None, level: Any = None) -> dict[str, np.ndarray]:
        if getattr(self, "failed_", False):
            return {"mean": np.full(h, np.nan)}
        return self._safe(lambda: self.model.predict(h=h, X=X), h)

    def forecast(self, y: np.ndarray, h: int, X: Any = None, X_future: Any = None, level: Any = None,
                 fitted: bool = False) -> dict[str, np.ndarray]:
        return self._safe(lambda: self.model.new().forecast(y=y, h=h), h)

    def forward(self, y: np.ndarray, h: int, X: Any = None, X_future: Any = None, level: Any = None,
                fitted: bool = False) -> dict[str, np.ndarray]:
        if getattr(self, "failed_", False):
            return self.forecast(y, h)
        if not hasattr(self.model, "forward"):
            return self.forecast(y, h)
        return self._safe(lambda: self.model.forward(y=y, h=h), h)


def long_frame(levels: dict[str, np.ndarray]) -> pd.DataFrame:
    """``unique_id, ds, y`` from ``{series id: values}`` (``ds`` = 0, 1, 2...)."""
    ids = list(levels)
    lengths = [len(levels[k]) for k in ids]
    return pd.DataFrame({
        "unique_id": np.repeat(np.array(ids, dtype=object), lengths),
        "ds": np.concatenate([np.arange(n) for n in lengths]) if ids else np.zeros(0, dtype=int),
        "y": np.concatenate([np.asarray(levels[k], dtype=float) for k in ids]) if ids else np.zeros(0),
    })


def _engine(models: list[str], season: int, n_jobs: int):
    from statsforecast import StatsForecast

    return StatsForecast(models=[_Guarded(make_model(m, season)) for m in models], freq=1, n_jobs=max(1, n_jobs))


def _by_series(frame: pd.DataFrame, models: list[str], ids: list[str], shape: tuple[int, ...]) -> dict[str, dict[str, np.ndarray]]:
    """Split statsforecast's long output into ``{series: {model: array of shape}}``."""
    keys = frame["unique_id"].to_numpy()
    sort_cols = [frame["ds"].to_numpy()] + ([frame["cutoff"].to_numpy()] if "cutoff" in frame else []) + [keys]
    order = np.lexsort(sort_cols)  # by series, then cutoff, then ds
    keys = keys[order]
    columns = {m: frame[m].to_numpy(dtype=float)[order] for m in models}
    size = int(np.prod(shape))
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    return {k: {m: columns[m][first[k]: first[k] + size].reshape(shape) for m in models} for k in ids}


def cross_validate(levels: dict[str, np.ndarray], models: tuple[str, ...], season: int, plan: BacktestPlan,
                   n_jobs: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """statsforecast's ``cross_validation`` over the panel (fixed windows, ``refit=False``:
    each model fitted once, at the first origin, and moved forward to the later ones):
    ``{series: {model: (origins, horizon)}}``. The plan's origins must be evenly spaced
    (``plan.step``) and its last window must end with the series
    (:func:`forecasting.backtest.fixed_windows`).

    Measured against :func:`backtest` (docs/FORECASTING.md, "One backtest")."""
    if not levels:
        return {}
    names = list(dict.fromkeys(models))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = _engine(names, season, n_jobs).cross_validation(
            df=long_frame(levels), h=plan.horizon, n_windows=len(plan.origins), step_size=plan.step, refit=False)
    return _by_series(cv, names, list(levels), (len(plan.origins), plan.horizon))


def backtest(levels: dict[str, np.ndarray], models: tuple[str, ...], season: int, plan: BacktestPlan,
             n_jobs: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """The one backtest: every model refitted at every origin of ``plan`` for every series,
    in one statsforecast ``forecast`` call over a long frame whose ``unique_id`` is
    (series, origin). Out: ``{series: {model: (origins, plan.horizon)}}``; row ``k`` is the
    forecast from ``plan.origins[k]`` (the caller scores it only where the history goes
    on). NaN rows where a model failed."""
    if not levels:
        return {}
    names = list(dict.fromkeys(models))
    cuts = {f"{i}:{k}": levels[sid][:o] for i, sid in enumerate(levels) for k, o in enumerate(plan.origins)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = _engine(names, season, n_jobs).forecast(df=long_frame(cuts), h=plan.horizon)
    by_cut = _by_series(fc, names, list(cuts), (plan.horizon,))
    return {sid: {m: np.stack([by_cut[f"{i}:{k}"][m] for k in range(len(plan.origins))]) for m in names}
            for i, sid in enumerate(levels)}


def forecast(levels: dict[str, np.ndarray], members: dict[str, tuple[str, ...]], season: int, horizon: int,
             n_jobs: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Forecasts from the full histories: ``{series: {model: (horizon,)}}`` for each
    series' ``members``; one statsforecast call per model over the series that use it."""
    users: dict[str, list[str]] = {}
    for sid, ms in members.items():
        for m in ms:
            users.setdefault(m, []).append(sid)
    out: dict[str, dict[str, np.ndarray]] = {sid: {} for sid in members}
    for model, ids in users.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fc = _engine([model], season, n_jobs if len(ids) > 1 else 1).forecast(
                df=long_frame({k: levels[k] for k in ids}), h=horizon)
        for sid, preds in _by_series(fc, [model], ids, (horizon,)).items():
            out[sid][model] = preds[model]
    return out
