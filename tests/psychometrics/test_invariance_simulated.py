"""Recovery: the partial search finds the item made non-invariant, and latent means come back.

Data from the suite's simulator (two constructs of Figure 1, two community
groups; the minority group has lower TRUST and one item whose intercept is
shifted: scalar non-invariance on one item, as docs/figure1.md calls realistic).
"""

import warnings

import pytest

from analysis.psychometrics.invariance import compare_groups, invariance_ladder, partial_invariance_search
from analysis.simulation.simulate import GroupSpec, simulate_responses

POP = """
TRUST =~ 0.8*t1 + 0.75*t2 + 0.7*t3 + 0.7*t4
CONF =~ 0.8*c1 + 0.75*c2 + 0.7*c3 + 0.65*c4
CONF ~ 0.4*TRUST
"""
MODEL = "TRUST =~ t1 + t2 + t3 + t4\nCONF =~ c1 + c2 + c3 + c4"


@pytest.fixture(scope="module")
def data():
    groups = [
        GroupSpec("majority", 0.5),
        GroupSpec("minority", 0.5, means={"TRUST": -0.4}, intercepts={"t3": 0.6}),
    ]
    data = simulate_responses(POP, 1600, seed=17, groups=groups)
    # the reference group is the first in the data (lavaan's rule): put the majority first
    return data.sort_values("group", kind="stable").reset_index(drop=True)


def test_ladder_flags_scalar_and_search_frees_the_shifted_item(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = invariance_ladder(MODEL, data, group="group", steps=("configural", "metric", "scalar"))
        comp = res.comparisons.set_index("to")
        assert comp.loc["metric", "holds"] and comp.loc["metric", "pvalue"] > 0.01
        assert comp.loc["scalar", "pvalue"] < 1e-6  # the shifted intercept is detected
        search = partial_invariance_search(MODEL, data, group="group", step="scalar", criterion="both", alpha=0.01)
    assert search.freed[0] == "t3~1"
    assert search.holds and len(search.freed) <= 2
    assert search.history["chisq"].is_monotonic_decreasing


def test_latent_mean_difference_recovered_on_partial_scalar_model(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = compare_groups(MODEL + "\nCONF ~ TRUST", data, group="group", group_partial=["t3~1"])
    lm = cg.latent_means.set_index("construct")
    assert cg.reference_group == "majority"
    # TRUST is 0.4 SD lower in the minority group; CONF follows through the 0.4 path (-0.16)
    assert lm.loc["TRUST", "d"] == pytest.approx(-0.4, abs=0.12)
    assert lm.loc["TRUST", "pvalue"] < 1e-4
    assert cg.paths.set_index("lhs").loc["CONF", "wald.pvalue"] > 0.01  # same path in both groups
