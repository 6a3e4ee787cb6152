"""Two-level SEM against lavaan 0.6 (tests/fixtures/make_twolevel.R; issue 17).

Data: 963 respondents in 80 communities of 3 to 22 (tests/fixtures/data/twolevel.csv;
twolevel_missing.csv has 8% of the item answers missing, fitted by FIML).
Tolerances: estimates 1e-4 absolute, SEs 1e-3 relative, fit measures 1e-3 relative,
ICCs 1e-6 (the h1 moments come from lavaan's own EM stopping rule). With missing data
lavaan's h1 comes from an optimizer stopped at rel.tol 1e-7, so its ICCs are only good
to ~1e-5 (ours: the maximum); they are checked at 5e-5.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.sem import fit_sem

FIX = Path(__file__).parent / "fixtures"
DATA = pd.read_csv(FIX / "data" / "twolevel.csv")
MISSING = pd.read_csv(FIX / "data" / "twolevel_missing.csv")
FIT_KEYS = ["chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr", "srmr_within", "srmr_between",
            "logl", "unrestricted.logl", "aic", "bic", "baseline.chisq", "baseline.df"]


def _lavaan(name):
    return json.loads((FIX / "lavaan" / f"twolevel_{name}.json").read_text())


def _fit(rec):
    options = rec["call"]["options"] or {}     # R's empty list() is a JSON []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if options.get("missing") == "ml":
            return fit_sem(rec["call"]["model"], MISSING, cluster="community", missing="fiml")
        return fit_sem(rec["call"]["model"], DATA, cluster="community",
                       estimator=options.get("estimator", "ML"))


def _joined(rec, fit):
    ref = pd.DataFrame(rec["estimates"])
    ours = fit.params[fit.params["level"] > 0]
    both = ref.merge(ours, on=["lhs", "op", "rhs", "block"], suffixes=("_lavaan", ""))
    assert len(both) == len(ref) == len(ours)
    return both


CASES = ["cfa", "path", "sem", "cfa_mlr", "sem_mlr", "cfa_missing"]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    rec = _lavaan(request.param)
    return request.param, rec, _fit(rec)


def test_estimates_and_ses_match_lavaan(case):
    name, rec, fit = case
    assert fit.converged
    both = _joined(rec, fit)
    np.testing.assert_allclose(both["est"], both["est_lavaan"], atol=1e-4, err_msg=name)
    free = both["se_lavaan"] > 0
    np.testing.assert_allclose(both.loc[free, "se"], both.loc[free, "se_lavaan"], rtol=1e-3, err_msg=name)
    # lavaan's FIML optimum is ~1e-4 from the maximum; standardized intercepts (~5) magnify it
    np.testing.assert_allclose(both["std.all"], both["std.all_lavaan"],
                               atol=5e-4 if name == "cfa_missing" else 1e-4, err_msg=name)
    # standardizedSolution()'s delta-method SEs, per level
    std_free = both["std.all.se_lavaan"] > 1e-6
    np.testing.assert_allclose(both.loc[std_free, "std.all.se"], both.loc[std_free, "std.all.se_lavaan"],
                               rtol=1e-3, atol=1e-5, err_msg=name)


def test_parameter_table_follows_lavaan(case):
    name, rec, fit = case
    ref = pd.DataFrame(rec["partable"])
    ours = fit.params[fit.params["level"] > 0]
    assert ours["id"].tolist() == ref["id"].tolist()
    key = ["lhs", "op", "rhs", "block"]
    both = ref.merge(ours, on=key, suffixes=("_lavaan", ""))
    assert len(both) == len(ref)
    # which rows are free, fixed and fixed.x is lavaan's (the free numbering may differ)
    assert ((both["free"] > 0) == (both["free_lavaan"] > 0)).all(), name
    assert (both["exo"] == both["exo_lavaan"]).all(), name
    assert set(ours["level"]) == {1, 2}
    assert (ours["level"] == ours["block"]).all() and (ours["group"] == 1).all()


def test_fit_measures_match_lavaan(case):
    name, rec, fit = case
    for key in FIT_KEYS:
        assert fit.fit_indices[key] == pytest.approx(rec["fit"][key], rel=1e-3, abs=1e-9), (name, key)
    if "mlr" in name:
        for key in ("chisq.scaled", "chisq.scaling.factor", "pvalue.scaled", "baseline.chisq.scaled",
                    "cfi.scaled", "tli.scaled", "cfi.robust", "tli.robust", "rmsea.scaled", "rmsea.robust",
                    "rmsea.ci.upper.scaled", "rmsea.ci.upper.robust"):
            assert fit.fit_indices[key] == pytest.approx(rec["fit"][key], rel=1e-3), (name, key)


def test_icc_and_h1_moments_match_lavaan(case):
    name, rec, fit = case
    icc = fit.twolevel.icc
    tol = 5e-5 if name == "cfa_missing" else 1e-6
    for var, value in rec["icc"].items():
        assert icc[var] == pytest.approx(value, abs=tol), (name, var)
    for level, ours in (("within", fit.twolevel.within), ("between", fit.twolevel.between)):
        m = rec["h1"][level]["cov"]
        ref = np.array(m["values"]).reshape(len(m["rownames"]), -1)
        got = ours["cov"].loc[m["rownames"], m["colnames"]].to_numpy()
        np.testing.assert_allclose(got, ref, atol=1e-4 if name == "cfa_missing" else 1e-6,
                                   err_msg=f"{name} {level}")


def test_json_rows_carry_level_and_fit_has_srmr_per_level():
    rec = _lavaan("cfa")
    doc = _fit(rec).to_dict()
    levels = {(r["lhs"], r["level"]) for r in doc["estimates"]}
    assert ("fw", 1) in levels and ("fb", 2) in levels
    assert all(r["group"] == 1 and r["level"] in (1, 2) for r in doc["estimates"])
    for key in ("chisq", "df", "cfi", "tli", "rmsea", "srmr_within", "srmr_between", "logl", "aic", "bic"):
        assert key in doc["fit"]
    assert doc["twolevel"]["nclusters"] == 80


def test_summary_prints_one_section_per_level():
    text = _fit(_lavaan("cfa")).summary()
    assert "Number of clusters [community]" in text
    assert text.index("Level 1 [within]:") < text.index("Level 2 [community]:")
