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
import pandas as pd
from analysis import distributions as stats

from ..errors import OptionError
from ..fitindices import incremental_indices, robust_fit_indices
from ..results import InvalidTestStatistic, TestStatistic
from .ml import MLEstimator

__all__ = [
    "MLMEstimator",
    "make_estimator",
    "sandwich",
    "ugamma_traces",
    "satorra_bentler",
    "scaled_shifted",
    "yuan_bentler_mplus",
    "robust_fit_indices",
    "scaled_difference",
    "satorra_bentler_2001",
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
    from scipy.linalg import block_diag

    # U = bdiag(f V) - [f V Delta] E^-1 [f V Delta]'
    VDall = np.vstack(VD)
    U = block_diag(*[f * v for f, v in zip(fg, V)]) - VDall @ E_inv @ VDall.T
    G = block_diag(*[gam / f for gam, f in zip(Gamma, fg)])
    UG = U @ G
    return float(np.trace(UG)), float(np.sum(UG * UG.T))


def satorra_bentler(chisq: float, df: int, trace_ug: float) -> dict:
    """Mean-scaled statistic ``T / c`` with ``c = tr(U Gamma) / df``."""
    c = trace_ug / df if df > 0 else np.nan
    scaled = chisq / c if df > 0 else 0.0
    return {"chisq.scaled": scaled, "df.scaled": df,
            "pvalue.scaled": _pchisq(scaled, df), "chisq.scaling.factor": c,
            "trace.UGamma": trace_ug, "test.scaled": "satorra.bentler", "method": "satorra.bentler"}


def scaled_shifted(chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """Mean-and-variance adjusted statistic ``a T + b`` (Asparouhov & Muthén 2010)."""
    if df <= 0:
        return {"chisq.scaled": 0.0, "df.scaled": df, "pvalue.scaled": np.nan,
                "chisq.scaling.factor": np.nan, "chisq.shift.parameter": np.nan,
                "test.scaled": "scaled.shifted", "method": "scaled.shifted"}
    a = np.sqrt(df / trace_ug2)
    shift = df - a * trace_ug
    scaled = chisq * a + shift
    return {"chisq.scaled": scaled, "df.scaled": df, "pvalue.scaled": _pchisq(scaled, df),
            "chisq.scaling.factor": 1.0 / a, "chisq.shift.parameter": shift,
            "chisq.shift.parameters": shift,   # the name analysis.sem reads for TestStatistic.shift
            "trace.UGamma": trace_ug, "trace.UGamma2": trace_ug2,
            "test.scaled": "scaled.shifted", "method": "scaled.shifted"}


def mean_var_adjusted(chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """Satterthwaite's mean-and-variance adjusted statistic: ``T / c`` on ``d`` degrees of
    freedom, ``c = tr((U Gamma)^2) / tr(U Gamma)``, ``d = tr(U Gamma)^2 / tr((U Gamma)^2)``
    (lavaan's test = "mean.var.adjusted"; d is not rounded)."""
    if df <= 0:
        return {"chisq.scaled": 0.0, "df.scaled": df, "pvalue.scaled": np.nan,
                "chisq.scaling.factor": np.nan, "test.scaled": "mean.var.adjusted",
                "method": "mean.var.adjusted"}
    c = trace_ug2 / trace_ug
    d = trace_ug ** 2 / trace_ug2
    scaled = chisq / c
    return {"chisq.scaled": scaled, "df.scaled": d, "pvalue.scaled": _pchisq(scaled, d),
            "chisq.scaling.factor": c, "trace.UGamma": trace_ug, "trace.UGamma2": trace_ug2,
            "test.scaled": "mean.var.adjusted", "method": "mean.var.adjusted"}


def scaled_test(kind: str, chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """The Satorra-Bentler family of scaled statistics from the traces of U Gamma
    (``yuan.bentler`` with the expected information equals ``satorra.bentler``)."""
    if kind in ("satorra.bentler", "yuan.bentler"):
        out = satorra_bentler(chisq, df, trace_ug)
        out["test.scaled"] = out["method"] = kind
        return out
    if kind == "scaled.shifted":
        return scaled_shifted(chisq, df, trace_ug, trace_ug2)
    if kind == "mean.var.adjusted":
        return mean_var_adjusted(chisq, df, trace_ug, trace_ug2)
    raise ValueError(f"unknown scaled test {kind!r}")


def yuan_bentler_mplus(chisq: float, df: int, trace_h1: float, trace_h0: float,
                       ndat: int | None = None, npar: int | None = None) -> dict:
    """Yuan-Bentler scaled statistic, Mplus variant: c = (tr(A1^-1 B1) - tr(E^-1 B0)) / df."""
    trace_ug = trace_h1 - trace_h0
    extra = {}
    if ndat and npar:
        extra = {"scaling.factor.h1": trace_h1 / ndat, "scaling.factor.h0": trace_h0 / npar}
    c = trace_ug / df if df > 0 else np.nan
    if df > 0 and c < 0:
        c = np.nan
    scaled = chisq / c if df > 0 else 0.0
    return {"chisq.scaled": scaled, "df.scaled": df, "pvalue.scaled": _pchisq(scaled, df),
            "chisq.scaling.factor": c, "trace.UGamma": trace_ug,
            "test.scaled": "yuan.bentler.mplus", "method": "yuan.bentler.mplus", **extra}


def _pchisq(x, df):
    if df <= 0 or not np.isfinite(x):
        return np.nan
    return float(stats.chi2.sf(x, df))


# --------------------------------------------------------------------------
# scaled difference tests
# --------------------------------------------------------------------------
_DIFF_NULL = "the restricted model fits as well as the less restricted one"


def scaled_difference(fit_restricted, fit_general) -> TestStatistic | InvalidTestStatistic:
    """Scaled chi-square difference test of two nested robust fits.

    MLM/MLR: Satorra & Bentler (2001), ``cd = (df0 c0 - df1 c1) / (df0 - df1)``,
    ``T = (T0 - T1) / cd`` (lavaan ``method = "satorra.bentler.2001"``).
    WLSMV/ULSMV: Satorra (2000) with the scaled-shifted correction, which
    needs the restricted model's ``U`` and the general model's Jacobian
    (lavaan's default ``method = "satorra.2000"``); each fit must carry its
    estimator object as ``fit.estimator`` (or be that estimator's ``_robust``).

    Each argument is a fitted result with ``fit_indices`` / ``fit`` mapping
    (chisq, df, chisq.scaling.factor) or such a mapping itself. The result is a
    TestStatistic (``res["chisq.diff.scaled"]`` etc. read it with lavaan's names).
    """
    f0, f1 = _indices(fit_restricted), _indices(fit_general)
    if _kind(fit_restricted) == "standard" or "chisq.scaling.factor" not in f0:
        raise ValueError("scaled_difference needs two robust fits (MLM, MLR, WLSMV or ULSMV); "
                         "for ML use the ordinary likelihood-ratio test")
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
    return satorra_bentler_2001(t0, d0, float(f0["chisq.scaling.factor"]),
                                t1, d1, float(f1["chisq.scaling.factor"]))


def satorra_bentler_2001(t0: float, df0: float, c0: float, t1: float, df1: float,
                         c1: float) -> TestStatistic | InvalidTestStatistic:
    """Satorra-Bentler (2001) scaled difference of two standard statistics (lavaan's
    ``lavTestLRT(method = "satorra.bentler.2001")``).

    Model 0 is the more restricted (larger df), ``c`` the scaling factors
    (``chisq.scaling.factor``; 1 for a saturated general model, as lavaan).
    ``cd = (df0 c0 - df1 c1) / (df0 - df1)``, ``T = (T0 - T1) / cd`` on df0 - df1
    degrees of freedom, not clamped (a negative T has p = 1). A scaling factor
    that is not positive leaves the test undefined (lavaan: NA with a warning):
    an InvalidTestStatistic with the reason.
    """
    ddf = df0 - df1
    if not ddf > 0:
        return InvalidTestStatistic("the models have the same degrees of freedom", name="chisq.diff")
    if df1 == 0:
        c1 = 1.0
    cd = (df0 * c0 - df1 * c1) / ddf
    if not cd > 0:
        return InvalidTestStatistic(
            f"negative scaling factor of the difference ({cd:.4g}); use the "
            "Satorra-Bentler (2010) strictly positive test", name="chisq.diff")
    t = (t0 - t1) / cd
    return TestStatistic(t, ddf, _pchisq(t, ddf), name="chisq.diff", null=_DIFF_NULL,
                         method="satorra.bentler.2001", scaling_factor=cd, unscaled=t0 - t1)


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
    if hasattr(fit, "ugamma_pieces") or hasattr(fit, "test_kind"):
        return fit
    for est in (getattr(fit, "estimator", None), (getattr(fit, "extras", None) or {}).get("estimator")):
        if hasattr(est, "ugamma_pieces") or hasattr(est, "test_kind"):
            return est
    return None


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
    from scipy.linalg import block_diag

    G = block_diag(*[f * gam for f, gam in zip(fg, Gamma)])
    Vall = block_diag(*V)
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
    return TestStatistic(stat, ddf, _pchisq(stat, ddf), name="chisq.diff", null=_DIFF_NULL,
                         method="satorra.2000", scaling_factor=1.0 / a, shift=b, unscaled=t_diff)


# --------------------------------------------------------------------------
# estimators: MLM (Satorra-Bentler) and the dispatch used by fit_sem
# --------------------------------------------------------------------------
def group_arrays(check, model) -> list[np.ndarray]:
    """Raw data per group (columns in ``model.ov_names[g]`` order) from a DataCheck."""
    data = check.data
    extra = [c for c in data.columns if c not in set(check.variables)]
    if model.n_groups == 1 or not extra:
        return [data[model.ov_names[0]].to_numpy(dtype=float)]
    gcol = extra[0]
    # groups in fit_sem's order (lavaan: order of appearance in the data)
    labels = [str(v) for v in pd.unique(data[gcol])]
    key = data[gcol].astype(str)
    return [data.loc[key == lab, model.ov_names[g]].to_numpy(dtype=float) for g, lab in enumerate(labels)]


def group_rows(check, model) -> list[np.ndarray]:
    """Positions (in ``check.data``) of each group's rows, in the order of :func:`group_arrays`."""
    data = check.data
    extra = [c for c in data.columns if c not in set(check.variables)]
    if model.n_groups == 1 or not extra:
        return [np.arange(len(data))]
    key = data[extra[0]].astype(str).to_numpy()
    return [np.flatnonzero(key == lab) for lab in pd.unique(data[extra[0]].astype(str))]


def adf_gamma(Y: np.ndarray, means: bool, x_idx=()) -> np.ndarray:
    """Asymptotic covariance of [ybar, vech S] (N divisor, lavaan's Gamma for MLM).

    With fixed.x covariates ``x_idx``, lavaan's version: the moment contributions minus
    those of the data with every other variable replaced by its regression on the covariates
    (so the covariates' own moments get zero rows).
    """
    n, p = Y.shape
    r, c = np.tril_indices(p)
    order = np.lexsort((r, c))
    r, c = r[order], c[order]

    def contributions(A):
        ac = A - A.mean(axis=0)
        z = ac[:, r] * ac[:, c]
        return np.hstack([A, z]) if means else z

    z = contributions(Y)
    x_idx = list(x_idx)
    if x_idx:
        X = np.column_stack([np.ones(n), Y[:, x_idx]])
        rest = [j for j in range(p) if j not in x_idx]
        coef, *_ = np.linalg.lstsq(X, Y[:, rest], rcond=None)
        Yhat = Y.copy()
        Yhat[:, rest] = X @ coef
        z = z - contributions(Yhat)
    z = z - z.mean(axis=0)
    return z.T @ z / n


class MLMEstimator(MLEstimator):
    """Complete-data ML with Satorra-Bentler robust SEs and scaled test (lavaan ``estimator="MLM"``)."""

    name = "MLM"
    test_kind = "satorra.bentler"    # or scaled.shifted, mean.var.adjusted, yuan.bentler, None
    se_kind = "robust.sem"           # or "standard": the expected information alone

    def _setup(self, data):
        self.gamma = [adf_gamma(Y, self.model.meanstructure, self._xi(g)) for g, Y in enumerate(data)]

    def _xi(self, g):
        names = self.model.ov_names[g]
        return [names.index(v) for v in self.model.exo_names[g]]

    def _pieces(self, x):
        V = self.weight_matrices(x)
        deltas = self.model.delta(x)
        D = []
        for g, d in enumerate(deltas):
            lay = self.model.moment_layout(g)
            first = lay["mu"].start if self.model.meanstructure else lay["sigma"].start
            D.append(d[first:lay["sigma"].stop])
        return V, D

    def ugamma_pieces(self):
        V, D = self._pieces(self.x_hat)
        return V, D, self.gamma, list(self.stats.nobs)

    def vcov(self, x):
        self.x_hat = np.asarray(x, float)
        if self.se_kind == "standard":
            return MLEstimator.vcov(self, x)
        V, D = self._pieces(x)
        E_inv = np.linalg.inv(self.information(x))
        B = sum(w * d.T @ v @ gam @ v @ d for w, d, v, gam in zip(self.weights, D, V, self.gamma))
        return sandwich(E_inv, B, self.ntotal)

    def test(self, x):
        self.x_hat = np.asarray(x, float)
        out = super().test(x)
        if self.test_kind is None:
            return out
        V, D = self._pieces(x)
        from ..constraints import inverse_information   # bordered under a == 2*b, b > 0.8

        E_inv = inverse_information(self.information(x), self, x)
        tr, tr2 = ugamma_traces(V, D, E_inv, self.gamma, self.stats.nobs)
        out.update(scaled_test(self.test_kind, out["chisq"], out["df"], tr, tr2))
        return out

    def baseline_robust(self, exo_cov=None):
        """Independence model (diagonal Sigma, saturated means; fixed.x covariates keep their
        sample block and are not parameters; with fixed_x=False the covariances among the
        observed exogenous variables are free parameters, as lavaan) with its scaling.
        ``exo_cov`` (per group) fixes the covariates' block at other values (pooling: semTools
        refits the baseline with the first imputation's block); only the scaling uses it."""
        from ..fitindices import observed_exogenous
        from .base import ml_weight
        ms = self.model.meanstructure
        chisq, V, D = 0.0, [], []
        q = 0
        for g, s in enumerate(self.stats.cov):
            p = s.shape[0]
            xi = self._xi(g)
            bx = observed_exogenous(self.model, g)
            keep = [i for i in range(p) if i not in xi]
            free_cov = [(a, b) for j, a in enumerate(bx) for b in bx[j + 1:] if a not in xi]
            sb = np.diag(np.diag(s))
            if bx:
                sb[np.ix_(bx, bx)] = s[np.ix_(bx, bx)]
            chisq += self.stats.nobs[g] * (np.linalg.slogdet(sb)[1] - np.linalg.slogdet(s)[1])
            if exo_cov is not None and xi:
                sb[np.ix_(xi, xi)] = exo_cov[g]
            W = np.linalg.inv(sb)
            v = ml_weight(W)
            r, c = np.tril_indices(p)
            order = np.lexsort((r, c))
            r, c = r[order], c[order]
            if ms:
                full = np.zeros((p + len(r),) * 2)
                full[:p, :p] = W
                full[p:, p:] = v
                v = full
            V.append(v)
            D.append((p, r, c, keep, free_cov))
            q += len(keep) * (2 if ms else 1) + len(free_cov)
        Dm, off = [], 0
        for p, r, c, keep, free_cov in D:
            k = len(keep)
            d = np.zeros(((p if ms else 0) + len(r), q))
            if ms:
                d[keep, off + np.arange(k)] = 1.0
                off += k
            d[(p if ms else 0) + np.flatnonzero(r == c)[keep], off + np.arange(k)] = 1.0
            off += k
            pos = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(r, c))}
            for a, b in free_cov:
                d[(p if ms else 0) + pos[(max(a, b), min(a, b))], off] = 1.0
                off += 1
            Dm.append(d)
        E = sum(w * d.T @ v @ d for w, d, v in zip(self.weights, Dm, V))
        df = sum(p * (p - 1) // 2 - len(fc) - (p - len(keep)) * (p - len(keep) - 1) // 2
                 for p, _, _, keep, fc in D)
        tr, tr2 = ugamma_traces(V, Dm, np.linalg.inv(E), self.gamma, self.stats.nobs)
        out = {"chisq": chisq, "df": df, "pvalue": _pchisq(chisq, df)}
        out.update(scaled_test(self.test_kind or "satorra.bentler", chisq, df, tr, tr2))
        return out

    def extra_fit_measures(self, x, test, fit):
        if self.test_kind is None:     # robust.sem SEs with the standard test: no scaled keys
            return {}
        base = self.baseline_robust()
        return robust_fit_indices(test, base, self.ntotal, self.model.n_groups, continuous=True)


def _mlm_estimator(model, stats, data):
    est = MLMEstimator(model, stats)
    est._setup(data)
    return est


def fiml_extra_fit_measures(est, x, test, fit) -> dict:
    """Fit keys of a FIML (or complete-data MLR) fit that differ from the complete-data ML ones."""
    import math
    base = est.baseline()
    chisq, df = test["chisq"], test["df"]
    b2, bdf = base["chisq"], base["df"]
    n = est.ntotal
    logl_x = est.loglik_x()                    # fixed.x: lavaan's logl leaves the covariates out
    logl = est.loglik(x) - logl_x
    npar = est.model.n_free
    out = {"fmin": chisq / (2 * n), "baseline.chisq": b2, "baseline.df": bdf,
           "baseline.pvalue": base["pvalue"],
           **incremental_indices(chisq, df, b2, bdf),
           "logl": logl, "unrestricted.logl": est.logl_h1 - logl_x,
           "aic": -2 * logl + 2 * npar, "bic": -2 * logl + npar * math.log(n),
           "bic2": -2 * logl + npar * math.log((n + 2) / 24), "ntotal": n}
    if getattr(est, "fiml", False):
        from .fiml import fiml_gfi

        out.update(fiml_gfi(est, x, df))
    missing = any(p.n_patterns > 1 or not p.observed.all() for p in est.patterns)
    missing = missing or getattr(est, "fiml", False)   # lavaan: missing="ml" always uses FIML-C
    if test.get("test.scaled"):
        fc = est.fiml_corrected(x, test, base) if missing else None
        out.update(robust_fit_indices(test, base, n, est.model.n_groups, robust=fc))
    elif missing:
        out.update(robust_fit_indices(test, base, n, est.model.n_groups,
                                      robust=est.fiml_corrected(x, test, base)))
    return out


def make_estimator(model, stats, *, data=None, options=None):
    """Robust ML estimators for fit_sem: MLR (complete data or FIML), MLM, ML with robust SEs."""
    options = options or {}
    est_name = options.get("estimator", "MLR").upper()
    missing = options.get("missing", "listwise")
    refuse_combination(est_name, missing, bool(options.get("ordered")))
    if data is None:
        raise EstimatorCombinationError(f"estimator {est_name} needs the raw data, not a covariance matrix")
    arrays = group_arrays(data, model)
    from .inference import Inference
    inf = Inference.from_options(est_name, {**options, "missing": missing})
    if inf.information == "expected" and inf.test != "yuan.bentler.mplus" and not options.get("survey"):
        # Satorra-Bentler family tests and robust.sem SEs: ADF Gamma at the expected information
        est = _mlm_estimator(model, stats, arrays)
        est.se_kind = "robust.sem" if inf.se == "robust.sem" else "standard"
        est.test_kind = inf.test if inf.scaled else None
        return est
    from .fiml import FIMLEstimator
    robust = inf.se == "robust.huber.white"
    weights = designs = None
    if options.get("survey") is not None:   # sampling weights / clusters / strata (analysis.design)
        designs = [options["survey"].subset(rows) for rows in group_rows(data, model)]
        weights = [d.weights for d in designs]
    est = FIMLEstimator(model, arrays, robust=robust, group_labels=tuple(stats.group_labels),
                        weights=weights, designs=designs)
    est.fiml = missing == "fiml"
    est.test_kind = inf.test if inf.test in ("yuan.bentler.mplus", "satorra.bentler", "yuan.bentler") else None
    est.se_information = "expected" if inf.information == "expected" else "hessian"
    est.test_information = inf.test_information if inf.test_information != "observed" else "hessian"
    if options.get("survey_test_information"):
        est.test_information = options["survey_test_information"]
    est.extra_fit_measures = lambda x, test, fit: fiml_extra_fit_measures(est, x, test, fit)
    return est
