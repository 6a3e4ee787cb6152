"""The semopy adapter: same model, same data, numbers under lavaan's names, close to ours."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.sem.semopy_bridge import fit_semopy, semopy_available
from analysis.sem.fit import fit_sem

pytestmark = pytest.mark.skipif(not semopy_available(), reason="semopy not installed")
FIX = Path(__file__).parents[1] / "fixtures" / "engine"


def test_semopy_hs_close_to_ours_and_mapped_to_lavaan_names():
    hs = pd.read_csv(FIX / "HolzingerSwineford1939.csv")
    model = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
    other = fit_semopy(model, hs)
    ours = fit_sem(model, hs)
    merged = ours.params.merge(other.params, on=["lhs", "op", "rhs"], suffixes=("", "_semopy"))
    assert len(merged) == 24                      # loadings mapped back to '=~'
    # semopy's SLSQP stops early: agreement to ~1e-2, not lavaan's 1e-4
    assert (merged["est"] - merged["est_semopy"]).abs().max() < 2e-2
    assert abs(other.fit_indices["chisq"] - ours.fit_indices["chisq"]) < 0.05
    assert other.fit_indices["df"] == 24


def test_semopy_drops_defined_parameters_and_says_so():
    pdem = pd.read_csv(FIX / "PoliticalDemocracy.csv")
    other = fit_semopy("ind60 =~ x1 + x2 + x3\ndem60 =~ y1 + y2 + y3 + y4\ndem60 ~ a*ind60\nb := 2*a", pdem)
    assert other.dropped == ["b := 2*a"]
    assert ((other.params["lhs"] == "dem60") & (other.params["op"] == "~")).sum() == 1
