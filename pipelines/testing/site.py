"""A throw-away capplan site (config + catalogs) for tests, benchmarks and examples."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

__all__ = ["PROJECT_ROOT", "demo_site"]

#: The project folder (holds the shipped capplan.yaml and catalogs/).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def demo_site(folder: Path, extra: str = "", nodes: int = 120, clusters: int = 2, as_of: dt.date = dt.date(2026, 11, 27)) -> Path:
    """Write ``folder/capplan.yaml`` (the shipped one, with a small demo fleet and a fixed
    plan date, plus ``extra`` YAML text appended) and copy the shipped catalogs beside it.
    Returns the config's path; the database and reports land inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT_ROOT / "catalogs", folder / "catalogs", dirs_exist_ok=True)
    text = (PROJECT_ROOT / "capplan.yaml").read_text()
    text = text.replace("demo: {nodes: 400, seed: 7}", f"demo: {{nodes: {nodes}, clusters: {clusters}, seed: 7}}")
    text = text.replace("# as_of: 2026-12-01        # plan date; default: today", f"as_of: {as_of}")
    path = folder / "capplan.yaml"
    path.write_text(text + extra)
    return path
