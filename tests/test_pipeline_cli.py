"""`resilience init | run | report`: thin commands, errors with line and field, exit codes."""

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline_study import copy_study  # noqa: E402

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
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    assert any(e.startswith("study.yaml:4:12 estimator:") for e in doc["errors"]), doc
    assert any(e.startswith("study.yaml:6:17 bootstrap.replications:") and "greater than or equal to 0" in e
               for e in doc["errors"]), doc


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
