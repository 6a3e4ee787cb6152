"""`resilience fit` and `resilience compare`: thin commands over analysis.sem.fit_sem.

No statistics here: read the data, resolve the model, call the library, print
either the lavaan-style summary or (``--json``) exactly one JSON document on
stdout. Warnings go into that document rather than stderr. The model is parsed
once here and the library is called once (fit_sem, or fit_imputed for --pool; its
se="bootstrap" for --bootstrap). Mistakes raise; how the command then ends (exit 1
or 2, the one JSON error shape) is instruments/cli/errors.py's.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from analysis.cli.common import UsageError, one_data_source, scheduler_option
from analysis.cli.common import resolve_model, shipped_models  # noqa: F401  (one model resolver for every command)
from analysis.cli.design import ClusterOpt, StrataOpt, WeightsOpt, design_options

from analysis.format import jsonable

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MISSING = ("listwise", "fiml", "pairwise")

# Shared options, defined once.
DataArg = typer.Argument(None, help="Data file: CSV, XLSX, SPSS .sav, Stata .dta, Parquet, or (with --instrument) "
                                    "a Kobo/ODK/REDCap/LimeSurvey export; or --study.", show_default=False)
DataFilesArg = typer.Argument(None, help="Data file (CSV, XLSX, SPSS .sav, Stata .dta, Parquet, or with --instrument "
                                         "a Kobo/ODK/REDCap/LimeSurvey export); several imputed datasets with "
                                         "--pool; or --study.", show_default=False)
StudyOpt = typer.Option(None, "--study", help="Analyse the answers of a study store (resilience import --study DIR).")
EstimatorOpt = typer.Option(None, "--estimator", "-e", show_default=False,
                            help="ML, MLR, MLM, WLSMV or ULSMV [default: ML, or WLSMV with --ordered].",
                            case_sensitive=False)
MissingOpt = typer.Option("listwise", "--missing",
                          help="listwise (drop incomplete cases), fiml (full-information ML) "
                               "or pairwise (WLSMV/ULSMV).")
OrderedOpt = typer.Option(None, "--ordered",
                          help="Treat items as ordinal: 'all' or a comma-separated list.")
GroupOpt = typer.Option(None, "--group", "-g", help="Column that defines groups (multi-group fit).")
GroupEqualOpt = typer.Option(None, "--group-equal",
                             help="Equal across groups: loadings,intercepts,residuals,...")
StdLvOpt = typer.Option(False, "--std-lv", help="Identify factors by fixing their variances to 1.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document and nothing else.")
InstrumentOpt = typer.Option(None, "--instrument", "-i",
                             help="Instrument (YAML or shipped name, e.g. crs): its missing codes become missing, "
                                  "reverse-keyed items are recoded and observed constructs (REPR) scored first.")
CollapseOpt = typer.Option(False, "--collapse-sparse",
                           help="Ordered items: merge a category never observed (in a group) "
                                "with its neighbour instead of stopping.")


@dataclass
class _Run:
    """What one fit produced, for printing: the fit and the warnings of reading the data and of
    fitting that the fit does not record itself (the fit's own are on ``fit.warnings``)."""

    name: str
    fit: Any
    warnings: list[Any] = field(default_factory=list)

    @property
    def bootstrap(self):
        """The BootstrapResult of a fit with bootstrap SEs (fit_sem's se="bootstrap"), else None."""
        return getattr(self.fit, "bootstrap", None)


# --------------------------------------------------------------------------- helpers

def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _warning_records(caught: list[warnings.WarningMessage]) -> list[dict[str, Any]]:
    """Caught warnings as records, each message once (the same warning of every imputation once)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for w in caught:
        rec = {"type": getattr(w.category, "kind", "warning"), "category": w.category.__name__,
               "message": str(w.message)}
        out.setdefault((rec["category"], rec["message"]), rec)
    return list(out.values())


def _check_estimator(value: str | None) -> str | None:
    from analysis.sem.estimators.registry import ESTIMATORS

    if value is not None and value.upper() not in ESTIMATORS:
        raise UsageError(f"--estimator must be one of {', '.join(ESTIMATORS)}; got {value!r}")
    return None if value is None else value.upper()


def _check_missing(value: str) -> str:
    missing = {"ml": "fiml"}.get(value.lower(), value.lower())
    if missing not in MISSING:
        raise UsageError(f"--missing must be listwise, fiml or pairwise; got {value!r}")
    return missing


def parse_cli_model(spec: str, instrument=None) -> tuple[str, Any]:
    """(name, model) of a --model: resolved, then read once (analysis.sem.steps.ModelInput: its
    observed variables are checked here and fit_sem fits it without parsing the text again).
    A syntax error names the model file (or the shipped model, or --model for inline syntax)."""
    from analysis.errors import ModelSyntaxError
    from analysis.sem.steps import read_model
    from analysis.sem.syntax import parse_model

    name, syntax = resolve_model(spec, instrument)
    try:
        return name, read_model(parse_model(syntax), syntax)
    except ModelSyntaxError as exc:
        where = spec if Path(spec).is_file() else "--model" if name == "model" else f"{name}.lav"
        raise ModelSyntaxError(f"{where}: {exc}") from None


def run_fit(data_path: Path, model: str, *, estimator: str | None = None, missing: str = "listwise",
            ordered: str | None = None, group: str | None = None,
            group_equal: str | None = None, std_lv: bool = False, df=None,
            collapse_sparse: bool = False, instrument: str | None = None,
            design: dict | None = None,
            pool: list[Path] | None = None, scale_w: bool = False, study: Path | None = None,
            se: str | None = None, test: str | None = None, parameterization: str | None = None,
            bootstrap: int = 0, ci: str = "perc", seed: int | None = None,
            scheduler: str | None = None, conditional_x: bool | None = None) -> _Run:
    """Read the data, resolve and parse the model once, and call the library once (fit_sem, or
    fit_imputed with ``pool``: several imputed datasets, the first is ``data_path``).

    The fit checks the data and records its own warnings (``fit.warnings``); the warnings of
    reading the data and those the fit only emits are collected on the run, never printed to
    stderr. ``bootstrap``: fit_sem's se="bootstrap" with ``ci``, ``seed`` and ``scheduler``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name, fit = _read_fit(data_path, model, estimator, missing, ordered, group, group_equal, std_lv, df,
                              collapse_sparse, instrument, design=design, pool=pool, scale_w=scale_w,
                              study=study, inference={"se": se, "test": test, "parameterization": parameterization,
                                                      "conditional_x": conditional_x},
                              bootstrap=bootstrap, ci=ci, seed=seed, scheduler=scheduler)
    return _Run(name=name, fit=fit, warnings=_warning_records(caught))


def cli_instrument(instrument: str | None):
    """The --instrument (a YAML file or a shipped name), or None; its InstrumentError lists every problem."""
    if instrument is None:
        return None
    from instruments import load_instrument

    return load_instrument(instrument)


def _read_fit(data_path, model, estimator, missing, ordered, group, group_equal, std_lv,
              df, collapse_sparse=False, instrument=None, design=None, pool=None, scale_w=False, study=None,
              inference=None, bootstrap=0, ci="perc", seed=None, scheduler=None):
    from analysis.errors import DataError, ModelSpecificationError, OptionError
    from analysis.sem.data import read_survey

    estimator, missing = _check_estimator(estimator), _check_missing(missing)
    inst = cli_instrument(instrument)
    name, spec = parse_cli_model(model, inst)  # `measurement` is the CFA of this instrument
    variables = list(spec.ov_names)
    ordered_opt: list[str] | bool = []
    if ordered:
        ordered_opt = True if ordered.strip().lower() == "all" else _split(ordered)
        unknown = [] if ordered_opt is True else [v for v in ordered_opt if v not in variables]
        if unknown:
            raise UsageError(f"--ordered names variables that are not in the model: {', '.join(unknown)}")
    # one reader for every command: platform exports and the study store too (analysis.sem.data.read_survey)
    if df is None:
        df = read_survey(data_path, inst, study=study)
    frames = [df, *(read_survey(p, inst) for p in (pool or [])[1:])]
    if inst is not None:
        from analysis.psychometrics.items import instrument_model_data

        frames = [instrument_model_data(d, inst, variables) for d in frames]
    options: dict[str, Any] = {"estimator": estimator, "missing": missing, "seed": seed}
    options.update(design or {})    # sampling_weights / cluster / strata (analysis.design)
    # --se / --test: lavaan's names, checked (and refused with lavaan's reasons) by fit_sem
    options.update({k: v for k, v in (inference or {}).items() if v is not None})
    if ordered_opt:
        options["ordered"] = ordered_opt
    if group:
        options["group"] = group
    if _split(group_equal):
        from analysis.sem.partable import GROUP_EQUAL_TYPES

        bad = [g for g in _split(group_equal) if g not in GROUP_EQUAL_TYPES]
        if bad:
            raise UsageError(f"--group-equal takes {', '.join(GROUP_EQUAL_TYPES)}; got {', '.join(map(repr, bad))}")
        options["group_equal"] = _split(group_equal)
    if std_lv:
        options["std_lv"] = True
    if collapse_sparse:
        options["collapse_sparse"] = True
    if bootstrap:
        options.update(se="bootstrap", bootstrap=bootstrap, bootstrap_options={"ci": ci, "scheduler": scheduler})
    source = str(study or data_path)
    try:
        if pool:
            from analysis.sem.fit import fit_imputed

            return name, fit_imputed(spec, frames, scale_w=scale_w, sources=[str(p) for p in pool],
                                     warn=False, **options)
        from analysis.sem.fit import fit_sem

        return name, fit_sem(spec, frames[0], warn=False, **options)  # the raw data: the fit reports drops
    except OptionError as exc:  # name the command's option, not fit_sem's parameter
        message = str(exc)
        for param in ("se", "test", "parameterization"):
            message = message.replace(f"The '{param}' parameter of fit_sem", f"--{param}")
        if message == str(exc):  # e.g. options lavaan refuses together: as they are, with lavaan's reason
            raise
        raise UsageError(message) from None
    except (DataError, ModelSpecificationError) as exc:  # the fit's data check: say which file or store
        absent = "not found in the data" in str(exc)
        if pool or not (absent or isinstance(exc, DataError)):
            raise
        hint = ". Survey data? --instrument crs scores observed constructs such as REPR and recodes missing " \
               "codes and reverse-keyed items first." if absent and inst is None else ""
        if hint and str(exc).endswith("."):
            hint = hint[1:]
        raise type(exc)(f"{source}: {exc}{hint}") from None


def _fit_document(run: _Run) -> dict[str, Any]:
    doc = run.fit.to_dict()
    doc["warnings"] = jsonable(run.warnings) + doc.get("warnings", [])
    doc["model"]["name"] = run.name
    return doc


def _print_warnings(records: list[dict[str, Any]]) -> None:
    for w in records:
        typer.echo(f"Warning: {w['message']}")
    if records:
        typer.echo("")


# --------------------------------------------------------------------------- commands

def fit(
    data: list[Path] = DataFilesArg,
    model: str = typer.Option(..., "--model", "-m",
                              help="Shipped model name (hs, figure1, ...), a lavaan syntax file, inline "
                                   "syntax, or measurement (the CFA of --instrument's constructs)."),
    estimator: Optional[str] = EstimatorOpt,
    missing: str = MissingOpt,
    ordered: str | None = OrderedOpt,
    group: str | None = GroupOpt,
    group_equal: str | None = GroupEqualOpt,
    std_lv: bool = StdLvOpt,
    as_json: bool = JsonOpt,
    collapse_sparse: bool = CollapseOpt,
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap replications for SEs and intervals (0: none)."),
    ci: str = typer.Option("perc", "--ci", help="Bootstrap interval: perc, bca.simple, bca, norm or basic."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of the bootstrap."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", callback=scheduler_option, help="Dask scheduler for the bootstrap."),
    modindices: int = typer.Option(0, "--modindices", min=0,
                                   help="Also report the N largest modification indices."),
    instrument: Optional[str] = InstrumentOpt,
    weights: Optional[str] = WeightsOpt,
    cluster: Optional[str] = ClusterOpt,
    strata: Optional[str] = StrataOpt,
    pool: bool = typer.Option(False, "--pool", help="Pool the fits to several imputed DATA files "
                              "(Rubin's rules; test D3 for ML, D2 for WLSMV, as semTools' runMI)."),
    scale_w: bool = typer.Option(False, "--scale-w", help="With --pool: SEs from (1 + ARIV) W "
                                 "(semTools' default) instead of W + (1 + 1/m) B."),
    study: Optional[Path] = StudyOpt,
    se: Optional[str] = typer.Option(None, "--se", help="Standard errors, lavaan's se=: standard, "
                                     "robust.sem, robust.huber.white, none, ... [default: the estimator's]."),
    test: Optional[str] = typer.Option(None, "--test", help="Test statistic, lavaan's test=: standard, "
                                       "satorra.bentler, scaled.shifted, mean.var.adjusted, yuan.bentler, "
                                       "yuan.bentler.mplus, bootstrap (Bollen-Stine), none "
                                       "[default: the estimator's]."),
    parameterization: Optional[str] = typer.Option(None, "--parameterization", help="Ordered items: delta "
                                                   "(lavaan's default) or theta (the latent responses' "
                                                   "residual variances are parameters)."),
    conditional_x: Optional[bool] = typer.Option(
        None, "--conditional-x/--no-conditional-x", help="Ordered items with observed covariates: "
        "model the items given the covariates (lavaan's conditional.x = TRUE, its default there) "
        "or jointly with them [default: lavaan's]."),
) -> None:
    """Fit a structural equation model (lavaan syntax) to survey data.

    Prints lavaan's summary (fit measures, estimates with standardized solutions, R-square); --json prints one JSON document instead.

    Examples:

        resilience fit HolzingerSwineford1939.csv --model hs

        resilience fit survey.csv -m figure1 -e MLR --missing fiml --instrument crs --json

        resilience fit survey.csv -m measurement --ordered all   (WLSMV)

        resilience fit hs.csv -m hs --group school --group-equal loadings

        resilience fit survey.csv -m figure1 --bootstrap 1000 --ci bca --seed 1

        resilience fit hs.csv -m hs --test satorra.bentler --se robust.sem   (lavaan's test= and se=)

        resilience fit survey.csv -m figure1 --weights w --cluster area --strata region   (MLR, design-based SEs)

        resilience fit imp/imp1.csv imp/imp2.csv imp/imp3.csv -m measurement --ordered all --pool

        resilience fit survey.csv -m measurement --ordered all --parameterization theta

        resilience fit survey.csv -m mimic --ordered all --no-conditional-x   (lavaan's conditional.x = FALSE)
    """
    data = list(data or [])
    one_data_source(data, study)
    if len(data) > 1 and not pool:
        raise UsageError(f"{len(data)} data files given: add --pool to fit and pool them as imputed datasets")
    if bootstrap:
        from analysis.sem.bootstrap import CI_TYPES

        if ci not in CI_TYPES:   # before the fit, not after it
            raise UsageError(f"--ci must be one of {', '.join(CI_TYPES)}; got {ci!r}")
    if pool and (len(data) < 2 or bootstrap):
        raise UsageError("--pool needs at least 2 imputed data files" if len(data) < 2
                         else "--pool cannot be combined with --bootstrap (bootstrap SEs are not pooled)")
    run = run_fit(data[0] if data else None, model, estimator=estimator, missing=missing,
                  ordered=ordered, group=group, group_equal=group_equal, std_lv=std_lv,
                  collapse_sparse=collapse_sparse, instrument=instrument,
                  design=design_options(weights, cluster, strata),
                  pool=list(data) if pool else None, scale_w=scale_w, study=study, se=se, test=test,
                  parameterization=parameterization, bootstrap=bootstrap, ci=ci, seed=seed, scheduler=scheduler,
                  conditional_x=conditional_x)
    boot = run.bootstrap
    mi = _top_modindices(run, modindices) if modindices else None
    if as_json:
        doc = _fit_document(run)
        if pool:   # Rubin's df, fraction of missing information, relative increase in variance
            rows = run.fit.params[~run.fit.params["op"].isin(["==", "<", ">"])]
            for rec, (_, row) in zip(doc["estimates"], rows.iterrows()):
                rec.update(jsonable({k: row.get(k) for k in ("df", "fmi", "riv")}))
        if boot is not None:
            doc["bootstrap"] = boot.to_dict()["bootstrap"]
        if mi is not None:
            doc["modindices"] = jsonable(mi)
        typer.echo(json.dumps(doc, allow_nan=False))
        return
    _print_warnings(run.warnings)
    typer.echo(run.fit.summary(ci=boot is not None))
    if boot is not None:
        typer.echo("\n" + boot.summary().splitlines()[0])
    if mi is not None:
        from analysis.format import format_table

        typer.echo(f"Modification Indices (largest {len(mi)}):\n")
        typer.echo(format_table(mi).to_string(index=False) if len(mi) else "  (none)")


def _top_modindices(run: _Run, n: int):
    """The n largest modification indices; a fit they cannot be computed for gets a warning."""
    from analysis.errors import AnalysisError
    from analysis.sem.modindices import modindices

    try:
        return modindices(run.fit, sort=True).head(n)
    except AnalysisError as exc:
        run.warnings.append({"type": "modindices", "message": str(exc)})
        return None


def compare_cmd(
    data: Path = DataArg,
    model: list[str] = typer.Option(..., "--model", "-m",
                                    help="Two or more models (as for fit: names, files, syntax or "
                                         "measurement); repeat --model."),
    estimator: Optional[str] = EstimatorOpt,
    missing: str = MissingOpt,
    ordered: str | None = OrderedOpt,
    group: str | None = GroupOpt,
    group_equal: str | None = GroupEqualOpt,
    std_lv: bool = StdLvOpt,
    as_json: bool = JsonOpt,
    collapse_sparse: bool = CollapseOpt,
    instrument: Optional[str] = InstrumentOpt,
    weights: Optional[str] = WeightsOpt,
    cluster: Optional[str] = ClusterOpt,
    strata: Optional[str] = StrataOpt,
    study: Optional[Path] = StudyOpt,
) -> None:
    """Compare fitted models: likelihood-ratio test if nested, AIC/BIC side by side.

    Robust fits (MLR, MLM, WLSMV) get the scaled difference test. Models are fitted in the order given.

    Examples:

        resilience compare survey.csv -m figure1 -m partial_mediation -m top_down --instrument crs

        resilience compare survey.csv -m restricted.lav -m general.lav -e MLR --json
    """
    from analysis.sem.compare import compare
    from analysis.sem.data import read_survey

    if len(model) < 2:
        raise UsageError("compare needs at least two --model options")
    one_data_source(data, study)
    with warnings.catch_warnings(record=True) as read_caught:
        warnings.simplefilter("always")
        df = read_survey(data, cli_instrument(instrument), study=study)
    read_warnings = _warning_records(read_caught)
    runs = [run_fit(data, spec, estimator=estimator, missing=missing, ordered=ordered, group=group,
                    group_equal=group_equal, std_lv=std_lv, df=df, collapse_sparse=collapse_sparse,
                    instrument=instrument, design=design_options(weights, cluster, strata), study=study)
            for spec in model]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [f"{r.name}_{i + 1}" for i, r in enumerate(runs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare(dict(zip(names, (r.fit for r in runs))), warn=False)
    if as_json:
        doc = {
            "comparison": result.to_dict(),
            "fits": {n: {"fit": r.fit.fit_dict(), "warnings": jsonable(r.warnings)
                         + jsonable(list(r.fit.warnings))} for n, r in zip(names, runs)},
            "warnings": read_warnings + list(result.warnings),
        }
        typer.echo(json.dumps(jsonable(doc), allow_nan=False))
        return
    _print_warnings(read_warnings)
    for n, r in zip(names, runs):
        if r.warnings or r.fit.warnings:
            typer.echo(f"[{n}]")
            _print_warnings([*r.warnings, *r.fit.warnings])
    typer.echo(result.summary())


def register(app: typer.Typer) -> None:
    """Attach `fit` and `compare` to the root `resilience` app."""
    app.command("fit")(fit)
    app.command("compare")(compare_cmd)


if __name__ == "__main__":  # pragma: no cover
    _app = typer.Typer()
    register(_app)
    _app(sys.argv[1:])
