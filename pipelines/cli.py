"""The ``capplan`` command line: demo, ingest, forecast, plan, report, run, runs."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="capplan: capacity forecasting and expansion planning for Kubernetes fleets.\n\n"
    "Reads history (demo fleet, files or Prometheus) into DuckDB, forecasts daily peak demand per pool, "
    "computes N+2 headroom, trigger and order-by dates, and writes a costed expansion plan and report.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console(stderr=False, width=None if sys.stdout.isatty() else 260, soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, width=None if sys.stderr.isatty() else 180)

ConfigOpt = typer.Option(Path("capplan.yaml"), "--config", "-c", help="capplan.yaml to use")
AsOfOpt = typer.Option(None, "--as-of", help="plan date YYYY-MM-DD (default: config's as_of, else today)")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="show Prefect's log lines")
DebugOpt = typer.Option(False, "--debug", help="show the traceback of an unexpected error")
AllOpt = typer.Option(False, "--all", help="list every pool, not only those that need capacity")
FutureOpt = typer.Option(False, "--allow-future", help="accept an --as-of after today (scenario work; the plan has no "
                         "history for the days after today)")


def _flags_without_type() -> None:
    """typer 0.29 prints ``<bool>`` after on/off flags in --help (they take no value): show no
    type for flags. Other options keep theirs."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else shown(self, ctx)


_flags_without_type()


def _quiet_prefect(verbose: bool) -> None:
    # Quiet by default: failures are reported as one plain line by _errors(); --verbose shows
    # Prefect's own log (with tracebacks). Must run before prefect is imported.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    from .orchestration import prefect_defaults

    prefect_defaults()
    for name in ("prophet", "cmdstanpy", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:  # the run lifecycle logs its failure for workers; here _errors() prints it once
        logging.getLogger("capplan.run").setLevel(logging.CRITICAL)


def _shown(exc: object) -> str:
    """An error message for the terminal: no Rich markup (the doctor's fixes hold [...]
    lists, label values may hold anything), control and bidi characters visible
    (:func:`pipelines.display.for_terminal`); the lines a message has by design stay."""
    from rich.markup import escape

    from .display import for_terminal

    return escape(for_terminal(exc, limit=None, keep_newlines=True))


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a line is logged (not when the handler was made)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def debug_logging(debug: bool) -> None:
    """``--debug``: capplan's own DEBUG lines (each retried request's attempt) on stderr."""
    logger = logging.getLogger("capplan")
    ours = [h for h in logger.handlers if isinstance(h, _StderrHandler)]
    if debug and not ours:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    elif not debug and ours:  # a later command in the same process (tests): back to quiet
        for h in ours:
            logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)


@contextmanager
def _errors(debug: bool = False) -> Iterator[None]:
    """Known errors become one plain line: exit 2 for bad configuration, 1 otherwise."""
    from forecasting.engine import ForecastInputError
    from forecasting.policy import CatalogError

    from .config import ConfigError
    from .io.sources import IngestError
    from .io.store import StoreError

    debug_logging(debug)
    try:
        yield
    except typer.Exit:
        raise
    except ConfigError as exc:
        err.print(f"[red]error:[/] {_shown(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except (IngestError, StoreError, CatalogError, ForecastInputError) as exc:
        err.print(f"[red]error:[/] {_shown(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    except Exception as exc:
        from .io.smtp import EmailError
        from .io.sources.prometheus import PrometheusError

        if isinstance(exc, (PrometheusError, EmailError)):
            err.print(f"[red]error:[/] {_shown(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        if debug:
            raise
        err.print(f"[red]error:[/] {_shown(f'{type(exc).__name__}: {exc}')} (run again with --debug for the traceback)",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@contextmanager
def _progress() -> Iterator[None]:
    """Rich progress bars for the long steps (ingest, forecast) while a command runs."""
    from .progress import set_reporter, set_step_reporter

    with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False, disable=not err.is_terminal) as prog:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int, label: str) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total, description=f"{stage}: {label}"[:32])

        def step(name: str, seconds: float | None) -> None:
            if seconds is None:
                prog.console.print(f"[dim]  {name} ...[/]", highlight=False)
            else:
                prog.console.print(f"[dim]  {name} done in {seconds:.1f} s[/]", highlight=False)

        set_reporter(update)
        set_step_reporter(step)
        try:
            yield
        finally:
            set_reporter(None)
            set_step_reporter(None)


def _print_result(result: dict, show_all: bool = False) -> None:
    """The pools to act on (every pool with ``show_all``): one row per pool, the same
    figures as the report, the YAML, the CSV and the email."""
    import pandas as pd

    from rich.text import Text

    from .display import for_terminal
    from .present.tables import elastic_lines, fmt_date, fmt_money, fmt_pct, pool_table

    s = result["summary"]
    table = Table(title=s.get("headline", "capacity plan"), show_lines=False)
    for col in ("cluster", "pool", "status", "binds on", "measured peak", "forecast peak", "trigger", "order by",
                "risk of late", "to add", "monthly cost", "next 12 months"):
        table.add_column(col, justify="right" if col in ("measured peak", "forecast peak", "risk of late", "monthly cost",
                                                        "next 12 months") else "left")
    pools = pd.DataFrame(result["table"])
    shown = pool_table(pools, show_all) if len(pools) else pools
    for r in shown.itertuples():
        style = {"red": "red", "amber": "yellow"}.get(r.status, "")
        status = r.status + (" (late)" if r.late else "") + (" (temporary)" if r.temporary else "")
        # label values as plain text: no Rich markup, control and bidi characters visible, long ones cut
        table.add_row(Text(for_terminal(r.cluster, 60)), Text(for_terminal(r.pool, 60)), status, r.binds_on or "-",
                      fmt_pct(r.measured_peak_pct), fmt_pct(r.forecast_peak_pct),
                      fmt_date(r.trigger_date), fmt_date(r.order_by_date), fmt_pct(r.risk_pct),
                      Text(for_terminal(r.to_add, 80)), fmt_money(r.monthly_cost_usd), fmt_money(r.next_12m_cost_usd), style=style)
    console.print(table)
    hidden = len(pools) - len(shown)
    if hidden:
        console.print(f"{hidden} more pool(s) have headroom for the whole horizon (--all shows them)")
    console.print(f"added run-rate {fmt_money(s['added_monthly_cost_usd'])}/month; next 12 months {fmt_money(s['next_12m_cost_usd'])}; "
                  f"today's fleet (nodes and storage) {fmt_money(s['fleet_monthly_cost_usd'])}/month")
    for line in elastic_lines(s.get("elastic")):
        console.print(for_terminal(line, limit=None), markup=False, highlight=False)
    cost = (s.get("ingest") or {}).get("cost") or {}
    if cost.get("line"):
        console.print(f"server cost of the pull: {cost['line']}", markup=False, highlight=False)
    console.print(f"run id: {result['run_id']}")
    for kind, path in result["files"].items():
        console.print(f"{kind:>7}: {path}")
    if result.get("failures"):
        console.print(f"[yellow]{len(result['failures'])} series could not be forecast: their pools are marked "
                      "'no forecast: review' (the report's data-quality section lists them)[/]")
    if result.get("email"):
        console.print(f"email: {result['email'].get('status')} to {', '.join(result['email'].get('recipients', []))}")


def _run(config: Path, as_of: Optional[str], overrides: dict, send: Optional[bool], dask_address: Optional[str],
         wait: float, verbose: bool, debug: bool, show_all: bool = False, months: int = 1, allow_future: bool = False) -> None:
    _quiet_prefect(verbose)
    with _errors(debug):
        from .config import load_catalogs, load_config
        from .jobs import RunRequest
        from .jobs.context import resolve_as_of

        cfg = load_config(config, overrides)  # fail fast, before Prefect starts
        load_catalogs(cfg)
        day = resolve_as_of(_date(as_of), cfg.as_of, allow_future)
        console.print(f"[dim]running the monthly job as a Prefect flow ({_prefect_where()})...[/]")
        from .orchestration.flows import monthly_run

        dates = _past_months(day, months)
        for i, d in enumerate(dates):
            if len(dates) > 1:
                console.print(f"[dim]monthly run {i + 1} of {len(dates)}: as of {d}[/]")
            req = RunRequest(config_path=str(config), overrides=overrides, as_of=d, send_email=send if d == day else False,
                             dask_address=dask_address, wait_s=wait, allow_future=allow_future)
            with _progress():
                result = monthly_run(req)
        _print_result(result, show_all)


def _past_months(as_of: dt.date, months: int) -> list[dt.date]:
    """``months`` as-of dates ending with ``as_of``: the 1st of each earlier month, then ``as_of``."""
    first = as_of.replace(day=1)
    earlier = []
    for k in range(months - 1, 0, -1):
        y, m = divmod(first.month - 1 - k, 12)
        earlier.append(dt.date(first.year + y, m + 1, 1))
    return earlier + [as_of]


def _prefect_where() -> str:
    """Which Prefect API a flow reports to, and where Prefect keeps its files."""
    home = os.environ.get("PREFECT_HOME", "~/.prefect")
    api = os.environ.get("PREFECT_API_URL")
    if api:
        return f"Prefect API {api}"
    return f"no Prefect server configured: a temporary local one starts (up to a minute the first time); Prefect home {home}"


def _date(text: Optional[str]) -> Optional[dt.date]:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        from .config import ConfigError

        raise ConfigError(f"--as-of: expected a date YYYY-MM-DD, got {text!r}") from None


@app.command()
def demo(
    config: Path = ConfigOpt,
    nodes: int = typer.Option(400, "--nodes", help="fleet size (the handbook's estate is 10800)"),
    seed: int = typer.Option(7, "--seed", help="random seed of the demo generator"),
    as_of: Optional[str] = AsOfOpt,
    send: bool = typer.Option(False, "--send", help="email the report (needs the email section configured)"),
    show_all: bool = AllOpt,
    months: int = typer.Option(1, "--months", min=1, max=24, help="build this many monthly runs (the 1st of each earlier "
                               "month, then the plan date), so the report shows how past plans did"),
    allow_future: bool = FutureOpt,
    verbose: bool = VerboseOpt,
    debug: bool = DebugOpt,
) -> None:
    """Build the demo fleet into DuckDB and run the whole monthly job on it (no servers needed)."""
    _run(config, as_of, {"source": {"kind": "demo", "demo": {"nodes": nodes, "seed": seed}}}, send or None, None, 0.0, verbose,
         debug, show_all, months, allow_future)


@app.command()
def run(
    config: Path = ConfigOpt,
    as_of: Optional[str] = AsOfOpt,
    send: Optional[bool] = typer.Option(None, "--send/--no-send", help="email the report (default: email.enabled)"),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="run the forecast fan-out on this Dask scheduler"),
    wait: float = typer.Option(0.0, "--wait", help="seconds to wait if another run holds the database"),
    show_all: bool = AllOpt,
    months: int = typer.Option(1, "--months", min=1, max=24, help="also run the earlier months (as of the 1st of each), "
                               "oldest first, to build a track record of past plans"),
    allow_future: bool = FutureOpt,
    verbose: bool = VerboseOpt,
    debug: bool = DebugOpt,
) -> None:
    """Run the monthly job: ingest -> forecast -> plan -> report (-> email)."""
    _run(config, as_of, {}, send, dask_address, wait, verbose, debug, show_all, months, allow_future)


@app.command()
def ingest(
    path: Optional[Path] = typer.Argument(None, help="CSV or Parquet file (with --source file)"),
    config: Path = ConfigOpt,
    source: Optional[str] = typer.Option(None, "--source", help="demo | prometheus | file (default: the config's)"),
    inventory: Optional[Path] = typer.Option(None, "--inventory", help="node inventory CSV (with --source file)"),
    as_of: Optional[str] = AsOfOpt,
    allow_future: bool = FutureOpt,
    verbose: bool = VerboseOpt,
    debug: bool = DebugOpt,
) -> None:
    """Pull the history window into DuckDB (re-running replaces windows, never duplicates)."""
    _quiet_prefect(verbose)
    with _errors(debug):
        from .config import ConfigError, load_config

        overrides: dict = {}
        if source:
            if source not in ("demo", "prometheus", "file"):
                raise ConfigError(f"--source: expected demo, prometheus or file, got {source!r}")
            overrides["source"] = {"kind": source}
        if path:
            overrides.setdefault("source", {}).setdefault("file", {})["path"] = str(path.resolve())
        if inventory:
            overrides.setdefault("source", {}).setdefault("file", {})["inventory"] = str(inventory.resolve())
        load_config(config, overrides)  # fail fast, before Prefect starts
        from .jobs import RunRequest
        from .orchestration.flows import ingest_flow

        with _progress():
            out = ingest_flow(RunRequest(config_path=str(config), overrides=overrides, as_of=_date(as_of),
                                         allow_future=allow_future))
        s = out["summary"]
        console.print(f"ingested {s['rows']} samples of {s['series']} series ({s['new_series']} new); run {out['run_id']}")
        if (s.get("cost") or {}).get("line"):
            console.print(f"server cost of the pull: {s['cost']['line']}", markup=False, highlight=False)


@app.command()
def forecast(
    input: Path = typer.Option(..., "--input", "-i", help="history CSV with columns timestamp,value (5 min to 1 day step)"),
    horizon_days: float = typer.Option(..., "--horizon-days", "-H", help="days to forecast after the last timestamp"),
    output: Path = typer.Option(..., "--output", "-o", help="CSV to write: ts,yhat,yhat_lower,yhat_upper"),
    model: str = typer.Option("auto", "--model", "-m", help="auto (chosen by backtest) or a model name"),
    events: Optional[Path] = typer.Option(None, "--events", help="events YAML to overlay (all scopes apply)"),
    level: float = typer.Option(80.0, "--level", help="interval level in percent"),
    peak: bool = typer.Option(False, "--peak", help="forecast the daily peak instead of the series' own step"),
    debug: bool = DebugOpt,
) -> None:
    """Forecast one series from a CSV (the stable contract outside tools call)."""
    with _errors(debug):
        import pandas as pd

        from forecasting.engine import fit_forecast, forecast_daily_peak

        from .config import load_events
        from .io.sources import IngestError

        if not input.exists():
            raise IngestError(f"{input}: file not found")
        try:
            hist = pd.read_csv(input)
        except Exception as exc:
            raise IngestError(f"{input}: cannot read as CSV: {exc}") from None
        cols = {c.lower().strip(): c for c in hist.columns}
        if "timestamp" not in cols and "ts" not in cols or "value" not in cols:
            raise IngestError(f"{input}: expected columns timestamp,value; got {', '.join(map(str, hist.columns))}")
        ts_col = cols.get("timestamp", cols.get("ts"))
        ts = pd.to_datetime(hist[ts_col], utc=True, errors="coerce", format="mixed")
        if ts.isna().any():
            i = int(ts.isna().to_numpy().argmax())
            raise IngestError(f"{input}: line {i + 2}: timestamp {hist[ts_col].iloc[i]!r} cannot be parsed")
        values = pd.to_numeric(hist[cols["value"]], errors="coerce")
        frame = pd.DataFrame({"ts": ts, "value": values})
        evs = load_events(events) if events else None
        if evs:
            evs = [e.model_copy(update={"scope": e.scope.model_copy(update={"level": "fleet", "resources": ["cpu", "memory", "pods", "storage"]})}) for e in evs]
        fn = forecast_daily_peak if peak else fit_forecast
        res = fn(frame, horizon_days, evs, model, level)
        out = res.frame[["ts", "yhat", "yhat_lower", "yhat_upper"]].copy()
        out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        output.parent.mkdir(parents=True, exist_ok=True)
        from .io.files import atomic_write

        atomic_write(output.resolve(), out.to_csv(index=False))  # a path the user named: a symlink is followed
        for w in res.warnings:
            err.print(f"[yellow]note:[/] {w}", highlight=False)
        err.print(f"model {res.model}; {len(out)} rows written to {output}", highlight=False)


@app.command()
def plan(
    config: Path = ConfigOpt,
    what_if: Optional[Path] = typer.Option(None, "--what-if", help="scenario YAML (extra events, thresholds, lead times...)"),
    as_of: Optional[str] = AsOfOpt,
    allow_future: bool = FutureOpt,
    verbose: bool = VerboseOpt,
    debug: bool = DebugOpt,
) -> None:
    """Re-plan from the latest run, optionally under a what-if scenario (the baseline is kept).

    Files go to reports/<yyyy-mm>/what-if/<name>/; the monthly report is never touched."""
    _quiet_prefect(verbose)
    with _errors(debug):
        from .jobs import RunRequest, run
        from .jobs.whatif import what_if_text

        res = run(RunRequest(config_path=str(config), kind="what-if", scenario_path=str(what_if) if what_if else None,
                             as_of=_date(as_of), allow_future=allow_future))
        console.print(what_if_text(res.summary, res.run_id, res.files.get("report", "-")))


@app.command()
def report(
    config: Path = ConfigOpt,
    send: Optional[str] = typer.Option(None, "--send", help="RUN_ID: email that past run's report again (no recompute)"),
    verbose: bool = VerboseOpt,
    debug: bool = DebugOpt,
) -> None:
    """Show where the latest report is, or re-send a past run's report by email."""
    _quiet_prefect(verbose)
    with _errors(debug):
        import json

        from .config import load_config
        from .io.store import Store

        cfg = load_config(config)
        store = Store(cfg.path(cfg.store.path))
        if send:
            from .jobs.notify import send_run_report

            out = send_run_report(cfg, send)
            if out.get("status") == "already-sent":
                console.print(f"{out['subject']!r} was already sent to everyone configured; nothing sent")
            else:
                console.print(f"sent {out['subject']!r} to {', '.join(out['recipients'])}")
            return
        rid = store.latest_run("monthly")
        if not rid:
            console.print("no successful run yet; `capplan demo` or `capplan run` makes one")
            raise typer.Exit(1)
        info = store.run(rid)
        files = json.loads(info["summary_json"] or "{}").get("files", {})
        console.print(f"latest run {rid} (as of {str(info['as_of'])[:10]}):")
        for k, v in files.items():
            console.print(f"{k:>7}: {v}")


@app.command()
def runs(config: Path = ConfigOpt, debug: bool = DebugOpt) -> None:
    """List the runs recorded in the database."""
    with _errors(debug):
        from rich.text import Text

        from .config import load_config
        from .display import for_terminal
        from .io.store import Store

        cfg = load_config(config)
        df = Store(cfg.path(cfg.store.path)).runs()
        table = Table()
        for c in ("run_id", "kind", "status", "as_of", "started_at", "error"):
            table.add_column(c)
        for r in df.itertuples():
            table.add_row(r.run_id, r.kind, r.status, str(r.as_of)[:10], f"{r.started_at:%Y-%m-%d %H:%M}",
                          Text(for_terminal(r.error or "", 80)))
        console.print(table)


def _register_more_commands() -> None:
    """Commands that live in their own modules (kept out of this file)."""
    from . import cli_doctor, cli_rules

    cli_doctor.register(app)
    cli_rules.register(app)


_register_more_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
