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
3. every series of the call is one ``unique_id`` of one long frame, and statsforecast
   runs the one rolling-origin backtest of :mod:`forecasting.backtest` for every
   candidate over all of them (:mod:`forecasting.panel`); the best model, or the median
   or mean of the best three, is chosen per series;
4. the chosen forecast's errors at the same origins, per horizon band, give the
   quantiles (:func:`forecasting.backtest.fit_error_model`). ``yhat_lower``/``yhat_upper``
   are the ``level`` interval of the same quantile function;
5. overlays (future uplifts, steps, recurring events) multiply the result, quantiles
   included.

``forecast_daily_peak`` does the same on the daily maximum: capacity is about peaks.
"""


from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from . import panel
from .backtest import (
    BacktestResult, choose, day_to_day_scale, ensemble, fit_error_model, fixed_windows, loo_coverage, plan_backtest, ragged,
)
from .events import CONTRIBUTION_COLUMNS, Event, Occurrence, apply_overlays, mask_events, measure_uplift, occurrences
from .frames import QUANTILE_COLUMNS, QUANTILES
from .models import BASELINES, CANDIDATES, MODELS, ModelError, make_model
from .series import SeriesQuality, daily_peak, infer_step, regularize, to_series

__all__ = ["ForecastResult", "ForecastInputError", "fit_forecast", "forecast_series", "forecast_daily_peak", "forecast_panel",
           "panel_chunks", "FOLLOW"]

for _name in ("prophet", "cmdstanpy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

DAY = pd.Timedelta(days=1)
PROFILE_WEEKS = 4
SEASON = 7
#: The backtest's layout: ``ragged`` (:func:`forecasting.backtest.plan_backtest`, every
#: model refitted at every origin, each window as long as the history allows) or
#: ``fixed`` (statsforecast ``cross_validation``: fixed windows, fitted once and moved
#: forward). Ragged calibrates better on short histories (docs/FORECASTING.md).
BACKTEST = "ragged"


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
    #: in lockstep), measured on the backtest; pass it to
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
    return _one(history, horizon_days, events, model, level, non_negative, peak=False)


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
    return _one(history, horizon_days, events, model, level, non_negative, peak=True)


def _one(history, horizon_days, events, model, level, non_negative, peak) -> ForecastResult:
    _check_options(model, level)
    prepared = _prepare(history, horizon_days, events or [], non_negative, peak)
    return _forecast_many({"series": prepared}, model, level, n_jobs=1)["series"]


def _check_options(model: str, level: float) -> None:
    if model != "auto" and model not in MODELS:
        raise ForecastInputError(f"unknown model {model!r}; expected auto or one of {', '.join(MODELS)}")
    if not 0 < level < 100:
        raise ForecastInputError(f"level must be between 0 and 100 (percent), got {level}")


@dataclass
class _Prepared:
    """One series ready for the panel: the cleaned, event-masked history at its own step
    (``full``), its daily level and shape profiles, and what the overlays need."""

    full: pd.Series
    quality: SeriesQuality | None
    notes: list[str]
    measured: dict[str, float]
    ahead: list[Occurrence]
    level: np.ndarray
    profiles: dict[str, np.ndarray] | None
    step: pd.Timedelta
    per_day: int
    horizon: int  # steps at the series' own step
    h_days: int
    non_negative: bool

    @property
    def constant(self) -> bool:
        return bool(np.allclose(self.level, self.level[0]))


def _clean(history: pd.DataFrame, non_negative: bool) -> tuple[pd.Series, SeriesQuality, list[str]]:
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


def _prepare(history: pd.DataFrame, horizon_days: float, events: list[Event], non_negative: bool, peak: bool) -> _Prepared:
    """Clean, take daily peaks if asked, mask past events, measure their uplifts and
    split the level from the shape."""
    y, quality, notes = _clean(history, non_negative)
    if peak:
        y = daily_peak(y).asfreq("D")
        if y.isna().any():
            y = y.interpolate(limit_direction="both")
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
    level_series, profiles = _split_level(fitted, step)
    per_day = 1 if profiles is None else int(round(DAY / step))
    # Future windows only; a step that began inside the history is in the data the model
    # was fitted on, so applying it again would count it twice.
    last = index[-1].date()
    ahead = [o for o in occ if (o.end is not None and o.end > last) or (o.end is None and o.start > last)]
    return _Prepared(fitted, quality, notes, measured, ahead, level_series.to_numpy(dtype=float), profiles, step, per_day,
                     horizon, int(np.ceil(horizon / per_day)), non_negative)


def _split_level(y: pd.Series, step: pd.Timedelta) -> tuple[pd.Series, dict[str, np.ndarray] | None]:
    """For sub-daily data: 24h block means ending at the last point, and candidate shape
    profiles (value minus its block mean), each one week long:

    * ``week``: median step-of-week shape of the last (up to four) weeks: keeps weekday
      differences in the daily shape;
    * ``day``: median step-of-day shape of the last (up to 28) days, repeated: four to
      seven times less noisy when every day has the same shape;
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


#: The candidate for a series that follows another (requests following their usage).
FOLLOW = "follow_usage"


@dataclass
class _Fitted:
    """What a series' backtest and forecast produced before the frame is built."""

    result: BacktestResult | None
    members: tuple[str, ...]
    point: np.ndarray  # daily point forecast
    notes: list[str]


def _forecast_many(prepared: dict[str, _Prepared], model: str, level: float, n_jobs: int,
                   follows: dict[str, str] | None = None) -> dict[str, ForecastResult]:
    """Forecast prepared series: one backtest and one forecast call per group of series
    with the same length and horizon (a run's series share both).

    ``follows`` maps a series to the one whose trend it may follow (requests to their
    usage): those go second, with :data:`FOLLOW` as one more candidate."""
    follows = {k: v for k, v in (follows or {}).items() if k in prepared and v in prepared and v not in (follows or {})}
    fitted: dict[str, _Fitted] = {}
    out: dict[str, ForecastResult] = {}
    for keys in ([k for k in prepared if k not in follows], list(follows)):
        choice_of = {k: ("snaive",) if prepared[k].constant else ((*CANDIDATES, *BASELINES) if model == "auto" else (model,))
                     for k in keys}
        groups: dict[tuple, list[str]] = {}
        for k in keys:
            groups.setdefault((len(prepared[k].level), prepared[k].h_days, choice_of[k]), []).append(k)
        for (n, h_days, choice), group in groups.items():
            fitted.update(_fit_group({k: prepared[k] for k in group}, choice, n, h_days, n_jobs,
                                     {k: (prepared[follows[k]], fitted[follows[k]]) for k in group if k in follows
                                      and model == "auto" and choice != ("snaive",)}))
            for k in group:
                out[k] = _finish(prepared[k], fitted[k], choice, level)
    return out


def _fit_group(prepared: dict[str, _Prepared], choice: tuple[str, ...], n: int, h_days: int, n_jobs: int,
               leaders: dict[str, tuple[_Prepared, _Fitted]]) -> dict[str, _Fitted]:
    """Backtest, choose and forecast one group of series of length ``n`` (days)."""
    ragged = BACKTEST == "ragged"
    plan = (plan_backtest if ragged else fixed_windows)(n, h_days, SEASON)
    levels = {k: p.level for k, p in prepared.items()}
    results: dict[str, BacktestResult | None] = {k: None for k in prepared}
    if plan is not None:
        run = panel.backtest if ragged else panel.cross_validate
        cv = run(levels, tuple(dict.fromkeys((*choice, *BASELINES))), SEASON, plan, n_jobs)
        for k in prepared:
            preds, candidates = cv[k], choice
            lead = leaders.get(k)
            if lead is not None and lead[1].result is not None and lead[1].result.plan == plan:
                lead_pred = lead[1].result.predictions[lead[1].result.chosen]
                preds = {**preds, FOLLOW: np.stack([_follow(levels[k][:o], lead[0].level[:o], lead_pred[i])
                                                    for i, o in enumerate(plan.origins)])}
                candidates = (*choice, FOLLOW)
            results[k] = choose(levels[k], plan, preds, candidates, SEASON)
    members = {k: (r.members if r is not None else _fallback_members(n)) for k, r in results.items()}
    final = panel.forecast(levels, {k: tuple(m for m in ms if m != FOLLOW) for k, ms in members.items()}, SEASON, h_days,
                           n_jobs)
    out = {}
    for k, p in prepared.items():
        if FOLLOW in members[k]:
            final[k][FOLLOW] = _follow(p.level, leaders[k][0].level, leaders[k][1].point)
        r = results[k]
        point = ensemble([final[k][m] for m in members[k]], r.how if r is not None else "single")
        notes = []
        if not np.isfinite(point).all():
            # The refit on the full history failed where the backtest's fits did not: the
            # most robust of the baselines says something rather than nothing.
            notes.append(f"model {r.chosen if r else members[k][0]} failed on the full history; used seasonal naive")
            point = make_model("snaive", SEASON).forecast(p.level, h_days)["mean"]
        out[k] = _Fitted(r, members[k], point, notes)
    return out


def _follow(own: np.ndarray, leader: np.ndarray, leader_pred: np.ndarray) -> np.ndarray:
    """Follow the leader's trend: the series' last value times the growth of the
    leader's weekly mean (forecast, smoothed over a week) over its last week.

    For requests that step up when usage climbs: the forecast climbs with the usage
    forecast instead of holding the last step."""
    last_week = leader[-SEASON:]
    smooth = np.convolve(np.concatenate([last_week[1:], leader_pred]), np.ones(SEASON) / SEASON, mode="valid")
    base = float(np.mean(last_week))
    if not base > 0:
        return np.full(len(leader_pred), float(own[-1]))
    return float(own[-1]) * smooth / base


def _fallback_members(n: int) -> tuple[str, ...]:
    return ("drift",) if n < 2 * SEASON else ("seasonal_trend",)


def _finish(p: _Prepared, fit: _Fitted, choice: tuple[str, ...], level: float) -> ForecastResult:
    """Point forecast at the series' own step, calibrated quantiles, overlays.

    Out frame: ``ts, yhat, yhat_lower, yhat_upper, model``, :data:`QUANTILE_COLUMNS`,
    ``yhat_baseline``."""
    result, members, point_daily = fit.result, fit.members, fit.point
    notes = list(p.notes)
    if p.constant:
        notes.append("series is constant: forecast is flat")
    if result is None:
        notes.append(f"history too short ({len(p.level)} days) for a backtest: fell back to {members[0]}")
        name, scores = members[0], pd.DataFrame()
    else:
        for m in result.failed:
            if m in choice:
                notes.append(f"model {m} failed in backtest ({result.failed[m]})")
        name, scores = result.chosen, result.scores
        if len(choice) == 1 and name not in choice:
            notes.append(f"model {choice[0]} unavailable; used {name}")
    notes += fit.notes
    shape = None
    if p.profiles is not None:
        shape = _shape_choice(result, p) if result is not None else None
        shape = shape or ("week" if "week" in p.profiles else "day")
        notes.append(f"sub-daily shape: {shape} profile")
    probs = np.array([*QUANTILES, (1 - level / 100) / 2, (1 + level / 100) / 2])
    floor = day_to_day_scale(p.level)
    dependence = 1.0
    if result is not None:
        resid = _residuals(result, p, shape)
        errors = fit_error_model(resid, p.per_day, floor)
        offsets, dependence = errors.offsets(p.horizon, p.per_day, probs), errors.dependence
        scores = _with_coverage(scores, resid, p.per_day, floor)
    else:
        offsets = _fallback_offsets(p.full, p.horizon, floor, probs)
    point = _to_steps(point_daily, p.profiles[shape] if p.profiles and shape else None, p.per_day)[: p.horizon]
    values = point[:, None] + offsets
    if p.non_negative:
        # before the overlays, which multiply by positive factors: the same as after
        point, values = np.maximum(point, 0.0), np.maximum(values, 0.0)
    ts = p.full.index[-1] + p.step * np.arange(1, p.horizon + 1)
    frame = pd.DataFrame({"ts": ts, "yhat": point, "yhat_lower": values[:, -2], "yhat_upper": values[:, -1],
                          **{col: values[:, j] for j, col in enumerate(QUANTILE_COLUMNS)}})
    frame, contributions = apply_overlays(frame, p.ahead, p.measured)
    frame.insert(4, "model", name)
    return ForecastResult(frame, name, scores, p.quality, notes, p.measured, contributions, dependence)


def _fallback_offsets(full: pd.Series, horizon: int, floor: float, probs: np.ndarray) -> np.ndarray:
    """Without a backtest: normal errors growing like a random walk of the step-to-step
    changes (no evidence of anything better), never below the day-to-day floor."""
    scale = max(float(np.std(np.diff(full.to_numpy()))), floor)
    z = np.array([NormalDist().inv_cdf(float(q)) for q in probs])
    return scale * np.sqrt(np.arange(1, horizon + 1))[:, None] * z[None, :]


def _with_coverage(scores: pd.DataFrame, resid: np.ndarray, per_day: int, floor: float) -> pd.DataFrame:
    """Fill the chosen model's ``coverage_80``/``coverage_95``: leave-one-origin-out over
    the backtest (each origin checked against intervals from the others)."""
    scores = scores.copy()
    chosen = scores["chosen"].to_numpy(dtype=bool)
    for lvl, cov in loo_coverage(resid, per_day, floor, (80, 95)).items():
        scores.loc[chosen, f"coverage_{lvl:g}"] = cov
    return scores


def _to_steps(daily: np.ndarray, profile: np.ndarray | None, per_day: int) -> np.ndarray:
    if profile is None:
        return daily
    levels = np.repeat(daily, per_day)
    return levels + np.tile(profile, int(np.ceil(len(levels) / len(profile))))[: len(levels)]


def _origin_profiles(p: _Prepared, origin: int) -> dict[str, np.ndarray]:
    """The shape profiles of the history before a backtest origin (a day position)."""
    values = p.full.to_numpy(dtype=float)
    cut = len(values) - (len(values) // p.per_day) * p.per_day + origin * p.per_day
    _, profs = _split_level(pd.Series(values[:cut], index=p.full.index[:cut]), p.step)
    return profs or {}


def _step_errors(result: BacktestResult, p: _Prepared, kinds: Iterable[str]) -> dict[str, list[np.ndarray]]:
    """Actual minus (chosen level forecast + each shape profile of the history before
    the origin), at the series' own step, per origin."""
    values = p.full.to_numpy(dtype=float)
    offset = len(values) - (len(values) // p.per_day) * p.per_day
    pred = result.predictions[result.chosen]
    rows: dict[str, list[np.ndarray]] = {}
    for k, origin in enumerate(result.plan.origins):
        cut = offset + origin * p.per_day
        profs = _origin_profiles(p, origin)
        for kind in kinds:
            if kind in profs:
                step_pred = _to_steps(pred[k], profs[kind], p.per_day)
                actual = values[cut: cut + len(step_pred)]
                rows.setdefault(kind, []).append(actual - step_pred[: len(actual)])
    return rows


def _shape_choice(result: BacktestResult, p: _Prepared) -> str | None:
    """The shape profile whose level + profile forecast had the lowest error at the
    backtest's origins."""
    rows = _step_errors(result, p, p.profiles or {})
    complete = {k: r for k, r in rows.items() if len(r) == len(result.plan.origins)}
    if not complete:
        return None
    return min(complete, key=lambda k: float(np.mean(np.abs(np.concatenate(complete[k])))))


def _residuals(result: BacktestResult, p: _Prepared, shape: str | None) -> np.ndarray:
    """The chosen forecast's errors at every origin of the backtest, at the series' own
    step: (origins, steps). Sub-daily forecasts are rebuilt as level + the chosen shape
    profile of the history before each origin, so the errors include the shape's."""
    if p.profiles is None:
        return result.residuals(result.chosen)
    return ragged(_step_errors(result, p, [shape]).get(shape, []))


# --- many series ------------------------------------------------------------------------


def _prepare_job(job: tuple) -> tuple[str, _Prepared | Exception]:
    key, history, horizon_days, events, peak = job
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return key, _prepare(history, horizon_days, events or [], True, peak)
    except (ForecastInputError, ModelError, ValueError) as exc:
        return key, exc


def _panel_chunk(args: tuple) -> dict[str, ForecastResult | Exception]:
    """Prepare and forecast one chunk of series in this process."""
    jobs, horizon_days, model, level, peak, n_jobs = args
    out: dict[str, ForecastResult | Exception] = {}
    prepared: dict[str, _Prepared] = {}
    for key, res in map(_prepare_job, [(j[0], j[1], horizon_days, j[2], peak) for j in jobs]):
        if isinstance(res, Exception):
            out[key] = res
        else:
            prepared[key] = res
    follows = {j[0]: j[3] for j in jobs if len(j) > 3 and j[3]}
    try:
        _check_options(model, level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.update(_forecast_many(prepared, model, level, n_jobs, follows))
    except (ForecastInputError, ModelError) as exc:
        out.update({k: exc for k in prepared})
    return {j[0]: out[j[0]] for j in jobs}


def panel_chunks(jobs: list[tuple], n: int) -> list[list[tuple]]:
    """Split jobs into at most ``n`` chunks of near-equal size, in order, never parting a
    series from the one it follows (``(series_id, history, events[, follows])``)."""
    ids = {j[0] for j in jobs}
    families: dict[str, list[tuple]] = {}
    for j in jobs:
        leader = j[3] if len(j) > 3 and j[3] in ids else j[0]
        families.setdefault(leader, []).append(j)
    groups = list(families.values())
    n = max(1, min(n, len(groups)))
    size, extra = divmod(len(groups), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append([j for g in groups[start:end] for j in g])
        start = end
    return [c for c in out if c]


def forecast_panel(
    histories: Iterable[tuple],
    horizon_days: float,
    model: str = "auto",
    level: float = 80.0,
    peak: bool = True,
    workers: int | None = None,
    progress: "Callable[[int, int], None] | None" = None,
) -> dict[str, ForecastResult | Exception]:
    """Forecast many series on all cores. ``histories`` yields (series_id, ts/value frame,
    events) or (series_id, frame, events, follows): ``follows`` names the series whose
    trend this one may follow (requests their usage; chosen only where the backtest says
    so). A series that cannot be forecast maps to its exception; the rest go on.
    ``progress(done, total)`` is called as chunks of results arrive.

    The series are split into one chunk per worker process (``workers``, default all
    cores); each chunk is one statsforecast panel (:func:`_forecast_many`), so cleaning,
    the backtest, the forecast and the calibration all run in parallel."""
    jobs = list(histories)
    workers = workers or os.cpu_count() or 1
    out: dict[str, ForecastResult | Exception] = {}
    if workers == 1 or len(jobs) < 4:
        parts = panel_chunks(jobs, max(1, len(jobs) // 64))  # chunks only for progress reports
        for part in parts:
            out.update(_panel_chunk((part, horizon_days, model, level, peak, 1)))
            if progress:
                progress(len(out), len(jobs))
        return out
    parts = panel_chunks(jobs, workers * 4)
    panel.warm()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for res in pool.map(_panel_chunk, [(part, horizon_days, model, level, peak, 1) for part in parts]):
            out.update(res)
            if progress:
                progress(len(out), len(jobs))
    return {j[0]: out[j[0]] for j in jobs}
