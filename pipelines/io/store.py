"""The one module that runs SQL against capplan's DuckDB file.

Connections are short-lived (open, do one thing, close) so an analyst's read-only
session can open the file between a run's writes. A run's outputs are written in one
transaction with the run's status, so a reader never sees half a run. Every statement
takes parameters; table names come only from the fixed set in :data:`RUN_TABLES`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import time
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd

from ..domain import HistoryWindow

__all__ = ["Store", "StoreError", "StoreBusy", "RUN_TABLES"]

#: Tables holding one run's outputs (all carry ``run_id``).
RUN_TABLES = (
    "inventory", "storage_pools", "events", "data_quality", "forecasts", "forecast_overlays",
    "backtest_scores", "forecast_notes", "capacity", "headroom", "decisions", "plans", "fleet_costs",
    "plan_diffs", "event_effects", "track_record", "unexplained_peaks", "limit_runway", "quotas", "quota_usage",
    "pool_costs", "commitments",
)


class StoreError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


class StoreBusy(StoreError):
    """Another process holds the database (a run is writing, or another run is active)."""


def _schema_sql() -> str:
    return resources.files("pipelines.io").joinpath("schema.sql").read_text(encoding="utf-8")


#: DuckDB's lock error names the holder: 'Conflicting lock is held in <program> (PID <n>)'; the
#: hint 'you would be able to open this database in read-only mode' means the holder only
#: reads (it holds a shared lock). Wording as DuckDB 2.0 prints it here (measured with a second
#: process; locking is described at https://duckdb.org/docs/current/connect/concurrency).
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")
_HOLDER_READS = "open this database in read-only mode"


def _process_kind(pid: str) -> str:
    """What process ``pid`` looks like from its command line (Linux /proc), or ''."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""
    if "ipykernel" in cmd or "jupyter" in cmd:
        return "a Jupyter kernel"
    if "capplan" in cmd or "pipelines.cli" in cmd or "prefect" in cmd:
        return "a capplan run or Prefect worker"
    return ""


def _busy_message(path: Path, error: str, read_only: bool, waited_s: float) -> str:
    """One line for a database another process holds: who (DuckDB's PID, what the process
    looks like), whether it reads or writes, and how to let this process through."""
    copy = f"or work on a copy: cp {path} /tmp/capplan-copy.duckdb"
    m = _LOCK_HOLDER.search(error)
    if not m:
        return (f"{path} is in use by another process (waited {waited_s:g} s): a capplan run writing, or a notebook "
                f"or script with the file open; let it finish or close its connection (con.close()), {copy}")
    pid, kind = m["pid"], _process_kind(m["pid"])
    who = f"PID {pid} ({m['program']}{', ' + kind if kind else ''})"
    if _HOLDER_READS in error:
        return (f"{path} is in use by another process (waited {waited_s:g} s): {who} holds a read-only connection, "
                f"which keeps any writer out. To let the run through, close that connection (con.close() in the "
                f"notebook, or shut down its kernel), {copy} and point the notebook there")
    need = "read it" if read_only else "write"
    return (f"{path} is in use by another process (waited {waited_s:g} s): {who} holds a read-write connection "
            f"(a capplan run writing, or a session opened without read_only=True), so this process cannot {need}. "
            f"Wait for a run to finish, or close that connection (con.close(), or shut down its kernel); {copy}")


class Store:
    """capplan's DuckDB file. ``Store(path).connect()`` yields a connection in UTC."""

    def __init__(self, path: Path | str, busy_timeout_s: float = 30.0, memory_limit: str = "2GB"):
        self.path = Path(path)
        self.memory_limit = memory_limit  # DuckDB would take up to 80% of RAM by default
        self.busy_timeout_s = busy_timeout_s
        self._initialised = False

    # -- connections -----------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (waiting up to ``busy_timeout_s`` while another process writes)."""
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no database yet; run `capplan demo` or `capplan run` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config={"memory_limit": self.memory_limit})
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StoreError(f"{self.path}: cannot open database: {exc}") from None
                if time.monotonic() > deadline:
                    raise StoreBusy(_busy_message(self.path, str(exc), read_only, self.busy_timeout_s)) from None
                time.sleep(0.2)
        try:
            con.execute("SET TimeZone = 'UTC'")
            if not read_only and not self._initialised:
                con.execute(_schema_sql())
                self._initialised = True
            yield con
        finally:
            con.close()

    def init(self) -> None:
        """Create the schema (idempotent)."""
        with self.connect():
            pass

    @contextlib.contextmanager
    def run_lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """One run at a time per database: a second run waits ``wait_s`` then refuses."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fh = open(lock_path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    fh.close()
                    raise StoreBusy(
                        f"another capplan run ({holder}) is using {self.path}; wait for it to finish "
                        f"or pass --wait SECONDS"
                    ) from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%SZ}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    # -- runs ------------------------------------------------------------------------
    def start_run(self, run_id: str, kind: str, as_of: dt.date, config_json: str, window: HistoryWindow, **extra: str | None) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        with self.connect() as con:
            # Callers hold run_lock(), so a run still 'running' here was interrupted (killed,
            # power loss): say so instead of leaving it looking alive.
            con.execute(
                "UPDATE runs SET status = 'failed', error = 'interrupted: the process ended before the run finished', "
                "finished_at = ? WHERE status = 'running'", [now])
            con.execute(
                "INSERT INTO runs (run_id, kind, status, as_of, month, config_json, window_start, window_end, "
                "started_at, flow_run_id, baseline_run_id, scenario_json) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, kind, as_of, _plan_month(as_of), config_json, window[0], window[1], now,
                 extra.get("flow_run_id"), extra.get("baseline_run_id"), extra.get("scenario_json")],
            )

    def fail_run(self, run_id: str, error: str, timings: dict | None = None) -> None:
        with self.connect() as con:
            con.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished_at = ?, timings_json = ? WHERE run_id = ?",
                [error[:4000], dt.datetime.now(dt.timezone.utc), json.dumps(timings or {}), run_id],
            )

    def finish_run(self, run_id: str, outputs: dict[str, pd.DataFrame], timings: dict, summary: dict) -> None:
        """Write every output table and mark the run succeeded, in one transaction."""
        unknown = set(outputs) - set(RUN_TABLES)
        if unknown:
            raise StoreError(f"not a run table: {', '.join(sorted(unknown))}")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for table, frame in outputs.items():
                    self._insert(con, table, frame, run_id)
                con.execute(
                    "UPDATE runs SET status = 'succeeded', finished_at = ?, timings_json = ?, summary_json = ? WHERE run_id = ?",
                    [dt.datetime.now(dt.timezone.utc), json.dumps(timings), json.dumps(summary, default=str), run_id],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, run_id: str) -> None:
        if frame is None or frame.empty:
            return
        cols = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
        ).fetchall()]
        data = frame.copy()
        data["run_id"] = run_id
        missing = [c for c in cols if c not in data.columns]
        for c in missing:
            data[c] = None
        con.register("_frame", data[cols])
        try:
            con.execute(f'INSERT INTO "{table}" SELECT * FROM _frame')  # table from RUN_TABLES only
        finally:
            con.unregister("_frame")

    def runs(self, read_only: bool = True) -> pd.DataFrame:
        """Every run, oldest first: run_id, kind, status, as_of, month, started_at, finished_at,
        error (None for a run without one, not NaN)."""
        with self.connect(read_only=read_only) as con:
            df = con.execute(
                "SELECT run_id, kind, status, as_of, month, started_at, finished_at, error FROM runs ORDER BY started_at"
            ).df()
        df["error"] = df["error"].astype(object).where(df["error"].notna(), None)
        return df

    def run(self, run_id: str) -> dict:
        with self.connect(read_only=True) as con:
            df = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
        if df.empty:
            raise StoreError(f"no run {run_id!r} in {self.path}; `capplan runs` lists them")
        return df.iloc[0].to_dict()

    def latest_run(self, kind: str = "monthly", before: str | None = None) -> str | None:
        """The newest succeeded run of ``kind`` (started before run ``before`` if given)."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT run_id FROM completed_runs WHERE kind = ? AND (? IS NULL OR started_at < "
                "(SELECT started_at FROM runs WHERE run_id = ?)) ORDER BY started_at DESC LIMIT 1",
                [kind, before, before],
            ).fetchall()
        return rows[0][0] if rows else None

    def past_runs(self, before: dt.date, kind: str = "monthly", limit: int = 6) -> pd.DataFrame:
        """The newest succeeded run of ``kind`` for each as-of date before ``before`` (at most
        ``limit``, newest first). Out: ``run_id, as_of, horizon_days``."""
        with self.connect(read_only=True) as con:
            return con.execute(
                """
                SELECT run_id, as_of, CAST(json_extract(config_json, '$.forecasting.horizon_days') AS INTEGER) AS horizon_days
                FROM completed_runs WHERE kind = ? AND as_of < ?
                QUALIFY row_number() OVER (PARTITION BY as_of ORDER BY started_at DESC) = 1
                ORDER BY as_of DESC LIMIT ?
                """,
                [kind, before, limit],
            ).df()

    def table(self, table: str, run_id: str) -> pd.DataFrame:
        """One run's rows of an output table (without the run_id column)."""
        if table not in RUN_TABLES:
            raise StoreError(f"not a run table: {table}")
        with self.connect(read_only=True) as con:
            df = con.execute(f'SELECT * FROM "{table}" WHERE run_id = ?', [run_id]).df()
        return df.drop(columns=["run_id"])

    # -- samples ---------------------------------------------------------------------
    def upsert_series(self, series: pd.DataFrame, source: str) -> int:
        """Add series not seen before; returns how many were new."""
        data = series.drop_duplicates("series_id").copy()
        data["source"] = source
        data["first_seen"] = dt.datetime.now(dt.timezone.utc)
        cols = ["series_id", "cluster", "pool", "node", "namespace", "resource", "kind", "level", "unit", "source", "first_seen", "agg",
                "provider"]
        for c in cols:
            if c not in data:
                data[c] = "avg" if c == "agg" else None
        with self.connect() as con:
            con.register("_series", data[cols])
            before = con.execute("SELECT count(*) FROM series").fetchall()[0][0]
            con.execute(f"INSERT INTO series ({', '.join(cols)}) SELECT * FROM _series WHERE series_id NOT IN (SELECT series_id FROM series)")
            after = con.execute("SELECT count(*) FROM series").fetchall()[0][0]
            con.unregister("_series")
        return int(after - before)

    def replace_samples(
        self, samples: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, window: dict | None = None,
        fresh: bool = False,
    ) -> int:
        """Replace ``[start, end)`` of the given series with ``samples`` in one transaction
        (no duplicates; an interruption leaves the old window intact). ``window`` records
        the pulled window in ``ingest_windows`` in the same transaction, and its ``cost``
        (a :class:`pipelines.io.sources.budget.Cost` dict) in ``query_costs``. ``fresh`` (nothing of
        these series stored yet, per ``ingest_windows``) skips the delete, which would scan
        the whole table for nothing."""
        with self.connect() as con:
            con.register("_samples", samples[["series_id", "ts", "value"]])
            con.execute("BEGIN TRANSACTION")
            try:
                if not fresh:
                    con.execute(
                        "DELETE FROM samples WHERE ts >= ? AND ts < ? AND series_id IN (SELECT DISTINCT series_id::VARCHAR FROM _samples)",
                        [start, end],
                    )
                con.execute("INSERT INTO samples SELECT series_id::VARCHAR, ts, value FROM _samples")
                if window:
                    now = dt.datetime.now(dt.timezone.utc)
                    con.execute(
                        "INSERT INTO ingest_windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [window["source"], window["query_name"], window.get("cluster"), start, end, window.get("step_s"),
                         len(samples), window.get("run_id"), now],
                    )
                    if (cost := window.get("cost")) is not None:
                        con.execute(
                            "INSERT INTO query_costs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [window["source"], window["query_name"], window.get("query_group"), window.get("variant"),
                             window.get("cluster"), start, end, window.get("step_s"), window.get("resolution", ""),
                             cost["requests"], cost["samples"], cost["peak_samples"], cost["server_s"],
                             cost.get("wall_s"), cost["points"], now],
                        )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("_samples")
        return len(samples)

    def query_costs(self, since: dt.datetime | None = None) -> pd.DataFrame:
        """The ``query_costs`` rows recorded at or after ``since`` (all when None), oldest first."""
        with self.connect() as con:
            return con.execute("SELECT * FROM query_costs WHERE ? IS NULL OR recorded_at >= ? ORDER BY recorded_at",
                               [since, since]).df()

    def stored_windows(self, source: str) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                "SELECT query_name, cluster, window_start, window_end, step_s FROM ingest_windows WHERE source = ?", [source]
            ).df()

    def pool_samples(self, start: pd.Timestamp, end: pd.Timestamp, read_only: bool = False) -> pd.DataFrame:
        """Pool-level demand and storage series in ``[start, end)``.

        Out: ``cluster, pool, resource, kind, ts, value``. Pool series stored by the source
        are used as they are; pools with only node-level series are summed here.

        The samples are joined and summed on a small integer key per pool series, and the
        four text columns are filled in from the key table afterwards: grouping, sorting
        and fetching the text per row took 5.2 GB and 115 s for 9.5M rows at 100 clusters;
        the key takes 2.2 GB and 40 s (docs/PERFORMANCE.md).
        """
        with self.connect(read_only=read_only) as con:
            keys = con.execute(
                "SELECT DISTINCT cluster, pool, resource, kind FROM series WHERE level IN ('pool', 'node') "
                "ORDER BY cluster, pool, resource, kind"
            ).df()
            con.register("_keys", keys.assign(k=np.arange(len(keys), dtype=np.int32)))
            try:
                rows = con.execute(
                    """
                    WITH sk AS (
                        SELECT s.*, k.k FROM series s JOIN _keys k
                        ON s.cluster IS NOT DISTINCT FROM k.cluster AND s.pool IS NOT DISTINCT FROM k.pool
                           AND s.resource IS NOT DISTINCT FROM k.resource AND s.kind IS NOT DISTINCT FROM k.kind
                    ),
                    pool_level AS (
                        SELECT s.k, x.ts, x.value
                        FROM samples x JOIN sk s USING (series_id)
                        WHERE s.level = 'pool' AND x.ts >= ? AND x.ts < ?
                          -- capacity is about peaks: use the per-step max where the source has it
                          AND (s.agg = 'max' OR NOT EXISTS (
                              SELECT 1 FROM series m WHERE m.level = 'pool' AND m.agg = 'max' AND m.cluster = s.cluster
                                AND m.pool = s.pool AND m.resource = s.resource AND m.kind = s.kind))
                    ),
                    from_nodes AS (
                        SELECT s.k, x.ts, sum(x.value) AS value
                        FROM samples x JOIN sk s USING (series_id)
                        WHERE s.level = 'node' AND x.ts >= ? AND x.ts < ?
                          AND (s.cluster, s.pool, s.resource, s.kind) NOT IN
                              (SELECT DISTINCT cluster, pool, resource, kind FROM series WHERE level = 'pool')
                        GROUP BY ALL
                    )
                    SELECT * FROM pool_level UNION ALL SELECT * FROM from_nodes
                    ORDER BY k, ts
                    """,
                    [start, end, start, end],
                ).df()
            finally:
                con.unregister("_keys")
        code = rows["k"].to_numpy()
        out = pd.DataFrame({c: keys[c].take(code).reset_index(drop=True) for c in ("cluster", "pool", "resource", "kind")})
        out["ts"], out["value"] = rows["ts"], rows["value"]  # both on the same RangeIndex
        return out

    def pool_limits(self, start: pd.Timestamp, end: pd.Timestamp, read_only: bool = False) -> pd.DataFrame:
        """Autoscaled pools' limits (series of level ``limit``) in ``[start, end)``, and the
        last value before ``start`` (a limit set long ago is still in force).

        Out: ``cluster, pool, source, resource, ts, value`` (``source``: what reports it,
        e.g. karpenter; values in instance capacity units: cores, bytes, nodes)."""
        with self.connect(read_only=read_only) as con:
            return con.execute(
                """
                WITH lim AS (
                    SELECT s.cluster, s.pool, coalesce(s.provider, s.source) AS source, s.resource, x.ts, x.value
                    FROM samples x JOIN series s USING (series_id) WHERE s.level = 'limit' AND x.ts < ?
                )
                SELECT * FROM lim WHERE ts >= ?
                UNION ALL
                SELECT * FROM lim WHERE ts < ? QUALIFY row_number() OVER (PARTITION BY cluster, pool, resource ORDER BY ts DESC) = 1
                ORDER BY cluster, pool, resource, ts
                """,
                [end, start, start],
            ).df()

    def latest_inventory(self) -> pd.DataFrame:
        """The inventory snapshot of the newest ingest."""
        with self.connect() as con:
            return con.execute(
                "SELECT * EXCLUDE (run_id) FROM inventory WHERE run_id = "
                "(SELECT run_id FROM runs WHERE run_id IN (SELECT DISTINCT run_id FROM inventory) "
                " AND status = 'succeeded' ORDER BY started_at DESC LIMIT 1)"
            ).df()

    def storage_pools(self, window: HistoryWindow) -> pd.DataFrame:
        """Capacity of each storage pool: the last value of its ``kind=capacity`` series.
        Out: ``cluster, pool, capacity``."""
        with self.connect() as con:
            return con.execute(
                """
                SELECT s.cluster, s.pool, arg_max(x.value, x.ts) AS capacity
                FROM samples x JOIN series s USING (series_id)
                WHERE s.resource = 'storage' AND s.kind = 'capacity' AND x.ts >= ? AND x.ts < ?
                GROUP BY s.cluster, s.pool ORDER BY 1, 2
                """,
                [window.start, window.end],
            ).df()

    def series_coverage(self, window: HistoryWindow, step_s: int) -> pd.DataFrame:
        """Per series in the window: ``series_id, cluster, pool, resource, kind,
        coverage_pct, gaps, longest_gap_steps, duplicates, counter_resets, last_ts,
        first_ts`` (a gap is one or more missed steps between two samples).

        Each series' samples are placed on its step grid (steps from its first sample,
        rounded) as one bit per step (``bitstring_agg``); gaps are the runs of zeros
        between ones. One scan and a hash aggregate of one bitstring per series: a window
        function over the samples (``lag``) sorts the whole window, which spilled 11 GB to
        disk at 10,000 nodes and would not fit the disk at 108,000 (docs/PERFORMANCE.md).
        """
        expected = max(int((window.end - window.start).total_seconds() // step_s), 1)
        with self.connect() as con:
            return con.execute(
                """
                WITH x AS (SELECT series_id, ts FROM samples WHERE ts >= ? AND ts < ?),
                first AS (SELECT series_id, min(ts) AS first_ts FROM x GROUP BY series_id),
                grid AS (
                    SELECT series_id, count(*) AS n, max(ts) AS last_ts, min(ts) AS first_ts,
                           bitstring_agg(CAST(round((epoch(ts) - epoch(f.first_ts)) / ?) AS BIGINT), 0, ?)::VARCHAR AS present
                    FROM x JOIN first f USING (series_id) GROUP BY series_id
                ),
                holes AS (SELECT *, string_split(trim(present, '0'), '1') AS runs FROM grid)
                SELECT h.series_id, s.cluster, s.pool, s.resource, s.kind,
                       100.0 * n / ? AS coverage_pct,
                       len(list_filter(runs, lambda r: r <> ''))::INTEGER AS gaps,
                       coalesce(list_max(list_transform(runs, lambda r: length(r))), 0)::INTEGER AS longest_gap_steps,
                       0 AS duplicates, 0 AS counter_resets,
                       last_ts, first_ts
                FROM holes h JOIN series s USING (series_id)
                """,
                [window.start, window.end, step_s, expected, expected],
            ).df()

    def record_notification(self, run_id: str, recipients: list[str], subject: str, status: str, error: str | None) -> None:
        """One email attempt (sent or failed) in ``notifications``."""
        with self.connect() as con:
            con.execute("INSERT INTO notifications VALUES (?, ?, ?, ?, ?, ?)",
                        [run_id, dt.datetime.now(dt.timezone.utc), ", ".join(recipients), subject, status, error])

    def run_summary(self, run_id: str) -> dict:
        """The summary a succeeded run stored (headline figures, files, context)."""
        return json.loads(self.run(run_id).get("summary_json") or "{}")


def _plan_month(as_of: dt.date) -> str:
    return f"{as_of:%Y-%m}"
