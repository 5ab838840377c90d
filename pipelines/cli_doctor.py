"""`capplan doctor`: check a Prometheus / Thanos / Mimir source before a run.

The same checks run (without the cost probe) at the start of every Prometheus ingest; see
:mod:`pipelines.io.sources.doctor`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "doctor_report", "header_lines"]

_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


def doctor_report(config: Path, as_of: dt.date | None = None, cost: bool = True, allow_future: bool = False) -> dict:
    """Run the checks on ``config``'s Prometheus source. Out: the :class:`Setup` as a dict
    (``server``, ``checks`` [check, status, detail, fix, cluster], ``clusters``,
    ``estimates``...) plus ``ok`` (no check failed)."""
    from .config import load_config
    from .domain import HistoryWindow
    from .jobs.context import resolve_as_of
    from .io.sources.catalog import load_metric_catalog, rule_names
    from .io.sources.doctor import inspect, probe_costs
    from .io.sources.promapi import PromClient, parse_duration

    cfg = load_config(config)
    src = cfg.source.prometheus
    day = resolve_as_of(as_of, cfg.as_of, allow_future)  # the plan date, as a run would take it
    window = HistoryWindow.ending(day, cfg.forecasting.history_days)
    step = parse_duration(src.step)
    catalog = load_metric_catalog(cfg.path(src.catalog) if src.catalog else None)
    out: dict = {}
    failed = False
    for one in src.per_server():  # several servers (source.prometheus.servers): one after the other, checks together
        client = PromClient(one, cfg.base_dir)
        setup = inspect(client, one, window, step, rule_names(catalog), catalog)
        _catalog_check(setup, cfg)
        if cost and setup.clusters and not any(c.check in ("clusters", "scrape jobs") for c in setup.failed):
            probe_costs(client, one, setup, catalog, window, step)
        failed = failed or bool(setup.failed)
        part = setup.as_dict()
        if len(src.servers) > 1:
            for c in part["checks"]:
                c["detail"] = f"[{one.url}] {c['detail']}"
        if not out:
            out = part
        else:
            for key in ("checks", "clusters", "estimates", "pulls"):
                out[key] += part[key]
            for key in ("found", "history"):
                out[key].update(part[key])
    out.update({"ok": not failed, "url": ", ".join(s.url for s in src.per_server()), "as_of": str(day),
                "history_days": window.days})
    return out


def header_lines(report: dict) -> list[str]:
    """The doctor's first lines: the server, the history asked and held, what each cluster
    has in place. In: :func:`doctor_report`'s dict."""
    s = report["server"]
    kind = f"{s['kind']} {s['version']}".strip()
    lines = [f"capplan doctor: {report['url']} ({kind}), as of {report['as_of']}"]
    held = report.get("history") or {}
    asked = f"{report['history_days']} days of history asked"
    if not held:
        lines.append(f"history: {asked}; what the server holds is unknown (the checks stopped before)")
    for cluster, h in held.items():
        if h["complete"]:
            lines.append(f"history [{cluster}]: {asked}; the server holds them all (data since {h['since']})")
        elif h["since"]:
            lines.append(f"history [{cluster}]: {asked}; the server holds {h['held_days']:.1f} days (since {h['since']}), "
                         f"{h['window_days']:.1f} of them before the plan date: too short")
        else:
            lines.append(f"history [{cluster}]: {asked}; the server holds none")
    if report.get("probed_at") and report["probed_at"] != f"{report['as_of']} 00:00":
        lines.append(f"checks looked at the data of {report['probed_at']} (nothing before the plan date)")
    for cluster, text in (report.get("found") or {}).items():
        lines.append(f"found [{cluster}]: {text}")
    return lines


def print_report(report: dict, console) -> None:
    """The doctor's header lines, one table row per check (status, check, cluster, detail,
    fix) and the count of failures and warnings, on a rich ``console``. Every text is shown as
    text: no Rich markup (details and fixes hold [...] allowlists), and control and bidi
    characters in label values (a cluster named with a line break) visible as escapes."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from .display import for_terminal

    def shown(text: object, limit: int | None = None, lines: bool = False) -> str:
        return escape(for_terminal(text, limit=limit, keep_newlines=lines))

    for line in header_lines(report):
        console.print(shown(line), highlight=False)  # one line each: a break in a label is shown as \n
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("", "check", "cluster", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in report["checks"]:
        table.add_row(f"[{_STYLE[c['status']]}]{c['status']}[/]", shown(c["check"], 80), shown(c["cluster"], 80),
                      shown(c["detail"]), shown(c["fix"], lines=True))  # a fix may hold a YAML snippet
    console.print(table)
    failed = sum(c["status"] == "FAIL" for c in report["checks"])
    warned = sum(c["status"] == "WARN" for c in report["checks"])
    console.print(f"{failed} failed, {warned} warning(s)" + ("" if failed else ": ready for `capplan run`"),
                  style="red" if failed else "green", highlight=False)


def _catalog_check(setup, cfg) -> None:
    """The ``instance catalog`` check: nodes without an instance type, and instance types the
    catalog has no price for (the run stops on either before forecasting, see
    :func:`pipelines.jobs.stages.require_prices`)."""
    from forecasting.policy import UNKNOWN_INSTANCE_TYPE

    from .config import load_catalog

    inv = setup.inventory
    if inv is None or not len(inv):
        return
    unknown = inv[inv["instance_type"] == UNKNOWN_INSTANCE_TYPE]
    if len(unknown):
        setup.add("instance catalog", "WARN", f"{len(unknown)} node(s) have no instance type (e.g. {unknown['node'].iloc[0]}): "
                  "the plan stops until they have one", "allow-list node.kubernetes.io/instance-type in "
                  "kube-state-metrics, or set source.prometheus.instance_type_label")
    missing = load_catalog(cfg.path(cfg.catalogs.instances)).missing_instance_types(inv)
    if missing:
        setup.add("instance catalog", "WARN", f"{missing[0]}: the plan stops until they have a price",
                  f"add them to {cfg.catalogs.instances} under instance_types (sizes estimated from the nodes' "
                  f"allocatable: check them and fill in the prices):\n{missing[1]}")
    elif not len(unknown):
        setup.add("instance catalog", "OK", "every instance type of the fleet is in the catalog")


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command to the CLI."""
    from .cli import FutureOpt  # called by cli.py once its options are defined

    @app.command()
    def doctor(
        config: Path = typer.Option(Path("capplan.yaml"), "--config", "-c", help="capplan.yaml to use"),
        as_of: Optional[str] = typer.Option(None, "--as-of", help="plan date YYYY-MM-DD (default: config's as_of, else today)"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
        cost: bool = typer.Option(True, "--cost/--no-cost", help="probe one day of every pool query (stats=all)"),
        debug: bool = typer.Option(False, "--debug", help="show each retried request's attempts"),
        allow_future: bool = FutureOpt,
    ) -> None:
        """Check the Prometheus / Thanos / Mimir source: server kind and limits, metrics and
        their labels, node-pool labels per cluster, the node-exporter join, duplicates,
        history length, the mixins' recorded series, storage sources, what each pool query
        costs and what the full and the monthly pull would cost. Every line says
        OK, WARN or FAIL and what to change. Exit code 0 when nothing failed, else 1."""
        from rich.console import Console
        from rich.markup import escape

        from .cli import debug_logging
        from .config import ConfigError
        from .io.sources.promapi import PrometheusError

        debug_logging(debug)

        wide = sys.stdout.isatty() or bool(os.environ.get("COLUMNS"))
        console = Console(width=None if wide else 160)
        try:
            day = dt.date.fromisoformat(as_of) if as_of else None
        except ValueError:
            console.print(f"[red]error:[/] --as-of: expected YYYY-MM-DD, got {as_of!r}", soft_wrap=True)
            raise typer.Exit(2)
        try:
            report = doctor_report(config, day, cost, allow_future)
        except ConfigError as exc:
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except PrometheusError as exc:
            if as_json:
                print(json.dumps({"ok": False, "error": str(exc)}))
            else:
                console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        if as_json:
            print(json.dumps(report, default=str))
        else:
            print_report(report, console)
        raise typer.Exit(0 if report["ok"] else 1)
