"""Bad configuration: one line naming the file and field, exit code 2, nothing written."""

import subprocess
import sys

import pytest

from pipelines.config import ConfigError, load_catalog, load_config, load_events

from ..conftest import ROOT, write_config


def capplan(*args, cwd=None, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def test_shipped_config_loads():
    cfg = load_config(ROOT / "capplan.yaml")
    assert cfg.forecasting.horizon_days == 180 and cfg.policies.default.redundancy_k == 2
    assert cfg.policies.for_pool("x", "compute", "compute").spot_ratio_pct == 70


@pytest.mark.parametrize("extra, field", [
    ("\nbogus: 1\n", "bogus: unknown key"),
    ("", "forecasting.horizon_days"),
])
def test_bad_keys_and_types_name_the_field(tmp_path, extra, field):
    cfg = write_config(tmp_path, extra)
    if not extra:
        cfg.write_text(cfg.read_text().replace("horizon_days: 180", "horizon_days: soon"))
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    msg = str(exc.value)
    assert str(cfg) in msg and field in msg and "\n" not in msg


@pytest.mark.parametrize("old, new, field", [
    ("threshold_pct: 70", "threshold_pct: -5", "threshold_pct"),
    ("threshold_pct: 70", "threshold_pct: 120", "threshold_pct"),
    ("events: catalogs/events.yaml", "events: catalogs/missing.yaml", "catalogs.events: file not found"),
])
def test_invalid_values_and_missing_catalogs(tmp_path, old, new, field):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match=field):
        load_config(cfg)


def test_cli_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path):
    cfg = write_config(tmp_path, "\nsource_kind: demo\n")
    r = capplan("run", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "source_kind" in lines[0] and str(cfg) in lines[0].replace("\n", "")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


def test_events_catalog_errors(tmp_path):
    p = tmp_path / "events.yaml"
    p.write_text("events:\n  - {name: sale, start: 2026-11-12, end: 2026-11-01, uplift_pct: 10}\n")
    with pytest.raises(ConfigError, match=r"events.yaml: event 'sale'.*end 2026-11-01 is before start"):
        load_events(p)
    p.write_text("events:\n  - {name: sale, start: 2026-11-01, end: 2026-11-02, uplift_pct: -150}\n")
    with pytest.raises(ConfigError, match="above -100"):
        load_events(p)
    p.write_text("events:\n  - {name: sale, start: 2026-11-01, end: 2026-11-02, scope: {level: region, names: [x]}}\n")
    with pytest.raises(ConfigError, match="scope.level"):
        load_events(p)
    p.write_text("events:\n  - {name: sale, start: 2026-11-01, end: [oops\n")
    with pytest.raises(ConfigError, match="events.yaml:3: not valid YAML"):
        load_events(p)


def test_instance_catalog_errors_name_the_entry(tmp_path):
    p = tmp_path / "instances.yaml"
    p.write_text("prices_as_of: 2026-11-01\ninstance_types:\n  - {name: big, vcpu: 0, memory_gib: 4, on_demand_hourly_usd: 1}\n")
    with pytest.raises(ConfigError, match=r"entry 'big'.*vcpu"):
        load_catalog(p)
    p.write_text("prices_as_of: 2026-11-01\ninstance_types:\n  - {name: big, vcpu: 2, memory_gib: 4, on_demand_hourly_usd: -1}\n")
    with pytest.raises(ConfigError, match=r"entry 'big'.*on_demand_hourly_usd"):
        load_catalog(p)


def test_policy_override_with_unknown_field(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("set: {spot_ratio_pct: 70,", "set: {spot_ration_pct: 70,"))
    with pytest.raises(ConfigError, match="spot_ration_pct"):
        load_config(cfg)


def test_every_command_has_help():
    for cmd in ([], ["demo"], ["run"], ["ingest"], ["forecast"], ["plan"], ["report"], ["runs"]):
        r = capplan(*cmd, "--help")
        assert r.returncode == 0 and "--help" in r.stdout, (cmd, r.stderr)
    assert all(c in capplan("--help").stdout for c in ("demo", "ingest", "forecast", "plan", "report", "run"))
