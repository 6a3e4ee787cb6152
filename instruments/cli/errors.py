"""How every `resilience` command ends when it cannot do its work: one policy, one shape.

Exit codes, the same for every command:

* 0 - done. A command may still end with 1 by itself when its result is a verdict
  (``instrument validate`` of an invalid instrument, ``import`` of data with errors).
* 1 - the user's input is wrong: the data, model, instrument or study file, or a file that is
  missing or cannot be read or written. Any registered input error (``InputError``, the
  instruments' ``InstrumentError``/``ImportError_``/``FormImportError``, pydantic's
  ``ValidationError``, ``OSError``, and what analysis.cli registers: ``AnalysisError``, ...).
* 2 - wrong use of the command: a bad option value, conflicting or missing options. click's
  own usage errors are 2; a command says so by raising :class:`UsageError`, the library by an
  error registered with :func:`register_usage_errors` (analysis: ``OptionError``, e.g. options
  that lavaan refuses together, with lavaan's reason).
* 3 - an internal error, i.e. a bug: the traceback goes to stderr with a request to report
  it. A bug is never dressed up as the user's mistake (exit 1).

With ``--json`` on the command line exactly one document goes to stdout, nothing else::

    {"error": {"type": "DataError", "kind": "input", "message": "...",
               "errors": [{"file": ..., "line": ..., "column": ..., "field": ..., "message": ...}]}}

``kind`` is ``input`` (exit 1), ``usage`` (2) or ``internal`` (3); ``errors`` is there when the
exception carries several located problems (a study file, an instrument, a form). Without
``--json`` one line ``Error: <message>`` goes to stderr, then each problem on its own line.

The root command's group (:class:`CommandGroup`) applies this to every command, so a command
only raises; nothing here imports the analysis layer (it registers its own error classes
with :func:`register_input_errors`).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Iterable

import typer
import typer.core

__all__ = ["EXIT_INPUT", "EXIT_USAGE", "EXIT_INTERNAL", "InputError", "UsageError", "CommandGroup",
           "register_input_errors", "register_usage_errors", "error_document", "issue_records", "report_error"]

EXIT_INPUT, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3

class UsageError(typer.BadParameter):
    """Wrong use of the command (exit 2, as click's own usage errors): a bad option value,
    conflicting or missing options."""

    def format_message(self) -> str:
        return self.message


def _click_error(exc: BaseException) -> bool:
    # click's exceptions (typer ships its own copy of click): they know their exit code and text
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


class InputError(Exception):
    """The user's input cannot be used (exit 1); ``issues`` lists located problems, if any."""

    def __init__(self, message: str, issues: Iterable[Any] = ()):
        self.issues = list(issues)
        super().__init__(message)


# "module:Class" of the exceptions that mean "the input is wrong". Checked only when the module
# is already imported: an exception of a module never loaded cannot have been raised.
_INPUT_ERRORS: list[str] = [
    "builtins:OSError",
    "instruments.errors:InstrumentError",
    "instruments.ingest:ImportError_",
    "instruments.import_form:FormImportError",
    "instruments.web.storage:StorageError",
    "pydantic:ValidationError",
]


# "module:Class" of the library exceptions that mean "the options asked for cannot go together"
# (a combination lavaan refuses, an option's value the library rejects): usage, exit 2.
_USAGE_ERRORS: list[str] = []


def register_usage_errors(*names: str) -> None:
    """Treat exceptions of these classes ("package.module:Class") as wrong use of the command."""
    for name in names:
        if name not in _USAGE_ERRORS:
            _USAGE_ERRORS.append(name)


def register_input_errors(*names: str) -> None:
    """Treat exceptions of these classes ("package.module:Class") as the user's input errors."""
    for name in names:
        if name not in _INPUT_ERRORS:
            _INPUT_ERRORS.append(name)


def _is_one_of(exc: BaseException, names: list[str]) -> bool:
    for name in names:
        module, _, cls = name.partition(":")
        found = getattr(sys.modules.get(module), cls, None)
        if isinstance(found, type) and isinstance(exc, found):
            return True
    return False


def _is_input_error(exc: BaseException) -> bool:
    return isinstance(exc, InputError) or _is_one_of(exc, _INPUT_ERRORS)


def issue_records(exc: BaseException) -> list[dict[str, Any]]:
    """The located problems an exception carries, each as {file, line, column, field, message, ...}."""
    report = getattr(exc, "report", None)
    if report is not None and hasattr(report, "issues"):
        issues = [i for i in report.issues if getattr(i, "severity", "error") == "error"]
    elif getattr(exc, "issue", None) is not None:
        issues = [exc.issue]
    else:
        issues = list(getattr(exc, "issues", None) or [])
    out = []
    for issue in issues:
        raw = issue.to_dict() if hasattr(issue, "to_dict") else {"message": str(issue)}
        rec = {"file": raw.pop("file", None), "line": raw.pop("line", None),
               "column": raw.pop("column", raw.pop("col", None)),
               "field": raw.pop("field", None) or raw.pop("path", None) or None,
               "message": raw.pop("message", str(issue))}
        raw.pop("text", None)
        rec.update({k: v for k, v in raw.items() if v is not None})
        rec["text"] = str(issue)  # the line a person reads, with its location
        out.append(rec)
    return out


def _message(exc: BaseException, issues: list[dict[str, Any]]) -> str:
    if _click_error(exc):
        return exc.format_message()
    if isinstance(exc, OSError) and exc.strerror:
        return (f"{exc.filename}: " if exc.filename else "") + exc.strerror
    text = (str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)).strip()
    if len(issues) == 1:
        return issues[0]["text"]
    first = text.splitlines()[0] if text else type(exc).__name__
    if issues and first == issues[0]["text"]:  # the text is only the list: say how many
        files = {str(i["file"]) for i in issues if i.get("file")}
        return f"{len(issues)} problems" + (f" in {files.pop()}" if len(files) == 1 else "")
    return first if issues else (text or type(exc).__name__)


def error_document(exc: BaseException, kind: str) -> dict[str, Any]:
    """The one JSON error shape: {"error": {"type", "kind", "message"[, "errors"]}}."""
    issues = issue_records(exc) if kind == "input" else []
    if kind == "internal":
        message = (f"internal error (a bug, not your input): {type(exc).__name__}: {exc}; please report it "
                   "with the command you ran and the traceback on stderr")
    else:
        message = _message(exc, issues)
    doc: dict[str, Any] = {"type": type(exc).__name__, "kind": kind, "message": message}
    if issues:
        doc["errors"] = issues
    return {"error": doc}


def report_error(exc: BaseException, as_json: bool) -> int:
    """Print ``exc`` by the policy (JSON on stdout, or ``Error:`` lines on stderr); its exit code."""
    if _click_error(exc):
        kind, code = ("usage" if exc.exit_code == EXIT_USAGE else "input"), exc.exit_code
    elif _is_one_of(exc, _USAGE_ERRORS):
        kind, code = "usage", EXIT_USAGE
    elif _is_input_error(exc):
        kind, code = "input", EXIT_INPUT
    else:
        kind, code = "internal", EXIT_INTERNAL
    doc = error_document(exc, kind)["error"]
    if kind == "internal":  # a bug: its traceback, always, for the report
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if as_json:
        typer.echo(json.dumps({"error": doc}, ensure_ascii=False, default=str))
        return code
    if kind == "internal":
        typer.echo("I" + doc["message"][1:], err=True)   # "Internal error (a bug ...)", never "Error:"
        return code
    typer.echo(f"Error: {doc['message']}", err=True)
    for issue in doc.get("errors", []) if len(doc.get("errors", [])) > 1 else []:
        typer.echo(f"  {issue['text']}", err=True)
    ctx = getattr(exc, "ctx", None)
    if kind == "usage" and ctx is not None and ctx.command_path:
        typer.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
    return code


def _wants_json(args: Iterable[str]) -> bool:
    args = list(args)
    return "--json" in args[: args.index("--") if "--" in args else len(args)]


def _shows_help(exc: BaseException) -> bool:
    # `resilience` or `resilience instrument` alone: click shows the help (exit 2); not an error to reshape
    return type(exc).__name__ == "NoArgsIsHelpError"


class CommandGroup(typer.core.TyperGroup):
    """The root group: every command's failure ends by the policy above."""

    def make_context(self, info_name, args, parent=None, **extra):
        as_json = _wants_json(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except Exception as exc:  # noqa: BLE001 - a bad option value of the root itself
            if not _click_error(exc) or _shows_help(exc):
                raise
            raise typer.Exit(report_error(exc, as_json)) from None
        ctx.meta["resilience.json"] = as_json
        return ctx

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C: workers stopped, not an error to report
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the one place every command's failure is sorted
            if _shows_help(exc):
                raise
            raise typer.Exit(report_error(exc, ctx.meta.get("resilience.json", False))) from None
