"""Prefect 3 flows: thin wrappers over :func:`pipelines.jobs.run`.

Each flow resolves nothing itself: it hands its :class:`RunRequest` to the same job the CLI,
the benchmarks and the notebook run, with each step shown as a Prefect task and the run id
sharing the flow run's id. Retries live at the request level (Prometheus, SMTP; see
:mod:`pipelines.io.retry`), so tasks declare none. Imports are absolute because Prefect
loads this file by path (the entrypoints in prefect.yaml).
"""

from __future__ import annotations

from typing import Any, Callable

from pipelines.orchestration import prefect_defaults

prefect_defaults()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipelines.io.store import Store  # noqa: E402
from pipelines.jobs import RunRequest, RunResult, Steps, run  # noqa: E402

__all__ = ["RunRequest", "monthly_run", "what_if_run", "ingest_flow", "report_flow", "prefect_steps"]


def _as_task(name: str, fn: Callable) -> Callable:
    return task(name=name, cache_policy=NO_CACHE, retries=0)(fn)


def prefect_steps(request: RunRequest, default_dask: str | None = None) -> Steps:
    """Steps shown as Prefect tasks; the forecast fan-out on Dask when an address is set."""
    address = request.dask_address or default_dask
    fan_out = None
    if address:
        from pipelines.orchestration.dask import dask_runner

        fan_out = dask_runner(address)
    return Steps(wrap=_as_task, fan_out=fan_out)


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def _run(request: RunRequest) -> dict[str, Any]:
    from pipelines.config import load_config

    cfg = load_config(request.config_path, request.overrides)
    result = run(request, prefect_steps(request, cfg.executor.dask_address), _flow_run_id())
    _artifact(result, Store(cfg.path(cfg.store.path)))
    return result.as_dict()


@flow(name="monthly-run", log_prints=True)
def monthly_run(request: RunRequest) -> dict[str, Any]:
    """The monthly job: ingest -> forecast -> plan -> report (-> email)."""
    return _run(request.model_copy(update={"kind": "monthly"}))


@flow(name="what-if", log_prints=True)
def what_if_run(request: RunRequest) -> dict[str, Any]:
    """Re-plan the latest monthly run under a scenario (``scenario_path`` or inline
    ``scenario``); writes under ``reports/<yyyy-mm>/what-if/<name>/`` only."""
    return _run(request.model_copy(update={"kind": "what-if"}))


@flow(name="ingest")
def ingest_flow(request: RunRequest) -> dict[str, Any]:
    """Ingest only: pull the history window and snapshot the inventory as an 'ingest' run."""
    return _run(request.model_copy(update={"kind": "ingest"}))


@flow(name="report")
def report_flow(config_path: str, run_id: str, send: bool = True) -> dict[str, Any]:
    """Re-send a past run's report without recomputing."""
    from pipelines.config import load_config
    from pipelines.jobs.notify import send_run_report

    cfg = load_config(config_path)
    return send_run_report(cfg, run_id) if send else {"run_id": run_id}


def _artifact(result: RunResult, store: Store) -> None:
    """Markdown headline and plan table in the Prefect UI."""
    if result.kind == "ingest":
        return
    try:
        from prefect.artifacts import create_markdown_artifact

        from pipelines.present.tables import plan_markdown

        md = plan_markdown(result.summary.get("headline", ""), store.table("plans", result.run_id), result.run_id)
        create_markdown_artifact(markdown=md, key="capacity-plan" if result.kind == "monthly" else "what-if-plan",
                                 description=f"capplan run {result.run_id}")
    except Exception as exc:  # an artifact is a nicety; never fail the run for it
        get_run_logger().warning("could not create the Prefect artifact: %s", exc)
