"""Two-level simulation and Monte Carlo power (issue 17, part 4)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.sem.twolevel import icc
from analysis.simulation.twolevel_power import (
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


def _power_cli(tmp_path, *args):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    model = tmp_path / "pop.lav"
    model.write_text(POP)
    return CliRunner().invoke(app, ["power", "--model", str(model), *args])


def test_power_command_routes_a_two_level_model_by_clusters_and_size(tmp_path):
    import json

    res = _power_cli(tmp_path, "--clusters", "12,60", "--cluster-sizes", "8", "--reps", "10", "--seed", "3",
                     "--icc", "0.3", "--workers", "1", "--target", "0.9", "--plot", str(tmp_path / "p.png"),
                     "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "twolevel_power" and doc["seed"] == 3 and doc["reps"] == 10
    # the same numbers as the Python API with the same settings
    table = twolevel_power(POP, n_clusters=[12, 60], cluster_size=[8], reps=10, seed=3, icc=0.3,
                           backend="serial")
    got = {(r["n_clusters"], r["level"]): r for r in doc["results"]}
    for _, r in table.iterrows():
        row = got[(r["n_clusters"], r["level"])]
        assert row["power"] == r["power"] and row["mean_est"] == pytest.approx(r["mean_est"], rel=1e-12)
    # the fewest clusters reaching 90%: the smallest design whose power is at least that
    for m in doc["min_clusters"]:
        ok = sorted(k for (k, lev), r in got.items() if lev == m["level"] and r["power"] >= 0.9)
        assert m["min_clusters"] == (ok[0] if ok else None)
    assert (tmp_path / "p.png").stat().st_size > 5_000


def test_power_command_text_and_clear_refusals(tmp_path):
    res = _power_cli(tmp_path, "--clusters", "10", "--cluster-sizes", "4-6", "--reps", "2", "--seed", "1",
                     "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "clusters of 4-6 respondents" in res.stdout and "Fewest clusters with power >= 80%" in res.stdout
    for args, message in ((["--reps", "2"], "needs --clusters"),
                          (["--clusters", "10", "--cluster-sizes", "8-3"], "--cluster-sizes: '8-3' is not valid"),
                          (["--clusters", "ten"], "--clusters must be comma-separated whole numbers of 2 or more"),
                          (["--clusters", "10", "--instrument", "crs"], "--instrument: not used with a two-level")):
        res = _power_cli(tmp_path, *args, "--json")
        assert res.exit_code == 2 and message in res.stdout, (args, res.output)   # wrong use: exit 2
    flat = tmp_path / "flat.lav"
    flat.write_text("y ~ 0.3*x\n")
    from typer.testing import CliRunner

    from analysis.cli.main import app

    res = CliRunner().invoke(app, ["power", "--model", str(flat), "--clusters", "10", "--json"])
    assert res.exit_code == 2 and "has no level: blocks" in res.stdout
