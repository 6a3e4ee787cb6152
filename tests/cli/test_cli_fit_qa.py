"""`resilience fit` defaults and help as a lavaan user expects them (numbers: tests/fixtures/make_qa.R)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

FIX = Path(__file__).parents[1] / "fixtures"
REF = json.loads((FIX / "qa" / "qa_lavaan.json").read_text())
runner = CliRunner()


def test_ordered_without_estimator_is_wlsmv_as_in_lavaan(tmp_path):
    model = tmp_path / "bin.lav"
    model.write_text(REF["binary_wlsmv"]["syntax"])
    res = runner.invoke(app, ["fit", str(FIX / "qa" / "binary8.csv"), "-m", str(model),
                              "--ordered", "all", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"]["estimator"] == "WLSMV"
    want = REF["binary_wlsmv"]["fit"]
    for key in ("chisq", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "cfi.robust"):
        assert doc["fit"][key] == pytest.approx(want[key], rel=1e-3, abs=1e-4), key


@pytest.mark.parametrize("command", ["fit", "compare"])
def test_help_has_examples(command):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0
    assert "Examples:" in res.stdout
    assert f"resilience {command} " in res.stdout


def test_collapse_sparse_option_reaches_the_fit(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(5)
    f = rng.normal(size=600)
    d = pd.DataFrame({f"i{k}": np.digitize(0.7 * f + rng.normal(scale=0.7, size=600), [-0.8, 0.8])
                      for k in range(1, 5)})
    d["grp"] = np.repeat(["a", "b"], 300)
    d.loc[(d.grp == "a") & (d.i2 == 2), "i2"] = 1      # code 2 of i2 never seen in group a
    data = tmp_path / "sparse.csv"
    d.to_csv(data, index=False)
    model = tmp_path / "m.lav"
    model.write_text("f =~ i1 + i2 + i3 + i4\n")
    args = ["fit", str(data), "-m", str(model), "--ordered", "all", "--group", "grp"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert "ordered item 'i2': category 2 is never observed in group 'a'" in res.output
    assert "--collapse-sparse" in res.output
    res = runner.invoke(app, [*args, "--collapse-sparse", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    th = [e for e in doc["estimates"] if e["op"] == "|" and e["lhs"] == "i2"]
    assert len(th) == 2   # one threshold per group after merging categories 2 and 3
