"""``fit_sem``: fit a structural equation model, in lavaan's steps.

The public entry: imputed datasets go to :func:`fit_imputed` (pooled as semTools' runMI),
models with ``level:`` blocks to :func:`analysis.sem.twolevel.fit_twolevel`, and every other
model through the steps of :mod:`analysis.sem.steps`, in lavaan's order:

    options -> data -> partable -> sample statistics -> start -> model -> estimation
    -> vcov -> test -> fit measures -> estimates and := -> standardized solution -> checks

>>> import pandas as pd                                      # doctest: +SKIP
>>> # In R: cfa("visual =~ x1 + x2 + x3 ...", data = HolzingerSwineford1939)
>>> fit = fit_sem("visual =~ x1 + x2 + x3", data=hs)          # doctest: +SKIP
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecificationError, OptionError
from analysis.sem import steps
from analysis.sem.estimators import ESTIMATOR_NAMES
from analysis.sem.steps import as_list
from analysis.sem.syntax import has_levels, parse_model

__all__ = ["fit_sem", "fit_imputed", "sem", "cfa", "ESTIMATORS"]

ESTIMATORS = ESTIMATOR_NAMES        # the registry's names (analysis.sem.estimators.ESTIMATORS)


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
            parameterization: str = "delta", conditional_x: bool | None = None,
            bootstrap_options: dict | None = None):
    """Fit a CFA/SEM written in lavaan syntax; returns a :class:`~analysis.sem.results.FitResult`.

    ``model``: lavaan syntax, a ParameterTable (e.g. an edited ``fit.params``) or the
    :class:`~analysis.sem.steps.ModelInput` of :func:`~analysis.sem.steps.read_model` (a model
    read once, e.g. by the command line). Parameters follow lavaan's ``sem()``: ``data`` (DataFrame) or
    ``sample_cov`` (+ ``sample_mean``, ``sample_nobs``; a list per group),
    ``group`` (column), ``group_equal`` / ``group_partial``, ``estimator``
    ("ML", or "WLSMV" when ``ordered`` is given; others are dispatched to
    their modules), ``missing``
    ("listwise" or "fiml"), ``ordered``, ``std_lv``, ``meanstructure``,
    ``se``, ``test`` (lavaan's names; "default" is the estimator's own: ML standard,
    MLR robust.huber.white + yuan.bentler.mplus, MLM robust.sem + satorra.bentler,
    WLSMV/ULSMV robust.sem + scaled.shifted; ML adds a requested test such as
    "satorra.bentler", "scaled.shifted", "mean.var.adjusted", "yuan.bentler(.mplus)" or
    "bootstrap" (Bollen-Stine) to the standard one; a list such as lavaan's
    ``test = c("standard", "satorra.bentler")`` names the own test and at most one more;
    the result's ``inference`` says the se, test and information used). ``start``: a free-parameter vector to start from (warm
    starts for bootstrap and simulation). ``control``: optimizer settings
    (``max_iter``, ``gtol``), as lavaan's ``control=``. ``warn=False`` keeps
    the warnings on the result only. ``collapse_sparse``: merge a category of an
    ordered item that some group never uses into its neighbour (else an error
    names the item, category and group). ``conditional_x``: lavaan's conditional.x; None
    (lavaan's default) models ordered items given their observed covariates under
    WLSMV/ULSMV (MIMIC, DIF) and does nothing otherwise; False fits items and covariates
    jointly (docs/engine.md). ``bootstrap_options``: keyword arguments of
    :func:`analysis.sem.bootstrap.bootstrap_fit` for ``se="bootstrap"`` (``ci``, ``level``,
    ``scheduler``, ``workers``, ``progress``); the replications' warnings become one record.

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
    _check_model_argument(model)
    spec = None
    if isinstance(model, steps.ModelInput):   # read once by the caller (the CLI checks its names first)
        spec, syntax = model, model.syntax
        model = spec.given_table if spec.given_table is not None else spec.statements
    elif isinstance(model, str):   # parsed once; the text is kept for the result
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
                            warn=warn, group=group, group_equal=as_list(group_equal),
                            group_partial=as_list(group_partial))

    # lavaan's lavaan(): options, data, partable, samplestats, start, model, estimation, vcov, test
    spec = spec or steps.read_model(model, syntax)
    options = steps.resolve_options(
        spec, estimator=estimator, missing=missing, se=se, test=test, std_lv=std_lv,
        meanstructure=meanstructure, bootstrap=bootstrap, seed=seed, group_equal=group_equal,
        group_partial=group_partial, ordered=ordered, fixed_x=fixed_x, collapse_sparse=collapse_sparse,
        parameterization=parameterization, conditional_x=conditional_x, control=control, warn=warn,
        sampling_weights=sampling_weights, cluster=cluster, strata=strata, design=design)
    fdata = steps.check_data(spec, options, data, sample_cov=sample_cov, group=group)
    table = steps.make_partable(spec, options, fdata, sample_mean=sample_mean)
    stats = steps.sample_statistics(table, fdata, sample_mean=sample_mean, sample_nobs=sample_nobs)
    steps.set_start(table, stats, options)
    compiled = steps.compile_model(table, stats, options, fdata, start=start)
    estimation = steps.estimate(compiled, table, options)
    vcov = steps.compute_vcov(compiled, estimation, options)
    test_ = steps.compute_test(compiled, estimation, table, options)
    fit = steps.compute_fit_measures(compiled, estimation, test_)
    # the table: estimates and := effects first, then the standardized solution that reads them
    params = steps.fill_estimates(compiled, estimation, vcov)
    solution = steps.standardize_solution(params, compiled, estimation, vcov)
    records = [*fdata.records, *estimation.records, *vcov.records,
               *steps.check_solution(solution.params, compiled, estimation)]
    if options.warn:
        for rec in records:
            cat = steps.WARNING_CLASSES.get(rec.get("category"))
            if cat is not None:
                _warnings.warn(rec["message"], cat, stacklevel=2)
    result = steps.make_result(spec=spec, options=options, fdata=fdata, table=table, stats=stats,
                               compiled=compiled, estimation=estimation, vcov=vcov, test=test_, fit=fit,
                               solution=solution, records=records)
    # lavaan's se = "bootstrap" and test = "bootstrap" (Bollen-Stine) refit the resampled data
    result = steps.add_bootstrap(result, options, data, bootstrap_options)
    return steps.add_bollen_stine(result, options, data)


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


def _check_model_argument(model) -> None:
    """The model is lavaan syntax (a string), a ParameterTable, parsed statements or a
    :class:`analysis.sem.steps.ModelInput` (the model read once); anything else
    (e.g. a list of model lines) is refused by name instead of failing deep inside."""
    from .syntax import Statement

    if isinstance(model, (str, pd.DataFrame, steps.ModelInput)):
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

