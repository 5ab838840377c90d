"""capplan's own pool rules: one Prometheus recording rule per pool and storage series the
pull reads (and per node and namespace series of the drill-down: ``catalog.RULE_LEVELS``), so
that a pull reads one series per pool (node, namespace) instead of one per node, CPU, mode or
container (docs/PERFORMANCE.md "Prometheus ingest").

Each rule records the inner expression of a pool query (the query without its
``max_over_time(...)[step:peak]`` wrapper, :func:`.catalog.pool_rules`), computed with the
best formula the cluster has: the mixins' recorded series where the doctor found their
rules, else the raw series. It is recorded as ``capplan:<group>:sum`` (``<group>``: the
catalog entry, e.g. ``capplan:pool_cpu_usage:sum``) with the label
``capplan_rule="<8 hex digits of the sha1 of the expression>"``: after a configuration change
(other pool labels, another node-exporter join) the rules written again record under a new
digest, and the pull stops reading the old history instead of mixing two definitions.

The rules are rendered without the cluster matcher: each Prometheus evaluates them for the
clusters it scrapes (on a per-cluster Prometheus with ``cluster`` as an external label, the
local series have no cluster label; Thanos and Mimir add it to the rule's output). Clusters
whose configuration gives the same expression share one rule.

:func:`rules_file` writes a plain Prometheus rules file (Prometheus docs
``docs/configuration/recording_rules.md``: ``groups[].name, interval, rules[].record, expr,
labels``); :func:`prometheus_rule` the same groups as a prometheus-operator ``PrometheusRule``
(prometheus-operator ``example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml``:
``apiVersion: monitoring.coreos.com/v1``, ``spec.groups`` as in a rules file), labelled
``release: <release>`` so kube-prometheus-stack's default ``ruleSelector`` picks it up (the
chart's values.yaml ``prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues: true`` selects
the PrometheusRules labelled with the Helm release's name).
"""

from __future__ import annotations

import yaml

from ...config import PrometheusSource
from .catalog import POOL_RULE_LABEL, ClusterSetup, MetricCatalog, PoolRule, pool_rules

__all__ = ["GROUP_NAME", "DEFAULT_INTERVAL_S", "rules_for", "rule_groups", "rules_file", "prometheus_rule",
           "backfill_hint"]

GROUP_NAME = "capplan-pool-rules"
#: How often the rules are evaluated. The pull reads them at the peak resolution (5 minutes
#: by default) with Prometheus' 5-minute lookback: a value at most a minute old at each
#: point (a raw query reads scrapes up to one scrape interval old there too), and a missed or
#: slow evaluation still leaves a value inside the lookback. Shorter (the operator's default
#: 30s) doubles the evaluations without changing the 5-minute peaks; 5 minutes would shift
#: each peak by up to one point.
DEFAULT_INTERVAL_S = 60


def rules_for(catalog: MetricCatalog, clusters: list[ClusterSetup], src: PrometheusSource,
              rate_window_s: int) -> list[PoolRule]:
    """The pool rules of every cluster, each (record, digest) once (clusters with the same
    configuration share a rule), in catalog order."""
    seen: dict[tuple[str, str], PoolRule] = {}
    for cs in clusters:
        for rule in pool_rules(catalog, cs, src, rate_window_s):
            seen.setdefault((rule.record, rule.digest), rule)
    return list(seen.values())


def rule_groups(rules: list[PoolRule], labels: dict[str, str] | None = None,
                interval_s: int = DEFAULT_INTERVAL_S) -> list[dict]:
    """One rule group (``name, interval, rules``) with a recording rule (``record, expr,
    labels``) per pool rule; ``labels`` are added to each (the fixture's replica labels)."""
    body = [{"record": r.record, "expr": r.expr, "labels": {**(labels or {}), POOL_RULE_LABEL: r.digest}} for r in rules]
    return [{"name": GROUP_NAME, "interval": f"{interval_s}s", "rules": body}]


def _dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=100000)


def rules_file(rules: list[PoolRule], labels: dict[str, str] | None = None, interval_s: int = DEFAULT_INTERVAL_S) -> str:
    """A Prometheus rules file (``rule_files:``; ``promtool check rules`` accepts it)."""
    return _dump({"groups": rule_groups(rules, labels, interval_s)})


def prometheus_rule(rules: list[PoolRule], namespace: str = "monitoring", release: str = "kube-prometheus-stack",
                    interval_s: int = DEFAULT_INTERVAL_S) -> str:
    """The same groups as a prometheus-operator ``PrometheusRule`` manifest (``kubectl
    apply -f``), labelled ``release`` for kube-prometheus-stack's default rule selector."""
    return _dump({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                  "metadata": {"name": GROUP_NAME, "namespace": namespace,
                               "labels": {"release": release, "app.kubernetes.io/part-of": "capplan"}},
                  "spec": {"groups": rule_groups(rules, None, interval_s)}})


def backfill_hint(path: str, url: str, days: int, interval_s: int = DEFAULT_INTERVAL_S) -> str:
    """How to give the rules the history before they were installed (a command to run)."""
    return (f"The rules hold history only from when Prometheus starts evaluating them. For the past {days} days too, "
            f"evaluate them over the history with promtool and load the blocks (docs/OPERATIONS.md):\n"
            f"  promtool tsdb create-blocks-from rules --url={url} --start=$(date -d '-{days} days' +%s) "
            f"--end=$(date +%s) --eval-interval={interval_s}s --output-dir=capplan-backfill {path}\n"
            "  then move the blocks of capplan-backfill/ into each Prometheus' data directory (each HA replica its own) "
            "and restart it; `capplan doctor` shows since when the pull reads them")
