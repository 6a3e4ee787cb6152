"""Pooling over imputations against semTools 0.5.6 runMI on the same imputed datasets.

Fixtures: tests/fixtures/make_issue15b.R (mice writes the datasets as CSVs, semTools pools them).
Tolerances: pooled estimates 1e-6; SEs, df, fmi and fit measures 1e-3 relative (MLR: the
per-imputation robust SEs match lavaan to ~1e-4).
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.sem.fit import fit_imputed
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"


def _case(name):
    doc = json.loads((FIX / "lavaan" / f"issue15b_mi_{name}.json").read_text())
    data = [pd.read_csv(FIX / "data" / "mi" / f) for f in doc["call"]["files"]]
    return doc, data


def _rows(fit, doc):
    ours = fit.params[~fit.params["op"].isin(["==", "<", ">"])].reset_index(drop=True)
    ref = pd.DataFrame(doc["estimates"])
    assert list(ours["lhs"] + ours["op"] + ours["rhs"]) == list(ref["lhs"] + ref["op"] + ref["rhs"])
    return ours, ref


def _close(a, b, rel, floor=1e-8):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(b)
    assert np.isfinite(a[ok]).all()
    worst = np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), floor)) if ok.any() else 0.0
    assert worst < rel, worst


@pytest.fixture(scope="module", params=["hs_ml", "hs_mlr", "bfi_wlsmv", "hs_mg_ml", "hs_reg_mlm", "bfi_mg_wlsmv",
                                        "hs_path_ml", "hs_med_ml", "hs_med_mlr", "bfi_ratio_wlsmv"])
def pooled(request):
    doc, data = _case(request.param)
    return request.param, doc, fit_imputed(doc["call"]["model"], data, **doc["call"]["options"])


def test_estimates_are_the_mean_and_match_semtools(pooled):
    name, doc, fit = pooled
    ours, ref = _rows(fit, doc)
    # pooling is a mean, so the pooled estimates differ by what the per-imputation fits differ:
    # below 1e-6 where lavaan's nlminb converges tightly; in the two-group models lavaan stops up to
    # 4e-5 short of the optimum (each of its ML chi-squares is above ours, checked below)
    tol = 2e-5 if "_mg_" in name or "_med_" in name else 1e-6
    assert np.max(np.abs(ours["est"] - ref["est"])) < tol
    ours_chisq = np.array([float(f.fit_indices["chisq"]) for f in fit.imputations])
    lavaan_chisq = np.array(doc["per_imputation"]["chisq"])
    assert np.max(np.abs(ours_chisq / lavaan_chisq - 1)) < 1e-6
    if fit.estimator in ("ML", "MLR", "MLM"):   # the ML discrepancy: ours at or below lavaan's
        assert np.all(ours_chisq <= lavaan_chisq * (1 + 1e-9))
    rel_se = 1e-4 if name in ("hs_mlr", "hs_reg_mlm", "hs_mg_ml", "hs_med_ml", "hs_med_mlr") else 1e-5
    _close(ours["se"], ref["se"], rel_se)
    # Rubin's df, FMI and RIV rest on the between-imputation variance: differences of
    # per-imputation estimates, so a looser relative tolerance
    for col in ("df", "fmi", "riv"):
        _close(ours[col], ref[col], 2e-3)
    _close(ours["pvalue"], ref["pvalue"], 2e-3, floor=1e-12)
    _close(ours["ci.lower"], ref["ci.lower"], 1e-3)
    assert np.max(np.abs(ours["std.all"] - ref["std.all"])) < 1e-5


@pytest.mark.parametrize("name", ["hs_path_ml", "hs_med_ml", "bfi_ratio_wlsmv"])
def test_nonlinear_defined_parameters_pool_as_semtools(name):
    """A product or ratio of parameters: the mean of its m values, SE by the delta method with T
    and semTools' Jacobian (at the first imputation's estimates, not the pooled ones)."""
    doc, data = _case(name)
    fit = fit_imputed(doc["call"]["model"], data, **doc["call"]["options"])
    ours, ref = _rows(fit, doc)
    d = (ours["op"] == ":=").to_numpy()
    assert d.sum() >= 2
    # hs_med: lavaan's optimizer stops up to 2e-5 short in one imputation (its chi-square above ours)
    assert np.max(np.abs(ours["est"][d] - ref["est"][d])) < (1e-5 if name == "hs_med_ml" else 1e-6)
    _close(ours["se"][d], ref["se"][d], 1e-4)
    values = np.array([f.params["est"].to_numpy(float)[d] for f in fit.imputations])
    np.testing.assert_allclose(ours["est"][d], values.mean(axis=0), rtol=1e-12)
    # the Jacobian at the pooled estimates would give other SEs, beyond the tolerance
    from analysis.sem.defined import DefinedParameters
    jac = DefinedParameters(fit.params).jacobian(fit.x)
    at_pooled = np.sqrt(np.einsum("ij,jk,ik->i", jac, fit.vcov, jac))
    assert np.max(np.abs(at_pooled / ref["se"][d].to_numpy() - 1)) > 1e-3


def test_scale_w_gives_semtools_default_ses(pooled):
    name, doc, _ = pooled
    _, data = _case(name)
    fit = fit_imputed(doc["call"]["model"], data, scale_w=True, **doc["call"]["options"])
    ours, ref = _rows(fit, doc)
    _close(ours["se"], ref["se.scale.W"], 1e-4)


FIT_KEYS = ["chisq", "df", "pvalue", "ariv", "fmi", "logl", "unrestricted.logl", "aic", "bic",
            "baseline.chisq", "baseline.df", "cfi", "tli", "rni", "nfi", "ifi", "rfi", "pnfi", "mfi",
            "rmsea", "rmsea.ci.lower", "rmsea.ci.upper", "gammaHat", "srmr", "crmr", "rmr",
            "chisq.scaled", "df.scaled", "chisq.scaling.factor", "chisq.shift.parameters",
            "baseline.chisq.scaled", "cfi.scaled", "tli.scaled", "rmsea.scaled", "rmsea.robust",
            "cfi.robust", "rmsea.ci.lower.robust", "rmsea.ci.upper.robust", "gammaHat.scaled"]


def test_pooled_test_and_fit_indices_match_semtools(pooled):
    name, doc, fit = pooled
    checked = 0
    for key in FIT_KEYS:
        if key not in doc["fit"]:
            continue
        ref, ours = doc["fit"][key], float(fit.fit_indices[key])
        # an imputed fixed.x covariate (hs_reg_mlm, hs_path_ml): semTools refits the baseline with
        # the first imputation's covariate block, which moves its chi-square and (MLM) its scaling
        assert math.isclose(ours, ref, rel_tol=1e-3, abs_tol=1e-6), (key, ours, ref)
        checked += 1
    assert checked >= 20
    assert fit.test.method == ("D3" if name.startswith("hs") else "D2")   # ML: D3, WLSMV: D2
    assert fit.options["pool"] == fit.test.method and fit.options["imputations"] == 5
    # the test's own pieces: ARIV and FMI of the pooled statistic
    assert fit.fit_indices["ariv"] == pytest.approx(doc["fit"]["ariv"], rel=1e-3)


def test_fit_sem_with_a_list_of_datasets_pools():
    doc, data = _case("hs_ml")
    fit = fit_sem(doc["call"]["model"], data)
    assert abs(fit.fit_indices["chisq"] - doc["fit"]["chisq"]) < 1e-3
    assert len(fit.imputations) == 5
    assert "Imputed datasets pooled (test)                5 (D3)" in fit.summary()
    out = fit.to_dict()
    assert out["fit"]["chisq"] == pytest.approx(doc["fit"]["chisq"], rel=1e-4)


def test_pool_refuses_incomplete_or_too_few_datasets():
    doc, data = _case("hs_ml")
    raw = pd.read_csv(FIX / "data" / "mi" / "hs_missing.csv")
    with pytest.raises(AnalysisError, match="still has missing values"):
        fit_imputed(doc["call"]["model"], [data[0], raw])
    with pytest.raises(AnalysisError, match="at least 2"):
        fit_imputed(doc["call"]["model"], data[:1])
    with pytest.raises(AnalysisError, match="listwise"):
        fit_imputed(doc["call"]["model"], data, missing="fiml")


def test_cli_fit_pool_json(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    doc, _ = _case("bfi_wlsmv")
    model = tmp_path / "bfi.lav"
    model.write_text(doc["call"]["model"])
    files = [str(FIX / "data" / "mi" / f) for f in doc["call"]["files"]]
    res = CliRunner().invoke(app, ["fit", *files, "--model", str(model), "--ordered", "all", "--pool", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["fit"]["chisq"] == pytest.approx(doc["fit"]["chisq"], rel=1e-4)
    assert out["fit"]["chisq.scaled"] == pytest.approx(doc["fit"]["chisq.scaled"], rel=1e-4)
    ref = pd.DataFrame(doc["estimates"]).set_index(["lhs", "op", "rhs"])
    row = next(r for r in out["estimates"] if (r["lhs"], r["op"], r["rhs"]) == ("agree", "=~", "A2"))
    assert row["fmi"] == pytest.approx(ref.loc[("agree", "=~", "A2"), "fmi"], rel=2e-3)
    # several files without --pool, or an incomplete one: a message, no traceback
    res = CliRunner().invoke(app, ["fit", *files[:2], "--model", str(model), "--ordered", "all"])
    assert res.exit_code == 2 and "--pool" in res.output   # a usage error
    raw = str(FIX / "data" / "mi" / "bfi_missing.csv")
    res = CliRunner().invoke(app, ["fit", files[0], raw, "--model", str(model), "--ordered", "all", "--pool"])
    assert res.exit_code == 1 and "bfi_missing.csv still has missing values" in res.output
