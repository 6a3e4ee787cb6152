"""`resilience fit --instrument`: survey data as the instrument defines them (missing codes, reverse keys, REPR)."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from analysis.cli.main import app
from analysis.psychometrics.items import instrument_model_data
from analysis.simulation.simulate import population_model, simulate_responses
from instruments import load_instrument

runner = CliRunner()


def _survey(tmp_path):
    inst = load_instrument("crs")
    data = simulate_responses(population_model("figure1", inst), 300, seed=11, instrument=inst, missing=0.05)
    path = tmp_path / "survey.csv"
    data.to_csv(path, index=False)
    return inst, data, path


def test_instrument_recodes_items_and_scores_repr(tmp_path):
    inst, data, _ = _survey(tmp_path)
    out = instrument_model_data(data, inst, "TRUST =~ TRUST1 + TRUST2 + TRUST4\nTRUST ~ REPR")
    raw = pd.to_numeric(data["TRUST4"], errors="coerce")
    assert (raw < 0).any() and not (out["TRUST4"] < 0).any()  # -9/-8 became missing
    answered = raw.between(1, 5)
    assert np.array_equal(out.loc[answered, "TRUST4"], 6 - raw[answered])  # reverse-keyed 1..5
    assert "REPR" in out and out["REPR"].dropna().between(0, 3).all()


def test_fit_with_and_without_instrument(tmp_path):
    _, _, path = _survey(tmp_path)
    res = runner.invoke(app, ["fit", str(path), "-m", "figure1", "--missing", "fiml", "--json"])
    assert res.exit_code == 1
    assert "--instrument crs" in json.loads(res.stdout)["error"]["message"]
    res = runner.invoke(app, ["fit", str(path), "-m", "figure1", "--missing", "fiml", "--instrument", "crs", "--json"])
    assert res.exit_code == 0, res.stdout
    doc = json.loads(res.stdout)
    assert 250 <= doc["fit"]["ntotal"] <= 300 and doc["fit"]["converged"]  # non-consenters have no answers
    trust4 = next(e for e in doc["estimates"] if e["lhs"] == "TRUST" and e["op"] == "=~" and e["rhs"] == "TRUST4")
    assert trust4["est"] > 0.3  # recoded: loads positively like the other TRUST items
