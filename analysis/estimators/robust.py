"""Robust standard errors, scaled test statistics and robust fit indices.

Formulas (as lavaan 0.6 implements them; read there, nothing copied):

* sandwich ``A^-1 B A^-1 / N`` (Huber-White; MLR: A observed information,
  B first-order case-wise scores; MLM/WLSMV: A = Delta'V Delta, B = Delta'V Gamma V Delta);
* ``U = V - V Delta E^-1 Delta' V`` and the traces ``tr(U Gamma)``,
  ``tr((U Gamma)^2)``: Satorra-Bentler mean-scaled statistic (MLM) and the
  mean-and-variance adjusted scaled-shifted statistic (WLSMV, ULSMV, Asparouhov
  & Muthén 2010);
* Yuan-Bentler, Mplus variant (MLR): ``tr(A1^-1 B1) - tr(E^-1 B0)`` with the
  saturated model's observed information A1 and first-order matrix B1;
* robust CFI/TLI/RMSEA of Brosseau-Liard & Savalei (2012, 2014): the
  unscaled statistic with the scaling factor as ``c.hat``;
* scaled difference tests: Satorra & Bentler (2001) for MLM/MLR, Satorra
  (2000) scaled-shifted for WLSMV/ULSMV (lavaan's ``lavTestLRT`` defaults).
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from ..errors import OptionError

__all__ = [
    "sandwich",
    "ugamma_traces",
    "satorra_bentler",
    "scaled_shifted",
    "yuan_bentler_mplus",
    "robust_fit_indices",
    "scaled_difference",
    "refuse_combination",
    "EstimatorCombinationError",
]


class EstimatorCombinationError(OptionError):
    """An estimator/missing-data combination lavaan refuses."""


def refuse_combination(estimator: str, missing: str, ordered: bool) -> None:
    """Raise with lavaan's reason when ``estimator`` cannot be used with ``missing``/``ordered``."""
    est = estimator.upper()
    miss = {"fiml": "ml", "direct": "ml", "ml": "ml"}.get(missing.lower(), missing.lower())
    if est == "MLM" and miss == "ml":
        raise EstimatorCombinationError(
            "estimator MLM needs complete data (its Gamma matrix is computed from complete cases); "
            "use estimator='MLR' for robust full-information ML with missing='fiml'")
    if est in ("WLSMV", "ULSMV", "DWLS", "ULS", "WLS") and miss == "ml":
        raise EstimatorCombinationError(
            f"missing='fiml' is a maximum-likelihood method and cannot be used with estimator {est}; "
            "use missing='listwise' or missing='pairwise' with ordered items")
    if ordered and est in ("ML", "MLR", "MLM"):
        raise EstimatorCombinationError(
            f"estimator {est} does not handle ordered items; use estimator='WLSMV' (the default "
            "with ordered=) or 'ULSMV'")
    if est in ("ML", "MLR", "MLM") and miss == "pairwise":
        raise EstimatorCombinationError(
            f"missing='pairwise' is only available for ordered items with WLSMV/ULSMV; "
            f"use missing='fiml' or 'listwise' with estimator {est}")


def sandwich(a_inv: np.ndarray, b: np.ndarray, n: float) -> np.ndarray:
    """Huber-White covariance ``A^-1 B A^-1 / N`` (unit-information A and B)."""
    v = a_inv @ b @ a_inv / n
    return 0.5 * (v + v.T)


def ugamma_traces(V, Delta, E_inv, Gamma, nobs):
    """``tr(U Gamma)`` and ``tr((U Gamma)^2)`` over groups (lavaan's "original" method).

    V, Delta, Gamma: lists per group (unit weight matrix, model Jacobian, asymptotic
    covariance of the sample statistics). E_inv: inverse of
    ``sum_g f_g Delta_g' V_g Delta_g`` with ``f_g = N_g / N``.
    """
    nobs = np.asarray(nobs, dtype=float)
    fg = nobs / nobs.sum()
    VD = [f * v @ d for f, v, d in zip(fg, V, Delta)]                  # f_g V_g Delta_g
    # U = bdiag(f V) - [f V Delta] E^-1 [f V Delta]'
    blocks = [np.sqrt(1.0) * (f * v) for f, v in zip(fg, V)]
    sizes = [v.shape[0] for v in V]
    n = sum(sizes)
    U = np.zeros((n, n))
    G = np.zeros((n, n))
    off = 0
    for b, gam, f, s in zip(blocks, Gamma, fg, sizes):
        U[off:off + s, off:off + s] = b
        G[off:off + s, off:off + s] = gam / f
        off += s
    VDall = np.vstack(VD)
    U -= VDall @ E_inv @ VDall.T
    UG = U @ G
    return float(np.trace(UG)), float(np.sum(UG * UG.T))


def satorra_bentler(chisq: float, df: int, trace_ug: float) -> dict:
    """Mean-scaled statistic ``T / c`` with ``c = tr(U Gamma) / df``."""
    c = trace_ug / df if df > 0 else np.nan
    scaled = chisq / c if df > 0 else 0.0
    return {"chisq.scaled": scaled, "df.scaled": df,
            "pvalue.scaled": _pchisq(scaled, df), "chisq.scaling.factor": c,
            "trace.UGamma": trace_ug, "test.scaled": "satorra.bentler"}


def scaled_shifted(chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """Mean-and-variance adjusted statistic ``a T + b`` (Asparouhov & Muthén 2010)."""
    if df <= 0:
        return {"chisq.scaled": 0.0, "df.scaled": df, "pvalue.scaled": np.nan,
                "chisq.scaling.factor": np.nan, "chisq.shift.parameter": np.nan,
                "test.scaled": "scaled.shifted"}
    a = np.sqrt(df / trace_ug2)
    shift = df - a * trace_ug
    scaled = chisq * a + shift
    return {"chisq.scaled": scaled, "df.scaled": df, "pvalue.scaled": _pchisq(scaled, df),
            "chisq.scaling.factor": 1.0 / a, "chisq.shift.parameter": shift,
            "trace.UGamma": trace_ug, "trace.UGamma2": trace_ug2,
            "test.scaled": "scaled.shifted"}


def yuan_bentler_mplus(chisq: float, df: int, trace_h1: float, trace_h0: float) -> dict:
    """Yuan-Bentler scaled statistic, Mplus variant: c = (tr(A1^-1 B1) - tr(E^-1 B0)) / df."""
    trace_ug = trace_h1 - trace_h0
    c = trace_ug / df if df > 0 else np.nan
    if df > 0 and c < 0:
        c = np.nan
    scaled = chisq / c if df > 0 else 0.0
    return {"chisq.scaled": scaled, "df.scaled": df, "pvalue.scaled": _pchisq(scaled, df),
            "chisq.scaling.factor": c, "trace.UGamma": trace_ug,
            "test.scaled": "yuan.bentler.mplus"}


def _pchisq(x, df):
    if df <= 0 or not np.isfinite(x):
        return np.nan
    return float(stats.chi2.sf(x, df))


# --------------------------------------------------------------------------
# fit indices (lavaan's lav_fit_cfi / lav_fit_rmsea conventions)
# --------------------------------------------------------------------------
def _cfi(x2, df, x2n, dfn, c=1.0, cn=1.0):
    if not np.all(np.isfinite([x2, df, x2n, dfn, c, cn])):
        return np.nan
    if df > 0 and c != 1 and cn != 1:
        t1 = max(x2 - c * df, 0.0)
        t2 = max(x2 - c * df, x2n - cn * dfn, 0.0)
    else:
        t1 = max(x2 - df, 0.0)
        t2 = max(x2 - df, x2n - dfn, 0.0)
    if np.isclose(t1, 0.0, atol=1.5e-8) and np.isclose(t2, 0.0, atol=1.5e-8):
        return 1.0
    return 1.0 - t1 / t2


def _tli(x2, df, x2n, dfn, c=1.0, cn=1.0):
    if not np.all(np.isfinite([x2, df, x2n, dfn, c, cn])):
        return np.nan
    if df > 0 and c != 1 and cn != 1:
        t1 = (x2 - c * df) * dfn
        t2 = (x2n - cn * dfn) * df
    else:
        t1 = (x2 - df) * dfn
        t2 = (x2n - dfn) * df
    if df > 0 and abs(t2) > 0:
        return 1.0 - t1 / t2
    return 1.0


def _rmsea(x2, df, n, c=1.0, g=1):
    if not np.all(np.isfinite([x2, df, c])):
        return np.nan
    if df <= 0:
        return 0.0
    return float(np.sqrt(max((x2 / n) / df - c / n, 0.0)) * np.sqrt(g))


def _rmsea_ci(x2, df, n, c=1.0, g=1, level=0.90):
    if not np.all(np.isfinite([x2, df, n, c])):
        return np.nan, np.nan
    up, lo = 1 - (1 - level) / 2, (1 - level) / 2

    def lower_fn(lam):
        return stats.ncx2.cdf(x2, df, lam) - up if lam > 0 else stats.chi2.cdf(x2, df) - up

    def upper_fn(lam):
        return stats.ncx2.cdf(x2, df, lam) - lo if lam > 0 else stats.chi2.cdf(x2, df) - lo

    if df < 1 or lower_fn(0) < 0:
        ci_lo = 0.0
    else:
        try:
            lam = optimize.brentq(lower_fn, 0, x2)
            ci_lo = np.sqrt(c * lam / (n * df)) * np.sqrt(g)
        except ValueError:
            ci_lo = np.nan
    n_r = max(n, x2 * 4)
    if df < 1 or upper_fn(n_r) > 0 or upper_fn(0) < 0:
        ci_up = 0.0
    else:
        try:
            lam = optimize.brentq(upper_fn, 0, n_r)
            ci_up = np.sqrt(c * lam / (n * df)) * np.sqrt(g)
        except ValueError:
            ci_up = np.nan
    return float(ci_lo), float(ci_up)


def _rmsea_p(x2, df, n, h0, c=1.0, g=1, close=True):
    if df <= 0 or not np.all(np.isfinite([x2, c])):
        return np.nan
    ncp = (n * df / c * h0 ** 2) / g
    p = stats.ncx2.cdf(x2, df, ncp)
    return float(1 - p) if close else float(p)


def robust_fit_indices(test: dict, baseline: dict, n: int, n_groups: int = 1,
                       robust: dict | None = None) -> dict:
    """The scaled and robust fit keys of ``fitMeasures()`` (lavaan 0.6-14).

    ``test``/``baseline``: the model's and the independence model's test dicts
    (``chisq``, ``df`` plus the scaled keys). ``robust``: optional FIML
    corrections (``XX3, df3, c.hat3, XX3.scaled, XX3.null, c.hat3.null``) that
    replace the complete-data formulas, as lavaan's FIML-C (V3).
    """
    x2, df = test["chisq"], test["df"]
    x2n, dfn = baseline["chisq"], baseline["df"]
    kind = test.get("test.scaled")
    if kind is None:            # unscaled ML with FIML: only the FIML-C robust indices (V6)
        return _robust_only(x2, df, x2n, dfn, n, n_groups, robust) if robust else {}
    out = {
        "baseline.chisq.scaled": baseline["chisq.scaled"],
        "baseline.df.scaled": baseline["df.scaled"],
        "baseline.pvalue.scaled": baseline["pvalue.scaled"],
        "baseline.chisq.scaling.factor": baseline["chisq.scaling.factor"],
        "cfi.scaled": _cfi(test["chisq.scaled"], test["df.scaled"],
                           baseline["chisq.scaled"], baseline["df.scaled"]),
        "tli.scaled": _tli(test["chisq.scaled"], test["df.scaled"],
                           baseline["chisq.scaled"], baseline["df.scaled"]),
    }
    if kind == "scaled.shifted":
        xx2, df2 = test["chisq.scaled"], df
    else:
        xx2, df2 = x2, test.get("trace.UGamma", np.nan)
        if not np.isfinite(df2) or df2 == 0:
            df2 = np.nan
    out["rmsea.scaled"] = _rmsea(xx2, df2, n, g=n_groups)
    lo, up = _rmsea_ci(xx2, df2, n, g=n_groups)
    out["rmsea.ci.lower.scaled"], out["rmsea.ci.upper.scaled"] = lo, up
    out["rmsea.pvalue.scaled"] = _rmsea_p(xx2, df2, n, 0.05, g=n_groups)
    out["rmsea.notclose.pvalue.scaled"] = _rmsea_p(xx2, df2, n, 0.08, g=n_groups, close=False)
    if kind == "scaled.shifted" and robust is None:
        return out       # categorical: lavaan's robust indices need a catML refit (not offered)
    if robust is not None:
        xx3, df3, c, xx3s = robust["XX3"], robust["df3"], robust["c.hat3"], robust["XX3.scaled"]
        xx3n, cn = robust["XX3.null"], robust["c.hat3.null"]
        c3 = c
    else:
        xx3, df3, xx3s, xx3n = x2, df, test["chisq.scaled"], x2n
        c = c3 = test["chisq.scaling.factor"]
        cn = baseline["chisq.scaling.factor"]
    out["cfi.robust"] = _cfi(xx3, df, xx3n, dfn, c, cn)
    out["tli.robust"] = _tli(xx3, df, xx3n, dfn, c, cn)
    out["rmsea.robust"] = _rmsea(xx3, df3, n, c=c3, g=n_groups)
    lo, up = _rmsea_ci(xx3s, df3, n, c=c, g=n_groups)
    out["rmsea.ci.lower.robust"], out["rmsea.ci.upper.robust"] = lo, up
    out["rmsea.pvalue.robust"] = _rmsea_p(xx3s, df3, n, 0.05, c=c, g=n_groups)
    out["rmsea.notclose.pvalue.robust"] = _rmsea_p(xx3s, df3, n, 0.08, c=c, g=n_groups, close=False)
    return out


def _robust_only(x2, df, x2n, dfn, n, g, r):
    xx3, df3, c, xx3n, cn = r["XX3"], r["df3"], r["c.hat3"], r["XX3.null"], r["c.hat3.null"]
    out = {"cfi.robust": _cfi(xx3, df, xx3n, dfn, c, cn), "tli.robust": _tli(xx3, df, xx3n, dfn, c, cn),
           "rmsea.robust": _rmsea(xx3, df3, n, c=c, g=g)}
    lo, up = _rmsea_ci(r["XX3.scaled"], df3, n, c=c, g=g)
    out["rmsea.ci.lower.robust"], out["rmsea.ci.upper.robust"] = lo, up
    out["rmsea.pvalue.robust"] = _rmsea_p(r["XX3.scaled"], df3, n, 0.05, c=c, g=g)
    out["rmsea.notclose.pvalue.robust"] = _rmsea_p(r["XX3.scaled"], df3, n, 0.08, c=c, g=g, close=False)
    return out


# --------------------------------------------------------------------------
# scaled difference tests
# --------------------------------------------------------------------------
def scaled_difference(fit_restricted, fit_general) -> dict:
    """Scaled chi-square difference test of two nested robust fits.

    MLM/MLR: Satorra & Bentler (2001), ``cd = (df0 c0 - df1 c1) / (df0 - df1)``,
    ``T = (T0 - T1) / cd`` (lavaan ``method = "satorra.bentler.2001"``).
    WLSMV/ULSMV: Satorra (2000) with the scaled-shifted correction, which
    needs the restricted model's ``U`` and the general model's Jacobian
    (lavaan's default ``method = "satorra.2000"``); each fit must carry its
    estimator object as ``fit.estimator`` (or be that estimator's ``_robust``).

    Each argument is a fitted result with ``fit_indices`` / ``fit`` mapping
    (chisq, df, chisq.scaling.factor) or such a mapping itself.
    """
    f0, f1 = _indices(fit_restricted), _indices(fit_general)
    t0, t1 = float(f0["chisq"]), float(f1["chisq"])
    d0, d1 = int(f0["df"]), int(f1["df"])
    if d0 == d1:
        raise ValueError("the two models have the same degrees of freedom; they are not nested")
    if d0 < d1:   # accept either order, as lavaan's lavTestLRT
        f0, f1, t0, t1, d0, d1 = f1, f0, t1, t0, d1, d0
        fit_restricted, fit_general = fit_general, fit_restricted
    kind = f0.get("test.scaled") or _kind(fit_restricted)
    ddf = d0 - d1
    if kind in ("scaled.shifted",):
        est0 = _estimator(fit_restricted)
        est1 = _estimator(fit_general)
        if est0 is None or est1 is None:
            raise ValueError("the Satorra (2000) difference test needs the fitted estimators "
                             "of both models (WLSMV/ULSMV)")
        return _satorra_2000(est0, est1, t0 - t1, ddf)
    c0, c1 = float(f0["chisq.scaling.factor"]), float(f1["chisq.scaling.factor"])
    cd = (d0 * c0 - d1 * c1) / ddf
    stat = (t0 - t1) / cd
    if stat < 0:
        stat = 0.0
    return {"chisq.diff": t0 - t1, "df.diff": ddf, "scaling.factor": cd,
            "chisq.diff.scaled": stat, "pvalue": _pchisq(stat, ddf),
            "method": "satorra.bentler.2001"}


def _indices(fit):
    if isinstance(fit, dict):
        return fit
    for attr in ("fit_indices", "fit", "fit_measures"):
        v = getattr(fit, attr, None)
        if v is not None:
            return dict(v)
    raise TypeError("expected a fitted model or a dict of fit measures")


def _kind(fit):
    est = _estimator(fit)
    return None if est is None else getattr(est, "test_kind", None)


def _estimator(fit):
    if hasattr(fit, "ugamma_pieces"):
        return fit
    est = getattr(fit, "estimator", None)
    return est if hasattr(est, "ugamma_pieces") else None


def _satorra_2000(est0, est1, t_diff, ddf):
    """Satorra (2000) scaled-shifted difference test (as lavaan's lav_test_diff_Satorra2000).

    Everything at the general model's estimates: weight V, Jacobian Delta1, Gamma and
    information P; the constraints A are the orthogonal complement of
    H = Delta1^+ Delta0 (lavaan's "delta" method), U = V Delta1 P^-1 A'(A P^-1 A')^-1 A P^-1 Delta1' V.
    """
    V, D1, Gamma, nobs = est1.ugamma_pieces()
    _, D0, _, _ = est0.ugamma_pieces()
    fg = np.asarray(nobs, float) / np.sum(nobs)
    P = sum(f * d.T @ v @ d for f, d, v in zip(fg, D1, V))
    P_inv = np.linalg.inv(P)
    H = np.linalg.pinv(np.vstack(D1)) @ np.vstack(D0)
    u, s, _ = np.linalg.svd(H, full_matrices=True)
    rank = int((s > s.max() * max(H.shape) * np.finfo(float).eps).sum())
    A = u[:, rank:].T
    APA = A @ P_inv @ A.T
    keep = ~((np.abs(APA.sum(0)) < np.sqrt(np.finfo(float).eps)) &
             (np.abs(APA.sum(1)) < np.sqrt(np.finfo(float).eps)))
    A = A[keep]
    PAAPAAP = P_inv @ A.T @ np.linalg.pinv(A @ P_inv @ A.T) @ A @ P_inv
    sizes = [v.shape[0] for v in V]
    n = sum(sizes)
    G = np.zeros((n, n))
    Vall = np.zeros((n, n))
    off = 0
    for gam, v, f, s_ in zip(Gamma, V, fg, sizes):
        G[off:off + s_, off:off + s_] = f * gam
        Vall[off:off + s_, off:off + s_] = v
        off += s_
    PI = np.vstack(D1)
    U = Vall @ PI @ PAAPAAP @ PI.T @ Vall
    UG = U @ G
    tr1 = float(sum(f * np.trace(v @ gam @ v @ d @ PAAPAAP @ d.T)
                    for f, v, gam, d in zip(fg, V, Gamma, D1)))
    tr2 = float(np.trace(UG @ UG))
    m = ddf
    a = np.sqrt(m / tr2)
    b = m - a * tr1
    stat = max(t_diff * a + b, 0.0)
    return {"chisq.diff": t_diff, "df.diff": ddf, "scaling.factor": 1.0 / a, "shift.parameter": b,
            "chisq.diff.scaled": stat, "pvalue": _pchisq(stat, ddf), "method": "satorra.2000"}
