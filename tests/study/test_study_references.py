"""study.yaml names that point nowhere are errors on their own line: a hypothesis's model with a
"did you mean", a path of ``group_paths`` (not ``groups[0]``). A questionnaire of the tests, not crs."""

import shutil
from pathlib import Path

import pytest

from analysis.study.pipeline import run_study
from analysis.study.spec import StudyError

INSTRUMENT = Path(__file__).parents[1] / "fixtures" / "instruments" / "tiny_two_constructs.yaml"
POPULATION = "CALM =~ 0.8*CA1 + 0.7*CA2 + 0.6*CA3\nJOY =~ 0.8*JO1 + 0.7*JO2 + 0.6*JO3\nJOY ~ 0.4*CALM\n"
STUDY = """\
title: Calm and joy
instrument: tiny.yaml
data:
  - file: tiny.csv
groups: [TOWN]
min_group_size: 50
models:
  - measurement
  - {name: calm_joy, syntax: "CALM =~ CA1 + CA2 + CA3\\nJOY =~ JO1 + JO2 + JO3\\nJOY ~ CALM\\n"}
  - {name: apart, syntax: "CALM =~ CA1 + CA2 + CA3\\nJOY =~ JO1 + JO2 + JO3\\nJOY ~ 0*CALM\\n"}
hypotheses:
  - {id: H1, claim: Calm people are joyful, model: calm_joy, against: apart, path: JOY ~ CALM}
group_paths:
  - JOY ~ CALM
bootstrap:
  replications: 0
seed: 1
"""


@pytest.fixture
def study(tmp_path):
    from instruments import load_instrument

    from analysis.simulation.simulate import simulate_responses

    shutil.copy(INSTRUMENT, tmp_path / "tiny.yaml")
    simulate_responses(POPULATION, 300, seed=2, instrument=load_instrument(INSTRUMENT)).to_csv(
        tmp_path / "tiny.csv", index=False)
    path = tmp_path / "study.yaml"
    path.write_text(STUDY, encoding="utf-8")
    return path


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_hypothesis_naming_an_unknown_model_is_an_error_with_its_line_and_a_suggestion(study):
    study.write_text(study.read_text().replace("against: apart", "against: aprat"))
    with pytest.raises(StudyError) as err:
        run_study(study, progress=False, report=False)
    text = str(err.value)
    assert f"study.yaml:{_line_of(study, 'aprat')}:" in text and "hypotheses[0].against" in text
    assert "hypothesis names model 'aprat'" in text and "did you mean 'apart'?" in text
    assert not (study.parent / "results" / "results.json").exists()  # nothing ran


def test_the_cli_says_so_and_exits_1(study):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    study.write_text(study.read_text().replace("model: calm_joy,", "model: calmjoy,"))
    r = CliRunner().invoke(app, ["run", str(study), "--no-report"])
    said = " ".join(r.output.split())  # the console wraps long lines
    assert r.exit_code == 1 and "did you mean 'calm_joy'?" in said and "Traceback" not in said


def test_a_wrong_group_path_is_blamed_on_the_group_paths_line(study):
    study.write_text(study.read_text().replace("  - JOY ~ CALM\n", "  - JOY ~ CALM\n  - JOY ~ FOO\n"))
    run = run_study(study, progress=False, report=False)
    step = run.step("groups:TOWN")
    assert step.status == "failed"
    assert f"study.yaml:{_line_of(study, 'JOY ~ FOO')}:5 group_paths[1]" in step.message
    assert "JOY ~ FOO is not a path of the model 'calm_joy'" in step.message
    assert "groups[0]" not in step.message
    assert run.step("model:calm_joy").status == "ok"
