"""capplan's pool rules without a server: what a rule records and pins, how the pull reads it,
and how each piece of a window picks its variant (raw, recorded, pool rules)."""

import dataclasses

import pandas as pd
import yaml

from pipelines.config import PrometheusSource
from pipelines.domain import HistoryWindow
from pipelines.io.sources.catalog import ClusterSetup, build_queries, load_metric_catalog, pool_rules, preferred_variant
from pipelines.io.sources.pool_rules import prometheus_rule, rules_file, rules_for
from pipelines.io.sources.prometheus import _plan_tasks

FAMILIES = ("kube_state_metrics", "node_exporter", "cadvisor", "kubelet")
DAY = 86400
WINDOW = HistoryWindow(pd.Timestamp("2026-11-20", tz="UTC"), pd.Timestamp("2026-11-27", tz="UTC"))


def _setup(pool_labels=("label_a",), **kw) -> ClusterSetup:
    return ClusterSetup("east", "east", "cluster", {f: {"job": f} for f in FAMILIES}, list(pool_labels), "internal_ip", **kw)


def test_a_pool_rule_records_the_inner_expression_without_the_cluster_and_pins_it():
    cat = load_metric_catalog()
    rules = {r.group: r for r in pool_rules(cat, _setup(), PrometheusSource(), 300)}
    assert {"pool_cpu_usage", "pool_memory_requests", "pool_pods_capacity", "storage_pvc_used"} <= set(rules)
    # the drill-down's node and namespace series get rules too (one series per node or namespace)
    assert rules["node_cpu_usage"].keep == ("node", "pool") and rules["namespace_cpu_requests"].keep == ("namespace",)
    assert not any(g.startswith("limit_") for g in rules)
    no_drill = {r.group for r in pool_rules(cat, _setup(), PrometheusSource(drill_down=False), 300)}
    assert not any(g.startswith(("node_", "namespace_")) for g in no_drill) and "pool_cpu_usage" in no_drill
    cpu = rules["pool_cpu_usage"]
    assert cpu.record == "capplan:pool_cpu_usage:sum" and len(cpu.digest) == 8
    assert "max_over_time" not in cpu.expr and 'cluster="east"' not in cpu.expr and 'job="node_exporter"' in cpu.expr
    assert rules["storage_pvc_used"].keep == ("storageclass",) and cpu.keep == ("pool",)
    # other pool labels: other pool rules; the storage series do not read the pool map
    other = {r.group: r for r in pool_rules(cat, _setup(("label_b",)), PrometheusSource(), 300)}
    assert other["pool_cpu_usage"].digest != cpu.digest
    assert other["storage_pvc_used"].digest == rules["storage_pvc_used"].digest
    # the mixins' recorded series, where the cluster has them, are what the rule records
    rec = {r.group: r for r in pool_rules(cat, _setup(recorded={"instance:node_cpu_utilisation:rate5m": 0,
                                                                  "instance:node_num_cpu:sum": 0}), PrometheusSource(), 300)}
    assert "instance:node_cpu_utilisation:rate5m" in rec["pool_cpu_usage"].expr
    assert rec["pool_cpu_usage"].digest != cpu.digest


def test_the_pull_reads_a_pool_rule_only_where_the_doctor_found_it():
    cat = load_metric_catalog()
    plain = build_queries(cat, _setup(), PrometheusSource(), 3600, 300, 300, recorded=True)
    assert {q.variant for q in plain} == {"raw"}
    found = build_queries(cat, _setup(pool_rules={"pool_cpu_usage": 123.0}), PrometheusSource(), 3600, 300, 300, recorded=True)
    rule = [q for q in found if q.variant == "pool_rules"]
    assert [q.group for q in rule] == ["pool_cpu_usage"] and rule[0].since == 123.0
    digest = pool_rules(cat, _setup(), PrometheusSource(), 300)[0].digest
    assert rule[0].expr == ("max_over_time((max by (cluster, pool) (capplan:pool_cpu_usage:sum{cluster=\"east\","
                            f"capplan_rule=\"{digest}\"}}))[3599s:300s])")
    # recorded: never reads neither
    assert {q.variant for q in build_queries(cat, _setup(pool_rules={"pool_cpu_usage": 0.0}), PrometheusSource(), 3600,
                                             300, 300)} == {"raw"}


def test_each_piece_of_the_window_is_read_with_its_most_preferred_variant():
    start = WINDOW.start.timestamp()
    assert preferred_variant({"raw": None}, start) == "raw"
    assert preferred_variant({"raw": None, "recorded": start + DAY, "pool_rules": start + 3 * DAY}, start + 2 * DAY) \
        == "recorded"
    cat = load_metric_catalog()
    recorded = {r: start + 2 * DAY for r in ("instance:node_cpu_utilisation:rate5m", "instance:node_num_cpu:sum")}
    setup = _setup(recorded=recorded, pool_rules={"pool_cpu_usage": start + 4 * DAY + 1800})
    queries = [q for q in build_queries(cat, setup, PrometheusSource(drill_down=False), 3600, 300, 300, recorded=True)
               if q.group == "pool_cpu_usage"]
    have = {(q.name, q.cluster, 3600): [] for q in queries}
    tasks = _plan_tasks(queries, have, WINDOW, 3600, None)
    got = [(t.q.variant, (t.start - WINDOW.start) / pd.Timedelta(hours=1), (t.end - WINDOW.start) / pd.Timedelta(hours=1))
           for t in tasks]
    assert got == [("raw", 0, 48), ("recorded", 48, 97), ("pool_rules", 97, 168)]  # since aligned up to the step
    # a piece already stored by any variant is not pulled again
    have[(queries[0].name, "east", 3600)] = [(WINDOW.start, WINDOW.start + pd.Timedelta(days=2))]
    assert [t.q.variant for t in _plan_tasks(queries, have, WINDOW, 3600, None)] == ["recorded", "pool_rules"]


def test_the_rules_file_and_the_prometheusrule_hold_the_same_groups():
    cat = load_metric_catalog()
    east, west = _setup(), dataclasses.replace(_setup(("label_b",)), name="west", label_value="west")
    rules = rules_for(cat, [east, east, west], PrometheusSource(), 300)
    assert len(rules) == len({(r.record, r.digest) for r in rules})  # each once
    # west's storage rules are east's (no pool map in them): shared
    assert len([r for r in rules if r.group == "storage_pvc_used"]) == 1
    assert len([r for r in rules if r.group == "pool_cpu_usage"]) == 2
    groups = yaml.safe_load(rules_file(rules, {"prometheus_replica": "r0"}))["groups"]
    assert groups[0]["interval"] == "60s" and groups[0]["rules"][0]["labels"] == {
        "prometheus_replica": "r0", "capplan_rule": rules[0].digest}
    doc = yaml.safe_load(prometheus_rule(rules))
    assert doc["kind"] == "PrometheusRule" and doc["spec"]["groups"] == yaml.safe_load(rules_file(rules))["groups"]
