"""Field an instrument as a self-hosted web survey.

``resilience serve INSTRUMENT [--study DIR] [--host 127.0.0.1 --port 8000] [--database-url URL] [--tokens FILE]``
``resilience serve-export INSTRUMENT [--study DIR | --database-url URL] -o FILE [--import]``
``resilience withdraw --study DIR [CODE]``

A thin layer over :mod:`instruments.web`. Responses live in
``DIR/web/responses.sqlite`` (or the PostgreSQL database of ``--database-url``);
``serve-export`` writes them in the suite's import format and, with
``--import``, adds that file to the study store like any other field export.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import typer

from analysis.cli.common import InputError, UsageError


def Console(**kwargs):  # noqa: N802 - rich's Console, imported only when a command prints with it
    import rich.console

    return rich.console.Console(**kwargs)

__all__ = ["register", "serve_command", "serve_export_command", "withdraw_command"]


def _instrument(path: str):
    from instruments.cli.instrument import load_cli_instrument

    return load_cli_instrument(path)


def _storage(study: Optional[Path], database_url: Optional[str]):
    from instruments.web import Storage

    path = (study / "web" / "responses.sqlite") if study else Path("responses.sqlite")
    return Storage(database_url, path=path)


def serve_command(
    instrument: str = typer.Argument(..., help="Instrument YAML file or library name (e.g. crs)."),
    study: Optional[Path] = typer.Option(None, "--study", help="Study folder; responses go to DIR/web/responses.sqlite."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    database_url: Optional[str] = typer.Option(None, "--database-url",
                                               help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db."),
    tokens: Optional[Path] = typer.Option(None, "--tokens", help="File of personal tokens, one a line."),
    secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Mark cookies Secure (behind HTTPS)."),
    public_url: Optional[str] = typer.Option(None, "--public-url",
                                             help="Address respondents use, e.g. https://survey.example.org "
                                                  "(resume links; needed when a proxy rewrites Host)."),
    draft_days: float = typer.Option(30.0, "--draft-days", min=0.001,
                                     help="Days an unfinished survey is kept after its last save (then purged)."),
    drafts_per_client_per_hour: int = typer.Option(120, "--drafts-per-client-per-hour", min=1,
                                                   help="New surveys one address may start per hour (raise it "
                                                        "when many respondents share one network)."),
    drafts_per_hour: int = typer.Option(10_000, "--drafts-per-hour", min=1,
                                        help="New surveys everyone together may start per hour."),
) -> None:
    """Serve INSTRUMENT as a web survey (consent first, one section per page, every language)."""
    inst = _instrument(instrument)
    if public_url is not None and not re.fullmatch(r"https?://[^/\s?#]+/?", public_url):
        raise UsageError(f"--public-url {public_url!r}: give scheme and host only, "
                         "e.g. https://survey.example.org")
    if tokens is not None and not tokens.is_file():
        raise InputError(f"{tokens}: token file not found")
    import socket

    try:  # say so before anything is created, rather than uvicorn's errno after start-up
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                         "(choose another with --port)") from None
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from instruments.web import StorageError, SurveyConfig, create_app
    from instruments.web.storage import redact_url

    try:
        storage = _storage(study, database_url)
    except (SQLAlchemyError, StorageError, OSError) as exc:  # a bad URL or an unreachable server
        raise InputError(f"cannot open the response store: {_first_line(exc)}") from None
    try:  # a read-only or full disk must stop the server now, not fail every respondent later
        storage.check_writable()
    except StorageError as exc:
        raise InputError(f"cannot write to the response store {redact_url(storage.url)}: {exc} "
                         "(check that the folder is writable and the disk has space)") from None
    try:
        config = SurveyConfig(secure_cookies=secure_cookies, public_url=public_url, draft_days=draft_days,
                              drafts_per_client_per_hour=drafts_per_client_per_hour, drafts_per_hour=drafts_per_hour)
        app = create_app(inst, tokens=tokens, storage=storage, config=config)
    except (SQLAlchemyError, StorageError, OSError) as exc:
        raise InputError(f"cannot open the response store: {_first_line(exc)}") from None
    from instruments.interface import untranslated_interface

    for lang, keys in untranslated_interface(inst).items():  # say it before respondents see English buttons
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]warning:[/yellow] no '{lang}' wording for {len(keys)} interface string"
            f"{'' if len(keys) == 1 else 's'} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}): "
            f"respondents reading '{lang}' see English there; add them under interface: in the instrument")
    admin = "on (/admin)" if os.environ.get("RESILIENCE_ADMIN_PASSWORD") else "off (set RESILIENCE_ADMIN_PASSWORD)"
    Console(stderr=True).print(f"serving {inst.id} {inst.version} on http://{host}:{port}/ "
                               f"(store: {redact_url(storage.url)}; admin {admin})")
    # keep idle connections open longer than browsers and proxies do, so a reused
    # connection is not closed under a request in flight
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False, access_log=False,
                timeout_keep_alive=75)


def serve_export_command(
    instrument: str = typer.Argument(..., help="Instrument YAML file or library name."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV file to write."),
    study: Optional[Path] = typer.Option(None, "--study", help="Study folder the survey was served with."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="SQLAlchemy URL of the store."),
    import_: bool = typer.Option(False, "--import", help="Also import the file into the study store (needs --study)."),
) -> None:
    """Write the web survey's responses in the suite's import format (optionally import them)."""
    inst = _instrument(instrument)
    if import_ and study is None:
        raise UsageError("--import needs --study DIR")
    from instruments.web import write_responses_csv

    if database_url is None:  # a mistyped --study must not export an empty store it just created
        path = (study / "web" / "responses.sqlite") if study else Path("responses.sqlite")
        if not path.is_file():
            raise UsageError(f"{path}: no web survey responses here (serve with --study {study or 'DIR'} "
                             "first, or pass --database-url)")
    storage = _storage(study, database_url)
    path = write_responses_csv(storage, inst, output)
    n = storage.count()
    typer.echo(f"{path}: {n} response{'' if n == 1 else 's'}")
    if study is not None and (import_ or (study / "study.duckdb").is_file()):
        from instruments.store import Study
        from instruments.web.withdraw import sync_withdrawals

        # withdrawals made on the survey's page reach the study store before anything is added
        synced = sync_withdrawals(storage, Study(study))
        if synced:
            typer.echo(f"study store: {len(synced)} withdrawal{'' if len(synced) == 1 else 's'} applied")
    if import_:
        result = Study(study).import_file(path, inst)
        typer.echo(f"study store: {'added ' + str(result.n_rows) + ' rows' if result.added else result.reason}")


def withdraw_command(
    code: Optional[str] = typer.Argument(None, help="The respondent's reference code (omit to apply the "
                                                    "withdrawals made on the survey's /withdraw page)."),
    study: Path = typer.Option(..., "--study", help="Study folder (its web survey store and study store)."),
    record: bool = typer.Option(False, "--record", help="Record the withdrawal although no store holds the code "
                                                        "yet (answers only in a data file or an export not yet "
                                                        "imported): every later import and analysis leaves it out."),
) -> None:
    """Withdraw a respondent's answers by reference code: erased from the web survey's store and the study
    store, left out of every later import and analysis; an audit record without answers is kept."""
    from instruments.web.withdraw import sync_withdrawals, withdraw

    if not study.is_dir():
        raise UsageError(f"{study}: no such study folder")
    if code is None:
        from instruments.store import Study
        from instruments.web import Storage

        web = study / "web" / "responses.sqlite"
        if not web.is_file() or not (study / "study.duckdb").is_file():
            raise UsageError(f"{study}: needs both a web survey store (web/responses.sqlite) and a study "
                             "store (study.duckdb) to carry withdrawals from one to the other; give a CODE to "
                             "withdraw one")
        storage = Storage(path=web)
        try:
            synced = sync_withdrawals(storage, Study(study))
        finally:
            storage.dispose()
        typer.echo(f"{len(synced)} withdrawal{'' if len(synced) == 1 else 's'} from the web survey applied "
                   "to the study store" + (": " + ", ".join(synced) if synced else ""))
        return
    code = code.strip()
    if not code or len(code) > 200 or any(not ch.isprintable() for ch in code):
        raise UsageError(f"{code!r} is not a reference code")
    result = withdraw(study, code, record=record)
    if not result.found and not result.recorded:
        raise InputError(f"{code}: no response with this reference code in {study} (web survey store or study "
                         "store); nothing was withdrawn. Check the code, or pass --record if the answers are only "
                         "in a data file")
    typer.echo(result.summary() + ". An audit record without answers is kept"
               + (", and every later import and analysis leaves this code out." if result.recorded else "."))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("serve-export")(serve_export_command)
    app.command("withdraw")(withdraw_command)
