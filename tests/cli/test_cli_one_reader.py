"""One reader for every command: fit, compare, reliability, efa and invariance read a
Kobo export and the study store (--study) through the code `resilience import` uses,
with the instrument's missing codes and reverse keys, and get the numbers they get from
the same answers as a plain table of codes."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

FIXTURE = Path(__file__).parents[1] / "fixtures" / "studies" / "neighbourhood"
runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from instruments import load_instrument
    from instruments.export_data import write_kobo
    from instruments.store import Study

    from analysis.simulation.simulate import simulate_responses

    root = tmp_path_factory.mktemp("reader")
    inst_path = FIXTURE / "wellbeing.yaml"
    inst = load_instrument(inst_path)
    data = simulate_responses((FIXTURE / "population.lav").read_text(), 400, seed=5, instrument=inst,
                              missing=0.05)  # the scale's missing code 99: must not enter any statistic
    kobo = write_kobo(data, inst, root / "kobo.csv")
    plain = root / "plain.csv"
    data.to_csv(plain, index=False)
    store = root / "store"
    Study(store).import_file(kobo, inst)
    return {"inst": str(inst_path), "kobo": str(kobo), "plain": str(plain), "store": str(store),
            "model": str(FIXTURE / "models" / "main.lav"), "rival": str(FIXTURE / "models" / "direct.lav")}


def _json(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _sources(f):
    return {"kobo": [f["kobo"]], "store": ["--study", f["store"]], "plain": [f["plain"]]}


def test_fit_and_compare_read_kobo_and_the_store(files):
    fits = {k: _json(["fit", *src, "-m", files["model"], "-i", files["inst"], "--json"])
            for k, src in _sources(files).items()}
    chisq = {k: d["fit"]["chisq"] for k, d in fits.items()}
    assert chisq["kobo"] == pytest.approx(chisq["plain"], rel=1e-10)
    assert chisq["store"] == pytest.approx(chisq["plain"], rel=1e-10)
    assert fits["kobo"]["fit"]["ntotal"] == fits["plain"]["fit"]["ntotal"] < 400  # 99 is missing, not an answer
    comp = {k: _json(["compare", *src, "-m", files["model"], "-m", files["rival"], "-i", files["inst"], "--json"])
            for k, src in _sources(files).items()}
    aic = {k: [r["aic"] for r in d["comparison"]["models"]] for k, d in comp.items()}
    np.testing.assert_allclose(aic["kobo"], aic["plain"], rtol=1e-10)
    np.testing.assert_allclose(aic["store"], aic["plain"], rtol=1e-10)


def test_reliability_efa_invariance_read_kobo_and_the_store(files):
    rel = {k: _json(["reliability", *src, "-i", files["inst"], "--json"]) for k, src in _sources(files).items()}
    alpha = {k: {c["construct"]: c["alpha"] for c in d["constructs"]} for k, d in rel.items()}
    assert set(alpha["plain"]) == {"SAFETY", "BELONG", "CIVIC", "WELLB"}
    for k in ("kobo", "store"):
        for c, a in alpha["plain"].items():
            assert alpha[k][c] == pytest.approx(a, rel=1e-10)
    efa = {k: _json(["efa", *src, "-i", files["inst"], "-k", "4", "--json"]) for k, src in _sources(files).items()}
    assert efa["kobo"]["kmo"]["overall"] == pytest.approx(efa["plain"]["kmo"]["overall"], rel=1e-10)
    assert efa["store"]["kmo"]["overall"] == pytest.approx(efa["plain"]["kmo"]["overall"], rel=1e-10)
    inv = {k: _json(["invariance", *src, "-m", files["model"], "-g", "DISTRICT", "-i", files["inst"],
                     "--steps", "configural,metric", "--json"]) for k, src in _sources(files).items()}
    for k in ("kobo", "store"):
        assert [s["chisq"] for s in inv[k]["steps"]] == pytest.approx([s["chisq"] for s in inv["plain"]["steps"]])


def test_a_kobo_export_without_the_instrument_and_no_data_are_refused_clearly(files):
    res = runner.invoke(app, ["fit", "-m", files["model"]])
    assert res.exit_code == 2 and "no data: give a data file or --study" in res.output  # a usage error
    res = runner.invoke(app, ["reliability", "--study", str(Path(files["store"]).parent / "nowhere"),
                              "-i", files["inst"]])
    assert res.exit_code != 0 and "not a study store" in res.output and "Traceback" not in res.output
