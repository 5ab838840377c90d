"""What every source shares: the inventory columns, the result of an ingest, data quality.

Every source ends the same way: series dimensions upserted, samples replaced window by
window (one transaction each), and an :class:`IngestResult` with the inventory snapshot,
storage pools and per-series data quality, which the run writes with its other outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ...domain import HistoryWindow
from ..store import Store

__all__ = ["IngestResult", "IngestError", "INVENTORY_COLUMNS", "INVENTORY_DEFAULTS", "Progress", "data_quality"]

Progress = Callable[[int, int, str], None]
INVENTORY_COLUMNS = ["cluster", "pool", "tier", "zone", "node", "instance_type", "cpu_cores", "memory_bytes", "pods", "storage_bytes",
                     "capacity_type"]
#: Optional inventory columns and their value when a source does not know them.
INVENTORY_DEFAULTS = {"capacity_type": "on-demand"}  # on-demand | spot


class IngestError(ValueError):
    """Input data is unusable; the message names the file or query, the field and why."""


@dataclass
class IngestResult:
    """What an ingest brought in; written with the run's outputs.

    ``inventory`` has :data:`INVENTORY_COLUMNS`; ``storage_pools`` has ``cluster, pool,
    capacity``; ``quality`` has the ``data_quality`` table's columns."""

    inventory: pd.DataFrame
    storage_pools: pd.DataFrame
    quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows: int = 0
    series: int = 0
    new_series: int = 0
    #: Problems the run goes on with but a reader must see (short history, a pool query
    #: that returned nothing...): one sentence each; the report shows them in red.
    warnings: list[str] = field(default_factory=list)
    #: What the pull cost the server (Prometheus: requests, samples, server_s, wall_s,
    #: by_variant, budget and a one-line ``line``); empty for other sources.
    cost: dict = field(default_factory=dict)


def data_quality(store: Store, window: HistoryWindow, step_s: int, series_ids: pd.Series | None = None) -> pd.DataFrame:
    """Per series: coverage %, gaps (missed steps), longest gap, last sample, stale, new.

    A series is *stale* when its last sample is more than 6 steps before the window's
    end, *new* when its first sample is more than a day after the window's start.
    Out: the ``data_quality`` table's columns.
    """
    df = store.series_coverage(window, step_s)
    if series_ids is not None:
        df = df[df["series_id"].isin(set(series_ids.astype(str)))]
    df["stale"] = df["last_ts"] < window.end - pd.Timedelta(seconds=6 * step_s)
    df["new_series"] = df["first_ts"] > window.start + pd.Timedelta(days=1)
    df["longest_gap_steps"] = df["longest_gap_steps"].clip(lower=0)
    df["note"] = np.where(df["stale"], "stopped reporting", np.where(df["new_series"], "new series", ""))
    return df.drop(columns=["first_ts"])

