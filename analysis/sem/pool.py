"""Pool fits over multiply imputed datasets, as semTools' ``runMI()`` does.

>>> # In R: fit <- semTools::runMI(model, data = list_of_imputed_data, fun = "cfa")
>>> fit = fit_sem(model, [imp1, imp2, imp3, imp4, imp5])    # doctest: +SKIP
>>> fit.fit_indices["chisq"]                                 # D3 (ML) or D2 (WLSMV), pooled

Estimates (Rubin 1987): the mean over the m imputations. Their covariance
matrix is T = W + (1 + 1/m) B (semTools' ``scale.W = FALSE``), with W the mean
within-imputation covariance and B the between-imputation covariance of the
estimates; ``scale_w=True`` gives semTools' default (1 + ARIV) W, ARIV =
(1 + 1/m) tr(B W^-1) / npar. Each free parameter gets a t test on Rubin's
df = (m - 1)(1 + W / ((1 + 1/m) B))^2, the fraction of missing information
``fmi`` = (1 + 1/m) B / T and the relative increase in variance ``riv`` =
(1 + 1/m) B / W (per parameter, from the SEs, as semTools' summary(fmi = TRUE)).
A defined (``:=``) parameter is the mean of its m values; its SE is the delta method
with T and, as semTools, the Jacobian at the first imputation's estimates.

The model test is semTools' ``lavTestLRT.mi`` in its chi-square
(``asymptotic = TRUE``) form, as its ``fitMeasures()`` reports it: D3
(Meng & Rubin 1992, the likelihoods of each dataset at the pooled estimates)
for ML, D2 (Li, Meng, Raghunathan & Rubin 1991, from the m chi-squares) for
WLSMV/ULSMV. A scaled test (MLR, MLM, WLSMV) divides the pooled chi-square by
the mean scaling factor and adds the mean shift (semTools' ``pool.robust =
FALSE``). Incremental indices compare with the baseline model pooled the same
way (under D3 as semTools refits it: fixed.x covariates at the first imputation's
sample moments); SRMR compares the mean sample moments with the moments implied by the
pooled estimates.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.errors import OptionError, SEMWarning, warning_record
from analysis.sem.estimators import ML_ESTIMATORS
from analysis.sem.fitindices import cfi, ifi, nfi, pnfi, residual_indices, rfi, rmsea, rmsea_ci, rmsea_pvalue, rni, tli
from analysis.sem.syntax import EXPRESSION_OPS

__all__ = ["pool_fits"]



class ImputationWarning(SEMWarning):
    """Some imputations were left out of the pooled result (no convergence or no SEs)."""

    kind = "imputations-left-out"


def pool_fits(fits: Sequence, *, scale_w: bool = False):
    """Pool m fits of one model to m imputed datasets (see the module docstring)."""
    fits = list(fits)
    usable = [f for f in fits if f.converged and f.vcov is not None]
    records = []
    left_out = [i + 1 for i, f in enumerate(fits) if not (f.converged and f.vcov is not None)]
    if left_out:
        records.append(warning_record(ImputationWarning, (
            f"imputation(s) {', '.join(map(str, left_out))} left out of the pooled result "
            "(not converged or no standard errors), as semTools' omit.imps"), imputations=left_out))
    if len(usable) < 2:
        raise OptionError(f"only {len(usable)} of {len(fits)} imputations converged with standard errors; "
                          "at least 2 are needed to pool")
    first = usable[0]
    m = len(usable)
    params = _pool_estimates(usable, scale_w)
    x_bar = np.mean([f.x for f in usable], axis=0)
    mdl = _pooled_model(first, x_bar)
    from analysis.sem.standardize import rsquare, standardize

    params = standardize(params, mdl, x_bar)
    fit, tests = _pool_test(usable, x_bar)
    opts = dict(first.options)
    opts.update(pool="D3" if _uses_d3(first) else "D2", imputations=m, scale_w=bool(scale_w))
    return dataclasses.replace(
        first, params=params, fit_indices=fit, tests=tests, x=x_bar,
        model=mdl, vcov=_pooled_vcov(usable, scale_w), warnings=tuple(records), r2=rsquare(params, mdl, x_bar),
        converged=True, iterations=max(int(f.iterations or 0) for f in usable), options=opts,
        imputations=tuple(fits))


# ------------------------------------------------------------------ estimates

def _pooled_model(fit, x_bar):
    """The compiled model at the pooled estimates; under the delta parameterization its fixed
    residual variances follow the pooled loadings (1 - common variance), as lavaan's GLIST."""
    est = fit.estimator_object
    if not hasattr(est, "set_residual_variances"):
        return fit.model
    est = copy.copy(est)
    est.model = copy.deepcopy(fit.model)
    est.set_residual_variances(x_bar)
    return est.model


def _pooled_vcov(fits, scale_w: bool) -> np.ndarray:
    m = len(fits)
    within = np.mean([f.vcov for f in fits], axis=0)
    between = np.cov(np.array([f.x for f in fits]), rowvar=False, ddof=1)
    if scale_w:
        return (1 + _ariv(within, between, m, fits[0])) * within
    return within + (1 + 1 / m) * between


def _ariv(within, between, m, fit) -> float:
    """semTools' ARIV: (1 + 1/m) tr(B W^-1) / npar, npar net of equality constraints."""
    pt = fit.params
    npar = within.shape[0] - int((pt["op"] == "==").sum())
    try:
        inv = np.linalg.inv(within)
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(within)
    return float((1 + 1 / m) / npar * np.trace(between @ inv))


def _pool_estimates(fits, scale_w: bool) -> pd.DataFrame:
    m = len(fits)
    pt = fits[0].params.copy()
    est = np.array([f.params["est"].to_numpy(float) for f in fits])
    se = np.array([f.params["se"].to_numpy(float) for f in fits])
    free = ((pt["free"] > 0) | (pt["op"] == ":=")).to_numpy()
    params = ~pt["op"].isin(EXPRESSION_OPS).to_numpy() | (pt["op"] == ":=").to_numpy()
    est_bar = est.mean(axis=0)
    w = np.mean(se ** 2, axis=0)
    b_m = (1 + 1 / m) * est.var(axis=0, ddof=1)
    total = w + b_m
    vcov = _pooled_vcov(fits, scale_w)
    se_bar = np.zeros(len(pt))
    idx = pt["free"].to_numpy()
    has_x = idx > 0
    se_bar[has_x] = np.sqrt(np.maximum(np.diag(vcov), 0.0))[idx[has_x] - 1]
    defined = (pt["op"] == ":=").to_numpy()
    if defined.any():
        from analysis.sem.defined import DefinedParameters

        # delta method with T, the Jacobian taken where semTools takes it: at the first
        # imputation's estimates (runMI keeps the fit to the first dataset as its model), not at
        # the pooled ones; for a non-linear := the SE depends on that choice by O(B)
        jac = DefinedParameters(pt).jacobian(fits[0].x)
        se_bar[defined] = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, vcov, jac), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(free, (m - 1) * (1 + w / b_m) ** 2, np.nan)
        df = np.where(df > 9999, np.inf, df)
        t = np.where(free & (se_bar > 0), est_bar / se_bar, np.nan)
        fmi = np.where(free, b_m / total, np.nan)
        riv = np.where(free, b_m / w, np.nan)
    crit = np.where(np.isfinite(df), sps.t.ppf(0.975, np.where(np.isfinite(df), df, 1)), sps.norm.ppf(0.975))
    pvalue = np.where(np.isfinite(df), 2 * sps.t.sf(np.abs(t), np.where(np.isfinite(df), df, 1)),
                      2 * sps.norm.sf(np.abs(t)))
    pt["est"] = np.where(params, est_bar, pt["est"])
    pt["se"] = np.where(free, se_bar, np.where(params, 0.0, np.nan))
    pt["z"] = t
    pt["pvalue"] = np.where(free, pvalue, np.nan)
    pt["ci.lower"] = np.where(free, est_bar - crit * se_bar, pt["est"])
    pt["ci.upper"] = np.where(free, est_bar + crit * se_bar, pt["est"])
    pt["df"], pt["fmi"], pt["riv"] = df, fmi, riv
    return pt


# ------------------------------------------------------------------ test and fit indices

def _uses_d3(fit) -> bool:
    return fit.estimator in ML_ESTIMATORS


def _normal_loglik(implied, meanstructure: bool, data_stats, exo_idx) -> float:
    """Log-likelihood of one dataset (its moments ``data_stats``) at the moments ``implied``;
    with fixed.x covariates (``exo_idx`` per group) that of the y's given them, as lavaan:
    the covariates' own (saturated) log-likelihood is taken off."""
    total = 0.0
    for g, (s, n) in enumerate(zip(data_stats.cov, data_stats.nobs)):
        sigma, mu = implied[g]
        p = s.shape[0]
        w = np.linalg.inv(sigma)
        val = np.linalg.slogdet(sigma)[1] + np.sum(s * w)
        if meanstructure and mu is not None:
            d = data_stats.mean[g] - mu
            val += d @ w @ d
        total += -0.5 * n * (p * math.log(2 * math.pi) + val)
        x = exo_idx[g]
        if x:
            total += 0.5 * n * (len(x) * math.log(2 * math.pi) + np.linalg.slogdet(s[np.ix_(x, x)])[1] + len(x))
    return total


def _d3(fits, chisqs, df, model_moments) -> dict:
    """Meng & Rubin's D3 in chi-square form; ``model_moments`` are the pooled (Sigma, mu) per group."""
    m = len(fits)
    ms = fits[0].model.meanstructure
    stats = [f.estimator_object.stats for f in fits]
    n_g = len(stats[0].cov)
    saturated = [(np.mean([s.cov[g] for s in stats], axis=0),
                  np.mean([s.mean[g] for s in stats], axis=0)) for g in range(n_g)]
    model = fits[0].model
    exo_idx = [[model.ov_names[g].index(v) for v in model.exo_names[g]] for g in range(n_g)]
    ll0 = np.array([_normal_loglik(model_moments, ms, s, exo_idx) for s in stats])
    ll1 = np.array([_normal_loglik(saturated, ms, s, exo_idx) for s in stats])
    lrt_con = float(np.mean(-2 * (ll0 - ll1)))
    lrt_bar = float(np.mean(chisqs))
    ariv = (m + 1) / (df * (m - 1)) * (lrt_bar - lrt_con)
    chisq = max(lrt_con / (1 + ariv), 0.0)
    return {"chisq": chisq, "df": df, "pvalue": float(sps.chi2.sf(chisq, df)) if df > 0 else math.nan,
            "ariv": ariv, "fmi": ariv / (1 + ariv), "logl": float(np.mean(ll0)),
            "unrestricted.logl": float(np.mean(ll1))}


def _d2(chisqs, df) -> dict:
    """Li, Meng, Raghunathan & Rubin's D2 in chi-square form (semTools' calculate.D2)."""
    w = np.asarray(chisqs, float)
    m = len(w)
    ariv = (1 + 1 / m) * float(np.var(np.sqrt(np.maximum(w, 0.0)), ddof=1))
    stat = (w.mean() / df - (m + 1) * ariv / (m - 1)) / (1 + ariv)
    chisq = max(stat, 0.0) * df
    return {"chisq": chisq, "df": df, "pvalue": float(sps.chi2.sf(chisq, df)) if df > 0 else math.nan,
            "ariv": ariv, "fmi": ariv / (1 + ariv)}


def _model_moments(fits, x):
    """Moments implied by the pooled estimates; fixed.x covariates' (co)variances and means, fixed at
    each dataset's sample values, pooled too (semTools' coef(type = "user"))."""
    from analysis.sem.model import Model

    model = fits[0].model
    pt = model.partable
    exo = (pt["exo"] == 1).to_numpy()
    if exo.any():
        pt = pt.copy()
        pt.loc[exo, "ustart"] = np.mean([f.model.partable.loc[exo, "ustart"].to_numpy(float) for f in fits],
                                        axis=0)
        model = Model(pt, meanstructure=model.meanstructure)
    return [(mom.sigma, mom.mu) for mom in model.implied(x)]


def _baseline_moments(fits):
    """Pooled ML independence model as semTools fits it (runMI on the first imputation's baseline
    parameter table): mean variances and means; the observed covariates' block kept, free (its
    mean over imputations) or, with fixed.x, fixed at the first imputation's sample values."""
    from analysis.sem.fitindices import observed_exogenous

    model = fits[0].model
    stats = [f.estimator_object.stats for f in fits]
    out = []
    for g in range(len(stats[0].cov)):
        s_bar = np.mean([s.cov[g] for s in stats], axis=0)
        mu = np.mean([s.mean[g] for s in stats], axis=0)
        sigma = np.diag(np.diag(s_bar))
        x = observed_exogenous(model, g)
        if x:
            block = np.ix_(x, x)
            fixed = bool(model.exo_names[g])
            sigma[block] = stats[0].cov[g][block] if fixed else s_bar[block]
            if fixed:
                mu[x] = stats[0].mean[g][x]
        out.append((sigma, mu))
    return out


def _baseline_chisqs(fits) -> list[float]:
    """Each imputation's baseline chi-square as semTools' runMI refits it: with fixed.x, the
    covariates' (co)variances and means stay at the first imputation's values, which adds their
    misfit to the other imputations' chi-squares (without covariates: the fits' own values)."""
    model = fits[0].model
    own = [float(f.fit_indices["baseline.chisq"]) for f in fits]
    if not any(model.exo_names):
        return own
    from analysis.sem.fitindices import observed_exogenous

    first = fits[0].estimator_object.stats
    out = []
    for f, chisq in zip(fits, own):
        st = f.estimator_object.stats
        for g, (s, n) in enumerate(zip(st.cov, st.nobs)):
            x = observed_exogenous(model, g)
            if not x or not model.exo_names[g]:
                continue
            # the block's Kullback-Leibler misfit: baseline covariance is block-diagonal
            s_x, e_x = s[np.ix_(x, x)], first.cov[g][np.ix_(x, x)]
            inv = np.linalg.inv(e_x)
            misfit = (np.linalg.slogdet(e_x)[1] - np.linalg.slogdet(s_x)[1] + np.sum(s_x * inv) - len(x))
            if model.meanstructure:
                d = st.mean[g][x] - first.mean[g][x]
                misfit += d @ inv @ d
            chisq += n * misfit
        out.append(chisq)
    return out


def _scaled(fits, pooled: dict, *, baseline: bool = False) -> dict:
    """semTools' robustify(): pooled chi-square / mean scaling factor (+ mean shift)."""
    prefix = "baseline." if baseline else ""
    factors = [f.fit_indices.get(prefix + "chisq.scaling.factor", np.nan) for f in fits]
    model, first = fits[0].model, fits[0].estimator_object
    if baseline and _uses_d3(fits[0]) and any(model.exo_names) and hasattr(first, "baseline_robust"):
        # semTools' refitted baseline keeps the first imputation's covariate block: under MLM
        # (expected information at the implied moments) that changes each scaling factor
        exo = [[model.ov_names[g].index(v) for v in names] for g, names in enumerate(model.exo_names)]
        blocks = [s[np.ix_(x, x)] for s, x in zip(first.stats.cov, exo)]
        factors = [f.estimator_object.baseline_robust(exo_cov=blocks)["chisq.scaling.factor"] for f in fits]
    c0 = float(np.mean(factors))
    out = {"chisq.scaled": pooled["chisq"] / c0, "df.scaled": pooled["df"], "chisq.scaling.factor": c0}
    if fits[0].options.get("test") == "scaled.shifted":
        if baseline:
            shifts = [f.estimator_object.baseline()["chisq.shift.parameter"] for f in fits]
        else:
            shifts = [f.fit_indices.get("chisq.shift.parameter", np.nan) for f in fits]
        shift = float(np.mean(shifts))
        out["chisq.scaled"] += shift
        out["chisq.shift.parameters"] = shift
    out["pvalue.scaled"] = float(sps.chi2.sf(out["chisq.scaled"], out["df.scaled"]))
    return out


def _pool_test(fits, x_bar):
    from analysis.sem.results import TestStatistic

    first = fits[0]
    df = float(first.fit_indices["df"])
    chisqs = [float(f.fit_indices["chisq"]) for f in fits]
    base_chisqs = [float(f.fit_indices["baseline.chisq"]) for f in fits]
    if _uses_d3(first):
        base_chisqs = _baseline_chisqs(fits)
    bdf = float(np.mean([f.fit_indices["baseline.df"] for f in fits]))
    d3 = _uses_d3(first)
    if d3:
        pooled = _d3(fits, chisqs, df, _model_moments(fits, x_bar))
        base = _d3(fits, base_chisqs, bdf, _baseline_moments(fits))
    else:
        pooled = _d2(chisqs, df)
        base = _d2(base_chisqs, bdf)
    robust = "chisq.scaled" in first.fit_indices.index
    n = first.ntotal
    n_groups = first.n_groups
    npar = first.model.n_free
    x2, b2 = pooled["chisq"], base["chisq"]
    out = {"npar": npar, "chisq": x2, "df": df, "pvalue": pooled["pvalue"],
           "ariv": pooled["ariv"], "fmi": pooled["fmi"], "ntotal": n}
    if d3:
        logl = pooled["logl"]
        out.update({"logl": logl, "unrestricted.logl": pooled["unrestricted.logl"],
                    "aic": -2 * logl + 2 * npar, "bic": -2 * logl + npar * math.log(n),
                    "bic2": -2 * logl + npar * math.log((n + 2) / 24)})
    if robust:
        out.update(_scaled(fits, pooled))
        bsc = _scaled(fits, base, baseline=True)
    out.update({"baseline.chisq": b2, "baseline.df": bdf, "baseline.pvalue": base["pvalue"]})
    if robust:
        out.update({"baseline.chisq.scaled": bsc["chisq.scaled"], "baseline.df.scaled": bsc["df.scaled"],
                    "baseline.pvalue.scaled": bsc["pvalue.scaled"],
                    "baseline.chisq.scaling.factor": bsc["chisq.scaling.factor"]})
        if "chisq.shift.parameters" in bsc:
            out["baseline.chisq.shift.parameters"] = bsc["chisq.shift.parameters"]
    out.update(_incremental(x2, df, b2, bdf))
    shifted = first.options.get("test") == "scaled.shifted"
    if robust:
        x2s, dfs, b2s, bdfs = out["chisq.scaled"], out["df.scaled"], bsc["chisq.scaled"], bsc["df.scaled"]
        out.update({f"{k}.scaled": v for k, v in _incremental(x2s, dfs, b2s, bdfs).items()})
        if not shifted:   # cfi.robust as semTools: the mean scaling factors in the non-centrality
            ch, cb = out["chisq.scaling.factor"], bsc["chisq.scaling.factor"]
            out["cfi.robust"] = out["rni.robust"] = cfi(x2, df, b2, bdf, ch, cb)
    # RMSEA: lavaan's N (N - G for the (D)WLS/ULS estimators)
    n_rmsea = n if d3 else n - n_groups
    out["mfi"] = math.exp(-0.5 * (x2 - df) / n_rmsea)
    out["rmsea"] = rmsea(x2, df, n_rmsea, n_groups)
    lo, hi = rmsea_ci(x2, df, n_rmsea, n_groups)
    out.update({"rmsea.ci.lower": lo, "rmsea.ci.upper": hi,
                "rmsea.pvalue": rmsea_pvalue(x2, df, n_rmsea, n_groups)})
    if robust and shifted:
        out["rmsea.scaled"] = rmsea(x2s, df, n_rmsea, n_groups)
        lo, hi = rmsea_ci(x2s, df, n_rmsea, n_groups)
        out.update({"rmsea.ci.lower.scaled": lo, "rmsea.ci.upper.scaled": hi,
                    "rmsea.pvalue.scaled": rmsea_pvalue(x2s, df, n_rmsea, n_groups)})
    elif robust:
        ch = out["chisq.scaling.factor"]
        d = ch * df   # semTools: the mean trace of UGamma
        out["rmsea.scaled"] = rmsea(x2, d, n_rmsea, n_groups)
        lo, hi = rmsea_ci(x2, d, n_rmsea, n_groups, c_hat=ch)
        out.update({"rmsea.ci.lower.scaled": lo, "rmsea.ci.upper.scaled": hi,
                    "rmsea.pvalue.scaled": rmsea_pvalue(x2, d, n_rmsea, n_groups)})
        out["rmsea.robust"] = rmsea(x2, df, n_rmsea, n_groups, c_hat=ch)
        lo, hi = rmsea_ci(x2s, dfs, n_rmsea, n_groups, c_hat=ch)
        out.update({"rmsea.ci.lower.robust": lo, "rmsea.ci.upper.robust": hi})
    n_vars = len(first.model.ov_names[0])
    out.update(_gamma_hat(x2, df, n_vars, n_rmsea, n_groups))
    if robust:
        out.update({f"{k}.scaled": v for k, v in _gamma_hat(x2s, dfs, n_vars, n_rmsea, n_groups).items()})
    out.update(_pooled_residuals(fits, x_bar, d3))
    fit = pd.Series(out, dtype=float)
    tests = [TestStatistic(x2, df, pooled["pvalue"], method="D3" if d3 else "D2",
                           null="the model fits as well as the unrestricted model (pooled over imputations)")]
    if robust:
        tests.append(TestStatistic(out["chisq.scaled"], out["df.scaled"], out["pvalue.scaled"],
                                   name="chisq.scaled", method=first.options.get("test", "scaled"),
                                   scaling_factor=out["chisq.scaling.factor"],
                                   shift=out.get("chisq.shift.parameters")))
    return fit, tuple(tests)


def _gamma_hat(x2, df, n_vars, n, n_groups) -> dict:
    gamma = n_vars / (n_vars + 2 * (x2 - df) / n)
    adjusted = 1 - (n_groups * n_vars * (n_vars + 1) / 2 / df) * (1 - gamma) if df > 0 else math.nan
    return {"gammaHat": gamma, "adjGammaHat": adjusted}


def _incremental(x2, df, b2, bdf) -> dict:
    """semTools' incremental indices: its rfi and nfi lack lavaan's NA when the model has more df
    than the baseline (conditional.x: the baseline tests only the residual correlations)."""
    out = {"cfi": cfi(x2, df, b2, bdf), "rni": rni(x2, df, b2, bdf), "tli": tli(x2, df, b2, bdf),
           "nnfi": tli(x2, df, b2, bdf), "rfi": rfi(x2, df, b2, bdf), "nfi": nfi(x2, df, b2, bdf),
           "pnfi": pnfi(x2, df, b2, bdf), "ifi": ifi(x2, df, b2, bdf)}
    if df > bdf:
        t2 = b2 / bdf if bdf > 0 else math.nan
        t1 = t2 - x2 / df
        out["rfi"] = 1.0 if (t1 < 0 or t2 < 0) else t1 / t2
        out["nfi"] = (b2 - x2) / b2
    return out


def _pooled_residuals(fits, x_bar, continuous: bool) -> dict:
    """SRMR and friends: mean sample moments against the moments at the pooled estimates."""
    from analysis.sem.data import SampleStats

    first = fits[0]
    stats = [f.estimator_object.stats for f in fits]
    n_g = len(stats[0].cov)
    implied = first.model.implied(x_bar)
    if continuous:
        mean_stats = SampleStats(stats[0].ov_names,
                                 tuple(np.mean([s.cov[g] for s in stats], axis=0) for g in range(n_g)),
                                 tuple(np.mean([s.mean[g] for s in stats], axis=0) for g in range(n_g)),
                                 stats[0].nobs, stats[0].group_labels)
        res = residual_indices(mean_stats, implied, first.model.meanstructure)
        if first.model.meanstructure:
            res["crmr"] = _crmr_semtools(mean_stats, implied)
        return {"rmr": res["rmr"], "rmr_nomean": res["rmr_nomean"], "srmr": res["srmr_bentler"],
                "srmr_bentler": res["srmr_bentler"], "srmr_bentler_nomean": res["srmr_bentler_nomean"],
                "crmr": res["crmr"], "crmr_nomean": res["crmr_nomean"],
                "srmr_mplus": res["srmr_mplus"], "srmr_mplus_nomean": res["srmr_mplus_nomean"]}
    est = first.estimator_object
    if not getattr(est, "ordered_mask", np.array([False])).all():
        return {"srmr": math.nan}
    # all items ordered: off-diagonal polychoric residuals only (semTools' getSRMR); with
    # conditional.x the residual correlations given the covariates (lavaan's res.cov)
    conditional = hasattr(est, "residual_covariances")
    if conditional:
        est = copy.copy(est)
        est.model = copy.deepcopy(first.model)    # leave the first imputation's fit as it was
        implied_res = est.residual_covariances(x_bar)
    total = 0.0
    for g in range(n_g):
        if conditional:
            r_bar = np.mean([f.estimator_object.ostats[g].cov for f in fits], axis=0)
            model_r = implied_res[g]
        else:
            r_bar, model_r = np.mean([s.cov[g] for s in stats], axis=0), implied[g].sigma
        low = np.tril_indices(r_bar.shape[0], -1)
        total += stats[0].nobs[g] * math.sqrt(np.mean((r_bar - model_r)[low] ** 2))
    value = total / sum(stats[0].nobs)
    return dict.fromkeys(["rmr", "rmr_nomean", "srmr", "srmr_bentler", "srmr_bentler_nomean", "crmr",
                          "crmr_nomean", "srmr_mplus", "srmr_mplus_nomean"], value)


def _crmr_semtools(stats, implied) -> float:
    """CRMR with means as semTools' getSRMR: each mean scaled by its own SD (sample means by
    the sample SDs, implied means by the implied SDs), not both by the sample SDs as lavaan."""
    total = 0.0
    for g, (s, mom) in enumerate(zip(stats.cov, implied)):
        sd_s, sd_h = np.sqrt(np.diag(s)), np.sqrt(np.diag(mom.sigma))
        low = np.tril_indices(s.shape[0], -1)
        cor = (s / np.outer(sd_s, sd_s) - mom.sigma / np.outer(sd_h, sd_h))[low]
        means = stats.mean[g] / sd_s - mom.mu / sd_h
        total += stats.nobs[g] * math.sqrt(np.mean(np.concatenate([cor, means]) ** 2))
    return total / sum(stats.nobs)
