"""A run's files on disk: where they go, and writing them so nobody sees half a file.

Files are *staged* (written in full to a temporary name in their final folder) before the
run is committed to DuckDB, and *published* (renamed into place, which is atomic on one
file system) only after the commit. A run that fails before or during the commit leaves
the previous files untouched; a reader never sees a partly written file.

Every path written is checked first (:func:`inside`): each name taken from input is one
plain file name, and the path, with symlinks followed, stays strictly inside the folder
meant for it. A what-if named ``..`` or a ``what-if/`` folder that is a symlink to
elsewhere cannot write over the monthly report or anything outside ``reports/``.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError

__all__ = ["OUTPUT_NAMES", "UnsafePath", "plain_name_problem", "check_inside", "inside", "atomic_write", "run_folder", "StagedFiles",
           "stage_files"]

#: kind -> file name inside a run's folder
OUTPUT_NAMES = {"report": "capacity-report.html", "plan": "capacity-plan.yaml", "csv": "plan.csv"}


class UnsafePath(ConfigError):
    """A file would be written outside the folder meant for it (a name such as ``..``, or a
    symlink leading elsewhere). Nothing was written."""


def plain_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one folder or file name inside capplan's output folders
    (``.``, ``..``, a leading dot, a path separator, a NUL, empty), or None if it can."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is the folder itself or its parent"
    if "\0" in name:
        return "contains a NUL character"
    for sep in ("/", "\\", os.sep, os.altsep):
        if sep and sep in name:
            return f"contains a path separator {sep!r}"
    if name.startswith("."):
        return "starts with a dot"
    return None


def check_inside(folder: Path, path: Path) -> Path:
    """``path`` itself, once checked to lie strictly inside ``folder`` with symlinks followed
    on both; raises :class:`UnsafePath` naming the real paths otherwise."""
    real_folder, real = os.path.realpath(folder), os.path.realpath(path)
    if real == real_folder or os.path.commonpath([real_folder, real]) != real_folder:
        raise UnsafePath(f"{path}: refusing to write there: it resolves to {real}, not inside {real_folder} "
                         "(a symlink leading elsewhere?)")
    return path


def inside(folder: Path, *names: str) -> Path:
    """``folder / names...``, checked: each name is a plain name (:func:`plain_name_problem`)
    and the result lies inside ``folder`` after symlinks (:func:`check_inside`)."""
    for name in names:
        problem = plain_name_problem(name)
        if problem:
            raise UnsafePath(f"{folder}: refusing to write to {name!r}: the name {problem}, not a plain name")
    return check_inside(folder, folder.joinpath(*names))


def run_folder(report_root: Path, as_of: dt.date, what_if: str | None = None) -> Path:
    """``reports/<yyyy-mm>/`` for the monthly plan, ``reports/<yyyy-mm>/what-if/<name>/``
    for a scenario (never the monthly folder itself). Each level is checked with
    :func:`inside`: the month's folder resolves inside ``report_root``, ``what-if/`` inside
    the month's folder and the scenario's folder inside ``what-if/`` (symlinks followed)."""
    month = inside(report_root, f"{as_of:%Y-%m}")
    return inside(inside(month, "what-if"), what_if) if what_if else month


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


def atomic_write(path: Path, data: str | bytes, root: Path | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, after checking that
    ``path`` resolves inside ``root`` (default: its own folder; see :func:`inside`)."""
    check_inside(path.parent if root is None else root, path)
    os.replace(_write_temp(path, data), path)
    return path


@dataclass
class StagedFiles:
    """Files written to temporary names, waiting to be published (or discarded)."""

    pending: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # kind -> (temp in the real folder, final)

    def publish(self) -> dict[str, Path]:
        """Rename every staged file into place; returns the final paths by kind."""
        out = {}
        for kind, (tmp, final) in self.pending.items():
            os.replace(tmp, tmp.parent / final.name)  # the folder checked when staging (tmp is in it)
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


def stage_files(folder: Path, contents: dict[str, str | bytes], root: Path | None = None) -> StagedFiles:
    """Write each ``kind -> content`` (kinds from :data:`OUTPUT_NAMES`) to a temporary
    file in ``folder``; nothing is visible under the final names yet. ``folder`` must
    resolve inside ``root`` (default: its parent) and each file inside ``folder``, symlinks
    followed (:func:`check_inside`); the files are staged and later published in the folder
    as resolved now, so a symlink swapped in meanwhile cannot redirect them."""
    check_inside(folder.parent if root is None else root, folder)
    if not contents:
        return StagedFiles()
    folder.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(folder))
    staged = StagedFiles()
    try:
        for kind, data in contents.items():
            name = OUTPUT_NAMES[kind]
            target = check_inside(real, real / name)
            for stale in real.glob(f".{name}.*"):  # left by a run killed mid-way (runs hold a lock)
                stale.unlink(missing_ok=True)
            staged.pending[kind] = (_write_temp(target, data), folder / name)
    except BaseException:
        staged.discard()
        raise
    return staged
