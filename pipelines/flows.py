"""Prefect 3 flows: the monthly job reads like its table of contents.

Tasks do I/O and call the pure core; only tasks whose I/O can fail (Prometheus, SMTP)
retry. The run id is shared by DuckDB and Prefect (it embeds the flow run id). A run's
outputs become visible in DuckDB in one transaction at the end; files are written
atomically after that.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from forecasting.events import Event
from forecasting.policy import Catalog

from .config import Config, load_catalog, load_config, load_events
from .ingest import IngestResult, history_window, ingest_demo
from .outputs import run_dir, write_outputs
from .report import ReportInputs, headline, render_report
from .stages import (
    ForecastOutputs, PlanOutputs, daily_history, forecast_pools, load_pool_history, plan_capacity, pool_tiers, previous_plan,
)
from .store import Store

__all__ = ["RunRequest", "monthly_run", "ingest_flow", "report_flow", "run_monthly"]

Progress = Callable[[int, int, str], None]


class RunRequest(BaseModel):
    """Parameters of a run (the Prefect deployment's parameter)."""

    model_config = ConfigDict(extra="forbid")
    config_path: str = "capplan.yaml"
    overrides: dict[str, Any] = Field(default_factory=dict, description="config values to change, nested like the YAML")
    as_of: dt.date | None = Field(None, description="plan date; default: the config's, else today")
    kind: Literal["monthly", "what-if"] = "monthly"
    scenario_path: str | None = None
    send_email: bool | None = Field(None, description="override email.enabled")
    dask_address: str | None = Field(None, description="override executor.dask_address")
    wait_s: float = Field(0.0, ge=0, description="wait this long for another run to finish")


def _logger():
    try:
        return get_run_logger()
    except Exception:  # outside a flow run (plain function call in a notebook)
        import logging

        return logging.getLogger("capplan")


def resolve_as_of(cfg: Config, request_as_of: dt.date | None) -> dt.date:
    return request_as_of or cfg.as_of or dt.datetime.now(dt.timezone.utc).date()


def _run_id(as_of: dt.date) -> tuple[str, str | None]:
    try:
        from prefect.runtime import flow_run

        fid = flow_run.id
    except Exception:
        fid = None
    return f"{as_of:%Y-%m}-{(fid or uuid.uuid4().hex)[:8]}", fid


# -- tasks ---------------------------------------------------------------------------
@task(name="ingest-history", cache_policy=NO_CACHE)
def ingest_history(cfg: Config, as_of: dt.date, progress: Progress | None = None) -> IngestResult:
    """Bring the history window into DuckDB from the configured source."""
    if progress is None:
        from .progress import report

        progress = lambda done, total, label: report("ingest", done, total, label)  # noqa: E731
    store = Store(cfg.path(cfg.store.path))
    src = cfg.source
    if src.kind == "demo":
        return ingest_demo(store, src.demo.nodes, as_of, cfg.forecasting.history_days, src.demo.seed, src.demo.clusters, progress)
    if src.kind == "file":
        from .ingest import IngestError, ingest_file

        if not src.file.path:
            raise IngestError("source.file.path is not set (or pass --source file PATH)")
        inventory = cfg.path(src.file.inventory) if src.file.inventory else None
        return ingest_file(store, cfg.path(src.file.path), inventory, as_of, cfg.forecasting.history_days)
    from .prometheus import ingest_prometheus

    return ingest_prometheus(store, cfg, as_of, progress)


@task(name="forecast-demand", cache_policy=NO_CACHE)
def forecast_demand(cfg: Config, events: list[Event], tiers: dict, as_of: dt.date, runner: Callable | None = None) -> tuple[ForecastOutputs, pd.DataFrame]:
    """Daily-peak forecasts of every pool series, with model choice by backtest."""
    store = Store(cfg.path(cfg.store.path))
    history = load_pool_history(store, as_of, cfg.forecasting.history_days)
    if history.empty:
        raise RuntimeError(f"no pool history in {store.path} for the {cfg.forecasting.history_days} days before {as_of}; run the ingest first")
    fc = forecast_pools(history, events, tiers, cfg.forecasting.horizon_days, cfg.forecasting.model,
                        cfg.forecasting.level_pct, cfg.forecasting.workers, runner)
    return fc, history


@task(name="plan-capacity", cache_policy=NO_CACHE)
def plan_task(cfg: Config, catalog: Catalog, events: list[Event], as_of: dt.date, run_id: str,
              ingest: IngestResult, fc: ForecastOutputs, history: pd.DataFrame, previous: dict | None) -> PlanOutputs:
    """Headroom, triggers and the costed expansion plan."""
    return plan_capacity(cfg, catalog, events, as_of, run_id, ingest.inventory, ingest.storage_pools, fc, history, previous)


@task(name="render-report", cache_policy=NO_CACHE)
def render_task(cfg: Config, catalog: Catalog, events: list[Event], as_of: dt.date, run_id: str, plan: PlanOutputs,
                fc: ForecastOutputs, history: pd.DataFrame, quality: pd.DataFrame, previous: dict | None,
                what_if: str | None = None) -> dict[str, Path]:
    """Render the HTML report and write it with the plan YAML and CSV."""
    html = render_report(report_inputs(cfg, catalog, events, as_of, run_id, plan, fc, daily_history(history), quality, previous))
    folder = run_dir(cfg.path(cfg.report.dir), f"{as_of:%Y-%m}", what_if)
    return write_outputs(folder, html, plan.document, plan.actions)


def report_inputs(cfg, catalog, events, as_of, run_id, plan, fc, history_daily, quality, previous) -> ReportInputs:
    policies = [{"match": "default", **cfg.policies.default.model_dump()}]
    for o in cfg.policies.overrides:
        m = ", ".join(f"{k}={v}" for k, v in o.match.model_dump().items() if v)
        policies.append({"match": m, **cfg.policies.default.model_dump(), **o.set})
    return ReportInputs(
        run_id=run_id, as_of=as_of, horizon_days=cfg.forecasting.horizon_days, title=cfg.report.title,
        decisions=plan.decisions, actions=plan.actions, capacity=plan.capacity, forecasts=fc.forecasts,
        history=history_daily, scores=fc.scores, quality=quality, fleet_costs=plan.fleet_costs, diff=plan.diff,
        events=events, config_yaml=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        prices_as_of=catalog.prices_as_of, catalog_rows=[t.model_dump() for t in catalog.instance_types],
        policies=policies, previous_run_id=(previous or {}).get("run_id"), max_charts=cfg.report.max_charts,
    )


# -- flows ---------------------------------------------------------------------------
@flow(name="monthly-run", log_prints=True)
def monthly_run(request: RunRequest) -> dict[str, Any]:
    """The monthly job: ingest -> forecast -> plan -> report -> notify."""
    return run_monthly(request)


def run_monthly(request: RunRequest, progress: Progress | None = None) -> dict[str, Any]:
    """The job's body (also callable without Prefect's flow wrapper, e.g. in tests)."""
    log = _logger()
    cfg = load_config(request.config_path, request.overrides)
    events = load_events(cfg.path(cfg.catalogs.events))
    catalog = load_catalog(cfg.path(cfg.catalogs.instances))
    as_of = resolve_as_of(cfg, request.as_of)
    store = Store(cfg.path(cfg.store.path))
    run_id, flow_run_id = _run_id(as_of)
    window = history_window(as_of, cfg.forecasting.history_days)
    timings: dict[str, float] = {}
    with store.run_lock(request.wait_s):
        store.start_run(run_id, request.kind, as_of, cfg.model_dump_json(), window, flow_run_id=flow_run_id)
        log.info("run %s: as of %s, history %s .. %s", run_id, as_of, window[0].date(), window[1].date())
        try:
            t = time.perf_counter()
            ing = ingest_history(cfg, as_of, progress)
            timings["ingest_s"] = time.perf_counter() - t
            log.info("ingested %d samples of %d series (%d new)", ing.rows, ing.series, ing.new_series)
            tiers = pool_tiers(ing.inventory, ing.storage_pools)
            t = time.perf_counter()
            runner = _dask_runner(request.dask_address or cfg.executor.dask_address)
            fc, history = forecast_demand(cfg, events, tiers, as_of, runner)
            timings["forecast_s"] = time.perf_counter() - t
            log.info("forecast %d series (%d failed)", fc.forecasts["series_id"].nunique() if len(fc.forecasts) else 0, len(fc.failures))
            previous = previous_plan(store, run_id)
            t = time.perf_counter()
            plan = plan_task(cfg, catalog, events, as_of, run_id, ing, fc, history, previous)
            timings["plan_s"] = time.perf_counter() - t
            quality = ing.quality
            t = time.perf_counter()
            outputs = {
                "inventory": ing.inventory, "storage_pools": ing.storage_pools, "events": _events_frame(events),
                "data_quality": quality, "forecasts": fc.forecasts, "forecast_overlays": fc.overlays,
                "backtest_scores": fc.scores, "capacity": plan.capacity, "headroom": plan.headroom,
                "decisions": plan.decisions, "plans": plan.actions, "fleet_costs": plan.fleet_costs,
                "plan_diffs": plan.diff.assign(previous_run_id=(previous or {}).get("run_id")) if len(plan.diff) else plan.diff,
            }
            summary = {**plan.summary, "headline": headline(plan.decisions, plan.actions, as_of)}
            paths = render_task(cfg, catalog, events, as_of, run_id, plan, fc, history, quality, previous)
            timings["report_s"] = time.perf_counter() - t
            store.finish_run(run_id, outputs, timings, {**summary, "files": {k: str(v) for k, v in paths.items()}})
        except BaseException as exc:
            store.fail_run(run_id, f"{type(exc).__name__}: {exc}", timings)
            log.error("run %s failed: %s", run_id, exc)
            raise
    send = cfg.email.enabled if request.send_email is None else request.send_email
    result = {"run_id": run_id, "as_of": str(as_of), "summary": summary, "files": {k: str(v) for k, v in paths.items()},
              "timings": timings, "table": _summary_rows(plan), "failures": fc.failures.to_dict("records")}
    _artifact(run_id, summary, plan)
    if send:
        from .notify import send_run_report

        result["email"] = send_run_report(cfg, run_id)
    return result


def _summary_rows(plan: PlanOutputs) -> list[dict]:
    from .report import summary_table

    return summary_table(plan.decisions, plan.actions).to_dict("records")


def _events_frame(events: list[Event]) -> pd.DataFrame:
    return pd.DataFrame([{
        "name": e.name, "kind": e.kind, "start_date": e.start, "end_date": e.end, "uplift_pct": e.uplift_pct,
        "recurring": e.recurring, "scope_json": e.scope.model_dump_json(), "reason": e.reason,
    } for e in events])


def _dask_runner(address: str | None) -> Callable | None:
    if not address:
        return None
    from .scale import dask_runner

    return dask_runner(address)


def _artifact(run_id: str, summary: dict, plan: PlanOutputs) -> None:
    """Markdown summary and plan table in the Prefect UI (skipped outside a flow run)."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None:
            return
        rows = ["| order by | cluster | pool | action | qty | type | $/month |", "|---|---|---|---|---|---|---|"]
        for a in plan.actions.itertuples():
            rows.append(f"| {a.order_by_date} | {_md(a.cluster)} | {_md(a.pool)} | {a.action} | {a.quantity} | {_md(a.instance_type or a.storage_type)} | {a.monthly_cost_usd:,.0f} |")
        md = f"# {_md(summary['headline'])}\n\nRun `{run_id}`; added monthly cost ${summary['added_monthly_cost_usd']:,.0f}.\n\n" + "\n".join(rows)
        create_markdown_artifact(markdown=md, key="capacity-plan", description=f"capplan run {run_id}")
    except Exception as exc:  # an artifact is a nicety; never fail the run for it
        _logger().warning("could not create the Prefect artifact: %s", exc)


def _md(text: object) -> str:
    import html

    return html.escape(str(text)).replace("|", "\\|")


@flow(name="ingest")
def ingest_flow(request: RunRequest) -> dict[str, Any]:
    """Ingest only: pull the history window and snapshot the inventory as an 'ingest' run."""
    cfg = load_config(request.config_path, request.overrides)
    as_of = resolve_as_of(cfg, request.as_of)
    store = Store(cfg.path(cfg.store.path))
    run_id, fid = _run_id(as_of)
    with store.run_lock(request.wait_s):
        store.start_run(run_id, "ingest", as_of, cfg.model_dump_json(), history_window(as_of, cfg.forecasting.history_days), flow_run_id=fid)
        try:
            ing = ingest_history(cfg, as_of)
            store.finish_run(run_id, {"inventory": ing.inventory, "storage_pools": ing.storage_pools, "data_quality": ing.quality},
                             {}, {"rows": ing.rows, "series": ing.series, "new_series": ing.new_series})
        except BaseException as exc:
            store.fail_run(run_id, f"{type(exc).__name__}: {exc}")
            raise
    return {"run_id": run_id, "rows": ing.rows, "series": ing.series, "new_series": ing.new_series}


@flow(name="report")
def report_flow(config_path: str, run_id: str, send: bool = True) -> dict[str, Any]:
    """Re-send a past run's report without recomputing."""
    cfg = load_config(config_path)
    from .notify import send_run_report

    return send_run_report(cfg, run_id) if send else {"run_id": run_id}

