"""The metric catalog (``metrics.yaml`` plus the user's file) and how its PromQL is
rendered for one cluster: scrape-job matchers, the node -> pool map from the preset's
labels, the node-exporter -> node join, and the peak wrapper for pool series.

Label names are validated and label values escaped, so nothing from the config or from
the server's label values can change the shape of a query.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...config import ConfigError, PrometheusSource, format_validation_error, load_yaml
from ..yamlfile import YamlFileError, parse_yaml
from .presets import CONTROL_PLANE_POOL, CONTROL_PLANE_ROLES, UNLABELLED
from .promapi import ANY_VALUE_RE, escape_label_value

__all__ = ["MetricEntry", "MetricCatalog", "load_metric_catalog", "ClusterSetup", "Query", "render", "build_queries",
           "check_label_name", "FAMILIES", "node_pool_expr", "pod_node_expr", "ne_join", "rule_names", "VARIANTS",
           "PoolRule", "POOL_RULE_LABEL", "pool_rules", "preferred_variant"]

#: Scrape jobs a catalog entry may need.
FAMILIES = ("kube_state_metrics", "node_exporter", "cadvisor", "kubelet", "ceph", "karpenter", "cluster_autoscaler")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_:.-]+$")
    level: str = Field(pattern="^(pool|node|namespace|storage|limit)$")
    resource: str = Field(pattern="^(cpu|memory|pods|storage|nodes)$")
    kind: str = Field(pattern="^(usage|requests|capacity|limit)$")
    expr: str
    requires: list[str] = Field(default_factory=lambda: ["kube_state_metrics"])
    source: str | None = Field(None, description="storage entries: ceph | pvc; limit entries: karpenter | cluster-autoscaler")
    pool: str | None = Field(None, description="storage entries: pool name, a format string over the result's labels")
    variant_of: str | None = Field(None, description="a recorded variant: the entry whose series it computes")
    rules: list[str] = Field(default_factory=list, description="recorded series (rule names) a recorded variant reads")

    @property
    def recorded(self) -> bool:
        return bool(self.variant_of)


class MetricCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: list[MetricEntry]


def load_metric_catalog(user_path: Path | None = None) -> MetricCatalog:
    """The default catalog, with the user's entries replacing same-named ones and added."""
    shipped = resources.files("pipelines.io.sources").joinpath("metrics.yaml")
    try:
        base = parse_yaml(shipped.read_bytes(), str(shipped))
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
    if user_path:
        extra = load_yaml(user_path) or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"{user_path}: expected a key 'metrics' holding a list")
        unknown = set(extra) - {"metrics"}
        if unknown:
            raise ConfigError(f"{user_path}: unknown key(s) {', '.join(sorted(unknown))}; expected metrics")
        defaults = {m["name"]: m for m in base["metrics"]}
        mine = []
        for i, m in enumerate(extra.get("metrics") or []):
            try:
                entry = MetricEntry.model_validate(m)
            except ValidationError as exc:
                name = m.get("name", i) if isinstance(m, dict) else i
                raise ConfigError(format_validation_error(f"{user_path}: metric {name!r}", exc, f"metrics[{i}]")) from None
            bad = set(entry.requires) - set(FAMILIES)
            if bad:
                raise ConfigError(f"{user_path}: metric {entry.name!r}: requires: unknown job(s) {', '.join(sorted(bad))}; "
                                  f"expected some of {', '.join(FAMILIES)}")
            defaults.pop(entry.name, None)
            mine.append(entry.model_dump())
        # a default recorded variant computes the default entry's formula: it goes with it
        replaced = {m["name"] for m in mine}
        defaults = {k: v for k, v in defaults.items() if v.get("variant_of") not in replaced}
        # the user's entries first: for each (level, resource, kind) the first usable entry wins
        base["metrics"] = mine + list(defaults.values())
    cat = MetricCatalog.model_validate(base)
    names = {m.name for m in cat.metrics}
    for m in cat.metrics:
        if bool(m.variant_of) != bool(m.rules) or (m.variant_of and m.variant_of not in names):
            raise ConfigError(f"{user_path or 'metrics.yaml'}: metric {m.name!r}: a recorded variant needs both variant_of "
                              f"(an entry of the catalog) and rules (the recorded series it reads)")
    return cat


def rule_names(catalog: MetricCatalog) -> list[str]:
    """Every recorded series the catalog's variants read (the doctor looks for these)."""
    return sorted({r for m in catalog.metrics for r in m.rules})


def check_label_name(name: str, field: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ConfigError(f"source.prometheus.{field}: {name!r} is not a valid Prometheus label name")
    return name


def matchers(labels: dict[str, str]) -> str:
    """``{"job": "x"}`` -> ``job="x",`` (names checked, values escaped; trailing comma)."""
    return "".join(f'{check_label_name(k, "label")}="{escape_label_value(v)}",' for k, v in labels.items())


@dataclass
class ClusterSetup:
    """What the doctor found for one cluster, and what the queries use."""

    name: str
    #: The cluster label's value (None: the series have no cluster label).
    label_value: str | None
    cluster_label: str
    #: Per scrape job family: the label matchers that select it (job, metrics_path).
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)
    #: KSM names of the pool labels present, in precedence order.
    pool_labels: list[str] = field(default_factory=list)
    #: kube_pod_info | internal_ip | label:<name>
    ne_join: str = "kube_pod_info"
    #: Recorded series (rule name) -> unix time from which this cluster has them (the doctor).
    recorded: dict[str, float] = field(default_factory=dict)
    #: The join the recorded variants use: one reaching the same nodes as ``ne_join``, the cheapest.
    ne_join_recorded: str | None = None
    #: Some nodes are control-plane nodes by role (kube_node_role): the pool map needs the role.
    control_plane: bool = True
    #: cluster-autoscaler node group id -> the pool it scales (the doctor maps them).
    node_groups: dict[str, str] = field(default_factory=dict)
    #: capplan's pool rules with the current definitions: group (raw entry name) -> unix time
    #: from which this cluster has them (the doctor; :func:`pool_rules`).
    pool_rules: dict[str, float] = field(default_factory=dict)

    def selector(self, family: str | None) -> str:
        m = dict(self.jobs.get(family, {})) if family else {}
        if self.label_value is not None:
            m[self.cluster_label] = self.label_value
        return matchers(m)

    @property
    def families(self) -> set[str]:
        return set(self.jobs)


def node_pool_expr(setup: ClusterSetup) -> str:
    """One series per (cluster, node) with label ``pool``: the first pool label in
    precedence order, else ``control-plane`` for a control-plane node (``kube_node_role``),
    else ``unlabelled`` (as :func:`pipelines.io.sources.presets.pool_of`). Duplicates (HA replicas, two KSM pods) collapse in
    ``max by``; a node whose pool changed keeps one pool (``topk``), as the mixin does."""
    c, k = setup.cluster_label, setup.selector("kube_state_metrics")
    parts = [f'label_replace(kube_node_labels{{{k}{check_label_name(lab, "pool_label")}!=""}}, "pool", "$1", "{lab}", "{ANY_VALUE_RE}")'
             for lab in setup.pool_labels]
    roles = "|".join(CONTROL_PLANE_ROLES)
    parts.append(f'label_replace(kube_node_role{{{k}role=~"{roles}"}}, "pool", "{CONTROL_PLANE_POOL}", "node", ".*")')
    parts.append(f'label_replace(kube_node_labels{{{k}}}, "pool", "{UNLABELLED}", "node", ".*")')
    return f"topk by ({c}, node) (1, max by ({c}, node, pool) ({f' or on ({c}, node) '.join(parts)}))"


def node_pool_map_expr(setup: ClusterSetup) -> str:
    """:func:`node_pool_expr` reading ``kube_node_labels`` once per step instead of once per
    pool label and again for the fallback: ``label_replace`` from the last pool label to the
    first (the first non-empty one is left), on top of ``unlabelled``. The same map when no
    node is a control-plane node by role (``setup.control_plane`` False, from the doctor);
    otherwise :func:`node_pool_expr` itself."""
    if setup.control_plane:
        return node_pool_expr(setup)
    c, k = setup.cluster_label, setup.selector("kube_state_metrics")
    expr = f'label_replace(kube_node_labels{{{k}}}, "pool", "{UNLABELLED}", "", "")'
    for lab in reversed(setup.pool_labels):
        expr = f'label_replace({expr}, "pool", "$1", "{check_label_name(lab, "pool_label")}", "{ANY_VALUE_RE}")'
    return f"topk by ({c}, node) (1, max by ({c}, node, pool) ({expr}))"


def pod_node_expr(setup: ClusterSetup) -> str:
    """kubernetes-mixin rules/node.libsonnet ``node_namespace_pod:kube_pod_info:``."""
    c, k = setup.cluster_label, setup.selector("kube_state_metrics")
    return f'topk by ({c}, namespace, pod) (1, max by ({c}, namespace, pod, node) (kube_pod_info{{{k}node!=""}}))'


def _active_expr(setup: ClusterSetup) -> str:
    c, k = setup.cluster_label, setup.selector("kube_state_metrics")
    return f'max by ({c}, namespace, pod) (kube_pod_status_phase{{{k}phase=~"Pending|Running"}} == 1)'


#: ``instance`` values are ``host:port`` on kube-prometheus-stack (the pod's host IP) and a
#: bare node name on kube-prometheus (docs/research 4.2).
_HOST = '"(.+?)(?::[0-9]+)?"'


def ne_join(setup: ClusterSetup) -> tuple[str, str, str]:
    """``(key, begin, end)``: an expression ``by (cluster, key)`` written between ``begin``
    and ``end`` gets the node's name in ``node`` (docs/research 10.1 variants a, b, b')."""
    c, k = setup.cluster_label, setup.selector("kube_state_metrics")
    if setup.ne_join == "kube_pod_info":
        return "namespace, pod", "(", f") * on ({c}, namespace, pod) group_left (node) {pod_node_expr(setup)}"
    if setup.ne_join == "internal_ip":
        return ("instance", "label_replace(",
                f', "internal_ip", "$1", "instance", {_HOST}) * on ({c}, internal_ip) group_left (node) '
                f"topk by ({c}, internal_ip) (1, max by ({c}, internal_ip, node) (kube_node_info{{{k}}}))")
    if setup.ne_join.startswith("label:"):
        lab = check_label_name(setup.ne_join[6:], "node_exporter_join")
        return lab, "label_replace(", f', "node", "$1", "{lab}", {_HOST})'
    raise ConfigError(f"source.prometheus.node_exporter_join: {setup.ne_join!r}; expected auto, kube_pod_info, "
                      "internal_ip or label:<name>")


def render(expr: str, setup: ClusterSetup, rate_window: str, recorded: bool = False) -> str:
    """Fill the catalog placeholders for one cluster (see metrics.yaml). A ``recorded``
    variant joins node-exporter series the cheapest way that reaches the same nodes."""
    if recorded and setup.ne_join_recorded:
        setup = dataclasses.replace(setup, ne_join=setup.ne_join_recorded)
    key, begin, end = ne_join(setup) if "<<ne_" in expr else ("", "", "")
    out = expr
    for name, value in (("<<node_pool_map>>", node_pool_map_expr(setup) if "<<node_pool_map>>" in expr else ""),
                        ("<<node_pool>>", node_pool_expr(setup)), ("<<pod_node>>", pod_node_expr(setup)),
                        ("<<active>>", _active_expr(setup)), ("<<ne_node_begin>>", begin), ("<<ne_node_end>>", end),
                        ("<<ne_key>>", key), ("<<ksm>>", setup.selector("kube_state_metrics")),
                        ("<<ne>>", setup.selector("node_exporter")), ("<<cadvisor>>", setup.selector("cadvisor")),
                        ("<<kubelet>>", setup.selector("kubelet")), ("<<any>>", setup.selector(None)),
                        ("<<w>>", rate_window), ("<<c>>", check_label_name(setup.cluster_label, "cluster_label"))):
        out = out.replace(name, value)
    left = re.findall(r"<<[a-z_]+>>", out)
    if left:
        raise ConfigError(f"unknown placeholder(s) {', '.join(sorted(set(left)))} in a catalog expression")
    return " ".join(out.split())


@dataclass
class Query:
    """One catalog entry rendered for one cluster."""

    name: str  # entry name + '#' + a hash of the PromQL: a changed query is pulled again
    entry: MetricEntry
    cluster: str
    expr: str
    #: Stored ts = evaluation time - shift_s (a peak over (ts, ts + step] is stored at ts).
    shift_s: int = 0
    #: The expression inside the peak wrapper (the doctor probes it at peak resolution:
    #: Prometheus 2.42's totalQueryableSamples does not count a subquery's inner samples).
    inner: str = ""
    #: A recorded variant: the time from which its rules exist in this cluster.
    since: float | None = None
    #: Reads capplan's own pool rule (one series per pool) instead of the entry's formula.
    pool_rule: bool = False

    @property
    def label(self) -> str:
        return self.entry.name

    @property
    def group(self) -> str:
        """The logical series: the raw entry's name (a recorded variant computes the same)."""
        return self.entry.variant_of or self.entry.name

    @property
    def variant(self) -> str:
        """One of :data:`VARIANTS`."""
        return "pool_rules" if self.pool_rule else "recorded" if self.entry.recorded else "raw"


#: The variants of one logical series, most preferred first: capplan's pool rules (one
#: series per pool), the mixins' recorded series (one per node or container), the raw series.
VARIANTS = ("pool_rules", "recorded", "raw")


def preferred_variant(since: dict[str, Any], at: Any) -> str:
    """The first of :data:`VARIANTS` in ``since`` (variant -> the time it exists from, unix
    seconds or a timestamp like ``at``; None: always, as raw) that exists at ``at``."""
    return next(v for v in VARIANTS if v in since and (since[v] is None or since[v] <= at))


def _query(e: MetricEntry, setup: ClusterSetup, step_s: int, peak_s: int, rate_window_s: int,
           since: float | None = None) -> Query:
    expr = inner = render(e.expr, setup, f"{rate_window_s}s", e.recorded)
    shift = 0
    if e.level in ("pool", "storage") and step_s > peak_s:
        # Inner points (ts, ts + step] at peak_s resolution; each reads the newest scrape
        # before it, so together they see the samples of [ts, ts + step).
        expr = f"max_over_time(({expr})[{step_s - 1}s:{peak_s}s])"
        shift = step_s
    digest = hashlib.sha1(expr.encode()).hexdigest()[:8]
    return Query(f"{e.name}#{digest}", e, setup.name, expr, shift, inner, since)


def _chosen_entries(catalog: MetricCatalog, setup: ClusterSetup, src: PrometheusSource) -> list[MetricEntry]:
    """For each (level, resource, kind[, storage source]) the first raw entry whose scrape
    jobs exist in the cluster."""
    chosen: dict[tuple, MetricEntry] = {}
    for e in catalog.metrics:
        if e.recorded:
            continue
        if e.level in ("node", "namespace") and not src.drill_down:
            continue
        if e.level == "storage" and e.source and e.source not in src.storage:
            continue
        if not set(e.requires) <= setup.families:
            continue
        chosen.setdefault((e.level, e.resource, e.kind, e.source or ""), e)
    return list(chosen.values())


def _recorded_variant(catalog: MetricCatalog, e: MetricEntry, setup: ClusterSetup) -> MetricEntry | None:
    """The first recorded variant of ``e`` whose rules the cluster has (``setup.recorded``)."""
    return next((v for v in catalog.metrics if v.variant_of == e.name and set(v.rules) <= set(setup.recorded)), None)


#: The label of a capplan pool rule's series that pins the expression it records.
POOL_RULE_LABEL = "capplan_rule"
#: The levels that get a pool rule: the pool and storage series, and the drill-down's node and
#: namespace series (one series per node or namespace instead of one per CPU, mode or
#: container); with the labels a reader keeps besides the cluster label (storage: its
#: entry's ``pool`` format names them). Limits are a few series already.
RULE_LEVELS = ("pool", "storage", "node", "namespace")
RULE_KEEP = {"pool": ("pool",), "node": ("node", "pool"), "namespace": ("namespace",)}


@dataclass(frozen=True)
class PoolRule:
    """One of capplan's pool rules: the series ``record`` with ``capplan_rule="<digest>"``
    holds ``expr``, one series per (cluster, pool) (storage: per the labels in ``keep``)."""

    group: str  # the raw entry whose logical series it records
    record: str  # capplan:<group>:sum
    expr: str  # the inner expression (no peak wrapper), without a cluster matcher
    digest: str  # 8 hex digits of the sha1 of ``expr``
    keep: tuple[str, ...]  # the labels a reader keeps besides the cluster label


def _pool_rule(e: MetricEntry, best: MetricEntry, setup: ClusterSetup, rate_window_s: int) -> PoolRule:
    """The pool rule of entry ``e`` computed with ``best`` (its recorded variant or itself).
    Rendered without the cluster matcher: each Prometheus evaluates it for the clusters it
    scrapes, and where the cluster label is an external label (Thanos, Mimir) the local
    series do not carry it."""
    local = dataclasses.replace(setup, label_value=None)
    expr = render(best.expr, local, f"{rate_window_s}s", best.recorded)
    keep = (RULE_KEEP[e.level] if e.level in RULE_KEEP
            else tuple(f for _, f, _, _ in string.Formatter().parse(e.pool or "") if f))
    return PoolRule(e.name, f"capplan:{e.name}:sum", expr, hashlib.sha1(expr.encode()).hexdigest()[:8], keep)


def pool_rules(catalog: MetricCatalog, setup: ClusterSetup, src: PrometheusSource, rate_window_s: int) -> list[PoolRule]:
    """capplan's pool rules for one cluster: one per pool, storage, node and namespace series
    the pull reads (node and namespace: with ``drill_down``),
    recording the best formula the cluster has (the mixins' recorded series where their rules
    exist, else the raw series)."""
    return [_pool_rule(e, _recorded_variant(catalog, e, setup) or e, setup, rate_window_s)
            for e in _chosen_entries(catalog, setup, src) if e.level in RULE_LEVELS]


def _pool_rule_entry(e: MetricEntry, rule: PoolRule) -> MetricEntry:
    """A variant of ``e`` reading its pool rule; ``max by``: HA replicas each evaluate it."""
    by = ", ".join(("<<c>>",) + rule.keep)
    expr = f'max by ({by}) ({rule.record}{{<<any>>{POOL_RULE_LABEL}="{rule.digest}"}})'
    return e.model_copy(update={"name": f"{e.name}:pool_rule", "variant_of": e.name, "rules": [rule.record], "expr": expr})


def build_queries(catalog: MetricCatalog, setup: ClusterSetup, src: PrometheusSource, step_s: int, peak_s: int,
                  rate_window_s: int, recorded: bool = False) -> list[Query]:
    """The cluster's queries: for each (level, resource, kind[, storage source]) the first
    entry whose scrape jobs exist there. Pool and storage entries keep the highest value
    seen at ``peak_s`` resolution within each step. With ``recorded``, each is followed by
    its first recorded variant whose rules the cluster has (``setup.recorded``), with the
    time from which they all exist (``since``), and by its capplan pool rule where the
    cluster has it with the current definition (``setup.pool_rules``)."""
    out = []
    for e in _chosen_entries(catalog, setup, src):
        out.append(_query(e, setup, step_s, peak_s, rate_window_s))
        if not recorded:
            continue
        variant = _recorded_variant(catalog, e, setup)
        if variant:
            out.append(_query(variant, setup, step_s, peak_s, rate_window_s, max(setup.recorded[r] for r in variant.rules)))
        if e.name in setup.pool_rules and e.level in RULE_LEVELS:
            rule = _pool_rule(e, variant or e, setup, rate_window_s)
            q = _query(_pool_rule_entry(e, rule), setup, step_s, peak_s, rate_window_s, setup.pool_rules[e.name])
            out.append(dataclasses.replace(q, pool_rule=True))
    return out
