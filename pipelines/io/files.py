"""A run's files on disk: where they go, and writing them so nobody sees half a file.

Files are *staged* (written in full to a temporary name in their final folder) before the
run is committed to DuckDB, and *published* (renamed into place, which is atomic on one
file system) only after the commit. A run that fails before or during the commit leaves
the previous files untouched; a reader never sees a partly written file.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OUTPUT_NAMES", "atomic_write", "run_folder", "StagedFiles", "stage_files"]

#: kind -> file name inside a run's folder
OUTPUT_NAMES = {"report": "capacity-report.html", "plan": "capacity-plan.yaml", "csv": "plan.csv"}


def run_folder(report_root: Path, as_of: dt.date, what_if: str | None = None) -> Path:
    """``reports/<yyyy-mm>/`` for the monthly plan, ``reports/<yyyy-mm>/what-if/<name>/``
    for a scenario (never the monthly folder itself)."""
    base = report_root / f"{as_of:%Y-%m}"
    return base / "what-if" / what_if if what_if else base


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_temp(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a report is read by others
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    os.replace(_write_temp(path, data), path)
    return path


@dataclass
class StagedFiles:
    """Files written to temporary names, waiting to be published (or discarded)."""

    pending: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # kind -> (temp, final)

    def publish(self) -> dict[str, Path]:
        """Rename every staged file into place; returns the final paths by kind."""
        out = {}
        for kind, (tmp, final) in self.pending.items():
            os.replace(tmp, final)
            out[kind] = final
        self.pending = {}
        return out

    def discard(self) -> None:
        for tmp, _ in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending = {}

    @property
    def paths(self) -> dict[str, Path]:
        """Where each file will be once published."""
        return {kind: final for kind, (_, final) in self.pending.items()}


def stage_files(folder: Path, contents: dict[str, str | bytes]) -> StagedFiles:
    """Write each ``kind -> content`` (kinds from :data:`OUTPUT_NAMES`) to a temporary
    file in ``folder``; nothing is visible under the final names yet."""
    staged = StagedFiles()
    try:
        for kind, data in contents.items():
            final = folder / OUTPUT_NAMES[kind]
            for stale in folder.glob(f".{final.name}.*"):  # left by a run killed mid-way (runs hold a lock)
                stale.unlink(missing_ok=True)
            staged.pending[kind] = (_write_temp(final, data), final)
    except BaseException:
        staged.discard()
        raise
    return staged
