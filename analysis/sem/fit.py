"""``fit_sem``: fit a structural equation model, in lavaan's numbered steps.

    1 options   2 data   3 partable   4 sample stats   5 start   6 model
    7 optimize  8 vcov   9 test   10 fit indices   11 standardize   12 defined

>>> import pandas as pd                                      # doctest: +SKIP
>>> # In R: cfa("visual =~ x1 + x2 + x3 ...", data = HolzingerSwineford1939)
>>> fit = fit_sem("visual =~ x1 + x2 + x3", data=hs)          # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings as _warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.sem.estimators import ESTIMATOR_NAMES
from analysis.sem.estimators.factory import make_estimator
from analysis.sem.estimators.inference import SE_NAMES, TEST_NAMES, fill_inference, resolve_inference, set_inference
from analysis.errors import (
    DataError,
    EstimatorNotAvailableError,
    HeywoodCaseWarning,
    IdentificationError,
    IdentificationWarning,
    ModelSpecificationError,
    NonConvergenceWarning,
    NotPositiveDefiniteWarning,
    OptionError,
    SEMWarning,
    StandardizedLoadingWarning,
    warning_record,
)
from analysis.sem.partable import vnames, build_partable, df_of, observed_names
from analysis.sem.syntax import EXPRESSION_OPS, has_levels, parse_model

__all__ = ["fit_sem", "fit_imputed", "sem", "cfa", "ESTIMATORS"]

ESTIMATORS = ESTIMATOR_NAMES        # the registry's names (analysis.sem.estimators.ESTIMATORS)
_MISSING = ("listwise", "fiml", "ml")
_SE = SE_NAMES        # lavaan's names and aliases, matched case-insensitively
_TEST = TEST_NAMES


# --------------------------------------------------------------------------
# 1. options, validated declaratively (sklearn's wording)
# --------------------------------------------------------------------------
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
    "estimator": _one_of(*ESTIMATORS),
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


def _as_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return list(v)


# --------------------------------------------------------------------------
def _numerical_breakdown_is_a_model_problem(fit):
    """A singular or overflowing matrix deep in the linear algebra comes from the model's numbers
    (extreme fixed values, an unidentified part), so it is reported as the model's problem,
    never as an internal error."""
    import functools

    @functools.wraps(fit)
    def guarded(*args, **kwargs):
        try:
            return fit(*args, **kwargs)
        except (np.linalg.LinAlgError, OverflowError, FloatingPointError) as exc:
            raise ModelSpecificationError(
                f"the model could not be estimated: its matrices became singular or too large to compute "
                f"({type(exc).__name__}: {exc}); check fixed values, starting values and that every part "
                "of the model is identified") from None
    return guarded


@_numerical_breakdown_is_a_model_problem
def fit_sem(model: str, data: pd.DataFrame | None = None, *, sample_cov=None, sample_mean=None,
            sample_nobs=None, group: str | None = None, group_equal: Sequence[str] | str = (),
            group_partial: Sequence[str] | str = (), estimator: str | None = None, missing: str = "listwise",
            ordered=None, std_lv: bool = False, meanstructure: bool | None = None,
            se: str = "default", test: str = "default", bootstrap: int = 0,
            seed: int | None = None, fixed_x: bool = True, start=None, control: dict | None = None,
            warn: bool = True, collapse_sparse: bool = False, sampling_weights: str | None = None,
            cluster: str | None = None, strata: str | None = None, design=None,
            parameterization: str = "delta", conditional_x: bool | None = None):
    """Fit a CFA/SEM written in lavaan syntax; returns a :class:`~analysis.sem.results.FitResult`.

    Parameters follow lavaan's ``sem()``: ``data`` (DataFrame) or
    ``sample_cov`` (+ ``sample_mean``, ``sample_nobs``; a list per group),
    ``group`` (column), ``group_equal`` / ``group_partial``, ``estimator``
    ("ML", or "WLSMV" when ``ordered`` is given; others are dispatched to
    their modules), ``missing``
    ("listwise" or "fiml"), ``ordered``, ``std_lv``, ``meanstructure``,
    ``se``, ``test`` (lavaan's names; "default" is the estimator's own: ML standard,
    MLR robust.huber.white + yuan.bentler.mplus, MLM robust.sem + satorra.bentler,
    WLSMV/ULSMV robust.sem + scaled.shifted; ML adds a requested test such as
    "satorra.bentler", "scaled.shifted", "mean.var.adjusted", "yuan.bentler(.mplus)" or
    "bootstrap" (Bollen-Stine) to the standard one; the result's ``options`` record the
    se, test and information used). ``start``: a free-parameter vector to start from (warm
    starts for bootstrap and simulation). ``control``: optimizer settings
    (``max_iter``, ``gtol``), as lavaan's ``control=``. ``warn=False`` keeps
    the warnings on the result only. ``collapse_sparse``: merge a category of an
    ordered item that some group never uses into its neighbour (else an error
    names the item, category and group). ``conditional_x``: lavaan's conditional.x; None
    (lavaan's default) models ordered items given their observed covariates under
    WLSMV/ULSMV (MIMIC, DIF) and does nothing otherwise; False fits items and covariates
    jointly (docs/engine.md).

    Complex samples, as lavaan's ``sampling.weights=`` and ``cluster=``:
    ``sampling_weights`` (a column; normalised to sum to N, pseudo-ML, and MLR
    becomes the default), ``cluster`` (PSU column: cluster-robust sandwich SEs
    and Yuan-Bentler test from cluster totals of the case-wise scores),
    ``strata`` (stratum column: the sandwich's middle is the Taylor-linearisation
    variance of the scores, as survey's ``svyrecvar``); or ``design``, an
    :class:`analysis.design.Design` (also fpc, nest, lonely-PSU handling).

    Examples
    --------
    >>> # In R: cfa(HS.model, data = HolzingerSwineford1939)
    >>> fit = fit_sem(hs_model, data=hs)                        # doctest: +SKIP
    >>> round(fit.fit_indices["chisq"], 3)                       # doctest: +SKIP
    85.306
    """
    if isinstance(data, (list, tuple)):
        # several imputed datasets: fit each and pool them as semTools' runMI (analysis.sem.pool)
        given = {k: v for k, v in locals().items() if k not in ("model", "data")}
        return fit_imputed(model, data, **given)
    from analysis.sem.data import check_model_data
    from analysis.sem.defined import DefinedParameters
    from analysis.sem.fitindices import fit_measures
    from analysis.sem.model import Model
    from analysis.sem.optimize import minimize, start_values
    from analysis.sem.standardize import rsquare, standardize

    # 1. options ----------------------------------------------------------
    _check_model_argument(model)
    if isinstance(model, str):   # parsed once; the text is kept for the result
        syntax, model = model, parse_model(model)
    else:
        syntax = ""
    if _two_level(model):   # lavaan: level: blocks make cluster= a two-level model
        from analysis.sem.twolevel import fit_twolevel

        if sampling_weights is not None or strata is not None or design is not None:
            raise OptionError("sampling weights and strata are not available for two-level models")
        if ordered:
            raise OptionError("ordered (categorical) items are not available in two-level models; "
                              "fit them as continuous (ML/MLR) or drop ordered=")
        if bootstrap or se == "bootstrap":
            raise OptionError("bootstrap is not available for two-level models (it would have to resample "
                              "whole clusters); use estimator='MLR' for cluster-robust standard errors")
        return fit_twolevel(syntax or model, data, cluster=cluster, estimator=estimator, missing=missing,
                            std_lv=std_lv, fixed_x=fixed_x, se=se, test=test, control=control,
                            warn=warn, group=group, group_equal=_as_list(group_equal),
                            group_partial=_as_list(group_partial))
    options = dict(estimator=estimator, missing=missing, se=se, test=test, std_lv=std_lv,
                   meanstructure=meanstructure, bootstrap=bootstrap, seed=seed,
                   group_equal=group_equal, group_partial=group_partial, ordered=ordered,
                   fixed_x=fixed_x, collapse_sparse=collapse_sparse,
                   parameterization=parameterization.lower() if isinstance(parameterization, str)
                   else parameterization, conditional_x=conditional_x)
    survey = _survey_design(design, sampling_weights, cluster, strata)
    survey_options = {}
    if survey is not None:
        if survey.weights is None and (estimator or "ML").upper() == "ML":
            # lavaan: clustered ML (not MLR) takes its test's information from the h1 model
            survey_options["survey_test_information"] = "h1"
        estimator = _survey_estimator(estimator, ordered)
        options["estimator"] = estimator
    th_items = _threshold_items(model)
    if th_items and ordered is not True:
        # lavaan: a threshold line ("y | t1 + t2") makes its item ordered, without ordered=
        ordered = list(dict.fromkeys(_as_list(ordered) + th_items))
        options["ordered"] = ordered
    if estimator is None:
        # lavaan's default: ML, or WLSMV when ordered items are declared
        estimator = "WLSMV" if (ordered is True or _as_list(ordered)) else "ML"
        options["estimator"] = estimator
    _validate(options)
    estimator = estimator.upper()
    missing = {"fiml": "fiml", "ml": "fiml", "pairwise": "pairwise"}.get(missing.lower(), "listwise")
    # lavaan's se=/test= semantics (estimators.inference): refusals raise here, with lavaan's reason
    inference = resolve_inference(estimator, missing, se=se, test=test)
    se, test, missing = inference.se, inference.test, inference.missing
    options.update(inference.as_options())
    for note in inference.warnings:
        _warnings.warn(note, SEMWarning, stacklevel=2)
    group_equal, group_partial = _as_list(group_equal), _as_list(group_partial)
    if data is None and sample_cov is None:
        raise DataError("fit_sem needs data (a DataFrame) or sample_cov with sample_nobs")
    if data is not None and not isinstance(data, pd.DataFrame):
        raise OptionError(f"The 'data' parameter of fit_sem must be a pandas DataFrame. "
                          f"Got {type(data).__name__} instead.")
    if survey is not None and data is None:
        raise OptionError("sampling weights, clusters and strata need the raw data (data=), not sample_cov")
    given_pt = None
    if isinstance(model, pd.DataFrame):
        # a ParameterTable (e.g. an edited copy of fit.params), used as it is
        given_pt = build_partable(model)
        statements = _statements_of(given_pt)
    else:
        statements = model
    ov_syntax = vnames([(s.lhs, s.op, s.rhs) for s in statements if s.op not in EXPRESSION_OPS])["ov"]
    records: list[dict] = []

    # 2. data ---------------------------------------------------------------
    check = None
    if data is not None:
        if ordered is True:
            ordered = [v for v in ov_syntax]
        ordered = _as_list(ordered)
        _check_names(statements, ov_syntax, list(data.columns))
        clash = sorted({s.lhs for s in statements if s.op == "=~"} & set(map(str, data.columns)))
        if clash:  # e.g. construct scores beside the items: the latent is never read from them
            records.append({"type": "data", "category": "DataWarning", "message": (
                f"latent variable name(s) {', '.join(clash)} are also columns of the data; those columns "
                "are not used (rename them if they were meant as observed variables)")})
        # pairwise (ordinal WLSMV/ULSMV): keep incomplete rows, as for fiml
        resolved = survey.resolve(data) if survey is not None else None   # errors name data rows
        check = check_model_data(data, ov_syntax, group=group,
                                 missing="fiml" if missing == "pairwise" else missing)
        if resolved is not None:
            resolved = _kept_design(resolved, data, check.data)
        for text in check.warnings:
            records.append({"type": "data", "category": "DataWarning", "message": text})
        kept = check.data
        if group is not None:
            # lavaan numbers groups in order of appearance in the data
            group_labels = [str(v) for v in pd.unique(kept[group])]
        else:
            group_labels = []
        n_groups = max(len(group_labels), 1)
        n_thresholds = {}
        if ordered:   # categories as the ordinal estimators will see them (errors name item/category/group)
            from analysis.sem.polychoric import ordinal_codes
            _, levels = ordinal_codes(kept, ordered, collapse_sparse=collapse_sparse,
                                      groups=None if group is None else kept[group].astype(str).to_numpy())
            n_thresholds = {v: len(levels[v]) - 1 for v in ordered}
    else:
        ordered = _as_list(ordered if ordered is not True else ov_syntax)
        covs = sample_cov if isinstance(sample_cov, (list, tuple)) else [sample_cov]
        n_groups = len(covs)
        group_labels = [str(g + 1) for g in range(n_groups)] if n_groups > 1 else []
        n_thresholds = {}
        if estimator != "ML" or missing != "listwise" or ordered:
            raise OptionError("with sample_cov only estimator='ML' and missing='listwise' are possible "
                              "(robust, ordinal and FIML estimators need the raw data)")

    options["conditional_x"] = _conditional_x(conditional_x, statements, ordered, fixed_x, estimator,
                                              survey is not None)

    # 3. parameter table ----------------------------------------------------
    ms = meanstructure
    if ms is None:
        ms = any(s.op == "~1" for s in statements) or n_groups > 1 or missing == "fiml" or bool(ordered) or estimator in ("WLSMV", "ULSMV")
        if data is None and sample_mean is not None and n_groups > 1:
            ms = True
        if data is None and sample_mean is None:
            ms = False
    if survey is not None and survey.cluster is not None:
        ms = True     # lavaan: a clustered (one-level) fit always has a mean structure
    if ms and data is None and sample_mean is None:
        raise DataError("the model has a mean structure (intercepts or several groups) but no "
                        "sample_mean was given")
    observed = list(data.columns) if data is not None else None
    if data is None:
        observed = _cov_names(covs)
    if given_pt is not None:
        pt = given_pt
        n_in_table = len([g for g in pt["group"].unique() if g > 0])
        if n_in_table != n_groups:
            raise OptionError(f"the parameter table has {n_in_table} group(s) but the data has {n_groups}")
        ms = bool((pt["op"] == "~1").any())
        for col in ("est", "se", "z", "pvalue", "ci.lower", "ci.upper", "std.lv", "std.all"):
            pt[col] = np.nan
        pt.loc[pt["exo"] == 1, "ustart"] = np.nan
    else:
        pt = build_partable(statements, observed=observed, n_groups=n_groups, group_labels=group_labels,
                            meanstructure=ms, std_lv=std_lv, ordered=ordered, fixed_x=fixed_x,
                            group_equal=group_equal, group_partial=group_partial, estimator=estimator,
                            n_thresholds=n_thresholds, parameterization=options["parameterization"])
    ov = observed_names(pt)
    df = df_of(pt, ms)
    npar = int(pt["free"].max()) if (pt["free"] > 0).any() else 0
    if df < 0:
        raise IdentificationError(
            f"the model is not identified: it has {npar} free parameters but only {npar + df} "
            f"sample moments (df = {df}); fix or constrain parameters, or add indicators")

    # 4. sample statistics ---------------------------------------------------
    if data is not None:
        stats = _stats_from_data(check.data, ov, group, group_labels)
    else:
        stats = _stats_from_moments(covs, sample_mean, sample_nobs, ov, group_labels)

    # 5. start values -------------------------------------------------------
    pt["start"] = start_values(pt, stats)
    exo = (pt["exo"] == 1).to_numpy()
    pt.loc[exo, "ustart"] = pt.loc[exo, "start"]
    if options["conditional_x"]:
        # lavaan keeps the covariates' (co)variances with divisor N - 1 under conditional.x
        # (they enter no statistic, only the table and the standardized solution)
        cov_rows = exo & (pt["op"] == "~~").to_numpy()
        n_g = {grp: stats.nobs[k] for k, grp in enumerate(sorted(g for g in pt["group"].unique() if g > 0))}
        scale = pt["group"].map(lambda grp: n_g.get(grp, 2) / (n_g.get(grp, 2) - 1)).to_numpy(float)
        pt.loc[cov_rows, "ustart"] = pt.loc[cov_rows, "ustart"].to_numpy(float) * scale[cov_rows]

    # 6. model --------------------------------------------------------------
    mdl = Model(pt, meanstructure=ms)
    if start is not None:
        x0 = np.asarray(start, dtype=float)
        if x0.shape != (mdl.n_free,):
            raise OptionError(f"The 'start' parameter of fit_sem must have {mdl.n_free} values. "
                              f"Got {x0.shape[0] if x0.ndim else 1} instead.")
    else:
        x0 = mdl.x_start
    est = make_estimator(estimator, missing, mdl, stats, check,
                          options if survey is None else {**options, **survey_options, "survey": resolved})

    # 7. optimize -----------------------------------------------------------
    ctrl = dict(control or {})
    unknown = set(ctrl) - {"max_iter", "gtol"}
    if unknown:
        raise OptionError(f"The 'control' parameter of fit_sem accepts max_iter and gtol. "
                          f"Got {sorted(unknown)} instead.")
    opt = minimize(est, x0, **ctrl)
    constraints = _general_constraints(pt)   # a == 2*b, a > 0.5 (analysis.sem.constraints); None if none
    if constraints is not None:
        if se == "bootstrap" or bootstrap > 0:
            raise OptionError("bootstrap standard errors with general constraints (a == 2*b, a > 0.5) are not "
                              "available: the bootstrap refits do not impose them")
        opt = constraints.minimize(est, x0, unconstrained=opt)
        est.constraints = constraints     # its scaled test uses the constrained information
    x = opt.x
    if not opt.converged:
        records.append(warning_record(NonConvergenceWarning,
                                      f"the model did not converge after {opt.iterations} iterations "
                                      f"({opt.message}); estimates are not trustworthy",
                                      iterations=opt.iterations))

    # 8. vcov ---------------------------------------------------------------
    vcov = None
    if se != "none":
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

    # 9. test -----------------------------------------------------------------
    tst = est.test(x) if test != "none" else {"chisq": math.nan, "df": df, "pvalue": math.nan}

    # 10. fit indices --------------------------------------------------------
    fit = fit_measures(est, x, tst)
    extra = getattr(est, "extra_fit_measures", None)
    if extra is not None:
        extra_fit = pd.Series(extra(x, tst, fit), dtype=float)   # estimator's keys replace the ML ones
        fit = pd.concat([fit.drop(labels=list(extra_fit.index), errors="ignore"), extra_fit])
    if constraints is not None:
        fit = constraints.adjust_fit(fit)

    # parameter estimates, SEs, z, p, CI
    pt = mdl.to_partable(x)
    pt = fill_inference(pt, x, vcov)
    if constraints is not None:
        pt = constraints.fill(pt, x)

    # 11. standardize --------------------------------------------------------
    # 12. defined ---------------------------------------------------------------
    defined = pt["op"] == ":="
    if defined.any():
        dp = DefinedParameters(pt)
        dvals = dp.values(x)
        est_col = pt["est"].to_numpy(float).copy()
        mask = defined.to_numpy()
        est_col[mask] = dvals
        pt["est"] = est_col
        if vcov is not None:
            jac = dp.jacobian(x)
            dse = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, vcov, jac), 0.0))
            set_inference(pt, mask, dvals, dse)
    pt = standardize(pt, mdl, x)
    if vcov is not None:   # delta-method SEs of std.lv and std.all (lavaan's standardizedSolution)
        from analysis.sem.standardize import standardized_se

        prepare = getattr(est, "set_residual_variances", None)    # WLSMV: theta moves with x
        for col, values in standardized_se(mdl, x, vcov, prepare=prepare).items():
            pt[f"{col}.se"] = values
    r2 = rsquare(pt, mdl, x)
    records += _diagnose(pt, mdl, x)

    if warn:
        for rec in records:
            cat = {c.__name__: c for c in (HeywoodCaseWarning, StandardizedLoadingWarning,
                                           NotPositiveDefiniteWarning, NonConvergenceWarning,
                                           IdentificationWarning)}.get(rec.get("category"))
            if cat is not None:
                _warnings.warn(rec["message"], cat, stacklevel=2)

    from analysis.sem.results import FitResult, TestStatistic

    tests = [TestStatistic(float(tst["chisq"]), float(tst["df"]), float(tst.get("pvalue", math.nan)))]
    if "chisq.scaled" in tst:
        tests.append(TestStatistic(float(tst["chisq.scaled"]), float(tst.get("df.scaled", tst["df"])),
                                   float(tst.get("pvalue.scaled", math.nan)), name="chisq.scaled",
                                   method=str(tst.get("method", "scaled")),
                                   scaling_factor=tst.get("chisq.scaling.factor"),
                                   shift=tst.get("chisq.shift.parameters")))
    opts = {k: v for k, v in options.items()}
    if survey is not None:
        opts.update(sampling_weights=survey.weights, cluster=survey.cluster, strata=survey.strata)
    opts.update(estimator=estimator, missing=missing, meanstructure=ms, group_equal=group_equal,
                group_partial=group_partial, ordered=ordered)
    result = FitResult(
        params=pt, fit_indices=fit, estimator=estimator, converged=bool(opt.converged),
        iterations=int(opt.iterations), optimizer=opt.method, nobs=tuple(int(round(n)) for n in getattr(est, "nobs", stats.nobs)),
        group_labels=tuple(group_labels), group=group, tests=tuple(tests), warnings=tuple(records),
        r2=r2, options=opts, missing=dict(check.missing) if check is not None else {},
        model=mdl, x=x, sample_stats=stats, vcov=vcov, syntax=syntax, estimator_object=est,
        inference=inference, optimization=opt, data_check=check,
    )
    # bootstrap SEs and CIs (lavaan's se="bootstrap"; 1000 draws unless bootstrap= says otherwise)
    if se == "bootstrap" or bootstrap > 0:
        if data is None:
            raise OptionError("bootstrap standard errors need the raw data (data=), not sample_cov")
        import dataclasses

        from analysis.sem.bootstrap import bootstrap_fit

        boot = bootstrap_fit(result, n_boot=int(bootstrap) if bootstrap > 0 else 1000, seed=seed, data=data)
        result = dataclasses.replace(result, params=boot.params, bootstrap=boot,
                                     inference=dataclasses.replace(inference, se="bootstrap"),
                                     options={**result.options, "se": "bootstrap"})
    if test == "bollen.stine":   # lavaan's test = "bootstrap": the chi-square's Bollen-Stine p value
        result = _with_bollen_stine(result, data, n_boot=int(bootstrap) if bootstrap > 0 else 1000, seed=seed)
    return result


def _with_bollen_stine(result, data, *, n_boot, seed):
    import dataclasses

    from analysis.sem.bootstrap import bollen_stine_test
    from analysis.sem.results import TestStatistic

    if data is None:
        raise OptionError("test='bootstrap' (Bollen-Stine) needs the raw data (data=), not sample_cov")
    bs = bollen_stine_test(result, n_boot=n_boot, seed=seed, data=data)
    standard = result.tests[0]
    boot = TestStatistic(standard.stat, standard.df, bs["pvalue"], name="chisq.bootstrap", method="bollen.stine")
    fit = result.fit_indices.copy()
    fit["bollen.stine.pvalue"] = bs["pvalue"]
    fit["bollen.stine.draws"] = bs["n_ok"]
    return dataclasses.replace(result, tests=(*result.tests, boot), fit_indices=fit, bollen_stine=bs)


def fit_imputed(model, datasets: Sequence[pd.DataFrame], *, scale_w: bool = False,
                sources: Sequence[str] | None = None, **options):
    """Fit ``model`` to each imputed dataset with :func:`analysis.sem.fit_sem` and pool.

    ``options`` are fit_sem's (estimator, ordered, group, ...). Returns a
    :class:`~analysis.sem.results.FitResult` whose ``params`` carry the pooled
    estimates with ``df``, ``fmi`` and ``riv`` columns, and whose ``fit_indices``
    hold the pooled test and indices; ``imputations`` keeps the m fits.
    ``sources`` names the datasets in messages (e.g. their files).
    """
    import pandas as pd

    from analysis.errors import DataError
    from analysis.sem.pool import pool_fits

    datasets = list(datasets)
    if len(datasets) < 2:
        raise OptionError("pooling over imputations needs at least 2 imputed datasets. "
                          f"Got {len(datasets)} instead.")
    for i, d in enumerate(datasets, 1):
        if not isinstance(d, pd.DataFrame):
            raise OptionError(f"imputed dataset {i} must be a pandas DataFrame. Got {type(d).__name__} instead.")
        if i > 1 and list(d.columns) != list(datasets[0].columns):
            raise DataError(f"imputed dataset {i} has other columns than the first; imputations of one "
                            "dataset share its columns")
    if options.get("bootstrap") or str(options.get("se", "")).lower() == "bootstrap":
        raise OptionError("bootstrap standard errors cannot be pooled over imputations (semTools neither)")
    if str(options.get("missing", "listwise")).lower() not in ("listwise",):
        raise OptionError("imputed datasets are complete: fit them with missing='listwise' "
                          f"(got missing={options.get('missing')!r})")
    options["warn"] = False
    fits = []
    names = list(sources) if sources is not None else [f"imputed dataset {i}" for i in range(1, len(datasets) + 1)]
    for name, d in zip(names, datasets):
        fit = fit_sem(model, d, **options)
        holes = fit.missing.get("missing_by_variable") or {}
        if fit.missing.get("n_dropped"):
            raise DataError(f"{name} still has missing values ("
                            + ", ".join(f"{v}: {n}" for v, n in holes.items())
                            + "); pooling needs completed datasets")
        fits.append(fit)
    return pool_fits(fits, scale_w=scale_w)


sem = fit_sem
cfa = fit_sem


def _conditional_x(conditional_x, statements, ordered, fixed_x, estimator, survey) -> bool:
    """lavaan's conditional.x: by default TRUE for ordered items (WLSMV/ULSMV) with observed
    exogenous covariates, FALSE otherwise; without covariates there is nothing to condition on."""
    from analysis.sem.estimators.registry import ESTIMATORS as REGISTRY

    ordered = _as_list(ordered)
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
    if not categorical:
        raise OptionError(
            "conditional_x=True is implemented for ordered items (WLSMV/ULSMV); with continuous "
            f"variables and estimator {estimator} use conditional_x=False (lavaan's default there; the "
            "estimates and the chi-square of a fixed.x model are the same)")
    if survey:
        raise OptionError(
            "sampling weights, clusters and strata with conditional_x=True (lavaan's default for ordered "
            "items with observed covariates) are not implemented; pass conditional_x=False")
    return True


def _check_model_argument(model) -> None:
    """The model is lavaan syntax (a string), a ParameterTable or parsed statements; anything else
    (e.g. a list of model lines) is refused by name instead of failing deep inside."""
    from .syntax import Statement

    if isinstance(model, (str, pd.DataFrame)):
        return
    if isinstance(model, (list, tuple)) and model and all(isinstance(s, Statement) for s in model):
        return
    if isinstance(model, (list, tuple)) and model and all(isinstance(s, str) for s in model):
        raise OptionError("The 'model' parameter of fit_sem must be lavaan model syntax as one string "
                          f"(a list of {len(model)} lines was given: join them with newlines, "
                          "'\\n'.join(lines)) or a ParameterTable (DataFrame).")
    raise OptionError("The 'model' parameter of fit_sem must be lavaan model syntax (a string) or a "
                      f"ParameterTable (DataFrame). Got {type(model).__name__} instead.")


def _two_level(model) -> bool:
    """Does the model have lavaan's ``level:`` blocks (text, parsed statements, or a table with a
    level column)?"""
    return isinstance(model, (str, list, tuple, pd.DataFrame)) and has_levels(model)


# --------------------------------------------------------------------------
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
    if ordered is True or _as_list(ordered) or (estimator or "ML").upper() in ("WLSMV", "ULSMV"):
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


