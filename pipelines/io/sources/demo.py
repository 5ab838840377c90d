"""The demo source: the seeded demo fleet (forecasting.synthetic) stored like any other."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from forecasting.events import Event
from forecasting.synthetic import fleet_layout, generate_fleet

from ...config import DemoSource
from ...domain import HistoryWindow
from ..store import Store
from .common import INVENTORY_COLUMNS, IngestResult, Progress, data_quality

__all__ = ["ingest_demo"]


def ingest_demo(store: Store, demo: DemoSource, as_of: dt.date, window: HistoryWindow, progress: Progress | None = None,
                events: list[Event] | None = None) -> IngestResult:
    """Generate the demo fleet (seeded; its history holds ``events`` as declared) and store
    it, one cluster per transaction."""
    inventories, series_frames, rows, new = [], [], 0, 0
    total = len(fleet_layout(demo.nodes, demo.clusters))
    seen = set(store.stored_windows("demo")["cluster"])
    for i, chunk in enumerate(generate_fleet(demo.nodes, as_of, window.days, "1h", demo.seed, demo.clusters, events)):
        new += store.upsert_series(chunk.series, source="demo")
        rows += store.replace_samples(
            chunk.samples, window.start, window.end,
            {"source": "demo", "query_name": "demo-fleet", "cluster": chunk.cluster, "step_s": 3600},
            fresh=chunk.cluster not in seen,
        )
        if chunk.limit_series is not None and len(chunk.limit_samples):
            store.upsert_series(chunk.limit_series, source="demo")
            store.replace_samples(chunk.limit_samples, window.start, window.end,
                                  {"source": "demo", "query_name": "demo-nodepool-limits", "cluster": chunk.cluster,
                                   "step_s": 86400}, fresh=chunk.cluster not in seen)
        inventories.append(chunk.inventory)
        series_frames.append(chunk.series)
        if progress:
            progress(i + 1, total, chunk.cluster)
    inventory = pd.concat(inventories, ignore_index=True)[INVENTORY_COLUMNS]
    series = pd.concat(series_frames, ignore_index=True)
    return IngestResult(
        inventory=inventory,
        storage_pools=store.storage_pools(window),
        quality=data_quality(store, window, 3600, series["series_id"]),
        rows=rows, series=len(series), new_series=new,
    )
