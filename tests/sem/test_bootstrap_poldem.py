"""Bootstrap against lavaan: the interval arithmetic on lavaan's own draws
(exact), and our own resampling of the Political Democracy SEM (within Monte
Carlo error of lavaan's R = 2,000 percentile interval for the indirect effect)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.sem.bootstrap import bootstrap_ci, bootstrap_fit, bollen_stine_transform, jackknife_acceleration, norm_inter
from analysis.sem.fit import fit_sem

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def lavaan_boot():
    rec = json.loads((FIX / "lavaan" / "poldem_bootstrap.json").read_text())
    draws = pd.read_csv(FIX / "lavaan" / rec["boot_draws_file"])
    return rec, draws


@pytest.fixture(scope="module")
def poldem_fit():
    data = pd.read_csv(FIX / "data" / "PoliticalDemocracy.csv")
    return fit_sem((ROOT / "analysis" / "models" / "poldem.lav").read_text(), data, warn=False)


def _lavaan_table(rec, kind):
    return pd.DataFrame(rec["ci"][kind])


@pytest.mark.parametrize("kind", ["perc", "bca.simple", "basic"])
def test_interval_arithmetic_matches_lavaan_on_its_own_draws(lavaan_boot, poldem_fit, kind):
    rec, draws = lavaan_boot
    tab = _lavaan_table(rec, kind)
    names = [lab if lab else f"{l}{o}{r}" for l, o, r, lab in tab[["lhs", "op", "rhs", "label"]].values]
    free = tab.assign(name=names).drop_duplicates("name").set_index("name").loc[list(draws.columns)]
    lim = bootstrap_ci(draws.to_numpy(), free["est"].to_numpy(float), ci=kind)
    assert np.allclose(lim[:, 0], free["ci.lower"], atol=1e-7, rtol=1e-7)
    assert np.allclose(lim[:, 1], free["ci.upper"], atol=1e-7, rtol=1e-7)
    # the := effects, computed from the same draws
    a, b, c = draws["a"].to_numpy(), draws["b"].to_numpy(), draws["c"].to_numpy()
    defined = tab[tab["op"] == ":="]
    lim = bootstrap_ci(np.column_stack([a * b, c + a * b]), defined["est"].to_numpy(float), ci=kind)
    assert np.allclose(lim, defined[["ci.lower", "ci.upper"]].to_numpy(float), atol=1e-7)


def test_norm_inter_uses_order_statistics_on_the_normal_scale():
    t = np.arange(1.0, 20.0)  # 19 values: (R + 1) * .05 = 1 -> exactly the smallest
    assert norm_inter(t, [0.05, 0.95]).tolist() == [1.0, 19.0]
    # between order statistics 2 and 3 on the normal scale
    got = norm_inter(t, [0.125])[0]
    z = sps.norm.ppf([0.125, 2 / 20, 3 / 20])
    assert got == pytest.approx(2 + (z[0] - z[1]) / (z[2] - z[1]))


def test_acceleration_of_the_mean_equals_the_skewness_formula():
    rng = np.random.default_rng(4)
    x = rng.exponential(size=40)
    jack = ((x.sum() - x) / 39)[:, None]          # leave-one-out means
    l = x - x.mean()
    expected = np.sum(l**3) / (6 * np.sum(l**2) ** 1.5)
    assert expected > 0.02                        # skewed: the acceleration is far from 0
    assert jackknife_acceleration(jack)[0] == pytest.approx(expected, rel=1e-8)


def test_poldem_indirect_effect_interval_agrees_with_lavaan(lavaan_boot, poldem_fit):
    rec, lav_draws = lavaan_boot
    boot = bootstrap_fit(poldem_fit, n_boot=2000, seed=20261125, workers=2, progress=False)
    assert boot.n_failed == 0
    # lavaan: "628 bootstrap runs resulted in nonadmissible solutions" (negative variances)
    assert boot.n_improper == pytest.approx(628, abs=70)
    ours = boot.params.set_index("lhs").loc["ind"]
    lav = _lavaan_table(rec, "perc").set_index("lhs").loc["ind"]
    # Monte Carlo error of a bootstrap quantile q_p from R draws: the order
    # statistics R p -/+ sqrt(R p (1-p)) bracket it with about +/-1 SE; two
    # independent runs differ by sqrt(2) SE; allow 3 such SEs.
    lav_ind = lav_draws["a"].to_numpy() * lav_draws["b"].to_numpy()
    t = np.sort(lav_ind)
    R = len(t)
    for p, key in ((0.025, "ci.lower"), (0.975, "ci.upper")):
        h = np.sqrt(R * p * (1 - p))
        se_q = (t[int(R * p + h)] - t[int(R * p - h)]) / 2
        tol = 3 * np.sqrt(2) * se_q
        assert abs(ours[key] - lav[key]) < tol, (key, ours[key], lav[key], tol)
    assert ours["se"] == pytest.approx(lav["se"], rel=0.1)  # SE of a bootstrap SD at R = 2000: ~2-4%
    assert ours["ci.method"] == "bootstrap.perc"


def test_same_seed_same_draws_whatever_the_workers(poldem_fit):
    a = bootstrap_fit(poldem_fit, n_boot=40, seed=9, backend="serial", progress=False)
    b = bootstrap_fit(poldem_fit, n_boot=40, seed=9, workers=2, progress=False)
    c = bootstrap_fit(poldem_fit, n_boot=40, seed=10, backend="serial", progress=False)
    pd.testing.assert_frame_equal(a.draws, b.draws)
    assert not np.allclose(a.draws.to_numpy(), c.draws.to_numpy())
    # improper replications are those with a negative variance among the draws
    var_cols = [c for c in a.draws.columns if "~~" in c and c.split("~~")[0] == c.split("~~")[1]]
    assert a.n_improper == int((a.draws[var_cols] < 0).any(axis=1).sum())


def test_bca_and_bad_options(poldem_fit):
    boot = bootstrap_fit(poldem_fit, n_boot=200, seed=3, ci="bca", workers=2, progress=False)
    p = boot.params.set_index("lhs").loc["ind"]
    assert p["ci.lower"] < p["est"] < p["ci.upper"]
    assert p["ci.method"] == "bootstrap.bca"
    with pytest.raises(ValueError, match="'ci' parameter of bootstrap_fit must be one of .* Got 'pct'"):
        bootstrap_fit(poldem_fit, n_boot=10, ci="pct")
    with pytest.raises(ValueError, match="'n_boot' parameter of bootstrap_fit must be an int >= 2. Got 1"):
        bootstrap_fit(poldem_fit, n_boot=1)


def test_bollen_stine_transform_gives_the_implied_moments(poldem_fit):
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((75, 11)) @ rng.standard_normal((11, 11))
    sigma = poldem_fit.model.implied(poldem_fit.x)[0].sigma
    Z = bollen_stine_transform([Y], [sigma], [None])[0]
    zc = Z - Z.mean(axis=0)
    assert np.allclose(zc.T @ zc / 75, sigma)


def test_bollen_stine_p_agrees_with_lavaan(poldem_fit):
    rec = json.loads((FIX / "lavaan" / "poldem_bollen_stine.json").read_text())
    boot = bootstrap_fit(poldem_fit, n_boot=1000, seed=4321, bollen_stine=True, workers=2, progress=False)
    bs = boot.bollen_stine
    assert bs["chisq"] == pytest.approx(rec["chisq"], abs=1e-3)
    assert bs["n_ok"] == 1000
    # two independent estimates of a proportion from R = 1000 each: 3 SE of their difference
    p = rec["pvalue"]
    assert abs(bs["pvalue"] - p) < 3 * np.sqrt(2 * p * (1 - p) / 1000)
    # the transformed data fit the model: bootstrap chisq centre near df (35); lavaan 37.36
    assert abs(bs["boot_chisq_mean"] - rec["boot_chisq_mean"]) < 3 * np.sqrt(2) * np.sqrt(2 * 35 / 1000)
    assert "Bollen-Stine bootstrap p" in boot.summary()
