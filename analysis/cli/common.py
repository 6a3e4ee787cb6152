"""What several command groups share: the one model resolver, and how a command ends.

How a command ends when it cannot do its work is decided once for every command, in
``instruments/cli/errors.py`` (exit 1 the input is wrong, 2 wrong use of the command, 3 a bug;
one JSON error shape): a command raises ``UsageError`` (exit 2), ``InputError`` or an
``AnalysisError`` (exit 1), and the root group prints it.
"""

from __future__ import annotations

from instruments.cli.errors import InputError, UsageError

from analysis.errors import AnalysisError
from analysis.execution import ExecutionOptionError, check_scheduler

__all__ = ["InputError", "UsageError", "ModelNotFoundError", "resolve_model", "check_model_syntax", "shipped_models", "one_data_source", "scheduler_option"]


def one_data_source(data, study) -> None:
    """A data file or --study DIR (a study store), exactly one of them (UsageError otherwise)."""
    if bool(data) == (study is not None):
        raise UsageError("give a data file or --study DIR (a study store), not both" if data
                         else "no data: give a data file or --study DIR (a study store)")


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


def check_model_syntax(spec: str, syntax: str | None = None, option: str = "--model") -> None:
    """A syntax error of a model file (or a shipped model, or inline syntax) names it, as fit and
    compare do, before a command that passes the model on does any work. ``syntax`` defaults to
    the file's text; a spec that is not a file with no syntax given is left to the library."""
    from pathlib import Path

    from analysis.errors import ModelSyntaxError
    from analysis.sem.syntax import parse_model

    path = Path(spec)
    if syntax is None:
        if not path.is_file():
            return
        try:
            syntax = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return  # the library's own reading says why
    try:
        parse_model(syntax)
    except ModelSyntaxError as exc:
        where = spec if path.is_file() else option if "~" in spec else f"{spec.removesuffix('.lav')}.lav"
        raise ModelSyntaxError(f"{where}: {exc}") from None


def scheduler_option(value: str | None) -> str | None:
    """--scheduler's check before any work: a malformed address is a bad option value (exit 2),
    refused at once instead of after the Dask client's connection retries."""
    if value is None:
        return None
    try:
        return check_scheduler(value)
    except ExecutionOptionError as exc:
        raise UsageError(str(exc)) from None

