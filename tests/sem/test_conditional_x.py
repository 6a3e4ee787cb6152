"""conditional.x = TRUE for WLSMV/ULSMV (lavaan's default for ordered items with observed covariates)
against lavaan 0.6-14: MIMIC, DIF, ULSMV, ordered + continuous indicators, two groups (free and
equal), binary items with std.lv, a path model of ordered outcomes, the theta parameterization,
missing="pairwise" (data: tests/fixtures/data/mimic_missing.csv).

Fixtures: tests/fixtures/make_issue15c.R (data: tests/fixtures/data/mimic.csv). Tolerances: estimates
and standardized values 1e-4, SEs 1e-3 relative, fit measures 1e-3 relative (NA where lavaan gives NA),
sample statistics (thresholds, slopes, residual correlations) and their Gamma 1e-6.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.errors import AnalysisError
from analysis.sem.polychoric import conditional_stats, ordinal_codes
from analysis.sem import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
REF = json.loads((FIX / "lavaan" / "issue15c_conditional_x.json").read_text())
CASES = REF["cases"]
MIMIC = "f =~ y1 + y2 + y3 + y4 + y5\nf ~ x1 + x2"
ITEMS = [f"y{i}" for i in range(1, 6)]
# lavaan stops short of the minimum here (see test_path_model_minimizes_lavaans_fit_function)
EXACT = [name for name in CASES if name != "path"]


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(FIX / "data" / "mimic.csv")


_FITS = {}


def _fit(name, data):
    if name not in _FITS:
        case = CASES[name]
        opts = dict(case["options"])
        if isinstance(opts.get("group_equal"), str):
            opts["group_equal"] = [opts["group_equal"]]
        if opts.get("missing") == "pairwise":
            # lavaan deletes the cases missing a covariate (fixed.x), and says so
            with pytest.warns(UserWarning, match="3 case.s. deleted because of missing values in exogenous"):
                fit = fit_sem(case["model"], pd.read_csv(FIX / "data" / "mimic_missing.csv"), **opts)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")        # lavaan's default: no warning any more
                fit = fit_sem(case["model"], data, **opts)
        nobs = case["nobs"] if isinstance(case["nobs"], list) else [case["nobs"]]
        assert list(fit.nobs) == nobs
        _FITS[name] = fit
    return _FITS[name]


def _key(df):
    group = df["group"] if "group" in df else pd.Series(1, index=df.index)
    return df["lhs"] + df["op"] + df["rhs"] + "." + group.astype(int).astype(str)


def _joined(fit, rows):
    ref = pd.DataFrame(rows)
    ours = fit.params.set_index(_key(fit.params))
    ref = ref.set_index(_key(ref))
    assert sorted(ref.index) == sorted(ours.index)
    return ours.loc[ref.index], ref


@pytest.mark.parametrize("name", EXACT)
def test_estimates_and_ses_match_lavaan(name, data):
    fit = _fit(name, data)
    assert fit.converged
    assert fit.options["conditional_x"] is True
    ours, ref = _joined(fit, CASES[name]["estimates"])
    # every row: thresholds, slopes, the delta-parameterization residual variances, scales, and the
    # covariates' (co)variances (lavaan keeps them with divisor N - 1 under conditional.x)
    assert np.max(np.abs(ours["est"].to_numpy(float) - ref["est"].to_numpy(float))) < 1e-4
    se, ref_se = ours["se"].to_numpy(float), ref["se"].to_numpy(float)
    ok = ref_se > 1e-3
    assert ok.sum() >= fit.model.n_free
    assert np.max(np.abs(se[ok] - ref_se[ok]) / ref_se[ok]) < 1e-3
    fixed = ref_se == 0
    assert np.all(np.nan_to_num(se[fixed]) == 0)
    for col in ("std.lv", "std.all"):
        assert np.max(np.abs(ours[col].to_numpy(float) - ref[col].to_numpy(float))) < 1e-4, col


@pytest.mark.parametrize("name", EXACT)
def test_fit_measures_match_lavaan(name, data):
    fit = _fit(name, data)
    checked = 0
    for key, want in CASES[name]["fit"].items():
        got = float(fit.fit_indices[key])
        if want is None:     # the robust CFI/TLI/RMSEA (lavaan has none with conditional.x), ULS p
            assert math.isnan(got), key
        else:
            assert math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-6), (key, got, want)
        checked += 1
    assert checked >= 60


@pytest.mark.parametrize("name", EXACT)
def test_standardized_solution_and_r2_match_lavaan(name, data):
    fit = _fit(name, data)
    ours, ref = _joined(fit, CASES[name]["std_all"])
    assert np.max(np.abs(ours["std.all"].to_numpy(float) - ref["est.std"].to_numpy(float))) < 1e-4
    se, ref_se = ours["std.all.se"].to_numpy(float), ref["se"].to_numpy(float)
    ok = np.nan_to_num(ref_se) > 1e-3
    assert np.max(np.abs(se[ok] - ref_se[ok]) / ref_se[ok]) < 1e-3
    r2 = CASES[name]["r2"]
    per_group = r2 if "group" in CASES[name]["options"] else {None: r2}
    for g, (label, values) in enumerate(per_group.items(), start=1):
        for lhs, want in values.items():
            got = fit.r2[(fit.r2["lhs"] == lhs) & (fit.r2["group"] == g)]["r2"]
            assert len(got) == 1 and abs(float(got.iloc[0]) - want) < 1e-4, (label, lhs)


@pytest.mark.parametrize("name,columns", [("mimic", ITEMS), ("mixed", ["y1", "y2", "y3", "c1", "c2"])])
def test_sample_statistics_and_gamma_match_lavaan(name, columns, data):
    """Stage 1 (probit / linear regressions on x), stage 2 (residual polychoric, polyserial and Pearson
    correlations) and Muthen's Gamma with x, in lavaan's order (WLS.obs, NACOV)."""
    ordered = np.array([c.startswith("y") for c in columns])
    codes, _ = ordinal_codes(data, [c for c, o in zip(columns, ordered) if o])
    frame = data[columns].copy()
    frame[codes.columns] = codes
    stats = conditional_stats(frame, ordered, data[["x1", "x2"]].to_numpy(float))
    want = np.array(CASES[name]["wls_obs"], float)
    assert stats.wls_obs.shape == want.shape
    assert np.max(np.abs(stats.wls_obs - want)) < 1e-6
    gamma = np.array(CASES[name]["nacov"], float).reshape(len(want), len(want))
    assert np.max(np.abs(stats.gamma - gamma)) < 1e-6 * np.max(np.abs(gamma))
    assert stats.slopes.shape == (len(columns), 2)


def test_path_model_minimizes_lavaans_fit_function(data):
    """An ordered y* predicting another: lavaan's delta parameterization sets its residual variance in
    one pass from the parameters, and its gradient leaves that dependence out, so nlminb stops short
    of the minimum. The suite minimizes the same function: lavaan's estimates reproduce lavaan's
    chi-square under the suite's objective, and the suite's minimum is lower and stationary."""
    fit = _fit("path", data)
    case = CASES["path"]
    est = fit.estimator_object
    ref = pd.DataFrame(case["estimates"]).set_index(_key(pd.DataFrame(case["estimates"])))
    free = fit.params[fit.params["free"] > 0]
    x_lavaan = np.zeros(fit.model.n_free)
    x_lavaan[free["free"].to_numpy(int) - 1] = ref.loc[_key(free), "est"].to_numpy(float)
    assert 2 * est.ntotal * est.objective(x_lavaan) == pytest.approx(case["fit"]["chisq"], rel=1e-6)
    assert fit.fit_indices["chisq"] < case["fit"]["chisq"]
    assert fit.fit_indices["chisq"] == pytest.approx(case["fit"]["chisq"], rel=5e-3)
    assert np.max(np.abs(est.gradient(fit.x))) < 1e-6
    assert fit.fit_indices["df"] == case["fit"]["df"]


def test_modification_indices_and_scaled_difference_test_match_lavaan(data):
    from analysis.sem.compare import compare
    from analysis.sem.modindices import modindices

    fit = _fit("mimic", data)
    ref = pd.DataFrame(REF["extra"]["modindices"])
    mi = modindices(fit)
    merged = mi.merge(ref, on=["lhs", "op", "rhs"], suffixes=("", "_lav"))
    assert len(merged) == len(ref) == len(mi)
    assert np.max(np.abs(merged["mi"] - merged["mi_lav"])) < 1e-3
    assert np.max(np.abs(merged["epc"] - merged["epc_lav"])) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restricted = fit_sem("f =~ y1 + y2 + y3 + y4 + y5\nf ~ x1 + 0*x2", data, ordered=ITEMS)
    row = compare(fit, restricted).table.iloc[1]
    lrt = REF["extra"]["lrt"]
    assert row["chisq.diff"] == pytest.approx(lrt["Chisq diff"], rel=1e-3)
    assert row["df.diff"] == lrt["Df diff"]


def test_conditional_x_false_is_the_joint_model_without_a_warning(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        joint = fit_sem(MIMIC, data, ordered=ITEMS, conditional_x=False)
    assert joint.options["conditional_x"] is False
    # the covariates are variables of the model: their polyserial correlations are statistics
    assert joint.fit_indices["baseline.df"] == 21
    assert joint.fit_indices["baseline.df"] != CASES["mimic"]["fit"]["baseline.df"]
    assert fit_sem(MIMIC, data, ordered=ITEMS, conditional_x=True).fit_indices["chisq"] == pytest.approx(
        CASES["mimic"]["fit"]["chisq"], rel=1e-6)


def test_lavaans_default_and_refusals(data):
    # nothing to condition on: conditional.x has no effect
    assert fit_sem("f =~ y1 + y2 + y3", data, ordered=["y1", "y2", "y3"],
                   conditional_x=True).options["conditional_x"] is False
    # lavaan: fixed.x = FALSE is not supported when conditional.x = TRUE (also its default here)
    with pytest.raises(AnalysisError, match="fixed.x = FALSE is not supported when conditional.x = TRUE"):
        fit_sem(MIMIC, data, ordered=ITEMS, fixed_x=False)
    with pytest.raises(AnalysisError, match="conditional_x=False"):
        fit_sem(MIMIC, data, ordered=ITEMS, fixed_x=False)
    # continuous ML: refused by name (the fixed.x joint model has the same estimates and chi-square)
    with pytest.raises(AnalysisError, match="conditional_x=True is implemented for ordered items"):
        fit_sem("f =~ c1 + c2 + x2\nf ~ x1", data, conditional_x=True)
    with pytest.raises(AnalysisError, match="The 'conditional_x' parameter of fit_sem must be"):
        fit_sem(MIMIC, data, ordered=ITEMS, conditional_x="yes")
    # collinear covariates: named, instead of a singular matrix deep in the probit regressions
    with pytest.raises(AnalysisError, match="the covariates x1, x2, x3 are collinear"):
        fit_sem(MIMIC + " + x3", data.assign(x3=2 * data["x2"]), ordered=ITEMS)


def test_cli_conditional_x_flag(data, tmp_path):
    from analysis.cli.main import app

    path = tmp_path / "mimic.csv"
    data.to_csv(path, index=False)
    runner = CliRunner()
    base = ["fit", str(path), "-m", MIMIC, "--ordered", ",".join(ITEMS), "--json"]
    default = json.loads(runner.invoke(app, base).stdout)
    assert default["model"]["options"]["conditional_x"] is True
    assert default["fit"]["chisq"] == pytest.approx(CASES["mimic"]["fit"]["chisq"], rel=1e-6)
    assert default["fit"]["cfi.robust"] is None and default["warnings"] == []
    joint = json.loads(runner.invoke(app, base + ["--no-conditional-x"]).stdout)
    assert joint["model"]["options"]["conditional_x"] is False
    assert joint["fit"]["df"] == CASES["mimic"]["fit"]["df"]
    assert joint["fit"]["chisq"] != pytest.approx(default["fit"]["chisq"], rel=1e-3)
