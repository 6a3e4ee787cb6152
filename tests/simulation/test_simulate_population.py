"""Population models and the simulator: standardized moments, instrument-shaped
respondents, missingness, careless responders, groups; deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import ModelSpecificationError
from analysis.simulation.simulate import (
    GroupSpec,
    PopulationModel,
    analysis_frame,
    population_model,
    population_names,
    simulate_responses,
)

SMALL = """
F =~ 0.8*x1 + 0.7*x2 + 0.6*x3
G =~ 0.8*y1 + 0.7*y2 + 0.6*y3
G ~ 0.5*b*F
"""


@pytest.fixture(scope="module")
def crs():
    from instruments import load_instrument

    return load_instrument("crs")


def test_standardized_population_moments():
    pop = PopulationModel.from_syntax(SMALL)
    cov = pop.covariance()
    assert np.allclose(np.diag(cov), 1.0)
    # implied correlations: x1-x2 = .8*.7, x1-y1 = .8*.5*.8
    assert cov.loc["x1", "x2"] == pytest.approx(0.56)
    assert cov.loc["x1", "y1"] == pytest.approx(0.32)
    assert pop.r_squared()["G"] == pytest.approx(0.25)
    assert pop.r_squared()["x3"] == pytest.approx(0.36)
    assert pop.observed == ["x1", "x2", "x3", "y1", "y2", "y3"]
    assert "G ~ b*F" in pop.analysis_syntax()


def test_figure1_population_matches_figure1_md():
    assert "figure1" in population_names()
    r2 = population_model("figure1").r_squared()
    # docs/figure1.md: R² TRUST about .45, NAVIG about .35, RESIL about .45
    assert r2["TRUST"] == pytest.approx(0.45, abs=0.02)
    assert r2["NAVIG"] == pytest.approx(0.35, abs=0.03)
    assert r2["RESIL"] == pytest.approx(0.45, abs=0.02)
    vals = population_model("figure1").values()
    paths = vals[vals["op"] == "~"].set_index(["lhs", "rhs"])["value"]
    repr_paths = paths.xs("REPR", level="rhs")
    assert repr_paths.between(0.05, 0.15).all()
    assert paths.drop(index="REPR", level="rhs").between(0.15, 0.40).all()


def test_sample_moments_recover_population_and_seed_is_deterministic():
    pop = PopulationModel.from_syntax(SMALL)
    a = simulate_responses(pop, 20000, seed=11)
    b = simulate_responses(pop, 20000, seed=11)
    c = simulate_responses(pop, 200, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a.iloc[:200].equals(c)
    err = np.abs(a.cov().to_numpy() - pop.covariance().loc[pop.observed, pop.observed].to_numpy())
    assert err.max() < 0.04  # 20,000 draws: sd of a covariance about .01


def test_bad_population_models_are_named():
    with pytest.raises(ModelSpecificationError, match="explain 124% of its variance"):
        PopulationModel.from_syntax("y ~ 0.8*a + 0.7*b\na ~~ 0.1*b")
    with pytest.raises(ModelSpecificationError, match="line 1: 'y ~ a' needs a population value"):
        PopulationModel.from_syntax("y ~ a")
    with pytest.raises(ModelSpecificationError, match="feedback loop"):
        PopulationModel.from_syntax("y ~ 0.3*x\nx ~ 0.3*y")
    with pytest.raises(ModelSpecificationError, match="variances are not given"):
        PopulationModel.from_syntax("y ~ 0.3*x\ny ~~ 0.5*y")
    with pytest.raises(ModelSpecificationError, match="no population model 'figure9'"):
        population_model("figure9")


def test_mcar_share_and_group_differences_without_instrument():
    pop = PopulationModel.from_syntax(SMALL)
    groups = [GroupSpec("a", 0.5), GroupSpec("b", 0.5, means={"F": -0.5}, loadings={"x2": 0.3})]
    d = simulate_responses(pop, 8000, seed=3, groups=groups, missing=0.10)
    assert set(d["group"]) == {"a", "b"}
    share = d.drop(columns="group").isna().to_numpy().mean()
    assert share == pytest.approx(0.10, abs=0.01)
    ma, mb = d[d.group == "a"], d[d.group == "b"]
    # latent mean shift of -.5 moves x1 by .8 * -.5
    assert (mb["x1"].mean() - ma["x1"].mean()) == pytest.approx(-0.4, abs=0.06)
    # the smaller loading in group b (residual variance kept at .51): cov .56 -> .24,
    # var(x2) 1 -> .09 + .51
    assert ma[["x1", "x2"]].cov().iloc[0, 1] == pytest.approx(0.56, abs=0.05)
    assert mb[["x1", "x2"]].cov().iloc[0, 1] == pytest.approx(0.24, abs=0.05)
    assert mb["x2"].var() == pytest.approx(0.60, abs=0.05)


def test_mar_depends_on_the_observed_driver():
    pop = PopulationModel.from_syntax(SMALL)
    d = simulate_responses(pop, 6000, seed=5, mar=0.2)
    assert d["x1"].notna().all()  # the driver itself stays complete
    low = d["x1"] < d["x1"].median()
    miss = d.drop(columns="x1").isna().mean(axis=1)
    assert miss[low].mean() > 2 * miss[~low].mean()
    assert miss.mean() == pytest.approx(0.2 * 5 / 5, abs=0.02)


def test_crs_respondents_have_the_instrument_shape(crs):
    d, truth = simulate_responses("figure1", 1500, seed=8, instrument=crs, missing=0.05,
                                  careless=0.10, truth=True)
    assert list(d.columns) == ["respondent_id"] + crs.item_ids
    assert d["respondent_id"].is_unique
    likert = [it for it in crs.items if it.role == "item" and it.construct]
    codes_ok = set(crs.scales["agree5"].codes) | set(crs.scales["agree5"].missing_codes)
    for it in likert:
        assert set(d[it.id].dropna().astype(int)) <= set(crs.scales[it.scale].codes) | set(
            crs.scales[it.scale].missing_codes)
    # labelled missing codes (-9/-8) at about 5% of construct items
    vals = d[[it.id for it in likert]].to_numpy(dtype=float)
    assert np.isin(vals, [-9, -8]).mean() == pytest.approx(0.05, abs=0.01)
    assert set(d["CULT1"].dropna().astype(int)) <= codes_ok
    # careless share, and straight-liners give one code across a construct's items
    assert truth["careless"].mean() == pytest.approx(0.10, abs=0.001)
    # reverse-keyed items are recorded reversed: raw correlation negative, re-keyed positive
    careful = ~truth["careless"].to_numpy()
    raw = d.loc[careful, ["CULT1", "CULT4"]].replace([-9, -8], np.nan).astype(float)
    assert raw.corr().iloc[0, 1] < -0.2
    frame = analysis_frame(d, crs)
    assert frame.loc[careful, ["CULT1", "CULT4"]].corr().iloc[0, 1] > 0.2
    # REPR is a count of 'yes' answers (0-3)
    assert set(frame["REPR"].dropna().astype(int)) <= {0, 1, 2, 3}
    # attention check: careful respondents mostly give the instructed code
    attn = crs.attention_checks[0]
    assert (d.loc[careful, attn.id] == attn.expected).mean() > 0.9
    assert (d.loc[~careful, attn.id] == attn.expected).mean() < 0.5
    # minority groups start with lower TRUST (latent truth and observed items)
    ref = truth["group"].value_counts().idxmax()
    assert ref.lower().startswith("white")
    gap = truth.loc[truth.group != ref, "TRUST"].mean() - truth.loc[truth.group == ref, "TRUST"].mean()
    assert gap == pytest.approx(-0.3, abs=0.12)


def test_crs_same_seed_same_respondents(crs):
    a = simulate_responses("figure1", 300, seed=42, instrument=crs, missing=0.05, careless=0.07)
    b = simulate_responses("figure1", 300, seed=42, instrument=crs, missing=0.05, careless=0.07)
    pd.testing.assert_frame_equal(a, b)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'missing' parameter of simulate_responses must be in \\[0, 1\\). Got 1.5"):
        simulate_responses(SMALL, 10, seed=1, missing=1.5)
    with pytest.raises(ValueError, match="'n' parameter of simulate_responses must be an int >= 1. Got 0"):
        simulate_responses(SMALL, 0, seed=1)


def test_simulator_keeps_gating_items_and_refuses_constructs_the_instrument_lacks(tmp_path):
    """Relevance is honoured: a gating item is never blanked by the missing-data mechanism, so no
    item is answered though not applicable and the suite's own validator accepts the data; a
    population model over constructs the instrument does not have is refused, naming them."""
    from pathlib import Path

    from instruments import load_instrument
    from instruments.validate import validate

    from analysis.errors import ModelSpecificationError
    from analysis.simulation.simulate import simulate_responses

    root = Path(__file__).parents[1] / "fixtures" / "studies" / "neighbourhood"
    inst = load_instrument(root / "wellbeing.yaml")
    gate = inst.item("VOLUN")
    gate.role = "item"  # let the missing-data mechanism reach the gate itself
    data = simulate_responses((root / "population.lav").read_text(), 400, seed=2, instrument=inst, missing=0.3)
    assert data["VOLUN"].notna().all() and not data["VOLUN"].isin(inst.scales["yesno"].missing_codes).any()
    asked = data["VOLUN"] == 1
    assert data.loc[~asked, "VOLHRS"].isna().all() and data.loc[asked, "VOLHRS"].notna().mean() > 0.9
    assert validate(data, inst).n_errors == 0
    with pytest.raises(ModelSpecificationError, match=r"TRUST, CULT.*instrument 'nwb' does not have.*its constructs: SAFETY"):
        simulate_responses("figure1", 50, seed=1, instrument=inst)
