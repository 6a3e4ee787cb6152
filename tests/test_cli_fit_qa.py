"""`resilience fit` defaults and help as a lavaan user expects them (numbers: tests/fixtures/make_qa.R)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

FIX = Path(__file__).parent / "fixtures"
REF = json.loads((FIX / "qa" / "qa_lavaan.json").read_text())
runner = CliRunner()


def test_ordered_without_estimator_is_wlsmv_as_in_lavaan(tmp_path):
    model = tmp_path / "bin.lav"
    model.write_text(REF["binary_wlsmv"]["syntax"])
    res = runner.invoke(app, ["fit", str(FIX / "qa" / "binary8.csv"), "-m", str(model),
                              "--ordered", "all", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"]["estimator"] == "WLSMV"
    want = REF["binary_wlsmv"]["fit"]
    for key in ("chisq", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "cfi.robust"):
        assert doc["fit"][key] == pytest.approx(want[key], rel=1e-3, abs=1e-4), key


@pytest.mark.parametrize("command", ["fit", "compare"])
def test_help_has_examples(command):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0
    assert "Examples:" in res.stdout
    assert f"resilience {command} " in res.stdout
