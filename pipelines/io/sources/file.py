"""The file source: an offline CSV or Parquet export (and a node inventory CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.frames import KINDS, RESOURCES, UNITS, make_series_id

from ...domain import HistoryWindow
from ..store import Store
from .common import INVENTORY_COLUMNS, INVENTORY_DEFAULTS, IngestError, IngestResult, data_quality

__all__ = ["read_samples_file", "read_inventory_file", "ingest_file"]


def read_samples_file(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet export into the long format, validated.

    Long format: ``cluster, pool, resource, kind, ts, value, unit`` (``node`` optional;
    or ``series_id`` instead of the dimensions, in ``key=value/...`` form). Wide CSV:
    a ``timestamp`` column and one column per series named by its series_id; units
    are then the resources' base units. Timestamps must carry a time zone (or be UTC
    epoch seconds) and be consistent; values must be finite numbers; units must be the
    resource's base unit (cores, bytes, pods). Out: ``series_id, cluster, pool, node,
    resource, kind, ts, value``.
    """
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    try:
        raw = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
    except Exception as exc:  # the reader's own message is the best description
        raise IngestError(f"{path}: cannot read as {'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: {exc}") from None
    if "timestamp" in raw.columns and "value" not in raw.columns:
        raw = raw.melt(id_vars=["timestamp"], var_name="series_id", value_name="value").rename(columns={"timestamp": "ts"})
    if "ts" not in raw.columns and "timestamp" in raw.columns:
        raw = raw.rename(columns={"timestamp": "ts"})
    for col in ("ts", "value"):
        if col not in raw.columns:
            raise IngestError(f"{path}: missing column {col!r}; expected long format (cluster,pool,resource,kind,ts,value,unit) or wide (timestamp, one column per series)")
    if "series_id" in raw.columns:
        from forecasting.frames import FrameError, parse_series_id

        try:
            dims = pd.DataFrame([parse_series_id(s) for s in raw["series_id"].astype(str)])
        except FrameError as exc:
            raise IngestError(f"{path}: column series_id: {exc}") from None
        for c in ("cluster", "pool", "resource", "kind"):
            if c not in dims:
                raise IngestError(f"{path}: series_id values must name cluster, pool, resource and kind")
            raw[c] = dims[c].to_numpy()
    missing = [c for c in ("cluster", "pool", "resource", "kind") if c not in raw.columns]
    if missing:
        raise IngestError(f"{path}: missing column(s) {', '.join(missing)}")
    lines = pd.Series(np.arange(len(raw)) + 2, index=raw.index)  # header is line 1
    bad_res = ~raw["resource"].isin(RESOURCES)
    if bad_res.any():
        i = bad_res.idxmax()
        raise IngestError(f"{path}: line {lines[i]}: resource {raw.at[i, 'resource']!r}; expected one of {', '.join(RESOURCES)}")
    bad_kind = ~raw["kind"].isin(KINDS)
    if bad_kind.any():
        i = bad_kind.idxmax()
        raise IngestError(f"{path}: line {lines[i]}: kind {raw.at[i, 'kind']!r}; expected one of {', '.join(KINDS)}")
    if "unit" in raw.columns:
        expected_unit = raw["resource"].map(UNITS)
        bad_unit = raw["unit"].astype(str) != expected_unit
        if bad_unit.any():
            i = bad_unit.idxmax()
            raise IngestError(f"{path}: line {lines[i]}: unit {raw.at[i, 'unit']!r} for {raw.at[i, 'resource']}; expected {expected_unit[i]!r} (convert before import)")
    elif "series_id" not in raw.columns or "value" in raw.columns and "timestamp" in raw.columns:
        raise IngestError(f"{path}: missing column 'unit' (state the unit of every row: cores, bytes or pods)")
    ts_text = raw["ts"].astype(str)
    numeric_ts = ts_text.str.fullmatch(r"\d{9,11}(\.\d+)?")
    if numeric_ts.all():
        ts = pd.to_datetime(ts_text.astype(float), unit="s", utc=True)
    else:
        has_zone = ts_text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        if not has_zone.all():
            i = (~has_zone).idxmax()
            raise IngestError(f"{path}: line {lines[i]}: timestamp {ts_text[i]!r} has no time zone; expected ISO 8601 with Z or an offset, e.g. 2026-11-01T10:00:00Z")
        ts = pd.to_datetime(ts_text, utc=True, errors="coerce", format="ISO8601")
        if ts.isna().any():
            i = ts.isna().idxmax()
            raise IngestError(f"{path}: line {lines[i]}: timestamp {ts_text[i]!r} is not a valid ISO 8601 time")
        offsets = ts_text.str.extract(r"(Z|[+-]\d\d:?\d\d)$")[0].str.replace("+00:00", "Z").str.replace("+0000", "Z")
        per_series = pd.DataFrame({"sid": raw[["cluster", "pool", "resource", "kind"]].astype(str).agg("/".join, axis=1), "off": offsets})
        mixed = per_series.groupby("sid")["off"].nunique()
        if (mixed > 1).any():
            raise IngestError(f"{path}: series {mixed[mixed > 1].index[0]!r} mixes time-zone offsets "
                              f"({', '.join(sorted(per_series[per_series.sid == mixed[mixed > 1].index[0]].off.unique()))}); "
                              "export all timestamps in UTC (Z)")
    values = pd.to_numeric(raw["value"], errors="coerce")
    bad_val = values.isna() | ~np.isfinite(values.astype(float))
    if bad_val.any():
        i = bad_val.idxmax()
        raise IngestError(f"{path}: line {lines[i]}: value {raw.at[i, 'value']!r} is not a finite number")
    node = raw["node"] if "node" in raw.columns else pd.Series([None] * len(raw), index=raw.index)
    out = pd.DataFrame({
        "cluster": raw["cluster"].astype(str), "pool": raw["pool"].astype(str), "node": node,
        "resource": raw["resource"], "kind": raw["kind"], "ts": ts, "value": values.astype(float),
    })
    out["series_id"] = [
        make_series_id(cluster=c, pool=p, node=n, resource=r, kind=k) if isinstance(n, str) and n
        else make_series_id(cluster=c, pool=p, resource=r, kind=k)
        for c, p, n, r, k in zip(out.cluster, out.pool, out.node, out.resource, out.kind)
    ]
    dupes = out.duplicated(["series_id", "ts"])
    if dupes.any():
        i = dupes.idxmax()
        raise IngestError(f"{path}: line {lines[i]}: duplicate sample for series {out.at[i, 'series_id']!r} at {out.at[i, 'ts']}; each series may have one value per timestamp")
    return out


def read_inventory_file(path: Path) -> pd.DataFrame:
    """Node inventory CSV with :data:`INVENTORY_COLUMNS` (allocatable in base units;
    ``capacity_type`` on-demand or spot, optional: on-demand when absent)."""
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    inv = pd.read_csv(path)
    for c, default in INVENTORY_DEFAULTS.items():
        if c not in inv.columns:
            inv[c] = default
    missing = [c for c in INVENTORY_COLUMNS if c not in inv.columns]
    if missing:
        raise IngestError(f"{path}: missing column(s) {', '.join(missing)}")
    for c in ("cpu_cores", "memory_bytes", "pods", "storage_bytes"):
        v = pd.to_numeric(inv[c], errors="coerce")
        if v.isna().any() or (v < 0).any():
            i = (v.isna() | (v < 0)).idxmax()
            raise IngestError(f"{path}: line {i + 2}: {c} {inv.at[i, c]!r}; expected a non-negative number")
        inv[c] = v.astype(float)
    return inv[INVENTORY_COLUMNS]


def ingest_file(store: Store, path: Path, inventory_path: Path | None, window: HistoryWindow) -> IngestResult:
    """Import an offline export (see :func:`read_samples_file`) into the same tables."""
    data = read_samples_file(path)
    start, end = window
    data = data[(data.ts >= start) & (data.ts < end)]
    if data.empty:
        raise IngestError(f"{path}: no samples inside the history window {start:%Y-%m-%d} .. {end:%Y-%m-%d}")
    series = data.drop_duplicates("series_id")[["series_id", "cluster", "pool", "node", "resource", "kind"]].copy()
    series["level"] = np.where(series["node"].notna(), "node", "pool")
    series["unit"] = series["resource"].map(UNITS)
    new = store.upsert_series(series, source=f"file:{path.name}")
    rows = store.replace_samples(data, start, end, {"source": "file", "query_name": path.name, "step_s": None})
    inventory = read_inventory_file(inventory_path) if inventory_path else store.latest_inventory()
    if inventory.empty:
        raise IngestError(f"{path}: no node inventory: pass --inventory nodes.csv (columns {', '.join(INVENTORY_COLUMNS)})")
    step_s = int(data.groupby("series_id")["ts"].apply(lambda s: s.sort_values().diff().median()).median().total_seconds())
    return IngestResult(
        inventory=inventory, storage_pools=store.storage_pools(window),
        quality=data_quality(store, window, step_s or 3600, series["series_id"]),
        rows=rows, series=len(series), new_series=new,
    )
