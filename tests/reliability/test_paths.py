"""A what-if's name or a symlink cannot make a run write outside the folder meant for it
(issue 23, point 1): the monthly files stay byte-identical, nothing lands elsewhere."""

import hashlib
import shutil
import subprocess
import sys

import duckdb
import pytest
import yaml

from pipelines.config import ConfigError
from pipelines.io.files import run_folder
from pipelines.jobs import RunRequest, run

from ..conftest import AS_OF

bad_input = pytest.mark.reliability(kind="bad_input")

MONTHLY_FILES = ("capacity-report.html", "capacity-plan.yaml", "plan.csv")


@pytest.fixture(scope="module")
def site(demo_run, tmp_path_factory):
    """A copy of the session's demo site (database and monthly report): a test that fails
    by overwriting the report must not spoil the shared one."""
    folder = tmp_path_factory.mktemp("paths") / "site"
    shutil.copytree(demo_run["folder"], folder)
    month = folder / "reports" / f"{AS_OF:%Y-%m}"
    shutil.rmtree(month / "what-if", ignore_errors=True)
    return {"folder": folder, "config": folder / "capplan.yaml", "month": month, "db": folder / "data" / "capplan.duckdb"}


def checksums(month):
    return {name: hashlib.sha256((month / name).read_bytes()).hexdigest() for name in MONTHLY_FILES}


def stray_files(folder):
    """Temporary files left by a stage that was not cleaned up (``.plan.csv.xyz``)."""
    return sorted(p.name for p in folder.glob(".*") if p.is_file())


def what_if(config, scenario=None, inline=None):
    return run(RunRequest(config_path=str(config), kind="what-if", scenario_path=str(scenario) if scenario else None,
                          scenario=inline))


@bad_input
@pytest.mark.parametrize("name", ["..", "../x", "/tmp/capplan-what-if", ".", ".hidden", "a\0b"])
def test_a_hostile_what_if_name_is_refused_and_the_monthly_files_are_untouched(site, tmp_path, name):
    before = checksums(site["month"])
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"name": name, "event_uplifts": {"double-11": 200}}))
    with pytest.raises(ConfigError) as exc:
        what_if(site["config"], scenario)
    message = str(exc.value)
    assert message.startswith(f"{scenario}: name: ") and "plain folder name" in message and "\n" not in message, message
    assert checksums(site["month"]) == before
    assert not (site["month"] / "what-if").exists()
    # the writer's side refuses it too, whoever calls it
    with pytest.raises(ConfigError, match="refusing to write"):
        run_folder(site["folder"] / "reports", AS_OF, name)


@bad_input
def test_the_cli_refuses_a_what_if_named_dot_dot_in_one_line(site, tmp_path):
    before = checksums(site["month"])
    scenario = tmp_path / "dotdot.yaml"
    scenario.write_text("name: ..\nevent_uplifts: {double-11: 200}\n")
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "plan", "--config", str(site["config"]), "--what-if", str(scenario)],
                       capture_output=True, text=True, timeout=120, cwd=site["folder"])
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(scenario) in lines[0] and "name" in lines[0], r.stderr
    assert checksums(site["month"]) == before


@bad_input
@pytest.mark.parametrize("target", ["outside", "report-root"])
def test_a_symlinked_what_if_folder_cannot_redirect_the_files(site, tmp_path, target):
    """``what-if/`` is a symlink: to a folder outside ``reports/``, or to ``reports/`` itself,
    where the scenario named like the month would land on the monthly report."""
    month, before = site["month"], checksums(site["month"])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = month / "what-if"
    link.symlink_to(outside if target == "outside" else month.parent, target_is_directory=True)
    name = "sneaky" if target == "outside" else month.name
    try:
        with pytest.raises(ConfigError, match="refusing to write there: it resolves to .* not inside"):
            what_if(site["config"], inline={"name": name})
        assert checksums(month) == before
        assert list(outside.iterdir()) == [] and stray_files(month) == []
        if target == "report-root":
            assert not (month.parent / "sneaky").exists()
        with duckdb.connect(str(site["db"]), read_only=True) as con:
            status, error = con.execute("SELECT status, error FROM runs WHERE kind = 'what-if' "
                                        "ORDER BY started_at DESC LIMIT 1").fetchall()[0]
        assert status == "failed" and "refusing to write" in error
    finally:
        link.unlink()


@bad_input
def test_the_file_writer_itself_refuses_a_folder_that_resolves_outside_its_root(site, tmp_path):
    """``stage_files`` (every run's files go through it) checks again, whoever built the folder."""
    from pipelines.io.files import stage_files

    reports = site["folder"] / "reports"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    month = reports / "2031-01"
    month.symlink_to(outside, target_is_directory=True)
    try:
        with pytest.raises(ConfigError, match="not inside"):
            stage_files(month, {"csv": "a,b\n1,2\n"}, root=reports)
        with pytest.raises(ConfigError, match="not inside"):
            stage_files(reports / "2031-01" / "what-if" / "x", {"csv": "a,b\n1,2\n"}, root=reports)
        assert list(outside.iterdir()) == []
        staged = stage_files(reports / "2031-02", {"csv": "a,b\n1,2\n"}, root=reports)  # a plain folder is fine
        assert staged.publish()["csv"].read_text() == "a,b\n1,2\n"
    finally:
        month.unlink()
