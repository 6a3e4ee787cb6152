"""Bad input: clear messages naming file/line/field, cached steps kept, failures recorded as data."""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import copy_study, make_study  # noqa: E402

from analysis.study.pipeline import run_study  # noqa: E402


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)




def test_missing_data_file_names_line_and_field_and_skips_the_rest(tmp_path):
    path = make_study(tmp_path / "s", data_file="data/raw/nowhere.csv", replications=5)
    run = run_study(path, progress=False, report=False)
    imp = run.step("import")
    line = _line_of(path, "nowhere.csv")
    assert imp.status == "failed" and imp.error_type == "MissingDataFile"
    assert f"study.yaml:{line}:11 data[0].file: data file not found" in imp.message
    assert run.step("score").status == "skipped" and "needs import" in run.step("score").message
    r = json.loads(run.results_json.read_text())  # the bundle is still written, saying what failed
    assert r["steps"]["import"]["status"] == "failed"
    assert r["steps"]["import"]["error"]["message"] == imp.message
    assert r["steps"]["model:figure1"]["status"] == "skipped"
    assert r["study"]["problems"][0]["field"] == "data[0].file" and r["study"]["problems"][0]["line"] == line


def test_unknown_model_name_fails_that_model_only(tmp_path):
    path = copy_study(tmp_path / "s")  # a study that ran once: its cache is there
    lines = path.read_text().splitlines()
    at = lines.index("comparisons:")
    lines.insert(at, "  - figur1")
    path.write_text("\n".join(lines) + "\n")
    run = run_study(path, progress=False, report=False)
    bad = run.step("model:figur1")
    line = _line_of(path, "- figur1")
    assert bad.status == "failed"
    assert f"study.yaml:{line}:5 models[3]: unknown model 'figur1' (did you mean 'figure1'?)" in bad.message
    log = {s["step"]: s for s in json.loads(run.run_log.read_text())["steps"]}
    assert log["compare:figure1-vs-top_down"]["status"] == "ok"
    for step in ("import", "score", "cfa", "model:figure1", "model:top_down", "compare:figure1-vs-top_down"):
        assert log[step]["status"] == "ok" and log[step]["cached"], step


def test_group_column_absent_names_the_groups_line(tmp_path):
    path = copy_study(tmp_path / "s")
    path.write_text(path.read_text().replace('groups: ["LANG"]', 'groups: ["LANG", "ETHNICITY"]'))
    run = run_study(path, progress=False, report=False)
    inv = run.step("invariance:ETHNICITY")
    line = _line_of(path, "groups:")
    assert inv.status == "failed" and inv.error_type == "MissingGroupColumn"
    assert f"study.yaml:{line}:18 groups[1]: group column 'ETHNICITY' is not in the data" in inv.message
    assert "ETHNIC" in inv.message  # a close match is suggested
    assert run.step("invariance:LANG").status == "ok" and run.step("invariance:LANG").cached
    assert run.step("groups:ETHNICITY").status == "failed"


def test_non_convergence_mid_pipeline_is_recorded_then_recovers_from_cache(tmp_path, monkeypatch):
    import analysis.sem.fit as sem

    path = copy_study(tmp_path / "s")
    real = sem.fit_sem

    def stalls_on_top_down(model, *args, **kwargs):
        fit = real(model, *args, **kwargs)
        if "vc*CULT" in str(model):  # only top_down has this path
            fit = dataclasses.replace(fit, converged=False, warnings=(
                {"type": "non-convergence", "message": "the model did not converge after 10000 iterations"},))
        return fit

    # a code change would invalidate the cache: force a refit of top_down by editing its syntax slightly
    path.write_text(path.read_text().replace("NAVIG ~ vc*CULT", "NAVIG ~  vc*CULT"))
    monkeypatch.setattr(sem, "fit_sem", stalls_on_top_down)
    run = run_study(path, progress=False, report=True)
    td = run.step("model:top_down")
    line = _line_of(path, "name: top_down")
    assert td.status == "failed" and td.error_type == "NonConvergence"
    assert f"model 'top_down' (study.yaml:{line}:" in td.message and "did not converge after 10000" in td.message
    assert run.step("compare:figure1-vs-top_down").status == "skipped"
    assert run.step("model:figure1").cached and run.step("cfa").cached
    html = Path(run.report["outputs"]["html"]).read_text(encoding="utf-8")
    assert "What failed" in html and "did not converge after 10000 iterations" in html
    monkeypatch.setattr(sem, "fit_sem", real)
    again = run_study(path, progress=False, report=False)
    assert again.step("model:top_down").status == "ok" and not again.step("model:top_down").cached
    assert again.step("model:figure1").cached and again.step("compare:figure1-vs-top_down").status == "ok"


def test_bootstrap_of_a_model_not_in_the_study_says_so(tmp_path):
    path = copy_study(tmp_path / "s")
    path.write_text(path.read_text().replace("  model: figure1", "  model: partial_mediation"))
    run = run_study(path, progress=False, report=False)
    boot = run.step("bootstrap:partial_mediation")
    line = _line_of(path, "model: partial_mediation")
    assert boot.status == "failed" and boot.error_type == "UnknownModel"
    assert f"study.yaml:{line}:10 bootstrap.model: bootstrap.model 'partial_mediation' is not in 'models'" in boot.message
