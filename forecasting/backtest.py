"""One rolling-origin backtest for model choice and calibration, and the error model.

The backtest (:func:`plan_backtest`; run over a whole panel by
:func:`forecasting.panel.backtest`, one statsforecast call): up to :data:`N_CALIBRATION`
origins from :data:`CALIBRATION_MIN_TRAIN` of the history to one day before its end,
spaced by whole days but never a multiple of the season (successive origins fall on
different weekdays and at different distances from the last weekly step change), each
scored on as much of the horizon as the history after it holds. The same windows:

* **choose** the model (:func:`choose`): MAE (every origin weighing the same), MASE
  (scaled by the in-sample weekly seasonal naive error), relative MASE (MAE over the
  seasonal naive's MAE on the same windows) and bias for every model; the median and the
  mean of the best :data:`~forecasting.models.ENSEMBLE_SIZE` candidates are candidates
  too. The lowest MAE wins, and an ensemble is preferred when it is within 5% of the
  best single model;
* **calibrate** the chosen one: its errors feed :func:`fit_error_model`.

The error model (docs/FORECASTING.md, "Intervals") is ``offset(h, p) = s(h) * z_p``:
``s(h)`` is the error's root mean square per horizon band (1, 2-3, 4-7, 8-15... days),
made non-decreasing and extended past the backtested horizon at least like sqrt(h);
``z_p`` are the quantiles of the errors divided by ``s(h)``, pooled over all horizons (so
skew and heavy tails are measured on every error, not on a handful per band), widened for
the few independent origins behind them; and ``s(h)`` never falls below the series' own
day-to-day variability, so no band has zero width because the backtest saw a flat stretch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import pandas as pd
from scipy.special import stdtrit

from .models import BASELINES, ENSEMBLE_BASELINES, ENSEMBLE_SIZE, ModelError

__all__ = [
    "BacktestPlan", "BacktestResult", "ErrorModel", "plan_backtest", "choose", "plan_calibration", "ensemble",
    "fit_error_model", "naive_scale", "day_to_day_scale", "loo_coverage", "ragged",
]

#: Prefer an ensemble unless the best single model is clearly (this factor) better.
COMBO_TOLERANCE = 1.05
#: Origins of the backtest. More origins give steadier quantiles and choices; with
#: ``refit=False`` each costs one cheap ``forward`` per model (bench/forecast.py).
N_CALIBRATION = 10
#: The earliest origin keeps this share of the history for training.
CALIBRATION_MIN_TRAIN = 0.4
#: A horizon band is measured only when this many origins reach into it.
MIN_BAND_ORIGINS = 3
#: Past the backtested horizon the error scale grows at least like h ** this.
MIN_GROWTH = 0.5
#: The error scale is at least this multiple of the mean absolute day-to-day change.
FLOOR_FACTOR = 1.0
#: ... and at least this share of the series' mean level (a constant series still gets a band).
RELATIVE_FLOOR = 1e-5
#: The error distribution is never narrower than a Student-t with this many degrees of
#: freedom scaled to the measured RMS (unit variance): errors are a mix of calm and
#: turbulent windows, so their centre is narrower and their tails wider than a normal's.
TAIL_DOF = 5


@dataclass(frozen=True)
class BacktestPlan:
    """Where to cut: ``origins`` are positions (training length), each scored on the next
    ``horizon`` steps; ``step`` is their spacing (statsforecast's ``step_size``)."""

    origins: tuple[int, ...]
    horizon: int
    step: int = 1  # fixed windows only


@dataclass
class BacktestResult:
    """Actuals and predictions per model at the plan's origins, and the scores and choice
    derived from them. ``members``: the models whose ``how`` ("single", "median" or
    "mean") is the chosen forecast."""

    plan: BacktestPlan
    actuals: np.ndarray  # (origins, horizon)
    predictions: dict[str, np.ndarray]  # model -> (origins, horizon)
    scale: float
    chosen: str = "snaive"
    members: tuple[str, ...] = ()
    how: str = "single"
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    failed: dict[str, str] = field(default_factory=dict)

    def residuals(self, model: str) -> np.ndarray:
        return self.actuals - self.predictions[model]


def plan_backtest(n: int, horizon: int, season: int, n_origins: int = N_CALIBRATION) -> BacktestPlan | None:
    """The one backtest: :func:`plan_calibration`'s ragged origins (from
    :data:`CALIBRATION_MIN_TRAIN` of the history to one day before its end, spaced by
    whole days but never a multiple of the season), each scored on the next
    ``min(horizon, n - origin)`` steps. None when fewer than 3 origins fit."""
    origins = tuple(o for o in plan_calibration(n, horizon, season, BacktestPlan((), horizon), n_origins) if o < n)
    if len(origins) < 3:
        return None
    return BacktestPlan(origins=origins, horizon=min(horizon, n - origins[0]))


def fixed_windows(n: int, horizon: int, season: int, n_origins: int = N_CALIBRATION) -> BacktestPlan | None:
    """Evenly spaced origins whose windows all have the same length and the last ends
    with the history: statsforecast ``cross_validation``'s layout (measured against
    :func:`plan_backtest`; docs/FORECASTING.md). The window is the plan horizon or half of
    the history after the first origin, whichever is shorter."""
    min_train = max(2 * season + 2, int(n * CALIBRATION_MIN_TRAIN))
    avail = n - min_train
    if avail < 4:
        return None
    h = min(horizon, (avail + 1) // 2)
    span = avail - h
    w = min(n_origins, span + 1)
    step = max(span // (w - 1), 1) if w > 1 else 1
    if step > 1 and step % season == 0:
        step -= 1
    last = n - h
    return BacktestPlan(origins=tuple(last - k * step for k in range(w - 1, -1, -1)), horizon=h, step=step)


def naive_scale(train: np.ndarray, season: int) -> float:
    """MASE's scale: the in-sample mean absolute error of the seasonal-naive forecast
    (lag ``season``; lag 1 when the series is shorter), never zero."""
    lag = season if len(train) > season else 1
    scale = float(np.mean(np.abs(train[lag:] - train[:-lag])))
    return scale if scale > 0 else max(float(np.mean(np.abs(train))), 1e-9) * 1e-3


def ensemble(predictions: list[np.ndarray], how: str) -> np.ndarray:
    """Combine member forecasts: ``single`` (the one member), ``median`` or ``mean``."""
    if how == "median":
        return np.median(predictions, axis=0)
    return np.mean(predictions, axis=0)


def _name(how: str, members: tuple[str, ...]) -> str:
    return members[0] if how == "single" else f"{how}({','.join(members)})"


def choose(y: np.ndarray, plan: BacktestPlan, predictions: dict[str, np.ndarray], candidates: tuple[str, ...],
           season: int) -> BacktestResult:
    """Score every model on the backtest windows and choose (see the module docstring).

    ``predictions``: model -> (origins, horizon); a model with any non-finite prediction
    failed on this series and is left out."""
    actuals = ragged([y[o: o + plan.horizon] for o in plan.origins])
    actuals = np.pad(actuals, ((0, 0), (0, plan.horizon - actuals.shape[1])), constant_values=np.nan)
    scored = np.isfinite(actuals)  # each origin as far as the history goes on
    ok = {m: p for m, p in predictions.items() if np.isfinite(p[scored]).all()}
    failed = {m: "no finite forecast at every origin" for m in predictions if m not in ok}
    result = BacktestResult(plan=plan, actuals=actuals, predictions=ok, scale=naive_scale(y[: plan.origins[0]], season),
                            failed=failed)
    mae = {m: _mae(actuals, p) for m, p in ok.items()}
    ranked = sorted((m for m in mae if m in candidates), key=mae.get) or sorted(mae, key=mae.get)
    if not ranked:
        raise ModelError("no model could be fitted: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    best = ranked[0]
    result.chosen, result.members = best, (best,)
    singles = [m for m in ranked if m in candidates and (m not in BASELINES or m in ENSEMBLE_BASELINES)]
    if len(singles) >= 3:
        # Combinations hold up better on unseen series than the single best of a
        # handful of windows (which is partly luck); the median also resists one member
        # that goes astray.
        members = tuple(sorted(singles[:ENSEMBLE_SIZE]))
        combos = {}
        for how in ("median", "mean"):
            name = _name(how, members)
            ok[name] = ensemble([ok[m] for m in members], how)
            mae[name] = _mae(actuals, ok[name])
            combos[name] = how
        top = min(combos, key=mae.get)
        if mae[top] <= mae[best] * COMBO_TOLERANCE:
            result.chosen, result.members, result.how = top, members, combos[top]
    result.scores = _scores(result, mae)
    return result


def _mae(actuals: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error, each origin weighing the same however long its window (the
    early origins' long windows would otherwise outvote the recent ones)."""
    return float(np.mean(np.nanmean(np.abs(actuals - pred), axis=1)))


def _scores(result: BacktestResult, mae: dict[str, float]) -> pd.DataFrame:
    """One row per model. ``coverage_80``/``coverage_95`` are filled by the engine for the
    chosen model (leave-one-origin-out over the same windows); NaN for the rest."""
    naive_mae = mae.get("snaive", np.nan)
    rows = []
    for model, pred in result.predictions.items():
        resid = result.actuals - pred
        rows.append({
            "model": model,
            "mae": mae[model],
            "mase": mae[model] / result.scale,
            "rel_mase": mae[model] / naive_mae if naive_mae and naive_mae > 0 else np.nan,
            "bias_pct": 100 * float(np.nanmean(-resid)) / max(float(np.nanmean(np.abs(result.actuals))), 1e-9),
            "coverage_80": np.nan,
            "coverage_95": np.nan,
            "chosen": model == result.chosen,
            "origins": len(result.plan.origins),
            "horizon_steps": result.plan.horizon,
        })
    return pd.DataFrame(rows)


def plan_calibration(n: int, horizon: int, season: int, choice: BacktestPlan, n_origins: int = N_CALIBRATION) -> tuple[int, ...]:
    """Ragged origins (each scored to the end of the history): ``choice``'s origins plus
    more, from :data:`CALIBRATION_MIN_TRAIN` of the history onwards, and one step before
    its end, spaced by whole days but never a multiple of the season (successive origins
    fall on different weekdays and at different distances from the last weekly step
    change). :func:`plan_backtest` is this with no choice origins."""
    first = max(2 * season + 2, int(n * CALIBRATION_MIN_TRAIN))
    extra = max(n_origins - len(choice.origins), 0)
    if first >= n - 1 or extra == 0:
        return choice.origins
    spacing = max(int(round((n - 1 - first) / max(extra - 1, 1))), 1)
    if spacing % season == 0:
        spacing -= 1
    spread = {first + k * spacing for k in range(extra - 1)} | {n - 1}
    return tuple(sorted(set(choice.origins) | {o for o in spread if o >= first}))


def ragged(rows: list[np.ndarray]) -> np.ndarray:
    """Stack rows of different lengths into one (rows, longest) array, NaN-padded."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


# --- error model ----------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorModel:
    """Calibrated forecast error quantiles: ``offset(day d, p) = s(d) * z(p)``.

    ``band_ends``/``band_scale``: the last day of each horizon band and the (non-decreasing)
    root mean square error measured in it; ``growth``: exponent of the scale's growth past
    the last band; ``z``: sorted standardized errors (pooled); ``n_origins``: how many
    origins they came from; ``floor``: the minimum scale; ``dependence``: the average
    correlation of two standardized errors from the same origin (see
    :func:`forecasting.risk.crossing_probability`).
    """

    band_ends: np.ndarray
    band_scale: np.ndarray
    growth: float
    z: np.ndarray
    n_origins: int
    floor: float
    dependence: float = 1.0

    def scale(self, days: np.ndarray) -> np.ndarray:
        """Error scale at 1-based horizon ``days`` (floor included)."""
        days = np.asarray(days, dtype=float)
        if len(self.band_ends) == 0:
            return np.full(days.shape, self.floor)
        i = np.searchsorted(self.band_ends, days)  # band holding each day
        inside = self.band_scale[np.minimum(i, len(self.band_scale) - 1)]
        last_day, last = float(self.band_ends[-1]), float(self.band_scale[-1])
        beyond = last * (np.maximum(days, last_day) / last_day) ** self.growth
        return np.maximum(np.where(days <= last_day, inside, beyond), self.floor)

    def z_quantiles(self, probs: np.ndarray) -> np.ndarray:
        """Standardized error quantiles: the pooled errors' own quantiles, never closer
        to zero than those of the unit-variance Student-t (:data:`TAIL_DOF`). The
        minimum matters where the backtest saw a flat stretch (all errors zero) and in
        the tails, which ten origins cannot show."""
        probs = np.asarray(probs, dtype=float)
        base = stdtrit(TAIL_DOF, probs) * np.sqrt((TAIL_DOF - 2) / TAIL_DOF)
        if len(self.z) == 0:
            return base
        emp = np.quantile(self.z, probs)
        return np.where(probs >= 0.5, np.maximum(emp, base), np.minimum(emp, base))

    def offsets(self, horizon: int, steps_per_day: int, probs: np.ndarray) -> np.ndarray:
        """(horizon, len(probs)) offsets to add to a point forecast at each step.

        Offsets below the median are <= 0 and above it >= 0 (the point forecast stays
        inside every central interval); each row is non-decreasing in ``p``.
        """
        probs = np.asarray(probs, dtype=float)
        days = np.arange(horizon) // steps_per_day + 1
        out = self.scale(days)[:, None] * self.z_quantiles(probs)[None, :]
        out[:, probs < 0.5] = np.minimum(out[:, probs < 0.5], 0.0)
        out[:, probs > 0.5] = np.maximum(out[:, probs > 0.5], 0.0)
        return out


def _bands(last_day: int) -> list[tuple[int, int]]:
    """Horizon bands in days, doubling: (1, 1), (2, 3), (4, 7), (8, 15), ..."""
    out, start = [], 1
    while start <= last_day:
        end = min(2 * start - 1, last_day)
        out.append((start, end))
        start = end + 1
    return out


def fit_error_model(resid: np.ndarray, steps_per_day: int, floor: float) -> ErrorModel:
    """Fit :class:`ErrorModel` to backtest errors.

    ``resid``: (origins, steps) of actual minus forecast, NaN where the origin's window
    ended; ``floor``: minimum error scale (see :func:`day_to_day_scale`).
    """
    resid = np.atleast_2d(np.asarray(resid, dtype=float))
    finite = np.isfinite(resid)
    n_origins = int(finite.any(axis=1).sum())
    if n_origins == 0:
        return ErrorModel(np.array([]), np.array([]), MIN_GROWTH, np.array([]), 0, floor)
    day = np.arange(resid.shape[1]) // steps_per_day + 1
    last_day = int(day[finite.any(axis=0)].max())
    ends, scales = [], []
    for a, b in _bands(last_day):
        chunk = resid[:, (day >= a) & (day <= b)]
        if np.isfinite(chunk).any(axis=1).sum() < min(MIN_BAND_ORIGINS, n_origins):
            break  # one or two windows that long say little: extrapolate instead
        ends.append(b)
        scales.append(float(np.sqrt(np.nanmean(chunk**2))))
    band_ends = np.array(ends, dtype=float)
    # Errors do not shrink with the horizon: a smaller RMS further out is sampling noise.
    band_scale = np.maximum.accumulate(np.maximum(np.array(scales), floor))
    growth = _growth(band_ends, band_scale)
    model = ErrorModel(band_ends, band_scale, growth, np.array([]), n_origins, floor)
    z = resid / model.scale(np.broadcast_to(day, resid.shape))
    return ErrorModel(band_ends, band_scale, growth, np.sort(z[finite]), n_origins, floor, _dependence(z))


def _dependence(z: np.ndarray) -> float:
    """Average correlation between two standardized errors of the same origin, as in a
    one-factor model ``z = sqrt(r) W + sqrt(1 - r) e``: E[(sum z)^2 - sum z^2] is
    D (D - 1) r for an origin with D errors. 1 when it cannot be measured."""
    finite = np.isfinite(z)
    zz = np.where(finite, z, 0.0)
    count, total, sq = finite.sum(axis=1), zz.sum(axis=1), (zz**2).sum(axis=1)
    use = count >= 2
    pairs = float(np.sum(total[use] ** 2 - sq[use]))
    squares = float(np.sum((count[use] - 1) * sq[use]))
    return float(np.clip(pairs / squares, 0.0, 1.0)) if squares > 0 else 1.0


def _growth(ends: np.ndarray, scale: np.ndarray) -> float:
    """Exponent of the scale's growth past the measured bands: the log-log slope over
    the measured bands, at least :data:`MIN_GROWTH` (a random walk) and at most 1 (a
    wrong trend)."""
    if len(ends) < 2 or scale[0] <= 0:
        return MIN_GROWTH
    x, y = np.log(ends), np.log(scale)
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))  # least squares
    return float(np.clip(slope, MIN_GROWTH, 1.0))


def day_to_day_scale(daily: np.ndarray, days: int = 56) -> float:
    """The floor for the error scale: how much the daily series' day-to-day change varies
    (mean absolute deviation of the changes from their median, over the last ``days``
    days, times :data:`FLOOR_FACTOR`), and at least :data:`RELATIVE_FLOOR` of its level.

    About the median, so a steady trend (storage filling up) adds nothing: it is
    forecast, not uncertain. A series held flat between steps has a median change of
    zero and a floor of the mean step size times the share of days with a step, so a
    backtest that happened to see only a flat stretch cannot give a zero-width band.
    """
    tail = np.asarray(daily, dtype=float)[-(days + 1):]
    tail = tail[np.isfinite(tail)]
    change = np.diff(tail)
    spread = float(np.mean(np.abs(change - np.median(change)))) if len(change) else 0.0
    level = float(np.mean(np.abs(tail))) if len(tail) else 0.0
    return max(FLOOR_FACTOR * spread, RELATIVE_FLOOR * level, 1e-12)


def loo_coverage(resid: np.ndarray, steps_per_day: int, floor: float, levels: tuple[float, ...] = (80, 95)) -> dict[float, float]:
    """Share of each origin's actuals inside the ``levels`` intervals of an error model
    fitted on the *other* origins (honest: the origin being checked is not used)."""
    rows = [k for k in range(resid.shape[0]) if np.isfinite(resid[k]).any()]
    if len(rows) < 2:
        return {lvl: float("nan") for lvl in levels}
    probs = np.array([p for lvl in levels for p in ((1 - lvl / 100) / 2, (1 + lvl / 100) / 2)])
    hits: dict[float, list[np.ndarray]] = {lvl: [] for lvl in levels}
    for k in rows:
        row = resid[k]
        ok = np.isfinite(row)
        off = fit_error_model(np.delete(resid, k, axis=0), steps_per_day, floor).offsets(len(row), steps_per_day, probs)[ok]
        for i, lvl in enumerate(levels):
            hits[lvl].append((row[ok] >= off[:, 2 * i]) & (row[ok] <= off[:, 2 * i + 1]))
    return {lvl: float(np.mean(np.concatenate(h))) for lvl, h in hits.items()}
