"""What a run is asked to do (:class:`RunRequest`) and everything it needs, resolved once
(:class:`RunContext`): config, catalogs, as-of date, run id, history window, store.

The CLI, both Prefect deployments, the benchmarks and the notebook build a run the same
way: ``RunContext.create(...)``, then a job from :mod:`pipelines.jobs`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from forecasting.events import Event
from forecasting.commitments import CommitmentCatalog
from forecasting.planning import PlanBaseline
from forecasting.policy import Catalog
from forecasting.quotas import Quota

from ..config import Config, ConfigError, load_catalogs, load_config
from ..domain import HistoryWindow, PoolKey, RunKind
from ..io.store import Store

__all__ = ["RunRequest", "RunContext", "PreviousPlan", "new_run_id", "resolve_as_of"]


def resolve_as_of(requested: dt.date | None, configured: dt.date | None, allow_future: bool = False,
                  today: dt.date | None = None) -> dt.date:
    """The plan date: ``requested``, else ``configured``, else today (UTC). A date after today
    is refused (a ConfigError) unless ``allow_future``: a plan "as of" a day with no history
    yet would look real and forecast from data that does not exist."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    day = requested or configured or today
    if day > today and not allow_future:
        where = "--as-of" if requested else "as_of (capplan.yaml)"
        raise ConfigError(f"{where}: {day} is in the future (today is {today}); a plan is made as of a day "
                          "with history. For scenario work, pass --allow-future")
    return day


class RunRequest(BaseModel):
    """Parameters of a run (also the Prefect deployments' parameter)."""

    model_config = ConfigDict(extra="forbid")
    config_path: str = "capplan.yaml"
    overrides: dict[str, Any] = Field(default_factory=dict, description="config values to change, nested like the YAML")
    as_of: dt.date | None = Field(None, description="plan date; default: the config's, else today (a what-if: its baseline's)")
    kind: RunKind = "monthly"
    scenario_path: str | None = Field(None, description="what-if: scenario YAML")
    scenario: dict[str, Any] | None = Field(None, description="what-if: the scenario inline (instead of a path)")
    send_email: bool | None = Field(None, description="override email.enabled")
    dask_address: str | None = Field(None, description="override executor.dask_address")
    wait_s: float = Field(0.0, ge=0, description="wait this long for another run to finish")
    allow_future: bool = Field(False, description="accept an as-of date after today (scenario work)")


def new_run_id(as_of: dt.date, kind: RunKind, flow_run_id: str | None = None) -> str:
    """``<yyyy-mm>-<8 hex>`` (what-if: ``<yyyy-mm>-whatif-<8 hex>``); the hex is the Prefect
    flow run id's prefix when there is one, so DuckDB and Prefect share the id."""
    tag = {"monthly": "", "what-if": "whatif-", "ingest": "ingest-"}[kind]
    return f"{as_of:%Y-%m}-{tag}{(flow_run_id or uuid.uuid4().hex)[:8]}"


@dataclass(frozen=True)
class RunContext:
    """One run, resolved: typed config and catalogs, the dates and the run's identity."""

    cfg: Config
    catalog: Catalog
    events: list[Event]
    as_of: dt.date
    run_id: str
    kind: RunKind = "monthly"
    flow_run_id: str | None = None
    baseline_run_id: str | None = None
    quotas: list[Quota] = field(default_factory=list)
    commitments: CommitmentCatalog | None = None
    store: Store = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Store(self.cfg.path(self.cfg.store.path)))

    @classmethod
    def create(cls, config_path: str | Path, overrides: dict | None = None, as_of: dt.date | None = None,
               kind: RunKind = "monthly", flow_run_id: str | None = None, allow_future: bool = False) -> "RunContext":
        """Load and check the config and catalogs (quotas and commitments when configured);
        the as-of date is ``as_of``, else the config's, else today (UTC): see :func:`resolve_as_of`."""
        cfg = load_config(config_path, overrides)
        day = resolve_as_of(as_of, cfg.as_of, allow_future)
        catalog, events, quotas, commitments = load_catalogs(cfg)
        return cls(cfg=cfg, catalog=catalog, events=events, as_of=day, run_id=new_run_id(day, kind, flow_run_id), kind=kind,
                   flow_run_id=flow_run_id, quotas=quotas, commitments=commitments)

    @property
    def window(self) -> HistoryWindow:
        return HistoryWindow.ending(self.as_of, self.cfg.forecasting.history_days)

    @property
    def horizon_end(self) -> dt.date:
        return self.as_of + dt.timedelta(days=self.cfg.forecasting.horizon_days)

    @property
    def report_root(self) -> Path:
        return self.cfg.path(self.cfg.report.dir)


class PreviousPlan(PlanBaseline):
    """A :class:`forecasting.planning.PlanBaseline` read back from the store."""

    @classmethod
    def load(cls, store: Store, run_id: str) -> "PreviousPlan":
        context = store.run_summary(run_id).get("context", {})
        nodes = {PoolKey(r["cluster"], r["pool"]): int(r["nodes"]) for r in context.get("nodes", [])}
        return cls(run_id, store.table("decisions", run_id), store.table("plans", run_id), list(context.get("events", [])), nodes)

    @classmethod
    def before(cls, store: Store, run_id: str) -> "PreviousPlan | None":
        """The newest succeeded monthly run started before ``run_id``, if any."""
        prev = store.latest_run("monthly", before=run_id)
        return cls.load(store, prev) if prev else None
