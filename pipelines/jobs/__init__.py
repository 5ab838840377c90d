"""capplan's jobs and the one lifecycle they share.

``run(RunRequest(...))`` is what the CLI, the Prefect flows, the benchmarks and the notebook
call: it resolves a :class:`RunContext`, picks the job for the request's kind (monthly,
what-if, ingest) and executes it under :func:`pipelines.jobs.record.execute` (lock, start,
commit in one transaction, publish files, or mark failed), then emails the report when
asked.
"""

from __future__ import annotations

from .context import PreviousPlan, RunContext, RunRequest
from .record import RunOutputs, RunResult, Steps, execute

__all__ = ["run", "RunRequest", "RunContext", "RunResult", "RunOutputs", "Steps", "PreviousPlan", "execute"]


def run(request: RunRequest, steps: Steps | None = None, flow_run_id: str | None = None) -> RunResult:
    """Execute one run as the request says; returns the committed :class:`RunResult`."""
    from .monthly import ingest_job, monthly_job
    from .whatif import scenario_from, what_if_context, what_if_job

    steps = steps or Steps()
    ctx = RunContext.create(request.config_path, request.overrides, request.as_of,
                            "monthly" if request.kind == "what-if" else request.kind, flow_run_id,
                            request.allow_future)
    scenario_json = None
    if request.kind == "what-if":
        scenario = scenario_from(request.scenario_path, request.scenario)
        ctx = what_if_context(ctx, scenario, request.as_of)
        job = what_if_job(scenario)
        scenario_json = scenario.model_dump_json()
    else:
        job = monthly_job if request.kind == "monthly" else ingest_job
    result = execute(ctx, job, steps, request.wait_s, scenario_json)
    send = ctx.cfg.email.enabled if request.send_email is None else request.send_email
    if send and request.kind == "monthly":
        from .notify import send_run_report

        result.email = send_run_report(ctx.cfg, result.run_id)
    return result
