"""Cloud quotas shared by pools and clusters: how much of each a plan will use, when it
crosses, and by when to file the increase. Pure (docs/AUTOSCALING.md, "Quotas").

A quota (``catalogs/quotas.yaml``) counts vCPU of some instance families and capacity
types in one account and region, across every cluster listed. Its usage on each day is
the sum over those clusters' pools: fixed pools at today's nodes plus every planned
``add-nodes`` from the day its capacity is there; autoscaled pools at the nodes they need
(:func:`forecasting.autoscaling.needed_nodes`), their spot share on the spot quota and the
rest on the on-demand one. Quantiles are summed (the pools are taken to move together:
conservative), plus what the account runs outside Kubernetes where a usage metric says.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .frames import QUANTILE_COLUMNS
from .headroom import PolicyLookup, quantile_at
from .policy import Catalog
from .risk import crossing_probability

__all__ = ["Quota", "QuotaCatalog", "quota_usage", "quota_runway", "QUOTA_COLUMNS", "REGIONS", "instance_family"]

#: Regions each cloud has (public region lists, 2026-11); a quota in another is a typo.
REGIONS = {
    "aws": {"us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-east-2", "ap-south-1",
            "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
            "ap-southeast-7", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1", "ca-west-1",
            "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2",
            "eu-north-1", "il-central-1", "me-south-1", "me-central-1", "mx-central-1", "sa-east-1", "cn-north-1",
            "cn-northwest-1", "us-gov-east-1", "us-gov-west-1"},
    "gcp": {"us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2", "us-west3",
            "us-west4", "northamerica-northeast1", "northamerica-northeast2", "southamerica-east1", "southamerica-west1",
            "europe-west1", "europe-west2", "europe-west3", "europe-west4", "europe-west6", "europe-west8",
            "europe-west9", "europe-west10", "europe-west12", "europe-north1", "europe-central2", "europe-southwest1",
            "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3", "asia-south1",
            "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1", "australia-southeast2",
            "me-west1", "me-central1", "me-central2", "africa-south1"},
    "azure": {"eastus", "eastus2", "centralus", "northcentralus", "southcentralus", "westcentralus", "westus", "westus2",
              "westus3", "canadacentral", "canadaeast", "brazilsouth", "northeurope", "westeurope", "uksouth", "ukwest",
              "francecentral", "germanywestcentral", "switzerlandnorth", "norwayeast", "swedencentral", "polandcentral",
              "italynorth", "spaincentral", "eastasia", "southeastasia", "japaneast", "japanwest", "koreacentral",
              "centralindia", "southindia", "westindia", "australiaeast", "australiasoutheast", "uaenorth",
              "southafricanorth", "qatarcentral", "israelcentral", "mexicocentral"},
}


class Quota(BaseModel):
    """One quota: what it counts, where, its value, and how long raising it takes."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, description="the provider's code, e.g. L-1216C47A")
    name: str = ""
    cloud: Literal["aws", "gcp", "azure"]
    account: str = Field(min_length=1, description="account, project or subscription")
    region: str
    unit: Literal["vcpu"] = "vcpu"
    value: float = Field(gt=0)
    families: list[str] = Field(default_factory=list, description="instance family prefixes it counts (empty: all)")
    capacity_types: list[Literal["on-demand", "spot", "reserved"]] = Field(default_factory=lambda: ["on-demand"])
    clusters: list[str] = Field(min_length=1, description="the clusters running in this account and region")
    lead_time_days: int = Field(ge=0, description="days from filing an increase to having it (an assumption)")
    lead_time_note: str = "assumption: a quota increase request, reviewed by the provider"
    other_usage_vcpu: float = Field(0.0, ge=0, description="vCPU the account runs outside these clusters")
    usage_metric: str | None = Field(None, description="PromQL of the quota's usage (e.g. AWS/Usage ResourceCount)")

    @model_validator(mode="after")
    def _known_region(self) -> "Quota":
        if self.region not in REGIONS[self.cloud]:
            raise ValueError(f"unknown {self.cloud} region {self.region!r}")
        return self

    def counts(self, instance_type: str) -> bool:
        """Whether an instance type is in the families this quota counts."""
        family = instance_family(instance_type)
        return not self.families or any(family.startswith(f.lower()) for f in self.families)


class QuotaCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quotas: list[Quota] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "QuotaCatalog":
        keys = [(q.cloud, q.account, q.region, q.code) for q in self.quotas]
        dupes = sorted({k[3] for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"quota code(s) listed twice for one account and region: {', '.join(dupes)}")
        return self


def instance_family(instance_type: str) -> str:
    """``c6i.2xlarge`` -> ``c6i``; ``n2-standard-2`` -> ``n2``; ``Standard_D2s_v5`` -> ``d2s``
    (lower case; a quota's families are prefixes of it: AWS's standard families are letters)."""
    name = instance_type.lower()
    if name.startswith("standard_"):
        name = name[len("standard_"):]
    return name.split(".")[0].split("-")[0].split("_")[0]


def _share(capacity_type: str, spot_pct: float) -> float:
    return spot_pct / 100 if capacity_type == "spot" else (1 - spot_pct / 100 if capacity_type == "on-demand" else 0.0)


def quota_usage(quota: Quota, inventory: pd.DataFrame, actions: pd.DataFrame, needed: pd.DataFrame,
                shapes: dict, policy_of: PolicyLookup, catalog: Catalog, days: pd.DatetimeIndex,
                as_of: dt.date) -> pd.DataFrame:
    """Daily vCPU the quota will count, as a quantile grid.

    In: inventory (``capacity_type`` per node), the plan's actions (``add-nodes`` rows:
    ``cluster, pool, quantity, instance_type, spot_ratio_pct, needed_by_date, late``),
    ``needed`` (:func:`forecasting.autoscaling.needed_nodes`), the autoscaled pools' shapes,
    ``days`` the horizon's days. Out: ``ts`` and the quantile columns (vCPU)."""
    n = len(days)
    fixed = np.zeros(n)
    q = np.zeros((n, len(QUANTILE_COLUMNS)))
    inv = inventory[inventory["cluster"].isin(quota.clusters)]
    autoscaled = set(zip(needed["cluster"], needed["pool"]))
    for (cluster, pool, tier), g in inv.groupby(["cluster", "pool", "tier"], sort=True):
        p = policy_of(cluster, pool, tier)
        if (cluster, pool) in autoscaled:
            shape = shapes[(cluster, pool)]
            if not quota.counts(shape.instance_type):
                continue
            share = sum(_share(c, p.spot_ratio_pct) for c in quota.capacity_types)
            f = needed[(needed["cluster"] == cluster) & (needed["pool"] == pool)].set_index("ts").reindex(days).ffill().bfill()
            q += f[list(QUANTILE_COLUMNS)].to_numpy(dtype=float) * shape.vcpu * share
            continue
        ctype = g["capacity_type"] if "capacity_type" in g else pd.Series("on-demand", index=g.index)
        for itype, ct in zip(g["instance_type"], ctype):
            if quota.counts(itype) and ct in quota.capacity_types:
                fixed += catalog.instance(itype).vcpu
    adds = actions[(actions["action"] == "add-nodes") & actions["cluster"].isin(quota.clusters)] if len(actions) else actions
    day = pd.DatetimeIndex(days).date
    for a in adds.itertuples():
        if not quota.counts(a.instance_type):
            continue
        share = sum(_share(c, float(a.spot_ratio_pct)) for c in quota.capacity_types)
        start = a.needed_by_date if not a.late else as_of
        fixed += np.where(day >= start, int(a.quantity) * catalog.instance(a.instance_type).vcpu * share, 0.0)
    values = q + (fixed + quota.other_usage_vcpu)[:, None]
    return pd.DataFrame({"ts": days, **{c: values[:, j] for j, c in enumerate(QUANTILE_COLUMNS)}})


QUOTA_COLUMNS = ["code", "name", "cloud", "account", "region", "clusters", "unit", "value", "used_today", "peak_p50",
                 "peak_risk", "crossing_p50_date", "crossing_date", "lead_time_days", "lead_time_note", "file_by_date",
                 "late", "status", "new_value", "risk_pct"]


def quota_runway(quota: Quota, usage: pd.DataFrame, as_of: dt.date, max_late_risk_pct: float) -> dict:
    """When the quota's usage crosses its value, and what to file.

    In: :func:`quota_usage`. The crossing at P50 (``q500``) and at the risk (the first day
    the chance of having crossed exceeds ``max_late_risk_pct``, errors of all days moving
    together); file-by = that crossing minus the lead time, late when today or past; the
    new value covers the horizon's peak at the risk quantile, in whole hundreds of vCPU.
    Out: one row of :data:`QUOTA_COLUMNS`."""
    days = pd.DatetimeIndex(usage["ts"]).date
    p50 = quantile_at(usage, 0.5)
    bound = quantile_at(usage, 1 - max_late_risk_pct / 100)
    p_cross = crossing_probability(usage, quota.value, 1.0)
    hit = np.flatnonzero(p_cross > max_late_risk_pct / 100)
    hit50 = np.flatnonzero(p50 > quota.value)
    crossing = days[hit[0]] if len(hit) else None
    file_by = crossing - dt.timedelta(days=quota.lead_time_days) if crossing else None
    late = bool(file_by is not None and file_by <= as_of)
    before = np.flatnonzero(days < (as_of + dt.timedelta(days=quota.lead_time_days) if late else (crossing or days[-1])))
    risk = float(p_cross[before[-1]]) if len(before) else 0.0
    return {
        "code": quota.code, "name": quota.name, "cloud": quota.cloud, "account": quota.account, "region": quota.region,
        "clusters": ",".join(quota.clusters), "unit": quota.unit, "value": quota.value, "used_today": float(p50[0]),
        "peak_p50": float(p50.max()), "peak_risk": float(bound.max()),
        "crossing_p50_date": days[hit50[0]] if len(hit50) else None, "crossing_date": crossing,
        "lead_time_days": quota.lead_time_days, "lead_time_note": quota.lead_time_note, "file_by_date": file_by,
        "late": late, "status": "red" if late else ("amber" if crossing else "green"),
        "new_value": float(math.ceil(bound.max() / 100) * 100) if crossing else None,
        "risk_pct": 100 * risk if crossing else 100 * float(np.nanmax(p_cross)),
    }
