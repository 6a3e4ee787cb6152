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


def test_help_does_not_load_the_instrument_schema():
    """The instrument commands are registered without importing instruments.load/schema (pydantic
    models, ~0.2 s): `import instruments` loads them on first use."""
    code = ("import sys; from analysis.cli.main import app\n"
            "sys.argv = ['resilience', '--help']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('instruments.load', 'instruments.schema', 'pydantic') if m in sys.modules],"
            " file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "instrument" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_the_instruments_package_still_offers_its_loaders_and_classes():
    import instruments

    assert instruments.load_instrument("crs").construct_ids[:3] == ["CULT", "PART", "TRUST"]
    assert instruments.Item is instruments.schema.Item
    assert set(instruments.__all__) <= set(dir(instruments))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        instruments.no_such_name  # noqa: B018
