"""The study pipeline: from ``study.yaml`` to a results bundle and a report.

    import -> validate -> score -> quality flags -> sample description
           -> reliability -> CFA (measurement) -> invariance across groups
           -> structural models -> model comparison -> bootstrap of defined effects
           -> group comparison of key paths -> results bundle -> report

Every step is cached under ``results/.cache`` by the sha256 of its inputs: the
bytes of the data files and the instrument, the step's options, the keys of
the steps it depends on, and the suite's code. A re-run after a change redoes
only what depends on it; touching only the report template re-renders the
report and refits nothing. A step that fails is recorded (step, error type,
message naming the file, line or field) and the steps that need it are
skipped; nothing stops the run, and the report says what failed.

``results/results.json`` holds every result at full precision with sorted keys
and no timestamps, so the same inputs and seed give the same bytes;
``results/run-log.json`` holds what varies between runs (times, which steps
came from the cache, paths, the command line, tool versions).

This module holds only the order of the steps, what each depends on and the
options that key it; the steps are in ``steps/``, one step's running and
caching in ``runner``/``cache``, the bundle in ``bundle``, the run log in
``runlog``, the report in ``report`` (docs/pipeline.md lists every module).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from analysis.study.bundle import build_bundle
from analysis.study.progress import Progress
from analysis.study.records import StepFailure, StepOutput, StepRecord, StudyRun
from analysis.study.report import is_shipped_template, render_study_report, untrusted_template_message
from analysis.study.runlog import write_run_log
from analysis.study.runner import Run, issue_failure
from analysis.study.serialize import dumps
from analysis.study.spec import Study, StudyError, load_study
from analysis.study.steps.common import safe_syntax
from analysis.study.steps.compare import step_compare
from analysis.study.steps.data import (load_study_instrument, present_columns, source_inputs, step_disclosure,
                                       step_import, step_quality, step_score, step_validate, withdrawn_in)
from analysis.study.steps.describe import step_describe, step_reliability
from analysis.study.steps.groups import freed_constraints, step_group_paths, step_invariance
from analysis.study.steps.models import (fit_model, fit_options, fit_output, step_bootstrap, step_design, step_icc,
                                         step_sensitivity)
from instruments.atomic import write_bytes
from instruments.ingest import file_sha256

__all__ = ["run_study"]


def run_study(study_path: str | Path | Study, *, progress: bool = True, report: bool = True,
              command: list[str] | None = None, trust_template: bool = False) -> StudyRun:
    """Run the whole study; never raises for a failed step (see :class:`StudyRun`).

    ``trust_template``: run ``report.template`` although it is not a shipped one.

    Raises :class:`~analysis.study.StudyError` only when the study file itself
    cannot be read (a YAML or schema error) or its hypotheses or comparisons name a
    model it does not define, with every problem's line and field.
    """
    t0 = time.perf_counter()
    study = study_path if isinstance(study_path, Study) else load_study(study_path)
    if study.reference_issues():  # the comparison the report is about would silently be missing
        raise StudyError(study.reference_issues())
    run = Run(study, progress=False)
    models = [n for n in study.model_names()]
    structural = study.structural_models()
    pairs = [(a, b) for a, b in study.comparison_pairs() if a in models and b in models]
    boot_model = study.bootstrap_model()
    group_model = boot_model or (structural[0] if structural else None)
    # one tick per step below: 8 fixed steps, cfa, invariance and key paths per group, models,
    # comparisons, bootstrap, the bundle and (when asked for) the report
    # the model refitted without flagged respondents: the first hypothesis's, else the first structural one
    lead = next((h.model for h in study.hypotheses if h.model in structural), structural[0] if structural else None)
    n_steps = (8 + ("measurement" in models) + len(study.groups) * (1 + (group_model is not None))
               + len(structural) + (lead is not None) + len(pairs) + (boot_model is not None) + 1 + bool(report))
    run.progress = Progress(progress, n_steps)
    try:
        inst_rec = run.step("instrument", "Load the instrument", lambda: (load_study_instrument(run), StepOutput(
            data={"id": run.instrument.id, "version": run.instrument.version, "sha256": run.instrument_hash}))[1],
            options={"instrument": study.instrument},
            inputs={"file": _instrument_input(study)})
        if inst_rec.status == "ok" and run.instrument is None:  # cached: load it anyway (cheap)
            load_study_instrument(run)
        src_inputs = source_inputs(run)
        run.step("import", "Import the data", lambda: step_import(run), deps=("instrument",),
                 options=[s.model_dump() for s in study.data] + (
                     [study.design.model_dump()] if study.design is not None else []),
                 inputs={"sources": src_inputs, "withdrawn": sorted(withdrawn_in(study))})
        validated = run.step("validate", "Validate the answers", lambda: step_validate(run), deps=("import",))
        if validated.status == "ok" and run.out("validate").data.get("n_errors"):
            # the analyses still run (the report shows them), but the run is not a success
            validated.message = (f"the data break the instrument's rules: {run.out('validate').data['n_errors']} "
                                 "error(s); see results.json 'validation' and the report")
        run.step("score", "Score the constructs", lambda: step_score(run), deps=("import",))
        run.step("disclosure", "Disclosure control (small groups)", lambda: step_disclosure(run),
                 deps=("import", "score"), options={**study.disclosure.model_dump(), "groups": present_columns(run, study.groups)})
        run.step("quality", "Data-quality flags", lambda: step_quality(run), deps=("import", "disclosure"),
                 options={"threshold": study.disclosure.threshold})
        run.step("describe", "Describe the sample", lambda: step_describe(run), deps=("import", "disclosure"),
                 options={"threshold": study.disclosure.threshold, "groups": study.groups,
                          "measurement": safe_syntax(study, "measurement")})
        run.step("reliability", "Reliability and validity", lambda: step_reliability(run), deps=("import", "disclosure"),
                 options={"measurement": safe_syntax(study, "measurement")})
        if study.design is not None and (study.design.weights or study.design.cluster or study.design.strata):
            run.step("design", "Sample design", lambda: step_design(run), deps=("import", "disclosure"),
                     options={"design": study.design.model_dump(), "threshold": study.disclosure.threshold,
                              "groups": study.groups})
        if study.design is not None and study.design.cluster:
            run.step("icc", f"ICCs by {study.design.cluster}", lambda: step_icc(run), deps=("import", "disclosure"),
                     options={"cluster": study.design.cluster})
        if "measurement" in models:
            m_opts = {"syntax": safe_syntax(study, "measurement"), **fit_options(study)}
            run.step("cfa", "CFA (measurement model)",
                     lambda: fit_output(fit_model(run, "measurement")), deps=("disclosure",), options=m_opts)
        for i, g in enumerate(study.groups):
            run.step(f"invariance:{g}", f"Invariance across {g}", lambda i=i: step_invariance(run, i),
                     deps=("disclosure",), options={"group": g, "syntax": safe_syntax(study, "measurement"),
                                                    "min": study.min_group_size, "thr": study.disclosure.threshold,
                                                    **fit_options(study)})
        for name in structural:
            run.step(f"model:{name}", f"Model {name}", lambda name=name: fit_output(fit_model(run, name)),
                     deps=("disclosure",), options={"syntax": safe_syntax(study, name), **fit_options(study)})
        # the lead model refitted without the respondents any quality flag marked:
        # do the findings hang on careless answers?
        if lead is not None:
            run.step(f"sensitivity:{lead}", f"Model {lead} without flagged respondents",
                     lambda: step_sensitivity(run, lead), deps=(f"model:{lead}", "quality"),
                     options={"syntax": safe_syntax(study, lead), **fit_options(study)})
        for a, b in pairs:
            run.step(f"compare:{a}-vs-{b}", f"Compare {a} vs {b}", lambda a=a, b=b: step_compare(run, a, b),
                     deps=(f"model:{a}", f"model:{b}"))
        if boot_model is not None and boot_model not in structural:
            problems = [i for i in run.issues if i.field == "bootstrap.model"]
            run.step(f"bootstrap:{boot_model}", f"Bootstrap ({study.bootstrap.replications} reps)",
                     lambda: (_ for _ in ()).throw(issue_failure(problems, "UnknownModel")))
        elif boot_model is not None:
            run.step(f"bootstrap:{boot_model}", f"Bootstrap ({study.bootstrap.replications} reps)",
                     lambda: step_bootstrap(run, boot_model), deps=(f"model:{boot_model}",),
                     options={**study.bootstrap.model_dump(), "seed": study.seed})
        if group_model is not None:
            for i, g in enumerate(study.groups):
                run.step(f"groups:{g}", f"Key paths across {g}", lambda i=i: step_group_paths(run, i, group_model),
                         deps=("disclosure",), options={"group": g, "model": group_model, "paths": study.group_paths,
                                                        "freed": freed_constraints(run, g),
                                                        "syntax": safe_syntax(study, group_model),
                                                        "min": study.min_group_size, "thr": study.disclosure.threshold,
                                                        **fit_options(study)})
        # the bundle is always rewritten (cheap, deterministic)
        run.progress.start("Write the results bundle")
        tb = time.perf_counter()
        results = build_bundle(run)
        write_bytes(run.results_dir / "results.json", dumps(results).encode())
        bundle_rec = StepRecord("bundle", "Write the results bundle", "ok", seconds=time.perf_counter() - tb)
        run.records["bundle"] = bundle_rec
        run.progress.done(bundle_rec)
        report_info: dict[str, Any] = {}
        # the report's reproducibility appendix reads the run log: write it before rendering
        write_run_log(StudyRun(study, run.results_dir, list(run.records.values()), results,
                               seconds=time.perf_counter() - t0), command)
        if report:
            run.progress.start("Render the report")
            tr = time.perf_counter()
            rec = StepRecord("report", "Render the report", "ok")
            try:
                template = study.resolve(study.report.template) if study.report.template else None
                if template is not None and not trust_template and not is_shipped_template(template):
                    raise StepFailure("UntrustedTemplate", f"{study.where('report', 'template')}: "
                                      + untrusted_template_message(study.report.template))
                report_info = render_study_report(run.results_dir, study.reports_dir, trust_template=trust_template,
                                                  formats=tuple(study.report.formats), template=template)
                rec.cached = bool(report_info.get("cached"))
                rec.key = report_info.get("key", "")
                if report_info.get("skipped"):  # a format asked for and not made is a failure, with why
                    rec.status, rec.error_type = "failed", "FormatNotMade"
                    rec.message = "; ".join(f"{k}: {v}" for k, v in report_info["skipped"].items())
            except Exception as exc:  # the bundle is there; say why the report is not
                kind = exc.kind if isinstance(exc, StepFailure) else type(exc).__name__
                rec.status, rec.error_type, rec.message = "failed", kind, str(exc)
            rec.seconds = time.perf_counter() - tr
            run.records["report"] = rec
            run.progress.done(rec)
    finally:
        run.progress.close()
    sr = StudyRun(study=study, results_dir=run.results_dir, steps=list(run.records.values()), results=results,
                  report=report_info, seconds=time.perf_counter() - t0)
    write_run_log(sr, command)
    return sr


def _instrument_input(study: Study) -> str | None:
    from instruments import library_path

    p = study.resolve(study.instrument)
    if not p.is_file():
        p = library_path(study.instrument)
    return file_sha256(p) if p.is_file() else None
