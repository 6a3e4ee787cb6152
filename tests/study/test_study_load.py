"""study.yaml: scaffolding, validation with line/field errors, reference checks."""

import pytest

from analysis.study.spec import StudyError, init_study, load_study, parse_study, shipped_models


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_init_scaffolds_a_commented_study_that_loads_with_defaults(tmp_path):
    path = init_study(tmp_path / "s", title="Ward 7: 2026 survey")
    text = path.read_text()
    assert text.count("#") > 20  # commented for people
    for sub in ("data/raw", "models", "results", "reports"):
        assert (tmp_path / "s" / sub).is_dir()
    study = load_study(tmp_path / "s")  # a folder works too
    assert study.title == "Ward 7: 2026 survey"  # a colon in the title is quoted safely
    assert study.model_names() == ["measurement", "figure1", "partial_mediation", "top_down"]
    # crs's claim comes from study.yaml: the hypothesis implies figure1 vs top_down
    assert study.comparison_pairs() == [("figure1", "partial_mediation"), ("figure1", "top_down")]
    assert [(h.id, h.model, h.against, h.path) for h in study.hypotheses] == [("H1", "figure1", "top_down",
                                                                             "NAVIG ~ NEGOT")]
    assert (study.estimator, study.missing, study.disclosure.threshold) == ("ML", "fiml", 10)
    assert study.bootstrap.replications == 500 and study.bootstrap.ci == "perc"
    assert study.results_dir == (tmp_path / "s" / "results").resolve()
    # positions point at the real lines
    assert study.where("models", 1) == f"study.yaml:{_line_of(text, '  - figure1')}:5 models[1]"
    with pytest.raises(StudyError, match="already exists"):
        init_study(tmp_path / "s")


def test_structural_errors_name_line_column_and_field(tmp_path):
    text = init_study(tmp_path).read_text()
    bad = (text.replace("estimator: ML", "estimator: OLS")
               .replace("  ci: perc", "  ci: perc\n  replicatons: 3")
               .replace("seed: 20260401", "seed: soon"))
    with pytest.raises(StudyError) as err:
        parse_study(bad, path=tmp_path / "study.yaml")
    msgs = [str(i) for i in err.value.issues]
    est_line = _line_of(bad, "estimator: OLS")
    assert any(m.startswith(f"study.yaml:{est_line}:12 estimator:") and "'ML'" in m for m in msgs), msgs
    rep_line = _line_of(bad, "replicatons")
    assert f"study.yaml:{rep_line}:16 bootstrap.replicatons: unknown field 'replicatons' (did you mean 'replications'?)" in msgs
    assert any(m.startswith(f"study.yaml:{_line_of(bad, 'seed: soon')}:7 seed:") for m in msgs)
    assert len(msgs) == 3


def test_yaml_syntax_error_and_non_mapping(tmp_path):
    with pytest.raises(StudyError, match=r"study.yaml:3:7: not valid YAML: expected .,. or .\]."):
        parse_study("instrument: crs\ndata: [a, b\nmodels: x\n", path="study.yaml")
    with pytest.raises(StudyError, match="must be a mapping"):
        parse_study("- just\n- a list\n", path="study.yaml")
    with pytest.raises(StudyError, match="data\\[0\\]: give either 'file' or 'store'"):
        parse_study("data:\n  - format: kobo\n", path="study.yaml")
    with pytest.raises(StudyError, match="study file not found"):
        load_study(tmp_path / "nope.yaml")


def test_reference_problems_name_the_line_and_suggest(tmp_path):
    text = init_study(tmp_path).read_text().replace("  - top_down\n", "  - top_dwn\n  - {name: mine, file: models/mine.lav}\n")
    study = parse_study(text, path=tmp_path / "study.yaml")
    issues = {i.field: str(i) for i in study.check()}
    assert issues["data[0].file"].startswith(f"study.yaml:{_line_of(text, '- file: data/raw')}:11 data[0].file: data file not found")
    assert f"study.yaml:{_line_of(text, 'top_dwn')}:5 models[3]: unknown model 'top_dwn' (did you mean 'top_down'?)" in issues["models[3]"]
    assert "model file not found" in issues["models[4].file"]
    assert "hypothesis names model 'top_down', which is not in 'models'" in issues["hypotheses[0].against"]
    assert set(shipped_models()) >= {"measurement", "figure1", "partial_mediation", "top_down"}


def test_user_models_by_syntax_and_file(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.lav").write_text("F =~ a + b + c\n")
    text = ("data:\n  - file: d.csv\nmodels:\n  - figure1\n  - {name: mine, file: models/mine.lav}\n"
            "  - name: inline\n    syntax: |\n      G =~ x + y + z\ncomparisons: []\n")
    study = parse_study(text, path=tmp_path / "study.yaml")
    assert study.model_syntax(1) == "F =~ a + b + c\n"
    assert study.model_syntax(2) == "G =~ x + y + z\n"
    assert "TRUST  ~ tr_cu*CULT" in study.model_syntax(0)


def test_measurement_is_built_from_the_study_instrument(tmp_path):
    """A bare `measurement` is every latent construct of the study's own instrument by its
    items; for crs it is the shipped measurement model, REPR covarying with every construct."""
    from instruments import load_instrument

    from analysis.study.spec import MODELS_DIR, measurement_model
    from analysis.sem.syntax import parse_model

    crs = parse_study("data:\n  - file: d.csv\n", path=tmp_path / "study.yaml")
    shipped = {(s.lhs, s.op, s.rhs) for s in parse_model((MODELS_DIR / "measurement.lav").read_text())}
    built = {(s.lhs, s.op, s.rhs) for s in parse_model(crs.model_syntax(0))}
    assert built == shipped
    # another questionnaire: its own constructs, and none of crs's defaults
    inst = tmp_path / "mine.yaml"
    inst.write_text(OWN_INSTRUMENT)
    own = parse_study("instrument: mine.yaml\ndata:\n  - file: d.csv\n", path=tmp_path / "study.yaml")
    assert own.model_names() == ["measurement"] and own.comparison_pairs() == [] and own.group_paths == []
    assert own.model_syntax(0) == "SAFE =~ S1 + S2 + S3\n"
    assert measurement_model(load_instrument(inst)) == own.model_syntax(0)
    assert own.bootstrap_model() is None


OWN_INSTRUMENT = """\
id: mine
version: 1.0.0
title: Mine
languages: [en]
default_language: en
scales:
  agree:
    type: ordinal
    categories:
      - {code: 1, label: {en: "No"}}
      - {code: 2, label: {en: "Maybe"}}
      - {code: 3, label: {en: "Yes"}}
constructs:
  - {id: SAFE, label: Safety, definition: feeling safe}
sections:
  - id: s
    title: {en: S}
    items:
      - {id: S1, text: {en: one}, scale: agree, construct: SAFE}
      - {id: S2, text: {en: two}, scale: agree, construct: SAFE}
      - {id: S3, text: {en: three}, scale: agree, construct: SAFE}
"""


def test_models_may_be_files_of_the_study(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "main.lav").write_text("# main: what the study claims\nF =~ a + b + c\n")
    (tmp_path / "other.lav").write_text("G =~ x + y + z\n")
    study = parse_study("instrument: mine.yaml\ndata:\n  - file: d.csv\nmodels:\n  - main\n  - other.lav\n"
                        "  - {name: third, syntax: 'H =~ p + q + r', description: the third one}\n",
                        path=tmp_path / "study.yaml")
    assert study.model_names() == ["main", "other", "third"]
    assert study.model_syntax(0).endswith("F =~ a + b + c\n") and study.model_syntax(1) == "G =~ x + y + z\n"
    assert study.model_description("third") == "the third one" and study.bootstrap_model() == "main"
    assert study.check() == [i for i in study.check() if i.field.startswith("data")]  # only the data file is missing


def test_a_measurement_model_of_an_instrument_without_constructs_is_refused_with_its_line(tmp_path):
    (tmp_path / "mine.yaml").write_text(OWN_INSTRUMENT.split("constructs:")[0] + """sections:
  - id: s
    title: {en: S}
    items:
      - {id: S1, text: {en: one}, scale: agree}
""")
    study = parse_study("instrument: mine.yaml\ndata:\n  - file: d.csv\nmodels:\n  - measurement\n",
                        path=tmp_path / "study.yaml")
    with pytest.raises(StudyError, match=r"study.yaml:5:5 models\[0\]: the instrument 'mine' has no latent construct"):
        study.model_syntax(0)
