"""The sample description (with disclosure control) and the reliability of the constructs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.study.disclosure import suppress_counts, SUPPRESSED
from analysis.study.records import StepFailure, StepOutput
from analysis.study.runner import Run
from analysis.study.serialize import clean
from analysis.study.steps.common import DESCRIBED, group_column, labelled_column, labels_for, response_table, scored_table, study_constructs


def _language_recorded(run: Run) -> bool:
    """Whether the data say which language each interview was in: the instrument has several and
    no source lacked a language column (the import then assumes the default language)."""
    if len(run.instrument.languages) < 2:
        return False
    imports = run.out("import").objects.get("imports") or []
    return not any(getattr(issue, "type", "") == "language-assumed" for meta in imports
                   for issue in meta.get("issues", []))


def step_describe(run: Run) -> StepOutput:
    """Sample description and item distributions, with disclosure control applied here."""
    inst, study = run.instrument, run.study
    thr = study.disclosure.threshold
    scored = scored_table(run)
    n = len(scored)
    out: dict[str, Any] = {"n": n, "threshold": thr, "tables": {}}
    tables: dict[str, pd.DataFrame] = {}

    def one_way(series: pd.Series, name: str) -> dict[str, Any]:
        counts = series.fillna("(missing)").astype(str).value_counts().sort_index()
        table = suppress_counts(counts.to_frame("n"), threshold=thr)
        shown = table.formatted(totals=True)
        return {"title": name, "rows": [{"category": str(k), "n": v} for k, v in shown["n"].items()],
                "n_suppressed": table.n_suppressed}

    described = []
    for col, title in DESCRIBED:
        if col == "language" and not _language_recorded(run):
            continue  # "Interview language: en 900" would only restate the import's assumption
        if labelled_column(run, col) is not None:
            described.append((col, title, labelled_column(run, col)))
        elif col in scored.columns or col in response_table(run).columns:
            src = scored[col] if col in scored.columns else response_table(run)[col]
            labels = labels_for(inst, col)
            if labels and pd.api.types.is_numeric_dtype(src):
                src = pd.to_numeric(src, errors="coerce").map(labels)
            described.append((col, title, src))
    group_cols = {}
    for i, g in enumerate(study.groups):
        try:
            group_cols[g] = group_column(run, i)
        except StepFailure:
            continue
        described.append((g, f"Group: {g}", group_cols[g]))
    for col, title, src in described:
        out["tables"][col] = one_way(src, title)
    # crosstab of each grouping variable by gender: the classic small-cell risk
    gender = dict((c, s) for c, _, s in described).get("GENDER")
    crosstabs = {}
    for g, gcol in group_cols.items():
        if gender is None:
            break
        ct = pd.crosstab(gcol.fillna("(missing)").astype(str), gender.fillna("(missing)").astype(str))
        table = suppress_counts(ct, threshold=thr)
        shown = table.formatted(totals=True)
        crosstabs[g] = {"title": f"{g} by gender", "index": [str(i) for i in shown.index],
                        "columns": [str(c) for c in shown.columns],
                        "cells": [[str(v) for v in row] for row in shown.to_numpy()],
                        "n_suppressed": table.n_suppressed}
    out["crosstabs"] = crosstabs

    # construct means by group: a group statistic, hidden for groups under the threshold
    from analysis.study.disclosure import suppress_by_n

    score_cols = [c for c in (run.out("score").data.get("constructs") or []) if c in scored.columns]
    wanted = study_constructs(run)
    if wanted is not None:
        score_cols = [c for c in score_cols if c in wanted]
    means = {}
    for g, gcol in group_cols.items():
        frame = scored[score_cols].astype(float).assign(__g=gcol.to_numpy())
        frame = frame[frame["__g"].notna()]
        stats = frame.groupby("__g")[score_cols].mean()
        stats.insert(0, "n", frame.groupby("__g").size())
        shown = suppress_by_n(stats, "n", threshold=thr)
        means[g] = {"title": f"Mean construct scores by {g}", "columns": ["group", "n"] + score_cols,
                    "rows": [[str(idx), SUPPRESSED if row["suppressed"] else int(row["n"])]
                             + [None if row["suppressed"] else float(row[c]) for c in score_cols]
                             for idx, row in shown.iterrows()]}
    out["group_means"] = means

    # item response distributions, per construct, suppressed per item x category
    rows = []
    for c, items, counts in _answer_counts(run):
        scale = inst.scales[items[0].scale]
        codes = list(counts.columns)
        labels = {float(cat.code): str(cat.label.get(inst.default_language, cat.code)) for cat in scale.categories}
        table = suppress_counts(counts, threshold=thr)
        answered = counts.sum(axis=1)
        for it in items:
            for code in codes:
                hidden = bool(table.mask.loc[it.id, code])
                k = float(counts.loc[it.id, code])
                rows.append({"construct": c.id, "item": it.id, "reverse": bool(it.reverse), "code": code,
                             "label": labels.get(code, str(code)), "n": None if hidden else k,
                             "pct": None if hidden else (100 * k / answered[it.id] if answered[it.id] else None),
                             "suppressed": hidden,
                             "text": str(it.text.get(inst.default_language, it.id))})
    dist = pd.DataFrame(rows)
    tables["item_distributions"] = dist
    out["item_distributions"] = {"n_items": int(dist["item"].nunique()) if len(dist) else 0,
                                 "n_suppressed": int(dist["suppressed"].sum()) if len(dist) else 0}
    return StepOutput(data=out, tables=tables)


def _answer_counts(run: Run):
    """(construct, items, items x codes counts) of the answers as given (before reverse-keying),
    missing codes excluded: the table published, suppressed, as item_distributions."""
    inst = run.instrument
    scored, raw = scored_table(run), response_table(run)
    wanted = study_constructs(run)
    for c in inst.constructs:
        if getattr(c, "kind", "latent") == "observed" or (wanted is not None and c.id not in wanted):
            continue
        items = [it for it in inst.items_of(c.id) if it.id in scored.columns]
        if not items:
            continue
        codes = [float(k) for k in inst.scales[items[0].scale].codes]
        counts = pd.DataFrame({it.id: pd.to_numeric(raw[it.id], errors="coerce").value_counts().reindex(codes, fill_value=0)
                               for it in items}).T
        yield c, items, counts


def _items_with_hidden_answers(run: Run) -> set[str]:
    """Items whose published answer distribution hides a cell (primary or complementary): with
    their mean and SD beside the shown cells, a reader could solve the hidden ones."""
    hidden: set[str] = set()
    for _, _, counts in _answer_counts(run):
        mask = suppress_counts(counts, threshold=run.study.disclosure.threshold).mask
        hidden |= {item for item in counts.index if mask.loc[item].any()}
    return hidden


def step_reliability(run: Run) -> StepOutput:
    from analysis.psychometrics.reliability import reliability_report

    res = reliability_report(response_table(run), run.instrument, constructs=study_constructs(run))
    d = clean(res.to_dict())
    hidden = _items_with_hidden_answers(run)
    for item in d.get("items") or []:
        # the distributions are published once, suppressed, in tables/item_distributions
        item.pop("dist", None)
        if item.get("item") in hidden:
            item.update(mean=None, sd=None, floor=None, ceiling=None)
    return StepOutput(data=d)
