"""Modification indices against lavaan 0.6-14 modindices() (fixtures made by tests/fixtures/make_fixtures.R)."""

import numpy as np
import pandas as pd
import pytest

import _lavaan_fixture as L
from analysis.errors import AnalysisError
from analysis.sem.modindices import modindices, modindices_from_partable

CASES = ["hs_cfa_ml", "hs_cfa_ml_stdlv", "hs_cfa_ml_meanstructure", "hs_cfa_from_cov",
         "poldem_sem", "poldem_sem_equal"]
COLS = ["mi", "epc", "sepc.lv", "sepc.all", "sepc.nox"]


def _mi(name: str, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    rec = L.load(name)
    ov, cov, mean, n = L.sample_stats(rec)
    ours = modindices_from_partable(L.partable(rec), ov, cov, n, mean, **kwargs)
    return ours, pd.DataFrame(rec["modindices"])


@pytest.mark.parametrize("name", CASES)
def test_modindices_match_lavaan(name):
    ours, ref = _mi(name)
    # same candidate set, same order as lavaan prints it
    assert ours[["lhs", "op", "rhs"]].values.tolist() == ref[["lhs", "op", "rhs"]].values.tolist()
    for col in COLS:
        np.testing.assert_allclose(ours[col], ref[col], atol=1e-3, rtol=0, err_msg=col)
        np.testing.assert_allclose(ours[col], ref[col], atol=1e-8, rtol=1e-6, err_msg=col)


def test_hs_largest_modindex():
    ours, _ = _mi("hs_cfa_ml", sort=True)
    top = ours.iloc[0]
    assert (top["lhs"], top["op"], top["rhs"]) == ("visual", "=~", "x9")
    assert top["mi"] == pytest.approx(36.411031, abs=1e-5)
    assert top["epc"] == pytest.approx(0.577022, abs=1e-5)


def test_filters():
    ours, ref = _mi("poldem_sem", op="~~", minimum_value=3.0)
    expected = ref[(ref["op"] == "~~") & (ref["mi"] > 3.0)]
    assert ours[["lhs", "rhs"]].values.tolist() == expected[["lhs", "rhs"]].values.tolist()
    assert len(ours) >= 1


def test_equality_constrained_marker_is_testable():
    # with loadings equal across occasions, freeing a marker loading is identified
    ours, _ = _mi("poldem_sem_equal")
    row = ours[(ours["lhs"] == "dem60") & (ours["op"] == "=~") & (ours["rhs"] == "y1")]
    assert row["mi"].iloc[0] == pytest.approx(0.238426, abs=1e-5)
    ours_free, _ = _mi("poldem_sem")
    assert not ((ours_free["lhs"] == "dem60") & (ours_free["rhs"] == "y1")).any()


def test_fitresult_wrapper_needs_sample_stats():
    fit = L.fit_result("hs_cfa_ml")
    with pytest.raises(AnalysisError, match="no sample_stats"):
        modindices(fit)


def test_fitresult_wrapper():
    from analysis.sem.data import SampleStats

    rec = L.load("hs_cfa_ml")
    ov, cov, mean, n = L.sample_stats(rec)
    ss = SampleStats(tuple(ov), tuple(cov), tuple(mean), tuple(n))
    fit = L.fit_result("hs_cfa_ml", sample_stats=ss)
    mi = fit.modindices(sort=True, minimum_value=10)
    assert mi["mi"].round(3).tolist() == [36.411, 34.145, 18.631, 14.946]


def _extra_fixture(name: str):
    import json

    d = json.loads((L.FIXTURES / "lavaan" / f"{name}.json").read_text())
    ss = list(d["sampstat"].values()) if isinstance(d["sampstat"], dict) else d["sampstat"]
    nobs = d["nobs"] if isinstance(d["nobs"], list) else [d["nobs"]]
    ours = modindices_from_partable(
        pd.DataFrame(d["partable"]), ss[0]["names"], [np.array(s["cov"]) for s in ss], nobs,
        [None if s.get("mean") is None else np.array(s["mean"]) for s in ss])
    return ours, pd.DataFrame(d["modindices"])


def test_multigroup_metric_invariance_matches_lavaan():
    # made by tests/fixtures/make_modindices.R: group = "school", group.equal = "loadings"
    ours, ref = _extra_fixture("mi_hs_metric_school")
    keys = ["lhs", "op", "rhs", "group"]
    assert ours[keys].values.tolist() == ref[keys].values.tolist()
    for col in COLS:
        np.testing.assert_allclose(ours[col], ref[col], atol=1e-8, rtol=1e-6, err_msg=col)
    # freeing a marker loading in one group is identified under equal loadings
    row = ours[(ours["lhs"] == "visual") & (ours["rhs"] == "x1") & (ours["group"] == 1)]
    assert row["epc"].iloc[0] == pytest.approx(0.351518, abs=1e-5)


def test_fixed_x_covariates_match_lavaan_and_skip_untestable_rows():
    ours, ref = _extra_fixture("mi_hs_mimic_fixedx")
    xs = {"sex", "ageyr"}
    testable = ref[~ref["lhs"].isin(xs)].reset_index(drop=True)
    assert ours[["lhs", "op", "rhs"]].values.tolist() == \
        testable[["lhs", "op", "rhs"]].values.tolist()
    for col in COLS:
        np.testing.assert_allclose(ours[col], testable[col], atol=1e-8, rtol=1e-6, err_msg=col)
    assert not ours["lhs"].isin(xs).any()


def test_fiml_fit_without_its_estimator_is_refused_clearly():
    from analysis.sem.data import SampleStats

    rec = L.load("hs_cfa_ml")
    ov, cov, mean, n = L.sample_stats(rec)
    fit = L.fit_result("hs_cfa_ml", sample_stats=SampleStats(tuple(ov), tuple(cov), tuple(mean),
                                                             tuple(n)),
                       options={"missing": "fiml"})
    # FIML modification indices need the case-wise data (tests/sem/test_issue15_lavaan.py)
    with pytest.raises(AnalysisError, match="after FIML need the fit's estimator"):
        modindices(fit)
