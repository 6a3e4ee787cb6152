"""The command line registers every command module, loudly, and starts without the heavy libraries."""

import subprocess
import sys

import pytest

from analysis.cli import main


def test_a_missing_command_module_is_an_error_not_a_silently_lost_command(monkeypatch):
    monkeypatch.setattr(main, "_COMMAND_MODULES", [("analysis.cli.no_such_module", None)])
    with pytest.raises(ModuleNotFoundError, match="analysis.cli.no_such_module"):
        main._attach("analysis.cli.no_such_module", None)


def test_every_listed_module_contributes_commands():
    names = {c.name or c.callback.__name__ for c in main.app.registered_commands}
    groups = {g.name for g in main.app.registered_groups}
    for expected in ("fit", "compare", "import", "score", "simulate", "power", "run", "serve", "reliability"):
        assert expected in names, expected
    assert "instrument" in groups


def test_help_does_not_import_pandas_scipy_or_matplotlib():
    code = ("import sys; from analysis.cli.main import app\n"
            "sys.argv = ['resilience', '--help']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('pandas', 'scipy', 'matplotlib', 'duckdb', 'dask', 'fastapi') if m in sys.modules]\n"
            "print(heavy, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "fit" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"
