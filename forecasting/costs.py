"""Prices: what capacity costs per month and over the next 12 months. Pure.

Hourly prices are per node (``InstanceType.monthly_cost_usd`` blends spot and reserved
shares); storage is priced per GB-month while sizes are GiB.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from .headroom import PolicyLookup
from .policy import HOURS_PER_MONTH, Catalog, CatalogError, StorageType

__all__ = ["GIB", "GB_PER_GIB", "HOURS_PER_MONTH", "COST_HORIZON_DAYS", "storage_monthly_cost", "cost_within", "fleet_cost"]

GIB = 2**30
#: Prices are per GB (10^9 bytes); sizes are in GiB (2^30 bytes): one GiB is 1.0737 GB.
GB_PER_GIB = GIB / 1e9
#: A month of an hourly price is HOURS_PER_MONTH (the cloud providers' convention); a day is
#: 24 of those hours. "Next 12 months" costs count each action from the day its capacity is there.
COST_HORIZON_DAYS = 365


def storage_monthly_cost(gib: float, stype: StorageType) -> float:
    """Monthly cost of ``gib`` GiB of a storage type priced per GB-month."""
    return gib * GB_PER_GIB * stype.price_per_gb_month_usd


def cost_within(monthly: float, start: dt.date | None, as_of: dt.date, days: int = COST_HORIZON_DAYS) -> float:
    """What a run-rate of ``monthly`` costs from ``start`` until ``as_of + days`` (prorated
    by day; nothing if it starts after that)."""
    if start is None:
        return 0.0
    begin = max(start, as_of)
    active = (as_of + dt.timedelta(days=days) - begin).days
    return monthly * max(active, 0) * 24 / HOURS_PER_MONTH


def fleet_cost(inventory: pd.DataFrame, policy_of: PolicyLookup, catalog: Catalog,
               storage_pools: pd.DataFrame | None = None) -> pd.DataFrame:
    """Monthly cost of today's nodes and storage. In: inventory, storage pools (``cluster,
    pool, capacity`` in bytes). Out: ``cluster, pool, tier, instance_type, nodes,
    storage_type, storage_gib, monthly_cost_usd``. An instance or storage type missing
    from the catalog raises :class:`CatalogError` naming it and the pool."""
    rows = []
    for (cluster, pool, tier, itype), g in inventory.groupby(["cluster", "pool", "tier", "instance_type"], sort=True):
        p = policy_of(cluster, pool, tier)
        try:
            t = catalog.instance(itype)
        except CatalogError as exc:
            raise CatalogError(f"pool {cluster}/{pool}: {exc}") from None
        rows.append({"cluster": cluster, "pool": pool, "tier": tier, "instance_type": itype, "nodes": len(g),
                     "storage_type": None, "storage_gib": 0.0,
                     "monthly_cost_usd": len(g) * t.monthly_cost_usd(p.spot_ratio_pct, p.reserved_ratio_pct)})
    for r in (storage_pools if storage_pools is not None else pd.DataFrame()).itertuples():
        p = policy_of(r.cluster, r.pool, "storage")
        try:
            stype = catalog.storage(p.storage_type)
        except CatalogError as exc:
            raise CatalogError(f"storage pool {r.cluster}/{r.pool}: {exc}") from None
        gib = float(r.capacity) / GIB
        rows.append({"cluster": r.cluster, "pool": r.pool, "tier": "storage", "instance_type": None, "nodes": 0,
                     "storage_type": stype.name, "storage_gib": gib, "monthly_cost_usd": storage_monthly_cost(gib, stype)})
    return pd.DataFrame(rows, columns=["cluster", "pool", "tier", "instance_type", "nodes", "storage_type", "storage_gib",
                                       "monthly_cost_usd"])

