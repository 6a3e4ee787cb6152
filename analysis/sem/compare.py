"""Comparing fitted models: chi-square difference tests and information criteria.

``compare(fit_a, fit_b, ...)`` follows lavaan's ``lavTestLRT()`` (0.6-14):
models are ordered by degrees of freedom, consecutive models are compared
with the difference of their chi-square statistics (an RMSEA of the
difference is reported for standard tests), and AIC/BIC are set side by
side. For robust fits the scaled difference test is used: Satorra-Bentler
(2001) for MLR/MLM, Satorra (2000) for WLSMV-type statistics, both from
``analysis.sem.estimators.robust.scaled_difference`` (one implementation).

Nestedness cannot be proven from two fits, but several signs that models are
*not* nested are cheap to check and are reported as warnings: different
observed variables or cases, equal degrees of freedom, a more restricted
model that fits better, or a restricted model with free parameters the other
model does not have at all. When models are not nested only AIC/BIC are
meaningful, and the result says so.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Mapping
from types import SimpleNamespace
import numpy as np
import pandas as pd
from analysis.sem import distributions as stats

from analysis.errors import AnalysisError
from analysis.sem.estimators.robust import satorra_bentler_2001, scaled_difference
from analysis.sem.results import ComparisonResult, FitResult, InvalidTestStatistic, TestStatistic

__all__ = ["compare", "information_criteria", "lrt_rmsea", "net_nested", "satorra_bentler_2001",
           "ComparisonWarning"]

_EPS = np.finfo(float).eps ** (1 / 3)
_SB_TESTS = ("satorra.bentler", "yuan.bentler", "yuan.bentler.mplus")
_PARAM_OPS = ("=~", "~", "~~", "~1", "|")


class ComparisonWarning(UserWarning):
    """Models compared may not be nested, or differ in data or estimator."""


def lrt_rmsea(chisq_diff: float, df_diff: float, n: int, n_groups: int = 1) -> float:
    """RMSEA of a chi-square difference (lavaan's ``lav_fit_rmsea``)."""
    if not df_diff or df_diff <= 0 or pd.isna(chisq_diff):
        return float("nan")
    return float(np.sqrt(max((chisq_diff / n) / df_diff - 1.0 / n, 0.0)) * np.sqrt(n_groups))


def _observed(fit: FitResult) -> list[str]:
    ss = getattr(fit, "sample_stats", None)
    if ss is not None and getattr(ss, "ov_names", None):
        return sorted(ss.ov_names)
    pt = fit.params
    body = pt[pt["op"].isin(_PARAM_OPS)]
    lv = set(body.loc[body["op"] == "=~", "lhs"])
    names = set(body["lhs"]) | set(body.loc[body["op"] != "~1", "rhs"])
    return sorted(str(v) for v in names - lv if v and str(v) == str(v).strip())


def _keys(fit: FitResult, free_only: bool) -> set[tuple[str, str, str, int]]:
    """Parameter keys; a regression and a covariance between the same two variables
    share a key, since a model with one nests a model with the other locally
    (a measurement model with free latent covariances nests any structural model)."""
    pt = fit.params
    body = pt[pt["op"].isin(_PARAM_OPS)]
    if free_only:
        body = body[body["free"].fillna(0) > 0]
    keys = set()
    groups = body["group"] if "group" in body.columns else pd.Series(1, index=body.index)
    for lhs, op, rhs, g in zip(body["lhs"], body["op"], body["rhs"], groups):
        lhs, rhs = str(lhs), str(rhs)
        if op == "~" or (op == "~~" and lhs != rhs):
            keys.add((min(lhs, rhs), "~~", max(lhs, rhs), int(g)))
        else:
            keys.add((lhs, op, rhs, int(g)))
    return keys


def _free_keys(fit: FitResult) -> set[tuple[str, str, str, int]]:
    return _keys(fit, free_only=True)


def _all_keys(fit: FitResult) -> set[tuple[str, str, str, int]]:
    return _keys(fit, free_only=False)


def _fmt_key(k: tuple[str, str, str, int]) -> str:
    if k[1] == "~1":
        return f"{k[0]} ~1"
    if k[1] == "~~" and k[0] != k[2]:
        return f"{k[0]} ~ {k[2]} or {k[0]} ~~ {k[2]}"
    return f"{k[0]} {k[1]} {k[2]}"


def _value(fit: FitResult, key: str) -> float:
    v = fit.fit_indices.get(key, np.nan)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _scaled_kind(fit: FitResult) -> str | None:
    """The scaled test a fit carries ('yuan.bentler.mplus', 'scaled.shifted', ...), or None."""
    t = fit.scaled_test
    if t is None and pd.isna(_value(fit, "chisq.scaled")):
        return None
    method = t.method if t is not None else ""
    if method in _SB_TESTS or method in ("scaled.shifted", "mean.var.adjusted"):
        return method
    # a generic "scaled" test: the estimator says which
    if str(fit.estimator).upper() in ("WLSMV", "ULSMV", "WLSM", "ULSM") or \
            not pd.isna(_value(fit, "chisq.shift.parameter")):
        return "scaled.shifted"
    return "satorra.bentler" if str(fit.estimator).upper() == "MLM" else "yuan.bentler.mplus"




def _scaled_difference(restricted: FitResult, general: FitResult,
                       method: str) -> TestStatistic | InvalidTestStatistic:
    """The scaled difference test of ``analysis.sem.estimators.robust`` (SB2001 or Satorra 2000)."""
    if method not in ("satorra.bentler.2001", "satorra.2000"):
        return InvalidTestStatistic(f"the {method} scaled difference test is not available",
                                    name="chisq.diff")

    def proxy(fit: FitResult) -> SimpleNamespace:
        # the robust module wants the fitted estimator object as `.estimator`
        return SimpleNamespace(fit_indices=dict(fit.fit_indices), estimator=fit.estimator_object)

    try:
        return scaled_difference(proxy(restricted), proxy(general))
    except (ValueError, KeyError, TypeError) as exc:
        return InvalidTestStatistic(f"scaled difference test failed: {exc}", name="chisq.diff")


def net_nested(general: FitResult, restricted: FitResult, *,
               crit: float = 1e-7) -> tuple[bool | None, float, str]:
    """Is `restricted` nested in `general`? The NET check of Bentler & Satorra (2010).

    The general model is refitted (ML) to the moments implied by the restricted
    model; if it reproduces them exactly (fmin < `crit`) the restricted model is
    nested in it. Returns ``(nested, fmin, reason)``; ``nested`` is None when the
    check cannot be done (ordinal data, a fit without its compiled model) or is
    inconclusive, with the reason.
    """
    from analysis.sem.fit import fit_sem

    ordinal = False
    for fit in (general, restricted):
        if fit.model is None or fit.x is None or not fit.syntax:
            return None, float("nan"), "a fit lacks its compiled model or syntax"
        if fit.options.get("ordered"):
            # one group, thresholds and scales left to the defaults: the thresholds are
            # saturated in both models, so nesting is decided by the latent correlations
            if fit.n_groups > 1 or any(op in fit.syntax for op in ("|", "~*~")):
                return None, float("nan"), ("NET is available for single-group ordinal models "
                                            "without threshold or scale statements only")
            ordinal = True
    if general.n_groups != restricted.n_groups:
        return None, float("nan"), "the models have different numbers of groups"
    implied = restricted.model.implied(restricted.x)
    ov = [list(names) for names in restricted.model.ov_names]
    # fmin does not depend on N (fit_sem's (N-1)/N rescaling is undone below); a small N
    # keeps the refit's RMSEA p-value away from scipy's non-central chi-square overflow
    nobs = [max(len(o) + 1, 30) for o in ov]
    covs = [pd.DataFrame(m.sigma * n / (n - 1), index=o, columns=o)   # undo fit_sem's (N-1)/N
            for m, o, n in zip(implied, ov, nobs)]
    opts = general.options
    meanstructure = (bool(opts.get("meanstructure")) or general.n_groups > 1 or
                     str(opts.get("missing", "")).lower() in ("fiml", "ml")) and not ordinal
    means = [pd.Series(m.mu, index=o) for m, o in zip(implied, ov)] if meanstructure else None
    kwargs: dict = {}
    for key in ("std_lv", "group_equal", "group_partial", "fixed_x"):
        if opts.get(key) not in (None, [], (), ""):
            kwargs[key] = opts[key]
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            refit = fit_sem(general.syntax, sample_cov=covs if len(covs) > 1 else covs[0],
                            sample_mean=(means if len(covs) > 1 else means[0]) if means else None,
                            sample_nobs=nobs if len(nobs) > 1 else nobs[0],
                            meanstructure=meanstructure or None, warn=False, **kwargs)
    except Exception as exc:  # the check is advisory: never let it break a comparison
        return None, float("nan"), f"the NET refit failed ({type(exc).__name__}: {exc})"
    fx = float(refit.fit_indices.get("fmin", np.nan))
    if fx < crit:
        return True, fx, ""
    if fx > 10 * crit and refit.converged:
        return False, fx, ""
    return None, fx, "the NET refit was inconclusive"


def compare(*fits: FitResult | Mapping[str, FitResult], names: list[str] | None = None,
            method: str = "default", nesting: str = "net", warn: bool = True) -> ComparisonResult:
    """Compare fitted models (lavaan's ``lavTestLRT(fit_a, fit_b)``).

    Parameters
    ----------
    *fits : two or more :class:`FitResult`, or one mapping ``{name: fit}``.
    names : model names (default: the mapping keys, else "model1", "model2", ...).
    method : "default" (standard test, or the scaled test lavaan would pick),
        "standard", "satorra.bentler.2001", "satorra.bentler.2010", "satorra.2000".
    nesting : "net" (compare the parameter tables; where they disagree, refit the less
        restricted model to the other's implied moments, lavaan's NET check),
        "partable" (only compare the parameter tables), or "none".
    warn : also emit the warnings with :mod:`warnings` (they are always on the result).

    Returns
    -------
    ComparisonResult with one row per model ordered by df: ``npar, df, aic,
    bic, chisq, chisq.diff, df.diff, pvalue`` (and ``rmsea`` of the difference
    for standard tests, ``scaling.factor`` for scaled ones).

    Examples
    --------
    >>> # In R: lavTestLRT(fit_three_factor, fit_orthogonal)
    >>> # compare(fit_three_factor, fit_orthogonal)  # chisq.diff 68.222, df 3
    """
    fit_list, names = _named_fits(fits, names, nesting)
    order = sorted(range(len(fit_list)), key=lambda i: _value(fit_list[i], "df"))
    fits_sorted = [fit_list[i] for i in order]
    names = [names[i] for i in order]
    same_data, problems = _same_data(fits_sorted)
    df = np.array([_value(f, "df") for f in fits_sorted])
    chisq = np.array([_value(f, "chisq") for f in fits_sorted])
    pair_ok = _nested_pairs(fits_sorted, names, df, chisq, same_data=same_data, nesting=nesting,
                            problems=problems)
    nested = same_data and all(pair_ok[1:])
    method = _difference_method(fits_sorted, method, problems)
    table = pd.DataFrame({
        "npar": [_value(f, "npar") for f in fits_sorted],
        "df": df,
        "aic": [_value(f, "aic") for f in fits_sorted],
        "bic": [_value(f, "bic") for f in fits_sorted],
        "chisq": chisq,
    }, index=pd.Index(names, name="model"))
    tests = _difference_tests(table, fits_sorted, pair_ok, method, problems)
    table["nested"] = [None] + [bool(ok) for ok in pair_ok[1:]]

    if warn:
        for p in problems:
            _warnings.warn(p, ComparisonWarning, stacklevel=2)
    return ComparisonResult(table=table, tests=tuple(tests), nested=nested, method=method,
                            warnings=tuple(problems), fits=dict(zip(names, fits_sorted)))


def _named_fits(fits: tuple, names: list[str] | None, nesting: str) -> tuple[list[FitResult], list[str]]:
    """The fits and their names (a mapping's keys, or model1, model2, ...), checked."""
    if len(fits) == 1 and isinstance(fits[0], Mapping):
        mapping = dict(fits[0])
        names = names or [str(k) for k in mapping]
        fit_list = list(mapping.values())
    else:
        fit_list = list(fits)
        names = names or [f"model{i + 1}" for i in range(len(fit_list))]
    if nesting not in ("net", "partable", "none"):
        raise AnalysisError(f"nesting must be 'net', 'partable' or 'none'; got {nesting!r}")
    if len(fit_list) < 2:
        raise AnalysisError("compare needs at least two fitted models")
    if len(names) != len(fit_list):
        raise AnalysisError(f"{len(names)} names for {len(fit_list)} models")
    if len(set(names)) != len(names):
        raise AnalysisError(f"model names must be distinct; got {names}")
    for name, fit in zip(names, fit_list):
        if not isinstance(fit, FitResult):
            raise AnalysisError(f"model {name!r} is a {type(fit).__name__}, not a FitResult")
    return fit_list, list(names)


def _same_data(fits: list[FitResult]) -> tuple[bool, list[str]]:
    """Whether the models were fitted to the same variables and cases, and the problems found
    (also: fixed.x covariates modelled in some, different estimators, non-convergence)."""
    problems: list[str] = []
    ov = [_observed(f) for f in fits]
    same_data = all(o == ov[0] for o in ov)
    if not same_data:
        problems.append("some models are based on a different set of observed variables; "
                        "they are not nested: compare them by AIC/BIC only")
    ns = [f.ntotal for f in fits]
    if len(set(ns)) > 1:
        problems.append(f"the models were fitted to different numbers of cases ({ns}); "
                        "likelihood-ratio tests and information criteria are not comparable")
        same_data = False
    exo = [frozenset(f.params.loc[(f.params.get("exo", 0) == 1) & (f.params["op"] == "~~"),
                                  "lhs"].astype(str)) if "exo" in f.params.columns else frozenset()
           for f in fits]
    if same_data and len(set(exo)) > 1:
        fixed = sorted(set().union(*exo) - set.intersection(*map(set, exo)))
        problems.append(f"{', '.join(fixed)} is a fixed covariate (fixed.x) in some models but "
                        "modelled in others: chi-square differences stay valid, but the "
                        "log-likelihoods, AIC and BIC of those models are not comparable")
    estimators = {f.estimator for f in fits}
    if len(estimators) > 1:
        problems.append(f"the models use different estimators ({', '.join(sorted(estimators))})")
    if not all(f.converged for f in fits):
        problems.append("not all models converged")
    return same_data, problems


def _nested_pairs(fits: list[FitResult], names: list[str], df: np.ndarray, chisq: np.ndarray, *,
                  same_data: bool, nesting: str, problems: list[str]) -> list[bool]:
    """pair_ok[m]: model m (sorted by df) looks nested in model m - 1: more df, no better fit,
    and no parameter the other lacks (or the NET check says it is nested); reasons appended."""
    pair_ok = [same_data] * len(fits)
    pair_ok[0] = False
    for m in range(1, len(fits)):
        general, restricted = fits[m - 1], fits[m]
        gname, rname = names[m - 1], names[m]
        if df[m] == df[m - 1]:
            problems.append(f"models {gname!r} and {rname!r} have the same degrees of freedom; "
                            "they are not nested (or are equivalent): no difference test")
            pair_ok[m] = False
        elif chisq[m] - chisq[m - 1] < -_EPS:
            problems.append(f"the more restricted model {rname!r} fits better than {gname!r} "
                            f"(chisq {chisq[m]:.3f} < {chisq[m - 1]:.3f}); either the models "
                            "are not nested or the less restricted model did not reach the "
                            "global optimum")
            pair_ok[m] = False
        extra = _free_keys(restricted) - _all_keys(general) if same_data and \
            nesting != "none" else set()
        if extra:
            # the tables disagree: let the NET check decide when it can (lavaan: pt check, then NET)
            verdict, fx, _why = net_nested(general, restricted) if nesting == "net" \
                else (None, float("nan"), "")
            if verdict is False:
                problems.append(f"model {rname!r} is not nested in {gname!r}: {gname!r} cannot "
                                f"reproduce the moments implied by {rname!r} (NET check, fmin = "
                                f"{fx:.3g})")
                pair_ok[m] = False
            elif verdict is None:
                listed = ", ".join(_fmt_key(k) for k in sorted(extra)[:5])
                problems.append(f"model {rname!r} has parameters that {gname!r} does not "
                                f"({listed}{', ...' if len(extra) > 5 else ''}); the models "
                                "do not appear to be nested")
                pair_ok[m] = False
    return pair_ok


def _difference_method(fits: list[FitResult], method: str, problems: list[str]) -> str:
    """The difference test lavaan would use: standard, or for scaled tests Satorra-Bentler 2001
    (Satorra 2000 after a scaled-shifted test); standard when not every model has a scaled test."""
    kinds = [_scaled_kind(f) for f in fits]
    scaled = all(k is not None for k in kinds) and method != "standard"
    if any(k is not None for k in kinds) and not all(k is not None for k in kinds) \
            and method != "standard":
        problems.append("some models (but not all) have scaled test statistics; "
                        "the standard difference test is used")
    if method == "default":
        method = ("satorra.bentler.2001" if kinds[-1] in _SB_TESTS else "satorra.2000") \
            if scaled else "standard"
    elif not scaled and method != "standard":
        problems.append(f"method {method!r} needs robust test statistics, which these fits "
                        "lack; the standard difference test is used")
        method = "standard"
    return method


def _difference_tests(table: pd.DataFrame, fits: list[FitResult], pair_ok: list[bool], method: str,
                      problems: list[str]) -> list[TestStatistic | InvalidTestStatistic]:
    """The difference test of each nested pair, its columns added to ``table`` (chisq.diff,
    df.diff, pvalue, and the difference's RMSEA or the scaling factor)."""
    names, df, chisq = list(table.index), table["df"].to_numpy(), table["chisq"].to_numpy()
    diff = np.full(len(names), np.nan)
    ddf = np.full(len(names), np.nan)
    pval = np.full(len(names), np.nan)
    extra_col = np.full(len(names), np.nan)
    tests: list[TestStatistic | InvalidTestStatistic] = []
    for m in range(1, len(fits)):
        if not pair_ok[m]:
            continue
        general, restricted = fits[m - 1], fits[m]
        if method == "standard":
            d, dd = chisq[m] - chisq[m - 1], df[m] - df[m - 1]
            p = float(stats.chi2.sf(d, dd)) if dd > 0 else float("nan")
            test = TestStatistic(d, dd, p, name="chisq.diff", method="standard",
                                 null="the restricted model fits as well as the less "
                                      "restricted one")
            extra_col[m] = lrt_rmsea(d, dd, general.ntotal, general.n_groups)
        else:
            test = _scaled_difference(restricted, general, method)
            if isinstance(test, TestStatistic) and test.scaling_factor is not None:
                extra_col[m] = test.scaling_factor
        if isinstance(test, InvalidTestStatistic):
            problems.append(f"{names[m - 1]} vs {names[m]}: {test.reason}")
        tests.append(test)
        diff[m], ddf[m], pval[m] = test.stat, test.df, test.pvalue
        if ddf[m] == 0:
            pval[m] = np.nan
    table["chisq.diff"] = diff
    table["df.diff"] = ddf
    table["pvalue"] = pval
    table["rmsea" if method == "standard" else "scaling.factor"] = extra_col
    return tests


def information_criteria(*fits: FitResult, names: list[str] | None = None) -> pd.DataFrame:
    """AIC, BIC and sample-size adjusted BIC side by side, with differences to the best."""
    names = names or [f"model{i + 1}" for i in range(len(fits))]
    out = pd.DataFrame({"aic": [_value(f, "aic") for f in fits],
                        "bic": [_value(f, "bic") for f in fits],
                        "bic2": [_value(f, "bic2") for f in fits]},
                       index=pd.Index(names, name="model"))
    out["delta.aic"] = out["aic"] - out["aic"].min()
    out["delta.bic"] = out["bic"] - out["bic"].min()
    return out

