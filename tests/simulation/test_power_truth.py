"""The recovery study's design is self-consistent: the replication frame of
figure1 with continuous responses (reverse-keyed items recorded reversed and
re-keyed, 5% MCAR) has the population moments that the exact true values are
fitted to, and the analysis model reproduces those moments with the
population paths. A mismatch here would bias coverage in the Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def design():
    from instruments import load_instrument

    from analysis.simulation.power import _generated_items
    from analysis.simulation.simulate import population_model

    inst = load_instrument("crs")
    pop = population_model("figure1", inst)
    ov = list(pop.observed)  # every item of the figure1 constructs (REPR: its items)
    return inst, pop, ov, _generated_items(inst, ov)


def test_replication_frame_has_the_population_moments(design):
    from analysis.simulation.power import _exact_moments, _frame
    from analysis.simulation.simulate import simulate_responses

    inst, pop, ov, only = design
    reversed_ = [v for v in ov if inst.item(v).reverse]
    assert {"TRUST4", "NEGOT4"} <= set(reversed_)
    data = simulate_responses(pop, 40_000, seed=8, instrument=inst, items=only, likert=False,
                              missing=0.05, missing_as="blank", groups=[])
    Y = _frame(pop, inst, data, ov)
    assert np.isnan(Y).mean() == pytest.approx(0.05, abs=0.005)
    cov, mean = _exact_moments(pop, inst, ov)
    ok = ~np.isnan(Y)
    emp_mean = np.nanmean(Y, axis=0)
    # 38,000 answers per item: sd of a mean .005, of a covariance <= .0075
    assert np.abs(emp_mean - mean.to_numpy()).max() < 0.025
    Yc = np.where(ok, Y - emp_mean, 0.0)
    emp_cov = (Yc.T @ Yc) / (ok.T.astype(float) @ ok.astype(float))
    assert np.abs(emp_cov - cov.to_numpy()).max() < 0.04
    # re-keyed reverse items correlate positively with their construct's marker
    assert emp_cov[ov.index("TRUST4"), ov.index("TRUST1")] == pytest.approx(0.82 * 0.62, abs=0.03)


def test_exact_true_values_are_the_population_paths(design):
    from analysis.simulation.power import _exact_moments
    from analysis.sem.fit import fit_sem

    inst, pop, ov, _ = design
    cov, mean = _exact_moments(pop, inst, ov)
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = fit_sem(pop.analysis_syntax(), sample_cov=cov, sample_mean=mean, sample_nobs=10**9,
                      meanstructure=True, warn=False, se="none")
    assert fit.fit_indices["chisq"] < 1e-3  # the analysis model reproduces the population
    est = fit.params[fit.params["op"] == "~"].set_index(["lhs", "rhs"])["est"]
    vals = pop.values()
    want = vals[vals["op"] == "~"].set_index(["lhs", "rhs"])["value"]
    # every construct's marker has the same standardized loading (.82), so the
    # marker-metric paths equal the standardized population paths
    np.testing.assert_allclose(est.loc[want.index].to_numpy(), want.to_numpy(), atol=1e-4)
    assert est.loc[("NEGOT", "TRUST")] == pytest.approx(0.30, abs=1e-4)
