"""fit_sem: bad input gives clear errors, problems become warnings on the result; model derivatives."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import (DataError, HeywoodCaseWarning, IdentificationError, ModelSpecificationError,
                             NonConvergenceWarning, OptionError, SampleCovarianceError,
                             StandardizedLoadingWarning)
from analysis.sem.estimators.ml import MLEstimator
from analysis.sem.model import Model
from analysis.sem.partable import build_partable
from analysis.sem.fit import fit_sem

HS_DATA = pd.read_csv(Path(__file__).parents[1] / "fixtures" / "engine" / "HolzingerSwineford1939.csv")
HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
HEYWOOD = pd.DataFrame([[1, .8, .8], [.8, 1, .5], [.8, .5, 1]], index=["y1", "y2", "y3"],
                       columns=["y1", "y2", "y3"])


def test_options_validated_with_sklearn_wording():
    with pytest.raises(OptionError, match=r"^The 'estimator' parameter of fit_sem must be one of ML, MLR, MLM, "
                                          r"WLSMV, ULSMV\. Got 'foo' instead\.$"):
        fit_sem(HS, HS_DATA, estimator="foo")
    with pytest.raises(OptionError, match=r"The 'bootstrap' parameter of fit_sem must be an int >= 0\. Got -1"):
        fit_sem(HS, HS_DATA, bootstrap=-1)
    with pytest.raises(OptionError, match="The 'control' parameter"):
        fit_sem(HS, HS_DATA, control={"iter.max": 3})


def test_unknown_variables_named_with_suggestions():
    with pytest.raises(ModelSpecificationError, match=r"'xx3' \(did you mean 'x3'\?\)"):
        fit_sem("visual =~ x1 + x2 + xx3", HS_DATA)
    with pytest.raises(ModelSpecificationError, match="'speed' \\(used in a regression but neither a column of "
                                                      "the data nor a latent variable defined with =~\\)"):
        fit_sem("visual =~ x1 + x2 + x3\nvisual ~ speed", HS_DATA)


def test_more_parameters_than_moments():
    with pytest.raises(IdentificationError, match=r"4 free parameters but only 3 sample moments \(df = -1\)"):
        fit_sem("f =~ x1 + x2", HS_DATA)


def test_non_positive_definite_sample_covariance():
    data = HS_DATA.assign(x10=HS_DATA["x1"] + HS_DATA["x2"])
    with pytest.raises(SampleCovarianceError, match=r"not positive definite .*linear dependence among "
                                                    r"(?=.*x1)(?=.*x2)(?=.*x10)"):
        fit_sem("f =~ x1 + x2 + x10", data)


def test_sample_cov_needs_nobs_and_means_for_groups():
    cov = HS_DATA[["x1", "x2", "x3"]].cov()
    with pytest.raises(DataError, match="sample_nobs is required"):
        fit_sem("f =~ x1 + x2 + x3", sample_cov=cov)
    with pytest.raises(DataError, match="no sample_mean was given"):
        fit_sem("f =~ x1 + x2 + x3", sample_cov=cov, sample_nobs=301, meanstructure=True)


def test_heywood_case_and_standardized_loading_warnings_are_data():
    with pytest.warns(HeywoodCaseWarning, match=r"negative variance estimate for 'y1' \(-0\.2786\)"), \
            pytest.warns(StandardizedLoadingWarning):
        fit = fit_sem("f =~ y1 + y2 + y3", sample_cov=HEYWOOD, sample_nobs=200)
    kinds = [w["type"] for w in fit.warnings]
    assert kinds == ["heywood-case", "standardized-loading"]
    assert fit.warnings[1]["message"] == "standardized loading of 'f =~ y1' is 1.131, beyond [-1, 1]"
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # warn=False: nothing emitted, still on the result
        quiet = fit_sem("f =~ y1 + y2 + y3", sample_cov=HEYWOOD, sample_nobs=200, warn=False)
    assert [w["category"] for w in quiet.warnings] == ["HeywoodCaseWarning", "StandardizedLoadingWarning"]


def test_standardized_loading_warning_class():
    with pytest.warns(StandardizedLoadingWarning), pytest.warns(HeywoodCaseWarning):
        fit_sem("f =~ y1 + y2 + y3", sample_cov=HEYWOOD, sample_nobs=200)


def test_non_convergence_is_reported():
    with pytest.warns(NonConvergenceWarning, match="did not converge after 2 iterations"):
        fit = fit_sem(HS, HS_DATA, control={"max_iter": 2})
    assert fit.converged is False and fit.warnings[0]["type"] == "non-convergence"


def test_warm_start_reaches_the_same_solution():
    fit = fit_sem(HS, HS_DATA)
    again = fit_sem(HS, HS_DATA, start=fit.x * 1.05)
    assert np.max(np.abs(again.x - fit.x)) < 1e-6 and again.iterations < fit.iterations + 5


def test_sample_cov_input_matches_raw_data():
    raw = fit_sem(HS, HS_DATA)
    cov = HS_DATA[[f"x{i}" for i in range(1, 10)]].cov()
    fromcov = fit_sem(HS, sample_cov=cov, sample_nobs=301)
    assert np.max(np.abs(raw.x - fromcov.x)) < 1e-6
    assert abs(raw.fit_indices["chisq"] - fromcov.fit_indices["chisq"]) < 1e-6


def test_delta_matches_numerical_jacobian_with_means_equalities_and_groups():
    pt = build_partable("ind60 =~ x1 + x2 + x3\ndem60 =~ y1 + a*y2 + y3\ndem60 ~ ind60\ny1 ~~ y3",
                        n_groups=2, group_equal=["loadings", "intercepts"])
    pt["start"] = np.where(pt["free"] > 0, 0.3, pt["ustart"])
    model = Model(pt)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.2, 0.9, model.n_free)

    def moments(z):
        out = []
        for mom in model.implied(z):
            p = len(mom.mu)
            r, c = np.tril_indices(p)
            order = np.lexsort((r, c))
            out.append(np.concatenate([mom.mu, mom.sigma[r[order], c[order]]]))
        return out

    analytic = model.delta(x)
    h = 1e-6
    for k in range(model.n_free):
        e = np.zeros(model.n_free)
        e[k] = h
        num = [(a - b) / (2 * h) for a, b in zip(moments(x + e), moments(x - e))]
        for g in range(2):
            assert np.allclose(analytic[g][:, k], num[g], atol=1e-6)


def test_ml_gradient_and_information_are_consistent():
    fit = fit_sem(HS, HS_DATA)
    est: MLEstimator = fit.estimator_object
    x = fit.x * 1.1
    g = est.gradient(x)
    h = 1e-6
    num = np.array([(est.objective(x + h * e) - est.objective(x - h * e)) / (2 * h)
                    for e in np.eye(len(x))])
    assert np.allclose(g, num, atol=1e-7)
    # at the solution the expected information gives lavaan's SEs (checked in the parity tests)
    se = np.sqrt(np.diag(est.vcov(fit.x)))
    assert np.allclose(se, np.sqrt(np.diag(fit.vcov)))


def test_bootstrap_option_dispatches_to_bootstrap_fit():
    fit = fit_sem("visual =~ x1 + x2 + x3", HS_DATA, se="bootstrap", bootstrap=20, seed=7)
    again = fit_sem("visual =~ x1 + x2 + x3", HS_DATA, se="bootstrap", bootstrap=20, seed=7)
    plain = fit_sem("visual =~ x1 + x2 + x3", HS_DATA)
    assert fit.options["se"] == "bootstrap" and fit.bootstrap.n_boot == 20
    free = fit.params["free"] > 0
    assert np.allclose(fit.params.loc[free, "se"], again.params.loc[free, "se"])   # seeded
    assert not np.allclose(fit.params.loc[free, "se"], plain.params.loc[free, "se"])
    assert np.allclose(fit.params["est"], plain.params["est"])
    with pytest.raises(OptionError, match="bootstrap standard errors need the raw data"):
        fit_sem("f =~ x1 + x2 + x3", sample_cov=HS_DATA[["x1", "x2", "x3"]].cov(), sample_nobs=301,
                se="bootstrap", bootstrap=10)
    # lavaan: bootstrap= is only the number of draws; alone it would silently change nothing
    with pytest.raises(OptionError, match="number of bootstrap draws.*se='bootstrap'"):
        fit_sem("visual =~ x1 + x2 + x3", HS_DATA, bootstrap=20)


def test_multi_group_from_moments_matches_raw_data():
    items = [f"x{i}" for i in range(1, 10)]
    parts = [HS_DATA[HS_DATA["school"] == s][items] for s in ("Pasteur", "Grant-White")]
    fit = fit_sem(HS, sample_cov=[p.cov() for p in parts], sample_mean=[p.mean() for p in parts],
                  sample_nobs=[len(p) for p in parts], group_equal="loadings")
    assert round(fit.fit_indices["chisq"], 3) == 124.044 and fit.fit_indices["df"] == 54


def test_a_parameter_table_can_be_refitted():
    fit = fit_sem(HS, HS_DATA)
    pt = fit.params.copy()
    pt.loc[(pt["lhs"] == "visual") & (pt["rhs"] == "x2"), ["free", "ustart"]] = [0, 0.5]
    pt["free"] = pt["free"].where(pt["free"] == 0, pt["free"].rank(method="dense").astype(int) - 1)
    pt.loc[pt["free"] < 0, "free"] = 0
    refit = fit_sem(pt, HS_DATA)
    row = refit.params[(refit.params["lhs"] == "visual") & (refit.params["rhs"] == "x2")].iloc[0]
    assert row["est"] == 0.5 and refit.fit_indices["df"] == 25
    assert refit.fit_indices["chisq"] > fit.fit_indices["chisq"]


def test_ordered_items_default_to_wlsmv_and_ml_refuses_them():
    bfi = pd.read_csv(Path(__file__).parents[1] / "fixtures" / "data" / "bfi.csv")
    fit = fit_sem("N =~ N1 + N2 + N3 + N4 + N5", bfi, ordered=True)
    assert fit.estimator == "WLSMV" and fit.fit_indices["df"] == 5
    assert fit.model.th_names[0][:2] == ["N1|t1", "N1|t2"]
    with pytest.raises(Exception, match="ML.*ordered"):
        fit_sem("N =~ N1 + N2 + N3 + N4 + N5", bfi, ordered=True, estimator="ML")


def test_empirically_unidentified_model_gets_no_standard_errors_and_a_named_warning():
    with pytest.warns(Warning, match=r"information matrix is singular .*parameters involved: .*f=~x2"):
        fit = fit_sem("f =~ x1 + x2\ng =~ x4 + x5 + x6\nf ~~ 0*g", HS_DATA)
    assert fit.warnings[0]["type"] == "not-identified"
    free = fit.params["free"] > 0
    assert fit.params.loc[free, "se"].isna().all() and fit.vcov is None


def test_chain_rule_gradient_equals_the_delta_gradient():
    hs_groups = fit_sem(HS, HS_DATA, group="school", group_equal=["loadings", "intercepts"])
    growth = pd.read_csv(Path(__file__).parents[1] / "fixtures" / "engine" / "Demo.growth.csv")
    mimic = fit_sem("i =~ 1*t1 + 1*t2 + 1*t3 + 1*t4\ns =~ 0*t1 + 1*t2 + 2*t3 + 3*t4\n"
                    "i + s ~ x1 + x2\ni ~ 1\ns ~ 1\nt1 + t2 + t3 + t4 ~ 0*1", growth)
    for fit in (hs_groups, mimic):
        est = fit.estimator_object
        x = fit.x * 1.05
        f, g_chain, _ = est.scoring_step(x, with_info=False)
        assert np.allclose(g_chain, est.gradient(x), atol=1e-12)
        assert f == pytest.approx(est.objective(x), abs=1e-14)


def test_units_of_measurement_do_not_trigger_identification_warnings():
    base = fit_sem("f =~ x1 + x2 + x3", HS_DATA)
    scaled = fit_sem("f =~ x1 + x2 + x3", HS_DATA.assign(x1=HS_DATA["x1"] * 1000))
    assert scaled.warnings == ()
    pick = (base.params["rhs"] == "x2") & (base.params["op"] == "=~")
    assert scaled.params.loc[pick, "se"].iloc[0] == pytest.approx(base.params.loc[pick, "se"].iloc[0] / 1000,
                                                                   rel=1e-6)
