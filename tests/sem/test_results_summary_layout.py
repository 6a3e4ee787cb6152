"""summary() reads like lavaan's summary(fit, fit.measures = TRUE) for robust fits
(lines checked against lavaan 0.6-14 output; numbers from tests/fixtures/make_qa.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
REF = json.loads((FIX / "qa" / "qa_lavaan.json").read_text())


def _line(text: str, label: str) -> str:
    hits = [ln for ln in text.splitlines() if ln.strip().startswith(label)]
    assert hits, f"no line starting with {label!r}"
    return hits[0]


@pytest.fixture(scope="module")
def mg_mlr_fiml():
    ref = REF["mg_mlr_fiml"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(ref["syntax"], pd.read_csv(FIX / "qa" / "hs_missing_2group.csv"),
                      group="school", estimator="MLR", missing="fiml")
    return fit, ref["fit"], fit.summary()


def test_mlr_summary_names_sandwich_and_yuan_bentler(mg_mlr_fiml):
    fit, _, text = mg_mlr_fiml
    assert fit.tests[1].method == "yuan.bentler.mplus"
    assert "    Yuan-Bentler correction (Mplus variant)" in text.splitlines()
    assert _line(text, "Standard errors").split()[-1] == "Sandwich"
    assert _line(text, "Information bread").split()[-1] == "Observed"


def test_mlr_summary_robust_rmsea_interval_and_columns(mg_mlr_fiml):
    _, ref, text = mg_mlr_fiml
    rmsea_block = text.split("Root Mean Square Error of Approximation:")[1]
    lower = [ln for ln in rmsea_block.splitlines() if "confidence interval - lower" in ln]
    assert len(lower) == 2   # standard/scaled, then robust
    assert lower[1].split()[-1] == f"{ref['rmsea.ci.lower.robust']:.3f}"
    assert _line(rmsea_block, "Robust RMSEA").split()[-1] == f"{ref['rmsea.robust']:.3f}"
    stat = _line(text, "Test Statistic").split()
    assert float(stat[-2]) == pytest.approx(ref["chisq"], abs=1e-3)
    assert float(stat[-1]) == pytest.approx(ref["chisq.scaled"], abs=2e-3)
    # lavaan: the likelihood in both columns, with the MLR scaling factors
    assert _line(text, "Loglikelihood user model (H0)").split()[-2:] == ["-3431.596"] * 2  # lavaan
    assert "      for the MLR correction" in text.splitlines()


def test_missing_patterns_per_group_as_lavaan(mg_mlr_fiml):
    _, _, text = mg_mlr_fiml
    block = text.split("Number of missing patterns per group:")[1]
    assert _line(block, "Pasteur").split()[-1] == "25"      # lavaan: 25 and 26
    assert _line(block, "Grant-White").split()[-1] == "26"


def test_wlsmv_summary_shift_and_robust_sem():
    ref = REF["binary_wlsmv"]
    fit = fit_sem(ref["syntax"], pd.read_csv(FIX / "qa" / "binary8.csv"), ordered=True)
    text = fit.summary()
    assert _line(text, "Shift parameter").split()[-1] == "1.629"     # lavaan 0.6-14
    assert "    simple second-order correction" in text.splitlines()
    assert _line(text, "Standard errors").split()[-1] == "Robust.sem"
    assert _line(text, "Information saturated (h1) model").split()[-1] == "Unstructured"
    assert fit.tests[1].shift == pytest.approx(1.629, abs=5e-4)


def test_ml_fiml_summary_says_observed_information():
    ref = REF["mg_mlr_fiml"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(ref["syntax"], pd.read_csv(FIX / "qa" / "hs_missing_2group.csv"),
                      missing="fiml")
    text = fit.summary()
    assert _line(text, "Information").split()[-1] == "Observed"
    assert _line(text, "Number of missing patterns").split()[-1] == "36"   # lavaan: 36


def test_html_repr_pairs_standard_and_scaled_and_groups_by_label(mg_mlr_fiml):
    fit, ref, _ = mg_mlr_fiml
    page = fit._repr_html_()
    assert "<th>Standard</th><th>Scaled</th>" in page
    assert f"<td>{ref['chisq']:.3f}</td>" in page and f"<td>{ref['cfi.robust']:.3f}</td>" in page
    assert "Group 1 [Pasteur]" in page and "Group 2 [Grant-White]" in page
    assert page.count("R-Square") == 2                      # one block per group
    assert "[group 1]" not in page


def test_header_counts_equality_constraints_as_lavaan():
    """lavaan 0.6-14: 'Number of model parameters 25', 'Number of equality constraints 3'
    for a == d, b == e, c == 1.2 (make_qa.R poldem_eq); 60 and 6 for HS metric invariance."""
    ref = REF["poldem_eq"]
    fit = fit_sem(ref["syntax"], pd.read_csv(FIX / "data" / "PoliticalDemocracy.csv"))
    text = fit.summary()
    assert int(fit.fit_indices["npar"]) == ref["fit"]["npar"] == 22
    assert _line(text, "Number of model parameters").split()[-1] == "25"
    assert _line(text, "Number of equality constraints").split()[-1] == "3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = fit_sem("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9",
                         pd.read_csv(FIX / "data" / "HolzingerSwineford1939.csv"), group="school",
                         group_equal=["loadings"])
    text = metric.summary()
    assert _line(text, "Number of model parameters").split()[-1] == "60"
    assert _line(text, "Number of equality constraints").split()[-1] == "6"


def test_test_statistic_for_each_group_as_lavaan():
    """lavaan 0.6-14, HS by school, MLR: Pasteur 64.309 / 67.578, Grant-White 51.542 / 54.162."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9",
                      pd.read_csv(FIX / "data" / "HolzingerSwineford1939.csv"), group="school",
                      estimator="MLR")
    block = fit.summary().split("Test statistic for each group:")[1]
    assert _line(block, "Pasteur").split()[-2:] == ["64.309", "67.578"]
    assert _line(block, "Grant-White").split()[-2:] == ["51.542", "54.162"]


def test_summary_prints_a_second_test_beside_the_estimators_own():
    # WLSMV with test="satorra.bentler": lavaan keeps its scaled-shifted test and adds the second
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv")
    for c in ["x1", "x2", "x3", "x4", "x5", "x6"]:
        d[c] = pd.cut(d[c], 4, labels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6", d, ordered=True, test="satorra.bentler")
    second = [t for t in fit.tests if t.name == "chisq.satorra.bentler"]
    assert len(second) == 1
    text = fit.summary()
    block = text[text.index("Second test (satorra.bentler"):].splitlines()
    assert block[1].split()[:2] == ["Test", "statistic"] and float(block[1].split()[-1]) == pytest.approx(second[0].stat, abs=5e-4)
    assert float(block[3].split()[-1]) == pytest.approx(second[0].pvalue, abs=5e-4)
    assert text.index("Second test") < text.index("Model Test Baseline Model")
