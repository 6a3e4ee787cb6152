"""`--model measurement --instrument MY.yaml` is the CFA of MY.yaml's constructs (as in the study
pipeline), for fit, compare and invariance alike; a model or data that cannot be used is exit 1."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

INSTRUMENT = Path(__file__).parents[1] / "fixtures" / "instruments" / "tiny_two_constructs.yaml"
POPULATION = "CALM =~ 0.8*CA1 + 0.7*CA2 + 0.6*CA3\nJOY =~ 0.8*JO1 + 0.7*JO2 + 0.6*JO3\nJOY ~ 0.4*CALM\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    from instruments import load_instrument

    from analysis.simulation.simulate import simulate_responses

    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    simulate_responses(POPULATION, 400, seed=1, instrument=load_instrument(INSTRUMENT)).to_csv(path, index=False)
    return path


def test_fit_measurement_is_the_instruments_own_cfa(survey):
    from instruments import load_instrument

    from analysis.psychometrics.items import instrument_model_data
    from analysis.sem.data import read_survey
    from analysis.sem.fit import fit_sem
    from analysis.study.spec import measurement_model

    r = runner.invoke(app, ["fit", str(survey), "--model", "measurement", "--instrument", str(INSTRUMENT), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    loadings = {(p["lhs"], p["rhs"]) for p in doc["estimates"] if p["op"] == "=~"}
    assert loadings == {("CALM", f"CA{i}") for i in (1, 2, 3)} | {("JOY", f"JO{i}") for i in (1, 2, 3)}
    # the very model the study pipeline fits, on the same data
    inst = load_instrument(INSTRUMENT)
    syntax = measurement_model(inst)
    own = fit_sem(syntax, instrument_model_data(read_survey(survey, inst), inst, syntax))
    assert doc["fit"]["chisq"] == pytest.approx(own.fit_dict()["chisq"], abs=1e-8)
    assert doc["fit"]["df"] == 8


def test_compare_and_invariance_use_the_same_measurement_model(survey, tmp_path):
    structural = tmp_path / "calm_joy.lav"
    structural.write_text("CALM =~ CA1 + CA2 + CA3\nJOY =~ JO1 + JO2 + JO3\nJOY ~ 0*CALM\n")
    r = runner.invoke(app, ["compare", str(survey), "-m", "measurement", "-m", str(structural),
                            "--instrument", str(INSTRUMENT), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["comparison"]
    assert "CULT" not in r.stdout and json.loads(r.stdout)["fits"]["measurement"]["fit"]["df"] == 8
    assert rows
    r = runner.invoke(app, ["invariance", str(survey), "-m", "measurement", "-g", "TOWN", "-i", str(INSTRUMENT),
                            "--steps", "configural,metric", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"][0]["df"] == 16  # two groups of the 8-df CFA


@pytest.mark.parametrize("command", ["fit", "compare", "invariance"])
def test_a_model_or_data_that_cannot_be_used_is_exit_1_everywhere(survey, command):
    extra = {"fit": [], "compare": ["-m", "measurement"], "invariance": ["-g", "TOWN"]}[command]
    r = runner.invoke(app, [command, str(survey), "-m", "no_such_model", *extra, "-i", str(INSTRUMENT)])
    assert r.exit_code == 1 and "'no_such_model' not found" in r.output and "Traceback" not in r.output
    # crs's shipped CFA on this questionnaire's data: its items are not there
    r = runner.invoke(app, [command, str(survey), "-m", "figure1", *extra, "-i", str(INSTRUMENT)])
    assert r.exit_code == 1 and "Traceback" not in r.output
