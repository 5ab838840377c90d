"""The risk of crossing a limit, from a forecast's quantile grid. Pure and hand-checkable.

A forecast frame carries, for every day, the predictive quantiles of demand
(:data:`forecasting.frames.QUANTILE_COLUMNS`). That gives each day's *marginal*
probability of reaching a limit. Whether demand has reached it *on or before* a day also
depends on how the days' errors move together (docs/FORECASTING.md, "Risk"):

* errors of a level forecast persist: a forecast that is too low today is too low
  tomorrow. If they moved in lockstep (comonotone, ``dependence=1``, the default), the
  probability of a crossing by day t is the largest marginal probability up to t;
* a daily peak also has day-to-day noise (spikes), independent from one day to the next
  (``dependence=0``): then every day is a new draw, and the probability of at least
  one crossing keeps growing even when each day's own probability does not.

In between, the days' errors are joined by a one-factor Gaussian copula: each day's
error is ``sqrt(dependence) * W + sqrt(1 - dependence) * e_t`` in normal scores, with one
shared ``W`` and independent ``e_t``; the probability is integrated over ``W`` on a
fixed grid of its quantiles (deterministic, no sampling).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from .frames import QUANTILE_COLUMNS, QUANTILES

__all__ = ["exceedance", "crossing_probability", "risk_trigger"]

#: Grid of the shared factor's quantiles (midpoints): the integrand is nearly a step in W
#: when the dependence is high, so an even grid in probability beats Gauss-Hermite; the
#: error is below 1 / _NODES.
_NODES = 2000
_FACTOR_NODES = ndtri((np.arange(_NODES) + 0.5) / _NODES)


def _grid(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(rows, quantiles) values and their probabilities; each row sorted (overlays and
    clipping keep the order, this guards against rounding)."""
    missing = [c for c in QUANTILE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"forecast frame lacks quantile column(s) {', '.join(missing)}")
    values = np.sort(frame[list(QUANTILE_COLUMNS)].to_numpy(dtype=float), axis=1)
    return values, np.asarray(QUANTILES, dtype=float)


def _limits(frame: pd.DataFrame, limit: float | np.ndarray) -> np.ndarray:
    out = np.broadcast_to(np.asarray(limit, dtype=float), (len(frame),)).copy()
    if not np.isfinite(out).all():
        raise ValueError("limit must be finite")
    return out


def _cdf(values: np.ndarray, probs: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """P(X_t < limit) per row, linear in probability between grid points; NaN beyond the
    grid (the callers decide what beyond means)."""
    below = (values <= limit[:, None]).sum(axis=1)  # grid points at or under the limit
    out = np.full(len(limit), np.nan)
    inside = (below > 0) & (below < values.shape[1])
    rows = np.flatnonzero(inside)
    k = below[rows]
    lo, hi = values[rows, k - 1], values[rows, k]
    frac = (limit[rows] - lo) / (hi - lo)  # hi > limit >= lo, so hi > lo
    out[rows] = probs[k - 1] + frac * (probs[k] - probs[k - 1])
    return out


def exceedance(frame: pd.DataFrame, limit: float | np.ndarray) -> np.ndarray:
    """Each row's marginal probability that demand reaches ``limit``.

    Between grid points the distribution function is linear in probability; beyond the
    grid the answer is the grid's edge (at most 1 - 0.01 below ``q010``, at least 0.01
    above ``q990``): the grid says nothing finer.
    """
    values, probs = _grid(frame)
    lim = _limits(frame, limit)
    cdf = _cdf(values, probs, lim)
    below = (values <= lim[:, None]).sum(axis=1)
    cdf = np.where(below == 0, probs[0], np.where(below == values.shape[1], probs[-1], cdf))
    return 1.0 - cdf


def _normal_scores(frame: pd.DataFrame, limit: np.ndarray) -> np.ndarray:
    """Normal score of each row's P(X_t < limit); beyond the grid the tail is extended
    as a normal one through the two outermost quantiles (a day far below the limit
    must not keep a 1% chance of crossing, which would add up over a long horizon)."""
    values, probs = _grid(frame)
    z = ndtri(probs)
    cdf = _cdf(values, probs, limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = ndtri(np.clip(cdf, 1e-15, 1 - 1e-15))
        top = values[:, -1] - values[:, -2]
        up = z[-1] + (limit - values[:, -1]) * (z[-1] - z[-2]) / top
        up = np.where(top > 0, up, np.inf)
        bottom = values[:, 1] - values[:, 0]
        down = z[0] - (values[:, 0] - limit) * (z[1] - z[0]) / bottom
        down = np.where(bottom > 0, down, -np.inf)
    score = np.where(limit >= values[:, -1], np.maximum(up, z[-1]), score)
    return np.where(limit < values[:, 0], np.minimum(down, z[0]), score)


def crossing_probability(frame: pd.DataFrame, limit: float | np.ndarray, dependence: float = 1.0) -> np.ndarray:
    """P(demand has reached ``limit`` on or before each row's day).

    In: a forecast frame with the quantile columns, one row per day sorted by ``ts``;
    ``limit`` a scalar or one value per row (e.g. 70% of N+2 usable capacity, which
    changes when capacity is added); ``dependence`` in [0, 1]: how much of the day-to-day
    error is shared (1: comonotone, the running maximum of the daily probabilities;
    0: independent days). :class:`forecasting.ForecastResult` measures it per series.
    Out: a non-decreasing array of probabilities, one per row.
    """
    if not 0.0 <= dependence <= 1.0:
        raise ValueError(f"dependence must be in [0, 1], got {dependence}")
    lim = _limits(frame, limit)
    if len(frame) == 0:
        return np.zeros(0)
    if dependence >= 1.0:
        return np.maximum.accumulate(exceedance(frame, lim))
    score = _normal_scores(frame, lim)  # cross on day t when the day's normal score > score_t
    rho = float(dependence)
    # P(no crossing by t | W = w) = prod_{s <= t} Phi((score_s - sqrt(rho) w) / sqrt(1 - rho)),
    # computed in one (nodes, days) buffer: the same operations in the same order as with
    # a new array per step, two to three times faster (the plan calls this thousands of
    # times at 100 clusters; docs/PERFORMANCE.md)
    work = score[None, :] - np.sqrt(rho) * _FACTOR_NODES[:, None]
    work /= np.sqrt(1 - rho)
    ndtr(work, out=work)
    np.clip(work, 1e-300, 1.0, out=work)
    with np.errstate(divide="ignore"):
        np.log(work, out=work)
    np.cumsum(work, axis=1, out=work)
    np.exp(work, out=work)
    survive = work.mean(axis=0)
    return np.maximum.accumulate(np.clip(1.0 - survive, 0.0, 1.0))


def risk_trigger(frame: pd.DataFrame, limit: float | np.ndarray, max_risk: float, dependence: float = 1.0) -> int | None:
    """Position of the first row whose :func:`crossing_probability` exceeds ``max_risk``,
    or None if none does.

    Capacity that arrives on that row's day keeps the risk of a crossing before it
    arrives at most ``max_risk``: the row before it is the last day the risk is still
    acceptable.
    """
    if not 0.0 < max_risk < 1.0:
        raise ValueError(f"max_risk must be between 0 and 1, got {max_risk}")
    p = crossing_probability(frame, limit, dependence)
    hit = np.flatnonzero(p > max_risk)
    return int(hit[0]) if len(hit) else None
