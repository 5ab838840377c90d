"""A real Prometheus for tests and benchmarks: a :mod:`.kubefleet` fleet written as
OpenMetrics, backfilled with ``promtool tsdb create-blocks-from openmetrics`` (one file
and one promtool per cluster and HA replica, in parallel processes), served by Debian's
``prometheus`` on 127.0.0.1 with a long retention and, optionally, a lowered
``--query.max-samples``.

Clusters with ``rules_since_day`` also get the history of kube-prometheus-stack's recording
rules (:mod:`pipelines.io.sources.mixin_rules`), the way months of a running stack leave it: each (cluster, HA
replica) is backfilled into its own folder, a Prometheus is started on it alone (each
replica evaluates its own rules), ``promtool tsdb create-blocks-from rules`` evaluates the
rules over it in two passes (2.42 cannot backfill a rule that reads another rule in the same
run: the second pass runs after the first pass's blocks are loaded), and every block is then
moved into the one TSDB the test server reads. Clusters with ``pool_rules_since_day`` then
get capplan's pool rules the same way, in a third pass: rendered by
:mod:`pipelines.io.sources.pool_rules` from what the doctor finds on that replica's server,
as ``capplan rules`` renders them for a user."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .kubefleet import Fleet, FleetSpec, build_fleet, groups, write_group
from ..config import PrometheusSource
from ..domain import HistoryWindow
from ..io.sources.catalog import load_metric_catalog, rule_names
from ..io.sources.doctor import inspect
from ..io.sources.mixin_rules import PASSES, rules_yaml
from ..io.sources.promapi import PromClient
from ..io.sources.pool_rules import DEFAULT_INTERVAL_S, rules_file, rules_for
from .node_exporter import NodeExporterTemplate, node_exporter_template, parse_template

__all__ = ["PROMETHEUS", "PROMTOOL", "free_port", "PrometheusServer", "backfill", "serve_fleet"]

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_tsdb(folder: Path, spec: FleetSpec, ci: int, replica: int) -> Path:
    """Where a group's raw blocks go: the shared TSDB, or the replica's own folder when its
    rules are evaluated over it first."""
    if spec.clusters[ci].rules_since_day is None:
        return folder / "tsdb"
    return folder / "replicas" / f"{ci}-{replica}"


def _backfill_group(job: Path, ci: int, replica: int, part: int) -> int:
    """In a worker process: rebuild the (seeded) fleet, write one group, run promtool."""
    d = json.loads(job.read_text())
    folder = job.parent
    spec = FleetSpec.from_json(d["spec"])
    fleet = build_fleet(spec, parse_template(d["template"], d["source"]))
    om = Path(folder) / f"group-{ci}-{replica}-{part}.om"
    samples = write_group(fleet, ci, replica, om, part)
    target = _group_tsdb(Path(folder), spec, ci, replica)
    target.mkdir(parents=True, exist_ok=True)
    # promtool parses the whole file once per block it writes; its block ranges are 2h x 3^k,
    # aligned to multiples of the range. 13122h (2h x 3^8, about 18 months) puts a fixture in
    # one block (two passes over the file) instead of one per 20 days at the default 720h.
    r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=13122h", str(om),
                        str(target)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"promtool failed on {om.name}: {r.stderr[-2000:]}")
    om.unlink()
    return samples


def backfill(spec: FleetSpec, folder: Path, template: NodeExporterTemplate | None = None,
             workers: int = 2) -> tuple[Fleet, Path, int]:
    """Generate ``spec``, write it to ``folder/tsdb``; returns (fleet, tsdb, samples).

    Each (cluster, replica, half) is written and backfilled by its own worker process (a plain
    ``python -m pipelines.testing.promserver``: no fork of the caller, which may run
    threads), ``workers`` at a time."""
    template = template or node_exporter_template()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tsdb").mkdir(exist_ok=True)
    job = folder / "fleet.json"
    job.write_text(json.dumps({"spec": spec.to_json(), "template": template.text, "source": template.source}))

    def run(group: tuple[int, int, int]) -> int:
        r = subprocess.run([sys.executable, "-m", "pipelines.testing.promserver", str(job), *map(str, group)],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"backfill of group {group} failed: {r.stderr[-3000:]}")
        return int(r.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        samples = sum(pool.map(run, groups(spec)))
    fleet = build_fleet(spec, template)
    replicas = [(ci, r) for ci, cs in enumerate(spec.clusters) if cs.rules_since_day is not None for r in range(cs.replicas)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        samples += sum(pool.map(lambda g: backfill_rules(fleet, folder, *g), replicas))
    return fleet, folder / "tsdb", samples


def _move_blocks(src: Path, dst: Path) -> None:
    """Move every TSDB block (a folder with a meta.json) of ``src`` into ``dst``."""
    for block in src.iterdir():
        if (block / "meta.json").exists():
            block.rename(dst / block.name)


def backfill_rules(fleet: Fleet, folder: Path, ci: int, replica: int) -> int:
    """Evaluate the recording rules over replica ``replica`` of cluster ``ci`` (its own
    folder, see :func:`_group_tsdb`) from the cluster's ``rules_since_day`` to the end of the
    data, in the passes of :data:`PASSES`, then capplan's pool rules from its
    ``pool_rules_since_day`` (a third pass: they read the mixins' outputs), then move its raw
    and rule blocks into ``folder/tsdb``. Returns the samples written."""
    own = _group_tsdb(folder, fleet.spec, ci, replica)
    end = fleet.window_end + fleet.spec.after_s
    labels = {k: v for k, v in fleet.replica_labels(ci, replica).items() if k != "cluster"}
    samples = 0
    for i, records in enumerate(PASSES):
        rules = folder / f"rules-{ci}-{replica}-{i}.yaml"
        rules.write_text(rules_yaml(records, labels, fleet.spec.rules_eval_s))
        samples += _evaluate_rules(own, rules, folder / f"rules-{ci}-{replica}-{i}", fleet.rules_start(ci), end,
                                   fleet.spec.rules_eval_s, f"rules-{ci}-{replica}")
    pool_start = fleet.rules_start(ci, pool_rules=True)
    if pool_start is not None:
        rules = folder / f"pool-rules-{ci}-{replica}.yaml"
        rules.write_text(_pool_rules_text(own, labels, fleet))
        samples += _evaluate_rules(own, rules, folder / f"pool-rules-{ci}-{replica}", pool_start, end,
                                   DEFAULT_INTERVAL_S, f"pool-rules-{ci}-{replica}")
    dst = folder / "tsdb"
    dst.mkdir(exist_ok=True)
    _move_blocks(own, dst)
    return samples


def _evaluate_rules(own: Path, rules: Path, out: Path, start: int, end: int, eval_s: int, tag: str) -> int:
    """``promtool tsdb create-blocks-from rules`` of the ``rules`` file against a Prometheus
    serving ``own`` alone (one replica evaluates its own rules), from ``start`` to ``end``
    every ``eval_s``; the blocks written are moved into ``own``. Returns their samples."""
    # query_range refuses more than 11,000 points: each promtool query covers one block
    # (2h x 3^k), so the block must hold fewer evaluations than that
    hours = max(h for h in (2, 6, 18, 54, 162, 486) if h * 3600 / eval_s <= 11000)
    server = PrometheusServer(own, own, tag=tag)
    try:
        r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "rules", f"--url={server.url}", f"--start={start}",
                            f"--end={end}", f"--output-dir={out}", f"--eval-interval={eval_s}s",
                            f"--max-block-duration={hours}h", "--quiet", str(rules)],
                           capture_output=True, text=True, timeout=3600)
    finally:
        server.stop()
    if r.returncode != 0:
        raise RuntimeError(f"promtool rules backfill failed ({tag}): {r.stderr[-3000:]}")
    samples = _block_samples(out)
    _move_blocks(out, own)
    shutil.rmtree(out, ignore_errors=True)
    return samples


def _pool_rules_text(own: Path, labels: dict[str, str], fleet: Fleet) -> str:
    """capplan's pool rules for the replica served from ``own``, rendered the way a user
    gets them (``capplan rules``): from what the doctor finds there (the mixins' recorded
    series included), with the replica's external labels as rule labels."""
    server = PrometheusServer(own, own, tag="pool-rules-doctor")
    try:
        src = PrometheusSource(url=server.url)
        catalog = load_metric_catalog()
        window = HistoryWindow.ending(fleet.spec.as_of, fleet.spec.days - 1)
        setup = inspect(PromClient(src, own), src, window, 3600, rule_names(catalog), catalog)
    finally:
        server.stop()
    return rules_file(rules_for(catalog, setup.clusters, src, setup.rate_window_s), labels)


def _block_samples(folder: Path) -> int:
    return sum(json.loads((b / "meta.json").read_text()).get("stats", {}).get("numSamples", 0)
               for b in folder.iterdir() if (b / "meta.json").exists())


class PrometheusServer:
    """Debian's prometheus on 127.0.0.1 serving ``tsdb``; :meth:`stop` ends it."""

    def __init__(self, folder: Path, tsdb: Path, retention: str = "3650d", max_samples: int | None = None,
                 extra_args: tuple[str, ...] = (), tag: str = "prometheus", config_text: str = "global:\n  scrape_interval: 1m\n"):
        self.folder = folder
        self.port = free_port()
        cfg = folder / f"{tag}.yml"
        cfg.write_text(config_text)
        self.log = open(folder / f"{tag}.log", "w")
        args = [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tsdb}",
                f"--storage.tsdb.retention.time={retention}", f"--web.listen-address=127.0.0.1:{self.port}", *extra_args]
        if max_samples:
            args.append(f"--query.max-samples={max_samples}")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("prometheus did not start: " + (folder / f"{tag}.log").read_text()[-2000:])
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def serve_fleet(spec: FleetSpec, folder: Path, template: NodeExporterTemplate | None = None, retention: str = "3650d",
                max_samples: int | None = None) -> tuple[Fleet, PrometheusServer]:
    """:func:`backfill` then start a server on it."""
    fleet, tsdb, _ = backfill(spec, folder, template)
    return fleet, PrometheusServer(folder, tsdb, retention, max_samples)


if __name__ == "__main__":
    print(_backfill_group(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
