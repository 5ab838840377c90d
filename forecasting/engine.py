"""The public forecasting API: one series or a panel in, forecast frames out.

``forecast_series(history, horizon_days)`` takes ``ts, value`` at any regular step
from 5 minutes to a day and returns, at the same step for the ``horizon_days`` after
the last timestamp: ``ts, yhat, yhat_lower, yhat_upper, model``, one column per
predictive quantile (``q010`` ... ``q990``, :data:`forecasting.frames.QUANTILE_COLUMNS`)
and ``yhat_baseline``. :func:`fit_forecast` also returns what each event added
(``ForecastResult.contributions``: ``ts, event, contribution``) and how much the errors
of different steps move together (``ForecastResult.dependence``, for
:mod:`forecasting.risk`).

How it works, and why (see docs/FORECASTING.md for the measurements):

1. the history is regularised (duplicates averaged, gaps filled, negatives clipped)
   and event windows are masked so spikes do not bend the fit;
2. sub-daily data is split into 24-hour block means (the level) and a median
   step-of-week or step-of-day profile (the shape). Models forecast the level at daily
   resolution, where they are fast and where the weekly season is 7 steps;
3. every candidate model is backtested from three origins and the best one (or the
   mean of the best three) is chosen per series;
4. the chosen model is backtested again from up to ten origins spread over the second
   part of the history; its errors there, per horizon band, give the quantiles
   (:func:`forecasting.backtest.fit_error_model`). ``yhat_lower``/``yhat_upper`` are the
   ``level`` interval of the same quantile function;
5. overlays (future uplifts, steps, recurring events) multiply the result, quantiles
   included.

``forecast_daily_peak`` does the same on the daily maximum: capacity is about peaks.
"""

from __future__ import annotations

import warnings
from statistics import NormalDist
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .backtest import (
    BacktestResult, calibration_predictions, day_to_day_scale, fit_error_model, loo_coverage, plan_backtest,
    plan_calibration, ragged, run_backtest,
)
from .events import CONTRIBUTION_COLUMNS, Event, apply_overlays, mask_events, measure_uplift, occurrences
from .frames import QUANTILE_COLUMNS, QUANTILES
from .models import BASELINES, CANDIDATES, MODELS, ModelError, make_model
from .series import SeriesQuality, daily_peak, infer_step, regularize, to_series

__all__ = ["ForecastResult", "ForecastInputError", "fit_forecast", "forecast_series", "forecast_daily_peak", "forecast_panel"]

import logging

for _name in ("prophet", "cmdstanpy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

DAY = pd.Timedelta(days=1)
PROFILE_WEEKS = 4


class ForecastInputError(ValueError):
    """The history cannot be forecast; the message says what was wrong and what is expected."""


@dataclass
class ForecastResult:
    """A forecast frame plus how it was made (model, backtest scores, repairs, warnings)."""

    frame: pd.DataFrame
    model: str
    scores: pd.DataFrame
    quality: SeriesQuality | None
    warnings: list[str] = field(default_factory=list)
    measured_uplifts: dict[str, float] = field(default_factory=dict)
    #: What each event added to ``yhat``: ``ts, event, contribution`` (non-zero rows).
    contributions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CONTRIBUTION_COLUMNS))
    #: How much of the forecast error is shared between steps (0: independent, 1: moves
    #: in lockstep), measured on the calibration backtest; pass it to
    #: :func:`forecasting.risk.crossing_probability` with a daily-peak frame.
    dependence: float = 1.0


def forecast_series(
    history: pd.DataFrame,
    horizon_days: float,
    events: list[Event] | None = None,
    model: str = "auto",
    level: float = 80.0,
    non_negative: bool = True,
) -> pd.DataFrame:
    """Forecast one series. Columns in: ``ts, value``. Out: see the module docstring."""
    return fit_forecast(history, horizon_days, events, model, level, non_negative).frame


def fit_forecast(
    history: pd.DataFrame,
    horizon_days: float,
    events: list[Event] | None = None,
    model: str = "auto",
    level: float = 80.0,
    non_negative: bool = True,
) -> ForecastResult:
    """Like :func:`forecast_series`, returning the scores and repairs as well."""
    y, quality, notes = _prepare(history, non_negative)
    return _forecast(y, quality, notes, horizon_days, events or [], model, level, non_negative)


def forecast_daily_peak(
    history: pd.DataFrame,
    horizon_days: float,
    events: list[Event] | None = None,
    model: str = "auto",
    level: float = 80.0,
    non_negative: bool = True,
) -> ForecastResult:
    """Forecast the daily maximum. Columns in: ``ts, value`` (any step up to a day).

    Out: one row per UTC day, ``ts`` at midnight, with the same columns as
    :func:`forecast_series`; ``yhat_upper`` is the conservative peak a plan should use.
    """
    y, quality, notes = _prepare(history, non_negative)
    peaks = daily_peak(y)
    peaks = peaks.asfreq("D")
    if peaks.isna().any():
        peaks = peaks.interpolate(limit_direction="both")
    return _forecast(peaks, quality, notes, horizon_days, events or [], model, level, non_negative)


def _prepare(history: pd.DataFrame, non_negative: bool) -> tuple[pd.Series, SeriesQuality, list[str]]:
    for col in ("ts", "value"):
        if col not in history.columns:
            raise ForecastInputError(f"history needs columns ts and value; missing {col!r}")
    if history.empty:
        raise ForecastInputError("history is empty")
    raw = to_series(history)
    finite = np.isfinite(raw.to_numpy())
    if not finite.any():
        raise ForecastInputError("history has no finite values (all NaN or infinite)")
    if raw[finite].index.nunique() < 3:
        raise ForecastInputError(f"history has {raw[finite].index.nunique()} distinct timestamps; need at least 3")
    notes = []
    if non_negative and (raw[finite] < 0).any():
        notes.append(f"{int((raw[finite] < 0).sum())} negative value(s) clipped to 0 (metric is non-negative)")
    step = infer_step(pd.DatetimeIndex(raw[finite].index))
    if step > DAY:
        raise ForecastInputError(f"step is {step}; expected a regular step from 5 minutes to 1 day")
    y, quality = regularize(raw, step, non_negative=non_negative)
    if quality.duplicates:
        notes.append(f"{quality.duplicates} repeated timestamp(s) averaged")
    if quality.gaps:
        notes.append(f"{quality.gaps} gap(s) filled, longest {quality.longest_gap_steps} step(s)")
    return y, quality, notes


def _forecast(
    y: pd.Series,
    quality: SeriesQuality | None,
    notes: list[str],
    horizon_days: float,
    events: list[Event],
    model: str,
    level: float,
    non_negative: bool,
) -> ForecastResult:
    if model != "auto" and model not in MODELS:
        raise ForecastInputError(f"unknown model {model!r}; expected auto or one of {', '.join(MODELS)}")
    if not 0 < level < 100:
        raise ForecastInputError(f"level must be between 0 and 100 (percent), got {level}")
    index = pd.DatetimeIndex(y.index)
    step = pd.Timedelta(index[1] - index[0])
    horizon = int(round(pd.Timedelta(days=horizon_days) / step))
    if horizon < 1:
        raise ForecastInputError(f"horizon of {horizon_days} days is shorter than one step ({step})")
    occ = occurrences(events, index[0].date(), (index[-1] + pd.Timedelta(days=horizon_days)).date())
    masked = mask_events(y, [o for o in occ if o.start <= index[-1].date()])
    fitted = masked
    if masked.isna().any():
        # Fill masked windows from the same weekday/hour of neighbouring weeks, so the
        # counterfactual keeps the weekly shape.
        fitted, _ = regularize(masked.dropna(), step, non_negative=non_negative)
        fitted = fitted.reindex(index).interpolate(limit_direction="both")
    measured = {}
    for o in occ:
        if o.end is not None and o.end <= index[-1].date() and o.event.kind == "uplift":
            m = measure_uplift(y, fitted, o)
            if m is not None:
                measured[o.event.name] = m
    level_series, profile = _split_level(fitted, step)
    choice = (*CANDIDATES, *BASELINES) if model == "auto" else (model,)
    frame, model_name, scores, more, dependence = _forecast_level(level_series, profile, fitted, choice, horizon, step, level)
    notes += more
    # Future windows only; a step that began inside the history is in the data the model
    # was fitted on, so applying it again would count it twice.
    last = index[-1].date()
    ahead = [o for o in occ if (o.end is not None and o.end > last) or (o.end is None and o.start > last)]
    frame, contributions = apply_overlays(frame, ahead, measured)
    if non_negative:
        for c in ("yhat", "yhat_lower", "yhat_upper", "yhat_baseline", *QUANTILE_COLUMNS):
            frame[c] = frame[c].clip(lower=0)
    frame.insert(4, "model", model_name)
    return ForecastResult(frame, model_name, scores, quality, notes, measured, contributions, dependence)


def _split_level(y: pd.Series, step: pd.Timedelta) -> tuple[pd.Series, dict[str, np.ndarray] | None]:
    """For sub-daily data: 24h block means ending at the last point, and candidate shape
    profiles (value minus its block mean), each one week long:

    * ``week``: mean step-of-week shape of the last (up to four) weeks: keeps weekday
      differences in the daily shape;
    * ``day``: mean step-of-day shape of the last (up to 28) days, repeated: four to seven
      times less noisy when every day has the same shape;
    * ``blend``: their mean.
    """
    if step >= DAY:
        return y, None
    per_day = int(round(DAY / step))
    n_days = len(y) // per_day
    if n_days < 3:
        raise ForecastInputError(f"history covers {len(y) * step}; need at least 3 days of sub-daily data")
    tail = y.iloc[len(y) - n_days * per_day:]
    blocks = tail.to_numpy().reshape(n_days, per_day)
    means = blocks.mean(axis=1)
    shapes = blocks - means[:, None]
    level = pd.Series(means, index=pd.DatetimeIndex(tail.index[per_day - 1:: per_day]))
    # Medians, not means: the error that matters is absolute, and spikes are common.
    day = np.tile(np.median(shapes[-min(28, n_days):], axis=0), 7)
    weeks = min(PROFILE_WEEKS, n_days // 7)
    if weeks == 0:
        return level, {"day": day}
    week = np.median(shapes[-weeks * 7:].reshape(weeks, 7 * per_day), axis=0)
    return level, {"week": week, "day": day, "blend": (week + day) / 2}


def _forecast_level(
    level_series: pd.Series,
    profiles: dict[str, np.ndarray] | None,
    full: pd.Series,
    choice: tuple[str, ...],
    horizon: int,
    step: pd.Timedelta,
    level: float,
) -> tuple[pd.DataFrame, str, pd.DataFrame, list[str], float]:
    """Point forecast at the series' own step plus calibrated quantiles, and the errors'
    dependence between steps.

    Out: ``ts, yhat, yhat_lower, yhat_upper`` and one column per :data:`QUANTILE_COLUMNS`.
    """
    notes: list[str] = []
    y = level_series.to_numpy(dtype=float)
    index = pd.DatetimeIndex(level_series.index)
    per_day = 1 if profiles is None else int(round(DAY / step))
    season = 7
    h_days = int(np.ceil(horizon / per_day))
    if np.allclose(y, y[0]):
        notes.append("series is constant: forecast is flat")
        choice = ("snaive",)
    plan = plan_backtest(len(y), h_days, season)
    result: BacktestResult | None = None
    if plan is None:
        notes.append(f"history too short ({len(y)} days) for a backtest: fell back to drift")
        members: tuple[str, ...] = ("drift",) if len(y) < 2 * season else ("seasonal_trend",)
        name = members[0]
        scores = pd.DataFrame()
    else:
        result = run_backtest(y, index, choice, plan, season)
        for m, why in result.failed.items():
            if m in choice:
                notes.append(f"model {m} failed in backtest ({why})")
        name, members, scores = result.chosen, result.members, result.scores
        if len(choice) == 1 and name not in choice:
            notes.append(f"model {choice[0]} unavailable; used {name}")
    point_daily = np.mean([make_model(m, season).fit(y, index).predict(h_days) for m in members], axis=0)
    shape = _shape_choice(result, members, full, profiles, per_day) if result is not None and profiles else None
    if profiles is not None:
        shape = shape or ("week" if "week" in profiles else "day")
        notes.append(f"sub-daily shape: {shape} profile")
    probs = np.array([*QUANTILES, (1 - level / 100) / 2, (1 + level / 100) / 2])
    floor = day_to_day_scale(y)
    dependence = 1.0
    if result is not None:
        resid = _calibration_residuals(y, index, members, result, full, profiles, shape, per_day, h_days, season)
        errors = fit_error_model(resid, per_day, floor)
        offsets, dependence = errors.offsets(horizon, per_day, probs), errors.dependence
        scores = _with_coverage(scores, resid, per_day, floor)
    else:
        offsets = _fallback_offsets(full, horizon, floor, probs)
    point = _to_steps(point_daily, profiles[shape] if profiles and shape else None, per_day)[:horizon]
    ts = full.index[-1] + step * np.arange(1, horizon + 1)
    frame = pd.DataFrame({"ts": ts, "yhat": point, "yhat_lower": point + offsets[:, -2], "yhat_upper": point + offsets[:, -1]})
    for j, col in enumerate(QUANTILE_COLUMNS):
        frame[col] = point + offsets[:, j]
    return frame, name, scores, notes, dependence


def _fallback_offsets(full: pd.Series, horizon: int, floor: float, probs: np.ndarray) -> np.ndarray:
    """Without a backtest: normal errors growing like a random walk of the step-to-step
    changes (no evidence of anything better), never below the day-to-day floor."""
    scale = max(float(np.std(np.diff(full.to_numpy()))), floor)
    z = np.array([NormalDist().inv_cdf(float(p)) for p in probs])
    return scale * np.sqrt(np.arange(1, horizon + 1))[:, None] * z[None, :]


def _with_coverage(scores: pd.DataFrame, resid: np.ndarray, per_day: int, floor: float) -> pd.DataFrame:
    """Fill the chosen model's ``coverage_80``/``coverage_95``: leave-one-origin-out over
    the calibration backtest (each origin checked against intervals from the others)."""
    scores = scores.copy()
    chosen = scores["chosen"].to_numpy(dtype=bool)
    for lvl, cov in loo_coverage(resid, per_day, floor, (80, 95)).items():
        scores.loc[chosen, f"coverage_{lvl:g}"] = cov
    scores["origins"] = np.where(chosen, resid.shape[0], scores["origins"])
    return scores


def _to_steps(daily: np.ndarray, profile: np.ndarray | None, per_day: int) -> np.ndarray:
    if profile is None:
        return daily
    levels = np.repeat(daily, per_day)
    return levels + np.tile(profile, int(np.ceil(len(levels) / len(profile))))[: len(levels)]


def _shape_choice(
    result: BacktestResult, members: tuple[str, ...], full: pd.Series, profiles: dict[str, np.ndarray], per_day: int,
) -> str:
    """The shape profile whose level + profile forecast had the lowest error at the
    choice backtest's origins."""
    key = "combo" if len(members) > 1 else members[0]
    values = full.to_numpy(dtype=float)
    offset = len(values) - (len(values) // per_day) * per_day
    rows: dict[str, list[np.ndarray]] = {}
    for k, origin in enumerate(result.plan.origins):
        cut = offset + origin * per_day
        _, profs = _split_level(pd.Series(values[:cut], index=full.index[:cut]), full.index[1] - full.index[0])
        for kind, prof in (profs or {}).items():
            pred = _to_steps(result.predictions[key][k], prof, per_day)
            actual = values[cut: cut + len(pred)]
            rows.setdefault(kind, []).append(actual - pred[: len(actual)])
    complete = {k: r for k, r in rows.items() if len(r) == len(result.plan.origins) and k in profiles}
    return min(complete, key=lambda k: float(np.mean(np.abs(np.concatenate(complete[k])))))


def _calibration_residuals(
    y: np.ndarray, index: pd.DatetimeIndex, members: tuple[str, ...], result: BacktestResult, full: pd.Series,
    profiles: dict[str, np.ndarray] | None, shape: str | None, per_day: int, h_days: int, season: int,
) -> np.ndarray:
    """Actual minus forecast at the series' own step from every calibration origin:
    (origins, steps), NaN-padded where an origin's window reaches the end of the history.

    Sub-daily forecasts are rebuilt as level + the chosen shape profile of the history
    before each origin, so the errors include the shape's.
    """
    key = "combo" if len(members) > 1 else members[0]
    known = {o: result.predictions[key][k] for k, o in enumerate(result.plan.origins)}
    origins = plan_calibration(len(y), h_days, season, result.plan)
    preds = calibration_predictions(y, index, members, origins, h_days, season, known)
    if profiles is None:
        return ragged([y[o: o + len(p)] - p for o, p in preds.items()])
    values = full.to_numpy(dtype=float)
    offset = len(values) - (len(values) // per_day) * per_day
    rows = []
    for o, p in preds.items():
        cut = offset + o * per_day
        _, profs = _split_level(pd.Series(values[:cut], index=full.index[:cut]), full.index[1] - full.index[0])
        if not profs or shape not in profs:
            continue
        pred = _to_steps(p, profs[shape], per_day)
        actual = values[cut: cut + len(pred)]
        rows.append(actual - pred[: len(actual)])
    return ragged(rows)


def _panel_one(args: tuple) -> tuple[str, ForecastResult | Exception]:
    key, history, horizon_days, events, model, level, peak = args
    fn = forecast_daily_peak if peak else fit_forecast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return key, fn(history, horizon_days, events, model, level)
    except (ForecastInputError, ModelError, ValueError) as exc:
        return key, exc


def forecast_panel(
    histories: Iterable[tuple[str, pd.DataFrame, list[Event]]],
    horizon_days: float,
    model: str = "auto",
    level: float = 80.0,
    peak: bool = True,
    workers: int | None = None,
    progress: "Callable[[int, int], None] | None" = None,
) -> dict[str, ForecastResult | Exception]:
    """Forecast many series on all cores. ``histories`` yields (series_id, ts/value frame,
    events). A series that cannot be forecast maps to its exception; the rest go on.
    ``progress(done, total)`` is called as results arrive."""
    jobs = [(k, h, horizon_days, ev, model, level, peak) for k, h, ev in histories]
    out: dict[str, ForecastResult | Exception] = {}
    if workers == 1 or len(jobs) < 4:
        results = map(_panel_one, jobs)
        for i, (key, res) in enumerate(results):
            out[key] = res
            if progress:
                progress(i + 1, len(jobs))
        return out
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, (key, res) in enumerate(pool.map(_panel_one, jobs, chunksize=max(1, len(jobs) // 64))):
            out[key] = res
            if progress:
                progress(i + 1, len(jobs))
    return out

