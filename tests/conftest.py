"""Shared fixtures: paths, a small demo database built once per session."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pytest
from _pytest.nodeid import coerce_node_id  # pytest >= 9: see pytest_collection_modifyitems

# pytest-xdist workers: one Prefect home each (a temporary server's SQLite database is not
# shared between processes), inside the one CI gives (a fresh, empty home: a cold machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    _home = Path(os.environ.get("PREFECT_HOME") or tempfile.mkdtemp()) / f"xdist-{os.environ['PYTEST_XDIST_WORKER']}"
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_home)

from pipelines.orchestration import prefect_defaults
from pipelines.testing.site import demo_site

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "real"
AS_OF = dt.date(2026, 11, 27)

prefect_defaults()  # before anything imports prefect: cold-start timeout, no analytics


def write_config(folder: Path, extra: str = "", nodes: int = 120, clusters: int = 2) -> Path:
    """A capplan.yaml in ``folder`` using the shipped catalogs and a small demo fleet."""
    return demo_site(folder, extra, nodes, clusters, AS_OF)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the tests that run flows in this process (the CLI and
    deployment tests start their own; every other test calls the jobs without Prefect)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One small monthly run on the demo fleet (no Prefect server: the plain function)."""
    from pipelines.jobs import RunRequest, run

    folder = tmp_path_factory.mktemp("demo")
    cfg = write_config(folder)
    result = run(RunRequest(config_path=str(cfg))).as_dict()
    return {"folder": folder, "config": cfg, "result": result, "db": folder / "data" / "capplan.duckdb"}


#: Test files that share the Prometheus fixture servers (pipelines.testing.promfixtures
#: builds each once per process): they run on one worker, so each server is backfilled once.
PROMETHEUS_FILES = {"test_prometheus.py", "test_prometheus_doctor.py", "test_faults.py", "test_security.py",
                    "test_prometheus_answers.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups to schedule by
def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup``, every test of a file runs on the same worker (module and
    session fixtures are built once per worker that needs them), and the Prometheus files
    share one worker."""
    loadgroup = bool(config.getoption("loadgroup", False))
    for item in items:
        name = item.path.name
        group = "prometheus" if name in PROMETHEUS_FILES else name
        item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup and "@" not in item.nodeid:
            # pytest-xdist 3.8 schedules by the ``@group`` suffix of the node id, which it sets
            # on ``item._nodeid``; pytest 9 keeps the id in ``item._id``, so without this every
            # test is scheduled alone and each worker builds every server fixture it touches
            item._id = coerce_node_id(f"{item.nodeid}@{group}")
