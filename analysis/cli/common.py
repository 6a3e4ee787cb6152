"""What several command groups share: how a user's mistake ends a command."""

from __future__ import annotations

import json

import typer


def fail(message: str, as_json: bool = False, kind: str = "error") -> None:
    """Exit 1 with ``message``: one JSON document on stdout under --json, else a line on stderr."""
    if as_json:
        typer.echo(json.dumps({"error": {"type": kind, "message": message}}))
    else:
        typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=1)
