"""The report's sample-design section: weights' distribution, effective n, weighted and unweighted
estimates side by side, sentences when they differ, disclosure control on unweighted counts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.design import Design
from analysis.design.report import design_summary

FIX = Path(__file__).parents[1] / "fixtures" / "design"
DATA = pd.read_csv(FIX / "design_sample.csv")
DESIGN = Design(weights="w", cluster="psu", strata="stratum")
REF = json.loads((FIX / "describe.json").read_text())


def test_weights_section_and_side_by_side_estimates():
    s = design_summary(DATA, DESIGN, ["x1", "x4"], categorical=["eth"])
    w = DATA["w"].to_numpy()
    assert s["weights"]["kish_n_eff"] == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert s["weights"]["q50"] == pytest.approx(np.median(w))
    assert (s["n"], s["n_psu"], s["n_strata"]) == (554, 54, 4)
    rows = {(r["variable"], r["category"]): r for r in s["estimates"]}
    x1 = rows[("x1", None)]
    assert x1["unweighted"] == pytest.approx(DATA["x1"].mean())
    assert x1["weighted"] == pytest.approx(np.average(DATA["x1"], weights=w))
    # the oversampled group B: its weighted share differs materially, and a sentence says so
    b = rows[("eth", "B")]
    assert b["material"] and b["unweighted"] == pytest.approx((DATA["eth"] == "B").mean())
    assert any("eth = B" in t for t in s["sentences"])
    json.dumps(s, allow_nan=False)


def test_disclosure_uses_unweighted_counts():
    data = DATA.copy()
    data.loc[data.index[:6], "eth"] = "D"          # 6 respondents: below the threshold of 10
    s = design_summary(data, DESIGN, ["x1"], categorical=["eth"], threshold=10)
    d = next(r for r in s["estimates"] if r["category"] == "D")
    assert d["weighted"] is None and d["unweighted"] is None and d["n"] is None
    assert any("fewer than 10 respondents" in t for t in s["sentences"])
