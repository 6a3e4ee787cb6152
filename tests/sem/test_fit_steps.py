"""fit_sem's steps (analysis.sem.steps) and their typed outputs, against lavaan's fixtures.

Each step is called on its own, in lavaan's order, on Holzinger-Swineford (and bfi for
WLSMV); the numbers come from tests/fixtures/lavaan/*.json (written by
tests/fixtures/make_fixtures.R with lavaan 0.6-14).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import OptionError
from analysis.sem import steps
from analysis.sem.estimators.inference import Inference
from analysis.sem.fit import fit_sem
from analysis.sem.syntax import parse_model

FIX = Path(__file__).parents[1] / "fixtures"
HS = pd.read_csv(FIX / "data" / "HolzingerSwineford1939.csv")


def lavaan(name: str) -> dict:
    return json.loads((FIX / "lavaan" / f"{name}.json").read_text())


def spec_of(rec: dict) -> steps.ModelInput:
    text = rec["call"]["model"]
    return steps.read_model(parse_model(text), text)


def lavaan_inference(rec: dict) -> tuple[str, str, str]:
    used = rec["options_used"]
    return used["se"], used["test"], used["information"][0]


def cov_of(m: dict) -> pd.DataFrame:
    values = np.array(m["values"], dtype=float).reshape(len(m["rownames"]), len(m["colnames"]))
    return pd.DataFrame(values, index=m["rownames"], columns=m["colnames"])


# ------------------------------------------------------------------ options

@pytest.mark.parametrize("name, kwargs", [
    ("hs_cfa_ml", {}),
    ("hs_cfa_mlr", {"estimator": "MLR"}),
    ("hs_cfa_mlm", {"estimator": "MLM"}),
    ("bfi_wlsmv", {"estimator": "WLSMV"}),
])
def test_options_step_resolves_se_test_and_information_as_lavaan(name, kwargs):
    rec = lavaan(name)
    spec = spec_of(rec)
    ordered = rec["call"]["options"].get("ordered") if isinstance(rec["call"]["options"], dict) else None
    options = steps.resolve_options(spec, ordered=ordered, **kwargs)
    assert isinstance(options, steps.FitOptions) and isinstance(options.inference, Inference)
    assert (options.se, options.test, options.information) == lavaan_inference(rec)
    assert options.missing == rec["options_used"]["missing"]
    assert options.parameterization == rec["options_used"]["parameterization"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.estimator = "ML"   # one resolution, read by every later step


def test_options_step_resolves_lavaans_defaults_from_the_model():
    # a threshold line makes its item ordered (lavaan), and ordered items make WLSMV the default
    text = "f =~ A1 + A2 + A3\nA1 | t1 + t2 + t3 + t4 + t5"
    options = steps.resolve_options(steps.read_model(parse_model(text), text))
    assert options.ordered == ("A1",) and options.estimator == "WLSMV"
    assert (options.se, options.test) == ("robust.sem", "scaled.shifted")
    everything = steps.resolve_options(steps.read_model(parse_model(text), text), ordered=True)
    assert everything.ordered == ("A1", "A2", "A3")
    assert steps.resolve_options(spec_of(lavaan("hs_cfa_ml")), se="boot").se == "bootstrap"


@pytest.mark.parametrize("kwargs, match", [
    ({"estimator": "foo"}, "The 'estimator' parameter of fit_sem must be one of"),
    ({"control": {"iter.max": 10}}, "accepts max_iter and gtol"),
    ({"estimator": "MLR", "se": "bootstrap"}, "use ML estimator for bootstrap"),
])
def test_options_step_refuses_what_lavaan_refuses(kwargs, match):
    with pytest.raises(OptionError, match=match):
        steps.resolve_options(spec_of(lavaan("hs_cfa_ml")), **kwargs)


# ------------------------------------------------------------------ data, partable, sample statistics

@pytest.mark.parametrize("name, kwargs", [
    ("hs_cfa_ml", {}),
    ("hs_cfa_ml_meanstructure", {"meanstructure": True}),
    ("hs_cfa_ml_stdlv", {"std_lv": True}),
])
def test_partable_step_gives_lavaans_table(name, kwargs):
    rec = lavaan(name)
    spec = spec_of(rec)
    options = steps.resolve_options(spec, **kwargs)
    fdata = steps.check_data(spec, options, HS)
    table = steps.make_partable(spec, options, fdata)
    assert isinstance(table, steps.ModelTable)
    lav = pd.DataFrame(rec["partable"])
    assert len(table.table) == len(lav)                       # HS: 24 rows, 36 with the means
    assert table.npar == rec["npar"] and table.df == rec["fit"]["df"]
    assert table.meanstructure == rec["options_used"]["meanstructure"]
    ours = sorted(zip(table.table["lhs"], table.table["op"], table.table["rhs"], table.table["free"] > 0))
    assert ours == sorted(zip(lav["lhs"], lav["op"], lav["rhs"], lav["free"] > 0))


def test_data_and_sample_statistics_steps_match_lavaans_sample_moments():
    rec = lavaan("hs_cfa_ml_meanstructure")
    spec = spec_of(rec)
    options = steps.resolve_options(spec, meanstructure=True)
    fdata = steps.check_data(spec, options, HS)
    assert fdata.check.missing["n_used"] == rec["nobs"] and fdata.n_groups == 1 and fdata.records == ()
    stats = steps.sample_statistics(steps.make_partable(spec, options, fdata), fdata)
    lav = cov_of(rec["sampstat"]["cov"])
    ours = pd.DataFrame(stats.cov[0], index=stats.ov_names, columns=stats.ov_names).loc[lav.index, lav.columns]
    np.testing.assert_allclose(ours.to_numpy(), lav.to_numpy(), atol=1e-6)    # divisor N, as lavaan
    mean = pd.Series(rec["sampstat"]["mean"])
    np.testing.assert_allclose(pd.Series(stats.mean[0], index=stats.ov_names)[mean.index], mean, atol=1e-6)


# ------------------------------------------------------------------ estimation, vcov, test, table

def run_steps(rec: dict, data: pd.DataFrame, **kwargs):
    spec = spec_of(rec)
    options = steps.resolve_options(spec, **kwargs)
    fdata = steps.check_data(spec, options, data)
    table = steps.make_partable(spec, options, fdata)
    stats = steps.sample_statistics(table, fdata)
    steps.set_start(table, stats, options)
    compiled = steps.compile_model(table, stats, options, fdata)
    estimation = steps.estimate(compiled, table, options)
    vcov = steps.compute_vcov(compiled, estimation, options)
    test = steps.compute_test(compiled, estimation, table, options)
    return compiled, estimation, vcov, test


@pytest.mark.parametrize("name, kwargs", [("hs_cfa_ml", {}), ("hs_cfa_mlr", {"estimator": "MLR"})])
def test_estimation_vcov_and_test_steps_match_lavaan(name, kwargs):
    rec = lavaan(name)
    compiled, estimation, vcov, test = run_steps(rec, HS, **kwargs)
    assert estimation.optimum.converged and estimation.constraints is None and estimation.records == ()
    assert estimation.x.shape == (rec["npar"],) and vcov.matrix.shape == (rec["npar"], rec["npar"])
    params = steps.fill_estimates(compiled, estimation, vcov)
    lav = pd.DataFrame(rec["estimates"])
    merged = params.merge(lav, on=["lhs", "op", "rhs"], suffixes=("", ".lavaan"))
    assert len(merged) == len(lav)
    np.testing.assert_allclose(merged["est"], merged["est.lavaan"], atol=1e-4)
    np.testing.assert_allclose(merged["se"], merged["se.lavaan"], atol=1e-4)
    assert test.values["chisq"] == pytest.approx(rec["fit"]["chisq"], abs=1e-3)
    assert [t.method for t in test.statistics] == (["standard"] if "chisq.scaled" not in rec["fit"]
                                                   else ["standard", "yuan.bentler.mplus"])
    if len(test.statistics) > 1:
        assert test.statistics[1].stat == pytest.approx(rec["fit"]["chisq.scaled"], abs=1e-3)


def test_defined_parameters_come_with_the_estimates_and_the_standardized_solution_reads_them():
    # lavaan: := values and their delta-method SEs are stored with the estimates; the
    # standardized solution re-evaluates them on the standardized values of their labels
    text = "visual =~ x1 + a*x2 + b*x3\ntextual =~ x4 + x5 + x6\nab := a*b"
    spec = steps.read_model(parse_model(text), text)
    options = steps.resolve_options(spec)
    fdata = steps.check_data(spec, options, HS)
    table = steps.make_partable(spec, options, fdata)
    stats = steps.sample_statistics(table, fdata)
    steps.set_start(table, stats, options)
    compiled = steps.compile_model(table, stats, options, fdata)
    estimation = steps.estimate(compiled, table, options)
    vcov = steps.compute_vcov(compiled, estimation, options)
    params = steps.fill_estimates(compiled, estimation, vcov)
    est = params.set_index(["lhs", "op", "rhs"])["est"]
    ab = params[params["op"] == ":="].iloc[0]
    assert ab["est"] == pytest.approx(est[("visual", "=~", "x2")] * est[("visual", "=~", "x3")], rel=1e-12)
    assert ab["se"] > 0 and params["std.all"].isna().all()     # not standardized yet
    solution = steps.standardize_solution(params, compiled, estimation, vcov)
    std = solution.params.set_index(["lhs", "op", "rhs"])["std.all"]
    row = solution.params[solution.params["op"] == ":="].iloc[0]
    assert row["std.all"] == pytest.approx(std[("visual", "=~", "x2")] * std[("visual", "=~", "x3")], rel=1e-10)
    assert row["est"] == ab["est"]
    # the steps' chain is fit_sem's
    fit = fit_sem(text, HS)
    pd.testing.assert_series_equal(fit.params["std.all"], solution.params["std.all"])


# ------------------------------------------------------------------ the result says what it used

@pytest.mark.parametrize("name, kwargs", [
    ("hs_cfa_ml", {}),
    ("hs_cfa_mlr", {"estimator": "MLR"}),
    ("hs_cfa_mlm", {"estimator": "MLM"}),
])
def test_fit_result_names_the_se_and_test_used(name, kwargs):
    rec = lavaan(name)
    fit = fit_sem(rec["call"]["model"], HS, **kwargs)
    assert isinstance(fit.inference, Inference)
    assert (fit.inference.se, fit.inference.test, fit.inference.information) == lavaan_inference(rec)
    # the JSON contract keeps them in model.options too
    options = fit.to_dict()["model"]["options"]
    assert (options["se"], options["test"], options["information"]) == lavaan_inference(rec)
    assert fit.optimization.converged and fit.optimization.iterations == fit.iterations
    assert fit.data_check.missing["n_used"] == rec["nobs"] and fit.bootstrap is None
    assert fit.estimator_object is not None and not hasattr(fit, "extras")


def test_wlsmv_result_names_its_se_and_test():
    bfi = pd.read_csv(FIX / "data" / "bfi.csv")
    items = ["A1", "A2", "A3", "A4", "A5", "C1"]
    fit = fit_sem("f =~ " + " + ".join(items), bfi, ordered=items)
    lav = lavaan("bfi_wlsmv")   # lavaan's WLSMV: robust.sem SEs, scaled.shifted test, expected information
    assert (fit.inference.se, fit.inference.test, fit.inference.information) == lavaan_inference(lav)
    assert [t.method for t in fit.tests] == ["standard", "scaled.shifted"]


def test_bootstrap_result_says_bootstrap_and_keeps_its_draws():
    fit = fit_sem(lavaan("hs_cfa_ml")["call"]["model"], HS, se="bootstrap", bootstrap=10, seed=1)
    assert fit.inference.se == "bootstrap" and fit.options["se"] == "bootstrap"
    assert fit.bootstrap.n_boot == 10 and len(fit.bootstrap.draws) == fit.bootstrap.n_ok
    np.testing.assert_allclose(fit.params["se"], fit.bootstrap.params["se"], equal_nan=True)


# ------------------------------------------------------------------ the model read once

def test_a_model_read_once_fits_as_its_text_and_can_be_fitted_again():
    text = lavaan("hs_cfa_ml")["call"]["model"]
    spec = steps.read_model(parse_model(text), text)
    once, again = fit_sem(spec, HS), fit_sem(spec, HS, estimator="MLR")
    pd.testing.assert_frame_equal(once.params, fit_sem(text, HS).params)
    assert once.syntax == text and again.inference.se == "robust.huber.white"
    table = steps.read_model(once.params.copy())         # an edited fit.params, fitted twice
    first, second = fit_sem(table, HS), fit_sem(table, HS)
    assert first.params is not second.params and table.given_table["est"].notna().all()
    pd.testing.assert_frame_equal(first.params, second.params)


def test_the_command_line_parses_the_model_once(monkeypatch):
    from typer.testing import CliRunner

    import analysis.sem.fit
    import analysis.sem.partable
    import analysis.sem.steps
    import analysis.sem.syntax
    from analysis.cli.main import app

    calls = []
    real = analysis.sem.syntax.parse_model

    def counted(*args, **kwargs):
        calls.append(args[0] if args else kwargs)
        return real(*args, **kwargs)

    for module in (analysis.sem.syntax, analysis.sem.partable, analysis.sem.fit, analysis.sem.steps):
        monkeypatch.setattr(module, "parse_model", counted)
    result = CliRunner().invoke(app, ["fit", str(FIX / "data" / "HolzingerSwineford1939.csv"), "-m", "hs", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fit"]["chisq"] == pytest.approx(lavaan("hs_cfa_ml")["fit"]["chisq"], abs=1e-3)
    assert len(calls) == 1
