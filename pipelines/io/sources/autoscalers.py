"""Autoscaled pools on the server: which autoscaler reports limits, for which pools.

Read by :func:`pipelines.io.sources.doctor.inspect` after the inventory (cheap instant
queries). Karpenter (kubernetes-sigs/karpenter ``pkg/controllers/metrics/nodepool/controller.go``):
``karpenter_nodepools_limit{nodepool, resource_type}`` (v1.0+; ``karpenter_nodepool_limit`` in
v0.32-v0.37; ``karpenter_provisioner_limit{provisioner}`` before), one series per key of
``spec.limits``, cpu in cores and memory in bytes of node *capacity*. cluster-autoscaler
(kubernetes/autoscaler ``cluster-autoscaler/metrics/metrics.go``):
``cluster_autoscaler_node_group_max_count{node_group}`` with ``--emit-per-nodegroup-metrics``,
and the cluster-wide ``cluster_autoscaler_max_nodes_count``, ``cluster_autoscaler_cpu_limits_cores``
and ``cluster_autoscaler_memory_limits_bytes`` (``direction="maximum"``). The pulls are the
catalog's ``limit`` entries (metrics.yaml); this module marks the families so they run, maps
node groups to pools and says what it found.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["KARPENTER_LIMITS", "node_group_pool", "inspect_autoscalers"]

#: Karpenter's limit metric by version, and the label naming its object.
KARPENTER_LIMITS = (("karpenter_nodepools_limit", "nodepool"), ("karpenter_nodepool_limit", "nodepool"),
                    ("karpenter_provisioner_limit", "provisioner"))
#: cluster-autoscaler's cluster-wide limits and the resource each bounds.
CA_WIDE = {"cluster_autoscaler_max_nodes_count": "nodes", "cluster_autoscaler_cpu_limits_cores": "cpu",
           "cluster_autoscaler_memory_limits_bytes": "memory"}
GIB = 2**30


def node_group_pool(node_group: str, pools: list[str]) -> str | None:
    """The pool a cluster-autoscaler node group scales. The cloud's own naming first: EKS
    ``eks-<nodegroup>-<uuid>``, GKE ``gke-<cluster>-<pool>-<hash>-grp`` (the last path part
    of an instance-group URL); else the longest pool name the id contains as a whole word.
    None when no pool matches."""
    name = node_group.rsplit("/", 1)[-1]
    for pool in sorted(pools, key=len, reverse=True):
        p = re.escape(pool)
        if re.fullmatch(rf"eks-{p}-[0-9a-f-]+", name) or re.fullmatch(rf"gke-.+-{p}-[0-9a-f]+-grp", name):
            return pool
    found = [p for p in pools if re.search(rf"(^|[-_./]){re.escape(p)}($|[-_./])", name)]
    return max(found, key=len) if found else None


def _fmt(resource: str, v: float) -> str:
    return f"{v / GIB:,.0f} GiB" if resource == "memory" else f"{v:,.0f} {'cores' if resource == 'cpu' else resource}"


def _tagged(name: str, expr: str) -> str:
    """``expr`` with a ``metric`` label naming ``name`` (range functions drop ``__name__``)."""
    return f'label_replace({expr}, "metric", "{name}", "", "")'


def _karpenter(ctx, cs, pools: list[str]) -> tuple[list[str], list[str]]:
    c, lb, sel = ctx.c, ctx.lookback, cs.selector(None)
    expr = " or ".join(_tagged(name, f"max by ({c}, {label}, resource_type) (last_over_time({name}{{{sel}}}[{lb}]))")
                       for name, label in KARPENTER_LIMITS)
    rows = ctx.instant("autoscaling:karpenter", expr)
    if not rows:
        return [], []
    cs.jobs["karpenter"] = {}
    by_pool: dict[str, dict[str, str]] = {}
    rank = {name: i for i, (name, _) in enumerate(KARPENTER_LIMITS)}
    # during an upgrade two spellings report the same limit: the newest spelling's value is shown once
    for r in sorted(rows, key=lambda r: rank.get(r["metric"].get("metric", ""), len(rank))):
        m = r["metric"]
        rtype = m.get("resource_type", "")
        if rtype in ("cpu", "memory", "nodes"):
            limits = by_pool.setdefault(m.get("nodepool") or m.get("provisioner"), {})
            limits.setdefault(rtype, f"{rtype} {_fmt(rtype, float(r['value'][1]))}")
    names = ", ".join(sorted({r["metric"].get("metric", "") for r in rows}))
    parts = [f"Karpenter ({names}) limits: " + "; ".join(f"{p}: {', '.join(sorted(v.values()))}" for p, v in sorted(by_pool.items()))]
    unlimited = sorted(set(pools) - set(by_pool))
    if unlimited:
        parts.append(f"pools without limits: {', '.join(unlimited)}")
    unknown = sorted(set(by_pool) - set(pools))
    return parts, [f"NodePool(s) {', '.join(unknown)} have limits but no nodes in the inventory"] if unknown else []


def _cluster_autoscaler(ctx, cs, pools: list[str]) -> tuple[list[str], list[str], str]:
    c, lb, sel = ctx.c, ctx.lookback, cs.selector(None)
    groups = ctx.instant("autoscaling:cluster-autoscaler",
                         f"max by ({c}, node_group) (last_over_time(cluster_autoscaler_node_group_max_count{{{sel}}}[{lb}]))")
    wide = ctx.instant("autoscaling:cluster-autoscaler-wide", " or ".join(
        _tagged(name, f'max by ({c}) (last_over_time({name}{{{sel}direction=~"|maximum"}}[{lb}]))') for name in CA_WIDE))
    if not (groups or wide):
        return [], [], ""
    cs.jobs["cluster_autoscaler"] = {}
    parts, warn, fix = [], [], ""
    mapped: dict[str, float] = {}
    for r in groups:
        g = r["metric"].get("node_group", "")
        pool = node_group_pool(g, pools)
        if pool:
            cs.node_groups[g] = pool
            mapped[pool] = mapped.get(pool, 0.0) + float(r["value"][1])  # a pool in two groups (one per zone) adds up
        else:
            warn.append(f"node group {g} matches no pool of the inventory (its limit is not planned)")
    if mapped:
        parts.append("cluster-autoscaler node groups: " + "; ".join(f"{p}: max {v:,.0f} nodes" for p, v in sorted(mapped.items())))
    if wide:
        found = {CA_WIDE[r["metric"]["metric"]]: float(r["value"][1]) for r in wide if r["metric"].get("metric") in CA_WIDE}
        text = ", ".join(_fmt(res, found[res]) for res in ("nodes", "cpu", "memory") if res in found)
        parts.append(f"cluster-wide limits ({text}): shown here, not planned per pool")
        if not groups:
            warn.append("cluster-autoscaler exports no per-node-group limits: its pools are planned as fixed")
            fix = "start cluster-autoscaler with --emit-per-nodegroup-metrics=true"
    return parts, warn, fix


def inspect_autoscalers(ctx, setup, clusters, inventory: pd.DataFrame) -> None:
    """Find Karpenter's and cluster-autoscaler's limits per cluster: mark the families
    (``cs.jobs``) so the catalog's limit entries are pulled, map node groups to pools
    (``cs.node_groups``) and add one ``autoscaling`` check per cluster that has nodes in the
    inventory (a cluster without kube-state-metrics has no pools to plan: not asked)."""
    for cs in clusters:
        pools = sorted(inventory.loc[inventory["cluster"] == cs.name, "pool"].unique()) if len(inventory) else []
        if not pools:  # no nodes from kube-state-metrics here: the clusters check says so; no limit to plan against
            continue
        k_parts, k_warn = _karpenter(ctx, cs, pools)
        ca_parts, ca_warn, fix = _cluster_autoscaler(ctx, cs, pools)
        parts, warn = k_parts + ca_parts, k_warn + ca_warn
        if not parts:
            setup.add("autoscaling", "OK", "no autoscaler limits found: every pool is planned as fixed (declare "
                      "pool_kind: autoscaled with limits in a policy for an autoscaled pool)", cluster=cs.name)
            continue
        setup.add("autoscaling", "WARN" if warn else "OK", "; ".join(parts + warn), fix, cs.name)
