"""The analyst notebook runs top to bottom with a real Jupyter kernel against a demo database."""


import nbformat
import pytest
from nbclient import NotebookClient

from ..conftest import ROOT

pytestmark = pytest.mark.integration


def test_notebook_executes_against_the_demo_database(demo_run, monkeypatch):
    monkeypatch.setenv("CAPPLAN_CONFIG", str(demo_run["config"]))
    nb = nbformat.read(ROOT / "notebooks" / "capacity-analysis.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert demo_run["result"]["run_id"] in text  # it found the run the fixture made
    assert "with doubled uplifts" in text
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 2
