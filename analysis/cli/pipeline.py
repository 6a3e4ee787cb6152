"""`resilience init | run | report | demo`: the study pipeline on the command line.

Thin: the library (analysis.study: pipeline, report, demo) does the work; these
commands parse options, show progress and a summary table; a study that cannot
run at all raises StudyError with every problem (file, line, field), which ends
the command with exit 1 in the one error shape (instruments/cli/errors.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from analysis.cli.common import UsageError

JsonOpt = typer.Option(False, "--json", help="Print one JSON document and nothing else.")
TrustTemplateOpt = typer.Option(False, "--trust-template",
                                help="Run report.template although it is not a shipped template (it is Python).")


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _summary_table(run) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Study pipeline", show_lines=False)
    for col in ("step", "status", "time", "note"):
        table.add_column(col, overflow="fold")
    colours = {"ok": "green", "failed": "red", "skipped": "yellow", "unavailable": "magenta"}
    for s in run.steps:
        status = f"[{colours.get(s.status, 'white')}]{s.status}[/]" + (" (cached)" if s.cached else "")
        note = (s.message or "").splitlines()[0] if s.message else ""
        table.add_row(s.name, status, f"{s.seconds:.1f} s", note)
    con = Console(stderr=True)
    con.print(table)
    con.print(f"results: {run.results_json}")
    for fmt, path in (run.report.get("outputs") or {}).items():
        con.print(f"report ({fmt}): {path}")
    for fmt, why in (run.report.get("skipped") or {}).items():
        con.print(f"report ({fmt}) not made: {why}")


def _run(study_path: Path, as_json: bool, report: bool = True, trust_template: bool = False):
    from analysis.study.pipeline import run_study

    # a study file that cannot be used raises StudyError with every problem (line, field): exit 1
    return run_study(study_path, progress=not as_json, report=report, command=["resilience"] + sys.argv[1:],
                     trust_template=trust_template)


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(directory: Path = typer.Argument(..., help="Folder of the new study (created if needed)."),
             title: str = typer.Option("Community resilience study", "--title", help="Title of the study."),
             instrument: str = typer.Option("crs", "--instrument",
                                            help="Shipped instrument name or path of your instrument YAML."),
             force: bool = typer.Option(False, "--force", help="Overwrite an existing study.yaml.")) -> None:
        """Scaffold a study: a commented study.yaml, data/raw, models, results, reports."""
        from analysis.study.spec import init_study

        path = init_study(directory, title=title, overwrite=force, instrument=instrument)
        typer.echo(f"created {path}")
        typer.echo(f"next: copy your data into {path.parent / 'data' / 'raw'}, edit {path.name}, then "
                   f"`resilience run {path}`")

    @app.command("run")
    def run_cmd(study: Path = typer.Argument(..., help="study.yaml (or its folder)."),
                as_json: bool = JsonOpt,
                no_report: bool = typer.Option(False, "--no-report", help="Stop after the results bundle."),
                trust_template: bool = TrustTemplateOpt) -> None:
        """Run the whole study: import, validate, score, psychometrics, models, bootstrap, bundle, report."""
        run = _run(study, as_json, report=not no_report, trust_template=trust_template)
        if as_json:
            typer.echo(json.dumps(run.to_dict(), indent=1, default=str))
        else:
            _summary_table(run)
            if run.data_errors:
                _console().print(f"[red]error[/red] the validator rejected the data: {run.data_errors} error(s) "
                                 "(results.json 'validation'; the report lists them)", markup=True, highlight=False)
        raise typer.Exit(0 if not run.failed and not run.data_errors else 1)

    @app.command("report")
    def report_cmd(target: Path = typer.Argument(..., help="study.yaml, its folder, or a results/ folder."),
                   fmt: str = typer.Option(None, "--format", help="Comma-separated: html,docx,pdf."),
                   force: bool = typer.Option(False, "--force", help="Render even if nothing changed."),
                   trust_template: bool = TrustTemplateOpt,
                   as_json: bool = JsonOpt) -> None:
        """Render the report from a results bundle (no refitting)."""
        from analysis.study.report import render_study_report
        from analysis.study.spec import load_study

        from analysis.study.render import SUPPORTED_FORMATS

        formats = tuple(f.strip() for f in fmt.split(",") if f.strip()) if fmt else None
        unknown = [f for f in formats or () if f not in SUPPORTED_FORMATS]
        if unknown:  # before the bundle is read
            raise UsageError(f"--format takes {', '.join(SUPPORTED_FORMATS)}; got {', '.join(map(repr, unknown))}")
        out_dir, template = None, None
        results_dir = target
        if target.is_file() or (target / "study.yaml").is_file():
            st = load_study(target)
            results_dir, out_dir = st.results_dir, st.reports_dir
            template = st.resolve(st.report.template) if st.report.template else None
        # StepFailure / RenderError (the bundle or the renderer): exit 1, by instruments/cli/errors.py
        info = render_study_report(results_dir, out_dir, formats=formats, template=template, force=force,
                                   trust_template=trust_template)
        if as_json:
            typer.echo(json.dumps(info, indent=1, default=str))
            raise typer.Exit(1 if info.get("skipped") else 0)
        for f, p in info.get("outputs", {}).items():
            typer.echo(f"{f}: {p}" + (" (unchanged)" if info.get("cached") else ""))
        for f, why in info.get("skipped", {}).items():  # asked for and not made: exit 1 with the reason
            _console().print(f"[red]error[/red] {f} not made: {why}", markup=True, highlight=False)
        if info.get("skipped"):
            raise typer.Exit(1)

    @app.command("demo")
    def demo(out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the demo study."),
             n: int = typer.Option(1200, "--n", help="Respondents to simulate."),
             seed: int = typer.Option(20260401, "--seed", help="Seed of the simulation and the bootstrap."),
             replications: int | None = typer.Option(None, "--bootstrap",
                                              help="Bootstrap replications (default 200 with fiml, 500 with listwise)."),
             missing: str = typer.Option("fiml", "--missing",
                                         help="fiml (every answer, under MAR) or listwise (complete cases only)."),
             design: bool = typer.Option(False, "--design", help="A complex sample: minorities oversampled, "
                                         "neighbourhoods as clusters within areas, weights raked to census margins."),
             as_json: bool = JsonOpt) -> None:
        """Simulate a community survey from crs, run the whole study, render the report."""
        from analysis.study.demo import create_demo_study

        if n < 50:
            raise UsageError(f"The '--n' option must be an int >= 50. Got {n} instead.")
        if missing not in ("listwise", "fiml"):
            raise UsageError(f"The '--missing' option must be listwise or fiml. Got {missing!r} instead.")
        if not as_json:
            _console().print(f"simulating {n} respondents (seed {seed}) into {out} ...")
        path = create_demo_study(out, n=n, seed=seed, replications=replications, missing=missing, design=design)
        run = _run(path, as_json)
        if as_json:
            typer.echo(json.dumps(run.to_dict(), indent=1, default=str))
        else:
            _summary_table(run)
            html = (run.report.get("outputs") or {}).get("html")
            if html:
                _console().print(f"\n[bold]The report is ready:[/bold] {Path(html).resolve()}")
        raise typer.Exit(0 if not run.failed else 1)
