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
from analysis.invariance import invariance_ladder

FIX = Path(__file__).parent / "fixtures" / "design"
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
