"""The report opened from disk in headless Chromium: no console errors, every chart drawn."""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium(url: str, *extra: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url],
                              capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed (make test installs it as root)")
def test_report_renders_every_chart_without_console_errors(demo_run, tmp_path):
    report = Path(demo_run["result"]["files"]["report"])
    r = chromium(report.as_uri(), "--virtual-time-budget=30000", "--dump-dom")
    dom = r.stdout
    console_errors = [line for line in r.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert not console_errors, console_errors[:3]
    charts = re.findall(r'<div class="chart[^"]*" id="(c\d+)"', dom)
    assert len(charts) >= 10
    assert f'data-charts-drawn="{len(charts)}"' in dom  # the loader finished every chart
    drawn = re.findall(r'<div class="chart[^"]*" id="c\d+"[^>]*>.*?<svg', dom, flags=re.S)
    # every chart div holds plotly's SVG
    for cid in charts:
        block = dom.split(f'id="{cid}"', 1)[1][:4000]
        assert "<svg" in block and "main-svg" in block, cid
    out = tmp_path / "report.png"
    r2 = chromium(report.as_uri(), "--virtual-time-budget=30000", "--window-size=1400,1800", f"--screenshot={out}")
    assert out.exists() and out.stat().st_size > 50_000, r2.stderr[-500:]
    assert len(drawn) == len(charts)


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
def test_hostile_labels_render_as_text_in_the_browser(tmp_path):
    from .test_report import _inputs
    from pipelines.present.report import render_report

    page = tmp_path / "evil.html"
    page.write_text(render_report(_inputs()))
    r = chromium(page.as_uri(), "--virtual-time-budget=10000", "--dump-dom")
    assert "alert" not in "".join(line for line in r.stderr.splitlines() if "CONSOLE" in line)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.stdout  # the label is text in the DOM
    assert "<script>alert(1)</script>" not in r.stdout
    assert "<svg" in r.stdout
