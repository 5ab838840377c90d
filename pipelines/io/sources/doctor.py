"""What a Prometheus-compatible server holds, checked before anything heavy is asked.

:func:`inspect` runs at the start of every Prometheus ingest (cheap: status endpoints,
label names and a handful of instant queries) and behind ``capplan doctor`` (which adds a
one-day cost probe of every pool query). It returns a :class:`Setup`: the checks (OK /
WARN / FAIL, each with the fix), and what the queries need: clusters, scrape jobs, the
pool labels of each cluster, the node-exporter join, the inventory, the server's limits,
the scrape interval and the rate window.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import pandas as pd

from ...config import ConfigError, PrometheusSource
from ...domain import HistoryWindow
from .catalog import (POOL_RULE_LABEL, VARIANTS, ClusterSetup, MetricCatalog, build_queries, check_label_name, pool_rules,
                      preferred_variant)
from .mixin_rules import CHART_GROUPS, rule_expr
from .autoscalers import inspect_autoscalers
from .common import INVENTORY_COLUMNS
from .presets import (CONTROL_PLANE_ROLES, PRESETS, PROVIDER_PRESETS, UNLABELLED, NodeLabelPlan, allowlist_snippet,
                      inventory_from_labels, ksm_label, plan_node_labels, provider_of)
from .promapi import (PrometheusError, PromClient, TooHeavy, WindowPlanner, fmt_ts, label_regex,
                     parse_duration)

__all__ = ["Check", "ServerInfo", "Setup", "CostEstimate", "PullEstimate", "inspect", "probe_costs", "REPLICA_LABELS",
           "MONTH_DAYS"]

#: The monthly pull: the days between two monthly runs.
MONTH_DAYS = 30

#: Labels that tell HA Prometheus replicas apart (prometheus-operator's default, Thanos'
#: and Mimir's usual names); never part of a series' identity.
REPLICA_LABELS = ("prometheus_replica", "replica", "__replica__", "rule_replica", "prometheus")
#: (family, metric probed to find its scrape job, default job, default metrics_path)
FAMILY_PROBES = {
    "kube_state_metrics": ("kube_node_info", "kube-state-metrics", None),
    "node_exporter": ("node_memory_MemTotal_bytes", "node-exporter", None),
    "cadvisor": ('container_memory_working_set_bytes{id="/"}', "kubelet", "/metrics/cadvisor"),
    "kubelet": ("kubelet_volume_stats_capacity_bytes", "kubelet", "/metrics"),
    "ceph": ("ceph_pool_metadata", None, None),
}
#: Metrics the default catalog reads: (name, family, what it is for when optional; None: required)
CATALOG_METRICS = [
    ("kube_node_info", "kube_state_metrics", None), ("kube_node_labels", "kube_state_metrics", "node pools"),
    ("kube_node_status_allocatable", "kube_state_metrics", None), ("kube_pod_info", "kube_state_metrics", None),
    ("kube_pod_status_phase", "kube_state_metrics", None),
    ("kube_pod_container_resource_requests", "kube_state_metrics", None),
    ("kube_persistentvolumeclaim_info", "kube_state_metrics", "PVC storage by class"),
    ("node_cpu_seconds_total", "node_exporter", "node usage"), ("node_memory_MemTotal_bytes", "node_exporter", "node usage"),
    ("node_memory_MemAvailable_bytes", "node_exporter", "node usage"),
    ("container_cpu_usage_seconds_total", "cadvisor", "container usage"),
    ("container_memory_working_set_bytes", "cadvisor", "container usage"),
    ("kubelet_volume_stats_used_bytes", "kubelet", "PVC storage by class"),
    ("kubelet_volume_stats_capacity_bytes", "kubelet", "PVC storage by class"),
    ("ceph_pool_stored", "ceph", "Ceph pools"), ("ceph_pool_max_avail", "ceph", "Ceph pools"),
    ("ceph_pool_metadata", "ceph", "Ceph pools"),
]


@dataclass
class Check:
    """One line of the doctor's table."""

    check: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""
    cluster: str = ""
    #: Shown in the report's data-quality section when the run goes on.
    report: bool = False


@dataclass
class ServerInfo:
    kind: str = "unknown"  # prometheus | thanos | mimir | unknown
    version: str = ""
    max_samples: int = 50_000_000
    max_samples_source: str = "default"
    timeout_s: float | None = None
    retention_days: float | None = None
    sample_stats: bool = True


@dataclass
class CostEstimate:
    """A one-day probe of one query: what it costs the server per day. ``variant``: raw or
    recorded; ``group``: the logical series (raw entry) it computes; ``days_used``: the days
    of the window the pull reads with it."""

    query: str
    cluster: str
    peak_per_day: int | None
    total_per_day: int | None
    eval_s_per_day: float | None
    steps_per_request: int
    requests_for_window: int
    variant: str = "raw"
    group: str = ""
    days_used: float = 0.0


@dataclass
class PullEstimate:
    """What a pull of ``days`` days would cost, from the probes (summed over clusters)."""

    name: str  # full | monthly
    days: float
    samples: float
    server_s: float
    requests: int
    #: the same pull from raw series only (what the recorded series save)
    raw_samples: float
    raw_server_s: float


@dataclass
class Setup:
    server: ServerInfo
    clusters: list[ClusterSetup]
    inventory: pd.DataFrame
    scrape_s: int
    rate_window_s: int
    peak_s: int
    checks: list[Check] = field(default_factory=list)
    earliest: dict[str, float | None] = field(default_factory=dict)
    raw_earliest: float | None = None
    estimates: list[CostEstimate] = field(default_factory=list)
    pulls: list[PullEstimate] = field(default_factory=list)
    #: cluster -> what was found in place ("kube-state-metrics found, 12 nodes; ...")
    found: dict[str, str] = field(default_factory=dict)
    #: the time the checks looked at (the plan date's midnight, or the latest data when
    #: nothing is there yet: a Prometheus started today)
    probed_at: float | None = None
    #: asked_days, held_days, since (the oldest data of the clusters; see ``_history``)
    history: dict = field(default_factory=dict)

    def add(self, check: str, status: str, detail: str, fix: str = "", cluster: str = "", report: bool = False) -> None:
        self.checks.append(Check(check, status, detail, fix, cluster, report))

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    def as_dict(self) -> dict:
        return {"server": asdict(self.server), "checks": [asdict(c) for c in self.checks],
                "clusters": [{"name": c.name, "jobs": c.jobs, "pool_labels": c.pool_labels, "node_exporter_join": c.ne_join,
                              "pool_rules": {g: fmt_ts(t) for g, t in sorted(c.pool_rules.items())}}
                             for c in self.clusters],
                "scrape_interval_s": self.scrape_s, "rate_window_s": self.rate_window_s, "peak_resolution_s": self.peak_s,
                "estimates": [asdict(e) for e in self.estimates], "pulls": [asdict(p) for p in self.pulls],
                "found": self.found, "probed_at": fmt_ts(self.probed_at) if self.probed_at else None,
                "history": self.history}


class _Ctx:
    """What the checks share: the client, the source settings and the probe time."""

    def __init__(self, client: PromClient, src: PrometheusSource, window: HistoryWindow, step_s: int):
        self.client, self.src, self.window, self.step_s = client, src, window, step_s
        self.at = window.end.timestamp()
        self.lookback = f"{max(step_s, 3600)}s"
        self.c = check_label_name(src.cluster_label, "cluster_label")

    def instant(self, name: str, expr: str) -> list[dict]:
        return self.client.instant(f"doctor:{name}", expr, self.at)

    def cluster_matcher(self, names: list[str | None]) -> str:
        values = [n for n in names if n is not None]
        if not values:
            return ""
        return f'{self.c}=~"{label_regex(values)}",'


def _fmt_n(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _answers_queries(client: PromClient) -> bool:
    """Whether a server without buildinfo still answers an instant query (Cortex, Amazon
    Managed Prometheus) or is no Prometheus API at all (a web server, a UI's address)."""
    try:
        client.call("GET", "/api/v1/query", {"query": "vector(1)"}, "query 'doctor:api'")
        return True
    except PrometheusError as exc:
        if exc.status is None or exc.status in (401, 403):  # no answer (refused, DNS), or refused credentials: said as it is
            raise
        return False


def _server(ctx: _Ctx, setup: Setup) -> None:
    client, src = ctx.client, ctx.src
    info = client.status("buildinfo")
    s = setup.server
    if info is None and not _answers_queries(client):
        setup.add("server", "FAIL", f"{src.url}: not a Prometheus API (GET /api/v1/status/buildinfo returned "
                  f"{client.missing.get('buildinfo', '?')})", "set source.prometheus.url to the Prometheus, Thanos Query "
                  "or Mimir query API (Mimir: .../prometheus)")
        return
    if info is None:
        setup.add("server", "WARN", f"{src.url} has no /api/v1/status/buildinfo (Cortex or Amazon Managed Prometheus?); "
                  "capplan assumes a Prometheus query API")
    else:
        s.version = str(info.get("version", ""))
        if "mimir" in str(info.get("application", "")).lower():
            s.kind = "mimir"
        elif s.version.startswith("0.") and client.get_raw("/api/v1/stores").status_code == 200:
            s.kind = "thanos"
        else:
            s.kind = "prometheus"
        m = re.match(r"(\d+)\.(\d+)", s.version)
        if s.kind == "prometheus" and m and (int(m.group(1)), int(m.group(2))) < (2, 35):
            s.sample_stats = False  # samples stats arrived in 2.35 (docs/research 8.5)
        setup.add("server", "OK", f"{s.kind} {s.version}" + (" (no sample statistics before 2.35: windows are sized by "
                                                             "splitting)" if not s.sample_stats else ""))
    if s.kind == "thanos":
        client.query_params = {"dedup": str(src.dedup).lower(), "partial_response": str(src.partial_response).lower()}
        if src.replica_label:
            client.query_params["replicaLabels[]"] = check_label_name(src.replica_label, "replica_label")
    flags = client.status("flags")
    parts = []
    if src.max_samples:
        s.max_samples, s.max_samples_source = src.max_samples, "source.prometheus.max_samples"
    elif flags and str(flags.get("query.max-samples", "")).isdigit():
        s.max_samples, s.max_samples_source = int(flags["query.max-samples"]), "server flag"
    parts.append(f"query.max-samples {s.max_samples:,} ({s.max_samples_source})")
    if flags and flags.get("query.timeout"):
        try:
            s.timeout_s = float(parse_duration(str(flags["query.timeout"])))
            parts.append(f"query.timeout {flags['query.timeout']}")
        except ConfigError:  # not a Prometheus duration: the client's own timeout applies
            parts.append(f"query.timeout {flags['query.timeout']} (not read)")
    if flags and "storage.tsdb.retention.time" in flags:
        text = str(flags["storage.tsdb.retention.time"])
        if text in ("0s", "") and str(flags.get("storage.tsdb.retention.size", "0B")) in ("0B", "0", ""):
            text = "15d"  # the flag reads 0s when unset; Prometheus' default is 15d (docs/research 8.3)
        if text not in ("0s", ""):
            s.retention_days = parse_duration(text) / 86400
            parts.append(f"retention {text}")
    history = ctx.window.days
    if flags is None:
        setup.add("limits", "WARN", "the server does not publish its flags (/api/v1/status/flags): assuming "
                  f"query.max-samples {s.max_samples:,}", "set source.prometheus.max_samples and max_query_length to the "
                  "server's limits (Mimir: -querier.max-samples, -querier.max-partial-query-length)")
    elif s.retention_days is not None and s.retention_days < history - 1:
        setup.add("limits", "FAIL", "; ".join(parts) + f": the server keeps {s.retention_days:g} days, the plan needs {history}",
                  "raise the retention (kube-prometheus-stack: prometheus.prometheusSpec.retention: "
                  f"{history + 20}d, the chart's default is 10d) or point capplan at Thanos or Mimir, which keep the history",
                  report=True)
    else:
        setup.add("limits", "OK", "; ".join(parts))


def _clusters(ctx: _Ctx, setup: Setup) -> list[ClusterSetup]:
    src, c = ctx.src, ctx.c
    expr = f"count by ({c}) (count by ({c}, node) (last_over_time(kube_node_info[{ctx.lookback}])))"
    rows = ctx.instant("clusters", expr)
    recent = float(math.floor(time.time()))
    if not rows and recent > ctx.at + 60:
        # Nothing in the hour before the plan date (as_of, midnight): a Prometheus started
        # today has its data after it. Look at the last hour before now, so the checks say
        # what is scraped, and the history check says how short the history is.
        rows = ctx.client.instant("doctor:clusters", expr, recent)
        if rows:
            setup.add("probe time", "WARN", f"nothing in the hour before the plan date ({fmt_ts(ctx.at)}); the checks "
                      f"look at the last hour before now ({fmt_ts(recent)}) instead: the data begins after the plan date",
                      "see the history check")
            ctx.at = recent
    setup.probed_at = ctx.at
    if not rows:
        setup.add("clusters", "FAIL", f"no kube_node_info in the hour before {fmt_ts(ctx.at)}: kube-state-metrics is not "
                  "scraped, or the plan date (as_of) is after the newest data",
                  "scrape kube-state-metrics (kube-prometheus-stack does by default) or check as_of")
        return []
    found = {r["metric"].get(c): int(float(r["value"][1])) for r in rows}
    keys = ctx.client.labels("kube_node_info", ctx.at - 3600, ctx.at)
    if None in found and len(found) == 1:
        others = [k for k in keys if "cluster" in k.lower() and k != c]
        if others:
            setup.add("clusters", "WARN", f"the series have no {c!r} label but have {', '.join(others)}",
                      f"set source.prometheus.cluster_label: {others[0]} (one cluster is assumed until then)")
    names = sorted(found, key=lambda v: (v is None, v or ""))
    if src.clusters:
        missing = [x for x in src.clusters if x not in found]
        if missing:
            setup.add("clusters", "FAIL", f"cluster(s) {', '.join(missing)} not found; {c!r} has: "
                      f"{', '.join(str(n) for n in names)}", "fix source.prometheus.clusters")
        names = [n for n in names if n in src.clusters]
    out = [ClusterSetup(n if n is not None else src.default_cluster, n, c) for n in names]
    setup.add("clusters", "OK", "kube-state-metrics found: " + ", ".join(f"{cs.name} ({found[cs.label_value]} nodes)"
                                                                         for cs in out))
    return out


def _jobs(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup]) -> None:
    src, c = ctx.src, ctx.c
    sel = ctx.cluster_matcher([cs.label_value for cs in clusters])
    configured = {"kube_state_metrics": src.jobs.kube_state_metrics, "node_exporter": src.jobs.node_exporter,
                  "kubelet": src.jobs.kubelet, "cadvisor": src.jobs.cadvisor}
    by_cluster: dict[str | None, dict[str, dict[str, str]]] = defaultdict(dict)
    for family, (metric, default_job, default_path) in FAMILY_PROBES.items():
        name, _, extra = metric.partition("{")
        expr = f"count by ({c}, job, metrics_path) (last_over_time({name}{{{sel}{extra.rstrip('}')}}}[{ctx.lookback}]))"
        found: dict[str | None, list[tuple[str | None, str | None, int]]] = defaultdict(list)
        for r in ctx.instant(f"jobs:{family}", expr):
            m = r["metric"]
            found[m.get(c)].append((m.get("job"), m.get("metrics_path"), int(float(r["value"][1]))))
        want = configured.get(family, "auto")
        path_want = src.jobs.cadvisor_path if family == "cadvisor" else "auto"
        for cs in clusters:
            options = found.get(cs.label_value, [])
            if family == "ceph":
                if options:
                    by_cluster[cs.label_value][family] = {}
                continue
            if want != "auto":
                options = [o for o in options if o[0] == want]
            if path_want != "auto":
                options = [o for o in options if o[1] == path_want]
            if not options:
                continue
            best = sorted(options, key=lambda o: (o[0] != default_job, o[1] != default_path, -o[2]))[0]
            m = {"job": best[0]} if best[0] else {}
            if best[1]:
                m["metrics_path"] = best[1]
            by_cluster[cs.label_value][family] = m
    names = {"kube_state_metrics": "kube-state-metrics", "node_exporter": "node-exporter", "cadvisor": "cAdvisor",
             "kubelet": "kubelet volume stats", "ceph": "Ceph"}
    for cs in clusters:
        cs.jobs = by_cluster.get(cs.label_value, {})
        shown = "; ".join(f"{names[f]}: {', '.join(f'{k}={v}' for k, v in m.items()) or 'found'}" for f, m in cs.jobs.items())
        if "kube_state_metrics" not in cs.jobs:
            setup.add("scrape jobs", "FAIL", f"no kube-state-metrics job found ({shown or 'nothing found'})",
                      "check source.prometheus.jobs.kube_state_metrics", cs.name)
        elif "node_exporter" not in cs.jobs and "cadvisor" not in cs.jobs:
            setup.add("scrape jobs", "FAIL", f"neither node-exporter nor the kubelet's cAdvisor found ({shown}): no usage",
                      "scrape node-exporter, or set source.prometheus.jobs.node_exporter / cadvisor", cs.name)
        elif "node_exporter" not in cs.jobs:
            setup.add("scrape jobs", "WARN", f"{shown}; no node-exporter: pool usage comes from cAdvisor containers "
                      "(system daemons not counted)", "deploy node-exporter (kube-prometheus-stack does by default)", cs.name)
        else:
            setup.add("scrape jobs", "OK", shown, cluster=cs.name)


def _metrics(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup]) -> dict[str, list[str]]:
    sel = ctx.cluster_matcher([cs.label_value for cs in clusters])
    keys: dict[str, list[str]] = {}
    for metric, family, optional in CATALOG_METRICS:
        found = ctx.client.labels(f"{metric}{{{sel}}}", ctx.at - max(ctx.step_s, 3600), ctx.at)
        keys[metric] = found
        if not found:
            if metric == "kube_node_labels":
                continue  # the pool-label check says what to do
            if optional:  # the scrape-jobs and storage checks say what is missing as a whole
                setup.add(f"metric {metric}", "OK", f"no series (optional: {optional})")
            else:
                setup.add(f"metric {metric}", "FAIL", "no series", "scrape kube-state-metrics v2")
            continue
        shown = [k for k in found if k != "__name__"]
        status, fix = "OK", ""
        if metric == "kube_pod_info" and "exported_namespace" in found:
            status, fix = "FAIL", ("kube-state-metrics is scraped with honor_labels false (namespace/pod hold the "
                                   "exporter's own): set honorLabels: true on its ServiceMonitor")
        if metric.startswith("container_") and "pod" not in found and "pod_name" in found:
            status, fix = "WARN", "cAdvisor labels pod_name/container_name (Kubernetes < 1.16) are not supported"
        setup.add(f"metric {metric}", status, "labels: " + ", ".join(shown), fix)
    return keys


def _merge_labels(series: list[dict], cluster_label: str) -> tuple[dict[str, dict[str, str]], dict[str, set]]:
    """node -> its label_* values (non-empty, merged over duplicates); node -> the distinct
    sources (label sets without replica labels) that export it."""
    labels: dict[str, dict[str, str]] = defaultdict(dict)
    sources: dict[str, set] = defaultdict(set)
    for r in series:
        m = r["metric"]
        node = m.get("node")
        if not node:
            continue
        for k, v in m.items():
            if k.startswith("label_") and v:
                labels[node].setdefault(k, v)
        ident = tuple(sorted((k, v) for k, v in m.items() if k not in REPLICA_LABELS and not k.startswith("label_")
                             and k not in ("__name__", cluster_label)))
        sources[node].add(ident)
    return labels, sources


def _inventory(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup]) -> pd.DataFrame:
    src, c, lb = ctx.src, ctx.c, ctx.lookback
    frames = []
    for cs in clusters:
        if "kube_state_metrics" not in cs.jobs:
            continue
        k = cs.selector("kube_state_metrics")
        raw = ctx.instant("inventory:labels", f"last_over_time(kube_node_labels{{{k}}}[{lb}])")
        info = ctx.instant("inventory:info", f"max by ({c}, node, provider_id) (last_over_time(kube_node_info{{{k}}}[{lb}]))")
        alloc = ctx.instant("inventory:allocatable", f'max by ({c}, node, resource) (last_over_time('
                            f'kube_node_status_allocatable{{{k}resource=~"cpu|memory|pods|ephemeral_storage"}}[{lb}]))')
        roles = ctx.instant("inventory:roles", f'max by ({c}, node) (last_over_time(kube_node_role{{{k}role=~"'
                            + "|".join(CONTROL_PLANE_ROLES) + f'"}}[{lb}]))')
        control_plane = {r["metric"]["node"] for r in roles if r["metric"].get("node")}
        cs.control_plane = bool(control_plane)
        labels, sources = _merge_labels(raw, c)
        nodes = {r["metric"]["node"] for r in info if r["metric"].get("node")} | set(labels)
        node_labels = {n: labels.get(n, {}) for n in nodes}
        providers = [p for r in info if (p := provider_of(r["metric"].get("provider_id", "")))]
        a: dict[str, dict[str, float]] = defaultdict(dict)
        for r in alloc:
            a[r["metric"].get("node", "")][r["metric"].get("resource", "")] = float(r["value"][1])
        preset = src.cluster_presets.get(cs.name, src.preset)
        plan = plan_node_labels(cs.name, node_labels, preset, src.pool_label, src.instance_type_label, providers,
                                control_plane)
        cs.pool_labels = plan.pool_labels
        custom = {"pool": src.pool_label, "tier": src.tier_label, "zone": src.zone_label,
                  "instance_type": src.instance_type_label, "capacity_type": src.capacity_type_label}
        inv = inventory_from_labels(cs.name, node_labels, a, preset, custom, control_plane, set(plan.virtual))
        frames.append(inv)
        _pool_checks(setup, cs, plan, inv, raw, custom, src.max_unlabelled_pct)
        dupes = {n: s for n, s in sources.items() if len(s) > 1}
        if dupes:
            sample = sorted(dupes)[0]
            who = sorted({dict(i).get("instance") or dict(i).get("pod") or dict(i).get("job") or "?" for i in dupes[sample]})
            setup.add("duplicates", "WARN", f"kube_node_labels: {len(dupes)} of {len(nodes)} nodes are exported "
                      f"{max(len(s) for s in dupes.values())} times (e.g. {sample} from {', '.join(who)}): "
                      "counted once (max by / topk in every join)",
                      "run one kube-state-metrics (replicas: 1, or sharding) and scrape it with one job", cs.name)
        else:
            setup.add("duplicates", "OK", "one kube_node_labels series per node", cluster=cs.name)
        replicas = sorted({f"{k}={v}" for r in raw for k, v in r["metric"].items() if k in REPLICA_LABELS[:4]})
        if replicas:
            setup.add("HA replicas", "OK", f"{', '.join(replicas)}: every query deduplicates with max by (identity labels)"
                      + (" and Thanos dedup=true" if setup.server.kind == "thanos" else ""), cluster=cs.name)
    return pd.concat(frames, ignore_index=True)[INVENTORY_COLUMNS] if frames else pd.DataFrame(columns=INVENTORY_COLUMNS)


def _pool_checks(setup: Setup, cs: ClusterSetup, plan: NodeLabelPlan, inv: pd.DataFrame, raw: list[dict],
                 custom: dict, limit_pct: float) -> None:
    own = [k for prov in plan.providers for name in PROVIDER_PRESETS.get(prov, ()) for k in PRESETS[name].pool]
    shown = [k for k in plan.pool_keys if k in own or plan.preset != "auto" or not own]
    looked = ", ".join(f"{ksm_label(k)} ({k})" for k in shown)
    if len(shown) < len(plan.pool_keys):
        looked += f" (and {len(plan.pool_keys) - len(shown)} pool labels of other providers)"
    found = ", ".join(plan.found) if plan.found else ("no kube_node_labels series at all: kube-state-metrics v2.10+ does "
                                                      "not export it without --metric-labels-allowlist" if not raw
                                                      else "kube_node_labels has no label_* labels (nothing allow-listed)")
    snippet = allowlist_snippet(plan, custom)
    if plan.virtual:
        setup.add("virtual nodes", "WARN", f"{len(plan.virtual)} node(s) have neither a pool label nor an instance type "
                  f"(e.g. {plan.virtual[0]}): virtual or serverless nodes (EKS Fargate, virtual-kubelet) with no capacity "
                  "to buy, left out of the plan; the demand of their pods is not in any pool",
                  f"if they are real nodes, give them a pool label and allow-list it with the instance type:\n{snippet}",
                  cs.name, report=True)
    if plan.unlabelled_pct > limit_pct:
        setup.add("node pools", "FAIL", f"{plan.unlabelled} of {plan.nodes} nodes ({plan.unlabelled_pct:.0f}%) have none of "
                  f"the pool labels looked for: {looked}. Found: {found}",
                  f"allow-list the node labels in kube-state-metrics; kube-prometheus-stack values:\n{snippet}\n"
                  "or set source.prometheus.pool_label to the node label that names your pools", cs.name)
    else:
        pools = inv.groupby("pool").size()
        note = f" ({plan.unlabelled} unlabelled)" if plan.unlabelled else ""
        setup.add("node pools", "OK", f"preset {plan.preset} -> {plan.detected}: {len(pools)} pools on {plan.nodes} nodes"
                  f"{note}: " + ", ".join(f"{p} ({n})" for p, n in pools.items() if p != UNLABELLED), cluster=cs.name)
    if plan.nodes and plan.no_instance_type_pct > limit_pct:
        setup.add("instance types", "FAIL", f"{plan.no_instance_type} of {plan.nodes} nodes have no "
                  "node.kubernetes.io/instance-type label in kube_node_labels: the plan cannot size node orders",
                  f"allow-list it; kube-prometheus-stack values:\n{snippet}", cs.name)
    spot = int((inv["capacity_type"] == "spot").sum()) if len(inv) else 0
    no_zone = int((inv["zone"] == "unknown").sum()) if len(inv) else 0
    if plan.nodes and plan.no_instance_type_pct <= limit_pct:
        setup.add("instance types", "WARN" if no_zone else "OK", f"{inv['instance_type'].nunique()} types; {spot} spot nodes"
                  + (f"; {no_zone} nodes without topology.kubernetes.io/zone (zone failure units see one zone)" if no_zone else ""),
                  f"allow-list the zone label too:\n{snippet}" if no_zone else "", cs.name)


def _join(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup], keys: dict[str, list[str]], inv: pd.DataFrame) -> None:
    """Which node-exporter -> node join matches the most nodes (docs/research 10.1)."""
    c, lb = ctx.c, ctx.lookback
    ne_keys = set(keys.get("node_memory_MemTotal_bytes", []))
    for cs in clusters:
        if "node_exporter" not in cs.jobs:
            continue
        ne, k = cs.selector("node_exporter"), cs.selector("kube_state_metrics")
        known = set(inv[inv["cluster"] == cs.name]["node"])
        base = f"last_over_time(node_memory_MemTotal_bytes{{{ne}}}[{lb}])"
        nodes_ksm = f"max by ({c}, node) (last_over_time(kube_node_info{{{k}}}[{lb}]))"
        candidates: dict[str, str] = {}
        for lab in ("node", "instance", "kubernetes_node", "nodename", "hostname"):
            if lab in ne_keys:
                candidates[f"label:{lab}"] = (
                    f'label_replace(max by ({c}, {lab}) ({base}), "node", "$1", "{lab}", "(.+?)(?::[0-9]+)?")'
                    f" * on ({c}, node) group_left () {nodes_ksm}")
        if {"namespace", "pod"} <= ne_keys:
            pod_node = (f'topk by ({c}, namespace, pod) (1, max by ({c}, namespace, pod, node) '
                        f'(last_over_time(kube_pod_info{{{k}node!=""}}[{lb}])))')
            candidates["kube_pod_info"] = f"max by ({c}, namespace, pod) ({base}) * on ({c}, namespace, pod) group_left (node) {pod_node}"
        if "instance" in ne_keys:
            candidates["internal_ip"] = (
                f'label_replace(max by ({c}, instance) ({base}), "internal_ip", "$1", "instance", "(.+?)(?::[0-9]+)?")'
                f" * on ({c}, internal_ip) group_left (node) topk by ({c}, internal_ip) (1, max by ({c}, internal_ip, node) "
                f"(last_over_time(kube_node_info{{{k}}}[{lb}])))")
        want = ctx.src.node_exporter_join
        if want != "auto":
            candidates = {want: candidates[want]} if want in candidates else {}
            if not candidates:
                setup.add("node-exporter join", "FAIL", f"node_exporter_join {want!r} is not possible: node-exporter series "
                          f"have labels {', '.join(sorted(ne_keys))}", "set node_exporter_join: auto", cs.name)
                continue
        results = {}
        for name, expr in candidates.items():
            rows = ctx.instant(f"join:{name}", f"count by ({c}, node) ({expr})")
            results[name] = {r["metric"].get("node") for r in rows} & known
        order = list(candidates)
        best = max(order, key=lambda n: (len(results[n]), -order.index(n))) if order else None
        if best is None:
            setup.add("node-exporter join", "FAIL", "node-exporter series carry no label to join on (namespace/pod, "
                      "instance or node)", "keep the ServiceMonitor's target labels", cs.name)
            continue
        cs.ne_join = best
        # recorded variants join the same nodes the cheapest way: a label of the series itself
        # reads nothing more, kube_node_info one series per node, kube_pod_info one per pod
        cost = {"internal_ip": 1, "kube_pod_info": 2}
        cs.ne_join_recorded = min((n for n in order if results[n] == results[best]), key=lambda n: (cost.get(n, 0), order.index(n)))
        matched = results[best]
        setup.found[cs.name] = f"node-exporter found, {len(matched)} of {len(known)} nodes"
        tried = ", ".join(f"{n} {len(results[n])}" for n in order)
        pct = 100.0 * len(matched) / len(known) if known else 100.0
        if pct < 100 - ctx.src.max_unlabelled_pct:
            missing = inv[(inv["cluster"] == cs.name) & ~inv["node"].isin(matched)].groupby("pool").size()
            setup.add("node-exporter join", "FAIL", f"node-exporter reaches {len(matched)} of {len(known)} nodes via {best} "
                      f"(tried: {tried}); missing on: " + ", ".join(f"pool {p} ({n} nodes)" for p, n in missing.items()),
                      "run node-exporter on every node (DaemonSet tolerations for tainted pools), or set "
                      "source.prometheus.node_exporter_join", cs.name, report=True)
        else:
            setup.add("node-exporter join", "OK", f"{len(matched)}/{len(known)} nodes via {best} (tried: {tried})",
                      cluster=cs.name)


def _history(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup]) -> None:
    """Since when each cluster has kube_node_info: one point per day over the window, then,
    where the history is short, one per hour over the day it begins (a Prometheus started
    today is found to the hour). Checked with queries rather than the TSDB's own oldest time
    (/api/v1/status/tsdb's minTime covers the head block only, prometheus_tsdb_lowest_timestamp
    needs Prometheus to scrape itself, and neither exists on Thanos Query or Mimir): the data
    the plan reads is what counts."""
    c, w = ctx.c, ctx.window
    sel = ctx.cluster_matcher([cs.label_value for cs in clusters])
    start, end, day = w.start.timestamp(), w.end.timestamp(), 86400
    expr = f"count by ({c}) (last_over_time(kube_node_info{{{sel}}}[{2 * setup.scrape_s}s]))"

    def earliest(extra: dict | None, first: float, last: float, step: int) -> dict[str | None, float]:
        # One point per step (the last scrapes before it): cheap even for 10,000 nodes,
        # where a count_over_time over 180 days would load every sample.
        out: dict[str | None, float] = {}
        pos = first
        while pos <= last:  # 11,000 points per request at most
            b = min(pos + 10000 * step, last)
            ans = ctx.client.query_range("doctor:history", expr, pos, b, step, extra=extra)
            for r in ans.result:
                ts = min(float(t) for t, _ in r["values"]) if r["values"] else None
                key = r["metric"].get(c)
                if ts is not None and (key not in out or ts < out[key]):
                    out[key] = ts
            pos = b + step
        return out

    try:
        found = earliest(None, math.floor(start / day) * day, end, day)
        none = [cs.label_value for cs in clusters if cs.label_value not in found]
        if none:  # no midnight with data (a Prometheus started today): by the hour, from the day before the plan date
            hours = math.ceil((ctx.at - (end - day)) / 3600)
            for k, t in earliest(None, ctx.at - hours * 3600, ctx.at, 3600).items():
                if k in none:
                    found[k] = t
        raw = earliest({"max_source_resolution": "0s"}, math.floor(start / day) * day, end, day) \
            if setup.server.kind == "thanos" else None
    except TooHeavy as exc:
        setup.add("history", "WARN", f"the history probe was too heavy for the server ({exc})")
        return
    for cs in clusters:
        t = found.get(cs.label_value)
        setup.earliest[cs.name] = t
        have = max(0.0, (end - t) / day) if t else 0.0
        held = max(0.0, (ctx.at - t) / day) if t else 0.0
        if t is None or t > start + day:
            after = (f"; all of it after the plan date's midnight, so none is in the window: wait for {w.days} days of "
                     "history, or backfill it" if t and t >= end else "")
            setup.add("history", "FAIL", f"data since {fmt_ts(t) if t else 'never'} ({_days(have)}): too short, the plan "
                      f"asks for {w.days} days ({fmt_ts(start)} .. {fmt_ts(end)}){after}",
                      "keep more history (Prometheus --storage.tsdb.retention.time; kube-prometheus-stack keeps 10d by "
                      "default; or read Thanos/Mimir), or lower forecasting.history_days; source.prometheus.on_missing_data: "
                      "warn goes on with a red warning", cs.name, report=True)
        else:
            setup.add("history", "OK", f"data since {fmt_ts(t)} ({have:.0f} days; {w.days} asked)", cluster=cs.name)
        if raw is not None:
            r = raw.get(cs.label_value)
            if r and r > start + day and ctx.src.max_source_resolution == "auto":
                setup.raw_earliest = max(setup.raw_earliest or 0, r)
                setup.add("downsampling", "WARN", f"raw data only since {fmt_ts(r)}: older windows are read from Thanos' "
                          "1h downsampled blocks (peaks at 1h resolution)", "", cs.name, report=True)
        setup.history[cs.name] = {"asked_days": w.days, "window_days": round(have, 2), "held_days": round(held, 2),
                                  "since": fmt_ts(t) if t else None, "complete": bool(t and t <= start + day)}


def _days(d: float) -> str:
    return f"{d:.0f} days" if d >= 1.5 else f"{d:.1f} days"


def _found_lines(setup: Setup, clusters: list[ClusterSetup]) -> None:
    """What each cluster has in place, in one line (the doctor's header)."""
    names = (("node_exporter", "node-exporter"), ("cadvisor", "cAdvisor"), ("kubelet", "kubelet volume stats"),
             ("ceph", "Ceph"))
    for cs in clusters:
        nodes = int((setup.inventory["cluster"] == cs.name).sum()) if len(setup.inventory) else 0
        parts = [f"kube-state-metrics found, {nodes} nodes" if "kube_state_metrics" in cs.jobs
                 else "kube-state-metrics not found"]
        for family, label in names:
            if family == "node_exporter" and cs.name in setup.found:
                parts.append(setup.found[cs.name])
            else:
                parts.append(f"{label} {'found' if family in cs.jobs else 'not found'}")
        setup.found[cs.name] = "; ".join(parts)


#: Recorded series a variant can only use per node when they carry a non-empty ``node``
#: label: the kubernetes-mixin aggregates node-exporter series ``by (cluster, node)``, and
#: kube-prometheus(-stack) node-exporter series have no ``node`` (docs/research 5.4).
_NEEDS_NODE = ("node:node_cpu_utilization:ratio_rate5m",)
def _mixin(name: str) -> str:
    return "node-mixin" if name.startswith("instance:") else "kubernetes-mixin"


def _first_seen(ctx: _Ctx, name: str, expr: str, key: tuple[str, ...]) -> tuple[dict[tuple, float], set[tuple]]:
    """For each series of the instant query ``expr`` (a ``count by (key)``) present at the
    window's end: the time from which it is present, to the hour (at the window's start, or
    a joint bisection of every key present at the end but not at the start). Also returns
    the keys present at the end. Each probe reads each matching series once."""
    def at(t: float) -> set[tuple]:
        return {tuple(r["metric"].get(k) for k in key) for r in ctx.client.instant(name, expr, t)}

    end, start = ctx.window.end.timestamp(), ctx.window.start.timestamp()
    now = at(end)
    since: dict[tuple, float] = {}
    first = at(start) if now else set()
    open_: dict[tuple, tuple[float, float]] = {}
    for k in now:
        if k in first:
            since[k] = start
        else:
            open_[k] = (start, end)
    while open_:
        mids = {k: math.floor((lo + hi) / 2 / 60) * 60 for k, (lo, hi) in open_.items()}
        seen = {t: at(t) for t in set(mids.values())}
        for k, m in mids.items():
            lo, hi = open_[k]
            open_[k] = (lo, m) if k in seen[m] else (m, hi)
        for k in [k for k, (lo, hi) in open_.items() if hi - lo <= 3600]:
            since[k] = open_.pop(k)[1]
    return since, now


def _recorded(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup], rules: list[str]) -> None:
    """Which of the mixins' recorded series each cluster has, and since when (to the hour).

    Instant ``count by (cluster, __name__)`` probes (one per probe time, all rules at once):
    at the window's end, at its start, then a joint bisection for every (cluster, rule)
    present at the end but not at the start. Each probe reads each recorded series once, so
    about 15 probes cost what one step of the pull does. A rule that stopped and started
    again inside the window is taken from its last start only if the bisection lands there;
    the data-coverage checks after the pull name any hole left."""
    if not rules:
        return
    c, w = ctx.c, ctx.window
    sel = ctx.cluster_matcher([cs.label_value for cs in clusters])
    expr = f'count by ({c}, __name__) ({{__name__=~"{label_regex(rules)}",{sel}}})'
    since, _ = _first_seen(ctx, "doctor:recorded", expr, (c, "__name__"))
    start = w.start.timestamp()
    for cs in clusters:
        have = {name: t for (cl, name), t in since.items() if cl == cs.label_value}
        nodes = int((setup.inventory["cluster"] == cs.name).sum()) if len(setup.inventory) else 0
        unusable = []
        for name in [n for n in _NEEDS_NODE if n in have]:
            rows = ctx.instant("doctor:recorded-node", f'count by ({c}) (count by ({c}, node) '
                               f'({name}{{{cs.selector(None)}node!=""}}))')
            per_node = int(float(rows[0]["value"][1])) if rows else 0
            if per_node < max(1, nodes // 2):
                unusable.append(f"{name} has no node label ({per_node} of {nodes} nodes): node-exporter series carry none, "
                                "so the kubernetes-mixin rule is one series per cluster (the node-mixin's instance:* "
                                "rules are read instead)")
                del have[name]
        cs.recorded = have
        if have:
            by_day: dict[str, list[str]] = defaultdict(list)
            for name, t in sorted(have.items(), key=lambda kv: (kv[1], kv[0])):
                by_day[fmt_ts(t) if t > start else "the window's start"].append(f"{name} ({_mixin(name)})")
            detail = "; ".join(f"since {d}: {', '.join(v)}" for d, v in by_day.items())
            setup.add("recorded series", "OK", f"{detail}; pulls read them where they exist and the raw series before"
                      + (f". Not used: {'; '.join(unusable)}" if unusable else ""), cluster=cs.name)
        else:
            groups = sorted({CHART_GROUPS.get(g, g) for r in rules if (x := rule_expr(r)) for g in [x[0]]})
            setup.add("recorded series", "OK", "no kubernetes-mixin or node-mixin recorded series: every pull reads the raw "
                      "series (the cost lines estimate what the rules would save)"
                      + (f". Not used: {'; '.join(unusable)}" if unusable else ""),
                      "kube-prometheus-stack evaluates them by default (values " + ", ".join(groups) + ": true); "
                      "`promtool tsdb create-blocks-from rules` backfills their history", cs.name)


def _pool_rules(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup], catalog: MetricCatalog) -> None:
    """Which of capplan's pool rules (:func:`.catalog.pool_rules`, ``capplan rules``) each
    cluster has with the current definitions (the ``capplan_rule`` digest of the expression
    they record), and since when (to the hour), as :func:`_recorded` does for the mixins'.
    Series of a pool rule with another digest (written for another configuration: other pool
    labels, another join) are named and never read: their history mixes definitions."""
    c = ctx.c
    sel = ctx.cluster_matcher([cs.label_value for cs in clusters])
    expr = f'count by ({c}, __name__, {POOL_RULE_LABEL}) ({{__name__=~"capplan:.+",{POOL_RULE_LABEL}!="",{sel}}})'
    since, now = _first_seen(ctx, "doctor:pool-rules", expr, (c, "__name__", POOL_RULE_LABEL))
    start = ctx.window.start.timestamp()
    for cs in clusters:
        if "kube_state_metrics" not in cs.jobs:
            continue
        rules = pool_rules(catalog, cs, ctx.src, setup.rate_window_s)
        cs.pool_rules = {r.group: since[k] for r in rules if (k := (cs.label_value, r.record, r.digest)) in since}
        current = {r.digest for r in rules}
        other = sorted({d for cl, _, d in now if cl == cs.label_value and d not in current})
        stale = (f". Pool rules written for another configuration ({POOL_RULE_LABEL} {', '.join(other)}) are not read: "
                 "apply the output of `capplan rules` again" if other else "")
        fix = ("`capplan rules --output capplan-pool-rules.yaml` writes them for this configuration "
               "(docs/OPERATIONS.md: installing the pool rules)")
        if cs.pool_rules:
            by_day: dict[str, list[str]] = defaultdict(list)
            for group, t in sorted(cs.pool_rules.items(), key=lambda kv: (kv[1], kv[0])):
                by_day[fmt_ts(t) if t > start else "the window's start"].append(group)
            shown = "; ".join(f"since {d}: {', '.join(v)}" for d, v in by_day.items())
            missing = sorted({r.group for r in rules} - set(cs.pool_rules))
            setup.add("pool rules", "WARN" if other else "OK",
                      f"capplan's pool rules: {shown}; pulls read them (one series per pool) from there"
                      + (f"; not installed: {', '.join(missing)}" if missing else "") + stale,
                      fix if missing or other else "", cs.name)
        else:
            setup.add("pool rules", "WARN" if other else "OK",
                      "no capplan pool rules with the current definitions: pulls read a series per node or container "
                      "(the cost lines estimate what the pool rules would save)" + stale, fix, cs.name)


def _storage(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup]) -> None:
    c, lb = ctx.c, ctx.lookback
    for cs in clusters:
        parts = []
        if "ceph" in cs.jobs and "ceph" in ctx.src.storage:
            rows = ctx.instant("storage:ceph", f"max by ({c}, name) (last_over_time(ceph_pool_metadata{{{cs.selector(None)}}}[{lb}]))")
            parts.append("Ceph pools " + ", ".join(sorted(r["metric"].get("name", "?") for r in rows)))
        if "kubelet" in cs.jobs and "pvc" in ctx.src.storage:
            rows = ctx.instant("storage:pvc", f"count by ({c}, storageclass) (last_over_time("
                               f"kube_persistentvolumeclaim_info{{{cs.selector('kube_state_metrics')}}}[{lb}]))")
            parts.append("PVCs by StorageClass " + ", ".join(sorted(r["metric"].get("storageclass", "none") for r in rows)))
        if parts:
            setup.add("storage", "OK", "; ".join(parts), cluster=cs.name)
        else:
            setup.add("storage", "WARN", "no storage source (Ceph pools, or kubelet volume stats with "
                      "kube_persistentvolumeclaim_info): storage is not planned for this cluster",
                      "scrape the Rook ceph-mgr exporter, or the kubelet's /metrics endpoint", cs.name, report=True)


def _intervals(ctx: _Ctx, setup: Setup, clusters: list[ClusterSetup]) -> None:
    src = ctx.src
    if src.scrape_interval != "auto":
        setup.scrape_s = parse_duration(src.scrape_interval)
        how = "configured"
    else:
        sel = ctx.cluster_matcher([cs.label_value for cs in clusters])
        probe = "node_memory_MemTotal_bytes" if any("node_exporter" in cs.jobs for cs in clusters) else "kube_node_info"
        rows = ctx.instant("scrape-interval", f"quantile(0.5, count_over_time({probe}{{{sel}}}[1h]))")
        n = float(rows[0]["value"][1]) if rows else 0.0
        setup.scrape_s = int(min(3600, max(5, round(3600 / n)))) if n >= 1 else 60
        how = f"measured on {probe}"
    setup.peak_s = max(parse_duration(src.peak_resolution), setup.scrape_s)
    setup.rate_window_s = (parse_duration(src.rate_window) if src.rate_window != "auto"
                           else max(setup.peak_s, 4 * setup.scrape_s))
    setup.add("intervals", "OK", f"scrape interval {setup.scrape_s}s ({how}); rate window {setup.rate_window_s}s; "
              f"peaks at {setup.peak_s}s resolution within each {ctx.step_s}s step")


def inspect(client: PromClient, src: PrometheusSource, window: HistoryWindow, step_s: int,
            rules: list[str] | None = None, catalog: MetricCatalog | None = None) -> Setup:
    """Every cheap check, in order; later checks are skipped when the server has no
    kube-state-metrics at all. ``rules``: the recorded series the catalog's variants read
    (looked for when ``src.recorded`` is ``auto``); ``catalog``: with it, capplan's pool rules
    for it are looked for too. See the module docstring."""
    ctx = _Ctx(client, src, window, step_s)
    setup = Setup(ServerInfo(), [], pd.DataFrame(columns=INVENTORY_COLUMNS), 60, 300, 300)
    _server(ctx, setup)
    if any(c.check == "server" for c in setup.failed):
        return setup  # nothing else is worth asking
    clusters = _clusters(ctx, setup)
    if not clusters:
        return setup
    _jobs(ctx, setup, clusters)
    keys = _metrics(ctx, setup, clusters)
    setup.inventory = _inventory(ctx, setup, clusters)
    _join(ctx, setup, clusters, keys, setup.inventory)
    _intervals(ctx, setup, clusters)
    _history(ctx, setup, clusters)
    if src.recorded == "auto":
        _recorded(ctx, setup, clusters, rules or [])
        if catalog is not None and src.pool_rules == "auto":
            _pool_rules(ctx, setup, clusters, catalog)
    _storage(ctx, setup, clusters)
    inspect_autoscalers(ctx, setup, clusters, setup.inventory)
    _found_lines(setup, clusters)
    setup.clusters = [cs for cs in clusters if "kube_state_metrics" in cs.jobs]
    return setup


def _fmt_s(x: float) -> str:
    return f"{x / 3600:.1f} h" if x >= 3600 else f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def _rule_series(ctx_client: PromClient, c: str, rules: list[str], at: float) -> dict[tuple[str | None, str], int]:
    """(cluster, rule) -> how many series the rule would record, evaluating its expression
    once (for a cluster without the rules: what enabling them would give)."""
    out = {}
    for r in rules:
        known = rule_expr(r)
        if not known:
            continue
        for row in ctx_client.instant(f"doctor:rule-series:{r}", f"count by ({c}) ({known[1]})", at):
            out[(row["metric"].get(c), r)] = int(float(row["value"][1]))
    return out


def probe_costs(client: PromClient, src: PrometheusSource, setup: Setup, catalog: MetricCatalog, window: HistoryWindow,
                step_s: int, planner: WindowPlanner | None = None) -> None:
    """One day of every pool and storage query (and of its recorded variant where the
    cluster has the rules), with ``stats=all``: samples the server touches
    (``totalQueryableSamples``) and holds at once (``peakSamples``) and its evaluation time
    per day, extrapolated to the requests each will take. Then what the full pull (the
    window) and the monthly pull (the last :data:`MONTH_DAYS` days) would cost, with the
    recorded variants where the pull would read them and raw only, and, for a cluster
    without the mixins' rules, what enabling them would save (estimated from the number of
    series the rules would record)."""
    from .budget import resolve_budget

    budget_cfg = resolve_budget(src)
    budget = int(setup.server.max_samples * budget_cfg.samples_budget_pct / 100)
    planner = planner or WindowPlanner(step_s, budget, min(src.timeout_s, setup.server.timeout_s or src.timeout_s),
                                       src.max_points_per_request,
                                       parse_duration(src.max_query_length) if src.max_query_length else None)
    end, start = window.end.timestamp(), window.start.timestamp()
    day_steps = max(1, 86400 // step_s)
    days = window.days
    recorded = src.recorded == "auto"
    # per (cluster, group): {variant: (samples/day, eval s/day, requests/day)}; {variant: since} of the others
    per: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = defaultdict(dict)
    since: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    series: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for cs in setup.clusters:
        for q in build_queries(catalog, cs, src, step_s, setup.peak_s, setup.rate_window_s, recorded):
            if q.entry.level not in ("pool", "storage"):
                continue
            # The inner expression at its own resolution over the last day: what the server
            # reads and holds for one day of this pool series (the peak wrapper adds little).
            res = setup.peak_s if q.shift_s else step_s
            last = math.floor((end - 1) / res) * res
            try:
                ans = client.query_range(f"doctor:cost:{q.label}", q.inner, last - 86400 + res, last, res, cs.name)
            except TooHeavy as exc:
                setup.add("cost", "FAIL", f"{q.label}: one day is already too heavy ({exc})",
                          "raise query.max-samples or pull fewer clusters at once", cs.name)
                continue
            planner.seed(q.name, ans.peak_samples / day_steps if ans.peak_samples else None,
                         ans.eval_s / day_steps if ans.eval_s else None)
            steps = planner.steps(q.name)
            n_req = math.ceil(days * day_steps / steps)
            used = days if q.variant == "raw" else (end - max(start, q.since or start)) / 86400
            series[(cs.name, q.group)][q.variant] = len(ans.result)
            setup.estimates.append(CostEstimate(q.label, cs.name, ans.peak_samples, ans.total_samples, ans.eval_s, steps,
                                                n_req, q.variant, q.group, round(used, 2)))
            per[(cs.name, q.group)][q.variant] = (float(ans.total_samples or 0), float(ans.eval_s or 0.0),
                                                  day_steps / steps)
            if q.variant != "raw":
                since[(cs.name, q.group)][q.variant] = max(start, q.since or start)
            shown = {"recorded": " (recorded)", "pool_rules": " (capplan pool rule)"}.get(q.variant, "")
            setup.add("cost", "OK", f"{q.label}{shown}: a day reads "
                      f"{_fmt_n(ans.total_samples)} samples "
                      f"({_fmt_n(ans.total_samples * 30 if ans.total_samples else None)} per month) and holds up to "
                      f"{_fmt_n(ans.peak_samples)} -> {steps * step_s / 86400:.1f} days per request, {n_req} request(s) for "
                      f"{days} days (budget {_fmt_n(budget)} = {budget_cfg.samples_budget_pct:g}% of query.max-samples)",
                      cluster=cs.name)
    _pull_estimates(setup, per, since, start, end, budget_cfg)
    if recorded:
        _rules_saving(client, setup, catalog, src, per, end)
        _pool_rules_saving(setup, per, series)


def _days_by_variant(a: float, end: float, since: dict[str, float | None]) -> dict[str, float]:
    """Days of ``[a, end)`` each variant is read for: the most preferred one that exists
    (``since``: variant -> from when; raw: None, always), as the pull plans its windows."""
    edges = [a] + sorted({t for t in since.values() if t is not None and a < t < end}) + [end]
    out: dict[str, float] = defaultdict(float)
    for x, y in zip(edges, edges[1:]):
        out[preferred_variant(since, x)] += (y - x) / 86400
    return out


def _pull_estimates(setup: Setup, per: dict, since: dict, start: float, end: float, budget) -> None:
    for name, a in (("full", start), ("monthly", max(start, end - MONTH_DAYS * 86400))):
        tot = [0.0, 0.0, 0.0, 0.0, 0.0]
        for key, variants in per.items():
            raw = variants.get("raw")
            if raw is None:
                continue
            for v, d in _days_by_variant(a, end, {**since.get(key, {}), "raw": None}).items():
                tot[0] += d * variants[v][0]
                tot[1] += d * variants[v][1]
                tot[2] += math.ceil(d * variants[v][2])
            tot[3] += (end - a) / 86400 * raw[0]
            tot[4] += (end - a) / 86400 * raw[1]
        p = PullEstimate(name, round((end - a) / 86400, 2), tot[0], tot[1], int(tot[2]), tot[3], tot[4])
        setup.pulls.append(p)
        floor = f"; at {budget.samples_per_s:,.0f} samples/s at least {_fmt_s(p.samples / budget.samples_per_s)}" \
            if budget.samples_per_s else ""
        saving = (f" (raw series only: {_fmt_n(p.raw_samples)} samples, {_fmt_s(p.raw_server_s)})"
                  if p.raw_samples > p.samples * 1.001 else "")
        setup.add("pull cost", "OK", f"{name} pull ({p.days:g} days, pool and storage series): about {_fmt_n(p.samples)} "
                  f"samples and {_fmt_s(p.server_s)} of server time in {p.requests} requests{saving}; budget "
                  f"{budget.describe()}{floor}")


def _pool_rules_saving(setup: Setup, per: dict, series: dict) -> None:
    """For each cluster whose pool and storage series are not all read from capplan's pool
    rules: the samples a day the queries read with the variant they use now, against what
    they would read from the pool rules (one series per pool at each peak point; each HA
    replica evaluating the rules adds its own copy)."""
    points = 86400 / setup.peak_s
    for cs in setup.clusters:
        before, after = 0.0, 0.0
        for (cluster, group), variants in per.items():
            if cluster != cs.name or "pool_rules" in variants:
                continue
            now = next(v for v in VARIANTS if v in variants)
            before += variants[now][0]
            after += points * max(1, series[(cluster, group)].get(now, 1))
        if before and after:
            setup.add("pool rules", "OK", f"enabling capplan's pool rules (`capplan rules`) would cut the pool and storage "
                      f"queries without them from {_fmt_n(before)} to about {_fmt_n(after)} samples a day "
                      f"({before / after:.0f}x fewer; one series per pool at each of {points:.0f} points a day, per HA "
                      "replica), from the day they are installed or backfilled", cluster=cs.name)


def _rules_saving(client: PromClient, setup: Setup, catalog: MetricCatalog, src: PrometheusSource, per: dict,
                  end: float) -> None:
    """For clusters without the rules: the samples a day the recorded variants would read,
    from the number of series the rules would record (plus the node-pool map, read as by
    the raw queries), against what the raw queries read."""
    c = check_label_name(src.cluster_label, "cluster_label")
    missing = [cs for cs in setup.clusters if not cs.recorded]
    if not missing:
        return
    rules = sorted({r for m in catalog.metrics for r in m.rules})
    counts = _rule_series(client, c, rules, end)
    points = 86400 / setup.peak_s
    for cs in missing:
        nodes = int((setup.inventory["cluster"] == cs.name).sum()) if len(setup.inventory) else 0
        raw_total, rec_total = 0.0, 0.0
        for (cluster, group), variants in per.items():
            v = next((m for m in catalog.metrics if m.variant_of == group and m.level == "pool"), None)
            if cluster != cs.name or v is None or "raw" not in variants:
                continue
            n = [counts.get((cs.label_value, r)) for r in v.rules]
            if any(x is None for x in n):
                continue
            raw_total += variants["raw"][0]
            rec_total += points * (sum(n) + 2 * nodes)  # each rule's series, and kube_node_labels twice (the pool map)
        if raw_total and rec_total:
            setup.add("recorded series", "OK", f"enabling the rules would cut the pool queries that have a recorded variant "
                      f"from {_fmt_n(raw_total)} to about {_fmt_n(rec_total)} samples a day ({raw_total / rec_total:.0f}x "
                      "fewer; estimated from the series the rules would record)", cluster=cs.name)
