"""Writing a run's files: report HTML, CapacityPlan YAML and plan CSV.

Each file is written to a temporary name in the same folder and moved into place, so a
reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import yaml

__all__ = ["atomic_write", "run_dir", "write_outputs", "OUTPUT_NAMES"]

OUTPUT_NAMES = {"report": "capacity-report.html", "plan": "capacity-plan.yaml", "csv": "plan.csv"}


def atomic_write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_dir(report_root: Path, month: str, what_if: str | None = None) -> Path:
    """``reports/<yyyy-mm>/`` (or ``reports/<yyyy-mm>/what-if-<name>/``)."""
    base = report_root / month
    return base / f"what-if-{what_if}" if what_if else base


def write_outputs(folder: Path, html: str, plan_doc: dict, actions: pd.DataFrame) -> dict[str, Path]:
    """Write the three files; returns their paths by kind."""
    csv = actions.to_csv(index=False) if len(actions) else ",".join(actions.columns) + "\n"
    return {
        "plan": atomic_write(folder / OUTPUT_NAMES["plan"], yaml.safe_dump(plan_doc, sort_keys=False, allow_unicode=True, width=120)),
        "csv": atomic_write(folder / OUTPUT_NAMES["csv"], csv),
        "report": atomic_write(folder / OUTPUT_NAMES["report"], html),
    }
