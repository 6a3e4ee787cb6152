"""Psychometrics with the sample design against lavaan 0.6-14 / survey 4.1: the invariance ladder
with weights and clusters (scaled difference tests), weighted alpha and omega with SEs that
respect clustering."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from analysis.design import Design
from analysis.design.psychometrics import design_reliability
from analysis.psychometrics.invariance import invariance_ladder

FIX = Path(__file__).parents[1] / "fixtures" / "design"
REF = json.loads((FIX / "psychometrics.json").read_text())
DATA = pd.read_csv(FIX / "design_sample.csv")


def test_invariance_ladder_with_weights_and_clusters():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = invariance_ladder(REF["model"], DATA, group="sex", sampling_weights="w", cluster="psu",
                                steps=["configural", "metric", "scalar"])
    assert res.estimator == "MLR"
    steps = res.steps.set_index("name")
    for name, ref in REF["steps"].items():
        for key, value in ref.items():
            assert steps.loc[name, key] == pytest.approx(value, rel=1e-3), (name, key)
    comps = res.comparisons.set_index("to")
    for name, ref in REF["comparisons"].items():
        assert comps.loc[name, "chisq.diff"] == pytest.approx(ref["chisq.diff"], rel=1e-3)
        assert comps.loc[name, "df.diff"] == ref["df.diff"]
        assert comps.loc[name, "pvalue"] == pytest.approx(ref["pvalue"], rel=1e-3)


def test_weighted_alpha_and_omega_with_clustered_ses():
    res = design_reliability(DATA, ["x1", "x2", "x3"], Design(weights="w", cluster="psu"))
    t = res.table.set_index("coefficient")
    for name in ("alpha", "omega"):
        assert t.loc[name, "est"] == pytest.approx(REF[name]["est"], abs=1e-4)
        assert t.loc[name, "se"] == pytest.approx(REF[name]["se"], rel=1e-3)
    assert t.loc["alpha", "est"] == pytest.approx(REF["svycralpha"], abs=1e-6)   # survey's svycralpha
    # the clustering widens the interval compared with weights alone
    plain = design_reliability(DATA, ["x1", "x2", "x3"], Design(weights="w")).table.set_index("coefficient")
    assert t.loc["alpha", "se"] > plain.loc["alpha", "se"] * 1.05


def test_cli_invariance_with_design_flags(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    model = tmp_path / "hs.lav"
    model.write_text(REF["model"])
    res = CliRunner().invoke(app, ["invariance", str(FIX / "design_sample.csv"), "-m", str(model), "-g", "sex",
                                   "--steps", "configural,metric", "--weights", "w", "--cluster", "psu", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    comp = doc["comparisons"][0]
    assert comp["chisq.diff"] == pytest.approx(REF["comparisons"]["metric"]["chisq.diff"], rel=1e-3)


def test_cli_reliability_adds_design_based_alpha_and_omega(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from analysis.cli.main import app
    from analysis.simulation.simulate import simulate_responses
    from instruments.load import library_path, load_instrument

    inst = load_instrument(library_path("crs"))
    data = simulate_responses("figure1", 300, seed=4, instrument=inst)
    rng = np.random.default_rng(4)
    data["wt"] = np.exp(rng.normal(scale=0.4, size=len(data)))
    data["area"] = rng.integers(0, 30, size=len(data))
    path = tmp_path / "survey.csv"
    data.to_csv(path, index=False)
    res = CliRunner().invoke(app, ["reliability", str(path), "-i", "crs", "-c", "TRUST,NAVIG", "--weights", "wt",
                                   "--cluster", "area", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["design_reliability"]["reliability"]
    assert {(r["construct"], r["coefficient"]) for r in rows} == {
        ("TRUST", "alpha"), ("TRUST", "omega"), ("NAVIG", "alpha"), ("NAVIG", "omega")}
    assert all(0 < r["ci.lower"] < r["est"] < r["ci.upper"] < 1 for r in rows)
