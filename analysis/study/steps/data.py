"""The data steps: load the instrument, import the sources, validate, score, apply the
small-groups disclosure rule, flag data quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.study.disclosure import SUPPRESSED
from analysis.study.records import StepFailure, StepOutput, Unavailable
from analysis.study.runner import Run, issue_failure
from analysis.study.serialize import clean
from analysis.study.spec import Study, StudyError
from analysis.study.steps.common import DESCRIBED, group_column, labels_for, response_table
from instruments.ingest import file_sha256


def load_study_instrument(run: Run) -> None:
    from instruments import InstrumentError, load_instrument

    ref = run.study.instrument
    path = run.study.instrument_path()
    if path is None:
        raise StudyError([run.study.issue("unknown-instrument", f"instrument not found: '{ref}' is neither a "
                                          "file nor a shipped instrument", "instrument")])
    try:
        run.instrument = load_instrument(path)
    except InstrumentError as exc:
        raise StepFailure("InstrumentError", f"{run.study.where('instrument')}: the instrument has errors:\n{exc}") from None
    run.study._instrument = run.instrument  # the measurement model is built from this one
    run.instrument_hash = file_sha256(path)
    run.instrument_path = path


def source_inputs(run: Run) -> list[dict[str, Any]]:
    out = []
    for i, src in enumerate(run.study.data):
        entry: dict[str, Any] = {"index": i, "format": src.format}
        if src.file is not None:
            p = run.study.resolve(src.file)
            entry.update(file=src.file, sha256=file_sha256(p) if p.is_file() else None)
            if src.mapping is not None:
                mp = run.study.resolve(src.mapping)
                entry["mapping_sha256"] = file_sha256(mp) if mp.is_file() else None
        else:
            root = run.study.resolve(src.store)
            manifest = root / "data" / "raw" / "manifest.json"
            db = root / "study.duckdb"
            entry.update(store=src.store, sha256=file_sha256(db) if db.is_file() else None,
                         manifest=file_sha256(manifest) if manifest.is_file() else None)
        out.append(entry)
    return out


def step_import(run: Run) -> StepOutput:
    from instruments.ingest import ImportError_, import_responses

    study, inst = run.study, run.instrument
    problems = [i for i in run.issues if i.field.startswith("data")]
    if problems:
        raise issue_failure(problems, "MissingDataFile")
    frames, sources, imports = [], [], []
    withdrawn = withdrawn_in(study)
    for i, src in enumerate(study.data):
        if src.file is not None:
            path = study.resolve(src.file)
            try:
                res = import_responses(path, inst, format=src.format,
                                       mapping=study.resolve(src.mapping) if src.mapping else None)
            except ImportError_ as exc:
                raise StepFailure("ImportError", f"{study.where('data', i, 'file')}: {exc}") from None
            res.data = _attach_design_columns(path, study, res.data)
            if withdrawn:  # respondents who withdrew: their answers (and issues quoting them) go
                res.issues = [x for x in res.issues if str(x.respondent_id) not in withdrawn]
                res.data = _without(res.data, withdrawn)
            data = res.data.copy()
            issue_types = pd.Series([x.type for x in res.issues], dtype=object).value_counts()
            sources.append({"file": src.file, "name": path.name, "sha256": res.sha256, "format": res.format,
                            "n_rows": res.n_rows, "n_errors": len(res.errors), "n_warnings": len(res.warnings),
                            "issues": {str(k): int(v) for k, v in issue_types.items()}})
            # what the validate step needs to rebuild this import's result from the stacked table:
            # the problems met while reading, the mapping's not-asked items, the file's own columns
            imports.append({"format": res.format, "sha256": res.sha256, "issues": list(res.issues),
                            "column_map": res.column_map, "platform_columns": res.platform_columns,
                            "unknown_columns": res.unknown_columns, "encoding": res.encoding,
                            "delimiter": res.delimiter, "absent": res.absent, "columns": list(data.columns)})
        else:
            try:
                from instruments.store import Study as Store
            except ImportError as exc:
                raise Unavailable(f"the study store needs instruments.store ({exc})") from None
            store = Store(study.resolve(src.store))
            data = _without(store.responses(), withdrawn)
            if data.empty:
                raise StepFailure("EmptyStore", f"{study.where('data', i, 'store')}: the study store "
                                  f"{store.db_path} holds no responses; import files with `resilience import`")
            sources.append({"store": src.store, "name": store.db_path.name, "n_rows": len(data),
                            "sha256": file_sha256(store.db_path), "format": "store"})
            imports.append({"columns": list(data.columns)})
        data.insert(0, "source", i)
        frames.append(data)
    responses = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(responses) == 0:
        raise StepFailure("NoData", "the data sources hold no responses")
    return StepOutput(data={"sources": sources, "n_rows": len(responses)}, tables={"responses": responses},
                      objects={"imports": imports})


def _attach_design_columns(path: Path, study: Study, frame: pd.DataFrame) -> pd.DataFrame:
    """Design columns (weights, clusters, strata) that the instrument does not define are left out
    by the import; take them from the file, row for row, when it is a plain table that has them."""
    if study.design is None:
        return frame
    wanted = [c for c in study.design.to_design().columns if c not in frame.columns]
    if not wanted:
        return frame
    from analysis.sem.data import read_table

    try:
        raw = read_table(path)
    except Exception:  # noqa: BLE001 - not a plain table: the design steps name the missing column
        return frame
    if len(raw) != len(frame) or any(c not in raw.columns for c in wanted):
        return frame
    frame = frame.copy()
    for c in wanted:
        frame[c] = raw[c].to_numpy()
    return frame


def withdrawn_in(study) -> set[str]:
    """Reference codes withdrawn in the study folder or its stores: left out of every analysis."""
    from instruments.web.withdraw import withdrawn_codes

    folders = {study.root} | {study.resolve(s.store) for s in study.data if s.store is not None}
    return set().union(*(withdrawn_codes(f) for f in folders))


def _without(data: pd.DataFrame, withdrawn: set[str]) -> pd.DataFrame:
    if not withdrawn or "respondent_id" not in data:
        return data
    return data[~data["respondent_id"].astype("string").isin(withdrawn).fillna(False).to_numpy()]


def step_validate(run: Run) -> StepOutput:
    """Each source validated as imported (its reading problems and the mapping's not-asked items
    included, rows numbered as in its file); the issues merged with the source named in each."""
    from instruments.ingest import ImportResult
    from instruments.validate import ISSUE_COLUMNS, validate

    responses = response_table(run)
    imports = run.out("import").objects.get("imports")
    if imports is None or len(imports) != len(run.study.data):
        raise StepFailure("StaleCache", "the import step's cached result predates per-source validation; "
                          "delete results/.cache/import and run again")
    frames, per_source = [], []
    for i, (src, meta) in enumerate(zip(run.study.data, imports)):
        name = src.file or src.store
        part = responses[responses["source"] == i]
        # a column another source has is not this source's column
        part = part[[c for c in meta["columns"] if c in part.columns]].reset_index(drop=True)
        if "issues" in meta:
            fields = {k: v for k, v in meta.items() if k != "columns"}
            report = validate(ImportResult(data=part, source=name, **fields), run.instrument, source=name)
        else:  # the study store: its answers were checked when they were stored
            report = validate(part, run.instrument, source=name)
        frames.append(report.issues.assign(source=name))
        per_source.append({"source": name, "n_rows": len(part), "n_errors": report.n_errors,
                           "n_warnings": report.n_warnings, "valid": report.valid, "counts": clean(report.counts())})
    issues = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ISSUE_COLUMNS + ["source"])
    issues = issues[["source"] + ISSUE_COLUMNS]
    n_errors = int((issues["severity"] == "error").sum())
    counts = (issues.groupby(["type", "severity"]).size().rename("n").reset_index()
              .sort_values(["severity", "n", "type"], ascending=[True, False, True]) if len(issues)
              else pd.DataFrame(columns=["type", "severity", "n"]))
    return StepOutput(data={"n_rows": int(len(responses)), "n_errors": n_errors,
                            "n_warnings": int((issues["severity"] == "warning").sum()), "valid": n_errors == 0,
                            "counts": clean(counts), "sources": per_source},
                      tables={"issues": issues})


def step_score(run: Run) -> StepOutput:
    from instruments.score import score

    res = score(response_table(run), run.instrument)
    table = res.table.copy()
    return StepOutput(data={"n_rows": len(table), "constructs": res.constructs, "min_items": res.min_items,
                            "summary": clean(res.summary())},
                      tables={"scored": table})


def present_columns(run: Run, columns: list[str]) -> list[str]:
    """The columns the data hold (a group naming an absent column changes nothing the rule does)."""
    if not (run.ok("import") and run.ok("score")):
        return list(columns)
    have = set(run.out("score").tables["scored"].columns) | set(run.out("import").tables["responses"].columns)
    return [c for c in columns if c in have]


def step_disclosure(run: Run) -> StepOutput:
    """The study-wide small-groups rule (``disclosure`` in study.yaml), before any analysis.

    Every grouping and described variable is labelled (table ``groups``, which
    the group steps and the sample description read), and each category with
    fewer than k respondents is merged into the residual category or dropped
    (rows and all), so that no total, margin, ``ntotal`` or mean published
    later can be subtracted down to a small group (analysis.study.disclosure). The
    scored columns themselves stay as they are: a model may use a code as a covariate.
    """
    from analysis.study.disclosure import apply_small_groups, category_sizes

    rule = run.study.disclosure
    scored = run.out("score").tables["scored"]
    responses = run.out("import").tables["responses"]
    if len(scored) != len(responses):
        raise StepFailure("Misaligned", "the scored table and the responses differ in length")
    labelled = pd.DataFrame(index=scored.index)
    for i, g in enumerate(run.study.groups):
        try:
            labelled[g] = group_column(run, i).to_numpy()
        except StepFailure:  # the steps that use this group say why it cannot be used
            continue
    for col, _ in DESCRIBED:
        src = scored[col] if col in scored.columns else responses[col] if col in responses.columns else None
        if src is None or col in labelled.columns:
            continue
        labels = labels_for(run.instrument, col)
        if labels and pd.api.types.is_numeric_dtype(src):
            src = pd.to_numeric(src, errors="coerce").map(labels)
        labelled[col] = src.astype(object).where(src.notna(), None).to_numpy()
    columns = list(labelled.columns)
    sizes = {c: category_sizes(labelled[c]) for c in columns}
    groups, handled = apply_small_groups(labelled, columns, k=rule.k, rule=rule.small_groups,
                                         residual=rule.residual)
    kept = scored.index.isin(groups.index)
    tables = {"scored": scored[kept].reset_index(drop=True), "groups": groups.reset_index(drop=True)}
    # names only: the sizes of what was merged or dropped are exactly what must not be published
    # and which of them were under k (the others only joined them so that the residual holds k)
    below = {c: [cat for cat in cats if sizes[c].get(cat, 0) < rule.k] for c, cats in handled.items()}
    data = {"k": rule.k, "small_groups": rule.small_groups, "residual": rule.residual, "variables": columns,
            "handled": handled, "below_k": below}
    if rule.small_groups == "drop":
        tables["responses"] = responses[kept].reset_index(drop=True)
        # the scoring summary (means, n scored) of the respondents kept: over everyone, minus the
        # group means, it would give the dropped ones' means
        from instruments.score import score

        res = score(tables["responses"], run.instrument)
        data["scoring"] = {"n_rows": len(res.table), "constructs": res.constructs, "min_items": res.min_items,
                           "summary": clean(res.summary())}
    return StepOutput(data=data, tables=tables)


def step_quality(run: Run) -> StepOutput:
    from instruments.quality import quality_flags

    res = quality_flags(response_table(run), run.instrument)
    summary = res.summary()
    thr = run.study.disclosure.threshold
    summary = _mask_small_counts(summary, "n_flagged", ["pct_flagged"], thr)
    flags = res.table[[c for c in res.table.columns if c.startswith("flag_") or c == "n_flags"]].copy()
    return StepOutput(data={"summary": clean(summary), "rules": res.rules, "notes": res.notes,
                            "n_any": safe_count(int((res.table["n_flags"] > 0).sum()), thr)},
                      tables={"flags": flags.astype(float)})


def safe_count(n: int, threshold: int) -> int | str:
    return SUPPRESSED if 0 < n < threshold else n


def _mask_small_counts(df: pd.DataFrame, count_col: str, also: list[str], threshold: int) -> pd.DataFrame:
    """Counts of fewer than ``threshold`` (and what reveals them) shown as the suppression marker."""
    out = df.copy().astype({count_col: object})
    small = pd.to_numeric(df[count_col], errors="coerce").between(1, threshold - 1)
    out.loc[small, count_col] = SUPPRESSED
    for c in also:
        if c in out:
            out[c] = out[c].astype(object)
            out.loc[small, c] = None
    return out
