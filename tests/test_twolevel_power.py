"""Two-level simulation and Monte Carlo power (issue 17, part 4)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.twolevel import icc
from analysis.twolevel_power import (
    analysis_syntax, plot_twolevel_power, population_moments, simulate_twolevel, twolevel_power)

POP = "level: 1\n  y ~ 0.3*x\nlevel: 2\n  y ~ 0.5*w\n"


def test_population_moments_follow_the_model():
    (sw, mw, ov1), (sb, mb, ov2) = population_moments(POP, icc=0.2)
    assert ov1 == ["y", "x"] and ov2 == ["y", "w"]
    # within: var(y) = 0.3^2 * 1 + 1, cov(y, x) = 0.3; between: residual and w at 0.2/0.8
    np.testing.assert_allclose(sw, [[1.09, 0.3], [0.3, 1.0]])
    np.testing.assert_allclose(sb, [[0.25 * 0.25 + 0.25, 0.5 * 0.25], [0.5 * 0.25, 0.25]])


def test_simulated_data_have_the_population_icc_and_cluster_constant_covariates():
    data = simulate_twolevel("level: 1\n  y ~~ y\nlevel: 2\n  y ~~ y\n", n_clusters=400, cluster_size=(5, 15),
                             seed=5, icc=0.25)
    sizes = data.groupby("cluster").size()
    assert sizes.min() >= 5 and sizes.max() <= 15 and len(sizes) == 400
    est = icc(data, ["y"], cluster="cluster")["icc"].iloc[0]
    assert est == pytest.approx(0.25, abs=0.04)       # SE of the ICC here is about 0.015
    cov = simulate_twolevel(POP, n_clusters=50, cluster_size=4, seed=2)
    assert (cov.groupby("cluster")["w"].nunique() == 1).all()
    assert cov.groupby("cluster")["x"].nunique().min() > 1


def test_analysis_syntax_drops_values_but_keeps_zero_constraints():
    assert analysis_syntax("level: 1\n y ~ 0.3*x + 0*z\nlevel: 2\n y ~ -1.5e-1*w") == \
        "level: 1\n y ~ x + 0*z\nlevel: 2\n y ~ w"


def test_power_grows_with_clusters_and_paths_are_recovered(tmp_path):
    table = twolevel_power(POP, n_clusters=[15, 80], cluster_size=[8], reps=24, seed=3, icc=0.3,
                           backend="serial")
    within = table[table["level"] == 1].set_index("n_clusters")
    between = table[table["level"] == 2].set_index("n_clusters")
    assert (table["n_ok"] >= 22).all()
    assert within.loc[80, "power"] == 1.0                     # 640 respondents, slope .3
    assert between.loc[80, "power"] > between.loc[15, "power"]
    assert abs(between.loc[80, "bias"]) < 0.1 and abs(within.loc[80, "bias"]) < 0.05
    out = tmp_path / "power.png"
    plot_twolevel_power(table, out)
    assert out.stat().st_size > 5_000
