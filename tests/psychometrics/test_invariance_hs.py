"""The invariance ladder of Holzinger-Swineford by school against lavaan 0.6-14.

Fixtures: tests/fixtures/make_fixtures.R (invariance_hs_*, ML and MLR) and
tests/fixtures/make_psychometrics.R (partial invariance, latent means).
Tolerances: fit measures and Δ tests 1e-6, group-specific estimates 1e-4.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.psychometrics.invariance import (
    CHEN_2007,
    compare_groups,
    invariance_ladder,
    partial_invariance_search,
)

FIX = Path(__file__).parents[1] / "fixtures"
HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
STEPS = ["configural", "metric", "scalar", "strict"]


def _load(name):
    return json.loads((FIX / "lavaan" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def hs():
    return pd.read_csv(FIX / "data" / "HolzingerSwineford1939.csv")


@pytest.fixture(scope="module")
def ladder(hs):
    return invariance_ladder(HS_MODEL, hs, group="school", min_group_size=100)


def test_ladder_fit_measures_match_lavaan(ladder):
    steps = ladder.steps.set_index("name")
    assert list(steps.index) == STEPS
    for s in STEPS:
        ref = _load(f"invariance_hs_{s}")["fit"]
        for k in ("chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr"):
            assert steps.loc[s, k] == pytest.approx(ref[k], abs=1e-6), (s, k)
    # the numbers the brief names
    assert steps.loc["configural", "chisq"] == pytest.approx(115.851, abs=5e-4)
    assert steps.loc["metric", "chisq"] == pytest.approx(124.044, abs=5e-4)
    assert steps.loc["scalar", "chisq"] == pytest.approx(164.103, abs=5e-4)
    assert steps.loc[["configural", "metric", "scalar"], "df"].tolist() == [48, 54, 60]


def test_ladder_differences_match_lavtestlrt(ladder):
    lrt = pd.DataFrame(_load("invariance_hs_lrt")["table"]).set_index("model")
    comp = ladder.comparisons.set_index("to")
    for s in lrt.index[1:]:
        assert comp.loc[s, "chisq.diff"] == pytest.approx(lrt.loc[s, "Chisq diff"], abs=1e-6)
        assert comp.loc[s, "df.diff"] == lrt.loc[s, "Df diff"]
        assert comp.loc[s, "pvalue"] == pytest.approx(lrt.loc[s, "Pr(>Chisq)"], rel=1e-5)
    # Chen's rule: metric holds, scalar fails (ΔCFI = -.038)
    assert bool(comp.loc["metric", "holds"]) and not bool(comp.loc["scalar", "holds"])
    assert comp.loc["scalar", "delta.cfi"] == pytest.approx(-0.0385, abs=1e-3)
    assert ladder.highest == "metric"


def test_group_specific_estimates_match_lavaan(ladder):
    for s in STEPS:
        ref = pd.DataFrame(_load(f"invariance_hs_{s}")["estimates"])
        got = ladder.fits[s].params
        got = got[got["group"] > 0]
        merged = ref.merge(got, on=["lhs", "op", "rhs", "group"], suffixes=("_lav", ""))
        assert len(merged) == len(ref), s
        np.testing.assert_allclose(merged["est"], merged["est_lav"], atol=1e-4, err_msg=s)
        np.testing.assert_allclose(merged["se"], merged["se_lav"], atol=1e-4, err_msg=s)
    # group 1 is Pasteur, as in lavaan (order of appearance)
    assert ladder.group_labels[0] == "Pasteur"


def test_mlr_ladder_scaled_differences_match_lavaan(hs):
    res = invariance_ladder(HS_MODEL, hs, group="school", estimator="MLR")
    lrt = pd.DataFrame(_load("invariance_hs_mlr_lrt")["table"]).set_index("model")
    steps = res.steps.set_index("name")
    comp = res.comparisons.set_index("to")
    for s in STEPS:
        ref = _load(f"invariance_hs_mlr_{s}")["fit"]
        for k in ("chisq.scaled", "df.scaled", "cfi.robust", "rmsea.robust", "srmr"):
            assert steps.loc[s, k] == pytest.approx(ref[k], rel=1e-5, abs=1e-6), (s, k)
    for s in lrt.index[1:]:
        assert comp.loc[s, "chisq.diff"] == pytest.approx(lrt.loc[s, "Chisq diff"], rel=1e-4), s
        assert comp.loc[s, "pvalue"] == pytest.approx(lrt.loc[s, "Pr(>Chisq)"], rel=1e-4), s
    # robust deltas use the robust CFI/RMSEA
    ref_m, ref_s = _load("invariance_hs_mlr_metric")["fit"], _load("invariance_hs_mlr_scalar")["fit"]
    assert comp.loc["scalar", "delta.cfi"] == pytest.approx(ref_s["cfi.robust"] - ref_m["cfi.robust"], abs=1e-6)


def test_to_dict_follows_the_json_contract(hs):
    res = invariance_ladder(HS_MODEL, hs, group="school", steps=("configural", "metric"))
    doc = res.to_dict()
    json.dumps(doc, allow_nan=False)
    assert [s["name"] for s in doc["steps"]] == ["configural", "metric"]
    for key in ("chisq", "df", "cfi", "rmsea", "srmr"):
        assert key in doc["steps"][0]
    c = doc["comparisons"][0]
    assert (c["from"], c["to"]) == ("configural", "metric")
    assert c["chisq.diff"] == pytest.approx(8.192, abs=1e-3) and c["df.diff"] == 6
    assert {"pvalue", "delta.cfi", "delta.rmsea", "delta.srmr", "holds", "criterion"} <= set(c)
    assert doc["criteria"]["metric"]["delta.srmr"] == CHEN_2007["metric"]["delta.srmr"] == 0.030
    assert "Chen (2007)" in res.summary() and "<table" in res._repr_html_()


def test_partial_scalar_search_frees_x3_then_x7(hs):
    ref = _load("psychometrics_partial_invariance")
    res = partial_invariance_search(HS_MODEL, hs, group="school", step="scalar", criterion="chisq", alpha=0.01)
    # lavTestScore ranks x3~1 (19.2) then x7~1 (15.0) highest: freeing them is lavaan's textbook partial model
    uni = pd.DataFrame(ref["score_uni"]).sort_values("X2", ascending=False)
    assert list(res.freed[:2]) == [p.replace(" ", "") for p in uni["param"].iloc[:2]]
    assert res.freed[:2] == ("x3~1", "x7~1")
    fi = res.fit.fit_indices
    assert fi["chisq"] == pytest.approx(ref["partial"]["fit"]["chisq"], abs=1e-6)
    assert fi["df"] == ref["partial"]["fit"]["df"]
    lrt = pd.DataFrame(ref["lrt_metric_partial"])
    last = res.history.iloc[-1]
    assert last["chisq.diff"] == pytest.approx(lrt["Chisq diff"].iloc[1], abs=1e-6)
    assert res.holds and "x3~1" in res.summary()


def test_compare_groups_latent_means_match_lavaan(hs):
    ref = _load("psychometrics_partial_invariance")
    cg = compare_groups(HS_MODEL, hs, group="school", group_partial=["x3~1", "x7~1"])
    est = pd.DataFrame(ref["partial"]["estimates"])
    lm = est[(est.op == "~1") & est.lhs.isin(["visual", "textual", "speed"]) & (est.group == 2)].set_index("lhs")
    got = cg.latent_means.set_index("construct")
    for f in ("visual", "textual", "speed"):
        assert got.loc[f, "est"] == pytest.approx(lm.loc[f, "est"], abs=1e-4)
        assert got.loc[f, "se"] == pytest.approx(lm.loc[f, "se"], abs=1e-4)
        assert got.loc[f, "group"] == "Grant-White"
    lrt = pd.DataFrame(ref["lrt_partial_means"])
    assert cg.means_test["chisq.diff"] == pytest.approx(lrt["Chisq diff"].iloc[1], abs=1e-6)
    assert cg.means_test["df.diff"] == 3
    assert cg.reference_group == "Pasteur"


def test_compare_groups_structural_path_wald_and_lrt_match_lavaan(hs):
    ref = _load("psychometrics_group_paths")
    model = HS_MODEL + "\nspeed ~ visual + textual"
    cg = compare_groups(model, hs, group="school", group_partial=["x3~1", "x7~1"], paths=["speed ~ visual"])
    row = cg.paths.set_index("rhs").loc["visual"]
    est = pd.DataFrame(ref["estimates"])
    b = est[(est.lhs == "speed") & (est.op == "~") & (est.rhs == "visual")].set_index("group")["est"]
    assert row["est.Pasteur"] == pytest.approx(b[1], abs=1e-4)
    assert row["est.Grant-White"] == pytest.approx(b[2], abs=1e-4)
    assert row["wald"] == pytest.approx(ref["wald"]["stat"], abs=1e-3)
    assert row["wald.df"] == 1
    lrt = pd.DataFrame(ref["lrt"])
    assert row["lrt.chisq"] == pytest.approx(lrt["Chisq diff"].iloc[1], abs=1e-6)
    assert row["lrt.df"] == 1  # only this path constrained, speed ~ textual stays free
    assert len(cg.paths) == 1
    json.dumps(cg.to_dict(), allow_nan=False)
    assert "Structural paths" in cg.summary()


def test_release_score_tests_match_lavtestscore(hs):
    from analysis.psychometrics.invariance import release_score_tests
    from analysis.sem.fit import fit_sem

    ref = pd.DataFrame(_load("psychometrics_partial_invariance")["score_uni"]).set_index("param")
    scalar = fit_sem(HS_MODEL, hs, group="school", group_equal=["loadings", "intercepts"])
    got = release_score_tests(scalar).set_index("param")
    assert sorted(got.index) == sorted(ref.index)
    np.testing.assert_allclose(got.loc[ref.index, "X2"], ref["X2"], atol=1e-3, rtol=1e-5)
    assert (got["df"] == 1).all()


@pytest.mark.slow
def test_partial_search_by_score_and_by_refit_agree(hs):
    by_score = partial_invariance_search(HS_MODEL, hs, group="school", step="scalar")
    by_refit = partial_invariance_search(HS_MODEL, hs, group="school", step="scalar", method="refit")
    assert by_score.method == "score" and by_refit.method == "refit"
    assert by_score.freed == by_refit.freed == ("x3~1", "x7~1")
    assert by_score.history["score"].iloc[1] == pytest.approx(19.1925, abs=1e-3)  # lavTestScore, x3~1
    assert "largest score test" in by_score.summary()


def test_mlr_group_specific_estimates_follow_the_group_labels(hs):
    res = invariance_ladder(HS_MODEL, hs, group="school", estimator="MLR", steps=("configural", "metric"))
    for s in ("configural", "metric"):
        ref = pd.DataFrame(_load(f"invariance_hs_mlr_{s}")["estimates"])
        got = res.fits[s].params
        merged = ref.merge(got[got["group"] > 0], on=["lhs", "op", "rhs", "group"], suffixes=("_lav", ""))
        np.testing.assert_allclose(merged["est"], merged["est_lav"], atol=1e-4, err_msg=s)
        np.testing.assert_allclose(merged["se"], merged["se_lav"], atol=1e-4, err_msg=s)
