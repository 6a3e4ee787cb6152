"""WLSMV and ULSMV (all 25 bfi items ordered) against lavaan 0.6."""
import numpy as np
import pandas as pd
import pytest

from _lavaan_fixture import FIXTURES, load, partable
from analysis.sem.estimators.robust import scaled_difference
from analysis.errors import DataError, OptionError
from analysis.sem.fit import fit_sem

BFI = pd.read_csv(FIXTURES / "data" / "bfi.csv")
ITEMS = [c for c in BFI.columns if len(c) == 2 and c[0] in "ACENO"]
KEYS = ("chisq", "df", "chisq.scaled", "chisq.scaling.factor", "baseline.chisq", "baseline.chisq.scaled",
        "cfi", "tli", "rmsea", "cfi.scaled", "tli.scaled", "rmsea.scaled", "rmsea.ci.lower.scaled",
        "rmsea.ci.upper.scaled", "srmr", "wrmr", "cfi.robust", "tli.robust", "rmsea.robust",
        "rmsea.ci.lower.robust", "rmsea.ci.upper.robust")


@pytest.fixture(scope="module")
def wlsmv():
    rec = load("bfi_wlsmv")
    return rec, fit_sem(rec["call"]["model"], data=BFI, estimator="WLSMV", ordered=ITEMS)


def _compare(fit, rec):
    ref = partable(rec)
    m = fit.params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    free = m[m["free"] > 0]
    assert len(free) == rec["npar"] == 160
    np.testing.assert_allclose(free["est"], free["est_lav"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(free["se"], free["se_lav"], rtol=1e-3)
    th = free[free["op"] == "|"]
    assert len(th) == 125
    np.testing.assert_allclose(th["est"], th["est_lav"], atol=1e-3)
    for key in KEYS:
        val = rec["fit"][key]
        tol = dict(rtol=1e-3) if abs(val) > 1 else dict(atol=1e-3)
        np.testing.assert_allclose(fit.fit_indices[key], val, err_msg=key, **tol)
    return m


def test_wlsmv_matches_lavaan(wlsmv):
    rec, fit = wlsmv
    assert fit.nobs == (2436,)
    _compare(fit, rec)
    assert fit.fit_indices["chisq.scaled"] != pytest.approx(fit.fit_indices["chisq"], rel=1e-3)
    # delta parameterization: residual variances of the latent responses are 1 - common variance,
    # and the standardized solution and R-square use unit-variance latent responses
    m = fit.params.merge(partable(rec), on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    resid = m[(m["op"] == "~~") & (m["lhs"] == m["rhs"]) & m["lhs"].isin(ITEMS)]
    assert len(resid) == 25
    np.testing.assert_allclose(resid["est"], resid["est_lav"], atol=1e-4)
    np.testing.assert_allclose(m["std.all"], m["std.all_lav"], atol=1e-4)
    r2 = fit.r2.set_index("lhs")["r2"]
    np.testing.assert_allclose([r2[k] for k in rec["r2"]], list(rec["r2"].values()), atol=1e-4)


def test_ulsmv_matches_lavaan():
    rec = load("bfi_ulsmv")
    fit = fit_sem(rec["call"]["model"], data=BFI, estimator="ULSMV", ordered=ITEMS)
    _compare(fit, rec)


def test_wlsmv_pairwise_deletion_matches_lavaan():
    rec = load("bfi_wlsmv_pairwise")
    fit = fit_sem(rec["call"]["model"], data=BFI, estimator="WLSMV", ordered=ITEMS, missing="pairwise")
    assert fit.nobs == (rec["nobs"],) == (2800,)
    ref = partable(rec)
    m = fit.params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    m = m[m["free"] > 0]
    np.testing.assert_allclose(m["est"], m["est_lav"], rtol=1e-3, atol=1e-6)
    for key in ("chisq", "chisq.scaled", "cfi.scaled", "rmsea.scaled"):
        val = rec["fit"][key]
        tol = dict(rtol=1e-3) if abs(val) > 1 else dict(atol=1e-3)
        np.testing.assert_allclose(fit.fit_indices[key], val, err_msg=key, **tol)


def test_pairwise_is_refused_for_ml_estimators():
    with pytest.raises(OptionError, match="pairwise.*only available for ordered items"):
        fit_sem(load("bfi_ml_fiml")["call"]["model"], data=BFI, estimator="MLR", missing="pairwise")


def test_satorra_2000_difference(wlsmv):
    rec = load("lrt_wlsmv")
    _, general = wlsmv
    restricted = fit_sem(load("bfi_wlsmv_ac0")["call"]["model"], data=BFI, estimator="WLSMV", ordered=ITEMS)
    res = scaled_difference(restricted, general)
    assert res["method"] == "satorra.2000" and res["df.diff"] == 1
    np.testing.assert_allclose(res["chisq.diff.scaled"], rec["table"]["Chisq diff"][1], rtol=1e-3)


def test_two_group_wlsmv_matches_lavaan():
    """Group fit functions carry lavaan's (N_g - 1) / N_g; made by tests/fixtures/make_robust.R."""
    rec = load("robust_mg_wlsmv")
    c = rec["call"]
    fit = fit_sem(c["model"], data=BFI, group=c["group"], estimator="WLSMV", ordered=c["ordered"])
    assert list(fit.nobs) == rec["nobs"]
    ref = pd.DataFrame(rec["estimates"])
    ref["group"] = ref["group"].astype(int)
    m = fit.params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    m = m[m["free"] > 0]
    assert len(m) == 60
    np.testing.assert_allclose(m["est"], m["est_lav"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m["se"], m["se_lav"], rtol=1e-3)
    for key in ("chisq", "chisq.scaled", "baseline.chisq", "baseline.chisq.scaled", "cfi.scaled",
                "tli.scaled", "rmsea.scaled"):
        np.testing.assert_allclose(fit.fit_indices[key], rec["fit"][key], rtol=1e-5, err_msg=key)


def test_category_unused_in_a_group_is_named_or_collapsed():
    d = BFI[["N1", "N2", "N3", "N4", "N5", "gender"]].dropna().copy()
    men = d["gender"] == 1
    d.loc[men & (d["N1"] == 6), "N1"] = 5          # no man answers 6 to N1
    model = "NEU =~ N1 + N2 + N3 + N4 + N5"
    with pytest.raises(DataError, match="'N1': category 6 is never observed in group '1'.*collapse_sparse"):
        fit_sem(model, data=d, group="gender", estimator="WLSMV", ordered=True)
    fit = fit_sem(model, data=d, group="gender", estimator="WLSMV", ordered=True, collapse_sparse=True)
    th = fit.params[(fit.params["op"] == "|") & (fit.params["lhs"] == "N1")]
    assert sorted(th["rhs"].unique()) == ["t1", "t2", "t3", "t4"]      # 6 merged into 5
    assert fit.converged and np.isfinite(fit.fit_indices["chisq.scaled"])
