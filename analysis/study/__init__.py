"""A study, from study.yaml to a published report: the top layer of the suite.

    spec        study.yaml -> Study (line/column of every error; paths confined to the folder)
    pipeline    run_study: the steps (import -> validate -> score -> ... -> models -> comparisons) in order
    runner      one step: its cache key, the signed cache (cache), its failure kept as data
    steps       the steps by group: data, describe, models, groups, compare
    bundle      results.json, Parquet tables, figures; runlog: run-log.json; report: rendering a bundle
    demo        the simulated community survey and the demo study
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
