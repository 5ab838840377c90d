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
    charts = re.findall(r'<div class="chart[^"]*" id="([^"]+)"', dom)  # pool charts (c0, c1...) and the overview
    assert len(charts) >= 10 and "overview" in charts
    assert f'data-charts-drawn="{len(charts)}"' in dom  # the loader finished every chart
    drawn = re.findall(r'<div class="chart[^"]*" id="[^"]+"[^>]*>.*?<svg', dom, flags=re.S)
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


MEASURE = """
<script>
(function () {
  function rect(el) { var r = el.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; }
  var timer = setInterval(function () {
    if (!document.body.hasAttribute("data-charts-drawn")) { return; }
    clearInterval(timer);
    var out = [];
    document.querySelectorAll(".chart").forEach(function (ch) {
      var title = ch.querySelector(".gtitle"), bar = ch.querySelector(".modebar");
      out.push({id: ch.id, title: title ? rect(title) : null, modebar: bar ? rect(bar) : null,
                labels: Array.prototype.map.call(ch.querySelectorAll("g.annotation"), function (g) {
                  return Object.assign({text: g.textContent}, rect(g)); })});
    });
    document.body.setAttribute("data-boxes", JSON.stringify(out));
  }, 50);
})();
</script>
"""


def _overlap(a, b) -> bool:
    return a["x"] < b["x"] + b["w"] - 0.5 and b["x"] < a["x"] + a["w"] - 0.5 and a["y"] < b["y"] + b["h"] - 0.5 and b["y"] < a["y"] + a["h"] - 0.5


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
@pytest.mark.parametrize("width", [1000, 1400])
def test_labels_do_not_cover_each_other_the_markers_or_the_title(demo_run, tmp_path, width):
    """Measured in the browser (bounding boxes): event labels and the trigger / order-by /
    full markers never overlap, and the mode bar never covers a chart's title."""
    import html as html_mod
    import json

    report = Path(demo_run["result"]["files"]["report"]).read_text()
    page = tmp_path / "measured.html"
    page.write_text(report.replace("</body>", MEASURE + "</body>"))
    r = chromium(page.as_uri(), "--virtual-time-budget=60000", f"--window-size={width},2000", "--dump-dom", timeout=300)
    m = re.search(r'data-boxes="([^"]*)"', r.stdout)
    assert m, "the page did not finish drawing"
    charts = json.loads(html_mod.unescape(m.group(1)))
    assert len(charts) >= 10
    marker = re.compile(r"^(order by|trigger|full) \d{4}-\d\d-\d\d$")
    checked = 0
    for ch in charts:
        labels = [b for b in ch["labels"] if b["w"] > 0 and (marker.match(b["text"]) or b["y"] > (ch["title"] or {"y": 0})["y"])]
        ours = [b for b in labels if marker.match(b["text"]) or b["text"] not in ("N+k usable", "capacity") and "threshold" not in b["text"]]
        for i, a in enumerate(ours):
            for b in ours[i + 1:]:
                assert not _overlap(a, b), (ch["id"], a["text"], b["text"])
        checked += len(ours)
        if ch["title"] and ch["modebar"] and ch["modebar"]["w"] > 0:
            assert not _overlap(ch["title"], ch["modebar"]), ch["id"]
    assert checked > 0  # there were labels to check
