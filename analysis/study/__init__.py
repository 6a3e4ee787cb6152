"""A study, from study.yaml to a published report: the top layer of the suite.

    spec        study.yaml -> Study (line/column of every error; paths confined to the folder)
    pipeline    the steps (import -> validate -> score -> ... -> models -> comparisons) and the bundle
    disclosure  small-cell control over the whole results bundle
    figures     the report's plots; diagram: path diagrams (SVG without Graphviz)
    render      Quarto when present, else jupytext -> papermill -> nbconvert, pandoc for DOCX
"""
from analysis.study.spec import (
    MODELS_DIR,
    STUDY_TEMPLATE,
    DataSource,
    Hypothesis,
    ModelSpec,
    Study,
    StudyError,
    StudyIssue,
    init_study,
    load_study,
    measurement_model,
    parse_study,
    shipped_models,
)

__all__ = ["Study", "DataSource", "ModelSpec", "StudyIssue", "StudyError", "Hypothesis", "measurement_model",
           "load_study", "parse_study", "init_study", "shipped_models", "STUDY_TEMPLATE", "MODELS_DIR"]
