"""Ordinal invariance (WLSMV, thresholds first, Wu & Estabrook 2016) against lavaan + semTools.

Fixtures: invariance_ordinal_*.json from tests/fixtures/make_fixtures.R, the
models of semTools::measEq.syntax(ID.cat = "Wu.Estabrook.2016", ID.fac =
"std.lv", parameterization = "delta") for psych::bfi N1-N5 by gender.
Tolerance 1e-3 (the brief's).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.psychometrics.invariance import invariance_ladder, wu_estabrook_syntax

FIX = Path(__file__).parents[1] / "fixtures"
ITEMS = [f"N{i}" for i in range(1, 6)]
MODEL = "NEU =~ N1 + N2 + N3 + N4 + N5"
STEPS = ["configural", "thresholds", "metric", "scalar"]
TOL = 1e-3


def _load(name):
    return json.loads((FIX / "lavaan" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def bfi():
    return pd.read_csv(FIX / "data" / "bfi.csv")


@pytest.fixture(scope="module")
def ladder(bfi):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return invariance_ladder(MODEL, bfi, group="gender", estimator="WLSMV", ordered=ITEMS)


def test_default_ordinal_steps_are_thresholds_first(ladder):
    assert ladder.steps["name"].tolist() == STEPS
    assert ladder.ordinal and ladder.estimator == "WLSMV"
    assert "Wu & Estabrook" in ladder.summary()


def test_same_models_as_measeq_syntax_estimates_and_df(ladder):
    for s in STEPS:
        ref = _load(f"invariance_ordinal_{s}")
        assert ladder.fits[s].fit_indices["df"] == ref["fit"]["df"], s
        est = pd.DataFrame(ref["estimates"])
        got = ladder.fits[s].params
        # free parameters (lavaan also lists the derived residual variances of the latent responses)
        m = est.merge(got[(got["group"] > 0) & (got["free"] > 0)], on=["lhs", "op", "rhs", "group"], suffixes=("_lav", ""))
        n_free = len(got[(got["group"] > 0) & (got["free"] > 0)])
        assert len(m) == n_free, s
        np.testing.assert_allclose(m["est"], m["est_lav"], atol=TOL, err_msg=s)
        np.testing.assert_allclose(m["se"], m["se_lav"], atol=TOL, err_msg=s)


def test_wu_estabrook_identification_per_step(bfi):
    g = dict(group="gender", ordered=ITEMS)
    conf = wu_estabrook_syntax(MODEL, bfi, equal=(), **g)
    thr = wu_estabrook_syntax(MODEL, bfi, equal=("thresholds",), **g)
    met = wu_estabrook_syntax(MODEL, bfi, equal=("thresholds", "loadings"), **g)
    sca = wu_estabrook_syntax(MODEL, bfi, equal=("thresholds", "loadings", "intercepts"), **g)
    assert "N1 ~ c(0, 0)*1" in conf and "N1 ~*~ c(1, 1)*N1" in conf and "NEU ~~ c(1, 1)*NEU" in conf
    assert "N1 | c(N1.thr1.g1, N1.thr1.g2)*t1" in conf
    assert "N1 | c(N1.thr1, N1.thr1)*t1" in thr and "N1 ~ c(0, NA)*1" in thr and "N1 ~*~ c(1, NA)*N1" in thr
    assert "NEU ~~ c(1, NA)*NEU" in met and "NEU ~ c(0, 0)*1" in met
    assert "N1 ~ c(0, 0)*1" in sca and "NEU ~ c(0, NA)*1" in sca
    part = wu_estabrook_syntax(MODEL, bfi, equal=("thresholds", "loadings", "intercepts"), group_partial=["N3~1"], **g)
    assert "N3 ~ c(0, NA)*1" in part and "N1 ~ c(0, 0)*1" in part


def test_fit_measures_and_scaled_differences_match_lavaan(ladder):
    steps = ladder.steps.set_index("name")
    for s in STEPS:
        ref = _load(f"invariance_ordinal_{s}")["fit"]
        for k in ("chisq", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "srmr"):
            assert steps.loc[s, k] == pytest.approx(ref[k], abs=TOL), (s, k)
    lrt = pd.DataFrame(_load("invariance_ordinal_lrt")["table"]).set_index("model")
    comp = ladder.comparisons.set_index("to")
    for s in STEPS[1:]:
        assert comp.loc[s, "chisq.diff"] == pytest.approx(lrt.loc[s, "Chisq diff"], abs=TOL), s
    # ΔCFI/ΔRMSEA of WLSMV ladders are on the scaled indices
    m, sc = _load("invariance_ordinal_metric")["fit"], _load("invariance_ordinal_scalar")["fit"]
    assert comp.loc["scalar", "delta.cfi"] == pytest.approx(sc["cfi.scaled"] - m["cfi.scaled"], abs=1e-6)
    assert comp.loc["scalar", "delta.rmsea"] == pytest.approx(sc["rmsea.scaled"] - m["rmsea.scaled"], abs=1e-6)
    assert not comp.loc["scalar", "holds"]  # ΔCFI = -.014


def test_ordinal_ladder_needs_every_indicator_ordered(bfi):
    from analysis.errors import OptionError

    with pytest.raises(OptionError, match="not ordered: N4, N5"):
        wu_estabrook_syntax(MODEL, bfi, group="gender", equal=(), ordered=ITEMS[:3])


def test_partial_ordinal_scalar_step_matches_measeq_group_partial(bfi):
    ref = _load("psychometrics_ordinal_partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = invariance_ladder(MODEL, bfi, group="gender", estimator="WLSMV", ordered=ITEMS,
                                steps=("metric", "scalar"), group_partial=["N5~1"])
    fi = res.fits["scalar"].fit_indices
    for k in ("chisq", "df", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "srmr"):
        assert fi[k] == pytest.approx(ref["fit"][k], abs=TOL), k
    est = pd.DataFrame(ref["estimates"])
    nu = est[(est.lhs == "N5") & (est.op == "~1") & (est.group == 2)]["est"].iloc[0]
    p = res.fits["scalar"].params
    assert p[(p.lhs == "N5") & (p.op == "~1") & (p.group == 2)]["est"].iloc[0] == pytest.approx(nu, abs=TOL)


@pytest.mark.slow
def test_partial_ordinal_search_frees_n5_intercept(bfi):
    from analysis.psychometrics.invariance import partial_invariance_search

    ref = _load("psychometrics_ordinal_partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = partial_invariance_search(MODEL, bfi, group="gender", step="scalar", estimator="WLSMV", ordered=ITEMS)
    assert res.method == "refit" and res.freed == ("N5~1",) and res.holds
    assert res.fit.fit_indices["chisq"] == pytest.approx(ref["fit"]["chisq"], abs=TOL)
