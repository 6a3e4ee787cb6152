"""`resilience reliability | invariance | efa`: JSON on stdout, one-line errors, exit codes."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

sys.path.insert(0, str(Path(__file__).parent))
from test_reliability_instrument import make_responses  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
HS = FIX / "data" / "HolzingerSwineford1939.csv"
HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def crs_csv(tmp_path_factory):
    from instruments import load_instrument

    inst = load_instrument("crs")
    path = tmp_path_factory.mktemp("crs") / "crs.csv"
    make_responses(inst, n=500, seed=4).to_csv(path, index=False)
    return path


def test_invariance_json_contract(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    r = runner.invoke(app, ["invariance", str(HS), "--model", str(model), "--group", "school", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [s["name"] for s in doc["steps"]] == ["configural", "metric", "scalar", "strict"]
    assert doc["steps"][1]["chisq"] == pytest.approx(124.0435, abs=1e-3)
    assert doc["comparisons"][1]["to"] == "scalar" and doc["comparisons"][1]["holds"] is False
    assert doc["highest"] == "metric"


def test_invariance_text_and_partial_search(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    r = runner.invoke(app, ["invariance", str(HS), "-m", str(model), "-g", "school", "--partial", "scalar", "--min-group-size", "50"])
    assert r.exit_code == 0, r.output
    assert "Highest level supported: metric" in r.stdout
    assert "Partial scalar invariance" in r.stdout and "x3~1" in r.stdout


def test_invariance_user_errors_exit_2_without_traceback(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    r = runner.invoke(app, ["invariance", str(HS), "--model", str(model), "--group", "schol"])
    assert r.exit_code == 2
    assert "grouping column 'schol' is not in the data (did you mean 'school'?)" in r.stderr
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["invariance", "nope.csv", "--model", str(model), "--group", "school"])
    assert r.exit_code == 2 and "data file 'nope.csv' not found" in r.stderr
    r = runner.invoke(app, ["invariance", str(HS), "--model", "nomodel", "--group", "school"])
    assert r.exit_code == 2 and "model 'nomodel' is neither a file nor a shipped model" in r.stderr


def test_reliability_cli_json(crs_csv):
    r = runner.invoke(app, ["reliability", str(crs_csv), "--instrument", "crs", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    cons = {c["construct"]: c for c in doc["constructs"]}
    assert "TRUST" in cons and 0.5 < cons["TRUST"]["alpha"] < 0.95
    assert cons["TRUST"]["alpha.ci.lower"] < cons["TRUST"]["alpha"]
    assert "htmt" in doc["validity"]


def test_efa_cli_json(crs_csv):
    r = runner.invoke(app, ["efa", str(crs_csv), "--instrument", "crs", "--n-factors", "3", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_factors"] == 3 and doc["rotation"] == "oblimin"
    assert 0 < doc["kmo"]["overall"] <= 1
    assert len(doc["loadings"][0]) == 5  # item, F1-F3, h2


def test_reliability_cli_missing_instrument(crs_csv):
    r = runner.invoke(app, ["reliability", str(crs_csv), "--instrument", "no_such.yaml"])
    assert r.exit_code == 2
    assert "Traceback" not in r.output
