"""The model steps: fitting a study's model (design, two levels, imputation), the sample-design
section, ICCs by cluster, the sensitivity refit without flagged respondents and the bootstrap.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.records import StepFailure, StepOutput
from analysis.study.runner import Run
from analysis.study.serialize import clean
from analysis.study.spec import Study, StudyError
from analysis.study.steps.common import error_text, group_column, response_table, scored_table
from analysis.study.steps.data import safe_count


def fit_options(study: Study) -> dict[str, Any]:
    opts: dict[str, Any] = {"estimator": study.estimator, "missing": study.missing}
    if study.design is not None:   # in the steps' cache keys; with_design takes it out
        opts["design"] = study.design.model_dump()
    if study.ordered:
        opts["ordered"] = study.ordered
    if study.missing == "impute":   # in the steps' cache keys; fit_model takes it out
        opts["imputations"] = study.imputations
    return opts


def model_data(run: Run, group_index: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Numeric model data; with a group, its labelled column and only groups big enough to analyse."""
    scored = scored_table(run)
    # Scores of latent constructs are never model data: the models estimate those constructs.
    latent_scores = [c.id for c in run.instrument.latent_constructs if c.id in scored.columns]
    data = scored.drop(columns=latent_scores).select_dtypes(include=["number", "bool"]).astype(float)
    info: dict[str, Any] = {}
    if group_index is not None:
        gcol = group_column(run, group_index)
        name = "__group__"
        data[name] = gcol.to_numpy()
        data = data[data[name].notna()]
        sizes = data[name].value_counts()
        floor = max(run.study.min_group_size, run.study.disclosure.threshold)
        small = sizes[sizes < floor]
        data = data[~data[name].isin(small.index)].copy()
        data[name] = data[name].astype(str)
        info = {"left_out": len(small), "floor": floor, "groups": sorted(str(g) for g in sizes.index if g not in small.index)}
        if len(info["groups"]) < 2:
            raise StepFailure("TooFewGroups", f"{run.study.where('groups', group_index)}: fewer than two groups of "
                              f"'{run.study.groups[group_index]}' have at least {floor} respondents; "
                              "no multi-group comparison is possible")
    return data, info


def syntax_of(run: Run, name: str) -> tuple[int, str]:
    """(position in models, syntax) of a model; measurement falls back to the instrument's own."""
    names = run.study.model_names()
    if name in names:
        i = names.index(name)
        return i, run.study.model_syntax(i)
    from analysis.study.spec import MODELS_DIR, measurement_model

    if name == "measurement":
        return -1, measurement_model(run.instrument)

    path = MODELS_DIR / f"{name}.lav"
    if path.is_file():
        return -1, path.read_text(encoding="utf-8")
    raise StudyError([run.study.issue("unknown-model", f"model '{name}' is not in 'models'", "models")])


def fit_model(run: Run, name: str, **extra) -> Any:
    from analysis.sem.fit import fit_sem

    index, syntax = syntax_of(run, name)
    where = run.study.where("models", index) if index >= 0 else f"shipped model {name}"
    data, _ = model_data(run)
    _check_variables(run, name, where, syntax, data)
    data, extra = _two_level_data(run, syntax, data, extra)
    opts = fit_options(run.study)
    data, extra = with_design(run, data, opts, extra)
    try:
        if opts["missing"] == "impute":   # the model's items imputed m times, the fits pooled
            opts["missing"] = "listwise"
            opts.pop("imputations")
            data = _imputed(run, syntax, data)
        fit = fit_sem(syntax, data, warn=False, **opts, **extra)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"model '{name}' ({where}): {error_text(exc)}") from None
    if not fit.converged:
        why = next((w.get("message") for w in fit.warnings if isinstance(w, dict)
                    and w.get("type") == "non-convergence"), "the optimizer stopped early")
        raise StepFailure("NonConvergence", f"model '{name}' ({where}) did not converge: {why}")
    return fit


def with_design(run: Run, data: pd.DataFrame, opts: dict, extra: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """study.yaml's ``design:`` for a one-level fit: its columns joined to the model data and
    ``design=`` for fit_sem (sampling weights, clusters and strata, analysis.design). A two-level
    model (``cluster`` already in ``extra``) uses the cluster as its level instead."""
    extra = dict(extra or {})
    spec = opts.pop("design", None)
    if not spec or "cluster" in extra:
        return data, extra
    design = run.study.design.to_design()
    if design.is_empty:
        return data, extra
    data = data.copy()
    for col in design.columns:
        data[col] = _design_column(run, col).reindex(data.index).to_numpy()
    return data, {**extra, "design": design}


def _data_column(run: Run, col: str, missing: StepFailure) -> pd.Series:
    """``col`` of the scored table, else of the answers as imported; ``missing`` when neither has it."""
    for table in (scored_table(run), response_table(run)):
        if col in table.columns:
            return table[col]
    raise missing


def _design_column(run: Run, col: str) -> pd.Series:
    return _data_column(run, col, StepFailure(
        "UnknownDesignColumn", f"the design variable '{col}' ({run.study.where('design')}) is not a column of the "
        "data; mark it in the instrument (role weight, cluster or stratum) so that import keeps it"))


def step_design(run: Run) -> StepOutput:
    """The report's sample-design section (analysis.design.report): the weights, effective n, design
    effects, and construct scores and groups weighted and unweighted side by side."""
    from analysis.design.report import design_summary

    scored = scored_table(run)
    data = scored.copy()
    design = run.study.design.to_design()
    for col in design.columns:
        data[col] = _design_column(run, col).reindex(data.index).to_numpy()
    scores = [c.id for c in run.instrument.constructs if c.id in scored.columns
              and pd.api.types.is_numeric_dtype(scored[c.id])]
    groups = []
    for i, g in enumerate(run.study.groups):
        try:
            data[g] = group_column(run, i).reindex(data.index).to_numpy()
            groups.append(g)
        except StepFailure:
            continue
    try:
        out = design_summary(data, design, scores, categorical=groups, threshold=run.study.disclosure.threshold)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"sample design ({run.study.where('design')}): "
                          f"{error_text(exc)}") from None
    return StepOutput(data=clean(out))


def _imputed(run: Run, syntax: str, data: pd.DataFrame) -> list[pd.DataFrame]:
    """``missing: impute``: the model's variables imputed ``imputations`` times by chained equations
    (analysis.psychometrics.impute; ordered items by predictive mean matching), seeded by the study's seed."""
    from analysis.psychometrics.impute import impute
    from analysis.sem.partable import build_partable, observed_names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed = [v for v in observed_names(build_partable(syntax)) if v in data.columns]
    ordered = run.study.ordered
    ordered = True if ordered is True else [v for v in (ordered or []) if v in observed]
    res = impute(data, items=observed, ordered=ordered, m=run.study.imputations, seed=run.study.seed)
    return list(res.datasets)


def complete_cases(opts: dict[str, Any]) -> str | None:
    """Steps without a pooled version use complete cases under ``missing: impute``; the note says so."""
    if opts.get("missing") != "impute":
        return None
    opts["missing"] = "listwise"
    opts.pop("imputations", None)
    return ("missing: impute pools the CFA and model fits; this step has no pooled version yet and "
            "uses the complete cases (listwise)")


def _check_variables(run: Run, name: str, where: str, syntax: str, data: pd.DataFrame) -> None:
    """A model naming items the instrument does not have is refused with what it lacks
    (a shipped crs model on another questionnaire, a typo in an item id)."""
    from analysis.sem.syntax import parse_model

    try:
        statements = parse_model(syntax)
    except Exception:  # a syntax error is the fit's to report, with its line
        return
    latent = {s.lhs for s in statements if s.op == "=~"}
    used = {v for s in statements if s.op in ("=~", "~", "~~")
            for v in ((s.rhs,) if s.op == "=~" else (s.lhs, s.rhs))}
    missing = sorted(v for v in used - latent if v not in data.columns and re.fullmatch(r"[A-Za-z_][\w.]*", v))
    if not missing:
        return
    inst = run.instrument
    absent = [v for v in missing if v not in set(inst.item_ids) | set(inst.construct_ids)]
    spec = dict((sp.name, sp) for _, sp in run.study.model_specs()).get(name)
    shipped = spec is not None and spec.file is None and spec.syntax is None and name != "measurement"
    if absent:
        raise StepFailure("UnknownVariables", f"model '{name}' ({where}) uses {len(absent)} variable(s) that "
                          f"instrument '{inst.id}' does not have: {', '.join(absent[:12])}"
                          + (" ..." if len(absent) > 12 else "")
                          + (f"; the shipped model '{name}' is written for crs" if shipped and inst.id != "crs" else ""))
    raise StepFailure("MissingColumns", f"model '{name}' ({where}) needs {', '.join(missing[:12])}, which the data "
                      f"do not hold; data files: {', '.join(s.file or s.store for s in run.study.data)}")


def _two_level_data(run: Run, syntax: str, data: pd.DataFrame, extra: dict) -> tuple[pd.DataFrame, dict]:
    """A model with ``level:`` blocks is lavaan's two-level model on the study's cluster variable
    (``design: {cluster: COL}``): its data gain that column and the fit gets ``cluster=``."""
    from analysis.sem.syntax import has_levels

    try:
        if not has_levels(syntax):
            return data, extra
    except Exception:  # a syntax error is the fit's to report, with its line
        return data, extra
    cluster = run.study.design.cluster if run.study.design is not None else None
    if cluster is None:
        raise StepFailure("NoCluster", "the model has 'level:' blocks (a two-level model) but study.yaml names "
                                       "no cluster variable: add design: {cluster: COLUMN}")
    data = data.copy()
    data[cluster] = _cluster_column(run, cluster).reindex(data.index).to_numpy()
    return data, {**extra, "cluster": cluster}


def _cluster_column(run: Run, cluster: str) -> pd.Series:
    return _data_column(run, cluster, StepFailure(
        "UnknownCluster", f"the cluster variable '{cluster}' (design.cluster in study.yaml) is not a column of the data"))


def step_icc(run: Run) -> StepOutput:
    """ICC(1) of every item and construct score by the study's cluster variable (analysis.sem.twolevel)."""
    from analysis.sem.twolevel import icc_report

    cluster = run.study.design.cluster
    scored = scored_table(run)
    answers = response_table(run)
    answers = answers[answers.index.isin(scored.index)].copy()
    answers[cluster] = _cluster_column(run, cluster).reindex(answers.index).to_numpy()
    try:
        table = icc_report(answers, run.instrument, cluster=cluster)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"ICCs by '{cluster}': {error_text(exc)}") from None
    return StepOutput(data={"cluster": cluster, "n_clusters": int(table["n_clusters"].max()),
                            "rows": clean(table.to_dict(orient="records"))})


def fit_output(fit) -> StepOutput:
    return StepOutput(data=clean(fit.to_dict()), objects={"fit": fit})


def get_fit(run: Run, step: str):
    out = run.out(step)
    fit = out.objects.get("fit")
    if fit is None:  # not picklable in the cache: refit (deterministic)
        name = step.split(":", 1)[1] if ":" in step else "measurement"
        fit = fit_model(run, name)
        out.objects["fit"] = fit
    return fit


def step_sensitivity(run: Run, model: str) -> StepOutput:
    """``model`` refitted on the respondents no quality flag marked, beside the fit on everyone."""
    from analysis.sem.fit import fit_sem

    data, _ = model_data(run)
    flags = run.out("quality").tables["flags"]
    if len(flags) != len(data):  # both come from the same rows; anything else would pair the wrong people
        raise StepFailure("Misaligned", f"the quality flags cover {len(flags)} rows and the model data {len(data)}")
    unflagged = data[(flags["n_flags"].to_numpy() == 0)]
    excluded = len(data) - len(unflagged)
    _, syntax = syntax_of(run, model)
    opts = fit_options(run.study)
    unflagged, extra = with_design(run, unflagged, opts)
    try:
        fit = fit_sem(syntax, unflagged, warn=False, **opts, **extra)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"model '{model}' without flagged respondents: {exc}") from None
    full = get_fit(run, f"model:{model}").params
    keys = ["lhs", "op", "rhs"]
    both = full[full["op"].isin(["~", ":="])][keys + ["est", "std.all", "pvalue"]].merge(
        fit.params[keys + ["est", "std.all", "pvalue", "ci.lower", "ci.upper"]], on=keys, suffixes=("", ".clean"))
    thr = run.study.disclosure.threshold
    return StepOutput(data={"model": model, "n_excluded": safe_count(excluded, thr), "converged": bool(fit.converged),
                            "fit": clean(fit.fit_dict()), "paths": clean(both)})


def step_bootstrap(run: Run, model: str) -> StepOutput:
    from analysis.sem.bootstrap import bootstrap_fit

    if run.study.missing == "impute":
        raise StepFailure("NotAvailable", f"bootstrap of {model}: bootstrapping pooled imputations is not available; "
                          "the pooled standard errors and t tests (Rubin's rules) are in the model's results")
    fit = get_fit(run, f"model:{model}")
    if getattr(fit, "twolevel", None) is not None:
        raise StepFailure("NotAvailable", f"bootstrap of {model}: a two-level model is not bootstrapped (its "
                          "replications would have to resample whole clusters); its ML or MLR (cluster-robust) "
                          "standard errors are in the model's results")
    b = run.study.bootstrap
    data, _ = model_data(run)
    if (fit.options or {}).get("sampling_weights") or (fit.options or {}).get("cluster"):
        return _design_bootstrap(run, model, fit, data)
    res = bootstrap_fit(fit, n_boot=int(b.replications), ci=b.ci, seed=int(run.study.seed), data=data, progress=False)
    pt = res.params
    effects = pt[pt["op"] == ":="][["lhs", "est", "se", "ci.lower", "ci.upper", "pvalue"]].rename(columns={"lhs": "effect"})
    std = fit.params[fit.params["op"] == ":="].set_index("lhs")["std.all"]
    effects["std.all"] = effects["effect"].map(std)
    d = clean(res.to_dict())
    d["effects"] = clean(effects)
    d["model"] = model
    return StepOutput(data=d, tables={"effects": effects.reset_index(drop=True)})


def _design_bootstrap(run: Run, model: str, fit, data: pd.DataFrame) -> StepOutput:
    """With a sample design: Rao-Wu rescaled bootstrap replicate weights (PSUs resampled within
    strata, survey's subbootstrap), the model refitted with each; normal intervals from the replicate SEs."""
    from scipy import stats

    from analysis.design.replicate import rao_wu_bootstrap, replicate_fit

    b = run.study.bootstrap
    data, extra = with_design(run, data, fit_options(run.study))
    design = extra["design"]
    try:
        reps = rao_wu_bootstrap(design, data, replicates=int(b.replications), seed=int(run.study.seed))
        pt = replicate_fit(fit, data.reset_index(drop=True), reps)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"bootstrap of {model} with the sample design: {error_text(exc)}") from None
    z = stats.norm.ppf(0.975)
    pt["ci.lower"], pt["ci.upper"] = pt["est"] - z * pt["se"], pt["est"] + z * pt["se"]
    pt["pvalue"] = 2 * stats.norm.sf(np.abs(pt["est"] / pt["se"].where(pt["se"] > 0)))
    effects = pt[pt["op"] == ":="][["lhs", "est", "se", "ci.lower", "ci.upper", "pvalue"]].rename(columns={"lhs": "effect"})
    std = fit.params[fit.params["op"] == ":="].set_index("lhs")["std.all"]
    effects["std.all"] = effects["effect"].map(std)
    failed = int(pt.attrs.get("failed", 0))
    d = {"bootstrap": {"R": reps.replicates, "ci": "norm", "level": 0.95, "seed": int(run.study.seed),
                       "ok": reps.replicates - failed, "failed": failed, "improper": 0, "method": "rao-wu"},
         "estimates": clean(pt), "effects": clean(effects), "model": model}
    return StepOutput(data=clean(d), tables={"effects": effects.reset_index(drop=True)})
