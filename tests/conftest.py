"""Shared fixtures: paths, a small demo database built once per session."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "real"
AS_OF = dt.date(2026, 11, 27)

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def write_config(folder: Path, extra: str = "", nodes: int = 120, clusters: int = 2) -> Path:
    """A capplan.yaml in ``folder`` using the shipped catalogs and a small demo fleet."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "catalogs", folder / "catalogs", dirs_exist_ok=True)
    text = (ROOT / "capplan.yaml").read_text()
    text = text.replace("demo: {nodes: 400, seed: 7}", f"demo: {{nodes: {nodes}, clusters: {clusters}, seed: 7}}")
    text = text.replace("# as_of: 2026-12-01        # plan date; default: today", f"as_of: {AS_OF}")
    path = folder / "capplan.yaml"
    path.write_text(text + extra)
    return path


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    """One temporary Prefect API for the whole session (flows and tasks report to it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One small monthly run on the demo fleet (no Prefect server: the plain function)."""
    from pipelines.flows import RunRequest, run_monthly

    folder = tmp_path_factory.mktemp("demo")
    cfg = write_config(folder)
    result = run_monthly(RunRequest(config_path=str(cfg)))
    return {"folder": folder, "config": cfg, "result": result, "db": folder / "data" / "capplan.duckdb"}
