"""ICCs and composite reliability per level (issue 17): lavaan's lavInspect(fit, "icc") and
semTools' compRelSEM (0.5-6, Lai 2021) from tests/fixtures/make_twolevel.R."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from analysis.sem.fit import fit_sem
from analysis.sem.twolevel import composite_reliability_levels, icc

FIX = Path(__file__).parents[1] / "fixtures"
DATA = pd.read_csv(FIX / "data" / "twolevel.csv")
REL = json.loads((FIX / "lavaan" / "twolevel_reliability.json").read_text())


def _fit(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_sem(model, DATA, cluster="community")


def test_icc_matches_lavinspect():
    ref = json.loads((FIX / "lavaan" / "twolevel_cfa.json").read_text())["icc"]
    out = icc(DATA, list(ref), cluster="community").set_index("variable")
    for var, value in ref.items():
        assert out.loc[var, "icc"] == pytest.approx(value, abs=1e-6)
    sizes = DATA.groupby("community").size()
    assert out.loc["y1", "design_effect"] == pytest.approx(1 + (sizes.mean() - 1) * ref["y1"], rel=1e-9)


def test_configural_construct_omega_w_and_2l():
    out = composite_reliability_levels(_fit(REL["config_model"]), config=["f"]).set_index("coefficient")
    assert out.loc["omega_W", "estimate"] == pytest.approx(REL["config"]["omega_W"], abs=1e-5)
    assert out.loc["omega_2L", "estimate"] == pytest.approx(REL["config"]["omega_2L"], abs=1e-5)


def test_shared_construct_omega_b_and_irr():
    out = composite_reliability_levels(_fit(REL["shared_model"]), shared=["fb"]).set_index("coefficient")
    assert out.loc["omega_B", "estimate"] == pytest.approx(REL["shared"]["omega_B"], abs=1e-5)
    assert out.loc["IRR", "estimate"] == pytest.approx(REL["shared"]["IRR"], abs=1e-5)


def test_per_level_omegas():
    out = composite_reliability_levels(_fit(REL["shared_model"])).set_index("construct")
    assert out.loc["fw", "estimate"] == pytest.approx(REL["per_level"]["within"]["fw"], abs=1e-5)
    assert out.loc["fb", "estimate"] == pytest.approx(REL["per_level"]["community"]["fb"], abs=1e-5)


def test_configural_needs_the_same_factor_at_both_levels():
    with pytest.raises(Exception, match="same name at both levels"):
        composite_reliability_levels(_fit(REL["shared_model"]), config=["fw"])


def test_icc_command_items_and_construct_scores(tmp_path):
    from analysis.simulation.simulate import population_model, simulate_responses
    from instruments import load_instrument

    inst = load_instrument("crs")
    data = simulate_responses(population_model("figure1", inst), 300, seed=11, instrument=inst, missing=0.05)
    data["community"] = np.repeat(np.arange(30), 10)
    path = tmp_path / "survey.csv"
    data.to_csv(path, index=False)
    res = CliRunner().invoke(app, ["icc", str(path), "-i", "crs", "--cluster", "community", "-c", "TRUST",
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = pd.DataFrame(doc["icc"])
    assert set(rows["kind"]) == {"item", "construct"} and set(rows["construct"]) == {"TRUST"}
    assert rows["icc"].between(0, 1).all() and (rows["n_clusters"] == 30).all()
    bad = CliRunner().invoke(app, ["icc", str(path), "-i", "crs", "--cluster", "area"])
    assert bad.exit_code == 1 and "cluster column 'area' not found" in bad.output
