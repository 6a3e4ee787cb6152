"""MLR and MLM on the Holzinger-Swineford CFA against lavaan 0.6 (fixtures from make_fixtures.R)."""
import numpy as np
import pandas as pd
import pytest

from _lavaan_fixture import FIXTURES, load, partable
from analysis.sem.estimators.robust import scaled_difference
from analysis.sem.fit import fit_sem

HS = pd.read_csv(FIXTURES / "data" / "HolzingerSwineford1939.csv")
ORTH = "\nvisual ~~ 0*textual\nvisual ~~ 0*speed\ntextual ~~ 0*speed"


def _check(fit, rec, keys_rtol=1e-3):
    ref = partable(rec)
    m = fit.params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    m = m[m["free"] > 0]
    assert len(m) == rec["npar"]
    np.testing.assert_allclose(m["est"], m["est_lav"], rtol=1e-4)
    np.testing.assert_allclose(m["se"], m["se_lav"], rtol=1e-4)
    fi = fit.fit_indices
    checked = 0
    for key, val in rec["fit"].items():
        if key in fi.index and val is not None and np.isfinite(val):
            tol = dict(rtol=keys_rtol) if abs(val) > 1 else dict(atol=1e-3)
            np.testing.assert_allclose(fi[key], val, err_msg=key, **tol)
            checked += 1
    return checked


@pytest.mark.parametrize("name,estimator", [("hs_cfa_mlr", "MLR"), ("hs_cfa_mlm", "MLM")])
def test_hs_robust_matches_lavaan(name, estimator):
    rec = load(name)
    fit = fit_sem(rec["call"]["model"], data=HS, estimator=estimator)
    n = _check(fit, rec)
    assert n > 60
    for key in ("chisq.scaled", "chisq.scaling.factor", "cfi.robust", "tli.robust", "rmsea.robust",
                "rmsea.ci.lower.robust", "rmsea.ci.upper.robust", "cfi.scaled", "rmsea.scaled"):
        assert key in fit.fit_indices.index
    # the scaled statistic differs from the standard one for these non-normal data
    assert abs(fit.fit_indices["chisq.scaled"] - fit.fit_indices["chisq"]) > 1.0


@pytest.mark.parametrize("name,estimator", [("lrt_mlm", "MLM"), ("lrt_mlr", "MLR")])
def test_satorra_bentler_2001_difference(name, estimator):
    rec = load(name)
    model = load("hs_cfa_mlr")["call"]["model"]
    general = fit_sem(model, data=HS, estimator=estimator)
    restricted = fit_sem(model + ORTH, data=HS, estimator=estimator)
    res = scaled_difference(restricted, general)
    assert res["df.diff"] == 3
    np.testing.assert_allclose(res["chisq.diff.scaled"], rec["table"]["Chisq diff"][1], rtol=1e-4)
    np.testing.assert_allclose(res["pvalue"], rec["table"]["Pr(>Chisq)"][1], rtol=1e-3)
    # either order
    assert scaled_difference(general, restricted)["chisq.diff.scaled"] == pytest.approx(res["chisq.diff.scaled"])


def test_scaled_difference_needs_robust_fits():
    model = load("hs_cfa_mlr")["call"]["model"]
    a = fit_sem(model, data=HS)
    b = fit_sem(model + ORTH, data=HS)
    with pytest.raises(ValueError, match="two robust fits"):
        scaled_difference(b, a)


@pytest.mark.parametrize("name,equal", [("invariance_hs_mlr_metric", ["loadings"]),
                                        ("invariance_hs_mlr_scalar", ["loadings", "intercepts"])])
def test_two_group_mlr_with_equality_constraints(name, equal):
    rec = load(name)
    fit = fit_sem(rec["call"]["model"], data=HS, estimator="MLR", group="school", group_equal=equal)
    assert _check(fit, rec) > 60


@pytest.mark.parametrize("estimator", ["MLM", "MLR"])
def test_fixed_x_covariate(estimator):
    """lavaan's fixed.x Gamma (regression-residualised moments) and masked covariate moments."""
    import json
    rec = json.loads((FIXTURES / "lavaan" / f"robust_fixedx_{estimator.lower()}.json").read_text())
    fit = fit_sem(rec["call"]["model"], data=HS, estimator=estimator)
    ref = pd.DataFrame(rec["estimates"])
    m = fit.params.merge(ref, on=["lhs", "op", "rhs"], suffixes=("", "_lav"))
    m = m[m["free"] > 0]
    np.testing.assert_allclose(m["est"], m["est_lav"], rtol=1e-4)
    np.testing.assert_allclose(m["se"], m["se_lav"], rtol=1e-4)
    for key in ("chisq", "df", "chisq.scaled", "chisq.scaling.factor", "baseline.chisq.scaled",
                "cfi.robust", "tli.robust", "rmsea.robust", "cfi.scaled", "rmsea.scaled"):
        val = rec["fit"][key]
        tol = dict(rtol=1e-4) if abs(val) > 1 else dict(atol=1e-4)
        np.testing.assert_allclose(fit.fit_indices[key], val, err_msg=key, **tol)
