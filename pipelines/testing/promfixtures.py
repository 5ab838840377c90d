"""Prometheus fixtures shared by test modules and benchmarks: a capplan site pointed at a
server, and servers built once per process (memoised by name, so two test modules asking
for the same fleet share one server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .kubefleet import TEST_CATALOG_TYPES, ClusterSpec, Fleet, FleetSpec, PoolSpec, default_spec
from .promserver import PrometheusServer, serve_fleet
from .site import demo_site

__all__ = ["AS_OF", "prom_site", "Served", "served", "stop_served", "main_spec", "doctor_specs", "MAIN_MAX_SAMPLES",
           "recorded_spec", "RECORDED_WEST_SINCE_DAY", "pool_rules_spec", "POOL_RULES_SINCE_DAY", "autoscaler_spec", "HOSTILE_LABELS", "HOSTILE_CLUSTER", "hostile_spec"]

AS_OF = dt.date(2026, 11, 27)
#: The main fixture's --query.max-samples: low enough that 14 days of a pool query do not
#: fit in one request (the time splitting and the 422 handling have work to do).
MAIN_MAX_SAMPLES = 400_000


def prom_site(folder: Path, url: str, history_days: int = 14, extra: str = "", as_of: dt.date = AS_OF) -> Path:
    """A capplan site (config + catalogs with the fixture's instance types) reading
    ``url``; ``extra`` is YAML indented under ``source.prometheus``."""
    cfg = demo_site(folder, as_of=as_of)
    inst = folder / "catalogs" / "instances.yaml"
    inst.write_text(inst.read_text().replace("storage_types:", TEST_CATALOG_TYPES + "storage_types:", 1))
    text = cfg.read_text().replace("kind: demo                # demo | prometheus | file", "kind: prometheus")
    text = text.replace("    url: http://127.0.0.1:9090\n", f"    url: {url}\n    timeout_s: 30\n    retries: 1\n{extra}")
    text = text.replace("history_days: 180", f"history_days: {history_days}")
    for key in ("headers", "auth", "verify_tls", "step"):  # ``extra`` may set what the shipped file sets
        if f"    {key}:" in extra:
            text = _drop_later(text, key, extra)
    cfg.write_text(text)
    return cfg


def _drop_later(text: str, key: str, extra: str) -> str:
    """Remove the shipped ``key:`` line under source.prometheus (the one after ``extra``)."""
    start = text.index(extra) + len(extra)
    head, tail = text[:start], text[start:]
    return head + re.sub(rf"(?m)^    {key}: .*\n", "", tail, count=1)


@dataclass
class Served:
    fleet: Fleet
    server: PrometheusServer
    folder: Path

    @property
    def url(self) -> str:
        return self.server.url


_SERVED: dict[str, Served] = {}
_LOCK = threading.Lock()


def served(name: str, folder: Path, spec: FleetSpec, **server_kwargs) -> Served:
    """The server ``name``, built on first use (backfill + start) and kept running."""
    with _LOCK:
        if name not in _SERVED:
            fleet, server = serve_fleet(spec, folder, **server_kwargs)
            _SERVED[name] = Served(fleet, server, folder)
        return _SERVED[name]


def stop_served(name: str | None = None) -> None:
    with _LOCK:
        for key in [name] if name else list(_SERVED):
            s = _SERVED.pop(key, None)
            if s:
                s.server.stop()


def main_spec(as_of: dt.date = AS_OF) -> FleetSpec:
    """18 days: an EKS cluster on kube-prometheus-stack with two HA replicas and a Karpenter
    cluster on kube-prometheus with Rook/Ceph (:func:`.kubefleet.default_spec`)."""
    return default_spec(as_of, 18)


#: The day (index) from which the recorded fixture's west cluster has its recording rules.
RECORDED_WEST_SINCE_DAY = 3


def recorded_spec(as_of: dt.date = AS_OF, days: int = 8) -> FleetSpec:
    """The main fleet's two clusters scraped every minute (the rules' rate(...[5m]) needs
    several scrapes in five minutes), with kube-prometheus-stack's recording rules evaluated
    every 30 s: east for the whole history (a stack running for months), west only from day
    :data:`RECORDED_WEST_SINCE_DAY` (the rules were enabled later), so a pull reads west's raw
    series before that day and its recorded series after."""
    base = default_spec(as_of, days)
    east, west = base.clusters
    return dataclasses.replace(base, scrape_s=60, clusters=(dataclasses.replace(east, rules_since_day=0),
                                                            dataclasses.replace(west, rules_since_day=RECORDED_WEST_SINCE_DAY)))


#: cluster -> (the day its mixin rules start, the day capplan's pool rules start) in the
#: pool-rules fixture (:func:`pool_rules_spec`).
POOL_RULES_SINCE_DAY = {"east": (0, 2), "west": (2, 3)}


def pool_rules_spec(as_of: dt.date = AS_OF, days: int = 5) -> FleetSpec:
    """:func:`recorded_spec` over five days, with capplan's pool rules too (evaluated every
    minute over the mixins' outputs, a third promtool pass): east has the mixins' rules for
    the whole history and the pool rules from day 2; west the mixins' from day 2 and the pool
    rules from day 3. A pull of the last four days reads, per series, west's raw series,
    then its recorded series, then its pool rules (east: recorded, then pool rules)."""
    base = recorded_spec(as_of, days)
    return dataclasses.replace(base, clusters=tuple(
        dataclasses.replace(c, rules_since_day=POOL_RULES_SINCE_DAY[c.name][0],
                            pool_rules_since_day=POOL_RULES_SINCE_DAY[c.name][1]) for c in base.clusters))


def doctor_specs(as_of: dt.date = AS_OF) -> dict[str, tuple[FleetSpec, dict]]:
    """Small servers for the doctor: (spec, server options) by name."""
    gke = (PoolSpec("default-pool", 2, ("n2-standard-2",)), PoolSpec("spot-pool", 2, ("n2-standard-2",), "yes"))
    aks = (PoolSpec("system", 2, ("Standard_D2s_v5",)), PoolSpec("user", 2, ("Standard_D2s_v5",), "yes"))
    return {
        # kube-prometheus-stack with its default (empty) KSM allowlist: no kube_node_labels at all
        "no-allowlist": (FleetSpec(as_of, 3, (ClusterSpec("gke-lab", "gke", "kps", gke, allowlist=False, completed_pods=False),)), {}),
        # the chart's default retention: 10 days
        "ten-days": (FleetSpec(as_of, 10, (ClusterSpec("aks-prod", "aks", "kps", aks, completed_pods=False),)),
                     {"retention": "10d"}),
        # kube-state-metrics running twice without sharding: every KSM series twice
        "duplicates": (FleetSpec(as_of, 15, (ClusterSpec("gke-prod", "gke", "kp", gke, ksm_copies=2),)), {}),
        # a self-managed (kubeadm) cluster: its own pool label, control-plane nodes with a role and no pool label,
        # one virtual-kubelet node (no pool label, no instance type)
        "kubeadm": (FleetSpec(as_of, 15, (ClusterSpec("onprem", "kubeadm", "kp", (
            PoolSpec("control-plane", 3, ("m6i.large",)), PoolSpec("general", 2, ("m6i.large",)),
            PoolSpec("virtual", 1, ("m6i.large",))), completed_pods=False),)), {}),
    }


def autoscaler_spec(as_of: dt.date = AS_OF, days: int = 16) -> FleetSpec:
    """Three small clusters with autoscaler metrics (:mod:`.autoscalers`): west runs
    Karpenter (limits on its ``default`` NodePool, raised half-way; ``system`` has none),
    east runs cluster-autoscaler with ``--emit-per-nodegroup-metrics`` (EKS node groups),
    south runs cluster-autoscaler without it (only the cluster-wide limits)."""
    return FleetSpec(as_of, days, (
        ClusterSpec("west", "karpenter", "kp", (PoolSpec("default", 2, ("c6i.large",), "mixed"),
                                               PoolSpec("system", 1, ("r6i.large",))),
                    completed_pods=False, autoscaler="karpenter"),
        ClusterSpec("east", "eks", "kps", (PoolSpec("ng-general", 2, ("m6i.large",)), PoolSpec("ng-batch", 2, ("c6i.large",), "yes")),
                    completed_pods=False, autoscaler="cluster-autoscaler"),
        ClusterSpec("south", "eks", "kps", (PoolSpec("ng-web", 2, ("m6i.large",)),), completed_pods=False,
                    autoscaler="cluster-autoscaler-wide"),
    ))


#: Label values an attacker (or Murphy) puts in a pool or instance-type name: a line break,
#: quotes and a backslash, HTML that runs script when not escaped (it sets the page title:
#: the browser test looks for it), a spreadsheet formula, a path, a right-to-left override,
#: and 10 KB.
HOSTILE_LABELS = ("line\nbreak", 'say "hi" \\ back', "<img src=x onerror=\"document.title='XSS-img'\">",
                  "=cmd|' /C calc'!A0", "../../etc", "\u202eevil-gpj.exe", "x" * 10240)
#: The cluster's name: markup that closes an attribute and opens a script.
HOSTILE_CLUSTER = "\"><script>document.title='XSS-script'</script>"


def hostile_spec(as_of: dt.date = AS_OF, days: int = 15) -> FleetSpec:
    """One EKS cluster named :data:`HOSTILE_CLUSTER` with one node per pool, each pool named
    by one of :data:`HOSTILE_LABELS` and running an instance type named by the next one
    (a type the generator does not know has the shape of m6i.large)."""
    n = len(HOSTILE_LABELS)
    pools = tuple(PoolSpec(name, 1, (HOSTILE_LABELS[(i + 1) % n],)) for i, name in enumerate(HOSTILE_LABELS))
    return FleetSpec(as_of, days, (ClusterSpec(HOSTILE_CLUSTER, "eks", "kps", pools, completed_pods=False),))
