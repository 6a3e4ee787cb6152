"""Root of the `resilience` command line.

Each command group lives in its own module, under ``analysis/cli/`` or, when
it needs only the questionnaire layer, ``instruments/cli/``, and is registered
below. The CLI never computes statistics itself: it parses options,
calls the library, and prints either people-friendly rich output or, with
``--json``, exactly one JSON document on stdout.

How a command ends when it cannot do its work (exit 1 the input is wrong, 2 wrong use of
the command, 3 a bug; one JSON error shape) is decided in one place for every command:
``instruments/cli/errors.py``, applied by the root group below. Commands only raise.
"""

from __future__ import annotations

import importlib

import typer
import typer.core

from instruments.cli.errors import CommandGroup, register_input_errors, register_usage_errors

# the analysis layer's "your input is wrong" exceptions (exit 1); options that cannot go together
# (OptionError: a combination lavaan refuses, a value the library rejects) are usage (exit 2);
# anything else unexpected is a bug (exit 3)
register_usage_errors("analysis.errors:OptionError", "analysis.execution:ExecutionOptionError")
register_input_errors("analysis.errors:AnalysisError", "analysis.execution:ExecutionError",
                      "analysis.study.render:RenderError", "analysis.study.records:StepFailure")


def _flags_take_no_value() -> None:
    """Help lists an on/off flag such as --json without a type: typer >= 0.16 shows
    ``--json <bool>``, which reads as if the flag took a value."""
    option = typer.core.TyperOption
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_flags_plain", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._flags_plain = True
    option.display_type_rich = display_type_rich


_flags_take_no_value()

app = typer.Typer(
    name="resilience",
    help=(
        "Community resilience survey suite: design and field questionnaires, "
        "clean the answers, fit and compare structural equation models of "
        "Figure 1, and publish reproducible reports."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CommandGroup,
)

# (module, how it attaches). A module exposes either `app` (a sub-command group,
# mounted under `name`) or `register(app)` (top-level commands).
_COMMAND_MODULES: list[tuple[str, str | None]] = [
    ("instruments.cli.instrument", "instrument"),
    ("instruments.cli.fielding", None),
    ("analysis.cli.fit", None),
    ("analysis.cli.impute", None),
    ("analysis.cli.psychometrics", None),
    ("analysis.cli.simulation", None),
    ("analysis.cli.pipeline", None),
    ("analysis.cli.serve", None),
    ("analysis.cli.design", None),
]


def _attach(module_name: str, group: str | None) -> None:
    # No fallback: a renamed or broken command module must fail loudly, not
    # quietly drop its commands from `resilience --help`.
    module = importlib.import_module(module_name)
    if group is not None and hasattr(module, "app"):
        app.add_typer(module.app, name=group)
    if hasattr(module, "register"):
        module.register(app)


@app.callback()
def _root() -> None:
    """Community resilience survey suite."""


@app.command()
def version() -> None:
    """Print the suite's version and those of its statistical dependencies."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    for dist in ("community-resilience-suite", "numpy", "scipy", "pandas", "semopy", "statsmodels", "pingouin"):
        try:
            typer.echo(f"{dist} {_version(dist)}")
        except PackageNotFoundError:
            typer.echo(f"{dist} (not installed)")


for _name, _group in _COMMAND_MODULES:
    _attach(_name, _group)


if __name__ == "__main__":  # pragma: no cover
    app()
