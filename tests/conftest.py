"""Shared fixtures: paths, a small demo database built once per session."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

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
