"""`resilience fit --weights/--cluster/--strata`, `resilience weights` and `resilience describe`
against the R fixtures of tests/fixtures/make_design.R (the contract of issue 16)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

FIX = Path(__file__).parents[1] / "fixtures" / "design"
runner = CliRunner()


def _json(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def hs_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "hs.lav"
    path.write_text("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n")
    return path


@pytest.mark.parametrize("case, flags", [
    ("cfa_weights_cluster", ["--weights", "w", "--cluster", "psu"]),
    ("cfa_weights", ["--weights", "w", "--estimator", "MLR"]),
])
def test_fit_json_with_weights_matches_lavaan(hs_model, case, flags):
    ref = json.loads((FIX / f"lavaan_{case}.json").read_text())
    doc = _json(["fit", str(FIX / "design_sample.csv"), "--model", str(hs_model), *flags, "--json"])
    for key in ("chisq", "chisq.scaled", "cfi.robust", "tli.robust", "rmsea.robust", "srmr", "logl"):
        assert doc["fit"][key] == pytest.approx(ref["fit"][key], rel=1e-3, abs=1e-6), key
    ours = pd.DataFrame(doc["estimates"])
    lav = pd.DataFrame(ref["estimates"])
    m = lav.merge(ours, on=["lhs", "op", "rhs"], suffixes=("_lav", ""))
    assert len(m) == len(lav)
    np.testing.assert_allclose(m["est"], m["est_lav"], atol=1e-4)
    free = m["se_lav"] > 0
    np.testing.assert_allclose(m.loc[free, "se"], m.loc[free, "se_lav"], rtol=1e-3)


def test_fit_fiml_with_weights_and_clusters(tmp_path):
    ref = json.loads((FIX / "lavaan_path_fiml_weights_cluster.json").read_text())
    model = tmp_path / "path.lav"
    model.write_text(ref["call"]["model"])
    doc = _json(["fit", str(FIX / "design_sample_missing.csv"), "--model", str(model), "--weights", "w",
                 "--cluster", "psu", "--missing", "fiml", "--json"])
    ab = next(r for r in doc["estimates"] if r["op"] == ":=")
    lav = next(r for r in ref["estimates"] if r["op"] == ":=")
    assert ab["est"] == pytest.approx(lav["est"], abs=1e-4)
    assert ab["se"] == pytest.approx(lav["se"], rel=1e-3)
    assert doc["fit"]["chisq.scaled"] == pytest.approx(ref["fit"]["chisq.scaled"], rel=1e-3)


def test_fit_with_a_missing_weight_column_is_a_clear_error(hs_model):
    res = runner.invoke(app, ["fit", str(FIX / "design_sample.csv"), "--model", str(hs_model),
                              "--weights", "wt", "--json"])
    assert res.exit_code == 1
    err = json.loads(res.stdout)["error"]
    assert "weights column 'wt' not found" in err["message"] and "'w'" in err["message"]
    assert "Traceback" not in res.output


def test_study_yaml_design_block(tmp_path):
    from analysis.design import Design
    from analysis.study.spec import StudyError, init_study, parse_study

    text = init_study(tmp_path / "s").read_text()
    study = parse_study(text + "\ndesign:\n  weights: w\n  cluster: area\n  strata: region\n"
                        "  lonely_psu: adjust\n", path=tmp_path / "s" / "study.yaml")
    assert study.design.to_design() == Design(weights="w", cluster="area", strata="region", lonely_psu="adjust")
    with pytest.raises(StudyError, match="design"):
        parse_study(text + "\ndesign:\n  weight: w\n", path=tmp_path / "s" / "study.yaml")


def test_instrument_marks_design_variables():
    from instruments import load_instrument

    crs = load_instrument("instruments/library/crs.yaml")
    first = crs.items[0]
    marked = [type(first).model_validate({**first.model_dump(), "id": name, "role": role})
              for name, role in (("wt", "weight"), ("area", "cluster"), ("region", "stratum"))]
    inst = crs.model_copy(update={"sections": [crs.sections[0].model_copy(update={"items": marked})]})
    assert inst.design_columns() == {"weights": "wt", "cluster": "area", "strata": "region"}
    assert crs.design_columns() == {}


def test_compare_with_design_flags_matches_lavtestlrt(tmp_path):
    ref = json.loads((FIX / "compare.json").read_text())
    paths = []
    for name in ("free", "orth"):
        p = tmp_path / f"{name}.lav"
        p.write_text(ref["models"][name])
        paths += ["--model", str(p)]
    doc = _json(["compare", str(FIX / "design_sample.csv"), *paths, "--weights", "w", "--cluster", "psu", "--json"])
    rows = doc["comparison"]["models"]
    assert [r["aic"] for r in rows] == pytest.approx(ref["aic"], rel=1e-6)
    assert [r["bic"] for r in rows] == pytest.approx(ref["bic"], rel=1e-6)
    assert rows[1]["chisq.diff"] == pytest.approx(ref["chisq.diff"], rel=1e-3)
    assert rows[1]["df.diff"] == ref["df.diff"]


@pytest.mark.parametrize("path,needle", [
    ("NAVIG ~ NOPE", "--path 'NAVIG ~ NOPE' is not in the model; its paths are TRUST ~ CULT,"),
    ("garbage", "--path must be one lavaan statement such as 'NAVIG ~ NEGOT'; got 'garbage' (line 1, col 1:"),
])
def test_design_power_a_path_not_in_the_model_is_refused_before_any_replication(monkeypatch, path, needle):
    import analysis.execution

    def no_replications(*args, **kwargs):
        raise AssertionError("replications started")

    monkeypatch.setattr(analysis.execution, "run_replications", no_replications)
    res = runner.invoke(app, ["design-power", "-m", "figure1", "--path", path, "--designs", "10x20", "--reps", "2"])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"Error: {needle}"), res.stderr
    assert "NAVIG ~ NEGOT" in res.stderr
