"""Rolling-origin backtests, scores, model choice and conformal intervals.

A backtest cuts the history at a few origins (one week apart, the last one ``h``
steps before the end), fits each model on what came before and compares the next
``h`` steps with what happened. From that:

* scores per model: MAE, MASE (scaled by the in-sample weekly seasonal naive error),
  relative MASE (MAE over the seasonal naive's MAE on the same windows), bias, and the
  coverage of 80% and 95% intervals measured leave-one-origin-out (honest);
* the choice: the model with the lowest MAE, or the mean of the best two when that
  is lower still ("combo");
* interval offsets: empirical quantiles of the chosen model's residuals per horizon
  bucket (split-conformal), widened with sqrt(h) past the backtested horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .models import BASELINES, ModelError, make_model

__all__ = ["BacktestPlan", "BacktestResult", "plan_backtest", "run_backtest", "interval_offsets"]

N_ORIGINS = 3
N_BUCKETS = 8
#: Prefer the combination unless the best single model is clearly (this factor) better.
COMBO_TOLERANCE = 1.05


@dataclass(frozen=True)
class BacktestPlan:
    """Where to cut: ``origins`` are positions (training length) and ``horizon`` steps."""

    origins: tuple[int, ...]
    horizon: int


@dataclass
class BacktestResult:
    """Predictions and actuals per model, and the scores and choice derived from them."""

    plan: BacktestPlan
    actuals: np.ndarray  # (origins, horizon)
    predictions: dict[str, np.ndarray]  # model -> (origins, horizon)
    scale: float
    chosen: str = "snaive"
    members: tuple[str, ...] = ()
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    failed: dict[str, str] = field(default_factory=dict)

    def residuals(self, model: str) -> np.ndarray:
        return self.actuals - self.predictions[model]


def plan_backtest(n: int, horizon: int, season: int, n_origins: int = N_ORIGINS) -> BacktestPlan | None:
    """Origins one season apart, training on at least half the history (and 2 seasons).

    Returns None when the history is too short to hold out anything useful.
    """
    min_train = max(2 * season + 2, n // 2)
    h = min(horizon, n - min_train - (n_origins - 1) * season)
    if h < max(2, season // 7):
        return None
    last = n - h
    return BacktestPlan(origins=tuple(last - k * season for k in range(n_origins - 1, -1, -1)), horizon=h)


def run_backtest(
    y: np.ndarray,
    index: pd.DatetimeIndex,
    models: tuple[str, ...],
    plan: BacktestPlan,
    season: int,
) -> BacktestResult:
    """Fit every model at every origin; a model that fails at any origin is dropped."""
    actuals = np.stack([y[o: o + plan.horizon] for o in plan.origins])
    predictions: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for name in dict.fromkeys((*models, *BASELINES)):
        try:
            predictions[name] = np.stack(
                [make_model(name, season).fit(y[:o], index[:o]).predict(plan.horizon) for o in plan.origins]
            )
        except (ModelError, ValueError, np.linalg.LinAlgError, RuntimeError) as exc:
            failed[name] = str(exc)
    first = plan.origins[0]
    scale = _naive_scale(y[:first], season)
    result = BacktestResult(plan=plan, actuals=actuals, predictions=predictions, scale=scale, failed=failed)
    _choose(result, models)
    return result


def _naive_scale(train: np.ndarray, season: int) -> float:
    lag = season if len(train) > season else 1
    scale = float(np.mean(np.abs(train[lag:] - train[:-lag])))
    return scale if scale > 0 else max(float(np.mean(np.abs(train))), 1e-9) * 1e-3


def _choose(result: BacktestResult, candidates: tuple[str, ...]) -> None:
    mae = {m: float(np.mean(np.abs(result.actuals - p))) for m, p in result.predictions.items()}
    ranked = sorted((m for m in mae if m in candidates), key=mae.get) or sorted(mae, key=mae.get)
    if not ranked:
        raise ModelError("no model could be fitted: " + "; ".join(f"{k}: {v}" for k, v in result.failed.items()))
    best = ranked[0]
    result.chosen, result.members = best, (best,)
    singles = [m for m in ranked if m in candidates and m not in BASELINES]
    if len(singles) >= 3:
        # The mean of the three best is the default: with a handful of origins the single
        # best is partly luck, and combinations hold up better on unseen series.
        members = tuple(singles[:3])
        combo = np.mean([result.predictions[m] for m in members], axis=0)
        combo_mae = float(np.mean(np.abs(result.actuals - combo)))
        if combo_mae <= mae[best] * COMBO_TOLERANCE:
            result.predictions["combo"] = combo
            result.chosen, result.members = "combo", members
            mae["combo"] = combo_mae
    result.scores = _scores(result, mae)


def _scores(result: BacktestResult, mae: dict[str, float]) -> pd.DataFrame:
    naive_mae = mae.get("snaive", np.nan)
    rows = []
    for model, pred in result.predictions.items():
        resid = result.actuals - pred
        rows.append({
            "model": model,
            "mae": mae[model],
            "mase": mae[model] / result.scale,
            "rel_mase": mae[model] / naive_mae if naive_mae and naive_mae > 0 else np.nan,
            "bias_pct": 100 * float(np.mean(-resid)) / max(float(np.mean(np.abs(result.actuals))), 1e-9),
            "coverage_80": _loo_coverage(resid, 80),
            "coverage_95": _loo_coverage(resid, 95),
            "chosen": model == result.chosen,
            "origins": len(result.plan.origins),
            "horizon_steps": result.plan.horizon,
        })
    return pd.DataFrame(rows)


def _loo_coverage(resid: np.ndarray, level: float) -> float:
    """Share of held-out actuals inside intervals built from the *other* origins."""
    if resid.shape[0] < 2:
        return float("nan")
    hits = []
    for k in range(resid.shape[0]):
        others = np.delete(resid, k, axis=0)
        lo, hi = interval_offsets(others, resid.shape[1], level)
        hits.append((resid[k] >= lo) & (resid[k] <= hi))
    return float(np.mean(hits))


def interval_offsets(resid: np.ndarray, horizon: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper offsets to add to a point forecast, one per horizon step.

    ``resid`` is (origins, backtest horizon) of actual minus forecast. Quantiles are
    taken per bucket of horizon steps, made non-decreasing in width, and extended
    past the backtested horizon in proportion to sqrt(h).
    """
    h_bt = resid.shape[1]
    alpha = (100 - level) / 200
    edges = np.unique(np.linspace(0, h_bt, min(N_BUCKETS, h_bt) + 1).astype(int))
    lo_b, hi_b = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        chunk = resid[:, a:b].ravel()
        lo_b.append(min(np.quantile(chunk, alpha), 0.0))
        hi_b.append(max(np.quantile(chunk, 1 - alpha), 0.0))
    lo = np.minimum.accumulate(np.repeat(lo_b, np.diff(edges)))
    hi = np.maximum.accumulate(np.repeat(hi_b, np.diff(edges)))
    if horizon <= h_bt:
        return lo[:horizon], hi[:horizon]
    grow = np.sqrt(np.arange(h_bt + 1, horizon + 1) / h_bt)
    return np.concatenate([lo, lo[-1] * grow]), np.concatenate([hi, hi[-1] * grow])
