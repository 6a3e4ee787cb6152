"""The steps of one fit, in lavaan's order (``lavaan()``: lav_options, lav_data, lav_partable,
lav_samplestats, lav_start, lav_model, lav_est, lav_vcov, lav_test, lav_fit), each a function
with a typed input and output; :func:`analysis.sem.fit.fit_sem` calls them one after another.

    read_model          the model's statements and observed names (lavaan's FLAT)
    resolve_options     FitOptions: every option resolved once, lavaan's names (lav_options)
    check_data          FitData: rows kept, groups, categories (lav_data)
    make_partable       ModelTable: the ParameterTable with lavaan's defaults (lav_partable)
    sample_statistics   SampleStats per group (lav_samplestats)
    set_start           start values in the table; fixed.x rows take the sample moments (lav_start)
    compile_model       CompiledModel: matrices, start vector and estimator (lav_model)
    estimate            Estimation: the optimizer's result, general constraints imposed (lav_est)
    compute_vcov        Vcov: covariance matrix of the estimates, or why there is none (lav_vcov)
    compute_test        ModelTest: standard and scaled tests (lav_test)
    compute_fit_measures  lavaan's fitMeasures()
    fill_estimates      est, se, z, p, CI of every row, then := effects with delta-method SEs
                        (lavaan stores both with the estimates: lav_model_get_parameters with
                        extra = TRUE, lav_model_vcov_se)
    standardize_solution  std.lv, std.all and their SEs, reading the filled table, := included
                        (lavaan's standardizedSolution() after the fit), and R-square
    check_solution      Heywood cases, |std.all| > 1, non-PD latent covariances (post.check)
    make_result         the FitResult
    add_bootstrap, add_bollen_stine   se = "bootstrap", test = "bootstrap"

Keep the order of the calls: the estimator keeps state between them (WLSMV's residual
variances follow the parameters it was last evaluated at), so vcov, test and fit measures
read it at the estimates before the table and its standardization do.
"""

from __future__ import annotations

import dataclasses
import math
import warnings as _warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.errors import (
    DataError,
    EstimatorNotAvailableError,
    HeywoodCaseWarning,
    IdentificationError,
    IdentificationWarning,
    NonConvergenceWarning,
    NotPositiveDefiniteWarning,
    OptionError,
    SEMWarning,
    StandardizedLoadingWarning,
    warning_record,
)
from analysis.sem.estimators import ESTIMATOR_NAMES
from analysis.sem.estimators.factory import make_estimator
from analysis.sem.estimators.inference import (
    SE_NAMES,
    TEST_NAMES,
    Inference,
    fill_inference,
    one_test,
    resolve_inference,
    set_inference,
)
from analysis.sem.partable import build_partable, df_of, observed_names, vnames
from analysis.sem.syntax import EXPRESSION_OPS, Statement, parse_model

if TYPE_CHECKING:   # annotations only; the modules load when their step runs
    from analysis.sem.constraints import Constraints
    from analysis.sem.data import DataCheck, SampleStats
    from analysis.sem.design import Design
    from analysis.sem.model import Model
    from analysis.sem.optimize import OptimizeResult
    from analysis.sem.results import FitResult, TestStatistic

__all__ = [
    "ModelInput", "FitOptions", "FitData", "ModelTable", "CompiledModel", "Estimation", "Vcov",
    "ModelTest", "Standardized",
    "read_model", "resolve_options", "check_data", "make_partable", "sample_statistics", "set_start",
    "compile_model", "estimate", "compute_vcov", "compute_test", "compute_fit_measures",
    "fill_estimates", "standardize_solution", "check_solution", "make_result",
    "add_bootstrap", "add_bollen_stine", "as_list", "WARNING_CLASSES",
]

_SE = SE_NAMES        # lavaan's names and aliases, matched case-insensitively
_TEST = TEST_NAMES


# ========================================================================== typed results

@dataclass(frozen=True)
class ModelInput:
    """The model as given, read once (lavaan's FLAT and its ``ov.names``)."""

    statements: Sequence[Statement]
    """Statements of the syntax, or minimal ones of a given table's first group (name checks)."""
    given_table: pd.DataFrame | None
    """A ParameterTable given as the model (e.g. an edited ``fit.params``), checked; else None."""
    syntax: str
    """The model text ("" for a table or statements)."""
    ov_names: tuple[str, ...]
    """Observed variables of the model, in lavaan's order."""
    threshold_items: tuple[str, ...]
    """Items with a threshold line (``y | t1 + t2``): ordered without ``ordered=``, as lavaan."""


@dataclass(frozen=True)
class FitOptions:
    """Every option of one fit, resolved once (lavaan's ``lavoptions``, Python spelling).

    ``estimator`` is upper-case; ``missing`` is "listwise", "fiml" or "pairwise"; ``ordered``
    lists the ordered items (``ordered=True`` and threshold lines resolved); ``inference`` holds
    lavaan's ``se``, ``test`` and ``information`` as resolved for the estimator.
    """

    estimator: str
    missing: str
    inference: Inference
    std_lv: bool
    meanstructure: bool | None
    """As asked (None: lavaan's default); :class:`ModelTable` has the one used."""
    bootstrap: int
    seed: int | None
    group_equal: tuple[str, ...]
    group_partial: tuple[str, ...]
    ordered: tuple[str, ...]
    fixed_x: bool
    collapse_sparse: bool
    parameterization: str
    conditional_x: bool
    control: Mapping[str, Any]
    """Optimizer settings: ``max_iter``, ``gtol`` (lavaan's ``control=``)."""
    warn: bool
    survey: Design | None = None
    """Sampling weights, clusters, strata (before the data step keeps its rows)."""
    survey_test_information: str | None = None
    """Clustered ML (not MLR): the test's information from the h1 model, as lavaan."""

    @property
    def se(self) -> str:
        return self.inference.se

    @property
    def test(self) -> str:
        return self.inference.test

    @property
    def information(self) -> str:
        return self.inference.information

    @property
    def n_boot(self) -> int:
        """Bootstrap draws: ``bootstrap=`` or lavaan's 1000."""
        return int(self.bootstrap) if self.bootstrap > 0 else 1000

    def record(self, meanstructure: bool) -> dict[str, Any]:
        """The options as a FitResult records them (its ``options``, the JSON's ``model.options``;
        bootstrap refits read them back)."""
        out = {"estimator": self.estimator, "missing": self.missing, "se": self.se, "test": self.test,
               "std_lv": self.std_lv, "meanstructure": meanstructure, "bootstrap": self.bootstrap,
               "seed": self.seed, "group_equal": list(self.group_equal),
               "group_partial": list(self.group_partial), "ordered": list(self.ordered),
               "fixed_x": self.fixed_x, "collapse_sparse": self.collapse_sparse,
               "parameterization": self.parameterization, "conditional_x": self.conditional_x,
               **self.inference.as_options()}
        if self.survey is not None:
            out.update(sampling_weights=self.survey.weights, cluster=self.survey.cluster,
                       strata=self.survey.strata)
        return out


@dataclass(frozen=True)
class FitData:
    """The data as the model will use it (lavaan's ``lavdata``)."""

    check: DataCheck | None
    """Rows kept and why others were dropped (None when fitted to moments)."""
    group: str | None
    group_labels: tuple[str, ...]
    """Group labels in order of appearance in the data, as lavaan ("" groups: none)."""
    n_groups: int
    n_thresholds: Mapping[str, int]
    """Thresholds per ordered item (categories - 1) as the ordinal estimators will see them."""
    covs: tuple[Any, ...] | None
    """The given sample covariance matrices (fits to moments), one per group."""
    survey: Design | None
    """The design of the rows kept, weights normalised (None without one)."""
    records: tuple[dict, ...]
    """Data warnings (dropped rows, latent names that are also columns)."""
    columns: tuple[Any, ...] = ()
    """The data's columns (unknown model variables are reported against them)."""


@dataclass(frozen=True)
class ModelTable:
    """The ParameterTable with lavaan's defaults (lavaan's ``lavpartable``)."""

    table: pd.DataFrame
    meanstructure: bool
    df: int
    npar: int
    ov_names: tuple[str, ...]


@dataclass(frozen=True)
class CompiledModel:
    """The compiled model, its start vector and the estimator that drives it (``lavmodel``)."""

    model: Model
    x0: np.ndarray
    estimator: Any
    """An object of the :class:`analysis.sem.estimators.base.Estimator` surface."""


@dataclass(frozen=True)
class Estimation:
    """The optimizer's result (``lavoptim``), general constraints imposed."""

    optimum: OptimizeResult
    constraints: Constraints | None
    records: tuple[dict, ...]

    @property
    def x(self) -> np.ndarray:
        return self.optimum.x


@dataclass(frozen=True)
class Vcov:
    """Covariance matrix of the free parameters (``lavvcov``); None with the reason recorded."""

    matrix: np.ndarray | None
    records: tuple[dict, ...]


@dataclass(frozen=True)
class ModelTest:
    """The model tests (``lavtest``): the estimator's numbers and the TestStatistic objects."""

    values: Mapping[str, Any]
    """chisq, df, pvalue and, for a scaled test, chisq.scaled, df.scaled, pvalue.scaled, ..."""
    statistics: tuple[TestStatistic, ...]
    """The standard test first, then the scaled one if any."""


@dataclass(frozen=True)
class Standardized:
    """The table with std.lv, std.all (and their SEs), and the R-square of endogenous variables."""

    params: pd.DataFrame
    r2: pd.DataFrame


# lavaan's post-fit checks and the problems found on the way, emitted as these warning classes
WARNING_CLASSES = {c.__name__: c for c in (HeywoodCaseWarning, StandardizedLoadingWarning,
                                           NotPositiveDefiniteWarning, NonConvergenceWarning,
                                           IdentificationWarning)}


# ========================================================================== 1. the model

def read_model(model, syntax: str = "") -> ModelInput:
    """The model's statements and observed names: ``model`` is parsed statements (of ``syntax``)
    or a ParameterTable (checked with :func:`~analysis.sem.partable.build_partable`)."""
    given_table = None
    if isinstance(model, pd.DataFrame):
        # a ParameterTable (e.g. an edited copy of fit.params), used as it is
        given_table = build_partable(model)
        statements = _statements_of(given_table)
    else:
        statements = model
    ov = vnames([(s.lhs, s.op, s.rhs) for s in statements if s.op not in EXPRESSION_OPS])["ov"]
    return ModelInput(statements=statements, given_table=given_table, syntax=syntax,
                      ov_names=tuple(ov), threshold_items=tuple(_threshold_items(model)))


# ========================================================================== 2. options

def resolve_options(spec: ModelInput, *, estimator: str | None = None, missing: str = "listwise",
                    se: str = "default", test: str = "default", std_lv: bool = False,
                    meanstructure: bool | None = None, bootstrap: int = 0, seed: int | None = None,
                    group_equal: Sequence[str] | str = (), group_partial: Sequence[str] | str = (),
                    ordered=None, fixed_x: bool = True, collapse_sparse: bool = False,
                    parameterization: str = "delta", conditional_x: bool | None = None,
                    control: Mapping[str, Any] | None = None, warn: bool = True,
                    sampling_weights: str | None = None, cluster: str | None = None,
                    strata: str | None = None, design=None) -> FitOptions:
    """fit_sem's keywords checked (sklearn's wording) and resolved as lavaan's ``lav_options``:
    the default estimator, se, test and information, threshold lines making items ordered,
    conditional.x, and a survey design turning ML into MLR."""
    given = dict(estimator=estimator, missing=missing, se=se, test=test, std_lv=std_lv,
                 meanstructure=meanstructure, bootstrap=bootstrap, seed=seed,
                 group_equal=group_equal, group_partial=group_partial, ordered=ordered,
                 fixed_x=fixed_x, collapse_sparse=collapse_sparse,
                 parameterization=parameterization.lower() if isinstance(parameterization, str)
                 else parameterization, conditional_x=conditional_x)
    survey = _survey_design(design, sampling_weights, cluster, strata)
    survey_test_information = None
    if survey is not None:
        if survey.weights is None and (estimator or "ML").upper() == "ML":
            # lavaan: clustered ML (not MLR) takes its test's information from the h1 model
            survey_test_information = "h1"
        estimator = _survey_estimator(estimator, ordered)
        given["estimator"] = estimator
    if spec.threshold_items and ordered is not True:
        # lavaan: a threshold line ("y | t1 + t2") makes its item ordered, without ordered=
        ordered = list(dict.fromkeys(as_list(ordered) + list(spec.threshold_items)))
        given["ordered"] = ordered
    if estimator is None:
        # lavaan's default: ML, or WLSMV when ordered items are declared
        estimator = "WLSMV" if (ordered is True or as_list(ordered)) else "ML"
        given["estimator"] = estimator
    if not isinstance(test, str) and isinstance(test, (list, tuple)):   # lavaan's test = c(...)
        test = given["test"] = one_test(test, str(estimator))
    _validate(given)
    estimator = estimator.upper()
    missing = {"fiml": "fiml", "ml": "fiml", "pairwise": "pairwise"}.get(missing.lower(), "listwise")
    # lavaan's se=/test= semantics (estimators.inference): refusals raise here, with lavaan's reason
    inference = resolve_inference(estimator, missing, se=se, test=test)
    for note in inference.warnings:
        _warnings.warn(note, SEMWarning, stacklevel=3)
    if bootstrap and inference.se != "bootstrap" and inference.test != "bollen.stine":
        # lavaan: bootstrap= is only the number of draws; it would silently give non-bootstrap results
        raise OptionError(f"bootstrap={bootstrap} is the number of bootstrap draws (as lavaan); ask for them "
                          f"with se='bootstrap' and/or test='bootstrap' (got se={inference.se!r}, "
                          f"test={inference.test!r})")
    ordered = as_list(list(spec.ov_names) if ordered is True else ordered)
    strangers = [v for v in ordered if v not in set(spec.ov_names)]
    if strangers:   # lavaan ignores them with a warning and still switches to WLSMV; we say so at once
        raise OptionError(f"ordered= names {', '.join(map(repr, strangers))}, not an observed variable of "
                          f"the model (its observed variables: {', '.join(spec.ov_names)})")
    ctrl = dict(control or {})
    unknown = set(ctrl) - {"max_iter", "gtol"}
    if unknown:
        raise OptionError(f"The 'control' parameter of fit_sem accepts max_iter and gtol. "
                          f"Got {sorted(unknown)} instead.")
    return FitOptions(
        estimator=estimator, missing=inference.missing, inference=inference, std_lv=std_lv,
        meanstructure=meanstructure, bootstrap=bootstrap, seed=seed,
        group_equal=tuple(as_list(group_equal)), group_partial=tuple(as_list(group_partial)),
        ordered=tuple(ordered), fixed_x=fixed_x, collapse_sparse=collapse_sparse,
        parameterization=given["parameterization"],
        conditional_x=_conditional_x(conditional_x, spec.statements, ordered, fixed_x, estimator,
                                     survey is not None, missing=missing),
        control=ctrl, warn=warn, survey=survey, survey_test_information=survey_test_information)


# ========================================================================== 3. data

def check_data(spec: ModelInput, options: FitOptions, data: pd.DataFrame | None = None, *,
               sample_cov=None, group: str | None = None) -> FitData:
    """The rows the model uses (listwise, or kept for FIML and pairwise), its groups in order of
    appearance (as lavaan) and the categories of its ordered items; or the given moments."""
    from analysis.sem.data import check_model_data

    if data is None and sample_cov is None:
        raise DataError("fit_sem needs data (a DataFrame) or sample_cov with sample_nobs")
    if data is not None and not isinstance(data, pd.DataFrame):
        raise OptionError(f"The 'data' parameter of fit_sem must be a pandas DataFrame. "
                          f"Got {type(data).__name__} instead.")
    if options.survey is not None and data is None:
        raise OptionError("sampling weights, clusters and strata need the raw data (data=), not sample_cov")
    ordered = list(options.ordered)
    if data is None:
        covs = sample_cov if isinstance(sample_cov, (list, tuple)) else [sample_cov]
        n_groups = len(covs)
        if options.estimator != "ML" or options.missing != "listwise" or ordered:
            raise OptionError("with sample_cov only estimator='ML' and missing='listwise' are possible "
                              "(robust, ordinal and FIML estimators need the raw data)")
        return FitData(check=None, group=group,
                       group_labels=tuple(str(g + 1) for g in range(n_groups)) if n_groups > 1 else (),
                       n_groups=n_groups, n_thresholds={}, covs=tuple(covs), survey=None, records=())
    records: list[dict] = []
    ov = list(spec.ov_names)
    _check_names(spec.statements, ov, list(data.columns))
    clash = sorted({s.lhs for s in spec.statements if s.op == "=~"} & set(map(str, data.columns)))
    if clash:  # e.g. construct scores beside the items: the latent is never read from them
        records.append({"type": "data", "category": "DataWarning", "message": (
            f"latent variable name(s) {', '.join(clash)} are also columns of the data; those columns "
            "are not used (rename them if they were meant as observed variables)")})
    survey = options.survey
    resolved = survey.resolve(data) if survey is not None else None   # errors name data rows
    # pairwise (ordinal WLSMV/ULSMV): keep incomplete rows, as for fiml
    check = check_model_data(data, ov, group=group,
                             missing="fiml" if options.missing == "pairwise" else options.missing)
    if resolved is not None:
        resolved = _kept_design(resolved, data, check.data)
    for text in check.warnings:
        records.append({"type": "data", "category": "DataWarning", "message": text})
    kept = check.data
    # lavaan numbers groups in order of appearance in the data
    group_labels = [str(v) for v in pd.unique(kept[group])] if group is not None else []
    n_thresholds = {}
    if ordered:   # categories as the ordinal estimators will see them (errors name item/category/group)
        from analysis.sem.polychoric import ordinal_codes
        _, levels = ordinal_codes(kept, ordered, collapse_sparse=options.collapse_sparse,
                                  groups=None if group is None else kept[group].astype(str).to_numpy())
        n_thresholds = {v: len(levels[v]) - 1 for v in ordered}
    return FitData(check=check, group=group, group_labels=tuple(group_labels),
                   n_groups=max(len(group_labels), 1), n_thresholds=n_thresholds, covs=None,
                   survey=resolved, records=tuple(records), columns=tuple(data.columns))


# ========================================================================== 4. parameter table

def make_partable(spec: ModelInput, options: FitOptions, fdata: FitData, *,
                  sample_mean=None) -> ModelTable:
    """The ParameterTable with lavaan's defaults (or the given table, its results cleared), the
    mean structure settled, and the model's degrees of freedom checked."""
    from_moments = fdata.check is None
    n_groups = fdata.n_groups
    ms = options.meanstructure
    if ms is None:
        ms = (any(s.op == "~1" for s in spec.statements) or n_groups > 1 or options.missing == "fiml"
              or bool(options.ordered) or options.estimator in ("WLSMV", "ULSMV"))
        if from_moments and sample_mean is not None and n_groups > 1:
            ms = True
        if from_moments and sample_mean is None:
            ms = False
    if options.survey is not None and options.survey.cluster is not None:
        ms = True     # lavaan: a clustered (one-level) fit always has a mean structure
    if ms and from_moments and sample_mean is None:
        raise DataError("the model has a mean structure (intercepts or several groups) but no "
                        "sample_mean was given")
    observed = _cov_names(fdata.covs) if from_moments else list(fdata.columns)
    if spec.given_table is not None:
        pt = spec.given_table.copy()    # the ModelInput can be fitted again (imputed datasets)
        n_in_table = len([g for g in pt["group"].unique() if g > 0])
        if n_in_table != n_groups:
            raise OptionError(f"the parameter table has {n_in_table} group(s) but the data has {n_groups}")
        ms = bool((pt["op"] == "~1").any())
        for col in ("est", "se", "z", "pvalue", "ci.lower", "ci.upper", "std.lv", "std.all"):
            pt[col] = np.nan
        pt.loc[pt["exo"] == 1, "ustart"] = np.nan
    else:
        pt = build_partable(spec.statements, observed=observed, n_groups=n_groups,
                            group_labels=list(fdata.group_labels), meanstructure=ms, std_lv=options.std_lv,
                            ordered=list(options.ordered), fixed_x=options.fixed_x,
                            group_equal=list(options.group_equal), group_partial=list(options.group_partial),
                            estimator=options.estimator, n_thresholds=dict(fdata.n_thresholds),
                            parameterization=options.parameterization)
    ov = observed_names(pt)
    df = df_of(pt, ms)
    npar = int(pt["free"].max()) if (pt["free"] > 0).any() else 0
    if df < 0:
        raise IdentificationError(
            f"the model is not identified: it has {npar} free parameters but only {npar + df} "
            f"sample moments (df = {df}); fix or constrain parameters, or add indicators")
    return ModelTable(table=pt, meanstructure=bool(ms), df=int(df), npar=npar, ov_names=tuple(ov))


# ========================================================================== 5. sample statistics

def sample_statistics(table: ModelTable, fdata: FitData, *, sample_mean=None, sample_nobs=None) -> SampleStats:
    """Covariance matrices (divisor N) and means per group, from the rows kept or the given moments."""
    ov, labels = list(table.ov_names), list(fdata.group_labels)
    if fdata.check is not None:
        return _stats_from_data(fdata.check.data, ov, fdata.group, labels)
    return _stats_from_moments(list(fdata.covs), sample_mean, sample_nobs, ov, labels)


# ========================================================================== 6. start values

def set_start(table: ModelTable, stats: SampleStats, options: FitOptions) -> pd.DataFrame:
    """The table's ``start`` column (lavaan's simple start values); fixed.x rows take the sample
    moments as their fixed values. Returns the table, filled in place."""
    from analysis.sem.optimize import start_values

    pt = table.table
    pt["start"] = start_values(pt, stats)
    exo = (pt["exo"] == 1).to_numpy()
    pt.loc[exo, "ustart"] = pt.loc[exo, "start"]
    if options.conditional_x and options.missing == "listwise":
        # lavaan keeps the covariates' (co)variances with divisor N - 1 under conditional.x (they
        # enter no statistic, only the table and the standardized solution); with
        # missing="pairwise" the estimator sets them from the cases it keeps
        cov_rows = exo & (pt["op"] == "~~").to_numpy()
        n_g = {grp: stats.nobs[k] for k, grp in enumerate(sorted(g for g in pt["group"].unique() if g > 0))}
        scale = pt["group"].map(lambda grp: n_g.get(grp, 2) / (n_g.get(grp, 2) - 1)).to_numpy(float)
        pt.loc[cov_rows, "ustart"] = pt.loc[cov_rows, "ustart"].to_numpy(float) * scale[cov_rows]
    return pt


# ========================================================================== 7. model

def compile_model(table: ModelTable, stats: SampleStats, options: FitOptions, fdata: FitData, *,
                  start=None) -> CompiledModel:
    """The compiled model (RAM matrices), the start vector (``start=`` for warm starts) and the
    estimator the options call for."""
    from analysis.sem.model import Model

    mdl = Model(table.table, meanstructure=table.meanstructure)
    if start is not None:
        x0 = np.asarray(start, dtype=float)
        if x0.shape != (mdl.n_free,):
            raise OptionError(f"The 'start' parameter of fit_sem must have {mdl.n_free} values. "
                              f"Got {x0.shape[0] if x0.ndim else 1} instead.")
    else:
        x0 = mdl.x_start
    given = options.record(table.meanstructure)    # the estimator modules read lavaan's options by name
    if options.survey is not None:
        given["survey"] = fdata.survey
        if options.survey_test_information:
            given["survey_test_information"] = options.survey_test_information
    est = make_estimator(options.estimator, options.missing, mdl, stats, fdata.check, given)
    return CompiledModel(model=mdl, x0=x0, estimator=est)


# ========================================================================== 8. estimation

def estimate(compiled: CompiledModel, table: ModelTable, options: FitOptions) -> Estimation:
    """Minimize the estimator's objective from the start vector; with general constraints
    (a == 2*b, a > 0.5) the constrained minimum from the unconstrained one."""
    from analysis.sem.optimize import minimize

    est, x0 = compiled.estimator, compiled.x0
    opt = minimize(est, x0, **dict(options.control))
    constraints = _general_constraints(table.table)   # analysis.sem.constraints; None if none
    if constraints is not None:
        if options.se == "bootstrap" or options.bootstrap > 0:
            raise OptionError("bootstrap standard errors or tests (se/test='bootstrap') with general constraints "
                              "(a == 2*b, a > 0.5) are not available: the bootstrap refits do not impose them")
        opt = constraints.minimize(est, x0, unconstrained=opt)
        est.constraints = constraints     # its scaled test uses the constrained information
    records = []
    if not opt.converged:
        records.append(warning_record(NonConvergenceWarning,
                                      f"the model did not converge after {opt.iterations} iterations "
                                      f"({opt.message}); estimates are not trustworthy",
                                      iterations=opt.iterations))
    return Estimation(optimum=opt, constraints=constraints, records=tuple(records))


# ========================================================================== 9. vcov

def compute_vcov(compiled: CompiledModel, estimation: Estimation, options: FitOptions) -> Vcov:
    """The covariance matrix of the free parameters for the options' SEs; when it cannot be had,
    None and a warning naming the parameters involved."""
    if options.se == "none":
        return Vcov(matrix=None, records=())
    est, mdl, x, constraints = compiled.estimator, compiled.model, estimation.x, estimation.constraints
    records = []
    vcov = None
    # the expected information of plain ML is cheap: check its rank and name the culprits
    why = _information_rank_problem(est, x, mdl.x_names) if type(est).__name__ == "MLEstimator" \
        and constraints is None else None
    if why is None:
        try:
            vcov = est.vcov(x) if constraints is None else constraints.vcov(est, x)
            dv = np.sqrt(np.abs(np.diag(vcov)))
            if constraints is not None:   # singular by construction: one direction per constraint
                dv = np.where(dv == 0, 1.0, dv)
            if not np.all(np.isfinite(vcov)) or np.any(dv == 0):
                raise np.linalg.LinAlgError
            ev = np.linalg.eigvalsh((vcov + vcov.T) / 2 / np.outer(dv, dv))   # scale-free
            if constraints is not None:
                ev = np.array([1.0])
            if ev.min() < 1e-12 and not _sandwich_only_singular(est, x, ev.min()):
                raise np.linalg.LinAlgError
            if ev.min() < 1e-12:   # lavaan reports these SEs with the same warning
                records.append(warning_record(NotPositiveDefiniteWarning, (
                    "the variance-covariance matrix of the estimates is not positive definite "
                    f"(smallest eigenvalue {ev.min():.3g}) although the information matrix is: "
                    "the case-wise scores are collinear (e.g. a binary variable's mean and variance)")))
        except np.linalg.LinAlgError:
            vcov = None
            why = "the information matrix could not be inverted"
    if why is not None:
        records.append(warning_record(
            IdentificationWarning,
            f"could not compute standard errors: {why}; the model may not be identified"))
    return Vcov(matrix=vcov, records=tuple(records))


# ========================================================================== 10. test

def compute_test(compiled: CompiledModel, estimation: Estimation, table: ModelTable,
                 options: FitOptions) -> ModelTest:
    """The estimator's test statistics (standard, and its scaled test), or none (``test="none"``)."""
    from analysis.sem.results import TestStatistic

    tst = compiled.estimator.test(estimation.x) if options.test != "none" \
        else {"chisq": math.nan, "df": table.df, "pvalue": math.nan}
    tests = [TestStatistic(float(tst["chisq"]), float(tst["df"]), float(tst.get("pvalue", math.nan)))]
    if "chisq.scaled" in tst:
        tests.append(TestStatistic(float(tst["chisq.scaled"]), float(tst.get("df.scaled", tst["df"])),
                                   float(tst.get("pvalue.scaled", math.nan)), name="chisq.scaled",
                                   method=str(tst.get("method", "scaled")),
                                   scaling_factor=tst.get("chisq.scaling.factor"),
                                   shift=tst.get("chisq.shift.parameters")))
    second = options.inference.second_test
    if second and options.test != "none":   # lavaan's second test beside the own (WLSMV)
        more = compiled.estimator.second_test(estimation.x, second)
        tests.append(TestStatistic(float(more["chisq.scaled"]), float(more["df.scaled"]),
                                   float(more["pvalue.scaled"]), name=f"chisq.{second}", method=second,
                                   scaling_factor=more.get("chisq.scaling.factor")))
    return ModelTest(values=tst, statistics=tuple(tests))


# ========================================================================== 11. fit measures

def compute_fit_measures(compiled: CompiledModel, estimation: Estimation, test: ModelTest) -> pd.Series:
    """lavaan's fitMeasures(): the common ones, then the estimator's own (scaled, robust) keys."""
    from analysis.sem.fitindices import fit_measures

    est, x, tst = compiled.estimator, estimation.x, test.values
    fit = fit_measures(est, x, tst)
    extra = getattr(est, "extra_fit_measures", None)
    if extra is not None:
        extra_fit = pd.Series(extra(x, tst, fit), dtype=float)   # estimator's keys replace the ML ones
        fit = pd.concat([fit.drop(labels=list(extra_fit.index), errors="ignore"), extra_fit])
    if estimation.constraints is not None:
        fit = estimation.constraints.adjust_fit(fit)
    return fit


# ========================================================================== 12. estimates and :=

def fill_estimates(compiled: CompiledModel, estimation: Estimation, vcov: Vcov) -> pd.DataFrame:
    """The table with est, se, z, pvalue, ci.lower, ci.upper of every row, then the ``:=``
    effects with their delta-method SEs (lavaan stores both with the estimates)."""
    from analysis.sem.defined import DefinedParameters

    mdl, x, V, constraints = compiled.model, estimation.x, vcov.matrix, estimation.constraints
    prepare = getattr(compiled.estimator, "set_residual_variances", None)
    if prepare is not None:   # WLSMV: the y* residual variances (theta: scales) follow x, even without SEs or test
        prepare(x)
    pt = mdl.to_partable(x)
    pt = fill_inference(pt, x, V)
    if constraints is not None:
        pt = constraints.fill(pt, x)
    defined = pt["op"] == ":="
    if defined.any():
        dp = DefinedParameters(pt)
        dvals = dp.values(x)
        est_col = pt["est"].to_numpy(float).copy()
        mask = defined.to_numpy()
        est_col[mask] = dvals
        pt["est"] = est_col
        if V is not None:
            jac = dp.jacobian(x)
            dse = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, V, jac), 0.0))
            set_inference(pt, mask, dvals, dse)
    return pt


# ========================================================================== 13. standardized solution

def standardize_solution(params: pd.DataFrame, compiled: CompiledModel, estimation: Estimation,
                         vcov: Vcov) -> Standardized:
    """std.lv and std.all of the filled table (``:=`` effects re-evaluated on the standardized
    values of their labels), their delta-method SEs (lavaan's standardizedSolution()), and R-square."""
    from analysis.sem.standardize import rsquare, standardize

    mdl, x, est = compiled.model, estimation.x, compiled.estimator
    pt = standardize(params, mdl, x)
    if vcov.matrix is not None:   # delta-method SEs of std.lv and std.all (lavaan's standardizedSolution)
        from analysis.sem.standardize import standardized_se

        prepare = getattr(est, "set_residual_variances", None)    # WLSMV: theta moves with x
        for col, values in standardized_se(mdl, x, vcov.matrix, prepare=prepare).items():
            pt[f"{col}.se"] = values
    return Standardized(params=pt, r2=rsquare(pt, mdl, x))


# ========================================================================== 14. checks

def check_solution(params: pd.DataFrame, compiled: CompiledModel, estimation: Estimation) -> list[dict]:
    """lavaan's post-fit checks: negative variances (Heywood cases), standardized loadings or
    correlations beyond [-1, 1], latent covariance matrices that are not positive definite."""
    return _diagnose(params, compiled.model, estimation.x)


# ========================================================================== 15. the result

def make_result(*, spec: ModelInput, options: FitOptions, fdata: FitData, table: ModelTable,
                stats: SampleStats, compiled: CompiledModel, estimation: Estimation, vcov: Vcov,
                test: ModelTest, fit: pd.Series, solution: Standardized,
                records: Sequence[dict]) -> FitResult:
    """The FitResult of the steps' outputs."""
    from analysis.sem.results import FitResult

    est, opt = compiled.estimator, estimation.optimum
    return FitResult(
        params=solution.params, fit_indices=fit, estimator=options.estimator, converged=bool(opt.converged),
        iterations=int(opt.iterations), optimizer=opt.method,
        nobs=tuple(int(round(n)) for n in getattr(est, "nobs", stats.nobs)),
        group_labels=tuple(fdata.group_labels), group=fdata.group, tests=test.statistics,
        warnings=tuple(records), r2=solution.r2, options=options.record(table.meanstructure),
        missing=dict(fdata.check.missing) if fdata.check is not None else {},
        model=compiled.model, x=estimation.x, sample_stats=stats, vcov=vcov.matrix, syntax=spec.syntax,
        estimator_object=est, inference=options.inference, optimization=opt, data_check=fdata.check)


def add_bootstrap(result: FitResult, options: FitOptions, data: pd.DataFrame | None,
                  bootstrap_options: Mapping[str, Any] | None = None) -> FitResult:
    """lavaan's se = "bootstrap" (``bootstrap=N`` draws): bootstrap SEs and CIs in the table.

    ``bootstrap_options``: bootstrap_fit's ci, level, scheduler, workers, progress. The
    replications' warnings become one record on the result (thousands of lines would bury
    what matters), warned once when ``options.warn``.
    """
    if options.se != "bootstrap":
        return result
    if data is None:
        raise OptionError("bootstrap standard errors need the raw data (data=), not sample_cov")
    from analysis.sem.bootstrap import bootstrap_fit, replication_warnings_record

    # the cases the fit used (its data check: listwise deletion applied), not the raw frame
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        boot = bootstrap_fit(result, n_boot=options.n_boot, seed=options.seed, **dict(bootstrap_options or {}))
    note = replication_warnings_record(caught, options.n_boot)
    if note is not None and options.warn:
        _warnings.warn(note["message"], SEMWarning, stacklevel=3)
    return dataclasses.replace(result, params=boot.params, bootstrap=boot,
                               warnings=(*result.warnings, *([note] if note else [])),
                               inference=dataclasses.replace(options.inference, se="bootstrap"),
                               options={**result.options, "se": "bootstrap", "bootstrap": options.n_boot})


def add_bollen_stine(result: FitResult, options: FitOptions, data: pd.DataFrame | None) -> FitResult:
    """lavaan's test = "bootstrap": the chi-square's Bollen-Stine bootstrap p value beside it."""
    if options.test != "bollen.stine":
        return result
    from analysis.sem.bootstrap import bollen_stine_test
    from analysis.sem.results import TestStatistic

    if data is None:
        raise OptionError("test='bootstrap' (Bollen-Stine) needs the raw data (data=), not sample_cov")
    bs = bollen_stine_test(result, n_boot=options.n_boot, seed=options.seed, data=data)
    standard = result.tests[0]
    boot = TestStatistic(standard.stat, standard.df, bs["pvalue"], name="chisq.bootstrap", method="bollen.stine")
    fit = result.fit_indices.copy()
    fit["bollen.stine.pvalue"] = bs["pvalue"]
    fit["bollen.stine.draws"] = bs["n_ok"]
    return dataclasses.replace(result, tests=(*result.tests, boot), fit_indices=fit, bollen_stine=bs)


# ========================================================================== option checks
# validated declaratively, in sklearn's wording

def _one_of(*choices):
    def check(v):
        return isinstance(v, str) and v.upper() in {c.upper() for c in choices}
    check.text = "one of " + ", ".join(choices)
    return check


def _int_at_least(lo):
    def check(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo
    check.text = f"an int >= {lo}"
    return check


def _bool(v):
    return isinstance(v, (bool, np.bool_))


_bool.text = "a bool"


def _optional_bool(v):
    return v is None or _bool(v)


_optional_bool.text = "a bool or None"


def _optional_int(v):
    return v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))


_optional_int.text = "an int or None"


def _str_seq(v):
    return isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v))


_str_seq.text = "a string or a list of strings"


def _ordered(v):
    return v is None or v is True or _str_seq(v)


_ordered.text = "None, True (all) or a list of variable names"

_CONSTRAINTS = {
    "estimator": _one_of(*ESTIMATOR_NAMES),
    "missing": _one_of("listwise", "fiml", "ml", "pairwise"),
    "se": _one_of(*_SE),
    "test": _one_of(*_TEST),
    "std_lv": _bool,
    "meanstructure": _optional_bool,
    "bootstrap": _int_at_least(0),
    "seed": _optional_int,
    "group_equal": _str_seq,
    "group_partial": _str_seq,
    "ordered": _ordered,
    "fixed_x": _bool,
    "parameterization": _one_of("delta", "theta"),
    "conditional_x": _optional_bool,
}


def _validate(options: dict) -> None:
    for name, check in _CONSTRAINTS.items():
        if name in options and not check(options[name]):
            raise OptionError(f"The {name!r} parameter of fit_sem must be {check.text}. "
                              f"Got {options[name]!r} instead.")


def as_list(v) -> list[str]:
    """A comma-separated string or a sequence of names as a list (None: empty)."""
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return list(v)




# ========================================================================== helpers of the steps

def _survey_design(design, sampling_weights, cluster, strata):
    """One :class:`analysis.design.Design` from ``design=`` and/or the column keywords (None if none)."""
    if design is None and sampling_weights is None and cluster is None and strata is None:
        return None    # the common case, without importing analysis.design
    from analysis.sem.design import Design

    if design is not None and not isinstance(design, Design):
        raise OptionError(f"The 'design' parameter of fit_sem must be an analysis.design.Design. "
                          f"Got {type(design).__name__} instead.")
    for name, value in (("sampling_weights", sampling_weights), ("cluster", cluster), ("strata", strata)):
        if value is not None and not isinstance(value, str):
            raise OptionError(f"The {name!r} parameter of fit_sem must be a column name. Got {value!r} instead.")
    import dataclasses

    base = design or Design()
    return dataclasses.replace(base, weights=sampling_weights or base.weights,
                               cluster=cluster or base.cluster, strata=strata or base.strata)


def _survey_estimator(estimator, ordered):
    """lavaan: with sampling weights or clusters ML becomes MLR (sandwich SEs, Yuan-Bentler test)."""
    if ordered is True or as_list(ordered) or (estimator or "ML").upper() in ("WLSMV", "ULSMV"):
        raise EstimatorNotAvailableError(
            "sampling weights, clusters and strata are available for continuous items with "
            "estimator ML/MLR, not (yet) for ordered items")
    if (estimator or "ML").upper() == "MLM":
        raise EstimatorNotAvailableError("estimator MLM with a survey design is not available; "
                                         "use MLR (lavaan's default with sampling weights)")
    return "MLR" if estimator is None or estimator.upper() in ("ML", "MLR") else estimator


def _kept_design(resolved, data, kept):
    """The design of the rows a model kept, weights normalised to sum to their number (lavaan's
    sampling.weights.normalization = "total")."""
    rows = data.index.get_indexer(kept.index)
    sub = resolved.subset(rows)
    sub.weights = sub.weights * len(rows) / sub.weights.sum()
    return sub


def _threshold_items(model) -> list[str]:
    """Items with a threshold line (``|``) in the model text or table."""
    if isinstance(model, pd.DataFrame):
        return list(dict.fromkeys(model.loc[model["op"] == "|", "lhs"]))
    if isinstance(model, str):
        return list(dict.fromkeys(s.lhs for s in parse_model(model) if s.op == "|"))
    return list(dict.fromkeys(s.lhs for s in model if s.op == "|"))


def _general_constraints(pt: pd.DataFrame):
    """The table's general constraints (not label == label / label == number), or None."""
    from analysis.sem.constraints import Constraints, general_constraint_rows

    return Constraints(pt) if general_constraint_rows(pt).any() else None


def _statements_of(pt: pd.DataFrame):
    """Minimal statements (lhs, op, rhs) of a ParameterTable's first group, for name checks."""
    from analysis.sem.syntax import Statement

    first = pt[pt["group"].isin([0, pt.loc[pt["group"] > 0, "group"].min()])]
    return [Statement(l, o, r) for l, o, r in zip(first["lhs"], first["op"], first["rhs"])]


def _check_names(statements, ov_syntax, columns) -> None:
    """Model variables absent from the data: say which look like undefined latent variables."""
    from analysis.errors import ModelSpecificationError
    from analysis.sem.partable import suggest

    absent = [v for v in ov_syntax if v not in set(map(str, columns))]
    if not absent:
        return
    regress = {s.lhs for s in statements if s.op == "~"} | {s.rhs for s in statements if s.op == "~"}
    parts = []
    for v in absent:
        hint = suggest(v, [str(c) for c in columns])
        if not hint and v in regress:
            hint = " (used in a regression but neither a column of the data nor a latent variable defined with =~)"
        parts.append(f"'{v}'{hint}")
    raise ModelSpecificationError(
        f"{len(absent)} variable(s) of the model not found in the data: " + ", ".join(parts))


def _cov_names(covs) -> list[str]:
    names = None
    for c in covs:
        if isinstance(c, pd.DataFrame):
            names = [str(v) for v in c.columns]
    if names is None:
        raise DataError("sample_cov must be a DataFrame with variable names as columns "
                        "(or a list of them, one per group)")
    return names


def _stats_from_data(data, ov, group, labels):
    from analysis.sem.data import SampleStats

    parts = [data] if group is None else [data[data[group].astype(str) == lab] for lab in labels]
    covs, means, ns = [], [], []
    for part in parts:
        y = part[ov].to_numpy(dtype=float)
        mu = y.mean(axis=0)
        yc = y - mu
        if np.isnan(y).any():  # missing="fiml": pairwise moments, for start values only
            mu = np.nanmean(y, axis=0)
            covs.append(part[ov].cov(ddof=0).fillna(0.0).to_numpy())
        else:
            covs.append(yc.T @ yc / len(y))
        means.append(mu)
        ns.append(len(y))
    return SampleStats(tuple(ov), tuple(covs), tuple(means), tuple(ns), tuple(labels))


def _stats_from_moments(covs, means, nobs, ov, labels):
    from analysis.sem.data import SampleStats

    if nobs is None:
        raise DataError("sample_nobs is required with sample_cov")
    nobs = list(nobs) if isinstance(nobs, (list, tuple)) else [nobs]
    if len(nobs) != len(covs):
        raise DataError(f"sample_nobs has {len(nobs)} value(s) for {len(covs)} covariance matrices")
    if means is not None and not isinstance(means, (list, tuple)):
        means = [means]
    cov_out, mean_out = [], []
    for g, c in enumerate(covs):
        names = [str(v) for v in c.columns]
        absent = [v for v in ov if v not in names]
        if absent:
            raise DataError(f"variable(s) not in sample_cov: {', '.join(absent)}")
        m = c.loc[ov, ov].to_numpy(dtype=float) if isinstance(c, pd.DataFrame) else np.asarray(c)
        if not np.allclose(m, m.T):
            raise DataError("sample_cov is not symmetric")
        cov_out.append(m * (nobs[g] - 1) / nobs[g])
        if means is None:
            mean_out.append(None)
        else:
            mg = means[g]
            mg = pd.Series(mg).reindex(ov).to_numpy(float) if isinstance(mg, (pd.Series, dict)) else np.asarray(mg, float)
            mean_out.append(mg)
    return SampleStats(tuple(ov), tuple(cov_out), tuple(mean_out), tuple(int(n) for n in nobs), tuple(labels))


def _sandwich_only_singular(est, x, smallest: float) -> bool:
    """A Huber-White sandwich can be singular while its bread (the information) is not:
    then the model is identified and lavaan reports the SEs with a warning."""
    if not getattr(est, "robust", False) or smallest < -1e-8:
        return False
    try:
        info = est.information(x)
    except Exception:  # noqa: BLE001 - estimators without an information matrix
        return False
    d = np.sqrt(np.abs(np.diag(info)))
    if not np.all(np.isfinite(info)) or np.any(d == 0):
        return False
    return bool(np.linalg.eigvalsh((info + info.T) / 2 / np.outer(d, d)).min() > 1e-10)


def _information_rank_problem(est, x, names) -> str | None:
    """Why the expected information is (numerically) singular, naming the parameters involved;
    None when it is fine or the estimator has no information matrix."""
    try:
        info = est.information(x)
    except Exception:  # noqa: BLE001 - estimators without an expected information
        return None
    info = (info + info.T) / 2
    d = np.sqrt(np.abs(np.diag(info)))
    if np.any(d == 0):
        k = int(np.flatnonzero(d == 0)[0])
        return f"the data carry no information on parameter {names[k]}"
    info = info / np.outer(d, d)          # scale-free: variables measured in any unit
    ev, vec = np.linalg.eigh(info)
    if not np.all(np.isfinite(ev)):
        return "the information matrix has non-finite entries"
    if ev[0] > 1e-10 * max(ev[-1], 1e-300):
        return None
    worst = vec[:, 0]
    involved = [names[i] for i in np.argsort(-np.abs(worst))[:4] if abs(worst[i]) > 0.2]
    return ("the information matrix is singular (smallest eigenvalue "
            f"{ev[0]:.2g}); parameters involved: {', '.join(involved)}")


def _diagnose(pt, mdl, x) -> list[dict]:
    recs = []
    multi = mdl.n_groups > 1
    rows = list(zip(pt["lhs"], pt["op"], pt["rhs"], pt["group"], pt["est"], pt["std.all"]))
    for l, o, r, g, e, s in rows:
        if o == "~~" and l == r and e < 0:
            where = f" in group {g}" if multi else ""
            recs.append(warning_record(HeywoodCaseWarning,
                                       f"negative variance estimate for '{l}'{where} ({e:.4g}): a Heywood case",
                                       variable=l, group=int(g)))
    for l, o, r, g, e, s in rows:
        if o in ("=~", "~~") and l != r and abs(s) > 1:
            what = "standardized loading" if o == "=~" else "correlation"
            recs.append(warning_record(StandardizedLoadingWarning,
                                       f"{what} of '{l} {o} {r}' is {s:.3f}, beyond [-1, 1]",
                                       lhs=l, op=o, rhs=r, group=int(g)))
    for g, (vall, _) in enumerate(mdl.implied_all(x)):
        lvset = set(mdl.lv_names[g])
        lv = [i for i, n in enumerate(mdl.group_maps[g].names) if n in lvset]
        if len(lv) > 0:
            ev = np.linalg.eigvalsh(vall[np.ix_(lv, lv)])
            if ev.min() < -1e-10:
                where = f" in group {mdl.groups[g]}" if multi else ""
                recs.append(warning_record(NotPositiveDefiniteWarning,
                                           f"the covariance matrix of the latent variables{where} is not "
                                           f"positive definite (smallest eigenvalue {ev.min():.3g})",
                                           group=int(mdl.groups[g])))
    return recs


def _conditional_x(conditional_x, statements, ordered, fixed_x, estimator, survey, *,
                   missing: str = "listwise") -> bool:
    """lavaan's conditional.x: by default TRUE for ordered items (WLSMV/ULSMV) with observed
    exogenous covariates, FALSE otherwise; without covariates there is nothing to condition on."""
    from analysis.sem.estimators.registry import ESTIMATORS as REGISTRY

    ordered = as_list(ordered)
    rows = [(s.lhs, s.op, s.rhs) for s in statements if s.op not in EXPRESSION_OPS]
    ov_x = [v for v in vnames(rows)["ov.x"] if v not in set(ordered)]
    categorical = bool(ordered) and not REGISTRY[estimator].likelihood
    cond = categorical if conditional_x is None else bool(conditional_x)
    if not (cond and ov_x):
        return False
    if not fixed_x:
        hint = (" (lavaan's default for ordered items with observed covariates "
                f"{', '.join(ov_x)}; pass conditional_x=False for the joint model of items and covariates)"
                if conditional_x is None else "")
        raise OptionError(f"fixed.x = FALSE is not supported when conditional.x = TRUE{hint}")
    if not categorical and missing == "fiml":
        raise OptionError("missing = ml + conditional.x not supported yet (lavaan); pass conditional_x=False "
                          "for FIML with the covariates in the model")
    if not categorical:
        raise OptionError(
            "conditional_x=True is implemented for ordered items (WLSMV/ULSMV); with continuous "
            f"variables and estimator {estimator} use conditional_x=False (lavaan's default there: the "
            "estimates and the chi-square are those of conditional.x = TRUE; lavaan's baseline model, "
            "CFI/TLI, SRMR and AIC/BIC of conditional.x = TRUE differ)")
    if survey:
        raise OptionError(
            "sampling weights, clusters and strata with conditional_x=True (lavaan's default for ordered "
            "items with observed covariates) are not implemented; pass conditional_x=False")
    return True

