"""Commitments (Savings Plans, reserved instances, committed-use discounts) sized from the
forecast. Pure (docs/AUTOSCALING.md, "Commitments").

In: the **on-demand-equivalent spend per hour** not yet covered over the horizon, as
samples per hour (:func:`spend_hours`: the last four weeks' real hours, raised where the
forecast says the level grows; :func:`uncovered_spend`), and the offers' discounts. A commitment covering ``x`` of
that spend at discount ``d`` costs ``(1 - d) x`` every hour whether used or not; the rest is
paid on demand, so the expected cost of an hour is ``(1 - d) x + E[(S - x)+]``, lowest where
``P(S > x) = 1 - d``: it pays off where it is used at least ``1 - d`` of the time.
:func:`recommend` searches the 1-year and 3-year amounts together over the 3-year term.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .policy import HOURS_PER_MONTH

__all__ = ["Commitment", "Offer", "CommitmentCatalog", "coverage", "spend_hours", "uncovered_spend", "SpendSamples", "recommend",
           "Recommendation", "Purchase", "trailing_rule", "realised_cost"]

HOURS_PER_DAY = 24


class Commitment(BaseModel):
    """One commitment that exists: a Savings Plan's hourly amount, or reserved instances."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    type: Literal["savings-plan", "reserved-instances", "committed-use"]
    hourly_usd: float | None = Field(None, gt=0, description="savings plan / committed use: the committed $ per hour")
    instance_type: str | None = Field(None, description="reserved instances: the type")
    instances: int | None = Field(None, gt=0, description="reserved instances: how many")
    discount_pct: float = Field(gt=0, lt=100, description="its discount against on-demand")
    term_years: int = Field(ge=1, le=3)
    start: dt.date
    expiry: dt.date

    @model_validator(mode="after")
    def _shape(self) -> "Commitment":
        if self.expiry <= self.start:
            raise ValueError(f"expiry {self.expiry} is not after start {self.start}")
        if self.type == "reserved-instances":
            if not (self.instance_type and self.instances):
                raise ValueError("reserved-instances need instance_type and instances")
        elif self.hourly_usd is None:
            raise ValueError(f"{self.type} needs hourly_usd")
        return self


class Offer(BaseModel):
    """What can be bought: a commitment type, its term and its discount against on-demand."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["savings-plan", "committed-use"] = "savings-plan"
    term_years: Literal[1, 3]
    discount_pct: float = Field(gt=0, lt=100)


class CommitmentCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prices_as_of: dt.date | None = None
    offers: list[Offer] = Field(default_factory=list)
    commitments: list[Commitment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "CommitmentCatalog":
        names = [c.name for c in self.commitments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"commitment name(s) listed twice: {', '.join(dupes)}")
        terms = [(o.type, o.term_years) for o in self.offers]
        if len(set(terms)) != len(terms):
            raise ValueError("an offer (type, term_years) is listed twice")
        return self

    def offer(self, years: int) -> Offer | None:
        return next((o for o in self.offers if o.term_years == years), None)


def coverage(commitments: list[Commitment], on_demand_hourly: dict[str, float], days: pd.DatetimeIndex) -> np.ndarray:
    """On-demand-equivalent spend per hour the existing commitments cover on each day: a
    savings plan's ``hourly_usd / (1 - discount)``, reserved instances' count x on-demand
    price; nothing outside ``[start, expiry)``."""
    day = pd.DatetimeIndex(days).date
    out = np.zeros(len(day))
    for c in commitments:
        if c.type == "reserved-instances":
            value = c.instances * on_demand_hourly.get(c.instance_type, 0.0)
        else:
            value = c.hourly_usd / (1 - c.discount_pct / 100)
        out += np.where((day >= c.start) & (day < c.expiry), value, 0.0)
    return out


@dataclass(frozen=True)
class SpendSamples:
    """Uncovered on-demand-equivalent spend per hour: ``values`` (days, 24, samples) with
    each sample's probability ``weights`` (samples,), summing to 1; ``days`` the calendar
    days."""

    days: pd.DatetimeIndex
    values: np.ndarray
    weights: np.ndarray

    def extended(self, n_days: int, tail_days: int = 30) -> np.ndarray:
        """``n_days`` of samples: the forecast days, then its last ``tail_days`` repeated
        (the assumption beyond the horizon). Shape (n_days, 24, samples)."""
        have = self.values.shape[0]
        if n_days <= have:
            return self.values[:n_days]
        tail = self.values[-min(tail_days, have):]
        reps = int(np.ceil((n_days - have) / len(tail)))
        return np.concatenate([self.values, np.tile(tail, (reps, 1, 1))[: n_days - have]])


def spend_hours(recent: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """A pool's on-demand-equivalent spend per hour over the horizon: the last four weeks'
    real hours (``recent``: (28, 24), oldest day first, ending the day before the plan
    date), day ``d`` taking the same weekday's day of those weeks, times the forecast's
    growth of the pool's level (``growth``: (days,), 1 = today's level), never below 1.

    Why never below: a commitment is sized on the baseline that will surely run, and the
    backtest (bench/runway.py) showed forecast declines that did not come costing more
    than they saved (docs/AUTOSCALING.md). Out: (days, 24)."""
    days = len(growth)
    return recent[np.arange(days) % len(recent)] * np.maximum(np.asarray(growth, dtype=float), 1.0)[:, None]


def uncovered_spend(pool_hours: list[np.ndarray], covered: np.ndarray, days: pd.DatetimeIndex) -> SpendSamples:
    """Sum the pools' on-demand-equivalent spend per hour (each (days, 24), from
    :func:`spend_hours`) and take off what existing commitments cover. Out: samples."""
    total = np.zeros((len(days), HOURS_PER_DAY))
    for hours in pool_hours:
        total += hours
    values = np.maximum(total - covered[:, None], 0.0)[:, :, None]
    return SpendSamples(pd.DatetimeIndex(days), values, np.ones(1))


class _Shortfall:
    """``F(c) = sum over samples of w (u - c)+``, for any ``c``, from sorted samples."""

    def __init__(self, u: np.ndarray, w: np.ndarray):
        order = np.argsort(u)
        self.u, self.w = u[order], w[order]
        self.wu_tail = np.cumsum((self.w * self.u)[::-1])[::-1]
        self.w_tail = np.cumsum(self.w[::-1])[::-1]

    def __call__(self, c: float) -> float:
        i = int(np.searchsorted(self.u, c, side="right"))
        if i >= len(self.u):
            return 0.0
        return float(self.wu_tail[i] - c * self.w_tail[i])


@dataclass(frozen=True)
class Purchase:
    """What to buy on one date: on-demand-equivalent spend per hour covered by a 1-year
    and a 3-year commitment, and the hourly commitments that buys."""

    day: dt.date
    cover_1y: float
    cover_3y: float
    hourly_1y: float
    hourly_3y: float


@dataclass(frozen=True)
class Recommendation:
    """The purchases (one per decision date), the expected monthly cost with them and
    without (over the evaluated window), the saving, and the chance that an hour leaves
    part of the new commitments unused (over the hours they are in force, until a year
    after the last decision date)."""

    purchases: tuple[Purchase, ...]
    saving_per_month: float
    unused_chance: float
    cost_per_month: float
    baseline_per_month: float

    @property
    def first(self) -> Purchase:
        return self.purchases[0]


class _Layer(NamedTuple):
    """A commitment one could buy: its decision date (index), term, discount and days."""

    stage: int
    years: int
    discount: float
    start: int
    end: int


def _layers(stages: list[int], d1: float | None, d3: float | None) -> list[_Layer]:
    out = []
    for k, start in enumerate(stages):
        for years, d in ((1, d1), (3, d3)):
            if d:
                out.append(_Layer(k, years, d, start, start + 365 * years))
    return out


def recommend(spend: SpendSamples, d1: float | None, d3: float | None, stages: list[int] | None = None,
              grid: int = 60, rounds: int = 4) -> Recommendation:
    """The 1-year and 3-year coverage to buy on each decision date (``stages``: day offsets
    into ``spend``, default ``[0]``) that minimises the expected cost of the uncovered spend
    until every 3-year term bought has ended.

    ``d1``/``d3``: the offers' discounts (fractions; None: not offered). An hour's cost is
    ``(1 - d) x`` for every commitment in force plus the expected spend above them. The
    window is cut where layers start and end; each piece's expected shortfall is read off
    its sorted samples. The dates are optimised in turn (a 2-D grid each), a few rounds."""
    stages = stages or [0]
    layers = _layers(stages, d1, d3)
    end = max((ly.end for ly in layers), default=stages[-1] + 365)
    edges = sorted({0, end, *(x for ly in layers for x in (ly.start, ly.end))})
    samples = spend.extended(end)
    w = np.tile(spend.weights, HOURS_PER_DAY)
    pieces = []
    for a, b in zip(edges[:-1], edges[1:]):
        chunk = samples[a:b].reshape(b - a, -1)
        pieces.append((a, b, _Shortfall(chunk.ravel(), np.tile(w, b - a))))
    top = float(np.quantile(samples[: min(end, 3 * 365)], 0.99)) if samples.size else 0.0
    xs = np.linspace(0.0, max(top, 0.0), grid + 1)

    def cost(c: np.ndarray) -> float:
        total = 0.0
        for a, b, f in pieces:
            active = [i for i, ly in enumerate(layers) if ly.start <= a and b <= ly.end]
            committed = sum(c[i] * (1 - layers[i].discount) for i in active)
            total += committed * (b - a) * HOURS_PER_DAY + f(sum(c[i] for i in active))
        return total

    def descend(order: list[int]) -> np.ndarray:
        cover = np.zeros(len(layers))
        for _ in range(rounds):
            before = cost(cover)
            for k in order:
                idx = [i for i, ly in enumerate(layers) if ly.stage == k]
                best = (cost(cover), cover[idx].copy())
                for x3 in (xs if any(layers[i].years == 3 for i in idx) else [0.0]):
                    for x1 in (xs if any(layers[i].years == 1 for i in idx) else [0.0]):
                        trial = cover.copy()
                        for i in idx:
                            trial[i] = x3 if layers[i].years == 3 else x1
                        c = cost(trial)
                        if c < best[0] - 1e-9:
                            best = (c, trial[idx].copy())
                cover[idx] = best[1]
            if cost(cover) >= before - 1e-9:
                break
        return cover

    # coordinate descent from both ends: latest date first finds "replace it when it expires",
    # earliest first "buy now"; the cheaper wins
    order = list(range(len(stages)))
    cover = min((descend(order), descend(order[::-1])), key=cost)
    days0 = spend.days[0].date()
    purchases = []
    for k, start in enumerate(stages):
        c1 = next((cover[i] for i, ly in enumerate(layers) if ly.stage == k and ly.years == 1), 0.0)
        c3 = next((cover[i] for i, ly in enumerate(layers) if ly.stage == k and ly.years == 3), 0.0)
        purchases.append(Purchase(days0 + dt.timedelta(days=start), c1, c3, c1 * (1 - (d1 or 0)), c3 * (1 - (d3 or 0))))
    months = end * HOURS_PER_DAY / HOURS_PER_MONTH
    baseline, best_cost = cost(np.zeros(len(layers))), cost(cover)
    # the first year each new commitment is in force: share of its hours that leave part unused
    horizon = samples[: min(len(samples), stages[-1] + 365)]
    active = np.array([sum(cover[i] for i, ly in enumerate(layers) if ly.start <= d < ly.end) for d in range(len(horizon))])
    on = active > 0
    weights = spend.weights
    below = (horizon[on] < active[on][:, None, None]) * weights[None, None, :]
    unused = float(below.sum() / (on.sum() * HOURS_PER_DAY)) if on.any() else 0.0
    return Recommendation(tuple(purchases), (baseline - best_cost) / months, unused, best_cost / months, baseline / months)


def trailing_rule(hourly_spend: np.ndarray, discount: float) -> float:
    """Cost Explorer's rule: the coverage that would have minimised the cost of the
    trailing window's hours had they repeated (its ``discount`` quantile)."""
    values = np.asarray(hourly_spend, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.quantile(values, discount)) if len(values) else 0.0


def realised_cost(hourly_spend: np.ndarray, cover: float, discount: float) -> float:
    """What the hours actually cost with ``cover`` committed at ``discount``."""
    s = np.asarray(hourly_spend, dtype=float)
    s = s[np.isfinite(s)]
    return float(np.sum((1 - discount) * cover + np.maximum(s - cover, 0.0)))
