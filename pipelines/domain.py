"""Small typed values shared by every layer of ``pipelines`` (no I/O, no framework).

They replace strings that used to be split and sliced: a pool is a :class:`PoolKey`, not
``"cluster/pool"``; a history window is a :class:`HistoryWindow`, not a tuple.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, NamedTuple

import pandas as pd

__all__ = ["HistoryWindow", "PoolKey", "RunKind"]

#: What a run does: the monthly job, a what-if re-plan, or an ingest only.
RunKind = Literal["monthly", "what-if", "ingest"]


class PoolKey(NamedTuple):
    """One node pool (or storage pool) of one cluster."""

    cluster: str
    pool: str


class HistoryWindow(NamedTuple):
    """``[start, end)`` in UTC: the history a run reads."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def ending(cls, as_of: dt.date, days: int) -> "HistoryWindow":
        """The ``days`` before ``as_of`` (midnight UTC, exclusive)."""
        end = pd.Timestamp(as_of, tz="UTC")
        return cls(end - pd.Timedelta(days=days), end)

    @property
    def days(self) -> int:
        return int((self.end - self.start) / pd.Timedelta(days=1))
