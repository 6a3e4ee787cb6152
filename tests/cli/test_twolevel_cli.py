"""`resilience fit DATA --model FILE --cluster COL [--estimator ML|MLR] --json` for two-level
models (issue 17's contract), and the clear refusals of what is not supported."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from analysis.errors import AnalysisError, ModelSyntaxError
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
DATA = FIX / "data" / "twolevel.csv"
runner = CliRunner()
CFA = "level: 1\n  fw =~ y1 + y2 + y3 + y4\nlevel: 2\n  fb =~ y1 + y2 + y3 + y4\n"


def _lavaan(name):
    return json.loads((FIX / "lavaan" / f"twolevel_{name}.json").read_text())


@pytest.mark.parametrize("name,estimator", [("cfa_mlr", "MLR"), ("path", "ML")])
def test_contract_json(tmp_path, name, estimator):
    rec = _lavaan(name)
    model = tmp_path / "model.lav"
    model.write_text(rec["call"]["model"])
    res = runner.invoke(app, ["fit", str(DATA), "--model", str(model), "--cluster", "community",
                              "--estimator", estimator, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    for key in ("chisq", "df", "cfi", "tli", "rmsea", "srmr_within", "srmr_between", "logl", "aic", "bic"):
        assert doc["fit"][key] == pytest.approx(rec["fit"][key], rel=1e-3, abs=1e-9), key
    ref = pd.DataFrame(rec["estimates"])
    ours = pd.DataFrame(doc["estimates"])
    assert set(ours["level"]) == {1, 2} and set(ours["group"]) == {1}
    both = ref.merge(ours.assign(block=ours["level"]), on=["lhs", "op", "rhs", "block"])
    assert len(both) == len(ref)
    np.testing.assert_allclose(both["est_y"], both["est_x"], atol=1e-4)


def test_cli_without_cluster_says_what_to_do(tmp_path):
    model = tmp_path / "cfa.lav"
    model.write_text(CFA)
    res = runner.invoke(app, ["fit", str(DATA), "--model", str(model), "--json"])
    assert res.exit_code == 2   # a missing option: wrong use of the command
    assert "--cluster" in res.stdout and "Traceback" not in res.output


def _data():
    return pd.read_csv(DATA)


def test_unknown_cluster_column_is_named():
    with pytest.raises(AnalysisError, match="cluster column 'comunity' not found.*community"):
        fit_sem(CFA, _data(), cluster="comunity")


def test_between_variable_must_be_constant_within_clusters():
    d = _data()
    d.loc[d.index[0], "w"] += 1.0
    model = "level: 1\n z1 ~ x1\nlevel: 2\n z1 ~ w\n"
    with pytest.raises(AnalysisError, match="'w' is not constant within cluster"):
        fit_sem(model, d, cluster="community")


def test_random_slopes_refused_at_their_line():
    with pytest.raises(ModelSyntaxError, match="random slopes") as err:
        fit_sem("level: 1\n s | z1 ~ x1\nlevel: 2\n z1 ~ w\n", _data(), cluster="community")
    assert err.value.line == 2


@pytest.mark.parametrize("kwargs,match", [
    ({"missing": "pairwise"}, "must be 'listwise' or 'fiml' for a two-level"),
    ({"group": "nowhere"}, "column 'nowhere' not found"),
    ({"estimator": "WLSMV"}, "must be ML or MLR"),
    ({"ordered": ["y1"]}, "ordered \\(categorical\\) items are not available in two-level"),
    ({"bootstrap": 100}, "bootstrap is not available for two-level models"),
])
def test_unsupported_options_refused_clearly(kwargs, match):
    with pytest.raises(AnalysisError, match=match):
        fit_sem(CFA, _data(), cluster="community", **kwargs)


def test_one_level_block_only_is_refused():
    with pytest.raises(AnalysisError, match="exactly two 'level:' blocks"):
        fit_sem("level: 1\n fw =~ y1 + y2 + y3\n", _data(), cluster="community")


def test_statement_before_first_level_is_refused():
    with pytest.raises(ModelSyntaxError, match="before the first 'level:'"):
        fit_sem("fw =~ y1 + y2\nlevel: 1\n fw =~ y3\nlevel: 2\n fb =~ y1 + y2\n", _data(),
                cluster="community")


def test_boundary_between_variance_warns_with_advice():
    # an item with no between-cluster variation (true ICC 0): its level-2 variance goes to the
    # boundary (-0.0087 here), as in real surveys with few communities
    d = _data()
    d["noise"] = np.random.default_rng(3).normal(size=len(d))
    model = "level: 1\n fw =~ y1 + y2 + y3 + noise\nlevel: 2\n fb =~ y1 + y2 + y3\n noise ~~ noise\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(model, d, cluster="community")
    msgs = [w["message"] for w in fit.warnings if w.get("category") == "BetweenBoundaryWarning"]
    assert any(m.startswith("ICC below .01 for noise") for m in msgs)
    noise = [m for m in msgs if "between-level variance of 'noise'" in m]
    assert noise and "noise ~~ 0*noise" in noise[0]
    assert fit.twolevel.icc["noise"] < 0.02


def test_group_blocks_refused_at_their_line():
    text = "group: A\nlevel: 1\n fw =~ y1 + y2\nlevel: 2\n fb =~ y1 + y2\n"
    with pytest.raises(ModelSyntaxError, match="'group:' / 'class:' blocks are not supported") as err:
        fit_sem(text, _data(), cluster="community")
    assert err.value.line == 1


def test_rows_without_a_cluster_are_dropped_and_named():
    d = _data()
    d.loc[[0, 4], "community"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(CFA, d, cluster="community")
    assert fit.nobs == (961,)
    assert any("2 row(s) have no value in the cluster column 'community'" in w["message"]
               and "data rows 1, 5" in w["message"] for w in fit.warnings)


def test_vanishing_between_factor_is_named():
    # the likelihood's ridge: a between factor with variance -> 0 and loadings -> infinity
    from analysis.sem.twolevel import _vanishing_factors

    rows = [("fb", "=~", "y1", 1.0, 0), ("fb", "=~", "y2", 88.9, 1), ("fb", "~~", "fb", 1.3e-4, 2)]
    pt = pd.DataFrame(rows, columns=["lhs", "op", "rhs", "est", "free"]).assign(level=2, group=1)
    msgs = [r["message"] for r in _vanishing_factors(pt)]
    assert len(msgs) == 1 and "'fb' has (almost) no variance" in msgs[0]
    pt.loc[2, "est"] = 0.25
    assert _vanishing_factors(pt) == []
