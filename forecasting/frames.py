"""The one data contract between stages: long frames, their column names and checks.

Every stage hands the next a long ("tidy") frame:

====================  ==========================================================
column                meaning
====================  ==========================================================
``series_id``         stable key, ``cluster=a/pool=b/resource=cpu/kind=usage``
``ts``                UTC timestamp (tz-aware), regular step
``value``             float in base units (cores, bytes, pods)
====================  ==========================================================

Forecasts use Prophet's names: ``yhat``, ``yhat_lower``, ``yhat_upper``, plus one
column per predictive quantile (:data:`QUANTILE_COLUMNS`: ``q010`` ... ``q990``).
Dimension values inside a ``series_id`` are percent-encoded, so a label value that
contains ``/`` or ``=`` (or anything else) cannot break the key.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

SERIES_ID = "series_id"
TS = "ts"
VALUE = "value"
YHAT = "yhat"
YHAT_LOWER = "yhat_lower"
YHAT_UPPER = "yhat_upper"

#: Probabilities of the predictive quantiles on every forecast frame: dense in the
#: tails, where capacity decisions are made (docs/FORECASTING.md, "Quantiles").
QUANTILES = (0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 0.975, 0.99)


def quantile_column(q: float) -> str:
    """Column name of the ``q`` quantile: ``q`` times 1000 on three digits.

    >>> quantile_column(0.025), quantile_column(0.5), quantile_column(0.99)
    ('q025', 'q500', 'q990')
    """
    if not 0 < q < 1:
        raise ValueError(f"quantile must be strictly between 0 and 1, got {q}")
    milli = round(q * 1000)
    if abs(milli - q * 1000) > 1e-6:
        raise ValueError(f"quantile {q} is not a whole number of thousandths")
    return f"q{milli:03d}"


#: ``q010, q025, ..., q990``: one column per :data:`QUANTILES` entry, in that order.
QUANTILE_COLUMNS = tuple(quantile_column(q) for q in QUANTILES)

#: Dimensions that make up a pool-level series key, in key order.
POOL_DIMS = ("cluster", "pool", "resource", "kind")
RESOURCES = ("cpu", "memory", "pods", "storage")
#: ``usage`` is real load, ``requests`` is what the scheduler reserves,
#: ``capacity`` is a storage system's size (compute capacity comes from the inventory).
KINDS = ("usage", "requests", "capacity")
UNITS = {"cpu": "cores", "memory": "bytes", "pods": "pods", "storage": "bytes", "nodes": "nodes"}

__all__ = [
    "SERIES_ID", "TS", "VALUE", "YHAT", "YHAT_LOWER", "YHAT_UPPER", "QUANTILES", "QUANTILE_COLUMNS",
    "quantile_column", "POOL_DIMS",
    "RESOURCES", "KINDS", "UNITS", "FrameError", "make_series_id", "parse_series_id",
    "validate_long", "validate_forecast", "CONTRACTS", "check_frame",
]


class FrameError(ValueError):
    """A frame does not honour the data contract; the message says which column and why."""


def make_series_id(**dims: str) -> str:
    """Build a stable key from dimension values, in the order given.

    >>> make_series_id(cluster="prod", pool="compute", resource="cpu", kind="usage")
    'cluster=prod/pool=compute/resource=cpu/kind=usage'
    """
    return "/".join(f"{k}={quote(str(v), safe='')}" for k, v in dims.items())


def parse_series_id(series_id: str) -> dict[str, str]:
    """Inverse of :func:`make_series_id`."""
    out: dict[str, str] = {}
    for part in series_id.split("/"):
        key, sep, value = part.partition("=")
        if not sep:
            raise FrameError(f"series_id {series_id!r}: part {part!r} is not key=value")
        out[key] = unquote(value)
    return out


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FrameError(
            f"{what}: missing column(s) {', '.join(missing)}; have {', '.join(map(str, frame.columns))}"
        )


def validate_long(frame: pd.DataFrame, what: str = "samples") -> pd.DataFrame:
    """Check a long frame (``series_id, ts, value``): ts tz-aware UTC, values finite.

    Returns the frame unchanged so it can be used inline.
    """
    _require(frame, (SERIES_ID, TS, VALUE), what)
    ts = frame[TS]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise FrameError(f"{what}: column ts must be tz-aware UTC timestamps, got {ts.dtype}")
    values = frame[VALUE].to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        first = frame.loc[bad].iloc[0]
        raise FrameError(
            f"{what}: {int(bad.sum())} non-finite value(s), first in series "
            f"{first[SERIES_ID]!r} at {first[TS]}"
        )
    return frame


def validate_forecast(frame: pd.DataFrame, what: str = "forecast") -> pd.DataFrame:
    """Check a forecast frame (``ts, yhat, yhat_lower, yhat_upper``): bounds ordered."""
    _require(frame, (TS, YHAT, YHAT_LOWER, YHAT_UPPER), what)
    if (frame[YHAT_LOWER] > frame[YHAT] + 1e-9).any() or (frame[YHAT] > frame[YHAT_UPPER] + 1e-9).any():
        raise FrameError(f"{what}: yhat_lower <= yhat <= yhat_upper does not hold")
    return frame


#: The frames handed from stage to stage, by name: the columns each must have (more are
#: allowed). :func:`check_frame` is called at every stage boundary of a run.
CONTRACTS: dict[str, tuple[str, ...]] = {
    # ingest -> forecast: pool-level demand and storage history, long
    "pool_history": ("cluster", "pool", "resource", "kind", "ts", "value"),
    # ingest -> plan: one row per node, allocatable in base units
    "inventory": ("cluster", "pool", "tier", "zone", "node", "instance_type", "cpu_cores", "memory_bytes", "pods"),
    # forecast -> plan: daily-peak forecasts per pool series
    "forecasts": ("series_id", "cluster", "pool", "resource", "kind", "ts", "yhat", "yhat_lower", "yhat_upper",
                  "yhat_baseline", "model"),
    # plan -> report: one row per pool and resource
    "decisions": ("cluster", "pool", "tier", "resource", "binding_kind", "trigger_date", "order_by_date", "late", "status"),
    # plan -> report: one row per action
    "actions": ("order_by_date", "needed_by_date", "late", "cluster", "pool", "tier", "action", "quantity",
                "monthly_cost_usd", "reason"),
}


def check_frame(frame: pd.DataFrame, contract: str, where: str = "") -> pd.DataFrame:
    """Check ``frame`` against :data:`CONTRACTS` (columns present; ``ts`` tz-aware when
    present and the frame is not empty). Returns the frame so it can be used inline."""
    what = f"{where}: {contract}" if where else contract
    _require(frame, CONTRACTS[contract], what)
    if len(frame) and "ts" in frame.columns and not isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
        raise FrameError(f"{what}: column ts must be tz-aware UTC timestamps, got {frame['ts'].dtype}")
    return frame
