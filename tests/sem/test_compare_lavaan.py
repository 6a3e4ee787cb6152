"""compare(): lavTestLRT conventions, checked against lavaan 0.6-14 fixtures, and the nestedness warnings."""

import numpy as np
import pandas as pd
import pytest

import _lavaan_fixture as L
from analysis.sem.compare import ComparisonWarning, compare, information_criteria, satorra_bentler_2001
from analysis.errors import AnalysisError


def _ref(name):
    rec = L.load(name)
    return pd.DataFrame(rec["table"]).set_index("model")


def test_lrt_ml_matches_lavaan():
    three, orth = L.fit_result("hs_cfa_ml"), L.fit_result("hs_cfa_ml_orth")
    # given in the "wrong" order: compare sorts by df as lavaan does
    res = compare(orth, three, names=["orthogonal", "three_factor"], warn=False)
    ref = _ref("lrt_ml")
    assert list(res.table.index) == ["three_factor", "orthogonal"]
    t = res.table.loc["orthogonal"]
    r = ref.loc["orthogonal"]
    assert t["chisq.diff"] == pytest.approx(r["Chisq diff"], abs=1e-6)
    assert t["df.diff"] == 3
    assert t["pvalue"] == pytest.approx(r["Pr(>Chisq)"], rel=1e-6)
    assert t["rmsea"] == pytest.approx(r["RMSEA"], abs=1e-8)
    np.testing.assert_allclose(res.table["aic"], ref["AIC"], atol=1e-6)
    np.testing.assert_allclose(res.table["bic"], ref["BIC"], atol=1e-6)
    assert res.nested and res.method == "standard" and res.warnings == ()
    assert "Chi-Squared Difference Test" in res.summary()
    assert "68.222" in res.summary()


@pytest.mark.parametrize("case,fits", [("lrt_mlr", ("hs_cfa_mlr", "hs_cfa_mlr_orth")),
                                       ("lrt_mlm", ("hs_cfa_mlm", "hs_cfa_mlm_orth"))])
def test_scaled_difference_sb2001_matches_lavaan(case, fits):
    a, b = (L.fit_result(f) for f in fits)
    res = compare({"three_factor": a, "orthogonal": b}, warn=False)
    ref = _ref(case)
    assert res.method == "satorra.bentler.2001"
    assert res.table.loc["orthogonal", "chisq.diff"] == pytest.approx(
        ref.loc["orthogonal", "Chisq diff"], rel=1e-8)
    assert res.table.loc["orthogonal", "pvalue"] == pytest.approx(
        ref.loc["orthogonal", "Pr(>Chisq)"], rel=1e-6)


def test_sb2001_negative_scaling_is_invalid():
    out = satorra_bentler_2001(10.0, 5, 0.5, 8.0, 4, 2.0)
    assert out.method == "invalid"
    assert "negative scaling factor" in out.reason


def test_not_nested_different_variables_warns():
    hs = L.fit_result("hs_cfa_ml")
    pd_fit = L.fit_result("poldem_sem")
    with pytest.warns(ComparisonWarning) as caught:
        res = compare(hs, pd_fit)
    assert any("different set of observed variables" in str(w.message) for w in caught)
    assert len(caught) == len(res.warnings)
    assert not res.nested
    assert res.table["chisq.diff"].isna().all()
    assert "Non-nested models" in res.summary()


def test_restricted_model_fitting_better_warns():
    orth = L.fit_result("hs_cfa_ml_orth")
    fi = orth.fit_indices.copy()
    fi["df"] = 20.0  # now the orthogonal model claims to be the less restricted one
    general = L.fit_result("hs_cfa_ml_orth", fit_indices=fi)
    res = compare(general, L.fit_result("hs_cfa_ml"), warn=False)
    assert any("'model2' fits better than 'model1' (chisq 85.306 < 153.527)" in w
               for w in res.warnings)
    assert not res.nested


def test_parameters_missing_from_general_model_warns():
    # poldem with and without equality labels have the same free keys: nested.
    a, b = L.fit_result("poldem_sem"), L.fit_result("poldem_sem_equal")
    res = compare(a, b, warn=False)
    assert res.nested, res.warnings
    assert res.table.loc["model2", "df.diff"] == 3
    # drop a residual covariance from the general model: the restricted one now has an extra parameter
    pt = a.params
    cut = pt[~((pt["lhs"] == "y1") & (pt["op"] == "~~") & (pt["rhs"] == "y5"))]
    fi = a.fit_indices.copy()
    fi["df"] = 34.0
    general = L.fit_result("poldem_sem", params=cut, fit_indices=fi)
    res2 = compare(general, b, warn=False)
    assert any("does not" in w and "y1 ~~ y5" in w for w in res2.warnings)


def test_equal_df_warns_and_no_pvalue():
    a = L.fit_result("hs_cfa_ml")
    b = L.fit_result("hs_cfa_from_cov")
    res = compare(a, b, warn=False)
    assert any("same degrees of freedom" in w for w in res.warnings)
    assert np.isnan(res.table["pvalue"].iloc[1])


def test_bad_arguments():
    a = L.fit_result("hs_cfa_ml")
    with pytest.raises(AnalysisError, match="at least two"):
        compare(a)
    with pytest.raises(AnalysisError, match="distinct"):
        compare(a, a, names=["x", "x"])
    with pytest.raises(AnalysisError, match="not a FitResult"):
        compare(a, "hs.lav")


def test_json_has_nulls_not_nan():
    import json

    res = compare(L.fit_result("hs_cfa_ml"), L.fit_result("hs_cfa_ml_orth"), warn=False)
    doc = json.loads(res.to_json())
    assert doc["models"][0]["chisq.diff"] is None
    assert doc["models"][1]["df.diff"] == 3 and isinstance(doc["models"][1]["df"], int)
    assert doc["tests"][0]["method"] == "standard"


def test_information_criteria():
    ic = information_criteria(L.fit_result("hs_cfa_ml"), L.fit_result("hs_cfa_ml_orth"))
    assert ic["delta.aic"].tolist()[0] == 0.0
    assert ic["delta.aic"].iloc[1] == pytest.approx(7579.71142942563 - 7517.48985325239)


def test_mixed_nesting_tests_only_nested_pairs():
    three, orth = L.fit_result("hs_cfa_ml"), L.fit_result("hs_cfa_ml_orth")
    pt = orth.params.copy()
    extra = pt[(pt["lhs"] == "x1") & (pt["op"] == "~~")].iloc[[0]].copy()
    extra[["rhs", "free", "est"]] = ["x2", 99, 0.1]
    fi = orth.fit_indices.copy()
    fi[["df", "chisq"]] = [30.0, 160.0]
    rival = L.fit_result("hs_cfa_ml_orth", params=pd.concat([pt, extra]), fit_indices=fi)
    res = compare({"three": three, "orth": orth, "rival": rival}, warn=False)
    t = res.table
    assert t.loc["orth", "chisq.diff"] == pytest.approx(68.2215761732347, abs=1e-8)
    assert t.loc["orth", "nested"] is True and t.loc["rival", "nested"] is False
    assert np.isnan(t.loc["rival", "chisq.diff"]) and np.isnan(t.loc["rival", "pvalue"])
    assert not res.nested and len(res.tests) == 1
    assert any("'rival' has parameters that 'orth' does not (x1 ~ x2 or x1 ~~ x2)" in w for w in res.warnings)
    text = res.summary()
    assert text.startswith("Chi-Squared Difference Test")
    assert "Lowest AIC: three; lowest BIC: three" in text


def test_engine_mlr_fits_use_sb2001():
    from analysis.sem.fit import fit_sem

    hs = pd.read_csv(L.FIXTURES / "data" / "HolzingerSwineford1939.csv")
    rec = L.load("hs_cfa_mlr_orth")
    a = fit_sem(L.load("hs_cfa_mlr")["call"]["model"], hs, estimator="MLR")
    b = fit_sem(rec["call"]["model"], hs, estimator="MLR")
    res = compare(a, b, warn=False)
    assert res.method == "satorra.bentler.2001"
    ref = _ref("lrt_mlr")
    assert res.table["chisq.diff"].iloc[1] == pytest.approx(ref["Chisq diff"].iloc[1], rel=1e-4)
    assert res.table["pvalue"].iloc[1] == pytest.approx(ref["Pr(>Chisq)"].iloc[1], rel=1e-3)
    assert "Scaled Chi-Squared Difference Test (method = satorra.bentler.2001)" in res.summary()


def test_engine_wlsmv_fits_use_satorra_2000():
    from analysis.sem.fit import fit_sem

    bfi = pd.read_csv(L.FIXTURES / "data" / "bfi.csv")
    items = [c for c in bfi.columns if c[0] in "ACENO" and c[1:].isdigit()]
    a = fit_sem(L.load("bfi_wlsmv")["call"]["model"], bfi, estimator="WLSMV", ordered=items)
    b = fit_sem(L.load("bfi_wlsmv_ac0")["call"]["model"], bfi, estimator="WLSMV", ordered=items)
    res = compare(a, b, names=["five_factor", "A_C_uncorrelated"], warn=False)
    ref = _ref("lrt_wlsmv")
    assert res.method == "satorra.2000"
    assert res.table.loc["A_C_uncorrelated", "chisq.diff"] == pytest.approx(
        ref.loc["A_C_uncorrelated", "Chisq diff"], rel=1e-3)
    assert res.table.loc["A_C_uncorrelated", "df.diff"] == 1
    assert np.isnan(res.table["aic"]).all()  # no likelihood, no AIC: as lavaan


def test_net_check_on_engine_fits():
    from analysis.sem.compare import net_nested
    from analysis.sem.fit import fit_sem

    hs = pd.read_csv(L.FIXTURES / "data" / "HolzingerSwineford1939.csv")
    three = fit_sem(L.load("hs_cfa_ml")["call"]["model"], hs)
    orth = fit_sem(L.load("hs_cfa_ml_orth")["call"]["model"], hs)
    one = fit_sem("g =~ x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9\n"
                  "x7 ~~ x8\nx8 ~~ x9\nx4 ~~ x5\nx1 ~~ x2", hs)
    nested, fx, _ = net_nested(three, orth)
    assert nested is True and fx < 1e-7
    nested, fx, _ = net_nested(one, three)   # three factors are not a special case of one
    assert nested is False and fx == pytest.approx(0.18757, abs=1e-3)
    # a fixture-built result has no compiled model: NET says so, the table check takes over
    assert net_nested(L.fit_result("hs_cfa_ml"), orth)[0] is None
    res = compare(three, orth, warn=False)
    assert res.nested and res.warnings == ()
