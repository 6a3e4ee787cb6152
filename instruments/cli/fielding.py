"""Fielding commands: export an instrument, import, score and quality-check answers.

``resilience instrument export PATH --to xlsform|redcap|limesurvey|paper|ddi|sav -o FILE``
``resilience import DATA --instrument PATH [--format F] [--study DIR] [--mapping FILE] [--json]``
``resilience score DATA --instrument PATH -o FILE``
``resilience quality DATA --instrument PATH [--json] [-o FILE]``

A thin layer over :mod:`instruments` (ingest, validate, store, score,
quality). Exit codes: 0 fine (warnings allowed), 1 errors in the data or a file
that cannot be read, 2 bad usage. ``--json`` prints exactly one JSON document; a
failure ends as instruments/cli/errors.py says (one JSON error shape).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Optional

import typer


def Console(**kwargs):  # noqa: N802 - rich's Console, imported only when a command prints with it
    import rich.console

    return rich.console.Console(**kwargs)


def Table(**kwargs):  # noqa: N802 - rich's Table, imported only when a command prints one
    import rich.table

    return rich.table.Table(**kwargs)

from instruments.cli.errors import InputError, UsageError

__all__ = ["register", "export_command", "import_command", "score_command", "quality_command"]


class ExportTarget(str, Enum):
    xlsform = "xlsform"
    redcap = "redcap"
    limesurvey = "limesurvey"
    paper = "paper"
    ddi = "ddi"
    sav = "sav"


class DataFormat(str, Enum):
    csv = "csv"
    xlsx = "xlsx"
    sav = "sav"
    dta = "dta"
    parquet = "parquet"
    kobo = "kobo"
    odk = "odk"
    redcap = "redcap"
    limesurvey = "limesurvey"


_DEFAULT_SUFFIX = {"xlsform": ".xlsx", "redcap": ".csv", "limesurvey": ".txt", "paper": ".html",
                   "ddi": ".xml", "sav": ".sav"}
_SUFFIXES = {"xlsform": (".xlsx",), "redcap": (".csv",), "limesurvey": (".txt", ".tsv"),
             "paper": (".html", ".htm", ".docx"), "ddi": (".xml",), "sav": (".sav",)}


def _check_output(output: Optional[Path], as_json: bool = False) -> None:
    """Refuse an unknown table suffix before any work is done (exit 2)."""
    from instruments.export_data import TABLE_SUFFIXES

    if output is not None and output.suffix.lower() not in TABLE_SUFFIXES:
        raise UsageError(f"-o {output}: unknown table format {output.suffix or '(no suffix)'!r}; "
                         f"use one of {', '.join(TABLE_SUFFIXES)}")


def _write(frame, output: Path, as_json: bool = False, **options) -> None:
    """Write a table; what the format could not hold (and was changed) is said on stderr."""
    import warnings

    from instruments.export_data import ExportWarning, write_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        try:
            write_table(frame, output, **options)
        except (OSError, ValueError) as exc:  # ValueError: what the format cannot hold
            raise InputError(f"cannot write {output}: {getattr(exc, 'strerror', None) or exc}") from None
    console = Console(stderr=True, soft_wrap=True)
    for w in caught:
        if issubclass(w.category, ExportWarning):
            console.print(f"[yellow]warning:[/yellow] {w.message}", markup=True, highlight=False)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _instrument(path: str, as_json: bool = False):
    from instruments.cli.instrument import load_cli_instrument

    return load_cli_instrument(path)


@contextmanager
def progress_bar(name: str, console: Console | None = None):
    """A progress bar on stderr while a file is read, validated and stored.

    Yields the ``progress(phase, done, total)`` callback of
    :func:`instruments.ingest.import_responses`, or None when stderr is not a
    terminal (logs and pipes stay clean; stdout, where ``--json`` goes, is never used).
    """
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = [bar.add_task(f"{name}: reading", total=None), "reading"]

        def update(phase: str, done: int, total: int | None) -> None:
            if phase != task[1]:  # a new step, timed from its start; without a measure it pulses
                bar.remove_task(task[0])
                task[:] = [bar.add_task(f"{name}: {phase}", total=None), phase]
            if total is not None:
                bar.update(task[0], completed=done, total=total)
            bar.refresh()  # each block shows at once (blocks are seconds apart, not microseconds)

        yield update


def _read(data: Path, inst, fmt: Optional[DataFormat], mapping: Optional[Path], progress=None,
          as_json: bool = False, **options):
    from instruments.ingest import import_responses

    # a file that cannot be read raises ImportError_ with its issue: exit 1 (instruments/cli/errors.py)
    return import_responses(data, inst, format=fmt.value if fmt else None, mapping=mapping,
                            progress=progress, **options)


def export_command(
    path: str = typer.Argument(..., help="Instrument YAML file, or the name of a shipped one (e.g. crs)."),
    to: ExportTarget = typer.Option(..., "--to", help="xlsform | redcap | limesurvey | paper | ddi | sav"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write (paper: .html or .docx)."),
    language: Optional[str] = typer.Option(None, "--language", help="REDCap/.sav label language (default: the instrument's)."),
    version: Optional[str] = typer.Option(None, "--version", help="Form version (XLSForm: yyyymmddrr)."),
) -> None:
    """Export an instrument for fielding (Kobo/ODK, REDCap, LimeSurvey, paper) or as a codebook (DDI, .sav).

    xlsform: an .xlsx to upload to KoboToolbox or ODK Central (every language, likert appearance, relevance, required, groups, start/end/audit). redcap: a data dictionary CSV. limesurvey: a .txt survey structure (Import survey). paper: a printable questionnaire, .html or .docx, every language. ddi: DDI Codebook 2.5 XML. sav: an empty SPSS file with variable and value labels and missing codes.

    Examples:

        resilience instrument export crs --to xlsform -o crs.xlsx

        resilience instrument export crs --to redcap -o crs_dictionary.csv

        resilience instrument export crs --to paper -o crs.docx

        resilience instrument export my.yaml --to paper --language ur -o my_ur.html
    """
    inst = _instrument(path)
    output = output or Path(f"{inst.id}{_DEFAULT_SUFFIX[to.value]}")
    if language is not None and language not in inst.languages:
        raise UsageError(f"--language {language!r} is not declared by {inst.id} ({', '.join(inst.languages)})")
    if output.suffix.lower() not in _SUFFIXES[to.value]:
        hint = "; for a PDF, open the .html in a browser and print it" if output.suffix.lower() == ".pdf" else ""
        raise UsageError(f"-o {output}: --to {to.value} writes {' or '.join(_SUFFIXES[to.value])}{hint}")
    if to is ExportTarget.xlsform and version is not None:
        import re

        if not re.fullmatch(r"\d{10}", version):
            Console(stderr=True).print(f"[yellow]warning:[/yellow] --version {version!r} is not yyyymmddrr "
                                       "(e.g. 2025031501); Kobo and ODK compare versions as text")
    try:
        if to is ExportTarget.xlsform:
            from instruments.export_xlsform import export_xlsform

            export_xlsform(inst, output, version=version)
        elif to is ExportTarget.redcap:
            from instruments.export_redcap import export_redcap

            export_redcap(inst, output, language=language, form_version=version)
        elif to is ExportTarget.limesurvey:
            from instruments.export_limesurvey import export_limesurvey

            export_limesurvey(inst, output, form_version=version)
        elif to is ExportTarget.paper:
            from instruments.export_paper import export_paper

            export_paper(inst, output, languages=[language] if language else None)
        elif to is ExportTarget.ddi:
            from instruments.export_ddi import export_ddi

            export_ddi(inst, output)
        else:
            from instruments.export_sav import export_sav

            export_sav(inst, output, language=language)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    Console(stderr=True).print(f"wrote {output} ({to.value}, {inst.id} {inst.version})")


def import_command(
    data: Path = typer.Argument(..., help="Data file: CSV, XLSX, SAV, DTA, Parquet or a Kobo/ODK/REDCap/LimeSurvey export."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML (or a shipped name)."),
    format: Optional[DataFormat] = typer.Option(None, "--format", help="Override format detection."),
    study: Optional[Path] = typer.Option(None, "--study", help="Study folder: keep the raw file and store the responses."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="YAML/CSV renaming items across form versions."),
    wave: Optional[str] = typer.Option(None, "--wave", help="Wave label stored with the responses (with --study)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of a CSV (default: detected)."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="CSV delimiter (default: sniffed)."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="XLSX sheet (default: the first)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Also write the tidy responses (.csv/.parquet/.xlsx)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    limit: int = typer.Option(50, "--limit", help="Problems shown in the table."),
) -> None:
    """Read and validate field data; exit 1 when it has errors (warnings do not fail).

    The format (Kobo, ODK Central, REDCap, LimeSurvey, or a plain table) is detected from the header; --format overrides it. Every problem is listed with its row, respondent, item and value (--json for all of them). With --study the file is copied unchanged to DIR/data/raw (sha256 in the manifest) and its responses go to DIR/study.duckdb; importing the same file again does nothing, and responses already stored (a cumulative export) are not added twice.

    Examples:

        resilience import kobo_export.csv --instrument crs

        resilience import kobo_export.csv -i crs --study my_study --wave 2025

        resilience import old_form.xlsx -i crs --mapping renames.yaml

        resilience import export.csv -i crs --json > report.json

    A mapping file (YAML): renames: {trust_police: TRUST1}, or per form version: versions: {"2024031501": {NAV_1: NAVIG1}}; items an older version did not ask: absent: {"2024031501": [NAVIG4]}. """
    from instruments.validate import validate

    _check_output(output, as_json)
    inst = _instrument(instrument, as_json)
    stored = None
    if study is not None:
        from instruments.store import Study

        try:
            with progress_bar(data.name) as progress:
                stored = Study(study).import_file(data, inst, format=format.value if format else None,
                                                  mapping=mapping, wave=wave, encoding=encoding,
                                                  delimiter=delimiter, sheet=sheet, progress=progress)
        except OSError as exc:  # a study folder that cannot be written (read-only, full disk ...)
            raise InputError(f"--study {study}: cannot store the import: {exc.strerror or exc}"
                             + (f" ({exc.filename})" if exc.filename else "")) from None
        if not stored.added:
            if as_json:
                sys.stdout.write(json.dumps({"import": stored.to_dict()}, indent=2) + "\n")
            else:
                Console(soft_wrap=True).print(f"nothing to do: {data.name} {stored.reason}")
            raise typer.Exit(0)
        result, report = stored.result, stored.report
    else:
        with progress_bar(data.name) as progress:
            result = _read(data, inst, format, mapping, progress, as_json, encoding=encoding,
                           delimiter=delimiter, sheet=sheet)
            if progress is not None:
                progress("validating", 0, None)
            report = validate(result, inst, source=data.name)
    if output is not None:
        _write(result.data, output, as_json)
    if as_json:
        doc = {"import": {k: v for k, v in result.to_dict().items() if k != "issues"},
               "validation": report.to_dict()}
        if stored is not None:
            doc["store"] = {k: v for k, v in stored.to_dict().items() if k != "validation"}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        console = Console()
        console.print(result.summary())
        if len(report.issues):
            console.print(report.as_table(limit=limit))
        console.print(report.summary())
        if stored is not None:
            skipped = result.n_rows - stored.n_rows
            console.print(f"stored {stored.n_rows} response{'s' * (stored.n_rows != 1)} in {study} "
                          + (f"({skipped} already there) " if skipped else "")
                          + f"(raw copy {Path(stored.raw_path).name})", soft_wrap=True)
    raise typer.Exit(report.exit_code)


def score_command(
    data: Path = typer.Argument(..., help="Data file (any format `resilience import` reads)."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML (or a shipped name)."),
    output: Path = typer.Option(..., "-o", "--output", help="Scored table: .csv, .parquet, .xlsx, .sav, .dta, .json."),
    format: Optional[DataFormat] = typer.Option(None, "--format", help="Override format detection."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="YAML/CSV renaming items across form versions."),
    min_items: Optional[int] = typer.Option(None, "--min-items", help="Override every construct's minimum answered items."),
) -> None:
    """Missing codes to NA, reverse-keying and construct scores, all from the instrument.

    Each construct's score is the mean of its items (reverse-keyed ones flipped) when at least its minimum number of items is answered, else blank.

    Examples:

        resilience score kobo_export.csv --instrument crs -o scored.parquet

        resilience score survey.sav -i crs -o scored.csv --min-items 2
    """
    from instruments.score import score

    _check_output(output)
    inst = _instrument(instrument)
    with progress_bar(data.name) as progress:
        result = _read(data, inst, format, mapping, progress)
        item_ids = [i.id for i in inst.items if i.role == "item"]
        if item_ids and not any(i in result.data.columns for i in item_ids):  # nothing to score: no empty table
            raise InputError(f"{data}: none of the items of instrument {inst.id} is in the data (expected columns "
                             f"such as {', '.join(item_ids[:4])}); is this data of {inst.id}? "
                             "(--mapping renames columns)")
        if progress is not None:
            progress("scoring", 0, None)
        scored = score(result, inst, min_items=min_items)
    _write(scored.table, output, instrument=inst)
    console = Console(stderr=True, soft_wrap=True)
    n_c = len(scored.constructs)
    console.print(f"scored {len(scored.table)} responses, {n_c} construct{'s' * (n_c != 1)} -> {output}")
    from instruments.validate import validate

    report = validate(result, inst, source=data.name)
    if not report.valid:  # scored anyway (bad codes count as blank), but never silently
        kinds = ", ".join(f"{r.type} {r.n}" for r in report.counts().itertuples() if r.severity == "error")
        console.print(f"[yellow]warning:[/yellow] {data.name} has {report.n_errors} validation errors ({kinds}); "
                      "codes outside a scale were scored as blank. "
                      f"See them with: resilience import {data} --instrument {instrument}")


def quality_command(
    data: Path = typer.Argument(..., help="Data file (any format `resilience import` reads)."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML (or a shipped name)."),
    format: Optional[DataFormat] = typer.Option(None, "--format", help="Override format detection."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write indices and flags per respondent."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Careless-responding flags (never deletion) and how many respondents each catches.

    Longstring, intra-individual response variability, Mahalanobis distance, even-odd consistency, psychometric synonyms, speeders (where timings exist), attention checks and duplicates, with the literature's cut-offs. The table is a summary; -o writes every respondent's indices and flags.

    Examples:

        resilience quality kobo_export.csv --instrument crs

        resilience quality kobo_export.csv -i crs -o flags.csv

        resilience quality kobo_export.csv -i crs --json
    """
    from instruments.quality import quality_flags

    _check_output(output, as_json)
    inst = _instrument(instrument, as_json)
    with progress_bar(data.name) as progress:
        result = _read(data, inst, format, None, progress, as_json)
        if progress is not None:
            progress("computing flags", 0, None)
        q = quality_flags(result, inst)
    if output is not None:
        _write(q.table, output, as_json)
    if as_json:
        sys.stdout.write(json.dumps(q.to_dict(), indent=2, default=str) + "\n")
        return
    
    table = Table(title=f"{data.name}: data quality flags ({len(q.table)} respondents)")
    for col in ("Flag", "Rule", "Evaluable", "Flagged", "%", "Note"):
        table.add_column(col)
    for rec in q.summary().itertuples(index=False):
        table.add_row(rec.flag, rec.rule, str(rec.n_evaluable), str(rec.n_flagged),
                      f"{rec.pct_flagged:.1f}", rec.note)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Attach the commands: `import`, `score`, `quality` at the top, `export` under `instrument`."""
    app.command("import")(import_command)
    app.command("score")(score_command)
    app.command("quality")(quality_command)
    from instruments.cli import instrument as instrument_cli

    names = {c.name for c in instrument_cli.app.registered_commands}
    if "export" not in names:
        instrument_cli.app.command("export")(export_command)
