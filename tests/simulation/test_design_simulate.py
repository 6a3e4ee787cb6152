"""Simulated stratified, clustered, weighted samples and Monte Carlo power under the design."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.simulation.design_power import design_power, simulate_design_sample
from analysis.errors import OptionError

POP = "F1 =~ 0.8*y1 + 0.7*y2 + 0.7*y3\nF2 =~ 0.8*y4 + 0.7*y5 + 0.6*y6\nF2 ~ 0.25*F1"


def _icc(y: pd.Series, psu: pd.Series) -> float:
    """One-way ANOVA ICC(1) with equal cluster sizes."""
    g = y.groupby(psu)
    m = g.size().iloc[0]
    msb = m * g.mean().var(ddof=1)
    msw = g.var(ddof=1).mean()
    return (msb - msw) / (msb + (m - 1) * msw)


def test_weights_reproduce_the_population_shares_and_icc_per_construct():
    shares = [0.4, 0.3, 0.2, 0.1]
    d = simulate_design_sample(POP, strata=4, clusters=60, cluster_size=15, icc={"F1": 0.3, "F2": 0.05},
                               shares=shares, oversample=[1, 1, 2, 3], seed=11)
    by = d.groupby("stratum")["w"].sum() / d["w"].sum()
    np.testing.assert_allclose(by.to_numpy(), shares, atol=1e-12)
    assert d["w"].sum() == pytest.approx(len(d))
    assert d.groupby("stratum")["w"].nunique().max() == 1 and d["w"].nunique() > 1   # unequal selection
    # PSUs nested in strata; the oversampled strata get more PSUs than their share
    assert d.groupby("psu")["stratum"].nunique().max() == 1
    psus = d.groupby("stratum")["psu"].nunique()
    assert psus[4] > psus[1] * 0.1 / 0.4 * 2
    assert _icc(d["y1"], d["psu"]) == pytest.approx(0.3, abs=0.08)
    assert _icc(d["y4"], d["psu"]) == pytest.approx(0.05, abs=0.04)
    assert d["y1"].var() == pytest.approx(1.0, abs=0.15)


def test_bad_design_arguments_are_named():
    with pytest.raises(OptionError, match="icc"):
        simulate_design_sample(POP, icc=1.2)
    with pytest.raises(OptionError, match="one value per stratum"):
        simulate_design_sample(POP, strata=3, shares=[0.5, 0.5])
    with pytest.raises(OptionError, match="clusters"):
        simulate_design_sample(POP, clusters=1)


def test_power_rises_with_clusters_and_is_reproducible():
    designs = [(3, 8), (10, 8)]
    a = design_power(POP, "F2 ~ F1", designs, reps=12, icc=0.2, seed=5, backend="serial")
    b = design_power(POP, "F2 ~ F1", designs, reps=12, icc=0.2, seed=5, backend="serial")
    pd.testing.assert_frame_equal(a.table, b.table)
    t = a.table
    assert t.loc[1, "power"] > t.loc[0, "power"]
    assert t.loc[0, "mean_se"] > t.loc[1, "mean_se"]
    assert t["deff"].tolist() == pytest.approx([1 + 7 * 0.2] * 2)
    assert (t["failed"] == 0).all()
    json.dumps(a.to_dict(), allow_nan=False)


@pytest.mark.slow
def test_null_path_rejection_rate_is_near_alpha():
    null = POP.replace("0.25*F1", "0.0*F1")
    res = design_power(null, "F2 ~ F1", [(10, 10)], reps=400, icc=0.2, seed=9, workers=2)
    # 400 replications: the binomial SE of a 5% rate is 1.1%
    assert res.table.loc[0, "power"] == pytest.approx(0.05, abs=0.035)


def test_cli_design_power_writes_the_plot(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    pop = tmp_path / "pop.lav"
    pop.write_text(POP)
    png = tmp_path / "power.png"
    res = CliRunner().invoke(app, ["design-power", "-m", str(pop), "--path", "F2 ~ F1", "--designs", "4x5,8x5",
                                   "--reps", "6", "--seed", "1", "--workers", "1", "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [d["n"] for d in doc["designs"]] == [80, 160]
    assert png.stat().st_size > 1000
