"""A real Prometheus for tests and benchmarks: a :mod:`.kubefleet` fleet written as
OpenMetrics, backfilled with ``promtool tsdb create-blocks-from openmetrics`` (one file
and one promtool per cluster and HA replica, in parallel processes), served by Debian's
``prometheus`` on 127.0.0.1 with a long retention and, optionally, a lowered
``--query.max-samples``."""

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
from .node_exporter import NodeExporterTemplate, node_exporter_template, parse_template

__all__ = ["PROMETHEUS", "PROMTOOL", "free_port", "PrometheusServer", "backfill", "serve_fleet"]

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backfill_group(job: Path, ci: int, replica: int, part: int) -> int:
    """In a worker process: rebuild the (seeded) fleet, write one group, run promtool."""
    d = json.loads(job.read_text())
    folder = job.parent
    fleet = build_fleet(FleetSpec.from_json(d["spec"]), parse_template(d["template"], d["source"]))
    om = Path(folder) / f"group-{ci}-{replica}-{part}.om"
    samples = write_group(fleet, ci, replica, om, part)
    # promtool parses the whole file once per block it writes; its block ranges are 2h x 3^k,
    # aligned to multiples of the range. 13122h (2h x 3^8, about 18 months) puts a fixture in
    # one block (two passes over the file) instead of one per 20 days at the default 720h.
    r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=13122h", str(om),
                        str(Path(folder) / "tsdb")], capture_output=True, text=True, timeout=1800)
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
    return build_fleet(spec, template), folder / "tsdb", samples


class PrometheusServer:
    """Debian's prometheus on 127.0.0.1 serving ``tsdb``; :meth:`stop` ends it."""

    def __init__(self, folder: Path, tsdb: Path, retention: str = "3650d", max_samples: int | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.folder = folder
        self.port = free_port()
        cfg = folder / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1m\n")
        self.log = open(folder / "prometheus.log", "w")
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
                raise RuntimeError("prometheus did not start: " + (folder / "prometheus.log").read_text()[-2000:])
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
