"""resilience fit --se / --test (lavaan's names), issue 15."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

HS = str(Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv")
LAV = Path(__file__).parents[1] / "fixtures" / "lavaan"


def run(*args):
    return CliRunner().invoke(app, ["fit", HS, "-m", "hs", *args])


def test_cli_test_and_se_flags_follow_lavaan():
    rec = json.loads((LAV / "issue15_test_mlr_standard.json").read_text())
    res = run("-e", "MLR", "--se", "Standard", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    opts = doc["model"]["options"]
    assert (opts["se"], opts["test"], opts["information"]) == ("standard", "yuan.bentler.mplus", "expected")
    assert doc["fit"]["chisq.scaled"] == pytest.approx(rec["fit"]["chisq.scaled"], rel=1e-3)
    x2 = [r for r in doc["estimates"] if (r["lhs"], r["op"], r["rhs"]) == ("visual", "=~", "x2")][0]
    assert x2["se"] == pytest.approx(0.0997, abs=5e-5)          # lavaan: standard SE, not .132

    rec = json.loads((LAV / "issue15_test_ml_ss.json").read_text())
    doc = json.loads(run("--test", "scaled.shifted", "--json").stdout)
    assert doc["fit"]["chisq.scaled"] == pytest.approx(rec["fit"]["chisq.scaled"], rel=1e-3)   # 75.853


def test_cli_refuses_what_lavaan_refuses_with_its_reason():
    res = run("-e", "MLR", "--se", "bootstrap")
    assert res.exit_code != 0
    assert "use ML estimator for bootstrap" in res.output
    assert "Traceback" not in res.output


def test_cli_bollen_stine_test():
    res = run("--test", "bootstrap", "--seed", "1")
    assert res.exit_code == 0, res.output
    assert "P-value (Bollen-Stine bootstrap)" in res.stdout
