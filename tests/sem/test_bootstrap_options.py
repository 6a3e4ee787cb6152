"""Bootstrap of fits other than single-group complete-data ML: multi-group,
FIML with missing answers, MLR; and the messages for what it cannot do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.sem.bootstrap import bootstrap_fit
from analysis.errors import OptionError
from analysis.sem.fit import fit_sem

ROOT = Path(__file__).resolve().parents[2]
HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"


@pytest.fixture(scope="module")
def hs():
    return pd.read_csv(ROOT / "tests" / "fixtures" / "data" / "HolzingerSwineford1939.csv")


def test_multigroup_resamples_within_groups(hs):
    fit = fit_sem(HS, hs, group="school", warn=False)
    boot = bootstrap_fit(fit, n_boot=30, seed=1, workers=2, progress=False)
    assert boot.n_failed == 0
    p = boot.params
    free = p[p["free"] > 0]
    assert (free["se"] > 0).all()
    assert (free["ci.lower"] < free["est"]).all() and (free["est"] < free["ci.upper"]).all()
    # both groups' loadings are bootstrapped separately
    x2 = p[(p["lhs"] == "visual") & (p["rhs"] == "x2")]
    assert len(x2) == 2 and x2["se"].nunique() == 2


def test_fiml_and_mlr_refit_with_the_same_options(hs):
    rng = np.random.default_rng(3)
    data = hs.copy()
    cols = [f"x{i}" for i in range(1, 10)]
    mask = rng.random((len(data), 9)) < 0.08
    data[cols] = data[cols].mask(mask)
    fit = fit_sem(HS, data, missing="fiml", warn=False)
    assert fit.nobs[0] == len(data)  # FIML keeps every case
    boot = bootstrap_fit(fit, n_boot=20, seed=2, workers=2, progress=False)
    assert boot.n_failed == 0 and np.isfinite(boot.draws.to_numpy()).all()
    # intercepts are part of the FIML model and get bootstrap SEs too
    ints = boot.params[(boot.params["op"] == "~1") & (boot.params["free"] > 0)]
    assert len(ints) == 9 and (ints["se"] > 0).all()
    mlr = fit_sem(HS, hs, estimator="MLR", warn=False)
    b2 = bootstrap_fit(mlr, n_boot=20, seed=2, backend="serial", progress=False)
    b1 = bootstrap_fit(fit_sem(HS, hs, warn=False), n_boot=20, seed=2, backend="serial", progress=False)
    # MLR's point estimates are ML's: the same resamples give the same draws
    np.testing.assert_allclose(b2.draws.to_numpy(), b1.draws.to_numpy(), atol=1e-5)


def test_what_the_bootstrap_cannot_do(hs):
    cov = hs[[f"x{i}" for i in range(1, 10)]].cov()
    fit = fit_sem(HS, sample_cov=cov, sample_nobs=301, warn=False)
    with pytest.raises(OptionError, match="needs the raw data: this fit was made from a covariance matrix"):
        bootstrap_fit(fit, n_boot=10)
    data = hs.copy()
    data.loc[:5, "x1"] = np.nan
    fiml = fit_sem(HS, data, missing="fiml", warn=False)
    with pytest.raises(OptionError, match="Bollen-Stine bootstrap needs complete data"):
        bootstrap_fit(fiml, n_boot=10, bollen_stine=True, backend="serial", progress=False)


def test_lean_refit_gradient_equals_the_core_ml_gradient(hs):
    from analysis.sem.bootstrap import _LeanML
    from analysis.sem.estimators.ml import MLEstimator

    data = pd.read_csv(ROOT / "tests" / "fixtures" / "data" / "PoliticalDemocracy.csv")
    for syntax, df, kw in ((HS, hs, {}), ((ROOT / "analysis" / "models" / "poldem.lav").read_text(), data, {}),
                           (HS, hs, {"group": "school", "group_equal": ["loadings"]})):
        fit = fit_sem(syntax, df, warn=False, **kw)
        x = fit.x + 0.01 * np.random.default_rng(0).standard_normal(len(fit.x))
        core = MLEstimator(fit.model, fit.sample_stats)
        f, g = _LeanML(fit.model, fit.sample_stats).fg(x)
        assert f == pytest.approx(core.objective(x), abs=1e-12)
        np.testing.assert_allclose(g, core.gradient(x), atol=1e-12)


def test_wlsmv_bootstrap_refits_thresholds_and_polychorics():
    data = pd.read_csv(ROOT / "tests" / "fixtures" / "data" / "bfi_complete500.csv")
    fit = fit_sem("A =~ A1 + A2 + A3 + A4 + A5\nC =~ C1 + C2 + C3 + C4 + C5", data, estimator="WLSMV",
                  ordered=True, warn=False)
    boot = bootstrap_fit(fit, n_boot=20, seed=1, workers=2, progress=False)
    assert boot.n_ok + boot.n_failed == 20 and boot.n_ok >= 18
    p = boot.params
    th = p[(p["op"] == "|") & (p["free"] > 0)]
    assert len(th) == 50 and (th["se"] > 0).all()  # 10 items x 5 thresholds, each resampled
    lam = p[(p["op"] == "=~") & (p["free"] > 0)]
    assert ((lam["ci.lower"] < lam["est"]) & (lam["est"] < lam["ci.upper"])).all()
