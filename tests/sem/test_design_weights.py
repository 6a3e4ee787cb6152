"""Calibration weights against survey 4.1 (rake, calibrate(calfun = "linear"), postStratify)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from analysis.design.calibrate import calibrate, read_targets, weight_summary
from analysis.errors import DataError, OptionError

FIX = Path(__file__).parents[1] / "fixtures" / "design"
DATA = pd.read_csv(FIX / "design_sample.csv")
TARGETS = read_targets(FIX / "targets.csv")
REF = pd.read_csv(FIX / "calibrated_weights.csv")


@pytest.mark.parametrize("column, kwargs", [
    ("rake", {"method": "rake"}),
    ("rake_base", {"method": "rake", "base_weight": "w"}),
    ("linear", {"method": "linear"}),
    ("linear_base", {"method": "linear", "base_weight": "w"}),
])
def test_weights_match_survey(column, kwargs):
    res = calibrate(DATA, TARGETS, **kwargs)
    np.testing.assert_allclose(res.weights, REF[column], rtol=1e-6, atol=1e-6)
    assert res.converged
    total = DATA["w"].sum() if "base_weight" in kwargs else len(DATA)
    assert res.weights.sum() == pytest.approx(total, rel=1e-10)
    # every margin reached
    np.testing.assert_allclose(res.margins["achieved"], res.margins["target"], atol=1e-9)


def test_poststratify_matches_survey():
    res = calibrate(DATA, TARGETS[TARGETS["variable"] == "eth"], method="poststratify", base_weight="w")
    np.testing.assert_allclose(res.weights, REF["poststratify_base"], rtol=1e-6)
    with pytest.raises(OptionError, match="poststratify takes one margin"):
        calibrate(DATA, TARGETS, method="poststratify")


def test_summary_kish_effective_n():
    ref = json.loads((FIX / "calibration.json").read_text())
    s = weight_summary(REF["rake_base"])
    assert s["kish_n_eff"] == pytest.approx(ref["kish_n_rake_base"], rel=1e-9)
    assert s["deff_weighting"] == pytest.approx(1 + s["cv"] ** 2, rel=1e-12)


def test_trimming_then_raking_keeps_bounds_and_margins():
    res = calibrate(DATA, TARGETS, base_weight="w", trim=(0.5, 2.0))
    w = res.weights
    assert res.trimmed > 0
    assert w.min() >= 0.5 * w.mean() * (1 - 1e-6) and w.max() <= 2.0 * w.mean() * (1 + 1e-6)
    np.testing.assert_allclose(res.margins["achieved"], res.margins["target"], atol=1e-8)


def test_by_group_calibrates_within_each_group():
    res = calibrate(DATA, TARGETS[TARGETS["variable"] != "sex"], by="sex")
    for sex, part in DATA.groupby("sex"):
        w = res.weights[part.index]
        assert w.sum() == pytest.approx(len(part), rel=1e-10)
        share = pd.Series(w).groupby(part["eth"].to_numpy()).sum() / w.sum()
        assert share["B"] == pytest.approx(0.18, abs=1e-9)


def test_cross_classified_margin():
    cells = DATA["eth"] + ":" + DATA["sex"]
    props = cells.value_counts(normalize=True)
    t = pd.DataFrame({"variable": "eth:sex", "category": props.index, "proportion": 1 / len(props)})
    res = calibrate(DATA, t, method="poststratify")
    got = pd.Series(res.weights).groupby(cells.to_numpy()).sum() / len(DATA)
    np.testing.assert_allclose(got.to_numpy(), 1 / len(props), atol=1e-12)


@pytest.mark.parametrize("change, message", [
    (lambda t: pd.concat([t, pd.DataFrame([{"variable": "eth", "category": "D", "proportion": 0.0}])])
     .assign(proportion=lambda x: np.where((x.variable == "eth") & (x.category == "A"), 0.52, x.proportion))
     .assign(proportion=lambda x: np.where((x.variable == "eth") & (x.category == "D"), 0.10, x.proportion)),
     "eth = 'D' has a target but no respondent"),
    (lambda t: t[~((t.variable == "eth") & (t.category == "C"))]
     .assign(proportion=lambda x: np.where((x.variable == "eth") & (x.category == "A"), 0.82, x.proportion)),
     "eth = 'C' occurs in the sample"),
    (lambda t: t.assign(proportion=np.where(t.category == "A", 0.7, t.proportion)), "sum to 1.08"),
    (lambda t: t.assign(variable=t.variable.replace("age", "agegroup")), "'agegroup' is not a column"),
])
def test_bad_targets_are_named(change, message):
    with pytest.raises(DataError, match=message):
        calibrate(DATA, change(TARGETS))


def test_cli_weights_writes_the_column(tmp_path):
    out = tmp_path / "weighted.csv"
    res = CliRunner().invoke(app, ["weights", str(FIX / "design_sample.csv"), "--targets", str(FIX / "targets.csv"),
                                   "--method", "rake", "--base-weight", "w", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["converged"] and doc["weights"]["kish_n_eff"] > 0
    written = pd.read_csv(out)
    np.testing.assert_allclose(written["weight"], REF["rake_base"], rtol=1e-6)
    assert list(written.columns[:-1]) == list(DATA.columns)


def test_cli_weights_bad_trim_is_a_message(tmp_path):
    res = CliRunner().invoke(app, ["weights", str(FIX / "design_sample.csv"), "--targets", str(FIX / "targets.csv"),
                                   "--trim", "3", "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "--trim takes LO,HI" in res.output and "Traceback" not in res.output
