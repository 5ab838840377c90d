"""The typed configuration: one ``capplan.yaml`` plus the catalogs it names.

Every model forbids unknown keys. :func:`load_config` turns any problem into a
:class:`ConfigError` whose one-line message names the file, the field and what was
expected, e.g. ``capplan.yaml: forecasting.horizon_days: expected an integer, got 'soon'``.
Secrets (SMTP password, Prometheus token) are never in the YAML: the YAML names the
environment variables that hold them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forecasting.events import Event
from forecasting.commitments import CommitmentCatalog
from forecasting.policy import Catalog, Policies
from forecasting.quotas import Quota, QuotaCatalog

from .io.yamlfile import YamlFileError, read_yaml

__all__ = ["ConfigError", "Config", "load_config", "load_events", "load_catalog", "load_yaml", "format_validation_error",
           "load_quotas", "load_commitments", "load_catalogs"]


class ConfigError(ValueError):
    """A configuration or catalog file is missing or invalid. The message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoSource(_Strict):
    nodes: int = Field(400, ge=20, le=200_000)
    clusters: int | None = Field(None, ge=1, le=100)
    seed: int = 7


class PrometheusAuth(_Strict):
    """Names of environment variables holding credentials (never the credentials)."""

    bearer_token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None


#: Node-pool label presets (pipelines/io/sources/presets.py holds the label keys of each).
Preset = Literal["auto", "eks", "gke", "aks", "karpenter", "custom"]


class PrometheusJobs(_Strict):
    """``job`` label values of the scrape jobs; ``auto``: found on the server (the doctor
    says which it chose). ``cadvisor_path`` is the kubelet's cAdvisor ``metrics_path``."""

    kube_state_metrics: str = "auto"
    node_exporter: str = "auto"
    kubelet: str = "auto"
    cadvisor: str = "auto"
    cadvisor_path: str = "auto"


class PrometheusBudget(_Strict):
    """How much load a pull may put on the server. ``preset`` sets the defaults; each field
    given overrides it (``capplan doctor`` shows what the full and the monthly pull would
    cost before anything runs)."""

    preset: Literal["normal", "low_impact"] = Field(
        "normal", description="normal: max_concurrency queries at once, no rate limit; low_impact: one query at a time, "
                              "at most 2M samples/s, requests a tenth of query.max-samples")
    max_concurrency: int | None = Field(None, ge=1, le=64, description="queries at once per server (default: the preset's)")
    samples_per_s: float | None = Field(None, gt=0, description="samples the server may read per second, averaged")
    total_samples: int | None = Field(None, ge=1, description="stop the pull (committed windows kept) past this many samples")


class PrometheusServerEntry(_Strict):
    """One more Prometheus (each cluster with its own): its URL, the clusters it serves
    (default: every value of the cluster label it has) and its own headers; everything else
    is the source's."""

    url: str
    clusters: list[str] = Field(default_factory=list)
    headers: dict[str, str] | None = None


class PrometheusSource(_Strict):
    """Where and how to read Prometheus, Thanos Query or Mimir (see the README section)."""

    url: str = "http://127.0.0.1:9090"
    auth: PrometheusAuth = Field(default_factory=PrometheusAuth)
    verify_tls: bool = True
    ca_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. X-Scope-OrgID for Mimir")
    step: str = "1h"
    timeout_s: float = Field(120.0, gt=0, description="per request; the server is asked to give up a little earlier")
    retries: int = Field(3, ge=0, description="for connection errors and 5xx; a too heavy query is split instead")
    max_concurrency: int = Field(4, ge=1, le=64)
    catalog: Path | None = Field(None, description="metric catalog overriding/adding to the defaults")
    scrape_interval: str = Field("auto", description="how often the exporters are scraped (auto: measured)")
    rate_window: str = Field("auto", description="rate() window; auto: max(peak_resolution, 4 x scrape_interval)")
    peak_resolution: str = Field("5m", description="pool series keep the highest value seen at this resolution within each step")
    clusters: list[str] = Field(default_factory=list, description="only these clusters (default: all)")
    cluster_label: str = "cluster"
    default_cluster: str = Field("default", description="cluster name when the series have no cluster label")
    preset: Preset = Field("auto", description="node-pool labels: auto | eks | gke | aks | karpenter | custom")
    cluster_presets: dict[str, Preset] = Field(default_factory=dict, description="preset per cluster")
    pool_label: str | None = Field(None, description="node label naming the pool (a Kubernetes key or KSM's label_* name)")
    tier_label: str | None = Field(None, description="node label naming the tier (default: the pool)")
    zone_label: str | None = None
    instance_type_label: str | None = None
    capacity_type_label: str | None = Field(None, description="node label whose value 'spot' marks spot nodes")
    max_unlabelled_pct: float = Field(2.0, ge=0, le=100, description="stop when more nodes of a cluster have no pool")
    jobs: PrometheusJobs = Field(default_factory=PrometheusJobs)
    node_exporter_join: str = Field("auto", description="auto | kube_pod_info | internal_ip | label:<name> (e.g. label:instance)")
    replica_label: str | None = Field(None, description="HA replica label (Thanos replicaLabels[]); queries also dedup with max by")
    dedup: bool = Field(True, description="Thanos: dedup=true")
    partial_response: bool = Field(False, description="Thanos: a partial answer is an error, not a silent hole")
    max_source_resolution: str = Field("auto", description="Thanos: auto (1h where raw data is gone), 0s, 5m or 1h")
    max_samples: int | None = Field(None, ge=1000, description="the server's query.max-samples (default: read from its flags)")
    samples_budget_pct: float = Field(50.0, gt=0, le=100, description="share of max_samples one request may use")
    max_query_length: str | None = Field(None, description="longest window per request (e.g. Mimir's max_partial_query_length)")
    max_points_per_request: int = Field(11000, ge=100, le=11000)
    storage: list[Literal["ceph", "pvc"]] = Field(default_factory=lambda: ["ceph", "pvc"],
                                                   description="storage sources to read where they exist")
    drill_down: bool = Field(True, description="also pull node and namespace series")
    on_missing_data: Literal["error", "warn"] = Field(
        "error", description="short history or a pool without data: stop (error) or go on with a red warning (warn)")
    recorded: Literal["auto", "never"] = Field(
        "auto", description="auto: read the kubernetes-mixin / node-mixin recorded series where a cluster has them "
                            "(raw series before they exist); never: raw series only")
    pool_rules: Literal["auto", "never"] = Field(
        "auto", description="auto: with recorded: auto, read capplan's pool rules (`capplan rules`) where a cluster has "
                            "them with the current definitions (one series per pool); never: not them")
    budget: PrometheusBudget = Field(default_factory=PrometheusBudget)
    servers: list[PrometheusServerEntry] = Field(
        default_factory=list, description="several servers (a Prometheus per cluster): pulled at once, each within its "
                                          "own budget; default: url alone")

    def per_server(self) -> list["PrometheusSource"]:
        """One source per server: ``url`` alone, or each of ``servers`` (URL, clusters and
        headers replaced, everything else shared)."""
        if not self.servers:
            return [self]
        return [self.model_copy(update={"url": s.url, "clusters": s.clusters or self.clusters, "servers": [],
                                        "headers": self.headers if s.headers is None else s.headers})
                for s in self.servers]


class FileSource(_Strict):
    path: Path | None = None
    inventory: Path | None = Field(None, description="node inventory CSV (default: the last stored inventory)")


class Source(_Strict):
    kind: Literal["demo", "prometheus", "file"] = "demo"
    demo: DemoSource = Field(default_factory=DemoSource)
    prometheus: PrometheusSource = Field(default_factory=PrometheusSource)
    file: FileSource = Field(default_factory=FileSource)


class StoreSettings(_Strict):
    path: Path = Path("data/capplan.duckdb")


class Forecasting(_Strict):
    horizon_days: int = Field(180, ge=7, le=730)
    history_days: int = Field(180, ge=14, le=1095)
    model: str = "auto"
    level_pct: float = Field(80.0, gt=50, lt=100)
    workers: int | None = Field(None, ge=1, description="processes for the forecast fan-out (default: all cores)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from forecasting.models import MODELS

        if v != "auto" and v not in MODELS:
            raise ValueError(f"expected auto or one of {', '.join(MODELS)}, got {v!r}")
        return v


class Catalogs(_Strict):
    events: Path = Path("catalogs/events.yaml")
    instances: Path = Path("catalogs/instances.yaml")
    quotas: Path | None = Field(None, description="cloud quotas shared by pools (docs/AUTOSCALING.md)")
    commitments: Path | None = Field(None, description="savings plans, reserved instances and what can be bought")


class Report(_Strict):
    dir: Path = Path("reports")
    title: str = "Capacity plan"
    max_charts: int = Field(400, ge=1)


class Email(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    sender: str = "capplan@localhost"
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(2.0, ge=0)


class Executor(_Strict):
    dask_address: str | None = None


class Config(_Strict):
    """The whole ``capplan.yaml``. Relative paths are relative to the YAML's folder."""

    as_of: dt.date | None = Field(None, description="plan date; default today")
    source: Source = Field(default_factory=Source)
    store: StoreSettings = Field(default_factory=StoreSettings)
    forecasting: Forecasting = Field(default_factory=Forecasting)
    policies: Policies = Field(default_factory=Policies)
    catalogs: Catalogs = Field(default_factory=Catalogs)
    report: Report = Field(default_factory=Report)
    email: Email = Field(default_factory=Email)
    executor: Executor = Field(default_factory=Executor)
    base_dir: Path = Field(Path("."), exclude=True)
    config_file: Path = Field(Path("capplan.yaml"), exclude=True)

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the config file's folder."""
        return p if p.is_absolute() else (self.base_dir / p)


def format_validation_error(where: str, exc: ValidationError, prefix: str = "") -> str:
    """One line: ``file: field.path: what was expected (got ...)``."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in (prefix, *err["loc"]) if x != "")
        msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            msg += f", got {err['input']!r}"
        parts.append(f"{loc or '(top level)'}: {msg}")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return f"{where}: " + "; ".join(parts) + more


def load_yaml(path: Path) -> Any:
    """Read a YAML file through capplan's limited safe loader (:mod:`pipelines.io.yamlfile`:
    size, UTF-8, nesting depth and alias expansion bounded); a missing, unreadable, unparsable
    or oversized file is a :class:`ConfigError` of one line naming the file."""
    try:
        return read_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path | str, overrides: dict | None = None) -> Config:
    """Load and validate ``capplan.yaml`` (with ``overrides`` merged in, e.g. from
    command-line options) and check that the catalogs it names exist."""
    path = Path(path)
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    data = _merge(data, overrides or {})
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    cfg.base_dir = path.parent
    cfg.config_file = path
    for field in ("events", "instances", "quotas", "commitments"):
        if getattr(cfg.catalogs, field) is None:
            continue
        p = cfg.path(getattr(cfg.catalogs, field))
        if not p.exists():
            raise ConfigError(f"{path}: catalogs.{field}: file not found: {p}")
    return cfg


def load_events(path: Path) -> list[Event]:
    """The events catalog: ``events: [ {name, kind, start, end, uplift_pct, scope...} ]``."""
    data = load_yaml(path) or {}
    if not isinstance(data, dict) or not isinstance(data.get("events", []), list):
        raise ConfigError(f"{path}: expected a top-level key 'events' holding a list")
    events = []
    for i, raw in enumerate(data.get("events") or []):
        name = raw.get("name", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        if isinstance(raw, dict) and isinstance(raw.get("scope"), str):
            raw = {**raw, "scope": {"level": raw["scope"]}}
        try:
            events.append(Event.model_validate(raw))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(f"{path}: event {name!r}", exc, prefix=f"events[{i}]")) from None
    names = [e.name for e in events]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: event name(s) used twice: {', '.join(dupes)}")
    extra = set(data) - {"events"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(extra))}; expected 'events'")
    return events


def load_catalog(path: Path) -> Catalog:
    """The instance and storage catalog with prices."""
    data = load_yaml(path) or {}
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        entry = ""
        if len(loc) >= 2 and loc[0] in ("instance_types", "storage_types") and isinstance(loc[1], int):
            items = data.get(loc[0]) or []
            if loc[1] < len(items) and isinstance(items[loc[1]], dict):
                entry = f" entry {items[loc[1]].get('name', loc[1])!r}"
        raise ConfigError(format_validation_error(f"{path}:{entry}" if entry else str(path), exc)) from None


def _entry_error(path: Path, data: dict, key: str, exc: ValidationError, name_field: str) -> ConfigError:
    """One line naming the file, the entry (by its name or code) and the field."""
    loc = exc.errors()[0]["loc"]
    entry = ""
    if len(loc) >= 2 and loc[0] == key and isinstance(loc[1], int):
        items = data.get(key) or []
        if loc[1] < len(items) and isinstance(items[loc[1]], dict):
            entry = f" {key[:-1]} {items[loc[1]].get(name_field, loc[1])!r}"
    return ConfigError(format_validation_error(f"{path}:{entry}" if entry else str(path), exc))


def load_quotas(path: Path | None) -> list[Quota]:
    """The quotas catalog (``quotas: [ {code, cloud, account, region, value, ...} ]``); none without a file."""
    if path is None:
        return []
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a top-level key 'quotas' holding a list")
    try:
        return QuotaCatalog.model_validate(data).quotas
    except ValidationError as exc:
        raise _entry_error(path, data, "quotas", exc, "code") from None


def load_commitments(path: Path | None) -> CommitmentCatalog | None:
    """The commitments catalog (``offers`` and ``commitments``); None without a file."""
    if path is None:
        return None
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected the keys 'offers' and 'commitments'")
    try:
        return CommitmentCatalog.model_validate(data)
    except ValidationError as exc:
        raise _entry_error(path, data, "commitments", exc, "name") from None


def load_catalogs(cfg: Config) -> tuple[Catalog, list[Event], list[Quota], CommitmentCatalog | None]:
    """Every catalog the config names, checked: instances, events, quotas and commitments
    (the last two when configured). A mistake is a :class:`ConfigError` naming the file,
    the entry and the field."""
    optional = {f: cfg.path(getattr(cfg.catalogs, f)) if getattr(cfg.catalogs, f) else None for f in ("quotas", "commitments")}
    catalog = load_catalog(cfg.path(cfg.catalogs.instances))
    check_policy_names(cfg, catalog)
    return (catalog, load_events(cfg.path(cfg.catalogs.events)), load_quotas(optional["quotas"]),
            load_commitments(optional["commitments"]))


def check_policy_names(cfg: Config, catalog: Catalog, source: str | None = None) -> None:
    """Every instance and storage type the policies name is in the catalog, else a
    :class:`ConfigError` naming the config file (or ``source``: a what-if scenario), the
    field, and the catalog line to add."""
    known = {"instance": {t.name for t in catalog.instance_types}, "storage": {t.name for t in catalog.storage_types}}
    for where, kind, name in cfg.policies.catalog_names():
        if name in known[kind]:
            continue
        line = (f"- {{name: {name}, vcpu: <cores>, memory_gib: <GiB>, max_pods: 110, on_demand_hourly_usd: <price>}}"
                if kind == "instance" else f"- {{name: {name}, price_per_gb_month_usd: <price>, increment_gib: 1024}}")
        section = "instance_types" if kind == "instance" else "storage_types"
        raise ConfigError(f"{source or cfg.config_file}: policies.{where}: {kind} type {name!r} is not in "
                          f"{cfg.path(cfg.catalogs.instances)} (known: {', '.join(sorted(known[kind])) or 'none'}); "
                          f"add it under {section}: {line}")
