"""What a new user hits in the first hour (issue 22): a run list with a failed run, a policy
naming an instance type the catalog lacks, a plan date in the future, a price of 0, flags in
--help, a failure printed once, the stages shown while a run works, the Makefile's knobs."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import pytest

from pipelines.config import ConfigError, load_catalog, load_catalogs, load_config
from pipelines.jobs import RunRequest, run

from ..conftest import ROOT, write_config
from .test_config import capplan

BAD_CSV = "cluster,pool,resource,kind,ts,value,unit\nc,p,cpu,usage,2026-10-01T00:00:00,1,cores\n"


def _file_source(tmp_path) -> dict:
    (tmp_path / "bad.csv").write_text(BAD_CSV)
    return {"source": {"kind": "file", "file": {"path": str(tmp_path / "bad.csv")}}}


def test_runs_lists_a_failed_run_beside_a_successful_one(demo_run, tmp_path):
    cfg = write_config(tmp_path)
    (tmp_path / "data").mkdir(exist_ok=True)
    shutil.copy(demo_run["db"], tmp_path / "data" / "capplan.duckdb")
    with pytest.raises(Exception, match="no time zone"):  # a real failed run, recorded by the lifecycle
        run(RunRequest(config_path=str(cfg), overrides=_file_source(tmp_path)))
    r = capplan("runs", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "succeeded" in r.stdout and "failed" in r.stdout and "IngestError" in r.stdout
    assert demo_run["result"]["run_id"] in r.stdout


def test_policy_naming_an_unknown_instance_type_fails_when_the_config_loads(tmp_path):
    cfg = write_config(tmp_path, """
policies:
  overrides:
    - match: {pool: web}
      set: {instance_types: [c6i.2xlarge, z9.huge]}
""")
    with pytest.raises(ConfigError) as exc:
        load_catalogs(load_config(cfg))
    msg = str(exc.value)
    assert str(cfg) in msg and "policies.overrides[0].set.instance_types[1]" in msg and "'z9.huge'" in msg
    assert "{name: z9.huge," in msg  # the catalog line to add
    r = capplan("run", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "z9.huge" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "capplan.duckdb").exists()  # refused before any work


def test_unknown_storage_type_in_a_policy_is_refused(tmp_path):
    cfg = write_config(tmp_path, """
policies:
  overrides:
    - match: {tier: storage}
      set: {storage_type: io9}
""")
    with pytest.raises(ConfigError, match=r"policies.overrides\[0\].set.storage_type: storage type 'io9'"):
        load_catalogs(load_config(cfg))


def test_future_as_of_is_refused_unless_allowed(tmp_path):
    from pipelines.jobs.context import resolve_as_of

    today = dt.date(2026, 12, 3)
    assert resolve_as_of(None, None, today=today) == today
    assert resolve_as_of(dt.date(2026, 11, 1), None, today=today) == dt.date(2026, 11, 1)
    assert resolve_as_of(dt.date(2030, 1, 1), None, allow_future=True, today=today) == dt.date(2030, 1, 1)
    with pytest.raises(ConfigError, match="--as-of: 2030-01-01 is in the future"):
        resolve_as_of(dt.date(2030, 1, 1), None, today=today)
    with pytest.raises(ConfigError, match=r"as_of \(capplan.yaml\): 2030-01-01"):
        resolve_as_of(None, dt.date(2030, 1, 1), today=today)

    cfg = write_config(tmp_path)
    r = capplan("run", "--config", str(cfg), "--as-of", "2030-01-01", cwd=tmp_path)
    assert r.returncode == 2 and "in the future" in r.stderr and "--allow-future" in r.stderr
    assert not (tmp_path / "reports" / "2030-01").exists()
    with pytest.raises(ConfigError, match="in the future"):  # the notebook's and Prefect's path too
        run(RunRequest(config_path=str(cfg), as_of=dt.date(2030, 1, 1)))
    from pipelines.testing.promfixtures import prom_site
    from pipelines.testing.promserver import free_port
    site = prom_site(tmp_path / "prom", f"http://127.0.0.1:{free_port()}")  # the doctor takes the date as a run does
    r = capplan("doctor", "--config", str(site), "--as-of", "2030-01-01", cwd=tmp_path)
    assert r.returncode == 2 and "in the future" in r.stdout + r.stderr, r.stdout + r.stderr


def test_price_of_zero_needs_free_true(tmp_path):
    p = tmp_path / "instances.yaml"
    p.write_text("prices_as_of: 2026-11-01\ninstance_types:\n  - {name: gift, vcpu: 2, memory_gib: 4, on_demand_hourly_usd: 0}\n")
    with pytest.raises(ConfigError, match=r"instances.yaml: entry 'gift'.*on_demand_hourly_usd is 0.*free: true"):
        load_catalog(p)
    p.write_text("prices_as_of: 2026-11-01\ninstance_types:\n  - {name: gift, vcpu: 2, memory_gib: 4, on_demand_hourly_usd: 0, free: true}\n"
                 "storage_types:\n  - {name: tape, price_per_gb_month_usd: 0}\n")
    with pytest.raises(ConfigError, match=r"entry 'tape'.*price_per_gb_month_usd is 0"):
        load_catalog(p)
    p.write_text("prices_as_of: 2026-11-01\ninstance_types:\n  - {name: gift, vcpu: 2, memory_gib: 4, on_demand_hourly_usd: 0, free: true}\n")
    assert load_catalog(p).instance("gift").monthly_cost_usd(0, 0) == 0


def test_help_shows_no_type_after_flags():
    r = capplan("run", "--help", env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    assert r.returncode == 0
    assert "--no-send" in r.stdout and "--allow-future" in r.stdout
    assert "<path>" in r.stdout  # options with a value keep their type
    assert "<bool>" not in r.stdout


def test_a_failed_run_prints_its_error_once_after_the_stages_it_reached(tmp_path):
    cfg = write_config(tmp_path)
    bad = _file_source(tmp_path)["source"]["file"]["path"]
    cfg.write_text(cfg.read_text().replace("kind: demo", "kind: file", 1).replace("file: {path: null}", f"file: {{path: {bad}}}"))
    assert load_config(cfg).source.kind == "file"
    r = capplan("run", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("has no time zone") == 1, r.stderr
    assert "ingest-history ..." in r.stdout + r.stderr  # the stage it was in was shown


def test_makefile_passes_pytest_args_and_readme_says_how_long():
    r = subprocess.run(["make", "-n", "test", "PYTEST_ARGS=-k first_hour -x"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = next(li for li in r.stdout.splitlines() if "pytest" in li and "-n" in li)
    assert line.rstrip().endswith("-k first_hour -x")
    readme = (ROOT / "README.md").read_text()
    assert "PYTEST_ARGS" in readme and "make test" in readme
