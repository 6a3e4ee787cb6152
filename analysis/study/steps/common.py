"""What several step groups read: the tables analysed (after the disclosure rule once it ran),
labelled grouping columns, the study's model text, and error messages fit for the bundle.
"""

from __future__ import annotations

import re

import pandas as pd

from analysis.study.records import StepFailure
from analysis.study.runner import Run
from analysis.study.spec import Study, StudyError


def response_table(run: Run) -> pd.DataFrame:
    """The answers analysed: after the disclosure rule once it ran (``drop`` removes rows), else as imported."""
    if run.ok("disclosure") and "responses" in run.out("disclosure").tables:
        return run.out("disclosure").tables["responses"]
    return run.out("import").tables["responses"]


def labels_for(inst, column: str) -> dict[float, str] | None:
    """Code -> label (default language) for an item or a collapsed grouping column."""
    lang = inst.default_language
    for it in inst.items:
        if it.id == column:
            scale = inst.scales[it.scale]
            cats = getattr(scale, "categories", None) or []
            return {float(c.code): str(c.label.get(lang, c.code)) for c in cats} or None
        col = getattr(it, "collapsed", None)
        if col is not None and col.id == column:
            return {float(g.code): str(g.label.get(lang, g.code)) for g in col.groups}
    return None


def scored_table(run: Run) -> pd.DataFrame:
    """The scored table analysed: with the disclosure rule applied once it ran."""
    return run.out("disclosure" if run.ok("disclosure") else "score").tables["scored"]


def labelled_column(run: Run, column: str) -> pd.Series | None:
    """A grouping or described column as labelled by the disclosure rule (None before it ran)."""
    if not run.ok("disclosure") or column not in run.out("disclosure").tables["groups"].columns:
        return None
    col = run.out("disclosure").tables["groups"][column]
    return col.astype(object).where(col.notna(), None)


# the demographics the sample description tabulates, besides the study's groups
DESCRIBED = (("language", "Interview language"), ("AGEBAND", "Age"), ("GENDER", "Gender"))


def group_column(run: Run, index: int) -> pd.Series:
    """The labelled grouping column ``groups[index]``; StepFailure naming the line if absent."""
    name = run.study.groups[index]
    labelled = labelled_column(run, name)
    if labelled is not None:
        return labelled
    scored = scored_table(run)
    if name in scored.columns:
        col = scored[name]
    elif name in response_table(run).columns:
        col = response_table(run)[name]
    else:
        import difflib

        cols = [c for c in scored.columns]
        hint = difflib.get_close_matches(name, cols, n=1)
        raise StepFailure("MissingGroupColumn", f"{run.study.where('groups', index)}: group column '{name}' is not in "
                          "the data" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; data files: {', '.join(s.file or s.store for s in run.study.data)}")
    item = next((it for it in run.instrument.items if it.id == name), None)
    if item is not None and run.instrument.scales[item.scale].type == "text":
        raise StepFailure("FreeTextGroup", f"{run.study.where('groups', index)}: '{name}' holds free-text answers; "
                          "free text never enters a report, so it cannot define groups (code it into categories first)")
    labels = labels_for(run.instrument, name)
    if labels and pd.api.types.is_numeric_dtype(col):
        mapped = pd.to_numeric(col, errors="coerce").map(labels)
        return mapped.where(mapped.notna(), None).astype(object)
    return col.astype(object).where(col.notna(), None)


def study_constructs(run: Run) -> list[str] | None:
    """The constructs the study's measurement model measures (None: every latent one)."""
    syntax = safe_syntax(run.study, "measurement")
    if not syntax:
        return None
    from analysis.sem.syntax import parse_model

    try:
        latent = list(dict.fromkeys(s.lhs for s in parse_model(syntax) if s.op == "=~"))
    except Exception:  # a broken measurement model fails in its own step
        return None
    known = {c.id for c in run.instrument.constructs}
    return [c for c in latent if c in known] or None


def parsed_text(syntax: str) -> str | None:
    """The model text if it parses as lavaan syntax; text that does not is never copied into the bundle."""
    from analysis.errors import ModelSyntaxError
    from analysis.sem.syntax import parse_model

    try:
        parse_model(syntax)
    except ModelSyntaxError:
        return None
    return syntax


def error_text(exc: Exception) -> str:
    """An exception as a message for the bundle: a syntax error gives its line and column,
    not the source line (model text that does not parse may be any file)."""
    from analysis.errors import ModelSyntaxError

    if isinstance(exc, ModelSyntaxError) and exc.line is not None:
        # quoted fragments longer than an operator are the file's text, not the grammar's
        message = re.sub(r"'[^']{4,}'", "'…'", exc.message)
        return f"line {exc.line}, col {exc.col}: {message} (the text is not copied into the results)"
    return str(exc)


def safe_syntax(study: Study, name: str) -> str | None:
    from analysis.study.spec import MODELS_DIR, measurement_model

    try:
        names = study.model_names()
        if name in names:
            return study.model_syntax(names.index(name))
        if name == "measurement":
            return measurement_model(study.load_instrument())
    except StudyError:
        return None

    p = MODELS_DIR / f"{name}.lav"
    return p.read_text(encoding="utf-8") if p.is_file() else None
