"""`resilience simulate`, `resilience power` and `resilience fit --bootstrap`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_simulate_csv_is_deterministic_and_in_the_instrument_shape(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        res = _run("simulate", "--instrument", "crs", "--model", "figure1", "--n", 120, "--seed", 7,
                   "--missing", 0.05, "--careless", 0.07, "-o", out)
        assert res.exit_code == 0, res.output
        assert "Wrote 120 simulated respondents of crs (figure1, seed 7)" in res.output
    assert a.read_bytes() == b.read_bytes()
    df = pd.read_csv(a)
    assert len(df) == 120 and "CULT1" in df and "ETHNIC" in df
    assert df["CULT1"].isin([1, 2, 3, 4, 5, -9, -8]).all()


@pytest.mark.parametrize("fmt,name", [("kobo", "kobo.csv"), ("redcap", "redcap.csv"), ("odk", "odk.csv"),
                                      ("parquet", "d.parquet"), ("sav", "d.sav"), ("xlsx", "d.xlsx")])
def test_simulate_writes_every_import_format_and_imports_back(tmp_path, fmt, name):
    from instruments import load_instrument
    from instruments.ingest import import_responses

    out = tmp_path / name
    res = _run("simulate", "--instrument", "crs", "--n", 40, "--seed", 3, "--format", fmt, "-o", out)
    assert res.exit_code == 0, res.output
    inst = load_instrument("crs")
    imported = import_responses(out, inst)
    assert len(imported.data) == 40
    errors = [i for i in imported.issues if getattr(i, "severity", "error") == "error"]
    assert not errors, errors[:3]
    assert imported.data["TRUST1"].dropna().isin([1, 2, 3, 4, 5, -9, -8]).all()


def test_simulate_mistakes_are_messages(tmp_path):
    res = _run("simulate", "--instrument", "crs", "--model", "figure9", "--n", 10, "--seed", 1,
               "-o", tmp_path / "x.csv")
    assert res.exit_code == 1
    assert "no population model 'figure9'" in res.output
    res = _run("simulate", "--instrument", "crs", "--n", 10, "--seed", 1, "-o", tmp_path / "x.dat")
    assert res.exit_code == 2 and "cannot tell the format of x.dat" in res.output   # wrong use: exit 2
    res = _run("simulate", "--instrument", "crs", "--n", 10, "--seed", 1, "--groups", "[{\"name\": 1}]",
               "-o", tmp_path / "x.csv")
    assert res.exit_code == 2 and "group 1 needs a name and a share" in res.output
    res = _run("simulate", "--instrument", "crs", "--n", 10, "--seed", 1, "--missing", 2, "-o", tmp_path / "x.csv")
    assert res.exit_code == 2 and "'missing' parameter of simulate_responses must be in [0, 1)" in res.output


def test_simulate_with_groups_file(tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps([{"name": "White", "share": 0.5, "codes": [13, 14, 15, 16, 17]},
                                  {"name": "Black", "share": 0.5, "codes": [6, 7, 8], "means": {"TRUST": -1.0}}]))
    out = tmp_path / "g.csv"
    res = _run("simulate", "--instrument", "crs", "--n", 600, "--seed", 2, "--groups", groups, "-o", out)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    white = df["ETHNIC"].isin([13, 14, 15, 16, 17])
    assert set(df["ETHNIC"]) <= {13, 14, 15, 16, 17, 6, 7, 8}
    trust = df[["TRUST1", "TRUST2", "TRUST3"]].where(lambda x: x > 0).mean(axis=1)
    assert trust[white].mean() - trust[~white].mean() > 0.4  # a 1 SD lower TRUST shows in the items


def test_power_json(tmp_path):
    model = tmp_path / "pop.lav"
    model.write_text("F =~ 0.8*x1 + 0.7*x2 + 0.7*x3\nG =~ 0.8*y1 + 0.7*y2 + 0.7*y3\nG ~ 0.3*b*F\n")
    res = _run("power", "--model", model, "--n", "50,200", "--reps", 6, "--seed", 1, "--effects", "b",
               "--workers", 1, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [o["n"] for o in doc["overview"]] == [50, 200]
    assert doc["min_n"][0]["effect"] == "b"
    b = [p for p in doc["parameters"] if p["name"] == "G ~ F" and p["label"] == "b"]  # named by its path
    assert len(b) == 2 and b[0]["true"] == pytest.approx(0.3)
    res = _run("power", "--model", model, "--n", "50,abc", "--reps", 2, "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"]["message"].startswith("--n must be comma-separated whole numbers")


def test_fit_bootstrap_json():
    data = ROOT / "tests" / "fixtures" / "data" / "PoliticalDemocracy.csv"
    res = _run("fit", data, "--model", "poldem", "--bootstrap", 60, "--seed", 4, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["bootstrap"]["R"] == 60 and doc["bootstrap"]["seed"] == 4
    assert doc["bootstrap"]["ok"] + doc["bootstrap"]["failed"] == 60
    ind = next(e for e in doc["estimates"] if e["lhs"] == "ind")
    assert ind["ci.lower"] < ind["est"] < ind["ci.upper"]
    # the bootstrap SE, not the delta-method one (0.3554 in lavaan)
    assert ind["se"] != pytest.approx(0.355422, abs=1e-4)
    res = _run("fit", data, "--model", "poldem", "--bootstrap", 10, "--ci", "pct", "--json")
    assert res.exit_code == 2   # a wrong option value, refused before the fit
    assert "--ci must be one of perc, bca.simple, bca, norm, basic; got 'pct'" in json.loads(res.stdout)["error"]["message"]
