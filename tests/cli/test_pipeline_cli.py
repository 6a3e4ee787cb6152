"""`resilience init | run | report`: thin commands, errors with line and field, exit codes."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import base_run, copy_study  # noqa: E402

from analysis.cli.main import app  # noqa: E402

runner = CliRunner()


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path):
    res = runner.invoke(app, ["init", str(tmp_path / "st")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "st" / "study.yaml").is_file() and "resilience run" in res.output
    again = runner.invoke(app, ["init", str(tmp_path / "st")])
    assert again.exit_code == 1 and "already exists" in again.output


def test_run_a_broken_study_file_exits_1_with_line_and_field(tmp_path):
    bad = tmp_path / "study.yaml"
    bad.write_text("instrument: crs\ndata:\n  - file: x.csv\nestimator: OLS\nbootstrap:\n  replications: -1\n")
    res = runner.invoke(app, ["run", str(bad), "--json"])
    assert res.exit_code == 1
    # the one JSON error shape of every command (was {"ok": false, "errors": [...]}): each problem located
    doc = json.loads(res.stdout)["error"]
    assert doc["type"] == "StudyError" and doc["kind"] == "input"
    errors = {(e["file"], e["line"], e["column"], e["field"]): e for e in doc["errors"]}
    assert ("study.yaml", 4, 12, "estimator") in errors, doc
    rep = errors[("study.yaml", 6, 17, "bootstrap.replications")]
    assert "greater than or equal to 0" in rep["message"]
    assert rep["text"].startswith("study.yaml:6:17 bootstrap.replications:")


def test_run_json_and_report_from_a_results_folder(tmp_path):
    path = copy_study(tmp_path / "s")
    res = runner.invoke(app, ["run", str(path), "--json", "--no-report"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps["model:figure1"]["status"] == "ok" and steps["model:figure1"]["cached"]
    assert Path(doc["results"]).name == "results.json"
    out = runner.invoke(app, ["report", str(path.parent / "results"), "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert Path(info["outputs"]["html"]).is_file() and info["cached"] is False
    assert Path(info["outputs"]["html"]).parent == path.parent / "reports"
    again = runner.invoke(app, ["report", str(path), "--json"])  # nothing changed: not re-rendered
    assert json.loads(again.stdout)["cached"] is True


def test_report_without_results_says_so(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 1 and "no results.json" in res.output


@pytest.mark.slow
def test_demo_runs_the_shipped_models_end_to_end(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--n", "1200", "--bootstrap", "20", "--json"])
    doc = json.loads(res.stdout)
    status = {s["step"]: s["status"] for s in doc["steps"]}
    assert res.exit_code == 0, {k: v for k, v in status.items() if v != "ok"}
    for step in ("cfa", "model:figure1", "model:partial_mediation", "model:top_down", "compare:figure1-vs-top_down",
                 "compare:figure1-vs-partial_mediation", "bootstrap:figure1", "invariance:ETHNIC5", "invariance:LANG",
                 "groups:ETHNIC5", "groups:LANG", "report"):
        assert status[step] == "ok", step
    r = json.loads(Path(doc["results"]).read_text())
    assert r["sample"]["n"] == 1200 and r["import"]["sources"][0]["format"] == "kobo"
    assert set(r["models"]) == {"figure1", "partial_mediation", "top_down"}
    assert r["verdict"]["answer"] in ("yes", "no", "unclear")
    assert Path(doc["report"]["outputs"]["html"]).is_file()


@pytest.mark.slow
def test_the_study_store_is_a_data_source(tmp_path):
    from instruments import load_instrument
    from instruments.store import Study as Store

    path = copy_study(tmp_path / "s", results=False)
    Store(path.parent).import_file(path.parent / "data" / "raw" / "survey_kobo.csv", load_instrument("crs"))
    path.write_text(path.read_text().replace("  - file: data/raw/survey_kobo.csv\n    format: kobo\n", "  - store: .\n"))
    res = runner.invoke(app, ["run", str(path), "--json", "--no-report"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0, doc
    r = json.loads(Path(doc["results"]).read_text())
    assert r["import"]["sources"][0]["format"] == "store" and r["sample"]["n"] == 400
    base = json.loads(base_run().results_json.read_text())
    assert r["cfa"]["fit"]["chisq"] == pytest.approx(base["cfa"]["fit"]["chisq"], rel=1e-10)  # same answers


def test_init_copies_an_own_instrument_into_the_study_and_refuses_an_unknown_one(tmp_path, monkeypatch):
    # the README tour: `init my_study --instrument my.yaml` then `run my_study/study.yaml`; paths in
    # study.yaml are relative to the study folder, so the instrument must resolve from there
    from instruments import library_path

    from analysis.study.spec import load_study

    monkeypatch.chdir(tmp_path)
    Path("my.yaml").write_text(library_path("crs").read_text(encoding="utf-8"), encoding="utf-8")
    res = runner.invoke(app, ["init", "my_study", "--instrument", "my.yaml"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "my_study" / "my.yaml").read_bytes() == Path("my.yaml").read_bytes()
    assert "\ninstrument: my.yaml\n" in (tmp_path / "my_study" / "study.yaml").read_text()
    monkeypatch.chdir(tmp_path / "my_study" / "data")  # resolved from the study folder, not the cwd
    st = load_study(tmp_path / "my_study" / "study.yaml")
    assert st.instrument_path() == tmp_path / "my_study" / "my.yaml" and st.load_instrument().id
    monkeypatch.chdir(tmp_path)
    bad = runner.invoke(app, ["init", "newst", "--instrument", "nosuch"])
    assert bad.exit_code == 1 and "'nosuch' is neither a file nor a shipped instrument" in bad.output
    assert not (tmp_path / "newst").exists()
    shipped = runner.invoke(app, ["init", "st2", "--instrument", "crs"])
    assert shipped.exit_code == 0 and "\ninstrument: crs\n" in (tmp_path / "st2" / "study.yaml").read_text()
