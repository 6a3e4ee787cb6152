"""Fit measures with lavaan's ``fitMeasures()`` names and conventions.

The incremental indices and RMSEA are plain functions of (chisq, df) of the
model and of the baseline (independence) model, with optional scaling
factors ``c_hat`` so that scaled/robust variants (``cfi.robust``,
``rmsea.scaled``, ...) reuse them: call them with the scaled statistics and
the scaling factors (lavaan's ``lav_fit_cfi``, ``lav_fit_rmsea``).

``fit_measures(est, x, test)`` assembles the full Series for an ML fit;
``robust_fit_indices`` adds the ``.scaled``/``.robust`` keys for every estimator
(ML, MLM, MLR, FIML, WLSMV, two-level) with one set of edge cases.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from analysis.sem import distributions as sps

from analysis.sem.estimators.base import vech

__all__ = [
    "cfi", "tli", "rni", "nfi", "rfi", "pnfi", "ifi",
    "rmsea", "rmsea_ci", "rmsea_pvalue", "rmsea_notclose_pvalue",
    "incremental_indices", "rmsea_indices", "robust_fit_indices", "observed_exogenous",
    "baseline_test", "residual_indices", "fit_measures",
]


def _nan(*vals) -> bool:
    """lavaan's ``anyNA``/``!is.finite`` guard: any missing or infinite input."""
    return any(v is None or not math.isfinite(v) for v in vals)


def _robust_branch(df, c_hat, c_hat_null) -> bool:
    """lavaan uses the scaling factors only when both differ from 1 (and df > 0); with just
    one of them different from 1 the index is the plain one."""
    return df > 0 and c_hat != 1 and c_hat_null != 1


def _noncentralities(x2, df, x2_null, df_null, c_hat, c_hat_null):
    if _robust_branch(df, c_hat, c_hat_null):
        return x2 - c_hat * df, x2_null - c_hat_null * df_null
    return x2 - df, x2_null - df_null


def cfi(x2, df, x2_null, df_null, c_hat=1.0, c_hat_null=1.0) -> float:
    """Comparative fit index, in [0, 1]; robust (Brosseau-Liard & Savalei 2014) with c_hat."""
    if _nan(x2, df, x2_null, df_null, c_hat, c_hat_null):
        return math.nan
    d, d_null = _noncentralities(x2, df, x2_null, df_null, c_hat, c_hat_null)
    t1, t2 = max(d, 0.0), max(d, d_null, 0.0)
    if math.isclose(t1, 0.0, abs_tol=1.5e-8) and math.isclose(t2, 0.0, abs_tol=1.5e-8):
        return 1.0
    return 1.0 - t1 / t2


def rni(x2, df, x2_null, df_null, c_hat=1.0, c_hat_null=1.0) -> float:
    """Relative noncentrality index (CFI without clamping)."""
    if _nan(x2, df, x2_null, df_null, c_hat, c_hat_null):
        return math.nan
    t1, t2 = _noncentralities(x2, df, x2_null, df_null, c_hat, c_hat_null)
    if math.isclose(t2, 0.0, abs_tol=1.5e-8):
        return math.nan
    return 1.0 - t1 / t2


def tli(x2, df, x2_null, df_null, c_hat=1.0, c_hat_null=1.0) -> float:
    """Tucker-Lewis index (= NNFI); 1 when df = 0."""
    if _nan(x2, df, x2_null, df_null, c_hat, c_hat_null):
        return math.nan
    d, d_null = _noncentralities(x2, df, x2_null, df_null, c_hat, c_hat_null)
    t1, t2 = d * df_null, d_null * df
    if df > 0 and abs(t2) > 0:
        return 1.0 - t1 / t2
    return 1.0


def rfi(x2, df, x2_null, df_null) -> float:
    """Bollen's relative fit index."""
    if _nan(x2, df, x2_null, df_null) or df > df_null:
        return math.nan
    if df > 0 and df_null > 0:
        t1, t2 = x2_null / df_null - x2 / df, x2_null / df_null
        return 1.0 if (t1 < 0 or t2 < 0) else t1 / t2
    return 1.0


def nfi(x2, df, x2_null, df_null) -> float:
    """Bentler-Bonett normed fit index."""
    if _nan(x2, df, x2_null, df_null) or df > df_null or math.isclose(x2_null, 0.0, abs_tol=1.5e-8):
        return math.nan
    return (x2_null - x2) / x2_null if df > 0 else 1.0


def pnfi(x2, df, x2_null, df_null) -> float:
    """Parsimony normed fit index."""
    if not _nan(x2, df, x2_null, df_null) and df_null > 0 and x2_null > 0:
        return (df / df_null) * (x2_null - x2) / x2_null
    return math.nan


def ifi(x2, df, x2_null, df_null) -> float:
    """Bollen's incremental fit index."""
    if _nan(x2, df, x2_null, df_null):
        return math.nan
    t1, t2 = x2_null - x2, x2_null - df
    if t2 < 0:
        return 1.0
    if math.isclose(t2, 0.0, abs_tol=1.5e-8):
        return math.nan
    return t1 / t2


def incremental_indices(x2, df, x2_null, df_null, suffix: str = "") -> dict[str, float]:
    """cfi, tli, nnfi, rni, rfi, nfi, pnfi, ifi of ``fitMeasures()`` (keys end in ``suffix``)."""
    args = (x2, df, x2_null, df_null)
    values = {"cfi": cfi(*args), "tli": tli(*args), "nnfi": tli(*args), "rni": rni(*args),
              "rfi": rfi(*args), "nfi": nfi(*args), "pnfi": pnfi(*args), "ifi": ifi(*args)}
    return {key + suffix: v for key, v in values.items()}


def rmsea(x2, df, n, n_groups=1, c_hat=1.0) -> float:
    """RMSEA = sqrt(max(x2/n/df - c_hat/n, 0)) * sqrt(G) (lavaan's multi-group convention); 0 when df <= 0."""
    if _nan(df):
        return math.nan
    if df <= 0:     # lavaan's ifelse(df > 0, ..., 0): 0 even when the statistic or c_hat is NA
        return 0.0
    if _nan(x2, n, c_hat):
        return math.nan
    return math.sqrt(max(x2 / n / df - c_hat / n, 0.0)) * math.sqrt(n_groups)


def rmsea_ci(x2, df, n, n_groups=1, c_hat=1.0, level=0.90) -> tuple[float, float]:
    """Confidence interval of RMSEA from the noncentral chi-square (the roots lavaan's uniroot seeks);
    NaN when an input is missing or a root does not exist, (0, 0) when df < 1."""
    if _nan(x2, df, n):
        return math.nan, math.nan
    if df < 1:
        return 0.0, 0.0
    upper_p, lower_p = 1 - (1 - level) / 2, (1 - level) / 2

    def lower_fn(lam):
        return sps.ncx2.cdf(x2, df, lam) - upper_p if lam > 0 else sps.chi2.cdf(x2, df) - upper_p

    def upper_fn(lam):
        return sps.ncx2.cdf(x2, df, lam) - lower_p if lam > 0 else sps.chi2.cdf(x2, df) - lower_p

    def bound(p):
        with np.errstate(all="ignore"):
            lam = float(sps.ncx2.noncentrality(x2, df, p))
        return math.sqrt(c_hat * lam / (n * df)) * math.sqrt(n_groups) if lam >= 0 else math.nan

    lo = 0.0 if lower_fn(0.0) < 0 else bound(upper_p)
    n_rmsea = max(n, x2 * 4)
    hi = 0.0 if (upper_fn(n_rmsea) > 0 or upper_fn(0.0) < 0) else bound(lower_p)
    return lo, hi


def rmsea_pvalue(x2, df, n, n_groups=1, c_hat=1.0, h0=0.05) -> float:
    """p-value of close fit, H0: RMSEA <= h0."""
    if _nan(x2, df, n, c_hat) or df <= 0:
        return math.nan
    ncp = (n * df / c_hat * h0 ** 2) / n_groups
    return _ncx2(sps.ncx2.sf, x2, df, ncp, at_zero=1.0)


def rmsea_notclose_pvalue(x2, df, n, n_groups=1, c_hat=1.0, h0=0.08) -> float:
    """p-value of not-close fit, H0: RMSEA >= h0 (MacCallum et al. 1996)."""
    if _nan(x2, df, n, c_hat) or df <= 0:
        return math.nan
    ncp = (n * df / c_hat * h0 ** 2) / n_groups
    return _ncx2(sps.ncx2.cdf, x2, df, ncp, at_zero=0.0)


def rmsea_indices(x2, df, n, n_groups=1, c_hat=1.0, *, x2_ci=None, c_hat_ci=None,
                  suffix: str = "") -> dict[str, float]:
    """rmsea, its 90% interval and close/not-close p-values (keys end in ``suffix``).

    The robust RMSEA (lavaan) takes its point estimate from the unscaled statistic with
    ``c_hat`` but its interval and p-values from the scaled statistic ``x2_ci`` with the
    scaling factor ``c_hat_ci``."""
    x2_ci = x2 if x2_ci is None else x2_ci
    c_hat_ci = c_hat if c_hat_ci is None else c_hat_ci
    lo, hi = rmsea_ci(x2_ci, df, n, n_groups, c_hat_ci)
    values = {"rmsea": rmsea(x2, df, n, n_groups, c_hat),
              "rmsea.ci.lower": lo, "rmsea.ci.upper": hi,
              "rmsea.pvalue": rmsea_pvalue(x2_ci, df, n, n_groups, c_hat_ci),
              "rmsea.notclose.pvalue": rmsea_notclose_pvalue(x2_ci, df, n, n_groups, c_hat_ci)}
    return {key + suffix: v for key, v in values.items()}


def _ncx2(fn, x2, df, ncp, *, at_zero: float) -> float:
    """Noncentral chi-square tail; a statistic of (almost) zero with a large df overflows
    scipy's series (boost tgamma), where the answer is its limit at zero."""
    if x2 <= 1e-6:
        return at_zero
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(fn(x2, df, ncp))
        except (OverflowError, FloatingPointError):
            return at_zero
    return value if math.isfinite(value) else at_zero


# --------------------------------------------------------------------------
def hoelter_indices(chisq: float, df: int, n: float) -> dict:
    """Hoelter's critical N (lavaan's cn_05, cn_01); ``n`` is lavaan's N for the estimator
    (ntotal for ML, ntotal minus the number of groups for (D)WLS/ULS)."""
    if df == 0 and chisq < math.sqrt(np.finfo(float).eps):
        return {"cn_05": math.nan, "cn_01": math.nan}
    return {"cn_05": sps.chi2.ppf(0.95, df) / (chisq / n) + 1,
            "cn_01": sps.chi2.ppf(0.99, df) / (chisq / n) + 1}


def robust_fit_indices(test: dict, baseline: dict, n: int, n_groups: int = 1,
                       robust: dict | None = None, continuous: bool = False) -> dict:
    """The scaled and robust fit keys of ``fitMeasures()`` (lavaan 0.6-14).

    ``test``/``baseline``: the model's and the independence model's test dicts
    (``chisq``, ``df`` plus the scaled keys). ``robust``: optional corrections
    (``XX3, df3, c.hat3, XX3.scaled, XX3.null, c.hat3.null``: FIML-C (V3) or
    categorical catML) that replace the complete-data ingredients. Robust
    indices: the unscaled statistic with the scaling factor as ``c.hat``
    (Brosseau-Liard & Savalei 2012, 2014; Savalei 2018 for scaled-shifted).
    """
    x2, df = test["chisq"], test["df"]
    x2n, dfn = baseline["chisq"], baseline["df"]
    kind = test.get("test.scaled")
    if kind is None:            # unscaled ML with FIML: only the FIML-C robust indices (V6)
        return _robust_keys(df, dfn, n, n_groups, robust) if robust else {}
    xs, dfs, bs, bdfs = test["chisq.scaled"], test["df.scaled"], baseline["chisq.scaled"], baseline["df.scaled"]
    out = {
        "chisq.scaled": xs, "df.scaled": dfs, "pvalue.scaled": test["pvalue.scaled"],
        "chisq.scaling.factor": test["chisq.scaling.factor"],
        # scaled-shifted tests: the shift (lavaan's lavTest() "shift.parameter"), so summaries show it
        **({"chisq.shift.parameter": test["chisq.shift.parameter"]}
           if "chisq.shift.parameter" in test else {}),
        "baseline.chisq.scaled": bs, "baseline.df.scaled": bdfs,
        "baseline.pvalue.scaled": baseline["pvalue.scaled"],
        "baseline.chisq.scaling.factor": baseline["chisq.scaling.factor"],
        **incremental_indices(xs, dfs, bs, bdfs, suffix=".scaled"),
    }
    for key in ("scaling.factor.h1", "scaling.factor.h0"):
        if key in test:
            out[key] = test[key]
    # scaled RMSEA: the scaled-shifted statistic on df, else the unscaled one on tr(U Gamma)
    if kind == "scaled.shifted":
        xx2, df2 = xs, df
    else:
        xx2, df2 = x2, test.get("trace.UGamma", math.nan)
        if not math.isfinite(df2) or df2 == 0:
            df2 = math.nan
    out.update(rmsea_indices(xx2, df2, n, n_groups, suffix=".scaled"))
    if kind == "mean.var.adjusted" or (kind == "scaled.shifted" and robust is None and not continuous):
        return out       # none for mean.var.adjusted; categorical: lavaan's need a catML refit (not offered)
    if robust is None:
        c = test["chisq.scaling.factor"]
        robust = {"XX3": x2, "df3": df, "c.hat3": c, "XX3.scaled": xs, "XX3.null": x2n,
                  "c.hat3.null": baseline["chisq.scaling.factor"]}
        if kind == "scaled.shifted":   # continuous ML: c = a (df - b) / df (lavaan, Savalei 2018)
            robust["c.hat3"] = c * (df - test["chisq.shift.parameter"]) / df
            robust["c.hat3.null"] *= (dfn - baseline["chisq.shift.parameter"]) / dfn
            robust["c.hat.ci"] = c     # the interval and p-values keep the scaling factor a
    out.update(_robust_keys(df, dfn, n, n_groups, robust))
    return out


def _robust_keys(df, dfn, n, n_groups, r: dict) -> dict:
    """cfi/tli/nnfi/rni/rmsea (interval, p-values) ``.robust`` from the robust ingredients ``r``."""
    xx3, c, xx3n, cn = r["XX3"], r["c.hat3"], r["XX3.null"], r["c.hat3.null"]
    out = {"cfi.robust": cfi(xx3, df, xx3n, dfn, c, cn), "tli.robust": tli(xx3, df, xx3n, dfn, c, cn),
           "nnfi.robust": tli(xx3, df, xx3n, dfn, c, cn), "rni.robust": rni(xx3, df, xx3n, dfn, c, cn)}
    out.update(rmsea_indices(xx3, r["df3"], n, n_groups, c, x2_ci=r["XX3.scaled"],
                             c_hat_ci=r.get("c.hat.ci", c), suffix=".robust"))
    return out


# --------------------------------------------------------------------------
def observed_exogenous(model, g: int) -> list[int]:
    """Positions (in ``model.ov_names[g]``) of the observed exogenous variables (lavaan's
    ``ov.x``: only ever predictors), whether fixed.x or not: the independence model keeps
    their covariances (fixed.x: as sample values; fixed_x=False: as free parameters)."""
    from analysis.sem.partable import vnames

    pt = model.partable
    rows = pt[(pt["group"] == model.groups[g]) & ~pt["op"].isin([":=", "==", "<", ">"])]
    ov_x = vnames(list(zip(rows["lhs"], rows["op"], rows["rhs"])))["ov.x"]
    names = list(model.ov_names[g])
    return [names.index(v) for v in ov_x if v in names]


def baseline_test(stats, exo_idx: list[list[int]], meanstructure: bool) -> dict:
    """Independence model: variances (and means) free, fixed.x covariates' block kept.

    Closed form for complete-data ML: F_g = 0.5 (sum log s_ii + log|S_xx| - log|S|)."""
    n = stats.ntotal
    f = 0.0
    df = 0
    for g, s in enumerate(stats.cov):
        p = s.shape[0]
        x = exo_idx[g]
        y = [i for i in range(p) if i not in x]
        ld = np.linalg.slogdet(s)[1]
        ldb = float(np.sum(np.log(np.diag(s)[y])))
        if x:
            ldb += np.linalg.slogdet(s[np.ix_(x, x)])[1]
        f += stats.nobs[g] / n * 0.5 * (ldb - ld)
        px = len(x)
        moments = p * (p + 1) // 2 - px * (px + 1) // 2 + ((p - px) if meanstructure else 0)
        df += moments - len(y) - (len(y) if meanstructure else 0)
    chisq = 2 * n * f
    return {"chisq": chisq, "df": df, "pvalue": float(sps.chi2.sf(chisq, df)) if df > 0 else math.nan}


def residual_indices(stats, implied, meanstructure: bool) -> dict[str, float]:
    """rmr, srmr (Bentler), crmr (Bollen) with and without means, srmr_mplus; n_g-weighted."""
    n = stats.ntotal
    keys = ["rmr", "rmr_nomean", "srmr_bentler", "srmr_bentler_nomean", "crmr", "crmr_nomean",
            "srmr_mplus", "srmr_mplus_nomean"]
    out = dict.fromkeys(keys, 0.0)
    for g, (s, mom) in enumerate(zip(stats.cov, implied)):
        w = stats.nobs[g] / n
        sig, p = mom.sigma, s.shape[0]
        m = stats.mean[g] if stats.mean[g] is not None else mom.mu
        sd_s, sd_h = np.sqrt(np.diag(s)), np.sqrt(np.diag(sig))
        raw, raw_m = vech(s - sig), m - mom.mu
        ben, ben_m = vech((s - sig) / np.outer(sd_s, sd_s)), (m - mom.mu) / sd_s
        bol = vech(s / np.outer(sd_s, sd_s) - sig / np.outer(sd_h, sd_h))
        bol_m = (m - mom.mu) / sd_s      # lavaan scales the implied means by the sample SDs too
        pstar = p * (p + 1) // 2

        def rms(v, m_, k, mean):
            if mean:
                return math.sqrt((np.sum(v ** 2) + np.sum(m_ ** 2)) / (k + p))
            return math.sqrt(np.sum(v ** 2) / k)

        vals = {
            "rmr_nomean": rms(raw, raw_m, pstar, False),
            "srmr_bentler_nomean": rms(ben, ben_m, pstar, False),
            "crmr_nomean": rms(bol, bol_m, pstar - p, False),
        }
        diag_rel = (np.diag(s) - np.diag(sig)) / np.diag(s)
        off = np.tril_indices(p, -1)
        cor_off = (s / np.outer(sd_s, sd_s) - sig / np.outer(sd_h, sd_h))[off]
        mplus_nm = math.sqrt((np.sum(cor_off ** 2) + np.sum(diag_rel ** 2)) / pstar)
        vals["srmr_mplus_nomean"] = mplus_nm
        if meanstructure:
            vals["rmr"] = rms(raw, raw_m, pstar, True)
            vals["srmr_bentler"] = rms(ben, ben_m, pstar, True)
            vals["crmr"] = rms(bol, bol_m, pstar - p, True)
            mm = m / sd_s - mom.mu / sd_h
            vals["srmr_mplus"] = math.sqrt((np.sum(cor_off ** 2) + np.sum(mm ** 2)
                                            + np.sum(diag_rel ** 2)) / (pstar + p))
        else:
            vals["rmr"], vals["srmr_bentler"], vals["crmr"] = (vals["rmr_nomean"],
                                                               vals["srmr_bentler_nomean"],
                                                               vals["crmr_nomean"])
            vals["srmr_mplus"] = mplus_nm
        for k in keys:
            out[k] += w * vals[k]
    return out


def _gfi(stats, implied, meanstructure: bool, exo_idx) -> float:
    """LISREL GFI: 1 - e'We / s'Ws with the normal-theory weight at the implied moments;
    moments among fixed.x covariates are left out (as lavaan)."""
    n = stats.ntotal
    total = 0.0
    for g, (s, mom) in enumerate(zip(stats.cov, implied)):
        p = s.shape[0]
        x = np.asarray(exo_idx[g], dtype=int)
        keep_m = ~np.isin(np.arange(p), x)
        w_inv = np.linalg.inv(mom.sigma)
        # vech(E)' [0.5 D'(W kron W) D] vech(E) = tr(W E W E) / 2: O(p^3), not the p^2 x p^2 weight;
        # the fixed.x block of E set to zero leaves those moments out
        exo_block = np.zeros((p, p), dtype=bool)
        exo_block[np.ix_(x, x)] = True
        we = w_inv @ np.where(exo_block, 0.0, s - mom.sigma)
        ws = w_inv @ np.where(exo_block, 0.0, s)
        t1 = 0.5 * np.sum(we * we.T)
        t2 = 0.5 * np.sum(ws * ws.T)
        if meanstructure and stats.mean[g] is not None:
            wm = w_inv[np.ix_(keep_m, keep_m)]
            d = (stats.mean[g] - mom.mu)[keep_m]
            t1 += d @ wm @ d
            t2 += stats.mean[g][keep_m] @ wm @ stats.mean[g][keep_m]
        total += stats.nobs[g] / n * (1 - t1 / t2)
    return total


def fit_measures(est, x: np.ndarray, test: dict, *, baseline: dict | None = None) -> pd.Series:
    """lavaan's fitMeasures() for a complete-data ML fit."""
    model, stats = est.model, est.stats
    n, n_groups = stats.ntotal, stats.n_groups
    implied = model.implied(x)
    meanstructure = model.meanstructure
    npar = model.n_free
    chisq, df = float(test["chisq"]), float(test["df"])
    fmin = chisq / (2 * n)
    exo_idx = [[model.ov_names[g].index(v) for v in model.exo_names[g]] for g in range(n_groups)]
    base = baseline or baseline_test(stats, [observed_exogenous(model, g) for g in range(n_groups)],
                                     meanstructure)
    b2, bdf = base["chisq"], float(base["df"])
    # log-likelihoods
    logl = unres = 0.0
    for g, (s, mom) in enumerate(zip(stats.cov, implied)):
        p, ng = s.shape[0], stats.nobs[g]
        sign, ld = np.linalg.slogdet(mom.sigma)
        w = np.linalg.inv(mom.sigma)
        val = ld + np.sum(s * w)
        if meanstructure and stats.mean[g] is not None:
            d = stats.mean[g] - mom.mu
            val += d @ w @ d
        logl += -0.5 * ng * (p * math.log(2 * math.pi) + val)
        unres += -0.5 * ng * (p * math.log(2 * math.pi) + np.linalg.slogdet(s)[1] + p)
        x = exo_idx[g]
        if x:
            # fixed.x: lavaan reports the log-likelihood of the y's given the covariates
            px = len(x)
            lx = -0.5 * ng * (px * math.log(2 * math.pi) + np.linalg.slogdet(s[np.ix_(x, x)])[1] + px)
            logl -= lx
            unres -= lx
    out = {
        "npar": npar, "fmin": fmin, "chisq": chisq, "df": df, "pvalue": test.get("pvalue", math.nan),
        "baseline.chisq": b2, "baseline.df": bdf, "baseline.pvalue": base["pvalue"],
        **incremental_indices(chisq, df, b2, bdf),
        "logl": logl, "unrestricted.logl": unres,
        "aic": -2 * logl + 2 * npar, "bic": -2 * logl + npar * math.log(n), "ntotal": n,
        "bic2": -2 * logl + npar * math.log((n + 2) / 24),
        **rmsea_indices(chisq, df, n, n_groups),
        "rmsea.ci.level": 0.90, "rmsea.close.h0": 0.05, "rmsea.notclose.h0": 0.08,
    }
    res = residual_indices(stats, implied, meanstructure)
    out.update({"rmr": res["rmr"], "rmr_nomean": res["rmr_nomean"], "srmr": res["srmr_bentler"],
                "srmr_bentler": res["srmr_bentler"], "srmr_bentler_nomean": res["srmr_bentler_nomean"],
                "crmr": res["crmr"], "crmr_nomean": res["crmr_nomean"],
                "srmr_mplus": res["srmr_mplus"], "srmr_mplus_nomean": res["srmr_mplus_nomean"]})
    out.update(hoelter_indices(chisq, df, n))
    gfi = _gfi(stats, implied, meanstructure, exo_idx)
    nel = sum(s.shape[0] * (s.shape[0] + 1) // 2 + (s.shape[0] if meanstructure else 0)
              for s in stats.cov)
    out["gfi"] = gfi
    out["agfi"] = 1 - (nel / df) * (1 - gfi) if df > 0 else 1.0
    out["pgfi"] = (df / nel) * gfi if nel > 0 else math.nan
    out["mfi"] = math.exp(-0.5 * (chisq - df) / n)
    out["ecvi"] = chisq / n + 2 * npar / n
    return pd.Series(out, dtype=float)
