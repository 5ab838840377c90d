"""Typed capacity policies and the instance/storage catalog (pydantic, ``extra="forbid"``).

These are the typed inputs of the pure capacity math; ``pipelines.config`` loads them
from YAML and turns validation errors into messages that name the file and field.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Resource", "PoolPolicy", "PolicyMatch", "PolicyOverride", "Policies", "InstanceType",
    "StorageType", "Catalog", "CatalogError", "HOURS_PER_MONTH", "UNKNOWN_INSTANCE_TYPE",
]

#: Hours in a month for monthly costs and rates (365 x 24 / 12).
HOURS_PER_MONTH = 730

#: The instance type of a node whose labels do not say it.
UNKNOWN_INSTANCE_TYPE = "unknown"

#: Usual node memory sizes (GiB), for the catalog lines suggested for unknown types.
_MEMORY_SIZES_GIB = (0.5, 1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)

Resource = Literal["cpu", "memory", "pods", "storage"]
Pct = float


class CatalogError(ValueError):
    """An entry of the instance catalog is unknown or invalid; the message names it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolPolicy(_Strict):
    """How one pool is planned. Thresholds and ratios are percentages."""

    threshold_pct: Pct = Field(70.0, gt=0, le=100, description="compute trigger threshold")
    storage_threshold_pct: Pct = Field(75.0, gt=0, le=100, description="storage trigger threshold")
    thresholds_pct: dict[Resource, Pct] = Field(default_factory=dict, description="per-resource overrides")
    redundancy_k: int = Field(2, ge=0, description="N+k: failure units the pool must survive losing")
    failure_unit: Literal["node", "zone"] = "node"
    lead_time_days: int = Field(30, ge=0, description="procurement, approval and deployment")
    spot_ratio_pct: Pct = Field(0.0, ge=0, le=100)
    reserved_ratio_pct: Pct = Field(0.0, ge=0, le=100)
    reserved_term_years: int = Field(1, ge=1, le=3, description="term of the reserved-instance commitment")
    instance_types: list[str] = Field(default_factory=list, description="allowed alternatives to the pool's own type")
    storage_type: str = "gp3"
    demand_bound: Literal["risk", "upper", "point"] = Field(
        "risk", description="risk: order so that P(demand crosses the threshold before new capacity arrives) is at "
        "most max_late_risk_pct; upper: the interval's upper bound crosses; point: the point forecast crosses"
    )
    max_late_risk_pct: Pct = Field(10.0, gt=0, lt=50, description="accepted chance that an order arrives too late")
    spot_failure: Literal["independent", "together"] = Field(
        "independent", description="together: a pool's spot nodes of one instance type are one failure unit in N+k "
        "(a spot reclaim takes many at once)"
    )
    temporary_event_max_days: int = Field(
        30, ge=0, description="an action needed only because of an event at most this long is temporary: rent, don't buy"
    )
    rent_lead_time_days: int = Field(2, ge=0, description="days to provision rented on-demand capacity")
    pool_kind: Literal["auto", "fixed", "autoscaled"] = Field(
        "auto", description="fixed: planned by adding nodes; autoscaled: grows with demand up to its limits "
        "(Karpenter NodePool, cluster-autoscaler node group): planned by raising limits (docs/AUTOSCALING.md); "
        "auto: autoscaled when the source reports limits for the pool, else fixed"
    )
    provisioner: Literal["karpenter", "cluster-autoscaler", "gke-nap", "other"] = Field(
        "karpenter", description="what scales an autoscaled pool (the form of the raise-limit patch)"
    )
    limits: dict[Literal["cpu", "memory_gib", "nodes"], float] = Field(
        default_factory=dict, description="an autoscaled pool's limits when no metric reports them: cpu (cores of "
        "instance capacity), memory_gib, nodes"
    )
    limit_lead_time_days: int = Field(7, ge=0, description="days to raise an autoscaled pool's limit (change and approval)")

    @model_validator(mode="after")
    def _ratios(self) -> "PoolPolicy":
        if self.spot_ratio_pct + self.reserved_ratio_pct > 100:
            raise ValueError(
                f"spot_ratio_pct + reserved_ratio_pct is {self.spot_ratio_pct + self.reserved_ratio_pct}; at most 100"
            )
        for res, v in self.limits.items():
            if v <= 0:
                raise ValueError(f"limits.{res} must be positive, got {v}")
        for res, v in self.thresholds_pct.items():
            if not 0 < v <= 100:
                raise ValueError(f"thresholds_pct.{res} must be in (0, 100], got {v}")
        return self

    def threshold_for(self, resource: str) -> float:
        """The trigger threshold (%) for one resource."""
        if resource in self.thresholds_pct:
            return self.thresholds_pct[resource]  # type: ignore[index]
        return self.storage_threshold_pct if resource == "storage" else self.threshold_pct


class PolicyMatch(_Strict):
    """Which pools an override applies to; every given field must match."""

    cluster: str | None = None
    pool: str | None = None
    tier: str | None = None


class PolicyOverride(_Strict):
    """Changes to the default policy for the pools that ``match`` selects."""

    match: PolicyMatch
    set: dict[str, object] = Field(description="PoolPolicy fields to change")

    @model_validator(mode="after")
    def _known_fields(self) -> "PolicyOverride":
        unknown = sorted(set(self.set) - set(PoolPolicy.model_fields))
        if unknown:
            raise ValueError(f"unknown policy field(s) {', '.join(unknown)}; expected some of {', '.join(PoolPolicy.model_fields)}")
        return self


class Policies(_Strict):
    """The default policy and ordered overrides (later ones win)."""

    default: PoolPolicy = Field(default_factory=PoolPolicy)
    overrides: list[PolicyOverride] = Field(default_factory=list)

    @model_validator(mode="after")
    def _overrides_valid(self) -> "Policies":
        for i, o in enumerate(self.overrides):
            try:
                PoolPolicy.model_validate({**self.default.model_dump(), **o.set})
            except ValueError as exc:
                raise ValueError(f"overrides[{i}]: {exc}") from None
        return self

    def catalog_names(self) -> list[tuple[str, str, str]]:
        """Every catalog name the policies use: ``(field path, "instance"|"storage", name)``,
        e.g. ``("overrides[0].set.instance_types[1]", "instance", "m6i.4xlarge")``."""
        named: list[tuple[str, dict]] = [("default", self.default.model_dump(exclude_unset=True))]
        named += [(f"overrides[{i}].set", o.set) for i, o in enumerate(self.overrides)]
        out = []
        for where, values in named:
            for j, name in enumerate(values.get("instance_types") or []):
                out.append((f"{where}.instance_types[{j}]", "instance", str(name)))
            if "storage_type" in values:
                out.append((f"{where}.storage_type", "storage", str(values["storage_type"])))
        return out

    def for_pool(self, cluster: str, pool: str, tier: str | None = None) -> PoolPolicy:
        """The effective policy of one pool."""
        values = self.default.model_dump()
        for o in self.overrides:
            m = o.match
            if (m.cluster in (None, cluster)) and (m.pool in (None, pool)) and (m.tier in (None, tier)):
                values.update(o.set)
        return PoolPolicy.model_validate(values)


class InstanceType(_Strict):
    """One purchasable node type. Allocatable fractions say what Kubernetes can schedule."""

    name: str
    vcpu: float = Field(gt=0)
    memory_gib: float = Field(gt=0)
    max_pods: int = Field(110, gt=0)
    local_storage_gib: float = Field(0.0, ge=0)
    on_demand_hourly_usd: float = Field(ge=0)
    spot_discount_pct: Pct = Field(0.0, ge=0, lt=100)
    reserved_discount_pct: Pct = Field(0.0, ge=0, lt=100)
    allocatable_cpu_fraction: float = Field(0.94, gt=0, le=1)
    allocatable_memory_fraction: float = Field(0.90, gt=0, le=1)
    lead_time_days: int | None = Field(None, ge=0)
    free: bool = Field(False, description="the type costs nothing (say so: a price of 0 is otherwise refused as a mistake)")

    @model_validator(mode="after")
    def _priced(self) -> "InstanceType":
        if self.on_demand_hourly_usd == 0 and not self.free:
            raise ValueError(f"{self.name}: on_demand_hourly_usd is 0; give the price, or set free: true if it costs nothing")
        return self

    def allocatable(self) -> dict[str, float]:
        """Allocatable per node, in base units: cores, bytes, pods."""
        return {
            "cpu": self.vcpu * self.allocatable_cpu_fraction,
            "memory": self.memory_gib * self.allocatable_memory_fraction * 2**30,
            "pods": float(self.max_pods),
        }

    def monthly_cost_usd(self, spot_ratio_pct: float, reserved_ratio_pct: float) -> float:
        """Cost of one node for a month (730 h) with the given purchase mix."""
        spot, reserved = spot_ratio_pct / 100, reserved_ratio_pct / 100
        blended = (
            spot * (1 - self.spot_discount_pct / 100)
            + reserved * (1 - self.reserved_discount_pct / 100)
            + (1 - spot - reserved)
        )
        return self.on_demand_hourly_usd * HOURS_PER_MONTH * blended


class StorageType(_Strict):
    """A storage class bought in increments."""

    name: str
    price_per_gb_month_usd: float = Field(ge=0)
    increment_gib: float = Field(1024, gt=0)
    lead_time_days: int | None = Field(None, ge=0)
    free: bool = Field(False, description="the storage costs nothing (a price of 0 is otherwise refused as a mistake)")

    @model_validator(mode="after")
    def _priced(self) -> "StorageType":
        if self.price_per_gb_month_usd == 0 and not self.free:
            raise ValueError(f"{self.name}: price_per_gb_month_usd is 0; give the price, or set free: true if it costs nothing")
        return self


class Catalog(_Strict):
    """Instance types and storage with prices, and the date the prices were taken."""

    prices_as_of: dt.date
    currency: str = "USD"
    source: str = ""
    instance_types: list[InstanceType]
    storage_types: list[StorageType] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "Catalog":
        names = [t.name for t in self.instance_types]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance type(s) listed twice: {', '.join(dupes)}")
        return self

    def instance(self, name: str) -> InstanceType:
        for t in self.instance_types:
            if t.name == name:
                return t
        raise CatalogError(
            f"instance type {name!r} is not in the catalog; known: {', '.join(t.name for t in self.instance_types)}"
        )

    def missing_instance_types(self, inventory) -> tuple[str, str] | None:
        """None when every ``instance_type`` of the inventory (``cluster, pool, node,
        instance_type, cpu_cores, memory_bytes, pods``) is in the catalog; else ``(what,
        lines)``: each missing type with its pools and node count, and catalog lines to
        paste whose sizes are estimated from the nodes' allocatable (the price is the user's)."""
        known = {t.name for t in self.instance_types} | {UNKNOWN_INSTANCE_TYPE}  # no label: not a catalog matter
        missing = inventory[~inventory["instance_type"].isin(known)]
        if missing.empty:
            return None
        what, lines = [], []
        for itype, g in missing.groupby("instance_type", sort=True):
            pools = ", ".join(sorted({f"{c}/{p}" for c, p in zip(g["cluster"], g["pool"])}))
            what.append(f"{itype} ({len(g)} nodes in {pools})")
            # Kubernetes reserves well under a core, and 3-25% of memory: the smallest whole
            # core count and the smallest usual memory size at or above the allocatable.
            vcpu = math.ceil(float(g["cpu_cores"].max()) - 1e-6)
            mem_gib = float(g["memory_bytes"].max()) / 2**30
            mem = next((m for m in _MEMORY_SIZES_GIB if m >= mem_gib), math.ceil(mem_gib))
            pods = int(g["pods"].max()) if float(g["pods"].max()) > 0 else 110
            lines.append(f"  - {{name: {itype}, vcpu: {vcpu}, memory_gib: {mem}, max_pods: {pods}, "
                         "on_demand_hourly_usd: <price>, spot_discount_pct: 0, reserved_discount_pct: 0}")
        return "instance types not in the catalog: " + "; ".join(what), "\n".join(lines)

    def storage(self, name: str) -> StorageType:
        for s in self.storage_types:
            if s.name == name:
                return s
        raise CatalogError(
            f"storage type {name!r} is not in the catalog; known: {', '.join(s.name for s in self.storage_types) or 'none'}"
        )
