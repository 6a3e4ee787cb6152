"""The results bundle: results.json's content, the Parquet tables and the figures the report reads.

Everything published comes from steps that applied disclosure control; the bundle adds no count of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis.study.hashing import sha256_bytes, suite_version
from analysis.study.records import RESULTS_SCHEMA
from analysis.study.runner import Run
from analysis.study.serialize import clean, write_parquet
from analysis.study.spec import Study, StudyError
from analysis.study.steps.common import parsed_text, response_table
from analysis.study.steps.data import source_inputs
from instruments.ingest import file_sha256


def _settings(study: Study) -> dict[str, Any]:
    """study.yaml's settings for the bundle; inline model text that does not parse is left out too."""
    settings = clean(study.model_dump())
    for model in settings.get("models") or []:
        if isinstance(model, dict) and model.get("syntax") is not None:
            model["syntax"] = parsed_text(model["syntax"])
    return settings


def build_bundle(run: Run) -> dict[str, Any]:
    study = run.study
    res_dir = run.results_dir
    (res_dir / "tables").mkdir(parents=True, exist_ok=True)
    (res_dir / "figures").mkdir(parents=True, exist_ok=True)
    data = lambda name: run.out(name).data if run.ok(name) else None  # noqa: E731

    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "suite": {"name": "community-resilience-suite", "version": suite_version(), "code_sha256": run.fingerprint},
        "study": {"file": study.path.name, "sha256": file_sha256(study.path) if study.path.is_file() else None,
                  "title": study.title, "settings": _settings(study), "seed": study.seed,
                  "disclosure_threshold": study.disclosure.threshold,
                  "problems": [i.to_dict() for i in run.issues]},
        "steps": {name: rec.result_dict() for name, rec in run.records.items()},
        "step_order": list(run.records),  # the keys above are sorted; the report lists failures in run order
    }
    if run.instrument is not None:
        results["instrument"] = {"id": run.instrument.id, "version": run.instrument.version,
                                 "title": run.instrument.title, "sha256": run.instrument_hash,
                                 "file": Path(run.instrument_path).name,
                                 "languages": list(run.instrument.languages),
                                 "default_language": run.instrument.default_language,
                                 "constructs": _glossary(run.instrument),
                                 "references": [r.citation for r in run.instrument.references]}
    results["inputs"] = clean([{k: v for k, v in s.items() if k != "index"} for s in source_inputs(run)])
    syntax = {}
    for i, spec in run.study.model_specs():
        try:
            syntax[spec.name] = parsed_text(study.model_syntax(i))
        except StudyError:
            syntax[spec.name] = None
    results["model_syntax"] = syntax
    results["model_sha256"] = {k: (sha256_bytes(v.encode()) if v else None) for k, v in syntax.items()}
    results["import"] = data("import")
    results["validation"] = data("validate")
    results["disclosure"] = data("disclosure")
    results["scoring"] = data("score")
    if run.ok("disclosure") and run.study.disclosure.small_groups == "drop":
        _count_kept_rows(results, response_table(run))
        results["scoring"] = run.out("disclosure").data["scoring"]
    results["quality"] = data("quality")
    results["sample"] = data("describe")
    results["reliability"] = data("reliability")
    results["icc"] = data("icc") if "icc" in run.records else None
    results["design"] = data("design") if "design" in run.records else None
    results["cfa"] = data("cfa")
    results["models"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records if n.startswith("model:") and run.ok(n)}
    results["comparisons"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records
                              if n.startswith("compare:") and run.ok(n)}
    results["bootstrap"] = next((run.out(n).data for n in run.records if n.startswith("bootstrap:") and run.ok(n)), None)
    results["invariance"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records
                             if n.startswith("invariance:") and run.ok(n)}
    results["group_paths"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records
                              if n.startswith("groups:") and run.ok(n)}
    results["sensitivity"] = next((run.out(n).data for n in run.records
                                   if n.startswith("sensitivity:") and run.ok(n)), None)
    # the verdicts on the study's hypotheses, in study.yaml's order; the first leads the report
    results["hypotheses"] = []
    for h in study.hypotheses:
        comp = results["comparisons"].get(f"{h.model}-vs-{h.against}")
        results["hypotheses"].append({**h.model_dump(), "verdict": comp["verdict"] if comp else None})
    results["verdict"] = next((h["verdict"] for h in results["hypotheses"] if h["verdict"]), None)
    results["model_descriptions"] = {name: study.model_description(name) for name in study.model_names()}

    # tables for the report (Parquet) and figures
    tables: dict[str, str] = {}
    if run.ok("describe"):
        dist = run.out("describe").tables["item_distributions"]
        write_parquet(dist, res_dir / "tables" / "item_distributions.parquet")
        tables["item_distributions"] = "tables/item_distributions.parquet"
    for name in list(results["models"]) + (["measurement"] if results["cfa"] else []):
        d = results["cfa"] if name == "measurement" else results["models"][name]
        est = pd.DataFrame(d.get("estimates", []))
        if len(est):
            write_parquet(est, res_dir / "tables" / f"estimates_{name}.parquet")
            tables[f"estimates_{name}"] = f"tables/estimates_{name}.parquet"
    if results["bootstrap"]:
        eff = pd.DataFrame(results["bootstrap"]["effects"])
        write_parquet(eff, res_dir / "tables" / "bootstrap_effects.parquet")
        tables["bootstrap_effects"] = "tables/bootstrap_effects.parquet"
    results["tables"] = tables
    results["figures"] = _figures(run, results)
    return results


def _glossary(inst) -> list[dict[str, Any]]:
    """The instrument's constructs for the report: label, definition and item wording in each language."""
    out = []
    for c in inst.constructs:
        items = [{"id": it.id, "reverse": bool(it.reverse), "text": {k: str(v) for k, v in it.text.items()}}
                 for it in inst.items_of(c.id)]
        out.append({"id": c.id, "label": c.label, "definition": c.definition, "kind": c.kind, "items": items})
    return out


def _count_kept_rows(results: dict[str, Any], kept: pd.DataFrame) -> None:
    """Under ``small_groups: drop`` the dropped respondents leave every total, the import's too:
    the raw count minus the analysed one would be the size of the dropped groups."""
    per_source = kept["source"].value_counts()
    for section in ("import", "validation"):
        part = results.get(section)
        if not part:
            continue
        part = results[section] = json.loads(json.dumps(clean(part)))  # a copy: the step's output stays whole
        part["n_rows"] = len(kept)
        for i, src in enumerate(part.get("sources") or []):
            src["n_rows"] = int(per_source.get(i, 0))


def _figures(run: Run, results: dict[str, Any]) -> dict[str, Any]:
    from analysis.study import figures as figs

    fig_dir = run.results_dir / "figures"
    made: dict[str, Any] = {}
    problems: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        try:
            value = fn()
        except Exception as exc:  # a figure that cannot be drawn is reported, not fatal
            problems[name] = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                made[name] = value

    # one path diagram per structural model; "path_diagram" is the first (the report's lead figure)
    diagrams: dict[str, Any] = {}
    for name, d in results["models"].items():
        params = pd.DataFrame(d["estimates"])
        try:
            if "level" in params.columns:   # a two-level model: one diagram per level
                for lev in (1, 2):
                    diagrams[f"{name} (level {lev})"] = figs.path_diagram(
                        params[params["level"] == lev], fig_dir, f"{name}_level{lev}")
                continue
            diagrams[name] = figs.path_diagram(params, fig_dir, name,
                                               labels={c.id: c.label for c in run.instrument.constructs})
        except Exception as exc:  # a figure that cannot be drawn is reported, not fatal
            problems[f"path_diagram:{name}"] = f"{type(exc).__name__}: {exc}"
    if diagrams:
        made["path_diagrams"] = diagrams
        made["path_diagram"] = next(iter(diagrams.values()))
    if run.ok("describe"):
        dist = run.out("describe").tables["item_distributions"]
        attempt("item_distributions", lambda: figs.diverging_bars(dist, fig_dir, run.instrument))
    if results["bootstrap"]:
        attempt("forest", lambda: figs.forest_plot(pd.DataFrame(results["bootstrap"]["effects"]), fig_dir,
                                                   results["bootstrap"]["bootstrap"]))
    if results["invariance"]:
        attempt("invariance", lambda: figs.invariance_plot(results["invariance"], fig_dir))
    if problems:
        made["problems"] = problems
    return made
