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


from analysis.errors import AnalysisError


class ModelNotFoundError(AnalysisError):
    """A --model that is neither a shipped name, a file, lavaan syntax nor ``measurement``."""


def shipped_models() -> list[str]:
    from analysis.study.spec import shipped_models as names

    return names()


def resolve_model(spec: str, instrument=None) -> tuple[str, str]:
    """(name, syntax) of a --model, the same for every command.

    ``measurement`` with an instrument is the CFA of that instrument's constructs and items, the
    model the study pipeline fits (analysis.study.measurement_model); otherwise a file, a shipped
    model's name, or lavaan syntax written inline ("F =~ a + b + c").
    """
    from pathlib import Path

    import analysis

    if spec == "measurement" and instrument is not None:
        from analysis.study.spec import measurement_model

        syntax = measurement_model(instrument)
        if not syntax.strip():
            raise ModelNotFoundError(f"--model measurement: the instrument '{instrument.id}' has no latent "
                                     "construct with items, so there is no measurement model to build")
        return "measurement", syntax
    path = Path(spec)
    stem = spec[:-4] if spec.endswith(".lav") else spec
    shipped = Path(analysis.__file__).resolve().parent / "models" / f"{stem}.lav"  # the study's MODELS_DIR
    if "/" not in spec and "\\" not in spec and shipped.is_file() and not path.is_file():
        return stem, shipped.read_text(encoding="utf-8")
    if path.is_file():
        try:
            return path.stem, path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelNotFoundError(f"{path}: cannot read the model file ({exc})") from None
    if "~" in spec:
        return "model", spec  # inline syntax
    raise ModelNotFoundError(f"model {spec!r} not found: it is neither a shipped model "
                             f"({', '.join(shipped_models())}), a file, nor lavaan syntax")
