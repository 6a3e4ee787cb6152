"""parameterization="theta" for ordered items against lavaan 0.6.14, and strict invariance of ordinal
items in the Wu & Estabrook ladder against semTools 0.5.6 measEq.syntax(parameterization = "theta").

Fixtures: tests/fixtures/make_issue15b.R. Tolerances: estimates 1e-4, SEs and std.all 1e-3 (relative for
SEs), fit measures 1e-3 relative.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.errors import AnalysisError
from analysis.psychometrics.invariance import invariance_ladder
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
THETA = json.loads((FIX / "lavaan" / "issue15b_theta.json").read_text())["cases"]
LADDER = json.loads((FIX / "lavaan" / "issue15b_theta_ladder.json").read_text())
NEU = [f"N{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def bfi():
    return pd.read_csv(FIX / "data" / "bfi.csv")


def _options(case):
    opts = dict(case["options"])
    if isinstance(opts.get("group_equal"), str):
        opts["group_equal"] = [opts["group_equal"]] if opts["group_equal"] else []
    return opts


@pytest.mark.parametrize("name", ["single", "configural", "metric", "scalar", "strict"])
def test_theta_matches_lavaan(name, bfi):
    case = THETA[name]
    data = pd.read_csv(FIX / "data" / "bfi_complete500.csv") if name == "single" else bfi
    fit = fit_sem(case["model"], data, parameterization="theta", **_options(case))
    ours = fit.params[~fit.params["op"].isin(["==", "<", ">"])].reset_index(drop=True)
    ref = pd.DataFrame(case["estimates"])
    assert list(ours["lhs"] + ours["op"] + ours["rhs"]) == list(ref["lhs"] + ref["op"] + ref["rhs"])
    # every row, the residual variances (1 or free) and the scales 1/sd(y*) (~*~) included
    assert np.max(np.abs(ours["est"] - ref["est"])) < 1e-4
    se, ref_se = ours["se"].to_numpy(float), ref["se"].to_numpy(float)
    ok = ref_se > 1e-3
    assert np.max(np.abs(se[ok] - ref_se[ok]) / ref_se[ok]) < 1e-3
    assert np.max(np.abs(ours["std.all"] - ref["std.all"])) < 1e-3
    for key, value in case["fit"].items():
        assert math.isclose(float(fit.fit_indices[key]), value, rel_tol=1e-3, abs_tol=1e-6), key
    assert fit.options["parameterization"] == "theta"


def test_theta_and_delta_are_the_same_model(bfi):
    """The two parameterizations are reparameterizations: the same chi-square and standardized loadings."""
    model = "NEU =~ N1 + N2 + N3 + N4 + N5"
    theta = fit_sem(model, bfi, ordered=NEU, parameterization="theta")
    delta = fit_sem(model, bfi, ordered=NEU)
    assert theta.fit_indices["chisq"] == pytest.approx(delta.fit_indices["chisq"], rel=1e-6)
    load = theta.params["op"] == "=~"
    assert np.allclose(theta.params.loc[load, "std.all"], delta.params.loc[load, "std.all"], atol=1e-6)


def test_ordinal_ladder_with_strict_under_theta_matches_semtools(bfi):
    res = invariance_ladder(LADDER["model"], bfi, group="gender", estimator="WLSMV", ordered=NEU,
                            parameterization="theta")
    steps = res.steps.set_index("name")
    assert list(steps.index) == ["configural", "thresholds", "metric", "scalar", "strict"]
    for name, ref in LADDER["steps"].items():
        for key, value in ref.items():
            if key in steps.columns:
                assert math.isclose(float(steps.loc[name, key]), value, rel_tol=1e-3, abs_tol=1e-6), (name, key)
    strict = res.comparisons.set_index("to").loc["strict"]
    assert strict["df.diff"] == 5          # the five residual variances of group 2


def test_strict_ordinal_needs_theta(bfi):
    with pytest.raises(AnalysisError, match="parameterization='theta'"):
        invariance_ladder(LADDER["model"], bfi, group="gender", estimator="WLSMV", ordered=NEU,
                          steps=["scalar", "strict"])


def test_cli_parameterization_theta(tmp_path):
    from analysis.cli.main import app

    model = tmp_path / "a.lav"
    model.write_text(THETA["single"]["model"])
    data = str(FIX / "data" / "bfi_complete500.csv")
    res = CliRunner().invoke(app, ["fit", data, "-m", str(model), "--ordered", "A1,A2,A3,A4,A5",
                                   "--parameterization", "theta", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["fit"]["chisq"] == pytest.approx(THETA["single"]["fit"]["chisq"], rel=1e-4)
    res = CliRunner().invoke(app, ["fit", data, "-m", str(model), "--ordered", "all", "--parameterization", "x"])
    assert res.exit_code == 2 and "must be one of delta, theta" in res.output   # a bad option value


def test_cli_invariance_theta_strict(tmp_path):
    from analysis.cli.main import app

    model = tmp_path / "neu.lav"
    model.write_text(LADDER["model"])
    res = CliRunner().invoke(app, ["invariance", str(FIX / "data" / "bfi.csv"), "-m", str(model), "-g", "gender",
                                   "-e", "WLSMV", "--ordered", "all", "--parameterization", "theta",
                                   "--steps", "scalar,strict", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    strict = next(s for s in doc["steps"] if s["name"] == "strict")
    assert strict["chisq"] == pytest.approx(LADDER["steps"]["strict"]["chisq"], rel=1e-4)
    assert strict["df"] == LADDER["steps"]["strict"]["df"]
