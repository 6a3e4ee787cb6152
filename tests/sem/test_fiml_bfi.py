"""Full-information ML (missing="fiml") against lavaan and against a brute-force case-wise likelihood."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from _lavaan_fixture import FIXTURES, load, partable
from analysis.errors import DataError, OptionError
from analysis.sem.estimators.fiml import MissingPatterns, em_saturated
from analysis.sem.fit import fit_sem

BFI = pd.read_csv(FIXTURES / "data" / "bfi.csv")


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(7)
    p = 5
    a = rng.normal(size=(p, p))
    sigma = a @ a.T / p + np.eye(p)
    y = rng.multivariate_normal(np.arange(p, dtype=float), sigma, size=250)
    y[rng.random(y.shape) < 0.15] = np.nan
    y[4] = np.nan
    return y, sigma + 0.2 * np.eye(p), np.arange(p) + 0.3


def _brute(y, sigma, mu):
    total = 0.0
    for row in y:
        o = ~np.isnan(row)
        if o.any():
            total += multivariate_normal(mu[o], sigma[np.ix_(o, o)]).logpdf(row[o])
    return total


def test_pattern_likelihood_gradient_hessian_match_brute_force(toy):
    y, sigma, mu = toy
    pat = MissingPatterns(y)
    assert pat.n_dropped == 1 and pat.N == 249 and pat.n_patterns > 10
    assert pat.loglik(sigma, mu) == pytest.approx(_brute(y, sigma, mu), rel=1e-12)
    g_mu, g_sig = pat.gradient(sigma, mu)
    h = 1e-6
    e = np.zeros_like(sigma)
    e[1, 3] = e[3, 1] = 1.0
    num = (pat.loglik(sigma + h * e, mu) - pat.loglik(sigma - h * e, mu)) / (2 * h)
    assert g_sig[1, 3] + g_sig[3, 1] == pytest.approx(num, rel=1e-6)
    num = (pat.loglik(sigma, mu + h * np.eye(5)[2]) - pat.loglik(sigma, mu - h * np.eye(5)[2])) / (2 * h)
    assert g_mu[2] == pytest.approx(num, rel=1e-6)
    H = pat.hessian(sigma, mu)
    rng = np.random.default_rng(3)
    d = rng.normal(size=(5, 5))
    d = d + d.T
    dm = rng.normal(size=5)
    v = np.concatenate([dm, d.ravel()])
    f = lambda t: pat.loglik(sigma + t * d, mu + t * dm)
    t = 1e-4
    assert v @ H @ v == pytest.approx((f(t) - 2 * f(0) + f(-t)) / t ** 2, rel=1e-5)
    # case-wise scores add up to the gradient
    np.testing.assert_allclose(pat.scores(sigma, mu).sum(0), np.concatenate([g_mu, g_sig.ravel()]),
                               atol=1e-9)


def test_em_reaches_the_saturated_maximum(toy):
    y, _, _ = toy
    pat = MissingPatterns(y)
    mu, sigma, logl, _ = em_saturated(pat)
    g_mu, g_sig = pat.gradient(sigma, mu)
    assert np.abs(g_mu).max() < 1e-6 and np.abs(g_sig).max() < 1e-6
    assert logl == pytest.approx(_brute(pat.Y, sigma, mu), rel=1e-12)


@pytest.mark.parametrize("name,estimator", [("bfi_ml_fiml", "ML"), ("bfi_mlr_fiml", "MLR")])
def test_bfi_fiml_matches_lavaan(name, estimator):
    rec = load(name)
    fit = fit_sem(rec["call"]["model"], data=BFI, estimator=estimator, missing="fiml")
    ref = partable(rec)
    m = fit.params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    m = m[m["free"] > 0]
    assert len(m) == rec["npar"] == 85
    np.testing.assert_allclose(m["est"], m["est_lav"], rtol=1e-3)
    np.testing.assert_allclose(m["se"], m["se_lav"], rtol=1e-3)
    fi = fit.fit_indices
    for key in ("chisq", "logl", "unrestricted.logl", "baseline.chisq", "aic", "bic", "cfi", "tli",
                "rmsea", "chisq.scaled", "chisq.scaling.factor", "baseline.chisq.scaled", "cfi.robust",
                "tli.robust", "rmsea.robust", "rmsea.ci.lower.robust", "rmsea.ci.upper.robust",
                "cfi.scaled", "tli.scaled", "rmsea.scaled"):
        if key not in rec["fit"]:
            continue
        val = rec["fit"][key]
        tol = dict(rtol=1e-3) if abs(val) > 1 else dict(atol=1e-3)
        np.testing.assert_allclose(fi[key], val, err_msg=key, **tol)
    assert fi["ntotal"] == 2800


def test_listwise_deletion_is_reported():
    rec = load("bfi_ml_listwise")
    fit = fit_sem(rec["call"]["model"], data=BFI)
    assert fit.nobs == (2436,) == (rec["nobs"],)
    assert fit.missing["n_dropped"] == 2800 - 2436
    assert fit.fit_indices["chisq"] == pytest.approx(rec["fit"]["chisq"], rel=1e-3)


MODEL = "f =~ y1 + y2 + y3 + y4"


def _data(seed=1, n=300):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)
    y = np.column_stack([0.8 * f + rng.normal(scale=0.6, size=n) for _ in range(4)])
    return pd.DataFrame(y, columns=["y1", "y2", "y3", "y4"])


def test_all_missing_rows_dropped_and_counted():
    d = _data()
    d.iloc[[3, 10, 11], :] = np.nan
    d.iloc[20:60, 0] = np.nan
    fit = fit_sem(MODEL, data=d, missing="fiml")
    assert fit.nobs == (297,)
    assert fit.missing["all_missing_rows"] == 3
    est = fit.estimator_object
    assert est.patterns[0].n_patterns == 2


def test_variable_missing_for_every_case():
    d = _data()
    d["y3"] = np.nan
    with pytest.raises(DataError, match="y3.*missing for every case|missing for every case.*y3"):
        fit_sem(MODEL, data=d, missing="fiml")


def test_pair_never_observed_together():
    d = _data()
    d.loc[:149, "y1"] = np.nan
    d.loc[150:, "y2"] = np.nan
    with pytest.raises(DataError, match="never observed together.*y1 & y2"):
        fit_sem(MODEL, data=d, missing="fiml")


def test_refused_combinations_give_reasons():
    d = _data()
    d.iloc[5, 1] = np.nan
    with pytest.raises(OptionError, match="MLM needs complete data.*use estimator='MLR'"):
        fit_sem(MODEL, data=d, estimator="MLM", missing="fiml")
    with pytest.raises(OptionError, match="cannot be used with estimator WLSMV"):
        fit_sem(MODEL, data=d.round().clip(-2, 2), estimator="WLSMV", ordered=True, missing="fiml")


def test_fiml_with_fixed_x_covariate_matches_lavaan():
    """Cases missing the covariate are deleted (and reported), its moments fixed, logl conditional."""
    from _lavaan_fixture import FIXTURES as F
    import json
    rec = json.loads((F / "lavaan" / "robust_fiml_fixedx.json").read_text())
    data = pd.read_csv(F / "data" / "hs_missing_fixedx.csv")
    with pytest.warns(UserWarning, match="20 case\\(s\\) deleted because of missing values in exogenous"):
        fit = fit_sem(rec["call"]["model"], data=data, estimator="MLR", missing="fiml")
    assert fit.fit_indices["ntotal"] == rec["nobs"] == 281
    ref = pd.DataFrame(rec["estimates"])
    m = fit.params.merge(ref, on=["lhs", "op", "rhs"], suffixes=("", "_lav"))
    m = m[m["free"] > 0]
    np.testing.assert_allclose(m["est"], m["est_lav"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(m["se"], m["se_lav"], rtol=1e-3)
    for key in ("chisq", "df", "chisq.scaled", "logl", "unrestricted.logl", "baseline.chisq",
                "baseline.chisq.scaled", "cfi.robust", "tli.robust", "rmsea.robust", "cfi.scaled",
                "rmsea.scaled"):
        val = rec["fit"][key]
        tol = dict(rtol=1e-3) if abs(val) > 1 else dict(atol=1e-3)
        np.testing.assert_allclose(fit.fit_indices[key], val, err_msg=key, **tol)
