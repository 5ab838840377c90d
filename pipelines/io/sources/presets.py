"""Node-pool label presets: which Kubernetes node labels name a node's pool, capacity type,
instance type and zone on EKS, GKE, AKS and Karpenter, and how kube-state-metrics names
them. Pure functions (no I/O).

kube-state-metrics exports node labels only when they are allow-listed
(``--metric-labels-allowlist``; the kube-prometheus-stack chart's default is empty, and
since KSM v2.10 ``kube_node_labels`` is not emitted at all without it), and renames each
key: every character outside ``[a-zA-Z0-9_]`` becomes ``_``, camelCase is split and
lower-cased, and ``label_`` goes in front (kube-state-metrics internal/store/utils.go
``labelName``, ``SanitizeLabelName``; docs/research/real-stacks.md 1.2). So
``eks.amazonaws.com/capacityType`` is ``label_eks_amazonaws_com_capacity_type``.

Label keys (docs/research/real-stacks.md section 7):
  EKS managed node groups  ``eks.amazonaws.com/nodegroup``, ``eks.amazonaws.com/capacityType`` (ON_DEMAND | SPOT)
  Karpenter                ``karpenter.sh/nodepool`` (older: ``karpenter.sh/provisioner-name``),
                           ``karpenter.sh/capacity-type`` (spot | on-demand | reserved)
  GKE                      ``cloud.google.com/gke-nodepool``, ``cloud.google.com/gke-spot`` or
                           ``cloud.google.com/gke-preemptible`` ("true")
  AKS                      ``kubernetes.azure.com/agentpool`` (legacy ``agentpool``),
                           ``kubernetes.azure.com/scalesetpriority`` (spot | regular)
  every provider           ``node.kubernetes.io/instance-type``, ``topology.kubernetes.io/zone``
                           (and their beta names)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from forecasting.policy import UNKNOWN_INSTANCE_TYPE

__all__ = ["PRESETS", "NodeLabelPreset", "ksm_label", "pool_keys", "NodeLabelPlan", "plan_node_labels",
           "inventory_from_labels", "allowlist_snippet", "provider_of", "UNLABELLED",
           "CONTROL_PLANE_POOL", "CONTROL_PLANE_ROLES", "pool_of"]

#: The pool of a node that carries none of the pool labels looked for.
UNLABELLED = "unlabelled"
#: Self-managed clusters (kubeadm, kops, k3s, RKE) show their control-plane nodes, which
#: carry no pool label, only ``node-role.kubernetes.io/control-plane`` (older: ``master``),
#: an empty-valued label that kube-state-metrics exports as ``kube_node_role{role=...}``
#: without any allowlist (kube-state-metrics internal/store/node.go). Such a node without a
#: pool label is in this pool, not "unlabelled".
CONTROL_PLANE_POOL = "control-plane"
CONTROL_PLANE_ROLES = ("control-plane", "master")


@dataclass(frozen=True)
class NodeLabelPreset:
    """Kubernetes label keys (not KSM names) for one provider, in order of precedence."""

    name: str
    pool: tuple[str, ...]
    capacity_type: tuple[str, ...]


PRESETS: dict[str, NodeLabelPreset] = {
    # Karpenter first: a Karpenter node on EKS may carry EKS labels as well.
    "karpenter": NodeLabelPreset("karpenter", ("karpenter.sh/nodepool", "karpenter.sh/provisioner-name"),
                                 ("karpenter.sh/capacity-type",)),
    "eks": NodeLabelPreset("eks", ("eks.amazonaws.com/nodegroup",), ("eks.amazonaws.com/capacityType",)),
    "gke": NodeLabelPreset("gke", ("cloud.google.com/gke-nodepool",),
                           ("cloud.google.com/gke-spot", "cloud.google.com/gke-preemptible")),
    "aks": NodeLabelPreset("aks", ("kubernetes.azure.com/agentpool", "agentpool"), ("kubernetes.azure.com/scalesetpriority",)),
}
INSTANCE_TYPE_KEYS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
ZONE_KEYS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
#: The provider's own labels, by the prefix of ``kube_node_info``'s ``provider_id``.
PROVIDER_PRESETS = {"aws": ("karpenter", "eks"), "gce": ("gke",), "azure": ("aks",)}

_SANITISE = re.compile(r"[^a-zA-Z0-9_]")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_KSM_NAME = re.compile(r"^label_[a-z0-9_]+$")


def ksm_label(key: str) -> str:
    """The ``kube_node_labels`` label name kube-state-metrics gives Kubernetes label ``key``
    (``cloud.google.com/gke-nodepool`` -> ``label_cloud_google_com_gke_nodepool``). A name
    that is already a KSM name (``label_...``) is returned as it is."""
    if _KSM_NAME.match(key):
        return key
    return "label_" + _CAMEL.sub(r"\1_\2", _SANITISE.sub("_", key)).lower()


def pool_keys(preset: str, custom: str | None) -> tuple[str, ...]:
    """Kubernetes keys that may name the pool, in precedence order: the configured label
    first, then the preset's (``auto``: every provider's)."""
    keys: list[str] = [custom] if custom else []
    if preset == "auto":
        for p in PRESETS.values():
            keys += p.pool
    elif preset != "custom":
        keys += PRESETS[preset].pool
    return tuple(dict.fromkeys(keys))


def _capacity_keys(preset: str, custom: str | None) -> tuple[str, ...]:
    keys: list[str] = [custom] if custom else []
    for name, p in PRESETS.items():
        if preset in ("auto", name):
            keys += p.capacity_type
    return tuple(dict.fromkeys(keys))


def _spot(key: str, value: str) -> bool | None:
    """Whether the label says spot (None: it says nothing). Values differ in case between
    providers (``SPOT``, ``spot``, ``"true"``); reserved and regular count as on-demand."""
    v = value.strip().lower()
    if not v:
        return None
    if key.startswith("cloud.google.com/gke-"):
        return v == "true"
    return v in ("spot", "preemptible", "true")


@dataclass
class NodeLabelPlan:
    """What one cluster's nodes are labelled with and which labels capplan uses.

    ``pool_labels`` are the KSM names present in the cluster, in precedence order (they go
    into PromQL); ``found`` every ``label_*`` name seen on ``kube_node_labels``."""

    cluster: str
    preset: str
    pool_keys: tuple[str, ...]
    pool_labels: list[str]
    found: list[str]
    nodes: int
    unlabelled: int
    no_instance_type: int
    providers: list[str] = field(default_factory=list)
    #: Nodes with neither a pool label nor an instance type while others have both: virtual
    #: or serverless nodes (EKS Fargate runs one per pod, virtual-kubelet), with no capacity
    #: to buy. Left out of the inventory and of the unlabelled share.
    virtual: list[str] = field(default_factory=list)

    @property
    def unlabelled_pct(self) -> float:
        return 100.0 * self.unlabelled / self.nodes if self.nodes else 0.0

    @property
    def no_instance_type_pct(self) -> float:
        return 100.0 * self.no_instance_type / self.nodes if self.nodes else 0.0

    @property
    def detected(self) -> str:
        """The presets whose pool labels were found (``auto`` resolved)."""
        names = [n for n, p in PRESETS.items() if any(ksm_label(k) in self.pool_labels for k in p.pool)]
        if any(ksm_label(k) in self.pool_labels for k in self.pool_keys if not any(k in p.pool for p in PRESETS.values())):
            names.insert(0, "custom")
        return "+".join(names) or "none"


def _first(labels: dict[str, str], keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    for k in keys:
        v = labels.get(ksm_label(k), "")
        if v:
            return k, v
    return None, None


def pool_of(labels: dict[str, str], keys: tuple[str, ...], control_plane: bool = False) -> str:
    """A node's pool: its first pool label in ``keys``, else ``control-plane`` for a
    control-plane node (``kube_node_role``), else ``unlabelled``."""
    return _first(labels, keys)[1] or (CONTROL_PLANE_POOL if control_plane else UNLABELLED)


def plan_node_labels(cluster: str, nodes: dict[str, dict[str, str]], preset: str, custom_pool: str | None,
                     instance_type_label: str | None, providers: list[str] | None = None,
                     control_plane: set[str] | frozenset = frozenset()) -> NodeLabelPlan:
    """Which pool labels one cluster has. ``nodes`` maps node -> its ``kube_node_labels``
    labels (KSM names); ``control_plane`` holds the nodes ``kube_node_role`` names as
    control-plane."""
    keys = pool_keys(preset, custom_pool)
    found = sorted({k for labels in nodes.values() for k in labels if k.startswith("label_")})
    present = [ksm_label(k) for k in keys if ksm_label(k) in found]
    itype_keys = ((instance_type_label,) if instance_type_label else ()) + INSTANCE_TYPE_KEYS
    no_pool = {n for n, labels in nodes.items() if pool_of(labels, keys, n in control_plane) == UNLABELLED}
    no_itype = {n for n, labels in nodes.items() if _first(labels, itype_keys)[1] is None}
    # only when the labels are exported at all: without an allowlist every node looks virtual
    virtual = sorted(no_pool & no_itype) if present and len(no_itype) < len(nodes) else []
    return NodeLabelPlan(cluster, preset, keys, list(dict.fromkeys(present)), found, len(nodes) - len(virtual),
                         len(no_pool) - len(virtual), len(no_itype) - len(virtual), sorted(set(providers or [])), virtual)


def inventory_from_labels(cluster: str, nodes: dict[str, dict[str, str]], alloc: dict[str, dict[str, float]],
                          preset: str, custom: dict[str, str | None],
                          control_plane: set[str] | frozenset = frozenset(), leave_out: set[str] | frozenset = frozenset()) -> pd.DataFrame:
    """One row per node: pool, tier, zone, instance type and capacity type from its labels
    (:func:`pool_of`), allocatable from ``alloc`` (node -> {cpu, memory, pods,
    ephemeral_storage}); nodes in ``leave_out`` (:attr:`NodeLabelPlan.virtual`) are skipped.

    ``custom`` holds the configured label keys (``pool``, ``tier``, ``zone``,
    ``instance_type``, ``capacity_type``; None for the preset's). Out: the inventory
    columns (:data:`pipelines.io.sources.common.INVENTORY_COLUMNS`)."""
    keys = pool_keys(preset, custom.get("pool"))
    cap_keys = _capacity_keys(preset, custom.get("capacity_type"))
    itype_keys = ((custom["instance_type"],) if custom.get("instance_type") else ()) + INSTANCE_TYPE_KEYS
    zone_keys = ((custom["zone"],) if custom.get("zone") else ()) + ZONE_KEYS
    rows = []
    for node, labels in sorted(nodes.items()):
        if node in leave_out:
            continue
        pool = pool_of(labels, keys, node in control_plane)
        tier = (_first(labels, (custom["tier"],))[1] if custom.get("tier") else None) or pool
        spot = None
        for k in cap_keys:
            v = labels.get(ksm_label(k), "")
            s = _spot(k, v) if v else None
            if s is not None:
                spot = s
                break
        a = alloc.get(node, {})
        rows.append({"cluster": cluster, "pool": pool, "tier": tier, "zone": _first(labels, zone_keys)[1] or "unknown",
                     "node": node, "instance_type": _first(labels, itype_keys)[1] or UNKNOWN_INSTANCE_TYPE,
                     "cpu_cores": float(a.get("cpu", 0.0)), "memory_bytes": float(a.get("memory", 0.0)),
                     "pods": float(a.get("pods", 0.0)), "storage_bytes": float(a.get("ephemeral_storage", 0.0)),
                     "capacity_type": "spot" if spot else "on-demand"})
    return pd.DataFrame(rows)


def provider_of(provider_id: str) -> str | None:
    """``aws:///us-east-1a/i-0abc`` -> ``aws`` (``kube_node_info``'s ``provider_id``)."""
    m = re.match(r"^([a-z]+)://", provider_id or "")
    return m.group(1) if m else None


def allowlist_snippet(plan: NodeLabelPlan, custom: dict[str, str | None]) -> str:
    """The kube-prometheus-stack values that make kube-state-metrics export the labels
    capplan needs (a KSM ``--metric-labels-allowlist`` entry; list every key exactly:
    patterns inside a key need KSM v2.20)."""
    presets = [plan.preset] if plan.preset not in ("auto", "custom") else []
    if not presets and plan.preset == "auto":
        for prov in plan.providers:
            presets += PROVIDER_PRESETS.get(prov, ())
        presets = presets or list(PRESETS)
    keys: list[str] = [v for k in ("pool", "tier", "capacity_type", "instance_type", "zone") if (v := custom.get(k))]
    for p in presets:
        keys += [*PRESETS[p].pool[:1], *PRESETS[p].capacity_type[:1]]
    keys += [INSTANCE_TYPE_KEYS[0], ZONE_KEYS[0]]
    keys = [k for k in dict.fromkeys(keys) if not _KSM_NAME.match(k)]
    return ("kube-state-metrics:\n  metricLabelsAllowlist:\n    - nodes=[" + ",".join(keys) + "]"
            f"   # or the flag --metric-labels-allowlist=nodes=[{','.join(keys)}]")
