"""`resilience fit` on the HS data prints the JSON contract (numbers checked against lavaan 0.6-14)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import _lavaan_fixture as L
from analysis.cli.main import app

DATA = Path(__file__).parents[1] / "fixtures" / "data"
HS = DATA / "HolzingerSwineford1939.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def hs_doc() -> dict:
    res = runner.invoke(app, ["fit", str(HS), "--model", "hs", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # the whole of stdout is one JSON document


def test_fit_keys_match_lavaan(hs_doc):
    ref = L.load("hs_cfa_ml")["fit"]
    fit = hs_doc["fit"]
    for key in ["chisq", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower", "rmsea.ci.upper",
                "srmr", "logl", "aic", "bic"]:
        assert fit[key] == pytest.approx(ref[key], abs=1e-3), key
    assert fit["df"] == 24 and fit["ntotal"] == 301 and fit["converged"] is True
    assert round(fit["chisq"], 3) == 85.306 and round(fit["bic"], 3) == 7595.339


def test_estimates_match_lavaan(hs_doc):
    ref = pd.DataFrame(L.load("hs_cfa_ml")["estimates"])
    est = pd.DataFrame(hs_doc["estimates"])
    assert list(est.columns[:13]) == ["lhs", "op", "rhs", "group", "label", "est", "se", "z",
                                      "pvalue", "ci.lower", "ci.upper", "std.lv", "std.all"]
    m = ref.merge(est, on=["lhs", "op", "rhs"], suffixes=("_r", ""))
    assert len(m) == len(ref) == 24
    for col in ["est", "se", "std.all"]:
        assert (m[col] - m[col + "_r"]).abs().max() < 1e-3, col
    x2 = est[(est["lhs"] == "visual") & (est["rhs"] == "x2")].iloc[0]
    assert round(x2["est"], 4) == 0.5535 and round(x2["se"], 4) == 0.0997


def test_nan_is_null_and_warnings_list(hs_doc):
    x1 = next(e for e in hs_doc["estimates"] if e["lhs"] == "visual" and e["rhs"] == "x1")
    assert x1["z"] is None and x1["se"] == 0
    assert hs_doc["warnings"] == []
    assert hs_doc["missing"]["n_read"] == 301 and hs_doc["missing"]["n_dropped"] == 0


def test_listwise_drop_reported_in_json(tmp_path):
    df = pd.read_csv(HS)
    df.loc[[3, 7], "x4"] = None
    path = tmp_path / "hs_missing.csv"
    df.to_csv(path, index=False)
    res = runner.invoke(app, ["fit", str(path), "--model", "hs", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["fit"]["ntotal"] == 299
    assert doc["missing"]["n_dropped"] == 2 and doc["missing"]["dropped_rows"] == [4, 8]
    assert any("2 of 301 cases with missing values were dropped" in w["message"]
               for w in doc["warnings"])


def test_human_output_is_summary():
    res = runner.invoke(app, ["fit", str(HS), "--model", "hs"])
    assert res.exit_code == 0
    assert "Latent Variables:" in res.output
    assert "  Test statistic                                85.306" in res.output


def test_compare_cli_json(tmp_path):
    orth = tmp_path / "orth.lav"
    orth.write_text(L.load("hs_cfa_ml_orth")["call"]["model"])
    res = runner.invoke(app, ["compare", str(HS), "--model", "hs", "--model", str(orth), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = {r["model"]: r for r in doc["comparison"]["models"]}
    assert set(rows) == {"hs", "orth"}
    assert rows["orth"]["chisq.diff"] == pytest.approx(68.2215761732347, abs=1e-3)
    assert rows["orth"]["df.diff"] == 3
    assert doc["comparison"]["nested"] is True
    res = runner.invoke(app, ["compare", str(HS), "--model", "hs", "--model", str(orth)])
    assert "Chi-Squared Difference Test" in res.output and "68.222" in res.output


@pytest.mark.parametrize("estimator,case", [("MLR", "hs_cfa_mlr"), ("MLM", "hs_cfa_mlm")])
def test_robust_keys_in_json(estimator, case):
    res = runner.invoke(app, ["fit", str(HS), "--model", "hs", "--estimator", estimator, "--json"])
    assert res.exit_code == 0, res.output
    fit = json.loads(res.stdout)["fit"]
    ref = L.load(case)["fit"]
    for key in ["chisq.scaled", "df.scaled", "chisq.scaling.factor", "cfi.robust", "tli.robust",
                "rmsea.robust", "cfi.scaled", "tli.scaled", "rmsea.scaled"]:
        assert fit[key] == pytest.approx(ref[key], abs=1e-3), key


def test_multigroup_summary():
    res = runner.invoke(app, ["fit", str(HS), "--model", "hs", "--group", "school",
                              "--group-equal", "loadings"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "  Number of observations per group:\n    Pasteur" in out
    assert "Group 1 [Pasteur]:" in out and "Group 2 [Grant-White]:" in out
    assert out.index("Group 1 [Pasteur]:") < out.index("Intercepts:") < \
        out.index("Group 2 [Grant-White]:")
    assert "  Test statistic                               124.044" in out


def test_warnings_go_into_json_not_stderr(tmp_path):
    model = tmp_path / "dup.lav"
    model.write_text("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nx1 ~~ x1\nx1 ~~ x1\n")
    res = runner.invoke(app, ["fit", str(HS), "--model", str(model), "--json"])
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    doc = json.loads(res.stdout)
    assert any("duplicated element 'x1 ~~ x1'" in w["message"] for w in doc["warnings"])


def test_modindices_option():
    res = runner.invoke(app, ["fit", str(HS), "--model", "hs", "--modindices", "3", "--json"])
    assert res.exit_code == 0, res.output
    mi = json.loads(res.stdout)["modindices"]
    assert [(r["lhs"], r["op"], r["rhs"]) for r in mi] == [
        ("visual", "=~", "x9"), ("x7", "~~", "x8"), ("visual", "=~", "x7")]
    assert mi[0]["mi"] == pytest.approx(36.411031, abs=1e-3)
    res = runner.invoke(app, ["fit", str(HS), "--model", "hs", "--modindices", "2"])
    assert "Modification Indices (largest 2):" in res.output
    assert "visual =~  x9 36.411" in res.output
