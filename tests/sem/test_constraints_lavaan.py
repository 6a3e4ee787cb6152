"""General constraints (a == 2*b, a + b == 1, a > 0.5, v > 0 on a variance, a == b^2) against lavaan
0.6.14 (its nlminb.constr estimates, SEs from the bordered information).

Fixtures: tests/fixtures/make_issue15b.R. Tolerances: estimates 1e-4, SEs 1e-3 relative, fit
measures 1e-3 relative.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import ModelSpecificationError
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
CASES = json.loads((FIX / "lavaan" / "issue15b_constraints.json").read_text())["cases"]
ROBUST = json.loads((FIX / "lavaan" / "issue15b_constraints_robust.json").read_text())["cases"]
HS = pd.read_csv(FIX / "data" / "HolzingerSwineford1939.csv")


def _compare(fit, case):
    ours = fit.params[~fit.params["op"].isin(["==", "<", ">"])].reset_index(drop=True)
    ref = pd.DataFrame(case["estimates"])
    assert list(ours["lhs"] + ours["op"] + ours["rhs"]) == list(ref["lhs"] + ref["op"] + ref["rhs"])
    assert np.max(np.abs(ours["est"].to_numpy() - ref["est"].to_numpy())) < 1e-4
    se, ref_se = ours["se"].to_numpy(float), ref["se"].to_numpy(float)
    # lavaan prints a parameter pinned on its bound with SE 0 or NA (rounding noise); ours is 0
    ok = np.isfinite(ref_se) & (ref_se > 1e-3)
    assert np.max(np.abs(se[ok] - ref_se[ok]) / ref_se[ok]) < 1e-3
    assert np.all(se[~ok & np.isfinite(se)] < 1e-6)
    for key, value in case["fit"].items():
        assert math.isclose(float(fit.fit_indices[key]), value, rel_tol=1e-3, abs_tol=1e-6), key


@pytest.mark.parametrize("name", sorted(CASES))
def test_ml_constraints_match_lavaan(name):
    _compare(fit_sem(CASES[name]["model"], HS), CASES[name])


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_constraints_with_robust_and_ordinal_estimators(name):
    case = ROBUST[name]
    data = HS if name == "mlr" else pd.read_csv(FIX / "data" / "bfi_complete500.csv")
    _compare(fit_sem(case["model"], data, **case["options"]), case)


def test_active_and_inactive_inequalities():
    inactive = fit_sem(CASES["ineq_inactive"]["model"], HS)
    free = fit_sem(CASES["ineq_inactive"]["model"].replace("a > 0.5", ""), HS)
    rows = ~inactive.params["op"].isin(["==", "<", ">"])
    assert np.allclose(inactive.params.loc[rows, "est"], free.params["est"], atol=1e-8)
    active = fit_sem(CASES["ineq_active"]["model"], HS)
    b = active.params[active.params["label"] == "b"].iloc[0]
    assert b["est"] == pytest.approx(0.8, abs=1e-10) and b["se"] == 0 and np.isnan(b["z"])
    assert active.fit_indices["df"] == free.fit_indices["df"]      # inequalities add no df
    eq = fit_sem(CASES["eq_linear"]["model"], HS)
    assert eq.fit_indices["df"] == free.fit_indices["df"] + 1
    a, b = (eq.params.loc[eq.params["label"] == lab, "est"].iloc[0] for lab in ("a", "b"))
    assert a == pytest.approx(2 * b, abs=1e-10)


def test_summary_lists_the_constraints_with_their_slack():
    fit = fit_sem("visual =~ x1 + a*x2 + b*x3\ntextual =~ x4 + x5 + x6\nab := a*b\na == 2*b\nb > 0.3", HS)
    text = fit.summary()
    assert "  Number of model parameters                        13" in text
    assert "  Number of equality constraints                     1" in text
    block = text[text.index("Constraints:"):].splitlines()
    assert block[1].strip() == "|Slack|"
    assert block[2] == "    a - (2*b)                                    0.000"
    assert block[3] == "    b - (0.3)                                    0.063"
    assert all(r["op"] not in ("==", ">") for r in fit.to_dict()["estimates"])


def test_constraint_errors_name_the_line():
    with pytest.raises(ModelSpecificationError, match=r"line 3: constraint 'a == 2\*q' uses unknown label\(s\): 'q'"):
        fit_sem("visual =~ x1 + a*x2 + b*x3\ntextual =~ x4 + x5 + x6\na == 2*q", HS)
    with pytest.raises(ModelSpecificationError, match="line 2: constraint '1 > 0.5' has no labelled parameter"):
        fit_sem("visual =~ x1 + a*x2 + b*x3\n1 > 0.5", HS)
