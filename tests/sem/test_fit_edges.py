"""Edge cases of the one fit-index implementation and of the one Satorra-Bentler (2001)
difference test, against lavaan 0.6-14's own functions (tests/fixtures/make_fit_edges.R)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.sem import fitindices as fi
from analysis.sem.estimators.robust import satorra_bentler_2001, scaled_difference
from analysis.sem.fit import fit_sem

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures/lavaan/fit_edges.json").read_text())
HS = pd.read_csv(Path(__file__).parents[1] / "fixtures/data/HolzingerSwineford1939.csv")


def _num(v):
    return math.nan if v is None else float(v)


def _same(ours, lavaans):
    if lavaans is None:
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(lavaans, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("case", FIXTURE["incremental"], ids=lambda c: f"{c['x2']}-{c['c_hat']}-{c['c_hat_null']}")
def test_incremental_indices_have_lavaans_edge_cases(case):
    args = [_num(case[k]) for k in ("x2", "df", "x2_null", "df_null")]
    c = (_num(case["c_hat"]), _num(case["c_hat_null"]))
    _same(fi.cfi(*args, *c), case["cfi"])      # only one factor != 1: the plain index, as lavaan
    _same(fi.tli(*args, *c), case["tli"])
    _same(fi.rni(*args, *c), case["rni"])
    for name in ("rfi", "nfi", "pnfi", "ifi"):
        _same(getattr(fi, name)(*args), case[name])


@pytest.mark.parametrize("case", FIXTURE["rmsea"], ids=lambda c: f"{c['x2']}-{c['df']}-{c['c_hat']}")
def test_rmsea_has_lavaans_edge_cases(case):
    x2, df, n, c, g = (_num(case[k]) for k in ("x2", "df", "n", "c_hat", "n_groups"))
    _same(fi.rmsea(x2, df, n, g, c), case["rmsea"])
    lo, hi = fi.rmsea_ci(x2, df, n, g, c)
    assert (lo, hi) == pytest.approx((_num(case["ci_lower"]), _num(case["ci_upper"])), rel=1e-6, nan_ok=True)
    assert fi.rmsea_pvalue(x2, df, n, g, c) == pytest.approx(_num(case["pvalue"]), rel=1e-6, nan_ok=True)
    assert fi.rmsea_notclose_pvalue(x2, df, n, g, c) == pytest.approx(_num(case["notclose"]), rel=1e-6,
                                                                       abs=1e-15, nan_ok=True)


def test_sb2001_against_a_saturated_model_takes_its_scaling_factor_as_one():
    ref = FIXTURE["sb2001_saturated"]
    general = fit_sem(ref["general"], data=HS, estimator="MLM")
    restricted = fit_sem(ref["restricted"], data=HS, estimator="MLM")
    assert general.fit_indices["df"] == 0
    test = scaled_difference(restricted, general)
    assert test.method == "satorra.bentler.2001" and test.df == ref["df_diff"]
    assert test.stat == pytest.approx(ref["chisq_diff"], rel=1e-4)
    assert test.pvalue == pytest.approx(ref["pvalue"], rel=1e-4)
    # cd = (df0 c0 - 0 * 1) / (df0 - 0) = c0
    assert test.scaling_factor == pytest.approx(ref["restricted_scaling_factor"], rel=1e-4)


def test_sb2001_is_not_clamped_and_a_negative_scaling_factor_is_reported():
    # lavTestLRT: T = (T0 - T1) / cd, a negative T has p = 1; cd < 0 gives NA with a warning
    neg = satorra_bentler_2001(8.0, 5, 1.2, 10.0, 3, 1.1)
    assert neg.stat == pytest.approx((8.0 - 10.0) / ((5 * 1.2 - 3 * 1.1) / 2), rel=1e-12)
    assert neg.pvalue == 1.0 and neg["chisq.diff"] == pytest.approx(-2.0)
    bad = satorra_bentler_2001(10.0, 5, 0.5, 8.0, 4, 2.0)
    assert bad.method == "invalid" and math.isnan(bad.stat) and "negative scaling factor" in bad.reason
