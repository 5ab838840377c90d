"""The one run lifecycle every job goes through: lock, start, work, commit, publish.

:func:`execute` takes the database's run lock, records the run as ``running``, runs the
job, stages the job's files (temporary names), commits every table and the ``succeeded``
status in one transaction, then renames the files into place. Any error on the way marks
the run ``failed`` with the error and discards the staged files, so a failed run never
replaces a report and never leaves half its tables behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..io.files import StagedFiles, stage_files
from ..display import for_terminal
from ..present.tables import records
from ..progress import report as report_progress
from ..progress import step as report_step
from .context import RunContext

__all__ = ["Steps", "RunOutputs", "RunResult", "Job", "execute", "records"]

log = logging.getLogger("capplan.run")  # the CLI prints a failure itself: it silences this logger


class Steps:
    """Runs a job's steps and times them. ``wrap(name, fn)`` lets orchestration turn each
    step into something observable (a Prefect task); ``fan_out`` maps the forecast panel
    (default: a local process pool)."""

    def __init__(self, wrap: Callable[[str, Callable], Callable] | None = None, fan_out: Callable | None = None):
        self.wrap = wrap
        self.fan_out = fan_out
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        call = self.wrap(name, fn) if self.wrap else fn
        started = time.perf_counter()
        report_step(name)
        try:
            result = call(*args, **kwargs)
        finally:
            self.timings[name.replace("-", "_") + "_s"] = round(time.perf_counter() - started, 3)
        report_step(name, time.perf_counter() - started)
        return result

    @staticmethod
    def progress(stage: str) -> Callable[[int, int, str], None]:
        """A progress callback for one stage (shown by the CLI's bars, if any)."""
        return lambda done, total, label="": report_progress(stage, done, total, label)


@dataclass
class RunOutputs:
    """What a job produced, not yet committed: the run's ``tables`` (names from
    :data:`pipelines.io.store.RUN_TABLES`), the ``files`` to write into ``folder``
    (kind -> content), the ``summary`` figures, the plan table rows (one dict per pool
    and resource) and the forecast ``notes``."""

    tables: dict[str, pd.DataFrame]
    folder: Path
    files: dict[str, str | bytes]
    summary: dict
    table: list[dict] = field(default_factory=list)
    notes: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class RunResult:
    """A committed run: its id, what it wrote where, how long each step took."""

    run_id: str
    kind: str
    as_of: dt.date
    summary: dict
    files: dict[str, Path]
    timings: dict[str, float]
    table: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    email: dict | None = None

    def as_dict(self) -> dict:
        """Plain values (what a Prefect flow returns)."""
        return {"run_id": self.run_id, "kind": self.kind, "as_of": str(self.as_of), "summary": self.summary,
                "files": {k: str(v) for k, v in self.files.items()}, "timings": self.timings, "table": self.table,
                "failures": self.failures, "email": self.email}


Job = Callable[[RunContext, Steps], RunOutputs]


def execute(ctx: RunContext, job: Job, steps: Steps | None = None, wait_s: float = 0.0, scenario_json: str | None = None) -> RunResult:
    """Run ``job`` under the run lifecycle (see the module docstring)."""
    steps = steps or Steps()
    store = ctx.store
    with store.run_lock(wait_s):
        store.start_run(ctx.run_id, ctx.kind, ctx.as_of, ctx.cfg.model_dump_json(), ctx.window, flow_run_id=ctx.flow_run_id,
                        baseline_run_id=ctx.baseline_run_id, scenario_json=scenario_json)
        log.info("run %s (%s): as of %s, history %s .. %s", ctx.run_id, ctx.kind, ctx.as_of, ctx.window.start.date(), ctx.window.end.date())
        staged = StagedFiles()
        try:
            out = job(ctx, steps)
            staged = stage_files(out.folder, out.files, root=ctx.report_root)
            summary = {**out.summary, "files": {k: str(v) for k, v in staged.paths.items()}}
            store.finish_run(ctx.run_id, out.tables, steps.timings, summary)
            paths = staged.publish()
        except BaseException as exc:
            staged.discard()
            store.fail_run(ctx.run_id, f"{type(exc).__name__}: {exc}", steps.timings)
            log.error("run %s failed: %s", ctx.run_id, for_terminal(exc, limit=4000))  # one line, whatever labels it names
            raise
    failures = out.notes[out.notes["severity"] == "error"].to_dict("records") if len(out.notes) else []
    return RunResult(ctx.run_id, ctx.kind, ctx.as_of, summary, paths, steps.timings, out.table, failures)
