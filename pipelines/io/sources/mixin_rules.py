"""The recording rules of the kubernetes-mixin and the node-mixin that capplan's recorded
variants read, as kube-prometheus-stack renders them: the doctor evaluates them once to
estimate what enabling them would save, and the Prometheus fixture
(:mod:`pipelines.testing.promserver`) backfills their history.

The rule text is copied from prometheus-community/helm-charts@cf408a290aec489277a94450bb3511432477a53a
``charts/kube-prometheus-stack/templates/prometheus/rules-1.14/`` (kube-prometheus-stack
88.5.3, generated from kube-prometheus, which renders the kubernetes-mixin and the
node-mixin), with the chart's template values filled in the way a default install has them:
``$kubeletJob`` = ``kubelet``, ``$kubeStateMetricsJob`` = ``kube-state-metrics``,
``additionalAggregationLabels`` empty. Only the groups and rules whose inputs the fixture
has are kept (node-exporter's network, disk and load rules are left out: the fixture has no
such series). kube-prometheus renders the same expressions with the same job names, so one
file serves both of the fixture's stacks.

:func:`rules_yaml` returns a Prometheus rules file for one Prometheus (one cluster and HA
replica): on a real stack each replica evaluates the rules itself and the cluster and replica
labels are external labels, so rule outputs that aggregate ``by (cluster, ...)`` still carry
the replica label when Thanos or Mimir show them; the fixture adds them as rule labels.

Prometheus 2.42's ``promtool tsdb create-blocks-from rules`` evaluates each rule against the
server as it is, so a rule that reads another rule's output (``node:node_num_cpu:sum`` reads
``node_namespace_pod:kube_pod_info:``) sees nothing on the first pass (docs/storage.md
"Limitations": "rules that refer to other rules being backfilled is not supported. A
workaround is to backfill multiple times and create the dependent data first"). The fixture
does exactly that: :data:`PASSES` lists the rules of each pass.
"""

from __future__ import annotations

import yaml

__all__ = ["GROUPS", "PASSES", "RULES_SOURCE", "rules_yaml", "rule_names", "rule_expr", "CHART_GROUPS"]

RULES_SOURCE = ("prometheus-community/helm-charts@cf408a290aec489277a94450bb3511432477a53a "
                "charts/kube-prometheus-stack/templates/prometheus/rules-1.14")

#: group -> [(record, expr)], in the chart's order.
GROUPS: dict[str, list[tuple[str, str]]] = {
    # rules-1.14/node-exporter.rules.yaml (node-mixin, prometheus/node_exporter docs/node-mixin/rules/rules.libsonnet)
    "node-exporter.rules": [
        ("instance:node_num_cpu:sum",
         'count without (cpu, mode) (\n  node_cpu_seconds_total{job="node-exporter",mode="idle"}\n)'),
        ("instance:node_cpu_utilisation:rate5m",
         '1 - avg without (cpu) (\n  sum without (mode) (rate(node_cpu_seconds_total{job="node-exporter", '
         'mode=~"idle|iowait|steal"}[5m]))\n)'),
        ("instance:node_memory_utilisation:ratio",
         '1 - (\n  (\n    node_memory_MemAvailable_bytes{job="node-exporter"}\n    or\n    (\n'
         '      node_memory_Buffers_bytes{job="node-exporter"}\n      +\n      node_memory_Cached_bytes{job="node-exporter"}\n'
         '      +\n      node_memory_MemFree_bytes{job="node-exporter"}\n      +\n      node_memory_Slab_bytes{job="node-exporter"}\n'
         '    )\n  )\n/\n  node_memory_MemTotal_bytes{job="node-exporter"}\n)'),
    ],
    # rules-1.14/node.rules.yaml (kubernetes-mixin rules/node.libsonnet)
    "node.rules": [
        ("node_namespace_pod:kube_pod_info:",
         'topk by (cluster, namespace, pod) (1,\n  max by (cluster, node, namespace, pod) (\n'
         '    label_replace(kube_pod_info{job="kube-state-metrics",node!=""}, "pod", "$1", "pod", "(.*)")\n))'),
        ("node:node_num_cpu:sum",
         'count by (cluster, node) (\n  node_cpu_seconds_total{mode="idle",job="node-exporter"}\n'
         '  * on (cluster, namespace, pod) group_left(node)\n  topk by (cluster, namespace, pod) (1, node_namespace_pod:kube_pod_info:)\n)'),
        (":node_memory_MemAvailable_bytes:sum",
         'sum(\n  node_memory_MemAvailable_bytes{job="node-exporter"} or\n  (\n    node_memory_Buffers_bytes{job="node-exporter"} +\n'
         '    node_memory_Cached_bytes{job="node-exporter"} +\n    node_memory_MemFree_bytes{job="node-exporter"} +\n'
         '    node_memory_Slab_bytes{job="node-exporter"}\n  )\n) by (cluster)'),
        ("node:node_cpu_utilization:ratio_rate5m",
         'avg by (cluster, node) (\n  sum without (mode) (\n'
         '    rate(node_cpu_seconds_total{mode!="idle",mode!="iowait",mode!="steal",job="node-exporter"}[5m])\n  )\n)'),
        ("cluster:node_cpu:ratio_rate5m", "avg by (cluster) (\n  node:node_cpu_utilization:ratio_rate5m\n)"),
    ],
    # rules-1.14/k8s.rules.container_cpu_usage_seconds_total.yaml (kubernetes-mixin rules/apps.libsonnet)
    "k8s.rules.container_cpu_usage_seconds_total": [
        ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m",
         'sum by (cluster, namespace, pod, container) (\n  rate(container_cpu_usage_seconds_total{job="kubelet", '
         'metrics_path="/metrics/cadvisor", image!=""}[5m])\n) * on (cluster, namespace, pod) group_left(node) '
         'topk by (cluster, namespace, pod) (\n  1, max by (cluster, namespace, pod, node) (kube_pod_info{node!=""})\n)'),
        ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate",
         'sum by (cluster, namespace, pod, container) (\n  irate(container_cpu_usage_seconds_total{job="kubelet", '
         'metrics_path="/metrics/cadvisor", image!=""}[5m])\n) * on (cluster, namespace, pod) group_left(node) '
         'topk by (cluster, namespace, pod) (\n  1, max by (cluster, namespace, pod, node) (kube_pod_info{node!=""})\n)'),
    ],
    # rules-1.14/k8s.rules.container_memory_working_set_bytes.yaml
    "k8s.rules.container_memory_working_set_bytes": [
        ("node_namespace_pod_container:container_memory_working_set_bytes",
         'container_memory_working_set_bytes{job="kubelet", metrics_path="/metrics/cadvisor", image!=""}\n'
         '* on (cluster, namespace, pod) group_left(node) topk by (cluster, namespace, pod) (1,\n'
         '  max by (cluster, namespace, pod, node) (kube_pod_info{node!=""})\n)'),
    ],
    # rules-1.14/k8s.rules.container_resource.yaml
    "k8s.rules.container_resource": [
        ("cluster:namespace:pod_memory:active:kube_pod_container_resource_requests",
         'kube_pod_container_resource_requests{resource="memory",job="kube-state-metrics"}  * on (namespace, pod, cluster)\n'
         'group_left() max by (namespace, pod, cluster) (\n  (kube_pod_status_phase{phase=~"Pending|Running"} == 1)\n)'),
        ("namespace_memory:kube_pod_container_resource_requests:sum",
         'sum by (namespace, cluster) (\n    sum by (namespace, pod, cluster) (\n        max by (namespace, pod, container, cluster) (\n'
         '          kube_pod_container_resource_requests{resource="memory",job="kube-state-metrics"}\n'
         '        ) * on (namespace, pod, cluster) group_left() max by (namespace, pod, cluster) (\n'
         '          kube_pod_status_phase{phase=~"Pending|Running"} == 1\n        )\n    )\n)'),
        ("cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests",
         'kube_pod_container_resource_requests{resource="cpu",job="kube-state-metrics"}  * on (namespace, pod, cluster)\n'
         'group_left() max by (namespace, pod, cluster) (\n  (kube_pod_status_phase{phase=~"Pending|Running"} == 1)\n)'),
        ("namespace_cpu:kube_pod_container_resource_requests:sum",
         'sum by (namespace, cluster) (\n    sum by (namespace, pod, cluster) (\n        max by (namespace, pod, container, cluster) (\n'
         '          kube_pod_container_resource_requests{resource="cpu",job="kube-state-metrics"}\n'
         '        ) * on (namespace, pod, cluster) group_left() max by (namespace, pod, cluster) (\n'
         '          kube_pod_status_phase{phase=~"Pending|Running"} == 1\n        )\n    )\n)'),
    ],
}

#: promtool 2.42 cannot backfill a rule reading another rule in the same run: pass 1 is every
#: rule that reads only scraped series, pass 2 the rules that read pass 1's output.
_DEPENDENT = {"node:node_num_cpu:sum", "cluster:node_cpu:ratio_rate5m"}
PASSES: tuple[frozenset[str], frozenset[str]] = (
    frozenset(r for rules in GROUPS.values() for r, _ in rules if r not in _DEPENDENT), frozenset(_DEPENDENT))


#: kube-prometheus-stack values that turn each group on (all true by default).
CHART_GROUPS = {"node-exporter.rules": "defaultRules.rules.nodeExporterRecording",
                "node.rules": "defaultRules.rules.node",
                "k8s.rules.container_cpu_usage_seconds_total": "defaultRules.rules.k8sContainerCpuUsageSecondsTotal",
                "k8s.rules.container_memory_working_set_bytes": "defaultRules.rules.k8sContainerMemoryWorkingSetBytes",
                "k8s.rules.container_resource": "defaultRules.rules.k8sContainerResource"}


def rule_names() -> list[str]:
    return [r for rules in GROUPS.values() for r, _ in rules]


def rule_expr(record: str) -> tuple[str, str] | None:
    """(group, expression) of the rule recording ``record``, if capplan knows it."""
    for group, rules in GROUPS.items():
        for r, e in rules:
            if r == record:
                return group, e
    return None


def rules_yaml(records: frozenset[str] | set[str], labels: dict[str, str] | None = None, interval_s: int = 30) -> str:
    """A rules file with the rules named in ``records`` (groups kept), each with ``labels``
    (the Prometheus' external labels) and the groups' evaluation ``interval_s``
    (prometheus-operator's default evaluationInterval is 30s)."""
    groups = []
    for name, rules in GROUPS.items():
        chosen = [{"record": r, "expr": e, **({"labels": dict(labels)} if labels else {})} for r, e in rules if r in records]
        if chosen:
            groups.append({"name": name, "interval": f"{interval_s}s", "rules": chosen})
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=200)
