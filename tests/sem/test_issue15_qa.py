"""Issue 15 QA fixes against lavaan 0.6.14 (fixtures by tests/fixtures/make_issue15d.R).

Tolerances: estimates 1e-4 absolute, SEs 1e-3 relative, fit measures 1e-3 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
CASES = json.loads((FIX / "lavaan" / "issue15d.json").read_text())["cases"]
ORDINAL = pd.read_csv(FIX / "data" / "issue15d_ordinal.csv")
CONTINUOUS = pd.read_csv(FIX / "data" / "issue15d_continuous.csv")


def case_fit(name: str, data: pd.DataFrame, **extra):
    """Fit a case with the options lavaan was given (lavaan's names with dots become underscores)."""
    rec = CASES[name]
    opts = {k.replace(".", "_"): v for k, v in (rec["options"] or {}).items()}   # R writes list() as []
    for k in ("ordered", "group_equal", "group_partial"):
        if k in opts and isinstance(opts[k], str):
            opts[k] = [opts[k]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_sem(rec["model"], data, **opts, **extra), rec


def merged(params: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    ref = pd.DataFrame(rows)
    ref["group"] = ref["group"].fillna(1).astype(int) if "group" in ref else 1
    out = params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    assert len(out) == len(ref), "every lavaan row has a row in the suite's table"
    return out


def check_estimates(fit, rec, *, se=True, std=True):
    m = merged(fit.params, rec["estimates"])
    np.testing.assert_allclose(m["est"], m["est_lav"], atol=1e-4)
    if std:
        np.testing.assert_allclose(m["std.all"], m["std.all_lav"], atol=1e-4)
        np.testing.assert_allclose(m["std.lv"], m["std.lv_lav"], atol=1e-4)
    if se:
        ok = m["se_lav"].notna() & (m["se_lav"] > 0)
        np.testing.assert_allclose(m.loc[ok, "se"], m.loc[ok, "se_lav"], rtol=1e-3, atol=1e-6)


def check_fit(fit, rec, keys, rtol=1e-3):
    for k in keys:
        assert fit.fit_indices[k] == pytest.approx(rec["fit"][k], rel=rtol, abs=1e-6), k


ROBUST = ["cfi.robust", "tli.robust", "rni.robust", "rmsea.robust", "rmsea.ci.lower.robust",
          "rmsea.ci.upper.robust", "rmsea.pvalue.robust", "rmsea.notclose.pvalue.robust"]


# --------------------------------------------------------------------- 1. theta: robust indices
@pytest.mark.parametrize("name", ["robust_theta", "robust_theta_groups", "robust_delta", "robust_delta_groups"])
def test_robust_indices_under_theta_equal_lavaans(name):
    data = ORDINAL if "groups" in name else ORDINAL[ORDINAL["g"] == "a"]
    fit, rec = case_fit(name, data)
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq.scaled", "cfi.scaled", *ROBUST])
    # lavaan's robust indices do not depend on the parameterization
    other = CASES[name.replace("theta", "delta") if "theta" in name else name.replace("delta", "theta")]
    assert fit.fit_indices["cfi.robust"] == pytest.approx(other["fit"]["cfi.robust"], rel=1e-6)


# --------------------------------------------------------------------- 2. se = "none" and test = "none"
@pytest.mark.parametrize("name", ["none_delta", "none_theta", "none_cx_delta", "none_cx_theta"])
def test_se_none_and_test_none_still_set_the_latent_response_variances(name):
    fit, rec = case_fit(name, ORDINAL[ORDINAL["g"] == "a"])
    check_estimates(fit, rec, se=False)    # the y* residual variances (delta) / scales (theta) and std.all
    assert fit.params["se"].isna().all() or (fit.params["se"].fillna(0) == 0).all()
    assert np.isnan(fit.fit_indices["chisq"])
    rows = fit.params[(fit.params["lhs"] == "y1") & (fit.params["op"] == ("~~" if "delta" in name else "~*~"))]
    assert rows.iloc[0]["est"] != pytest.approx(1.0)   # not left at its start value


# --------------------------------------------------------------------- 3. test = "bootstrap" keeps se
@pytest.mark.parametrize("name", ["bollen_stine", "bollen_stine_se_standard"])
def test_bollen_stine_keeps_standard_ses(name):
    fit, rec = case_fit(name, CONTINUOUS, seed=3)
    assert rec["se_option"] == "standard" and fit.options["se"] == "standard"
    assert fit.bootstrap is None
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "cfi", "rmsea"])
    # Bollen-Stine draws differ from R's; the p value is a proportion of 50 draws
    assert 0 <= fit.fit_indices["bollen.stine.pvalue"] <= 1
    assert fit.tests[-1].name == "chisq.bootstrap"


# --------------------------------------------------------------------- 4. modindices under constraints
def check_modindices(fit, rec, *, theta_scales=False):
    mi = fit.modindices()
    ref = pd.DataFrame(rec["mi"])
    if theta_scales:   # not implemented: lavaan's MIs of the theta parameterization's scales (~*~)
        assert set(ref.loc[ref["op"] == "~*~", "lhs"]) and not (mi["op"] == "~*~").any()
        ref = ref[ref["op"] != "~*~"]
    on = ["lhs", "op", "rhs"] + (["group"] if "group" in ref.columns else [])
    assert len(mi) == len(ref), "the same candidate rows as lavaan"
    m = mi.merge(ref, on=on, suffixes=("", "_lav"))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["mi"], m["mi_lav"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m["epc"], m["epc_lav"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["mi_inequality_active", "mi_inequality_inactive", "mi_equalities"])
def test_modindices_treat_active_inequalities_as_equalities(name):
    fit, rec = case_fit(name, CONTINUOUS)
    check_estimates(fit, rec)
    check_modindices(fit, rec)


def test_wlsmv_modindices_under_constraints():
    # l2 == l3 and the active a > 0.8: lavaan also tests the y2 and y3 scales (~*~) then
    fit, rec = case_fit("mi_wlsmv_constraints", ORDINAL[ORDINAL["g"] == "a"])
    check_estimates(fit, rec)
    check_modindices(fit, rec)


# --------------------------------------------------------------------- 5. pooled conditional.x WLSMV
def test_pooled_conditional_x_fit_measures_match_semtools():
    rec = CASES["mi_pool_cx"]
    datasets = [pd.read_csv(FIX / "data" / "mi" / f) for f in rec["files"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(rec["model"], datasets, ordered=rec["options"]["ordered"])
    keys = ["chisq", "chisq.scaled", "baseline.chisq", "cfi", "tli", "cfi.scaled", "tli.scaled",
            # semTools: residual correlations given x; nfi/rfi although df > baseline df
            "srmr", "rmr", "rmr_nomean", "srmr_bentler", "crmr", "crmr_nomean",
            "nfi", "rfi", "nfi.scaled", "rfi.scaled", "pnfi", "ifi"]
    assert fit.fit_indices["df"] > fit.fit_indices["baseline.df"]
    for k in keys:
        assert fit.fit_indices[k] == pytest.approx(rec["fit"][k], rel=1e-3, abs=1e-6), k


# --------------------------------------------------------------------- 6. no numpy warnings leak
STRONG = pd.read_csv(FIX / "data" / "issue15d_strong.csv")


@pytest.mark.parametrize("name", ["strong_cx", "strong_cx_stdlv_delta", "strong_cx_stdlv_theta"])
def test_conditional_x_fits_and_modindices_raise_no_runtime_warnings(name):
    # residual polychorics above 0.8: an infinite bound's stand-in used to overflow in the scores
    rec = CASES[name]
    opts = {k.replace(".", "_"): v for k, v in rec["options"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_sem(rec["model"], STRONG, **opts)
        mi = fit.modindices()
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "srmr"])
    check_modindices(fit, rec, theta_scales="theta" in name)
    # std.lv: f1 ~~ f2 standardized by the fixed latent variances (1), as lavaan
    ref = pd.DataFrame(rec["mi"]).set_index(["lhs", "op", "rhs"])["sepc.all"]
    got = mi.set_index(["lhs", "op", "rhs"])["sepc.all"]
    assert np.isfinite(got).all()
    ref = ref[[op != "~*~" for _, op, _ in ref.index]]
    np.testing.assert_allclose(got.loc[ref.index], ref, atol=1e-4)


# --------------------------------------------------------------------- 7. tests lavaan adds, refusals
@pytest.mark.parametrize("test", ["satorra.bentler", "mean.var.adjusted"])
def test_wlsmv_adds_the_requested_test_beside_its_own(test):
    fit, rec = case_fit(f"second_test_{test}", ORDINAL[ORDINAL["g"] == "a"])
    check_estimates(fit, rec)
    # the fit measures stay those of the scaled-shifted test, as lavaan's
    check_fit(fit, rec, ["chisq", "chisq.scaled", "chisq.scaling.factor", "cfi.scaled", "rmsea.scaled"])
    assert [t.method for t in fit.tests] == ["standard", "scaled.shifted", test] == list(rec["tests"])
    for ours, lav in zip(fit.tests, rec["tests"].values()):
        assert ours.stat == pytest.approx(lav["stat"], rel=1e-3)
        assert ours.df == pytest.approx(lav["df"], rel=1e-6)
        assert ours.pvalue == pytest.approx(lav["pvalue"], rel=1e-3)
        if "scaling.factor" in lav:
            assert ours.scaling_factor == pytest.approx(lav["scaling.factor"], rel=1e-3)
    assert fit.options["second_test"] == test


@pytest.mark.parametrize("k", range(3))
def test_refusals_give_lavaans_reason(k):
    from analysis.errors import OptionError

    rec = CASES["refusals"][k]
    opts = {key.replace(".", "_"): v for key, v in rec["options"].items()}
    data = ORDINAL[ORDINAL["g"] == "a"] if "ordered" in opts else pd.read_csv(FIX / "data" / "issue15d_continuous_x.csv")
    with pytest.raises(OptionError) as err:
        fit_sem(rec["model"], data, **opts)
    assert rec["message"].replace("‘", "").replace("’", "") in str(err.value)


# --------------------------------------------------------------------- 8. ML: scaled tests with Huber-White SEs
@pytest.mark.parametrize("name", ["rhw_scaled.shifted", "rhw_mean.var.adjusted",
                                  "rhw_scaled.shifted_groups", "rhw_mean.var.adjusted_groups"])
def test_ml_scaled_tests_with_huber_white_ses(name):
    data = pd.read_csv(FIX / "data" / "issue15d_continuous_groups.csv") if "groups" in name else CONTINUOUS
    fit, rec = case_fit(name, data)
    check_estimates(fit, rec, std=False)
    # every key lavaan reports; NA where lavaan's is (mean.var.adjusted: a negative baseline trace)
    for k, v in rec["fit"].items():
        if v is None:
            assert np.isnan(fit.fit_indices[k]), k
        else:
            assert fit.fit_indices[k] == pytest.approx(v, rel=1e-3, abs=1e-6), k
    assert "cfi.robust" in rec["fit"] or "mean.var" in name


@pytest.mark.parametrize("test", ["satorra.bentler", "scaled.shifted"])
def test_mlr_adds_the_requested_test_beside_its_own(test):
    fit, rec = case_fit(f"mlr_second_{test}", CONTINUOUS)
    check_estimates(fit, rec, std=False)
    for k, v in rec["fit"].items():   # yuan.bentler.mplus from the h1 information, as lavaan's
        if v is None:
            assert np.isnan(fit.fit_indices[k]), k
        else:
            assert fit.fit_indices[k] == pytest.approx(v, rel=1e-3, abs=1e-6), k
    assert [t.method for t in fit.tests] == ["standard", "yuan.bentler.mplus", test] == list(rec["tests"])
    for ours, lav in zip(fit.tests, rec["tests"].values()):
        assert ours.stat == pytest.approx(lav["stat"], rel=1e-3)
        assert ours.pvalue == pytest.approx(lav["pvalue"], rel=1e-3)
        if "scaling.factor" in lav:
            assert ours.scaling_factor == pytest.approx(lav["scaling.factor"], rel=1e-3)
