"""`resilience fit` / `compare`: user mistakes exit 1 with a clear message, never a traceback."""

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from analysis.cli.main import app

HS = Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_commands_registered():
    res = run("--help")
    assert res.exit_code == 0
    assert "fit" in res.output and "compare" in res.output


def test_missing_data_file(tmp_path):
    res = run("fit", tmp_path / "nope.csv", "--model", "hs")
    assert res.exit_code == 1
    assert "nope.csv: file not found" in res.output
    assert "Traceback" not in res.output


def test_missing_data_file_json(tmp_path):
    res = run("fit", tmp_path / "nope.csv", "--model", "hs", "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["error"]["type"] == "DataError"
    assert doc["error"]["message"].endswith("nope.csv: file not found")


def test_unknown_model():
    res = run("fit", HS, "--model", "hs2")
    assert res.exit_code == 1
    assert "model 'hs2' not found: it is neither a shipped model (" in res.output
    assert "figure1" in res.output and "hs" in res.output


def test_model_syntax_error_names_file_line_and_caret(tmp_path):
    bad = tmp_path / "bad.lav"
    bad.write_text("visual =~ x1 + x2 + x3\ntextual =~ x4 + + x5\n")
    res = run("fit", HS, "--model", bad)
    assert res.exit_code == 1
    assert f"{bad}: line 2" in res.output
    assert "^" in res.output
    assert "Traceback" not in res.output


def test_variables_not_in_data(tmp_path):
    model = tmp_path / "m.lav"
    model.write_text("visual =~ x1 + x2 + x33\n")
    res = run("fit", HS, "--model", model)
    assert res.exit_code == 1
    # the fit's own data check (the command checks nothing twice), naming the file
    assert f"{HS}: 1 variable(s) of the model not found in the data: 'x33' (did you mean 'x3'" in res.output
    # the hint is its own sentence (was "... not found in the data Survey data? ...")
    assert "Survey data?" in res.output and " Survey data?" not in res.output.replace(". Survey data?", "")


def test_non_numeric_column(tmp_path):
    df = pd.read_csv(HS)
    df["x2"] = df["x2"].astype(object)
    df.loc[4, "x2"] = "six"
    path = tmp_path / "hs_text.csv"
    df.to_csv(path, index=False)
    res = run("fit", path, "--model", "hs", "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert "column 'x2' is not numeric: row 5 has 'six'" in doc["error"]["message"]


def test_zero_variance_and_too_few_cases(tmp_path):
    df = pd.read_csv(HS)
    df["x5"] = 3.0
    path = tmp_path / "const.csv"
    df.to_csv(path, index=False)
    res = run("fit", path, "--model", "hs")
    assert res.exit_code == 1
    assert "zero variance: 'x5' (every case = 3)" in res.output
    small = tmp_path / "small.csv"
    pd.read_csv(HS).head(6).to_csv(small, index=False)
    res = run("fit", small, "--model", "hs")
    assert res.exit_code == 1
    assert "only 6 complete cases for 9 variables" in res.output


def test_corrupt_file(tmp_path):
    path = tmp_path / "survey.xlsx"
    path.write_bytes(b"not a zip")
    res = run("fit", path, "--model", "hs")
    assert res.exit_code == 1
    assert f"{path}: not a valid XLSX file" in res.output


def test_bad_options():
    # a wrong option value is a usage error: exit 2 (the estimators are the registry's)
    res = run("fit", HS, "--model", "hs", "--estimator", "GLS")
    assert res.exit_code == 2
    assert "--estimator must be one of ML, MLR, MLM, WLSMV, ULSMV; got 'GLS'" in res.output
    res = run("fit", HS, "--model", "hs", "--ordered", "x1,z9")
    assert res.exit_code == 2
    assert "--ordered names variables that are not in the model: z9" in res.output


def test_compare_needs_two_models():
    res = run("compare", HS, "--model", "hs")
    assert res.exit_code == 2
    assert "compare needs at least two --model options" in res.output


def test_refused_estimator_missing_combination():
    # options lavaan refuses together are a wrong use of the command: exit 2, with lavaan's reason
    res = run("fit", HS, "--model", "hs", "--estimator", "MLM", "--missing", "fiml", "--json")
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["error"]["kind"] == "usage"
    assert "estimator MLM needs complete data" in doc["error"]["message"]
    assert res.stderr == ""
