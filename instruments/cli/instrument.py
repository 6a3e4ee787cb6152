"""`resilience instrument ...`: check, show and document questionnaire definitions.

A thin layer over :mod:`instruments`: every command calls the library and only
formats. Exit codes: 0 valid, 1 the instrument (or form) has errors or a file cannot be
read or written, 2 bad usage; failures end as instruments/cli/errors.py says.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer


def Console(**kwargs):  # noqa: N802 - rich's Console, imported only when a command prints with it
    import rich.console

    return rich.console.Console(**kwargs)


def Table(**kwargs):  # noqa: N802 - rich's Table, imported only when a command prints one
    import rich.table

    return rich.table.Table(**kwargs)

from instruments.cli.errors import InputError, UsageError

app = typer.Typer(
    help="Check, show and document questionnaire definitions (instrument YAML files).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PathArg = typer.Argument(..., help="Instrument YAML file, or the name of a shipped one (e.g. crs).")


class ReportFormat(str, Enum):
    table = "table"
    text = "text"
    json = "json"


class CodebookFormat(str, Enum):
    markdown = "markdown"
    tableschema = "tableschema"


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=False)


def _n(things, noun: str) -> str:
    return f"{len(things)} {noun}" + ("" if len(things) == 1 else "s")


def _write(text: str, output: Path | None, what: str) -> None:
    """To stdout, or to OUTPUT with a line on stderr; an unwritable place exits 1."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write {output}: {err.strerror or err}") from None
    _console(stderr=True).print(f"wrote {what} to {output}")


def _check_lang(inst, lang: str | None) -> None:
    if lang is not None and lang not in inst.languages:
        raise UsageError(f"--lang: unknown language {lang!r}; this instrument has {', '.join(inst.languages)}")


def load_cli_instrument(path: str):
    """Load the instrument (its warnings are `validate`'s to show); an invalid one raises
    InstrumentError with every problem, which ends the command with exit 1."""
    from instruments import load_instrument
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_instrument(path)


@app.command()
def validate(
    path: str = PathArg,
    format: ReportFormat = typer.Option(
        ReportFormat.table, "--format", "-f",
        help="table (for people), text (one 'file:line:col field: message \\[type]' line per issue, "
             "for editors and CI logs) or json (one document)"),
) -> None:
    """Check an instrument; exit 0 if valid, 1 if it has errors (warnings do not fail).

    Every problem is reported, each with its line, column, field and a stable type code,
    including languages whose web survey wording would fall back to English.

    Examples:

        resilience instrument validate crs

        resilience instrument validate my.yaml --format text

        resilience instrument validate my.yaml --format json
    """
    from instruments import validate_instrument

    report = validate_instrument(path, fielding=True)
    if format is ReportFormat.json:
        sys.stdout.write(report.to_json() + "\n")
    elif format is ReportFormat.text:
        sys.stdout.write(str(report) + "\n")
    else:
        console = _console()
        if report.issues:
            console.print(report.as_table())
        if report.valid:
            from instruments import load_instrument
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inst = load_instrument(path)
            console.print(
                f"[green]valid[/green] {path}: {inst.id} {inst.version}, "
                f"{_n(inst.constructs, 'construct')}, {_n(inst.items, 'item')}, "
                f"languages {', '.join(inst.languages)}"
                + (f", {_n(report.warnings, 'warning')}" if report.warnings else "")
            )
        else:
            console.print(f"[red]invalid[/red] {path}: {_n(report.errors, 'error')}")
    raise typer.Exit(int(not report.valid))


@app.command()
def show(
    path: str = PathArg,
    lang: str = typer.Option(None, "--lang", help="language of the item texts (default: the instrument's)"),
) -> None:
    """Summarise an instrument: languages, constructs, items per construct, reverse-keyed items.

    Examples:

        resilience instrument show crs

        resilience instrument show crs --lang ur
    """
    inst = load_cli_instrument(path)
    lang = lang or inst.default_language
    _check_lang(inst, lang)
    console = _console()
    console.print(f"[bold]{inst.title}[/bold]  ({inst.id} {inst.version})")
    langs = []
    for code in inst.languages:
        status = "default" if code == inst.default_language else (
            inst.translations[code].status if code in inst.translations else "no status")
        langs.append(f"{code} ({status})")
    console.print("Languages: " + ", ".join(langs))
    console.print(f"{len(inst.sections)} sections, {len(inst.items)} items, "
                  f"{len(inst.constructs)} constructs, {len(inst.references)} references")

    table = Table(title="Constructs")
    boxes = any(c.figure1_box for c in inst.constructs)  # crs only
    for col in ("Construct", "Label") + (("Figure 1 box",) if boxes else ()) + ("Kind", "Items", "n", "Reverse-keyed"):
        table.add_column(col, overflow="fold", no_wrap=col in ("Construct", "Kind", "n"))
    for c in inst.constructs:
        items = inst.items_of(c.id)
        table.add_row(c.id, c.label, *((c.figure1_box or "",) if boxes else ()), c.kind,
                      " ".join(i.id for i in items), str(len(items)), " ".join(i.id for i in items if i.reverse) or "-")
    console.print(table)

    items = Table(title=f"Items ({lang})")
    for col in ("Section", "Item", "Construct", "Scale", "Role"):
        items.add_column(col, no_wrap=True)
    items.add_column("Text", overflow="fold", ratio=1)
    for it in inst.items:
        construct = (it.construct or "") + (" (R)" if it.reverse else "")
        items.add_row(it.section or "", it.id, construct, it.scale, it.role, it.text.get(lang, ""))
    console.print(items)

    other = Table(title="Grouping, attention and consent items")
    for col in ("Item", "Role", "Details"):
        other.add_column(col, overflow="fold")
    for it in inst.items:
        if it.role == "attention":
            other.add_row(it.id, it.role, f"expects code {it.expected}")
        elif it.role == "grouping":
            detail = f"scale {it.scale}"
            if it.collapsed is not None:
                detail += f"; collapsed {it.collapsed.id} ({len(it.collapsed.groups)} groups)"
            other.add_row(it.id, it.role, detail)
        elif it.role == "consent":
            other.add_row(it.id, it.role, "gates the rest of the survey")
    console.print(other)


@app.command()
def codebook(
    path: str = PathArg,
    output: Path = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
    format: CodebookFormat = typer.Option(None, "--format", "-f",
                                          help="markdown or tableschema (default: from the file suffix)"),
    lang: str = typer.Option(None, "--lang", help="language of labels (default: the instrument's)"),
) -> None:
    """Write a codebook: Markdown, or a frictionless Table Schema (JSON) for the data.

    Examples:

        resilience instrument codebook crs -o codebook.md

        resilience instrument codebook crs -o crs.schema.json

        frictionless validate --schema crs.schema.json answers.csv

        resilience instrument codebook crs --lang ur -f markdown
    """
    from instruments.codebook import markdown_codebook, table_schema_json

    inst = load_cli_instrument(path)
    _check_lang(inst, lang)
    if format is None:
        format = CodebookFormat.tableschema if output and output.suffix == ".json" else CodebookFormat.markdown
    text = table_schema_json(inst, lang=lang) if format is CodebookFormat.tableschema else \
        markdown_codebook(inst, lang=lang) + "\n"
    _write(text, output, f"{format.value} codebook of {inst.id} {inst.version}")


@app.command()
def schema(
    output: Path = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
) -> None:
    """Export the JSON Schema of the instrument format (for editor completion).

    Put '# yaml-language-server: $schema=instrument.schema.json' on the first line of an
    instrument to get completion and typo warnings in VS Code.

    Example:

        resilience instrument schema -o instrument.schema.json
    """
    from instruments.jsonschema import instrument_json_schema_text

    _write(instrument_json_schema_text(), output, "the instrument JSON Schema")


class ConstructRule(str, Enum):
    prefix = "prefix"


@app.command("import")
def import_cmd(
    form: Path = typer.Argument(..., help="XLSForm workbook (.xlsx) or REDCap data dictionary (.csv)."),
    output: Path = typer.Option(..., "--output", "-o", help="Instrument YAML to write."),
    construct_from: ConstructRule = typer.Option(None, "--construct-from",
                                                 help="Naming rule for constructs: prefix (SAF1, SAF2 -> SAF)."),
    construct_column: str = typer.Option("construct", "--construct-column",
                                         help="Column of the form naming each item's construct."),
    language: str = typer.Option("en", "--language", help="Language code of a REDCap dictionary's labels."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (issues included)."),
) -> None:
    """Import an existing questionnaire: an XLSForm (Kobo, ODK) or a REDCap data dictionary.

    Every part of the form that could not be mapped is listed with its sheet, row and column.
    Exit status 1 when something was left out that the instrument needs (the YAML is written
    without it) or when nothing could be imported.

    Examples:

        resilience instrument import form.xlsx -o my.yaml

        resilience instrument import form.xlsx -o my.yaml --construct-from prefix

        resilience instrument import redcap_dictionary.csv -o my.yaml --language es
    """
    import json

    from instruments import InstrumentError
    from instruments.import_form import import_form

    err = _console(stderr=True)
    # a form that cannot be read raises FormImportError with every issue (sheet, row, column): exit 1
    res = import_form(form, construct_from=construct_from.value if construct_from else None,
                      construct_column=construct_column, language=language)
    try:
        res.write(output)
    except InstrumentError as exc:  # the import made something the suite cannot load: say what, and every
        # problem of the form found on the way, so that one run shows them all
        raise InputError(f"the instrument imported from {form} does not load",
                         issues=[*res.issues, *exc.report.errors]) from None
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    if as_json:
        typer.echo(json.dumps({"ok": not res.errors, "output": str(output), **res.to_dict()}, ensure_ascii=False,
                              default=str))
    else:
        err.print(res.summary(), markup=False, highlight=False)
        err.print(f"wrote {output}")
    raise typer.Exit(1 if res.errors else 0)
