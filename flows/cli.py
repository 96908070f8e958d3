"""The `perfagents` command: run, revert, history, evidence, regressions, dashboard. Expected errors: one line on stderr, exit 2."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tasks.errors import InputError, PerfagentsError
from tasks.store import DEFAULT_STORE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make web systems measurably faster, one reversible change at a time.")
console = Console(stderr=True)
out = Console()

StoreOpt = Annotated[Path, typer.Option("--store", help="DuckDB store file")]


def fail(message: str, code: int = 2) -> None:
    from tasks.db.redact import redact_url

    line = redact_url(message).replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever it quotes
    console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def password_to_env(url: str | None) -> str | None:
    """``--db`` without its password, which goes to PGPASSWORD (libpq and psycopg read it; the target,
    its setup and the agents inherit it), so Prefect's copy of the flow's parameters holds none."""
    from tasks.db.redact import redact_url, strip_password, url_password

    try:
        password = url_password(url) if url else None
    except ValueError as exc:  # an unclosed [IPv6 address
        raise InputError(f"bad database URL {redact_url(url or '')!r}: {exc}") from exc
    if url is None or password is None:
        return url
    current = os.environ.get("PGPASSWORD")
    if current is not None and current != password:
        raise InputError("--db carries a password and PGPASSWORD holds another; give one of them")
    os.environ["PGPASSWORD"] = password
    return strip_password(url)


def quiet_prefect(verbose: bool) -> None:
    """Prefect's own logs go to its UI; the terminal shows our progress (and a failed run's one
    line, not the flow engine's ERROR traceback) unless --verbose."""
    os.environ.setdefault("PREFECT_HOME", str(Path(".perfagents") / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect won't create it
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a first run creates Prefect's database: on a busy 2-core machine that outlasts the 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.server", "uvicorn", "httpx",
                     "great_expectations"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


class LiveProgress:
    """Prints each window as it runs: a timer bar while load is on, a line when it ends."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        t = f"[dim]{time.monotonic() - self.started:6.0f}s[/dim]"
        if event == "window_start":
            cfg = ", ".join(f"{k}={v}" for k, v in data["config"].items())
            console.print(f"{t} measuring [bold]{data['label']}[/bold] ({data['seconds']:.0f} s of load; {cfg})")
        elif event == "window_end":
            tot = data["total"]
            flag = "[green]valid[/green]" if data["valid"] else f"[red]rejected[/red] ({escape('; '.join(data['reasons']))})"
            console.print(f"{t}   {flag}: {tot.get('requests', 0)} requests, {tot.get('rps', 0):.1f} rps, "
                          f"p95 {tot.get('p95_ms', 0):.1f} ms, errors {tot.get('error_rate', 0):.2%}")
        elif event == "search_history":
            said = ("re-measuring every configuration (--remeasure)" if data["remeasure"] else
                    f"{data['reused']} configuration(s) reused from earlier runs of this code version")
            console.print(f"{t} search: {said}")
        elif event == "noise":
            median = f", median {data['p50_rel']:.3g}" if data.get("p50_rel") is not None else ""
            console.print(f"{t} noise floor of the {data['scope']}: p95 {data['p95_rel']:.3g}{median} "
                          f"from {data['windows']} A/A windows")
        elif event == "advice":
            tries = ", ".join(f"{x['model']}{' (cached)' if x['cached'] else ''}: {x['outcome']}" for x in data["tries"])
            console.print(f"{t} advisor on {escape(data['location'])}: {data['result']} "
                          f"({data['prompt_tokens']} prompt tokens; {escape(tries or data['detail'])})")
        elif event == "change":
            color = "green" if data["status"] == "kept" else "yellow"
            console.print(f"{t}   [{color}]{data['status']}[/{color}] {escape(data['description'])}: {escape(data['reason'])}")


def print_summary(result: Mapping[str, Any]) -> None:
    from tasks.results.report import before_after_rows

    table = Table(title=f"{result['target']}: {result['status']}  (run {result['run_id']})")
    for col in ("endpoint", "p95 before ms", "p95 after ms", "ratio", "rps before", "rps after"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for r in before_after_rows(result):
        table.add_row(r["endpoint"], f"{r['before_p95_ms']:.1f}", f"{r['after_p95_ms']:.1f}",
                      f"{r['ratio']:.3f}" if r["ratio"] is not None else "-", f"{r['before_rps']:.1f}", f"{r['after_rps']:.1f}")
    out.print(table)
    for c in result["changes"]:
        e = c.get("effect") or {}
        ci = f" 95% CI [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]" if e.get("ci95") else ""
        ratio = f" {e.get('metric')} x{e['ratio']:.3f}{ci} on {e.get('endpoint')}" if e.get("ratio") is not None else ""
        out.print(f"  {c['status']:>8}  {c['description']}{ratio}")
    if result.get("stop_reason"):
        out.print(f"stopped: {result['stop_reason']}")
    out.print(f"report: {result.get('report_html')}")


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="a target spec file or a reference workflow: ecommerce, enterprise-api")],
    goals: Annotated[list[str] | None, typer.Option("--goals", help="performance goals, e.g. 'p95_ms<=200' (repeatable or comma-separated)")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="quick-win | comprehensive")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="e.g. minutes=15,iterations=8,tokens=50000")] = None,
    quality: Annotated[list[str] | None, typer.Option("--quality", help="quality thresholds, e.g. 'error_rate<=0.01'")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the machine-readable result here")] = None,
    store: StoreOpt = DEFAULT_STORE,
    db: Annotated[str | None, typer.Option("--db", help="database URL replacing the spec's, e.g. postgresql://user@127.0.0.1:5432/app")] = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="allow load to a non-loopback host")] = False,
    from_kept: Annotated[bool, typer.Option("--from-kept", help="start from the last kept configuration")] = False,
    remeasure: Annotated[bool, typer.Option("--remeasure", help="measure configurations again even if history has them")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    verbose: Annotated[bool, typer.Option("--verbose")] = False,
) -> None:
    """Optimize a target: baseline, findings, one reversible change at a time, report."""
    from tasks.request import build_request, resolve_request
    from tasks.target import attach_target

    try:
        db = password_to_env(db)  # the flow's parameters are stored by Prefect: no password in them
        params = build_request(
            target=target, performance_goals=_split(goals), optimization_scope=scope, budget_constraints=budget,
            quality_metrics=_split(quality), database_url=db, allow_remote=allow_remote,
            start_from_kept=True if from_kept else None,  # without --from-kept: the workflow's default
            remeasure=remeasure, store=str(store), json_path=str(json_path) if json_path else None)
        request = resolve_request(params)
        check_outputs(store, json_path, request.spec.name)
        if request.spec.start is None:
            attach_target(request.spec)  # unreachable base_url: one line, before any load
    except PerfagentsError as exc:
        fail(str(exc))
    quiet_prefect(verbose)
    from flows.ephemeral import ephemeral_server_dies_with_us, migrate_prefect_database
    from flows.workflows import flow_for

    ephemeral_server_dies_with_us()
    try:
        migrate_prefect_database()
    except PerfagentsError as exc:
        fail(str(exc))
    from tasks import progress
    from tasks.analysis.gate import preload

    preload()  # the gate's Great Expectations import overlaps the Prefect server's start

    listener = LiveProgress(quiet)
    progress.subscribe(listener)
    try:
        result = flow_for(request.spec.name, params)(params)
    except PerfagentsError as exc:
        fail(str(exc))
    except Exception as exc:  # not an expected error: one line here, the traceback with --verbose
        if verbose:
            raise
        fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
             "(run again with --verbose for the traceback)", code=1)
    finally:
        progress.unsubscribe(listener)
    if not quiet:
        print_summary(result)
    if result["status"] == "failed":
        fail(f"run failed: {result.get('stop_reason')}", code=1)


@app.command()
def revert(
    target: Annotated[str | None, typer.Option("--target", help="only this target's changes")] = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Undo every change an interrupted run left applied, from the journal alone."""
    from tasks.changes.journal import REVERT_FAILED, revert_pending
    from tasks.store import Store

    if not store.is_file():
        fail(f"no store at {store}")
    try:
        with Store(store) as st:
            done = revert_pending(st, target)
    except PerfagentsError as exc:
        fail(str(exc))
    if not done:
        out.print("nothing to revert: every journaled change is kept or reverted")
    for row, note in done:
        out.print(f"{row['target']}: {row['description']} -> {note}")
    failed = [row for row, note in done if note.startswith(REVERT_FAILED)]
    if failed:
        console.print(f"[red]error:[/red] {len(failed)} change(s) could not be reverted and stay applied; "
                      "fix the cause and run `perfagents revert` again", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def history(
    target: Annotated[str | None, typer.Option("--target")] = None,
    store: StoreOpt = DEFAULT_STORE,
    limit: Annotated[int, typer.Option("--limit")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Past runs: status, baseline and final p95/rps, kept changes."""
    from tasks.results.history import run_history
    from tasks.store import Store

    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    if not store.is_file():
        fail(f"no store at {store}")
    try:
        with Store(store, read_only=True) as st:
            rows = run_history(st, target, limit)
    except PerfagentsError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="perfagents history")
    for col in ("run", "target", "flow", "status", "p95 base ms", "p95 final ms", "rps base", "rps final", "kept"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["run_id"], r["target"], r["flow"] or "", r["status"] or "", _num(r["baseline_p95_ms"]),
                      _num(r["final_p95_ms"]), _num(r["baseline_rps"]), _num(r["final_rps"]), str(r["kept"]))
    out.print(table)


@app.command()
def evidence(
    run_id: Annotated[str | None, typer.Option("--run", help="a run id (default: the latest finished run)")] = None,
    target: Annotated[str | None, typer.Option("--target", help="the latest run of this target")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="token budget of the bundle (>= 200)")] = 2000,
    out_path: Annotated[Path | None, typer.Option("--out", help="write the bundle here instead of stdout")] = None,
    encoding: Annotated[str, typer.Option("--encoding", help="tiktoken encoding that counts the tokens")] = "cl100k_base",
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """A compressed, token-budgeted evidence bundle of one run, for an LLM."""
    from tasks.results.evidence import MIN_TOKENS, build_bundle, load_result

    if max_tokens < MIN_TOKENS:
        fail(f"--max-tokens must be at least {MIN_TOKENS}, got {max_tokens}")
    try:
        bundle = build_bundle(load_result(store, run_id, target), max_tokens=max_tokens, encoding=encoding)
        if out_path is not None:
            out_path.write_text(bundle.text, encoding="utf-8")
    except PerfagentsError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc.strerror or exc}")
    if out_path is None:
        typer.echo(bundle.text, nl=False)
    console.print(escape(bundle.summary()), highlight=False, soft_wrap=True)


@app.command()
def regressions(
    target: Annotated[str | None, typer.Option("--target", help="only this target's history")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the regressions here as JSON")] = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Regressions in each target's run signatures; exit 1 while a confirmed one is open."""
    from tasks.results.regressions import find_regressions
    from tasks.store import Store

    if not store.is_file():
        fail(f"no store at {store}")
    try:
        with Store(store, read_only=True) as st:
            if target is not None and target not in st.signature_targets():
                fail(f"no signatures of target {target!r} in {store}")
            found = find_regressions(st, target)
        if json_path is not None:
            json_path.write_text(json.dumps(found, indent=2), encoding="utf-8")
    except PerfagentsError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {json_path}: {exc.strerror or exc}")
    out.print(f"perfagents regressions: {found['series']} series judged, {len(found['regressions'])} regression(s), "
              f"{found['open_confirmed']} confirmed and open", highlight=False)
    for r in found["regressions"]:
        out.print(f"{r['target']} {r['endpoint']} {r['metric']}: x{r['size']:.3g} [{r['ci95'][0]:.3g}, {r['ci95'][1]:.3g}] "
                  f"from run {r['run_id']}, false-alarm rate {_rate(r['false_alarm_rate'], r['null_series'])}, {r['status']}, "
                  f"{'open' if r['open'] else 'closed'}", highlight=False, soft_wrap=True)
    for line in found["not_judged"]:
        console.print(f"not judged: {escape(line)}", highlight=False, soft_wrap=True)
    if found["open_confirmed"]:
        raise typer.Exit(1)


@app.command()
def dashboard(
    store: StoreOpt = DEFAULT_STORE,
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1")] = 8765,
) -> None:
    """A live web page of the runs (the window under load, windows, decisions, findings, history)."""
    from tasks.results.dashboard import serve

    if not 1 <= port <= 65535:
        fail(f"--port must be between 1 and 65535, got {port}")
    if not store.is_file():
        fail(f"no store at {store}")
    try:
        serve(store, port, on_ready=lambda url: console.print(f"dashboard of {store} on {url} (Ctrl-C stops it)",
                                                              highlight=False, soft_wrap=True))
    except PerfagentsError as exc:
        fail(str(exc))


def _rate(rate: float, simulated: int) -> str:
    return f"< {1 / simulated:.2%}" if rate == 0 else f"{rate:.2%}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _split(items: list[str] | None) -> list[str] | None:
    if items is None:
        return None
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def check_outputs(store: Path, json_path: Path | None, target: str) -> None:
    """The store and the JSON file can be created there, and a store that exists is ours; checked
    before anything starts, leaving nothing behind (the probe is an unnamed O_TMPFILE on Linux);
    and no earlier run left the target's changes open."""
    import tempfile

    from tasks.changes.journal import refuse_open_changes
    from tasks.store import Store

    for path in (store, json_path):
        if path is None:
            continue
        if path.is_dir():
            raise InputError(f"cannot write {path}: it is a folder")
        probe = path.absolute().parent
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(f"cannot write {path}: {probe} is not a folder")
        try:
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if store.exists():
        with Store(store, read_only=True) as st:  # StoreError: not DuckDB, another database, a newer schema
            refuse_open_changes(st, target, store)


def main(argv: list[str] | None = None) -> None:
    """The console script; ``argv`` (default: the command line) lets a test drive it in-process.

    A usage error (an unknown option, a value of the wrong type) is one line as well, not
    click's boxed usage panel."""
    try:
        code = app(args=argv, prog_name="perfagents", standalone_mode=False)
    except typer.TyperException as exc:  # click's ClickException family
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help (as typer checks it)
            message = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
            console.print(f"[red]error:[/red] {escape(message)} (see --help)", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        console.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
