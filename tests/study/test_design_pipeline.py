"""A study with ``design:`` in study.yaml: the design columns survive the import, every model is
fitted with the weights and clusters (MLR), and the bundle carries the sample-design section."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import make_study  # noqa: E402


@pytest.fixture(scope="module")
def design_run(tmp_path_factory):
    from analysis.study.demo import simulate_community_survey
    from analysis.study.pipeline import run_study
    from instruments import load_instrument

    root = tmp_path_factory.mktemp("design") / "s"
    frame = simulate_community_survey(400, seed=11, instrument=load_instrument("crs"))
    rng = np.random.default_rng(1)
    frame["area"] = rng.integers(1, 31, size=len(frame))
    frame["wt"] = np.round(np.exp(rng.normal(scale=0.4, size=len(frame))), 3)
    (root / "data" / "raw").mkdir(parents=True)
    frame.to_csv(root / "data" / "raw" / "survey.csv", index=False)
    path = make_study(root, data_file="data/raw/survey.csv", replications=5)
    path.write_text(path.read_text().replace("    format: kobo", "    format: csv")
                    + "design:\n  weights: wt\n  cluster: area\n")
    run = run_study(path, progress=False, report=False)
    return run, json.loads(Path(run.results_json).read_text())


def test_every_design_step_succeeds(design_run):
    run, res = design_run
    status = {s.name: s.status for s in run.steps}
    assert status["design"] == "ok" and status["model:figure1"] == "ok" and status["cfa"] == "ok"
    d = res["design"]
    assert d["design"]["weights"] == "wt" and d["n_psu"] == 30
    assert 0 < d["weights"]["kish_n_eff"] < d["n"]
    assert {r["variable"] for r in d["estimates"]} >= {"TRUST", "NAVIG", "LANG"}


def test_models_are_fitted_with_the_design(design_run):
    _, res = design_run
    fit = res["models"]["figure1"]
    # study.yaml says ML; with weights and clusters lavaan (and the suite) fit MLR: scaled test present
    assert fit["model"]["estimator"] == "MLR"
    assert fit["fit"]["chisq.scaled"] > 0 and "cfi.robust" in fit["fit"]


def test_the_bootstrap_resamples_psus(design_run):
    run, res = design_run
    assert {s.name: s.status for s in run.steps}["bootstrap:figure1"] == "ok"
    info = res["bootstrap"]["bootstrap"]
    assert info["method"] == "rao-wu" and info["ok"] == info["R"] == 5
    assert all(e["se"] > 0 and e["ci.lower"] < e["est"] < e["ci.upper"] for e in res["bootstrap"]["effects"])


def test_demo_with_a_design_writes_census_calibrated_weights(tmp_path):
    import pandas as pd

    from analysis.sem.data import read_table
    from analysis.study.demo import DEMO_CENSUS, create_demo_study
    from analysis.study.spec import load_study

    study = load_study(create_demo_study(tmp_path / "demo", n=300, design=True))
    assert (study.design.weights, study.design.cluster, study.design.strata) == ("weight", "NBHD", "AREA")
    data = read_table(tmp_path / "demo" / "data" / "raw" / "community_survey_kobo.csv")
    assert len(data) == 300
    share = data.groupby("ETHGROUP")["weight"].sum() / data["weight"].sum()
    for var, cat, p in DEMO_CENSUS:
        if var == "ETHGROUP":
            assert share[cat] == pytest.approx(p, abs=1e-6)
    # the minorities are oversampled: their unweighted shares exceed the census ones
    assert (data["ETHGROUP"] != "White").mean() > 0.4
    # neighbourhoods (clusters) nest in areas (strata)
    assert data.groupby("NBHD")["S_ABOUT/AREA" if "S_ABOUT/AREA" in data else "AREA"].nunique().max() == 1
    assert pd.Series(data["NBHD"]).nunique() >= 30


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_demo_with_a_design_runs_every_design_step(tmp_path):
    from analysis.study.demo import create_demo_study
    from analysis.study.pipeline import run_study

    run = run_study(create_demo_study(tmp_path / "demo", n=500, design=True, replications=10, groups=("LANG",)),
                    progress=False, report=False)
    status = {s.name: s.status for s in run.steps}
    for step in ("design", "icc", "cfa", "model:figure1", "bootstrap:figure1", "sensitivity:figure1"):
        assert status.get(step, "ok") == "ok", (step, status.get(step))
