"""Sources of history: the demo fleet, offline files, Prometheus (or Thanos / Mimir).

:func:`ingest` reads the configured source for a run's history window into DuckDB and
returns an :class:`IngestResult`. Each source lives in its own module.
"""

from __future__ import annotations

import datetime as dt

from ...config import Config
from ...domain import HistoryWindow
from ..store import Store
from .common import INVENTORY_COLUMNS, IngestError, IngestResult, Progress, data_quality

__all__ = ["ingest", "IngestResult", "IngestError", "INVENTORY_COLUMNS", "data_quality"]


def ingest(cfg: Config, store: Store, as_of: dt.date, window: HistoryWindow, progress: Progress | None = None,
           events: list | None = None) -> IngestResult:
    """Bring ``window`` of the configured source (``cfg.source.kind``) into ``store``.
    ``events``: the business calendar (the demo fleet's history holds its events)."""
    src = cfg.source
    if src.kind == "demo":
        from .demo import ingest_demo

        return ingest_demo(store, src.demo, as_of, window, progress, events)
    if src.kind == "file":
        from .file import ingest_file

        if not src.file.path:
            raise IngestError("source.file.path is not set (or pass --source file PATH)")
        inventory = cfg.path(src.file.inventory) if src.file.inventory else None
        return ingest_file(store, cfg.path(src.file.path), inventory, window)
    from .prometheus import ingest_prometheus

    return ingest_prometheus(store, cfg, window, progress)
