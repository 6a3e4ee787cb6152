"""Two-level SEM against lavaan 0.6-14 where QA found it differed (issue 17;
tests/fixtures/make_twolevel_qa.R).

Data: 421 respondents in 25 communities of 2 to 34 (tests/fixtures/data/twolevel_small.csv;
twolevel_small_missing.csv has 8% of z1, z4, z6 missing, z1 being a covariate). Every
model has a negative level-2 residual variance, so the between SRMR needs lavaan's
positive-definite implied matrix; the path model under MLR has a negative Yuan-Bentler
scaling factor (lavaan: NA). Tolerances: estimates 1e-4 absolute, SEs 1e-3 relative, all
of lavaan's fit measures 1e-3 relative (NA where lavaan has NA).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import SEMWarning
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
DATA = pd.read_csv(FIX / "data" / "twolevel_small.csv")
MISSING = pd.read_csv(FIX / "data" / "twolevel_small_missing.csv")
# path_fiml (FIML with z1, a covariate at both levels) is only checked for the deleted cases:
# after the deletion its estimates are still up to 3e-3 from lavaan's (logl 85 apart), open
CASES = ["factors_ml", "path_ml", "path_mlr", "labels_ml", "labels_mlr", "saturated_ml", "saturated_mlr"]


def _lavaan(name):
    return json.loads((FIX / "lavaan" / f"twolevel_qa_{name}.json").read_text())


def _fit(rec):
    options = rec["call"]["options"] or {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if options.get("missing") == "ml":
            fit = fit_sem(rec["call"]["model"], MISSING, cluster="clus", missing="fiml")
        else:
            fit = fit_sem(rec["call"]["model"], DATA, cluster="clus", estimator=options.get("estimator", "ML"))
    return fit, [str(w.message) for w in caught]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    rec = _lavaan(request.param)
    return request.param, rec, *_fit(rec)


def test_estimates_and_ses_match_lavaan(case):
    name, rec, fit, _ = case
    assert fit.converged
    ref = pd.DataFrame(rec["estimates"])
    ref = ref[ref["op"] != "=="]
    ours = fit.params[fit.params["op"] != "=="]
    both = ref.merge(ours, on=["lhs", "op", "rhs", "level"], suffixes=("_lavaan", ""))
    assert len(both) == len(ref) == len(ours), name
    np.testing.assert_allclose(both["est"], both["est_lavaan"], atol=1e-4, err_msg=name)
    free = both["se_lavaan"] > 0
    np.testing.assert_allclose(both.loc[free, "se"], both.loc[free, "se_lavaan"], rtol=1e-3, err_msg=name)


def test_every_lavaan_fit_measure_is_there_and_agrees(case):
    name, rec, fit, _ = case
    ours = fit.fit_indices
    missing = [k for k in rec["fit"] if k not in ours.index]
    assert not missing, f"{name}: fit measures lavaan reports but the suite does not: {missing}"
    for key, want in rec["fit"].items():
        got = float(ours[key])
        if want is None:
            assert math.isnan(got), f"{name} {key}: lavaan NA, suite {got}"
        else:
            assert got == pytest.approx(want, rel=1e-3, abs=1e-7), f"{name} {key}"


def test_fmin_is_lavaans_two_level_objective():
    # lavaan: -2 logL without its log(2 pi) terms, over 2N (covariates' likelihood included)
    rec = _lavaan("path_ml")
    fit, _ = _fit(rec)
    assert fit.fit_indices["fmin"] == pytest.approx(rec["fit"]["fmin"], rel=1e-6)
    assert fit.fit_indices["fmin"] > 1     # not chisq / 2N (0.004 here)


def test_missing_covariate_cases_are_deleted_with_a_warning():
    rec = _lavaan("path_fiml")
    fit, caught = _fit(rec)
    n_deleted = len(MISSING) - rec["nobs"]
    assert n_deleted == 32 and fit.nobs == (rec["nobs"],)
    assert fit.fit_indices["ntotal"] == rec["nobs"]
    text = [w for w in caught if "exogenous covariate" in w]
    assert text and text[0].startswith(f"{n_deleted} case(s) deleted") and "z1" in text[0]
    assert any("exogenous covariate" in w["message"] for w in fit.warnings)


def test_negative_scaling_factor_gives_na_and_a_warning():
    rec = _lavaan("path_mlr")
    assert rec["fit"]["chisq.scaling.factor"] is None
    fit, caught = _fit(rec)
    f = fit.fit_indices
    for key in ("chisq.scaled", "pvalue.scaled", "chisq.scaling.factor", "cfi.scaled", "tli.scaled",
                "cfi.robust", "rmsea.robust"):
        assert math.isnan(f[key]), key
    assert f["scaling.factor.h1"] < 0 < f["scaling.factor.h0"]
    assert any("scaling factor is not positive" in w for w in caught)


def test_cli_json_carries_na_scaled_measures(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    model = tmp_path / "m.lav"
    model.write_text(_lavaan("path_mlr")["call"]["model"])
    result = CliRunner().invoke(app, ["fit", str(FIX / "data" / "twolevel_small.csv"), "--model", str(model),
                                      "--cluster", "clus", "--estimator", "MLR", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["fit"]["chisq.scaled"] is None and doc["fit"]["chisq"] > 0
    assert {row["level"] for row in doc["estimates"] if row["op"] != ":="} == {1, 2}


def test_cli_multigroup_two_level_matches_lavaan_group_blocks(tmp_path):
    # lavaan 0.6-14 fits a multi-group two-level model only with a group: block per group
    # (make_twolevel.R); --group with the model written once gives its numbers
    from typer.testing import CliRunner

    from analysis.cli.main import app

    rec = json.loads((FIX / "lavaan" / "twolevel_cfa_groups.json").read_text())
    model = tmp_path / "cfa.lav"
    model.write_text("level: 1\n  fw =~ y1 + y2 + y3 + y4\nlevel: 2\n  fb =~ y1 + y2 + y3 + y4\n")
    result = CliRunner().invoke(app, ["fit", str(FIX / "data" / "twolevel_groups.csv"), "--model", str(model),
                                      "--cluster", "community", "--group", "region", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    labels = {"A": 1, "B": 2}
    ours = {(r["lhs"], r["op"], r["rhs"], labels.get(r["group"], r["group"]), r["level"]): r for r in doc["estimates"]}
    for row in rec["estimates"]:
        got = ours[(row["lhs"], row["op"], row["rhs"], labels[row["group"]], row["level"])]
        assert got["est"] == pytest.approx(row["est"], abs=1e-4)
    for key in ("fmin", "chisq", "df", "logl", "srmr_within", "srmr_between", "nnfi"):
        assert doc["fit"][key] == pytest.approx(rec["fit"][key], rel=1e-3), key


def test_fiml_logl_counts_the_covariates_of_every_case():
    # lavaan subtracts the covariates' likelihood over all cases used, not only the complete
    # ones (before: 85 logL units apart). The fixed.x moments of z1, a covariate at both
    # levels, still differ from lavaan's under FIML (its level-2 mean of z1 is 0.038, not
    # the data's), so chisq and the estimates are not compared here: open.
    rec = _lavaan("path_fiml_endo")
    data = MISSING.assign(z1=DATA["z1"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(rec["call"]["model"], data, cluster="clus", missing="fiml")
    for key in ("logl", "unrestricted.logl", "aic", "bic", "ntotal"):
        assert fit.fit_indices[key] == pytest.approx(rec["fit"][key], rel=1e-3), key
    # every name lavaan lists is there; the robust indices are NA in both
    robust = [k for k in rec["fit"] if k.endswith(".robust")]
    assert robust and all(rec["fit"][k] is None and math.isnan(fit.fit_indices[k]) for k in robust)
    assert not [k for k in rec["fit"] if k not in fit.fit_indices.index]
